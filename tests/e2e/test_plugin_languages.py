"""Plugins in Rust, Python and JavaScript, from the same WIT: `sluice plugin new --lang` scaffolds
a project whose own tests pass and whose component runs; `sluice plugin build` builds the
example plugins of each language; the three versions of each example give the same output
and emit the same telemetry on the same fixtures; and the Python and JavaScript examples run
in a real gateway, fed by the official OpenTelemetry SDK, with their emitted metrics on the
Prometheus scrape endpoint.

The Rust examples come from `$SLUICE_TEST_PLUGINS` (scripts/build-plugins.sh builds them); the
Python ones need componentize-py, the JavaScript ones the npm packages of each example
(scripts/setup.sh installs both)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from support.config import gateway_config, pipeline
from support.exposition import parse_prometheus
from support.polling import wait_until
from support.ports import free_port
from support.process import REPO, SLUICE_BIN

EXAMPLES = REPO / "examples" / "plugins"
FIXTURE = EXAMPLES / "fixtures" / "traces.json"
LANGS = ("rust", "python", "js")
NAMES = ("drop_health", "tenant_counter")
TIME_FIELDS = ("startTimeUnixNano", "timeUnixNano")


def sluice(*args, cwd=None, timeout=600):
    return subprocess.run(
        [str(SLUICE_BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def rust_plugins() -> Path:
    configured = os.environ.get("SLUICE_TEST_PLUGINS")
    return (Path(configured) if configured else REPO / "target" / "wasm32-wasip2" / "release").resolve()


def build(project: Path) -> Path:
    r = sluice("plugin", "build", str(project), "--sdk", str(REPO / "sdk"))
    assert r.returncode == 0, f"sluice plugin build {project} failed:\n{r.stdout}\n{r.stderr}"
    wasm = Path(r.stdout.strip().splitlines()[-1])
    assert wasm.is_file() and wasm.suffix == ".wasm", r.stdout
    assert "built " in r.stderr, r.stderr
    return wasm


@pytest.fixture(scope="module")
def components() -> dict[tuple[str, str], Path]:
    """Every example in every language, as a component."""
    found = {}
    for name in NAMES:
        rust = rust_plugins() / f"example_{name}.wasm"
        if not rust.is_file():
            pytest.fail(f"{rust} not found: build it with scripts/build-plugins.sh", pytrace=False)
        found[("rust", name)] = rust
        found[("python", name)] = build(EXAMPLES / "python" / name)
        found[("js", name)] = build(EXAMPLES / "js" / name)
    return found


def run(wasm: Path, config: dict | None = None, tmp: Path | None = None):
    args = ["plugin", "test", str(wasm), "--input", str(FIXTURE), "--timeout-ms", "2000"]
    if config is not None:
        path = tmp / f"config-{wasm.stem}.json"
        path.write_text(json.dumps(config))
        args += ["--config", str(path)]
    r = sluice(*args)
    assert r.returncode == 0, f"{wasm}: {r.stderr}"
    emitted = [
        json.loads(line.split(": ", 1)[1])
        for line in r.stderr.splitlines()
        if line.startswith("emitted ")
    ]
    return json.loads(r.stdout), emitted


def without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("T" if k in TIME_FIELDS else without_times(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def span_names(batch: dict) -> list[str]:
    return [s["name"] for rs in batch["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]


def resource_attr(rs: dict, key: str):
    for kv in rs["resource"]["attributes"] if rs.get("resource") else []:
        if kv["key"] == key:
            return kv["value"].get("stringValue")
    return None


@pytest.mark.parametrize("lang", LANGS)
def test_drop_health_drops_health_checks_in_every_language(components, lang):
    out, emitted = run(components[(lang, "drop_health")])
    assert span_names(out) == ["POST /orders", "SELECT orders", "charge", "nightly job"]
    assert emitted == []


@pytest.mark.parametrize("lang", LANGS)
def test_tenant_counter_tags_resources_and_counts_in_every_language(components, lang):
    out, emitted = run(components[(lang, "tenant_counter")])
    tenants = [resource_attr(rs, "tenant") for rs in out["resourceSpans"]]
    assert tenants == ["acme", "globex", None]
    assert len(span_names(out)) == 7
    assert len(emitted) == 1
    metric = emitted[0]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]
    assert metric["name"] == "tenant.spans" and metric["unit"] == "{span}"
    counts = {
        p["attributes"][0]["value"]["stringValue"]: int(p["asInt"]) for p in metric["sum"]["dataPoints"]
    }
    assert counts == {"acme": 4, "globex": 2, "unknown": 1}


@pytest.mark.parametrize("name,config", [("drop_health", {"prefixes": ["SELECT", "nightly"]}), ("tenant_counter", {"header": "X-Tenant-Id", "attribute": "org", "default": "none"})])
def test_the_three_languages_agree(components, tmp_path, name, config):
    """The same fixture and config through the Rust, Python and JavaScript versions: the same
    output batch and the same emitted telemetry (times aside: each read the clock)."""
    results = {lang: run(components[(lang, name)], config, tmp_path) for lang in LANGS}
    rust_out, rust_emitted = results["rust"]
    for lang in ("python", "js"):
        out, emitted = results[lang]
        assert out == rust_out, f"{lang} output differs from Rust's"
        assert without_times(emitted) == without_times(rust_emitted), f"{lang} emitted differs from Rust's"


@pytest.mark.parametrize("lang", LANGS)
def test_a_refused_config_is_a_clear_error_in_every_language(components, tmp_path, lang):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"prefixes": "GET /health"}))
    r = sluice("plugin", "test", str(components[(lang, "drop_health")]), "--input", str(FIXTURE), "--config", str(path))
    assert r.returncode == 2, r.stderr
    assert "init failed" in r.stderr and "prefixes" in r.stderr, r.stderr


@pytest.mark.parametrize("lang", LANGS)
def test_new_scaffolds_a_project_that_tests_and_builds(tmp_path, lang):
    r = sluice("plugin", "new", "edge-rule", "--lang", lang, "--sdk", str(REPO / "sdk"), "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    project = tmp_path / "edge-rule"
    env = dict(os.environ)
    if lang == "rust":
        # The workspace's target directory: the SDK's dependencies are built there already.
        env["CARGO_TARGET_DIR"] = str(Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")))
    if lang == "js":
        install = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefer-offline"],
            cwd=project, capture_output=True, text=True, timeout=600,
        )
        assert install.returncode == 0, install.stderr

    def plugin_test():
        return subprocess.run(
            [str(SLUICE_BIN), "plugin", "test"], cwd=project, env=env, capture_output=True, text=True, timeout=900
        )

    # From inside the project, with no arguments: its tests, the build, the run on batch.json.
    r = plugin_test()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tests passed" in r.stderr and "records in: 2, out: 1" in r.stderr, r.stderr
    # The test runner's output went to stderr: stdout is the batch alone.
    names = span_names(json.loads(r.stdout))
    assert names == ["GET /orders"]
    # A failing test fails the command before anything is built.
    source, before, after = {
        "rust": (project / "src" / "lib.rs", "Keep(vec![1])", "Keep(vec![0])"),
        "python": (project / "test_edge_rule.py", "keep([1])", "keep([0])"),
        "js": (project / "test" / "plugin.test.js", "keep([1])", "keep([0])"),
    }[lang]
    assert before in source.read_text()
    source.write_text(source.read_text().replace(before, after))
    r = plugin_test()
    assert r.returncode != 0
    assert "tests failed" in r.stderr


def test_build_says_what_is_missing(tmp_path):
    r = sluice("plugin", "build", str(tmp_path))
    assert r.returncode == 1 and "not a plugin project" in r.stderr
    (tmp_path / "package.json").write_text('{"name": "x", "scripts": {"build": "sluice-plugin-build"}}')
    r = sluice("plugin", "build", str(tmp_path))
    assert r.returncode == 1 and "npm install" in r.stderr
    r = sluice("plugin", "test", str(tmp_path / "x.wasm"))
    assert r.returncode == 1 and "--input" in r.stderr


# ------------------------------------------------------------------- in a running gateway


def sdk_spans() -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("e2e.languages", "1.0")
    with tracer.start_as_current_span("GET /health", kind=SpanKind.SERVER):
        pass
    with tracer.start_as_current_span("POST /cart", kind=SpanKind.SERVER) as span:
        span.set_attribute("http.request.header.x-tenant-id", ["acme"])
        with tracer.start_as_current_span("SELECT cart"):
            pass
    with tracer.start_as_current_span("GET /ready", kind=SpanKind.SERVER):
        pass
    provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.mark.parametrize("lang", ("python", "js"))
def test_examples_run_in_a_gateway(components, gateway, downstream, tmp_path, lang):
    ds = downstream()

    def config(ports):
        ports["scrape"] = free_port()
        return gateway_config(
            ports,
            {
                "otlp/down": {"endpoint": ds.endpoint, "protocol": "grpc"},
                "prometheus": {"endpoint": f"127.0.0.1:{ports['scrape']}"},
            },
            processors={
                "drop": {"plugin": str(components[(lang, "drop_health")])},
                "tenants": {"plugin": str(components[(lang, "tenant_counter")])},
            },
            pipelines={
                "traces": pipeline(["otlp/down"], processors=["drop", "tenants"]),
                "metrics": pipeline(["prometheus"]),
            },
            plugins={"cache_dir": str(tmp_path / "cache")},
            shutdown_timeout="10s",
        )

    # Compiling the two components (an interpreter each) takes the debug gateway a while.
    gw = gateway(config=config, wait_ready=False)
    gw.wait_ready(timeout=180)
    exporter = OTLPSpanExporter(endpoint=gw.grpc_target, insecure=True, timeout=10)
    try:
        assert exporter.export(sdk_spans()) == SpanExportResult.SUCCESS, gw.stderr()[-3000:]
    finally:
        exporter.shutdown()
    got = ds.wait_records("traces", 2, timeout=15)
    spans = [s for r in got for rs in r.message.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.name for s in spans) == ["POST /cart", "SELECT cart"]
    resources = [
        {kv.key: kv.value.string_value for kv in rs.resource.attributes}
        for r in got
        for rs in r.message.resource_spans
    ]
    assert all(r.get("tenant") == "acme" and r.get("service.name") == "shop" for r in resources), resources

    url = f"http://127.0.0.1:{gw.ports['scrape']}/metrics"

    def counted():
        samples = parse_prometheus(requests.get(url, timeout=5).text)
        return [(labels, value) for name, labels, value in samples if name.startswith("tenant_spans")]

    found = wait_until(counted, 15, "tenant.spans on the scrape endpoint")
    assert any(labels.get("tenant") == "acme" and value == 2 for labels, value in found), found


HOSTILE_PY = '''
from sluice_plugin import Plugin, Signal, Verdict


class Hostile(Plugin):
    name = "hostile"
    signals = [Signal.TRACES]

    def __init__(self, config):
        self.mode = config.get("mode", "pass")

    def traces(self, batch):
        if self.mode == "loop":
            while True:
                pass
        if self.mode == "hog":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if self.mode == "recurse":
            def down(n):
                return down(n + 1)
            down(0)
        return Verdict.UNCHANGED
'''


@pytest.fixture(scope="module")
def hostile_python(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("hostile") / "hostile"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "hostile"\nversion = "0.1.0"\n')
    (project / "hostile.py").write_text(HOSTILE_PY)
    return build(project)


@pytest.mark.parametrize(
    "mode,expect",
    [("loop", "timeout"), ("hog", "memory"), ("recurse", "RecursionError")],
)
def test_a_hostile_python_plugin_is_stopped_by_the_limits(hostile_python, tmp_path, mode, expect):
    """An endless loop meets the deadline (Python's default, 1000 ms), unbounded allocation
    meets the memory cap, deep recursion is Python's own error: each a clear failure of that
    call, reported in time."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mode": mode}))
    started = time.monotonic()
    r = sluice("plugin", "test", str(hostile_python), "--input", str(FIXTURE), "--config", str(config), timeout=120)
    elapsed = time.monotonic() - started
    assert r.returncode == 1, r.stderr
    assert "plugin failed" in r.stderr and expect in r.stderr, r.stderr
    assert elapsed < 60, elapsed
    if mode == "loop":
        # The language's default deadline applied: the call ran about 1000 ms, not 100 ms.
        took = float(r.stderr.split("time: ")[1].split(" ms")[0])
        assert 900 <= took <= 5000, r.stderr


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_compiling_interpreters_does_not_stay_in_the_gateways_memory(components, gateway, tmp_path):
    """The gateway compiles large components (an interpreter inside) in a child process that
    fills the plugin cache and exits, so the compiler's memory goes back to the system: in one
    process, compiling the two Python examples left a release gateway at 549 MiB resident."""
    cache = tmp_path / "cache"

    def config(ports):
        return gateway_config(
            ports,
            {"debug": {}},
            processors={
                "drop": {"plugin": str(components[("python", "drop_health")])},
                "tenants": {"plugin": str(components[("python", "tenant_counter")])},
                "js": {"plugin": str(components[("js", "drop_health")])},
            },
            pipelines={"traces": pipeline(["debug"], processors=["drop", "tenants", "js"])},
            plugins={"cache_dir": str(cache)},
            shutdown_timeout="10s",
        )

    gw = gateway(config=config, wait_ready=False)
    gw.wait_ready(timeout=180)
    assert gw.stderr().count("compiled in a child process") == 3, gw.stderr()[-3000:]
    assert len(list(cache.glob("*.cwasm"))) == 3
    assert rss_mib(gw.pid) < 250, f"{rss_mib(gw.pid):.0f} MiB resident after loading"


def test_new_python_needs_no_checkout(tmp_path):
    """Outside a checkout a Python project is still created (its SDK is a pip package); Rust
    and JavaScript projects name the SDK by path and ask for it."""
    exe = tmp_path / "bin" / "sluice"
    exe.parent.mkdir()
    exe.write_bytes(SLUICE_BIN.read_bytes())
    exe.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run([str(exe), "plugin", "new", "solo", "--lang", "python"], cwd=work, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pip install PATH/TO/sluice/sdk/python" in (work / "solo" / "pyproject.toml").read_text()
    for lang in ("rust", "js"):
        r = subprocess.run([str(exe), "plugin", "new", f"solo-{lang}", "--lang", lang], cwd=work, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "--sdk" in r.stderr, r.stderr


HOSTILE_JS = """
import { Plugin, Verdict } from '@sluice/plugin';

export default class Hostile extends Plugin {
  static info = { name: 'hostile', version: '0.1.0', signals: ['traces'], stateful: false };

  constructor(config) {
    super(config);
    this.mode = config.mode ?? 'pass';
  }

  traces(batch) {
    if (this.mode === 'loop') {
      for (;;) {}
    }
    if (this.mode === 'hog') {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(1 << 20));
    }
    if (this.mode === 'recurse') {
      const down = (n) => down(n + 1) + 1;
      down(0);
    }
    return Verdict.unchanged();
  }
}
"""


@pytest.fixture(scope="module")
def hostile_js(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("hostile-js") / "hostile"
    (project / "src").mkdir(parents=True)
    (project / "package.json").write_text(json.dumps(
        {"name": "hostile", "version": "0.1.0", "private": True, "type": "module",
         "scripts": {"build": "sluice-plugin-build"}}
    ))
    (project / "src" / "plugin.js").write_text(HOSTILE_JS)
    # The SDK as `npm install` links a file: dependency; its own node_modules has the tools.
    (project / "node_modules" / "@sluice").mkdir(parents=True)
    (project / "node_modules" / "@sluice" / "plugin").symlink_to(REPO / "sdk" / "js")
    bin_dir = project / "node_modules" / ".bin"
    bin_dir.mkdir()
    (bin_dir / "sluice-plugin-build").symlink_to(REPO / "sdk" / "js" / "bin" / "sluice-plugin-build.js")
    return build(project)


@pytest.mark.parametrize(
    "mode,expect",
    [("loop", "timeout"), ("hog", "memory"), ("recurse", "too much recursion")],
)
def test_a_hostile_javascript_plugin_is_stopped_by_the_limits(hostile_js, tmp_path, mode, expect):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mode": mode}))
    started = time.monotonic()
    r = sluice("plugin", "test", str(hostile_js), "--input", str(FIXTURE), "--config", str(config), timeout=120)
    assert r.returncode == 1, r.stderr
    assert "plugin failed" in r.stderr and expect in r.stderr.lower(), r.stderr
    assert time.monotonic() - started < 60
