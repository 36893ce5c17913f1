//! Which language a plugin component was written in, from its custom sections, for the limits
//! a plugin gets when its config sets none: Python and JavaScript plugins carry an interpreter
//! and take longer per batch than the same plugin in Rust (`docs/plugins.md`, "Choosing a
//! language", has the figures).
//!
//! The Python and JavaScript SDKs' builds append a custom section [`SDK_SECTION`] naming the
//! language; components built otherwise are recognised by the `producers` section that
//! componentize-js writes (`language: JavaScript`).

use std::time::Duration;

/// The custom section the SDK builds add: `python` or `js`, then a space and the SDK version.
pub const SDK_SECTION: &str = "sluice:sdk";

/// The languages a plugin may come from, as far as its limits go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Rust, C, Go... anything compiled ahead of time, and anything not recognised.
    Compiled,
    Python,
    JavaScript,
}

impl Language {
    /// The per-call deadline when the config sets none. Measured with the example plugins
    /// (examples/plugins): a 1000-span batch took Python up to 150 ms, so Python and
    /// JavaScript plugins get ten times the compiled default.
    pub fn default_timeout(self) -> Duration {
        let compiled = Duration::from_millis(crate::config::DEFAULT_TIMEOUT_MS);
        match self {
            Language::Compiled => compiled,
            Language::Python | Language::JavaScript => compiled * 10,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Language::Compiled => "compiled",
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
        }
    }
}

fn leb_u32(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= u32::from(b & 0x7f).checked_shl(shift)?;
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

fn name<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let len = leb_u32(bytes, at)? as usize;
    let s = bytes.get(*at..at.checked_add(len)?)?;
    *at += len;
    Some(s)
}

/// Whether a `producers` section payload names JavaScript as the language.
fn producers_say_javascript(payload: &[u8]) -> bool {
    let mut at = 0;
    let Some(fields) = leb_u32(payload, &mut at) else {
        return false;
    };
    for _ in 0..fields {
        let Some(field) = name(payload, &mut at) else {
            return false;
        };
        let Some(values) = leb_u32(payload, &mut at) else {
            return false;
        };
        for _ in 0..values {
            let (Some(value), Some(_version)) = (name(payload, &mut at), name(payload, &mut at))
            else {
                return false;
            };
            if field == b"language" && value == b"JavaScript" {
                return true;
            }
        }
    }
    false
}

/// The language of a component, from its top-level custom sections (the walk reads section
/// headers only; a malformed file is [`Language::Compiled`], and compiling it reports why).
pub fn of_component(bytes: &[u8]) -> Language {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Language::Compiled;
    }
    let mut at = 8;
    let mut found = Language::Compiled;
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let Some(size) = leb_u32(bytes, &mut at) else {
            break;
        };
        let Some(end) = at.checked_add(size as usize).filter(|e| *e <= bytes.len()) else {
            break;
        };
        if id == 0 {
            let mut inner = at;
            if let Some(section) = name(&bytes[..end], &mut inner) {
                let payload = &bytes[inner..end];
                if section == SDK_SECTION.as_bytes() {
                    if payload.starts_with(b"python") {
                        return Language::Python;
                    }
                    if payload.starts_with(b"js") {
                        return Language::JavaScript;
                    }
                } else if section == b"producers" && producers_say_javascript(payload) {
                    found = Language::JavaScript;
                }
            }
        }
        at = end;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![id];
        let mut n = payload.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n > 0 { b | 0x80 } else { b });
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn custom(name: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(payload);
        section(0, &body)
    }

    /// A component header (version 0xd, layer 1) and the given sections.
    fn component(sections: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"\0asm\x0d\x00\x01\x00".to_vec();
        for s in sections {
            out.extend_from_slice(s);
        }
        out
    }

    #[test]
    fn the_sdk_section_names_the_language() {
        let other = section(1, &[0; 300]);
        let py = component(&[other.clone(), custom(SDK_SECTION, b"python 0.1.0")]);
        assert_eq!(of_component(&py), Language::Python);
        let js = component(&[custom(SDK_SECTION, b"js 0.1.0"), other]);
        assert_eq!(of_component(&js), Language::JavaScript);
        assert_eq!(
            Language::Python.default_timeout(),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn componentize_js_producers_say_javascript() {
        // producers: 1 field "language" with one value ("JavaScript", "").
        let mut payload = vec![1, 8];
        payload.extend_from_slice(b"language");
        payload.extend_from_slice(&[1, 10]);
        payload.extend_from_slice(b"JavaScript");
        payload.push(0);
        assert_eq!(
            of_component(&component(&[custom("producers", &payload)])),
            Language::JavaScript
        );
        payload[11] = b'X';
        assert_eq!(
            of_component(&component(&[custom("producers", &payload)])),
            Language::Compiled
        );
    }

    #[test]
    fn anything_else_is_compiled_and_malformed_files_do_not_panic() {
        assert_eq!(of_component(b""), Language::Compiled);
        assert_eq!(of_component(b"not wasm at all"), Language::Compiled);
        let mut cut = component(&[custom(SDK_SECTION, b"python")]);
        cut.truncate(cut.len() - 3);
        assert_eq!(of_component(&cut), Language::Compiled);
        // A size that runs past the end, and an endless LEB128.
        assert_eq!(
            of_component(b"\0asm\x0d\x00\x01\x00\x00\xff\xff\xff\x0f"),
            Language::Compiled
        );
        assert_eq!(
            of_component(b"\0asm\x0d\x00\x01\x00\x00\xff\xff\xff\xff\xff\xff"),
            Language::Compiled
        );
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let mut framed = b"\0asm\x0d\x00\x01\x00".to_vec();
            framed.extend(bytes);
            let _ = of_component(&framed);
        }
    }
}
