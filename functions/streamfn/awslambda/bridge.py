"""One invocation: a function URL (or streaming REST API) event in, an ASGI app run, its response
streamed out to the Runtime API as the app sends it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from mangum.handlers import APIGateway, HTTPGateway
from mangum.types import LambdaConfig
from mangum.types import LambdaContext as MangumContext
from starlette.types import ASGIApp, Message, Scope

from streamfn.awslambda.runtime_api import Invocation, RuntimeAPI, StreamedResponse

logger = logging.getLogger(__name__)

_CONFIG: LambdaConfig = {"api_gateway_base_path": "/", "text_mime_types": [], "exclude_headers": []}
SHUTDOWN_REPORT_S = 0.1  # to end a response cut short by the shutdown


class UnsupportedEvent(ValueError):
    """The event is not an HTTP request this runtime can serve."""


@dataclass
class LambdaContext:
    """The `context` object Lambda's own Python runtime hands a handler, for the app's use
    (Mangum and Powertools read the same attributes from `scope["aws.context"]`)."""

    aws_request_id: str
    invoked_function_arn: str
    deadline_ms: int
    # The invocation's X-Ray header (`Root=...;Parent=...;Sampled=...`), as Rust's
    # `Context.xray_trace_id`: with many invocations in one process there is no
    # `_X_AMZN_TRACE_ID` to read it from (invocation_context).
    xray_trace_id: str | None = None
    function_name: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    )
    function_version: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    )
    memory_limit_in_mb: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    )
    log_group_name: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
    )
    log_stream_name: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
    )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def scope_for(event: dict[str, Any], context: LambdaContext) -> tuple[Scope, bytes]:
    """The ASGI scope and body of an HTTP event.

    Mangum's translation does the work (headers, cookies into `cookie`, query strings of both
    payload formats, base64 bodies, the source IP as `client`); what is added here is `raw_path`
    (Mangum leaves it None, and payload 2.0 has it) and a clear error for other events.
    """
    mangum_context = cast(MangumContext, context)
    handler: HTTPGateway | APIGateway
    if HTTPGateway.infer(event, mangum_context, _CONFIG):  # payload 2.0: function URLs
        handler = HTTPGateway(event, mangum_context, _CONFIG)
    elif APIGateway.infer(event, mangum_context, _CONFIG):  # payload 1.0: streaming REST APIs
        handler = APIGateway(event, mangum_context, _CONFIG)
    else:
        raise UnsupportedEvent(
            "not an HTTP event: this function serves function URL (payload 2.0) and API "
            "Gateway REST API (payload 1.0) requests"
        )
    scope = dict(handler.scope)
    if isinstance(event.get("rawPath"), str):
        scope["raw_path"] = event["rawPath"].encode()
    return scope, handler.body


def _prelude(message: Message) -> dict[str, Any]:
    """The response's status and headers as the HTTP integration prelude wants them: Set-Cookie
    headers go to `cookies`; a header sent twice is joined with a comma."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in message.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "set-cookie":
            cookies.append(value)
        else:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return {"statusCode": message["status"], "headers": headers, "cookies": cookies}


async def invoke(
    app: ASGIApp, api: RuntimeAPI, invocation: Invocation, *, overrun_s: float | None = None
) -> None:
    """Run one invocation to its end, including any work the app does after its response.

    `overrun_s`: cancel the app that far past the invocation's deadline, where Lambda does not
    end it (Managed Instances: "does not enforce the timeout; your code continues to run").
    """
    context = LambdaContext(
        invocation.request_id,
        invocation.function_arn,
        invocation.deadline_ms,
        xray_trace_id=invocation.trace_id,
    )
    try:
        scope, body = scope_for(json.loads(invocation.event), context)
    except (ValueError, KeyError, TypeError) as exc:
        logger.error("rejected event: %s", exc)
        await api.invocation_error(invocation, exc, "Runtime.UnsupportedEvent")
        return

    response: StreamedResponse | None = None
    response_done = asyncio.Event()
    request_sent = False

    async def receive() -> Message:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # Lambda never says that a function URL's client went away. The app learns that its
        # response is over, as under a server, once it has been sent whole.
        await response_done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal response
        if message["type"] == "http.response.start":
            # The prelude goes out at once, even if no body ever follows.
            response = await api.stream_response(invocation, _prelude(message))
        elif (
            message["type"] == "http.response.body"
            and response is not None
            and not response_done.is_set()
        ):
            await response.write(message.get("body", b""))
            if not message.get("more_body", False):
                response_done.set()
                await response.finish()

    deadline = None
    if overrun_s is not None and invocation.deadline_ms:
        remaining_s = invocation.deadline_ms / 1000 - time.time()
        deadline = asyncio.get_running_loop().time() + remaining_s + overrun_s
    guard = asyncio.timeout_at(deadline)
    try:
        async with guard:
            await cast(Callable[..., Awaitable[None]], app)(scope, receive, send)
    except asyncio.CancelledError:
        # The runtime is shutting down: a response under way still ends as the contract says,
        # with the reason in its trailers, in the little time left.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(SHUTDOWN_REPORT_S):
                stopped = RuntimeError("the runtime shut down during the invocation")
                await _fail(api, invocation, response, response_done, stopped, "Runtime.Shutdown")
        raise
    except Exception as exc:
        if isinstance(exc, TimeoutError) and guard.expired():
            logger.error("the invocation outlived its deadline by %.1f s: cancelled", overrun_s)
            await _fail(api, invocation, response, response_done, exc, "Sandbox.Timedout")
        else:
            logger.exception("the app failed")
            await _fail(api, invocation, response, response_done, exc, "Function.Unhandled")
        return
    if response is None:
        await api.invocation_error(
            invocation, RuntimeError("the app sent no response"), "Function.NoResponse"
        )
    elif not response_done.is_set():
        response_done.set()
        await response.finish(
            RuntimeError("the app ended its response early"), "Function.StreamError"
        )


async def _fail(
    api: RuntimeAPI,
    invocation: Invocation,
    response: StreamedResponse | None,
    response_done: asyncio.Event,
    exc: BaseException,
    error_type: str,
) -> None:
    """Report `exc`: as `error_type` to the error endpoint before the prelude; after it, in the
    trailers, as a stream error."""
    if response is None:
        await api.invocation_error(invocation, exc, error_type)
    elif not response_done.is_set():
        response_done.set()
        await response.finish(exc, "Function.StreamError")
