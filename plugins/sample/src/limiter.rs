//! `rate_limit`: a token bucket per signal and key value, on the host's clock.

use std::collections::HashMap;

use crate::config::RateLimit;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was last brought up to date (unix nanoseconds).
    updated: u64,
}

impl Bucket {
    fn full(burst: f64, now: u64) -> Bucket {
        Bucket {
            tokens: burst,
            updated: now,
        }
    }

    /// The tokens at `now` (a clock that went back adds nothing).
    fn tokens_at(&self, now: u64, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_sub(self.updated) as f64 / 1e9;
        (self.tokens + elapsed * rate).min(burst)
    }

    fn take(&mut self, now: u64, rate: f64, burst: f64) -> bool {
        self.tokens = self.tokens_at(now, rate, burst);
        self.updated = self.updated.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
pub struct Limiter {
    key: String,
    rate: f64,
    burst: f64,
    max_keys: usize,
    /// Per signal (traces, metrics, logs): the bucket of each key value.
    buckets: [HashMap<String, Bucket>; 3],
    /// Per signal: the bucket shared by the key values beyond `max_keys`.
    overflow: [Option<Bucket>; 3],
}

impl Limiter {
    pub fn new(config: &RateLimit) -> Limiter {
        Limiter {
            key: config.key.clone(),
            rate: config.per_second,
            burst: config.burst.unwrap_or(config.per_second.max(1.0)),
            max_keys: config.max_keys,
            buckets: Default::default(),
            overflow: [None; 3],
        }
    }

    /// The attribute whose value picks the bucket.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Takes a token from the bucket of `key` for `signal`; false when it is empty.
    pub fn admit(&mut self, signal: usize, key: &str, now: u64) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        if let Some(bucket) = self.buckets[signal].get_mut(key) {
            return bucket.take(now, rate, burst);
        }
        let keys: usize = self.buckets.iter().map(HashMap::len).sum();
        let bucket = if keys < self.max_keys {
            self.buckets[signal]
                .entry(key.to_string())
                .or_insert_with(|| Bucket::full(burst, now))
        } else {
            self.overflow[signal].get_or_insert_with(|| Bucket::full(burst, now))
        };
        bucket.take(now, rate, burst)
    }

    /// Forgets the buckets that have refilled by `now`: a full bucket behaves like a new one,
    /// so this frees room for new keys without changing any decision.
    pub fn forget_full(&mut self, now: u64) {
        let (rate, burst) = (self.rate, self.burst);
        for map in &mut self.buckets {
            map.retain(|_, b| b.tokens_at(now, rate, burst) < burst);
        }
        for slot in &mut self.overflow {
            if slot.is_some_and(|b| b.tokens_at(now, rate, burst) >= burst) {
                *slot = None;
            }
        }
    }

    #[cfg(test)]
    pub fn keys(&self) -> usize {
        self.buckets.iter().map(HashMap::len).sum()
    }
}
