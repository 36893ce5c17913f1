"""Data in, data out: the official OpenTelemetry Python SDK sends traces, metrics and logs to the
gateway over OTLP/gRPC and OTLP/HTTP, and a fake backend checks that every id, name, attribute,
event, link, resource and scope arrives intact, byte for byte as the SDK encoded it. Also OTLP/JSON
in, the exporter's HTTP protocol, fan-out to several exporters, retries, and a dead exporter."""

from __future__ import annotations

import gzip
import json
import time

import grpc
import pytest

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, set_span_in_context

from support.otlp import grpc_export, kv, new_ids, simple_trace_request
from support.ports import free_port

TRANSPORTS = ["grpc", "grpc-gzip", "http", "http-gzip"]


# ------------------------------------------------------------------------------------ helpers


def recording(cls, encoder):
    """A subclass of an SDK exporter that also keeps the protobuf bytes of every request it
    sends (encoded with the SDK's own encoder) and the result of every export."""

    class Recording(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.sent: list[bytes] = []
            self.results: list = []

        def export(self, data, *args, **kwargs):
            self.sent.append(encoder(data).SerializeToString())
            result = super().export(data, *args, **kwargs)
            self.results.append(result)
            return result

    Recording.__name__ = f"Recording{cls.__name__}"
    return Recording


def sdk_exporter(signal_name: str, transport: str, gw):
    gz = transport.endswith("-gzip")
    if transport.startswith("grpc"):
        cls, enc = {
            "traces": (GrpcSpanExporter, encode_spans),
            "metrics": (GrpcMetricExporter, encode_metrics),
            "logs": (GrpcLogExporter, encode_logs),
        }[signal_name]
        return recording(cls, enc)(
            endpoint=gw.grpc_target,
            insecure=True,
            timeout=10,
            compression=grpc.Compression.Gzip if gz else grpc.Compression.NoCompression,
        )
    cls, enc = {
        "traces": (HttpSpanExporter, encode_spans),
        "metrics": (HttpMetricExporter, encode_metrics),
        "logs": (HttpLogExporter, encode_logs),
    }[signal_name]
    return recording(cls, enc)(
        endpoint=f"{gw.http_url}/v1/{signal_name}",
        timeout=10,
        compression=HttpCompression.Gzip if gz else HttpCompression.NoCompression,
    )


def any_value(v: common_pb2.AnyValue):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {x.key: any_value(x.value) for x in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attrs(kvs) -> dict:
    return {x.key: any_value(x.value) for x in kvs}


def tid(ctx) -> bytes:
    return ctx.trace_id.to_bytes(16, "big")


def sid(ctx) -> bytes:
    return ctx.span_id.to_bytes(8, "big")


RESOURCE_ATTRS = {
    "service.name": "e2e-checkout",
    "service.version": "1.2.3",
    "deployment.environment": "test",
    "host.cpu.count": 2,
}


def otlp_config(ds, **exporter_extra):
    return {"otlp/down": {"endpoint": ds.endpoint, "protocol": "grpc", **exporter_extra}}


def assert_same_requests(sent: list[bytes], received) -> None:
    """The downstream got exactly the SDK's requests, byte for byte (the gateway forwards the
    client's protobuf unchanged)."""
    got = sorted(r.raw for r in received)
    assert len(got) == len(sent), f"downstream got {len(got)} requests, the SDK sent {len(sent)}"
    assert got == sorted(sent), "the downstream's bytes differ from what the SDK sent"


# ---------------------------------------------------------------------------- SDK: traces


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sdk_traces_arrive_intact(transport, gateway, downstream):
    ds = downstream()
    gw = gateway(otlp_config(ds))
    exporter = sdk_exporter("traces", transport, gw)
    provider = TracerProvider(resource=Resource.create(RESOURCE_ATTRS))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    try:
        tracer = provider.get_tracer("e2e.tracer", "0.9.1")
        with tracer.start_as_current_span("enqueue", kind=SpanKind.PRODUCER) as linked:
            pass
        link_ctx = linked.get_span_context()
        with tracer.start_as_current_span(
            "GET /cart",
            kind=SpanKind.SERVER,
            attributes={"http.method": "GET", "http.status_code": 200, "user.vip": True},
        ) as parent:
            parent.add_event("cache.miss", {"cache.key": "user:42", "attempt": 2})
            with tracer.start_as_current_span(
                "SELECT cart",
                kind=SpanKind.CLIENT,
                links=[Link(link_ctx, {"link.reason": "batch"})],
            ) as child:
                child.set_attribute("db.rows", 7)
                child.set_attribute("db.ratio", 0.25)
                child.set_attribute("db.cached", False)
                child.set_attribute("db.tables", ["cart", "item"])
                child.set_status(Status(StatusCode.ERROR, "deadlock"))
        assert provider.force_flush(15_000), "force_flush did not complete"
    finally:
        provider.shutdown()

    assert exporter.results and all(r == SpanExportResult.SUCCESS for r in exporter.results), exporter.results
    received = ds.wait_records("traces", 3)
    assert_same_requests(exporter.sent, received)

    spans = {}
    for r in received:
        for rs in r.message.resource_spans:
            res = attrs(rs.resource.attributes)
            for k, v in RESOURCE_ATTRS.items():
                assert res[k] == v, (k, res)
            assert res["telemetry.sdk.language"] == "python"
            for ss in rs.scope_spans:
                assert ss.scope.name == "e2e.tracer"
                assert ss.scope.version == "0.9.1"
                for s in ss.spans:
                    spans[s.name] = s
    assert set(spans) == {"enqueue", "GET /cart", "SELECT cart"}

    p, c, l = spans["GET /cart"], spans["SELECT cart"], spans["enqueue"]
    pc, cc = parent.get_span_context(), child.get_span_context()
    assert p.trace_id == tid(pc) and p.span_id == sid(pc)
    assert c.trace_id == tid(cc) == tid(pc)
    assert c.span_id == sid(cc)
    assert c.parent_span_id == sid(pc)
    assert p.parent_span_id == b""
    assert l.trace_id == tid(link_ctx) and l.span_id == sid(link_ctx)
    assert p.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert c.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    assert l.kind == trace_pb2.Span.SPAN_KIND_PRODUCER
    assert attrs(p.attributes) == {"http.method": "GET", "http.status_code": 200, "user.vip": True}
    assert attrs(c.attributes) == {
        "db.rows": 7,
        "db.ratio": 0.25,
        "db.cached": False,
        "db.tables": ["cart", "item"],
    }
    assert [e.name for e in p.events] == ["cache.miss"]
    assert attrs(p.events[0].attributes) == {"cache.key": "user:42", "attempt": 2}
    assert p.start_time_unix_nano <= p.events[0].time_unix_nano <= p.end_time_unix_nano
    assert len(c.links) == 1
    assert c.links[0].trace_id == tid(link_ctx) and c.links[0].span_id == sid(link_ctx)
    assert attrs(c.links[0].attributes) == {"link.reason": "batch"}
    assert c.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert c.status.message == "deadlock"
    assert p.start_time_unix_nano <= c.start_time_unix_nano <= c.end_time_unix_nano <= p.end_time_unix_nano

    transport_label = "grpc" if transport.startswith("grpc") else "http"
    assert gw.metric(
        "sluice_receiver_accepted_records_total", receiver="otlp", transport=transport_label, signal="traces"
    ) == 3
    gw.wait_metric("sluice_exporter_sent_records_total", 3, exporter="otlp/down", signal="traces")


# ---------------------------------------------------------------------------- SDK: metrics


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sdk_metrics_arrive_intact(transport, gateway, downstream):
    ds = downstream()
    gw = gateway(otlp_config(ds))
    exporter = sdk_exporter("metrics", transport, gw)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create(RESOURCE_ATTRS), metric_readers=[reader])
    try:
        meter = provider.get_meter("e2e.meter", "2.0.0")
        counter = meter.create_counter("e2e.requests", unit="{request}", description="Requests served")
        counter.add(3, {"route": "/a"})
        counter.add(2, {"route": "/a"})
        counter.add(1, {"route": "/b"})
        hist = meter.create_histogram("e2e.latency", unit="ms", description="Latency")
        for v in (5, 15, 150):
            hist.record(v, {"route": "/a"})
        inflight = meter.create_up_down_counter("e2e.inflight", unit="{request}")
        inflight.add(5, {"pool": "main"})
        inflight.add(-7, {"pool": "main"})
        temperature = meter.create_gauge("e2e.temperature", unit="Cel")
        temperature.set(21.5, {"room": "lab"})
        assert provider.force_flush(15_000), "force_flush did not complete"
        results = list(exporter.results)
        sent = list(exporter.sent)
        # counter: 2 points, histogram 1, up-down counter 1, gauge 1. Checked before the
        # provider's shutdown, which exports (the same points, newer timestamps) once more.
        received = ds.wait_records("metrics", 5)
    finally:
        provider.shutdown()

    assert results and all(r == MetricExportResult.SUCCESS for r in results), results
    assert_same_requests(sent, received)

    metrics = {}
    for r in received:
        for rm in r.message.resource_metrics:
            res = attrs(rm.resource.attributes)
            for k, v in RESOURCE_ATTRS.items():
                assert res[k] == v
            for sm in rm.scope_metrics:
                assert (sm.scope.name, sm.scope.version) == ("e2e.meter", "2.0.0")
                for m in sm.metrics:
                    metrics[m.name] = m
    assert set(metrics) == {"e2e.requests", "e2e.latency", "e2e.inflight", "e2e.temperature"}

    req = metrics["e2e.requests"]
    assert req.unit == "{request}" and req.description == "Requests served"
    assert req.WhichOneof("data") == "sum" and req.sum.is_monotonic
    by_route = {attrs(dp.attributes)["route"]: dp.as_int for dp in req.sum.data_points}
    assert by_route == {"/a": 5, "/b": 1}

    lat = metrics["e2e.latency"]
    assert lat.WhichOneof("data") == "histogram" and lat.unit == "ms"
    (dp,) = lat.histogram.data_points
    assert dp.count == 3 and dp.sum == 170
    assert dp.min == 5 and dp.max == 150
    assert sum(dp.bucket_counts) == 3
    assert list(dp.explicit_bounds) == sorted(dp.explicit_bounds) and dp.explicit_bounds
    assert attrs(dp.attributes) == {"route": "/a"}

    inf = metrics["e2e.inflight"]
    assert inf.WhichOneof("data") == "sum" and not inf.sum.is_monotonic
    assert [(d.as_int, attrs(d.attributes)) for d in inf.sum.data_points] == [(-2, {"pool": "main"})]

    temp = metrics["e2e.temperature"]
    assert temp.WhichOneof("data") == "gauge" and temp.unit == "Cel"
    assert [(d.as_double, attrs(d.attributes)) for d in temp.gauge.data_points] == [(21.5, {"room": "lab"})]


# ---------------------------------------------------------------------------- SDK: logs


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sdk_logs_arrive_intact(transport, gateway, downstream):
    ds = downstream()
    gw = gateway(otlp_config(ds))
    exporter = sdk_exporter("logs", transport, gw)
    resource = Resource.create(RESOURCE_ATTRS)
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=60_000))
    tracer = TracerProvider(resource=resource).get_tracer("e2e.tracer")
    try:
        logger = provider.get_logger("e2e.logger", "3.0")
        with tracer.start_as_current_span("charge") as sp:
            logger.emit(
                body="payment accepted",
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                attributes={"order.id": "o-1", "amount": 12.5, "items": 3},
                context=set_span_in_context(sp),
            )
        logger.emit(
            body={"event": "refund", "count": 2},
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            attributes={"reason": "duplicate"},
        )
        assert provider.force_flush(15_000), "force_flush did not complete"
    finally:
        provider.shutdown()

    assert exporter.results and all(r == LogRecordExportResult.SUCCESS for r in exporter.results), exporter.results
    received = ds.wait_records("logs", 2)
    assert_same_requests(exporter.sent, received)

    records = []
    for r in received:
        for rl in r.message.resource_logs:
            res = attrs(rl.resource.attributes)
            for k, v in RESOURCE_ATTRS.items():
                assert res[k] == v
            for sl in rl.scope_logs:
                assert (sl.scope.name, sl.scope.version) == ("e2e.logger", "3.0")
                records.extend(sl.log_records)
    by_severity = {r.severity_text: r for r in records}
    info, error = by_severity["INFO"], by_severity["ERROR"]
    ctx = sp.get_span_context()
    assert info.body.string_value == "payment accepted"
    assert info.severity_number == logs_pb2.SEVERITY_NUMBER_INFO
    assert attrs(info.attributes) == {"order.id": "o-1", "amount": 12.5, "items": 3}
    assert info.trace_id == tid(ctx) and info.span_id == sid(ctx)
    assert info.time_unix_nano or info.observed_time_unix_nano
    assert any_value(error.body) == {"event": "refund", "count": 2}
    assert error.severity_number == logs_pb2.SEVERITY_NUMBER_ERROR
    assert error.trace_id == b"" and error.span_id == b""
    assert attrs(error.attributes) == {"reason": "duplicate"}


# ---------------------------------------------------------------------------- raw protobuf


def test_protobuf_is_forwarded_byte_for_byte_including_unknown_fields(gateway, downstream):
    """The gateway forwards the client's bytes unchanged when nothing was removed: even a field
    it does not know survives."""
    ds = downstream()
    gw = gateway(otlp_config(ds))
    req, _ = simple_trace_request(2)
    # Field 1000 (varint 1) on the request: not part of OTLP, ignored by decoders, kept on the wire.
    body = req.SerializeToString() + b"\xc0\x3e\x01"
    grpc_export(gw.grpc_target, "traces", body)
    r = gw.post("traces", body)
    assert r.status_code == 200, r.text
    received = ds.wait_for("traces", 2)
    assert [x.raw for x in received] == [body, body]


# ---------------------------------------------------------------------------- OTLP/JSON in


JSON_TRACE_ID = "5b8efff798038103d269b633813fc60c"
JSON_SPAN_ID = "eee19b7ec3c1b174"
JSON_PARENT_ID = "aaaabbbbccccdddd"

JSON_BODIES = {
    "traces": {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "json-lib", "version": "1.0"},
                        "spans": [
                            {
                                "traceId": JSON_TRACE_ID,
                                "spanId": JSON_SPAN_ID,
                                "parentSpanId": JSON_PARENT_ID,
                                "name": "GET /items",
                                "kind": 2,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "attributes": [
                                    {"key": "http.status_code", "value": {"intValue": "200"}},
                                    {"key": "big", "value": {"intValue": "9007199254740993"}},
                                    {"key": "ok", "value": {"boolValue": True}},
                                    {"key": "ratio", "value": {"doubleValue": 0.5}},
                                    {
                                        "key": "tags",
                                        "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "1"}]}},
                                    },
                                ],
                                "events": [
                                    {
                                        "timeUnixNano": "1544712660500000000",
                                        "name": "retry",
                                        "attributes": [{"key": "n", "value": {"intValue": "2"}}],
                                    }
                                ],
                                "links": [
                                    {
                                        "traceId": "0af7651916cd43dd8448eb211c80319c",
                                        "spanId": "b7ad6b7169203331",
                                    }
                                ],
                                "status": {"code": 2, "message": "failed"},
                            }
                        ],
                    }
                ],
            }
        ]
    },
    "metrics": {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeMetrics": [
                    {
                        "scope": {"name": "json-lib"},
                        "metrics": [
                            {
                                "name": "json.requests",
                                "unit": "1",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "asInt": "42",
                                            "startTimeUnixNano": "1544712660000000000",
                                            "timeUnixNano": "1544712661000000000",
                                            "attributes": [{"key": "route", "value": {"stringValue": "/x"}}],
                                        }
                                    ],
                                },
                            },
                            {
                                "name": "json.temp",
                                "gauge": {"dataPoints": [{"asDouble": 3.25, "timeUnixNano": "1544712661000000000"}]},
                            },
                        ],
                    }
                ],
            }
        ]
    },
    "logs": {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeLogs": [
                    {
                        "scope": {"name": "json-lib"},
                        "logRecords": [
                            {
                                "timeUnixNano": "1544712660000000000",
                                "severityNumber": 9,
                                "severityText": "INFO",
                                "body": {"stringValue": "hello from json"},
                                "traceId": JSON_TRACE_ID,
                                "spanId": JSON_SPAN_ID,
                                "attributes": [{"key": "count", "value": {"intValue": "7"}}],
                            }
                        ],
                    }
                ],
            }
        ]
    },
}


@pytest.mark.parametrize("signal_name", ["traces", "metrics", "logs"])
def test_otlp_json_over_http_arrives_with_correct_ids_and_values(signal_name, gateway, downstream):
    ds = downstream()
    gw = gateway(otlp_config(ds))
    r = gw.post(signal_name, json.dumps(JSON_BODIES[signal_name]).encode(), content_type="application/json")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert not body.get("partialSuccess"), body

    (got,) = ds.wait_for(signal_name, 1)
    m = got.message
    if signal_name == "traces":
        rs = m.resource_spans[0]
        assert attrs(rs.resource.attributes) == {"service.name": "json-svc"}
        assert (rs.scope_spans[0].scope.name, rs.scope_spans[0].scope.version) == ("json-lib", "1.0")
        (s,) = rs.scope_spans[0].spans
        assert s.trace_id == bytes.fromhex(JSON_TRACE_ID)
        assert s.span_id == bytes.fromhex(JSON_SPAN_ID)
        assert s.parent_span_id == bytes.fromhex(JSON_PARENT_ID)
        assert s.name == "GET /items" and s.kind == trace_pb2.Span.SPAN_KIND_SERVER
        assert s.start_time_unix_nano == 1544712660000000000
        assert s.end_time_unix_nano == 1544712661000000000
        assert attrs(s.attributes) == {
            "http.status_code": 200,
            "big": 9007199254740993,
            "ok": True,
            "ratio": 0.5,
            "tags": ["a", 1],
        }
        assert [(e.name, e.time_unix_nano, attrs(e.attributes)) for e in s.events] == [
            ("retry", 1544712660500000000, {"n": 2})
        ]
        assert s.links[0].trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
        assert s.links[0].span_id == bytes.fromhex("b7ad6b7169203331")
        assert (s.status.code, s.status.message) == (trace_pb2.Status.STATUS_CODE_ERROR, "failed")
    elif signal_name == "metrics":
        ms = {x.name: x for x in m.resource_metrics[0].scope_metrics[0].metrics}
        (dp,) = ms["json.requests"].sum.data_points
        assert dp.as_int == 42 and attrs(dp.attributes) == {"route": "/x"}
        assert ms["json.requests"].sum.is_monotonic
        assert ms["json.requests"].sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        assert dp.start_time_unix_nano == 1544712660000000000
        assert ms["json.temp"].gauge.data_points[0].as_double == 3.25
    else:
        (rec,) = m.resource_logs[0].scope_logs[0].log_records
        assert rec.trace_id == bytes.fromhex(JSON_TRACE_ID)
        assert rec.span_id == bytes.fromhex(JSON_SPAN_ID)
        assert rec.body.string_value == "hello from json"
        assert rec.severity_number == 9 and rec.severity_text == "INFO"
        assert rec.time_unix_nano == 1544712660000000000
        assert attrs(rec.attributes) == {"count": 7}


# ---------------------------------------------------------------------------- exporter: HTTP


def metrics_request() -> metrics_service_pb2.ExportMetricsServiceRequest:
    now = time.time_ns()
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource_pb2.Resource(attributes=[kv("service.name", "e2e")]),
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        scope=common_pb2.InstrumentationScope(name="e2e"),
                        metrics=[
                            metrics_pb2.Metric(
                                name="queue.depth",
                                gauge=metrics_pb2.Gauge(
                                    data_points=[metrics_pb2.NumberDataPoint(as_int=4, time_unix_nano=now)]
                                ),
                            )
                        ],
                    )
                ],
            )
        ]
    )


def logs_request() -> logs_service_pb2.ExportLogsServiceRequest:
    t, s = new_ids()
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource_pb2.Resource(attributes=[kv("service.name", "e2e")]),
                scope_logs=[
                    logs_pb2.ScopeLogs(
                        scope=common_pb2.InstrumentationScope(name="e2e"),
                        log_records=[
                            logs_pb2.LogRecord(
                                time_unix_nano=time.time_ns(),
                                severity_number=logs_pb2.SEVERITY_NUMBER_WARN,
                                body=common_pb2.AnyValue(string_value="disk almost full"),
                                trace_id=t,
                                span_id=s,
                            )
                        ],
                    )
                ],
            )
        ]
    )


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_exporter_http_protocol_delivers_to_an_otlp_http_backend(compression, gateway, http_downstream):
    ds = http_downstream()
    gw = gateway(
        {
            "otlp/web": {
                "endpoint": ds.endpoint + "/",
                "protocol": "http",
                "compression": compression,
                "headers": {"X-Scope-OrgID": "tenant-7"},
            }
        }
    )
    bodies = {
        "traces": simple_trace_request(3)[0].SerializeToString(),
        "metrics": metrics_request().SerializeToString(),
        "logs": logs_request().SerializeToString(),
    }
    for signal_name, body in bodies.items():
        r = gw.post(signal_name, body)
        assert r.status_code == 200, (signal_name, r.status_code, r.text)
    for signal_name, body in bodies.items():
        (got,) = ds.wait_for(signal_name, 1)
        assert got.path == f"/v1/{signal_name}"
        assert got.headers["content-type"] == "application/x-protobuf"
        assert got.headers.get("x-scope-orgid") == "tenant-7"
        assert got.raw == body, f"{signal_name}: the HTTP backend got different bytes"
        if compression == "gzip":
            assert got.headers.get("content-encoding") == "gzip"
            assert gzip.decompress(got.wire) == body
        else:
            assert "content-encoding" not in got.headers
            assert got.wire == body
    gw.wait_metric("sluice_exporter_sent_records_total", 3, exporter="otlp/web", signal="traces")
    gw.wait_metric("sluice_exporter_sent_records_total", 1, exporter="otlp/web", signal="metrics")
    gw.wait_metric("sluice_exporter_sent_records_total", 1, exporter="otlp/web", signal="logs")


def test_exporter_grpc_sends_configured_headers_as_metadata(gateway, downstream):
    ds = downstream()
    gw = gateway(otlp_config(ds, headers={"X-Scope-OrgID": "tenant-9"}, compression="gzip"))
    req, _ = simple_trace_request(1)
    grpc_export(gw.grpc_target, "traces", req.SerializeToString())
    (got,) = ds.wait_for("traces", 1)
    assert got.metadata.get("x-scope-orgid") == "tenant-9"
    assert got.raw == req.SerializeToString()


# ---------------------------------------------------------------------------- fan-out


def test_fan_out_to_two_exporters(gateway, downstream):
    a, b = downstream(), downstream()
    gw = gateway(
        {
            "otlp/a": {"endpoint": a.endpoint},
            "otlp/b": {"endpoint": b.endpoint},
        }
    )
    req, ids = simple_trace_request(4)
    body = req.SerializeToString()
    grpc_export(gw.grpc_target, "traces", body)
    logs = logs_request().SerializeToString()
    assert gw.post("logs", logs).status_code == 200
    for ds in (a, b):
        (got,) = ds.wait_for("traces", 1)
        assert got.raw == body
        spans = got.message.resource_spans[0].scope_spans[0].spans
        assert [s.span_id for s in spans] == ids
        (got_logs,) = ds.wait_for("logs", 1)
        assert got_logs.raw == logs
    for name in ("otlp/a", "otlp/b"):
        gw.wait_metric("sluice_exporter_sent_records_total", 4, exporter=name, signal="traces")
        gw.wait_metric("sluice_exporter_sent_records_total", 1, exporter=name, signal="logs")


def test_dead_exporter_does_not_stop_the_other_and_its_drops_are_counted(gateway, downstream):
    live = downstream()
    dead_port = free_port()  # nothing listens there
    gw = gateway(
        {
            "otlp/live": {"endpoint": live.endpoint},
            "otlp/dead": {
                "endpoint": f"http://127.0.0.1:{dead_port}",
                "timeout": "1s",
                "retry_on_failure": {"max_elapsed_time": "1s", "initial_interval": "100ms"},
            },
        }
    )
    total = 0
    sent_ids = []
    for i in range(3):
        req, ids = simple_trace_request(i + 1)
        total += len(ids)
        sent_ids.extend(ids)
        r = gw.post("traces", req.SerializeToString())
        assert r.status_code == 200, r.text
    received = live.wait_records("traces", total, timeout=10)
    got_ids = [s.span_id for x in received for s in x.message.resource_spans[0].scope_spans[0].spans]
    assert sorted(got_ids) == sorted(sent_ids)
    gw.wait_metric("sluice_exporter_sent_records_total", total, exporter="otlp/live", signal="traces")
    dropped = gw.wait_metric(
        "sluice_dropped_records_total", total, timeout=15, component="exporter/otlp/dead", signal="traces"
    )
    assert dropped == total
    assert gw.metric(
        "sluice_dropped_records_total", component="exporter/otlp/dead", signal="traces", reason="retries_exhausted"
    ) == total
    assert gw.metric("sluice_exporter_sent_records_total", exporter="otlp/dead") == 0
    assert gw.metric("sluice_dropped_records_total", component="exporter/otlp/live") == 0
    assert gw.metric("sluice_exporter_send_failures_total", exporter="otlp/dead", retryable="true") >= 3

    detail = gw.get("/health/detailed").json()
    exporters = {e["name"]: e for e in detail["exporters"]}
    assert exporters["otlp/dead"]["status"] == "failing"
    assert exporters["otlp/dead"]["consecutive_failures"] >= 1
    assert exporters["otlp/dead"]["last_error"]
    assert exporters["otlp/live"]["status"] == "ok"
    assert gw.alive()


# ---------------------------------------------------------------------------- retries, backend answers


def test_retryable_backend_errors_are_retried_until_delivered(gateway, downstream):
    ds = downstream()
    ds.fail_next = 2  # UNAVAILABLE twice, then OK
    gw = gateway(otlp_config(ds, retry_on_failure={"initial_interval": "50ms", "max_interval": "200ms"}))
    req, ids = simple_trace_request(2)
    grpc_export(gw.grpc_target, "traces", req.SerializeToString())
    (got,) = ds.wait_for("traces", 1, timeout=10)
    assert got.raw == req.SerializeToString()
    assert ds.failed == 2
    gw.wait_metric("sluice_exporter_sent_records_total", 2, exporter="otlp/down", signal="traces")
    assert gw.metric("sluice_exporter_send_failures_total", exporter="otlp/down", retryable="true") == 2
    assert gw.metric("sluice_dropped_records_total", component="exporter/otlp/down") == 0


def test_permanent_backend_error_drops_without_retrying(gateway, downstream):
    ds = downstream()
    ds.always_fail = True
    ds.fail_code = grpc.StatusCode.INVALID_ARGUMENT
    gw = gateway(otlp_config(ds, retry_on_failure={"initial_interval": "50ms"}))
    req, _ = simple_trace_request(2)
    grpc_export(gw.grpc_target, "traces", req.SerializeToString())
    gw.wait_metric(
        "sluice_dropped_records_total", 2, component="exporter/otlp/down", signal="traces", reason="permanent_error"
    )
    time.sleep(0.3)  # no retry may follow
    assert ds.failed == 1
    assert gw.metric("sluice_exporter_send_failures_total", exporter="otlp/down", retryable="false") == 1


def test_backend_partial_success_is_counted_as_dropped(gateway, downstream):
    ds = downstream()
    ds.partial = 1
    gw = gateway(otlp_config(ds))
    req, _ = simple_trace_request(3)
    grpc_export(gw.grpc_target, "traces", req.SerializeToString())
    ds.wait_for("traces", 1)
    gw.wait_metric(
        "sluice_dropped_records_total",
        1,
        component="exporter/otlp/down",
        signal="traces",
        reason="rejected_by_backend",
    )
    gw.wait_metric("sluice_exporter_sent_records_total", 2, exporter="otlp/down", signal="traces")
    assert gw.metric("sluice_exporter_sent_records_total", exporter="otlp/down", signal="traces") == 2
