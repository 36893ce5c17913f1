//! The metrics a flush emits, built from the store: per resource, the call counter and the
//! duration histogram of each series; then the plugin's own counts. A flush larger than
//! [`EMIT_BUDGET`] is cut into several requests, emitted one per tick, so that no call breaks
//! the gateway's emit caps.

use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use sluice_sdk::otlp::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, exemplar, exponential_histogram_data_point, metric,
    number_data_point,
};
use sluice_sdk::otlp::resource::v1::Resource;
use sluice_sdk::prost::Message;

use crate::config::{Config, Histogram as HistogramConfig};
use crate::histogram::Dist;
use crate::series::{Exemplar, Series, Store, Val};

/// Bytes one emitted request holds at most (the gateway allows 4 MiB per call).
pub const EMIT_BUDGET: usize = 3 << 20;

const SCOPE: &str = "sluice-plugin-spanmetrics";

fn value(v: &Val) -> any_value::Value {
    match v {
        Val::Str(s) => any_value::Value::StringValue(s.clone()),
        Val::Int(i) => any_value::Value::IntValue(*i),
        Val::Bool(b) => any_value::Value::BoolValue(*b),
        Val::Double(d) => any_value::Value::DoubleValue(*d),
    }
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// `SPAN_KIND_SERVER` … as the Collector writes them.
pub fn kind_name(kind: i64) -> &'static str {
    match kind {
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

/// `STATUS_CODE_UNSET`, `STATUS_CODE_OK`, `STATUS_CODE_ERROR`.
pub fn status_name(code: i64) -> &'static str {
    match code {
        1 => "STATUS_CODE_OK",
        2 => "STATUS_CODE_ERROR",
        _ => "STATUS_CODE_UNSET",
    }
}

/// A series' attributes, named.
fn attributes(config: &Config, s: &Series) -> Vec<KeyValue> {
    let fixed = ["service.name", "span.name", "span.kind", "status.code"];
    let names = fixed
        .iter()
        .copied()
        .chain(config.dimensions.iter().map(|d| d.name.as_str()));
    names
        .zip(&s.parts)
        .enumerate()
        .filter_map(|(i, (name, part))| {
            let part = part.as_ref()?;
            let v = match (i, part) {
                (2, Val::Int(k)) => any_value::Value::StringValue(kind_name(*k).into()),
                (3, Val::Int(c)) => any_value::Value::StringValue(status_name(*c).into()),
                (_, v) => value(v),
            };
            Some(kv(name, v))
        })
        .collect()
}

fn exemplars(list: &[Option<Exemplar>], from: usize, to: usize) -> Vec<OtlpExemplar> {
    list.get(from..to.min(list.len()))
        .unwrap_or_default()
        .iter()
        .flatten()
        .map(|e| OtlpExemplar {
            time_unix_nano: e.time,
            value: Some(exemplar::Value::AsDouble(e.value)),
            span_id: e.span_id.to_vec(),
            trace_id: e.trace_id.to_vec(),
            ..Default::default()
        })
        .collect()
}

/// The points of one series: its call count and its duration distribution.
fn points(
    config: &Config,
    s: &Series,
    attributes: Vec<KeyValue>,
    now: u64,
) -> (NumberDataPoint, Option<metric::Data>) {
    let calls = NumberDataPoint {
        attributes: attributes.clone(),
        start_time_unix_nano: s.start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsInt(
            i64::try_from(s.calls).unwrap_or(i64::MAX),
        )),
        exemplars: exemplars(&s.exemplars, 0, 1),
        ..Default::default()
    };
    let temporality = if config.delta {
        AggregationTemporality::Delta
    } else {
        AggregationTemporality::Cumulative
    } as i32;
    let duration = match (&s.dist, &config.histogram) {
        (Dist::Explicit { counts, sum }, HistogramConfig::Explicit(bounds)) => {
            Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: s.start,
                    time_unix_nano: now,
                    count: counts.iter().fold(0u64, |a, c| a.saturating_add(*c)),
                    sum: Some(*sum),
                    bucket_counts: counts.clone(),
                    explicit_bounds: bounds.clone(),
                    exemplars: exemplars(&s.exemplars, 1, counts.len() + 1),
                    ..Default::default()
                }],
                aggregation_temporality: temporality,
            }))
        }
        (Dist::Exponential(e), HistogramConfig::Exponential { .. }) => {
            let count = e.total();
            Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano: s.start,
                    time_unix_nano: now,
                    count,
                    sum: Some(e.sum),
                    scale: e.scale,
                    zero_count: e.zero_count,
                    positive: Some(exponential_histogram_data_point::Buckets {
                        offset: e.offset,
                        bucket_counts: e.counts.clone(),
                    }),
                    min: (count > 0).then_some(e.min),
                    max: (count > 0).then_some(e.max),
                    exemplars: exemplars(&s.exemplars, 1, s.exemplars.len()),
                    ..Default::default()
                }],
                aggregation_temporality: temporality,
            }))
        }
        _ => None,
    };
    (calls, duration)
}

/// Collects metrics into requests of at most [`EMIT_BUDGET`] bytes.
struct Requests<'a> {
    config: &'a Config,
    done: Vec<ExportMetricsServiceRequest>,
    current: ExportMetricsServiceRequest,
    size: usize,
}

impl<'a> Requests<'a> {
    fn new(config: &'a Config) -> Self {
        Requests {
            config,
            done: Vec::new(),
            current: ExportMetricsServiceRequest::default(),
            size: 0,
        }
    }

    /// The two metrics of the resource being filled, adding the resource when it is not the
    /// last one.
    fn metrics(&mut self, resource: &[KeyValue], fresh: bool) -> &mut Vec<Metric> {
        if fresh || self.current.resource_metrics.is_empty() {
            let c = self.config;
            let mut metrics = vec![Metric {
                name: c.metric("calls"),
                description: "Spans counted, by service, span name, kind, status and the configured dimensions.".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: Vec::new(),
                    aggregation_temporality: if c.delta {
                        AggregationTemporality::Delta
                    } else {
                        AggregationTemporality::Cumulative
                    } as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            }];
            if !matches!(c.histogram, HistogramConfig::Disabled) {
                metrics.push(Metric {
                    name: c.metric("duration"),
                    description: "Span durations.".into(),
                    unit: c.unit.ucum().into(),
                    data: None,
                    ..Default::default()
                });
            }
            self.current.resource_metrics.push(ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource.to_vec(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            });
            self.size += resource.iter().map(Message::encoded_len).sum::<usize>() + 128;
        }
        let last = self.current.resource_metrics.len() - 1;
        &mut self.current.resource_metrics[last].scope_metrics[0].metrics
    }

    fn add(
        &mut self,
        resource: &[KeyValue],
        mut first: bool,
        s: &Series,
        attributes: Vec<KeyValue>,
        now: u64,
    ) {
        if self.size >= EMIT_BUDGET {
            self.done.push(std::mem::take(&mut self.current));
            self.size = 0;
            first = true;
        }
        let (calls, duration) = points(self.config, s, attributes, now);
        self.size += calls.encoded_len() * 2 + 16 * s.exemplars.len() + 64;
        let metrics = self.metrics(resource, first);
        if let Some(metric::Data::Sum(sum)) = &mut metrics[0].data {
            sum.data_points.push(calls);
        }
        if let (Some(d), Some(m)) = (duration, metrics.get_mut(1)) {
            match (&mut m.data, d) {
                (Some(metric::Data::Histogram(h)), metric::Data::Histogram(n)) => {
                    h.data_points.extend(n.data_points);
                }
                (
                    Some(metric::Data::ExponentialHistogram(h)),
                    metric::Data::ExponentialHistogram(n),
                ) => {
                    h.data_points.extend(n.data_points);
                }
                (slot @ None, d) => *slot = Some(d),
                _ => {}
            }
        }
    }

    fn finish(mut self) -> Vec<ExportMetricsServiceRequest> {
        if !self.current.resource_metrics.is_empty() {
            self.done.push(self.current);
        }
        self.done
    }
}

/// The plugin's own counts, as one small request.
pub fn own_metrics(store: &Store, start: u64, now: u64) -> ExportMetricsServiceRequest {
    let int = |v: u64| {
        Some(number_data_point::Value::AsInt(
            i64::try_from(v).unwrap_or(i64::MAX),
        ))
    };
    let counter = |name: &str, description: &str, v: u64| Metric {
        name: name.into(),
        description: description.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                start_time_unix_nano: start,
                time_unix_nano: now,
                value: int(v),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("sluice".into()),
                )],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics: vec![
                    Metric {
                        name: "sluice.spanmetrics.series".into(),
                        description: "Series the spanmetrics plugin keeps (max_series caps them)."
                            .into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: now,
                                value: int(store.series.len() as u64),
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                    counter(
                        "sluice.spanmetrics.overflow",
                        "Spans counted into the overflow series because max_series was reached.",
                        store.overflowed,
                    ),
                    counter(
                        "sluice.spanmetrics.duplicates",
                        "Spans not counted again because they were counted already (the same span in several pipelines or a retried request).",
                        store.duplicates,
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The requests one flush emits: the series to report (all of them when cumulative, those
/// counted since the last flush when delta), by resource, then the overflow series.
pub fn flush(config: &Config, store: &Store, now: u64) -> Vec<ExportMetricsServiceRequest> {
    let mut by_resource: Vec<(u32, &Series)> = store
        .series
        .values()
        .filter(|s| !config.delta || s.fresh)
        .map(|s| (s.resource, s))
        .collect();
    by_resource.sort_by_key(|(r, _)| *r);
    let mut out = Requests::new(config);
    let mut last = None;
    let mut resource: Vec<KeyValue> = Vec::new();
    for (r, s) in by_resource {
        let first = last != Some(r);
        if first {
            last = Some(r);
            resource = store
                .resource_table
                .get(r as usize)
                .and_then(Option::as_ref)
                .map(|res| res.attrs.iter().map(|(k, v)| kv(k, value(v))).collect())
                .unwrap_or_default();
        }
        out.add(&resource, first, s, attributes(config, s), now);
    }
    if let Some(o) = &store.overflow
        && (!config.delta || o.fresh)
    {
        out.add(&[], true, o, overflow_attributes(), now);
    }
    out.finish()
}

/// The attributes of the overflow series.
fn overflow_attributes() -> Vec<KeyValue> {
    vec![kv(
        "otel.metric.overflow",
        any_value::Value::BoolValue(true),
    )]
}
