//! Building the metrics a plugin emits (counts of what it did), for [`crate::host::emit_metrics`].

use crate::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use crate::otlp::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};

/// A cumulative monotonic counter a plugin reports.
#[derive(Debug, Clone, Copy)]
pub struct Counter<'a> {
    /// The instrumentation scope: the plugin's name and version.
    pub scope: &'a str,
    pub version: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    /// UCUM, e.g. `{record}`.
    pub unit: &'a str,
}

impl Counter<'_> {
    /// One request with a data point per `(attributes, value)`, counted since `start`
    /// (unix nanoseconds) and observed at `now`.
    pub fn request<I, A>(&self, start: u64, now: u64, points: I) -> ExportMetricsServiceRequest
    where
        I: IntoIterator<Item = (A, u64)>,
        A: IntoIterator<Item = (&'static str, String)>,
    {
        let data_points = points
            .into_iter()
            .map(|(attributes, value)| NumberDataPoint {
                attributes: attributes
                    .into_iter()
                    .map(|(key, value)| KeyValue {
                        key: key.into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(value)),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                start_time_unix_nano: start,
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsInt(
                    i64::try_from(value).unwrap_or(i64::MAX),
                )),
                ..Default::default()
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: self.scope.into(),
                        version: self.version.into(),
                        ..Default::default()
                    }),
                    metrics: vec![Metric {
                        name: self.name.into(),
                        description: self.description.into(),
                        unit: self.unit.into(),
                        data: Some(metric::Data::Sum(Sum {
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                            data_points,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

/// Cuts a request into requests of at most about `max_bytes` encoded bytes each, by data
/// point, keeping every point's resource, scope and metric: for plugins whose periodic emit can
/// outgrow the gateway's per-call cap (4 MiB). Emit one piece per tick. A single point larger
/// than `max_bytes` makes a request of its own.
pub fn split(
    request: ExportMetricsServiceRequest,
    max_bytes: usize,
) -> Vec<ExportMetricsServiceRequest> {
    use prost::Message;
    if request.encoded_len() <= max_bytes {
        return vec![request];
    }
    let mut out: Vec<ExportMetricsServiceRequest> = Vec::new();
    let mut current = ExportMetricsServiceRequest::default();
    let mut size = 0usize;
    for rm in request.resource_metrics {
        let mut rm_shell = rm.clone();
        rm_shell.scope_metrics.clear();
        for sm in rm.scope_metrics {
            let mut sm_shell = sm.clone();
            sm_shell.metrics.clear();
            for m in sm.metrics {
                let mut m_shell = m.clone();
                m_shell.data = m.data.as_ref().map(empty_like);
                let overhead =
                    rm_shell.encoded_len() + sm_shell.encoded_len() + m_shell.encoded_len();
                for point in points(m.data) {
                    let n = point.len();
                    if size > 0 && size + n + overhead > max_bytes {
                        out.push(std::mem::take(&mut current));
                        size = 0;
                    }
                    // The resource, scope and metric this point goes under, added when the
                    // piece does not end with them already.
                    let fresh = size == 0;
                    if fresh
                        || current.resource_metrics.last().map(|r| &r.resource)
                            != Some(&rm_shell.resource)
                        || current
                            .resource_metrics
                            .last()
                            .and_then(|r| r.scope_metrics.last())
                            .map(|s| &s.scope)
                            != Some(&sm_shell.scope)
                        || current
                            .resource_metrics
                            .last()
                            .and_then(|r| r.scope_metrics.last())
                            .and_then(|s| s.metrics.last())
                            .map(|x| &x.name)
                            != Some(&m_shell.name)
                    {
                        let mut r = rm_shell.clone();
                        let mut sc = sm_shell.clone();
                        sc.metrics.push(m_shell.clone());
                        r.scope_metrics.push(sc);
                        current.resource_metrics.push(r);
                        size += overhead;
                    }
                    if let Some(metric) = current
                        .resource_metrics
                        .last_mut()
                        .and_then(|r| r.scope_metrics.last_mut())
                        .and_then(|s| s.metrics.last_mut())
                    {
                        point.push_into(metric);
                    }
                    size += n;
                }
            }
        }
    }
    if !current.resource_metrics.is_empty() {
        out.push(current);
    }
    out
}

/// One data point of any kind.
enum Point {
    Number(NumberDataPoint),
    Histogram(crate::otlp::metrics::v1::HistogramDataPoint),
    Exponential(crate::otlp::metrics::v1::ExponentialHistogramDataPoint),
    Summary(crate::otlp::metrics::v1::SummaryDataPoint),
}

impl Point {
    fn len(&self) -> usize {
        use prost::Message;
        8 + match self {
            Point::Number(p) => p.encoded_len(),
            Point::Histogram(p) => p.encoded_len(),
            Point::Exponential(p) => p.encoded_len(),
            Point::Summary(p) => p.encoded_len(),
        }
    }

    fn push_into(self, m: &mut Metric) {
        match (&mut m.data, self) {
            (Some(metric::Data::Sum(s)), Point::Number(p)) => s.data_points.push(p),
            (Some(metric::Data::Gauge(g)), Point::Number(p)) => g.data_points.push(p),
            (Some(metric::Data::Histogram(h)), Point::Histogram(p)) => h.data_points.push(p),
            (Some(metric::Data::ExponentialHistogram(h)), Point::Exponential(p)) => {
                h.data_points.push(p)
            }
            (Some(metric::Data::Summary(s)), Point::Summary(p)) => s.data_points.push(p),
            _ => {}
        }
    }
}

fn points(data: Option<metric::Data>) -> Vec<Point> {
    match data {
        Some(metric::Data::Sum(s)) => s.data_points.into_iter().map(Point::Number).collect(),
        Some(metric::Data::Gauge(g)) => g.data_points.into_iter().map(Point::Number).collect(),
        Some(metric::Data::Histogram(h)) => {
            h.data_points.into_iter().map(Point::Histogram).collect()
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            h.data_points.into_iter().map(Point::Exponential).collect()
        }
        Some(metric::Data::Summary(s)) => s.data_points.into_iter().map(Point::Summary).collect(),
        None => Vec::new(),
    }
}

/// The same kind of data, without points.
fn empty_like(data: &metric::Data) -> metric::Data {
    let mut d = data.clone();
    match &mut d {
        metric::Data::Sum(s) => s.data_points.clear(),
        metric::Data::Gauge(g) => g.data_points.clear(),
        metric::Data::Histogram(h) => h.data_points.clear(),
        metric::Data::ExponentialHistogram(h) => h.data_points.clear(),
        metric::Data::Summary(s) => s.data_points.clear(),
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_cumulative_counter() {
        let c = Counter {
            scope: "p",
            version: "1",
            name: "p.things",
            description: "Things.",
            unit: "{thing}",
        };
        let req = c.request(10, 20, [(vec![("kind", "a".to_string())], 3)]);
        let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
        assert_eq!(m.name, "p.things");
        let Some(metric::Data::Sum(sum)) = &m.data else {
            panic!("sum expected")
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points[0].start_time_unix_nano, 10);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(3))
        );
        assert_eq!(sum.data_points[0].attributes[0].key, "kind");
    }

    #[test]
    fn split_keeps_every_point_under_its_metric_within_the_size() {
        use prost::Message;
        let c = Counter {
            scope: "p",
            version: "1",
            name: "p.things",
            description: "Things.",
            unit: "",
        };
        let points: Vec<_> = (0..1000)
            .map(|i| {
                (
                    vec![("kind", format!("value-{i:04}-{}", "x".repeat(50)))],
                    i,
                )
            })
            .collect();
        let whole = c.request(1, 2, points);
        assert_eq!(
            split(whole.clone(), 1 << 20).len(),
            1,
            "small enough: one piece"
        );
        let pieces = split(whole.clone(), 10_000);
        assert!(pieces.len() >= 8, "{} pieces", pieces.len());
        let mut values = Vec::new();
        for p in &pieces {
            assert!(p.encoded_len() <= 10_000, "{}", p.encoded_len());
            let m = &p.resource_metrics[0].scope_metrics[0].metrics[0];
            assert_eq!(
                (m.name.as_str(), m.description.as_str()),
                ("p.things", "Things.")
            );
            assert_eq!(
                p.resource_metrics[0].scope_metrics[0]
                    .scope
                    .as_ref()
                    .map(|s| s.name.as_str()),
                Some("p")
            );
            let Some(metric::Data::Sum(sum)) = &m.data else {
                panic!("sum")
            };
            assert!(sum.is_monotonic);
            values.extend(sum.data_points.iter().map(|p| p.value));
        }
        let Some(metric::Data::Sum(sum)) =
            &whole.resource_metrics[0].scope_metrics[0].metrics[0].data
        else {
            panic!("sum")
        };
        assert_eq!(
            values,
            sum.data_points.iter().map(|p| p.value).collect::<Vec<_>>()
        );
    }
}
