"""drop-health: drops health-check spans (those whose name starts with a configured prefix)."""

from sluice_plugin import ConfigError, Plugin, Signal, keep_spans

DEFAULT_PREFIXES = ["GET /health", "GET /ready", "GET /live"]


class DropHealth(Plugin):
    name = "drop-health"
    version = "0.1.0"
    signals = [Signal.TRACES]

    def __init__(self, config):
        unknown = sorted(set(config) - {"prefixes"})
        if unknown:
            raise ConfigError(f"unknown config key `{unknown[0]}` (known: prefixes)")
        prefixes = config.get("prefixes", DEFAULT_PREFIXES)
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise ConfigError("`prefixes` must be a list of strings")
        self.prefixes = tuple(prefixes)

    def traces(self, batch):
        return keep_spans(batch, lambda resource, scope, span: not span.name.startswith(self.prefixes))
