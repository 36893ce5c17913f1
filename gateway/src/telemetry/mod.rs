//! The gateway's own telemetry: its self-metrics ([`metrics::SelfMetrics`], one registry that
//! the admin endpoint exposes), its logs and traces ([`init`]), each request's correlation id,
//! and probes of queue depths. A leaf: every stage reports through it, and it imports no stage.

mod correlation;
pub mod metrics;
mod probe;
mod subscriber;

pub use correlation::{CorrelationId, correlation_id};
pub use probe::QueueProbe;
pub use subscriber::{Telemetry, TelemetryError, init, traces_url};

/// An error with its sources, for messages a person can act on ("connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
