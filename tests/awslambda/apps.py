"""Small ASGI apps the Lambda runtime carries in tests (it carries any ASGI app)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from streamfn.usage import UsageRecord


async def echo(request: Request) -> Response:
    body = await request.body()
    response = JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope.get("raw_path", b"").decode(),
            "query": list(request.query_params.multi_items()),
            "cookies": request.cookies,
            "headers": {k: v for k, v in request.headers.items() if k.startswith("x-")},
            "body_b64": base64.b64encode(body).decode(),
            "client": request.client.host if request.client else None,
            "request_id": getattr(request.scope.get("aws.context"), "aws_request_id", None),
        },
        status_code=201,
        headers={"x-echo": "yes"},
    )
    response.set_cookie("first", "1")
    response.set_cookie("second", "2", httponly=True)
    return response


async def fails_mid_stream(_request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"event: token\ndata: partial\n\n"
        yield b'event: error\ndata: {"type":"internal","message":"boom","retryable":false}\n\n'
        raise RuntimeError("broke after the first bytes")

    return StreamingResponse(body(), media_type="text/event-stream")


async def empty(_request: Request) -> Response:
    return Response(status_code=204, headers={"x-empty": "yes"})


app = Starlette(
    routes=[
        Route("/echo/{rest:path}", echo, methods=["GET", "POST"]),
        Route("/fails-mid-stream", fails_mid_stream),
        Route("/empty", empty),
    ]
)


async def raises_before_response(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app (no error middleware) that fails before sending anything."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    raise RuntimeError("failed before the prelude")


class SlowFileStore:
    """A usage store that takes `delay_s` per write, then notes when it finished (monotonic
    clock, which is the same for every process on the machine) in a JSON-lines file."""

    def __init__(self, path: Path, delay_s: float) -> None:
        self.path = path
        self.delay_s = delay_s

    def _append(self, line: str) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")

    async def write(self, record: UsageRecord) -> None:
        await asyncio.sleep(self.delay_s)
        line = json.dumps(
            {"request_id": record.request_id, "status": record.status, "at": time.monotonic()}
        )
        await asyncio.to_thread(self._append, line)

    async def aclose(self) -> None:
        pass


def usage_to_file() -> ASGIApp:
    """streamfn's app with `SlowFileStore` at `$TEST_USAGE_FILE`."""
    store = SlowFileStore(Path(os.environ["TEST_USAGE_FILE"]), delay_s=0.3)
    return create_app(Settings(echo_delay_ms=1), usage_store=store)
