//! Prometheus remote_write bodies: snappy decompression (with the announced-length check), the
//! `WriteRequest` decoder and the translation to OTLP (under the receivers' budget) never panic
//! nor allocate past the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sluice_core::model::cost::Cost;
use sluice_core::prompb::decode_snappy;
use sluice_core::prompb::to_otlp_within;
use sluice_core::prompb::WriteRequest;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // The body as sent (snappy), and the same bytes taken as an already decompressed request.
    if let Ok(decoded) = decode_snappy(data, LIMIT) {
        assert!(decoded.len() <= LIMIT);
        if let Ok(write) = WriteRequest::decode(decoded.as_slice()) {
            let _ = to_otlp_within(&write, Cost::budget(decoded.len()));
        }
    }
    if let Ok(write) = WriteRequest::decode(data) {
        let _ = to_otlp_within(&write, Cost::budget(data.len()));
    }
});
