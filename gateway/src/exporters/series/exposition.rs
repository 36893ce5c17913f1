//! Renderings of the series store. A [`Collector`] receives each series' samples in the order
//! every Prometheus format lists them ([`collect_series`]: a histogram's buckets with their
//! `le`, then `_sum` and `_count`; a summary's quantiles, then `_sum` and `_count`). The scrape
//! endpoint's text rendering ([`TextCollector`], Prometheus text 0.0.4 or OpenMetrics 1.0) is
//! one collector; the remote_write exporter's time series are another.

use std::fmt::Write as _;
use std::time::Instant;

use super::{Family, Kind, Labels, Series, Store, StoredExemplar, Value};
use crate::naming;

/// What one rendering does with the samples of the store's series.
pub trait Collector {
    /// A series begins; its samples follow.
    fn series(&mut self, kind: Kind, labels: &Labels);
    /// One sample of the current series: its metric name (`_bucket`, `_sum` and `_count` added
    /// where they apply), the label a bucket or quantile adds, and the exemplar it carries, if
    /// any (counters and histogram buckets).
    fn sample(
        &mut self,
        name: &str,
        labels: &Labels,
        extra: Option<(&str, &str)>,
        value: f64,
        exemplar: Option<&StoredExemplar>,
    );
}

/// Hands the samples of one series to `c`, in exposition order.
pub fn collect_series(c: &mut impl Collector, name: &str, kind: Kind, labels: &Labels, s: &Series) {
    c.series(kind, labels);
    match &s.value {
        Value::Scalar(v) => {
            let exemplar = if kind == Kind::Counter {
                s.exemplars.first().and_then(|e| e.as_ref())
            } else {
                None
            };
            c.sample(name, labels, None, *v, exemplar);
        }
        Value::Histogram {
            bounds,
            counts,
            sum,
            count,
        } => {
            let bucket = format!("{name}_bucket");
            let mut le = String::new();
            let mut cumulative = 0u64;
            for (i, n) in counts.iter().enumerate() {
                cumulative = cumulative.saturating_add(*n);
                le.clear();
                match bounds.get(i) {
                    Some(b) => push_float(&mut le, *b),
                    None => le.push_str("+Inf"),
                }
                let exemplar = s.exemplars.get(i).and_then(|e| e.as_ref());
                c.sample(
                    &bucket,
                    labels,
                    Some(("le", &le)),
                    cumulative as f64,
                    exemplar,
                );
            }
            c.sample(&format!("{name}_sum"), labels, None, *sum, None);
            c.sample(&format!("{name}_count"), labels, None, *count as f64, None);
        }
        Value::Summary {
            quantiles,
            sum,
            count,
        } => {
            for (q, v) in quantiles {
                c.sample(
                    name,
                    labels,
                    Some(("quantile", &format_float(*q))),
                    *v,
                    None,
                );
            }
            c.sample(&format!("{name}_sum"), labels, None, *sum, None);
            c.sample(&format!("{name}_count"), labels, None, *count as f64, None);
        }
    }
}

/// The text exposition: Prometheus text 0.0.4, or OpenMetrics 1.0 with exemplars.
pub struct TextCollector<'a> {
    out: &'a mut String,
    openmetrics: bool,
    /// The current histogram's label pairs, written once and repeated on each of its lines.
    pairs: String,
    repeated: bool,
}

impl<'a> TextCollector<'a> {
    pub fn new(out: &'a mut String, openmetrics: bool) -> TextCollector<'a> {
        TextCollector {
            out,
            openmetrics,
            pairs: String::new(),
            repeated: false,
        }
    }
}

impl Collector for TextCollector<'_> {
    fn series(&mut self, kind: Kind, labels: &Labels) {
        self.repeated = kind == Kind::Histogram;
        if self.repeated {
            self.pairs.clear();
            push_label_pairs(&mut self.pairs, labels);
        }
    }

    fn sample(
        &mut self,
        name: &str,
        labels: &Labels,
        extra: Option<(&str, &str)>,
        value: f64,
        exemplar: Option<&StoredExemplar>,
    ) {
        let pairs = if self.repeated {
            Pairs::Text(&self.pairs)
        } else {
            Pairs::Labels(labels)
        };
        write_sample(self.out, name, pairs, extra, value);
        if self.openmetrics
            && let Some(e) = exemplar
        {
            attach_exemplar(self.out, e);
        }
    }
}

impl Store {
    /// Renders the exposition: Prometheus text 0.0.4, or OpenMetrics 1.0 with exemplars.
    pub fn render(&mut self, openmetrics: bool, now: Instant) -> String {
        self.sweep(now);
        let mut out = String::with_capacity(self.render_capacity());
        self.render_target_info(&mut out, openmetrics);
        for (name, family) in &self.families {
            let sample_name = family_header(&mut out, name, family, openmetrics);
            let mut text = TextCollector::new(&mut out, openmetrics);
            for (labels, s) in &family.series {
                collect_series(&mut text, &sample_name, family.kind, labels, s);
            }
        }
        if openmetrics {
            out.push_str("# EOF\n");
        }
        self.last_render_len = out.len();
        out
    }

    /// The output size to allocate for a render: the last one's and a margin, or an estimate.
    fn render_capacity(&self) -> usize {
        (self.series * 96 + 256).max(self.last_render_len + self.last_render_len / 8)
    }

    fn render_target_info(&self, out: &mut String, openmetrics: bool) {
        if self.target_info.is_empty() {
            return;
        }
        if openmetrics {
            out.push_str("# TYPE target info\n");
        } else {
            out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
        }
        let mut infos: Vec<&Labels> = self.target_info.keys().collect();
        infos.sort();
        for labels in infos {
            write_sample(out, "target_info", Pairs::Labels(labels), None, 1.0);
        }
    }

    /// The same exposition as [`Store::render`], built while holding the lock for at most
    /// `chunk` series at a time, so that ingest (the exporter's writers) waits for one chunk,
    /// not for the whole scrape. If series are removed meanwhile (which shifts positions), the
    /// render starts again; after three tries it renders under one lock.
    pub fn render_chunked(
        store: &std::sync::Mutex<Store>,
        openmetrics: bool,
        now: Instant,
        chunk: usize,
    ) -> Option<String> {
        let lock = || {
            Some(
                store
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
        };
        'attempt: for _ in 0..3 {
            let (generation, names, mut out) = {
                let mut s = lock()?;
                s.sweep(now);
                let mut out = String::with_capacity(s.render_capacity());
                s.render_target_info(&mut out, openmetrics);
                (
                    s.generation,
                    s.families.keys().cloned().collect::<Vec<_>>(),
                    out,
                )
            };
            for name in &names {
                let mut pos = 0;
                let mut sample_name = String::new();
                loop {
                    let s = lock()?;
                    if s.generation != generation {
                        continue 'attempt;
                    }
                    let Some(family) = s.families.get(name) else {
                        break;
                    };
                    if pos == 0 {
                        sample_name = family_header(&mut out, name, family, openmetrics);
                    }
                    let end = (pos + chunk.max(1)).min(family.series.len());
                    let mut text = TextCollector::new(&mut out, openmetrics);
                    for i in pos..end {
                        if let Some((labels, series)) = family.series.get_index(i) {
                            collect_series(&mut text, &sample_name, family.kind, labels, series);
                        }
                    }
                    pos = end;
                    if pos >= family.series.len() {
                        break;
                    }
                }
            }
            if openmetrics {
                out.push_str("# EOF\n");
            }
            lock()?.last_render_len = out.len();
            return Some(out);
        }
        Some(lock()?.render(openmetrics, now))
    }
}

/// `# HELP` and `# TYPE` of a family; returns the name its samples carry.
fn family_header(out: &mut String, name: &str, family: &Family, openmetrics: bool) -> String {
    let family_name = if openmetrics && family.kind == Kind::Counter {
        name.strip_suffix("_total").unwrap_or(name)
    } else {
        name
    };
    if !family.help.is_empty() {
        let _ = writeln!(
            out,
            "# HELP {} {}",
            quote_name(family_name),
            escape_help(&family.help)
        );
    }
    let _ = writeln!(
        out,
        "# TYPE {} {}",
        quote_name(family_name),
        family.kind.text()
    );
    // OpenMetrics counter samples always end in `_total`, even without suffixes.
    if openmetrics && family.kind == Kind::Counter {
        format!("{family_name}_total")
    } else {
        name.to_string()
    }
}

fn attach_exemplar(out: &mut String, e: &StoredExemplar) {
    // Replace the sample's newline with the exemplar.
    out.pop();
    let _ = write!(out, " # {{");
    let mut first = true;
    if !e.trace_id.is_empty() {
        let _ = write!(out, "trace_id=\"{}\"", e.trace_id);
        first = false;
    }
    if !e.span_id.is_empty() {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "span_id=\"{}\"", e.span_id);
    }
    let _ = write!(out, "}} {}", format_float(e.value));
    if e.time_unix_nano > 0 {
        let _ = write!(out, " {:.3}", e.time_unix_nano as f64 / 1e9);
    }
    out.push('\n');
}

/// A sample's labels: the series' own, or the same already written as `k="v",...`.
#[derive(Clone, Copy)]
enum Pairs<'a> {
    Labels(&'a Labels),
    Text(&'a str),
}

impl Pairs<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Pairs::Labels(l) => l.is_empty(),
            Pairs::Text(t) => t.is_empty(),
        }
    }

    fn push(&self, out: &mut String) {
        match self {
            Pairs::Labels(l) => push_label_pairs(out, l),
            Pairs::Text(t) => out.push_str(t),
        }
    }
}

/// `k="v"` for each label, comma-separated.
fn push_label_pairs(out: &mut String, labels: &Labels) {
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_label(out, k, v);
    }
}

fn push_label(out: &mut String, k: &str, v: &str) {
    if naming::is_legacy_name(k) {
        out.push_str(k);
    } else {
        push_quoted(out, k);
    }
    out.push('=');
    push_quoted(out, v);
}

fn write_sample(
    out: &mut String,
    name: &str,
    pairs: Pairs<'_>,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    let legacy = naming::is_legacy_name(name);
    if legacy {
        out.push_str(name);
    }
    if !pairs.is_empty() || extra.is_some() || !legacy {
        out.push('{');
        let mut first = true;
        if !legacy {
            push_quoted(out, name);
            first = false;
        }
        if !pairs.is_empty() {
            if !first {
                out.push(',');
            }
            pairs.push(out);
            first = false;
        }
        if let Some((k, v)) = extra {
            if !first {
                out.push(',');
            }
            push_label(out, k, v);
        }
        out.push('}');
    }
    out.push(' ');
    push_float(out, value);
    out.push('\n');
}

/// Appends `"v"` with the exposition format's escapes, without allocating.
fn push_quoted(out: &mut String, v: &str) {
    out.push('"');
    if v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
    } else {
        out.push_str(v);
    }
    out.push('"');
}

pub(super) fn push_float(out: &mut String, v: f64) {
    // Most sample values are counts: whole numbers print the same through the integer
    // formatter, which is several times cheaper than the float one (not -0, which prints "-0").
    if v.fract() == 0.0 && v.abs() < 1e15 && (v != 0.0 || v.is_sign_positive()) {
        let _ = write!(out, "{}", v as i64);
    } else if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str(&format_float(v));
    }
}

fn quote_name(name: &str) -> String {
    if naming::is_legacy_name(name) {
        name.to_string()
    } else {
        format!("\"{}\"", escape_label_value(name))
    }
}

pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

fn escape_label_value(v: &str) -> String {
    if !v.contains(['\\', '"', '\n']) {
        return v.to_string();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}
