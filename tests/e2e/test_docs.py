"""The user documentation (`docs/*.md`) agrees with the gateway.

- `docs/metrics.md`, section "Gateway self-metrics" (up to "Metrics that plugins emit"):
  a real gateway, with a plugin in a pipeline and a little traffic of every kind sent through it
  (good and invalid records, bad requests, a plugin trap, a dead backend, a plugin reload),
  exposes on its admin `/metrics` only `sluice_*` families that are documented there, with the
  documented type, only documented labels, and only label values (reasons, kinds, outcomes...)
  that the section names. Every family the gateway source declares is documented, and every
  `sluice_*` name the section mentions (tables and PromQL) exists in the gateway source.
- `docs/metrics.md`, section "Metrics that plugins emit": every OTLP metric name listed is one
  that plugin's source emits.
- Every PromQL block in `docs/*.md` parses (`promtool check rules`).
- Every YAML block in `docs/*.md` that is a complete Sluice config — `receivers:` and `service:`
  at the top level, and not marked as a Collector config by a first line starting
  `# OpenTelemetry Collector` — passes `sluice validate`. Built-in plugins are found in
  `$SLUICE_TEST_PLUGINS` (default `target/wasm32-wasip2/release`), compiled once into a cache
  shared by the module (`$SLUICE_TEST_PLUGIN_CACHE` keeps it between runs); `${env:NAME}` in a
  config is given a dummy value.

The runtime check uses the `chaos` test plugin (`tests/plugins/chaos`), like `test_plugins.py`;
a missing plugin fails the tests.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import grpc
import pytest
import requests

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from support.config import gateway_config, otlp_receiver, pipeline, write_config
from support.exposition import parse_prometheus
from support.otlp import grpc_export, kv, new_ids, span, trace_request
from support.polling import wait_until
from support.ports import free_port
from support.process import REPO, SLUICE_BIN, clean_env
from support.prometheus import prometheus_tool

DOCS = REPO / "docs"
METRICS_DOC = DOCS / "metrics.md"
GATEWAY_SRC = REPO / "gateway" / "src"
PLUGINS_SRC = REPO / "plugins"

GATEWAY_SECTION = "## Gateway self-metrics"
PLUGIN_SECTION = "## Metrics that plugins emit"
COLLECTOR_MARK = "# OpenTelemetry Collector"

# Labels whose values are a fixed vocabulary the documentation must spell out.
ENUMERATED_LABELS = ("reason", "kind", "outcome", "result", "retryable", "transport", "signal")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

CHAOS = "sluice_plugin_chaos.wasm"
COMPILE_TIMEOUT = 180.0
WAIT = 15.0

_ROW = re.compile(r"^\|\s*`(sluice_[a-z_]+)`\s*\|\s*(counter|gauge|histogram)\s*\|([^|]*)\|", re.M)
_PLUGIN_ROW = re.compile(r"^\|\s*`([a-z_]+)`\s*\|\s*`([a-z_.]+)`\s*\|\s*`([a-z_]+)`\s*\|", re.M)
_NAME = re.compile(r"\bsluice_[a-z_]+\b")
_FENCE = re.compile(r"^```([A-Za-z]*)[^\n]*\n(.*?)^```", re.M | re.S)


# ------------------------------------------------------------------------------------ helpers


def plugin_base() -> Path:
    configured = os.environ.get("SLUICE_TEST_PLUGINS")
    return (Path(configured) if configured else REPO / "target" / "wasm32-wasip2" / "release").resolve()


def sections() -> tuple[str, str]:
    """The gateway section and the plugin section of docs/metrics.md."""
    text = METRICS_DOC.read_text()
    assert GATEWAY_SECTION in text, f"{METRICS_DOC} has no {GATEWAY_SECTION!r} section"
    assert PLUGIN_SECTION in text, f"{METRICS_DOC} has no {PLUGIN_SECTION!r} section"
    start = text.index(GATEWAY_SECTION)
    split = text.index(PLUGIN_SECTION)
    assert start < split, "the gateway section must come before the plugin section"
    return text[start:split], text[split:]


def documented_gateway_metrics() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) from the gateway section's tables."""
    gateway, _ = sections()
    rows: dict[str, tuple[str, set[str]]] = {}
    for name, kind, labels in _ROW.findall(gateway):
        assert name not in rows, f"{name} is documented twice"
        rows[name] = (kind, set(re.findall(r"`([a-z_]+)`", labels)))
    assert len(rows) >= 20, f"only {len(rows)} metric rows found in {METRICS_DOC}: is the table format intact?"
    return rows


def declared_in_source() -> set[str]:
    """Metric names that appear as string literals in the gateway's source."""
    names: set[str] = set()
    for path in GATEWAY_SRC.rglob("*.rs"):
        names.update(re.findall(r'"(sluice_[a-z_]+)"', path.read_text()))
    return names


def family_of(name: str, histograms: set[str]) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return name[: -len(suffix)]
    return name


def code_blocks(language: str) -> list[tuple[Path, int, str]]:
    """(file, line, text) of every fenced block of `language` in docs/*.md."""
    found = []
    for md in sorted(DOCS.glob("*.md")):
        text = md.read_text()
        for m in _FENCE.finditer(text):
            if m.group(1).lower() in language.split("|"):
                found.append((md, text.count("\n", 0, m.start()) + 1, m.group(2)))
    return found


# ------------------------------------------------------------------- the documentation itself


def test_documented_gateway_metrics_exist_in_the_source():
    gateway, _ = sections()
    rows = documented_gateway_metrics()
    declared = declared_in_source()
    histograms = {n for n, (kind, _) in rows.items() if kind == "histogram"}
    mentioned = {family_of(n, histograms) for n in _NAME.findall(gateway)}
    unknown = sorted(mentioned - declared)
    assert not unknown, f"docs/metrics.md names gateway metrics the gateway source does not declare: {unknown}"
    undocumented = sorted(declared - set(rows))
    assert not undocumented, f"gateway metrics missing from docs/metrics.md: {undocumented}"


def test_documented_plugin_metrics_are_emitted_by_their_plugins():
    _, plugins = sections()
    rows = _PLUGIN_ROW.findall(plugins)
    assert len(rows) >= 6, f"only {len(rows)} plugin metric rows found in {METRICS_DOC}"
    problems = []
    for plugin, otlp_name, prom_name in rows:
        src = PLUGINS_SRC / plugin / "src"
        text = "\n".join(p.read_text() for p in sorted(src.glob("*.rs")) if p.name != "tests.rs")
        if f'"{otlp_name}"' not in text:
            problems.append(f"{otlp_name}: not found as a string in {src}")
        if not prom_name.startswith(otlp_name.replace(".", "_")):
            problems.append(f"{prom_name}: not the Prometheus form of {otlp_name}")
    assert not problems, "\n".join(problems)


def test_promql_examples_parse(tmp_path):
    blocks = code_blocks("promql")
    assert blocks, "no ```promql blocks found in docs/"
    rules = {
        "groups": [
            {
                "name": "docs",
                "rules": [
                    {"record": f"docs:example_{i}", "expr": text}
                    for i, (_, _, text) in enumerate(blocks)
                ],
            }
        ]
    }
    path = write_config(tmp_path / "docs-promql.yml", rules)
    r = subprocess.run(
        [prometheus_tool("promtool"), "check", "rules", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    where = "\n".join(f"  docs:example_{i}: {md.name}:{line}" for i, (md, line, _) in enumerate(blocks))
    assert r.returncode == 0, f"{r.stdout}{r.stderr}\nblocks:\n{where}"


@pytest.fixture(scope="module")
def validate_env(tmp_path_factory) -> dict[str, str]:
    """The environment for `sluice validate` of doc configs: the built-in plugins, and one
    precompiled-artifact cache for the whole module (the default cache location under
    `$XDG_CACHE_HOME`)."""
    base = plugin_base()
    if not any(base.glob("sluice_plugin_*.wasm")):
        pytest.fail(
            f"no built-in plugins in {base}: build them with scripts/build-plugins.sh "
            "or set $SLUICE_TEST_PLUGINS",
            pytrace=False,
        )
    configured = os.environ.get("SLUICE_TEST_PLUGIN_CACHE")
    cache_home = Path(configured).resolve() if configured else tmp_path_factory.mktemp("docs-xdg-cache")
    return clean_env({"SLUICE_PLUGIN_DIR": str(base), "XDG_CACHE_HOME": str(cache_home)})


def test_full_configs_in_docs_validate(tmp_path, validate_env):
    configs = []
    for md, line, text in code_blocks("yaml|yml"):
        if text.lstrip().startswith(COLLECTOR_MARK):
            continue
        if re.search(r"^service:", text, re.M) and re.search(r"^receivers:", text, re.M):
            configs.append((md, line, text))
    assert len(configs) >= 2, f"expected full Sluice configs in docs/*.md, found {len(configs)}"
    failures = []
    for i, (md, line, text) in enumerate(configs):
        env = dict(validate_env)
        for name in re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", text):
            env[name] = "0123456789abcdef0123456789abcdef"
        # Credentials read from variables (`bearer_token_env: NAME`, `password_env: NAME`).
        for name in re.findall(r"_env:\s*([A-Za-z_][A-Za-z0-9_]*)", text):
            env[name] = "0123456789abcdef0123456789abcdef"
        path = tmp_path / f"{md.stem}-{line}.yaml"
        path.write_text(text)
        r = subprocess.run(
            [str(SLUICE_BIN), "validate", "--config", str(path)],
            capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
            timeout=COMPILE_TIMEOUT, check=False,
        )
        if r.returncode != 0 or "valid" not in r.stdout:
            failures.append(f"{md.relative_to(REPO)}:{line} (exit {r.returncode}):\n{r.stdout}{r.stderr}")
    assert not failures, "configs in the docs that `sluice validate` refuses:\n\n" + "\n\n".join(failures)


# ------------------------------------------------------------------- a running gateway's /metrics


@pytest.fixture(scope="module")
def chaos_wasm() -> Path:
    path = plugin_base() / CHAOS
    if not path.is_file():
        pytest.fail(
            f"test plugin {CHAOS} not found in {path.parent}: build it with scripts/build-plugins.sh "
            "or set $SLUICE_TEST_PLUGINS",
            pytrace=False,
        )
    return path


def every_component_config(chaos: Path, cache: Path):
    """A config with every kind of component whose metrics can show up: both OTLP transports,
    remote_write, a plugin that filters (and traps on request), a dead OTLP backend without
    retries, a Prometheus scrape endpoint and a debug exporter."""

    def make(ports: dict[str, int]) -> dict:
        ports["prom"] = free_port()
        dead = free_port()  # nothing listens there
        return gateway_config(
            ports,
            {
                "debug": {"verbosity": "basic"},
                "otlp/dead": {
                    "endpoint": f"http://127.0.0.1:{dead}",
                    "protocol": "grpc",
                    "timeout": "1s",
                    "retry_on_failure": {"enabled": False},
                },
                "blackhole": {"sending_queue": {"storage": str(cache / "queue")}},
                "prometheus": {"endpoint": f"127.0.0.1:{ports['prom']}"},
            },
            receivers={"otlp": otlp_receiver(ports), "prometheus_remote_write": {}},
            processors={
                "chaos": {"plugin": str(chaos), "config": {"mode": "keep_even"}, "on_error": "drop"},
            },
            pipelines={
                "traces": pipeline(["debug", "otlp/dead"], processors=["chaos"]),
                "metrics": pipeline(["prometheus"], receivers=["otlp", "prometheus_remote_write"]),
                "logs": pipeline(["debug", "blackhole"]),
            },
            plugins={"cache_dir": str(cache), "reload_interval": "0s"},
            shutdown_timeout="5s",
        )

    return make


@pytest.fixture(scope="module")
def chaos_cache(tmp_path_factory, chaos_wasm) -> Path:
    """The chaos plugin compiled once (by `sluice validate`), so that the gateway starts fast."""
    cache = tmp_path_factory.mktemp("docs-plugin-cache")
    work = tmp_path_factory.mktemp("docs-plugin-cache-fill")
    ports = {"grpc": free_port(), "http": free_port(), "admin": free_port()}
    path = write_config(work / "fill.yaml", every_component_config(chaos_wasm, cache)(ports))
    r = subprocess.run(
        [str(SLUICE_BIN), "validate", "--config", str(path)],
        capture_output=True, text=True, env=clean_env(), stdin=subprocess.DEVNULL,
        timeout=COMPILE_TIMEOUT, check=False,
    )
    assert r.returncode == 0, f"`sluice validate` failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    return cache


def send_traffic(gw) -> None:
    """A little of everything: good and invalid records on both transports and all signals, a
    plugin trap and recovery, bad requests, remote_write, and a plugin reload."""
    # Traces over HTTP: the plugin keeps every other span (drops counted as `filtered`).
    spans = [span(*new_ids(), f"op-{i}") for i in range(4)]
    r = gw.post("traces", trace_request(*spans).SerializeToString())
    assert r.status_code == 200, r.text
    # Traces over gRPC, one valid span and one with a bad trace id (refused as `invalid`).
    t, s = new_ids()
    grpc_export(gw.grpc_target, "traces", trace_request(span(t, s), span(b"\x01\x02\x03", s)).SerializeToString())
    # A plugin trap (the batch is dropped: on_error drop), then a batch on a fresh instance.
    gw.post("traces", trace_request(span(*new_ids(), "chaos:trap")).SerializeToString())
    r = gw.post("traces", trace_request(span(*new_ids(), "after-trap")).SerializeToString())
    assert r.status_code == 200, r.text
    # Metrics over HTTP, into the Prometheus exporter's series store.
    point = metrics_pb2.NumberDataPoint(as_double=1.0, time_unix_nano=1)
    metrics = metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource_pb2.Resource(attributes=[kv("service.name", "docs")]),
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        metrics=[metrics_pb2.Metric(name="docs.gauge", gauge=metrics_pb2.Gauge(data_points=[point]))]
                    )
                ],
            )
        ]
    )
    r = gw.post("metrics", metrics.SerializeToString())
    assert r.status_code == 200, r.text
    # Logs over gRPC.
    logs = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                scope_logs=[logs_pb2.ScopeLogs(log_records=[logs_pb2.LogRecord(time_unix_nano=1)])]
            )
        ]
    )
    grpc_export(gw.grpc_target, "logs", logs.SerializeToString())
    # Bad requests: a content type, a body, and remote_write without snappy.
    assert gw.post("traces", b"x", content_type="text/plain").status_code == 415
    assert gw.post("traces", b"\xff\xff\xff").status_code == 400
    with pytest.raises(grpc.RpcError):
        grpc_export(gw.grpc_target, "traces", b"\xff\xff\xff")
    r = requests.post(
        f"{gw.http_url}/api/v1/write", data=b"x", headers={"Content-Type": "application/x-protobuf"}, timeout=10
    )
    assert r.status_code == 415, r.text
    # A reload of the plugin.
    gw.signal(signal.SIGHUP)


def test_every_exposed_gateway_metric_is_documented(gateway, chaos_wasm, chaos_cache):
    gw = gateway(config=every_component_config(chaos_wasm, chaos_cache))
    send_traffic(gw)
    gw.wait_metric("sluice_plugin_reloads_total", 1, timeout=WAIT)
    gw.wait_metric("sluice_plugin_restarts_total", 1, timeout=WAIT)
    gw.wait_metric("sluice_exporter_send_failures_total", 1, timeout=WAIT)
    gw.wait_metric("sluice_dropped_records_total", 1, timeout=WAIT, reason="retry_disabled")
    gw.wait_metric("sluice_exporter_series", 1, timeout=WAIT)

    text = wait_until(lambda: gw.get("/metrics").text, WAIT, "the admin /metrics")
    types = dict(re.findall(r"^# TYPE (sluice_[a-z_]+) (\S+)$", text, re.M))
    samples = [s for s in parse_prometheus(text) if s[0].startswith("sluice_")]
    histograms = {n for n, t in types.items() if t == "histogram"}

    rows = documented_gateway_metrics()
    gateway_doc, _ = sections()
    problems = []
    for name, kind in sorted(types.items()):
        if name not in rows:
            problems.append(f"{name} ({kind}) is exposed but not documented in docs/metrics.md")
        elif rows[name][0] != kind:
            problems.append(f"{name} is a {kind}, documented as a {rows[name][0]}")
    for name, labels, _ in samples:
        family = family_of(name, histograms)
        if family not in rows:
            continue
        documented = rows[family][1]
        for label, value in labels.items():
            if label == "le" and family in histograms:
                continue
            if label not in documented:
                problems.append(f"{family}: label `{label}` is not documented (documented: {sorted(documented)})")
            elif label in ENUMERATED_LABELS and f"`{value}`" not in gateway_doc:
                problems.append(f"{family}: value `{value}` of label `{label}` is not documented")
    assert not problems, "\n".join(sorted(set(problems)))

    # The traffic above reached every family but those that need a condition of their own, each
    # exercised (with its values asserted) by the test named here; a quiet gateway proves little.
    missing = sorted(set(rows) - set(types) - set(EXERCISED_ELSEWHERE))
    assert not missing, f"documented families neither exposed here nor listed in EXERCISED_ELSEWHERE: {missing}"


EXERCISED_ELSEWHERE = {
    "sluice_exporter_queue_disk_corruptions_total": "test_disk_queue.py (damaged segments)",
    "sluice_exporter_queue_disk_recovered_batches_total": "test_disk_queue.py (kill -9)",
    "sluice_exporter_queue_disk_write_errors_total": "test_disk_queue.py (full queue, failing write)",
    "sluice_memory_limiter_over_limit": "test_limits.py (memory_limiter)",
    "sluice_store_evicted_records_total": "test_trace_store.py (memory exporter)",
    "sluice_store_records": "test_trace_store.py (memory exporter)",
    "sluice_receiver_attributes_limited_total": "test_abuse.py (100k attributes, 1 MiB values)",
    "sluice_tenant_accepted_records_total": "test_tenants.py (receiver auth)",
    "sluice_tenant_limited_total": "test_tenants.py (tenant limits)",
    "sluice_admin_requests_refused_total": "test_endpoint_security.py (cross-site requests)",
    "sluice_exporter_backends": "test_loadbalancing.py (loadbalancing exporter)",
    "sluice_scrape_targets": "test_scrape.py (prometheus receiver)",
    "sluice_scrape_requests_total": "test_scrape.py (hostile targets, sample_limit)",
    "sluice_scrape_duration_seconds": "test_scrape.py (hostile targets)",
    "sluice_scrape_samples_total": "test_scrape.py (metric relabeling)",
    "sluice_scrape_discovery_failures_total": "test_scrape.py (a bad file_sd edit)",
    "sluice_exporter_backend_changes_total": "test_loadbalancing.py (DNS resolver)",
}
