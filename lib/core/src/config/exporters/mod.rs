//! `exporters`: one file per kind, the settings all share (`queue`), and the table of kinds
//! ([`EXPORTER_KINDS`], [`ExporterKind`], `parse`). Adding an exporter kind is a file here
//! with its config and `validate`, a variant of [`ExporterKind`] with its line in the table and
//! in `parse`, and its folder in the gateway's `exporters/`.

mod blackhole;
mod debug;
mod loadbalancing;
mod memory;
mod otlp;
mod prometheus;
mod queue;
mod remote_write;

use serde_yaml_ng::Value;

pub use blackhole::BlackholeExporterConfig;
pub use debug::{DebugExporterConfig, Verbosity};
pub use loadbalancing::{
    BalancedProtocol, DnsResolver, LoadBalancingExporterConfig, OtlpTemplate, ResolverConfig,
    RoutingKey, StaticResolver, backend_endpoint,
};
pub use memory::MemoryExporterConfig;
pub use otlp::{Compression, OtlpExporterConfig, OtlpProtocol};
pub use prometheus::PrometheusExporterConfig;
pub use queue::{BreakerConfig, FsyncPolicy, RetryConfig, SendingQueueConfig};
pub(crate) use queue::{single_consumer_queue, yes};
pub use remote_write::{BasicAuth, RemoteWriteExporterConfig};

use super::auth::Credential;
use super::errors::{ConfigError, err, kind_of, mapping_entries, suggestion, typed};
use crate::model::Signal;

/// The kinds of exporter this build knows.
pub const EXPORTER_KINDS: &[&str] = &[
    "otlp",
    "debug",
    "prometheus",
    "prometheus_remote_write",
    "blackhole",
    "memory",
    "loadbalancing",
];

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
    /// OTLP to several backends, each trace to one (consistent hashing by trace id).
    LoadBalancing(LoadBalancingExporterConfig),
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
            ExporterKind::LoadBalancing(c) => &c.sending_queue,
        }
    }

    /// Checks of the kind's own settings.
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        match self {
            ExporterKind::Otlp(c) => c.validate(path, errors),
            ExporterKind::Prometheus(c) => c.validate(path, errors),
            ExporterKind::RemoteWrite(c) => c.validate(path, errors),
            ExporterKind::Memory(c) => c.validate(path, errors),
            ExporterKind::LoadBalancing(c) => c.validate(path, errors),
            ExporterKind::Debug(_) | ExporterKind::Blackhole(_) => {}
        }
    }

    /// Whether the exporter keeps its data in memory by nature (a disk queue makes no sense).
    fn in_memory(&self) -> bool {
        matches!(self, ExporterKind::Memory(_) | ExporterKind::Prometheus(_))
    }

    /// The circuit breaker of a network exporter.
    pub fn circuit_breaker(&self) -> Option<&BreakerConfig> {
        match self {
            ExporterKind::Otlp(c) => Some(&c.circuit_breaker),
            ExporterKind::RemoteWrite(c) => Some(&c.circuit_breaker),
            _ => None,
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

/// The `exporters` section: every exporter that parses, and the names of all.
pub(super) fn parse(
    section: Option<Value>,
    errors: &mut Vec<ConfigError>,
) -> (Vec<ExporterSpec>, Vec<String>) {
    let mut exporters = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (name, value) in mapping_entries(section, "exporters", errors) {
        names.push(name.clone());
        let path = format!("exporters.{name}");
        let kind = match kind_of(&name) {
            "otlp" => typed(value, &path, errors).map(ExporterKind::Otlp),
            "debug" => typed(value, &path, errors).map(ExporterKind::Debug),
            "blackhole" => typed(value, &path, errors).map(ExporterKind::Blackhole),
            "memory" => typed(value, &path, errors).map(ExporterKind::Memory),
            "loadbalancing" => typed(value, &path, errors).map(ExporterKind::LoadBalancing),
            "prometheus" => typed(value, &path, errors).map(ExporterKind::Prometheus),
            "prometheus_remote_write" => typed(value, &path, errors).map(ExporterKind::RemoteWrite),
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
        let Some(kind) = kind else {
            continue;
        };
        kind.validate(&path, errors);
        if matches!(kind, ExporterKind::Memory(_))
            && names.iter().filter(|k| kind_of(k) == "memory").count() > 1
        {
            err(
                errors,
                &path,
                "only one `memory` exporter per gateway: the admin UI and the Jaeger query API read from it",
            );
        }
        let queue = kind.sending_queue();
        queue.validate(&format!("{path}.sending_queue"), errors);
        if queue.storage.is_some() && kind.in_memory() {
            err(
                errors,
                format!("{path}.sending_queue.storage"),
                "this exporter keeps its data in memory; a disk queue applies to otlp, prometheus_remote_write, debug and blackhole exporters",
            );
        }
        exporters.push(ExporterSpec {
            name,
            kind,
            endpoint_auth: Vec::new(),
        });
    }
    (exporters, names)
}
