"""A scripted HTTP/1.1 upstream on 127.0.0.1, for provider tests.

Written on raw asyncio streams rather than an ASGI app so that a test controls every byte: the
chunk framing, a connection reset (RST) or a clean close in the middle of a body, and when the
client's side of the connection closes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Action(Enum):
    RESET = "reset"  # abort the connection with a TCP RST, mid-body
    CLOSE = "close"  # close the connection cleanly without ending the chunked body
    END = "end"  # end the body here, ignoring the steps after it


Step = bytes | float | Action


@dataclass
class Reply:
    status: int = 200
    body: list[Step] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/event-stream"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Upstream:
    """Answers each request with the next `Reply` (the last one repeats). A reply may be a
    function of the request, for a fake that checks what it was sent and answers accordingly."""

    def __init__(self, *replies: Reply | Callable[[Recorded], Reply]) -> None:
        self.replies = list(replies) or [Reply()]
        self.requests: list[Recorded] = []
        # Set when a client closes its connection before the reply's body has been sent whole.
        self.client_closed = threading.Event()
        self.client_closed_at: float | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Upstream:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("fake upstream did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def _mark_closed(self) -> None:
        if not self.client_closed.is_set():
            self.client_closed_at = time.monotonic()
            self.client_closed.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(Recorded(method, path, headers, body))
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if callable(reply):
            reply = reply(self.requests[-1])

        extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
        writer.write(
            (
                f"HTTP/1.1 {reply.status} X\r\ncontent-type: {reply.content_type}\r\n"
                f"transfer-encoding: chunked\r\nconnection: close\r\n{extra}\r\n"
            ).encode()
        )
        # The request has been read whole: the next read returns b"" once the client closes.
        closed = asyncio.ensure_future(reader.read(1))
        finished = False  # the reply was sent whole, or cut by its own script
        try:
            for step in reply.body:
                if closed.done():
                    break
                if isinstance(step, Action):
                    finished = step is not Action.END  # we end it: the client did not leave
                    if step is Action.RESET:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        writer.transport.abort()
                        return
                    if step is Action.CLOSE:
                        writer.close()
                        return
                    break  # END
                if isinstance(step, float | int):
                    await asyncio.wait({closed}, timeout=step)
                    continue
                writer.write(b"%x\r\n%s\r\n" % (len(step), step))
                await writer.drain()
            if not closed.done():
                finished = True
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                # Wait for the client to finish reading and close its side.
                await asyncio.wait({closed}, timeout=5)
        except ConnectionError:
            pass
        finally:
            if not finished:  # the client left before the whole body was sent
                self._mark_closed()
            closed.cancel()
            writer.close()
