//! `service`: pipelines, the admin endpoint, the gateway's own telemetry, plugin settings,
//! the memory limiter and shutdown. Parsed key by key, so that one bad key does not hide the
//! problems of the others.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::auth::EndpointAuthConfig;
use super::duration;
use super::errors::{ConfigError, err, mapping_entries, suggestion, typed};
use super::tls::TlsServerConfig;
use crate::model::Signal;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// How long a SIGTERM waits for queues to drain before exiting.
    #[serde(default = "default_shutdown_timeout", with = "duration")]
    pub shutdown_timeout: Duration,
    pub memory_limiter: Option<MemoryLimiterConfig>,
    /// The estimated decoded size of the requests all receivers are decoding at once; past
    /// it, requests wait briefly and are then refused with a retryable error.
    #[serde(default = "default_in_flight_decode_mib")]
    pub in_flight_decode_mib: u64,
}

/// The default of `service.in_flight_decode_mib`.
pub const DEFAULT_IN_FLIGHT_DECODE_MIB: u64 = 256;

fn default_in_flight_decode_mib() -> u64 {
    DEFAULT_IN_FLIGHT_DECODE_MIB
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            pipelines: BTreeMap::new(),
            admin: AdminConfig::default(),
            telemetry: TelemetryConfig::default(),
            plugins: PluginsConfig::default(),
            shutdown_timeout: default_shutdown_timeout(),
            memory_limiter: None,
            in_flight_decode_mib: default_in_flight_decode_mib(),
        }
    }
}

/// Limits on the process's resident memory. Above `soft_limit_mib`, receivers refuse new data
/// with a retryable error (HTTP 429 + `Retry-After`, gRPC `UNAVAILABLE`), so clients that retry
/// lose nothing while queues drain; above `hard_limit_mib`, `/health/ready` also answers 503 so
/// that load balancers send elsewhere.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    pub soft_limit_mib: u64,
    pub hard_limit_mib: Option<u64>,
    /// How often the resident memory is read.
    #[serde(default = "default_memory_check_interval", with = "duration")]
    pub check_interval: Duration,
}

fn default_memory_check_interval() -> Duration {
    Duration::from_millis(100)
}

impl MemoryLimiterConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.soft_limit_mib == 0 {
            err(
                errors,
                format!("{path}.soft_limit_mib"),
                "must be at least 1",
            );
        }
        if self.hard_limit_mib.is_some_and(|h| h < self.soft_limit_mib) {
            err(
                errors,
                format!("{path}.hard_limit_mib"),
                "must not be below soft_limit_mib",
            );
        }
        if self.check_interval.is_zero() {
            err(
                errors,
                format!("{path}.check_interval"),
                "must be greater than 0",
            );
        }
    }
}

/// Settings shared by all plugins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Where compiled plugins are cached (default: `$XDG_CACHE_HOME/sluice` or
    /// `~/.cache/sluice`); `""` turns the cache off.
    pub cache_dir: Option<String>,
    /// How often plugin files are checked for changes (hot reload); `0s` turns it off.
    #[serde(default = "default_reload_interval", with = "duration")]
    pub reload_interval: Duration,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            cache_dir: None,
            reload_interval: default_reload_interval(),
        }
    }
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub receivers: Vec<String>,
    #[serde(default)]
    pub processors: Vec<String>,
    #[serde(default)]
    pub exporters: Vec<String>,
    /// Batches waiting for the pipeline's plugins; when full, receivers refuse with a retryable
    /// error.
    #[serde(default = "default_pipeline_queue")]
    pub queue_size: usize,
    /// The queue's size limit, the batches' protobuf bytes, as well as `queue_size` batches.
    #[serde(default = "default_pipeline_queue_mib")]
    pub queue_max_size_mib: u64,
}

fn default_pipeline_queue() -> usize {
    256
}

/// With 256 batches of ~64 KiB, what a busy pipeline holds; 1000-record batches reach it first.
fn default_pipeline_queue_mib() -> u64 {
    32
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
    pub queue_max_size_mib: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_endpoint")]
    pub endpoint: String,
    pub tls: Option<TlsServerConfig>,
    /// Credentials for everything but `/health/live` and `/health/ready` (probes). Required
    /// when `endpoint` is not a loopback address, unless `allow_unauthenticated` is set.
    pub auth: Option<EndpointAuthConfig>,
    /// Serve the admin endpoint on a non-loopback address without `auth` (or a client
    /// certificate, `tls.client_ca_file`): anyone who reaches it can read the gateway's status
    /// and reload its plugins. For networks where something else guards the port.
    #[serde(default)]
    pub allow_unauthenticated: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            endpoint: default_admin_endpoint(),
            tls: None,
            auth: None,
            allow_unauthenticated: false,
        }
    }
}

fn default_admin_endpoint() -> String {
    "127.0.0.1:8888".into()
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub logs: LogsConfig,
    #[serde(default)]
    pub traces: TracesConfig,
}

/// The gateway's own traces; off unless `endpoint` is set.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// OTLP/HTTP endpoint, e.g. `http://127.0.0.1:4318` (`/v1/traces` is appended to a base URL).
    pub endpoint: Option<String>,
}

/// How the gateway writes its own logs (`service.telemetry.logs`).
/// How the gateway writes its own logs (`service.telemetry.logs`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
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
pub(super) fn valid_log_filter(filter: &str) -> bool {
    let directives_ok = filter.split(',').all(|d| {
        let level = d.rsplit_once('=').map_or(d, |(_, l)| l).trim();
        LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str())
    });
    directives_ok && tracing_subscriber::EnvFilter::try_new(filter).is_ok()
}
pub(super) fn parse(value: Option<Value>, errors: &mut Vec<ConfigError>) -> ServiceConfig {
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
            m.validate(path, errors);
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
