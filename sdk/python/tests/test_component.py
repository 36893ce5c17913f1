"""The component glue (what componentize-py calls) with stand-ins for the generated bindings:
configs, verdicts, errors and the host, as the gateway sees them."""

import enum
import types as pytypes
from dataclasses import dataclass

import pytest

from sluice_plugin import ConfigError, InputError, Plugin, Signal, Verdict, _component, host, otlp, testing


class Err(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


def bindings():
    """Stand-ins for `wit_world.exports`, `wit_world.imports.types` and `.host`."""

    class WitSignal(enum.Enum):
        TRACES = 0
        METRICS = 1
        LOGS = 2

    class Level(enum.Enum):
        DEBUG = 0
        INFO = 1
        WARN = 2
        ERROR = 3

    def case(name):
        return dataclass(type(name, (), {"__annotations__": {"value": object}}))

    @dataclass
    class Info:
        name: str
        version: str
        signals: list
        stateful: bool

    types = pytypes.SimpleNamespace(
        Signal=WitSignal, Info=Info, Verdict_Unchanged=dataclass(type("Verdict_Unchanged", (), {})),
        Verdict_Keep=case("Verdict_Keep"), Verdict_Replace=case("Verdict_Replace"),
        Error_Config=case("Error_Config"), Error_Input=case("Error_Input"), Error_Internal=case("Error_Internal"),
    )
    calls = []
    wit_host = pytypes.SimpleNamespace(
        Level=Level,
        log=lambda level, msg: calls.append(("log", level, msg)),
        now=lambda: 42,
        emit=lambda signal, data: calls.append(("emit", signal, data)),
    )
    exports = pytypes.SimpleNamespace(Plugin=object)
    return exports, types, wit_host, calls


class Example(Plugin):
    name = "example"
    version = "1.2.3"
    signals = [Signal.TRACES, Signal.LOGS]
    stateful = True

    def __init__(self, config):
        if config.get("bad"):
            raise ConfigError("`bad` is set")
        if config.get("crash"):
            raise KeyError("boom")
        self.mode = config.get("mode", "keep")
        self.state = b""

    def traces(self, batch):
        host.log(host.INFO, f"{len(batch.resource_spans)} resources")
        host.emit(Signal.METRICS, otlp.ExportMetricsServiceRequest())
        if self.mode == "keep":
            return Verdict.keep([0])
        if self.mode == "rename":
            batch.resource_spans[0].scope_spans[0].spans[0].name = "renamed"
            return Verdict.MODIFIED
        if self.mode == "input":
            raise InputError("cannot read this batch")
        if self.mode == "wrong":
            return "keep everything"
        return 1 / 0

    def snapshot(self):
        return b"state"

    def restore(self, state):
        self.state = state


@pytest.fixture
def component():
    exports, types, wit_host, calls = bindings()
    module = pytypes.ModuleType("example_plugin")
    Example.__module__ = module.__name__
    module.Example = Example
    cls = _component.exports_class(module, exports, types, wit_host, Err)
    yield cls(), types, calls
    host._backend = None


def test_describe_init_and_verdicts(component):
    plugin, types, calls = component
    info = plugin.describe()
    assert (info.name, info.version, info.stateful) == ("example", "1.2.3", True)
    assert info.signals == [types.Signal.TRACES, types.Signal.LOGS]
    batch = testing.traces(["a", "b"]).encode()
    plugin.init("")
    assert plugin.process(types.Signal.TRACES, batch) == types.Verdict_Keep([0])
    assert calls[0][0] == "log" and calls[0][2] == "1 resources"
    assert calls[1] == ("emit", types.Signal.METRICS, b"")
    plugin.init('{"mode": "rename"}')
    out = plugin.process(types.Signal.TRACES, batch)
    assert otlp.ExportTraceServiceRequest.decode(out.value).resource_spans[0].scope_spans[0].spans[0].name == "renamed"
    assert plugin.snapshot() == b"state"
    plugin.restore(b"old")


@pytest.mark.parametrize(
    "config,kind,text",
    [
        ('{"bad": true}', "Error_Config", "`bad` is set"),
        ('{"crash": true}', "Error_Config", "KeyError: 'boom'"),
        ("{not json", "Error_Config", "not JSON"),
        ("[1, 2]", "Error_Config", "must be a mapping"),
    ],
)
def test_refused_configs_are_config_errors(component, config, kind, text):
    plugin, types, _ = component
    with pytest.raises(Err) as e:
        plugin.init(config)
    assert type(e.value.value).__name__ == kind and text in e.value.value.value


@pytest.mark.parametrize(
    "mode,data,kind,text",
    [
        ("keep", b"\x0a\x05ab", "Error_Input", "not valid OTLP"),
        ("keep", b"\x0a\x80\x80\x80\x80\x10", "Error_Input", "runs past the end"),
        ("input", None, "Error_Input", "cannot read this batch"),
        ("wrong", None, "Error_Internal", "return a sluice_plugin.Verdict"),
        ("divide", None, "Error_Internal", "ZeroDivisionError"),
    ],
)
def test_bad_batches_and_plugin_failures_are_errors_not_crashes(component, mode, data, kind, text):
    plugin, types, _ = component
    plugin.init(f'{{"mode": "{mode}"}}')
    with pytest.raises(Err) as e:
        plugin.process(types.Signal.TRACES, data if data is not None else testing.traces(["a"]).encode())
    assert type(e.value.value).__name__ == kind and text in e.value.value.value, e.value.value


def test_calls_before_init_are_internal_errors(component):
    plugin, types, _ = component
    with pytest.raises(Err) as e:
        plugin.process(types.Signal.TRACES, b"")
    assert "init was not called" in e.value.value.value


def test_a_module_must_define_one_plugin():
    module = pytypes.ModuleType("empty")
    with pytest.raises(RuntimeError, match="exactly one subclass"):
        _component.find_plugin(module)


def test_host_log_refuses_unknown_levels():
    testing.mock_host()
    with pytest.raises(ValueError, match="log level"):
        host.log("loud", "x")
    with pytest.raises(TypeError):
        host.emit("metrics", b"")


def test_the_build_says_what_to_install_and_builds(tmp_path, monkeypatch):
    from sluice_plugin import build

    with pytest.raises(build.BuildError, match="pyproject.toml not found"):
        build.build(str(tmp_path))
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x-y"\n')
    with pytest.raises(build.BuildError, match="plugin module x_y is not in"):
        build.build(str(tmp_path))
    # Without componentize-py in this interpreter or on PATH: the exact install line.
    monkeypatch.setitem(__import__("sys").modules, "componentize_py", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(build.BuildError, match=r"pip install componentize-py==0\.25\.1"):
        build.componentize_py()
