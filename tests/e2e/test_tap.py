"""`sluice tap` and `GET /api/v1/tap`: the records passing a point of a running pipeline,
before and after a real plugin (`builtin/redact`), fed by the official OpenTelemetry SDK; and
what hostile or careless use gets: clear 4xx answers, a bound on open taps, taps that end by
themselves and free their place, the admin credentials."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from support.config import gateway_config, pipeline, write_config
from support.gateway import validate_with_plugins
from support.process import REPO, SLUICE_BIN

TOKEN = "tap-token-0123456789abcdef"
EMAIL = "dana@example.com"


@pytest.fixture(scope="module")
def plugin_dir() -> Path:
    configured = os.environ.get("SLUICE_TEST_PLUGINS")
    base = (Path(configured) if configured else REPO / "target" / "wasm32-wasip2" / "release").resolve()
    if not (base / "sluice_plugin_redact.wasm").is_file():
        pytest.fail(f"sluice_plugin_redact.wasm not found in {base}: run scripts/build-plugins.sh", pytrace=False)
    return base


def redacting(cache: Path, auth: bool = False):
    def config(ports):
        return gateway_config(
            ports,
            {"blackhole": {}},
            processors={"redact": {"plugin": "builtin/redact", "config": {}}},
            pipelines={"traces": pipeline(["blackhole"], processors=["redact"]), "logs": pipeline(["blackhole"])},
            plugins={"cache_dir": str(cache)},
            admin={"auth": {"bearer_token_env": "SLUICE_ADMIN_TOKEN"}} if auth else None,
        )

    return config


@pytest.fixture(scope="module")
def cache(tmp_path_factory, plugin_dir) -> Path:
    """The compiled redact plugin, once for the module (a debug build compiles it slowly)."""
    cache = tmp_path_factory.mktemp("tap-plugin-cache")
    ports = {"grpc": 1, "http": 2, "admin": 3}
    path = write_config(tmp_path_factory.mktemp("tap-fill") / "fill.yaml", redacting(cache)(ports))
    validate_with_plugins(path, plugin_dir)
    return cache


def start(gateway, plugin_dir, cache, auth=False):
    env = {"SLUICE_PLUGIN_DIR": str(plugin_dir)}
    if auth:
        env["SLUICE_ADMIN_TOKEN"] = TOKEN
    return gateway(config=redacting(cache, auth), env=env)


def send_spans(gw, n: int) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "signup"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{gw.http_url}/v1/traces", timeout=10)))
    tracer = provider.get_tracer("e2e")
    for i in range(n):
        with tracer.start_as_current_span(f"signup {i}", attributes={"user.email": EMAIL, "n": i}):
            pass
    provider.shutdown()


def cli(gw, *args: str, token: str | None = None, timeout: float = 30) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    if token:
        env["SLUICE_ADMIN_TOKEN"] = token
    return subprocess.Popen(
        [str(SLUICE_BIN), "tap", "--admin", gw.admin_url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def feed_until_done(gw, procs: list[subprocess.Popen], deadline: float = 30) -> None:
    """Sends spans until every tap has ended (a tap shows what passes after it opened)."""
    end = time.monotonic() + deadline
    while any(p.poll() is None for p in procs):
        assert time.monotonic() < end, "the taps did not end"
        send_spans(gw, 2)
        time.sleep(0.2)


def test_tap_shows_records_before_and_after_a_plugin(gateway, plugin_dir, cache):
    gw = start(gateway, plugin_dir, cache)
    before = cli(gw, "--pipeline", "traces", "--before", "redact", "--limit", "3", "--format", "json")
    after = cli(gw, "--pipeline", "traces", "--after", "redact", "--limit", "3", "--format", "json")
    at_exporter = cli(gw, "--pipeline", "traces", "--exporter", "blackhole", "--limit", "2")
    time.sleep(0.5)
    feed_until_done(gw, [before, after, at_exporter])
    outputs = {}
    for name, p in (("before", before), ("after", after), ("exporter", at_exporter)):
        out, err = p.communicate(timeout=10)
        assert p.returncode == 0, err
        outputs[name] = out.splitlines()
    # JSON lines: one span each, with its resource and scope.
    for name in ("before", "after"):
        assert len(outputs[name]) == 3, outputs[name]
        records = [json.loads(line) for line in outputs[name]]
        assert all(r["span"]["name"].startswith("signup") for r in records)
        assert all(
            {"key": "service.name", "value": {"stringValue": "signup"}} in r["resource"]["attributes"] for r in records
        )
        emails = [a["value"]["stringValue"] for r in records for a in r["span"]["attributes"] if a["key"] == "user.email"]
        assert emails == ([EMAIL] * 3 if name == "before" else ["[REDACTED]"] * 3), (name, emails)
    # Text: a line a span, what the exporter gets (after redact).
    assert len(outputs["exporter"]) == 2
    for line in outputs["exporter"]:
        assert line.startswith('span "signup ') and "service=signup" in line
        assert 'user.email="[REDACTED]"' in line and EMAIL not in line


def test_tap_answers_mistakes_bounds_taps_and_they_end_by_themselves(gateway, plugin_dir, cache):
    gw = start(gateway, plugin_dir, cache)
    url = gw.admin_url + "/api/v1/tap"
    for params, status, message in [
        ({}, 400, "pipeline parameter is required"),
        ({"pipeline": "traces", "before": "redact", "after": "redact"}, 400, "name one place"),
        ({"pipeline": "traces", "limit": "-3"}, 400, "whole number"),
        ({"pipeline": "traces", "seconds": "soon"}, 400, "whole number"),
        ({"pipeline": "traces", "colour": "red"}, 400, "unknown parameter"),
        ({"pipeline": "nope"}, 404, "no pipeline"),
        ({"pipeline": "traces", "after": "nope"}, 404, "no processor"),
        ({"pipeline": "traces", "exporter": "nope"}, 404, "no exporter"),
        ({"pipeline": "\udcff".encode("utf-8", "surrogatepass").decode("latin-1")}, 404, "no pipeline"),
    ]:
        r = requests.get(url, params=params, timeout=10)
        assert r.status_code == status, (params, r.text)
        assert message in r.json()["error"], r.text
    p = cli(gw, "--pipeline", "nope")
    _, err = p.communicate(timeout=10)
    assert p.returncode == 1 and "404" in err and "no pipeline" in err

    # Eight taps at most; the ninth is told to wait. On an idle pipeline they end by themselves.
    streams = [requests.get(url, params={"pipeline": "logs", "seconds": "2"}, stream=True, timeout=10) for _ in range(8)]
    assert all(s.status_code == 200 for s in streams)
    assert all(s.headers["content-type"] == "application/x-ndjson" for s in streams)
    r = requests.get(url, params={"pipeline": "traces"}, timeout=10)
    assert r.status_code == 429 and "taps are open" in r.json()["error"]
    started = time.monotonic()
    bodies = [s.content for s in streams]
    assert time.monotonic() - started < 10 and bodies == [b""] * 8
    # Ended taps free their places, also those whose client went away mid-stream.
    def opened():
        return requests.get(url, params={"pipeline": "logs", "seconds": "60"}, stream=True, timeout=10)

    deadline = time.monotonic() + 10
    while (first := opened()).status_code != 200:
        assert time.monotonic() < deadline, first.text
        time.sleep(0.2)
    rest = [opened() for _ in range(7)]
    assert all(s.status_code == 200 for s in rest)
    for s in [first, *rest]:
        s.close()
    # The server notices a closed client when the tap next has something to say or sees it
    # closed: within a moment, all places are free again.
    deadline = time.monotonic() + 15
    while True:
        again = [opened() for _ in range(8)]
        ok = all(s.status_code == 200 for s in again)
        for s in again:
            s.close()
        if ok:
            break
        assert time.monotonic() < deadline, "closed taps did not free their places"
        time.sleep(0.5)

    # Concurrent taps while data flows: each gets what it asked for, nothing stalls.
    results: list[int] = []

    def tap_some():
        r = requests.get(url, params={"pipeline": "traces", "after": "redact", "limit": "2", "seconds": "20"}, timeout=30)
        results.append(len(r.content.splitlines()) if r.status_code == 200 else -r.status_code)

    threads = [threading.Thread(target=tap_some) for _ in range(4)]
    for t in threads:
        t.start()
    end = time.monotonic() + 25
    while any(t.is_alive() for t in threads) and time.monotonic() < end:
        send_spans(gw, 3)
        time.sleep(0.2)
    for t in threads:
        t.join(5)
    assert sorted(results) == [2, 2, 2, 2], results
    assert requests.get(gw.admin_url + "/health/live", timeout=5).status_code == 200


def test_tap_needs_the_admin_credentials(gateway, plugin_dir, cache):
    gw = start(gateway, plugin_dir, cache, auth=True)
    r = requests.get(gw.admin_url + "/api/v1/tap", params={"pipeline": "traces"}, timeout=10)
    assert r.status_code == 401
    p = cli(gw, "--pipeline", "traces", "--limit", "1")
    _, err = p.communicate(timeout=10)
    assert p.returncode == 1 and "401" in err
    p = cli(gw, "--pipeline", "traces", "--after", "redact", "--limit", "1", token=TOKEN)
    feed_until_done(gw, [p])
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert len(out.splitlines()) == 1 and "[REDACTED]" in out
