"""`make smoke`: the post-deploy check, run as a user runs it (local/smoke.py in a process of
its own) against the function URL emulator with auth on and the template's CORS. Against
`make run-lambda` itself: tests/awslambda/test_local_stack.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from local.lambda_emulator import EmulatorThread
from local.url_cors import UrlCors
from tests.fakes.aws import Moto, create_streams_table
from tests.keys import create_key

Start = Callable[..., EmulatorThread]
ROOT = Path(__file__).parents[2]
ORIGIN = "https://app.example"


def smoke(url: str, key: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "local" / "smoke.py"), url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "STREAMFN_SMOKE_KEY": key or ""},
    )


def test_smoke_passes_against_a_guarded_url_with_cors(
    emulator: Start, moto: Moto, tmp_path: Path
) -> None:
    db = tmp_path / "keys.sqlite3"
    key, _ = create_key(db)
    create_streams_table(moto.dynamodb(), "streams")
    fn = emulator(
        cors=UrlCors.from_template(parameters={"CorsAllowedOrigins": ORIGIN}),
        STREAMFN_AUTH="api_key",
        STREAMFN_KEYS_DB=str(db),
        STREAMFN_ECHO_DELAY_MS="20",
        STREAMFN_STREAMS_TABLE="streams",
        **moto.env,
    )
    result = smoke(fn.url, key, "--origin", ORIGIN)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = result.stdout.splitlines()
    assert [row.split("  ")[0] for row in rows[:-1]] == ["pass"] * 8, result.stdout
    assert "ids continuous, ended with done" in result.stdout
    assert "ended with a stopped error" in result.stdout  # the stop, another invocation
    assert "401 without a key" in result.stdout
    assert "allow-origin 'https://app.example'" in result.stdout
    assert rows[-1] == f"passed: {fn.url}"


def test_smoke_fails_loudly_when_the_url_is_open_or_wrong(emulator: Start) -> None:
    # Auth off, no CORS configured, no stream log. Short answers: the stop check's stream,
    # which nothing can stop here, ends by itself before the emulator does.
    fn = emulator(STREAMFN_ECHO_DELAY_MS="20", STREAMFN_MAX_TOKENS_CAP="12")
    result = smoke(fn.url, "sfn_made_up_key", "--origin", ORIGIN)
    assert result.returncode == 1
    failed = [row for row in result.stdout.splitlines() if row.startswith("FAIL")]
    assert any("a call without a key is refused" in row for row in failed), result.stdout
    assert any("CORS for a browser origin" in row for row in failed), result.stdout
    # No stream log (STREAMFN_STREAMS_TABLE unset): neither a resume nor a stop can work.
    assert any("resume after a dropped connection" in row for row in failed), result.stdout
    assert any("a stop ends the stream on the server" in row for row in failed), result.stdout
    unreachable = smoke("http://127.0.0.1:9", None)  # nothing listens there
    assert unreachable.returncode == 1
    assert "reaching the URL" in unreachable.stdout
