//! The distinct values and series seen per metric, as 64-bit hashes, within a global budget.

use std::collections::{BTreeMap, HashMap, HashSet};

use sluice_sdk::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_sdk::prost::Message;

/// A stable 64-bit hash (FNV-1a, finished with the MurmurHash3 mixer). Stable across versions
/// and platforms, because the hashes are part of the plugin's state.
#[derive(Debug)]
pub struct StableHasher(u64);

impl StableHasher {
    pub fn new() -> StableHasher {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Writes a length-prefixed field, so that concatenations cannot collide.
    pub fn field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    pub fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

fn write_value(h: &mut StableHasher, v: Option<&AnyValue>) {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => {
            h.write(b"s");
            h.field(s.as_bytes());
        }
        Some(other) => {
            // Other types by their protobuf encoding (tagged, so 5 and "5" differ).
            h.write(b"p");
            h.field(
                &AnyValue {
                    value: Some(other.clone()),
                }
                .encode_to_vec(),
            );
        }
        None => h.write(b"n"),
    }
}

/// The hash of one attribute value.
pub fn value_hash(v: Option<&AnyValue>) -> u64 {
    let mut h = StableHasher::new();
    write_value(&mut h, v);
    h.finish()
}

/// The hash of an attribute set, independent of the attributes' order.
pub fn series_hash(attributes: &[KeyValue]) -> u64 {
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut h = StableHasher::new();
    for kv in sorted {
        h.field(kv.key.as_bytes());
        write_value(&mut h, kv.value.as_ref());
    }
    h.finish()
}

/// What is tracked for one metric.
#[derive(Debug, Default)]
pub struct MetricState {
    /// attribute key -> hashes of the values seen.
    pub values: HashMap<String, HashSet<u64>>,
    /// Hashes of the attribute sets seen.
    pub series: HashSet<u64>,
}

/// Why a value or a series was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The metric's own cap is reached.
    Limit,
    /// `max_tracked` is reached.
    Budget,
}

/// The seen sets of every metric, holding at most `max_tracked` hashes in all.
#[derive(Debug)]
pub struct Tracker {
    pub metrics: HashMap<String, MetricState>,
    total: usize,
    max_tracked: usize,
}

impl Tracker {
    pub fn new(max_tracked: usize) -> Tracker {
        Tracker {
            metrics: HashMap::new(),
            total: 0,
            max_tracked,
        }
    }

    /// Hashes tracked, all metrics together.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn clear(&mut self) {
        self.metrics.clear();
        self.total = 0;
    }

    /// Admits a value of `key` for `metric`: already seen, or new and within `max` and the
    /// budget (then it is remembered).
    pub fn admit_value(
        &mut self,
        metric: &str,
        key: &str,
        hash: u64,
        max: usize,
    ) -> Result<(), Refusal> {
        let seen = self
            .metrics
            .get(metric)
            .and_then(|m| m.values.get(key))
            .map_or(0, |set| {
                if set.contains(&hash) {
                    usize::MAX
                } else {
                    set.len()
                }
            });
        if seen == usize::MAX {
            return Ok(());
        }
        if seen >= max {
            return Err(Refusal::Limit);
        }
        if self.total >= self.max_tracked {
            return Err(Refusal::Budget);
        }
        let state = self.metric_mut(metric);
        match state.values.get_mut(key) {
            Some(set) => {
                set.insert(hash);
            }
            None => {
                state.values.insert(key.to_string(), HashSet::from([hash]));
            }
        }
        self.total += 1;
        Ok(())
    }

    /// Admits an attribute set of `metric`, as [`Tracker::admit_value`] does a value.
    pub fn admit_series(&mut self, metric: &str, hash: u64, max: usize) -> Result<(), Refusal> {
        let (seen, len) = self
            .metrics
            .get(metric)
            .map_or((false, 0), |m| (m.series.contains(&hash), m.series.len()));
        if seen {
            return Ok(());
        }
        if len >= max {
            return Err(Refusal::Limit);
        }
        if self.total >= self.max_tracked {
            return Err(Refusal::Budget);
        }
        self.metric_mut(metric).series.insert(hash);
        self.total += 1;
        Ok(())
    }

    /// Called only when a hash is added, so the name is copied once per new value at most.
    fn metric_mut(&mut self, metric: &str) -> &mut MetricState {
        self.metrics.entry(metric.to_string()).or_default()
    }

    /// The seen sets in a stable order (for the snapshot).
    pub fn export(&self) -> BTreeMap<String, SavedMetric> {
        self.metrics
            .iter()
            .map(|(name, m)| {
                let mut values: BTreeMap<String, Vec<u64>> = BTreeMap::new();
                for (key, set) in &m.values {
                    let mut v: Vec<u64> = set.iter().copied().collect();
                    v.sort_unstable();
                    values.insert(key.clone(), v);
                }
                let mut series: Vec<u64> = m.series.iter().copied().collect();
                series.sort_unstable();
                (name.clone(), SavedMetric { values, series })
            })
            .collect()
    }
}

/// One metric's seen sets in the snapshot.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SavedMetric {
    #[serde(default)]
    pub values: BTreeMap<String, Vec<u64>>,
    #[serde(default)]
    pub series: Vec<u64>,
}
