//! `receivers.prometheus`: pulls metrics from Prometheus targets into the metrics pipelines.
//!
//! Per job, a task keeps the targets current: it refreshes the job's discovery sources every
//! second ([`discovery`]), turns their groups into targets with `relabel_configs`, and starts
//! or stops one scrape loop per target ([`scrape`]). Each loop's batch enters the pipelines
//! like any received batch ([`Intake::accept`]), so the plugins see scraped metrics too.
//! Scrapes in flight are bounded by `max_concurrent_scrapes` and the in-flight memory budget;
//! targets and their last error are in [`ScrapeRegistry`], which the status API serves.

pub mod discovery;
pub mod http;
pub mod kubernetes;
pub mod scrape;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{GlobalConfig, PrometheusReceiverConfig, ScrapeConfig};
use crate::scrape::expfmt::Limits;
use crate::scrape::relabel::{Rule, compile_all};

use super::Intake;
use discovery::{Source, TargetSpec};
use http::Credentials;
use scrape::{Job, Loop, TargetStatus};

/// How often discovery sources are looked at.
const DISCOVERY_TICK: Duration = Duration::from_secs(1);

/// A target within a receiver: its job and key.
type TargetId = (String, u64);

/// Every target of a receiver, for the status API.
#[derive(Debug, Default)]
pub struct ScrapeRegistry {
    pub receiver: String,
    targets: Mutex<BTreeMap<TargetId, Arc<Mutex<TargetStatus>>>>,
    /// The last discovery problem per job.
    discovery_errors: Mutex<BTreeMap<String, String>>,
}

impl ScrapeRegistry {
    pub fn targets(&self) -> Vec<TargetStatus> {
        let Ok(targets) = self.targets.lock() else {
            return Vec::new();
        };
        targets
            .values()
            .filter_map(|t| t.lock().ok().map(|t| t.clone()))
            .collect()
    }

    pub fn discovery_errors(&self) -> BTreeMap<String, String> {
        self.discovery_errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }
}

/// Starts the receiver's job tasks; they stop when `shutdown` is cancelled.
pub fn start(
    name: &str,
    config: &PrometheusReceiverConfig,
    intake: Intake,
    shutdown: CancellationToken,
) -> Result<(Vec<JoinHandle<()>>, Arc<ScrapeRegistry>), String> {
    let registry = Arc::new(ScrapeRegistry {
        receiver: name.to_string(),
        ..Default::default()
    });
    let concurrency = Arc::new(Semaphore::new(config.max_concurrent_scrapes));
    let mut seed_hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut seed_hasher);
    let seed = seed_hasher.finish();
    let global = &config.config.global;
    let mut tasks = Vec::new();
    for job_config in &config.config.scrape_configs {
        let job = build_job(name, job_config)?;
        let target_rules = compile_all(&job_config.relabel_configs)
            .map_err(|e| format!("job {}: relabel_configs: {e:?}", job_config.job_name))?;
        let mut sources = vec![Source::Static(job_config.static_configs.clone())];
        for sd in &job_config.file_sd_configs {
            sources.push(Source::file(sd.clone()));
        }
        for sd in &job_config.http_sd_configs {
            let client = http::client(
                sd.tls_config.as_ref(),
                true,
                true,
                &format!("http_sd of job {}", job_config.job_name),
            )?;
            let credentials = Credentials::new(
                sd.basic_auth.as_ref(),
                sd.authorization.as_ref(),
                None,
                None,
            );
            sources.push(Source::http(sd.clone(), client, credentials));
        }
        for sd in &job_config.kubernetes_sd_configs {
            sources.push(Source::Kubernetes(Box::new(
                kubernetes::KubernetesSource::new(sd.clone()),
            )));
        }
        let manager = JobManager {
            job: Arc::new(job),
            config: job_config.clone(),
            global: global.clone(),
            target_rules,
            sources,
            seed,
            intake: intake.clone(),
            concurrency: concurrency.clone(),
            registry: registry.clone(),
            running: HashMap::new(),
            shutdown: shutdown.clone(),
        };
        tasks.push(tokio::spawn(manager.run()));
    }
    Ok((tasks, registry))
}

fn build_job(receiver: &str, c: &ScrapeConfig) -> Result<Job, String> {
    let client = http::client(
        c.tls_config.as_ref(),
        c.follow_redirects,
        c.enable_http2,
        &format!("job {}", c.job_name),
    )?;
    let metric_relabel = compile_all(&c.metric_relabel_configs)
        .map_err(|e| format!("job {}: metric_relabel_configs: {e:?}", c.job_name))?;
    // With metric relabeling the limit applies to what the rules keep (counted while mapping);
    // without, the parser stops at it and never holds more.
    let parse_limit = if metric_relabel.is_empty() {
        c.sample_limit
    } else {
        0
    };
    Ok(Job {
        receiver: receiver.into(),
        name: c.job_name.clone(),
        client,
        credentials: Credentials::new(
            c.basic_auth.as_ref(),
            c.authorization.as_ref(),
            c.bearer_token.as_ref(),
            c.bearer_token_file.as_ref(),
        ),
        honor_labels: c.honor_labels,
        honor_timestamps: c.honor_timestamps,
        sample_limit: c.sample_limit,
        limits: Limits {
            max_samples: parse_limit,
            max_labels: c.label_limit,
            max_label_name_len: c.label_name_length_limit,
            max_label_value_len: c.label_value_length_limit,
        },
        body_limit: c.body_limit(),
        metric_relabel,
    })
}

struct Running {
    removed: CancellationToken,
    task: JoinHandle<()>,
}

struct JobManager {
    job: Arc<Job>,
    config: ScrapeConfig,
    global: GlobalConfig,
    target_rules: Vec<Rule>,
    sources: Vec<Source>,
    seed: u64,
    intake: Intake,
    concurrency: Arc<Semaphore>,
    registry: Arc<ScrapeRegistry>,
    running: HashMap<u64, Running>,
    shutdown: CancellationToken,
}

impl JobManager {
    async fn run(mut self) {
        let mut first = true;
        let mut ticks = tokio::time::interval(DISCOVERY_TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let mut failures = Vec::new();
            let mut changed = first;
            for source in &mut self.sources {
                changed |= source.refresh(&mut failures).await;
            }
            first = false;
            let m = &self.intake.self_metrics;
            for f in &failures {
                m.scrape_discovery_failures
                    .with_label_values(&[&*self.job.receiver, &self.job.name, f.mechanism])
                    .inc();
                tracing::warn!(receiver = %self.job.receiver, job = %self.job.name, mechanism = f.mechanism, error = %f.message, "Service discovery failed; the last good targets stay.");
            }
            if let Some(f) = failures.last()
                && let Ok(mut errors) = self.registry.discovery_errors.lock()
            {
                errors.insert(self.job.name.clone(), f.message.clone());
            }
            if changed {
                if failures.is_empty()
                    && let Ok(mut errors) = self.registry.discovery_errors.lock()
                {
                    // The sources read cleanly again: the last problem is over.
                    errors.remove(&self.job.name);
                }
                self.reconcile();
            }
        }
        for (_, r) in self.running.drain() {
            let _ = r.task.await;
        }
    }

    /// Starts loops for new targets and stops those of targets that are gone.
    fn reconcile(&mut self) {
        let groups = self.sources.iter().flat_map(|s| s.groups());
        let (specs, dropped, invalid) = discovery::targets(
            &self.config,
            &self.global,
            &self.target_rules,
            groups,
            self.seed,
        );
        if let Some(reason) = &invalid {
            tracing::warn!(receiver = %self.job.receiver, job = %self.job.name, dropped, reason = %reason, "Some discovered targets are not scraped.");
            if let Ok(mut errors) = self.registry.discovery_errors.lock() {
                errors.insert(self.job.name.clone(), reason.clone());
            }
        }
        let wanted = discovery::by_key(specs);
        let gone: Vec<u64> = self
            .running
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(r) = self.running.remove(&key) {
                r.removed.cancel();
                drop(r.task);
            }
            if let Ok(mut targets) = self.registry.targets.lock() {
                targets.remove(&(self.job.name.clone(), key));
            }
        }
        for (key, spec) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            self.spawn(spec);
        }
        self.intake
            .self_metrics
            .scrape_targets
            .with_label_values(&[&*self.job.receiver, &self.job.name])
            .set(self.running.len() as i64);
        tracing::info!(receiver = %self.job.receiver, job = %self.job.name, targets = self.running.len(), "Scrape targets updated.");
    }

    fn spawn(&mut self, spec: TargetSpec) {
        let status = Arc::new(Mutex::new(TargetStatus::new(&self.job.name, &spec)));
        if let Ok(mut targets) = self.registry.targets.lock() {
            targets.insert((self.job.name.clone(), spec.key), status.clone());
        }
        let removed = CancellationToken::new();
        let key = spec.key;
        let task = tokio::spawn(
            Loop {
                job: self.job.clone(),
                spec,
                intake: self.intake.clone(),
                concurrency: self.concurrency.clone(),
                status,
                removed: removed.clone(),
                shutdown: self.shutdown.clone(),
            }
            .run(),
        );
        self.running.insert(key, Running { removed, task });
    }
}
