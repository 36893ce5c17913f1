//! The series the plugin keeps: one per resource and set of dimension values, each with its
//! call count, its duration distribution and its latest exemplars; the resources they belong
//! to; and the spans recently counted, so that a span is counted once.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sluice_sdk::view::ValueView;

use crate::config::{Config, Histogram};
use crate::histogram::{Dist, Exponential};

/// A dimension's value, owned (what a series remembers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
}

/// A dimension's value, borrowed from the batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValRef<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Double(f64),
}

impl<'a> ValRef<'a> {
    /// Strings, integers, booleans and doubles; arrays, maps, bytes and empty values are not
    /// dimension values (the dimension's default applies).
    pub fn from_view(v: ValueView<'a>) -> Option<ValRef<'a>> {
        match v {
            ValueView::Str(s) => Some(ValRef::Str(s)),
            ValueView::Int(i) => Some(ValRef::Int(i)),
            ValueView::Bool(b) => Some(ValRef::Bool(b)),
            // JSON (the snapshot) has no NaN or infinities.
            ValueView::Double(d) if d.is_finite() => Some(ValRef::Double(d)),
            ValueView::Double(d) if d.is_nan() => Some(ValRef::Str("NaN")),
            ValueView::Double(d) if d > 0.0 => Some(ValRef::Str("+Inf")),
            ValueView::Double(_) => Some(ValRef::Str("-Inf")),
            _ => None,
        }
    }

    pub fn owned(self) -> Val {
        match self {
            ValRef::Str(s) => Val::Str(s.to_string()),
            ValRef::Int(i) => Val::Int(i),
            ValRef::Bool(b) => Val::Bool(b),
            ValRef::Double(d) => Val::Double(d),
        }
    }
}

impl Val {
    pub fn as_ref(&self) -> ValRef<'_> {
        match self {
            Val::Str(s) => ValRef::Str(s),
            Val::Int(i) => ValRef::Int(*i),
            Val::Bool(b) => ValRef::Bool(*b),
            Val::Double(d) => ValRef::Double(*d),
        }
    }
}

/// Appends a value (or its absence) to a key, unambiguously.
pub fn encode(buf: &mut Vec<u8>, v: Option<ValRef<'_>>) {
    match v {
        None => buf.push(0),
        Some(ValRef::Str(s)) => {
            buf.push(1);
            buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
        }
        Some(ValRef::Int(i)) => {
            buf.push(2);
            buf.extend_from_slice(&i.to_le_bytes());
        }
        Some(ValRef::Bool(b)) => buf.extend_from_slice(&[3, b as u8]),
        Some(ValRef::Double(d)) => {
            buf.push(4);
            buf.extend_from_slice(&d.to_bits().to_le_bytes());
        }
    }
}

/// The key of a resource from its (key) attributes, in name order.
pub fn resource_key(buf: &mut Vec<u8>, attrs: &mut [(&str, ValRef<'_>)]) {
    buf.clear();
    attrs.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in attrs.iter() {
        encode(buf, Some(ValRef::Str(k)));
        encode(buf, Some(*v));
    }
}

/// The latest span seen in a bucket (or for the call count).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub time: u64,
    pub value: f64,
}

/// One series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub resource: u32,
    /// service.name, span.name, span.kind, status.code, then the configured dimensions, each
    /// `None` when excluded or absent.
    pub parts: Vec<Option<Val>>,
    pub calls: u64,
    pub dist: Dist,
    /// Start of the counts: the series' creation (cumulative) or the last flush (delta).
    pub start: u64,
    /// The last time a span was counted.
    pub last: u64,
    /// Counted since the last flush.
    pub fresh: bool,
    /// Exemplars: the call count's, then one per bucket (explicit) or the latest few
    /// (exponential). Not kept across reloads.
    #[serde(skip)]
    pub exemplars: Vec<Option<Exemplar>>,
}

/// Exemplars an exponential series keeps.
const EXPONENTIAL_EXEMPLARS: usize = 4;

impl Series {
    pub fn new(config: &Config, resource: u32, parts: Vec<Option<Val>>, now: u64) -> Series {
        let dist = match &config.histogram {
            Histogram::Disabled => Dist::None,
            Histogram::Explicit(bounds) => Dist::Explicit {
                counts: vec![0; bounds.len() + 1],
                sum: 0.0,
            },
            Histogram::Exponential { .. } => Dist::Exponential(Exponential::default()),
        };
        Series {
            resource,
            parts,
            calls: 0,
            dist,
            start: now,
            last: now,
            fresh: false,
            exemplars: Vec::new(),
        }
    }

    /// Counts one span.
    pub fn record(&mut self, config: &Config, value: f64, exemplar: Option<Exemplar>, now: u64) {
        self.calls = self.calls.saturating_add(1);
        self.last = now;
        self.fresh = true;
        let slot = match (&mut self.dist, &config.histogram) {
            (Dist::Explicit { counts, sum }, Histogram::Explicit(bounds)) => {
                *sum += value;
                Some(1 + Dist::record_explicit(counts, bounds, value))
            }
            (Dist::Exponential(e), Histogram::Exponential { max_size }) => {
                e.record(value, *max_size);
                Some(1 + (e.total() as usize) % EXPONENTIAL_EXEMPLARS)
            }
            _ => None,
        };
        if let Some(ex) = exemplar {
            let want = match &self.dist {
                Dist::None => 1,
                Dist::Explicit { counts, .. } => 1 + counts.len(),
                Dist::Exponential(_) => 1 + EXPONENTIAL_EXEMPLARS,
            };
            if self.exemplars.len() != want {
                self.exemplars = vec![None; want];
            }
            self.exemplars[0] = Some(Exemplar { value: 1.0, ..ex });
            if let Some(slot) = slot {
                self.exemplars[slot] = Some(ex);
            }
        }
    }
}

/// A resource some series belong to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub attrs: Vec<(String, Val)>,
    /// How many series belong to it.
    pub series: usize,
}

/// Everything the plugin counts.
#[derive(Debug, Default)]
pub struct Store {
    pub series: HashMap<Box<[u8]>, Series>,
    pub resources: HashMap<Box<[u8]>, u32>,
    /// By id; `None` once no series belongs to it (the id is then reused).
    pub resource_table: Vec<Option<Resource>>,
    /// Spans whose series would have exceeded `max_series`.
    pub overflow: Option<Series>,
    /// Spans counted into the overflow series, in all.
    pub overflowed: u64,
    /// Spans not counted because they were counted already.
    pub duplicates: u64,
}

impl Store {
    /// The id of a resource, adding it if new.
    pub fn resource_id(&mut self, key: &[u8], attrs: impl FnOnce() -> Vec<(String, Val)>) -> u32 {
        if let Some(id) = self.resources.get(key) {
            return *id;
        }
        let resource = Resource {
            attrs: attrs(),
            series: 0,
        };
        let id = match self.resource_table.iter().position(Option::is_none) {
            Some(free) => {
                self.resource_table[free] = Some(resource);
                free
            }
            None => {
                self.resource_table.push(Some(resource));
                self.resource_table.len() - 1
            }
        };
        let id = id as u32;
        self.resources.insert(key.into(), id);
        id
    }

    /// The key of a series: its resource and its parts.
    pub fn series_key(buf: &mut Vec<u8>, resource: u32, parts: &[Option<ValRef<'_>>]) {
        buf.clear();
        buf.extend_from_slice(&resource.to_le_bytes());
        for p in parts {
            encode(buf, *p);
        }
    }

    pub fn add_series(&mut self, key: &[u8], series: Series) {
        if self.series.contains_key(key) {
            return;
        }
        if let Some(Some(r)) = self.resource_table.get_mut(series.resource as usize) {
            r.series += 1;
        }
        self.series.insert(key.into(), series);
    }

    /// Drops series not counted since `cutoff`, and resources left without series.
    pub fn expire(&mut self, cutoff: u64) {
        let table = &mut self.resource_table;
        self.series.retain(|_, s| {
            let keep = s.last >= cutoff;
            if !keep && let Some(Some(r)) = table.get_mut(s.resource as usize) {
                r.series = r.series.saturating_sub(1);
            }
            keep
        });
        self.drop_empty_resources();
    }

    fn drop_empty_resources(&mut self) {
        let table = &mut self.resource_table;
        self.resources.retain(|_, id| {
            let slot = &mut table[*id as usize];
            if slot.as_ref().is_some_and(|r| r.series == 0) {
                *slot = None;
                false
            } else {
                true
            }
        });
    }
}
