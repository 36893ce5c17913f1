"""The in-memory trace and log store (`memory` exporter) and the Jaeger query API over it.

The official Python SDK sends traces over OTLP/gRPC and logs over OTLP/HTTP; the test then asks
the admin endpoint what a Grafana Jaeger data source or the Jaeger UI would ask.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time

import requests

from support.config import gateway_config, pipeline
from support.polling import wait_until
from support.ports import free_port
from support.process import SLUICE_BIN, clean_env

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def memory_config(max_spans: int = 1000, max_logs: int = 1000, max_age: str = "1h"):
    def build(ports):
        return gateway_config(
            ports,
            {"memory": {"max_spans": max_spans, "max_logs": max_logs, "max_age": max_age}},
            pipelines={"traces": pipeline(["memory"]), "logs": pipeline(["memory"])},
            shutdown_timeout="5s",
        )

    return build


def send_checkout_trace(grpc_target: str, service: str = "shop") -> str:
    """A server span with a client child that fails, like a real checkout; returns the trace id."""
    provider = TracerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "e2e"}))
    provider.add_span_processor(SimpleSpanProcessor(GrpcSpanExporter(endpoint=grpc_target, insecure=True)))
    tracer = provider.get_tracer("checkout")
    with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.route", "/checkout")
        with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT) as child:
            child.add_event("retry", {"attempt": 2})
            time.sleep(0.12)
            child.set_status(Status(StatusCode.ERROR, "card declined"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    with tracer.start_as_current_span("GET /health", kind=SpanKind.SERVER):
        pass
    provider.shutdown()
    return trace_id


def jaeger(gw, path: str, **params):
    r = requests.get(gw.admin_url + path, params=params, timeout=5)
    return r.status_code, r.json()


def test_sdk_traces_are_browsable_through_the_jaeger_api(gateway):
    gw = gateway(config=memory_config())
    trace_id = send_checkout_trace(gw.grpc_target)

    wait_until(lambda: jaeger(gw, "/api/services")[1]["data"] == ["shop"], 10, "service listed")
    code, ops = jaeger(gw, "/api/services/shop/operations")
    assert code == 200 and sorted(ops["data"]) == ["GET /health", "POST /checkout", "charge card"]
    code, ops = jaeger(gw, "/api/operations", service="shop", spanKind="client")
    assert [o["name"] for o in ops["data"]] == ["charge card"]

    code, found = jaeger(gw, "/api/traces", service="shop", lookback="1h", limit="20")
    assert code == 200 and found["total"] == 2
    code, errors_only = jaeger(gw, "/api/traces", service="shop", tags=json.dumps({"error": "true"}))
    assert [t["traceID"] for t in errors_only["data"]] == [trace_id]
    code, slow = jaeger(gw, "/api/traces", service="shop", minDuration="100ms")
    assert [t["traceID"] for t in slow["data"]] == [trace_id]
    code, by_op = jaeger(gw, "/api/traces", service="shop", operation="GET /health")
    assert len(by_op["data"]) == 1 and by_op["data"][0]["traceID"] != trace_id

    code, one = jaeger(gw, f"/api/traces/{trace_id.upper()}")
    assert code == 200
    trace = one["data"][0]
    spans = {s["operationName"]: s for s in trace["spans"]}
    assert set(spans) == {"POST /checkout", "charge card"}
    root, child = spans["POST /checkout"], spans["charge card"]
    assert child["references"] == [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": root["spanID"]}]
    assert child["duration"] >= 120_000, "microseconds"
    tags = {t["key"]: t["value"] for t in child["tags"]}
    assert tags["span.kind"] == "client" and tags["error"] is True
    assert tags["otel.status_description"] == "card declined"
    assert child["logs"][0]["fields"][0] == {"key": "event", "type": "string", "value": "retry"}
    process = trace["processes"][root["processID"]]
    assert process["serviceName"] == "shop"
    assert {"key": "deployment.environment", "type": "string", "value": "e2e"} in process["tags"]

    code, missing = jaeger(gw, "/api/traces/" + "0" * 31 + "1")
    assert code == 404 and missing["errors"][0]["msg"] == "trace not found"
    code, bad = jaeger(gw, "/api/traces", service="shop", minDuration="fast")
    assert code == 400 and "minDuration" in bad["errors"][0]["msg"]
    assert gw.metric("sluice_store_records", signal="traces") == 3


def test_sdk_logs_are_searchable(gateway):
    gw = gateway(config=memory_config())
    provider = LoggerProvider(resource=Resource.create({"service.name": "billing"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=gw.http_url + "/v1/logs")))
    logger = logging.getLogger("e2e.store")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.info("invoice 42 created")
        logger.error("invoice 43 FAILED: card expired")
    finally:
        logger.removeHandler(handler)
        provider.shutdown()

    def logs(**params):
        r = requests.get(gw.admin_url + "/api/v1/logs", params=params, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    wait_until(lambda: len(logs()) == 2, 10, "two log records stored")
    newest = logs()[0]
    assert newest["service"] == "billing" and newest["severity_text"] == "ERROR"
    assert [l["body"] for l in logs(severity="error")] == ["invoice 43 FAILED: card expired"]
    assert [l["body"] for l in logs(q="INVOICE 42")] == ["invoice 42 created"]
    assert logs(service="nobody") == []
    r = requests.get(gw.admin_url + "/api/v1/logs", params={"severity": "loud"}, timeout=5)
    assert r.status_code == 400 and "severity" in r.json()["errors"][0]["msg"]


def test_a_full_store_evicts_the_oldest_traces_and_counts_them(gateway):
    gw = gateway(config=memory_config(max_spans=4))
    provider = TracerProvider(resource=Resource.create({"service.name": "burst"}))
    provider.add_span_processor(SimpleSpanProcessor(GrpcSpanExporter(endpoint=gw.grpc_target, insecure=True)))
    tracer = provider.get_tracer("burst")
    ids = []
    for i in range(10):
        with tracer.start_as_current_span(f"op-{i}") as s:
            ids.append(format(s.get_span_context().trace_id, "032x"))
    provider.shutdown()
    gw.wait_metric("sluice_store_evicted_records_total", 6, signal="traces", reason="max_spans")
    _, found = jaeger(gw, "/api/traces", service="burst", limit="100")
    assert sorted(t["traceID"] for t in found["data"]) == sorted(ids[-4:])
    assert jaeger(gw, f"/api/traces/{ids[0]}")[0] == 404
    assert gw.metric("sluice_store_records", signal="traces") == 4


def test_without_a_memory_exporter_the_api_says_how_to_add_one(gateway):
    gw = gateway(exporters={"blackhole": {}})
    code, body = jaeger(gw, "/api/services")
    assert code == 404
    assert "memory" in body["errors"][0]["msg"] and "exporters" in body["errors"][0]["msg"]


def test_the_embedded_defaults_keep_traces_for_the_ui(tmp_path):
    """README's first command, `sluice run` with no config: a trace sent with the SDK can be
    looked up at once on the admin endpoint."""
    ports = {"grpc": free_port(), "http": free_port(), "admin": free_port()}
    cmd = [
        str(SLUICE_BIN),
        "run",
        "--grpc-endpoint", f"127.0.0.1:{ports['grpc']}",
        "--http-endpoint", f"127.0.0.1:{ports['http']}",
        "--admin-endpoint", f"127.0.0.1:{ports['admin']}",
    ]
    admin = f"http://127.0.0.1:{ports['admin']}"
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=clean_env(), cwd=tmp_path)
    try:
        def ready():
            assert proc.poll() is None, (tmp_path / "stderr").read_text()
            try:
                return requests.get(admin + "/health/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, 15, "embedded defaults ready")
        trace_id = send_checkout_trace(f"127.0.0.1:{ports['grpc']}", service="newcomer")
        wait_until(
            lambda: requests.get(f"{admin}/api/traces/{trace_id}", timeout=5).status_code == 200,
            10,
            "trace stored",
        )
        names = {s["operationName"] for s in requests.get(f"{admin}/api/traces/{trace_id}", timeout=5).json()["data"][0]["spans"]}
        assert names == {"POST /checkout", "charge card"}
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
