"""Resuming over HTTP: finding a caller's stream, and the response that replays what the
caller missed and then follows the stream live."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from streamfn.accounting import owner
from streamfn.dialects import Dialect
from streamfn.resume import Head
from streamfn.resume.live import Streams
from streamfn.sse import event_stream
from streamfn.streaming import Attached


class NotResumable(Exception):
    def __init__(self, status: int, type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type, message

    def response(self, dialect: Dialect) -> Response:
        return dialect.error(self.status, self.type, self.message, param="id")


async def find(streams: Streams, request: Request, id: str) -> Head:
    """The head of stream `id`, if the caller started it; `NotResumable` otherwise."""
    head = await streams.head(id)
    if head is None:
        raise NotResumable(
            404,
            "not_found",
            f"no stream {id}: never started, or older than STREAMFN_RESUME_TTL_S"
            if streams.log is not None
            else "streams cannot be resumed here (STREAMFN_RESUME is off, or in Lambda "
            "STREAMFN_STREAMS_TABLE is unset)",
        )
    if head.owner != owner(request):
        raise NotResumable(
            403, "forbidden", f"stream {id} was started by another caller: only it may resume it"
        )
    return head


async def resume_response(
    streams: Streams,
    head: Head,
    after: int,
    *,
    dialect: Dialect,
    retry_ms: int,
    keepalive_s: float,
    write_timeout_s: float | None,
) -> Response:
    """The events of `head`'s stream numbered above `after`, then the rest as they come; 204
    (which tells an EventSource to stop reconnecting) when there is nothing left to send."""
    if not await streams.remaining(head, after):
        return Response(status_code=204, headers={"x-stream-id": head.id})
    producer = streams.local(head.id)
    response = event_stream(
        streams.follow(head, after),
        stream=head.id,
        retry_ms=retry_ms,
        keepalive_s=keepalive_s,
        write_timeout_s=write_timeout_s,
        headers={**dialect.stream_headers, "x-stream-id": head.id},
    )
    if producer is None:
        return response
    return Attached(response, producer, origin=False)
