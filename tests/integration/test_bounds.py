"""Bounded whatever the reader does: clients that never read a large, fast answer (the server
as `make run` starts it, against the fake OpenAI upstream), a reader that falls behind, and a
stream past STREAMFN_MAX_STREAM_BYTES.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx

from bench.nonreaders import measure
from streamfn.app import create_app
from streamfn.chunks import Finish, TextDelta, Usage
from streamfn.settings import Settings
from tests.integration.test_resume import Serve
from tests.providers import Observed, Scripted, spec
from tests.sse_client import read_events, stream, text_of, user

MB = 1 << 20


def test_clients_that_never_read_cost_a_bounded_amount_and_are_reset(tmp_path: Path) -> None:
    """Ten clients of an 8 MB answer each, reading nothing. Before the bounds each cost the
    server more than its whole answer (about 17 MB: 353 MB for twenty); now a few MB at most
    while open, and their connections are reset after the write timeout."""
    cost = measure(10, tokens=2000, token_chars=4096, data=tmp_path)
    assert cost.ended == 10, cost
    # A RST, not a graceful close with megabytes still queued. (One in ten has been seen to
    # end without one on a loaded machine: its last write went through before the timeout.)
    assert cost.reset >= 9, cost
    # Under one and a half answers a stream at the highest, where the unbounded server took
    # over two (17 MB each); about 6 MB on a quiet machine, 8.5 MB seen in a loaded CI run.
    assert cost.peak_mb - cost.baseline_mb < 10 * 8 * 1.5, cost
    assert cost.after_mb - cost.baseline_mb < 20, cost  # handed back once they have ended
    assert cost.log_mb < 10 * 8 * 1.3, cost  # the answers, once each


def test_a_stream_past_its_size_bound_ends_too_large(tmp_path: Path) -> None:
    cost = measure(
        3,
        tokens=2000,
        token_chars=4096,
        data=tmp_path,
        settings={"STREAMFN_MAX_STREAM_BYTES": str(MB)},
    )
    assert (cost.ended, cost.too_large) == (3, 3), cost
    assert cost.log_mb < 3 * 1.5 + 1, cost


async def test_a_reader_far_behind_gets_every_event_from_the_log(
    serve: Serve, tmp_path: Path
) -> None:
    """A reader that takes nothing while 4 MB are produced, then reads: the
    producer went on without it, holding only a window, and the rest comes from the log,
    every event once and in order."""
    piece = "y" * 4000
    steps: list[Any] = [TextDelta(f"{i}:{piece}") for i in range(1000)]
    observed = Observed(Scripted(*steps, Finish("stop", Usage(1, 1000))))
    url = serve(
        create_app(
            Settings(streams_db=tmp_path / "streams.sqlite3", usage_records=False),
            providers=[spec(observed)],
        )
    )
    async with httpx.AsyncClient(timeout=30) as client:
        request = client.build_request("POST", f"{url}/chat/stream", json=user("x"))
        response = await client.send(request, stream=True)
        sock = response.extensions["network_stream"].get_extra_info("socket")
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # The producer goes on to the end without the reader (on a loaded machine, give it
        # time): it holds only a window, the rest is in the log.
        assert await asyncio.to_thread(observed.closed.wait, 20), "it waited for the reader"
        events = await read_events(response)
        await response.aclose()
    assert text_of(events) == "".join(f"{i}:{piece}" for i in range(1000))
    assert [int(e.id.rpartition(":")[2]) for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event == "done"
    # Read again from the start, from the log alone: the same.
    async with httpx.AsyncClient(timeout=30) as client:
        _, again = await stream(client, f"{url}/chat/stream/{response.headers['x-stream-id']}")
    assert [(e.id, e.data) for e in again] == [(e.id, e.data) for e in events]
