"""The WebAssembly plugin runtime, driven through the real binary with the `chaos` test plugin
(`tests/plugins/chaos`): what reaches the backend for each mode (byte for byte when the plugin
leaves a batch unchanged), containment of traps, timeouts and memory overruns with the three
`on_error` policies, the breaker, the self-metrics and `/health/detailed`, telemetry a plugin
emits, startup failures, hot reload (file change, SIGHUP, a broken file, no batch lost), the
precompiled-artifact cache, and other pipelines staying unaffected.

The plugin is `$SLUICE_TEST_PLUGINS/sluice_plugin_chaos.wasm` (by default
`target/wasm32-wasip2/release` in the repository); a missing plugin fails the tests. Every
gateway here uses one precompiled-artifact cache, filled once per module, so that each start
does not compile the component again (except in the cache test, which uses a cache of its own).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from support.config import config_for, one_slot_exporter, pipeline, write_config
from support.otlp import grpc_export, kv, new_ids, span, trace_request
from support.polling import wait_until
from support.ports import free_port, port_is_listening
from support.process import REPO, SLUICE_BIN, clean_env

PLUGIN_FILE = "sluice_plugin_chaos.wasm"
PROC = "chaos"
COMPONENT = f"processor/{PROC}"
# Generous bounds for one compile of the component (a debug build of the gateway on a busy
# machine takes seconds) and for answers that must come back "within a couple of seconds".
COMPILE_TIMEOUT = 120.0
PROMPT = 3.0


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def chaos_wasm() -> Path:
    """The chaos plugin, built by `cargo build --release --target wasm32-wasip2 -p
    sluice-plugin-chaos`. Missing, it fails the test (CI builds it), it does not skip."""
    configured = os.environ.get("SLUICE_TEST_PLUGINS")
    base = Path(configured) if configured else REPO / "target" / "wasm32-wasip2" / "release"
    path = (base / PLUGIN_FILE).resolve()
    if not path.is_file():
        where = f"$SLUICE_TEST_PLUGINS={configured}" if configured else "the default plugin directory"
        pytest.fail(
            f"test plugin {PLUGIN_FILE} not found in {where} ({base}): build it with "
            "`cargo build --release --target wasm32-wasip2 -p sluice-plugin-chaos` "
            "or set $SLUICE_TEST_PLUGINS to the directory holding it",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def plugin_cache(tmp_path_factory, chaos_wasm) -> Path:
    """A precompiled-artifact cache shared by the module's gateways, filled once: a `sluice run`
    whose plugin refuses its config compiles (and caches) the component before `init` fails."""
    cache = tmp_path_factory.mktemp("plugin-cache")
    work = tmp_path_factory.mktemp("plugin-cache-fill")
    ports = {"grpc": free_port(), "http": free_port(), "admin": free_port()}
    cfg = with_plugin(
        config_for(ports, {"debug": {}}, pipelines=traces_through_chaos(["debug"])),
        chaos_wasm,
        cache,
        plugin_config={"fail_init": True},
    )
    path = write_config(work / "fill-cache.yaml", cfg)
    subprocess.run(
        [str(SLUICE_BIN), "run", "--config", str(path)],
        capture_output=True,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        timeout=COMPILE_TIMEOUT,
        check=False,
    )
    return cache


# ------------------------------------------------------------------------------------- helpers


def traces_through_chaos(exporters: list[str]) -> dict:
    return {"traces": pipeline(exporters, processors=[PROC])}


def with_plugin(
    cfg: dict,
    plugin: Path | str,
    cache: Path | str,
    *,
    plugin_config: dict | None = None,
    limits: dict | None = None,
    on_error: str | None = None,
    reload_interval: str | None = None,
) -> dict:
    """Adds the `chaos` processor and the plugin settings to a gateway config."""
    processor: dict = {"plugin": str(plugin)}
    if plugin_config is not None:
        processor["config"] = plugin_config
    if limits is not None:
        processor["limits"] = limits
    if on_error is not None:
        processor["on_error"] = on_error
    cfg["processors"] = {PROC: processor}
    plugins = {"cache_dir": str(cache)}
    if reload_interval is not None:
        plugins["reload_interval"] = reload_interval
    cfg["service"]["plugins"] = plugins
    return cfg


def start_chaos(
    gateway,
    ds,
    plugin: Path | str,
    cache: Path | str,
    *,
    pipelines: dict | None = None,
    **plugin_kw,
):
    """A gateway whose `traces` pipeline runs `chaos` and exports to the downstream `ds`."""
    exporters = {"otlp/down": {"endpoint": ds.endpoint, "protocol": "grpc"}}

    def config(ports):
        cfg = config_for(ports, exporters, pipelines=pipelines or traces_through_chaos(["otlp/down"]))
        return with_plugin(cfg, plugin, cache, **plugin_kw)

    return gateway(config=config)


def batch(*names: str) -> tuple[bytes, list[bytes]]:
    """One OTLP trace request with a span per name; its bytes and its span ids."""
    spans = [span(*new_ids(), name) for name in names]
    return trace_request(*spans).SerializeToString(), [s.span_id for s in spans]


def post_spans(gw, *names: str):
    body, ids = batch(*names)
    return gw.post("traces", body), body, ids


def ok_names(n: int, prefix: str = "op") -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def spans_of(message) -> list:
    return [s for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]


def received_spans(ds) -> list:
    return [s for r in ds.requests("traces") for s in spans_of(r.message)]


def processor_status(gw) -> dict:
    r = gw.get("/health/detailed")
    found = [p for p in r.json().get("processors", []) if p.get("name") == PROC]
    assert len(found) == 1, f"/health/detailed has no single processor {PROC!r}: {r.text}"
    return found[0]


def plugin_metric(gw, name: str, **labels) -> float:
    return gw.metric(name, processor=PROC, **labels)


def plugin_lines(gw, name: str) -> str:
    """The exposition lines of one metric, for failure messages."""
    text = gw.get("/metrics").text
    return "\n".join(line for line in text.splitlines() if line.startswith(name)) or f"(no {name} samples)"


def calls(gw, outcome: str | None = None) -> float:
    return plugin_metric(gw, "sluice_plugin_calls_total", **({"outcome": outcome} if outcome else {}))


def errors(gw, kind: str) -> float:
    return plugin_metric(gw, "sluice_plugin_errors_total", kind=kind)


def reloads(gw, result: str) -> float:
    return plugin_metric(gw, "sluice_plugin_reloads_total", result=result)


def chaos_spans_points(ds) -> list[tuple[metrics_pb2.Metric, int]]:
    """Every `chaos.spans` data point the downstream got, in arrival order."""
    points = []
    for r in ds.requests("metrics"):
        for rm in r.message.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == "chaos.spans":
                        points.extend((m, dp.as_int) for dp in m.sum.data_points)
    return points


def wait_count(ds, want: int, timeout: float = 8.0) -> list[int]:
    """Waits until the latest `chaos.spans` the downstream got is `want`; returns all values."""
    wait_until(
        lambda: (p := chaos_spans_points(ds)) and p[-1][1] == want,
        timeout,
        f"chaos.spans = {want} at the downstream (values so far: "
        f"{[v for _, v in chaos_spans_points(ds)][-10:]})",
    )
    return [v for _, v in chaos_spans_points(ds)]


def replace_file(path: Path, content: bytes) -> None:
    """Replaces a file atomically, so the gateway never reads it half written."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def touch_later(path: Path, seconds: int = 2) -> None:
    """Moves the file's mtime forward (a change the gateway's polling must notice)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def local_plugin(tmp_path: Path, chaos_wasm: Path) -> tuple[Path, str]:
    """A copy of the plugin the test may change, and its path relative to the gateway's config
    file (which the gateway fixture writes into `tmp_path`)."""
    (tmp_path / "plugins").mkdir(exist_ok=True)
    path = tmp_path / "plugins" / "chaos.wasm"
    shutil.copyfile(chaos_wasm, path)
    return path, "plugins/chaos.wasm"


# --------------------------------------------------------------------------- data correctness


def test_pass_forwards_the_clients_bytes_and_reports_the_processor(gateway, downstream, chaos_wasm, plugin_cache):
    ds = downstream()
    gw = start_chaos(gateway, ds, chaos_wasm, plugin_cache, plugin_config={"mode": "pass"})
    status = processor_status(gw)
    assert status == {
        "name": PROC,
        "plugin": "chaos",
        "version": status["version"],
        "path": str(chaos_wasm),
        "state": "ok",
        "last_error": None,
        "last_reload_error": None,
        "reloads": 0,
        "config": {"mode": "pass"},
        "history": [],
    }, status
    assert re.fullmatch(r"\d+\.\d+\.\d+", status["version"]), status

    body, _ = batch("GET /a", "GET /b", "GET /c")
    # A field unknown to the OTLP schema: it survives only if the client's bytes are forwarded.
    body += bytes([0xC0, 0x3E, 0x01])
    r = gw.post("traces", body)
    assert r.status_code == 200, r.text
    grpc_body, _ = batch("grpc-op")
    grpc_export(gw.grpc_target, "traces", grpc_body)

    received = ds.wait_for("traces", 2)
    assert sorted(x.raw for x in received) == sorted([body, grpc_body])
    assert calls(gw, "ok") == 2 and calls(gw, "failed") == 0
    assert plugin_metric(gw, "sluice_plugin_records_in_total") == 4
    assert plugin_metric(gw, "sluice_plugin_records_out_total") == 4
    assert plugin_metric(gw, "sluice_plugin_call_duration_seconds_count") == 2


def test_keep_even_keeps_spans_0_2_4_of_an_sdk_batch_with_ids_intact(gateway, downstream, chaos_wasm, plugin_cache):
    ds = downstream()
    gw = start_chaos(gateway, ds, chaos_wasm, plugin_cache, plugin_config={"mode": "keep_even"})

    # Five spans from the official SDK over two instrumentation scopes (3 + 2), sent as one
    # export, so one batch: the kept indices count across scopes (0, 2 of the first, and the
    # second of the second).
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "e2e-keep", "e2e.run": 7}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    a, b = provider.get_tracer("e2e.a", "1.0"), provider.get_tracer("e2e.b", "2.0")
    with a.start_as_current_span("a-0", kind=SpanKind.SERVER, attributes={"i": 0}):
        with a.start_as_current_span("a-1", attributes={"i": 1}) as child:
            child.add_event("evt", {"k": "v"})
        with a.start_as_current_span("a-2", kind=SpanKind.CLIENT, attributes={"i": 2}) as c2:
            c2.set_status(Status(StatusCode.ERROR, "boom"))
    with b.start_as_current_span("b-0", attributes={"i": 3}):
        pass
    with b.start_as_current_span("b-1", kind=SpanKind.PRODUCER, attributes={"i": 4}):
        pass
    provider.shutdown()
    finished = memory.get_finished_spans()
    assert len(finished) == 5

    sent = encode_spans(finished)
    flat = spans_of(sent)
    assert len(flat) == 5
    expected = copy.deepcopy(sent)
    index = 0
    for rs in expected.resource_spans:
        for ss in rs.scope_spans:
            keep = []
            for s in ss.spans:
                if index % 2 == 0:
                    keep.append(s)
                index += 1
            del ss.spans[:]
            ss.spans.extend(keep)

    exporter = GrpcSpanExporter(endpoint=gw.grpc_target, insecure=True, timeout=10)
    try:
        assert exporter.export(finished) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()

    received = ds.wait_for("traces", 1)
    assert len(received) == 1
    got = spans_of(received[0].message)
    assert [s.name for s in got] == [flat[0].name, flat[2].name, flat[4].name]
    assert [(s.trace_id, s.span_id, s.parent_span_id) for s in got] == [
        (s.trace_id, s.span_id, s.parent_span_id) for s in (flat[0], flat[2], flat[4])
    ]
    # Everything else intact too: resource, scopes, attributes, events, status.
    assert received[0].message == expected

    assert calls(gw, "ok") == 1
    assert plugin_metric(gw, "sluice_plugin_records_in_total") == 5
    assert plugin_metric(gw, "sluice_plugin_records_out_total") == 3
    assert gw.metric("sluice_dropped_records_total", component=COMPONENT, reason="filtered") == 2


def test_rename_prefixes_names_and_keeps_everything_else(gateway, downstream, chaos_wasm, plugin_cache):
    ds = downstream()
    gw = start_chaos(
        gateway, ds, chaos_wasm, plugin_cache, plugin_config={"mode": "rename", "prefix": "renamed."}
    )
    t, s1 = new_ids()
    _, s2 = new_ids()
    t3, s3 = new_ids()
    rich = span(
        t,
        s2,
        "child",
        parent_span_id=s1,
        attributes=[kv("http.method", "GET"), kv("n", 3), kv("ratio", 0.5), kv("ok", True)],
        events=[trace_pb2.Span.Event(time_unix_nano=123, name="e", attributes=[kv("k", "v")])],
        links=[trace_pb2.Span.Link(trace_id=t3, span_id=s3, attributes=[kv("why", "batch")])],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="bad"),
    )
    rich.kind = trace_pb2.Span.SPAN_KIND_SERVER
    sent = trace_request(span(t, s1, "parent"), rich)
    sent.resource_spans.append(
        trace_pb2.ResourceSpans(
            resource=resource_pb2.Resource(attributes=[kv("service.name", "other")]),
            scope_spans=[
                trace_pb2.ScopeSpans(
                    scope=common_pb2.InstrumentationScope(name="s2", version="9"),
                    spans=[span(t3, s3, "third")],
                )
            ],
        )
    )
    r = gw.post("traces", sent.SerializeToString())
    assert r.status_code == 200, r.text

    received = ds.wait_for("traces", 1)
    expected = copy.deepcopy(sent)
    for s in spans_of(expected):
        s.name = "renamed." + s.name
    assert [s.name for s in spans_of(received[0].message)] == ["renamed.parent", "renamed.child", "renamed.third"]
    assert received[0].message == expected
    assert plugin_metric(gw, "sluice_plugin_records_out_total") == 3


# ---------------------------------------------------------------------- failures and recovery


@pytest.mark.parametrize(
    "trigger,kind",
    [("chaos:trap", "trap"), ("chaos:loop", "timeout"), ("chaos:alloc", "memory")],
)
def test_a_failure_poisons_the_instance_and_the_next_batch_gets_a_fresh_one(
    trigger, kind, gateway, downstream, chaos_wasm, plugin_cache
):
    ds = downstream()
    gw = start_chaos(
        gateway,
        ds,
        chaos_wasm,
        plugin_cache,
        plugin_config={"mode": "keep_even"},
        limits={"memory_mb": 32, "timeout_ms": 200},
        on_error="drop",
    )
    started = time.monotonic()
    r, _, _ = post_spans(gw, "before", trigger, "after")
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text  # on_error: drop answers the client, and drops
    assert elapsed < PROMPT, f"the {trigger} batch took {elapsed:.2f}s"
    assert errors(gw, kind) == 1
    assert calls(gw, "failed") == 1
    assert gw.metric("sluice_dropped_records_total", component=COMPONENT, reason=kind) == 3
    status = processor_status(gw)
    assert status["state"] == "failing", status
    assert kind in (status["last_error"] or ""), status
    if kind == "timeout":
        # The loop ran until the 200 ms deadline, not the 100 ms default, and no longer.
        took = plugin_metric(gw, "sluice_plugin_call_duration_seconds_sum")
        assert 0.19 <= took < PROMPT, took

    # A fresh instance (re-init) processes the next batch.
    r, _, ids = post_spans(gw, *ok_names(4))
    assert r.status_code == 200, r.text
    ds.wait_records("traces", 2)
    time.sleep(0.2)
    assert [s.span_id for s in received_spans(ds)] == [ids[0], ids[2]]
    assert plugin_metric(gw, "sluice_plugin_restarts_total") == 1
    assert calls(gw, "ok") == 1
    assert processor_status(gw)["state"] == "ok"
    assert gw.alive()


@pytest.mark.parametrize("on_error", ["pass", "drop", "reject"])
def test_on_error_policy_for_a_trapped_batch(on_error, gateway, downstream, chaos_wasm, plugin_cache):
    ds = downstream()
    gw = start_chaos(
        gateway, ds, chaos_wasm, plugin_cache, plugin_config={"mode": "keep_even"}, on_error=on_error
    )
    r, body, _ = post_spans(gw, "a", "chaos:trap", "c")
    grpc_body, _ = batch("chaos:trap")
    grpc_error = None
    try:
        grpc_export(gw.grpc_target, "traces", grpc_body)
    except grpc.RpcError as e:
        grpc_error = e

    if on_error == "pass":
        assert r.status_code == 200, r.text
        assert grpc_error is None, grpc_error
        received = ds.wait_for("traces", 2)
        # Forwarded as the client sent it: all three spans, not filtered.
        assert sorted(x.raw for x in received) == sorted([body, grpc_body])
    elif on_error == "drop":
        assert r.status_code == 200, r.text
        assert grpc_error is None, grpc_error
        assert gw.metric("sluice_dropped_records_total", component=COMPONENT, reason="trap") == 4
    else:
        assert r.status_code == 503, (r.status_code, r.text)
        assert r.headers.get("Retry-After"), r.headers
        assert grpc_error is not None and grpc_error.code() == grpc.StatusCode.UNAVAILABLE, grpc_error
        assert gw.metric("sluice_dropped_records_total", component=COMPONENT) == 0
    assert errors(gw, "trap") == 2
    assert plugin_metric(gw, "sluice_plugin_restarts_total") == 1

    # The next good batch is processed normally by a fresh instance.
    before = len(received_spans(ds))
    r, _, ids = post_spans(gw, *ok_names(3))
    assert r.status_code == 200, r.text
    ds.wait_records("traces", before + 2)
    time.sleep(0.2)
    assert [s.span_id for s in received_spans(ds)[before:]] == [ids[0], ids[2]]
    if on_error != "pass":
        assert len(ds.requests("traces")) == 1, "a failed batch reached the backend"


def test_a_plugin_error_applies_on_error_without_recreating_the_instance(gateway, downstream, chaos_wasm, plugin_cache):
    ds = downstream()
    gw = start_chaos(
        gateway, ds, chaos_wasm, plugin_cache, plugin_config={"mode": "keep_even"}, on_error="drop"
    )
    r, _, _ = post_spans(gw, "a", "chaos:error", "c")
    assert r.status_code == 200, r.text
    assert errors(gw, "plugin_error") == 1
    assert gw.metric("sluice_dropped_records_total", component=COMPONENT, reason="plugin_error") == 3
    assert "chaos:error asked for an error" in (processor_status(gw)["last_error"] or "")

    r, _, ids = post_spans(gw, *ok_names(4))
    assert r.status_code == 200, r.text
    ds.wait_records("traces", 2)
    assert [s.span_id for s in received_spans(ds)] == [ids[0], ids[2]]
    assert plugin_metric(gw, "sluice_plugin_restarts_total") == 0, "a plugin error is not a trap"
    assert plugin_metric(gw, "sluice_plugin_call_duration_seconds_count") == 2
    # Both calls count, the one that returned an error as failed.
    assert (calls(gw, "ok"), calls(gw, "failed")) == (1, 1), plugin_lines(gw, "sluice_plugin_calls_total")


def test_a_batch_over_max_batch_mb_is_not_given_to_the_plugin(gateway, downstream, chaos_wasm, plugin_cache):
    ds = downstream()
    gw = start_chaos(
        gateway,
        ds,
        chaos_wasm,
        plugin_cache,
        plugin_config={"mode": "keep_even"},
        limits={"max_batch_mb": 1},
        on_error="reject",
    )
    t, s = new_ids()
    # 20 values of 60 KB: over 1 MiB in all, each within the receiver's attribute limits.
    blobs = [kv(f"blob{i}", "x" * 60_000) for i in range(20)]
    big = trace_request(span(t, s, "big", attributes=blobs)).SerializeToString()
    r = gw.post("traces", big)
    assert r.status_code == 503, (r.status_code, r.text)
    assert "exceeds" in r.text, r.text
    assert calls(gw) == 0, "the plugin was called with a batch over its limit"
    assert plugin_metric(gw, "sluice_plugin_records_in_total") == 0
    r, _, _ = post_spans(gw, *ok_names(2))
    assert r.status_code == 200, r.text
    ds.wait_records("traces", 1)
    assert not any(sp.name == "big" for sp in received_spans(ds))
    assert errors(gw, "too_large") == 1, plugin_lines(gw, "sluice_plugin_errors_total")


def test_breaker_opens_after_five_consecutive_failures(gateway, downstream, chaos_wasm, plugin_cache):
    ds = downstream()
    gw = start_chaos(
        gateway, ds, chaos_wasm, plugin_cache, plugin_config={"mode": "pass"}, on_error="reject"
    )
    for i in range(5):
        r, _, _ = post_spans(gw, "chaos:trap")
        assert r.status_code == 503, (i, r.status_code, r.text)
    assert errors(gw, "trap") == 5
    assert plugin_metric(gw, "sluice_plugin_breaker_open") == 1
    status = processor_status(gw)
    assert status["state"] == "breaker_open", status

    # While open, even a good batch is not given to the plugin: on_error applies.
    r, _, _ = post_spans(gw, "fine")
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers.get("Retry-After"), r.headers
    assert "breaker" in r.text, r.text
    assert calls(gw, "failed") == 5 and calls(gw, "ok") == 0
    assert plugin_metric(gw, "sluice_plugin_call_duration_seconds_count") == 5
    assert plugin_metric(gw, "sluice_plugin_restarts_total") == 4
    assert ds.requests("traces") == []
    assert errors(gw, "breaker_open") == 1, plugin_lines(gw, "sluice_plugin_errors_total")


def test_loop_with_timeout_200ms_is_answered_promptly_and_repeatedly(gateway, downstream, chaos_wasm, plugin_cache):
    ds = downstream()
    gw = start_chaos(
        gateway,
        ds,
        chaos_wasm,
        plugin_cache,
        plugin_config={"mode": "pass"},
        limits={"memory_mb": 32, "timeout_ms": 200},
        on_error="reject",
    )
    for i in range(3):
        started = time.monotonic()
        r, _, _ = post_spans(gw, "chaos:loop")
        elapsed = time.monotonic() - started
        assert r.status_code == 503, (i, r.status_code, r.text)
        assert elapsed < PROMPT, f"loop batch {i} answered after {elapsed:.2f}s"
    grpc_body, _ = batch("chaos:loop")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(gw.grpc_target, "traces", grpc_body, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < PROMPT
    assert errors(gw, "timeout") == 4
    assert ds.requests("traces") == []


# ------------------------------------------------------------------------------------ emission


def test_count_mode_emits_the_number_of_spans_into_the_metrics_pipeline(gateway, downstream, chaos_wasm, plugin_cache):
    ds = downstream()
    pipelines = {
        **traces_through_chaos(["otlp/down"]),
        "metrics": pipeline(["otlp/down"]),
    }
    gw = start_chaos(
        gateway, ds, chaos_wasm, plugin_cache, pipelines=pipelines, plugin_config={"mode": "count"}
    )
    sent = 0
    for n in (3, 1, 5):
        r, _, _ = post_spans(gw, *ok_names(n))
        assert r.status_code == 200, r.text
        sent += n
    values = wait_count(ds, sent)
    assert values == sorted(values), f"chaos.spans went down: {values}"
    metric, _ = chaos_spans_points(ds)[-1]
    assert metric.unit == "{span}"
    assert metric.sum.is_monotonic
    assert metric.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    # The spans themselves pass unchanged.
    assert len(received_spans(ds)) == sent
    # Emitted metrics are not fed back into the traces pipeline's plugin.
    assert plugin_metric(gw, "sluice_plugin_records_in_total") == sent


def test_count_state_survives_a_trap_through_snapshot_and_restore(gateway, downstream, chaos_wasm, plugin_cache):
    ds = downstream()
    pipelines = {
        **traces_through_chaos(["otlp/down"]),
        "metrics": pipeline(["otlp/down"]),
    }
    gw = start_chaos(
        gateway, ds, chaos_wasm, plugin_cache, pipelines=pipelines, plugin_config={"mode": "count"}
    )
    r, _, _ = post_spans(gw, *ok_names(4))
    assert r.status_code == 200, r.text
    wait_count(ds, 4)  # emitted at a tick, so snapshotted at that tick
    r, _, _ = post_spans(gw, "chaos:trap")
    assert r.status_code == 200, r.text
    assert errors(gw, "trap") == 1
    r, _, _ = post_spans(gw, *ok_names(3))
    assert r.status_code == 200, r.text
    values = wait_count(ds, 7)
    assert values == sorted(values), f"chaos.spans went down: {values}"
    assert plugin_metric(gw, "sluice_plugin_restarts_total") == 1


# ------------------------------------------------------------------------------------- startup


@pytest.mark.parametrize(
    "plugin_config,message",
    [
        ({"fail_init": True}, "fail_init is set"),
        ({"mode": "pass", "no_such_key": 1}, "no_such_key"),
    ],
    ids=["fail_init", "unknown_key"],
)
def test_a_plugin_whose_init_fails_stops_startup(plugin_config, message, gateway, chaos_wasm, plugin_cache):
    def config(ports):
        cfg = config_for(ports, {"debug": {}}, pipelines=traces_through_chaos(["debug"]))
        return with_plugin(cfg, chaos_wasm, plugin_cache, plugin_config=plugin_config)

    gw = gateway(config=config, wait_ready=False)
    code = gw.wait_exit(COMPILE_TIMEOUT)
    assert code not in (None, 0), (code, gw.stderr())
    err = gw.stderr()
    assert re.search(rf"\b{PROC}\b", err) and message in err, err
    assert not port_is_listening(gw.ports["admin"])


def test_a_missing_plugin_file_is_named_relative_to_the_config_file(tmp_path, plugin_cache):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    ports = {"grpc": free_port(), "http": free_port(), "admin": free_port()}
    cfg = with_plugin(
        config_for(ports, {"debug": {}}, pipelines=traces_through_chaos(["debug"])),
        "plugins/missing.wasm",
        plugin_cache,
    )
    path = write_config(conf_dir / "sluice.yaml", cfg)
    r = subprocess.run(
        [str(SLUICE_BIN), "run", "--config", str(path)],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=elsewhere,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert r.returncode != 0, r.stderr
    assert str(conf_dir / "plugins" / "missing.wasm") in r.stderr, r.stderr
    assert not port_is_listening(ports["admin"])


def test_precompiled_artifact_is_cached_and_reused(gateway, downstream, chaos_wasm, tmp_path):
    ds = downstream()
    cache = tmp_path / "fresh-cache"
    exporters = {"otlp/down": {"endpoint": ds.endpoint, "protocol": "grpc"}}

    def config(ports):
        cfg = config_for(ports, exporters, pipelines=traces_through_chaos(["otlp/down"]))
        return with_plugin(cfg, chaos_wasm, cache, plugin_config={"mode": "keep_even"})

    def startup_ms(gw) -> int:
        found = re.findall(r"startup_ms=(\d+)", gw.stderr())
        assert found, gw.stderr()
        return int(found[-1])

    first = gateway(config=config, wait_ready=False)
    first.wait_ready(COMPILE_TIMEOUT)
    artifacts = list(cache.glob("*.cwasm"))
    assert len(artifacts) == 1, list(cache.iterdir()) if cache.exists() else "no cache dir"
    before = artifacts[0].stat()
    first_ms = startup_ms(first)
    assert first.stop() == 0

    second = gateway(config=config, wait_ready=False)
    second.wait_ready(COMPILE_TIMEOUT)
    second_ms = startup_ms(second)
    after = list(cache.glob("*.cwasm"))
    assert after == artifacts, after
    assert (after[0].stat().st_mtime_ns, after[0].stat().st_ino) == (before.st_mtime_ns, before.st_ino), (
        "the cached artifact was rewritten instead of used"
    )
    assert "unusable cached plugin artifact" not in second.stderr(), second.stderr()
    assert second_ms < first_ms, f"startup with the cache {second_ms} ms, without {first_ms} ms"

    r, _, ids = post_spans(second, *ok_names(3))
    assert r.status_code == 200, r.text
    ds.wait_records("traces", 2)
    assert [s.span_id for s in received_spans(ds)] == [ids[0], ids[2]]


# ---------------------------------------------------------------------------------- hot reload


def test_changing_the_file_reloads_the_plugin_and_keeps_its_state(gateway, downstream, chaos_wasm, plugin_cache, tmp_path):
    ds = downstream()
    plugin, relative = local_plugin(tmp_path, chaos_wasm)
    pipelines = {
        **traces_through_chaos(["otlp/down"]),
        "metrics": pipeline(["otlp/down"]),
    }
    gw = start_chaos(
        gateway,
        ds,
        relative,
        plugin_cache,
        pipelines=pipelines,
        plugin_config={"mode": "count"},
        reload_interval="300ms",
    )
    assert processor_status(gw)["path"] == str(plugin), "a relative plugin path is relative to the config file"
    r, _, _ = post_spans(gw, *ok_names(5))
    assert r.status_code == 200, r.text
    wait_count(ds, 5)

    touch_later(plugin)
    gw.wait_metric("sluice_plugin_reloads_total", 1, timeout=5, processor=PROC, result="ok")
    assert processor_status(gw)["reloads"] == 1
    assert "Plugin reloaded" in gw.stderr()
    r, _, _ = post_spans(gw, *ok_names(2))
    assert r.status_code == 200, r.text
    wait_count(ds, 7)

    replace_file(plugin, chaos_wasm.read_bytes())  # a new file (new inode) with the same plugin
    gw.wait_metric("sluice_plugin_reloads_total", 2, timeout=5, processor=PROC, result="ok")
    r, _, _ = post_spans(gw, "one-more")
    assert r.status_code == 200, r.text
    values = wait_count(ds, 8)
    assert values == sorted(values), f"chaos.spans went down across reloads: {values}"
    assert reloads(gw, "failed") == 0
    status = processor_status(gw)
    assert (status["reloads"], status["state"], status["last_reload_error"]) == (2, "ok", None), status


def test_sighup_forces_a_reload_that_keeps_state(gateway, downstream, chaos_wasm, plugin_cache, tmp_path):
    ds = downstream()
    pipelines = {
        **traces_through_chaos(["otlp/down"]),
        "metrics": pipeline(["otlp/down"]),
    }
    gw = start_chaos(
        gateway,
        ds,
        chaos_wasm,
        plugin_cache,
        pipelines=pipelines,
        plugin_config={"mode": "count"},
        reload_interval="1s",
    )
    r, _, _ = post_spans(gw, *ok_names(3))
    assert r.status_code == 200, r.text
    assert reloads(gw, "ok") == 0
    gw.signal(signal.SIGHUP)
    gw.wait_metric("sluice_plugin_reloads_total", 1, timeout=5, processor=PROC, result="ok")
    assert gw.alive()
    assert "SIGHUP" in gw.stderr()
    r, _, _ = post_spans(gw, *ok_names(2))
    assert r.status_code == 200, r.text
    wait_count(ds, 5)
    assert processor_status(gw)["reloads"] == 1


def test_reload_interval_0s_turns_polling_off_and_reloads_nothing_by_itself(gateway, downstream, chaos_wasm, plugin_cache, tmp_path):
    ds = downstream()
    plugin, relative = local_plugin(tmp_path, chaos_wasm)
    gw = start_chaos(
        gateway, ds, relative, plugin_cache, plugin_config={"mode": "pass"}, reload_interval="0s"
    )
    time.sleep(0.5)
    after_start = (reloads(gw, "ok"), processor_status(gw)["reloads"])
    touch_later(plugin)
    time.sleep(1.2)
    after_touch = reloads(gw, "ok")
    gw.signal(signal.SIGHUP)
    gw.wait_metric("sluice_plugin_reloads_total", after_touch + 1, timeout=5, processor=PROC, result="ok")
    assert after_touch == after_start[0], "the file was polled although reload_interval is 0s"
    assert after_start == (0, 0), (
        f"reloads right after startup (metric, /health/detailed): {after_start}, expected none; "
        f"stderr:\n{gw.stderr()}"
    )


def test_a_broken_file_keeps_the_old_plugin_running(gateway, downstream, chaos_wasm, plugin_cache, tmp_path):
    ds = downstream()
    plugin, relative = local_plugin(tmp_path, chaos_wasm)
    gw = start_chaos(
        gateway,
        ds,
        relative,
        plugin_cache,
        plugin_config={"mode": "keep_even"},
        reload_interval="300ms",
    )
    r, _, ids = post_spans(gw, *ok_names(4))
    assert r.status_code == 200, r.text
    ds.wait_records("traces", 2)

    replace_file(plugin, b"\0asm this is not a component")
    gw.wait_metric("sluice_plugin_reloads_total", 1, timeout=5, processor=PROC, result="failed")
    status = processor_status(gw)
    assert status["last_reload_error"] and str(plugin) in status["last_reload_error"], status
    assert (status["state"], status["reloads"]) == ("ok", 0), status
    assert "reload failed" in gw.stderr()

    # The old plugin keeps processing.
    r, _, ids = post_spans(gw, *ok_names(4))
    assert r.status_code == 200, r.text
    ds.wait_records("traces", 4)
    time.sleep(0.2)
    assert [s.span_id for s in received_spans(ds)[2:]] == [ids[0], ids[2]]
    # The same broken file is not retried on every poll.
    time.sleep(1.0)
    assert reloads(gw, "failed") == 1

    # A good file again: reloaded.
    replace_file(plugin, chaos_wasm.read_bytes())
    gw.wait_metric("sluice_plugin_reloads_total", 1, timeout=5, processor=PROC, result="ok")
    assert processor_status(gw)["reloads"] == 1
    r, _, ids = post_spans(gw, *ok_names(4))
    assert r.status_code == 200, r.text
    ds.wait_records("traces", 6)
    assert [s.span_id for s in received_spans(ds)[4:]] == [ids[0], ids[2]]


def test_no_batch_is_lost_while_reloading(gateway, downstream, chaos_wasm, plugin_cache, tmp_path):
    ds = downstream()
    plugin, relative = local_plugin(tmp_path, chaos_wasm)
    gw = start_chaos(
        gateway,
        ds,
        relative,
        plugin_cache,
        plugin_config={"mode": "rename", "prefix": "r-"},
        reload_interval="200ms",
    )
    stop = threading.Event()
    sent_ids: list[bytes] = []
    failures: list[str] = []
    lock = threading.Lock()

    def sender(transport: str) -> None:
        deadline = time.monotonic() + 20
        for i in range(400):
            if stop.is_set() or time.monotonic() > deadline:
                return
            body, ids = batch(f"{transport}-{i}-a", f"{transport}-{i}-b")
            try:
                if transport == "http":
                    r = gw.post("traces", body)
                    if r.status_code != 200:
                        failures.append(f"http {r.status_code} {r.text[:200]}")
                        continue
                else:
                    grpc_export(gw.grpc_target, "traces", body, timeout=10)
            except Exception as e:  # noqa: BLE001 - reported below
                failures.append(f"{transport}: {e!r}")
                continue
            with lock:
                sent_ids.extend(ids)
            time.sleep(0.01)

    threads = [threading.Thread(target=sender, args=(t,), daemon=True) for t in ("http", "grpc")]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(sent_ids) >= 10, 5, "the senders to get going")
        for k in (1, 2, 3):
            touch_later(plugin, seconds=2 * k)
            gw.wait_metric("sluice_plugin_reloads_total", k, timeout=5, processor=PROC, result="ok")
            time.sleep(0.2)
        gw.signal(signal.SIGHUP)
        gw.wait_metric("sluice_plugin_reloads_total", 4, timeout=5, processor=PROC, result="ok")
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert not any(t.is_alive() for t in threads), "a sender did not stop"
    assert failures == [], failures[:5]

    ds.wait_records("traces", len(sent_ids), timeout=10)
    got = received_spans(ds)
    assert sorted(s.span_id for s in got) == sorted(sent_ids), (
        f"sent {len(sent_ids)} spans, the downstream got {len(got)}"
    )
    assert all(s.name.startswith("r-") for s in got), [s.name for s in got if not s.name.startswith("r-")][:5]
    assert plugin_metric(gw, "sluice_plugin_records_in_total") == len(sent_ids)
    assert reloads(gw, "failed") == 0


# ---------------------------------------------------------------------------------- isolation


def logs_request(text: str) -> bytes:
    now = time.time_ns()
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource_pb2.Resource(attributes=[kv("service.name", "e2e-logs")]),
                scope_logs=[
                    logs_pb2.ScopeLogs(
                        log_records=[
                            logs_pb2.LogRecord(
                                time_unix_nano=now,
                                observed_time_unix_nano=now,
                                severity_number=logs_pb2.SEVERITY_NUMBER_INFO,
                                body=common_pb2.AnyValue(string_value=text),
                            )
                        ]
                    )
                ],
            )
        ]
    ).SerializeToString()


def test_other_pipelines_keep_flowing_while_a_plugin_fails(gateway, downstream, chaos_wasm, plugin_cache):
    ds = downstream()
    pipelines = {
        **traces_through_chaos(["otlp/down"]),
        "logs": pipeline(["otlp/down"]),
    }
    gw = start_chaos(
        gateway,
        ds,
        chaos_wasm,
        plugin_cache,
        pipelines=pipelines,
        plugin_config={"mode": "pass"},
        limits={"timeout_ms": 200},
        on_error="reject",
    )
    stop = threading.Event()
    log_results: list[tuple[float, float, int]] = []  # (sent at, latency, status)

    def send_logs() -> None:
        deadline = time.monotonic() + 20
        for i in range(1000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            started = time.monotonic()
            try:
                status = gw.post("logs", logs_request(f"log {i}")).status_code
            except Exception:  # noqa: BLE001 - counted as a failure
                status = -1
            log_results.append((started, time.monotonic() - started, status))
            time.sleep(0.01)

    sender = threading.Thread(target=send_logs, daemon=True)
    sender.start()
    try:
        wait_until(lambda: len(log_results) >= 5, 5, "the log sender to get going")
        trouble_start = time.monotonic()
        trace_statuses = []
        for trigger in ("chaos:trap", "chaos:loop", "chaos:trap", "chaos:loop", "chaos:trap", "fine"):
            r, _, _ = post_spans(gw, trigger)
            trace_statuses.append(r.status_code)
        trouble_end = time.monotonic()
        time.sleep(0.3)
    finally:
        stop.set()
        sender.join(15)
    assert not sender.is_alive()

    assert trace_statuses == [503] * 6, trace_statuses
    assert processor_status(gw)["state"] == "breaker_open"
    statuses = [s for _, _, s in log_results]
    assert statuses and all(s == 200 for s in statuses), statuses
    during = [lat for at, lat, _ in log_results if trouble_start <= at <= trouble_end]
    assert len(during) >= 3, f"only {len(during)} log requests while the plugin failed"
    assert max(lat for _, lat, _ in log_results) < 2.0, sorted(lat for _, lat, _ in log_results)[-5:]
    ds.wait_records("logs", len(log_results), timeout=10)
    assert ds.records("logs") == len(log_results)
    assert ds.requests("traces") == []


def test_the_sandbox_denies_files_environment_sockets_and_clocks(gateway, downstream, chaos_wasm, plugin_cache):
    """The plugin tries to read a file, list the environment, connect to the gateway's own
    OTLP/HTTP port and read the wall clock; it reports what it found in the span name."""
    ds = downstream()
    gw = start_chaos(gateway, ds, chaos_wasm, plugin_cache, plugin_config={"mode": "pass"})
    r, _, _ = post_spans(gw, "chaos:probe", "other")
    assert r.status_code == 200, r.text
    ds.wait_for("traces", 1)
    names = [s.name for s in received_spans(ds)]
    assert "probe:file=denied,env=0,net=denied,clock=0" in names, names
    assert "other" in names
    assert gw.alive()


def stuck_plugin_pipeline(ds, chaos_wasm, plugin_cache, mode: str, shutdown_timeout: str):
    """A gateway config (for `gateway(config=...)`): the `chaos` plugin in `mode` in front of a
    one-slot exporter queue to `ds`, behind a 64-batch pipeline queue."""

    def config(ports):
        cfg = config_for(
            ports,
            one_slot_exporter(ds),
            pipelines={"traces": pipeline(["otlp/down"], processors=[PROC], queue_size=64)},
            service={"shutdown_timeout": shutdown_timeout},
        )
        return with_plugin(cfg, chaos_wasm, plugin_cache, plugin_config={"mode": mode})

    return config


def test_shutdown_timeout_stops_a_plugin_pipeline_stuck_on_a_full_exporter(
    gateway, downstream, chaos_wasm, plugin_cache
):
    """A pipeline with plugins runs on a thread of its own, which aborting a task does not
    reach: at the shutdown timeout it must still stop between batches while clients keep
    sending and its exporter stays full, so the gateway exits 0 in time."""
    import requests

    ds = downstream()
    ds.hang()

    gw = gateway(config=stuck_plugin_pipeline(ds, chaos_wasm, plugin_cache, "pass", "2s"))
    statuses: list[int | None] = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            body, _ = batch("s")
            try:
                statuses.append(gw.post("traces", body, timeout=10).status_code)
            except requests.RequestException:
                statuses.append(None)
                return

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    wait_until(lambda: ds.calls >= 1 and 429 in statuses, 10, "a full exporter and refused clients")
    started = time.monotonic()
    gw.signal(signal.SIGTERM)
    code = gw.wait_exit(20)
    elapsed = time.monotonic() - started
    stop.set()
    for t in threads:
        t.join(15)
    assert code == 0, f"exit code {code}; stderr:\n{gw.stderr()}"
    assert elapsed < 2 + 3, f"shutdown took {elapsed:.1f}s with shutdown_timeout 2s"
    assert 200 in statuses, statuses


def test_exporter_queue_filling_during_processing_refuses_instead_of_dropping(
    gateway, downstream, chaos_wasm, plugin_cache
):
    """Clients pass the receiver's room check together while the exporter's one-batch queue
    still has a slot; by the time the plugin has processed their batches it is full. Those
    clients must be refused (and retry), not told `200` for batches that are then dropped."""
    ds = downstream()
    ds.hang()

    # Decoding and re-encoding 500-span batches keeps each in the plugin for a while.
    gw = gateway(config=stuck_plugin_pipeline(ds, chaos_wasm, plugin_cache, "pass_decoded", "3s"))
    names = [f"s{i}" for i in range(500)]
    accepted: list[bytes] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client():
        for _ in range(5):
            body, ids = batch(*names)
            r = gw.post("traces", body, timeout=10)
            with lock:
                statuses.append(r.status_code)
                if r.status_code == 200:
                    accepted.extend(ids)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(statuses) == 80, statuses
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) > 0 and accepted, statuses
    assert gw.metric("sluice_dropped_records_total") == 0
    assert gw.metric("sluice_receiver_refused_records_total", reason="queue_full") == 500 * statuses.count(429)

    # Everything a client was told was accepted arrives once the backend answers.
    ds.release()
    wait_until(
        lambda: sorted(s.span_id for s in received_spans(ds)) == sorted(accepted),
        15,
        "accepted spans delivered",
    )
    assert gw.metric("sluice_dropped_records_total") == 0
