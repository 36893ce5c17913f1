//! What every exporter shares, as the Collector's `exporterhelper`: a bounded sending queue
//! (in memory, or on disk: [`disk`]), consumers that retry (`worker`), a circuit breaker for
//! network exporters ([`breaker`]), and the handle pipelines offer batches through
//! ([`ExporterHandle`]). An exporter kind only provides its [`Export`](super::Export); `start` puts this
//! machinery around it.
//!
//! A pipeline offers every batch to each of its exporters; the batch waits in that exporter's
//! queue, so a slow or dead backend fills only its own queue.

pub mod breaker;
pub mod disk;
mod worker;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use super::{Built, ExportError};
use crate::budget::{ByteBudget, BytesHeld};
use crate::config::{BreakerConfig, SendingQueueConfig};
use crate::model::Batch;
use crate::store::MemoryStore;
use crate::telemetry::metrics::SelfMetrics;
use breaker::Breaker;
use disk::{DiskQueue, WriteError};
use worker::{Source, Worker};

/// Health of one exporter, shown by `/health/detailed`.
#[derive(Debug, Default)]
pub struct ExporterStatus {
    pub consecutive_failures: AtomicU64,
    pub last_error: std::sync::Mutex<Option<String>>,
    /// The circuit breaker of a network exporter.
    pub breaker: std::sync::OnceLock<Arc<Breaker>>,
}

/// The pipelines' side of an exporter: offer batches to its queue.
#[derive(Clone)]
pub struct ExporterHandle {
    pub name: Arc<str>,
    queue: QueueTx,
    metrics: Arc<SelfMetrics>,
}

#[derive(Clone)]
enum QueueTx {
    Memory(mpsc::Sender<Queued>, Arc<ByteBudget>),
    Disk(Arc<DiskSender>),
}

/// A batch in a memory queue, holding its bytes of the queue's budget until it is sent.
pub(super) type Queued = (Arc<Batch>, BytesHeld);

/// Closes the disk queue once the last handle is gone, so its consumers drain and stop.
struct DiskSender(Arc<DiskQueue>);

impl Drop for DiskSender {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Where a batch will go in one exporter's queue: see [`ExporterHandle::reserve`].
pub enum Reservation {
    Slot(mpsc::OwnedPermit<Queued>, BytesHeld),
    Disk,
    Full,
}

/// Whether a disk queue has room, without keeping it open.
#[derive(Clone)]
pub struct DiskRoom(std::sync::Weak<DiskQueue>);

impl crate::inlet::Room for DiskRoom {
    fn has_room(&self) -> bool {
        self.0.upgrade().is_some_and(|q| q.has_room())
    }
}

impl ExporterHandle {
    /// A place for the next batch (of `bytes`), taken before the pipeline's processors run so
    /// the batch cannot find the queue full afterwards: a slot and the bytes of a memory
    /// queue, or `Full`. Disk queues are written when the batch is delivered.
    pub fn reserve(&self, bytes: usize) -> Reservation {
        match &self.queue {
            QueueTx::Disk(_) => Reservation::Disk,
            QueueTx::Memory(tx, budget) => match tx.clone().try_reserve_owned() {
                Ok(permit) => match budget.try_take(bytes) {
                    Some(held) => Reservation::Slot(permit, held),
                    None => Reservation::Full,
                },
                Err(_) => Reservation::Full,
            },
        }
    }

    /// Waits for a slot and `bytes` in a full memory queue; `None` once it has closed (or for
    /// a disk queue, which never waits). Dropping the future gives up its place in line.
    pub async fn reserve_waiting(&self, bytes: usize) -> Option<Reservation> {
        let QueueTx::Memory(tx, budget) = &self.queue else {
            return None;
        };
        let permit = tx.clone().reserve_owned().await.ok()?;
        Some(Reservation::Slot(permit, budget.take(bytes).await))
    }

    /// Puts the batch where `reservation` says: `Ok(false)` for `Full` (the caller counts the
    /// drop with [`ExporterHandle::count_drop`]); an error when a disk queue cannot write it.
    pub fn deliver(&self, reservation: Reservation, batch: Arc<Batch>) -> Result<bool, WriteError> {
        match (reservation, &self.queue) {
            (Reservation::Slot(permit, held), QueueTx::Memory(tx, budget)) => {
                permit.send((batch, held));
                self.metrics
                    .exporter_queue_depth
                    .with_label_values(&[&self.name])
                    .set((tx.max_capacity() - tx.capacity()) as i64);
                self.metrics
                    .exporter_queue_bytes
                    .with_label_values(&[&self.name])
                    .set(budget.used_bytes() as i64);
                Ok(true)
            }
            (Reservation::Disk, QueueTx::Disk(q)) => {
                crate::rt::blocking(|| q.0.append(&batch)).map(|()| true)
            }
            _ => Ok(false),
        }
    }

    /// Counts a batch that found this exporter's queue full (or closed) as dropped.
    pub fn count_drop(&self, batch: &Batch) {
        let reason = match &self.queue {
            QueueTx::Memory(tx, _) if tx.is_closed() => "shutting_down",
            _ => "queue_full",
        };
        let (signal, records) = (batch.signal(), batch.records());
        tracing::warn!(exporter = %self.name, signal = %signal, records, reason, "Exporter queue cannot take the batch; dropping it.");
        self.metrics.drop_records(
            &format!("exporter/{}", self.name),
            signal.as_str(),
            reason,
            records,
        );
    }

    /// Whether the queue keeps batches on disk: the client is answered only once the batch is
    /// written.
    pub fn is_durable(&self) -> bool {
        matches!(self.queue, QueueTx::Disk(_))
    }

    /// For a disk queue, a look at its room that does not keep it open. (Memory queues need
    /// none: a pipeline waits for room in them, see [`ExporterHandle::reserve`].)
    pub fn disk_room(&self) -> Option<DiskRoom> {
        match &self.queue {
            QueueTx::Memory(..) => None,
            QueueTx::Disk(q) => Some(DiskRoom(Arc::downgrade(&q.0))),
        }
    }
}

/// A running exporter: the handle pipelines hold, and its consumer tasks.
pub struct Exporter {
    pub handle: ExporterHandle,
    pub status: Arc<ExporterStatus>,
    pub queue: crate::telemetry::QueueProbe,
    pub capacity: usize,
    pub tasks: Vec<JoinHandle<()>>,
    pub leftovers: Leftovers,
    /// A listener the exporter serves (the Prometheus scrape endpoint): endpoint and router.
    pub listener: Option<(String, axum::Router)>,
    /// The store of a `memory` exporter, read by the admin endpoint.
    pub store: Option<Arc<MemoryStore>>,
    /// The series store of a `prometheus` exporter, read by the metrics explorer.
    pub series: Option<Arc<std::sync::Mutex<crate::exporters::series::Store>>>,
}

/// What is left in an exporter's queue when shutdown runs out of time.
pub struct Leftovers(Arc<Worker>);

impl Leftovers {
    /// Counts and drops every batch still queued (`reason="shutdown"`). Call after the consumer
    /// tasks have been aborted.
    pub fn discard(&self) -> usize {
        let rx = match &self.0.source {
            Source::Memory(rx, _) => rx,
            Source::Disk(q) => {
                q.sync();
                let pending = q.pending();
                if pending > 0 {
                    tracing::info!(exporter = %self.0.name, batches = pending, "Undelivered batches stay in the disk queue for the next start.");
                }
                return 0;
            }
        };
        let Ok(mut rx) = rx.try_lock() else {
            return 0;
        };
        let mut records = 0;
        while let Ok((batch, _)) = rx.try_recv() {
            records += batch.records();
            self.0.metrics.drop_records(
                &format!("exporter/{}", self.0.name),
                batch.signal().as_str(),
                "shutdown",
                batch.records(),
            );
        }
        records
    }
}

/// Starts the queue and consumers of the exporter `spec_name` around what its kind built.
pub(super) fn start(
    spec_name: &str,
    built: Built,
    queue: &SendingQueueConfig,
    breaker: Option<&BreakerConfig>,
    metrics: Arc<SelfMetrics>,
) -> Result<Exporter, ExportError> {
    let name: Arc<str> = spec_name.into();
    let mut tasks = Vec::new();
    let (tx, source, probe) = match &queue.storage {
        None => {
            let (tx, rx) = mpsc::channel(queue.queue_size);
            let probe = crate::telemetry::QueueProbe::of(tx.downgrade());
            let budget = ByteBudget::mib(queue.size_limit_mib());
            metrics
                .exporter_queue_capacity_bytes
                .with_label_values(&[&name])
                .set(budget.limit_bytes() as i64);
            (
                QueueTx::Memory(tx, budget.clone()),
                Source::Memory(Mutex::new(rx), budget),
                probe,
            )
        }
        Some(_) => {
            let q = DiskQueue::open(spec_name, queue, metrics.clone()).map_err(|e| {
                ExportError::permanent(format!(
                    "exporters.{}.sending_queue.storage: {e}",
                    spec_name
                ))
            })?;
            if queue.fsync == crate::config::FsyncPolicy::Interval {
                tasks.push(tokio::spawn(DiskQueue::sync_every(
                    Arc::downgrade(&q),
                    queue.fsync_interval,
                )));
            }
            let weak = Arc::downgrade(&q);
            let probe = crate::telemetry::QueueProbe::new(move || {
                weak.upgrade()
                    .filter(|q| !q.is_closed())
                    .map(|q| q.pending())
            });
            (
                QueueTx::Disk(Arc::new(DiskSender(q.clone()))),
                Source::Disk(q),
                probe,
            )
        }
    };
    metrics
        .exporter_queue_capacity
        .with_label_values(&[&name])
        .set(queue.queue_size as i64);
    let status = Arc::new(ExporterStatus::default());
    if let Some(c) = breaker {
        let gauge = metrics.exporter_breaker_state.with_label_values(&[&name]);
        let _ = status.breaker.set(Arc::new(Breaker::new(c.clone(), gauge)));
    }
    tasks.extend(built.tasks);
    let worker = Arc::new(Worker {
        name: name.clone(),
        sender: built.sender,
        retry: built.retry,
        max_age: queue.max_age,
        metrics: metrics.clone(),
        status: status.clone(),
        source,
    });
    tasks.extend((0..queue.num_consumers).map(|_| tokio::spawn(worker.clone().run())));
    let leftovers = Leftovers(worker);
    Ok(Exporter {
        handle: ExporterHandle {
            name,
            queue: tx,
            metrics,
        },
        status,
        queue: probe,
        capacity: queue.queue_size,
        tasks,
        leftovers,
        listener: built.listener,
        store: built.store,
        series: built.series,
    })
}
