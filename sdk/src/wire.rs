//! Rewrites at the wire level: change a batch without decoding all of it.
//!
//! A plugin that changes only resources (adds `deployment.region`, looks up a team by
//! `service.name`) need not decode every span, data point or log record and encode them again:
//! [`rewrite_resources`] decodes each resource-level message's `resource` only, lets the plugin
//! change it, and copies everything else (scopes and records) byte for byte. Implement
//! [`crate::Plugin::rewrite`] to use it.
//!
//! All three OTLP requests share this shape: field 1 is a repeated `Resource{Spans,Metrics,Logs}`
//! whose field 1 is the `Resource`, so one function serves every signal.

use prost::Message;
use sluice_wire::{WireType, encode_key, encode_varint, fields};

use crate::Error;
use crate::otlp::resource::v1::Resource;

/// What [`crate::Plugin::rewrite`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Forward the batch as it came.
    Unchanged,
    /// Forward these bytes instead: an `Export*ServiceRequest` of the same signal.
    Replace(Vec<u8>),
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Input(format!("invalid OTLP batch: {e}"))
}

/// A malformed field, in the words of prost's decoder for the faults it shares with the
/// reader: a plugin then reports a bad key the same way whether the walk below or
/// `Resource::merge` found it.
fn malformed(e: sluice_wire::Error) -> Error {
    match e {
        sluice_wire::Error::Group | sluice_wire::Error::Truncated => invalid(e),
        _ => invalid(format_args!("failed to decode Protobuf message: {e}")),
    }
}

fn put_len_field(out: &mut Vec<u8>, number: u32, payload_len: usize) {
    encode_key(number, WireType::Len, out);
    encode_varint(payload_len as u64, out);
}

/// Calls `change` on the resource of every resource-level message of an `Export*ServiceRequest`
/// (`None` when a message has no resource; setting it adds one). Returns the new request when
/// `change` reported a change for any of them, `None` when nothing changed. Everything but the
/// resources is copied as it came; a changed resource is written first in its message.
pub fn rewrite_resources(
    request: &[u8],
    mut change: impl FnMut(&mut Option<Resource>) -> bool,
) -> Result<Option<Vec<u8>>, Error> {
    let mut out = Vec::with_capacity(request.len() + 256);
    let mut changed = false;
    let mut inner = Vec::new();
    for field in fields(request) {
        let field = field.map_err(malformed)?;
        if field.number != 1 {
            out.extend_from_slice(field.raw);
            continue;
        }
        // A resource-level message: its resource, and the rest kept as is.
        let mut resource: Option<Resource> = None;
        let mut rest: Vec<&[u8]> = Vec::new();
        for f in fields(field.payload) {
            let f = f.map_err(malformed)?;
            if f.number == 1 {
                // As prost does, a repeated occurrence merges into the first.
                let r = resource.get_or_insert_with(Resource::default);
                r.merge(f.payload).map_err(invalid)?;
            } else {
                rest.push(f.raw);
            }
        }
        if !change(&mut resource) {
            out.extend_from_slice(field.raw);
            continue;
        }
        changed = true;
        inner.clear();
        if let Some(r) = &resource {
            put_len_field(&mut inner, 1, r.encoded_len());
            r.encode(&mut inner).map_err(invalid)?;
        }
        for raw in rest {
            inner.extend_from_slice(raw);
        }
        put_len_field(&mut out, 1, inner.len());
        out.extend_from_slice(&inner);
    }
    Ok(changed.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
    use crate::otlp::common::v1::{AnyValue, KeyValue, any_value};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn resources_change_and_everything_else_is_kept() {
        let mut req = crate::testing::traces(&["a", "b", "c"]);
        req.resource_spans.push(req.resource_spans[0].clone());
        req.resource_spans[1].resource = None;
        req.resource_spans[0].schema_url = "https://example/schema".into();
        let bytes = req.encode_to_vec();

        let out = rewrite_resources(&bytes, |r| {
            r.get_or_insert_with(Resource::default)
                .attributes
                .push(kv("deployment.region", "eu-1"));
            true
        })
        .expect("valid")
        .expect("changed");
        let got = ExportTraceServiceRequest::decode(out.as_slice()).expect("decodes");
        let mut want = req.clone();
        for rs in &mut want.resource_spans {
            rs.resource
                .get_or_insert_with(Resource::default)
                .attributes
                .push(kv("deployment.region", "eu-1"));
        }
        assert_eq!(got, want);

        assert_eq!(rewrite_resources(&bytes, |_| false).expect("valid"), None);
        assert!(rewrite_resources(&bytes[..bytes.len() - 3], |_| true).is_err());
    }

    #[test]
    fn malformed_batches_name_their_fault() {
        let error = |bytes: &[u8]| match rewrite_resources(bytes, |_| true) {
            Err(Error::Input(m)) => m,
            other => panic!("{bytes:?}: {other:?}"),
        };
        let prost = "invalid OTLP batch: failed to decode Protobuf message:";
        for (bytes, message) in [
            (
                &[0x0a, 5, 1][..],
                "invalid OTLP batch: a field runs past the end of its message".to_string(),
            ),
            (
                &[0x09, 1, 2],
                "invalid OTLP batch: a field runs past the end of its message".to_string(),
            ),
            (
                &[0x0b],
                "invalid OTLP batch: groups are not supported".to_string(),
            ),
            (&[0x80], format!("{prost} invalid varint")),
            (&[0x0a, 0x80], format!("{prost} invalid varint")),
            (&[0x00], format!("{prost} invalid tag value: 0")),
            (&[0x0e], format!("{prost} invalid wire type value: 6")),
            (
                &[0x80, 0x80, 0x80, 0x80, 0x10],
                format!("{prost} invalid key value: 4294967296"),
            ),
            // Inside a resource-level message.
            (
                &[0x0a, 2, 0x12, 9],
                "invalid OTLP batch: a field runs past the end of its message".to_string(),
            ),
            (&[0x0a, 1, 0x03], format!("{prost} invalid tag value: 0")),
        ] {
            assert_eq!(error(bytes), message, "{bytes:?}");
        }
    }
}
