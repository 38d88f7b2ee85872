"""Aborting a client's connection: a TCP reset, which frees its buffers at once.

A client that stopped reading has the server's send buffer (and the kernel's) full. Closing its
connection gracefully leaves the kernel trying to deliver what is queued for minutes; a reset
(`SO_LINGER` of zero, then close) drops it now. ASGI has no way to ask for one, so the app
finds the transport behind uvicorn's `send` (its protocol cycle's `transport`); under any other
server (Lambda's runtime, a test client) there is none, and the connection closes as usual.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

SCOPE_KEY = "streamfn.abort"


def _abort(send: Send) -> bool:
    transport: Any = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # closed already
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True


def abort(scope: Scope) -> bool:
    """Reset the connection of the request `scope` belongs to; whether that was possible."""
    reset: Callable[[], bool] | None = scope.get(SCOPE_KEY)
    return reset() if reset is not None else False


def abortable(app: Starlette) -> None:
    """Give each of `app`'s requests the means to abort its connection, in its scope: outside
    every middleware, where `send` is still the server's own."""
    build = app.build_middleware_stack

    def build_abortable() -> ASGIApp:
        inner = build()

        async def outermost(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await inner(scope, receive, send)
                return
            # The server's connection holds the scope, and `send` holds the connection: taken
            # out at the end, so that the request's objects are freed when it is done rather
            # than at the next full collection.
            scope[SCOPE_KEY] = lambda: _abort(send)
            try:
                await inner(scope, receive, send)
            finally:
                del scope[SCOPE_KEY]

        return outermost

    app.build_middleware_stack = build_abortable  # type: ignore[method-assign]
