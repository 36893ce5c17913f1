//! The Prometheus exporter's hot paths: ingesting OTLP data points into the series store, and
//! rendering a scrape of 10k and 100k series.
//!
//! `cargo bench -p sluice --bench prometheus` prints time per batch (1000 data points) and per
//! scrape.

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sluice::exporters::series::{Store, StoreConfig};
use sluice::naming::TranslationStrategy;

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    }
}

/// `points` counter data points over `metrics` metric names, each with 4 attributes; `offset`
/// shifts the series identities.
fn request(metrics: usize, points: usize, offset: usize) -> ExportMetricsServiceRequest {
    let per_metric = points / metrics;
    let metrics = (0..metrics)
        .map(|m| Metric {
            name: format!("app.requests.{m}"),
            unit: "{request}".into(),
            description: "Requests.".into(),
            data: Some(metric::Data::Sum(Sum {
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
                data_points: (0..per_metric)
                    .map(|p| {
                        let id = offset + p;
                        NumberDataPoint {
                            attributes: vec![
                                kv("http.route", format!("/api/v1/items/{}", id % 50)),
                                kv("http.request.method", "GET".into()),
                                kv("http.response.status_code", format!("{}", 200 + id % 5)),
                                kv("pod", format!("pod-{id}")),
                            ],
                            time_unix_nano: 1_700_000_000_000_000_000,
                            value: Some(number_data_point::Value::AsInt(id as i64)),
                            ..Default::default()
                        }
                    })
                    .collect(),
            })),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "api".into()),
                    kv("service.instance.id", "i-1".into()),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn config() -> StoreConfig {
    StoreConfig {
        strategy: TranslationStrategy::UnderscoreEscapingWithSuffixes,
        expiration: Duration::from_secs(300),
        max_series: 1_000_000,
        promote_resource_attributes: Vec::new(),
        target_info: true,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("prometheus");
    // Ingest: 1000 data points updating existing series.
    let batch = request(10, 1000, 0);
    let mut store = Store::new(config());
    store.ingest(&batch, Instant::now(), None);
    group.throughput(Throughput::Elements(1000));
    group.bench_function("ingest_1000_points_existing_series", |b| {
        b.iter(|| store.ingest(&batch, Instant::now(), None).stored)
    });
    group.throughput(Throughput::Elements(1));
    for series in [10_000usize, 100_000] {
        let mut store = Store::new(config());
        let now = Instant::now();
        for chunk in 0..series / 10_000 {
            store.ingest(&request(10, 10_000, chunk * 1000), now, None);
        }
        assert!(store.series_count() >= series, "{}", store.series_count());
        group.sample_size(10);
        group.bench_function(format!("render_text_{series}_series"), |b| {
            b.iter_batched(
                || (),
                |_| store.render(false, now).len(),
                BatchSize::SmallInput,
            )
        });
    }
    // Histograms: 20k series of 5 bounds (8 lines each), as `sluice loadgen` sends.
    let mut store = Store::new(config());
    let now = Instant::now();
    for chunk in 0..2 {
        store.ingest(&histograms(10, 10_000, chunk * 1000), now, None);
    }
    assert!(store.series_count() >= 20_000, "{}", store.series_count());
    group.bench_function("render_text_20k_histograms", |b| {
        b.iter_batched(
            || (),
            |_| store.render(false, now).len(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// `points` histogram data points over `metrics` metric names, as [`request`] does counters.
fn histograms(metrics: usize, points: usize, offset: usize) -> ExportMetricsServiceRequest {
    let mut req = request(metrics, points, offset);
    for m in &mut req.resource_metrics[0].scope_metrics[0].metrics {
        m.name = m.name.replace("requests", "duration");
        m.unit = "s".into();
        let Some(metric::Data::Sum(sum)) = m.data.take() else {
            continue;
        };
        m.data = Some(metric::Data::Histogram(Histogram {
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            data_points: sum
                .data_points
                .into_iter()
                .map(|p| HistogramDataPoint {
                    attributes: p.attributes,
                    time_unix_nano: p.time_unix_nano,
                    count: 10,
                    sum: Some(1.25),
                    bucket_counts: vec![1, 2, 3, 2, 1, 1],
                    explicit_bounds: vec![0.005, 0.01, 0.05, 0.1, 0.5],
                    ..Default::default()
                })
                .collect(),
        }));
    }
    req
}

criterion_group!(benches, bench);
criterion_main!(benches);
