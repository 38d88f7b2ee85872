"""An app for the SnapStart tests: streamfn's, with hooks registered the way libraries register
them (snapshot_restore_py), each saying on stdout (the function's log) when it runs."""

from __future__ import annotations

import os

from snapshot_restore_py import register_after_restore, register_before_snapshot

from streamfn.app import create_app


@register_before_snapshot
def first_before() -> None:
    print("hook: before snapshot, registered first", flush=True)  # noqa: T201


@register_before_snapshot
def second_before() -> None:
    print("hook: before snapshot, registered second", flush=True)  # noqa: T201


register_after_restore(print, "hook: after restore, registered first", flush=True)


@register_after_restore
def second_after() -> None:
    if os.environ.get("FAIL_AFTER_RESTORE"):
        raise RuntimeError("an after-restore hook failed on purpose")
    print("hook: after restore, registered second", flush=True)  # noqa: T201


__all__ = ["create_app"]
