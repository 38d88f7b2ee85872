"""A fake OpenAI Chat Completions upstream for `make bench`, cheap enough not to be what is
measured: a bare asyncio protocol on uvloop, hand-written rather than a web framework because
at 1,000 streams x 50 tokens/s a framework's per-send cost would load the shared cores more
than the servers under test. One timer wakes every paced stream at each tick.

The request's `model` is the script: `fast-N` sends N tokens as fast as the socket takes them,
`pace-R-N` sends N tokens at R per second, `idle-N` sends N tokens and then nothing until the
client goes, `big-N-S` sends N tokens of S characters as fast as `fast` (large answers, for
memory bounds). Token i is the text `t<i> ` (padded with `x` to S), so a client can check every
stream exactly. The wire
format is OpenAI's (https://platform.openai.com/docs/api-reference/chat-streaming): chunked
`data: {chat.completion.chunk}` lines, a usage chunk, then `data: [DONE]`.

Run: python bench/upstream.py PORT
"""

from __future__ import annotations

import asyncio
import re
import sys
import time

import uvloop

_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)
_PREFIX = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"'
)
_SUFFIX = b'"},"finish_reason":null}]}\n\n'
_END = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":%d,"total_tokens":%d}}\n\n'
    b"data: [DONE]\n\n"
)
_SCRIPT = re.compile(rb'"model"\s*:\s*"(fast|pace|idle|big)-(\d+)(?:-(\d+))?"')


def token(i: int, size: int = 0) -> bytes:
    text = b"t%d " % i
    return _PREFIX + text + b"x" * (size - len(text)) + _SUFFIX


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class Paced:
    """Every paced stream, written at each tick of one timer per rate."""

    def __init__(self) -> None:
        self.streams: dict[int, set[Upstream]] = {}

    def add(self, rate: int, stream: Upstream) -> None:
        if rate not in self.streams:
            self.streams[rate] = set()
            asyncio.get_running_loop().create_task(self._tick(rate))
        self.streams[rate].add(stream)

    async def _tick(self, rate: int) -> None:
        period = 1 / rate
        next_at = time.monotonic()
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            for stream in list(self.streams[rate]):
                if not stream.step():
                    self.streams[rate].discard(stream)


PACED = Paced()


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.sent = 0
        self.total = 0
        self.idle = False
        self.size = 0  # characters a token, `big` scripts
        self.paused = False
        self.waiting: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(None)

    def connection_lost(self, _exc: Exception | None) -> None:
        self.transport = None
        self.resume_writing()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        needed = int(length[1]) if length else 0
        if len(rest) < needed:
            return
        body, self.buffer = rest[:needed], rest[needed:]
        script = _SCRIPT.search(body)
        if script is None or self.transport is None:
            message = b"unknown script"
            self.transport and self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\n\r\n%s"
                % (len(message), message)
            )
            return
        kind, first, second = script[1], int(script[2]), script[3]
        self.sent = 0
        self.transport.write(_HEAD)
        if kind in (b"fast", b"big"):
            self.total = first
            self.size = int(second or 0) if kind == b"big" else 0
            asyncio.get_running_loop().create_task(self._fast())
        elif kind == b"pace":
            self.total = int(second or 0)
            PACED.add(first, self)
        else:
            self.total, self.idle = first, True
            for _ in range(first):
                self.step()

    async def _fast(self) -> None:
        """One write per token, yielding to the loop between them, as a server generating
        tokens does; the reader's socket coalesces them when it reads slower."""
        while self.transport is not None and self.sent < self.total:
            self.transport.write(chunk(token(self.sent, self.size)))
            self.sent += 1
            await asyncio.sleep(0)
            if self.paused:
                self.waiting = asyncio.get_running_loop().create_future()
                await self.waiting
        self._end()

    def step(self) -> bool:
        """Send the next paced token; False once the stream is over."""
        if self.transport is None:
            return False
        if self.sent < self.total:
            self.transport.write(chunk(token(self.sent)))
            self.sent += 1
            return True
        if not self.idle:
            self._end()
        return False

    def _end(self) -> None:
        if self.transport is not None:
            self.transport.write(chunk(_END % (self.total, self.total + 1)) + b"0\r\n\r\n")


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=8192)
    sys.stdout.write(f"ready {port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
