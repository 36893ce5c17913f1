"""Delivery limits: the memory limiter (refuse with a retryable error above the soft limit, not
ready above the hard limit) and the exporter queues' max_age."""

from __future__ import annotations

import subprocess
import time

import grpc
import pytest

from support.otlp import grpc_export, simple_trace_request
from support.polling import wait_until
from support.process import SLUICE_BIN
from test_bad_input import error_body


def limited(soft: int, hard: int | None = None) -> dict:
    limiter = {"soft_limit_mib": soft, "check_interval": "20ms"}
    if hard is not None:
        limiter["hard_limit_mib"] = hard
    return {"memory_limiter": limiter}


def test_above_the_soft_limit_receivers_refuse_with_a_retryable_error(gateway, downstream):
    ds = downstream()
    # 1 MiB: any process is above it.
    gw = gateway({"otlp/down": {"endpoint": ds.endpoint}}, service=limited(1))
    req, _ = simple_trace_request(3)
    r = gw.post("traces", req.SerializeToString())
    assert r.status_code == 429, (r.status_code, r.text)
    assert int(r.headers["Retry-After"]) >= 1
    _, message = error_body(r)
    assert "memory limit" in message and "retry" in message, message
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(gw.grpc_target, "traces", req.SerializeToString(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert gw.metric("sluice_receiver_refused_records_total", reason="memory_limit") == 6
    assert gw.metric("sluice_memory_limiter_over_limit", limit="soft") == 1
    assert gw.metric("sluice_memory_limiter_over_limit", limit="hard") == 0
    # Only the soft limit is exceeded: still ready (queues drain, clients retry).
    assert gw.get("/health/ready").status_code == 200
    assert ds.requests("traces") == []


def test_under_the_limit_data_flows(gateway, downstream):
    ds = downstream()
    gw = gateway({"otlp/down": {"endpoint": ds.endpoint}}, service=limited(64 * 1024, 128 * 1024))
    req, _ = simple_trace_request(2)
    assert gw.post("traces", req.SerializeToString()).status_code == 200
    ds.wait_for("traces", 1, timeout=10)
    assert gw.metric("sluice_memory_limiter_over_limit", limit="soft") == 0


def test_above_the_hard_limit_the_gateway_is_not_ready(gateway, downstream):
    ds = downstream()
    gw = gateway({"otlp/down": {"endpoint": ds.endpoint}}, service=limited(1, 1), wait_ready=False)

    def not_ready() -> bool:
        try:
            r = gw.get("/health/ready", timeout=1)
        except Exception:
            return False
        return r.status_code == 503 and "over_memory_limit" in r.text

    wait_until(not_ready, 15, "/health/ready answers 503 over_memory_limit")
    assert gw.get("/health/live").status_code == 200
    assert gw.metric("sluice_memory_limiter_over_limit", limit="hard") == 1


def test_memory_limiter_settings_are_validated(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "receivers: { otlp: { protocols: { grpc: { endpoint: 127.0.0.1:4317 } } } }\n"
        "exporters: { debug: {} }\n"
        "service:\n"
        "  pipelines: { traces: { receivers: [otlp], exporters: [debug] } }\n"
        "  memory_limiter: { soft_limit_mib: 512, hard_limit_mib: 256, check_intervall: 1s }\n"
    )
    r = subprocess.run([str(SLUICE_BIN), "validate", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 64
    assert "service.memory_limiter" in r.stderr and "check_intervall" in r.stderr, r.stderr
    cfg.write_text(cfg.read_text().replace(", check_intervall: 1s", ""))
    r = subprocess.run([str(SLUICE_BIN), "validate", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 64
    assert "service.memory_limiter.hard_limit_mib: must not be below soft_limit_mib" in r.stderr, r.stderr


def test_batches_older_than_max_age_are_dropped_not_retried_forever(gateway, downstream):
    ds = downstream()
    ds.always_fail = True  # UNAVAILABLE: retryable
    gw = gateway(
        {
            "otlp/down": {
                "endpoint": ds.endpoint,
                "sending_queue": {"max_age": "1s"},
                "retry_on_failure": {"initial_interval": "100ms", "max_interval": "200ms", "max_elapsed_time": "5m"},
            }
        }
    )
    req, _ = simple_trace_request(4)
    t0 = time.monotonic()
    assert gw.post("traces", req.SerializeToString()).status_code == 200
    gw.wait_metric("sluice_dropped_records_total", 4, timeout=10, component="exporter/otlp/down", reason="max_age")
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 8, elapsed
    attempts = ds.failed
    assert attempts >= 3, "it retried until the batch was too old"
    time.sleep(0.6)
    assert ds.failed == attempts, "and then stopped"
    assert gw.metric("sluice_exporter_sent_records_total", exporter="otlp/down") == 0


def test_the_exporter_breaker_opens_on_a_dead_backend_and_closes_when_it_recovers(gateway, downstream):
    ds = downstream()
    ds.always_fail = True  # UNAVAILABLE
    gw = gateway(
        {
            "otlp/down": {
                "endpoint": ds.endpoint,
                "retry_on_failure": {"initial_interval": "50ms", "max_interval": "100ms", "max_elapsed_time": "1m"},
                "circuit_breaker": {"failure_threshold": 3, "open_duration": "1500ms", "affects_readiness": True},
            }
        }
    )
    req, _ = simple_trace_request(2)
    assert gw.post("traces", req.SerializeToString()).status_code == 200
    gw.wait_metric("sluice_exporter_breaker_state", 1, timeout=10, exporter="otlp/down")
    attempts = ds.failed
    assert attempts == 3, "it opened after the third failure"
    time.sleep(0.8)
    assert ds.failed == attempts, "no sends while open"
    r = gw.get("/health/ready")
    assert r.status_code == 503 and "exporter_breaker_open otlp/down" in r.text
    detailed = gw.get("/health/detailed").json()
    (exp,) = [e for e in detailed["exporters"] if e["name"] == "otlp/down"]
    assert exp["breaker"] == "open"

    ds.always_fail = False
    (got,) = ds.wait_for("traces", 1, timeout=10)
    assert got.raw == req.SerializeToString(), "the waiting batch is delivered after the trial"
    gw.wait_metric("sluice_exporter_sent_records_total", 2, exporter="otlp/down")
    assert gw.metric("sluice_exporter_breaker_state", exporter="otlp/down") == 0
    assert gw.get("/health/ready").status_code == 200
    assert gw.metric("sluice_dropped_records_total", component="exporter/otlp/down") == 0


def _rss_mib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(field)


def test_a_load_spike_with_no_backend_is_refused_above_the_soft_limit_and_nothing_is_lost(gateway, downstream):
    ds = downstream()
    ds.hang()  # the backend takes nothing until released
    probe = gateway({"otlp/down": {"endpoint": ds.endpoint}})
    base = _rss_mib(probe.pid, "VmRSS")
    probe.stop()
    soft = int(base) + 40
    gw = gateway(
        {"otlp/down": {"endpoint": ds.endpoint, "timeout": "30s", "circuit_breaker": {"enabled": False},
                       "sending_queue": {"queue_size": 100000, "num_consumers": 1}}},
        service={"memory_limiter": {"soft_limit_mib": soft, "check_interval": "20ms"}},
    )
    acked: set[bytes] = set()
    refused = 0
    sent = 0
    for _ in range(2000):
        req, ids = simple_trace_request(500)
        sent += len(ids)
        r = gw.post("traces", req.SerializeToString(), timeout=30)
        if r.status_code == 200:
            acked.update(ids)
        else:
            assert r.status_code == 429, (r.status_code, r.text)
            assert "memory limit" in r.text
            refused += 1
            if refused >= 20:
                break
    peak = _rss_mib(gw.pid, "VmHWM")
    print(f"\nspike: soft limit {soft} MiB (baseline {base:.0f}), peak RSS {peak:.0f} MiB, "
          f"{len(acked)} of {sent} spans acknowledged, {refused} requests refused")
    assert refused >= 20, "the limiter never refused"
    assert gw.metric("sluice_receiver_refused_records_total", reason="memory_limit") == refused * 500
    # Refusal starts once the soft limit is crossed: the peak stays near it.
    assert peak < soft + 64, (peak, soft)
    ds.release()

    def delivered() -> bool:
        got = {s.span_id for r in ds.requests("traces") for rs in r.message.resource_spans
               for ss in rs.scope_spans for s in ss.spans}
        return acked <= got

    wait_until(delivered, 60, "every acknowledged span delivered after the backend came back")
