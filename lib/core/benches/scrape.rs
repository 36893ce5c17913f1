//! A scrape's work after the body arrives: parsing a 10k-series exposition (the text format,
//! and the same series as OpenMetrics) and mapping it to OTLP with the target's memory, as the
//! `prometheus` receiver runs them once per target per interval. The body is what
//! `bench/scrape.py` serves: counters with four labels and histograms of ten buckets.
//!
//! `cargo bench -p sluice-core --bench scrape` prints time per body; samples/s is 10k over it.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::scrape::expfmt::{Format, Limits, parse};
use sluice_core::scrape::otlp::{Options, SeriesMemory, Target};

const SERIES: usize = 10_000;

fn body(openmetrics: bool) -> String {
    let mut out = String::new();
    let histograms = SERIES / 24;
    let counters = SERIES - histograms * 12;
    out.push_str("# HELP http_requests_total Requests.\n");
    out.push_str(if openmetrics {
        "# TYPE http_requests counter\n"
    } else {
        "# TYPE http_requests_total counter\n"
    });
    for i in 0..counters {
        out.push_str(&format!(
            "http_requests_total{{method=\"GET\",route=\"/api/v1/items/{}\",code=\"{}\",pod=\"pod-{}\"}} {}\n",
            i % 400,
            200 + i / 400,
            i % 7,
            i * 13 + 1000
        ));
    }
    out.push_str(
        "# HELP rpc_duration_seconds RPC latency.\n# TYPE rpc_duration_seconds histogram\n",
    );
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
    ];
    for i in 0..histograms {
        let labels = format!("service=\"svc-{}\",method=\"Call{i}\"", i % 50);
        for (k, le) in bounds.iter().enumerate() {
            out.push_str(&format!(
                "rpc_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}\n",
                k * 10 + i
            ));
        }
        out.push_str(&format!(
            "rpc_duration_seconds_sum{{{labels}}} {}\n",
            i as f64 * 0.5
        ));
        out.push_str(&format!(
            "rpc_duration_seconds_count{{{labels}}} {}\n",
            90 + i
        ));
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn target() -> Target {
    Target {
        labels: vec![
            ("instance".into(), "127.0.0.1:9100".into()),
            ("job".into(), "bench".into()),
        ],
        scheme: "http".into(),
        address: "127.0.0.1:9100".into(),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("scrape_10k_series");
    g.throughput(Throughput::Elements(SERIES as u64));
    for (name, format, text) in [
        ("text", Format::Text, body(false)),
        ("openmetrics", Format::OpenMetrics, body(true)),
    ] {
        let bytes = text.into_bytes();
        g.bench_function(format!("parse_{name}"), |b| {
            b.iter(|| parse(&bytes, format, &Limits::default()).map(|f| f.len()))
        });
        let options = Options {
            honor_timestamps: true,
            ..Options::default()
        };
        let mut memory = SeriesMemory::default();
        let mut t = 1_700_000_000_000_000_000u64;
        g.bench_function(format!("parse_and_map_{name}"), |b| {
            b.iter(|| {
                t += 15_000_000_000;
                let families = parse(&bytes, format, &Limits::default()).unwrap_or_default();
                memory
                    .map(&target(), families, t, &options)
                    .map(|(r, _)| r.resource_metrics.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
