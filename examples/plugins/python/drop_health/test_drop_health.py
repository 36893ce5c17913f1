import pytest

from drop_health import DropHealth
from sluice_plugin import ConfigError, Signal, Verdict, testing


def test_drops_health_checks_and_keeps_the_rest():
    plugin = DropHealth({})
    batch = testing.traces(["GET /health", "GET /orders", "GET /ready", "GET /healthz/deep"])
    assert plugin.traces(batch) == Verdict.keep([1])


def test_a_batch_without_health_checks_is_unchanged():
    plugin = DropHealth({"prefixes": ["HEAD /"]})
    assert testing.run(plugin, Signal.TRACES, testing.traces(["GET /health"]).encode()) == ("unchanged", None)


def test_configured_prefixes_replace_the_defaults():
    plugin = DropHealth({"prefixes": ["ping"]})
    assert plugin.traces(testing.traces(["ping", "GET /health"])) == Verdict.keep([1])


@pytest.mark.parametrize("config", [{"prefix": "x"}, {"prefixes": "GET /health"}, {"prefixes": [1]}])
def test_bad_config_is_refused(config):
    with pytest.raises(ConfigError):
        DropHealth(config)
