//! Native unit tests against the SDK's mock host.

use sluice_sdk::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::otlp::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};
use sluice_sdk::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sluice_sdk::otlp::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric,
    number_data_point,
};
use sluice_sdk::otlp::resource::v1::Resource;
use sluice_sdk::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use sluice_sdk::prost::Message;
use sluice_sdk::wire::Rewrite;
use sluice_sdk::{Error, Plugin, Signal, Verdict, testing};

use super::*;
use sluice_sdk::otlp::metrics::v1::AggregationTemporality;

const KEYS: &str = r#""hash_keys": {"k1": "0123456789abcdef0123456789abcdef", "k2": "fedcba9876543210fedcba9876543210"}"#;

/// A seeded xorshift: `next(n)` is below `n`, the same sequence in every run.
pub(crate) fn seeded(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}

pub(crate) fn plugin(config: &str) -> Redact {
    match Redact::new(config) {
        Ok(p) => p,
        Err(e) => panic!("config {config} rejected: {e}"),
    }
}

fn config_error(config: &str) -> String {
    match Redact::new(config) {
        Err(Error::Config(m)) => m,
        Err(e) => panic!("expected a config error for {config}, got {e}"),
        Ok(_) => panic!("expected a config error for {config}"),
    }
}

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    }
}

fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(v),
        ..Default::default()
    }
}

fn skv(k: &str, v: &str) -> KeyValue {
    kv(k, s(v))
}

fn int(i: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(i)),
    }
}

fn arr(values: Vec<AnyValue>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
    }
}

fn kvlist(values: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList { values })),
    }
}

fn text(v: &AnyValue) -> &str {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s,
        other => panic!("string expected, got {other:?}"),
    }
}

/// Runs one string through `p` as a log body; returns the body after.
/// Runs a batch through `p` as the gateway does: `rewrite` first (the splicing walk for traces
/// and logs), the decoded batch otherwise. A replaced batch is decoded back into `batch`.
fn process<M: Message + Default>(
    p: &mut Redact,
    signal: Signal,
    batch: &mut M,
    decoded: impl FnOnce(&mut Redact, &mut M) -> Result<Verdict, Error>,
) -> Verdict {
    match p
        .rewrite(signal, &batch.encode_to_vec())
        .expect("processes")
    {
        Some(Rewrite::Unchanged) => Verdict::Unchanged,
        Some(Rewrite::Replace(bytes)) => {
            *batch = M::decode(bytes.as_slice()).expect("the spliced batch decodes");
            Verdict::Modified
        }
        None => decoded(p, batch).expect("processes"),
    }
}

fn host_traces(p: &mut Redact, batch: &mut ExportTraceServiceRequest) -> Verdict {
    process(p, Signal::Traces, batch, |p, b| p.traces(b))
}

fn host_logs(p: &mut Redact, batch: &mut ExportLogsServiceRequest) -> Verdict {
    process(p, Signal::Logs, batch, |p, b| p.logs(b))
}

pub(crate) fn redact_with(p: &mut Redact, input: &str) -> String {
    let mut batch = testing::logs(&[input]);
    let verdict = host_logs(p, &mut batch);
    let record = &batch.resource_logs[0].scope_logs[0].log_records[0];
    let out = text(record.body.as_ref().expect("body")).to_string();
    assert_eq!(
        verdict == Verdict::Modified,
        out != input,
        "verdict {verdict:?} for {input:?} -> {out:?}"
    );
    out
}

fn redact(input: &str) -> String {
    redact_with(&mut plugin("{}"), input)
}

/// Runs one attribute through `p` on a span; returns the span's attributes after.
fn span_attrs(p: &mut Redact, attrs: Vec<KeyValue>) -> (Verdict, Vec<KeyValue>) {
    let mut batch = testing::traces(&["op"]);
    batch.resource_spans[0].scope_spans[0].spans[0].attributes = attrs;
    let v = host_traces(p, &mut batch);
    let attrs = std::mem::take(&mut batch.resource_spans[0].scope_spans[0].spans[0].attributes);
    (v, attrs)
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn span_names(batch: &ExportTraceServiceRequest) -> Vec<String> {
    batch
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.name.clone())
        .collect()
}

fn emitted_counts() -> Vec<(String, String, i64)> {
    let emitted = testing::take_emitted();
    let mut out = Vec::new();
    for (signal, bytes) in emitted {
        assert_eq!(signal, Signal::Metrics);
        let req = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("metrics");
        for m in req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            assert_eq!(m.name, METRIC_NAME);
            let Some(metric::Data::Sum(sum)) = &m.data else {
                panic!("sum expected")
            };
            for p in &sum.data_points {
                let rule = text(attr(&p.attributes, "rule").expect("rule")).to_string();
                let action = text(attr(&p.attributes, "action").expect("action")).to_string();
                let Some(number_data_point::Value::AsInt(n)) = p.value else {
                    panic!("int expected")
                };
                out.push((rule, action, n));
            }
        }
    }
    out.sort();
    out
}

// ------------------------------------------------------------------------ detectors

#[test]
fn email() {
    assert_eq!(
        redact("login by bob.smith+x@mail.example.com ok"),
        "login by [REDACTED] ok"
    );
    assert_eq!(redact("ping a@b.io."), "ping [REDACTED].");
    assert_eq!(redact("user@localhost"), "user@localhost");
    assert_eq!(redact("@handle on social"), "@handle on social");
}

#[test]
fn credit_card_needs_luhn() {
    assert_eq!(redact("card 4111111111111111"), "card [REDACTED]");
    assert_eq!(
        redact("card 4111 1111 1111 1111 exp"),
        "card [REDACTED] exp"
    );
    assert_eq!(redact("mc 5555-5555-5555-4444."), "mc [REDACTED].");
    // A 16-digit order id that fails Luhn.
    assert_eq!(redact("order 4111111111111112"), "order 4111111111111112");
    assert_eq!(redact("order 1234567890123456"), "order 1234567890123456");
    // Luhn-valid but no card network starts with 0, 1, 7, 8 or 9.
    assert_eq!(redact("id 0000000000000000"), "id 0000000000000000");
    // A card followed by another number is still found.
    assert_eq!(
        redact("card 4111 1111 1111 1111 12 25"),
        "card [REDACTED] 12 25"
    );
    assert_eq!(
        redact("card 4111 1111 1111 1111 12/25"),
        "card [REDACTED] 12/25"
    );
    // Part of a longer number, or of a hex id.
    assert_eq!(redact("n 41111111111111110000"), "n 41111111111111110000");
    assert_eq!(
        redact("trace a4111111111111111f"),
        "trace a4111111111111111f"
    );
}

#[test]
fn iban_needs_mod97() {
    assert_eq!(redact("pay DE89370400440532013000"), "pay [REDACTED]");
    assert_eq!(
        redact("pay GB82 WEST 1234 5698 7654 32 today"),
        "pay [REDACTED] today"
    );
    assert_eq!(
        redact("DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX"),
        "[REDACTED] BIC COBADEFFXXX"
    );
    // Wrong checksum.
    assert_eq!(
        redact("pay DE89370400440532013001"),
        "pay DE89370400440532013001"
    );
    assert_eq!(
        redact("pay GB82 WEST 1234 5698 7654 33 today"),
        "pay GB82 WEST 1234 5698 7654 33 today"
    );
}

#[test]
fn ipv4() {
    assert_eq!(
        redact("from 192.168.1.20 to 10.0.0.1."),
        "from [REDACTED] to [REDACTED]."
    );
    assert_eq!(redact("net 10.0.0.0/8"), "net [REDACTED]/8");
    assert_eq!(redact("bad 999.1.1.1"), "bad 999.1.1.1");
    assert_eq!(redact("version 1.2.3.4.5"), "version 1.2.3.4.5");
    assert_eq!(redact("leading zero 01.2.3.4"), "leading zero 01.2.3.4");
}

#[test]
fn ipv6() {
    assert_eq!(
        redact("peer 2001:db8::8a2e:370:7334 closed"),
        "peer [REDACTED] closed"
    );
    assert_eq!(redact("[fe80::1]:443"), "[[REDACTED]]:443");
    assert_eq!(redact("addr fe80::1: refused"), "addr [REDACTED]: refused");
    assert_eq!(redact("mapped ::ffff:192.0.2.1"), "mapped [REDACTED]");
    assert_eq!(redact("at 12:30:45 ok"), "at 12:30:45 ok");
    assert_eq!(
        redact("std::fmt::Display and Vec::default"),
        "std::fmt::Display and Vec::default"
    );
    assert_eq!(redact("mac 00:1a:2b:3c:4d:5e"), "mac 00:1a:2b:3c:4d:5e");
}

#[test]
fn jwt() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    assert_eq!(redact(&format!("jwt {jwt} end")), "jwt [REDACTED] end");
    assert_eq!(redact("eyJ alone. not a token"), "eyJ alone. not a token");
}

#[test]
fn bearer_and_basic_credentials() {
    assert_eq!(
        redact("Authorization: Bearer abc"),
        "Authorization: Bearer [REDACTED]"
    );
    assert_eq!(
        redact(r#"{"authorization":"Basic dXNlcjpwYXNz"}"#),
        r#"{"authorization":"Basic [REDACTED]"}"#
    );
    assert_eq!(
        redact("sent bearer 9f8e7d6c5b4a3210 upstream"),
        "sent bearer [REDACTED] upstream"
    );
    assert_eq!(
        redact("retry with Basic YWxhZGRpbjpvcGVuc2VzYW1l"),
        "retry with Basic [REDACTED]"
    );
    // Words, not credentials.
    assert_eq!(redact("bearer token expired"), "bearer token expired");
    assert_eq!(redact("Basic setup done"), "Basic setup done");
    assert_eq!(redact("basic auth failed"), "basic auth failed");
    // A header value on its own.
    let mut p = plugin("{}");
    let (_, attrs) = span_attrs(&mut p, vec![skv("http.header.x", "Bearer abc")]);
    assert_eq!(
        text(&attrs[0].value.clone().expect("value")),
        "Bearer [REDACTED]"
    );
}

#[test]
fn aws_access_key() {
    assert_eq!(
        redact("key=AKIAIOSFODNN7EXAMPLE used"),
        "key=[REDACTED] used"
    );
    assert_eq!(redact("id ASIAY34FZKBOKMUTVV7A"), "id [REDACTED]");
    assert_eq!(redact("AKIA short"), "AKIA short");
    assert_eq!(redact("xAKIAIOSFODNN7EXAMPLE"), "xAKIAIOSFODNN7EXAMPLE");
}

#[test]
fn secret_keys_by_attribute_key() {
    let mut p = plugin("{}");
    let (v, attrs) = span_attrs(
        &mut p,
        vec![
            skv("password", "hunter2"),
            skv("db.Password", "hunter2"),
            skv("X-Api-Key", "k"),
            skv("http.request.header.authorization", "Token abc"),
            skv("http.response.header.set-cookie", "sid=1"),
            skv("accessToken", "t"),
            kv("pin_secret", int(1234)),
            kv("gen_ai.usage.input_tokens", int(42)),
            skv("token_count", "12"),
            skv("user.name", "bob"),
            skv("password_hint", "the usual"),
            skv("secret", ""),
        ],
    );
    assert_eq!(v, Verdict::Modified);
    for k in [
        "password",
        "db.Password",
        "X-Api-Key",
        "http.request.header.authorization",
        "http.response.header.set-cookie",
        "accessToken",
        "pin_secret",
    ] {
        assert_eq!(text(attr(&attrs, k).expect(k)), "[REDACTED]", "{k}");
    }
    assert_eq!(attr(&attrs, "gen_ai.usage.input_tokens"), Some(&int(42)));
    assert_eq!(text(attr(&attrs, "token_count").expect("kept")), "12");
    assert_eq!(text(attr(&attrs, "user.name").expect("kept")), "bob");
    assert_eq!(
        text(attr(&attrs, "password_hint").expect("kept")),
        "the usual"
    );
    assert_eq!(text(attr(&attrs, "secret").expect("kept")), "");

    // Extra names, and off.
    let mut p = plugin(r#"{"secret_key_names": ["ssn"]}"#);
    let (_, attrs) = span_attrs(&mut p, vec![skv("user.ssn", "078-05-1120")]);
    assert_eq!(text(attr(&attrs, "user.ssn").expect("kept")), "[REDACTED]");
    let mut p = plugin(r#"{"detectors": {"secret_keys": "off"}}"#);
    let (v, _) = span_attrs(&mut p, vec![skv("password", "hunter2")]);
    assert_eq!(v, Verdict::Unchanged);
}

#[test]
fn url_secrets_only_the_value() {
    assert_eq!(
        redact("GET https://api.example.com/v1?token=abc123&page=2"),
        "GET https://api.example.com/v1?token=[REDACTED]&page=2"
    );
    assert_eq!(
        redact("/cb#access_token=xyz&state=1"),
        "/cb#access_token=[REDACTED]&state=1"
    );
    assert_eq!(
        redact("https://s3/x?X-Amz-Signature=abcdef&X-Amz-Date=1"),
        "https://s3/x?X-Amz-Signature=[REDACTED]&X-Amz-Date=1"
    );
    assert_eq!(
        redact("api_key=k1&sig=zz"),
        "api_key=[REDACTED]&sig=[REDACTED]"
    );
    assert_eq!(redact("/search?q=shoes&page=2"), "/search?q=shoes&page=2");
    assert_eq!(redact("/x?monkey=1"), "/x?monkey=1");
}

#[test]
fn phone_e164() {
    assert_eq!(redact("call +14155552671 now"), "call [REDACTED] now");
    assert_eq!(redact("call +442071838750"), "call [REDACTED]");
    assert_eq!(redact("short +1234567"), "short +1234567");
    assert_eq!(redact("sum 1+23456789"), "sum 1+23456789");
    assert_eq!(
        redact("too long +1234567890123456"),
        "too long +1234567890123456"
    );
}

#[test]
fn detectors_can_be_turned_off() {
    let mut p = plugin(r#"{"detectors": {"ipv4": "off", "email": false}}"#);
    assert_eq!(
        redact_with(
            &mut p,
            "bob@example.com from 10.1.2.3 card 4111111111111111"
        ),
        "bob@example.com from 10.1.2.3 card [REDACTED]"
    );
}

#[test]
fn custom_rules() {
    let mut p = plugin(
        r#"{"rules": [
            {"name": "employee_id", "pattern": "EMP-[0-9]{6}"},
            {"name": "ssn", "pattern": "ssn=(?P<redact>[0-9-]+)", "action": "mask"},
            {"name": "unused", "pattern": "zzz", "action": "off"}
        ]}"#,
    );
    assert_eq!(
        redact_with(&mut p, "EMP-123456 asked ssn=078-05-1120 zzz"),
        "[REDACTED] asked ssn=[REDACTED] zzz"
    );
    assert_eq!(redact_with(&mut p, "EMP-12 is fine"), "EMP-12 is fine");
}

// ------------------------------------------------------------------------ actions

#[test]
fn mask_uses_the_configured_string() {
    let mut p = plugin(r#"{"mask": "***"}"#);
    assert_eq!(redact_with(&mut p, "to bob@example.com"), "to ***");
}

#[test]
fn hash_is_keyed_stable_and_rotates_by_key_id() {
    let mut p = plugin(&format!(
        r#"{{"detectors": {{"email": "hash"}}, {KEYS}, "hash_key": "k1"}}"#
    ));
    let a = redact_with(&mut p, "bob@example.com");
    let b = redact_with(&mut p, "mail bob@example.com twice");
    let c = redact_with(&mut p, "alice@example.com");
    assert!(a.starts_with("hmac:k1:"), "{a}");
    assert_eq!(a.len(), "hmac:k1:".len() + 32);
    assert!(a["hmac:k1:".len()..].bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(b, format!("mail {a} twice"));
    assert_ne!(a, c);
    // Hashing again leaves the hash alone.
    assert_eq!(redact_with(&mut p, &a), a);

    let mut q = plugin(&format!(
        r#"{{"detectors": {{"email": "hash"}}, {KEYS}, "hash_key": "k2"}}"#
    ));
    let d = redact_with(&mut q, "bob@example.com");
    assert!(d.starts_with("hmac:k2:"), "{d}");
    assert_ne!(d[8..], a[8..]);

    // A single key needs no hash_key; the value is HMAC-SHA256 (RFC 4231 test case 2).
    let mut r = plugin(
        r#"{"rules": [{"name": "q", "pattern": "what do ya want for nothing\\?", "action": "hash"}],
            "hash_keys": {"jefe": "Jefe"}}"#,
    );
    assert_eq!(
        redact_with(&mut r, "what do ya want for nothing?"),
        "hmac:jefe:5bdcc146bf60754e6a042426089575c7"
    );
}

#[test]
fn hash_of_secret_key_values() {
    let mut p = plugin(&format!(
        r#"{{"detectors": {{"secret_keys": "hash"}}, {KEYS}, "hash_key": "k1"}}"#
    ));
    let (_, attrs) = span_attrs(
        &mut p,
        vec![skv("api_key", "abc"), kv("pin_secret", int(7))],
    );
    let h = text(attr(&attrs, "api_key").expect("kept"));
    assert!(h.starts_with("hmac:k1:"), "{h}");
    assert!(text(attr(&attrs, "pin_secret").expect("kept")).starts_with("hmac:k1:"));
}

#[test]
fn drop_attribute_removes_the_attribute_or_masks_names() {
    let mut p =
        plugin(r#"{"detectors": {"email": "drop_attribute", "secret_keys": "drop_attribute"}}"#);
    let mut batch = testing::traces(&["mail bob@example.com"]);
    let sp = &mut batch.resource_spans[0].scope_spans[0].spans[0];
    sp.attributes = vec![
        skv("user.email", "bob@example.com"),
        kv("cc", arr(vec![s("x"), s("a@b.io")])),
        skv("password", "p"),
        skv("http.method", "GET"),
    ];
    assert_eq!(p.traces(&mut batch), Ok(Verdict::Modified));
    let sp = &batch.resource_spans[0].scope_spans[0].spans[0];
    // The span name cannot be dropped: masked instead.
    assert_eq!(sp.name, "mail [REDACTED]");
    assert_eq!(sp.attributes, vec![skv("http.method", "GET")]);

    // A log body cannot be dropped either.
    assert_eq!(redact_with(&mut p, "to bob@example.com"), "to [REDACTED]");
}

#[test]
fn drop_record_across_spans_logs_and_data_points() {
    let mut p = plugin(r#"{"detectors": {"credit_card": "drop_record"}}"#);
    let card = "4111111111111111";

    // Spans: by name, attribute, event and link.
    let mut batch = testing::traces(&["a", &format!("pay {card}"), "c", "d", "e", "f"]);
    let spans = &mut batch.resource_spans[0].scope_spans[0].spans;
    spans[2].attributes = vec![skv("card", card)];
    spans[3].events = vec![span::Event {
        name: "charged".into(),
        attributes: vec![skv("card", card)],
        ..Default::default()
    }];
    spans[4].links = vec![span::Link {
        attributes: vec![skv("card", card)],
        ..Default::default()
    }];
    spans[5].attributes = vec![skv("email", "bob@example.com")];
    assert_eq!(p.traces(&mut batch), Ok(Verdict::Modified));
    assert_eq!(span_names(&batch), vec!["a", "f"]);
    assert_eq!(
        batch.resource_spans[0].scope_spans[0].spans[1].attributes,
        vec![skv("email", "[REDACTED]")]
    );

    // Logs: by body and attribute.
    let mut batch = testing::logs(&["ok", &format!("card {card}"), "ok too"]);
    batch.resource_logs[0].scope_logs[0].log_records[2].attributes = vec![skv("c", card)];
    assert_eq!(p.logs(&mut batch), Ok(Verdict::Modified));
    let bodies: Vec<String> = batch.resource_logs[0].scope_logs[0]
        .log_records
        .iter()
        .map(|l| text(l.body.as_ref().expect("body")).to_string())
        .collect();
    assert_eq!(bodies, vec!["ok"]);

    // Data points of all five metric types.
    let mut batch = metrics_batch(|i| {
        if i % 2 == 1 {
            vec![skv("card", card)]
        } else {
            vec![skv("route", "/x")]
        }
    });
    assert_eq!(p.metrics(&mut batch), Ok(Verdict::Modified));
    let counts = point_counts(&batch);
    assert_eq!(counts, vec![1, 1, 1, 1, 1]);

    // A resource attribute drops every record of the resource; nothing else is pruned.
    let mut batch = testing::traces(&["a", "b"]);
    batch.resource_spans[0].resource = Some(Resource {
        attributes: vec![skv("owner.card", card)],
        ..Default::default()
    });
    assert_eq!(p.traces(&mut batch), Ok(Verdict::Modified));
    assert_eq!(batch.resource_spans.len(), 1);
    assert_eq!(batch.resource_spans[0].scope_spans.len(), 1);
    assert!(batch.resource_spans[0].scope_spans[0].spans.is_empty());
}

/// One metric of each type, each with two data points whose attributes `attrs(i)` gives
/// (i counts data points across the batch).
fn metrics_batch(attrs: impl Fn(usize) -> Vec<KeyValue>) -> ExportMetricsServiceRequest {
    let mut i = 0;
    let mut next = || {
        i += 1;
        attrs(i - 1)
    };
    let number = |a: Vec<KeyValue>| NumberDataPoint {
        attributes: a,
        value: Some(number_data_point::Value::AsInt(1)),
        ..Default::default()
    };
    let metric = |name: &str, data: metric::Data| Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    };
    let metrics = vec![
        metric(
            "g",
            metric::Data::Gauge(Gauge {
                data_points: vec![number(next()), number(next())],
            }),
        ),
        metric(
            "s",
            metric::Data::Sum(Sum {
                data_points: vec![number(next()), number(next())],
                ..Default::default()
            }),
        ),
        metric(
            "h",
            metric::Data::Histogram(Histogram {
                data_points: vec![
                    HistogramDataPoint {
                        attributes: next(),
                        ..Default::default()
                    },
                    HistogramDataPoint {
                        attributes: next(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        ),
        metric(
            "e",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![
                    ExponentialHistogramDataPoint {
                        attributes: next(),
                        ..Default::default()
                    },
                    ExponentialHistogramDataPoint {
                        attributes: next(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        ),
        metric(
            "q",
            metric::Data::Summary(Summary {
                data_points: vec![
                    SummaryDataPoint {
                        attributes: next(),
                        ..Default::default()
                    },
                    SummaryDataPoint {
                        attributes: next(),
                        ..Default::default()
                    },
                ],
            }),
        ),
    ];
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

fn point_counts(batch: &ExportMetricsServiceRequest) -> Vec<usize> {
    batch.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
            None => 0,
        })
        .collect()
}

fn point_attrs(batch: &ExportMetricsServiceRequest) -> Vec<Vec<KeyValue>> {
    let mut out = Vec::new();
    for m in &batch.resource_metrics[0].scope_metrics[0].metrics {
        match &m.data {
            Some(metric::Data::Gauge(g)) => {
                out.extend(g.data_points.iter().map(|p| p.attributes.clone()))
            }
            Some(metric::Data::Sum(s)) => {
                out.extend(s.data_points.iter().map(|p| p.attributes.clone()))
            }
            Some(metric::Data::Histogram(h)) => {
                out.extend(h.data_points.iter().map(|p| p.attributes.clone()))
            }
            Some(metric::Data::ExponentialHistogram(h)) => {
                out.extend(h.data_points.iter().map(|p| p.attributes.clone()))
            }
            Some(metric::Data::Summary(s)) => {
                out.extend(s.data_points.iter().map(|p| p.attributes.clone()))
            }
            None => {}
        }
    }
    out
}

#[test]
fn data_point_attributes_of_every_metric_type_are_redacted() {
    let mut p = plugin("{}");
    let mut batch =
        metrics_batch(|i| vec![skv("client", &format!("10.0.0.{i}")), skv("route", "/x")]);
    assert_eq!(p.metrics(&mut batch), Ok(Verdict::Modified));
    let attrs = point_attrs(&batch);
    assert_eq!(attrs.len(), 10);
    for a in attrs {
        assert_eq!(a, vec![skv("client", "[REDACTED]"), skv("route", "/x")]);
    }
}

#[test]
fn off_does_nothing() {
    let mut p = plugin(
        r#"{"detectors": {"email": "off", "credit_card": "off", "iban": "off", "ipv4": "off",
            "ipv6": "off", "jwt": "off", "bearer": "off", "aws_access_key": "off",
            "secret_keys": "off", "url_secrets": "off", "phone": "off"}}"#,
    );
    let input = "bob@example.com 4111111111111111 10.0.0.1 ?token=x +14155552671";
    assert_eq!(redact_with(&mut p, input), input);
    let (v, _) = span_attrs(&mut p, vec![skv("password", "x")]);
    assert_eq!(v, Verdict::Unchanged);
}

// ------------------------------------------------------------------------ keys and bodies

#[test]
fn allow_and_block_keys() {
    let mut p = plugin(
        r#"{"allow_keys": ["client.address", "Password"], "block_keys": ["user.ssn", "enduser.id"]}"#,
    );
    let (v, attrs) = span_attrs(
        &mut p,
        vec![
            skv("client.address", "10.0.0.1"),
            skv("password", "kept on purpose"),
            skv("user.ssn", "078-05-1120"),
            skv("enduser_id", "u-1"),
            skv("server.address", "10.0.0.2"),
        ],
    );
    assert_eq!(v, Verdict::Modified);
    assert_eq!(
        attrs,
        vec![
            skv("client.address", "10.0.0.1"),
            skv("password", "kept on purpose"),
            skv("server.address", "[REDACTED]"),
        ]
    );
    // Blocked keys are dropped whatever their value.
    let (v, attrs) = span_attrs(&mut p, vec![kv("user.ssn", int(1)), skv("a", "b")]);
    assert_eq!(v, Verdict::Modified);
    assert_eq!(attrs, vec![skv("a", "b")]);
}

#[test]
fn nested_log_bodies() {
    let mut p = plugin(r#"{"detectors": {"ipv4": "drop_attribute"}, "block_keys": ["internal"]}"#);
    let mut batch = testing::logs(&["x"]);
    let record = &mut batch.resource_logs[0].scope_logs[0].log_records[0];
    record.body = Some(kvlist(vec![
        skv("msg", "login bob@example.com"),
        kv(
            "user",
            kvlist(vec![
                skv("name", "bob"),
                skv("password", "hunter2"),
                kv(
                    "emails",
                    arr(vec![s("a@b.io"), s("plain"), arr(vec![s("c@d.io")])]),
                ),
                skv("ip", "10.1.2.3"),
                skv("internal", "x"),
            ]),
        ),
        kv("tags", arr(vec![s("+14155552671"), int(3)])),
        kv("hosts", arr(vec![s("10.1.2.3")])),
    ]));
    record.attributes = vec![skv("note", "card 4111111111111111")];
    assert_eq!(p.logs(&mut batch), Ok(Verdict::Modified));
    let record = &batch.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(
        record.body,
        Some(kvlist(vec![
            skv("msg", "login [REDACTED]"),
            kv(
                "user",
                kvlist(vec![
                    skv("name", "bob"),
                    skv("password", "[REDACTED]"),
                    kv(
                        "emails",
                        arr(vec![
                            s("[REDACTED]"),
                            s("plain"),
                            arr(vec![s("[REDACTED]")])
                        ])
                    ),
                ]),
            ),
            kv("tags", arr(vec![s("[REDACTED]"), int(3)])),
        ]))
    );
    assert_eq!(record.attributes, vec![skv("note", "card [REDACTED]")]);

    // An array body: drop_attribute has no attribute to drop and masks.
    let mut batch = testing::logs(&["x"]);
    batch.resource_logs[0].scope_logs[0].log_records[0].body = Some(arr(vec![s("10.1.2.3")]));
    assert_eq!(p.logs(&mut batch), Ok(Verdict::Modified));
    assert_eq!(
        batch.resource_logs[0].scope_logs[0].log_records[0].body,
        Some(arr(vec![s("[REDACTED]")]))
    );
}

#[test]
fn every_place_in_a_span_is_scanned() {
    let mut p = plugin("{}");
    let mut batch = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![skv("host.ip", "10.0.0.9"), skv("service.name", "api")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "GET /u/bob@example.com".into(),
                    attributes: vec![skv("peer", "10.0.0.1")],
                    events: vec![span::Event {
                        name: "mail to a@b.io".into(),
                        attributes: vec![skv("exception.message", "no user a@b.io")],
                        ..Default::default()
                    }],
                    links: vec![span::Link {
                        attributes: vec![skv("origin", "+14155552671")],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    assert_eq!(p.traces(&mut batch), Ok(Verdict::Modified));
    let rs = &batch.resource_spans[0];
    assert_eq!(
        rs.resource.as_ref().expect("resource").attributes,
        vec![skv("host.ip", "[REDACTED]"), skv("service.name", "api")]
    );
    let sp = &rs.scope_spans[0].spans[0];
    assert_eq!(sp.name, "GET /u/[REDACTED]");
    assert_eq!(sp.attributes, vec![skv("peer", "[REDACTED]")]);
    assert_eq!(sp.events[0].name, "mail to [REDACTED]");
    assert_eq!(
        sp.events[0].attributes,
        vec![skv("exception.message", "no user [REDACTED]")]
    );
    assert_eq!(sp.links[0].attributes, vec![skv("origin", "[REDACTED]")]);

    // Resource and log attributes in logs.
    let mut batch = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![skv("host.ip", "10.0.0.9")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    attributes: vec![skv("client", "10.0.0.1")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    assert_eq!(p.logs(&mut batch), Ok(Verdict::Modified));
    let rl = &batch.resource_logs[0];
    assert_eq!(
        rl.resource.as_ref().expect("resource").attributes,
        vec![skv("host.ip", "[REDACTED]")]
    );
    assert_eq!(
        rl.scope_logs[0].log_records[0].attributes,
        vec![skv("client", "[REDACTED]")]
    );
}

// ------------------------------------------------------------------------ verdicts, counts, state

#[test]
fn clean_batches_are_unchanged() {
    let mut p = plugin("{}");
    let mut traces = testing::traces(&["GET /users/{id}", "SELECT users", "HTTP POST"]);
    traces.resource_spans[0].scope_spans[0].spans[0].attributes = vec![
        skv("http.route", "/users/{id}"),
        kv("http.status_code", int(200)),
        skv("url.full", "https://api.example.com/users?page=2"),
        skv("db.statement", "SELECT * FROM t WHERE id = ?"),
        skv("time", "12:30:45"),
        skv("version", "1.2.3"),
        kv("gen_ai.usage.input_tokens", int(12)),
        skv("secret.name", "db-creds"),
    ];
    let before = traces.clone();
    assert_eq!(p.traces(&mut traces), Ok(Verdict::Unchanged));
    assert_eq!(traces, before);

    let mut logs = testing::logs(&[
        "started in 12 ms",
        "GET /health 200",
        "order 1234567890123456",
    ]);
    let before = logs.clone();
    assert_eq!(p.logs(&mut logs), Ok(Verdict::Unchanged));
    assert_eq!(logs, before);

    let mut metrics = metrics_batch(|_| vec![skv("route", "/x"), kv("code", int(200))]);
    let before = metrics.clone();
    assert_eq!(p.metrics(&mut metrics), Ok(Verdict::Unchanged));
    assert_eq!(metrics, before);

    assert!(p.state.total() == 0);
    p.tick(1).expect("ticks");
    assert!(
        testing::take_emitted().is_empty(),
        "nothing counted, nothing emitted"
    );
}

#[test]
fn redacting_twice_changes_nothing_more() {
    let mut p = plugin("{}");
    let once = redact_with(&mut p, "bob@example.com ?token=abc 10.0.0.1");
    assert_eq!(once, "[REDACTED] ?token=[REDACTED] [REDACTED]");
    let mut batch = testing::logs(&[&once]);
    assert_eq!(p.logs(&mut batch), Ok(Verdict::Unchanged));
    let (v, _) = span_attrs(&mut p, vec![skv("password", "[REDACTED]")]);
    assert_eq!(v, Verdict::Unchanged);
}

#[test]
fn emits_the_counter_on_tick() {
    testing::take_emitted();
    testing::set_now(1_000);
    let mut p = plugin(r#"{"detectors": {"phone": "drop_record"}, "block_keys": ["x"]}"#);
    redact_with(&mut p, "a@b.io and c@d.io");
    let (_, _) = span_attrs(&mut p, vec![skv("x", "1"), skv("password", "p")]);
    let mut batch = testing::logs(&["+14155552671"]);
    p.logs(&mut batch).expect("processes");
    p.tick(5_000).expect("ticks");
    assert_eq!(
        emitted_counts(),
        vec![
            ("block_keys".into(), "drop_attribute".into(), 1),
            ("email".into(), "mask".into(), 2),
            ("phone".into(), "drop_record".into(), 1),
            ("secret_keys".into(), "mask".into(), 1),
        ]
    );

    // The metric's shape.
    redact_with(&mut p, "e@f.io");
    p.tick(6_000).expect("ticks");
    let emitted = testing::take_emitted();
    assert_eq!(emitted.len(), 1);
    let req = ExportMetricsServiceRequest::decode(emitted[0].1.as_slice()).expect("metrics");
    let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
    assert_eq!(m.name, "redact.redactions");
    assert_eq!(m.unit, "{redaction}");
    let Some(metric::Data::Sum(sum)) = &m.data else {
        panic!("sum expected")
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let email = sum
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "rule") == Some(&s("email")))
        .expect("email series");
    assert_eq!(email.value, Some(number_data_point::Value::AsInt(3)));
    assert_eq!(email.start_time_unix_nano, 1_000);
    assert_eq!(email.time_unix_nano, 6_000);
}

#[test]
fn counts_survive_snapshot_and_restore() {
    testing::take_emitted();
    let mut p = plugin(r#"{"rules": [{"name": "emp", "pattern": "EMP-[0-9]+"}]}"#);
    redact_with(&mut p, "EMP-1 bob@example.com");
    redact_with(&mut p, "EMP-2");
    let state = p.snapshot();

    // The new configuration no longer has `emp`; its count is carried on.
    let mut q = plugin("{}");
    q.restore(&state).expect("restores");
    redact_with(&mut q, "alice@example.com");
    q.tick(1).expect("ticks");
    assert_eq!(
        emitted_counts(),
        vec![
            ("email".into(), "mask".into(), 2),
            ("emp".into(), "mask".into(), 2),
        ]
    );
    // And on to the next instance.
    let mut r = plugin(r#"{"rules": [{"name": "emp", "pattern": "EMP-[0-9]+"}]}"#);
    r.restore(&q.snapshot()).expect("restores");
    redact_with(&mut r, "EMP-3");
    r.tick(2).expect("ticks");
    assert_eq!(
        emitted_counts(),
        vec![
            ("email".into(), "mask".into(), 2),
            ("emp".into(), "mask".into(), 3),
        ]
    );

    assert!(r.restore(b"").is_ok());
    assert!(matches!(r.restore(b"not json"), Err(Error::Input(_))));
}

// ------------------------------------------------------------------------ configuration

#[test]
fn empty_config_turns_every_detector_on() {
    for config in ["{}", "", "  "] {
        let mut p = plugin(config);
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig";
        let input = format!(
            "e bob@example.com c 4111111111111111 i DE89370400440532013000 v4 10.0.0.1 \
             v6 2001:db8::1 j {jwt} Authorization: Bearer abc"
        );
        assert_eq!(
            redact_with(&mut p, &input),
            "e [REDACTED] c [REDACTED] i [REDACTED] v4 [REDACTED] v6 [REDACTED] j [REDACTED] \
             Authorization: Bearer [REDACTED]"
        );
        assert_eq!(
            redact_with(&mut p, "k AKIAIOSFODNN7EXAMPLE u /x?key=v p +14155552671"),
            "k [REDACTED] u /x?key=[REDACTED] p [REDACTED]"
        );
        let (_, attrs) = span_attrs(&mut p, vec![skv("password", "x")]);
        assert_eq!(attrs, vec![skv("password", "[REDACTED]")]);
    }
}

#[test]
fn config_errors() {
    let e = config_error(r#"{"detector": {}}"#);
    assert!(e.contains("unknown field `detector`"), "{e}");
    let e = config_error(r#"{"detectors": {"emial": "mask"}}"#);
    assert!(e.contains("unknown field `emial`"), "{e}");
    let e = config_error(r#"{"detectors": {"email": "scramble"}}"#);
    assert!(e.contains("scramble"), "{e}");
    let e = config_error(r#"{"rules": [{"name": "x", "pattern": "a", "actoin": "mask"}]}"#);
    assert!(e.contains("actoin"), "{e}");

    let e = config_error(r#"{"rules": [{"name": "broken", "pattern": "([a-z"}]}"#);
    assert!(e.contains("broken") && e.contains("invalid pattern"), "{e}");
    let e = config_error(r#"{"rules": [{"name": "everything", "pattern": "x*"}]}"#);
    assert!(
        e.contains("everything") && e.contains("empty string"),
        "{e}"
    );
    let e = config_error(r#"{"rules": [{"name": "email", "pattern": "x"}]}"#);
    assert!(e.contains("already used"), "{e}");
    let e = config_error(
        r#"{"rules": [{"name": "a", "pattern": "x"}, {"name": "a", "pattern": "y"}]}"#,
    );
    assert!(e.contains("already used"), "{e}");

    let e = config_error(r#"{"detectors": {"email": "hash"}}"#);
    assert!(e.contains("email") && e.contains("hash key"), "{e}");
    let e = config_error(r#"{"rules": [{"name": "r", "pattern": "x", "action": "hash"}]}"#);
    assert!(e.contains("`r`") && e.contains("hash key"), "{e}");
    let e = config_error(&format!(r#"{{"detectors": {{"email": "hash"}}, {KEYS}}}"#));
    assert!(e.contains("hash key"), "{e}");
    let e = config_error(&format!(r#"{{{KEYS}, "hash_key": "k3"}}"#));
    assert!(e.contains("k3"), "{e}");
    let e = config_error(r#"{"hash_keys": {"a:b": "0123456789abcdef"}}"#);
    assert!(e.contains("a:b"), "{e}");
    let e = config_error(r#"{"hash_keys": {"k": ""}}"#);
    assert!(e.contains("empty"), "{e}");
    // The secret never appears in an error.
    let e = config_error(r#"{"hash_keys": {"k": "supersecretvalue1"}, "hash_key": "nope"}"#);
    assert!(!e.contains("supersecretvalue1"), "{e}");

    let e = config_error(r#"{"allow_keys": ["user.id"], "block_keys": ["user_id"]}"#);
    assert!(e.contains("user_id"), "{e}");

    // A short key is allowed, with a warning.
    testing::take_logs();
    plugin(r#"{"hash_keys": {"k": "short"}, "detectors": {"email": "hash"}}"#);
    assert!(
        testing::take_logs()
            .iter()
            .any(|(_, m)| m.contains("short"))
    );
}

/// Strings made of the pieces detectors look for, cut and mixed with multi-byte characters:
/// nothing panics, on the first pass or on a second one over the redacted text.
#[test]
fn arbitrary_text_never_panics() {
    const PIECES: &[&str] = &[
        "4111",
        "1111",
        " ",
        "-",
        "+",
        "=",
        "?",
        "&",
        "#",
        ":",
        "::",
        ".",
        "@",
        "é",
        "日本",
        "AKIA",
        "ASIA",
        "eyJ",
        "Bearer ",
        "basic ",
        "token",
        "key",
        "DE89",
        "GB82",
        "WEST",
        "bob",
        "example.com",
        "10",
        "255",
        "0",
        "fe80",
        "ffff",
        "\"",
        "'",
        "/",
        "[REDACTED]",
        "hmac:k1:",
        "0123456789abcdef",
        "Authorization: ",
        "\u{0}",
        "\u{10ffff}",
        "x",
    ];
    let mut p = plugin(
        r#"{"rules": [{"name": "r", "pattern": "(?i)tok(?P<redact>en)?"}],
            "detectors": {"phone": "hash"}, "hash_keys": {"k1": "0123456789abcdef0123456789abcdef"}}"#,
    );
    let mut next = seeded(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let n = next(12);
        let text: String = (0..n).map(|_| PIECES[next(PIECES.len())]).collect();
        let once = redact_with(&mut p, &text);
        redact_with(&mut p, &once);
        let (_, attrs) = span_attrs(&mut p, vec![skv("k", &text), skv(&text, &text)]);
        assert!(attrs.len() <= 2);
    }
}

#[test]
fn describe_says_stateful_all_signals() {
    let info = Redact::describe();
    assert_eq!(info.name, "redact");
    assert!(info.stateful);
    assert_eq!(
        info.signals,
        vec![Signal::Traces, Signal::Metrics, Signal::Logs]
    );
}

/// The read-only pass answers `Unchanged` only for batches the decoding path leaves unchanged;
/// everything the decoding path would touch goes there.
/// Runs `batch` through two plugins of `config`, one by the splicing walk and one by the
/// decoding walk, and checks that both give the same batch, verdict and counts.
fn both_walks_traces(config: &str, batch: &ExportTraceServiceRequest, what: &str) -> Verdict {
    let (mut spliced, mut decoded) = (plugin(config), plugin(config));
    let (mut a, mut b) = (batch.clone(), batch.clone());
    let verdict = host_traces(&mut spliced, &mut a);
    assert_eq!(
        verdict,
        decoded.traces(&mut b).expect("ok"),
        "{what}: verdicts"
    );
    assert_eq!(a, b, "{what}: batches");
    assert_eq!(spliced.series(), decoded.series(), "{what}: counts");
    verdict
}

fn both_walks_logs(config: &str, batch: &ExportLogsServiceRequest, what: &str) -> Verdict {
    let (mut spliced, mut decoded) = (plugin(config), plugin(config));
    let (mut a, mut b) = (batch.clone(), batch.clone());
    let verdict = host_logs(&mut spliced, &mut a);
    assert_eq!(
        verdict,
        decoded.logs(&mut b).expect("ok"),
        "{what}: verdicts"
    );
    assert_eq!(a, b, "{what}: batches");
    assert_eq!(spliced.series(), decoded.series(), "{what}: counts");
    verdict
}

#[test]
fn the_splicing_walk_changes_what_the_decoding_walk_changes() {
    let configs = [
        "{}".to_string(),
        format!(
            r#"{{{KEYS}, "hash_key": "k1", "block_keys": ["enduser.ssn"], "allow_keys": ["client.address"]}}"#
        ),
        format!(r#"{{{KEYS}, "hash_key": "k2", "detectors": {{"email": "hash", "secret_keys": "hash", "ipv4": "drop_attribute"}}}}"#),
        r#"{"detectors": {"email": "drop_record", "secret_keys": "drop_attribute", "credit_card": "drop_attribute"}}"#.to_string(),
    ];
    let traces_with = |resource: Vec<KeyValue>, span: Span| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span.clone(), span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let base = || Span {
        trace_id: vec![7; 16],
        span_id: vec![8; 8],
        name: "GET /orders/{id}".into(),
        attributes: vec![skv("http.route", "/orders/{id}"), kv("n", int(3))],
        ..Default::default()
    };
    let clean = traces_with(vec![skv("service.name", "shop")], base());
    let mut cases: Vec<(&str, ExportTraceServiceRequest)> = Vec::new();
    let mut sp = base();
    sp.attributes.push(skv("user", "alice@example.com"));
    cases.push(("email in an attribute", traces_with(vec![], sp)));
    let mut sp = base();
    sp.attributes.push(kv(
        "nested",
        kvlist(vec![kv("deep", arr(vec![s("bob@example.org"), s("ok")]))]),
    ));
    cases.push(("email in a nested list", traces_with(vec![], sp)));
    let mut sp = base();
    sp.attributes.push(kv(
        "both",
        arr(vec![s("10.1.2.3"), s("card 4111 1111 1111 1111")]),
    ));
    cases.push(("two hits in one array", traces_with(vec![], sp)));
    let mut sp = base();
    sp.attributes.push(skv("enduser.ssn", "078-05-1120"));
    cases.push(("blocked key", traces_with(vec![], sp)));
    let mut sp = base();
    sp.attributes.push(skv("db.password", "hunter2"));
    sp.attributes.push(kv("api_key", int(12345)));
    sp.attributes.push(kv("token", arr(vec![s("a"), s("b")])));
    sp.attributes.push(skv("secret", ""));
    cases.push(("secret-named keys", traces_with(vec![], sp)));
    let mut sp = base();
    sp.events.push(span::Event {
        name: "mail to carol@example.net".into(),
        attributes: vec![skv("exception.message", "no route to 10.9.8.7")],
        ..Default::default()
    });
    cases.push(("an event", traces_with(vec![], sp)));
    let mut sp = base();
    sp.links.push(span::Link {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        attributes: vec![skv("peer", "dave@example.com")],
        ..Default::default()
    });
    cases.push(("email in a link", traces_with(vec![], sp)));
    cases.push((
        "email in the resource",
        traces_with(
            vec![skv("owner", "erin@example.com"), skv("ip", "10.0.0.1")],
            base(),
        ),
    ));
    let mut sp = base();
    sp.name = "GET /users/frank@example.com".into();
    cases.push(("email in the span name", traces_with(vec![], sp)));
    let mut sp = base();
    sp.status = Some(Status {
        message: "charge failed for card 4111-1111-1111-1111".into(),
        code: 2,
    });
    cases.push(("a card in the status message", traces_with(vec![], sp)));
    let mut sp = base();
    sp.attributes
        .push(skv("long", &format!("{} ip 10.0.0.1", "x".repeat(300))));
    cases.push((
        "a value longer than a one-byte length",
        traces_with(vec![], sp),
    ));

    for config in &configs {
        assert_eq!(
            both_walks_traces(config, &clean, "clean"),
            Verdict::Unchanged
        );
        for (what, batch) in &cases {
            let verdict = both_walks_traces(config, batch, what);
            // Only the config that blocks the key redacts that case.
            if *what != "blocked key" || config.contains("block_keys") {
                assert_ne!(
                    verdict,
                    Verdict::Unchanged,
                    "{what} with {config}: redacted"
                );
            }
        }
        let logs = |body: AnyValue, attributes: Vec<KeyValue>| ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            body: Some(body),
                            attributes,
                            ..Default::default()
                        },
                        LogRecord {
                            body: Some(s("order 42 shipped")),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(
            both_walks_logs(config, &logs(s("order 42 shipped"), vec![]), "clean log"),
            Verdict::Unchanged
        );
        for (what, batch) in [
            (
                "a string body",
                logs(s("reset link sent to gina@example.com"), vec![]),
            ),
            (
                "a structured body",
                logs(
                    kvlist(vec![
                        skv("msg", "login"),
                        skv("password", "hunter2"),
                        kv("ips", arr(vec![s("10.0.0.2")])),
                    ]),
                    vec![],
                ),
            ),
            (
                "an attribute",
                logs(s("ok"), vec![skv("user.email", "hank@example.com")]),
            ),
        ] {
            assert_ne!(
                both_walks_logs(config, &batch, what),
                Verdict::Unchanged,
                "{what}"
            );
        }
    }
}

/// Batches of many spans with values drawn from a pool of clean and dirty strings, placed
/// everywhere the walks look: both walks agree on every one.
#[test]
fn the_walks_agree_on_mixed_batches() {
    let pool = [
        "GET /orders/{id}",
        "bob@example.com",
        "10.0.0.1",
        "card 4111 1111 1111 1111 and ip 192.168.1.1",
        "Bearer abc.def.ghi",
        "AKIAIOSFODNN7EXAMPLE",
        "",
        "plain text",
        "https://api.example.com/cb?token=s3cr3t&x=1",
        "+14155552671",
    ];
    let keys = [
        "http.route",
        "user",
        "password",
        "client.address",
        "enduser.ssn",
        "note",
    ];
    let mut next = seeded(0x2545_f491_4f6c_dd1d);
    let config = format!(
        r#"{{{KEYS}, "hash_key": "k1", "block_keys": ["enduser.ssn"], "detectors": {{"phone": "drop_record", "ipv4": "hash", "credit_card": "drop_attribute"}}}}"#
    );
    for round in 0..200 {
        let mut attrs = |n: usize| -> Vec<KeyValue> {
            (0..n)
                .map(|_| {
                    let v = match next(4) {
                        0 => arr(vec![s(pool[next(pool.len())]), s(pool[next(pool.len())])]),
                        1 => kvlist(vec![skv(keys[next(keys.len())], pool[next(pool.len())])]),
                        _ => s(pool[next(pool.len())]),
                    };
                    kv(keys[next(keys.len())], v)
                })
                .collect()
        };
        let spans: Vec<Span> = (0..1 + round % 7)
            .map(|i| Span {
                trace_id: vec![i as u8; 16],
                span_id: vec![i as u8; 8],
                name: pool[(i + round) % pool.len()].into(),
                attributes: attrs(round % 5),
                events: vec![span::Event {
                    name: "e".into(),
                    attributes: attrs(1),
                    ..Default::default()
                }],
                status: Some(Status {
                    message: pool[(i * 3 + round) % pool.len()].into(),
                    code: 2,
                }),
                ..Default::default()
            })
            .collect();
        let batch = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: attrs(round % 3),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        both_walks_traces(&config, &batch, &format!("round {round}"));
    }
}

#[test]
fn remembered_clean_values_do_not_hide_dirty_ones() {
    let mut p = plugin("{}");
    // Costly to find clean (13 digits, capitals, a `b`): remembered after the first batch.
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)";
    for _ in 0..3 {
        assert_eq!(redact_with(&mut p, ua), ua);
    }
    // The same text with something to redact, and a string differing in one byte.
    assert_eq!(
        redact_with(&mut p, &format!("{ua} bob@example.com")),
        format!("{ua} [REDACTED]")
    );
    assert_eq!(
        redact_with(&mut p, &format!("{ua} card 4111111111111111")),
        format!("{ua} card [REDACTED]")
    );
    // And the clean value is still clean, in a log body and in a span attribute.
    assert_eq!(redact_with(&mut p, ua), ua);
    let (v, attrs) = span_attrs(&mut p, vec![skv("user_agent.original", ua)]);
    assert_eq!(v, Verdict::Unchanged);
    assert_eq!(attr(&attrs, "user_agent.original"), Some(&s(ua)));
}

#[test]
fn prefilter_tells_costly_clean_strings() {
    use detect::{Prefilter, prefilter};
    let all = u16::MAX;
    assert_eq!(prefilter("orders.internal.example", all), Prefilter::Clean);
    assert_eq!(
        prefilter(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
            all
        ),
        Prefilter::CleanAfterMore
    );
    assert_eq!(prefilter("mail bob@example.com", all), Prefilter::Candidate);
    assert_eq!(prefilter("mail bob@example.com", 0), Prefilter::Clean);
}

#[test]
fn remembered_clean_attributes_do_not_hide_dirty_ones() {
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)";
    let read = |p: &mut Redact, attrs: Vec<KeyValue>| {
        let mut batch = testing::traces(&["op"]);
        batch.resource_spans[0].scope_spans[0].spans[0].attributes = attrs;
        host_traces(p, &mut batch)
    };
    let mut p = plugin("{}");
    // Seen twice, then remembered by its bytes.
    for _ in 0..4 {
        assert_eq!(
            read(
                &mut p,
                vec![skv("user_agent.original", ua), kv("n", int(7))]
            ),
            Verdict::Unchanged
        );
    }
    // The same value under a secret key, the same key with an email, a blocked key: each is
    // redacted.
    assert_eq!(read(&mut p, vec![skv("password", ua)]), Verdict::Modified);
    assert_eq!(
        read(
            &mut p,
            vec![skv("user_agent.original", &format!("{ua} bob@example.com"))]
        ),
        Verdict::Modified
    );
    let mut blocking = plugin(r#"{"block_keys": ["user_agent.original"]}"#);
    assert_eq!(
        read(&mut blocking, vec![skv("user_agent.original", ua)]),
        Verdict::Modified
    );
    // And the remembered attribute is still clean.
    assert_eq!(
        read(&mut p, vec![skv("user_agent.original", ua)]),
        Verdict::Unchanged
    );
}

/// A value that is an address and nothing else is found without the scan; the scan finds the
/// same in a sentence.
#[test]
fn whole_addresses_are_found_as_the_scan_finds_them() {
    for config in [
        "{}",
        r#"{"detectors": {"ipv6": "off"}}"#,
        r#"{"detectors": {"ipv4": "hash"}, "hash_keys": {"k": "0123456789abcdef0123456789abcdef"}, "hash_key": "k"}"#,
    ] {
        let p = plugin(config);
        for s in [
            "10.29.109.10",
            "255.255.255.255",
            "0.0.0.0",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "fe80::1",
            "::",
            "::1",
            "::ffff:10.1.2.3",
            "2001:db8::8a2e:370:7334",
            "2001:db8:::1",
            "dead:beef",
            "12:34:56",
            "10.0.0.1:8080",
        ] {
            let mut alone = Vec::new();
            p.engine.find(s, &mut alone);
            let mut in_text = Vec::new();
            p.engine.find(&format!("at {s} now"), &mut in_text);
            let shifted: Vec<(usize, std::ops::Range<usize>)> = in_text
                .iter()
                .map(|h| (h.rule, h.range.start - 3..h.range.end - 3))
                .collect();
            let alone: Vec<(usize, std::ops::Range<usize>)> =
                alone.iter().map(|h| (h.rule, h.range.clone())).collect();
            assert_eq!(alone, shifted, "{s:?} with {config}");
        }
    }
}

/// The shortcuts (a whole address without the scan, one or two detectors' own regexes instead of
/// the set) find what the whole set finds, on seeded mixes of secrets and look-alikes.
#[test]
fn shortcuts_find_what_the_whole_set_finds() {
    let pieces = [
        "bob@example.com",
        "a@b@c.com",
        "x.y+z@sub.example.co.uk",
        "@example.com",
        "bob@",
        "bob@example.com-foo",
        "bob@example.comx1",
        "10.1.2.3",
        "fe80::1",
        "2001:db8::7334",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "+14155552671",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "Bearer abc.def",
        "AKIAIOSFODNN7EXAMPLE",
        "GB82WEST12345698765432",
        "https://x.example/cb?token=abc&y=1",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "123-45-6789",
        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----",
        "jane%40example.com",
        "2024-01-15",
        "v1.2.3",
        "checkout-7d9f8b6c5-x2x9k",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "order 42",
        "12:30:45",
    ];
    let seps = [" ", "", ",", "=", "/", ":", "@", "."];
    let mut next = seeded(0x9e37_79b9_7f4a_7c15);
    for config in [
        "{}",
        r#"{"detectors": {"ipv4": "off", "email": "hash"}, "hash_keys": {"k": "0123456789abcdef0123456789abcdef"}, "hash_key": "k"}"#,
    ] {
        let p = plugin(config);
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..1 + next(3) {
                s.push_str(seps[next(seps.len())]);
                s.push_str(pieces[next(pieces.len())]);
            }
            let (mut fast, mut whole) = (Vec::new(), Vec::new());
            p.engine.find_with(&s, &mut fast, true);
            p.engine.find_with(&s, &mut whole, false);
            let key = |h: &Vec<engine::Hit>| -> Vec<(usize, std::ops::Range<usize>)> {
                h.iter().map(|h| (h.rule, h.range.clone())).collect()
            };
            assert_eq!(key(&fast), key(&whole), "{s:?} with {config}");
        }
    }
}
