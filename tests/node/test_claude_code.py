"""Claude Code (`claude -p`, npm @anthropic-ai/claude-code, installed by `make test` with the
other Node packages) against `local/serve.py` (what `make run` runs) with the echo provider,
offline: the server and the CLI share a network namespace of their own that has nothing but
loopback, so a request anywhere else fails rather than leaves the machine.

Claude Code is pointed at streamfn as a user would: ANTHROPIC_BASE_URL, a streamfn key as
ANTHROPIC_API_KEY (sent as `x-api-key`) or ANTHROPIC_AUTH_TOKEN (sent as a Bearer token), its
model named by ANTHROPIC_MODEL or mapped by STREAMFN_MODEL_ALIASES, and the variables that turn
off its telemetry, error reports and updates.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_sandbox import OfflineServer, offline_servers
from tests.keys import create_key

HERE = Path(__file__).parent
CLAUDE = HERE / "node_modules" / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe"

if not CLAUDE.exists() or CLAUDE.stat().st_size < 1 << 20:  # the stub before its postinstall
    if os.environ.get("CI"):
        raise RuntimeError(f"{CLAUDE} is missing: `make test` installs tests/node (npm ci)")
    pytest.skip("Claude Code is not installed: run `make test`", allow_module_level=True)

# What keeps Claude Code to its base URL: no telemetry, error reports, update checks or other
# non-essential requests.
OFFLINE = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}


@pytest.fixture
def offline_server(tmp_path: Path) -> Iterator[Callable[..., OfflineServer]]:
    with offline_servers(tmp_path) as start:
        yield start


def claude(
    server: OfflineServer, home: Path, prompt: str, **env: str
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """`claude -p prompt --output-format json` in `home` (also its working directory); its
    result, and the process."""
    done = server.run(
        [str(CLAUDE), "-p", prompt, "--output-format", "json"],
        cwd=home,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": server.url,
            **OFFLINE,
            **env,
        },
    )
    assert done.returncode == 0, f"claude failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout), done


def test_claude_code_answers_through_streamfn(
    offline_server: Callable[..., OfflineServer], tmp_path: Path
) -> None:
    """Its default model (a `claude-*` name) mapped to echo by an alias; the key as
    `x-api-key`; thinking (adaptive, which echo answers with a signed block) streamed."""
    key, _ = create_key(tmp_path / "keys.sqlite3")
    server = offline_server(
        STREAMFN_AUTH="api_key",
        STREAMFN_KEYS_DB=str(tmp_path / "keys.sqlite3"),
        STREAMFN_MODEL_ALIASES=json.dumps({"claude-*": "echo"}),
    )
    home = tmp_path / "home"
    home.mkdir()
    result, _ = claude(server, home, "say PONG", ANTHROPIC_API_KEY=key)
    assert result["is_error"] is False, result
    assert result["subtype"] == "success"
    assert result["result"].endswith("say PONG")  # echo repeats the last user message
    assert result["usage"]["output_tokens_details"]["thinking_tokens"] > 0
    assert server.requests() == ["POST /v1/messages?beta=true 200"]


def test_claude_code_runs_a_tool_and_sends_its_result_back(
    offline_server: Callable[..., OfflineServer], tmp_path: Path
) -> None:
    """Echo calls Claude Code's Read tool; Claude Code reads the file and sends the result
    with its turn (thinking block and its signature included, which echo checks); echo answers
    with the result. The key as a Bearer token, the model by ANTHROPIC_MODEL."""
    key, _ = create_key(tmp_path / "keys.sqlite3")
    server = offline_server(
        STREAMFN_AUTH="api_key", STREAMFN_KEYS_DB=str(tmp_path / "keys.sqlite3")
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / "hello.txt").write_text("hello from the file\n")
    call = "/call Read " + json.dumps({"file_path": str(home / "hello.txt")})
    result, _ = claude(server, home, call, ANTHROPIC_AUTH_TOKEN=key, ANTHROPIC_MODEL="echo")
    assert result["is_error"] is False, result
    assert result["num_turns"] == 2
    assert result["result"].startswith("Read returned")
    assert "hello from the file" in result["result"]
    assert server.requests() == ["POST /v1/messages?beta=true 200"] * 2


def test_claude_code_shows_streamfns_refusal(
    offline_server: Callable[..., OfflineServer], tmp_path: Path
) -> None:
    """A model no provider has: Anthropic's 404, which Claude Code reports, not retries."""
    server = offline_server()
    home = tmp_path / "home"
    home.mkdir()
    done = server.run(
        [str(CLAUDE), "-p", "hi", "--output-format", "json"],
        cwd=home,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": server.url,
            "ANTHROPIC_API_KEY": "unused",
            "ANTHROPIC_MODEL": "echo/no-such-model",
            **OFFLINE,
        },
    )
    result = json.loads(done.stdout)
    assert result["is_error"] is True
    assert "no-such-model" in result["result"]
    assert set(server.requests()) == {"POST /v1/messages?beta=true 404"}
