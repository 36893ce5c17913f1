use sluice_sdk::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sluice_sdk::otlp::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use sluice_sdk::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

use sluice_sdk::prost::Message;

use super::*;

// ---- builders ----------------------------------------------------------------------------

fn sv(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    }
}

fn iv(v: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(k, v)| kv(k, sv(v))).collect()
}

fn traces(resource: Option<Vec<KeyValue>>, spans: Vec<Vec<KeyValue>>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource.map(|attributes| Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: spans
                    .into_iter()
                    .map(|attributes| Span {
                        name: "s".into(),
                        attributes,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn span_attrs(batch: &ExportTraceServiceRequest, i: usize) -> &[KeyValue] {
    &batch.resource_spans[0].scope_spans[0].spans[i].attributes
}

fn resource_attrs(batch: &ExportTraceServiceRequest) -> &[KeyValue] {
    batch.resource_spans[0]
        .resource
        .as_ref()
        .map_or(&[][..], |r| &r.attributes[..])
}

fn enrich(config: &str) -> Enrich {
    match Enrich::new(config) {
        Ok(p) => p,
        Err(e) => panic!("config {config} rejected: {e}"),
    }
}

fn config_error(config: &str) -> String {
    match Enrich::new(config) {
        Err(Error::Config(m)) => m,
        other => panic!("config {config}: expected a config error, got {other:?}"),
    }
}

/// The value of the first attribute named `key`.
fn value_of(attrs: &[KeyValue], key: &str) -> Option<AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.clone().unwrap_or_default())
}

/// Checks that the wire path (what the gateway runs) and the decoded path agree.
fn agree<T: Message + Default + PartialEq + std::fmt::Debug>(
    verdict: &Verdict,
    wire: Option<Rewrite>,
    decoded: &T,
) {
    match (verdict, wire) {
        (Verdict::Unchanged, Some(Rewrite::Unchanged)) => {}
        (Verdict::Modified, Some(Rewrite::Replace(out))) => {
            assert_eq!(&T::decode(out.as_slice()).expect("valid OTLP"), decoded)
        }
        (verdict, wire) => panic!("decoded: {verdict:?}, wire: {wire:?}"),
    }
}

/// Runs `p` on `batch` by the decoded path, and checks the wire path gives the same batch.
fn traces_both(p: &mut Enrich, batch: &mut ExportTraceServiceRequest) -> Verdict {
    let wire = p
        .rewrite(Signal::Traces, &batch.encode_to_vec())
        .expect("rewrites");
    let verdict = p.traces(batch).expect("processes");
    agree(&verdict, wire, batch);
    verdict
}

fn logs_both(p: &mut Enrich, batch: &mut ExportLogsServiceRequest) -> Verdict {
    let wire = p
        .rewrite(Signal::Logs, &batch.encode_to_vec())
        .expect("rewrites");
    let verdict = p.logs(batch).expect("processes");
    agree(&verdict, wire, batch);
    verdict
}

/// Runs `config` on one span with `before` and returns the verdict and the span's attributes.
fn on_span(config: &str, before: Vec<KeyValue>) -> (Verdict, Vec<KeyValue>) {
    let mut p = enrich(config);
    let mut batch = traces(None, vec![before]);
    let verdict = traces_both(&mut p, &mut batch);
    (verdict, span_attrs(&batch, 0).to_vec())
}

// ---- attribute actions -------------------------------------------------------------------

#[test]
fn insert_only_when_absent() {
    let config = r#"{"attributes": [{"action": "insert", "key": "env", "value": "prod"}]}"#;
    let (v, a) = on_span(config, attrs(&[("a", "1")]));
    assert_eq!(
        (v, a),
        (Verdict::Modified, attrs(&[("a", "1"), ("env", "prod")]))
    );
    let (v, a) = on_span(config, attrs(&[("env", "dev")]));
    assert_eq!((v, a), (Verdict::Unchanged, attrs(&[("env", "dev")])));
}

#[test]
fn update_only_when_present() {
    let config = r#"{"attributes": [{"action": "update", "key": "env", "value": "prod"}]}"#;
    let (v, a) = on_span(config, attrs(&[("env", "dev"), ("a", "1")]));
    assert_eq!(
        (v, a),
        (Verdict::Modified, attrs(&[("env", "prod"), ("a", "1")]))
    );
    let (v, a) = on_span(config, attrs(&[("a", "1")]));
    assert_eq!((v, a), (Verdict::Unchanged, attrs(&[("a", "1")])));
    // The same value is no change.
    let (v, _) = on_span(config, attrs(&[("env", "prod")]));
    assert_eq!(v, Verdict::Unchanged);
}

#[test]
fn upsert_always() {
    let config = r#"{"attributes": [{"action": "upsert", "key": "env", "value": "prod"}]}"#;
    let (v, a) = on_span(config, attrs(&[("env", "dev")]));
    assert_eq!((v, a), (Verdict::Modified, attrs(&[("env", "prod")])));
    let (v, a) = on_span(config, vec![]);
    assert_eq!((v, a), (Verdict::Modified, attrs(&[("env", "prod")])));
    let (v, _) = on_span(config, attrs(&[("env", "prod")]));
    assert_eq!(v, Verdict::Unchanged);
    // A value of another type is a change.
    let (v, a) = on_span(config, vec![kv("env", iv(1))]);
    assert_eq!((v, a), (Verdict::Modified, attrs(&[("env", "prod")])));
}

#[test]
fn delete_every_occurrence() {
    let config = r#"{"attributes": [{"action": "delete", "key": "secret"}]}"#;
    let (v, a) = on_span(
        config,
        attrs(&[("secret", "x"), ("a", "1"), ("secret", "y")]),
    );
    assert_eq!((v, a), (Verdict::Modified, attrs(&[("a", "1")])));
    let (v, _) = on_span(config, attrs(&[("a", "1")]));
    assert_eq!(v, Verdict::Unchanged);
}

#[test]
fn copy_overwrites_the_destination() {
    let config = r#"{"attributes": [{"action": "copy", "from": "user.id", "to": "enduser.id"}]}"#;
    let (v, a) = on_span(config, vec![kv("user.id", iv(42))]);
    assert_eq!(
        (v, a),
        (
            Verdict::Modified,
            vec![kv("user.id", iv(42)), kv("enduser.id", iv(42))]
        )
    );
    let (v, a) = on_span(config, vec![kv("user.id", iv(42)), kv("enduser.id", iv(7))]);
    assert_eq!(
        (v, a),
        (
            Verdict::Modified,
            vec![kv("user.id", iv(42)), kv("enduser.id", iv(42))]
        )
    );
    let (v, _) = on_span(config, attrs(&[("other", "x")]));
    assert_eq!(v, Verdict::Unchanged);
}

#[test]
fn rename_moves_the_value() {
    let config = r#"{"attributes": [{"action": "rename", "from": "http.url", "to": "url.full"}]}"#;
    let (v, a) = on_span(config, attrs(&[("http.url", "https://x/"), ("a", "1")]));
    assert_eq!(
        (v, a),
        (
            Verdict::Modified,
            attrs(&[("a", "1"), ("url.full", "https://x/")])
        )
    );
    // An existing destination is overwritten.
    let (v, a) = on_span(config, attrs(&[("url.full", "old"), ("http.url", "new")]));
    assert_eq!((v, a), (Verdict::Modified, attrs(&[("url.full", "new")])));
    let (v, _) = on_span(config, attrs(&[("url.full", "x")]));
    assert_eq!(v, Verdict::Unchanged);
}

#[test]
fn actions_run_in_order() {
    let config = r#"{"attributes": [
        {"action": "upsert", "key": "a", "value": "1"},
        {"action": "rename", "from": "a", "to": "b"},
        {"action": "copy", "from": "b", "to": "c"},
        {"action": "update", "key": "c", "value": "3"},
        {"action": "insert", "key": "b", "value": "ignored"}
    ]}"#;
    let (v, a) = on_span(config, vec![]);
    assert_eq!(
        (v, a),
        (Verdict::Modified, attrs(&[("b", "1"), ("c", "3")]))
    );
}

#[test]
fn value_types_map_to_otlp_any_values() {
    let config = r#"{"attributes": [
        {"action": "insert", "key": "s", "value": "text"},
        {"action": "insert", "key": "i", "value": -7},
        {"action": "insert", "key": "f", "value": 0.25},
        {"action": "insert", "key": "b", "value": true},
        {"action": "insert", "key": "big", "value": 9007199254740993}
    ]}"#;
    let (_, a) = on_span(config, vec![]);
    let values: Vec<_> = a
        .into_iter()
        .map(|kv| kv.value.and_then(|v| v.value))
        .collect();
    assert_eq!(
        values,
        vec![
            Some(any_value::Value::StringValue("text".into())),
            Some(any_value::Value::IntValue(-7)),
            Some(any_value::Value::DoubleValue(0.25)),
            Some(any_value::Value::BoolValue(true)),
            Some(any_value::Value::IntValue(9_007_199_254_740_993)),
        ]
    );
}

#[test]
fn resource_target() {
    let mut p = enrich(
        r#"{"attributes": [
            {"action": "upsert", "target": "resource", "key": "deployment.environment.name", "value": "prod"},
            {"action": "delete", "target": "resource", "key": "host.ip"}
        ]}"#,
    );
    let mut batch = traces(
        Some(attrs(&[("service.name", "api"), ("host.ip", "10.0.0.1")])),
        vec![attrs(&[(
            "host.ip",
            "kept: record attributes are not the target",
        )])],
    );
    assert_eq!(traces_both(&mut p, &mut batch), Verdict::Modified);
    assert_eq!(
        resource_attrs(&batch),
        attrs(&[
            ("service.name", "api"),
            ("deployment.environment.name", "prod")
        ])
    );
    assert_eq!(span_attrs(&batch, 0).len(), 1);

    // A missing resource is created only when something is added to it.
    let mut none = traces(None, vec![vec![]]);
    assert_eq!(traces_both(&mut p, &mut none), Verdict::Modified);
    assert_eq!(
        resource_attrs(&none),
        attrs(&[("deployment.environment.name", "prod")])
    );
    let mut q =
        enrich(r#"{"attributes": [{"action": "delete", "target": "resource", "key": "x"}]}"#);
    let mut none = traces(None, vec![vec![]]);
    assert_eq!(traces_both(&mut q, &mut none), Verdict::Unchanged);
    assert!(none.resource_spans[0].resource.is_none());
}

// ---- derive ------------------------------------------------------------------------------

const ROUTES: &str = r#"{"derive": {"from": "url.path", "to": "http.route", "templates": [
    "/users/{id}", "/orders/{id}/items/{item}", "/orders/{id}", "/users/me"
]}}"#;

#[test]
fn derive_sets_the_first_matching_template() {
    let cases = [
        ("/users/42", Some("/users/{id}")),
        // The first match wins, even over a more specific later template.
        ("/users/me", Some("/users/{id}")),
        (
            "/orders/7/items/abc?fields=price",
            Some("/orders/{id}/items/{item}"),
        ),
        ("/orders/7/", Some("/orders/{id}")),
        ("/orders/7/items", None),
        ("/products/1", None),
        ("/users", None),
    ];
    for (path, route) in cases {
        let (v, a) = on_span(ROUTES, attrs(&[("url.path", path)]));
        let mut expected = attrs(&[("url.path", path)]);
        if let Some(r) = route {
            expected.push(kv("http.route", sv(r)));
        }
        let changed = if route.is_some() {
            Verdict::Modified
        } else {
            Verdict::Unchanged
        };
        assert_eq!((v, a), (changed, expected), "{path}");
    }
}

#[test]
fn derive_never_overwrites_and_needs_a_string() {
    let (v, a) = on_span(
        ROUTES,
        attrs(&[("url.path", "/users/1"), ("http.route", "/u/:id")]),
    );
    assert_eq!(
        (v, a),
        (
            Verdict::Unchanged,
            attrs(&[("url.path", "/users/1"), ("http.route", "/u/:id")])
        )
    );
    let (v, _) = on_span(ROUTES, vec![kv("url.path", iv(1))]);
    assert_eq!(v, Verdict::Unchanged);
    let (v, _) = on_span(ROUTES, vec![]);
    assert_eq!(v, Verdict::Unchanged);
}

#[test]
fn derive_from_full_urls_and_several_derivations() {
    // Several derivations run in order; a later one never replaces what an earlier one set.
    let config = r#"{"derive": [
        {"from": "url.path", "to": "http.route", "templates": ["/users/{id}"]},
        {"from": "url.full", "to": "http.route", "templates": ["/users/{id}", "/{any}"]}
    ]}"#;
    let (v, a) = on_span(
        config,
        attrs(&[("url.full", "https://api.example.com/users/9?x=1")]),
    );
    assert_eq!(v, Verdict::Modified);
    assert_eq!(value_of(&a, "http.route"), Some(sv("/users/{id}")));
    let (_, a) = on_span(
        config,
        attrs(&[("url.path", "/users/1"), ("url.full", "https://h/other")]),
    );
    assert_eq!(value_of(&a, "http.route"), Some(sv("/users/{id}")));
    let (_, a) = on_span(config, attrs(&[("url.full", "https://h/other")]));
    assert_eq!(value_of(&a, "http.route"), Some(sv("/{any}")));
}

#[test]
fn derive_then_delete_the_source() {
    let config = r#"{
        "derive": {"from": "url.path", "to": "http.route", "templates": ["/users/{id}"]},
        "attributes": [{"action": "delete", "key": "url.path"}]
    }"#;
    let (v, a) = on_span(config, attrs(&[("url.path", "/users/42")]));
    assert_eq!(
        (v, a),
        (Verdict::Modified, attrs(&[("http.route", "/users/{id}")]))
    );
}

// ---- lookup ------------------------------------------------------------------------------

const TEAMS: &str = r#"{"lookup": {
    "key": "service.name",
    "table": {
        "checkout": {"team": "payments", "tier": "1", "oncall": true},
        "search": {"team": "discovery", "tier": 2}
    },
    "default": {"team": "unknown"}
}}"#;

fn lookup(config: &str, resource: Option<Vec<KeyValue>>) -> (Verdict, Vec<KeyValue>) {
    let mut p = enrich(config);
    let mut batch = traces(
        resource,
        vec![attrs(&[("service.name", "not the resource")])],
    );
    let v = traces_both(&mut p, &mut batch);
    // Record attributes are never looked up or changed.
    assert_eq!(
        span_attrs(&batch, 0),
        attrs(&[("service.name", "not the resource")])
    );
    (v, resource_attrs(&batch).to_vec())
}

#[test]
fn lookup_adds_the_mapped_attributes() {
    let (v, a) = lookup(TEAMS, Some(attrs(&[("service.name", "checkout")])));
    assert_eq!(v, Verdict::Modified);
    assert_eq!(
        a,
        vec![
            kv("service.name", sv("checkout")),
            kv(
                "oncall",
                AnyValue {
                    value: Some(any_value::Value::BoolValue(true))
                }
            ),
            kv("team", sv("payments")),
            kv("tier", sv("1")),
        ]
    );
    let (_, a) = lookup(TEAMS, Some(attrs(&[("service.name", "search")])));
    assert_eq!(value_of(&a, "tier"), Some(iv(2)));
}

#[test]
fn lookup_default_and_insert_semantics() {
    // Not in the table: the default.
    let (v, a) = lookup(TEAMS, Some(attrs(&[("service.name", "billing")])));
    assert_eq!(v, Verdict::Modified);
    assert_eq!(
        a,
        attrs(&[("service.name", "billing"), ("team", "unknown")])
    );
    // No key at all: the default too (and the resource is created).
    let (v, a) = lookup(TEAMS, None);
    assert_eq!((v, a), (Verdict::Modified, attrs(&[("team", "unknown")])));
    // Existing attributes win.
    let (v, a) = lookup(
        TEAMS,
        Some(attrs(&[("service.name", "search"), ("team", "platform")])),
    );
    assert_eq!(v, Verdict::Modified);
    assert_eq!(value_of(&a, "team"), Some(sv("platform")));
    assert_eq!(value_of(&a, "tier"), Some(iv(2)));
    // Nothing new: unchanged.
    let (v, _) = lookup(
        TEAMS,
        Some(attrs(&[("service.name", "billing"), ("team", "x")])),
    );
    assert_eq!(v, Verdict::Unchanged);
    // Without a default, a miss adds nothing.
    let config = r#"{"lookup": [{"key": "service.name", "table": {"a": {"team": "t"}}}]}"#;
    let (v, _) = lookup(config, Some(attrs(&[("service.name", "b")])));
    assert_eq!(v, Verdict::Unchanged);
}

#[test]
fn lookup_matches_non_string_keys_as_text() {
    let config = r#"{"lookup": {"key": "k8s.cluster.id", "table": {"7": {"region": "eu"}}}}"#;
    let (v, a) = lookup(config, Some(vec![kv("k8s.cluster.id", iv(7))]));
    assert_eq!(v, Verdict::Modified);
    assert_eq!(value_of(&a, "region"), Some(sv("eu")));
}

// ---- the three signals -------------------------------------------------------------------

const ALL: &str = r#"{
    "lookup": {"key": "service.name", "table": {"api": {"team": "core"}}},
    "attributes": [{"action": "insert", "key": "enriched", "value": true}]
}"#;

fn enriched() -> KeyValue {
    kv(
        "enriched",
        AnyValue {
            value: Some(any_value::Value::BoolValue(true)),
        },
    )
}

#[test]
fn traces_logs_and_every_kind_of_data_point() {
    let mut p = enrich(ALL);
    let resource = Some(Resource {
        attributes: attrs(&[("service.name", "api")]),
        ..Default::default()
    });

    let mut logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource.clone(),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(), LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    assert_eq!(logs_both(&mut p, &mut logs), Verdict::Modified);
    let rl = &logs.resource_logs[0];
    assert_eq!(
        rl.resource
            .as_ref()
            .and_then(|r| value_of(&r.attributes, "team")),
        Some(sv("core"))
    );
    for l in &rl.scope_logs[0].log_records {
        assert_eq!(l.attributes, vec![enriched()]);
    }
    // A second pass finds nothing to do.
    assert_eq!(logs_both(&mut p, &mut logs), Verdict::Unchanged);

    let metric = |data| Metric {
        name: "m".into(),
        data: Some(data),
        ..Default::default()
    };
    let mut metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource.clone(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    metric(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint::default(); 2],
                    })),
                    metric(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint::default()],
                        ..Default::default()
                    })),
                    metric(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint::default()],
                        ..Default::default()
                    })),
                    metric(metric::Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![ExponentialHistogramDataPoint::default()],
                        ..Default::default()
                    })),
                    metric(metric::Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint::default()],
                    })),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    assert_eq!(p.metrics(&mut metrics), Ok(Verdict::Modified));
    let rm = &metrics.resource_metrics[0];
    assert_eq!(
        rm.resource
            .as_ref()
            .and_then(|r| value_of(&r.attributes, "team")),
        Some(sv("core"))
    );
    let mut points = Vec::new();
    for m in &rm.scope_metrics[0].metrics {
        match &m.data {
            Some(metric::Data::Gauge(g)) => {
                points.extend(g.data_points.iter().map(|p| &p.attributes))
            }
            Some(metric::Data::Sum(s)) => {
                points.extend(s.data_points.iter().map(|p| &p.attributes))
            }
            Some(metric::Data::Histogram(h)) => {
                points.extend(h.data_points.iter().map(|p| &p.attributes))
            }
            Some(metric::Data::ExponentialHistogram(h)) => {
                points.extend(h.data_points.iter().map(|p| &p.attributes))
            }
            Some(metric::Data::Summary(s)) => {
                points.extend(s.data_points.iter().map(|p| &p.attributes))
            }
            None => {}
        }
    }
    assert_eq!(points.len(), 6);
    for a in points {
        assert_eq!(a, &vec![enriched()]);
    }
    assert_eq!(p.metrics(&mut metrics), Ok(Verdict::Unchanged));

    let mut spans = traces(
        Some(attrs(&[("service.name", "api")])),
        vec![vec![], vec![]],
    );
    assert_eq!(traces_both(&mut p, &mut spans), Verdict::Modified);
    assert_eq!(value_of(resource_attrs(&spans), "team"), Some(sv("core")));
    assert_eq!(span_attrs(&spans, 1), &[enriched()]);
    assert_eq!(traces_both(&mut p, &mut spans), Verdict::Unchanged);
}

#[test]
fn empty_config_changes_nothing() {
    let mut p = enrich("");
    let mut batch = traces(Some(attrs(&[("a", "b")])), vec![vec![]]);
    assert_eq!(traces_both(&mut p, &mut batch), Verdict::Unchanged);
    let info = Enrich::describe();
    assert_eq!(info.name, "enrich");
    assert!(!info.stateful);
    assert_eq!(info.signals.len(), 3);
}

// ---- config errors -----------------------------------------------------------------------

#[test]
fn config_errors() {
    let cases = [
        (
            r#"{"attributes": [{"action": "set", "key": "a", "value": 1}]}"#,
            "unknown variant `set`",
        ),
        (
            r#"{"attributes": [{"key": "a", "value": 1}]}"#,
            "missing field `action`",
        ),
        (
            r#"{"attributes": [{"action": "insert", "value": 1}]}"#,
            "attributes[0]: `insert` needs `key`",
        ),
        (
            r#"{"attributes": [{"action": "upsert", "key": "a"}]}"#,
            "`upsert` needs `value`",
        ),
        (
            r#"{"attributes": [{"action": "update", "key": "", "value": 1}]}"#,
            "must not be empty",
        ),
        (
            r#"{"attributes": [{"action": "insert", "key": "a", "value": null}]}"#,
            "invalid value null",
        ),
        (
            r#"{"attributes": [{"action": "insert", "key": "a", "value": [1]}]}"#,
            "invalid value",
        ),
        (
            r#"{"attributes": [{"action": "insert", "key": "a", "value": {"x": 1}}]}"#,
            "invalid value",
        ),
        (
            r#"{"attributes": [{"action": "insert", "key": "a", "value": 18446744073709551615}]}"#,
            "64-bit",
        ),
        (
            r#"{"attributes": [{"action": "delete", "key": "a", "value": 1}]}"#,
            "`delete` takes no `value`",
        ),
        (
            r#"{"attributes": [{"action": "delete", "from": "a"}]}"#,
            "takes `key`, not `from`/`to`",
        ),
        (
            r#"{"attributes": [{"action": "copy", "from": "a"}]}"#,
            "`copy` needs `to`",
        ),
        (
            r#"{"attributes": [{"action": "copy", "key": "a", "from": "a", "to": "b"}]}"#,
            "not `key`/`value`",
        ),
        (
            r#"{"attributes": [{"action": "rename", "from": "a", "to": "a"}]}"#,
            "both `a`",
        ),
        (
            r#"{"attributes": [{"action": "insert", "key": "a", "value": 1, "target": "scope"}]}"#,
            "unknown variant `scope`",
        ),
        (
            r#"{"attributes": [{"action": "insert", "key": "a", "value": 1, "scope": "resource"}]}"#,
            "unknown field `scope`",
        ),
        (
            r#"{"derive": {"from": "a", "to": "b", "templates": []}}"#,
            "derive[0]: `templates` is empty",
        ),
        (
            r#"{"derive": {"from": "a", "to": "b"}}"#,
            "missing field `templates`",
        ),
        (
            r#"{"derive": [{"from": "a", "to": "b", "templates": ["/x"]}, {"from": "a", "to": "a", "templates": ["/x"]}]}"#,
            "derive[1]: `from` and `to` are both",
        ),
        (
            r#"{"derive": {"from": "a", "to": "b", "templates": ["/users/id-{id}"]}}"#,
            "templates[0]",
        ),
        (
            r#"{"derive": {"from": "a", "to": "b", "templates": ["/x"], "regex": "y"}}"#,
            "unknown field `regex`",
        ),
        (
            r#"{"lookup": {"key": "service.name"}}"#,
            "needs a `table`, a `default`, or both",
        ),
        (
            r#"{"lookup": {"table": {"a": {"b": "c"}}}}"#,
            "missing field `key`",
        ),
        (
            r#"{"lookup": {"key": "k", "table": {"a": {"b": null}}}}"#,
            "invalid value null",
        ),
        (
            r#"{"lookup": {"key": "k", "table": {"a": "b"}}}"#,
            "invalid type",
        ),
        (r#"{"lookups": []}"#, "unknown field `lookups`"),
        ("[]", "expected a mapping"),
        ("not json", "expected"),
    ];
    for (config, expected) in cases {
        let message = config_error(config);
        assert!(
            message.contains(expected),
            "config {config}: {message:?} does not contain {expected:?}"
        );
    }
}

// ---- the wire-level path ------------------------------------------------------------------

#[test]
fn resource_only_steps_rewrite_at_the_wire_level_like_the_decoded_path() {
    use sluice_sdk::prost::Message;
    let config = r#"{"attributes": [
        {"action": "upsert", "target": "resource", "key": "deployment.region", "value": "eu-1"}]}"#;
    let mut batch = traces(
        Some(attrs(&[("service.name", "checkout")])),
        vec![attrs(&[("url.path", "/a/1")]), attrs(&[("k", "v")])],
    );
    batch.resource_spans.push(ResourceSpans {
        resource: None,
        ..batch.resource_spans[0].clone()
    });
    let bytes = batch.encode_to_vec();
    let mut p = enrich(config);
    let Some(Rewrite::Replace(out)) = p.rewrite(Signal::Traces, &bytes).expect("rewrites") else {
        panic!("a resource step changes every resource");
    };
    let mut decoded = batch.clone();
    assert_eq!(p.traces(&mut decoded).expect("ok"), Verdict::Modified);
    assert_eq!(
        ExportTraceServiceRequest::decode(out.as_slice()).expect("valid OTLP"),
        decoded
    );
    // Already there: nothing to do.
    assert_eq!(
        p.rewrite(Signal::Traces, &decoded.encode_to_vec())
            .expect("ok"),
        Some(Rewrite::Unchanged)
    );
    // Lookups are resource steps too.
    assert!(matches!(
        enrich(TEAMS).rewrite(Signal::Traces, &bytes).expect("ok"),
        Some(Rewrite::Replace(_))
    ));
    // Record steps on data points take the decoded path.
    let records = r#"{"attributes": [{"action": "upsert", "key": "a", "value": "b"}]}"#;
    assert_eq!(
        enrich(records)
            .rewrite(
                Signal::Metrics,
                &ExportMetricsServiceRequest::default().encode_to_vec()
            )
            .expect("ok"),
        None
    );
}

#[test]
fn record_steps_splice_only_what_they_change_and_agree_with_the_decoded_path() {
    use sluice_sdk::otlp::trace::v1::{Status, span::Event};
    let config = r#"{
        "derive": {"from": "url.path", "to": "http.route", "templates": ["/users/{id}"]},
        "attributes": [
            {"action": "delete", "key": "secret"},
            {"action": "rename", "from": "old", "to": "new"},
            {"action": "upsert", "key": "tier", "value": 1},
            {"action": "upsert", "key": "deployment.region", "target": "resource", "value": "eu"}
        ]}"#;
    let spans: Vec<Vec<KeyValue>> = vec![
        // Every step applies.
        attrs(&[
            ("url.path", "/users/7"),
            ("secret", "x"),
            ("old", "o"),
            ("keep", "k"),
        ]),
        // Only the upsert: one attribute appended, the others untouched.
        attrs(&[("url.path", "/other"), ("keep", "k")]),
        // Nothing to change.
        vec![kv("tier", iv(1)), kv("http.route", sv("/r"))],
        // The upsert changes a value in the middle.
        vec![kv("a", sv("1")), kv("tier", sv("one")), kv("b", sv("2"))],
        vec![],
    ];
    let mut batch = traces(Some(attrs(&[("service.name", "api")])), spans);
    for (i, span) in batch.resource_spans[0].scope_spans[0]
        .spans
        .iter_mut()
        .enumerate()
    {
        // Fields after the attributes, so appended ones land after them.
        span.events = vec![Event {
            name: format!("e{i}"),
            attributes: attrs(&[("secret", "in an event")]),
            ..Default::default()
        }];
        span.status = Some(Status {
            message: "m".into(),
            code: 2,
        });
    }
    let mut p = enrich(config);
    let before = batch.clone();
    assert_eq!(traces_both(&mut p, &mut batch), Verdict::Modified);
    assert_eq!(
        span_attrs(&batch, 0),
        vec![
            kv("url.path", sv("/users/7")),
            kv("keep", sv("k")),
            kv("http.route", sv("/users/{id}")),
            kv("new", sv("o")),
            kv("tier", iv(1)),
        ]
    );
    assert_eq!(span_attrs(&batch, 2), span_attrs(&before, 2));
    // Event attributes are not a record's.
    assert_eq!(
        batch.resource_spans[0].scope_spans[0].spans[0].events,
        before.resource_spans[0].scope_spans[0].spans[0].events
    );
    // A second run has nothing left to do, on either path.
    assert_eq!(traces_both(&mut p, &mut batch), Verdict::Unchanged);

    let mut logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: None,
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        attributes: attrs(&[("secret", "x"), ("old", "o")]),
                        body: Some(sv("body")),
                        ..Default::default()
                    },
                    LogRecord::default(),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    // No resource: the wire path adds one.
    assert_eq!(logs_both(&mut p, &mut logs), Verdict::Modified);
    assert_eq!(
        logs.resource_logs[0]
            .resource
            .as_ref()
            .map(|r| &r.attributes),
        Some(&attrs(&[("deployment.region", "eu")]))
    );
}

#[test]
fn malformed_batches_are_input_errors_on_the_wire_path() {
    let mut p = enrich(r#"{"attributes": [{"action": "insert", "key": "a", "value": "b"}]}"#);
    let bytes = traces(None, vec![attrs(&[("k", "v")])]).encode_to_vec();
    for cut in 1..bytes.len() {
        match p.rewrite(Signal::Traces, &bytes[..cut]) {
            Err(Error::Input(_)) | Ok(Some(Rewrite::Unchanged)) => {}
            // A cut at a field boundary can leave a shorter valid batch.
            Ok(Some(Rewrite::Replace(out))) => {
                ExportTraceServiceRequest::decode(out.as_slice()).expect("valid OTLP");
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}
