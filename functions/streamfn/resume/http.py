"""Resuming over HTTP: what the resume routes answer. A caller finds its own streams only; the
response replays what it missed and then follows the stream live."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from streamfn.accounting import owner
from streamfn.dialects import Dialect
from streamfn.resume import Head, LogUnavailable
from streamfn.resume.live import Streams
from streamfn.settings import Settings
from streamfn.sse import EventStream
from streamfn.streaming import Attached


class NotResumable(Exception):
    def __init__(self, status: int, type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type, message

    def response(self, dialect: Dialect) -> Response:
        return dialect.error(self.status, self.type, self.message, param="id")


_LOG_DOWN = "the stream log cannot be reached just now: try again shortly"


class Resumes:
    def __init__(self, streams: Streams, settings: Settings) -> None:
        self.streams = streams
        self._settings = settings

    async def find(self, request: Request, id: str) -> Head:
        """The head of stream `id`, if the caller started it; `NotResumable` otherwise."""
        try:
            head = await self.streams.head(id)
        except LogUnavailable:
            raise NotResumable(503, "unavailable", _LOG_DOWN) from None
        if head is None:
            raise NotResumable(
                404,
                "not_found",
                f"no stream {id}: never started, or older than STREAMFN_RESUME_TTL_S"
                if self.streams.log is not None
                else "streams cannot be resumed here (STREAMFN_RESUME is off, or in Lambda "
                "STREAMFN_STREAMS_TABLE is unset)",
            )
        if head.owner != owner(request):
            raise NotResumable(
                403,
                "forbidden",
                f"stream {id} was started by another caller: only it may resume it",
            )
        return head

    async def resume(
        self,
        request: Request,
        id: str,
        after: int,
        dialect: Dialect,
        *,
        unknown: int | None = None,
    ) -> Response:
        """Stream `id`'s events numbered above `after`, then the rest as they come; 204 (which
        tells an EventSource to stop reconnecting) when there is nothing left to send. A
        stream not found is a 404 in `dialect`'s shape, or a bare `unknown` status if given."""
        try:
            head = await self.find(request, id)
        except NotResumable as exc:
            if exc.status == 404 and unknown is not None:
                return Response(status_code=unknown)
            return exc.response(dialect)
        streams, settings = self.streams, self._settings
        try:
            left = await streams.remaining(head, after)
        except LogUnavailable:
            return NotResumable(503, "unavailable", _LOG_DOWN).response(dialect)
        if not left:
            return Response(status_code=204, headers={"x-stream-id": head.id})
        producer = streams.local(head.id)
        response = EventStream(
            streams.follow(head, after),
            stream=head.id,
            retry_ms=settings.retry_ms,
            keepalive_s=settings.keepalive_s,
            write_timeout_s=settings.write_timeout_s,
            headers={**dialect.stream_headers, "x-stream-id": head.id},
        )
        if producer is None:
            return response
        return Attached(response, producer, origin=False)

    async def stop(self, request: Request, id: str, dialect: Dialect) -> Response:
        try:
            head = await self.find(request, id)
        except NotResumable as exc:
            return exc.response(dialect)
        try:
            await self.streams.stop(head)
        except LogUnavailable:
            return NotResumable(503, "unavailable", _LOG_DOWN).response(dialect)
        return JSONResponse({"id": id, "stopping": True}, status_code=202)

    async def stop_chat(self, request: Request, chat: str, dialect: Dialect) -> Response:
        """Stop the AI SDK chat `chat`'s latest stream (the SDK's own `stop()` only leaves)."""
        try:
            id = await self.streams.latest(owner(request), chat)
        except LogUnavailable:
            return NotResumable(503, "unavailable", _LOG_DOWN).response(dialect)
        if id is None:
            return NotResumable(404, "not_found", f"chat {chat} has no stream").response(dialect)
        return await self.stop(request, id, dialect)

    async def chat(self, request: Request, chat: str, dialect: Dialect) -> Response:
        """The AI SDK chat `chat`'s running stream, whole from its first event; 204 when none
        is running (an ended one is the app's to keep, as the SDK's own servers do)."""
        try:
            id = await self.streams.latest(owner(request), chat)
            if id is None:
                return Response(status_code=204)
            head = await self.find(request, id)
            if not await self.streams.running(head):
                return Response(status_code=204)
        except NotResumable as exc:
            if exc.status == 503:
                return exc.response(dialect)
            return Response(status_code=204)  # expired meanwhile
        except LogUnavailable:
            return NotResumable(503, "unavailable", _LOG_DOWN).response(dialect)
        return await self.resume(request, id, 0, dialect)
