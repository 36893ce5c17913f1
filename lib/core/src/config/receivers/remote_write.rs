//! `receivers.prometheus_remote_write`: remote write 1.0, served on the OTLP/HTTP listener.

use std::time::Duration;

use serde::Deserialize;

use super::super::duration;
use super::otlp::default_read_timeout;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteReceiverConfig {
    /// Largest request after snappy decompression; checked against the snappy header before
    /// decompressing.
    #[serde(default = "default_remote_write_max_mib")]
    pub max_decoded_size_mib: usize,
    #[serde(default = "default_read_timeout", with = "duration")]
    pub read_timeout: Duration,
}

impl Default for RemoteWriteReceiverConfig {
    fn default() -> Self {
        RemoteWriteReceiverConfig {
            max_decoded_size_mib: default_remote_write_max_mib(),
            read_timeout: default_read_timeout(),
        }
    }
}

fn default_remote_write_max_mib() -> usize {
    32
}
