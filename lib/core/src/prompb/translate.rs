//! Remote-write to OTLP: a `WriteRequest` becomes OTLP metrics.
//!
//! `__name__` is the metric name, `job` and `instance` become the resource
//! (`service.namespace/service.name`, `service.instance.id`), the other labels become
//! attributes, exemplars keep their trace and span ids, and native histograms become exponential
//! histograms. Series typed COUNTER by the request's metadata (or, without metadata, named
//! `*_total`) become monotonic cumulative sums; everything else becomes a gauge under its own
//! name. Every point, attribute and bucket is charged against a budget before it is built
//! ([`to_otlp_within`]).

use std::collections::BTreeMap;
use std::mem::size_of;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exemplar, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::model::string_kv;

use super::{MetricType, WriteRequest};

/// Why a `WriteRequest` could not be translated.
#[derive(Debug, Clone, PartialEq)]
pub enum Translate {
    /// Input a retry cannot fix, with what is wrong.
    Invalid(String),
    /// The OTLP form would take more than the budget; this much was charged when it stopped.
    OverBudget(u64),
}

impl From<String> for Translate {
    fn from(message: String) -> Translate {
        Translate::Invalid(message)
    }
}

impl From<&str> for Translate {
    fn from(message: &str) -> Translate {
        Translate::Invalid(message.to_string())
    }
}

/// Memory the translation may still take: every point, attribute and bucket is charged before
/// it is built, so that a small request cannot expand into a large one (many empty samples of
/// a series with many labels, a histogram whose spans claim a huge gap).
struct Spend {
    left: u64,
    spent: u64,
}

impl Spend {
    fn take(&mut self, bytes: u64) -> Result<(), Translate> {
        self.spent = self.spent.saturating_add(bytes);
        if self.spent > self.left {
            return Err(Translate::OverBudget(self.spent));
        }
        Ok(())
    }
}

/// Translates a `WriteRequest` into OTLP metrics; native histograms become exponential
/// histograms. Without a memory budget; receivers use [`to_otlp_within`].
pub fn to_otlp(write: &WriteRequest) -> Result<ExportMetricsServiceRequest, String> {
    to_otlp_within(write, u64::MAX).map_err(|e| match e {
        Translate::Invalid(message) => message,
        Translate::OverBudget(bytes) => format!("the translation would take {bytes} bytes"),
    })
}

/// [`to_otlp`] that refuses, before building it, an OTLP form of more than `budget` bytes.
pub fn to_otlp_within(
    write: &WriteRequest,
    budget: u64,
) -> Result<ExportMetricsServiceRequest, Translate> {
    let mut spend = Spend {
        left: budget,
        spent: 0,
    };
    let types: BTreeMap<&str, MetricType> = write
        .metadata
        .iter()
        .map(|m| {
            (
                m.metric_family_name.as_str(),
                MetricType::try_from(m.r#type).unwrap_or(MetricType::Unknown),
            )
        })
        .collect();
    let help: BTreeMap<&str, &str> = write
        .metadata
        .iter()
        .map(|m| (m.metric_family_name.as_str(), m.help.as_str()))
        .collect();
    // (job, instance) -> metric name -> metric
    let mut resources: BTreeMap<(String, String), BTreeMap<String, Metric>> = BTreeMap::new();
    for ts in &write.timeseries {
        let mut name = None;
        let mut job = String::new();
        let mut instance = String::new();
        let mut attributes = Vec::with_capacity(ts.labels.len());
        for l in &ts.labels {
            match l.name.as_str() {
                "__name__" => name = Some(l.value.as_str()),
                "job" => job = l.value.clone(),
                "instance" => instance = l.value.clone(),
                _ => attributes.push(string_kv(&l.name, &l.value)),
            }
        }
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Err("a time series has no __name__ label".into());
        };
        // What one point's copy of the series' labels costs, and the series' own entries.
        let labels_cost: u64 = ts
            .labels
            .iter()
            .map(|l| (size_of::<KeyValue>() + l.name.len() + l.value.len()) as u64)
            .sum();
        spend.take((size_of::<Metric>() + 2 * name.len() + job.len() + instance.len()) as u64)?;
        if !ts.histograms.is_empty() {
            let points = native_histograms(&ts.histograms, &attributes, labels_cost, &mut spend)?;
            let metric = resources
                .entry((job.clone(), instance.clone()))
                .or_default()
                .entry(name.to_string())
                .or_insert_with(|| Metric {
                    name: name.to_string(),
                    description: help.get(name).copied().unwrap_or_default().to_string(),
                    data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    })),
                    ..Default::default()
                });
            match &mut metric.data {
                Some(metric::Data::ExponentialHistogram(h)) => h.data_points.extend(points),
                _ => {
                    return Err(format!("series {name} mixes native histograms and samples").into());
                }
            }
        }
        if ts.samples.is_empty() {
            continue;
        }
        if let Some(w) = ts
            .samples
            .windows(2)
            .find(|w| w[1].timestamp < w[0].timestamp)
        {
            return Err(format!(
                "samples of series {name} are out of order: {} after {}",
                w[1].timestamp, w[0].timestamp
            )
            .into());
        }
        let counter = match types.get(name) {
            Some(MetricType::Counter) => true,
            Some(_) => false,
            None => name.ends_with("_total"),
        };
        let otlp_name = if counter {
            name.strip_suffix("_total").unwrap_or(name)
        } else {
            name
        };
        // Each point carries its own copy of the labels (OTLP has no shared label sets); the
        // points of a series end up in one `Vec` that may grow to twice their size.
        let per_point = 2 * size_of::<NumberDataPoint>() as u64 + labels_cost;
        spend.take(per_point.saturating_mul(ts.samples.len() as u64))?;
        let exemplar_cost: u64 = ts
            .exemplars
            .iter()
            .map(|e| {
                (size_of::<opentelemetry_proto::tonic::metrics::v1::Exemplar>()
                    + e.labels
                        .iter()
                        .map(|l| size_of::<KeyValue>() + l.name.len() + l.value.len())
                        .sum::<usize>()) as u64
            })
            .sum();
        spend.take(exemplar_cost)?;
        let mut points: Vec<NumberDataPoint> = ts
            .samples
            .iter()
            .map(|s| NumberDataPoint {
                attributes: attributes.clone(),
                time_unix_nano: (s.timestamp.max(0) as u64).saturating_mul(1_000_000),
                value: Some(number_data_point::Value::AsDouble(s.value)),
                ..Default::default()
            })
            .collect();
        if let Some(last) = points.last_mut() {
            last.exemplars = ts
                .exemplars
                .iter()
                .map(|e| {
                    let mut out = opentelemetry_proto::tonic::metrics::v1::Exemplar {
                        time_unix_nano: (e.timestamp.max(0) as u64).saturating_mul(1_000_000),
                        value: Some(exemplar::Value::AsDouble(e.value)),
                        ..Default::default()
                    };
                    for l in &e.labels {
                        match l.name.as_str() {
                            "trace_id" => out.trace_id = from_hex(&l.value).unwrap_or_default(),
                            "span_id" => out.span_id = from_hex(&l.value).unwrap_or_default(),
                            _ => out.filtered_attributes.push(string_kv(&l.name, &l.value)),
                        }
                    }
                    out
                })
                .collect();
        }
        let metric = resources
            .entry((job, instance))
            .or_default()
            .entry(name.to_string())
            .or_insert_with(|| Metric {
                name: otlp_name.to_string(),
                description: help.get(name).copied().unwrap_or_default().to_string(),
                data: Some(if counter {
                    metric::Data::Sum(Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })
                } else {
                    metric::Data::Gauge(Gauge {
                        data_points: Vec::new(),
                    })
                }),
                ..Default::default()
            });
        match &mut metric.data {
            Some(metric::Data::Sum(s)) => s.data_points.append(&mut points),
            Some(metric::Data::Gauge(g)) => g.data_points.append(&mut points),
            _ => {}
        }
    }
    let resource_metrics = resources
        .into_iter()
        .map(|((job, instance), metrics)| {
            let mut attributes = Vec::new();
            match job.split_once('/') {
                Some((ns, name)) => {
                    attributes.push(string_kv("service.namespace", ns));
                    attributes.push(string_kv("service.name", name));
                }
                None if !job.is_empty() => attributes.push(string_kv("service.name", &job)),
                None => {}
            }
            if !instance.is_empty() {
                attributes.push(string_kv("service.instance.id", &instance));
            }
            ResourceMetrics {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "sluice.prometheus_remote_write".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics: metrics.into_values().collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    Ok(ExportMetricsServiceRequest { resource_metrics })
}

/// Native histograms as OTLP exponential histogram points. Prometheus bucket `i` covers
/// `(base^(i-1), base^i]`, OTLP bucket `k` covers `(base^k, base^(k+1)]`: OTLP index = `i - 1`.
/// OTLP buckets are dense, so the gaps between spans become zero counts: their number is
/// computed (with checked arithmetic) and charged to `spend` before any is written.
fn native_histograms(
    histograms: &[super::Histogram],
    attributes: &[KeyValue],
    labels_cost: u64,
    spend: &mut Spend,
) -> Result<Vec<ExponentialHistogramDataPoint>, Translate> {
    let mut points = Vec::with_capacity(histograms.len());
    for h in histograms {
        if !(-4..=8).contains(&h.schema) {
            return Err(format!(
                "native histogram schema {} is not supported (exponential schemas are -4 to 8)",
                h.schema
            )
            .into());
        }
        spend.take(2 * size_of::<ExponentialHistogramDataPoint>() as u64 + labels_cost)?;
        let count = h
            .count_int
            .unwrap_or_else(|| h.count_float.unwrap_or(0.0).max(0.0) as u64);
        let zero_count = h
            .zero_count_int
            .unwrap_or_else(|| h.zero_count_float.unwrap_or(0.0).max(0.0) as u64);
        let positive = buckets(
            &h.positive_spans,
            &h.positive_deltas,
            &h.positive_counts,
            spend,
        )?;
        let negative = buckets(
            &h.negative_spans,
            &h.negative_deltas,
            &h.negative_counts,
            spend,
        )?;
        points.push(ExponentialHistogramDataPoint {
            attributes: attributes.to_vec(),
            time_unix_nano: (h.timestamp.max(0) as u64).saturating_mul(1_000_000),
            count,
            sum: Some(h.sum),
            scale: h.schema,
            zero_count,
            zero_threshold: h.zero_threshold,
            positive,
            negative,
            ..Default::default()
        });
    }
    Ok(points)
}

/// One side of a native histogram as dense OTLP buckets.
fn buckets(
    spans: &[super::BucketSpan],
    deltas: &[i64],
    counts: &[f64],
    spend: &mut Spend,
) -> Result<Option<Buckets>, Translate> {
    const OVERFLOW: &str = "native histogram bucket indexes overflow";
    let Some(first_span) = spans.first() else {
        return Ok(None);
    };
    // The index range the spans cover, before anything is built.
    let first = i64::from(first_span.offset);
    let mut index = first;
    let mut announced = 0u64;
    for (n, span) in spans.iter().enumerate() {
        if n > 0 {
            if span.offset < 0 {
                return Err("native histogram spans after the first must not go backwards".into());
            }
            index = index.checked_add(i64::from(span.offset)).ok_or(OVERFLOW)?;
        }
        index = index.checked_add(i64::from(span.length)).ok_or(OVERFLOW)?;
        announced += u64::from(span.length);
    }
    let dense = u64::try_from(index - first).map_err(|_| OVERFLOW)?;
    let offset = i32::try_from(first - 1).map_err(|_| OVERFLOW)?;
    let values = if deltas.is_empty() {
        counts.len()
    } else {
        deltas.len()
    };
    if (values as u64) < announced {
        return Err("native histogram has fewer counts than buckets".into());
    }
    spend.take(dense.saturating_mul(8))?;
    let dense = usize::try_from(dense).map_err(|_| OVERFLOW)?;
    // Absolute counts in span order.
    let mut running = 0i64;
    let mut next = 0usize;
    let mut value = || -> Result<u64, Translate> {
        let v = if deltas.is_empty() {
            counts.get(next).map_or(0, |c| c.max(0.0) as u64)
        } else {
            running = running
                .checked_add(deltas.get(next).copied().unwrap_or(0))
                .ok_or("native histogram bucket counts overflow")?;
            running.max(0) as u64
        };
        next += 1;
        Ok(v)
    };
    let mut out: Vec<u64> = Vec::with_capacity(dense);
    let mut index = first;
    for (n, span) in spans.iter().enumerate() {
        if n > 0 {
            index += i64::from(span.offset);
        }
        // Checked above: `first <= index` and the gap fits the dense length.
        let at = usize::try_from(index - first).map_err(|_| OVERFLOW)?;
        out.resize(at.max(out.len()), 0);
        for _ in 0..span.length {
            out.push(value()?);
        }
        index += i64::from(span.length);
    }
    Ok(Some(Buckets {
        offset,
        bucket_counts: out,
    }))
}

/// Lowercase or uppercase hex to bytes; `None` for anything else, byte by byte (a string cut
/// inside a multi-byte character is never sliced).
fn from_hex(s: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Label, MetricMetadata, Sample, TimeSeries};
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|(v, t)| Sample {
                    value: *v,
                    timestamp: *t,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn counters_gauges_and_resources() {
        let write = WriteRequest {
            timeseries: vec![
                series(
                    &[
                        ("__name__", "http_requests_total"),
                        ("job", "shop/api"),
                        ("instance", "a:1"),
                        ("code", "200"),
                    ],
                    &[(5.0, 1000), (7.0, 2000)],
                ),
                series(&[("__name__", "up"), ("job", "node")], &[(1.0, 1000)]),
                series(
                    &[("__name__", "process_cpu_seconds"), ("job", "node")],
                    &[(3.5, 1000)],
                ),
            ],
            metadata: vec![MetricMetadata {
                r#type: MetricType::Counter as i32,
                metric_family_name: "process_cpu_seconds".into(),
                help: "CPU".into(),
                unit: String::new(),
            }],
        };
        let req = to_otlp(&write).expect("valid");
        assert_eq!(req.resource_metrics.len(), 2);
        let node = &req.resource_metrics[0];
        let shop = &req.resource_metrics[1];
        let attrs = |r: &ResourceMetrics| {
            r.resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default()
        };
        assert_eq!(attrs(node), vec![string_kv("service.name", "node")]);
        assert_eq!(
            attrs(shop),
            vec![
                string_kv("service.namespace", "shop"),
                string_kv("service.name", "api"),
                string_kv("service.instance.id", "a:1")
            ]
        );
        let http = &shop.scope_metrics[0].metrics[0];
        assert_eq!(http.name, "http_requests");
        let Some(metric::Data::Sum(sum)) = &http.data else {
            panic!("counter expected")
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points.len(), 2);
        assert_eq!(sum.data_points[1].time_unix_nano, 2_000_000_000);
        let names: Vec<_> = node.scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, vec!["process_cpu_seconds", "up"]);
        assert!(matches!(
            node.scope_metrics[0].metrics[0].data,
            Some(metric::Data::Sum(_))
        ));
        assert!(matches!(
            node.scope_metrics[0].metrics[1].data,
            Some(metric::Data::Gauge(_))
        ));
    }

    #[test]
    fn native_histograms_become_exponential_histograms() {
        use super::super::{BucketSpan, Histogram};
        let mut ts = series(&[("__name__", "rpc_latency_seconds"), ("job", "api")], &[]);
        ts.histograms.push(Histogram {
            count_int: Some(9),
            sum: 12.5,
            schema: 0,
            zero_count_int: Some(1),
            // Buckets 1, 2 (counts 2, 3), a gap at 3, then bucket 4 (count 3).
            positive_spans: vec![
                BucketSpan {
                    offset: 1,
                    length: 2,
                },
                BucketSpan {
                    offset: 1,
                    length: 1,
                },
            ],
            positive_deltas: vec![2, 1, 0],
            timestamp: 5000,
            ..Default::default()
        });
        let req = to_otlp(&WriteRequest {
            timeseries: vec![ts],
            ..Default::default()
        })
        .expect("valid");
        let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
        assert_eq!(m.name, "rpc_latency_seconds");
        let Some(metric::Data::ExponentialHistogram(h)) = &m.data else {
            panic!("exponential histogram expected")
        };
        let p = &h.data_points[0];
        assert_eq!((p.count, p.zero_count, p.scale), (9, 1, 0));
        assert_eq!(p.time_unix_nano, 5_000_000_000);
        let pos = p.positive.as_ref().expect("positive buckets");
        // Prometheus bucket 1 = (1, 2] = OTLP bucket 0.
        assert_eq!(pos.offset, 0);
        assert_eq!(pos.bucket_counts, vec![2, 3, 0, 3]);
    }

    #[test]
    fn out_of_order_and_nameless_series_are_rejected() {
        let w = WriteRequest {
            timeseries: vec![series(&[("__name__", "x")], &[(1.0, 2000), (2.0, 1000)])],
            ..Default::default()
        };
        assert!(
            to_otlp(&w)
                .expect_err("out of order")
                .contains("out of order")
        );
        let w = WriteRequest {
            timeseries: vec![series(&[("job", "x")], &[(1.0, 1)])],
            ..Default::default()
        };
        assert!(to_otlp(&w).expect_err("no name").contains("__name__"));
    }
}
