use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::jaeger::{parse_trace_query, trace_json};
use super::*;
use crate::config::{MemoryExporterConfig, SendingQueueConfig};

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: s(v),
        ..Default::default()
    }
}

fn span(trace: u8, id: u8, parent: Option<u8>, name: &str, ms: u64) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_000_000_000 + ms * 1_000_000,
        attributes: vec![kv("http.route", "/checkout")],
        ..Default::default()
    }
}

fn traces(service: &str, spans: Vec<Span>) -> Batch {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("host.name", "web-1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Batch::new(Payload::Traces(req), None, "test".into())
}

fn logs(service: &str, records: Vec<LogRecord>) -> Batch {
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Batch::new(Payload::Logs(req), None, "test".into())
}

fn store(max_spans: usize, max_logs: usize, max_age: Duration) -> (MemoryStore, Arc<SelfMetrics>) {
    let metrics = Arc::new(SelfMetrics::new());
    let config = MemoryExporterConfig {
        max_spans,
        max_logs,
        max_size_mib: 64,
        max_age,
        sending_queue: SendingQueueConfig::default(),
    };
    (MemoryStore::new(&config, metrics.clone()), metrics)
}

fn query(service: &str) -> TraceQuery {
    TraceQuery {
        service: Some(service.into()),
        limit: 20,
        ..TraceQuery::default()
    }
}

#[test]
fn spans_of_one_trace_from_several_batches_are_one_trace() {
    let (st, _) = store(100, 10, Duration::from_secs(60));
    st.insert(&traces("shop", vec![span(1, 1, None, "GET /checkout", 30)]));
    st.insert(&traces("payments", vec![span(1, 2, Some(1), "charge", 10)]));
    st.insert(&traces("shop", vec![span(2, 3, None, "GET /cart", 5)]));
    assert_eq!(st.sizes(), (3, 2, 0));
    let t = st.trace(&[1; 16]).expect("trace 1 is stored");
    assert_eq!(t.len(), 2);
    let services: Vec<String> = st.services().into_keys().collect();
    assert_eq!(services, ["payments", "shop"]);
    // Newest trace first.
    let found = st.find_traces(&query("shop"));
    assert_eq!(found.len(), 2);
    assert_eq!(found[0][0].span.name, "GET /cart");
}

#[test]
fn full_store_evicts_whole_oldest_traces_and_counts_them() {
    let (st, metrics) = store(3, 10, Duration::from_secs(60));
    st.insert(&traces(
        "shop",
        vec![span(1, 1, None, "a", 1), span(1, 2, Some(1), "b", 1)],
    ));
    st.insert(&traces("shop", vec![span(2, 3, None, "c", 1)]));
    st.insert(&traces("shop", vec![span(3, 4, None, "d", 1)]));
    assert!(st.trace(&[1; 16]).is_none(), "the oldest trace went first");
    assert!(st.trace(&[2; 16]).is_some());
    assert_eq!(st.sizes(), (2, 2, 0));
    let evicted = metrics
        .store_evicted
        .with_label_values(&["traces", "max_spans"])
        .get();
    assert_eq!(evicted, 2, "both spans of the evicted trace are counted");
    assert_eq!(
        metrics.store_records.with_label_values(&["traces"]).get(),
        2
    );
}

#[test]
fn old_data_expires_on_read() {
    let (st, metrics) = store(100, 100, Duration::from_millis(20));
    st.insert(&traces("shop", vec![span(1, 1, None, "a", 1)]));
    st.insert(&logs("shop", vec![LogRecord::default()]));
    std::thread::sleep(Duration::from_millis(40));
    assert!(st.find_traces(&query("shop")).is_empty());
    assert!(
        st.logs(&LogQuery {
            limit: 10,
            ..Default::default()
        })
        .is_empty()
    );
    for signal in ["traces", "logs"] {
        assert_eq!(
            metrics
                .store_evicted
                .with_label_values(&[signal, "max_age"])
                .get(),
            1
        );
    }
}

#[test]
fn search_matches_operation_tags_errors_and_duration() {
    let (st, _) = store(100, 10, Duration::from_secs(60));
    let mut failed = span(1, 1, None, "GET /checkout", 250);
    failed.status = Some(Status {
        code: 2,
        message: "boom".into(),
    });
    st.insert(&traces(
        "shop",
        vec![failed, span(2, 2, None, "GET /cart", 5)],
    ));
    let mut q = query("shop");
    q.operation = Some("GET /cart".into());
    assert_eq!(st.find_traces(&q).len(), 1);

    let mut q = query("shop");
    q.tags.insert("error".into(), "true".into());
    let found = st.find_traces(&q);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0][0].span.name, "GET /checkout");

    let mut q = query("shop");
    q.min_duration = Some(Duration::from_millis(100));
    assert_eq!(st.find_traces(&q).len(), 1);
    q.min_duration = None;
    q.max_duration = Some(Duration::from_millis(10));
    assert_eq!(st.find_traces(&q)[0][0].span.name, "GET /cart");

    // Resource attributes match too; a wrong value does not.
    let mut q = query("shop");
    q.tags.insert("host.name".into(), "web-1".into());
    assert_eq!(st.find_traces(&q).len(), 2);
    q.tags.insert("http.route".into(), "/other".into());
    assert!(st.find_traces(&q).is_empty());

    assert!(st.find_traces(&query("nobody")).is_empty());
}

#[test]
fn jaeger_json_has_references_tags_logs_and_processes() {
    let (st, _) = store(100, 10, Duration::from_secs(60));
    let mut child = span(7, 2, Some(1), "charge", 10);
    child.kind = 3;
    child.status = Some(Status {
        code: 2,
        message: "card declined".into(),
    });
    child.events = vec![Event {
        time_unix_nano: 1_700_000_000_005_000_000,
        name: "retry".into(),
        attributes: vec![kv("attempt", "2")],
        ..Default::default()
    }];
    st.insert(&traces("shop", vec![span(7, 1, None, "GET /checkout", 30)]));
    st.insert(&traces("payments", vec![child]));
    st.insert(&traces("shop", vec![span(7, 3, Some(1), "render", 1)]));
    let t = trace_json(&st.trace(&[7; 16]).expect("stored"));
    assert_eq!(t["traceID"], "07".repeat(16));
    let spans = t["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 3);
    let root = &spans[0];
    assert_eq!(root["operationName"], "GET /checkout");
    assert_eq!(root["startTime"], 1_700_000_000_000_000u64);
    assert_eq!(root["duration"], 30_000);
    assert_eq!(root["references"].as_array().map(Vec::len), Some(0));
    let child = &spans[1];
    assert_eq!(child["references"][0]["refType"], "CHILD_OF");
    assert_eq!(child["references"][0]["spanID"], "01".repeat(8));
    let tag = |name: &str| {
        child["tags"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["key"] == name))
            .map(|t| t["value"].clone())
    };
    assert_eq!(tag("span.kind"), Some(serde_json::json!("client")));
    assert_eq!(tag("error"), Some(serde_json::json!(true)));
    assert_eq!(
        tag("otel.status_description"),
        Some(serde_json::json!("card declined"))
    );
    assert_eq!(child["logs"][0]["fields"][0]["value"], "retry");
    assert_eq!(child["logs"][0]["timestamp"], 1_700_000_000_005_000u64);
    // Two services, two processes (the two batches from `shop` share one); the resource minus
    // service.name becomes process tags.
    let processes = t["processes"].as_object().expect("processes");
    assert_eq!(processes.len(), 2);
    let p = &processes[root["processID"].as_str().expect("pid")];
    assert_eq!(p["serviceName"], "shop");
    assert_eq!(p["tags"][0]["key"], "host.name");
    assert_ne!(root["processID"], child["processID"]);
    assert_eq!(root["processID"], spans[2]["processID"]);
}

#[test]
fn logs_filter_by_service_severity_text_and_trace() {
    let (st, metrics) = store(10, 3, Duration::from_secs(60));
    let rec = |sev: i32, body: &str, trace: u8| LogRecord {
        severity_number: sev,
        body: s(body),
        trace_id: vec![trace; 16],
        ..Default::default()
    };
    st.insert(&logs(
        "shop",
        vec![rec(9, "cart loaded", 1), rec(17, "Payment FAILED", 2)],
    ));
    st.insert(&logs("payments", vec![rec(13, "slow card network", 3)]));
    let all = |q: LogQuery| st.logs(&LogQuery { limit: 10, ..q });
    assert_eq!(all(LogQuery::default()).len(), 3);
    let errors = all(LogQuery {
        min_severity: 13,
        ..Default::default()
    });
    assert_eq!(errors.len(), 2);
    assert_eq!(
        all(LogQuery {
            text: Some("payment failed".into()),
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(
        all(LogQuery {
            service: Some("payments".into()),
            ..Default::default()
        })[0]
            .origin
            .service,
        "payments"
    );
    assert_eq!(
        all(LogQuery {
            trace_id: Some([2; 16]),
            ..Default::default()
        })
        .len(),
        1
    );
    // A fourth record evicts the oldest.
    st.insert(&logs("shop", vec![rec(9, "newest", 4)]));
    let kept = all(LogQuery::default());
    assert_eq!(kept.len(), 3);
    assert!(kept.iter().all(|l| l.record.trace_id != vec![1; 16]));
    assert_eq!(
        metrics
            .store_evicted
            .with_label_values(&["logs", "max_logs"])
            .get(),
        1
    );
}

#[test]
fn trace_ids_parse_like_jaeger_prints_them() {
    assert_eq!(parse_trace_id(&"ab".repeat(16)), Some([0xab; 16]));
    let short = parse_trace_id("1f").expect("short ids are padded");
    assert_eq!(short[15], 0x1f);
    assert_eq!(&short[..15], &[0; 15]);
    assert_eq!(parse_trace_id("xyz"), None);
    assert_eq!(parse_trace_id(&"a".repeat(33)), None);
    assert_eq!(parse_trace_id(""), None);
}

#[test]
fn trace_queries_parse_like_jaegers_query_service() {
    let p = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let q = parse_trace_query(&p(&[
        ("service", "shop"),
        ("operation", "all"),
        ("minDuration", "1.5ms"),
        ("limit", "5"),
        ("tags", r#"{"http.status_code":500,"error":"true"}"#),
        ("start", "1700000000000000"),
    ]))
    .expect("valid");
    assert_eq!(q.service.as_deref(), Some("shop"));
    assert_eq!(q.operation, None, "`all` means any operation");
    assert_eq!(q.min_duration, Some(Duration::from_micros(1500)));
    assert_eq!(q.limit, 5);
    assert_eq!(q.tags["http.status_code"], "500");
    assert_eq!(q.start_us, Some(1_700_000_000_000_000));

    let q = parse_trace_query(&p(&[("lookback", "1h")])).expect("valid");
    assert!(q.start_us.is_some_and(|s| s > 1_700_000_000_000_000));
    assert_eq!(q.limit, 20);

    for bad in [
        ("minDuration", "fast"),
        ("limit", "-1"),
        ("tags", "error=true"),
        ("start", "yesterday"),
    ] {
        let e = parse_trace_query(&p(&[bad])).expect_err("invalid");
        assert!(e.contains(bad.0), "{e}");
    }
}

#[test]
fn the_store_is_bounded_by_the_memory_its_records_hold() {
    // 1 MiB each for spans and logs; spans and records of 20 KB attribute values.
    let (mut st, metrics) = store(100_000, 100_000, Duration::from_secs(60));
    st.max_bytes = 1 << 20;
    let big = "x".repeat(20_000);
    for t in 1..=200u8 {
        let mut sp = span(t, t, None, "upload", 1);
        sp.attributes.push(kv("payload", &big));
        st.insert(&traces("shop", vec![sp]));
        let record = LogRecord {
            body: s(&big),
            ..Default::default()
        };
        st.insert(&logs("shop", vec![record]));
    }
    let (spans, traces_held, logs_held) = st.sizes();
    // About 50 of 20 KB each fit; by count, all 200 would.
    assert!((40..=52).contains(&spans), "{spans}");
    assert_eq!(spans, traces_held);
    assert!((40..=52).contains(&logs_held), "{logs_held}");
    assert!(st.trace(&[200; 16]).is_some(), "the newest trace is kept");
    assert!(st.trace(&[1; 16]).is_none(), "the oldest went first");
    for signal in ["traces", "logs"] {
        let evicted = metrics
            .store_evicted
            .with_label_values(&[signal, "max_size"])
            .get();
        assert_eq!(
            evicted as usize,
            200 - if signal == "traces" { spans } else { logs_held }
        );
    }
}
