//! Pipelines: one per `service.pipelines` entry, each carrying one signal.
//!
//! Receivers hand a [`Batch`] to a pipeline through its [`PipelineHandle`]; the batch waits in the
//! pipeline's bounded queue, passes its processors (Wasm plugins, once per batch), and is
//! offered to every exporter's own bounded queue. Admission is decided at the receiver: when the
//! pipeline queue is full, or when no exporter of the pipeline has room left, the receiver
//! refuses with a retryable error, so a well-behaved client retries and nothing is lost
//! silently. When one exporter of several is full (a slow backend), the others keep flowing and
//! that exporter's drops are counted (`sluice_dropped_records_total{reason="queue_full"}`).
//!
//! A pipeline with processors answers each submission once its processors are done, so a
//! processor's `on_error: reject` reaches the client as a retryable error. Telemetry a plugin
//! emits enters the pipelines of its signal through the [`EmitRouter`], never reaching the
//! processor that emitted it again.

mod batch;
pub mod limits;
pub mod scan;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use batch::{Batch, DecodeError, Payload, Rejected, Signal};

use crate::admin::metrics::SelfMetrics;
use crate::exporters::{ExporterHandle, Room};
use crate::plugins::{Emitted, Outcome, Processor};

/// Why a pipeline did not take a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    QueueFull,
    ShuttingDown,
    /// The process is above the memory limiter's soft limit.
    MemoryLimit,
    /// An exporter's disk queue is full or cannot be written.
    StorageFull,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::MemoryLimit => "memory_limit",
            Refusal::StorageFull => "storage_full",
        }
    }
}

/// Why a pipeline turned a submitted batch down after taking it, for the client (who retries).
#[derive(Debug, Clone)]
pub enum Rejection {
    /// A processor's `on_error: reject`.
    Processor(String),
    /// A disk queue could not write the batch (full or I/O error).
    Storage(String),
    /// Every exporter's queue was full when the batch left the processors (they filled up
    /// while it was being processed).
    QueueFull,
}

/// The answer to a submission to a pipeline with processors.
pub type Ack = oneshot::Receiver<Result<(), Rejection>>;

struct Submission {
    batch: Arc<Batch>,
    ack: Option<oneshot::Sender<Result<(), Rejection>>>,
}

/// What receivers hold to submit batches. Cloning is cheap. It holds the exporters' queues only
/// weakly, so that exporters drain and stop once the pipelines are gone.
#[derive(Clone)]
pub struct PipelineHandle {
    pub name: Arc<str>,
    pub signal: Signal,
    tx: mpsc::Sender<Submission>,
    exporters: Arc<[Room]>,
    /// Whether submissions are answered once the pipeline is done with them (processors that
    /// may reject, disk queues that must have written the batch first).
    needs_ack: bool,
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
        self.check_room().is_ok()
    }

    /// Like [`Self::has_room`], with the refusal to give when there is none.
    pub fn check_room(&self) -> Result<(), Refusal> {
        if self.tx.capacity() == 0 {
            return Err(Refusal::QueueFull);
        }
        // A disk queue must take every batch the client is told was accepted: when one is
        // full, refuse before any exporter gets a copy (the retry would duplicate it there).
        if self
            .exporters
            .iter()
            .any(|e| matches!(e, Room::Disk(_)) && !e.has_room())
        {
            return Err(Refusal::StorageFull);
        }
        if self.exporters.iter().any(|e| e.has_room()) {
            Ok(())
        } else {
            Err(Refusal::QueueFull)
        }
    }

    /// Queues the batch. For a pipeline with processors, returns the [`Ack`] that tells when
    /// they are done (and whether one rejected the batch).
    pub fn try_submit(&self, batch: Arc<Batch>) -> Result<Option<Ack>, Refusal> {
        let (ack, answer) = if self.needs_ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let result = self
            .tx
            .try_send(Submission { batch, ack })
            .map(|_| answer)
            .map_err(|e| match e {
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

/// Reads a queue's depth without keeping the queue open; `None` once it has closed.
#[derive(Clone)]
pub struct QueueProbe(Arc<dyn Fn() -> Option<usize> + Send + Sync>);

impl std::fmt::Debug for QueueProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueProbe")
    }
}

impl QueueProbe {
    pub fn new(depth: impl Fn() -> Option<usize> + Send + Sync + 'static) -> QueueProbe {
        QueueProbe(Arc::new(depth))
    }

    pub fn of<T: Send + 'static>(queue: mpsc::WeakSender<T>) -> QueueProbe {
        QueueProbe(Arc::new(move || {
            queue.upgrade().map(|s| s.max_capacity() - s.capacity())
        }))
    }

    pub fn depth(&self) -> Option<usize> {
        (self.0)()
    }
}

/// A pipeline emitted telemetry can enter: its signal, name and queue.
type EmitTarget = (Signal, Arc<str>, mpsc::WeakSender<Submission>);

/// Routes telemetry emitted by plugins into the pipelines of its signal. Holds the pipelines
/// weakly, so it never keeps them from shutting down.
#[derive(Default)]
pub struct EmitRouter {
    pipelines: OnceLock<Vec<EmitTarget>>,
    metrics: OnceLock<Arc<SelfMetrics>>,
    /// What SLO plugins report, for `/api/v1/slos`.
    pub slos: crate::slo::SloBoard,
}

impl std::fmt::Debug for EmitRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmitRouter")
    }
}

impl EmitRouter {
    pub fn new() -> Arc<EmitRouter> {
        Arc::new(EmitRouter::default())
    }

    /// Called once every pipeline runs.
    pub fn connect(&self, pipelines: &[Pipeline], metrics: Arc<SelfMetrics>) {
        let _ = self.pipelines.set(
            pipelines
                .iter()
                .map(|p| {
                    (
                        p.handle.signal,
                        p.handle.name.clone(),
                        p.handle.tx.downgrade(),
                    )
                })
                .collect(),
        );
        let _ = self.metrics.set(metrics);
    }

    pub fn route(&self, processor: &Arc<str>, emitted: Emitted) {
        let Some(pipelines) = self.pipelines.get() else {
            return;
        };
        for (signal, data) in emitted {
            let payload = match Payload::decode_protobuf(signal, &data) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(processor = %processor, error = %e, "Plugin emitted invalid telemetry; ignoring it.");
                    continue;
                }
            };
            if let Payload::Metrics(m) = &payload {
                self.slos.observe(m);
            }
            let mut batch = Batch::new(
                payload,
                Some(data.into()),
                format!("plugin/{processor}").into(),
            );
            batch.origin = Some(processor.clone());
            let batch = Arc::new(batch);
            for (s, name, tx) in pipelines {
                if *s != signal {
                    continue;
                }
                let sent = tx.upgrade().map(|tx| {
                    tx.try_send(Submission {
                        batch: batch.clone(),
                        ack: None,
                    })
                });
                if !matches!(sent, Some(Ok(())))
                    && let Some(m) = self.metrics.get()
                {
                    m.drop_records(
                        &format!("pipeline/{name}"),
                        signal.as_str(),
                        "queue_full",
                        batch.records(),
                    );
                }
            }
        }
    }
}

/// A running pipeline: its handle and the task that moves batches to the exporters.
pub struct Pipeline {
    pub handle: PipelineHandle,
    pub task: JoinHandle<()>,
}

impl Pipeline {
    /// A look at the pipeline's queue that does not keep it open.
    pub fn probe(&self) -> QueueProbe {
        QueueProbe::of(self.handle.tx.downgrade())
    }

    /// Starts the pipeline's task. It ends once every handle is dropped and the queue is empty;
    /// dropping `exporters` then lets the exporters drain in turn.
    pub fn start(
        name: &str,
        signal: Signal,
        queue_size: usize,
        processors: Vec<Arc<Processor>>,
        exporters: Vec<ExporterHandle>,
        emit: Arc<EmitRouter>,
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
            exporters: exporters.iter().map(|e| e.room()).collect(),
            needs_ack: !processors.is_empty() || exporters.iter().any(|e| e.is_durable()),
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(run(name, rx, processors, exporters, emit, metrics));
        Pipeline { handle, task }
    }
}

/// How long a receiver waits for a pipeline's processors before answering "retry later".
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the processors in order; `Ok(None)` when the batch ends here.
fn run_chain(
    processors: &[Arc<Processor>],
    mut batch: Arc<Batch>,
    emitted: &mut Vec<(Arc<str>, Emitted)>,
) -> Result<Option<Arc<Batch>>, Rejection> {
    for p in processors {
        if batch.origin.as_deref() == Some(&*p.name) {
            continue;
        }
        let (outcome, out) = p.process(batch);
        if !out.is_empty() {
            emitted.push((p.name.clone(), out));
        }
        match outcome {
            Outcome::Forward(b) => batch = b,
            Outcome::Drop { .. } => return Ok(None),
            Outcome::Reject { message } => return Err(Rejection::Processor(message)),
        }
    }
    Ok(Some(batch))
}

/// Runs CPU-bound plugin work without stalling the runtime's other tasks.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

async fn run(
    name: Arc<str>,
    mut rx: mpsc::Receiver<Submission>,
    processors: Vec<Arc<Processor>>,
    exporters: Vec<ExporterHandle>,
    emit: Arc<EmitRouter>,
    metrics: Arc<SelfMetrics>,
) {
    let depth = metrics.pipeline_queue_depth.with_label_values(&[&name]);
    while let Some(Submission { batch, ack }) = rx.recv().await {
        depth.set(rx.len() as i64);
        let mut emitted = Vec::new();
        let result = if processors.is_empty() {
            Ok(Some(batch))
        } else {
            let _span = batch.span.enter();
            blocking(|| run_chain(&processors, batch.clone(), &mut emitted))
        };
        for (processor, out) in emitted {
            emit.route(&processor, out);
        }
        let (mut answer, batch) = match result {
            Ok(b) => (Ok(()), b),
            Err(rejection) => (Err(rejection), None),
        };
        if let Some(batch) = batch {
            // Memory queues that were full: counted as drops only once some exporter has the
            // batch; when none has, a waiting client is refused instead and retries.
            let mut full = Vec::new();
            let mut taken = false;
            for exporter in &exporters {
                match exporter.offer(batch.clone()) {
                    Ok(true) => taken = true,
                    Ok(false) => full.push(exporter),
                    Err(e) if ack.is_some() => {
                        // The client is refused and retries; exporters that took the batch
                        // may get it twice (at least once).
                        if answer.is_ok() {
                            answer = Err(Rejection::Storage(e.message().to_string()));
                        }
                    }
                    Err(e) => metrics.drop_records(
                        &format!("exporter/{}", exporter.name),
                        batch.signal().as_str(),
                        &format!("storage_{}", e.reason()),
                        batch.records(),
                    ),
                }
            }
            if ack.is_some() && !taken && !full.is_empty() {
                if answer.is_ok() {
                    answer = Err(Rejection::QueueFull);
                }
            } else {
                for exporter in full {
                    exporter.count_drop(&batch);
                }
            }
        }
        if let Some(ack) = ack {
            let _ = ack.send(answer);
        }
    }
    tracing::debug!(pipeline = %name, "Pipeline drained and stopped.");
}
