"""What the gateway offers a plugin: its log, the clock, and a way to send derived telemetry
into the pipelines. Inside the component these call the host; under ``pytest`` they go to the
mock host of :mod:`sluice_plugin.testing`."""

from __future__ import annotations

from . import Signal, otlp

__all__ = ["DEBUG", "INFO", "WARN", "ERROR", "log", "now", "emit"]

DEBUG = "debug"
INFO = "info"
WARN = "warn"
ERROR = "error"

# The backend: the real host inside the component (set by the component glue), else the mock.
_backend = None


def _host():
    global _backend
    if _backend is None:
        from .testing import MockHost

        _backend = MockHost()
    return _backend


def log(level: str, message: str) -> None:
    """Writes to the gateway's log, tagged with the plugin's name. ``level`` is one of
    ``debug``, ``info``, ``warn``, ``error``."""
    if level not in (DEBUG, INFO, WARN, ERROR):
        raise ValueError(f"log level {level!r}: use debug, info, warn or error")
    _host().log(level, str(message))


def now() -> int:
    """Wall-clock time, unix nanoseconds."""
    return _host().now()


def emit(signal: Signal, batch) -> None:
    """Sends derived telemetry into the gateway's pipelines for ``signal``: an
    ``otlp.Export*ServiceRequest`` or its protobuf encoding. The gateway caps what one call may
    emit; a call over it fails."""
    if not isinstance(signal, Signal):
        raise TypeError("signal must be a sluice_plugin.Signal")
    data = batch.encode() if isinstance(batch, otlp.Message) else bytes(batch)
    _host().emit(signal, data)
