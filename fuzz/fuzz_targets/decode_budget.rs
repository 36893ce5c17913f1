//! Memory per input byte: decoding OTLP protobuf allocates at most twice what
//! `pipeline::cost` estimated before (and so, for what a receiver admits, at most twice
//! `Cost::budget`: `EXPANSION` bytes per byte received, with a floor). The estimate charges each
//! repeated element twice its size; a `Vec` of one element holds four and a growing one
//! briefly holds its old and new buffers, hence the factor. What the walk finds broken is
//! refused undecoded by the receivers; the decoder must refuse it too (the walk never refuses
//! what the decoder accepts).
//!
//! Covers OTLP protobuf (the three signals) and remote-write (decode and the translation to
//! OTLP, under the budget the receiver gives it). The allocator counts the live bytes and
//! their peak.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sluice_core::model::cost::{self, Cost};
use sluice_core::model::{Payload, Signal};
use sluice_core::prompb::to_otlp_within;
use sluice_core::prompb::WriteRequest;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as if the old and new buffers were both live for a moment.
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What decoding allocates besides the decoded form: an error's message and context.
const SLACK: u64 = 64 * 1024;

/// Runs `f` and returns the most bytes it had allocated at once.
fn peak_of(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let budget = Cost::budget(body.len());
    if first % 4 == 3 {
        let walked = match cost::remote_write(body) {
            Ok(walked) => walked,
            // Refused undecoded by the receiver; the decoder must refuse it too.
            Err((broken, _)) => {
                assert!(
                    WriteRequest::decode(body).is_err(),
                    "the walk refused ({}) a WriteRequest the decoder accepts",
                    broken.0
                );
                return;
            }
        };
        if walked.bytes > budget {
            return;
        }
        let peak = peak_of(|| {
            if let Ok(write) = WriteRequest::decode(body) {
                let _ = to_otlp_within(&write, budget.saturating_sub(walked.bytes));
            }
        });
        assert!(
            peak as u64 <= 2 * budget + SLACK,
            "remote-write of {} bytes (estimate {}) allocated {peak} bytes",
            body.len(),
            walked.bytes
        );
        return;
    }
    let signal = Signal::ALL[first as usize % 3];
    let walked = match cost::protobuf(signal, body) {
        Ok(walked) => walked,
        // Refused undecoded by the receivers; the decoder must refuse it too.
        Err((broken, _)) => {
            assert!(
                Payload::decode_protobuf(signal, body).is_err(),
                "the walk refused ({}) a {signal} request the decoder accepts",
                broken.0
            );
            return;
        }
    };
    if walked.bytes > budget {
        return;
    }
    let peak = peak_of(|| drop(Payload::decode_protobuf(signal, body)));
    assert!(
        peak as u64 <= 2 * walked.bytes + SLACK,
        "{signal} protobuf of {} bytes (estimate {}) allocated {peak} bytes",
        body.len(),
        walked.bytes
    );
});
