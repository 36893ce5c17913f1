//! Exporter TLS: the HTTP client (OTLP/HTTP, remote_write) and the gRPC channel of an
//! `https://` endpoint. The system's roots plus an optional CA file, TLS 1.2 at least, and an
//! optional client certificate for mTLS.

use std::path::Path;
use std::sync::Once;

use super::{TlsClientConfig, TlsError};

/// Installs rustls' `ring` provider as the process default, once.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Applies `tls` to an HTTP client builder.
pub fn http_client(
    mut builder: reqwest::ClientBuilder,
    tls: Option<&TlsClientConfig>,
    exporter: &str,
) -> Result<reqwest::ClientBuilder, TlsError> {
    install_crypto_provider();
    builder = builder.tls_version_min(reqwest::tls::Version::TLS_1_2);
    let Some(tls) = tls else {
        return Ok(builder);
    };
    if let Some(ca) = &tls.ca_file {
        let certs =
            reqwest::Certificate::from_pem_bundle(&read(ca)?).map_err(|e| TlsError::pem(ca, e))?;
        builder = builder.tls_certs_merge(certs);
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| TlsError::ClientCertificate(e.to_string()))?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => return Err(TlsError::HalfIdentity),
    }
    if tls.insecure_skip_verify {
        tracing::warn!(
            exporter,
            "TLS certificate verification is off for this exporter."
        );
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    Ok(builder)
}

/// TLS for an `https://` gRPC endpoint: the system's roots, plus `ca_file`, plus a client
/// certificate for mTLS.
pub fn grpc_channel(
    tls: Option<&TlsClientConfig>,
) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    install_crypto_provider();
    let mut config = tonic::transport::ClientTlsConfig::new().with_enabled_roots();
    let Some(tls) = tls else {
        return Ok(config);
    };
    if let Some(ca) = &tls.ca_file {
        config = config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        config = config.identity(tonic::transport::Identity::from_pem(
            read(cert)?,
            read(key)?,
        ));
    }
    Ok(config)
}
