//! One scrape's families ([`super::expfmt`]) as OTLP metrics, the way the Collector's
//! `prometheus` receiver maps them, and the memory a target keeps between scrapes.
//!
//! - The series' `job` and `instance` are the resource's `service.name` and
//!   `service.instance.id` (with `server.address`, `server.port` and `url.scheme` from the
//!   target); a `target_info` family's labels join that resource instead of becoming a metric.
//! - Counters are monotonic cumulative sums, gauges, unknown, info and stateset families gauges,
//!   histograms and summaries are assembled from their `_bucket`/`quantile`, `_sum` and `_count`
//!   samples. Gauge histograms stay one gauge per sample, as Prometheus stores them.
//! - A cumulative point starts at its `_created` time, or else when the series was first seen,
//!   or else (after the value fell: a reset) just before this scrape.
//! - A series gone since the previous scrape, or all of them when a scrape fails, gets one point
//!   flagged "no recorded value": Prometheus's staleness marker in OTLP.
//! - Each sample's labels are merged with the target's as Prometheus does (`honor_labels`),
//!   then `metric_relabel_configs` run on it; `sample_limit` counts what they keep.
//!
//! Everything here is bounded by the scrape it is given: the output and the memory grow with
//! the samples kept, which the parser and `sample_limit` bound.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar,
    metric, number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::model::string_kv;

use super::expfmt::{Exemplar, Family, MetricType, Sample};
use super::relabel::{Labels, Rule, process};

const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// A target as the receiver scrapes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The labels after target relabeling, without the `__` ones: `job`, `instance` and any
    /// others, which every series of the target carries.
    pub labels: Labels,
    /// `__scheme__`.
    pub scheme: String,
    /// `__address__`.
    pub address: String,
}

impl Target {
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The job's settings that shape the mapping.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    /// Samples kept after metric relabeling; more fails the scrape. 0: no limit.
    pub sample_limit: usize,
    pub metric_relabel: &'a [Rule],
}

/// What the scrape held, for the synthetic series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub scraped: usize,
    pub post_relabel: usize,
    pub series_added: usize,
    pub stale: usize,
}

/// Why a parsed scrape was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("more than {limit} samples after metric relabeling (sample_limit)")]
    SampleLimit { limit: usize },
}

/// What a series was, to mark it stale once it is gone.
#[derive(Debug, Clone)]
struct SeriesState {
    start_ns: u64,
    /// The last counter value, or histogram/summary count, to tell a reset.
    last: f64,
    generation: u64,
    metric: String,
    shape: Shape,
    origin: Origin,
    attributes: Vec<KeyValue>,
}

/// A series' `(job, instance)`: its resource. Shared, as nearly every series of a target has
/// the target's.
type Origin = Arc<(String, String)>;

/// A sample's value and time, and its exemplar.
struct Point {
    value: f64,
    time_ns: u64,
    exemplar: Option<Exemplar>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

/// A target's series between scrapes: start times and last values, and what to mark stale.
#[derive(Debug, Default)]
pub struct SeriesMemory {
    series: HashMap<u64, SeriesState>,
    generation: u64,
}

impl SeriesMemory {
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Maps one scrape taken at `time_ns`; series of the previous scrape it lacks are marked
    /// stale in the same request.
    pub fn map(
        &mut self,
        target: &Target,
        families: Vec<Family>,
        time_ns: u64,
        options: &Options<'_>,
    ) -> Result<(ExportMetricsServiceRequest, Counts), MapError> {
        let mut builder = Builder::new(target, time_ns, options);
        for family in families {
            builder.family(family)?;
        }
        self.generation = self.generation.wrapping_add(1);
        let mut counts = Counts {
            scraped: builder.scraped,
            post_relabel: builder.kept,
            ..Counts::default()
        };
        let mut out = Output::default();
        for (key, point) in builder.points {
            self.record(key, point, time_ns, &mut out, &mut counts);
        }
        for (origin, attributes) in builder.target_info {
            out.resource(&origin, attributes);
        }
        counts.stale = self.mark_stale(time_ns, &mut out, false);
        Ok((out.finish(target), counts))
    }

    /// Every series marked stale, as after a failed scrape or when the target goes away.
    pub fn all_stale(
        &mut self,
        target: &Target,
        time_ns: u64,
    ) -> (ExportMetricsServiceRequest, usize) {
        self.generation = self.generation.wrapping_add(1);
        let mut out = Output::default();
        let n = self.mark_stale(time_ns, &mut out, true);
        (out.finish(target), n)
    }

    fn record(
        &mut self,
        key: u64,
        point: Pending,
        time_ns: u64,
        out: &mut Output,
        counts: &mut Counts,
    ) {
        let generation = self.generation;
        let start_ns = match self.series.entry(key) {
            Entry::Occupied(mut e) => {
                let s = e.get_mut();
                s.generation = generation;
                let mut start = s.start_ns;
                if let Some(total) = point.total()
                    && total < s.last
                {
                    // A reset since the last scrape.
                    start = point.time_ns.saturating_sub(1_000_000).max(1);
                }
                if let Some(total) = point.total() {
                    s.last = total;
                }
                if let Some(c) = point.created_ns {
                    start = c;
                }
                s.start_ns = start;
                start
            }
            Entry::Vacant(v) => {
                counts.series_added += 1;
                let start = point.created_ns.unwrap_or(time_ns.min(point.time_ns));
                v.insert(SeriesState {
                    start_ns: start,
                    last: point.total().unwrap_or(0.0),
                    generation,
                    metric: point.metric.clone(),
                    shape: point.shape,
                    origin: point.origin.clone(),
                    attributes: point.attributes.clone(),
                });
                start
            }
        };
        out.push(point, start_ns);
    }

    fn mark_stale(&mut self, time_ns: u64, out: &mut Output, all: bool) -> usize {
        let generation = self.generation;
        let mut n = 0;
        self.series.retain(|_, s| {
            if !all && s.generation == generation {
                return true;
            }
            n += 1;
            out.stale(s, time_ns);
            false
        });
        n
    }
}

/// One data point being built.
#[derive(Debug)]
struct Pending {
    metric: String,
    help: Arc<str>,
    shape: Shape,
    origin: Origin,
    attributes: Vec<KeyValue>,
    time_ns: u64,
    created_ns: Option<u64>,
    value: Value,
}

#[derive(Debug)]
enum Value {
    Number(f64, Option<OtlpExemplar>),
    Histogram {
        /// `le` and cumulative count.
        buckets: Vec<(f64, f64)>,
        sum: Option<f64>,
        count: Option<f64>,
        exemplars: Vec<OtlpExemplar>,
    },
    Summary {
        quantiles: Vec<(f64, f64)>,
        sum: Option<f64>,
        count: Option<f64>,
    },
}

impl Pending {
    /// The value whose fall means a reset.
    fn total(&self) -> Option<f64> {
        match (&self.value, self.shape) {
            (Value::Number(v, _), Shape::Counter) => Some(*v),
            (Value::Histogram { count, buckets, .. }, _) => {
                count.or_else(|| buckets.last().map(|b| b.1))
            }
            (Value::Summary { count, .. }, _) => *count,
            _ => None,
        }
    }
}

struct Builder<'a> {
    target: &'a Target,
    time_ns: u64,
    options: &'a Options<'a>,
    scraped: usize,
    kept: usize,
    /// In the order first seen, so that the output follows the exposition.
    points: Vec<(u64, Pending)>,
    index: HashMap<u64, usize>,
    /// `target_info` labels by origin.
    target_info: Vec<(Origin, Vec<KeyValue>)>,
    /// The target's own `(job, instance)`.
    origin: Origin,
}

impl<'a> Builder<'a> {
    fn new(target: &'a Target, time_ns: u64, options: &'a Options<'a>) -> Builder<'a> {
        Builder {
            target,
            time_ns,
            options,
            scraped: 0,
            kept: 0,
            points: Vec::new(),
            index: HashMap::new(),
            target_info: Vec::new(),
            origin: Arc::new((
                target.label("job").to_string(),
                target.label("instance").to_string(),
            )),
        }
    }

    fn family(&mut self, family: Family) -> Result<(), MapError> {
        let Family {
            name: family_name,
            kind,
            help,
            samples,
            ..
        } = family;
        let help: Arc<str> = help.unwrap_or_default().into();
        for sample in samples {
            self.scraped += 1;
            let Sample {
                name,
                labels,
                value,
                timestamp_ms,
                exemplar,
            } = sample;
            let renamed;
            let (name, labels, origin) = if self.options.metric_relabel.is_empty() {
                renamed = false;
                let (labels, origin) = self.merge(labels);
                (name, labels, origin)
            } else {
                let Some((new_name, labels, origin)) = self.relabel(&name, labels) else {
                    continue;
                };
                renamed = new_name != name;
                (new_name, labels, origin)
            };
            self.kept += 1;
            if self.options.sample_limit > 0 && self.kept > self.options.sample_limit {
                return Err(MapError::SampleLimit {
                    limit: self.options.sample_limit,
                });
            }
            let role = if renamed {
                Role::Plain(Shape::Gauge)
            } else {
                role_of(kind, &family_name, &name)
            };
            let time_ns = match timestamp_ms.and_then(|ms| u64::try_from(ms).ok()) {
                Some(ms) if self.options.honor_timestamps => ms.saturating_mul(1_000_000),
                _ => self.time_ns,
            };
            let sample = Point {
                value,
                time_ns,
                exemplar,
            };
            self.add(&family_name, &help, name, labels, origin, sample, role);
        }
        Ok(())
    }

    /// The sample's labels merged with the target's as Prometheus merges them, without the
    /// `job` and `instance` that make its origin (the resource): the target's, or with
    /// `honor_labels` the sample's own. The sample's strings are moved, not copied.
    fn merge(&self, mut labels: Labels) -> (Labels, Origin) {
        labels.retain(|(_, v)| !v.is_empty());
        let mut origin = self.origin.clone();
        let has = |labels: &Labels, k: &str| labels.iter().position(|(name, _)| name == k);
        let mut own: Option<(Option<String>, Option<String>)> = None;
        for (k, v) in &self.target.labels {
            match has(&labels, k) {
                Some(i) if self.options.honor_labels => {
                    if k == "job" || k == "instance" {
                        let (_, value) = labels.remove(i);
                        let entry = own.get_or_insert((None, None));
                        if k == "job" {
                            entry.0 = Some(value);
                        } else {
                            entry.1 = Some(value);
                        }
                    }
                }
                Some(i) => {
                    // The scraped label yields its name: `exported_<name>`, prefixed again
                    // while that is taken too.
                    let mut renamed = format!("exported_{k}");
                    while labels.iter().any(|(name, _)| *name == renamed)
                        || self.target.labels.iter().any(|(name, _)| *name == renamed)
                    {
                        renamed.insert_str(0, "exported_");
                    }
                    if let Some(label) = labels.get_mut(i) {
                        label.0 = renamed;
                    }
                    if k != "job" && k != "instance" {
                        labels.push((k.clone(), v.clone()));
                    }
                }
                None if k == "job" || k == "instance" => {}
                None => labels.push((k.clone(), v.clone())),
            }
        }
        if let Some((job, instance)) = own {
            origin = Arc::new((
                job.unwrap_or_else(|| self.origin.0.clone()),
                instance.unwrap_or_else(|| self.origin.1.clone()),
            ));
        }
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        labels.dedup_by(|a, b| a.0 == b.0);
        (labels, origin)
    }

    /// The merged labels with `__name__`, through `metric_relabel_configs`: the name, the rest
    /// and the origin, or `None` when a rule dropped the sample.
    fn relabel(&mut self, name: &str, labels: Labels) -> Option<(String, Labels, Origin)> {
        let (mut labels, origin) = self.merge(labels);
        labels.push(("job".into(), origin.0.clone()));
        labels.push(("instance".into(), origin.1.clone()));
        labels.push(("__name__".into(), name.to_string()));
        labels.retain(|(_, v)| !v.is_empty());
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if !process(&mut labels, self.options.metric_relabel) {
            return None;
        }
        let mut take = |key: &str| {
            let i = labels.iter().position(|(k, _)| k == key)?;
            Some(labels.remove(i).1)
        };
        let name = take("__name__")?;
        let job = take("job").unwrap_or_default();
        let instance = take("instance").unwrap_or_default();
        let origin = if (job.as_str(), instance.as_str()) == (origin.0.as_str(), origin.1.as_str())
        {
            origin
        } else {
            Arc::new((job, instance))
        };
        Some((name, labels, origin))
    }

    #[allow(clippy::too_many_arguments, reason = "one sample's parts, moved in")]
    fn add(
        &mut self,
        family: &str,
        help: &Arc<str>,
        name: String,
        mut labels: Labels,
        origin: Origin,
        sample: Point,
        role: Role,
    ) {
        let take = |labels: &mut Labels, key: &str| -> Option<String> {
            let i = labels.iter().position(|(k, _)| k == key)?;
            Some(labels.remove(i).1)
        };
        let time_ns = sample.time_ns;
        if let Role::Info = role {
            let attributes = labels.into_iter().map(|(k, v)| owned_kv(k, v)).collect();
            self.target_info.push((origin, attributes));
            return;
        }
        let (metric, shape, part) = match role {
            Role::Plain(shape) => (name, shape, Part::Value),
            Role::Part(shape, part) => (family_metric(family, shape), shape, part),
            Role::Info => return,
        };
        // The point's identity: bucket and quantile labels are parts of it, not of its key.
        let le_or_quantile = match part {
            Part::Bucket => take(&mut labels, "le"),
            Part::Quantile => take(&mut labels, "quantile"),
            _ => None,
        };
        let key = series_key(&metric, shape, &origin, &labels);
        let index = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                let attributes = labels.into_iter().map(|(k, v)| owned_kv(k, v)).collect();
                let value = match shape {
                    Shape::Gauge | Shape::Counter => Value::Number(f64::NAN, None),
                    Shape::Histogram => Value::Histogram {
                        buckets: Vec::new(),
                        sum: None,
                        count: None,
                        exemplars: Vec::new(),
                    },
                    Shape::Summary => Value::Summary {
                        quantiles: Vec::new(),
                        sum: None,
                        count: None,
                    },
                };
                self.points.push((
                    key,
                    Pending {
                        metric,
                        help: help.clone(),
                        shape,
                        origin,
                        attributes,
                        time_ns,
                        created_ns: None,
                        value,
                    },
                ));
                self.index.insert(key, self.points.len() - 1);
                self.points.len() - 1
            }
        };
        let Some((_, p)) = self.points.get_mut(index) else {
            return;
        };
        let v = sample.value;
        let exemplar = sample.exemplar;
        match (part, &mut p.value) {
            (Part::Created, _) if v.is_finite() && v > 0.0 => {
                p.created_ns = Some((v * 1e9) as u64);
            }
            (Part::Value, Value::Number(value, ex)) => {
                *value = v;
                p.time_ns = time_ns;
                *ex = exemplar.as_ref().map(|e| otlp_exemplar(e, time_ns));
            }
            (
                Part::Bucket,
                Value::Histogram {
                    buckets, exemplars, ..
                },
            ) => {
                let le = le_or_quantile
                    .as_deref()
                    .and_then(parse_float)
                    .unwrap_or(f64::NAN);
                if !le.is_nan() {
                    buckets.push((le, v));
                }
                if let Some(e) = &exemplar {
                    exemplars.push(otlp_exemplar(e, time_ns));
                }
                p.time_ns = time_ns;
            }
            (Part::Quantile, Value::Summary { quantiles, .. }) => {
                if let Some(q) = le_or_quantile.as_deref().and_then(parse_float) {
                    quantiles.push((q, v));
                }
                p.time_ns = time_ns;
            }
            (Part::Sum, Value::Histogram { sum, .. } | Value::Summary { sum, .. }) => {
                *sum = Some(v);
            }
            (Part::Count, Value::Histogram { count, .. } | Value::Summary { count, .. }) => {
                *count = Some(v);
                p.time_ns = time_ns;
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Value,
    Bucket,
    Quantile,
    Sum,
    Count,
    Created,
}

#[derive(Debug, Clone, Copy)]
enum Role {
    /// A metric of its own under the sample's name.
    Plain(Shape),
    /// A part of the family's point.
    Part(Shape, Part),
    /// `target_info`: resource attributes.
    Info,
}

/// What a sample is within its family.
fn role_of(kind: MetricType, family: &str, name: &str) -> Role {
    let suffix = name.strip_prefix(family).unwrap_or("");
    match kind {
        MetricType::Counter => match suffix {
            "_created" => Role::Part(Shape::Counter, Part::Created),
            _ => Role::Part(Shape::Counter, Part::Value),
        },
        MetricType::Histogram => match suffix {
            "_bucket" => Role::Part(Shape::Histogram, Part::Bucket),
            "_sum" => Role::Part(Shape::Histogram, Part::Sum),
            "_count" => Role::Part(Shape::Histogram, Part::Count),
            "_created" => Role::Part(Shape::Histogram, Part::Created),
            _ => Role::Plain(Shape::Gauge),
        },
        MetricType::Summary => match suffix {
            "" => Role::Part(Shape::Summary, Part::Quantile),
            "_sum" => Role::Part(Shape::Summary, Part::Sum),
            "_count" => Role::Part(Shape::Summary, Part::Count),
            "_created" => Role::Part(Shape::Summary, Part::Created),
            _ => Role::Plain(Shape::Gauge),
        },
        MetricType::Gauge | MetricType::Unknown if name == "target_info" => Role::Info,
        MetricType::Info if name == "target_info" || family == "target" => Role::Info,
        _ => Role::Plain(Shape::Gauge),
    }
}

/// The metric name of a family's point: a counter keeps its `_total` (the exporters would
/// add it anyway; names survive the round trip), histograms and summaries the family name.
fn family_metric(family: &str, shape: Shape) -> String {
    match shape {
        Shape::Counter if !family.ends_with("_total") => format!("{family}_total"),
        _ => family.to_string(),
    }
}

fn series_key(metric: &str, shape: Shape, resource: &Origin, labels: &Labels) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    metric.hash(&mut h);
    shape.hash(&mut h);
    resource.hash(&mut h);
    labels.hash(&mut h);
    h.finish()
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

fn otlp_exemplar(e: &Exemplar, time_ns: u64) -> OtlpExemplar {
    let mut out = OtlpExemplar {
        time_unix_nano: e
            .timestamp_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(time_ns, |ms| ms.saturating_mul(1_000_000)),
        value: Some(exemplar::Value::AsDouble(e.value)),
        ..Default::default()
    };
    for (k, v) in &e.labels {
        match (k.as_str(), hex(v)) {
            ("trace_id", Some(id)) if id.len() == 16 => out.trace_id = id,
            ("span_id", Some(id)) if id.len() == 8 => out.span_id = id,
            _ => out.filtered_attributes.push(string_kv(k, v)),
        }
    }
    out
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn owned_kv(key: String, value: String) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// A resource being assembled: its origin, `target_info` attributes, and metrics.
type ResourceParts = (Origin, Vec<KeyValue>, Vec<Metric>);

/// The request being assembled: metrics by resource, in order.
#[derive(Default)]
struct Output {
    resources: Vec<ResourceParts>,
    /// (resource index, metric name, shape) -> metric index.
    metrics: HashMap<(usize, String, Shape), usize>,
    /// The metric the last point went to: points of one metric arrive together.
    last: Option<(usize, Shape, usize)>,
}

impl Output {
    fn resource_index(&mut self, resource: &Origin) -> usize {
        let same = |r: &Origin| Arc::ptr_eq(r, resource) || r == resource;
        match self.resources.iter().position(|(r, _, _)| same(r)) {
            Some(i) => i,
            None => {
                self.resources
                    .push((resource.clone(), Vec::new(), Vec::new()));
                self.resources.len() - 1
            }
        }
    }

    /// `target_info` labels for a resource.
    fn resource(&mut self, resource: &Origin, attributes: Vec<KeyValue>) {
        let i = self.resource_index(resource);
        if let Some((_, extra, _)) = self.resources.get_mut(i) {
            for kv in attributes {
                if !extra.iter().any(|e| e.key == kv.key) {
                    extra.push(kv);
                }
            }
        }
    }

    fn metric(
        &mut self,
        resource: &Origin,
        name: &str,
        help: &str,
        shape: Shape,
    ) -> Option<&mut Metric> {
        let r = self.resource_index(resource);
        if let Some((lr, ls, li)) = self.last
            && lr == r
            && ls == shape
            && self
                .resources
                .get(r)
                .and_then(|(_, _, m)| m.get(li))
                .is_some_and(|m| m.name == name)
        {
            return self.resources.get_mut(r)?.2.get_mut(li);
        }
        let key = (r, name.to_string(), shape);
        let (_, _, metrics) = self.resources.get_mut(r)?;
        let i = match self.metrics.get(&key) {
            Some(i) => *i,
            None => {
                let data = match shape {
                    Shape::Gauge => metric::Data::Gauge(Gauge::default()),
                    Shape::Counter => metric::Data::Sum(Sum {
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                        ..Default::default()
                    }),
                    Shape::Histogram => metric::Data::Histogram(Histogram {
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        ..Default::default()
                    }),
                    Shape::Summary => metric::Data::Summary(Summary::default()),
                };
                metrics.push(Metric {
                    name: name.to_string(),
                    description: help.to_string(),
                    data: Some(data),
                    ..Default::default()
                });
                self.metrics.insert(key, metrics.len() - 1);
                metrics.len() - 1
            }
        };
        self.last = Some((r, shape, i));
        metrics.get_mut(i)
    }

    fn push(&mut self, p: Pending, start_ns: u64) {
        let Pending {
            metric: name,
            help,
            shape,
            origin,
            attributes,
            time_ns,
            value,
            ..
        } = p;
        let Some(metric) = self.metric(&origin, &name, &help, shape) else {
            return;
        };
        let start = if shape == Shape::Gauge {
            0
        } else {
            start_ns.min(time_ns)
        };
        match (&mut metric.data, value) {
            (Some(metric::Data::Gauge(g)), Value::Number(v, ex)) => {
                g.data_points.push(number(attributes, 0, time_ns, v, ex, 0));
            }
            (Some(metric::Data::Sum(s)), Value::Number(v, ex)) => {
                s.data_points
                    .push(number(attributes, start, time_ns, v, ex, 0));
            }
            (
                Some(metric::Data::Histogram(h)),
                Value::Histogram {
                    mut buckets,
                    sum,
                    count,
                    exemplars,
                },
            ) => {
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                let inf = buckets.last().filter(|b| b.0 == f64::INFINITY).map(|b| b.1);
                let count = count.or(inf).unwrap_or(0.0);
                let bounds: Vec<f64> = buckets
                    .iter()
                    .filter(|b| b.0 != f64::INFINITY)
                    .map(|b| b.0)
                    .collect();
                let mut counts = Vec::with_capacity(bounds.len() + 1);
                let mut below = 0.0;
                for (_, cumulative) in buckets.iter().filter(|b| b.0 != f64::INFINITY) {
                    counts.push(to_count(cumulative - below));
                    below = cumulative.max(below);
                }
                counts.push(to_count(count - below));
                h.data_points.push(HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time_ns,
                    count: to_count(count),
                    sum: sum.filter(|s| s.is_finite()),
                    bucket_counts: counts,
                    explicit_bounds: bounds,
                    exemplars,
                    ..Default::default()
                });
            }
            (
                Some(metric::Data::Summary(s)),
                Value::Summary {
                    mut quantiles,
                    sum,
                    count,
                },
            ) => {
                quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
                s.data_points.push(SummaryDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time_ns,
                    count: to_count(count.unwrap_or(0.0)),
                    sum: sum.unwrap_or(0.0),
                    quantile_values: quantiles
                        .into_iter()
                        .map(|(quantile, value)| ValueAtQuantile { quantile, value })
                        .collect(),
                    ..Default::default()
                });
            }
            _ => {}
        }
    }

    fn stale(&mut self, s: &SeriesState, time_ns: u64) {
        let Some(metric) = self.metric(&s.origin, &s.metric, "", s.shape) else {
            return;
        };
        let attributes = s.attributes.clone();
        match &mut metric.data {
            Some(metric::Data::Gauge(g)) => {
                g.data_points.push(number(
                    attributes,
                    0,
                    time_ns,
                    f64::NAN,
                    None,
                    FLAG_NO_RECORDED_VALUE,
                ));
            }
            Some(metric::Data::Sum(sum)) => sum.data_points.push(number(
                attributes,
                s.start_ns.min(time_ns),
                time_ns,
                f64::NAN,
                None,
                FLAG_NO_RECORDED_VALUE,
            )),
            Some(metric::Data::Histogram(h)) => h.data_points.push(HistogramDataPoint {
                attributes,
                start_time_unix_nano: s.start_ns.min(time_ns),
                time_unix_nano: time_ns,
                flags: FLAG_NO_RECORDED_VALUE,
                ..Default::default()
            }),
            Some(metric::Data::Summary(sm)) => sm.data_points.push(SummaryDataPoint {
                attributes,
                start_time_unix_nano: s.start_ns.min(time_ns),
                time_unix_nano: time_ns,
                flags: FLAG_NO_RECORDED_VALUE,
                ..Default::default()
            }),
            _ => {}
        }
    }

    fn finish(self, target: &Target) -> ExportMetricsServiceRequest {
        let resource_metrics = self
            .resources
            .into_iter()
            .map(|(origin, extra, metrics)| ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource_attributes(target, &origin.0, &origin.1, extra),
                    ..Default::default()
                }),
                // No scope: a scope's name would become an `otel_scope_name` label on every
                // series re-exposed, and the series would no longer be what the target exposed.
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        ExportMetricsServiceRequest { resource_metrics }
    }
}

fn to_count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

fn number(
    attributes: Vec<KeyValue>,
    start: u64,
    time: u64,
    v: f64,
    ex: Option<OtlpExemplar>,
    flags: u32,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(v)),
        exemplars: ex.into_iter().collect(),
        flags,
    }
}

/// `service.name` = job, `service.instance.id` = instance, and where the target is.
fn resource_attributes(
    target: &Target,
    job: &str,
    instance: &str,
    extra: Vec<KeyValue>,
) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(5 + extra.len());
    if !job.is_empty() {
        out.push(string_kv("service.name", job));
    }
    if !instance.is_empty() {
        out.push(string_kv("service.instance.id", instance));
    }
    let (host, port) = split_host_port(&target.address);
    out.push(string_kv("server.address", host));
    if let Some(port) = port {
        out.push(string_kv("server.port", port));
    }
    out.push(string_kv("url.scheme", &target.scheme));
    for kv in extra {
        if !out.iter().any(|o| o.key == kv.key) {
            out.push(kv);
        }
    }
    out
}

/// `host:port`, `[v6]:port` or a bare host.
pub fn split_host_port(address: &str) -> (&str, Option<&str>) {
    if let Some(rest) = address.strip_prefix('[')
        && let Some((host, tail)) = rest.split_once(']')
    {
        return (host, tail.strip_prefix(':'));
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (address, None),
    }
}

/// The series Prometheus adds for every scrape: `up`, `scrape_duration_seconds`,
/// `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling`, `scrape_series_added`,
/// as gauges on the target's resource with its labels.
pub fn report(
    target: &Target,
    time_ns: u64,
    up: bool,
    took: Duration,
    counts: &Counts,
) -> ExportMetricsServiceRequest {
    let mut labels = target.labels.clone();
    let take = |labels: &mut Labels, key: &str| -> String {
        labels
            .iter()
            .position(|(k, _)| k == key)
            .map(|i| labels.remove(i).1)
            .unwrap_or_default()
    };
    let job = take(&mut labels, "job");
    let instance = take(&mut labels, "instance");
    let attributes: Vec<KeyValue> = labels.iter().map(|(k, v)| string_kv(k, v)).collect();
    let gauge = |name: &str, help: &str, v: f64| Metric {
        name: name.into(),
        description: help.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![number(attributes.clone(), 0, time_ns, v, None, 0)],
        })),
        ..Default::default()
    };
    let metrics = vec![
        gauge(
            "up",
            "1 if the target was scraped and parsed, 0 otherwise.",
            if up { 1.0 } else { 0.0 },
        ),
        gauge(
            "scrape_duration_seconds",
            "How long the scrape took.",
            took.as_secs_f64(),
        ),
        gauge(
            "scrape_samples_scraped",
            "Samples the target exposed.",
            counts.scraped as f64,
        ),
        gauge(
            "scrape_samples_post_metric_relabeling",
            "Samples left after metric relabeling.",
            counts.post_relabel as f64,
        ),
        gauge(
            "scrape_series_added",
            "Series new in this scrape.",
            counts.series_added as f64,
        ),
    ];
    let mut out = Output::default();
    let r = out.resource_index(&Arc::new((job, instance)));
    if let Some((_, _, m)) = out.resources.get_mut(r) {
        *m = metrics;
    }
    out.finish(target)
}

/// Attributes as a map, for tests and the status API.
pub fn attribute_map(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
