//! The admin endpoint: health, the gateway's own metrics, and a status API.
//!
//! - `GET /health/live`: 200 while the process serves requests.
//! - `GET /health/ready`: 200 once every listener is bound and every pipeline runs; 503 before
//!   that and during shutdown (so a load balancer stops sending first).
//! - `GET /health/detailed`: JSON per component (receivers, pipelines, exporters).
//! - `GET /metrics`: `sluice_*` self-metrics, Prometheus text format.
//! - `GET /api/v1/status`: version, uptime and the running topology, as JSON.
//! - `GET /api/v1/metrics`: the self-metrics as JSON; `GET /api/v1/events`: the same, plus
//!   health, every second as Server-Sent Events (the web UI's live view).
//! - `GET /api/v1/families`: the metric families each `prometheus` exporter holds (type, unit,
//!   help, series count, the labels with the most distinct values); `GET /api/v1/series
//!   ?family=F[&exporter=E][&label.NAME=VALUE…][&limit=N]`: a family's series and last values.
//! - `GET /api/v1/tap?pipeline=P[&before=X|&after=X|&exporter=E][&limit=N][&seconds=S]`: the
//!   records passing a point of a pipeline, sampled, as JSON lines, until `limit` records or
//!   `seconds` ([`crate::pipeline::tap`]).
//! - `POST /api/v1/config/reload`: loads the config file again and swaps to it, or refuses it
//!   (422, the reason) and keeps the running one; `/health/detailed` shows the last outcome.
//! - `GET /api/v1/plugins`, `POST /api/v1/plugins/{name}/reload`: plugin status (config with
//!   secrets masked, reload history) and a forced reload.
//! - `GET /api/services`, `/api/traces`, …: the Jaeger query API over the `memory` exporter's
//!   store ([`crate::store::jaeger`]), and `GET /api/v1/logs`.
//! - `GET /`: the web UI, one self-contained page (no external assets).
//!
//! Requests that change state (the reload) must carry `X-Sluice-Request: 1` and must not come
//! from a foreign origin; every response carries security headers ([`security`]).

pub mod reload;
pub mod security;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::build_info;
use crate::exporters::ExporterStatus;
use crate::model::Signal;
use crate::plugins::Processor;
use crate::telemetry::QueueProbe;
use crate::telemetry::metrics::SelfMetrics;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use serde_json::json;

/// Lifecycle flags the health endpoints report.
#[derive(Debug, Default)]
pub struct Health {
    pub ready: AtomicBool,
    pub shutting_down: AtomicBool,
    /// The memory limiter, whose hard limit makes the gateway not ready.
    pub memory: std::sync::OnceLock<Arc<crate::limiter::MemoryLimiter>>,
}

#[derive(Debug, Clone)]
pub struct ReceiverView {
    pub name: String,
    pub transport: &'static str,
    pub endpoint: String,
}

/// A pipeline as the admin endpoint sees it: without keeping its queue open.
#[derive(Debug, Clone)]
pub struct PipelineView {
    pub name: String,
    pub signal: Signal,
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
    pub queue: QueueProbe,
    pub capacity: usize,
    pub taps: Arc<crate::pipeline::tap::Taps>,
}

#[derive(Debug, Clone)]
pub struct ExporterView {
    pub name: String,
    pub queue: QueueProbe,
    pub capacity: usize,
    pub status: Arc<ExporterStatus>,
}

/// Everything the admin endpoint reports on.
#[derive(Debug)]
pub struct AdminState {
    pub metrics: Arc<SelfMetrics>,
    pub health: Arc<Health>,
    pub started: Instant,
    pub receivers: Vec<ReceiverView>,
    pub pipelines: Vec<PipelineView>,
    pub exporters: Vec<ExporterView>,
    pub processors: Vec<Arc<Processor>>,
    pub emit: Arc<crate::pipeline::EmitRouter>,
    /// The `memory` exporter's store, if one is configured.
    pub store: Option<Arc<crate::store::MemoryStore>>,
    /// The targets of each `prometheus` receiver.
    pub scrapes: Vec<Arc<crate::receivers::prometheus::ScrapeRegistry>>,
    /// The series stores of the `prometheus` exporters, for the metrics explorer.
    pub series: crate::exporters::prometheus::SeriesStores,
    /// Bounds the taps open at once.
    pub tap_budget: Arc<crate::pipeline::tap::TapBudget>,
    /// Config reloads: the last outcome, and where to ask for one.
    pub reload: Arc<reload::ReloadStatus>,
}

pub fn router(state: Arc<AdminState>) -> Router {
    let jaeger = crate::store::jaeger::router(state.store.clone());
    let routes = Router::new()
        .route("/", get(index))
        .route("/health/live", get(|| async { "live\n" }))
        .route("/health/ready", get(ready))
        .route("/health/detailed", get(detailed))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/status", get(status))
        .route("/api/v1/slos", get(slos))
        .route("/api/v1/metrics", get(metrics_json))
        .route("/api/v1/events", get(events))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/families", get(families))
        .route("/api/v1/series", get(series))
        .route("/api/v1/tap", get(tap))
        .route("/api/v1/plugins", get(plugins))
        .route("/api/v1/plugins/{name}/reload", post(reload_plugin))
        .route("/api/v1/config/reload", post(reload_config))
        .with_state(state.clone())
        .merge(jaeger);
    let routes = crate::catch_panic::layer(routes, "admin", state.metrics.clone());
    security::protect(routes, state.metrics.clone())
}

fn phase(h: &Health) -> &'static str {
    if h.shutting_down.load(Ordering::Relaxed) {
        "shutting_down"
    } else if h.memory.get().is_some_and(|m| m.over_hard()) {
        "over_memory_limit"
    } else if h.ready.load(Ordering::Relaxed) {
        "ready"
    } else {
        "starting"
    }
}

async fn ready(State(st): State<Arc<AdminState>>) -> Response {
    let breaker_open = st
        .exporters
        .iter()
        .filter(|e| e.status.breaker.get().is_some_and(|b| b.blocks_readiness()))
        .map(|e| e.name.as_str())
        .collect::<Vec<_>>();
    if !breaker_open.is_empty() && phase(&st.health) == "ready" {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("exporter_breaker_open {}\n", breaker_open.join(",")),
        )
            .into_response();
    }
    match phase(&st.health) {
        "ready" => (StatusCode::OK, "ready\n").into_response(),
        other => (StatusCode::SERVICE_UNAVAILABLE, format!("{other}\n")).into_response(),
    }
}

async fn detailed(State(st): State<Arc<AdminState>>) -> Response {
    let phase = phase(&st.health);
    let pipelines: Vec<_> = st
        .pipelines
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "signal": p.signal,
                "queue_depth": p.queue.depth().unwrap_or(0),
                "queue_capacity": p.capacity,
                "processors": p.processors,
                "status": if p.queue.depth().is_some() { "running" } else { "stopped" },
            })
        })
        .collect();
    let exporters: Vec<_> = st
        .exporters
        .iter()
        .map(|e| {
            let failures = e.status.consecutive_failures.load(Ordering::Relaxed);
            let last_error = e.status.last_error.lock().ok().and_then(|l| l.clone());
            json!({
                "name": e.name,
                "queue_depth": e.queue.depth().unwrap_or(0),
                "queue_capacity": e.capacity,
                "consecutive_failures": failures,
                "last_error": last_error,
                "breaker": e.status.breaker.get().map(|b| b.state().as_str()),
                "status": if failures == 0 { "ok" } else { "failing" },
            })
        })
        .collect();
    let receivers: Vec<_> = st
        .receivers
        .iter()
        .map(|r| {
            let mut v = json!({"name": r.name, "transport": r.transport, "endpoint": r.endpoint, "status": phase});
            if let Some(scrape) = st.scrapes.iter().find(|s| s.receiver == r.name) {
                v["targets"] = json!(scrape.targets());
                v["discovery_errors"] = json!(scrape.discovery_errors());
            }
            v
        })
        .collect();
    let processors: Vec<_> = st
        .processors
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(p.status()).unwrap_or_default();
            v["name"] = json!(&*p.name);
            v
        })
        .collect();
    let code = if phase == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(json!({
            "status": phase,
            "receivers": receivers,
            "pipelines": pipelines,
            "processors": processors,
            "exporters": exporters,
            "config": config_json(&st),
        })),
    )
        .into_response()
}

async fn metrics_text(State(st): State<Arc<AdminState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn status(State(st): State<Arc<AdminState>>) -> Response {
    let pipelines: Vec<_> = st
        .pipelines
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "signal": p.signal,
                "receivers": p.receivers,
                "processors": p.processors,
                "exporters": p.exporters,
            })
        })
        .collect();
    axum::Json(json!({
        "version": build_info::VERSION,
        "commit": build_info::COMMIT,
        "build_date": build_info::BUILD_DATE,
        "uptime_seconds": st.started.elapsed().as_secs(),
        "status": phase(&st.health),
        "receivers": st.receivers.iter().map(|r| json!({"name": r.name, "transport": r.transport, "endpoint": r.endpoint})).collect::<Vec<_>>(),
        "pipelines": pipelines,
        "config": config_json(&st),
    }))
    .into_response()
}

/// Every scrape target with its health and last error, by receiver: what Prometheus's
/// `/api/v1/targets` tells, for the web UI's Targets view.
async fn targets(State(st): State<Arc<AdminState>>) -> Response {
    let receivers: Vec<_> = st
        .scrapes
        .iter()
        .map(|s| {
            json!({
                "receiver": s.receiver,
                "targets": s.targets(),
                "discovery_errors": s.discovery_errors(),
            })
        })
        .collect();
    axum::Json(json!({ "receivers": receivers })).into_response()
}

/// The SLOs the `slo` plugin computes, as this gateway sees them: events, burn rates per
/// window, error budget remaining.
async fn slos(State(st): State<Arc<AdminState>>) -> Response {
    axum::Json(json!({ "slos": st.emit.slos.snapshot() })).into_response()
}

/// The metric families of every `prometheus` exporter.
async fn families(State(st): State<Arc<AdminState>>) -> Response {
    let stores = st.series.all();
    let listed = tokio::task::spawn_blocking(move || {
        stores
            .into_iter()
            .map(|(exporter, store)| {
                let families = crate::exporters::series::explore::families(&store);
                let series: usize = families.iter().map(|f| f.series).sum();
                json!({ "exporter": exporter, "series": series, "families": families })
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    axum::Json(json!({ "exporters": listed })).into_response()
}

/// A query string as its pairs, in order, or why it is not one.
type QueryPairs =
    Result<axum::extract::Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

/// An answer with `status` and an `error` message; a 400 is counted as a malformed request.
fn refuse(st: &AdminState, status: StatusCode, message: String) -> Response {
    if status == StatusCode::BAD_REQUEST {
        st.metrics
            .admin_requests_refused
            .with_label_values(&["bad_request"])
            .inc();
    }
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// The query's pairs, or the 400 that says why there are none.
fn query_pairs(st: &AdminState, query: QueryPairs) -> Result<Vec<(String, String)>, Box<Response>> {
    query.map(|q| q.0).map_err(|e| {
        Box::new(refuse(
            st,
            StatusCode::BAD_REQUEST,
            format!("invalid query string: {e}"),
        ))
    })
}

/// Series listed by `/api/v1/series` unless `limit` says otherwise.
const SERIES_LIMIT: usize = 100;

/// One family's series, filtered by `label.NAME=VALUE` parameters.
async fn series(State(st): State<Arc<AdminState>>, query: QueryPairs) -> Response {
    let refuse = |status: StatusCode, message: String| refuse(&st, status, message);
    let params = match query_pairs(&st, query) {
        Ok(p) => p,
        Err(answer) => return *answer,
    };
    let (mut exporter, mut family, mut limit, mut matchers) =
        (None, None, SERIES_LIMIT, Vec::new());
    for (k, v) in params {
        match k.as_str() {
            "exporter" => exporter = Some(v),
            "family" => family = Some(v),
            "limit" => match v.parse::<usize>() {
                Ok(n) => limit = n,
                Err(_) => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        format!("limit must be a whole number, not {v:?}"),
                    );
                }
            },
            _ => match k.strip_prefix("label.") {
                Some(name) if !name.is_empty() => matchers.push((name.to_string(), v)),
                _ => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "unknown parameter {k:?}; expected family, exporter, limit or label.NAME"
                        ),
                    );
                }
            },
        }
    }
    let Some(family) = family else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the family parameter is required".into(),
        );
    };
    let stores = st.series.all();
    let store = match (&exporter, stores.as_slice()) {
        (Some(name), _) => st.series.get(name),
        (None, [(_, only)]) => Some(only.clone()),
        (None, []) => None,
        (None, _) => {
            let names: Vec<&str> = stores.iter().map(|(n, _)| n.as_str()).collect();
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("several prometheus exporters ({names:?}): name one with exporter="),
            );
        }
    };
    let Some(store) = store else {
        let names: Vec<&str> = stores.iter().map(|(n, _)| n.as_str()).collect();
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no prometheus exporter {exporter:?}; configured: {names:?}"),
        );
    };
    let wanted = family.clone();
    let page = tokio::task::spawn_blocking(move || {
        crate::exporters::series::explore::series(&store, &wanted, &matchers, limit)
    })
    .await
    .ok()
    .flatten();
    match page {
        Some(page) => axum::Json(page).into_response(),
        None => refuse(
            StatusCode::NOT_FOUND,
            format!("no metric family {family:?} in this exporter"),
        ),
    }
}

/// Records a tap shows unless `limit` says otherwise, and at most.
const TAP_LIMIT: (usize, usize) = (100, 10_000);
/// How long a tap stays open unless `seconds` says otherwise, and at most.
const TAP_SECONDS: (u64, u64) = (30, 600);

/// Streams the records passing one point of a pipeline as JSON lines.
async fn tap(State(st): State<Arc<AdminState>>, query: QueryPairs) -> Response {
    use crate::pipeline::tap::{Place, point_of, records_json};
    let refuse = |status: StatusCode, message: String| refuse(&st, status, message);
    let params = match query_pairs(&st, query) {
        Ok(p) => p,
        Err(answer) => return *answer,
    };
    let (mut pipeline, mut places) = (None, Vec::new());
    let (mut limit, mut seconds) = (TAP_LIMIT.0, TAP_SECONDS.0);
    for (k, v) in params {
        match k.as_str() {
            "pipeline" => pipeline = Some(v),
            "before" => places.push(Place::Before(v)),
            "after" => places.push(Place::After(v)),
            "exporter" => places.push(Place::Exporter(v)),
            "limit" | "seconds" => {
                let Ok(n) = v.parse::<u64>() else {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        format!("{k} must be a whole number, not {v:?}"),
                    );
                };
                if k == "limit" {
                    limit = (n as usize).clamp(1, TAP_LIMIT.1);
                } else {
                    seconds = n.clamp(1, TAP_SECONDS.1);
                }
            }
            _ => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown parameter {k:?}; expected pipeline, before, after, exporter, limit or seconds"
                    ),
                );
            }
        }
    }
    if places.len() > 1 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "name one place: before, after or exporter".into(),
        );
    }
    let place = places.pop().unwrap_or(Place::Received);
    let Some(pipeline) = pipeline else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the pipeline parameter is required".into(),
        );
    };
    let Some(view) = st.pipelines.iter().find(|p| p.name == pipeline) else {
        let names: Vec<&str> = st.pipelines.iter().map(|p| p.name.as_str()).collect();
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no pipeline {pipeline:?}; configured: {names:?}"),
        );
    };
    let point = match point_of(&place, &view.processors, &view.exporters) {
        Ok(p) => p,
        Err(message) => return refuse(StatusCode::NOT_FOUND, message),
    };
    let Some(mut tap) = view.taps.open(point, &st.tap_budget) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({ "error": format!("{} taps are open; close one and retry", crate::pipeline::tap::MAX_TAPS) })),
        )
            .into_response();
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::convert::Infallible>>(2);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let mut left = limit;
        while left > 0 {
            let batch = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tx.closed() => break,
                b = tap.rx.recv() => match b { Some(b) => b, None => break },
            };
            let mut out = Vec::new();
            left -= records_json(&batch, left, &mut out);
            if tx.send(Ok(out.into())).await.is_err() {
                break;
            }
        }
        // Dropping the tap closes it.
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        })),
    )
        .into_response()
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        security::UI_PAGE,
    )
        .into_response()
}

async fn metrics_json(State(st): State<Arc<AdminState>>) -> Response {
    axum::Json(st.metrics.to_json()).into_response()
}

/// What the live view needs each second.
fn snapshot(st: &AdminState) -> serde_json::Value {
    let store = st.store.as_ref().map(|s| {
        let (spans, traces, logs) = s.sizes();
        json!({ "spans": spans, "traces": traces, "logs": logs })
    });
    let exporters: Vec<_> = st
        .exporters
        .iter()
        .map(|e| {
            let failures = e.status.consecutive_failures.load(Ordering::Relaxed);
            json!({
                "name": e.name,
                "queue_depth": e.queue.depth().unwrap_or(0),
                "queue_capacity": e.capacity,
                "consecutive_failures": failures,
                "last_error": e.status.last_error.lock().ok().and_then(|l| l.clone()),
            })
        })
        .collect();
    json!({
        "time_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "status": phase(&st.health),
        "uptime_seconds": st.started.elapsed().as_secs(),
        "exporters": exporters,
        "store": store,
        "metrics": st.metrics.to_json(),
    })
}

/// Server-Sent Events: a `snapshot` event at once and then every second, until the client
/// goes away or the gateway shuts down.
async fn events(State(st): State<Arc<AdminState>>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    // A config reload ends the stream: the client reconnects and reads the new topology.
    let reloads = st.reload.reloads.load(Ordering::Relaxed);
    let stream = futures_util::stream::unfold((st, true), move |(st, first)| async move {
        if !first {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        if st.health.shutting_down.load(Ordering::Relaxed)
            || st.reload.reloads.load(Ordering::Relaxed) != reloads
        {
            return None;
        }
        let event = Event::default()
            .event("snapshot")
            .data(snapshot(&st).to_string());
        Some((Ok::<_, std::convert::Infallible>(event), (st, false)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn plugin_json(st: &AdminState, p: &Processor) -> serde_json::Value {
    let mut v = serde_json::to_value(p.status()).unwrap_or_default();
    v["name"] = json!(&*p.name);
    v["signals"] = json!(p.signals());
    let m = &st.metrics;
    let name = &*p.name;
    let calls: u64 = ["ok", "failed"]
        .iter()
        .map(|o| m.plugin_calls.with_label_values(&[name, o]).get())
        .sum();
    v["calls"] = json!(calls);
    let errors: serde_json::Map<String, serde_json::Value> = [
        "trap",
        "timeout",
        "memory",
        "plugin_error",
        "init",
        "breaker_open",
        "too_large",
        "invalid_output",
    ]
    .iter()
    .map(|k| {
        (
            k.to_string(),
            json!(m.plugin_errors.with_label_values(&[name, k]).get()),
        )
    })
    .collect();
    v["errors"] = json!(errors);
    v["records_in"] = json!(m.plugin_records_in.with_label_values(&[name]).get());
    v["records_out"] = json!(m.plugin_records_out.with_label_values(&[name]).get());
    let h = m.plugin_call_duration.with_label_values(&[name]);
    v["latency_seconds"] = json!({
        "count": h.get_sample_count(),
        "mean": if h.get_sample_count() > 0 { h.get_sample_sum() / h.get_sample_count() as f64 } else { 0.0 },
    });
    v
}

async fn plugins(State(st): State<Arc<AdminState>>) -> Response {
    let list: Vec<_> = st.processors.iter().map(|p| plugin_json(&st, p)).collect();
    axum::Json(json!({ "plugins": list })).into_response()
}

/// Config reloads so far and the last one, for `/health/detailed` and `/api/v1/status`.
fn config_json(st: &AdminState) -> serde_json::Value {
    json!({
        "reloads": st.reload.reloads.load(Ordering::Relaxed),
        "last_reload": st.reload.last(),
    })
}

/// How long `POST /api/v1/config/reload` waits for the reload's outcome.
const CONFIG_RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Reloads the config now and answers with the outcome.
async fn reload_config(State(st): State<Arc<AdminState>>) -> Response {
    let Some(requests) = st.reload.requests.get() else {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({ "reloaded": false, "error": "this gateway runs without a config to reload" })),
        )
            .into_response();
    };
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let request = reload::ReloadRequest {
        source: "api",
        reply: Some(reply),
    };
    if requests.send(request).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "reloaded": false, "error": "the gateway is shutting down" })),
        )
            .into_response();
    }
    match tokio::time::timeout(CONFIG_RELOAD_WAIT, outcome).await {
        Ok(Ok(record)) if record.ok => {
            axum::Json(json!({ "reloaded": true, "reload": record })).into_response()
        }
        Ok(Ok(record)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({ "reloaded": false, "error": record.message, "reload": record })),
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "reloaded": false, "error": "the reload did not answer in time; see /health/detailed" })),
        )
            .into_response(),
    }
}

/// Reloads a plugin from its file now, whether or not the file changed.
async fn reload_plugin(
    State(st): State<Arc<AdminState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    let Some(p) = st.processors.iter().find(|p| *p.name == *name).cloned() else {
        let known: Vec<&str> = st.processors.iter().map(|p| &*p.name).collect();
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({ "error": format!("no processor named '{name}'; configured: {known:?}") }),
            ),
        )
            .into_response();
    };
    let result = tokio::task::spawn_blocking(move || p.reload(true).map(|_| p)).await;
    match result {
        Ok(Ok(p)) => {
            axum::Json(json!({ "reloaded": true, "plugin": plugin_json(&st, &p) })).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({ "reloaded": false, "error": e.to_string() })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "reloaded": false, "error": e.to_string() })),
        )
            .into_response(),
    }
}
