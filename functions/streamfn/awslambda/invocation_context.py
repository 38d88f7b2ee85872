"""What belongs to one invocation while it runs, kept in contextvars rather than in the process.

One invocation at a time, the stock runtimes put the X-Ray header in the process environment
(`_X_AMZN_TRACE_ID`) and a logger keeps one set of keys. With many invocations in one process
(Lambda Managed Instances, `AWS_LAMBDA_MAX_CONCURRENCY` above 1) either would give one
invocation's request id or trace to another's lines and segments. AWS's runtimes that serve
many invocations in one process stop setting the variable there: Go's sets it "if
lambdacontext.MaxConcurrency() == 1" and passes the header in the request's context
(aws-lambda-go, lambda/invoke_loop.go), Rust's concurrent mode logs "_X_AMZN_TRACE_ID is not
set; use context.xray_trace_id" (aws-lambda-rust-runtime, lambda-runtime/src/runtime.rs,
`run_concurrent`).

So each invocation runs in a task of its own (runtime's loop), and here, in that task's context:
its trace header, read by the X-Ray SDK through `install_xray_context` and by the log formatter
(`InvocationFormatter`), and the log keys, through Powertools' context-local keys
(`Logger.thread_safe_append_keys`, a ContextVar). Tasks the app starts during the invocation
copy the context, so they see the same values; other invocations never do.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from streamfn.awslambda.runtime_api import Invocation

logger = logging.getLogger(__name__)

_trace_header: ContextVar[str | None] = ContextVar("streamfn_trace_header", default=None)
# The X-Ray SDK's segment and subsegment stack of the invocation (see _InvocationLocal).
_xray_state: ContextVar[dict[str, Any]] = ContextVar("streamfn_xray_state")


def enter(invocation: Invocation) -> None:
    """Make `invocation` the current one, in the calling task's context (and its children's)."""
    _trace_header.set(invocation.trace_id)
    _xray_state.set({})


def trace_header() -> str | None:
    """The current invocation's X-Ray header (`Root=...;Parent=...;Sampled=...`), if any."""
    return _trace_header.get()


def trace_root(header: str | None) -> str | None:
    """The trace id (`Root=`) of an X-Ray header."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root" and value:
            return value
    return None


class InvocationFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON lines, with `xray_trace_id` from the current invocation.

    Powertools reads the trace id from `_X_AMZN_TRACE_ID` for every line (formatter.py,
    `_get_latest_trace_id`), overriding any key; with many invocations in one process there is
    no such variable, so the current invocation's header is read instead.
    """

    def _get_latest_trace_id(self) -> str | None:
        if (
            self.log_format.get("xray_trace_id", "") is None
        ):  # turned off: Logger(xray_trace_id=None)
            return None
        return trace_root(trace_header()) or super()._get_latest_trace_id()


class _InvocationLocal:
    """`threading.local`'s interface over a ContextVar.

    The X-Ray SDK's Lambda context keeps the facade segment and the open subsegments in a
    `threading.local` (aws_xray_sdk/core/lambda_launcher.py); every invocation on this event
    loop shares the one thread, so each gets this instead: the state of its own context.
    """

    __slots__ = ()

    def _state(self) -> dict[str, Any]:
        try:
            return _xray_state.get()
        except LookupError:  # outside an invocation: state of this context alone
            state: dict[str, Any] = {}
            _xray_state.set(state)
            return state

    def __getattr__(self, name: str) -> Any:
        try:
            return self._state()[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._state()[name] = value

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]  # Context.clear_trace_entities
        return self._state()


def install_xray_context() -> bool:
    """Have the X-Ray SDK take each invocation's trace header from its context rather than from
    `_X_AMZN_TRACE_ID`: its segments and subsegments then belong to their own invocation.

    Imports aws_xray_sdk (about a quarter of a second), once, at init: in a Managed Instances
    environment init precedes any invocation and the process serves for hours. False where the
    SDK is not installed (nothing then traces).
    """
    try:
        from aws_xray_sdk import global_sdk_config  # type: ignore[import-untyped]
        from aws_xray_sdk.core import xray_recorder  # type: ignore[import-untyped]
        from aws_xray_sdk.core.lambda_launcher import (  # type: ignore[import-untyped]
            LambdaContext,
        )
        from aws_xray_sdk.core.models.trace_header import (  # type: ignore[import-untyped]
            TraceHeader,
        )
    except ImportError:
        logger.debug("aws_xray_sdk is not installed: no X-Ray context to install")
        return False

    class InvocationXRayContext(LambdaContext):  # type: ignore[misc]
        """The SDK's Lambda context, per invocation: the facade segment comes from the current
        invocation's header (as LambdaContext._refresh_context does from the environment)."""

        def __init__(self) -> None:
            super().__init__()
            self._local = _InvocationLocal()

        def _refresh_context(self) -> None:
            header = TraceHeader.from_header_str(trace_header())
            if not global_sdk_config.sdk_enabled():
                header._sampled = False
            segment = getattr(self._local, "segment", None)
            if segment and (not header.root or header.root == segment.trace_id):
                return
            self._initialize_context(header)

    xray_recorder.context = InvocationXRayContext()
    return True
