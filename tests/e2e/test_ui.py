"""The admin web UI (`GET /` on the admin endpoint) in a real browser.

Each test starts a gateway, feeds it with the official OpenTelemetry Python SDK, opens a page of
the UI in Chromium (driven by Playwright) and checks what a person would see there: the pipeline
view with live rates, the plugin table and a reload, the SLO figures, a trace search and its
waterfall, and the log tail filtered by severity. A screenshot of every page goes to
`tests/output/screenshots/`.

The browser is Debian's Chromium (`$SLUICE_TEST_CHROMIUM`, by default `/usr/bin/chromium`),
launched through the driver that the `playwright` wheel carries (no browser download). A missing
or broken Chromium fails the tests: CI installs it. Everything stays on loopback; a page that
asks for anything but the gateway's admin endpoint fails its test, as does a script error in it.

Telemetry is attacker-controlled, so spans and logs here carry markup, and the tests check that
the page shows it as text and never runs it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from playwright.sync_api import Browser, Page, expect, sync_playwright

from support.config import config_for, pipeline, write_config
from support.gateway import Gateway, validate_with_plugins
from support.polling import wait_until
from support.ports import free_port
from support.process import REPO

CHROMIUM = os.environ.get("SLUICE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "tests" / "output" / "screenshots"

# Playwright's bound on every single browser action and expectation, in milliseconds.
ACTION_TIMEOUT_MS = 15_000
expect.set_options(timeout=ACTION_TIMEOUT_MS)
# A test that runs longer than this fails, whatever it waits for.
TEST_DEADLINE_S = 150

# Markup that would run if the page ever treated telemetry as HTML.
HOSTILE = '<img src=x onerror="window.__pwned=1">'

SERVICE = "checkout"
ROOT_OP = "GET /checkout"
CHILD_OP = "charge card"
ERROR_LOG = "payment declined for order 42"
INFO_LOG = "cart loaded for order 42"


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def _deadline():
    """Fails a test that outlives TEST_DEADLINE_S, gateway start and page loads included."""

    def expired(_signum, _frame):
        pytest.fail(f"the test ran longer than {TEST_DEADLINE_S}s", pytrace=False)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_DEADLINE_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright; failing to launch it fails the tests."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it (apt-get install chromium) or set "
            "$SLUICE_TEST_CHROMIUM",
            pytrace=False,
        )
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        except Exception as e:  # noqa: BLE001 - any launch failure is a test failure
            pytest.fail(f"could not launch Chromium at {CHROMIUM}: {e}", pytrace=False)
        try:
            yield b
        finally:
            b.close()


class UI:
    """One browser tab on a gateway's admin endpoint, recording what would make it unfit:
    script errors and requests leaving the admin endpoint."""

    def __init__(self, browser: Browser, gw: Gateway):
        self.gw = gw
        self.origin = gw.admin_url
        self.context = browser.new_context(viewport={"width": 1400, "height": 900}, service_workers="block")
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(ACTION_TIMEOUT_MS)
        self.script_errors: list[str] = []
        self.foreign_requests: list[str] = []
        self.page.on("pageerror", lambda e: self.script_errors.append(str(e)))
        self.page.on("request", self._request)

    def _request(self, request) -> None:
        url = request.url
        if url.startswith("data:"):
            return
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign_requests.append(url)

    def open(self, route: str) -> Page:
        self.page.goto(f"{self.origin}/#/{route}", wait_until="domcontentloaded")
        return self.page

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def assert_sound(self) -> None:
        assert not self.script_errors, f"script errors in the page: {self.script_errors}"
        assert not self.foreign_requests, f"the page requested other origins: {self.foreign_requests}"
        assert self.page.evaluate("window.__pwned") is None, "markup from telemetry ran in the page"
        assert self.page.locator("img").count() == 0, "markup from telemetry became elements"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def ui(browser):
    """Factory: `ui(gw)` opens a tab on the gateway's admin endpoint; tabs close at teardown."""
    opened: list[UI] = []

    def make(gw: Gateway) -> UI:
        u = UI(browser, gw)
        opened.append(u)
        return u

    yield make
    for u in opened:
        u.close()


def store_config(ports: dict[str, int]) -> dict[str, Any]:
    """Traces and logs into the `memory` store (and a `debug` exporter beside it for traces)."""
    return config_for(
        ports,
        {"memory": {"max_spans": 10000, "max_logs": 10000, "max_age": "1h"}, "debug": {"verbosity": "basic"}},
        pipelines={
            "traces": pipeline(["memory", "debug"]),
            "metrics": pipeline(["debug"]),
            "logs": pipeline(["memory"]),
        },
    )


# -- built-in plugins

PLUGINS = ("redact", "slo")
SLO_NAME = "checkout-availability"
SLOS = {
    "slos": [
        {
            "name": SLO_NAME,
            "service": SERVICE,
            "objective": 99,
            "window": "30d",
            "sli": {"availability": {"span_kind": "server"}},
        }
    ]
}


@pytest.fixture(scope="module")
def plugin_dir() -> Path:
    """Where the built-in plugins are (`$SLUICE_TEST_PLUGINS`, by default where
    scripts/build-plugins.sh puts them); missing ones fail the tests."""
    configured = os.environ.get("SLUICE_TEST_PLUGINS")
    base = (Path(configured) if configured else REPO / "target" / "wasm32-wasip2" / "release").resolve()
    missing = [n for n in PLUGINS if not (base / f"sluice_plugin_{n}.wasm").is_file()]
    if missing:
        pytest.fail(
            f"built-in plugin(s) {', '.join(missing)} not found in {base}: build them with "
            "scripts/build-plugins.sh or set $SLUICE_TEST_PLUGINS",
            pytrace=False,
        )
    return base


def plugin_config(ports: dict[str, int], cache: Path, redact: Path | None = None) -> dict[str, Any]:
    """`redact` and `slo` on the traces pipeline; `redact` from the file `redact` if given."""
    cfg = store_config(ports)
    cfg["processors"] = {
        "redact": {"plugin": str(redact) if redact else "builtin/redact", "config": {}},
        "slo": {"plugin": "builtin/slo", "config": SLOS},
    }
    cfg["service"]["pipelines"]["traces"]["processors"] = ["redact", "slo"]
    cfg["service"]["plugins"] = {"cache_dir": str(cache)}
    return cfg


@pytest.fixture(scope="module")
def plugin_cache(tmp_path_factory, plugin_dir) -> Path:
    """A precompiled-plugin cache, filled once by `sluice validate` so that the gateways here
    start in seconds."""
    configured = os.environ.get("SLUICE_TEST_PLUGIN_CACHE")
    cache = Path(configured).resolve() if configured else tmp_path_factory.mktemp("ui-plugin-cache")
    work = tmp_path_factory.mktemp("ui-plugin-cache-fill")
    ports = {"grpc": free_port(), "http": free_port(), "admin": free_port()}
    path = write_config(work / "fill-cache.yaml", plugin_config(ports, cache))
    validate_with_plugins(path, plugin_dir)
    return cache


def start_with_plugins(gateway, plugin_dir: Path, cache: Path, redact: Path | None = None) -> Gateway:
    return gateway(
        config=lambda ports: plugin_config(ports, cache, redact), env={"SLUICE_PLUGIN_DIR": str(plugin_dir)}
    )


# ------------------------------------------------------------------------------ sending (SDK)

MS = 1_000_000


def send_spans(gw: Gateway, spans: list) -> None:
    exporter = GrpcSpanExporter(endpoint=gw.grpc_target, insecure=True, timeout=10)
    try:
        result = exporter.export(spans)
    finally:
        exporter.shutdown()
    assert result == SpanExportResult.SUCCESS, f"the gateway refused the spans; stderr:\n{gw.stderr()[-3000:]}"


def checkout_trace(gw: Gateway) -> tuple[str, Any]:
    """Sends one trace of `checkout`: a server span `GET /checkout` (120 ms) with a client
    child `charge card` (80 ms) that failed. Returns the trace id (hex) and the child's
    context, for logs that belong to the trace."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE, "deployment.environment": "e2e"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("e2e.ui", "1.0")
    t0 = time.time_ns() - 200 * MS
    root = tracer.start_span(ROOT_OP, kind=SpanKind.SERVER, start_time=t0)
    root.set_attribute("http.route", "/checkout")
    root.set_attribute("note", HOSTILE)
    child = tracer.start_span(CHILD_OP, context=set_span_in_context(root), kind=SpanKind.CLIENT, start_time=t0 + 20 * MS)
    child.set_attribute("payment.provider", "acme")
    child.add_event("exception", {"exception.message": "card declined"}, timestamp=t0 + 90 * MS)
    child.set_status(Status(StatusCode.ERROR, "card declined"))
    child_context = set_span_in_context(child)
    child.end(end_time=t0 + 100 * MS)
    root.end(end_time=t0 + 120 * MS)
    provider.shutdown()
    send_spans(gw, list(memory.get_finished_spans()))
    return format(root.get_span_context().trace_id, "032x"), child_context


def server_spans(n: int, errors: int, name: str = ROOT_OP) -> list:
    """`n` finished server spans of `checkout`, the first `errors` of them failed."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("e2e.ui", "1.0")
    for i in range(n):
        with tracer.start_as_current_span(name, kind=SpanKind.SERVER) as s:
            if i < errors:
                s.set_status(Status(StatusCode.ERROR, "failed"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def send_logs(gw: Gateway, context) -> None:
    """An INFO and an ERROR record of `checkout`, the ERROR one inside the trace of `context`."""
    exporter = GrpcLogExporter(endpoint=gw.grpc_target, insecure=True, timeout=10)
    provider = LoggerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=60_000))
    try:
        logger = provider.get_logger("e2e.ui", "1.0")
        logger.emit(body=INFO_LOG, severity_number=SeverityNumber.INFO, severity_text="INFO", attributes={"cart.items": 3})
        logger.emit(
            body=f"{ERROR_LOG} {HOSTILE}",
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            attributes={"order.id": "42"},
            context=context,
        )
        assert provider.force_flush(15_000), "force_flush of the logs did not complete"
    finally:
        provider.shutdown()


class Feeder:
    """Keeps sending a small batch of spans every 200 ms in a thread, so rates stay above zero
    while a page is watched."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.stop_event = threading.Event()
        self.sent = 0
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        exporter = GrpcSpanExporter(endpoint=self.gw.grpc_target, insecure=True, timeout=5)
        try:
            while not self.stop_event.is_set():
                spans = server_spans(3, 0, name="GET /feed")
                if exporter.export(spans) == SpanExportResult.SUCCESS:
                    self.sent += len(spans)
                else:
                    self.failures.append("export failed")
                self.stop_event.wait(0.2)
        finally:
            exporter.shutdown()

    def __enter__(self) -> "Feeder":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(10)


def rate_value(text: str) -> float:
    """`12.5/s`, `1.2k/s` or `–` as a number (0 for `–`)."""
    m = re.fullmatch(r"\s*([\d.]+)([kM]?)/s\s*", text)
    if not m:
        return 0.0
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6}[m.group(2)]


# ------------------------------------------------------------------------------------- tests


def test_pipelines_page_shows_the_topology_with_live_rates(gateway, ui):
    gw = gateway(config=store_config)
    tab = ui(gw)
    with Feeder(gw) as feeder:
        page = tab.open("pipelines")
        expect(page.locator("#live-text")).to_have_text("live")
        expect(page.locator("#h-status")).to_have_text("ready")
        expect(page.locator("#h-version")).to_have_text(re.compile(r"^v\d+\.\d+"))

        traces = page.locator('article[data-pipeline="traces"]')
        expect(traces.locator("h2")).to_have_text("traces")
        expect(traces.locator('[data-receiver="otlp"]')).to_contain_text("grpc")
        for exporter in ("memory", "debug"):
            node = traces.locator(f'[data-exporter="{exporter}"]')
            expect(node).to_be_visible()
            expect(node.locator(".name")).to_contain_text(exporter)
            expect(node.locator(".badge")).to_have_text("ok")
        expect(page.locator('article[data-pipeline="logs"] [data-exporter="memory"]')).to_be_visible()

        accepted = traces.locator('[data-stat="accepted"] .value')
        wait_until(
            lambda: rate_value(accepted.inner_text()) > 0,
            20,
            "a non-zero accepted rate on the traces pipeline",
            interval=0.25,
        )
        expect(traces.locator('[data-stat="refused"] .value')).to_have_text("0/s")
        expect(traces.locator('[data-stat="dropped"] .value')).to_have_text("0/s")
        expect(traces.locator(".pl-head .qtext")).to_have_text(re.compile(r"^\d+ / [\d,]+$"))
        expect(traces.locator('[data-exporter="memory"] .kv').first).to_contain_text("sent")
        tab.screenshot("pipelines")
    assert feeder.sent > 0 and not feeder.failures, feeder.failures
    tab.assert_sound()


def test_live_indicator_reconnects_when_the_gateway_comes_back(gateway, ui, tmp_path):
    gw = gateway(config=store_config)
    tab = ui(gw)
    page = tab.open("pipelines")
    live = page.locator("#live-text")
    expect(live).to_have_text("live")

    assert gw.stop() == 0, gw.stderr()
    expect(live).to_have_text(re.compile(r"^reconnecting"))
    expect(page.locator("#live")).not_to_have_class(re.compile(r"\bon\b"))

    # The same config on the same ports: the page finds the new process by itself.
    again = Gateway(tmp_path, store_config(gw.ports), gw.ports)
    try:
        again.start()
        expect(live).to_have_text("live", timeout=25_000)
        expect(page.locator("#h-status")).to_have_text("ready")
    finally:
        assert again.stop() == 0, again.stderr()
    tab.assert_sound()


def test_plugins_page_lists_plugins_and_reloads_them(gateway, ui, plugin_dir, plugin_cache, tmp_path):
    # `redact` runs from a copy of its file, which the test later breaks.
    redact = tmp_path / "redact.wasm"
    shutil.copyfile(plugin_dir / "sluice_plugin_redact.wasm", redact)
    gw = start_with_plugins(gateway, plugin_dir, plugin_cache, redact)
    send_spans(gw, server_spans(4, 0))
    tab = ui(gw)
    page = tab.open("plugins")

    for name in PLUGINS:
        row = page.locator(f'tr[data-plugin="{name}"]')
        expect(row).to_contain_text(name)
        expect(row.locator(".badge")).to_have_text("ok")
        expect(row.locator("td").nth(1)).to_have_text(re.compile(r"^\d+\.\d+"))
    slo = page.locator('tr[data-plugin="slo"]')
    # Calls and the latency percentiles come from the plugin's own metrics.
    expect(slo.locator("td").nth(3)).not_to_have_text("0")
    expect(slo.locator("td").nth(6)).to_have_text(re.compile(r"\d+(\.\d+)? (µs|ms|s)$"))

    slo.locator("button.details-toggle").click()
    details = page.locator('tr[data-plugin-details="slo"]')
    expect(details).to_be_visible()
    expect(details.locator("pre.config")).to_contain_text(SLO_NAME)
    expect(details).to_contain_text("No reloads yet.")

    slo.locator("button.reload").click()
    expect(slo.locator(".result")).to_have_text(re.compile(r"^Reloaded at "), timeout=60_000)
    history = details.locator("table.history tbody tr")
    expect(history).to_have_count(1)
    expect(history.first).to_contain_text("reloaded")
    expect(slo.locator("td").nth(8)).to_have_text("1")

    # A second reload adds a second entry, newest first.
    slo.locator("button.reload").click()
    expect(history).to_have_count(2, timeout=60_000)
    expect(slo.locator("td").nth(8)).to_have_text("2")

    # A reload of a broken file fails, says why, and the old instance keeps running.
    redact.write_bytes(b"this is not a WebAssembly component")
    row = page.locator('tr[data-plugin="redact"]')
    row.locator("button.reload").click()
    expect(row.locator(".result")).to_have_text(re.compile(r"^Reload failed: "), timeout=60_000)
    redact_details = page.locator('tr[data-plugin-details="redact"]')
    expect(redact_details).to_be_visible()
    expect(redact_details.locator("table.history tbody tr").first).to_contain_text("failed")
    expect(redact_details.locator("dd.errtext")).to_contain_text("redact.wasm")
    expect(row.locator(".badge")).to_have_text("ok")
    tab.screenshot("plugins")

    # The pipeline view shows the processors in the traces pipeline, with their state.
    page = tab.open("pipelines")
    for name in PLUGINS:
        node = page.locator(f'article[data-pipeline="traces"] [data-processor="{name}"]')
        expect(node.locator(".badge")).to_have_text("ok")
    tab.assert_sound()


def test_slos_page_shows_compliance_budget_and_burn_rates(gateway, ui, plugin_dir, plugin_cache):
    gw = start_with_plugins(gateway, plugin_dir, plugin_cache)
    send_spans(gw, server_spans(10, 2))
    wait_until(
        lambda: (gw.get("/api/v1/slos").json()["slos"].get(SLO_NAME) or {}).get("good") == 8,
        15,
        "the slo plugin's first report",
        interval=0.2,
    )
    tab = ui(gw)
    page = tab.open("slos")
    card = page.locator(f'article[data-slo="{SLO_NAME}"]')
    expect(card.locator("h2")).to_have_text(SLO_NAME)
    expect(card).to_contain_text(f"service {SERVICE}")
    # 8 good of 10 against a 99 % objective: compliance 80 %, budget overspent 19 times.
    expect(card.locator(".stat", has_text="compliance").locator(".value")).to_have_text("80 %")
    expect(card.locator(".stat", has_text="objective").locator(".value")).to_have_text("99 %")
    expect(card.locator(".stat", has_text="error budget left").locator(".value")).to_have_text("-1900 %")
    expect(card).to_contain_text("below objective")
    bars = card.locator("svg.burn rect")
    expect(bars).to_have_count(7)
    expect(card.locator("svg.burn")).to_contain_text("5m")
    expect(card.locator("svg.burn")).to_contain_text("20")
    tab.screenshot("slos")
    tab.assert_sound()


def test_trace_search_and_waterfall(gateway, ui):
    gw = gateway(config=store_config)
    trace_id, _ = checkout_trace(gw)
    send_spans(gw, server_spans(2, 0, name="GET /health"))
    wait_until(lambda: gw.get(f"/api/traces/{trace_id}").status_code == 200, 10, "the trace in the store")

    tab = ui(gw)
    page = tab.open("traces")
    page.locator('select[name="service"]').select_option(SERVICE)
    expect(page.locator('select[name="operation"] option', has_text=CHILD_OP)).to_have_count(1)
    # Like Jaeger, the operation and the error tag must hold for the same span.
    page.locator('select[name="operation"]').select_option(CHILD_OP)
    page.locator('input[name="errors"]').check()
    page.get_by_role("button", name="Find traces").click()

    rows = page.locator("table.results tbody tr")
    expect(rows).to_have_count(1)
    row = page.locator(f'table.results tr[data-trace-id="{trace_id}"]')
    expect(row.locator(".root-name")).to_have_text(f"{SERVICE}: {ROOT_OP}")
    expect(row).to_contain_text(trace_id)
    expect(row).to_contain_text(f"{SERVICE} (2)")
    expect(row.locator(".error-marker")).to_have_text("⚠ 1 error")
    expect(row.locator("td.num").first).to_have_text("2")
    expect(row.locator("td.num").nth(1)).to_contain_text("120 ms")
    tab.screenshot("traces-search")

    row.click()
    expect(page).to_have_url(re.compile(f"#/trace/{trace_id}$"))
    spans = page.locator(".wf-row.span")
    expect(spans).to_have_count(2)
    root, child = spans.nth(0), spans.nth(1)
    expect(root.locator(".op")).to_have_text(ROOT_OP)
    expect(child.locator(".op")).to_have_text(CHILD_OP)
    expect(root).to_have_attribute("data-error", "false")
    expect(child).to_have_attribute("data-error", "true")
    expect(child.locator(".err-tag")).to_have_text("⚠ error")
    expect(root.locator(".err-tag")).to_have_count(0)
    # The child starts 20 ms into the 120 ms trace and is indented below its parent.
    left = child.locator(".wf-bar").evaluate("e => parseFloat(e.style.left)")
    assert abs(left - 100 * 20 / 120) < 0.5, left
    indent = [s.locator(".wf-name").evaluate("e => parseFloat(e.style.paddingLeft)") for s in (root, child)]
    assert indent[1] > indent[0], indent
    expect(page.locator(".trace-title")).to_have_text(f"{SERVICE}: {ROOT_OP}")

    child.click()
    detail = page.locator(".wf-detail")
    expect(detail).to_contain_text("otel.status_description")
    expect(detail).to_contain_text("card declined")
    expect(detail).to_contain_text("payment.provider")
    expect(detail).to_contain_text("exception.message")
    root.click()
    expect(page.locator(".wf-detail")).to_have_count(2)
    # The hostile attribute is shown as the text it is.
    expect(page.locator(".wf-detail").first).to_contain_text(HOSTILE)
    tab.screenshot("trace-waterfall")

    # Opening a trace by its id.
    page.get_by_role("link", name="← back to the search").click()
    page.locator('input[name="traceId"]').fill(trace_id)
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.locator(".wf-row.span")).to_have_count(2)
    expect(page.locator(".trace-id")).to_have_text(trace_id)
    tab.assert_sound()


def test_logs_tail_filters_by_severity_and_links_to_the_trace(gateway, ui):
    gw = gateway(config=store_config)
    trace_id, context = checkout_trace(gw)
    send_logs(gw, context)
    wait_until(lambda: len(gw.get("/api/v1/logs").json()["data"]) == 2, 10, "both log records in the store")

    tab = ui(gw)
    page = tab.open("logs")
    rows = page.locator("table.logs tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("table.logs")).to_contain_text(INFO_LOG)

    page.locator('select[name="severity"]').select_option("error")
    expect(rows).to_have_count(1)
    error_row = rows.first
    expect(error_row).to_contain_text(ERROR_LOG)
    expect(error_row).to_contain_text(HOSTILE)
    expect(error_row.locator(".sev")).to_have_text("ERROR")
    expect(error_row).to_contain_text(SERVICE)
    expect(error_row).to_contain_text("order.id=42")
    expect(page.locator("table.logs")).not_to_contain_text(INFO_LOG)

    # The tail keeps refreshing: a new error record shows up without a click.
    exporter = GrpcLogExporter(endpoint=gw.grpc_target, insecure=True, timeout=10)
    provider = LoggerProvider(resource=Resource.create({"service.name": "billing"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=60_000))
    try:
        provider.get_logger("e2e.ui").emit(
            body="ledger unavailable", severity_number=SeverityNumber.FATAL, severity_text="FATAL"
        )
        assert provider.force_flush(15_000)
    finally:
        provider.shutdown()
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("ledger unavailable")

    page.locator('input[name="service"]').fill(SERVICE)
    expect(rows).to_have_count(1)
    expect(page.locator("table.logs")).not_to_contain_text("ledger unavailable")
    page.keyboard.press("Escape")  # close the input's suggestions before the screenshot
    page.locator('input[name="service"]').blur()
    tab.screenshot("logs")

    link = rows.first.locator("a.trace-link")
    expect(link).to_have_attribute("href", f"#/trace/{trace_id}")
    link.click()
    expect(page.locator(".wf-row.span")).to_have_count(2)
    expect(page.locator(".trace-id")).to_have_text(trace_id)
    tab.assert_sound()


def test_targets_page_shows_scrape_targets_with_their_health_and_errors(gateway, ui):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    Gauge("queue_depth", "Waiting.", registry=registry).set(3)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 - the stdlib's name
            body = generate_latest(registry) if self.path == "/metrics" else b"{{ garbage\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    try:

        def config(ports):
            jobs = [
                {"job_name": "good", "scrape_interval": "1s", "scrape_timeout": "1s", "static_configs": [{"targets": [address]}]},
                {
                    "job_name": "broken",
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "metrics_path": "/broken",
                    "static_configs": [{"targets": [address], "labels": {"team": "shop"}}],
                },
            ]
            return {
                "receivers": {"prometheus": {"config": {"scrape_configs": jobs}}},
                "exporters": {"debug": {"verbosity": "basic"}},
                "service": {
                    "pipelines": {"metrics": pipeline(["debug"], receivers=["prometheus"])},
                    "admin": {"endpoint": f"127.0.0.1:{ports['admin']}"},
                },
            }

        gw = gateway(config=config)
        tab = ui(gw)
        page = tab.open("targets")
        good = page.locator('tr[data-job="good"]')
        broken = page.locator('tr[data-job="broken"]')
        expect(good.locator(".badge")).to_have_text("up", timeout=15000)
        expect(broken.locator(".badge")).to_have_text("down", timeout=15000)
        expect(broken).to_contain_text(f"http://{address}/broken")
        expect(broken).to_contain_text('team="shop"')
        expect(broken.locator(".error-text")).to_contain_text("line 1")
        expect(good.locator(".error-text")).to_have_text("")
        tab.screenshot("targets")
        tab.assert_sound()
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_explorer_lists_families_series_and_charts_one(gateway, ui):
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    def config(ports):
        ports["scrape"] = free_port()
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{ports['http']}"}}}},
            "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{ports['scrape']}", "target_info": False}},
            "service": {
                "pipelines": {"metrics": pipeline(["prometheus"])},
                "admin": {"endpoint": f"127.0.0.1:{ports['admin']}"},
            },
        }

    gw = gateway(config=config)
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{gw.http_url}/v1/metrics", timeout=10), export_interval_millis=1000
    )
    provider = MeterProvider(resource=Resource.create({"service.name": "shop"}), metric_readers=[reader])
    try:
        orders = provider.get_meter("shop").create_counter("shop.orders", unit="{order}", description="Orders placed.")
        for i in range(12):
            orders.add(i + 1, {"customer": f"c{i}", "route": f"/r{i % 2}"})
        tab = ui(gw)
        page = tab.open("metrics")
        row = page.locator('tr.family[data-family="shop_orders_total"]')
        expect(row).to_be_visible(timeout=15000)
        expect(row).to_contain_text("counter")
        expect(row).to_contain_text("{order}")
        expect(row.locator("td.num")).to_have_text("12")
        # The label with the most distinct values comes first.
        expect(row.locator(".labels-top")).to_have_text(re.compile(r"^customer \(12\), route \(2\)"))
        expect(row).to_contain_text("Orders placed.")
        row.click()
        series = page.locator("table.series tbody tr")
        expect(series).to_have_count(12)
        # The series of customer c3 counts 4; it is charted as it grows.
        target = series.filter(has_text='customer="c3"')
        expect(target.locator(".value")).to_have_text("4")
        target.click()
        for _ in range(3):
            orders.add(10, {"customer": "c3", "route": "/r1"})
            time.sleep(2)
        expect(page.locator(".chart svg polyline")).to_be_visible(timeout=20000)
        expect(page.locator("table.series tbody tr[aria-selected=true] .value")).not_to_have_text("4", timeout=15000)
        tab.screenshot("metrics")
        tab.assert_sound()
    finally:
        provider.shutdown()


def test_pipeline_page_taps_before_and_after_a_plugin(gateway, ui, plugin_dir, plugin_cache):
    gw = start_with_plugins(gateway, plugin_dir, plugin_cache)
    tab = ui(gw)
    page = tab.open("pipelines")
    node = page.locator('article[data-pipeline="traces"] [data-processor="redact"]')
    node.locator("button.tap-open").click()
    before = page.locator('article[data-pipeline="traces"] .tap-side[data-place="before"] .tap-record')
    after = page.locator('article[data-pipeline="traces"] .tap-side[data-place="after"] .tap-record')

    def signups():
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        with provider.get_tracer("e2e.ui").start_as_current_span("signup", attributes={"user.email": "erin@example.com"}):
            pass
        provider.shutdown()
        return list(memory.get_finished_spans())

    def both_shown() -> bool:
        send_spans(gw, signups())
        return before.count() > 0 and after.count() > 0

    wait_until(both_shown, 20, "records on both sides of the tap", interval=0.5)
    expect(before.first).to_contain_text("erin@example.com")
    expect(after.first).to_contain_text("[REDACTED]")
    expect(after.first).not_to_contain_text("erin@example.com")
    tab.screenshot("tap")
    tab.assert_sound()


def test_header_shows_a_refused_config_reload(gateway, ui):
    gw = gateway(config=store_config)
    tab = ui(gw)
    page = tab.open("pipelines")
    expect(page.locator("#live-text")).to_have_text("live")
    badge = page.locator("#h-reload")
    expect(badge).to_be_hidden()
    good = gw.config_path.read_text()
    gw.config_path.write_text("receivers: [unclosed\n")
    r = requests.post(gw.admin_url + "/api/v1/config/reload", headers={"X-Sluice-Request": "1"}, timeout=60)
    assert r.status_code == 422
    # The live stream ends with the reload; the page reconnects and reads the outcome.
    expect(badge).to_be_visible(timeout=15000)
    expect(badge).to_have_text("config reload refused")
    assert "invalid YAML" in (badge.get_attribute("title") or "")
    gw.config_path.write_text(good)
    assert requests.post(gw.admin_url + "/api/v1/config/reload", headers={"X-Sluice-Request": "1"}, timeout=60).status_code == 200
    expect(badge).to_be_hidden(timeout=15000)
    expect(page.locator('article[data-pipeline="traces"]')).to_be_visible()
    tab.assert_sound()
