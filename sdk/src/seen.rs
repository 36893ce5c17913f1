//! Spans seen recently, for plugins that must count a span once even when it passes them twice
//! (the same batch in two pipelines that share the processor, or a client retrying).

use std::collections::HashSet;

/// The last `window / 2` to `window` spans seen, by trace and span id, in two generations of
/// `window / 2` (the older one is forgotten when the newer one is full), so memory stays
/// bounded whatever arrives.
///
/// ```
/// let mut seen = sluice_sdk::seen::SeenSpans::new(1000);
/// assert!(seen.first_time(&[1; 16], &[2; 8]));
/// assert!(!seen.first_time(&[1; 16], &[2; 8]));
/// assert!(seen.first_time(&[], &[]), "spans without an id cannot be told apart");
/// ```
#[derive(Debug, Default, Clone)]
pub struct SeenSpans {
    current: HashSet<u64>,
    previous: HashSet<u64>,
    window: usize,
}

impl SeenSpans {
    /// Remembers up to `window` spans; 0 remembers none (every span is new).
    pub fn new(window: usize) -> SeenSpans {
        SeenSpans {
            window,
            ..SeenSpans::default()
        }
    }

    /// Spans remembered now.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is the first time the span is seen (then it is remembered). Spans without
    /// a span id (empty or all zero) are always new.
    pub fn first_time(&mut self, trace_id: &[u8], span_id: &[u8]) -> bool {
        if self.window == 0 || span_id.iter().all(|b| *b == 0) {
            return true;
        }
        // The ids are random; a 64-bit digest of both tells spans apart well enough.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for chunk in trace_id.chunks(8).chain(span_id.chunks(8)) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 32;
        }
        if self.previous.contains(&h) || self.current.contains(&h) {
            return false;
        }
        if self.current.len() >= self.window.div_ceil(2) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(h);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_bounded_window() {
        let mut seen = SeenSpans::new(10);
        for i in 1u8..=100 {
            assert!(seen.first_time(&[i; 16], &[i; 8]));
            assert!(!seen.first_time(&[i; 16], &[i; 8]));
            assert!(seen.len() <= 10);
        }
        // The latest five at least are remembered, the oldest are forgotten.
        for i in 96u8..=100 {
            assert!(!seen.first_time(&[i; 16], &[i; 8]), "{i}");
        }
        assert!(seen.first_time(&[1; 16], &[1; 8]));
        assert!(seen.first_time(&[0; 16], &[0; 8]) && seen.first_time(&[0; 16], &[0; 8]));
        for i in 99u8..=100 {
            assert!(!seen.first_time(&[i; 16], &[i; 8]), "{i}");
        }
        let mut off = SeenSpans::new(0);
        assert!(off.first_time(&[1; 16], &[1; 8]) && off.first_time(&[1; 16], &[1; 8]));
    }
}
