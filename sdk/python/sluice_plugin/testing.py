"""Run a plugin under ``pytest``: a mock host that records what the plugin logs and emits and
has a settable clock, batch builders, and :func:`run`, which goes through the same steps as
the component (decode, call, encode)."""

from __future__ import annotations

from . import Signal, host, otlp

__all__ = ["MockHost", "mock_host", "traces", "logs", "run"]


class MockHost:
    """The host under tests: ``logs`` holds ``(level, message)``, ``emitted`` holds
    ``(signal, decoded batch)``, ``clock`` is what :func:`sluice_plugin.host.now` returns."""

    def __init__(self, clock: int = 0):
        self.logs = []
        self.emitted = []
        self.clock = clock

    def log(self, level, message):
        self.logs.append((level, message))

    def now(self):
        return self.clock

    def emit(self, signal, data):
        cls = {
            Signal.TRACES: otlp.ExportTraceServiceRequest,
            Signal.METRICS: otlp.ExportMetricsServiceRequest,
            Signal.LOGS: otlp.ExportLogsServiceRequest,
        }[signal]
        self.emitted.append((signal, cls.decode(data)))


def mock_host(clock: int = 0) -> MockHost:
    """Installs a fresh mock host and returns it (call it at the start of each test)."""
    fresh = MockHost(clock)
    host._backend = fresh
    return fresh


def traces(names) -> otlp.ExportTraceServiceRequest:
    """A traces batch with one span per name (ids derived from the position)."""
    spans = [
        otlp.Span(trace_id=bytes([1 + i]) * 16, span_id=bytes([1 + i]) * 8, name=name)
        for i, name in enumerate(names)
    ]
    return otlp.ExportTraceServiceRequest(
        resource_spans=[otlp.ResourceSpans(scope_spans=[otlp.ScopeSpans(spans=spans)])]
    )


def logs(bodies) -> otlp.ExportLogsServiceRequest:
    """A logs batch with one string-bodied record per body."""
    records = [otlp.LogRecord(body=otlp.AnyValue(string_value=b)) for b in bodies]
    return otlp.ExportLogsServiceRequest(
        resource_logs=[otlp.ResourceLogs(scope_logs=[otlp.ScopeLogs(log_records=records)])]
    )


def run(plugin, signal: Signal, data: bytes):
    """Processes one encoded batch as the gateway would: returns ``("unchanged", None)``,
    ``("keep", indices)`` or ``("replace", bytes)``."""
    from ._component import process

    return process(plugin, signal, data)
