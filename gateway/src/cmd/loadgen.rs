//! `sluice loadgen`: offered OTLP load with a progress bar and a summary.
//!
//! Batches are generated up front (a pool of distinct, realistic batches: spans with 10-20
//! attributes and events, metrics over a configurable number of series, logs with bodies and
//! severities), encoded once, and sent round-robin by `--concurrency` workers through the
//! gateway's own OTLP exporter code (gRPC or HTTP), so the generator spends its CPU on sending,
//! not on building. `--rate` is in records per second and paces batches on a fixed schedule
//! (open loop up to the concurrency); `--rate 0` sends as fast as the workers can. The summary
//! counts sent, accepted, refused (429/503 or gRPC UNAVAILABLE/RESOURCE_EXHAUSTED) and errors,
//! and the request latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use sluice::config::{
    BreakerConfig, Compression, OtlpExporterConfig, OtlpProtocol, RetryConfig, SendingQueueConfig,
    duration,
};
use sluice::exporters::{ExportError, OtlpExporter};
use sluice::model::{Batch, Payload, Signal};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SignalArg {
    Traces,
    Metrics,
    Logs,
}

#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// Where to send: `http://127.0.0.1:4317` for gRPC, `http://127.0.0.1:4318` for HTTP
    /// (`/v1/<signal>` is appended). Default: the local gateway's port for the protocol.
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long, value_enum, default_value = "grpc")]
    pub protocol: Protocol,
    #[arg(long, value_enum, default_value = "traces")]
    pub signal: SignalArg,
    /// Records (spans, data points, log records) per second; 0 sends as fast as possible.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// How long to send, e.g. `30s`, `2m`.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub duration: Duration,
    /// Records per request.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Attributes per span or log record (realistic: 10-20).
    #[arg(long, default_value_t = 12)]
    pub attributes: usize,
    /// Distinct services (resources).
    #[arg(long, default_value_t = 5)]
    pub services: usize,
    /// Distinct metric series cycled through (metrics only).
    #[arg(long, default_value_t = 1000)]
    pub series: usize,
    #[arg(long, value_enum, default_value = "none")]
    pub compression: CompressionArg,
    /// Deadline of one request.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub timeout: Duration,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CompressionArg {
    None,
    Gzip,
    Zstd,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub signal: &'static str,
    pub protocol: &'static str,
    pub endpoint: String,
    pub duration_seconds: f64,
    pub requests: u64,
    pub sent_records: u64,
    pub accepted_records: u64,
    pub refused_records: u64,
    pub error_records: u64,
    pub records_per_second: f64,
    pub latency_ms: Latency,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    sent: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
}

/// Latencies kept for the percentiles, per worker, at most this many.
const MAX_SAMPLES: usize = 2_000_000;

impl LoadgenArgs {
    fn signal(&self) -> Signal {
        match self.signal {
            SignalArg::Traces => Signal::Traces,
            SignalArg::Metrics => Signal::Metrics,
            SignalArg::Logs => Signal::Logs,
        }
    }

    fn endpoint(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| match self.protocol {
                Protocol::Grpc => "http://127.0.0.1:4317".into(),
                Protocol::Http => "http://127.0.0.1:4318".into(),
            })
    }

    fn check(&self) -> Result<(), String> {
        if self.batch_size == 0 || self.concurrency == 0 || self.services == 0 || self.series == 0 {
            return Err(
                "--batch-size, --concurrency, --services and --series must be at least 1".into(),
            );
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err("--rate must be a number of records per second, 0 for unlimited".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be greater than 0".into());
        }
        Ok(())
    }
}

/// Runs the load and returns its summary. Prints the progress bar on stderr.
pub async fn run(args: &LoadgenArgs) -> Result<Summary, String> {
    args.check()?;
    let signal = args.signal();
    let endpoint = args.endpoint();
    let exporter = OtlpExporter::new(
        "loadgen",
        &OtlpExporterConfig {
            endpoint: endpoint.clone(),
            protocol: match args.protocol {
                Protocol::Grpc => OtlpProtocol::Grpc,
                Protocol::Http => OtlpProtocol::Http,
            },
            compression: match args.compression {
                CompressionArg::None => Compression::None,
                CompressionArg::Gzip => Compression::Gzip,
                CompressionArg::Zstd => Compression::Zstd,
            },
            timeout: args.timeout,
            headers: Default::default(),
            sending_queue: SendingQueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
            circuit_breaker: BreakerConfig {
                enabled: false,
                ..BreakerConfig::default()
            },
            tls: None,
            tenant_header: None,
        },
    )
    .map_err(|e| e.message)?;
    let pool = Arc::new(generate(args));
    let counters = Arc::new(Counters::default());
    let last_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let exporter = Arc::new(exporter);

    let bar = progress_bar(args);
    let started = Instant::now();
    let deadline = started + args.duration;
    // Batch n is due at started + n * interval (records per second → batches per second).
    let interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(args.batch_size as f64 / args.rate));
    let ticket = Arc::new(AtomicU64::new(0));

    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (pool, counters, exporter, ticket, last_error) = (
            pool.clone(),
            counters.clone(),
            exporter.clone(),
            ticket.clone(),
            last_error.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut samples: Vec<u32> = Vec::new();
            loop {
                let n = ticket.fetch_add(1, Ordering::Relaxed);
                if let Some(interval) = interval {
                    let due = started + interval.mul_f64(n as f64);
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                } else if Instant::now() >= deadline {
                    break;
                }
                let batch = &pool[(n as usize) % pool.len()];
                let records = batch.records() as u64;
                let sent_at = Instant::now();
                let result = exporter.send(batch).await;
                if samples.len() < MAX_SAMPLES {
                    samples.push(sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                counters.requests.fetch_add(1, Ordering::Relaxed);
                counters.sent.fetch_add(records, Ordering::Relaxed);
                match result {
                    Ok(d) => {
                        counters
                            .accepted
                            .fetch_add(records.saturating_sub(d.rejected), Ordering::Relaxed);
                        counters
                            .refused
                            .fetch_add(d.rejected.min(records), Ordering::Relaxed);
                    }
                    Err(e) => {
                        let counter = if is_refusal(&e) {
                            &counters.refused
                        } else {
                            &counters.errors
                        };
                        counter.fetch_add(records, Ordering::Relaxed);
                        if let Ok(mut l) = last_error.lock() {
                            *l = Some(e.message);
                        }
                    }
                }
            }
            samples
        }));
    }

    let ticker = {
        let (bar, counters) = (bar.clone(), counters.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let elapsed = started.elapsed();
                bar.set_position(elapsed.as_millis().min(u64::MAX as u128) as u64);
                let sent = counters.sent.load(Ordering::Relaxed);
                bar.set_message(format!(
                    "{:>9.0} rec/s  accepted {}  refused {}  errors {}",
                    sent as f64 / elapsed.as_secs_f64().max(1e-3),
                    counters.accepted.load(Ordering::Relaxed),
                    counters.refused.load(Ordering::Relaxed),
                    counters.errors.load(Ordering::Relaxed),
                ));
            }
        })
    };

    let mut samples = Vec::new();
    for w in workers {
        samples.extend(w.await.map_err(|e| format!("a sender task failed: {e}"))?);
    }
    ticker.abort();
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = counters.accepted.load(Ordering::Relaxed);
    let last_error = last_error.lock().ok().and_then(|l| l.clone());
    Ok(Summary {
        signal: signal.as_str(),
        protocol: match args.protocol {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        },
        endpoint,
        duration_seconds: elapsed,
        requests: counters.requests.load(Ordering::Relaxed),
        sent_records: counters.sent.load(Ordering::Relaxed),
        accepted_records: accepted,
        refused_records: counters.refused.load(Ordering::Relaxed),
        error_records: counters.errors.load(Ordering::Relaxed),
        records_per_second: accepted as f64 / elapsed.max(1e-9),
        latency_ms: percentiles(&mut samples),
        last_error,
    })
}

/// Backpressure answers: the gateway (or backend) is alive and asks to retry later.
fn is_refusal(e: &ExportError) -> bool {
    // tonic reports a failed connection as UNAVAILABLE too; that is an error, not a refusal.
    let unreachable = ["connect error", "transport error", "not reachable"]
        .iter()
        .any(|s| e.message.contains(s));
    let backpressure = e.retry_after.is_some()
        || [
            "HTTP 429",
            "HTTP 503",
            "gRPC Unavailable",
            "gRPC ResourceExhausted",
        ]
        .iter()
        .any(|s| e.message.contains(s));
    backpressure && !unreachable
}

fn progress_bar(args: &LoadgenArgs) -> ProgressBar {
    let bar = ProgressBar::new(args.duration.as_millis().min(u64::MAX as u128) as u64);
    if args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

fn percentiles(samples: &mut [u32]) -> Latency {
    if samples.is_empty() {
        return Latency::default();
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i] as f64 / 1000.0
    };
    Latency {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// The summary as a table, for people.
pub fn table(s: &Summary) -> String {
    let mut out = String::new();
    let row = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<18} {v}\n"));
    row(
        &mut out,
        "target",
        format!("{} {} {}", s.signal, s.protocol, s.endpoint),
    );
    row(&mut out, "duration", format!("{:.1} s", s.duration_seconds));
    row(&mut out, "requests", s.requests.to_string());
    row(&mut out, "sent", format!("{} records", s.sent_records));
    row(
        &mut out,
        "accepted",
        format!(
            "{} records ({:.0}/s)",
            s.accepted_records, s.records_per_second
        ),
    );
    row(
        &mut out,
        "refused",
        format!("{} records", s.refused_records),
    );
    row(&mut out, "errors", format!("{} records", s.error_records));
    row(
        &mut out,
        "latency",
        format!(
            "p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            s.latency_ms.p50, s.latency_ms.p95, s.latency_ms.p99, s.latency_ms.max
        ),
    );
    if let Some(e) = &s.last_error {
        row(&mut out, "last error", e.clone());
    }
    out
}

// ------------------------------------------------------------------- generation

fn string(v: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

fn int(v: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

const ROUTES: &[&str] = &[
    "/api/v1/orders/{id}",
    "/api/v1/orders/{id}/items",
    "/api/v1/cart",
    "/api/v1/checkout",
    "/api/v1/users/{id}",
    "/healthz",
];

/// Attributes like an instrumented HTTP server's, `n` of them.
fn attributes(rng: &mut SmallRng, n: usize) -> Vec<KeyValue> {
    let route = ROUTES[rng.random_range(0..ROUTES.len())];
    let mut out = vec![
        kv(
            "http.request.method",
            string(["GET", "POST", "PUT"][rng.random_range(0..3)]),
        ),
        kv("http.route", string(route)),
        kv(
            "url.path",
            string(route.replace("{id}", &rng.random_range(1..1_000_000u32).to_string())),
        ),
        kv(
            "http.response.status_code",
            int([200, 200, 200, 201, 404, 500][rng.random_range(0..6)]),
        ),
        kv("server.address", string("orders.internal.example")),
        kv("server.port", int(8443)),
        kv("network.protocol.version", string("1.1")),
        kv(
            "user_agent.original",
            string("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"),
        ),
        kv(
            "app.tenant",
            string(format!("tenant-{}", rng.random_range(1..40))),
        ),
        kv("app.region", string("eu-west-1")),
    ];
    let mut i = 0;
    while out.len() < n {
        out.push(kv(
            &format!("app.attr_{i}"),
            string(format!("value-{}", rng.random_range(0..10_000))),
        ));
        i += 1;
    }
    out.truncate(n);
    out
}

fn resource(service: usize) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", string(format!("loadgen-{service}"))),
            kv("service.version", string("1.4.2")),
            kv("deployment.environment", string("load")),
            kv("host.name", string(format!("node-{}", service % 3))),
        ],
        ..Default::default()
    }
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "sluice.loadgen".into(),
        version: sluice::build_info::VERSION.into(),
        ..Default::default()
    })
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The pool of batches sent round-robin: 32 for traces and logs; for metrics, one batch per
/// `--batch-size` series, so each series belongs to exactly one batch (at most 4096 batches).
fn generate(args: &LoadgenArgs) -> Vec<Batch> {
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let count = match args.signal {
        SignalArg::Metrics => args.series.div_ceil(args.batch_size).clamp(1, 4096),
        _ => 32,
    };
    (0..count)
        .map(|i| {
            let service = i % args.services;
            let payload = match args.signal {
                SignalArg::Traces => Payload::Traces(traces(&mut rng, args, service)),
                SignalArg::Metrics => Payload::Metrics(metrics(&mut rng, args, service, i)),
                SignalArg::Logs => Payload::Logs(logs(&mut rng, args, service)),
            };
            let bytes = Bytes::from(match &payload {
                Payload::Traces(r) => r.encode_to_vec(),
                Payload::Metrics(r) => r.encode_to_vec(),
                Payload::Logs(r) => r.encode_to_vec(),
            });
            Batch::new(payload, Some(bytes), "loadgen".into())
        })
        .collect()
}

fn traces(rng: &mut SmallRng, args: &LoadgenArgs, service: usize) -> ExportTraceServiceRequest {
    let now = now_nanos();
    let mut spans = Vec::with_capacity(args.batch_size);
    let mut trace_id = [0u8; 16];
    let mut parent = Vec::new();
    for i in 0..args.batch_size {
        // Traces of 4 spans: a server root and three children.
        if i % 4 == 0 {
            rng.fill(&mut trace_id);
            parent.clear();
        }
        let span_id: [u8; 8] = rng.random();
        let start = now - rng.random_range(1_000_000..900_000_000u64);
        let failed = rng.random_range(0..50) == 0;
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent.clone(),
            name: if parent.is_empty() {
                "GET /api/v1/orders/{id}".into()
            } else {
                ["SELECT orders", "GET inventory", "publish order.viewed"][i % 3].into()
            },
            kind: if parent.is_empty() { 2 } else { 3 },
            start_time_unix_nano: start,
            end_time_unix_nano: start + rng.random_range(50_000..80_000_000u64),
            attributes: attributes(rng, args.attributes),
            events: if i % 3 == 0 {
                vec![Event {
                    time_unix_nano: start + 10_000,
                    name: "cache.miss".into(),
                    attributes: vec![kv("cache.key", string("orders:recent"))],
                    ..Default::default()
                }]
            } else {
                Vec::new()
            },
            status: Some(Status {
                code: if failed { 2 } else { 0 },
                message: if failed {
                    "upstream timeout".into()
                } else {
                    String::new()
                },
            }),
            ..Default::default()
        });
        if parent.is_empty() {
            parent = span_id.to_vec();
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(service)),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Data points for series `[i * batch_size, (i + 1) * batch_size)` modulo `--series`: a mix of
/// gauges, monotonic sums and histograms over 10 metric names.
fn metrics(
    rng: &mut SmallRng,
    args: &LoadgenArgs,
    service: usize,
    i: usize,
) -> ExportMetricsServiceRequest {
    let now = now_nanos();
    let start = now - 3_600_000_000_000;
    let mut out = Vec::with_capacity(args.batch_size);
    for k in 0..args.batch_size {
        let series = (i * args.batch_size + k) % args.series;
        let family = series % 10;
        let labels = vec![
            kv("instance", string(format!("i-{}", series / 10 % 1000))),
            kv("route", string(ROUTES[series % ROUTES.len()])),
            kv("shard", int((series / 10_000) as i64)),
        ];
        let number = |v: f64| NumberDataPoint {
            attributes: labels.clone(),
            start_time_unix_nano: start,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        };
        let data = match family {
            0..=3 => metric::Data::Gauge(Gauge {
                data_points: vec![number(rng.random_range(0.0..100.0))],
            }),
            4..=7 => metric::Data::Sum(Sum {
                data_points: vec![number(rng.random_range(1e3..1e6f64).floor())],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }),
            _ => {
                let counts: Vec<u64> = (0..6).map(|_| rng.random_range(0..100)).collect();
                metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        attributes: labels.clone(),
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                        count: counts.iter().sum(),
                        sum: Some(rng.random_range(1.0..500.0)),
                        bucket_counts: counts,
                        explicit_bounds: vec![0.005, 0.01, 0.05, 0.1, 0.5],
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })
            }
        };
        let (name, unit) = [
            ("loadgen.cpu.utilization", "%"),
            ("loadgen.memory.usage", "By"),
            ("loadgen.queue.length", "{item}"),
            ("loadgen.temperature", "Cel"),
            ("loadgen.requests", "{request}"),
            ("loadgen.bytes.sent", "By"),
            ("loadgen.errors", "{error}"),
            ("loadgen.retries", "{retry}"),
            ("loadgen.request.duration", "s"),
            ("loadgen.db.duration", "s"),
        ][family];
        out.push(Metric {
            name: name.into(),
            unit: unit.into(),
            description: format!("Generated by sluice loadgen ({name})."),
            data: Some(data),
            ..Default::default()
        });
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(service)),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: out,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs(rng: &mut SmallRng, args: &LoadgenArgs, service: usize) -> ExportLogsServiceRequest {
    let now = now_nanos();
    let records = (0..args.batch_size)
        .map(|i| {
            let (severity, text, body) = [
                (9, "INFO", "order 4711 loaded in 12 ms"),
                (9, "INFO", "GET /api/v1/cart 200"),
                (13, "WARN", "inventory lookup slow: 850 ms"),
                (17, "ERROR", "payment provider answered 503; retrying"),
            ][if i % 20 == 0 { 3 } else { i % 3 }];
            let trace: [u8; 16] = rng.random();
            let span: [u8; 8] = rng.random();
            LogRecord {
                time_unix_nano: now - rng.random_range(0..1_000_000_000u64),
                observed_time_unix_nano: now,
                severity_number: severity,
                severity_text: text.into(),
                body: string(body),
                attributes: attributes(rng, args.attributes),
                trace_id: trace.to_vec(),
                span_id: span.to_vec(),
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(service)),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadgenArgs,
    }

    fn args(extra: &[&str]) -> LoadgenArgs {
        let mut argv = vec!["loadgen"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    #[test]
    fn batches_have_the_asked_shape() {
        let a = args(&["--batch-size", "50", "--attributes", "15"]);
        let pool = generate(&a);
        assert_eq!(pool.len(), 32);
        for b in &pool {
            assert_eq!(b.records(), 50);
            let Payload::Traces(t) = b.payload() else {
                panic!("traces expected")
            };
            let spans = &t.resource_spans[0].scope_spans[0].spans;
            assert!(spans.iter().all(|s| s.attributes.len() == 15));
            // Every fourth span is a root; the others are its children.
            assert!(spans[0].parent_span_id.is_empty());
            assert_eq!(spans[1].parent_span_id, spans[0].span_id);
            assert_eq!(spans[1].trace_id, spans[0].trace_id);
            assert_ne!(spans[4].trace_id, spans[0].trace_id);
            // The encoded bytes decode back to the same payload.
            let again = Payload::decode_protobuf(Signal::Traces, b.encoded()).expect("decodes");
            assert_eq!(&again, b.payload());
        }
    }

    #[test]
    fn metric_batches_cover_every_series() {
        let a = args(&[
            "--signal",
            "metrics",
            "--series",
            "5000",
            "--batch-size",
            "100",
        ]);
        let pool = generate(&a);
        assert_eq!(pool.len(), 50);
        let mut seen = std::collections::BTreeSet::new();
        for b in &pool {
            let Payload::Metrics(m) = b.payload() else {
                panic!("metrics expected")
            };
            for metric in &m.resource_metrics[0].scope_metrics[0].metrics {
                let attrs = match &metric.data {
                    Some(metric::Data::Gauge(g)) => &g.data_points[0].attributes,
                    Some(metric::Data::Sum(s)) => &s.data_points[0].attributes,
                    Some(metric::Data::Histogram(h)) => &h.data_points[0].attributes,
                    _ => panic!("unexpected metric type"),
                };
                seen.insert((
                    metric.name.clone(),
                    format!("{attrs:?}"),
                    format!("{:?}", m.resource_metrics[0].resource),
                ));
            }
        }
        assert_eq!(seen.len(), 5000);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        let l = percentiles(&mut samples);
        assert_eq!((l.p50, l.p95, l.p99, l.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(percentiles(&mut []).p99, 0.0);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(args(&["--batch-size", "0"]).check().is_err());
        assert!(args(&["--rate=-5"]).check().is_err());
        assert!(args(&["--duration", "0s"]).check().is_err());
        assert!(args(&[]).check().is_ok());
    }
}
