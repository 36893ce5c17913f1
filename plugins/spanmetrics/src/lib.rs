//! `spanmetrics`: request, error and duration (RED) metrics from spans.
//!
//! Every span passing is counted, once, into a series named by its resource, its service, span
//! name, kind and status and the configured dimensions: `{namespace}.calls` (a monotonic sum,
//! `traces_span_metrics_calls_total` in Prometheus) and `{namespace}.duration` (a histogram in
//! seconds or milliseconds, explicit or exponential: `traces_span_metrics_duration_seconds`),
//! with the latest span of each bucket as an exemplar. The names, dimensions and values are
//! those of the OpenTelemetry Collector's spanmetrics connector, so dashboards and alerts built
//! on it work unchanged. Every `metrics_flush_interval` the plugin emits the series into the
//! gateway's metrics pipelines. The batch itself always passes unchanged.
//!
//! Bounded: at most `max_series` series (further series are counted into one series marked
//! `otel.metric.overflow="true"`), series may expire, and the spans remembered for counting
//! each once (`dedupe_window`) are a fixed number. Counts survive reloads and traps
//! (snapshot/restore).

mod config;
mod histogram;
mod report;
mod series;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use sluice_sdk::host;
use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::prost::Message;
use sluice_sdk::view::{AttributesView, TracesView};
use sluice_sdk::{Error, Info, Plugin, Signal, Verdict};

pub use config::Config;
use config::Histogram;
use histogram::Dist;
use series::{Exemplar, Resource, Series, Store, Val, ValRef};
use sluice_sdk::seen::SeenSpans;
use sluice_sdk::state;

#[derive(Debug)]
pub struct SpanMetrics {
    config: Config,
    store: Store,
    seen: SeenSpans,
    /// When counting began (the start of the plugin's own counters).
    started: u64,
    last_flush: u64,
    /// Encoded requests of a flush not yet emitted, one per tick.
    pending: VecDeque<Vec<u8>>,
}

/// The resource of the spans being counted, looked up once per resource per batch.
struct CurrentResource<'a> {
    key: Vec<u8>,
    attrs: Vec<(&'a str, ValRef<'a>)>,
    service: Option<ValRef<'a>>,
    /// The configured dimensions' values on the resource.
    dims: Vec<Option<ValRef<'a>>>,
    id: Option<u32>,
}

impl<'a> CurrentResource<'a> {
    fn read(config: &Config, attributes: &AttributesView<'a>) -> Result<Self, Error> {
        let mut r = CurrentResource {
            key: Vec::new(),
            attrs: Vec::new(),
            service: None,
            dims: vec![None; config.dimensions.len()],
            id: None,
        };
        attributes.for_each(|k, v| {
            let Some(v) = ValRef::from_view(v) else {
                return Ok(());
            };
            if k == "service.name" && r.service.is_none() {
                r.service = Some(v);
            }
            for (i, d) in config.dimensions.iter().enumerate() {
                if d.name == k && r.dims[i].is_none() {
                    r.dims[i] = Some(v);
                }
            }
            let keyed = config
                .resource_key
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|x| x == k));
            if keyed && !r.attrs.iter().any(|(x, _)| *x == k) {
                r.attrs.push((k, v));
            }
            Ok(())
        })?;
        series::resource_key(&mut r.key, &mut r.attrs);
        Ok(r)
    }
}

/// What a snapshot holds.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    started: u64,
    last_flush: u64,
    resources: Vec<Option<Resource>>,
    series: Vec<Series>,
    overflow: Option<Series>,
    overflowed: u64,
    duplicates: u64,
}

impl SpanMetrics {
    /// Counts the spans of a batch.
    fn count(&mut self, batch: &TracesView<'_>, now: u64) -> Result<(), Error> {
        let SpanMetrics {
            config,
            store,
            seen,
            ..
        } = self;
        let unit = config.unit.nanos();
        let needs_span_attrs = !config.dimensions.is_empty() || config.span_name_from_route;
        let mut current: Option<(AttributesView<'_>, CurrentResource<'_>)> = None;
        let mut span_dims: Vec<Option<ValRef<'_>>> = vec![None; config.dimensions.len()];
        let mut parts: Vec<Option<ValRef<'_>>> = Vec::with_capacity(4 + config.dimensions.len());
        let mut key: Vec<u8> = Vec::with_capacity(128);
        batch.for_each_span(|resource, span| {
            if !seen.first_time(span.trace_id, span.span_id) {
                store.duplicates = store.duplicates.saturating_add(1);
                return Ok(());
            }
            if !current
                .as_ref()
                .is_some_and(|(a, _)| a.same(&resource.attributes))
            {
                let mut read = CurrentResource::read(config, &resource.attributes)?;
                read.id = store.resources.get(read.key.as_slice()).copied();
                current = Some((resource.attributes, read));
            }
            let Some((_, res)) = current.as_mut() else {
                return Ok(());
            };
            span_dims.iter_mut().for_each(|d| *d = None);
            let mut route = None;
            if needs_span_attrs {
                span.attributes.for_each(|k, v| {
                    if config.span_name_from_route && k == "http.route" {
                        route = v.as_str();
                    }
                    for (i, d) in config.dimensions.iter().enumerate() {
                        if span_dims[i].is_none() && d.name == k {
                            span_dims[i] = ValRef::from_view(v);
                        }
                    }
                    Ok(())
                })?;
            }
            parts.clear();
            parts.push(config.service_name.then_some(res.service).flatten());
            parts.push(
                config
                    .span_name
                    .then(|| ValRef::Str(route.unwrap_or(span.name))),
            );
            parts.push(
                config
                    .span_kind
                    .then_some(ValRef::Int(i64::from(span.kind))),
            );
            parts.push(
                config
                    .status_code
                    .then_some(ValRef::Int(i64::from(span.status_code))),
            );
            for (i, d) in config.dimensions.iter().enumerate() {
                parts.push(
                    span_dims[i]
                        .or(res.dims[i])
                        .or(d.default.as_deref().map(ValRef::Str)),
                );
            }
            let value = span.duration_nanos() as f64 / unit;
            let exemplar = (config.exemplars
                && span.trace_id.len() == 16
                && span.span_id.len() == 8)
                .then(|| {
                    let mut e = Exemplar {
                        trace_id: [0; 16],
                        span_id: [0; 8],
                        time: if span.end_time_unix_nano > 0 {
                            span.end_time_unix_nano
                        } else {
                            now
                        },
                        value,
                    };
                    e.trace_id.copy_from_slice(span.trace_id);
                    e.span_id.copy_from_slice(span.span_id);
                    e
                });
            Store::series_key(&mut key, res.id.unwrap_or(u32::MAX), &parts);
            if let Some(s) = store.series.get_mut(&key[..]) {
                s.record(config, value, exemplar, now);
                return Ok(());
            }
            if store.series.len() >= config.max_series {
                store.overflowed = store.overflowed.saturating_add(1);
                store
                    .overflow
                    .get_or_insert_with(|| Series::new(config, u32::MAX, Vec::new(), now))
                    .record(config, value, exemplar, now);
                return Ok(());
            }
            let id = store.resource_id(&res.key, || {
                res.attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.owned()))
                    .collect()
            });
            res.id = Some(id);
            Store::series_key(&mut key, id, &parts);
            let owned = parts.iter().map(|p| p.map(ValRef::owned)).collect();
            let mut s = Series::new(config, id, owned, now);
            s.record(config, value, exemplar, now);
            store.add_series(&key, s);
            Ok(())
        })
    }

    /// Builds a flush's requests into `pending`, then starts the next interval.
    fn flush(&mut self, now: u64) {
        if self.config.expiration_nanos > 0 {
            self.store
                .expire(now.saturating_sub(self.config.expiration_nanos));
        }
        for request in report::flush(&self.config, &self.store, now) {
            self.pending.push_back(request.encode_to_vec());
        }
        self.pending
            .push_back(report::own_metrics(&self.store, self.started, now).encode_to_vec());
        let delta = self.config.delta;
        for s in self
            .store
            .series
            .values_mut()
            .chain(self.store.overflow.as_mut())
        {
            if delta && s.fresh {
                s.calls = 0;
                s.dist.reset();
                s.start = now;
            }
            s.fresh = false;
            s.exemplars.clear();
        }
    }

    /// Takes over a snapshot's state, when it was taken under the same configuration.
    fn take_over(&mut self, snap: Snapshot) {
        let config = &self.config;
        let mut store = Store {
            overflowed: snap.overflowed,
            duplicates: snap.duplicates,
            ..Store::default()
        };
        let mut key = Vec::new();
        for (id, r) in snap.resources.into_iter().enumerate() {
            if let Some(mut r) = r {
                let mut attrs: Vec<(&str, ValRef<'_>)> = r
                    .attrs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_ref()))
                    .collect();
                series::resource_key(&mut key, &mut attrs);
                store.resources.insert(key.as_slice().into(), id as u32);
                r.series = 0;
                store.resource_table.push(Some(r));
            } else {
                store.resource_table.push(None);
            }
        }
        let fits = |s: &Series| match (&s.dist, &config.histogram) {
            (Dist::None, Histogram::Disabled)
            | (Dist::Exponential(_), Histogram::Exponential { .. }) => true,
            (Dist::Explicit { counts, .. }, Histogram::Explicit(bounds)) => {
                counts.len() == bounds.len() + 1
            }
            _ => false,
        };
        for s in snap.series {
            let known = matches!(store.resource_table.get(s.resource as usize), Some(Some(_)));
            if !known
                || !fits(&s)
                || s.parts.len() != 4 + config.dimensions.len()
                || store.series.len() >= config.max_series
            {
                continue;
            }
            let parts: Vec<Option<ValRef<'_>>> = s
                .parts
                .iter()
                .map(|p| p.as_ref().map(Val::as_ref))
                .collect();
            Store::series_key(&mut key, s.resource, &parts);
            store.add_series(&key, s);
        }
        store.overflow = snap.overflow.filter(|s| fits(s));
        self.store = store;
        self.started = snap.started;
        self.last_flush = snap.last_flush;
    }
}

#[cfg(test)]
impl SpanMetrics {
    fn seen_len(&self) -> usize {
        self.seen.len()
    }
}

impl Plugin for SpanMetrics {
    fn describe() -> Info {
        Info::new("spanmetrics", env!("CARGO_PKG_VERSION"), &[Signal::Traces]).stateful()
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config = Config::parse(config)?;
        Ok(SpanMetrics {
            seen: SeenSpans::new(config.dedupe_window),
            config,
            store: Store::default(),
            started: 0,
            last_flush: 0,
            pending: VecDeque::new(),
        })
    }

    fn read_traces(&mut self, batch: &TracesView<'_>) -> Result<Option<Verdict>, Error> {
        let now = host::now();
        if self.started == 0 {
            self.started = now;
        }
        self.count(batch, now)?;
        Ok(Some(Verdict::Unchanged))
    }

    fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
        let bytes = batch.encode_to_vec();
        self.read_traces(&TracesView::new(&bytes))?;
        Ok(Verdict::Unchanged)
    }

    fn tick(&mut self, now: u64) -> Result<(), Error> {
        if self.started == 0 {
            self.started = now;
        }
        if self.last_flush == 0 {
            self.last_flush = now;
        }
        // A flush waits while the previous one is still being emitted: nothing is lost, it
        // only comes later.
        if self.pending.is_empty()
            && now.saturating_sub(self.last_flush) >= self.config.flush_interval_nanos
        {
            self.last_flush = now;
            self.flush(now);
        }
        if let Some(request) = self.pending.pop_front() {
            host::emit(Signal::Metrics, &request);
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        let snap = Snapshot {
            started: self.started,
            last_flush: self.last_flush,
            resources: self.store.resource_table.clone(),
            series: self.store.series.values().cloned().collect(),
            overflow: self.store.overflow.clone(),
            overflowed: self.store.overflowed,
            duplicates: self.store.duplicates,
        };
        state::save(&self.config.shape(), &snap)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if let Some(snap) = state::load(bytes, &self.config.shape(), "span metrics")? {
            self.take_over(snap);
        }
        Ok(())
    }
}

sluice_sdk::export_plugin!(SpanMetrics);

#[cfg(test)]
mod tests;
