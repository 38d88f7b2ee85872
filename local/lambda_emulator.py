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
from pathlib import Path
from typing import Any

import uvicorn

if not __package__:  # run as a script (python local/lambda_emulator.py): import as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from local.emulated import (
    MANAGED_INIT_LIMIT_S,
    Environment,
    Invocation,
    Record,
    function_url_event,
)
from local.runtime_api_server import RuntimeAPIServer
from local.stack import LocalStack, banner, template_parameters, wants_key
from local.url_cors import UrlCors, reserved_concurrency

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "functions" / "bootstrap"

logger = logging.getLogger("lambda-emulator")


THROTTLED = b'{"Message":"Rate Exceeded."}'
# Lambda's quotas for a function URL with response streaming
# (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html and
# configuration-response-streaming.html): a 6 MB invocation payload (the request's event), a
# 200 MB streamed response whose first 6 MB go at full speed and the rest at up to 2 MB/s.
MAX_REQUEST = 6 * 1024 * 1024
MAX_RESPONSE = 200 * 1024 * 1024
UNCAPPED = 6 * 1024 * 1024
CAPPED_RATE = 2 * 1024 * 1024  # bytes per second past the first 6 MB


class Emulator(RuntimeAPIServer):
    """The function URL, the Runtime API and the child runtimes, on one event loop.

    Like Lambda, it runs one invocation per execution environment and starts another runtime
    process for a request that finds every environment busy, up to `concurrency` (the
    template's reserved concurrency); beyond that a request is throttled as a function URL
    throttles it: 429, and the function is not invoked.

    With `max_concurrency` it is Lambda Managed Instances instead
    (https://docs.aws.amazon.com/lambda/latest/dg/lambda-managed-instances-execution-environment.html):
    each runtime process starts with AWS_LAMBDA_MAX_CONCURRENCY set and takes up to that many
    invocations at once, each with its own deadline; an invocation goes only to a runtime loop
    waiting in `next`, and a request that finds none is throttled while another environment
    starts (there, up to `concurrency` environments), as Managed Instances scale asynchronously
    rather than on a cold start ("Backpressure handling ... new invocation requests will be
    rejected until a worker becomes available"). A timeout fails its invocation alone: "Lambda
    marks that specific invocation as failed but does not interrupt other running invocations or
    terminate the execution environment".
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
        max_concurrency: int | None = None,
    ) -> None:
        self.env = dict(env or {})
        # The interpreter the runtime runs on (its packages): this one's unless given, as a
        # benchmark gives one with only the Lambda layer's packages.
        self.python = python or Path(sys.executable)
        self.concurrency = concurrency
        self.max_concurrency = max_concurrency  # set: Lambda Managed Instances
        self.cors = cors  # the URL's CORS settings; None: the function's headers pass as sent
        if cors is not None:
            # As template.yaml hands the function the URL's origins, which it holds to.
            self.env.setdefault("STREAMFN_CORS_ORIGINS", ",".join(cors.allow_origins))
        # SnapStart: the runtime starts with AWS_LAMBDA_INITIALIZATION_TYPE=snap-start, and its
        # GET .../restore/next (the snapshot point) is answered when the first invocation comes,
        # as a restore on demand would be.
        self.snapstart = snapstart
        self.timeout_s = timeout_s
        self.bootstrap = bootstrap
        self.echo_logs = echo_logs
        self.record = Record()
        self._by_id: dict[str, Invocation] = {}
        self._timed_out: dict[str, Invocation] = {}
        self._scaling_out: asyncio.Future[Environment] | None = None
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
        if self.max_concurrency is not None:
            logger.info(
                "Lambda Managed Instances: each runtime takes up to %d invocations at once",
                self.max_concurrency,
            )
        if runtime:
            await self.start_runtime()

    def _live(self) -> list[Environment]:
        return [e for e in self.environments if not e.gone]

    async def start_runtime(self, *, reserved: bool = False) -> Environment:
        """A new environment: its Runtime API, then `functions/bootstrap` as Lambda would start
        it: a fresh process, a cold start. `reserved`: busy from the start, for the request
        that asked for it (no other request may take it while it starts)."""
        environment = Environment(
            number=self.record.runtime_starts + 1,
            busy=reserved,
            max_concurrency=self.max_concurrency,
        )
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
        if self.max_concurrency is not None:
            env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(self.max_concurrency)
        else:
            env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)
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
        if self.max_concurrency is not None:
            return await self._assign_managed(invocation)
        environment = next((e for e in self._live() if not e.busy), None)
        if environment is None:
            if len(self._live()) >= self.concurrency:
                return None
            environment = await self.start_runtime(reserved=True)
        environment.busy = True
        environment.restore.set()  # SnapStart: an environment is restored when it is needed
        await environment.pending.put(invocation)
        return environment

    async def _assign_managed(self, invocation: Invocation) -> Environment | None:
        """Managed Instances: the environment with the most runtime loops waiting in `next`, or
        None (throttled) if no loop waits; then another environment starts, if there is room."""
        if not self._live():
            await self.start_runtime()
        live = self._live()
        if not any(e.ready.is_set() for e in live):
            # Init: "complete when ... at least one runtime worker has called
            # /runtime/invocation/next"; nothing is routed before.
            await self._until_ready(live, invocation.init_limit_s)
        environment = max(
            (e for e in self._live() if e.idle > 0), key=lambda e: e.idle, default=None
        )
        if environment is None:
            scaling = self._scaling_out is not None and not self._scaling_out.done()
            if not scaling and len(self._live()) < self.concurrency:
                self._scaling_out = asyncio.ensure_future(self.start_runtime())
            return None
        await environment.pending.put(invocation)
        return environment

    async def _until_ready(self, environments: list[Environment], limit_s: float) -> None:
        """Until one of `environments` has asked for an invocation, all have exited, or the
        init limit has passed."""
        deadline = time.monotonic() + limit_s
        while not any(e.ready.is_set() for e in environments):
            if all(e.gone for e in environments) or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.02)  # whichever of ready or exit comes first

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
            timeout_s=self.timeout_s,
        )
        if self.max_concurrency is not None:
            invocation.init_limit_s = max(MANAGED_INIT_LIMIT_S, self.timeout_s)
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
            environment.busy = False  # (Managed Instances count idle loops instead)

    async def _relay(
        self, invocation: Invocation, send: Any, request_headers: Mapping[str, str]
    ) -> None:
        started = False
        relayed = 0
        capped_since: float | None = None
        while True:
            remaining = invocation.ends_at() - time.time()
            try:
                kind, value = await asyncio.wait_for(invocation.outbox.get(), max(remaining, 0) + 1)
            except TimeoutError:
                logger.error("invocation %s timed out", invocation.request_id)
                if self.max_concurrency is not None:
                    # Managed Instances fail this invocation alone; its runtime may answer late.
                    invocation.timed_out = True
                    self._timed_out[invocation.request_id] = invocation
                elif invocation.environment is not None:
                    # Lambda ends an invocation that outlives its timeout, and the environment
                    # with it.
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

    def wait_for(self, call: str, count: int = 1, timeout_s: float = 20) -> None:
        """Until the runtimes have made `call` (a `Record.calls` name) `count` times."""
        deadline = time.monotonic() + timeout_s
        while sum(c[1] == call for c in self.record.calls) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the runtime made {call} fewer than {count} times")
            time.sleep(0.01)

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
    # The template's parameters as a deploy is given them (PARAMETERS="Name=Value ...";
    # CORS_ALLOWED_ORIGINS and CONCURRENCY stand for CorsAllowedOrigins and ReservedConcurrency).
    parameters = template_parameters(os.environ)
    # The deployed stack, locally (issue #23): the template's tables on moto's DynamoDB and the
    # variables the template gives the function, an env.json's on top (as `sam local
    # --env-vars` puts them).
    stack = LocalStack(parameters=parameters)
    await asyncio.to_thread(stack.start)
    env = {**stack.function_env(), **(env_json(Path(env_file)) if env_file else {})}
    # The URL's CORS as template.yaml configures it.
    cors = UrlCors.from_template(parameters=parameters)
    snapstart = os.environ.get("SNAPSTART", "") not in ("", "0")  # the SnapStart lifecycle
    # Environments up to the function's reserved concurrency, as template.yaml sets it.
    concurrency = reserved_concurrency(parameters=parameters)
    # MAX_CONCURRENCY=N: Lambda Managed Instances, one runtime process taking N invocations at
    # once (the template's StreamsPerEnvironment); one environment unless CONCURRENCY asks more.
    given = os.environ.get("MAX_CONCURRENCY")
    max_concurrency = int(given) if given else None
    if max_concurrency is not None and not os.environ.get("CONCURRENCY"):
        concurrency = 1
    emulator = Emulator(
        timeout_s=timeout_s,
        echo_logs=True,
        env=env,
        cors=cors,
        snapstart=snapstart,
        concurrency=concurrency or 1000,  # Lambda's default account limit
        max_concurrency=max_concurrency,
    )
    try:
        # Stored as `streamfn keys create` stores one, while the runtime starts.
        key = asyncio.ensure_future(stack.create_key()) if wants_key(env) else None
        await emulator.start(port=port, host=host)
        url = f"http://{host}:{emulator.port}"
        sys.stderr.write(
            f"streamfn: Lambda function URL emulator at {url}/ "
            f"(up to {emulator.concurrency} concurrent environments, timeout {timeout_s:g} s; "
            "Ctrl+C to stop)\n"
        )
        sys.stderr.write(banner(stack, url, await key if key is not None else None, cors))
        await asyncio.Event().wait()
    finally:
        await emulator.stop()
        stack.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
