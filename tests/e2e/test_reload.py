"""Config reload without a restart: `POST /api/v1/config/reload`, SIGHUP and `--watch-config`.

Real clients keep sending (OTLP/HTTP requests, and one long-lived OTLP/gRPC connection) while
the config changes under them: every record the gateway acknowledged arrives, and what is sent
after the reload goes where the new config says, also over the connection opened before it.
A config that fails (syntax, an unknown plugin, an address in use) is refused with the reason,
the running one goes on, and `/health/detailed`, `/api/v1/status` and
`sluice_config_reloads_total{result}` say so. A listener whose address changed moves; an
exporter whose settings did not change keeps its state.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import grpc
import requests

from support.config import gateway_config, otlp_receiver, pipeline, write_config
from support.exposition import parse_prometheus
from support.otlp import GRPC_METHODS, kv, new_ids, span, trace_request
from support.gateway import Gateway
from support.polling import wait_until
from support.ports import free_port

RELOAD_HEADERS = {"X-Sluice-Request": "1"}


def reload(gw, **kw) -> requests.Response:
    return requests.post(gw.admin_url + "/api/v1/config/reload", headers=RELOAD_HEADERS, timeout=120, **kw)


def last_reload(gw) -> dict:
    return requests.get(gw.admin_url + "/health/detailed", timeout=10).json()["config"]["last_reload"]


def reloads_total(gw, result: str) -> float:
    for n, l, v in parse_prometheus(requests.get(gw.admin_url + "/metrics", timeout=10).text):
        if n == "sluice_config_reloads_total" and l.get("result") == result:
            return v
    return 0.0


def one_span(name: str) -> bytes:
    t, s = new_ids()
    return trace_request(span(t, s, name, attributes=[kv("n", 1)]), service="reload").SerializeToString()


def names(ds) -> set[str]:
    out = set()
    for r in ds.requests("traces"):
        for rs in r.message.resource_spans:
            for ss in rs.scope_spans:
                out.update(s.name for s in ss.spans)
    return out


class Senders:
    """An OTLP/HTTP sender (a request a span) and an OTLP/gRPC sender on one channel opened
    at the start, each remembering the spans the gateway acknowledged and when."""

    def __init__(self, gw):
        self.gw = gw
        self.stop = threading.Event()
        self.acked: list[tuple[str, float]] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.channel = grpc.insecure_channel(gw.grpc_target)
        self.threads = [threading.Thread(target=self.http), threading.Thread(target=self.grpc)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        self.channel.close()

    def ack(self, name: str) -> None:
        with self.lock:
            self.acked.append((name, time.monotonic()))

    def http(self) -> None:
        i = 0
        while not self.stop.is_set():
            name = f"http-{i}"
            try:
                r = self.gw.post("traces", one_span(name))
                if r.status_code == 200:
                    self.ack(name)
                else:
                    self.failures.append(f"{name}: {r.status_code} {r.text[:200]}")
            except requests.RequestException as e:
                self.failures.append(f"{name}: {e}")
            i += 1
            time.sleep(0.02)

    def grpc(self) -> None:
        call = self.channel.unary_unary(GRPC_METHODS["traces"], request_serializer=None, response_deserializer=None)
        i = 0
        while not self.stop.is_set():
            name = f"grpc-{i}"
            try:
                call(one_span(name), timeout=10)
                self.ack(name)
            except grpc.RpcError as e:
                self.failures.append(f"{name}: {e.code()} {e.details()}")
            i += 1
            time.sleep(0.02)


def traces_to(ds, ports, **kw) -> dict:
    return gateway_config(
        ports,
        {"otlp/down": {"endpoint": ds.endpoint, "protocol": "grpc"}},
        pipelines={"traces": pipeline(["otlp/down"])},
        shutdown_timeout="10s",
        **kw,
    )


def test_reload_moves_traffic_to_the_new_exporter_and_loses_nothing_acknowledged(gateway, downstream):
    first, second = downstream(), downstream()
    gw = gateway(config=lambda ports: traces_to(first, ports))
    with Senders(gw) as senders:
        wait_until(lambda: len(senders.acked) >= 40, 20, "traffic before the reload")
        write_config(gw.config_path, traces_to(second, gw.ports))
        r = reload(gw)
        reloaded_at = time.monotonic()
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["reloaded"] is True and body["reload"]["source"] == "api"
        assert "1 pipelines" in body["reload"]["message"]
        time.sleep(2)
    assert not senders.failures, senders.failures[:5]
    acked = {n for n, _ in senders.acked}
    wait_until(lambda: acked <= names(first) | names(second), 20, "every acknowledged span downstream")
    # Both old and new exporters delivered; nothing was delivered twice.
    assert names(first) and names(second)
    assert not names(first) & names(second)
    # What was acknowledged after the reload answered went to the new exporter, also over the
    # gRPC connection opened before the reload.
    after = {n for n, t in senders.acked if t > reloaded_at + 0.5}
    assert any(n.startswith("grpc-") for n in after) and any(n.startswith("http-") for n in after)
    assert after <= names(second), sorted(after - names(second))[:5]
    assert last_reload(gw)["ok"] is True
    assert reloads_total(gw, "success") == 1


def test_a_config_that_fails_is_refused_and_the_running_one_goes_on(gateway, downstream):
    ds = downstream()
    gw = gateway(config=lambda ports: traces_to(ds, ports))
    good = gw.config_path.read_text()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy_port = taken.getsockname()[1]
    try:
        broken = {
            "invalid YAML": ("receivers: [oops\n", "config"),
            "an unknown plugin": (
                None,
                "unknown built-in plugin",
            ),
            "an address in use": (None, "cannot listen"),
        }
        unknown_plugin = traces_to(ds, gw.ports)
        unknown_plugin["processors"] = {"p": {"plugin": "builtin/nope"}}
        unknown_plugin["service"]["pipelines"]["traces"]["processors"] = ["p"]
        busy = traces_to(ds, gw.ports, receivers={"otlp": otlp_receiver({**gw.ports, "http": busy_port})})
        configs = {"invalid YAML": broken["invalid YAML"][0], "an unknown plugin": unknown_plugin, "an address in use": busy}
        for i, (what, cfg) in enumerate(configs.items(), start=1):
            write_config(gw.config_path, cfg)
            r = reload(gw)
            assert r.status_code == 422, (what, r.text)
            assert broken[what][1] in r.json()["error"], (what, r.text)
            record = last_reload(gw)
            assert record["ok"] is False and broken[what][1] in record["message"]
            assert reloads_total(gw, "failure") == i
            # The running config still takes data and delivers it, on the same addresses.
            name = f"after-{i}"
            assert gw.post("traces", one_span(name)).status_code == 200
            wait_until(lambda: name in names(ds), 10, f"a span after the refused reload ({what})")
        status = requests.get(gw.admin_url + "/api/v1/status", timeout=10).json()
        assert status["config"]["reloads"] == 3 and status["config"]["last_reload"]["ok"] is False
        # A reload needs the admin API's request header, like every change through it.
        r = requests.post(gw.admin_url + "/api/v1/config/reload", timeout=10)
        assert r.status_code == 403
        # The good config again: accepted.
        gw.config_path.write_text(good)
        assert reload(gw).status_code == 200
        assert last_reload(gw)["ok"] is True
    finally:
        taken.close()
    assert gw.alive()


def test_watch_and_sighup_reload_a_moved_listener_and_keep_unchanged_exporters(gateway, downstream):
    ds = downstream()

    def config(ports, http_port=None):
        ports.setdefault("scrape", free_port())
        receivers = {"otlp": otlp_receiver({**ports, "http": http_port or ports["http"]})}
        return gateway_config(
            ports,
            {
                "otlp/down": {"endpoint": ds.endpoint, "protocol": "grpc"},
                "prometheus": {"endpoint": f"127.0.0.1:{ports['scrape']}", "target_info": False},
            },
            receivers=receivers,
            pipelines={"traces": pipeline(["otlp/down"]), "metrics": pipeline(["prometheus"])},
            shutdown_timeout="10s",
        )

    gw = gateway(config=config, args=["--watch-config"])
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("e2e").create_counter("kept.total").add(5)
    data = reader.get_metrics_data()
    provider.shutdown()
    OTLPMetricExporter(endpoint=f"{gw.http_url}/v1/metrics", timeout=10).export(data)

    def kept_value():
        text = requests.get(f"http://127.0.0.1:{gw.ports['scrape']}/metrics", timeout=5).text
        return next((v for n, _, v in parse_prometheus(text) if n == "kept_total"), None)

    wait_until(lambda: kept_value() == 5, 10, "the counter on the scrape endpoint")
    old_http = gw.ports["http"]
    new_http = free_port()
    write_config(gw.config_path, config(gw.ports, http_port=new_http))

    def moved():
        try:
            return requests.post(
                f"http://127.0.0.1:{new_http}/v1/traces",
                data=one_span("moved"),
                headers={"Content-Type": "application/x-protobuf"},
                timeout=2,
            ).status_code == 200
        except requests.RequestException:
            return False

    wait_until(moved, 15, "the OTLP/HTTP listener on its new port")
    assert last_reload(gw)["source"] == "watch"
    wait_until(lambda: "moved" in names(ds), 10, "the span sent to the new port")

    def refused_at_old_port():
        try:
            requests.post(f"http://127.0.0.1:{old_http}/v1/traces", data=b"", timeout=2)
            return False
        except requests.ConnectionError:
            return True

    wait_until(refused_at_old_port, 10, "the old port closed")
    # The prometheus exporter did not change: its series are still there.
    assert kept_value() == 5
    # SIGHUP reloads too (the same config: everything kept).
    gw.signal(signal.SIGHUP)
    wait_until(lambda: last_reload(gw)["source"] == "sighup", 15, "a reload by SIGHUP")
    record = last_reload(gw)
    assert record["ok"] is True and "(2 kept running)" in record["message"], record
    assert kept_value() == 5
    assert gw.alive()


def test_concurrent_reloads_each_get_an_answer_while_data_flows(gateway, downstream):
    ds = downstream()
    gw = gateway(config=lambda ports: traces_to(ds, ports))
    answers: list[int] = []

    def ask():
        answers.append(reload(gw).status_code)

    with Senders(gw) as senders:
        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        time.sleep(0.5)
    assert answers == [200] * 8, answers
    assert reloads_total(gw, "success") == 8
    assert not senders.failures, senders.failures[:5]
    acked = {n for n, _ in senders.acked}
    wait_until(lambda: acked <= names(ds), 20, "every acknowledged span downstream")
    assert gw.alive()


def test_watch_follows_a_configmap_style_update(downstream, tmp_path):
    """The kubelet updates a mounted ConfigMap by pointing the `..data` symlink at a new
    directory (the file the gateway reads is a symlink through it); no cluster runs here, so
    the update is made the same way by hand."""
    first, second = downstream(), downstream()
    mount = tmp_path / "configmap"
    mount.mkdir()

    def publish(version: str, cfg: dict) -> None:
        data = mount / f"..{version}"
        data.mkdir()
        write_config(data / "sluice.yaml", cfg)
        link = mount / "..data_tmp"
        link.symlink_to(data.name)
        link.rename(mount / "..data")

    ports = {"grpc": free_port(), "http": free_port(), "admin": free_port()}
    publish("v1", traces_to(first, ports))
    (mount / "sluice.yaml").symlink_to("..data/sluice.yaml")
    workdir = tmp_path / "watched"
    workdir.mkdir()
    watched = Gateway(workdir, {}, ports, args=["--watch-config"])
    watched.config_path = mount / "sluice.yaml"
    watched.start()
    try:
        assert watched.post("traces", one_span("before")).status_code == 200
        wait_until(lambda: "before" in names(first), 10, "a span through the first config")
        publish("v2", traces_to(second, ports))
        wait_until(lambda: (last_reload(watched) or {}).get("source") == "watch", 15, "a reload after the update")
        assert last_reload(watched)["ok"] is True
        assert watched.post("traces", one_span("after")).status_code == 200
        wait_until(lambda: "after" in names(second), 10, "a span through the updated config")
    finally:
        watched.stop()


def test_reload_adds_a_plugin_and_a_broken_plugin_config_is_refused(gateway, downstream, tmp_path):
    """A reload that adds `builtin/redact` to the pipeline: the plugin is instantiated during
    the reload, and the spans after it are masked; a plugin whose `init` refuses its config
    refuses the reload."""
    ds = downstream()
    cache = tmp_path / "plugin-cache"

    def with_redact(ports, config: dict | None = None) -> dict:
        cfg = traces_to(ds, ports, plugins={"cache_dir": str(cache)})
        cfg["processors"] = {"redact": {"plugin": "builtin/redact", "config": config or {}}}
        cfg["service"]["pipelines"]["traces"]["processors"] = ["redact"]
        return cfg

    gw = gateway(config=lambda ports: traces_to(ds, ports, plugins={"cache_dir": str(cache)}))

    def email_span(name: str) -> bytes:
        t, s = new_ids()
        return trace_request(span(t, s, name, attributes=[kv("user.email", "fay@example.com")]), service="reload").SerializeToString()

    def email_of(name: str):
        for r in ds.requests("traces"):
            for rs in r.message.resource_spans:
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        if sp.name == name:
                            return next(a.value.string_value for a in sp.attributes if a.key == "user.email")
        return None

    assert gw.post("traces", email_span("plain")).status_code == 200
    wait_until(lambda: email_of("plain") == "fay@example.com", 10, "the span before the reload")
    write_config(gw.config_path, with_redact(gw.ports, {"no_such_option": True}))
    r = reload(gw)
    assert r.status_code == 422 and "redact" in r.json()["error"], r.text
    write_config(gw.config_path, with_redact(gw.ports))
    r = reload(gw)
    assert r.status_code == 200, r.text
    assert "1 processors (0 kept running)" in r.json()["reload"]["message"]
    assert gw.post("traces", email_span("masked")).status_code == 200
    wait_until(lambda: email_of("masked") == "[REDACTED]", 10, "the span after the reload, masked")
