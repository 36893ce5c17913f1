//! The consumers of an exporter's queue: each takes a batch, hands it to the exporter's
//! [`Export`] and retries retryable failures with exponential backoff and full jitter
//! (honouring `Retry-After`) within `retry_on_failure`, waits while the circuit breaker is
//! open, drops on permanent errors and past the queue's `max_age`, and counts every drop with a
//! reason.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Mutex, mpsc};
use tracing::Instrument;

use super::ExporterStatus;
use super::breaker::Permit;
use super::disk::{DiskQueue, Ticket};
use crate::budget::ByteBudget;
use crate::config::RetryConfig;
use crate::exporters::Export;
use crate::model::Batch;
use crate::telemetry::metrics::SelfMetrics;

pub(super) struct Worker {
    pub(super) name: Arc<str>,
    pub(super) sender: Box<dyn Export>,
    pub(super) retry: RetryConfig,
    pub(super) max_age: Duration,
    pub(super) metrics: Arc<SelfMetrics>,
    pub(super) status: Arc<ExporterStatus>,
    pub(super) source: Source,
}

/// Where a worker takes batches from.
pub(super) enum Source {
    Memory(Mutex<mpsc::Receiver<super::Queued>>, Arc<ByteBudget>),
    Disk(Arc<DiskQueue>),
}

impl Worker {
    pub(super) async fn run(self: Arc<Self>) {
        let depth = self
            .metrics
            .exporter_queue_depth
            .with_label_values(&[&self.name]);
        let depth_bytes = self
            .metrics
            .exporter_queue_bytes
            .with_label_values(&[&self.name]);
        loop {
            // The batch's bytes of a memory queue's budget are held until it is sent.
            let (batch, ticket, held): (Arc<Batch>, Option<Ticket>, _) = match &self.source {
                Source::Memory(rx, _) => {
                    let mut rx = rx.lock().await;
                    let batch = rx.recv().await;
                    depth.set(rx.len() as i64);
                    match batch {
                        Some((b, held)) => (b, None, held),
                        None => break,
                    }
                }
                Source::Disk(q) => match q.next().await {
                    Some((b, t)) => (b, Some(t), crate::budget::BytesHeld::none()),
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
            drop(held);
            if let Source::Memory(_, budget) = &self.source {
                depth_bytes.set(budget.used_bytes() as i64);
            }
        }
        self.sender.finish();
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
            let result = self.sender.export(batch).await;
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
