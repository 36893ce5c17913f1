//! Small caches keyed by bytes: values known to have nothing to redact, so that values
//! repeated across records (user agents, host names, routes, versions) are checked once rather
//! than once per record; whole attributes (as encoded) known to be clean; and attribute keys
//! with their class.
//!
//! Direct-mapped: each string has one slot, chosen by a hash seeded at random per instance,
//! and a new entry replaces whatever held the slot. A lookup is one hash and one comparison,
//! colliding strings only evict each other (no chains an attacker could lengthen), and memory
//! is bounded by the slot count times the longest string stored. A hit is compared byte for
//! byte, so a cached answer is always the answer for exactly that string under this
//! instance's (immutable) configuration.

use std::hash::BuildHasher;

const K: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug)]
pub struct Memo<V> {
    slots: Vec<Option<(Box<[u8]>, V)>>,
    /// Per slot, the hash of the last string offered to [`Memo::insert_if_seen`].
    seen: Vec<u64>,
    bits: u32,
    seed: u64,
    max_len: usize,
}

impl<V: Copy> Memo<V> {
    /// `slots` (rounded up to a power of two) entries, of strings up to `max_len` bytes.
    pub fn new(slots: usize, max_len: usize) -> Memo<V> {
        let slots = slots.next_power_of_two().max(2);
        Memo {
            slots: (0..slots).map(|_| None).collect(),
            seen: Vec::new(),
            bits: slots.trailing_zeros(),
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64),
            max_len,
        }
    }

    fn hash(&self, s: &[u8]) -> u64 {
        let mut h = self.seed ^ (s.len() as u64).wrapping_mul(K);
        let mut words = s.chunks_exact(8);
        for w in &mut words {
            h = (h ^ word(w)).wrapping_mul(K).rotate_left(31);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            h = (h ^ word(rest)).wrapping_mul(K).rotate_left(31);
        }
        (h ^ (h >> 29)).wrapping_mul(K)
    }

    fn slot_of(&self, h: u64) -> usize {
        (h >> (64 - self.bits)) as usize
    }

    /// Where `s` goes, hashed once for the lookup and the insert after it; `None` when it is
    /// longer than the limit (never stored).
    pub fn probe(&self, s: &[u8]) -> Option<Probe> {
        (s.len() <= self.max_len).then(|| Probe(self.hash(s)))
    }

    pub fn get(&self, p: Probe, s: &[u8]) -> Option<V> {
        match self.slots.get(self.slot_of(p.0))? {
            Some((k, v)) if same(k, s) => Some(*v),
            _ => None,
        }
    }

    /// Stores `s`, evicting the slot's entry.
    pub fn insert(&mut self, p: Probe, s: &[u8], v: V) {
        let i = self.slot_of(p.0);
        if let Some(e) = self.slots.get_mut(i) {
            *e = Some((s.into(), v));
        }
    }

    /// Stores `s` the second time in a row its slot is offered it: strings seen once (ids,
    /// paths with ids) cost a hash, not an allocation that evicts a string seen often.
    pub fn insert_if_seen(&mut self, p: Probe, s: &[u8], v: V) {
        if self.seen.is_empty() {
            self.seen = vec![0; self.slots.len()];
        }
        let i = self.slot_of(p.0);
        let Some(last) = self.seen.get_mut(i) else {
            return;
        };
        if *last != p.0 {
            *last = p.0;
            return;
        }
        self.insert(p, s, v);
    }
}

/// A string's hash under a [`Memo`]'s seed (see [`Memo::probe`]).
#[derive(Debug, Clone, Copy)]
pub struct Probe(u64);

/// Up to eight bytes as a little-endian number. A short tail is assembled byte by byte: a
/// copy of a variable length compiles to `memory.copy`, which the runtime serves as a call out
/// of the plugin's code, several times dearer than the few shifts.
#[inline]
fn word(b: &[u8]) -> u64 {
    if let Some(w) = b.first_chunk::<8>() {
        return u64::from_le_bytes(*w);
    }
    b.iter()
        .rev()
        .fold(0u64, |x, &byte| (x << 8) | u64::from(byte))
}

/// Byte equality eight bytes at a time (plugins' `memcmp` goes a byte at a time).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    for (p, q) in (&mut x).zip(&mut y) {
        if word(p) != word(q) {
            return false;
        }
    }
    word(x.remainder()) == word(y.remainder())
}

/// Clean values: strings shorter than this are cheaper to check than to look up.
pub const CLEAN_MIN_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    impl<V: Copy> Memo<V> {
        fn lookup(&self, s: &[u8]) -> Option<V> {
            self.probe(s).and_then(|p| self.get(p, s))
        }

        fn store(&mut self, s: &[u8], v: V) {
            if let Some(p) = self.probe(s) {
                self.insert(p, s, v);
            }
        }

        fn store_if_seen(&mut self, s: &[u8], v: V) {
            if let Some(p) = self.probe(s) {
                self.insert_if_seen(p, s, v);
            }
        }
    }

    #[test]
    fn remembers_exact_strings_only() {
        let mut c = Memo::new(1024, 512);
        let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36";
        assert_eq!(c.lookup(ua.as_bytes()), None);
        c.store(ua.as_bytes(), 7u8);
        assert_eq!(c.lookup(ua.as_bytes()), Some(7));
        assert_eq!(
            c.lookup(b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.37"),
            None
        );
        assert_eq!(c.lookup(&ua.as_bytes()[..ua.len() - 1]), None);
        assert_eq!(c.lookup(format!("{ua}\0").as_bytes()), None);
        c.store(b"", 1);
        assert_eq!(c.lookup(b""), Some(1));
        // Too long: never stored.
        let long = "x".repeat(513);
        c.store(long.as_bytes(), 1);
        assert_eq!(c.lookup(long.as_bytes()), None);
    }

    #[test]
    fn colliding_strings_evict_each_other() {
        let mut c = Memo::new(1000, 64);
        assert_eq!(c.slots.len(), 1024);
        let strings: Vec<String> = (0..4096).map(|i| format!("value number {i:08}")).collect();
        for (i, s) in strings.iter().enumerate() {
            c.store(s.as_bytes(), i);
        }
        // At most one string per slot survives, with its own value.
        let held = strings
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                c.lookup(s.as_bytes())
                    .inspect(|v| assert_eq!(v, i))
                    .is_some()
            })
            .count();
        assert!(held <= 1024 && held > 512, "{held}");
    }

    #[test]
    fn strings_seen_once_are_not_stored() {
        let mut c = Memo::new(1024, 512);
        c.store_if_seen(b"/api/v1/orders/123/items", ());
        assert_eq!(c.lookup(b"/api/v1/orders/123/items"), None);
        c.store_if_seen(b"/api/v1/orders/124/items", ());
        c.store_if_seen(b"/api/v1/orders/124/items", ());
        assert_eq!(c.lookup(b"/api/v1/orders/124/items"), Some(()));
        assert_eq!(c.lookup(b"/api/v1/orders/123/items"), None);
    }

    #[test]
    fn equality_by_words() {
        for (a, b, eq) in [
            ("", "", true),
            ("abcdefgh", "abcdefgh", true),
            ("abcdefghi", "abcdefghj", false),
            ("abcdefgh1", "abcdefgh", false),
            ("a\0", "a", false),
        ] {
            assert_eq!(same(a.as_bytes(), b.as_bytes()), eq, "{a:?} {b:?}");
        }
    }
}
