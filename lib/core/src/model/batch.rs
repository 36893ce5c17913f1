//! The unit of work: one OTLP export request of one signal.
//!
//! A [`Batch`] is built by a receiver from the request it decoded, travels through the pipeline's
//! queue and plugins, and is shared (behind an `Arc`) by every exporter of the pipeline. It keeps
//! the protobuf encoding of its payload beside the decoded form: when the receiver got protobuf
//! and nothing changed the batch, exporters forward the client's original bytes, so the
//! passthrough path decodes once and never re-encodes.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use serde::{Deserialize, Serialize};

/// The three OTLP signals. Each has its own pipelines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// What one record of this signal is called in messages and metrics.
    pub fn record_noun(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        }
    }

    /// The OTLP/HTTP path of this signal.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        }
    }

    /// The OTLP/gRPC method path of this signal's `Export` call.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }

    pub fn parse(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded OTLP export request.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

/// Why a request body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid OTLP protobuf {0}: {1}")]
    Protobuf(&'static str, #[source] prost::DecodeError),
    /// Refused before decoding: the wire format itself is broken ([`super::cost::Malformed`]).
    #[error("invalid {0}: {1}")]
    Wire(&'static str, &'static str),
    #[error("invalid OTLP JSON {0}: {1}")]
    Json(&'static str, #[source] serde_json::Error),
}

impl Payload {
    pub fn empty(signal: Signal) -> Payload {
        match signal {
            Signal::Traces => Payload::Traces(Default::default()),
            Signal::Metrics => Payload::Metrics(Default::default()),
            Signal::Logs => Payload::Logs(Default::default()),
        }
    }

    pub fn signal(&self) -> Signal {
        match self {
            Payload::Traces(_) => Signal::Traces,
            Payload::Metrics(_) => Signal::Metrics,
            Payload::Logs(_) => Signal::Logs,
        }
    }

    /// Decodes a protobuf `Export*ServiceRequest`.
    pub fn decode_protobuf(signal: Signal, bytes: &[u8]) -> Result<Payload, DecodeError> {
        let what = request_name(signal);
        let err = |e| DecodeError::Protobuf(what, e);
        Ok(match signal {
            Signal::Traces => Payload::Traces(Message::decode(bytes).map_err(err)?),
            Signal::Metrics => Payload::Metrics(Message::decode(bytes).map_err(err)?),
            Signal::Logs => Payload::Logs(Message::decode(bytes).map_err(err)?),
        })
    }

    /// Decodes an `Export*ServiceRequest` in the OTLP/JSON mapping (hex ids, lowerCamelCase
    /// field names, enums as integers, 64-bit integers as strings or numbers).
    pub fn decode_json(signal: Signal, bytes: &[u8]) -> Result<Payload, DecodeError> {
        let what = request_name(signal);
        let err = |e| DecodeError::Json(what, e);
        Ok(match signal {
            Signal::Traces => Payload::Traces(serde_json::from_slice(bytes).map_err(err)?),
            Signal::Metrics => Payload::Metrics(serde_json::from_slice(bytes).map_err(err)?),
            Signal::Logs => Payload::Logs(serde_json::from_slice(bytes).map_err(err)?),
        })
    }

    pub fn encode_protobuf(&self) -> Bytes {
        match self {
            Payload::Traces(r) => r.encode_to_vec().into(),
            Payload::Metrics(r) => r.encode_to_vec().into(),
            Payload::Logs(r) => r.encode_to_vec().into(),
        }
    }

    /// The length of [`Payload::encode_protobuf`]'s output, without encoding.
    pub fn encoded_len(&self) -> usize {
        match self {
            Payload::Traces(r) => r.encoded_len(),
            Payload::Metrics(r) => r.encoded_len(),
            Payload::Logs(r) => r.encoded_len(),
        }
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        match self {
            Payload::Traces(r) => serde_json::to_string(r),
            Payload::Metrics(r) => serde_json::to_string(r),
            Payload::Logs(r) => serde_json::to_string(r),
        }
    }

    /// Number of records: spans, metric data points or log records.
    pub fn record_count(&self) -> usize {
        match self {
            Payload::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum(),
            Payload::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(|m| data_point_count(m.data.as_ref()))
                .sum(),
            Payload::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum(),
        }
    }

    /// Removes the records a backend could not store (wrong-length or zero ids, metrics without
    /// a name or data) and says how many went and why, for OTLP `partial_success`.
    pub fn remove_invalid(&mut self) -> Rejected {
        let mut rejected = Rejected::default();
        match self {
            Payload::Traces(r) => {
                for ss in r
                    .resource_spans
                    .iter_mut()
                    .flat_map(|rs| &mut rs.scope_spans)
                {
                    ss.spans.retain(|span| {
                        let problem = if !valid_id(&span.trace_id, 16) {
                            Some("trace_id must be 16 bytes and not all zero")
                        } else if !valid_id(&span.span_id, 8) {
                            Some("span_id must be 8 bytes and not all zero")
                        } else if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8
                        {
                            Some("parent_span_id must be empty or 8 bytes")
                        } else {
                            None
                        };
                        rejected.note(problem, 1);
                        problem.is_none()
                    });
                }
            }
            Payload::Metrics(r) => {
                for sm in r
                    .resource_metrics
                    .iter_mut()
                    .flat_map(|rm| &mut rm.scope_metrics)
                {
                    sm.metrics.retain(|m| {
                        let problem = if m.name.is_empty() {
                            Some("metric name must not be empty")
                        } else if m.data.is_none() {
                            Some("metric has no data (gauge, sum, histogram, ...)")
                        } else {
                            None
                        };
                        rejected.note(problem, data_point_count(m.data.as_ref()).max(1));
                        problem.is_none()
                    });
                }
            }
            Payload::Logs(r) => {
                for sl in r.resource_logs.iter_mut().flat_map(|rl| &mut rl.scope_logs) {
                    sl.log_records.retain(|log| {
                        let problem = if !log.trace_id.is_empty() && log.trace_id.len() != 16 {
                            Some("trace_id must be empty or 16 bytes")
                        } else if !log.span_id.is_empty() && log.span_id.len() != 8 {
                            Some("span_id must be empty or 8 bytes")
                        } else {
                            None
                        };
                        rejected.note(problem, 1);
                        problem.is_none()
                    });
                }
            }
        }
        rejected
    }
}

impl Payload {
    /// Keeps only the records at `indices` (document order across resources and scopes, as
    /// plugins count them) and removes scopes and resources left empty. Indices out of range
    /// are ignored.
    pub fn retain_records(&mut self, indices: &[u32]) {
        let mut keep: Vec<u32> = indices.to_vec();
        keep.sort_unstable();
        keep.dedup();
        let mut next = 0usize; // position in `keep`
        let mut i = 0u32; // record index
        let mut wanted = |n: &mut u32| {
            let here = *n;
            *n += 1;
            while next < keep.len() && keep[next] < here {
                next += 1;
            }
            next < keep.len() && keep[next] == here
        };
        match self {
            Payload::Traces(r) => {
                for rs in &mut r.resource_spans {
                    for ss in &mut rs.scope_spans {
                        ss.spans.retain(|_| wanted(&mut i));
                    }
                    rs.scope_spans.retain(|ss| !ss.spans.is_empty());
                }
                r.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
            }
            Payload::Logs(r) => {
                for rl in &mut r.resource_logs {
                    for sl in &mut rl.scope_logs {
                        sl.log_records.retain(|_| wanted(&mut i));
                    }
                    rl.scope_logs.retain(|sl| !sl.log_records.is_empty());
                }
                r.resource_logs.retain(|rl| !rl.scope_logs.is_empty());
            }
            Payload::Metrics(r) => {
                for rm in &mut r.resource_metrics {
                    for sm in &mut rm.scope_metrics {
                        for m in &mut sm.metrics {
                            match &mut m.data {
                                Some(Data::Gauge(g)) => g.data_points.retain(|_| wanted(&mut i)),
                                Some(Data::Sum(s)) => s.data_points.retain(|_| wanted(&mut i)),
                                Some(Data::Histogram(h)) => {
                                    h.data_points.retain(|_| wanted(&mut i))
                                }
                                Some(Data::ExponentialHistogram(h)) => {
                                    h.data_points.retain(|_| wanted(&mut i))
                                }
                                Some(Data::Summary(s)) => s.data_points.retain(|_| wanted(&mut i)),
                                None => {}
                            }
                        }
                        sm.metrics.retain(|m| data_point_count(m.data.as_ref()) > 0);
                    }
                    rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
                }
                r.resource_metrics.retain(|rm| !rm.scope_metrics.is_empty());
            }
        }
    }
}

pub fn request_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "ExportTraceServiceRequest",
        Signal::Metrics => "ExportMetricsServiceRequest",
        Signal::Logs => "ExportLogsServiceRequest",
    }
}

fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

fn data_point_count(data: Option<&Data>) -> usize {
    match data {
        None => 0,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
    }
}

/// Records removed by [`Payload::remove_invalid`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub count: usize,
    /// The first problem found, for the `partial_success.error_message`.
    pub message: Option<&'static str>,
}

impl Rejected {
    fn note(&mut self, problem: Option<&'static str>, records: usize) {
        if let Some(p) = problem {
            self.count += records;
            self.message.get_or_insert(p);
        }
    }
}

/// One export request in flight through a pipeline.
#[derive(Debug)]
pub struct Batch {
    /// Unique within the process; lets an exporter recognise a retry of the same batch.
    pub id: u64,
    signal: Signal,
    /// The decoded form, kept or decoded again on demand: a batch that arrived as valid
    /// protobuf keeps only its bytes while it waits in queues (several times less memory), and
    /// the consumers that need the decoded form (plugins' verdicts, debug and Prometheus
    /// exporters) decode it once.
    payload: OnceLock<Payload>,
    records: usize,
    encoded: OnceLock<Bytes>,
    pub received_at: Instant,
    pub correlation_id: Arc<str>,
    /// The batch's span in the gateway's own traces (disabled unless they are exported); it
    /// ends when the last exporter is done with the batch.
    pub span: tracing::Span,
    /// The processor that emitted this batch (derived telemetry), which it must not see again.
    pub origin: Option<Arc<str>>,
    /// The tenant the client authenticated as (receiver `auth`), if any.
    pub tenant: Option<Arc<str>>,
}

impl Batch {
    /// `original` is the protobuf the payload was decoded from, if it still describes the payload
    /// exactly; exporters then forward it as is.
    pub fn new(payload: Payload, original: Option<Bytes>, correlation_id: Arc<str>) -> Batch {
        let records = payload.record_count();
        let signal = payload.signal();
        let encoded = OnceLock::new();
        if let Some(bytes) = original {
            let _ = encoded.set(bytes);
        }
        Batch::build(
            signal,
            OnceLock::from(payload),
            records,
            encoded,
            correlation_id,
        )
    }

    /// A batch known by its protobuf only, which [`super::scan::scan`] (or
    /// [`super::scan::scan_derived`]) found valid with `records` records: it is decoded only if
    /// a consumer asks for the decoded form.
    pub fn from_wire(
        signal: Signal,
        bytes: Bytes,
        records: usize,
        correlation_id: Arc<str>,
    ) -> Batch {
        Batch::build(
            signal,
            OnceLock::new(),
            records,
            OnceLock::from(bytes),
            correlation_id,
        )
    }

    fn build(
        payload_signal: Signal,
        payload: OnceLock<Payload>,
        records: usize,
        encoded: OnceLock<Bytes>,
        correlation_id: Arc<str>,
    ) -> Batch {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Batch {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            signal: payload_signal,
            payload,
            records,
            encoded,
            received_at: Instant::now(),
            span: tracing::debug_span!("batch", signal = %payload_signal, records, correlation_id = %correlation_id),
            correlation_id,
            origin: None,
            tenant: None,
        }
    }

    /// A batch that replaces this one after a processor: same identity for correlation and
    /// tracing, new content. `original` is the exact protobuf of `payload`, if known.
    pub fn derive(&self, payload: Payload, original: Option<Bytes>) -> Batch {
        let mut b = Batch::new(payload, original, self.correlation_id.clone());
        b.span = self.span.clone();
        b.origin = self.origin.clone();
        b.tenant = self.tenant.clone();
        b.received_at = self.received_at;
        b
    }

    /// As [`Batch::derive`], for protobuf that [`super::scan::scan`] (or
    /// [`super::scan::scan_derived`]) found valid with `records` records: it is not decoded.
    pub fn derive_wire(&self, bytes: Bytes, records: usize) -> Batch {
        let mut b = Batch::from_wire(self.signal, bytes, records, self.correlation_id.clone());
        b.span = self.span.clone();
        b.origin = self.origin.clone();
        b.tenant = self.tenant.clone();
        b.received_at = self.received_at;
        b
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Drops the decoded form when the bytes describe the batch exactly; see `payload`.
    pub fn compact(mut self) -> Batch {
        if self.encoded.get().is_some() {
            self.payload = OnceLock::new();
        }
        self
    }

    pub fn payload(&self) -> &Payload {
        self.payload.get_or_init(|| {
            let bytes = self.encoded.get().map(|b| b.as_ref()).unwrap_or_default();
            Payload::decode_protobuf(self.signal, bytes).unwrap_or_else(|e| {
                // The bytes were decoded, or scanned as valid, on arrival; this cannot happen.
                tracing::error!(error = %e, "A batch's protobuf no longer decodes.");
                Payload::empty(self.signal)
            })
        })
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// The size queues count the batch at: its protobuf bytes, measured without encoding
    /// them when they are not known.
    pub fn size_bytes(&self) -> usize {
        match self.encoded.get() {
            Some(bytes) => bytes.len(),
            None => self.payload().encoded_len(),
        }
    }

    /// The protobuf encoding, computed at most once and shared by all exporters.
    pub fn encoded(&self) -> &Bytes {
        self.encoded
            .get_or_init(|| self.payload().encode_protobuf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn span(trace: Vec<u8>, id: Vec<u8>) -> Span {
        Span {
            trace_id: trace,
            span_id: id,
            name: "op".into(),
            ..Default::default()
        }
    }

    fn traces(spans: Vec<Span>) -> Payload {
        Payload::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[test]
    fn json_mapping_uses_hex_ids_and_camel_case() {
        let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeSpans":[{"scope":{"name":"lib"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
            "spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,"startTimeUnixNano":"1544712660000000000",
            "endTimeUnixNano":1544712661000000000,
            "attributes":[{"key":"n","value":{"intValue":"42"}}]}]}]}]}"#;
        let payload = Payload::decode_json(Signal::Traces, json).expect("valid OTLP/JSON");
        let Payload::Traces(req) = &payload else {
            panic!("wrong signal")
        };
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            span.trace_id,
            vec![
                0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
                0xc6, 0x0c
            ]
        );
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(payload.record_count(), 1);
        let back = payload.to_json().expect("encodes");
        assert!(back.contains("\"traceId\":\"5b8efff798038103d269b633813fc60c\""));
        assert!(back.contains("\"scopeSpans\""));
    }

    #[test]
    fn protobuf_round_trip_and_error_names_the_message() {
        let payload = traces(vec![span(vec![1; 16], vec![2; 8])]);
        let bytes = payload.encode_protobuf();
        assert_eq!(
            Payload::decode_protobuf(Signal::Traces, &bytes).expect("decodes"),
            payload
        );
        let err = Payload::decode_protobuf(Signal::Traces, b"\xff\xff\xff").expect_err("garbage");
        assert!(
            err.to_string().contains("ExportTraceServiceRequest"),
            "{err}"
        );
    }

    #[test]
    fn invalid_spans_are_removed_and_counted() {
        let mut payload = traces(vec![
            span(vec![1; 16], vec![2; 8]),
            span(vec![0; 16], vec![2; 8]),
            span(vec![1; 15], vec![2; 8]),
            span(vec![1; 16], vec![]),
        ]);
        let rejected = payload.remove_invalid();
        assert_eq!(rejected.count, 3);
        assert_eq!(
            rejected.message,
            Some("trace_id must be 16 bytes and not all zero")
        );
        assert_eq!(payload.record_count(), 1);
    }

    #[test]
    fn retain_records_keeps_indices_across_resources_and_prunes_empties() {
        let mut payload = Payload::Traces(ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(vec![1; 16], vec![1; 8]), span(vec![1; 16], vec![2; 8])],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(vec![1; 16], vec![3; 8])],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        });
        payload.retain_records(&[2, 0, 9]);
        let Payload::Traces(r) = &payload else {
            panic!("traces")
        };
        let ids: Vec<u8> = r
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.span_id[0])
            .collect();
        assert_eq!(ids, vec![1, 3]);
        payload.retain_records(&[]);
        assert_eq!(payload.record_count(), 0);
        let Payload::Traces(r) = &payload else {
            panic!("traces")
        };
        assert!(r.resource_spans.is_empty());
    }

    #[test]
    fn batch_forwards_original_bytes() {
        let payload = traces(vec![span(vec![1; 16], vec![2; 8])]);
        let original = Bytes::from_static(b"original");
        let batch = Batch::new(payload.clone(), Some(original.clone()), "c".into());
        assert_eq!(batch.encoded(), &original);
        let batch = Batch::new(payload.clone(), None, "c".into());
        assert_eq!(batch.encoded(), &payload.encode_protobuf());
        // Compacted: only the bytes are kept; the payload decodes again on demand.
        let compact =
            Batch::new(payload.clone(), Some(payload.encode_protobuf()), "c".into()).compact();
        assert_eq!(compact.payload(), &payload);
        assert_eq!(compact.records(), 1);
        assert_eq!(batch.records(), 1);
    }
}
