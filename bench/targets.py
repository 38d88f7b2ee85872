"""What `make bench` measures, each served in a process of its own on the same uvicorn (uvloop,
httptools), with a probe of its event loop's lag:

- `relay`: the floor for any Python relay, a raw Starlette StreamingResponse re-emitting the
  upstream's bytes through one httpx client.
- `seed`: the seed's design, FastAPI + sse-starlette + AsyncOpenAI, one event per token.
- `streamfn`: streamfn's app as `make run` serves it, with the OpenAI provider (resume on); with
  STREAMFN_REDIS_URL in its environment, a server of a fleet sharing that Redis. bench/run.py's
  `chat`, `messages` and `responses` targets are this app too, on its client-protocol routes.
- `gemini`, `bedrock`: the same app with the Gemini or the Bedrock provider, UPSTREAM_URL the
  fake's (tests/fakes/gemini.py, tests/fakes/bedrock.py), with the environment a deployment
  has: the Gemini key, or AWS credentials and a region (SigV4 signing on every request).

`GET /__bench` answers the probe's figures: the longest loop lag since the last reset (a task
that asks to sleep 5 ms and notes how late it wakes), the longest garbage collection since then
(the collector's own callbacks time each), CPU seconds, resident memory and the process's
thread count. `GET /__bench?gc` answers what a full collection would walk, by type, and how
long one takes now.

Run: python bench/targets.py TARGET PORT UPSTREAM_URL
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from starlette.types import ASGIApp, Receive, Scope, Send

ROOT = Path(__file__).parents[1]


def relay(upstream: str) -> ASGIApp:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None), timeout=600)

    async def chat(request: Request) -> StreamingResponse:
        sent = client.build_request(
            "POST",
            f"{upstream}/chat/completions",
            content=await request.body(),
            headers={"content-type": "application/json"},
        )
        response = await client.send(sent, stream=True)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for piece in response.aiter_raw():
                    yield piece
            finally:
                await response.aclose()

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def seed(upstream: str) -> ASGIApp:
    from fastapi import FastAPI
    from openai import AsyncOpenAI
    from sse_starlette import EventSourceResponse

    app = FastAPI()
    client = AsyncOpenAI(base_url=upstream, api_key="bench")

    @app.post("/chat/stream")
    async def chat(body: dict[str, Any]) -> EventSourceResponse:
        async def events() -> AsyncIterator[dict[str, str]]:
            stream = await client.chat.completions.create(
                model=body["model"], messages=body["messages"], stream=True
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield {"event": "token", "data": chunk.choices[0].delta.content}

        return EventSourceResponse(events())

    return app


# Each provider's variables, as a deployment sets them; the others' are removed, so that only
# the provider measured is configured.
_PROVIDER_VARIABLES = (
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "STREAMFN_BEDROCK_MODEL",
)


def _provider_environment(provider: str, upstream: str, scratch: str) -> dict[str, str]:
    if provider == "openai":
        return {"OPENAI_BASE_URL": upstream, "OPENAI_API_KEY": "bench"}
    if provider == "gemini":
        # tests/fakes/gemini.py's bench mode checks this key (tests/fakes/wire.py's SECRET).
        return {"GEMINI_API_KEY": "sk-test-SECRET-0123456789", "GOOGLE_GEMINI_BASE_URL": upstream}
    if provider == "bedrock":
        # Credentials as Lambda's role gives them (a session token too), for SigV4; no shared
        # files and no metadata service, so that botocore's chain finds these and nothing else.
        return {
            "AWS_ACCESS_KEY_ID": "AKIAFAKEBENCH0000001",
            "AWS_SECRET_ACCESS_KEY": "fakeBENCHsecret/bedrock+0123456789abcdefgh",
            "AWS_SESSION_TOKEN": "FakeBenchSessionTOKEN//bedrock//0123456789",
            "AWS_REGION": "us-west-2",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": upstream,
            "AWS_CONFIG_FILE": os.path.join(scratch, "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(scratch, "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    raise ValueError(f"no such provider: {provider}")


def streamfn(upstream: str, provider: str = "openai") -> ASGIApp:
    scratch = tempfile.mkdtemp(prefix="streamfn-bench-")
    for name in _PROVIDER_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(
        _provider_environment(provider, upstream, scratch),
        STREAMFN_AUTH="none",
        STREAMFN_DEFAULT_PROVIDER=provider,
        # Usage records on, as `make run` has them (#25: no target bought by turning a
        # feature off), in the data dir's usage.sqlite3. The stream log, and the Responses
        # API's stored responses beside it, in a scratch file of its own rather than the
        # user's (unless STREAMFN_REDIS_URL is set: then in that Redis); any other file of the
        # data dir's there too.
        STREAMFN_STREAMS_DB=os.path.join(scratch, "s.db"),
        XDG_DATA_HOME=scratch,
    )
    sys.path.insert(0, str(ROOT / "functions"))
    from streamfn.app import create_app

    return create_app()


class Probe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.max_lag = 0.0
        self.max_gc = 0.0
        self._gc_started = 0.0
        gc.callbacks.append(self._collection)

    def _collection(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.max_gc = max(self.max_gc, time.perf_counter() - self._gc_started)

    async def watch(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.005)
            self.max_lag = max(self.max_lag, time.perf_counter() - asked - 0.005)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/__bench":
            await self.app(scope, receive, send)
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        status = Path("/proc/self/status").read_text().splitlines()  # noqa: ASYNC240 (in memory)
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
        body = json.dumps(
            {
                "max_lag_ms": self.max_lag * 1000,
                "max_gc_ms": self.max_gc * 1000,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "rss_kib": rss,
                "threads": len(os.listdir("/proc/self/task")),
            }
        ).encode()
        if scope.get("query_string") == b"reset":
            self.max_lag = self.max_gc = 0.0
        if scope.get("query_string") == b"top" and tracemalloc.is_tracing():  # BENCH_TRACEMALLOC
            stats = tracemalloc.take_snapshot().statistics("lineno")[:25]
            body = "\n".join(str(stat) for stat in stats).encode()
        if scope.get("query_string") == b"gc":
            body = _collected().encode()
        length = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        await send({"type": "http.response.body", "body": body})


def _collected() -> str:
    """What a full collection walks (tracked objects, not frozen), by type, most first; then
    one, timed, and what it found unreachable."""
    kinds = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    started = time.perf_counter()
    found = gc.collect()
    took = time.perf_counter() - started
    head = f"tracked {sum(kinds.values())}, frozen {gc.get_freeze_count()}: "
    head += f"a full collection {took * 1000:.1f} ms, {found} unreachable"
    return "\n".join([head, *(f"{n:8d} {kind}" for kind, n in kinds.most_common(40))])


async def main(target: str, port: int, upstream: str) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    apps: dict[str, Callable[[str], ASGIApp]] = {
        "relay": relay,
        "seed": seed,
        "streamfn": streamfn,
        "gemini": lambda url: streamfn(url, "gemini"),
        "bedrock": lambda url: streamfn(url, "bedrock"),
    }
    probe = Probe(apps[target](upstream))
    config = uvicorn.Config(
        probe,
        host="127.0.0.1",
        port=port,
        loop="none",  # this loop, uvloop's
        http="httptools",
        log_level="warning",
        backlog=8192,
        timeout_keep_alive=60,
    )
    watcher = asyncio.create_task(probe.watch())
    await uvicorn.Server(config).serve()
    watcher.cancel()


if __name__ == "__main__":
    if os.environ.get("BENCH_TRACEMALLOC"):  # `GET /__bench?top`: the top allocation sites
        tracemalloc.start(int(os.environ["BENCH_TRACEMALLOC"]))
    if profile := os.environ.get("BENCH_PROFILE"):  # a cProfile dump at exit, for digging
        import cProfile
        import signal

        profiler = cProfile.Profile()
        signal.signal(signal.SIGTERM, lambda *_: (profiler.dump_stats(profile), os._exit(0)))
        profiler.enable()
    uvloop.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
