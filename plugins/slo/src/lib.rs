//! `slo`: service level objectives computed at the gateway.
//!
//! For every SLO with an `availability` or `latency` SLI, each matching span is counted as a
//! good or a bad event. Every tick the plugin emits:
//!
//! - `sluice.slo.events` (cumulative monotonic sum, attributes `slo`, `service`, `outcome`):
//!   `sluice_slo_events_total` in Prometheus, which aggregates it across gateway replicas with
//!   the rules `sluice slo rules` generates;
//! - `sluice.slo.burn_rate` (gauge, attribute `window`: 5m, 30m, 1h, 2h, 6h, 1d, 3d) and
//!   `sluice.slo.error_budget.remaining` (gauge, ratio) as this replica sees them.
//!
//! The batch itself always passes unchanged. `ratio` SLIs are computed by Prometheus from the
//! metrics themselves; the plugin accepts them in the config (so one config serves both) and
//! counts nothing for them. Counts and the per-minute history survive reloads and crashes
//! (snapshot/restore).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_sdk::host;
use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_sdk::otlp::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use sluice_sdk::otlp::trace::v1::{Span, status::StatusCode};
use sluice_sdk::view::{AttributesView, TracesView, ValueView};
use sluice_sdk::{Error, Info, Plugin, Signal, Verdict};

/// Burn-rate windows, in minutes.
const WINDOWS: &[(&str, u64)] = &[
    ("5m", 5),
    ("30m", 30),
    ("1h", 60),
    ("2h", 120),
    ("6h", 360),
    ("1d", 1440),
    ("3d", 4320),
];
/// Minutes of per-minute history kept (the longest burn-rate window).
const HISTORY_MINUTES: u64 = 4320;
const NANOS_PER_MINUTE: u64 = 60_000_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    slos: Vec<SloConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SloConfig {
    name: String,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for the rules and the UI")]
    description: Option<String>,
    objective: f64,
    #[serde(default = "default_window")]
    window: String,
    sli: SliConfig,
    #[serde(default)]
    #[allow(dead_code, reason = "used by `sluice slo rules`")]
    runbook_url: Option<String>,
}

fn default_window() -> String {
    "30d".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SliConfig {
    availability: Option<SpanFilter>,
    latency: Option<LatencySli>,
    #[allow(dead_code, reason = "computed by Prometheus from the metrics")]
    ratio: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpanFilter {
    /// Exact span name.
    span_name: Option<String>,
    /// `http.route` attribute.
    route: Option<String>,
    /// server, client, internal, producer, consumer.
    span_kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencySli {
    threshold_ms: f64,
    #[serde(flatten)]
    filter: SpanFilter,
}

#[derive(Debug)]
enum Kind {
    Availability,
    Latency { threshold_nanos: u64 },
    Ratio,
}

#[derive(Debug)]
struct Slo {
    name: String,
    service: Option<String>,
    budget: f64,
    window_minutes: u64,
    kind: Kind,
    span_name: Option<String>,
    route: Option<String>,
    span_kind: Option<i32>,
}

/// Counts that survive reloads and traps.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
struct Counts {
    good: u64,
    bad: u64,
    /// minute (unix) -> (good, bad), the last `HISTORY_MINUTES` minutes.
    minutes: BTreeMap<u64, (u64, u64)>,
    /// hour (unix) -> (good, bad), the SLO window.
    hours: BTreeMap<u64, (u64, u64)>,
}

#[derive(Debug)]
pub struct SloPlugin {
    slos: Vec<Slo>,
    counts: BTreeMap<String, Counts>,
}

fn parse_window(w: &str) -> Result<u64, Error> {
    let (n, unit) = w.split_at(w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| Error::Config(format!("invalid window `{w}`")))?;
    match unit {
        "d" => Ok(n * 1440),
        "w" => Ok(n * 7 * 1440),
        _ => Err(Error::Config(format!(
            "invalid window `{w}`: use days (30d) or weeks (4w)"
        ))),
    }
}

fn kind_number(kind: &str) -> Result<i32, Error> {
    Ok(match kind {
        "internal" => 1,
        "server" => 2,
        "client" => 3,
        "producer" => 4,
        "consumer" => 5,
        other => return Err(Error::Config(format!("unknown span_kind `{other}`"))),
    })
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// An error status, or an HTTP 5xx status code attribute (the same rule on the view path in
/// `read_traces`).
fn is_error(span: &Span) -> bool {
    if span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
    {
        return true;
    }
    let code = attr(&span.attributes, "http.response.status_code")
        .or_else(|| attr(&span.attributes, "http.status_code"));
    match code {
        Some(any_value::Value::IntValue(c)) => *c >= 500,
        Some(any_value::Value::StringValue(s)) => s.parse::<i64>().is_ok_and(|c| c >= 500),
        _ => false,
    }
}

/// What an SLO looks at in a span, read from a decoded span or a view alike.
struct SpanFacts<'a> {
    service: Option<&'a str>,
    name: &'a str,
    kind: i32,
    route: Option<&'a str>,
    error: bool,
    duration_nanos: u64,
}

impl Slo {
    fn matches(&self, span: &SpanFacts<'_>) -> bool {
        if let Some(s) = &self.service
            && span.service != Some(s.as_str())
        {
            return false;
        }
        if self.span_name.as_ref().is_some_and(|n| n != span.name) {
            return false;
        }
        if self.span_kind.is_some_and(|k| k != span.kind) {
            return false;
        }
        if let Some(route) = &self.route
            && span.route != Some(route.as_str())
        {
            return false;
        }
        true
    }

    /// `Some(true)` for a good event, `Some(false)` for a bad one.
    fn judge(&self, span: &SpanFacts<'_>) -> Option<bool> {
        match self.kind {
            Kind::Availability => Some(!span.error),
            Kind::Latency { threshold_nanos } => Some(span.duration_nanos <= threshold_nanos),
            Kind::Ratio => None,
        }
    }
}

impl Counts {
    fn add(&mut self, now: u64, good: u64, bad: u64) {
        self.good += good;
        self.bad += bad;
        let minute = now / NANOS_PER_MINUTE;
        let m = self.minutes.entry(minute).or_default();
        m.0 += good;
        m.1 += bad;
        let h = self.hours.entry(minute / 60).or_default();
        h.0 += good;
        h.1 += bad;
    }

    fn prune(&mut self, now: u64, window_minutes: u64) {
        let minute = now / NANOS_PER_MINUTE;
        let oldest_minute = minute.saturating_sub(HISTORY_MINUTES);
        self.minutes = self.minutes.split_off(&oldest_minute);
        let oldest_hour = (minute / 60).saturating_sub(window_minutes / 60 + 1);
        self.hours = self.hours.split_off(&oldest_hour);
    }

    /// (good, bad) over the last `minutes` minutes.
    fn over(&self, now: u64, minutes: u64) -> (u64, u64) {
        let minute = now / NANOS_PER_MINUTE;
        self.minutes
            .range(minute.saturating_sub(minutes - 1)..)
            .fold((0, 0), |(g, b), (_, (mg, mb))| (g + mg, b + mb))
    }

    fn over_hours(&self, now: u64, minutes: u64) -> (u64, u64) {
        let hour = now / NANOS_PER_MINUTE / 60;
        let hours = minutes.div_ceil(60).max(1);
        self.hours
            .range(hour.saturating_sub(hours - 1)..)
            .fold((0, 0), |(g, b), (_, (hg, hb))| (g + hg, b + hb))
    }
}

/// Error ratio divided by the error budget; 0 with no traffic.
fn burn_rate((good, bad): (u64, u64), budget: f64) -> f64 {
    let total = good + bad;
    if total == 0 {
        0.0
    } else {
        (bad as f64 / total as f64) / budget
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn point(attributes: Vec<KeyValue>, now: u64, value: number_data_point::Value) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: now,
        value: Some(value),
        ..Default::default()
    }
}

impl SloPlugin {
    fn report(&self, now: u64) -> ExportMetricsServiceRequest {
        let mut events = Vec::new();
        let mut burn = Vec::new();
        let mut remaining = Vec::new();
        for slo in &self.slos {
            if matches!(slo.kind, Kind::Ratio) {
                continue;
            }
            let counts = self.counts.get(&slo.name).cloned().unwrap_or_default();
            let base = vec![
                string_kv("slo", &slo.name),
                string_kv("service", slo.service.as_deref().unwrap_or("")),
            ];
            for (outcome, n) in [("good", counts.good), ("bad", counts.bad)] {
                let mut a = base.clone();
                a.push(string_kv("outcome", outcome));
                events.push(point(a, now, number_data_point::Value::AsInt(n as i64)));
            }
            for (window, minutes) in WINDOWS {
                let mut a = base.clone();
                a.push(string_kv("window", window));
                let rate = burn_rate(counts.over(now, *minutes), slo.budget);
                burn.push(point(a, now, number_data_point::Value::AsDouble(rate)));
            }
            let spent = burn_rate(counts.over_hours(now, slo.window_minutes), slo.budget);
            remaining.push(point(
                base,
                now,
                number_data_point::Value::AsDouble(1.0 - spent),
            ));
        }
        let metrics = vec![
            Metric {
                name: "sluice.slo.events".into(),
                description: "SLI events counted by the gateway, by outcome.".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: events,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "sluice.slo.burn_rate".into(),
                description: "Error ratio over the window divided by the error budget, as this gateway sees it.".into(),
                data: Some(metric::Data::Gauge(Gauge { data_points: burn })),
                ..Default::default()
            },
            Metric {
                name: "sluice.slo.error_budget.remaining".into(),
                description: "Share of the error budget left over the SLO window, as this gateway sees it.".into(),
                unit: "1".into(),
                data: Some(metric::Data::Gauge(Gauge { data_points: remaining })),
                ..Default::default()
            },
        ];
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(sluice_sdk::otlp::resource::v1::Resource {
                    attributes: vec![string_kv("service.name", "sluice")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

impl SloPlugin {
    fn count(&self, span: &SpanFacts<'_>, tally: &mut [(u64, u64)]) {
        for (i, slo) in self.slos.iter().enumerate() {
            if !slo.matches(span) {
                continue;
            }
            match slo.judge(span) {
                Some(true) => tally[i].0 += 1,
                Some(false) => tally[i].1 += 1,
                None => {}
            }
        }
    }

    fn record(&mut self, tally: Vec<(u64, u64)>) {
        let now = host::now();
        for (slo, (good, bad)) in self.slos.iter().zip(tally) {
            if good + bad > 0 {
                self.counts
                    .entry(slo.name.clone())
                    .or_default()
                    .add(now, good, bad);
            }
        }
    }
}

impl Plugin for SloPlugin {
    fn describe() -> Info {
        Info::new("slo", env!("CARGO_PKG_VERSION"), &[Signal::Traces]).stateful()
    }

    fn new(config: &str) -> Result<Self, Error> {
        let c: Config = sluice_sdk::parse_config(config)?;
        let mut slos = Vec::new();
        for s in c.slos {
            if !(s.objective > 0.0 && s.objective < 100.0) {
                return Err(Error::Config(format!(
                    "slo {}: objective {} must be a percentage between 0 and 100",
                    s.name, s.objective
                )));
            }
            let chosen = [
                s.sli.availability.is_some(),
                s.sli.latency.is_some(),
                s.sli.ratio.is_some(),
            ];
            if chosen.iter().filter(|c| **c).count() != 1 {
                return Err(Error::Config(format!(
                    "slo {}: sli needs exactly one of availability, latency and ratio",
                    s.name
                )));
            }
            let (kind, filter) = match (s.sli.availability, s.sli.latency) {
                (Some(f), _) => (Kind::Availability, f),
                (_, Some(l)) => (
                    Kind::Latency {
                        threshold_nanos: (l.threshold_ms * 1e6) as u64,
                    },
                    l.filter,
                ),
                _ => (Kind::Ratio, SpanFilter::default()),
            };
            slos.push(Slo {
                budget: 1.0 - s.objective / 100.0,
                window_minutes: parse_window(&s.window)?,
                span_kind: filter.span_kind.as_deref().map(kind_number).transpose()?,
                span_name: filter.span_name,
                route: filter.route,
                name: s.name,
                service: s.service,
                kind,
            });
        }
        Ok(SloPlugin {
            slos,
            counts: BTreeMap::new(),
        })
    }

    fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
        let mut tally: Vec<(u64, u64)> = vec![(0, 0); self.slos.len()];
        for rs in &batch.resource_spans {
            let service =
                rs.resource
                    .as_ref()
                    .and_then(|r| match attr(&r.attributes, "service.name") {
                        Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
                        _ => None,
                    });
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                let facts = SpanFacts {
                    service,
                    name: &span.name,
                    kind: span.kind,
                    route: match attr(&span.attributes, "http.route") {
                        Some(any_value::Value::StringValue(r)) => Some(r.as_str()),
                        _ => None,
                    },
                    error: is_error(span),
                    duration_nanos: span
                        .end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano),
                };
                self.count(&facts, &mut tally);
            }
        }
        self.record(tally);
        Ok(Verdict::Unchanged)
    }

    /// The same counting, straight from the protobuf: the slo plugin never changes a batch,
    /// so it never needs the decoded form.
    fn read_traces(&mut self, batch: &TracesView<'_>) -> Result<Option<Verdict>, Error> {
        let mut tally: Vec<(u64, u64)> = vec![(0, 0); self.slos.len()];
        let wants_route = self.slos.iter().any(|s| s.route.is_some());
        // The service is the resource's: looked up once per resource, not once per span.
        let mut last: Option<(AttributesView<'_>, Option<&str>)> = None;
        batch.for_each_span(|resource, span| {
            let service = match last {
                Some((attrs, service)) if attrs.same(&resource.attributes) => service,
                _ => {
                    let service = resource
                        .attributes
                        .get("service.name")?
                        .and_then(|v| v.as_str());
                    last = Some((resource.attributes, service));
                    service
                }
            };
            // One pass over the span's attributes for all the keys it needs.
            let [status, old_status, route] = span.attributes.get_many([
                "http.response.status_code",
                "http.status_code",
                if wants_route { "http.route" } else { "" },
            ])?;
            let route = route.and_then(|v| v.as_str()).filter(|_| wants_route);
            let facts = SpanFacts {
                service,
                name: span.name,
                kind: span.kind,
                route,
                error: span.status_code == StatusCode::Error as i32 || {
                    match status.or(old_status) {
                        Some(ValueView::Int(c)) => c >= 500,
                        Some(ValueView::Str(s)) => s.parse::<i64>().is_ok_and(|c| c >= 500),
                        _ => false,
                    }
                },
                duration_nanos: span.duration_nanos(),
            };
            self.count(&facts, &mut tally);
            Ok(())
        })?;
        self.record(tally);
        Ok(Some(Verdict::Unchanged))
    }

    fn tick(&mut self, now: u64) -> Result<(), Error> {
        for slo in &self.slos {
            if let Some(c) = self.counts.get_mut(&slo.name) {
                c.prune(now, slo.window_minutes);
            }
        }
        if self.slos.iter().any(|s| !matches!(s.kind, Kind::Ratio)) {
            host::emit_metrics(&self.report(now));
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.counts).unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        self.counts = serde_json::from_slice(state)
            .map_err(|e| Error::Input(format!("cannot restore SLO counts: {e}")))?;
        Ok(())
    }
}

sluice_sdk::export_plugin!(SloPlugin);

#[cfg(test)]
mod tests;
