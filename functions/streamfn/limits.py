"""Request body size limit, enforced before the body is parsed.

Starlette and FastAPI have no body limit of their own; uvicorn has none either, and in Lambda the
function URL allows 6 MB. A declared Content-Length over the limit is refused before parsing; a
chunked body is counted as it arrives.

Many clients (urllib, most SDKs) send the whole body before they read any of the response: a
413 sent while they are still sending reaches them as a connection reset. So the rest of an
oversized body is read and thrown away first, within bounds (`DRAIN_BYTES`, `DRAIN_S`) that keep
the server from being a sink; a client that asked `Expect: 100-continue` has sent nothing yet
and gets the 413 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamfn.errors import HTTP_ERROR_TYPES

DRAIN_BYTES = 64 << 20
DRAIN_S = 10.0


async def _drain(receive: Receive, already: int) -> None:
    """Read and drop the rest of a request body, up to DRAIN_BYTES in all or DRAIN_S."""
    received = already
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_S):
            while received <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                received += len(message.get("body", b""))
                if not message.get("more_body"):
                    return


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
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await _drain(receive, 0)
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
                    if message.get("more_body"):
                        await _drain(receive, received)
                    # FastAPI passes an HTTPException raised while reading the body through to
                    # the app's exception handlers, which render it like any other error.
                    raise HTTPException(413, _too_large(self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)
