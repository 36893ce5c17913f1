//! Tests of the series store and its renderings.

use super::exposition::push_float;
use super::labels::*;
use super::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

#[test]
fn exponential_histogram_becomes_cumulative_classic_buckets() {
    // scale 0: base 2; positive buckets at offset 0 cover (1,2], (2,4], (4,8].
    let p = ExponentialHistogramDataPoint {
        scale: 0,
        count: 7,
        zero_count: 1,
        positive: Some(Buckets {
            offset: 0,
            bucket_counts: vec![1, 2, 3],
        }),
        ..Default::default()
    };
    let (bounds, counts) = exponential_to_classic(&p);
    assert_eq!(bounds, vec![0.0, 2.0, 4.0, 8.0]);
    assert_eq!(counts, vec![1, 1, 2, 3, 0]);
}

#[test]
fn label_collisions_are_merged_in_key_order() {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let labels = attribute_labels(
        &[kv("a.b", "2"), kv("a_b", "1"), kv("c", "x")],
        TranslationStrategy::UnderscoreEscapingWithSuffixes,
    );
    assert_eq!(
        labels,
        vec![("a_b".into(), "2;1".into()), ("c".into(), "x".into())]
    );
}

#[test]
fn point_labels_are_the_merged_labels_and_find_their_series() {
    let s = |v: &str| any_value::Value::StringValue(v.into());
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let strategy = TranslationStrategy::UnderscoreEscapingWithSuffixes;
    let base: Labels = vec![
        ("job".into(), "shop/cart".into()),
        ("otel_scope_name".into(), "lib".into()),
        ("job".into(), "later-wins".into()),
    ];
    let cases: Vec<Vec<KeyValue>> = vec![
        vec![],
        vec![
            kv("http.route", s("/a")),
            kv("code", any_value::Value::IntValue(200)),
        ],
        // An attribute under a resource label's name loses to it.
        vec![
            kv("job", s("mine")),
            kv("z", any_value::Value::BoolValue(true)),
        ],
        // Two attributes with one sanitized name are joined in key order.
        vec![kv("a_b", s("1")), kv("a.b", s("2")), kv("9x", s("n"))],
        vec![
            kv("b", any_value::Value::DoubleValue(0.5)),
            kv("a", any_value::Value::BytesValue(vec![1, 255])),
            kv("", s("empty key")),
        ],
    ];
    use std::hash::BuildHasher;
    let state = std::hash::RandomState::new();
    let mut point = PointLabels::default();
    let mut series: IndexMap<Labels, usize> = IndexMap::new();
    for (i, attrs) in cases.iter().enumerate() {
        let mut expected = attribute_labels(attrs, strategy);
        merge_labels(&mut expected, &base);
        point.build(attrs, &base, strategy);
        assert_eq!(point.to_labels(), expected, "case {i}");
        assert_eq!(
            state.hash_one(&point),
            state.hash_one(&expected),
            "case {i}"
        );
        series.insert(expected, i);
    }
    for (i, attrs) in cases.iter().enumerate() {
        point.build(attrs, &base, strategy);
        assert_eq!(series.get(&point), Some(&i), "case {i}");
    }
    point.build(&[kv("http.route", s("/b"))], &base, strategy);
    assert_eq!(series.get(&point), None);
}

fn counters(metrics: usize, per_metric: usize) -> ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric, number_data_point,
    };
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![kv("service.name", "api".into())],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: (0..metrics)
                    .map(|m| Metric {
                        name: format!("app.requests.{m}"),
                        description: "Requests.".into(),
                        data: Some(metric::Data::Sum(Sum {
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                            data_points: (0..per_metric)
                                .map(|p| NumberDataPoint {
                                    attributes: vec![kv("pod", format!("pod-{p}"))],
                                    time_unix_nano: 1_700_000_000_000_000_000,
                                    value: Some(number_data_point::Value::AsInt(p as i64)),
                                    ..Default::default()
                                })
                                .collect(),
                        })),
                        ..Default::default()
                    })
                    .collect(),
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

#[test]
fn floats_print_as_rust_prints_them() {
    for v in [
        0.0,
        -0.0,
        1.0,
        -1.0,
        3.0,
        0.5,
        1e-9,
        123456789.0,
        999_999_999_999_999.0,
        1e15,
        -1e15,
        1e16,
        1e300,
        2.5e-300,
        4503599627370497.0,
        f64::MAX,
        f64::MIN_POSITIVE,
    ] {
        let mut out = String::new();
        push_float(&mut out, v);
        assert_eq!(out, format!("{v}"), "{v:e}");
    }
    for (v, text) in [
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
    ] {
        let mut out = String::new();
        push_float(&mut out, v);
        assert_eq!(out, text);
    }
}

/// A histogram's lines, as the exposition format has them: cumulative buckets with `le`,
/// `_sum` and `_count`, the labels on each, a UTF-8 name quoted inside the braces.
#[test]
fn histograms_render_each_line_with_the_series_labels() {
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
        ScopeMetrics, metric,
    };
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let point = |attributes| HistogramDataPoint {
        attributes,
        count: 6,
        sum: Some(2.5),
        bucket_counts: vec![1, 2, 3],
        explicit_bounds: vec![0.1, 1.0],
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "req.dauer".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        data_points: vec![
                            point(vec![kv("path", "/a\"b"), kv("ünit", "x")]),
                            point(Vec::new()),
                        ],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let now = Instant::now();
    let mut store = Store::new(StoreConfig {
        strategy: TranslationStrategy::NoTranslation,
        target_info: false,
        ..config()
    });
    store.ingest(&request, now, None);
    let text = store.render(false, now);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let mut want = Vec::new();
    for labels in [r#"path="/a\"b","ünit"="x","#, ""] {
        want.extend([
            format!(r#"{{"req.dauer_bucket",{labels}le="0.1"}} 1"#),
            format!(r#"{{"req.dauer_bucket",{labels}le="1"}} 3"#),
            format!(r#"{{"req.dauer_bucket",{labels}le="+Inf"}} 6"#),
            format!(
                r#"{{"req.dauer_sum",{}}} 2.5"#,
                labels.trim_end_matches(',')
            ),
            format!(
                r#"{{"req.dauer_count",{}}} 6"#,
                labels.trim_end_matches(',')
            ),
        ]);
    }
    let want: Vec<String> = want.into_iter().map(|l| l.replace(",}", "}")).collect();
    assert_eq!(lines, want);
}

#[test]
fn chunked_render_equals_the_whole_render() {
    let now = Instant::now();
    let mut store = Store::new(config());
    store.ingest(&counters(7, 1000), now, None);
    let whole = store.render(false, now);
    let whole_om = store.render(true, now);
    let store = std::sync::Mutex::new(store);
    for chunk in [1, 3, 999, 1000, 1001, 100_000] {
        assert_eq!(
            Store::render_chunked(&store, false, now, chunk).as_deref(),
            Some(whole.as_str()),
            "chunk {chunk}"
        );
    }
    assert_eq!(
        Store::render_chunked(&store, true, now, 100).as_deref(),
        Some(whole_om.as_str())
    );
    let samples = whole.lines().filter(|l| l.contains("pod=")).count();
    assert_eq!(samples, 7000);
}

#[test]
fn chunked_render_starts_again_when_series_are_removed_midway() {
    let now = Instant::now();
    let mut s = Store::new(config());
    s.ingest(&counters(2, 10), now, None);
    let before = s.generation;
    // An expired sweep removes every series and bumps the generation.
    s.sweep(now + Duration::from_secs(301));
    assert!(s.generation > before);
    assert_eq!(s.series_count(), 0);
    let store = std::sync::Mutex::new(s);
    let out =
        Store::render_chunked(&store, false, now + Duration::from_secs(301), 4).expect("renders");
    assert!(!out.contains("pod-"), "{out}");
}

/// The explorer's view: type, unit, help and series count per family, the labels with the most
/// distinct values first, and a family's series filtered by label values.
#[test]
fn the_explorer_summarises_families_and_filters_series() {
    use crate::model::string_kv as kv;
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric, number_data_point,
    };
    // 30 series: 30 users, 3 routes, one method.
    let points = (0..30)
        .map(|i| NumberDataPoint {
            attributes: vec![
                kv("user", &format!("u{i}")),
                kv("route", &format!("/r{}", i % 3)),
                kv("method", "GET"),
            ],
            time_unix_nano: 2_000_000_000,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.requests".into(),
                    description: "Requests served.".into(),
                    unit: "{request}".into(),
                    data: Some(metric::Data::Sum(Sum {
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut store = Store::new(StoreConfig {
        target_info: false,
        ..config()
    });
    store.ingest(&request, Instant::now(), None);
    let store = std::sync::Mutex::new(store);

    let all = explore::families(&store);
    assert_eq!(all.len(), 1);
    let f = &all[0];
    assert_eq!(
        (
            f.name.as_str(),
            f.kind,
            f.unit.as_str(),
            f.help.as_str(),
            f.series
        ),
        (
            "http_server_requests_total",
            "counter",
            "{request}",
            "Requests served.",
            30
        )
    );
    let labels: Vec<(&str, usize)> = f
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.distinct))
        .collect();
    assert_eq!(labels, vec![("user", 30), ("route", 3), ("method", 1)]);
    assert!(f.labels.iter().all(|l| !l.capped));
    assert_eq!(
        explore::series_per_family(&store),
        vec![("http_server_requests_total".to_string(), 30)]
    );

    let matcher = [("route".to_string(), "/r1".to_string())];
    let page = explore::series(&store, "http_server_requests_total", &matcher, 4)
        .expect("the family exists");
    assert_eq!(page.matching, 10);
    assert_eq!(page.series.len(), 4);
    assert!(page.series.iter().all(|s| s.labels.contains(&matcher[0])));
    let first = &page.series[0];
    assert_eq!((first.value, first.sum, first.time), (1.0, None, 2.0));
    assert!(explore::series(&store, "nope", &[], 10).is_none());
    let none = [("route".to_string(), "/elsewhere".to_string())];
    let empty = explore::series(&store, "http_server_requests_total", &none, 10)
        .expect("the family exists");
    assert_eq!((empty.matching, empty.series.len()), (0, 0));
}
