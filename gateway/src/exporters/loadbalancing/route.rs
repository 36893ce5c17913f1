//! Cutting a batch per backend: rendezvous (highest random weight) hashing of each record's key
//! over the backends, so every replica of a routing tier sends a trace to the same backend, and
//! a backend joining or leaving moves only the keys that go to or came from it (about 1/N).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::config::RoutingKey;
use crate::model::Payload;

/// 64-bit FNV-1a: stable across processes and builds (every replica must agree).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The splitmix64 finaliser: spreads a combined hash over all 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The backend (index into `seeds`, one seed per backend: the hash of its endpoint) with the
/// highest weight for `key`.
pub fn pick(seeds: &[u64], key: &[u8]) -> usize {
    let k = fnv1a(key);
    let mut best = (0, 0u64);
    for (i, s) in seeds.iter().enumerate() {
        let w = mix(s ^ k);
        if i == 0 || w > best.1 {
            best = (i, w);
        }
    }
    best.0
}

fn service(resource: Option<&Resource>) -> &[u8] {
    resource
        .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
        .and_then(|a| a.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.as_bytes()),
            _ => None,
        })
        .unwrap_or_default()
}

fn has_id(id: &[u8]) -> bool {
    id.iter().any(|b| *b != 0)
}

/// The batch cut per backend: `(backend, part)` for each backend that gets records, or `None`
/// when every record goes to the same backend (`Some(vec![(b, ..)])` is never returned: the
/// caller forwards the batch as it is).
pub fn split(
    payload: &Payload,
    seeds: &[u64],
    key: RoutingKey,
) -> Result<Vec<(usize, Payload)>, usize> {
    match payload {
        Payload::Traces(r) => split_traces(r, seeds, key),
        Payload::Logs(r) => split_logs(r, seeds, key),
        Payload::Metrics(r) => split_metrics(r, seeds),
    }
}

/// Cuts a request whose records each have a backend: `parts[b]` gets, under a copy of its
/// resource and scope, the records for `b`. `Err(b)` when all went to `b`.
macro_rules! cut {
    ($req:expr, $n:expr, $Req:ident, $res:ident, $scopes:ident, $records:ident, $backend:expr) => {{
        let mut parts: Vec<Option<$Req>> = (0..$n).map(|_| None).collect();
        let mut only: Option<usize> = None;
        let mut mixed = false;
        for rl in &$req.$res {
            for sl in &rl.$scopes {
                for rec in &sl.$records {
                    let b = $backend(rl, rec);
                    match only {
                        None => only = Some(b),
                        Some(o) if o != b => mixed = true,
                        _ => {}
                    }
                }
            }
        }
        match (only, mixed) {
            (None, _) => return Err(0),
            (Some(b), false) => return Err(b),
            _ => {}
        }
        for rl in &$req.$res {
            for sl in &rl.$scopes {
                for rec in &sl.$records {
                    let b = $backend(rl, rec);
                    let part = parts[b].get_or_insert_with(Default::default);
                    let fresh_resource = part.$res.last().map(|r| (&r.resource, &r.schema_url))
                        != Some((&rl.resource, &rl.schema_url))
                        || part.$res.last().map_or(0, |r| r.$scopes.len()) == 0;
                    if fresh_resource
                        || part
                            .$res
                            .last()
                            .and_then(|r| r.$scopes.last())
                            .map(|s| (&s.scope, &s.schema_url))
                            != Some((&sl.scope, &sl.schema_url))
                    {
                        if fresh_resource {
                            let mut r = rl.clone();
                            r.$scopes.clear();
                            part.$res.push(r);
                        }
                        let mut s = sl.clone();
                        s.$records.clear();
                        if let Some(r) = part.$res.last_mut() {
                            r.$scopes.push(s);
                        }
                    }
                    if let Some(s) = part.$res.last_mut().and_then(|r| r.$scopes.last_mut()) {
                        s.$records.push(rec.clone());
                    }
                }
            }
        }
        Ok::<Vec<(usize, $Req)>, usize>(
            parts
                .into_iter()
                .enumerate()
                .filter_map(|(b, p)| p.map(|p| (b, p)))
                .collect(),
        )
    }};
}

fn split_traces(
    r: &ExportTraceServiceRequest,
    seeds: &[u64],
    key: RoutingKey,
) -> Result<Vec<(usize, Payload)>, usize> {
    let backend = |rs: &opentelemetry_proto::tonic::trace::v1::ResourceSpans,
                   span: &opentelemetry_proto::tonic::trace::v1::Span| {
        match key {
            RoutingKey::TraceId => pick(seeds, &span.trace_id),
            RoutingKey::Service => pick(seeds, service(rs.resource.as_ref())),
        }
    };
    let parts = cut!(
        r,
        seeds.len(),
        ExportTraceServiceRequest,
        resource_spans,
        scope_spans,
        spans,
        backend
    )?;
    Ok(parts
        .into_iter()
        .map(|(b, p)| (b, Payload::Traces(p)))
        .collect())
}

fn split_logs(
    r: &ExportLogsServiceRequest,
    seeds: &[u64],
    key: RoutingKey,
) -> Result<Vec<(usize, Payload)>, usize> {
    let backend = |rl: &opentelemetry_proto::tonic::logs::v1::ResourceLogs,
                   log: &opentelemetry_proto::tonic::logs::v1::LogRecord| {
        if key == RoutingKey::TraceId && has_id(&log.trace_id) {
            pick(seeds, &log.trace_id)
        } else {
            pick(seeds, service(rl.resource.as_ref()))
        }
    };
    let parts = cut!(
        r,
        seeds.len(),
        ExportLogsServiceRequest,
        resource_logs,
        scope_logs,
        log_records,
        backend
    )?;
    Ok(parts
        .into_iter()
        .map(|(b, p)| (b, Payload::Logs(p)))
        .collect())
}

fn split_metrics(
    r: &ExportMetricsServiceRequest,
    seeds: &[u64],
) -> Result<Vec<(usize, Payload)>, usize> {
    let mut parts: Vec<Option<ExportMetricsServiceRequest>> =
        (0..seeds.len()).map(|_| None).collect();
    let backends: Vec<usize> = r
        .resource_metrics
        .iter()
        .map(|rm| pick(seeds, service(rm.resource.as_ref())))
        .collect();
    match backends.first() {
        None => return Err(0),
        Some(b) if backends.iter().all(|x| x == b) => return Err(*b),
        _ => {}
    }
    for (rm, b) in r.resource_metrics.iter().zip(backends) {
        parts[b]
            .get_or_insert_with(Default::default)
            .resource_metrics
            .push(rm.clone());
    }
    Ok(parts
        .into_iter()
        .enumerate()
        .filter_map(|(b, p)| p.map(|p| (b, Payload::Metrics(p))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn seeds(n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| fnv1a(format!("http://10.0.0.{i}:4317").as_bytes()))
            .collect()
    }

    fn trace_id(i: u32) -> Vec<u8> {
        let mut t = vec![0x5a; 16];
        t[..4].copy_from_slice(&i.to_be_bytes());
        t[12..].copy_from_slice(&(i.wrapping_mul(2_654_435_761)).to_le_bytes());
        t
    }

    #[test]
    fn keys_spread_evenly_and_a_new_backend_moves_about_a_share() {
        let three = seeds(3);
        let four = seeds(4);
        let mut counts = [0usize; 3];
        let mut moved = 0;
        let n = 30_000;
        for i in 0..n {
            let t = trace_id(i);
            let a = pick(&three, &t);
            counts[a] += 1;
            let b = pick(&four, &t);
            if b != a {
                moved += 1;
                assert_eq!(b, 3, "a key only moves to the new backend");
            }
        }
        for c in counts {
            assert!(
                (c as f64 - n as f64 / 3.0).abs() < n as f64 * 0.03,
                "{counts:?}"
            );
        }
        let share = moved as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.03, "moved {share}");
        // The same key, the same backend, whatever the order of the list.
        let mut shuffled = three.clone();
        shuffled.reverse();
        for i in 0..100 {
            let t = trace_id(i);
            assert_eq!(three[pick(&three, &t)], shuffled[pick(&shuffled, &t)]);
        }
    }

    #[test]
    fn a_batch_is_cut_by_trace_with_resources_and_scopes_kept() {
        let spans: Vec<Span> = (0..200)
            .map(|i| Span {
                trace_id: trace_id(i / 2),
                span_id: vec![1 + (i % 200) as u8; 8],
                name: format!("s{i}"),
                ..Default::default()
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                        key: "service.name".into(),
                        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                            value: Some(any_value::Value::StringValue("api".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let s = seeds(3);
        let parts = split(&Payload::Traces(req.clone()), &s, RoutingKey::TraceId).expect("mixed");
        assert_eq!(parts.len(), 3);
        let mut total = 0;
        for (b, p) in &parts {
            let Payload::Traces(t) = p else {
                panic!("traces")
            };
            assert_eq!(t.resource_spans.len(), 1);
            assert_eq!(t.resource_spans[0].resource, req.resource_spans[0].resource);
            for span in &t.resource_spans[0].scope_spans[0].spans {
                assert_eq!(pick(&s, &span.trace_id), *b);
                total += 1;
            }
        }
        assert_eq!(total, 200);
        // By service: one backend gets it all, and the batch is forwarded as it is.
        assert!(split(&Payload::Traces(req), &s, RoutingKey::Service).is_err());
    }
}
