"""`sluice loadgen` against a running gateway: what it reports matches what the gateway counted."""

from __future__ import annotations

import json
import subprocess

from support.config import one_slot_exporter, pipeline
from support.ports import free_port
from support.process import SLUICE_BIN, clean_env


def loadgen(*args: str, timeout: float = 60) -> tuple[int, dict, str]:
    r = subprocess.run(
        [str(SLUICE_BIN), "loadgen", "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
    )
    summary = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
    return r.returncode, summary, r.stderr


def test_loadgen_summary_matches_what_the_gateway_accepted(gateway):
    gw = gateway({"blackhole": {}})
    code, grpc_run, err = loadgen(
        "--endpoint", f"http://{gw.grpc_target}", "--protocol", "grpc",
        "--signal", "traces", "--rate", "2000", "--duration", "2s", "--batch-size", "50",
    )
    assert code == 0, err
    # 2000 spans/s for 2 s in batches of 50: 80 requests on a fixed schedule.
    assert grpc_run["requests"] == 80, grpc_run
    assert grpc_run["sent_records"] == grpc_run["accepted_records"] == 4000
    assert grpc_run["refused_records"] == grpc_run["error_records"] == 0
    assert 0 < grpc_run["latency_ms"]["p50"] <= grpc_run["latency_ms"]["p99"] <= grpc_run["latency_ms"]["max"]
    assert gw.metric("sluice_receiver_accepted_records_total", transport="grpc", signal="traces") == 4000

    code, http_run, err = loadgen(
        "--endpoint", gw.http_url, "--protocol", "http", "--signal", "logs",
        "--rate", "0", "--duration", "1s", "--concurrency", "2",
    )
    assert code == 0, err
    assert http_run["accepted_records"] > 0 and http_run["accepted_records"] % 100 == 0
    gw.wait_metric("sluice_exporter_sent_records_total", http_run["accepted_records"], exporter="blackhole", signal="logs")
    assert gw.metric("sluice_receiver_accepted_records_total", transport="http", signal="logs") == http_run["accepted_records"]

    code, metrics_run, err = loadgen(
        "--endpoint", f"http://{gw.grpc_target}", "--signal", "metrics", "--series", "3000",
        "--batch-size", "500", "--rate", "0", "--duration", "1s",
    )
    assert code == 0, err
    assert metrics_run["accepted_records"] >= 3000, "every series at least once"


def test_loadgen_reports_refusals_and_errors(gateway, downstream):
    ds = downstream()
    ds.hang()
    gw = gateway(
        one_slot_exporter(ds),
        pipelines={"traces": pipeline(["otlp/down"], queue_size=1)},
        service={"shutdown_timeout": "2s"},
    )
    code, run, err = loadgen(
        "--endpoint", gw.http_url, "--protocol", "http", "--rate", "5000", "--duration", "1s",
    )
    assert run["refused_records"] > 0, run
    assert run["accepted_records"] > 0, run
    assert "429" in (run["last_error"] or ""), run
    refused = gw.metric("sluice_receiver_refused_records_total", transport="http", reason="queue_full")
    assert refused == run["refused_records"]

    # Nothing listening: every record is an error, and the exit code says so.
    code, run, err = loadgen("--endpoint", f"http://127.0.0.1:{free_port()}", "--rate", "500", "--duration", "1s")
    assert code == 1
    assert run["accepted_records"] == 0 and run["error_records"] == run["sent_records"] > 0
    assert run["last_error"]


def test_loadgen_refuses_bad_arguments():
    r = subprocess.run([str(SLUICE_BIN), "loadgen", "--batch-size", "0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 64 and "--batch-size" in r.stderr
    r = subprocess.run([str(SLUICE_BIN), "loadgen", "--duration", "soon"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "soon" in r.stderr
