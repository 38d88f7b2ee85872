"""Request body size limit, enforced before the body is parsed.

Starlette and FastAPI have no body limit of their own; uvicorn has none either, and in Lambda the
function URL allows 6 MB. A declared Content-Length over the limit is refused without reading; a
chunked body is counted as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamfn.errors import HTTP_ERROR_TYPES


def _too_large(max_bytes: int) -> str:
    return f"request body exceeds {max_bytes} bytes (STREAMFN_MAX_BODY_BYTES)"


class BodySizeLimit:
    """`render(path, status, type, message)` makes the refusal in the protocol of `path`."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, render: Callable[..., Response]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = self.render(
                    scope["path"], 413, HTTP_ERROR_TYPES[413], _too_large(self.max_bytes)
                )
                await response(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes an HTTPException raised while reading the body through to
                    # the app's exception handlers, which render it like any other error.
                    raise HTTPException(413, _too_large(self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)
