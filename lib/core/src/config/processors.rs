//! `processors`: Wasm plugins, each with its own settings (JSON for its `init`), limits and
//! `on_error` policy.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::errors::{ConfigError, err, mapping_entries, suggestion, typed};
use super::secrets::{expand_env, mask_secrets};

/// The plugins that ship with Sluice, usable as `plugin: builtin/NAME`.
pub const BUILTIN_PLUGINS: &[&str] = &[
    "redact",
    "sample",
    "enrich",
    "slo",
    "limit_cardinality",
    "spanmetrics",
    "servicegraph",
];

/// What happens to a batch a plugin fails on (trap, timeout, memory, plugin error).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Forward the batch unchanged.
    #[default]
    Pass,
    /// Drop the batch (counted).
    Drop,
    /// Answer the client with a retryable error; nothing is forwarded.
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    #[serde(default = "default_memory_mb")]
    pub memory_mb: usize,
    /// Unset: [`DEFAULT_TIMEOUT_MS`], or the default for the plugin's language, found when it
    /// is loaded (Python and JavaScript plugins run an interpreter).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Larger batches are not given to the plugin; `on_error` applies.
    #[serde(default = "default_max_batch_mb")]
    pub max_batch_mb: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_mb: default_memory_mb(),
            timeout_ms: None,
            max_batch_mb: default_max_batch_mb(),
        }
    }
}

fn default_memory_mb() -> usize {
    64
}

/// A plugin call's deadline when `limits.timeout_ms` is not set and the plugin's language
/// has no default of its own.
pub const DEFAULT_TIMEOUT_MS: u64 = 100;

fn default_max_batch_mb() -> usize {
    16
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Path to the plugin's `.wasm` component (relative to the config file's directory).
    pub plugin: String,
    /// The plugin's own settings, handed to its `init` as JSON.
    #[serde(default)]
    pub config: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub limits: PluginLimits,
    /// Default `pass`; `reject` for `builtin/redact`, which must never let through what it
    /// failed to scrub.
    pub on_error: Option<OnError>,
}

/// A validated processor.
#[derive(Debug, Clone)]
pub struct ProcessorSpec {
    pub name: String,
    /// The `.wasm` file: resolved against the config's directory, and for a built-in plugin
    /// (`builtin/NAME`) by the gateway's load step, which finds it on disk or embedded.
    pub path: std::path::PathBuf,
    /// `NAME` of `plugin: builtin/NAME`.
    pub builtin: Option<String>,
    /// The component itself, for a built-in plugin embedded in the binary (then `path` is
    /// `builtin/NAME`, not a file).
    pub embedded: Option<&'static [u8]>,
    pub config_json: String,
    /// The config as written (before `${env:…}` expansion), with secret-looking values masked:
    /// what the admin endpoint shows.
    pub display_config: serde_json::Value,
    pub memory_mb: usize,
    pub timeout: Duration,
    /// Whether `timeout` is the default rather than set in the config: then the gateway may
    /// raise it for the plugin's language when it loads the plugin.
    pub timeout_is_default: bool,
    pub max_batch_bytes: usize,
    pub on_error: OnError,
}

/// The `processors` section: every processor that parses, and the names of all.
pub(super) fn parse(
    section: Option<Value>,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> (Vec<ProcessorSpec>, Vec<String>) {
    let mut processors = Vec::new();
    let mut names = Vec::new();
    for (name, value) in mapping_entries(section, "processors", errors) {
        names.push(name.clone());
        let path = format!("processors.{name}");
        let Some(c) = typed::<ProcessorConfig>(value, &path, errors) else {
            continue;
        };
        if c.plugin.trim().is_empty() {
            err(
                errors,
                format!("{path}.plugin"),
                "the path of the plugin's .wasm file is empty",
            );
        }
        let builtin = c.plugin.strip_prefix("builtin/").map(str::to_string);
        if let Some(b) = &builtin
            && !BUILTIN_PLUGINS.contains(&b.as_str())
        {
            err(
                errors,
                format!("{path}.plugin"),
                format!(
                    "unknown built-in plugin `{b}`{}",
                    suggestion(b, BUILTIN_PLUGINS)
                ),
            );
            continue;
        }
        let plugin_path = match &builtin {
            None => base.join(&c.plugin),
            Some(_) => c.plugin.clone().into(),
        };
        let display_config = c
            .config
            .as_ref()
            .and_then(|v| serde_json::to_value(v).ok())
            .map_or(serde_json::Value::Null, mask_secrets);
        let config_value = match c.config.map(|v| expand_env(v, &format!("{path}.config"))) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                err(errors, format!("{path}.config"), e);
                continue;
            }
        };
        let config_json = match config_value.map(|v| serde_json::to_string(&v)) {
            None => "{}".to_string(),
            Some(Ok(json)) => json,
            Some(Err(e)) => {
                err(
                    errors,
                    format!("{path}.config"),
                    format!("cannot be expressed as JSON: {e}"),
                );
                continue;
            }
        };
        if c.limits.memory_mb == 0 || c.limits.timeout_ms == Some(0) || c.limits.max_batch_mb == 0 {
            err(
                errors,
                format!("{path}.limits"),
                "limits must be greater than zero",
            );
        }
        processors.push(ProcessorSpec {
            path: plugin_path,
            builtin,
            embedded: None,
            name,
            config_json,
            display_config,
            memory_mb: c.limits.memory_mb,
            timeout: Duration::from_millis(c.limits.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
            timeout_is_default: c.limits.timeout_ms.is_none(),
            max_batch_bytes: c.limits.max_batch_mb << 20,
            on_error: c.on_error.unwrap_or(if c.plugin == "builtin/redact" {
                OnError::Reject
            } else {
                OnError::Pass
            }),
        });
    }
    (processors, names)
}
