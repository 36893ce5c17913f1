//! Config reloads as the admin endpoint sees them: the last outcome, and where
//! `POST /api/v1/config/reload` sends its request (the gateway's reload loop answers).

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

/// A request to reload, and where to answer.
#[derive(Debug)]
pub struct ReloadRequest {
    /// `sighup`, `watch` or `api`.
    pub source: &'static str,
    pub reply: Option<oneshot::Sender<ReloadRecord>>,
}

/// The outcome of one reload, as `/health/detailed`, the web UI and the API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadRecord {
    pub ok: bool,
    pub source: &'static str,
    /// Unix seconds.
    pub time: f64,
    pub message: String,
    /// Settings that changed but take a restart.
    pub restart_needed: Vec<String>,
}

/// Reloads so far and the last one.
#[derive(Debug, Default)]
pub struct ReloadStatus {
    pub reloads: AtomicU64,
    pub last: Mutex<Option<ReloadRecord>>,
    /// Where `POST /api/v1/config/reload` sends its request.
    pub requests: std::sync::OnceLock<mpsc::Sender<ReloadRequest>>,
}

impl ReloadStatus {
    pub fn last(&self) -> Option<ReloadRecord> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
