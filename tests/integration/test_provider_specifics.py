"""What is particular to each provider: finish and usage mapping, configuration, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.providers.echo import EchoProvider
from streamfn.providers.registry import ProviderRegistry, ProviderSpec
from streamfn.settings import Settings
from tests.fakes import wire as w
from tests.fakes.upstream import Reply, Upstream
from tests.sse_client import stream, text_of, user

Serve = Callable[[ASGIApp], str]
ROOT = Path(__file__).parents[2]


async def run(
    serve: Serve, client: httpx.AsyncClient, steps: list[Any], settings: dict[str, Any], **body: Any
) -> tuple[list[Any], Upstream]:
    with Upstream(Reply(body=steps)) as up:
        url = serve(
            create_app(
                Settings(**{k: v(up.url) if callable(v) else v for k, v in settings.items()})
            )
        )
        _, events = await stream(client, f"{url}/chat/stream", user("hi", **body))
    return events, up


# --- anthropic --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
async def test_anthropic_stop_reasons_map_to_openai_vocabulary(
    serve: Serve, client: httpx.AsyncClient, stop_reason: str, finish: str
) -> None:
    steps = w.anthropic_stream(["a", "b"], stop_reason=stop_reason)
    events, _ = await run(serve, client, steps, w.ANTHROPIC_SETTINGS, provider="anthropic")
    assert events[-1].event == "done"
    assert events[-1].data == finish


async def test_anthropic_usage_combines_message_start_and_message_delta(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    steps = [
        *w.anthropic_start(input_tokens=20, cache_read=100),
        w.anthropic_delta("x"),
        *w.anthropic_end(output_tokens=42),
    ]
    events, up = await run(serve, client, steps, w.ANTHROPIC_SETTINGS, provider="anthropic")
    assert json.loads(events[-2].data) == {
        "input_tokens": 120,
        "output_tokens": 42,
        "estimated": False,
        "reasoning_tokens": None,
        "cached_input_tokens": 100,
        "cache_creation_input_tokens": None,
        "cost_usd": None,  # sent to a server that is not Anthropic's: no price
        "provider": "anthropic",
        "model": "claude-haiku-4-5",
    }
    # No max_tokens in the request: the default cap is sent (Anthropic requires one anyway).
    assert up.requests[0].json()["max_tokens"] == 16384
    assert up.requests[0].json()["model"] == "claude-haiku-4-5"
    assert "system" not in up.requests[0].json()


# --- openai -----------------------------------------------------------------------------------


async def test_openai_length_finish(serve: Serve, client: httpx.AsyncClient) -> None:
    steps = w.openai_stream(["a", " b"], finish="length")
    events, _ = await run(serve, client, steps, w.OPENAI_SETTINGS, provider="openai")
    assert text_of(events) == "a b"
    assert events[-1].data == "length"


async def test_openai_compatible_server_without_usage_gets_an_estimate(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    steps = w.openai_stream(["twelve chars"], usage=None)
    events, _ = await run(serve, client, steps, w.OPENAI_SETTINGS, provider="openai")
    usage = json.loads(events[-2].data)
    assert usage["estimated"] is True
    assert usage["output_tokens"] == 3  # 12 characters, about 4 a token
    assert usage["input_tokens"] == 1


async def test_named_openai_compatible_provider_from_settings(
    serve: Serve, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_TEST_KEY", "gsk-named-key")
    with Upstream(Reply(body=w.openai_stream(["from", " groq"]))) as up:
        monkeypatch.setenv(
            "STREAMFN_OPENAI_COMPATIBLE",
            json.dumps(
                [
                    {
                        "name": "groq",
                        "base_url": f"{up.url}/openai/v1",
                        "default_model": "llama-3.1-8b-instant",
                        "api_key_env": "GROQ_TEST_KEY",
                    }
                ]
            ),
        )
        url = serve(create_app())
        providers = (await client.get(f"{url}/providers")).json()["providers"]
        # Its fake upstream listens: it is reachable.
        groq = {"name": "groq", "default_model": "llama-3.1-8b-instant", "reachable": True}
        assert groq in providers
        _, events = await stream(
            client, f"{url}/chat/stream", user("x", provider="groq", max_tokens=9)
        )
    assert text_of(events) == "from groq"
    [request] = up.requests
    assert request.path == "/openai/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer gsk-named-key"
    assert request.json()["model"] == "llama-3.1-8b-instant"
    assert request.json()["max_tokens"] == 9


async def test_openai_gets_the_organization_and_project_a_keyless_server_no_key(
    serve: Serve, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OPENAI_ORG_ID and OPENAI_PROJECT_ID go to OpenAI's API as the openai SDK sends them; a
    server configured without a key (llama.cpp, vLLM) is sent no authorization at all."""
    monkeypatch.setenv("OPENAI_ORG_ID", "org-test")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_test")
    with Upstream(Reply(body=w.openai_stream(["a"])), Reply(body=w.openai_stream(["b"]))) as up:
        monkeypatch.setenv(
            "STREAMFN_OPENAI_COMPATIBLE",
            json.dumps([{"name": "local", "base_url": f"{up.url}/v1", "default_model": "m"}]),
        )
        url = serve(create_app(Settings(openai_api_key=w.SECRET, openai_base_url=f"{up.url}/v1")))
        _, first = await stream(client, f"{url}/chat/stream", user("x", provider="openai"))
        _, second = await stream(client, f"{url}/chat/stream", user("x", provider="local"))
    assert (text_of(first), text_of(second)) == ("a", "b")
    openai_request, local_request = up.requests
    assert openai_request.headers["authorization"] == f"Bearer {w.SECRET}"
    assert openai_request.headers["openai-organization"] == "org-test"
    assert openai_request.headers["openai-project"] == "proj_test"
    assert openai_request.headers["content-type"] == "application/json"
    assert "authorization" not in local_request.headers
    assert "openai-organization" not in local_request.headers


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"upstream proxy: bad gateway k-secret", "openai answered 400: upstream proxy: bad"),
        (b'{"message": "no error wrapper"}', "openai answered 400: no error wrapper"),
        (b'{"error": {"message": "wrapped", "type": "x"}}', "openai answered 400: wrapped"),
        (b'{"error": {"type": "no message"}}', "openai answered 400"),
    ],
)
async def test_an_openai_error_body_is_read_as_the_sdk_reads_it(
    body: bytes, message: str, serve: Serve, client: httpx.AsyncClient
) -> None:
    """A failed status's body: the `error` object's message, or the body's own, or its text when
    it is not JSON, the key redacted."""
    reply = Reply(status=400, body=[body], content_type="application/json")
    with Upstream(reply) as up:
        settings = Settings(openai_api_key="k-secret", openai_base_url=f"{up.url}/v1")
        url = serve(create_app(settings))
        response = await client.post(f"{url}/chat/stream", json=user("x", provider="openai"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "bad_request"
    assert error["message"].startswith(message), error["message"]
    assert "k-secret" not in response.text


@pytest.mark.parametrize(
    ("base_url", "param"),
    [
        (None, "max_completion_tokens"),
        ("https://api.openai.com/v1", "max_completion_tokens"),
        ("http://127.0.0.1:8080/v1", "max_tokens"),
        ("https://openrouter.ai/api/v1", "max_tokens"),
    ],
)
def test_max_tokens_parameter_by_server(base_url: str | None, param: str) -> None:
    from streamfn.providers.registry import max_tokens_param

    assert max_tokens_param(base_url) == param


# --- ollama -----------------------------------------------------------------------------------


async def test_ollama_length_and_missing_prompt_count(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    done = json.loads(w.ollama_done("length"))
    del done["prompt_eval_count"]  # Ollama omits it when the prompt was cached
    steps = [w.ollama_line("a"), w.ollama_line(" b"), (json.dumps(done) + "\n").encode()]
    events, _ = await run(serve, client, steps, w.OLLAMA_SETTINGS, provider="ollama")
    assert events[-1].data == "length"
    usage = json.loads(events[-2].data)
    assert usage == {
        "input_tokens": 1,
        "output_tokens": 3,
        "estimated": True,
        "reasoning_tokens": None,
        "cached_input_tokens": None,
        "cache_creation_input_tokens": None,
        "cost_usd": None,  # Ollama has no price
        "provider": "ollama",
        "model": "llama3.2",
    }


async def test_ollama_unknown_model_is_400(serve: Serve, client: httpx.AsyncClient) -> None:
    error = json.dumps({"error": "model 'nope' not found, try pulling it first"}).encode()
    with Upstream(Reply(status=404, body=[error], content_type="application/json")) as up:
        url = serve(create_app(Settings(ollama_host=up.url)))
        response = await client.post(
            f"{url}/chat/stream", json=user("x", provider="ollama", model="nope")
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "bad_request"
    assert "model 'nope' not found" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("http://127.0.0.1:11434", "http://127.0.0.1:11434"),
        ("localhost", "http://localhost:11434"),
        ("0.0.0.0:9999", "http://127.0.0.1:9999"),
        ("https://ollama.example.com", "https://ollama.example.com:443"),
        ("http://gpu-box:11434/", "http://gpu-box:11434"),
    ],
)
def test_ollama_host_forms(host: str, url: str) -> None:
    from streamfn.providers.registry import ollama_base_url as base_url

    assert base_url(host) == url


# --- configuration and start-up ---------------------------------------------------------------


def test_default_provider_follows_configuration() -> None:
    def default(**settings: Any) -> str:
        return str(create_app(Settings(**settings)).state.providers.default)

    assert default() == "echo"
    assert default(anthropic_api_key="k") == "anthropic"
    assert default(anthropic_api_key="k", openai_api_key="k") == "openai"
    assert default(openai_api_key="k", default_provider="ollama") == "ollama"


async def test_unconfigured_builtin_provider_says_how_to_enable_it(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(create_app(Settings()))
    response = await client.post(f"{url}/chat/stream", json=user("x", provider="anthropic"))
    assert response.status_code == 400
    assert "set ANTHROPIC_API_KEY" in response.json()["error"]["message"]


def test_configured_sdks_are_imported_when_the_app_starts_not_on_first_use() -> None:
    """Importing an SDK takes up to a second or two: done on a first request, it would stall
    every other stream. The app imports the configured providers' SDKs when it starts, and
    never an unconfigured one's; the openai provider needs none (it speaks HTTP itself), so the
    openai SDK is never imported, configured or not."""
    script = textwrap.dedent(
        """
        import sys, json, threading
        import httpx
        from streamfn.app import create_app
        from streamfn.settings import Settings
        from tests.conftest import ServerThread
        from tests.fakes.upstream import Reply, Upstream
        from tests.fakes import wire as w

        with Upstream(Reply(body=w.openai_stream(["x"]))) as up:
            app = create_app(Settings(openai_api_key="k", openai_base_url=up.url,
                                      anthropic_api_key="k", anthropic_base_url=up.url))
            seen = {"created": sorted(m for m in ("openai", "anthropic") if m in sys.modules)}
            with ServerThread(app) as server:
                seen["started"] = sorted(m for m in ("openai", "anthropic") if m in sys.modules)
                answer = httpx.post(server.url + "/chat/stream", timeout=5,
                                    json={"messages": [{"role": "user", "content": "x"}]})
                assert "data: x" in answer.text, answer.text
            seen["after"] = sorted(m for m in ("openai", "anthropic") if m in sys.modules)
        print(json.dumps(seen))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "created": [],
        "started": ["anthropic"],
        "after": ["anthropic"],
    }


async def test_providers_are_built_in_a_worker_thread() -> None:
    built_in: list[str] = []

    def build() -> EchoProvider:
        built_in.append(threading.current_thread().name)
        return EchoProvider(delay_s=0)

    registry = ProviderRegistry([ProviderSpec("slow", "m", build)], "slow")
    await registry.prepare()
    assert built_in
    assert built_in[0] != threading.main_thread().name
    assert isinstance(registry.get("slow"), EchoProvider)
    assert len(built_in) == 1  # built once, at prepare
