//! TLS for exporters that speak HTTP (OTLP/HTTP and remote_write): rustls with the `ring`
//! provider, TLS 1.2 at least, the system's roots plus an optional CA file, and an optional
//! client certificate for mTLS.

use std::sync::Once;

use super::ExportError;
use crate::config::TlsClientConfig;

/// Installs rustls' `ring` provider as the process default, once.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Applies `tls` to an HTTP client builder.
pub fn configure(
    mut builder: reqwest::ClientBuilder,
    tls: Option<&TlsClientConfig>,
    exporter: &str,
) -> Result<reqwest::ClientBuilder, ExportError> {
    install_crypto_provider();
    builder = builder.tls_version_min(reqwest::tls::Version::TLS_1_2);
    let Some(tls) = tls else {
        return Ok(builder);
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            ExportError::permanent(format!(
                "exporter {exporter}: cannot read {}: {e}",
                path.display()
            ))
        })
    };
    if let Some(ca) = &tls.ca_file {
        let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?).map_err(|e| {
            ExportError::permanent(format!("exporter {exporter}: {}: {e}", ca.display()))
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                ExportError::permanent(format!("exporter {exporter}: client certificate: {e}"))
            })?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(ExportError::permanent(format!(
                "exporter {exporter}: tls needs both cert_file and key_file for a client certificate"
            )));
        }
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
