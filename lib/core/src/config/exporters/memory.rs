//! `exporters.memory`: the bounded in-memory store of traces and logs behind the admin UI and
//! the Jaeger query API.
use std::time::Duration;

use serde::Deserialize;

use super::super::duration;
use super::super::errors::{ConfigError, err};
use super::SendingQueueConfig;

/// The bounded in-memory store of traces and logs that the admin UI shows and the Jaeger query
/// API on the admin endpoint answers from. Oldest data is evicted first, and counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryExporterConfig {
    /// Spans kept; when full, whole traces are evicted oldest first.
    #[serde(default = "default_memory_max_spans")]
    pub max_spans: usize,
    /// Log records kept; when full, the oldest are evicted.
    #[serde(default = "default_memory_max_logs")]
    pub max_logs: usize,
    /// Memory the stored spans may take, and the stored log records (each; estimated from
    /// their fields as held, about four times their protobuf size); above it, whole traces
    /// and the oldest log records are evicted as for `max_spans` and `max_logs`.
    #[serde(default = "default_memory_max_size_mib")]
    pub max_size_mib: u64,
    /// Traces and log records older than this (since they arrived) are evicted.
    #[serde(default = "default_memory_max_age", with = "duration")]
    pub max_age: Duration,
    /// Its queue is in this process's memory like the store: 16 MiB unless set, as nothing
    /// outside the process can stall it.
    #[serde(default = "default_memory_sending_queue")]
    pub sending_queue: SendingQueueConfig,
}

fn default_memory_sending_queue() -> SendingQueueConfig {
    SendingQueueConfig {
        max_size_mib: Some(16),
        ..SendingQueueConfig::default()
    }
}

fn default_memory_max_spans() -> usize {
    100_000
}

fn default_memory_max_logs() -> usize {
    20_000
}

/// With the queues' defaults, what keeps a default-config gateway under 256 MiB however fast
/// spans arrive (100,000 typical spans take about 200 MiB as held).
fn default_memory_max_size_mib() -> u64 {
    64
}

fn default_memory_max_age() -> Duration {
    Duration::from_secs(3600)
}

impl MemoryExporterConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.max_size_mib == 0 {
            err(errors, format!("{path}.max_size_mib"), "must be at least 1");
        }
        if self.max_spans == 0 && self.max_logs == 0 {
            err(
                errors,
                path,
                "max_spans and max_logs are both 0: the store would keep nothing",
            );
        }
    }
}
