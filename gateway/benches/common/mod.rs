//! Realistic OTLP batches shared by the benchmarks.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn request(spans: usize) -> ExportTraceServiceRequest {
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: (0..16)
                .map(|b| (b as u8).wrapping_add(i as u8) | 1)
                .collect(),
            span_id: (0..8)
                .map(|b| (b as u8).wrapping_mul(3).wrapping_add(i as u8) | 1)
                .collect(),
            parent_span_id: vec![7; 8],
            name: format!("GET /api/v1/orders/{}", i % 7),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64 * 1000,
            end_time_unix_nano: 1_700_000_000_000_500_000 + i as u64 * 1000,
            attributes: vec![
                kv(
                    "http.request.method",
                    any_value::Value::StringValue("GET".into()),
                ),
                kv(
                    "http.route",
                    any_value::Value::StringValue("/api/v1/orders/{id}".into()),
                ),
                kv("http.response.status_code", any_value::Value::IntValue(200)),
                kv(
                    "url.path",
                    any_value::Value::StringValue(format!("/api/v1/orders/{i}")),
                ),
                kv(
                    "server.address",
                    any_value::Value::StringValue("orders.internal".into()),
                ),
                kv("server.port", any_value::Value::IntValue(8080)),
                kv(
                    "user_agent.original",
                    any_value::Value::StringValue("Mozilla/5.0 (X11; Linux x86_64)".into()),
                ),
                kv(
                    "network.protocol.version",
                    any_value::Value::StringValue("1.1".into()),
                ),
                kv(
                    "client.address",
                    any_value::Value::StringValue("10.1.2.3".into()),
                ),
                kv("app.cache_hit", any_value::Value::BoolValue(i % 2 == 0)),
            ],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv(
                        "service.name",
                        any_value::Value::StringValue("orders".into()),
                    ),
                    kv(
                        "service.version",
                        any_value::Value::StringValue("1.4.2".into()),
                    ),
                    kv(
                        "deployment.environment",
                        any_value::Value::StringValue("prod".into()),
                    ),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.http".into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
