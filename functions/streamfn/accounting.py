"""Settling a request once its response has been sent: usage record, log line, metrics.

`Accounted` wraps a route's response. The client's stream ends first (its last body message is
sent); only then does the request's account settle. The ASGI call returns after that, so:

- on uvicorn the write happens after the response, on the same connection's task;
- in Lambda the runtime asks for its next invocation only once the ASGI call has returned
  (streamfn.awslambda.runtime), so a frozen environment never loses a record.

A store that fails or hangs costs a log line, not the stream: the error is logged with the whole
record, so no record is lost silently.

A record is also opened as soon as the request reaches a provider (`Accountant.open`), written in
the background while the provider answers: should the process die before the request settles,
that record (outcome `interrupted`) is what remains, and a process that finds the stream dead
in the log completes it (`Accountant.interrupted`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from streamfn.controls import header_value
from streamfn.observability import Trail
from streamfn.resume import Head
from streamfn.settings import Settings
from streamfn.telemetry import Telemetry
from streamfn.usage import Tally, UsageRecord, UsageStore, interrupted_record

logger = logging.getLogger(__name__)


def request_id(request: Request) -> str:
    """Lambda's request id where there is one (it is in every log line too), else a new one;
    the same for the whole request."""
    rid = request.scope.get("streamfn.request_id")
    if rid is None:
        context = request.scope.get("aws.context")
        rid = request.scope["streamfn.request_id"] = (
            getattr(context, "aws_request_id", None) or uuid.uuid4().hex
        )
    return str(rid)


def identity(request: Request) -> str | None:
    """Who called: the API key (`key:<id>`) streamfn's gate admitted, else what the platform
    vouches for (the IAM principal of a function URL with AWS_IAM auth, the caller or API key of
    a REST API), else the client's address."""
    admitted = request.scope.get("streamfn.identity")
    if admitted is not None:
        return str(admitted.id)
    event: dict[str, Any] = request.scope.get("aws.event") or {}
    context = event.get("requestContext") or {}
    iam = ((context.get("authorizer") or {}).get("iam")) or {}
    rest = context.get("identity") or {}
    for candidate in (iam.get("userArn"), rest.get("userArn"), rest.get("apiKeyId")):
        if candidate:
            return str(candidate)
    return request.client.host if request.client else None


def owner(request: Request) -> str:
    """Who may resume a stream `request` starts, or whose stream it may resume: its caller's
    `identity`, "anonymous" when there is none."""
    return identity(request) or "anonymous"


class Accountant:
    """Settles each request: telemetry at once, then the record into the store."""

    def __init__(self, settings: Settings, store: UsageStore | None) -> None:
        self.store = store
        self.telemetry = Telemetry(settings)
        self._timeout_s = settings.usage_write_timeout_s

    def open(self, tally: Tally, trail: Trail | None = None) -> UsageRecord:
        """Open `tally`'s record: written in the background (the request does not wait for
        it), and awaited by `settle` before the real record replaces it. `trail` (the same
        one `settle` gets) follows its attempts at providers, for telemetry."""
        record = tally.opening()
        if trail is not None:
            self.telemetry.request_opened(trail)
        if self.store is not None:
            tally.opened = asyncio.ensure_future(self._write(record))
        return record

    async def interrupted(self, head: Head, output_chars: int) -> None:
        """The record of `head`'s stream, whose producer died: as opened, with the output the
        log holds."""
        if head.record is None or self.store is None:
            return
        ended_at = min(time.time(), head.ends_by)
        record = interrupted_record(head.record, output_chars=output_chars, ended_at=ended_at)
        await self._write(record)

    async def _write(self, record: UsageRecord) -> None:
        assert self.store is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                await self.store.write(record)
        except Exception:
            logger.exception("usage record not stored", extra={"usage_record": record.fields()})

    async def release(self, tally: Tally) -> None:
        """Give back `tally`'s hold on its identity's limits, with what it used; once. A stream
        does so at its last chunk, before the client can see it end, since a client that sends
        its next request at once (a chat's next turn, under a limit of one stream) must find
        its slot free; `settle` does for the rest (a departed client, an answer sent whole)."""
        lease, tally.lease = tally.lease, None
        if lease is None:
            return
        usage = tally.usage()
        try:
            async with asyncio.timeout(self._timeout_s):
                await lease.release(usage.input_tokens + usage.output_tokens)
        except Exception:  # the stream, and the record, must go on
            logger.exception("limits not released for request %s", tally.request_id)

    async def settle(self, tally: Tally, status: int, trail: Trail | None = None) -> None:
        record = tally.record(status)
        await self.release(tally)  # first: a waiting request should not wait for the store
        try:
            self.telemetry.request_ended(record, tally, trail)
        except Exception:
            logger.exception("telemetry failed for request %s", record.request_id)
        if self.store is None:
            return
        if tally.opened is not None:
            await tally.opened  # never raises: `_write` logs its failures
        await self._write(record)

    async def aclose(self) -> None:
        try:
            if self.store is not None:
                await self.store.aclose()
        finally:
            await self.telemetry.aclose()


class Accounted(Response):
    """`response`, sent as is with an `X-Request-Id` header; the account settles after it."""

    def __init__(
        self,
        response: Response,
        tally: Tally,
        accountant: Accountant,
        trail: Trail | None = None,
    ) -> None:
        # No Response.__init__: this response has no body of its own, it sends `response`'s.
        self.response = response
        self.status_code = response.status_code
        self.background = None  # FastAPI hangs its BackgroundTasks here; they run last
        self._tally = tally
        self._accountant = accountant
        self._trail = trail
        response.headers["x-request-id"] = tally.request_id
        if tally.served:  # made after the first chunk: the provider that answered is known
            served = f"{tally.provider}/{tally.request.model}"
            response.headers["x-streamfn-served-by"] = header_value(served, name="model")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = self.status_code

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.response(scope, receive, sending)
        finally:
            # Shielded: a server shutting down must not cut the record short either.
            with anyio.CancelScope(shield=True):
                await self._accountant.settle(self._tally, status, self._trail)
        if self.background is not None:
            await self.background()
