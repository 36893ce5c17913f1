"""The disk sending queue (`sending_queue.storage`): every batch a client was told was accepted
survives `kill -9`; damage on disk (a flipped byte, a deleted segment, a torn tail) is skipped
and counted while the rest is delivered; a full disk refuses new data with a retryable error and
loses nothing."""

from __future__ import annotations

import resource
import signal
import struct
import time
from pathlib import Path

import grpc
import pytest

from support.config import config_for, pipeline
from support.otlp import grpc_export, simple_trace_request
from support.polling import wait_until
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from test_bad_input import error_body

TRACES_ONLY = {"traces": pipeline(["otlp/down"])}
QUEUE_DIR = "otlp_down"


def disk_exporter(endpoint: str, storage: Path, **queue) -> dict:
    return {
        "otlp/down": {
            "endpoint": endpoint,
            "retry_on_failure": {"initial_interval": "50ms", "max_interval": "200ms", "max_elapsed_time": "120s"},
            "circuit_breaker": {"enabled": False},
            "sending_queue": {"storage": str(storage), "segment_size_kib": 64, **queue},
        }
    }


def config_maker(endpoint: str, storage: Path, service: dict | None = None, **queue):
    return lambda ports: config_for(
        ports, disk_exporter(endpoint, storage, **queue), pipelines=TRACES_ONLY, service=service
    )


def span_ids(ds) -> list[bytes]:
    out = []
    for r in ds.requests("traces"):
        for rs in r.message.resource_spans:
            for ss in rs.scope_spans:
                out.extend(s.span_id for s in ss.spans)
    return out


def wait_delivered(ds, wanted: set[bytes], timeout: float) -> None:
    wait_until(lambda: wanted <= set(span_ids(ds)), timeout, f"{len(wanted)} acknowledged spans downstream")


def segment_records(path: Path) -> list[list[bytes]]:
    """The span ids of each intact record of a segment file (the format in disk_queue.rs)."""
    data = path.read_bytes()
    records = []
    pos = 0
    while pos + 12 <= len(data) and data[pos : pos + 4] == b"SLQ1":
        (length,) = struct.unpack_from("<I", data, pos + 4)
        payload = data[pos + 12 : pos + 12 + length]
        if len(payload) < length:
            break
        at = 1 + 1 + 8 + 4
        (tenant_len,) = struct.unpack_from("<H", payload, at)
        at += 2 + tenant_len
        (corr_len,) = struct.unpack_from("<H", payload, at)
        at += 2 + corr_len
        req = trace_service_pb2.ExportTraceServiceRequest.FromString(payload[at:])
        records.append([s.span_id for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans])
        pos += 12 + length
    return records


def test_kill_9_during_export_loses_no_acknowledged_span(gateway, downstream, tmp_path):
    ds = downstream()
    ds.delay = 0.05  # a slow backend: a backlog builds up in the disk queue
    make = config_maker(ds.endpoint, tmp_path / "queue")
    gw = gateway(config=make)
    acked: list[bytes] = []
    sent = 0
    for _ in range(60):
        req, ids = simple_trace_request(20)
        sent += len(ids)
        r = gw.post("traces", req.SerializeToString())
        assert r.status_code == 200, (r.status_code, r.text)
        acked.extend(ids)
    backlog = gw.metric("sluice_exporter_queue_depth_batches", exporter="otlp/down")
    gw.signal(signal.SIGKILL)
    assert gw.wait_exit(5) == -signal.SIGKILL
    assert backlog > 0, "the kill must happen while batches wait to be exported"
    delivered_before_kill = len(set(span_ids(ds)))
    assert delivered_before_kill < len(acked)

    gw2 = gateway(config=make)
    recovered = gw2.metric("sluice_exporter_queue_disk_recovered_batches_total", exporter="otlp/down")
    assert recovered >= 1
    for _ in range(10):
        req, ids = simple_trace_request(20)
        sent += len(ids)
        assert gw2.post("traces", req.SerializeToString()).status_code == 200
        acked.extend(ids)
    wait_delivered(ds, set(acked), timeout=60)
    received = span_ids(ds)
    duplicates = len(received) - len(set(received))
    print(
        f"\nkill -9: sent {sent} spans, acknowledged {len(acked)}, delivered {len(set(received))} distinct "
        f"({duplicates} duplicates); backlog at kill {backlog:.0f} batches, {recovered:.0f} recovered"
    )
    assert set(received) == set(acked)


def test_damaged_segments_are_skipped_counted_and_the_rest_delivered(gateway, downstream, tmp_path):
    storage = tmp_path / "queue"
    dead = downstream()
    dead.always_fail = True
    gw = gateway(config=config_maker(dead.endpoint, storage, segment_size_kib=4))
    acked: list[bytes] = []
    for _ in range(30):
        req, ids = simple_trace_request(10)
        assert gw.post("traces", req.SerializeToString()).status_code == 200
        acked.extend(ids)
    gw.signal(signal.SIGKILL)
    gw.wait_exit(5)

    segments = sorted((storage / QUEUE_DIR).glob("*.seg"))
    assert len(segments) >= 4, segments
    per_segment = [segment_records(p) for p in segments]
    assert sorted(i for seg in per_segment for rec in seg for i in rec) == sorted(acked)
    lost: set[bytes] = set()
    # A flipped byte inside the second record of the first segment.
    data = bytearray(segments[0].read_bytes())
    (first_len,) = struct.unpack_from("<I", data, 4)
    data[12 + first_len + 12 + 40] ^= 0xFF
    segments[0].write_bytes(bytes(data))
    lost.update(per_segment[0][1])
    # A deleted segment.
    segments[1].unlink()
    lost.update(i for rec in per_segment[1] for i in rec)
    # A torn tail: the last write cut short.
    tail = segments[-1].read_bytes()
    segments[-1].write_bytes(tail[:-5])
    lost.update(per_segment[-1][-1])

    ds = downstream()
    gw2 = gateway(config=config_maker(ds.endpoint, storage, segment_size_kib=4))
    for kind in ("checksum", "missing_segment", "torn_tail"):
        assert gw2.metric("sluice_exporter_queue_disk_corruptions_total", exporter="otlp/down", kind=kind) == 1, kind
    expected = set(acked) - lost
    wait_delivered(ds, expected, timeout=30)
    # Still accepting writes.
    req, ids = simple_trace_request(5)
    assert gw2.post("traces", req.SerializeToString()).status_code == 200
    wait_delivered(ds, expected | set(ids), timeout=15)
    assert set(span_ids(ds)) == expected | set(ids)
    print(f"\ndamage: {len(acked)} spans on disk, {len(lost)} in damaged records, {len(expected)} delivered")


def test_a_full_queue_refuses_with_a_retryable_error_and_loses_nothing(gateway, downstream, tmp_path):
    ds = downstream()
    ds.always_fail = True
    gw = gateway(config=config_maker(ds.endpoint, tmp_path / "queue", max_size_mib=1))
    acked: list[bytes] = []
    refused = None
    for _ in range(200):
        req, ids = simple_trace_request(200)
        r = gw.post("traces", req.SerializeToString())
        if r.status_code != 200:
            refused = r
            break
        acked.extend(ids)
    assert refused is not None, "a 1 MiB queue must fill up"
    assert refused.status_code == 503, (refused.status_code, refused.text)
    assert int(refused.headers["Retry-After"]) >= 1
    _, message = error_body(refused)
    assert "disk queue" in message and "retry" in message, message
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(gw.grpc_target, "traces", simple_trace_request(200)[0].SerializeToString(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert gw.metric("sluice_receiver_refused_records_total", reason="storage_full") >= 200
    assert gw.metric("sluice_exporter_queue_disk_bytes", exporter="otlp/down") <= 1 << 20
    # The backend recovers: the backlog drains and new data is taken again.
    ds.always_fail = False
    wait_delivered(ds, set(acked), timeout=60)
    wait_until(lambda: gw.post("traces", simple_trace_request(1)[0].SerializeToString()).status_code == 200, 10, "accepting again")
    print(f"\nfull queue: {len(acked)} spans acknowledged before the 1 MiB cap, all delivered after recovery")


def _file_size_limit(limit: int):
    def apply() -> None:
        # A write past the limit fails with EFBIG, as a full file system fails with ENOSPC.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_failing_disk_write_refuses_the_batch_and_the_queue_carries_on(gateway, downstream, tmp_path):
    ds = downstream()
    gw = gateway(
        config=config_maker(ds.endpoint, tmp_path / "queue", segment_size_kib=8192),
        preexec_fn=_file_size_limit(256 * 1024),
    )
    acked: list[bytes] = []
    statuses = []
    for _ in range(40):
        req, ids = simple_trace_request(200)
        r = gw.post("traces", req.SerializeToString())
        statuses.append(r.status_code)
        if r.status_code == 200:
            acked.extend(ids)
        else:
            assert r.status_code == 503, r.text
            _, message = error_body(r)
            assert "disk queue" in message, message
    assert 503 in statuses, statuses
    first_failure = statuses.index(503)
    assert 200 in statuses[first_failure + 1 :], f"the queue must take data again after a failed write: {statuses}"
    assert gw.metric("sluice_exporter_queue_disk_write_errors_total", exporter="otlp/down", reason="full") >= 1
    assert "File too large" in gw.stderr()
    wait_delivered(ds, set(acked), timeout=30)
    assert gw.alive()


def test_graceful_shutdown_keeps_what_it_could_not_deliver(gateway, downstream, tmp_path):
    storage = tmp_path / "queue"
    dead = downstream()
    dead.always_fail = True
    gw = gateway(config=config_maker(dead.endpoint, storage, service={"shutdown_timeout": "1s"}))
    acked: list[bytes] = []
    for _ in range(5):
        req, ids = simple_trace_request(10)
        assert gw.post("traces", req.SerializeToString()).status_code == 200
        acked.extend(ids)
    started = time.monotonic()
    assert gw.stop(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert "stay in the disk queue" in gw.stderr()
    ds = downstream()
    gateway(config=config_maker(ds.endpoint, storage))
    wait_delivered(ds, set(acked), timeout=20)
    assert dead.requests("traces") == []
