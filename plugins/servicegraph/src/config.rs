//! The plugin's configuration, with the OpenTelemetry Collector servicegraph connector's keys.

use serde::Deserialize;
use sluice_sdk::serde_json::Value;
use sluice_sdk::{Error, parse_duration};

/// Edges (series) one instance keeps at most.
pub const MAX_SERIES_CEILING: usize = 10_000;
/// Unpaired spans one instance waits with at most.
pub const MAX_ITEMS_CEILING: usize = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    latency_histogram_buckets: Option<Vec<Value>>,
    #[serde(default)]
    dimensions: Vec<String>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    virtual_node_peer_attributes: Option<Vec<String>>,
    #[serde(default)]
    database_name_attribute: Option<String>,
    #[serde(default)]
    metrics_flush_interval: Option<Value>,
    #[serde(default)]
    max_series: Option<usize>,
    #[serde(default)]
    dedupe_window: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default)]
    ttl: Option<Value>,
    #[serde(default)]
    max_items: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Upper bounds in seconds, strictly increasing.
    pub buckets: Vec<f64>,
    /// Span (then resource) attributes added as `client_NAME` and `server_NAME`.
    pub dimensions: Vec<String>,
    pub ttl_nanos: u64,
    pub max_items: usize,
    /// Attributes of a client span that name the peer when no server span answers it.
    pub peer_attributes: Vec<String>,
    /// The attribute of a client span that names the database it called.
    pub database_attribute: String,
    pub flush_interval_nanos: u64,
    pub max_series: usize,
    pub dedupe_window: usize,
}

const DEFAULT_BUCKETS_MS: &[f64] = &[
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
    10_000.0, 15_000.0,
];

impl Config {
    pub fn parse(text: &str) -> Result<Config, Error> {
        let raw: Raw = sluice_sdk::parse_config(text)?;
        let buckets: Vec<f64> = match raw.latency_histogram_buckets {
            None => DEFAULT_BUCKETS_MS.iter().map(|ms| ms / 1e3).collect(),
            Some(b) => b
                .iter()
                .map(|v| parse_duration(v, 1e9, "latency_histogram_buckets").map(|n| n / 1e9))
                .collect::<Result<_, _>>()?,
        };
        if buckets.is_empty() || buckets.len() > 64 {
            return Err(Error::Config(
                "latency_histogram_buckets: give between 1 and 64 bounds".into(),
            ));
        }
        if buckets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Config(
                "latency_histogram_buckets: bounds must increase strictly".into(),
            ));
        }
        for (i, d) in raw.dimensions.iter().enumerate() {
            if d.is_empty() || raw.dimensions[..i].contains(d) {
                return Err(Error::Config(format!(
                    "dimensions: `{d}` is empty or given twice"
                )));
            }
        }
        let ttl_nanos = match &raw.store.ttl {
            None => 2_000_000_000,
            Some(v) => parse_duration(v, 1e9, "store.ttl")? as u64,
        };
        if !(1_000_000..=600_000_000_000).contains(&ttl_nanos) {
            return Err(Error::Config(
                "store.ttl: between 1ms and 10m (how long a span waits for its other half)".into(),
            ));
        }
        let max_items = raw.store.max_items.unwrap_or(1000);
        if !(1..=MAX_ITEMS_CEILING).contains(&max_items) {
            return Err(Error::Config(format!(
                "store.max_items: {max_items} is outside 1..={MAX_ITEMS_CEILING}"
            )));
        }
        let flush_interval_nanos = match &raw.metrics_flush_interval {
            None => 15_000_000_000,
            Some(v) => parse_duration(v, 1e9, "metrics_flush_interval")? as u64,
        };
        if flush_interval_nanos < 1_000_000_000 {
            return Err(Error::Config(
                "metrics_flush_interval: at least 1s (the plugin is ticked once a second)".into(),
            ));
        }
        let max_series = raw.max_series.unwrap_or(2000);
        if !(1..=MAX_SERIES_CEILING).contains(&max_series) {
            return Err(Error::Config(format!(
                "max_series: {max_series} is outside 1..={MAX_SERIES_CEILING}"
            )));
        }
        Ok(Config {
            buckets,
            dimensions: raw.dimensions,
            ttl_nanos,
            max_items,
            peer_attributes: raw.virtual_node_peer_attributes.unwrap_or_else(|| {
                ["peer.service", "db.name", "db.system", "server.address"]
                    .map(String::from)
                    .to_vec()
            }),
            database_attribute: raw
                .database_name_attribute
                .unwrap_or_else(|| "db.name".into()),
            flush_interval_nanos,
            max_series,
            dedupe_window: raw.dedupe_window.unwrap_or(200_000),
        })
    }

    /// What identifies the shape of the series, for restoring a snapshot.
    pub fn shape(&self) -> String {
        format!("{:?}|{:?}", self.buckets, self.dimensions)
    }
}
