"""The SnapStart lifecycle through the function URL emulator: before-snapshot hooks, the
snapshot point (`restore/next`, answered when the first invocation comes), after-restore hooks,
a rebuilt app with fresh connections and freshly read keys; a failing hook reaching
`restore/error`. On-demand environments never touch the restore API (the emulator reports any
call to it as a violation)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from local.lambda_emulator import EmulatorThread
from tests.awslambda.test_streaming_runtime import chat, sse
from tests.fakes.aws import Moto
from tests.fakes.upstream import Reply, Upstream
from tests.fakes.wire import openai_stream

Start = Callable[..., EmulatorThread]
APP = "tests.awslambda.snapstart_app:create_app"


def lines(fn: EmulatorThread, *wanted: str) -> list[str]:
    """The log lines that contain one of `wanted`, in order, as the wanted text."""
    return [w for line in fn.record.logs for w in wanted if w in line]


def test_hooks_run_around_the_snapshot_and_the_restored_app_serves(
    emulator: Start, moto: Moto
) -> None:
    old_key, new_key = f"sk-old-{uuid.uuid4().hex}", f"sk-new-{uuid.uuid4().hex}"
    parameter = f"/streamfn/{uuid.uuid4().hex[:8]}/openai-api-key"
    ssm = moto.client("ssm")
    ssm.put_parameter(Name=parameter, Value=old_key, Type="SecureString")
    with Upstream(Reply(body=openai_stream(["restored", " fine"]))) as upstream:
        fn = emulator(
            snapstart=True,
            STREAMFN_LAMBDA_APP=APP,
            OPENAI_API_KEY_SSM_PARAMETER=parameter,
            OPENAI_BASE_URL=f"{upstream.url}/v1",
            **moto.env,
        )
        # Initialized and parked at the snapshot point: nothing restored, nothing invoked.
        fn.wait_for("restore-asked")
        assert [c[1] for c in fn.record.calls] == ["restore-asked"]
        # The key rotates while the snapshot sits in the cache.
        ssm.put_parameter(Name=parameter, Value=new_key, Type="SecureString", Overwrite=True)
        _, events = sse(f"{fn.url}/chat/stream", chat("hi", provider="openai"))
        assert "".join(e.data for e in events if e.event == "token") == "restored fine"
    assert [c[1] for c in fn.record.calls][:4] == ["restore-asked", "restored", "asked", "next"]
    # The request reached the upstream with the key as it is after the restore.
    assert upstream.requests[0].headers["authorization"] == f"Bearer {new_key}"
    assert lines(
        fn,
        "provider openai ready",
        "hook: before snapshot, registered second",
        "hook: before snapshot, registered first",
        "ready for the snapshot",
        "hook: after restore, registered first",
        "hook: after restore, registered second",
        "restored",
    ) == [
        "provider openai ready",  # built at init...
        "hook: before snapshot, registered second",  # library hooks, last registered first
        "hook: before snapshot, registered first",
        "ready for the snapshot",  # ... closed with the app before the snapshot
        "provider openai ready",  # ... and built anew, with fresh connections, after it
        "hook: after restore, registered first",  # then library hooks in order
        "hook: after restore, registered second",
        "restored",
    ]


def test_a_failing_after_restore_hook_reaches_restore_error(emulator: Start) -> None:
    fn = emulator(snapstart=True, STREAMFN_LAMBDA_APP=APP, FAIL_AFTER_RESTORE="1")
    fn.wait_for("restore-asked")
    response, _ = sse(f"{fn.url}/chat/stream", chat("hi"))
    assert response.status_code == 502
    [error] = fn.record.restore_errors
    assert error["errorType"] == "Runtime.AfterRestoreError"
    assert "an after-restore hook failed on purpose" in error["errorMessage"]
    assert not any(c[1] == "next" for c in fn.record.calls)  # never served


def test_on_demand_environments_skip_the_lifecycle(emulator: Start) -> None:
    fn = emulator(STREAMFN_LAMBDA_APP=APP)
    _, events = sse(f"{fn.url}/chat/stream", chat("on demand"))
    assert "".join(e.data for e in events if e.event == "token") == "on demand"
    assert not any(c[1].startswith("restore") for c in fn.record.calls)
    assert lines(fn, "hook:") == []
