"""Gateway configs for the tests, every listener on a loopback port of the test's own.

`ports` is the dict the `gateway` fixture hands a config callable (`grpc`, `http`, `admin`; a
test may add its own). The builder only fills in what every test repeats; whatever it does
not know is a keyword argument that lands where the config file has it:

    gateway_config(
        ports,
        {"otlp/down": {"endpoint": ds.endpoint}},
        receivers={"otlp": otlp_receiver(ports, grpc=False, auth=auth)},
        pipelines={"traces": pipeline(["otlp/down"])},
        admin={"auth": admin_auth},
        shutdown_timeout="5s",
    )

is the config a test would otherwise spell out as nested dicts. Configs are written as JSON,
which is valid YAML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from .otlp import SIGNALS


def otlp_receiver(
    ports: dict[str, int],
    *,
    grpc: dict[str, Any] | bool = True,
    http: dict[str, Any] | bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """The `otlp` receiver listening on `ports['grpc']` and `ports['http']`. A dict for `grpc`
    or `http` adds settings to that protocol (`tls`, ...), False leaves the protocol out; other
    keyword arguments are the receiver's own settings (`auth`, `attribute_limits`)."""
    protocols: dict[str, Any] = {}
    for name, options in (("grpc", grpc), ("http", http)):
        if options is False:
            continue
        protocols[name] = {"endpoint": f"127.0.0.1:{ports[name]}", **(options if isinstance(options, dict) else {})}
    return {"protocols": protocols, **settings}


def pipeline(
    exporters: Iterable[str],
    *,
    receivers: Iterable[str] = ("otlp",),
    processors: Iterable[str] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """One pipeline: from `receivers` (the `otlp` receiver by default) through `processors` to
    `exporters`; other keyword arguments are pipeline settings (`queue_size`)."""
    p: dict[str, Any] = {"receivers": list(receivers)}
    if processors is not None:
        p["processors"] = list(processors)
    p["exporters"] = list(exporters)
    p.update(settings)
    return p


def gateway_config(
    ports: dict[str, int],
    exporters: dict[str, Any],
    *,
    pipelines: dict[str, Any] | None = None,
    receivers: dict[str, Any] | None = None,
    processors: dict[str, Any] | None = None,
    admin: dict[str, Any] | None = None,
    **service: Any,
) -> dict[str, Any]:
    """A gateway config: `receivers` (by default the `otlp` receiver on both protocols), the
    `processors` if any, the `exporters`, and a `service` with `pipelines` (by default one per
    signal from `otlp` to every exporter), the admin endpoint on `ports['admin']` (`admin` adds
    settings to it: `auth`, `tls`), and the other keyword arguments as service settings
    (`shutdown_timeout`, `plugins`, `telemetry`, ...)."""
    if pipelines is None:
        pipelines = {s: pipeline(exporters) for s in SIGNALS}
    config: dict[str, Any] = {"receivers": receivers if receivers is not None else {"otlp": otlp_receiver(ports)}}
    if processors is not None:
        config["processors"] = processors
    config["exporters"] = exporters
    config["service"] = {
        "pipelines": pipelines,
        "admin": {"endpoint": f"127.0.0.1:{ports['admin']}", **(admin or {})},
        **service,
    }
    return config


def config_for(
    ports: dict[str, int],
    exporters: dict[str, Any],
    pipelines: dict[str, Any] | None = None,
    grpc_options: dict[str, Any] | None | bool = None,
    http_options: dict[str, Any] | None | bool = None,
    service: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config the `gateway` fixture builds from its keyword arguments: `gateway_config`
    with a 10 s shutdown timeout, protocol options for the `otlp` receiver (None: defaults,
    False: left out) and further service settings in `service`."""
    receiver = otlp_receiver(
        ports,
        grpc=True if grpc_options is None else grpc_options,
        http=True if http_options is None else http_options,
    )
    return gateway_config(
        ports,
        exporters,
        pipelines=pipelines,
        receivers={"otlp": receiver},
        **{"shutdown_timeout": "10s", **(service or {})},
    )


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
