//! OTLP/JSON requests: decoding, validating and limiting never panic, and what decodes can be
//! written as protobuf and JSON again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::model::scan::AttrLimits;
use sluice_core::model::{Payload, Signal};

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let signal = Signal::ALL[first as usize % 3];
    if let Ok(mut payload) = Payload::decode_json(signal, body) {
        payload.remove_invalid();
        payload.enforce_limits(&AttrLimits {
            max_attributes: 2,
            max_value_len: 7,
        });
        let bytes = payload.encode_protobuf();
        Payload::decode_protobuf(signal, &bytes).expect("a re-encoded payload decodes");
        let _ = payload.to_json();
    }
});
