"""The invocation loops: ask for the next invocation, run it, repeat; one loop, or as many as
Lambda lets the environment run at once, on the one event loop.

Lambda Managed Instances set `AWS_LAMBDA_MAX_CONCURRENCY` and then "can accept concurrent /next
and /response requests up to the configured AWS_LAMBDA_MAX_CONCURRENCY limit"
(https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html). AWS's own runtimes that serve
them from one process run that many independent loops, each long-polling `next`: Rust's
`run_concurrent` spawns "one worker per concurrency slot" (aws-lambda-rust-runtime,
lambda-runtime/src/runtime.rs), Go's starts `concurrency` goroutines running the same loop
(aws-lambda-go, lambda/invoke_loop_gte_go122.go). So do these: N slots, each with at most one
invocation, each asking for its next one only once the last has ended, usage record included
(the app's ASGI call returns after it). Lambda routes an invocation only to a runtime waiting in
`next` ("no idle runtimes" is refused: AWS's Runtime Interface Emulator, internal/
lambda-managed-instances/invoke/invoke_router.go), so a slot still writing its record is not
handed another.

What the Managed Instances environment does differently
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-managed-instances-execution-environment.html),
and what that asks of the loops:
- "Independent timeouts ... Lambda Managed Instances does not enforce the timeout; your code
  continues to run": an invocation that outlives its deadline is cancelled here (`OVERRUN_S`
  after it), so its slot, and its upstream request, are not held for ever; its late answer is
  refused with 410 and the slot goes on.
- "If a runtime worker crashes, the execution environment continues to operate with the
  remaining healthy workers": a failure in one invocation, or a slot whose `next` keeps failing,
  is logged and leaves the other slots serving (as Rust's workers, and AWS's Python client in
  multi-concurrent mode, which retries `next` with backoff and only logs a refused response:
  aws-lambda-python-runtime-interface-client, awslambdaric/lambda_runtime_client.py).
- Shutdown: Lambda first aborts the running invocations, then kills the runtime outright, or,
  with an extension registered, sends it SIGTERM and kills it 600 ms later (AWS's emulator,
  internal/lambda-managed-instances/rapid/sandbox.go HandleShutdown and shutdown.go,
  defaultRuntimeShutdownTimeout). On SIGTERM the waiting `next`s are dropped and what still runs
  gets `SHUTDOWN_GRACE_S` to finish (Go's loop: "/next will be canceled, and inflight requests
  will be allowed to run to completion"), then is cancelled, its response ended with an error.

With one slot (classic Lambda, or a maximum of 1) the loop is the one it always was: the trace
header also goes into `_X_AMZN_TRACE_ID`, and a failure ends the process, which Lambda replaces.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from aws_lambda_powertools import Logger
from starlette.types import ASGIApp

from streamfn.awslambda import invocation_context
from streamfn.awslambda.bridge import invoke
from streamfn.awslambda.runtime_api import Invocation, InvocationGone, RuntimeAPI
from streamfn.observability import flush

logger = logging.getLogger(__name__)

MAX_CONCURRENCY = "AWS_LAMBDA_MAX_CONCURRENCY"
TRACE_ENV = "_X_AMZN_TRACE_ID"
OVERRUN_S = 1.0  # past its deadline, an invocation is cancelled (Managed Instances only)
SHUTDOWN_GRACE_S = 0.5  # of the 600 ms between SIGTERM and SIGKILL, for invocations still running
# `next` retried on failure, as awslambdaric's multi-concurrent client does (5 attempts, from
# 0.1 s, doubling), before the slot gives up.
NEXT_ATTEMPTS = 5
NEXT_RETRY_S = 0.1


def max_concurrency(environ: Mapping[str, str] | None = None) -> int:
    """How many invocations Lambda may hand this environment at once: `AWS_LAMBDA_MAX_CONCURRENCY`
    (Lambda Managed Instances set it), 1 where it is absent or not a positive number."""
    raw = (os.environ if environ is None else environ).get(MAX_CONCURRENCY, "")
    try:
        return max(1, int(raw))
    except ValueError:
        return 1


class Loops:
    """`slots` invocation loops serving `app` until stopped."""

    def __init__(self, app: ASGIApp, api: RuntimeAPI, log: Logger, *, slots: int) -> None:
        self._app = app
        self._api = api
        self._log = log
        self.slots = slots
        self.concurrent = slots > 1
        self._cold = True  # the environment's first invocation is its cold start
        self._running: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until `stop` is set: 0 then; 1 if every slot failed before it was."""
        self._stop = stop
        # One at a time, Lambda stops an environment only between invocations: nothing to cut.
        cut_off = asyncio.ensure_future(self._cut_off_after(stop)) if self.concurrent else None
        try:
            await asyncio.gather(*(self._slot(n) for n in range(self.slots)))
        finally:
            if cut_off is not None:
                cut_off.cancel()
        # The slots return once stopped, or each once it has given up.
        return 0 if stop.is_set() else 1

    async def _cut_off_after(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await asyncio.sleep(SHUTDOWN_GRACE_S)
        for task in list(self._running):
            logger.warning("stopping: invocation cancelled by the shutdown")
            task.cancel()

    async def _slot(self, number: int) -> None:
        """One loop, until stopped or until its `next` keeps failing."""
        while not self._stop.is_set():
            invocation = await (self._next_retried(number) if self.concurrent else self._next())
            if invocation is None:
                return
            # A task of its own: the invocation's context (request id, trace, log keys) stays
            # in it and in the tasks it starts, never in this slot's or another invocation's.
            task = asyncio.ensure_future(self._invoke(invocation))
            self._running.add(task)
            try:
                await task
            except asyncio.CancelledError:
                if not self._stop.is_set():  # this slot itself is being cancelled
                    raise
            finally:
                self._running.discard(task)

    async def _next(self) -> Invocation | None:
        """The next invocation, or None once stopping (a waiting `next` is dropped)."""
        next_invocation = asyncio.ensure_future(self._api.next())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((next_invocation, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not next_invocation.done():
            next_invocation.cancel()
            return None
        return next_invocation.result()

    async def _next_retried(self, number: int) -> Invocation | None:
        delay = NEXT_RETRY_S
        for attempt in range(1, NEXT_ATTEMPTS + 1):
            try:
                return await self._next()
            except Exception as exc:
                if attempt == NEXT_ATTEMPTS:
                    logger.error(
                        "slot %d stops: invocation/next failed %d times (%s)", number, attempt, exc
                    )
                    return None
                logger.warning("invocation/next failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay *= 2
        return None

    async def _invoke(self, invocation: Invocation) -> None:
        invocation_context.enter(invocation)
        self._log.thread_safe_append_keys(request_id=invocation.request_id, cold_start=self._cold)
        self._cold = False
        if not self.concurrent:
            # The one invocation of the environment: the variable the X-Ray SDK, botocore and
            # AWS's other libraries read (runtimes-custom.html, "Propagate the tracing header").
            if invocation.trace_id:
                os.environ[TRACE_ENV] = invocation.trace_id
            else:
                os.environ.pop(TRACE_ENV, None)
        try:
            # Returns once the app's ASGI call has returned, after any work it does past the end
            # of its response (usage records, metrics): a frozen environment would lose that
            # work, and a slot that asked for more first could be handed another invocation.
            await invoke(
                self._app, self._api, invocation, overrun_s=OVERRUN_S if self.concurrent else None
            )
        except InvocationGone as exc:
            logger.warning("invocation %s: %s", invocation.request_id, exc)
        except Exception:
            if not self.concurrent:
                raise
            # One invocation's failure is not the environment's: the other slots serve on.
            logger.exception("invocation %s failed in the runtime", invocation.request_id)
        finally:
            if not self.concurrent:
                # An environment is frozen between invocations: the invocation's spans and
                # metrics are exported before it asks for the next (a no-op without OTLP).
                await flush(self._app)
