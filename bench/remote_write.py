"""remote_write send throughput: OTLP metrics in over HTTP, out to a real Prometheus with
`--web.enable-remote-write-receiver`. Prints samples/s the exporter delivered and the samples
Prometheus appended.

    python3 bench/remote_write.py [--series 2000] [--duration 15]

Needs a release build (`cargo build --release -p sluice`) and `prometheus` on PATH.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from harness import free_port, metric_sum, start, stop


def request(series: int, t_ns: int) -> bytes:
    points = [
        metrics_pb2.NumberDataPoint(
            attributes=[common_pb2.KeyValue(key="pod", value=common_pb2.AnyValue(string_value=f"pod-{i}"))],
            time_unix_nano=t_ns,
            as_double=float(i),
        )
        for i in range(series)
    ]
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource_pb2.Resource(
                    attributes=[common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="bench"))]
                ),
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        metrics=[metrics_pb2.Metric(name="bench.value", gauge=metrics_pb2.Gauge(data_points=points))]
                    )
                ],
            )
        ]
    ).SerializeToString()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--series", type=int, default=2000)
    p.add_argument("--duration", type=int, default=15)
    args = p.parse_args()
    prom_bin = shutil.which("prometheus")
    if not prom_bin:
        raise SystemExit("prometheus is not installed")
    with tempfile.TemporaryDirectory(prefix="sluice-rw-") as tmp:
        work = Path(tmp)
        prom_port = free_port()
        (work / "prometheus.yml").write_text("global: { scrape_interval: 1h }\n")
        prom = subprocess.Popen(
            [prom_bin, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--web.enable-remote-write-receiver"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        gw = None
        try:
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    if urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/-/ready", timeout=1).status == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            http, admin = free_port(), free_port()
            gw = start(
                {
                    "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{http}"}}}},
                    "exporters": {
                        "prometheus_remote_write": {
                            "endpoint": f"http://127.0.0.1:{prom_port}/api/v1/write",
                            "max_samples_per_send": 2000,
                            "shards": 4,
                        }
                    },
                    "service": {
                        "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["prometheus_remote_write"]}},
                        "admin": {"endpoint": f"127.0.0.1:{admin}"},
                    },
                },
                work,
                "rw-gateway",
            )
            url = f"http://127.0.0.1:{http}/v1/metrics"
            t0 = time.time()
            sent = 0
            step = 0
            base = time.time_ns()
            while time.time() - t0 < args.duration:
                body = request(args.series, base + step * 1_000_000_000)
                req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
                urllib.request.urlopen(req, timeout=10).read()
                sent += args.series
                step += 1
            deadline = time.time() + 30
            delivered = 0.0
            while time.time() < deadline:
                delivered = metric_sum(f"127.0.0.1:{admin}", "sluice_exporter_sent_records_total")
                if delivered >= sent:
                    break
                time.sleep(0.2)
            elapsed = time.time() - t0
            appended = metric_sum(f"127.0.0.1:{prom_port}", "prometheus_tsdb_head_samples_appended_total")
            result = {
                "series": args.series,
                "samples_sent": sent,
                "samples_delivered": int(delivered),
                "seconds": round(elapsed, 1),
                "delivered_samples_per_s": round(delivered / elapsed),
                "prometheus_samples_appended": appended,
                "dropped": metric_sum(f"127.0.0.1:{admin}", "sluice_dropped_records_total"),
            }
            print(json.dumps(result, indent=2))
        finally:
            if gw:
                stop(gw)
            prom.send_signal(signal.SIGTERM)
            prom.wait(20)


if __name__ == "__main__":
    os.chdir(Path(__file__).parent)
    main()
