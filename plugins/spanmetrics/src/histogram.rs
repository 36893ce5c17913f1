//! Duration distributions: explicit buckets, or base-2 exponential buckets that rescale to stay
//! within `max_size` (the OpenTelemetry exponential histogram).

use serde::{Deserialize, Serialize};

/// The finest scale an exponential histogram starts at, and the coarsest it may reach.
const MAX_SCALE: i32 = 20;
const MIN_SCALE: i32 = -10;

/// Counts of one series' durations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Dist {
    /// Calls only.
    None,
    /// One count per explicit bucket (the bounds live in the config), plus the sum.
    Explicit {
        counts: Vec<u64>,
        sum: f64,
    },
    Exponential(Exponential),
}

impl Dist {
    pub fn record_explicit(counts: &mut [u64], bounds: &[f64], value: f64) -> usize {
        // Bucket i holds (bounds[i-1], bounds[i]]; the last one everything above.
        let i = bounds.partition_point(|b| *b < value);
        if let Some(c) = counts.get_mut(i) {
            *c = c.saturating_add(1);
        }
        i
    }

    /// Empties the counts (a delta series after a flush).
    pub fn reset(&mut self) {
        match self {
            Dist::None => {}
            Dist::Explicit { counts, sum } => {
                counts.iter_mut().for_each(|c| *c = 0);
                *sum = 0.0;
            }
            Dist::Exponential(e) => e.reset(),
        }
    }
}

/// A base-2 exponential histogram of non-negative values: bucket `i` at scale `s` holds
/// `(2^(i·2^-s), 2^((i+1)·2^-s)]`; zero goes to the zero bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exponential {
    pub scale: i32,
    pub offset: i32,
    pub counts: Vec<u64>,
    pub zero_count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Exponential {
    fn default() -> Self {
        Exponential {
            scale: MAX_SCALE,
            offset: 0,
            counts: Vec::new(),
            zero_count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
        }
    }
}

fn index(value: f64, scale: i32) -> i64 {
    // ceil(log2(v)·2^scale) − 1, the bucket whose upper bound is the first at or above v.
    let i = (value.log2() * 2f64.powi(scale)).ceil() - 1.0;
    i.clamp(i32::MIN as f64, i32::MAX as f64) as i64
}

impl Exponential {
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .fold(self.zero_count, |a, c| a.saturating_add(*c))
    }

    pub fn reset(&mut self) {
        *self = Exponential {
            // Keep the scale: the next interval's values are likely of the same range.
            scale: self.scale,
            ..Exponential::default()
        };
    }

    pub fn record(&mut self, value: f64, max_size: usize) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        if self.total() == 0 {
            (self.min, self.max) = (value, value);
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.sum += value;
        if value == 0.0 {
            self.zero_count = self.zero_count.saturating_add(1);
            return;
        }
        let mut i = index(value, self.scale);
        if self.counts.is_empty() {
            self.offset = i as i32;
            self.counts.push(1);
            return;
        }
        loop {
            let lo = i.min(i64::from(self.offset));
            let hi = i.max(i64::from(self.offset) + self.counts.len() as i64 - 1);
            if hi - lo < max_size as i64 || self.scale <= MIN_SCALE {
                break;
            }
            self.downscale();
            i = index(value, self.scale);
        }
        let offset = i64::from(self.offset);
        if i < offset {
            let grow = (offset - i) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = i as i32;
        } else if i >= offset + self.counts.len() as i64 {
            self.counts.resize((i - offset) as usize + 1, 0);
        }
        let at = (i - i64::from(self.offset)) as usize;
        self.counts[at] = self.counts[at].saturating_add(1);
    }

    /// Halves the resolution: buckets 2k and 2k+1 merge into k.
    fn downscale(&mut self) {
        let new_offset = self.offset >> 1;
        let mut counts: Vec<u64> = Vec::with_capacity(self.counts.len() / 2 + 1);
        for (k, c) in self.counts.iter().enumerate() {
            let j = ((self.offset + k as i32) >> 1) - new_offset;
            let j = j as usize;
            if j >= counts.len() {
                counts.resize(j + 1, 0);
            }
            counts[j] = counts[j].saturating_add(*c);
        }
        self.offset = new_offset;
        self.counts = counts;
        self.scale -= 1;
    }

    /// The bucket bounds `(lower, upper]` of bucket `i` (absolute index).
    #[cfg(test)]
    pub fn bounds(&self, i: i32) -> (f64, f64) {
        let base = 2f64.powf(2f64.powi(-self.scale));
        (base.powi(i), base.powi(i + 1))
    }
}
