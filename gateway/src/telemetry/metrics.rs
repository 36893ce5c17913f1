//! The gateway's own metrics (`sluice_*`), declared in one place.
//!
//! Every component gets an `Arc<SelfMetrics>` when it is built and updates the families below;
//! the admin server renders the registry at `GET /metrics`. Names follow
//! `sluice_<component>_<what>_<unit>`, and every drop or refusal carries a `reason` label.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::build_info;

/// Latency buckets for request and export durations, in seconds (250 us to 10 s).
const DURATION_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Scrape renders take milliseconds to seconds; finer around the 100-300 ms where a large
/// store's render sits, so that "p99 under 200 ms" can be read off the histogram.
const RENDER_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone)]
pub struct SelfMetrics {
    registry: Registry,
    /// Records in requests that decoded, per receiver and signal.
    pub receiver_received: IntCounterVec,
    /// Records handed to pipelines.
    pub receiver_accepted: IntCounterVec,
    /// Records refused (backpressure, invalid records, shutdown), with a reason.
    pub receiver_refused: IntCounterVec,
    /// Requests by transport and outcome (HTTP status / gRPC code name).
    pub receiver_requests: IntCounterVec,
    /// Requests rejected before their records could be counted, with a reason.
    pub receiver_bad_requests: IntCounterVec,
    pub receiver_request_duration: HistogramVec,
    pub pipeline_queue_depth: IntGaugeVec,
    pub pipeline_queue_capacity: IntGaugeVec,
    pub exporter_queue_depth: IntGaugeVec,
    pub exporter_queue_capacity: IntGaugeVec,
    pub pipeline_queue_bytes: IntGaugeVec,
    pub pipeline_queue_capacity_bytes: IntGaugeVec,
    pub exporter_queue_bytes: IntGaugeVec,
    pub exporter_queue_capacity_bytes: IntGaugeVec,
    pub exporter_sent: IntCounterVec,
    pub exporter_send_failures: IntCounterVec,
    pub exporter_send_duration: HistogramVec,
    /// Series held by a Prometheus exporter.
    pub exporter_series: IntGaugeVec,
    /// Time a Prometheus exporter took to render one scrape.
    pub exporter_scrape_render_duration: HistogramVec,
    /// Records lost anywhere after a receiver accepted them, with component and reason.
    pub dropped: IntCounterVec,
    pub plugin_calls: IntCounterVec,
    pub plugin_errors: IntCounterVec,
    pub plugin_call_duration: HistogramVec,
    pub plugin_records_in: IntCounterVec,
    pub plugin_records_out: IntCounterVec,
    pub plugin_reloads: IntCounterVec,
    /// Config reloads by result (`success`, `failure`).
    pub config_reloads: IntCounterVec,
    pub plugin_restarts: IntCounterVec,
    pub plugin_breaker_open: IntGaugeVec,
    pub plugin_log_suppressed: IntCounterVec,
    /// Records held by the in-memory trace and log store (spans, log records).
    pub store_records: IntGaugeVec,
    pub store_evicted: IntCounterVec,
    /// 1 while the process is above the memory limiter's soft or hard limit.
    pub memory_limiter_state: IntGaugeVec,
    pub exporter_breaker_state: IntGaugeVec,
    /// Backends a `loadbalancing` exporter routes to now.
    pub exporter_backends: IntGaugeVec,
    /// Changes of a `loadbalancing` exporter's backends.
    pub exporter_backend_changes: IntCounterVec,
    /// Targets a `prometheus` receiver scrapes, per job.
    pub scrape_targets: IntGaugeVec,
    /// Scrapes by result (`success`, or why one failed).
    pub scrape_requests: IntCounterVec,
    pub scrape_duration: HistogramVec,
    /// Samples scraped and kept after metric relabeling.
    pub scrape_samples: IntCounterVec,
    /// Service-discovery refreshes that failed (the last good targets are kept).
    pub scrape_discovery_failures: IntCounterVec,
    /// Connections open on each listener, and those closed at once at its limit.
    pub listener_connections: IntGaugeVec,
    pub listener_connections_refused: IntCounterVec,
    /// Attributes dropped and values truncated by a receiver's attribute limits.
    pub receiver_attributes_limited: IntCounterVec,
    /// Requests or records of a tenant refused by one of its limits.
    pub tenant_limited: IntCounterVec,
    /// Records accepted per authenticated tenant.
    pub tenant_accepted: IntCounterVec,
    /// Bytes an exporter's disk queue holds (segment files).
    pub queue_disk_bytes: IntGaugeVec,
    pub queue_disk_capacity: IntGaugeVec,
    /// Damage found in a disk queue on start (torn tail, checksum, missing segment).
    pub queue_disk_corruptions: IntCounterVec,
    /// Batches a disk queue found on start and will deliver.
    pub queue_disk_recovered: IntCounterVec,
    /// Writes a disk queue could not take (full, I/O error); the client was refused.
    pub queue_disk_write_errors: IntCounterVec,
    /// Admin requests refused before their handler ran (cross-origin, missing header).
    pub admin_requests_refused: IntCounterVec,
    /// Request handlers that panicked; each was answered 500 / INTERNAL.
    pub panics: IntCounterVec,
    /// Bytes of decoded requests in flight, all receivers together, and the budget.
    pub receiver_in_flight_bytes: IntGaugeVec,
}

impl std::fmt::Debug for SelfMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SelfMetrics")
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    histogram_with(registry, name, help, labels, DURATION_BUCKETS)
}

fn histogram_with(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric definition");
    registry
        .register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

impl SelfMetrics {
    #[allow(
        clippy::expect_used,
        reason = "metric definitions are constants; a bad one is a bug caught by every test"
    )]
    pub fn new() -> SelfMetrics {
        let r = Registry::new();
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...: what
        // memory and file-descriptor alerts need (Linux only).
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector registered once");
        let info = gauge(
            &r,
            "sluice_build_info",
            "Build information of the running gateway.",
            &["version", "commit"],
        );
        info.with_label_values(&[build_info::VERSION, build_info::COMMIT])
            .set(1);
        SelfMetrics {
            receiver_received: counter(
                &r,
                "sluice_receiver_received_records_total",
                "Records in requests that decoded, per receiver, transport and signal.",
                &["receiver", "transport", "signal"],
            ),
            receiver_accepted: counter(
                &r,
                "sluice_receiver_accepted_records_total",
                "Records accepted into pipelines.",
                &["receiver", "transport", "signal"],
            ),
            receiver_refused: counter(
                &r,
                "sluice_receiver_refused_records_total",
                "Records refused by a receiver, by reason (queue_full, invalid, shutting_down, rejected_by_processor).",
                &["receiver", "transport", "signal", "reason"],
            ),
            receiver_requests: counter(
                &r,
                "sluice_receiver_requests_total",
                "Requests answered, by transport, signal and status (HTTP status or gRPC code).",
                &["receiver", "transport", "signal", "status"],
            ),
            receiver_bad_requests: counter(
                &r,
                "sluice_receiver_bad_requests_total",
                "Requests rejected before their records were counted, by reason.",
                &["receiver", "transport", "reason"],
            ),
            receiver_request_duration: histogram(
                &r,
                "sluice_receiver_request_duration_seconds",
                "Time from request start to response, per transport and signal.",
                &["receiver", "transport", "signal"],
            ),
            pipeline_queue_depth: gauge(
                &r,
                "sluice_pipeline_queue_depth_batches",
                "Batches waiting in a pipeline's input queue.",
                &["pipeline"],
            ),
            pipeline_queue_capacity: gauge(
                &r,
                "sluice_pipeline_queue_capacity_batches",
                "Capacity of a pipeline's input queue.",
                &["pipeline"],
            ),
            exporter_queue_depth: gauge(
                &r,
                "sluice_exporter_queue_depth_batches",
                "Batches waiting in an exporter's sending queue.",
                &["exporter"],
            ),
            exporter_queue_capacity: gauge(
                &r,
                "sluice_exporter_queue_capacity_batches",
                "Capacity of an exporter's sending queue.",
                &["exporter"],
            ),
            pipeline_queue_bytes: gauge(
                &r,
                "sluice_pipeline_queue_bytes",
                "Protobuf bytes of the batches in a pipeline's input queue (whole KiB).",
                &["pipeline"],
            ),
            pipeline_queue_capacity_bytes: gauge(
                &r,
                "sluice_pipeline_queue_capacity_bytes",
                "Size limit of a pipeline's input queue (queue_max_size_mib).",
                &["pipeline"],
            ),
            exporter_queue_bytes: gauge(
                &r,
                "sluice_exporter_queue_bytes",
                "Protobuf bytes of the batches in an exporter's memory sending queue, being sent included (whole KiB).",
                &["exporter"],
            ),
            exporter_queue_capacity_bytes: gauge(
                &r,
                "sluice_exporter_queue_capacity_bytes",
                "Size limit of an exporter's memory sending queue (sending_queue.max_size_mib).",
                &["exporter"],
            ),
            listener_connections: gauge(
                &r,
                "sluice_listener_connections",
                "Connections open on a listener (receivers, admin, scrape endpoints).",
                &["listener"],
            ),
            listener_connections_refused: counter(
                &r,
                "sluice_listener_connections_refused_total",
                "Connections closed at once because the listener was at its max_connections.",
                &["listener"],
            ),
            receiver_attributes_limited: counter(
                &r,
                "sluice_receiver_attributes_limited_total",
                "Attributes dropped beyond max_attributes_per_record (action=dropped) and values cut to max_value_bytes (action=truncated).",
                &["receiver", "signal", "action"],
            ),
            tenant_limited: counter(
                &r,
                "sluice_tenant_limited_total",
                "Requests of an authenticated tenant refused by one of its limits (requests_per_second, records_per_second, max_concurrent_requests).",
                &["receiver", "tenant", "limit"],
            ),
            tenant_accepted: counter(
                &r,
                "sluice_tenant_accepted_records_total",
                "Records accepted from an authenticated tenant.",
                &["receiver", "tenant"],
            ),
            queue_disk_bytes: gauge(
                &r,
                "sluice_exporter_queue_disk_bytes",
                "Bytes held by an exporter's disk queue (storage).",
                &["exporter"],
            ),
            queue_disk_capacity: gauge(
                &r,
                "sluice_exporter_queue_disk_capacity_bytes",
                "Capacity of an exporter's disk queue (sending_queue.max_size_mib).",
                &["exporter"],
            ),
            queue_disk_corruptions: counter(
                &r,
                "sluice_exporter_queue_disk_corruptions_total",
                "Damage a disk queue found and skipped on start, by kind (torn_tail, checksum, missing_segment).",
                &["exporter", "kind"],
            ),
            queue_disk_recovered: counter(
                &r,
                "sluice_exporter_queue_disk_recovered_batches_total",
                "Batches a disk queue found on start, to be delivered.",
                &["exporter"],
            ),
            queue_disk_write_errors: counter(
                &r,
                "sluice_exporter_queue_disk_write_errors_total",
                "Batches a disk queue could not write, by reason (full, io); their clients were refused with a retryable error.",
                &["exporter", "reason"],
            ),
            panics: counter(
                &r,
                "sluice_panics_total",
                "Request handlers that panicked, by listener (receiver, admin); each was answered 500 or INTERNAL and the gateway kept serving.",
                &["listener"],
            ),
            receiver_in_flight_bytes: gauge(
                &r,
                "sluice_receiver_in_flight_bytes",
                "Estimated decoded bytes of requests being handled (state=used) and the budget they share (state=budget).",
                &["state"],
            ),
            config_reloads: counter(
                &r,
                "sluice_config_reloads_total",
                "Config reloads (SIGHUP, --watch-config, POST /api/v1/config/reload) by result: success, or failure (the running config stays).",
                &["result"],
            ),
            admin_requests_refused: counter(
                &r,
                "sluice_admin_requests_refused_total",
                "Admin requests refused: mutating ones as possible cross-site request forgery (reason cross_site, origin, missing_header), malformed queries (bad_request).",
                &["reason"],
            ),
            exporter_sent: counter(
                &r,
                "sluice_exporter_sent_records_total",
                "Records an exporter delivered.",
                &["exporter", "signal"],
            ),
            exporter_send_failures: counter(
                &r,
                "sluice_exporter_send_failures_total",
                "Failed send attempts (each retry counts), by whether they are retried.",
                &["exporter", "signal", "retryable"],
            ),
            exporter_send_duration: histogram(
                &r,
                "sluice_exporter_send_duration_seconds",
                "Duration of one send attempt.",
                &["exporter", "signal"],
            ),
            exporter_series: gauge(
                &r,
                "sluice_exporter_series",
                "Series held by a Prometheus exporter's store.",
                &["exporter"],
            ),
            exporter_scrape_render_duration: histogram_with(
                &r,
                "sluice_exporter_scrape_render_duration_seconds",
                "Time a prometheus exporter took to render one scrape of its store.",
                &["exporter"],
                RENDER_BUCKETS,
            ),
            dropped: counter(
                &r,
                "sluice_dropped_records_total",
                "Records lost after a receiver accepted them, by component and reason.",
                &["component", "signal", "reason"],
            ),
            plugin_calls: counter(
                &r,
                "sluice_plugin_calls_total",
                "Plugin calls, by processor and outcome (ok, failed).",
                &["processor", "outcome"],
            ),
            plugin_errors: counter(
                &r,
                "sluice_plugin_errors_total",
                "Plugin failures by kind: trap, timeout, memory, table, plugin_error, invalid_output, init, too_large, breaker_open, emit_too_large, emit_rate, replace_too_large, snapshot_too_large.",
                &["processor", "kind"],
            ),
            plugin_call_duration: histogram(
                &r,
                "sluice_plugin_call_duration_seconds",
                "Duration of one plugin call (one batch).",
                &["processor"],
            ),
            plugin_records_in: counter(
                &r,
                "sluice_plugin_records_in_total",
                "Records given to a plugin.",
                &["processor"],
            ),
            plugin_records_out: counter(
                &r,
                "sluice_plugin_records_out_total",
                "Records a plugin passed on.",
                &["processor"],
            ),
            plugin_reloads: counter(
                &r,
                "sluice_plugin_reloads_total",
                "Plugin reloads, by result (ok, failed).",
                &["processor", "result"],
            ),
            plugin_restarts: counter(
                &r,
                "sluice_plugin_restarts_total",
                "Plugin instances recreated after a trap, timeout or memory overrun.",
                &["processor"],
            ),
            plugin_breaker_open: gauge(
                &r,
                "sluice_plugin_breaker_open",
                "1 while a plugin's breaker is open (calls skipped, on_error applied).",
                &["processor"],
            ),
            plugin_log_suppressed: counter(
                &r,
                "sluice_plugin_log_lines_suppressed_total",
                "Plugin log lines dropped by the per-plugin rate limit.",
                &["processor"],
            ),
            store_records: gauge(
                &r,
                "sluice_store_records",
                "Records held by the in-memory store of the `memory` exporter (spans, log records).",
                &["signal"],
            ),
            store_evicted: counter(
                &r,
                "sluice_store_evicted_records_total",
                "Records evicted from the in-memory store, by reason (max_spans, max_logs, max_age).",
                &["signal", "reason"],
            ),
            exporter_breaker_state: gauge(
                &r,
                "sluice_exporter_breaker_state",
                "The exporter's circuit breaker: 0 closed, 1 open (sends paused), 2 half-open (one trial send).",
                &["exporter"],
            ),
            exporter_backends: gauge(
                &r,
                "sluice_exporter_backends",
                "Backends a loadbalancing exporter routes to now.",
                &["exporter"],
            ),
            exporter_backend_changes: counter(
                &r,
                "sluice_exporter_backend_changes_total",
                "Times a loadbalancing exporter's set of backends changed (a DNS answer that differs).",
                &["exporter"],
            ),
            scrape_targets: gauge(
                &r,
                "sluice_scrape_targets",
                "Targets a prometheus receiver scrapes now, per job.",
                &["receiver", "job"],
            ),
            scrape_requests: counter(
                &r,
                "sluice_scrape_requests_total",
                "Scrapes of targets by result: success, timeout, connection, http_status, body_too_large, parse_error, sample_limit, in_flight_budget, refused (the pipeline did not take the batch).",
                &["receiver", "job", "result"],
            ),
            scrape_duration: histogram(
                &r,
                "sluice_scrape_duration_seconds",
                "Time from a scrape's request to its batch entering the pipelines.",
                &["receiver", "job"],
            ),
            scrape_samples: counter(
                &r,
                "sluice_scrape_samples_total",
                "Samples read from targets (stage=scraped) and kept after metric relabeling (stage=kept).",
                &["receiver", "job", "stage"],
            ),
            scrape_discovery_failures: counter(
                &r,
                "sluice_scrape_discovery_failures_total",
                "Service-discovery refreshes (file_sd, http_sd) that failed; the last good targets stay.",
                &["receiver", "job", "mechanism"],
            ),
            memory_limiter_state: gauge(
                &r,
                "sluice_memory_limiter_over_limit",
                "1 while resident memory is above the memory limiter's soft (refusing new data) or hard (not ready) limit.",
                &["limit"],
            ),
            registry: r,
        }
    }

    /// Adds a collector whose metrics are computed when the registry is gathered.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(collector) {
            tracing::warn!(error = %e, "A self-metric collector was not registered.");
        }
    }

    /// The registry in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Every family as JSON, for the web UI: `{name: {type, help, series: [{labels, value}]}}`;
    /// histograms carry `count`, `sum` and cumulative `buckets` as `[le, count]` pairs.
    pub fn to_json(&self) -> serde_json::Value {
        use prometheus::proto::MetricType;
        use serde_json::json;
        let mut out = serde_json::Map::new();
        for family in self.registry.gather() {
            let kind = family.get_field_type();
            let series: Vec<serde_json::Value> = family
                .get_metric()
                .iter()
                .map(|m| {
                    let labels: serde_json::Map<String, serde_json::Value> = m
                        .get_label()
                        .iter()
                        .map(|l| (l.name().to_string(), json!(l.value())))
                        .collect();
                    match kind {
                        MetricType::COUNTER => json!({"labels": labels, "value": m.get_counter().get_value()}),
                        MetricType::GAUGE => json!({"labels": labels, "value": m.get_gauge().get_value()}),
                        MetricType::HISTOGRAM => {
                            let h = m.get_histogram();
                            let buckets: Vec<_> = h
                                .get_bucket()
                                .iter()
                                .map(|b| json!([b.upper_bound(), b.cumulative_count()]))
                                .collect();
                            json!({"labels": labels, "count": h.get_sample_count(), "sum": h.get_sample_sum(), "buckets": buckets})
                        }
                        _ => json!({"labels": labels}),
                    }
                })
                .collect();
            let ty = match kind {
                MetricType::COUNTER => "counter",
                MetricType::GAUGE => "gauge",
                MetricType::HISTOGRAM => "histogram",
                _ => "untyped",
            };
            out.insert(
                family.name().to_string(),
                json!({"type": ty, "help": family.help(), "series": series}),
            );
        }
        serde_json::Value::Object(out)
    }

    pub fn drop_records(&self, component: &str, signal: &str, reason: &str, n: usize) {
        self.dropped
            .with_label_values(&[component, signal, reason])
            .inc_by(n as u64);
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        SelfMetrics::new()
    }
}
