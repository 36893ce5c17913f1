//! Pipelines: one per `service.pipelines` entry, each carrying one signal.
//!
//! Receivers hand a [`Batch`] to a pipeline through its [`PipelineHandle`]; the batch waits in the
//! pipeline's bounded queue, passes its processors, and is offered to every exporter's own
//! bounded queue. Admission is decided at the receiver: when the pipeline queue is full, or when
//! no exporter of the pipeline has room left, the receiver refuses with a retryable error, so a
//! well-behaved client retries and nothing is lost silently. When one exporter of several is full
//! (a slow backend), the others keep flowing and that exporter's drops are counted
//! (`sluice_dropped_records_total{reason="queue_full"}`).

mod batch;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use batch::{Batch, DecodeError, Payload, Rejected, Signal};

use crate::admin::metrics::SelfMetrics;
use crate::exporters::ExporterHandle;

/// Why a pipeline did not take a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    QueueFull,
    ShuttingDown,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::ShuttingDown => "shutting_down",
        }
    }
}

/// What receivers hold to submit batches. Cloning is cheap. It holds the exporters' queues only
/// weakly, so that exporters drain and stop once the pipelines are gone.
#[derive(Clone)]
pub struct PipelineHandle {
    pub name: Arc<str>,
    pub signal: Signal,
    tx: mpsc::Sender<Arc<Batch>>,
    exporters: Arc<[mpsc::WeakSender<Arc<Batch>>]>,
    metrics: Arc<SelfMetrics>,
}

impl std::fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineHandle")
            .field("name", &self.name)
            .finish()
    }
}

impl PipelineHandle {
    /// Whether a batch submitted now would be taken and delivered to at least one exporter.
    pub fn has_room(&self) -> bool {
        self.tx.capacity() > 0
            && self
                .exporters
                .iter()
                .any(|e| e.upgrade().is_some_and(|s| s.capacity() > 0))
    }

    pub fn try_submit(&self, batch: Arc<Batch>) -> Result<(), Refusal> {
        let result = self.tx.try_send(batch).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Refusal::QueueFull,
            mpsc::error::TrySendError::Closed(_) => Refusal::ShuttingDown,
        });
        self.metrics
            .pipeline_queue_depth
            .with_label_values(&[&self.name])
            .set((self.tx.max_capacity() - self.tx.capacity()) as i64);
        result
    }

    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn queue_capacity(&self) -> usize {
        self.tx.max_capacity()
    }
}

/// A running pipeline: its handle and the task that moves batches to the exporters.
pub struct Pipeline {
    pub handle: PipelineHandle,
    pub task: JoinHandle<()>,
}

impl Pipeline {
    /// The pipeline's queue, held weakly (it closes once the receivers are gone).
    pub fn handle_weak(&self) -> mpsc::WeakSender<Arc<Batch>> {
        self.handle.tx.downgrade()
    }

    /// Starts the pipeline's task. It ends once every handle is dropped and the queue is empty;
    /// dropping `exporters` then lets the exporters drain in turn.
    pub fn start(
        name: &str,
        signal: Signal,
        queue_size: usize,
        exporters: Vec<ExporterHandle>,
        metrics: Arc<SelfMetrics>,
    ) -> Pipeline {
        let (tx, rx) = mpsc::channel(queue_size);
        let name: Arc<str> = name.into();
        metrics
            .pipeline_queue_capacity
            .with_label_values(&[&name])
            .set(queue_size as i64);
        let handle = PipelineHandle {
            name: name.clone(),
            signal,
            tx,
            exporters: exporters.iter().map(|e| e.downgrade()).collect(),
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(run(name, rx, exporters, metrics));
        Pipeline { handle, task }
    }
}

async fn run(
    name: Arc<str>,
    mut rx: mpsc::Receiver<Arc<Batch>>,
    exporters: Vec<ExporterHandle>,
    metrics: Arc<SelfMetrics>,
) {
    let depth = metrics.pipeline_queue_depth.with_label_values(&[&name]);
    while let Some(batch) = rx.recv().await {
        depth.set(rx.len() as i64);
        // Processors (Wasm plugins) run here, once per batch.
        for exporter in &exporters {
            exporter.offer(batch.clone());
        }
    }
    tracing::debug!(pipeline = %name, "Pipeline drained and stopped.");
}
