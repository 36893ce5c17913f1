//! The Prometheus exposition parser: a scrape body in the text format 0.0.4 or in OpenMetrics 1.0
//! (chosen from the response's Content-Type by [`Format::from_content_type`], as Prometheus
//! chooses) becomes a list of metric [`Family`]s. It owns the syntax of both formats (metric and
//! label names, label sets and their escapes, values, timestamps, `# HELP`/`# TYPE`, and
//! OpenMetrics' `# UNIT`, exemplars and closing `# EOF`), the grouping of samples into families
//! (a histogram's `_bucket`/`_sum`/`_count` and the other suffixes of each type, under the latest
//! `# TYPE`/`# HELP` of the family's name), and the scrape limits (`sample_limit`, `label_limit`
//! and the label length limits), which stop the parse as soon as they are crossed. Like
//! Prometheus it fails a body as a whole on its first error: a scrape is taken whole or not at
//! all. The body is untrusted: the parser never panics nor recurses, its work is linear in the
//! body, and what it returns is at most linear in the body's size.

use std::collections::HashMap;

/// Which exposition format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// From a Content-Type header: `application/openmetrics-text...` is OpenMetrics; anything else
    /// (text/plain, empty, unknown) is Text, as Prometheus does.
    pub fn from_content_type(content_type: &str) -> Format {
        // The parameters (version, charset) do not change the grammar we accept.
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// A family's type, from its `# TYPE` line; `untyped` (text format) and undeclared are `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl MetricType {
    /// The type's name as OpenMetrics writes it in `# TYPE`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

/// An OpenMetrics exemplar, attached to a counter's `_total` or a histogram's `_bucket` sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch (written as float seconds).
    pub timestamp_ms: Option<i64>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The full sample name as written, e.g. `http_requests_total`, `rpc_seconds_bucket`.
    pub name: String,
    /// Labels in the order written (not including `__name__`).
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch (text format: integer ms; OpenMetrics: float seconds, converted).
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<Exemplar>,
}

/// A metric family: the samples under one `# TYPE`/`# HELP` (or, undeclared, a run of samples of
/// one name), in the order written.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family name: for OpenMetrics counters WITHOUT `_total` (the sample carries it); for
    /// text-format counters the name as in `# TYPE`.
    pub name: String,
    pub kind: MetricType,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

/// The scrape limits of a target. They count what the body writes: the labels between a sample's
/// braces (not `__name__`, nor the target labels relabeling adds later), and their names and
/// unescaped values in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Most samples in the whole body; 0 = no limit (Prometheus `sample_limit`).
    pub max_samples: usize,
    /// Most labels on one sample; 0 = no limit (`label_limit`).
    pub max_labels: usize,
    /// Longest label name; 0 = no limit (`label_name_length_limit`).
    pub max_label_name_len: usize,
    /// Longest label value; 0 = no limit (`label_value_length_limit`).
    pub max_label_value_len: usize,
}

/// Why a body was refused; the first problem found, as Prometheus reports one per failed scrape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// `line` is 1-based; message says what was expected, short, for a person (e.g. "line 12:
    /// expected a value after the labels, found `}`").
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("more than {limit} samples (sample_limit)")]
    SampleLimit { limit: usize },
    #[error("line {line}: more than {limit} labels on a sample (label_limit)")]
    LabelLimit { line: usize, limit: usize },
    #[error("line {line}: a label name or value longer than the limit of {limit} bytes")]
    LabelLength { line: usize, limit: usize },
}

impl ParseError {
    /// The 1-based line the error is on, if it is on one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::Syntax { line, .. }
            | ParseError::LabelLimit { line, .. }
            | ParseError::LabelLength { line, .. } => Some(*line),
            ParseError::SampleLimit { .. } => None,
        }
    }
}

/// Parses a whole body. Fails as a whole on the first error, as Prometheus fails the scrape.
pub fn parse(body: &[u8], format: Format, limits: &Limits) -> Result<Vec<Family>, ParseError> {
    let mut parser = Parser {
        om: format == Format::OpenMetrics,
        limits: *limits,
        entries: Vec::new(),
        declared: HashMap::new(),
        current: None,
        samples: 0,
        scratch: Vec::new(),
    };
    let mut line_no = 0;
    let mut eof = false;
    for line in (Lines { rest: body }) {
        line_no += 1;
        if eof {
            return Err(syntax(line_no, "unexpected content after `# EOF`"));
        }
        eof = parser.line(line, line_no)?;
    }
    if parser.om && !eof {
        return Err(syntax(
            line_no + 1,
            "expected `# EOF` at the end of an OpenMetrics body",
        ));
    }
    Ok(parser.entries.into_iter().map(|e| e.family).collect())
}

/// OpenMetrics caps an exemplar's label names and values at 128 code points together.
const EXEMPLAR_MAX_CHARS: usize = 128;

/// The body's lines, without their `\n`. A final `\n` ends the last line rather than opening an
/// empty one, so OpenMetrics' `# EOF\n` is last.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        match self.rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                let (line, tail) = self.rest.split_at(n);
                self.rest = tail.get(1..).unwrap_or_default();
                Some(line)
            }
            None => Some(std::mem::take(&mut self.rest)),
        }
    }
}

/// A family being built, with what the parser needs to know about it.
struct Entry {
    family: Family,
    /// Made by a `# TYPE`/`# HELP`/`# UNIT` line (rather than by a sample with no such line).
    declared: bool,
    /// Its `# TYPE` line has been seen (an `Unknown` kind alone does not say).
    typed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Descriptor {
    Help,
    Type,
    Unit,
    Eof,
}

impl Descriptor {
    fn as_str(self) -> &'static str {
        match self {
            Descriptor::Help => "HELP",
            Descriptor::Type => "TYPE",
            Descriptor::Unit => "UNIT",
            Descriptor::Eof => "EOF",
        }
    }
}

/// Which part of its family a sample is, by the suffix its name adds to the family's name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Bare,
    Total,
    Created,
    Bucket,
    Sum,
    Count,
    GSum,
    GCount,
    Info,
}

/// No name ends with two of these, so at most one applies.
const SUFFIXES: [(&[u8], Part); 8] = [
    (b"_total", Part::Total),
    (b"_created", Part::Created),
    (b"_bucket", Part::Bucket),
    (b"_sum", Part::Sum),
    (b"_count", Part::Count),
    (b"_gsum", Part::GSum),
    (b"_gcount", Part::GCount),
    (b"_info", Part::Info),
];

fn split_suffix(name: &[u8]) -> Option<(&[u8], Part)> {
    SUFFIXES
        .iter()
        .find_map(|&(suffix, part)| Some((name.strip_suffix(suffix)?, part)))
}

/// Whether a sample named `sample` belongs to the family `family` of type `kind`, and as what.
/// The text format knows only the histogram's and summary's suffixes: there a counter's
/// `_created` is a gauge family of its own, declared as such (Python's client writes it so).
fn part_of(family: &str, kind: MetricType, om: bool, sample: &str, has_le: bool) -> Option<Part> {
    let rest = sample.as_bytes().strip_prefix(family.as_bytes())?;
    if rest.is_empty() {
        return Some(Part::Bare);
    }
    let (_, part) = SUFFIXES.iter().find(|(suffix, _)| *suffix == rest)?;
    let fits = match (kind, *part) {
        // A bucket is a bucket only with its bound.
        (MetricType::Histogram | MetricType::GaugeHistogram, Part::Bucket) => has_le,
        (MetricType::Histogram | MetricType::Summary, Part::Sum | Part::Count) => true,
        (MetricType::GaugeHistogram, Part::GSum | Part::GCount) => true,
        (MetricType::Counter, Part::Total) => om,
        (MetricType::Counter | MetricType::Histogram | MetricType::Summary, Part::Created) => om,
        (MetricType::Info, Part::Info) => om,
        _ => false,
    };
    fits.then_some(*part)
}

struct Parser<'a> {
    om: bool,
    limits: Limits,
    entries: Vec<Entry>,
    /// The latest declared family of each name, for samples that come back to a family after
    /// another one (the formats say not to; Prometheus still types them by their name).
    declared: HashMap<&'a [u8], usize>,
    /// The family of the latest sample or descriptor, tried first: samples come grouped.
    current: Option<usize>,
    samples: usize,
    /// The labels of the sample being read; reused so that each sample's `Vec` is allocated
    /// once, at its final size.
    scratch: Vec<(String, String)>,
}

impl<'a> Parser<'a> {
    /// Parses one line; returns whether it was OpenMetrics' `# EOF`.
    fn line(&mut self, line: &'a [u8], no: usize) -> Result<bool, ParseError> {
        let mut c = Cursor {
            bytes: line,
            pos: 0,
        };
        if self.om {
            if line.is_empty() {
                return Err(syntax(
                    no,
                    "expected a sample or a `#` line, found an empty line (OpenMetrics has no blank lines)",
                ));
            }
        } else {
            c.skip_ws();
            if c.at_end() {
                return Ok(false);
            }
        }
        if c.eat(b'#') {
            return self.descriptor(c, no);
        }
        self.sample(c, no)?;
        Ok(false)
    }

    /// A line that opened with `#`, the cursor after it.
    fn descriptor(&mut self, mut c: Cursor<'a>, no: usize) -> Result<bool, ParseError> {
        let spaced = c.skip_ws();
        let word = c.take_while(|b| b.is_ascii_alphabetic());
        let descriptor = match word {
            b"HELP" => Some(Descriptor::Help),
            b"TYPE" => Some(Descriptor::Type),
            b"UNIT" if self.om => Some(Descriptor::Unit),
            b"EOF" if self.om => Some(Descriptor::Eof),
            _ => None,
        };
        // In the text format every other `#` line is a comment (`# HELP` alone too, as in
        // Prometheus); OpenMetrics has no comments.
        let descriptor = match descriptor {
            Some(d) if spaced => d,
            _ if self.om => {
                return Err(syntax(
                    no,
                    "expected `# HELP`, `# TYPE`, `# UNIT` or `# EOF` (OpenMetrics has no comments)",
                ));
            }
            _ => return Ok(false),
        };
        let after = c.skip_ws();
        if descriptor == Descriptor::Eof {
            if !c.at_end() {
                return Err(syntax(
                    no,
                    format!(
                        "expected end of line after `# EOF`, found {}",
                        found(c.peek())
                    ),
                ));
            }
            return Ok(true);
        }
        if !after {
            // `# HELP` alone, or `# HELP:x`, is a text-format comment, as in Prometheus.
            if !self.om {
                return Ok(false);
            }
            return Err(syntax(
                no,
                format!(
                    "expected a space after `# {}`, found {}",
                    descriptor.as_str(),
                    found(c.peek())
                ),
            ));
        }
        let Some(name) = c.metric_name() else {
            return Err(syntax(
                no,
                format!(
                    "expected a metric name after `# {}`, found {}",
                    descriptor.as_str(),
                    found(c.peek())
                ),
            ));
        };
        // One separator, then the rest of the line: a help text keeps its other spaces.
        let text = match c.peek() {
            None => &[][..],
            Some(b' ' | b'\t') => {
                c.bump();
                c.rest()
            }
            Some(other) => {
                return Err(syntax(
                    no,
                    format!(
                        "expected a space after the metric name `{name}`, found {}",
                        found(Some(other))
                    ),
                ));
            }
        };
        match descriptor {
            Descriptor::Help => {
                let Ok(help) = std::str::from_utf8(text) else {
                    return Err(syntax(no, "the help text is not valid UTF-8"));
                };
                // The text format escapes only `\\` and `\n` in help; OpenMetrics also `\"`.
                let help = unescape(help, self.om);
                if let Some(entry) = self.declare(name, Descriptor::Help) {
                    entry.family.help = Some(help);
                }
            }
            Descriptor::Type => {
                let word = text.trim_ascii();
                let Some(kind) = metric_type(word, self.om) else {
                    let expected = if self.om {
                        "counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown"
                    } else {
                        "counter, gauge, histogram, summary or untyped"
                    };
                    return Err(syntax(
                        no,
                        format!("expected a metric type ({expected}), found {}", show(word)),
                    ));
                };
                if let Some(entry) = self.declare(name, Descriptor::Type) {
                    entry.family.kind = kind;
                    entry.typed = true;
                }
            }
            Descriptor::Unit => {
                let unit = text.trim_ascii();
                let Some(unit) = unit
                    .iter()
                    .all(|&b| is_name_char(b))
                    .then(|| std::str::from_utf8(unit).ok())
                    .flatten()
                else {
                    return Err(syntax(
                        no,
                        format!(
                            "expected a unit of letters, digits, `_` and `:`, found {}",
                            show(unit)
                        ),
                    ));
                };
                // As Prometheus checks: the unit is the last `_`-separated part of the name.
                let suffixed = name
                    .strip_suffix(unit)
                    .is_some_and(|base| base.ends_with('_'));
                if !unit.is_empty() && !suffixed {
                    return Err(syntax(
                        no,
                        format!("the unit `{unit}` is not a suffix of the metric name `{name}`"),
                    ));
                }
                let unit = unit.to_owned();
                if let Some(entry) = self.declare(name, Descriptor::Unit) {
                    entry.family.unit = Some(unit);
                }
            }
            Descriptor::Eof => {}
        }
        Ok(false)
    }

    /// The family a descriptor of `name` fills: the last family if it is this name's and has no
    /// such descriptor yet (`# HELP` and `# TYPE` of one family), else a new one.
    fn declare(&mut self, name: &'a str, what: Descriptor) -> Option<&mut Entry> {
        let reuse = self.entries.last().is_some_and(|e| {
            let free = match what {
                Descriptor::Help => e.family.help.is_none(),
                Descriptor::Type => !e.typed,
                Descriptor::Unit => e.family.unit.is_none(),
                Descriptor::Eof => false,
            };
            e.declared && free && e.family.name == name
        });
        if !reuse {
            self.declared.insert(name.as_bytes(), self.entries.len());
            self.entries.push(Entry {
                family: new_family(name),
                declared: true,
                typed: false,
            });
        }
        self.current = self.entries.len().checked_sub(1);
        self.entries.last_mut()
    }

    /// A sample line, the cursor at its first byte.
    fn sample(&mut self, mut c: Cursor<'a>, no: usize) -> Result<(), ParseError> {
        let Some(name) = c.metric_name() else {
            return Err(syntax(
                no,
                format!("expected a metric name, found {}", found(c.peek())),
            ));
        };
        let spaced = c.skip_ws();
        self.scratch.clear();
        let mut has_le = false;
        let after = if c.eat(b'{') {
            has_le = label_set(&mut c, no, &mut self.scratch, &self.limits)?;
            c.skip_ws();
            "the labels"
        } else if spaced || c.at_end() {
            "the metric name"
        } else {
            return Err(syntax(
                no,
                format!(
                    "expected `{{` or a space after the metric name, found {}",
                    found(c.peek())
                ),
            ));
        };
        let value = number(&mut c, no, after)?;
        c.skip_ws();
        let mut timestamp_ms = None;
        let mut exemplar = None;
        if self.om {
            if !c.at_end() && c.peek() != Some(b'#') {
                timestamp_ms = Some(om_timestamp(&mut c, no, "after the value")?);
                c.skip_ws();
            }
            if c.eat(b'#') {
                exemplar = Some(parse_exemplar(&mut c, no)?);
            }
        } else if !c.at_end() {
            if c.peek() == Some(b'#') {
                return Err(syntax(
                    no,
                    "expected a timestamp or end of line after the value, found `#` (exemplars are OpenMetrics only)",
                ));
            }
            let token = c.token();
            let Some(ts) = std::str::from_utf8(token)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            else {
                return Err(syntax(
                    no,
                    format!(
                        "expected a timestamp in integer milliseconds after the value, found {}",
                        show(token)
                    ),
                ));
            };
            timestamp_ms = Some(ts);
            c.skip_ws();
        }
        if !c.at_end() {
            return Err(syntax(
                no,
                format!(
                    "expected end of line after the sample, found {}",
                    found(c.peek())
                ),
            ));
        }

        let index = self.route(name, has_le);
        let Some(entry) = self.entries.get_mut(index.0) else {
            return Err(syntax(no, "internal error: the sample has no family"));
        };
        if exemplar.is_some() {
            let allowed = match entry.family.kind {
                MetricType::Counter => name.ends_with("_total"),
                MetricType::Histogram | MetricType::GaugeHistogram => index.1 == Part::Bucket,
                _ => false,
            };
            if !allowed {
                return Err(syntax(
                    no,
                    format!(
                        "an exemplar on `{name}`: exemplars go only on a counter's `_total` or a histogram's `_bucket` samples"
                    ),
                ));
            }
        }
        self.samples += 1;
        if self.limits.max_samples != 0 && self.samples > self.limits.max_samples {
            return Err(ParseError::SampleLimit {
                limit: self.limits.max_samples,
            });
        }
        entry.family.samples.push(Sample {
            name: name.to_owned(),
            labels: self.scratch.drain(..).collect(),
            value,
            timestamp_ms,
            exemplar,
        });
        Ok(())
    }

    /// The family a sample goes to (its index) and the part of it the sample is: the current
    /// family if the sample fits it, else the latest declared family it fits, else the run of
    /// undeclared samples of its name, else a new `Unknown` family.
    fn route(&mut self, name: &'a str, has_le: bool) -> (usize, Part) {
        let current = self.current.and_then(|i| Some((i, self.entries.get(i)?)));
        if let Some((i, entry)) = current
            && entry.declared
            && let Some(part) =
                part_of(&entry.family.name, entry.family.kind, self.om, name, has_le)
        {
            return (i, part);
        }
        if !self.declared.is_empty() {
            let bytes = name.as_bytes();
            let candidates = [
                self.declared.get(bytes).copied(),
                split_suffix(bytes).and_then(|(base, _)| self.declared.get(base).copied()),
            ];
            for i in candidates.into_iter().flatten() {
                if let Some(entry) = self.entries.get(i) {
                    let family = &entry.family;
                    if let Some(part) = part_of(&family.name, family.kind, self.om, name, has_le) {
                        self.current = Some(i);
                        return (i, part);
                    }
                }
            }
        }
        if let Some((i, entry)) = current
            && !entry.declared
            && entry.family.name == name
        {
            return (i, Part::Bare);
        }
        let i = self.entries.len();
        self.entries.push(Entry {
            family: new_family(name),
            declared: false,
            typed: false,
        });
        self.current = Some(i);
        (i, Part::Bare)
    }
}

fn new_family(name: &str) -> Family {
    Family {
        name: name.to_owned(),
        kind: MetricType::Unknown,
        help: None,
        unit: None,
        samples: Vec::new(),
    }
}

fn metric_type(word: &[u8], om: bool) -> Option<MetricType> {
    Some(match (word, om) {
        (b"counter", _) => MetricType::Counter,
        (b"gauge", _) => MetricType::Gauge,
        (b"histogram", _) => MetricType::Histogram,
        (b"summary", _) => MetricType::Summary,
        (b"untyped", false) => MetricType::Unknown,
        (b"gaugehistogram", true) => MetricType::GaugeHistogram,
        (b"info", true) => MetricType::Info,
        (b"stateset", true) => MetricType::StateSet,
        (b"unknown", true) => MetricType::Unknown,
        _ => return None,
    })
}

/// Reads a label set, the cursor after its `{`, through its `}`, into `out`; returns whether it
/// has an `le` label. The limits are checked as each label is read, so an oversized set stops
/// at its first label past them.
fn label_set(
    c: &mut Cursor<'_>,
    no: usize,
    out: &mut Vec<(String, String)>,
    limits: &Limits,
) -> Result<bool, ParseError> {
    let mut has_le = false;
    loop {
        c.skip_ws();
        if c.eat(b'}') {
            break;
        }
        let Some(name) = c.label_name() else {
            return Err(syntax(
                no,
                format!("expected a label name or `}}`, found {}", found(c.peek())),
            ));
        };
        if name == "__name__" {
            return Err(syntax(
                no,
                "the label `__name__` is not allowed in a label set",
            ));
        }
        if limits.max_labels != 0 && out.len() >= limits.max_labels {
            return Err(ParseError::LabelLimit {
                line: no,
                limit: limits.max_labels,
            });
        }
        if limits.max_label_name_len != 0 && name.len() > limits.max_label_name_len {
            return Err(ParseError::LabelLength {
                line: no,
                limit: limits.max_label_name_len,
            });
        }
        c.skip_ws();
        if !c.eat(b'=') {
            return Err(syntax(
                no,
                format!(
                    "expected `=` after the label name {}, found {}",
                    show(name.as_bytes()),
                    found(c.peek())
                ),
            ));
        }
        c.skip_ws();
        if !c.eat(b'"') {
            return Err(syntax(
                no,
                format!(
                    "expected a quoted label value after `=`, found {}",
                    found(c.peek())
                ),
            ));
        }
        let Some(quoted) = c.quoted() else {
            return Err(syntax(
                no,
                format!(
                    "the value of the label {} has no closing `\"` on its line",
                    show(name.as_bytes())
                ),
            ));
        };
        // The limit is on the value as stored, after its escapes.
        let len = quoted.raw.len().saturating_sub(quoted.escapes);
        if limits.max_label_value_len != 0 && len > limits.max_label_value_len {
            return Err(ParseError::LabelLength {
                line: no,
                limit: limits.max_label_value_len,
            });
        }
        let Ok(raw) = std::str::from_utf8(quoted.raw) else {
            return Err(syntax(
                no,
                format!(
                    "the value of the label {} is not valid UTF-8",
                    show(name.as_bytes())
                ),
            ));
        };
        let value = if quoted.escapes == 0 {
            raw.to_owned()
        } else {
            unescape(raw, true)
        };
        has_le |= name == "le";
        out.push((name.to_owned(), value));
        c.skip_ws();
        // A comma may also close the set (`{a="1",}`), as Prometheus accepts.
        if c.eat(b',') {
            continue;
        }
        if c.eat(b'}') {
            break;
        }
        return Err(syntax(
            no,
            format!(
                "expected `,` or `}}` after a label, found {}",
                found(c.peek())
            ),
        ));
    }
    if let Some(name) = duplicate(out) {
        return Err(syntax(
            no,
            format!("the label {} is given twice", show(name.as_bytes())),
        ));
    }
    Ok(has_le)
}

/// A label name that appears twice. Pairwise for the usual few labels; sorted for many, so that
/// a line of a million labels costs n log n, not n².
fn duplicate(labels: &[(String, String)]) -> Option<&str> {
    if labels.len() <= 16 {
        for (i, (name, _)) in labels.iter().enumerate() {
            if labels.iter().skip(i + 1).any(|(other, _)| other == name) {
                return Some(name);
            }
        }
        return None;
    }
    let mut names: Vec<&str> = labels.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    names.windows(2).find_map(|pair| match pair {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

/// OpenMetrics' exemplar, the cursor after its `#`: `{labels} value [timestamp]` to the end of
/// the line.
fn parse_exemplar(c: &mut Cursor<'_>, no: usize) -> Result<Exemplar, ParseError> {
    c.skip_ws();
    if !c.eat(b'{') {
        return Err(syntax(
            no,
            format!(
                "expected `{{` to open the exemplar's labels after `#`, found {}",
                found(c.peek())
            ),
        ));
    }
    let mut labels = Vec::new();
    label_set(c, no, &mut labels, &Limits::default())?;
    let chars: usize = labels
        .iter()
        .map(|(name, value)| name.len() + value.chars().count())
        .sum();
    if chars > EXEMPLAR_MAX_CHARS {
        return Err(syntax(
            no,
            format!(
                "the exemplar's labels have {chars} characters, more than the {EXEMPLAR_MAX_CHARS} OpenMetrics allows"
            ),
        ));
    }
    c.skip_ws();
    let value = number(c, no, "the exemplar's labels")?;
    c.skip_ws();
    let timestamp_ms = if c.at_end() {
        None
    } else {
        let ts = om_timestamp(c, no, "after the exemplar's value")?;
        c.skip_ws();
        Some(ts)
    };
    if !c.at_end() {
        return Err(syntax(
            no,
            format!(
                "expected end of line after the exemplar, found {}",
                found(c.peek())
            ),
        ));
    }
    Ok(Exemplar {
        labels,
        value,
        timestamp_ms,
    })
}

/// A value token: any float Rust and Go both read, `+Inf`, `-Inf` and `NaN` included.
fn number(c: &mut Cursor<'_>, no: usize, after: &str) -> Result<f64, ParseError> {
    let token = c.token();
    if token.is_empty() {
        return Err(syntax(
            no,
            format!("expected a value after {after}, found {}", found(c.peek())),
        ));
    }
    parse_float(token).ok_or_else(|| {
        syntax(
            no,
            format!("expected a value after {after}, found {}", show(token)),
        )
    })
}

/// OpenMetrics writes timestamps in float seconds; we keep milliseconds, rounded to the nearest
/// (`1.005` seconds is 1005 ms, not the 1004 a truncation of `1004.999...` gives).
fn om_timestamp(c: &mut Cursor<'_>, no: usize, where_: &str) -> Result<i64, ParseError> {
    let token = c.token();
    let ms = parse_float(token).map(|seconds| (seconds * 1000.0).round());
    match ms {
        // Inside i64 with room; NaN and the infinities are outside.
        Some(ms) if (-9.0e18..=9.0e18).contains(&ms) => Ok(ms as i64),
        _ => Err(syntax(
            no,
            format!(
                "expected a timestamp in seconds {where_}, found {}",
                if token.is_empty() {
                    found(c.peek())
                } else {
                    show(token)
                }
            ),
        )),
    }
}

fn parse_float(token: &[u8]) -> Option<f64> {
    std::str::from_utf8(token).ok()?.parse::<f64>().ok()
}

/// Replaces the escapes `\\`, `\n` and (with `quote`) `\"`; any other backslash stays as written,
/// as Prometheus keeps it.
fn unescape(s: &str, quote: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(at) = bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
        .map(|n| from + n)
    {
        let replacement = match bytes.get(at + 1) {
            Some(b'\\') => Some('\\'),
            Some(b'n') => Some('\n'),
            Some(b'"') if quote => Some('"'),
            _ => None,
        };
        match replacement {
            Some(ch) => {
                // `at` is a backslash and `copied` follows an ASCII byte: both char boundaries.
                out.push_str(s.get(copied..at).unwrap_or_default());
                out.push(ch);
                copied = at + 2;
                from = at + 2;
            }
            None => from = at + 1,
        }
    }
    out.push_str(s.get(copied..).unwrap_or_default());
    out
}

fn syntax(line: usize, message: impl Into<String>) -> ParseError {
    ParseError::Syntax {
        line,
        message: message.into(),
    }
}

/// The byte a message says was found instead.
fn found(byte: Option<u8>) -> String {
    match byte {
        None => "end of line".to_owned(),
        Some(b' ') => "a space".to_owned(),
        Some(b'\t') => "a tab".to_owned(),
        Some(b) if b.is_ascii_graphic() => format!("`{}`", char::from(b)),
        Some(b) => format!("byte 0x{b:02x}"),
    }
}

/// A token for a message, cut short: the input is a stranger's and may be a megabyte.
fn show(token: &[u8]) -> String {
    const MAX: usize = 40;
    let cut = token.get(..MAX).unwrap_or(token);
    let text = String::from_utf8_lossy(cut);
    if cut.len() < token.len() {
        format!("`{text}...`")
    } else {
        format!("`{text}`")
    }
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A label value's bytes between its quotes, escapes as written.
struct Quoted<'a> {
    raw: &'a [u8],
    /// How many escapes shorten it by one byte each (`\\`, `\"`, `\n`).
    escapes: usize,
}

/// A position in one line.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn bump(&mut self) {
        self.pos += 1;
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// Skips spaces and tabs; returns whether there were any.
    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        self.bytes.get(start..self.pos).unwrap_or_default()
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// A value or timestamp: everything up to the next space or tab.
    fn token(&mut self) -> &'a [u8] {
        self.take_while(|b| b != b' ' && b != b'\t')
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    fn metric_name(&mut self) -> Option<&'a str> {
        let first = self.peek()?;
        if !(first.is_ascii_alphabetic() || first == b'_' || first == b':') {
            return None;
        }
        std::str::from_utf8(self.take_while(is_name_char)).ok()
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`
    fn label_name(&mut self) -> Option<&'a str> {
        let first = self.peek()?;
        if !(first.is_ascii_alphabetic() || first == b'_') {
            return None;
        }
        std::str::from_utf8(self.take_while(is_label_char)).ok()
    }

    /// A quoted string, the cursor after its opening quote, through its closing quote; `None`
    /// if the line ends first. A backslash and the byte after it are one unit, so `\"` does not
    /// close the string.
    fn quoted(&mut self) -> Option<Quoted<'a>> {
        let start = self.pos;
        let mut escapes = 0;
        loop {
            let rest = self.bytes.get(self.pos..)?;
            self.pos += rest.iter().position(|&b| b == b'"' || b == b'\\')?;
            if self.peek()? == b'"' {
                let raw = self.bytes.get(start..self.pos)?;
                self.pos += 1;
                return Some(Quoted { raw, escapes });
            }
            if matches!(self.bytes.get(self.pos + 1)?, b'\\' | b'"' | b'n') {
                escapes += 1;
            }
            self.pos += 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Limits = Limits {
        max_samples: 0,
        max_labels: 0,
        max_label_name_len: 0,
        max_label_value_len: 0,
    };

    fn ok(body: &str, format: Format) -> Vec<Family> {
        ok_bytes(body.as_bytes(), format)
    }

    fn ok_bytes(body: &[u8], format: Format) -> Vec<Family> {
        match parse(body, format, &NONE) {
            Ok(families) => families,
            Err(e) => panic!("expected {format:?} body to parse, got: {e}"),
        }
    }

    fn err(body: &[u8], format: Format, limits: &Limits) -> ParseError {
        match parse(body, format, limits) {
            Ok(families) => panic!("expected an error, parsed {families:#?}"),
            Err(e) => e,
        }
    }

    fn syntax_at(body: &[u8], format: Format) -> (usize, String) {
        match err(body, format, &NONE) {
            ParseError::Syntax { line, message } => (line, message),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn shape(families: &[Family]) -> Vec<(&str, MetricType, usize)> {
        families
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.samples.len()))
            .collect()
    }

    #[test]
    fn python_client_text_output() {
        let body = "\
# HELP requests_total Total requests.
# TYPE requests_total counter
requests_total{method=\"get\",code=\"200\"} 3.0
requests_total{method=\"post\",code=\"500\"} 1.0
# HELP requests_created Total requests.
# TYPE requests_created gauge
requests_created{method=\"get\",code=\"200\"} 1.7000000012345e+09
requests_created{method=\"post\",code=\"500\"} 1.7000000023456e+09
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 12.0
";
        let families = ok(body, Format::Text);
        assert_eq!(
            shape(&families),
            vec![
                ("requests_total", MetricType::Counter, 2),
                ("requests_created", MetricType::Gauge, 2),
                ("process_open_fds", MetricType::Gauge, 1),
            ]
        );
        assert_eq!(families[0].help.as_deref(), Some("Total requests."));
        let first = &families[0].samples[0];
        assert_eq!(first.name, "requests_total");
        assert_eq!(first.labels, labels(&[("method", "get"), ("code", "200")]));
        assert_eq!(first.value, 3.0);
        assert_eq!(first.timestamp_ms, None);
        assert_eq!(families[1].samples[1].value, 1.7000000023456e9);
    }

    #[test]
    fn text_histogram_groups_buckets_sum_and_count() {
        let body = "\
# HELP rpc_seconds RPC latency.
# TYPE rpc_seconds histogram
rpc_seconds_bucket{le=\"0.1\"} 3
rpc_seconds_bucket{le=\"1\"} 5
rpc_seconds_bucket{le=\"+Inf\"} 6
rpc_seconds_sum 2.5
rpc_seconds_count 6
rpc_seconds_created 1.7e9
";
        let families = ok(body, Format::Text);
        // `_created` is no histogram part in the text format: a family of its own.
        assert_eq!(
            shape(&families),
            vec![
                ("rpc_seconds", MetricType::Histogram, 5),
                ("rpc_seconds_created", MetricType::Unknown, 1),
            ]
        );
        let names: Vec<&str> = families[0]
            .samples
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "rpc_seconds_bucket",
                "rpc_seconds_bucket",
                "rpc_seconds_bucket",
                "rpc_seconds_sum",
                "rpc_seconds_count"
            ]
        );
        assert_eq!(families[0].samples[2].labels, labels(&[("le", "+Inf")]));
    }

    #[test]
    fn a_bucket_without_le_is_not_part_of_the_histogram() {
        let body = "# TYPE h histogram\nh_bucket{x=\"1\"} 1\nh_bucket{le=\"1\"} 1\n";
        let families = ok(body, Format::Text);
        assert_eq!(
            shape(&families),
            vec![
                ("h", MetricType::Histogram, 1),
                ("h_bucket", MetricType::Unknown, 1),
            ]
        );
        assert_eq!(families[0].samples[0].labels, labels(&[("le", "1")]));
    }

    #[test]
    fn text_summary_with_quantiles() {
        let body = "\
# TYPE gc_seconds summary
gc_seconds{quantile=\"0\"} 0.0001
gc_seconds{quantile=\"0.5\"} 0.002
gc_seconds{quantile=\"1\"} NaN
gc_seconds_sum 1.5e-2
gc_seconds_count 7
";
        let families = ok(body, Format::Text);
        assert_eq!(
            shape(&families),
            vec![("gc_seconds", MetricType::Summary, 5)]
        );
        assert!(families[0].samples[2].value.is_nan());
        assert_eq!(families[0].samples[3].value, 0.015);
    }

    #[test]
    fn untyped_and_undeclared_samples() {
        let body = "\
# TYPE legacy untyped
legacy 1
loose{a=\"1\"} 1
loose{a=\"2\"} 2
other 3
loose 4
";
        let families = ok(body, Format::Text);
        // Consecutive samples of a name share a family; a name that comes back opens another.
        assert_eq!(
            shape(&families),
            vec![
                ("legacy", MetricType::Unknown, 1),
                ("loose", MetricType::Unknown, 2),
                ("other", MetricType::Unknown, 1),
                ("loose", MetricType::Unknown, 1),
            ]
        );
    }

    #[test]
    fn a_declared_family_gets_its_samples_back_after_another() {
        let body = "# TYPE a counter\na 1\n# TYPE b gauge\nb 2\na 3\n";
        let families = ok(body, Format::Text);
        assert_eq!(
            shape(&families),
            vec![("a", MetricType::Counter, 2), ("b", MetricType::Gauge, 1)]
        );
    }

    #[test]
    fn escapes_in_label_values_and_help() {
        let body = concat!(
            "# HELP msg A \\\\ backslash,\\na newline and a \\\"kept\\\" quote.\n",
            "# TYPE msg gauge\n",
            "msg{path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\",nl=\"a\\nb\",odd=\"\\t\"} 1\n",
        );
        let families = ok(body, Format::Text);
        assert_eq!(
            families[0].help.as_deref(),
            Some("A \\ backslash,\na newline and a \\\"kept\\\" quote.")
        );
        assert_eq!(
            families[0].samples[0].labels,
            labels(&[
                ("path", "C:\\dir"),
                ("quote", "say \"hi\""),
                ("nl", "a\nb"),
                ("odd", "\\t"),
            ])
        );
    }

    #[test]
    fn text_timestamps_whitespace_comments_and_trailing_commas() {
        let body = "\
# A comment line.
#no space: a comment too
# HELP
  
\tup{job=\"a\",} 1 1700000000123
up {job = \"b\" , instance=\"x\",}\t0\t-5  
up{} +Inf
up -Inf 42";
        let families = ok(body, Format::Text);
        assert_eq!(shape(&families), vec![("up", MetricType::Unknown, 4)]);
        let s = &families[0].samples;
        assert_eq!(s[0].labels, labels(&[("job", "a")]));
        assert_eq!(s[0].timestamp_ms, Some(1_700_000_000_123));
        assert_eq!(s[1].labels, labels(&[("job", "b"), ("instance", "x")]));
        assert_eq!(s[1].value, 0.0);
        assert_eq!(s[1].timestamp_ms, Some(-5));
        assert_eq!(s[2].value, f64::INFINITY);
        assert!(s[2].labels.is_empty());
        assert_eq!(s[3].value, f64::NEG_INFINITY);
        assert_eq!(s[3].timestamp_ms, Some(42));
    }

    #[test]
    fn value_forms() {
        let body = "a 1e3\na 1.5E-3\na -0.5\na .5\na +7\na nan\na Inf\n";
        let values: Vec<f64> = ok(body, Format::Text)[0]
            .samples
            .iter()
            .map(|s| s.value)
            .collect();
        assert_eq!(values[..5], [1000.0, 0.0015, -0.5, 0.5, 7.0]);
        assert!(values[5].is_nan());
        assert_eq!(values[6], f64::INFINITY);
    }

    const OPENMETRICS: &str = "\
# TYPE build info
# HELP build Build information.
build_info{version=\"1.2.3\",revision=\"abc\"} 1
# TYPE http_requests counter
# UNIT http_requests requests
# HELP http_requests Requests \\\"served\\\".
http_requests_total{code=\"200\"} 1027 1700000000.5 # {trace_id=\"4bf92f\"} 1 1700000000.123
http_requests_created{code=\"200\"} 1699990000.0
# TYPE rpc_seconds histogram
# UNIT rpc_seconds seconds
rpc_seconds_bucket{le=\"0.5\"} 3 # {trace_id=\"abc\",span_id=\"def\"} 0.67
rpc_seconds_bucket{le=\"+Inf\"} 4
rpc_seconds_sum 2.1
rpc_seconds_count 4
rpc_seconds_created 1699990000
# TYPE queue gaugehistogram
queue_bucket{le=\"10\"} 2
queue_bucket{le=\"+Inf\"} 3
queue_gsum 12
queue_gcount 3
# TYPE feature stateset
feature{feature=\"a\"} 1
feature{feature=\"b\"} 0
# TYPE temperature gauge
temperature 21.5
# TYPE mystery unknown
mystery 7
# EOF
";

    #[test]
    fn openmetrics_body() {
        let families = ok(OPENMETRICS, Format::OpenMetrics);
        assert_eq!(
            shape(&families),
            vec![
                ("build", MetricType::Info, 1),
                ("http_requests", MetricType::Counter, 2),
                ("rpc_seconds", MetricType::Histogram, 5),
                ("queue", MetricType::GaugeHistogram, 4),
                ("feature", MetricType::StateSet, 2),
                ("temperature", MetricType::Gauge, 1),
                ("mystery", MetricType::Unknown, 1),
            ]
        );
        let requests = &families[1];
        assert_eq!(requests.unit.as_deref(), Some("requests"));
        assert_eq!(requests.help.as_deref(), Some("Requests \"served\"."));
        let total = &requests.samples[0];
        assert_eq!(total.name, "http_requests_total");
        assert_eq!(total.value, 1027.0);
        assert_eq!(total.timestamp_ms, Some(1_700_000_000_500));
        assert_eq!(
            total.exemplar,
            Some(Exemplar {
                labels: labels(&[("trace_id", "4bf92f")]),
                value: 1.0,
                timestamp_ms: Some(1_700_000_000_123),
            })
        );
        assert_eq!(requests.samples[1].name, "http_requests_created");
        let bucket = &families[2].samples[0];
        assert_eq!(families[2].unit.as_deref(), Some("seconds"));
        assert_eq!(
            bucket.exemplar,
            Some(Exemplar {
                labels: labels(&[("trace_id", "abc"), ("span_id", "def")]),
                value: 0.67,
                timestamp_ms: None,
            })
        );
        assert_eq!(families[0].samples[0].name, "build_info");
        assert_eq!(families[0].help.as_deref(), Some("Build information."));
    }

    #[test]
    fn openmetrics_eof_handling() {
        assert_eq!(ok("# EOF", Format::OpenMetrics), vec![]);
        assert_eq!(ok("# EOF\n", Format::OpenMetrics), vec![]);
        assert_eq!(ok("a 1\n# EOF", Format::OpenMetrics).len(), 1);

        let (line, message) = syntax_at(b"a 1\n", Format::OpenMetrics);
        assert_eq!(
            (line, message.as_str()),
            (2, "expected `# EOF` at the end of an OpenMetrics body")
        );
        assert_eq!(syntax_at(b"", Format::OpenMetrics).0, 1);
        assert_eq!(syntax_at(b"# EOF\na 1\n", Format::OpenMetrics).0, 2);
        assert_eq!(syntax_at(b"# EOF\n\n", Format::OpenMetrics).0, 2);
        assert_eq!(syntax_at(b"# EOF trailing\n", Format::OpenMetrics).0, 1);
        // The text format has no EOF: it is a comment there.
        assert_eq!(ok("a 1\n# EOF\nb 2\n", Format::Text).len(), 2);
    }

    #[test]
    fn openmetrics_refuses_what_text_allows() {
        // Comments, blank lines, `untyped`.
        assert_eq!(syntax_at(b"# hello\n# EOF\n", Format::OpenMetrics).0, 1);
        assert_eq!(syntax_at(b"a 1\n\n# EOF\n", Format::OpenMetrics).0, 2);
        assert_eq!(
            syntax_at(b"# TYPE a untyped\n# EOF\n", Format::OpenMetrics).0,
            1
        );
        // And the text format does not know the OpenMetrics types.
        assert_eq!(syntax_at(b"# TYPE a stateset\n", Format::Text).0, 1);
        // A text-format timestamp is integer milliseconds.
        assert_eq!(syntax_at(b"a 1 1.5\n", Format::Text).0, 1);
    }

    #[test]
    fn openmetrics_counter_suffixes_only_in_openmetrics() {
        let body = "# TYPE c counter\nc_total 1\nc_created 2\n";
        assert_eq!(
            shape(&ok(body, Format::Text)),
            vec![
                ("c", MetricType::Counter, 0),
                ("c_total", MetricType::Unknown, 1),
                ("c_created", MetricType::Unknown, 1),
            ]
        );
        let om = format!("{body}# EOF\n");
        assert_eq!(
            shape(&ok(&om, Format::OpenMetrics)),
            vec![("c", MetricType::Counter, 2)]
        );
    }

    #[test]
    fn exemplars_only_where_allowed() {
        let (line, message) = syntax_at(
            b"# TYPE g gauge\ng 1 # {a=\"b\"} 1\n# EOF\n",
            Format::OpenMetrics,
        );
        assert_eq!(line, 2);
        assert!(message.contains("exemplar"), "{message}");
        // Text format: a `#` after the value is an error, not an exemplar.
        let (line, message) = syntax_at(
            b"# TYPE c_total counter\nc_total 1 # {a=\"b\"} 1\n",
            Format::Text,
        );
        assert_eq!(line, 2);
        assert!(message.contains("OpenMetrics"), "{message}");
        // Longer than 128 characters in all.
        let long = format!(
            "# TYPE c counter\nc_total 1 # {{trace_id=\"{}\"}} 1\n# EOF\n",
            "é".repeat(121)
        );
        assert_eq!(syntax_at(long.as_bytes(), Format::OpenMetrics).0, 2);
        let fits = format!(
            "# TYPE c counter\nc_total 1 # {{trace_id=\"{}\"}} 1\n# EOF\n",
            "é".repeat(120)
        );
        assert!(
            ok(&fits, Format::OpenMetrics)[0].samples[0]
                .exemplar
                .is_some()
        );
        // An exemplar needs its value.
        assert_eq!(
            syntax_at(
                b"# TYPE c counter\nc_total 1 # {a=\"b\"}\n# EOF\n",
                Format::OpenMetrics
            )
            .0,
            2
        );
    }

    #[test]
    fn unit_must_be_the_name_suffix() {
        assert_eq!(
            syntax_at(
                b"# TYPE a_bytes gauge\n# UNIT a_bytes seconds\n# EOF\n",
                Format::OpenMetrics
            )
            .0,
            2
        );
        assert_eq!(
            syntax_at(b"# UNIT abytes bytes\n# EOF\n", Format::OpenMetrics).0,
            1
        );
        let families = ok(
            "# UNIT a_bytes bytes\n# TYPE a_bytes gauge\na_bytes 1\n# EOF\n",
            Format::OpenMetrics,
        );
        assert_eq!(shape(&families), vec![("a_bytes", MetricType::Gauge, 1)]);
    }

    #[test]
    fn syntax_errors_say_where_and_what() {
        let cases: [(&[u8], usize, &str); 12] = [
            (
                b"a 1\nb{x=\"1\"} }\n",
                2,
                "line 2: expected a value after the labels, found `}`",
            ),
            (
                b"a abc\n",
                1,
                "line 1: expected a value after the metric name, found `abc`",
            ),
            (
                b"a\n",
                1,
                "line 1: expected a value after the metric name, found end of line",
            ),
            (
                b"a{x=\"1} 1\n",
                1,
                "line 1: the value of the label `x` has no closing `\"` on its line",
            ),
            (
                b"a{x=\"1\",x=\"2\"} 1\n",
                1,
                "line 1: the label `x` is given twice",
            ),
            (b"1a 1\n", 1, "line 1: expected a metric name, found `1`"),
            (
                b"a-b 1\n",
                1,
                "line 1: expected `{` or a space after the metric name, found `-`",
            ),
            (
                b"a{1x=\"1\"} 1\n",
                1,
                "line 1: expected a label name or `}`, found `1`",
            ),
            (
                b"a{x:y=\"1\"} 1\n",
                1,
                "line 1: expected `=` after the label name `x`, found `:`",
            ),
            (
                b"a{__name__=\"b\"} 1\n",
                1,
                "line 1: the label `__name__` is not allowed in a label set",
            ),
            (
                b"a{x=1} 1\n",
                1,
                "line 1: expected a quoted label value after `=`, found `1`",
            ),
            (
                b"a 1 2 3\n",
                1,
                "line 1: expected end of line after the sample, found `3`",
            ),
        ];
        for (body, line, text) in cases {
            let e = err(body, Format::Text, &NONE);
            assert_eq!(e.line(), Some(line));
            assert_eq!(e.to_string(), text);
        }
        assert_eq!(syntax_at(b"# TYPE 9a gauge\n", Format::Text).0, 1);
        assert_eq!(syntax_at(b"# TYPE a gauge extra\n", Format::Text).0, 1);
        assert_eq!(syntax_at(b"a{x=\"1\"\n", Format::Text).0, 1);
        assert_eq!(syntax_at(b"a 1 99999999999999999999\n", Format::Text).0, 1);
        assert_eq!(syntax_at(b"a 1 1e300\n# EOF\n", Format::OpenMetrics).0, 1);
        assert_eq!(syntax_at(b"a 1\r\n", Format::Text).0, 1);
    }

    #[test]
    fn non_utf8_is_an_error_not_a_panic() {
        let value: &[u8] = b"a{x=\"\xff\xfe\"} 1\n";
        assert_eq!(syntax_at(value, Format::Text).0, 1);
        let help: &[u8] = b"# HELP a caf\xe9\n";
        assert_eq!(syntax_at(help, Format::Text).0, 1);
        let name: &[u8] = b"\xc3\xa9t\xc3\xa9 1\n";
        assert_eq!(syntax_at(name, Format::Text).0, 1);
        let exemplar: &[u8] = b"# TYPE c counter\nc_total 1 # {a=\"\xff\"} 1\n# EOF\n";
        assert_eq!(syntax_at(exemplar, Format::OpenMetrics).0, 2);
        // Valid UTF-8 is kept; a stray byte in a comment is nobody's business.
        let families = ok_bytes(
            "# caf\u{e9} \u{ff}\na{x=\"h\u{e9}h\"} 1\n".as_bytes(),
            Format::Text,
        );
        assert_eq!(families[0].samples[0].labels, labels(&[("x", "h\u{e9}h")]));
        assert_eq!(ok_bytes(b"# \xff\na 1\n", Format::Text).len(), 1);
    }

    #[test]
    fn sample_limit_exactly_and_one_more() {
        let limits = Limits {
            max_samples: 3,
            ..Limits::default()
        };
        let three = b"a 1\na 2\n# TYPE b gauge\nb 3\n";
        assert!(parse(three, Format::Text, &limits).is_ok());
        let four = b"a 1\na 2\n# TYPE b gauge\nb 3\nb 4\nthis line is never read\n";
        assert_eq!(
            err(four, Format::Text, &limits),
            ParseError::SampleLimit { limit: 3 }
        );
        assert_eq!(
            err(four, Format::Text, &limits).to_string(),
            "more than 3 samples (sample_limit)"
        );
    }

    #[test]
    fn label_limit() {
        let limits = Limits {
            max_labels: 2,
            ..Limits::default()
        };
        assert!(parse(b"a{x=\"1\",y=\"2\"} 1\n", Format::Text, &limits).is_ok());
        assert_eq!(
            err(
                b"a 1\na{x=\"1\",y=\"2\",z=\"3\"} 1\n",
                Format::Text,
                &limits
            ),
            ParseError::LabelLimit { line: 2, limit: 2 }
        );
    }

    #[test]
    fn label_length_limits() {
        let limits = Limits {
            max_label_name_len: 3,
            max_label_value_len: 4,
            ..Limits::default()
        };
        // The value's length is taken after its escapes: `a\"b\\` is 4 bytes.
        assert!(parse(b"a{abc=\"a\\\"b\\\\\"} 1\n", Format::Text, &limits).is_ok());
        assert_eq!(
            err(b"a{abcd=\"1\"} 1\n", Format::Text, &limits),
            ParseError::LabelLength { line: 1, limit: 3 }
        );
        assert_eq!(
            err(b"a 1\n\na{abc=\"12345\"} 1\n", Format::Text, &limits),
            ParseError::LabelLength { line: 3, limit: 4 }
        );
    }

    #[test]
    fn megabyte_label_value() {
        let value = "v".repeat(1 << 20);
        let body = format!("# TYPE big gauge\nbig{{huge=\"{value}\",small=\"s\"}} 1\n");
        let families = ok(&body, Format::Text);
        assert_eq!(families[0].samples[0].labels[0].1.len(), 1 << 20);
        // Unterminated, the error stays short.
        let open = format!("big{{huge=\"{value}\n");
        let (_, message) = syntax_at(open.as_bytes(), Format::Text);
        assert!(message.len() < 200, "{}", message.len());
        let garbage = format!("big {value}\n");
        let (_, message) = syntax_at(garbage.as_bytes(), Format::Text);
        assert!(message.len() < 200, "{}", message.len());
    }

    #[test]
    fn many_labels_on_one_line() {
        let set: Vec<String> = (0..50_000).map(|i| format!("l{i}=\"\"")).collect();
        let body = format!("a{{{}}} 1\n", set.join(","));
        assert_eq!(ok(&body, Format::Text)[0].samples[0].labels.len(), 50_000);
        let dup = format!("a{{{},l7=\"x\"}} 1\n", set.join(","));
        let (_, message) = syntax_at(dup.as_bytes(), Format::Text);
        assert_eq!(message, "the label `l7` is given twice");
    }

    #[test]
    fn help_and_type_in_either_order_make_one_family() {
        let body = "# TYPE a gauge\n# HELP a first\na 1\n# HELP a second\n";
        let families = ok(body, Format::Text);
        assert_eq!(families.len(), 2);
        assert_eq!(families[0].help.as_deref(), Some("first"));
        assert_eq!(families[0].kind, MetricType::Gauge);
        assert_eq!(families[1].help.as_deref(), Some("second"));
        assert_eq!(ok("# HELP a\n", Format::Text)[0].help.as_deref(), Some(""));
    }

    #[test]
    fn content_types() {
        let cases = [
            (
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                Format::OpenMetrics,
            ),
            ("application/openmetrics-text", Format::OpenMetrics),
            (
                "Application/OpenMetrics-Text ;version=0.0.1",
                Format::OpenMetrics,
            ),
            ("text/plain; version=0.0.4", Format::Text),
            ("text/plain", Format::Text),
            ("", Format::Text),
            ("application/json", Format::Text),
        ];
        for (content_type, format) in cases {
            assert_eq!(
                Format::from_content_type(content_type),
                format,
                "{content_type}"
            );
        }
    }

    #[test]
    fn output_is_bounded_by_the_input() {
        // Every string returned comes from bytes of its own in the body.
        let families = ok(OPENMETRICS, Format::OpenMetrics);
        let mut bytes = 0;
        for family in &families {
            bytes += family.help.as_ref().map_or(0, String::len);
            bytes += family.unit.as_ref().map_or(0, String::len);
            for sample in &family.samples {
                bytes += sample.name.len();
                bytes += sample
                    .labels
                    .iter()
                    .map(|(n, v)| n.len() + v.len())
                    .sum::<usize>();
                if let Some(exemplar) = &sample.exemplar {
                    bytes += exemplar
                        .labels
                        .iter()
                        .map(|(n, v)| n.len() + v.len())
                        .sum::<usize>();
                }
            }
        }
        assert!(bytes <= OPENMETRICS.len());
    }
}
