//! `exporters.prometheus`: a scrape endpoint (`GET /metrics`) over the metrics it received.
use std::time::Duration;

use serde::Deserialize;

use super::super::auth::EndpointAuthConfig;
use super::super::duration;
use super::super::endpoints::check_endpoint;
use super::super::errors::ConfigError;
use super::super::tls::TlsServerConfig;
use super::{SendingQueueConfig, single_consumer_queue, yes};

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

pub(super) fn default_metric_expiration() -> Duration {
    Duration::from_secs(300)
}

pub(super) fn default_max_series() -> usize {
    200_000
}

impl PrometheusExporterConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        check_endpoint(&self.endpoint, &format!("{path}.endpoint"), errors);
        if let Some(a) = &self.auth {
            a.validate(&format!("{path}.auth"), errors);
        }
    }
}
