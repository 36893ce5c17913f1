//! `exporters.debug`: batches written to the gateway's log, at three levels of detail.

use serde::Deserialize;

use super::SendingQueueConfig;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DebugExporterConfig {
    #[serde(default)]
    pub verbosity: Verbosity,
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
}
