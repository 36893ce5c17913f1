//! Consistent probability sampling: the decision is a pure function of the trace id (and of the
//! seed), so every span of a trace, every batch and every gateway replica decide alike.
//!
//! As in OpenTelemetry's consistent probability sampling, a trace's randomness `R` is the 56
//! least significant bits of its trace id (the last 7 bytes, big-endian; W3C Trace Context
//! level 2 makes these random), and a trace is kept when `R >= T` with the rejection threshold
//! `T = (1 - percent / 100) * 2^56`. With a non-zero `hash_seed`, `R` is instead 56 bits of a
//! hash of the seed and the whole trace id, for trace ids whose low bytes are not random.

use sluice_sdk::otlp::logs::v1::LogRecord;
use sluice_sdk::prost::Message;

/// 2^56: the range of the randomness.
const RANGE: u64 = 1 << 56;

/// The rejection threshold for keeping `percent` of traces: 0 keeps everything, `2^56`
/// nothing.
pub fn threshold(percent: f64) -> u64 {
    let keep = (percent / 100.0).clamp(0.0, 1.0);
    // 2^56 and the product are exact enough in an f64 (53-bit mantissa): the error is below
    // one part in 2^50 of the probability.
    let t = ((1.0 - keep) * RANGE as f64).round();
    (t as u64).min(RANGE)
}

/// A trace's randomness, or `None` for an invalid (not 16 bytes, or all zero) trace id.
pub fn trace_randomness(trace_id: &[u8], seed: u64) -> Option<u64> {
    let id: &[u8; 16] = trace_id.try_into().ok()?;
    if id.iter().all(|&b| b == 0) {
        return None;
    }
    if seed == 0 {
        let mut low = [0u8; 8];
        low[1..].copy_from_slice(&id[9..]);
        Some(u64::from_be_bytes(low))
    } else {
        Some(hash(seed, id) & (RANGE - 1))
    }
}

/// A log's randomness: its trace's when it has a valid trace id, so it follows the trace's
/// decision; otherwise a hash of the whole record (timestamps, severity, body, attributes), so
/// that the same record gets the same decision on every replica and repeated messages with
/// different timestamps are spread over both decisions.
pub fn log_randomness(log: &LogRecord, seed: u64) -> Option<u64> {
    trace_randomness(&log.trace_id, seed)
        .or_else(|| Some(hash(seed, &log.encode_to_vec()) & (RANGE - 1)))
}

/// FNV-1a over the seed and the bytes, finished with MurmurHash3's 64-bit mixer so that every
/// input bit reaches every output bit. Fixed by this code, so stable across replicas, versions
/// and platforms.
pub fn hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in seed.to_le_bytes().iter().chain(bytes) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
