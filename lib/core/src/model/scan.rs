//! An allocation-free check of an OTLP protobuf traces or logs request, for the passthrough path.
//!
//! Decoding a request into prost structs allocates for every span, attribute and string: on the
//! passthrough path (no plugin, OTLP out) that was most of the gateway's CPU, only to count the
//! records and check their ids. [`scan`] walks the wire format instead: it checks every field
//! the way prost's decoder would (wire types, lengths, UTF-8 of strings, nesting), counts the
//! records and checks trace and span ids, without building anything. It reads the wire with
//! [`sluice_wire::Reader`], as [`super::cost`] and the plugin SDK's views do.
//!
//! It answers [`Scan::Valid`] only when the full decode would succeed and remove nothing; for
//! anything else (a malformed body, an invalid id, a construct it does not handle such as
//! groups) it answers [`Scan::Decode`], and the receiver takes the full decode path, which
//! produces the precise error or the `partial_success`. So the scan can be conservative but
//! never more lenient than the decoder.

use std::cell::Cell;

use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use sluice_wire::{self as wire, Reader, WireType};

use super::Signal;

/// Limits on attributes that the scan checks: a request within them needs no change; one
/// beyond them takes the decode path, where [`super::Payload::enforce_limits`] applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrLimits {
    /// Attributes per record (span, log record, data point) and per resource.
    pub max_attributes: usize,
    /// Bytes of one string or bytes value.
    pub max_value_len: usize,
}

impl Default for AttrLimits {
    fn default() -> Self {
        AttrLimits {
            max_attributes: 128,
            max_value_len: 64 * 1024,
        }
    }
}

thread_local! {
    /// The limits of the scan running on this thread (set by [`scan_within`]).
    static LIMITS: Cell<AttrLimits> = Cell::new(AttrLimits::default());
    /// What the decoded form of the request scanned on this thread would take, as
    /// [`super::cost::protobuf`] counts it (read by [`scan_costed`]).
    static COST: Cell<u64> = const { Cell::new(0) };
}

/// Adds to the decoded size of the request being scanned.
#[inline]
fn charge(bytes: usize) {
    COST.with(|c| c.set(c.get().saturating_add(bytes as u64)));
}

/// An element of a repeated message field: its size, doubled for the room a growing `Vec`
/// may hold (as [`super::cost`] charges it).
#[inline]
fn charge_element<T>() {
    charge(2 * std::mem::size_of::<T>());
}

fn limits() -> AttrLimits {
    LIMITS.with(Cell::get)
}

/// The scan's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Well-formed, every record valid; this many records.
    Valid(usize),
    /// Take the full decode path (malformed, invalid records, or not scanned).
    Decode,
}

/// prost refuses messages nested deeper than 100; stay below.
const MAX_DEPTH: u32 = 90;

/// The wire is not what the decoder accepts (or not what the scan vouches for).
#[derive(Debug)]
struct Stop;

type R<T> = Result<T, Stop>;

impl From<wire::Error> for Stop {
    #[inline]
    fn from(_: wire::Error) -> Stop {
        Stop
    }
}

/// How a field is checked.
#[derive(Clone, Copy)]
enum Kind {
    Varint,
    Fixed64,
    Fixed32,
    Bytes,
    Str,
    Msg(fn(&[u8], u32) -> R<()>),
}

fn expect(wire: WireType, kind: Kind) -> R<()> {
    let want = match kind {
        Kind::Varint => WireType::Varint,
        Kind::Fixed64 => WireType::Fixed64,
        Kind::Fixed32 => WireType::Fixed32,
        Kind::Bytes | Kind::Str | Kind::Msg(_) => WireType::Len,
    };
    if wire == want { Ok(()) } else { Err(Stop) }
}

/// Walks one message: `field` maps a field number to its kind (`None`: unknown, skipped).
/// `on_bytes` sees every `Bytes` field's value (for the id checks).
fn walk<'a>(
    buf: &'a [u8],
    depth: u32,
    field: impl Fn(u32) -> Option<Kind>,
    mut on_bytes: impl FnMut(u32, &'a [u8]),
) -> R<()> {
    if depth > MAX_DEPTH {
        return Err(Stop);
    }
    let mut r = Reader::new(buf);
    while !r.at_end() {
        let (number, wire) = r.key()?;
        let Some(kind) = field(number) else {
            skip_unknown(&mut r, wire)?;
            continue;
        };
        expect(wire, kind)?;
        match kind {
            Kind::Varint => r.skip(WireType::Varint)?,
            Kind::Fixed64 => r.skip(WireType::Fixed64)?,
            Kind::Fixed32 => r.skip(WireType::Fixed32)?,
            Kind::Bytes => {
                let b = r.bytes()?;
                charge(b.len());
                on_bytes(number, b);
            }
            Kind::Str => {
                let b = r.bytes()?;
                charge(b.len());
                std::str::from_utf8(b).map_err(|_| Stop)?;
            }
            Kind::Msg(check) => check(r.bytes()?, depth + 1)?,
        }
    }
    Ok(())
}

/// A field the scan does not know, which OTLP senders rarely write: kept out of [`walk`]'s
/// loop, where the scan spends its time (inlined there, its jump table made the scan
/// measurably slower).
#[cold]
#[inline(never)]
fn skip_unknown(r: &mut Reader<'_>, wire: WireType) -> R<()> {
    Ok(r.skip(wire)?)
}

fn plain(buf: &[u8], depth: u32, field: impl Fn(u32) -> Option<Kind>) -> R<()> {
    walk(buf, depth, field, |_, _| {})
}

// ------------------------------------------------------------- common messages

fn any_value(buf: &[u8], depth: u32) -> R<()> {
    let max = limits().max_value_len;
    let ok = Cell::new(true);
    walk(
        buf,
        depth,
        |n| match n {
            // Strings are taken as bytes here and checked below, with their length.
            1 | 7 => Some(Kind::Bytes),
            2 | 3 | 8 => Some(Kind::Varint),
            4 => Some(Kind::Fixed64),
            5 => Some(Kind::Msg(array_value)),
            6 => Some(Kind::Msg(key_value_list)),
            _ => None,
        },
        |n, b| {
            if b.len() > max || (n == 1 && std::str::from_utf8(b).is_err()) {
                ok.set(false);
            }
        },
    )?;
    if ok.get() { Ok(()) } else { Err(Stop) }
}

/// Fails when a message has more than `max_attributes` occurrences of field `attributes`.
fn count_attributes(
    attributes: u32,
    field: impl Fn(u32) -> Option<Kind>,
) -> (impl Fn(u32) -> Option<Kind>, impl Fn() -> R<()>) {
    let seen = std::rc::Rc::new(Cell::new(0usize));
    let max = limits().max_attributes;
    let counter = seen.clone();
    (
        move |n| {
            if n == attributes {
                counter.set(counter.get() + 1);
            }
            field(n)
        },
        move || if seen.get() > max { Err(Stop) } else { Ok(()) },
    )
}

fn array_value(buf: &[u8], depth: u32) -> R<()> {
    plain(buf, depth, |n| {
        (n == 1).then(|| {
            charge_element::<AnyValue>();
            Kind::Msg(any_value)
        })
    })
}

fn key_value_list(buf: &[u8], depth: u32) -> R<()> {
    plain(buf, depth, |n| (n == 1).then_some(Kind::Msg(key_value)))
}

/// Always an element of a repeated field (attributes, key-value lists).
fn key_value(buf: &[u8], depth: u32) -> R<()> {
    charge_element::<KeyValue>();
    plain(buf, depth, |n| match n {
        1 => Some(Kind::Str),
        2 => Some(Kind::Msg(any_value)),
        3 => Some(Kind::Varint),
        _ => None,
    })
}

fn entity_ref(buf: &[u8], depth: u32) -> R<()> {
    charge_element::<EntityRef>();
    plain(buf, depth, |n| {
        if n == 3 || n == 4 {
            // An element of a repeated string field.
            charge_element::<String>();
        }
        (1..=4).contains(&n).then_some(Kind::Str)
    })
}

fn resource(buf: &[u8], depth: u32) -> R<()> {
    let (field, check) = count_attributes(1, |n| match n {
        1 => Some(Kind::Msg(key_value)),
        2 => Some(Kind::Varint),
        3 => Some(Kind::Msg(entity_ref)),
        _ => None,
    });
    plain(buf, depth, field)?;
    check()
}

fn scope(buf: &[u8], depth: u32) -> R<()> {
    let (field, check) = count_attributes(3, |n| match n {
        1 | 2 => Some(Kind::Str),
        3 => Some(Kind::Msg(key_value)),
        4 => Some(Kind::Varint),
        _ => None,
    });
    plain(buf, depth, field)?;
    check()
}

// ------------------------------------------------------------- traces

fn event(buf: &[u8], depth: u32) -> R<()> {
    charge_element::<Event>();
    let (field, check) = count_attributes(3, |n| match n {
        1 => Some(Kind::Fixed64),
        2 => Some(Kind::Str),
        3 => Some(Kind::Msg(key_value)),
        4 => Some(Kind::Varint),
        _ => None,
    });
    plain(buf, depth, field)?;
    check()
}

fn link(buf: &[u8], depth: u32) -> R<()> {
    charge_element::<Link>();
    let (field, check) = count_attributes(4, |n| match n {
        1 | 2 => Some(Kind::Bytes),
        3 => Some(Kind::Str),
        4 => Some(Kind::Msg(key_value)),
        5 => Some(Kind::Varint),
        6 => Some(Kind::Fixed32),
        _ => None,
    });
    plain(buf, depth, field)?;
    check()
}

fn status(buf: &[u8], depth: u32) -> R<()> {
    plain(buf, depth, |n| match n {
        2 => Some(Kind::Str),
        3 => Some(Kind::Varint),
        _ => None,
    })
}

fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|&b| b != 0)
}

/// A span, checked as `Payload::remove_invalid` checks it: 16-byte non-zero trace id, 8-byte
/// non-zero span id, parent empty or 8 bytes. The last occurrence of a field wins, as in prost.
fn span(buf: &[u8], depth: u32) -> R<()> {
    charge_element::<Span>();
    let (mut trace, mut id, mut parent): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let (field, check) = count_attributes(9, |n| match n {
        1 | 2 | 4 => Some(Kind::Bytes),
        3 | 5 => Some(Kind::Str),
        6 | 10 | 12 | 14 => Some(Kind::Varint),
        7 | 8 => Some(Kind::Fixed64),
        9 => Some(Kind::Msg(key_value)),
        11 => Some(Kind::Msg(event)),
        13 => Some(Kind::Msg(link)),
        15 => Some(Kind::Msg(status)),
        16 => Some(Kind::Fixed32),
        _ => None,
    });
    walk(buf, depth, field, |n, b| match n {
        1 => trace = b,
        2 => id = b,
        _ => parent = b,
    })?;
    check()?;
    if valid_id(trace, 16) && valid_id(id, 8) && (parent.is_empty() || parent.len() == 8) {
        Ok(())
    } else {
        Err(Stop)
    }
}

/// Walks `outer` (repeated field 1 of a request) → resource-level messages → scope-level
/// messages → records, checking each level and counting the records.
fn scan_request(
    buf: &[u8],
    mut resource_level: impl FnMut(&[u8], u32, &mut usize) -> R<()>,
) -> R<usize> {
    let mut records = 0usize;
    let mut r = Reader::new(buf);
    while !r.at_end() {
        let (number, wire) = r.key()?;
        if number == 1 {
            if wire != WireType::Len {
                return Err(Stop);
            }
            resource_level(r.bytes()?, 1, &mut records)?;
        } else {
            r.skip(wire)?;
        }
    }
    Ok(records)
}

/// `ResourceSpans` / `ResourceLogs`: resource (1), scope-level messages (2), schema_url (3).
fn resource_level(
    buf: &[u8],
    depth: u32,
    records: &mut usize,
    mut scope_level: impl FnMut(&[u8], u32, &mut usize) -> R<()>,
) -> R<()> {
    let mut seen_resource = false;
    let mut r = Reader::new(buf);
    while !r.at_end() {
        let (number, wire) = r.key()?;
        match number {
            1 => {
                // A repeated `resource` merges into one (its attributes add up), which the
                // per-message attribute count would miss: the decode path handles it.
                if std::mem::replace(&mut seen_resource, true) {
                    return Err(Stop);
                }
                expect(wire, Kind::Bytes)?;
                resource(r.bytes()?, depth + 1)?;
            }
            2 => {
                expect(wire, Kind::Bytes)?;
                scope_level(r.bytes()?, depth + 1, records)?;
            }
            3 => {
                expect(wire, Kind::Str)?;
                let b = r.bytes()?;
                charge(b.len());
                std::str::from_utf8(b).map_err(|_| Stop)?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// `ScopeSpans` / `ScopeLogs`: scope (1), records (2), schema_url (3).
fn scope_level(
    buf: &[u8],
    depth: u32,
    records: &mut usize,
    record: fn(&[u8], u32) -> R<()>,
) -> R<()> {
    let mut seen_scope = false;
    let mut r = Reader::new(buf);
    while !r.at_end() {
        let (number, wire) = r.key()?;
        match number {
            1 => {
                if std::mem::replace(&mut seen_scope, true) {
                    return Err(Stop);
                }
                expect(wire, Kind::Bytes)?;
                scope(r.bytes()?, depth + 1)?;
            }
            2 => {
                expect(wire, Kind::Bytes)?;
                record(r.bytes()?, depth + 1)?;
                *records += 1;
            }
            3 => {
                expect(wire, Kind::Str)?;
                let b = r.bytes()?;
                charge(b.len());
                std::str::from_utf8(b).map_err(|_| Stop)?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

fn scope_spans(buf: &[u8], depth: u32, records: &mut usize) -> R<()> {
    charge_element::<ScopeSpans>();
    scope_level(buf, depth, records, span)
}

fn resource_spans(buf: &[u8], depth: u32, records: &mut usize) -> R<()> {
    charge_element::<ResourceSpans>();
    resource_level(buf, depth, records, scope_spans)
}

// ------------------------------------------------------------- logs

/// A log record, checked as `Payload::remove_invalid` checks it: trace id empty or 16 bytes,
/// span id empty or 8 bytes.
fn log_record(buf: &[u8], depth: u32) -> R<()> {
    charge_element::<LogRecord>();
    let (mut trace, mut id): (&[u8], &[u8]) = (&[], &[]);
    let (field, check) = count_attributes(6, |n| match n {
        1 | 11 => Some(Kind::Fixed64),
        2 | 7 => Some(Kind::Varint),
        3 | 12 => Some(Kind::Str),
        5 => Some(Kind::Msg(any_value)),
        6 => Some(Kind::Msg(key_value)),
        8 => Some(Kind::Fixed32),
        9 | 10 => Some(Kind::Bytes),
        _ => None,
    });
    walk(buf, depth, field, |n, b| {
        if n == 9 {
            trace = b;
        } else {
            id = b;
        }
    })?;
    check()?;
    if (trace.is_empty() || trace.len() == 16) && (id.is_empty() || id.len() == 8) {
        Ok(())
    } else {
        Err(Stop)
    }
}

fn scope_logs(buf: &[u8], depth: u32, records: &mut usize) -> R<()> {
    charge_element::<ScopeLogs>();
    scope_level(buf, depth, records, log_record)
}

fn resource_logs(buf: &[u8], depth: u32, records: &mut usize) -> R<()> {
    charge_element::<ResourceLogs>();
    resource_level(buf, depth, records, scope_logs)
}

/// The scope-level messages (`ScopeSpans` / `ScopeLogs`) of a request, in order, unchecked.
fn scope_level_messages(buf: &[u8]) -> R<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut r = Reader::new(buf);
    while !r.at_end() {
        let (number, wire) = r.key()?;
        if number != 1 || wire != WireType::Len {
            r.skip(wire)?;
            continue;
        }
        let mut rl = Reader::new(r.bytes()?);
        while !rl.at_end() {
            let (number, wire) = rl.key()?;
            if number == 2 && wire == WireType::Len {
                out.push(rl.bytes()?);
            } else {
                rl.skip(wire)?;
            }
        }
    }
    Ok(out)
}

/// The records (field 2) of a scope-level message, which is not checked otherwise.
fn count_records(buf: &[u8]) -> R<usize> {
    let mut n = 0;
    let mut r = Reader::new(buf);
    while !r.at_end() {
        let (number, wire) = r.key()?;
        n += usize::from(number == 2 && wire == WireType::Len);
        r.skip(wire)?;
    }
    Ok(n)
}

/// [`scan`] of a request a plugin returned for `original`, the bytes of the batch it was given
/// (which always decode: every batch's bytes passed [`scan`] or were decoded): a scope-level
/// message (`ScopeSpans` / `ScopeLogs`) byte for byte the same as `original`'s at the same
/// position is not checked again, only its records counted. A plugin that rewrites only
/// resources (`enrich` adding a resource attribute) so costs a comparison of the bytes it left
/// alone rather than a second scan of them.
///
/// `Valid(n)` still means that the request decodes with `n` records. It is [`scan`]'s verdict
/// whenever `original` scans valid under the same limits. Otherwise (`original` came through
/// the decode path, or a receiver's wider attribute limits) a reused message may hold what
/// [`scan`] would send to the decode path, a zero id or more attributes than the default
/// limit; the decode path of a plugin's output forwards its bytes as they are too, so what is
/// forwarded is the same either way.
pub fn scan_derived(signal: Signal, buf: &[u8], original: &[u8]) -> Scan {
    let scope_level: fn(&[u8], u32, &mut usize) -> R<()> = match signal {
        Signal::Traces => scope_spans,
        Signal::Logs => scope_logs,
        Signal::Metrics => return Scan::Decode,
    };
    let Ok(known) = scope_level_messages(original) else {
        return scan(signal, buf);
    };
    let mut next = 0;
    let mut reuse_or_scan = |m: &[u8], depth: u32, records: &mut usize| {
        let same = known.get(next).is_some_and(|k| *k == m);
        next += 1;
        if same {
            *records += count_records(m)?;
            Ok(())
        } else {
            scope_level(m, depth, records)
        }
    };
    match scan_request(buf, |b, depth, records| {
        resource_level(b, depth, records, &mut reuse_or_scan)
    }) {
        Ok(n) => Scan::Valid(n),
        Err(Stop) => Scan::Decode,
    }
}

/// [`scan_within`], and what the decoded form would take ([`super::cost::protobuf`]'s count,
/// made on the same walk). Meaningful for [`Scan::Valid`]; after [`Scan::Decode`] the walk
/// stopped early and the decode path counts with [`super::cost::protobuf`].
pub fn scan_costed(signal: Signal, buf: &[u8], limits: AttrLimits) -> (Scan, u64) {
    COST.with(|c| c.set(0));
    let verdict = scan_within(signal, buf, limits);
    (verdict, COST.with(Cell::get))
}

/// [`scan`] with attribute limits: a request beyond them answers [`Scan::Decode`].
pub fn scan_within(signal: Signal, buf: &[u8], limits: AttrLimits) -> Scan {
    LIMITS.with(|l| l.set(limits));
    let result = scan(signal, buf);
    LIMITS.with(|l| l.set(AttrLimits::default()));
    result
}

/// Checks a protobuf `Export{Trace,Logs}ServiceRequest`; metrics are not scanned (their
/// pipelines decode anyway, for the Prometheus exporter and the record count).
pub fn scan(signal: Signal, buf: &[u8]) -> Scan {
    let result = match signal {
        Signal::Traces => scan_request(buf, resource_spans),
        Signal::Logs => scan_request(buf, resource_logs),
        Signal::Metrics => return Scan::Decode,
    };
    match result {
        Ok(n) => Scan::Valid(n),
        Err(Stop) => Scan::Decode,
    }
}

#[cfg(test)]
mod tests;
