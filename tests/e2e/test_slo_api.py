"""`GET /api/v1/slos`: the SLO figures the `slo` plugin computes, as this gateway sees them."""

from support.config import gateway_config, pipeline
from support.otlp import kv, span
from support.polling import wait_until

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def test_slo_status_endpoint_reports_events_burn_rates_and_budget(gateway):
    slos = {
        "slos": [
            {
                "name": "checkout-availability",
                "service": "checkout",
                "objective": 99,
                "window": "30d",
                "sli": {"availability": {"span_kind": "server"}},
            }
        ]
    }

    def config(ports):
        return gateway_config(
            ports,
            {"debug": {"verbosity": "basic"}},
            processors={"slo": {"plugin": "builtin/slo", "config": slos}},
            pipelines={
                "traces": pipeline(["debug"], processors=["slo"]),
                "metrics": pipeline(["debug"]),
            },
            shutdown_timeout="10s",
        )

    gw = gateway(config=config)
    spans = []
    for i in range(10):
        s = span(bytes([1] * 15 + [i + 1]), bytes([2] * 7 + [i + 1]), f"op{i}")
        s.kind = trace_pb2.Span.SPAN_KIND_SERVER
        if i < 2:
            s.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        spans.append(s)
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=[kv("service.name", "checkout")]),
                scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
            )
        ]
    )
    assert gw.post("traces", request.SerializeToString()).status_code == 200

    def status():
        return gw.get("/api/v1/slos").json()["slos"].get("checkout-availability")

    wait_until(lambda: (status() or {}).get("good") == 8, 10, "the plugin's first report")
    s = status()
    assert s["bad"] == 2 and s["service"] == "checkout"
    # 20 % errors against a 1 % budget: a burn rate of 20 in every window that saw them.
    assert abs(s["burn_rates"]["5m"] - 20) < 1e-6
    assert abs(s["error_budget_remaining"] - (1 - 20)) < 1e-6
