//! A pipeline's inlet: what receivers (and the plugins' emit router) hold to hand it batches.
//!
//! A [`PipelineHandle`] admits a batch into the pipeline's bounded queue ([`Admission`], waiting
//! up to [`ADMISSION_WAIT`] for room) or refuses it with a [`Refusal`]; a pipeline whose
//! processors may reject answers each submission through an [`Ack`]. This is the interface
//! between the receivers and the pipeline, as the Collector's `consumer` package is: receivers
//! import it, not the pipeline that implements the other end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::budget::{ByteBudget, BytesHeld};
use crate::model::{Batch, Signal};
use crate::telemetry::metrics::SelfMetrics;

/// A bounded store behind a pipeline (an exporter's disk queue) that can say it is full, so the
/// pipeline refuses at once instead of taking a batch it cannot keep.
pub trait Room: Send + Sync {
    fn has_room(&self) -> bool;
}

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
    /// Every exporter's queue stayed full while the batch waited for room before the
    /// processors.
    QueueFull,
}

/// A reserved place in a pipeline's queue: see [`PipelineHandle::admit`].
pub struct Admission(mpsc::OwnedPermit<Submission>, BytesHeld);

/// The answer to a submission to a pipeline with processors.
pub type Ack = oneshot::Receiver<Result<(), Rejection>>;

pub(crate) struct Submission {
    pub(crate) batch: Arc<Batch>,
    pub(crate) ack: Option<oneshot::Sender<Result<(), Rejection>>>,
    /// Its bytes of the queue's budget, given back once the pipeline has handed it on.
    pub(crate) bytes: BytesHeld,
}

/// What receivers hold to submit batches. Cloning is cheap. It holds the exporters' queues only
/// weakly, so that exporters drain and stop once the pipelines are gone.
#[derive(Clone)]
pub struct PipelineHandle {
    pub name: Arc<str>,
    pub signal: Signal,
    pub(crate) tx: mpsc::Sender<Submission>,
    /// The disk queues of its exporters: a full one refuses at once.
    disk_queues: Arc<[Box<dyn Room>]>,
    /// Whether submissions are answered once the pipeline is done with them (processors that
    /// may reject, disk queues that must have written the batch first).
    needs_ack: bool,
    /// The queue's size limit in bytes.
    bytes: Arc<ByteBudget>,
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
    /// The handle of a pipeline whose task reads `tx`'s other end.
    pub(crate) fn new(
        name: Arc<str>,
        signal: Signal,
        tx: mpsc::Sender<Submission>,
        disk_queues: Vec<Box<dyn Room>>,
        needs_ack: bool,
        bytes: Arc<ByteBudget>,
        metrics: Arc<SelfMetrics>,
    ) -> PipelineHandle {
        PipelineHandle {
            name,
            signal,
            tx,
            disk_queues: disk_queues.into(),
            needs_ack,
            bytes,
            metrics,
        }
    }

    /// A place in the pipeline's queue for one batch of `bytes`, waiting up to `limit` while
    /// the queue is full (of batches or of bytes) (backpressure: a burst holds clients briefly instead of refusing them, and a
    /// refused client's immediate retry costs as much as the request itself). A full or
    /// failing disk queue of one of its exporters refuses at once: the retry would otherwise
    /// duplicate the batch in the pipeline's other exporters.
    pub async fn admit(&self, bytes: usize, limit: Duration) -> Result<Admission, Refusal> {
        let deadline = tokio::time::Instant::now() + limit;
        if self.disk_queues.iter().any(|q| !q.has_room()) {
            return Err(Refusal::StorageFull);
        }
        let closed = |_| Refusal::ShuttingDown;
        let permit = match self.tx.clone().try_reserve_owned() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Refusal::ShuttingDown),
            Err(mpsc::error::TrySendError::Full(_)) if limit.is_zero() => {
                return Err(Refusal::QueueFull);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                match tokio::time::timeout(limit, self.tx.clone().reserve_owned()).await {
                    Ok(permit) => permit.map_err(closed)?,
                    Err(_) => return Err(Refusal::QueueFull),
                }
            }
        };
        let held = match self.bytes.try_take(bytes) {
            Some(held) => held,
            None if limit.is_zero() => return Err(Refusal::QueueFull),
            None => tokio::time::timeout_at(deadline, self.bytes.take(bytes))
                .await
                .map_err(|_| Refusal::QueueFull)?,
        };
        Ok(Admission(permit, held))
    }

    /// Queues an admitted batch. For a pipeline with processors, returns the [`Ack`] that
    /// tells when they are done (and whether one rejected the batch).
    pub fn submit(&self, admission: Admission, batch: Arc<Batch>) -> Option<Ack> {
        let (ack, answer) = if self.needs_ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let Admission(permit, bytes) = admission;
        permit.send(Submission { batch, ack, bytes });
        self.metrics
            .pipeline_queue_depth
            .with_label_values(&[&self.name])
            .set(self.queue_depth() as i64);
        self.metrics
            .pipeline_queue_bytes
            .with_label_values(&[&self.name])
            .set(self.bytes.used_bytes() as i64);
        answer
    }

    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn queue_capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// The bytes of the batches in the queue, and the queue's limit.
    pub fn queue_bytes(&self) -> (u64, u64) {
        (self.bytes.used_bytes(), self.bytes.limit_bytes())
    }
}

/// How long a receiver holds a batch for room in full queues before refusing it.
pub const ADMISSION_WAIT: Duration = Duration::from_millis(500);

/// How long a receiver waits for a pipeline's processors before answering "retry later".
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);
