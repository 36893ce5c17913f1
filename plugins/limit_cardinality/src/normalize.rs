//! Path normalization: ids in URL paths become placeholders.

use regex::Regex;
use sluice_sdk::Error;

use crate::config;

/// A compiled `normalize:` block.
#[derive(Debug)]
pub struct Normalizer {
    keys: Vec<String>,
    numbers: bool,
    uuids: bool,
    hex_ids: bool,
    min_hex_length: usize,
    /// Anchored to the whole segment, with its placeholder.
    patterns: Vec<(Regex, String)>,
    strip_query: bool,
}

impl Normalizer {
    /// `None` when no key is configured (normalization is off).
    pub fn new(c: &config::Normalize) -> Result<Option<Normalizer>, Error> {
        if c.keys.is_empty() {
            return Ok(None);
        }
        let mut patterns = Vec::with_capacity(c.patterns.len());
        for (i, p) in c.patterns.iter().enumerate() {
            let regex = Regex::new(&format!("^(?:{})$", p.regex)).map_err(|e| {
                Error::Config(format!(
                    "normalize.patterns[{i}].regex: invalid regex {:?}: {e}",
                    p.regex
                ))
            })?;
            patterns.push((regex, p.placeholder.clone()));
        }
        Ok(Some(Normalizer {
            keys: c.keys.clone(),
            numbers: c.numbers,
            uuids: c.uuids,
            hex_ids: c.hex_ids,
            min_hex_length: c.min_hex_length,
            patterns,
            strip_query: c.strip_query,
        }))
    }

    /// Whether values of the attribute `key` are normalized.
    pub fn applies_to(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    /// The placeholder for one path segment, if it is an id.
    fn placeholder(&self, segment: &str) -> Option<&str> {
        if segment.is_empty() {
            return None;
        }
        for (regex, placeholder) in &self.patterns {
            if regex.is_match(segment) {
                return Some(placeholder);
            }
        }
        if self.numbers && segment.bytes().all(|b| b.is_ascii_digit()) {
            return Some("{id}");
        }
        if self.uuids && is_uuid(segment) {
            return Some("{uuid}");
        }
        if self.hex_ids
            && segment.len() >= self.min_hex_length
            && segment.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Some("{hex}");
        }
        None
    }

    /// The normalized form of a path (or of a URL: its scheme and authority are kept), or
    /// `None` when nothing changes.
    pub fn normalize(&self, value: &str) -> Option<String> {
        let (prefix, rest) = split_origin(value)?;
        let (path, query) = match rest.find(['?', '#']) {
            Some(q) => rest.split_at(q),
            None => (rest, ""),
        };
        let mut out = String::with_capacity(value.len());
        out.push_str(prefix);
        let mut changed = false;
        for (i, segment) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            match self.placeholder(segment) {
                Some(p) => {
                    changed |= p != segment;
                    out.push_str(p);
                }
                None => out.push_str(segment),
            }
        }
        if !query.is_empty() {
            if self.strip_query {
                changed = true;
            } else {
                out.push_str(query);
            }
        }
        changed.then_some(out)
    }
}

/// Splits `scheme://authority` off a URL; a value without a scheme is all path. `None` for a
/// URL without a path (nothing to normalize).
fn split_origin(value: &str) -> Option<(&str, &str)> {
    let Some(i) = value.find("://") else {
        return Some(("", value));
    };
    let scheme = &value[..i];
    let is_scheme = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !is_scheme {
        return Some(("", value));
    }
    let after = i + 3;
    let path_start = value[after..].find(['/', '?', '#'])?;
    Some(value.split_at(after + path_start))
}

/// `8-4-4-4-12` hexadecimal digits, either case.
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}
