//! The gateway's listeners, kept across config reloads: each serves whatever router its slot
//! holds at the time of each request, so a reload swaps routers without closing a socket or a
//! connection (a long-lived gRPC connection sends its next request into the new pipelines).
//! A listener whose address, TLS or connection limit changed is replaced.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::GatewayError;
use crate::config::TlsServerConfig;
use crate::server;
use crate::telemetry::metrics::SelfMetrics;

/// How long a connection may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What stops first at shutdown: receivers, before the pipelines drain; the rest (admin, the
/// exporters' scrape endpoints) last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Receiver,
    Other,
}

/// A listener a config asks for.
pub struct Wanted {
    pub endpoint: String,
    /// What listens, for messages and the `listener` label.
    pub what: String,
    pub tls: Option<TlsServerConfig>,
    pub drain: Duration,
    pub max_connections: usize,
    pub router: Router,
    pub role: Role,
    /// The receiver and transport, for the admin views.
    pub receiver: Option<(String, &'static str)>,
}

impl Wanted {
    /// Two listeners with the same identity are the same socket: only their routers differ.
    fn identity(&self) -> String {
        format!(
            "{}|{}|{:?}|{}|{:?}",
            self.what, self.endpoint, self.tls, self.max_connections, self.drain
        )
    }
}

/// A bound listener.
pub struct Running {
    identity: String,
    pub endpoint: String,
    /// The address actually bound (a configured port 0 becomes the real one).
    pub bound: String,
    pub what: String,
    pub role: Role,
    pub receiver: Option<(String, &'static str)>,
    slot: Arc<RwLock<Router>>,
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting; in-flight requests get the listener's drain time. Returns the task.
    pub fn stop(self) -> JoinHandle<()> {
        self.token.cancel();
        self.task
    }
}

/// Serves whatever router `slot` holds when a request arrives.
pub fn dispatch(slot: Arc<RwLock<Router>>) -> Router {
    Router::new().fallback_service(tower::service_fn(move |req: axum::extract::Request| {
        let router = slot.read().unwrap_or_else(PoisonError::into_inner).clone();
        async move { router.oneshot(req).await }
    }))
}

async fn bind(w: Wanted, metrics: &SelfMetrics) -> Result<Running, GatewayError> {
    let tls = w
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()
        .map_err(|e| GatewayError::Tls(format!("TLS for {}: {e}", w.what)))?;
    let listener = server::bind(&w.endpoint, &w.what)
        .await
        .map_err(GatewayError::Bind)?;
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| w.endpoint.clone());
    let connections = server::Connections {
        max: w.max_connections,
        open: metrics.listener_connections.with_label_values(&[&w.what]),
        refused: metrics
            .listener_connections_refused
            .with_label_values(&[&w.what]),
    };
    let identity = w.identity();
    let slot = Arc::new(RwLock::new(w.router));
    let token = CancellationToken::new();
    let task = tokio::spawn(server::serve(
        listener,
        dispatch(slot.clone()),
        tls,
        token.clone(),
        connections,
        HEADER_READ_TIMEOUT,
        w.drain,
    ));
    Ok(Running {
        identity,
        endpoint: w.endpoint,
        bound,
        what: w.what,
        role: w.role,
        receiver: w.receiver,
        slot,
        token,
        task,
    })
}

/// Binds `w`, waiting up to two seconds for its address to be released.
async fn bind_when_free(w: Wanted, metrics: &SelfMetrics) -> Result<Running, GatewayError> {
    for _ in 0..20 {
        match server::bind(&w.endpoint, &w.what).await {
            Ok(probe) => {
                drop(probe);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    bind(w, metrics).await
}

/// Binds every wanted listener (the gateway's start).
pub async fn bind_all(
    wanted: Vec<Wanted>,
    metrics: &SelfMetrics,
) -> Result<Vec<Running>, GatewayError> {
    let mut running = Vec::new();
    for w in wanted {
        match bind(w, metrics).await {
            Ok(r) => running.push(r),
            Err(e) => {
                for r in running {
                    let _ = r.stop().await;
                }
                return Err(e);
            }
        }
    }
    Ok(running)
}

/// Serves `w`'s router on the running listener of the same identity; false if there is none.
pub fn swap(running: &[Running], w: Wanted) -> bool {
    let identity = w.identity();
    match running.iter().find(|r| r.identity == identity) {
        Some(r) => {
            *r.slot.write().unwrap_or_else(PoisonError::into_inner) = w.router;
            true
        }
        None => false,
    }
}

/// A reload's listeners, bound but not yet serving the new config's routers everywhere.
pub struct Plan {
    /// `(index into the running listeners, new router)`: the same socket, a new router.
    swaps: Vec<(usize, Router)>,
    /// Bound already (their addresses were free).
    bound: Vec<Running>,
    /// To bind once the listeners at their addresses have stopped.
    later: Vec<Wanted>,
    /// Running listeners the new config does not keep.
    retired: Vec<usize>,
}

/// The first half of a reload: binds what needs a new socket at a free address. On error
/// nothing changed (what this bound is closed again).
pub async fn plan(
    running: &[Running],
    wanted: Vec<Wanted>,
    metrics: &SelfMetrics,
) -> Result<Plan, GatewayError> {
    let mut kept = vec![false; running.len()];
    let mut swaps = Vec::new();
    let mut bound = Vec::new();
    let mut later = Vec::new();
    let mut fresh = Vec::new();
    for w in wanted {
        let identity = w.identity();
        match running
            .iter()
            .enumerate()
            .position(|(i, r)| !kept[i] && r.identity == identity)
        {
            Some(i) => {
                kept[i] = true;
                swaps.push((i, w.router));
            }
            None => fresh.push(w),
        }
    }
    for w in fresh {
        // A running listener at the same configured address has to close first.
        if running
            .iter()
            .enumerate()
            .any(|(i, r)| !kept[i] && r.endpoint == w.endpoint)
        {
            later.push(w);
            continue;
        }
        match bind(w, metrics).await {
            Ok(r) => bound.push(r),
            Err(e) => {
                for r in bound {
                    let _ = r.stop().await;
                }
                return Err(e);
            }
        }
    }
    let retired = (0..running.len()).filter(|i| !kept[*i]).collect();
    Ok(Plan {
        swaps,
        bound,
        later,
        retired,
    })
}

/// The second half: swaps routers, stops the listeners the config dropped or changed, binds their
/// replacements. Returns the listeners now running, the stopped listeners' tasks (draining their
/// in-flight requests), and what could not be bound.
pub async fn commit(
    running: Vec<Running>,
    plan: Plan,
    metrics: &SelfMetrics,
) -> (Vec<Running>, Vec<JoinHandle<()>>, Vec<String>) {
    let Plan {
        swaps,
        bound,
        later,
        retired,
    } = plan;
    for (i, router) in swaps {
        *running[i]
            .slot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = router;
    }
    let mut stopping = Vec::new();
    let mut now = Vec::new();
    let mut stopped = Vec::new();
    for (i, r) in running.into_iter().enumerate() {
        if retired.contains(&i) {
            stopped.push(r);
        } else {
            now.push(r);
        }
    }
    for r in stopped {
        tracing::info!(listener = %r.what, endpoint = %r.bound, "Listener closed by a config reload.");
        stopping.push(r.stop());
    }
    now.extend(bound);
    let mut problems = Vec::new();
    for w in later {
        // Its address is released once the listener it replaces has left its accept loop.
        let what = w.what.clone();
        match bind_when_free(w, metrics).await {
            Ok(r) => now.push(r),
            Err(e) => {
                tracing::error!(listener = %what, error = %e, "A listener changed by a config reload could not be bound.");
                problems.push(e.to_string());
            }
        }
    }
    (now, stopping, problems)
}
