"""Bad input: every way a request can be wrong, over OTLP/HTTP and OTLP/gRPC. Each case checks
the status, that the message says what is wrong, that the matching
`sluice_receiver_bad_requests_total` reason went up, that the gateway is still alive, and that a
good request right after is accepted and delivered. Also invalid records (partial success) and
backpressure (429 with Retry-After when the queues are full)."""

from __future__ import annotations

import gzip
import json
import socket
import time

import grpc
import pytest
from google.rpc import status_pb2

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from support.config import one_slot_exporter, pipeline
from support.otlp import grpc_export, kv, new_ids, simple_trace_request, span, trace_request
from support.polling import wait_until

MIB = 1024 * 1024

# gRPC status codes as numbers, for google.rpc.Status bodies.
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12


@pytest.fixture
def setup(gateway, downstream):
    """A gateway with a 1 MiB HTTP body limit and a 1 s HTTP read timeout, exporting to a fake
    gRPC backend."""
    ds = downstream()
    gw = gateway(
        {"otlp/down": {"endpoint": ds.endpoint}},
        http_options={"max_request_body_size_mib": 1, "read_timeout": "1s"},
    )
    return gw, ds


def bad_requests(gw, transport: str, reason: str) -> float:
    return gw.metric("sluice_receiver_bad_requests_total", receiver="otlp", transport=transport, reason=reason)


def error_body(response) -> tuple[int, str]:
    """(code, message) of a google.rpc.Status body, JSON or protobuf."""
    ctype = response.headers.get("Content-Type", "")
    if ctype.startswith("application/json"):
        body = response.json()
        return int(body["code"]), body["message"]
    assert ctype.startswith("application/x-protobuf"), ctype
    st = status_pb2.Status.FromString(response.content)
    return st.code, st.message


def assert_still_serving(gw, ds) -> None:
    """The process is alive and takes a good request over both transports right after."""
    assert gw.alive(), f"gateway died; stderr:\n{gw.stderr()}"
    req, ids = simple_trace_request(1, name="after-http")
    before = len(ds.requests("traces"))
    r = gw.post("traces", req.SerializeToString())
    assert r.status_code == 200, r.text
    req2, ids2 = simple_trace_request(1, name="after-grpc")
    grpc_export(gw.grpc_target, "traces", req2.SerializeToString())
    got = ds.wait_for("traces", before + 2)
    delivered = {s.span_id for x in got for s in x.message.resource_spans[0].scope_spans[0].spans}
    assert set(ids) | set(ids2) <= delivered


def raw_http(port: int, head: bytes, body_parts: list[bytes] = (), timeout: float = 10.0) -> tuple[int, dict, bytes, float]:
    """Sends a hand-made HTTP/1.1 request on a fresh socket and reads the response. Returns
    (status, headers, body, seconds until the response began)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        for part in body_parts:
            s.sendall(part)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - started
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    return status, headers, rest[:length], elapsed


# ------------------------------------------------------------------------------------ HTTP

GOOD = simple_trace_request(2)[0].SerializeToString()

HTTP_CASES = {
    # name: (headers, body, status, gRPC code in the Status body, reason, words the message has)
    "malformed-protobuf": (
        {"Content-Type": "application/x-protobuf"},
        b"\xff\xff\xff\xff\xff",
        400,
        INVALID_ARGUMENT,
        "malformed",
        ["ExportTraceServiceRequest"],
    ),
    "truncated-protobuf": (
        {"Content-Type": "application/x-protobuf"},
        GOOD[: len(GOOD) // 2],
        400,
        INVALID_ARGUMENT,
        "malformed",
        ["ExportTraceServiceRequest"],
    ),
    "malformed-json": (
        {"Content-Type": "application/json"},
        b'{"resourceSpans": [',
        400,
        INVALID_ARGUMENT,
        "malformed",
        ["JSON", "ExportTraceServiceRequest"],
    ),
    "json-with-bad-hex-id": (
        {"Content-Type": "application/json"},
        json.dumps(
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz" * 16, "spanId": "ab" * 8, "name": "x"}]}]}]}
        ).encode(),
        400,
        INVALID_ARGUMENT,
        "malformed",
        ["JSON"],
    ),
    "wrong-content-type": (
        {"Content-Type": "text/plain"},
        GOOD,
        415,
        UNIMPLEMENTED,
        "unsupported_media_type",
        ["text/plain", "application/x-protobuf", "application/json"],
    ),
    "no-content-type": (
        {"Content-Type": ""},
        GOOD,
        415,
        UNIMPLEMENTED,
        "unsupported_media_type",
        ["content type", "application/x-protobuf"],
    ),
    "unknown-content-encoding": (
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "br"},
        GOOD,
        415,
        UNIMPLEMENTED,
        "unsupported_encoding",
        ["br", "gzip"],
    ),
    "corrupt-gzip": (
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        b"this is not gzip at all",
        400,
        INVALID_ARGUMENT,
        "corrupt_encoding",
        ["gzip"],
    ),
    "truncated-gzip": (
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        gzip.compress(GOOD)[:-12],
        400,
        INVALID_ARGUMENT,
        "corrupt_encoding",
        ["gzip"],
    ),
    "corrupt-zstd": (
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "zstd"},
        b"\x28\xb5\x2f\xfd garbage after the zstd magic",
        400,
        INVALID_ARGUMENT,
        "corrupt_encoding",
        ["zstd"],
    ),
}


@pytest.mark.parametrize("case", list(HTTP_CASES))
def test_http_bad_request(case, setup):
    gw, ds = setup
    headers, body, status, code, reason, words = HTTP_CASES[case]
    before = bad_requests(gw, "http", reason)
    r = gw.post("traces", body, content_type=headers["Content-Type"], headers=headers)
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("X-Correlation-ID")
    got_code, message = error_body(r)
    assert got_code == code, (got_code, message)
    for w in words:
        assert w.lower() in message.lower(), f"{w!r} not in {message!r}"
    assert bad_requests(gw, "http", reason) == before + 1
    assert gw.metric("sluice_receiver_accepted_records_total", signal="traces") == 0
    assert_still_serving(gw, ds)


def test_http_gzip_bomb_is_refused_quickly(setup):
    gw, ds = setup
    bomb = gzip.compress(b"\0" * (64 * MIB), compresslevel=9)
    assert len(bomb) < 1 * MIB  # small on the wire, so only the decompressed size is over the limit
    before = bad_requests(gw, "http", "too_large")
    started = time.monotonic()
    r = gw.post(
        "traces",
        bomb,
        headers={"Content-Encoding": "gzip"},
        timeout=10,
    )
    elapsed = time.monotonic() - started
    assert r.status_code == 413, (r.status_code, r.text)
    assert elapsed < 5, f"the bomb took {elapsed:.1f}s to refuse"
    code, message = error_body(r)
    assert code == RESOURCE_EXHAUSTED
    assert "limit" in message and str(MIB) in message and "decompress" in message, message
    assert bad_requests(gw, "http", "too_large") == before + 1
    assert_still_serving(gw, ds)


def test_http_declared_body_over_limit_is_refused_before_reading(setup):
    gw, ds = setup
    before = bad_requests(gw, "http", "too_large")
    head = (
        b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
        + f"Content-Length: {2 * MIB}\r\n\r\n".encode()
    )
    status, headers, body, elapsed = raw_http(gw.ports["http"], head)
    assert status == 413
    assert elapsed < 3
    assert headers.get("x-correlation-id")
    st = status_pb2.Status.FromString(body)
    assert st.code == RESOURCE_EXHAUSTED and "limit" in st.message, st
    assert bad_requests(gw, "http", "too_large") == before + 1
    assert_still_serving(gw, ds)


def test_http_chunked_body_over_limit_is_refused(setup):
    gw, ds = setup
    before = bad_requests(gw, "http", "too_large")
    chunk = b"\x0a" * (256 * 1024)
    parts = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(5)] + [b"0\r\n\r\n"]
    head = (
        b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    status, _, body, _ = raw_http(gw.ports["http"], head, parts)
    assert status == 413
    st = status_pb2.Status.FromString(body)
    assert st.code == RESOURCE_EXHAUSTED and "limit" in st.message, st
    assert bad_requests(gw, "http", "too_large") == before + 1
    assert_still_serving(gw, ds)


def test_http_slow_body_times_out_with_408(setup):
    gw, ds = setup
    before = bad_requests(gw, "http", "read_timeout")
    head = (
        b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    status, headers, body, elapsed = raw_http(gw.ports["http"], head, [GOOD[:100]], timeout=10)
    assert status == 408, status
    assert 0.8 <= elapsed < 5, f"408 after {elapsed:.2f}s with read_timeout 1s"
    assert headers.get("x-correlation-id")
    st = status_pb2.Status.FromString(body)
    assert st.code == DEADLINE_EXCEEDED
    assert "did not arrive" in st.message and "1s" in st.message, st.message
    assert bad_requests(gw, "http", "read_timeout") == before + 1
    assert_still_serving(gw, ds)


def test_signal_without_pipeline_is_refused(gateway, downstream):
    ds = downstream()
    gw = gateway(
        {"otlp/down": {"endpoint": ds.endpoint}},
        pipelines={"traces": pipeline(["otlp/down"])},
    )
    logs = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                scope_logs=[logs_pb2.ScopeLogs(log_records=[logs_pb2.LogRecord(body={"string_value": "x"})])]
            )
        ]
    ).SerializeToString()
    r = gw.post("logs", logs)
    assert r.status_code == 404, (r.status_code, r.text)
    _, message = error_body(r)
    assert "logs" in message and "pipeline" in message, message
    assert bad_requests(gw, "http", "no_pipeline") == 1
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(gw.grpc_target, "logs", logs)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "pipeline" in e.value.details()
    assert bad_requests(gw, "grpc", "no_pipeline") == 1
    assert ds.requests("logs") == []
    assert_still_serving(gw, ds)


# ------------------------------------------------------------------------------------ gRPC


def test_grpc_garbage_is_invalid_argument(setup):
    gw, ds = setup
    before = bad_requests(gw, "grpc", "malformed")
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(gw.grpc_target, "traces", b"\xff\xff\xff\xff\xff")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
    assert "ExportTraceServiceRequest" in e.value.details(), e.value.details()
    assert bad_requests(gw, "grpc", "malformed") == before + 1
    assert ds.requests("traces") == []
    assert_still_serving(gw, ds)


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_grpc_message_over_limit_is_resource_exhausted(compressed, setup):
    gw, ds = setup
    t, s = new_ids()
    big = trace_request(span(t, s, "big", attributes=[kv("blob", "x" * (5 * MIB))])).SerializeToString()
    assert len(big) > 4 * MIB
    before = bad_requests(gw, "grpc", "too_large")
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(
            gw.grpc_target,
            "traces",
            big,
            compression=grpc.Compression.Gzip if compressed else None,
        )
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (e.value.code(), e.value.details())
    assert e.value.details(), "no message with RESOURCE_EXHAUSTED"
    assert bad_requests(gw, "grpc", "too_large") == before + 1
    assert ds.requests("traces") == []
    assert_still_serving(gw, ds)


def test_grpc_gzip_request_is_accepted(setup):
    gw, ds = setup
    req, ids = simple_trace_request(3)
    grpc_export(gw.grpc_target, "traces", req.SerializeToString(), compression=grpc.Compression.Gzip)
    (got,) = ds.wait_for("traces", 1)
    assert got.raw == req.SerializeToString()


# ------------------------------------------------------------------------------ partial success


def mixed_request():
    """Two valid spans and one whose trace_id is 8 bytes long."""
    (t1, s1), (t2, s2), (_, s3) = new_ids(), new_ids(), new_ids()
    good = [span(t1, s1, "good-1"), span(t2, s2, "good-2")]
    bad = span(t1[:8], s3, "bad-trace-id")
    return trace_request(good[0], bad, good[1]), [s1, s2], s3


def delivered_span_ids(ds) -> list[bytes]:
    return [s.span_id for x in ds.requests("traces") for rs in x.message.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_http_partial_success_protobuf(setup):
    gw, ds = setup
    req, good_ids, bad_id = mixed_request()
    r = gw.post("traces", req.SerializeToString())
    assert r.status_code == 200, r.text
    resp = trace_service_pb2.ExportTraceServiceResponse.FromString(r.content)
    assert resp.HasField("partial_success")
    assert resp.partial_success.rejected_spans == 1
    assert "trace_id" in resp.partial_success.error_message
    ds.wait_for("traces", 1)
    assert delivered_span_ids(ds) == good_ids
    assert bad_id not in delivered_span_ids(ds)
    assert gw.metric("sluice_receiver_refused_records_total", transport="http", signal="traces", reason="invalid") == 1
    assert gw.metric("sluice_receiver_accepted_records_total", transport="http", signal="traces") == 2
    assert gw.metric("sluice_receiver_received_records_total", transport="http", signal="traces") == 3


def test_http_partial_success_json(setup):
    gw, ds = setup
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "ok"},
                            {"traceId": "0" * 32, "spanId": "eee19b7ec3c1b175", "name": "zero-trace-id"},
                        ]
                    }
                ]
            }
        ]
    }
    r = gw.post("traces", json.dumps(body).encode(), content_type="application/json")
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1, partial
    assert "trace_id" in partial["errorMessage"]
    ds.wait_for("traces", 1)
    assert delivered_span_ids(ds) == [bytes.fromhex("eee19b7ec3c1b174")]


def test_grpc_partial_success_for_bad_span_id_and_bad_log_ids(setup):
    gw, ds = setup
    t, s = new_ids()
    t2, _ = new_ids()
    req = trace_request(span(t, s, "ok"), span(t2, b"\x01\x02\x03\x04", "short-span-id"))
    raw = grpc_export(gw.grpc_target, "traces", req.SerializeToString())
    resp = trace_service_pb2.ExportTraceServiceResponse.FromString(raw)
    assert resp.partial_success.rejected_spans == 1
    assert "span_id" in resp.partial_success.error_message
    ds.wait_for("traces", 1)
    assert delivered_span_ids(ds) == [s]

    logs = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                scope_logs=[
                    logs_pb2.ScopeLogs(
                        log_records=[
                            logs_pb2.LogRecord(body={"string_value": "fine"}),
                            logs_pb2.LogRecord(body={"string_value": "bad"}, trace_id=b"\x01" * 5),
                        ]
                    )
                ]
            )
        ]
    )
    raw = grpc_export(gw.grpc_target, "logs", logs.SerializeToString())
    resp = logs_service_pb2.ExportLogsServiceResponse.FromString(raw)
    assert resp.partial_success.rejected_log_records == 1
    (got,) = ds.wait_for("logs", 1)
    assert [r.body.string_value for r in got.message.resource_logs[0].scope_logs[0].log_records] == ["fine"]
    assert gw.metric("sluice_receiver_refused_records_total", transport="grpc", reason="invalid") == 2


def test_all_records_invalid_is_not_forwarded(setup):
    gw, ds = setup
    t, _ = new_ids()
    req = trace_request(span(t, b"\0" * 8, "zero-span-id"))
    r = gw.post("traces", req.SerializeToString())
    assert r.status_code == 200
    resp = trace_service_pb2.ExportTraceServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_spans == 1
    assert_still_serving(gw, ds)
    assert all(
        s.name != "zero-span-id"
        for x in ds.requests("traces")
        for s in x.message.resource_spans[0].scope_spans[0].spans
    )


# ------------------------------------------------------------------------------ backpressure


def test_backpressure_gives_429_with_retry_after_and_loses_nothing(gateway, downstream):
    ds = downstream()
    ds.hang()
    gw = gateway(
        one_slot_exporter(ds),
        pipelines={"traces": pipeline(["otlp/down"], queue_size=1)},
        service={"shutdown_timeout": "3s"},
    )
    accepted: list[bytes] = []
    refused = None
    refused_records = 0
    for _ in range(30):
        req, ids = simple_trace_request(2, name="bp")
        r = gw.post("traces", req.SerializeToString(), timeout=5)
        if r.status_code == 200:
            accepted.extend(ids)
            continue
        refused = r
        refused_records += len(ids)
        break
    assert refused is not None, f"no refusal after {len(accepted) // 2} accepted requests"
    assert refused.status_code == 429, (refused.status_code, refused.text)
    retry_after = refused.headers.get("Retry-After")
    assert retry_after is not None and int(retry_after) >= 1, refused.headers
    _, message = error_body(refused)
    assert "full" in message and "retry" in message.lower(), message
    assert accepted, "not even the first request was accepted"
    assert gw.metric(
        "sluice_receiver_refused_records_total", receiver="otlp", transport="http", signal="traces", reason="queue_full"
    ) == refused_records

    # gRPC clients get the retryable UNAVAILABLE.
    req, _ = simple_trace_request(1)
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(gw.grpc_target, "traces", req.SerializeToString(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
    assert "full" in e.value.details()
    assert gw.metric("sluice_receiver_refused_records_total", transport="grpc", reason="queue_full") == 1

    # Once the backend answers, everything that was accepted is delivered and nothing dropped.
    ds.release()
    wait_until(lambda: sorted(delivered_span_ids(ds)) == sorted(accepted), 15, "accepted spans delivered")
    assert gw.metric("sluice_dropped_records_total") == 0


def test_concurrent_clients_of_a_full_pipeline_are_held_or_refused_never_dropped(gateway, downstream):
    """Many clients at once against a one-slot exporter queue behind a two-slot pipeline queue:
    every request either gets 200 and its spans are delivered once the backend answers, or is
    refused after being held for room (never accepted and then dropped)."""
    import threading

    ds = downstream()
    ds.hang()
    gw = gateway(
        one_slot_exporter(ds),
        pipelines={"traces": pipeline(["otlp/down"], queue_size=2)},
        service={"shutdown_timeout": "3s"},
    )
    accepted: list[bytes] = []
    statuses: list[int] = []
    held: list[float] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(4):
            req, ids = simple_trace_request(2, name=f"c{n}-{i}")
            started = time.monotonic()
            r = gw.post("traces", req.SerializeToString(), timeout=10)
            with lock:
                statuses.append(r.status_code)
                if r.status_code == 200:
                    accepted.extend(ids)
                else:
                    held.append(time.monotonic() - started)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(statuses) == 48, statuses
    assert set(statuses) <= {200, 429}, statuses
    # One batch sending, one in the exporter queue, one held by the pipeline, two in its queue.
    assert statuses.count(200) == 5, statuses
    # A refused client was held for room first (half a second), not turned away at once.
    assert min(held) >= 0.4, held
    assert gw.metric("sluice_receiver_refused_records_total", reason="queue_full") == 2 * statuses.count(429)
    assert gw.metric("sluice_dropped_records_total") == 0

    ds.release()
    wait_until(lambda: sorted(delivered_span_ids(ds)) == sorted(accepted), 15, "accepted spans delivered")
    assert gw.metric("sluice_dropped_records_total") == 0
    assert gw.alive()
    r = gw.post("traces", simple_trace_request(1)[0].SerializeToString())
    assert r.status_code == 200
