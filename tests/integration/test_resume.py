"""Resumable streams against real uvicorn servers: a client leaves at every point of a stream
and comes back; it gets every event once, ids continuous, and the generation is paid for once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.chunks import Finish, TextDelta, Usage
from streamfn.settings import Settings
from tests.keys import create_key
from tests.providers import Observed, Scripted, spec
from tests.sse_client import Received, read_events, stream, text_of, user

Serve = Callable[[ASGIApp], str]

WORDS = [f"w{i} " for i in range(12)]


def paced(*, first_s: float = 0.0, every_s: float = 0.05) -> Observed:
    """Twelve tokens, `every_s` apart, the first after `first_s`."""
    steps: list[Any] = [first_s]
    for word in WORDS:
        steps += [TextDelta(word), every_s]
    return Observed(Scripted(*steps, Finish("stop", Usage(1, len(WORDS)))))


def app(observed: Observed, tmp_path: Path, **settings: Any) -> ASGIApp:
    config = Settings(streams_db=tmp_path / "streams.sqlite3", **settings)
    return create_app(config, providers=[spec(observed)])


async def leave_after(
    client: httpx.AsyncClient, method: str, url: str, events: int, **kwargs: Any
) -> tuple[httpx.Response, list[Received]]:
    """Open a stream, read `events` events, and drop the connection."""
    got: list[Received] = []
    async with client.stream(method, url, **kwargs) as response:
        if events:
            async for sse in EventSource(response).aiter_sse():
                got.append(Received(sse.event, sse.data, sse.id, sse.retry, time.monotonic()))
                if len(got) == events:
                    break
    return response, got


async def known_to(client: httpx.AsyncClient, url: str, method: str = "POST") -> int:
    """`method` `url` until the stream it names is in the log (a 404 before); the status."""
    deadline = time.monotonic() + 3
    while (status := await status_of(client, method, url)) == 404:
        assert time.monotonic() < deadline, f"{url}: still 404"
        await asyncio.sleep(0.02)
    return status


async def status_of(client: httpx.AsyncClient, method: str, url: str) -> int:
    async with client.stream(method, url) as response:
        return response.status_code


def numbers(events: list[Received], id: str) -> list[int]:
    assert all(e.id.startswith(f"{id}:") for e in events)
    return [int(e.id.rpartition(":")[2]) for e in events]


def assert_whole(events: list[Received], id: str) -> None:
    """The stream's events, each once, numbered 1..n, ending with usage and done."""
    assert numbers(events, id) == list(range(1, len(events) + 1))
    assert text_of(events) == "".join(WORDS)
    assert [e.event for e in events[-2:]] == ["usage", "done"]


@pytest.mark.parametrize("seen", [1, 5, 13])
async def test_a_client_that_leaves_mid_stream_resumes_with_last_event_id(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path, seen: int
) -> None:
    observed = paced()
    url = serve(app(observed, tmp_path))
    response, first = await leave_after(client, "POST", f"{url}/chat/stream", seen, json=user("x"))
    id = response.headers["x-stream-id"]
    assert first[0].id == f"{id}:1"
    _, rest = await stream(
        client, f"{url}/chat/stream/{id}", headers={"Last-Event-ID": first[-1].id}
    )
    assert_whole(first + rest, id)
    assert rest[0].retry == 3000  # a resumed response hints EventSource's delay too
    assert observed.opened == 1
    assert observed.yielded == len(WORDS) + 1  # produced once, while nobody was connected


async def test_after_counts_as_last_event_id_and_without_either_the_whole_stream_replays(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = serve(app(paced(), tmp_path))
    response, first = await leave_after(client, "POST", f"{url}/chat/stream", 3, json=user("x"))
    id = response.headers["x-stream-id"]
    _, rest = await stream(client, f"{url}/chat/stream/{id}?after=3")
    assert_whole(first + rest, id)
    _, whole = await stream(client, f"{url}/chat/stream/{id}")
    assert_whole(whole, id)


async def test_a_client_that_leaves_before_the_first_token_resumes_with_its_own_stream_id(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    observed = paced(first_s=0.6)
    url = serve(app(observed, tmp_path))
    id = str(uuid.uuid4())
    with pytest.raises(httpx.ReadTimeout):
        await client.post(f"{url}/chat/stream", json=user("x", stream_id=id), timeout=0.2)
    _, events = await stream(client, f"{url}/chat/stream/{id}")
    assert_whole(events, id)
    assert observed.opened == 1
    # The id is taken now: a second stream cannot have it.
    response, _ = await stream(client, f"{url}/chat/stream", user("y", stream_id=id))
    assert response.status_code == 409
    assert response.json()["error"]["param"] == "stream_id"


async def test_after_the_end_the_log_replays_and_a_caught_up_client_gets_204(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    observed = paced(every_s=0)
    url = serve(app(observed, tmp_path))
    response, events = await stream(client, f"{url}/chat/stream", user("x"))
    id = response.headers["x-stream-id"]
    # Its producer has gone: this is read back from the SQLite log.
    await asyncio.sleep(0.2)
    _, again = await stream(client, f"{url}/chat/stream/{id}")
    assert [(e.id, e.event, e.data) for e in again] == [(e.id, e.event, e.data) for e in events]
    _, tail = await stream(client, f"{url}/chat/stream/{id}?after=10")
    assert numbers(tail, id) == list(range(11, len(events) + 1))
    caught_up = {"Last-Event-ID": events[-1].id}
    done, _ = await stream(client, f"{url}/chat/stream/{id}", headers=caught_up)
    assert done.status_code == 204
    assert observed.opened == 1


async def test_eventsource_reconnecting_to_the_get_route_resumes_then_is_stopped_by_204(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """What EventSource does on its own: the same URL again, with Last-Event-ID."""
    observed = paced()
    url = serve(app(observed, tmp_path))
    route = f"{url}/chat/stream?prompt=x"
    _, first = await leave_after(client, "GET", route, 4)
    response, rest = await stream(client, route, headers={"Last-Event-ID": first[-1].id})
    id = response.headers["x-stream-id"]
    assert_whole(first + rest, id)
    again, _ = await stream(client, route, headers={"Last-Event-ID": rest[-1].id})
    assert again.status_code == 204
    assert observed.opened == 1


async def test_eventsource_with_a_stream_id_in_its_url_resumes_before_any_event(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    observed = paced(first_s=0.6)
    url = serve(app(observed, tmp_path))
    route = f"{url}/chat/stream?prompt=x&stream_id=es-{uuid.uuid4().hex}"
    with pytest.raises(httpx.ReadTimeout):
        await client.get(route, timeout=0.2)
    # No Last-Event-ID (it saw no event): the same URL replays the stream from its start.
    response, events = await stream(client, route)
    assert_whole(events, response.headers["x-stream-id"])
    assert observed.opened == 1


async def test_nobody_coming_back_within_the_grace_period_cancels_the_upstream(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    observed = paced(every_s=0.1)
    url = serve(app(observed, tmp_path, resume_grace_s=0.5))
    response, first = await leave_after(client, "POST", f"{url}/chat/stream", 2, json=user("x"))
    left = time.monotonic()
    id = response.headers["x-stream-id"]
    assert await asyncio.to_thread(observed.closed.wait, 5), "upstream not cancelled"
    assert observed.closed_at is not None
    assert 0.4 < observed.closed_at - left < 3
    assert observed.yielded < len(WORDS)
    # A late client gets what was produced, then why it ended.
    await asyncio.sleep(0.2)
    _, rest = await stream(client, f"{url}/chat/stream/{id}?after=2")
    assert numbers(first + rest, id) == list(range(1, len(rest) + 3))
    assert rest[-1].event == "error"
    assert json.loads(rest[-1].data)["type"] == "abandoned"


async def test_a_client_back_within_the_grace_period_keeps_it_going(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    observed = paced(every_s=0.1)
    url = serve(app(observed, tmp_path, resume_grace_s=2))
    response, first = await leave_after(client, "POST", f"{url}/chat/stream", 2, json=user("x"))
    id = response.headers["x-stream-id"]
    await asyncio.sleep(0.3)
    _, more = await leave_after(client, "GET", f"{url}/chat/stream/{id}?after=2", 3)
    await asyncio.sleep(0.3)  # gone again, the grace period starts over
    _, rest = await stream(client, f"{url}/chat/stream/{id}?after=5")
    assert_whole(first + more + rest, id)


async def test_stop_ends_the_stream_and_cancels_the_upstream(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    observed = paced(every_s=0.2)
    url = serve(app(observed, tmp_path))
    events: list[Received] = []
    async with client.stream("POST", f"{url}/chat/stream", json=user("x")) as response:
        id = response.headers["x-stream-id"]
        reading = asyncio.ensure_future(read_events(response))
        await asyncio.sleep(0.3)
        stopped = await client.post(f"{url}/chat/stream/{id}/stop")
        assert stopped.status_code == 202
        events = await asyncio.wait_for(reading, 3)
    assert observed.closed.is_set()
    assert observed.yielded < len(WORDS)
    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["type"] == "stopped"
    unknown = await client.post(f"{url}/chat/stream/no-such-stream/stop")
    assert unknown.status_code == 404


async def test_a_resume_from_another_process_follows_the_log_and_stop_reaches_across(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Two servers sharing one log: what a second worker, or another Lambda environment, sees."""
    producing = paced(every_s=0.1)
    a = serve(app(producing, tmp_path))
    b = serve(app(paced(), tmp_path))
    response, first = await leave_after(client, "POST", f"{a}/chat/stream", 2, json=user("x"))
    id = response.headers["x-stream-id"]
    await known_to(client, f"{b}/chat/stream/{id}", "GET")
    _, rest = await stream(client, f"{b}/chat/stream/{id}", headers={"Last-Event-ID": first[-1].id})
    assert_whole(first + rest, id)
    # A stop asked of b reaches the stream a runs, once its head is in the log (the journal's
    # first batch, a tenth of a second in).
    response, _ = await leave_after(client, "POST", f"{a}/chat/stream", 2, json=user("y"))
    id = response.headers["x-stream-id"]
    assert await known_to(client, f"{b}/chat/stream/{id}/stop") == 202
    _, events = await asyncio.wait_for(stream(client, f"{b}/chat/stream/{id}?after=2"), 5)
    assert json.loads(events[-1].data)["type"] == "stopped"
    assert len(events) < len(WORDS)


async def test_only_the_caller_that_started_a_stream_may_resume_or_stop_it(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.sqlite3"
    alice, _ = create_key(keys, "alice")
    bob, _ = create_key(keys, "bob")
    url = serve(app(paced(), tmp_path, auth="api_key", keys_db=keys))
    response, _ = await leave_after(
        client,
        "POST",
        f"{url}/chat/stream",
        2,
        json=user("x"),
        headers={"authorization": f"Bearer {alice}"},
    )
    id = response.headers["x-stream-id"]
    as_bob = {"authorization": f"Bearer {bob}"}
    refused, _ = await stream(client, f"{url}/chat/stream/{id}", headers=as_bob)
    assert refused.status_code == 403
    assert "another caller" in refused.json()["error"]["message"]
    assert (await client.post(f"{url}/chat/stream/{id}/stop", headers=as_bob)).status_code == 403
    anonymous, _ = await stream(client, f"{url}/chat/stream/{id}")
    assert anonymous.status_code == 401
    _, events = await stream(
        client, f"{url}/chat/stream/{id}", headers={"authorization": f"Bearer {alice}"}
    )
    assert text_of(events) == "".join(WORDS)


async def test_eventsource_resumes_with_its_used_stream_token_but_cannot_start_with_it(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.sqlite3"
    key, _ = create_key(keys)
    observed = paced()
    url = serve(app(observed, tmp_path, auth="api_key", keys_db=keys))
    minted = await client.post(
        f"{url}/chat/stream/token",
        json={"prompt": "x"},
        headers={"authorization": f"Bearer {key}"},
    )
    route = f"{url}/{minted.json()['url']}"
    _, first = await leave_after(client, "GET", route, 3)
    # EventSource's reconnect: the same URL, its token used by now.
    response, rest = await stream(client, route, headers={"Last-Event-ID": first[-1].id})
    assert_whole(first + rest, response.headers["x-stream-id"])
    # Without anything to resume, the used token starts nothing.
    fresh, _ = await stream(client, route, headers={"Last-Event-ID": "nothing:3"})
    assert fresh.status_code == 204
    assert observed.opened == 1


async def test_with_resume_off_a_stream_cannot_be_resumed(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    observed = paced(every_s=0.1)
    url = serve(app(observed, tmp_path, resume=False, resume_grace_s=30))
    response, _ = await leave_after(client, "POST", f"{url}/chat/stream", 2, json=user("x"))
    assert await asyncio.to_thread(observed.closed.wait, 1), "no log: leaving cancels at once"
    id = response.headers["x-stream-id"]
    missing, _ = await stream(client, f"{url}/chat/stream/{id}")
    assert missing.status_code == 404
    assert "STREAMFN_RESUME" in missing.json()["error"]["message"]
    # EventSource's reconnect is told to stop, as before resume existed, and nothing restarts.
    reconnect = {"Last-Event-ID": f"{id}:2"}
    stopped, _ = await stream(client, f"{url}/chat/stream?prompt=x", headers=reconnect)
    assert stopped.status_code == 204
    assert observed.opened == 1


async def test_ai_sdk_resume_by_chat_id(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    observed = paced(first_s=0.3)
    url = serve(app(observed, tmp_path))
    chat = f"chat-{uuid.uuid4().hex}"
    nothing = await client.get(f"{url}/api/chat/{chat}/stream")
    assert nothing.status_code == 204
    body = {"id": chat, "messages": [{"role": "user", "parts": [{"type": "text", "text": "x"}]}]}
    # Left before its first token: the whole message, from `start`, on resume.
    with pytest.raises(httpx.ReadTimeout):
        await client.post(f"{url}/api/chat", json=body, timeout=0.1)
    response, events = await stream(client, f"{url}/api/chat/{chat}/stream")
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    parts = [json.loads(e.data) for e in events if e.data != "[DONE]"]
    assert parts[0]["type"] == "start"
    assert "".join(p["delta"] for p in parts if p["type"] == "text-delta") == "".join(WORDS)
    assert parts[-1]["type"] == "finish"
    # It has ended: nothing to resume.
    await asyncio.sleep(0.2)
    assert (await client.get(f"{url}/api/chat/{chat}/stream")).status_code == 204
    assert observed.opened == 1


async def test_ai_sdk_stop_by_chat_id(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    observed = paced(every_s=0.2)
    url = serve(app(observed, tmp_path))
    chat = f"chat-{uuid.uuid4().hex}"
    assert (await client.post(f"{url}/api/chat/{chat}/stop")).status_code == 404
    body = {"id": chat, "messages": [{"role": "user", "parts": [{"type": "text", "text": "x"}]}]}
    async with client.stream("POST", f"{url}/api/chat", json=body) as response:
        reading = asyncio.ensure_future(read_events(response))
        await asyncio.sleep(0.3)  # its first batch is in the log
        assert (await client.post(f"{url}/api/chat/{chat}/stop")).status_code == 202
        events = await asyncio.wait_for(reading, 3)
    parts = [json.loads(e.data) for e in events if e.data != "[DONE]"]
    assert parts[-2] == {"type": "error", "errorText": "the stream was stopped on request"}
    assert parts[-1] == {"type": "finish", "finishReason": "error"}
    assert observed.closed.is_set()
    assert observed.yielded < len(WORDS)
