"""Fake downstream backends that record what the gateway sends them.

- `GrpcDownstream`: an OTLP/gRPC backend built on the `opentelemetry-proto` servicer classes. It
  keeps the wire bytes and the parsed message of every request, and can be told to answer
  UNAVAILABLE, to report a partial success, to answer slowly, or to hang.
- `HttpDownstream`: an OTLP/HTTP backend (`http.server` in a thread) for the exporter's
  `protocol: http`.

Both listen on an ephemeral loopback port; `endpoint` is the URL to give an exporter.
"""

from __future__ import annotations

import gzip
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from .otlp import GRPC_METHODS, REQUEST_TYPES, RESPONSE_TYPES, SIGNALS, count_records
from .polling import wait_until


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


