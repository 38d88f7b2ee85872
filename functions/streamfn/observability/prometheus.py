"""`GET /metrics` for Prometheus (STREAMFN_METRICS=prometheus): requests, tokens, cost, time to
first token, request duration, errors by type and open streams, by provider and model.

Who may read it: with auth on, any caller with a streamfn credential (an API key, or a JWT when
those are accepted); with auth off, only this machine, and not through a proxy (a request that
carries Forwarded or X-Forwarded-For came through one: nginx, as infra/nginx sets it up).

Several worker processes (`make run WORKERS=N`): each counts in its own memory, and a scrape
reaches whichever worker the kernel hands it to, unless PROMETHEUS_MULTIPROC_DIR names a
directory, empty when the server starts: then prometheus_client's multiprocess mode keeps each
worker's values in files there, and every scrape sums all of them (open streams: the live
workers' only). That variable is read by prometheus_client itself when it is first imported.

A model name is a label: a provider that takes any model name (an OpenAI-compatible server)
would otherwise let callers make series without end, so past `MAX_MODELS` names a provider's
further ones are counted as `_other`.
"""

from __future__ import annotations

import glob
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response

from streamfn.auth import Gate, Unauthorized
from streamfn.auth.gate import CHALLENGE
from streamfn.errors import StoreUnavailable
from streamfn.observability.trail import Trail
from streamfn.usage import UsageRecord

logger = logging.getLogger(__name__)

MAX_MODELS = 100
OTHER = "_other"
PROXIED = ("forwarded", "x-forwarded-for", "x-real-ip")
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 20, 30, 60)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
Render = Callable[[str, int, str, str, Mapping[str, str] | None], Response]


class _Models:
    """A provider's model label: its name, up to `most` names per provider."""

    def __init__(self, most: int) -> None:
        self._most = most
        self._seen: dict[str, set[str]] = {}

    def __call__(self, provider: str, model: str) -> str:
        seen = self._seen.setdefault(provider, set())
        if model in seen:
            return model
        if len(seen) >= self._most:
            return OTHER
        seen.add(model)
        return model


def _forget_dead_workers(directory: str) -> None:
    """Drop the open-stream counts of worker processes that are gone (killed, crashed): a
    live gauge's file is kept under its process id until someone says it died."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        found = re.search(r"_(\d+)\.db$", path)
        if found is None:
            continue
        pid = int(found.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, someone else's
            pass


class Prometheus:
    """This app's metrics, and the registry a scrape reads."""

    def __init__(self) -> None:
        self._directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.registry = CollectorRegistry()
        owner: CollectorRegistry | None = self.registry
        if self._directory:
            os.makedirs(self._directory, exist_ok=True)
            _forget_dead_workers(self._directory)
            multiprocess.MultiProcessCollector(self.registry, path=self._directory)  # type: ignore[no-untyped-call]
            owner = None  # the values live in the files, which the collector reads
        else:
            ProcessCollector(registry=self.registry)
        labels = ("provider", "model")
        self._requests = Counter(
            "streamfn_requests",
            "Requests that reached a provider, by how they ended.",
            (*labels, "outcome"),
            registry=owner,
        )
        self._tokens = Counter(
            "streamfn_tokens",
            "Tokens, input and output: the provider's counts, else estimates.",
            (*labels, "type"),
            registry=owner,
        )
        self._cost = Counter(
            "streamfn_cost_usd",
            "What the requests cost, in USD, of those whose model has a known price.",
            labels,
            registry=owner,
        )
        self._errors = Counter(
            "streamfn_errors",
            "Requests that failed, by streamfn's error type (rate_limit, timeout, ...).",
            (*labels, "error_type"),
            registry=owner,
        )
        self._ttft = Histogram(
            "streamfn_time_to_first_token_seconds",
            "From the request's arrival to the provider's first token.",
            labels,
            buckets=TTFT_BUCKETS,
            registry=owner,
        )
        self._duration = Histogram(
            "streamfn_request_duration_seconds",
            "From the request's arrival to the end of its stream.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=owner,
        )
        self._open = Gauge(
            "streamfn_open_streams",
            "Streams from a provider in progress, under the provider and model asked for.",
            labels,
            registry=owner,
            multiprocess_mode="livesum",
        )
        self._model = _Models(MAX_MODELS)

    def opened(self, provider: str, model: str) -> None:
        """A stream from `provider`'s `model` begins (the one asked for)."""
        self._open.labels(provider, self._model(provider, model)).inc()

    def ended(self, record: UsageRecord, trail: Trail | None) -> None:
        """`record`'s request has ended: counted under the provider and model that answered
        (the stream it opened, under the ones it asked for, as `opened` counted it)."""
        if trail is not None:
            self._open.labels(trail.provider, self._model(trail.provider, trail.model)).dec()
        labels = (record.provider, self._model(record.provider, record.model))
        self._requests.labels(*labels, record.outcome).inc()
        self._tokens.labels(*labels, "input").inc(record.input_tokens)
        self._tokens.labels(*labels, "output").inc(record.output_tokens)
        if record.cost_usd is not None:
            self._cost.labels(*labels).inc(record.cost_usd)
        if record.error_type is not None:
            self._errors.labels(*labels, record.error_type).inc()
        if record.ttft_ms is not None:
            self._ttft.labels(*labels).observe(record.ttft_ms / 1000)
        self._duration.labels(*labels).observe(record.duration_ms / 1000)

    def scrape(self, accept: str | None) -> Response:
        """The metrics in the format the scraper asks for (Prometheus' text format unless it
        prefers OpenMetrics)."""
        encode, content_type = choose_encoder(accept or "")
        return Response(encode(self.registry), headers={"content-type": content_type})

    def close(self) -> None:
        if self._directory:
            # This worker's open streams leave the sum with it.
            multiprocess.mark_process_dead(os.getpid(), self._directory)  # type: ignore[no-untyped-call]


def _from_this_machine(request: Request) -> bool:
    host = request.client.host if request.client else None
    try:
        local = host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    return local and not any(name in request.headers for name in PROXIED)


async def refusal(request: Request, gate: Gate, render: Render) -> Response | None:
    """Why `request` may not read the metrics, as a response; None when it may."""
    path = request.url.path
    if gate.open:
        if _from_this_machine(request):
            return None
        message = "with auth off, the metrics are served to this machine only, not through a proxy"
        return render(path, 403, "forbidden", message, None)
    try:
        await gate.authenticate(request.headers)
    except Unauthorized as exc:
        return render(path, 401, "unauthorized", exc.message, CHALLENGE)
    except StoreUnavailable as exc:
        logger.error("credentials cannot be checked: %s", exc)
        message = "credentials cannot be checked just now: try again shortly"
        return render(path, 503, "unavailable", message, {"Retry-After": "1"})
    return None
