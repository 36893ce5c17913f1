use super::*;
use sluice_sdk::otlp::resource::v1::Resource;
use sluice_sdk::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use sluice_sdk::testing;

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SECOND;

fn s(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A span of trace `trace`, id `id`, parent `parent` (0: none), lasting `millis`.
fn span(trace: u8, id: u8, parent: u8, kind: i32, millis: u64) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![parent; 8]
        },
        name: "op".into(),
        kind,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + millis * 1_000_000,
        ..Default::default()
    }
}

fn failed(mut sp: Span) -> Span {
    sp.status = Some(Status {
        code: STATUS_ERROR,
        ..Default::default()
    });
    sp
}

fn with(mut sp: Span, key: &str, value: &str) -> Span {
    sp.attributes.push(s(key, value));
    sp
}

fn batch(parts: Vec<(&str, Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: parts
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![s("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn plugin(config: &str) -> ServiceGraph {
    testing::set_now(T0);
    let _ = testing::take_emitted();
    ServiceGraph::new(config).expect("valid config")
}

/// Ticks past the flush interval and decodes what was emitted.
fn flush(p: &mut ServiceGraph, at: u64) -> Vec<ExportMetricsServiceRequest> {
    testing::set_now(at);
    p.tick(at).expect("tick");
    let mut out = Vec::new();
    loop {
        let emitted = testing::take_emitted();
        if emitted.is_empty() {
            break;
        }
        for (_, bytes) in emitted {
            assert!(bytes.len() <= 4 << 20);
            out.push(ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("valid OTLP"));
        }
        p.tick(at).expect("tick");
    }
    out
}

fn started(config: &str) -> ServiceGraph {
    let mut p = plugin(config);
    p.tick(T0).expect("tick");
    p
}

fn labels(attrs: &[KeyValue]) -> Vec<(String, String)> {
    let mut l: Vec<(String, String)> = attrs
        .iter()
        .map(|a| {
            let v = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            };
            (a.key.clone(), v)
        })
        .collect();
    l.sort();
    l
}

/// (client, server, connection_type) -> value of a counter.
fn counter(out: &[ExportMetricsServiceRequest], name: &str) -> Vec<(Vec<(String, String)>, i64)> {
    out.iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.data_points.clone(),
            _ => panic!("{name} is a sum"),
        })
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => (labels(&p.attributes), v),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn edge(client: &str, server: &str, kind: &str) -> Vec<(String, String)> {
    let mut l = vec![
        ("client".to_string(), client.to_string()),
        ("connection_type".to_string(), kind.to_string()),
        ("server".to_string(), server.to_string()),
    ];
    l.sort();
    l
}

fn histograms(out: &[ExportMetricsServiceRequest], name: &str) -> Vec<HistogramDataPoint> {
    out.iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(metric::Data::Histogram(h)) => {
                assert_eq!(m.unit, "s");
                h.data_points.clone()
            }
            _ => panic!("{name} is a histogram"),
        })
        .collect()
}

#[test]
fn pairs_client_and_server_spans_in_any_order_and_batch() {
    let mut p = started("{}");
    // frontend -> checkout in one batch; checkout -> payments with the server half first, in
    // another batch.
    p.traces(&mut batch(vec![
        ("frontend", vec![span(1, 10, 0, SPAN_KIND_CLIENT, 30)]),
        ("checkout", vec![span(1, 11, 10, SPAN_KIND_SERVER, 20)]),
    ]))
    .expect("counts");
    p.traces(&mut batch(vec![(
        "payments",
        vec![failed(span(1, 13, 12, SPAN_KIND_SERVER, 5))],
    )]))
    .expect("counts");
    p.traces(&mut batch(vec![(
        "checkout",
        vec![span(1, 12, 11, SPAN_KIND_CLIENT, 8)],
    )]))
    .expect("counts");
    let out = flush(&mut p, T0 + 15 * SECOND);
    let total = counter(&out, "traces_service_graph_request_total");
    assert!(
        total.contains(&(edge("frontend", "checkout", ""), 1)),
        "{total:?}"
    );
    assert!(
        total.contains(&(edge("checkout", "payments", ""), 1)),
        "{total:?}"
    );
    assert_eq!(total.len(), 2);
    let failed = counter(&out, "traces_service_graph_request_failed_total");
    assert!(failed.contains(&(edge("checkout", "payments", ""), 1)));
    assert!(failed.contains(&(edge("frontend", "checkout", ""), 0)));
    let server = histograms(&out, "traces_service_graph_request_server_seconds");
    let fc = server
        .iter()
        .find(|h| labels(&h.attributes) == edge("frontend", "checkout", ""))
        .expect("server latency of frontend -> checkout");
    assert_eq!(fc.count, 1);
    assert!((fc.sum.unwrap_or_default() - 0.020).abs() < 1e-9);
    let client = histograms(&out, "traces_service_graph_request_client_seconds");
    let fc = client
        .iter()
        .find(|h| labels(&h.attributes) == edge("frontend", "checkout", ""))
        .expect("client latency");
    assert!((fc.sum.unwrap_or_default() - 0.030).abs() < 1e-9);
    assert!(p.pending.is_empty());
}

#[test]
fn databases_users_and_queues_are_nodes_too() {
    let mut p = started("{}");
    p.traces(&mut batch(vec![
        (
            "checkout",
            vec![
                with(
                    with(
                        span(2, 20, 0, SPAN_KIND_CLIENT, 3),
                        "db.system",
                        "postgresql",
                    ),
                    "db.name",
                    "orders",
                ),
                with(span(2, 21, 0, SPAN_KIND_CLIENT, 3), "db.system", "redis"),
                span(2, 22, 0, SPAN_KIND_PRODUCER, 1),
            ],
        ),
        ("frontend", vec![span(3, 30, 0, SPAN_KIND_SERVER, 50)]),
        ("worker", vec![span(2, 23, 22, SPAN_KIND_CONSUMER, 7)]),
    ]))
    .expect("counts");
    let out = flush(&mut p, T0 + 15 * SECOND);
    let total = counter(&out, "traces_service_graph_request_total");
    for e in [
        edge("checkout", "orders", "database"),
        edge("checkout", "redis", "database"),
        edge("user", "frontend", "virtual_node"),
        edge("checkout", "worker", "messaging_system"),
    ] {
        assert!(total.contains(&(e.clone(), 1)), "{e:?} in {total:?}");
    }
}

#[test]
fn an_unanswered_client_becomes_a_virtual_node_or_is_counted_unpaired() {
    let mut p = started(r#"{"store": {"ttl": "2s"}}"#);
    p.traces(&mut batch(vec![(
        "checkout",
        vec![
            with(
                span(4, 40, 0, SPAN_KIND_CLIENT, 12),
                "peer.service",
                "fraud-api",
            ),
            with(
                span(4, 41, 0, SPAN_KIND_CLIENT, 12),
                "server.address",
                "api.example.com",
            ),
            span(4, 42, 0, SPAN_KIND_CLIENT, 12),
        ],
    )]))
    .expect("counts");
    // Before the TTL nothing is decided.
    testing::set_now(T0 + SECOND);
    p.tick(T0 + SECOND).expect("tick");
    assert_eq!(p.pending.len(), 3);
    let out = flush(&mut p, T0 + 15 * SECOND);
    let total = counter(&out, "traces_service_graph_request_total");
    assert!(
        total.contains(&(edge("checkout", "fraud-api", "virtual_node"), 1)),
        "{total:?}"
    );
    assert!(total.contains(&(edge("checkout", "api.example.com", "virtual_node"), 1)));
    assert_eq!(
        counter(&out, "traces_service_graph_unpaired_spans_total")[0].1,
        1
    );
    assert!(p.pending.is_empty() && p.expiry.is_empty());
}

#[test]
fn waiting_spans_are_bounded() {
    let mut p = started(r#"{"store": {"max_items": 10}}"#);
    let spans: Vec<Span> = (1..=50u8)
        .map(|i| span(5, i, 0, SPAN_KIND_CLIENT, 1))
        .collect();
    p.traces(&mut batch(vec![("a", spans)])).expect("counts");
    assert_eq!(p.pending.len(), 10);
    let out = flush(&mut p, T0 + 15 * SECOND);
    assert_eq!(
        counter(&out, "traces_service_graph_dropped_spans_total")[0].1,
        40
    );
    assert_eq!(
        counter(&out, "traces_service_graph_unpaired_spans_total")[0].1,
        10
    );
}

#[test]
fn a_span_is_counted_once_and_dimensions_are_labelled_by_side() {
    let mut p = started(r#"{"dimensions": ["http.request.method"]}"#);
    let mut b = batch(vec![
        (
            "frontend",
            vec![with(
                span(6, 60, 0, SPAN_KIND_CLIENT, 3),
                "http.request.method",
                "POST",
            )],
        ),
        ("checkout", vec![span(6, 61, 60, SPAN_KIND_SERVER, 2)]),
    ]);
    p.traces(&mut b).expect("counts");
    p.traces(&mut b).expect("counts again");
    let out = flush(&mut p, T0 + 15 * SECOND);
    let total = counter(&out, "traces_service_graph_request_total");
    let mut want = edge("frontend", "checkout", "");
    want.push(("client_http.request.method".into(), "POST".into()));
    want.sort();
    assert_eq!(total, vec![(want, 1)]);
    assert_eq!(counter(&out, "sluice.servicegraph.duplicates")[0].1, 2);
}

#[test]
fn edges_beyond_max_series_are_counted_in_one_overflow_series() {
    let mut p = started(r#"{"max_series": 5}"#);
    let spans: Vec<Span> = (1..=20u8)
        .map(|i| {
            with(
                span(7, i, 0, SPAN_KIND_CLIENT, 1),
                "db.name",
                &format!("db{i}"),
            )
        })
        .collect();
    p.traces(&mut batch(vec![("a", spans)])).expect("counts");
    let out = flush(&mut p, T0 + 15 * SECOND);
    let total = counter(&out, "traces_service_graph_request_total");
    assert_eq!(total.len(), 6);
    assert_eq!(total.iter().map(|(_, v)| v).sum::<i64>(), 20);
    let overflow = total
        .iter()
        .find(|(l, _)| l.iter().any(|(k, _)| k == "otel.metric.overflow"))
        .expect("overflow series");
    assert_eq!(overflow.1, 15);
}

#[test]
fn counts_survive_a_reload() {
    let mut p = started("{}");
    p.traces(&mut batch(vec![
        ("a", vec![span(8, 80, 0, SPAN_KIND_CLIENT, 3)]),
        ("b", vec![span(8, 81, 80, SPAN_KIND_SERVER, 2)]),
    ]))
    .expect("counts");
    let state = p.snapshot();
    let mut q = started("{}");
    q.restore(&state).expect("restores");
    q.traces(&mut batch(vec![
        ("a", vec![span(9, 90, 0, SPAN_KIND_CLIENT, 3)]),
        ("b", vec![span(9, 91, 90, SPAN_KIND_SERVER, 2)]),
    ]))
    .expect("counts");
    let out = flush(&mut q, T0 + 15 * SECOND);
    assert_eq!(
        counter(&out, "traces_service_graph_request_total"),
        vec![(edge("a", "b", ""), 2)]
    );
    let mut other = started(r#"{"latency_histogram_buckets": ["1s"]}"#);
    other.restore(&state).expect("another shape starts afresh");
    assert!(other.edges.is_empty());
    assert!(other.restore(b"[1, 2").is_err());
}

#[test]
fn configs_and_hostile_batches_fail_cleanly() {
    for (config, says) in [
        (
            r#"{"latency_histogram_buckets": ["2s", "1s"]}"#,
            "increase strictly",
        ),
        (r#"{"store": {"ttl": "1h"}}"#, "store.ttl"),
        (r#"{"store": {"max_items": 0}}"#, "max_items"),
        (r#"{"max_series": 100000}"#, "max_series"),
        (r#"{"dimensions": ["a", "a"]}"#, "twice"),
        (r#"{"stores": {}}"#, "unknown field"),
    ] {
        match ServiceGraph::new(config) {
            Err(Error::Config(m)) => assert!(m.contains(says), "{config}: {m}"),
            other => panic!("{config}: {other:?}"),
        }
    }
    let mut p = started("{}");
    for bytes in [&[0x0a, 0xff, 0xff][..], &[0xff; 16][..]] {
        assert!(p.read_traces(&TracesView::new(bytes)).is_err());
    }
    // Odd ids are not paired and never panic.
    let mut odd = span(1, 1, 0, SPAN_KIND_CLIENT, 1);
    odd.trace_id = vec![1; 3];
    let mut server = span(1, 2, 1, SPAN_KIND_SERVER, 1);
    server.parent_span_id = vec![9; 40];
    p.traces(&mut batch(vec![("a", vec![odd, server])]))
        .expect("counts");
    assert!(p.pending.is_empty());
}
