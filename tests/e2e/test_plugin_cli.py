"""The plugin author's workflow: `sluice plugin new` scaffolds a crate that passes its own
tests and builds to a component; `sluice plugin test` runs it under the gateway's engine and
compares with an expected batch; `sluice validate` loads and instantiates the plugins a config
uses."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from support.config import pipeline
from support.process import REPO as REPO_ROOT, SLUICE_BIN

# The scaffold's dependencies are the workspace's: building into the workspace's target
# directory reuses what the suite already compiled.
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
CARGO_ENV = {**os.environ, "CARGO_TARGET_DIR": str(TARGET)}
WASM_DIR = TARGET / "wasm32-wasip2" / "release"


def sluice(*args, cwd=None, timeout=120):
    return subprocess.run(
        [str(SLUICE_BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    parent = tmp_path_factory.mktemp("plugins")
    r = sluice("plugin", "new", "edge-filter", "--sdk", str(REPO_ROOT / "sdk"), "--dir", str(parent))
    assert r.returncode == 0, r.stderr
    crate = parent / "edge-filter"
    test = subprocess.run(
        ["cargo", "test", "--quiet"], cwd=crate, env=CARGO_ENV, capture_output=True, text=True, timeout=600
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "2 passed" in test.stdout, test.stdout
    build = subprocess.run(
        ["cargo", "build", "--release", "--target", "wasm32-wasip2", "--quiet"],
        cwd=crate,
        env=CARGO_ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    wasm = WASM_DIR / "edge_filter.wasm"
    assert wasm.exists()
    return crate, wasm


def test_new_refuses_an_existing_directory_and_bad_names(tmp_path):
    (tmp_path / "taken").mkdir()
    r = sluice("plugin", "new", "taken", "--sdk", str(REPO_ROOT / "sdk"), "--dir", str(tmp_path))
    assert r.returncode != 0 and "already exists" in r.stderr
    r = sluice("plugin", "new", "9bad name", "--sdk", str(REPO_ROOT / "sdk"), "--dir", str(tmp_path))
    assert r.returncode != 0 and "not a valid plugin name" in r.stderr
    r = sluice("plugin", "new", "x", "--sdk", str(tmp_path), "--dir", str(tmp_path))
    assert r.returncode != 0 and "no Cargo.toml" in r.stderr


def test_new_finds_the_sdk_from_a_checkout(tmp_path):
    # Run from inside the repository: the SDK is found without --sdk.
    r = sluice("plugin", "new", "auto-found", "--dir", str(tmp_path), cwd=REPO_ROOT)
    assert r.returncode == 0, r.stderr
    manifest = (tmp_path / "auto-found" / "Cargo.toml").read_text()
    assert str((REPO_ROOT / "sdk").resolve()) in manifest


def test_plugin_test_prints_the_result_and_compares(scaffolded, tmp_path):
    crate, wasm = scaffolded
    r = sluice("plugin", "test", str(wasm), "--input", str(crate / "batch.json"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    names = [s["name"] for rs in out["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert names == ["GET /orders"]
    assert "time:" in r.stderr and "peak memory:" in r.stderr and "records in: 2, out: 1" in r.stderr

    expected = tmp_path / "expected.json"
    expected.write_text(r.stdout)
    r = sluice("plugin", "test", str(wasm), "--input", str(crate / "batch.json"), "--expect", str(expected))
    assert r.returncode == 0, r.stderr
    assert "output matches" in r.stderr

    # A config that keeps everything: the output no longer matches.
    config = tmp_path / "config.yaml"
    config.write_text("drop_prefix: NOTHING\n")
    r = sluice(
        "plugin", "test", str(wasm), "--input", str(crate / "batch.json"),
        "--config", str(config), "--expect", str(expected),
    )
    assert r.returncode == 1, r.stderr
    assert "output differs" in r.stderr

    # A config the plugin refuses: a clear error naming the problem.
    config.write_text("dorp_prefix: x\n")
    r = sluice("plugin", "test", str(wasm), "--input", str(crate / "batch.json"), "--config", str(config))
    assert r.returncode == 2
    assert "init failed" in r.stderr and "dorp_prefix" in r.stderr


def test_validate_loads_and_instantiates_plugins(scaffolded, tmp_path):
    _, wasm = scaffolded

    def config(plugin_config: dict, path: str) -> Path:
        f = tmp_path / "gateway.yaml"
        f.write_text(json.dumps({
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:4318"}}}},
            "processors": {"edge": {"plugin": path, "config": plugin_config}},
            "exporters": {"debug": {}},
            "service": {
                "pipelines": {"traces": pipeline(["debug"], processors=["edge"])},
                "plugins": {"cache_dir": ""},
            },
        }))
        return f

    r = sluice("validate", "--config", str(config({"drop_prefix": "x"}, str(wasm))))
    assert r.returncode == 0, r.stderr
    r = sluice("validate", "--config", str(config({"unknown": 1}, str(wasm))))
    assert r.returncode == 64
    assert "processors.edge" in r.stderr and "init failed" in r.stderr and "unknown" in r.stderr
    r = sluice("validate", "--config", str(config({}, str(tmp_path / "missing.wasm"))))
    assert r.returncode == 64
    assert "missing.wasm" in r.stderr
    garbage = tmp_path / "garbage.wasm"
    garbage.write_bytes(b"\x00asm not really")
    r = sluice("validate", "--config", str(config({}, str(garbage))))
    assert r.returncode == 64
    assert "not a valid sluice:plugin component" in r.stderr
