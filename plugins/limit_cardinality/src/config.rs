//! The plugin's configuration: what the processor's `config:` block may say, parsed and checked
//! once in `init`.

use serde::Deserialize;
use sluice_sdk::Error;
use sluice_sdk::serde_json::Value;

/// The `config:` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rewriting of ids in URL paths.
    #[serde(default)]
    pub normalize: Normalize,
    /// Caps on distinct values and series.
    #[serde(default)]
    pub limits: Vec<Limit>,
    /// The value that replaces an attribute value beyond its cap.
    #[serde(default = "default_overflow_value")]
    pub overflow_value: String,
    /// Values and series tracked at once, all metrics together.
    #[serde(default = "default_max_tracked")]
    pub max_tracked: usize,
    /// Forget the tracked values and series this often (`30s`, `15m`, `1h`, `1d`).
    #[serde(default)]
    pub reset_interval: Option<String>,
}

fn default_overflow_value() -> String {
    "overflow".into()
}

fn default_max_tracked() -> usize {
    100_000
}

fn yes() -> bool {
    true
}

/// `normalize:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// The attributes whose values are normalized as paths; empty turns normalization off.
    #[serde(default = "default_keys")]
    pub keys: Vec<String>,
    /// The signals whose attributes are normalized.
    #[serde(default = "default_signals")]
    pub signals: Vec<SignalName>,
    /// Segments of decimal digits become `{id}`.
    #[serde(default = "yes")]
    pub numbers: bool,
    /// UUIDs become `{uuid}`.
    #[serde(default = "yes")]
    pub uuids: bool,
    /// Hexadecimal segments of at least `min_hex_length` characters become `{hex}`.
    #[serde(default = "yes")]
    pub hex_ids: bool,
    #[serde(default = "default_min_hex_length")]
    pub min_hex_length: usize,
    /// Further segment patterns, tried before the built-in ones.
    #[serde(default)]
    pub patterns: Vec<Pattern>,
    /// Remove the query string and the fragment.
    #[serde(default = "yes")]
    pub strip_query: bool,
}

impl Default for Normalize {
    fn default() -> Self {
        Normalize {
            keys: default_keys(),
            signals: default_signals(),
            numbers: true,
            uuids: true,
            hex_ids: true,
            min_hex_length: default_min_hex_length(),
            patterns: Vec::new(),
            strip_query: true,
        }
    }
}

fn default_keys() -> Vec<String> {
    vec!["url.path".into(), "http.target".into()]
}

fn default_signals() -> Vec<SignalName> {
    vec![SignalName::Metrics]
}

fn default_min_hex_length() -> usize {
    16
}

/// One entry of `normalize.patterns`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// Matched against a whole path segment.
    pub regex: String,
    #[serde(default = "default_placeholder")]
    pub placeholder: String,
}

fn default_placeholder() -> String {
    "{id}".into()
}

/// One entry of `limits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// A metric name, a prefix ending in `*`, or `*` for every metric.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// The data point attribute whose distinct values are capped.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub max_values: Option<usize>,
    /// Distinct attribute sets per metric.
    #[serde(default)]
    pub max_series: Option<usize>,
}

fn default_metric() -> String {
    "*".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalName {
    Traces,
    Metrics,
    Logs,
}

/// Reads a duration such as `90s`, `15m`, `1h` or `1d` (also `ms`), in nanoseconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().ok()?;
    let unit_nanos: u64 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "d" => 86_400 * 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(unit_nanos)
}

impl Config {
    /// Parses and checks the JSON of the `config:` block.
    pub fn parse(json: &str) -> Result<Config, Error> {
        let value: Value = sluice_sdk::parse_config(json)?;
        if !value.is_object() {
            return Err(Error::Config(format!(
                "expected a mapping of options, got {value}"
            )));
        }
        let config: Config =
            sluice_sdk::serde_json::from_value(value).map_err(|e| Error::Config(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), Error> {
        let n = &self.normalize;
        if n.keys.iter().any(String::is_empty) {
            return Err(Error::Config(
                "normalize.keys: a key must not be empty".into(),
            ));
        }
        if n.hex_ids && n.min_hex_length < 8 {
            return Err(Error::Config(format!(
                "normalize.min_hex_length: {} must be at least 8 (shorter hex runs are ordinary words and numbers)",
                n.min_hex_length
            )));
        }
        for (i, p) in n.patterns.iter().enumerate() {
            if p.regex.is_empty() {
                return Err(Error::Config(format!(
                    "normalize.patterns[{i}].regex: must not be empty"
                )));
            }
            if p.placeholder.contains('/') {
                return Err(Error::Config(format!(
                    "normalize.patterns[{i}].placeholder: {:?} must not contain `/`",
                    p.placeholder
                )));
            }
        }
        if self.overflow_value.is_empty() {
            return Err(Error::Config("overflow_value: must not be empty".into()));
        }
        if self.max_tracked == 0 {
            return Err(Error::Config("max_tracked: must be at least 1".into()));
        }
        if let Some(r) = &self.reset_interval {
            match parse_duration(r) {
                Some(d) if d >= 1_000_000_000 => {}
                Some(_) => {
                    return Err(Error::Config(format!(
                        "reset_interval: `{r}` is shorter than 1s"
                    )));
                }
                None => {
                    return Err(Error::Config(format!(
                        "reset_interval: invalid duration `{r}`: write a whole number followed by s, m, h or d (e.g. 1h)"
                    )));
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, l) in self.limits.iter().enumerate() {
            l.check()
                .map_err(|m| Error::Config(format!("limits[{i}]: {m}")))?;
            if !seen.insert((l.metric.as_str(), l.key.as_deref())) {
                return Err(Error::Config(format!(
                    "limits[{i}]: a limit for metric `{}`{} is already given",
                    l.metric,
                    l.key
                        .as_deref()
                        .map(|k| format!(" and key `{k}`"))
                        .unwrap_or_else(|| " (max_series)".into())
                )));
            }
        }
        Ok(())
    }
}

impl Limit {
    fn check(&self) -> Result<(), String> {
        if self.metric.is_empty() {
            return Err("metric: must not be empty (`*` is every metric)".into());
        }
        let body = self.metric.strip_suffix('*').unwrap_or(&self.metric);
        if body.contains('*') {
            return Err(format!(
                "metric: `{}`: `*` may only end the name (a prefix) or stand alone",
                self.metric
            ));
        }
        match (&self.key, self.max_values, self.max_series) {
            (Some(k), _, _) if k.is_empty() => Err("key: must not be empty".into()),
            (Some(_), Some(v), None) if v >= 1 => Ok(()),
            (Some(_), Some(_), None) => Err("max_values: must be at least 1".into()),
            (Some(_), None, None) => Err("a limit with `key` needs `max_values`".into()),
            (Some(_), _, Some(_)) => Err(
                "max_series caps whole attribute sets and takes no `key`; write it in a limit of its own"
                    .into(),
            ),
            (None, None, Some(s)) if s >= 1 => Ok(()),
            (None, None, Some(_)) => Err("max_series: must be at least 1".into()),
            (None, Some(_), _) => Err("max_values needs the `key` whose values it caps".into()),
            (None, None, None) => Err("a limit needs `key` with `max_values`, or `max_series`".into()),
        }
    }
}
