//! `receivers.otlp`: OTLP over gRPC and HTTP (which also serves remote write).

use std::time::Duration;

use serde::Deserialize;

use super::super::auth::ReceiverAuthConfig;
use super::super::duration;
use super::super::errors::{ConfigError, err};
use super::super::tls::TlsServerConfig;

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

pub(super) fn default_read_timeout() -> Duration {
    Duration::from_secs(30)
}

impl OtlpReceiverConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            err(
                errors,
                format!("{path}.protocols"),
                "enable at least one of `grpc` and `http`",
            );
        }
        if let Some(a) = &self.auth {
            a.validate(&format!("{path}.auth"), errors);
        }
        for (key, v) in [
            (
                "max_attributes_per_record",
                self.attribute_limits.max_attributes_per_record,
            ),
            ("max_value_bytes", self.attribute_limits.max_value_bytes),
        ] {
            if v == 0 {
                err(
                    errors,
                    format!("{path}.attribute_limits.{key}"),
                    "must be at least 1",
                );
            }
        }
    }

    /// The `tls` blocks of its listeners, with their paths below the receiver's.
    pub fn tls_blocks(&self) -> impl Iterator<Item = (&'static str, &TlsServerConfig)> {
        let grpc = self.protocols.grpc.as_ref().and_then(|g| g.tls.as_ref());
        let http = self.protocols.http.as_ref().and_then(|h| h.tls.as_ref());
        [("protocols.grpc.tls", grpc), ("protocols.http.tls", http)]
            .into_iter()
            .filter_map(|(path, tls)| Some((path, tls?)))
    }
}
