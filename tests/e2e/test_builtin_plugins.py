"""The built-in plugins (`plugin: builtin/NAME`) in a real gateway: `redact`, `sample`,
`enrich` and `slo`, each fed by the official OpenTelemetry SDK and checked at a fake OTLP
backend (and, for `slo`, on the gateway's Prometheus scrape endpoint), then `enrich`, `redact`
and `sample` chained in one pipeline.

The plugins are taken from `$SLUICE_TEST_PLUGINS` (by default `target/wasm32-wasip2/release` in
the repository, where `scripts/build-plugins.sh` puts them) and handed to the gateway as
`$SLUICE_PLUGIN_DIR`; a missing plugin fails the tests. Every gateway here uses one
precompiled-artifact cache, filled once by `sluice validate` (compiling the four components
takes tens of seconds with a debug build of the gateway). Set `$SLUICE_TEST_PLUGIN_CACHE` to a
directory to keep that cache between runs.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from support.config import gateway_config, pipeline, write_config
from support.exposition import parse_prometheus
from support.gateway import validate_with_plugins
from support.otlp import kv, new_ids, span, trace_request
from support.polling import wait_until
from support.ports import free_port
from support.process import REPO, SLUICE_BIN

BUILTINS = ("redact", "sample", "enrich", "slo", "limit_cardinality", "spanmetrics", "servicegraph")
# Arrival at the downstream, and one plugin tick (about a second) plus export.
ARRIVAL = 10.0
# How long to wait for anything more to arrive after what was expected did.
SETTLE = 0.5

MASK = "[REDACTED]"


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def plugin_dir() -> Path:
    """Where the built-in plugins are; missing ones fail the tests (CI builds them)."""
    configured = os.environ.get("SLUICE_TEST_PLUGINS")
    base = (Path(configured) if configured else REPO / "target" / "wasm32-wasip2" / "release").resolve()
    missing = [n for n in BUILTINS if not (base / f"sluice_plugin_{n}.wasm").is_file()]
    if missing:
        pytest.fail(
            f"built-in plugin(s) {', '.join(missing)} not found in {base}: build them with "
            "scripts/build-plugins.sh or set $SLUICE_TEST_PLUGINS to the directory holding them",
            pytrace=False,
        )
    return base


@pytest.fixture(scope="module")
def plugin_cache(tmp_path_factory, plugin_dir) -> Path:
    """A precompiled-artifact cache for the module's gateways, filled once: `sluice validate`
    loads (compiles and caches) every plugin its config uses."""
    configured = os.environ.get("SLUICE_TEST_PLUGIN_CACHE")
    cache = Path(configured).resolve() if configured else tmp_path_factory.mktemp("builtin-plugin-cache")
    work = tmp_path_factory.mktemp("builtin-plugin-cache-fill")
    ports = {"grpc": free_port(), "http": free_port(), "admin": free_port()}
    cfg = gateway_config(
        ports,
        {"debug": {}},
        processors={n: {"plugin": f"builtin/{n}", "config": {"slos": []} if n == "slo" else {}} for n in BUILTINS},
        pipelines={"traces": pipeline(["debug"], processors=list(BUILTINS))},
        plugins={"cache_dir": str(cache)},
        shutdown_timeout="10s",
    )
    path = write_config(work / "fill-cache.yaml", cfg)
    validate_with_plugins(path, plugin_dir)
    return cache


# ------------------------------------------------------------------------------------- helpers


def processor(name: str, config: dict | None = None, on_error: str | None = None) -> dict:
    p: dict[str, Any] = {"plugin": f"builtin/{name}", "config": config if config is not None else {}}
    if on_error is not None:
        p["on_error"] = on_error
    return p


def start(
    gateway,
    plugin_dir: Path,
    cache: Path,
    processors: dict[str, dict],
    pipelines: dict[str, list[str]],
    ds=None,
    prometheus_port: bool = False,
):
    """A gateway with the given processors and a pipeline per entry of `pipelines` (signal ->
    processor names), every pipeline from the `otlp` receiver to the downstream `ds`. With
    `prometheus_port`, the metrics pipeline exports to a `prometheus` scrape endpoint on
    `ports["scrape"]` instead."""

    def config(ports):
        exporters: dict[str, Any] = {}
        if ds is not None:
            exporters["otlp/down"] = {"endpoint": ds.endpoint, "protocol": "grpc"}
        if prometheus_port:
            ports["scrape"] = free_port()
            exporters["prometheus"] = {"endpoint": f"127.0.0.1:{ports['scrape']}"}
        lines = {}
        for signal_name, procs in pipelines.items():
            out = ["prometheus"] if prometheus_port and signal_name == "metrics" else ["otlp/down"]
            lines[signal_name] = pipeline(out, processors=list(procs))
        return gateway_config(
            ports,
            exporters,
            processors=processors,
            pipelines=lines,
            plugins={"cache_dir": str(cache)},
            shutdown_timeout="10s",
        )

    return gateway(config=config, env={"SLUICE_PLUGIN_DIR": str(plugin_dir)})


def any_value(v: common_pb2.AnyValue):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {x.key: any_value(x.value) for x in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attrs(kvs) -> dict:
    return {x.key: any_value(x.value) for x in kvs}


def tid(trace_id: int) -> bytes:
    return trace_id.to_bytes(16, "big")


# -- sending with the SDK


def sdk_spans(build: Callable[[Any], None], **resource: Any) -> list:
    """The spans `build(tracer)` makes with the SDK, finished, under a resource of `resource`."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("e2e.builtin", "1.0"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def send_spans(gw, spans: list) -> bytes:
    """Exports `spans` with the SDK's OTLP/gRPC exporter as one request; returns its bytes."""
    exporter = GrpcSpanExporter(endpoint=gw.grpc_target, insecure=True, timeout=10)
    try:
        result = exporter.export(spans)
    finally:
        exporter.shutdown()
    assert result == SpanExportResult.SUCCESS, f"the gateway refused the spans; stderr:\n{gw.stderr()[-3000:]}"
    return encode_spans(spans).SerializeToString()


def send_logs(gw, records: list[dict], **resource: Any) -> None:
    """Emits log records (keyword arguments of `Logger.emit`) with the SDK and exports them in
    one OTLP/gRPC request."""
    exporter = GrpcLogExporter(endpoint=gw.grpc_target, insecure=True, timeout=10)
    provider = LoggerProvider(resource=Resource.create(resource))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=60_000))
    try:
        logger = provider.get_logger("e2e.builtin", "1.0")
        for record in records:
            logger.emit(**record)
        assert provider.force_flush(15_000), "force_flush of the logs did not complete"
    finally:
        provider.shutdown()


def send_metrics(gw, record: Callable[[Any], None], **resource: Any) -> bytes:
    """Records with the SDK (`record(meter)`) and exports the result in one OTLP/gRPC request;
    returns its bytes."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create(resource), metric_readers=[reader])
    try:
        record(provider.get_meter("e2e.builtin", "1.0"))
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    exporter = GrpcMetricExporter(endpoint=gw.grpc_target, insecure=True, timeout=10)
    try:
        result = exporter.export(data)
    finally:
        exporter.shutdown()
    assert result == MetricExportResult.SUCCESS, f"the gateway refused the metrics; stderr:\n{gw.stderr()[-3000:]}"
    return encode_metrics(data).SerializeToString()


# -- what the downstream got


def got_spans(ds) -> list[tuple[dict, Any]]:
    """(resource attributes, span) of every span the downstream got, in arrival order."""
    return [
        (attrs(rs.resource.attributes), s)
        for r in ds.requests("traces")
        for rs in r.message.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]


def got_logs(ds) -> list[tuple[dict, Any]]:
    return [
        (attrs(rl.resource.attributes), lr)
        for r in ds.requests("logs")
        for rl in r.message.resource_logs
        for sl in rl.scope_logs
        for lr in sl.log_records
    ]


def got_points(ds, name: str) -> list[tuple[dict, Any, Any]]:
    """(resource attributes, metric, data point) of every point of metric `name` the downstream
    got, in arrival order."""
    points = []
    for r in ds.requests("metrics"):
        for rm in r.message.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if m.name == name and kind:
                        points.extend((attrs(rm.resource.attributes), m, dp) for dp in getattr(m, kind).data_points)
    return points


def wait_spans(ds, count: int, timeout: float = ARRIVAL) -> list[tuple[dict, Any]]:
    """Waits for `count` spans, then a moment more: returns everything that arrived."""
    wait_until(
        lambda: len(got_spans(ds)) >= count,
        timeout,
        f"{count} spans at the downstream (got {[s.name for _, s in got_spans(ds)]})",
    )
    time.sleep(SETTLE)
    return got_spans(ds)


def wait_logs(ds, count: int, timeout: float = ARRIVAL) -> list[tuple[dict, Any]]:
    wait_until(lambda: len(got_logs(ds)) >= count, timeout, f"{count} log records at the downstream")
    time.sleep(SETTLE)
    return got_logs(ds)


def latest_counts(ds, name: str, *keys: str) -> dict[tuple, int]:
    """The latest value of every series of the cumulative int sum `name`, by the values of the
    attributes `keys`."""
    latest: dict[tuple, int] = {}
    for _, _, dp in got_points(ds, name):
        a = attrs(dp.attributes)
        latest[tuple(a.get(k) for k in keys)] = dp.as_int
    return latest


def wait_counts(ds, name: str, keys: tuple[str, ...], want: dict[tuple, int], timeout: float = ARRIVAL) -> None:
    seen: dict[str, Any] = {}

    def check() -> bool:
        seen["counts"] = latest_counts(ds, name, *keys)
        return seen["counts"] == want

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            pytest.fail(f"{name} by {keys} at the downstream: {seen['counts']}, expected {want}")
        time.sleep(0.05)


def processor_stats(gw, name: str) -> str:
    """The plugin self-metrics of one processor, for failure messages."""
    text = gw.get("/metrics").text
    return "\n".join(line for line in text.splitlines() if f'processor="{name}"' in line)


# -------------------------------------------------------------------------------------- redact

EMAIL = "alice@example.com"
CARD = "4111 1111 1111 1111"  # passes the Luhn check
ORDER_ID = "4111111111111112"  # 16 digits, fails the Luhn check
BEARER = "s3cr3tT0ken9"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

SECRET_ATTRIBUTES = {
    "user.contact": f"mail {EMAIL} today",
    "payment.card": CARD,
    "order.id": ORDER_ID,
    "http.request.headers": f"Authorization: Bearer {BEARER}",
    "url.full": "https://shop.example/callback?token=abc123&x=1",
    "db.password": "hunter2",
    "note": "nothing to see here",
    "retries": 3,
}
REDACTED_ATTRIBUTES = {
    "user.contact": f"mail {MASK} today",
    "payment.card": MASK,
    "order.id": ORDER_ID,
    "http.request.headers": f"Authorization: Bearer {MASK}",
    "url.full": f"https://shop.example/callback?token={MASK}&x=1",
    "db.password": MASK,
    "note": "nothing to see here",
    "retries": 3,
}


def test_redact_masks_secrets_in_spans_logs_and_metrics_and_counts_them(gateway, downstream, plugin_dir, plugin_cache):
    ds = downstream()
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"redact": processor("redact", {}, on_error="reject")},
        {"traces": ["redact"], "logs": ["redact"], "metrics": ["redact"]},
        ds,
    )

    def build(tracer):
        with tracer.start_as_current_span("checkout", kind=SpanKind.SERVER, attributes=SECRET_ATTRIBUTES):
            with tracer.start_as_current_span("clean child", attributes={"http.route": "/pay", "n": 1}):
                pass

    spans = sdk_spans(build, **{"service.name": "e2e-redact"})
    send_spans(gw, spans)

    send_logs(
        gw,
        [
            {"body": "reset link sent to bob@example.org", "severity_number": SeverityNumber.INFO},
            {
                "body": {"event": "login", "detail": {"note": f"issued {JWT}", "attempts": 3}},
                "severity_number": SeverityNumber.WARN,
            },
        ],
        **{"service.name": "e2e-redact"},
    )

    def record(meter):
        meter.create_counter("e2e.requests").add(2, {"client.ip": "10.1.2.3", "route": "/a"})

    send_metrics(gw, record, **{"service.name": "e2e-redact"})

    # Spans: every secret masked, everything else as sent.
    got = {s.name: s for _, s in wait_spans(ds, 2)}
    assert set(got) == {"checkout", "clean child"}, list(got)
    assert attrs(got["checkout"].attributes) == REDACTED_ATTRIBUTES
    expected = encode_spans(spans)
    for rs in expected.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                for a in s.attributes if s.name == "checkout" else []:
                    if a.value.WhichOneof("value") == "string_value":
                        a.value.string_value = REDACTED_ATTRIBUTES[a.key]
    (received,) = ds.requests("traces")
    assert received.message == expected

    # Logs: the e-mail in a string body, the JWT inside a structured body.
    logs = {lr.severity_number: lr for _, lr in wait_logs(ds, 2)}
    assert any_value(logs[SeverityNumber.INFO.value].body) == f"reset link sent to {MASK}"
    assert any_value(logs[SeverityNumber.WARN.value].body) == {
        "event": "login",
        "detail": {"note": f"issued {MASK}", "attempts": 3},
    }

    # Metrics: the IPv4 address in a data point attribute.
    wait_until(lambda: got_points(ds, "e2e.requests"), ARRIVAL, "the e2e.requests metric at the downstream")
    ((_, _, dp),) = got_points(ds, "e2e.requests")
    assert attrs(dp.attributes) == {"client.ip": MASK, "route": "/a"}
    assert dp.as_int == 2

    # The counter, emitted into the metrics pipeline, by rule and action.
    wait_counts(
        ds,
        "redact.redactions",
        ("rule", "action"),
        {
            ("email", "mask"): 2,
            ("credit_card", "mask"): 1,
            ("bearer", "mask"): 1,
            ("url_secrets", "mask"): 1,
            ("secret_keys", "mask"): 1,
            ("jwt", "mask"): 1,
            ("ipv4", "mask"): 1,
        },
    )
    _, metric, _ = got_points(ds, "redact.redactions")[-1]
    assert metric.unit == "{redaction}"
    assert metric.sum.is_monotonic
    assert metric.sum.aggregation_temporality == 2  # cumulative

    # Nothing unredacted anywhere downstream.
    everything = b"".join(r.raw for s in ("traces", "logs", "metrics") for r in ds.requests(s))
    for secret in (EMAIL, "bob@example.org", "4111 1111 1111 1111", BEARER, "abc123", "hunter2", JWT, "10.1.2.3"):
        assert secret.encode() not in everything, f"{secret!r} reached the downstream"


PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA7bq98Jt0Xx8cJ1t2c3VwZXJzZWNyZXRrZXltYXRlcmlhbA==\n"
    "-----END RSA PRIVATE KEY-----"
)
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
SSN = "123-45-6789"
LOOK_ALIKES = {
    "k8s.pod.name": "checkout-7d9f8b6c5-x2x9k",
    "service.version": "v10.22.333",
    "app.order": "ORD-123-45-6789",
    "app.day": "2024-01-15",
    "app.digest": "sha256:" + "ab" * 32,
    "app.trace": "4bf92f3577b34da6a3ce929d0e0e4736",
}


def test_redact_catches_leaks_in_status_messages_encoded_urls_keys_tokens_and_ids(
    gateway, downstream, plugin_dir, plugin_cache
):
    """What real services leak beyond attributes: a card number in a span's status message, an
    e-mail address percent-encoded in a URL, a private key in a log body, a payment provider's
    secret key, a national id number; look-alikes (pod names, versions, order numbers, dates,
    digests, trace ids) stay as they were."""
    ds = downstream()
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"redact": processor("redact", {}, on_error="reject")},
        # The metrics pipeline carries the plugin's counter.
        {"traces": ["redact"], "logs": ["redact"], "metrics": []},
        ds,
    )

    def build(tracer):
        attributes = {"url.full": "https://shop.example/signup?email=jane.doe%40example.com&plan=pro", **LOOK_ALIKES}
        with tracer.start_as_current_span("POST /charge", kind=SpanKind.SERVER, attributes=attributes) as sp:
            sp.set_status(Status(StatusCode.ERROR, f"charge failed for card {CARD}"))

    send_spans(gw, sdk_spans(build, **{"service.name": "e2e-redact-more"}))
    send_logs(
        gw,
        [
            {"body": f"loaded signing key\n{PEM}", "severity_number": SeverityNumber.INFO},
            {"body": f"stripe client configured with {STRIPE}", "severity_number": SeverityNumber.WARN},
            {"body": f"applicant ssn {SSN} verified", "severity_number": SeverityNumber.ERROR},
        ],
        **{"service.name": "e2e-redact-more"},
    )

    ((_, got),) = wait_spans(ds, 1)
    assert got.status.message == f"charge failed for card {MASK}"
    assert got.status.code == 2
    assert attrs(got.attributes) == {"url.full": f"https://shop.example/signup?email={MASK}&plan=pro", **LOOK_ALIKES}
    logs = {lr.severity_number: any_value(lr.body) for _, lr in wait_logs(ds, 3)}
    assert logs == {
        SeverityNumber.INFO.value: f"loaded signing key\n{MASK}",
        SeverityNumber.WARN.value: f"stripe client configured with {MASK}",
        SeverityNumber.ERROR.value: f"applicant ssn {MASK} verified",
    }
    wait_counts(
        ds,
        "redact.redactions",
        ("rule", "action"),
        {
            ("credit_card", "mask"): 1,
            ("email", "mask"): 1,
            ("private_key", "mask"): 1,
            ("saas_tokens", "mask"): 1,
            ("national_id", "mask"): 1,
        },
    )
    everything = b"".join(r.raw for s in ("traces", "logs") for r in ds.requests(s))
    # (The SSN's digits are also in the order number look-alike, which stays.)
    for secret in (CARD, "jane.doe%40example.com", "BEGIN RSA PRIVATE KEY", STRIPE, f"ssn {SSN}"):
        assert secret.encode() not in everything, f"{secret!r} reached the downstream"


def test_builtin_plugins_come_with_the_binary_and_a_plugin_directory_overrides_them(
    gateway, downstream, tmp_path, plugin_dir, plugin_cache
):
    """A copy of the binary in a directory of its own, with no plugin directory, runs
    `builtin/redact` from the copy embedded in it; a `sluice_plugin_redact.wasm` in
    `$SLUICE_PLUGIN_DIR` replaces it."""
    alone = tmp_path / "elsewhere"
    alone.mkdir()
    binary = alone / "sluice"
    try:
        os.link(SLUICE_BIN, binary)
    except OSError:
        shutil.copy2(SLUICE_BIN, binary)
    ds = downstream()

    def config(ports):
        return gateway_config(
            ports,
            {"otlp/down": {"endpoint": ds.endpoint, "protocol": "grpc"}},
            processors={"redact": processor("redact", {}, on_error="reject")},
            pipelines={"traces": pipeline(["otlp/down"], processors=["redact"])},
            plugins={"cache_dir": str(plugin_cache)},
            shutdown_timeout="10s",
        )

    gw = gateway(config=config, binary=binary)
    (loaded,) = gw.get("/api/v1/plugins").json()["plugins"]
    assert (loaded["path"], loaded["plugin"], loaded["state"]) == ("builtin/redact", "redact", "ok")
    t, s1 = new_ids()
    body = trace_request(
        span(t, s1, "signup", attributes=[kv("user.email", "carol@example.com")]), service="e2e-embedded"
    )
    assert gw.post("traces", body.SerializeToString()).status_code == 200
    ((_, got),) = wait_spans(ds, 1)
    assert attrs(got.attributes) == {"user.email": MASK}

    # A file of the same name in a plugin directory wins over the embedded copy.
    override = tmp_path / "override"
    override.mkdir()
    shutil.copy2(plugin_dir / "sluice_plugin_sample.wasm", override / "sluice_plugin_redact.wasm")
    gw2 = gateway(config=config, binary=binary, env={"SLUICE_PLUGIN_DIR": str(override)})
    (loaded,) = gw2.get("/api/v1/plugins").json()["plugins"]
    assert loaded["path"] == str(override / "sluice_plugin_redact.wasm")
    assert loaded["plugin"] == "sample"


def test_redact_forwards_a_clean_batch_byte_for_byte(gateway, downstream, plugin_dir, plugin_cache):
    ds = downstream()
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"redact": processor("redact", {}, on_error="reject")},
        {"traces": ["redact"]},
        ds,
    )
    t, s1 = new_ids()
    _, s2 = new_ids()
    body = trace_request(
        span(t, s1, "GET /orders", attributes=[kv("http.route", "/orders"), kv("http.status_code", 200)]),
        span(t, s2, "SELECT orders", parent_span_id=s1, attributes=[kv("db.system", "postgresql"), kv("rows", 12)]),
        service="e2e-clean",
    ).SerializeToString()
    # A field unknown to the OTLP schema: it survives only if the client's bytes are forwarded.
    body += bytes([0xC0, 0x3E, 0x01])
    r = gw.post("traces", body)
    assert r.status_code == 200, r.text
    (received,) = ds.wait_for("traces", 1, timeout=ARRIVAL)
    assert received.raw == body, "a batch with nothing to redact was re-encoded or changed"


def test_redact_hashes_emails_with_the_configured_key(gateway, downstream, plugin_dir, plugin_cache):
    ds = downstream()
    secret = "9f2c" * 16  # 64 hex characters
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {
            "redact": processor(
                "redact",
                {"detectors": {"email": "hash"}, "hash_keys": {"k2025": secret}, "hash_key": "k2025"},
                on_error="reject",
            )
        },
        {"traces": ["redact"], "logs": ["redact"]},
        ds,
    )

    def expected(text: str) -> str:
        digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()[:16]
        return f"hmac:k2025:{digest.hex()}"

    def build(tracer):
        for i, who in enumerate(["alice@example.com", "alice@example.com", "carol@example.com"]):
            with tracer.start_as_current_span(f"op-{i}", attributes={"user.email": who, "card": CARD}):
                pass

    send_spans(gw, sdk_spans(build, **{"service.name": "e2e-hash"}))
    # The same address in another record of another batch and signal.
    send_logs(gw, [{"body": "login by alice@example.com", "severity_number": SeverityNumber.INFO}])

    got = {s.name: attrs(s.attributes) for _, s in wait_spans(ds, 3)}
    hashes = [got[f"op-{i}"]["user.email"] for i in range(3)]
    assert hashes[0] == hashes[1], hashes
    assert hashes[0] != hashes[2], hashes
    assert hashes == [expected("alice@example.com"), expected("alice@example.com"), expected("carol@example.com")]
    # Unlisted detectors keep masking.
    assert {a["card"] for a in got.values()} == {MASK}
    ((_, log),) = wait_logs(ds, 1)
    assert log.body.string_value == f"login by {expected('alice@example.com')}"


# -------------------------------------------------------------------------------------- sample


def test_sample_drop_removes_only_health_checks(gateway, downstream, plugin_dir, plugin_cache):
    ds = downstream()
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"sample": processor("sample", {"drop": [{"name": {"prefix": "GET /health"}}]})},
        {"traces": ["sample"]},
        ds,
    )
    names = ["GET /health", "GET /users/1", "GET /healthz", "POST /health", "GET /health/ready", "get /health"]

    def build(tracer):
        for n in names:
            with tracer.start_as_current_span(n, kind=SpanKind.SERVER, attributes={"http.route": n}):
                pass

    spans = sdk_spans(build, **{"service.name": "e2e-sample"})
    sent = encode_spans(spans)
    send_spans(gw, spans)
    got = wait_spans(ds, 3)
    assert [s.name for _, s in got] == ["GET /users/1", "POST /health", "get /health"]
    # The kept spans are forwarded exactly as sent.
    expected = copy.deepcopy(sent)
    for rs in expected.resource_spans:
        for ss in rs.scope_spans:
            kept = [s for s in ss.spans if not s.name.startswith("GET /health")]
            del ss.spans[:]
            ss.spans.extend(kept)
    (received,) = ds.requests("traces")
    assert received.message == expected


def test_sample_probabilistic_keeps_whole_traces(gateway, downstream, plugin_dir, plugin_cache):
    ds = downstream()
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"sample": processor("sample", {"probabilistic": {"percent": 50}})},
        {"traces": ["sample"]},
        ds,
    )

    def build(tracer):
        for i in range(200):
            with tracer.start_as_current_span(f"root-{i}", kind=SpanKind.SERVER):
                with tracer.start_as_current_span(f"db-{i}", kind=SpanKind.CLIENT):
                    pass
                with tracer.start_as_current_span(f"render-{i}"):
                    pass

    spans = sdk_spans(build, **{"service.name": "e2e-prob"})
    assert len(spans) == 600
    by_trace: dict[bytes, list] = {}
    for s in spans:
        by_trace.setdefault(tid(s.context.trace_id), []).append(s)
    assert len(by_trace) == 200 and all(len(v) == 3 for v in by_trace.values())
    # The spans of each trace go out in three different requests: the decision must not depend
    # on the batch.
    for k in range(3):
        send_spans(gw, [v[k] for v in by_trace.values()])

    # OpenTelemetry consistent probability sampling: R is the trace id's last 7 bytes; a trace is
    # kept when R >= (1 - 50/100) * 2^56.
    expected_kept = {t for t in by_trace if int.from_bytes(t[9:], "big") >= 1 << 55}
    got = wait_spans(ds, 3 * len(expected_kept))
    per_trace: dict[bytes, int] = {}
    for _, s in got:
        per_trace[s.trace_id] = per_trace.get(s.trace_id, 0) + 1
    assert set(per_trace.values()) <= {3}, f"traces cut apart: {sorted(per_trace.values())}"
    assert set(per_trace) <= set(by_trace)
    kept = len(per_trace) / len(by_trace)
    assert 0.35 <= kept <= 0.65, f"kept {len(per_trace)} of {len(by_trace)} traces"
    assert set(per_trace) == expected_kept, (
        f"{len(set(per_trace) - expected_kept)} kept that the threshold drops, "
        f"{len(expected_kept - set(per_trace))} dropped that it keeps"
    )


@pytest.mark.parametrize("keep_errors", [True, False])
def test_sample_keep_errors_keeps_error_spans_that_are_sampled_out(
    keep_errors, gateway, downstream, plugin_dir, plugin_cache
):
    ds = downstream()
    config = {
        "drop": [{"name": {"prefix": "GET /health"}}],
        "probabilistic": {"percent": 0},
        "keep_errors": keep_errors,
    }
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"sample": processor("sample", config)},
        {"traces": ["sample"]},
        ds,
    )

    def build(tracer):
        for name, error in [
            ("GET /users/1", False),
            ("POST /pay", True),
            ("GET /health", True),
            ("GET /health", False),
            ("GET /orders", False),
        ]:
            with tracer.start_as_current_span(name, kind=SpanKind.SERVER) as sp:
                if error:
                    sp.set_status(Status(StatusCode.ERROR, "boom"))

    send_spans(gw, sdk_spans(build, **{"service.name": "e2e-errors"}))
    # The gateway answers a pipeline with processors once they ran.
    stats = processor_stats(gw, "sample")
    assert gw.metric("sluice_plugin_records_in_total", processor="sample") == 5, stats
    if keep_errors:
        # Both errors are kept: the one sampled out and the failing health check.
        got = wait_spans(ds, 2)
        assert sorted((s.name, s.status.code) for _, s in got) == [("GET /health", 2), ("POST /pay", 2)], [
            (s.name, s.status.code) for _, s in got
        ]
    else:
        time.sleep(SETTLE)
        assert got_spans(ds) == []
    assert gw.metric("sluice_plugin_records_out_total", processor="sample") == (2 if keep_errors else 0), stats


def test_sample_drops_debug_logs_by_severity(gateway, downstream, plugin_dir, plugin_cache):
    ds = downstream()
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"sample": processor("sample", {"drop": [{"severity_below": "INFO"}]})},
        {"logs": ["sample"]},
        ds,
    )
    send_logs(
        gw,
        [
            {"body": "trace detail", "severity_number": SeverityNumber.TRACE},
            {"body": "debug detail", "severity_number": SeverityNumber.DEBUG},
            {"body": "debug4 detail", "severity_number": SeverityNumber.DEBUG4},
            {"body": "started", "severity_number": SeverityNumber.INFO},
            {"body": "slow", "severity_number": SeverityNumber.WARN},
            {"body": "failed", "severity_number": SeverityNumber.ERROR},
            {"body": "debug by text", "severity_text": "debug"},
            {"body": "no severity"},
        ],
        **{"service.name": "e2e-logs"},
    )
    got = wait_logs(ds, 4)
    assert sorted(lr.body.string_value for _, lr in got) == sorted(["started", "slow", "failed", "no severity"])


def test_sample_rate_limit_per_service_drops_the_excess(gateway, downstream, plugin_dir, plugin_cache):
    ds = downstream()
    config = {"rate_limit": {"key": "service.name", "per_second": 0.01, "burst": 5}}
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"sample": processor("sample", config)},
        {"traces": ["sample"], "metrics": []},
        ds,
    )

    def many(n: int, prefix: str):
        def build(tracer):
            for i in range(n):
                with tracer.start_as_current_span(f"{prefix}-{i}"):
                    pass

        return build

    a = sdk_spans(many(12, "a"), **{"service.name": "svc-a"})
    b = sdk_spans(many(12, "b"), **{"service.name": "svc-b"})
    send_spans(gw, a + b)  # one request, two resources
    got = wait_spans(ds, 10)
    by_service: dict[str, list[str]] = {}
    for res, s in got:
        by_service.setdefault(res["service.name"], []).append(s.name)
    assert {k: len(v) for k, v in by_service.items()} == {"svc-a": 5, "svc-b": 5}, by_service

    # The buckets stay empty (0.01 tokens a second): more of svc-a is dropped, another service
    # has a bucket of its own.
    send_spans(gw, sdk_spans(many(3, "a-again"), **{"service.name": "svc-a"}))
    send_spans(gw, sdk_spans(many(3, "c"), **{"service.name": "svc-c"}))
    got = wait_spans(ds, 13)
    names = [s.name for _, s in got]
    assert len(names) == 13, names
    assert not any(n.startswith("a-again") for n in names), names
    assert sorted(n for n in names if n.startswith("c-")) == ["c-0", "c-1", "c-2"]

    # The plugin's own count of what it dropped, emitted into the metrics pipeline.
    wait_counts(ds, "sample.dropped", ("reason", "signal"), {("rate_limited", "traces"): 7 + 7 + 3})


# -------------------------------------------------------------------------------------- enrich

ENRICH = {
    "attributes": [{"action": "upsert", "target": "resource", "key": "deployment.environment", "value": "prod"}],
    "derive": {"from": "url.path", "to": "http.route", "templates": ["/users/{id}"]},
    "lookup": {"key": "service.name", "table": {"checkout": {"team": "payments"}}, "default": {"team": "unknown"}},
}


def test_enrich_upserts_derives_and_looks_up_in_spans_logs_and_metrics(gateway, downstream, plugin_dir, plugin_cache):
    ds = downstream()
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"enrich": processor("enrich", ENRICH)},
        {"traces": ["enrich"], "logs": ["enrich"], "metrics": ["enrich"]},
        ds,
    )

    def build(tracer):
        for name, extra in [
            ("GET user", {"url.path": "/users/42"}),
            ("GET user query", {"url.path": "/users/7/?tab=a"}),
            ("GET order", {"url.path": "/orders/7"}),
            ("GET routed", {"url.path": "/users/9", "http.route": "/custom"}),
            ("no path", {"n": 1}),
        ]:
            with tracer.start_as_current_span(name, kind=SpanKind.SERVER, attributes=extra):
                pass

    checkout = sdk_spans(build, **{"service.name": "checkout", "deployment.environment": "staging"})
    search = sdk_spans(
        lambda t: t.start_span("search", attributes={"url.path": "/users/1"}).end(), **{"service.name": "search"}
    )
    send_spans(gw, checkout + search)

    send_logs(
        gw,
        [{"body": "profile viewed", "severity_number": SeverityNumber.INFO, "attributes": {"url.path": "/users/5"}}],
        **{"service.name": "checkout"},
    )

    def record(meter):
        meter.create_counter("e2e.hits").add(4, {"url.path": "/users/3"})

    send_metrics(gw, record, **{"service.name": "search", "deployment.environment": "dev"})

    got = {s.name: (res, attrs(s.attributes)) for res, s in wait_spans(ds, 6)}
    assert set(got) == {"GET user", "GET user query", "GET order", "GET routed", "no path", "search"}
    routes = {name: a.get("http.route") for name, (_, a) in got.items()}
    assert routes == {
        "GET user": "/users/{id}",
        "GET user query": "/users/{id}",
        "GET order": None,
        "GET routed": "/custom",
        "no path": None,
        "search": "/users/{id}",
    }
    assert got["GET user"][1] == {"url.path": "/users/42", "http.route": "/users/{id}"}
    for name, (res, _) in got.items():
        want_team = "unknown" if name == "search" else "payments"
        assert (res["deployment.environment"], res["team"]) == ("prod", want_team), (name, res)
        # The SDK's own resource attributes are kept.
        assert res["telemetry.sdk.language"] == "python", res

    ((res, log),) = wait_logs(ds, 1)
    assert attrs(log.attributes) == {"url.path": "/users/5", "http.route": "/users/{id}"}
    assert (res["service.name"], res["deployment.environment"], res["team"]) == ("checkout", "prod", "payments")

    wait_until(lambda: got_points(ds, "e2e.hits"), ARRIVAL, "the e2e.hits metric at the downstream")
    ((res, _, dp),) = got_points(ds, "e2e.hits")
    assert attrs(dp.attributes) == {"url.path": "/users/3", "http.route": "/users/{id}"}
    assert dp.as_int == 4
    assert (res["service.name"], res["deployment.environment"], res["team"]) == ("search", "prod", "unknown")


# ----------------------------------------------------------------------------------------- slo

SLO = {
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


def scrape(gw) -> list[tuple[str, dict, float]]:
    r = requests.get(f"http://127.0.0.1:{gw.ports['scrape']}/metrics", timeout=5)
    assert r.status_code == 200, r.text
    return parse_prometheus(r.text)


def sample_values(samples, name: str, **labels: str) -> list[float]:
    return [v for n, l, v in samples if n == name and all(l.get(k) == want for k, want in labels.items())]


def test_slo_counts_good_and_bad_server_spans_and_exposes_burn_rates(gateway, downstream, plugin_dir, plugin_cache):
    ds = downstream()
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"slo": processor("slo", SLO, on_error="pass")},
        {"traces": ["slo"], "metrics": []},
        ds,
        prometheus_port=True,
    )

    def build(tracer):
        for i in range(8):
            ok = {"http.response.status_code": 200}
            with tracer.start_as_current_span(f"POST /pay {i}", kind=SpanKind.SERVER, attributes=ok):
                pass
        with tracer.start_as_current_span("POST /pay failed", kind=SpanKind.SERVER) as sp:
            sp.set_status(Status(StatusCode.ERROR, "card declined"))
        unavailable = {"http.response.status_code": 503}
        with tracer.start_as_current_span("POST /pay 503", kind=SpanKind.SERVER, attributes=unavailable):
            pass
        # Not server spans: not events of this SLO, whatever their status.
        with tracer.start_as_current_span("call bank", kind=SpanKind.CLIENT) as sp:
            sp.set_status(Status(StatusCode.ERROR, "timeout"))

    checkout = sdk_spans(build, **{"service.name": "checkout"})
    other = sdk_spans(
        lambda t: t.start_span(
            "GET /search", kind=SpanKind.SERVER, attributes={"http.response.status_code": 500}
        ).end(),
        **{"service.name": "search"},
    )
    body = send_spans(gw, checkout + other)

    slo = {"slo": "checkout-availability", "service": "checkout"}
    seen: dict[str, Any] = {}

    def counted() -> bool:
        samples = scrape(gw)
        seen["samples"] = [s for s in samples if s[0].startswith("sluice_slo")]
        good = sample_values(samples, "sluice_slo_events_total", outcome="good", **slo)
        bad = sample_values(samples, "sluice_slo_events_total", outcome="bad", **slo)
        return good == [8.0] and bad == [2.0]

    deadline = time.monotonic() + ARRIVAL
    while not counted():
        if time.monotonic() >= deadline:
            pytest.fail(
                "sluice_slo_events_total good 8 / bad 2 not on the scrape endpoint; sluice_slo* samples: "
                f"{seen.get('samples')}\nstderr tail:\n{gw.stderr()[-2000:]}"
            )
        time.sleep(0.1)

    samples = seen["samples"]
    burn = sample_values(samples, "sluice_slo_burn_rate", window="5m", **slo)
    # Error ratio 2/10 over a budget of 1%.
    assert len(burn) == 1 and abs(burn[0] - 20.0) < 1e-6, [s for s in samples if s[0] == "sluice_slo_burn_rate"]
    windows = {l["window"] for n, l, _ in samples if n == "sluice_slo_burn_rate"}
    assert windows == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}, windows
    # Over the 30-day window the budget is spent 20 times over.
    remaining = sample_values(samples, "sluice_slo_error_budget_remaining_ratio", **slo)
    assert len(remaining) == 1 and abs(remaining[0] - (1 - 20.0)) < 1e-6, remaining

    # The spans pass unchanged: the downstream gets the client's bytes.
    (received,) = ds.wait_for("traces", 1, timeout=ARRIVAL)
    assert received.raw == body


# --------------------------------------------------------------------------------------- chain


def test_enrich_redact_sample_chain(gateway, downstream, plugin_dir, plugin_cache):
    """Each plugin sees the output of the one before: `sample` drops a health check by the route
    `enrich` derived, and keeps a span whose name matched its drop rule only before `redact`
    masked the e-mail address in it; `redact` masks what `enrich` added."""
    ds = downstream()
    processors = {
        "enrich": processor(
            "enrich",
            {
                "derive": {"from": "url.path", "to": "http.route", "templates": ["/users/{id}", "/health/{probe}"]},
                "lookup": {
                    "key": "service.name",
                    "table": {"checkout": {"team": "payments", "oncall.contact": "payments-oncall@example.com"}},
                },
                "attributes": [
                    {"action": "upsert", "target": "resource", "key": "deployment.environment", "value": "prod"}
                ],
            },
        ),
        "redact": processor("redact", {}, on_error="reject"),
        "sample": processor(
            "sample",
            {"drop": [{"attributes": {"http.route": "/health/{probe}"}}, {"name": {"regex": "@example\\.com"}}]},
        ),
    }
    gw = start(gateway, plugin_dir, plugin_cache, processors, {"traces": ["enrich", "redact", "sample"]}, ds)

    def build(tracer):
        user = {"url.path": "/users/42", "user.email": "dana@example.com"}
        with tracer.start_as_current_span("GET /users/42", kind=SpanKind.SERVER, attributes=user):
            pass
        probe = {"url.path": "/health/live"}
        with tracer.start_as_current_span("GET /health/live", kind=SpanKind.SERVER, attributes=probe):
            pass
        with tracer.start_as_current_span("notify erin@example.com"):
            pass

    send_spans(gw, sdk_spans(build, **{"service.name": "checkout"}))
    got = wait_spans(ds, 2)
    by_name = {s.name: (res, attrs(s.attributes)) for res, s in got}
    assert set(by_name) == {"GET /users/42", f"notify {MASK}"}, list(by_name)
    res, a = by_name["GET /users/42"]
    assert a == {"url.path": "/users/42", "http.route": "/users/{id}", "user.email": MASK}
    assert (res["team"], res["oncall.contact"], res["deployment.environment"]) == ("payments", MASK, "prod"), res
    # `builtin/NAME` resolved to the plugin directory.
    detailed = {p["name"]: p for p in gw.get("/health/detailed").json()["processors"]}
    for name in processors:
        assert detailed[name]["path"] == str(plugin_dir / f"sluice_plugin_{name}.wasm"), detailed[name]
        assert (detailed[name]["plugin"], detailed[name]["state"]) == (name, "ok"), detailed[name]
    assert gw.metric("sluice_plugin_records_in_total", processor="sample") == 3, processor_stats(gw, "sample")
    assert gw.metric("sluice_plugin_records_out_total", processor="sample") == 2, processor_stats(gw, "sample")


def test_limit_cardinality_normalizes_paths_caps_values_and_counts_overflows(gateway, downstream, plugin_dir, plugin_cache):
    ds = downstream()
    config = {"limits": [{"metric": "*", "key": "user.id", "max_values": 3}]}
    gw = start(
        gateway, plugin_dir, plugin_cache,
        {"limit": processor("limit_cardinality", config)},
        {"metrics": ["limit"]},
        ds=ds,
    )

    def record(meter):
        requests_counter = meter.create_counter("app.requests")
        for i in range(10):
            requests_counter.add(1, {"url.path": f"/users/{1000 + i}/orders", "user.id": f"u{i}"})

    send_metrics(gw, record, **{"service.name": "shop"})
    wait_until(lambda: got_points(ds, "app.requests"), ARRIVAL, "the counter downstream")
    points = got_points(ds, "app.requests")
    paths = {attrs(dp.attributes)["url.path"] for _, _, dp in points}
    assert paths == {"/users/{id}/orders"}
    users = sorted(attrs(dp.attributes)["user.id"] for _, _, dp in points)
    assert users.count("overflow") == 7
    assert len([u for u in users if u != "overflow"]) == 3
    # Every increment is still there: nothing is dropped, only relabelled.
    assert sum(dp.as_int for _, _, dp in points) == 10
    wait_counts(ds, "limit_cardinality.overflows", ("metric", "key"), {("app.requests", "user.id"): 7})


def test_redact_rejects_by_default_what_it_could_not_scrub(gateway, downstream, plugin_dir, plugin_cache):
    """Without `on_error`, a batch the redactor cannot process (here: over its 1 MiB batch
    limit) is refused with a retryable error instead of passing unscrubbed."""
    ds = downstream()
    redact = {"plugin": "builtin/redact", "config": {}, "limits": {"max_batch_mb": 1}}
    gw = start(gateway, plugin_dir, plugin_cache, {"redact": redact}, {"traces": ["redact"]}, ds=ds)
    big = trace_request(*[span(tid(i + 1), bytes([1] * 7 + [i % 250 + 1]), "x" * 2000) for i in range(700)])
    r = gw.post("traces", big.SerializeToString())
    assert r.status_code == 503, r.text
    assert "Retry-After" in r.headers
    time.sleep(SETTLE)
    assert ds.requests("traces") == []


# --------------------------------------------------------------------------------- spanmetrics


def prometheus_scraping(scrape_port: int) -> dict:
    """A Prometheus config scraping the gateway's endpoint every second, keeping the exposed
    `job` and `instance` (`honor_labels`, as recommended for a gateway)."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "sluice",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{scrape_port}"]}],
            }
        ],
    }


def timed_spans(durations_ms: list[int], errors: set[int], name: str, **resource: Any) -> list:
    """Server spans made with the SDK, span i lasting `durations_ms[i]` exactly, with an ERROR
    status for the indices in `errors`."""

    def build(tracer):
        start = time.time_ns() - 60 * 10**9
        for i, ms in enumerate(durations_ms):
            sp = tracer.start_span(name, kind=SpanKind.SERVER, start_time=start,
                                   attributes={"http.route": "/users/{id}", "http.request.method": "GET"})
            if i in errors:
                sp.set_status(Status(StatusCode.ERROR, "boom"))
            sp.end(end_time=start + ms * 10**6)

    return sdk_spans(build, **resource)


def test_spanmetrics_rates_errors_and_quantiles_match_what_was_sent_in_prometheus(
    gateway, downstream, prometheus, plugin_dir, plugin_cache
):
    """Spans of known durations and statuses, sent with the official SDK through two traces
    pipelines that both run the one `spanmetrics` processor, are counted once each; a real
    Prometheus scraping the gateway computes the error ratio and the quantiles of what was sent
    (within the buckets' resolution), and the OpenMetrics scrape carries exemplars that name
    sent spans."""
    ds = downstream()
    config = {"metrics_flush_interval": "1s", "dimensions": [{"name": "http.request.method"}]}
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"spanmetrics": processor("spanmetrics", config, on_error="pass")},
        {"traces": ["spanmetrics"], "traces/copy": ["spanmetrics"], "metrics": []},
        ds,
        prometheus_port=True,
    )
    prom = prometheus(prometheus_scraping(gw.ports["scrape"]))
    durations = [i + 1 for i in range(100)]  # 1 ms .. 100 ms
    errors = set(range(0, 100, 10))  # ten errors
    spans = timed_spans(durations, errors, "GET /users/:id",
                        **{"service.name": "users", "service.instance.id": "users-1"})
    send_spans(gw, spans[:50])
    send_spans(gw, spans[50:])

    calls = 'traces_span_metrics_calls_total{job="users",span_name="GET /users/:id"}'
    prom.wait_query(f"sum({calls})", lambda r: r and r[0][1] == 100.0, timeout=30,
                    what="100 calls counted once (two pipelines)")
    errors_q = f'sum({calls[:-1]},status_code="STATUS_CODE_ERROR"}}) / sum({calls})'
    assert abs(prom.query(errors_q)[0][1] - 0.1) < 1e-9
    labels = prom.query(f'{calls[:-1]},status_code="STATUS_CODE_UNSET"}}')[0][0]
    assert labels["span_kind"] == "SPAN_KIND_SERVER", labels
    assert labels["service_name"] == "users" and labels["instance"] == "users-1", labels
    assert labels["http_request_method"] == "GET", labels

    buckets = 'sum by (le) (traces_span_metrics_duration_seconds_bucket{job="users"})'
    p50 = prom.query(f"histogram_quantile(0.5, {buckets})")[0][1]
    p95 = prom.query(f"histogram_quantile(0.95, {buckets})")[0][1]
    # The true median is 50.5 ms and the 95th percentile 95 ms; the buckets around them are
    # (10 ms, 50 ms] and (50 ms, 100 ms].
    assert 0.01 <= p50 <= 0.1 and abs(p50 - 0.0505) <= 0.04, p50
    assert 0.05 <= p95 <= 0.1 and abs(p95 - 0.095) <= 0.01, p95
    total = prom.query('sum(traces_span_metrics_duration_seconds_sum{job="users"})')[0][1]
    assert abs(total - sum(durations) / 1000) < 1e-6, total

    # Exemplars on the OpenMetrics scrape name spans that were sent.
    sent = {format(sp.context.trace_id, "032x") for sp in spans}
    r = requests.get(f"http://127.0.0.1:{gw.ports['scrape']}/metrics",
                     headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=5)
    assert r.status_code == 200
    exemplar_traces = {
        line.split('trace_id="', 1)[1].split('"', 1)[0]
        for line in r.text.splitlines()
        if line.startswith("traces_span_metrics_duration_seconds_bucket") and 'trace_id="' in line
    }
    assert exemplar_traces and exemplar_traces <= sent, (exemplar_traces, r.text[:2000])
    # The gateway forwarded every span on both pipelines: counting is not filtering.
    ds.wait_records("traces", 200, timeout=ARRIVAL)


def test_spanmetrics_keeps_cardinality_under_its_cap_under_a_flood_of_span_names(
    gateway, downstream, prometheus, plugin_dir, plugin_cache
):
    """A thousand distinct span names against `max_series: 50`: Prometheus sees at most 50
    series plus the overflow series, and the overflow is counted."""
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"spanmetrics": processor("spanmetrics", {"metrics_flush_interval": "1s", "max_series": 50,
                                                   "histogram": {"disable": True}}, on_error="pass")},
        {"traces": ["spanmetrics"], "metrics": []},
        downstream(),
        prometheus_port=True,
    )
    prom = prometheus(prometheus_scraping(gw.ports["scrape"]))

    def build(tracer):
        for i in range(1000):
            tracer.start_span(f"GET /item/{i}", kind=SpanKind.SERVER).end()

    spans = sdk_spans(build, **{"service.name": "flood"})
    for i in range(0, 1000, 250):
        send_spans(gw, spans[i : i + 250])
    prom.wait_query("sum(traces_span_metrics_calls_total)", lambda r: r and r[0][1] == 1000.0, timeout=30,
                    what="1000 calls in all")
    series = prom.query("count(traces_span_metrics_calls_total)")[0][1]
    assert series == 51, series
    overflow = prom.query('sum(traces_span_metrics_calls_total{otel_metric_overflow="true"})')[0][1]
    assert overflow == 950
    assert prom.query("sum(sluice_spanmetrics_overflow_total)")[0][1] == 950
    assert gw.alive()


# -------------------------------------------------------------------------------- servicegraph


def topology_spans(requests_count: int, failures: int) -> dict[str, list]:
    """Spans of a small system made with the SDK, one tracer provider per service: a user calls
    frontend, which calls checkout, which calls payments (the first `failures` calls fail) and
    the `orders` PostgreSQL database. Returns the finished spans by service."""
    providers, memories = {}, {}
    for service in ("frontend", "checkout", "payments"):
        memories[service] = InMemorySpanExporter()
        providers[service] = TracerProvider(resource=Resource.create({"service.name": service}))
        providers[service].add_span_processor(SimpleSpanProcessor(memories[service]))
    tracer = {s: p.get_tracer("e2e.topology", "1.0") for s, p in providers.items()}
    from opentelemetry import trace as trace_api

    for i in range(requests_count):
        with tracer["frontend"].start_as_current_span("GET /cart", kind=SpanKind.SERVER):
            with tracer["frontend"].start_as_current_span("POST checkout", kind=SpanKind.CLIENT) as c1:
                ctx = trace_api.set_span_in_context(c1)
                with tracer["checkout"].start_as_current_span("POST /checkout", kind=SpanKind.SERVER, context=ctx):
                    with tracer["checkout"].start_as_current_span(
                        "INSERT orders", kind=SpanKind.CLIENT,
                        attributes={"db.system": "postgresql", "db.name": "orders"},
                    ):
                        pass
                    with tracer["checkout"].start_as_current_span("POST payments", kind=SpanKind.CLIENT) as c2:
                        ctx2 = trace_api.set_span_in_context(c2)
                        with tracer["payments"].start_as_current_span(
                            "POST /pay", kind=SpanKind.SERVER, context=ctx2
                        ) as s3:
                            if i < failures:
                                s3.set_status(Status(StatusCode.ERROR, "declined"))
    for p in providers.values():
        p.shutdown()
    return {s: list(m.get_finished_spans()) for s, m in memories.items()}


def test_servicegraph_edges_and_counts_match_the_generated_topology_in_prometheus(
    gateway, downstream, prometheus, plugin_dir, plugin_cache
):
    """The official SDK's spans of a known topology, each service's sent separately (halves of
    one request in different batches), give a real Prometheus the edges user -> frontend ->
    checkout -> payments and checkout -> orders (database), with the counts and failures sent."""
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"servicegraph": processor("servicegraph", {"metrics_flush_interval": "1s", "store": {"ttl": "5s"}},
                                   on_error="pass")},
        {"traces": ["servicegraph"], "metrics": []},
        downstream(),
        prometheus_port=True,
    )
    prom = prometheus(prometheus_scraping(gw.ports["scrape"]))
    spans = topology_spans(20, failures=3)
    # The server halves first, then the clients: pairing does not depend on order.
    for service in ("payments", "checkout", "frontend"):
        send_spans(gw, spans[service])

    total = "traces_service_graph_request_total"
    prom.wait_query(f"count({total})", lambda r: r and r[0][1] == 4.0, timeout=30, what="four edges")
    got = {(l["client"], l["server"], l.get("connection_type", "")): v for l, v in prom.query(total)}
    assert got == {
        ("user", "frontend", "virtual_node"): 20.0,
        ("frontend", "checkout", ""): 20.0,
        ("checkout", "payments", ""): 20.0,
        ("checkout", "orders", "database"): 20.0,
    }, got
    failed = {(l["client"], l["server"]): v for l, v in prom.query("traces_service_graph_request_failed_total")}
    assert failed[("checkout", "payments")] == 3.0 and failed[("frontend", "checkout")] == 0.0, failed
    count = prom.query('traces_service_graph_request_server_seconds_count{client="checkout",server="payments"}')
    assert count and count[0][1] == 20.0, count
    assert prom.query("sum(traces_service_graph_unpaired_spans_total)")[0][1] == 0.0


def test_spanmetrics_counts_survive_a_plugin_reload(gateway, downstream, plugin_dir, plugin_cache):
    """The counts go on from where they were after `POST /api/v1/plugins/NAME/reload`: the
    gateway hands the old instance's snapshot to the new one."""
    gw = start(
        gateway,
        plugin_dir,
        plugin_cache,
        {"spanmetrics": processor("spanmetrics", {"metrics_flush_interval": "1s"}, on_error="pass")},
        {"traces": ["spanmetrics"], "metrics": []},
        downstream(),
        prometheus_port=True,
    )

    def calls() -> list[float]:
        return sample_values(scrape(gw), "traces_span_metrics_calls_total", span_name="GET /reload")

    def build(tracer):
        for _ in range(10):
            tracer.start_span("GET /reload", kind=SpanKind.SERVER).end()

    send_spans(gw, sdk_spans(build, **{"service.name": "reloaded"}))
    wait_until(lambda: calls() == [10.0], ARRIVAL, "10 calls before the reload")
    r = requests.post(f"{gw.admin_url}/api/v1/plugins/spanmetrics/reload",
                      headers={"X-Sluice-Request": "1"}, timeout=60)
    assert r.status_code == 200, r.text
    send_spans(gw, sdk_spans(build, **{"service.name": "reloaded"}))
    wait_until(lambda: calls() == [20.0], ARRIVAL, "20 calls after the reload, not 10")
