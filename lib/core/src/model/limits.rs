//! Attribute limits on the decode path: too many attributes on a record are dropped (and
//! `dropped_attributes_count` raised, as OTLP defines it), too long string and bytes values are
//! truncated. The scan ([`super::scan::scan_within`]) sends only requests beyond the limits
//! here, so the passthrough path pays nothing for them.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

use super::Payload;
use super::scan::AttrLimits;

/// What the limits changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Attributes dropped beyond `max_attributes`.
    pub dropped: u64,
    /// String or bytes values cut to `max_value_len`.
    pub truncated: u64,
}

impl Limited {
    pub fn any(&self) -> bool {
        self.dropped > 0 || self.truncated > 0
    }
}

fn truncate_value(v: &mut AnyValue, lim: &AttrLimits, out: &mut Limited) {
    match &mut v.value {
        Some(Value::StringValue(s)) if s.len() > lim.max_value_len => {
            let mut cut = lim.max_value_len;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            out.truncated += 1;
        }
        Some(Value::BytesValue(b)) if b.len() > lim.max_value_len => {
            b.truncate(lim.max_value_len);
            out.truncated += 1;
        }
        Some(Value::ArrayValue(a)) => {
            for v in &mut a.values {
                truncate_value(v, lim, out);
            }
        }
        Some(Value::KvlistValue(kv)) => {
            for kv in &mut kv.values {
                if let Some(v) = &mut kv.value {
                    truncate_value(v, lim, out);
                }
            }
        }
        _ => {}
    }
}

/// Applies the limits to one attribute list; returns how many were dropped.
fn attributes(attrs: &mut Vec<KeyValue>, lim: &AttrLimits, out: &mut Limited) -> u32 {
    let dropped = attrs.len().saturating_sub(lim.max_attributes);
    if dropped > 0 {
        attrs.truncate(lim.max_attributes);
        out.dropped += dropped as u64;
    }
    for kv in attrs.iter_mut() {
        if let Some(v) = &mut kv.value {
            truncate_value(v, lim, out);
        }
    }
    dropped as u32
}

impl Payload {
    /// Applies attribute limits to every resource, scope, record, event, link and data point.
    pub fn enforce_limits(&mut self, lim: &AttrLimits) -> Limited {
        let mut out = Limited::default();
        match self {
            Payload::Traces(r) => {
                for rs in &mut r.resource_spans {
                    if let Some(res) = &mut rs.resource {
                        res.dropped_attributes_count = res
                            .dropped_attributes_count
                            .saturating_add(attributes(&mut res.attributes, lim, &mut out));
                    }
                    for ss in &mut rs.scope_spans {
                        if let Some(s) = &mut ss.scope {
                            s.dropped_attributes_count = s
                                .dropped_attributes_count
                                .saturating_add(attributes(&mut s.attributes, lim, &mut out));
                        }
                        for span in &mut ss.spans {
                            span.dropped_attributes_count = span
                                .dropped_attributes_count
                                .saturating_add(attributes(&mut span.attributes, lim, &mut out));
                            for e in &mut span.events {
                                e.dropped_attributes_count = e
                                    .dropped_attributes_count
                                    .saturating_add(attributes(&mut e.attributes, lim, &mut out));
                            }
                            for l in &mut span.links {
                                l.dropped_attributes_count = l
                                    .dropped_attributes_count
                                    .saturating_add(attributes(&mut l.attributes, lim, &mut out));
                            }
                        }
                    }
                }
            }
            Payload::Logs(r) => {
                for rl in &mut r.resource_logs {
                    if let Some(res) = &mut rl.resource {
                        res.dropped_attributes_count = res
                            .dropped_attributes_count
                            .saturating_add(attributes(&mut res.attributes, lim, &mut out));
                    }
                    for sl in &mut rl.scope_logs {
                        if let Some(s) = &mut sl.scope {
                            s.dropped_attributes_count = s
                                .dropped_attributes_count
                                .saturating_add(attributes(&mut s.attributes, lim, &mut out));
                        }
                        for log in &mut sl.log_records {
                            log.dropped_attributes_count = log
                                .dropped_attributes_count
                                .saturating_add(attributes(&mut log.attributes, lim, &mut out));
                            if let Some(body) = &mut log.body {
                                truncate_value(body, lim, &mut out);
                            }
                        }
                    }
                }
            }
            Payload::Metrics(r) => {
                for rm in &mut r.resource_metrics {
                    if let Some(res) = &mut rm.resource {
                        res.dropped_attributes_count = res
                            .dropped_attributes_count
                            .saturating_add(attributes(&mut res.attributes, lim, &mut out));
                    }
                    for sm in &mut rm.scope_metrics {
                        for m in &mut sm.metrics {
                            // Data points have no dropped_attributes_count: the drops are
                            // counted by the gateway only.
                            match &mut m.data {
                                Some(Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| {
                                    attributes(&mut p.attributes, lim, &mut out);
                                }),
                                Some(Data::Sum(g)) => g.data_points.iter_mut().for_each(|p| {
                                    attributes(&mut p.attributes, lim, &mut out);
                                }),
                                Some(Data::Histogram(g)) => {
                                    g.data_points.iter_mut().for_each(|p| {
                                        attributes(&mut p.attributes, lim, &mut out);
                                    })
                                }
                                Some(Data::ExponentialHistogram(g)) => {
                                    g.data_points.iter_mut().for_each(|p| {
                                        attributes(&mut p.attributes, lim, &mut out);
                                    })
                                }
                                Some(Data::Summary(g)) => g.data_points.iter_mut().for_each(|p| {
                                    attributes(&mut p.attributes, lim, &mut out);
                                }),
                                None => {}
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Signal;
    use crate::model::scan::{Scan, scan_within};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn kv(k: String, v: &str) -> KeyValue {
        KeyValue {
            key: k,
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn request(attrs: Vec<KeyValue>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        attributes: attrs,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn within_limits_is_scanned_valid_and_beyond_is_cut_and_counted() {
        let lim = AttrLimits {
            max_attributes: 3,
            max_value_len: 8,
        };
        let ok = request((0..3).map(|i| kv(format!("k{i}"), "short")).collect());
        assert_eq!(
            scan_within(Signal::Traces, &ok.encode_to_vec(), lim),
            Scan::Valid(1)
        );
        let many = request((0..5).map(|i| kv(format!("k{i}"), "short")).collect());
        assert_eq!(
            scan_within(Signal::Traces, &many.encode_to_vec(), lim),
            Scan::Decode
        );
        // "héllo wörld" is 13 bytes; 8 bytes would split the ö: cut at 7.
        let long = request(vec![kv("k".into(), "héllo wörld")]);
        assert_eq!(
            scan_within(Signal::Traces, &long.encode_to_vec(), lim),
            Scan::Decode
        );

        // Attributes of an event and a repeated resource are counted too.
        let mut in_event = request(vec![]);
        in_event.resource_spans[0].scope_spans[0].spans[0]
            .events
            .push(opentelemetry_proto::tonic::trace::v1::span::Event {
                attributes: (0..5).map(|i| kv(format!("e{i}"), "v")).collect(),
                ..Default::default()
            });
        assert_eq!(
            scan_within(Signal::Traces, &in_event.encode_to_vec(), lim),
            Scan::Decode
        );
        let mut twice = request(vec![]).encode_to_vec();
        let resource = opentelemetry_proto::tonic::trace::v1::ResourceSpans {
            resource: Some(Default::default()),
            ..Default::default()
        }
        .encode_to_vec();
        // The same ResourceSpans with its `resource` field twice (prost merges them).
        let inner = [&resource[..], &resource[..]].concat();
        twice.extend_from_slice(&[0x0a, inner.len() as u8]);
        twice.extend_from_slice(&inner);
        assert_eq!(scan_within(Signal::Traces, &twice, lim), Scan::Decode);

        let mut p = Payload::Traces(many);
        assert_eq!(
            p.enforce_limits(&lim),
            Limited {
                dropped: 2,
                truncated: 0
            }
        );
        let Payload::Traces(r) = &p else {
            unreachable!()
        };
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.attributes.len(), 3);
        assert_eq!(span.dropped_attributes_count, 2);

        let mut p = Payload::Traces(long);
        assert_eq!(p.enforce_limits(&lim).truncated, 1);
        let Payload::Traces(r) = &p else {
            unreachable!()
        };
        let v = &r.resource_spans[0].scope_spans[0].spans[0].attributes[0].value;
        assert_eq!(
            v.as_ref().and_then(|v| v.value.clone()),
            Some(Value::StringValue("héllo w".into()))
        );
    }
}
