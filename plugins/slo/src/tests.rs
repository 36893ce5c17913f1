use super::*;
use sluice_sdk::otlp::resource::v1::Resource;
use sluice_sdk::otlp::trace::v1::{ResourceSpans, ScopeSpans, Status};
use sluice_sdk::prost::Message;
use sluice_sdk::testing;

const CONFIG: &str = r#"{"slos": [
  {"name": "avail", "service": "checkout", "objective": 99.9, "window": "30d",
   "sli": {"availability": {"span_kind": "server"}}},
  {"name": "fast", "service": "checkout", "objective": 99, "window": "28d",
   "sli": {"latency": {"threshold_ms": 300, "route": "/pay"}}},
  {"name": "ratio", "objective": 99.5, "sli": {"ratio": {"bad": "x", "total": "y"}}}
]}"#;

fn with_attribute(mut span: Span, key: &str, value: &str) -> Span {
    span.attributes.push(string_kv(key, value));
    span
}

fn span(kind: i32, error: bool, status_code: Option<i64>, millis: u64, route: &str) -> Span {
    let mut attributes = vec![string_kv("http.route", route)];
    if let Some(c) = status_code {
        attributes.push(KeyValue {
            key: "http.response.status_code".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(c)),
            }),
            ..Default::default()
        });
    }
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        kind,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 1_000 + millis * 1_000_000,
        status: error.then(|| Status {
            code: StatusCode::Error as i32,
            ..Default::default()
        }),
        attributes,
        ..Default::default()
    }
}

fn batch(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", service)],
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

fn values(req: &ExportMetricsServiceRequest, metric: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let m = req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == metric)
        .expect("metric present");
    let points = match &m.data {
        Some(metric::Data::Sum(s)) => &s.data_points,
        Some(metric::Data::Gauge(g)) => &g.data_points,
        _ => panic!("unexpected type"),
    };
    points
        .iter()
        .map(|p| {
            let labels = p
                .attributes
                .iter()
                .map(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => (a.key.clone(), s.clone()),
                    _ => (a.key.clone(), String::new()),
                })
                .collect();
            let v = match p.value {
                Some(number_data_point::Value::AsInt(i)) => i as f64,
                Some(number_data_point::Value::AsDouble(d)) => d,
                None => f64::NAN,
            };
            (labels, v)
        })
        .collect()
}

fn value_of(points: &[(Vec<(String, String)>, f64)], want: &[(&str, &str)]) -> f64 {
    points
        .iter()
        .find(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| *v)
        .expect("point present")
}

#[test]
fn counts_availability_and_latency_and_passes_batches_unchanged() {
    let mut p = SloPlugin::new(CONFIG).expect("valid config");
    testing::set_now(10 * NANOS_PER_MINUTE);
    let mut b = batch(
        "checkout",
        vec![
            span(2, false, Some(200), 100, "/pay"),
            span(2, true, None, 100, "/pay"),
            span(2, false, Some(503), 500, "/pay"),
            span(3, false, Some(200), 900, "/other"), // client span: not in `avail`; route not /pay
        ],
    );
    assert_eq!(p.traces(&mut b), Ok(Verdict::Unchanged));
    let mut other = batch("inventory", vec![span(2, true, None, 1, "/pay")]);
    p.traces(&mut other).expect("processes");

    p.tick(10 * NANOS_PER_MINUTE).expect("ticks");
    let emitted = testing::take_emitted();
    assert_eq!(emitted.len(), 1);
    let req = ExportMetricsServiceRequest::decode(emitted[0].1.as_slice()).expect("metrics");
    let events = values(&req, "sluice.slo.events");
    assert_eq!(
        value_of(&events, &[("slo", "avail"), ("outcome", "good")]),
        1.0
    );
    assert_eq!(
        value_of(&events, &[("slo", "avail"), ("outcome", "bad")]),
        2.0
    );
    assert_eq!(
        value_of(&events, &[("slo", "fast"), ("outcome", "good")]),
        2.0
    );
    assert_eq!(
        value_of(&events, &[("slo", "fast"), ("outcome", "bad")]),
        1.0
    );
    // Ratio SLIs are Prometheus' job.
    assert!(
        !events
            .iter()
            .any(|(l, _)| l.iter().any(|(k, v)| k == "slo" && v == "ratio"))
    );

    let burn = values(&req, "sluice.slo.burn_rate");
    // 2 bad of 3 against a 0.1 % budget.
    let expected = (2.0 / 3.0) / (1.0 - 0.999);
    assert!((value_of(&burn, &[("slo", "avail"), ("window", "5m")]) - expected).abs() < 1e-6);
    let remaining = values(&req, "sluice.slo.error_budget.remaining");
    assert!(value_of(&remaining, &[("slo", "avail")]) < 0.0);
}

#[test]
fn windows_forget_old_minutes_and_zero_traffic_has_a_full_budget() {
    let mut p = SloPlugin::new(CONFIG).expect("valid config");
    testing::set_now(0);
    p.traces(&mut batch("checkout", vec![span(2, true, None, 1, "/pay")]))
        .expect("processes");
    // Ten minutes later the 5m window is clean, the 30m window is not.
    let later = 10 * NANOS_PER_MINUTE;
    p.tick(later).expect("ticks");
    let req = ExportMetricsServiceRequest::decode(testing::take_emitted()[0].1.as_slice())
        .expect("metrics");
    let burn = values(&req, "sluice.slo.burn_rate");
    assert_eq!(value_of(&burn, &[("slo", "avail"), ("window", "5m")]), 0.0);
    assert!(value_of(&burn, &[("slo", "avail"), ("window", "30m")]) > 0.0);
    // No traffic at all for `fast`: nothing spent, no division by zero.
    let remaining = values(&req, "sluice.slo.error_budget.remaining");
    assert_eq!(value_of(&remaining, &[("slo", "fast")]), 1.0);
}

#[test]
fn counts_survive_snapshot_and_restore() {
    let mut p = SloPlugin::new(CONFIG).expect("valid config");
    testing::set_now(NANOS_PER_MINUTE);
    p.traces(&mut batch(
        "checkout",
        vec![span(2, false, Some(200), 1, "/pay")],
    ))
    .expect("processes");
    let state = p.snapshot();
    let mut q = SloPlugin::new(CONFIG).expect("valid config");
    q.restore(&state).expect("restores");
    assert_eq!(q.counts, p.counts);
    assert!(q.restore(b"not json").is_err());
}

#[test]
fn config_errors_name_the_slo() {
    let bad = CONFIG.replace("99.9", "100.5");
    assert!(matches!(SloPlugin::new(&bad), Err(Error::Config(m)) if m.contains("avail")));
    let two = r#"{"slos": [{"name": "x", "objective": 99, "sli": {"availability": {}, "latency": {"threshold_ms": 1}}}]}"#;
    assert!(matches!(SloPlugin::new(two), Err(Error::Config(m)) if m.contains("exactly one")));
    let kind = r#"{"slos": [{"name": "x", "objective": 99, "sli": {"availability": {"span_kind": "sever"}}}]}"#;
    assert!(matches!(SloPlugin::new(kind), Err(Error::Config(m)) if m.contains("sever")));
    assert!(matches!(
        SloPlugin::new(r#"{"slo": []}"#),
        Err(Error::Config(_))
    ));
}

#[test]
fn reading_in_place_counts_exactly_as_the_decoded_path() {
    let spans = || {
        vec![
            span(2, false, Some(200), 100, "/pay"),
            span(2, true, Some(500), 100, "/pay"),
            span(2, false, Some(200), 900, "/pay"),
            span(2, false, Some(503), 100, "/pay"),
            span(3, false, None, 10, "/other"),
            span(2, false, None, 10, "/other"),
            // The older semantic convention's key, as a string: bad.
            with_attribute(
                span(2, false, None, 10, "/other"),
                "http.status_code",
                "502",
            ),
            // Both keys: the current one counts (good).
            with_attribute(
                span(2, false, Some(200), 10, "/other"),
                "http.status_code",
                "500",
            ),
        ]
    };
    let mut decoded = SloPlugin::new(CONFIG).expect("valid config");
    let mut viewed = SloPlugin::new(CONFIG).expect("valid config");
    for service in ["checkout", "other"] {
        let mut b = batch(service, spans());
        assert_eq!(decoded.traces(&mut b).expect("ok"), Verdict::Unchanged);
        let bytes = b.encode_to_vec();
        assert_eq!(
            viewed.read_traces(&TracesView::new(&bytes)).expect("ok"),
            Some(Verdict::Unchanged)
        );
    }
    assert_eq!(decoded.counts, viewed.counts);
    let avail = &viewed.counts["avail"];
    assert_eq!((avail.good, avail.bad), (4, 3));
    let fast = &viewed.counts["fast"];
    assert_eq!((fast.good, fast.bad), (3, 1));
}
