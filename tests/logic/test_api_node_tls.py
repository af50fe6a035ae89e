"""The API node over HTTPS: it connects to the address it checked, yet verifies the server's
certificate against the real host name (TLS server name), so pinning never weakens TLS."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from orders_server import OrdersServer

from activities.logic import LogicActivities
from core.config import Env, Settings
from core.flows.api_call import build_request
from core.flows.schema import ApiConfig

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@asynccontextmanager
async def tls_server(cert: Path, key: Path) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(OrdersServer().app(), log_config=None, access_log=False,
                            ssl_certfile=str(cert), ssl_keyfile=str(key))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        await task
        sock.close()


async def call_https(host: str, port: int, trust: Path):
    cfg = ApiConfig.model_validate({"url": f"https://{host}:{port}/orders/123456",
                                    "responseMappings": {"status": "s"}})
    request = build_request(cfg, {}, call_sid="CA1", node_id="api", timeout_s=2)
    settings = Settings(env=Env.test, api_node_allowlist=host)
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(trust))) as http:
        return await LogicActivities(settings, None, http).call_api(request)


async def test_pinned_https_verifies_the_certificate_against_the_host_name(
    tmp_path, monkeypatch
) -> None:
    cert, key = self_signed(tmp_path, "crm.test")
    loop = asyncio.get_running_loop()

    async def resolve(host, port, **_kw):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    async with tls_server(cert, key) as port:
        ok = await call_https("crm.test", port, cert)
        assert ok.outcome == "success", ok.error
        assert ok.variables == {"s": "shipped"}
        # The same server under another name: its certificate does not match, refused.
        wrong = await call_https("other.test", port, cert)
        assert wrong.outcome == "error" and "request failed" in wrong.error
