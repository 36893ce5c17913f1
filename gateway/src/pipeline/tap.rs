//! Taps: a look at the batches passing one point of a pipeline, for `sluice tap` and the web
//! UI (`GET /api/v1/tap`).
//!
//! A pipeline with processors `p0 … pn-1` has the points `0 … n`: point `k` is before `pk`,
//! point `k + 1` after it, point `n` what the exporters get. A tap holds a small bounded queue of
//! batches: a batch is offered to it without waiting, and one that finds the queue full is not
//! shown (the tap samples what it can keep up with). Without a tap, offering a batch costs one
//! atomic load per point.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::model::Batch;

/// Batches a tap holds before it skips new ones.
pub const TAP_QUEUE: usize = 4;
/// Taps open at once across the gateway.
pub const MAX_TAPS: usize = 8;

/// The taps of one pipeline.
#[derive(Debug, Default)]
pub struct Taps {
    /// Open taps, checked before anything else on the batch path.
    open: AtomicUsize,
    subscribers: Mutex<Vec<(usize, mpsc::Sender<Arc<Batch>>)>>,
}

/// Counts open taps across the gateway, to bound them.
#[derive(Debug, Default)]
pub struct TapBudget(AtomicUsize);

/// An open tap: batches arrive on `rx`; dropping it closes the tap.
#[derive(Debug)]
pub struct Tap {
    pub rx: mpsc::Receiver<Arc<Batch>>,
    budget: Arc<TapBudget>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.budget.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Taps {
    /// Opens a tap at `point`; `None` when [`MAX_TAPS`] are open.
    pub fn open(&self, point: usize, budget: &Arc<TapBudget>) -> Option<Tap> {
        let taken = budget
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_TAPS).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            return None;
        }
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        let mut subscribers = self.lock();
        subscribers.push((point, tx));
        self.open.store(subscribers.len(), Ordering::Relaxed);
        Some(Tap {
            rx,
            budget: budget.clone(),
        })
    }

    /// Offers `batch` at `point` to the taps there; forgets taps that were closed.
    #[inline]
    pub fn offer(&self, point: usize, batch: &Arc<Batch>) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut subscribers = self.lock();
        subscribers.retain(|(at, tx)| {
            if tx.is_closed() {
                return false;
            }
            if *at == point {
                // Full: this batch is not shown (sampling), the tap stays.
                let _ = tx.try_send(batch.clone());
            }
            true
        });
        self.open.store(subscribers.len(), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(usize, mpsc::Sender<Arc<Batch>>)>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a tap looks, as `sluice tap` and the API name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Before the pipeline's first processor: what the receivers handed over.
    Received,
    Before(String),
    After(String),
    /// What the exporter gets (all of a pipeline's exporters get the same batches).
    Exporter(String),
}

/// The point of `place` in a pipeline with `processors` and `exporters`, or why there is none.
pub fn point_of(
    place: &Place,
    processors: &[String],
    exporters: &[String],
) -> Result<usize, String> {
    let index = |name: &str| {
        processors.iter().position(|p| p == name).ok_or_else(|| {
            format!("the pipeline has no processor {name:?}; its processors: {processors:?}")
        })
    };
    match place {
        Place::Received => Ok(0),
        Place::Before(p) => index(p),
        Place::After(p) => index(p).map(|i| i + 1),
        Place::Exporter(e) if exporters.iter().any(|x| x == e) => Ok(processors.len()),
        Place::Exporter(e) => Err(format!(
            "the pipeline has no exporter {e:?}; its exporters: {exporters:?}"
        )),
    }
}

/// A batch's records as JSON lines, each with its resource and scope: `{"resource", "scope",
/// "span"}`, `{"resource", "scope", "metric"}` (a metric with its data points) or
/// `{"resource", "scope", "log"}`. At most `limit` records; returns how many were written.
pub fn records_json(batch: &Batch, limit: usize, out: &mut Vec<u8>) -> usize {
    use crate::model::Payload;
    use serde_json::json;
    let mut written = 0;
    let line = |value: serde_json::Value, out: &mut Vec<u8>| {
        if serde_json::to_writer(&mut *out, &value).is_ok() {
            out.push(b'\n');
        }
    };
    match batch.payload() {
        Payload::Traces(r) => {
            for rs in &r.resource_spans {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        if written == limit {
                            return written;
                        }
                        line(
                            json!({ "resource": rs.resource, "scope": ss.scope, "span": span }),
                            out,
                        );
                        written += 1;
                    }
                }
            }
        }
        Payload::Metrics(r) => {
            for rm in &r.resource_metrics {
                for sm in &rm.scope_metrics {
                    for metric in &sm.metrics {
                        if written == limit {
                            return written;
                        }
                        line(
                            json!({ "resource": rm.resource, "scope": sm.scope, "metric": metric }),
                            out,
                        );
                        written += 1;
                    }
                }
            }
        }
        Payload::Logs(r) => {
            for rl in &r.resource_logs {
                for sl in &rl.scope_logs {
                    for log in &sl.log_records {
                        if written == limit {
                            return written;
                        }
                        line(
                            json!({ "resource": rl.resource, "scope": sl.scope, "log": log }),
                            out,
                        );
                        written += 1;
                    }
                }
            }
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_before_after_and_at_the_exporters() {
        let procs = vec!["redact".to_string(), "sample".to_string()];
        let exps = vec!["otlp".to_string()];
        let at = |p: Place| point_of(&p, &procs, &exps);
        assert_eq!(at(Place::Received), Ok(0));
        assert_eq!(at(Place::Before("redact".into())), Ok(0));
        assert_eq!(at(Place::After("redact".into())), Ok(1));
        assert_eq!(at(Place::Before("sample".into())), Ok(1));
        assert_eq!(at(Place::After("sample".into())), Ok(2));
        assert_eq!(at(Place::Exporter("otlp".into())), Ok(2));
        assert!(at(Place::After("nope".into())).is_err_and(|e| e.contains("no processor")));
        assert!(at(Place::Exporter("nope".into())).is_err_and(|e| e.contains("no exporter")));
    }

    #[tokio::test]
    async fn a_tap_gets_batches_at_its_point_skips_when_full_and_is_bounded() {
        let taps = Taps::default();
        let budget = Arc::new(TapBudget::default());
        let batch = Arc::new(Batch::new(
            crate::model::Payload::Logs(Default::default()),
            None,
            "t".into(),
        ));
        // No tap: nothing to do.
        taps.offer(0, &batch);
        let mut tap = taps.open(1, &budget).expect("a tap");
        taps.offer(0, &batch);
        assert!(tap.rx.try_recv().is_err(), "another point's batch");
        for _ in 0..TAP_QUEUE + 3 {
            taps.offer(1, &batch);
        }
        let mut got = 0;
        while tap.rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, TAP_QUEUE, "a full tap skips batches");
        let more: Vec<Tap> = (1..MAX_TAPS)
            .map(|_| taps.open(0, &budget).expect("within the bound"))
            .collect();
        assert!(taps.open(0, &budget).is_none(), "more than MAX_TAPS");
        drop(more);
        drop(tap);
        taps.offer(1, &batch);
        assert_eq!(taps.lock().len(), 0, "closed taps are forgotten");
        assert!(
            taps.open(0, &budget).is_some(),
            "closed taps free the bound"
        );
    }
}
