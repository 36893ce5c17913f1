//! One target's scrape loop: at the target's slot in each interval (spread by its hash, as
//! Prometheus spreads them), take a place among the receiver's concurrent scrapes, GET the
//! target within its timeout and body limit, parse and map the body on the blocking pool when
//! it is large, and hand the batch and the `up`/`scrape_*` series to the pipelines.
//!
//! A failed scrape (timeout, connection, status, size, parse, limits) is `up` 0 with the
//! previous scrape's series marked stale, and its reason is kept for the status API and
//! counted in `sluice_scrape_requests_total{result}`. A target cannot hold up another: each
//! has its own task, and its work is bounded by its timeout and its body limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::discovery::TargetSpec;
use super::http::{ACCEPT, Credentials, USER_AGENT};
use crate::model::Payload;
use crate::receivers::{InFlight, Intake, Reservation, Transport};
use crate::scrape::expfmt::{self, Format, Limits};
use crate::scrape::otlp::{Counts, Options, SeriesMemory, report};
use crate::scrape::relabel::Rule;
use crate::telemetry::error_chain;

/// Bodies at least this large are parsed on the blocking pool.
const OFFLOAD_BYTES: usize = 64 * 1024;
/// Memory reserved per body byte: the body, the parsed samples, and the OTLP they become.
const EXPANSION: u64 = 8;

/// What a job's targets share.
#[derive(Debug)]
pub struct Job {
    pub receiver: Arc<str>,
    pub name: String,
    pub client: reqwest::Client,
    pub credentials: Credentials,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub sample_limit: usize,
    pub limits: Limits,
    pub body_limit: u64,
    pub metric_relabel: Vec<Rule>,
}

/// A target as the status API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetStatus {
    pub job: String,
    pub url: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub discovered_labels: std::collections::BTreeMap<String, String>,
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: &'static str,
    pub last_error: Option<String>,
    /// Unix seconds.
    pub last_scrape: Option<f64>,
    pub last_scrape_duration_seconds: f64,
    pub last_samples: usize,
    pub scrape_interval_seconds: f64,
    pub scrape_timeout_seconds: f64,
}

impl TargetStatus {
    pub fn new(job: &str, spec: &TargetSpec) -> TargetStatus {
        TargetStatus {
            job: job.to_string(),
            url: spec.url.clone(),
            labels: spec.target.labels.iter().cloned().collect(),
            discovered_labels: spec.discovered.iter().cloned().collect(),
            health: "unknown",
            last_error: None,
            last_scrape: None,
            last_scrape_duration_seconds: 0.0,
            last_samples: 0,
            scrape_interval_seconds: spec.interval.as_secs_f64(),
            scrape_timeout_seconds: spec.timeout.as_secs_f64(),
        }
    }
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("no answer within the scrape timeout of {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Connection(String),
    #[error("server returned HTTP status {0}")]
    Status(http::StatusCode),
    #[error("body size limit exceeded: more than {0} bytes (body_size_limit)")]
    TooLarge(u64),
    #[error("{0}")]
    Parse(#[from] expfmt::ParseError),
    #[error("{0}")]
    SampleLimit(crate::scrape::otlp::MapError),
    #[error("skipped: the gateway's in-flight memory budget is spent ({0})")]
    InFlight(String),
    #[error("the batch was not taken: {0}")]
    Refused(String),
}

impl ScrapeError {
    pub fn result(&self) -> &'static str {
        match self {
            ScrapeError::Timeout(_) => "timeout",
            ScrapeError::Connection(_) => "connection",
            ScrapeError::Status(_) => "http_status",
            ScrapeError::TooLarge(_) => "body_too_large",
            ScrapeError::Parse(expfmt::ParseError::SampleLimit { .. })
            | ScrapeError::SampleLimit(_) => "sample_limit",
            ScrapeError::Parse(
                expfmt::ParseError::LabelLimit { .. } | expfmt::ParseError::LabelLength { .. },
            ) => "label_limit",
            ScrapeError::Parse(_) => "parse_error",
            ScrapeError::InFlight(_) => "in_flight_budget",
            ScrapeError::Refused(_) => "refused",
        }
    }
}

/// Where this target scrapes within each interval: an offset from its hash, so that targets
/// spread over the interval and a target keeps its slot across restarts.
pub fn first_delay(key: u64, interval: Duration) -> Duration {
    let interval_ns = interval.as_nanos().max(1) as u64;
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let base = interval_ns - now_ns % interval_ns;
    let offset = key % interval_ns;
    let mut next = base + offset;
    if next > interval_ns {
        next -= interval_ns;
    }
    Duration::from_nanos(next)
}

pub struct Loop {
    pub job: Arc<Job>,
    pub spec: TargetSpec,
    pub intake: Intake,
    pub concurrency: Arc<Semaphore>,
    pub status: Arc<Mutex<TargetStatus>>,
    /// Cancelled when the target goes away: its series are then marked stale.
    pub removed: CancellationToken,
    /// Cancelled at shutdown.
    pub shutdown: CancellationToken,
}

impl Loop {
    pub async fn run(self) {
        let mut memory = Some(SeriesMemory::default());
        let start = tokio::time::Instant::now() + first_delay(self.spec.key, self.spec.interval);
        let mut ticks = tokio::time::interval_at(start, self.spec.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.removed.cancelled() => {
                    if let Some(m) = memory.as_mut() {
                        let (request, n) = m.all_stale(&self.spec.target, now_ns());
                        if n > 0 {
                            let _ = self.hand_over(request).await;
                        }
                    }
                    return;
                }
                _ = ticks.tick() => {}
            }
            let scrape = self.scrape(&mut memory);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = scrape => {}
            }
        }
    }

    async fn scrape(&self, memory: &mut Option<SeriesMemory>) {
        let started = Instant::now();
        let time_ns = now_ns();
        let job = &self.job;
        let labels = [&*job.receiver, job.name.as_str()];
        let outcome = self.scrape_once(memory, time_ns).await;
        let took = started.elapsed();
        let m = &self.intake.self_metrics;
        // The samples and the `up`/`scrape_*` series travel in one batch, so no reader sees a
        // target up before its samples arrive.
        let (up, counts, error) = match outcome {
            Ok((mut request, counts)) => {
                let report = report(&self.spec.target, time_ns, true, took, &counts);
                request.resource_metrics.extend(report.resource_metrics);
                (true, counts, self.hand_over(request).await.err())
            }
            Err(e) => {
                let mut counts = Counts::default();
                let mut request = match memory.as_mut() {
                    Some(mem) => {
                        let (request, n) = mem.all_stale(&self.spec.target, time_ns);
                        counts.stale = n;
                        request
                    }
                    None => Default::default(),
                };
                let report = report(&self.spec.target, time_ns, false, took, &counts);
                request.resource_metrics.extend(report.resource_metrics);
                // A refusal here changes nothing: the scrape's own failure is what is reported.
                let _ = self.hand_over(request).await;
                (false, counts, Some(e))
            }
        };
        let result = error.as_ref().map_or("success", ScrapeError::result);
        m.scrape_requests
            .with_label_values(&[labels[0], labels[1], result])
            .inc();
        m.scrape_duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
        m.scrape_samples
            .with_label_values(&[labels[0], labels[1], "scraped"])
            .inc_by(counts.scraped as u64);
        m.scrape_samples
            .with_label_values(&[labels[0], labels[1], "kept"])
            .inc_by(counts.post_relabel as u64);
        if let Some(e) = &error {
            tracing::debug!(receiver = %job.receiver, job = %job.name, url = %self.spec.url, error = %e, "Scrape failed.");
        }
        if let Ok(mut s) = self.status.lock() {
            s.health = if up { "up" } else { "down" };
            s.last_error = error.map(|e| e.to_string());
            s.last_scrape = Some(time_ns as f64 / 1e9);
            s.last_scrape_duration_seconds = took.as_secs_f64();
            s.last_samples = counts.scraped;
        }
    }

    /// The scrape's batch and counts, or why there is none.
    async fn scrape_once(
        &self,
        memory: &mut Option<SeriesMemory>,
        time_ns: u64,
    ) -> Result<
        (
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
            Counts,
        ),
        ScrapeError,
    > {
        let timeout = self.spec.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let _permit = tokio::time::timeout_at(deadline, self.concurrency.clone().acquire_owned())
            .await
            .map_err(|_| ScrapeError::Timeout(timeout))?
            .map_err(|_| ScrapeError::Connection("the receiver is stopping".into()))?;
        let job = &self.job;
        let mut request = job
            .client
            .get(&self.spec.url)
            .header(http::header::ACCEPT, ACCEPT)
            .header(http::header::ACCEPT_ENCODING, "identity")
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", timeout.as_secs_f64()),
            );
        if let Some(value) = job.credentials.header().map_err(ScrapeError::Connection)? {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        let budget = self.intake.in_flight();
        let fetched = tokio::time::timeout_at(deadline, async {
            let response = request
                .send()
                .await
                .map_err(|e| ScrapeError::Connection(error_chain(&e)))?;
            if response.status() != http::StatusCode::OK {
                return Err(ScrapeError::Status(response.status()));
            }
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = read_reserving(response, job.body_limit, &budget).await?;
            Ok((body, content_type))
        })
        .await
        .map_err(|_| ScrapeError::Timeout(timeout))??;
        let ((body, _reserved), content_type) = fetched;
        let format = Format::from_content_type(&content_type);
        let size = body.len();
        let mut mem = memory.take().unwrap_or_default();
        let job = self.job.clone();
        let target = self.spec.target.clone();
        let work = move || {
            let parsed = expfmt::parse(&body, format, &job.limits);
            drop(body);
            let result = parsed.map_err(ScrapeError::Parse).and_then(|families| {
                let options = Options {
                    honor_labels: job.honor_labels,
                    honor_timestamps: job.honor_timestamps,
                    sample_limit: job.sample_limit,
                    metric_relabel: &job.metric_relabel,
                };
                mem.map(&target, families, time_ns, &options)
                    .map_err(ScrapeError::SampleLimit)
            });
            (result, mem)
        };
        let (result, mem) = if size >= OFFLOAD_BYTES {
            match tokio::task::spawn_blocking(work).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(job = %self.job.name, url = %self.spec.url, error = %e, "Parsing a scrape failed unexpectedly.");
                    return Err(ScrapeError::Connection(
                        "internal error while parsing".into(),
                    ));
                }
            }
        } else {
            work()
        };
        *memory = Some(mem);
        result
    }

    /// Hands a batch to the pipelines; a refusal is the reason.
    async fn hand_over(
        &self,
        request: opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
    ) -> Result<(), ScrapeError> {
        if request.resource_metrics.is_empty() {
            return Ok(());
        }
        let correlation: Arc<str> = format!("scrape-{:016x}", self.spec.key).into();
        self.intake
            .accept(
                Transport::Scrape,
                Payload::Metrics(request),
                None,
                correlation,
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| ScrapeError::Refused(e.to_string()))
    }
}

/// Reads the body up to `limit`, reserving [`EXPANSION`] times what arrives from the in-flight
/// budget as it arrives (in steps of at least 1 MiB), so that many large scrapes at once wait
/// for room instead of adding up.
async fn read_reserving(
    mut response: reqwest::Response,
    limit: u64,
    budget: &Arc<InFlight>,
) -> Result<(Vec<u8>, Vec<Reservation>), ScrapeError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(ScrapeError::TooLarge(limit));
    }
    let mut body = Vec::new();
    let mut reserved = Vec::new();
    let mut held = 0u64;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok((body, reserved)),
            Err(e) => {
                return Err(ScrapeError::Connection(format!(
                    "reading the body: {}",
                    error_chain(&e)
                )));
            }
        };
        let total = body.len() as u64 + chunk.len() as u64;
        if total > limit {
            return Err(ScrapeError::TooLarge(limit));
        }
        let want = total.saturating_mul(EXPANSION).min(budget.capacity());
        if want > held {
            let step = (want - held)
                .max(1 << 20)
                .min(budget.capacity().saturating_sub(held).max(1));
            let r = budget
                .reserve(step, crate::receivers::in_flight::WAIT)
                .await
                .map_err(|e| ScrapeError::InFlight(e.to_string()))?;
            reserved.push(r);
            held += step;
        }
        body.extend_from_slice(&chunk);
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
