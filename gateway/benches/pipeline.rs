//! The passthrough hot path per batch: decode an OTLP request, validate it, build the batch and
//! produce the bytes an exporter sends. A realistic batch: 100 spans x 10 attributes.
//!
//! `cargo bench -p sluice --bench pipeline` prints time per batch; spans/s per core is
//! 100 / that time.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use sluice::pipeline::{Batch, Payload, Signal};

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn request(spans: usize) -> ExportTraceServiceRequest {
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

fn passthrough(c: &mut Criterion) {
    let req = request(100);
    let bytes = bytes::Bytes::from(req.encode_to_vec());
    let json = serde_json::to_vec(&req).expect("encodes");
    let mut group = c.benchmark_group("traces_100_spans");
    group.throughput(Throughput::Elements(100));
    group.bench_function("protobuf_decode_validate_forward_original", |b| {
        b.iter(|| {
            let mut payload =
                Payload::decode_protobuf(Signal::Traces, &bytes).expect("valid request");
            let rejected = payload.remove_invalid();
            let original = (rejected.count == 0).then(|| bytes.clone());
            let batch = Batch::new(payload, original, "bench".into());
            batch.encoded().len()
        })
    });
    group.bench_function("protobuf_decode_validate_reencode", |b| {
        b.iter(|| {
            let mut payload =
                Payload::decode_protobuf(Signal::Traces, &bytes).expect("valid request");
            payload.remove_invalid();
            let batch = Batch::new(payload, None, "bench".into());
            batch.encoded().len()
        })
    });
    group.bench_function("json_decode_validate_encode", |b| {
        b.iter(|| {
            let mut payload = Payload::decode_json(Signal::Traces, &json).expect("valid request");
            payload.remove_invalid();
            let batch = Batch::new(payload, None, "bench".into());
            batch.encoded().len()
        })
    });
    group.finish();
}

criterion_group!(benches, passthrough);
criterion_main!(benches);
