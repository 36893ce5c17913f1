"""A real Prometheus for the tests: where `prometheus` and `promtool` are, and `Prometheus`, one
server on a free loopback port with its own TSDB directory, started and stopped by PID and
queried over its HTTP API."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from .config import write_config
from .polling import wait_until
from .ports import free_port
from .process import READY_TIMEOUT, track, untrack

PROMETHEUS_STOP_TIMEOUT = 10.0


def prometheus_tool(name: str) -> str:
    """The path of `prometheus` or `promtool`: `$PROMETHEUS_BIN` / `$PROMTOOL_BIN`, else the one
    on PATH. Fails (does not skip) the test when it is missing: CI installs both."""
    variable = {"prometheus": "PROMETHEUS_BIN", "promtool": "PROMTOOL_BIN"}[name]
    configured = os.environ.get(variable)
    path = configured or shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        where = f"${variable}={configured} is not an executable" if configured else "it is not on PATH"
        pytest.fail(
            f"`{name}` not found ({where}): the Prometheus end-to-end tests need a real "
            f"Prometheus; install it (apt-get install prometheus) or set ${variable}",
            pytrace=False,
        )
    return path


class Prometheus:
    """One real Prometheus server on a free loopback port, with its own TSDB directory."""

    _count = 0

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any] | Callable[[int], Any],
        flags: list[str] | None = None,
        port: int | None = None,
    ):
        Prometheus._count += 1
        self.ident = Prometheus._count
        self.binary = prometheus_tool("prometheus")
        self.port = port or free_port()
        self.dir = workdir / f"prometheus-{self.ident}"
        self.dir.mkdir()
        cfg = config(self.port) if callable(config) else config
        self.config_path = write_config(self.dir / "prometheus.yml", cfg)
        self.log_path = self.dir / "prometheus.log"
        self.flags = list(flags or [])
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = READY_TIMEOUT) -> "Prometheus":
        cmd = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.flags,
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir
            )
        track(self.proc)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                pytest.fail(f"prometheus exited with {code} before it was ready; log:\n{self.log()}")
            return requests.get(self.url + "/-/ready", timeout=1).status_code == 200

        wait_until(ready, timeout, f"prometheus /-/ready on port {self.port}", interval=0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = PROMETHEUS_STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        untrack(self.proc)
        return self.proc.returncode

    # -- HTTP API
    def api(self, path: str, **params) -> Any:
        r = requests.get(self.url + path, params=params, timeout=5)
        body = r.json()
        ok = r.status_code == 200 and body.get("status") == "success"
        assert ok, f"GET {path} {params}: {r.status_code} {r.text}"
        return body["data"]

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) per series of a vector, or [({}, value)] for a scalar."""
        data = self.api("/api/v1/query", query=promql)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        assert data["resultType"] == "vector", data
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_range_samples(self, selector: str, window: str = "5m") -> list[tuple[dict, list]]:
        """The raw samples of `selector` over the last `window` (a range-vector query)."""
        data = self.api("/api/v1/query", query=f"{selector}[{window}]")
        assert data["resultType"] == "matrix", data
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def wait_query(
        self, promql: str, check: Callable[[list], Any], timeout: float = 15.0, what: str | None = None
    ) -> list:
        """Polls `promql` until `check(result)` is truthy; returns the result. On timeout the
        failure shows the last result."""
        seen: dict[str, Any] = {}

        def poll():
            seen["result"] = self.query(promql)
            return check(seen["result"])

        deadline = time.monotonic() + timeout
        while True:
            try:
                if poll():
                    return seen["result"]
            except AssertionError:
                raise
            except Exception as e:  # noqa: BLE001 - not ready yet
                seen["error"] = repr(e)
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"timed out after {timeout:.1f}s waiting for {what or promql}: "
                    f"last result {seen.get('result')!r} {seen.get('error', '')}"
                )
            time.sleep(0.1)
