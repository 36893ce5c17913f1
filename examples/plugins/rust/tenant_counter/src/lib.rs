//! tenant-counter: copies the tenant a request header names into a resource attribute, and
//! counts spans per tenant into a `tenant.spans` metric it emits after each batch. The same
//! plugin is in `examples/plugins/python/tenant_counter` and
//! `examples/plugins/js/tenant_counter`; the end-to-end tests hold the three to one output.

use std::collections::BTreeMap;

use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use sluice_sdk::otlp::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric::Data, number_data_point,
};
use sluice_sdk::otlp::resource::v1::Resource;
use sluice_sdk::{Error, Info, Plugin, Signal, Verdict, host};

#[derive(Debug)]
pub struct TenantCounter {
    header_attribute: String,
    attribute: String,
    default: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    header: Option<String>,
    attribute: Option<String>,
    default: Option<String>,
}

fn string(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(value.to_string())),
    })
}

/// A tenant from an attribute value: a string, or an array whose first element is one.
fn tenant_of(value: Option<&AnyValue>) -> Option<&str> {
    match value?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        Value::ArrayValue(a) => match a.values.first()?.value.as_ref()? {
            Value::StringValue(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

impl TenantCounter {
    fn count_metric(counts: &BTreeMap<String, i64>, now: u64) -> ExportMetricsServiceRequest {
        let data_points = counts
            .iter()
            .map(|(tenant, n)| NumberDataPoint {
                attributes: vec![KeyValue {
                    key: "tenant".into(),
                    value: string(tenant),
                    ..Default::default()
                }],
                start_time_unix_nano: now,
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsInt(*n)),
                ..Default::default()
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: string("tenant_counter"),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "tenant_counter".into(),
                        version: "0.1.0".into(),
                        ..Default::default()
                    }),
                    metrics: vec![Metric {
                        name: "tenant.spans".into(),
                        description: "Spans seen per tenant".into(),
                        unit: "{span}".into(),
                        data: Some(Data::Sum(Sum {
                            data_points,
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                            is_monotonic: true,
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

impl Plugin for TenantCounter {
    fn describe() -> Info {
        Info::new("tenant-counter", "0.1.0", &[Signal::Traces])
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config: Config = sluice_sdk::parse_config(config)?;
        let setting = |v: Option<String>, key: &str, default: &str| match v {
            Some(s) if s.is_empty() => {
                Err(Error::Config(format!("`{key}` must be a non-empty string")))
            }
            Some(s) => Ok(s),
            None => Ok(default.to_string()),
        };
        Ok(TenantCounter {
            header_attribute: format!(
                "http.request.header.{}",
                setting(config.header, "header", "x-tenant-id")?.to_lowercase()
            ),
            attribute: setting(config.attribute, "attribute", "tenant")?,
            default: setting(config.default, "default", "unknown")?,
        })
    }

    fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        let mut modified = false;
        for rs in &mut batch.resource_spans {
            let spans = rs.scope_spans.iter().flat_map(|ss| &ss.spans);
            let n = spans.clone().count() as i64;
            let own = rs
                .resource
                .as_ref()
                .and_then(|r| tenant_of(attribute(&r.attributes, &self.attribute)))
                .map(str::to_string);
            let tenant = match own {
                Some(t) => t,
                None => {
                    let found = spans
                        .filter_map(|span| {
                            tenant_of(attribute(&span.attributes, &self.header_attribute))
                        })
                        .next()
                        .map(str::to_string);
                    match found {
                        Some(t) => {
                            rs.resource
                                .get_or_insert_with(Resource::default)
                                .attributes
                                .push(KeyValue {
                                    key: self.attribute.clone(),
                                    value: string(&t),
                                    ..Default::default()
                                });
                            modified = true;
                            t
                        }
                        None => self.default.clone(),
                    }
                }
            };
            if n > 0 {
                *counts.entry(tenant).or_default() += n;
            }
        }
        if !counts.is_empty() {
            host::emit_metrics(&Self::count_metric(&counts, host::now()));
        }
        Ok(if modified {
            Verdict::Modified
        } else {
            Verdict::Unchanged
        })
    }
}

sluice_sdk::export_plugin!(TenantCounter);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use sluice_sdk::prost::Message;
    use sluice_sdk::testing;

    fn span(name: &str, tenant: Option<&str>) -> Span {
        Span {
            name: name.into(),
            attributes: tenant
                .map(|t| KeyValue {
                    key: "http.request.header.x-tenant-id".into(),
                    value: string(t),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn copies_the_header_into_the_resource_and_counts_per_tenant() {
        testing::set_now(7);
        let _ = testing::take_emitted();
        let mut plugin = TenantCounter::new("{}").expect("default config");
        let mut batch = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![
                            span("a", None),
                            span("b", Some("acme")),
                            span("c", Some("other")),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span("d", None)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        };
        assert_eq!(plugin.traces(&mut batch), Ok(Verdict::Modified));
        let resource = batch.resource_spans[0]
            .resource
            .as_ref()
            .expect("resource added");
        assert_eq!(
            tenant_of(attribute(&resource.attributes, "tenant")),
            Some("acme")
        );
        assert!(batch.resource_spans[1].resource.is_none());
        let emitted = testing::take_emitted();
        assert_eq!(emitted.len(), 1);
        let request = ExportMetricsServiceRequest::decode(emitted[0].1.as_slice()).expect("valid");
        let expected: BTreeMap<String, i64> =
            [("acme".to_string(), 3), ("unknown".to_string(), 1)].into();
        assert_eq!(request, TenantCounter::count_metric(&expected, 7));
    }

    #[test]
    fn bad_config_is_refused() {
        for bad in [
            r#"{"headers": "x"}"#,
            r#"{"header": ""}"#,
            r#"{"attribute": 3}"#,
        ] {
            assert!(
                matches!(TenantCounter::new(bad), Err(Error::Config(_))),
                "{bad}"
            );
        }
    }
}
