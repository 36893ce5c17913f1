"""Gateway configs for the tests, every listener on a loopback port of the test's own.

`ports` is the dict the `gateway` fixture hands a config callable (`grpc`, `http`, `admin`; a
test may add its own). Configs are written as JSON, which is valid YAML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .otlp import SIGNALS


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


def write_config(path: Path, config: dict[str, Any] | str) -> Path:
    # JSON is valid YAML, so a dict is written as JSON.
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    path.write_text(text)
    return path
