//! `sample`: less data, chosen well.
//!
//! Per record (span, metric data point, log record), in this order:
//!
//! 1. with `keep_errors` (the default), an error span (status code `ERROR`) or an error log
//!    (severity `ERROR` or above) is kept, whatever follows;
//! 2. a record matching any `drop` condition is dropped (`reason="filtered"`);
//! 3. spans and logs outside the `probabilistic` share are dropped (`reason="sampled"`), the
//!    decision derived from the trace id alone, so every span of a trace and every gateway
//!    replica agree;
//! 4. spans and logs beyond their key's `rate_limit` are dropped (`reason="rate_limited"`).
//!
//! The plugin only ever answers `Keep(indices)` or `Unchanged` (the gateway forwards its own
//! bytes, nothing is re-encoded), counts what it dropped, and emits the counts as the
//! cumulative metric `sample.dropped{reason, signal}` on every tick once something was
//! dropped. The counts survive reloads and restarts (`snapshot`/`restore`); the rate-limit
//! buckets start full again.

mod config;
mod limiter;
mod sampling;

use std::borrow::Cow;
use std::collections::BTreeMap;

use sluice_sdk::host::{self, Level};
use sluice_sdk::metrics::Counter;
use sluice_sdk::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_sdk::otlp::logs::v1::LogRecord;
use sluice_sdk::otlp::metrics::v1::{Metric, metric};
use sluice_sdk::otlp::resource::v1::Resource;
use sluice_sdk::{Error, Info, Plugin, Signal, Verdict, keep_logs, keep_spans};

pub use config::Config;
use config::{Condition, SEVERITY_ERROR, TextMatch, severity_from_text};
use limiter::Limiter;

const TRACES: usize = 0;
const METRICS: usize = 1;
const LOGS: usize = 2;
const SIGNAL_NAMES: [&str; 3] = ["traces", "metrics", "logs"];

const FILTERED: usize = 0;
const SAMPLED: usize = 1;
const RATE_LIMITED: usize = 2;
const REASON_NAMES: [&str; 3] = ["filtered", "sampled", "rate_limited"];

/// The status code of an error span.
const STATUS_ERROR: i32 = 2;

/// The plugin.
#[derive(Debug)]
pub struct Sample {
    rules: Vec<Rule>,
    keep_errors: bool,
    /// Keep a trace when its 56-bit randomness is at least this (OpenTelemetry's threshold).
    threshold: Option<u64>,
    hash_seed: u64,
    limiter: Option<Limiter>,
    /// Whether anything can be dropped from a signal's batches.
    active: [bool; 3],
    /// Dropped records by `[reason][signal]`, since `start`.
    dropped: [[u64; 3]; 3],
    /// Start of the cumulative counts (unix nanoseconds).
    start: u64,
}

/// One record as the decision sees it.
struct Record<'a> {
    signal: usize,
    resource: Option<&'a Resource>,
    name: &'a str,
    attributes: &'a [KeyValue],
    body: Option<&'a AnyValue>,
    severity: Option<u8>,
    status: i32,
    kind: i32,
}

/// A compiled `drop` condition.
#[derive(Debug)]
struct Rule {
    signals: [bool; 3],
    name: Option<TextMatch>,
    body: Option<TextMatch>,
    attributes: Vec<(String, TextMatch)>,
    resource_attributes: Vec<(String, TextMatch)>,
    severity_below: Option<u8>,
    status: Option<i32>,
    kind: Option<i32>,
}

impl Rule {
    fn new(c: Condition) -> Rule {
        Rule {
            signals: c.signals(),
            name: c.name,
            body: c.body,
            attributes: c.attributes.into_iter().collect(),
            resource_attributes: c.resource_attributes.into_iter().collect(),
            severity_below: c.severity_below.map(|s| s.0),
            status: c.status.map(|s| s.code()),
            kind: c.kind.map(|k| k.code()),
        }
    }

    fn matches(&self, r: &Record) -> bool {
        let resource_attributes = r.resource.map_or(&[][..], |res| &res.attributes[..]);
        self.signals[r.signal]
            && self.name.as_ref().is_none_or(|m| m.is_match(r.name))
            && self.status.is_none_or(|c| r.status == c)
            && self.kind.is_none_or(|k| r.kind == k)
            && self
                .severity_below
                .is_none_or(|below| r.severity.is_some_and(|s| s < below))
            && self
                .body
                .as_ref()
                .is_none_or(|m| r.body.and_then(text).is_some_and(|t| m.is_match(&t)))
            && all_match(&self.attributes, r.attributes)
            && all_match(&self.resource_attributes, resource_attributes)
    }
}

fn all_match(wanted: &[(String, TextMatch)], attributes: &[KeyValue]) -> bool {
    wanted.iter().all(|(key, m)| {
        attribute(attributes, key)
            .and_then(text)
            .is_some_and(|t| m.is_match(&t))
    })
}

/// The value of the first attribute named `key`.
fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// A scalar value as the text it is matched as; arrays, maps and bytes have none.
fn text(v: &AnyValue) -> Option<Cow<'_, str>> {
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(Cow::Borrowed(s)),
        any_value::Value::BoolValue(b) => Some(Cow::Owned(b.to_string())),
        any_value::Value::IntValue(i) => Some(Cow::Owned(i.to_string())),
        any_value::Value::DoubleValue(d) => Some(Cow::Owned(d.to_string())),
        _ => None,
    }
}

/// A log's severity number: `severity_number`, or else read from `severity_text`.
fn log_severity(log: &LogRecord) -> Option<u8> {
    match log.severity_number {
        n @ 1..=24 => Some(n as u8),
        _ => severity_from_text(&log.severity_text),
    }
}

impl Sample {
    /// Decides one record: true keeps it. `randomness` gives the record's 56-bit sampling
    /// randomness, or `None` when it has none (such a record is not sampled).
    fn judge(
        &mut self,
        r: &Record,
        is_error: bool,
        randomness: impl FnOnce(u64) -> Option<u64>,
        now: u64,
    ) -> bool {
        if is_error && self.keep_errors {
            return true;
        }
        if self.rules.iter().any(|rule| rule.matches(r)) {
            self.dropped[FILTERED][r.signal] += 1;
            return false;
        }
        if r.signal == METRICS {
            return true;
        }
        if let Some(threshold) = self.threshold
            && randomness(self.hash_seed).is_some_and(|rv| rv < threshold)
        {
            self.dropped[SAMPLED][r.signal] += 1;
            return false;
        }
        if let Some(limiter) = &mut self.limiter {
            let resource_attributes = r.resource.map_or(&[][..], |res| &res.attributes[..]);
            let key = attribute(r.attributes, limiter.key())
                .or_else(|| attribute(resource_attributes, limiter.key()))
                .and_then(text)
                .unwrap_or(Cow::Borrowed(""));
            if !limiter.admit(r.signal, &key, now) {
                self.dropped[RATE_LIMITED][r.signal] += 1;
                return false;
            }
        }
        true
    }

    fn now_if_limiting(&self) -> u64 {
        if self.limiter.is_some() {
            host::now()
        } else {
            0
        }
    }

    fn total_dropped(&self) -> u64 {
        self.dropped.iter().flatten().sum()
    }

    /// The counts as the `sample.dropped` metric.
    fn dropped_metric(&self, now: u64) -> ExportMetricsServiceRequest {
        let mut points = Vec::new();
        for (reason, by_signal) in self.dropped.iter().enumerate() {
            for (signal, &count) in by_signal.iter().enumerate() {
                if count > 0 {
                    points.push((
                        vec![
                            ("reason", REASON_NAMES[reason].to_string()),
                            ("signal", SIGNAL_NAMES[signal].to_string()),
                        ],
                        count,
                    ));
                }
            }
        }
        Counter {
            scope: "sluice-plugin-sample",
            version: env!("CARGO_PKG_VERSION"),
            name: "sample.dropped",
            description: "Records the sample plugin dropped, by reason and signal.",
            unit: "{record}",
        }
        .request(self.start, now, points)
    }
}

/// Calls `f` with the attributes of each data point of `m`, in order.
fn for_each_point(m: &Metric, mut f: impl FnMut(&[KeyValue])) {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.iter().for_each(|p| f(&p.attributes)),
        Some(metric::Data::Sum(s)) => s.data_points.iter().for_each(|p| f(&p.attributes)),
        Some(metric::Data::Histogram(h)) => h.data_points.iter().for_each(|p| f(&p.attributes)),
        Some(metric::Data::ExponentialHistogram(h)) => {
            h.data_points.iter().for_each(|p| f(&p.attributes))
        }
        Some(metric::Data::Summary(s)) => s.data_points.iter().for_each(|p| f(&p.attributes)),
        None => {}
    }
}

/// The snapshot: the counts and their start time (the rate-limit buckets are not kept).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    start_time_unix_nano: u64,
    /// reason -> signal -> count.
    dropped: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Plugin for Sample {
    fn describe() -> Info {
        Info::new(
            "sample",
            env!("CARGO_PKG_VERSION"),
            &[Signal::Traces, Signal::Metrics, Signal::Logs],
        )
        .stateful()
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config = Config::parse(config)?;
        let rules: Vec<Rule> = config.drop.into_iter().map(Rule::new).collect();
        let threshold = config
            .probabilistic
            .as_ref()
            .map(|p| sampling::threshold(p.percent));
        let limiter = config.rate_limit.map(|r| Limiter::new(&r));
        let sampling_or_limiting = threshold.is_some() || limiter.is_some();
        let active = [
            sampling_or_limiting || rules.iter().any(|r| r.signals[TRACES]),
            rules.iter().any(|r| r.signals[METRICS]),
            sampling_or_limiting || rules.iter().any(|r| r.signals[LOGS]),
        ];
        Ok(Sample {
            rules,
            keep_errors: config.keep_errors,
            threshold,
            hash_seed: config.probabilistic.map_or(0, |p| p.hash_seed),
            limiter,
            active,
            dropped: [[0; 3]; 3],
            start: host::now(),
        })
    }

    fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
        if !self.active[TRACES] {
            return Ok(Verdict::Unchanged);
        }
        let now = self.now_if_limiting();
        Ok(keep_spans(batch, |resource, _scope, span| {
            let status = span.status.as_ref().map_or(0, |s| s.code);
            let record = Record {
                signal: TRACES,
                resource,
                name: &span.name,
                attributes: &span.attributes,
                body: None,
                severity: None,
                status,
                kind: span.kind,
            };
            self.judge(
                &record,
                status == STATUS_ERROR,
                |seed| sampling::trace_randomness(&span.trace_id, seed),
                now,
            )
        }))
    }

    fn metrics(&mut self, batch: &mut ExportMetricsServiceRequest) -> Result<Verdict, Error> {
        if !self.active[METRICS] {
            return Ok(Verdict::Unchanged);
        }
        let mut kept = Vec::new();
        let mut index = 0u32;
        for rm in &batch.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    for_each_point(m, |attributes| {
                        let record = Record {
                            signal: METRICS,
                            resource: rm.resource.as_ref(),
                            name: &m.name,
                            attributes,
                            body: None,
                            severity: None,
                            status: 0,
                            kind: 0,
                        };
                        if self.judge(&record, false, |_| None, 0) {
                            kept.push(index);
                        }
                        index += 1;
                    });
                }
            }
        }
        Ok(if kept.len() == index as usize {
            Verdict::Unchanged
        } else {
            Verdict::Keep(kept)
        })
    }

    fn logs(&mut self, batch: &mut ExportLogsServiceRequest) -> Result<Verdict, Error> {
        if !self.active[LOGS] {
            return Ok(Verdict::Unchanged);
        }
        let now = self.now_if_limiting();
        Ok(keep_logs(batch, |resource, _scope, log| {
            let severity = log_severity(log);
            let record = Record {
                signal: LOGS,
                resource,
                name: &log.event_name,
                attributes: &log.attributes,
                body: log.body.as_ref(),
                severity,
                status: 0,
                kind: 0,
            };
            self.judge(
                &record,
                severity.is_some_and(|s| s >= SEVERITY_ERROR),
                |seed| sampling::log_randomness(log, seed),
                now,
            )
        }))
    }

    fn tick(&mut self, now: u64) -> Result<(), Error> {
        if let Some(limiter) = &mut self.limiter {
            limiter.forget_full(now);
        }
        if self.total_dropped() > 0 {
            host::emit_metrics(&self.dropped_metric(now));
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut state = State {
            start_time_unix_nano: self.start,
            dropped: BTreeMap::new(),
        };
        for (reason, by_signal) in self.dropped.iter().enumerate() {
            for (signal, &count) in by_signal.iter().enumerate() {
                if count > 0 {
                    state
                        .dropped
                        .entry(REASON_NAMES[reason].to_string())
                        .or_default()
                        .insert(SIGNAL_NAMES[signal].to_string(), count);
                }
            }
        }
        sluice_sdk::serde_json::to_vec(&state).unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        if state.is_empty() {
            return Ok(());
        }
        let state: State = sluice_sdk::serde_json::from_slice(state)
            .map_err(|e| Error::Input(format!("unreadable state: {e}")))?;
        let mut dropped = [[0u64; 3]; 3];
        for (reason, by_signal) in &state.dropped {
            let Some(r) = REASON_NAMES.iter().position(|n| n == reason) else {
                host::log(
                    Level::Warn,
                    &format!("ignoring counts of unknown reason {reason:?} in the state"),
                );
                continue;
            };
            for (signal, &count) in by_signal {
                if let Some(s) = SIGNAL_NAMES.iter().position(|n| n == signal) {
                    dropped[r][s] = count;
                }
            }
        }
        self.dropped = dropped;
        self.start = state.start_time_unix_nano;
        Ok(())
    }
}

sluice_sdk::export_plugin!(Sample);

#[cfg(test)]
mod tests;
