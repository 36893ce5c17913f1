"""The glue between a :class:`sluice_plugin.Plugin` subclass and the component's
``sluice:plugin/plugin`` export. The build generates an entry module that calls
:func:`exports_class` with the bindings componentize-py made from the WIT; :func:`process` is
also what :func:`sluice_plugin.testing.run` uses, so tests go through the same steps."""

from __future__ import annotations

import inspect
import json

from . import ConfigError, InputError, Plugin, PluginError, Signal, Verdict, host, otlp

_REQUESTS = {
    Signal.TRACES: otlp.ExportTraceServiceRequest,
    Signal.METRICS: otlp.ExportMetricsServiceRequest,
    Signal.LOGS: otlp.ExportLogsServiceRequest,
}


def find_plugin(module) -> type:
    """The one :class:`Plugin` subclass defined in ``module``."""
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Plugin)
        and obj is not Plugin
        and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise RuntimeError(
            f"module {module.__name__} must define exactly one subclass of sluice_plugin.Plugin"
            f" (found {names})"
        )
    return found[0]


def parse_config(text: str) -> dict:
    """The plugin's config: the JSON object of its ``config:`` block, ``{}`` when empty."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"the config is not JSON: {e}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"the config must be a mapping, not {type(value).__name__}")
    return value


def process(plugin: Plugin, signal: Signal, data: bytes):
    """Decodes, calls the plugin's method for ``signal`` and answers ``("unchanged", None)``,
    ``("keep", indices)`` or ``("replace", bytes)``."""
    try:
        batch = _REQUESTS[signal].decode(data)
    except otlp.DecodeError as e:
        raise InputError(f"the batch is not valid OTLP: {e}") from None
    method = {Signal.TRACES: plugin.traces, Signal.METRICS: plugin.metrics, Signal.LOGS: plugin.logs}[
        signal
    ]
    verdict = method(batch)
    if verdict is None or verdict is Verdict.UNCHANGED or (
        isinstance(verdict, Verdict) and verdict.kind == "unchanged"
    ):
        return ("unchanged", None)
    if not isinstance(verdict, Verdict):
        raise PluginError(
            f"{type(plugin).__name__}.{signal.value} returned {type(verdict).__name__};"
            " return a sluice_plugin.Verdict or None"
        )
    if verdict.kind == "keep":
        return ("keep", list(verdict.indices))
    return ("replace", batch.encode())


def _error_text(e: BaseException) -> str:
    if isinstance(e, PluginError):
        return str(e) or type(e).__name__
    return f"{type(e).__name__}: {e}"


def exports_class(module, exports, types, wit_host, err):
    """The class componentize-py calls for the ``plugin`` export, running the plugin that
    ``module`` defines. ``exports``, ``types`` and ``wit_host`` are the generated bindings,
    ``err`` is ``componentize_py_types.Err``."""
    cls = find_plugin(module)
    signal_of = {
        types.Signal.TRACES: Signal.TRACES,
        types.Signal.METRICS: Signal.METRICS,
        types.Signal.LOGS: Signal.LOGS,
    }
    wit_signal = {v: k for k, v in signal_of.items()}
    levels = {
        "debug": wit_host.Level.DEBUG,
        "info": wit_host.Level.INFO,
        "warn": wit_host.Level.WARN,
        "error": wit_host.Level.ERROR,
    }

    class RealHost:
        def log(self, level, message):
            wit_host.log(levels[level], message)

        def now(self):
            return wit_host.now()

        def emit(self, signal, data):
            wit_host.emit(wit_signal[signal], data)

    host._backend = RealHost()
    state = {"plugin": None}

    def wit_error(e: BaseException):
        kind = getattr(e, "kind", "internal") if isinstance(e, PluginError) else "internal"
        if isinstance(e, otlp.DecodeError):
            kind = "input"
        make = {"config": types.Error_Config, "input": types.Error_Input}.get(
            kind, types.Error_Internal
        )
        return err(make(_error_text(e)))

    def instance():
        if state["plugin"] is None:
            raise err(types.Error_Internal("init was not called"))
        return state["plugin"]

    class Exports(exports.Plugin):
        def describe(self):
            return types.Info(
                name=cls.name,
                version=cls.version,
                signals=[wit_signal[Signal(s)] for s in cls.signals],
                stateful=bool(cls.stateful),
            )

        def init(self, config):
            try:
                state["plugin"] = cls(parse_config(config))
            except Exception as e:
                if isinstance(e, PluginError) and not isinstance(e, ConfigError):
                    raise wit_error(e) from None
                raise err(types.Error_Config(_error_text(e))) from None

        def process(self, signal, batch):
            plugin = instance()
            try:
                kind, value = process(plugin, signal_of[signal], batch)
            except Exception as e:
                raise wit_error(e) from None
            if kind == "unchanged":
                return types.Verdict_Unchanged()
            if kind == "keep":
                return types.Verdict_Keep(value)
            return types.Verdict_Replace(value)

        def tick(self, now):
            try:
                instance().tick(now)
            except Exception as e:
                raise wit_error(e) from None

        def snapshot(self):
            try:
                return bytes(instance().snapshot() or b"")
            except Exception:
                return b""

        def restore(self, state_bytes):
            try:
                instance().restore(bytes(state_bytes))
            except Exception as e:
                raise wit_error(e) from None

    Exports.__name__ = "Plugin"
    return Exports
