//! Receivers: OTLP over gRPC and HTTP in, batches into pipelines out.
//!
//! Both transports decode the request, remove records a backend could not store (answered as
//! OTLP `partial_success`), and hand one [`Batch`] to each pipeline that lists the receiver
//! ([`Intake::accept`]). Every way a request can fail is a [`ReceiverError`], mapped to an HTTP
//! status and a gRPC code in one place.

pub mod body;
mod error;
pub mod in_flight;
pub mod otlp;
pub mod prometheus;
pub mod remote_write;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;

pub use error::ReceiverError;
pub use in_flight::{InFlight, Reservation};

pub mod auth;
pub use auth::Tenant;

use crate::inlet::{ACK_TIMEOUT, ADMISSION_WAIT, PipelineHandle, Refusal, Rejection};
use crate::model::cost::{self, Cost};
use crate::model::scan::{self, AttrLimits, Scan};
use crate::model::{Batch, Payload, Rejected, Signal};
use crate::telemetry::metrics::SelfMetrics;

/// A listener a receiver asks for; the gateway binds it and serves the router.
pub struct Listener {
    pub endpoint: String,
    /// `grpc` or `http`, for the status API.
    pub transport: &'static str,
    /// What listens, for messages and the `listener` label.
    pub what: String,
    pub tls: Option<crate::config::TlsServerConfig>,
    pub max_connections: usize,
    pub router: axum::Router,
}

/// How a request reached us, for metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
    /// Pulled by the `prometheus` receiver.
    Scrape,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
            Transport::Scrape => "scrape",
        }
    }
}

/// One receiver's entry into the pipelines that list it.
#[derive(Clone)]
pub struct Intake {
    pub receiver: Arc<str>,
    traces: Vec<PipelineHandle>,
    metrics: Vec<PipelineHandle>,
    logs: Vec<PipelineHandle>,
    pub self_metrics: Arc<SelfMetrics>,
    memory: Option<Arc<crate::limiter::MemoryLimiter>>,
    /// Per-tenant limits of the receiver's `auth`, by tenant.
    tenants: auth::TenantLimits,
    attr_limits: AttrLimits,
    /// The decode budget all receivers share.
    in_flight: Arc<InFlight>,
}

impl Intake {
    pub fn new(receiver: &str, pipelines: Vec<PipelineHandle>, m: Arc<SelfMetrics>) -> Intake {
        let of = |s: Signal| {
            pipelines
                .iter()
                .filter(|p| p.signal == s)
                .cloned()
                .collect()
        };
        let in_flight = InFlight::shared();
        in_flight.report_to(&m);
        Intake {
            receiver: receiver.into(),
            traces: of(Signal::Traces),
            metrics: of(Signal::Metrics),
            logs: of(Signal::Logs),
            self_metrics: m,
            memory: None,
            tenants: Default::default(),
            attr_limits: AttrLimits::default(),
            in_flight,
        }
    }

    /// Decodes under this in-flight budget instead of the process-wide one.
    pub fn with_in_flight(mut self, in_flight: Arc<InFlight>) -> Intake {
        in_flight.report_to(&self.self_metrics);
        self.in_flight = in_flight;
        self
    }

    /// Admits a request of `received` bytes whose decoded form would cost `cost` to decoding:
    /// refused when that is more than the request's own budget ([`Cost::budget`]) or more
    /// than the in-flight budget has room for (after a short wait). The reservation is held
    /// until the request is answered.
    pub async fn reserve_decode(
        &self,
        transport: Transport,
        signal: Signal,
        cost: Cost,
        received: usize,
    ) -> Result<Reservation, ReceiverError> {
        let refuse = |e: ReceiverError, reason: &str| {
            if cost.records > 0 {
                self.self_metrics
                    .receiver_refused
                    .with_label_values(&[
                        &*self.receiver,
                        transport.as_str(),
                        signal.as_str(),
                        reason,
                    ])
                    .inc_by(cost.records);
            }
            Err(e)
        };
        if cost.bytes > Cost::budget(received) {
            return refuse(
                ReceiverError::Expansion {
                    cost: cost.bytes,
                    received,
                },
                "decode_budget",
            );
        }
        let bytes = cost.bytes.max(received as u64);
        match self.in_flight.reserve(bytes, in_flight::WAIT).await {
            Ok(r) => Ok(r),
            Err(e) => refuse(e, "in_flight_budget"),
        }
    }

    /// The in-flight budget, for receivers that pull data (a scrape reserves as its body
    /// arrives).
    pub fn in_flight(&self) -> Arc<InFlight> {
        self.in_flight.clone()
    }

    /// Applies these attribute limits (the defaults otherwise).
    pub fn with_attribute_limits(mut self, limits: AttrLimits) -> Intake {
        self.attr_limits = limits;
        self
    }

    /// Applies the tenants' records-per-second limits.
    pub fn with_tenants(mut self, tenants: auth::TenantLimits) -> Intake {
        self.tenants = tenants;
        self
    }

    /// Counts a refusal by a tenant's limit.
    pub fn count_tenant_limited(&self, e: &ReceiverError) {
        if let ReceiverError::TenantLimited { tenant, limit, .. } = e {
            self.self_metrics
                .tenant_limited
                .with_label_values(&[&*self.receiver, &**tenant, limit])
                .inc();
        }
    }

    /// Refuse new data while the memory limiter is above its soft limit.
    pub fn limited(mut self, memory: Option<Arc<crate::limiter::MemoryLimiter>>) -> Intake {
        self.memory = memory;
        self
    }

    /// Counts a request that failed before its records were counted, by reason.
    pub fn count_bad_request(&self, transport: Transport, e: &ReceiverError) {
        if let Some(reason) = e.bad_request_reason() {
            self.self_metrics
                .receiver_bad_requests
                .with_label_values(&[&self.receiver, transport.as_str(), reason])
                .inc();
            tracing::debug!(error = %e, "Refused a bad request.");
        }
    }

    /// Counts an answered request by status, and its duration.
    pub fn count_request(
        &self,
        transport: Transport,
        signal: Signal,
        status: &str,
        started: std::time::Instant,
    ) {
        let labels = [&*self.receiver, transport.as_str(), signal.as_str()];
        self.self_metrics
            .receiver_requests
            .with_label_values(&[labels[0], labels[1], labels[2], status])
            .inc();
        self.self_metrics
            .receiver_request_duration
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    fn pipelines(&self, signal: Signal) -> &[PipelineHandle] {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    /// Hands a decoded request to the pipelines. `original` is the protobuf it came from, if
    /// any. Returns the records removed as invalid. For pipelines with processors it answers
    /// once they are done, so a processor's rejection reaches the client.
    pub async fn accept(
        &self,
        transport: Transport,
        mut payload: Payload,
        original: Option<Bytes>,
        correlation_id: Arc<str>,
        tenant: Option<Arc<str>>,
    ) -> Result<Rejected, ReceiverError> {
        let signal = payload.signal();
        if self.pipelines(signal).is_empty() {
            return Err(ReceiverError::NoPipeline {
                receiver: self.receiver.to_string(),
                signal,
            });
        }
        let rejected = payload.remove_invalid();
        let limited = payload.enforce_limits(&self.attr_limits);
        if limited.any() {
            for (action, n) in [
                ("dropped", limited.dropped),
                ("truncated", limited.truncated),
            ] {
                if n > 0 {
                    self.self_metrics
                        .receiver_attributes_limited
                        .with_label_values(&[&*self.receiver, signal.as_str(), action])
                        .inc_by(n);
                }
            }
            tracing::debug!(receiver = %self.receiver, dropped = limited.dropped, truncated = limited.truncated, "Attribute limits applied.");
        }
        let original = if rejected.count > 0 || limited.any() {
            None
        } else {
            original
        };
        let mut batch = Batch::new(payload, original, correlation_id);
        batch.tenant = tenant;
        self.accept_batch(transport, batch, rejected).await
    }

    /// Accepts protobuf that [`scan`] found valid: without decoding it. Anything the scan
    /// does not vouch for takes the full decode path ([`Intake::accept`]), which gives the
    /// precise error or `partial_success`.
    pub async fn accept_protobuf(
        &self,
        transport: Transport,
        signal: Signal,
        bytes: Bytes,
        correlation_id: Arc<str>,
        tenant: Option<Arc<str>>,
    ) -> Result<Rejected, ReceiverError> {
        if self.pipelines(signal).is_empty() {
            return Err(ReceiverError::NoPipeline {
                receiver: self.receiver.to_string(),
                signal,
            });
        }
        // The scan checks the request and, on the same walk, adds up what its decoded form
        // would take. A request it vouches for is forwarded as it came; anything else is
        // walked again by `cost::protobuf` and then decoded, unless the walk finds the wire
        // broken: that is refused undecoded, since the decoder would build what lies past a
        // field that overruns its message before noticing. Either way the cost is known and
        // reserved before anything is built.
        let size = bytes.len();
        let limits = self.attr_limits;
        let wire = bytes.clone();
        let (verdict, scanned) =
            offload(size, move || scan::scan_costed(signal, &wire, limits)).await?;
        match verdict {
            Scan::Valid(records) => {
                let cost = Cost {
                    bytes: scanned,
                    records: records as u64,
                };
                let _reservation = self.reserve_decode(transport, signal, cost, size).await?;
                let mut batch = Batch::from_wire(signal, bytes, records, correlation_id);
                batch.tenant = tenant;
                self.accept_batch(transport, batch, Rejected::default())
                    .await
            }
            Scan::Decode => {
                let wire = bytes.clone();
                let cost = offload(size, move || cost::protobuf(signal, &wire))
                    .await?
                    .map_err(|(broken, _)| {
                        ReceiverError::Malformed(crate::model::DecodeError::Wire(
                            crate::model::request_name(signal),
                            broken.0,
                        ))
                    })?;
                let _reservation = self.reserve_decode(transport, signal, cost, size).await?;
                let wire = bytes.clone();
                let payload =
                    offload(size, move || Payload::decode_protobuf(signal, &wire)).await??;
                self.accept(transport, payload, Some(bytes), correlation_id, tenant)
                    .await
            }
        }
    }

    async fn accept_batch(
        &self,
        transport: Transport,
        batch: Batch,
        rejected: Rejected,
    ) -> Result<Rejected, ReceiverError> {
        let signal = batch.signal();
        let pipelines = self.pipelines(signal);
        let labels = [&*self.receiver, transport.as_str(), signal.as_str()];
        let records = batch.records();
        let m = &self.self_metrics;
        m.receiver_received
            .with_label_values(&labels)
            .inc_by((records + rejected.count) as u64);
        if rejected.count > 0 {
            m.receiver_refused
                .with_label_values(&[labels[0], labels[1], labels[2], "invalid"])
                .inc_by(rejected.count as u64);
        }
        if records == 0 {
            return Ok(rejected);
        }
        let refuse = |refusal: Refusal, pipeline: &str| {
            m.receiver_refused
                .with_label_values(&[labels[0], labels[1], labels[2], refusal.reason()])
                .inc_by(records as u64);
            Err(ReceiverError::Refused {
                refusal,
                signal,
                pipeline: pipeline.to_string(),
            })
        };
        if self.memory.as_ref().is_some_and(|m| m.refusing()) {
            return refuse(Refusal::MemoryLimit, &pipelines[0].name);
        }
        if let Some(tenant) = &batch.tenant
            && let Some(limiter) = self.tenants.get(tenant)
            && let Err(e) = limiter.take_records(tenant, records)
        {
            self.count_tenant_limited(&e);
            m.receiver_refused
                .with_label_values(&[labels[0], labels[1], labels[2], "tenant_limit"])
                .inc_by(records as u64);
            return Err(e);
        }
        let tenant = batch.tenant.clone();
        // A place in every pipeline first, so that either all of them take the batch or none
        // does. While one is full, the places in the others are given back (a stalled
        // pipeline must not fill its siblings' queues with held places), and the request waits
        // for that one, within one ADMISSION_WAIT in all.
        let deadline = tokio::time::Instant::now() + ADMISSION_WAIT;
        let size = batch.size_bytes();
        let admissions = 'admit: loop {
            let mut held = Vec::with_capacity(pipelines.len());
            let mut full = None;
            for p in pipelines.iter() {
                match p.admit(size, Duration::ZERO).await {
                    Ok(admission) => held.push(admission),
                    Err(Refusal::QueueFull) => {
                        full = Some(p);
                        break;
                    }
                    Err(refusal) => return refuse(refusal, &p.name),
                }
            }
            let Some(p) = full else { break 'admit held };
            drop(held);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return refuse(Refusal::QueueFull, &p.name);
            }
            match p.admit(size, left).await {
                Ok(admission) if pipelines.len() == 1 => break 'admit vec![admission],
                Ok(_) => continue,
                Err(refusal) => return refuse(refusal, &p.name),
            }
        };
        let batch = Arc::new(batch.compact());
        let acks: Vec<_> = pipelines
            .iter()
            .zip(admissions)
            .filter_map(|(p, admission)| p.submit(admission, batch.clone()))
            .collect();
        for ack in acks {
            match tokio::time::timeout(ACK_TIMEOUT, ack).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(Rejection::Storage(message)))) => {
                    tracing::warn!(signal = %signal, records, error = %message, "Refusing a batch the disk queue cannot take.");
                    return refuse(Refusal::StorageFull, &pipelines[0].name);
                }
                Ok(Ok(Err(Rejection::QueueFull))) => {
                    return refuse(Refusal::QueueFull, &pipelines[0].name);
                }
                Ok(Ok(Err(Rejection::Processor(message)))) => {
                    m.receiver_refused
                        .with_label_values(&[
                            labels[0],
                            labels[1],
                            labels[2],
                            "rejected_by_processor",
                        ])
                        .inc_by(records as u64);
                    return Err(ReceiverError::RejectedByProcessor(message));
                }
                // The pipeline stopped (shutdown) or its processors took too long: the client
                // retries; at worst the data arrives twice.
                Ok(Err(_)) => return refuse(Refusal::ShuttingDown, &pipelines[0].name),
                Err(_) => return refuse(Refusal::QueueFull, &pipelines[0].name),
            }
        }
        m.receiver_accepted
            .with_label_values(&labels)
            .inc_by(records as u64);
        if let Some(tenant) = tenant {
            m.tenant_accepted
                .with_label_values(&[labels[0], &tenant])
                .inc_by(records as u64);
        }
        Ok(rejected)
    }
}

/// Inputs of at least this many bytes are decompressed, walked and decoded on the blocking
/// pool: a few large requests then cannot occupy every runtime worker (and so delay the
/// health endpoints and every other request), while small ones skip the thread hand-off.
pub const OFFLOAD_BYTES: usize = 64 * 1024;

/// Runs `work` on the blocking pool when `size` is at least [`OFFLOAD_BYTES`], else here.
/// A panic in it resumes here, where the listener's panic guard answers it.
pub async fn offload<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ReceiverError> {
    if size < OFFLOAD_BYTES {
        return Ok(work());
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(ReceiverError::Refused {
            refusal: Refusal::ShuttingDown,
            signal: Signal::Traces,
            pipeline: String::new(),
        }),
    }
}

/// The `Export*ServiceResponse` for a request, with `partial_success` when records were
/// removed as invalid.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportResponse {
    Traces(ExportTraceServiceResponse),
    Metrics(ExportMetricsServiceResponse),
    Logs(ExportLogsServiceResponse),
}

impl ExportResponse {
    pub fn new(signal: Signal, rejected: &Rejected) -> ExportResponse {
        let partial = rejected.count > 0;
        let message = rejected.message.unwrap_or_default().to_string();
        let count = rejected.count as i64;
        match signal {
            Signal::Traces => ExportResponse::Traces(ExportTraceServiceResponse {
                partial_success: partial.then_some(ExportTracePartialSuccess {
                    rejected_spans: count,
                    error_message: message,
                }),
            }),
            Signal::Metrics => ExportResponse::Metrics(ExportMetricsServiceResponse {
                partial_success: partial.then_some(ExportMetricsPartialSuccess {
                    rejected_data_points: count,
                    error_message: message,
                }),
            }),
            Signal::Logs => ExportResponse::Logs(ExportLogsServiceResponse {
                partial_success: partial.then_some(ExportLogsPartialSuccess {
                    rejected_log_records: count,
                    error_message: message,
                }),
            }),
        }
    }

    pub fn to_protobuf(&self) -> Vec<u8> {
        match self {
            ExportResponse::Traces(r) => r.encode_to_vec(),
            ExportResponse::Metrics(r) => r.encode_to_vec(),
            ExportResponse::Logs(r) => r.encode_to_vec(),
        }
    }

    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        match self {
            ExportResponse::Traces(r) => serde_json::to_vec(r),
            ExportResponse::Metrics(r) => serde_json::to_vec(r),
            ExportResponse::Logs(r) => serde_json::to_vec(r),
        }
    }
}
