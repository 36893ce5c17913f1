//! The gateway's own logs and traces.
//!
//! Logs go to stderr through `tracing`, as text or JSON. When `service.telemetry.traces.endpoint`
//! is set, the gateway's own spans (a `request` span per incoming request, a `batch` span per
//! batch through the pipeline with `export` children per exporter) are sent over OTLP/HTTP to
//! that endpoint through `opentelemetry-otlp`, so operators can see Sluice itself in Jaeger or
//! Tempo. Those spans are at debug level for the exporting layer only: with tracing off they
//! are never created.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::build_info;
use sluice_core::config::{LogFormat, LogsConfig};

/// Keeps the trace pipeline alive; flushes it when dropped.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("self-telemetry traces: {0}")]
pub struct TelemetryError(String);

/// The OTLP/HTTP traces URL for a configured endpoint: a base URL gets `/v1/traces`.
pub fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    let has_path = trimmed
        .split_once("://")
        .map(|(_, rest)| rest.contains('/'))
        .unwrap_or(false);
    if has_path {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

/// Installs the global subscriber. Call once, before the runtime starts.
pub fn init(logs: &LogsConfig, traces_endpoint: Option<&str>) -> Result<Telemetry, TelemetryError> {
    crate::tls::install_crypto_provider();
    let filter = EnvFilter::try_new(&logs.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = match logs.format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    }
    .with_filter(filter);

    let mut telemetry = Telemetry::default();
    let otel = match traces_endpoint {
        None => None,
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(traces_url(endpoint))
                .with_headers(Default::default())
                .build()
                .map_err(|e| TelemetryError(e.to_string()))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name("sluice")
                        .with_attribute(opentelemetry::KeyValue::new(
                            "service.version",
                            build_info::VERSION,
                        ))
                        .build(),
                )
                .build();
            let tracer = provider.tracer("sluice");
            telemetry.provider = Some(provider);
            Some(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(Targets::new().with_target("sluice", Level::DEBUG)),
            )
        }
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| TelemetryError(e.to_string()))?;
    Ok(telemetry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_appends_the_signal_path_to_base_urls() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/custom/path"),
            "http://collector:4318/custom/path"
        );
    }
}
