//! `receivers`: one file per kind, and the table of kinds ([`RECEIVER_KINDS`], `parse`).
//! Adding a receiver kind is a file here with its config and `validate`, a line in the table
//! and the `match` of `parse`, and its folder in the gateway's `receivers/`.

mod otlp;
mod prometheus;
mod remote_write;

use serde_yaml_ng::Value;

pub use otlp::{
    AttributeLimitsConfig, GrpcServerConfig, HttpServerConfig, OtlpProtocols, OtlpReceiverConfig,
};
pub use prometheus::{
    Authorization, FileSdConfig, GlobalConfig, HttpSdConfig, KubernetesNamespaces, KubernetesRole,
    KubernetesSdConfig, MAX_TARGETS, PromConfig, PrometheusReceiverConfig, ScrapeBasicAuth,
    ScrapeConfig, ScrapeTlsConfig, StaticConfig, check_address, is_label_name, parse_byte_size,
    parse_prom_duration,
};
pub use remote_write::RemoteWriteReceiverConfig;

use super::Overrides;
use super::auth::{Credential, TenantConfig, TenantLimitsConfig};
use super::errors::{ConfigError, err, kind_of, mapping_entries, suggestion, typed};
use crate::model::Signal;

/// The kinds of receiver this build knows.
pub const RECEIVER_KINDS: &[&str] = &["otlp", "prometheus", "prometheus_remote_write"];

#[derive(Debug, Clone)]
pub enum ReceiverKind {
    Otlp(Box<OtlpReceiverConfig>),
    /// Served on the OTLP/HTTP listener at `/api/v1/write`.
    RemoteWrite(RemoteWriteReceiverConfig),
    /// Scrapes Prometheus targets; listens on nothing.
    Prometheus(Box<PrometheusReceiverConfig>),
}

impl ReceiverKind {
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ReceiverKind::Otlp(_) => &Signal::ALL,
            ReceiverKind::RemoteWrite(_) | ReceiverKind::Prometheus(_) => &[Signal::Metrics],
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

impl ReceiverSpec {
    fn new(name: String, kind: ReceiverKind) -> ReceiverSpec {
        let auth = match &kind {
            ReceiverKind::Otlp(c) => c.auth.as_ref(),
            ReceiverKind::RemoteWrite(_) | ReceiverKind::Prometheus(_) => None,
        };
        ReceiverSpec {
            name,
            api_key_header: auth.and_then(|a| a.api_key_header.clone()),
            tenant_limits: auth
                .iter()
                .flat_map(|a| a.tenants.iter())
                .filter(|t| t.limits != TenantLimitsConfig::default())
                .map(|t| (t.tenant.clone(), t.limits.clone()))
                .collect(),
            kind,
            auth_tokens: Vec::new(),
        }
    }

    /// `auth.tenants`, whose secrets the gateway reads into [`ReceiverSpec::auth_tokens`].
    pub fn tenants(&self) -> &[TenantConfig] {
        match &self.kind {
            ReceiverKind::Otlp(c) => c.auth.as_ref().map_or(&[], |a| &a.tenants),
            ReceiverKind::RemoteWrite(_) | ReceiverKind::Prometheus(_) => &[],
        }
    }
}

/// The `receivers` section: every receiver that parses, and the names of all (also those with
/// errors, so that references to them are not reported as unknown too).
pub(super) fn parse(
    section: Option<Value>,
    overrides: &Overrides,
    errors: &mut Vec<ConfigError>,
) -> (Vec<ReceiverSpec>, Vec<String>) {
    let mut receivers = Vec::new();
    let mut names = Vec::new();
    for (name, value) in mapping_entries(section, "receivers", errors) {
        names.push(name.clone());
        let path = format!("receivers.{name}");
        let kind = match kind_of(&name) {
            "otlp" => typed::<OtlpReceiverConfig>(value, &path, errors).map(|mut c| {
                c.validate(&path, errors);
                if name == "otlp" {
                    apply_overrides(&mut c, overrides);
                }
                ReceiverKind::Otlp(Box::new(c))
            }),
            "prometheus_remote_write" => typed::<RemoteWriteReceiverConfig>(value, &path, errors)
                .map(ReceiverKind::RemoteWrite),
            "prometheus" => typed::<PrometheusReceiverConfig>(value, &path, errors).map(|c| {
                c.validate(&path, errors);
                ReceiverKind::Prometheus(Box::new(c))
            }),
            kind => {
                err(
                    errors,
                    path,
                    format!(
                        "unknown receiver type `{kind}`{}",
                        suggestion(kind, RECEIVER_KINDS)
                    ),
                );
                None
            }
        };
        if let Some(kind) = kind {
            receivers.push(ReceiverSpec::new(name, kind));
        }
    }
    (receivers, names)
}

fn apply_overrides(c: &mut OtlpReceiverConfig, o: &Overrides) {
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
