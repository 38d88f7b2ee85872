"""OpenTelemetry export over OTLP/HTTP: a trace per request and the GenAI metrics.

Imported only when an OTLP endpoint is set (`streamfn.telemetry` decides), since the SDK, the
exporter and protobuf cost a cold start that has no use for them otherwise. Configured by the
standard variables: the endpoints (OTEL_EXPORTER_OTLP_ENDPOINT, ..._TRACES_ENDPOINT,
..._METRICS_ENDPOINT) through `Settings`, and the rest (..._HEADERS, ..._TIMEOUT,
..._COMPRESSION, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and its
argument, OTEL_BSP_*, OTEL_METRIC_EXPORT_INTERVAL, the metrics temporality preference) read by
the SDK itself, as it documents them.

The providers are this app's own, never the global ones: FastAPI's native telemetry is handed
the tracer provider, and makes the request's HTTP server span from an incoming W3C
`traceparent` (or starts a trace); the `chat {model}` span (`streamfn.observability.genai`) is
its child, written when the request settles with the stream's real start and end (the stream's
chunks cross tasks, which a span open across them would not follow). Spans go out in batches
from the SDK's own thread; `flush` sends what is pending, which in Lambda must happen before the
environment is frozen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from streamfn import __version__
from streamfn.observability import genai
from streamfn.observability.trail import Trail
from streamfn.settings import in_lambda
from streamfn.usage import Tally, UsageRecord

logger = logging.getLogger(__name__)


def _ns(unix_s: float) -> int:
    return int(unix_s * 1e9)


def resource() -> Resource:
    """streamfn's resource: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override it."""
    defaults: dict[str, Any] = {
        "service.name": "streamfn",
        "service.version": __version__,
        # One per process: uvicorn workers and Lambda environments each keep their own
        # cumulative metrics, which must not be taken for one series.
        "service.instance.id": str(uuid.uuid4()),
    }
    if in_lambda():
        lambda_attributes = {
            "cloud.provider": "aws",
            "cloud.platform": "aws_lambda",
            "cloud.region": os.environ.get("AWS_REGION"),
            "faas.name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
            "faas.version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
            "faas.instance": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
        }
        defaults |= {k: v for k, v in lambda_attributes.items() if v}
    return Resource.create(defaults).merge(OTELResourceDetector().detect())


class Otel:
    """This app's tracer and meter providers, exporting to `traces_url` and `metrics_url`
    (full URLs, signal path included); either may be None, and that signal is off."""

    def __init__(self, traces_url: str | None, metrics_url: str | None, *, content: bool) -> None:
        self._content = content
        shared = resource()
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        if traces_url is not None:
            self.tracer_provider = TracerProvider(resource=shared, shutdown_on_exit=False)
            exporter = OTLPSpanExporter(endpoint=traces_url)
            self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
            self._tracer = self.tracer_provider.get_tracer(
                "streamfn", __version__, schema_url=genai.SCHEMA_URL
            )
        if metrics_url is not None:
            reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=metrics_url))
            self.meter_provider = MeterProvider(
                metric_readers=[reader], resource=shared, shutdown_on_exit=False
            )
            self._instruments()

    def _instruments(self) -> None:
        assert self.meter_provider is not None
        meter = self.meter_provider.get_meter("streamfn", __version__, schema_url=genai.SCHEMA_URL)
        self._duration = meter.create_histogram(
            "gen_ai.server.request.duration",
            unit="s",
            description="Generative AI server request duration such as time-to-last byte or "
            "last output token.",
            explicit_bucket_boundaries_advisory=genai.DURATION_BUCKETS,
        )
        self._ttft = meter.create_histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time to generate first token for successful responses.",
            explicit_bucket_boundaries_advisory=genai.TTFT_BUCKETS,
        )
        self._tpot = meter.create_histogram(
            "gen_ai.server.time_per_output_token",
            unit="s",
            description="Time per output token generated after the first token for successful "
            "responses.",
            explicit_bucket_boundaries_advisory=genai.TPOT_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=genai.TOKEN_BUCKETS,
        )

    def request_ended(self, record: UsageRecord, tally: Tally, trail: Trail | None) -> None:
        if self.tracer_provider is not None:
            self._trace(record, tally, trail)
        if self.meter_provider is not None:
            self._measure(record)

    def _trace(self, record: UsageRecord, tally: Tally, trail: Trail | None) -> None:
        # The request's HTTP server span (FastAPI's) is current here: the account settles
        # inside the request's ASGI call.
        parent = context.get_current()
        start = _ns(record.started_at)
        end = _ns(record.started_at + record.duration_ms / 1000)
        kind = SpanKind.INTERNAL if record.provider in genai.IN_PROCESS else SpanKind.CLIENT
        span = self._tracer.start_span(
            f"chat {record.model}",
            context=parent,
            kind=kind,
            attributes=genai.span_attributes(record, tally.request, trail),
            start_time=start,
        )
        if self._content and span.is_recording():
            messages = tally.request.messages
            span.set_attributes(
                genai.content_attributes(messages, tally.request, tally.output_text, record)
            )
        if trail is not None and len(trail.attempts) > 1 and span.is_recording():
            # Retries and fallbacks: one child span per try, each ending with its failure (the
            # one that answered, with the stream).
            within = trace.set_span_in_context(span, parent)
            for attempt in trail.attempts:
                child = self._tracer.start_span(
                    genai.attempt_name(attempt),
                    context=within,
                    attributes=genai.attempt_attributes(attempt),
                    start_time=_ns(attempt.started_at),
                )
                if attempt.error is not None:
                    child.set_status(Status(StatusCode.ERROR, attempt.error))
                child.end(end if attempt.ended_at is None else _ns(attempt.ended_at))
        if genai.failed(record):
            span.set_status(Status(StatusCode.ERROR, record.error_type))
        span.end(end)

    def _measure(self, record: UsageRecord) -> None:
        attributes = genai.metric_attributes(record)
        failure = {"error.type": record.error_type} if genai.failed(record) else {}
        duration_s = record.duration_ms / 1000
        self._duration.record(duration_s, attributes | failure)
        if record.outcome == "finished" and record.ttft_ms is not None:
            ttft_s = record.ttft_ms / 1000
            self._ttft.record(ttft_s, attributes)
            if record.output_tokens > 1:
                per_token = (duration_s - ttft_s) / (record.output_tokens - 1)
                self._tpot.record(max(per_token, 0.0), attributes)
        # Counts the provider did not report are estimates, which the conventions leave out.
        if not record.usage_estimated:
            self._tokens.record(record.input_tokens, attributes | {"gen_ai.token.type": "input"})
            self._tokens.record(record.output_tokens, attributes | {"gen_ai.token.type": "output"})

    def flush(self, timeout_s: float) -> None:
        """Export what is pending now. Blocking: call it from a worker thread."""
        millis = int(timeout_s * 1000)
        if self.tracer_provider is not None and not self.tracer_provider.force_flush(millis):
            logger.warning("OTLP: spans not all exported within %s s", timeout_s)
        if self.meter_provider is not None and not self.meter_provider.force_flush(millis):
            logger.warning("OTLP: metrics not all exported within %s s", timeout_s)

    def _shutdown(self, timeout_s: float) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown(timeout_millis=timeout_s * 1000)

    async def close(self, timeout_s: float) -> None:
        """Export what is pending and stop the exporters, waiting `timeout_s` at most: with
        its collector gone, an exporter retries for its whole timeout (10 s a signal), which
        a server shutting down should not wait for."""
        if not await _within(lambda: self._shutdown(timeout_s), timeout_s):
            logger.warning("OTLP: the exporters did not finish within %s s", timeout_s)


async def _within(work: Callable[[], None], timeout_s: float) -> bool:
    """Whether blocking `work`, run in a thread of its own, ended within `timeout_s`. A daemon
    thread, not the loop's executor: a process leaving does not wait for it."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def ended() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        try:
            work()
        except Exception:
            logger.exception("OTLP: the exporters failed to shut down")
        finally:
            # RuntimeError: the loop has closed meanwhile, and nobody waits.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ended)

    threading.Thread(target=run, name="streamfn-otlp-shutdown", daemon=True).start()
    try:
        await asyncio.wait_for(asyncio.shield(done), timeout_s)
    except TimeoutError:
        return False
    return True
