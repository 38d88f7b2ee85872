"""A client of the Lambda Runtime API (version 2018-06-01), on asyncio streams and h11.

https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html and, for streaming,
https://docs.aws.amazon.com/lambda/latest/dg/runtimes-custom.html#runtimes-custom-response-streaming

Each call is its own connection, so any number of them may be open at once: on Lambda Managed
Instances "the same runtime API ... can accept concurrent /next and /response requests up to the
configured AWS_LAMBDA_MAX_CONCURRENCY limit" (runtimes-api.html).

Hand-written on h11 because a streamed response reports a mid-stream failure in HTTP trailers,
which neither httpx nor http.client can send; h11 frames chunked bodies and trailers correctly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import traceback
from dataclasses import dataclass
from typing import Any

import h11

API = "/2018-06-01/runtime"
PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response"
PRELUDE_DELIMITER = b"\0" * 8
ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY = "Lambda-Runtime-Function-Error-Body"
# One attempt of a request, sent with `next` and echoed on that attempt's response and error so
# that the Runtime API can tell a late answer from a timed-out attempt from the current one
# ("cross-wiring protection": AWS's Python runtime client 4.0.2 and .NET RuntimeSupport 2.2.0
# release notes). Absent from older Runtime APIs; then nothing is echoed.
INVOCATION_ID = "Lambda-Runtime-Invocation-Id"


class RuntimeAPIError(RuntimeError):
    """The Runtime API answered something other than what the contract says."""


class InvocationGone(RuntimeAPIError):
    """410: the invocation timed out before its answer came; Lambda has already failed it.

    Lambda Managed Instances do not stop a timed-out invocation ("your code continues to run",
    lambda-managed-instances-execution-environment.html); its late answer is refused with 410
    InvokeTimeout (AWS's Runtime Interface Emulator, internal/lambda-managed-instances/rapi/
    handler/invocationresponse.go). Not a fault of the runtime: the next invocation is served.
    """


@dataclass(frozen=True, slots=True)
class Invocation:
    request_id: str
    deadline_ms: int
    function_arn: str
    trace_id: str | None
    event: bytes
    invocation_id: str | None = None

    def echo(self) -> list[tuple[str, str]]:
        """The header that ties a response or error to this attempt, where `next` sent one."""
        return [(INVOCATION_ID, self.invocation_id)] if self.invocation_id else []


def error_document(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """The JSON Lambda expects for a function error."""
    return {
        "errorMessage": str(exc) or type(exc).__name__,
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_exception(exc)[-20:],
    }


class _Connection:
    """One HTTP/1.1 exchange with the Runtime API."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._h11 = h11.Connection(h11.CLIENT)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)

    async def send(self, event: h11.Event) -> None:
        assert self._writer is not None
        data = self._h11.send(event)
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None = None
    ) -> None:
        sent = [("Host", f"{self._host}:{self._port}"), ("User-Agent", "streamfn"), *headers]
        if body is not None:
            sent.append(("Content-Length", str(len(body))))
        await self.send(h11.Request(method=method, target=target, headers=sent))
        if body is not None:
            await self.send(h11.Data(data=body))
            await self.send(h11.EndOfMessage())

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        assert self._reader is not None
        status, headers, body = 0, {}, bytearray()
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                self._h11.receive_data(await self._reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return status, headers, bytes(body)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()


class RuntimeAPI:
    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._host, self._port = host or "127.0.0.1", int(port)

    async def _call(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = _Connection(self._host, self._port)
        await connection.open()
        try:
            await connection.request(method, f"{API}{path}", headers, body)
            return await connection.response()
        finally:
            await connection.close()

    async def next(self) -> Invocation:
        """Wait for the next invocation (the environment may be frozen meanwhile)."""
        status, headers, body = await self._call("GET", "/invocation/next", [], None)
        if status != 200:
            raise RuntimeAPIError(f"invocation/next answered {status}: {body[:200]!r}")
        return Invocation(
            request_id=headers["lambda-runtime-aws-request-id"],
            deadline_ms=int(headers.get("lambda-runtime-deadline-ms", "0")),
            function_arn=headers.get("lambda-runtime-invoked-function-arn", ""),
            trace_id=headers.get("lambda-runtime-trace-id"),
            event=body,
            invocation_id=headers.get(INVOCATION_ID.lower()),
        )

    async def invocation_error(
        self, invocation: Invocation, exc: BaseException, error_type: str | None = None
    ) -> None:
        """Report a failure before any of the response was sent."""
        path = f"/invocation/{invocation.request_id}/error"
        await self._error(path, exc, error_type, invocation.echo())

    async def init_error(self, exc: BaseException, error_type: str) -> None:
        await self._error("/init/error", exc, error_type)

    async def restore_next(self) -> None:
        """SnapStart: ready for the snapshot; returns once restored from it."""
        status, _, body = await self._call("GET", "/restore/next", [], None)
        if status != 200:
            raise RuntimeAPIError(f"restore/next answered {status}: {body[:200]!r}")

    async def restore_error(self, exc: BaseException, error_type: str) -> None:
        await self._error("/restore/error", exc, error_type)

    async def _error(
        self,
        path: str,
        exc: BaseException,
        error_type: str | None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        document = error_document(exc, error_type)
        headers = [
            ("Content-Type", "application/json"),
            (ERROR_TYPE, document["errorType"]),
            *(extra or []),
        ]
        status, _, body = await self._call("POST", path, headers, json.dumps(document).encode())
        _check(path, status, body)

    async def stream_response(
        self, invocation: Invocation, prelude: dict[str, Any]
    ) -> StreamedResponse:
        """Start a streamed response: the request head, then the prelude and its delimiter."""
        connection = _Connection(self._host, self._port)
        await connection.open()
        await connection.request(
            "POST",
            f"{API}/invocation/{invocation.request_id}/response",
            [
                ("Content-Type", PRELUDE_TYPE),
                ("Lambda-Runtime-Function-Response-Mode", "streaming"),
                ("Transfer-Encoding", "chunked"),
                ("Trailer", f"{ERROR_TYPE}, {ERROR_BODY}"),
                *invocation.echo(),
            ],
        )
        response = StreamedResponse(connection)
        await response.write(
            json.dumps(prelude, separators=(",", ":")).encode() + PRELUDE_DELIMITER
        )
        return response


class StreamedResponse:
    """An invocation response being streamed: each `write` is one chunk, sent at once."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    async def write(self, data: bytes) -> None:
        if data:
            await self._connection.send(h11.Data(data=data))

    async def finish(self, error: BaseException | None = None, error_type: str = "") -> None:
        """End the body; a failure after streaming began travels in the error trailers."""
        trailers: list[tuple[str, str]] = []
        if error is not None:
            document = error_document(error, error_type or None)
            trailers = [
                (ERROR_TYPE, document["errorType"]),
                (ERROR_BODY, base64.b64encode(json.dumps(document).encode()).decode()),
            ]
        try:
            await self._connection.send(h11.EndOfMessage(headers=trailers))
            status, _, body = await self._connection.response()
        finally:
            await self._connection.close()
        _check("invocation/response", status, body)


def _check(path: str, status: int, body: bytes) -> None:
    if status == 410:
        raise InvocationGone(f"{path} answered 410 (the invocation timed out): {body[:200]!r}")
    if status != 202:
        raise RuntimeAPIError(f"{path} answered {status}: {body[:200]!r}")
