//! What decoding a request would cost, known before anything is decoded.
//!
//! A protobuf message of two bytes (a field key and a zero length) decodes into a whole prost
//! struct: an empty span is 2 bytes on the wire and about 300 in memory, an empty attribute 2
//! and about 70. A body within the size limit can so decode into a hundred times its size, and
//! a 15 KiB gzip body that inflates to millions of empty spans takes gigabytes. The receivers
//! therefore ask [`protobuf`] (or [`json`]) what the decoded form would take, walking the wire
//! format without allocating (with [`sluice_wire::Reader`], as the scan does), and refuse a
//! request whose decoded form exceeds [`EXPANSION`] times the bytes received, and hold a share
//! of a global in-flight budget (the receivers' in-flight budget) for the estimate while they
//! decode it.
//!
//! The estimate is an upper bound of what prost allocates: the size of every element of every
//! repeated message field, doubled for the capacity a growing `Vec` may hold, plus the bytes of
//! every string and byte field, plus packed numbers at their decoded width. A message nested
//! inline (`Option<T>`, a `oneof`) costs nothing of its own. Groups, which no OTLP client sends,
//! are skipped in unknown fields, as the decoder skips them. Malformed wire is refused before
//! it is decoded ([`Malformed`]).

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, SummaryDataPoint, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};

use sluice_wire::{self as wire, Reader, WireType};

use super::Signal;
use crate::prompb as rw;

/// How many times the bytes received the decoded form of a request may take. Real OTLP
/// traffic decodes to 2 to 10 times its protobuf size (a span of nothing but its ids 18 times,
/// counting the room a growing `Vec` may hold); empty records, the way to make a small
/// body decode into a large one, cost 40 to 150 times theirs.
pub const EXPANSION: u64 = 24;

/// Every request may decode into at least this much, so that small requests are never refused.
pub const FLOOR: u64 = 256 * 1024;

/// What a request would cost to decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Bytes of memory the decoded form takes, at most.
    pub bytes: u64,
    /// Records (spans, data points, log records) it holds.
    pub records: u64,
}

impl Cost {
    /// The most a request of `received` bytes may decode into.
    pub fn budget(received: usize) -> u64 {
        (received as u64).saturating_mul(EXPANSION).max(FLOOR)
    }

    pub fn add(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// The wire is not protobuf the decoder would accept, and why. Such a request is refused without
/// decoding it: the decoder reads a nested message's fields up to its parent's end, not its
/// own, and would build what lies past a field that overruns its message before it notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// prost's recursion limit.
const MAX_DEPTH: u32 = 100;

/// The messages of the three OTLP requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum M {
    TracesRequest,
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    Status,
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    MetricsRequest,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    /// Gauge, Sum, Histogram, ExponentialHistogram, Summary: field 1 is the points.
    Points(Point),
    NumberPoint,
    HistogramPoint,
    ExpHistogramPoint,
    Buckets,
    SummaryPoint,
    Quantile,
    Exemplar,
    Resource,
    Scope,
    EntityRef,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    // Prometheus remote-write 1.0.
    WriteRequest,
    TimeSeries,
    Label,
    Sample,
    PromExemplar,
    PromHistogram,
    BucketSpan,
    Metadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    Number,
    Histogram,
    Exponential,
    Summary,
}

/// What a field costs.
#[derive(Debug, Clone, Copy)]
enum F {
    /// Not allocated (a scalar, or an unknown field): skipped.
    Skip,
    /// A string or bytes: its length.
    Bytes,
    /// A repeated string: a `String` plus its length.
    Strings,
    /// A repeated number of this decoded width, packed or not.
    Numbers(u64),
    /// A message held inline (`Option<T>`, a `oneof` arm).
    Inline(M),
    /// An element of a repeated message field.
    Repeated(M),
}

fn size(m: M) -> u64 {
    (match m {
        M::ResourceSpans => size_of::<ResourceSpans>(),
        M::ScopeSpans => size_of::<ScopeSpans>(),
        M::Span => size_of::<Span>(),
        M::Event => size_of::<span::Event>(),
        M::Link => size_of::<span::Link>(),
        M::ResourceLogs => size_of::<ResourceLogs>(),
        M::ScopeLogs => size_of::<ScopeLogs>(),
        M::LogRecord => size_of::<LogRecord>(),
        M::ResourceMetrics => size_of::<ResourceMetrics>(),
        M::ScopeMetrics => size_of::<ScopeMetrics>(),
        M::Metric => size_of::<Metric>(),
        M::NumberPoint => size_of::<NumberDataPoint>(),
        M::HistogramPoint => size_of::<HistogramDataPoint>(),
        M::ExpHistogramPoint => size_of::<ExponentialHistogramDataPoint>(),
        M::SummaryPoint => size_of::<SummaryDataPoint>(),
        M::Quantile => size_of::<ValueAtQuantile>(),
        M::Exemplar => size_of::<Exemplar>(),
        M::EntityRef => size_of::<EntityRef>(),
        M::KeyValue => size_of::<KeyValue>(),
        M::AnyValue => size_of::<AnyValue>(),
        M::TimeSeries => size_of::<rw::TimeSeries>(),
        M::Label => size_of::<rw::Label>(),
        M::Sample => size_of::<rw::Sample>(),
        M::PromExemplar => size_of::<rw::Exemplar>(),
        M::PromHistogram => size_of::<rw::Histogram>(),
        M::BucketSpan => size_of::<rw::BucketSpan>(),
        M::Metadata => size_of::<rw::MetricMetadata>(),
        _ => 0,
    }) as u64
}

fn is_record(m: M) -> bool {
    matches!(
        m,
        M::Span
            | M::LogRecord
            | M::NumberPoint
            | M::HistogramPoint
            | M::ExpHistogramPoint
            | M::SummaryPoint
            | M::Sample
            | M::PromHistogram
    )
}

fn field(m: M, n: u32) -> F {
    use F::*;
    match (m, n) {
        (M::TracesRequest, 1) => Repeated(M::ResourceSpans),
        (M::LogsRequest, 1) => Repeated(M::ResourceLogs),
        (M::MetricsRequest, 1) => Repeated(M::ResourceMetrics),
        (M::ResourceSpans | M::ResourceLogs | M::ResourceMetrics, 1) => Inline(M::Resource),
        (M::ResourceSpans, 2) => Repeated(M::ScopeSpans),
        (M::ResourceLogs, 2) => Repeated(M::ScopeLogs),
        (M::ResourceMetrics, 2) => Repeated(M::ScopeMetrics),
        (M::ScopeSpans | M::ScopeLogs | M::ScopeMetrics, 1) => Inline(M::Scope),
        (M::ScopeSpans, 2) => Repeated(M::Span),
        (M::ScopeLogs, 2) => Repeated(M::LogRecord),
        (M::ScopeMetrics, 2) => Repeated(M::Metric),
        (
            M::ResourceSpans
            | M::ResourceLogs
            | M::ResourceMetrics
            | M::ScopeSpans
            | M::ScopeLogs
            | M::ScopeMetrics,
            3,
        ) => Bytes,
        (M::Span, 1..=5) => Bytes,
        (M::Span, 9) => Repeated(M::KeyValue),
        (M::Span, 11) => Repeated(M::Event),
        (M::Span, 13) => Repeated(M::Link),
        (M::Span, 15) => Inline(M::Status),
        (M::Event, 2) => Bytes,
        (M::Event, 3) => Repeated(M::KeyValue),
        (M::Link, 1..=3) => Bytes,
        (M::Link, 4) => Repeated(M::KeyValue),
        (M::Status, 2) => Bytes,
        (M::LogRecord, 3 | 9 | 10 | 12) => Bytes,
        (M::LogRecord, 5) => Inline(M::AnyValue),
        (M::LogRecord, 6) => Repeated(M::KeyValue),
        (M::Metric, 1..=3) => Bytes,
        (M::Metric, 5 | 7) => Inline(M::Points(Point::Number)),
        (M::Metric, 9) => Inline(M::Points(Point::Histogram)),
        (M::Metric, 10) => Inline(M::Points(Point::Exponential)),
        (M::Metric, 11) => Inline(M::Points(Point::Summary)),
        (M::Metric, 12) => Repeated(M::KeyValue),
        (M::Points(p), 1) => Repeated(match p {
            Point::Number => M::NumberPoint,
            Point::Histogram => M::HistogramPoint,
            Point::Exponential => M::ExpHistogramPoint,
            Point::Summary => M::SummaryPoint,
        }),
        (M::NumberPoint, 7) => Repeated(M::KeyValue),
        (M::NumberPoint, 5) => Repeated(M::Exemplar),
        (M::HistogramPoint, 9) => Repeated(M::KeyValue),
        (M::HistogramPoint, 6 | 7) => Numbers(8),
        (M::HistogramPoint, 8) => Repeated(M::Exemplar),
        (M::ExpHistogramPoint, 1) => Repeated(M::KeyValue),
        (M::ExpHistogramPoint, 8 | 9) => Inline(M::Buckets),
        (M::ExpHistogramPoint, 11) => Repeated(M::Exemplar),
        (M::Buckets, 2) => Numbers(8),
        (M::SummaryPoint, 7) => Repeated(M::KeyValue),
        (M::SummaryPoint, 6) => Repeated(M::Quantile),
        (M::Exemplar, 7) => Repeated(M::KeyValue),
        (M::Exemplar, 4 | 5) => Bytes,
        (M::Resource, 1) => Repeated(M::KeyValue),
        (M::Resource, 3) => Repeated(M::EntityRef),
        (M::Scope, 1 | 2) => Bytes,
        (M::Scope, 3) => Repeated(M::KeyValue),
        (M::EntityRef, 1 | 2) => Bytes,
        (M::EntityRef, 3 | 4) => Strings,
        (M::KeyValue, 1) => Bytes,
        (M::KeyValue, 2) => Inline(M::AnyValue),
        (M::AnyValue, 1 | 7) => Bytes,
        (M::AnyValue, 5) => Inline(M::ArrayValue),
        (M::AnyValue, 6) => Inline(M::KeyValueList),
        (M::ArrayValue, 1) => Repeated(M::AnyValue),
        (M::KeyValueList, 1) => Repeated(M::KeyValue),
        (M::WriteRequest, 1) => Repeated(M::TimeSeries),
        (M::WriteRequest, 3) => Repeated(M::Metadata),
        (M::TimeSeries, 1) => Repeated(M::Label),
        (M::TimeSeries, 2) => Repeated(M::Sample),
        (M::TimeSeries, 3) => Repeated(M::PromExemplar),
        (M::TimeSeries, 4) => Repeated(M::PromHistogram),
        (M::Label, 1 | 2) | (M::Metadata, 2 | 4 | 5) => Bytes,
        (M::PromExemplar, 1) => Repeated(M::Label),
        (M::PromHistogram, 8 | 11) => Repeated(M::BucketSpan),
        (M::PromHistogram, 9 | 10 | 12 | 13) => Numbers(8),
        _ => Skip,
    }
}

/// The cost of decoding a protobuf `Export*ServiceRequest` of `signal`. For malformed wire
/// (`Err`), the cost of what comes before the first fault: what the decoder may allocate
/// before it gives up.
pub fn protobuf(signal: Signal, buf: &[u8]) -> Result<Cost, (Malformed, Cost)> {
    let root = match signal {
        Signal::Traces => M::TracesRequest,
        Signal::Metrics => M::MetricsRequest,
        Signal::Logs => M::LogsRequest,
    };
    let mut cost = Cost::default();
    match walk(root, buf, 0, &mut cost) {
        Ok(()) => Ok(cost),
        Err(m) => Err((m, cost)),
    }
}

/// The cost of decoding a Prometheus remote-write `WriteRequest` (the samples are its records),
/// as [`protobuf`].
pub fn remote_write(buf: &[u8]) -> Result<Cost, (Malformed, Cost)> {
    let mut cost = Cost::default();
    match walk(M::WriteRequest, buf, 0, &mut cost) {
        Ok(()) => Ok(cost),
        Err(m) => Err((m, cost)),
    }
}

impl From<wire::Error> for Malformed {
    #[inline]
    fn from(e: wire::Error) -> Malformed {
        Malformed(match e {
            wire::Error::Varint => "invalid varint",
            wire::Error::Key(_) => "invalid key value",
            wire::Error::WireType(_) => "invalid wire type value",
            wire::Error::FieldZero => "invalid tag value: 0",
            wire::Error::Group => "unexpected end of a group",
            wire::Error::Truncated => "a field runs past the end of its message",
        })
    }
}

fn walk(m: M, buf: &[u8], depth: u32, cost: &mut Cost) -> Result<(), Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed("messages nested too deeply"));
    }
    let mut r = Reader::new(buf);
    while !r.at_end() {
        let (number, wire) = r.key()?;
        let payload = match wire {
            WireType::Len => Some(r.bytes()?),
            // The decoder skips a group it does not know (and refuses one where it expects
            // another type): walking past it keeps counting what it builds after.
            WireType::StartGroup => {
                skip_group(&mut r, number, depth + 1)?;
                None
            }
            scalar => {
                r.skip(scalar)?;
                None
            }
        };
        match (field(m, number), payload) {
            (F::Skip, _) => {}
            (F::Bytes, Some(b)) => cost.add(b.len() as u64),
            (F::Strings, Some(b)) => cost.add(2 * size_of::<String>() as u64 + b.len() as u64),
            // Packed: at most one number per byte; unpacked: one per occurrence.
            (F::Numbers(width), Some(b)) => cost.add(2 * width * b.len() as u64),
            (F::Numbers(width), None) => cost.add(2 * width),
            (F::Inline(inner), Some(b)) => walk(inner, b, depth + 1, cost)?,
            (F::Repeated(inner), Some(b)) => {
                cost.add(2 * size(inner));
                if is_record(inner) {
                    cost.records += 1;
                }
                walk(inner, b, depth + 1, cost)?;
            }
            // A message or string field with a scalar wire type: the decoder refuses it.
            (F::Bytes | F::Strings | F::Inline(_) | F::Repeated(_), _) => {
                return Err(Malformed(
                    "a message or string field with a scalar wire type",
                ));
            }
        }
    }
    Ok(())
}

/// Skips a group (proto2; absent from OTLP, but the decoder skips one in an unknown field) up
/// to its end tag, nested groups included, as the decoder does.
fn skip_group(r: &mut Reader<'_>, number: u32, depth: u32) -> Result<(), Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed("messages nested too deeply"));
    }
    loop {
        if r.at_end() {
            return Err(Malformed("a group without its end"));
        }
        let (n, wire) = r.key()?;
        match wire {
            WireType::EndGroup if n == number => return Ok(()),
            WireType::EndGroup => return Err(Malformed("a group ends with another's end")),
            WireType::StartGroup => skip_group(r, n, depth + 1)?,
            WireType::Len => {
                r.bytes()?;
            }
            scalar => r.skip(scalar)?,
        }
    }
}

/// The cost of decoding an OTLP/JSON body: every object may become a struct (the largest OTLP
/// struct is about 300 bytes, most are under 100; [`JSON_OBJECT`] is charged for each), every
/// string its bytes, every number in an array 8 bytes. Arrays of objects are charged through
/// their objects. Records are not counted (0).
pub fn json(buf: &[u8]) -> Cost {
    let mut cost = Cost::default();
    let mut in_string = false;
    let mut escaped = false;
    let mut string_len = 0u64;
    let mut depth_array = 0u32;
    for &b in buf {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                cost.add(string_len);
                string_len = 0;
                continue;
            }
            string_len += 1;
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => cost.add(JSON_OBJECT),
            b'[' => depth_array += 1,
            b']' => depth_array = depth_array.saturating_sub(1),
            b',' if depth_array > 0 => cost.add(16),
            _ => {}
        }
    }
    cost
}

/// What one JSON object is charged.
pub const JSON_OBJECT: u64 = 128;

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, metric, number_data_point};
    use prost::Message;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn realistic_traces(spans: usize) -> ExportTraceServiceRequest {
        let span = |i: usize| Span {
            trace_id: vec![1; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: format!("GET /api/orders/{i}"),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_100_000_000,
            attributes: (0..12)
                .map(|a| kv(&format!("attr.{a}"), "value-of-it"))
                .collect(),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans).map(span).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn real_traffic_is_well_within_the_budget_and_records_are_counted() {
        let bytes = realistic_traces(100).encode_to_vec();
        let cost = protobuf(Signal::Traces, &bytes).expect("valid");
        assert_eq!(cost.records, 100);
        let ratio = cost.bytes / bytes.len() as u64;
        assert!(ratio < EXPANSION / 2, "ratio {ratio}");
        // And it is an upper bound of what the decoded form takes.
        assert!(cost.bytes as usize > 100 * (size_of::<Span>() + 12 * size_of::<KeyValue>()));
    }

    #[test]
    fn the_scan_counts_what_the_walk_counts() {
        use crate::model::scan::{AttrLimits, Scan, scan_costed};
        use opentelemetry_proto::tonic::common::v1::{
            ArrayValue, InstrumentationScope, KeyValueList,
        };
        use opentelemetry_proto::tonic::resource::v1::Resource;
        let nested = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(any_value::Value::StringValue("a".into())),
                    },
                    AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: vec![kv("inner", "value")],
                        })),
                    },
                ],
            })),
        };
        let mut traces = realistic_traces(20);
        let rs = &mut traces.resource_spans[0];
        rs.schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
        rs.resource = Some(Resource {
            attributes: vec![kv("service.name", "checkout")],
            entity_refs: vec![EntityRef {
                r#type: "service".into(),
                id_keys: vec!["service.name".into(), "service.namespace".into()],
                ..Default::default()
            }],
            ..Default::default()
        });
        rs.scope_spans[0].scope = Some(InstrumentationScope {
            name: "lib".into(),
            version: "1.0".into(),
            attributes: vec![kv("scope.attr", "x")],
            ..Default::default()
        });
        for span in &mut rs.scope_spans[0].spans {
            span.attributes.push(KeyValue {
                key: "nested".into(),
                value: Some(nested.clone()),
                ..Default::default()
            });
            span.events.push(span::Event {
                name: "exception".into(),
                attributes: vec![kv("exception.type", "Timeout")],
                ..Default::default()
            });
            span.links.push(span::Link {
                trace_id: vec![3; 16],
                span_id: vec![4; 8],
                attributes: vec![kv("link", "yes")],
                ..Default::default()
            });
            span.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
                message: "deadline".into(),
                code: 2,
            });
        }
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: (0..20)
                        .map(|i| LogRecord {
                            time_unix_nano: 1 + i,
                            body: Some(nested.clone()),
                            attributes: vec![kv("k", "v")],
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        for (signal, bytes) in [
            (Signal::Traces, traces.encode_to_vec()),
            (Signal::Logs, logs.encode_to_vec()),
        ] {
            let walked = protobuf(signal, &bytes).expect("valid");
            let (verdict, scanned) = scan_costed(signal, &bytes, AttrLimits::default());
            assert_eq!(verdict, Scan::Valid(20), "{signal}");
            assert_eq!(scanned, walked.bytes, "{signal}");
        }
    }

    #[test]
    fn minimal_valid_records_fit_the_budget() {
        // A span with only its ids; a gauge point with only a time and a value; a log record
        // with a time and a short body.
        let spans = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (0..1000u64)
                        .map(|i| Span {
                            trace_id: vec![1; 16],
                            span_id: (i + 1).to_be_bytes().to_vec(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        let points = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: (0..1000)
                                .map(|i| NumberDataPoint {
                                    time_unix_nano: 1 + i,
                                    value: Some(number_data_point::Value::AsDouble(1.5)),
                                    ..Default::default()
                                })
                                .collect(),
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: (0..1000)
                        .map(|i| LogRecord {
                            time_unix_nano: 1 + i,
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("started".into())),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        for (signal, bytes) in [
            (Signal::Traces, spans),
            (Signal::Metrics, points),
            (Signal::Logs, logs),
        ] {
            let cost = protobuf(signal, &bytes).expect("valid");
            assert_eq!(cost.records, 1000, "{signal}");
            assert!(
                cost.bytes <= Cost::budget(bytes.len()).max(bytes.len() as u64 * EXPANSION),
                "{signal}: {} bytes decode to about {}",
                bytes.len(),
                cost.bytes
            );
        }
    }

    #[test]
    fn empty_records_cost_far_more_than_the_budget() {
        // `ScopeSpans { spans: [Span {}; n] }`: field 2, length 0, n times.
        for (signal, record_field_in_scope) in [(Signal::Traces, 0x12u8), (Signal::Logs, 0x12)] {
            let n = 100_000;
            let scope: Vec<u8> = [record_field_in_scope, 0].repeat(n);
            let mut resource = vec![0x12];
            push_len(&mut resource, scope.len());
            resource.extend_from_slice(&scope);
            let mut request = vec![0x0a];
            push_len(&mut request, resource.len());
            request.extend_from_slice(&resource);
            let cost = protobuf(signal, &request).expect("well-formed");
            assert_eq!(cost.records, n as u64);
            assert!(
                cost.bytes > 40 * request.len() as u64,
                "{signal}: {} for {}",
                cost.bytes,
                request.len()
            );
            assert!(cost.bytes > Cost::budget(request.len()));
        }
    }

    #[test]
    fn empty_attributes_and_packed_numbers_are_charged() {
        // A span with valid ids and 50k empty attributes.
        let mut span = vec![0x0a, 16];
        span.extend_from_slice(&[1; 16]);
        span.extend_from_slice(&[0x12, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        span.extend_from_slice(&[0x4a, 0].repeat(50_000));
        let cost = protobuf(Signal::Traces, &wrap(&[&span, &[]])).expect("well-formed");
        assert!(cost.bytes >= 50_000 * 2 * size_of::<KeyValue>() as u64);
        // Exponential histogram buckets: packed varints of one byte decode to 8 bytes each.
        let mut buckets = vec![0x12];
        push_len(&mut buckets, 10_000);
        buckets.extend_from_slice(&[1; 10_000]);
        let cost = walk_cost(M::Buckets, &buckets);
        assert!(cost >= 80_000, "{cost}");
    }

    #[test]
    fn malformed_wire_is_reported_not_walked_past() {
        let malformed = |b: &[u8]| protobuf(Signal::Traces, b).is_err();
        assert!(malformed(&[0x0a, 5, 1]));
        // A group start.
        assert!(malformed(&[0x0b]));
        // A message field sent as a varint.
        assert!(malformed(&[0x08, 1]));
        // Field 0 and a key beyond 32 bits: the decoder stops there, and so does the walk.
        for key in [&[0x00, 0x01][..], &[0x80, 0x80, 0x80, 0x80, 0x10, 0x01]] {
            assert!(malformed(key), "{key:?}");
            assert!(crate::model::Payload::decode_protobuf(Signal::Traces, key).is_err());
        }
        // What comes before the fault is charged.
        let mut late = [0x0a, 0].repeat(1000);
        late.push(0xff);
        let Err((Malformed(_), before)) = protobuf(Signal::Traces, &late) else {
            panic!("malformed")
        };
        assert_eq!(before.bytes, 1000 * 2 * size_of::<ResourceSpans>() as u64);
        // An unknown field is skipped.
        assert_eq!(protobuf(Signal::Traces, &[0x10, 1]), Ok(Cost::default()));
        // Nesting past the decoder's limit: arrays of arrays.
        let mut v: Vec<u8> = Vec::new();
        for _ in 0..200 {
            let mut array = vec![0x0a];
            push_len(&mut array, v.len());
            array.extend_from_slice(&v);
            let mut any = vec![0x2a];
            push_len(&mut any, array.len());
            any.extend_from_slice(&array);
            v = any;
        }
        assert_eq!(
            walk_cost_result(M::AnyValue, &v),
            Err(Malformed("messages nested too deeply"))
        );
    }

    #[test]
    fn json_objects_and_strings_are_charged() {
        let empty_spans = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            vec!["{}"; 10_000].join(",")
        );
        let cost = json(empty_spans.as_bytes());
        assert!(cost.bytes > Cost::budget(empty_spans.len()), "{cost:?}");
        let real = serde_json::to_vec(&realistic_traces(100)).expect("serializes");
        let cost = json(&real);
        assert!(cost.bytes < Cost::budget(real.len()), "{cost:?}");
        assert!(cost.bytes > real.len() as u64 / 2);
        // Braces inside strings are text.
        assert_eq!(json(br#""{{{{""#).bytes, 4);
    }

    fn push_len(out: &mut Vec<u8>, mut n: usize) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// A traces request of one resource, one scope, with the given spans.
    fn wrap(spans: &[&[u8]]) -> Vec<u8> {
        let mut scope = Vec::new();
        for s in spans.iter().filter(|s| !s.is_empty()) {
            scope.push(0x12);
            push_len(&mut scope, s.len());
            scope.extend_from_slice(s);
        }
        let mut resource = vec![0x12];
        push_len(&mut resource, scope.len());
        resource.extend_from_slice(&scope);
        let mut request = vec![0x0a];
        push_len(&mut request, resource.len());
        request.extend_from_slice(&resource);
        request
    }

    fn walk_cost_result(m: M, buf: &[u8]) -> Result<u64, Malformed> {
        let mut cost = Cost::default();
        walk(m, buf, 0, &mut cost).map(|()| cost.bytes)
    }

    fn walk_cost(m: M, buf: &[u8]) -> u64 {
        walk_cost_result(m, buf).expect("well-formed")
    }
}
