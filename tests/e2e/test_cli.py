"""The command line and the process: `validate`, `run` with a bad config, `--version`, the
precedence of flags over environment over file, graceful shutdown on SIGTERM, the admin
endpoint, and correlation ids."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time

import grpc
import pytest
import requests

from support.config import config_for, write_config
from support.otlp import grpc_export, simple_trace_request
from support.polling import wait_until
from support.ports import free_port, port_is_listening
from support.process import SLUICE_BIN, clean_env

EXIT_BAD_CONFIG = 64


def sluice(*args: str, env: dict[str, str] | None = None, timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SLUICE_BIN), *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def ports() -> dict[str, int]:
    return {"grpc": free_port(), "http": free_port(), "admin": free_port()}


# ------------------------------------------------------------------------------------ validate


def test_validate_accepts_a_good_config(tmp_path):
    cfg = config_for(ports(), {"debug": {"verbosity": "detailed"}, "otlp/x": {"endpoint": "http://127.0.0.1:1"}})
    path = write_config(tmp_path / "good.yaml", cfg)
    r = sluice("validate", "--config", str(path))
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout
    assert "1 receivers, 2 exporters, 3 pipelines" in r.stdout, r.stdout
    assert r.stderr == ""


def test_validate_accepts_the_embedded_defaults():
    r = sluice("validate")
    assert r.returncode == 0, r.stderr
    assert "embedded defaults" in r.stdout and "valid" in r.stdout


BAD_CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc: { endpont: 127.0.0.1:4317 }
exporters:
  otlp/jaeger: { endpoint: "http://127.0.0.1:14317", protocol: grcp }
  otlp/tempo: { endpoint: "http://127.0.0.1:24317" }
  debugg: {}
servce: {}
service:
  pipelines:
    traces: { receivers: [otlp], exporters: [otlp/tempo, otlp/tempp] }
    trace: { receivers: [otlp], exporters: [otlp/tempo] }
    logs: { receivers: [otlpp], exporters: [otlp/tempo] }
"""

# Each problem with its path and the nearest valid name. For an unknown key the path may name
# the block (`...grpc`) or the key itself (`...grpc.endpont`).
EXPECTED_ERRORS = [
    r"receivers\.otlp\.protocols\.grpc(\.endpont)?: unknown key `endpont`; did you mean `endpoint`\?",
    r"exporters\.otlp/jaeger\.protocol: unknown value `grcp`; did you mean `grpc`\?",
    r"exporters\.debugg: unknown exporter type `debugg`; did you mean `debug`\?",
    r"servce: unknown top-level key `servce`; did you mean `service`\?",
    r"service\.pipelines\.trace: unknown pipeline signal `trace`; did you mean `traces`\?",
    r"service\.pipelines\.traces\.exporters\[1\]: unknown exporter `otlp/tempp`; did you mean `otlp/tempo`\?",
    r"service\.pipelines\.logs\.receivers\[0\]: unknown receiver `otlpp`; did you mean `otlp`\?",
]


def assert_reports_every_error(stderr: str, source: str) -> None:
    lines = stderr.strip().splitlines()
    assert lines, "no error output"
    assert lines[0] == f"{source}: {len(EXPECTED_ERRORS)} errors in config", stderr
    errors = [l.strip().removeprefix("- ") for l in lines[1:]]
    unmatched = [p for p in EXPECTED_ERRORS if not any(re.fullmatch(p, e) for e in errors)]
    assert not unmatched, f"missing errors {unmatched} in:\n{stderr}"
    extra = [e for e in errors if not any(re.fullmatch(p, e) for p in EXPECTED_ERRORS)]
    assert not extra, f"unexpected errors {extra} in:\n{stderr}"


def test_validate_reports_every_error_with_path_and_suggestion(tmp_path):
    path = write_config(tmp_path / "bad.yaml", BAD_CONFIG)
    r = sluice("validate", "--config", str(path))
    assert r.returncode == EXIT_BAD_CONFIG, (r.returncode, r.stdout, r.stderr)
    assert_reports_every_error(r.stderr, str(path))
    assert "valid (" not in r.stdout


@pytest.mark.parametrize(
    "text, words",
    [
        ("receivers: [", ["invalid YAML", "line"]),
        ("- just\n- a list\n", ["mapping"]),
    ],
    ids=["broken-yaml", "not-a-mapping"],
)
def test_validate_rejects_unparsable_files(tmp_path, text, words):
    path = write_config(tmp_path / "broken.yaml", text)
    r = sluice("validate", "--config", str(path))
    assert r.returncode == EXIT_BAD_CONFIG
    for w in words:
        assert w in r.stderr, r.stderr


def test_validate_missing_file(tmp_path):
    r = sluice("validate", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == EXIT_BAD_CONFIG
    assert "cannot read the config file" in r.stderr


def test_run_with_a_bad_config_exits_64_without_listening(tmp_path):
    admin = free_port()
    # BAD_CONFIG ends inside `service`, so the admin endpoint lands there.
    text = BAD_CONFIG + f"  admin: {{ endpoint: 127.0.0.1:{admin} }}\n"
    path = write_config(tmp_path / "bad.yaml", text)
    r = sluice("run", "--config", str(path), timeout=15)
    assert r.returncode == EXIT_BAD_CONFIG, (r.returncode, r.stderr)
    assert_reports_every_error(r.stderr, str(path))
    assert not port_is_listening(admin)


def test_run_reports_a_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        p = ports()
        p["admin"] = busy
        path = write_config(tmp_path / "c.yaml", config_for(p, {"debug": {}}))
        r = sluice("run", "--config", str(path), timeout=15)
    assert r.returncode not in (0, EXIT_BAD_CONFIG), r.returncode
    assert f"127.0.0.1:{busy}" in r.stderr and "admin" in r.stderr, r.stderr


def test_version():
    r = sluice("--version")
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip()
    assert re.search(r"\b\d+\.\d+\.\d+\b", out), out
    assert "commit" in out and "built" in out, out
    assert re.search(r"\d{4}-\d{2}-\d{2}", out), out


# ------------------------------------------------------------------------------------ overrides


def test_flag_beats_env_beats_file(gateway):
    file_ports = ports()
    env_admin, flag_admin = free_port(), free_port()
    env_http, flag_http = free_port(), free_port()
    env_grpc = free_port()
    gw = gateway(
        config=config_for(file_ports, {"debug": {}}),
        env={
            "SLUICE_ADMIN_ENDPOINT": f"127.0.0.1:{env_admin}",
            "SLUICE_HTTP_ENDPOINT": f"127.0.0.1:{env_http}",
            "SLUICE_GRPC_ENDPOINT": f"127.0.0.1:{env_grpc}",
        },
        args=["--admin-endpoint", f"127.0.0.1:{flag_admin}", "--http-endpoint", f"127.0.0.1:{flag_http}"],
        wait_ready=False,
    )
    gw.ports = {"admin": flag_admin, "http": flag_http, "grpc": env_grpc}
    gw.wait_ready()  # the flag's admin endpoint serves
    for port in (env_admin, file_ports["admin"], env_http, file_ports["http"], file_ports["grpc"]):
        assert not port_is_listening(port), f"port {port} is listening"
    # The flag's HTTP endpoint and the environment's gRPC endpoint take data.
    req, _ = simple_trace_request(1)
    assert gw.post("traces", req.SerializeToString()).status_code == 200
    grpc_export(gw.grpc_target, "traces", req.SerializeToString())
    status = gw.get("/api/v1/status").json()
    endpoints = {r["transport"]: r["endpoint"] for r in status["receivers"]}
    assert endpoints == {"http": f"127.0.0.1:{flag_http}", "grpc": f"127.0.0.1:{env_grpc}"}


def test_env_beats_file(gateway):
    file_ports = ports()
    env_admin = free_port()
    gw = gateway(
        config=config_for(file_ports, {"debug": {}}),
        env={"SLUICE_ADMIN_ENDPOINT": f"127.0.0.1:{env_admin}"},
        wait_ready=False,
    )
    gw.ports = {**file_ports, "admin": env_admin}
    gw.wait_ready()
    assert not port_is_listening(file_ports["admin"])
    assert port_is_listening(file_ports["http"]) and port_is_listening(file_ports["grpc"])


# ------------------------------------------------------------------------------------ shutdown


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_accepted_data_and_exits_0(sig, gateway, downstream):
    ds = downstream()
    ds.delay = 0.4  # a slow backend, so data is still queued when the signal arrives
    gw = gateway(
        {"otlp/down": {"endpoint": ds.endpoint, "sending_queue": {"num_consumers": 1}}},
        service={"shutdown_timeout": "10s"},
    )
    sent = []
    for i in range(5):
        req, ids = simple_trace_request(2, name=f"before-signal-{i}")
        r = gw.post("traces", req.SerializeToString())
        assert r.status_code == 200, r.text
        sent.extend(ids)
    started = time.monotonic()
    gw.signal(sig)

    # While draining, readiness is off (and the admin endpoint still answers).
    saw_not_ready = False
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and gw.alive():
        try:
            code = gw.get("/health/ready", timeout=1).status_code
        except requests.RequestException:
            break
        if code == 503:
            saw_not_ready = True
            break
        time.sleep(0.02)
    assert saw_not_ready, "/health/ready never answered 503 during shutdown"

    code = gw.wait_exit(15)
    elapsed = time.monotonic() - started
    assert code == 0, f"exit code {code}; stderr:\n{gw.stderr()}"
    assert elapsed < 10 + 1, f"shutdown took {elapsed:.1f}s"
    delivered = [s.span_id for x in ds.requests("traces") for s in x.message.resource_spans[0].scope_spans[0].spans]
    assert sorted(delivered) == sorted(sent), f"{len(delivered)} of {len(sent)} accepted spans delivered"


def test_sigterm_with_a_stuck_backend_exits_0_within_the_shutdown_timeout(gateway, downstream):
    ds = downstream()
    ds.hang()
    gw = gateway(
        {"otlp/down": {"endpoint": ds.endpoint, "timeout": "30s", "retry_on_failure": {"enabled": False}}},
        service={"shutdown_timeout": "2s"},
    )
    for _ in range(3):
        req, _ = simple_trace_request(1)
        assert gw.post("traces", req.SerializeToString()).status_code == 200
    wait_until(lambda: ds.calls >= 1, 5, "the backend to be called")
    started = time.monotonic()
    gw.signal(signal.SIGTERM)
    code = gw.wait_exit(10)
    elapsed = time.monotonic() - started
    assert code == 0, f"exit code {code}; stderr:\n{gw.stderr()}"
    assert elapsed < 2 + 2, f"shutdown took {elapsed:.1f}s with shutdown_timeout 2s"


# ------------------------------------------------------------------------------------ admin


def test_health_status_and_metrics_endpoints(gateway, downstream):
    ds = downstream()
    gw = gateway({"otlp/down": {"endpoint": ds.endpoint}, "debug": {"verbosity": "basic"}})
    assert gw.get("/health/live").status_code == 200
    r = gw.get("/health/ready")
    assert r.status_code == 200 and r.text.strip() == "ready"

    detail = gw.get("/health/detailed")
    assert detail.status_code == 200
    d = detail.json()
    assert d["status"] == "ready"
    assert {(x["name"], x["transport"]) for x in d["receivers"]} == {("otlp", "grpc"), ("otlp", "http")}
    assert {x["name"] for x in d["pipelines"]} == {"traces", "metrics", "logs"}
    assert all(x["status"] == "running" for x in d["pipelines"])
    assert {x["name"] for x in d["exporters"]} == {"otlp/down", "debug"}
    assert all(x["status"] == "ok" for x in d["exporters"])

    version = sluice("--version").stdout
    status = gw.get("/api/v1/status").json()
    assert status["version"] in version and status["commit"] in version
    assert status["status"] == "ready"
    assert {p["name"] for p in status["pipelines"]} == {"traces", "metrics", "logs"}

    m = gw.get("/metrics")
    assert m.status_code == 200 and m.headers["Content-Type"].startswith("text/plain")
    assert re.search(r'^sluice_build_info\{.*version="' + re.escape(status["version"]) + r'".*\} 1$', m.text, re.M), m.text
    # Families that exist before any traffic.
    for family in ("sluice_pipeline_queue_capacity_batches", "sluice_exporter_queue_capacity_batches"):
        assert family in m.text

    req, _ = simple_trace_request(2)
    assert gw.post("traces", req.SerializeToString()).status_code == 200
    ds.wait_for("traces", 1)
    for name in (
        "sluice_receiver_received_records_total",
        "sluice_receiver_accepted_records_total",
    ):
        assert gw.metric(name, receiver="otlp", transport="http", signal="traces") == 2
    gw.wait_metric("sluice_exporter_sent_records_total", 2, exporter="otlp/down", signal="traces")
    gw.wait_metric("sluice_exporter_sent_records_total", 2, exporter="debug", signal="traces")


# ------------------------------------------------------------------------------------ correlation


def test_correlation_id_comes_from_traceparent_then_header_then_is_generated(gateway):
    gw = gateway({"debug": {}})
    body = simple_trace_request(1)[0].SerializeToString()
    trace_id = "0AF7651916CD43DD8448EB211C80319C"
    r = gw.post(
        "traces",
        body,
        headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01", "X-Correlation-ID": "client-given"},
    )
    assert r.status_code == 200
    assert r.headers["X-Correlation-ID"] == trace_id.lower()

    r = gw.post("traces", body, headers={"X-Correlation-ID": "client-given-42"})
    assert r.headers["X-Correlation-ID"] == "client-given-42"

    generated = {gw.post("traces", body).headers["X-Correlation-ID"] for _ in range(3)}
    assert len(generated) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", g) for g in generated), generated

    # Error responses carry it too.
    r = gw.post("traces", body, content_type="text/plain", headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
    assert r.status_code == 415
    assert r.headers["X-Correlation-ID"] == trace_id.lower()


def test_grpc_response_carries_correlation_id(gateway):
    gw = gateway({"debug": {}})
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    body = simple_trace_request(1)[0].SerializeToString()
    with grpc.insecure_channel(gw.grpc_target) as channel:
        call = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        _, info = call.with_call(body, timeout=10, metadata=[("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01")])
    headers = dict(info.initial_metadata())
    assert headers.get("x-correlation-id") == trace_id
