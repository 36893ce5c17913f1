//! The plugin's configuration: what the processor's `config:` block may say, parsed and checked
//! once in `init`. The keys follow the OpenTelemetry Collector's spanmetrics connector, so a
//! connector's block carries over (see the plugin's README for the differences).

use serde::Deserialize;
use sluice_sdk::serde_json::Value;
use sluice_sdk::{Error, parse_duration};

/// Series one instance keeps at most (all resources together): its snapshot must stay under
/// the gateway's 16 MiB snapshot cap and a flush under the emit caps.
pub const MAX_SERIES_CEILING: usize = 20_000;
/// Explicit buckets at most.
pub const MAX_BUCKETS: usize = 64;

/// The `config:` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    dimensions: Vec<RawDimension>,
    #[serde(default)]
    exclude_dimensions: Vec<String>,
    #[serde(default)]
    span_name_from_route: bool,
    #[serde(default)]
    histogram: RawHistogram,
    #[serde(default)]
    exemplars: RawExemplars,
    #[serde(default)]
    aggregation_temporality: Option<String>,
    #[serde(default)]
    metrics_flush_interval: Option<Value>,
    #[serde(default)]
    metrics_expiration: Option<Value>,
    /// `aggregation_cardinality_limit` in the Collector.
    #[serde(default, alias = "aggregation_cardinality_limit")]
    max_series: Option<usize>,
    #[serde(default)]
    resource_metrics_key_attributes: Option<Vec<String>>,
    #[serde(default)]
    dedupe_window: Option<usize>,
    /// Accepted for configs carried over from the Collector; the plugin needs no such cache.
    #[serde(default)]
    #[allow(dead_code, reason = "accepted, not needed")]
    dimensions_cache_size: Option<usize>,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted, not needed")]
    resource_metrics_cache_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDimension {
    name: String,
    #[serde(default)]
    default: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistogram {
    #[serde(default)]
    disable: bool,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    explicit: Option<RawExplicit>,
    #[serde(default)]
    exponential: Option<RawExponential>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExplicit {
    #[serde(default)]
    buckets: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExponential {
    #[serde(default)]
    max_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExemplars {
    #[serde(default = "yes")]
    enabled: bool,
    /// Accepted for configs carried over from the Collector: the plugin keeps the latest
    /// exemplar of each bucket.
    #[serde(default)]
    #[allow(dead_code, reason = "accepted, not needed")]
    max_per_data_point: Option<usize>,
}

impl Default for RawExemplars {
    fn default() -> Self {
        RawExemplars {
            enabled: true,
            max_per_data_point: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_namespace() -> String {
    "traces.span.metrics".into()
}

/// The duration histogram's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Milliseconds,
}

impl Unit {
    /// Nanoseconds per unit.
    pub fn nanos(self) -> f64 {
        match self {
            Unit::Seconds => 1e9,
            Unit::Milliseconds => 1e6,
        }
    }

    /// The UCUM unit, which the Prometheus exporters turn into the name's suffix.
    pub fn ucum(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Milliseconds => "ms",
        }
    }
}

/// What kind of duration histogram.
#[derive(Debug, Clone, PartialEq)]
pub enum Histogram {
    /// No duration histogram, calls only.
    Disabled,
    /// Explicit upper bounds, in the unit, strictly increasing.
    Explicit(Vec<f64>),
    /// Base-2 exponential, at most this many buckets.
    Exponential { max_size: usize },
}

/// One configured dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Dimension {
    pub name: String,
    /// Used when neither the span nor its resource has the attribute; without it the dimension
    /// is left out of that series.
    pub default: Option<String>,
}

/// The configuration, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub namespace: String,
    pub service_name: bool,
    pub span_name: bool,
    pub span_kind: bool,
    pub status_code: bool,
    pub dimensions: Vec<Dimension>,
    pub span_name_from_route: bool,
    pub unit: Unit,
    pub histogram: Histogram,
    pub exemplars: bool,
    pub delta: bool,
    pub flush_interval_nanos: u64,
    /// 0: series never expire.
    pub expiration_nanos: u64,
    pub max_series: usize,
    /// `None`: every resource attribute identifies the resource.
    pub resource_key: Option<Vec<String>>,
    /// Spans remembered to count each once; 0 turns it off.
    pub dedupe_window: usize,
}

/// The Collector's default buckets: 2ms … 15s.
const DEFAULT_BUCKETS_MS: &[f64] = &[
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
    10_000.0, 15_000.0,
];

const DEFAULT_FLUSH_NANOS: u64 = 15_000_000_000;
const DEFAULT_MAX_SERIES: usize = 5_000;
const DEFAULT_DEDUPE_WINDOW: usize = 200_000;
const FIXED: [&str; 4] = ["service.name", "span.name", "span.kind", "status.code"];

fn temporality(t: Option<&str>) -> Result<bool, Error> {
    match t {
        None => Ok(false),
        Some(t) => match t
            .to_ascii_lowercase()
            .trim_start_matches("aggregation_temporality_")
        {
            "cumulative" => Ok(false),
            "delta" => Ok(true),
            _ => Err(Error::Config(format!(
                "aggregation_temporality: `{t}` is neither `cumulative` nor `delta`"
            ))),
        },
    }
}

fn default_text(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, Error> {
        let raw: Raw = sluice_sdk::parse_config(text)?;
        let namespace = raw.namespace.trim_end_matches('.').to_string();
        for d in &raw.exclude_dimensions {
            if !FIXED.contains(&d.as_str()) {
                return Err(Error::Config(format!(
                    "exclude_dimensions: `{d}` is not one of {}",
                    FIXED.join(", ")
                )));
            }
        }
        let excluded = |n: &str| raw.exclude_dimensions.iter().any(|d| d == n);
        let mut dimensions: Vec<Dimension> = Vec::new();
        for d in raw.dimensions {
            if d.name.is_empty() {
                return Err(Error::Config("dimensions: a name is empty".into()));
            }
            if FIXED.contains(&d.name.as_str()) || dimensions.iter().any(|x| x.name == d.name) {
                return Err(Error::Config(format!(
                    "dimensions: `{}` is given twice (service.name, span.name, span.kind and status.code are always there unless excluded)",
                    d.name
                )));
            }
            dimensions.push(Dimension {
                name: d.name,
                default: d.default.map(default_text),
            });
        }
        let unit = match raw.histogram.unit.as_deref() {
            None | Some("s") => Unit::Seconds,
            Some("ms") => Unit::Milliseconds,
            Some(other) => {
                return Err(Error::Config(format!(
                    "histogram.unit: `{other}` is neither `s` nor `ms`"
                )));
            }
        };
        let histogram = match (
            raw.histogram.disable,
            raw.histogram.explicit,
            raw.histogram.exponential,
        ) {
            (true, _, _) => Histogram::Disabled,
            (false, Some(_), Some(_)) => {
                return Err(Error::Config(
                    "histogram: choose one of `explicit` and `exponential`".into(),
                ));
            }
            (false, _, Some(e)) => {
                let max_size = e.max_size.unwrap_or(160);
                if !(2..=1024).contains(&max_size) {
                    return Err(Error::Config(format!(
                        "histogram.exponential.max_size: {max_size} is outside 2..=1024"
                    )));
                }
                Histogram::Exponential { max_size }
            }
            (false, explicit, None) => {
                let bounds = match explicit.and_then(|e| e.buckets) {
                    None => DEFAULT_BUCKETS_MS
                        .iter()
                        .map(|ms| ms * 1e6 / unit.nanos())
                        .collect::<Vec<f64>>(),
                    Some(buckets) => buckets
                        .iter()
                        .map(|b| {
                            parse_duration(b, unit.nanos(), "histogram.explicit.buckets")
                                .map(|n| n / unit.nanos())
                        })
                        .collect::<Result<_, _>>()?,
                };
                if bounds.is_empty() || bounds.len() > MAX_BUCKETS {
                    return Err(Error::Config(format!(
                        "histogram.explicit.buckets: give between 1 and {MAX_BUCKETS} bounds"
                    )));
                }
                if bounds.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Error::Config(
                        "histogram.explicit.buckets: bounds must increase strictly".into(),
                    ));
                }
                Histogram::Explicit(bounds)
            }
        };
        let flush_interval_nanos = match &raw.metrics_flush_interval {
            None => DEFAULT_FLUSH_NANOS,
            Some(v) => parse_duration(v, 1e9, "metrics_flush_interval")? as u64,
        };
        if flush_interval_nanos < 1_000_000_000 {
            return Err(Error::Config(
                "metrics_flush_interval: at least 1s (the plugin is ticked once a second)".into(),
            ));
        }
        let expiration_nanos = match &raw.metrics_expiration {
            None => 0,
            Some(v) => parse_duration(v, 1e9, "metrics_expiration")? as u64,
        };
        let max_series = raw.max_series.unwrap_or(DEFAULT_MAX_SERIES);
        if !(1..=MAX_SERIES_CEILING).contains(&max_series) {
            return Err(Error::Config(format!(
                "max_series: {max_series} is outside 1..={MAX_SERIES_CEILING} (a snapshot of more would not fit the gateway's snapshot cap)"
            )));
        }
        Ok(Config {
            namespace,
            service_name: !excluded("service.name"),
            span_name: !excluded("span.name"),
            span_kind: !excluded("span.kind"),
            status_code: !excluded("status.code"),
            dimensions,
            span_name_from_route: raw.span_name_from_route,
            unit,
            histogram,
            exemplars: raw.exemplars.enabled,
            delta: temporality(raw.aggregation_temporality.as_deref())?,
            flush_interval_nanos,
            expiration_nanos,
            max_series,
            resource_key: raw.resource_metrics_key_attributes,
            dedupe_window: raw.dedupe_window.unwrap_or(DEFAULT_DEDUPE_WINDOW),
        })
    }

    /// A metric's full name in the namespace.
    pub fn metric(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.namespace)
        }
    }

    /// What identifies the shape of the series: a snapshot taken under another shape is not
    /// restored.
    pub fn shape(&self) -> String {
        format!(
            "{}|{}{}{}{}|{:?}|{}|{:?}|{:?}|{}|{:?}",
            self.namespace,
            self.service_name as u8,
            self.span_name as u8,
            self.span_kind as u8,
            self.status_code as u8,
            self.dimensions,
            self.span_name_from_route,
            self.unit,
            self.histogram,
            self.delta,
            self.resource_key,
        )
    }
}
