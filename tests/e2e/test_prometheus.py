"""Sluice and a real Prometheus: the `prometheus` scrape endpoint scraped by Prometheus and
checked by `promtool`, the `prometheus_remote_write` exporter writing into Prometheus's
remote-write receiver, and the `prometheus_remote_write` receiver fed by Prometheus's own
`remote_write`. The metrics come from the official OpenTelemetry Python SDK. Remote-write
requests of our own are encoded here, so that no extra package is needed: the protobuf by hand,
snappy as blocks of literals (valid for every decoder, just not smaller), and a decompression
bomb made of copies.

Prometheus applies discovered targets about five seconds after it starts, so a test that needs
Prometheus to scrape starts it first and does its other work meanwhile.
"""

from __future__ import annotations

import struct
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from support.config import gateway_config, otlp_receiver, pipeline
from support.exposition import parse_prometheus
from support.polling import wait_until
from support.ports import free_port
from support.prometheus import prometheus_tool

# Prometheus takes ~5 s to apply its first targets; first results are awaited this long.
FIRST_SCRAPE_TIMEOUT = 25.0
# Later changes need one or two scrapes (every second).
SCRAPE_TIMEOUT = 10.0

SHOP = {
    "service.namespace": "shop",
    "service.name": "checkout",
    "deployment.environment": "prod",
}

# The histogram's bounds and what is recorded into it: cumulative buckets 0.1:1, 0.5:2, 1:4,
# 2.5:5, +Inf:5; sum 3.65; median 0.5 + (2.5 - 2) / (4 - 2) * 0.5 = 0.625.
BOUNDS = [0.1, 0.5, 1.0, 2.5]
DURATIONS = [0.05, 0.2, 0.7, 0.7, 2.0]


# ------------------------------------------------------------------ remote-write encoding


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 in two's complement, as protobuf encodes negative varints
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(number: int, data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _double_field(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<d", value)


COUNTER, GAUGE = 1, 2  # prometheus.MetricMetadata.MetricType


def write_request(series, metadata=()) -> bytes:
    """A `prometheus.WriteRequest`: `series` is [(labels dict, [(value, timestamp ms), ...])],
    `metadata` is [(type, family name, help, unit)]."""
    out = bytearray()
    for labels, samples in series:
        ts = bytearray()
        for name, value in labels.items():
            ts += _len_field(1, _len_field(1, name) + _len_field(2, value))
        for value, timestamp in samples:
            ts += _len_field(2, _double_field(1, value) + _varint_field(2, timestamp))
        out += _len_field(1, bytes(ts))
    for kind, family, help_text, unit in metadata:
        md = _varint_field(1, kind) + _len_field(2, family)
        if help_text:
            md += _len_field(4, help_text)
        if unit:
            md += _len_field(5, unit)
        out += _len_field(3, md)
    return bytes(out)


def snappy_block(data: bytes) -> bytes:
    """A valid snappy block of `data` made of literals only (no compression): the uncompressed
    length as a varint, then literal elements of at most 64 KiB (tag 61: 2-byte length - 1)."""
    out = bytearray(_varint(len(data)))
    for i in range(0, len(data), 1 << 16):
        chunk = data[i : i + (1 << 16)]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        else:
            out.append(61 << 2)
            out += struct.pack("<H", n)
        out += chunk
    return bytes(out)


def snappy_run(n: int) -> bytes:
    """A valid snappy block that decodes to `n` zero bytes from ~n/21 bytes: a one-byte
    literal, then copies of 64 bytes at offset 1 (tag 2, 2-byte offset)."""
    full, rest = divmod(n - 1, 64)
    out = _varint(n) + b"\x00\x00" + bytes([63 << 2 | 2, 1, 0]) * full
    if rest:
        out += bytes([(rest - 1) << 2 | 2, 1, 0])
    return out


def now_ms() -> int:
    return int(time.time() * 1000)


def remote_write(gw, body: bytes, content_type="application/x-protobuf", encoding: str | None = "snappy"):
    headers = {"Content-Type": content_type, "X-Prometheus-Remote-Write-Version": "0.1.0"}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    return requests.post(f"{gw.http_url}/api/v1/write", data=body, headers=headers, timeout=10)


# ----------------------------------------------------------------------------- gateway


def sluice_config(prometheus=None, remote_write_exporter=None, max_decoded_size_mib=32):
    """A config callable for the `gateway` fixture: OTLP (gRPC and HTTP) and remote-write in,
    a `prometheus` scrape endpoint (on `ports["scrape"]`, unless `prometheus=False`) and,
    optionally, a `prometheus_remote_write` exporter out."""

    def make(ports):
        ports["scrape"] = free_port()
        exporters = {}
        if prometheus is not False:
            exporters["prometheus"] = {
                "endpoint": f"127.0.0.1:{ports['scrape']}",
                "translation_strategy": "UnderscoreEscapingWithSuffixes",
                "metric_expiration": "5m",
                "max_series": 200000,
                "promote_resource_attributes": [],
                "target_info": True,
                **(prometheus or {}),
            }
        if remote_write_exporter is not None:
            exporters["prometheus_remote_write"] = {
                "headers": {"X-Scope-OrgID": "team-a"},
                "max_samples_per_send": 2000,
                "shards": 4,
                "retry_on_failure": {"initial_interval": "200ms", "max_elapsed_time": "10s"},
                **remote_write_exporter,
            }
        return gateway_config(
            ports,
            exporters,
            receivers={
                "otlp": otlp_receiver(ports),
                "prometheus_remote_write": {"max_decoded_size_mib": max_decoded_size_mib},
            },
            pipelines={"metrics": pipeline(exporters, receivers=["otlp", "prometheus_remote_write"])},
            shutdown_timeout="10s",
        )

    return make


def scrape(gw, openmetrics: bool = False) -> requests.Response:
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics else {}
    r = requests.get(f"http://127.0.0.1:{gw.ports['scrape']}/metrics", headers=headers, timeout=5)
    assert r.status_code == 200, r.text
    return r


def scraped(gw):
    """The samples of the text exposition: [(name, labels, value)]."""
    return parse_prometheus(scrape(gw).text)


def wait_scrape(gw, *names: str, openmetrics: bool = False, timeout: float = SCRAPE_TIMEOUT):
    """Scrapes until every one of `names` (sample names) is served: the gateway answers the
    SDK once the data is queued, and stores it a moment later."""

    def complete():
        r = scrape(gw, openmetrics)
        without_exemplars = "\n".join(split_exemplar(line)[0] for line in r.text.splitlines())
        served = {n for n, _, _ in parse_prometheus(without_exemplars)}
        return r if set(names) <= served else None

    return wait_until(complete, timeout, f"{', '.join(names)} on the scrape endpoint", 0.05)


def series_of(samples, name: str, **labels):
    return [(l, v) for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]


def types_of(text: str) -> dict[str, str]:
    """`# TYPE` lines: family name -> type."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            out[family] = kind
    return out


def split_exemplar(line: str) -> tuple[str, dict[str, str] | None, float | None]:
    """An OpenMetrics sample line -> (sample part, exemplar labels, exemplar value)."""
    if " # {" not in line:
        return line, None, None
    sample, exemplar = line.split(" # {", 1)
    labels_text, rest = exemplar.split("} ", 1)
    labels = dict(pair.split("=", 1) for pair in labels_text.split(",")) if labels_text else {}
    return sample, {k: v.strip('"') for k, v in labels.items()}, float(rest.split()[0])


# ----------------------------------------------------------------------------- the SDK


@contextmanager
def sdk_meters(gw, transport: str, resource: dict, temporality=None, exemplar_filter=None, views=()):
    """A MeterProvider exporting to the gateway over `transport` ("grpc" or "http") only when
    flushed. Yields (provider, exporter); the exporter records every export's data and result."""
    kw = {"timeout": 10}
    if temporality:
        kw["preferred_temporality"] = temporality
    if transport == "grpc":
        cls = GrpcMetricExporter
        kw.update(endpoint=gw.grpc_target, insecure=True)
    else:
        cls = HttpMetricExporter
        kw.update(endpoint=f"{gw.http_url}/v1/metrics")

    class Recording(cls):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.exports = []

        def export(self, metrics_data, *args, **kwargs):
            result = super().export(metrics_data, *args, **kwargs)
            self.exports.append((metrics_data, result))
            return result

    exporter = Recording(**kw)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    extra = {"exemplar_filter": exemplar_filter} if exemplar_filter else {}
    provider = MeterProvider(resource=Resource.create(resource), metric_readers=[reader], views=views, **extra)
    try:
        yield provider, exporter
    finally:
        provider.shutdown()


def flush(provider, exporter) -> None:
    assert provider.force_flush(15_000), "force_flush did not complete"
    assert exporter.exports, "the SDK exported nothing"
    results = [r for _, r in exporter.exports]
    assert all(r == MetricExportResult.SUCCESS for r in results), results


def record_shop_metrics(provider, orders: dict[str, int], memory: list[int], utilization: float):
    """The instruments of a checkout service: a counter, a histogram, an up-down counter and
    an observable gauge. Returns the counter."""
    meter = provider.get_meter("shop.orders", "1.4.0")
    counter = meter.create_counter("orders", unit="{order}", description="Orders placed")
    for route, n in orders.items():
        counter.add(n, {"http.route": route})
    histogram = meter.create_histogram(
        "http.server.request.duration",
        unit="s",
        description="Duration of HTTP server requests",
        explicit_bucket_boundaries_advisory=BOUNDS,
    )
    for v in DURATIONS:
        histogram.record(v, {"http.route": "/cart"})
    inflight = meter.create_up_down_counter("inflight.memory", unit="By", description="Memory in use")
    for delta in memory:
        inflight.add(delta)
    meter.create_observable_gauge(
        "cpu.utilization",
        callbacks=[lambda _options: [Observation(utilization)]],
        unit="1",
        description="CPU in use",
    )
    return counter


# ---------------------------------------------------------------------------- Prometheus


def scrape_sluice(*ports: int, **extra) -> dict:
    """A Prometheus config scraping Sluice's endpoints every second, keeping the exposed `job`
    and `instance` labels (`honor_labels`), as recommended for a gateway."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "sluice",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}],
            }
        ],
        **extra,
    }


def single(result) -> float:
    assert len(result) == 1, result
    return result[0][1]


def equals(expected: float, tolerance: float = 1e-9):
    return lambda result: len(result) == 1 and abs(result[0][1] - expected) <= tolerance


def promtool_check_metrics(body: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [prometheus_tool("promtool"), "check", "metrics"],
        input=body,
        capture_output=True,
        text=True,
        timeout=30,
    )


# ============================================== (a) Prometheus scrapes SDK metrics from Sluice


def test_prometheus_scrapes_sdk_metrics_sent_over_grpc_and_http(gateway, prometheus):
    # Prometheus asks for OpenMetrics first: this is its parser reading that exposition.
    gw = gateway(config=sluice_config())
    prom = prometheus(scrape_sluice(gw.ports["scrape"]))

    # One process per transport, told apart by service.instance.id.
    sent = {
        "grpc": {"orders": {"/cart": 3, "/checkout": 4}, "memory": [100, -30], "cpu": 0.75},
        "http": {"orders": {"/cart": 5}, "memory": [10], "cpu": 0.25},
    }
    for transport, s in sent.items():
        resource = {**SHOP, "service.instance.id": f"pod-{transport}"}
        with sdk_meters(gw, transport, resource) as (provider, exporter):
            record_shop_metrics(provider, s["orders"], s["memory"], s["cpu"])
            flush(provider, exporter)

    job = 'job="shop/checkout"'
    prom.wait_query(f"sum(orders_total{{{job}}})", equals(12), FIRST_SCRAPE_TIMEOUT)

    # Counter: `_total`, `http.route` -> `http_route`, scope labels, job and instance.
    by_route = prom.query(f"sum by (http_route) (orders_total{{{job}}})")
    assert {l["http_route"]: v for l, v in by_route} == {"/cart": 8, "/checkout": 4}
    series = prom.query(f'orders_total{{{job},instance="pod-grpc",http_route="/checkout"}}')
    assert len(series) == 1, series
    labels, value = series[0]
    assert value == 4
    assert labels == {
        "__name__": "orders_total",
        "job": "shop/checkout",
        "instance": "pod-grpc",
        "http_route": "/checkout",
        "otel_scope_name": "shop.orders",
        "otel_scope_version": "1.4.0",
    }

    # Histogram: `_seconds` suffix, classic buckets usable by histogram_quantile.
    assert single(prom.query(f"sum(http_server_request_duration_seconds_count{{{job}}})")) == 10
    assert single(prom.query(f"sum(http_server_request_duration_seconds_sum{{{job}}})")) == pytest.approx(7.3)
    buckets = prom.query(f'http_server_request_duration_seconds_bucket{{{job},instance="pod-http"}}')
    assert {l["le"]: v for l, v in buckets} == {"0.1": 1, "0.5": 2, "1": 4, "2.5": 5, "+Inf": 5}
    median = prom.query(
        f"histogram_quantile(0.5, sum by (le) (http_server_request_duration_seconds_bucket{{{job}}}))"
    )
    assert single(median) == pytest.approx(0.625)

    # Up-down counter (non-monotonic sum) -> gauge with `_bytes`; gauge of unit 1 -> `_ratio`.
    memory = prom.query(f"inflight_memory_bytes{{{job}}}")
    assert {l["instance"]: v for l, v in memory} == {"pod-grpc": 70, "pod-http": 10}
    cpu = prom.query(f"cpu_utilization_ratio{{{job}}}")
    assert {l["instance"]: v for l, v in cpu} == {"pod-grpc": 0.75, "pod-http": 0.25}

    # The other resource attributes are on target_info, not on the series.
    info = prom.query(f"target_info{{{job}}}")
    assert sorted(l["instance"] for l, _ in info) == ["pod-grpc", "pod-http"], info
    for labels, value in info:
        assert value == 1
        assert labels["deployment_environment"] == "prod"
        assert labels["telemetry_sdk_language"] == "python"
    assert not prom.query('{deployment_environment="prod", __name__!="target_info"}')

    # The types Prometheus learned from the exposition.
    metadata = prom.api("/api/v1/metadata")
    kinds = {name: entries[0]["type"] for name, entries in metadata.items()}
    assert kinds.get("inflight_memory_bytes") == "gauge", metadata
    assert kinds.get("cpu_utilization_ratio") == "gauge", metadata
    assert kinds.get("http_server_request_duration_seconds") == "histogram", metadata
    # Prometheus keys a counter by its family name: `orders` in OpenMetrics, `orders_total` in text.
    assert "counter" in (kinds.get("orders"), kinds.get("orders_total")), metadata

    # Nothing Prometheus scraped was refused: the target is healthy.
    assert single(prom.query('up{job="sluice"}')) == 1


def test_delta_counter_is_a_growing_cumulative_counter_in_prometheus(gateway, prometheus):
    gw = gateway(config=sluice_config())
    prom = prometheus(scrape_sluice(gw.ports["scrape"]))
    delta = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
    resource = {"service.name": "worker", "service.instance.id": "w-1"}
    selector = 'jobs_processed_total{job="worker",instance="w-1",queue="q1"}'
    hist_count = 'job_duration_seconds_count{job="worker",instance="w-1"}'
    with sdk_meters(gw, "http", resource, temporality=delta) as (provider, exporter):
        meter = provider.get_meter("worker")
        jobs = meter.create_counter("jobs.processed", description="Jobs processed")
        duration = meter.create_histogram("job.duration", unit="s", explicit_bucket_boundaries_advisory=BOUNDS)
        total = 0
        for i, n in enumerate([5, 7, 3]):
            jobs.add(n, {"queue": "q1"})
            duration.record(0.3)
            total += n
            flush(provider, exporter)
            timeout = FIRST_SCRAPE_TIMEOUT if i == 0 else SCRAPE_TIMEOUT
            prom.wait_query(selector, equals(total), timeout, f"{selector} == {total}")
            prom.wait_query(hist_count, equals(i + 1), SCRAPE_TIMEOUT)

    # The SDK did send deltas: each export carried only what was added since the last one.
    sent = []
    for data, _ in exporter.exports:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == "jobs.processed":
                        assert m.data.aggregation_temporality == AggregationTemporality.DELTA
                        sent += [p.value for p in m.data.data_points]
    assert sent == [5, 7, 3]

    # Every sample Prometheus scraped is a running total: monotonic, no reset, ending at 15.
    ((labels, samples),) = prom.query_range_samples(selector, "1m")
    values = [v for _, v in samples]
    assert values == sorted(values) and values[-1] == 15, values
    assert {5, 12, 15} <= set(values), values
    assert single(prom.query(f"resets({selector}[1m])")) == 0
    bucket = prom.query('job_duration_seconds_bucket{job="worker",le="0.5"}')
    assert single(bucket) == 3


# ======================================================== (b) promtool on the text exposition


PAYLOAD_SIZES = [0, 0.5, 1, 3, 100, 1000, 1000, 50000]


def test_promtool_check_metrics_accepts_the_text_exposition(gateway):
    prometheus_tool("promtool")  # fail early when it is missing
    gw = gateway(config=sluice_config())
    # payload.size is an exponential histogram; the scrape endpoint serves classic buckets.
    exponential = View(
        instrument_name="payload.size", aggregation=ExponentialBucketHistogramAggregation(max_size=20)
    )
    resource = {**SHOP, "service.instance.id": "pod-1"}
    with sdk_meters(gw, "grpc", resource, views=[exponential]) as (provider, exporter):
        record_shop_metrics(provider, {"/cart": 2, "/pay": 1}, [64, -16], 0.5)
        meter = provider.get_meter("shop.orders", "1.4.0")
        meter.create_counter("distance.travelled", unit="m", description="Distance").add(12.5)
        meter.create_gauge("vehicle.speed", unit="m/s", description="Speed").set(3.5, {"lane": "a b\"c"})
        sizes = provider.get_meter("shop.payloads").create_histogram(
            "payload.size", unit="By", description="Sizes"
        )
        for v in PAYLOAD_SIZES:
            sizes.record(v)
        flush(provider, exporter)

    expected = {
        "target_info",
        "orders_total",
        "http_server_request_duration_seconds_bucket",
        "inflight_memory_bytes",
        "cpu_utilization_ratio",
        "distance_travelled_meters_total",
        "vehicle_speed_meters_per_second",
        "payload_size_bytes_bucket",
    }
    body = wait_scrape(gw, *expected).text
    assert types_of(body)["payload_size_bytes"] == "histogram"

    # The exponential histogram as classic buckets: cumulative, ending in +Inf = count.
    samples = parse_prometheus(body)
    buckets = [(float(l["le"]), v) for l, v in series_of(samples, "payload_size_bytes_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == (float("inf"), len(PAYLOAD_SIZES)), buckets
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), buckets
    le = dict(buckets)
    for bound in (0.5, 1, 1024, 65536):  # powers of two: bounds at every scale <= 0
        assert le[bound] == sum(1 for v in PAYLOAD_SIZES if v <= bound), (bound, buckets)
    assert series_of(samples, "payload_size_bytes_count")[0][1] == len(PAYLOAD_SIZES)
    assert series_of(samples, "payload_size_bytes_sum")[0][1] == sum(PAYLOAD_SIZES)
    result = promtool_check_metrics(body)
    print(f"promtool check metrics (text): exit {result.returncode}\n{result.stdout}{result.stderr}")
    assert result.returncode == 0, (
        f"promtool check metrics exited {result.returncode}:\n{result.stdout}{result.stderr}\n"
        f"--- exposition ---\n{body}"
    )


# ============================================= (c) Prometheus remote-writes into Sluice


def test_prometheus_remote_write_into_sluice_keeps_names(gateway, prometheus):
    gw = gateway(config=sluice_config())

    def config(port):
        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            ],
            "remote_write": [
                {
                    "url": f"{gw.http_url}/api/v1/write",
                    "queue_config": {"batch_send_deadline": "1s", "min_backoff": "100ms"},
                    "metadata_config": {"send": True, "send_interval": "1s"},
                }
            ],
        }

    # A short flush deadline: on SIGTERM Prometheus otherwise keeps trying to deliver for 1 min.
    prom = prometheus(config, flags=["--storage.remote.flush-deadline=1s"])
    instance = f"127.0.0.1:{prom.port}"

    def arrived():
        samples = scraped(gw)
        need = ("prometheus_build_info", "up", "prometheus_http_requests_total")
        return samples if all(series_of(samples, n, job="prometheus") for n in need) else None

    samples = wait_until(arrived, FIRST_SCRAPE_TIMEOUT, "Prometheus's own metrics on the scrape endpoint", 0.2)
    body = scrape(gw).text
    kinds = types_of(body)

    # Same names, same job and instance; counters stay counters (`*_total`), the rest gauges.
    ((up_labels, up),) = series_of(samples, "up", job="prometheus")
    assert up == 1 and up_labels["instance"] == instance, up_labels
    assert kinds["up"] == "gauge"

    ((build_labels, build),) = series_of(samples, "prometheus_build_info", job="prometheus")
    assert build == 1
    ((own_build, _),) = prom.query("prometheus_build_info")
    for key in ("version", "revision", "goversion", "branch", "instance", "job"):
        assert build_labels.get(key) == own_build[key], (build_labels, own_build)

    assert kinds["prometheus_http_requests_total"] == "counter", kinds.get("prometheus_http_requests_total")
    ready = series_of(
        samples, "prometheus_http_requests_total", job="prometheus", handler="/-/ready", code="200"
    )
    assert len(ready) == 1 and ready[0][1] >= 1, ready
    assert ready[0][0]["instance"] == instance
    own_ready = prom.query('prometheus_http_requests_total{handler="/-/ready",code="200"}')
    assert 1 <= ready[0][1] <= single(own_ready), (ready, own_ready)

    # A histogram's series arrive as gauges under their own names.
    buckets = series_of(samples, "prometheus_http_request_duration_seconds_bucket", job="prometheus")
    assert buckets and all("le" in l for l, _ in buckets)
    assert kinds.get("prometheus_http_request_duration_seconds_bucket") == "gauge"

    # Every request was accepted, and Prometheus reports no failed sample or metadata sends.
    def accepted():
        codes = {
            l.get("status"): v
            for n, l, v in gw.metrics()
            if n == "sluice_receiver_requests_total" and l.get("receiver") == "prometheus_remote_write"
        }
        return codes if codes.get("204", 0) >= 1 else None

    codes = wait_until(accepted, SCRAPE_TIMEOUT, "204 answers counted by the remote-write receiver")
    assert set(codes) == {"204"}, codes
    assert gw.metric("sluice_receiver_bad_requests_total") == 0
    for failed in (
        "prometheus_remote_storage_samples_failed_total",
        "prometheus_remote_storage_metadata_failed_total",
    ):
        assert sum(v for _, v in prom.query(failed)) == 0, failed


# ====================================== (d) Sluice's remote_write exporter into Prometheus


def test_remote_write_exporter_writes_sdk_metrics_into_prometheus(gateway, prometheus):
    prom = prometheus(
        {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}},
        flags=["--web.enable-remote-write-receiver"],
    )
    # Few samples per request: the batch is split over several requests per shard.
    gw = gateway(
        config=sluice_config(
            prometheus=False,
            remote_write_exporter={"endpoint": f"{prom.url}/api/v1/write", "max_samples_per_send": 3},
        )
    )
    resource = {**SHOP, "service.instance.id": "pod-7"}
    job = 'job="shop/checkout",instance="pod-7"'
    with sdk_meters(gw, "grpc", resource) as (provider, exporter):
        orders = record_shop_metrics(provider, {"/cart": 3, "/checkout": 4}, [100, -30], 0.75)
        flush(provider, exporter)

        prom.wait_query(f'orders_total{{{job},http_route="/cart"}}', equals(3), SCRAPE_TIMEOUT)
        ((labels, value),) = prom.query(f'orders_total{{{job},http_route="/checkout"}}')
        assert value == 4
        assert labels == {
            "__name__": "orders_total",
            "job": "shop/checkout",
            "instance": "pod-7",
            "http_route": "/checkout",
            "otel_scope_name": "shop.orders",
            "otel_scope_version": "1.4.0",
        }
        prom.wait_query(f"http_server_request_duration_seconds_count{{{job}}}", equals(5), SCRAPE_TIMEOUT)
        buckets = prom.query(f"http_server_request_duration_seconds_bucket{{{job}}}")
        assert {l["le"]: v for l, v in buckets} == {"0.1": 1, "0.5": 2, "1": 4, "2.5": 5, "+Inf": 5}
        assert single(prom.query(f"http_server_request_duration_seconds_sum{{{job}}}")) == pytest.approx(3.65)
        median = prom.query(f"histogram_quantile(0.5, http_server_request_duration_seconds_bucket{{{job}}})")
        assert single(median) == pytest.approx(0.625)
        assert single(prom.query(f"inflight_memory_bytes{{{job}}}")) == 70
        assert single(prom.query(f"cpu_utilization_ratio{{{job}}}")) == 0.75

        # More data: the newest sample is the new cumulative value.
        orders.add(10, {"http.route": "/cart"})
        flush(provider, exporter)
        prom.wait_query(f'orders_total{{{job},http_route="/cart"}}', equals(13), SCRAPE_TIMEOUT)

    assert gw.metric("sluice_exporter_sent_records_total", exporter="prometheus_remote_write") > 0
    assert gw.metric("sluice_exporter_send_failures_total", exporter="prometheus_remote_write") == 0
    assert gw.metric("sluice_dropped_records_total", component="exporter/prometheus_remote_write") == 0


def test_remote_write_exporter_retries_until_prometheus_is_up(gateway, prometheus):
    port = free_port()  # where Prometheus will listen; nothing does yet
    window = 10.0  # retry_on_failure.max_elapsed_time
    gw = gateway(
        config=sluice_config(
            prometheus=False,
            remote_write_exporter={
                "endpoint": f"http://127.0.0.1:{port}/api/v1/write",
                "retry_on_failure": {"initial_interval": "200ms", "max_elapsed_time": f"{window:g}s"},
            },
        )
    )
    with sdk_meters(gw, "http", {"service.name": "late", "service.instance.id": "l-1"}) as (provider, exporter):
        provider.get_meter("late").create_counter("retried", description="Sent early").add(42, {"try": "1"})
        flush(provider, exporter)
        sent_at = time.monotonic()

    gw.wait_metric(
        "sluice_exporter_send_failures_total", 2, exporter="prometheus_remote_write", retryable="true"
    )
    assert gw.metric("sluice_exporter_sent_records_total", exporter="prometheus_remote_write") == 0

    prom = prometheus(
        {"global": {"scrape_interval": "1s"}}, flags=["--web.enable-remote-write-receiver"], port=port
    )
    up_after = time.monotonic() - sent_at
    assert up_after < window - 2, f"Prometheus took {up_after:.1f}s to start; the retry window is {window}s"

    prom.wait_query('retried_total{job="late",instance="l-1",try="1"}', equals(42), window)
    assert gw.wait_metric("sluice_exporter_sent_records_total", 1, exporter="prometheus_remote_write") >= 1
    assert gw.metric("sluice_dropped_records_total", component="exporter/prometheus_remote_write") == 0


class RemoteWriteSink:
    """A remote-write endpoint that records each request's headers and body and answers 204."""

    def __init__(self):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/write"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_remote_write_exporter_sends_the_protocol_headers_and_configured_headers(gateway):
    sink = RemoteWriteSink()
    try:
        gw = gateway(config=sluice_config(prometheus=False, remote_write_exporter={"endpoint": sink.url}))
        with sdk_meters(gw, "grpc", {"service.name": "h"}) as (provider, exporter):
            provider.get_meter("h").create_counter("sent").add(1)
            flush(provider, exporter)
        wait_until(lambda: sink.requests, SCRAPE_TIMEOUT, "a remote-write request at the sink")
        for headers, body in sink.requests:
            assert headers.get("content-type") == "application/x-protobuf", headers
            assert headers.get("content-encoding") == "snappy", headers
            assert headers.get("x-prometheus-remote-write-version") == "0.1.0", headers
            assert headers.get("x-scope-orgid") == "team-a", headers
            assert headers.get("user-agent", "").startswith("sluice/"), headers
            assert body, "an empty request"
    finally:
        sink.stop()


# ============================================================ (e) OpenMetrics and exemplars


def test_openmetrics_negotiation_with_exemplars_from_the_sdk(gateway, prometheus):
    gw = gateway(config=sluice_config())
    prom = prometheus(scrape_sluice(gw.ports["scrape"]), flags=["--enable-feature=exemplar-storage"])

    tracer = TracerProvider().get_tracer("shop")
    resource = {**SHOP, "service.instance.id": "pod-1"}
    with sdk_meters(gw, "grpc", resource, exemplar_filter=TraceBasedExemplarFilter()) as (provider, exporter):
        meter = provider.get_meter("shop.orders", "1.4.0")
        orders = meter.create_counter("orders", unit="{order}", description="Orders placed")
        latency = meter.create_histogram(
            "http.server.request.duration", unit="s", explicit_bucket_boundaries_advisory=BOUNDS
        )
        with tracer.start_as_current_span("checkout") as span:
            orders.add(3, {"http.route": "/cart"})
            latency.record(0.2, {"http.route": "/cart"})
            ctx = span.get_span_context()
        assert ctx.trace_flags.sampled
        trace_id, span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
        orders.add(2, {"http.route": "/pay"})  # outside any span: no exemplar
        flush(provider, exporter)

    r = wait_scrape(gw, "orders_total", "http_server_request_duration_seconds_bucket", openmetrics=True)
    om = r.text
    assert r.headers["Content-Type"].startswith("application/openmetrics-text"), r.headers
    assert om.endswith("# EOF\n"), om[-200:]
    assert om.count("# EOF") == 1
    kinds = types_of(om)
    assert kinds.get("orders") == "counter", kinds
    assert kinds.get("target") == "info", kinds
    counters = {f for f, k in kinds.items() if k == "counter"}
    lines = [l for l in om.splitlines() if l and not l.startswith("#")]
    for line in lines:
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in counters or name.removesuffix("_total") in counters:
            assert name.endswith("_total"), line

    exemplars = {}
    for line in lines:
        sample, labels, value = split_exemplar(line)
        if labels is not None:
            exemplars[sample.rsplit(" ", 1)[0]] = (labels, value)
    cart = [k for k in exemplars if k.startswith("orders_total{") and 'http_route="/cart"' in k]
    assert len(cart) == 1, om
    assert exemplars[cart[0]] == ({"trace_id": trace_id, "span_id": span_id}, 3.0), om
    assert not [k for k in exemplars if 'http_route="/pay"' in k], om
    bucket = [
        k for k in exemplars if k.startswith("http_server_request_duration_seconds_bucket{") and 'le="0.5"' in k
    ]
    assert len(bucket) == 1, om
    assert exemplars[bucket[0]] == ({"trace_id": trace_id, "span_id": span_id}, 0.2), om

    # Without the Accept header: the text format, no exemplars, no `# EOF`.
    text = scrape(gw).text
    assert "# EOF" not in text and " # {" not in text
    assert "# TYPE orders_total counter" in text

    # promtool parses the text format only; what it says of OpenMetrics is reported, not judged.
    result = promtool_check_metrics(om)
    print(f"promtool check metrics (OpenMetrics): exit {result.returncode}\n{result.stdout}{result.stderr}")

    # A real Prometheus (which asks for OpenMetrics) parses and stores the exemplars.
    def stored():
        start, end = time.time() - 300, time.time() + 60
        data = prom.api(
            "/api/v1/query_exemplars", query='orders_total{job="shop/checkout"}', start=start, end=end
        )
        return data or None

    data = wait_until(stored, FIRST_SCRAPE_TIMEOUT, "exemplars of orders_total in Prometheus", 0.2)
    found = [(s["seriesLabels"], e) for s in data for e in s["exemplars"]]
    assert len(found) == 1, found
    series_labels, exemplar = found[0]
    assert series_labels["http_route"] == "/cart"
    assert exemplar["labels"] == {"trace_id": trace_id, "span_id": span_id}
    assert float(exemplar["value"]) == 3


# ====================================================== (f) remote-write receiver bad input


def good_write(marker: str) -> bytes:
    t = now_ms()
    return write_request(
        [
            ({"__name__": "after_bad_total", "job": "a/b", "instance": "host:9100", "case": marker}, [(7, t)]),
        ]
    )


BAD_WRITES = {
    # id: (body, content type, content encoding, status, reason)
    "corrupt_snappy": (
        lambda: snappy_block(good_write("x"))[:-5],
        "application/x-protobuf",
        "snappy",
        400,
        "corrupt_encoding",
    ),
    "snappy_header_over_limit": (
        # The header claims 64 MiB (limit 32 MiB); the body itself is a few bytes.
        lambda: _varint(64 << 20) + b"\x00" * 16,
        "application/x-protobuf",
        "snappy",
        413,
        "too_large",
    ),
    "snappy_bomb_over_limit": (
        # A valid block of 33 MiB of zeros (not a WriteRequest) in 1.6 MB: refused for its size,
        # not decompressed and found malformed.
        lambda: snappy_run(33 << 20),
        "application/x-protobuf",
        "snappy",
        413,
        "too_large",
    ),
    "zeros_under_limit": (
        # The same kind of block under the limit is decompressed, and is no WriteRequest.
        lambda: snappy_run(1 << 20),
        "application/x-protobuf",
        "snappy",
        400,
        "malformed",
    ),
    "protobuf_garbage": (
        lambda: snappy_block(b"\xff\xff\xff\xff this is not a WriteRequest"),
        "application/x-protobuf",
        "snappy",
        400,
        "malformed",
    ),
    "samples_out_of_order": (
        lambda: snappy_block(
            write_request(
                [
                    ({"__name__": "fine_total", "job": "a/b"}, [(1, now_ms() - 1000)]),
                    ({"__name__": "unordered", "job": "a/b"}, [(1, now_ms()), (2, now_ms() - 5000)]),
                ]
            )
        ),
        "application/x-protobuf",
        "snappy",
        400,
        "malformed",
    ),
    "series_without_name": (
        lambda: snappy_block(write_request([({"job": "a/b"}, [(1, now_ms())])])),
        "application/x-protobuf",
        "snappy",
        400,
        "malformed",
    ),
    "wrong_content_type": (
        lambda: snappy_block(good_write("x")),
        "application/json",
        "snappy",
        415,
        "unsupported_media_type",
    ),
    "missing_snappy_encoding": (
        lambda: good_write("x"),
        "application/x-protobuf",
        None,
        415,
        "unsupported_encoding",
    ),
    "gzip_instead_of_snappy": (
        lambda: snappy_block(good_write("x")),
        "application/x-protobuf",
        "gzip",
        415,
        "unsupported_encoding",
    ),
}


@pytest.mark.parametrize("case", list(BAD_WRITES))
def test_remote_write_bad_input_is_refused_and_counted(case, gateway):
    make_body, content_type, encoding, status, reason = BAD_WRITES[case]
    gw = gateway(config=sluice_config())
    bad = gw.metric("sluice_receiver_bad_requests_total", receiver="prometheus_remote_write", transport="http")
    assert bad == 0

    started = time.monotonic()
    r = remote_write(gw, make_body(), content_type=content_type, encoding=encoding)
    assert r.status_code == status, (r.status_code, r.text)
    assert time.monotonic() - started < 5
    assert r.text.strip(), "the refusal should say why"

    gw.wait_metric(
        "sluice_receiver_bad_requests_total",
        1,
        receiver="prometheus_remote_write",
        transport="http",
        reason=reason,
    )
    total = gw.metric(
        "sluice_receiver_bad_requests_total", receiver="prometheus_remote_write", transport="http"
    )
    assert total == 1, f"exactly one bad request, counted with reason {reason}"
    assert gw.alive()

    # A good write right after is accepted and served; nothing of the bad one is.
    r = remote_write(gw, snappy_block(good_write(case)))
    assert r.status_code == 204, (r.status_code, r.text)

    def served():
        return series_of(scraped(gw), "after_bad_total", case=case)

    ((labels, value),) = wait_until(served, SCRAPE_TIMEOUT, "the good write on the scrape endpoint")
    assert value == 7
    assert labels["job"] == "a/b" and labels["instance"] == "host:9100", labels
    names = {n for n, _, _ in scraped(gw)}
    assert not names & {"fine_total", "unordered"}, names


def test_remote_write_receiver_types_and_resources_round_trip(gateway):
    gw = gateway(config=sluice_config())
    t = now_ms()
    body = write_request(
        [
            (
                {"__name__": "http_requests_total", "job": "shop/api", "instance": "api-1:8080", "code": "200"},
                [(5, t - 2000), (9, t - 1000)],
            ),
            ({"__name__": "jobs_done_total", "job": "batch"}, [(3, t)]),
            ({"__name__": "queue_length", "job": "shop/api", "instance": "api-1:8080"}, [(17, t)]),
            ({"__name__": "temperature_celsius", "job": "shop/api", "instance": "api-1:8080"}, [(21.5, t)]),
        ],
        metadata=[
            (COUNTER, "http_requests_total", "Requests served", ""),
            (GAUGE, "queue_length", "Items waiting", ""),
        ],
    )
    r = remote_write(gw, snappy_block(body))
    assert r.status_code == 204, (r.status_code, r.text)

    def served():
        samples = scraped(gw)
        names = {n for n, _, _ in samples}
        want = {"http_requests_total", "jobs_done_total", "queue_length", "temperature_celsius"}
        return samples if want <= names else None

    samples = wait_until(served, SCRAPE_TIMEOUT, "the written series on the scrape endpoint")
    kinds = types_of(scrape(gw).text)
    assert kinds["http_requests_total"] == "counter"  # metadata COUNTER
    assert kinds["jobs_done_total"] == "counter"  # no metadata, named *_total
    assert kinds["queue_length"] == "gauge"
    assert kinds["temperature_celsius"] == "gauge"

    ((labels, value),) = series_of(samples, "http_requests_total")
    assert value == 9, "the newest sample of the series"
    assert (labels["job"], labels["instance"], labels["code"]) == ("shop/api", "api-1:8080", "200")
    ((labels, value),) = series_of(samples, "jobs_done_total")
    assert (labels["job"], value) == ("batch", 3) and "instance" not in labels
    assert series_of(samples, "queue_length", job="shop/api", instance="api-1:8080")[0][1] == 17
    assert series_of(samples, "temperature_celsius", job="shop/api")[0][1] == 21.5
    assert "# HELP http_requests_total Requests served" in scrape(gw).text


# ================================================================= (g) series cap and expiry


def test_max_series_caps_the_scrape_and_counts_drops(gateway):
    gw = gateway(config=sluice_config(prometheus={"max_series": 5, "target_info": False}))
    with sdk_meters(gw, "grpc", {"service.name": "fanout"}) as (provider, exporter):
        counter = provider.get_meter("fanout").create_counter("hits", description="Hits")
        for i in range(20):
            counter.add(i + 1, {"shard": f"s{i:02d}"})
        flush(provider, exporter)

        dropped = gw.wait_metric(
            "sluice_dropped_records_total", 15, component="exporter/prometheus", reason="max_series"
        )
        assert dropped == 15
        samples = scraped(gw)
        assert len(samples) == 5, samples
        assert {n for n, _, _ in samples} == {"hits_total"}
        kept = {l["shard"]: v for _, l, v in samples}
        assert len(kept) == 5
        assert gw.metric("sluice_exporter_series", exporter="prometheus") == 5
        # Each scrape's render is timed (scraped() above scraped once at least).
        renders = gw.metric("sluice_exporter_scrape_render_duration_seconds_count", exporter="prometheus")
        scraped(gw)
        assert gw.metric("sluice_exporter_scrape_render_duration_seconds_count", exporter="prometheus") == renders + 1
        assert renders >= 1

        # The next export (cumulative: all 20 again) updates the 5 kept and drops the 15 others.
        for i in range(20):
            counter.add(100, {"shard": f"s{i:02d}"})
        flush(provider, exporter)
        gw.wait_metric("sluice_dropped_records_total", 30, component="exporter/prometheus", reason="max_series")
        samples = scraped(gw)
        assert {l["shard"]: v for _, l, v in samples} == {s: v + 100 for s, v in kept.items()}


def test_series_expire_unless_updated(gateway):
    expiration = 2.0
    gw = gateway(config=sluice_config(prometheus={"metric_expiration": f"{expiration:g}s"}))
    with sdk_meters(gw, "http", {"service.name": "steady"}) as (steady, steady_exporter):
        ticks = steady.get_meter("steady").create_counter("ticks", description="Ticks")
        total = 0

        def tick():
            """Adds 1, exports, and returns the scrape once it shows the new total."""
            nonlocal total
            ticks.add(1)
            total += 1
            flush(steady, steady_exporter)

            def updated():
                samples = scraped(gw)
                steady_now = series_of(samples, "ticks_total", job="steady")
                assert steady_now, f"the series updated every 0.5 s expired (at {total}): {samples}"
                return samples if steady_now[0][1] == total else None

            return wait_until(updated, SCRAPE_TIMEOUT, f"ticks_total == {total}")

        tick()
        # A one-off process: exports once, then is gone.
        once_at = time.monotonic()
        with sdk_meters(gw, "http", {"service.name": "oneoff", "team": "t1"}) as (oneoff, oneoff_exporter):
            oneoff.get_meter("oneoff").create_counter("runs", description="Runs").add(1)
            flush(oneoff, oneoff_exporter)
        samples = parse_prometheus(wait_scrape(gw, "runs_total").text)
        assert series_of(samples, "target_info", job="oneoff"), samples

        # The steady series is updated every 0.5 s; the one-off series must go, and stay gone.
        gone_at = None
        deadline = time.monotonic() + expiration + 6
        while time.monotonic() < deadline:
            samples = tick()
            if gone_at is None and not series_of(samples, "runs_total", job="oneoff"):
                gone_at = time.monotonic()
                assert not series_of(samples, "target_info", job="oneoff"), samples
            elif gone_at is not None:
                assert not series_of(samples, "runs_total", job="oneoff"), samples
                if time.monotonic() - gone_at >= 1.0:
                    break
            time.sleep(0.5)

    assert gone_at is not None, f"the one-off series was still served {expiration + 6:.0f}s after its update"
    assert gone_at - once_at >= expiration - 0.1, f"expired after {gone_at - once_at:.2f}s (< {expiration}s)"
    assert total >= 6, f"only {total} updates"
