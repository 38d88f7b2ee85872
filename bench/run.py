"""`make bench`: streamfn against its baselines, in one run on loopback; writes BENCHMARKS.md and
bench/streams.png.

Processes: the fake upstream (bench/upstream.py), one target at a time (bench/targets.py), and
this one as the load generator (bench/load.py); for the Gemini and Bedrock targets, the tests'
fakes of those APIs in their benchmark mode (tests/fakes/gemini.py, tests/fakes/bedrock.py); for
the fleet, three streamfn processes sharing one Redis (bench/servers.py starts them all). Every
figure is compared with a baseline measured in the same run, as a ratio or a difference: the
machines are shared and noisy. `BENCH_QUICK=1` runs smaller counts (a smoke run, not figures to
report).

`chat`, `messages` and `responses` are the `streamfn` app (the OpenAI provider, the same fake
upstream) on its client-protocol routes, `/v1/chat/completions`, `/v1/messages` and
`/v1/responses`, each with its protocol's streaming body; the Messages and Responses routes are
compared with Chat Completions (bench/goals.py's `protocol_targets`).

`traced` is the `streamfn` target with OpenTelemetry on, exporting to a receiver on loopback
(bench/traced.py); `lmi` is N concurrent streams in one Lambda runtime process, as Lambda
Managed Instances run it (bench/lmi.py); `nonreaders` what 100 clients that never read cost a
server (bench/nonreaders.py).

`BENCH_ONLY=name,name,...` measures only those: names of TARGETS, `fleet`, `lambda`, `lmi`,
`nonreaders`. The
upstream is measured in every run (every added time to first token is over it), and only the
goals whose targets were measured are reported. Such a partial run writes BENCHMARKS.md,
results.json and streams.png to `BENCH_OUT` (a directory), else to a new temporary directory it
names, never over the committed ones; `BENCH_OUT` sends a full run's there too. The protocol
rows alone, quickly (about half a minute; two minutes without BENCH_QUICK):

    BENCH_QUICK=1 BENCH_ONLY=chat,messages,responses .venv/bin/python bench/run.py
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench import load, paired, servers, traced  # noqa: E402
from bench.goals import PROTOCOLS  # noqa: E402
from bench.measures import (  # noqa: E402
    QUICK,
    Figures,
    Skipped,
    Target,
    concurrency,
    first_use,
    idle_memory,
    say,
    single_stream,
    ttft,
)
from bench.servers import PORT  # noqa: E402

LADDER = [1, 10, 100] if QUICK else [1, 10, 100, 1000, 2000, 5000]
FLEET_STREAMS = 100 if QUICK else 1000
MESSAGES = [{"role": "user", "content": "bench"}]


@dataclass(frozen=True)
class Spec:
    label: str
    path: str
    extra: dict[str, Any]  # added to {"messages": MESSAGES}, unless `body` is given
    upstream: str  # which fake it streams from: a key of UPSTREAMS
    ceiling: int  # how far up the ladder it goes
    idle: bool = False  # resident memory per idle stream measured, in a process of its own
    optional: bool = False  # skipped, with the reason in BENCHMARKS.md, when it cannot be run
    body: dict[str, Any] | None = None  # the whole request body but its `model` (the script)
    app: str | None = None  # the app bench/targets.py serves for it; None: the target's name
    until: bytes | None = None  # where the token scan stops (bench/load.py)
    otlp: bool = False  # OpenTelemetry on, exporting to a receiver of its own (bench/traced.py)

    def request_body(self) -> dict[str, Any]:
        return self.body if self.body is not None else {"messages": MESSAGES, **self.extra}


# Each fake upstream: its command (PORT, the port it is given) and the URL a target is given.
UPSTREAMS = {
    "openai": ([str(HERE / "upstream.py"), PORT], "http://127.0.0.1:{port}/v1"),
    "gemini": (["tests/fakes/gemini.py", PORT], "http://127.0.0.1:{port}"),
    "bedrock": (["-m", "tests.fakes.bedrock", PORT], "http://127.0.0.1:{port}"),
}
FAKES = {"gemini": ROOT / "tests/fakes/gemini.py", "bedrock": ROOT / "tests/fakes/bedrock.py"}

# The upstream alone is the client's and upstream's own ceiling; the seed design is only a
# reference for the lower rungs. The Gemini and Bedrock targets are compared with `streamfn`
# (the OpenAI provider) up to 1,000 streams.
TARGETS = {
    "upstream": Spec(
        "the upstream read directly", "/v1/chat/completions", {"stream": True}, "openai", 1000
    ),
    "relay": Spec(
        "raw Starlette relay", "/v1/chat/completions", {"stream": True}, "openai", 2000, idle=True
    ),
    "seed": Spec("seed design", "/chat/stream", {}, "openai", 2000),
    "streamfn": Spec(
        "streamfn (uvicorn)", "/chat/stream", {"provider": "openai"}, "openai", 5000, idle=True
    ),
    # The same app with OpenTelemetry on (OTLP to a loopback receiver), compared with
    # `streamfn` (tracing off) of the same run up to 1,000 streams.
    "traced": Spec(
        "streamfn, OpenTelemetry on (uvicorn)",
        "/chat/stream",
        {"provider": "openai"},
        "openai",
        1000,
        app="streamfn",
        otlp=True,
    ),
    "gemini": Spec(
        "streamfn, Gemini provider (uvicorn)",
        "/chat/stream",
        {"provider": "gemini"},
        "gemini",
        1000,
        idle=True,
        optional=True,
    ),
    "bedrock": Spec(
        "streamfn, Bedrock provider (uvicorn)",
        "/chat/stream",
        {"provider": "bedrock"},
        "bedrock",
        1000,
        idle=True,
        optional=True,
    ),
    # The client protocols' routes of the `streamfn` app: a bare model (the script) goes to
    # its default provider, OpenAI (bench/targets.py). Compared with each other, not with the
    # baselines, so the ladder stops at 100; ttft's 200 paced streams still run.
    "chat": Spec(
        "streamfn, /v1/chat/completions (uvicorn)",
        "/v1/chat/completions",
        {},
        "openai",
        100,
        body={"messages": MESSAGES, "stream": True},
        app="streamfn",
    ),
    "messages": Spec(
        "streamfn, /v1/messages (uvicorn)",
        "/v1/messages",
        {},
        "openai",
        100,
        # max_tokens is required by the Messages API; the fake upstream does not stop at it.
        body={"max_tokens": 32768, "messages": MESSAGES, "stream": True},
        app="streamfn",
    ),
    "responses": Spec(
        "streamfn, /v1/responses (uvicorn)",
        "/v1/responses",
        {},
        "openai",
        100,
        body={"input": "bench", "stream": True},  # `store` left at its default, true
        app="streamfn",
        # output_text.done, content_part.done, output_item.done and completed repeat the
        # whole text: https://platform.openai.com/docs/api-reference/responses-streaming
        until=b"response.output_text.done",
    ),
}
EXTRAS = ("fleet", "lambda", "lmi", "nonreaders")  # BENCH_ONLY's names beside TARGETS'


def only() -> set[str] | None:
    """BENCH_ONLY's names (the upstream always among them), or None: everything."""
    names = {n.strip() for n in os.environ.get("BENCH_ONLY", "").split(",") if n.strip()}
    if not names:
        return None
    unknown = names - {*TARGETS, *EXTRAS}
    if unknown:
        known = ", ".join([*TARGETS, *EXTRAS])
        raise SystemExit(f"BENCH_ONLY: no such target {', '.join(sorted(unknown))} ({known})")
    return {"upstream", *names}


@contextlib.contextmanager
def upstream(spec: Spec, openai: tuple[int, str]) -> Iterator[tuple[int, str]]:
    """The port and URL of `spec`'s fake upstream: the OpenAI one that runs throughout, or a
    fake of the tests' started for this target alone."""
    if spec.upstream == "openai":
        yield openai
        return
    fake = FAKES[spec.upstream]
    if not fake.exists():
        raise Skipped(f"{fake.relative_to(ROOT)} is missing")
    command, url = UPSTREAMS[spec.upstream]
    with contextlib.ExitStack() as stack:
        try:
            port = stack.enter_context(servers.process(command))
        except servers.NotListening as exc:
            shown = " ".join(command).replace(PORT, "PORT")
            raise Skipped(f"no benchmark mode: `python {shown}` {exc}") from None
        yield port, url.format(port=port)


def server(
    spec: Spec, command: list[str], env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[int]:
    """A target's process; an optional one that does not start is skipped."""
    if not spec.optional:
        return servers.process(command, env)

    @contextlib.contextmanager
    def started() -> Iterator[int]:
        with contextlib.ExitStack() as stack:
            try:
                port = stack.enter_context(servers.process(command, env))
            except servers.NotListening as exc:
                raise Skipped(f"streamfn did not start with it: {exc}") from None
            yield port

    return started()


async def measure_target(name: str, spec: Spec, figures: Figures, openai: tuple[int, str]) -> None:
    body = spec.request_body()
    command = [str(HERE / "targets.py"), spec.app or name, PORT]
    with upstream(spec, openai) as (upstream_port, upstream_url):
        with contextlib.ExitStack() as stack:
            receiver = stack.enter_context(traced.collector()) if spec.otlp else None
            if name == "upstream":
                port = upstream_port
            else:
                env = receiver.env if receiver is not None else None
                port = stack.enter_context(server(spec, [*command, upstream_url], env))
            target = Target(name, spec.label, [port], spec.path, body, spec.until)
            if name != "upstream":
                await first_use(target, figures, spec.optional)
            await single_stream(target, figures)
            await ttft(target, figures)
            await concurrency(target, figures, [n for n in LADDER if n <= spec.ceiling])
            if receiver is not None:  # that it traced, as well as what it cost
                figures.set(name, "exported", receiver.counts())
        if spec.idle:
            with server(spec, [*command, upstream_url]) as port:
                target = Target(name, spec.label, [port], spec.path, body, spec.until)
                await load.one(port, target.raw("fast-10"), until=spec.until)  # first use, done
                await idle_memory(target, figures, 100 if QUICK else 1000)


def _target(name: str) -> Target:
    """TARGETS' `name` as a Target whose server is yet to start (its port unset)."""
    spec = TARGETS[name]
    return Target(name, spec.label, [], spec.path, spec.request_body(), spec.until)


def _starter(openai: tuple[int, str]) -> Callable[[str], contextlib.AbstractContextManager[int]]:
    """A target's server on the OpenAI fake upstream, as measure_target starts it."""

    def start(name: str) -> contextlib.AbstractContextManager[int]:
        spec = TARGETS[name]
        return server(spec, [str(HERE / "targets.py"), spec.app or name, PORT, openai[1]])

    return start


async def fleet(figures: Figures, openai_url: str) -> None:
    """Three streamfn processes sharing one Redis (limits, slots, the resume log in it), streams
    spread round-robin over them, against one process on the same Redis, in turn."""
    body = {"messages": MESSAGES, "provider": "openai"}
    command = [str(HERE / "targets.py"), "streamfn", PORT, openai_url]
    with contextlib.ExitStack() as stack:
        try:
            redis = stack.enter_context(servers.redis())
        except servers.NotListening as exc:
            say(f"  the fleet skipped: {exc}")
            figures.set("fleet", "skipped", str(exc))
            return
        env = {"STREAMFN_REDIS_URL": redis.url}
        for name, count, label in (
            ("redis", 1, "one streamfn process on Redis"),
            ("fleet", 3, "three streamfn processes on one Redis"),
        ):
            say(label)
            redis.flush()
            with contextlib.ExitStack() as processes:
                ports = [
                    processes.enter_context(servers.process(command, env)) for _ in range(count)
                ]
                target = Target(name, label, ports, "/chat/stream", body)
                for port, raw in target.requests("fast-10"):  # each server's first use, done
                    r = await load.one(port, raw)
                    assert r.exact(10), (name, port, r.status, r.error)
                await ttft(target, figures)
                redis_before = redis.cpu_s()
                await concurrency(target, figures, [FLEET_STREAMS])
                figures.set(name, "redis_cpu_s", redis.cpu_s() - redis_before)
                figures.set(name, "servers", count)


async def measure(figures: Figures, names: set[str] | None) -> None:
    command, url = UPSTREAMS["openai"]
    with servers.process(command) as openai_port:
        openai = (openai_port, url.format(port=openai_port))
        for name, spec in TARGETS.items():
            if names is not None and name not in names:
                continue
            say(spec.label)
            try:
                await measure_target(name, spec, figures, openai)
            except Skipped as exc:
                say(f"  skipped: {exc}")
                figures.rows.pop(name, None)
                figures.set(name, "skipped", str(exc))
        pair = [n for n in ("chat", *PROTOCOLS) if names is None or n in names]
        if len(pair) > 1 and all("skipped" not in figures.rows.get(n, {}) for n in pair):
            await paired.measure(figures, openai[0], [_target(n) for n in pair], _starter(openai))
        if names is None or "fleet" in names:
            await fleet(figures, openai[1])
        if names is None or "lmi" in names:
            from bench import lmi

            await lmi.measure(figures, openai)
    if names is None or "nonreaders" in names:
        from bench import nonreaders

        say(f"{nonreaders.STREAMS} clients that never read")
        cost = await asyncio.to_thread(nonreaders.measure, nonreaders.STREAMS)
        figures.set("nonreaders", "cost", dataclasses.asdict(cost))


def lambda_figures(figures: Figures) -> None:
    from bench import lambda_path

    say("the Lambda path")
    with lambda_path.deployed() as (env, key):
        streamfn = [lambda_path.cold_start(env, key) for _ in range(5)]
        minimal = [lambda_path.cold_start(env, None, lambda_path.MINIMAL) for _ in range(5)]
        restored = [lambda_path.restore_start(env, key) for _ in range(5)]
    uvicorn_s, lambda_s = lambda_path.per_token()
    figures.set(
        "lambda",
        "cold_start_ms",
        {
            "streamfn": load.median(streamfn) * 1000,
            "minimal": load.median(minimal) * 1000,
            "snapstart_restore": load.median(restored) * 1000,
        },
    )
    figures.set("lambda", "per_token_us", {"uvicorn": uvicorn_s * 1e6, "lambda": lambda_s * 1e6})
    figures.set(
        "lambda",
        "imports_ms",
        {
            "app": lambda_path.import_times(
                "import streamfn.awslambda.runtime, streamfn.app; streamfn.app.create_app()"
            ),
            "openai": lambda_path.import_times("import streamfn.providers.openai_chat"),
            "anthropic": lambda_path.import_times("import streamfn.providers.anthropic_messages"),
            "ollama": lambda_path.import_times("import streamfn.providers.ollama_chat"),
        },
    )


def outputs(names: set[str] | None) -> tuple[Path, Path, Path]:
    """Where BENCHMARKS.md, results.json and streams.png go: the committed files for a full
    run, BENCH_OUT (or a new temporary directory) for a partial one."""
    out = os.environ.get("BENCH_OUT")
    if out is None and names is None:
        return ROOT / "BENCHMARKS.md", HERE / "results.json", HERE / "streams.png"
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="streamfn-bench-only-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "BENCHMARKS.md", folder / "results.json", folder / "streams.png"


def main() -> None:
    names = only()
    markdown, results, picture = outputs(names)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started = time.monotonic()
    figures = Figures()
    uvloop.run(measure(figures, names))
    if names is None or "lambda" in names:
        lambda_figures(figures)
    results.write_text(json.dumps(figures.rows, indent=1) + "\n")
    from bench import report

    report.write(figures.rows, markdown, picture, QUICK, partial=names is not None)
    say(f"{markdown} written in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
