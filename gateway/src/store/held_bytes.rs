//! What a stored span or log record holds in memory: the record's own struct and every buffer
//! its fields own (ids, strings, attribute lists, nested values), by capacity. The store is
//! bounded by this sum (`max_size_mib`), which follows the allocations, unlike the protobuf
//! size: a typical span of 12 attributes holds about four times its encoded size.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};

use super::StoredSpan;

/// A stored span: the entry in its trace and what its fields own.
pub fn span(s: &Span) -> usize {
    size_of::<StoredSpan>()
        + s.trace_id.capacity()
        + s.span_id.capacity()
        + s.parent_span_id.capacity()
        + s.trace_state.capacity()
        + s.name.capacity()
        + attributes(&s.attributes)
        + s.events.capacity() * size_of::<Event>()
        + s.events
            .iter()
            .map(|e| e.name.capacity() + attributes(&e.attributes))
            .sum::<usize>()
        + s.links.capacity() * size_of::<Link>()
        + s.links
            .iter()
            .map(|l| {
                l.trace_id.capacity()
                    + l.span_id.capacity()
                    + l.trace_state.capacity()
                    + attributes(&l.attributes)
            })
            .sum::<usize>()
        + s.status.as_ref().map_or(0, |st| st.message.capacity())
}

/// A stored log record (with its place in the store's queue).
pub fn log(r: &LogRecord) -> usize {
    size_of::<(std::time::Instant, usize, super::StoredLog)>()
        + r.severity_text.capacity()
        + r.body.as_ref().map_or(0, value)
        + attributes(&r.attributes)
        + r.trace_id.capacity()
        + r.span_id.capacity()
        + r.event_name.capacity()
}

fn attributes(kvs: &Vec<KeyValue>) -> usize {
    // A Vec, not a slice: its capacity is held too.
    kvs.capacity() * size_of::<KeyValue>()
        + kvs
            .iter()
            .map(|kv| kv.key.capacity() + kv.value.as_ref().map_or(0, value))
            .sum::<usize>()
}

/// What an attribute value owns beyond its own struct.
fn value(v: &AnyValue) -> usize {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.capacity(),
        Some(any_value::Value::BytesValue(b)) => b.capacity(),
        Some(any_value::Value::ArrayValue(a)) => {
            a.values.capacity() * size_of::<AnyValue>() + a.values.iter().map(value).sum::<usize>()
        }
        Some(any_value::Value::KvlistValue(l)) => attributes(&l.values),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::string_kv as kv;
    use prost::Message;

    #[test]
    fn a_span_holds_its_struct_and_every_buffer() {
        let bare = Span::default();
        assert_eq!(span(&bare), size_of::<StoredSpan>());
        let mut s = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /orders".into(),
            attributes: (0..12).map(|i| kv(&format!("key.{i}"), "value")).collect(),
            ..Default::default()
        };
        let with_attributes = span(&s);
        assert!(
            with_attributes
                >= size_of::<StoredSpan>() + 24 + 11 + 12 * (size_of::<KeyValue>() + 5 + 5),
            "{with_attributes}"
        );
        // Held, not encoded: several times the protobuf size.
        assert!(
            with_attributes > 3 * s.encoded_len(),
            "{with_attributes} vs {}",
            s.encoded_len()
        );
        s.attributes.push(KeyValue {
            key: "nested".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: vec![kv("a", &"x".repeat(1000)).value.unwrap_or_default()],
                    },
                )),
            }),
            ..Default::default()
        });
        assert!(span(&s) >= with_attributes + 1000);
        let body = LogRecord {
            body: kv("b", &"y".repeat(5000)).value,
            ..Default::default()
        };
        assert!(log(&body) >= 5000 + size_of::<LogRecord>());
    }
}
