//! `redact`: the built-in plugin that finds personal data and secrets in telemetry and masks,
//! hashes or drops them before they leave the gateway.
//!
//! It looks at span names, attributes and status messages, resource attributes, span event
//! names and attributes, span link attributes, log bodies (strings and structured bodies,
//! recursively) and attributes, and metric data point attributes; inside percent-encoded text
//! too. Built-in detectors (`email`, `credit_card`, `iban`, `ipv4`, `ipv6`, `jwt`, `bearer`,
//! `aws_access_key`, `secret_keys`, `url_secrets`, `phone`, `private_key`, `saas_tokens`,
//! `national_id`) and custom regex rules each have an action: `mask`, `hash` (keyed
//! HMAC-SHA256), `drop_attribute`, `drop_record` or `off`. A batch with nothing to redact is
//! answered `Unchanged`, so the gateway forwards its own bytes; in traces and logs, what is
//! redacted is spliced into the batch's bytes (module `splice`) rather than the batch decoded and
//! encoded again. What was redacted is counted per rule and action and emitted on `tick` as the
//! cumulative sum `redact.redactions`. See the crate's README for the configuration.

mod clean_cache;
mod detect;
mod engine;
mod splice;

use std::collections::BTreeMap;

use sluice_sdk::metrics::Counter;
use sluice_sdk::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_sdk::otlp::logs::v1::LogRecord;
use sluice_sdk::otlp::metrics::v1::{Metric, metric};
use sluice_sdk::otlp::trace::v1::Span;
use sluice_sdk::prost::Message;
use sluice_sdk::wire::{Rewrite, append};
use sluice_sdk::{Error, Info, Plugin, Signal, Verdict, host};

use clean_cache::{CLEAN_MIN_LEN, Memo};
pub use detect::Detector;
pub use engine::{Action, Config, DEFAULT_MASK, SECRET_KEY_NAMES};
use engine::{Engine, Hit, KeyClass};

/// The counter this plugin emits.
pub const METRIC_NAME: &str = "redact.redactions";

/// Attribute keys seen before and how they were classified: slots, and the longest key stored.
const KEY_CACHE_SLOTS: usize = 4096;
const KEY_CACHE_MAX_KEY_LEN: usize = 256;
/// Values seen before that had nothing to redact: slots, and the longest value stored.
const CLEAN_CACHE_SLOTS: usize = 1024;
const CLEAN_CACHE_MAX_LEN: usize = 512;
/// Attributes seen before that had nothing to redact: slots (of the same longest length).
const CLEAN_ATTR_CACHE_SLOTS: usize = 4096;

/// The plugin.
#[derive(Debug)]
pub struct Redact {
    engine: Engine,
    state: State,
}

/// What changes while batches are processed.
#[derive(Debug)]
struct State {
    /// Per rule id, per applied action (see [`Action::counter`]).
    counts: Vec<[u64; 4]>,
    /// Restored counts of rules this configuration no longer has, kept so the emitted sums
    /// stay cumulative: (rule, action) -> count.
    carried: BTreeMap<(String, String), u64>,
    /// The start of the cumulative sums (unix nanoseconds).
    start_time: u64,
    keys: Memo<KeyClass>,
    key_scratch: Vec<u8>,
    hits: Vec<Hit>,
    /// A redacted text being written.
    text: Vec<u8>,
    /// Values seen before that had nothing to redact.
    clean: Memo<()>,
    /// Attributes (encoded `KeyValue`s) seen at least twice that had nothing to redact.
    clean_attrs: Memo<()>,
}

impl State {
    fn count(&mut self, rule: usize, action: Action) {
        if let Some(c) = self
            .counts
            .get_mut(rule)
            .and_then(|c| c.get_mut(action.counter()))
        {
            *c += 1;
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().flatten().sum::<u64>() + self.carried.values().sum::<u64>()
    }
}

/// What becomes of the thing just looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Keep,
    /// Remove the nearest enclosing attribute (key-value entry).
    DropAttribute,
    /// Remove the whole record.
    DropRecord,
}

/// What [`Walker::rewritten`] made of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewritten {
    Kept,
    Replaced,
    DropAttribute,
    DropRecord,
}

impl From<Rewritten> for Outcome {
    fn from(r: Rewritten) -> Outcome {
        match r {
            Rewritten::Kept | Rewritten::Replaced => Outcome::Keep,
            Rewritten::DropAttribute => Outcome::DropAttribute,
            Rewritten::DropRecord => Outcome::DropRecord,
        }
    }
}

/// One batch's walk: the read-only engine, the mutable state, and whether anything changed.
struct Walker<'a> {
    engine: &'a Engine,
    state: &'a mut State,
    changed: bool,
}

impl Walker<'_> {
    fn classify(&mut self, key: &str) -> KeyClass {
        if !self.engine.keys_matter() || !self.engine.key_may_match(key) {
            return KeyClass::Plain;
        }
        let probe = self.state.keys.probe(key.as_bytes());
        if let Some(c) = probe.and_then(|p| self.state.keys.get(p, key.as_bytes())) {
            return c;
        }
        let c = self.engine.classify(key, &mut self.state.key_scratch);
        if let Some(p) = probe {
            self.state.keys.insert(p, key.as_bytes(), c);
        }
        c
    }

    /// The matches in `s` (into `hits`), remembering strings that were costly to find clean.
    fn find(&mut self, s: &str, hits: &mut Vec<Hit>) {
        let probe = if s.len() >= CLEAN_MIN_LEN {
            self.state.clean.probe(s.as_bytes())
        } else {
            None
        };
        if let Some(p) = probe
            && self.state.clean.get(p, s.as_bytes()).is_some()
        {
            hits.clear();
            return;
        }
        let costly = self.engine.find(s, hits);
        if let Some(p) = probe
            && costly
            && hits.is_empty()
        {
            self.state.clean.insert(p, s.as_bytes(), ());
        }
    }

    /// A string value, name or body. `droppable`: whether it sits in an attribute that
    /// `drop_attribute` can remove (otherwise that action masks).
    fn text(&mut self, s: &mut String, droppable: bool) -> Outcome {
        let mut hits = std::mem::take(&mut self.state.hits);
        self.find(s, &mut hits);
        let outcome = self.apply(s, &hits, droppable);
        self.state.hits = hits;
        outcome
    }

    fn apply(&mut self, s: &mut String, hits: &[Hit], droppable: bool) -> Outcome {
        let mut out = Vec::new();
        let outcome = self.rewritten(s, hits, droppable, &mut out);
        if outcome == Rewritten::Replaced {
            // Pieces of `s` and whole strings: UTF-8.
            if let Ok(text) = String::from_utf8(out) {
                *s = text;
                self.changed = true;
            }
        }
        outcome.into()
    }

    /// What `hits` in `s` call for: the record or attribute dropped, or the text with each hit
    /// masked or hashed written to `out` (`Replaced`). Counts what it applies.
    fn rewritten(
        &mut self,
        s: &str,
        hits: &[Hit],
        droppable: bool,
        out: &mut Vec<u8>,
    ) -> Rewritten {
        if hits.is_empty() {
            return Rewritten::Kept;
        }
        let engine = self.engine;
        if let Some(h) = hits
            .iter()
            .find(|h| engine.action(h.rule) == Action::DropRecord)
        {
            self.state.count(h.rule, Action::DropRecord);
            return Rewritten::DropRecord;
        }
        if droppable
            && let Some(h) = hits
                .iter()
                .find(|h| engine.action(h.rule) == Action::DropAttribute)
        {
            self.state.count(h.rule, Action::DropAttribute);
            return Rewritten::DropAttribute;
        }
        out.clear();
        out.reserve(s.len() + 16);
        let mut last = 0;
        let mut replaced = false;
        for h in hits {
            let (Some(before), Some(matched)) =
                (s.get(last..h.range.start), s.get(h.range.clone()))
            else {
                continue;
            };
            let applied = match engine.action(h.rule) {
                Action::Hash => match engine.hash(matched.as_bytes()) {
                    Some(hashed) => {
                        append(out, before.as_bytes());
                        append(out, hashed.as_bytes());
                        Action::Hash
                    }
                    None => continue,
                },
                Action::Mask | Action::DropAttribute => {
                    append(out, before.as_bytes());
                    append(out, engine.mask.as_bytes());
                    Action::Mask
                }
                Action::DropRecord | Action::Off => continue,
            };
            last = h.range.end;
            replaced = true;
            self.state.count(h.rule, applied);
        }
        if !replaced {
            return Rewritten::Kept;
        }
        append(out, s.get(last..).unwrap_or_default().as_bytes());
        Rewritten::Replaced
    }

    /// Any value: strings are scanned, arrays and key-value lists walked; other types are left
    /// alone.
    fn value(&mut self, v: &mut AnyValue, droppable: bool) -> Outcome {
        match v.value.as_mut() {
            Some(any_value::Value::StringValue(s)) => self.text(s, droppable),
            Some(any_value::Value::ArrayValue(a)) => {
                for e in &mut a.values {
                    let o = self.value(e, droppable);
                    if o != Outcome::Keep {
                        return o;
                    }
                }
                Outcome::Keep
            }
            Some(any_value::Value::KvlistValue(kv)) => self.attributes(&mut kv.values),
            _ => Outcome::Keep,
        }
    }

    /// A list of attributes (or a key-value list body): entries are dropped in place. Returns
    /// `DropRecord` or `Keep`.
    fn attributes(&mut self, attrs: &mut Vec<KeyValue>) -> Outcome {
        let mut drop_record = false;
        let mut dropped = false;
        attrs.retain_mut(|kv| {
            if drop_record {
                return true;
            }
            match self.attribute(kv) {
                Outcome::Keep => true,
                Outcome::DropAttribute => {
                    dropped = true;
                    false
                }
                Outcome::DropRecord => {
                    drop_record = true;
                    true
                }
            }
        });
        self.changed |= dropped;
        if drop_record {
            Outcome::DropRecord
        } else {
            Outcome::Keep
        }
    }

    fn attribute(&mut self, kv: &mut KeyValue) -> Outcome {
        match self.classify(&kv.key) {
            KeyClass::Allow => Outcome::Keep,
            KeyClass::Block => {
                self.state
                    .count(self.engine.block_rule, Action::DropAttribute);
                Outcome::DropAttribute
            }
            KeyClass::Secret => match kv.value.as_mut() {
                Some(v) => self.secret(v),
                None => Outcome::Keep,
            },
            KeyClass::Plain => match kv.value.as_mut() {
                Some(v) => self.value(v, true),
                None => Outcome::Keep,
            },
        }
    }

    /// The value of a `secret_keys` attribute: all of it is the secret.
    fn secret(&mut self, v: &mut AnyValue) -> Outcome {
        let Some(inner) = v.value.as_ref() else {
            return Outcome::Keep;
        };
        let present = match inner {
            any_value::Value::StringValue(s) => !s.is_empty() && !self.engine.is_redacted(s),
            // A profile's string-table index is no text of its own.
            any_value::Value::BoolValue(_) | any_value::Value::StringValueStrindex(_) => false,
            any_value::Value::IntValue(_) | any_value::Value::DoubleValue(_) => true,
            any_value::Value::BytesValue(b) => !b.is_empty(),
            any_value::Value::ArrayValue(a) => !a.values.is_empty(),
            any_value::Value::KvlistValue(kv) => !kv.values.is_empty(),
        };
        let replacement = self.secret_replacement(present, || match inner {
            any_value::Value::StringValue(s) => s.as_bytes().into(),
            any_value::Value::BytesValue(b) => b.as_slice().into(),
            any_value::Value::IntValue(i) => i.to_string().into_bytes().into(),
            any_value::Value::DoubleValue(d) => d.to_string().into_bytes().into(),
            _ => v.encode_to_vec().into(),
        });
        match replacement {
            Ok(replacement) => {
                v.value = Some(any_value::Value::StringValue(replacement));
                self.changed = true;
                Outcome::Keep
            }
            Err(outcome) => outcome,
        }
    }

    /// What the `secret_keys` rule does to a value (`present`: not empty nor redacted already):
    /// the string to put in its place, or the outcome when it is kept or dropped. `hashed` gives
    /// the bytes to hash. Counts what it applies.
    fn secret_replacement<'v>(
        &mut self,
        present: bool,
        hashed: impl FnOnce() -> std::borrow::Cow<'v, [u8]>,
    ) -> Result<String, Outcome> {
        let engine = self.engine;
        let Some(rule) = engine.secret_rule else {
            return Err(Outcome::Keep);
        };
        if !present {
            return Err(Outcome::Keep);
        }
        let action = engine.action(rule);
        let replacement = match action {
            Action::Off => return Err(Outcome::Keep),
            Action::DropRecord | Action::DropAttribute => {
                self.state.count(rule, action);
                return Err(if action == Action::DropRecord {
                    Outcome::DropRecord
                } else {
                    Outcome::DropAttribute
                });
            }
            Action::Mask => engine.mask.clone(),
            Action::Hash => engine.hash(&hashed()).ok_or(Outcome::Keep)?,
        };
        self.state.count(
            rule,
            if action == Action::Hash {
                Action::Hash
            } else {
                Action::Mask
            },
        );
        Ok(replacement)
    }

    /// Whether the span must be dropped.
    fn span(&mut self, span: &mut Span) -> bool {
        if self.text(&mut span.name, false) == Outcome::DropRecord
            || self.attributes(&mut span.attributes) == Outcome::DropRecord
        {
            return true;
        }
        for e in &mut span.events {
            if self.text(&mut e.name, false) == Outcome::DropRecord
                || self.attributes(&mut e.attributes) == Outcome::DropRecord
            {
                return true;
            }
        }
        if span
            .links
            .iter_mut()
            .any(|l| self.attributes(&mut l.attributes) == Outcome::DropRecord)
        {
            return true;
        }
        // Where an error's message lands: exceptions often carry user input.
        span.status
            .as_mut()
            .is_some_and(|st| self.text(&mut st.message, false) == Outcome::DropRecord)
    }

    /// Whether the log record must be dropped.
    fn log(&mut self, log: &mut LogRecord) -> bool {
        if let Some(body) = log.body.as_mut()
            && self.value(body, false) == Outcome::DropRecord
        {
            return true;
        }
        self.attributes(&mut log.attributes) == Outcome::DropRecord
    }

    /// Removes the records for which `drop` is true; marks the batch changed if any went.
    fn retain<T>(&mut self, records: &mut Vec<T>, mut drop: impl FnMut(&mut Self, &mut T) -> bool) {
        let before = records.len();
        records.retain_mut(|r| !drop(self, r));
        self.changed |= records.len() != before;
    }

    /// Drops every record of a resource whose attributes called for `drop_record`.
    fn clear<T>(&mut self, records: &mut Vec<T>) {
        if !records.is_empty() {
            records.clear();
            self.changed = true;
        }
    }

    fn data_points(&mut self, metric: &mut Metric, drop_all: bool) {
        let Some(data) = metric.data.as_mut() else {
            return;
        };
        macro_rules! points {
            ($points:expr) => {
                if drop_all {
                    self.clear($points)
                } else {
                    self.retain($points, |w, p| {
                        w.attributes(&mut p.attributes) == Outcome::DropRecord
                    })
                }
            };
        }
        match data {
            metric::Data::Gauge(g) => points!(&mut g.data_points),
            metric::Data::Sum(s) => points!(&mut s.data_points),
            metric::Data::Histogram(h) => points!(&mut h.data_points),
            metric::Data::ExponentialHistogram(h) => points!(&mut h.data_points),
            metric::Data::Summary(s) => points!(&mut s.data_points),
        }
    }
}

impl Redact {
    fn walker(&mut self) -> Walker<'_> {
        Walker {
            engine: &self.engine,
            state: &mut self.state,
            changed: false,
        }
    }

    /// The counts as (rule, action, count), nonzero only.
    fn series(&self) -> Vec<(String, String, u64)> {
        let mut out: Vec<(String, String, u64)> = Vec::new();
        for (rule, counts) in self.engine.rules.iter().zip(&self.state.counts) {
            for (action, n) in Action::COUNTED.iter().zip(counts) {
                if *n > 0 {
                    out.push((rule.name.clone(), action.name().to_string(), *n));
                }
            }
        }
        for ((rule, action), n) in &self.state.carried {
            if *n > 0 {
                out.push((rule.clone(), action.clone(), *n));
            }
        }
        out
    }

    fn counter_metric(&self, now: u64) -> ExportMetricsServiceRequest {
        Counter {
            scope: "sluice-plugin-redact",
            version: env!("CARGO_PKG_VERSION"),
            name: METRIC_NAME,
            description: "Values, attributes and records the redact plugin masked, hashed or dropped.",
            unit: "{redaction}",
        }
        .request(
            self.state.start_time,
            now,
            self.series()
                .into_iter()
                .map(|(rule, action, n)| (vec![("rule", rule), ("action", action)], n)),
        )
    }
}

fn verdict(changed: bool) -> Verdict {
    if changed {
        Verdict::Modified
    } else {
        Verdict::Unchanged
    }
}

/// The snapshot: the counts, as JSON.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Snapshot {
    start_time_unix_nano: u64,
    counts: Vec<SnapshotCount>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SnapshotCount {
    rule: String,
    action: String,
    count: u64,
}

impl Plugin for Redact {
    fn describe() -> Info {
        Info::new(
            "redact",
            env!("CARGO_PKG_VERSION"),
            &[Signal::Traces, Signal::Metrics, Signal::Logs],
        )
        .stateful()
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config: Config = sluice_sdk::parse_config(config)?;
        let engine = Engine::new(config)?;
        let state = State {
            counts: vec![[0; 4]; engine.rules.len()],
            carried: BTreeMap::new(),
            start_time: host::now(),
            keys: Memo::new(KEY_CACHE_SLOTS, KEY_CACHE_MAX_KEY_LEN),
            key_scratch: Vec::new(),
            clean: Memo::new(CLEAN_CACHE_SLOTS, CLEAN_CACHE_MAX_LEN),
            clean_attrs: Memo::new(CLEAN_ATTR_CACHE_SLOTS, CLEAN_CACHE_MAX_LEN),
            hits: Vec::new(),
            text: Vec::new(),
        };
        Ok(Redact { engine, state })
    }

    fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
        let mut w = self.walker();
        for rs in &mut batch.resource_spans {
            let drop_all = rs
                .resource
                .as_mut()
                .is_some_and(|r| w.attributes(&mut r.attributes) == Outcome::DropRecord);
            for ss in &mut rs.scope_spans {
                if drop_all {
                    w.clear(&mut ss.spans);
                } else {
                    w.retain(&mut ss.spans, Walker::span);
                }
            }
        }
        Ok(verdict(w.changed))
    }

    fn metrics(&mut self, batch: &mut ExportMetricsServiceRequest) -> Result<Verdict, Error> {
        let mut w = self.walker();
        for rm in &mut batch.resource_metrics {
            let drop_all = rm
                .resource
                .as_mut()
                .is_some_and(|r| w.attributes(&mut r.attributes) == Outcome::DropRecord);
            for sm in &mut rm.scope_metrics {
                for m in &mut sm.metrics {
                    w.data_points(m, drop_all);
                }
            }
        }
        Ok(verdict(w.changed))
    }

    fn logs(&mut self, batch: &mut ExportLogsServiceRequest) -> Result<Verdict, Error> {
        let mut w = self.walker();
        for rl in &mut batch.resource_logs {
            let drop_all = rl
                .resource
                .as_mut()
                .is_some_and(|r| w.attributes(&mut r.attributes) == Outcome::DropRecord);
            for sl in &mut rl.scope_logs {
                if drop_all {
                    w.clear(&mut sl.log_records);
                } else {
                    w.retain(&mut sl.log_records, Walker::log);
                }
            }
        }
        Ok(verdict(w.changed))
    }

    fn rewrite(&mut self, signal: Signal, batch: &[u8]) -> Result<Option<Rewrite>, Error> {
        // Traces and logs are redacted in place of their bytes; metrics (whose points are
        // small and many) through the decoded batch.
        match signal {
            Signal::Traces => self.splice_traces(batch).map(Some),
            Signal::Logs => self.splice_logs(batch).map(Some),
            Signal::Metrics => Ok(None),
        }
    }

    fn tick(&mut self, now: u64) -> Result<(), Error> {
        if self.state.total() > 0 {
            host::emit_metrics(&self.counter_metric(now));
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        let snapshot = Snapshot {
            start_time_unix_nano: self.state.start_time,
            counts: self
                .series()
                .into_iter()
                .map(|(rule, action, count)| SnapshotCount {
                    rule,
                    action,
                    count,
                })
                .collect(),
        };
        sluice_sdk::serde_json::to_vec(&snapshot).unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        if state.is_empty() {
            return Ok(());
        }
        let snapshot: Snapshot = sluice_sdk::serde_json::from_slice(state)
            .map_err(|e| Error::Input(format!("redact state: {e}")))?;
        if snapshot.start_time_unix_nano != 0 {
            self.state.start_time = snapshot.start_time_unix_nano;
        }
        for c in snapshot.counts {
            let slot = match (self.engine.rule_id(&c.rule), Action::from_name(&c.action)) {
                (Some(rule), Some(action)) if action != Action::Off => self
                    .state
                    .counts
                    .get_mut(rule)
                    .and_then(|counts| counts.get_mut(action.counter())),
                _ => None,
            };
            match slot {
                Some(n) => *n = c.count,
                None => {
                    self.state.carried.insert((c.rule, c.action), c.count);
                }
            }
        }
        Ok(())
    }
}

sluice_sdk::export_plugin!(Redact);

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_detectors;
