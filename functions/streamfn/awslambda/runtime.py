"""The runtime: init once, then serve invocations (loop.py) until Lambda stops the environment.

The managed Python runtime buffers a handler's return value; this runtime replaces it (started
by `AWS_LAMBDA_EXEC_WRAPPER`, see functions/bootstrap) so that responses stream. One event loop
lives for the life of the environment, so the app's clients (and their connection pools) are
created once and reused by every invocation; on Lambda Managed Instances
(`AWS_LAMBDA_MAX_CONCURRENCY` above 1) that one process serves that many invocations at once.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import signal
import socket
import sys
from typing import Any, cast

from aws_lambda_powertools import Logger
from starlette.types import ASGIApp, Message

from streamfn.awslambda import invocation_context, snapstart
from streamfn.awslambda.invocation_context import InvocationFormatter
from streamfn.awslambda.loop import Loops, max_concurrency
from streamfn.awslambda.runtime_api import RuntimeAPI
from streamfn.awslambda.secrets import load_secrets

DEFAULT_APP = "streamfn.app:create_app"
LOG_SOCKET = "_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET"
logger = logging.getLogger(__name__)


def load_app(spec: str) -> ASGIApp:
    """`module:attribute`, an ASGI app or a factory whose arguments all have defaults."""
    module_name, _, attribute = spec.partition(":")
    target: Any = getattr(importlib.import_module(module_name), attribute or "app")
    if callable(target) and not isinstance(target, type):
        parameters = inspect.signature(target).parameters.values()
        if all(p.default is not p.empty for p in parameters):
            target = target()
    return cast(ASGIApp, target)


class Lifespan:
    """Drives the app's ASGI lifespan: startup at init, shutdown when Lambda stops us."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        try:
            await self._app(scope, self._inbox.get, self._outbox.put)
        except Exception:
            # An app without lifespan support raises on the lifespan scope; that is allowed.
            logger.debug("the app does not support the lifespan protocol", exc_info=True)
        finally:
            await self._outbox.put({"type": "lifespan.gone"})

    async def _exchange(self, message: str) -> None:
        await self._inbox.put({"type": message})
        reply = await self._outbox.get()
        if reply["type"].endswith(".failed"):
            raise RuntimeError(f"{message} failed: {reply.get('message', '')}")

    async def startup(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        await self._exchange("lifespan.startup")

    async def shutdown(self) -> None:
        if self._task is not None and not self._task.done():
            await self._exchange("lifespan.shutdown")
            await self._task


def _log_to_the_platform() -> None:
    """On Lambda Managed Instances the platform gives runtimes a socket for what they write
    (`_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET`): AWS's Python runtime connects each of its
    workers' stdout and stderr to it (aws-lambda-python-runtime-interface-client,
    awslambdaric/lambda_multi_concurrent_utils.py, `_redirect_output`), and so does this one
    process. Elsewhere the variable is unset and stdout is the function's log as always."""
    path = os.environ.get(LOG_SOCKET)
    if not path:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.connect(path)
                os.dup2(connection.fileno(), stream.fileno())
        except OSError as exc:
            sys.stderr.write(f"streamfn: log socket {path} not usable ({exc}); writing to stdio\n")


def _configure_logging() -> Logger:
    """JSON lines through Powertools Logger, for streamfn's loggers and everyone else's: its
    handler sits on the root logger, so the invocation's keys (request id, trace id), which the
    loop sets in the invocation's context, reach every line logged during it."""
    powertools = Logger(
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", "streamfn"),
        logger_formatter=InvocationFormatter(),
    )
    root = logging.getLogger()
    root.handlers = [powertools.registered_handler]
    # Powertools' own stdlib logger (named after the service, "streamfn" by default) has the same
    # handler; it must not pass records on to the root as well, or each line would be written twice.
    logging.getLogger(powertools.service).propagate = False
    root.setLevel(os.environ.get("AWS_LAMBDA_LOG_LEVEL") or os.environ.get("LOG_LEVEL") or "INFO")
    # httpx2 logs every upstream request at INFO ("HTTP Request: POST ..."): a second JSON line
    # per invocation, after the "request ended" line that says more. Its warnings still show.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    return powertools


async def run(api: RuntimeAPI, app_spec: str, log: Logger) -> int:
    try:
        await asyncio.to_thread(load_secrets)  # provider keys, before any settings are read
        app = load_app(app_spec)
        lifespan = Lifespan(app)
        await lifespan.startup()
    except Exception as exc:
        kind = "Runtime.ImportModuleError" if isinstance(exc, ImportError) else "Runtime.InitError"
        logger.exception("init failed")
        await api.init_error(exc, kind)
        return 1
    if snapstart.enabled():

        async def rebuild() -> None:
            nonlocal app, lifespan
            app = load_app(app_spec)  # from the keys as they are now; its modules are loaded
            lifespan = Lifespan(app)
            await lifespan.startup()

        try:
            await snapstart.checkpoint(api, lifespan.shutdown, rebuild)
        except snapstart.SnapStartError:
            return 1

    slots = max_concurrency()
    if slots > 1:
        # Segments and subsegments per invocation, with no process-wide trace header.
        await asyncio.to_thread(invocation_context.install_xray_context)
    loop = asyncio.get_running_loop()
    logger.info("serving up to %d invocation(s) at once, on %s", slots, type(loop).__module__)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    code = await Loops(app, api, log, slots=slots).run(stop)
    await lifespan.shutdown()
    return code


def main() -> None:
    _log_to_the_platform()
    log = _configure_logging()
    api = RuntimeAPI(os.environ["AWS_LAMBDA_RUNTIME_API"])
    app_spec = os.environ.get("STREAMFN_LAMBDA_APP", DEFAULT_APP)
    sys.exit(_event_loop_runner()(run(api, app_spec, log)))


def _event_loop_runner() -> Any:
    """uvloop's `run` where it is installed (the layer has it): asyncio's own event loop and
    socket transports are Python, about 40% of this runtime's CPU per token (py-spy, a stream at
    full speed); uvloop's are libuv's, as uvicorn's loop is. asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - only where uvloop is not built (Windows)
        return asyncio.run
    return uvloop.run
