"""Abuse at the edges: decompression bombs that inflate to 4 GiB (gzip and zstd), a snappy
length that lies, 100k attributes in one span, 1 MiB attribute values, and thousands of idle
connections. Each gets a precise answer, the gateway's memory stays bounded, and other clients
keep being served."""

from __future__ import annotations

import resource
import socket
import struct
import time
import zlib

import requests

from support.config import gateway_config, otlp_receiver, pipeline
from support.otlp import kv, new_ids, simple_trace_request, span, trace_request
from support.polling import wait_until
from test_bad_input import error_body
from test_prometheus import _varint, good_write, snappy_block

GIB = 1 << 30
MIB = 1 << 20


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def gzip_bomb(inflated: int) -> bytes:
    """A gzip stream of `inflated` zero bytes, built from one compressed 64 MiB block repeated
    (full flushes make the blocks byte-aligned and independent); the trailer is never reached."""
    chunk = 64 * MIB
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = c.compress(b"")
    block = c.compress(b"\0" * chunk) + c.flush(zlib.Z_FULL_FLUSH)
    return head + block * (inflated // chunk) + c.flush()


def zstd_bomb(inflated: int) -> bytes:
    """A zstd frame of `inflated` zero bytes made of RLE blocks of 128 KiB: 4 bytes each."""
    block = 128 * 1024
    n = inflated // block
    frame = struct.pack("<I", 0xFD2FB528) + bytes([0x00, 0x38])  # no content size; 128 KiB window
    rle = (block << 3) | (1 << 1)
    body = (rle.to_bytes(3, "little") + b"\0") * (n - 1)
    last = (rle | 1).to_bytes(3, "little") + b"\0"
    return frame + body + last


def still_serving(gw, ds) -> None:
    req, ids = simple_trace_request(2)
    assert gw.post("traces", req.SerializeToString()).status_code == 200
    wait_until(
        lambda: any(
            s.span_id in ids
            for r in ds.requests("traces")
            for rs in r.message.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ),
        10,
        "a normal request delivered",
    )


def test_4_gib_gzip_and_zstd_bombs_are_refused_with_bounded_memory(gateway, downstream):
    ds = downstream()
    gw = gateway({"otlp/down": {"endpoint": ds.endpoint}})
    base = rss_mib(gw.pid)
    for encoding, bomb in (("gzip", gzip_bomb(4 * GIB)), ("zstd", zstd_bomb(4 * GIB))):
        assert len(bomb) < 8 * MIB, (encoding, len(bomb))
        started = time.monotonic()
        r = gw.post("traces", bomb, headers={"Content-Encoding": encoding}, timeout=30)
        elapsed = time.monotonic() - started
        assert r.status_code == 413, (encoding, r.status_code, r.text)
        _, message = error_body(r)
        assert "after decompression" in message, message
        assert elapsed < 5, f"{encoding}: {elapsed:.1f}s to refuse"
        print(f"\n{encoding} bomb: {len(bomb)} bytes on the wire, 4 GiB inflated, refused in {elapsed:.2f}s")
    peak = rss_mib(gw.pid, "VmHWM")
    print(f"RSS before {base:.0f} MiB, peak {peak:.0f} MiB")
    # The default limit is 20 MiB after decompression: the bombs cost at most about that.
    assert peak < base + 100, (base, peak)
    assert gw.metric("sluice_receiver_bad_requests_total", reason="too_large", transport="http") == 2
    still_serving(gw, ds)


def test_a_snappy_length_that_lies_is_a_corrupt_body(gateway, downstream):
    ds = downstream()

    def config(ports):
        return gateway_config(
            ports,
            {"otlp/down": {"endpoint": ds.endpoint}},
            receivers={"otlp": otlp_receiver(ports, grpc=False), "prometheus_remote_write": {}},
            pipelines={"metrics": pipeline(["otlp/down"], receivers=["prometheus_remote_write"])},
        )

    gw = gateway(config=config)
    good = snappy_block(good_write("lie"))
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    for lie in (len(good_write("lie")) // 2, len(good_write("lie")) * 2):
        body = _varint(lie) + good[len(_varint(len(good_write("lie")))) :]
        r = requests.post(f"{gw.http_url}/api/v1/write", data=body, headers=headers, timeout=10)
        assert r.status_code == 400, (lie, r.status_code, r.text)
        assert "snappy" in r.text.lower(), r.text
    r = requests.post(f"{gw.http_url}/api/v1/write", data=good, headers=headers, timeout=10)
    assert r.status_code == 204, r.text
    assert gw.metric("sluice_receiver_bad_requests_total", reason="corrupt_encoding") == 2


def test_100k_attributes_are_cut_to_the_limit_and_counted(gateway, downstream):
    ds = downstream()
    gw = gateway({"otlp/down": {"endpoint": ds.endpoint}})
    t, s = new_ids()
    big = span(t, s, "many-attributes", attributes=[kv(f"k{i}", i) for i in range(100_000)])
    body = trace_request(big).SerializeToString()
    assert len(body) < 20 * MIB
    r = gw.post("traces", body, timeout=30)
    assert r.status_code == 200, r.text
    got = ds.wait_for("traces", 1)[0].message.resource_spans[0].scope_spans[0].spans[0]
    assert len(got.attributes) == 128
    assert got.dropped_attributes_count == 100_000 - 128
    assert [a.key for a in got.attributes[:3]] == ["k0", "k1", "k2"]
    assert gw.metric("sluice_receiver_attributes_limited_total", action="dropped") == 100_000 - 128
    print(f"\n100k attributes: {len(body)} bytes in, 128 kept, peak RSS {rss_mib(gw.pid, 'VmHWM'):.0f} MiB")


def test_1_mib_attribute_values_are_truncated_and_the_rest_untouched(gateway, downstream):
    ds = downstream()
    gw = gateway({"otlp/down": {"endpoint": ds.endpoint}})
    t, s = new_ids()
    value = "é" * (MIB // 2)  # 1 MiB of two-byte characters
    sp = span(t, s, "long-value", attributes=[kv("huge", value), kv("small", "ok")])
    r = gw.post("traces", trace_request(sp).SerializeToString(), timeout=30)
    assert r.status_code == 200, r.text
    got = ds.wait_for("traces", 1)[0].message.resource_spans[0].scope_spans[0].spans[0]
    attrs = {a.key: a.value.string_value for a in got.attributes}
    assert attrs["small"] == "ok"
    assert len(attrs["huge"].encode()) == 64 * 1024 and attrs["huge"] == "é" * (32 * 1024)
    assert gw.metric("sluice_receiver_attributes_limited_total", action="truncated") == 1
    # A request within the limits is forwarded byte for byte.
    req, _ = simple_trace_request(3)
    body = req.SerializeToString()
    assert gw.post("traces", body).status_code == 200
    assert ds.wait_for("traces", 2)[1].raw == body


def test_thousands_of_idle_connections_neither_starve_clients_nor_leak(gateway, downstream):
    """Silent connections, and connections that send part of the HTTP/2 preface and stop."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    ds = downstream()
    gw = gateway(
        {"otlp/down": {"endpoint": ds.endpoint}},
        grpc_options={"max_connections": 1000},
        http_options={"max_connections": 1000},
    )
    base = rss_mib(gw.pid)
    idle = []
    try:
        for port in (gw.ports["http"], gw.ports["grpc"]):
            for i in range(1500):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                if port == gw.ports["grpc"] and i % 2:
                    # Half of them start the HTTP/2 preface and stop: still idle.
                    s.sendall(b"PRI * HTTP/2.0\r\n")
                idle.append(s)
        # Over the limit: closed at once and counted; the others are held open for now.
        wait_until(
            lambda: gw.metric("sluice_listener_connections_refused_total", listener="receiver otlp (OTLP/HTTP)") >= 400,
            15,
            "connections beyond max_connections refused",
        )
        open_now = gw.metric("sluice_listener_connections", listener="receiver otlp (OTLP/HTTP)")
        assert open_now <= 1000, open_now
        rss_idle = rss_mib(gw.pid)
        print(f"\n3000 idle connections: RSS {base:.0f} -> {rss_idle:.0f} MiB")
        assert rss_idle < base + 200
        # Idle connections are closed after the header read timeout (10 s from each one's
        # accept; opening the gRPC ones after the HTTP ones can itself take seconds); then
        # clients are served again.
        wait_until(
            lambda: gw.metric("sluice_listener_connections", listener="receiver otlp (OTLP/HTTP)") == 0,
            25,
            "idle HTTP connections closed",
        )
        wait_until(
            lambda: gw.metric("sluice_listener_connections", listener="receiver otlp (OTLP/gRPC)") == 0,
            25,
            "idle gRPC connections closed",
        )
        still_serving(gw, ds)
    finally:
        for s in idle:
            s.close()
