use sluice_sdk::otlp::logs::v1::LogRecord;
use sluice_sdk::otlp::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Summary, SummaryDataPoint,
};
use sluice_sdk::prost::Message;
use sluice_sdk::testing;

use super::*;
#[allow(unused_imports, reason = "the items the tests build batches from")]
use sluice_sdk::otlp::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};

// ---- builders ----------------------------------------------------------------------------

fn kv(key: &str, value: &str) -> KeyValue {
    string_attribute(key, value)
}

fn plugin(config: &str) -> LimitCardinality {
    match LimitCardinality::new(config) {
        Ok(p) => p,
        Err(e) => panic!("config {config} rejected: {e}"),
    }
}

fn config_error(config: &str) -> String {
    match LimitCardinality::new(config) {
        Ok(_) => panic!("config {config} accepted"),
        Err(Error::Config(m)) => m,
        Err(e) => panic!("not a config error: {e}"),
    }
}

fn number_point(attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        value: Some(number_data_point::Value::AsInt(1)),
        ..Default::default()
    }
}

/// A sum metric with one point per attribute set.
fn sum(name: &str, points: Vec<Vec<KeyValue>>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points.into_iter().map(number_point).collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn batch(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The attribute sets of every data point, in order, as `key=value` texts.
fn point_attributes(b: &ExportMetricsServiceRequest) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for rm in &b.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let mut data = m.data.clone();
                for_each_point_mut(&mut data, |attributes| {
                    out.push(
                        attributes
                            .iter()
                            .map(|kv| {
                                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                    Some(any_value::Value::StringValue(s)) => s.clone(),
                                    Some(any_value::Value::BoolValue(b)) => b.to_string(),
                                    Some(any_value::Value::IntValue(i)) => i.to_string(),
                                    _ => "?".into(),
                                };
                                format!("{}={v}", kv.key)
                            })
                            .collect(),
                    )
                });
            }
        }
    }
    out
}

fn run(p: &mut LimitCardinality, metrics: Vec<Metric>) -> (Verdict, Vec<Vec<String>>) {
    let mut b = batch(metrics);
    let verdict = match p.metrics(&mut b) {
        Ok(v) => v,
        Err(e) => panic!("metrics failed: {e}"),
    };
    (verdict, point_attributes(&b))
}

fn normalizer(config: &str) -> Normalizer {
    match Config::parse(config).and_then(|c| Normalizer::new(&c.normalize)) {
        Ok(Some(n)) => n,
        Ok(None) => panic!("normalization off"),
        Err(e) => panic!("{e}"),
    }
}

/// The emitted `limit_cardinality.overflows` points as `(metric, key, value)`.
fn emitted_overflows() -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for (signal, bytes) in testing::take_emitted() {
        assert_eq!(signal, Signal::Metrics);
        let req = match ExportMetricsServiceRequest::decode(bytes.as_slice()) {
            Ok(r) => r,
            Err(e) => panic!("emitted metrics do not decode: {e}"),
        };
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    assert_eq!(m.name, OVERFLOWS_METRIC);
                    let Some(metric::Data::Sum(s)) = &m.data else {
                        panic!("not a sum");
                    };
                    assert!(s.is_monotonic);
                    assert_eq!(
                        s.aggregation_temporality,
                        AggregationTemporality::Cumulative as i32
                    );
                    for p in &s.data_points {
                        let get = |k: &str| {
                            p.attributes
                                .iter()
                                .find(|kv| kv.key == k)
                                .and_then(|kv| kv.value.as_ref())
                                .and_then(|v| match &v.value {
                                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                                    _ => None,
                                })
                                .unwrap_or_default()
                        };
                        let Some(number_data_point::Value::AsInt(n)) = p.value else {
                            panic!("not an int");
                        };
                        out.push((get("metric"), get("key"), n));
                    }
                }
            }
        }
    }
    out
}

// ---- normalization -----------------------------------------------------------------------

#[test]
fn normalizes_numbers_uuids_and_hex_ids() {
    let n = normalizer("{}");
    let cases = [
        (
            "/users/123/orders/9f8c0e6e-1b2c-4d3e-8f9a-0b1c2d3e4f5a",
            Some("/users/{id}/orders/{uuid}"),
        ),
        ("/blobs/0123456789abcdef0123", Some("/blobs/{hex}")),
        ("/blobs/DEADBEEFCAFEBABE", Some("/blobs/{hex}")),
        ("/v2/items/42/", Some("/v2/items/{id}/")),
        ("/search?q=shoes&page=2", Some("/search")),
        ("/users/7#top", Some("/users/{id}")),
        (
            "https://api.example.com:8443/users/99?x=1",
            Some("https://api.example.com:8443/users/{id}"),
        ),
        ("/users/{id}/orders/{uuid}", None),
        ("/users/me", None),
        ("/v2/items", None),
        ("/blobs/abc123", None),
        ("/files/report-2024.pdf", None),
        ("https://example.com", None),
        ("", None),
        ("/", None),
    ];
    for (input, want) in cases {
        assert_eq!(n.normalize(input).as_deref(), want, "{input}");
    }
}

#[test]
fn normalization_options_and_extra_patterns() {
    let n = normalizer(
        r#"{"normalize": {"patterns": [{"regex": "usr_[a-z0-9]{8}", "placeholder": "{user}"},
                                       {"regex": "[A-Z]{2}-\\d+"}],
                          "uuids": false, "strip_query": false, "min_hex_length": 8}}"#,
    );
    assert_eq!(
        n.normalize("/u/usr_ab12cd34/t/AB-77?x=1").as_deref(),
        Some("/u/{user}/t/{id}?x=1")
    );
    // Patterns match whole segments only.
    assert_eq!(n.normalize("/u/xusr_ab12cd34"), None);
    // With uuids off, a UUID is not one segment of hex digits either.
    assert_eq!(n.normalize("/x/9f8c0e6e-1b2c-4d3e-8f9a-0b1c2d3e4f5a"), None);
    assert_eq!(n.normalize("/x/deadbeef").as_deref(), Some("/x/{hex}"));
    let off = normalizer(r#"{"normalize": {"numbers": false, "hex_ids": false}}"#);
    assert_eq!(off.normalize("/a/123"), None);
}

#[test]
fn normalizes_configured_keys_of_metric_points_only() {
    let mut p = plugin("{}");
    let (verdict, points) = run(
        &mut p,
        vec![sum(
            "http.server.request.duration",
            vec![vec![
                kv("url.path", "/users/123"),
                kv("http.target", "/a/1?b=2"),
                kv("http.route", "/users/{id}"),
                kv("other", "/users/123"),
            ]],
        )],
    );
    assert_eq!(verdict, Verdict::Modified);
    assert_eq!(
        points,
        vec![vec![
            "url.path=/users/{id}",
            "http.target=/a/{id}",
            "http.route=/users/{id}",
            "other=/users/123",
        ]]
    );
    let (verdict, _) = run(
        &mut p,
        vec![sum("m", vec![vec![kv("url.path", "/users/me")]])],
    );
    assert_eq!(verdict, Verdict::Unchanged);
}

#[test]
fn spans_and_logs_are_normalized_only_when_asked() {
    let mut off = plugin("{}");
    let mut spans = testing::traces(&["GET"]);
    spans.resource_spans[0].scope_spans[0].spans[0].attributes = vec![kv("url.path", "/a/1")];
    assert_eq!(off.traces(&mut spans.clone()), Ok(Verdict::Unchanged));

    let mut on = plugin(r#"{"normalize": {"signals": ["traces", "logs"]}}"#);
    assert_eq!(on.traces(&mut spans), Ok(Verdict::Modified));
    assert_eq!(
        spans.resource_spans[0].scope_spans[0].spans[0].attributes,
        vec![kv("url.path", "/a/{id}")]
    );
    let mut logs = testing::logs(&["hello"]);
    logs.resource_logs[0].scope_logs[0].log_records[0] = LogRecord {
        attributes: vec![kv("url.path", "/b/22")],
        ..Default::default()
    };
    assert_eq!(on.logs(&mut logs), Ok(Verdict::Modified));
    assert_eq!(
        logs.resource_logs[0].scope_logs[0].log_records[0].attributes,
        vec![kv("url.path", "/b/{id}")]
    );
    // Metrics are not in the list: untouched.
    let (verdict, _) = run(&mut on, vec![sum("m", vec![vec![kv("url.path", "/a/1")]])]);
    assert_eq!(verdict, Verdict::Unchanged);
}

#[test]
fn empty_keys_turn_normalization_off() {
    let mut p = plugin(r#"{"normalize": {"keys": []}}"#);
    let (verdict, _) = run(&mut p, vec![sum("m", vec![vec![kv("url.path", "/a/1")]])]);
    assert_eq!(verdict, Verdict::Unchanged);
}

// ---- value limits ------------------------------------------------------------------------

#[test]
fn caps_distinct_values_per_metric_and_key() {
    let mut p = plugin(r#"{"limits": [{"metric": "*", "key": "user.id", "max_values": 2}]}"#);
    let points = |ids: &[&str]| -> Vec<Vec<KeyValue>> {
        ids.iter()
            .map(|id| vec![kv("user.id", id), kv("route", "/x")])
            .collect()
    };
    let (verdict, out) = run(&mut p, vec![sum("a", points(&["u1", "u2", "u3", "u1"]))]);
    assert_eq!(verdict, Verdict::Modified);
    assert_eq!(
        out,
        vec![
            vec!["user.id=u1", "route=/x"],
            vec!["user.id=u2", "route=/x"],
            vec!["user.id=overflow", "route=/x"],
            vec!["user.id=u1", "route=/x"],
        ]
    );
    // Seen values stay admitted in later batches; each metric has its own cap.
    let (verdict, out) = run(
        &mut p,
        vec![
            sum("a", points(&["u2", "u1"])),
            sum("b", points(&["u5", "u6", "u7"])),
        ],
    );
    assert_eq!(verdict, Verdict::Modified);
    assert_eq!(out[0][0], "user.id=u2");
    assert_eq!(out[1][0], "user.id=u1");
    assert_eq!(out[2][0], "user.id=u5");
    assert_eq!(out[3][0], "user.id=u6");
    assert_eq!(out[4][0], "user.id=overflow");
    // Points without the key, and within the cap, leave the batch unchanged.
    let (verdict, _) = run(&mut p, vec![sum("a", vec![vec![kv("route", "/y")]])]);
    assert_eq!(verdict, Verdict::Unchanged);
    assert_eq!(
        p.counts.0.get(&("a".to_string(), "user.id".to_string())),
        Some(&1)
    );
}

#[test]
fn the_most_specific_limit_wins_and_the_marker_is_configurable() {
    let mut p = plugin(
        r#"{"overflow_value": "__other__",
            "limits": [{"metric": "*", "key": "k", "max_values": 1},
                       {"metric": "http.*", "key": "k", "max_values": 2},
                       {"metric": "http.server.duration", "key": "k", "max_values": 3}]}"#,
    );
    let pts = || -> Vec<Vec<KeyValue>> {
        ["1", "2", "3", "4"]
            .iter()
            .map(|v| vec![kv("k", v)])
            .collect()
    };
    let (_, out) = run(
        &mut p,
        vec![
            sum("db.calls", pts()),
            sum("http.client.duration", pts()),
            sum("http.server.duration", pts()),
        ],
    );
    let kept =
        |range: std::ops::Range<usize>| out[range].iter().filter(|p| p[0] != "k=__other__").count();
    assert_eq!(kept(0..4), 1);
    assert_eq!(kept(4..8), 2);
    assert_eq!(kept(8..12), 3);
    // An upstream marker is not a value of its own.
    let (verdict, _) = run(
        &mut p,
        vec![sum("db.calls", vec![vec![kv("k", "__other__")]])],
    );
    assert_eq!(verdict, Verdict::Unchanged);
}

#[test]
fn normalization_happens_before_the_caps() {
    let mut p = plugin(r#"{"limits": [{"key": "url.path", "max_values": 1}]}"#);
    let points = (0..50)
        .map(|i| vec![kv("url.path", &format!("/users/{i}"))])
        .collect();
    let (verdict, out) = run(&mut p, vec![sum("m", points)]);
    assert_eq!(verdict, Verdict::Modified);
    assert!(out.iter().all(|p| p == &vec!["url.path=/users/{id}"]));
    assert!(p.counts.0.is_empty());
}

// ---- series limits -----------------------------------------------------------------------

#[test]
fn caps_series_with_the_overflow_attribute() {
    let mut p = plugin(r#"{"limits": [{"metric": "m", "max_series": 2}]}"#);
    let (verdict, out) = run(
        &mut p,
        vec![
            sum(
                "m",
                vec![
                    vec![kv("a", "1"), kv("b", "x")],
                    vec![kv("b", "x"), kv("a", "1")], // the same set in another order
                    vec![kv("a", "2")],
                    vec![kv("a", "3")],
                    vec![],
                ],
            ),
            sum("other", vec![vec![kv("a", "4")]]),
        ],
    );
    assert_eq!(verdict, Verdict::Modified);
    assert_eq!(
        out,
        vec![
            vec!["a=1", "b=x"],
            vec!["b=x", "a=1"],
            vec!["a=2"],
            vec!["otel.metric.overflow=true"],
            vec!["otel.metric.overflow=true"],
            vec!["a=4"],
        ]
    );
    assert_eq!(
        p.counts.0.get(&("m".to_string(), SERIES_KEY.to_string())),
        Some(&2)
    );
    // The overflow set itself passes unchanged and is not tracked.
    let (verdict, _) = run(&mut p, vec![sum("m", vec![vec![overflow_attribute()]])]);
    assert_eq!(verdict, Verdict::Unchanged);
}

#[test]
fn value_caps_apply_before_the_series_cap() {
    let mut p = plugin(
        r#"{"limits": [{"key": "user.id", "max_values": 1}, {"metric": "m", "max_series": 2}]}"#,
    );
    let points = ["u1", "u2", "u3", "u4"]
        .iter()
        .map(|u| vec![kv("user.id", u)])
        .collect();
    let (_, out) = run(&mut p, vec![sum("m", points)]);
    // u1 and the overflow value are the two series; nothing needs the series cap.
    assert_eq!(
        out,
        vec![
            vec!["user.id=u1"],
            vec!["user.id=overflow"],
            vec!["user.id=overflow"],
            vec!["user.id=overflow"],
        ]
    );
    assert_eq!(p.counts.0.len(), 1);
}

// ---- every metric type -------------------------------------------------------------------

#[test]
fn all_metric_types_are_limited_and_normalized() {
    let attrs = |u: &str| vec![kv("user.id", u), kv("url.path", "/o/12")];
    let metrics = vec![
        Metric {
            name: "gauge".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![number_point(attrs("a")), number_point(attrs("b"))],
            })),
            ..Default::default()
        },
        sum("sum", vec![attrs("a"), attrs("b")]),
        Metric {
            name: "histogram".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![
                    HistogramDataPoint {
                        attributes: attrs("a"),
                        ..Default::default()
                    },
                    HistogramDataPoint {
                        attributes: attrs("b"),
                        ..Default::default()
                    },
                ],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
            ..Default::default()
        },
        Metric {
            name: "exponential".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![
                    ExponentialHistogramDataPoint {
                        attributes: attrs("a"),
                        ..Default::default()
                    },
                    ExponentialHistogramDataPoint {
                        attributes: attrs("b"),
                        ..Default::default()
                    },
                ],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
            ..Default::default()
        },
        Metric {
            name: "summary".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![
                    SummaryDataPoint {
                        attributes: attrs("a"),
                        ..Default::default()
                    },
                    SummaryDataPoint {
                        attributes: attrs("b"),
                        ..Default::default()
                    },
                ],
            })),
            ..Default::default()
        },
        Metric {
            name: "empty".into(),
            ..Default::default()
        },
    ];
    let mut p = plugin(r#"{"limits": [{"key": "user.id", "max_values": 1}]}"#);
    let (verdict, out) = run(&mut p, metrics);
    assert_eq!(verdict, Verdict::Modified);
    assert_eq!(out.len(), 10);
    for pair in out.chunks(2) {
        assert_eq!(pair[0], vec!["user.id=a", "url.path=/o/{id}"]);
        assert_eq!(pair[1], vec!["user.id=overflow", "url.path=/o/{id}"]);
    }
    assert_eq!(p.counts.0.len(), 5);
}

// ---- memory bound ------------------------------------------------------------------------

#[test]
fn max_tracked_bounds_memory_and_overflows_new_values() {
    testing::take_logs();
    let mut p = plugin(
        r#"{"max_tracked": 5, "limits": [{"key": "k", "max_values": 1000}, {"max_series": 1000}]}"#,
    );
    let points: Vec<Vec<KeyValue>> = (0..20).map(|i| vec![kv("k", &i.to_string())]).collect();
    let (verdict, out) = run(&mut p, vec![sum("m", points.clone())]);
    assert_eq!(verdict, Verdict::Modified);
    assert_eq!(p.tracker.total(), 5);
    // Values 0, 1, 2 and their series fill the budget (3 values + 2 series: the third series
    // finds it full); everything after overflows.
    assert_eq!(out[0], vec!["k=0"]);
    assert_eq!(out[1], vec!["k=1"]);
    assert_eq!(out[2], vec!["otel.metric.overflow=true"]);
    assert!(
        out[3..]
            .iter()
            .all(|p| p == &vec!["otel.metric.overflow=true"])
    );
    let warnings = testing::take_logs();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].1.contains("max_tracked"));
    // Warned once only.
    run(&mut p, vec![sum("m", points)]);
    assert!(testing::take_logs().is_empty());
    assert_eq!(p.tracker.total(), 5);
}

#[test]
fn reset_interval_forgets_the_seen_values() {
    testing::set_now(1_000_000_000);
    let mut p = plugin(r#"{"reset_interval": "1m", "limits": [{"key": "k", "max_values": 1}]}"#);
    let (_, out) = run(
        &mut p,
        vec![sum("m", vec![vec![kv("k", "a")], vec![kv("k", "b")]])],
    );
    assert_eq!(out[1], vec!["k=overflow"]);
    let t0 = 1_000_000_000;
    p.tick(t0 + 30_000_000_000).ok();
    let (_, out) = run(&mut p, vec![sum("m", vec![vec![kv("k", "b")]])]);
    assert_eq!(out[0], vec!["k=overflow"]);
    p.tick(t0 + 61_000_000_000).ok();
    assert_eq!(p.tracker.total(), 0);
    let (_, out) = run(&mut p, vec![sum("m", vec![vec![kv("k", "b")]])]);
    assert_eq!(out[0], vec!["k=b"]);
    // The counts are cumulative and survive the reset.
    assert_eq!(p.counts.total(), 2);
    testing::take_emitted();
}

// ---- telemetry and state -----------------------------------------------------------------

#[test]
fn tick_emits_cumulative_overflow_counts() {
    testing::set_now(5);
    testing::take_emitted();
    let mut p = plugin(r#"{"limits": [{"key": "k", "max_values": 1}, {"max_series": 1}]}"#);
    p.tick(10).ok();
    assert!(testing::take_emitted().is_empty(), "nothing to report yet");
    run(
        &mut p,
        vec![
            sum(
                "m",
                vec![vec![kv("k", "a")], vec![kv("k", "b")], vec![kv("k", "c")]],
            ),
            sum("n", vec![vec![kv("x", "1")], vec![kv("x", "2")]]),
        ],
    );
    p.tick(20).ok();
    let mut got = emitted_overflows();
    got.sort();
    assert_eq!(
        got,
        vec![
            // b's value overflowed, and then its set {k=overflow} was a second series.
            ("m".into(), "*".into(), 2),
            ("m".into(), "k".into(), 2),
            ("n".into(), "*".into(), 1),
        ]
    );
    run(&mut p, vec![sum("m", vec![vec![kv("k", "d")]])]);
    p.tick(30).ok();
    let got = emitted_overflows();
    assert!(got.contains(&("m".into(), "k".into(), 3)), "{got:?}");
    assert!(got.contains(&("n".into(), "*".into(), 1)), "{got:?}");
}

#[test]
fn counters_are_bounded() {
    let mut c = Counts::default();
    for i in 0..MAX_COUNTERS + 10 {
        c.add(&format!("m{i}"), "k", 1);
    }
    assert_eq!(c.0.len(), MAX_COUNTERS + 1);
    assert_eq!(c.0.get(&(OTHER.to_string(), OTHER.to_string())), Some(&10));
    assert_eq!(c.total(), (MAX_COUNTERS + 10) as u64);
}

#[test]
fn snapshot_and_restore_carry_seen_sets_and_counts() {
    testing::set_now(100);
    let config = r#"{"limits": [{"key": "k", "max_values": 2}, {"metric": "m", "max_series": 3}]}"#;
    let mut p = plugin(config);
    run(
        &mut p,
        vec![sum(
            "m",
            vec![vec![kv("k", "a")], vec![kv("k", "b")], vec![kv("k", "c")]],
        )],
    );
    let state = p.snapshot();
    testing::set_now(999);
    let mut q = plugin(config);
    assert_eq!(q.restore(&state), Ok(()));
    assert_eq!(q.start, 100);
    assert_eq!(q.counts.0, p.counts.0);
    assert_eq!(q.tracker.total(), p.tracker.total());
    // a and b are known: they pass; d is new and over the cap.
    let (verdict, out) = run(
        &mut q,
        vec![sum("m", vec![vec![kv("k", "b")], vec![kv("k", "d")]])],
    );
    assert_eq!(verdict, Verdict::Modified);
    assert_eq!(out, vec![vec!["k=b"], vec!["k=overflow"]]);
    // An empty state changes nothing; a broken one is an error.
    assert_eq!(q.restore(&[]), Ok(()));
    assert!(matches!(q.restore(b"not json"), Err(Error::Input(_))));
}

#[test]
fn restore_respects_the_new_config() {
    let mut p = plugin(r#"{"limits": [{"key": "k", "max_values": 10}, {"max_series": 10}]}"#);
    let points = (0..10).map(|i| vec![kv("k", &i.to_string())]).collect();
    run(&mut p, vec![sum("m", points)]);
    assert_eq!(p.tracker.total(), 20);
    let state = p.snapshot();
    // Smaller caps, no series limit, a smaller budget.
    let mut q = plugin(r#"{"max_tracked": 4, "limits": [{"key": "k", "max_values": 3}]}"#);
    assert_eq!(q.restore(&state), Ok(()));
    assert_eq!(q.tracker.total(), 3);
    let mut r = plugin(r#"{"max_tracked": 2, "limits": [{"key": "k", "max_values": 3}]}"#);
    assert_eq!(r.restore(&state), Ok(()));
    assert_eq!(r.tracker.total(), 2);
}

#[test]
fn hashes_are_stable_and_order_independent() {
    // Part of the state: must not change between versions.
    assert_eq!(
        value_hash(string_value("a").as_ref()),
        value_hash(string_value("a").as_ref())
    );
    assert_ne!(
        value_hash(string_value("5").as_ref()),
        value_hash(Some(&AnyValue {
            value: Some(any_value::Value::IntValue(5))
        }))
    );
    assert_eq!(
        series_hash(&[kv("a", "1"), kv("b", "2")]),
        series_hash(&[kv("b", "2"), kv("a", "1")])
    );
    assert_ne!(
        series_hash(&[kv("a", "1b"), kv("c", "2")]),
        series_hash(&[kv("a", "1"), kv("bc", "2")])
    );
    let mut h = tracker::StableHasher::new();
    h.write(b"sluice");
    assert_eq!(h.finish(), 13_589_978_811_074_264_380);
}

#[test]
fn without_limits_or_keys_nothing_changes() {
    let mut p = plugin(r#"{"normalize": {"keys": []}}"#);
    let (verdict, _) = run(&mut p, vec![sum("m", vec![vec![kv("k", "1")]])]);
    assert_eq!(verdict, Verdict::Unchanged);
    p.tick(1).ok();
    assert!(testing::take_emitted().is_empty());
}

// ---- config ------------------------------------------------------------------------------

#[test]
fn config_errors() {
    assert!(config_error(r#"{"limit": []}"#).contains("unknown field `limit`"));
    assert!(config_error(r#"{"normalize": {"key": ["a"]}}"#).contains("unknown field `key`"));
    assert!(
        config_error(r#"{"limits": [{"key": "k", "max_values": 1, "extra": 1}]}"#)
            .contains("unknown field `extra`")
    );
    assert!(
        config_error(r#"{"normalize": {"patterns": [{"regex": "(unclosed"}]}}"#)
            .contains("normalize.patterns[0].regex: invalid regex")
    );
    assert!(config_error(r#"{"limits": [{"key": "k"}]}"#).contains("needs `max_values`"));
    assert!(config_error(r#"{"limits": [{"key": "k", "max_values": 0}]}"#).contains("at least 1"));
    assert!(config_error(r#"{"limits": [{"max_values": 3}]}"#).contains("needs the `key`"));
    assert!(
        config_error(r#"{"limits": [{"key": "k", "max_values": 1, "max_series": 2}]}"#)
            .contains("takes no `key`")
    );
    assert!(config_error(r#"{"limits": [{"metric": "m"}]}"#).contains("limits[0]"));
    assert!(config_error(r#"{"limits": [{"metric": "a*b", "max_series": 1}]}"#).contains("`*`"));
    assert!(
        config_error(r#"{"limits": [{"max_series": 1}, {"metric": "*", "max_series": 2}]}"#)
            .contains("limits[1]: a limit for metric `*` (max_series) is already given")
    );
    assert!(config_error(r#"{"reset_interval": "soon"}"#).contains("invalid duration"));
    assert!(config_error(r#"{"reset_interval": "500ms"}"#).contains("shorter than 1s"));
    assert!(config_error(r#"{"max_tracked": 0}"#).contains("max_tracked"));
    assert!(config_error(r#"{"overflow_value": ""}"#).contains("overflow_value"));
    assert!(config_error(r#"{"normalize": {"min_hex_length": 4}}"#).contains("min_hex_length"));
    assert!(
        config_error(r#"{"normalize": {"signals": ["profiles"]}}"#).contains("unknown variant")
    );
    assert!(config_error("[1]").contains("mapping"));
    // Empty and minimal configs load.
    plugin("");
    plugin("{}");
    plugin(r#"{"reset_interval": "1h", "limits": [{"metric": "http.*", "max_series": 500}]}"#);
}

#[test]
fn durations() {
    assert_eq!(config::parse_duration("90s"), Some(90_000_000_000));
    assert_eq!(config::parse_duration("1h"), Some(3_600_000_000_000));
    assert_eq!(config::parse_duration("2d"), Some(172_800_000_000_000));
    assert_eq!(config::parse_duration("1h30m"), None);
    assert_eq!(config::parse_duration("h"), None);
    assert_eq!(config::parse_duration("99999999999999999999d"), None);
}

#[test]
fn describe_declares_a_stateful_plugin() {
    let info = LimitCardinality::describe();
    assert_eq!(info.name, "limit_cardinality");
    assert!(info.stateful);
    assert!(info.signals.contains(&Signal::Metrics));
}
