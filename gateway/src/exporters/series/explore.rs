//! What the metrics explorer shows of a series store: each family with its type, unit, help,
//! series count and the labels with the most distinct values; and the series of one family,
//! filtered by label values, with their last values.
//!
//! The store's lock is held for one family at a time, so ingest goes on between families; the
//! distinct values of a label are counted up to [`DISTINCT_CAP`], so a family of a million
//! series costs a bounded set per label.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::{Family, Store, Value};

/// Labels listed per family, those with the most distinct values first.
pub const TOP_LABELS: usize = 5;
/// Distinct values counted per label before counting stops (`capped` is then true).
pub const DISTINCT_CAP: usize = 10_000;
/// Series a listing returns at most.
pub const MAX_SERIES: usize = 1_000;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelCardinality {
    pub name: String,
    pub distinct: usize,
    /// Counting stopped at [`DISTINCT_CAP`]: there are at least that many.
    pub capped: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FamilySummary {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub unit: String,
    pub help: String,
    pub series: usize,
    pub labels: Vec<LabelCardinality>,
}

/// Every family of `store`, by name.
pub fn families(store: &Mutex<Store>) -> Vec<FamilySummary> {
    let names: Vec<String> = lock(store).families.keys().cloned().collect();
    names
        .into_iter()
        .filter_map(|name| {
            let guard = lock(store);
            let family = guard.families.get(&name)?;
            Some(summary(&name, family))
        })
        .collect()
}

fn summary(name: &str, family: &Family) -> FamilySummary {
    let mut values: HashMap<&str, HashSet<&str>> = HashMap::new();
    for labels in family.series.keys() {
        for (k, v) in labels {
            let seen = values.entry(k.as_str()).or_default();
            if seen.len() < DISTINCT_CAP {
                seen.insert(v.as_str());
            }
        }
    }
    let mut labels: Vec<LabelCardinality> = values
        .into_iter()
        .map(|(name, seen)| LabelCardinality {
            name: name.to_string(),
            distinct: seen.len(),
            capped: seen.len() >= DISTINCT_CAP,
        })
        .collect();
    labels.sort_by(|a, b| {
        b.distinct
            .cmp(&a.distinct)
            .then_with(|| a.name.cmp(&b.name))
    });
    labels.truncate(TOP_LABELS);
    FamilySummary {
        name: name.to_string(),
        kind: family.kind.text(),
        unit: family.unit.clone(),
        help: family.help.clone(),
        series: family.series.len(),
        labels,
    }
}

/// One series and its last value. Histograms and summaries carry `count` as `value`, and their
/// `sum`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeriesView {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    /// Time of the latest point, unix seconds.
    pub time: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeriesPage {
    pub family: String,
    /// Series of the family that match, of which at most `limit` are listed.
    pub matching: usize,
    pub series: Vec<SeriesView>,
}

/// The series of `family` whose labels include every `(name, value)` of `matchers`, at most
/// `limit` (and [`MAX_SERIES`]); `None` if there is no such family.
pub fn series(
    store: &Mutex<Store>,
    family: &str,
    matchers: &[(String, String)],
    limit: usize,
) -> Option<SeriesPage> {
    let guard = lock(store);
    let f = guard.families.get(family)?;
    let limit = limit.min(MAX_SERIES);
    let mut matching = 0;
    let mut out = Vec::new();
    for (labels, s) in &f.series {
        let matches = matchers
            .iter()
            .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v));
        if !matches {
            continue;
        }
        matching += 1;
        if out.len() < limit {
            let (value, sum) = match &s.value {
                Value::Scalar(v) => (*v, None),
                Value::Histogram { sum, count, .. } | Value::Summary { sum, count, .. } => {
                    (*count as f64, Some(*sum))
                }
            };
            out.push(SeriesView {
                labels: labels.clone(),
                value,
                sum,
                time: s.time_unix_nano as f64 / 1e9,
            });
        }
    }
    Some(SeriesPage {
        family: family.to_string(),
        matching,
        series: out,
    })
}

/// Series per family, for `sluice_prometheus_series`.
pub fn series_per_family(store: &Mutex<Store>) -> Vec<(String, usize)> {
    lock(store)
        .families
        .iter()
        .map(|(name, f)| (name.clone(), f.series.len()))
        .collect()
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}
