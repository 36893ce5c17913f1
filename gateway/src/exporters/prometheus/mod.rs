//! The `prometheus` exporter: a scrape endpoint (`GET /metrics`, default `127.0.0.1:9464`)
//! serving the metrics pipelines' data translated to Prometheus series.
//!
//! Batches update a [`super::series::Store`]; a scrape renders it in the text format 0.0.4, or in
//! OpenMetrics 1.0 (with exemplars) when the scraper asks for `application/openmetrics-text`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode, header};

use super::series::{Store, StoreConfig};
use super::{Delivered, ExportError};
use crate::config::PrometheusExporterConfig;
use crate::model::{Batch, Payload};
use crate::telemetry::metrics::SelfMetrics;
use futures_util::future::BoxFuture;

use super::{Built, Export};

pub struct PrometheusExporter {
    name: String,
    store: Arc<Mutex<Store>>,
    metrics: Arc<SelfMetrics>,
}

impl PrometheusExporter {
    pub fn new(name: &str, c: &PrometheusExporterConfig, metrics: Arc<SelfMetrics>) -> Self {
        PrometheusExporter {
            name: name.to_string(),
            store: Arc::new(Mutex::new(Store::new(store_config(c)))),
            metrics,
        }
    }

    pub fn send(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        let Payload::Metrics(req) = batch.payload() else {
            return Err(ExportError::permanent(
                "the prometheus exporter only takes metrics",
            ));
        };
        let report = {
            let mut store = self
                .store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let report = store.ingest(req, Instant::now(), None);
            self.metrics
                .exporter_series
                .with_label_values(&[&self.name])
                .set(store.series_count() as i64);
            report
        };
        let component = format!("exporter/{}", self.name);
        if report.over_max_series > 0 {
            tracing::warn!(exporter = %self.name, dropped = report.over_max_series, "Series limit reached; new series are dropped.");
            self.metrics
                .drop_records(&component, "metrics", "max_series", report.over_max_series);
        }
        if report.type_conflict > 0 {
            self.metrics
                .drop_records(&component, "metrics", "type_conflict", report.type_conflict);
        }
        Ok(Delivered::default())
    }

    /// The scrape endpoint's router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(scrape))
            .with_state(ScrapeState {
                store: self.store.clone(),
                render_duration: self
                    .metrics
                    .exporter_scrape_render_duration
                    .with_label_values(&[&self.name]),
            })
    }
}

pub fn store_config(c: &PrometheusExporterConfig) -> StoreConfig {
    StoreConfig {
        strategy: c.translation_strategy,
        expiration: c.metric_expiration,
        max_series: c.max_series,
        promote_resource_attributes: c.promote_resource_attributes.clone(),
        target_info: c.target_info,
    }
}

/// Series rendered per hold of the store's lock.
const RENDER_CHUNK: usize = 2048;

#[derive(Clone)]
struct ScrapeState {
    store: Arc<Mutex<Store>>,
    render_duration: ::prometheus::Histogram,
}

async fn scrape(State(state): State<ScrapeState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    // Off the async workers, and in chunks: a scrape of 100k series takes tens of
    // milliseconds, during which ingest must go on.
    let rendered = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let body = Store::render_chunked(&state.store, openmetrics, started, RENDER_CHUNK);
        state
            .render_duration
            .observe(started.elapsed().as_secs_f64());
        body
    })
    .await;
    let Ok(Some(body)) = rendered else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "series store poisoned").into_response();
    };
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

impl Export for PrometheusExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        // Decoding and storing a batch holds the series store for a millisecond or more: off
        // the async workers, so receivers keep answering meanwhile.
        Box::pin(async move { crate::rt::blocking(|| self.send(batch)) })
    }
}

/// The scrape endpoint's exporter, and its listener.
pub(super) fn build(name: &str, c: &PrometheusExporterConfig, metrics: &Arc<SelfMetrics>) -> Built {
    let e = PrometheusExporter::new(name, c, metrics.clone());
    let listener = (c.endpoint.clone(), e.router());
    let series = e.store.clone();
    let mut built = Built::new(e);
    built.listener = Some(listener);
    built.series = Some(series);
    built
}

/// An exporter's name and its series store.
pub type NamedStore = (String, Arc<Mutex<Store>>);

/// The series stores of the running `prometheus` exporters, by exporter name: set by the
/// gateway, read by the metrics explorer, and collected as `sluice_prometheus_series{exporter,
/// family}` (the series each family holds) when the gateway's own metrics are gathered.
#[derive(Clone)]
pub struct SeriesStores {
    stores: Arc<Mutex<Vec<NamedStore>>>,
    gauge: ::prometheus::IntGaugeVec,
}

impl Default for SeriesStores {
    fn default() -> Self {
        let gauge = ::prometheus::IntGaugeVec::new(
            ::prometheus::Opts::new(
                "sluice_prometheus_series",
                "Series a Prometheus exporter holds, per metric family.",
            ),
            &["exporter", "family"],
        )
        .expect("valid metric definition");
        SeriesStores {
            stores: Arc::default(),
            gauge,
        }
    }
}

impl std::fmt::Debug for SeriesStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.all().into_iter().map(|(n, _)| n).collect();
        f.debug_struct("SeriesStores")
            .field("exporters", &names)
            .finish()
    }
}

impl SeriesStores {
    pub fn set(&self, stores: Vec<NamedStore>) {
        *self.lock() = stores;
    }

    /// The exporters' names and stores.
    pub fn all(&self) -> Vec<NamedStore> {
        self.lock().clone()
    }

    pub fn get(&self, exporter: &str) -> Option<Arc<Mutex<Store>>> {
        self.lock()
            .iter()
            .find(|(n, _)| n == exporter)
            .map(|(_, s)| s.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<NamedStore>> {
        self.stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ::prometheus::core::Collector for SeriesStores {
    fn desc(&self) -> Vec<&::prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<::prometheus::proto::MetricFamily> {
        // Under the list's lock, so that two gathers do not interleave their resets.
        let stores = self.lock();
        self.gauge.reset();
        for (exporter, store) in stores.iter() {
            for (family, count) in super::series::explore::series_per_family(store) {
                self.gauge
                    .with_label_values(&[exporter.as_str(), family.as_str()])
                    .set(count as i64);
            }
        }
        self.gauge.collect()
    }
}
