//! OTLP attributes as Prometheus labels: attribute values as label values, names sanitized,
//! colliding names merged, and the labels of one data point built in reused buffers so that
//! finding a series that exists allocates nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::ops::Range;

use indexmap::Equivalent;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use super::Labels;
use crate::naming::{self, TranslationStrategy};

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// An attribute value as a label value: strings as they are, other scalars in their usual text,
/// arrays and maps as JSON.
pub fn any_value_string(v: &AnyValue) -> String {
    let mut s = String::new();
    push_any_value(&mut s, v);
    s
}

/// [`any_value_string`], appended to `out`.
fn push_any_value(out: &mut String, v: &AnyValue) {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => out.push_str(s),
        Some(any_value::Value::BoolValue(b)) => {
            let _ = write!(out, "{b}");
        }
        Some(any_value::Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(any_value::Value::DoubleValue(d)) => {
            let _ = write!(out, "{d}");
        }
        Some(any_value::Value::BytesValue(b)) => push_hex(out, b),
        Some(any_value::Value::ArrayValue(a)) => out.push_str(
            &serde_json::to_string(&a.values.iter().map(any_value_json).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
        Some(any_value::Value::KvlistValue(_)) => {
            out.push_str(&serde_json::to_string(&any_value_json(v)).unwrap_or_default())
        }
        // A string-table index only has meaning inside profiles data.
        Some(any_value::Value::StringValueStrindex(i)) => {
            let _ = write!(out, "{i}");
        }
        None => {}
    }
}

fn any_value_json(v: &AnyValue) -> serde_json::Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone().into(),
        Some(any_value::Value::BoolValue(b)) => (*b).into(),
        Some(any_value::Value::IntValue(i)) => (*i).into(),
        Some(any_value::Value::DoubleValue(d)) => (*d).into(),
        Some(any_value::Value::BytesValue(b)) => hex(b).into(),
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(any_value_json)
            .collect::<Vec<_>>()
            .into(),
        Some(any_value::Value::KvlistValue(kv)) => kv
            .values
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.as_ref().map(any_value_json).unwrap_or_default(),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Some(any_value::Value::StringValueStrindex(i)) => (*i).into(),
        None => serde_json::Value::Null,
    }
}

/// One label of a point being ingested, as ranges of [`PointLabels::buf`].
#[derive(Debug, Clone)]
pub(super) struct LabelRange {
    name: Range<usize>,
    value: Range<usize>,
    /// A resource or scope label, which wins over an attribute of the same name.
    base: bool,
}

/// The labels of one data point, built in buffers reused from point to point: looking up (and
/// updating) a series that exists allocates nothing; they become [`Labels`] only for a new
/// series. The same labels as `attribute_labels` and then `merge_labels` give.
#[derive(Debug, Default)]
pub(super) struct PointLabels {
    buf: String,
    labels: Vec<LabelRange>,
}

impl PointLabels {
    /// `attrs` as labels (sanitized names), `base` over them, sorted by name.
    pub(super) fn build(
        &mut self,
        attrs: &[KeyValue],
        base: &Labels,
        strategy: TranslationStrategy,
    ) {
        self.buf.clear();
        self.labels.clear();
        for a in attrs {
            let name = self.buf.len();
            naming::push_label_name(&mut self.buf, &a.key, strategy);
            let value = self.buf.len();
            if let Some(v) = &a.value {
                push_any_value(&mut self.buf, v);
            }
            self.labels.push(LabelRange {
                name: name..value,
                value: value..self.buf.len(),
                base: false,
            });
        }
        for (k, v) in base {
            self.push(k, v, true);
        }
        let buf = &self.buf;
        // Stable, attributes before base labels of the same name: the last of a name wins.
        self.labels.sort_by(|a, b| {
            buf[a.name.clone()]
                .cmp(&buf[b.name.clone()])
                .then(a.base.cmp(&b.base))
        });
        let mut kept = 0;
        for i in 0..self.labels.len() {
            if let Some(next) = self.labels.get(i + 1)
                && buf[next.name.clone()] == buf[self.labels[i].name.clone()]
            {
                if !next.base {
                    // Two attributes with one sanitized name: their values are joined.
                    return self.merge_the_slow_way(attrs, base, strategy);
                }
                continue;
            }
            self.labels.swap(kept, i);
            kept += 1;
        }
        self.labels.truncate(kept);
    }

    fn merge_the_slow_way(
        &mut self,
        attrs: &[KeyValue],
        base: &Labels,
        strategy: TranslationStrategy,
    ) {
        let mut labels = attribute_labels(attrs, strategy);
        merge_labels(&mut labels, base);
        self.buf.clear();
        self.labels.clear();
        for (k, v) in &labels {
            self.push(k, v, false);
        }
    }

    fn push(&mut self, name: &str, value: &str, base: bool) {
        let start = self.buf.len();
        self.buf.push_str(name);
        let middle = self.buf.len();
        self.buf.push_str(value);
        self.labels.push(LabelRange {
            name: start..middle,
            value: middle..self.buf.len(),
            base,
        });
    }

    pub(super) fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.labels
            .iter()
            .map(|l| (&self.buf[l.name.clone()], &self.buf[l.value.clone()]))
    }

    pub(super) fn to_labels(&self) -> Labels {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl Hash for PointLabels {
    /// Exactly what the same [`Labels`] (a `Vec<(String, String)>`) feed a hasher, so that a
    /// series map keyed by `Labels` can be searched with a `PointLabels`: the length prefix of
    /// a slice (a slice of units carries nothing else; a `Vec` of them allocates nothing), then
    /// each pair as two `str`s.
    fn hash<H: Hasher>(&self, state: &mut H) {
        vec![(); self.labels.len()].as_slice().hash(state);
        for (k, v) in self.iter() {
            (k, v).hash(state);
        }
    }
}

impl Equivalent<Labels> for PointLabels {
    fn equivalent(&self, key: &Labels) -> bool {
        key.len() == self.labels.len()
            && self
                .iter()
                .zip(key)
                .all(|((k, v), (kk, kv))| k == kk && v == kv)
    }
}

/// Attributes as sorted labels; attributes whose sanitized names collide are merged, their
/// values joined with `;` in the order of the original keys.
pub(super) fn attribute_labels(attrs: &[KeyValue], strategy: TranslationStrategy) -> Labels {
    let mut by_name: BTreeMap<String, Vec<(&str, String)>> = BTreeMap::new();
    for a in attrs {
        let value = a.value.as_ref().map(any_value_string).unwrap_or_default();
        by_name
            .entry(naming::label_name(&a.key, strategy))
            .or_default()
            .push((&a.key, value));
    }
    by_name
        .into_iter()
        .map(|(name, mut values)| {
            values.sort_by(|a, b| a.0.cmp(b.0));
            let joined = values
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(";");
            (name, joined)
        })
        .collect()
}

/// Adds `extra` to sorted `labels`; `extra` wins on equal names.
pub(super) fn merge_labels(labels: &mut Labels, extra: &[(String, String)]) {
    for (k, v) in extra {
        match labels.binary_search_by(|(n, _)| n.as_str().cmp(k)) {
            Ok(i) => labels[i].1 = v.clone(),
            Err(i) => labels.insert(i, (k.clone(), v.clone())),
        }
    }
}
