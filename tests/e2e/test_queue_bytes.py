"""Queues bounded in bytes as well as batches: with a backend that takes nothing, large batches
fill a pipeline's and an exporter's queue up to their size limits, then receivers refuse with a
retryable error; memory stays bounded by those limits, not by the number of batches; nothing
acknowledged is lost once the backend takes data again."""

from __future__ import annotations

import threading

from support.config import pipeline
from support.otlp import kv, span, trace_request
from support.polling import wait_until
from test_abuse import rss_mib
from test_bad_input import error_body

# A 1000-span batch of about 0.5 MB, as a busy service's exporter sends at its batch limit.
SPANS = 1000


def big_batch(n: int) -> tuple[bytes, list[bytes]]:
    spans = []
    for i in range(SPANS):
        trace_id = (n + 1).to_bytes(8, "big") + i.to_bytes(8, "big")
        span_id = (n * SPANS + i + 1).to_bytes(8, "big")
        spans.append(span(trace_id, span_id, "GET /api/v1/orders/{id}",
                          attributes=[kv("payload", f"{n}-{i}-" + "x" * 440)]))
    return trace_request(*spans).SerializeToString(), [s.span_id for s in spans]


def stalled_exporter(ds, **queue) -> dict:
    return {"otlp/down": {"endpoint": ds.endpoint, "timeout": "30s", "circuit_breaker": {"enabled": False},
                          "sending_queue": {"num_consumers": 1, **queue}}}


def test_large_batches_fill_the_queues_up_to_their_size_limits_then_are_refused(gateway, downstream):
    ds = downstream()
    ds.hang()
    gw = gateway(stalled_exporter(ds, max_size_mib=4),
                 pipelines={"traces": pipeline(["otlp/down"], queue_max_size_mib=4)})
    body, _ = big_batch(0)
    assert 450_000 < len(body) < 600_000, len(body)
    acked: set[bytes] = set()
    first_refusal = None
    for n in range(60):
        body, ids = big_batch(n)
        r = gw.post("traces", body, timeout=30)
        if r.status_code == 200:
            acked.update(ids)
            continue
        first_refusal = (n, r)
        break
    assert first_refusal is not None, "60 batches of 0.5 MB fit in queues of 4 + 4 MiB"
    n, r = first_refusal
    # Bounded by bytes: far fewer than the 256 + 1000 batches the queues hold by number.
    # 4 MiB each hold about 8 batches, one more is being sent.
    assert 10 <= n <= 24, n
    assert r.status_code == 429, (r.status_code, r.text)
    assert int(r.headers["Retry-After"]) >= 1
    _, message = error_body(r)
    assert "queue" in message and "retry" in message, message
    assert gw.metric("sluice_receiver_refused_records_total", reason="queue_full") == SPANS
    for queue, label in (("pipeline", {"pipeline": "traces"}), ("exporter", {"exporter": "otlp/down"})):
        capacity = gw.metric(f"sluice_{queue}_queue_capacity_bytes", **label)
        assert capacity == 4 << 20
        held = gw.metric(f"sluice_{queue}_queue_bytes", **label)
        assert 3 << 20 <= held <= capacity, (queue, held)
    assert gw.get("/health/live").status_code == 200
    assert gw.metric("sluice_dropped_records_total") == 0

    ds.release()

    def delivered() -> bool:
        got = {s.span_id for req in ds.requests("traces") for rs in req.message.resource_spans
               for ss in rs.scope_spans for s in ss.spans}
        return acked <= got

    wait_until(delivered, 60, "every acknowledged span delivered once the backend takes data")
    body, _ = big_batch(1000)
    assert gw.post("traces", body, timeout=30).status_code == 200


def test_default_queues_keep_a_gateway_with_a_stalled_backend_small(gateway, downstream):
    """The defaults alone (no queue settings) keep the gateway under 256 MiB however large the
    batches: four clients send 0.5 MB batches as fast as they are taken."""
    ds = downstream()
    ds.hang()
    gw = gateway({"otlp/down": {"endpoint": ds.endpoint, "timeout": "30s"}},
                 pipelines={"traces": pipeline(["otlp/down"])})
    bodies = [big_batch(n)[0] for n in range(8)]
    statuses: list[int] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        refused = 0
        for i in range(150):
            r = gw.post("traces", bodies[(k + i) % len(bodies)], timeout=30)
            with lock:
                statuses.append(r.status_code)
            if r.status_code != 200:
                refused += 1
                if refused >= 5:
                    return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads)
    peak = rss_mib(gw.pid, "VmHWM")
    accepted = statuses.count(200)
    print(f"\ndefault queues: {accepted} batches of 0.5 MB accepted, {len(statuses) - accepted} refused, "
          f"peak RSS {peak:.0f} MiB")
    assert set(statuses) <= {200, 429}, set(statuses)
    assert statuses.count(429) >= 20, "the queues filled and receivers refused"
    # 32 MiB + 64 MiB of queued batches: about 190 batches, not 256 + 1000.
    assert accepted < 260, accepted
    assert peak < 256, peak
    assert gw.get("/health/live").status_code == 200
    ds.release()
