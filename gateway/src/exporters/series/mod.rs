//! The series store shared by the Prometheus exporters: OTLP data points in, Prometheus series
//! out, rendered by a [`exposition::Collector`] (the scrape endpoint's text, remote write's time
//! series).
//!
//! Delta sums and delta histograms are accumulated into cumulative series; cumulative points
//! replace the stored value. Memory is bounded two ways: a series not updated within
//! `metric_expiration` is removed (a live series is updated, so it never expires and never
//! resets), and new series beyond `max_series` are refused and counted, even if nobody scrapes.

pub mod explore;
pub mod exposition;
mod labels;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint,
    NumberDataPoint, exemplar, metric::Data, number_data_point,
};

pub use exposition::{Collector, TextCollector, collect_series, format_float};
pub use labels::any_value_string;
use labels::{PointLabels, attribute_labels, hex, merge_labels};

use crate::naming::{self, NameKind, TranslationStrategy};

/// OTLP data point flag: the point has no recorded value (the series went stale).
const FLAG_NO_RECORDED_VALUE: u32 = 1;

pub type Labels = Vec<(String, String)>;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub strategy: TranslationStrategy,
    pub expiration: Duration,
    pub max_series: usize,
    /// Resource attributes copied onto every series as labels.
    pub promote_resource_attributes: Vec<String>,
    /// Whether to expose the other resource attributes as `target_info`.
    pub target_info: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    pub(super) fn text(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Histogram {
        bounds: Vec<f64>,
        /// Per bucket (not cumulative), `bounds.len() + 1` entries, the last one for +Inf.
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
    Summary {
        quantiles: Vec<(f64, f64)>,
        sum: f64,
        count: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredExemplar {
    pub value: f64,
    pub time_unix_nano: u64,
    pub trace_id: String,
    pub span_id: String,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub value: Value,
    pub updated: Instant,
    /// Time of the latest point, unix nanoseconds.
    pub time_unix_nano: u64,
    /// Exemplars: one for counters, one per bucket for histograms.
    pub exemplars: Vec<Option<StoredExemplar>>,
}

#[derive(Debug)]
pub struct Family {
    pub kind: Kind,
    pub help: String,
    /// The OTLP unit of the metric (`s`, `By`, `{request}`), as sent; empty if none.
    pub unit: String,
    /// In first-seen order, so a scrape needs no sort and its output is stable.
    pub series: IndexMap<Labels, Series>,
}

/// What an ingest could not store, for the exporter's drop counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub stored: usize,
    pub over_max_series: usize,
    pub type_conflict: usize,
}

#[derive(Debug)]
pub struct Store {
    cfg: StoreConfig,
    families: BTreeMap<String, Family>,
    series: usize,
    target_info: HashMap<Labels, Instant>,
    last_sweep: Instant,
    /// Changes whenever series are removed (positions in a family shift), so that a render in
    /// chunks knows to start again.
    generation: u64,
    /// Length of the last render, so that the next one allocates its output once.
    last_render_len: usize,
}

impl Store {
    pub fn new(cfg: StoreConfig) -> Store {
        Store {
            cfg,
            families: BTreeMap::new(),
            series: 0,
            target_info: HashMap::new(),
            last_sweep: Instant::now(),
            generation: 0,
            last_render_len: 0,
        }
    }

    pub fn series_count(&self) -> usize {
        self.series
    }

    pub fn families(&self) -> &BTreeMap<String, Family> {
        &self.families
    }

    /// Stores every data point of `req`; `touched`, if given, receives the keys of the series
    /// that changed (for remote_write).
    pub fn ingest(
        &mut self,
        req: &ExportMetricsServiceRequest,
        now: Instant,
        mut touched: Option<&mut Vec<(String, Labels)>>,
    ) -> IngestReport {
        if now.duration_since(self.last_sweep) >= self.cfg.expiration / 4 {
            self.sweep(now);
        }
        let mut report = IngestReport::default();
        let strategy = self.cfg.strategy;
        let mut point_labels = PointLabels::default();
        for rm in &req.resource_metrics {
            let attrs = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let resource_labels = self.resource_labels(attrs, now);
            for sm in &rm.scope_metrics {
                let mut base = resource_labels.clone();
                if let Some(scope) = &sm.scope {
                    if !scope.name.is_empty() {
                        base.push(("otel_scope_name".into(), scope.name.clone()));
                    }
                    if !scope.version.is_empty() {
                        base.push(("otel_scope_version".into(), scope.version.clone()));
                    }
                }
                for metric in &sm.metrics {
                    let Some(data) = &metric.data else { continue };
                    let (kind, name_kind, delta) = match data {
                        Data::Gauge(_) => (Kind::Gauge, NameKind::Gauge, false),
                        Data::Sum(s) if s.is_monotonic => (
                            Kind::Counter,
                            NameKind::Counter,
                            s.aggregation_temporality == AggregationTemporality::Delta as i32,
                        ),
                        Data::Sum(s) => (
                            Kind::Gauge,
                            NameKind::Gauge,
                            s.aggregation_temporality == AggregationTemporality::Delta as i32,
                        ),
                        Data::Histogram(h) => (
                            Kind::Histogram,
                            NameKind::Other,
                            h.aggregation_temporality == AggregationTemporality::Delta as i32,
                        ),
                        Data::ExponentialHistogram(h) => (
                            Kind::Histogram,
                            NameKind::Other,
                            h.aggregation_temporality == AggregationTemporality::Delta as i32,
                        ),
                        Data::Summary(_) => (Kind::Summary, NameKind::Other, false),
                    };
                    let name = naming::metric_name(&metric.name, &metric.unit, name_kind, strategy);
                    let points: Vec<Point> = match data {
                        Data::Gauge(g) => g.data_points.iter().map(Point::number).collect(),
                        Data::Sum(s) => s.data_points.iter().map(Point::number).collect(),
                        Data::Histogram(h) => h.data_points.iter().map(Point::histogram).collect(),
                        Data::ExponentialHistogram(h) => h
                            .data_points
                            .iter()
                            .map(Point::exponential_histogram)
                            .collect(),
                        Data::Summary(s) => s
                            .data_points
                            .iter()
                            .map(|p| Point {
                                attributes: &p.attributes,
                                time: p.time_unix_nano,
                                flags: p.flags,
                                value: Value::Summary {
                                    quantiles: p
                                        .quantile_values
                                        .iter()
                                        .map(|q| (q.quantile, q.value))
                                        .collect(),
                                    sum: p.sum,
                                    count: p.count,
                                },
                                exemplars: &[],
                            })
                            .collect(),
                    };
                    for point in points {
                        point_labels.build(point.attributes, &base, strategy);
                        self.store_point(
                            &name,
                            kind,
                            &metric.description,
                            &metric.unit,
                            &point_labels,
                            point,
                            delta,
                            now,
                            &mut report,
                            touched.as_deref_mut(),
                        );
                    }
                }
            }
        }
        report
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one call site, all of it per-point context"
    )]
    fn store_point(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        unit: &str,
        labels: &PointLabels,
        point: Point<'_>,
        delta: bool,
        now: Instant,
        report: &mut IngestReport,
        touched: Option<&mut Vec<(String, Labels)>>,
    ) {
        // Looked up by `&str` first: the family exists for all but a metric's first point.
        let family = if let Some(family) = self.families.get_mut(name) {
            family
        } else {
            self.families
                .entry(name.to_string())
                .or_insert_with(|| Family {
                    kind,
                    help: help.to_string(),
                    unit: unit.to_string(),
                    series: IndexMap::new(),
                })
        };
        if family.kind != kind {
            report.type_conflict += 1;
            return;
        }
        if family.help.is_empty() && !help.is_empty() {
            family.help = help.to_string();
        }
        if point.flags & FLAG_NO_RECORDED_VALUE != 0 {
            if family.series.shift_remove(labels).is_some() {
                self.series -= 1;
                self.generation += 1;
            }
            return;
        }
        match family.series.get_mut(labels) {
            Some(series) => {
                // Out-of-order points for a cumulative series are ignored; delta points are
                // always added.
                if !delta && point.time != 0 && point.time < series.time_unix_nano {
                    return;
                }
                let exemplars = (!point.exemplars.is_empty())
                    .then(|| exemplars_for(&point.value, point.exemplars));
                if delta {
                    accumulate(&mut series.value, point.value);
                } else {
                    series.value = point.value;
                }
                series.updated = now;
                series.time_unix_nano = series.time_unix_nano.max(point.time);
                for (slot, new) in series
                    .exemplars
                    .iter_mut()
                    .zip(exemplars.into_iter().flatten())
                {
                    if new.is_some() {
                        *slot = new;
                    }
                }
            }
            None => {
                if self.series >= self.cfg.max_series {
                    report.over_max_series += 1;
                    return;
                }
                let exemplars = exemplars_for(&point.value, point.exemplars);
                family.series.insert(
                    labels.to_labels(),
                    Series {
                        value: point.value,
                        updated: now,
                        time_unix_nano: point.time,
                        exemplars,
                    },
                );
                self.series += 1;
            }
        }
        report.stored += 1;
        if let Some(t) = touched {
            t.push((name.to_string(), labels.to_labels()));
        }
    }

    fn resource_labels(&mut self, attrs: &[KeyValue], now: Instant) -> Labels {
        let get = |k: &str| {
            attrs
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.as_ref())
                .map(any_value_string)
        };
        let mut labels = Labels::new();
        let job = match (get("service.namespace"), get("service.name")) {
            (Some(ns), Some(name)) if !ns.is_empty() => Some(format!("{ns}/{name}")),
            (_, Some(name)) => Some(name),
            _ => None,
        };
        if let Some(job) = job {
            labels.push(("job".into(), job));
        }
        if let Some(instance) = get("service.instance.id") {
            labels.push(("instance".into(), instance));
        }
        for key in &self.cfg.promote_resource_attributes {
            if let Some(v) = get(key) {
                labels.push((naming::label_name(key, self.cfg.strategy), v));
            }
        }
        if self.cfg.target_info {
            let others: Vec<KeyValue> = attrs
                .iter()
                .filter(|a| {
                    !matches!(
                        a.key.as_str(),
                        "service.name" | "service.namespace" | "service.instance.id"
                    )
                })
                .cloned()
                .collect();
            if !others.is_empty() {
                let mut info = attribute_labels(&others, self.cfg.strategy);
                merge_labels(
                    &mut info,
                    &labels
                        .iter()
                        .filter(|(k, _)| k == "job" || k == "instance")
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                let known = self.target_info.contains_key(&info);
                if known || self.series < self.cfg.max_series {
                    if !known {
                        self.series += 1;
                    }
                    self.target_info.insert(info, now);
                }
            }
        }
        labels
    }

    /// Removes series not updated within the expiration.
    pub fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        let Some(cutoff) = now.checked_sub(self.cfg.expiration) else {
            return;
        };
        let mut removed = 0;
        for family in self.families.values_mut() {
            let before = family.series.len();
            family.series.retain(|_, s| s.updated >= cutoff);
            removed += before - family.series.len();
        }
        self.families.retain(|_, f| !f.series.is_empty());
        let before = self.target_info.len();
        self.target_info.retain(|_, t| *t >= cutoff);
        removed += before - self.target_info.len();
        self.series -= removed;
        if removed > 0 {
            self.generation += 1;
        }
    }
}

struct Point<'a> {
    attributes: &'a [KeyValue],
    time: u64,
    flags: u32,
    value: Value,
    exemplars: &'a [Exemplar],
}

impl<'a> Point<'a> {
    fn number(p: &'a NumberDataPoint) -> Point<'a> {
        Point {
            attributes: &p.attributes,
            time: p.time_unix_nano,
            flags: p.flags,
            value: Value::Scalar(number_value(p.value.as_ref())),
            exemplars: &p.exemplars,
        }
    }

    fn histogram(p: &'a HistogramDataPoint) -> Point<'a> {
        let mut counts = p.bucket_counts.clone();
        counts.resize(p.explicit_bounds.len() + 1, 0);
        if p.bucket_counts.is_empty() {
            // Only count and sum were recorded: everything is in +Inf.
            if let Some(last) = counts.last_mut() {
                *last = p.count;
            }
        }
        Point {
            attributes: &p.attributes,
            time: p.time_unix_nano,
            flags: p.flags,
            value: Value::Histogram {
                bounds: p.explicit_bounds.clone(),
                counts,
                sum: p.sum.unwrap_or(0.0),
                count: p.count,
            },
            exemplars: &p.exemplars,
        }
    }

    fn exponential_histogram(p: &'a ExponentialHistogramDataPoint) -> Point<'a> {
        let (bounds, counts) = exponential_to_classic(p);
        Point {
            attributes: &p.attributes,
            time: p.time_unix_nano,
            flags: p.flags,
            value: Value::Histogram {
                bounds,
                counts,
                sum: p.sum.unwrap_or(0.0),
                count: p.count,
            },
            exemplars: &p.exemplars,
        }
    }
}

/// Converts an exponential histogram to classic buckets with the same boundaries: bucket `i`
/// of scale `s` covers `(base^i, base^(i+1)]` with `base = 2^(2^-s)`.
///
/// A scale outside OTLP's range (-10 to 20) has no meaningful boundaries: the point's count
/// goes to +Inf alone.
pub fn exponential_to_classic(p: &ExponentialHistogramDataPoint) -> (Vec<f64>, Vec<u64>) {
    if !(-10..=20).contains(&p.scale) {
        return (Vec::new(), vec![p.count]);
    }
    let base = 2f64.powf(2f64.powi(-p.scale));
    let mut bounds = Vec::new();
    let mut counts = Vec::new();
    if let Some(neg) = &p.negative {
        // Most negative first: negative bucket i covers [-(base^(i+1)), -(base^i)).
        for (i, c) in neg.bucket_counts.iter().enumerate().rev() {
            let index = neg.offset as i64 + i as i64;
            bounds.push(-base.powi(index as i32));
            counts.push(*c);
        }
    }
    if p.zero_count > 0 || p.zero_threshold > 0.0 || bounds.is_empty() {
        bounds.push(p.zero_threshold.max(0.0));
        counts.push(p.zero_count);
    }
    if let Some(pos) = &p.positive {
        for (i, c) in pos.bucket_counts.iter().enumerate() {
            let index = pos.offset as i64 + i as i64;
            let upper = base.powi((index + 1) as i32);
            if bounds.last().is_some_and(|b| *b >= upper) {
                if let Some(last) = counts.last_mut() {
                    *last = last.saturating_add(*c);
                }
                continue;
            }
            bounds.push(upper);
            counts.push(*c);
        }
    }
    // +Inf holds whatever the buckets do not account for (normally nothing).
    let bucketed = counts.iter().fold(0u64, |a, c| a.saturating_add(*c));
    counts.push(p.count.saturating_sub(bucketed));
    (bounds, counts)
}

fn number_value(v: Option<&number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

fn accumulate(stored: &mut Value, new: Value) {
    match (stored, new) {
        (Value::Scalar(a), Value::Scalar(b)) => *a += b,
        (
            Value::Histogram {
                bounds,
                counts,
                sum,
                count,
            },
            Value::Histogram {
                bounds: nb,
                counts: nc,
                sum: ns,
                count: ncount,
            },
        ) if *bounds == nb => {
            // Counts come from clients: they saturate rather than overflow.
            for (a, b) in counts.iter_mut().zip(nc) {
                *a = a.saturating_add(b);
            }
            *sum += ns;
            *count = count.saturating_add(ncount);
        }
        (stored, new) => *stored = new,
    }
}

fn exemplars_for(value: &Value, exemplars: &[Exemplar]) -> Vec<Option<StoredExemplar>> {
    let slots = match value {
        Value::Scalar(_) => 1,
        Value::Histogram { counts, .. } => counts.len(),
        Value::Summary { .. } => 0,
    };
    let mut out = vec![None; slots];
    for e in exemplars {
        if e.trace_id.is_empty() && e.span_id.is_empty() {
            continue;
        }
        let v = match e.value {
            Some(exemplar::Value::AsDouble(d)) => d,
            Some(exemplar::Value::AsInt(i)) => i as f64,
            None => continue,
        };
        let slot = match value {
            Value::Scalar(_) => 0,
            Value::Histogram { bounds, .. } => {
                bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len())
            }
            Value::Summary { .. } => continue,
        };
        out[slot] = Some(StoredExemplar {
            value: v,
            time_unix_nano: e.time_unix_nano,
            trace_id: hex(&e.trace_id),
            span_id: hex(&e.span_id),
        });
    }
    out
}
