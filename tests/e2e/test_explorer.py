"""The metrics explorer's API (`/api/v1/families`, `/api/v1/series`) and the
`sluice_prometheus_series` self-metric, fed by the official OpenTelemetry SDK; and what hostile
queries get: a 400 or 404 with a message, counted, while the gateway keeps answering."""

from __future__ import annotations

import threading

import requests

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource

from support.exposition import parse_prometheus
from support.polling import wait_until
from support.ports import free_port
from support.config import pipeline


def explorer_gateway(gateway, exporters: int = 1):
    def config(ports):
        names = ["prometheus"] + [f"prometheus/{i}" for i in range(1, exporters)]
        out = {}
        for n in names:
            ports[n] = free_port()
            out[n] = {"endpoint": f"127.0.0.1:{ports[n]}", "target_info": False}
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{ports['http']}"}}}},
            "exporters": out,
            "service": {
                "pipelines": {"metrics": pipeline(names)},
                "admin": {"endpoint": f"127.0.0.1:{ports['admin']}"},
            },
        }

    return gateway(config=config)


def send(gw, record) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create({"service.name": "shop"}), metric_readers=[reader])
    record(provider.get_meter("shop"))
    data = reader.get_metrics_data()
    provider.shutdown()
    assert OTLPMetricExporter(endpoint=f"{gw.http_url}/v1/metrics", timeout=10).export(data) == MetricExportResult.SUCCESS


def admin(gw, path, **params):
    return requests.get(gw.admin_url + path, params=params, timeout=10)


def self_metric(gw, name, **labels) -> float | None:
    for n, l, v in parse_prometheus(requests.get(gw.admin_url + "/metrics", timeout=10).text):
        if n == name and all(l.get(k) == want for k, want in labels.items()):
            return v
    return None


def test_families_series_and_the_series_count_self_metric(gateway):
    gw = explorer_gateway(gateway)

    def record(meter):
        latency = meter.create_histogram("http.server.duration", unit="s", description="Request time.")
        for i in range(25):
            latency.record(0.01 * (i + 1), {"user": f"u{i}", "route": f"/r{i % 5}", "method": "GET"})
        meter.create_up_down_counter("queue.depth", description="Waiting jobs.").add(7, {"queue": "mail"})

    send(gw, record)
    wait_until(lambda: len(admin(gw, "/api/v1/families").json()["exporters"][0]["families"]) == 2, 10, "two families")
    (exp,) = admin(gw, "/api/v1/families").json()["exporters"]
    assert exp["exporter"] == "prometheus" and exp["series"] == 26
    by_name = {f["name"]: f for f in exp["families"]}
    hist = by_name["http_server_duration_seconds"]
    assert (hist["type"], hist["unit"], hist["help"], hist["series"]) == ("histogram", "s", "Request time.", 25)
    # The labels with the most distinct values first; ties by name.
    assert [(l["name"], l["distinct"]) for l in hist["labels"][:2]] == [("user", 25), ("route", 5)]
    rest = [(l["name"], l["distinct"]) for l in hist["labels"][2:]]
    assert rest == sorted(rest) and all(d == 1 for _, d in rest) and ("job", 1) in rest
    assert by_name["queue_depth"]["type"] == "gauge"

    page = admin(gw, "/api/v1/series", family="http_server_duration_seconds", **{"label.route": "/r2"}, limit="3").json()
    assert page["matching"] == 5 and len(page["series"]) == 3
    for s in page["series"]:
        labels = dict(s["labels"])
        assert labels["route"] == "/r2"
        # A histogram's value is its count, with its sum beside it.
        assert s["value"] == 1 and s["sum"] > 0
    # What the explorer says is what a scrape of the exporter holds.
    scraped = parse_prometheus(requests.get(f"http://127.0.0.1:{gw.ports['prometheus']}/metrics", timeout=10).text)
    counts = [v for n, l, v in scraped if n == "http_server_duration_seconds_count"]
    assert len(counts) == 25

    assert self_metric(gw, "sluice_prometheus_series", exporter="prometheus", family="http_server_duration_seconds") == 25
    assert self_metric(gw, "sluice_prometheus_series", exporter="prometheus", family="queue_depth") == 1


def test_hostile_explorer_queries_get_clear_answers_and_change_nothing(gateway):
    gw = explorer_gateway(gateway, exporters=2)
    send(gw, lambda m: m.create_counter("jobs.done").add(1, {"kind": "x"}))
    wait_until(lambda: all(e["families"] for e in admin(gw, "/api/v1/families").json()["exporters"]), 10, "families in both exporters")

    def refused():
        return self_metric(gw, "sluice_admin_requests_refused_total", reason="bad_request") or 0

    cases = [
        ({}, 400, "family parameter is required"),
        ({"family": "jobs_done_total"}, 400, "several prometheus exporters"),
        ({"family": "jobs_done_total", "exporter": "prometheus", "limit": "-1"}, 400, "whole number"),
        ({"family": "jobs_done_total", "exporter": "prometheus", "limit": "9" * 40}, 400, "whole number"),
        ({"family": "jobs_done_total", "exporter": "prometheus", "colour": "red"}, 400, "unknown parameter"),
        ({"family": "jobs_done_total", "exporter": "nope"}, 404, "no prometheus exporter"),
        ({"family": "x" * 10_000, "exporter": "prometheus"}, 404, "no metric family"),
    ]
    before = refused()
    for params, status, message in cases:
        r = admin(gw, "/api/v1/series", **params)
        assert r.status_code == status, (params.keys(), r.text[:200])
        assert message in r.json()["error"]
    assert refused() - before == 5
    # A request line longer than the server takes is refused before any handler.
    assert admin(gw, "/api/v1/series", family="x" * 100_000).status_code == 414
    # Bytes that are not UTF-8, and a query string that is not one.
    r = requests.get(gw.admin_url + "/api/v1/series?family=%FF%FE&exporter=prometheus", timeout=10)
    assert r.status_code == 404 and "no metric family" in r.json()["error"]
    r = requests.get(gw.admin_url + "/api/v1/series?family=jobs_done_total&exporter=prometheus&limit=%", timeout=10)
    assert r.status_code == 400
    # A huge limit is capped; the listing is what the family holds.
    page = admin(gw, "/api/v1/series", family="jobs_done_total", exporter="prometheus/1", limit="1000000").json()
    assert page["matching"] == 1 and len(page["series"]) == 1

    # Many explorers at once while data keeps arriving: every answer is whole, nothing stalls.
    errors: list[str] = []

    def explore():
        for _ in range(20):
            r = admin(gw, "/api/v1/families")
            if r.status_code != 200 or len(r.json()["exporters"]) != 2:
                errors.append(r.text[:200])

    threads = [threading.Thread(target=explore) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(10):
        send(gw, lambda m, i=i: m.create_counter("jobs.done").add(1, {"kind": f"k{i}"}))
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert admin(gw, "/health/live").status_code == 200
    assert self_metric(gw, "sluice_prometheus_series", exporter="prometheus/1", family="jobs_done_total") == 11
