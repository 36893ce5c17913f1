//! OTLP protobuf requests: the allocation-free scan must never accept what the decoder
//! rejects, must count records as the decoder does, and decoding, validating, limiting and
//! re-encoding must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::model::scan::{AttrLimits, Scan, scan};
use sluice_core::model::{Payload, Signal};

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let signal = Signal::ALL[first as usize % 3];
    let verdict = scan(signal, body);
    match Payload::decode_protobuf(signal, body) {
        Ok(mut payload) => {
            let records = payload.record_count();
            let rejected = payload.remove_invalid();
            if let Scan::Valid(n) = verdict {
                assert_eq!(n, records, "the scan counted differently from the decoder");
                assert_eq!(rejected.count, 0, "the scan accepted records the decoder removes");
            }
            payload.enforce_limits(&AttrLimits {
                max_attributes: 2,
                max_value_len: 7,
            });
            let bytes = payload.encode_protobuf();
            Payload::decode_protobuf(signal, &bytes).expect("a re-encoded payload decodes");
        }
        Err(_) => assert!(
            !matches!(verdict, Scan::Valid(_)),
            "the scan accepted a request the decoder rejects"
        ),
    }
});
