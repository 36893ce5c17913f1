"""OTLP requests: the signals and their gRPC methods, request builders (attributes, spans,
traces requests with fresh ids), counting the records of a request, and a raw OTLP/gRPC
Export call."""

from __future__ import annotations

import os
import threading
import time

import grpc

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

SIGNALS = ("traces", "metrics", "logs")

GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}

REQUEST_TYPES = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}

RESPONSE_TYPES = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
}


def count_records(signal_name: str, message) -> int:
    if signal_name == "traces":
        return sum(len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans)
    if signal_name == "logs":
        return sum(len(sl.log_records) for rl in message.resource_logs for sl in rl.scope_logs)
    n = 0
    for rm in message.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                n += len(getattr(m, kind).data_points) if kind else 0
    return n


def kv(key: str, value) -> common_pb2.KeyValue:
    if isinstance(value, bool):
        v = common_pb2.AnyValue(bool_value=value)
    elif isinstance(value, int):
        v = common_pb2.AnyValue(int_value=value)
    elif isinstance(value, float):
        v = common_pb2.AnyValue(double_value=value)
    else:
        v = common_pb2.AnyValue(string_value=str(value))
    return common_pb2.KeyValue(key=key, value=v)


def span(trace_id: bytes, span_id: bytes, name: str = "op", **extra) -> trace_pb2.Span:
    now = time.time_ns()
    return trace_pb2.Span(
        trace_id=trace_id,
        span_id=span_id,
        name=name,
        kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=now - 1_000_000,
        end_time_unix_nano=now,
        **extra,
    )


def trace_request(*spans: trace_pb2.Span, service: str = "e2e") -> trace_service_pb2.ExportTraceServiceRequest:
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=[kv("service.name", service)]),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=common_pb2.InstrumentationScope(name="e2e", version="1"),
                        spans=list(spans),
                    )
                ],
            )
        ]
    )


_id_counter = 0
_id_lock = threading.Lock()


def new_ids() -> tuple[bytes, bytes]:
    """A fresh (trace_id, span_id), distinct within the run."""
    global _id_counter
    with _id_lock:
        _id_counter += 1
        n = _id_counter
    return os.urandom(12) + n.to_bytes(4, "big"), os.urandom(4) + n.to_bytes(4, "big")


def simple_trace_request(n: int = 1, name: str = "op") -> tuple[trace_service_pb2.ExportTraceServiceRequest, list[bytes]]:
    """A request with `n` valid spans, and their span ids."""
    spans = []
    for i in range(n):
        t, s = new_ids()
        spans.append(span(t, s, f"{name}-{i}"))
    return trace_request(*spans), [s.span_id for s in spans]


def grpc_export(target: str, signal_name: str, body: bytes, timeout: float = 10.0, compression=None, metadata=None):
    """Sends raw bytes as an OTLP/gRPC Export call; returns the raw response bytes. Raises
    grpc.RpcError on a non-OK status."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            GRPC_METHODS[signal_name], request_serializer=None, response_deserializer=None
        )
        return call(body, timeout=timeout, compression=compression, metadata=metadata)
