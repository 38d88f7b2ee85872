"""The native stream end to end through a real uvicorn server, read with a real SSE parser."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.chunks import Finish, StreamError, TextDelta, Usage
from streamfn.providers import ProviderSpec
from streamfn.providers.echo import EchoProvider
from streamfn.settings import Settings
from tests.conftest import ServerThread
from tests.providers import Observed, Scripted, spec
from tests.sse_client import leave_after_tokens, stream, text_of, user

Serve = Callable[[ASGIApp], str]

PROMPT = (
    "  Hello, world!\n\nThis line: has  two spaces\tand a tab.\r\n"
    ":colon first \u00e9\u2603\U0001f600 "
)


def echo_app(delay_ms: int = 0, **settings: Any) -> ASGIApp:
    return create_app(Settings(echo_delay_ms=delay_ms, **settings))


async def test_post_streams_the_reply_exactly_with_ids_usage_and_done(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(echo_app())
    body = {
        "messages": [
            {"role": "system", "content": "sys words"},
            {"role": "user", "content": PROMPT},
        ]
    }
    response, events = await stream(client, f"{url}/chat/stream", body)
    assert response.status_code == 200
    # SSE turns CRLF into LF (see streamfn.sse); everything else arrives exactly.
    assert text_of(events) == PROMPT.replace("\r\n", "\n")
    names = [e.event for e in events]
    tokens = names.count("token")
    assert tokens == len(PROMPT.split())
    assert names == ["token"] * tokens + ["usage", "done"]
    # Ids name the stream (its X-Stream-Id) and the event's number in it.
    id = response.headers["x-stream-id"]
    assert [e.id for e in events] == [f"{id}:{n}" for n in range(1, len(events) + 1)]
    assert events[0].retry == 3000
    assert all(e.retry is None for e in events[1:])
    assert json.loads(events[-2].data) == {
        "input_tokens": 2 + len(PROMPT.split()),
        "output_tokens": tokens,
        "estimated": False,
        "reasoning_tokens": None,
        "cached_input_tokens": None,
        "cache_creation_input_tokens": None,
        "cost_usd": None,  # echo has no price
        "provider": "echo",  # what answered
        "model": "echo",
    }
    assert events[-1].data == "stop"


async def test_max_tokens_ends_with_length(serve: Serve, client: httpx.AsyncClient) -> None:
    url = serve(echo_app())
    _, events = await stream(client, f"{url}/chat/stream", user("a b c d e", max_tokens=3))
    assert text_of(events) == "a b c"
    assert json.loads(events[-2].data)["output_tokens"] == 3
    assert events[-1].data == "length"


async def test_max_tokens_cap_bounds_every_request(serve: Serve, client: httpx.AsyncClient) -> None:
    url = serve(echo_app(max_tokens_cap=2))
    _, events = await stream(client, f"{url}/chat/stream", user("a b c d e", max_tokens=4))
    assert text_of(events) == "a b"
    assert events[-1].data == "length"


async def test_get_route_for_eventsource(serve: Serve, client: httpx.AsyncClient) -> None:
    url = serve(echo_app())
    response, events = await stream(
        client, f"{url}/chat/stream", prompt="ask me anything", system="be kind", max_tokens=2
    )
    assert response.status_code == 200
    assert text_of(events) == "ask me"
    assert json.loads(events[-2].data)["input_tokens"] == 2 + 3
    assert events[-1].data == "length"


async def test_eventsource_reconnect_is_refused_with_204(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(echo_app())
    response = await client.get(
        f"{url}/chat/stream", params={"prompt": "again"}, headers={"Last-Event-ID": "5"}
    )
    assert response.status_code == 204
    assert response.content == b""


async def test_stream_headers_stop_buffering_and_caching(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(echo_app())
    response, _ = await stream(client, f"{url}/chat/stream", user("hi"))
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "no-store" in response.headers["cache-control"]
    assert "no-transform" in response.headers["cache-control"]
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-length" not in response.headers


async def test_tokens_arrive_progressively(serve: Serve, client: httpx.AsyncClient) -> None:
    url = serve(echo_app(delay_ms=100))
    _, events = await stream(client, f"{url}/chat/stream", user("one two three four five six"))
    arrivals = [e.at for e in events if e.event == "token"]
    assert len(arrivals) == 6
    # Each token is read about one pace after the one before it, not all at once at the end.
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(gap > 0.05 for gap in gaps), gaps
    assert arrivals[-1] - arrivals[0] > 0.4


async def test_keepalive_comments_between_slow_tokens(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(echo_app(delay_ms=400, keepalive_s=0.1))
    async with client.stream("POST", f"{url}/chat/stream", json=user("slow words")) as response:
        lines = [line async for line in response.aiter_lines()]
    assert lines.count(": keepalive") >= 2
    assert "data: slow" in lines
    assert "data:  words" in lines


async def test_client_disconnect_closes_the_provider_stream(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    observed = Observed(EchoProvider(delay_s=0.1))
    # No grace period: nobody can resume, so leaving cancels at once (tests/integration/
    # test_resume.py has the grace period).
    url = serve(create_app(Settings(resume_grace_s=0), providers=[spec(observed)]))
    words = " ".join(f"w{i}" for i in range(100))
    left_at = await leave_after_tokens(client, f"{url}/chat/stream", user(words))
    assert await asyncio.to_thread(observed.closed.wait, 1.0), "provider stream not closed in 1 s"
    assert observed.closed_at is not None
    assert observed.closed_at - left_at < 1.0
    produced = observed.yielded
    await asyncio.sleep(0.3)
    assert observed.yielded == produced <= 4, "tokens were produced after the client left"


async def test_client_leaving_before_the_first_token_closes_the_provider(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    observed = Observed(Scripted(30.0, TextDelta("never"), Finish("stop", Usage(1, 1))))
    url = serve(create_app(Settings(resume_grace_s=0), providers=[spec(observed)]))
    with pytest.raises(httpx.ReadTimeout):
        await client.post(f"{url}/chat/stream", json=user("hi"), timeout=0.3)
    left_at = time.monotonic()
    assert await asyncio.to_thread(observed.closed.wait, 1.0)
    assert observed.closed_at is not None
    assert observed.closed_at - left_at < 1.0
    assert observed.yielded == 0


async def test_provider_is_built_once_at_start_and_not_closed_while_serving(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    built: list[Observed] = []

    def build() -> Observed:
        built.append(Observed(EchoProvider(delay_s=0)))
        return built[-1]

    app = create_app(Settings(), providers=[ProviderSpec("echo", "echo", build)])
    assert built == [], "creating the app must not build providers"
    url = serve(app)
    assert len(built) == 1, "started: built before the first request"
    for _ in range(3):
        _, events = await stream(client, f"{url}/chat/stream", user("x y"))
        assert text_of(events) == "x y"
    assert len(built) == 1
    assert not built[0].provider_closed


def test_registry_closes_providers_when_the_app_shuts_down() -> None:
    observed = Observed(EchoProvider(delay_s=0))
    with ServerThread(create_app(Settings(), providers=[spec(observed)])) as server:
        httpx.post(f"{server.url}/chat/stream", json=user("x"), timeout=5)
        assert not observed.provider_closed
    assert observed.provider_closed


@pytest.mark.parametrize(
    ("request_kwargs", "status", "error_type", "message"),
    [
        (
            {"json": user("x", provider="nope")},
            400,
            "unknown_provider",
            "known providers: echo, ollama",
        ),
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
            "invalid_request",
            "JSON",
        ),
        ({"json": {"messages": []}}, 422, "invalid_request", "messages"),
        ({"json": {}}, 422, "invalid_request", "messages: Field required"),
        (
            {"json": {"messages": [{"role": "robot", "content": "x"}]}},
            422,
            "invalid_request",
            "role",
        ),
        ({"json": user("x", max_tokens=0)}, 422, "invalid_request", "max_tokens"),
        ({"json": user("x", temperature=3)}, 422, "invalid_request", "temperature"),
        ({"json": user("x", max_token=5)}, 422, "invalid_request", "max_token: Extra inputs"),
        ({"json": user("x" * 2000)}, 413, "payload_too_large", "1000 bytes"),
    ],
)
async def test_bad_post_input(
    serve: Serve,
    client: httpx.AsyncClient,
    request_kwargs: dict[str, Any],
    status: int,
    error_type: str,
    message: str,
) -> None:
    url = serve(echo_app(max_body_bytes=1000))
    response = await client.post(f"{url}/chat/stream", **request_kwargs)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == error_type
    assert message in error["message"]
    assert error["retryable"] is False


async def test_chunked_body_over_the_limit_is_413(serve: Serve, client: httpx.AsyncClient) -> None:
    url = serve(echo_app(max_body_bytes=1000))
    body = json.dumps(user("y" * 5000)).encode()

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for i in range(0, len(body), 512):
            yield body[i : i + 512]

    response = await client.post(
        f"{url}/chat/stream", content=chunked(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "payload_too_large"


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({}, 422, "prompt: Field required"),
        ({"prompt": ""}, 422, "prompt"),
        ({"prompt": "x", "provider": "nope"}, 400, "known providers: echo, ollama"),
        ({"prompt": "x", "max_tokens": "many"}, 422, "max_tokens"),
    ],
)
async def test_bad_get_input(
    serve: Serve, client: httpx.AsyncClient, params: dict[str, str], status: int, message: str
) -> None:
    url = serve(echo_app())
    response = await client.get(f"{url}/chat/stream", params=params)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


async def test_health_providers_and_demo_page(serve: Serve, client: httpx.AsyncClient) -> None:
    # Port 9 (discard): nothing listens there, so Ollama is reported unreachable.
    url = serve(create_app(Settings(ollama_host="127.0.0.1:9")))
    assert (await client.get(f"{url}/healthz")).json() == {"status": "ok"}
    assert (await client.get(f"{url}/providers")).json() == {
        "default": "echo",
        "providers": [
            {"name": "echo", "default_model": "echo", "reachable": None},
            {
                "name": "ollama",
                "default_model": "llama3.2",
                "reachable": False,
                "detail": "nothing answers at 127.0.0.1:9",
            },
        ],
    }
    page = await client.get(f"{url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="stop"' in page.text
    assert "streamfn.js" in page.text
    missing = await client.get(f"{url}/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"


# --- the guard: failures and timeouts, before and after the first token ----------------------


def scripted_app(*steps: Any, **settings: Any) -> ASGIApp:
    return create_app(Settings(**settings), providers=[spec(Scripted(*steps))])


async def test_error_before_first_token_is_an_http_status(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(scripted_app(StreamError("rate_limit", "slow down", True, retry_after=6.2)))
    response = await client.post(f"{url}/chat/stream", json=user("x"))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {
        "error": {"type": "rate_limit", "message": "slow down", "retryable": True}
    }


async def test_first_token_timeout_is_504(serve: Serve, client: httpx.AsyncClient) -> None:
    url = serve(scripted_app(5.0, TextDelta("late"), first_token_timeout_s=0.2))
    started = time.monotonic()
    response = await client.post(f"{url}/chat/stream", json=user("x"))
    assert response.status_code == 504
    assert time.monotonic() - started < 2
    assert "first-token timeout" in response.json()["error"]["message"]


async def test_idle_timeout_after_first_token_is_an_error_event(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(scripted_app(TextDelta("hi"), 5.0, TextDelta("late"), idle_timeout_s=0.2))
    response, events = await stream(client, f"{url}/chat/stream", user("x"))
    assert response.status_code == 200
    assert [e.event for e in events] == ["token", "error"]
    error = json.loads(events[-1].data)
    assert error == {
        "type": "timeout",
        "message": "the provider exceeded the idle timeout",
        "retryable": True,
    }


async def test_total_timeout(serve: Serve, client: httpx.AsyncClient) -> None:
    steps = [x for _ in range(20) for x in (TextDelta("t"), 0.05)]
    url = serve(scripted_app(*steps, total_timeout_s=0.3))
    _, events = await stream(client, f"{url}/chat/stream", user("x"))
    assert events[-1].event == "error"
    assert "total timeout" in json.loads(events[-1].data)["message"]
    assert 2 <= [e.event for e in events].count("token") < 20


async def test_stream_without_finish_is_an_error_not_a_clean_end(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(scripted_app(TextDelta("cut "), TextDelta("off")))
    _, events = await stream(client, f"{url}/chat/stream", user("x"))
    assert [e.event for e in events] == ["token", "token", "error"]
    assert json.loads(events[-1].data)["type"] == "upstream_error"


async def test_provider_bug_mid_stream_is_logged_and_an_error_event(
    serve: Serve, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    url = serve(scripted_app(TextDelta("ok"), RuntimeError("secret-ish detail")))
    with caplog.at_level(logging.ERROR, logger="streamfn"):
        _, events = await stream(client, f"{url}/chat/stream", user("x"))
    assert [e.event for e in events] == ["token", "error"]
    error = json.loads(events[-1].data)
    assert error["type"] == "internal"
    assert "secret-ish" not in error["message"]
    assert any(r.exc_info and "secret-ish detail" in str(r.exc_info[1]) for r in caplog.records)


async def test_openapi_documents_statuses_and_media_types(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(echo_app())
    document = (await client.get(f"{url}/openapi.json")).json()
    for path, method in [
        ("/chat/stream", "post"),
        ("/chat/stream", "get"),
        ("/api/chat", "post"),
        ("/v1/chat/completions", "post"),
    ]:
        operation = document["paths"][path][method]
        statuses = set(operation["responses"])
        assert {"200", "400", "413", "429", "502", "503", "504"} <= statuses, (path, statuses)
        assert "text/event-stream" in operation["responses"]["200"]["content"]
    completions = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "application/json" in completions["200"]["content"]
    assert "422" not in completions  # OpenAI answers a malformed body with 400
    assert "422" in document["paths"]["/chat/stream"]["post"]["responses"]


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/chat/stream", "GET, OPTIONS, POST"),
        ("/v1/chat/completions", "OPTIONS, POST"),
        ("/api/chat", "OPTIONS, POST"),
        ("/v1/models", "GET, OPTIONS"),
    ],
)
async def test_options_lists_the_methods(
    serve: Serve, client: httpx.AsyncClient, path: str, allow: str
) -> None:
    url = serve(echo_app())
    response = await client.options(f"{url}{path}")
    assert response.status_code == 204
    assert response.headers["allow"] == allow


def test_a_client_that_stops_reading_is_treated_as_gone(serve: Serve) -> None:
    """Its sends block once the socket's buffers fill; after STREAMFN_WRITE_TIMEOUT_S the
    stream ends and the upstream request is cancelled, long before the total timeout."""
    big = TextDelta("x" * 65536)
    steps = [step for _ in range(5000) for step in (big, 0.002)]
    observed = Observed(Scripted(*steps, Finish("stop", Usage(1, 1))))
    settings = Settings(
        write_timeout_s=0.5, total_timeout_s=120, usage_records=False, resume_grace_s=0
    )
    url = serve(create_app(settings, providers=[spec(observed)]))
    port = int(url.rsplit(":", 1)[1])
    body = b'{"messages": [{"role": "user", "content": "go"}]}'
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            b"POST /chat/stream HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        started = time.monotonic()
        # Never read: the server's writes back up and block.
        assert observed.closed.wait(10), "the upstream stream is still open"
        assert observed.closed_at is not None
        assert observed.closed_at - started < 5
    assert observed.yielded < 5000  # cut short, not run to its end


def _garbage_of_the_server(garbage: list[object]) -> list[str]:
    """What of a server's request a collection found unreachable: its connection's objects,
    its response, its stream, or a frame of streamfn's code."""
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from streamfn.resume.producer import Producer
    from streamfn.sse import EventStream

    found = []
    for o in garbage:
        if isinstance(o, RequestResponseCycle | EventStream | Producer):
            found.append(type(o).__name__)
        elif type(o).__name__ == "frame" and "/streamfn/" in o.f_code.co_filename:  # type: ignore[attr-defined]
            found.append(f"frame {o.f_code.co_name}")  # type: ignore[attr-defined]
    return found


@pytest.mark.parametrize("leaves", [False, True], ids=["read whole", "client leaves"])
async def test_a_stream_leaves_nothing_for_the_cycle_collector(
    serve: Serve, client: httpx.AsyncClient, leaves: bool
) -> None:
    """A stream's request, response and producer are freed by reference counting when it ends,
    read whole or left by its client: nothing of it waits for a full collection (memory.py
    freezes what survives one; a cycle left there stays until a reclaim)."""
    import gc

    url = serve(echo_app(delay_ms=20, resume_grace_s=0.1))
    await stream(client, f"{url}/chat/stream", user("warm up"))  # first use: imports, pools
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept in gc.garbage
    try:
        if leaves:
            await leave_after_tokens(client, f"{url}/chat/stream", user("a b c d e f g h"))
        else:
            _, events = await stream(client, f"{url}/chat/stream", user("a b c"))
            assert text_of(events) == "a b c"
        await asyncio.sleep(0.6)  # it settled: its grace period over, its record written
        gc.collect()
        found = _garbage_of_the_server(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert found == []
