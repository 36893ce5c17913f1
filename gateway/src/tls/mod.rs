//! TLS, in one place: the `tls` blocks of the config ([`TlsServerConfig`] for listeners,
//! [`TlsClientConfig`] for exporters), loading them into rustls, and one typed error.
//!
//! Loading reads files, so it is not part of config validation: `sluice validate` and the
//! gateway's start call [`server_config`] in the step after it, and exporters load their
//! client side when they are built. A leaf: it imports no other module of the gateway.

mod client;
mod server;

use std::path::{Path, PathBuf};

pub use client::{grpc_channel, http_client, install_crypto_provider};
pub use server::server_config;
pub use sluice_core::config::{TlsClientConfig, TlsServerConfig};

/// Why a `tls` block does not load. The message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} and {}: {message}", cert.display(), key.display())]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("client certificate: {0}")]
    ClientCertificate(String),
    #[error("tls needs both cert_file and key_file for a client certificate")]
    HalfIdentity,
    #[error("{0}")]
    Rustls(String),
}

impl TlsError {
    fn pem(path: &Path, e: impl std::fmt::Display) -> TlsError {
        TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}
