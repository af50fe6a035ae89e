"""A local HTTP server the API node tests call: an order system with bad days."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

ORDERS = {
    "123456": {"status": "shipped", "eta": "Friday", "customer": {"tier": "gold"},
               "items": [{"sku": "A1"}, {"sku": "B2"}]},
    "222222": {"status": "delivered"},
    "333333": {"status": "processing"},
    "444444": {"status": "lost in space"},
}


class OrdersServer:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.last: dict[str, Any] = {}

    def app(self) -> FastAPI:
        app = FastAPI()

        def hit(name: str) -> int:
            self.hits[name] = self.hits.get(name, 0) + 1
            return self.hits[name]

        @app.get("/orders/{number}")
        async def order(number: str, request: Request) -> Response:
            hit("orders")
            self.last = {"headers": dict(request.headers), "path": request.url.path}
            if number not in ORDERS:
                return JSONResponse({"error": "not found"}, status_code=404)
            return JSONResponse(ORDERS[number])

        @app.api_route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def echo(request: Request) -> Response:
            hit("echo")
            body = await request.body()
            self.last = {"headers": dict(request.headers), "body": body.decode(),
                         "method": request.method}
            return JSONResponse({"method": request.method, "host": request.headers.get("host"),
                                 "received": body.decode()})

        @app.get("/fail")
        async def fail() -> Response:
            hit("fail")
            return JSONResponse({"error": "boom"}, status_code=500)

        @app.api_route("/flaky", methods=["GET", "POST"])
        async def flaky() -> Response:
            n = hit("flaky")
            if n % 2 == 1:
                return JSONResponse({"error": "busy"}, status_code=503)
            return JSONResponse({"status": "ok"})

        @app.get("/slow")
        async def slow() -> Response:
            hit("slow")
            await asyncio.sleep(5)
            return JSONResponse({"status": "late"})

        @app.get("/slowish")
        async def slowish() -> Response:
            await asyncio.sleep(0.4)
            return JSONResponse({"status": "shipped"})

        @app.get("/huge")
        async def huge() -> Response:
            hit("huge")

            async def chunks():
                yield b'{"pad": "'
                for _ in range(64):
                    yield b"x" * 16384
                yield b'"}'

            return StreamingResponse(chunks(), media_type="application/json")

        @app.get("/huge-declared")
        async def huge_declared() -> Response:
            return PlainTextResponse("y" * 400_000)

        @app.get("/text")
        async def text() -> Response:
            return PlainTextResponse("hello")

        @app.get("/redirect-private")
        async def redirect_private() -> Response:
            return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)

        @app.get("/redirect-local")
        async def redirect_local() -> Response:
            return RedirectResponse("http://localhost/admin", status_code=302)

        @app.get("/redirect-ok")
        async def redirect_ok() -> Response:
            return RedirectResponse("/orders/123456", status_code=302)

        @app.get("/redirect-to")
        async def redirect_to(target: str) -> Response:
            return RedirectResponse(target, status_code=307)

        @app.get("/redirect-loop")
        async def redirect_loop() -> Response:
            return RedirectResponse("/redirect-loop", status_code=302)

        return app
