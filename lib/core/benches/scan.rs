//! The wire walks every OTLP request takes on the way in: the scan that validates a traces
//! request and counts its spans without decoding it (alone, and adding up the decoded size as
//! the receivers run it), and the decode-cost walk of the decode path. Requests of 100 and
//! 1000 realistic spans (ids, name, kind, times, ten attributes, a status on one in ten).
//!
//! `cargo bench -p sluice-core --bench scan` prints time per request; spans/s is the span count
//! over that time.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use sluice_core::model::Signal;
use sluice_core::model::cost;
use sluice_core::model::scan::{AttrLimits, Scan, scan, scan_costed};

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(s: impl Into<String>) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

fn span(i: usize) -> Span {
    Span {
        trace_id: (0..16u8).map(|b| b.wrapping_add(i as u8) | 1).collect(),
        span_id: (0..8u8)
            .map(|b| b.wrapping_mul(3).wrapping_add(i as u8) | 1)
            .collect(),
        parent_span_id: vec![7; 8],
        name: format!("GET /api/v1/orders/{}", i % 7),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64 * 1000,
        end_time_unix_nano: 1_700_000_000_000_500_000 + i as u64 * 1000,
        attributes: vec![
            kv("http.request.method", text("GET")),
            kv("http.route", text("/api/v1/orders/{id}")),
            kv("http.response.status_code", any_value::Value::IntValue(200)),
            kv("url.path", text(format!("/api/v1/orders/{i}"))),
            kv("server.address", text("orders.internal")),
            kv("server.port", any_value::Value::IntValue(8080)),
            kv(
                "user_agent.original",
                text("Mozilla/5.0 (X11; Linux x86_64)"),
            ),
            kv("network.protocol.version", text("1.1")),
            kv("client.address", text("10.1.2.3")),
            kv(
                "app.cache_hit",
                any_value::Value::BoolValue(i.is_multiple_of(2)),
            ),
        ],
        status: i.is_multiple_of(10).then(|| Status {
            message: "upstream timed out".into(),
            code: 2,
        }),
        ..Default::default()
    }
}

/// An `ExportTraceServiceRequest` of one resource and one scope holding `spans` spans.
fn request(spans: usize) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", text("orders")),
                    kv("service.version", text("1.4.2")),
                    kv("deployment.environment", text("prod")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.http".into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                spans: (0..spans).map(span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn walks(c: &mut Criterion) {
    for spans in [100, 1000] {
        let bytes = request(spans);
        let mut group = c.benchmark_group(format!("traces_{spans}_spans"));
        group.throughput(Throughput::Elements(spans as u64));
        group.bench_function("scan", |b| {
            b.iter(|| match scan(Signal::Traces, &bytes) {
                Scan::Valid(n) => n,
                Scan::Decode => panic!("the bench request is valid"),
            })
        });
        group.bench_function("scan_costed", |b| {
            b.iter(
                || match scan_costed(Signal::Traces, &bytes, AttrLimits::default()) {
                    (Scan::Valid(n), cost) => n as u64 + cost,
                    (Scan::Decode, _) => panic!("the bench request is valid"),
                },
            )
        });
        group.bench_function("cost_walk", |b| {
            b.iter(|| cost::protobuf(Signal::Traces, &bytes).map(|c| c.bytes))
        });
        group.finish();
    }
}

criterion_group!(benches, walks);
criterion_main!(benches);
