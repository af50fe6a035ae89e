"""Carrier adapters over real HTTP: the API app, a scripted CallGateway, uvicorn on a free port."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
import uvicorn
from carrier_doubles import WEBHOOK_TOKEN, LiveServer, ScriptedGateway, build_app, free_socket
from pydantic import SecretStr

from core.config import Env, Settings


@pytest.fixture(scope="module")
def live_server() -> Iterator[LiveServer]:
    sock = free_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(env=Env.test).model_copy(
        update={
            "webhook_token": SecretStr(WEBHOOK_TOKEN),
            "public_url": base_url,
            "twilio_auth_token": None,
            "log_json": False,
        }
    )
    gateway = ScriptedGateway()
    app = build_app(settings)
    app.state.call_gateway = gateway
    # The app logs to this process's stdout, which the CLI tests capture: keep it to warnings.
    logging.getLogger().setLevel(logging.WARNING)
    # The app's lifespan connects databases; the carrier routes need none of it.
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(app, base_url, gateway, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest_asyncio.fixture
async def client(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10) as http:
        yield http


@pytest.fixture
def gateway(live_server: LiveServer) -> ScriptedGateway:
    live_server.gateway.reset()
    return live_server.gateway
