//! Assembles a running gateway from a validated [`Config`], runs it until shutdown, and reloads
//! its config on request.
//!
//! Start order: exporters, pipelines, listeners (receivers, admin); readiness turns on last.
//! Shutdown order is the reverse of the data flow: readiness off, receivers stop accepting and
//! finish in-flight requests, pipelines drain into exporter queues, exporters deliver what they
//! hold within `service.shutdown_timeout`; whatever is still queued then is counted as dropped
//! with `reason="shutdown"`.
//!
//! A reload (SIGHUP, `--watch-config`, `POST /api/v1/config/reload`) loads the config again and
//! builds the next [`generation`] beside the running one: every plugin is instantiated and every
//! new listener bound before anything changes, so a config that fails any of it is refused and
//! the running one goes on. Exporters and processors whose settings did not change keep running
//! (queues, series, stores, plugin state); the others drain what they hold and stop. Listeners
//! keep their sockets and serve the new config's routers from the next request on
//! ([`listeners`]); one whose address, TLS or connection limit changed is replaced. The memory
//! limiter, the decode budget and the gateway's own logs and traces take a restart to change.

pub mod generation;
pub mod listeners;

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::reload::{ReloadRecord, ReloadRequest, ReloadStatus};
use crate::admin::{self, AdminState, Health};
use crate::config::Config;
use crate::limiter::MemoryLimiter;
use crate::pipeline::EmitRouter;
use crate::plugins::Processor;
use crate::telemetry::metrics::SelfMetrics;
use generation::{ADMIN_MAX_CONNECTIONS, Generation, Retired, RunningExporter};
use listeners::{Role, Wanted};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The message already carries the OS error (`cannot listen on ADDR for WHAT: …`); it is
    /// not also a `source`, which would print it twice in an error chain.
    #[error("{0}")]
    Bind(std::io::Error),
    #[error("exporter {name}: {message}")]
    Exporter { name: String, message: String },
    #[error("{0}")]
    Plugin(String),
    #[error("{0}")]
    Tls(String),
    #[error("receiver: {0}")]
    Receiver(String),
}

/// Where a reload gets the config again: the file (or the embedded defaults) with the same
/// flags and `SLUICE_*` overrides as at start.
pub struct ReloadSource {
    pub load: Arc<dyn Fn() -> Result<Config, String> + Send + Sync>,
    /// Watch this file and reload when it changes (`--watch-config`).
    pub watch: Option<std::path::PathBuf>,
}

/// What lives as long as the process, across reloads.
pub struct Shared {
    pub metrics: Arc<SelfMetrics>,
    pub health: Arc<Health>,
    pub limiter: Option<Arc<MemoryLimiter>>,
    pub in_flight: Arc<crate::receivers::InFlight>,
    pub series: crate::exporters::prometheus::SeriesStores,
    pub tap_budget: Arc<crate::pipeline::tap::TapBudget>,
    pub reload: Arc<ReloadStatus>,
    pub started: Instant,
    /// Whether SIGHUP reloads the config (else it reloads the plugins only).
    pub config_reload: bool,
}

/// An interval of a second that does not catch up on missed ticks.
fn every_second() -> tokio::time::Interval {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every
}

/// Waits for the next tick; false once `shutdown` is cancelled.
async fn tick_until(every: &mut tokio::time::Interval, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = every.tick() => true,
    }
}

/// Ticks every plugin about once a second (routing what they emit), reloads plugins whose
/// file changed, and reloads all of them on SIGHUP unless SIGHUP reloads the whole config
/// (which then reloads the plugins it keeps).
fn start_plugin_tasks(
    processors: Vec<Arc<Processor>>,
    emit: Arc<EmitRouter>,
    reload_interval: Duration,
    sighup: bool,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    if processors.is_empty() {
        return Vec::new();
    }
    let ticker = {
        let processors = processors.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut every = every_second();
            while tick_until(&mut every, &shutdown).await {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                for p in &processors {
                    let out = crate::rt::blocking(|| p.tick(now));
                    if !out.is_empty() {
                        emit.route(&p.name, out);
                    }
                }
            }
        })
    };
    let reloader = tokio::spawn(async move {
        let mut hangup = sighup
            .then(|| tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok())
            .flatten();
        // Polling is off with a zero interval: only SIGHUP reloads.
        let polling = !reload_interval.is_zero();
        let mut every = tokio::time::interval(reload_interval.max(Duration::from_millis(100)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            let force = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick(), if polling => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("Received SIGHUP: reloading plugins.");
                    true
                }
            };
            for p in &processors {
                let p = p.clone();
                let _ = tokio::task::spawn_blocking(move || p.reload(force)).await;
            }
        }
    });
    vec![ticker, reloader]
}

/// How long shutdown waits, after its timeout, for a pipeline to stop between batches.
const PIPELINE_STOP: Duration = Duration::from_secs(5);

/// Runs the gateway until `shutdown` is cancelled, then shuts down gracefully.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), GatewayError> {
    run_with_reload(config, shutdown, None).await
}

/// [`run`], reloading the config from `reload` on SIGHUP, on a change of the watched file and
/// on `POST /api/v1/config/reload`.
pub async fn run_with_reload(
    config: Config,
    shutdown: CancellationToken,
    reload: Option<ReloadSource>,
) -> Result<(), GatewayError> {
    let started = Instant::now();
    let metrics = Arc::new(SelfMetrics::new());
    let health = Arc::new(Health::default());
    // The memory limiter, checked before anything listens.
    let limiter_token = CancellationToken::new();
    let limiter = config.memory_limiter.as_ref().map(|c| {
        let l = MemoryLimiter::new(c);
        let _ = health.memory.set(l.clone());
        l.spawn(metrics.clone(), limiter_token.clone());
        l
    });
    let series = crate::exporters::prometheus::SeriesStores::default();
    metrics.register(Box::new(series.clone()));
    let shared = Shared {
        metrics: metrics.clone(),
        health: health.clone(),
        limiter,
        // One decode budget for all receivers.
        in_flight: Arc::new(crate::receivers::InFlight::new(
            config.in_flight_decode_bytes,
        )),
        series,
        tap_budget: Arc::default(),
        reload: Arc::default(),
        started,
        config_reload: reload.is_some(),
    };
    let (requests, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    if reload.is_some() {
        let _ = shared.reload.requests.set(requests.clone());
    }

    let mut generation = Generation::build(config, &shared, None)?;
    let wanted = std::mem::take(&mut generation.wanted);
    let mut running = listeners::bind_all(wanted, &metrics).await?;
    let admin = admin_listener(&generation, &running, &shared);
    running.extend(listeners::bind_all(vec![admin], &metrics).await?);
    shared.series.set(generation.series_stores());

    health.ready.store(true, Ordering::Relaxed);
    for l in &running {
        tracing::info!(listener = %l.what, endpoint = %l.bound, "Listening.");
    }
    let admin_endpoint = running
        .iter()
        .find(|l| l.what == ADMIN_WHAT)
        .map(|l| l.bound.clone())
        .unwrap_or_default();
    tracing::info!(admin = %admin_endpoint, pipelines = generation.config.pipelines.len(), startup_ms = started.elapsed().as_millis() as u64, "Sluice is ready.");

    let watchers = reload
        .as_ref()
        .map(|r| start_reload_triggers(r, requests.clone(), shutdown.clone()))
        .unwrap_or_default();
    drop(requests);
    let mut draining = Retired::default();
    loop {
        let request = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(r) = reload_rx.recv() => r,
        };
        let Some(source) = &reload else { continue };
        let record = reload_config(
            source,
            request.source,
            &mut generation,
            &mut running,
            &mut draining,
            &shared,
        )
        .await;
        let result = if record.ok { "success" } else { "failure" };
        metrics.config_reloads.with_label_values(&[result]).inc();
        shared.reload.reloads.fetch_add(1, Ordering::Relaxed);
        *shared
            .reload
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(record.clone());
        if let Some(reply) = request.reply {
            let _ = reply.send(record);
        }
    }
    for w in watchers {
        w.abort();
    }

    // Shutdown: stop taking data, drain, deliver.
    let config = &generation.config;
    tracing::info!(
        timeout_s = config.shutdown_timeout.as_secs_f64(),
        "Shutting down: draining queues."
    );
    health.shutting_down.store(true, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
    let (receivers, others): (Vec<_>, Vec<_>) =
        running.into_iter().partition(|l| l.role == Role::Receiver);
    let receiver_tasks: Vec<JoinHandle<()>> = receivers.into_iter().map(|l| l.stop()).collect();
    generation.scrape_token.cancel();
    for t in receiver_tasks
        .into_iter()
        .chain(std::mem::take(&mut generation.scrape_tasks))
    {
        let _ = tokio::time::timeout_at(deadline, t).await;
    }
    let mut cancels: Vec<_> = generation
        .pipelines
        .iter()
        .map(|p| p.cancel.clone())
        .collect();
    cancels.extend(draining.cancels.iter().cloned());
    let mut pipeline_tasks: Vec<_> = std::mem::take(&mut generation.pipelines)
        .into_iter()
        .map(|p| p.task)
        .collect();
    let mut exporter_tasks = Vec::new();
    let mut leftovers: Vec<Arc<RunningExporter>> = Vec::new();
    for e in generation.exporters.values() {
        // Only the pipelines keep the exporters' queues open from here on.
        exporter_tasks.extend(e.close());
        leftovers.push(e.clone());
    }
    leftovers.extend(draining.exporters.iter().cloned());
    // What earlier reloads retired and is still draining.
    pipeline_tasks.extend(std::mem::take(&mut draining.tasks));
    let aborts: Vec<_> = exporter_tasks.iter().map(|t| t.abort_handle()).collect();
    let drained = tokio::time::timeout_at(deadline, async {
        for t in &mut pipeline_tasks {
            let _ = t.await;
        }
        for t in exporter_tasks {
            let _ = t.await;
        }
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("All queues drained."),
        Err(_) => {
            // Pipelines stop between batches (one on its own thread finishes the plugin call
            // it is in, bounded by the plugin's timeout) and count what is left in their
            // queues; then the exporters' queues are counted.
            for c in &cancels {
                c.cancel();
            }
            for t in pipeline_tasks.iter_mut().filter(|t| !t.is_finished()) {
                if tokio::time::timeout(PIPELINE_STOP, &mut *t).await.is_err() {
                    t.abort();
                }
            }
            for a in &aborts {
                a.abort();
            }
            // Let the aborted tasks unwind (and release their queues) before counting.
            tokio::task::yield_now().await;
            let dropped: usize = leftovers.iter().map(|e| e.leftovers.discard()).sum();
            tracing::warn!(
                dropped_records = dropped,
                "Shutdown timeout reached with data still queued: in-memory queues are dropped (sluice_dropped_records_total{{reason=\"shutdown\"}}); disk queues keep theirs for the next start."
            );
        }
    }
    limiter_token.cancel();
    for t in std::mem::take(&mut generation.plugin_tasks) {
        t.abort();
    }
    for l in others {
        let _ = tokio::time::timeout(Duration::from_secs(3), l.stop()).await;
    }
    Ok(())
}

/// What the admin listener is called, for its messages and `listener` label.
const ADMIN_WHAT: &str = "the admin endpoint";

/// The admin endpoint over `generation`, as a listener to serve.
fn admin_listener(
    generation: &Generation,
    running: &[listeners::Running],
    shared: &Shared,
) -> Wanted {
    let config = &generation.config;
    let state = Arc::new(AdminState {
        scrapes: generation.scrapes.clone(),
        metrics: shared.metrics.clone(),
        health: shared.health.clone(),
        started: shared.started,
        receivers: generation.receiver_views(running),
        pipelines: generation.pipeline_views.clone(),
        exporters: generation
            .exporters
            .values()
            .map(|e| e.view.clone())
            .collect(),
        processors: generation
            .processors
            .values()
            .map(|(_, p)| p.clone())
            .collect(),
        emit: generation.emit.clone(),
        store: generation.store(),
        series: shared.series.clone(),
        tap_budget: shared.tap_budget.clone(),
        reload: shared.reload.clone(),
    });
    let router = admin::router(state);
    let router = if config.admin_auth.is_empty() {
        router
    } else {
        // The credentials check answers before the admin routes: its 401s get the same
        // security headers.
        protect_endpoint(router, &config.admin_auth)
            .layer(axum::middleware::from_fn(admin::security::security_headers))
    };
    Wanted {
        endpoint: config.admin_endpoint.clone(),
        what: ADMIN_WHAT.into(),
        tls: config.admin_tls.clone(),
        drain: Duration::from_secs(2),
        max_connections: ADMIN_MAX_CONNECTIONS,
        router,
        role: Role::Other,
        receiver: None,
    }
}

/// Settings a reload does not apply: they take a restart.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let debug = |v: &dyn std::fmt::Debug| format!("{v:?}");
    [
        (
            "service.memory_limiter",
            debug(&old.memory_limiter) != debug(&new.memory_limiter),
        ),
        (
            "service.limits.in_flight_decode_mib",
            old.in_flight_decode_bytes != new.in_flight_decode_bytes,
        ),
        (
            "service.telemetry.logs",
            debug(&old.logs) != debug(&new.logs),
        ),
        (
            "service.telemetry.traces",
            old.traces_endpoint != new.traces_endpoint,
        ),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(name, _)| name.to_string())
    .collect()
}

/// Loads the config again and swaps to it, or leaves everything as it was and says why.
async fn reload_config(
    source: &ReloadSource,
    trigger: &'static str,
    generation: &mut Generation,
    running: &mut Vec<listeners::Running>,
    draining: &mut Retired,
    shared: &Shared,
) -> ReloadRecord {
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let failed = |message: String| {
        tracing::error!(trigger, error = %message, "Config reload refused; the running config stays.");
        ReloadRecord {
            ok: false,
            source: trigger,
            time,
            message,
            restart_needed: Vec::new(),
        }
    };
    tracing::info!(trigger, "Reloading the config.");
    // The loader reads files: not on an async worker.
    let load = source.load.clone();
    let config = match tokio::task::spawn_blocking(move || load()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return failed(e),
        Err(e) => return failed(format!("loading the config failed: {e}")),
    };
    let restart = restart_needed(&generation.config, &config);
    // Building compiles and instantiates plugins: off the async workers.
    let next = tokio::task::block_in_place(|| Generation::build(config, shared, Some(generation)));
    let mut next = match next {
        Ok(g) => g,
        Err(e) => return failed(e.to_string()),
    };
    let wanted = std::mem::take(&mut next.wanted);
    let mut wanted_all = wanted;
    // The admin router is built once the receivers' addresses are known; until then a
    // placeholder keeps the admin listener's identity in the plan.
    let admin_placeholder = admin_listener(&next, running, shared);
    wanted_all.push(admin_placeholder);
    let plan = match listeners::plan(running, wanted_all, &shared.metrics).await {
        Ok(p) => p,
        Err(e) => {
            next.abandon(Some(generation));
            return failed(e.to_string());
        }
    };
    let (now, stopping, problems) =
        listeners::commit(std::mem::take(running), plan, &shared.metrics).await;
    *running = now;
    // The admin router again, with the receivers' bound addresses.
    listeners::swap(running, admin_listener(&next, running, shared));
    shared.series.set(next.series_stores());
    if trigger == "sighup" {
        // SIGHUP also reloads the plugins the config kept, from their files.
        for (name, (_, p)) in &next.processors {
            let kept = generation
                .processors
                .get(name)
                .is_some_and(|(_, old)| Arc::ptr_eq(old, p));
            if kept {
                let p = p.clone();
                let _ = tokio::task::spawn_blocking(move || p.reload(true)).await;
            }
        }
    }
    let previous = std::mem::replace(generation, next);
    let retired = previous.retire(generation);
    draining.tasks.retain(|t| !t.is_finished());
    draining.tasks.extend(stopping);
    draining.tasks.extend(retired.tasks);
    draining.cancels.extend(retired.cancels);
    draining.exporters.extend(retired.exporters);
    let message = if problems.is_empty() {
        format!(
            "reloaded: {} pipelines, {} processors ({} kept running), {} exporters ({} kept running)",
            generation.pipelines.len(),
            generation.processors.len(),
            generation.kept.0,
            generation.exporters.len(),
            generation.kept.1,
        )
    } else {
        problems.join("; ")
    };
    tracing::info!(trigger, restart_needed = ?restart, "{message}");
    ReloadRecord {
        ok: problems.is_empty(),
        source: trigger,
        time,
        message,
        restart_needed: restart,
    }
}

/// SIGHUP and, with `--watch-config`, a poll of the config file every second.
fn start_reload_triggers(
    source: &ReloadSource,
    requests: mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    {
        let requests = requests.clone();
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(()) = hangup.recv() => {
                        tracing::info!("Received SIGHUP: reloading the config and the plugins.");
                        let _ = requests.send(ReloadRequest { source: "sighup", reply: None }).await;
                    }
                }
            }
        }));
    }
    if let Some(path) = source.watch.clone() {
        tasks.push(tokio::spawn(async move {
            let stamp = |p: &std::path::Path| {
                std::fs::metadata(p)
                    .ok()
                    .map(|m| (m.modified().ok(), m.len()))
            };
            let mut last = stamp(&path);
            let mut every = every_second();
            while tick_until(&mut every, &shutdown).await {
                let now = stamp(&path);
                if now != last && now.is_some() {
                    last = now;
                    tracing::info!(path = %path.display(), "The config file changed.");
                    let _ = requests
                        .send(ReloadRequest {
                            source: "watch",
                            reply: None,
                        })
                        .await;
                }
            }
        }));
    }
    tasks
}

/// Requires one of `credentials` on every route but the probes.
fn protect_endpoint(
    router: axum::Router,
    credentials: &[crate::config::Credential],
) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(
        crate::receivers::auth::Credentials::new(credentials, None),
        crate::receivers::auth::require_endpoint,
    ))
}
