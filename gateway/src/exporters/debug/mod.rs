//! The `debug` exporter: logs a one-line summary of each batch, or every record at
//! `verbosity: detailed` (as OTLP/JSON).

use super::{Delivered, ExportError};
use crate::config::Verbosity;
use crate::model::{Batch, Payload};
use futures_util::future::BoxFuture;

use super::{Built, Export};
use crate::config::DebugExporterConfig;

pub struct DebugExporter {
    name: String,
    verbosity: Verbosity,
}

impl DebugExporter {
    pub fn new(name: &str, verbosity: Verbosity) -> DebugExporter {
        DebugExporter {
            name: name.to_string(),
            verbosity,
        }
    }

    pub fn send(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        let signal = batch.signal();
        let resources = match batch.payload() {
            Payload::Traces(r) => r.resource_spans.len(),
            Payload::Metrics(r) => r.resource_metrics.len(),
            Payload::Logs(r) => r.resource_logs.len(),
        };
        tracing::info!(
            exporter = %self.name,
            signal = %signal,
            resources,
            records = batch.records(),
            bytes = batch.encoded().len(),
            correlation_id = %batch.correlation_id,
            "Batch of {} {}.", batch.records(), signal.record_noun()
        );
        match self.verbosity {
            Verbosity::Basic => {}
            Verbosity::Normal | Verbosity::Detailed => {
                let json = batch
                    .payload()
                    .to_json()
                    .map_err(|e| ExportError::permanent(format!("cannot render batch: {e}")))?;
                if self.verbosity == Verbosity::Detailed {
                    tracing::info!(exporter = %self.name, signal = %signal, "Batch content: {json}");
                } else {
                    let short: String = json.chars().take(2000).collect();
                    tracing::info!(exporter = %self.name, signal = %signal, "Batch content (first 2000 characters): {short}");
                }
            }
        }
        Ok(Delivered::default())
    }
}

impl Export for DebugExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(std::future::ready(self.send(batch)))
    }
}

pub(super) fn build(name: &str, c: &DebugExporterConfig) -> Built {
    Built::new(DebugExporter::new(name, c.verbosity))
}
