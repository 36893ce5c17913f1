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
    /// Traces and log records older than this (since they arrived) are evicted.
    #[serde(default = "default_memory_max_age", with = "duration")]
    pub max_age: Duration,
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
}

fn default_memory_max_spans() -> usize {
    100_000
}

fn default_memory_max_logs() -> usize {
    20_000
}

fn default_memory_max_age() -> Duration {
    Duration::from_secs(3600)
}

impl MemoryExporterConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.max_spans == 0 && self.max_logs == 0 {
            err(
                errors,
                path,
                "max_spans and max_logs are both 0: the store would keep nothing",
            );
        }
    }
}
