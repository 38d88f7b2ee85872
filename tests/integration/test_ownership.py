"""Stream ownership across processes: two servers on one data directory (each its own app, its
own registry of streams and its own journal, as two processes are), sharing the SQLite log.

A stream produced by one and followed from the other must not be taken for abandoned while
that reader is there; a stop asked of either reaches the producer.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from streamfn.app import create_app
from streamfn.chunks import Finish, TextDelta, Usage
from streamfn.settings import Settings
from tests.integration.test_resume import Serve, leave_after, numbers
from tests.providers import Observed, Scripted, spec
from tests.sse_client import stream, text_of, user

WORDS = [f"w{i} " for i in range(40)]


def slow(every_s: float = 0.1) -> Observed:
    """Forty tokens, `every_s` apart: a stream of about 4 s, longer than the grace period."""
    steps: list[Any] = []
    for word in WORDS:
        steps += [TextDelta(word), every_s]
    return Observed(Scripted(*steps, Finish("stop", Usage(1, len(WORDS)))))


def server(observed: Observed, data: Path, grace_s: float = 0.5, **settings: Any) -> Any:
    config = Settings(
        streams_db=data / "streams.sqlite3",
        usage_db=data / "usage.sqlite3",
        resume_grace_s=grace_s,
        **settings,
    )
    return create_app(config, providers=[spec(observed)])


async def test_a_reader_on_another_process_keeps_the_stream_past_the_grace_period(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    producing, other = slow(), slow()
    # A grace period of 1.5 s, under the stream's 4 s: the client's 0.3 s away and its resume's
    # start fit in it on a loaded machine too (with 0.5 s, a CI run saw the stream abandoned).
    first = serve(server(producing, tmp_path, grace_s=1.5))
    second = serve(server(other, tmp_path, grace_s=1.5))
    response, seen = await leave_after(client, "POST", f"{first}/chat/stream", 2, json=user("x"))
    id = response.headers["x-stream-id"]
    await asyncio.sleep(0.3)  # away for a moment: the log has the stream's head by then
    # Resumed on the other server, which follows it from the log for eight grace periods.
    resumed, rest = await stream(
        client, f"{second}/chat/stream/{id}", headers={"Last-Event-ID": seen[-1].id}
    )
    assert resumed.status_code == 200, resumed.text
    events = seen + rest
    assert [e.event for e in events[-2:]] == ["usage", "done"], events[-1]
    assert numbers(events, id) == list(range(1, len(events) + 1))
    assert text_of(events) == "".join(WORDS)
    assert producing.opened == 1
    assert other.opened == 0  # the second server produced nothing: it only read


async def test_a_stop_asked_of_another_process_ends_the_stream_where_it_runs(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    producing = slow()
    first = serve(server(producing, tmp_path))
    second = serve(server(slow(), tmp_path))
    response, seen = await leave_after(client, "POST", f"{first}/chat/stream", 2, json=user("x"))
    id = response.headers["x-stream-id"]
    await asyncio.sleep(0.3)  # away for a moment: the log has the stream's head by then

    async def read_on_second() -> list[Any]:
        _, rest = await stream(
            client, f"{second}/chat/stream/{id}", headers={"Last-Event-ID": seen[-1].id}
        )
        return rest

    reader = asyncio.ensure_future(read_on_second())
    await asyncio.sleep(0.5)
    stopped = await client.post(f"{second}/chat/stream/{id}/stop")
    assert stopped.status_code == 202
    rest = await asyncio.wait_for(reader, 10)
    assert rest[-1].event == "error"
    assert json.loads(rest[-1].data)["type"] == "stopped"
    assert await asyncio.to_thread(producing.closed.wait, 5), "the upstream went on"
    assert producing.yielded < len(WORDS)


async def test_without_any_reader_the_grace_period_still_ends_it(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The other server's presence counts only while it reads: once it has left, the grace
    period runs out and the upstream is cancelled."""
    producing = slow()
    first = serve(server(producing, tmp_path))
    second = serve(server(slow(), tmp_path))
    response, seen = await leave_after(client, "POST", f"{first}/chat/stream", 2, json=user("x"))
    id = response.headers["x-stream-id"]
    await asyncio.sleep(0.3)  # away for a moment: the log has the stream's head by then
    await leave_after(
        client, "GET", f"{second}/chat/stream/{id}", 3, headers={"Last-Event-ID": seen[-1].id}
    )
    assert await asyncio.to_thread(producing.closed.wait, 10), "the upstream went on"
    assert producing.yielded < len(WORDS)
    _, rest = await stream(client, f"{first}/chat/stream/{id}?after=2")
    assert json.loads(rest[-1].data)["type"] == "abandoned"
