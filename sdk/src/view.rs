//! Read-only views of a batch's protobuf, without decoding it into the [`crate::otlp`] structs.
//!
//! Decoding a batch allocates for every span, attribute and string; for a plugin that only
//! reads (counts, checks, decides which records to keep) that is most of its cost. A view walks
//! the protobuf the gateway hands over and lends out `&str` and `&[u8]` slices of it instead,
//! reading it with the gateway's own wire reader ([`sluice_wire::Reader`]).
//!
//! Implement [`crate::Plugin::read_traces`] (or `read_logs`) to use it: return `Some(verdict)`
//! to answer from the view, or `None` to be called again through [`crate::Plugin::traces`] with
//! the decoded batch (for example when something must be rewritten). The gateway has already
//! validated the batch, so a malformed field is reported as [`crate::Error::Input`].
//!
//! ```
//! use sluice_sdk::view::{SpanView, TracesView};
//! # fn count(batch: &TracesView) -> Result<usize, sluice_sdk::Error> {
//! let mut errors = 0;
//! batch.for_each_span(|_resource, span: &SpanView| {
//!     if span.status_code == 2 {
//!         errors += 1;
//!     }
//!     Ok(())
//! })?;
//! # Ok(errors) }
//! ```

use sluice_wire::{Reader, Value};

use crate::Error;

#[derive(Debug)]
struct Malformed;

type R<T> = Result<T, Malformed>;

impl From<Malformed> for Error {
    fn from(_: Malformed) -> Error {
        Error::Input("malformed OTLP protobuf".into())
    }
}

impl From<sluice_wire::Error> for Malformed {
    #[inline]
    fn from(_: sluice_wire::Error) -> Malformed {
        Malformed
    }
}

/// The next field of a message, or `None` at its end.
#[inline]
fn next<'a>(r: &mut Reader<'a>) -> R<Option<(u32, Value<'a>)>> {
    Ok(r.next_value()?)
}

/// The part of a message that holds every occurrence of one field: fields that are walked again
/// later (attributes, events, links) are then found without walking the whole message again.
#[derive(Clone, Copy, Default)]
struct Window {
    start: usize,
    end: usize,
}

impl Window {
    fn note(&mut self, start: usize, end: usize) {
        if self.end == 0 {
            self.start = start;
        }
        self.end = end;
    }

    fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start..self.end]
    }
}

fn utf8(b: &[u8]) -> R<&str> {
    std::str::from_utf8(b).map_err(|_| Malformed)
}

/// Calls `f` for every length-delimited field `number` of `buf`.
fn each_len<'a>(
    buf: &'a [u8],
    number: u32,
    mut f: impl FnMut(&'a [u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut r = Reader::new(buf);
    while let Some((n, field)) = next(&mut r)? {
        if n == number
            && let Value::Len(b) = field
        {
            f(b)?;
        }
    }
    Ok(())
}

/// A `KeyValue` message's key and encoded value (`None` when it has no value), unchecked: the
/// key is not validated as UTF-8.
#[inline]
fn raw_key_value(kv: &[u8]) -> R<(&[u8], Option<&[u8]>)> {
    if let [0x0a, klen, rest @ ..] = kv
        && *klen < 0x80
        && let Some((key, rest)) = rest.split_at_checked(usize::from(*klen))
        && let [0x12, vlen, value @ ..] = rest
        && *vlen < 0x80
        && usize::from(*vlen) == value.len()
    {
        return Ok((key, Some(value)));
    }
    let (mut key, mut value): (&[u8], _) = (&[], None);
    let mut r = Reader::new(kv);
    while let Some((n, field)) = next(&mut r)? {
        match (n, field) {
            (1, Value::Len(b)) => key = b,
            (2, Value::Len(b)) => value = Some(b),
            _ => {}
        }
    }
    Ok((key, value))
}

/// A `KeyValue` message's key and value.
#[inline]
fn key_value(kv: &[u8]) -> R<(&str, ValueView<'_>)> {
    // As encoders write it: the key, then the value, each with a one-byte length.
    if let [0x0a, klen, rest @ ..] = kv
        && let Some((key, rest)) = rest.split_at_checked(usize::from(*klen))
        && *klen < 0x80
        && let [0x12, vlen, value @ ..] = rest
        && *vlen < 0x80
        && usize::from(*vlen) == value.len()
    {
        return Ok((utf8(key)?, ValueView::parse(value)?));
    }
    let mut key = "";
    let mut value = ValueView::Empty;
    let mut r = Reader::new(kv);
    while let Some((n, field)) = next(&mut r)? {
        match (n, field) {
            (1, Value::Len(b)) => key = utf8(b)?,
            (2, Value::Len(b)) => value = ValueView::parse(b)?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// An attribute value, borrowed from the batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueView<'a> {
    Empty,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// An array: walk it with [`ValueView::for_each_element`].
    Array(&'a [u8]),
    /// A key-value list: walk it with [`AttributesView::for_each`].
    KvList(AttributesView<'a>),
}

impl<'a> ValueView<'a> {
    fn parse(buf: &'a [u8]) -> R<ValueView<'a>> {
        // Most values are one short string: tag, one-byte length, the bytes.
        if let [0x0a, len, s @ ..] = buf
            && *len < 0x80
            && usize::from(*len) == s.len()
        {
            return Ok(ValueView::Str(utf8(s)?));
        }
        let mut v = ValueView::Empty;
        let mut r = Reader::new(buf);
        while let Some((n, field)) = next(&mut r)? {
            v = match (n, field) {
                (1, Value::Len(b)) => ValueView::Str(utf8(b)?),
                (2, Value::Varint(x)) => ValueView::Bool(x != 0),
                (3, Value::Varint(x)) => ValueView::Int(x as i64),
                (4, Value::Fixed64(x)) => ValueView::Double(f64::from_bits(x)),
                (5, Value::Len(b)) => ValueView::Array(b),
                (6, Value::Len(b)) => ValueView::KvList(AttributesView { buf: b, field: 1 }),
                (7, Value::Len(b)) => ValueView::Bytes(b),
                _ => v,
            };
        }
        Ok(v)
    }

    /// Reads an encoded `AnyValue` (as [`AttributesView::split_encoded`] hands it out).
    pub fn from_encoded(encoded: &'a [u8]) -> Result<ValueView<'a>, Error> {
        Ok(ValueView::parse(encoded)?)
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            ValueView::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Calls `f` for each element of an array value (nothing for other values).
    pub fn for_each_element(
        &self,
        mut f: impl FnMut(ValueView<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if let ValueView::Array(buf) = self {
            each_len(buf, 1, |b| f(ValueView::parse(b)?))?;
        }
        Ok(())
    }
}

/// The attributes of a resource, scope, span, event, link or log record (or a key-value list
/// value), walked on demand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttributesView<'a> {
    /// The enclosing message; attributes are its length-delimited fields `field`.
    buf: &'a [u8],
    field: u32,
}

impl<'a> AttributesView<'a> {
    const EMPTY: AttributesView<'static> = AttributesView { buf: &[], field: 0 };

    /// Calls `f` with each attribute's key and value, in order.
    pub fn for_each(
        &self,
        mut f: impl FnMut(&'a str, ValueView<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.field == 0 {
            return Ok(());
        }
        each_len(self.buf, self.field, |kv| {
            let (key, value) = key_value(kv)?;
            f(key, value)
        })
    }

    /// Calls `f` with each attribute as it is encoded (a `KeyValue` message), unparsed, in
    /// order: for plugins that remember attributes they have seen by their bytes. Read one
    /// with [`AttributesView::parse_encoded`].
    pub fn for_each_encoded(
        &self,
        f: impl FnMut(&'a [u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.field == 0 {
            return Ok(());
        }
        each_len(self.buf, self.field, f)
    }

    /// The key and value of one attribute given by [`AttributesView::for_each_encoded`].
    pub fn parse_encoded(encoded: &'a [u8]) -> Result<(&'a str, ValueView<'a>), Error> {
        Ok(key_value(encoded)?)
    }

    /// The key of one attribute given by [`AttributesView::for_each_encoded`], and its value
    /// still encoded (an `AnyValue`; `None` when it has none): the part to name to
    /// [`crate::wire::Splice`] to replace the whole value. Read it with
    /// [`ValueView::from_encoded`].
    pub fn split_encoded(encoded: &'a [u8]) -> Result<(&'a str, Option<&'a [u8]>), Error> {
        let (key, value) = raw_key_value(encoded)?;
        Ok((utf8(key)?, value))
    }

    /// The part of the batch that holds the attributes (for a resource's, the whole `Resource`
    /// message): for plugins that key something by where attributes are in the batch. Two views
    /// are [`AttributesView::same`] when these are the same slice.
    pub fn holder(&self) -> &'a [u8] {
        self.buf
    }

    /// The number of the field the attributes are in, in the message that has them (9 in a
    /// span, 6 in a log record, 1 in a resource); `None` for a resource level without a
    /// resource: what [`crate::wire::Splice::append_message`] needs to add one to that message
    /// ([`SpanView::encoded`], [`LogView::encoded`], or for a resource [`AttributesView::holder`]).
    pub fn field_number(&self) -> Option<u32> {
        (self.field != 0).then_some(self.field)
    }

    /// Whether both views are the same attributes of the same batch (not merely equal ones):
    /// for plugins that look something up once per resource.
    pub fn same(&self, other: &AttributesView<'_>) -> bool {
        std::ptr::eq(self.buf, other.buf) && self.field == other.field
    }

    /// The value of the first attribute named `key`. Keys are compared as bytes and only the
    /// matching attribute's value is parsed.
    pub fn get(&self, key: &str) -> Result<Option<ValueView<'a>>, Error> {
        let [value] = self.get_many([key])?;
        Ok(value)
    }

    /// The values of the first attributes named by `keys`, in one pass over the attributes
    /// (cheaper than one [`AttributesView::get`] per key). Only matching values are parsed.
    pub fn get_many<const N: usize>(
        &self,
        keys: [&str; N],
    ) -> Result<[Option<ValueView<'a>>; N], Error> {
        let mut found = [None; N];
        if self.field == 0 || N == 0 {
            return Ok(found);
        }
        let mut missing = N;
        let mut r = Reader::new(self.buf);
        while let Some((n, field)) = next(&mut r)? {
            let Value::Len(kv) = field else { continue };
            if n != self.field {
                continue;
            }
            let (k, value) = raw_key_value(kv)?;
            for (i, key) in keys.iter().enumerate() {
                if found[i].is_none() && k == key.as_bytes() {
                    found[i] = Some(match value {
                        Some(v) => ValueView::parse(v)?,
                        None => ValueView::Empty,
                    });
                    missing -= 1;
                }
            }
            if missing == 0 {
                break;
            }
        }
        Ok(found)
    }
}

/// A span event: name and attributes.
#[derive(Clone, Copy, Debug)]
pub struct EventView<'a> {
    pub time_unix_nano: u64,
    pub name: &'a str,
    pub attributes: AttributesView<'a>,
}

/// A span, borrowed from the batch. Events and links are walked on demand.
#[derive(Clone, Copy, Debug)]
pub struct SpanView<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub name: &'a str,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: AttributesView<'a>,
    /// `STATUS_CODE_*`: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: &'a str,
    /// The parts of the span that hold its events and its links.
    events: &'a [u8],
    links: &'a [u8],
    /// The whole span as encoded.
    buf: &'a [u8],
}

impl<'a> SpanView<'a> {
    fn parse(buf: &'a [u8]) -> R<SpanView<'a>> {
        let mut s = SpanView {
            trace_id: &[],
            span_id: &[],
            parent_span_id: &[],
            name: "",
            kind: 0,
            start_time_unix_nano: 0,
            end_time_unix_nano: 0,
            attributes: AttributesView { buf, field: 9 },
            status_code: 0,
            status_message: "",
            events: &[],
            links: &[],
            buf,
        };
        let mut r = Reader::new(buf);
        let (mut attributes, mut events, mut links) =
            (Window::default(), Window::default(), Window::default());
        loop {
            let at = r.position();
            let Some((n, field)) = next(&mut r)? else {
                break;
            };
            match (n, field) {
                (9, _) => attributes.note(at, r.position()),
                (11, _) => events.note(at, r.position()),
                (13, _) => links.note(at, r.position()),
                (1, Value::Len(b)) => s.trace_id = b,
                (2, Value::Len(b)) => s.span_id = b,
                (4, Value::Len(b)) => s.parent_span_id = b,
                (5, Value::Len(b)) => s.name = utf8(b)?,
                (6, Value::Varint(x)) => s.kind = x as i32,
                (7, Value::Fixed64(x)) => s.start_time_unix_nano = x,
                (8, Value::Fixed64(x)) => s.end_time_unix_nano = x,
                (15, Value::Len(b)) => {
                    let mut st = Reader::new(b);
                    while let Some((n, f)) = next(&mut st)? {
                        match (n, f) {
                            (2, Value::Len(m)) => s.status_message = utf8(m)?,
                            (3, Value::Varint(c)) => s.status_code = c as i32,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        s.attributes.buf = attributes.of(buf);
        s.events = events.of(buf);
        s.links = links.of(buf);
        Ok(s)
    }

    /// The span as it is encoded in the batch: the part to name to [`crate::wire::Splice`] to
    /// drop the span.
    pub fn encoded(&self) -> &'a [u8] {
        self.buf
    }

    /// Duration in nanoseconds (0 if the end is before the start).
    pub fn duration_nanos(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }

    pub fn for_each_event(
        &self,
        mut f: impl FnMut(EventView<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        each_len(self.events, 11, |e| {
            let mut ev = EventView {
                time_unix_nano: 0,
                name: "",
                attributes: AttributesView { buf: e, field: 3 },
            };
            let mut r = Reader::new(e);
            while let Some((n, field)) = next(&mut r)? {
                match (n, field) {
                    (1, Value::Fixed64(t)) => ev.time_unix_nano = t,
                    (2, Value::Len(b)) => ev.name = utf8(b)?,
                    _ => {}
                }
            }
            f(ev)
        })
    }

    /// Calls `f` with the attributes of each link.
    pub fn for_each_link_attributes(
        &self,
        mut f: impl FnMut(AttributesView<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        each_len(self.links, 13, |l| f(AttributesView { buf: l, field: 4 }))
    }
}

/// A log record, borrowed from the batch.
#[derive(Clone, Copy, Debug)]
pub struct LogView<'a> {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub body: ValueView<'a>,
    pub attributes: AttributesView<'a>,
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub event_name: &'a str,
    /// The whole record as encoded.
    buf: &'a [u8],
}

impl<'a> LogView<'a> {
    fn parse(buf: &'a [u8]) -> R<LogView<'a>> {
        let mut l = LogView {
            time_unix_nano: 0,
            observed_time_unix_nano: 0,
            severity_number: 0,
            severity_text: "",
            body: ValueView::Empty,
            attributes: AttributesView { buf, field: 6 },
            trace_id: &[],
            span_id: &[],
            event_name: "",
            buf,
        };
        let mut r = Reader::new(buf);
        let mut attributes = Window::default();
        loop {
            let at = r.position();
            let Some((n, field)) = next(&mut r)? else {
                break;
            };
            match (n, field) {
                (6, _) => attributes.note(at, r.position()),
                (1, Value::Fixed64(t)) => l.time_unix_nano = t,
                (11, Value::Fixed64(t)) => l.observed_time_unix_nano = t,
                (2, Value::Varint(x)) => l.severity_number = x as i32,
                (3, Value::Len(b)) => l.severity_text = utf8(b)?,
                (5, Value::Len(b)) => l.body = ValueView::parse(b)?,
                (9, Value::Len(b)) => l.trace_id = b,
                (10, Value::Len(b)) => l.span_id = b,
                (12, Value::Len(b)) => l.event_name = utf8(b)?,
                _ => {}
            }
        }
        l.attributes.buf = attributes.of(buf);
        Ok(l)
    }

    /// The record as it is encoded in the batch: the part to name to [`crate::wire::Splice`]
    /// to drop the record.
    pub fn encoded(&self) -> &'a [u8] {
        self.buf
    }
}

/// The resource records came from, and their instrumentation scope.
#[derive(Clone, Copy, Debug)]
pub struct ResourceView<'a> {
    pub attributes: AttributesView<'a>,
    pub scope_name: &'a str,
    pub scope_version: &'a str,
    pub scope_attributes: AttributesView<'a>,
}

/// Walks request → resource-level (field 1) → scope-level (field 2) → records (field 2).
fn walk_records<'a>(
    buf: &'a [u8],
    mut f: impl FnMut(&ResourceView<'a>, &'a [u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    each_len(buf, 1, |resource_level| {
        let mut resource = AttributesView::EMPTY;
        each_len(resource_level, 1, |r| {
            resource = AttributesView { buf: r, field: 1 };
            Ok(())
        })?;
        each_len(resource_level, 2, |scope_level| {
            let mut view = ResourceView {
                attributes: resource,
                scope_name: "",
                scope_version: "",
                scope_attributes: AttributesView::EMPTY,
            };
            each_len(scope_level, 1, |scope| {
                view.scope_attributes = AttributesView {
                    buf: scope,
                    field: 3,
                };
                let mut r = Reader::new(scope);
                while let Some((n, field)) = next(&mut r)? {
                    match (n, field) {
                        (1, Value::Len(b)) => view.scope_name = utf8(b)?,
                        (2, Value::Len(b)) => view.scope_version = utf8(b)?,
                        _ => {}
                    }
                }
                Ok(())
            })?;
            each_len(scope_level, 2, |record| f(&view, record))
        })
    })
}

/// Calls `f` with each resource-level message of an `Export*ServiceRequest` of any signal
/// (a `ResourceSpans`, `ResourceMetrics` or `ResourceLogs`, as encoded: the part to name to
/// [`crate::wire::Splice::append_message`] to give it a resource) and its resource's
/// attributes (without a [`AttributesView::field_number`] when it has no resource).
pub fn for_each_resource_level<'a>(
    request: &'a [u8],
    mut f: impl FnMut(&'a [u8], AttributesView<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    each_len(request, 1, |resource_level| {
        let mut attrs = AttributesView::EMPTY;
        each_len(resource_level, 1, |r| {
            attrs = AttributesView { buf: r, field: 1 };
            Ok(())
        })?;
        f(resource_level, attrs)
    })
}

/// An `ExportTraceServiceRequest`, read in place.
#[derive(Clone, Copy, Debug)]
pub struct TracesView<'a> {
    buf: &'a [u8],
}

impl<'a> TracesView<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        TracesView { buf }
    }

    /// Calls `f` for every span, in document order (the order [`crate::Verdict::Keep`] counts).
    pub fn for_each_span(
        &self,
        mut f: impl FnMut(&ResourceView<'a>, &SpanView<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        walk_records(self.buf, |r, span| f(r, &SpanView::parse(span)?))
    }

    /// Calls `f` once per resource (with its first scope) before its spans; for plugins that
    /// look at resources only.
    pub fn for_each_resource(
        &self,
        mut f: impl FnMut(AttributesView<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        for_each_resource_level(self.buf, |_, attrs| f(attrs))
    }
}

/// An `ExportLogsServiceRequest`, read in place.
#[derive(Clone, Copy, Debug)]
pub struct LogsView<'a> {
    buf: &'a [u8],
}

impl<'a> LogsView<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        LogsView { buf }
    }

    /// Calls `f` for every log record, in document order.
    pub fn for_each_log(
        &self,
        mut f: impl FnMut(&ResourceView<'a>, &LogView<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        walk_records(self.buf, |r, log| f(r, &LogView::parse(log)?))
    }

    /// Calls `f` with each resource's attributes.
    pub fn for_each_resource(
        &self,
        f: impl FnMut(AttributesView<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        TracesView { buf: self.buf }.for_each_resource(f)
    }
}

#[cfg(test)]
mod tests;
