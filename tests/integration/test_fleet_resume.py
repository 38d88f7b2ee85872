"""Resume across a fleet sharing a real redis-server: a stream started on one server, dropped,
resumed on another and followed there live to the exact end; the producing server killed
(`kill -9`) ends its followers elsewhere with an error event within seconds; Redis stopped
mid-stream does not hang a stream."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.servers import RedisServer, start_redis
from tests.integration.test_resume import leave_after, numbers
from tests.processes import ServerProcess
from tests.sse_client import stream, text_of
from tests.waiting import free_port

WORDS = [f"w{i}" for i in range(60)]


def _settings(redis_url: str, data: Path, delay_ms: int = 50) -> dict[str, str]:
    return {
        "STREAMFN_REDIS_URL": redis_url,
        "STREAMFN_ECHO_DELAY_MS": str(delay_ms),
        "STREAMFN_RESUME_GRACE_S": "3",
        # Files of their own per server: what they share is Redis.
        "STREAMFN_STREAMS_DB": str(data / f"streams-{uuid.uuid4().hex}.sqlite3"),
        "STREAMFN_USAGE_DB": str(data / f"usage-{uuid.uuid4().hex}.sqlite3"),
    }


def _chat(id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": " ".join(WORDS)}]}
    return body if id is None else {**body, "stream_id": id}


async def test_a_stream_resumes_on_another_server_live_to_its_exact_end(
    redis: RedisServer, tmp_path: Path
) -> None:
    first = ServerProcess(_settings(redis.url, tmp_path))
    second = ServerProcess(_settings(redis.url, tmp_path))
    id = f"fleet-{uuid.uuid4().hex}"
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            response, seen = await leave_after(
                client, "POST", f"{first.url}/chat/stream", 5, json=_chat(id)
            )
            assert response.status_code == 200
            await asyncio.sleep(0.3)  # the first batch reaches Redis meanwhile
            resumed, rest = await stream(
                client, f"{second.url}/chat/stream/{id}", headers={"Last-Event-ID": seen[-1].id}
            )
        assert resumed.status_code == 200, resumed.text
        events = seen + rest
        assert numbers(events, id) == list(range(1, len(events) + 1))  # each once, in order
        assert text_of(events) == " ".join(WORDS)
        assert [e.event for e in events[-2:]] == ["usage", "done"]
        # Followed live: most of the stream came after the resume began, not from a log that
        # already held it all.
        assert len(rest) > len(WORDS) // 2
    finally:
        first.stop()
        second.stop()


async def test_killing_the_producing_server_ends_its_followers_elsewhere(
    redis: RedisServer, tmp_path: Path
) -> None:
    producing = ServerProcess(_settings(redis.url, tmp_path, delay_ms=200))  # a 12 s stream
    other = ServerProcess(_settings(redis.url, tmp_path))
    id = f"fleet-{uuid.uuid4().hex}"
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            _, seen = await leave_after(
                client, "POST", f"{producing.url}/chat/stream", 2, json=_chat(id)
            )

            async def follow() -> list[Any]:
                _, rest = await stream(
                    client,
                    f"{other.url}/chat/stream/{id}",
                    headers={"Last-Event-ID": seen[-1].id},
                )
                return rest

            await asyncio.sleep(0.5)
            following = asyncio.create_task(follow())
            await asyncio.sleep(1)  # the follower has some of it live
            producing.kill()
            killed = time.monotonic()
            rest = await asyncio.wait_for(following, 30)
            ended_after = time.monotonic() - killed
        assert rest[-1].event == "error"
        assert json.loads(rest[-1].data)["type"] == "interrupted"
        assert ended_after < 10, ended_after
        assert numbers(seen + rest, id) == list(range(1, len(seen) + len(rest) + 1))
    finally:
        producing.stop()
        other.stop()


async def test_redis_stopped_mid_stream_hangs_nothing(tmp_path: Path) -> None:
    directory = Path(tempfile.mkdtemp(prefix="streamfn-redis-"))
    port = free_port()
    own = start_redis(directory, port)  # a Redis of this test's own, to stop
    server = ServerProcess(_settings(f"redis://127.0.0.1:{port}/0", tmp_path))
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            request = client.build_request(
                "POST", f"{server.url}/chat/stream", json=_chat(f"fleet-{uuid.uuid4().hex}")
            )
            response = await client.send(request, stream=True)
            assert response.status_code == 200
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith("data:") and line.strip().endswith("w5"):
                    break
            own.terminate()
            own.wait(10)
            started = time.monotonic()
            body = "".join([line + "\n" async for line in lines])
            await response.aclose()
            # It went on to its end: the client it streams to does not need the log.
            assert "event: done" in body
            assert time.monotonic() - started < 20
            # A new stream meanwhile is served too, without resume.
            later = await client.post(f"{server.url}/chat/stream", json=_chat())
            assert later.status_code == 200
            assert "event: done" in later.text
            # One that names its stream_id cannot be told apart from one taken: a clear 503.
            named = await client.post(f"{server.url}/chat/stream", json=_chat(uuid.uuid4().hex))
            assert named.status_code == 503
            assert named.json()["error"]["param"] == "stream_id"
            resumed = await client.get(f"{server.url}/chat/stream/{uuid.uuid4().hex}")
            assert resumed.status_code == 503
    finally:
        server.stop()
        if own.poll() is None:
            own.terminate()
        shutil.rmtree(directory, ignore_errors=True)
