"""The `prometheus` receiver: Sluice scraping real targets.

The targets are the Python `prometheus_client` library serving a registry over HTTP (OpenMetrics
or the text format, chosen by the library from the `Accept` header as it does for Prometheus),
the gateway's own `/metrics`, and a real Prometheus's `/metrics`. What Sluice scrapes goes out
through its `prometheus` exporter and is scraped from there by a real Prometheus, which is then
compared with a second real Prometheus scraping the same target directly: label for label and
value for value (PromQL on both sides).

Hostile targets are plain HTTP handlers of this file: one that never answers, one that answers
50 MiB, one that answers garbage. Each must be counted and reported while a good target beside
it keeps its schedule.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.exposition import choose_encoder, generate_latest

from support.config import gateway_config, pipeline
from support.exposition import parse_prometheus
from support.polling import wait_until
from support.ports import free_port
from support.process import SLUICE_BIN

# Prometheus applies its first targets about five seconds after it starts.
FIRST_SCRAPE_TIMEOUT = 30.0


class Target:
    """A loopback HTTP server: `mode` "registry" serves `registry` as prometheus_client's own
    handler does (OpenMetrics when the `Accept` header asks for it), "text" always the text
    format; "hang" never answers; "huge" answers `huge_bytes` of valid samples; "garbage"
    answers bytes that are no exposition."""

    def __init__(self, registry: CollectorRegistry | None = None, mode: str = "registry", huge_bytes: int = 0):
        self.registry = registry or CollectorRegistry()
        self.mode = mode
        self.huge_bytes = huge_bytes
        self.requests = 0
        self.accept_headers: list[str] = []
        self.stop_event = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 - the stdlib's name
                target.requests += 1
                accept = self.headers.get("Accept", "")
                target.accept_headers.append(accept)
                if target.mode == "hang":
                    target.stop_event.wait(30)
                    return
                if target.mode == "garbage":
                    body = b"\x00\xff\xfe{{{ not metrics }}}\n\x80\x81" * 100
                    content_type = "text/plain; version=0.0.4"
                elif target.mode == "huge":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.end_headers()
                    chunk = b"".join(b'huge_metric{i="%d"} 1\n' % i for i in range(50_000))
                    sent = 0
                    try:
                        while sent < target.huge_bytes and not target.stop_event.is_set():
                            self.wfile.write(chunk)
                            sent += len(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                elif target.mode == "text":
                    body = generate_latest(target.registry)
                    content_type = "text/plain; version=0.0.4; charset=utf-8"
                else:
                    encoder, content_type = choose_encoder(accept)
                    body = encoder(target.registry)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def targets():
    made: list[Target] = []

    def make(*args, **kw) -> Target:
        t = Target(*args, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()


def sluice_scraping(jobs: list[dict], max_concurrent: int | None = None, scrape_port: bool = True):
    """A config callable: a `prometheus` receiver with `jobs` into one metrics pipeline that ends
    in a `prometheus` exporter on `ports["scrape"]`."""

    def make(ports):
        ports["scrape"] = free_port()
        receiver: dict = {"config": {"scrape_configs": jobs}}
        if max_concurrent is not None:
            receiver["max_concurrent_scrapes"] = max_concurrent
        exporters = {
            "prometheus": {
                "endpoint": f"127.0.0.1:{ports['scrape']}",
                "target_info": False,
                "metric_expiration": "5m",
            }
        }
        return gateway_config(
            ports,
            exporters,
            receivers={"prometheus": receiver},
            pipelines={"metrics": pipeline(["prometheus"], receivers=["prometheus"])},
            shutdown_timeout="5s",
        )

    return make


def job(name: str, *addresses: str, interval: str = "1s", timeout: str = "1s", **extra) -> dict:
    return {
        "job_name": name,
        "scrape_interval": interval,
        "scrape_timeout": timeout,
        "static_configs": [{"targets": list(addresses)}],
        **extra,
    }


def exposed(gw) -> list[tuple[str, dict[str, str], float]]:
    r = requests.get(f"http://127.0.0.1:{gw.ports['scrape']}/metrics", timeout=5)
    assert r.status_code == 200, r.text
    return parse_prometheus(r.text)


def self_metric(gw, name: str, **labels: str) -> float:
    total = 0.0
    for n, l, v in parse_prometheus(requests.get(gw.admin_url + "/metrics", timeout=5).text):
        if n == name and all(l.get(k) == want for k, want in labels.items()):
            total += v
    return total


def target_statuses(gw) -> list[dict]:
    body = requests.get(gw.admin_url + "/api/v1/targets", timeout=5).json()
    return [t for r in body["receivers"] for t in r["targets"]]


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def shop_registry():
    """A registry with every kind of metric prometheus_client has, with known values."""
    registry = CollectorRegistry()
    orders = Counter("shop_orders", "Orders taken.", ["method", "status"], registry=registry)
    orders.labels("card", "ok").inc(41)
    orders.labels("card", "declined").inc(3)
    orders.labels("cash", "ok").inc(7)
    depth = Gauge("shop_queue_depth", "Orders waiting.", registry=registry)
    depth.set(12.5)
    latency = Histogram("shop_latency_seconds", "Checkout latency.", buckets=[0.1, 0.5, 1.0], registry=registry)
    for v in (0.05, 0.2, 0.3, 0.7, 2.0):
        latency.observe(v)
    size = Summary("shop_payload_bytes", "Payload sizes.", registry=registry)
    for v in (100, 250):
        size.observe(v)
    Info("shop_build", "Build.", registry=registry).info({"version": "1.2.3", "branch": "main"})
    Enum("shop_state", "State.", states=["open", "closed"], registry=registry).state("open")
    return registry, orders


def normalised(series: list[tuple[dict[str, str], float]]) -> dict[tuple, float]:
    """Series by their labels, with `le` and `quantile` compared as numbers: prometheus_client
    writes `le="1.0"` where Sluice writes `le="1"`, and Prometheus 2.42 keeps either as written
    (Prometheus 3 normalises them itself)."""
    out = {}
    for labels, value in series:
        key = []
        for k, v in sorted(labels.items()):
            if k in ("le", "quantile"):
                v = repr(float(v))
            key.append((k, v))
        out[tuple(key)] = value
    return out


# The series a target's own families make; `_created` series are left out: Sluice, like the
# Collector, makes `_created` the points' start time, and Prometheus 2.42 stores it as a series.
SHOP_SERIES = '{job="app", __name__=~"shop_.*", __name__!~".*_created"}'


def test_scraped_metrics_round_trip_into_prometheus_equal_a_direct_scrape(gateway, prometheus, targets):
    registry, orders = shop_registry()
    target = targets(registry)
    gw = gateway(config=sluice_scraping([job("app", target.address)]))
    direct = prometheus(
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [job("app", target.address)],
        }
    )
    via = prometheus(
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {**job("sluice", f"127.0.0.1:{gw.ports['scrape']}"), "honor_labels": True}
            ],
        }
    )

    def same():
        a = normalised(direct.query(SHOP_SERIES))
        b = normalised(via.query(SHOP_SERIES))
        state["a"], state["b"] = a, b
        return len(a) > 10 and a == b

    state: dict = {}
    try:
        wait_until(same, FIRST_SCRAPE_TIMEOUT, "the same series and values on both sides")
    except AssertionError:
        a, b = state.get("a", {}), state.get("b", {})
        only_a = {k: a[k] for k in a.keys() - b.keys()}
        only_b = {k: b[k] for k in b.keys() - a.keys()}
        differ = {k: (a[k], b[k]) for k in a.keys() & b.keys() if a[k] != b[k]}
        pytest.fail(f"direct only: {only_a}\nvia Sluice only: {only_b}\ndiffering: {differ}")
    series = state["a"]
    names = {dict(k)["__name__"] for k in series}
    # Every kind came through: counter, gauge, histogram, summary, info, stateset.
    assert {
        "shop_orders_total",
        "shop_queue_depth",
        "shop_latency_seconds_bucket",
        "shop_latency_seconds_sum",
        "shop_latency_seconds_count",
        "shop_payload_bytes_count",
        "shop_payload_bytes_sum",
        "shop_build_info",
        "shop_state",
    } <= names, names
    assert "OpenMetrics" in "".join(target.accept_headers) or any(
        "openmetrics" in a for a in target.accept_headers
    ), target.accept_headers

    # A counter that resets (the process restarted): both sides see the reset and the new value.
    registry.unregister(orders)
    fresh = Counter("shop_orders", "Orders taken.", ["method", "status"], registry=registry)
    fresh.labels("card", "ok").inc(2)
    fresh.labels("card", "declined").inc(0)
    fresh.labels("cash", "ok").inc(1)
    card_ok = tuple(
        sorted(
            {"__name__": "shop_orders_total", "job": "app", "instance": target.address, "method": "card", "status": "ok"}.items()
        )
    )
    wait_until(lambda: same() and state["a"].get(card_ok) == 2.0, 15, "the same series after the counter reset")
    for side in (direct, via):
        resets = side.query('resets(shop_orders_total{job="app",method="card",status="ok"}[1m])')
        assert resets and resets[0][1] >= 1, resets

    # The synthetic series Prometheus adds are there too.
    up = via.query('up{job="app"}')
    assert up and up[0][1] == 1.0 and up[0][0]["instance"] == target.address, up
    scraped = via.query('scrape_samples_scraped{job="app"}')
    assert scraped and scraped[0][1] > 10, scraped


def test_text_format_targets_the_gateway_and_prometheus_itself(gateway, prometheus, targets):
    registry, _ = shop_registry()
    text = targets(registry, mode="text")
    prom_target = prometheus(
        {"global": {"scrape_interval": "10s"}, "scrape_configs": []}
    )
    # The gateway scrapes a text-only target, a real Prometheus's /metrics, and its own.
    gw = gateway(
        config=lambda ports: sluice_scraping(
            [
                job("text", text.address),
                job("prometheus", f"127.0.0.1:{prom_target.port}"),
                job("sluice", f"127.0.0.1:{ports['admin']}"),
            ]
        )(ports)
    )

    def series():
        state["s"] = exposed(gw)
        jobs = {l.get("job") for n, l, v in state["s"] if n == "up" and v == 1.0}
        return {"text", "prometheus", "sluice"} <= jobs

    state: dict = {}
    wait_until(series, 20, "up == 1 for the three targets")
    samples = state["s"]

    def value(name, **labels):
        for n, l, v in samples:
            if n == name and all(l.get(k) == want for k, want in labels.items()):
                return v
        raise AssertionError(f"{name} {labels} not exposed")

    # The text format's counter, histogram, and the `_created` gauge it writes separately.
    assert value("shop_orders_total", job="text", method="card", status="ok") == 41
    assert value("shop_latency_seconds_bucket", job="text", le="0.5") == 3
    assert value("shop_latency_seconds_count", job="text") == 5
    assert value("shop_orders_created", job="text", method="cash") > 1e9
    # A real Prometheus's and the gateway's own metrics.
    assert value("prometheus_build_info", job="prometheus") == 1
    assert value("sluice_scrape_targets", job="sluice", receiver="prometheus") >= 1
    assert text.accept_headers and "openmetrics" in text.accept_headers[0]


def test_hostile_targets_are_counted_and_do_not_delay_a_good_one(gateway, targets):
    good_registry, _ = shop_registry()
    good = targets(good_registry)
    hang = targets(mode="hang")
    huge = targets(mode="huge", huge_bytes=50 << 20)
    garbage = targets(mode="garbage")
    gw = gateway(
        config=sluice_scraping(
            [
                job("good", good.address),
                job("hang", hang.address),
                job("huge", huge.address, interval="3s", timeout="3s"),
                job("garbage", garbage.address),
            ],
        )
    )

    def failures_seen():
        return (
            self_metric(gw, "sluice_scrape_requests_total", job="hang", result="timeout") >= 2
            and self_metric(gw, "sluice_scrape_requests_total", job="huge", result="body_too_large") >= 2
            and self_metric(gw, "sluice_scrape_requests_total", job="garbage", result="parse_error") >= 2
        )

    wait_until(failures_seen, 30, "each hostile target's failure counted twice")
    # The good target kept its one-second schedule meanwhile.
    before = self_metric(gw, "sluice_scrape_requests_total", job="good", result="success")
    time.sleep(5)
    after = self_metric(gw, "sluice_scrape_requests_total", job="good", result="success")
    assert 4 <= after - before <= 6, (before, after)

    statuses = {t["job"]: t for t in target_statuses(gw)}
    assert statuses["good"]["health"] == "up" and statuses["good"]["last_error"] is None
    durations = self_metric(gw, "sluice_scrape_duration_seconds_count", job="good")
    assert durations >= 5, durations
    assert statuses["hang"]["health"] == "down"
    assert "timeout" in statuses["hang"]["last_error"]
    assert "body_size_limit" in statuses["huge"]["last_error"]
    assert statuses["garbage"]["health"] == "down" and "line" in statuses["garbage"]["last_error"]
    detailed = requests.get(gw.admin_url + "/health/detailed", timeout=5).json()
    scrape = [r for r in detailed["receivers"] if r["transport"] == "scrape"]
    assert scrape and len(scrape[0]["targets"]) == 4
    # `up` is 0 for the bad ones, and the 32 MiB default limit kept memory bounded.
    samples = exposed(gw)
    ups = {l["job"]: v for n, l, v in samples if n == "up"}
    assert ups == {"good": 1.0, "hang": 0.0, "huge": 0.0, "garbage": 0.0}, ups
    assert not any(n == "huge_metric" for n, _, _ in samples)
    peak = peak_rss_mib(gw.pid)
    assert peak < 400, f"gateway peak RSS {peak:.0f} MiB with 50 MiB answers"


def test_relabeling_limits_and_file_sd(gateway, targets, tmp_path):
    registry, _ = shop_registry()
    a = targets(registry)
    b = targets(registry)
    sd = tmp_path / "targets.json"
    sd.write_text(json.dumps([{"targets": [a.address], "labels": {"team": "shop"}}]))
    jobs = [
        {
            "job_name": "filed",
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "file_sd_configs": [{"files": [str(tmp_path / "*.json")]}],
            "relabel_configs": [
                {"source_labels": ["__meta_filepath"], "regex": ".*targets.json", "action": "keep"},
                {"source_labels": ["team"], "target_label": "owner"},
                {"regex": "team", "action": "labeldrop"},
            ],
            "metric_relabel_configs": [
                {"source_labels": ["__name__"], "regex": "shop_(payload|state).*", "action": "drop"},
            ],
        },
        {**job("limited", b.address), "sample_limit": 5},
    ]
    gw = gateway(config=sluice_scraping(jobs))

    def jobs_up():
        state["s"] = exposed(gw)
        return {l.get("job"): v for n, l, v in state["s"] if n == "up"}

    state: dict = {}
    wait_until(lambda: jobs_up().get("filed") == 1.0 and "limited" in jobs_up(), 20, "both jobs scraped")
    samples = state["s"]
    orders = [l for n, l, v in samples if n == "shop_orders_total" and l.get("job") == "filed"]
    assert orders and all(l.get("owner") == "shop" and "team" not in l for l in orders), orders
    assert not any(n.startswith("shop_payload") or n == "shop_state" for n, l, _ in samples if l.get("job") == "filed")
    post = [v for n, l, v in samples if n == "scrape_samples_post_metric_relabeling" and l.get("job") == "filed"]
    scraped = [v for n, l, v in samples if n == "scrape_samples_scraped" and l.get("job") == "filed"]
    assert post and scraped and post[0] < scraped[0]
    kept = self_metric(gw, "sluice_scrape_samples_total", job="filed", stage="kept")
    read = self_metric(gw, "sluice_scrape_samples_total", job="filed", stage="scraped")
    assert 0 < kept < read, (kept, read)
    assert self_metric(gw, "sluice_scrape_targets", job="filed") == 1
    # More samples than sample_limit: the scrape fails as a whole, as in Prometheus.
    wait_until(
        lambda: self_metric(gw, "sluice_scrape_requests_total", job="limited", result="sample_limit") >= 1,
        10,
        "the sample_limit failure counted",
    )
    assert not any(l.get("job") == "limited" and n.startswith("shop_") for n, l, _ in exposed(gw))

    # A second file appears: its target is scraped within about one interval.
    (tmp_path / "more.json").write_text(json.dumps([{"targets": [b.address]}]))
    # ...but the keep rule above takes only targets.json: so the new target is dropped; rename
    # it to a name the rule keeps, as an operator would.
    os.replace(tmp_path / "more.json", tmp_path / "extra-targets.json")
    started = time.monotonic()
    wait_until(
        lambda: {t["url"] for t in target_statuses(gw) if t["job"] == "filed"}
        == {f"http://{a.address}/metrics", f"http://{b.address}/metrics"},
        10,
        "the new file's target discovered",
    )
    wait_until(
        lambda: any(
            n == "up" and l.get("instance") == b.address and l.get("job") == "filed" and v == 1.0
            for n, l, v in exposed(gw)
        ),
        10,
        "the new target scraped",
    )
    assert time.monotonic() - started < 5
    # A bad edit: counted, and the targets the file had stay.
    (tmp_path / "targets.json").write_text("[{not json")
    wait_until(
        lambda: self_metric(gw, "sluice_scrape_discovery_failures_total", job="filed", mechanism="file_sd") >= 1,
        10,
        "the bad file_sd edit counted",
    )
    errors = requests.get(gw.admin_url + "/api/v1/targets", timeout=5).json()["receivers"][0]["discovery_errors"]
    assert "targets.json" in errors.get("filed", ""), errors
    assert len([t for t in target_statuses(gw) if t["job"] == "filed"]) == 2
    # The file goes away: the target is dropped and its series are marked stale (gone).
    (tmp_path / "extra-targets.json").unlink()
    wait_until(
        lambda: not any(
            l.get("instance") == b.address and l.get("job") == "filed" and n.startswith("shop_")
            for n, l, _ in exposed(gw)
        ),
        10,
        "the removed target's series gone",
    )


def validate(tmp_path, scrape_configs: list[dict]) -> str:
    """`sluice validate` of a config with these jobs: must refuse it with exit code 64."""
    config = {
        "receivers": {"prometheus": {"config": {"scrape_configs": scrape_configs}}},
        "exporters": {"debug": {}},
        "service": {"pipelines": {"metrics": {"receivers": ["prometheus"], "exporters": ["debug"]}}},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(config))
    r = subprocess.run([str(SLUICE_BIN), "validate", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 64, (r.returncode, r.stdout, r.stderr)
    return r.stdout + r.stderr


def test_bad_scrape_configs_are_refused_with_their_paths(tmp_path):
    out = validate(
        tmp_path,
        [
            {"job_name": "a", "scrape_interval": "5s", "scrape_timeout": "10s", "static_configs": [{"targets": ["http://x:1/metrics"]}]},
            {"job_name": "a", "relabel_configs": [{"action": "hashmod", "source_labels": ["x"], "target_label": "y"}]},
            {"job_name": "c", "metric_relabel_configs": [{"source_labels": ["__name__"], "regex": "(", "action": "drop"}]},
        ],
    )
    assert "scrape_configs[0].scrape_timeout" in out, out
    assert "scrape_configs[0].static_configs[0].targets[0]" in out and "not host:port" in out, out
    assert "scrape_configs[1].job_name" in out and "earlier job" in out, out
    assert "scrape_configs[1].relabel_configs[0]" in out and "modulus" in out, out
    assert "scrape_configs[2].metric_relabel_configs[0]" in out and "regex" in out, out
    # A value of the wrong form names its field and the form expected.
    out = validate(tmp_path, [{"job_name": "b", "scrape_interval": "1x"}])
    assert "scrape_configs[0].scrape_interval" in out and "1m30s" in out, out
    out = validate(tmp_path, [{"job_name": "b", "kubernetes_sd_configs": [{"role": "node"}]}])
    assert "kubernetes_sd_configs" in out and "node" in out, out
    out = validate(tmp_path, [{"job_name": "b", "consul_sd_configs": [{"server": "x:8500"}]}])
    assert "consul_sd_configs" in out, out


class FakeKubernetesApi:
    """The part of the Kubernetes API server that pod discovery reads: `GET
    /api/v1/namespaces/{ns}/pods` and `/api/v1/pods`, answering a `PodList` of the objects in
    `pods` (written in the API's own JSON shape; the client decodes them with the types
    generated from Kubernetes's OpenAPI definitions, so a deviation would fail). No cluster runs
    here, hence the fake. `fail` makes it answer 500; every Authorization header is kept."""

    def __init__(self):
        self.pods: list[dict] = []
        self.fail = False
        self.authorizations: list[str] = []
        self.paths: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - the stdlib's name
                api.authorizations.append(self.headers.get("Authorization", ""))
                path = self.path.split("?", 1)[0]
                api.paths.append(path)
                if api.fail:
                    body, status = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd is down", "code": 500}), 500
                elif path == "/api/v1/pods" or (path.startswith("/api/v1/namespaces/") and path.endswith("/pods")):
                    ns = path.split("/")[4] if path.startswith("/api/v1/namespaces/") else None
                    items = [p for p in api.pods if ns is None or p["metadata"]["namespace"] == ns]
                    body = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
                    status = 200
                else:
                    body, status = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}), 404
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def k8s_pod(name: str, namespace: str, ip: str, port: int, annotations: dict | None = None, labels: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "shop:1", "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": ip, "hostIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
    }


# The relabeling the Prometheus documentation and Helm charts use for pods: scrape those
# annotated prometheus.io/scrape=true, on the annotated port and path, with the pod's labels.
ANNOTATION_RELABELING = [
    {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"},
    {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"], "action": "replace", "target_label": "__metrics_path__", "regex": "(.+)"},
    {
        "source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
        "action": "replace",
        "regex": "([^:]+)(?::\\d+)?;(\\d+)",
        "replacement": "$1:$2",
        "target_label": "__address__",
    },
    {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
]


def test_kubernetes_pods_discovered_by_the_scrape_annotation(gateway, targets, tmp_path):
    registry, _ = shop_registry()
    a = targets(registry)
    b = targets(registry)
    api = FakeKubernetesApi()
    try:
        api.pods = [
            k8s_pod("shop-1", "prod", "127.0.0.1", 8080, {"prometheus.io/scrape": "true", "prometheus.io/port": str(a.port)}, {"app": "shop"}),
            k8s_pod("batch-1", "prod", "127.0.0.1", b.port, {}, {"app": "batch"}),
            k8s_pod("other-1", "staging", "127.0.0.1", b.port, {"prometheus.io/scrape": "true"}, {"app": "other"}),
        ]
        token = tmp_path / "token"
        token.write_text("k8s-token\n")
        jobs = [
            {
                "job_name": "kubernetes-pods",
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "kubernetes_sd_configs": [
                    {
                        "role": "pod",
                        "api_server": api.url,
                        "namespaces": {"names": ["prod"]},
                        "refresh_interval": "1s",
                        "bearer_token_file": str(token),
                    }
                ],
                "relabel_configs": ANNOTATION_RELABELING,
            }
        ]
        gw = gateway(config=sluice_scraping(jobs))

        def ups():
            return {
                (l.get("pod"), l.get("instance")): (l, v) for n, l, v in exposed(gw) if n == "up" and l.get("job") == "kubernetes-pods"
            }

        wait_until(lambda: ("shop-1", a.address) in ups(), 20, "the annotated pod scraped")
        labels, value = ups()[("shop-1", a.address)]
        assert value == 1.0
        assert labels["app"] == "shop" and labels["namespace"] == "prod", labels
        assert len(ups()) == 1, "neither the unannotated pod nor the other namespace's"
        assert "/api/v1/namespaces/prod/pods" in api.paths and "/api/v1/pods" not in api.paths
        assert "Bearer k8s-token" in api.authorizations
        assert any(n == "shop_orders_total" and l.get("pod") == "shop-1" for n, l, _ in exposed(gw))

        # A new pod appears: scraped within about a refresh and an interval.
        api.pods.append(k8s_pod("shop-2", "prod", "127.0.0.1", b.port, {"prometheus.io/scrape": "true"}, {"app": "shop"}))
        wait_until(lambda: ("shop-2", b.address) in ups(), 10, "the new pod scraped")
        # The API fails: counted, and the pods stay.
        api.fail = True
        wait_until(
            lambda: self_metric(gw, "sluice_scrape_discovery_failures_total", job="kubernetes-pods", mechanism="kubernetes_sd") >= 1,
            10,
            "the failed list counted",
        )
        assert len([t for t in target_statuses(gw) if t["job"] == "kubernetes-pods"]) == 2
        # It recovers without the first pod: its target goes.
        api.pods = [p for p in api.pods if p["metadata"]["name"] != "shop-1"]
        api.fail = False
        wait_until(
            lambda: [t["labels"].get("pod") for t in target_statuses(gw) if t["job"] == "kubernetes-pods"] == ["shop-2"],
            10,
            "the deleted pod's target removed",
        )
    finally:
        api.stop()
