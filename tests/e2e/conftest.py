"""Shared helpers for Sluice's end-to-end tests.

Every test starts its own gateway process on free loopback ports (through the `gateway`
fixture), sends real OTLP traffic to it, and checks what reaches fake downstream backends:

- `GrpcDownstream`: an OTLP/gRPC backend built on the `opentelemetry-proto` servicer classes. It
  keeps the wire bytes and the parsed message of every request, and can be told to answer
  UNAVAILABLE, to report a partial success, to answer slowly, or to hang.
- `HttpDownstream`: an OTLP/HTTP backend (`http.server` in a thread) for the exporter's
  `protocol: http`.
- `Prometheus`: a real Prometheus server (the `prometheus` fixture) on a free port with its own
  TSDB directory, queried over its HTTP API.

The binary under test is `$SLUICE_BIN`, by default `target/debug/sluice` in the repository.
Processes are stopped by PID: SIGTERM first, SIGKILL after a deadline.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
import requests

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parents[1]
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", str(REPO / "target" / "debug" / "sluice")))

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0

SIGNALS = ("traces", "metrics", "logs")

GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}

REQUEST_TYPES = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}

RESPONSE_TYPES = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
}


# ------------------------------------------------------------------------------------ polling


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02):
    """Polls `predicate` until it returns something truthy (which is returned), or fails the
    test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - polled predicates may fail until ready
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


# -------------------------------------------------------------------------------------- ports

_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A loopback TCP port that is free now and was not handed out before in this run."""
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free loopback port found")


def port_is_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------ metrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric_value(samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    return sum(
        v
        for n, l, v in samples
        if n == name and all(l.get(k) == str(want) for k, want in labels.items())
    )


# ------------------------------------------------------------------------------------ gateway


def one_slot_exporter(ds) -> dict:
    """An OTLP exporter `otlp/down` to `ds` with a one-batch queue, one sender and no retries:
    once `ds.hang()`s, it is full with two batches (one sending, one queued)."""
    return {
        "otlp/down": {
            "endpoint": ds.endpoint,
            "timeout": "30s",
            "sending_queue": {"queue_size": 1, "num_consumers": 1},
            "retry_on_failure": {"enabled": False},
        }
    }


def config_for(
    ports: dict[str, int],
    exporters: dict[str, Any],
    pipelines: dict[str, Any] | None = None,
    grpc_options: dict[str, Any] | None | bool = None,
    http_options: dict[str, Any] | None | bool = None,
    service: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A gateway config: one `otlp` receiver on the given ports, the given exporters, and (by
    default) a pipeline per signal from that receiver to every exporter."""
    protocols: dict[str, Any] = {}
    if grpc_options is not False:
        protocols["grpc"] = {"endpoint": f"127.0.0.1:{ports['grpc']}", **(grpc_options or {})}
    if http_options is not False:
        protocols["http"] = {"endpoint": f"127.0.0.1:{ports['http']}", **(http_options or {})}
    if pipelines is None:
        pipelines = {s: {"receivers": ["otlp"], "exporters": list(exporters)} for s in SIGNALS}
    svc = {
        "pipelines": pipelines,
        "admin": {"endpoint": f"127.0.0.1:{ports['admin']}"},
        "shutdown_timeout": "10s",
    }
    svc.update(service or {})
    return {
        "receivers": {"otlp": {"protocols": protocols}},
        "exporters": exporters,
        "service": svc,
    }


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a gateway process: without any SLUICE_* setting of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(extra or {})
    return env


def write_config(path: Path, config: dict[str, Any] | str) -> Path:
    # JSON is valid YAML, so a dict is written as JSON.
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    path.write_text(text)
    return path


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
    ):
        Gateway._count += 1
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
        cmd = [str(SLUICE_BIN), "run", "--config", str(self.config_path), *self.args]
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
        _live_processes[self.proc.pid] = self.proc
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
        _live_processes.pop(self.proc.pid, None)
        return self.returncode

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after `timeout`. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            _live_processes.pop(self.proc.pid, None)
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


_live_processes: dict[int, subprocess.Popen] = {}


@pytest.fixture(scope="session", autouse=True)
def _sluice_binary():
    if not SLUICE_BIN.is_file() or not os.access(SLUICE_BIN, os.X_OK):
        pytest.exit(
            f"sluice binary not found at {SLUICE_BIN}: build it (cargo build -p sluice) or set SLUICE_BIN",
            returncode=2,
        )
    yield
    # Safety net: nothing a test started outlives the session.
    for pid, proc in list(_live_processes.items()):
        if proc.poll() is None:
            os.kill(pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture
def gateway(tmp_path, downstream, http_downstream, prometheus):
    """Factory: `gateway(exporters=..., pipelines=..., grpc_options=..., ...)` starts a gateway on
    free ports and waits until it is ready; every gateway is stopped at teardown. Pass
    `config=` (a dict or text; a callable gets the ports, and may add ports of its own to the
    dict, which the gateway then keeps in `ports`) to use a config of your own.

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
            gw = Gateway(tmp_path, cfg, ports, args=args, env=env, preexec_fn=preexec_fn)
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


# --------------------------------------------------------------------------- gRPC downstream


@dataclass
class Received:
    """One request as a downstream got it."""

    signal: str
    raw: bytes
    message: Any
    metadata: dict[str, str] = field(default_factory=dict)
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    # The HTTP body as it came over the wire (before any decompression).
    wire: bytes = b""


class _Wire:
    """What the servicers get: the wire bytes and the parsed request."""

    def __init__(self, signal_name: str, raw: bytes):
        self.signal = signal_name
        self.raw = raw
        self.message = REQUEST_TYPES[signal_name].FromString(raw)


class _Recorder:
    def __init__(self):
        self.lock = threading.Condition()
        self.received: dict[str, list[Received]] = {s: [] for s in SIGNALS}
        self.calls = 0

    def record(self, item: Received) -> None:
        with self.lock:
            self.received[item.signal].append(item)
            self.lock.notify_all()

    def requests(self, signal_name: str) -> list[Received]:
        with self.lock:
            return list(self.received[signal_name])

    def wait_for(self, signal_name: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.received[signal_name]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(
                        f"{type(self).__name__} got {len(self.received[signal_name])} {signal_name} "
                        f"request(s) within {timeout}s; expected {count}"
                    )
                self.lock.wait(left)
            return list(self.received[signal_name])

    def records(self, signal_name: str) -> int:
        return sum(count_records(signal_name, r.message) for r in self.requests(signal_name))

    def wait_records(self, signal_name: str, count: int, timeout: float = 10.0) -> list[Received]:
        wait_until(
            lambda: self.records(signal_name) >= count,
            timeout,
            f"{count} {signal_name} records at {type(self).__name__}",
        )
        return self.requests(signal_name)


class GrpcDownstream(_Recorder):
    """A fake OTLP/gRPC backend.

    Behaviour, changeable at any time:
    - `fail_next`: answer that many requests with `fail_code` (UNAVAILABLE by default) first;
    - `always_fail`: answer every request with `fail_code`;
    - `partial`: report that many records rejected in `partial_success`;
    - `delay`: seconds to wait before answering;
    - `hang()`: block every request until `release()` (or teardown).
    Failed requests are counted in `failed`, not recorded.
    """

    def __init__(self):
        super().__init__()
        self.fail_next = 0
        self.always_fail = False
        self.fail_code = grpc.StatusCode.UNAVAILABLE
        self.partial = 0
        self.delay = 0.0
        self.failed = 0
        self._released = threading.Event()
        self._released.set()
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=32),
            options=[("grpc.max_receive_message_length", 64 << 20)],
        )
        self._register()
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hang(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def _register(self) -> None:
        ds = self

        def handle(signal_name: str, request: _Wire, context: grpc.ServicerContext):
            with ds.lock:
                ds.calls += 1
            ds._released.wait(60)
            if ds.delay:
                time.sleep(ds.delay)
            with ds.lock:
                fail = ds.always_fail or ds.fail_next > 0
                if ds.fail_next > 0:
                    ds.fail_next -= 1
                if fail:
                    ds.failed += 1
            if fail:
                context.abort(ds.fail_code, "downstream told to fail")
            metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            ds.record(Received(signal_name, request.raw, request.message, metadata=metadata))
            response = RESPONSE_TYPES[signal_name]()
            if ds.partial:
                p = response.partial_success
                if signal_name == "traces":
                    p.rejected_spans = ds.partial
                elif signal_name == "metrics":
                    p.rejected_data_points = ds.partial
                else:
                    p.rejected_log_records = ds.partial
                p.error_message = "downstream rejected some records"
            return response

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 - gRPC method name
                return handle("traces", request, context)

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                return handle("metrics", request, context)

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                return handle("logs", request, context)

        # The servicers are registered like the generated `add_*Servicer_to_server` does, but with
        # a deserializer that keeps the wire bytes beside the parsed message.
        for servicer, signal_name in ((Traces(), "traces"), (Metrics(), "metrics"), (Logs(), "logs")):
            service, method = GRPC_METHODS[signal_name].lstrip("/").split("/")
            handler = grpc.unary_unary_rpc_method_handler(
                servicer.Export,
                request_deserializer=lambda b, s=signal_name: _Wire(s, b),
                response_serializer=lambda m: m.SerializeToString(),
            )
            self.server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, {method: handler}),)
            )

    def stop(self) -> None:
        self.release()
        self.server.stop(grace=0).wait(5)


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


# --------------------------------------------------------------------------- HTTP downstream


class HttpDownstream(_Recorder):
    """A fake OTLP/HTTP backend recording each POST (path, headers, body as sent and as
    decoded). `status` sets the answer (200 by default)."""

    def __init__(self):
        super().__init__()
        self.status = 200
        ds = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                signal_name = self.path.rsplit("/", 1)[-1]
                raw = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
                if ds.status == 200 and signal_name in REQUEST_TYPES:
                    message = REQUEST_TYPES[signal_name].FromString(raw)
                    ds.record(
                        Received(signal_name, raw, message, path=self.path, headers=headers, wire=body)
                    )
                    reply = RESPONSE_TYPES[signal_name]().SerializeToString()
                else:
                    reply = b""
                self.send_response(ds.status if signal_name in REQUEST_TYPES else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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


# ------------------------------------------------------------------------------ OTLP helpers


def count_records(signal_name: str, message) -> int:
    if signal_name == "traces":
        return sum(len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans)
    if signal_name == "logs":
        return sum(len(sl.log_records) for rl in message.resource_logs for sl in rl.scope_logs)
    n = 0
    for rm in message.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                n += len(getattr(m, kind).data_points) if kind else 0
    return n


def kv(key: str, value) -> common_pb2.KeyValue:
    if isinstance(value, bool):
        v = common_pb2.AnyValue(bool_value=value)
    elif isinstance(value, int):
        v = common_pb2.AnyValue(int_value=value)
    elif isinstance(value, float):
        v = common_pb2.AnyValue(double_value=value)
    else:
        v = common_pb2.AnyValue(string_value=str(value))
    return common_pb2.KeyValue(key=key, value=v)


def span(trace_id: bytes, span_id: bytes, name: str = "op", **extra) -> trace_pb2.Span:
    now = time.time_ns()
    return trace_pb2.Span(
        trace_id=trace_id,
        span_id=span_id,
        name=name,
        kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=now - 1_000_000,
        end_time_unix_nano=now,
        **extra,
    )


def trace_request(*spans: trace_pb2.Span, service: str = "e2e") -> trace_service_pb2.ExportTraceServiceRequest:
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=[kv("service.name", service)]),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=common_pb2.InstrumentationScope(name="e2e", version="1"),
                        spans=list(spans),
                    )
                ],
            )
        ]
    )


_id_counter = 0
_id_lock = threading.Lock()


def new_ids() -> tuple[bytes, bytes]:
    """A fresh (trace_id, span_id), distinct within the run."""
    global _id_counter
    with _id_lock:
        _id_counter += 1
        n = _id_counter
    return os.urandom(12) + n.to_bytes(4, "big"), os.urandom(4) + n.to_bytes(4, "big")


def simple_trace_request(n: int = 1, name: str = "op") -> tuple[trace_service_pb2.ExportTraceServiceRequest, list[bytes]]:
    """A request with `n` valid spans, and their span ids."""
    spans = []
    for i in range(n):
        t, s = new_ids()
        spans.append(span(t, s, f"{name}-{i}"))
    return trace_request(*spans), [s.span_id for s in spans]


def grpc_export(target: str, signal_name: str, body: bytes, timeout: float = 10.0, compression=None, metadata=None):
    """Sends raw bytes as an OTLP/gRPC Export call; returns the raw response bytes. Raises
    grpc.RpcError on a non-OK status."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            GRPC_METHODS[signal_name], request_serializer=None, response_deserializer=None
        )
        return call(body, timeout=timeout, compression=compression, metadata=metadata)


# -------------------------------------------------------------------------------- Prometheus

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
        _live_processes[self.proc.pid] = self.proc
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
        _live_processes.pop(self.proc.pid, None)
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
