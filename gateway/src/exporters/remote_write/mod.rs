//! The `prometheus_remote_write` exporter: sends metrics to Prometheus, Mimir, Thanos or Cortex
//! with the remote-write 1.0 protocol (snappy-compressed `WriteRequest`).
//!
//! Each batch is translated with the same rules as the scrape endpoint (its own series store,
//! so delta metrics are accumulated into cumulative series), split into shards by series so
//! that every series' samples stay in timestamp order, and sent in requests of at most
//! `max_samples_per_send` samples, shards in parallel. A failed send is retried by the
//! exporter's worker with the *same* samples (the batch is translated once), so a retry never
//! counts a delta twice; Prometheus accepts a repeated identical sample.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::join_all;

use super::series::{Collector, Kind, Labels, Series, Store, StoredExemplar, collect_series};
use super::{Delivered, ExportError};
use crate::build_info;
use crate::config::RemoteWriteExporterConfig;
use crate::model::{Batch, Payload};
use crate::prompb::{Label, Sample, TimeSeries, WriteRequest, encode_snappy};
use crate::telemetry::metrics::SelfMetrics;
use futures_util::future::BoxFuture;

use super::{Built, Export};

/// The time series of one batch, split by shard.
type Shards = Arc<Vec<Vec<TimeSeries>>>;

pub struct RemoteWriteExporter {
    name: String,
    client: reqwest::Client,
    endpoint: String,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    credentials: Option<Credentials>,
    max_samples: usize,
    shards: usize,
    store: Mutex<Store>,
    /// The translated samples of the batch being sent, kept for its retries.
    pending: Mutex<Option<(u64, Shards)>>,
    metrics: Arc<SelfMetrics>,
}

impl RemoteWriteExporter {
    pub fn new(
        name: &str,
        c: &RemoteWriteExporterConfig,
        metrics: Arc<SelfMetrics>,
    ) -> Result<Self, ExportError> {
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            ExportError::permanent(format!("exporter {name}: {what}: {e}"))
        };
        let mut headers = Vec::new();
        for (k, v) in &c.headers {
            headers.push((
                http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| invalid(k, &e))?,
                http::HeaderValue::from_str(v).map_err(|e| invalid(k, &e))?,
            ));
        }
        let credentials = credentials(c).map_err(|e| invalid("credentials", &e))?;
        let builder = reqwest::Client::builder()
            .timeout(c.timeout)
            .connect_timeout(c.timeout.min(Duration::from_secs(10)));
        let client = crate::tls::http_client(builder, c.tls.as_ref(), name)
            .map_err(|e| ExportError::permanent(format!("exporter {name}: {e}")))?
            .build()
            .map_err(|e| invalid("HTTP client", &e))?;
        Ok(RemoteWriteExporter {
            name: name.to_string(),
            client,
            endpoint: c.endpoint.clone(),
            headers,
            credentials,
            max_samples: c.max_samples_per_send.max(1),
            shards: c.shards.max(1),
            store: Mutex::new(Store::new(super::series::StoreConfig {
                strategy: c.translation_strategy,
                expiration: c.metric_expiration,
                max_series: c.max_series,
                promote_resource_attributes: c.promote_resource_attributes.clone(),
                target_info: false,
            })),
            pending: Mutex::new(None),
            metrics,
        })
    }

    pub async fn send(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        let shards = self.shards_for(batch)?;
        let results = join_all(shards.iter().map(|series| self.send_shard(series))).await;
        // The first error decides whether the worker retries; all shards are then re-sent.
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(e);
        }
        *self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        Ok(Delivered::default())
    }

    /// Translates the batch once; retries of the same batch reuse the result.
    fn shards_for(&self, batch: &Batch) -> Result<Shards, ExportError> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((id, shards)) = pending.as_ref()
            && *id == batch.id
        {
            return Ok(shards.clone());
        }
        let Payload::Metrics(req) = batch.payload() else {
            return Err(ExportError::permanent(
                "the prometheus_remote_write exporter only takes metrics",
            ));
        };
        let mut store = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut touched = Vec::new();
        let report = store.ingest(req, Instant::now(), Some(&mut touched));
        let component = format!("exporter/{}", self.name);
        if report.over_max_series > 0 {
            self.metrics
                .drop_records(&component, "metrics", "max_series", report.over_max_series);
        }
        if report.type_conflict > 0 {
            self.metrics
                .drop_records(&component, "metrics", "type_conflict", report.type_conflict);
        }
        let mut seen = HashSet::new();
        let mut shards: Vec<Vec<TimeSeries>> = vec![Vec::new(); self.shards];
        for key in touched {
            if !seen.insert(key.clone()) {
                continue;
            }
            let (name, labels) = key;
            let Some(family) = store.families().get(&name) else {
                continue;
            };
            let Some(series) = family.series.get(&labels) else {
                continue;
            };
            let ts_ms = match series.time_unix_nano {
                0 => now_ms(),
                t => (t / 1_000_000) as i64,
            };
            for ts in time_series(&name, family.kind, &labels, series, ts_ms) {
                let mut h = DefaultHasher::new();
                ts.labels.hash(&mut h);
                shards[(h.finish() % self.shards as u64) as usize].push(ts);
            }
        }
        let shards = Arc::new(shards);
        *pending = Some((batch.id, shards.clone()));
        Ok(shards)
    }

    async fn send_shard(&self, series: &[TimeSeries]) -> Result<(), ExportError> {
        let mut start = 0;
        while start < series.len() {
            // Fill a request up to max_samples_per_send samples (at least one series).
            let mut end = start;
            let mut samples = 0;
            while end < series.len()
                && (end == start || samples + series[end].samples.len() <= self.max_samples)
            {
                samples += series[end].samples.len();
                end += 1;
            }
            let request = WriteRequest {
                timeseries: series[start..end].to_vec(),
                metadata: Vec::new(),
            };
            self.post(&request).await?;
            start = end;
        }
        Ok(())
    }

    async fn post(&self, write: &WriteRequest) -> Result<(), ExportError> {
        let body: Bytes =
            encode_snappy(write).map_err(|e| ExportError::permanent(format!("snappy: {e}")))?;
        let mut request = self
            .client
            .post(&self.endpoint)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(http::header::CONTENT_ENCODING, "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(
                http::header::USER_AGENT,
                format!("sluice/{}", build_info::VERSION),
            );
        for (k, v) in &self.headers {
            request = request.header(k, v);
        }
        request = match &self.credentials {
            Some(Credentials::Basic { username, password }) => {
                request.basic_auth(username, Some(password))
            }
            Some(Credentials::Bearer(token)) => request.bearer_auth(token),
            None => request,
        };
        let response = request.body(body).send().await.map_err(|e| {
            ExportError::retryable(format!(
                "POST {}: {}",
                self.endpoint,
                super::error_chain(&e)
            ))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = super::retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let detail: String = text.chars().take(300).collect();
        Err(ExportError {
            message: format!("POST {}: HTTP {status}: {}", self.endpoint, detail.trim()),
            retryable: status.is_server_error() || status.as_u16() == 429,
            retry_after,
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Remote write's rendering of the series store: one `TimeSeries` per sample, with its labels
/// and `__name__` (and `le` or `quantile`) sorted by name.
struct TimeSeriesCollector {
    ts_ms: i64,
    out: Vec<TimeSeries>,
}

impl Collector for TimeSeriesCollector {
    fn series(&mut self, _kind: Kind, _labels: &Labels) {}

    fn sample(
        &mut self,
        name: &str,
        labels: &Labels,
        extra: Option<(&str, &str)>,
        value: f64,
        _exemplar: Option<&StoredExemplar>,
    ) {
        let mut set: BTreeSet<Label> = labels
            .iter()
            .map(|(n, v)| Label {
                name: n.clone(),
                value: v.clone(),
            })
            .collect();
        set.insert(Label {
            name: "__name__".into(),
            value: name.to_string(),
        });
        if let Some((n, v)) = extra {
            set.insert(Label {
                name: n.into(),
                value: v.into(),
            });
        }
        let mut labels: Vec<Label> = set.into_iter().collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        self.out.push(TimeSeries {
            labels,
            samples: vec![Sample {
                value,
                timestamp: self.ts_ms,
            }],
            ..Default::default()
        });
    }
}

/// The time series of one stored series, at `ts_ms`.
pub fn time_series(
    name: &str,
    kind: Kind,
    labels: &Labels,
    series: &Series,
    ts_ms: i64,
) -> Vec<TimeSeries> {
    let mut c = TimeSeriesCollector {
        ts_ms,
        out: Vec::new(),
    };
    collect_series(&mut c, name, kind, labels, series);
    c.out
}
/// Credentials for a remote-write backend, with secret files read.
#[derive(Clone)]
pub enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// The backend's credentials, with secret files read.
fn credentials(c: &RemoteWriteExporterConfig) -> std::io::Result<Option<Credentials>> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    if let Some(b) = &c.basic_auth {
        let password = match (&b.password_file, &b.password) {
            (Some(f), _) => read(f)?,
            (None, Some(p)) => p.clone(),
            (None, None) => String::new(),
        };
        return Ok(Some(Credentials::Basic {
            username: b.username.clone(),
            password,
        }));
    }
    Ok(match (&c.bearer_token_file, &c.bearer_token) {
        (Some(f), _) => Some(Credentials::Bearer(read(f)?)),
        (None, Some(t)) => Some(Credentials::Bearer(t.clone())),
        (None, None) => None,
    })
}

impl Export for RemoteWriteExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(self.send(batch))
    }
}

pub(super) fn build(
    name: &str,
    c: &RemoteWriteExporterConfig,
    metrics: &Arc<SelfMetrics>,
) -> Result<Built, ExportError> {
    let e = RemoteWriteExporter::new(name, c, metrics.clone())?;
    Ok(Built::new(e).retrying(&c.retry_on_failure))
}
