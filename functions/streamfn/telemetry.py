"""What a finished request tells operators: a log line, metrics, and traces.

All of them come from the request's `UsageRecord` (and its `Trail`: the attempts at providers),
after its response has been sent:

- one JSON log line (`request ended`) with the record's fields, through the logging set-up of the
  entrypoint (Powertools Logger in Lambda and under `make run`); message content only when
  `STREAMFN_LOG_CONTENT` is set;
- Powertools Metrics per provider and model: CloudWatch EMF on stdout in Lambda, the same EMF
  document as a log line elsewhere;
- in Lambda with active tracing, a Powertools Tracer (X-Ray) subsegment spanning the provider
  call, annotated with provider, model and outcome;
- with an OTLP endpoint set (OTEL_EXPORTER_OTLP_ENDPOINT, or the traces' or metrics' own), a
  `chat {model}` span and the GenAI metrics over OTLP/HTTP (`streamfn.observability.otel`);
- with STREAMFN_METRICS=prometheus, the counters a scrape of `GET /metrics` reads
  (`streamfn.observability.prometheus`) instead of EMF.

The OpenTelemetry SDK and prometheus_client are imported only when they are on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import MutableMapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from fastapi.telemetry import TelemetryConfig

from streamfn.content import Message
from streamfn.observability import Trail
from streamfn.settings import Settings, in_lambda
from streamfn.usage import Tally, UsageRecord

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

    from streamfn.observability.otel import Otel
    from streamfn.observability.prometheus import Prometheus

logger = logging.getLogger(__name__)
metrics_logger = logging.getLogger("streamfn.metrics")

SERVICE = "streamfn"


def _loggable(message: Message) -> dict[str, Any]:
    """A message for the log: its text, calls and reasoning; images by type and size only."""
    fields: dict[str, Any] = {"role": message.role, "content": message.text}
    if message.images:
        fields["images"] = [i.url or f"{i.media_type}, {i.size} bytes" for i in message.images]
    if message.tool_calls:
        fields["tool_calls"] = [dataclasses.asdict(c) for c in message.tool_calls]
    if message.tool_call_id is not None:
        fields["tool_call_id"] = message.tool_call_id
    if message.reasoning:
        fields["reasoning"] = [b.text for b in message.reasoning]
    return fields


# The OTLP protocols streamfn speaks: protobuf over HTTP (the gRPC exporter, and grpcio with
# it, would weigh on every install for a protocol every collector also takes over HTTP).
OTLP_HTTP = ("http/protobuf", None)
CLOSE_TIMEOUT_S = 3.0  # the longest a shutdown waits for the OTLP exporters' last export


def otlp_urls(settings: Settings) -> tuple[str | None, str | None]:
    """Where spans and metrics go (full URLs), as the OTLP exporter specification has it: a
    signal's own endpoint as it is, else the general one with /v1/traces or /v1/metrics; None
    for a signal that is off (no endpoint, OTEL_{TRACES,METRICS}_EXPORTER=none,
    OTEL_SDK_DISABLED=true, or a protocol other than http/protobuf)."""
    if settings.otel_sdk_disabled:
        return None, None
    base = settings.otel_endpoint.rstrip("/") if settings.otel_endpoint else None

    def url(signal: str, own: str | None, exporter: str, protocol: str | None) -> str | None:
        if (own is None and base is None) or exporter == "none":
            return None
        if exporter != "otlp" or protocol not in OTLP_HTTP:
            logger.error(
                "OTLP %s not exported: streamfn exports over http/protobuf only "
                "(OTEL_%s_EXPORTER=%s, protocol %s)",
                signal,
                signal.upper(),
                exporter,
                protocol,
            )
            return None
        return own or f"{base}/v1/{signal}"

    return (
        url(
            "traces",
            settings.otel_traces_endpoint,
            settings.otel_traces_exporter,
            settings.otel_traces_protocol,
        ),
        url(
            "metrics",
            settings.otel_metrics_endpoint,
            settings.otel_metrics_exporter,
            settings.otel_metrics_protocol,
        ),
    )


# Health checks and scrapes, every few seconds each: no trace is about them.
UNTRACED = frozenset({"/healthz", "/metrics"})


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED


def _open_otel(settings: Settings) -> Otel | None:
    traces_url, metrics_url = otlp_urls(settings)
    if traces_url is None and metrics_url is None:
        return None
    from streamfn.observability.otel import Otel  # the SDK: only when something is exported

    return Otel(traces_url, metrics_url, content=settings.log_content)


def _open_prometheus(settings: Settings) -> Prometheus | None:
    if settings.metrics != "prometheus":
        return None
    try:
        from streamfn.observability.prometheus import Prometheus
    except ImportError as exc:
        raise RuntimeError(
            "STREAMFN_METRICS=prometheus needs prometheus-client (pip install "
            "'streamfn[prometheus]'); in Lambda, use emf"
        ) from exc
    if in_lambda():
        logger.warning(
            "STREAMFN_METRICS=prometheus in Lambda: each environment counts its own requests "
            "only, and a scrape reaches any one of them; emf counts them all"
        )
    return Prometheus()


class Telemetry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._otel = _open_otel(settings)
        self.prometheus = _open_prometheus(settings)
        # X-Ray exists only in Lambda; elsewhere the tracer (and aws_xray_sdk, a quarter of a
        # second to import, which on a request's end would stall every other stream) is never
        # made. In Lambda it is made on the first request's end, after its response, so that a
        # cold start's first byte does not wait for it; unless a SnapStart snapshot is being
        # prepared, which should hold everything ready.
        self._traced = in_lambda()
        if self._traced and os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
            _ = self._tracer

    def http(self) -> TelemetryConfig:
        """FastAPI's native telemetry (`FastAPI(telemetry=...)`): the HTTP server span of each
        request, continuing an incoming `traceparent`, on this app's providers when OTLP export
        is on; off otherwise (FastAPI would otherwise trace into any global provider, and set
        up exporters of its own with FASTAPI_OTEL_AUTO_CONFIGURE)."""
        otel = self._otel
        tracer_provider = otel.tracer_provider if otel is not None else None
        meter_provider = otel.meter_provider if otel is not None else None
        return {
            "tracer_provider": tracer_provider,
            "meter_provider": meter_provider,
            "tracing": tracer_provider is not None,
            "metrics": meter_provider is not None,
            "logs": False,
            # Spans of FastAPI's own steps (dependencies, endpoint, serialization): noise in a
            # trace about a model's answer, and a cost on every request.
            "operation_spans": False,
            "auto_configure": False,
            "exclude": _untraced,
        }

    def request_opened(self, trail: Trail) -> None:
        """A request reaches its provider (the first it asks for, `trail.provider`)."""
        if self.prometheus is not None:
            self.prometheus.opened(trail.provider, trail.model)

    def request_ended(self, record: UsageRecord, tally: Tally, trail: Trail | None = None) -> None:
        fields = record.fields()
        if self._settings.log_content:
            fields["messages"] = [_loggable(m) for m in tally.request.messages]
            fields["output_text"] = tally.output_text
        logger.info("request ended", extra=fields)
        if self._settings.metrics in ("emf", "log"):
            self._metrics(record)
        if self.prometheus is not None:
            self.prometheus.ended(record, trail)
        if self._otel is not None:
            self._otel.request_ended(record, tally, trail)
        self._trace(record)

    async def flush(self, timeout_s: float) -> None:
        """Export the spans and metrics the OTLP exporters hold (`streamfn.observability.flush`
        is how a host asks for it)."""
        if self._otel is not None:
            await asyncio.to_thread(self._otel.flush, timeout_s)

    async def aclose(self) -> None:
        if self._otel is not None:
            await self._otel.close(CLOSE_TIMEOUT_S)
        if self.prometheus is not None:
            self.prometheus.close()

    def _metrics(self, record: UsageRecord) -> None:
        dimensions = {"provider": record.provider, "model": record.model}
        documents = [self._request_metrics(record, dimensions)]
        if record.error_type is not None:
            # Errors by type: their own document, with the type as one more dimension.
            errors = self._metric_set(dimensions | {"error_type": record.error_type})
            errors.add_metric("Errors", MetricUnit.Count, 1)
            documents.append(errors)
        for document in documents:
            if self._settings.metrics == "emf":
                document.flush_metrics()  # one EMF JSON line on stdout, read by CloudWatch
            else:
                metrics_logger.info("metrics", extra={"emf": document.serialize_metric_set()})
                document.clear_metrics()

    def _metric_set(self, dimensions: dict[str, str]) -> EphemeralMetrics:
        metrics = EphemeralMetrics(namespace=self._settings.metrics_namespace, service=SERVICE)
        for name, value in dimensions.items():
            metrics.add_dimension(name, value)
        return metrics

    def _request_metrics(self, record: UsageRecord, dimensions: dict[str, str]) -> EphemeralMetrics:
        metrics = self._metric_set(dimensions)
        metrics.add_metric("Requests", MetricUnit.Count, 1)
        metrics.add_metric("Cancelled", MetricUnit.Count, int(record.outcome == "cancelled"))
        metrics.add_metric("OutputTokens", MetricUnit.Count, record.output_tokens)
        if record.ttft_ms is not None:
            metrics.add_metric("TimeToFirstToken", MetricUnit.Milliseconds, record.ttft_ms)
            generating_s = (record.duration_ms - record.ttft_ms) / 1000
            if record.output_tokens and generating_s > 0:
                metrics.add_metric(
                    "OutputTokensPerSecond",
                    MetricUnit.CountPerSecond,
                    round(record.output_tokens / generating_s, 2),
                )
        return metrics

    @cached_property
    def _tracer(self) -> Tracer:
        from aws_lambda_powertools import Tracer

        # No auto-patching: the one subsegment is the provider call. Outside Lambda Powertools
        # disables the tracer itself.
        return Tracer(service=SERVICE, auto_patch=False)

    def _trace(self, record: UsageRecord) -> None:
        if not self._traced:
            return
        tracer = self._tracer
        if tracer.disabled:
            return
        # The subsegment is written after the stream, with the call's real start and end: the
        # chunks are read from more than one task, and X-Ray's context would not follow an open
        # subsegment across them.
        recorder: Any = tracer.provider
        subsegment = recorder.begin_subsegment(f"## {record.provider}.stream")
        if subsegment is None:  # no segment to hang it on: tracing is off for this invocation
            return
        subsegment.start_time = record.started_at
        for key in ("provider", "model", "outcome"):
            subsegment.put_annotation(key, getattr(record, key))
        if record.error_type:
            subsegment.put_annotation("error_type", record.error_type)
        subsegment.put_metadata("usage", record.fields(), namespace=SERVICE)
        recorder.end_subsegment(end_time=record.started_at + record.duration_ms / 1000)
