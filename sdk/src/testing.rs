//! A mock host for native unit tests: captured logs and emitted telemetry, a settable clock,
//! and small batch builders.

use std::cell::RefCell;

use crate::Signal;
use crate::host::Level;
use crate::otlp::collector::logs::v1::ExportLogsServiceRequest;
use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
use crate::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use crate::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

#[derive(Debug, Default)]
pub struct MockHost {
    pub logs: Vec<(Level, String)>,
    pub emitted: Vec<(Signal, Vec<u8>)>,
    pub now: u64,
}

thread_local! {
    pub(crate) static MOCK: RefCell<MockHost> = RefCell::new(MockHost::default());
}

/// Sets the mock clock (unix nanoseconds).
pub fn set_now(now: u64) {
    MOCK.with(|m| m.borrow_mut().now = now);
}

/// Takes the log lines written so far.
pub fn take_logs() -> Vec<(Level, String)> {
    MOCK.with(|m| std::mem::take(&mut m.borrow_mut().logs))
}

/// Takes the telemetry emitted so far.
pub fn take_emitted() -> Vec<(Signal, Vec<u8>)> {
    MOCK.with(|m| std::mem::take(&mut m.borrow_mut().emitted))
}

/// A traces batch with one span per name (ids derived from the position).
pub fn traces(names: &[&str]) -> ExportTraceServiceRequest {
    let spans = names
        .iter()
        .enumerate()
        .map(|(i, n)| Span {
            trace_id: vec![1 + i as u8; 16],
            span_id: vec![1 + i as u8; 8],
            name: n.to_string(),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A logs batch with one string-bodied record per body.
pub fn logs(bodies: &[&str]) -> ExportLogsServiceRequest {
    use crate::otlp::common::v1::{AnyValue, any_value};
    let log_records = bodies
        .iter()
        .map(|b| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(b.to_string())),
            }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
