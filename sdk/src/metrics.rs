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
}
