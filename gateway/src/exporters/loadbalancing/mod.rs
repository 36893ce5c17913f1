//! `loadbalancing`: OTLP to several backends, each trace to one of them, as the Collector's
//! loadbalancing exporter. For a two-tier deployment: a routing tier that receives from the
//! services and a processing tier (`servicegraph`, tail decisions) that must see whole traces.
//!
//! Each batch is cut per backend by [`route`] (rendezvous hashing of the trace id, or of the
//! resource's `service.name`); each backend is an `otlp` exporter built from `protocol.otlp`
//! with its own queue, retries and circuit breaker (the shared [`queue`](super::queue)
//! machinery), so a slow or dead backend fills only its own queue: its share waits and is
//! retried there, and what finds that queue full is counted as dropped for that backend
//! (`exporter="NAME/ENDPOINT"`). The backends come from a static list or from a DNS name
//! resolved again every `interval`; a change moves only the traces of the backends that came
//! or went. Batches wait in the exporter's own queue before the cut.

mod route;

use std::sync::{Arc, Mutex, RwLock, Weak};

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::queue::{self, ExporterHandle, Leftovers, Reservation};
use super::{Built, Delivered, Export, ExportError, otlp};
use crate::config::{DnsResolver, LoadBalancingExporterConfig, OtlpTemplate, RoutingKey};
use crate::model::Batch;
use crate::telemetry::metrics::SelfMetrics;

/// Backends at most: a DNS answer with more addresses is cut to the first of them in address
/// order (each backend has its own queue and consumers).
const MAX_BACKENDS: usize = 256;

/// One backend: its endpoint, its weight seed and its queue.
struct Backend {
    endpoint: String,
    seed: u64,
    handle: ExporterHandle,
}

/// The backends now, in endpoint order.
struct Ring {
    backends: Vec<Arc<Backend>>,
    seeds: Vec<u64>,
}

/// A backend's consumer tasks and what they leave at shutdown, for the supervisor.
struct Started {
    tasks: Vec<JoinHandle<()>>,
    leftovers: Leftovers,
}

struct Shared {
    name: String,
    key: RoutingKey,
    template: OtlpTemplate,
    metrics: Arc<SelfMetrics>,
    ring: RwLock<Arc<Ring>>,
    /// Set once the exporter's queue is drained: no more backends start.
    finished: std::sync::atomic::AtomicBool,
    /// To the supervisor, which waits for the backends' queues to drain at shutdown.
    started: Mutex<Option<mpsc::UnboundedSender<Started>>>,
    resolver: Mutex<Option<tokio::task::AbortHandle>>,
    /// Why there are no backends, for the error of a batch that finds none.
    last_problem: Mutex<String>,
}

impl Shared {
    fn current(&self) -> Arc<Ring> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn is_finished(&self) -> bool {
        self.finished.load(std::sync::atomic::Ordering::Acquire)
    }

    fn start_backend(&self, endpoint: &str) -> Result<Arc<Backend>, ExportError> {
        let config = self.template.for_endpoint(endpoint);
        let name = format!("{}/{}", self.name, endpoint);
        let built = otlp::build(&name, &config)?;
        let e = queue::start(
            &name,
            built,
            &config.sending_queue,
            Some(&config.circuit_breaker),
            self.metrics.clone(),
        )?;
        if let Some(tx) = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(Started {
                tasks: e.tasks,
                leftovers: e.leftovers,
            });
        }
        Ok(Arc::new(Backend {
            endpoint: endpoint.to_string(),
            seed: route::fnv1a(endpoint.as_bytes()),
            handle: e.handle,
        }))
    }

    /// Routes to `endpoints` from now on; backends that stay keep their queues. Whether the
    /// set changed.
    fn set(&self, mut endpoints: Vec<String>) -> Result<bool, ExportError> {
        endpoints.sort();
        endpoints.dedup();
        if endpoints.len() > MAX_BACKENDS {
            tracing::warn!(exporter = %self.name, answered = endpoints.len(), kept = MAX_BACKENDS, "More backends than a loadbalancing exporter keeps; using the first in address order.");
            endpoints.truncate(MAX_BACKENDS);
        }
        if self.is_finished() {
            return Ok(false);
        }
        let current = self.current();
        let same = current.backends.len() == endpoints.len()
            && current
                .backends
                .iter()
                .zip(&endpoints)
                .all(|(b, e)| &b.endpoint == e);
        if same {
            return Ok(false);
        }
        let mut backends = Vec::with_capacity(endpoints.len());
        for e in &endpoints {
            match current.backends.iter().find(|b| &b.endpoint == e) {
                Some(b) => backends.push(b.clone()),
                None => backends.push(self.start_backend(e)?),
            }
        }
        let seeds = backends.iter().map(|b| b.seed).collect();
        let ring = Arc::new(Ring { backends, seeds });
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = ring;
        self.metrics
            .exporter_backends
            .with_label_values(&[&self.name])
            .set(endpoints.len() as i64);
        Ok(true)
    }
}

struct Balancer(Arc<Shared>);

impl Export for Balancer {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(async move {
            let shared = &self.0;
            let ring = shared.current();
            if ring.backends.is_empty() {
                let why = shared
                    .last_problem
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                return Err(ExportError::retryable(format!(
                    "exporter {}: no backends to send to yet{}",
                    shared.name,
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" ({why})")
                    }
                )));
            }
            let parts = match route::split(batch.payload(), &ring.seeds, shared.key) {
                // Everything for one backend: the batch as it is, bytes and all.
                Err(b) => vec![(
                    b,
                    batch.derive_wire(batch.encoded().clone(), batch.records()),
                )],
                Ok(parts) => parts
                    .into_iter()
                    .map(|(b, p)| (b, batch.derive(p, None)))
                    .collect(),
            };
            for (b, part) in parts {
                let Some(backend) = ring.backends.get(b) else {
                    continue;
                };
                let part = Arc::new(part);
                // Never wait for a full backend: the others' shares would wait behind it.
                let delivered = match backend.handle.reserve(part.size_bytes()) {
                    Reservation::Full => false,
                    r => backend.handle.deliver(r, part.clone()).unwrap_or(false),
                };
                if !delivered {
                    backend.handle.count_drop(&part);
                }
            }
            Ok(Delivered::default())
        })
    }

    fn finish(&self) {
        let shared = &self.0;
        shared
            .finished
            .store(true, std::sync::atomic::Ordering::Release);
        *shared.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Ring {
            backends: Vec::new(),
            seeds: Vec::new(),
        });
        shared
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(a) = shared
            .resolver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            a.abort();
        }
    }
}

/// Aborts the backends' consumers and counts what their queues hold if the supervisor is
/// aborted (the shutdown timeout ran out).
struct Backends(Vec<Started>);

impl Drop for Backends {
    fn drop(&mut self) {
        for s in &self.0 {
            for t in &s.tasks {
                t.abort();
            }
        }
        let dropped: usize = self.0.iter().map(|s| s.leftovers.discard()).sum();
        if dropped > 0 {
            tracing::warn!(
                dropped_records = dropped,
                "A loadbalancing exporter's backend queues still held data at shutdown."
            );
        }
    }
}

/// Collects the backends' tasks; once the exporter has finished, waits for them to drain.
async fn supervise(mut rx: mpsc::UnboundedReceiver<Started>) {
    let mut backends = Backends(Vec::new());
    while let Some(s) = rx.recv().await {
        backends
            .0
            .retain(|s| s.tasks.iter().any(|t| !t.is_finished()));
        backends.0.push(s);
    }
    for s in backends.0.iter_mut() {
        for t in s.tasks.iter_mut() {
            let _ = t.await;
        }
    }
    backends.0.clear();
}

/// Resolves `dns.hostname` now and every `interval`, routing to what it answers; an error or
/// an empty answer keeps the backends there were.
async fn resolve(shared: Weak<Shared>, dns: DnsResolver, scheme: &'static str) {
    let mut first = true;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let answer = tokio::time::timeout(
            dns.timeout,
            tokio::net::lookup_host((dns.hostname.as_str(), dns.port)),
        )
        .await;
        let problem = match answer {
            Ok(Ok(addrs)) => {
                let endpoints: Vec<String> = addrs.map(|a| format!("{scheme}://{a}")).collect();
                if endpoints.is_empty() {
                    Some(format!("{} resolved to no address", dns.hostname))
                } else {
                    match s.set(endpoints.clone()) {
                        Ok(true) => {
                            if !first {
                                s.metrics
                                    .exporter_backend_changes
                                    .with_label_values(&[&s.name])
                                    .inc();
                            }
                            tracing::info!(exporter = %s.name, backends = ?endpoints, "Load-balancing backends resolved.");
                            None
                        }
                        Ok(false) => None,
                        Err(e) => Some(e.message),
                    }
                }
            }
            Ok(Err(e)) => Some(format!("cannot resolve {}: {e}", dns.hostname)),
            Err(_) => Some(format!(
                "resolving {} took longer than {:?}",
                dns.hostname, dns.timeout
            )),
        };
        match &problem {
            Some(p) => {
                tracing::warn!(exporter = %s.name, problem = %p, "Load-balancing backends not updated.")
            }
            None => first = false,
        }
        *s.last_problem.lock().unwrap_or_else(|e| e.into_inner()) = problem.unwrap_or_default();
        drop(s);
        tokio::time::sleep(dns.interval).await;
    }
}

pub(super) fn build(
    name: &str,
    c: &LoadBalancingExporterConfig,
    metrics: &Arc<SelfMetrics>,
) -> Result<Built, ExportError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        name: name.to_string(),
        key: c.routing_key,
        template: c.protocol.otlp.clone(),
        metrics: metrics.clone(),
        ring: RwLock::new(Arc::new(Ring {
            backends: Vec::new(),
            seeds: Vec::new(),
        })),
        finished: std::sync::atomic::AtomicBool::new(false),
        started: Mutex::new(Some(tx)),
        resolver: Mutex::new(None),
        last_problem: Mutex::new(String::new()),
    });
    metrics.exporter_backends.with_label_values(&[name]).set(0);
    metrics
        .exporter_backend_changes
        .with_label_values(&[name])
        .reset();
    let supervisor = tokio::spawn(supervise(rx));
    if let Some(dns) = &c.resolver.dns {
        *shared
            .last_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = format!("{} not resolved yet", dns.hostname);
        let task = tokio::spawn(resolve(
            Arc::downgrade(&shared),
            dns.clone(),
            c.protocol.otlp.scheme(),
        ));
        *shared.resolver.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
    } else {
        shared.set(c.static_endpoints())?;
    }
    let mut built = Built::new(Balancer(shared)).retrying(&c.protocol.otlp.0.retry_on_failure);
    built.tasks.push(supervisor);
    Ok(built)
}
