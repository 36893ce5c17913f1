"""Scrape efficiency: Sluice's `prometheus` receiver against Prometheus itself, on the same
targets. A separate process serves N targets (loopback ports) of S series each, in the text
format a Go or Python client writes (counters with labels and histograms); then, one after the
other, a release `sluice` and a real `prometheus` scrape all of them every INTERVAL for
DURATION seconds. Printed per scraper: samples scraped, CPU seconds of the scraper process
only (from /proc), samples per CPU-second, and peak RSS.

    python3 bench/scrape.py [--targets 100] [--series 10000] [--interval 5] [--duration 60]

Sluice runs twice: into a `blackhole` exporter (the receiver's own cost: fetch, parse, map to
OTLP, pipeline) and into its `prometheus` exporter (also keeping every series for a scrape,
closer to Prometheus, which also appends every sample to its TSDB head). Samples are
Sluice's `sluice_scrape_samples_total{stage="scraped"}` and Prometheus's
`prometheus_tsdb_head_samples_appended_total` (which also counts its 5 synthetic series per
scrape: 0.05 % at 10k series).

Needs a release build (`cargo build --release -p sluice`) and `prometheus` on PATH. Loopback
only; every process is stopped by PID.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from harness import cpu_seconds, free_port, metric_sum, peak_rss_mib, start, stop

TARGETS_SCRIPT = r'''
import asyncio, json, sys
series, count = int(sys.argv[1]), int(sys.argv[2])
lines = ["# HELP http_requests_total Requests.", "# TYPE http_requests_total counter"]
histograms = series // 24
counters = series - histograms * 12
for i in range(counters):
    lines.append(f'http_requests_total{{method="GET",route="/api/v1/items/{i % 400}",code="{200 + i // 400}",pod="pod-{i % 7}"}} {i * 13 + 1000}')
lines += ["# HELP rpc_duration_seconds RPC latency.", "# TYPE rpc_duration_seconds histogram"]
bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
for i in range(histograms):
    labels = f'service="svc-{i % 50}",method="Call{i}"'
    for k, le in enumerate(bounds):
        lines.append(f'rpc_duration_seconds_bucket{{{labels},le="{le}"}} {k * 10 + i}')
    lines.append(f'rpc_duration_seconds_sum{{{labels}}} {i * 0.5}')
    lines.append(f'rpc_duration_seconds_count{{{labels}}} {90 + i}')
body = ("\n".join(lines) + "\n").encode()
head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")

async def serve(reader, writer):
    try:
        while True:
            request = await reader.readuntil(b"\r\n\r\n")
            if not request:
                break
            writer.write(head + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()

async def main():
    servers = [await asyncio.start_server(serve, "127.0.0.1", 0) for _ in range(count)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(json.dumps({"bytes": len(body), "ports": ports}), flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))

asyncio.run(main())
'''


def job(addresses: list[str], interval: int) -> dict:
    return {
        "job_name": "bench",
        "scrape_interval": f"{interval}s",
        "scrape_timeout": f"{interval}s",
        "static_configs": [{"targets": addresses}],
    }


def measure(pid: int, samples, warmup: float, duration: float) -> dict:
    time.sleep(warmup)
    s0, c0 = samples(), cpu_seconds(pid)
    time.sleep(duration)
    s1, c1 = samples(), cpu_seconds(pid)
    n, cpu = s1 - s0, c1 - c0
    return {
        "samples": int(n),
        "cpu_s": round(cpu, 2),
        "samples_per_cpu_s": int(n / cpu) if cpu > 0 else 0,
        "peak_rss_mib": round(peak_rss_mib(pid), 1),
    }


def run_sluice(exporter: str, addresses: list[str], args, workdir: Path) -> dict:
    admin = f"127.0.0.1:{free_port()}"
    exporters = {"blackhole": {}} if exporter == "blackhole" else {
        "prometheus": {"endpoint": f"127.0.0.1:{free_port()}", "max_series": 2_000_000}
    }
    config = {
        "receivers": {"prometheus": {"config": {"scrape_configs": [job(addresses, args.interval)]}}},
        "exporters": exporters,
        "service": {
            "pipelines": {"metrics": {"receivers": ["prometheus"], "exporters": list(exporters)}},
            "admin": {"endpoint": admin},
        },
    }
    proc = start(config, workdir, f"sluice-{exporter}")
    try:
        result = measure(
            proc.pid,
            lambda: metric_sum(admin, "sluice_scrape_samples_total", stage="scraped"),
            args.interval * 2,
            args.duration,
        )
        failed = metric_sum(admin, "sluice_scrape_requests_total") - metric_sum(
            admin, "sluice_scrape_requests_total", result="success"
        )
        result["failed_scrapes"] = int(failed)
        return result
    finally:
        stop(proc)


def run_prometheus(addresses: list[str], args, workdir: Path) -> dict:
    binary = shutil.which("prometheus")
    if not binary:
        sys.exit("prometheus is not on PATH (apt-get install prometheus)")
    port = free_port()
    data = workdir / "prometheus-data"
    cfg = workdir / "prometheus.yml"
    cfg.write_text(json.dumps({"global": {"scrape_interval": f"{args.interval}s"}, "scrape_configs": [job(addresses, args.interval)]}))
    log = open(workdir / "prometheus.log", "w")
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("prometheus did not become ready")
            time.sleep(0.1)
        # Prometheus applies its targets about five seconds after it starts.
        result = measure(
            proc.pid,
            lambda: metric_sum(f"127.0.0.1:{port}", "prometheus_tsdb_head_samples_appended_total"),
            args.interval * 2 + 5,
            args.duration,
        )
        down = urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/query?query=count(up%3D%3D0)", timeout=5
        ).read()
        result["failed_scrapes"] = len(json.loads(down)["data"]["result"])
        return result
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=100)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--scrapers", default="sluice_blackhole,sluice_prometheus,prometheus")
    args = ap.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", TARGETS_SCRIPT, str(args.series), str(args.targets)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        served = json.loads(server.stdout.readline())
        body_bytes = served["bytes"]
        addresses = [f"127.0.0.1:{p}" for p in served["ports"]]
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for scraper in args.scrapers.split(","):
                workdir = Path(tmp) / scraper
                workdir.mkdir()
                if scraper == "prometheus":
                    results[scraper] = run_prometheus(addresses, args, workdir)
                else:
                    results[scraper] = run_sluice(scraper.removeprefix("sluice_"), addresses, args, workdir)
                print(scraper, results[scraper], flush=True)
        print()
        print(f"{args.targets} targets x {args.series} series ({body_bytes} bytes each), every {args.interval}s, {args.duration}s measured")
        print(f"{'scraper':<20}{'samples':>12}{'CPU s':>9}{'samples/CPU-s':>16}{'peak RSS MiB':>14}{'failed':>8}")
        for name, r in results.items():
            print(f"{name:<20}{r['samples']:>12}{r['cpu_s']:>9}{r['samples_per_cpu_s']:>16}{r['peak_rss_mib']:>14}{r['failed_scrapes']:>8}")
        print(json.dumps(results))
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(10)


if __name__ == "__main__":
    main()
