//! The `tls` blocks: [`TlsServerConfig`] for listeners, [`TlsClientConfig`] for exporters.
//! Loading them (reading the files) belongs to the gateway, after validation.

use serde::Deserialize;

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
