//! `exporters.blackhole`: counts and discards (a downstream for benchmarks).

use serde::Deserialize;

use super::SendingQueueConfig;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BlackholeExporterConfig {
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
}
