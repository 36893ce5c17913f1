//! The memory limiter: keeps the process's resident memory under `service.memory_limiter`.
//!
//! A task reads the resident set size (`VmRSS` in `/proc/self/status`) every `check_interval` and keeps two
//! flags. Above the soft limit the receivers refuse new data with a retryable error
//! ([`crate::inlet::Refusal::MemoryLimit`]: HTTP 429 with `Retry-After`, gRPC
//! `UNAVAILABLE`), so nothing already accepted is lost and clients that retry lose nothing;
//! queues drain meanwhile and memory falls. Above the hard limit `/health/ready` also answers
//! 503, so that a load balancer sends elsewhere. Memory itself is bounded by the queues: see
//! `docs/operations.md` for how limits, queue sizes and batch sizes relate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::MemoryLimiterConfig;
use crate::telemetry::metrics::SelfMetrics;

#[derive(Debug)]
pub struct MemoryLimiter {
    soft: u64,
    hard: Option<u64>,
    interval: Duration,
    rss: AtomicU64,
    over_soft: AtomicBool,
    over_hard: AtomicBool,
}

/// Resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

impl MemoryLimiter {
    pub fn new(c: &MemoryLimiterConfig) -> Arc<MemoryLimiter> {
        Arc::new(MemoryLimiter {
            soft: c.soft_limit_mib << 20,
            hard: c.hard_limit_mib.map(|h| h << 20),
            interval: c.check_interval,
            rss: AtomicU64::new(0),
            over_soft: AtomicBool::new(false),
            over_hard: AtomicBool::new(false),
        })
    }

    /// Whether receivers must refuse new data now.
    pub fn refusing(&self) -> bool {
        self.over_soft.load(Ordering::Relaxed)
    }

    /// Whether the gateway should report itself not ready.
    pub fn over_hard(&self) -> bool {
        self.over_hard.load(Ordering::Relaxed)
    }

    pub fn resident(&self) -> u64 {
        self.rss.load(Ordering::Relaxed)
    }

    /// Reads the resident memory once and updates the flags.
    pub fn check(&self, metrics: &SelfMetrics) {
        let Some(rss) = resident_bytes() else {
            return;
        };
        self.rss.store(rss, Ordering::Relaxed);
        let soft = rss > self.soft;
        let hard = self.hard.is_some_and(|h| rss > h);
        let was_soft = self.over_soft.swap(soft, Ordering::Relaxed);
        let was_hard = self.over_hard.swap(hard, Ordering::Relaxed);
        if soft != was_soft {
            if soft {
                tracing::warn!(
                    resident_mib = rss >> 20,
                    soft_limit_mib = self.soft >> 20,
                    "Above the memory limiter's soft limit: refusing new data until queues drain."
                );
            } else {
                tracing::info!(
                    resident_mib = rss >> 20,
                    "Back under the memory limiter's soft limit: accepting data."
                );
            }
        }
        if hard && !was_hard {
            tracing::error!(
                resident_mib = rss >> 20,
                "Above the memory limiter's hard limit: reporting not ready."
            );
        }
        metrics
            .memory_limiter_state
            .with_label_values(&["soft"])
            .set(i64::from(soft));
        metrics
            .memory_limiter_state
            .with_label_values(&["hard"])
            .set(i64::from(hard));
    }

    /// Checks every `check_interval` until `stop`.
    pub fn spawn(
        self: &Arc<Self>,
        metrics: Arc<SelfMetrics>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        me.check(&metrics);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.interval);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => me.check(&metrics),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(soft: u64, hard: Option<u64>) -> Arc<MemoryLimiter> {
        MemoryLimiter::new(&MemoryLimiterConfig {
            soft_limit_mib: soft,
            hard_limit_mib: hard,
            check_interval: Duration::from_millis(10),
        })
    }

    #[test]
    fn flags_follow_the_resident_memory() {
        let rss = resident_bytes().expect("Linux");
        assert!(rss > 1 << 20, "a test process uses more than 1 MiB: {rss}");
        let m = SelfMetrics::new();
        let low = limiter(1, Some(1));
        low.check(&m);
        assert!(low.refusing() && low.over_hard());
        assert_eq!(m.memory_limiter_state.with_label_values(&["soft"]).get(), 1);
        let high = limiter(1 << 20, None);
        high.check(&m);
        assert!(!high.refusing() && !high.over_hard());
        assert!(high.resident() > 0);
    }
}
