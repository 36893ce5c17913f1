//! The in-memory store of traces and logs behind the `memory` exporter.
//!
//! Batches enter through [`MemoryStore::insert`] (the exporter's send); the admin endpoint reads
//! through [`MemoryStore::find_traces`], [`MemoryStore::trace`], [`MemoryStore::services`] and
//! [`MemoryStore::logs`], which back the web UI and the Jaeger query API ([`jaeger`]). Everything
//! is bounded: spans by `max_spans` (whole traces evicted, oldest first), log records by
//! `max_logs`, each by `max_size_mib` of memory (as `held_bytes` estimates it), both by
//! `max_age` since arrival. Every eviction is counted in
//! `sluice_store_evicted_records_total{signal,reason}`.

mod held_bytes;
pub mod jaeger;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::config::MemoryExporterConfig;
use crate::model::{Batch, Payload};
use crate::telemetry::metrics::SelfMetrics;

pub type TraceId = [u8; 16];

/// Where a record came from: its resource, with `service.name` pulled out.
#[derive(Debug)]
pub struct Origin {
    pub service: String,
    pub resource: Resource,
    pub scope_name: String,
    pub scope_version: String,
}

#[derive(Debug, Clone)]
pub struct StoredSpan {
    pub origin: Arc<Origin>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct StoredLog {
    pub origin: Arc<Origin>,
    pub record: LogRecord,
}

struct Trace {
    spans: Vec<StoredSpan>,
    /// What its spans hold, as `held_bytes` estimates it.
    bytes: usize,
}

struct Inner {
    traces: HashMap<TraceId, Trace>,
    /// Traces in order of first arrival, for eviction.
    order: VecDeque<(Instant, TraceId)>,
    spans: usize,
    span_bytes: usize,
    /// Arrival, estimated size, record.
    logs: VecDeque<(Instant, usize, StoredLog)>,
    log_bytes: usize,
}

/// What a trace search asks for; every condition must hold for one span of the trace.
#[derive(Debug, Default, Clone)]
pub struct TraceQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    /// Attribute (span or resource) equality, values compared as rendered strings; the key
    /// `error` with value `true` also matches spans whose status is ERROR.
    pub tags: BTreeMap<String, String>,
    pub min_duration: Option<Duration>,
    pub max_duration: Option<Duration>,
    /// Span start, unix microseconds.
    pub start_us: Option<u64>,
    pub end_us: Option<u64>,
    pub limit: usize,
}

/// What a log search asks for.
#[derive(Debug, Default, Clone)]
pub struct LogQuery {
    pub service: Option<String>,
    pub min_severity: i32,
    /// Case-insensitive substring of the body or an attribute value.
    pub text: Option<String>,
    pub trace_id: Option<TraceId>,
    pub limit: usize,
}

/// Records evicted, by the bound that evicted them.
#[derive(Default)]
struct Evicted {
    age: usize,
    count: usize,
    size: usize,
}

impl Evicted {
    fn of(&mut self, old: bool, many: bool) -> &mut usize {
        if old {
            &mut self.age
        } else if many {
            &mut self.count
        } else {
            &mut self.size
        }
    }
}

pub struct MemoryStore {
    max_spans: usize,
    max_logs: usize,
    /// For spans, and for log records.
    max_bytes: usize,
    max_age: Duration,
    inner: Mutex<Inner>,
    metrics: Arc<SelfMetrics>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_spans", &self.max_spans)
            .field("max_logs", &self.max_logs)
            .finish()
    }
}

impl MemoryStore {
    pub fn new(config: &MemoryExporterConfig, metrics: Arc<SelfMetrics>) -> MemoryStore {
        MemoryStore {
            max_spans: config.max_spans,
            max_logs: config.max_logs,
            max_bytes: usize::try_from(config.max_size_mib.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            max_age: config.max_age,
            inner: Mutex::new(Inner {
                traces: HashMap::new(),
                order: VecDeque::new(),
                spans: 0,
                span_bytes: 0,
                logs: VecDeque::new(),
                log_bytes: 0,
            }),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is a push or a
        // pop), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the batch's spans or log records; metrics batches are ignored (the config only
    /// lets traces and logs pipelines use this exporter).
    pub fn insert(&self, batch: &Batch) {
        let now = Instant::now();
        match batch.payload() {
            Payload::Traces(req) => {
                let mut inner = self.lock();
                for rs in &req.resource_spans {
                    let resource = rs.resource.clone().unwrap_or_default();
                    for ss in &rs.scope_spans {
                        let scope = ss.scope.clone().unwrap_or_default();
                        let origin = Arc::new(Origin {
                            service: service_name(&resource),
                            resource: resource.clone(),
                            scope_name: scope.name,
                            scope_version: scope.version,
                        });
                        for span in &ss.spans {
                            let Ok(id) = TraceId::try_from(span.trace_id.as_slice()) else {
                                continue;
                            };
                            let Inner {
                                traces,
                                order,
                                spans,
                                span_bytes,
                                ..
                            } = &mut *inner;
                            let trace = traces.entry(id).or_insert_with(|| {
                                order.push_back((now, id));
                                Trace {
                                    spans: Vec::new(),
                                    bytes: 0,
                                }
                            });
                            let bytes = held_bytes::span(span);
                            trace.spans.push(StoredSpan {
                                origin: origin.clone(),
                                span: span.clone(),
                            });
                            trace.bytes += bytes;
                            *spans += 1;
                            *span_bytes += bytes;
                        }
                    }
                }
                self.evict_traces(&mut inner, now);
            }
            Payload::Logs(req) => {
                let mut inner = self.lock();
                for rl in &req.resource_logs {
                    let resource = rl.resource.clone().unwrap_or_default();
                    for sl in &rl.scope_logs {
                        let scope = sl.scope.clone().unwrap_or_default();
                        let origin = Arc::new(Origin {
                            service: service_name(&resource),
                            resource: resource.clone(),
                            scope_name: scope.name,
                            scope_version: scope.version,
                        });
                        for record in &sl.log_records {
                            let bytes = held_bytes::log(record);
                            inner.log_bytes += bytes;
                            inner.logs.push_back((
                                now,
                                bytes,
                                StoredLog {
                                    origin: origin.clone(),
                                    record: record.clone(),
                                },
                            ));
                        }
                    }
                }
                self.evict_logs(&mut inner, now);
            }
            Payload::Metrics(_) => {}
        }
    }

    fn evict_traces(&self, inner: &mut Inner, now: Instant) {
        let mut evicted = Evicted::default();
        while let Some(&(arrived, id)) = inner.order.front() {
            let old = now.duration_since(arrived) > self.max_age;
            let many = inner.spans > self.max_spans;
            if !old && !many && inner.span_bytes <= self.max_bytes {
                break;
            }
            inner.order.pop_front();
            if let Some(t) = inner.traces.remove(&id) {
                inner.spans -= t.spans.len();
                inner.span_bytes -= t.bytes;
                *evicted.of(old, many) += t.spans.len();
            }
        }
        self.count_evictions("traces", evicted);
        self.metrics
            .store_records
            .with_label_values(&["traces"])
            .set(inner.spans as i64);
    }

    fn evict_logs(&self, inner: &mut Inner, now: Instant) {
        let mut evicted = Evicted::default();
        while let Some((arrived, bytes, _)) = inner.logs.front() {
            let old = now.duration_since(*arrived) > self.max_age;
            let many = inner.logs.len() > self.max_logs;
            if !old && !many && inner.log_bytes <= self.max_bytes {
                break;
            }
            *evicted.of(old, many) += 1;
            inner.log_bytes -= *bytes;
            inner.logs.pop_front();
        }
        self.count_evictions("logs", evicted);
        self.metrics
            .store_records
            .with_label_values(&["logs"])
            .set(inner.logs.len() as i64);
    }

    fn count_evictions(&self, signal: &str, evicted: Evicted) {
        let count_reason = if signal == "traces" {
            "max_spans"
        } else {
            "max_logs"
        };
        for (reason, n) in [
            ("max_age", evicted.age),
            (count_reason, evicted.count),
            ("max_size", evicted.size),
        ] {
            if n > 0 {
                self.metrics
                    .store_evicted
                    .with_label_values(&[signal, reason])
                    .inc_by(n as u64);
            }
        }
    }

    /// Applies `max_age` now (reads call it, so old data disappears without new writes).
    fn expire(&self) -> MutexGuard<'_, Inner> {
        let now = Instant::now();
        let mut inner = self.lock();
        self.evict_traces(&mut inner, now);
        self.evict_logs(&mut inner, now);
        inner
    }

    /// Services seen in stored spans, with their operations.
    pub fn services(&self) -> BTreeMap<String, BTreeSet<(String, i32)>> {
        let inner = self.expire();
        let mut out: BTreeMap<String, BTreeSet<(String, i32)>> = BTreeMap::new();
        for t in inner.traces.values() {
            for s in &t.spans {
                out.entry(s.origin.service.clone())
                    .or_default()
                    .insert((s.span.name.clone(), s.span.kind));
            }
        }
        out
    }

    /// Traces with at least one span matching every condition, newest arrival first.
    pub fn find_traces(&self, q: &TraceQuery) -> Vec<Vec<StoredSpan>> {
        let inner = self.expire();
        let mut out = Vec::new();
        for (_, id) in inner.order.iter().rev() {
            if out.len() >= q.limit {
                break;
            }
            let Some(t) = inner.traces.get(id) else {
                continue;
            };
            if t.spans.iter().any(|s| span_matches(s, q)) {
                out.push(t.spans.clone());
            }
        }
        out
    }

    pub fn trace(&self, id: &TraceId) -> Option<Vec<StoredSpan>> {
        self.expire().traces.get(id).map(|t| t.spans.clone())
    }

    /// Log records matching the query, newest first.
    pub fn logs(&self, q: &LogQuery) -> Vec<StoredLog> {
        let inner = self.expire();
        let text = q.text.as_ref().map(|t| t.to_lowercase());
        inner
            .logs
            .iter()
            .rev()
            .map(|(_, _, l)| l)
            .filter(|l| q.service.as_ref().is_none_or(|s| *s == l.origin.service))
            .filter(|l| l.record.severity_number >= q.min_severity)
            .filter(|l| {
                q.trace_id
                    .is_none_or(|id| l.record.trace_id.as_slice() == id.as_slice())
            })
            .filter(|l| {
                text.as_ref().is_none_or(|t| {
                    l.record
                        .body
                        .as_ref()
                        .is_some_and(|b| render(b).to_lowercase().contains(t))
                        || l.record.attributes.iter().any(|kv| {
                            kv.value
                                .as_ref()
                                .is_some_and(|v| render(v).to_lowercase().contains(t))
                        })
                })
            })
            .take(q.limit)
            .cloned()
            .collect()
    }

    /// (spans, traces, log records) held now.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        (inner.spans, inner.traces.len(), inner.logs.len())
    }
}

fn span_matches(s: &StoredSpan, q: &TraceQuery) -> bool {
    let span = &s.span;
    if q.service.as_ref().is_some_and(|v| *v != s.origin.service) {
        return false;
    }
    if q.operation.as_ref().is_some_and(|v| *v != span.name) {
        return false;
    }
    let start_us = span.start_time_unix_nano / 1000;
    if q.start_us.is_some_and(|v| start_us < v) || q.end_us.is_some_and(|v| start_us > v) {
        return false;
    }
    let duration = Duration::from_nanos(
        span.end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano),
    );
    if q.min_duration.is_some_and(|d| duration < d) || q.max_duration.is_some_and(|d| duration > d)
    {
        return false;
    }
    q.tags.iter().all(|(k, want)| {
        if k == "error" && want == "true" && is_error(span) {
            return true;
        }
        let found = span
            .attributes
            .iter()
            .chain(s.origin.resource.attributes.iter())
            .find(|kv| kv.key == *k);
        found
            .and_then(|kv| kv.value.as_ref())
            .is_some_and(|v| render(v) == *want)
    })
}

/// Status code 2 is `STATUS_CODE_ERROR`.
pub fn is_error(span: &Span) -> bool {
    span.status.as_ref().is_some_and(|s| s.code == 2)
}

/// `service.name` of a resource, or `unknown_service` as the OpenTelemetry SDKs default.
pub fn service_name(resource: &Resource) -> String {
    resource
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref())
        .map(render)
        .unwrap_or_else(|| "unknown_service".to_string())
}

/// An attribute value as text: strings as they are, everything else as JSON.
pub fn render(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => any_to_json(v).to_string(),
    }
}

/// An `AnyValue` as plain JSON (arrays as arrays, key-value lists as objects, bytes as hex).
pub fn any_to_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        None => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => J::Bool(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(J::Null, J::Number)
        }
        Some(any_value::Value::BytesValue(b)) => J::String(hex(b)),
        Some(any_value::Value::ArrayValue(a)) => {
            J::Array(a.values.iter().map(any_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(l)) => J::Object(attributes_json(&l.values)),
        // An index into a dictionary this gateway does not receive (profiles only).
        Some(any_value::Value::StringValueStrindex(i)) => J::from(*i),
    }
}

pub fn attributes_json(kvs: &[KeyValue]) -> serde_json::Map<String, serde_json::Value> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value
                    .as_ref()
                    .map_or(serde_json::Value::Null, any_to_json),
            )
        })
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses a hex trace id; shorter ids (Jaeger prints 64-bit ids without the high half) are
/// left-padded with zeros.
pub fn parse_trace_id(s: &str) -> Option<TraceId> {
    let s = s.trim();
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{s:0>32}");
    let mut id = [0u8; 16];
    for (i, chunk) in padded.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        id[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests;
