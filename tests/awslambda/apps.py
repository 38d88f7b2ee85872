"""Small ASGI apps the Lambda runtime carries in tests (it carries any ASGI app)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


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
