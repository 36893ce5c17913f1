//! `enrich`: adds context to traces, metrics and logs.
//!
//! On each resource's attributes, then on each record's (span, log record, metric data point),
//! in this order:
//!
//! 1. `derive`: sets an attribute from a route template matching another (`url.path` ->
//!    `http.route`), when it is absent;
//! 2. `lookup` (resources only): adds the attributes a table maps the value of a key to
//!    (`service.name: checkout` -> `team: payments`), when they are absent;
//! 3. `attributes`: `insert`, `update`, `upsert`, `delete`, `copy`, `rename`, in the order
//!    written, so they can also clean up (delete the `url.path` a route was derived from).
//!
//! The batch is re-encoded (`Verdict::Modified`) only when something changed; with resource
//! steps only, only the resources are (`Plugin::rewrite`).

mod config;
mod template;

use sluice_sdk::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_sdk::otlp::metrics::v1::{Metric, metric};
use sluice_sdk::otlp::resource::v1::Resource;
use sluice_sdk::wire::{self, Rewrite};
use sluice_sdk::{Error, Info, Plugin, Signal, Verdict};

pub use config::Config;
use config::{Action, Derive, Lookup, Steps};

/// The plugin.
#[derive(Debug)]
pub struct Enrich {
    config: Config,
}

// ---- attribute primitives; each returns whether it changed something --------------------

fn position(attrs: &[KeyValue], key: &str) -> Option<usize> {
    attrs.iter().position(|kv| kv.key == key)
}

/// The value of the first attribute named `key` (an attribute without a value reads as an
/// empty value).
fn get(attrs: &[KeyValue], key: &str) -> Option<AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.clone().unwrap_or_default())
}

/// Sets `key` to `value`, replacing the first attribute of that name or adding one.
fn upsert(attrs: &mut Vec<KeyValue>, key: &str, value: AnyValue) -> bool {
    match position(attrs, key) {
        Some(i) if attrs[i].value.as_ref() == Some(&value) => false,
        Some(i) => {
            attrs[i].value = Some(value);
            true
        }
        None => insert(attrs, key, value),
    }
}

/// Adds `key` unless it is present.
fn insert(attrs: &mut Vec<KeyValue>, key: &str, value: AnyValue) -> bool {
    if position(attrs, key).is_some() {
        return false;
    }
    attrs.push(KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    });
    true
}

/// Removes every attribute named `key`.
fn delete(attrs: &mut Vec<KeyValue>, key: &str) -> bool {
    let before = attrs.len();
    attrs.retain(|kv| kv.key != key);
    attrs.len() != before
}

/// A scalar value as text, for table look-ups (`1` and `"1"` alike).
fn text(v: &AnyValue) -> Option<String> {
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn apply_action(attrs: &mut Vec<KeyValue>, action: &Action) -> bool {
    match action {
        Action::Insert { key, value } => insert(attrs, key, value.clone()),
        Action::Update { key, value } => {
            position(attrs, key).is_some() && upsert(attrs, key, value.clone())
        }
        Action::Upsert { key, value } => upsert(attrs, key, value.clone()),
        Action::Delete { key } => delete(attrs, key),
        Action::Copy { from, to } => get(attrs, from).is_some_and(|v| upsert(attrs, to, v)),
        Action::Rename { from, to } => match get(attrs, from) {
            Some(v) => {
                delete(attrs, from);
                upsert(attrs, to, v);
                true
            }
            None => false,
        },
    }
}

fn apply_derive(attrs: &mut Vec<KeyValue>, derive: &Derive) -> bool {
    if position(attrs, &derive.to).is_some() {
        return false;
    }
    let Some(AnyValue {
        value: Some(any_value::Value::StringValue(path)),
    }) = get(attrs, &derive.from)
    else {
        return false;
    };
    match derive.templates.iter().find(|t| t.matches(&path)) {
        Some(t) => insert(
            attrs,
            &derive.to,
            AnyValue {
                value: Some(any_value::Value::StringValue(t.text().to_string())),
            },
        ),
        None => false,
    }
}

fn apply_lookup(attrs: &mut Vec<KeyValue>, lookup: &Lookup) -> bool {
    let entry = get(attrs, &lookup.key)
        .and_then(|v| text(&v))
        .and_then(|k| lookup.table.get(&k))
        .unwrap_or(&lookup.default);
    let mut changed = false;
    for kv in entry {
        if let Some(v) = &kv.value {
            changed |= insert(attrs, &kv.key, v.clone());
        }
    }
    changed
}

fn apply(attrs: &mut Vec<KeyValue>, steps: &Steps) -> bool {
    let mut changed = false;
    for d in &steps.derive {
        changed |= apply_derive(attrs, d);
    }
    for l in &steps.lookup {
        changed |= apply_lookup(attrs, l);
    }
    for a in &steps.actions {
        changed |= apply_action(attrs, a);
    }
    changed
}

impl Enrich {
    /// Applies the resource steps to a resource, creating it only if that adds something.
    fn resource(&self, resource: &mut Option<Resource>) -> bool {
        if self.config.resource.is_empty() {
            return false;
        }
        let existed = resource.is_some();
        let mut r = resource.take().unwrap_or_default();
        let changed = apply(&mut r.attributes, &self.config.resource);
        if existed || changed {
            *resource = Some(r);
        }
        changed
    }

    fn record(&self, attrs: &mut Vec<KeyValue>) -> bool {
        !self.config.record.is_empty() && apply(attrs, &self.config.record)
    }

    fn is_empty(&self) -> bool {
        self.config.resource.is_empty() && self.config.record.is_empty()
    }

    fn metric(&self, m: &mut Metric) -> bool {
        let mut changed = false;
        let mut each = |attrs: &mut Vec<KeyValue>| changed |= self.record(attrs);
        match &mut m.data {
            Some(metric::Data::Gauge(g)) => g
                .data_points
                .iter_mut()
                .for_each(|p| each(&mut p.attributes)),
            Some(metric::Data::Sum(s)) => s
                .data_points
                .iter_mut()
                .for_each(|p| each(&mut p.attributes)),
            Some(metric::Data::Histogram(h)) => h
                .data_points
                .iter_mut()
                .for_each(|p| each(&mut p.attributes)),
            Some(metric::Data::ExponentialHistogram(h)) => h
                .data_points
                .iter_mut()
                .for_each(|p| each(&mut p.attributes)),
            Some(metric::Data::Summary(s)) => s
                .data_points
                .iter_mut()
                .for_each(|p| each(&mut p.attributes)),
            None => {}
        }
        changed
    }
}

fn verdict(changed: bool) -> Verdict {
    if changed {
        Verdict::Modified
    } else {
        Verdict::Unchanged
    }
}

impl Plugin for Enrich {
    fn describe() -> Info {
        Info::new(
            "enrich",
            env!("CARGO_PKG_VERSION"),
            &[Signal::Traces, Signal::Metrics, Signal::Logs],
        )
    }

    fn new(config: &str) -> Result<Self, Error> {
        Ok(Enrich {
            config: Config::parse(config)?,
        })
    }

    /// With resource steps only (the common case: add a region, look up a team), only the
    /// resources are decoded and written again; spans, data points and log records are copied
    /// byte for byte.
    fn rewrite(&mut self, _signal: Signal, batch: &[u8]) -> Result<Option<Rewrite>, Error> {
        if self.is_empty() || !self.config.record.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            match wire::rewrite_resources(batch, |r| self.resource(r))? {
                Some(bytes) => Rewrite::Replace(bytes),
                None => Rewrite::Unchanged,
            },
        ))
    }

    fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
        if self.is_empty() {
            return Ok(Verdict::Unchanged);
        }
        let mut changed = false;
        for rs in &mut batch.resource_spans {
            changed |= self.resource(&mut rs.resource);
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    changed |= self.record(&mut span.attributes);
                }
            }
        }
        Ok(verdict(changed))
    }

    fn metrics(&mut self, batch: &mut ExportMetricsServiceRequest) -> Result<Verdict, Error> {
        if self.is_empty() {
            return Ok(Verdict::Unchanged);
        }
        let mut changed = false;
        for rm in &mut batch.resource_metrics {
            changed |= self.resource(&mut rm.resource);
            for sm in &mut rm.scope_metrics {
                for m in &mut sm.metrics {
                    changed |= self.metric(m);
                }
            }
        }
        Ok(verdict(changed))
    }

    fn logs(&mut self, batch: &mut ExportLogsServiceRequest) -> Result<Verdict, Error> {
        if self.is_empty() {
            return Ok(Verdict::Unchanged);
        }
        let mut changed = false;
        for rl in &mut batch.resource_logs {
            changed |= self.resource(&mut rl.resource);
            for sl in &mut rl.scope_logs {
                for log in &mut sl.log_records {
                    changed |= self.record(&mut log.attributes);
                }
            }
        }
        Ok(verdict(changed))
    }
}

sluice_sdk::export_plugin!(Enrich);

#[cfg(test)]
mod tests;
