"""The gateway's own traces: with `service.telemetry.traces.endpoint` set, every request
produces a `request` span with `batch` and `export` children, sent over OTLP/HTTP, continuing
the client's W3C trace context."""

from support.config import config_for, pipeline
from support.otlp import span
from support.polling import wait_until

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"


def _own_spans(collector):
    spans = []
    for received in collector.requests("traces"):
        for rs in received.message.resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            if attrs.get("service.name") != "sluice":
                continue
            for ss in rs.scope_spans:
                spans.extend(ss.spans)
    return spans


def test_own_spans_follow_a_batch_and_continue_the_client_trace(gateway, http_downstream):
    collector = http_downstream()
    gw = gateway(
        config=lambda ports: config_for(
            ports,
            {"debug": {"verbosity": "basic"}},
            pipelines={"traces": pipeline(["debug"])},
            service={"telemetry": {"traces": {"endpoint": collector.endpoint}}},
        )
    )
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                scope_spans=[trace_pb2.ScopeSpans(spans=[span(b"\x01" * 16, b"\x02" * 8)])]
            )
        ]
    )
    r = gw.post(
        "traces",
        request.SerializeToString(),
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"},
    )
    assert r.status_code == 200, r.text

    # The batch span ends when the exporter is done; the SDK exports on its own schedule, and at
    # the latest when the gateway shuts down.
    gw.stop()
    wait_until(lambda: len(_own_spans(collector)) >= 3, 10, "the gateway's own spans")
    spans = {s.name: s for s in _own_spans(collector)}
    assert {"request", "batch", "export"} <= set(spans), sorted(spans)
    for s in spans.values():
        assert s.trace_id.hex() == TRACE_ID, (s.name, s.trace_id.hex())
    assert spans["request"].parent_span_id.hex() == PARENT_SPAN
    assert spans["batch"].parent_span_id == spans["request"].span_id
    assert spans["export"].parent_span_id == spans["batch"].span_id


def test_no_own_spans_unless_configured(gateway, http_downstream):
    collector = http_downstream()
    gw = gateway(
        config=lambda ports: config_for(
            ports,
            {"otlp/down": {"endpoint": collector.endpoint, "protocol": "http"}},
            pipelines={"traces": pipeline(["otlp/down"])},
        )
    )
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                scope_spans=[trace_pb2.ScopeSpans(spans=[span(b"\x01" * 16, b"\x02" * 8)])]
            )
        ]
    )
    assert gw.post("traces", request.SerializeToString()).status_code == 200
    collector.wait_records("traces", 1)
    gw.stop()
    assert _own_spans(collector) == []
