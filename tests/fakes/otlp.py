"""An OTLP/HTTP receiver on 127.0.0.1, as a collector is one: POST /v1/traces and /v1/metrics
with protobuf bodies (gzip or not), decoded with opentelemetry-proto's generated classes
(`ExportTraceServiceRequest`, `ExportMetricsServiceRequest`), what the exporter really sent.

Spans and data points come out flattened, with their attributes as Python values, and the
request headers each export came with.

`python -m tests.fakes.otlp PORT` runs one until killed, for benchmarks: it keeps counts only,
which `GET /count` answers as JSON (spans, metric exports)."""

from __future__ import annotations

import gzip
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus

T = TypeVar("T")

KINDS = {
    ProtoSpan.SPAN_KIND_INTERNAL: "INTERNAL",
    ProtoSpan.SPAN_KIND_SERVER: "SERVER",
    ProtoSpan.SPAN_KIND_CLIENT: "CLIENT",
    ProtoSpan.SPAN_KIND_PRODUCER: "PRODUCER",
    ProtoSpan.SPAN_KIND_CONSUMER: "CONSUMER",
}


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    return getattr(any_value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


@dataclass
class Span:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    error: bool  # status code ERROR
    status_message: str
    resource: dict[str, Any]
    scope: str
    schema_url: str


@dataclass
class Point:
    """One data point of one metric: a histogram's count and sum, or a sum's value."""

    metric: str
    unit: str
    kind: str  # histogram, sum, gauge
    attributes: dict[str, Any]
    count: int
    sum: float
    bounds: list[float]
    resource: dict[str, Any]
    scope: str


class Receiver:
    """Collects what OTLP exporters send it, until closed."""

    def __init__(self, port: int = 0, *, keep: bool = True) -> None:
        self.spans: list[Span] = []
        self.metric_exports: list[list[Point]] = []
        self.headers: list[dict[str, str]] = []
        self.counts = {"spans": 0, "metric_exports": 0}
        self._keep = keep
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/count":
                    self.send_error(404)
                    return
                with receiver._changed:
                    body = json.dumps(receiver.counts).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    traces = ExportTraceServiceRequest.FromString(body)
                    receiver._took(self, traces_of(traces), None)
                    reply = ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    metrics = ExportMetricsServiceRequest.FromString(body)
                    receiver._took(self, None, points_of(metrics))
                    reply = ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _took(
        self,
        handler: BaseHTTPRequestHandler,
        spans: list[Span] | None,
        points: list[Point] | None,
    ) -> None:
        with self._changed:
            self.counts["spans"] += len(spans or ())
            self.counts["metric_exports"] += points is not None
            if self._keep:
                self.headers.append({k.lower(): v for k, v in handler.headers.items()})
                if spans is not None:
                    self.spans += spans
                if points is not None:
                    self.metric_exports.append(points)
            self._changed.notify_all()

    def wait_for(self, found: Callable[[Receiver], T | None], timeout_s: float = 10) -> T:
        """What `found` finds in what has arrived, once it finds something."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while (result := found(self)) is None or result == []:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not received within {timeout_s} s: {self.spans}")
                self._changed.wait(left)
            return result

    def spans_named(self, prefix: str) -> list[Span]:
        with self._changed:
            return [s for s in self.spans if s.name.startswith(prefix)]

    def points(self, metric: str) -> list[Point]:
        """`metric`'s points in the latest export that has it (cumulative: the totals)."""
        with self._changed:
            for export in reversed(self.metric_exports):
                found = [p for p in export if p.metric == metric]
                if found:
                    return found
        return []

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def traces_of(request: ExportTraceServiceRequest) -> list[Span]:
    out = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(
                    Span(
                        name=span.name,
                        kind=KINDS.get(span.kind, "UNSPECIFIED"),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=attributes(span.attributes),
                        error=span.status.code == ProtoStatus.STATUS_CODE_ERROR,
                        status_message=span.status.message,
                        resource=resource,
                        scope=scope_spans.scope.name,
                        schema_url=scope_spans.schema_url,
                    )
                )
    return out


def points_of(request: ExportMetricsServiceRequest) -> list[Point]:
    out = []
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                scope = scope_metrics.scope.name
                if kind == "histogram":
                    for h in metric.histogram.data_points:
                        out.append(
                            Point(
                                metric.name,
                                metric.unit,
                                kind,
                                attributes(h.attributes),
                                h.count,
                                h.sum,
                                list(h.explicit_bounds),
                                resource,
                                scope,
                            )
                        )
                elif kind in ("sum", "gauge"):
                    for n in getattr(metric, kind).data_points:
                        number = n.as_double if n.WhichOneof("value") == "as_double" else n.as_int
                        out.append(
                            Point(
                                metric.name,
                                metric.unit,
                                kind,
                                attributes(n.attributes),
                                1,
                                number,
                                [],
                                resource,
                                scope,
                            )
                        )
    return out


def main() -> None:
    receiver = Receiver(int(sys.argv[1]), keep=False)
    receiver._server.serve_forever()


if __name__ == "__main__":
    main()
