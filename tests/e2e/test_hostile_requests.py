"""Hostile requests, class by class, against the real binary: small bodies whose decoded form
would be huge (empty records, label sets copied per sample, histogram gaps), input that used to
reach a panic, deep nesting, bodies over the size limit, and all of them at once. Each class
gets a precise answer code, `/health/live` keeps answering, the gateway's RSS grows by less
than 256 MiB per class (less than 1 GiB with 8 at once), and each refusal is counted.

A watcher samples the gateway's RSS every 10 ms and stops the gateway (by its pid) past
1.5 GiB, so a regression fails the test instead of taking the machine down."""

from __future__ import annotations

import gzip
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import requests

from support.config import gateway_config, otlp_receiver, pipeline
from support.otlp import grpc_export, simple_trace_request
from test_abuse import rss_mib
from test_bad_input import error_body
from test_prometheus import _double_field, _varint, _varint_field, now_ms, snappy_block, write_request

MIB = 1 << 20
PER_CLASS_MIB = 256
CONCURRENT_MIB = 1024
CEILING_MIB = 1536


class RssWatch:
    """Peak RSS of a process while the block runs; kills it (SIGKILL, by pid) past the ceiling."""

    def __init__(self, gw):
        self.gw = gw
        self.base = rss_mib(gw.pid)
        self.peak = self.base
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                rss = rss_mib(self.gw.pid)
            except (OSError, AssertionError):
                return
            self.peak = max(self.peak, rss)
            if rss > CEILING_MIB and not self.killed:
                self.killed = True
                self.gw.signal(9)
                return
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    @property
    def growth(self) -> float:
        return self.peak - self.base


def live(gw) -> None:
    r = requests.get(f"{gw.admin_url}/health/live", timeout=2)
    assert r.status_code == 200, r.status_code


def config(ports, ds_endpoint, auth=None):
    otlp = otlp_receiver(ports)
    if auth:
        otlp["auth"] = auth
    return gateway_config(
        ports,
        {"otlp/down": {"endpoint": ds_endpoint}},
        receivers={"otlp": otlp, "prometheus_remote_write": {}},
        pipelines={
            "traces": pipeline(["otlp/down"]),
            "logs": pipeline(["otlp/down"]),
            "metrics": pipeline(["otlp/down"], receivers=["otlp", "prometheus_remote_write"]),
        },
        shutdown_timeout="5s",
    )


def _len(n: int, payload: bytes) -> bytes:
    return _varint(n << 3 | 2) + _varint(len(payload)) + payload


def traces_with_scope(scope: bytes) -> bytes:
    """ExportTraceServiceRequest { resource_spans: [{ scope_spans: [scope] }] }."""
    return _len(1, _len(2, scope))


def empty_spans(n: int) -> bytes:
    return traces_with_scope(b"\x12\x00" * n)


def valid_span(extra: bytes = b"") -> bytes:
    return _len(1, b"\x01" * 16) + _len(2, b"\x02" * 8) + _len(5, b"op") + extra


def overrunning_scope(pairs: int) -> bytes:
    """A ScopeSpans one byte long: the key of `spans` without its length. The decoder reads
    the length, and a span of `pairs` empty attributes, from the bytes after the ScopeSpans'
    end (it checks the end only once the span is built); the request is refused undecoded."""
    span = valid_span(b"\x4a\x00" * pairs)
    return _len(1, _len(2, b"\x12") + _varint(len(span)) + span)


def zigzag32(n: int) -> int:
    return (n << 1) ^ (n >> 31)


def histogram_gap_write() -> bytes:
    """A native histogram whose first span starts near i32::MAX with no buckets and whose
    second is another i32::MAX further: dense OTLP buckets would be 2^31 zeros."""
    span = lambda offset, length: _varint_field(1, zigzag32(offset)) + _varint_field(2, length)  # noqa: E731
    hist = (
        _varint_field(1, 1)  # count_int
        + _varint_field(4, 0)  # schema
        + _len(11, span(2**31 - 1, 0))
        + _len(11, span(2**31 - 1, 1))
        + _len(12, _varint(2))  # positive_deltas: [1] (sint64 zigzag)
        + _varint_field(15, now_ms())
    )
    series = _len(1, _len(1, b"__name__") + _len(2, b"h")) + _len(4, hist)
    return _len(1, series)


def labels_times_empty_samples() -> bytes:
    """One series with 100 labels of 200 bytes and a million empty samples (2 bytes each):
    2 MiB that would become a million data points each with its own copy of 20 KB of labels."""
    labels = {"__name__": "wide"} | {f"label_{i:03d}": "v" * 200 for i in range(100)}
    ts = bytearray()
    for name, value in labels.items():
        ts += _len(1, _len(1, name.encode()) + _len(2, value.encode()))
    ts += b"\x12\x00" * 1_000_000
    return _len(1, bytes(ts))


def non_ascii_exemplar_write() -> bytes:
    t = now_ms()
    exemplar = _len(1, _len(1, b"trace_id") + _len(2, ("\u00e9" * 16).encode())) + _double_field(2, 1.0) + _varint_field(3, t)
    sample = _double_field(1, 1.0) + _varint_field(2, t)
    series = _len(1, _len(1, b"__name__") + _len(2, b"requests_total")) + _len(2, sample) + _len(3, exemplar)
    return _len(1, series)


def deep_any_value(depth: int) -> bytes:
    value = b""
    for _ in range(depth):
        value = _len(5, _len(1, value))  # AnyValue { array_value: { values: [value] } }
    attribute = _len(1, b"deep") + _len(2, value)
    return traces_with_scope(_len(2, valid_span(_len(9, attribute))))


def remote_write(gw, body: bytes, headers: dict | None = None, snappy: bool = True):
    h = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"} | (headers or {})
    return requests.post(f"{gw.http_url}/api/v1/write", data=snappy_block(body) if snappy else body, headers=h, timeout=30)


def post(gw, signal: str, body: bytes, **headers):
    h = {"Content-Type": "application/x-protobuf"} | {k.replace("_", "-"): v for k, v in headers.items()}
    return requests.post(f"{gw.http_url}/v1/{signal}", data=body, headers=h, timeout=30)


# id: (send(gw) -> (status, text), expected status, text expected in the answer, bad_requests reason)
CLASSES = {
    "gzip_body_of_empty_spans": (
        lambda gw: post(gw, "traces", gzip.compress(empty_spans(8_000_000), 9), Content_Encoding="gzip"),
        400,
        "records without content",
        "decode_budget",
    ),
    "empty_log_records": (
        lambda gw: post(gw, "logs", _len(1, _len(2, b"\x12\x00" * 2_000_000))),
        400,
        "records without content",
        "decode_budget",
    ),
    "empty_attributes_on_a_valid_span": (
        lambda gw: post(gw, "traces", traces_with_scope(_len(2, valid_span(b"\x4a\x00" * 500_000)))),
        400,
        "records without content",
        "decode_budget",
    ),
    "json_of_empty_objects": (
        lambda gw: post(
            gw,
            "traces",
            json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{}] * 1_000_000}]}]}, separators=(",", ":")).encode(),
            Content_Type="application/json",
        ),
        400,
        "records without content",
        "decode_budget",
    ),
    "a_field_overrunning_its_message": (
        lambda gw: post(gw, "traces", overrunning_scope(8_000_000)),
        400,
        "invalid ExportTraceServiceRequest",
        "malformed",
    ),
    "nesting_past_the_decoder_limit": (
        lambda gw: post(gw, "traces", deep_any_value(300)),
        400,
        "",
        "malformed",
    ),
    "json_nested_arrays": (
        lambda gw: post(gw, "logs", b"[" * 200_000 + b"]" * 200_000, Content_Type="application/json"),
        400,
        "",
        "malformed",
    ),
    "non_utf8_span_name": (
        lambda gw: post(gw, "traces", traces_with_scope(_len(2, _len(1, b"\x01" * 16) + _len(2, b"\x02" * 8) + _len(5, b"\xff\xfe")))),
        400,
        "",
        "malformed",
    ),
    "remote_write_histogram_gap": (
        lambda gw: remote_write(gw, histogram_gap_write()),
        400,
        "records without content",
        "decode_budget",
    ),
    "remote_write_labels_times_empty_samples": (
        lambda gw: remote_write(gw, labels_times_empty_samples()),
        400,
        "records without content",
        "decode_budget",
    ),
    "remote_write_non_ascii_exemplar_id": (
        lambda gw: remote_write(gw, non_ascii_exemplar_write()),
        204,
        "",
        None,
    ),
    "body_over_the_limit_with_content_length": (
        lambda gw: post(gw, "traces", b"\0" * (21 * MIB)),
        413,
        "exceeds the limit",
        "too_large",
    ),
}


@pytest.mark.parametrize("case", list(CLASSES))
def test_each_hostile_class_is_answered_with_bounded_memory(gateway, downstream, case):
    send, status, text, reason = CLASSES[case]
    ds = downstream()
    gw = gateway(config=lambda ports: config(ports, ds.endpoint))
    with RssWatch(gw) as watch:
        started = time.monotonic()
        r = send(gw)
        elapsed = time.monotonic() - started
    assert not watch.killed, f"{case}: RSS passed {CEILING_MIB} MiB"
    assert r.status_code == status, (case, r.status_code, r.text[:300])
    if text:
        body = r.text if r.headers.get("Content-Type", "").startswith("text/") else error_body(r)[1]
        assert text in body, body
    live(gw)
    print(f"\n{case}: {r.status_code} in {elapsed:.2f}s, RSS +{watch.growth:.0f} MiB (base {watch.base:.0f})")
    assert watch.growth < PER_CLASS_MIB, (case, watch.base, watch.peak)
    if reason:
        assert gw.metric("sluice_receiver_bad_requests_total", reason=reason) >= 1, reason
    assert gw.metric("sluice_panics_total") == 0
    # A good request right after is delivered.
    req, _ = simple_trace_request(2)
    assert gw.post("traces", req.SerializeToString()).status_code == 200
    ds.wait_records("traces", 2)


def test_grpc_empty_spans_are_invalid_argument(gateway, downstream):
    ds = downstream()
    gw = gateway(config=lambda ports: config(ports, ds.endpoint))
    body = empty_spans(1_900_000)  # 3.8 MB, under the 4 MiB gRPC limit
    with RssWatch(gw) as watch:
        with pytest.raises(grpc.RpcError) as err:
            grpc_export(gw.grpc_target, "traces", body, timeout=20)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert "records without content" in err.value.details()
    assert watch.growth < PER_CLASS_MIB, (watch.base, watch.peak)
    assert gw.metric("sluice_receiver_refused_records_total", reason="decode_budget", transport="grpc") == 1_900_000
    live(gw)


def test_eight_hostile_requests_at_once_stay_under_a_gib(gateway, downstream):
    ds = downstream()
    gw = gateway(config=lambda ports: config(ports, ds.endpoint))
    bodies = [
        lambda: post(gw, "traces", gzip.compress(empty_spans(8_000_000), 9), Content_Encoding="gzip"),
        lambda: remote_write(gw, labels_times_empty_samples()),
        lambda: remote_write(gw, histogram_gap_write()),
        lambda: post(gw, "logs", _len(1, _len(2, b"\x12\x00" * 2_000_000))),
    ] * 2
    with RssWatch(gw) as watch, ThreadPoolExecutor(8) as pool:
        health = []

        def probe():
            while len(health) < 200 and not watch._stop.is_set():
                started = time.monotonic()
                code = requests.get(f"{gw.admin_url}/health/live", timeout=5).status_code
                health.append((code, time.monotonic() - started))
                time.sleep(0.02)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        answers = list(pool.map(lambda send: send().status_code, bodies))
    prober.join(5)
    assert not watch.killed
    # Each is refused on its own merits, or (the in-flight budget being spent) told to retry.
    assert all(code in (400, 503) for code in answers), answers
    assert health and all(code == 200 for code, _ in health), health[:5]
    slowest = max(t for _, t in health)
    print(f"\n8 hostile at once: {answers}, RSS +{watch.growth:.0f} MiB, slowest /health/live {slowest * 1000:.0f} ms")
    assert slowest < 2.0, slowest
    assert watch.growth < CONCURRENT_MIB, (watch.base, watch.peak)
    live(gw)


def test_remote_write_over_a_tenant_limit_is_503_with_retry_after(gateway, downstream, tmp_path):
    ds = downstream()
    token = tmp_path / "token"
    token.write_text("rw-secret-token\n")
    auth = {"tenants": [{"tenant": "team-rw", "bearer_token_file": str(token), "limits": {"records_per_second": 5}}]}
    gw = gateway(config=lambda ports: config(ports, ds.endpoint, auth=auth))
    t = now_ms()
    many = write_request([({"__name__": f"m{i}", "job": "rw"}, [(1.0, t)]) for i in range(50)])
    headers = {"Authorization": "Bearer rw-secret-token"}
    # A batch larger than one second's worth passes once (the bucket goes into debt), as OTLP.
    assert remote_write(gw, many, headers).status_code == 204
    r = remote_write(gw, many, headers)
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers.get("Retry-After") == "1"
    assert "tenant team-rw is over its limit" in r.text
    assert gw.metric("sluice_tenant_limited_total", tenant="team-rw", limit="records_per_second") >= 1
    assert gw.metric("sluice_receiver_refused_records_total", reason="tenant_limit") == 50
    # Without credentials remote_write is refused like OTLP.
    assert remote_write(gw, many).status_code == 401


def test_remote_write_applies_attribute_limits(gateway, downstream):
    ds = downstream()

    def cfg(ports):
        c = config(ports, ds.endpoint)
        c["receivers"]["otlp"]["attribute_limits"] = {"max_attributes_per_record": 4, "max_value_bytes": 16}
        return c

    gw = gateway(config=cfg)
    labels = {"__name__": "wide_gauge", "job": "rw"} | {f"l{i}": "x" * 40 for i in range(10)}
    r = remote_write(gw, write_request([(labels, [(1.0, now_ms())])]))
    assert r.status_code == 204, r.text
    got = ds.wait_for("metrics", 1)[0].message
    point = got.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    assert len(point.attributes) == 4
    assert all(len(a.value.string_value) <= 16 for a in point.attributes)
    assert gw.metric("sluice_receiver_attributes_limited_total", action="dropped") == 6


def test_the_in_flight_budget_is_configurable_and_a_request_beyond_it_is_413(gateway, downstream):
    ds = downstream()

    def cfg(ports):
        c = config(ports, ds.endpoint)
        c["service"]["in_flight_decode_mib"] = 1
        return c

    gw = gateway(config=cfg)
    assert gw.metric("sluice_receiver_in_flight_bytes", state="budget") == 1 << 20
    small, _ = simple_trace_request(10)
    assert gw.post("traces", small.SerializeToString()).status_code == 200
    big, _ = simple_trace_request(5000)
    r = gw.post("traces", big.SerializeToString())
    assert r.status_code == 413, (r.status_code, r.text)
    assert "more than the gateway decodes at once" in error_body(r)[1]
    assert gw.metric("sluice_receiver_in_flight_bytes", state="used") == 0
    live(gw)
