"""Gateway benchmark: a fixed OTLP/HTTP load from wrk into a release `sluice`, which forwards
over OTLP/gRPC to a second `sluice` with a blackhole exporter. Prints a table and JSON:
spans/s accepted, gateway CPU seconds per million spans (from /proc, the gateway process
only), spans per gateway CPU-second, peak RSS, wrk latency percentiles, refusals.

    python3 bench/run.py [--duration 15] [--connections 4] [--spans 100]
                         [--scenarios passthrough,redact_mask1,redact_mask3,chain3_mask]
    python3 bench/run.py [--distinct 64] ...   # N different batches in turn
    python3 bench/run.py --startup
    python3 bench/run.py --scenarios passthrough,rotel,rotel_blackhole   # side by side

Needs: a release build (`cargo build --release -p sluice`), the plugins
(`scripts/build-plugins.sh`) for the plugin scenarios, `wrk`, and the Python packages in
tests/requirements.txt. Loopback only; every process is stopped by PID. The plugins come from
target/wasm32-wasip2/release, or from SLUICE_PLUGIN_DIR when it is set (another revision's
build, for a before/after in one session: a built-in missing there is the binary's own).

The `rotel` scenarios run the same load through Rotel, a Rust OTLP collector, in place of
the gateway (its own defaults, which batch up to 8192 spans or 200 ms): `rotel` forwards over
OTLP/gRPC to the same downstream uncompressed, as the gateway does by default; `rotel_gzip`
with its default gzip (compare `passthrough_gzip`); `rotel_blackhole` discards with Rotel's
blackhole exporter.
Its binary comes from the `rotel` Python package (`pip install rotel`), or ROTEL_BIN. Spans
accepted are then wrk's 2xx responses times the batch's spans, since Rotel exports no counters.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from harness import BIN, PLUGINS, REPO, cpu_seconds, free_port, metric_sum, peak_rss_mib, start, stop


# Spans per batch of the `big_batches` scenario: what peak memory is at saturation with batches
# ten times the usual size.
BIG_BATCH = 1000


def processors_for(scenario: str) -> dict:
    if scenario in ("passthrough", "passthrough_gzip", "big_batches"):
        return {}
    if scenario in ("redact", "redact_clean", "redact_mask1", "redact_mask3"):
        return {"redact": {"plugin": "builtin/redact", "on_error": "reject"}}
    if scenario == "sample":
        return {"sample": {"plugin": "builtin/sample", "config": {
            "drop": [{"name": {"prefix": "GET /health"}}], "probabilistic": {"percent": 100}}}}
    if scenario == "enrich":
        return {"enrich": {"plugin": "builtin/enrich", "config": {
            "attributes": [{"action": "upsert", "target": "resource", "key": "deployment.region", "value": "eu-1"}],
            "derive": {"from": "url.path", "to": "http.target_route", "templates": ["/api/v1/orders/{id}/items"]}}}}
    if scenario == "slo":
        return {"slo": {"plugin": "builtin/slo", "config": {"slos": [
            {"name": "orders-availability", "service": "orders", "objective": 99.9, "sli": {"availability": {}}}]}}}
    if scenario in ("spanmetrics", "spanmetrics_dedupe"):
        # wrk sends the same batch over and over: with the default dedupe window every span after
        # the first request is a duplicate (spanmetrics_dedupe measures that path); with it off
        # (spanmetrics) every span is counted into its series, the aggregation's full cost.
        config = {"dimensions": [{"name": "http.request.method"}]}
        if scenario == "spanmetrics":
            config["dedupe_window"] = 0
        return {"spanmetrics": {"plugin": "builtin/spanmetrics", "on_error": "pass", "config": config}}
    if scenario == "red_graph":
        # spanmetrics and servicegraph, every span counted by both (dedupe off, as above).
        return {
            **processors_for("spanmetrics"),
            "servicegraph": {"plugin": "builtin/servicegraph", "on_error": "pass", "config": {"dedupe_window": 0}},
        }
    if scenario in ("plugin1", "plugin1_reject"):
        # The plugin hop alone: one plugin that answers `unchanged` without reading the batch.
        # With `on_error: reject` the client waits for the plugin's outcome.
        return {"a": {"plugin": str(PLUGINS / "sluice_plugin_chaos.wasm"), "config": {"mode": "noop"},
                      **({"on_error": "reject"} if scenario == "plugin1_reject" else {})}}
    if scenario == "readers3":
        chaos = str(PLUGINS / "sluice_plugin_chaos.wasm")
        return {name: {"plugin": chaos, "config": {"mode": "pass"}} for name in ("a", "b", "c")}
    if scenario in ("chain3", "chain3_dirty", "chain3_mask"):
        # The chain: enrich (a resource attribute), redact (defaults), slo.
        return {
            "enrich": {"plugin": "builtin/enrich", "config": {"attributes": [
                {"action": "upsert", "target": "resource", "key": "deployment.region", "value": "eu-1"}]}},
            "redact": {"plugin": "builtin/redact", "on_error": "reject"},
            "slo": processors_for("slo")["slo"],
        }
    if scenario in ("lang_rust", "lang_python", "lang_js"):
        # The two example plugins (examples/plugins/LANG), written alike in each language:
        # drop_health reads every span's name, tenant_counter every span's attributes (the
        # bench batches carry no tenant header) and emits a metric per batch.
        lang = scenario.removeprefix("lang_")
        found = {}
        for name in ("drop_health", "tenant_counter"):
            path = (PLUGINS / f"example_{name}.wasm" if lang == "rust"
                    else REPO / "examples" / "plugins" / lang / name / "dist" / f"{name}.wasm")
            if not path.is_file():
                raise SystemExit(f"{path} is missing: build it with `sluice plugin build` in its directory"
                                 " (scripts/build-plugins.sh for the Rust ones)")
            found[name] = {"plugin": str(path), "limits": {"timeout_ms": 2000}}
        return found
    raise SystemExit(f"unknown scenario {scenario}")


def rotel_bin() -> Path:
    if os.environ.get("ROTEL_BIN"):
        return Path(os.environ["ROTEL_BIN"])
    try:
        import rotel  # the Python package that ships the collector's binary
    except ImportError:
        raise SystemExit("the rotel scenarios need Rotel: pip install rotel (or set ROTEL_BIN)")
    return Path(rotel.__file__).parent / "rotel-agent"


def start_rotel(scenario: str, http: int, down_grpc: int, workdir: Path) -> subprocess.Popen:
    exporter = (["--exporter", "blackhole"] if scenario == "rotel_blackhole" else
                ["--exporter", "otlp", "--otlp-exporter-protocol", "grpc",
                 "--otlp-exporter-endpoint", f"http://127.0.0.1:{down_grpc}",
                 "--otlp-exporter-compression", "gzip" if scenario == "rotel_gzip" else "none"])
    log = open(workdir / f"{scenario}-gateway.log", "w")
    proc = subprocess.Popen(
        [str(rotel_bin()), "start", "--otlp-http-endpoint", f"127.0.0.1:{http}",
         "--otlp-grpc-endpoint", f"127.0.0.1:{free_port()}",
         "--pid-file", str(workdir / "rotel.pid"), "--log-file", str(workdir / "rotel.log"),
         *exporter],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rotel exited: {(workdir / f'{scenario}-gateway.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", http), timeout=1):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("rotel did not start listening")


def run_scenario(scenario: str, args, workdir: Path, batches: dict) -> dict:
    reference = scenario.startswith("rotel")
    kind = {"redact_clean": "clean", "chain3": "clean", "redact_mask3": "mask3",
            "big_batches": "big"}.get(scenario, "mask1")
    batch = batches[kind]
    spans = BIG_BATCH if kind == "big" else args.spans
    down = {"grpc": free_port(), "admin": free_port()}
    up = {"http": free_port(), "admin": free_port()}
    downstream = start(
        {
            # Rotel sends batches of up to 8192 spans, beyond gRPC's usual 4 MiB.
            "receivers": {"otlp": {"protocols": {"grpc": {
                "endpoint": f"127.0.0.1:{down['grpc']}", "max_recv_msg_size_mib": 64}}}},
            "exporters": {"blackhole": {}},
            "service": {
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["blackhole"]}},
                "admin": {"endpoint": f"127.0.0.1:{down['admin']}"},
            },
        },
        workdir,
        f"{scenario}-downstream",
    )
    procs = {} if reference else processors_for(scenario)
    gateway = None
    try:
        gateway = start_rotel(scenario, up["http"], down["grpc"], workdir) if reference else start(
            {
                "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{up['http']}"}}}},
                "processors": procs,
                "exporters": {
                    "otlp/down": {"endpoint": f"http://127.0.0.1:{down['grpc']}", "protocol": "grpc",
                                  "compression": "gzip" if scenario == "passthrough_gzip" else "none",
                                  **({"sending_queue": {"max_size_mib": args.queue_mib}} if args.queue_mib else {})}
                },
                "service": {
                    "pipelines": {
                        "traces": {
                            "receivers": ["otlp"],
                            "processors": list(procs),
                            "exporters": ["otlp/down"],
                            **({"queue_max_size_mib": args.queue_mib} if args.queue_mib else {}),
                        }
                    },
                    "admin": {"endpoint": f"127.0.0.1:{up['admin']}"},
                    "plugins": {"cache_dir": str(workdir / "cache")},
                },
            },
            workdir,
            f"{scenario}-gateway",
        )
        admin = f"127.0.0.1:{up['admin']}"
        perf = None
        if args.perf:
            perf = subprocess.Popen(
                ["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p", str(gateway.pid),
                 "-o", str(Path(args.perf).with_suffix(f".{scenario}.data"))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        cpu0 = cpu_seconds(gateway.pid)
        t0 = time.time()
        wrk = subprocess.run(
            [
                "wrk", "-t", "2", "-c", str(args.connections), "-d", f"{args.duration}s",
                "--latency", "-s", str(REPO / "bench" / "post.lua"),
                f"http://127.0.0.1:{up['http']}/v1/traces",
            ],
            capture_output=True, text=True,
            env={**os.environ, "BATCH": str(batch), **({"BATCHES": str(args.distinct)} if args.distinct > 1 else {})},
            timeout=args.duration + 30,
        )
        elapsed = time.time() - t0
        cpu = cpu_seconds(gateway.pid) - cpu0
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
        requests = re.search(r"(\d+) requests in", wrk.stdout)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk.stdout)
        non2xx = int(non2xx.group(1)) if non2xx else 0
        if reference:
            accepted = (int(requests.group(1)) - non2xx) * spans if requests else 0
            refused = non2xx * spans
        else:
            accepted = metric_sum(admin, "sluice_receiver_accepted_records_total")
            refused = metric_sum(admin, "sluice_receiver_refused_records_total")
        # Spans the first plugin ran over: more than were accepted when batches were refused
        # after the plugins (every exporter queue full by then), wasted work.
        processed = (
            metric_sum(admin, "sluice_plugin_records_in_total", processor=next(iter(procs)))
            if procs else accepted
        )
        # Time inside the plugins per batch (all processors of the chain), from the gateway's
        # own histogram: what the chain costs in the running gateway, next to the criterion
        # figure for the same plugins.
        calls = metric_sum(admin, "sluice_plugin_call_duration_seconds_count") if procs else 0
        plugin_us = (
            round(metric_sum(admin, "sluice_plugin_call_duration_seconds_sum") / calls * len(procs) * 1e6)
            if procs and calls else None
        )
        deadline = time.time() + 15
        delivered = 0.0
        while time.time() < deadline and scenario != "rotel_blackhole":
            delivered = metric_sum(f"127.0.0.1:{down['admin']}", "sluice_exporter_sent_records_total")
            if delivered >= accepted:
                break
            time.sleep(0.2)
        lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", wrk.stdout, re.M))
        return {
            "scenario": scenario,
            "seconds": round(elapsed, 1),
            "spans_accepted": int(accepted),
            "spans_delivered": int(delivered),
            "spans_refused": int(refused),
            "spans_processed": int(processed),
            "plugin_us_per_batch": plugin_us,
            "non_2xx_responses": non2xx,
            "spans_per_s": round(accepted / elapsed),
            "gateway_cpu_s": round(cpu, 2),
            "spans_per_cpu_s": round(accepted / cpu) if cpu else None,
            "cpu_s_per_million_spans": round(cpu / accepted * 1e6, 2) if accepted else None,
            "peak_rss_mib": round(peak_rss_mib(gateway.pid), 1),
            "latency_p50": lat.get("50"),
            "latency_p99": lat.get("99"),
        }
    finally:
        if gateway:
            stop(gateway)
        stop(downstream)


def startup_ms(workdir: Path, cache: Path, name: str) -> float:
    """Milliseconds from spawning a gateway with the chain3 plugins (enrich, redact, slo) to
    its first `200` from /health/ready, polled every 2 ms."""
    procs = processors_for("chain3")
    ports = {"http": free_port(), "admin": free_port()}
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{ports['http']}"}}}},
        "processors": procs,
        "exporters": {"blackhole": {}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": list(procs), "exporters": ["blackhole"]}},
            "admin": {"endpoint": f"127.0.0.1:{ports['admin']}"},
            "plugins": {"cache_dir": str(cache)},
        },
    }
    path = workdir / f"{name}.yaml"
    path.write_text(json.dumps(config))
    ready = f"http://127.0.0.1:{ports['admin']}/health/ready"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN), "run", "--config", str(path), "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={"SLUICE_PLUGIN_DIR": str(PLUGINS), **os.environ},
    )
    try:
        while time.perf_counter() - t0 < 30:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}")
            try:
                if urllib.request.urlopen(ready, timeout=1).status == 200:
                    return round((time.perf_counter() - t0) * 1000, 1)
            except OSError:
                time.sleep(0.002)
        raise RuntimeError(f"{name} did not become ready in 30 s")
    finally:
        stop(proc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=15)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--spans", type=int, default=100)
    p.add_argument("--perf", help="record a perf profile (cpu-clock) of the gateway to PREFIX.<scenario>.data")
    p.add_argument(
        "--scenarios",
        default="passthrough,redact,redact_clean,chain3",
        help="passthrough; redact or redact_mask1 (one client IP per span to mask); redact_mask3 "
        "(three values per span to mask: two IPs and an e-mail); redact_clean (nothing to "
        "redact); big_batches (passthrough of 1000-span batches: the peak RSS at saturation); sample; enrich; slo; chain3 (enrich a resource attribute, redact, slo; nothing "
        "to redact); chain3_dirty or chain3_mask (the same, one client IP per span to mask); spanmetrics (every "
        "span counted); spanmetrics_dedupe (repeats skipped as already counted); red_graph "
        "(spanmetrics and servicegraph); plugin1 (one plugin that answers unchanged: the cost of the "
        "plugin hop); plugin1_reject (the same with on_error: reject, so clients wait for it); readers3 (three "
        "plugins that only read: the test plugin in pass mode); lang_rust, lang_python, lang_js (the "
        "example plugins drop_health and tenant_counter in each language); passthrough_gzip (exports "
        "gzip-compressed); rotel, rotel_gzip, rotel_blackhole (the Rotel collector in the "
        "gateway's place: forwarding to the same downstream uncompressed or gzip-compressed, "
        "or discarding)",
    )
    p.add_argument("--queue-mib", type=int, default=0,
                   help="the gateway's pipeline and exporter queue size limits in MiB "
                   "(queue_max_size_mib, sending_queue.max_size_mib; default: the gateway's defaults)")
    p.add_argument("--distinct", type=int, default=1,
                   help="post N different batches in turn (values that repeat less; default 1, "
                   "one batch posted again and again)")
    p.add_argument("--startup", action="store_true",
                   help="only time startup to ready with the chain3 plugins: first start (plugins "
                   "compiled) and five starts from the plugin cache")
    args = p.parse_args()
    if not BIN.exists():
        raise SystemExit(f"{BIN} is missing: cargo build --release -p sluice")
    if args.startup:
        with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
            workdir, cache = Path(tmp), Path(tmp) / "cache"
            cold = startup_ms(workdir, cache, "cold")
            cached = sorted(startup_ms(workdir, cache, f"cached-{i}") for i in range(5))
        print(f"startup to ready, 3 plugins: compiled {cold} ms; cached {cached[0]}-{cached[-1]} ms "
              f"(median {cached[2]} ms of 5)")
        print(json.dumps({"startup_compiled_ms": cold, "startup_cached_ms": cached}))
        return
    # Imported here: --startup runs without the OpenTelemetry packages make_batch needs.
    from make_batch import batch as make

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        workdir = Path(tmp)
        kinds = {
            "mask1": lambda seed: make(args.spans, seed=seed),
            "mask3": lambda seed: make(args.spans, seed=seed, sensitive=3),
            "clean": lambda seed: make(args.spans, seed=seed, clean=True),
            "big": lambda seed: make(BIG_BATCH, seed=seed),
        }
        batches = {}
        for kind, build in kinds.items():
            batches[kind] = workdir / f"{kind}.pb"
            batches[kind].write_bytes(build(7))
            # Batches whose ids, paths, tenants and addresses differ (seeded, so runs compare).
            for i in range(args.distinct if args.distinct > 1 else 0):
                Path(f"{batches[kind]}.{i}").write_bytes(build(1000 + i))
        results = []
        for scenario in args.scenarios.split(","):
            r = run_scenario(scenario, args, workdir, batches)
            results.append(r)
            print(f"{scenario}: done", file=sys.stderr)
    base = next((r for r in results if r["scenario"] == "passthrough"), None)
    cols = ["scenario", "spans_per_s", "spans_per_cpu_s", "cpu_s_per_million_spans", "peak_rss_mib",
            "latency_p50", "latency_p99", "spans_refused", "spans_processed", "spans_delivered", "plugin_us_per_batch"]
    print(" | ".join(cols) + (" | vs_passthrough_per_cpu" if base else ""))
    for r in results:
        row = " | ".join(str(r[c]) for c in cols)
        if base and base["spans_per_cpu_s"] and r["spans_per_cpu_s"]:
            row += f" | {r['spans_per_cpu_s'] / base['spans_per_cpu_s']:.0%}"
        print(row)
    print(json.dumps({"spans_per_batch": args.spans,
                      "connections": args.connections, "results": results}, indent=2))


if __name__ == "__main__":
    main()
