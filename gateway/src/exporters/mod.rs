//! Exporters: each owns a bounded sending queue, a few consumer tasks, and retries.
//!
//! A pipeline offers every batch to each of its exporters ([`ExporterHandle::offer`]); the batch
//! waits in that exporter's queue, so a slow or dead backend fills only its own queue. Consumers
//! send with exponential backoff and full jitter on retryable errors (honouring `Retry-After`),
//! drop on permanent errors, and count every drop with a reason.

pub mod breaker;
mod debug;
pub mod disk_queue;
mod otlp;
pub mod prometheus;
mod remote_write;
pub mod series;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::{ExporterKind, ExporterSpec, RetryConfig};
use crate::model::Batch;
use crate::store::MemoryStore;
use crate::telemetry::metrics::SelfMetrics;
use breaker::{Breaker, Permit};
use disk_queue::{DiskQueue, Ticket, WriteError};

pub use debug::DebugExporter;
pub use otlp::OtlpExporter;
pub use prometheus::PrometheusExporter;
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

/// The sending side of one exporter.
pub enum Sender {
    Otlp(OtlpExporter),
    Debug(DebugExporter),
    Prometheus(PrometheusExporter),
    RemoteWrite(Box<RemoteWriteExporter>),
    /// Counts (in `sluice_exporter_sent_records_total`) and discards.
    Blackhole,
    /// Keeps traces and logs for the admin UI and the Jaeger query API.
    Memory(Arc<MemoryStore>),
}

impl Sender {
    async fn send(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        match self {
            Sender::Otlp(e) => e.send(batch).await,
            Sender::Debug(e) => e.send(batch),
            // Decoding and storing a batch holds the series store for a millisecond or more:
            // off the async workers, so receivers keep answering meanwhile.
            Sender::Prometheus(e) => crate::rt::blocking(|| e.send(batch)),
            Sender::RemoteWrite(e) => e.send(batch).await,
            Sender::Blackhole => Ok(Delivered::default()),
            Sender::Memory(store) => {
                store.insert(batch);
                Ok(Delivered::default())
            }
        }
    }
}

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
    Memory(mpsc::Sender<Arc<Batch>>),
    Disk(Arc<DiskSender>),
}

/// Closes the disk queue once the last handle is gone, so its consumers drain and stop.
struct DiskSender(Arc<DiskQueue>);

impl Drop for DiskSender {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Where a batch will go in one exporter's queue: see [`ExporterHandle::reserve`].
pub enum Reservation {
    Slot(mpsc::OwnedPermit<Arc<Batch>>),
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
    /// A place for the next batch, taken before the pipeline's processors run so the batch
    /// cannot find the queue full afterwards: a slot of a memory queue, or `Full`. Disk queues
    /// are written when the batch is delivered.
    pub fn reserve(&self) -> Reservation {
        match &self.queue {
            QueueTx::Disk(_) => Reservation::Disk,
            QueueTx::Memory(tx) => match tx.clone().try_reserve_owned() {
                Ok(permit) => Reservation::Slot(permit),
                Err(_) => Reservation::Full,
            },
        }
    }

    /// Waits for a slot in a full memory queue; `None` once it has closed (or for a disk
    /// queue, which never waits). Dropping the future gives up its place in line.
    pub async fn reserve_waiting(&self) -> Option<Reservation> {
        let QueueTx::Memory(tx) = &self.queue else {
            return None;
        };
        tx.clone().reserve_owned().await.ok().map(Reservation::Slot)
    }

    /// Puts the batch where `reservation` says: `Ok(false)` for `Full` (the caller counts the
    /// drop with [`ExporterHandle::count_drop`]); an error when a disk queue cannot write it.
    pub fn deliver(&self, reservation: Reservation, batch: Arc<Batch>) -> Result<bool, WriteError> {
        match (reservation, &self.queue) {
            (Reservation::Slot(permit), QueueTx::Memory(tx)) => {
                permit.send(batch);
                self.metrics
                    .exporter_queue_depth
                    .with_label_values(&[&self.name])
                    .set((tx.max_capacity() - tx.capacity()) as i64);
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
            QueueTx::Memory(tx) if tx.is_closed() => "shutting_down",
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
            QueueTx::Memory(_) => None,
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
}

/// What is left in an exporter's queue when shutdown runs out of time.
pub struct Leftovers(Arc<Worker>);

impl Leftovers {
    /// Counts and drops every batch still queued (`reason="shutdown"`). Call after the consumer
    /// tasks have been aborted.
    pub fn discard(&self) -> usize {
        let rx = match &self.0.source {
            Source::Memory(rx) => rx,
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
        while let Ok(batch) = rx.try_recv() {
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

impl Exporter {
    pub fn build(spec: &ExporterSpec, metrics: Arc<SelfMetrics>) -> Result<Exporter, ExportError> {
        let mut listener = None;
        let mut store = None;
        let (sender, retry) = match &spec.kind {
            ExporterKind::Prometheus(c) => {
                let e = PrometheusExporter::new(&spec.name, c, metrics.clone());
                listener = Some((c.endpoint.clone(), e.router()));
                (
                    Sender::Prometheus(e),
                    RetryConfig {
                        enabled: false,
                        ..Default::default()
                    },
                )
            }
            ExporterKind::Otlp(c) => (
                Sender::Otlp(OtlpExporter::new(&spec.name, c)?),
                c.retry_on_failure.clone(),
            ),
            ExporterKind::RemoteWrite(c) => (
                Sender::RemoteWrite(Box::new(RemoteWriteExporter::new(
                    &spec.name,
                    c,
                    metrics.clone(),
                )?)),
                c.retry_on_failure.clone(),
            ),
            ExporterKind::Blackhole(_) => (
                Sender::Blackhole,
                RetryConfig {
                    enabled: false,
                    ..Default::default()
                },
            ),
            ExporterKind::Debug(c) => (
                Sender::Debug(DebugExporter::new(&spec.name, c.verbosity)),
                RetryConfig {
                    enabled: false,
                    ..Default::default()
                },
            ),
            ExporterKind::Memory(c) => {
                let s = Arc::new(MemoryStore::new(c, metrics.clone()));
                store = Some(s.clone());
                (
                    Sender::Memory(s),
                    RetryConfig {
                        enabled: false,
                        ..Default::default()
                    },
                )
            }
        };
        let queue = spec.sending_queue();
        let name: Arc<str> = spec.name.as_str().into();
        let mut tasks = Vec::new();
        let (tx, source, probe) = match &queue.storage {
            None => {
                let (tx, rx) = mpsc::channel(queue.queue_size);
                let probe = crate::telemetry::QueueProbe::of(tx.downgrade());
                (QueueTx::Memory(tx), Source::Memory(Mutex::new(rx)), probe)
            }
            Some(_) => {
                let q = DiskQueue::open(&spec.name, queue, metrics.clone()).map_err(|e| {
                    ExportError::permanent(format!(
                        "exporters.{}.sending_queue.storage: {e}",
                        spec.name
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
        let breaker_config = match &spec.kind {
            ExporterKind::Otlp(c) => Some(c.circuit_breaker.clone()),
            ExporterKind::RemoteWrite(c) => Some(c.circuit_breaker.clone()),
            _ => None,
        };
        if let Some(c) = breaker_config {
            let gauge = metrics.exporter_breaker_state.with_label_values(&[&name]);
            let _ = status.breaker.set(Arc::new(Breaker::new(c, gauge)));
        }
        let worker = Arc::new(Worker {
            name: name.clone(),
            sender,
            retry,
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
            listener,
            store,
        })
    }
}

struct Worker {
    name: Arc<str>,
    sender: Sender,
    retry: RetryConfig,
    max_age: Duration,
    metrics: Arc<SelfMetrics>,
    status: Arc<ExporterStatus>,
    source: Source,
}

/// Where a worker takes batches from.
enum Source {
    Memory(Mutex<mpsc::Receiver<Arc<Batch>>>),
    Disk(Arc<DiskQueue>),
}

impl Worker {
    async fn run(self: Arc<Self>) {
        let depth = self
            .metrics
            .exporter_queue_depth
            .with_label_values(&[&self.name]);
        loop {
            let (batch, ticket): (Arc<Batch>, Option<Ticket>) = match &self.source {
                Source::Memory(rx) => {
                    let mut rx = rx.lock().await;
                    let batch = rx.recv().await;
                    depth.set(rx.len() as i64);
                    match batch {
                        Some(b) => (b, None),
                        None => break,
                    }
                }
                Source::Disk(q) => match q.next().await {
                    Some((b, t)) => (b, Some(t)),
                    None => break,
                },
            };
            let span = tracing::debug_span!(parent: &batch.span, "export", exporter = %self.name);
            self.deliver(&batch).instrument(span).await;
            // Delivered, or dropped for a counted reason: the disk queue may forget it. A worker
            // aborted at shutdown never gets here, so its batch stays on disk.
            if let (Source::Disk(q), Some(t)) = (&self.source, ticket) {
                crate::rt::blocking(|| q.done(t));
            }
        }
    }

    async fn deliver(&self, batch: &Batch) {
        let signal = batch.signal().as_str();
        let component = format!("exporter/{}", self.name);
        let started = Instant::now();
        let mut interval = self.retry.initial_interval;
        loop {
            if !self.max_age.is_zero() && batch.received_at.elapsed() > self.max_age {
                tracing::warn!(exporter = %self.name, signal, records = batch.records(), max_age_ms = self.max_age.as_millis() as u64, correlation_id = %batch.correlation_id, "Dropping a batch older than the queue's max_age.");
                self.metrics
                    .drop_records(&component, signal, "max_age", batch.records());
                return;
            }
            if let Some(b) = self.status.breaker.get()
                && let Permit::Wait(d) = b.permit()
            {
                // Open: the batch waits, within its retry budget (and max_age, next turn).
                if self.retry.enabled && started.elapsed() >= self.retry.max_elapsed_time {
                    tracing::warn!(exporter = %self.name, signal, records = batch.records(), "Dropping a batch whose retry budget ran out while the circuit breaker was open.");
                    self.metrics.drop_records(
                        &component,
                        signal,
                        "retries_exhausted",
                        batch.records(),
                    );
                    return;
                }
                let budget = self
                    .retry
                    .max_elapsed_time
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_millis(10));
                tokio::time::sleep(d.min(Duration::from_millis(500)).min(budget)).await;
                continue;
            }
            let attempt = Instant::now();
            let result = self.sender.send(batch).await;
            if let Some(b) = self.status.breaker.get() {
                match &result {
                    Err(e) if e.retryable => b.failure(),
                    _ => b.success(),
                }
            }
            self.metrics
                .exporter_send_duration
                .with_label_values(&[&self.name, signal])
                .observe(attempt.elapsed().as_secs_f64());
            match result {
                Ok(delivered) => {
                    self.status.consecutive_failures.store(0, Ordering::Relaxed);
                    let sent = (batch.records() as u64).saturating_sub(delivered.rejected);
                    self.metrics
                        .exporter_sent
                        .with_label_values(&[&self.name, signal])
                        .inc_by(sent);
                    if delivered.rejected > 0 {
                        tracing::warn!(exporter = %self.name, signal, rejected = delivered.rejected, message = %delivered.message, "Backend rejected part of a batch.");
                        self.metrics.drop_records(
                            &component,
                            signal,
                            "rejected_by_backend",
                            delivered.rejected as usize,
                        );
                    }
                    return;
                }
                Err(e) => {
                    self.status
                        .consecutive_failures
                        .fetch_add(1, Ordering::Relaxed);
                    *self
                        .status
                        .last_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(e.message.clone());
                    self.metrics
                        .exporter_send_failures
                        .with_label_values(&[
                            &*self.name,
                            signal,
                            if e.retryable { "true" } else { "false" },
                        ])
                        .inc();
                    let reason = if !e.retryable {
                        Some("permanent_error")
                    } else if !self.retry.enabled {
                        Some("retry_disabled")
                    } else if started.elapsed() >= self.retry.max_elapsed_time {
                        Some("retries_exhausted")
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        tracing::warn!(exporter = %self.name, signal, records = batch.records(), reason, error = %e.message, correlation_id = %batch.correlation_id, "Dropping a batch the backend did not take.");
                        self.metrics
                            .drop_records(&component, signal, reason, batch.records());
                        return;
                    }
                    let wait = backoff(interval, e.retry_after, self.retry.max_interval).min(
                        self.retry
                            .max_elapsed_time
                            .saturating_sub(started.elapsed()),
                    );
                    tracing::debug!(exporter = %self.name, signal, error = %e.message, wait_ms = wait.as_millis() as u64, "Send failed; retrying.");
                    tokio::time::sleep(wait).await;
                    interval = interval
                        .mul_f64(self.retry.multiplier)
                        .min(self.retry.max_interval);
                }
            }
        }
    }
}

/// An error with its sources, for messages a person can act on ("connection refused").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A backend's `Retry-After` in seconds.
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Full jitter: a uniformly random wait in `[0, interval]`, or the backend's `Retry-After` if it
/// asked for longer.
fn backoff(interval: Duration, retry_after: Option<Duration>, max: Duration) -> Duration {
    let jittered = interval.mul_f64(rand::rng().random_range(0.0..=1.0));
    match retry_after {
        Some(r) => r.min(max.max(interval)).max(jittered),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_within_interval_and_honours_retry_after() {
        for _ in 0..100 {
            let b = backoff(Duration::from_secs(2), None, Duration::from_secs(30));
            assert!(b <= Duration::from_secs(2));
        }
        let b = backoff(
            Duration::from_millis(10),
            Some(Duration::from_secs(3)),
            Duration::from_secs(30),
        );
        assert_eq!(b, Duration::from_secs(3));
    }
}
