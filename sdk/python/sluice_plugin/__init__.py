"""Write Sluice plugins in Python.

A plugin is a subclass of :class:`Plugin` in one module of a project; ``sluice plugin build``
(or ``python3 -m sluice_plugin.build``) turns the project into a WebAssembly component with
componentize-py, and the gateway runs it like a plugin written in Rust::

    from sluice_plugin import ConfigError, Plugin, Signal, keep_spans

    class DropHealth(Plugin):
        name = "drop-health"
        version = "0.1.0"
        signals = [Signal.TRACES]

        def __init__(self, config):
            self.prefix = config.get("prefix", "GET /health")

        def traces(self, batch):
            return keep_spans(batch, lambda resource, scope, span: not span.name.startswith(self.prefix))

The methods and their defaults are those of the Rust SDK's ``Plugin`` trait: ``traces``,
``metrics`` and ``logs`` get a decoded batch (:mod:`sluice_plugin.otlp`) and return a
:class:`Verdict` (``None`` means unchanged); ``tick``, ``snapshot`` and ``restore`` keep state
across batches and reloads. :mod:`sluice_plugin.host` logs, reads the clock and emits derived
telemetry; :mod:`sluice_plugin.testing` runs a plugin under ``pytest`` with a mock host.
"""

from __future__ import annotations

import enum

from . import otlp
from .otlp import AnyValue, KeyValue

__version__ = "0.1.0"

__all__ = [
    "Plugin",
    "Signal",
    "Verdict",
    "PluginError",
    "ConfigError",
    "InputError",
    "keep_spans",
    "keep_logs",
    "keep_data_points",
    "get_attribute",
    "set_attribute",
    "otlp",
]


class Signal(enum.Enum):
    """The OTLP signals."""

    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"


class Verdict:
    """What to do with a batch: :data:`UNCHANGED`, :data:`MODIFIED` (forward the batch the
    plugin changed in place) or :meth:`keep` (only the records at these indices, counted in
    document order across resources and scopes)."""

    __slots__ = ("kind", "indices")

    UNCHANGED: "Verdict"
    MODIFIED: "Verdict"

    def __init__(self, kind: str, indices=None):
        self.kind = kind
        self.indices = indices

    @classmethod
    def keep(cls, indices) -> "Verdict":
        return cls("keep", [int(i) for i in indices])

    def __eq__(self, other):
        return (
            isinstance(other, Verdict) and self.kind == other.kind and self.indices == other.indices
        )

    def __repr__(self):
        return f"Verdict.keep({self.indices})" if self.kind == "keep" else f"Verdict.{self.kind.upper()}"


Verdict.UNCHANGED = Verdict("unchanged")
Verdict.MODIFIED = Verdict("modified")


class PluginError(Exception):
    """Any other failure; the processor's ``on_error`` applies to the batch."""

    kind = "internal"


class ConfigError(PluginError):
    """The configuration is unusable: raised from ``__init__``, it keeps the gateway from
    loading the plugin, with this message."""

    kind = "config"


class InputError(PluginError):
    """This batch could not be processed; the processor's ``on_error`` applies to it."""

    kind = "input"


class Plugin:
    """A Sluice plugin. Set :attr:`name`, :attr:`version` and :attr:`signals`, and implement
    the methods for those signals; the defaults pass everything through."""

    #: The plugin's name, as the gateway reports it.
    name: str = "plugin"
    #: The plugin's version.
    version: str = "0.1.0"
    #: The signals the gateway calls the plugin for.
    signals: list = [Signal.TRACES]
    #: Whether the plugin keeps state across batches (and implements snapshot/restore).
    stateful: bool = False

    def __init__(self, config: dict):
        """Builds the plugin from its ``config:`` block (parsed JSON, ``{}`` when empty);
        raise :class:`ConfigError` to refuse it."""

    def traces(self, batch: otlp.ExportTraceServiceRequest) -> Verdict | None:
        return Verdict.UNCHANGED

    def metrics(self, batch: otlp.ExportMetricsServiceRequest) -> Verdict | None:
        return Verdict.UNCHANGED

    def logs(self, batch: otlp.ExportLogsServiceRequest) -> Verdict | None:
        return Verdict.UNCHANGED

    def tick(self, now: int) -> None:
        """Called about once a second with the unix time in nanoseconds."""

    def snapshot(self) -> bytes:
        """The state to hand to a fresh instance after a reload or a trap."""
        return b""

    def restore(self, state: bytes) -> None:
        """Takes over the state of a previous instance."""


def _keep(resources, scopes_of, records_of, keep) -> Verdict:
    kept = []
    index = 0
    for resource in resources:
        for scope in scopes_of(resource):
            for record in records_of(scope):
                if keep(resource.resource, scope.scope, record):
                    kept.append(index)
                index += 1
    return Verdict.UNCHANGED if len(kept) == index else Verdict.keep(kept)


def keep_spans(batch: otlp.ExportTraceServiceRequest, keep) -> Verdict:
    """``Verdict.keep`` of the spans for which ``keep(resource, scope, span)`` is true, or
    ``UNCHANGED`` when it is true for all of them. ``resource`` and ``scope`` may be ``None``."""
    return _keep(batch.resource_spans, lambda r: r.scope_spans, lambda s: s.spans, keep)


def keep_logs(batch: otlp.ExportLogsServiceRequest, keep) -> Verdict:
    """As :func:`keep_spans`, for log records: ``keep(resource, scope, record)``."""
    return _keep(batch.resource_logs, lambda r: r.scope_logs, lambda s: s.log_records, keep)


def _data_points(metric):
    for name in ("gauge", "sum", "histogram", "exponential_histogram", "summary"):
        data = getattr(metric, name)
        if data is not None:
            return data.data_points
    return []


def keep_data_points(batch: otlp.ExportMetricsServiceRequest, keep) -> Verdict:
    """Keeps whole metrics (all their data points) for which ``keep(resource, metric)`` is
    true. Data points are counted in document order across resources, scopes and metrics."""
    kept = []
    index = 0
    for rm in batch.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                n = len(_data_points(metric))
                if keep(rm.resource, metric):
                    kept.extend(range(index, index + n))
                index += n
    return Verdict.UNCHANGED if len(kept) == index else Verdict.keep(kept)


def get_attribute(attributes, key: str, default=None):
    """The value of attribute ``key`` as a Python object (see :meth:`otlp.AnyValue.value`), or
    ``default``. ``attributes`` is a list of ``KeyValue``, or a message that has one (a
    ``Span``, a ``Resource``, a ``LogRecord``; ``None`` has none). Give the message rather than
    its list where you can: attributes nobody read yet are then searched without decoding
    them, several times faster."""
    if attributes is None:
        return default
    if not isinstance(attributes, list):
        # A message's attributes not read yet are searched in their encoding: the key is
        # compared where each KeyValue starts, and only the match is decoded.
        found = otlp.find_pending_attribute(attributes, key)
        if found is not otlp.NOT_PENDING:
            if found is None or found.value is None:
                return default
            return found.value.value()
        attributes = attributes.attributes
    for kv in attributes:
        if kv.key == key:
            return kv.value.value() if kv.value is not None else default
    return default


def set_attribute(attributes, key: str, value) -> None:
    """Sets attribute ``key`` to ``value`` (str, bool, int, float, bytes, list, dict or an
    ``AnyValue``): replaces it where it is, or appends it."""
    if not isinstance(attributes, list):
        attributes = attributes.attributes
    any_value = AnyValue.of(value)
    for kv in attributes:
        if kv.key == key:
            kv.value = any_value
            return
    attributes.append(KeyValue(key=key, value=any_value))
