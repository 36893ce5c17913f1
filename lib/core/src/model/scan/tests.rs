use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::model::Payload;

fn value(rng: &mut SmallRng, depth: u32) -> AnyValue {
    let v = match rng.random_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => any_value::Value::StringValue(format!("välue-{}", rng.random::<u16>())),
        1 => any_value::Value::BoolValue(rng.random()),
        2 => any_value::Value::IntValue(rng.random()),
        3 => any_value::Value::DoubleValue(rng.random()),
        4 => any_value::Value::BytesValue(vec![0xff, 0x00, rng.random()]),
        5 => any_value::Value::ArrayValue(ArrayValue {
            values: (0..3).map(|_| value(rng, depth + 1)).collect(),
        }),
        _ => any_value::Value::KvlistValue(KeyValueList {
            values: attrs(rng, 2, depth + 1),
        }),
    };
    AnyValue { value: Some(v) }
}

fn attrs(rng: &mut SmallRng, n: usize, depth: u32) -> Vec<KeyValue> {
    (0..n)
        .map(|i| KeyValue {
            key: format!("k{i}"),
            value: Some(value(rng, depth)),
            ..Default::default()
        })
        .collect()
}

fn resource(rng: &mut SmallRng) -> Resource {
    Resource {
        attributes: attrs(rng, 3, 0),
        dropped_attributes_count: 1,
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "lib".into(),
        version: "1.0".into(),
        ..Default::default()
    }
}

fn traces(rng: &mut SmallRng, spans: usize) -> ExportTraceServiceRequest {
    let span = |rng: &mut SmallRng, i: usize| Span {
        trace_id: rng.random::<[u8; 16]>().to_vec(),
        span_id: rng.random::<[u8; 8]>().to_vec(),
        parent_span_id: if i.is_multiple_of(2) {
            Vec::new()
        } else {
            rng.random::<[u8; 8]>().to_vec()
        },
        trace_state: "a=b".into(),
        name: format!("op-{i}"),
        kind: 2,
        flags: 0x101,
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: attrs(rng, 4, 0),
        events: vec![Event {
            name: "e".into(),
            attributes: attrs(rng, 1, 0),
            ..Default::default()
        }],
        links: vec![Link {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            flags: 1,
            ..Default::default()
        }],
        status: Some(Status {
            code: 2,
            message: "boom".into(),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: (0..2)
            .map(|_| ResourceSpans {
                resource: Some(resource(rng)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans: (0..spans).map(|i| span(rng, i)).collect(),
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

fn logs(rng: &mut SmallRng, records: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(rng)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: (0..records)
                    .map(|i| LogRecord {
                        time_unix_nano: 5,
                        severity_number: 9,
                        severity_text: "INFO".into(),
                        body: Some(value(rng, 0)),
                        attributes: attrs(rng, 2, 0),
                        flags: 1,
                        trace_id: if i.is_multiple_of(2) {
                            Vec::new()
                        } else {
                            vec![3; 16]
                        },
                        span_id: if i.is_multiple_of(2) {
                            Vec::new()
                        } else {
                            vec![4; 8]
                        },
                        event_name: "ev".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// What the full decode path would conclude: records kept, or `None` if it takes the
/// error or partial-success path.
fn decoder_verdict(signal: Signal, bytes: &[u8]) -> Option<usize> {
    let mut payload = Payload::decode_protobuf(signal, bytes).ok()?;
    let rejected = payload.remove_invalid();
    (rejected.count == 0).then(|| payload.record_count())
}

#[test]
fn valid_requests_scan_to_their_record_count() {
    let mut rng = SmallRng::seed_from_u64(1);
    let t = traces(&mut rng, 7).encode_to_vec();
    assert_eq!(scan(Signal::Traces, &t), Scan::Valid(14));
    let l = logs(&mut rng, 5).encode_to_vec();
    assert_eq!(scan(Signal::Logs, &l), Scan::Valid(5));
    assert_eq!(scan(Signal::Traces, &[]), Scan::Valid(0));
    assert_eq!(scan(Signal::Metrics, &[]), Scan::Decode);
}

#[test]
fn invalid_ids_take_the_decode_path() {
    let mut rng = SmallRng::seed_from_u64(2);
    let mut req = traces(&mut rng, 3);
    req.resource_spans[1].scope_spans[0].spans[2].trace_id = vec![0; 16];
    assert_eq!(scan(Signal::Traces, &req.encode_to_vec()), Scan::Decode);
    let mut req = traces(&mut rng, 3);
    req.resource_spans[0].scope_spans[0].spans[1].parent_span_id = vec![1; 3];
    assert_eq!(scan(Signal::Traces, &req.encode_to_vec()), Scan::Decode);
    let mut req = logs(&mut rng, 3);
    req.resource_logs[0].scope_logs[0].log_records[0].span_id = vec![1; 9];
    assert_eq!(scan(Signal::Logs, &req.encode_to_vec()), Scan::Decode);
}

#[test]
fn invalid_utf8_and_bad_wire_types_take_the_decode_path() {
    let mut rng = SmallRng::seed_from_u64(3);
    let req = traces(&mut rng, 1);
    let mut bytes = req.encode_to_vec();
    // The span name "op-0" is in the bytes; make it invalid UTF-8.
    let at = bytes
        .windows(4)
        .position(|w| w == b"op-0")
        .expect("name present");
    bytes[at] = 0xff;
    assert!(Payload::decode_protobuf(Signal::Traces, &bytes).is_err());
    assert_eq!(scan(Signal::Traces, &bytes), Scan::Decode);
    // Field 1 of the request as a varint instead of a message.
    assert_eq!(scan(Signal::Traces, &[0x08, 0x01]), Scan::Decode);
    // Unknown fields of every wire type but groups are skipped, as prost does.
    let unknown = [
        0x78, 0x05, 0x79, 0, 0, 0, 0, 0, 0, 0, 0, 0x7a, 0x01, 0xff, 0x7d, 0, 0, 0, 0,
    ];
    assert_eq!(decoder_verdict(Signal::Traces, &unknown), Some(0));
    assert_eq!(scan(Signal::Traces, &unknown), Scan::Valid(0));
}

#[test]
fn deep_nesting_takes_the_decode_path() {
    let mut v = AnyValue {
        value: Some(any_value::Value::IntValue(1)),
    };
    for _ in 0..120 {
        v = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    let mut rng = SmallRng::seed_from_u64(4);
    let mut req = logs(&mut rng, 1);
    req.resource_logs[0].scope_logs[0].log_records[0].body = Some(v);
    let bytes = req.encode_to_vec();
    assert_eq!(scan(Signal::Logs, &bytes), Scan::Decode);
}

/// The property that makes the fast path safe: whenever the scan says `Valid(n)`, the full
/// decode succeeds, removes nothing and finds `n` records. Checked over thousands of corrupted
/// requests (flipped bytes, truncations, inserted bytes).
#[test]
fn the_scan_is_never_more_lenient_than_the_decoder() {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut valid_after_mutation = 0;
    for round in 0..4000 {
        let (signal, mut bytes) = if round % 2 == 0 {
            (Signal::Traces, traces(&mut rng, 2).encode_to_vec())
        } else {
            (Signal::Logs, logs(&mut rng, 3).encode_to_vec())
        };
        match rng.random_range(0..4) {
            0 => {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            1 => {
                let n = rng.random_range(0..bytes.len());
                bytes.truncate(n);
            }
            2 => {
                let i = rng.random_range(0..bytes.len());
                bytes.insert(i, rng.random());
            }
            _ => {
                for _ in 0..3 {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] ^= 1 << rng.random_range(0..8);
                }
            }
        }
        let verdict = scan(signal, &bytes);
        if let Scan::Valid(n) = verdict {
            valid_after_mutation += 1;
            assert_eq!(
                decoder_verdict(signal, &bytes),
                Some(n),
                "round {round}: scan accepted what the decoder does not"
            );
        }
    }
    // Some mutations keep a request valid (a changed attribute value); the test must see them.
    assert!(valid_after_mutation > 100, "{valid_after_mutation}");
}

/// A plugin's output scanned against the batch it was given gives the full scan's verdict,
/// whatever the plugin changed: a resource (scope-level messages left as they were), a record,
/// whole resources removed or added, or bytes anywhere.
#[test]
fn a_derived_request_scans_as_the_full_scan_does() {
    let mut rng = SmallRng::seed_from_u64(9);
    let mut valid = 0;
    for round in 0..3000 {
        let traces_round = round % 2 == 0;
        let (signal, original, derived) = if traces_round {
            let original = traces(&mut rng, 3);
            let mut derived = original.clone();
            match rng.random_range(0..4) {
                0 => derived.resource_spans[0]
                    .resource
                    .get_or_insert_default()
                    .attributes
                    .extend(attrs(&mut rng, 1, 0)),
                1 => derived.resource_spans[1].scope_spans[0].spans[1].name = "renamed".into(),
                2 => drop(derived.resource_spans.remove(0)),
                _ => derived
                    .resource_spans
                    .push(derived.resource_spans[0].clone()),
            }
            (
                Signal::Traces,
                original.encode_to_vec(),
                derived.encode_to_vec(),
            )
        } else {
            let original = logs(&mut rng, 3);
            let mut derived = original.clone();
            derived.resource_logs[0].resource = Some(resource(&mut rng));
            (
                Signal::Logs,
                original.encode_to_vec(),
                derived.encode_to_vec(),
            )
        };
        assert!(matches!(scan(signal, &original), Scan::Valid(_)));
        let mut derived = derived;
        if round % 3 == 0 {
            let i = rng.random_range(0..derived.len());
            derived[i] ^= 1 << rng.random_range(0..8);
        }
        let full = scan(signal, &derived);
        assert_eq!(
            scan_derived(signal, &derived, &original),
            full,
            "round {round}"
        );
        valid += usize::from(full != Scan::Decode);
    }
    assert!(valid > 1000, "{valid}");
}

/// The scope-level messages left as they were are not checked again, only counted: shown with
/// an original the full scan sends to the decode path (a zero span id: a receiver removes such
/// spans, but a plugin's decoded output or emitted batch may carry one to the next plugin),
/// whose records the plugin did not touch.
#[test]
fn a_derived_request_reuses_the_scope_level_messages_it_was_given() {
    let mut rng = SmallRng::seed_from_u64(3);
    let mut original = traces(&mut rng, 2);
    original.resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
    let mut derived = original.clone();
    derived.resource_spans[0]
        .resource
        .get_or_insert_default()
        .attributes
        .extend(attrs(&mut rng, 1, 0));
    let mut changed = derived.clone();
    let (original, derived) = (original.encode_to_vec(), derived.encode_to_vec());
    assert_eq!(scan(Signal::Traces, &derived), Scan::Decode);
    assert_eq!(
        scan_derived(Signal::Traces, &derived, &original),
        Scan::Valid(4)
    );
    // A record changed in that scope: it is checked, and sent to the decode path.
    changed.resource_spans[0].scope_spans[0].spans[1].name = "x".into();
    assert_eq!(
        scan_derived(Signal::Traces, &changed.encode_to_vec(), &original),
        Scan::Decode
    );
    // Metrics are never scanned.
    assert_eq!(
        scan_derived(Signal::Metrics, &derived, &original),
        Scan::Decode
    );
}

/// What `Valid(n)` promises (the batch is then forwarded without decoding): the request
/// decodes, with `n` records. Checked against prost for derived requests of originals that do
/// and do not scan valid (zero ids, more attributes than the default limit, flipped bits that
/// still decode), with changed resources, records and bytes, for traces and logs.
#[test]
fn a_derived_request_said_valid_decodes_to_its_count() {
    let mut rng = SmallRng::seed_from_u64(11);
    let (mut reused, mut checked) = (0, 0);
    for round in 0..3000 {
        let (signal, mut original, derived) = if round % 2 == 0 {
            let mut original = traces(&mut rng, 3);
            match rng.random_range(0..3) {
                0 => original.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![0; 16],
                1 => {
                    original.resource_spans[1].scope_spans[0].spans[2].attributes =
                        attrs(&mut rng, 130, 0)
                }
                _ => {}
            }
            let mut derived = original.clone();
            derived.resource_spans[rng.random_range(0..2)].resource = Some(resource(&mut rng));
            if rng.random_bool(0.3) {
                derived.resource_spans[0].scope_spans[0].spans[1].name = "renamed".into();
            }
            (
                Signal::Traces,
                original.encode_to_vec(),
                derived.encode_to_vec(),
            )
        } else {
            let mut original = logs(&mut rng, 3);
            if rng.random_bool(0.5) {
                original.resource_logs[0].scope_logs[0].log_records[1].span_id = vec![1; 3];
            }
            let mut derived = original.clone();
            derived.resource_logs[0].resource = Some(resource(&mut rng));
            (
                Signal::Logs,
                original.encode_to_vec(),
                derived.encode_to_vec(),
            )
        };
        let mut derived = derived;
        if round % 5 == 0 {
            // The original itself mutated, when it still decodes (as the decode path's bytes).
            let i = rng.random_range(0..original.len());
            original[i] ^= 1 << rng.random_range(0..8);
            if Payload::decode_protobuf(signal, &original).is_err() {
                continue;
            }
        } else if round % 3 == 0 {
            let i = rng.random_range(0..derived.len());
            derived[i] ^= 1 << rng.random_range(0..8);
        }
        if let Scan::Valid(n) = scan_derived(signal, &derived, &original) {
            checked += 1;
            reused += usize::from(scan(signal, &derived) == Scan::Decode);
            let payload = Payload::decode_protobuf(signal, &derived);
            assert_eq!(
                payload.map(|p| p.record_count()).ok(),
                Some(n),
                "round {round}"
            );
        }
    }
    assert!(checked > 1000 && reused > 300, "{checked} {reused}");
}
