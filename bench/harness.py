"""What the benchmark scripts share: where the release binary and the plugins are, free
loopback ports, a gateway process started from a config dict and stopped by PID, and the
gateway's CPU time and peak RSS (from /proc) and counters (from its admin endpoint).

The scripts are run as `python3 bench/<script>.py`, which puts this directory first on
`sys.path`: they import this module as `harness`.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("SLUICE_BENCH_BIN", REPO / "target" / "release" / "sluice"))
PLUGINS = REPO / "target" / "wasm32-wasip2" / "release"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def metric_sum(admin: str, name: str, **labels) -> float:
    text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def start(config: dict, workdir: Path, name: str) -> subprocess.Popen:
    path = workdir / f"{name}.yaml"
    path.write_text(json.dumps(config))
    log = open(workdir / f"{name}.log", "w")
    proc = subprocess.Popen(
        [str(BIN), "run", "--config", str(path), "--log-level", "warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"SLUICE_PLUGIN_DIR": str(PLUGINS), **os.environ},
    )
    admin = config["service"]["admin"]["endpoint"]
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {(workdir / f'{name}.log').read_text()[-2000:]}")
        try:
            if urllib.request.urlopen(f"http://{admin}/health/ready", timeout=1).status == 200:
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{name} did not become ready")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

