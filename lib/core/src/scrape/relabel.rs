//! Prometheus relabeling, as `relabel_configs` (targets) and `metric_relabel_configs` (samples)
//! define it: the YAML shape of a rule ([`RelabelConfig`]), its validation and compilation into a
//! [`Rule`], and applying rules to a label set ([`process`]). The behaviour is that of Prometheus
//! 2.x's `model/relabel`, so a configuration copied from a Prometheus server relabels the same way
//! here. That includes the parts Go supplies implicitly: the regular expressions are written in Go's
//! RE2 syntax, which is translated to the `regex` crate's where the two disagree (ASCII `\d`, `\w`,
//! `\s`, `\b`; literal `{`; `\Q...\E`), and templates expand as Go's `Regexp.Expand` does. No I/O.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::num::NonZeroU64;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use md5::{Digest, Md5};
use regex::{CaptureLocations, Regex, RegexBuilder};
use serde::{Deserialize, Deserializer};

/// Default `separator`.
pub const DEFAULT_SEPARATOR: &str = ";";
/// Default `regex`.
pub const DEFAULT_REGEX: &str = "(.*)";
/// Default `replacement`.
pub const DEFAULT_REPLACEMENT: &str = "$1";
/// The most memory one compiled `regex` may take. Go's engine has no such knob, but a config file is
/// not always written by the person running the gateway, and `(?:a{1000}){1000}` is a short line.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One entry of `relabel_configs` / `metric_relabel_configs`, as written in Prometheus's YAML.
///
/// Like Prometheus, a field written as `null` takes the Go zero value (empty string / no labels),
/// not the default, and `action` is case-insensitive.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values, joined with `separator`, are the source value (a missing label is
    /// the empty string).
    #[serde(default, deserialize_with = "null_as_default")]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator", deserialize_with = "null_as_default")]
    pub separator: String,
    /// The label written (`replace`, `hashmod`, `lowercase`, `uppercase`) or compared with
    /// (`keepequal`, `dropequal`). For `replace` it may reference groups (`$1`).
    #[serde(default)]
    pub target_label: Option<String>,
    /// Go (RE2) syntax, matched against the whole source value (or label name, for `labelmap`,
    /// `labeldrop`, `labelkeep`).
    #[serde(default = "default_regex", deserialize_with = "null_as_default")]
    pub regex: String,
    /// `hashmod`'s divisor.
    #[serde(default)]
    pub modulus: Option<u64>,
    /// The value written by `replace`, or the name written by `labelmap`, with `$1`-style
    /// references to the regex's groups.
    #[serde(default = "default_replacement", deserialize_with = "null_as_default")]
    pub replacement: String,
    #[serde(default, deserialize_with = "deserialize_action")]
    pub action: Action,
}

fn default_separator() -> String {
    DEFAULT_SEPARATOR.to_owned()
}

fn default_regex() -> String {
    DEFAULT_REGEX.to_owned()
}

fn default_replacement() -> String {
    DEFAULT_REPLACEMENT.to_owned()
}

// Go's YAML decoder stores the zero value for an explicit `null`; without this serde would refuse it.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

// Prometheus lowercases the action before matching it, so `action: Keep` is accepted there.
fn deserialize_action<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Action, D::Error> {
    let name = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    name.parse().map_err(serde::de::Error::custom)
}

impl Default for RelabelConfig {
    /// Prometheus's defaults: `replace` with `regex: (.*)`, `replacement: $1`, `separator: ;`.
    fn default() -> Self {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: default_separator(),
            target_label: None,
            regex: default_regex(),
            modulus: None,
            replacement: default_replacement(),
            action: Action::Replace,
        }
    }
}

/// What a rule does; see the module documentation of Prometheus's `relabel_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    /// Every action, in the order of the enum.
    pub const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];

    /// The name as written in the configuration (`keepequal`, `hashmod`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    /// Case-insensitive, as in Prometheus.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("relabel `action` cannot be empty".to_owned());
        }
        let lower = s.to_lowercase();
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == lower)
            .ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                format!(
                    "unknown relabel action {s:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    // Identifies the compiled regex, so that a [`Scratch`] can tell whether the capture slots it
    // holds for a position in a rule list were made by this rule's regex. Clones share it, and
    // their regex too.
    id: u64,
    action: Action,
    source_labels: Box<[String]>,
    separator: Box<str>,
    regex: Regex,
    target_label: Box<str>,
    // `replace` expands the target name; other actions use `target_label` as written.
    target: Template,
    // `replace` and `labelmap` only.
    replacement: Template,
    modulus: Option<NonZeroU64>,
    // Whether applying needs the capture groups' positions, not just whether the regex matches.
    needs_captures: bool,
}

static NEXT_RULE_ID: AtomicU64 = AtomicU64::new(0);

impl Rule {
    /// The action this rule performs.
    pub fn action(&self) -> Action {
        self.action
    }
}

impl RelabelConfig {
    /// Checks and compiles, as Prometheus validates on load. The error says what is wrong, for a
    /// person.
    pub fn compile(&self) -> Result<Rule, String> {
        // Prometheus checks these while decoding, before `Validate`; keep its order of complaints.
        if let Some(bad) = self
            .source_labels
            .iter()
            .find(|name| !is_valid_label_name(name))
        {
            return Err(format!(
                "`source_labels`: {bad:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        let regex = compile_regex(&self.regex)?;
        self.validate()?;

        let target_label = self.target_label.as_deref().unwrap_or("");
        let target = match self.action {
            Action::Replace => Template::parse(target_label, &regex),
            _ => Template::Literal(Box::from("")),
        };
        let replacement = match self.action {
            Action::Replace | Action::LabelMap => Template::parse(&self.replacement, &regex),
            _ => Template::Literal(Box::from("")),
        };
        let needs_captures = target.has_groups() || replacement.has_groups();
        Ok(Rule {
            id: NEXT_RULE_ID.fetch_add(1, Ordering::Relaxed),
            action: self.action,
            source_labels: self.source_labels.clone().into_boxed_slice(),
            separator: Box::from(self.separator.as_str()),
            regex,
            target_label: Box::from(target_label),
            target,
            replacement,
            modulus: self.modulus.and_then(NonZeroU64::new),
            needs_captures,
        })
    }

    /// Prometheus's `Config.Validate`, in its order, so the first complaint is the same one.
    fn validate(&self) -> Result<(), String> {
        use Action::*;
        let action = self.action;
        let target = self.target_label.as_deref().unwrap_or("");
        let modulus = self.modulus.unwrap_or(0);

        if action == HashMod {
            match self.modulus {
                None => return Err("`modulus` is required for action `hashmod`".to_owned()),
                Some(0) => {
                    return Err("`modulus` must be greater than 0 for action `hashmod`".to_owned());
                }
                Some(_) => {}
            }
        }
        let needs_target = matches!(
            action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if needs_target && target.is_empty() {
            return Err(format!("`target_label` is required for action `{action}`"));
        }
        if action == Replace {
            // A `$` makes the name a template, checked for shape now and as a name once expanded.
            if !target.contains('$') && !is_valid_label_name(target) {
                return Err(format!(
                    "`target_label` {target:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                ));
            }
            if target.contains('$') && !is_valid_name_template(target) {
                return Err(format!(
                    "`target_label` {target:?} is not a valid label name template (name \
                     characters and `$1`, `${{1}}`, `$name` references)"
                ));
            }
        }
        if matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual)
            && !is_valid_label_name(target)
        {
            return Err(format!(
                "`target_label` {target:?} is not a valid label name for action `{action}` \
                 ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        if matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual)
            && self.replacement != DEFAULT_REPLACEMENT
        {
            return Err(format!("`replacement` cannot be set for action `{action}`"));
        }
        if action == LabelMap && !is_valid_name_template(&self.replacement) {
            return Err(format!(
                "`replacement` {:?} is not a valid label name template for action `labelmap` \
                 (name characters and `$1`, `${{1}}`, `$name` references)",
                self.replacement
            ));
        }
        if action == HashMod && !is_valid_label_name(target) {
            return Err(format!(
                "`target_label` {target:?} is not a valid label name for action `hashmod` \
                 ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        if matches!(action, KeepEqual | DropEqual) {
            let mut extra = Vec::new();
            // Prometheus rejects any written `regex` here (it compares the compiled pointer); the
            // default's text is the closest this struct can tell.
            if self.regex != DEFAULT_REGEX {
                extra.push("`regex`");
            }
            if modulus != 0 {
                extra.push("`modulus`");
            }
            if self.separator != DEFAULT_SEPARATOR {
                extra.push("`separator`");
            }
            if !extra.is_empty() {
                return Err(format!(
                    "`{action}` takes only `source_labels` and `target_label`, not {}",
                    extra.join("/")
                ));
            }
        }
        if matches!(action, LabelDrop | LabelKeep) {
            let mut extra = Vec::new();
            if !self.source_labels.is_empty() {
                extra.push("`source_labels`");
            }
            if !target.is_empty() {
                extra.push("`target_label`");
            }
            if modulus != 0 {
                extra.push("`modulus`");
            }
            if self.separator != DEFAULT_SEPARATOR {
                extra.push("`separator`");
            }
            if self.replacement != DEFAULT_REPLACEMENT {
                extra.push("`replacement`");
            }
            if !extra.is_empty() {
                return Err(format!(
                    "`{action}` takes no {}; it uses only `regex`",
                    extra.join("/")
                ));
            }
        }
        Ok(())
    }
}

/// Compiles a list, collecting errors as (index, message).
pub fn compile_all(configs: &[RelabelConfig]) -> Result<Vec<Rule>, Vec<(usize, String)>> {
    let mut rules = Vec::with_capacity(configs.len());
    let mut errors = Vec::new();
    for (index, config) in configs.iter().enumerate() {
        match config.compile() {
            Ok(rule) => rules.push(rule),
            Err(message) => errors.push((index, message)),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// A label set: (name, value) pairs sorted by name, names unique. Includes `__name__` for metric
/// relabeling and the `__address__`, `__scheme__`, `__metrics_path__`, `__param_*`, `__meta_*`,
/// `__scrape_interval__`, `__scrape_timeout__` labels for target relabeling.
pub type Labels = Vec<(String, String)>;

/// Reusable buffers for [`process_with`], so that relabeling a sample allocates nothing unless a
/// rule changes a label. [`process`] keeps one per thread; a caller relabeling many samples with one
/// rule list (a scrape) may keep its own.
#[derive(Debug, Default)]
pub struct Scratch {
    joined: String,
    name: String,
    value: String,
    pending: Vec<(String, String)>,
    // Capture slots by position in the rule list, tagged with the id of the rule they were made for.
    locs: Vec<Option<(u64, CaptureLocations)>>,
}

impl Scratch {
    /// Empty buffers; they grow on first use.
    pub const fn new() -> Self {
        Scratch {
            joined: String::new(),
            name: String::new(),
            value: String::new(),
            pending: Vec::new(),
            locs: Vec::new(),
        }
    }

    fn prepare(&mut self, rules: &[Rule]) {
        if self.locs.len() < rules.len() {
            self.locs.resize_with(rules.len(), || None);
        }
        for (rule, slot) in rules.iter().zip(self.locs.iter_mut()) {
            if rule.needs_captures && slot.as_ref().is_none_or(|(id, _)| *id != rule.id) {
                *slot = Some((rule.id, rule.regex.capture_locations()));
            }
        }
    }

    // One huge label should not pin its size in every thread's buffers for good.
    fn trim(&mut self) {
        const KEEP: usize = 64 * 1024;
        for buf in [&mut self.joined, &mut self.name, &mut self.value] {
            if buf.capacity() > KEEP {
                *buf = String::new();
            }
        }
        if self.pending.capacity() > KEEP / 64 {
            self.pending = Vec::new();
        }
        if self.locs.len() > KEEP / 64 {
            self.locs = Vec::new();
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch::new()) };
}

/// Applies the rules in order. Returns false when a rule dropped the label set
/// (keep/drop/keepequal/dropequal), true with `labels` rewritten (still sorted, unique, no empty
/// values) otherwise. After false, `labels` holds whatever the rules before the dropping one made.
///
/// Labels with empty values are absent, as in Prometheus: they are removed first, and a rule that
/// would set an empty value deletes the label instead. An input that is not sorted by name is sorted
/// first (of duplicate names, the first is kept). As in Prometheus, the names `labelmap` writes are
/// not checked (`__meta_kubernetes_pod_label_2fa` maps to `2fa`); a caller that needs valid names
/// checks them with [`is_valid_label_name`].
///
/// Uses a per-thread [`Scratch`], so relabeling allocates only for the labels a rule changes.
pub fn process(labels: &mut Labels, rules: &[Rule]) -> bool {
    SCRATCH
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                let keep = process_with(labels, rules, &mut scratch);
                scratch.trim();
                keep
            }
            // Not reachable (nothing in here calls back), but never worth a panic.
            Err(_) => process_with(labels, rules, &mut Scratch::new()),
        })
        .unwrap_or_else(|_| process_with(labels, rules, &mut Scratch::new()))
}

/// [`process`] with caller-owned buffers.
pub fn process_with(labels: &mut Labels, rules: &[Rule], scratch: &mut Scratch) -> bool {
    normalize(labels);
    scratch.prepare(rules);
    let Scratch {
        joined,
        name,
        value,
        pending,
        locs,
    } = scratch;
    let mut bufs = Buffers {
        joined,
        name,
        value,
        pending,
    };
    for (rule, slot) in rules.iter().zip(locs.iter_mut()) {
        let locs = slot.as_mut().map(|(_, locs)| locs);
        if !rule.apply(labels, locs, &mut bufs) {
            return false;
        }
    }
    true
}

struct Buffers<'s> {
    joined: &'s mut String,
    name: &'s mut String,
    value: &'s mut String,
    pending: &'s mut Vec<(String, String)>,
}

fn normalize(labels: &mut Labels) {
    labels.retain(|(_, value)| !value.is_empty());
    if !labels.is_sorted_by(|a, b| a.0 < b.0) {
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels.dedup_by(|later, earlier| later.0 == earlier.0);
    }
}

fn get<'l>(labels: &'l Labels, name: &str) -> &'l str {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) => labels.get(i).map_or("", |(_, v)| v.as_str()),
        Err(_) => "",
    }
}

/// Sets or, for an empty value, deletes; reuses the existing value's allocation and leaves an equal
/// value alone.
fn set(labels: &mut Labels, name: &str, value: &str) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => {
            if let Some((_, old)) = labels.get_mut(i)
                && old != value
            {
                old.clear();
                old.push_str(value);
            }
        }
        Err(i) if !value.is_empty() => labels.insert(i, (name.to_owned(), value.to_owned())),
        Err(_) => {}
    }
}

fn set_owned(labels: &mut Labels, name: String, value: String) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => {
            if let Some((_, old)) = labels.get_mut(i) {
                *old = value;
            }
        }
        Err(i) if !value.is_empty() => labels.insert(i, (name, value)),
        Err(_) => {}
    }
}

impl Rule {
    /// The source value: the source labels' values joined. One label (the common case) is borrowed
    /// as it is; only a join of several is built, into the reused buffer.
    fn source<'a>(&'a self, labels: &'a Labels, joined: &'a mut String) -> &'a str {
        match &*self.source_labels {
            [] => "",
            [one] => get(labels, one),
            many => {
                joined.clear();
                for (i, name) in many.iter().enumerate() {
                    if i > 0 {
                        joined.push_str(&self.separator);
                    }
                    joined.push_str(get(labels, name));
                }
                joined
            }
        }
    }

    fn apply(
        &self,
        labels: &mut Labels,
        locs: Option<&mut CaptureLocations>,
        bufs: &mut Buffers<'_>,
    ) -> bool {
        // `locs` is there exactly when the rule needs captures (see `Scratch::prepare`); should it
        // be missing anyway, a slot made here is slower but right.
        let mut fallback = None;
        let locs = if self.needs_captures {
            Some(match locs {
                Some(locs) => locs,
                None => fallback.insert(self.regex.capture_locations()),
            })
        } else {
            None
        };
        match self.action {
            Action::Keep => self.regex.is_match(self.source(labels, bufs.joined)),
            Action::Drop => !self.regex.is_match(self.source(labels, bufs.joined)),
            Action::KeepEqual => {
                self.source(labels, bufs.joined) == get(labels, &self.target_label)
            }
            Action::DropEqual => {
                self.source(labels, bufs.joined) != get(labels, &self.target_label)
            }
            Action::Replace => {
                self.replace(labels, locs, bufs);
                true
            }
            Action::HashMod => {
                let source = self.source(labels, bufs.joined);
                if let Some(modulus) = self.modulus {
                    let digest = Md5::digest(source.as_bytes());
                    // Prometheus uses the digest's last 8 bytes, big-endian.
                    let tail = digest
                        .iter()
                        .skip(8)
                        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                    bufs.value.clear();
                    // Writing to a String cannot fail.
                    let _ = write!(bufs.value, "{}", tail % modulus);
                    set(labels, &self.target_label, bufs.value);
                }
                true
            }
            Action::Lowercase => {
                go_to_lower(self.source(labels, bufs.joined), bufs.value);
                set(labels, &self.target_label, bufs.value);
                true
            }
            Action::Uppercase => {
                go_to_upper(self.source(labels, bufs.joined), bufs.value);
                set(labels, &self.target_label, bufs.value);
                true
            }
            Action::LabelMap => {
                self.label_map(labels, locs, bufs);
                true
            }
            Action::LabelDrop => {
                labels.retain(|(name, _)| !self.regex.is_match(name));
                true
            }
            Action::LabelKeep => {
                labels.retain(|(name, _)| self.regex.is_match(name));
                true
            }
        }
    }

    fn replace(
        &self,
        labels: &mut Labels,
        locs: Option<&mut CaptureLocations>,
        bufs: &mut Buffers<'_>,
    ) {
        let source = self.source(labels, bufs.joined);
        let (target, value) = match locs {
            Some(locs) => {
                if self.regex.captures_read(locs, source).is_none() {
                    return;
                }
                let target = self.target.expand(source, Some(&*locs), bufs.name);
                // A template can expand to anything; Prometheus skips a result that is no name.
                if !is_valid_label_name(target) {
                    return;
                }
                (
                    target,
                    self.replacement.expand(source, Some(&*locs), bufs.value),
                )
            }
            None => {
                if !self.regex.is_match(source) {
                    return;
                }
                let target = self.target.expand(source, None, bufs.name);
                if !is_valid_label_name(target) {
                    return;
                }
                (target, self.replacement.expand(source, None, bufs.value))
            }
        };
        set(labels, target, value);
    }

    fn label_map(
        &self,
        labels: &mut Labels,
        mut locs: Option<&mut CaptureLocations>,
        bufs: &mut Buffers<'_>,
    ) {
        // Prometheus reads the names and values as they were before the rule and sets the copies as
        // it goes, so a later copy to the same name wins; collect, then set in order. (It visits
        // labels set by earlier rules of the same call after the others; here all go in name order,
        // which differs only when two labels of different origin map to one name.)
        bufs.pending.clear();
        for (name, value) in labels.iter() {
            let new_name = match locs.as_deref_mut() {
                Some(locs) => {
                    if self.regex.captures_read(locs, name).is_none() {
                        continue;
                    }
                    self.replacement.expand(name, Some(&*locs), bufs.name)
                }
                None => {
                    if !self.regex.is_match(name) {
                        continue;
                    }
                    self.replacement.expand(name, None, bufs.name)
                }
            };
            // Copying a value onto the same value changes nothing, unless an earlier copy in this
            // rule targets the name too; skipping it keeps a no-op rule free of allocation.
            if get(labels, new_name) == value
                && !bufs.pending.iter().any(|(pending, _)| pending == new_name)
            {
                continue;
            }
            bufs.pending.push((new_name.to_owned(), value.clone()));
        }
        for (name, value) in bufs.pending.drain(..) {
            set_owned(labels, name, value);
        }
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus 2.x's (legacy) label name.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Prometheus's check of a name template (`replace`'s `target_label` with a `$`, `labelmap`'s
/// `replacement`): `^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$`. That is: name characters and
/// references, not starting with a digit, every `$` starting `${word}` or `$word`.
fn is_valid_name_template(template: &str) -> bool {
    let bytes = template.as_bytes();
    match bytes.first() {
        None => return false,
        Some(b) if b.is_ascii_digit() => return false,
        Some(_) => {}
    }
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if is_word_byte(b) {
            i += 1;
        } else if b == b'$' {
            if bytes.get(i + 1) == Some(&b'{') {
                let start = i + 2;
                let mut end = start;
                while bytes.get(end).is_some_and(|&b| is_word_byte(b)) {
                    end += 1;
                }
                if end == start || bytes.get(end) != Some(&b'}') {
                    return false;
                }
                i = end + 1;
            } else if bytes.get(i + 1).is_some_and(|&b| is_word_byte(b)) {
                i += 2;
            } else {
                return false;
            }
        } else {
            return false;
        }
    }
    true
}

/// A `target_label` or `replacement` with its references resolved to group numbers at compile
/// time, so expanding is copying.
#[derive(Debug, Clone)]
enum Template {
    /// No references to groups that exist (references to missing groups expand to nothing).
    Literal(Box<str>),
    Pieces(Box<[Piece]>),
}

#[derive(Debug, Clone)]
enum Piece {
    Text(Box<str>),
    Group(usize),
}

impl Template {
    /// Parses per Go's `Regexp.Expand`: `$$` is a `$`; `$name` takes the longest run of letters,
    /// digits and `_`; `${name}` is braced; a name of ASCII digits without a leading zero is a group
    /// number, anything else a group name; a reference to no group is empty; a `$` not followed by
    /// a name (or by an unclosed or empty brace) is a literal `$`.
    fn parse(template: &str, regex: &Regex) -> Template {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some((before, after)) = rest.split_once('$') {
            text.push_str(before);
            if let Some(after) = after.strip_prefix('$') {
                text.push('$');
                rest = after;
                continue;
            }
            match split_reference(after) {
                None => {
                    text.push('$');
                    rest = after;
                }
                Some((name, after)) => {
                    rest = after;
                    if let Some(group) = resolve_group(name, regex) {
                        if !text.is_empty() {
                            pieces.push(Piece::Text(Box::from(std::mem::take(&mut text))));
                        }
                        pieces.push(Piece::Group(group));
                    }
                }
            }
        }
        text.push_str(rest);
        if pieces.is_empty() {
            return Template::Literal(text.into_boxed_str());
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.into_boxed_str()));
        }
        Template::Pieces(pieces.into_boxed_slice())
    }

    fn has_groups(&self) -> bool {
        matches!(self, Template::Pieces(_))
    }

    /// The expansion; a literal is returned as it is, anything else is built in `buf`.
    fn expand<'t>(
        &'t self,
        haystack: &str,
        locs: Option<&CaptureLocations>,
        buf: &'t mut String,
    ) -> &'t str {
        match self {
            Template::Literal(text) => text,
            Template::Pieces(pieces) => {
                buf.clear();
                for piece in pieces {
                    match piece {
                        Piece::Text(text) => buf.push_str(text),
                        Piece::Group(group) => {
                            // A group that did not take part in the match expands to nothing.
                            if let Some((start, end)) = locs.and_then(|locs| locs.get(*group))
                                && let Some(matched) = haystack.get(start..end)
                            {
                                buf.push_str(matched);
                            }
                        }
                    }
                }
                buf
            }
        }
    }
}

/// After a `$`: the reference's name and what follows it, or None when there is none (the `$` is
/// then literal).
fn split_reference(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    // Go's `unicode.IsLetter`/`IsDigit`; Rust's `is_alphabetic`/`is_numeric` also take letter
    // numbers, other numbers and combining vowel signs, which no one writes after a `$`.
    let end = body
        .char_indices()
        .find(|&(_, c)| !(c == '_' || c.is_alphabetic() || c.is_numeric()))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let (name, rest) = body.split_at_checked(end)?;
    if braced {
        Some((name, rest.strip_prefix('}')?))
    } else {
        Some((name, rest))
    }
}

fn resolve_group(name: &str, regex: &Regex) -> Option<usize> {
    let numeric =
        name.bytes().all(|b| b.is_ascii_digit()) && !(name.len() > 1 && name.starts_with('0'));
    if numeric {
        // Too large to parse is a group that does not exist, as in Go.
        let number: usize = name.parse().ok()?;
        (number < regex.captures_len()).then_some(number)
    } else {
        regex.capture_names().position(|group| group == Some(name))
    }
}

/// Compiles `^(?:REGEX)$` with `REGEX` translated from Go's syntax, bounded in size.
fn compile_regex(pattern: &str) -> Result<Regex, String> {
    let translated = translate_go_regex(pattern)
        .map_err(|e| format!("`regex`: invalid regular expression `{pattern}`: {e}"))?;
    let anchored = format!("^(?:{translated})$");
    RegexBuilder::new(&anchored)
        .size_limit(REGEX_SIZE_LIMIT)
        // Go reads `\101` as octal; the `regex` crate does only when asked.
        .octal(true)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "`regex`: regular expression `{pattern}` is too large once compiled (more than \
                 {limit} bytes)"
            ),
            regex::Error::Syntax(message) => {
                // The crate's message quotes the translated, anchored pattern with a caret under
                // it; the person wrote the original, so keep only the description.
                let reason = message
                    .lines()
                    .rev()
                    .find_map(|line| line.strip_prefix("error: "))
                    .unwrap_or(message.as_str())
                    .trim()
                    .to_owned();
                format!("`regex`: invalid regular expression `{pattern}`: {reason}")
            }
            other => format!("`regex`: invalid regular expression `{pattern}`: {other}"),
        })
}

/// Go's largest repeat count (`x{1000}`); larger counts are an error in Go.
const GO_MAX_REPEAT: u32 = 1000;

/// Rewrites a Go (RE2) regular expression into the `regex` crate's syntax with the same meaning.
/// The two are close; where they differ:
///
/// - `\d`, `\w`, `\s` and `\b`, `\B` are ASCII in Go and Unicode in the crate: they become explicit
///   ASCII classes (which also keeps Unicode `\w` tables out of the compiled size).
/// - Go reads a `{` that does not start a well-formed repeat as a literal; the crate rejects it.
/// - Go has `\Q...\E`; the crate has not.
/// - Inside a class Go takes `[`, `&&`, `--`, `~~` literally; the crate nests and combines classes.
/// - Go takes any escaped ASCII punctuation as itself; the crate gives `\<`, `\>` meanings.
/// - Go accepts only the flags `i`, `m`, `s`, `U`; `(?x)` would change how the rest is read.
/// - A lone `\1`..`\7` is a back-reference in Go's eyes and an error; the crate's octal reads it.
///
/// Errors name what Go would reject; everything else is left to the crate's parser.
fn translate_go_regex(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => i = translate_escape(&chars, i, &mut out)?,
            '[' => i = translate_class(&chars, i, &mut out)?,
            '{' => match go_repeat(&chars, i)? {
                Some(end) => {
                    out.extend(chars.get(i..end).unwrap_or_default());
                    i = end;
                }
                None => {
                    out.push_str("\\{");
                    i += 1;
                }
            },
            '}' => {
                out.push_str("\\}");
                i += 1;
            }
            ']' => {
                out.push_str("\\]");
                i += 1;
            }
            '(' if chars.get(i + 1) == Some(&'?') => {
                check_group_flags(&chars, i)?;
                out.push_str("(?");
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// At a `{`: the end of a Go repeat (`{n}`, `{n,}`, `{n,m}`, numbers without leading zeros), None
/// when it is not one (then the `{` is literal), an error when its counts are out of Go's range.
fn go_repeat(chars: &[char], start: usize) -> Result<Option<usize>, String> {
    fn number(chars: &[char], i: &mut usize) -> Option<u32> {
        let first = *i;
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        if *i == first || (*i - first > 1 && chars.get(first) == Some(&'0')) {
            return None;
        }
        // Saturates: anything past Go's limit is an error anyway.
        Some(chars.get(first..*i)?.iter().fold(0u32, |n, d| {
            n.saturating_mul(10)
                .saturating_add(d.to_digit(10).unwrap_or(0))
        }))
    }
    let mut i = start + 1;
    let Some(min) = number(chars, &mut i) else {
        return Ok(None);
    };
    let max = if chars.get(i) == Some(&',') {
        i += 1;
        if chars.get(i) == Some(&'}') {
            None
        } else {
            let Some(max) = number(chars, &mut i) else {
                return Ok(None);
            };
            Some(max)
        }
    } else {
        Some(min)
    };
    if chars.get(i) != Some(&'}') {
        return Ok(None);
    }
    if min > GO_MAX_REPEAT || max.is_some_and(|max| max > GO_MAX_REPEAT || max < min) {
        let text: String = chars.get(start..=i).unwrap_or_default().iter().collect();
        return Err(format!("invalid repeat count `{text}`"));
    }
    Ok(Some(i + 1))
}

/// At `(?`: Go knows named groups and the flags `i`, `m`, `s`, `U` (and `-`); the crate knows more.
fn check_group_flags(chars: &[char], start: usize) -> Result<(), String> {
    let mut i = start + 2;
    if matches!(chars.get(i), Some('P' | '<')) {
        return Ok(());
    }
    while let Some(&c) = chars.get(i) {
        match c {
            ')' | ':' => return Ok(()),
            'i' | 'm' | 's' | 'U' | '-' => i += 1,
            _ => {
                let text: String = chars.get(start..=i).unwrap_or_default().iter().collect();
                return Err(format!("invalid or unsupported Perl syntax `{text}`"));
            }
        }
    }
    // Unclosed: the crate's parser says so.
    Ok(())
}

/// Go's ASCII Perl classes as class contents, and their negations as whole classes.
fn perl_class(c: char) -> Option<(&'static str, bool)> {
    match c {
        'd' => Some(("0-9", false)),
        'D' => Some(("0-9", true)),
        's' => Some(("\\t\\n\\f\\r ", false)),
        'S' => Some(("\\t\\n\\f\\r ", true)),
        'w' => Some(("0-9A-Za-z_", false)),
        'W' => Some(("0-9A-Za-z_", true)),
        _ => None,
    }
}

fn is_crate_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

fn push_literal(out: &mut String, c: char) {
    if is_crate_meta(c) {
        out.push('\\');
    }
    out.push(c);
}

/// Copies `\p{...}` / `\pX` or `\x{...}` / `\xHH` from the letter after the backslash; returns the
/// index after it.
fn copy_braced_escape(chars: &[char], letter: usize, short_len: usize, out: &mut String) -> usize {
    let mut end = letter + 1;
    if chars.get(end) == Some(&'{') {
        while chars.get(end).is_some_and(|&c| c != '}') {
            end += 1;
        }
        end = (end + 1).min(chars.len());
    } else {
        end = (end + short_len).min(chars.len());
    }
    out.push('\\');
    out.extend(chars.get(letter..end).unwrap_or_default());
    end
}

/// Copies an octal escape (`\0`, `\012`, `\101`) from the first digit; Go errs on a lone `\1`..`\7`.
fn copy_octal_escape(chars: &[char], digit: usize, out: &mut String) -> Result<usize, String> {
    let is_octal = |i: usize| chars.get(i).is_some_and(|c| ('0'..='7').contains(c));
    let first = chars.get(digit).copied().unwrap_or('0');
    if first != '0' && !is_octal(digit + 1) {
        return Err(format!(
            "invalid escape sequence `\\{first}` (back-references are not supported)"
        ));
    }
    let mut end = digit + 1;
    while end < digit + 3 && is_octal(end) {
        end += 1;
    }
    out.push('\\');
    out.extend(chars.get(digit..end).unwrap_or_default());
    Ok(end)
}

/// An escape outside a class, at the backslash; returns the index after it.
fn translate_escape(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let Some(&c) = chars.get(start + 1) else {
        return Err("trailing backslash at end of expression".to_owned());
    };
    let next = start + 2;
    if let Some((class, negated)) = perl_class(c) {
        out.push_str(if negated { "[^" } else { "[" });
        out.push_str(class);
        out.push(']');
        return Ok(next);
    }
    match c {
        'b' => out.push_str("(?-u:\\b)"),
        'B' => out.push_str("(?-u:\\B)"),
        'Q' => {
            // Literal text up to `\E` or the end.
            let mut i = next;
            while let Some(&q) = chars.get(i) {
                if q == '\\' && chars.get(i + 1) == Some(&'E') {
                    return Ok(i + 2);
                }
                push_literal(out, q);
                i += 1;
            }
            return Ok(i);
        }
        'p' | 'P' => return Ok(copy_braced_escape(chars, start + 1, 1, out)),
        'x' => return Ok(copy_braced_escape(chars, start + 1, 2, out)),
        '0'..='7' => return copy_octal_escape(chars, start + 1, out),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => push_literal(out, c),
        // `\n`, `\t`, `\A`, `\z`, ... mean the same in both; the crate rejects what it lacks.
        c => {
            out.push('\\');
            out.push(c);
        }
    }
    Ok(next)
}

/// One item of a class. `Char` is a single character (may start or end a range), `Set` a class.
enum ClassItem {
    Char(String),
    Set(String),
}

fn class_item(chars: &[char], i: usize) -> Result<(ClassItem, usize), String> {
    let Some(&c) = chars.get(i) else {
        return Err("missing closing `]`".to_owned());
    };
    if c != '\\' {
        let mut text = String::new();
        // Escaped when the crate would read it as class syntax (`[`, `&&`, `--`, `~~`, ...).
        push_literal(&mut text, c);
        return Ok((ClassItem::Char(text), i + 1));
    }
    let Some(&e) = chars.get(i + 1) else {
        return Err("trailing backslash at end of expression".to_owned());
    };
    if let Some((class, negated)) = perl_class(e) {
        let text = if negated {
            format!("[^{class}]")
        } else {
            class.to_owned()
        };
        return Ok((ClassItem::Set(text), i + 2));
    }
    let mut text = String::new();
    let end = match e {
        'p' | 'P' => {
            let end = copy_braced_escape(chars, i + 1, 1, &mut text);
            return Ok((ClassItem::Set(text), end));
        }
        'x' => copy_braced_escape(chars, i + 1, 2, &mut text),
        '0'..='7' => copy_octal_escape(chars, i + 1, &mut text)?,
        e if e.is_ascii() && !e.is_ascii_alphanumeric() => {
            push_literal(&mut text, e);
            i + 2
        }
        e => {
            text.push('\\');
            text.push(e);
            i + 2
        }
    };
    Ok((ClassItem::Char(text), end))
}

/// A class, at its `[`; returns the index after its `]`. Items are parsed as Go does: a `]` or `-`
/// first is literal, `x-y` is a range unless the `-` is last, any other `-` is literal.
fn translate_class(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let mut i = start + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    loop {
        match chars.get(i) {
            None => return Err("missing closing `]`".to_owned()),
            Some(']') if !first => {
                out.push(']');
                return Ok(i + 1);
            }
            _ => {}
        }
        first = false;
        // POSIX classes (`[:alpha:]`) read the same in both.
        if chars.get(i) == Some(&'[')
            && chars.get(i + 1) == Some(&':')
            && let Some(close) = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars.get(j) == Some(&':') && chars.get(j + 1) == Some(&']'))
        {
            out.extend(chars.get(i..close + 2).unwrap_or_default());
            i = close + 2;
            continue;
        }
        let (item, after) = class_item(chars, i)?;
        i = after;
        match item {
            ClassItem::Set(text) => out.push_str(&text),
            ClassItem::Char(low) => {
                out.push_str(&low);
                let is_range =
                    chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']');
                if is_range {
                    let (high, after) = class_item(chars, i + 1)?;
                    let ClassItem::Char(high) = high else {
                        return Err("invalid character class range".to_owned());
                    };
                    out.push('-');
                    out.push_str(&high);
                    i = after;
                }
            }
        }
    }
}

/// Go's `strings.ToLower`: each character by its simple (one-to-one) mapping. Rust's mapping is the
/// full one, which differs only for `İ` (U+0130).
fn go_to_lower(s: &str, out: &mut String) {
    out.clear();
    if s.is_ascii() {
        out.push_str(s);
        out.make_ascii_lowercase();
        return;
    }
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
}

/// Go's `strings.ToUpper`, by simple mappings. Where Rust's full mapping expands a character (`ß`,
/// ligatures, Greek with iota subscript), the simple mapping is none, or for the lowercase Greek
/// letters with ypogegrammeni their titlecase form (checked against Perl's `Unicode::UCD`).
fn go_to_upper(s: &str, out: &mut String) {
    out.clear();
    if s.is_ascii() {
        out.push_str(s);
        out.make_ascii_uppercase();
        return;
    }
    for c in s.chars() {
        let upper = c.to_uppercase();
        if upper.len() == 1 {
            out.extend(upper);
            continue;
        }
        let simple = match u32::from(c) {
            code @ (0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7) => code + 8,
            0x1FB3 => 0x1FBC,
            0x1FC3 => 0x1FCC,
            0x1FF3 => 0x1FFC,
            code => code,
        };
        out.push(char::from_u32(simple).unwrap_or(c));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on a bad fixture")]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut labels: Labels = pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        labels
    }

    fn config(yaml: &str) -> RelabelConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn rules(yaml: &str) -> Vec<Rule> {
        let configs: Vec<RelabelConfig> = serde_yaml_ng::from_str(yaml).unwrap();
        compile_all(&configs).unwrap()
    }

    /// The label set after the rules, None when dropped.
    fn run(yaml: &str, input: &[(&str, &str)]) -> Option<Labels> {
        let rules = rules(yaml);
        let mut labels = labels(input);
        process(&mut labels, &rules).then_some(labels)
    }

    fn compile_error(yaml: &str) -> String {
        config(yaml).compile().unwrap_err()
    }

    fn matches(go_regex: &str, text: &str) -> bool {
        compile_regex(go_regex).unwrap().is_match(text)
    }

    /// Expands `template` for `regex` (Go syntax) matched against `haystack`.
    fn expand(regex: &str, template: &str, haystack: &str) -> String {
        let regex = compile_regex(regex).unwrap();
        let template = Template::parse(template, &regex);
        let mut locs = regex.capture_locations();
        assert!(regex.captures_read(&mut locs, haystack).is_some());
        let mut buf = String::new();
        template.expand(haystack, Some(&locs), &mut buf).to_owned()
    }

    // --- configuration ---

    #[test]
    fn defaults_are_prometheus_defaults() {
        let parsed = config("{}");
        assert_eq!(parsed, RelabelConfig::default());
        assert_eq!(parsed.separator, ";");
        assert_eq!(parsed.regex, "(.*)");
        assert_eq!(parsed.replacement, "$1");
        assert_eq!(parsed.action, Action::Replace);
        assert_eq!(parsed.target_label, None);
        assert_eq!(parsed.modulus, None);
    }

    #[test]
    fn actions_parse_by_name_case_insensitively() {
        for action in Action::ALL {
            let lower = config(&format!("action: {action}"));
            assert_eq!(lower.action, action);
            let upper = config(&format!("action: {}", action.as_str().to_uppercase()));
            assert_eq!(upper.action, action);
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
        }
        assert_eq!(config("action: LabelMap").action, Action::LabelMap);
        let error = serde_yaml_ng::from_str::<RelabelConfig>("action: rename")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown relabel action \"rename\" (expected one of replace, keep"),
            "{error}"
        );
        let error = serde_yaml_ng::from_str::<RelabelConfig>("action: ''")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("relabel `action` cannot be empty"),
            "{error}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let error = serde_yaml_ng::from_str::<RelabelConfig>("regexp: a")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `regexp`"), "{error}");
    }

    #[test]
    fn null_is_the_zero_value_and_scalars_are_text() {
        let parsed = config("source_labels: ~\nseparator: ~\nregex: ~\nreplacement: ~");
        assert!(parsed.source_labels.is_empty());
        assert_eq!(parsed.separator, "");
        assert_eq!(parsed.regex, "");
        assert_eq!(parsed.replacement, "");
        let parsed = config("replacement: 8080\nregex: 1.50\ntarget_label: x");
        assert_eq!(parsed.replacement, "8080");
        assert_eq!(parsed.regex, "1.50");
    }

    #[test]
    fn validation_errors_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            (
                "action: hashmod\ntarget_label: x",
                "`modulus` is required for action `hashmod`",
            ),
            (
                "action: hashmod\ntarget_label: x\nmodulus: 0",
                "`modulus` must be greater than 0 for action `hashmod`",
            ),
            ("{}", "`target_label` is required for action `replace`"),
            (
                "target_label: ''",
                "`target_label` is required for action `replace`",
            ),
            (
                "action: hashmod\nmodulus: 2",
                "`target_label` is required for action `hashmod`",
            ),
            (
                "action: lowercase",
                "`target_label` is required for action `lowercase`",
            ),
            (
                "action: uppercase",
                "`target_label` is required for action `uppercase`",
            ),
            (
                "action: keepequal",
                "`target_label` is required for action `keepequal`",
            ),
            (
                "action: dropequal",
                "`target_label` is required for action `dropequal`",
            ),
            (
                "target_label: 1abc",
                "`target_label` \"1abc\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)",
            ),
            (
                "target_label: a.b",
                "`target_label` \"a.b\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)",
            ),
            (
                "target_label: a-$1",
                "`target_label` \"a-$1\" is not a valid label name template (name characters \
                 and `$1`, `${1}`, `$name` references)",
            ),
            (
                "target_label: x_$",
                "`target_label` \"x_$\" is not a valid label name template (name characters \
                 and `$1`, `${1}`, `$name` references)",
            ),
            (
                "target_label: ${}",
                "`target_label` \"${}\" is not a valid label name template (name characters \
                 and `$1`, `${1}`, `$name` references)",
            ),
            (
                "action: lowercase\ntarget_label: a.b",
                "`target_label` \"a.b\" is not a valid label name for action `lowercase` \
                 ([a-zA-Z_][a-zA-Z0-9_]*)",
            ),
            (
                "action: keepequal\ntarget_label: $1",
                "`target_label` \"$1\" is not a valid label name for action `keepequal` \
                 ([a-zA-Z_][a-zA-Z0-9_]*)",
            ),
            (
                "action: uppercase\ntarget_label: x\nreplacement: y",
                "`replacement` cannot be set for action `uppercase`",
            ),
            (
                "action: keepequal\ntarget_label: x\nreplacement: y",
                "`replacement` cannot be set for action `keepequal`",
            ),
            (
                "action: labelmap\nreplacement: a-$1",
                "`replacement` \"a-$1\" is not a valid label name template for action \
                 `labelmap` (name characters and `$1`, `${1}`, `$name` references)",
            ),
            (
                "action: hashmod\nmodulus: 2\ntarget_label: $1",
                "`target_label` \"$1\" is not a valid label name for action `hashmod` \
                 ([a-zA-Z_][a-zA-Z0-9_]*)",
            ),
            (
                "action: keepequal\ntarget_label: x\nregex: a",
                "`keepequal` takes only `source_labels` and `target_label`, not `regex`",
            ),
            (
                "action: dropequal\ntarget_label: x\nmodulus: 3\nseparator: ','",
                "`dropequal` takes only `source_labels` and `target_label`, not \
                 `modulus`/`separator`",
            ),
            (
                "action: labeldrop\nsource_labels: [a]\ntarget_label: b",
                "`labeldrop` takes no `source_labels`/`target_label`; it uses only `regex`",
            ),
            (
                "action: labelkeep\nregex: a\nreplacement: b",
                "`labelkeep` takes no `replacement`; it uses only `regex`",
            ),
            (
                "source_labels: [a-b]\ntarget_label: x",
                "`source_labels`: \"a-b\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)",
            ),
            (
                "regex: (a\ntarget_label: x",
                "`regex`: invalid regular expression `(a`: unclosed group",
            ),
            (
                "regex: x{1001}\ntarget_label: x",
                "`regex`: invalid regular expression `x{1001}`: invalid repeat count `{1001}`",
            ),
            (
                "regex: x{3,2}\ntarget_label: x",
                "`regex`: invalid regular expression `x{3,2}`: invalid repeat count `{3,2}`",
            ),
            (
                "regex: (?x)a b\ntarget_label: x",
                "`regex`: invalid regular expression `(?x)a b`: invalid or unsupported Perl \
                 syntax `(?x`",
            ),
            (
                "regex: (?=a)\ntarget_label: x",
                "`regex`: invalid regular expression `(?=a)`: invalid or unsupported Perl \
                 syntax `(?=`",
            ),
            (
                "regex: (a)\\1\ntarget_label: x",
                "`regex`: invalid regular expression `(a)\\1`: invalid escape sequence `\\1` \
                 (back-references are not supported)",
            ),
            (
                "regex: ab\\\ntarget_label: x",
                "`regex`: invalid regular expression `ab\\`: trailing backslash at end of \
                 expression",
            ),
            (
                "regex: '[ab'\ntarget_label: x",
                "`regex`: invalid regular expression `[ab`: missing closing `]`",
            ),
            (
                "regex: (?:a{1000}){1000}\ntarget_label: x",
                "`regex`: regular expression `(?:a{1000}){1000}` is too large once compiled \
                 (more than 1048576 bytes)",
            ),
        ];
        for (yaml, expected) in cases {
            assert_eq!(&compile_error(yaml), expected, "for {yaml:?}");
        }
    }

    #[test]
    fn valid_configs_compile() {
        for yaml in [
            "target_label: x",
            "target_label: $1",
            "target_label: ${1}_x",
            "target_label: a$name$2",
            "action: keep",
            "action: drop\nregex: ''",
            "action: hashmod\nmodulus: 1\ntarget_label: x",
            "action: labelmap\nreplacement: x_${1}_$name",
            "action: labeldrop\nregex: a|b",
            "action: labelkeep\ntarget_label: ''\nmodulus: 0",
            "action: keepequal\ntarget_label: x\nsource_labels: [a, b]",
            "action: lowercase\ntarget_label: x\nregex: ignored",
        ] {
            assert!(config(yaml).compile().is_ok(), "{yaml}");
        }
    }

    #[test]
    fn compile_all_reports_every_error_with_its_index() {
        let configs: Vec<RelabelConfig> = serde_yaml_ng::from_str(
            "- action: hashmod\n  target_label: x\n- action: keep\n- regex: '['\n  target_label: y",
        )
        .unwrap();
        let errors = compile_all(&configs).unwrap_err();
        assert_eq!(
            errors,
            vec![
                (0, "`modulus` is required for action `hashmod`".to_owned()),
                (
                    2,
                    "`regex`: invalid regular expression `[`: missing closing `]`".to_owned()
                ),
            ]
        );
        assert_eq!(compile_all(&configs[1..2]).unwrap().len(), 1);
    }

    // --- Go regular expressions ---

    #[test]
    fn perl_classes_and_word_boundaries_are_ascii_as_in_go() {
        assert!(matches(r"\d+", "0123456789"));
        assert!(!matches(r"\d", "\u{663}")); // ARABIC-INDIC DIGIT THREE
        assert!(matches(r"\D", "\u{663}"));
        assert!(matches(r"\w+", "abc_XYZ_09"));
        assert!(!matches(r"\w", "é"));
        assert!(matches(r"\W", "é"));
        assert!(matches(r"\s", " ") && matches(r"\s", "\t"));
        assert!(!matches(r"\s", "\u{b}")); // Go's \s has no vertical tab
        assert!(!matches(r"\s", "\u{a0}"));
        assert!(matches(r"\S", "\u{a0}"));
        // `é` is no ASCII word character, so there is a boundary after `a`.
        assert!(matches(r"a\bé", "aé"));
        assert!(!matches(r"a\Bé", "aé"));
        assert!(matches(r"[\d]+", "42") && !matches(r"[\d]", "\u{663}"));
        assert!(matches(r"[^\D]", "5") && !matches(r"[^\D]", "x"));
        assert!(matches(r"[\w.]+", "a.b") && !matches(r"[\w]", "é"));
        // Case folding applies to the ASCII classes, as in Go: K folds to the Kelvin sign.
        assert!(matches(r"(?i)\w", "\u{212a}"));
    }

    #[test]
    fn braces_that_are_no_repeat_are_literal_as_in_go() {
        assert!(matches(r"{.*}", "{a}"));
        assert!(matches(r"a{,5}", "a{,5}"));
        assert!(matches(r"a{01}", "a{01}"));
        assert!(matches(r"x{", "x{"));
        assert!(matches(r"a}", "a}"));
        assert!(matches(r"a{2}", "aa") && !matches(r"a{2}", "a"));
        assert!(matches(r"a{2,}", "aaa"));
        assert!(matches(r"a{1,2}", "aa") && !matches(r"a{1,2}", "aaa"));
        assert!(matches(r"a{1000}", &"a".repeat(1000)));
    }

    #[test]
    fn go_only_syntax_is_translated() {
        assert!(matches(r"\Qa.b\E.", "a.bx") && !matches(r"\Qa.b\E.", "axbx"));
        assert!(matches(r"\Q[a+", "[a+"));
        assert!(matches(r"\<a\>", "<a>"));
        assert!(matches(r"\_\:\@", "_:@"));
        assert!(matches(r"\101\0", "A\0"));
        assert!(matches(r"[\101-\103]+", "ABC"));
        assert!(matches(r"\x41\x{42}", "AB"));
        assert!(matches(r"\p{Greek}+\pL", "αβé"));
        assert!(matches(r"[\p{Greek}x]+", "αx"));
        assert!(matches(r"(?P<x>a)(?<y>b)(?i:C)(?s:.)(?U)d+", "abc\nd"));
        assert!(!matches(r".", "\n"));
    }

    #[test]
    fn classes_read_as_in_go() {
        assert!(matches(r"[[a]+", "[a["));
        assert!(matches(r"[a&&b]+", "a&b"));
        assert!(matches(r"[~~]+", "~~"));
        assert!(matches(r"[a-]+", "a-") && !matches(r"[a-]", "b"));
        assert!(matches(r"[-a]+", "-a"));
        assert!(matches(r"[]a]+", "]a"));
        assert!(matches(r"[^]a]", "b") && !matches(r"[^]a]", "]"));
        assert!(matches(r"[\d-z]+", "1-z") && !matches(r"[\d-z]", "y"));
        assert!(matches(r"[%--]+", "%,-") && !matches(r"[%--]", "."));
        assert!(matches(r"[a-c-e]+", "b-e") && !matches(r"[a-c-e]", "d"));
        assert!(matches(r"[[:alpha:]]+", "abc") && !matches(r"[[:alpha:]]", "1"));
        assert!(matches(r"[[:^digit:]x]", "y"));
        assert!(matches(r"[\[\]\-\^]+", "[]-^"));
    }

    #[test]
    fn the_whole_value_must_match_as_in_prometheus() {
        assert!(matches("b", "b"));
        assert!(!matches("b", "abc"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        assert!(matches("a|b", "a") && !matches("a|b", "ab"));
        // Prometheus wraps the text as it is, so unbalanced parentheses can unanchor a branch.
        assert!(matches("a)|(b", "ax") && matches("a)|(b", "xb") && !matches("a)|(b", "x"));
    }

    // --- templates ---

    #[test]
    fn templates_expand_as_go_regexp_expand() {
        let re = r"(?P<host>[^:]+):(\d+)";
        let hay = "example:8080";
        assert_eq!(expand(re, "$1", hay), "example");
        assert_eq!(expand(re, "$2", hay), "8080");
        assert_eq!(expand(re, "${1}x", hay), "examplex");
        // The name is the longest run of name characters: group "1x", which does not exist.
        assert_eq!(expand(re, "$1x", hay), "");
        assert_eq!(expand(re, "$1_$2", hay), "8080");
        assert_eq!(expand(re, "${1}_$2", hay), "example_8080");
        assert_eq!(expand(re, "$host", hay), "example");
        assert_eq!(expand(re, "${host}:$2", hay), "example:8080");
        assert_eq!(expand(re, "$0", hay), "example:8080");
        assert_eq!(expand(re, "$$1", hay), "$1");
        assert_eq!(expand(re, "a$", hay), "a$");
        assert_eq!(expand(re, "$-", hay), "$-");
        assert_eq!(expand(re, "${1", hay), "${1");
        assert_eq!(expand(re, "${}", hay), "${}");
        assert_eq!(expand(re, "${a-b}", hay), "${a-b}");
        // A leading zero makes a name, not a number.
        assert_eq!(expand(re, "$01", hay), "");
        assert_eq!(
            expand(re, "[$9][$nope][$99999999999999999999]", hay),
            "[][][]"
        );
        // Go's names take Unicode letters.
        assert_eq!(expand(re, "$1é|${1}é", hay), "|exampleé");
        assert_eq!(expand(re, "plain", hay), "plain");
        // A group that did not take part expands to nothing.
        assert_eq!(expand("(a)|(b)", "$1-$2", "b"), "-b");
    }

    // --- actions ---

    #[test]
    fn replace_sets_deletes_or_leaves_alone() {
        let rule = "- source_labels: [a]\n  target_label: b\n  replacement: x_$1";
        assert_eq!(
            run(rule, &[("a", "1")]),
            Some(labels(&[("a", "1"), ("b", "x_1")]))
        );
        // Default regex on a missing source: `$1` is empty, so the target is deleted.
        let rule = "- source_labels: [missing]\n  target_label: b";
        assert_eq!(run(rule, &[("b", "1")]), Some(labels(&[])));
        // A literal replacement is set regardless.
        let rule = "- target_label: env\n  replacement: prod";
        assert_eq!(
            run(rule, &[("a", "1")]),
            Some(labels(&[("a", "1"), ("env", "prod")]))
        );
        // No match, nothing.
        let rule = "- source_labels: [a]\n  regex: x.*\n  target_label: b\n  replacement: y";
        assert_eq!(
            run(rule, &[("a", "abc"), ("b", "1")]),
            Some(labels(&[("a", "abc"), ("b", "1")]))
        );
        // An empty replacement deletes.
        let rule = "- source_labels: [a]\n  regex: abc\n  target_label: b\n  replacement: ''";
        assert_eq!(
            run(rule, &[("a", "abc"), ("b", "1")]),
            Some(labels(&[("a", "abc")]))
        );
    }

    #[test]
    fn replace_target_names_come_from_captures() {
        let rule = "- source_labels: [kv]\n  regex: (.+)=(.+)\n  target_label: $1\n  \
                    replacement: $2";
        assert_eq!(
            run(rule, &[("kv", "team=db")]),
            Some(labels(&[("kv", "team=db"), ("team", "db")]))
        );
        // `1team` is no label name: the rule does nothing.
        assert_eq!(
            run(rule, &[("kv", "1team=db")]),
            Some(labels(&[("kv", "1team=db")]))
        );
        // A reference to a group that does not exist leaves an empty name: nothing.
        let rule = "- target_label: $nope\n  replacement: v";
        assert_eq!(run(rule, &[("a", "1")]), Some(labels(&[("a", "1")])));
    }

    #[test]
    fn source_values_are_joined_with_the_separator() {
        let rule = "- source_labels: [a, missing, b]\n  separator: /\n  target_label: joined";
        assert_eq!(
            run(rule, &[("a", "1"), ("b", "2")]),
            Some(labels(&[("a", "1"), ("b", "2"), ("joined", "1//2")]))
        );
        let rule = "- source_labels: [a, b]\n  regex: 1;(.*)\n  target_label: second";
        assert_eq!(
            run(rule, &[("a", "1"), ("b", "2")]),
            Some(labels(&[("a", "1"), ("b", "2"), ("second", "2")]))
        );
    }

    #[test]
    fn keep_and_drop_filter_on_the_regex() {
        let keep = "- source_labels: [env]\n  regex: prod|staging\n  action: keep";
        assert!(run(keep, &[("env", "prod")]).is_some());
        assert!(run(keep, &[("env", "dev")]).is_none());
        assert!(run(keep, &[("env", "production")]).is_none());
        assert!(run(keep, &[]).is_none());
        let drop = "- source_labels: [__name__]\n  regex: go_.*\n  action: drop";
        assert!(run(drop, &[("__name__", "go_goroutines")]).is_none());
        assert!(run(drop, &[("__name__", "http_requests_total")]).is_some());
        // An empty regex matches only the empty value, that is a missing label.
        let drop_missing = "- source_labels: [env]\n  regex: ''\n  action: drop";
        assert!(run(drop_missing, &[("a", "1")]).is_none());
        assert!(run(drop_missing, &[("env", "x")]).is_some());
    }

    #[test]
    fn keepequal_and_dropequal_compare_with_the_target() {
        let keep = "- source_labels: [a]\n  target_label: b\n  action: keepequal";
        assert!(run(keep, &[("a", "1"), ("b", "1")]).is_some());
        assert!(run(keep, &[("a", "1"), ("b", "2")]).is_none());
        assert!(run(keep, &[("a", "1")]).is_none());
        // Both missing: both empty, equal.
        assert!(run(keep, &[("c", "1")]).is_some());
        let drop = "- source_labels: [a, c]\n  target_label: b\n  action: dropequal";
        assert!(run(drop, &[("a", "1"), ("b", "1;2"), ("c", "2")]).is_none());
        assert!(run(drop, &[("a", "1"), ("b", "1"), ("c", "2")]).is_some());
    }

    #[test]
    fn hashmod_uses_the_last_eight_bytes_of_md5() {
        // Expected values from:
        // python3 -c "import hashlib;print(int.from_bytes(hashlib.md5(b'10.0.0.1:8080').digest()[8:],'big')%4)"  -> 0
        // python3 -c "import hashlib;print(int.from_bytes(hashlib.md5(b'foo').digest()[8:],'big')%1000)"  -> 696
        // python3 -c "import hashlib;print(int.from_bytes(hashlib.md5(b'').digest()[8:],'big')%7)"  -> 1
        // python3 -c "import hashlib;print(int.from_bytes(hashlib.md5(b'a;b').digest()[8:],'big')%3)"  -> 2
        // python3 -c "import hashlib;print(int.from_bytes(hashlib.md5(b'a;b').digest()[8:],'big')%(2**64-1))"  -> 2420134994223480074
        // python3 -c "import hashlib;print(int.from_bytes(hashlib.md5('ünïcode'.encode()).digest()[8:],'big')%10)"  -> 4
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, u64, &'a str);
        let cases: &[Case] = &[
            (&[("a", "10.0.0.1:8080")], "[a]", 4, "0"),
            (&[("a", "foo")], "[a]", 1000, "696"),
            (&[("x", "1")], "[a]", 7, "1"),
            (&[("x", "1")], "[]", 7, "1"),
            (&[("a", "a"), ("b", "b")], "[a, b]", 3, "2"),
            (
                &[("a", "a"), ("b", "b")],
                "[a, b]",
                u64::MAX,
                "2420134994223480074",
            ),
            (&[("a", "ünïcode")], "[a]", 10, "4"),
        ];
        for (input, sources, modulus, expected) in cases {
            let rule = format!(
                "- source_labels: {sources}\n  modulus: {modulus}\n  target_label: shard\n  \
                 action: hashmod"
            );
            let output = run(&rule, input).unwrap();
            assert_eq!(get(&output, "shard"), *expected, "{rule}");
        }
    }

    #[test]
    fn labelmap_copies_matching_names() {
        let rule = "- regex: __meta_kubernetes_pod_label_(.+)\n  action: labelmap";
        assert_eq!(
            run(
                rule,
                &[
                    ("__meta_kubernetes_pod_label_app", "web"),
                    ("__meta_kubernetes_pod_label_tier", "front"),
                    ("app", "old"),
                    ("job", "k8s"),
                ]
            ),
            Some(labels(&[
                ("__meta_kubernetes_pod_label_app", "web"),
                ("__meta_kubernetes_pod_label_tier", "front"),
                ("app", "web"),
                ("job", "k8s"),
                ("tier", "front"),
            ]))
        );
        // Two names onto one: the later (in name order) wins.
        let rule = "- regex: '[ab]_(.+)'\n  action: labelmap";
        assert_eq!(
            run(rule, &[("a_x", "1"), ("b_x", "2"), ("x", "0")]),
            Some(labels(&[("a_x", "1"), ("b_x", "2"), ("x", "2")]))
        );
        // Also when the first copy would be a no-op on its own.
        assert_eq!(
            run(rule, &[("a_x", "1"), ("b_x", "2"), ("x", "1")]),
            Some(labels(&[("a_x", "1"), ("b_x", "2"), ("x", "2")]))
        );
        // The rule reads the labels as they were before it: no copy of a copy.
        let rule = "- regex: (.+)\n  replacement: copy_$1\n  action: labelmap";
        assert_eq!(
            run(rule, &[("a", "1")]),
            Some(labels(&[("a", "1"), ("copy_a", "1")]))
        );
        // A literal replacement needs no captures.
        let rule = "- regex: foo|bar\n  replacement: baz\n  action: labelmap";
        assert_eq!(
            run(rule, &[("bar", "1"), ("foo", "2")]),
            Some(labels(&[("bar", "1"), ("baz", "2"), ("foo", "2")]))
        );
        // A copy onto itself changes nothing.
        let rule = "- regex: (.+)\n  action: labelmap";
        assert_eq!(run(rule, &[("a", "1")]), Some(labels(&[("a", "1")])));
    }

    #[test]
    fn labeldrop_and_labelkeep_filter_names() {
        let input = [
            ("__name__", "up"),
            ("instance", "a"),
            ("pod_template_hash", "x"),
        ];
        let drop = "- regex: pod_template_hash|controller_revision_hash\n  action: labeldrop";
        assert_eq!(
            run(drop, &input),
            Some(labels(&[("__name__", "up"), ("instance", "a")]))
        );
        let keep = "- regex: __name__|instance\n  action: labelkeep";
        assert_eq!(
            run(keep, &input),
            Some(labels(&[("__name__", "up"), ("instance", "a")]))
        );
        // The whole name must match.
        let drop = "- regex: inst\n  action: labeldrop";
        assert_eq!(run(drop, &input), Some(labels(&input)));
    }

    #[test]
    fn lowercase_and_uppercase_map_per_character_as_go() {
        let lower = "- source_labels: [a]\n  target_label: b\n  action: lowercase";
        let upper = "- source_labels: [a]\n  target_label: b\n  action: uppercase";
        let out = |yaml: &str, value: &str| -> String {
            let output = run(yaml, &[("a", value)]).unwrap();
            get(&output, "b").to_owned()
        };
        assert_eq!(out(lower, "Foo-BAR_1"), "foo-bar_1");
        assert_eq!(out(upper, "Foo-bar_1"), "FOO-BAR_1");
        // Go maps one character to one: no dot above, no final sigma, no `SS`.
        assert_eq!(out(lower, "İSTANBUL"), "istanbul");
        assert_eq!(out(lower, "ΟΔΟΣ"), "οδοσ");
        assert_eq!(out(upper, "straße"), "STRAßE");
        assert_eq!(out(upper, "ﬁx"), "ﬁX");
        assert_eq!(out(upper, "ᾳᾀ"), "ᾼᾈ");
        assert_eq!(out(upper, "ǆé"), "ǄÉ");
        // An empty source deletes the target.
        assert_eq!(
            run(lower, &[("b", "x"), ("c", "1")]),
            Some(labels(&[("c", "1")]))
        );
    }

    #[test]
    fn rules_apply_in_order_and_see_earlier_changes() {
        let rules = "
- source_labels: [__address__]
  regex: '([^:]+):\\d+'
  target_label: host
- source_labels: [host]
  target_label: instance
  replacement: $1:9100
- source_labels: [instance]
  regex: 'db-.*'
  action: drop
- regex: host
  action: labeldrop
";
        assert_eq!(
            run(rules, &[("__address__", "web-1:80")]),
            Some(labels(&[
                ("__address__", "web-1:80"),
                ("instance", "web-1:9100")
            ]))
        );
        assert_eq!(run(rules, &[("__address__", "db-1:80")]), None);
    }

    #[test]
    fn empty_values_are_absent_and_input_is_normalised() {
        // An empty value is no label: not copied, not kept, not in the output.
        let rule = "- regex: m_(.+)\n  action: labelmap";
        assert_eq!(
            run(rule, &[("m_a", ""), ("a", "1"), ("b", "")]),
            Some(labels(&[("a", "1")]))
        );
        let keep = "- source_labels: [a]\n  regex: ''\n  action: keep";
        assert!(run(keep, &[("a", "")]).is_some());
        // Unsorted, duplicated input is sorted, the first of a name kept.
        let mut input: Labels = vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("b".into(), "3".into()),
        ];
        assert!(process(&mut input, &[]));
        assert_eq!(input, labels(&[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn unchanged_values_keep_their_allocation() {
        let rules = rules(
            "- target_label: job\n  replacement: node\n- source_labels: [job]\n  regex: \
             (no)(de)\n  target_label: job\n  replacement: $1$2\n- target_label: job\n  \
             replacement: x",
        );
        let mut input = labels(&[("instance", "a"), ("job", "node")]);
        let vec_ptr = input.as_ptr();
        let value_ptr = input[1].1.as_ptr();
        assert!(process(&mut input, &rules[..2]));
        assert_eq!(input.as_ptr(), vec_ptr);
        assert_eq!(input[1].1.as_ptr(), value_ptr);
        // A shorter value reuses the old one's buffer.
        assert!(process(&mut input, &rules[2..]));
        assert_eq!(input[1].1, "x");
        assert_eq!(input[1].1.as_ptr(), value_ptr);
    }

    #[test]
    fn scratch_is_reused_across_rule_lists() {
        let first =
            rules("- source_labels: [a]\n  regex: (.)(.)\n  target_label: b\n  replacement: $2$1");
        let second = rules(
            "- source_labels: [a]\n  regex: (?P<x>.)(.)(.)\n  target_label: c\n  replacement: \
             $3$x\n- regex: a\n  action: labeldrop",
        );
        let mut scratch = Scratch::new();
        for _ in 0..2 {
            let mut input = labels(&[("a", "xy")]);
            assert!(process_with(&mut input, &first, &mut scratch));
            assert_eq!(input, labels(&[("a", "xy"), ("b", "yx")]));
            let mut input = labels(&[("a", "xyz")]);
            assert!(process_with(&mut input, &second, &mut scratch));
            assert_eq!(input, labels(&[("c", "zx")]));
        }
        // A clone shares the regex, so its slots are reused.
        let cloned = first.clone();
        let mut input = labels(&[("a", "pq")]);
        assert!(process_with(&mut input, &cloned, &mut scratch));
        assert_eq!(get(&input, "b"), "qp");
    }

    #[test]
    fn name_templates_are_checked_like_prometheus() {
        for ok in [
            "a",
            "_",
            "$1",
            "${1}",
            "a$1b",
            "${name}_x",
            "$1$2",
            "x_${1}9",
        ] {
            assert!(is_valid_name_template(ok), "{ok}");
        }
        for bad in [
            "", "1a", "a-b", "$", "a$", "${", "${}", "${a", "$-", "${a-b}", "a b",
        ] {
            assert!(!is_valid_name_template(bad), "{bad}");
        }
        assert!(is_valid_label_name("__name__") && is_valid_label_name("a1"));
        assert!(!is_valid_label_name("") && !is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a.b") && !is_valid_label_name("é"));
    }

    #[test]
    fn labelmap_names_are_not_validated_as_in_prometheus() {
        // Prometheus sets what the template gives; a name starting with a digit is then the
        // caller's to reject (Prometheus fails such a scrape).
        let rule = "- regex: __meta_kubernetes_pod_label_(.+)\n  action: labelmap";
        assert_eq!(
            run(rule, &[("__meta_kubernetes_pod_label_2fa", "on")]),
            Some(labels(&[
                ("2fa", "on"),
                ("__meta_kubernetes_pod_label_2fa", "on")
            ]))
        );
    }

    #[test]
    fn rules_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<Rule>();
        shareable::<Vec<Rule>>();
        fn sendable<T: Send>() {}
        sendable::<Scratch>();
    }

    #[test]
    fn hostile_input_does_not_panic() {
        // Odd patterns either compile or are refused; none panics.
        for pattern in [
            "\\",
            "[",
            "[^",
            "[]",
            "[\\",
            "(?",
            "(?P<",
            "\\x{",
            "\\p{",
            "\\Q",
            "{",
            "{1",
            "{1,",
            "a{1,}}",
            "[[:",
            "[[:alpha:",
            "[a-\\d]",
            "\\8",
            "\\07",
            "é{2}",
            "[é-ë]",
            "\\é",
        ] {
            let _ = compile_regex(pattern);
        }
        let rules =
            rules("- source_labels: [a]\n  regex: (.)(.*)\n  target_label: $2\n  replacement: $1");
        let mut input = labels(&[("a", "éé"), ("b", "😀")]);
        assert!(process(&mut input, &rules));
    }
}
