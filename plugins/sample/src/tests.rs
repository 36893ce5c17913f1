use sluice_sdk::otlp::logs::v1::{ResourceLogs, ScopeLogs};
use sluice_sdk::otlp::metrics::v1::{Gauge, Histogram, HistogramDataPoint};
use sluice_sdk::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use sluice_sdk::prost::Message;
use sluice_sdk::testing;

use super::*;
#[allow(unused_imports, reason = "the items the tests build batches from")]
use sluice_sdk::otlp::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};

// ---- builders ----------------------------------------------------------------------------

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

/// A 16-byte trace id ending in `low` (the part the sampler reads).
fn trace_id(low: u64) -> Vec<u8> {
    let mut id = vec![0xab; 8];
    id.extend_from_slice(&low.to_be_bytes());
    id
}

fn span(name: &str) -> Span {
    Span {
        name: name.into(),
        trace_id: trace_id(1),
        span_id: vec![1; 8],
        ..Default::default()
    }
}

fn error_span(name: &str) -> Span {
    Span {
        status: Some(Status {
            code: STATUS_ERROR,
            ..Default::default()
        }),
        ..span(name)
    }
}

fn traces(res: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(res),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn log(body: &str, severity: i32) -> LogRecord {
    LogRecord {
        body: Some(AnyValue {
            value: Some(s(body)),
        }),
        severity_number: severity,
        ..Default::default()
    }
}

fn logs(res: Vec<KeyValue>, log_records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(res),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gauge(name: &str, points: Vec<Vec<KeyValue>>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points
                .into_iter()
                .map(|attributes| NumberDataPoint {
                    attributes,
                    value: Some(number_data_point::Value::AsDouble(1.0)),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

fn histogram(name: &str, points: Vec<Vec<KeyValue>>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: points
                .into_iter()
                .map(|attributes| HistogramDataPoint {
                    attributes,
                    count: 1,
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

fn metrics(res: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(res),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn sample(config: &str) -> Sample {
    match Sample::new(config) {
        Ok(p) => p,
        Err(e) => panic!("config {config} rejected: {e}"),
    }
}

fn config_error(config: &str) -> String {
    match Sample::new(config) {
        Err(Error::Config(m)) => m,
        other => panic!("config {config}: expected a config error, got {other:?}"),
    }
}

/// A small deterministic generator (xorshift64*) for random trace ids.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn trace_id(&mut self) -> Vec<u8> {
        let mut id = self.next().to_be_bytes().to_vec();
        id.extend_from_slice(&self.next().to_be_bytes());
        id
    }
}

fn decode_dropped() -> Vec<(String, String, i64, u64)> {
    let emitted = testing::take_emitted();
    let mut out = Vec::new();
    for (signal, bytes) in emitted {
        assert_eq!(signal, Signal::Metrics);
        let req = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("valid metrics");
        let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
        assert_eq!(m.name, "sample.dropped");
        assert_eq!(m.unit, "{record}");
        let Some(metric::Data::Sum(sum)) = &m.data else {
            panic!("a sum expected")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        for p in &sum.data_points {
            let attr = |k: &str| {
                attribute(&p.attributes, k)
                    .and_then(text)
                    .map(|t| t.into_owned())
                    .unwrap_or_default()
            };
            let Some(number_data_point::Value::AsInt(n)) = p.value else {
                panic!("an int value expected")
            };
            out.push((attr("reason"), attr("signal"), n, p.start_time_unix_nano));
        }
    }
    out.sort();
    out
}

// ---- drop conditions ---------------------------------------------------------------------

#[test]
fn empty_config_keeps_everything() {
    let mut p = sample("");
    let mut t = traces(vec![], vec![span("a"), span("b")]);
    assert_eq!(p.traces(&mut t), Ok(Verdict::Unchanged));
    let mut l = logs(vec![], vec![log("x", 1)]);
    assert_eq!(p.logs(&mut l), Ok(Verdict::Unchanged));
    let mut m = metrics(vec![], vec![gauge("g", vec![vec![]])]);
    assert_eq!(p.metrics(&mut m), Ok(Verdict::Unchanged));
}

#[test]
fn name_exact_prefix_suffix_regex() {
    let mut t = traces(
        vec![],
        vec![
            span("GET /health"),
            span("GET /healthz"),
            span("GET /users"),
            span("db.query"),
            span("POST /ready"),
        ],
    );
    let cases = [
        (r#"{"drop": [{"name": "GET /health"}]}"#, vec![1, 2, 3, 4]),
        (
            r#"{"drop": [{"name": {"exact": "db.query"}}]}"#,
            vec![0, 1, 2, 4],
        ),
        (
            r#"{"drop": [{"name": {"prefix": "GET /health"}}]}"#,
            vec![2, 3, 4],
        ),
        (
            r#"{"drop": [{"name": {"suffix": "/ready"}}]}"#,
            vec![0, 1, 2, 3],
        ),
        (
            r#"{"drop": [{"name": {"regex": "^(GET|POST) /(health|ready)"}}]}"#,
            vec![2, 3],
        ),
        // Unanchored: found anywhere.
        (
            r#"{"drop": [{"name": {"regex": "query"}}]}"#,
            vec![0, 1, 2, 4],
        ),
    ];
    for (config, kept) in cases {
        let mut p = sample(config);
        assert_eq!(p.traces(&mut t), Ok(Verdict::Keep(kept)), "{config}");
    }
}

#[test]
fn any_condition_drops_and_all_criteria_must_match() {
    let mut p = sample(
        r#"{"drop": [
            {"name": {"prefix": "GET /health"}, "kind": "server"},
            {"name": "noise"}
        ]}"#,
    );
    let server = |n: &str| Span { kind: 2, ..span(n) };
    let mut t = traces(
        vec![],
        vec![
            server("GET /health"),
            span("GET /health"),
            span("noise"),
            server("x"),
        ],
    );
    assert_eq!(p.traces(&mut t), Ok(Verdict::Keep(vec![1, 3])));
}

#[test]
fn attributes_exact_and_regex_and_non_string_values() {
    let mut p = sample(
        r#"{"drop": [
            {"attributes": {"http.route": {"regex": "^/internal/"}}},
            {"attributes": {"http.response.status_code": 404, "http.request.method": "GET"}},
            {"attributes": {"synthetic": true}},
            {"attributes": {"ratio": 1.0}}
        ]}"#,
    );
    let with = |attributes: Vec<KeyValue>| Span {
        attributes,
        ..span("s")
    };
    let mut t = traces(
        vec![],
        vec![
            with(vec![kv("http.route", s("/internal/metrics"))]),
            with(vec![kv("http.route", s("/api/internal/"))]),
            with(vec![
                kv("http.response.status_code", any_value::Value::IntValue(404)),
                kv("http.request.method", s("GET")),
            ]),
            // Only one of the two attributes matches.
            with(vec![
                kv("http.response.status_code", any_value::Value::IntValue(404)),
                kv("http.request.method", s("POST")),
            ]),
            // A string "404" matches the number 404 too.
            with(vec![
                kv("http.response.status_code", s("404")),
                kv("http.request.method", s("GET")),
            ]),
            with(vec![kv("synthetic", any_value::Value::BoolValue(true))]),
            with(vec![kv("synthetic", any_value::Value::BoolValue(false))]),
            with(vec![]),
            // 1.0 in the config matches the float 1 and the integer 1, not 1.5.
            with(vec![kv("ratio", any_value::Value::DoubleValue(1.0))]),
            with(vec![kv("ratio", any_value::Value::IntValue(1))]),
            with(vec![kv("ratio", any_value::Value::DoubleValue(1.5))]),
        ],
    );
    assert_eq!(p.traces(&mut t), Ok(Verdict::Keep(vec![1, 3, 6, 7, 10])));
}

#[test]
fn resource_attributes() {
    let mut p =
        sample(r#"{"drop": [{"resource_attributes": {"service.name": {"prefix": "canary-"}}}]}"#);
    let mut canary = traces(
        vec![kv("service.name", s("canary-checkout"))],
        vec![span("a")],
    );
    assert_eq!(p.traces(&mut canary), Ok(Verdict::Keep(vec![])));
    let mut prod = traces(vec![kv("service.name", s("checkout"))], vec![span("a")]);
    assert_eq!(p.traces(&mut prod), Ok(Verdict::Unchanged));
    // Several resources in one batch: indices run across them.
    let mut both = traces(vec![kv("service.name", s("checkout"))], vec![span("a")]);
    both.resource_spans.push(canary.resource_spans[0].clone());
    both.resource_spans.push(prod.resource_spans[0].clone());
    assert_eq!(p.traces(&mut both), Ok(Verdict::Keep(vec![0, 2])));
}

#[test]
fn severity_below_by_number_and_text() {
    let mut l = logs(
        vec![],
        vec![
            log("trace", 1),
            log("debug", 5),
            log("debug4", 8),
            log("info", 9),
            log("warn", 13),
            log("error", 17),
            // No number: the text decides.
            LogRecord {
                severity_text: "debug".into(),
                ..log("text debug", 0)
            },
            LogRecord {
                severity_text: "Warning".into(),
                ..log("text warning", 0)
            },
            // Unknown severity: never "below" anything.
            log("unknown", 0),
        ],
    );
    let mut p = sample(r#"{"drop": [{"severity_below": "INFO"}]}"#);
    assert_eq!(p.logs(&mut l), Ok(Verdict::Keep(vec![3, 4, 5, 7, 8])));
    let mut p = sample(r#"{"drop": [{"severity_below": "warn"}]}"#);
    assert_eq!(p.logs(&mut l), Ok(Verdict::Keep(vec![4, 5, 7, 8])));
    let mut p = sample(r#"{"drop": [{"severity_below": 6}]}"#);
    assert_eq!(p.logs(&mut l), Ok(Verdict::Keep(vec![2, 3, 4, 5, 7, 8])));
    let mut p = sample(r#"{"drop": [{"severity_below": "DEBUG2"}]}"#);
    assert_eq!(p.logs(&mut l), Ok(Verdict::Keep(vec![2, 3, 4, 5, 7, 8])));
    // severity_below applies to logs only.
    let mut t = traces(vec![], vec![span("a")]);
    assert_eq!(p.traces(&mut t), Ok(Verdict::Unchanged));
}

#[test]
fn span_status_and_kind() {
    let with = |code: i32, kind: i32| Span {
        status: (code != 0).then(|| Status {
            code,
            ..Default::default()
        }),
        kind,
        ..span("s")
    };
    let mut t = traces(
        vec![],
        vec![with(0, 1), with(1, 2), with(0, 3), with(1, 4), with(0, 5)],
    );
    let mut p = sample(r#"{"drop": [{"status": "ok"}]}"#);
    assert_eq!(p.traces(&mut t), Ok(Verdict::Keep(vec![0, 2, 4])));
    let mut p = sample(r#"{"drop": [{"status": "unset"}]}"#);
    assert_eq!(p.traces(&mut t), Ok(Verdict::Keep(vec![1, 3])));
    let mut p = sample(r#"{"drop": [{"kind": "client"}, {"kind": "internal"}]}"#);
    assert_eq!(p.traces(&mut t), Ok(Verdict::Keep(vec![1, 3, 4])));
    let mut p = sample(r#"{"drop": [{"kind": "server", "status": "ok"}]}"#);
    assert_eq!(p.traces(&mut t), Ok(Verdict::Keep(vec![0, 2, 3, 4])));
    // Span-only criteria never match logs.
    let mut p = sample(r#"{"drop": [{"status": "unset"}]}"#);
    let mut l = logs(vec![], vec![log("x", 9)]);
    assert_eq!(p.logs(&mut l), Ok(Verdict::Unchanged));
}

#[test]
fn log_body_event_name_and_signal_restriction() {
    let mut l = logs(
        vec![],
        vec![
            log("GET /health 200", 9),
            log("user 42 logged in", 9),
            LogRecord {
                event_name: "browser.page_view".into(),
                ..log("", 9)
            },
        ],
    );
    let mut p = sample(r#"{"drop": [{"body": {"regex": "^GET /health"}}]}"#);
    assert_eq!(p.logs(&mut l), Ok(Verdict::Keep(vec![1, 2])));
    let mut p = sample(r#"{"drop": [{"name": "browser.page_view"}]}"#);
    assert_eq!(p.logs(&mut l), Ok(Verdict::Keep(vec![0, 1])));

    // `signal` limits a condition to one signal.
    let mut p = sample(r#"{"drop": [{"signal": "traces", "name": "x"}]}"#);
    let mut t = traces(vec![], vec![span("x"), span("y")]);
    assert_eq!(p.traces(&mut t), Ok(Verdict::Keep(vec![1])));
    let mut m = metrics(vec![], vec![gauge("x", vec![vec![]])]);
    assert_eq!(p.metrics(&mut m), Ok(Verdict::Unchanged));
}

#[test]
fn metrics_filter_per_data_point() {
    let mut p = sample(
        r#"{"drop": [
            {"name": {"prefix": "go."}},
            {"signal": "metrics", "attributes": {"http.route": "/health"}}
        ]}"#,
    );
    let route = |r: &str| vec![kv("http.route", s(r))];
    let mut m = metrics(
        vec![kv("service.name", s("api"))],
        vec![
            gauge("go.goroutines", vec![vec![], vec![]]),
            histogram(
                "http.server.request.duration",
                vec![route("/users"), route("/health"), route("/orders")],
            ),
            gauge("process.cpu", vec![route("/health")]),
        ],
    );
    assert_eq!(p.metrics(&mut m), Ok(Verdict::Keep(vec![2, 4])));
    // Sampling and rate limits never touch metrics.
    let mut p =
        sample(r#"{"probabilistic": {"percent": 0}, "rate_limit": {"key": "k", "per_second": 1}}"#);
    assert_eq!(p.metrics(&mut m), Ok(Verdict::Unchanged));
}

// ---- probabilistic sampling --------------------------------------------------------------

#[test]
fn sampling_is_consistent_by_trace_id() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let ids: Vec<Vec<u8>> = (0..500).map(|_| rng.trace_id()).collect();
    let config = r#"{"probabilistic": {"percent": 30}}"#;
    let decide = |p: &mut Sample, id: &[u8], name: &str| {
        let mut t = traces(
            vec![],
            vec![Span {
                trace_id: id.to_vec(),
                ..span(name)
            }],
        );
        p.traces(&mut t) == Ok(Verdict::Unchanged)
    };
    // Two instances (two replicas), different spans of the same traces, different batches.
    let mut a = sample(config);
    let mut b = sample(config);
    let first: Vec<bool> = ids.iter().map(|id| decide(&mut a, id, "root")).collect();
    let second: Vec<bool> = ids.iter().map(|id| decide(&mut b, id, "child")).collect();
    assert_eq!(first, second);
    assert!(first.iter().any(|&k| k) && first.iter().any(|&k| !k));

    // Within one batch: all spans of a trace share the decision.
    let spans: Vec<Span> = ids
        .iter()
        .flat_map(|id| {
            ["a", "b", "c"].map(|n| Span {
                trace_id: id.clone(),
                ..span(n)
            })
        })
        .collect();
    let mut t = traces(vec![], spans);
    let Ok(Verdict::Keep(kept)) = a.traces(&mut t) else {
        panic!("some spans dropped")
    };
    for (i, &keep) in first.iter().enumerate() {
        let k = i as u32 * 3;
        let present = [k, k + 1, k + 2].map(|x| kept.contains(&x));
        assert_eq!(present, [keep; 3], "trace {i}");
    }

    // A higher percentage keeps a superset (consistent across rates too).
    let mut wide = sample(r#"{"probabilistic": {"percent": 60}}"#);
    for (id, &kept_at_30) in ids.iter().zip(&first) {
        if kept_at_30 {
            assert!(decide(&mut wide, id, "x"));
        }
    }
}

#[test]
fn sampling_keeps_about_the_configured_fraction() {
    for (percent, seed) in [(10.0, 0u64), (10.0, 7), (50.0, 0), (1.0, 0)] {
        let mut p = sample(&format!(
            r#"{{"probabilistic": {{"percent": {percent}, "hash_seed": {seed}}}}}"#
        ));
        let mut rng = Rng(0x1234_5678_9abc_def1 ^ seed);
        let spans: Vec<Span> = (0..20_000)
            .map(|_| Span {
                trace_id: rng.trace_id(),
                ..span("s")
            })
            .collect();
        let mut t = traces(vec![], spans);
        let Ok(Verdict::Keep(kept)) = p.traces(&mut t) else {
            panic!("some spans dropped")
        };
        let share = kept.len() as f64 / 200.0;
        assert!(
            (share - percent).abs() <= 2.0,
            "percent {percent}, seed {seed}: kept {share}%"
        );
    }
}

#[test]
fn sampling_reads_the_low_56_bits_like_opentelemetry() {
    // Keep when R >= (1 - p) * 2^56: at 25%, R = 0.75 * 2^56 is the first kept value.
    let t = 3u64 << 54;
    let mut p = sample(r#"{"probabilistic": {"percent": 25}}"#);
    let mut batch = traces(
        vec![],
        vec![
            Span {
                trace_id: trace_id(t - 1),
                ..span("below")
            },
            Span {
                trace_id: trace_id(t),
                ..span("at")
            },
            // The top byte of the last eight is not part of R.
            Span {
                trace_id: trace_id((0xff << 56) | (t - 1)),
                ..span("high byte")
            },
            Span {
                trace_id: trace_id((1 << 56) - 1),
                ..span("max")
            },
            // Invalid trace ids are not sampled.
            Span {
                trace_id: vec![0; 16],
                ..span("zero")
            },
            Span {
                trace_id: vec![1; 3],
                ..span("short")
            },
        ],
    );
    assert_eq!(p.traces(&mut batch), Ok(Verdict::Keep(vec![1, 3, 4, 5])));

    let mut all = sample(r#"{"probabilistic": {"percent": 100}}"#);
    assert_eq!(all.traces(&mut batch), Ok(Verdict::Unchanged));
    let mut none = sample(r#"{"probabilistic": {"percent": 0}}"#);
    assert_eq!(none.traces(&mut batch), Ok(Verdict::Keep(vec![4, 5])));
}

#[test]
fn logs_follow_their_trace_and_untraced_logs_hash_their_content() {
    let mut rng = Rng(42);
    let ids: Vec<Vec<u8>> = (0..200).map(|_| rng.trace_id()).collect();
    let mut p = sample(r#"{"probabilistic": {"percent": 50}}"#);
    let spans: Vec<Span> = ids
        .iter()
        .map(|id| Span {
            trace_id: id.clone(),
            ..span("s")
        })
        .collect();
    let Ok(Verdict::Keep(kept_spans)) = p.traces(&mut traces(vec![], spans)) else {
        panic!("some spans dropped")
    };
    let records: Vec<LogRecord> = ids
        .iter()
        .map(|id| LogRecord {
            trace_id: id.clone(),
            ..log("in a trace", 9)
        })
        .collect();
    let Ok(Verdict::Keep(kept_logs)) = p.logs(&mut logs(vec![], records)) else {
        panic!("some logs dropped")
    };
    assert_eq!(kept_spans, kept_logs);

    // Without a trace id: deterministic per record, spread across records.
    let untraced: Vec<LogRecord> = (0..2000)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i,
            ..log("same message", 9)
        })
        .collect();
    let mut batch = logs(vec![], untraced);
    let Ok(Verdict::Keep(first)) = p.logs(&mut batch) else {
        panic!("some logs dropped")
    };
    let mut q = sample(r#"{"probabilistic": {"percent": 50}}"#);
    assert_eq!(q.logs(&mut batch), Ok(Verdict::Keep(first.clone())));
    assert!((900..=1100).contains(&first.len()), "kept {}", first.len());
}

// ---- keep_errors -------------------------------------------------------------------------

#[test]
fn errors_are_kept_through_sampling_rate_limits_and_filters() {
    let config = r#"{
        "probabilistic": {"percent": 0},
        "rate_limit": {"key": "service.name", "per_second": 1, "burst": 1},
        "drop": [{"name": {"prefix": "GET /health"}}]
    }"#;
    let mut p = sample(config);
    let mut t = traces(
        vec![],
        vec![
            error_span("GET /health"),
            span("GET /health"),
            error_span("checkout"),
            span("checkout"),
            error_span("checkout"),
        ],
    );
    assert_eq!(p.traces(&mut t), Ok(Verdict::Keep(vec![0, 2, 4])));
    let mut l = logs(
        vec![],
        vec![
            log("error", 17),
            log("fatal", 21),
            log("warn", 13),
            LogRecord {
                severity_text: "ERROR".into(),
                ..log("text error", 0)
            },
        ],
    );
    assert_eq!(p.logs(&mut l), Ok(Verdict::Keep(vec![0, 1, 3])));

    // keep_errors: false lets errors be dropped like the rest.
    let mut p = sample(
        r#"{"keep_errors": false, "drop": [{"status": "error"}, {"severity_below": "FATAL"}]}"#,
    );
    assert_eq!(p.traces(&mut t), Ok(Verdict::Keep(vec![1, 3])));
    assert_eq!(p.logs(&mut l), Ok(Verdict::Keep(vec![1])));
}

// ---- rate limiting -----------------------------------------------------------------------

const SECOND: u64 = 1_000_000_000;

fn service_spans(service: &str, n: usize) -> ExportTraceServiceRequest {
    traces(vec![kv("service.name", s(service))], vec![span("s"); n])
}

fn kept(v: Result<Verdict, Error>, total: usize) -> usize {
    match v {
        Ok(Verdict::Unchanged) => total,
        Ok(Verdict::Keep(k)) => k.len(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn rate_limit_token_bucket_on_the_host_clock() {
    testing::set_now(1_000 * SECOND);
    let mut p = sample(r#"{"rate_limit": {"key": "service.name", "per_second": 10, "burst": 20}}"#);
    // A full bucket lets a burst through, then nothing.
    assert_eq!(kept(p.traces(&mut service_spans("checkout", 30)), 30), 20);
    assert_eq!(kept(p.traces(&mut service_spans("checkout", 5)), 5), 0);
    // Other keys have their own buckets.
    assert_eq!(kept(p.traces(&mut service_spans("search", 5)), 5), 5);
    // Half a second refills 5 tokens.
    testing::set_now(1_000 * SECOND + SECOND / 2);
    assert_eq!(kept(p.traces(&mut service_spans("checkout", 8)), 8), 5);
    // Refilling stops at the burst.
    testing::set_now(2_000 * SECOND);
    assert_eq!(kept(p.traces(&mut service_spans("checkout", 50)), 50), 20);
    // A clock that goes back adds nothing.
    testing::set_now(1_999 * SECOND);
    assert_eq!(kept(p.traces(&mut service_spans("checkout", 1)), 1), 0);

    // Logs have buckets of their own; the record attribute wins over the resource's.
    let mut l = logs(
        vec![kv("service.name", s("checkout"))],
        vec![
            LogRecord {
                attributes: vec![kv("service.name", s("override"))],
                ..log("a", 9)
            };
            3
        ],
    );
    assert_eq!(kept(p.logs(&mut l), 3), 3);
    assert_eq!(p.limiter.as_ref().map(|l| l.keys()), Some(3));
}

#[test]
fn rate_limit_bounds_keys_and_forgets_refilled_buckets() {
    testing::set_now(5 * SECOND);
    let mut p = sample(
        r#"{"rate_limit": {"key": "service.name", "per_second": 1, "burst": 2, "max_keys": 2}}"#,
    );
    assert_eq!(kept(p.traces(&mut service_spans("a", 1)), 1), 1);
    assert_eq!(kept(p.traces(&mut service_spans("b", 1)), 1), 1);
    // c and d overflow into one shared bucket of 2.
    assert_eq!(kept(p.traces(&mut service_spans("c", 2)), 2), 2);
    assert_eq!(kept(p.traces(&mut service_spans("d", 2)), 2), 0);
    assert_eq!(p.limiter.as_ref().map(|l| l.keys()), Some(2));
    // Records without the key share the "" bucket (here: the overflow).
    assert_eq!(kept(p.traces(&mut traces(vec![], vec![span("s")])), 1), 0);
    // After the buckets refill, a tick forgets them and new keys get their own.
    p.tick(10 * SECOND).expect("ticks");
    assert_eq!(p.limiter.as_ref().map(|l| l.keys()), Some(0));
    testing::set_now(10 * SECOND);
    assert_eq!(kept(p.traces(&mut service_spans("d", 3)), 3), 2);
    assert_eq!(p.limiter.as_ref().map(|l| l.keys()), Some(1));
    // A bucket still refilling is not forgotten.
    p.tick(10 * SECOND + SECOND / 2).expect("ticks");
    assert_eq!(p.limiter.as_ref().map(|l| l.keys()), Some(1));
}

// ---- counts, metrics, state --------------------------------------------------------------

#[test]
fn counts_are_emitted_by_reason_and_signal() {
    testing::set_now(100 * SECOND);
    testing::take_emitted();
    let mut p = sample(
        r#"{
            "drop": [{"name": "noise"}],
            "probabilistic": {"percent": 50},
            "rate_limit": {"key": "service.name", "per_second": 1, "burst": 1}
        }"#,
    );
    // Nothing counted yet: nothing emitted.
    p.tick(100 * SECOND).expect("ticks");
    assert!(testing::take_emitted().is_empty());

    let kept_trace = trace_id((1 << 56) - 1);
    let sampled_trace = trace_id(0);
    let mut t = traces(
        vec![kv("service.name", s("a"))],
        vec![
            span("noise"),
            Span {
                trace_id: sampled_trace.clone(),
                ..span("x")
            },
            Span {
                trace_id: kept_trace.clone(),
                ..span("x")
            },
            Span {
                trace_id: kept_trace.clone(),
                ..span("y")
            },
        ],
    );
    assert_eq!(p.traces(&mut t), Ok(Verdict::Keep(vec![2])));
    let mut m = metrics(vec![], vec![gauge("noise", vec![vec![], vec![]])]);
    assert_eq!(p.metrics(&mut m), Ok(Verdict::Keep(vec![])));
    p.tick(101 * SECOND).expect("ticks");
    assert_eq!(
        decode_dropped(),
        vec![
            ("filtered".into(), "metrics".into(), 2, 100 * SECOND),
            ("filtered".into(), "traces".into(), 1, 100 * SECOND),
            ("rate_limited".into(), "traces".into(), 1, 100 * SECOND),
            ("sampled".into(), "traces".into(), 1, 100 * SECOND),
        ]
    );
    // Cumulative: the next tick repeats the totals, and adds to them.
    let mut l = logs(
        vec![],
        vec![LogRecord {
            trace_id: sampled_trace,
            ..log("x", 9)
        }],
    );
    assert_eq!(p.logs(&mut l), Ok(Verdict::Keep(vec![])));
    p.tick(102 * SECOND).expect("ticks");
    let totals = decode_dropped();
    assert_eq!(totals.len(), 5);
    assert!(totals.contains(&("sampled".into(), "logs".into(), 1, 100 * SECOND)));
    assert!(totals.contains(&("filtered".into(), "metrics".into(), 2, 100 * SECOND)));
}

#[test]
fn counts_survive_snapshot_and_restore() {
    testing::set_now(7 * SECOND);
    testing::take_emitted();
    let config = r#"{"drop": [{"name": "noise"}]}"#;
    let mut p = sample(config);
    p.traces(&mut traces(vec![], vec![span("noise"), span("noise")]))
        .expect("processes");
    let state = p.snapshot();

    testing::set_now(60 * SECOND);
    let mut q = sample(config);
    q.restore(&state).expect("restores");
    q.traces(&mut traces(vec![], vec![span("noise")]))
        .expect("processes");
    q.tick(61 * SECOND).expect("ticks");
    assert_eq!(
        decode_dropped(),
        vec![("filtered".into(), "traces".into(), 3, 7 * SECOND)]
    );

    // An empty state (a first start) is fine; garbage is an error.
    assert_eq!(sample(config).restore(&[]), Ok(()));
    assert!(matches!(
        sample(config).restore(b"not json"),
        Err(Error::Input(_))
    ));
}

#[test]
fn describes_itself() {
    let info = Sample::describe();
    assert_eq!(info.name, "sample");
    assert!(info.stateful);
    assert_eq!(
        info.signals,
        vec![Signal::Traces, Signal::Metrics, Signal::Logs]
    );
}

// ---- config errors -----------------------------------------------------------------------

#[test]
fn config_errors() {
    let cases = [
        (r#"{"dorp": []}"#, "unknown field `dorp`"),
        (
            r#"{"drop": [{}]}"#,
            "drop[0]: a condition needs at least one",
        ),
        (r#"{"drop": [{"nmae": "x"}]}"#, "unknown field `nmae`"),
        (r#"{"drop": [{"name": {"regex": "("}}]}"#, "invalid regex"),
        (
            r#"{"drop": [{"name": {"glob": "x*"}}]}"#,
            "unknown match `glob`",
        ),
        (
            r#"{"drop": [{"name": {"prefix": "a", "suffix": "b"}}]}"#,
            "invalid match",
        ),
        (r#"{"drop": [{"name": ["a"]}]}"#, "invalid match"),
        (
            r#"{"drop": [{"severity_below": "LOUD"}]}"#,
            "invalid severity",
        ),
        (r#"{"drop": [{"severity_below": 25}]}"#, "invalid severity"),
        (
            r#"{"drop": [{"status": "failed"}]}"#,
            "unknown variant `failed`",
        ),
        (
            r#"{"drop": [{"kind": "serverside"}]}"#,
            "unknown variant `serverside`",
        ),
        (
            r#"{"drop": [{"status": "ok", "severity_below": "INFO"}]}"#,
            "drop[0]: can never match",
        ),
        (
            r#"{"drop": [{"signal": "metrics", "kind": "server"}]}"#,
            "can never match",
        ),
        (
            r#"{"drop": [{"name": "a"}, {"status": "error"}]}"#,
            "drop[1]: selects error spans",
        ),
        (
            r#"{"probabilistic": {"percent": 120}}"#,
            "not between 0 and 100",
        ),
        (
            r#"{"probabilistic": {"percent": -1}}"#,
            "not between 0 and 100",
        ),
        (r#"{"probabilistic": {}}"#, "missing field `percent`"),
        (
            r#"{"probabilistic": {"percent": 10, "seed": 1}}"#,
            "unknown field `seed`",
        ),
        (
            r#"{"rate_limit": {"key": "k", "per_second": 0}}"#,
            "greater than 0",
        ),
        (
            r#"{"rate_limit": {"key": "k", "per_second": 5, "burst": 0.5}}"#,
            "at least 1",
        ),
        (
            r#"{"rate_limit": {"key": "", "per_second": 5}}"#,
            "must not be empty",
        ),
        (
            r#"{"rate_limit": {"key": "k", "per_second": 5, "max_keys": 0}}"#,
            "max_keys",
        ),
        (
            r#"{"rate_limit": {"per_second": 5}}"#,
            "missing field `key`",
        ),
        (r#"{"keep_errors": "yes"}"#, "invalid type"),
        ("not json", "expected"),
        ("[]", "expected a mapping"),
    ];
    for (config, expected) in cases {
        let message = config_error(config);
        assert!(
            message.contains(expected),
            "config {config}: {message:?} does not contain {expected:?}"
        );
    }
    // keep_errors: false allows dropping error spans by status.
    sample(r#"{"keep_errors": false, "drop": [{"status": "error"}]}"#);
}
