//! The series store behind the scrape endpoint (and the remote_write exporter): OTLP data points
//! in, Prometheus series out.
//!
//! Delta sums and delta histograms are accumulated into cumulative series; cumulative points
//! replace the stored value. Memory is bounded two ways: a series not updated within
//! `metric_expiration` is removed (a live series is updated, so it never expires and never
//! resets), and new series beyond `max_series` are refused and counted, even if nobody scrapes.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::ops::Range;

use indexmap::{Equivalent, IndexMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint,
    NumberDataPoint, exemplar, metric::Data, number_data_point,
};

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
    fn text(self) -> &'static str {
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

    /// Renders the exposition: Prometheus text 0.0.4, or OpenMetrics 1.0 with exemplars.
    pub fn render(&mut self, openmetrics: bool, now: Instant) -> String {
        self.sweep(now);
        let mut out = String::with_capacity(self.render_capacity());
        self.render_target_info(&mut out, openmetrics);
        for (name, family) in &self.families {
            let sample_name = family_header(&mut out, name, family, openmetrics);
            for (labels, s) in &family.series {
                render_series(&mut out, &sample_name, family.kind, labels, s, openmetrics);
            }
        }
        if openmetrics {
            out.push_str("# EOF\n");
        }
        self.last_render_len = out.len();
        out
    }

    /// The output size to allocate for a render: the last one's and a margin, or an estimate.
    fn render_capacity(&self) -> usize {
        (self.series * 96 + 256).max(self.last_render_len + self.last_render_len / 8)
    }

    fn render_target_info(&self, out: &mut String, openmetrics: bool) {
        if self.target_info.is_empty() {
            return;
        }
        if openmetrics {
            out.push_str("# TYPE target info\n");
        } else {
            out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
        }
        let mut infos: Vec<&Labels> = self.target_info.keys().collect();
        infos.sort();
        for labels in infos {
            write_sample(out, "target_info", Pairs::Labels(labels), None, 1.0);
        }
    }

    /// The same exposition as [`Store::render`], built while holding the lock for at most
    /// `chunk` series at a time, so that ingest (the exporter's writers) waits for one chunk,
    /// not for the whole scrape. If series are removed meanwhile (which shifts positions), the
    /// render starts again; after three tries it renders under one lock.
    pub fn render_chunked(
        store: &std::sync::Mutex<Store>,
        openmetrics: bool,
        now: Instant,
        chunk: usize,
    ) -> Option<String> {
        let lock = || {
            Some(
                store
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
        };
        'attempt: for _ in 0..3 {
            let (generation, names, mut out) = {
                let mut s = lock()?;
                s.sweep(now);
                let mut out = String::with_capacity(s.render_capacity());
                s.render_target_info(&mut out, openmetrics);
                (
                    s.generation,
                    s.families.keys().cloned().collect::<Vec<_>>(),
                    out,
                )
            };
            for name in &names {
                let mut pos = 0;
                let mut sample_name = String::new();
                loop {
                    let s = lock()?;
                    if s.generation != generation {
                        continue 'attempt;
                    }
                    let Some(family) = s.families.get(name) else {
                        break;
                    };
                    if pos == 0 {
                        sample_name = family_header(&mut out, name, family, openmetrics);
                    }
                    let end = (pos + chunk.max(1)).min(family.series.len());
                    for i in pos..end {
                        if let Some((labels, series)) = family.series.get_index(i) {
                            render_series(
                                &mut out,
                                &sample_name,
                                family.kind,
                                labels,
                                series,
                                openmetrics,
                            );
                        }
                    }
                    pos = end;
                    if pos >= family.series.len() {
                        break;
                    }
                }
            }
            if openmetrics {
                out.push_str("# EOF\n");
            }
            lock()?.last_render_len = out.len();
            return Some(out);
        }
        Some(lock()?.render(openmetrics, now))
    }
}

/// `# HELP` and `# TYPE` of a family; returns the name its samples carry.
fn family_header(out: &mut String, name: &str, family: &Family, openmetrics: bool) -> String {
    let family_name = if openmetrics && family.kind == Kind::Counter {
        name.strip_suffix("_total").unwrap_or(name)
    } else {
        name
    };
    if !family.help.is_empty() {
        let _ = writeln!(
            out,
            "# HELP {} {}",
            quote_name(family_name),
            escape_help(&family.help)
        );
    }
    let _ = writeln!(
        out,
        "# TYPE {} {}",
        quote_name(family_name),
        family.kind.text()
    );
    // OpenMetrics counter samples always end in `_total`, even without suffixes.
    if openmetrics && family.kind == Kind::Counter {
        format!("{family_name}_total")
    } else {
        name.to_string()
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

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// An attribute value as a label value: strings as they are, other scalars in their usual text,
/// arrays and maps as JSON.
pub fn any_value_string(v: &AnyValue) -> String {
    let mut s = String::new();
    push_any_value(&mut s, v);
    s
}

/// [`any_value_string`], appended to `out`.
fn push_any_value(out: &mut String, v: &AnyValue) {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => out.push_str(s),
        Some(any_value::Value::BoolValue(b)) => {
            let _ = write!(out, "{b}");
        }
        Some(any_value::Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(any_value::Value::DoubleValue(d)) => {
            let _ = write!(out, "{d}");
        }
        Some(any_value::Value::BytesValue(b)) => push_hex(out, b),
        Some(any_value::Value::ArrayValue(a)) => out.push_str(
            &serde_json::to_string(&a.values.iter().map(any_value_json).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
        Some(any_value::Value::KvlistValue(_)) => {
            out.push_str(&serde_json::to_string(&any_value_json(v)).unwrap_or_default())
        }
        // A string-table index only has meaning inside profiles data.
        Some(any_value::Value::StringValueStrindex(i)) => {
            let _ = write!(out, "{i}");
        }
        None => {}
    }
}

fn any_value_json(v: &AnyValue) -> serde_json::Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone().into(),
        Some(any_value::Value::BoolValue(b)) => (*b).into(),
        Some(any_value::Value::IntValue(i)) => (*i).into(),
        Some(any_value::Value::DoubleValue(d)) => (*d).into(),
        Some(any_value::Value::BytesValue(b)) => hex(b).into(),
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(any_value_json)
            .collect::<Vec<_>>()
            .into(),
        Some(any_value::Value::KvlistValue(kv)) => kv
            .values
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.as_ref().map(any_value_json).unwrap_or_default(),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Some(any_value::Value::StringValueStrindex(i)) => (*i).into(),
        None => serde_json::Value::Null,
    }
}

/// One label of a point being ingested, as ranges of [`PointLabels::buf`].
#[derive(Debug, Clone)]
struct LabelRange {
    name: Range<usize>,
    value: Range<usize>,
    /// A resource or scope label, which wins over an attribute of the same name.
    base: bool,
}

/// The labels of one data point, built in buffers reused from point to point: looking up (and
/// updating) a series that exists allocates nothing; they become [`Labels`] only for a new
/// series. The same labels as `attribute_labels` and then `merge_labels` give.
#[derive(Debug, Default)]
struct PointLabels {
    buf: String,
    labels: Vec<LabelRange>,
}

impl PointLabels {
    /// `attrs` as labels (sanitized names), `base` over them, sorted by name.
    fn build(&mut self, attrs: &[KeyValue], base: &Labels, strategy: TranslationStrategy) {
        self.buf.clear();
        self.labels.clear();
        for a in attrs {
            let name = self.buf.len();
            naming::push_label_name(&mut self.buf, &a.key, strategy);
            let value = self.buf.len();
            if let Some(v) = &a.value {
                push_any_value(&mut self.buf, v);
            }
            self.labels.push(LabelRange {
                name: name..value,
                value: value..self.buf.len(),
                base: false,
            });
        }
        for (k, v) in base {
            self.push(k, v, true);
        }
        let buf = &self.buf;
        // Stable, attributes before base labels of the same name: the last of a name wins.
        self.labels.sort_by(|a, b| {
            buf[a.name.clone()]
                .cmp(&buf[b.name.clone()])
                .then(a.base.cmp(&b.base))
        });
        let mut kept = 0;
        for i in 0..self.labels.len() {
            if let Some(next) = self.labels.get(i + 1)
                && buf[next.name.clone()] == buf[self.labels[i].name.clone()]
            {
                if !next.base {
                    // Two attributes with one sanitized name: their values are joined.
                    return self.merge_the_slow_way(attrs, base, strategy);
                }
                continue;
            }
            self.labels.swap(kept, i);
            kept += 1;
        }
        self.labels.truncate(kept);
    }

    fn merge_the_slow_way(
        &mut self,
        attrs: &[KeyValue],
        base: &Labels,
        strategy: TranslationStrategy,
    ) {
        let mut labels = attribute_labels(attrs, strategy);
        merge_labels(&mut labels, base);
        self.buf.clear();
        self.labels.clear();
        for (k, v) in &labels {
            self.push(k, v, false);
        }
    }

    fn push(&mut self, name: &str, value: &str, base: bool) {
        let start = self.buf.len();
        self.buf.push_str(name);
        let middle = self.buf.len();
        self.buf.push_str(value);
        self.labels.push(LabelRange {
            name: start..middle,
            value: middle..self.buf.len(),
            base,
        });
    }

    fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.labels
            .iter()
            .map(|l| (&self.buf[l.name.clone()], &self.buf[l.value.clone()]))
    }

    fn to_labels(&self) -> Labels {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl Hash for PointLabels {
    /// Exactly what the same [`Labels`] (a `Vec<(String, String)>`) feed a hasher, so that a
    /// series map keyed by `Labels` can be searched with a `PointLabels`: the length prefix of
    /// a slice (a slice of units carries nothing else; a `Vec` of them allocates nothing), then
    /// each pair as two `str`s.
    fn hash<H: Hasher>(&self, state: &mut H) {
        vec![(); self.labels.len()].as_slice().hash(state);
        for (k, v) in self.iter() {
            (k, v).hash(state);
        }
    }
}

impl Equivalent<Labels> for PointLabels {
    fn equivalent(&self, key: &Labels) -> bool {
        key.len() == self.labels.len()
            && self
                .iter()
                .zip(key)
                .all(|((k, v), (kk, kv))| k == kk && v == kv)
    }
}

/// Attributes as sorted labels; attributes whose sanitized names collide are merged, their
/// values joined with `;` in the order of the original keys.
fn attribute_labels(attrs: &[KeyValue], strategy: TranslationStrategy) -> Labels {
    let mut by_name: BTreeMap<String, Vec<(&str, String)>> = BTreeMap::new();
    for a in attrs {
        let value = a.value.as_ref().map(any_value_string).unwrap_or_default();
        by_name
            .entry(naming::label_name(&a.key, strategy))
            .or_default()
            .push((&a.key, value));
    }
    by_name
        .into_iter()
        .map(|(name, mut values)| {
            values.sort_by(|a, b| a.0.cmp(b.0));
            let joined = values
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(";");
            (name, joined)
        })
        .collect()
}

/// Adds `extra` to sorted `labels`; `extra` wins on equal names.
fn merge_labels(labels: &mut Labels, extra: &[(String, String)]) {
    for (k, v) in extra {
        match labels.binary_search_by(|(n, _)| n.as_str().cmp(k)) {
            Ok(i) => labels[i].1 = v.clone(),
            Err(i) => labels.insert(i, (k.clone(), v.clone())),
        }
    }
}

fn render_series(out: &mut String, name: &str, kind: Kind, labels: &Labels, s: &Series, om: bool) {
    match &s.value {
        Value::Scalar(v) => {
            let exemplar = if om && kind == Kind::Counter {
                s.exemplars.first().and_then(|e| e.as_ref())
            } else {
                None
            };
            write_sample(out, name, Pairs::Labels(labels), None, *v);
            if let Some(e) = exemplar {
                attach_exemplar(out, e);
            }
        }
        Value::Histogram {
            bounds,
            counts,
            sum,
            count,
        } => {
            // The label pairs are written once and repeated on each of the series' lines.
            let mut pairs = String::new();
            push_label_pairs(&mut pairs, labels);
            let pairs = Pairs::Text(&pairs);
            let bucket = format!("{name}_bucket");
            let mut le = String::new();
            let mut cumulative = 0u64;
            for (i, c) in counts.iter().enumerate() {
                cumulative = cumulative.saturating_add(*c);
                le.clear();
                match bounds.get(i) {
                    Some(b) => push_float(&mut le, *b),
                    None => le.push_str("+Inf"),
                }
                write_sample(out, &bucket, pairs, Some(("le", &le)), cumulative as f64);
                if om && let Some(Some(e)) = s.exemplars.get(i) {
                    attach_exemplar(out, e);
                }
            }
            write_sample(out, &format!("{name}_sum"), pairs, None, *sum);
            write_sample(out, &format!("{name}_count"), pairs, None, *count as f64);
        }
        Value::Summary {
            quantiles,
            sum,
            count,
        } => {
            let pairs = Pairs::Labels(labels);
            for (q, v) in quantiles {
                write_sample(out, name, pairs, Some(("quantile", &format_float(*q))), *v);
            }
            write_sample(out, &format!("{name}_sum"), pairs, None, *sum);
            write_sample(out, &format!("{name}_count"), pairs, None, *count as f64);
        }
    }
}

fn attach_exemplar(out: &mut String, e: &StoredExemplar) {
    // Replace the sample's newline with the exemplar.
    out.pop();
    let _ = write!(out, " # {{");
    let mut first = true;
    if !e.trace_id.is_empty() {
        let _ = write!(out, "trace_id=\"{}\"", e.trace_id);
        first = false;
    }
    if !e.span_id.is_empty() {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "span_id=\"{}\"", e.span_id);
    }
    let _ = write!(out, "}} {}", format_float(e.value));
    if e.time_unix_nano > 0 {
        let _ = write!(out, " {:.3}", e.time_unix_nano as f64 / 1e9);
    }
    out.push('\n');
}

/// A sample's labels: the series' own, or the same already written as `k="v",...`.
#[derive(Clone, Copy)]
enum Pairs<'a> {
    Labels(&'a Labels),
    Text(&'a str),
}

impl Pairs<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Pairs::Labels(l) => l.is_empty(),
            Pairs::Text(t) => t.is_empty(),
        }
    }

    fn push(&self, out: &mut String) {
        match self {
            Pairs::Labels(l) => push_label_pairs(out, l),
            Pairs::Text(t) => out.push_str(t),
        }
    }
}

/// `k="v"` for each label, comma-separated.
fn push_label_pairs(out: &mut String, labels: &Labels) {
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_label(out, k, v);
    }
}

fn push_label(out: &mut String, k: &str, v: &str) {
    if naming::is_legacy_name(k) {
        out.push_str(k);
    } else {
        push_quoted(out, k);
    }
    out.push('=');
    push_quoted(out, v);
}

fn write_sample(
    out: &mut String,
    name: &str,
    pairs: Pairs<'_>,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    let legacy = naming::is_legacy_name(name);
    if legacy {
        out.push_str(name);
    }
    if !pairs.is_empty() || extra.is_some() || !legacy {
        out.push('{');
        let mut first = true;
        if !legacy {
            push_quoted(out, name);
            first = false;
        }
        if !pairs.is_empty() {
            if !first {
                out.push(',');
            }
            pairs.push(out);
            first = false;
        }
        if let Some((k, v)) = extra {
            if !first {
                out.push(',');
            }
            push_label(out, k, v);
        }
        out.push('}');
    }
    out.push(' ');
    push_float(out, value);
    out.push('\n');
}

/// Appends `"v"` with the exposition format's escapes, without allocating.
fn push_quoted(out: &mut String, v: &str) {
    out.push('"');
    if v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
    } else {
        out.push_str(v);
    }
    out.push('"');
}

fn push_float(out: &mut String, v: f64) {
    // Most sample values are counts: whole numbers print the same through the integer
    // formatter, which is several times cheaper than the float one (not -0, which prints "-0").
    if v.fract() == 0.0 && v.abs() < 1e15 && (v != 0.0 || v.is_sign_positive()) {
        let _ = write!(out, "{}", v as i64);
    } else if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str(&format_float(v));
    }
}

fn quote_name(name: &str) -> String {
    if naming::is_legacy_name(name) {
        name.to_string()
    } else {
        format!("\"{}\"", escape_label_value(name))
    }
}

pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

fn escape_label_value(v: &str) -> String {
    if !v.contains(['\\', '"', '\n']) {
        return v.to_string();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

    #[test]
    fn exponential_histogram_becomes_cumulative_classic_buckets() {
        // scale 0: base 2; positive buckets at offset 0 cover (1,2], (2,4], (4,8].
        let p = ExponentialHistogramDataPoint {
            scale: 0,
            count: 7,
            zero_count: 1,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![1, 2, 3],
            }),
            ..Default::default()
        };
        let (bounds, counts) = exponential_to_classic(&p);
        assert_eq!(bounds, vec![0.0, 2.0, 4.0, 8.0]);
        assert_eq!(counts, vec![1, 1, 2, 3, 0]);
    }

    #[test]
    fn label_collisions_are_merged_in_key_order() {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        let labels = attribute_labels(
            &[kv("a.b", "2"), kv("a_b", "1"), kv("c", "x")],
            TranslationStrategy::UnderscoreEscapingWithSuffixes,
        );
        assert_eq!(
            labels,
            vec![("a_b".into(), "2;1".into()), ("c".into(), "x".into())]
        );
    }

    #[test]
    fn point_labels_are_the_merged_labels_and_find_their_series() {
        let s = |v: &str| any_value::Value::StringValue(v.into());
        let kv = |k: &str, v: any_value::Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let strategy = TranslationStrategy::UnderscoreEscapingWithSuffixes;
        let base: Labels = vec![
            ("job".into(), "shop/cart".into()),
            ("otel_scope_name".into(), "lib".into()),
            ("job".into(), "later-wins".into()),
        ];
        let cases: Vec<Vec<KeyValue>> = vec![
            vec![],
            vec![
                kv("http.route", s("/a")),
                kv("code", any_value::Value::IntValue(200)),
            ],
            // An attribute under a resource label's name loses to it.
            vec![
                kv("job", s("mine")),
                kv("z", any_value::Value::BoolValue(true)),
            ],
            // Two attributes with one sanitized name are joined in key order.
            vec![kv("a_b", s("1")), kv("a.b", s("2")), kv("9x", s("n"))],
            vec![
                kv("b", any_value::Value::DoubleValue(0.5)),
                kv("a", any_value::Value::BytesValue(vec![1, 255])),
                kv("", s("empty key")),
            ],
        ];
        use std::hash::BuildHasher;
        let state = std::hash::RandomState::new();
        let mut point = PointLabels::default();
        let mut series: IndexMap<Labels, usize> = IndexMap::new();
        for (i, attrs) in cases.iter().enumerate() {
            let mut expected = attribute_labels(attrs, strategy);
            merge_labels(&mut expected, &base);
            point.build(attrs, &base, strategy);
            assert_eq!(point.to_labels(), expected, "case {i}");
            assert_eq!(
                state.hash_one(&point),
                state.hash_one(&expected),
                "case {i}"
            );
            series.insert(expected, i);
        }
        for (i, attrs) in cases.iter().enumerate() {
            point.build(attrs, &base, strategy);
            assert_eq!(series.get(&point), Some(&i), "case {i}");
        }
        point.build(&[kv("http.route", s("/b"))], &base, strategy);
        assert_eq!(series.get(&point), None);
    }

    fn counters(metrics: usize, per_metric: usize) -> ExportMetricsServiceRequest {
        use opentelemetry_proto::tonic::metrics::v1::{
            AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
            metric, number_data_point,
        };
        let kv = |k: &str, v: String| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v)),
            }),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: vec![kv("service.name", "api".into())],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: (0..metrics)
                        .map(|m| Metric {
                            name: format!("app.requests.{m}"),
                            description: "Requests.".into(),
                            data: Some(metric::Data::Sum(Sum {
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: true,
                                data_points: (0..per_metric)
                                    .map(|p| NumberDataPoint {
                                        attributes: vec![kv("pod", format!("pod-{p}"))],
                                        time_unix_nano: 1_700_000_000_000_000_000,
                                        value: Some(number_data_point::Value::AsInt(p as i64)),
                                        ..Default::default()
                                    })
                                    .collect(),
                            })),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn config() -> StoreConfig {
        StoreConfig {
            strategy: TranslationStrategy::UnderscoreEscapingWithSuffixes,
            expiration: Duration::from_secs(300),
            max_series: 1_000_000,
            promote_resource_attributes: Vec::new(),
            target_info: true,
        }
    }

    #[test]
    fn floats_print_as_rust_prints_them() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            3.0,
            0.5,
            1e-9,
            123456789.0,
            999_999_999_999_999.0,
            1e15,
            -1e15,
            1e16,
            1e300,
            2.5e-300,
            4503599627370497.0,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            let mut out = String::new();
            push_float(&mut out, v);
            assert_eq!(out, format!("{v}"), "{v:e}");
        }
        for (v, text) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            let mut out = String::new();
            push_float(&mut out, v);
            assert_eq!(out, text);
        }
    }

    /// A histogram's lines, as the exposition format has them: cumulative buckets with `le`,
    /// `_sum` and `_count`, the labels on each, a UTF-8 name quoted inside the braces.
    #[test]
    fn histograms_render_each_line_with_the_series_labels() {
        use opentelemetry_proto::tonic::metrics::v1::{
            AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
            ScopeMetrics, metric,
        };
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        let point = |attributes| HistogramDataPoint {
            attributes,
            count: 6,
            sum: Some(2.5),
            bucket_counts: vec![1, 2, 3],
            explicit_bounds: vec![0.1, 1.0],
            ..Default::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "req.dauer".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            data_points: vec![
                                point(vec![kv("path", "/a\"b"), kv("ünit", "x")]),
                                point(Vec::new()),
                            ],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let now = Instant::now();
        let mut store = Store::new(StoreConfig {
            strategy: TranslationStrategy::NoTranslation,
            target_info: false,
            ..config()
        });
        store.ingest(&request, now, None);
        let text = store.render(false, now);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let mut want = Vec::new();
        for labels in [r#"path="/a\"b","ünit"="x","#, ""] {
            want.extend([
                format!(r#"{{"req.dauer_bucket",{labels}le="0.1"}} 1"#),
                format!(r#"{{"req.dauer_bucket",{labels}le="1"}} 3"#),
                format!(r#"{{"req.dauer_bucket",{labels}le="+Inf"}} 6"#),
                format!(
                    r#"{{"req.dauer_sum",{}}} 2.5"#,
                    labels.trim_end_matches(',')
                ),
                format!(
                    r#"{{"req.dauer_count",{}}} 6"#,
                    labels.trim_end_matches(',')
                ),
            ]);
        }
        let want: Vec<String> = want.into_iter().map(|l| l.replace(",}", "}")).collect();
        assert_eq!(lines, want);
    }

    #[test]
    fn chunked_render_equals_the_whole_render() {
        let now = Instant::now();
        let mut store = Store::new(config());
        store.ingest(&counters(7, 1000), now, None);
        let whole = store.render(false, now);
        let whole_om = store.render(true, now);
        let store = std::sync::Mutex::new(store);
        for chunk in [1, 3, 999, 1000, 1001, 100_000] {
            assert_eq!(
                Store::render_chunked(&store, false, now, chunk).as_deref(),
                Some(whole.as_str()),
                "chunk {chunk}"
            );
        }
        assert_eq!(
            Store::render_chunked(&store, true, now, 100).as_deref(),
            Some(whole_om.as_str())
        );
        let samples = whole.lines().filter(|l| l.contains("pod=")).count();
        assert_eq!(samples, 7000);
    }

    #[test]
    fn chunked_render_starts_again_when_series_are_removed_midway() {
        let now = Instant::now();
        let mut s = Store::new(config());
        s.ingest(&counters(2, 10), now, None);
        let before = s.generation;
        // An expired sweep removes every series and bumps the generation.
        s.sweep(now + Duration::from_secs(301));
        assert!(s.generation > before);
        assert_eq!(s.series_count(), 0);
        let store = std::sync::Mutex::new(s);
        let out = Store::render_chunked(&store, false, now + Duration::from_secs(301), 4)
            .expect("renders");
        assert!(!out.contains("pod-"), "{out}");
    }
}
