//! `exporters.otlp`: OTLP over gRPC or HTTP to any OTLP backend.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::super::duration;
use super::super::endpoints::check_url;
use super::super::errors::{ConfigError, err};
use super::super::tls::TlsClientConfig;
use super::{BreakerConfig, RetryConfig, SendingQueueConfig};

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

pub(super) fn default_export_timeout() -> Duration {
    Duration::from_secs(5)
}

impl OtlpExporterConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        let c = self;
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
}
