//! What the gateway offers a plugin: logging, the clock, and emitting derived telemetry.
//!
//! Inside the gateway these call the component's `sluice:plugin/host` imports. In a native
//! `cargo test` they go to the mock host in [`crate::testing`], so plugins are unit-tested
//! without a gateway.

use prost::Message;

use crate::Signal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{Level, Signal};
    use crate::bindings::sluice::plugin::host;
    use crate::bindings::sluice::plugin::types;

    pub fn log(level: Level, msg: &str) {
        let level = match level {
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, msg);
    }

    pub fn now() -> u64 {
        host::now()
    }

    pub fn emit(signal: Signal, data: &[u8]) {
        let signal = match signal {
            Signal::Traces => types::Signal::Traces,
            Signal::Metrics => types::Signal::Metrics,
            Signal::Logs => types::Signal::Logs,
        };
        host::emit(signal, data);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Level, Signal};
    use crate::testing::MOCK;

    pub fn log(level: Level, msg: &str) {
        MOCK.with(|m| m.borrow_mut().logs.push((level, msg.to_string())));
    }

    pub fn now() -> u64 {
        MOCK.with(|m| m.borrow().now)
    }

    pub fn emit(signal: Signal, data: &[u8]) {
        MOCK.with(|m| m.borrow_mut().emitted.push((signal, data.to_vec())));
    }
}

/// Writes to the gateway's log, tagged with the plugin's name.
pub fn log(level: Level, msg: &str) {
    imp::log(level, msg)
}

/// The current unix time in nanoseconds (the host's clock; the mock host's in tests).
pub fn now() -> u64 {
    imp::now()
}

/// Sends derived telemetry into the gateway's pipelines for `signal`.
pub fn emit(signal: Signal, data: &[u8]) {
    imp::emit(signal, data)
}

/// Emits metrics (e.g. counters a plugin computed) into the gateway's metrics pipelines.
pub fn emit_metrics(request: &crate::otlp::collector::metrics::v1::ExportMetricsServiceRequest) {
    emit(Signal::Metrics, &request.encode_to_vec())
}
