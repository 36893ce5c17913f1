//! `sluice plugin new` and `sluice plugin test`: the plugin author's tools.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{OnError, ProcessorSpec};
use crate::model::{Batch, Payload, Signal};
use crate::telemetry::metrics::SelfMetrics;

use super::project::Lang;
use super::{Outcome, PluginEngine, Processor};

/// Finds the SDK: `--sdk`, else a `sdk/` beside an ancestor of the current directory or of the
/// `sluice` executable (a checkout of this repository).
pub fn find_sdk(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.join("Cargo.toml").exists() {
            std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))
        } else {
            Err(format!(
                "{} has no Cargo.toml: pass the sdk/ directory of a Sluice checkout",
                p.display()
            ))
        };
    }
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    for start in starts {
        for dir in start.ancestors() {
            let manifest = dir.join("sdk/Cargo.toml");
            if std::fs::read_to_string(&manifest).is_ok_and(|t| t.contains("name = \"sluice-sdk\""))
            {
                return std::fs::canonicalize(dir.join("sdk")).map_err(|e| e.to_string());
            }
        }
    }
    Err(
        "cannot find the Sluice SDK: run from a Sluice checkout or pass --sdk PATH/TO/sluice/sdk"
            .into(),
    )
}

/// Creates a plugin project `name` in `parent`, in `lang`, with a test that passes and a
/// `batch.json` to try it on. Rust and JavaScript projects depend on the SDK by its path; a
/// Python project needs none (the SDK is a package to `pip install`).
pub fn scaffold(
    name: &str,
    lang: Lang,
    parent: &Path,
    sdk: Result<PathBuf, String>,
) -> Result<PathBuf, String> {
    match lang {
        Lang::Rust => scaffold_rust(name, parent, &sdk?),
        Lang::Python => scaffold_python(name, parent, sdk.ok().as_deref()),
        Lang::Js => scaffold_js(name, parent, &sdk?),
    }
}

/// The project directory for `name` in `parent`, if the name is usable and the directory new.
fn new_project_dir(name: &str, parent: &Path) -> Result<PathBuf, String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphabetic());
    if !valid {
        return Err(format!(
            "`{name}` is not a valid plugin name: use letters, digits, - and _, starting with a letter"
        ));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    Ok(dir)
}

fn write_files(dir: &Path, files: &[(&str, &str)]) -> Result<(), String> {
    for (path, text) in files {
        let path = dir.join(path);
        path.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::write(&path, text))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The batch every scaffold's tests and `sluice plugin test` try.
const SCAFFOLD_BATCH: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"demo"}}]},"scopeSpans":[{"spans":[
 {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /health","kind":2},
 {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","name":"GET /orders","kind":2}]}]}]}
"#;

fn scaffold_python(name: &str, parent: &Path, sdk: Option<&Path>) -> Result<PathBuf, String> {
    let dir = new_project_dir(name, parent)?;
    let module = name.replace('-', "_");
    let class = type_name(name);
    let sdk_python = sdk.map_or("PATH/TO/sluice/sdk/python".to_string(), |s| {
        s.join("python").display().to_string().replace('\\', "/")
    });
    let pyproject = format!(
        r#"[project]
name = "{name}"
version = "0.1.0"
description = "A Sluice plugin."
requires-python = ">=3.11"
# The SDK is sdk/python in a Sluice checkout: pip install {sdk_python}
dependencies = ["sluice-plugin"]

[tool.sluice]
module = "{module}"
"#
    );
    let code = format!(
        r#""""{name}: a Sluice plugin.

Test:  sluice plugin test          (runs these tests, builds the component, runs it on batch.json)
Build: sluice plugin build         (prints the path of the .wasm)
"""

from sluice_plugin import ConfigError, Plugin, Signal, keep_spans


class {class}(Plugin):
    """Drops spans whose name starts with a configured prefix."""

    name = "{name}"
    version = "0.1.0"
    signals = [Signal.TRACES]

    def __init__(self, config):
        unknown = sorted(set(config) - {{"drop_prefix"}})
        if unknown:
            raise ConfigError(f"unknown config key `{{unknown[0]}}` (known: drop_prefix)")
        self.drop_prefix = config.get("drop_prefix", "GET /health")

    def traces(self, batch):
        return keep_spans(batch, lambda resource, scope, span: not span.name.startswith(self.drop_prefix))
"#
    );
    let test = format!(
        r#"import pytest

from sluice_plugin import ConfigError, Verdict, testing
from {module} import {class}


def test_drops_spans_with_the_prefix():
    plugin = {class}({{}})
    assert plugin.traces(testing.traces(["GET /health", "GET /orders"])) == Verdict.keep([1])


def test_unknown_config_keys_are_refused():
    with pytest.raises(ConfigError):
        {class}({{"drop": "x"}})
"#
    );
    write_files(
        &dir,
        &[
            ("pyproject.toml", &pyproject),
            (&format!("{module}.py"), &code),
            (&format!("test_{module}.py"), &test),
            ("batch.json", SCAFFOLD_BATCH),
            (".gitignore", "dist/\n__pycache__/\n"),
        ],
    )?;
    Ok(dir)
}

fn scaffold_js(name: &str, parent: &Path, sdk: &Path) -> Result<PathBuf, String> {
    let dir = new_project_dir(name, parent)?;
    let class = type_name(name);
    let sdk_js = sdk.join("js").display().to_string().replace('\\', "/");
    let package = format!(
        r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "description": "A Sluice plugin.",
  "sluice": {{ "entry": "src/plugin.js" }},
  "scripts": {{
    "build": "sluice-plugin-build",
    "test": "node --test"
  }},
  "dependencies": {{
    "@sluice/plugin": "file:{sdk_js}"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "0.23.0",
    "@bytecodealliance/preview2-shim": "0.25.0"
  }}
}}
"#
    );
    let code = format!(
        r#"// {name}: a Sluice plugin.
//
// Test:  sluice plugin test     (runs these tests, builds the component, runs it on batch.json)
// Build: sluice plugin build    (prints the path of the .wasm)

import {{ ConfigError, Plugin, keepSpans }} from '@sluice/plugin';

/** Drops spans whose name starts with a configured prefix. */
export default class {class} extends Plugin {{
  static info = {{ name: '{name}', version: '0.1.0', signals: ['traces'], stateful: false }};

  constructor(config) {{
    super(config);
    const unknown = Object.keys(config).filter((k) => k !== 'dropPrefix');
    if (unknown.length > 0) {{
      throw new ConfigError(`unknown config key \`${{unknown[0]}}\` (known: dropPrefix)`);
    }}
    this.dropPrefix = config.dropPrefix ?? 'GET /health';
  }}

  traces(batch) {{
    return keepSpans(batch, (resource, scope, span) => !span.name.startsWith(this.dropPrefix));
  }}
}}
"#
    );
    let test = format!(
        r#"import {{ test }} from 'node:test';
import assert from 'node:assert/strict';

import {{ ConfigError, Verdict }} from '@sluice/plugin';
import {{ traces }} from '@sluice/plugin/testing';
import {class} from '../src/plugin.js';

test('drops spans with the prefix', () => {{
  const plugin = new {class}({{}});
  assert.deepEqual(plugin.traces(traces(['GET /health', 'GET /orders'])), Verdict.keep([1]));
}});

test('unknown config keys are refused', () => {{
  assert.throws(() => new {class}({{ drop: 'x' }}), ConfigError);
}});
"#
    );
    write_files(
        &dir,
        &[
            ("package.json", &package),
            ("src/plugin.js", &code),
            ("test/plugin.test.js", &test),
            ("batch.json", SCAFFOLD_BATCH),
            (".gitignore", "dist/\nnode_modules/\n"),
        ],
    )?;
    Ok(dir)
}

/// `my-plugin` as a type name: `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn scaffold_rust(name: &str, parent: &Path, sdk: &Path) -> Result<PathBuf, String> {
    let dir = new_project_dir(name, parent)?;
    let type_name = type_name(name);
    let sdk_path = sdk.display().to_string().replace('\\', "/");
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
serde = {{ version = "1", features = ["derive"] }}
sluice-sdk = {{ path = "{sdk_path}" }}

[profile.release]
opt-level = "s"
strip = "debuginfo"
lto = true
codegen-units = 1

# A plugin is its own workspace.
[workspace]
"#
    );
    let lib = format!(
        r##"//! {name}: a Sluice plugin.
//!
//! Build: `cargo build --release --target wasm32-wasip2`
//! Try:   `sluice plugin test target/wasm32-wasip2/release/{crate_file}.wasm --input batch.json`

use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::{{Error, Info, Plugin, Signal, Verdict, keep_spans}};

/// Drops spans whose name starts with a configured prefix.
#[derive(Debug)]
pub struct {type_name} {{
    drop_prefix: String,
}}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {{
    /// Spans whose name starts with this are dropped.
    drop_prefix: Option<String>,
}}

impl Plugin for {type_name} {{
    fn describe() -> Info {{
        Info::new("{name}", env!("CARGO_PKG_VERSION"), &[Signal::Traces])
    }}

    fn new(config: &str) -> Result<Self, Error> {{
        let config: Config = sluice_sdk::parse_config(config)?;
        Ok({type_name} {{
            drop_prefix: config.drop_prefix.unwrap_or_else(|| "GET /health".into()),
        }})
    }}

    fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {{
        Ok(keep_spans(batch, |_resource, _scope, span| {{
            !span.name.starts_with(&self.drop_prefix)
        }}))
    }}
}}

sluice_sdk::export_plugin!({type_name});

#[cfg(test)]
mod tests {{
    use super::*;
    use sluice_sdk::testing;

    #[test]
    fn drops_spans_with_the_prefix() {{
        let mut plugin = {type_name}::new("{{}}").expect("default config is valid");
        let mut batch = testing::traces(&["GET /health", "GET /orders"]);
        assert_eq!(plugin.traces(&mut batch), Ok(Verdict::Keep(vec![1])));
    }}

    #[test]
    fn unknown_config_keys_are_refused() {{
        assert!(matches!({type_name}::new(r#"{{"drop": "x"}}"#), Err(Error::Config(_))));
    }}
}}
"##,
        crate_file = name.replace('-', "_"),
    );
    write_files(
        &dir,
        &[
            ("Cargo.toml", &cargo),
            ("src/lib.rs", &lib),
            ("batch.json", SCAFFOLD_BATCH),
            (".gitignore", "target/\n"),
        ],
    )?;
    Ok(dir)
}

/// A processor spec for trying one plugin file: no cache, no batch cap, failures rejected;
/// `timeout` `None` takes the default of the plugin's language.
fn tool_spec(
    plugin: &Path,
    config_json: &str,
    memory_mb: usize,
    timeout: Option<Duration>,
) -> ProcessorSpec {
    ProcessorSpec {
        name: "test".into(),
        path: plugin.to_path_buf(),
        builtin: None,
        embedded: None,
        config_json: config_json.to_string(),
        display_config: serde_json::Value::Null,
        memory_mb,
        timeout: timeout.unwrap_or(Duration::from_millis(crate::config::DEFAULT_TIMEOUT_MS)),
        timeout_is_default: timeout.is_none(),
        max_batch_bytes: usize::MAX,
        on_error: OnError::Reject,
    }
}

/// Loads a component under the gateway's engine and default limits (64 MiB, the deadline of
/// its language) and `init`s it with `config_json`; returns what it says of itself: `name
/// version (signals)`, and the memory it took.
pub fn check_component(plugin: &Path, config_json: &str) -> Result<String, String> {
    let engine = PluginEngine::new(None).map_err(|e| format!("{e:#}"))?;
    let spec = tool_spec(plugin, config_json, 64, None);
    let processor =
        Processor::load(spec, engine, Arc::new(SelfMetrics::new())).map_err(|e| e.to_string())?;
    let status = processor.status();
    let signals: Vec<String> = processor.signals().iter().map(|s| s.to_string()).collect();
    Ok(format!(
        "{} {} ({}), {:.1} MiB after init",
        status.plugin,
        status.version,
        signals.join(", "),
        processor.peak_memory() as f64 / (1 << 20) as f64
    ))
}

/// What `sluice plugin test` found.
#[derive(Debug)]
pub struct TestReport {
    /// The batch after the plugin, as OTLP/JSON; `None` if the plugin dropped all of it.
    pub output: Option<Payload>,
    pub emitted: Vec<(Signal, Payload)>,
    pub elapsed: Duration,
    pub peak_memory: usize,
    pub error: Option<String>,
}

/// Which signal an OTLP/JSON document carries.
pub fn signal_of_json(text: &str) -> Option<Signal> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let o = v.as_object()?;
    if o.contains_key("resourceSpans") {
        Some(Signal::Traces)
    } else if o.contains_key("resourceMetrics") {
        Some(Signal::Metrics)
    } else if o.contains_key("resourceLogs") {
        Some(Signal::Logs)
    } else {
        None
    }
}

/// Runs a plugin over one OTLP/JSON batch under the gateway's own engine and limits.
pub fn run_test(
    plugin: &Path,
    input: &str,
    config_json: &str,
    memory_mb: usize,
    timeout: Option<Duration>,
) -> Result<TestReport, String> {
    let signal = signal_of_json(input).ok_or(
        "the input is not an OTLP/JSON batch (no resourceSpans, resourceMetrics or resourceLogs)",
    )?;
    let payload = Payload::decode_json(signal, input.as_bytes()).map_err(|e| e.to_string())?;
    let engine = PluginEngine::new(None).map_err(|e| format!("{e:#}"))?;
    let spec = tool_spec(plugin, config_json, memory_mb, timeout);
    let processor =
        Processor::load(spec, engine, Arc::new(SelfMetrics::new())).map_err(|e| e.to_string())?;
    if !processor.signals().contains(&signal) {
        return Err(format!(
            "the plugin does not take {signal} (it declares {:?})",
            processor.signals()
        ));
    }
    let batch = Arc::new(Batch::new(payload, None, "plugin-test".into()));
    let started = Instant::now();
    let (outcome, emitted) = processor.process(batch);
    let elapsed = started.elapsed();
    let emitted = emitted
        .into_iter()
        .filter_map(|(s, bytes)| Payload::decode_protobuf(s, &bytes).ok().map(|p| (s, p)))
        .collect();
    let (output, error) = match outcome {
        Outcome::Forward(b) => (Some(b.payload().clone()), None),
        Outcome::Drop { .. } => (None, None),
        Outcome::Reject { message } => (None, Some(message)),
    };
    Ok(TestReport {
        output,
        emitted,
        elapsed,
        peak_memory: processor.peak_memory(),
        error,
    })
}

/// `sluice plugin test`: prints the result, the time and the peak memory; returns whether the
/// output matched `expect` (always true without one) and the plugin did not fail.
pub fn test_command(
    plugin: &Path,
    input: &Path,
    config: Option<&Path>,
    expect: Option<&Path>,
    memory_mb: usize,
    timeout: Option<Duration>,
) -> Result<bool, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let input_text = read(input)?;
    let config_json = match config {
        None => "{}".to_string(),
        Some(p) => {
            let text = read(p)?;
            let value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::to_string(&value).map_err(|e| format!("{}: {e}", p.display()))?
        }
    };
    let report = run_test(plugin, &input_text, &config_json, memory_mb, timeout)?;
    let rendered = match &report.output {
        Some(p) => pretty(p)?,
        None => "(the plugin dropped the whole batch)".to_string(),
    };
    if let Some(e) = &report.error {
        eprintln!("plugin failed: {e}");
    } else {
        println!("{rendered}");
    }
    for (signal, p) in &report.emitted {
        eprintln!("emitted {signal}: {}", p.to_json().unwrap_or_default());
    }
    eprintln!(
        "time: {:.3} ms, peak memory: {:.1} MiB, records in: {}, out: {}",
        report.elapsed.as_secs_f64() * 1e3,
        report.peak_memory as f64 / (1 << 20) as f64,
        Payload::decode_json(
            signal_of_json(&input_text).unwrap_or(Signal::Traces),
            input_text.as_bytes()
        )
        .map(|p| p.record_count())
        .unwrap_or(0),
        report.output.as_ref().map_or(0, Payload::record_count),
    );
    if report.error.is_some() {
        return Ok(false);
    }
    let Some(expect) = expect else {
        return Ok(true);
    };
    let expected_text = read(expect)?;
    let expected = match signal_of_json(&expected_text) {
        Some(s) => Some(
            Payload::decode_json(s, expected_text.as_bytes())
                .map_err(|e| format!("{}: {e}", expect.display()))?,
        ),
        None if expected_text.trim().is_empty() || expected_text.trim() == "{}" => None,
        None => return Err(format!("{} is not an OTLP/JSON batch", expect.display())),
    };
    if expected == report.output {
        eprintln!("output matches {}", expect.display());
        Ok(true)
    } else {
        eprintln!("output differs from {}; expected:", expect.display());
        eprintln!(
            "{}",
            expected
                .as_ref()
                .map(pretty)
                .transpose()?
                .unwrap_or_else(|| "(nothing)".into())
        );
        Ok(false)
    }
}

fn pretty(p: &Payload) -> Result<String, String> {
    let json = p.to_json().map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
}

/// Loads and instantiates every plugin a config uses (for `sluice validate`); returns the
/// problems found.
pub fn load_all(config: &crate::config::Config) -> Vec<String> {
    let used: Vec<&ProcessorSpec> = config
        .processors
        .iter()
        .filter(|p| {
            config
                .pipelines
                .iter()
                .any(|pl| pl.processors.contains(&p.name))
        })
        .collect();
    if used.is_empty() {
        return Vec::new();
    }
    let engine = match PluginEngine::new(config.plugin_cache_dir.clone()) {
        Ok(e) => e,
        Err(e) => return vec![format!("cannot start the plugin engine: {e:#}")],
    };
    let metrics = Arc::new(SelfMetrics::new());
    used.into_iter()
        .filter_map(|spec| {
            Processor::load(spec.clone(), engine.clone(), metrics.clone())
                .err()
                .map(|e| format!("processors.{}: {e}", spec.name))
        })
        .collect()
}
