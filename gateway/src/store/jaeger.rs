//! The Jaeger query HTTP API over the in-memory store, on the admin endpoint.
//!
//! The subset Grafana's Jaeger data source and the Jaeger UI call: `GET /api/services`,
//! `/api/services/{service}/operations`, `/api/operations?service=`, `/api/traces?service=…`
//! (with `operation`, `tags`, `minDuration`, `maxDuration`, `start`, `end`, `lookback`, `limit`)
//! and `/api/traces/{traceID}`, answering in Jaeger's JSON (`{"data": …, "total": …,
//! "errors": …}`, spans with `references`, `tags`, `logs`, `processID`, times in microseconds).
//! Also `GET /api/v1/logs` for the stored log records, which Jaeger has no API for.
//!
//! OTLP spans become Jaeger spans the way Jaeger's own OTLP translator does it: the parent
//! becomes a `CHILD_OF` reference and links `FOLLOWS_FROM`, the kind the `span.kind` tag, an
//! ERROR status the `error=true` tag plus `otel.status_code`, events become logs, and the
//! resource (minus `service.name`) becomes the process's tags.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::{Value, json};

use super::{
    LogQuery, MemoryStore, StoredSpan, TraceQuery, any_to_json, attributes_json, hex,
    parse_trace_id, render,
};
use crate::config::duration;

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1500;

type Params = Query<BTreeMap<String, String>>;
type Store = Option<Arc<MemoryStore>>;

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/api/services", get(services))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/operations", get(operations))
        .route("/api/traces", get(find_traces))
        .route("/api/traces/{id}", get(get_trace))
        .route("/api/v1/logs", get(logs))
        .with_state(store)
}

/// A Jaeger-shaped error answer.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiError(code, msg) = self;
        (
            code,
            axum::Json(json!({
                "data": null, "total": 0, "limit": 0, "offset": 0,
                "errors": [{ "code": code.as_u16(), "msg": msg }],
            })),
        )
            .into_response()
    }
}

fn error(code: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError(code, msg.into())
}

type Answer = Result<Response, ApiError>;

fn data(items: Value) -> Answer {
    let total = items.as_array().map_or(0, Vec::len);
    Ok(axum::Json(
        json!({ "data": items, "total": total, "limit": 0, "offset": 0, "errors": null }),
    )
    .into_response())
}

fn need(store: &Store) -> Result<&Arc<MemoryStore>, ApiError> {
    store.as_ref().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "no `memory` exporter is configured: add `memory: {}` under exporters and to a \
             traces or logs pipeline to browse data here",
        )
    })
}

async fn services(State(store): State<Store>) -> Answer {
    let store = need(&store)?;
    data(json!(store.services().into_keys().collect::<Vec<_>>()))
}

async fn service_operations(State(store): State<Store>, Path(service): Path<String>) -> Answer {
    let store = need(&store)?;
    let services = store.services();
    let mut names: Vec<&String> = services
        .get(&service)
        .map(|ops| ops.iter().map(|(name, _)| name).collect())
        .unwrap_or_default();
    names.dedup();
    data(json!(names))
}

async fn operations(State(store): State<Store>, Query(p): Params) -> Answer {
    let store = need(&store)?;
    let Some(service) = p.get("service") else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "parameter 'service' is required",
        ));
    };
    let kind_filter = p.get("spanKind").filter(|k| !k.is_empty());
    let ops: Vec<Value> = store
        .services()
        .get(service)
        .into_iter()
        .flatten()
        .map(|(name, kind)| (name, span_kind(*kind)))
        .filter(|(_, kind)| kind_filter.is_none_or(|f| f == kind))
        .map(|(name, kind)| json!({ "name": name, "spanKind": kind }))
        .collect();
    data(Value::Array(ops))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Reads the query string of `/api/traces` the way Jaeger's query service does.
pub fn parse_trace_query(p: &BTreeMap<String, String>) -> Result<TraceQuery, String> {
    let non_empty = |k: &str| p.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let number = |k: &str| -> Result<Option<u64>, String> {
        non_empty(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("parameter '{k}' must be unix microseconds, got '{v}'"))
            })
            .transpose()
    };
    let dur = |k: &str| -> Result<Option<Duration>, String> {
        non_empty(k)
            .map(|v| duration::parse(v).map_err(|e| format!("parameter '{k}': {e}")))
            .transpose()
    };
    let mut q = TraceQuery {
        service: non_empty("service").map(str::to_string),
        operation: non_empty("operation")
            .filter(|o| *o != "all")
            .map(str::to_string),
        min_duration: dur("minDuration")?,
        max_duration: dur("maxDuration")?,
        start_us: number("start")?,
        end_us: number("end")?,
        limit: number("limit")?.map_or(DEFAULT_LIMIT, |l| (l as usize).clamp(1, MAX_LIMIT)),
        ..TraceQuery::default()
    };
    if q.start_us.is_none()
        && let Some(lookback) = non_empty("lookback").filter(|l| *l != "custom")
    {
        let d = duration::parse(lookback).map_err(|e| format!("parameter 'lookback': {e}"))?;
        q.start_us = Some(now_us().saturating_sub(d.as_micros() as u64));
    }
    if let Some(tags) = non_empty("tags") {
        let parsed: BTreeMap<String, Value> = serde_json::from_str(tags).map_err(|e| {
            format!(
                "parameter 'tags' must be a JSON object like {{\"http.status_code\":\"500\"}}: {e}"
            )
        })?;
        for (k, v) in parsed {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            q.tags.insert(k, v);
        }
    }
    // Jaeger's `tag=key:value` form, repeated or single.
    if let Some(tag) = non_empty("tag") {
        let Some((k, v)) = tag.split_once(':') else {
            return Err(format!("parameter 'tag' must be key:value, got '{tag}'"));
        };
        q.tags.insert(k.to_string(), v.to_string());
    }
    Ok(q)
}

async fn find_traces(State(store): State<Store>, Query(p): Params) -> Answer {
    let store = need(&store)?;
    let q = match parse_trace_query(&p) {
        Ok(q) => q,
        Err(e) => return Err(error(StatusCode::BAD_REQUEST, e)),
    };
    let traces: Vec<Value> = store
        .find_traces(&q)
        .iter()
        .map(|t| trace_json(t))
        .collect();
    data(Value::Array(traces))
}

async fn get_trace(State(store): State<Store>, Path(id): Path<String>) -> Answer {
    let store = need(&store)?;
    let Some(trace_id) = parse_trace_id(&id) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("'{id}' is not a trace id (up to 32 hexadecimal digits)"),
        ));
    };
    match store.trace(&trace_id) {
        Some(spans) => data(json!([trace_json(&spans)])),
        None => Err(error(StatusCode::NOT_FOUND, "trace not found")),
    }
}

/// `SPAN_KIND_*` number to Jaeger's `span.kind` value.
pub fn span_kind(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

fn tag(key: &str, v: &AnyValue) -> Value {
    let (ty, value) = match &v.value {
        Some(any_value::Value::StringValue(s)) => ("string", json!(s)),
        Some(any_value::Value::BoolValue(b)) => ("bool", json!(b)),
        Some(any_value::Value::IntValue(i)) => ("int64", json!(i)),
        Some(any_value::Value::DoubleValue(d)) => ("float64", json!(d)),
        Some(any_value::Value::BytesValue(b)) => ("binary", json!(hex(b))),
        _ => ("string", json!(any_to_json(v).to_string())),
    };
    json!({ "key": key, "type": ty, "value": value })
}

fn tags(kvs: &[KeyValue]) -> Vec<Value> {
    kvs.iter()
        .filter_map(|kv| kv.value.as_ref().map(|v| tag(&kv.key, v)))
        .collect()
}

fn string_tag(key: &str, value: &str) -> Value {
    json!({ "key": key, "type": "string", "value": value })
}

/// One trace in Jaeger's JSON: spans sorted by start time, one process per distinct origin.
pub fn trace_json(spans: &[StoredSpan]) -> Value {
    let mut sorted: Vec<&StoredSpan> = spans.iter().collect();
    sorted.sort_by_key(|s| s.span.start_time_unix_nano);
    let mut processes = serde_json::Map::new();
    // Spans from different batches of the same service and resource share one process.
    let mut process_of: Vec<(&super::Origin, String)> = Vec::new();
    let mut out = Vec::with_capacity(sorted.len());
    for s in &sorted {
        let origin = &*s.origin;
        let pid = match process_of
            .iter()
            .find(|(p, _)| p.service == origin.service && p.resource == origin.resource)
        {
            Some((_, id)) => id.clone(),
            None => {
                let id = format!("p{}", process_of.len() + 1);
                let ptags: Vec<Value> = s
                    .origin
                    .resource
                    .attributes
                    .iter()
                    .filter(|kv| kv.key != "service.name")
                    .filter_map(|kv| kv.value.as_ref().map(|v| tag(&kv.key, v)))
                    .collect();
                processes.insert(
                    id.clone(),
                    json!({ "serviceName": s.origin.service, "tags": ptags }),
                );
                process_of.push((origin, id.clone()));
                id
            }
        };
        out.push(span_json(s, &pid));
    }
    let trace_id = sorted.first().map(|s| hex(&s.span.trace_id));
    json!({ "traceID": trace_id, "spans": out, "processes": processes, "warnings": null })
}

fn span_json(s: &StoredSpan, pid: &str) -> Value {
    let span = &s.span;
    let trace_id = hex(&span.trace_id);
    let mut references = Vec::new();
    if !span.parent_span_id.is_empty() {
        references.push(json!({
            "refType": "CHILD_OF", "traceID": trace_id, "spanID": hex(&span.parent_span_id),
        }));
    }
    for link in &span.links {
        references.push(json!({
            "refType": "FOLLOWS_FROM", "traceID": hex(&link.trace_id), "spanID": hex(&link.span_id),
        }));
    }
    let mut t = tags(&span.attributes);
    t.push(string_tag("span.kind", span_kind(span.kind)));
    if !s.origin.scope_name.is_empty() {
        t.push(string_tag("otel.scope.name", &s.origin.scope_name));
    }
    if !s.origin.scope_version.is_empty() {
        t.push(string_tag("otel.scope.version", &s.origin.scope_version));
    }
    if let Some(status) = &span.status {
        match status.code {
            1 => t.push(string_tag("otel.status_code", "OK")),
            2 => {
                t.push(string_tag("otel.status_code", "ERROR"));
                t.push(json!({ "key": "error", "type": "bool", "value": true }));
            }
            _ => {}
        }
        if !status.message.is_empty() {
            t.push(string_tag("otel.status_description", &status.message));
        }
    }
    let logs: Vec<Value> = span
        .events
        .iter()
        .map(|e| {
            let mut fields = vec![string_tag("event", &e.name)];
            fields.extend(tags(&e.attributes));
            json!({ "timestamp": e.time_unix_nano / 1000, "fields": fields })
        })
        .collect();
    let start = span.start_time_unix_nano / 1000;
    let duration = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano)
        / 1000;
    json!({
        "traceID": trace_id,
        "spanID": hex(&span.span_id),
        "operationName": span.name,
        "references": references,
        "flags": span.flags & 0xff,
        "startTime": start,
        "duration": duration,
        "tags": t,
        "logs": logs,
        "processID": pid,
        "warnings": null,
    })
}

/// Severity names to the lowest `SeverityNumber` of their range.
fn parse_severity(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    Ok(match s.to_ascii_lowercase().as_str() {
        "trace" => 1,
        "debug" => 5,
        "info" => 9,
        "warn" | "warning" => 13,
        "error" => 17,
        "fatal" => 21,
        _ => {
            return Err(format!(
                "parameter 'severity' must be trace, debug, info, warn, error, fatal or a number, got '{s}'"
            ));
        }
    })
}

async fn logs(State(store): State<Store>, Query(p): Params) -> Answer {
    let store = need(&store)?;
    let non_empty = |k: &str| p.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let min_severity = match non_empty("severity").map(parse_severity).transpose() {
        Ok(s) => s.unwrap_or(0),
        Err(e) => return Err(error(StatusCode::BAD_REQUEST, e)),
    };
    let trace_id = match non_empty("trace_id") {
        Some(t) => match parse_trace_id(t) {
            Some(id) => Some(id),
            None => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("'{t}' is not a trace id (up to 32 hexadecimal digits)"),
                ));
            }
        },
        None => None,
    };
    let limit = match non_empty("limit").map(str::parse::<usize>).transpose() {
        Ok(l) => l.unwrap_or(100).clamp(1, 5000),
        Err(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "parameter 'limit' must be a number",
            ));
        }
    };
    let q = LogQuery {
        service: non_empty("service").map(str::to_string),
        min_severity,
        text: non_empty("q").map(str::to_string),
        trace_id,
        limit,
    };
    let records: Vec<Value> = store
        .logs(&q)
        .iter()
        .map(|l| {
            let r = &l.record;
            let time = if r.time_unix_nano != 0 {
                r.time_unix_nano
            } else {
                r.observed_time_unix_nano
            };
            json!({
                "time_unix_nano": time.to_string(),
                "service": l.origin.service,
                "severity_text": r.severity_text,
                "severity_number": r.severity_number,
                "body": r.body.as_ref().map(render).unwrap_or_default(),
                "attributes": attributes_json(&r.attributes),
                "trace_id": hex(&r.trace_id),
                "span_id": hex(&r.span_id),
                "scope": l.origin.scope_name,
            })
        })
        .collect();
    data(Value::Array(records))
}
