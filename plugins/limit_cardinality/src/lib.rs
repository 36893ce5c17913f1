//! `limit_cardinality`: keeps metric cardinality in check.
//!
//! Per metric data point (all five metric types), in this order:
//!
//! 1. **normalize**: the values of the configured attributes (default `url.path` and
//!    `http.target`) are read as paths, and segments that are ids become placeholders:
//!    `/users/123/orders/9f8c0e6e-...` becomes `/users/{id}/orders/{uuid}`;
//! 2. **value limits**: an attribute with a `max_values` limit for the metric keeps its value if
//!    the value was seen before or the cap is not reached yet; otherwise the value becomes the
//!    overflow marker (`overflow`);
//! 3. **series limits**: with `max_series`, an attribute set beyond the cap is replaced by the
//!    single attribute `otel.metric.overflow=true`, as the OpenTelemetry SDKs do.
//!
//! Spans and log records can have their attributes normalized too (`normalize.signals`); the
//! limits apply to metrics only. What was replaced is counted per metric and key, and emitted
//! on every tick as the cumulative counter `limit_cardinality.overflows{metric, key}`. The seen
//! values and series are kept as 64-bit hashes, at most `max_tracked` of them in all; they and
//! the counts are the plugin's state (`snapshot`/`restore`).

mod config;
mod normalize;
mod tracker;

use std::collections::BTreeMap;

use sluice_sdk::host::{self, Level};
use sluice_sdk::metrics::Counter;
use sluice_sdk::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_sdk::otlp::metrics::v1::metric;
use sluice_sdk::{Error, Info, Plugin, Signal, Verdict, map_logs, map_spans};

pub use config::Config;
use config::SignalName;
use normalize::Normalizer;
use tracker::{Refusal, SavedMetric, Tracker, series_hash, value_hash};

/// The attribute that replaces an attribute set beyond `max_series`.
pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";
/// The `key` under which series replacements are counted.
const SERIES_KEY: &str = "*";
/// Distinct `(metric, key)` counters kept; further pairs are counted under [`OTHER`].
const MAX_COUNTERS: usize = 1000;
const OTHER: &str = "(other)";
/// The emitted metric.
const OVERFLOWS_METRIC: &str = "limit_cardinality.overflows";

const TRACES: usize = 0;
const METRICS: usize = 1;
const LOGS: usize = 2;

/// Which metrics a limit applies to.
#[derive(Debug)]
enum MetricPattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl MetricPattern {
    fn new(text: &str) -> MetricPattern {
        match text {
            "*" => MetricPattern::Any,
            t => match t.strip_suffix('*') {
                Some(prefix) => MetricPattern::Prefix(prefix.to_string()),
                None => MetricPattern::Exact(t.to_string()),
            },
        }
    }

    /// How specifically the pattern matches `name` (higher wins), or `None`.
    fn specificity(&self, name: &str) -> Option<(u8, usize)> {
        match self {
            MetricPattern::Any => Some((0, 0)),
            MetricPattern::Prefix(p) => name.starts_with(p.as_str()).then_some((1, p.len())),
            MetricPattern::Exact(e) => (name == e).then_some((2, 0)),
        }
    }
}

/// A compiled limit: `key` with `max` values, or (no key) `max` series.
#[derive(Debug)]
struct Rule {
    metric: MetricPattern,
    key: Option<String>,
    max: usize,
}

/// The limits that apply to one metric.
#[derive(Debug, Default)]
struct Resolved<'a> {
    /// `(key, max_values)`, one per key.
    values: Vec<(&'a str, usize)>,
    max_series: Option<usize>,
}

impl Resolved<'_> {
    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.max_series.is_none()
    }
}

/// For each key (and for the series cap), the most specific rule matching `name`.
fn resolve<'a>(rules: &'a [Rule], name: &str) -> Resolved<'a> {
    let mut values: Vec<(&'a str, usize, (u8, usize))> = Vec::new();
    let mut series: Option<(usize, (u8, usize))> = None;
    for rule in rules {
        let Some(spec) = rule.metric.specificity(name) else {
            continue;
        };
        match &rule.key {
            Some(key) => match values.iter_mut().find(|(k, _, _)| k == key) {
                Some(entry) if entry.2 < spec => *entry = (key, rule.max, spec),
                Some(_) => {}
                None => values.push((key, rule.max, spec)),
            },
            None => {
                if series.is_none_or(|(_, s)| s < spec) {
                    series = Some((rule.max, spec));
                }
            }
        }
    }
    Resolved {
        values: values.into_iter().map(|(k, m, _)| (k, m)).collect(),
        max_series: series.map(|(m, _)| m),
    }
}

/// Replacement counts by `(metric, key)`, at most [`MAX_COUNTERS`] pairs.
#[derive(Debug, Default)]
struct Counts(BTreeMap<(String, String), u64>);

impl Counts {
    fn add(&mut self, metric: &str, key: &str, n: u64) {
        if let Some(c) = self.0.get_mut(&(metric.to_string(), key.to_string())) {
            *c = c.saturating_add(n);
            return;
        }
        let pair = if self.0.len() < MAX_COUNTERS {
            (metric.to_string(), key.to_string())
        } else {
            (OTHER.to_string(), OTHER.to_string())
        };
        let c = self.0.entry(pair).or_insert(0);
        *c = c.saturating_add(n);
    }

    fn total(&self) -> u64 {
        self.0.values().fold(0, |a, &b| a.saturating_add(b))
    }
}

/// The plugin.
#[derive(Debug)]
pub struct LimitCardinality {
    normalizer: Option<Normalizer>,
    /// Whether a signal's attributes are normalized: `[traces, metrics, logs]`.
    normalize_signals: [bool; 3],
    rules: Vec<Rule>,
    overflow_value: String,
    tracker: Tracker,
    counts: Counts,
    /// Start of the cumulative counts (unix nanoseconds).
    start: u64,
    reset_interval: Option<u64>,
    last_reset: u64,
    /// Whether the full budget was reported since the last reset.
    budget_warned: bool,
}

fn string_value(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

#[cfg(test)]
fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: string_value(value),
        ..Default::default()
    }
}

fn overflow_attribute() -> KeyValue {
    KeyValue {
        key: OVERFLOW_ATTRIBUTE.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(true)),
        }),
        ..Default::default()
    }
}

fn is_overflow_set(attributes: &[KeyValue]) -> bool {
    matches!(attributes, [kv] if kv.key == OVERFLOW_ATTRIBUTE)
}

/// Normalizes the configured attributes in place; returns whether any changed.
fn normalize_attributes(n: &Normalizer, attributes: &mut [KeyValue]) -> bool {
    let mut changed = false;
    for kv in attributes.iter_mut() {
        if !n.applies_to(&kv.key) {
            continue;
        }
        if let Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        }) = &mut kv.value
            && let Some(normalized) = n.normalize(s)
        {
            *s = normalized;
            changed = true;
        }
    }
    changed
}

/// Calls `f` with the attributes of each data point of a metric.
fn for_each_point_mut(data: &mut Option<metric::Data>, mut f: impl FnMut(&mut Vec<KeyValue>)) {
    match data {
        Some(metric::Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(metric::Data::Sum(s)) => s.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(metric::Data::Histogram(h)) => {
            h.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            h.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
        }
        Some(metric::Data::Summary(s)) => {
            s.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
        }
        None => {}
    }
}

impl LimitCardinality {
    /// Applies normalization and the limits to one data point's attributes; returns whether
    /// anything changed.
    #[allow(clippy::too_many_arguments)]
    fn point(
        normalizer: Option<&Normalizer>,
        limits: &Resolved,
        overflow_value: &str,
        tracker: &mut Tracker,
        counts: &mut Counts,
        budget_full: &mut bool,
        metric: &str,
        attributes: &mut Vec<KeyValue>,
    ) -> bool {
        let mut changed = normalizer.is_some_and(|n| normalize_attributes(n, attributes));
        for &(key, max) in &limits.values {
            let Some(kv) = attributes.iter_mut().find(|kv| kv.key == key) else {
                continue;
            };
            if let Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) = &kv.value
                && s == overflow_value
            {
                // Already replaced upstream: not a value of its own.
                continue;
            }
            let hash = value_hash(kv.value.as_ref());
            if let Err(why) = tracker.admit_value(metric, key, hash, max) {
                *budget_full |= why == Refusal::Budget;
                kv.value = string_value(overflow_value);
                counts.add(metric, key, 1);
                changed = true;
            }
        }
        if let Some(max) = limits.max_series
            && !is_overflow_set(attributes)
        {
            let hash = series_hash(attributes);
            if let Err(why) = tracker.admit_series(metric, hash, max) {
                *budget_full |= why == Refusal::Budget;
                *attributes = vec![overflow_attribute()];
                counts.add(metric, SERIES_KEY, 1);
                changed = true;
            }
        }
        changed
    }

    /// The counts as the `limit_cardinality.overflows` metric.
    fn overflows_metric(&self, now: u64) -> ExportMetricsServiceRequest {
        Counter {
            scope: "sluice-plugin-limit-cardinality",
            version: env!("CARGO_PKG_VERSION"),
            name: OVERFLOWS_METRIC,
            description: "Attribute values and attribute sets replaced by the limit_cardinality plugin, by metric and key (`*`: the whole attribute set).",
            unit: "{replacement}",
        }
        .request(
            self.start,
            now,
            self.counts
                .0
                .iter()
                .filter(|&(_, &n)| n > 0)
                .map(|((metric, key), &n)| {
                    (vec![("metric", metric.clone()), ("key", key.clone())], n)
                }),
        )
    }

    /// Hands a restored metric's hashes to the tracker, within today's limits and budget.
    fn restore_metric(&mut self, name: &str, saved: &SavedMetric) {
        let limits = resolve(&self.rules, name);
        for (key, hashes) in &saved.values {
            let Some(&(_, max)) = limits.values.iter().find(|(k, _)| k == key) else {
                continue;
            };
            for &h in hashes {
                if self.tracker.admit_value(name, key, h, max).is_err() {
                    break;
                }
            }
        }
        if let Some(max) = limits.max_series {
            for &h in &saved.series {
                if self.tracker.admit_series(name, h, max).is_err() {
                    break;
                }
            }
        }
    }
}

/// One counter in the snapshot.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SavedCount {
    metric: String,
    key: String,
    count: u64,
}

/// The snapshot: the counts with their start time, and the seen sets.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    start_time_unix_nano: u64,
    last_reset_unix_nano: u64,
    #[serde(default)]
    overflows: Vec<SavedCount>,
    #[serde(default)]
    seen: BTreeMap<String, SavedMetric>,
}

impl Plugin for LimitCardinality {
    fn describe() -> Info {
        Info::new(
            "limit_cardinality",
            env!("CARGO_PKG_VERSION"),
            &[Signal::Metrics, Signal::Traces, Signal::Logs],
        )
        .stateful()
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config = Config::parse(config)?;
        let normalizer = Normalizer::new(&config.normalize)?;
        let mut normalize_signals = [false; 3];
        if normalizer.is_some() {
            for s in &config.normalize.signals {
                normalize_signals[match s {
                    SignalName::Traces => TRACES,
                    SignalName::Metrics => METRICS,
                    SignalName::Logs => LOGS,
                }] = true;
            }
        }
        let rules = config
            .limits
            .iter()
            .map(|l| Rule {
                metric: MetricPattern::new(&l.metric),
                key: l.key.clone(),
                max: l.max_values.or(l.max_series).unwrap_or(1),
            })
            .collect();
        let now = host::now();
        Ok(LimitCardinality {
            normalizer,
            normalize_signals,
            rules,
            overflow_value: config.overflow_value,
            tracker: Tracker::new(config.max_tracked),
            counts: Counts::default(),
            start: now,
            reset_interval: config
                .reset_interval
                .as_deref()
                .and_then(config::parse_duration),
            last_reset: now,
            budget_warned: false,
        })
    }

    fn metrics(&mut self, batch: &mut ExportMetricsServiceRequest) -> Result<Verdict, Error> {
        let normalizer = self
            .normalizer
            .as_ref()
            .filter(|_| self.normalize_signals[METRICS]);
        if normalizer.is_none() && self.rules.is_empty() {
            return Ok(Verdict::Unchanged);
        }
        let mut changed = false;
        let mut budget_full = false;
        for rm in &mut batch.resource_metrics {
            for sm in &mut rm.scope_metrics {
                for m in &mut sm.metrics {
                    let limits = resolve(&self.rules, &m.name);
                    if normalizer.is_none() && limits.is_empty() {
                        continue;
                    }
                    let name = m.name.as_str();
                    for_each_point_mut(&mut m.data, |attributes| {
                        changed |= Self::point(
                            normalizer,
                            &limits,
                            &self.overflow_value,
                            &mut self.tracker,
                            &mut self.counts,
                            &mut budget_full,
                            name,
                            attributes,
                        );
                    });
                }
            }
        }
        if budget_full && !self.budget_warned {
            self.budget_warned = true;
            host::log(
                Level::Warn,
                &format!(
                    "max_tracked ({}) reached: new values and series are replaced as overflow{}",
                    self.tracker.total(),
                    if self.reset_interval.is_some() {
                        " until the next reset"
                    } else {
                        "; set reset_interval to forget old ones"
                    }
                ),
            );
        }
        Ok(if changed {
            Verdict::Modified
        } else {
            Verdict::Unchanged
        })
    }

    fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
        match &self.normalizer {
            Some(n) if self.normalize_signals[TRACES] => Ok(map_spans(batch, |span| {
                normalize_attributes(n, &mut span.attributes)
            })),
            _ => Ok(Verdict::Unchanged),
        }
    }

    fn logs(&mut self, batch: &mut ExportLogsServiceRequest) -> Result<Verdict, Error> {
        match &self.normalizer {
            Some(n) if self.normalize_signals[LOGS] => Ok(map_logs(batch, |log| {
                normalize_attributes(n, &mut log.attributes)
            })),
            _ => Ok(Verdict::Unchanged),
        }
    }

    fn tick(&mut self, now: u64) -> Result<(), Error> {
        if let Some(interval) = self.reset_interval {
            if now < self.last_reset {
                // The clock went back: start the interval again.
                self.last_reset = now;
            } else if now - self.last_reset >= interval {
                self.tracker.clear();
                self.last_reset = now;
                self.budget_warned = false;
            }
        }
        if self.counts.total() > 0 {
            host::emit_metrics(&self.overflows_metric(now));
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        let state = State {
            start_time_unix_nano: self.start,
            last_reset_unix_nano: self.last_reset,
            overflows: self
                .counts
                .0
                .iter()
                .map(|((metric, key), &count)| SavedCount {
                    metric: metric.clone(),
                    key: key.clone(),
                    count,
                })
                .collect(),
            seen: self.tracker.export(),
        };
        sluice_sdk::serde_json::to_vec(&state).unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        if state.is_empty() {
            return Ok(());
        }
        let state: State = sluice_sdk::serde_json::from_slice(state)
            .map_err(|e| Error::Input(format!("unreadable state: {e}")))?;
        self.counts = Counts::default();
        for c in &state.overflows {
            self.counts.add(&c.metric, &c.key, c.count);
        }
        self.start = state.start_time_unix_nano;
        self.last_reset = state.last_reset_unix_nano;
        self.tracker.clear();
        self.budget_warned = false;
        for (name, saved) in &state.seen {
            self.restore_metric(name, saved);
        }
        Ok(())
    }
}

sluice_sdk::export_plugin!(LimitCardinality);

#[cfg(test)]
mod tests;
