//! The passthrough hot path per batch: decode an OTLP request, validate it, build the batch and
//! produce the bytes an exporter sends. A realistic batch: 100 spans x 10 attributes.
//!
//! `cargo bench -p sluice --bench pipeline` prints time per batch; spans/s per core is
//! 100 / that time.

mod common;

use common::request;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use sluice::model::cost;
use sluice::model::scan::{AttrLimits, Scan, scan, scan_costed};
use sluice::model::{Batch, Payload, Signal};

fn passthrough(c: &mut Criterion) {
    let req = request(100);
    let bytes = bytes::Bytes::from(req.encode_to_vec());
    let json = serde_json::to_vec(&req).expect("encodes");
    let mut group = c.benchmark_group("traces_100_spans");
    group.throughput(Throughput::Elements(100));
    // What the receivers do now for valid protobuf: scan, no decode.
    group.bench_function("protobuf_scan_forward_original", |b| {
        b.iter(|| {
            let Scan::Valid(records) = scan(Signal::Traces, &bytes) else {
                panic!("the bench request is valid")
            };
            let batch = Batch::from_wire(Signal::Traces, bytes.clone(), records, "bench".into());
            batch.encoded().len()
        })
    });
    // What the receivers do: the scan that also adds up the decoded size.
    group.bench_function("protobuf_scan_costed_forward_original", |b| {
        b.iter(|| {
            let (Scan::Valid(records), cost) =
                scan_costed(Signal::Traces, &bytes, AttrLimits::default())
            else {
                panic!("the bench request is valid")
            };
            let batch = Batch::from_wire(Signal::Traces, bytes.clone(), records, "bench".into());
            batch.encoded().len() + cost as usize
        })
    });
    // The separate walk that the decode path (and remote_write) takes.
    group.bench_function("cost_walk", |b| {
        b.iter(|| cost::protobuf(Signal::Traces, &bytes).expect("valid request"))
    });
    group.bench_function("json_cost_walk", |b| b.iter(|| cost::json(&json)));
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
