"""One `sluice run` process under test: its config file, start and wait until ready, signals
and stop (SIGTERM first, SIGKILL after a deadline, by PID), its output, and clients for its
admin endpoint and its OTLP/HTTP receiver. Also `sluice validate` for configs with built-in
plugins, which fills their compile cache."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from .config import write_config
from .exposition import metric_value, parse_prometheus
from .polling import wait_until
from .process import READY_TIMEOUT, SLUICE_BIN, STOP_TIMEOUT, clean_env, track, untrack

# Compiling the built-in plugins once takes a while on two cores; later loads hit the cache.
PLUGIN_COMPILE_TIMEOUT = 180.0


def validate_with_plugins(config_path: Path, plugin_dir: Path) -> None:
    """`sluice validate` of a config whose `builtin/*` plugins come from `plugin_dir`: it
    compiles them into the config's plugin cache, so that gateways started from the cache come
    up in seconds. Fails the test if validation fails."""
    r = subprocess.run(
        [str(SLUICE_BIN), "validate", "--config", str(config_path)],
        capture_output=True,
        text=True,
        env=clean_env({"SLUICE_PLUGIN_DIR": str(plugin_dir)}),
        stdin=subprocess.DEVNULL,
        timeout=PLUGIN_COMPILE_TIMEOUT,
        check=False,
    )
    if r.returncode != 0:
        pytest.fail(f"`sluice validate` of the built-in plugins failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


class Gateway:
    """One `sluice run` process."""

    _count = 0

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any] | str,
        ports: dict[str, int],
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
        binary: Path | None = None,
    ):
        Gateway._count += 1
        self.binary = binary or SLUICE_BIN
        self.preexec_fn = preexec_fn
        self.ident = Gateway._count
        self.workdir = workdir
        self.ports = ports
        self.config_path = write_config(workdir / f"sluice-{self.ident}.yaml", config)
        self.stderr_path = workdir / f"sluice-{self.ident}.stderr"
        self.stdout_path = workdir / f"sluice-{self.ident}.stdout"
        self.args = list(args or [])
        self.env = clean_env(env)
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    # -- addresses
    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['admin']}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- lifecycle
    def start(self, wait_ready: bool = True, timeout: float = READY_TIMEOUT) -> "Gateway":
        cmd = [str(self.binary), "run", "--config", str(self.config_path), *self.args]
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.workdir,
                preexec_fn=self.preexec_fn,
            )
        track(self.proc)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT, admin_url: str | None = None) -> None:
        url = (admin_url or self.admin_url) + "/health/ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise GatewayExited(self)
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.02)
        pytest.fail(f"gateway not ready within {timeout}s; stderr:\n{self.stderr()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        untrack(self.proc)
        return self.returncode

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after `timeout`. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            untrack(self.proc)
            self.returncode = self.proc.returncode
            return self.returncode
        self.signal(signal.SIGTERM)
        code = self.wait_exit(timeout)
        if code is None:
            self.signal(signal.SIGKILL)
            code = self.wait_exit(5)
        return code

    # -- output
    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- admin endpoint
    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.admin_url + path, timeout=kw.pop("timeout", 5), **kw)

    def metrics(self):
        r = self.get("/metrics")
        assert r.status_code == 200, r.text
        return parse_prometheus(r.text)

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics(), name, **labels)

    def wait_metric(self, name: str, at_least: float, timeout: float = 10.0, **labels: str) -> float:
        seen = {}

        def check() -> bool:
            seen["value"] = self.metric(name, **labels)
            return seen["value"] >= at_least

        wait_until(check, timeout, f"{name}{labels} >= {at_least}")
        return seen["value"]

    # -- OTLP/HTTP
    def post(self, signal_name: str, body: bytes, content_type="application/x-protobuf", headers=None, **kw):
        h = {"Content-Type": content_type, **(headers or {})}
        return requests.post(
            f"{self.http_url}/v1/{signal_name}", data=body, headers=h, timeout=kw.pop("timeout", 10), **kw
        )


class GatewayExited(AssertionError):
    def __init__(self, gw: Gateway):
        self.gateway = gw
        super().__init__(
            f"gateway exited with code {gw.proc.returncode if gw.proc else None} before it was ready; "
            f"stderr:\n{gw.stderr()}"
        )
