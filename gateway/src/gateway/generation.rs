//! One config's worth of running components: a generation. A config reload builds the next one
//! beside the running one, reusing every exporter and processor whose settings did not change
//! (their queues, series, stores and plugin state go on), and retires the rest once the
//! listeners serve the new routers: retired pipelines and exporters drain what they hold.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::listeners::{Role, Wanted};
use super::{GatewayError, Shared};
use crate::admin::{ExporterView, PipelineView, ReceiverView};
use crate::config::{Config, ExporterSpec, ProcessorSpec, ReceiverKind};
use crate::exporters::{Exporter, ExporterHandle, Leftovers};
use crate::pipeline::{EmitRouter, Pipeline};
use crate::plugins::{PluginEngine, Processor};
use crate::receivers::auth::Authenticator;
use crate::receivers::{Intake, otlp, remote_write};

/// Connections at once on the admin and scrape endpoints.
pub const ADMIN_MAX_CONNECTIONS: usize = 256;

/// A running exporter, shared by the generations that use it unchanged.
pub struct RunningExporter {
    name: String,
    fingerprint: String,
    /// Open while a generation may hand the exporter to new pipelines; taken when it retires
    /// or at shutdown, so that its queue closes once the pipelines are done with it.
    handle: Mutex<Option<ExporterHandle>>,
    pub view: ExporterView,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    pub leftovers: Leftovers,
    /// Its scrape endpoint: the configured address and the router (credentials applied).
    listener: Option<(String, axum::Router)>,
    tls: Option<crate::config::TlsServerConfig>,
    pub store: Option<Arc<crate::store::MemoryStore>>,
    pub series: Option<Arc<Mutex<crate::exporters::series::Store>>>,
}

impl RunningExporter {
    fn start(spec: &ExporterSpec, shared: &Shared) -> Result<RunningExporter, GatewayError> {
        let e =
            Exporter::build(spec, shared.metrics.clone()).map_err(|e| GatewayError::Exporter {
                name: spec.name.clone(),
                message: e.message,
            })?;
        let Exporter {
            handle,
            status,
            queue,
            capacity,
            tasks,
            leftovers,
            listener,
            store,
            series,
        } = e;
        let tls = match &spec.kind {
            crate::config::ExporterKind::Prometheus(c) => c.tls.clone(),
            _ => None,
        };
        let listener = listener.map(|(endpoint, router)| {
            let router = if spec.endpoint_auth.is_empty() {
                router
            } else {
                super::protect_endpoint(router, &spec.endpoint_auth)
            };
            (endpoint, router)
        });
        Ok(RunningExporter {
            name: spec.name.clone(),
            fingerprint: format!("{spec:?}"),
            handle: Mutex::new(Some(handle)),
            view: ExporterView {
                name: spec.name.clone(),
                queue,
                capacity,
                status,
            },
            tasks: Mutex::new(tasks),
            leftovers,
            listener,
            tls,
            store,
            series,
        })
    }

    fn handle(&self) -> Option<ExporterHandle> {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Closes the exporter to new pipelines; returns its tasks, which end once it delivered
    /// what it holds.
    pub fn close(&self) -> Vec<JoinHandle<()>> {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// What identifies a processor's settings: reloading a config with the same ones keeps the
/// running plugin and its state.
fn processor_fingerprint(spec: &ProcessorSpec) -> String {
    format!(
        "{:?}|{:?}|{}|{}|{:?}|{}|{:?}|{:?}",
        spec.path,
        spec.builtin,
        spec.config_json,
        spec.memory_mb,
        spec.timeout,
        spec.max_batch_bytes,
        spec.on_error,
        spec.embedded.map(|b| (b.as_ptr(), b.len())),
    )
}

/// The components one config runs.
pub struct Generation {
    pub config: Config,
    pub exporters: BTreeMap<String, Arc<RunningExporter>>,
    pub processors: BTreeMap<String, (String, Arc<Processor>)>,
    pub pipelines: Vec<Pipeline>,
    pub pipeline_views: Vec<PipelineView>,
    pub emit: Arc<EmitRouter>,
    pub plugin_tasks: Vec<JoinHandle<()>>,
    pub scrape_token: CancellationToken,
    pub scrape_tasks: Vec<JoinHandle<()>>,
    pub scrapes: Vec<Arc<crate::receivers::prometheus::ScrapeRegistry>>,
    /// The listeners this config asks for, besides the admin endpoint.
    pub wanted: Vec<Wanted>,
    /// Processors and exporters taken over from the previous generation.
    pub kept: (usize, usize),
}

impl Generation {
    /// Builds every component of `config`, reusing those of `previous` whose settings are the
    /// same. Nothing listens yet; scrapes start.
    pub fn build(
        config: Config,
        shared: &Shared,
        previous: Option<&Generation>,
    ) -> Result<Generation, GatewayError> {
        let metrics = &shared.metrics;
        let used_by_pipelines =
            |name: &str, f: fn(&crate::config::PipelineSpec) -> &Vec<String>| {
                config
                    .pipelines
                    .iter()
                    .any(|p| f(p).iter().any(|x| x == name))
            };

        // Processors first: a plugin that cannot start is the likeliest reason to refuse.
        let mut processors = BTreeMap::new();
        let mut engine: Option<Arc<PluginEngine>> = None;
        for spec in &config.processors {
            if !used_by_pipelines(&spec.name, |p| &p.processors) {
                continue;
            }
            let fingerprint = processor_fingerprint(spec);
            if let Some((fp, running)) = previous.and_then(|g| g.processors.get(&spec.name))
                && *fp == fingerprint
            {
                processors.insert(spec.name.clone(), (fingerprint, running.clone()));
                continue;
            }
            let engine = match &engine {
                Some(e) => e.clone(),
                None => {
                    let e = PluginEngine::new(config.plugin_cache_dir.clone()).map_err(|e| {
                        GatewayError::Plugin(format!("cannot start the plugin engine: {e:#}"))
                    })?;
                    engine = Some(e.clone());
                    e
                }
            };
            let loaded = Processor::load(spec.clone(), engine, metrics.clone())
                .map_err(|e| GatewayError::Plugin(e.to_string()))?;
            tracing::info!(processor = %spec.name, plugin = %loaded.status().plugin, version = %loaded.status().version, "Plugin loaded.");
            processors.insert(spec.name.clone(), (fingerprint, Arc::new(loaded)));
        }

        // Exporters used by at least one pipeline.
        let mut exporters: BTreeMap<String, Arc<RunningExporter>> = BTreeMap::new();
        for spec in &config.exporters {
            if !used_by_pipelines(&spec.name, |p| &p.exporters) {
                tracing::warn!(exporter = %spec.name, "Exporter is not used by any pipeline.");
                continue;
            }
            let fingerprint = format!("{spec:?}");
            let reused = previous
                .and_then(|g| g.exporters.get(&spec.name))
                .filter(|e| e.fingerprint == fingerprint && e.handle().is_some())
                .cloned();
            let exporter = match reused {
                Some(e) => e,
                None => match RunningExporter::start(spec, shared) {
                    Ok(e) => Arc::new(e),
                    Err(err) => {
                        // Exporters started for this attempt stop again.
                        for (name, e) in &exporters {
                            if previous.is_none_or(|g| {
                                !g.exporters.get(name).is_some_and(|o| Arc::ptr_eq(o, e))
                            }) {
                                drop(e.close());
                            }
                        }
                        return Err(err);
                    }
                },
            };
            exporters.insert(spec.name.clone(), exporter);
        }

        let kept = previous.map_or((0, 0), |g| {
            let same = |a: &Arc<Processor>, b: Option<&(String, Arc<Processor>)>| {
                b.is_some_and(|(_, b)| Arc::ptr_eq(a, b))
            };
            (
                processors
                    .iter()
                    .filter(|(n, (_, p))| same(p, g.processors.get(*n)))
                    .count(),
                exporters
                    .iter()
                    .filter(|(n, e)| g.exporters.get(*n).is_some_and(|o| Arc::ptr_eq(o, e)))
                    .count(),
            )
        });
        // Pipelines: always new (they hold no state); the old ones drain.
        let emit = EmitRouter::new();
        let mut pipelines = Vec::new();
        let mut pipeline_views = Vec::new();
        for spec in &config.pipelines {
            let handles = spec
                .exporters
                .iter()
                .filter_map(|name| exporters.get(name).and_then(|e| e.handle()))
                .collect();
            let chain = spec
                .processors
                .iter()
                .filter_map(|name| processors.get(name).map(|(_, p)| p.clone()))
                .collect();
            let pipeline = Pipeline::start(
                &spec.name,
                spec.signal,
                crate::pipeline::QueueBounds {
                    batches: spec.queue_size,
                    mib: spec.queue_max_size_mib,
                },
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
        let plugin_stop = CancellationToken::new();
        let plugin_tasks = super::start_plugin_tasks(
            processors.values().map(|(_, p)| p.clone()).collect(),
            emit.clone(),
            config.plugin_reload_interval,
            !shared.config_reload,
            plugin_stop,
        );

        let mut generation = Generation {
            config,
            exporters,
            processors,
            pipelines,
            pipeline_views,
            emit,
            plugin_tasks,
            scrape_token: CancellationToken::new(),
            scrape_tasks: Vec::new(),
            scrapes: Vec::new(),
            wanted: Vec::new(),
            kept,
        };
        if let Err(e) = generation.receivers(shared) {
            generation.abandon(previous);
            return Err(e);
        }
        Ok(generation)
    }

    /// The receivers' routers (into this generation's pipelines) and the exporters' scrape
    /// endpoints, as listeners to serve; scrapes start.
    fn receivers(&mut self, shared: &Shared) -> Result<(), GatewayError> {
        let config = &self.config;
        let metrics = &shared.metrics;
        let intake_of = |name: &str| -> Option<Intake> {
            let handles: Vec<_> = self
                .pipelines
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
                    .limited(shared.limiter.clone())
                    .with_in_flight(shared.in_flight.clone()),
            )
        };
        // Each receiver's tenant limits, built once: remote_write is served on the listener of
        // an OTLP receiver and is held to that receiver's tenant and attribute limits, sharing
        // its tenants' rate buckets.
        let tenants_of: std::collections::HashMap<&str, crate::receivers::auth::TenantLimits> =
            config
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
                    ReceiverKind::Otlp(c) if s.name == name => {
                        Some(crate::model::scan::AttrLimits {
                            max_attributes: c.attribute_limits.max_attributes_per_record,
                            max_value_len: c.attribute_limits.max_value_bytes,
                        })
                    }
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
        let mut wanted = Vec::new();
        for spec in &config.receivers {
            let ReceiverKind::Otlp(c) = &spec.kind else {
                continue;
            };
            let hosts_remote_write =
                http_host.as_deref() == Some(spec.name.as_str()) && !remote_write_routes.is_empty();
            let intake = match intake_of(&spec.name) {
                Some(i) => i,
                None if hosts_remote_write => Intake::new(&spec.name, Vec::new(), metrics.clone())
                    .limited(shared.limiter.clone())
                    .with_in_flight(shared.in_flight.clone()),
                None => continue,
            };
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
                wanted.push(Wanted {
                    endpoint: l.endpoint,
                    what: l.what,
                    tls: l.tls,
                    drain: config.shutdown_timeout,
                    max_connections: l.max_connections,
                    router: l
                        .router
                        .layer(axum::middleware::from_fn(crate::server::correlate)),
                    role: Role::Receiver,
                    receiver: Some((spec.name.clone(), l.transport)),
                });
            }
        }
        for (name, e) in &self.exporters {
            if let Some((endpoint, router)) = &e.listener {
                wanted.push(Wanted {
                    endpoint: endpoint.clone(),
                    what: format!("exporter {name}"),
                    tls: e.tls.clone(),
                    drain: Duration::from_secs(2),
                    max_connections: ADMIN_MAX_CONNECTIONS,
                    router: router.clone(),
                    role: Role::Other,
                    receiver: None,
                });
            }
        }
        // Scrapes: the prometheus receivers listen on nothing; their jobs pull.
        for spec in &config.receivers {
            let ReceiverKind::Prometheus(c) = &spec.kind else {
                continue;
            };
            let Some(intake) = intake_of(&spec.name) else {
                continue;
            };
            let (tasks, registry) = crate::receivers::prometheus::start(
                &spec.name,
                c,
                intake,
                self.scrape_token.clone(),
            )
            .map_err(GatewayError::Receiver)?;
            self.scrape_tasks.extend(tasks);
            self.scrapes.push(registry);
        }
        self.wanted = wanted;
        Ok(())
    }

    /// The receivers as the admin endpoint lists them.
    pub fn receiver_views(&self, listeners: &[super::listeners::Running]) -> Vec<ReceiverView> {
        let mut views: Vec<ReceiverView> = listeners
            .iter()
            .filter_map(|l| {
                l.receiver.as_ref().map(|(name, transport)| ReceiverView {
                    name: name.clone(),
                    transport,
                    endpoint: l.bound.clone(),
                })
            })
            .collect();
        for s in &self.scrapes {
            views.push(ReceiverView {
                name: s.receiver.clone(),
                transport: "scrape",
                endpoint: String::new(),
            });
        }
        views
    }

    /// The `memory` exporter's store, if one is configured.
    pub fn store(&self) -> Option<Arc<crate::store::MemoryStore>> {
        self.exporters.values().find_map(|e| e.store.clone())
    }

    pub fn series_stores(&self) -> Vec<crate::exporters::prometheus::NamedStore> {
        self.exporters
            .iter()
            .filter_map(|(name, e)| Some((name.clone(), e.series.clone()?)))
            .collect()
    }

    /// Undoes a generation that will not run (a reload that failed): its scrapes and plugin
    /// tasks stop, its pipelines and the exporters it started close.
    pub fn abandon(self, previous: Option<&Generation>) {
        self.scrape_token.cancel();
        for t in self.plugin_tasks {
            t.abort();
        }
        for (name, e) in &self.exporters {
            let shared = previous
                .and_then(|g| g.exporters.get(name))
                .is_some_and(|o| Arc::ptr_eq(o, e));
            if !shared {
                drop(e.close());
            }
        }
        // Dropping the pipelines' handles ends their tasks (their queues are empty).
    }

    /// Retires a generation the next one replaced: scrapes and plugin tasks stop; pipelines
    /// and the exporters `next` does not use drain in the background. Returns the tasks to
    /// wait for at shutdown, the pipelines' cancel tokens, and the retired exporters'
    /// leftovers.
    pub fn retire(self, next: &Generation) -> Retired {
        self.scrape_token.cancel();
        for t in self.plugin_tasks {
            t.abort();
        }
        let mut retired = Retired::default();
        retired.tasks.extend(self.scrape_tasks);
        for p in self.pipelines {
            retired.cancels.push(p.cancel.clone());
            retired.tasks.push(p.task);
            // `p.handle` drops here: the pipeline ends once in-flight requests are done.
        }
        for (name, e) in self.exporters {
            let kept = next
                .exporters
                .get(&name)
                .is_some_and(|n| Arc::ptr_eq(n, &e));
            if !kept {
                tracing::info!(exporter = %e.name, "Exporter replaced by a config reload; it delivers what it holds.");
                retired.tasks.extend(e.close());
                retired.exporters.push(e);
            }
        }
        retired
    }
}

/// What a retired generation leaves to finish.
#[derive(Default)]
pub struct Retired {
    pub tasks: Vec<JoinHandle<()>>,
    pub cancels: Vec<CancellationToken>,
    pub exporters: Vec<Arc<RunningExporter>>,
}
