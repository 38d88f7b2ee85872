"""What a finished request tells operators: a log line, metrics, and a trace subsegment.

All three come from the request's `UsageRecord`, after its response has been sent:

- one JSON log line (`request ended`) with the record's fields, through the logging set-up of the
  entrypoint (Powertools Logger in Lambda and under `make run`); message content only when
  `STREAMFN_LOG_CONTENT` is set;
- Powertools Metrics per provider and model: CloudWatch EMF on stdout in Lambda, the same EMF
  document as a log line elsewhere;
- in Lambda with active tracing, a Powertools Tracer (X-Ray) subsegment spanning the provider
  call, annotated with provider, model and outcome.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from functools import cached_property
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from streamfn.content import Message
from streamfn.settings import Settings, in_lambda
from streamfn.usage import Tally, UsageRecord

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

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


class Telemetry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # X-Ray exists only in Lambda; elsewhere the tracer (and aws_xray_sdk, a quarter of a
        # second to import, which on a request's end would stall every other stream) is never
        # made. In Lambda it is made on the first request's end, after its response, so that a
        # cold start's first byte does not wait for it; unless a SnapStart snapshot is being
        # prepared, which should hold everything ready.
        self._traced = in_lambda()
        if self._traced and os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
            _ = self._tracer

    def request_ended(self, record: UsageRecord, tally: Tally) -> None:
        fields = record.fields()
        if self._settings.log_content:
            fields["messages"] = [_loggable(m) for m in tally.request.messages]
            fields["output_text"] = tally.output_text
        logger.info("request ended", extra=fields)
        if self._settings.metrics != "off":
            self._metrics(record)
        self._trace(record)

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
