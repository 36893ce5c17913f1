use prost::Message;

use super::*;
use crate::otlp::collector::logs::v1::ExportLogsServiceRequest;
use crate::otlp::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};
use crate::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use crate::otlp::resource::v1::Resource;
use crate::otlp::trace::v1::span::{Event, Link};
use crate::otlp::trace::v1::{Status, status};

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

#[test]
fn spans_read_in_place_match_the_decoded_batch() {
    let mut batch = crate::testing::traces(&["GET /a", "GET /b", "POST /c"]);
    {
        let rs = &mut batch.resource_spans[0];
        rs.resource = Some(Resource {
            attributes: vec![kv("service.name", s("shop"))],
            ..Default::default()
        });
        let span = &mut rs.scope_spans[0].spans[1];
        span.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: "boom".into(),
        });
        span.start_time_unix_nano = 10;
        span.end_time_unix_nano = 250;
        span.attributes = vec![
            kv("http.route", s("/b")),
            kv("retries", any_value::Value::IntValue(-3)),
            kv("ratio", any_value::Value::DoubleValue(0.5)),
            kv(
                "list",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(s("x")),
                    }],
                }),
            ),
            kv(
                "map",
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("inner", s("y"))],
                }),
            ),
        ];
        span.events = vec![Event {
            name: "retry".into(),
            time_unix_nano: 99,
            attributes: vec![kv("attempt", any_value::Value::IntValue(2))],
            ..Default::default()
        }];
        span.links = vec![Link {
            attributes: vec![kv("link.kind", s("follows"))],
            ..Default::default()
        }];
    }
    let bytes = batch.encode_to_vec();
    let view = TracesView::new(&bytes);
    let mut names = Vec::new();
    view.for_each_span(|r, span| {
        assert_eq!(
            r.attributes.get("service.name")?,
            Some(ValueView::Str("shop"))
        );
        names.push(span.name.to_string());
        if span.name == "GET /b" {
            assert_eq!((span.status_code, span.status_message), (2, "boom"));
            assert_eq!(span.duration_nanos(), 240);
            let mut attrs = Vec::new();
            span.attributes.for_each(|k, v| {
                attrs.push((k, v));
                Ok(())
            })?;
            assert_eq!(attrs[0], ("http.route", ValueView::Str("/b")));
            assert_eq!(attrs[1], ("retries", ValueView::Int(-3)));
            assert_eq!(attrs[2], ("ratio", ValueView::Double(0.5)));
            let mut elements = Vec::new();
            attrs[3].1.for_each_element(|e| {
                elements.push(e);
                Ok(())
            })?;
            assert_eq!(elements, [ValueView::Str("x")]);
            let ValueView::KvList(inner) = attrs[4].1 else {
                panic!("a key-value list")
            };
            assert_eq!(inner.get("inner")?, Some(ValueView::Str("y")));
            let mut events = Vec::new();
            span.for_each_event(|e| {
                events.push((e.name, e.time_unix_nano, e.attributes.get("attempt")?));
                Ok(())
            })?;
            assert_eq!(events, [("retry", 99, Some(ValueView::Int(2)))]);
            let mut links = 0;
            span.for_each_link_attributes(|a| {
                assert_eq!(a.get("link.kind")?, Some(ValueView::Str("follows")));
                links += 1;
                Ok(())
            })?;
            assert_eq!(links, 1);
        }
        let decoded = batch.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .find(|d| d.name == span.name)
            .expect("same span");
        assert_eq!(span.trace_id, decoded.trace_id.as_slice());
        assert_eq!(span.span_id, decoded.span_id.as_slice());
        Ok(())
    })
    .expect("valid batch");
    assert_eq!(names, ["GET /a", "GET /b", "POST /c"]);
}

#[test]
fn logs_read_in_place() {
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("billing"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    body: Some(AnyValue {
                        value: Some(s("card expired")),
                    }),
                    attributes: vec![kv("user", s("u1"))],
                    trace_id: vec![7; 16],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let bytes = req.encode_to_vec();
    let mut seen = 0;
    LogsView::new(&bytes)
        .for_each_log(|r, log| {
            assert_eq!(
                r.attributes.get("service.name")?,
                Some(ValueView::Str("billing"))
            );
            assert_eq!(log.severity_number, 17);
            assert_eq!(log.body.as_str(), Some("card expired"));
            assert_eq!(log.attributes.get("user")?, Some(ValueView::Str("u1")));
            assert_eq!(log.trace_id, &[7; 16]);
            seen += 1;
            Ok(())
        })
        .expect("valid");
    assert_eq!(seen, 1);
}

#[test]
fn malformed_bytes_are_an_input_error() {
    let bytes = crate::testing::traces(&["x"]).encode_to_vec();
    let cut = &bytes[..bytes.len() - 3];
    let r = TracesView::new(cut).for_each_span(|_, _| Ok(()));
    assert!(matches!(r, Err(Error::Input(_))), "{r:?}");
}

/// Raw `KeyValue` bytes, the attributes of a `KeyValueList` value.
fn kv_list(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.push(0x0a);
        prost::encoding::encode_varint(e.len() as u64, &mut out);
        out.extend_from_slice(e);
    }
    out
}

fn len_field(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

fn read_all(list: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    AttributesView {
        buf: list,
        field: 1,
    }
    .for_each(|k, v| {
        out.push((k.to_string(), format!("{v:?}")));
        Ok(())
    })?;
    Ok(out)
}

#[test]
fn attributes_in_any_field_order_and_length_read_alike() {
    let str_value = |v: &[u8]| len_field(0x0a, v);
    let long_key = "k".repeat(200);
    let long_value = "v".repeat(300);
    let entries = vec![
        // As encoders write it.
        [len_field(0x0a, b"a"), len_field(0x12, &str_value(b"x"))].concat(),
        // Value before key.
        [len_field(0x12, &str_value(b"y")), len_field(0x0a, b"b")].concat(),
        // A repeated key: the last one counts, as in a decoder.
        [
            len_field(0x0a, b"old"),
            len_field(0x12, &str_value(b"z")),
            len_field(0x0a, b"c"),
        ]
        .concat(),
        // Lengths of two bytes.
        [
            len_field(0x0a, long_key.as_bytes()),
            len_field(0x12, &str_value(long_value.as_bytes())),
        ]
        .concat(),
        // An int value and an empty value.
        [len_field(0x0a, b"n"), len_field(0x12, &[0x18, 0x05])].concat(),
        [len_field(0x0a, b"e"), len_field(0x12, &[])].concat(),
    ];
    let list = kv_list(&entries);
    let expected: Vec<(String, String)> = {
        let decoded = KeyValueList::decode(list.as_slice()).expect("valid");
        decoded
            .values
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => format!("{:?}", ValueView::Str(s)),
                    Some(any_value::Value::IntValue(i)) => format!("{:?}", ValueView::Int(*i)),
                    None => format!("{:?}", ValueView::Empty),
                    other => panic!("unexpected {other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    };
    assert_eq!(read_all(&list).expect("valid"), expected);
    assert_eq!(expected[2].0, "c");
    assert_eq!(expected[3].0, long_key);

    // Invalid UTF-8 in a key or a string value is an input error on every path.
    for bad in [
        [len_field(0x0a, b"\xff"), len_field(0x12, &str_value(b"x"))].concat(),
        [len_field(0x0a, b"a"), len_field(0x12, &str_value(b"\xc3"))].concat(),
        [len_field(0x12, &str_value(b"\xc3")), len_field(0x0a, b"a")].concat(),
    ] {
        assert!(read_all(&kv_list(&[bad])).is_err());
    }
}

#[test]
fn get_many_finds_each_key_in_one_pass_as_get_does() {
    let str_value = |v: &[u8]| len_field(0x0a, v);
    let entries = vec![
        [len_field(0x0a, b"a"), len_field(0x12, &str_value(b"x"))].concat(),
        // Value before key.
        [len_field(0x12, &str_value(b"y")), len_field(0x0a, b"b")].concat(),
        // A second "a": the first one counts.
        [
            len_field(0x0a, b"a"),
            len_field(0x12, &str_value(b"second")),
        ]
        .concat(),
        [len_field(0x0a, b"n"), len_field(0x12, &[0x18, 0x05])].concat(),
        // No value at all.
        len_field(0x0a, b"e"),
    ];
    let list = kv_list(&entries);
    let view = AttributesView {
        buf: &list,
        field: 1,
    };
    let keys = ["b", "a", "missing", "n", "e"];
    let found = view.get_many(keys).expect("valid");
    assert_eq!(
        found,
        [
            Some(ValueView::Str("y")),
            Some(ValueView::Str("x")),
            None,
            Some(ValueView::Int(5)),
            Some(ValueView::Empty),
        ]
    );
    for (key, value) in keys.iter().zip(found) {
        assert_eq!(view.get(key).expect("valid"), value, "{key}");
    }
    // Same attributes of the same buffer, not equal ones elsewhere.
    let copy = list.clone();
    let other = AttributesView {
        buf: &copy,
        field: 1,
    };
    assert!(view.same(&view) && !view.same(&other));
}
