//! The config file's shape, one serde struct per component kind.
//!
//! Every struct denies unknown keys so that a misspelled key is an error with its path, never a
//! silently ignored setting. Defaults follow the OpenTelemetry Collector where one exists.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

// ---------------------------------------------------------------- receivers

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    #[serde(default)]
    pub protocols: OtlpProtocols,
    /// Bearer-token authentication; every request needs a known token when set.
    pub auth: Option<ReceiverAuthConfig>,
    #[serde(default)]
    pub attribute_limits: AttributeLimitsConfig,
}

/// Limits on attributes: beyond them, attributes are dropped (`dropped_attributes_count` is
/// raised) and values truncated, and both are counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeLimitsConfig {
    /// Attributes per record (span, event, link, log record, data point), resource and scope.
    #[serde(default = "default_max_attributes")]
    pub max_attributes_per_record: usize,
    /// Bytes of one string or bytes value (attribute or log body); cut at a UTF-8 boundary.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
}

impl Default for AttributeLimitsConfig {
    fn default() -> Self {
        AttributeLimitsConfig {
            max_attributes_per_record: default_max_attributes(),
            max_value_bytes: default_max_value_bytes(),
        }
    }
}

fn default_max_attributes() -> usize {
    128
}
fn default_max_value_bytes() -> usize {
    64 * 1024
}

/// The tenants a receiver accepts, each with its bearer token read from a file or an
/// environment variable (never written in the config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverAuthConfig {
    pub tenants: Vec<TenantConfig>,
    /// A header (e.g. `X-API-Key`) in which the tenants' tokens are also accepted, for clients
    /// that cannot send `Authorization: Bearer`.
    pub api_key_header: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's name, attached to its data.
    pub tenant: String,
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// The name of an environment variable holding the token.
    pub bearer_token_env: Option<String>,
    /// HTTP basic authentication (`Authorization: Basic`), instead of or besides a token.
    pub basic_auth: Option<ReceiverBasicAuth>,
    /// Limits of this tenant; over one, its requests get 429 / `UNAVAILABLE` while other
    /// tenants are unaffected.
    #[serde(default)]
    pub limits: TenantLimitsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverBasicAuth {
    pub username: String,
    pub password_file: Option<std::path::PathBuf>,
    /// The name of an environment variable holding the password.
    pub password_env: Option<String>,
}

/// Per-tenant limits; unset means unlimited.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantLimitsConfig {
    /// Requests per second (a token bucket with a burst of one second's worth).
    pub requests_per_second: Option<f64>,
    /// Records (spans, data points, log records) per second, same bucket.
    pub records_per_second: Option<f64>,
    /// Requests of this tenant being processed at once.
    pub max_concurrent_requests: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OtlpProtocols {
    pub grpc: Option<GrpcServerConfig>,
    pub http: Option<HttpServerConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcServerConfig {
    #[serde(default = "default_grpc_endpoint")]
    pub endpoint: String,
    /// Largest accepted message, after decompression.
    #[serde(default = "default_grpc_max_mib")]
    pub max_recv_msg_size_mib: usize,
    /// A request whose message has not fully arrived by then is answered `DEADLINE_EXCEEDED`.
    #[serde(default = "default_read_timeout", with = "duration")]
    pub read_timeout: Duration,
    pub tls: Option<TlsServerConfig>,
    /// Connections open at once; more are closed at once and counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for GrpcServerConfig {
    fn default() -> Self {
        GrpcServerConfig {
            endpoint: default_grpc_endpoint(),
            max_recv_msg_size_mib: default_grpc_max_mib(),
            read_timeout: default_read_timeout(),
            tls: None,
            max_connections: default_max_connections(),
        }
    }
}

fn default_max_connections() -> usize {
    4096
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    #[serde(default = "default_http_endpoint")]
    pub endpoint: String,
    /// Largest accepted body, after decompression.
    #[serde(default = "default_http_max_mib")]
    pub max_request_body_size_mib: usize,
    /// A request whose body has not fully arrived by then is answered 408.
    #[serde(default = "default_read_timeout", with = "duration")]
    pub read_timeout: Duration,
    pub tls: Option<TlsServerConfig>,
    /// Connections open at once; more are closed at once and counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            endpoint: default_http_endpoint(),
            max_request_body_size_mib: default_http_max_mib(),
            read_timeout: default_read_timeout(),
            tls: None,
            max_connections: default_max_connections(),
        }
    }
}

fn default_grpc_endpoint() -> String {
    "127.0.0.1:4317".into()
}
fn default_http_endpoint() -> String {
    "127.0.0.1:4318".into()
}
fn default_grpc_max_mib() -> usize {
    4
}
fn default_http_max_mib() -> usize {
    20
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteReceiverConfig {
    /// Largest request after snappy decompression; checked against the snappy header before
    /// decompressing.
    #[serde(default = "default_remote_write_max_mib")]
    pub max_decoded_size_mib: usize,
    #[serde(default = "default_read_timeout", with = "duration")]
    pub read_timeout: Duration,
}

impl Default for RemoteWriteReceiverConfig {
    fn default() -> Self {
        RemoteWriteReceiverConfig {
            max_decoded_size_mib: default_remote_write_max_mib(),
            read_timeout: default_read_timeout(),
        }
    }
}

fn default_remote_write_max_mib() -> usize {
    32
}

// ---------------------------------------------------------------- processors

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
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Larger batches are not given to the plugin; `on_error` applies.
    #[serde(default = "default_max_batch_mb")]
    pub max_batch_mb: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_mb: default_memory_mb(),
            timeout_ms: default_timeout_ms(),
            max_batch_mb: default_max_batch_mb(),
        }
    }
}

fn default_memory_mb() -> usize {
    64
}
fn default_timeout_ms() -> u64 {
    100
}
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
    pub path: std::path::PathBuf,
    pub config_json: String,
    /// The config as written (before `${env:…}` expansion), with secret-looking values masked:
    /// what the admin endpoint shows.
    pub display_config: serde_json::Value,
    pub memory_mb: usize,
    pub timeout: Duration,
    pub max_batch_bytes: usize,
    pub on_error: OnError,
}

// ---------------------------------------------------------------- exporters

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    #[default]
    Grpc,
    Http,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// `http://host:port` (gRPC) or the base URL to which `/v1/<signal>` is appended (HTTP).
    pub endpoint: String,
    #[serde(default)]
    pub protocol: OtlpProtocol,
    #[serde(default)]
    pub compression: Compression,
    /// Deadline of one send attempt.
    #[serde(default = "default_export_timeout", with = "duration")]
    pub timeout: Duration,
    /// Extra headers (gRPC metadata) sent with every request, e.g. `X-Scope-OrgID`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub circuit_breaker: BreakerConfig,
    /// For `https://` endpoints (protocol `http`).
    pub tls: Option<TlsClientConfig>,
    /// Sends the batch's tenant (receiver `auth`) in this header, e.g. `X-Scope-OrgID`.
    pub tenant_header: Option<String>,
}

fn default_export_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendingQueueConfig {
    /// Batches waiting to be sent; when full, new batches for this exporter are dropped and
    /// counted (`reason="queue_full"`) if another exporter of the pipeline took them, else the
    /// pipeline waits for room.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Concurrent senders.
    #[serde(default = "default_consumers")]
    pub num_consumers: usize,
    /// A batch older than this (since the receiver accepted it) is dropped and counted
    /// (`reason="max_age"`) instead of being sent, or retried, late. `0s` never drops.
    #[serde(default = "default_max_age", with = "duration")]
    pub max_age: Duration,
    /// A directory: keep the queue on disk (a write-ahead log under `<storage>/<exporter>`),
    /// so that what clients were told was accepted survives a crash or restart. Unset: in memory.
    pub storage: Option<std::path::PathBuf>,
    /// When the disk queue flushes to stable storage: `always` (before answering the client),
    /// `interval` (every `fsync_interval`) or `never` (when the OS decides). Every setting
    /// survives a crash of the gateway; they differ on a crash of the machine.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    #[serde(default = "default_fsync_interval", with = "duration")]
    pub fsync_interval: Duration,
    /// The disk queue's size limit; above it, receivers refuse with a retryable error.
    #[serde(default = "default_queue_max_size_mib")]
    pub max_size_mib: u64,
    /// Size of one segment file of the disk queue; a segment is deleted once all its batches
    /// are delivered.
    #[serde(default = "default_segment_size_kib")]
    pub segment_size_kib: u64,
}

impl Default for SendingQueueConfig {
    fn default() -> Self {
        SendingQueueConfig {
            queue_size: default_queue_size(),
            num_consumers: default_consumers(),
            max_age: default_max_age(),
            storage: None,
            fsync: FsyncPolicy::default(),
            fsync_interval: default_fsync_interval(),
            max_size_mib: default_queue_max_size_mib(),
            segment_size_kib: default_segment_size_kib(),
        }
    }
}

/// See [`SendingQueueConfig::fsync`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    Always,
    #[default]
    Interval,
    Never,
}

fn default_fsync_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_queue_max_size_mib() -> u64 {
    1024
}
fn default_segment_size_kib() -> u64 {
    8192
}

fn default_max_age() -> Duration {
    Duration::from_secs(600)
}

fn default_queue_size() -> usize {
    1000
}
fn default_consumers() -> usize {
    4
}

/// The exporter's circuit breaker (see `exporters/breaker.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Consecutive retryable failures that open it.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// How long it stays open before a trial send.
    #[serde(default = "default_open_duration", with = "duration")]
    pub open_duration: Duration,
    /// While open, `/health/ready` answers 503 (for a gateway whose only job is this backend).
    #[serde(default)]
    pub affects_readiness: bool,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_threshold: default_failure_threshold(),
            open_duration: default_open_duration(),
            affects_readiness: false,
        }
    }
}

fn default_failure_threshold() -> u32 {
    5
}
fn default_open_duration() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_initial_interval", with = "duration")]
    pub initial_interval: Duration,
    #[serde(default = "default_max_interval", with = "duration")]
    pub max_interval: Duration,
    /// Give up on a batch after this long (it is then dropped and counted).
    #[serde(default = "default_max_elapsed", with = "duration")]
    pub max_elapsed_time: Duration,
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: default_initial_interval(),
            max_interval: default_max_interval(),
            max_elapsed_time: default_max_elapsed(),
            multiplier: default_multiplier(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_initial_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_max_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_max_elapsed() -> Duration {
    Duration::from_secs(300)
}
fn default_multiplier() -> f64 {
    1.5
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DebugExporterConfig {
    #[serde(default)]
    pub verbosity: Verbosity,
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusExporterConfig {
    /// TLS on the scrape endpoint.
    pub tls: Option<TlsServerConfig>,
    /// Credentials Prometheus must send (`authorization` or `basic_auth` in its scrape config).
    pub auth: Option<EndpointAuthConfig>,
    /// Where the scrape endpoint listens (`GET /metrics`).
    #[serde(default = "default_prometheus_endpoint")]
    pub endpoint: String,
    #[serde(default)]
    pub translation_strategy: crate::naming::TranslationStrategy,
    /// Series not updated for this long are removed.
    #[serde(default = "default_metric_expiration", with = "duration")]
    pub metric_expiration: Duration,
    /// New series beyond this are dropped and counted (`reason="max_series"`).
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Resource attributes copied onto every series as labels.
    #[serde(default)]
    pub promote_resource_attributes: Vec<String>,
    /// Expose the other resource attributes as a `target_info` series.
    #[serde(default = "yes")]
    pub target_info: bool,
    #[serde(default = "single_consumer_queue")]
    pub sending_queue: SendingQueueConfig,
}

fn default_prometheus_endpoint() -> String {
    "127.0.0.1:9464".into()
}
fn default_metric_expiration() -> Duration {
    Duration::from_secs(300)
}
fn default_max_series() -> usize {
    200_000
}
pub(crate) fn single_consumer_queue() -> SendingQueueConfig {
    SendingQueueConfig {
        num_consumers: 1,
        ..Default::default()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<String>,
    /// A file holding the password (preferred over an inline `password`).
    pub password_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteExporterConfig {
    /// The receiver's URL, e.g. `http://127.0.0.1:9090/api/v1/write`.
    pub endpoint: String,
    #[serde(default = "default_export_timeout", with = "duration")]
    pub timeout: Duration,
    /// Extra headers, e.g. `X-Scope-OrgID` for Mimir and Cortex.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub basic_auth: Option<BasicAuth>,
    pub bearer_token: Option<String>,
    /// A file holding the bearer token (preferred over an inline `bearer_token`).
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// Samples per request.
    #[serde(default = "default_max_samples_per_send")]
    pub max_samples_per_send: usize,
    /// Parallel senders; each series always goes to the same shard, keeping its order.
    #[serde(default = "default_shards")]
    pub shards: usize,
    #[serde(default)]
    pub translation_strategy: crate::naming::TranslationStrategy,
    #[serde(default = "default_metric_expiration", with = "duration")]
    pub metric_expiration: Duration,
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    #[serde(default)]
    pub promote_resource_attributes: Vec<String>,
    /// One consumer by default: batches are sent in order, so samples stay in order.
    #[serde(default = "single_consumer_queue")]
    pub sending_queue: SendingQueueConfig,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub circuit_breaker: BreakerConfig,
    /// For `https://` endpoints.
    pub tls: Option<TlsClientConfig>,
}

fn default_max_samples_per_send() -> usize {
    2000
}
fn default_shards() -> usize {
    4
}

/// Credentials for a remote-write backend, with secret files read.
#[derive(Clone)]
pub enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl RemoteWriteExporterConfig {
    pub fn credentials(&self) -> std::io::Result<Option<Credentials>> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        if let Some(b) = &self.basic_auth {
            let password = match (&b.password_file, &b.password) {
                (Some(f), _) => read(f)?,
                (None, Some(p)) => p.clone(),
                (None, None) => String::new(),
            };
            return Ok(Some(Credentials::Basic {
                username: b.username.clone(),
                password,
            }));
        }
        Ok(match (&self.bearer_token_file, &self.bearer_token) {
            (Some(f), _) => Some(Credentials::Bearer(read(f)?)),
            (None, Some(t)) => Some(Credentials::Bearer(t.clone())),
            (None, None) => None,
        })
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BlackholeExporterConfig {
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
}

/// The bounded in-memory store of traces and logs that the admin UI shows and the Jaeger query
/// API on the admin endpoint answers from. Oldest data is evicted first, and counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryExporterConfig {
    /// Spans kept; when full, whole traces are evicted oldest first.
    #[serde(default = "default_memory_max_spans")]
    pub max_spans: usize,
    /// Log records kept; when full, the oldest are evicted.
    #[serde(default = "default_memory_max_logs")]
    pub max_logs: usize,
    /// Traces and log records older than this (since they arrived) are evicted.
    #[serde(default = "default_memory_max_age", with = "duration")]
    pub max_age: Duration,
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
}

fn default_memory_max_spans() -> usize {
    100_000
}
fn default_memory_max_logs() -> usize {
    20_000
}
fn default_memory_max_age() -> Duration {
    Duration::from_secs(3600)
}

// ---------------------------------------------------------------- service

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
}

fn default_pipeline_queue() -> usize {
    256
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

/// The credentials an admin or scrape endpoint accepts: a bearer token and/or a basic-auth
/// user, read from files or environment variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointAuthConfig {
    pub bearer_token_file: Option<std::path::PathBuf>,
    pub bearer_token_env: Option<String>,
    pub basic_auth: Option<ReceiverBasicAuth>,
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

pub use crate::telemetry::{LogFormat, LogsConfig};
pub use crate::tls::{TlsClientConfig, TlsServerConfig};
