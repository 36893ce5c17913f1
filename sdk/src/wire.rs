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
//!
//! A plugin that changes a few values deep inside (masks an attribute, drops a span) uses
//! [`Splice`]: it names the parts to change by the slices a [`crate::view`] lent it, and the
//! splice copies the batch once, writing the new values in place of the old and fixing the
//! length of every message that encloses a change. Nothing is decoded into structs, so the cost
//! is a walk of the messages on the way to each change plus one copy of the bytes.

use std::ops::Range;

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

/// Changes to a batch's bytes, applied in one copy by [`Splice::finish`].
///
/// Each change names a length-delimited field by its payload, as a slice of the batch that a
/// view lent out: a string value ([`crate::view::ValueView::Str`], a span's `name`), an encoded
/// attribute ([`crate::view::AttributesView::for_each_encoded`]), a whole record
/// ([`crate::view::SpanView::encoded`]). [`Splice::replace`] gives that field a new payload,
/// [`Splice::remove`] takes the field out, [`Splice::append_field`] adds a field at the end of a
/// message (an attribute to a span: [`crate::view::SpanView::encoded`] names the span);
/// every enclosing message gets its new length. Changes may come in any order but must not
/// overlap; [`Splice::undo_to`] takes back the latest ones (for a walk that first masks inside an
/// attribute and then decides to drop all of it).
///
/// ```
/// use sluice_sdk::view::TracesView;
/// use sluice_sdk::wire::{Rewrite, Splice};
/// # fn mask(batch: &[u8]) -> Result<Rewrite, sluice_sdk::Error> {
/// let mut splice = Splice::new(batch);
/// TracesView::new(batch).for_each_span(|_, span| {
///     if let Some(ip) = span.attributes.get("client.address")?.and_then(|v| v.as_str()) {
///         splice.replace(ip.as_bytes(), b"[REDACTED]");
///     }
///     Ok(())
/// })?;
/// splice.finish()
/// # }
/// ```
#[derive(Debug)]
pub struct Splice<'a> {
    batch: &'a [u8],
    edits: Vec<Edit>,
    /// The new payloads, one after another; an edit names its part.
    data: Vec<u8>,
    /// A part that was not a slice of the batch (reported by `finish`).
    foreign: bool,
}

#[derive(Debug, Clone)]
struct Edit {
    /// The payload's place in the batch.
    at: Range<usize>,
    /// The new payload's place in `data`, or `None` to remove the field. For an append, the
    /// whole new field (key, length and payload).
    with: Option<Range<usize>>,
    /// For an append, where the payload of the message it goes into starts (`at` is then the
    /// empty range at that payload's end).
    into: Option<usize>,
}

impl Edit {
    /// Whether the edit lies in the field whose payload starts at `payload_start` and which
    /// ends at `field_end`: it starts inside it, or is an empty payload at its very end (an
    /// empty string ends where its field ends), or appends to a message inside it.
    fn within(&self, payload_start: usize, field_end: usize, is_len: bool) -> bool {
        match self.into {
            Some(target) => is_len && payload_start <= target && self.at.end <= field_end,
            None => {
                self.at.start < field_end
                    || (is_len && self.at.start == field_end && self.at.end == field_end)
            }
        }
    }
}

impl<'a> Splice<'a> {
    pub fn new(batch: &'a [u8]) -> Self {
        Splice {
            batch,
            edits: Vec::new(),
            data: Vec::new(),
            foreign: false,
        }
    }

    /// Whether no change was asked for.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// How many changes were asked for: a mark for [`Splice::undo_to`].
    pub fn len(&self) -> usize {
        self.edits.len()
    }

    /// Takes back the changes asked for after `mark` (a [`Splice::len`]).
    pub fn undo_to(&mut self, mark: usize) {
        let Some(undone) = self.edits.get(mark..) else {
            return;
        };
        // Payloads are appended in the order of their changes.
        if let Some(start) = undone.iter().find_map(|e| e.with.as_ref().map(|w| w.start)) {
            self.data.truncate(start);
        }
        self.edits.truncate(mark);
    }

    fn place(&mut self, part: &[u8]) -> Option<Range<usize>> {
        let at = (part.as_ptr() as usize)
            .checked_sub(self.batch.as_ptr() as usize)
            .map(|start| start..start + part.len())
            .filter(|at| at.end <= self.batch.len());
        self.foreign |= at.is_none();
        at
    }

    /// Gives the field whose payload is `part` the payload `with`.
    pub fn replace(&mut self, part: &[u8], with: &[u8]) {
        self.replace_with(part, |out| append(out, with));
    }

    /// Gives the field whose payload is `part` the payload that `write` appends to the buffer
    /// it is handed (which holds other payloads before it: append only).
    pub fn replace_with(&mut self, part: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        let Some(at) = self.place(part) else {
            return;
        };
        let start = self.data.len();
        write(&mut self.data);
        let with = Some(start..self.data.len());
        self.edits.push(Edit {
            at,
            with,
            into: None,
        });
    }

    /// Gives an attribute's value (`part`: an encoded `AnyValue`, as
    /// [`crate::view::AttributesView::split_encoded`] lends it) the string `value`, whatever
    /// type it had.
    pub fn replace_with_string_value(&mut self, part: &[u8], value: &str) {
        self.replace_with(part, |out| {
            put_len_field(out, 1, value.len());
            append(out, value.as_bytes());
        });
    }

    /// Removes the field whose payload is `part` (a record, an attribute), key and length too.
    pub fn remove(&mut self, part: &[u8]) {
        if let Some(at) = self.place(part) {
            self.edits.push(Edit {
                at,
                with: None,
                into: None,
            });
        }
    }

    /// Adds field `number` with the payload `payload` at the end of the message whose payload is
    /// `message` (a record or a resource a view lent out). Appends to one message keep their
    /// order.
    pub fn append_field(&mut self, message: &[u8], number: u32, payload: &[u8]) {
        let Some(at) = self.place(message) else {
            return;
        };
        let start = self.data.len();
        put_len_field(&mut self.data, number, payload.len());
        append(&mut self.data, payload);
        self.edits.push(Edit {
            at: at.end..at.end,
            with: Some(start..self.data.len()),
            into: Some(at.start),
        });
    }

    /// [`Splice::append_field`] with an encoded message as the payload (an attribute's
    /// `KeyValue`).
    pub fn append_message(&mut self, message: &[u8], number: u32, value: &impl Message) {
        let Some(at) = self.place(message) else {
            return;
        };
        let start = self.data.len();
        put_len_field(&mut self.data, number, value.encoded_len());
        // Encoding into a Vec cannot run out of room.
        let _ = value.encode(&mut self.data);
        self.edits.push(Edit {
            at: at.end..at.end,
            with: Some(start..self.data.len()),
            into: Some(at.start),
        });
    }

    /// The batch with the changes: `Unchanged` when none was asked for. Fails when a part was
    /// not a field's payload in the batch, or two parts overlap.
    pub fn finish(mut self) -> Result<Rewrite, Error> {
        if self.foreign {
            return Err(Error::Internal(
                "a spliced part is not a slice of the batch".into(),
            ));
        }
        if self.edits.is_empty() {
            return Ok(Rewrite::Unchanged);
        }
        // By place; at one place, changes before appends, and appends to an inner message
        // before those to the messages around it (a stable sort keeps appends to one message in
        // their order).
        self.edits.sort_by(|a, b| {
            (a.at.start, a.at.end, a.into.is_some())
                .cmp(&(b.at.start, b.at.end, b.into.is_some()))
                .then(b.into.cmp(&a.into))
        });
        let mut last: Option<&Range<usize>> = None;
        for e in &self.edits {
            match (e.into, last) {
                // An append into a field that is replaced or removed.
                (Some(target), Some(l)) if l.start <= target && e.at.end <= l.end => {
                    return Err(Error::Internal(
                        "a message appended to is replaced or removed".into(),
                    ));
                }
                (Some(_), _) => {}
                (None, Some(l)) if e.at.start < l.end || e.at.start == l.start => {
                    return Err(Error::Internal("two spliced parts overlap".into()));
                }
                (None, _) => last = Some(&e.at),
            }
        }
        let grows: usize = self
            .edits
            .iter()
            .filter_map(|e| e.with.as_ref())
            .map(|w| w.len())
            .sum();
        let mut out = Vec::with_capacity(self.batch.len() + grows + 64);
        write(self.batch, 0, &self.edits, &self.data, &mut out)?;
        Ok(Rewrite::Replace(out))
    }
}

fn varint_len(v: usize) -> usize {
    // One byte per started seven bits; at least one.
    (usize::BITS - (v | 1).leading_zeros()).div_ceil(7) as usize
}

fn misplaced() -> Error {
    Error::Internal("a spliced part is not the payload of a field of the batch".into())
}

/// Appends `msg` (at `base` in the batch) with `edits` (sorted, all within it) applied.
/// Untouched fields are copied in runs, and everything after the last change at once; a
/// rebuilt message is written in place after room for its old length's varint, and moved only
/// in the rare case that its new length needs a varint of another size.
fn write(
    msg: &[u8],
    base: usize,
    edits: &[Edit],
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let mut rest = edits;
    // What of `msg` is written (or to be copied as it is) up to here.
    let mut copied = 0;
    let end = base + msg.len();
    // Appends to `msg` itself come last in `edits`.
    let own = |e: &Edit| e.into == Some(base) && e.at.start == end;
    for field in fields(msg) {
        if rest.first().is_none_or(own) {
            break;
        }
        let field = field.map_err(malformed)?;
        let start = field.raw.as_ptr() as usize - msg.as_ptr() as usize;
        let end = start + field.raw.len();
        let (field_end, payload_start) = (base + end, base + end - field.payload.len());
        let is_len = field.wire_type == WireType::Len;
        // Most fields hold no change: the next change alone says so.
        let next = &rest[0];
        if next.at.start >= field_end && !next.within(payload_start, field_end, is_len) {
            continue;
        }
        let inside = rest
            .iter()
            .take_while(|e| e.within(payload_start, field_end, is_len))
            .count();
        if inside == 0 {
            continue;
        }
        let (mine, after) = rest.split_at(inside);
        rest = after;
        if !is_len
            || mine
                .iter()
                .any(|e| e.at.start < payload_start || e.at.end > field_end)
        {
            return Err(misplaced());
        }
        append(out, &msg[copied..start]);
        copied = end;
        match mine {
            [
                Edit {
                    at,
                    with: None,
                    into: None,
                },
            ] if *at == (payload_start..field_end) => {}
            [
                Edit {
                    at,
                    with: Some(w),
                    into: None,
                },
            ] if *at == (payload_start..field_end) => {
                put_len_field(out, field.number, w.len());
                append(out, &data[w.clone()]);
            }
            inner => {
                encode_key(field.number, WireType::Len, out);
                let room = varint_len(field.payload.len());
                let at = out.len();
                for _ in 0..room {
                    out.push(0);
                }
                // The batch was checked before: what does not read as a message here is a
                // string or bytes that a part cut into.
                write(field.payload, payload_start, inner, data, out).map_err(|_| misplaced())?;
                let mut len = out.len() - at - room;
                let mut prefix = [0u8; 10];
                let mut n = 0;
                while len >= 0x80 {
                    prefix[n] = (len as u8 & 0x7f) | 0x80;
                    len >>= 7;
                    n += 1;
                }
                prefix[n] = len as u8;
                let prefix = &prefix[..=n];
                if prefix.len() == room {
                    for (slot, byte) in out[at..at + room].iter_mut().zip(prefix) {
                        *slot = *byte;
                    }
                } else {
                    out.splice(at..at + room, prefix.iter().copied());
                }
            }
        }
    }
    append(out, &msg[copied..]);
    for e in rest {
        match &e.with {
            Some(w) if own(e) => append(out, &data[w.clone()]),
            _ => return Err(misplaced()),
        }
    }
    Ok(())
}

/// Appends `bytes` to `out`. Up to 16 bytes (a mask, the gap between two changes) go eight at
/// a time: in a plugin, a copy of a variable length compiles to `memory.copy`, which the
/// runtime serves as a call out of the sandbox, several times dearer than the few loads and
/// stores of a short copy.
#[inline]
pub fn append(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > 16 {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(bytes.len());
    let mut rest = bytes;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        out.extend_from_slice(word);
        rest = tail;
    }
    for &b in rest {
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
    use crate::otlp::common::v1::{AnyValue, KeyValue, any_value};
    use crate::view::AttributesView;

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

    fn spliced(splice: Splice<'_>) -> ExportTraceServiceRequest {
        match splice.finish().expect("splices") {
            Rewrite::Replace(b) => {
                ExportTraceServiceRequest::decode(b.as_slice()).expect("decodes")
            }
            Rewrite::Unchanged => panic!("nothing changed"),
        }
    }

    /// Spans with attributes, a resource and an event, so changes sit at several depths.
    fn batch() -> ExportTraceServiceRequest {
        let mut req = crate::testing::traces(&["GET /a", "GET /b", "GET /c"]);
        for (i, span) in req.resource_spans[0].scope_spans[0]
            .spans
            .iter_mut()
            .enumerate()
        {
            span.attributes = vec![
                kv("client.address", &format!("10.0.0.{i}")),
                kv("http.route", "/a"),
            ];
            span.events.push(crate::otlp::trace::v1::span::Event {
                name: format!("event {i}"),
                attributes: vec![kv("exception.message", "boom")],
                ..Default::default()
            });
        }
        req.resource_spans[0].resource = Some(Resource {
            attributes: vec![kv("service.name", "checkout")],
            ..Default::default()
        });
        req
    }

    #[test]
    fn spliced_values_match_the_decoded_edit_at_every_length() {
        let req = batch();
        let bytes = req.encode_to_vec();
        // Lengths around the one- and two-byte length prefixes of every enclosing message.
        for len in [0, 1, 9, 10, 100, 127, 128, 300, 20_000] {
            let new = "x".repeat(len);
            let mut splice = Splice::new(&bytes);
            let view = crate::view::TracesView::new(&bytes);
            view.for_each_span(|_, span| {
                span.attributes.for_each(|k, v| {
                    if k == "client.address" {
                        splice.replace(v.as_str().expect("a string").as_bytes(), new.as_bytes());
                    }
                    Ok(())
                })?;
                span.for_each_event(|e| {
                    splice.replace(e.name.as_bytes(), new.as_bytes());
                    Ok(())
                })
            })
            .expect("walks");
            view.for_each_resource(|a| {
                let v = a
                    .get("service.name")?
                    .and_then(|v| v.as_str())
                    .expect("named");
                splice.replace(v.as_bytes(), b"svc");
                Ok(())
            })
            .expect("walks");
            let mut want = req.clone();
            for span in &mut want.resource_spans[0].scope_spans[0].spans {
                span.attributes[0] = kv("client.address", &new);
                span.events[0].name = new.clone();
            }
            want.resource_spans[0]
                .resource
                .as_mut()
                .expect("resource")
                .attributes[0] = kv("service.name", "svc");
            assert_eq!(spliced(splice), want, "length {len}");
        }
    }

    #[test]
    fn removed_fields_go_with_their_key_and_length_and_undone_changes_are_not_applied() {
        let req = batch();
        let bytes = req.encode_to_vec();
        let mut splice = Splice::new(&bytes);
        let mut n = 0;
        crate::view::TracesView::new(&bytes)
            .for_each_span(|_, span| {
                n += 1;
                match n {
                    // The first span loses an attribute, the second goes, the third has a
                    // change taken back.
                    1 => span.attributes.for_each_encoded(|kv| {
                        if AttributesView::split_encoded(kv)?.0 == "client.address" {
                            splice.remove(kv);
                        }
                        Ok(())
                    }),
                    2 => {
                        splice.remove(span.encoded());
                        Ok(())
                    }
                    _ => {
                        let mark = splice.len();
                        splice.replace(span.name.as_bytes(), b"taken back");
                        splice.undo_to(mark);
                        Ok(())
                    }
                }
            })
            .expect("walks");
        let mut want = req.clone();
        let spans = &mut want.resource_spans[0].scope_spans[0].spans;
        spans[0].attributes.remove(0);
        spans.remove(1);
        assert_eq!(spliced(splice), want);

        let mut splice = Splice::new(&bytes);
        let mark = splice.len();
        splice.replace(&bytes[bytes.len() - 2..], b"x");
        splice.undo_to(mark);
        assert_eq!(splice.finish().expect("nothing to do"), Rewrite::Unchanged);
    }

    /// The payload of the first field `number` of `msg`, or of the last with `last`.
    fn payload_of(msg: &[u8], number: u32, last: bool) -> &[u8] {
        let mut found = fields(msg)
            .map(|f| f.expect("valid"))
            .filter(|f| f.number == number)
            .map(|f| f.payload);
        let first = found.next().expect("present");
        if last {
            found.last().unwrap_or(first)
        } else {
            first
        }
    }

    #[test]
    fn appended_fields_land_in_their_message_at_every_depth_and_length() {
        let mut req = batch();
        // An empty resource: a message with no payload at all to append to.
        let mut second = req.resource_spans[0].clone();
        second.resource = Some(Resource::default());
        req.resource_spans.push(second);
        let bytes = req.encode_to_vec();
        for len in [0, 1, 100, 127, 128, 300, 20_000] {
            let value = "v".repeat(len);
            let mut splice = Splice::new(&bytes);
            let view = crate::view::TracesView::new(&bytes);
            // To every span (the last span of the batch ends where its scope, its resource
            // level and the request end: four appends at one place), with a change inside it.
            view.for_each_span(|_, span| {
                let attribute = kv("added", &value);
                splice.append_message(span.encoded(), 9, &attribute);
                let ip = span
                    .attributes
                    .get("client.address")?
                    .and_then(|v| v.as_str());
                splice.replace(ip.expect("present").as_bytes(), b"[ip]");
                Ok(())
            })
            .expect("walks");
            view.for_each_resource(|a| {
                splice.append_message(a.holder(), 1, &kv("region", &value));
                Ok(())
            })
            .expect("walks");
            let last_level = payload_of(&bytes, 1, true);
            let scope_level = payload_of(last_level, 2, true);
            let mut extra_span = req.resource_spans[0].scope_spans[0].spans[0].clone();
            extra_span.name = value.clone();
            splice.append_message(scope_level, 2, &extra_span);
            let mut extra_level = req.resource_spans[0].clone();
            extra_level.schema_url = value.clone();
            splice.append_field(&bytes, 1, &extra_level.encode_to_vec());

            let mut want = req.clone();
            for rs in &mut want.resource_spans {
                rs.resource
                    .as_mut()
                    .expect("resource")
                    .attributes
                    .push(kv("region", &value));
                for span in &mut rs.scope_spans[0].spans {
                    span.attributes[0] = kv("client.address", "[ip]");
                    span.attributes.push(kv("added", &value));
                }
            }
            want.resource_spans[1].scope_spans[0].spans.push(extra_span);
            want.resource_spans.push(extra_level);
            assert_eq!(spliced(splice), want, "length {len}");
        }
    }

    #[test]
    fn appends_keep_their_order_are_undone_and_never_go_into_a_removed_message() {
        let req = batch();
        let bytes = req.encode_to_vec();
        let first_span = payload_of(payload_of(payload_of(&bytes, 1, false), 2, false), 2, false);
        let mut splice = Splice::new(&bytes);
        splice.append_message(first_span, 9, &kv("one", "1"));
        let mark = splice.len();
        splice.append_message(first_span, 9, &kv("dropped", "x"));
        splice.undo_to(mark);
        splice.append_message(first_span, 9, &kv("two", "2"));
        let mut want = req.clone();
        let span = &mut want.resource_spans[0].scope_spans[0].spans[0];
        span.attributes.push(kv("one", "1"));
        span.attributes.push(kv("two", "2"));
        assert_eq!(spliced(splice), want);

        for replace in [false, true] {
            let mut splice = Splice::new(&bytes);
            if replace {
                splice.replace(first_span, b"");
            } else {
                splice.remove(first_span);
            }
            splice.append_message(first_span, 9, &kv("one", "1"));
            match splice.finish() {
                Err(Error::Internal(m)) => {
                    assert_eq!(m, "a message appended to is replaced or removed")
                }
                other => panic!("{other:?}"),
            }
        }
        // An append to a message that is not in the batch.
        let elsewhere = bytes.clone();
        let mut splice = Splice::new(&bytes);
        splice.append_field(&elsewhere, 1, b"");
        assert!(matches!(splice.finish(), Err(Error::Internal(_))));
    }

    #[test]
    fn parts_that_are_no_payload_overlap_or_lie_elsewhere_are_refused() {
        let bytes = batch().encode_to_vec();
        let mut name = None;
        crate::view::TracesView::new(&bytes)
            .for_each_span(|_, span| {
                name.get_or_insert(span.name);
                Ok(())
            })
            .expect("walks");
        let name = name.expect("a span").as_bytes();
        let refused = |edit: &dyn Fn(&mut Splice<'_>)| {
            let mut splice = Splice::new(&bytes);
            edit(&mut splice);
            match splice.finish() {
                Err(Error::Internal(m)) => m,
                other => panic!("{other:?}"),
            }
        };
        // Part of a string, not all of it.
        assert!(refused(&|s| s.replace(&name[1..], b"x")).contains("not the payload"));
        // The same part twice.
        assert!(
            refused(&|s| {
                s.replace(name, b"x");
                s.remove(name);
            })
            .contains("overlap")
        );
        // Not in the batch at all.
        let elsewhere = b"GET /a".to_vec();
        assert!(refused(&|s| s.replace(&elsewhere, b"x")).contains("not a slice"));
        // Across two fields.
        let whole = &bytes[1..];
        assert!(refused(&|s| s.replace(whole, b"x")).contains("not the payload"));
    }
}
