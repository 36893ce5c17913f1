"""Writes a realistic OTLP traces batch (protobuf) for load tests: N spans with 12 attributes
each, resource and scope attributes, a few events; about 480 bytes per span."""

import random
import sys

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def kv(k, v):
    if isinstance(v, bool):
        return common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(bool_value=v))
    if isinstance(v, int):
        return common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(int_value=v))
    return common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))


def batch(spans: int, seed: int = 7, clean: bool = False, sensitive: int = 1) -> bytes:
    """`clean`: nothing the redact plugin's default detectors match (no client IP address).
    Otherwise `sensitive` values per span for them to mask: 1, the client's IP address (as real
    HTTP server spans carry it); 3, also the server's IP address and an e-mail address in the
    URL path, in place of a host name and an order number (the same attributes, so the batch
    keeps its shape)."""
    rnd = random.Random(seed)
    three = not clean and sensitive >= 3
    out = []
    base = 1_700_000_000_000_000_000
    for i in range(spans):
        trace_id = rnd.randbytes(16)
        out.append(
            trace_pb2.Span(
                trace_id=trace_id,
                span_id=rnd.randbytes(8),
                parent_span_id=rnd.randbytes(8) if i % 4 else b"",
                name=f"GET /api/v1/orders/{{id}}/items/{i % 17}",
                kind=trace_pb2.Span.SPAN_KIND_SERVER,
                start_time_unix_nano=base + i * 1_000_000,
                end_time_unix_nano=base + i * 1_000_000 + rnd.randint(100_000, 90_000_000),
                attributes=[
                    kv("http.request.method", "GET"),
                    kv("http.route", "/api/v1/orders/{id}/items"),
                    kv("url.path", f"/api/v1/users/user{rnd.randint(1, 10**6)}@example.com/items" if three
                       else f"/api/v1/orders/{rnd.randint(1, 10**9)}/items"),
                    kv("url.scheme", "https"),
                    kv("http.response.status_code", rnd.choice([200, 200, 200, 201, 404, 500])),
                    kv("server.address", f"10.8.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}" if three
                       else "orders.internal.example"),
                    kv("server.port", 8443),
                    kv("client.address", "frontend" if clean else f"10.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"),
                    kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"),
                    kv("network.protocol.version", "1.1"),
                    kv("app.tenant", f"tenant-{rnd.randint(1, 40)}"),
                    kv("app.cache_hit", rnd.random() < 0.5),
                ],
                events=[
                    trace_pb2.Span.Event(
                        time_unix_nano=base + i * 1_000_000 + 50_000,
                        name="db.query",
                        attributes=[kv("db.rows", rnd.randint(0, 500))],
                    )
                ]
                if i % 3 == 0
                else [],
                status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_OK),
            )
        )
    req = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(
                    attributes=[
                        kv("service.name", "orders"),
                        kv("service.version", "2.14.1"),
                        kv("deployment.environment", "production"),
                        kv("host.name", "orders-7d9f8b6c5-x2k4p"),
                    ]
                ),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=common_pb2.InstrumentationScope(name="io.opentelemetry.http", version="1.27.0"),
                        spans=out,
                    )
                ],
            )
        ]
    )
    return req.SerializeToString()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    sys.stdout.buffer.write(batch(n))
