//! The plugin's configuration: what the processor's `config:` block may say, parsed and checked
//! once in `init`.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;
use serde::de::Error as _;
use sluice_sdk::Error;
use sluice_sdk::serde_json::Value;

/// The `config:` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Records matching any of these are dropped.
    #[serde(default)]
    pub drop: Vec<Condition>,
    /// Head sampling of traces (and of logs), consistent by trace id.
    #[serde(default)]
    pub probabilistic: Option<Probabilistic>,
    /// Error spans and error logs are never dropped.
    #[serde(default = "yes")]
    pub keep_errors: bool,
    /// A token bucket per value of a key.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

fn yes() -> bool {
    true
}

/// One `drop` condition: every criterion it names must match (a logical AND).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Restricts the condition to one signal.
    #[serde(default)]
    pub signal: Option<SignalName>,
    /// Span name, metric name, or log event name.
    #[serde(default)]
    pub name: Option<TextMatch>,
    /// Log body (logs only).
    #[serde(default)]
    pub body: Option<TextMatch>,
    /// Span, log record or data point attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, TextMatch>,
    /// Resource attributes.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, TextMatch>,
    /// Log severity strictly below this level (logs only).
    #[serde(default)]
    pub severity_below: Option<Severity>,
    /// Span status (spans only).
    #[serde(default)]
    pub status: Option<SpanStatus>,
    /// Span kind (spans only).
    #[serde(default)]
    pub kind: Option<SpanKind>,
}

/// `probabilistic:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probabilistic {
    /// The share of traces kept, 0 to 100.
    pub percent: f64,
    /// 0: use the trace id's own randomness (W3C / OpenTelemetry compatible); otherwise hash
    /// the trace id with this seed.
    #[serde(default)]
    pub hash_seed: u64,
}

/// `rate_limit:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// The attribute whose value picks the bucket (record attribute first, then resource).
    pub key: String,
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size; defaults to `per_second` (at least 1).
    #[serde(default)]
    pub burst: Option<f64>,
    /// Buckets kept per signal; further keys share one overflow bucket.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_max_keys() -> usize {
    10_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalName {
    Traces,
    Metrics,
    Logs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanStatus {
    Unset,
    Ok,
    Error,
}

impl SpanStatus {
    /// The OTLP `Status.code`.
    pub fn code(self) -> i32 {
        match self {
            SpanStatus::Unset => 0,
            SpanStatus::Ok => 1,
            SpanStatus::Error => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// The OTLP `Span.kind`.
    pub fn code(self) -> i32 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }
}

/// An OTLP severity number (1-24), written as a number or as text (`WARN`, `info`, `ERROR2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Severity(pub u8);

/// The severity number of OTLP's `ERROR` (17).
pub const SEVERITY_ERROR: u8 = 17;

/// Reads a severity from text: the OTLP short names with an optional 2-4 suffix
/// (`TRACE`..`FATAL4`), case-insensitive, and the common aliases `WARNING`, `ERR`,
/// `CRITICAL`/`CRIT` (FATAL) and `INFORMATION`.
pub fn severity_from_text(text: &str) -> Option<u8> {
    let t = text.trim().to_ascii_uppercase();
    let (word, step) = match t.as_bytes().last() {
        Some(d @ b'2'..=b'4') => (&t[..t.len() - 1], d - b'1'),
        _ => (t.as_str(), 0),
    };
    let base = match word {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" | "INFORMATION" => 9,
        "WARN" | "WARNING" => 13,
        "ERROR" | "ERR" => 17,
        "FATAL" | "CRITICAL" | "CRIT" => 21,
        _ => return None,
    };
    Some(base + step)
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let n = match &v {
            Value::Number(n) => n.as_u64().filter(|n| (1..=24).contains(n)).map(|n| n as u8),
            Value::String(s) => severity_from_text(s),
            _ => None,
        };
        n.map(Severity).ok_or_else(|| {
            D::Error::custom(format!(
                "invalid severity {v}: expected TRACE, DEBUG, INFO, WARN, ERROR or FATAL (optionally with 2-4 appended), or a number from 1 to 24"
            ))
        })
    }
}

/// How a text (a name, a body, an attribute value) is matched.
#[derive(Debug, Clone)]
pub enum TextMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// Unanchored: matches if the pattern is found anywhere; anchor with `^` and `$`.
    Regex(Regex),
}

impl TextMatch {
    pub fn is_match(&self, text: &str) -> bool {
        match self {
            TextMatch::Exact(s) => text == s,
            TextMatch::Prefix(s) => text.starts_with(s.as_str()),
            TextMatch::Suffix(s) => text.ends_with(s.as_str()),
            TextMatch::Regex(r) => r.is_match(text),
        }
    }
}

/// A scalar from the config as the text it is compared as (`200` and `"200"` alike).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        // Floats as attribute floats print (`1.0` as `1`), integers as they are.
        Value::Number(n) => Some(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => f.to_string(),
            _ => n.to_string(),
        }),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for TextMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "expected a value to match exactly, or one of {exact: ...}, {prefix: ...}, {suffix: ...}, {regex: ...}";
        let v = Value::deserialize(d)?;
        if let Some(text) = scalar_text(&v) {
            return Ok(TextMatch::Exact(text));
        }
        let Value::Object(map) = &v else {
            return Err(D::Error::custom(format!("invalid match {v}: {EXPECTED}")));
        };
        let mut entries = map.iter();
        let (Some((how, arg)), None) = (entries.next(), entries.next()) else {
            return Err(D::Error::custom(format!("invalid match {v}: {EXPECTED}")));
        };
        let Some(text) = scalar_text(arg) else {
            return Err(D::Error::custom(format!(
                "invalid match {v}: `{how}` takes a string"
            )));
        };
        match how.as_str() {
            "exact" => Ok(TextMatch::Exact(text)),
            "prefix" => Ok(TextMatch::Prefix(text)),
            "suffix" => Ok(TextMatch::Suffix(text)),
            "regex" => Regex::new(&text)
                .map(TextMatch::Regex)
                .map_err(|e| D::Error::custom(format!("invalid regex {text:?}: {e}"))),
            other => Err(D::Error::custom(format!(
                "unknown match `{other}`: {EXPECTED}"
            ))),
        }
    }
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
        for (i, c) in self.drop.iter().enumerate() {
            c.check(self.keep_errors)
                .map_err(|m| Error::Config(format!("drop[{i}]: {m}")))?;
        }
        if let Some(p) = &self.probabilistic
            && !(p.percent.is_finite() && (0.0..=100.0).contains(&p.percent))
        {
            return Err(Error::Config(format!(
                "probabilistic.percent: {} is not between 0 and 100",
                p.percent
            )));
        }
        if let Some(r) = &self.rate_limit {
            if r.key.is_empty() {
                return Err(Error::Config("rate_limit.key: must not be empty".into()));
            }
            if !(r.per_second.is_finite() && r.per_second > 0.0) {
                return Err(Error::Config(format!(
                    "rate_limit.per_second: {} must be greater than 0",
                    r.per_second
                )));
            }
            if let Some(b) = r.burst
                && !(b.is_finite() && b >= 1.0)
            {
                return Err(Error::Config(format!(
                    "rate_limit.burst: {b} must be at least 1"
                )));
            }
            if r.max_keys == 0 {
                return Err(Error::Config(
                    "rate_limit.max_keys: must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }
}

impl Condition {
    /// The signals the condition can match: `[traces, metrics, logs]`.
    pub fn signals(&self) -> [bool; 3] {
        let mut s = match self.signal {
            None => [true; 3],
            Some(SignalName::Traces) => [true, false, false],
            Some(SignalName::Metrics) => [false, true, false],
            Some(SignalName::Logs) => [false, false, true],
        };
        if self.body.is_some() || self.severity_below.is_some() {
            s[0] = false;
            s[1] = false;
        }
        if self.status.is_some() || self.kind.is_some() {
            s[1] = false;
            s[2] = false;
        }
        s
    }

    fn check(&self, keep_errors: bool) -> Result<(), String> {
        let criteria = self.name.is_some()
            || self.body.is_some()
            || !self.attributes.is_empty()
            || !self.resource_attributes.is_empty()
            || self.severity_below.is_some()
            || self.status.is_some()
            || self.kind.is_some();
        if !criteria {
            return Err(
                "a condition needs at least one of name, body, attributes, resource_attributes, severity_below, status, kind (an empty one would drop everything)"
                    .into(),
            );
        }
        if self.signals() == [false; 3] {
            return Err(
                "can never match: `body` and `severity_below` apply only to logs, `status` and `kind` only to spans, and `signal` restricts the condition to one signal"
                    .into(),
            );
        }
        if keep_errors && self.status == Some(SpanStatus::Error) {
            return Err(
                "selects error spans, which keep_errors always keeps; set keep_errors: false to drop them"
                    .into(),
            );
        }
        Ok(())
    }
}
