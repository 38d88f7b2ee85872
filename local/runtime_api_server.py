"""The Runtime API side of the emulator: what each environment's runtime process talks to.

It answers `next` with the environment's invocations, takes responses (prelude, chunked body,
trailers), error documents and the SnapStart calls, and reports every breach of the contract
as a violation (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).

An environment of Lambda Managed Instances takes "concurrent /next and /response requests up to
the configured AWS_LAMBDA_MAX_CONCURRENCY limit" (runtimes-api.html); more `next`s waiting at
once than that is refused, as AWS's emulator refuses "too many idle runtimes" (internal/
lambda-managed-instances/invoke/invoke_router.go). There an invocation's timeout fails it
without stopping the runtime, whose late answer gets 410 InvokeTimeout (rapi/handler/
invocationresponse.go, rendering.RenderInvokeTimeout).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from typing import Any

import h11

from local.emulated import (
    API,
    DELIMITER,
    ERROR_BODY,
    ERROR_TYPE,
    PRELUDE_TYPE,
    Environment,
    Invocation,
    Record,
)

INVOCATION_ID = "lambda-runtime-invocation-id"
INVOKE_TIMEOUT = b'{"errorMessage":"Invoke timeout","errorType":"InvokeTimeout"}'


class RuntimeAPIServer:
    """Mixed into the emulator, whose record, invocations and violation log it shares."""

    record: Record
    snapstart: bool
    _by_id: dict[str, Invocation]
    _timed_out: dict[str, Invocation]  # Managed Instances: failed by their deadline, unanswered
    _handlers: set[asyncio.Task[Any]]

    def violation(self, message: str) -> None:
        raise NotImplementedError

    async def _serve_runtime_api(
        self, environment: Environment, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connection = h11.Connection(h11.SERVER)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)

        async def next_event() -> h11.Event:
            while True:
                event = connection.next_event()
                if event is not h11.NEED_DATA:
                    return event
                data = await reader.read(65536)
                connection.receive_data(data)

        async def reply(
            status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None
        ) -> None:
            sent = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            writer.write(
                connection.send(h11.Response(status_code=status, headers=sent + (headers or [])))
            )
            writer.write(connection.send(h11.Data(data=body)))
            writer.write(connection.send(h11.EndOfMessage()))
            await writer.drain()

        try:
            while True:
                event = await next_event()
                if isinstance(event, h11.ConnectionClosed):
                    return
                if not isinstance(event, h11.Request):
                    self.violation(f"expected a request, got {event!r}")
                    return
                await self._dispatch(environment, event, next_event, reply)
                if (
                    connection.our_state is h11.MUST_CLOSE
                    or connection.their_state is h11.MUST_CLOSE
                ):
                    return
                connection.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            self.violation(f"malformed HTTP from the runtime: {exc}")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Stopping the emulator cancels handlers waiting on a GET .../next. Ending quietly
            # keeps Python 3.11's stream callback from reporting the cancellation as an error.
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _dispatch(
        self, environment: Environment, request: h11.Request, next_event: Any, reply: Any
    ) -> None:
        target = request.target.decode()
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        method = request.method.decode()
        if method == "GET" and target == f"{API}/invocation/next":
            self.record.calls.append((time.monotonic(), "asked", ""))
            if self.snapstart and not environment.restored:
                # AWS: a runtime that skips the lifecycle makes publishing the version fail.
                self.violation("invocation/next before restore/next with SnapStart on")
            await self._drain(next_event)
            limit = environment.max_concurrency or 1
            if environment.waiting >= limit:
                self.violation(
                    f"{environment.waiting + 1} invocation/next requests waiting at once; "
                    f"AWS_LAMBDA_MAX_CONCURRENCY allows {limit}"
                )
                await reply(500, b'{"errorMessage":"too many idle runtimes"}')
                return
            environment.waiting += 1
            environment.ready.set()  # init is over once the runtime first asks
            try:
                invocation = await environment.pending.get()
            finally:
                environment.waiting -= 1
            self.record.calls.append((time.monotonic(), "next", invocation.request_id))
            self.record.trace_ids[invocation.request_id] = invocation.trace_id
            self.record.invocation_ids[invocation.request_id] = invocation.invocation_id
            deadline_ms = invocation.take()
            self.record.deadlines[invocation.request_id] = deadline_ms
            await reply(
                200,
                json.dumps(invocation.event).encode(),
                [
                    ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
                    ("Lambda-Runtime-Invocation-Id", invocation.invocation_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
                    (
                        "Lambda-Runtime-Invoked-Function-Arn",
                        "arn:aws:lambda:us-east-1:000000000000:function:streamfn-local",
                    ),
                    ("Lambda-Runtime-Trace-Id", invocation.trace_id),
                ],
            )
            return
        parts = target.removeprefix(f"{API}/").split("/")
        if method == "POST" and parts[:1] == ["invocation"] and len(parts) == 3:
            request_id, what = parts[1], parts[2]
            invocation = self._by_id.get(request_id)
            if invocation is None and (late := self._timed_out.pop(request_id, None)):
                # Failed by its deadline already; the runtime ran on, as it may there.
                self._check_echo(environment, late, headers)
                await self._drain(next_event)
                self.record.late += 1
                self.record.calls.append((time.monotonic(), "late", request_id))
                await reply(410, INVOKE_TIMEOUT)
                return
            if invocation is None:
                self.violation(f"{what} for unknown or finished request id {request_id}")
                await self._drain(next_event)
                await reply(400, b'{"errorMessage":"unknown request id"}')
                return
            self._check_echo(environment, invocation, headers)
            if what == "response":
                await self._receive_response(invocation, headers, next_event)
                if invocation.timed_out:  # its deadline passed while it streamed
                    self._timed_out.pop(request_id, None)
                    self.record.late += 1
                    await reply(410, INVOKE_TIMEOUT)
                    return
                await reply(202, b'{"status":"OK"}')
                return
            if what == "error":
                document = await self._receive_error(headers, next_event)
                self.record.invocation_errors.append(document)
                self.record.calls.append((time.monotonic(), "error", request_id))
                invocation.outbox.put_nowait(("error", document))
                await reply(202, b'{"status":"OK"}')
                return
        if method == "GET" and target == f"{API}/restore/next":
            if not self.snapstart:
                self.violation("restore/next from a runtime that was not started for SnapStart")
            self.record.calls.append((time.monotonic(), "restore-asked", ""))
            await self._drain(next_event)
            await environment.restore.wait()
            self.record.calls.append((time.monotonic(), "restored", ""))
            environment.restored = True
            await reply(200)
            return
        if method == "POST" and target == f"{API}/restore/error":
            document = await self._receive_error(headers, next_event)
            self.record.restore_errors.append(document)
            self.record.calls.append((time.monotonic(), "restore-error", ""))
            await reply(202, b'{"status":"OK"}')
            return
        if method == "POST" and target == f"{API}/init/error":
            document = await self._receive_error(headers, next_event)
            self.record.init_errors.append(document)
            self.record.calls.append((time.monotonic(), "init-error", ""))
            await reply(202, b'{"status":"OK"}')
            return
        self.violation(f"unknown Runtime API call: {method} {target}")
        await self._drain(next_event)
        await reply(404, b'{"errorMessage":"not found"}')

    def _check_echo(
        self, environment: Environment, invocation: Invocation, headers: dict[str, str]
    ) -> None:
        """The attempt's Lambda-Runtime-Invocation-Id, echoed as sent with `next`. Required of a
        runtime serving many at once, where a late answer must not pass for a current one."""
        echoed = headers.get(INVOCATION_ID)
        self.record.echoed.setdefault(invocation.request_id, []).append(echoed)
        if echoed is None and environment.max_concurrency is not None:
            self.violation(f"no Lambda-Runtime-Invocation-Id echoed for {invocation.request_id}")
        elif echoed is not None and echoed != invocation.invocation_id:
            self.violation(
                f"Lambda-Runtime-Invocation-Id {echoed!r} for {invocation.request_id}, "
                f"sent {invocation.invocation_id!r}"
            )

    async def _drain(self, next_event: Any) -> bytes:
        body = bytearray()
        while True:
            event = await next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)

    async def _receive_error(self, headers: dict[str, str], next_event: Any) -> dict[str, Any]:
        body = await self._drain(next_event)
        try:
            document = json.loads(body)
        except ValueError:
            self.violation(f"an error document that is not JSON: {body[:100]!r}")
            return {}
        if not isinstance(document, dict) or not {"errorMessage", "errorType"} <= document.keys():
            self.violation(f"an error document without errorMessage and errorType: {document!r}")
        if ERROR_TYPE not in headers:
            self.violation("an error report without Lambda-Runtime-Function-Error-Type")
        return document if isinstance(document, dict) else {}

    async def _receive_response(
        self, invocation: Invocation, headers: dict[str, str], next_event: Any
    ) -> None:
        expected = {
            "lambda-runtime-function-response-mode": "streaming",
            "transfer-encoding": "chunked",
            "content-type": PRELUDE_TYPE,
        }
        for name, value in expected.items():
            if headers.get(name, "").lower() != value:
                self.violation(f"response header {name}: {headers.get(name)!r}, expected {value!r}")
        declared = {t.strip().lower() for t in headers.get("trailer", "").split(",") if t.strip()}
        if declared != {ERROR_TYPE, ERROR_BODY}:
            self.violation(
                f"Trailer header declares {sorted(declared)}, expected the two error trailers"
            )
        self.record.calls.append((time.monotonic(), "response", invocation.request_id))
        head = bytearray()
        prelude_seen = False
        while True:
            event = await next_event()
            if isinstance(event, h11.Data):
                if prelude_seen:
                    invocation.outbox.put_nowait(("data", bytes(event.data)))
                    continue
                head += event.data
                index = head.find(DELIMITER)
                if index < 0:
                    continue
                prelude_seen = True
                invocation.outbox.put_nowait(("prelude", self._check_prelude(bytes(head[:index]))))
                rest = bytes(head[index + len(DELIMITER) :])
                if rest:
                    invocation.outbox.put_nowait(("data", rest))
            elif isinstance(event, h11.EndOfMessage):
                trailers = {k.decode().lower(): v.decode() for k, v in event.headers}
                self._check_trailers(trailers, declared)
                self.record.trailers[invocation.request_id] = trailers
                self.record.calls.append((time.monotonic(), "response-end", invocation.request_id))
                if not prelude_seen:
                    self.violation("the response ended without a prelude and its 8 NUL bytes")
                    invocation.outbox.put_nowait(("error", {"errorType": "Runtime.NoPrelude"}))
                    return
                invocation.outbox.put_nowait(("end", trailers))
                return

    def _check_prelude(self, raw: bytes) -> dict[str, Any]:
        try:
            prelude = json.loads(raw)
        except ValueError:
            self.violation(f"prelude is not JSON: {raw[:200]!r}")
            return {"statusCode": 502, "headers": {}, "cookies": []}
        status = prelude.get("statusCode") if isinstance(prelude, dict) else None
        if not isinstance(status, int) or not 100 <= status <= 599:
            self.violation(f"prelude statusCode is not an HTTP status: {prelude!r}")
            return {"statusCode": 502, "headers": {}, "cookies": []}
        headers = prelude.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            self.violation(f"prelude headers must map strings to strings: {headers!r}")
            headers = {}
        if any(k.lower() == "set-cookie" for k in headers):
            self.violation("Set-Cookie belongs in the prelude's cookies, not its headers")
        cookies = prelude.get("cookies", [])
        if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
            self.violation(f"prelude cookies must be a list of strings: {cookies!r}")
            cookies = []
        return {"statusCode": status, "headers": headers, "cookies": cookies}

    def _check_trailers(self, trailers: dict[str, str], declared: set[str]) -> None:
        if undeclared := set(trailers) - declared:
            self.violation(f"trailers not declared in the Trailer header: {sorted(undeclared)}")
        if ERROR_TYPE in trailers:
            try:
                json.loads(base64.b64decode(trailers.get(ERROR_BODY, ""), validate=True))
            except (ValueError, binascii.Error):
                self.violation(
                    "Lambda-Runtime-Function-Error-Body is not base64 of a JSON document"
                )
