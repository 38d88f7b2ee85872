"""What each request cost (#26, "Cost"): priced from the provider, the model and the token
counts the fake upstreams report, checked against genai-prices' own `calc_price`, in every
dialect's usage, the usage record, the headers of an answer sent whole and `streamfn usage`;
null where the price is not known (echo, a private deployment), never a guess."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

# Imported here, while tests are collected, rather than when the first server using them
# starts: the SDKs take seconds to import on a loaded machine, and a server is given ten.
import anthropic  # noqa: F401
import httpx
import openai  # noqa: F401
import pytest
from genai_prices import Usage as Counts
from genai_prices import calc_price
from starlette.types import ASGIApp

from local.stack import create_table
from streamfn.app import create_app
from streamfn.chunks import Usage
from streamfn.prices import Catalog, Prices, Rates, catalogs
from streamfn.request import ChatRequest
from streamfn.settings import CompatibleProvider, Settings
from streamfn.stores import DynamoDBUsageStore, SqliteUsageStore
from streamfn.stores.dynamodb import DAY_INDEX
from streamfn.usage import Tally, UsageRecord
from tests.fakes import bedrock as fake_bedrock
from tests.fakes import gemini as fake_gemini
from tests.fakes.aws import Moto
from tests.fakes.upstream import Reply, Upstream
from tests.fakes.wire import OPENAI_DONE, OPENAI_ROLE, SECRET, openai_chunk
from tests.sse_client import Received, stream, user
from tests.waiting import wait_for

Serve = Callable[[ASGIApp], str]


def expected(provider_id: str, model: str, **counts: int) -> float:
    """What genai-prices itself says `counts` of `model` cost at `provider_id`."""
    return float(calc_price(Counts(**counts), model, provider_id=provider_id).total_price)


class Kept:
    """A usage store that keeps the settled records."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    async def write(self, record: UsageRecord) -> None:
        if record.status:
            self.records.append(record)

    async def aclose(self) -> None:
        pass

    def one(self) -> UsageRecord:
        return wait_for(lambda: self.records[-1] if self.records else None, "a usage record")


@pytest.fixture
def upstream() -> Iterator[Callable[..., Upstream]]:
    started: list[Upstream] = []

    def start(*replies: Reply) -> Upstream:
        up = Upstream(*replies).__enter__()
        started.append(up)
        return up

    yield start
    for up in started:
        up.__exit__()


def usage_event(events: list[Received]) -> dict[str, Any]:
    [usage] = [json.loads(e.data) for e in events if e.event == "usage"]
    return usage


# --- OpenAI: cached and reasoning tokens, in every dialect -----------------------------------

# What OpenAI reports of a gpt-4o-mini answer: 1,000 of its 1,200 input tokens read from the
# prompt cache, 20 of its 50 output tokens reasoning.
OPENAI_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 50,
    "total_tokens": 1250,
    "prompt_tokens_details": {"cached_tokens": 1000, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 20, "audio_tokens": 0},
}
OPENAI_COST = expected(
    "openai",
    "gpt-4o-mini",
    input_tokens=1200,
    cache_read_tokens=1000,
    output_tokens=50,
    output_reasoning_tokens=20,
)


def openai_answer() -> Reply:
    usage = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],
        "usage": OPENAI_USAGE,
    }
    body = [
        OPENAI_ROLE,
        openai_chunk("Hello"),
        openai_chunk(" there"),
        openai_chunk(finish="stop"),
        f"data: {json.dumps(usage)}\n\n".encode(),
        OPENAI_DONE,
    ]
    return Reply(body=body)


@pytest.fixture
def openai_url(serve: Serve, upstream: Callable[..., Upstream]) -> str:
    """streamfn in front of a fake OpenAI, priced as OpenAI (the fake stands for it, as a proxy
    in front of OpenAI would: STREAMFN_PRICES says so)."""
    up = upstream(openai_answer())
    settings = Settings(
        openai_api_key=SECRET,
        openai_base_url=f"{up.url}/v1",
        prices={"openai/*": "openai"},
        usage_records=False,
    )
    return serve(create_app(settings))


async def test_the_native_usage_event_carries_the_cost_with_cached_and_reasoning_tokens(
    openai_url: str, client: httpx.AsyncClient
) -> None:
    assert OPENAI_COST > 0
    _, events = await stream(
        client, f"{openai_url}/chat/stream", user("hi", provider="openai", model="gpt-4o-mini")
    )
    assert usage_event(events) == {
        "input_tokens": 1200,
        "output_tokens": 50,
        "estimated": False,
        "reasoning_tokens": 20,
        "cached_input_tokens": 1000,
        "cache_creation_input_tokens": None,  # OpenAI does not report cache writes
        "cost_usd": pytest.approx(OPENAI_COST, rel=1e-12),
        "provider": "openai",
        "model": "gpt-4o-mini",
    }


async def test_openai_chat_completions_usage_carries_the_cost(
    openai_url: str, client: httpx.AsyncClient
) -> None:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    whole = await client.post(f"{openai_url}/v1/chat/completions", json=body)
    assert whole.status_code == 200
    usage = whole.json()["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 1000}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 20}
    assert usage["cost_usd"] == pytest.approx(OPENAI_COST, rel=1e-12)
    # An answer sent whole says its usage in its headers too.
    assert whole.headers["x-streamfn-input-tokens"] == "1200"
    assert whole.headers["x-streamfn-output-tokens"] == "50"
    assert float(whole.headers["x-streamfn-cost-usd"]) == pytest.approx(OPENAI_COST)
    assert "e" not in whole.headers["x-streamfn-cost-usd"]  # a plain decimal number
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    _, events = await stream(client, f"{openai_url}/v1/chat/completions", streamed)
    last = json.loads(events[-2].data)
    assert last["choices"] == []
    assert last["usage"]["cost_usd"] == pytest.approx(OPENAI_COST, rel=1e-12)


async def test_anthropic_messages_usage_carries_the_cost(
    openai_url: str, client: httpx.AsyncClient
) -> None:
    body = {
        "model": "openai/gpt-4o-mini",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    whole = await client.post(f"{openai_url}/v1/messages", json=body)
    usage = whole.json()["usage"]
    assert (usage["input_tokens"], usage["cache_read_input_tokens"]) == (200, 1000)
    assert usage["cost_usd"] == pytest.approx(OPENAI_COST, rel=1e-12)
    assert float(whole.headers["x-streamfn-cost-usd"]) == pytest.approx(OPENAI_COST)
    _, events = await stream(client, f"{openai_url}/v1/messages", {**body, "stream": True})
    [delta] = [json.loads(e.data) for e in events if e.event == "message_delta"]
    assert delta["usage"]["cost_usd"] == pytest.approx(OPENAI_COST, rel=1e-12)


async def test_responses_usage_carries_the_cost(openai_url: str, client: httpx.AsyncClient) -> None:
    body = {"model": "openai/gpt-4o-mini", "input": "hi", "store": False}
    whole = await client.post(f"{openai_url}/v1/responses", json=body)
    usage = whole.json()["usage"]
    assert usage["input_tokens_details"] == {"cached_tokens": 1000}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 20}
    assert usage["cost_usd"] == pytest.approx(OPENAI_COST, rel=1e-12)
    _, events = await stream(client, f"{openai_url}/v1/responses", {**body, "stream": True})
    completed = json.loads(events[-1].data)
    assert completed["type"] == "response.completed"
    assert completed["response"]["usage"]["cost_usd"] == pytest.approx(OPENAI_COST, rel=1e-12)


async def test_the_ai_sdk_finish_metadata_carries_the_cost(
    openai_url: str, client: httpx.AsyncClient
) -> None:
    body = {
        "id": "chat-1",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
        "provider": "openai",
        "model": "gpt-4o-mini",
    }
    _, events = await stream(client, f"{openai_url}/api/chat", body)
    [finish] = [json.loads(e.data) for e in events if '"type":"finish"' in e.data]
    usage = finish["messageMetadata"]["usage"]
    assert usage["inputTokenDetails"] == {"noCacheTokens": 200, "cacheReadTokens": 1000}
    assert usage["outputTokenDetails"] == {"textTokens": 30, "reasoningTokens": 20}
    assert usage["costUsd"] == pytest.approx(OPENAI_COST, rel=1e-12)


# --- Anthropic, Bedrock, Gemini: cache reads and writes, as each provider prices them --------


async def test_anthropic_cache_reads_and_writes_are_priced_apart(
    serve: Serve, client: httpx.AsyncClient, upstream: Callable[..., Upstream]
) -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-haiku-4-5-20251001",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 30,
                "cache_creation_input_tokens": 2000,
                "cache_read_input_tokens": 5000,
                "output_tokens": 1,
            },
        },
    }
    events = [
        ("message_start", start),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 40}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    body = [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]
    up = upstream(Reply(body=body))
    kept = Kept()
    settings = Settings(
        anthropic_api_key=SECRET, anthropic_base_url=up.url, prices={"anthropic/*": "anthropic"}
    )
    url = serve(create_app(settings, usage_store=kept))
    ask = user("hi", provider="anthropic", model="claude-haiku-4-5")
    _, received = await stream(client, f"{url}/chat/stream", ask)
    cost = expected(
        "anthropic",
        "claude-haiku-4-5",
        input_tokens=7030,
        cache_read_tokens=5000,
        cache_write_tokens=2000,
        output_tokens=40,
    )
    # $1 a million fresh input, $0.10 read, $1.25 written, $5 output: priced apart.
    assert cost == pytest.approx((30 * 1 + 5000 * 0.1 + 2000 * 1.25 + 40 * 5) / 1e6)
    usage = usage_event(received)
    assert (usage["cached_input_tokens"], usage["cache_creation_input_tokens"]) == (5000, 2000)
    assert usage["cost_usd"] == pytest.approx(cost, rel=1e-12)
    record = kept.one()
    assert record.cost_usd == pytest.approx(cost, rel=1e-12)
    assert (record.input_tokens, record.cached_input_tokens) == (7030, 5000)
    assert record.cache_creation_input_tokens == 2000


async def test_bedrock_model_ids_are_priced_by_aws(
    serve: Serve,
    client: httpx.AsyncClient,
    upstream: Callable[..., Upstream],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # A geographic cross-region profile (us.): AWS's price for it, not Anthropic's own.
    answer = [
        fake_bedrock.message_start(),
        fake_bedrock.text("Hi"),
        fake_bedrock.block_stop(0),
        fake_bedrock.message_stop(),
        fake_bedrock.metadata(30, 12, cache_read=100, cache_write=20),
    ]
    up = upstream(fake_bedrock.FakeBedrock(answer))  # type: ignore[arg-type]
    fake_bedrock.environment(monkeypatch, tmp_path, up.url)
    url = serve(create_app(Settings(usage_records=False)))
    ask = user("hi", provider="bedrock", model=fake_bedrock.MODEL)
    _, received = await stream(client, f"{url}/chat/stream", ask)
    usage = usage_event(received)
    assert (usage["input_tokens"], usage["cache_creation_input_tokens"]) == (150, 20)
    cost = expected(
        "aws",
        fake_bedrock.MODEL,
        input_tokens=150,
        cache_read_tokens=100,
        cache_write_tokens=20,
        output_tokens=12,
    )
    assert cost > expected(
        "anthropic",
        "claude-sonnet-4-5",
        input_tokens=150,
        cache_read_tokens=100,
        cache_write_tokens=20,
        output_tokens=12,
    )
    assert usage["cost_usd"] == pytest.approx(cost, rel=1e-12)


async def test_gemini_thoughts_and_implicit_caching_are_priced(
    serve: Serve, client: httpx.AsyncClient, upstream: Callable[..., Upstream]
) -> None:
    up = upstream(Reply(body=list(fake_gemini.MAX_TOKENS_CACHED)))
    settings = Settings(
        gemini_api_key=SECRET,
        gemini_base_url=up.url,
        prices={"gemini/*": "google"},
        usage_records=False,
    )
    url = serve(create_app(settings))
    ask = user("hi", provider="gemini", model="gemini-2.5-flash")
    _, received = await stream(client, f"{url}/chat/stream", ask)
    usage = usage_event(received)
    assert (usage["input_tokens"], usage["cached_input_tokens"]) == (2107, 2048)
    assert (usage["output_tokens"], usage["reasoning_tokens"]) == (44, 40)
    cost = expected(
        "google",
        "gemini-2.5-flash",
        input_tokens=2107,
        cache_read_tokens=2048,
        output_tokens=44,
        output_reasoning_tokens=40,
    )
    assert usage["cost_usd"] == pytest.approx(cost, rel=1e-12)


# --- no price: null, never a guess -----------------------------------------------------------


async def test_echo_costs_null_in_the_event_the_record_and_the_headers(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    kept = Kept()
    url = serve(create_app(Settings(echo_delay_ms=0), usage_store=kept))
    _, received = await stream(client, f"{url}/chat/stream", user("one two"))
    usage = usage_event(received)
    assert "cost_usd" in usage
    assert usage["cost_usd"] is None
    assert kept.one().cost_usd is None
    whole = await client.post(
        f"{url}/v1/chat/completions", json={"model": "echo", **user("one two")}
    )
    assert whole.json()["usage"]["cost_usd"] is None
    assert whole.headers["x-streamfn-cost-usd"] == "null"


async def test_a_server_of_its_own_is_not_priced_as_openai(
    serve: Serve, client: httpx.AsyncClient, upstream: Callable[..., Upstream]
) -> None:
    """OPENAI_BASE_URL at a server that is not OpenAI's (here, on loopback), and a compatible
    provider at one: a private deployment, whatever its model is called."""
    up = upstream(openai_answer())
    settings = Settings(
        openai_api_key=SECRET,
        openai_base_url=f"{up.url}/v1",
        openai_compatible=[
            CompatibleProvider(name="vllm", base_url=f"{up.url}/v1", default_model="gpt-4o-mini")
        ],
        usage_records=False,
    )
    url = serve(create_app(settings))
    for provider in ("openai", "vllm"):
        ask = user("hi", provider=provider, model="gpt-4o-mini")
        _, received = await stream(client, f"{url}/chat/stream", ask)
        assert usage_event(received)["cost_usd"] is None, provider


async def test_streamfn_prices_give_a_model_prices_of_its_own(
    serve: Serve, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = {"echo/*": {"input_mtok": 2, "output_mtok": 8}}
    monkeypatch.setenv("STREAMFN_PRICES", json.dumps(prices))
    url = serve(create_app(Settings(echo_delay_ms=0, usage_records=False)))
    _, received = await stream(client, f"{url}/chat/stream", user("one two three"))
    usage = usage_event(received)
    tokens_in, tokens_out = usage["input_tokens"], usage["output_tokens"]
    assert tokens_in > 0
    assert tokens_out > 0
    assert usage["cost_usd"] == pytest.approx((tokens_in * 2 + tokens_out * 8) / 1e6)


# --- the price lookup itself -----------------------------------------------------------------


def test_streamfns_providers_map_to_genai_prices_providers() -> None:
    settings = Settings(
        openai_compatible=[
            CompatibleProvider(
                name="groq", base_url="https://api.groq.com/openai/v1", default_model="x"
            ),
            CompatibleProvider(name="local", base_url="http://10.0.0.5:8000/v1", default_model="y"),
        ],
        anthropic_base_url="https://api.deepseek.com/anthropic",
    )
    found = catalogs(settings)
    assert found["openai"] == ("openai", None)
    assert found["gemini"] == ("google", None)
    assert found["bedrock"] == ("aws", None)
    assert found["anthropic"] == (None, "https://api.deepseek.com/anthropic")
    assert found["groq"] == (None, "https://api.groq.com/openai/v1")
    assert "ollama" not in found
    assert "echo" not in found
    prices = Prices.from_settings(settings)
    at, counts = time.time(), Usage(1_000_000, 1_000_000)
    # Groq's and DeepSeek's prices, found by their APIs' URLs; the local server has none.
    groq = prices.cost("groq", "llama-3.3-70b-versatile", counts, at=at)
    assert groq == expected("groq", "llama-3.3-70b-versatile", input_tokens=10**6,
                            output_tokens=10**6)  # fmt: skip
    assert prices.cost("anthropic", "deepseek-chat", counts, at=at) == expected(
        "deepseek", "deepseek-chat", input_tokens=10**6, output_tokens=10**6
    )
    assert prices.cost("local", "llama-3.3-70b-versatile", counts, at=at) is None
    assert prices.cost("ollama", "llama3.2", counts, at=at) is None
    assert prices.cost("openai", "no-such-model", counts, at=at) is None


@pytest.mark.parametrize(
    ("model", "known"),
    [
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", True),  # a geographic profile
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", True),  # a global one
        ("anthropic.claude-3-haiku-20240307-v1:0", True),  # the model itself
        ("amazon.nova-pro-v1:0", True),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
            True,
        ),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3", False),
    ],
)
def test_bedrock_ids_genai_prices_knows(model: str, known: bool) -> None:
    prices = Prices.from_settings(Settings())
    cost = prices.cost("bedrock", model, Usage(1000, 100), at=time.time())
    assert (cost is not None) == known


def test_overrides_come_first_exact_names_then_patterns() -> None:
    prices = Prices(
        {
            "openai/gpt-4o": None,  # no price, whatever genai-prices says
            "openai/ft:*": "openai/gpt-4o-mini",  # fine-tuned: priced as its base model
            "ollama/*": Rates(Decimal(0), Decimal(0)),  # its own machine: free
        },
        {"openai": ("openai", None)},
    )
    assert prices.price("openai", "gpt-4o") is None
    assert prices.price("openai", "ft:gpt-4o-mini:acme::x1") == Catalog("gpt-4o-mini", "openai")
    assert prices.price("openai", "gpt-4.1") == Catalog("gpt-4.1", "openai")
    assert isinstance(prices.price("ollama", "llama3.2"), Rates)
    assert prices.price("echo", "echo") is None


# --- records and totals ----------------------------------------------------------------------


def priced_record(n: int, started_at: float, cost: float | None) -> UsageRecord:
    return UsageRecord(
        request_id=f"r{n}-{uuid.uuid4().hex[:6]}",
        started_at=started_at,
        identity="key:a",
        provider="openai",
        model="gpt-4o-mini",
        outcome="finished",
        status=200,
        input_tokens=1200,
        output_tokens=50,
        usage_estimated=False,
        duration_ms=12.0,
        cached_input_tokens=1000,
        reasoning_tokens=20,
        cost_usd=cost,
    )


def test_sqlite_totals_add_up_the_costs_and_an_older_file_gains_the_columns(
    tmp_path: Path,
) -> None:
    db = tmp_path / "usage.sqlite3"
    with sqlite3.connect(db) as old:  # the table as streamfn made it before #26
        old.execute(
            "CREATE TABLE usage (request_id TEXT PRIMARY KEY, started_at REAL NOT NULL, "
            "identity TEXT, provider TEXT NOT NULL, model TEXT NOT NULL, outcome TEXT NOT NULL, "
            "status INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT "
            "NULL, usage_estimated INTEGER NOT NULL, duration_ms REAL NOT NULL, ttft_ms REAL, "
            "finish_reason TEXT, error_type TEXT, client_disconnected INTEGER NOT NULL)"
        )
        old.execute(
            "INSERT INTO usage VALUES ('old', 1764000000, NULL, 'openai', 'gpt-4o-mini', "
            "'finished', 200, 10, 5, 0, 3.0, NULL, 'stop', NULL, 0)"
        )
    old.close()
    store = SqliteUsageStore(db)
    try:
        for n, cost in enumerate((0.0001, 0.00025, None)):
            store.write_sync(priced_record(n, 1_764_000_000.0, cost))
        [totals] = store.totals()
    finally:
        store.close()
    assert totals.requests == 4
    assert totals.cost_usd == pytest.approx(0.00035)


def test_dynamodb_totals_add_up_the_costs(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the table as template.yaml makes it: its day index does not project cost_usd (it
    cannot be changed on a deployed stack), so the costs are read from the table."""
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    table = f"usage-{uuid.uuid4().hex[:8]}"
    create_table(moto.dynamodb(), "UsageTable", table)
    [index] = moto.dynamodb().describe_table(TableName=table)["Table"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == DAY_INDEX
    assert "cost_usd" not in index["Projection"].get("NonKeyAttributes", [])
    store = DynamoDBUsageStore(table, ttl_days=90)
    now = time.time()
    # More than one BatchGetItem's hundred keys, one of them unpriced (an unknown model).
    costs = [0.0001 * (n + 1) for n in range(149)] + [None]
    for n, cost in enumerate(costs):
        store.write_sync(priced_record(n, now, cost))
    [totals] = store.totals(1)
    assert totals.requests == 150
    assert totals.cost_usd == pytest.approx(sum(c for c in costs if c is not None))
    # Nothing priced in a day: no cost, not zero.
    for n in range(3):
        store.write_sync(priced_record(200 + n, now - 86400, None))
    assert [t.cost_usd for t in store.totals(2)][1] is None


def test_a_record_as_opened_claims_no_cost() -> None:
    """The record opened at a request's start stands for a process that dies mid-request: its
    tokens are then estimates, and nothing is priced from them."""
    tally = Tally("r1", None, "openai", ChatRequest(messages=(), model="gpt-4o-mini"))
    tally.prices = Prices.from_settings(Settings())
    assert tally.opening().cost_usd is None
    # Cut short, it is priced from the estimate of what was sent and received.
    assert tally.record(499).cost_usd == tally.cost_usd()
    assert tally.record(499).usage_estimated


def test_streamfn_prices_from_the_environment_are_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMFN_PRICES", '{"vllm/x": {"input_mtok": 1}}')
    with pytest.raises(ValueError, match="output_mtok"):
        Settings()
    monkeypatch.setenv("STREAMFN_PRICES", '{"vllm/x": {"input_mtok": 1, "output_mtok": 2, '
                       '"cache_read_mtok": 0.1}, "openai/*": "openai", "y/z": null}')  # fmt: skip
    prices = Prices.from_settings(Settings())
    assert prices.cost("vllm", "x", Usage(3000, 1000, cached_input_tokens=2000), at=0) == (
        pytest.approx((1000 * 1 + 2000 * 0.1 + 1000 * 2) / 1e6)
    )
    assert prices.price("y", "z") is None
