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
