//! `servicegraph`: a service graph from spans.
//!
//! A client span and the server span it called (the server span's parent is the client span;
//! likewise a producer and its consumer) make one request on the edge from the client's
//! service to the server's. The halves may come in any order and in different batches: each
//! waits up to `store.ttl` for the other, at most `store.max_items` at once. Every
//! `metrics_flush_interval` the plugin emits, with the names of the OpenTelemetry Collector's
//! servicegraph connector (and Tempo's), which Grafana's service graph reads:
//! `traces_service_graph_request_total`, `traces_service_graph_request_failed_total`,
//! `traces_service_graph_request_server_seconds` and `traces_service_graph_request_client_seconds`
//! (histograms), labelled `client`, `server` and `connection_type`.
//!
//! Peers without spans of their own become virtual nodes: a database a client span names
//! (`db.name`, else `db.system`) at once (`connection_type="database"`), a peer a client span
//! names (`peer.service`, `server.address`, ...) when no server span answered within the TTL
//! (`connection_type="virtual_node"`), and `user` for a root server span. The batch itself
//! always passes unchanged.

mod config;

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use sluice_sdk::host;
use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use sluice_sdk::otlp::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use sluice_sdk::prost::Message;
use sluice_sdk::seen::SeenSpans;
use sluice_sdk::state;
use sluice_sdk::view::{AttributesView, SpanView, TracesView, ValueView};
use sluice_sdk::{Error, Info, Plugin, Signal, Verdict};

pub use config::Config;

const SPAN_KIND_SERVER: i32 = 2;
const SPAN_KIND_CLIENT: i32 = 3;
const SPAN_KIND_PRODUCER: i32 = 4;
const SPAN_KIND_CONSUMER: i32 = 5;
const STATUS_ERROR: i32 = 2;
/// Bytes one emitted request holds at most (the gateway allows 4 MiB per call).
const EMIT_BUDGET: usize = 3 << 20;

/// One half of a request.
#[derive(Debug, Clone)]
struct Side {
    service: String,
    dims: Vec<Option<String>>,
    seconds: f64,
    failed: bool,
}

/// A request waiting for its other half.
#[derive(Debug)]
struct Pending {
    client: Option<Side>,
    server: Option<Side>,
    messaging: bool,
    /// What the client span names as its peer, for a virtual node.
    peer: Option<String>,
    expires: u64,
}

/// An edge and its labels: client, server, connection type, then the dimensions (client's,
/// then server's).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct EdgeKey {
    client: String,
    server: String,
    connection_type: String,
    dims: Vec<Option<String>>,
    overflow: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counts {
    start: u64,
    total: u64,
    failed: u64,
    server: Vec<u64>,
    server_sum: f64,
    client: Vec<u64>,
    client_sum: f64,
}

impl Counts {
    fn new(buckets: usize, now: u64) -> Counts {
        Counts {
            start: now,
            total: 0,
            failed: 0,
            server: vec![0; buckets + 1],
            server_sum: 0.0,
            client: vec![0; buckets + 1],
            client_sum: 0.0,
        }
    }
}

fn observe(counts: &mut [u64], sum: &mut f64, bounds: &[f64], seconds: f64) {
    let i = bounds.partition_point(|b| *b < seconds);
    if let Some(c) = counts.get_mut(i) {
        *c = c.saturating_add(1);
    }
    *sum += seconds;
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Totals {
    /// Halves that found no other half within the TTL and named no peer.
    unpaired: u64,
    /// Halves not kept because `store.max_items` were waiting.
    dropped: u64,
    /// Spans seen again (two pipelines, a retry), not counted again.
    duplicates: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    edges: Vec<(EdgeKey, Counts)>,
    totals: Totals,
}

#[derive(Debug)]
pub struct ServiceGraph {
    config: Config,
    pending: HashMap<[u8; 24], Pending>,
    /// Expiry times in arrival order (the TTL is fixed, so they increase).
    expiry: VecDeque<(u64, [u8; 24])>,
    edges: HashMap<EdgeKey, Counts>,
    totals: Totals,
    seen: SeenSpans,
    last_flush: u64,
    outbox: VecDeque<Vec<u8>>,
}

fn key(trace_id: &[u8], span_id: &[u8]) -> Option<[u8; 24]> {
    if trace_id.len() != 16 || span_id.len() != 8 || span_id.iter().all(|b| *b == 0) {
        return None;
    }
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(trace_id);
    k[16..].copy_from_slice(span_id);
    Some(k)
}

fn text(v: ValueView<'_>) -> Option<String> {
    match v {
        ValueView::Str(s) if !s.is_empty() => Some(s.to_string()),
        ValueView::Int(i) => Some(i.to_string()),
        ValueView::Bool(b) => Some(b.to_string()),
        ValueView::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

/// The first of `names` among the attributes, as text.
fn first_of(attrs: &AttributesView<'_>, names: &[String]) -> Result<Option<String>, Error> {
    let mut found: Vec<Option<String>> = vec![None; names.len()];
    if names.is_empty() {
        return Ok(None);
    }
    attrs.for_each(|k, v| {
        for (i, n) in names.iter().enumerate() {
            if found[i].is_none() && n == k {
                found[i] = text(v);
            }
        }
        Ok(())
    })?;
    Ok(found.into_iter().flatten().next())
}

impl ServiceGraph {
    fn record(&mut self, client: Option<&Side>, server: Option<&Side>, edge: EdgeKey, now: u64) {
        let edge = if self.edges.len() >= self.config.max_series && !self.edges.contains_key(&edge)
        {
            EdgeKey {
                client: String::new(),
                server: String::new(),
                connection_type: String::new(),
                dims: Vec::new(),
                overflow: true,
            }
        } else {
            edge
        };
        let buckets = &self.config.buckets;
        let counts = self
            .edges
            .entry(edge)
            .or_insert_with(|| Counts::new(buckets.len(), now));
        counts.total = counts.total.saturating_add(1);
        if client.is_some_and(|c| c.failed) || server.is_some_and(|s| s.failed) {
            counts.failed = counts.failed.saturating_add(1);
        }
        if let Some(c) = client {
            observe(
                &mut counts.client,
                &mut counts.client_sum,
                buckets,
                c.seconds,
            );
        }
        if let Some(s) = server {
            observe(
                &mut counts.server,
                &mut counts.server_sum,
                buckets,
                s.seconds,
            );
        }
    }

    fn edge(
        &self,
        client: Option<&Side>,
        server: Option<&Side>,
        names: (&str, &str),
        connection_type: &str,
    ) -> EdgeKey {
        let n = self.config.dimensions.len();
        let mut dims = Vec::with_capacity(2 * n);
        dims.extend((0..n).map(|i| client.and_then(|c| c.dims[i].clone())));
        dims.extend((0..n).map(|i| server.and_then(|s| s.dims[i].clone())));
        EdgeKey {
            client: names.0.to_string(),
            server: names.1.to_string(),
            connection_type: connection_type.to_string(),
            dims,
            overflow: false,
        }
    }

    /// Records the requests whose halves waited in vain: virtual nodes where the client named
    /// its peer, unpaired otherwise.
    fn expire(&mut self, now: u64) {
        while let Some((at, k)) = self.expiry.front().copied() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            let Some(p) = self.pending.get(&k) else {
                continue;
            };
            if p.expires != at {
                continue;
            }
            let Some(p) = self.pending.remove(&k) else {
                continue;
            };
            match (&p.client, &p.peer) {
                (Some(c), Some(peer)) => {
                    let e = self.edge(Some(c), None, (&c.service, peer), "virtual_node");
                    self.record(Some(c), None, e, now);
                }
                _ => self.totals.unpaired = self.totals.unpaired.saturating_add(1),
            }
        }
    }

    /// Adds one half; records the request when both are there.
    fn half(
        &mut self,
        k: [u8; 24],
        side: Side,
        is_client: bool,
        messaging: bool,
        peer: Option<String>,
        now: u64,
    ) {
        let complete = match self.pending.get_mut(&k) {
            Some(p) => {
                let slot = if is_client {
                    &mut p.client
                } else {
                    &mut p.server
                };
                if slot.is_some() {
                    return;
                }
                *slot = Some(side);
                p.messaging |= messaging;
                if is_client {
                    p.peer = peer;
                }
                p.client.is_some() && p.server.is_some()
            }
            None => {
                if self.pending.len() >= self.config.max_items {
                    self.totals.dropped = self.totals.dropped.saturating_add(1);
                    return;
                }
                let expires = now.saturating_add(self.config.ttl_nanos);
                let (client, server) = if is_client {
                    (Some(side), None)
                } else {
                    (None, Some(side))
                };
                self.pending.insert(
                    k,
                    Pending {
                        client,
                        server,
                        messaging,
                        peer,
                        expires,
                    },
                );
                self.expiry.push_back((expires, k));
                false
            }
        };
        if complete && let Some(p) = self.pending.remove(&k) {
            let (Some(c), Some(s)) = (&p.client, &p.server) else {
                return;
            };
            let kind = if p.messaging { "messaging_system" } else { "" };
            let e = self.edge(Some(c), Some(s), (&c.service, &s.service), kind);
            self.record(Some(c), Some(s), e, now);
        }
    }

    fn span(
        &mut self,
        service: &str,
        resource: &AttributesView<'_>,
        span: &SpanView<'_>,
        now: u64,
    ) -> Result<(), Error> {
        let client_like = matches!(span.kind, SPAN_KIND_CLIENT | SPAN_KIND_PRODUCER);
        let server_like = matches!(span.kind, SPAN_KIND_SERVER | SPAN_KIND_CONSUMER);
        if !client_like && !server_like {
            return Ok(());
        }
        if !self.seen.first_time(span.trace_id, span.span_id) {
            self.totals.duplicates = self.totals.duplicates.saturating_add(1);
            return Ok(());
        }
        let mut dims = Vec::with_capacity(self.config.dimensions.len());
        for d in &self.config.dimensions {
            let one = std::slice::from_ref(d);
            dims.push(match first_of(&span.attributes, one)? {
                Some(v) => Some(v),
                None => first_of(resource, one)?,
            });
        }
        let side = Side {
            service: service.to_string(),
            dims,
            seconds: span.duration_nanos() as f64 / 1e9,
            failed: span.status_code == STATUS_ERROR,
        };
        if client_like {
            if span.kind == SPAN_KIND_CLIENT {
                let db = [
                    self.config.database_attribute.clone(),
                    "db.system".to_string(),
                ];
                if let Some(database) = first_of(&span.attributes, &db)? {
                    let e = self.edge(Some(&side), Some(&side), (service, &database), "database");
                    self.record(Some(&side), Some(&side), e, now);
                    return Ok(());
                }
            }
            let Some(k) = key(span.trace_id, span.span_id) else {
                return Ok(());
            };
            let peer = first_of(&span.attributes, &self.config.peer_attributes)?;
            self.half(k, side, true, span.kind == SPAN_KIND_PRODUCER, peer, now);
        } else {
            let Some(k) = key(span.trace_id, span.parent_span_id) else {
                // A root server span: a request from a user. (Malformed ids pair with nothing.)
                let root = span.parent_span_id.iter().all(|b| *b == 0);
                if root && span.kind == SPAN_KIND_SERVER {
                    let e = self.edge(None, Some(&side), ("user", service), "virtual_node");
                    self.record(None, Some(&side), e, now);
                }
                return Ok(());
            };
            self.half(k, side, false, span.kind == SPAN_KIND_CONSUMER, None, now);
        }
        Ok(())
    }

    fn report(&self, now: u64) -> ExportMetricsServiceRequest {
        let names = &self.config.dimensions;
        let label = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        let mut total = Vec::new();
        let mut failed = Vec::new();
        let mut server = Vec::new();
        let mut client = Vec::new();
        let int = |v: u64| {
            Some(number_data_point::Value::AsInt(
                i64::try_from(v).unwrap_or(i64::MAX),
            ))
        };
        for (e, c) in &self.edges {
            let attributes: Vec<KeyValue> = if e.overflow {
                vec![KeyValue {
                    key: "otel.metric.overflow".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::BoolValue(true)),
                    }),
                    ..Default::default()
                }]
            } else {
                let mut a = vec![
                    label("client", &e.client),
                    label("server", &e.server),
                    label("connection_type", &e.connection_type),
                ];
                let prefixed = names
                    .iter()
                    .map(|n| format!("client_{n}"))
                    .chain(names.iter().map(|n| format!("server_{n}")));
                for (name, v) in prefixed.zip(&e.dims) {
                    if let Some(v) = v {
                        a.push(label(&name, v));
                    }
                }
                a
            };
            let number = |v: u64| NumberDataPoint {
                attributes: attributes.clone(),
                start_time_unix_nano: c.start,
                time_unix_nano: now,
                value: int(v),
                ..Default::default()
            };
            total.push(number(c.total));
            failed.push(number(c.failed));
            let histogram = |counts: &Vec<u64>, sum: f64| {
                let count = counts.iter().fold(0u64, |a, b| a.saturating_add(*b));
                (count > 0).then(|| HistogramDataPoint {
                    attributes: attributes.clone(),
                    start_time_unix_nano: c.start,
                    time_unix_nano: now,
                    count,
                    sum: Some(sum),
                    bucket_counts: counts.clone(),
                    explicit_bounds: self.config.buckets.clone(),
                    ..Default::default()
                })
            };
            server.extend(histogram(&c.server, c.server_sum));
            client.extend(histogram(&c.client, c.client_sum));
        }
        let cumulative = AggregationTemporality::Cumulative as i32;
        let sum = |name: &str, description: &str, data_points: Vec<NumberDataPoint>| Metric {
            name: name.into(),
            description: description.into(),
            data: Some(metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: cumulative,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let hist = |name: &str, description: &str, data_points: Vec<HistogramDataPoint>| Metric {
            name: name.into(),
            description: description.into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points,
                aggregation_temporality: cumulative,
            })),
            ..Default::default()
        };
        let single = |v: u64| {
            vec![NumberDataPoint {
                time_unix_nano: now,
                value: int(v),
                ..Default::default()
            }]
        };
        let t = &self.totals;
        let metrics = vec![
            sum(
                "traces_service_graph_request_total",
                "Requests between two services (client and server spans paired).",
                total,
            ),
            sum(
                "traces_service_graph_request_failed_total",
                "Requests between two services that failed (either span's status is ERROR).",
                failed,
            ),
            hist(
                "traces_service_graph_request_server_seconds",
                "Server-side durations of the requests between two services.",
                server,
            ),
            hist(
                "traces_service_graph_request_client_seconds",
                "Client-side durations of the requests between two services.",
                client,
            ),
            sum(
                "traces_service_graph_unpaired_spans_total",
                "Client or server spans whose other half did not come within store.ttl (and that named no peer).",
                single(t.unpaired),
            ),
            sum(
                "traces_service_graph_dropped_spans_total",
                "Spans not paired because store.max_items spans were waiting.",
                single(t.dropped),
            ),
            sum(
                "sluice.servicegraph.duplicates",
                "Spans not counted again because they were counted already.",
                single(t.duplicates),
            ),
        ];
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "sluice-plugin-servicegraph".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

impl Plugin for ServiceGraph {
    fn describe() -> Info {
        Info::new("servicegraph", env!("CARGO_PKG_VERSION"), &[Signal::Traces]).stateful()
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config = Config::parse(config)?;
        Ok(ServiceGraph {
            seen: SeenSpans::new(config.dedupe_window),
            config,
            pending: HashMap::new(),
            expiry: VecDeque::new(),
            edges: HashMap::new(),
            totals: Totals::default(),
            last_flush: 0,
            outbox: VecDeque::new(),
        })
    }

    fn read_traces(&mut self, batch: &TracesView<'_>) -> Result<Option<Verdict>, Error> {
        let now = host::now();
        self.expire(now);
        let mut last: Option<(AttributesView<'_>, String)> = None;
        batch.for_each_span(|resource, span| {
            let service = match &last {
                Some((attrs, service)) if attrs.same(&resource.attributes) => service.clone(),
                _ => {
                    let service = resource
                        .attributes
                        .get("service.name")?
                        .and_then(|v| v.as_str())
                        .unwrap_or("unknown_service")
                        .to_string();
                    last = Some((resource.attributes, service.clone()));
                    service
                }
            };
            self.span(&service, &resource.attributes, span, now)
        })?;
        Ok(Some(Verdict::Unchanged))
    }

    fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
        let bytes = batch.encode_to_vec();
        self.read_traces(&TracesView::new(&bytes))?;
        Ok(Verdict::Unchanged)
    }

    fn tick(&mut self, now: u64) -> Result<(), Error> {
        self.expire(now);
        if self.last_flush == 0 {
            self.last_flush = now;
        }
        if self.outbox.is_empty()
            && now.saturating_sub(self.last_flush) >= self.config.flush_interval_nanos
        {
            self.last_flush = now;
            for piece in sluice_sdk::metrics::split(self.report(now), EMIT_BUDGET) {
                self.outbox.push_back(piece.encode_to_vec());
            }
        }
        if let Some(request) = self.outbox.pop_front() {
            host::emit(Signal::Metrics, &request);
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        let snap = Snapshot {
            edges: self
                .edges
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            totals: Totals { ..self.totals },
        };
        state::save(&self.config.shape(), &snap)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let Some(snap) = state::load::<Snapshot>(bytes, &self.config.shape(), "service graph")?
        else {
            return Ok(());
        };
        let n = self.config.buckets.len() + 1;
        let dims = 2 * self.config.dimensions.len();
        self.edges = snap
            .edges
            .into_iter()
            .filter(|(k, c)| {
                c.server.len() == n && c.client.len() == n && (k.overflow || k.dims.len() == dims)
            })
            .take(self.config.max_series + 1)
            .collect();
        self.totals = snap.totals;
        Ok(())
    }
}

sluice_sdk::export_plugin!(ServiceGraph);

#[cfg(test)]
mod tests;
