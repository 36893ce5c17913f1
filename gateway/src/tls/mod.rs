//! TLS, in one place: the `tls` blocks of the config ([`TlsServerConfig`] for listeners,
//! [`TlsClientConfig`] for exporters), loading them into rustls, and one typed error.
//!
//! Loading reads files, so it is not part of config validation: `sluice validate` and the
//! gateway's start call [`server_config`] in the step after it, and exporters load their
//! client side when they are built. A leaf: it imports no other module of the gateway.

mod client;
mod server;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use client::{grpc_channel, http_client, install_crypto_provider};
pub use server::server_config;

/// TLS on a listener (TLS 1.2 or 1.3, rustls); with `client_ca_file`, clients must present a
/// certificate signed by that CA (mutual TLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
    pub client_ca_file: Option<std::path::PathBuf>,
}

/// TLS settings of an exporter (`https://` endpoints).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsClientConfig {
    /// PEM CA certificates trusted besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate and key, for mTLS.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    /// Do not verify the server's certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

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
