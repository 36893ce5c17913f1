use super::*;
use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_sdk::otlp::metrics::v1::{Metric, metric, number_data_point};
use sluice_sdk::otlp::resource::v1::Resource as OtlpResource;
use sluice_sdk::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use sluice_sdk::testing;

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SECOND;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

/// A span with a unique id, of `millis` duration.
fn span(id: u32, name: &str, kind: i32, error: bool, millis: u64) -> Span {
    let mut trace_id = vec![7; 16];
    trace_id[..4].copy_from_slice(&id.to_be_bytes());
    let mut span_id = vec![9; 8];
    span_id[..4].copy_from_slice(&id.to_be_bytes());
    Span {
        trace_id,
        span_id,
        name: name.into(),
        kind,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + millis * 1_000_000,
        status: error.then(|| Status {
            code: 2,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn batch(service: &str, resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    let mut attributes = vec![s("service.name", service)];
    attributes.extend(resource);
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(OtlpResource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn plugin(config: &str) -> SpanMetrics {
    testing::set_now(T0);
    let _ = testing::take_emitted();
    SpanMetrics::new(config).expect("config is valid")
}

/// Ticks once to start the interval, then past it; returns what was emitted, decoded.
fn flush(p: &mut SpanMetrics, at: u64) -> Vec<ExportMetricsServiceRequest> {
    testing::set_now(at);
    p.tick(at).expect("tick");
    let mut out = Vec::new();
    // Drain a flush cut into several requests.
    for i in 0..64 {
        let emitted = testing::take_emitted();
        if emitted.is_empty() && i > 0 {
            break;
        }
        for (signal, bytes) in emitted {
            assert_eq!(signal, Signal::Metrics);
            assert!(
                bytes.len() <= 4 << 20,
                "one emit stays under the host's cap"
            );
            out.push(ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("valid OTLP"));
        }
        p.tick(at).expect("tick");
    }
    out
}

fn metrics<'a>(reqs: &'a [ExportMetricsServiceRequest], name: &str) -> Vec<&'a Metric> {
    reqs.iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name == name)
        .collect()
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|a| a.key == key).map(|a| {
        match a.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            Some(any_value::Value::BoolValue(b)) => b.to_string(),
            other => format!("{other:?}"),
        }
    })
}

/// (attributes, value) of every calls point.
fn calls(reqs: &[ExportMetricsServiceRequest]) -> Vec<(Vec<KeyValue>, i64)> {
    metrics(reqs, "traces.span.metrics.calls")
        .into_iter()
        .flat_map(|m| match &m.data {
            Some(metric::Data::Sum(sum)) => sum.data_points.clone(),
            _ => panic!("calls is a sum"),
        })
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => (p.attributes, v),
            other => panic!("calls are integers, got {other:?}"),
        })
        .collect()
}

fn calls_where(reqs: &[ExportMetricsServiceRequest], key: &str, value: &str) -> i64 {
    calls(reqs)
        .iter()
        .filter(|(a, _)| attr(a, key).as_deref() == Some(value))
        .map(|(_, v)| v)
        .sum()
}

fn first_flush(p: &mut SpanMetrics) -> Vec<ExportMetricsServiceRequest> {
    testing::set_now(T0);
    p.tick(T0).expect("tick");
    assert!(
        testing::take_emitted().is_empty(),
        "nothing before the interval"
    );
    flush(p, T0 + 15 * SECOND)
}

#[test]
fn defaults_follow_the_collector() {
    let c = Config::parse("{}").expect("empty config");
    assert_eq!(c.namespace, "traces.span.metrics");
    assert_eq!(c.metric("calls"), "traces.span.metrics.calls");
    let Histogram::Explicit(bounds) = &c.histogram else {
        panic!("explicit by default")
    };
    assert_eq!(bounds.len(), 16);
    assert!((bounds[0] - 0.002).abs() < 1e-12 && (bounds[15] - 15.0).abs() < 1e-9);
    assert_eq!(c.flush_interval_nanos, 15 * SECOND);
    assert!(!c.delta && c.exemplars);
    let ms = Config::parse(
        r#"{"histogram": {"unit": "ms", "explicit": {"buckets": ["100us", "1ms", 250, "1.5s"]}}}"#,
    )
    .expect("ms buckets");
    assert_eq!(
        ms.histogram,
        Histogram::Explicit(vec![0.1, 1.0, 250.0, 1500.0])
    );
}

#[test]
fn bad_configs_say_what_is_wrong() {
    for (config, says) in [
        (r#"{"histogram": {"unit": "min"}}"#, "histogram.unit"),
        (
            r#"{"histogram": {"explicit": {}, "exponential": {}}}"#,
            "choose one",
        ),
        (
            r#"{"histogram": {"explicit": {"buckets": ["1s", "1ms"]}}}"#,
            "increase strictly",
        ),
        (
            r#"{"histogram": {"explicit": {"buckets": ["soon"]}}}"#,
            "not a duration",
        ),
        (
            r#"{"histogram": {"explicit": {"buckets": []}}}"#,
            "between 1 and",
        ),
        (
            r#"{"histogram": {"exponential": {"max_size": 1}}}"#,
            "max_size",
        ),
        (r#"{"max_series": 1000000}"#, "max_series"),
        (r#"{"exclude_dimensions": ["span.nmae"]}"#, "not one of"),
        (r#"{"dimensions": [{"name": "span.kind"}]}"#, "given twice"),
        (
            r#"{"aggregation_temporality": "sometimes"}"#,
            "aggregation_temporality",
        ),
        (r#"{"metrics_flush_interval": "10ms"}"#, "at least 1s"),
        (r#"{"dimension": []}"#, "unknown field"),
    ] {
        match SpanMetrics::new(config) {
            Err(Error::Config(m)) => assert!(m.contains(says), "{config}: {m}"),
            other => panic!("{config}: expected a config error, got {other:?}"),
        }
    }
    // The Collector's spellings are accepted.
    let c = Config::parse(
        r#"{"aggregation_temporality": "AGGREGATION_TEMPORALITY_DELTA", "aggregation_cardinality_limit": 10,
            "dimensions_cache_size": 1000, "exemplars": {"enabled": false, "max_per_data_point": 5}}"#,
    )
    .expect("collector config");
    assert!(c.delta && !c.exemplars);
    assert_eq!(c.max_series, 10);
}

#[test]
fn counts_calls_and_durations_per_service_name_kind_and_status() {
    let mut p = plugin("{}");
    let mut b = batch(
        "checkout",
        vec![],
        vec![
            span(1, "GET /pay", 2, false, 3),
            span(2, "GET /pay", 2, false, 30),
            span(3, "GET /pay", 2, true, 3000),
            span(4, "SELECT", 3, false, 1),
        ],
    );
    assert_eq!(p.traces(&mut b).expect("counts"), Verdict::Unchanged);
    let out = first_flush(&mut p);
    let all = calls(&out);
    assert_eq!(all.len(), 3, "{all:?}");
    let ok = all
        .iter()
        .find(|(a, _)| {
            attr(a, "span.name").as_deref() == Some("GET /pay")
                && attr(a, "status.code").as_deref() == Some("STATUS_CODE_UNSET")
        })
        .expect("ok series");
    assert_eq!(ok.1, 2);
    assert_eq!(attr(&ok.0, "service.name").as_deref(), Some("checkout"));
    assert_eq!(
        attr(&ok.0, "span.kind").as_deref(),
        Some("SPAN_KIND_SERVER")
    );
    assert_eq!(calls_where(&out, "status.code", "STATUS_CODE_ERROR"), 1);
    assert_eq!(calls_where(&out, "span.kind", "SPAN_KIND_CLIENT"), 1);

    let duration = metrics(&out, "traces.span.metrics.duration");
    assert_eq!(duration[0].unit, "s");
    let Some(metric::Data::Histogram(h)) = &duration[0].data else {
        panic!("explicit histogram")
    };
    let point = h
        .data_points
        .iter()
        .find(|p| {
            attr(&p.attributes, "span.name").as_deref() == Some("GET /pay")
                && attr(&p.attributes, "status.code").as_deref() == Some("STATUS_CODE_UNSET")
        })
        .expect("ok histogram");
    assert_eq!(point.count, 2);
    assert!((point.sum.unwrap_or_default() - 0.033).abs() < 1e-9);
    // 3 ms in (2ms, 4ms], 30 ms in (10ms, 50ms].
    assert_eq!(point.bucket_counts[1], 1);
    assert_eq!(point.bucket_counts[5], 1);
    assert_eq!(point.bucket_counts.iter().sum::<u64>(), 2);
    assert_eq!(point.start_time_unix_nano, T0);
    assert_eq!(point.time_unix_nano, T0 + 15 * SECOND);
    // The resource comes along (service.name becomes job in Prometheus).
    let rm = &out[0].resource_metrics[0];
    let resource = rm.resource.as_ref().expect("resource");
    assert_eq!(
        attr(&resource.attributes, "service.name").as_deref(),
        Some("checkout")
    );
}

#[test]
fn nothing_is_emitted_before_the_interval_and_cumulative_counts_grow() {
    let mut p = plugin(r#"{"metrics_flush_interval": "5s"}"#);
    p.traces(&mut batch("a", vec![], vec![span(1, "x", 2, false, 1)]))
        .expect("counts");
    p.tick(T0).expect("tick");
    p.tick(T0 + 4 * SECOND).expect("tick");
    assert!(testing::take_emitted().is_empty());
    let out = flush(&mut p, T0 + 5 * SECOND);
    assert_eq!(calls_where(&out, "span.name", "x"), 1);
    p.traces(&mut batch("a", vec![], vec![span(2, "x", 2, false, 1)]))
        .expect("counts");
    let out = flush(&mut p, T0 + 10 * SECOND);
    assert_eq!(calls_where(&out, "span.name", "x"), 2, "cumulative");
    // Cumulative series are reported every flush, counted or not.
    let out = flush(&mut p, T0 + 15 * SECOND);
    assert_eq!(calls_where(&out, "span.name", "x"), 2);
}

#[test]
fn delta_reports_what_was_counted_since_the_last_flush() {
    let mut p = plugin(r#"{"aggregation_temporality": "delta", "metrics_flush_interval": "1s"}"#);
    p.tick(T0).expect("tick");
    p.traces(&mut batch(
        "a",
        vec![],
        vec![span(1, "x", 2, false, 1), span(2, "y", 2, false, 1)],
    ))
    .expect("counts");
    let out = flush(&mut p, T0 + SECOND);
    assert_eq!(calls_where(&out, "span.name", "x"), 1);
    let Some(metric::Data::Sum(sum)) = &metrics(&out, "traces.span.metrics.calls")[0].data else {
        panic!("sum")
    };
    assert_eq!(sum.aggregation_temporality, 1, "delta");
    p.traces(&mut batch("a", vec![], vec![span(3, "x", 2, false, 1)]))
        .expect("counts");
    let out = flush(&mut p, T0 + 2 * SECOND);
    assert_eq!(calls_where(&out, "span.name", "x"), 1);
    assert_eq!(calls_where(&out, "span.name", "y"), 0, "y had nothing new");
    let point = calls(&out);
    assert_eq!(point.len(), 1);
    let Some(metric::Data::Sum(sum)) = &metrics(&out, "traces.span.metrics.calls")[0].data else {
        panic!("sum")
    };
    assert_eq!(sum.data_points[0].start_time_unix_nano, T0 + SECOND);
}

#[test]
fn dimensions_come_from_the_span_then_the_resource_then_the_default() {
    let mut p = plugin(
        r#"{"dimensions": [{"name": "http.response.status_code"}, {"name": "region", "default": "none"},
                          {"name": "deployment.environment"}],
            "span_name_from_route": true}"#,
    );
    let mut with_route = span(1, "GET", 2, false, 1);
    with_route.attributes = vec![
        s("http.route", "/users/{id}"),
        kv("http.response.status_code", any_value::Value::IntValue(503)),
    ];
    let mut plain = span(2, "GET", 2, false, 1);
    plain.attributes = vec![s("region", "eu")];
    p.traces(&mut batch(
        "api",
        vec![s("deployment.environment", "prod")],
        vec![with_route, plain],
    ))
    .expect("counts");
    let out = first_flush(&mut p);
    let all = calls(&out);
    let routed = all
        .iter()
        .find(|(a, _)| attr(a, "span.name").as_deref() == Some("/users/{id}"))
        .expect("span name from the route");
    assert_eq!(
        attr(&routed.0, "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(attr(&routed.0, "region").as_deref(), Some("none"));
    assert_eq!(
        attr(&routed.0, "deployment.environment").as_deref(),
        Some("prod")
    );
    let plain = all
        .iter()
        .find(|(a, _)| attr(a, "span.name").as_deref() == Some("GET"))
        .expect("span name kept");
    assert_eq!(attr(&plain.0, "region").as_deref(), Some("eu"));
    assert_eq!(
        attr(&plain.0, "http.response.status_code"),
        None,
        "no default: left out"
    );
}

#[test]
fn excluded_dimensions_merge_series() {
    let mut p = plugin(r#"{"exclude_dimensions": ["status.code", "span.kind"]}"#);
    p.traces(&mut batch(
        "a",
        vec![],
        vec![span(1, "x", 2, false, 1), span(2, "x", 3, true, 1)],
    ))
    .expect("counts");
    let out = first_flush(&mut p);
    let all = calls(&out);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1, 2);
    assert_eq!(attr(&all[0].0, "status.code"), None);
}

#[test]
fn a_span_is_counted_once_however_often_it_passes() {
    let mut p = plugin("{}");
    let spans: Vec<Span> = (0..100).map(|i| span(i, "x", 2, false, 1)).collect();
    let mut b = batch("a", vec![], spans);
    for _ in 0..3 {
        p.traces(&mut b).expect("counts");
    }
    // Without ids, spans cannot be told apart and are all counted.
    let mut anonymous = span(0, "anon", 2, false, 1);
    anonymous.trace_id.clear();
    anonymous.span_id.clear();
    let mut b2 = batch("a", vec![], vec![anonymous.clone(), anonymous]);
    p.traces(&mut b2).expect("counts");
    let out = first_flush(&mut p);
    assert_eq!(calls_where(&out, "span.name", "x"), 100);
    assert_eq!(calls_where(&out, "span.name", "anon"), 2);
    let dups = metrics(&out, "sluice.spanmetrics.duplicates");
    let Some(metric::Data::Sum(sum)) = &dups[0].data else {
        panic!("sum")
    };
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsInt(200))
    );

    // The remembered spans are bounded: a small window forgets old spans.
    let mut p = plugin(r#"{"dedupe_window": 10}"#);
    let spans: Vec<Span> = (0..100).map(|i| span(i, "x", 2, false, 1)).collect();
    p.traces(&mut batch("a", vec![], spans.clone()))
        .expect("counts");
    assert!(p.seen_len() <= 10);
    p.traces(&mut batch("a", vec![], spans)).expect("counts");
    let out = first_flush(&mut p);
    assert!(calls_where(&out, "span.name", "x") > 100);
}

#[test]
fn series_beyond_max_series_go_to_the_overflow_series() {
    let mut p = plugin(r#"{"max_series": 3}"#);
    let spans: Vec<Span> = (0..50)
        .map(|i| span(i, &format!("op-{i}"), 2, false, 1))
        .collect();
    p.traces(&mut batch("a", vec![], spans)).expect("counts");
    assert_eq!(p.store.series.len(), 3);
    let out = first_flush(&mut p);
    let all = calls(&out);
    assert_eq!(all.len(), 4, "three series and the overflow series");
    assert_eq!(
        all.iter().map(|(_, v)| v).sum::<i64>(),
        50,
        "every span counted"
    );
    assert_eq!(calls_where(&out, "otel.metric.overflow", "true"), 47);
    let Some(metric::Data::Sum(sum)) = &metrics(&out, "sluice.spanmetrics.overflow")[0].data else {
        panic!("sum")
    };
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsInt(47))
    );
}

#[test]
fn exemplars_carry_the_trace_of_the_latest_span_per_bucket() {
    let mut p = plugin("{}");
    p.traces(&mut batch(
        "a",
        vec![],
        vec![span(1, "x", 2, false, 3), span(2, "x", 2, false, 3000)],
    ))
    .expect("counts");
    let out = first_flush(&mut p);
    let Some(metric::Data::Histogram(h)) = &metrics(&out, "traces.span.metrics.duration")[0].data
    else {
        panic!("histogram")
    };
    let ex = &h.data_points[0].exemplars;
    assert_eq!(ex.len(), 2);
    let slow = ex
        .iter()
        .find(|e| e.value == Some(exemplar_value(3.0)))
        .expect("3 s exemplar");
    assert_eq!(slow.trace_id, span(2, "x", 2, false, 1).trace_id);
    assert_eq!(slow.span_id, span(2, "x", 2, false, 1).span_id);
    let Some(metric::Data::Sum(sum)) = &metrics(&out, "traces.span.metrics.calls")[0].data else {
        panic!("sum")
    };
    assert_eq!(sum.data_points[0].exemplars.len(), 1);
    // Each exemplar is sent once.
    let out = flush(&mut p, T0 + 30 * SECOND);
    let Some(metric::Data::Histogram(h)) = &metrics(&out, "traces.span.metrics.duration")[0].data
    else {
        panic!("histogram")
    };
    assert!(h.data_points[0].exemplars.is_empty());
}

fn exemplar_value(v: f64) -> sluice_sdk::otlp::metrics::v1::exemplar::Value {
    sluice_sdk::otlp::metrics::v1::exemplar::Value::AsDouble(v)
}

#[test]
fn exponential_histograms_hold_every_value_within_max_size() {
    let mut p = plugin(r#"{"histogram": {"exponential": {"max_size": 20}}}"#);
    let spans: Vec<Span> = (0..200u32)
        .map(|i| span(i, "x", 2, false, 1 + u64::from(i) * 37))
        .collect();
    p.traces(&mut batch("a", vec![], spans)).expect("counts");
    let out = first_flush(&mut p);
    let Some(metric::Data::ExponentialHistogram(h)) =
        &metrics(&out, "traces.span.metrics.duration")[0].data
    else {
        panic!("exponential histogram")
    };
    let point = &h.data_points[0];
    assert_eq!(point.count, 200);
    let positive = point.positive.as_ref().expect("buckets");
    assert!(positive.bucket_counts.len() <= 20);
    assert_eq!(positive.bucket_counts.iter().sum::<u64>(), 200);
    assert!((point.min.unwrap_or_default() - 0.001).abs() < 1e-12);
}

#[test]
fn exponential_buckets_contain_their_values() {
    let mut e = histogram::Exponential::default();
    for v in [0.001, 0.0015, 0.25, 0.5, 1.0, 7.3, 15.0] {
        let mut one = histogram::Exponential::default();
        one.record(v, 160);
        let (lo, hi) = one.bounds(one.offset);
        assert!(
            lo < v * (1.0 + 1e-9) && v <= hi * (1.0 + 1e-9),
            "{v} in ({lo}, {hi}]"
        );
        e.record(v, 8);
    }
    assert!(e.counts.len() <= 8);
    assert_eq!(e.total(), 7);
    for (k, c) in e.counts.iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let (lo, hi) = e.bounds(e.offset + k as i32);
        assert!(lo > 0.0 && hi > lo);
    }
    let (lo, _) = e.bounds(e.offset);
    let (_, hi) = e.bounds(e.offset + e.counts.len() as i32 - 1);
    assert!(lo <= 0.001 * (1.0 + 1e-9) && hi >= 15.0 * (1.0 - 1e-9));
    e.record(0.0, 8);
    assert_eq!(e.zero_count, 1);
}

#[test]
fn counts_survive_a_reload_with_the_same_config() {
    let config = r#"{"dimensions": [{"name": "region"}]}"#;
    let mut p = plugin(config);
    p.traces(&mut batch(
        "a",
        vec![s("region", "eu")],
        (0..5).map(|i| span(i, "x", 2, false, 1)).collect(),
    ))
    .expect("counts");
    let state = p.snapshot();
    assert!(!state.is_empty());
    let mut fresh = SpanMetrics::new(config).expect("config");
    fresh.restore(&state).expect("restores");
    fresh
        .traces(&mut batch(
            "a",
            vec![s("region", "eu")],
            vec![span(9, "x", 2, false, 1)],
        ))
        .expect("counts");
    assert_eq!(
        fresh.store.series.len(),
        1,
        "the same series, not a new one"
    );
    let out = first_flush(&mut fresh);
    assert_eq!(calls_where(&out, "span.name", "x"), 6);
    assert_eq!(calls_where(&out, "region", "eu"), 6);

    // Another shape of series starts afresh instead of mixing.
    let mut other = SpanMetrics::new("{}").expect("config");
    other.restore(&state).expect("restores");
    assert!(other.store.series.is_empty());
    assert!(other.restore(b"{not json").is_err());
}

#[test]
fn expired_series_are_dropped_with_their_resources() {
    let mut p = plugin(r#"{"metrics_expiration": "1m", "metrics_flush_interval": "15s"}"#);
    p.tick(T0).expect("tick");
    p.traces(&mut batch("old", vec![], vec![span(1, "x", 2, false, 1)]))
        .expect("counts");
    let out = flush(&mut p, T0 + 15 * SECOND);
    assert_eq!(calls_where(&out, "span.name", "x"), 1);
    testing::set_now(T0 + 70 * SECOND);
    p.traces(&mut batch("new", vec![], vec![span(2, "y", 2, false, 1)]))
        .expect("counts");
    let out = flush(&mut p, T0 + 75 * SECOND);
    assert_eq!(calls_where(&out, "span.name", "x"), 0, "expired");
    assert_eq!(calls_where(&out, "span.name", "y"), 1);
    assert_eq!(p.store.resource_table.iter().flatten().count(), 1);
}

#[test]
fn a_large_flush_is_cut_into_requests_under_the_emit_cap() {
    let mut p = plugin(r#"{"max_series": 20000}"#);
    let long = "n".repeat(200);
    for chunk in 0..20u32 {
        let spans: Vec<Span> = (0..1000u32)
            .map(|i| {
                let id = chunk * 1000 + i;
                span(id, &format!("{long}-{id}"), 2, false, 1)
            })
            .collect();
        p.traces(&mut batch("a", vec![], spans)).expect("counts");
    }
    assert_eq!(p.store.series.len(), 20000);
    let out = first_flush(&mut p);
    assert!(out.len() > 2, "cut into {} requests", out.len());
    assert_eq!(calls(&out).len(), 20000);
    let snapshot = p.snapshot();
    assert!(
        snapshot.len() < 16 << 20,
        "snapshot {} bytes",
        snapshot.len()
    );
}

#[test]
fn hostile_batches_fail_cleanly() {
    let mut p = plugin(r#"{"dimensions": [{"name": "k"}]}"#);
    // Truncated or garbage protobuf is an input error, not a panic.
    for bytes in [
        &[0x0a, 0xff, 0xff][..],
        &[0x0a, 0x05, 0x12, 0x03, 0x12, 0x01][..],
        &[0xff; 16][..],
    ] {
        assert!(p.read_traces(&TracesView::new(bytes)).is_err());
    }
    // Ids of odd lengths, huge names, non-string and nested dimension values.
    let mut odd = span(1, &"é".repeat(100_000), 9, false, 1);
    odd.trace_id = vec![1; 3];
    odd.span_id = vec![2; 40];
    odd.end_time_unix_nano = 0;
    odd.attributes = vec![kv("k", any_value::Value::ArrayValue(Default::default()))];
    let mut nan = span(2, "nan", 2, false, 1);
    nan.attributes = vec![kv("k", any_value::Value::DoubleValue(f64::NAN))];
    p.traces(&mut batch("a", vec![], vec![odd, nan]))
        .expect("counts");
    let state = p.snapshot();
    let mut again = SpanMetrics::new(r#"{"dimensions": [{"name": "k"}]}"#).expect("config");
    again
        .restore(&state)
        .expect("a snapshot with NaN and odd ids restores");
    let out = first_flush(&mut p);
    assert_eq!(calls(&out).len(), 2);
    assert_eq!(calls_where(&out, "k", "NaN"), 1);
}
