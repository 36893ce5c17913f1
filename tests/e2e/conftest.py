"""The fixtures of Sluice's end-to-end tests; what they are built from is in `support/`.

Every test starts its own gateway process on free loopback ports (through the `gateway`
fixture), sends real OTLP traffic to it, and checks what reaches fake downstream backends
(`downstream`: OTLP/gRPC, `http_downstream`: OTLP/HTTP) or a real Prometheus (`prometheus`).

The binary under test is `$SLUICE_BIN`, by default `target/debug/sluice` in the repository.
Processes are stopped by PID: SIGTERM first, SIGKILL after a deadline.

`support` is imported as a top-level package: pytest's default (prepend) import mode puts this
directory on `sys.path` for its conftest and test modules, which have no `__init__.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest

# The helpers' own asserts (an admin endpoint answering 200, a query succeeding) explain
# themselves in a failure like the tests' asserts do.
pytest.register_assert_rewrite("support")

from support.backends import GrpcDownstream, HttpDownstream  # noqa: E402
from support.config import config_for  # noqa: E402
from support.gateway import Gateway, GatewayExited  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.process import SLUICE_BIN, kill_leftovers  # noqa: E402
from support.prometheus import Prometheus  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _sluice_binary():
    if not SLUICE_BIN.is_file() or not os.access(SLUICE_BIN, os.X_OK):
        pytest.exit(
            f"sluice binary not found at {SLUICE_BIN}: build it (cargo build -p sluice) or set SLUICE_BIN",
            returncode=2,
        )
    yield
    # Safety net: nothing a test started outlives the session.
    kill_leftovers()


@pytest.fixture
def gateway(tmp_path, downstream, http_downstream, prometheus):
    """Factory: `gateway(exporters=..., pipelines=..., grpc_options=..., ...)` starts a gateway on
    free ports and waits until it is ready; every gateway is stopped at teardown. Pass
    `config=` (a dict or text; a callable gets the ports, and may add ports of its own to the
    dict, which the gateway then keeps in `ports`) to use a config of your own, and `binary=` to
    run another copy of the gateway.

    It depends on the downstream factories (fake backends and Prometheus servers) so that
    gateways stop before the backends do: a gateway still delivering at teardown then finishes
    instead of retrying until its shutdown timeout."""
    started: list[Gateway] = []

    def start(
        exporters: dict[str, Any] | None = None,
        *,
        config: dict[str, Any] | str | Callable[[dict[str, int]], Any] | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        preexec_fn: Callable[[], None] | None = None,
        binary: Path | None = None,
        **config_kw,
    ) -> Gateway:
        last: Exception | None = None
        for _attempt in range(3):
            ports = {"grpc": free_port(), "http": free_port(), "admin": free_port()}
            if config is None:
                cfg = config_for(ports, exporters or {"debug": {"verbosity": "basic"}}, **config_kw)
            elif callable(config):
                cfg = config(ports)
            else:
                cfg = config
            gw = Gateway(tmp_path, cfg, ports, args=args, env=env, preexec_fn=preexec_fn, binary=binary)
            started.append(gw)
            try:
                return gw.start(wait_ready=wait_ready)
            except GatewayExited as e:
                # A port taken between choosing and binding it: choose again.
                if "cannot listen" not in gw.stderr():
                    raise
                last = e
        raise AssertionError(f"could not start the gateway: {last}")

    yield start
    problems = []
    for gw in started:
        was_running = gw.alive()
        code = gw.stop()
        if was_running and code != 0:
            tail = "\n".join(gw.stderr().splitlines()[-20:])
            problems.append(f"gateway pid {gw.pid} exited with {code} on SIGTERM; stderr tail:\n{tail}")
    if problems:
        pytest.fail("\n\n".join(problems))


@pytest.fixture
def downstream():
    """Factory of fake OTLP/gRPC backends, stopped at teardown."""
    servers: list[GrpcDownstream] = []

    def make() -> GrpcDownstream:
        s = GrpcDownstream()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def http_downstream():
    servers: list[HttpDownstream] = []

    def make() -> HttpDownstream:
        s = HttpDownstream()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def prometheus(tmp_path):
    """Factory: `prometheus(config, flags=[...])` starts a real Prometheus (config: a dict, or a
    callable given its port) and waits for /-/ready; every one is stopped by PID at teardown."""
    started: list[Prometheus] = []

    def start(
        config, *, flags: list[str] | None = None, port: int | None = None, wait_ready: bool = True
    ) -> Prometheus:
        p = Prometheus(tmp_path, config, flags=flags, port=port)
        started.append(p)
        return p.start(wait_ready=wait_ready)

    yield start
    for p in started:
        p.stop()
