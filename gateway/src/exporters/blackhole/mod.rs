//! `blackhole`: counts (in `sluice_exporter_sent_records_total`) and discards. A downstream for
//! benchmarks and a sink for data that should only be counted.

use futures_util::future::BoxFuture;

use super::{Delivered, Export, ExportError};
use crate::model::Batch;

pub struct Blackhole;

impl Export for Blackhole {
    fn export<'a>(&'a self, _batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(std::future::ready(Ok(Delivered::default())))
    }
}
