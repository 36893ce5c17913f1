"""The `loadbalancing` exporter with real gateways on loopback: a routing gateway in front of
three processing gateways (each forwarding to a fake OTLP backend of its own, so that what each
processing gateway got can be told apart). Sent with the official OpenTelemetry SDK.

- Every span of a trace lands on the same processing gateway, and every span is delivered.
- A fourth backend moves about a quarter of the traces, all of them to the new backend.
- A dead backend's share waits in its own queue and is retried: it arrives once the backend
  is back, while the other backends' shares flow meanwhile.
"""

from __future__ import annotations

import time

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from support.config import gateway_config, otlp_receiver, pipeline
from support.polling import wait_until
from support.ports import free_port

TRACES = 300
SPANS_PER_TRACE = 3


def sdk_traces(count: int, service: str = "shop") -> list:
    """`count` traces of three spans each, made with the SDK."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("e2e.loadbalancing", "1.0")
    for i in range(count):
        with tracer.start_as_current_span(f"GET /item/{i}", kind=SpanKind.SERVER):
            with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT):
                pass
            with tracer.start_as_current_span("render"):
                pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def send(gw, spans: list, batch: int = 50) -> None:
    exporter = OTLPSpanExporter(endpoint=gw.grpc_target, insecure=True, timeout=10)
    try:
        for i in range(0, len(spans), batch):
            assert exporter.export(spans[i : i + batch]) == SpanExportResult.SUCCESS, gw.stderr()[-2000:]
    finally:
        exporter.shutdown()


def traces_at(ds) -> dict[str, int]:
    """trace id (hex) -> spans of it that reached `ds`."""
    out: dict[str, int] = {}
    for r in ds.requests("traces"):
        for rs in r.message.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    key = sp.trace_id.hex()
                    out[key] = out.get(key, 0) + 1
    return out


def processing_gateway(gateway, ds, port: int | None = None):
    """A gateway that forwards traces to the fake backend `ds`."""

    def config(ports):
        if port is not None:
            ports["grpc"] = port
        return gateway_config(
            ports,
            {"otlp/down": {"endpoint": ds.endpoint, "protocol": "grpc"}},
            receivers={"otlp": otlp_receiver(ports, grpc=True, http=True)},
            pipelines={"traces": pipeline(["otlp/down"])},
            shutdown_timeout="10s",
        )

    return gateway(config=config)


def routing_gateway(gateway, backends: list[str], **otlp):
    def config(ports):
        return gateway_config(
            ports,
            {
                "loadbalancing": {
                    "protocol": {"otlp": {"timeout": "2s", **otlp}},
                    "resolver": {"static": {"hostnames": backends}},
                }
            },
            receivers={"otlp": otlp_receiver(ports, grpc=True, http=True)},
            pipelines={"traces": pipeline(["loadbalancing"])},
            shutdown_timeout="10s",
        )

    return gateway(config=config)


def owner(stores: list[dict[str, int]]) -> dict[str, int]:
    """trace id -> index of the backend that got it; fails if a trace was split."""
    where: dict[str, int] = {}
    for i, got in enumerate(stores):
        for t in got:
            assert t not in where, f"trace {t} reached backends {where[t]} and {i}"
            where[t] = i
    return where


def test_every_span_of_a_trace_reaches_the_same_backend(gateway, downstream):
    downs = [downstream() for _ in range(3)]
    backends = [processing_gateway(gateway, ds) for ds in downs]
    router = routing_gateway(gateway, [f"127.0.0.1:{b.ports['grpc']}" for b in backends])
    spans = sdk_traces(TRACES)
    send(router, spans)

    wait_until(lambda: sum(sum(traces_at(d).values()) for d in downs) >= len(spans), 20,
               "every span at some backend")
    stores = [traces_at(d) for d in downs]
    where = owner(stores)
    assert len(where) == TRACES
    assert all(n == SPANS_PER_TRACE for got in stores for n in got.values()), "whole traces"
    shares = [len(s) for s in stores]
    assert all(TRACES / 3 * 0.7 < n < TRACES / 3 * 1.3 for n in shares), shares
    assert router.metric("sluice_exporter_backends", exporter="loadbalancing") == 3


def test_a_new_backend_takes_about_a_quarter_of_the_traces(gateway, downstream):
    downs = [downstream() for _ in range(4)]
    backends = [processing_gateway(gateway, ds) for ds in downs]
    addresses = [f"127.0.0.1:{b.ports['grpc']}" for b in backends]
    spans = sdk_traces(TRACES)

    three = routing_gateway(gateway, addresses[:3])
    send(three, spans)
    wait_until(lambda: sum(sum(traces_at(d).values()) for d in downs) >= len(spans), 20, "first round")
    before = owner([traces_at(d) for d in downs])
    for d in downs:
        d.received["traces"].clear()

    # The same traces again (as if their remaining spans came later), through a router that
    # knows a fourth backend.
    four = routing_gateway(gateway, addresses)
    send(four, spans)
    wait_until(lambda: sum(sum(traces_at(d).values()) for d in downs) >= len(spans), 20, "second round")
    after = owner([traces_at(d) for d in downs])
    moved = [t for t in before if after[t] != before[t]]
    assert all(after[t] == 3 for t in moved), "traces move only to the new backend"
    share = len(moved) / TRACES
    assert 0.15 < share < 0.35, share


def test_a_dead_backends_share_is_retried_and_the_others_flow(gateway, downstream):
    downs = [downstream() for _ in range(3)]
    backends = [processing_gateway(gateway, ds) for ds in downs]
    addresses = [f"127.0.0.1:{b.ports['grpc']}" for b in backends]
    router = routing_gateway(
        gateway, addresses,
        retry_on_failure={"initial_interval": "100ms", "max_interval": "500ms", "max_elapsed_time": "60s"},
        circuit_breaker={"enabled": False},
    )
    dead_port = backends[2].ports["grpc"]
    backends[2].stop()

    spans = sdk_traces(TRACES)
    send(router, spans)
    # The live backends get their shares while the dead one's waits.
    wait_until(lambda: len(traces_at(downs[0])) > 0 and len(traces_at(downs[1])) > 0, 20, "live shares")
    time.sleep(1.0)
    assert traces_at(downs[2]) == {}
    delivered_live = sum(sum(traces_at(d).values()) for d in downs[:2])
    assert delivered_live < len(spans)

    # The backend comes back on its address: its share arrives from the router's retries.
    processing_gateway(gateway, downs[2], port=dead_port)
    wait_until(lambda: sum(sum(traces_at(d).values()) for d in downs) >= len(spans), 30,
               "the dead backend's share after it came back")
    where = owner([traces_at(d) for d in downs])
    assert len(where) == TRACES
    assert router.metric("sluice_exporter_backends", exporter="loadbalancing") == 3


def test_backends_from_a_dns_name(gateway, downstream):
    """`resolver.dns`: the backends are the addresses `localhost` resolves to (the system
    resolver; no DNS server runs here), re-resolved every interval."""
    ds = downstream()
    backend = processing_gateway(gateway, ds)

    def config(ports):
        return gateway_config(
            ports,
            {
                "loadbalancing": {
                    "protocol": {"otlp": {"timeout": "2s", "retry_on_failure": {"enabled": False}}},
                    "resolver": {"dns": {"hostname": "localhost", "port": backend.ports["grpc"],
                                         "interval": "200ms"}},
                }
            },
            pipelines={"traces": pipeline(["loadbalancing"])},
            shutdown_timeout="10s",
        )

    router = gateway(config=config)
    wait_until(lambda: router.metric("sluice_exporter_backends", exporter="loadbalancing") >= 1, 10,
               "localhost resolved")
    spans = sdk_traces(60)
    send(router, spans)
    # The backend listens on 127.0.0.1; traces hashed to another address of localhost (::1),
    # if it has one, are dropped without retries here.
    resolved = router.metric("sluice_exporter_backends", exporter="loadbalancing")
    if resolved == 1:
        wait_until(lambda: sum(traces_at(ds).values()) == len(spans), 20, "every span through the backend")
    else:
        wait_until(lambda: len(traces_at(ds)) > 0, 20, "traces through the resolved backend")
        time.sleep(1.0)
    assert all(n == SPANS_PER_TRACE for n in traces_at(ds).values())
    # Resolved again every 200 ms to the same answer: not counted as a change.
    assert router.metric("sluice_exporter_backend_changes_total", exporter="loadbalancing") == 0
