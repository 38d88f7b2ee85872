"""A Lambda function URL on localhost, with no Docker and no AWS account: `make run-lambda`.

It turns each HTTP request into a function URL event (payload format 2.0), serves the Lambda
Runtime API on loopback, runs `functions/bootstrap` as a child process against it, and relays
the streamed prelude and body to the HTTP client as they arrive. It checks what the runtime sends
(headers, chunk framing, prelude, trailers, error documents) and reports every violation loudly.

AWS's Runtime Interface Emulator accepts streamed responses but hands the invoker the body all at
once and drops trailers, so it cannot show streaming; the tests use it as a second opinion.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import h11
import uvicorn

if __package__:
    from local.url_cors import UrlCors, reserved_concurrency
else:  # run as a script: python local/lambda_emulator.py
    from url_cors import UrlCors, reserved_concurrency  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "functions" / "bootstrap"
API = "/2018-06-01/runtime"
PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\0" * 8
ERROR_TYPE = "lambda-runtime-function-error-type"
ERROR_BODY = "lambda-runtime-function-error-body"
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")

logger = logging.getLogger("lambda-emulator")


@dataclass
class Invocation:
    request_id: str
    event: dict[str, Any]
    deadline_ms: int
    # The X-Ray header Lambda passes on with active tracing: a root, a parent, sampled.
    trace_id: str = field(
        default_factory=lambda: (
            f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
            f"Parent={uuid.uuid4().hex[:16]};Sampled=1"
        )
    )
    # What the runtime sent, for the HTTP client: ("prelude", dict), ("data", bytes),
    # ("end", trailers), ("error", document).
    outbox: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    environment: Environment | None = None  # the one serving it


@dataclass
class Record:
    """What happened, for tests: Runtime API calls in order, errors, trailers, violations."""

    # (time.monotonic(), what, request id); "asked" is the runtime's GET .../next arriving,
    # "next" that GET being answered with an invocation.
    calls: list[tuple[float, str, str]] = field(default_factory=list)
    invocation_errors: list[dict[str, Any]] = field(default_factory=list)
    init_errors: list[dict[str, Any]] = field(default_factory=list)
    restore_errors: list[dict[str, Any]] = field(default_factory=list)
    trailers: dict[str, dict[str, str]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    runtime_starts: int = 0
    throttled: int = 0  # requests answered 429: every environment busy at the concurrency limit
    oversized: int = 0  # requests answered 413: an event over the 6 MB invocation payload
    preflights: int = 0  # answered by the URL's CORS settings, without an invocation
    logs: list[str] = field(default_factory=list)
    trace_ids: dict[str, str] = field(default_factory=dict)  # request id -> X-Ray header


def function_url_event(
    method: str,
    path: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    source_ip: str,
    host: str,
) -> dict[str, Any]:
    """A function URL request event, payload format 2.0, as AWS builds it
    (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads)."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    params: dict[str, str] = {}
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    content_type = joined.get("content-type", "")
    try:
        text = body.decode("utf-8")
        is_text = not body or content_type.startswith(TEXT_TYPES)
    except UnicodeDecodeError:
        is_text = False
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query.decode("latin-1"),
        "headers": joined,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "localfunctionurl",
            "domainName": host,
            "domainPrefix": "localfunctionurl",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    if body:
        event["body"] = text if is_text else base64.b64encode(body).decode()
    return event


@dataclass(eq=False)
class Environment:
    """One execution environment: a runtime process with a Runtime API of its own, serving one
    invocation at a time."""

    number: int
    pending: asyncio.Queue[Invocation] = field(default_factory=asyncio.Queue)
    server: asyncio.Server | None = None
    port: int = 0
    child: asyncio.subprocess.Process | None = None
    busy: bool = False  # an invocation is assigned to it and not finished
    gone: bool = False  # stopped, timed out or exited: never assigned again
    restore: asyncio.Event = field(default_factory=asyncio.Event)  # SnapStart's restore signal
    restored: bool = False
    log_task: asyncio.Future[None] | None = None


THROTTLED = b'{"Message":"Rate Exceeded."}'
# Lambda's quotas for a function URL with response streaming
# (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html and
# configuration-response-streaming.html): a 6 MB invocation payload (the request's event), a
# 200 MB streamed response whose first 6 MB go at full speed and the rest at up to 2 MB/s.
MAX_REQUEST = 6 * 1024 * 1024
MAX_RESPONSE = 200 * 1024 * 1024
UNCAPPED = 6 * 1024 * 1024
CAPPED_RATE = 2 * 1024 * 1024  # bytes per second past the first 6 MB


class Emulator:
    """The function URL, the Runtime API and the child runtimes, on one event loop.

    Like Lambda, it runs one invocation per execution environment and starts another runtime
    process for a request that finds every environment busy, up to `concurrency` (the
    template's reserved concurrency); beyond that a request is throttled as a function URL
    throttles it: 429, and the function is not invoked.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str | None] | None = None,
        timeout_s: float = 300,
        bootstrap: Path = BOOTSTRAP,
        echo_logs: bool = False,
        cors: UrlCors | None = None,
        snapstart: bool = False,
        concurrency: int = 10,
        python: Path | None = None,
    ) -> None:
        self.env = dict(env or {})
        # The interpreter the runtime runs on (its packages): this one's unless given, as a
        # benchmark gives one with only the Lambda layer's packages.
        self.python = python or Path(sys.executable)
        self.concurrency = concurrency
        self.cors = cors  # the URL's CORS settings; None: the function's headers pass as sent
        # SnapStart: the runtime starts with AWS_LAMBDA_INITIALIZATION_TYPE=snap-start, and its
        # GET .../restore/next (the snapshot point) is answered when the first invocation comes,
        # as a restore on demand would be.
        self.snapstart = snapstart
        self.timeout_s = timeout_s
        self.bootstrap = bootstrap
        self.echo_logs = echo_logs
        self.record = Record()
        self._by_id: dict[str, Invocation] = {}
        self.environments: list[Environment] = []
        self._front: uvicorn.Server | None = None
        self.port = 0
        self._handlers: set[asyncio.Task[Any]] = set()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, *, port: int = 0, host: str = "127.0.0.1", runtime: bool = True) -> None:
        """Serve the function URL; with `runtime`, start one environment now rather than on
        the first request."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._function_url, log_level="warning", lifespan="off", interface="asgi3"
        )
        self._front = uvicorn.Server(config)
        self._front_task = asyncio.ensure_future(self._front.serve(sockets=[sock]))
        while not self._front.started:  # uvicorn offers no event to wait on  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if runtime:
            await self.start_runtime()

    def _live(self) -> list[Environment]:
        return [e for e in self.environments if not e.gone]

    async def start_runtime(self, *, reserved: bool = False) -> Environment:
        """A new environment: its Runtime API, then `functions/bootstrap` as Lambda would start
        it: a fresh process, a cold start. `reserved`: busy from the start, for the request
        that asked for it (no other request may take it while it starts)."""
        environment = Environment(number=self.record.runtime_starts + 1, busy=reserved)
        self.record.runtime_starts += 1
        self.environments.append(environment)
        environment.server = await asyncio.start_server(
            lambda r, w: self._serve_runtime_api(environment, r, w), "127.0.0.1", 0
        )
        environment.port = environment.server.sockets[0].getsockname()[1]
        merged = {**os.environ, **self.env}  # a None in `env` unsets the variable
        env = {
            **{k: v for k, v in merged.items() if v is not None},
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{environment.port}",
            "AWS_LAMBDA_FUNCTION_NAME": "streamfn-local",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "LAMBDA_TASK_ROOT": str(self.bootstrap.parent),
            "AWS_REGION": self.env.get("AWS_REGION", "us-east-1"),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start" if self.snapstart else "on-demand",
            "PATH": f"{self.python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        environment.child = await asyncio.create_subprocess_exec(
            str(self.bootstrap),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        environment.log_task = asyncio.ensure_future(self._read_logs(environment))
        return environment

    async def _assign(self, invocation: Invocation) -> Environment | None:
        """An idle environment for `invocation` (a new one if none is idle and there is room),
        or None: throttled."""
        environment = next((e for e in self._live() if not e.busy), None)
        if environment is None:
            if len(self._live()) >= self.concurrency:
                return None
            environment = await self.start_runtime(reserved=True)
        environment.busy = True
        environment.restore.set()  # SnapStart: an environment is restored when it is needed
        await environment.pending.put(invocation)
        return environment

    async def _end(self, environment: Environment) -> None:
        environment.gone = True
        if environment.child is not None and environment.child.returncode is None:
            environment.child.terminate()
            try:
                await asyncio.wait_for(environment.child.wait(), 5)
            except TimeoutError:
                environment.child.kill()
                await environment.child.wait()
        if environment.server is not None:
            environment.server.close()

    async def stop_runtime(self) -> None:
        """End every environment (the next request starts a new one: a cold start)."""
        for environment in self._live():
            await self._end(environment)

    async def stop(self) -> None:
        await self.stop_runtime()
        if self._front is not None:
            self._front.should_exit = True
            await self._front_task
        # Runtime API connections still open (a `next` that no invocation will answer).
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _read_logs(self, environment: Environment) -> None:
        child = environment.child
        assert child is not None
        assert child.stdout is not None
        label = "[lambda]" if environment.number == 1 else f"[lambda {environment.number}]"
        async for raw in child.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.record.logs.append(line)
            if self.echo_logs:
                sys.stderr.write(f"{label} {line}\n")
        code = await child.wait()
        if code and self.echo_logs:
            sys.stderr.write(f"{label} the runtime exited with {code}\n")
        environment.gone = True
        if environment.server is not None:
            environment.server.close()
        for invocation in list(self._by_id.values()):  # a dead runtime answers nobody
            if invocation.environment is environment:
                invocation.outbox.put_nowait(("error", {"errorType": "Runtime.ExitError"}))

    def violation(self, message: str) -> None:
        self.record.violations.append(message)
        logger.error("RUNTIME API CONTRACT VIOLATION: %s", message)
        if self.echo_logs:
            sys.stderr.write(f"\n*** RUNTIME API CONTRACT VIOLATION: {message} ***\n\n")

    # --- the function URL -------------------------------------------------------------------

    async def _function_url(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if self.cors is not None and scope["method"] == "OPTIONS":
            answer = self.cors.preflight(headers)
            if answer is not None:  # the URL answers preflights; the function never sees them
                self.record.preflights += 1
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(k.encode(), v.encode()) for k, v in answer],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        event = function_url_event(
            scope["method"],
            scope["raw_path"].decode() if scope.get("raw_path") else scope["path"],
            scope["query_string"],
            scope["headers"],
            bytes(body),
            scope["client"][0] if scope.get("client") else "127.0.0.1",
            headers.get("host", "localhost"),
        )
        if len(json.dumps(event)) > MAX_REQUEST:  # refused by the URL, never invoked
            self.record.oversized += 1
            message = f"Request must be smaller than {MAX_REQUEST} bytes for the InvokeFunction"
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            body = json.dumps({"Message": f"{message} operation"}).encode()
            await send({"type": "http.response.body", "body": body})
            return
        invocation = Invocation(
            request_id=str(uuid.uuid4()),
            event=event,
            deadline_ms=int((time.time() + self.timeout_s) * 1000),
        )
        self._by_id[invocation.request_id] = invocation
        environment = await self._assign(invocation)
        if environment is None:
            self._by_id.pop(invocation.request_id, None)
            self.record.throttled += 1
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"x-amzn-errortype", b"TooManyRequestsException"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": THROTTLED})
            return
        invocation.environment = environment
        try:
            await self._relay(invocation, send, headers)
        finally:
            self._by_id.pop(invocation.request_id, None)
            environment.busy = False

    async def _relay(
        self, invocation: Invocation, send: Any, request_headers: Mapping[str, str]
    ) -> None:
        started = False
        relayed = 0
        capped_since: float | None = None
        while True:
            remaining = invocation.deadline_ms / 1000 - time.time()
            try:
                kind, value = await asyncio.wait_for(invocation.outbox.get(), max(remaining, 0) + 1)
            except TimeoutError:
                # Lambda ends an invocation that outlives its timeout, and the environment with it.
                logger.error("invocation %s timed out", invocation.request_id)
                if invocation.environment is not None:
                    await self._end(invocation.environment)
                kind, value = "error", {"errorType": "Sandbox.Timedout"}
            if kind == "prelude":
                pairs = [(k, str(v)) for k, v in value.get("headers", {}).items()]
                if self.cors is not None:
                    pairs = self.cors.response_headers(request_headers, pairs)
                headers = [(k.encode(), v.encode()) for k, v in pairs]
                headers += [(b"set-cookie", c.encode()) for c in value.get("cookies", [])]
                await send(
                    {
                        "type": "http.response.start",
                        "status": value["statusCode"],
                        "headers": headers,
                    }
                )
                started = True
            elif kind == "data":
                relayed += len(value)
                if relayed > MAX_RESPONSE:
                    self.violation(f"response of {invocation.request_id} exceeds 200 MB: cut")
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                if relayed > UNCAPPED:  # the bandwidth past the first 6 MB
                    now = time.monotonic()
                    capped_since = now if capped_since is None else capped_since
                    due = capped_since + (relayed - UNCAPPED) / CAPPED_RATE
                    if due > now:
                        await asyncio.sleep(due - now)
                await send({"type": "http.response.body", "body": value, "more_body": True})
            elif kind == "end":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            elif kind == "error":
                if not started:
                    # What a function URL answers for a function error.
                    body = b'{"Message":"Internal Server Error"}'
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 502,
                            "headers": [(b"content-type", b"application/json")],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                else:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return

    # --- the Runtime API ------------------------------------------------------------------

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
            invocation = await environment.pending.get()
            self.record.calls.append((time.monotonic(), "next", invocation.request_id))
            self.record.trace_ids[invocation.request_id] = invocation.trace_id
            await reply(
                200,
                json.dumps(invocation.event).encode(),
                [
                    ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(invocation.deadline_ms)),
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
            if invocation is None:
                self.violation(f"{what} for unknown or finished request id {request_id}")
                await self._drain(next_event)
                await reply(400, b'{"errorMessage":"unknown request id"}')
                return
            if what == "response":
                await self._receive_response(invocation, headers, next_event)
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


class EmulatorThread:
    """The emulator on its own event loop in a background thread (tests, benchmarks)."""

    def __init__(self, **options: Any) -> None:
        self.emulator = Emulator(**options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.emulator.port}"

    @property
    def record(self) -> Record:
        return self.emulator.record

    def call(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        self.call(self.emulator.start())
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self.call(self.emulator.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


def env_json(path: Path, function: str = "StreamFunction") -> dict[str, str | None]:
    """The variables `sam local --env-vars` would give `function` from an env.json file: the
    `Parameters` section for every function, then the function's own section."""
    document = json.loads(path.read_text())
    merged = {**document.get("Parameters", {}), **document.get(function, {})}
    return {name: str(value) for name, value in merged.items()}


async def _main() -> None:
    port = int(os.environ.get("PORT", "9000"))
    host = os.environ.get("HOST", "127.0.0.1")
    timeout_s = float(os.environ.get("STREAMFN_LAMBDA_TIMEOUT_S", "300"))
    env_file = os.environ.get("ENV_JSON")
    env = env_json(Path(env_file)) if env_file else {}
    # The URL's CORS as template.yaml configures it; CORS_ALLOWED_ORIGINS stands for the
    # CorsAllowedOrigins parameter a deploy would be given.
    origins = os.environ.get("CORS_ALLOWED_ORIGINS")
    cors = UrlCors.from_template(parameters={"CorsAllowedOrigins": origins} if origins else {})
    snapstart = os.environ.get("SNAPSTART", "") not in ("", "0")  # the SnapStart lifecycle
    # Environments up to the function's reserved concurrency, as template.yaml sets it;
    # CONCURRENCY stands for the ReservedConcurrency parameter.
    given = os.environ.get("CONCURRENCY")
    concurrency = reserved_concurrency(parameters={"ReservedConcurrency": given} if given else {})
    emulator = Emulator(
        timeout_s=timeout_s,
        echo_logs=True,
        env=env,
        cors=cors,
        snapstart=snapstart,
        concurrency=concurrency or 1000,  # Lambda's default account limit
    )
    await emulator.start(port=port, host=host)
    sys.stderr.write(
        f"streamfn: Lambda function URL emulator at http://{host}:{port}/ "
        f"(up to {emulator.concurrency} concurrent environments, timeout {timeout_s:g} s; "
        "Ctrl+C to stop)\n"
    )
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
