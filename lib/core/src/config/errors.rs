//! Config problems, and the helpers every section uses to report them: each with its path in
//! the file and, for a misspelled name or key, the nearest valid one.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the file, e.g. `service.pipelines.traces.exporters[1]`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub source_name: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} error{} in config",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

pub fn err(errors: &mut Vec<ConfigError>, path: impl Into<String>, message: impl Into<String>) {
    errors.push(ConfigError {
        path: path.into(),
        message: message.into(),
    });
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

pub(crate) fn suggestion(word: &str, candidates: &[&str]) -> String {
    match nearest(word, candidates.iter().copied()) {
        Some(n) => format!("; did you mean `{n}`?"),
        None if candidates.is_empty() => String::new(),
        None => format!(
            "; expected one of {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Deserializes one block, turning serde's error into a path and, for unknown keys and
/// variants, the nearest valid name.
pub(crate) fn typed<T: DeserializeOwned>(
    value: Value,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let value = if value.is_null() {
        Value::Mapping(Default::default())
    } else {
        value
    };
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = match (path.is_empty(), inner.as_str()) {
                (_, ".") => path.to_string(),
                (true, _) => inner,
                (false, _) => format!("{path}.{inner}"),
            };
            err(
                errors,
                full,
                explain_serde_error(&e.into_inner().to_string()),
            );
            None
        }
    }
}

/// serde says "unknown field `endpont`, expected one of `endpoint`, `protocol`"; we say which
/// one was probably meant.
fn explain_serde_error(message: &str) -> String {
    let unknown = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.strip_prefix(p));
    let Some(rest) = unknown else {
        return message.to_string();
    };
    let Some((word, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let candidates: Vec<&str> = expected
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    let what = if message.starts_with("unknown field") {
        "unknown key"
    } else {
        "unknown value"
    };
    format!("{what} `{word}`{}", suggestion(word, &candidates))
}

pub(crate) fn kind_of(name: &str) -> &str {
    name.split_once('/').map_or(name, |(k, _)| k)
}

pub(crate) fn mapping_entries(
    value: Option<Value>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, Value)> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Mapping(m)) => m
            .into_iter()
            .filter_map(|(k, v)| match k {
                Value::String(s) => Some((s, v)),
                other => {
                    err(
                        errors,
                        path,
                        format!("component names must be strings, found {other:?}"),
                    );
                    None
                }
            })
            .collect(),
        Some(_) => {
            err(
                errors,
                path,
                "expected a mapping of component names to settings",
            );
            Vec::new()
        }
    }
}

pub(crate) fn check_refs(
    used: &[String],
    defined: &[&str],
    what: &str,
    path: &str,
    errors: &mut Vec<ConfigError>,
) {
    if used.is_empty() {
        err(
            errors,
            path,
            format!("a pipeline needs at least one {what}"),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, name) in used.iter().enumerate() {
        if !defined.contains(&name.as_str()) {
            let hint = match nearest(name, defined.iter().copied()) {
                Some(n) => format!("; did you mean `{n}`?"),
                None if defined.is_empty() => format!("; no {what}s are defined"),
                None => format!("; defined {what}s: {}", defined.join(", ")),
            };
            err(
                errors,
                format!("{path}[{i}]"),
                format!("unknown {what} `{name}`{hint}"),
            );
        } else if !seen.insert(name) {
            err(
                errors,
                format!("{path}[{i}]"),
                format!("{what} `{name}` is listed twice"),
            );
        }
    }
}
