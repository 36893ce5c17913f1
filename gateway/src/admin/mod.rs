//! The admin endpoint: health, the gateway's own metrics, and a status API.
//!
//! - `GET /health/live`: 200 while the process serves requests.
//! - `GET /health/ready`: 200 once every listener is bound and every pipeline runs; 503 before
//!   that and during shutdown (so a load balancer stops sending first).
//! - `GET /health/detailed`: JSON per component (receivers, pipelines, exporters).
//! - `GET /metrics`: `sluice_*` self-metrics, Prometheus text format.
//! - `GET /api/v1/status`: version, uptime and the running topology, as JSON.

pub mod metrics;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::build_info;
use crate::exporters::ExporterStatus;
use crate::pipeline::{QueueProbe, Signal};
use crate::plugins::Processor;
use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use metrics::SelfMetrics;
use serde_json::json;

/// Lifecycle flags the health endpoints report.
#[derive(Debug, Default)]
pub struct Health {
    pub ready: AtomicBool,
    pub shutting_down: AtomicBool,
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
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health/live", get(|| async { "live\n" }))
        .route("/health/ready", get(ready))
        .route("/health/detailed", get(detailed))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/status", get(status))
        .route("/api/v1/slos", get(slos))
        .with_state(state)
}

fn phase(h: &Health) -> &'static str {
    if h.shutting_down.load(Ordering::Relaxed) {
        "shutting_down"
    } else if h.ready.load(Ordering::Relaxed) {
        "ready"
    } else {
        "starting"
    }
}

async fn ready(State(st): State<Arc<AdminState>>) -> Response {
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
                "status": if failures == 0 { "ok" } else { "failing" },
            })
        })
        .collect();
    let receivers: Vec<_> = st
        .receivers
        .iter()
        .map(|r| json!({"name": r.name, "transport": r.transport, "endpoint": r.endpoint, "status": phase}))
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
    }))
    .into_response()
}

/// The SLOs the `slo` plugin computes, as this gateway sees them: events, burn rates per
/// window, error budget remaining.
async fn slos(State(st): State<Arc<AdminState>>) -> Response {
    axum::Json(json!({ "slos": st.emit.slos.snapshot() })).into_response()
}

async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sluice</title></head><body>",
        "<h1>Sluice</h1><ul>",
        "<li><a href=\"/health/detailed\">/health/detailed</a></li>",
        "<li><a href=\"/api/v1/status\">/api/v1/status</a></li>",
        "<li><a href=\"/metrics\">/metrics</a></li>",
        "<li><a href=\"/api/v1/slos\">/api/v1/slos</a></li>",
        "</ul></body></html>"
    ))
}
