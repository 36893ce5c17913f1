//! `exporters.prometheus_remote_write`: remote write 1.0 to Prometheus, Mimir, Cortex, Thanos.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::super::duration;
use super::super::endpoints::check_url;
use super::super::errors::{ConfigError, err};
use super::super::tls::TlsClientConfig;
use super::otlp::default_export_timeout;
use super::prometheus::{default_max_series, default_metric_expiration};
use super::{BreakerConfig, RetryConfig, SendingQueueConfig, single_consumer_queue};

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

impl RemoteWriteExporterConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        check_url(&self.endpoint, &format!("{path}.endpoint"), errors);
        if self.basic_auth.is_some()
            && (self.bearer_token.is_some() || self.bearer_token_file.is_some())
        {
            err(
                errors,
                path,
                "set either `basic_auth` or a bearer token, not both",
            );
        }
        if self.shards == 0 {
            err(errors, format!("{path}.shards"), "must be at least 1");
        }
    }
}
