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
//! Traces and logs are never decoded (`Plugin::rewrite`): the steps run on attributes read in
//! place, and only what they change is spliced into the batch (`sluice_sdk::wire::Splice`), so
//! adding an attribute to a span costs one append. Metrics are too with resource steps only;
//! with record steps they are decoded, and encoded again only when something changed.

mod config;
mod template;

use sluice_sdk::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_sdk::otlp::metrics::v1::{Metric, metric};
use sluice_sdk::otlp::resource::v1::Resource;
use sluice_sdk::prost::Message;
use sluice_sdk::view::{self, AttributesView, LogsView, TracesView, ValueView};
use sluice_sdk::wire::{Rewrite, Splice};
use sluice_sdk::{Error, Info, Plugin, Signal, Verdict};

pub use config::Config;
use config::{Action, Derive, Lookup, Steps};

/// The plugin.
#[derive(Debug)]
pub struct Enrich {
    config: Config,
}

// ---- attribute primitives; each returns whether it changed something --------------------

/// One attribute as the steps see it: as it came in the batch (still encoded), or set by a
/// step.
#[derive(Debug, Clone)]
enum Attr<'a> {
    /// `encoded` is the whole `KeyValue`, `value` its `AnyValue` (`None`: no value).
    Kept {
        key: &'a str,
        value: Option<&'a [u8]>,
        encoded: &'a [u8],
    },
    Set(KeyValue),
}

impl Attr<'_> {
    fn key(&self) -> &str {
        match self {
            Attr::Kept { key, .. } => key,
            Attr::Set(kv) => &kv.key,
        }
    }

    /// The value (an attribute without a value, or one that does not decode, reads as an
    /// empty value).
    fn value(&self) -> AnyValue {
        match self {
            Attr::Kept { value, .. } => value
                .and_then(|v| AnyValue::decode(v).ok())
                .unwrap_or_default(),
            Attr::Set(kv) => kv.value.clone().unwrap_or_default(),
        }
    }

    /// The value if it is a string, without copying an encoded one.
    fn str_value(&self) -> Option<&str> {
        match self {
            Attr::Kept { value, .. } => ValueView::from_encoded((*value)?).ok()?.as_str(),
            Attr::Set(kv) => match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s),
                _ => None,
            },
        }
    }
}

/// The attributes of a resource or record, in order.
type Attrs<'a> = Vec<Attr<'a>>;

fn position(attrs: &Attrs<'_>, key: &str) -> Option<usize> {
    attrs.iter().position(|a| a.key() == key)
}

/// The value of the first attribute named `key`.
fn get(attrs: &Attrs<'_>, key: &str) -> Option<AnyValue> {
    attrs.iter().find(|a| a.key() == key).map(Attr::value)
}

/// Sets `key` to `value`, replacing the first attribute of that name or adding one.
fn upsert(attrs: &mut Attrs<'_>, key: &str, value: AnyValue) -> bool {
    match position(attrs, key) {
        Some(i) if attrs[i].value() == value => false,
        Some(i) => {
            attrs[i] = Attr::Set(KeyValue {
                key: key.to_string(),
                value: Some(value),
                ..Default::default()
            });
            true
        }
        None => insert(attrs, key, value),
    }
}

/// Adds `key` unless it is present.
fn insert(attrs: &mut Attrs<'_>, key: &str, value: AnyValue) -> bool {
    if position(attrs, key).is_some() {
        return false;
    }
    attrs.push(Attr::Set(KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }));
    true
}

/// Removes every attribute named `key`.
fn delete(attrs: &mut Attrs<'_>, key: &str) -> bool {
    let before = attrs.len();
    attrs.retain(|a| a.key() != key);
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

fn apply_action(attrs: &mut Attrs<'_>, action: &Action) -> bool {
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

fn apply_derive(attrs: &mut Attrs<'_>, derive: &Derive) -> bool {
    if position(attrs, &derive.to).is_some() {
        return false;
    }
    let Some(path) = attrs
        .iter()
        .find(|a| a.key() == derive.from)
        .and_then(Attr::str_value)
    else {
        return false;
    };
    match derive.templates.iter().find(|t| t.matches(path)) {
        Some(t) => {
            let value = AnyValue {
                value: Some(any_value::Value::StringValue(t.text().to_string())),
            };
            insert(attrs, &derive.to, value)
        }
        None => false,
    }
}

fn apply_lookup(attrs: &mut Attrs<'_>, lookup: &Lookup) -> bool {
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

fn apply(attrs: &mut Attrs<'_>, steps: &Steps) -> bool {
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

fn into_key_values(attrs: Attrs<'_>) -> Vec<KeyValue> {
    attrs
        .into_iter()
        .map(|a| match a {
            Attr::Set(kv) => kv,
            Attr::Kept { key, value, .. } => KeyValue {
                key: key.to_string(),
                value: value.and_then(|v| AnyValue::decode(v).ok()),
                ..Default::default()
            },
        })
        .collect()
}

/// Runs `steps` on decoded attributes.
fn apply_decoded(attrs: &mut Vec<KeyValue>, steps: &Steps) -> bool {
    let mut list: Attrs<'_> = std::mem::take(attrs).into_iter().map(Attr::Set).collect();
    let changed = apply(&mut list, steps);
    *attrs = into_key_values(list);
    changed
}

/// The attributes of a resource or record as they came, and as the steps leave them.
#[derive(Default)]
struct Scratch<'a> {
    originals: Vec<&'a [u8]>,
    attrs: Attrs<'a>,
}

impl<'a> Scratch<'a> {
    /// Reads the attributes of `view`, still encoded.
    fn read(&mut self, view: &AttributesView<'a>) -> Result<(), Error> {
        self.originals.clear();
        self.attrs.clear();
        view.for_each_encoded(|encoded| {
            let (key, value) = AttributesView::split_encoded(encoded)?;
            self.originals.push(encoded);
            self.attrs.push(Attr::Kept {
                key,
                value,
                encoded,
            });
            Ok(())
        })
    }

    /// Runs `steps` on the attributes of `view`, in the message `holder` (the record, or the
    /// resource), and splices what they changed into the batch.
    /// The attributes from the first that differs on are removed and the new list's rest
    /// appended: an added attribute costs one append, and those before a change are not
    /// touched. Returns the attributes when `view` has no holder (a resource level without a
    /// resource) and the steps added some.
    fn run(
        &mut self,
        view: &AttributesView<'a>,
        holder: &'a [u8],
        steps: &Steps,
        splice: &mut Splice<'a>,
    ) -> Result<Option<Vec<KeyValue>>, Error> {
        self.read(view)?;
        if !apply(&mut self.attrs, steps) {
            return Ok(None);
        }
        let Some(field) = view.field_number() else {
            return Ok(Some(into_key_values(std::mem::take(&mut self.attrs))));
        };
        let same = self
            .originals
            .iter()
            .zip(&self.attrs)
            .take_while(
                |(o, a)| matches!(a, Attr::Kept { encoded, .. } if std::ptr::eq(*encoded, **o)),
            )
            .count();
        for o in &self.originals[same..] {
            splice.remove(o);
        }
        for a in &self.attrs[same..] {
            match a {
                Attr::Kept { encoded, .. } => splice.append_field(holder, field, encoded),
                Attr::Set(kv) => splice.append_message(holder, field, kv),
            }
        }
        Ok(None)
    }
}

impl Enrich {
    /// Applies the resource steps to a resource, creating it only if that adds something.
    fn resource(&self, resource: &mut Option<Resource>) -> bool {
        if self.config.resource.is_empty() {
            return false;
        }
        let existed = resource.is_some();
        let mut r = resource.take().unwrap_or_default();
        let changed = apply_decoded(&mut r.attributes, &self.config.resource);
        if existed || changed {
            *resource = Some(r);
        }
        changed
    }

    fn record(&self, attrs: &mut Vec<KeyValue>) -> bool {
        !self.config.record.is_empty() && apply_decoded(attrs, &self.config.record)
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

    /// Nothing is decoded: the steps run on each resource's and record's attributes read in
    /// place, and what they change is spliced into the batch, which is otherwise copied byte
    /// for byte. Metrics with record steps (attributes of data points, five kinds deep) take
    /// the decoded path.
    fn rewrite(&mut self, signal: Signal, batch: &[u8]) -> Result<Option<Rewrite>, Error> {
        let records = !self.config.record.is_empty();
        if records && matches!(signal, Signal::Metrics) {
            return Ok(None);
        }
        let mut splice = Splice::new(batch);
        let mut scratch = Scratch::default();
        if !self.config.resource.is_empty() {
            let steps = &self.config.resource;
            view::for_each_resource_level(batch, |level, resource| {
                if let Some(attributes) =
                    scratch.run(&resource, resource.holder(), steps, &mut splice)?
                {
                    let resource = Resource {
                        attributes,
                        ..Default::default()
                    };
                    splice.append_message(level, 1, &resource);
                }
                Ok(())
            })?;
        }
        if records {
            let steps = &self.config.record;
            match signal {
                Signal::Traces => TracesView::new(batch).for_each_span(|_, span| {
                    scratch
                        .run(&span.attributes, span.encoded(), steps, &mut splice)
                        .map(drop)
                })?,
                Signal::Logs => LogsView::new(batch).for_each_log(|_, log| {
                    scratch
                        .run(&log.attributes, log.encoded(), steps, &mut splice)
                        .map(drop)
                })?,
                _ => return Ok(None),
            }
        }
        splice.finish().map(Some)
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
