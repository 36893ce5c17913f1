"""Scenario benchmark driven by `sluice loadgen`: for each scenario and batch size, a saturation
run (as fast as `--concurrency` senders go) and a fixed offered load at half of that, against a
release `sluice` forwarding to a second `sluice` with a blackhole exporter. Prints a table and
JSON: records/s accepted, gateway CPU seconds per million records (from /proc, the gateway
process only), records per gateway CPU-second, peak RSS, request latency p50/p99 at the fixed
load (client send to gateway acknowledgement, which comes after the plugin chain), export
latency p99 (gateway to downstream, from `sluice_exporter_send_duration_seconds`), refusals.

    python3 bench/loadgen.py [--duration 10] [--batch-sizes 100,1000] [--no-build]
                             [--perf PREFIX] [--scenarios traces_grpc,traces_redact,traces_chain3,logs_http,metrics_prometheus]

Scenarios:
  traces_grpc         traces OTLP/gRPC in, OTLP/gRPC out (passthrough)
  traces_redact       the same with the `redact` plugin (loadgen's spans have nothing to redact)
  traces_chain3       the same with enrich, redact and slo
  logs_http           logs OTLP/HTTP in, OTLP/gRPC out
  metrics_prometheus  metrics OTLP/gRPC in over 100k series, the Prometheus scrape endpoint out,
                      scraped (all 100k series) once a second through both phases, and timed

Every run is bounded (`--duration` seconds per phase) and uses loopback only; every process is
stopped by PID. Without --no-build it runs `cargo build --release -p sluice` and
`scripts/build-plugins.sh` first.
"""

from __future__ import annotations

import argparse
import json
from signal import SIGINT
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from harness import BIN, REPO, cpu_seconds, free_port, metric_sum, peak_rss_mib, start, stop

SERIES = 100_000


def processors(scenario: str) -> dict:
    redact = {"plugin": "builtin/redact", "on_error": "reject"}
    if scenario == "traces_redact":
        return {"redact": redact}
    if scenario == "traces_chain3":
        return {
            "enrich": {"plugin": "builtin/enrich", "config": {"attributes": [
                {"action": "upsert", "target": "resource", "key": "deployment.region", "value": "eu-1"}]}},
            "redact": redact,
            "slo": {"plugin": "builtin/slo", "config": {"slos": [
                {"name": "orders-availability", "service": "loadgen-0", "objective": 99.9,
                 "sli": {"availability": {}}}]}},
        }
    return {}


def signal_of(scenario: str) -> str:
    return scenario.split("_")[0]


def loadgen(endpoint: str, protocol: str, signal: str, rate: float, duration: int, batch: int,
            extra: list[str] | None = None) -> dict:
    cmd = [str(BIN), "loadgen", "--json", "--quiet", "--endpoint", endpoint, "--protocol", protocol,
           "--signal", signal, "--rate", str(rate), "--duration", f"{duration}s",
           "--batch-size", str(batch), "--concurrency", "8", *(extra or [])]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if not r.stdout.strip().startswith("{"):
        raise RuntimeError(f"loadgen failed: {r.stderr}")
    return json.loads(r.stdout)


def histogram_buckets(admin: str, name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts, summed over its series."""
    text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return buckets


def quantile_ms(buckets: dict[float, float], q: float, since: dict[float, float] | None = None) -> float | None:
    """A quantile (upper bucket bound, ms) of the observations counted in `buckets`, less those
    already counted in `since` (an earlier snapshot)."""
    since = since or {}
    counts = {b: c - since.get(b, 0.0) for b, c in buckets.items()}
    if not counts or max(counts.values()) == 0:
        return None
    total = counts[float("inf")]
    for bound in sorted(counts):
        if counts[bound] >= q * total:
            return round(bound * 1000, 2)
    return None


def histogram_quantile(admin: str, name: str, q: float) -> float | None:
    """A quantile (upper bucket bound) of a histogram summed over its series, in ms."""
    return quantile_ms(histogram_buckets(admin, name), q)


def run(scenario: str, batch: int, args, workdir: Path) -> dict:
    signal = signal_of(scenario)
    protocol = "http" if scenario == "logs_http" else "grpc"
    up = {"grpc": free_port(), "http": free_port(), "admin": free_port(), "prom": free_port()}
    down = {"grpc": free_port(), "admin": free_port()}
    downstream = None
    if signal != "metrics":
        downstream = start({
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{down['grpc']}"}}}},
            "exporters": {"blackhole": {}},
            "service": {"pipelines": {signal: {"receivers": ["otlp"], "exporters": ["blackhole"]}},
                        "admin": {"endpoint": f"127.0.0.1:{down['admin']}"}},
        }, workdir, f"{scenario}-{batch}-downstream")
        exporters = {"otlp/down": {"endpoint": f"http://127.0.0.1:{down['grpc']}", "protocol": "grpc"}}
    else:
        exporters = {"prometheus": {"endpoint": f"127.0.0.1:{up['prom']}", "max_series": SERIES * 2}}
    procs = processors(scenario)
    gateway = None
    try:
        gateway = start({
            "receivers": {"otlp": {"protocols": {
                "grpc": {"endpoint": f"127.0.0.1:{up['grpc']}"},
                "http": {"endpoint": f"127.0.0.1:{up['http']}"}}}},
            "processors": procs,
            "exporters": exporters,
            "service": {
                "pipelines": {signal: {"receivers": ["otlp"], "processors": list(procs),
                                       "exporters": list(exporters)}},
                "admin": {"endpoint": f"127.0.0.1:{up['admin']}"},
                "plugins": {"cache_dir": str(workdir / "cache")},
            },
        }, workdir, f"{scenario}-{batch}-gateway")
        admin = f"127.0.0.1:{up['admin']}"
        endpoint = f"http://127.0.0.1:{up['http' if protocol == 'http' else 'grpc']}"
        extra = ["--series", str(SERIES)] if signal == "metrics" else []

        perf = None
        if args.perf:
            perf = subprocess.Popen(
                ["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p", str(gateway.pid),
                 "-o", f"{args.perf}.{scenario}-{batch}.data"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        # Scrapes of the whole store once a second through both phases for metrics: scraping
        # is part of that scenario's work, so its saturation point includes it.
        scrapes: list[tuple[str, float]] = []
        phase = ["saturation"]
        stop_scraping = threading.Event()

        def scrape_loop():
            while not stop_scraping.is_set():
                t = time.perf_counter()
                body = urllib.request.urlopen(f"http://127.0.0.1:{up['prom']}/metrics", timeout=30).read()
                scrapes.append((phase[0], (time.perf_counter() - t) * 1000))
                scrapes_bytes[0] = len(body)
                stop_scraping.wait(1.0)

        scrapes_bytes = [0]
        scraper = None
        if signal == "metrics" and not args.no_scrape:
            scraper = threading.Thread(target=scrape_loop, daemon=True)
            scraper.start()

        # Saturation.
        cpu0 = cpu_seconds(gateway.pid)
        sat = loadgen(endpoint, protocol, signal, 0, args.duration, batch, extra)
        cpu = cpu_seconds(gateway.pid) - cpu0
        accepted = sat["accepted_records"]

        # Fixed offered load at half the saturation rate.
        rate = max(batch, round(sat["records_per_second"] / 2))
        phase[0] = "fixed"
        render = "sluice_exporter_scrape_render_duration_seconds"
        renders_at_switch = histogram_buckets(admin, render) if signal == "metrics" else {}
        fixed = loadgen(endpoint, protocol, signal, rate, args.duration, batch, extra)
        stop_scraping.set()
        if scraper:
            scraper.join(timeout=60)
        if perf:
            perf.send_signal(SIGINT)
            perf.wait(timeout=60)
        result = {
            "scenario": scenario,
            "batch_size": batch,
            "saturation_records_per_s": round(sat["records_per_second"]),
            "gateway_cpu_s": round(cpu, 2),
            "records_per_cpu_s": round(accepted / cpu) if cpu else None,
            "cpu_s_per_million_records": round(cpu / accepted * 1e6, 2) if accepted else None,
            "saturation_refused": sat["refused_records"],
            "saturation_errors": sat["error_records"],
            "fixed_rate": rate,
            "fixed_accepted_per_s": round(fixed["records_per_second"]),
            "fixed_refused": fixed["refused_records"],
            "latency_p50_ms": fixed["latency_ms"]["p50"],
            "latency_p99_ms": fixed["latency_ms"]["p99"],
            "export_p99_ms": histogram_quantile(admin, "sluice_exporter_send_duration_seconds", 0.99),
            "peak_rss_mib": round(peak_rss_mib(gateway.pid), 1),
        }
        if signal == "metrics":
            result["series"] = metric_sum(admin, "sluice_exporter_series")
            for p in ("saturation", "fixed"):
                times = [ms for ph, ms in scrapes if ph == p]
                result[f"scrape_ms_max_{p}"] = round(max(times), 1) if times else None
            result["scrapes"] = len(scrapes)
            # The gateway's own render time (the rest of a scrape is the transfer to Python).
            count = metric_sum(admin, render + "_count")
            result["render_mean_ms"] = round(metric_sum(admin, render + "_sum") / count * 1000, 1) if count else None
            renders = histogram_buckets(admin, render)
            result["render_p99_le_ms"] = quantile_ms(renders, 0.99)
            # The slowest render of each phase, to its bucket's upper bound.
            result["render_max_le_ms_saturation"] = quantile_ms(renders_at_switch, 1.0)
            result["render_max_le_ms_fixed"] = quantile_ms(renders, 1.0, since=renders_at_switch)
            result["scrape_mib"] = round(scrapes_bytes[0] / 2**20, 1)
        return result
    finally:
        if gateway:
            stop(gateway)
        if downstream:
            stop(downstream)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per phase (at most 60)")
    p.add_argument("--batch-sizes", default="100,1000")
    p.add_argument("--scenarios", default="traces_grpc,traces_redact,traces_chain3,logs_http,metrics_prometheus")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--no-scrape", action="store_true",
                   help="metrics: no scrapes during the run (the scraping client shares the cores)")
    p.add_argument("--perf", metavar="PREFIX",
                   help="record a perf profile (cpu-clock) of the gateway to PREFIX.<scenario>-<batch>.data")
    args = p.parse_args()
    args.duration = min(args.duration, 60)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "sluice"], cwd=REPO, check=True)
        subprocess.run([str(REPO / "scripts" / "build-plugins.sh")], cwd=REPO, check=True)
    if not BIN.exists():
        raise SystemExit(f"{BIN} is missing: cargo build --release -p sluice")
    results = []
    with tempfile.TemporaryDirectory(prefix="sluice-loadgen-bench-") as tmp:
        for scenario in args.scenarios.split(","):
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                results.append(run(scenario, batch, args, Path(tmp)))
                print(f"{scenario} x{batch}: done", file=sys.stderr)
    cols = ["scenario", "batch_size", "saturation_records_per_s", "records_per_cpu_s",
            "cpu_s_per_million_records", "peak_rss_mib", "fixed_rate", "latency_p50_ms",
            "latency_p99_ms", "export_p99_ms", "fixed_refused"]
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(r.get(c)) for c in cols)
              + (f" | scrape max {r['scrape_ms_max_saturation']} ms at saturation, "
                 f"{r['scrape_ms_max_fixed']} ms at half, {r['series']:.0f} series; render mean "
                 f"{r['render_mean_ms']} ms, slowest <= {r['render_max_le_ms_saturation']} ms at "
                 f"saturation, <= {r['render_max_le_ms_fixed']} ms at half" if "series" in r else ""))
    print(json.dumps({"duration_per_phase_s": args.duration, "results": results}, indent=2))


if __name__ == "__main__":
    main()
