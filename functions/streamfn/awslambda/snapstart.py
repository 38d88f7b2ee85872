"""The SnapStart lifecycle, which the stock runtime client would otherwise run.

With `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`, Lambda initializes the function once when a
version is published, snapshots the environment, and resumes new environments from that
snapshot. AWS's Runtime API for custom runtimes
(https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html, "Restore" and "Restore error")
and its page on runtime hooks (snapstart-runtime-hooks.html) set the sequence:

1. after init, run the before-snapshot hooks, then `GET /runtime/restore/next`; Lambda takes the
   snapshot while that call is pending, and it returns in a restored environment;
2. run the after-restore hooks; a failure there goes to `POST /runtime/restore/error` (and the
   environment is not used);
3. then `GET /runtime/invocation/next` as usual.

The hooks are those libraries register with `snapshot_restore_py` (the module the managed
Python runtime provides), run as AWS's runtime client runs them: before-snapshot hooks in the
reverse order of their registration, after-restore hooks in order. streamfn's own work wraps
them: before the snapshot its app is shut down (every connection pool and socket closed), after
the restore the random generator is reseeded, provider keys are read again (they may have
rotated since the snapshot) and the app is built anew from them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any

from streamfn.awslambda.runtime_api import RuntimeAPI
from streamfn.awslambda.secrets import load_secrets

logger = logging.getLogger(__name__)

INIT_TYPE = "snap-start"
BEFORE_SNAPSHOT_ERROR = "Runtime.BeforeSnapshotError"
AFTER_RESTORE_ERROR = "Runtime.AfterRestoreError"

Hook = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class SnapStartError(RuntimeError):
    """A hook failed: the environment cannot serve (the error went to the Runtime API)."""


def enabled() -> bool:
    return os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == INIT_TYPE


def _registered() -> tuple[list[Hook], list[Hook]]:
    """The hooks registered with snapshot_restore_py; none where it is absent (it ships with
    the managed runtime, not with streamfn)."""
    try:
        from snapshot_restore_py import get_after_restore, get_before_snapshot
    except ImportError:
        return [], []
    return list(get_before_snapshot()), list(get_after_restore())


async def checkpoint(
    api: RuntimeAPI,
    shutdown: Callable[[], Awaitable[None]],
    rebuild: Callable[[], Awaitable[None]],
) -> None:
    """Run the lifecycle around the snapshot; returns in the restored environment, ready."""
    before, after = _registered()
    try:
        for func, args, kwargs in reversed(before):
            func(*args, **kwargs)
        await shutdown()
    except Exception as exc:
        logger.exception("before-snapshot work failed")
        await api.init_error(exc, BEFORE_SNAPSHOT_ERROR)
        raise SnapStartError(str(exc)) from exc
    logger.info("ready for the snapshot")
    await api.restore_next()
    try:
        random.seed()  # from os.urandom: restored environments must not share one sequence
        await asyncio.to_thread(load_secrets)
        await rebuild()
        for func, args, kwargs in after:
            func(*args, **kwargs)
    except Exception as exc:
        logger.exception("after-restore work failed")
        await api.restore_error(exc, AFTER_RESTORE_ERROR)
        raise SnapStartError(str(exc)) from exc
    logger.info("restored")
