//! Configuration: the YAML file (or the embedded defaults) in, a validated [`Config`] out.
//!
//! Loading happens in one step from raw text to validated config, and it collects *every*
//! problem it finds, each with its path in the file (`service.pipelines.traces.exporters[1]`) and,
//! for a misspelled name or key, the nearest valid one. Nothing here does I/O beyond reading the
//! file; binding ports and connecting to backends happen when the gateway is built.

pub mod duration;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

pub use schema::*;

use crate::model::Signal;

/// The embedded defaults `sluice run` uses with no `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the file, e.g. `service.pipelines.traces.exporters[1]`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub source_name: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} error{} in config",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// The kinds of receiver this build knows.
pub const RECEIVER_KINDS: &[&str] = &["otlp", "prometheus_remote_write"];
/// The kinds of exporter this build knows.
pub const EXPORTER_KINDS: &[&str] = &[
    "otlp",
    "debug",
    "prometheus",
    "prometheus_remote_write",
    "blackhole",
    "memory",
];
const TOP_LEVEL_KEYS: &[&str] = &["receivers", "processors", "exporters", "service"];

#[derive(Debug, Clone)]
pub enum ReceiverKind {
    Otlp(Box<OtlpReceiverConfig>),
    /// Served on the OTLP/HTTP listener at `/api/v1/write`.
    RemoteWrite(RemoteWriteReceiverConfig),
}

impl ReceiverKind {
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ReceiverKind::Otlp(_) => &Signal::ALL,
            ReceiverKind::RemoteWrite(_) => &[Signal::Metrics],
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReceiverSpec {
    /// The instance name as written, e.g. `otlp` or `otlp/internal`.
    pub name: String,
    pub kind: ReceiverKind,
    /// The credentials of `auth.tenants`, read from their files or variables; empty when the
    /// receiver has no `auth`.
    pub auth_tokens: Vec<Credential>,
    /// `auth.api_key_header`.
    pub api_key_header: Option<String>,
    /// `auth.tenants[].limits`, for tenants that have any.
    pub tenant_limits: Vec<(String, TenantLimitsConfig)>,
}

/// One way a tenant can authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub kind: CredentialKind,
    /// The token, or `username:password` for basic authentication.
    pub secret: String,
    pub tenant: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Bearer,
    Basic,
}

#[derive(Debug, Clone)]
pub enum ExporterKind {
    Otlp(OtlpExporterConfig),
    Debug(DebugExporterConfig),
    Prometheus(PrometheusExporterConfig),
    RemoteWrite(RemoteWriteExporterConfig),
    /// Counts and discards (a downstream for benchmarks).
    Blackhole(BlackholeExporterConfig),
    /// Keeps traces and logs in memory for the admin UI and the Jaeger query API.
    Memory(MemoryExporterConfig),
}

impl ExporterKind {
    pub fn sending_queue(&self) -> &SendingQueueConfig {
        match self {
            ExporterKind::Otlp(c) => &c.sending_queue,
            ExporterKind::Debug(c) => &c.sending_queue,
            ExporterKind::Prometheus(c) => &c.sending_queue,
            ExporterKind::RemoteWrite(c) => &c.sending_queue,
            ExporterKind::Blackhole(c) => &c.sending_queue,
            ExporterKind::Memory(c) => &c.sending_queue,
        }
    }

    /// The signals the exporter can take.
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ExporterKind::Prometheus(_) | ExporterKind::RemoteWrite(_) => &[Signal::Metrics],
            ExporterKind::Memory(_) => &[Signal::Traces, Signal::Logs],
            _ => &Signal::ALL,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExporterSpec {
    pub name: String,
    pub kind: ExporterKind,
    /// Credentials of a `prometheus` exporter's scrape endpoint (`auth`).
    pub endpoint_auth: Vec<Credential>,
}

impl ExporterSpec {
    pub fn sending_queue(&self) -> &SendingQueueConfig {
        self.kind.sending_queue()
    }
}

#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// e.g. `traces` or `traces/audit`.
    pub name: String,
    pub signal: Signal,
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
    pub queue_size: usize,
}

/// A validated configuration: every reference resolves, every value is in range.
#[derive(Debug, Clone)]
pub struct Config {
    pub receivers: Vec<ReceiverSpec>,
    pub exporters: Vec<ExporterSpec>,
    pub processors: Vec<ProcessorSpec>,
    pub pipelines: Vec<PipelineSpec>,
    pub admin_endpoint: String,
    pub admin_tls: Option<TlsServerConfig>,
    /// Credentials of the admin endpoint (`service.admin.auth`); empty: open.
    pub admin_auth: Vec<Credential>,
    /// Where compiled plugins are cached, if anywhere.
    pub plugin_cache_dir: Option<std::path::PathBuf>,
    pub plugin_reload_interval: Duration,
    pub logs: LogsConfig,
    /// Where the gateway sends its own traces (OTLP/HTTP), if anywhere.
    pub traces_endpoint: Option<String>,
    pub shutdown_timeout: Duration,
    pub memory_limiter: Option<MemoryLimiterConfig>,
    /// Bytes of estimated decoded size that requests may hold at once, all receivers together.
    pub in_flight_decode_bytes: u64,
}

/// Values given on the command line or in `SLUICE_*` variables; they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub grpc_endpoint: Option<String>,
    pub http_endpoint: Option<String>,
    pub admin_endpoint: Option<String>,
    /// Overrides `service.admin.allow_unauthenticated`.
    pub admin_allow_unauthenticated: Option<bool>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn from_file(path: &Path, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            source_name: source_name.clone(),
            errors: vec![ConfigError {
                path: String::new(),
                message: format!("cannot read the config file: {e}"),
            }],
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse_with_base(&text, &source_name, &base, overrides)
    }

    /// The embedded defaults, with overrides applied.
    pub fn embedded(overrides: &Overrides) -> Result<Config, ConfigErrors> {
        Config::from_yaml(DEFAULT_CONFIG, "embedded defaults", overrides)
    }

    /// Parses config text; relative plugin paths are relative to the current directory.
    pub fn from_yaml(
        text: &str,
        source_name: &str,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        Config::parse_with_base(text, source_name, Path::new(""), overrides)
    }

    fn parse_with_base(
        text: &str,
        source_name: &str,
        base: &Path,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let config = parse(text, base, overrides, &mut errors);
        match config {
            Some(c) if errors.is_empty() => Ok(c),
            _ => Err(ConfigErrors {
                source_name: source_name.to_string(),
                errors,
            }),
        }
    }

    /// The OTLP receiver whose HTTP listener also serves remote write: `otlp` if it has HTTP,
    /// else the first OTLP receiver with HTTP.
    pub fn http_host_of(receivers: &[ReceiverSpec]) -> Option<&ReceiverSpec> {
        let has_http = |r: &&ReceiverSpec| matches!(&r.kind, ReceiverKind::Otlp(c) if c.protocols.http.is_some());
        receivers
            .iter()
            .filter(has_http)
            .find(|r| r.name == "otlp")
            .or_else(|| receivers.iter().find(has_http))
    }

    /// The processors at least one pipeline uses.
    pub fn used_processors(&self) -> impl Iterator<Item = &ProcessorSpec> {
        self.processors.iter().filter(|p| {
            self.pipelines
                .iter()
                .any(|pl| pl.processors.contains(&p.name))
        })
    }

    pub fn pipelines_of(&self, signal: Signal) -> impl Iterator<Item = &PipelineSpec> {
        self.pipelines.iter().filter(move |p| p.signal == signal)
    }
}

fn err(errors: &mut Vec<ConfigError>, path: impl Into<String>, message: impl Into<String>) {
    errors.push(ConfigError {
        path: path.into(),
        message: message.into(),
    });
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn suggestion(word: &str, candidates: &[&str]) -> String {
    match nearest(word, candidates.iter().copied()) {
        Some(n) => format!("; did you mean `{n}`?"),
        None if candidates.is_empty() => String::new(),
        None => format!(
            "; expected one of {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Deserializes one block, turning serde's error into a path and, for unknown keys and
/// variants, the nearest valid name.
fn typed<T: DeserializeOwned>(
    value: Value,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let value = if value.is_null() {
        Value::Mapping(Default::default())
    } else {
        value
    };
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = match (path.is_empty(), inner.as_str()) {
                (_, ".") => path.to_string(),
                (true, _) => inner,
                (false, _) => format!("{path}.{inner}"),
            };
            err(
                errors,
                full,
                explain_serde_error(&e.into_inner().to_string()),
            );
            None
        }
    }
}

/// serde says "unknown field `endpont`, expected one of `endpoint`, `protocol`"; we say which
/// one was probably meant.
fn explain_serde_error(message: &str) -> String {
    let unknown = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.strip_prefix(p));
    let Some(rest) = unknown else {
        return message.to_string();
    };
    let Some((word, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let candidates: Vec<&str> = expected
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    let what = if message.starts_with("unknown field") {
        "unknown key"
    } else {
        "unknown value"
    };
    format!("{what} `{word}`{}", suggestion(word, &candidates))
}

fn kind_of(name: &str) -> &str {
    name.split_once('/').map_or(name, |(k, _)| k)
}

fn mapping_entries(
    value: Option<Value>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, Value)> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Mapping(m)) => m
            .into_iter()
            .filter_map(|(k, v)| match k {
                Value::String(s) => Some((s, v)),
                other => {
                    err(
                        errors,
                        path,
                        format!("component names must be strings, found {other:?}"),
                    );
                    None
                }
            })
            .collect(),
        Some(_) => {
            err(
                errors,
                path,
                "expected a mapping of component names to settings",
            );
            Vec::new()
        }
    }
}

fn parse(
    text: &str,
    base: &Path,
    overrides: &Overrides,
    errors: &mut Vec<ConfigError>,
) -> Option<Config> {
    let root: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            err(errors, "", format!("invalid YAML: {e}"));
            return None;
        }
    };
    let mut top = match root {
        Value::Mapping(m) => m,
        Value::Null => Default::default(),
        _ => {
            err(errors, "", "the config must be a YAML mapping");
            return None;
        }
    };
    for key in top.keys() {
        let name = key.as_str().unwrap_or("?");
        if !TOP_LEVEL_KEYS.contains(&name) {
            err(
                errors,
                name,
                format!(
                    "unknown top-level key `{name}`{}",
                    suggestion(name, TOP_LEVEL_KEYS)
                ),
            );
        }
    }

    // Receivers.
    let mut receivers = Vec::new();
    // Names are kept even when their block has errors, so references to them are not reported
    // as unknown too.
    let mut receiver_keys = Vec::new();
    for (name, value) in mapping_entries(top.remove("receivers"), "receivers", errors) {
        receiver_keys.push(name.clone());
        let path = format!("receivers.{name}");
        match kind_of(&name) {
            "otlp" => {
                if let Some(mut c) = typed::<OtlpReceiverConfig>(value, &path, errors) {
                    if c.protocols.grpc.is_none() && c.protocols.http.is_none() {
                        err(
                            errors,
                            format!("{path}.protocols"),
                            "enable at least one of `grpc` and `http`",
                        );
                    }
                    if name == "otlp" {
                        apply_receiver_overrides(&mut c, overrides);
                    }
                    let tls = [
                        (
                            "grpc",
                            c.protocols.grpc.as_ref().and_then(|g| g.tls.as_ref()),
                        ),
                        (
                            "http",
                            c.protocols.http.as_ref().and_then(|h| h.tls.as_ref()),
                        ),
                    ];
                    for (protocol, tls) in tls {
                        if let Some(t) = tls
                            && let Err(e) = crate::tls::server_config(t)
                        {
                            err(
                                errors,
                                format!("{path}.protocols.{protocol}.tls"),
                                e.to_string(),
                            );
                        }
                    }
                    let auth_tokens = c
                        .auth
                        .as_ref()
                        .map(|a| auth_tokens(a, &format!("{path}.auth"), errors))
                        .unwrap_or_default();
                    for (key, v) in [
                        (
                            "max_attributes_per_record",
                            c.attribute_limits.max_attributes_per_record,
                        ),
                        ("max_value_bytes", c.attribute_limits.max_value_bytes),
                    ] {
                        if v == 0 {
                            err(
                                errors,
                                format!("{path}.attribute_limits.{key}"),
                                "must be at least 1",
                            );
                        }
                    }
                    let api_key_header = c.auth.as_ref().and_then(|a| a.api_key_header.clone());
                    if let Some(h) = &api_key_header
                        && http::HeaderName::from_bytes(h.as_bytes()).is_err()
                    {
                        err(
                            errors,
                            format!("{path}.auth.api_key_header"),
                            format!("`{h}` is not a valid header name"),
                        );
                    }
                    let tenant_limits = c
                        .auth
                        .iter()
                        .flat_map(|a| a.tenants.iter())
                        .filter(|t| t.limits != TenantLimitsConfig::default())
                        .map(|t| (t.tenant.clone(), t.limits.clone()))
                        .collect();
                    receivers.push(ReceiverSpec {
                        name,
                        kind: ReceiverKind::Otlp(Box::new(c)),
                        auth_tokens,
                        api_key_header,
                        tenant_limits,
                    });
                }
            }
            "prometheus_remote_write" => {
                if let Some(c) = typed::<RemoteWriteReceiverConfig>(value, &path, errors) {
                    receivers.push(ReceiverSpec {
                        name,
                        auth_tokens: Vec::new(),
                        api_key_header: None,
                        tenant_limits: Vec::new(),
                        kind: ReceiverKind::RemoteWrite(c),
                    });
                }
            }
            kind => err(
                errors,
                path,
                format!(
                    "unknown receiver type `{kind}`{}",
                    suggestion(kind, RECEIVER_KINDS)
                ),
            ),
        }
    }

    // Processors: Wasm plugins.
    let mut processors = Vec::new();
    let mut processor_keys = Vec::new();
    for (name, value) in mapping_entries(top.remove("processors"), "processors", errors) {
        processor_keys.push(name.clone());
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
        let plugin_path = match c.plugin.strip_prefix("builtin/") {
            None => base.join(&c.plugin),
            Some(builtin) => match builtin_plugin(builtin) {
                Ok(p) => p,
                Err(message) => {
                    err(errors, format!("{path}.plugin"), message);
                    continue;
                }
            },
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
        if c.limits.memory_mb == 0 || c.limits.timeout_ms == 0 || c.limits.max_batch_mb == 0 {
            err(
                errors,
                format!("{path}.limits"),
                "limits must be greater than zero",
            );
        }
        processors.push(ProcessorSpec {
            path: plugin_path,
            name,
            config_json,
            display_config,
            memory_mb: c.limits.memory_mb,
            timeout: Duration::from_millis(c.limits.timeout_ms),
            max_batch_bytes: c.limits.max_batch_mb << 20,
            on_error: c.on_error.unwrap_or(if c.plugin == "builtin/redact" {
                OnError::Reject
            } else {
                OnError::Pass
            }),
        });
    }

    // Exporters.
    let mut exporters = Vec::new();
    let mut exporter_keys = Vec::new();
    for (name, value) in mapping_entries(top.remove("exporters"), "exporters", errors) {
        exporter_keys.push(name.clone());
        let path = format!("exporters.{name}");
        let kind = match kind_of(&name) {
            "otlp" => typed::<OtlpExporterConfig>(value, &path, errors).map(|c| {
                check_otlp_exporter(&c, &path, errors);
                ExporterKind::Otlp(c)
            }),
            "debug" => typed::<DebugExporterConfig>(value, &path, errors).map(ExporterKind::Debug),
            "blackhole" => {
                typed::<BlackholeExporterConfig>(value, &path, errors).map(ExporterKind::Blackhole)
            }
            "memory" => typed::<MemoryExporterConfig>(value, &path, errors).map(|c| {
                if c.max_spans == 0 && c.max_logs == 0 {
                    err(
                        errors,
                        &path,
                        "max_spans and max_logs are both 0: the store would keep nothing",
                    );
                }
                if exporter_keys.iter().filter(|k| kind_of(k) == "memory").count() > 1 {
                    err(
                        errors,
                        &path,
                        "only one `memory` exporter per gateway: the admin UI and the Jaeger query API read from it",
                    );
                }
                ExporterKind::Memory(c)
            }),
            "prometheus" => typed::<PrometheusExporterConfig>(value, &path, errors).map(|c| {
                check_endpoint(&c.endpoint, &format!("{path}.endpoint"), errors);
                ExporterKind::Prometheus(c)
            }),
            "prometheus_remote_write" => typed::<RemoteWriteExporterConfig>(value, &path, errors)
                .map(|c| {
                    check_url(&c.endpoint, &format!("{path}.endpoint"), errors);
                    if c.basic_auth.is_some()
                        && (c.bearer_token.is_some() || c.bearer_token_file.is_some())
                    {
                        err(
                            errors,
                            &path,
                            "set either `basic_auth` or a bearer token, not both",
                        );
                    }
                    if c.shards == 0 {
                        err(errors, format!("{path}.shards"), "must be at least 1");
                    }
                    ExporterKind::RemoteWrite(c)
                }),
            kind => {
                err(
                    errors,
                    &path,
                    format!(
                        "unknown exporter type `{kind}`{}",
                        suggestion(kind, EXPORTER_KINDS)
                    ),
                );
                None
            }
        };
        if let Some(kind) = kind {
            if kind.sending_queue().queue_size == 0 {
                err(
                    errors,
                    format!("{path}.sending_queue.queue_size"),
                    "must be at least 1",
                );
            }
            if kind.sending_queue().num_consumers == 0 {
                err(
                    errors,
                    format!("{path}.sending_queue.num_consumers"),
                    "must be at least 1",
                );
            }
            let q = kind.sending_queue();
            if q.storage.is_some() {
                if q.max_size_mib == 0 {
                    err(
                        errors,
                        format!("{path}.sending_queue.max_size_mib"),
                        "must be at least 1",
                    );
                }
                if q.segment_size_kib < 4 {
                    err(
                        errors,
                        format!("{path}.sending_queue.segment_size_kib"),
                        "must be at least 4",
                    );
                }
                if q.fsync == FsyncPolicy::Interval && q.fsync_interval.is_zero() {
                    err(
                        errors,
                        format!("{path}.sending_queue.fsync_interval"),
                        "must be more than 0s with fsync: interval (use fsync: always to flush every batch)",
                    );
                }
                if matches!(kind, ExporterKind::Memory(_) | ExporterKind::Prometheus(_)) {
                    err(
                        errors,
                        format!("{path}.sending_queue.storage"),
                        "this exporter keeps its data in memory; a disk queue applies to otlp, prometheus_remote_write, debug and blackhole exporters",
                    );
                }
            }
            let endpoint_auth = match &kind {
                ExporterKind::Prometheus(c) => {
                    if let Some(t) = &c.tls
                        && let Err(e) = crate::tls::server_config(t)
                    {
                        err(errors, format!("{path}.tls"), e.to_string());
                    }
                    c.auth
                        .as_ref()
                        .map(|a| endpoint_credentials(a, &format!("{path}.auth"), errors))
                        .unwrap_or_default()
                }
                _ => Vec::new(),
            };
            exporters.push(ExporterSpec {
                name,
                kind,
                endpoint_auth,
            });
        }
    }

    // Service, key by key, so that one bad key does not hide the problems of the others.
    let service = parse_service(top.remove("service"), errors);

    let receiver_names: Vec<&str> = receiver_keys.iter().map(String::as_str).collect();
    let exporter_names: Vec<&str> = exporter_keys.iter().map(String::as_str).collect();
    let mut pipelines = Vec::new();
    if service.pipelines.is_empty() {
        err(
            errors,
            "service.pipelines",
            "define at least one pipeline (`traces`, `metrics` or `logs`)",
        );
    }
    for (name, p) in &service.pipelines {
        let path = format!("service.pipelines.{name}");
        let signal_name = kind_of(name);
        let Some(signal) = Signal::parse(signal_name) else {
            err(
                errors,
                &path,
                format!(
                    "unknown pipeline signal `{signal_name}`{}",
                    suggestion(signal_name, &["traces", "metrics", "logs"])
                ),
            );
            continue;
        };
        check_refs(
            &p.receivers,
            &receiver_names,
            "receiver",
            &format!("{path}.receivers"),
            errors,
        );
        check_refs(
            &p.exporters,
            &exporter_names,
            "exporter",
            &format!("{path}.exporters"),
            errors,
        );
        for (i, receiver) in p.receivers.iter().enumerate() {
            if let Some(r) = receivers.iter().find(|r| &r.name == receiver)
                && !r.kind.signals().contains(&signal)
            {
                err(
                    errors,
                    format!("{path}.receivers[{i}]"),
                    format!("receiver `{receiver}` does not produce {signal}"),
                );
            }
        }
        for (i, exporter) in p.exporters.iter().enumerate() {
            if let Some(e) = exporters.iter().find(|e| &e.name == exporter)
                && !e.kind.signals().contains(&signal)
            {
                err(
                    errors,
                    format!("{path}.exporters[{i}]"),
                    format!("exporter `{exporter}` does not take {signal}"),
                );
            }
        }
        let processor_names: Vec<&str> = processor_keys.iter().map(String::as_str).collect();
        if !p.processors.is_empty() {
            check_refs(
                &p.processors,
                &processor_names,
                "processor",
                &format!("{path}.processors"),
                errors,
            );
        }
        if p.queue_size == 0 {
            err(errors, format!("{path}.queue_size"), "must be at least 1");
        }
        pipelines.push(PipelineSpec {
            name: name.clone(),
            signal,
            receivers: p.receivers.clone(),
            processors: p.processors.clone(),
            exporters: p.exporters.clone(),
            queue_size: p.queue_size,
        });
    }

    let mut admin_endpoint = service.admin.endpoint.clone();
    if let Some(a) = &overrides.admin_endpoint {
        admin_endpoint = a.clone();
    }
    check_endpoint(&admin_endpoint, "service.admin.endpoint", errors);
    if let Some(t) = &service.admin.tls
        && let Err(e) = crate::tls::server_config(t)
    {
        err(errors, "service.admin.tls", e.to_string());
    }
    let admin_auth = service
        .admin
        .auth
        .as_ref()
        .map(|a| endpoint_credentials(a, "service.admin.auth", errors))
        .unwrap_or_default();
    let allow_unauthenticated = overrides
        .admin_allow_unauthenticated
        .unwrap_or(service.admin.allow_unauthenticated);
    let client_certificates = service
        .admin
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca_file.is_some());
    if service.admin.auth.is_none()
        && !client_certificates
        && !allow_unauthenticated
        && !is_loopback_endpoint(&admin_endpoint)
    {
        err(
            errors,
            "service.admin.auth",
            format!(
                "the admin endpoint listens on {admin_endpoint}, beyond loopback, without authentication: \
                 set `service.admin.auth` (a bearer token or basic auth), bind it to 127.0.0.1, \
                 or accept that anyone who reaches it can read the gateway's status and reload its plugins \
                 with `service.admin.allow_unauthenticated: true` (or --admin-allow-unauthenticated, \
                 SLUICE_ADMIN_ALLOW_UNAUTHENTICATED=true)"
            ),
        );
    }
    check_listeners(&receivers, &exporters, &admin_endpoint, errors);
    if let Some(rw) = receivers
        .iter()
        .find(|r| matches!(r.kind, ReceiverKind::RemoteWrite(_)))
        && Config::http_host_of(&receivers).is_none()
    {
        err(
            errors,
            format!("receivers.{}", rw.name),
            "remote write is served on the OTLP/HTTP listener: add an `otlp` receiver with `protocols.http`",
        );
    }

    if let Some(e) = &service.telemetry.traces.endpoint {
        check_url(e, "service.telemetry.traces.endpoint", errors);
    }
    let mut logs = service.telemetry.logs.clone();
    if let Some(level) = &overrides.log_level {
        logs.level = level.clone();
    }
    if let Some(format) = overrides.log_format {
        logs.format = format;
    }
    if !valid_log_filter(&logs.level) {
        err(
            errors,
            "service.telemetry.logs.level",
            format!(
                "invalid log level `{}`: use error, warn, info, debug or trace (or a filter such as `sluice=debug,info`)",
                logs.level
            ),
        );
    }

    let plugin_cache_dir = match service.plugins.cache_dir.as_deref() {
        Some("") => None,
        Some(dir) => Some(base.join(dir)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
            })
            .map(|d| d.join("sluice").join("plugins")),
    };
    Some(Config {
        receivers,
        exporters,
        processors,
        pipelines,
        plugin_cache_dir,
        plugin_reload_interval: service.plugins.reload_interval,
        admin_endpoint,
        admin_tls: service.admin.tls.clone(),
        admin_auth,
        logs,
        traces_endpoint: service.telemetry.traces.endpoint.clone(),
        shutdown_timeout: service.shutdown_timeout,
        memory_limiter: service.memory_limiter.clone(),
        in_flight_decode_bytes: service.in_flight_decode_mib.saturating_mul(1 << 20),
    })
}

/// Whether a config key names a secret or a set of them (`hmac_key`, `hash_keys`, `api_token`,
/// `password`, …).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let singular = k.strip_suffix('s').unwrap_or(&k);
    [
        "secret",
        "password",
        "passwd",
        "token",
        "credential",
        "private",
        "hmac",
    ]
    .iter()
    .any(|w| k.contains(w))
        || singular == "key"
        || singular.ends_with("_key")
        || singular.ends_with("-key")
        || singular.ends_with("apikey")
}

/// Every value under a secret-named key: `"***"`, except `${env:NAME}` references, which name
/// the secret without revealing it.
fn mask_all(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        J::String(s) if s.starts_with("${env:") && s.ends_with('}') => J::String(s),
        J::Null => J::Null,
        J::Object(map) => J::Object(map.into_iter().map(|(k, v)| (k, mask_all(v))).collect()),
        J::Array(items) => J::Array(items.into_iter().map(mask_all).collect()),
        _ => J::String("***".into()),
    }
}

/// A plugin config for display: everything under secret-looking keys is masked.
pub fn mask_secrets(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        J::Object(map) => J::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(&k) {
                        mask_all(v)
                    } else {
                        mask_secrets(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        J::Array(items) => J::Array(items.into_iter().map(mask_secrets).collect()),
        other => other,
    }
}

/// Replaces `${env:NAME}` in the string values of a plugin's config with the variable's value,
/// so secrets (hash keys, tokens) stay out of config files; plugins themselves see no
/// environment. A variable that is not set is an error.
fn expand_env(value: Value, path: &str) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(expand_env_str(&s, path)?),
        Value::Sequence(seq) => Value::Sequence(
            seq.into_iter()
                .map(|v| expand_env(v, path))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(k, v)| Ok((k, expand_env(v, path)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other,
    })
}

fn expand_env_str(s: &str, path: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{env:...}} in a value under {path}"))?;
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| {
            format!("environment variable `{name}` (used as ${{env:{name}}}) is not set")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The plugins that ship with Sluice, usable as `plugin: builtin/NAME`.
pub const BUILTIN_PLUGINS: &[&str] = &["redact", "sample", "enrich", "slo", "limit_cardinality"];

/// Where `builtin/NAME` is looked for, in order: `$SLUICE_PLUGIN_DIR`, `plugins/` beside the
/// executable, the build directory of a checkout (`target/wasm32-wasip2/release`), and
/// `/usr/lib/sluice/plugins`.
pub fn builtin_plugin_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("SLUICE_PLUGIN_DIR") {
        dirs.push(std::path::PathBuf::from(d));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("plugins"));
        dirs.push(exe_dir.join("../wasm32-wasip2/release"));
        dirs.push(exe_dir.join("../../wasm32-wasip2/release"));
    }
    dirs.push("/usr/lib/sluice/plugins".into());
    dirs
}

fn builtin_plugin(name: &str) -> Result<std::path::PathBuf, String> {
    if !BUILTIN_PLUGINS.contains(&name) {
        return Err(format!(
            "unknown built-in plugin `{name}`{}",
            suggestion(name, BUILTIN_PLUGINS)
        ));
    }
    let dirs = builtin_plugin_dirs();
    let candidates = [format!("{name}.wasm"), format!("sluice_plugin_{name}.wasm")];
    dirs.iter()
        .flat_map(|d| candidates.iter().map(move |c| d.join(c)))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "built-in plugin `{name}` not found in {}; build the plugins with scripts/build-plugins.sh or set SLUICE_PLUGIN_DIR",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

const SERVICE_KEYS: &[&str] = &[
    "pipelines",
    "admin",
    "telemetry",
    "plugins",
    "shutdown_timeout",
    "memory_limiter",
    "in_flight_decode_mib",
];
const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// A level (`debug`) or a filter of `target=level` directives (`sluice=debug,info`).
fn valid_log_filter(filter: &str) -> bool {
    let directives_ok = filter.split(',').all(|d| {
        let level = d.rsplit_once('=').map_or(d, |(_, l)| l).trim();
        LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str())
    });
    directives_ok && tracing_subscriber::EnvFilter::try_new(filter).is_ok()
}

fn parse_service(value: Option<Value>, errors: &mut Vec<ConfigError>) -> ServiceConfig {
    let mut service = ServiceConfig::default();
    let mut map = match value {
        None => {
            err(errors, "service", "missing `service` (with `pipelines`)");
            return service;
        }
        Some(Value::Mapping(m)) => m,
        Some(Value::Null) => Default::default(),
        Some(_) => {
            err(errors, "service", "expected a mapping with `pipelines`");
            return service;
        }
    };
    for key in map.keys() {
        let name = key.as_str().unwrap_or("?");
        if !SERVICE_KEYS.contains(&name) {
            err(
                errors,
                format!("service.{name}"),
                format!("unknown key `{name}`{}", suggestion(name, SERVICE_KEYS)),
            );
        }
    }
    for (name, value) in mapping_entries(map.remove("pipelines"), "service.pipelines", errors) {
        let path = format!("service.pipelines.{name}");
        if let Some(p) = typed::<PipelineConfig>(value, &path, errors) {
            service.pipelines.insert(name, p);
        }
    }
    if let Some(v) = map.remove("admin") {
        service.admin = typed(v, "service.admin", errors).unwrap_or_default();
    }
    if let Some(v) = map.remove("telemetry") {
        service.telemetry = typed(v, "service.telemetry", errors).unwrap_or_default();
    }
    if let Some(v) = map.remove("plugins") {
        service.plugins = typed(v, "service.plugins", errors).unwrap_or_default();
    }
    if let Some(v) = map.remove("memory_limiter") {
        let path = "service.memory_limiter";
        if let Some(m) = typed::<MemoryLimiterConfig>(v, path, errors) {
            if m.soft_limit_mib == 0 {
                err(
                    errors,
                    format!("{path}.soft_limit_mib"),
                    "must be at least 1",
                );
            }
            if m.hard_limit_mib.is_some_and(|h| h < m.soft_limit_mib) {
                err(
                    errors,
                    format!("{path}.hard_limit_mib"),
                    "must not be below soft_limit_mib",
                );
            }
            if m.check_interval.is_zero() {
                err(
                    errors,
                    format!("{path}.check_interval"),
                    "must be greater than 0",
                );
            }
            service.memory_limiter = Some(m);
        }
    }
    if let Some(v) = map.remove("in_flight_decode_mib") {
        let path = "service.in_flight_decode_mib";
        if let Some(mib) = typed::<u64>(v, path, errors) {
            if mib == 0 {
                err(errors, path, "must be at least 1");
            }
            service.in_flight_decode_mib = mib;
        }
    }
    if let Some(v) = map.remove("shutdown_timeout") {
        #[derive(serde::Deserialize)]
        struct Timeout(#[serde(with = "duration")] Duration);
        if let Some(Timeout(t)) = typed(v, "service.shutdown_timeout", errors) {
            service.shutdown_timeout = t;
        }
    }
    service
}

/// Reads each tenant's credentials from their files or variables; reports what is missing,
/// empty or duplicated without ever printing a secret.
fn auth_tokens(
    a: &ReceiverAuthConfig,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Credential> {
    if a.tenants.is_empty() {
        err(
            errors,
            format!("{path}.tenants"),
            "list at least one tenant (or remove `auth`)",
        );
    }
    let mut out: Vec<Credential> = Vec::new();
    for (i, t) in a.tenants.iter().enumerate() {
        let at = format!("{path}.tenants[{i}]");
        if t.tenant.trim().is_empty() {
            err(errors, format!("{at}.tenant"), "must not be empty");
        }
        tenant_credentials(t, &at, errors, &mut out);
        let l = &t.limits;
        for (name, v) in [
            ("requests_per_second", l.requests_per_second),
            ("records_per_second", l.records_per_second),
        ] {
            if v.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
                err(
                    errors,
                    format!("{at}.limits.{name}"),
                    "must be a positive number",
                );
            }
        }
        if l.max_concurrent_requests == Some(0) {
            err(
                errors,
                format!("{at}.limits.max_concurrent_requests"),
                "must be at least 1",
            );
        }
    }
    out
}

/// The credentials of an admin or scrape endpoint's `auth`.
fn endpoint_credentials(
    a: &EndpointAuthConfig,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Credential> {
    let as_tenant = TenantConfig {
        tenant: "admin".into(),
        bearer_token_file: a.bearer_token_file.clone(),
        bearer_token_env: a.bearer_token_env.clone(),
        basic_auth: a.basic_auth.clone(),
        limits: TenantLimitsConfig::default(),
    };
    let mut out = Vec::new();
    tenant_credentials(&as_tenant, path, errors, &mut out);
    out
}

/// Reads one tenant's token and/or basic-auth password into `out`.
fn tenant_credentials(
    t: &TenantConfig,
    at: &str,
    errors: &mut Vec<ConfigError>,
    out: &mut Vec<Credential>,
) {
    let read = |file: &Option<std::path::PathBuf>, var: &Option<String>, what: &str| {
        match (file, var) {
            (Some(file), None) => std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display())),
            (None, Some(var)) => {
                std::env::var(var).map_err(|_| format!("environment variable `{var}` is not set"))
            }
            _ => Err(format!("set exactly one of `{what}_file` and `{what}_env`")),
        }
        .map(|s| s.trim().to_string())
        .and_then(|s| {
            if s.is_empty() {
                Err(format!("the {what} is empty"))
            } else {
                Ok(s)
            }
        })
    };
    let mut push = |kind: CredentialKind, secret: Result<String, String>, at: &str| match secret {
        Ok(secret) => {
            if out.iter().any(|c| c.kind == kind && c.secret == secret) {
                err(
                    errors,
                    at,
                    match kind {
                        CredentialKind::Bearer => "the same token is given to two tenants",
                        CredentialKind::Basic => {
                            "the same user and password are given to two tenants"
                        }
                    },
                );
            } else {
                out.push(Credential {
                    kind,
                    secret,
                    tenant: t.tenant.clone(),
                });
            }
        }
        Err(e) => err(errors, at, e),
    };
    let has_token = t.bearer_token_file.is_some() || t.bearer_token_env.is_some();
    if has_token || t.basic_auth.is_none() {
        let token = read(&t.bearer_token_file, &t.bearer_token_env, "bearer_token").map_err(|e| {
            if t.basic_auth.is_none() && !has_token {
                "set `bearer_token_file`, `bearer_token_env` or `basic_auth`".to_string()
            } else {
                e
            }
        });
        push(CredentialKind::Bearer, token, at);
    }
    if let Some(b) = &t.basic_auth {
        let at = format!("{at}.basic_auth");
        let secret = if b.username.is_empty() || b.username.contains(':') {
            Err("`username` must be non-empty and without `:`".to_string())
        } else {
            read(&b.password_file, &b.password_env, "password")
                .map(|p| format!("{}:{p}", b.username))
        };
        push(CredentialKind::Basic, secret, &at);
    }
}

fn apply_receiver_overrides(c: &mut OtlpReceiverConfig, o: &Overrides) {
    if let Some(e) = &o.grpc_endpoint {
        c.protocols
            .grpc
            .get_or_insert_with(Default::default)
            .endpoint = e.clone();
    }
    if let Some(e) = &o.http_endpoint {
        c.protocols
            .http
            .get_or_insert_with(Default::default)
            .endpoint = e.clone();
    }
}

fn check_refs(
    used: &[String],
    defined: &[&str],
    what: &str,
    path: &str,
    errors: &mut Vec<ConfigError>,
) {
    if used.is_empty() {
        err(
            errors,
            path,
            format!("a pipeline needs at least one {what}"),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, name) in used.iter().enumerate() {
        if !defined.contains(&name.as_str()) {
            let hint = match nearest(name, defined.iter().copied()) {
                Some(n) => format!("; did you mean `{n}`?"),
                None if defined.is_empty() => format!("; no {what}s are defined"),
                None => format!("; defined {what}s: {}", defined.join(", ")),
            };
            err(
                errors,
                format!("{path}[{i}]"),
                format!("unknown {what} `{name}`{hint}"),
            );
        } else if !seen.insert(name) {
            err(
                errors,
                format!("{path}[{i}]"),
                format!("{what} `{name}` is listed twice"),
            );
        }
    }
}

fn check_endpoint(endpoint: &str, path: &str, errors: &mut Vec<ConfigError>) {
    let valid = endpoint
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !valid {
        err(
            errors,
            path,
            format!("invalid endpoint `{endpoint}`: expected host:port, e.g. 127.0.0.1:4317"),
        );
    }
}

/// Whether a `host:port` listens on loopback only: `localhost` or a loopback address. Any other
/// name is taken as reachable from elsewhere, since validation does not resolve names.
fn is_loopback_endpoint(endpoint: &str) -> bool {
    let Some((host, _)) = endpoint.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_listeners(
    receivers: &[ReceiverSpec],
    exporters: &[ExporterSpec],
    admin: &str,
    errors: &mut Vec<ConfigError>,
) {
    let mut bound: BTreeMap<String, String> = BTreeMap::new();
    bound.insert(admin.to_string(), "service.admin.endpoint".into());
    for e in exporters {
        if let ExporterKind::Prometheus(c) = &e.kind {
            let path = format!("exporters.{}.endpoint", e.name);
            if let Some(other) = bound.get(&c.endpoint) {
                err(
                    errors,
                    &path,
                    format!("endpoint {} is already used by {other}", c.endpoint),
                );
            } else {
                bound.insert(c.endpoint.clone(), path);
            }
        }
    }
    for r in receivers {
        let ReceiverKind::Otlp(c) = &r.kind else {
            continue;
        };
        let mut check = |endpoint: &str, path: String| {
            check_endpoint(endpoint, &path, errors);
            if let Some(other) = bound.get(endpoint) {
                err(
                    errors,
                    &path,
                    format!("endpoint {endpoint} is already used by {other}"),
                );
            } else {
                bound.insert(endpoint.to_string(), path);
            }
        };
        if let Some(g) = &c.protocols.grpc {
            check(
                &g.endpoint,
                format!("receivers.{}.protocols.grpc.endpoint", r.name),
            );
        }
        if let Some(h) = &c.protocols.http {
            check(
                &h.endpoint,
                format!("receivers.{}.protocols.http.endpoint", r.name),
            );
        }
    }
}

fn check_url(url: &str, path: &str, errors: &mut Vec<ConfigError>) {
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.parse::<http::Uri>().is_err()
    {
        err(
            errors,
            path,
            format!("invalid endpoint `{url}`: expected a URL such as http://127.0.0.1:4317"),
        );
    }
}

fn check_otlp_exporter(c: &OtlpExporterConfig, path: &str, errors: &mut Vec<ConfigError>) {
    check_url(&c.endpoint, &format!("{path}.endpoint"), errors);
    if let Some(tls) = &c.tls {
        if !c.endpoint.starts_with("https://") {
            err(
                errors,
                format!("{path}.tls"),
                "tls settings need an https:// endpoint",
            );
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            err(
                errors,
                format!("{path}.tls"),
                "a client certificate needs both cert_file and key_file",
            );
        }
        if c.protocol == OtlpProtocol::Grpc && tls.insecure_skip_verify {
            err(
                errors,
                format!("{path}.tls.insecure_skip_verify"),
                "not available for OTLP/gRPC; trust the server's CA with ca_file instead",
            );
        }
    }
    if c.retry_on_failure.multiplier < 1.0 {
        err(
            errors,
            format!("{path}.retry_on_failure.multiplier"),
            "must be at least 1.0",
        );
    }
    for key in c.headers.keys() {
        if http::HeaderName::from_bytes(key.as_bytes()).is_err() {
            err(
                errors,
                format!("{path}.headers.{key}"),
                "not a valid HTTP header name",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<String> {
        match Config::from_yaml(yaml, "test.yaml", &Overrides::default()) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn an_admin_endpoint_beyond_loopback_needs_credentials_or_the_opt_out() {
        let config = |admin: &str| {
            format!(
                "receivers: {{ otlp: {{ protocols: {{ http: {{ endpoint: 127.0.0.1:4318 }} }} }} }}\n\
                 exporters: {{ debug: {{}} }}\n\
                 service:\n  pipelines: {{ traces: {{ receivers: [otlp], exporters: [debug] }} }}\n  \
                 admin: {admin}\n"
            )
        };
        let refused = errors_of(&config("{ endpoint: 0.0.0.0:8888 }"));
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].starts_with("service.admin.auth: ")
                && refused[0].contains("0.0.0.0:8888")
                && refused[0].contains("allow_unauthenticated"),
            "{refused:?}"
        );
        for open in [
            "{ endpoint: 127.0.0.1:8888 }",
            "{ endpoint: '[::1]:8888' }",
            "{ endpoint: localhost:8888 }",
            "{ endpoint: 0.0.0.0:8888, allow_unauthenticated: true }",
            "{ endpoint: '[::]:8888', auth: { bearer_token_env: PATH } }",
        ] {
            assert_eq!(errors_of(&config(open)), Vec::<String>::new(), "{open}");
        }
        assert_eq!(errors_of(&config("{ endpoint: 'gateway:8888' }")).len(), 1);
        // The override mechanism reaches both the endpoint and the opt-out.
        let exposed = Overrides {
            admin_endpoint: Some("0.0.0.0:8888".into()),
            ..Default::default()
        };
        assert!(Config::embedded(&exposed).is_err());
        let opted_out = Overrides {
            admin_allow_unauthenticated: Some(true),
            ..exposed
        };
        assert!(Config::embedded(&opted_out).is_ok());
        assert!(is_loopback_endpoint("127.8.9.1:1"));
        assert!(!is_loopback_endpoint("[::]:1"));
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::embedded(&Overrides::default()).expect("defaults validate");
        assert_eq!(c.pipelines.len(), 3);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.admin_endpoint, "127.0.0.1:8888");
    }

    #[test]
    fn overrides_win_over_the_file() {
        let o = Overrides {
            grpc_endpoint: Some("127.0.0.1:14317".into()),
            admin_endpoint: Some("127.0.0.1:18888".into()),
            ..Default::default()
        };
        let c = Config::embedded(&o).expect("valid");
        let Some(ReceiverKind::Otlp(r)) = c.receivers.iter().map(|r| &r.kind).next() else {
            panic!("the defaults start with the otlp receiver")
        };
        assert_eq!(
            r.protocols.grpc.as_ref().map(|g| g.endpoint.as_str()),
            Some("127.0.0.1:14317")
        );
        assert_eq!(
            r.protocols.http.as_ref().map(|g| g.endpoint.as_str()),
            Some("127.0.0.1:4318")
        );
        assert_eq!(c.admin_endpoint, "127.0.0.1:18888");
    }

    #[test]
    fn all_errors_are_reported_with_paths_and_suggestions() {
        let errors = errors_of(
            r#"
receivers:
  otlp:
    protocols:
      grpc: { endpont: 127.0.0.1:4317 }
exporters:
  otlp/jaeger: { endpoint: http://127.0.0.1:14317, protocol: grcp }
  otlp/tempo: { endpoint: http://127.0.0.1:24317 }
  debugg: {}
service:
  pipelines:
    traces: { receivers: [otlp], exporters: [otlp/tempo, otlp/tempp] }
    trace: { receivers: [otlpp], exporters: [otlp/tempo] }
"#,
        );
        let expected = [
            "receivers.otlp.protocols.grpc.endpont: unknown key `endpont`; did you mean `endpoint`?",
            "exporters.otlp/jaeger.protocol: unknown value `grcp`; did you mean `grpc`?",
            "exporters.debugg: unknown exporter type `debugg`; did you mean `debug`?",
            "service.pipelines.trace: unknown pipeline signal `trace`; did you mean `traces`?",
            "service.pipelines.traces.exporters[1]: unknown exporter `otlp/tempp`; did you mean `otlp/tempo`?",
        ];
        for e in expected {
            assert!(
                errors.iter().any(|x| x == e),
                "missing {e:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }

    #[test]
    fn unknown_top_level_key_and_bad_yaml() {
        assert_eq!(
            errors_of("servce: {}\nservice: { pipelines: {} }"),
            vec![
                "servce: unknown top-level key `servce`; did you mean `service`?".to_string(),
                "service.pipelines: define at least one pipeline (`traces`, `metrics` or `logs`)"
                    .to_string()
            ]
        );
        let e = errors_of("receivers: [");
        assert!(e[0].starts_with("invalid YAML"), "{e:?}");
    }

    #[test]
    fn port_conflicts_and_bad_durations() {
        let errors = errors_of(
            r#"
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:8888, read_timeout: 5 parsecs }
exporters:
  debug: {}
service:
  pipelines:
    logs: { receivers: [otlp], exporters: [debug] }
"#,
        );
        assert!(
            errors.iter().any(
                |e| e.contains("read_timeout") && e.contains("invalid duration unit `parsecs`")
            ),
            "{errors:#?}"
        );
    }

    #[test]
    fn env_references_in_plugin_configs_are_expanded() {
        // SAFETY of the test: the variable name is unique to this test.
        let name = "SLUICE_TEST_HASH_KEY_7f3a";
        let yaml = format!("a: [\"x-${{env:{name}}}-y\", 3]\nb: {{ c: \"${{env:{name}}}\" }}");
        let v: Value = serde_yaml_ng::from_str(&yaml).expect("yaml");
        assert!(
            expand_env(v.clone(), "p")
                .expect_err("unset")
                .contains(name)
        );
        #[allow(
            unsafe_code,
            reason = "tests set a process variable no other test reads"
        )]
        // SAFETY: no other thread reads this variable.
        unsafe {
            std::env::set_var(name, "s3cret")
        };
        let out = expand_env(v, "p").expect("set");
        assert_eq!(
            serde_json::to_string(&out).expect("json"),
            r#"{"a":["x-s3cret-y",3],"b":{"c":"s3cret"}}"#
        );
    }

    #[test]
    fn secrets_are_masked_for_display() {
        let shown = mask_secrets(serde_json::json!({
            "hmac_key": "s3cr3t",
            "key": "also secret",
            "api_token": "${env:API_TOKEN}",
            "rules": [{ "match": "email", "password": 1234, "keep": ["user.email"] }],
            "hash_keys": { "k2025": "0123abcd", "k2024": "${env:OLD_KEY}" },
            "endpoint": "http://collector:4318",
        }));
        assert_eq!(
            shown,
            serde_json::json!({
                "hmac_key": "***",
                "key": "***",
                "api_token": "${env:API_TOKEN}",
                "rules": [{ "match": "email", "password": "***", "keep": ["user.email"] }],
                "hash_keys": { "k2025": "***", "k2024": "${env:OLD_KEY}" },
                "endpoint": "http://collector:4318",
            })
        );
    }

    #[test]
    fn listener_conflict_is_reported() {
        let errors = errors_of(
            r#"
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:8888 }
exporters:
  debug: {}
service:
  pipelines:
    logs: { receivers: [otlp], exporters: [debug] }
"#,
        );
        assert_eq!(
            errors,
            vec![
                "receivers.otlp.protocols.grpc.endpoint: endpoint 127.0.0.1:8888 is already used by service.admin.endpoint"
            ]
        );
    }
}
