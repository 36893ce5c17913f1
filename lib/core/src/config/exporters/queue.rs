//! What every exporter shares: its sending queue (in memory or on disk), retries with
//! backoff, and the circuit breaker of network exporters.

use std::time::Duration;

use serde::Deserialize;

use super::super::duration;
use super::super::errors::{ConfigError, err};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendingQueueConfig {
    /// Batches waiting to be sent; when full, new batches for this exporter are dropped and
    /// counted (`reason="queue_full"`) if another exporter of the pipeline took them, else the
    /// pipeline waits for room.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Concurrent senders.
    #[serde(default = "default_consumers")]
    pub num_consumers: usize,
    /// A batch older than this (since the receiver accepted it) is dropped and counted
    /// (`reason="max_age"`) instead of being sent, or retried, late. `0s` never drops.
    #[serde(default = "default_max_age", with = "duration")]
    pub max_age: Duration,
    /// A directory: keep the queue on disk (a write-ahead log under `<storage>/<exporter>`),
    /// so that what clients were told was accepted survives a crash or restart. Unset: in memory.
    pub storage: Option<std::path::PathBuf>,
    /// When the disk queue flushes to stable storage: `always` (before answering the client),
    /// `interval` (every `fsync_interval`) or `never` (when the OS decides). Every setting
    /// survives a crash of the gateway; they differ on a crash of the machine.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    #[serde(default = "default_fsync_interval", with = "duration")]
    pub fsync_interval: Duration,
    /// The queue's size limit, the batches' protobuf bytes, as well as `queue_size` batches:
    /// a memory queue that reaches it is full as when `queue_size` is reached; above a disk
    /// queue's, receivers refuse with a retryable error. Unset: 64 in memory, 1024 on disk
    /// ([`SendingQueueConfig::size_limit_mib`]).
    #[serde(default)]
    pub max_size_mib: Option<u64>,
    /// Size of one segment file of the disk queue; a segment is deleted once all its batches
    /// are delivered.
    #[serde(default = "default_segment_size_kib")]
    pub segment_size_kib: u64,
}

impl Default for SendingQueueConfig {
    fn default() -> Self {
        SendingQueueConfig {
            queue_size: default_queue_size(),
            num_consumers: default_consumers(),
            max_age: default_max_age(),
            storage: None,
            fsync: FsyncPolicy::default(),
            fsync_interval: default_fsync_interval(),
            max_size_mib: None,
            segment_size_kib: default_segment_size_kib(),
        }
    }
}

/// See [`SendingQueueConfig::fsync`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    Always,
    #[default]
    Interval,
    Never,
}

fn default_fsync_interval() -> Duration {
    Duration::from_secs(1)
}

/// The size limit of a memory queue, unless set: with `queue_size`'s 1000 batches, as many as
/// a busy gateway holds of ~64 KiB batches; a few hundred of 1000-record batches would hold
/// most of a small pod's memory.
pub const DEFAULT_MEMORY_QUEUE_MIB: u64 = 64;
/// The size limit of a disk queue, unless set.
pub const DEFAULT_DISK_QUEUE_MIB: u64 = 1024;

fn default_segment_size_kib() -> u64 {
    8192
}

fn default_max_age() -> Duration {
    Duration::from_secs(600)
}

fn default_queue_size() -> usize {
    1000
}

fn default_consumers() -> usize {
    4
}

/// The exporter's circuit breaker (see `exporters/breaker.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Consecutive retryable failures that open it.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// How long it stays open before a trial send.
    #[serde(default = "default_open_duration", with = "duration")]
    pub open_duration: Duration,
    /// While open, `/health/ready` answers 503 (for a gateway whose only job is this backend).
    #[serde(default)]
    pub affects_readiness: bool,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_threshold: default_failure_threshold(),
            open_duration: default_open_duration(),
            affects_readiness: false,
        }
    }
}

fn default_failure_threshold() -> u32 {
    5
}

fn default_open_duration() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_initial_interval", with = "duration")]
    pub initial_interval: Duration,
    #[serde(default = "default_max_interval", with = "duration")]
    pub max_interval: Duration,
    /// Give up on a batch after this long (it is then dropped and counted).
    #[serde(default = "default_max_elapsed", with = "duration")]
    pub max_elapsed_time: Duration,
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: default_initial_interval(),
            max_interval: default_max_interval(),
            max_elapsed_time: default_max_elapsed(),
            multiplier: default_multiplier(),
        }
    }
}

pub(crate) fn yes() -> bool {
    true
}

fn default_initial_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_max_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_max_elapsed() -> Duration {
    Duration::from_secs(300)
}

fn default_multiplier() -> f64 {
    1.5
}

pub(crate) fn single_consumer_queue() -> SendingQueueConfig {
    SendingQueueConfig {
        num_consumers: 1,
        ..Default::default()
    }
}

impl SendingQueueConfig {
    /// `max_size_mib`, or its default for where the queue is kept.
    pub fn size_limit_mib(&self) -> u64 {
        self.max_size_mib.unwrap_or(if self.storage.is_some() {
            DEFAULT_DISK_QUEUE_MIB
        } else {
            DEFAULT_MEMORY_QUEUE_MIB
        })
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.max_size_mib == Some(0) {
            err(errors, format!("{path}.max_size_mib"), "must be at least 1");
        }
        if self.queue_size == 0 {
            err(errors, format!("{path}.queue_size"), "must be at least 1");
        }
        if self.num_consumers == 0 {
            err(
                errors,
                format!("{path}.num_consumers"),
                "must be at least 1",
            );
        }
        if self.storage.is_some() {
            if self.segment_size_kib < 4 {
                err(
                    errors,
                    format!("{path}.segment_size_kib"),
                    "must be at least 4",
                );
            }
            if self.fsync == FsyncPolicy::Interval && self.fsync_interval.is_zero() {
                err(
                    errors,
                    format!("{path}.fsync_interval"),
                    "must be more than 0s with fsync: interval (use fsync: always to flush every batch)",
                );
            }
        }
    }
}
