//! Assembles a running gateway from a validated [`Config`] and runs it until shutdown.
//!
//! Start order: exporters, pipelines, listeners (receivers, admin); readiness turns on last.
//! Shutdown order is the reverse of the data flow: readiness off, receivers stop accepting and
//! finish in-flight requests, pipelines drain into exporter queues, exporters deliver what they
//! hold within `service.shutdown_timeout`; whatever is still queued then is counted as dropped
//! with `reason="shutdown"`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, ExporterView, Health, PipelineView, ReceiverView};
use crate::config::{Config, ProcessorSpec, ReceiverKind};
use crate::exporters::Exporter;
use crate::limiter::MemoryLimiter;
use crate::pipeline::{EmitRouter, Pipeline};
use crate::plugins::{PluginEngine, Processor};
use crate::receivers::auth::Authenticator;
use crate::receivers::{Intake, otlp, remote_write};
use crate::server;
use crate::telemetry::metrics::SelfMetrics;

/// How long a connection may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections at once on the admin and scrape endpoints.
const ADMIN_MAX_CONNECTIONS: usize = 256;

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

/// Ticks every plugin about once a second (routing what they emit), reloads plugins whose
/// file changed, and reloads all of them on SIGHUP.
fn start_plugin_tasks(
    processors: Vec<Arc<Processor>>,
    emit: Arc<EmitRouter>,
    reload_interval: Duration,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    if processors.is_empty() {
        return Vec::new();
    }
    let ticker = {
        let processors = processors.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = every.tick() => {}
                }
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
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
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
    let started = Instant::now();
    let metrics = Arc::new(SelfMetrics::new());
    let health = Arc::new(Health::default());

    // Exporters used by at least one pipeline.
    let mut exporters: BTreeMap<String, Exporter> = BTreeMap::new();
    for spec in &config.exporters {
        if !config
            .pipelines
            .iter()
            .any(|p| p.exporters.contains(&spec.name))
        {
            tracing::warn!(exporter = %spec.name, "Exporter is not used by any pipeline.");
            continue;
        }
        let exporter =
            Exporter::build(spec, metrics.clone()).map_err(|e| GatewayError::Exporter {
                name: spec.name.clone(),
                message: e.message,
            })?;
        exporters.insert(spec.name.clone(), exporter);
    }

    // Processors: every plugin is compiled, instantiated and initialised before anything
    // listens, so a plugin that cannot start stops the gateway with its reason.
    let mut processors: BTreeMap<String, Arc<Processor>> = BTreeMap::new();
    let used: Vec<&ProcessorSpec> = config
        .processors
        .iter()
        .filter(|p| {
            config
                .pipelines
                .iter()
                .any(|pl| pl.processors.contains(&p.name))
        })
        .collect();
    if !used.is_empty() {
        let engine = PluginEngine::new(config.plugin_cache_dir.clone())
            .map_err(|e| GatewayError::Plugin(format!("cannot start the plugin engine: {e:#}")))?;
        for spec in used {
            let loaded = Processor::load(spec.clone(), engine.clone(), metrics.clone())
                .map_err(|e| GatewayError::Plugin(e.to_string()))?;
            tracing::info!(processor = %spec.name, plugin = %loaded.status().plugin, version = %loaded.status().version, "Plugin loaded.");
            processors.insert(spec.name.clone(), Arc::new(loaded));
        }
    }
    let emit = EmitRouter::new();

    // Pipelines.
    let mut pipelines = Vec::new();
    let mut pipeline_views = Vec::new();
    for spec in &config.pipelines {
        let handles = spec
            .exporters
            .iter()
            .filter_map(|name| exporters.get(name).map(|e| e.handle.clone()))
            .collect();
        let chain = spec
            .processors
            .iter()
            .filter_map(|name| processors.get(name).cloned())
            .collect();
        let pipeline = Pipeline::start(
            &spec.name,
            spec.signal,
            spec.queue_size,
            chain,
            handles,
            emit.clone(),
            metrics.clone(),
        );
        pipeline_views.push(PipelineView {
            name: spec.name.clone(),
            signal: spec.signal,
            receivers: spec.receivers.clone(),
            processors: spec.processors.clone(),
            exporters: spec.exporters.clone(),
            queue: pipeline.probe(),
            capacity: spec.queue_size,
            taps: pipeline.taps.clone(),
        });
        pipelines.push(pipeline);
    }
    emit.connect(&pipelines, metrics.clone());
    let plugin_tasks = start_plugin_tasks(
        processors.values().cloned().collect(),
        emit.clone(),
        config.plugin_reload_interval,
        shutdown.clone(),
    );
    let store = exporters.values().find_map(|e| e.store.clone());
    let series = crate::exporters::prometheus::SeriesStores::default();
    series.set(
        exporters
            .iter()
            .filter_map(|(name, e)| Some((name.clone(), e.series.clone()?)))
            .collect(),
    );
    metrics.register(Box::new(series.clone()));
    let exporter_views: Vec<ExporterView> = exporters
        .values()
        .map(|e| ExporterView {
            name: e.handle.name.to_string(),
            queue: e.queue.clone(),
            capacity: e.capacity,
            status: e.status.clone(),
        })
        .collect();
    let admin_token = CancellationToken::new();
    let mut exporter_servers = Vec::new();
    for (name, e) in exporters.iter_mut() {
        if let Some((endpoint, router)) = e.listener.take() {
            let what = format!("exporter {name}");
            let spec = config.exporters.iter().find(|s| s.name == *name);
            let tls = spec.and_then(|s| match &s.kind {
                crate::config::ExporterKind::Prometheus(c) => c.tls.as_ref(),
                _ => None,
            });
            let router = match spec.filter(|s| !s.endpoint_auth.is_empty()) {
                Some(s) => protect_endpoint(router, &s.endpoint_auth),
                None => router,
            };
            let (local, task) = listen(
                Listen {
                    endpoint: &endpoint,
                    what: &what,
                    tls,
                    token: &admin_token,
                    drain: Duration::from_secs(2),
                    max_connections: ADMIN_MAX_CONNECTIONS,
                    metrics: &metrics,
                },
                router,
            )
            .await?;
            tracing::info!(exporter = %name, endpoint = %local, "Scrape endpoint listening.");
            exporter_servers.push(task);
        }
    }
    let mut exporter_tasks = Vec::new();
    let mut leftovers = Vec::new();
    for (_, e) in exporters {
        // Only the pipelines keep the exporters' queues open from here on.
        exporter_tasks.extend(e.tasks);
        leftovers.push(e.leftovers);
    }

    // The memory limiter, checked before anything listens.
    let limiter_token = CancellationToken::new();
    let limiter = config.memory_limiter.as_ref().map(|c| {
        let l = MemoryLimiter::new(c);
        let _ = health.memory.set(l.clone());
        l.spawn(metrics.clone(), limiter_token.clone());
        l
    });

    // Receivers. Remote write shares the OTLP/HTTP listener of one OTLP receiver.
    let receivers_token = CancellationToken::new();
    let mut receiver_tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut receiver_views = Vec::new();
    // One decode budget for all receivers.
    let in_flight = Arc::new(crate::receivers::InFlight::new(
        config.in_flight_decode_bytes,
    ));
    let intake_of = |name: &str| -> Option<Intake> {
        let handles: Vec<_> = pipelines
            .iter()
            .zip(&config.pipelines)
            .filter(|(_, s)| s.receivers.iter().any(|r| r == name))
            .map(|(p, _)| p.handle.clone())
            .collect();
        if handles.is_empty() {
            tracing::warn!(receiver = %name, "Receiver is not used by any pipeline.");
            return None;
        }
        Some(
            Intake::new(name, handles, metrics.clone())
                .limited(limiter.clone())
                .with_in_flight(in_flight.clone()),
        )
    };
    // Each receiver's tenant limits, built once: remote_write is served on the listener of an
    // OTLP receiver and is held to that receiver's tenant and attribute limits, sharing its
    // tenants' rate buckets.
    let tenants_of: std::collections::HashMap<&str, crate::receivers::auth::TenantLimits> = config
        .receivers
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                crate::receivers::auth::tenant_limits(&s.tenant_limits),
            )
        })
        .collect();
    let attr_limits_of = |name: &str| {
        config
            .receivers
            .iter()
            .find_map(|s| match &s.kind {
                ReceiverKind::Otlp(c) if s.name == name => Some(crate::model::scan::AttrLimits {
                    max_attributes: c.attribute_limits.max_attributes_per_record,
                    max_value_len: c.attribute_limits.max_value_bytes,
                }),
                _ => None,
            })
            .unwrap_or_default()
    };
    let http_host = Config::http_host_of(&config.receivers).map(|r| r.name.clone());
    let mut remote_write_routes = Vec::new();
    for spec in &config.receivers {
        if let ReceiverKind::RemoteWrite(c) = &spec.kind
            && let Some(intake) = intake_of(&spec.name)
        {
            let host = http_host.as_deref().unwrap_or_default();
            let intake = intake
                .with_tenants(tenants_of.get(host).cloned().unwrap_or_default())
                .with_attribute_limits(attr_limits_of(host));
            remote_write_routes.push(remote_write::router(remote_write::RemoteWriteReceiver {
                intake,
                max_decoded: c.max_decoded_size_mib * 1024 * 1024,
                read_timeout: c.read_timeout,
            }));
        }
    }
    for spec in &config.receivers {
        let ReceiverKind::Otlp(c) = &spec.kind else {
            continue;
        };
        let hosts_remote_write =
            http_host.as_deref() == Some(spec.name.as_str()) && !remote_write_routes.is_empty();
        let intake = match intake_of(&spec.name) {
            Some(i) => i,
            None if hosts_remote_write => Intake::new(&spec.name, Vec::new(), metrics.clone())
                .limited(limiter.clone())
                .with_in_flight(in_flight.clone()),
            None => continue,
        };
        let drain = config.shutdown_timeout;
        let tenants = tenants_of
            .get(spec.name.as_str())
            .cloned()
            .unwrap_or_default();
        let intake = intake
            .with_tenants(tenants.clone())
            .with_attribute_limits(attr_limits_of(&spec.name));
        let auth = (!spec.auth_tokens.is_empty()).then(|| {
            Authenticator::new(
                &spec.auth_tokens,
                spec.api_key_header.as_deref(),
                tenants,
                intake.clone(),
            )
        });
        let extra = if hosts_remote_write {
            std::mem::take(&mut remote_write_routes)
        } else {
            Vec::new()
        };
        for l in otlp::listeners(&spec.name, c, intake, auth, extra) {
            let router = l.router.layer(axum::middleware::from_fn(server::correlate));
            let (endpoint, task) = listen(
                Listen {
                    endpoint: &l.endpoint,
                    what: &l.what,
                    tls: l.tls.as_ref(),
                    token: &receivers_token,
                    drain,
                    max_connections: l.max_connections,
                    metrics: &metrics,
                },
                router,
            )
            .await?;
            receiver_views.push(ReceiverView {
                name: spec.name.clone(),
                transport: l.transport,
                endpoint,
            });
            receiver_tasks.push(task);
        }
    }

    // Scrapes: the prometheus receivers listen on nothing; their jobs pull.
    let mut scrapes = Vec::new();
    for spec in &config.receivers {
        let ReceiverKind::Prometheus(c) = &spec.kind else {
            continue;
        };
        let Some(intake) = intake_of(&spec.name) else {
            continue;
        };
        let (tasks, registry) =
            crate::receivers::prometheus::start(&spec.name, c, intake, receivers_token.clone())
                .map_err(GatewayError::Receiver)?;
        receiver_tasks.extend(tasks);
        receiver_views.push(ReceiverView {
            name: spec.name.clone(),
            transport: "scrape",
            endpoint: String::new(),
        });
        scrapes.push(registry);
    }

    // Admin.
    let admin_state = Arc::new(AdminState {
        scrapes,
        metrics: metrics.clone(),
        health: health.clone(),
        started,
        receivers: receiver_views.clone(),
        pipelines: pipeline_views,
        exporters: exporter_views,
        processors: processors.values().cloned().collect(),
        emit: emit.clone(),
        store,
        series,
        tap_budget: Arc::default(),
    });
    let admin_router = admin::router(admin_state);
    let admin_router = if config.admin_auth.is_empty() {
        admin_router
    } else {
        // The credentials check answers before the admin routes: its 401s get the same
        // security headers.
        protect_endpoint(admin_router, &config.admin_auth)
            .layer(axum::middleware::from_fn(admin::security::security_headers))
    };
    let (admin_endpoint, admin_task) = listen(
        Listen {
            endpoint: &config.admin_endpoint,
            what: "the admin endpoint",
            tls: config.admin_tls.as_ref(),
            token: &admin_token,
            drain: Duration::from_secs(2),
            max_connections: ADMIN_MAX_CONNECTIONS,
            metrics: &metrics,
        },
        admin_router,
    )
    .await?;

    health.ready.store(true, Ordering::Relaxed);
    for r in &receiver_views {
        tracing::info!(receiver = %r.name, transport = r.transport, endpoint = %r.endpoint, "Receiver listening.");
    }
    tracing::info!(admin = %admin_endpoint, pipelines = config.pipelines.len(), startup_ms = started.elapsed().as_millis() as u64, "Sluice is ready.");

    shutdown.cancelled().await;

    // Shutdown: stop taking data, drain, deliver.
    tracing::info!(
        timeout_s = config.shutdown_timeout.as_secs_f64(),
        "Shutting down: draining queues."
    );
    health.shutting_down.store(true, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
    receivers_token.cancel();
    for t in receiver_tasks {
        let _ = tokio::time::timeout_at(deadline, t).await;
    }
    let cancels: Vec<_> = pipelines.iter().map(|p| p.cancel.clone()).collect();
    let mut pipeline_tasks: Vec<_> = pipelines.into_iter().map(|p| p.task).collect();
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
            let dropped: usize = leftovers.iter().map(|l| l.discard()).sum();
            tracing::warn!(
                dropped_records = dropped,
                "Shutdown timeout reached with data still queued: in-memory queues are dropped (sluice_dropped_records_total{{reason=\"shutdown\"}}); disk queues keep theirs for the next start."
            );
        }
    }
    limiter_token.cancel();
    for t in plugin_tasks {
        t.abort();
    }
    admin_token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(3), admin_task).await;
    for t in exporter_servers {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    Ok(())
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

/// Where and how a listener serves.
struct Listen<'a> {
    endpoint: &'a str,
    /// What listens, for messages and the `listener` label.
    what: &'a str,
    tls: Option<&'a crate::config::TlsServerConfig>,
    token: &'a CancellationToken,
    drain: Duration,
    max_connections: usize,
    metrics: &'a SelfMetrics,
}

/// Binds `endpoint` and serves `router` on it until `token` is cancelled; returns the address
/// actually bound (a configured port 0 becomes the real one) and the server task.
async fn listen(
    l: Listen<'_>,
    router: axum::Router,
) -> Result<(String, JoinHandle<()>), GatewayError> {
    let Listen {
        endpoint,
        what,
        tls,
        token,
        drain,
        max_connections,
        metrics,
    } = l;
    let tls = tls
        .map(crate::tls::server_config)
        .transpose()
        .map_err(|e| GatewayError::Tls(format!("TLS for {what}: {e}")))?;
    let listener = server::bind(endpoint, what)
        .await
        .map_err(GatewayError::Bind)?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| endpoint.to_string());
    let connections = server::Connections {
        max: max_connections,
        open: metrics.listener_connections.with_label_values(&[what]),
        refused: metrics
            .listener_connections_refused
            .with_label_values(&[what]),
    };
    let task = tokio::spawn(server::serve(
        listener,
        router,
        tls,
        token.clone(),
        connections,
        HEADER_READ_TIMEOUT,
        drain,
    ));
    Ok((local, task))
}
