//! The decode-cost estimate bounds what decoding really allocates, measured with a counting
//! allocator: for real traffic and for the hostile shapes (empty records, empty attributes,
//! single-element nesting, wide remote-write series), decoding allocates at most twice the
//! estimate, and what the receivers refuse is what would have cost more than their budget.
#![allow(
    unsafe_code,
    reason = "a counting global allocator measures the decoder"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicIsize, Ordering};

use prost::Message;
use sluice::model::cost::{self, Cost};
use sluice::model::{Payload, Signal};
use sluice::prompb::{Label, Sample, TimeSeries, WriteRequest};
use sluice::prompb::{Translate, to_otlp_within};

struct Counting;

/// Bytes allocated minus bytes freed while measuring (frees of older memory make it negative).
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// The tests of this file measure one at a time.
static MEASURING: Mutex<()> = Mutex::new(());

thread_local! {
    /// Only the measuring thread's allocations count: the test harness runs other tests on
    /// other threads meanwhile.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && counted() {
            let size = layout.size() as isize;
            let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        if counted() {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && counted() {
            let size = new_size as isize;
            let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
            PEAK.fetch_max(live, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn peak_of(f: impl FnOnce()) -> u64 {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    LIVE.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    COUNTED.with(|c| c.set(true));
    f();
    COUNTED.with(|c| c.set(false));
    PEAK.load(Ordering::Relaxed).max(0) as u64
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn field(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 6);
    varint(&mut out, u64::from(number) << 3 | 2);
    varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// `Export{Trace,Logs}ServiceRequest { [resource] { [scope] { records } } }`.
fn request(records: &[u8]) -> Vec<u8> {
    field(1, &field(2, records))
}

fn span(extra: &[u8]) -> Vec<u8> {
    let mut s = field(1, &[1; 16]);
    s.extend(field(2, &[2; 8]));
    s.extend(field(5, b"GET /orders"));
    s.extend_from_slice(extra);
    s
}

/// Decodes `body` and checks the estimate against what decoding took.
fn check(signal: Signal, body: &[u8]) -> (Cost, u64) {
    let estimate = cost::protobuf(signal, body).unwrap_or_else(|(_, before)| before);
    let peak = peak_of(|| drop(Payload::decode_protobuf(signal, body)));
    assert!(
        peak <= 2 * estimate.bytes + 64 * 1024,
        "{signal}: {} bytes estimated at {}, decoding took {peak}",
        body.len(),
        estimate.bytes
    );
    (estimate, peak)
}

#[test]
fn real_spans_decode_within_the_estimate_and_the_budget() {
    let attribute = {
        let mut value = field(1, b"value-of-an-attribute");
        value = field(2, &value);
        let mut kv = field(1, b"http.request.method");
        kv.extend(value);
        field(9, &kv)
    };
    let one = field(2, &span(&attribute.repeat(12)));
    let body = request(&one.repeat(2000));
    let (estimate, peak) = check(Signal::Traces, &body);
    assert!(estimate.bytes <= Cost::budget(body.len()));
    assert_eq!(estimate.records, 2000);
    // The estimate is not wildly above the truth either.
    assert!(estimate.bytes < 4 * peak, "{estimate:?} for {peak}");
}

#[test]
fn empty_records_would_cost_more_than_the_budget_and_do() {
    for signal in [Signal::Traces, Signal::Logs] {
        let body = request(&[0x12, 0].repeat(200_000));
        let (estimate, peak) = check(signal, &body);
        assert!(estimate.bytes > Cost::budget(body.len()), "{signal}");
        // What refusing saves: decoding them would have taken this much.
        assert!(peak > 24 * body.len() as u64, "{signal}: {peak}");
    }
    let attributes = request(&field(2, &span(&[0x4a, 0].repeat(100_000))));
    let (estimate, _) = check(Signal::Traces, &attributes);
    assert!(estimate.bytes > Cost::budget(attributes.len()));
}

#[test]
fn single_element_nesting_stays_within_twice_the_estimate() {
    // Many resources of one scope of one span: every Vec holds one element and four of room.
    let one = field(1, &field(2, &field(2, &span(&[]))));
    check(Signal::Traces, &one.repeat(5000));
    // A metric with one gauge point per resource.
    let point = field(1, &[0x19, 1, 0, 0, 0, 0, 0, 0, 0]);
    let metric = field(2, &field(5, &point));
    let one = field(1, &field(2, &metric));
    let (estimate, _) = check(Signal::Metrics, &one.repeat(5000));
    assert_eq!(estimate.records, 5000);
}

#[test]
fn remote_write_translation_stops_at_its_budget() {
    let labels: Vec<Label> = std::iter::once(("__name__", "wide".to_string()))
        .chain((0..50).map(|i| ("l", format!("{i:0>150}"))))
        .map(|(n, v)| Label {
            name: n.to_string(),
            value: v,
        })
        .collect();
    let write = WriteRequest {
        timeseries: vec![TimeSeries {
            labels,
            samples: vec![Sample::default(); 100_000],
            ..Default::default()
        }],
        ..Default::default()
    };
    let body = write.encode_to_vec();
    let estimate = cost::remote_write(&body).expect("well-formed");
    assert!(
        estimate.bytes <= Cost::budget(body.len()),
        "the decode alone fits"
    );
    let budget = Cost::budget(body.len()) - estimate.bytes;
    let mut result = None;
    let peak = peak_of(|| result = Some(to_otlp_within(&write, budget)));
    assert!(matches!(result, Some(Err(Translate::OverBudget(_)))));
    assert!(peak < 64 * 1024, "refused before building: {peak} bytes");
    // The same series with one sample is translated, within its budget.
    let small = WriteRequest {
        timeseries: vec![TimeSeries {
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1,
            }],
            ..write.timeseries[0].clone()
        }],
        ..Default::default()
    };
    let body = small.encode_to_vec();
    let mut result = None;
    let peak = peak_of(|| result = Some(to_otlp_within(&small, Cost::budget(body.len()))));
    assert!(matches!(result, Some(Ok(_))));
    assert!(peak <= Cost::budget(body.len()));
}
