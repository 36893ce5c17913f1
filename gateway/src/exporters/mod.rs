//! Exporters: one folder per kind, and the table that builds them ([`Exporter::build`]).
//!
//! An exporter kind provides only its sending side, an [`Export`] that delivers one batch to
//! its backend; [`queue`] (the shared machinery: bounded queue, retries, circuit breaker, disk
//! queue) runs it. Adding an exporter is a folder here with its `build`, a line in
//! [`Exporter::build`]'s table, and its config in `sluice_core::config::exporters`. Exporters
//! know batches and their own backends; they import neither the pipeline nor the receivers.

mod blackhole;
mod debug;
mod loadbalancing;
mod memory;
mod otlp;
pub mod prometheus;
pub mod queue;
mod remote_write;
pub mod series;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::config::{ExporterKind, ExporterSpec, RetryConfig};
use crate::model::Batch;
use crate::store::MemoryStore;
use crate::telemetry::metrics::SelfMetrics;

pub use debug::DebugExporter;
pub use otlp::OtlpExporter;
pub use prometheus::PrometheusExporter;
pub use queue::{DiskRoom, Exporter, ExporterHandle, ExporterStatus, Leftovers, Reservation};
pub use remote_write::RemoteWriteExporter;

/// A failed send attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ExportError {
    pub message: String,
    /// Whether sending the same batch again may succeed.
    pub retryable: bool,
    /// The backend's `Retry-After` (or gRPC `RetryInfo`), if it gave one.
    pub retry_after: Option<Duration>,
}

impl ExportError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ExportError {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ExportError {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

/// A successful send; the backend may still have rejected some records (`partial_success`).
#[derive(Debug, Default, Clone)]
pub struct Delivered {
    pub rejected: u64,
    pub message: String,
}

/// One exporter kind's sending side: delivers a batch to its backend, once. Retries, the
/// breaker and the queue around it are [`queue`]'s.
pub trait Export: Send + Sync + 'static {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, ExportError>>;

    /// Called by each consumer once the queue is closed and drained (at shutdown): an exporter
    /// that holds queues of its own (`loadbalancing`) lets them drain.
    fn finish(&self) {}
}

/// What building an exporter kind gives the shared machinery.
pub struct Built {
    pub sender: Box<dyn Export>,
    /// Retries of failed sends; off for exporters whose sends cannot fail for the backend's
    /// sake.
    pub retry: RetryConfig,
    /// A listener the exporter serves (the Prometheus scrape endpoint): endpoint and router.
    pub listener: Option<(String, axum::Router)>,
    /// The store of a `memory` exporter, read by the admin endpoint.
    pub store: Option<Arc<MemoryStore>>,
    /// The series store of a `prometheus` exporter, read by the metrics explorer.
    pub series: Option<Arc<std::sync::Mutex<series::Store>>>,
    /// Tasks of the exporter's own that shutdown waits for, with its consumers.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Built {
    /// A sender without retries.
    pub fn new(sender: impl Export) -> Built {
        Built {
            sender: Box::new(sender),
            retry: RetryConfig {
                enabled: false,
                ..Default::default()
            },
            listener: None,
            store: None,
            series: None,
            tasks: Vec::new(),
        }
    }

    pub fn retrying(mut self, retry: &RetryConfig) -> Built {
        self.retry = retry.clone();
        self
    }
}

impl Exporter {
    /// Builds the exporter `spec` names and starts its queue and consumers. The table of kinds.
    pub fn build(spec: &ExporterSpec, metrics: Arc<SelfMetrics>) -> Result<Exporter, ExportError> {
        let name = spec.name.as_str();
        let built = match &spec.kind {
            ExporterKind::Otlp(c) => otlp::build(name, c)?,
            ExporterKind::Debug(c) => debug::build(name, c),
            ExporterKind::Prometheus(c) => prometheus::build(name, c, &metrics),
            ExporterKind::RemoteWrite(c) => remote_write::build(name, c, &metrics)?,
            ExporterKind::Blackhole(_) => Built::new(blackhole::Blackhole),
            ExporterKind::Memory(c) => memory::build(c, &metrics),
            ExporterKind::LoadBalancing(c) => loadbalancing::build(name, c, &metrics)?,
        };
        queue::start(
            name,
            built,
            spec.sending_queue(),
            spec.kind.circuit_breaker(),
            metrics,
        )
    }
}

pub(crate) use crate::telemetry::error_chain;

/// A backend's `Retry-After` in seconds.
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
