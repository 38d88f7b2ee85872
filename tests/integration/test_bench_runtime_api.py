"""bench/runtime_api.py, the Runtime API `make bench`'s `lmi` row serves one runtime process
from: functions/bootstrap in concurrent mode against it, streaming from bench's fake upstream
as the row does. Its figures are only as good as what it reads back: every token of each
stream, in order, each invocation's own, and a failure reported as one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import servers
from bench.lmi import runtime
from bench.runtime_api import chat_event

UPSTREAM = Path(__file__).parents[2] / "bench" / "upstream.py"
FAILING = {"STREAMFN_LAMBDA_APP": "tests.awslambda.test_concurrent_runtime:app"}


@pytest.fixture
def upstream() -> Iterator[str]:
    with servers.process([str(UPSTREAM), servers.PORT]) as port:
        yield f"http://127.0.0.1:{port}/v1"


def _chat(script: str) -> bytes:
    """A chat request whose model is the fake upstream's script (bench/upstream.py)."""
    body = {"messages": [{"role": "user", "content": "x"}], "provider": "openai", "model": script}
    return chat_event("/chat/stream", body)


async def test_streams_in_one_runtime_process_are_read_back_whole_and_apart(
    upstream: str,
) -> None:
    async with runtime(3, upstream) as (api, _pid):
        assert api.waiting == 3  # every slot asked before any invocation came
        long, short = api.invoke(_chat("pace-50-6")), api.invoke(_chat("fast-2"))
        done = await asyncio.wait_for(asyncio.gather(long.done, short.done), 30)
    assert [(r.status, r.error) for r in done] == [(200, None)] * 2
    assert [r.tokens for r in done] == [list(range(6)), list(range(2))]
    assert done[0].exact(6)
    assert done[1].exact(2)
    # Streamed, not read back in one piece: the tokens came in more than one read.
    assert len(set(done[0].times)) > 1
    assert long.echoed == long.invocation_id
    assert short.echoed == short.invocation_id
    assert api.problems == []


async def test_a_failure_before_the_prelude_is_read_back_as_one() -> None:
    async with runtime(2, "http://127.0.0.1:9", FAILING) as (api, _pid):
        event = chat_event("/fail", {})
        failed = await asyncio.wait_for(api.invoke(event).done, 30)
    assert failed.error is not None
    assert "failed before the prelude" in failed.error
    assert not failed.exact(0)
