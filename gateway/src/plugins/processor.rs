//! One configured processor: a plugin instance, its limits, its error policy, its breaker, and
//! its reloads.
//!
//! Two locks, never held together the other way round: the slot's, held for a whole plugin
//! call (the instance is single-threaded), and the view's, held only to copy or update the
//! small status the admin API shows. Readers of status (`/health/detailed`, `/api/v1/plugins`,
//! `/api/v1/status`) take only the view's, so they never wait for a call in progress.
//!
//! Beyond what the store enforces (see `engine`), the output of a call is capped in bytes: a
//! `replace` larger than the processor's `max_batch_mb` fails the batch (kind
//! `replace_too_large`), and a snapshot larger than [`SNAPSHOT_BYTES`] is refused (kind
//! `snapshot_too_large`; the previous one is kept). A broken cap is counted in
//! `sluice_plugin_errors_total{kind}` and the batch follows `on_error`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::{Component, Func};
use wasmtime::{Store, Trap};

use super::bindings::exports::sluice::plugin::plugin::{Error as GuestError, Verdict};
use super::bindings::sluice::plugin::types::Signal as WitSignal;
use super::bindings::{Processor as World, ProcessorPre};
use super::engine::{
    EPOCH_TICK, HostState, LimitExceeded, PluginEngine, PluginError, Quotas, TrackedLimits,
};
use super::language::Language;
use crate::config::{OnError, ProcessorSpec};
use crate::model::{Batch, Payload, Signal};
use crate::telemetry::metrics::SelfMetrics;

/// What happens to a batch after a processor.
#[derive(Debug)]
pub enum Outcome {
    /// Continue with this batch (the same one, or what the plugin made of it).
    Forward(Arc<Batch>),
    /// The batch ends here (filtered out entirely, or dropped by `on_error: drop`).
    Drop { reason: &'static str },
    /// `on_error: reject`: the client gets a retryable error.
    Reject { message: String },
}

/// Telemetry a plugin emitted during a call: signal and OTLP protobuf.
pub type Emitted = Vec<(Signal, Vec<u8>)>;

/// What `/health/detailed` shows about a processor.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProcessorStatus {
    pub plugin: String,
    pub version: String,
    pub path: String,
    pub state: &'static str,
    pub last_error: Option<String>,
    pub last_reload_error: Option<String>,
    pub reloads: u64,
    /// The config as written, secrets masked.
    pub config: serde_json::Value,
    /// The last reloads and failed reloads, oldest first.
    pub history: Vec<ReloadEvent>,
}

/// One reload attempt, for the admin UI.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadEvent {
    /// Unix seconds.
    pub at: u64,
    pub ok: bool,
    pub version: String,
    pub message: Option<String>,
}

/// Reload attempts kept per plugin.
const HISTORY: usize = 20;

impl ProcessorStatus {
    fn record(&mut self, ok: bool, message: Option<String>) {
        if self.history.len() >= HISTORY {
            self.history.remove(0);
        }
        self.history.push(ReloadEvent {
            at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ok,
            version: self.version.clone(),
            message,
        });
    }
}

struct Live {
    store: Store<HostState>,
    bindings: World,
    /// The export `process`, called with the batch borrowed (the generated binding wants an
    /// owned `Vec`, a copy of every batch for every plugin).
    process: Func,
}

/// The WIT interface the plugins export, as named in the component.
const PLUGIN_INTERFACE: &str = "sluice:plugin/plugin@0.1.0";

/// The largest snapshot a stateful plugin may hand over.
pub const SNAPSHOT_BYTES: usize = 16 << 20;

struct Slot {
    pre: ProcessorPre<HostState>,
    signals: Vec<Signal>,
    stateful: bool,
    fingerprint: Option<(SystemTime, u64)>,
    instance: Option<Live>,
    snapshot: Vec<u8>,
    failures: u32,
    open_until: Option<Instant>,
    /// Whether the view says `ok` (spares the view's lock on every successful call).
    shown_ok: bool,
}

/// What readers see of a processor, updated after calls, never locked during one.
struct View {
    status: ProcessorStatus,
    signals: Vec<Signal>,
}

pub struct Processor {
    pub name: Arc<str>,
    spec: ProcessorSpec,
    engine: Arc<PluginEngine>,
    slot: Mutex<Slot>,
    view: Mutex<View>,
    quotas: Arc<Quotas>,
    peak_memory: AtomicUsize,
    metrics: Arc<SelfMetrics>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("name", &self.name)
            .finish()
    }
}

/// Consecutive failures that open the breaker, and how long it stays open.
const BREAKER_THRESHOLD: u32 = 5;
const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

fn wit_signal(s: Signal) -> WitSignal {
    match s {
        Signal::Traces => WitSignal::Traces,
        Signal::Metrics => WitSignal::Metrics,
        Signal::Logs => WitSignal::Logs,
    }
}

fn from_wit_signal(s: WitSignal) -> Signal {
    match s {
        WitSignal::Traces => Signal::Traces,
        WitSignal::Metrics => Signal::Metrics,
        WitSignal::Logs => Signal::Logs,
    }
}

fn guest_error(e: &GuestError) -> String {
    match e {
        GuestError::Config(m) => format!("config: {m}"),
        GuestError::Input(m) => format!("input: {m}"),
        GuestError::Internal(m) => format!("internal: {m}"),
    }
}

/// Why a call failed, for `sluice_plugin_errors_total{kind}`.
fn failure_kind(e: &wasmtime::Error) -> &'static str {
    if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return "timeout";
    }
    if let Some(limit) = e.chain().find_map(|c| c.downcast_ref::<LimitExceeded>()) {
        return limit.resource;
    }
    let text = format!("{e:?}");
    if text.contains("growing memory") || text.contains("memory allocation") {
        "memory"
    } else {
        "trap"
    }
}

/// The plugin's component, from its file or from the binary for an embedded built-in, and the
/// language it was written in (read from the same bytes: the file is read once).
fn compile(
    engine: &PluginEngine,
    spec: &ProcessorSpec,
) -> Result<(Component, Language), PluginError> {
    match spec.embedded {
        Some(bytes) => Ok((engine.compile_bytes(&spec.path, bytes)?, Language::Compiled)),
        None => {
            let bytes = std::fs::read(&spec.path).map_err(|source| PluginError::Read {
                path: spec.path.clone(),
                source,
            })?;
            let language = super::language::of_component(&bytes);
            Ok((engine.compile_bytes(&spec.path, &bytes)?, language))
        }
    }
}

/// When and how large the plugin's file is; nothing for an embedded built-in, which never
/// changes.
fn fingerprint(spec: &ProcessorSpec) -> Option<(SystemTime, u64)> {
    if spec.embedded.is_some() {
        return None;
    }
    let m = std::fs::metadata(&spec.path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Processor {
    /// Compiles, instantiates and initialises the plugin; fails with the plugin's own message
    /// when `init` refuses the config.
    pub fn load(
        spec: ProcessorSpec,
        engine: Arc<PluginEngine>,
        metrics: Arc<SelfMetrics>,
    ) -> Result<Processor, PluginError> {
        let name: Arc<str> = spec.name.as_str().into();
        let (component, language) = compile(&engine, &spec)?;
        let mut spec = spec;
        // The deadline of the plugin's language when the config set none (see
        // [`super::language`]); kept across reloads of the file.
        if spec.timeout_is_default {
            spec.timeout = language.default_timeout();
        }
        let quotas = Arc::new(Quotas::new(
            metrics.plugin_log_suppressed.with_label_values(&[&*name]),
        ));
        let (slot, status) = Self::prepare(&spec, &engine, &name, &quotas, &component, Vec::new())?;
        let view = View {
            status,
            signals: slot.signals.clone(),
        };
        Ok(Processor {
            name,
            spec,
            engine,
            slot: Mutex::new(slot),
            view: Mutex::new(view),
            quotas,
            peak_memory: AtomicUsize::new(0),
            metrics,
        })
    }

    fn prepare(
        spec: &ProcessorSpec,
        engine: &PluginEngine,
        name: &Arc<str>,
        quotas: &Arc<Quotas>,
        component: &Component,
        snapshot: Vec<u8>,
    ) -> Result<(Slot, ProcessorStatus), PluginError> {
        let invalid = |e: wasmtime::Error| PluginError::Invalid {
            path: spec.path.clone(),
            message: format!("{e:#}"),
        };
        let pre = engine
            .linker
            .instantiate_pre(component)
            .and_then(ProcessorPre::new)
            .map_err(invalid)?;
        let mut live = instantiate(&pre, spec, name, quotas).map_err(invalid)?;
        let info = live
            .bindings
            .sluice_plugin_plugin()
            .call_describe(&mut live.store)
            .map_err(invalid)?;
        init(&mut live, spec, &snapshot).map_err(|message| PluginError::Init {
            name: spec.name.clone(),
            message,
        })?;
        let slot = Slot {
            pre,
            signals: info.signals.into_iter().map(from_wit_signal).collect(),
            stateful: info.stateful,
            fingerprint: fingerprint(spec),
            instance: Some(live),
            snapshot,
            failures: 0,
            open_until: None,
            shown_ok: true,
        };
        let status = ProcessorStatus {
            plugin: info.name,
            version: info.version,
            path: spec.path.display().to_string(),
            state: "ok",
            config: spec.display_config.clone(),
            ..Default::default()
        };
        Ok((slot, status))
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        // A panic while holding the lock is a bug; the slot itself stays consistent (an
        // instance is only replaced whole), so keep going.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn view(&self) -> MutexGuard<'_, View> {
        // Held only to copy or assign fields: consistent after any panic.
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The processor's status; never waits for a plugin call.
    pub fn status(&self) -> ProcessorStatus {
        self.view().status.clone()
    }

    /// The signals the plugin takes; never waits for a plugin call.
    pub fn signals(&self) -> Vec<Signal> {
        self.view().signals.clone()
    }

    /// The most memory (all memories and tables) the current instance has used, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.peak_memory.load(Ordering::Relaxed)
    }

    fn set_state(&self, slot: &mut Slot, state: &'static str, error: Option<&str>) {
        slot.shown_ok = state == "ok";
        let mut view = self.view();
        view.status.state = state;
        if let Some(e) = error {
            view.status.last_error = Some(e.to_string());
        }
    }

    /// Runs the plugin over one batch.
    pub fn process(&self, batch: Arc<Batch>) -> (Outcome, Emitted) {
        let signal = batch.signal();
        let mut slot = self.slot();
        if !slot.signals.contains(&signal) {
            return (Outcome::Forward(batch), Vec::new());
        }
        let name = &*self.name;
        let m = &self.metrics;
        if let Some(until) = slot.open_until {
            if Instant::now() < until {
                self.count_error("breaker_open", false);
                return (
                    self.on_error(batch, "breaker_open", "breaker open".into()),
                    Vec::new(),
                );
            }
            slot.open_until = None;
            m.plugin_breaker_open.with_label_values(&[name]).set(0);
        }
        let bytes = batch.encoded().clone();
        if bytes.len() > self.spec.max_batch_bytes {
            let msg = format!(
                "batch of {} bytes exceeds the plugin's limit of {}",
                bytes.len(),
                self.spec.max_batch_bytes
            );
            self.count_error("too_large", false);
            return (self.on_error(batch, "too_large", msg), Vec::new());
        }
        if slot.instance.is_none() {
            let snapshot = slot.snapshot.clone();
            match instantiate(&slot.pre, &self.spec, &self.name, &self.quotas)
                .map_err(|e| format!("{e:#}"))
                .and_then(|mut live| init(&mut live, &self.spec, &snapshot).map(|_| live))
            {
                Ok(live) => {
                    slot.instance = Some(live);
                    m.plugin_restarts.with_label_values(&[name]).inc();
                }
                Err(msg) => {
                    self.fail(&mut slot, "init", &msg);
                    return (self.on_error(batch, "init", msg), Vec::new());
                }
            }
        }
        let started = Instant::now();
        let records_in = batch.records();
        m.plugin_records_in
            .with_label_values(&[name])
            .inc_by(records_in as u64);
        let Some(live) = slot.instance.as_mut() else {
            return (
                self.on_error(batch, "init", "no instance".into()),
                Vec::new(),
            );
        };
        live.store
            .set_epoch_deadline(deadline_ticks(self.spec.timeout));
        live.store.data_mut().begin_call();
        let result = live
            .process
            .typed::<(WitSignal, &[u8]), (Result<Verdict, GuestError>,)>(&live.store)
            .and_then(|f| f.call(&mut live.store, (wit_signal(signal), &bytes)))
            .map(|(r,)| r);
        let (emitted, exceeded) = live.store.data_mut().end_call();
        self.peak_memory
            .store(live.store.data().limits.peak_memory, Ordering::Relaxed);
        m.plugin_call_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(_) if exceeded.is_some() => {
                let kind = exceeded.unwrap_or("emit_too_large");
                let msg = format!("{kind}: the plugin emitted more than its caps allow");
                self.count_error(kind, true);
                self.set_state(&mut slot, "ok", Some(&msg));
                self.on_error(batch, kind, msg)
            }
            Ok(Ok(verdict)) => {
                slot.failures = 0;
                if !slot.shown_ok {
                    self.set_state(&mut slot, "ok", None);
                }
                match self.apply(batch.clone(), verdict) {
                    Ok(outcome) => {
                        m.plugin_calls.with_label_values(&[name, "ok"]).inc();
                        outcome
                    }
                    Err((kind, msg)) => {
                        self.count_error(kind, true);
                        self.on_error(batch, kind, msg)
                    }
                }
            }
            Ok(Err(e)) => {
                let msg = guest_error(&e);
                self.count_error("plugin_error", true);
                self.view().status.last_error = Some(msg.clone());
                self.on_error(batch, "plugin_error", msg)
            }
            Err(e) => {
                let kind = failure_kind(&e);
                let msg = format!("{kind}: {}", e.root_cause());
                // The instance may be in any state after a trap: poison it.
                slot.instance = None;
                self.fail(&mut slot, kind, &msg);
                self.on_error(batch, kind, msg)
            }
        };
        if let Outcome::Forward(b) = &outcome {
            m.plugin_records_out
                .with_label_values(&[name])
                .inc_by(b.records() as u64);
        }
        (outcome, emitted)
    }

    fn fail(&self, slot: &mut Slot, kind: &'static str, msg: &str) {
        let name = &*self.name;
        self.metrics
            .plugin_errors
            .with_label_values(&[name, kind])
            .inc();
        self.metrics
            .plugin_calls
            .with_label_values(&[name, "failed"])
            .inc();
        tracing::warn!(processor = name, kind, error = %msg, "Plugin call failed; its instance will be recreated.");
        slot.failures += 1;
        self.set_state(slot, "failing", Some(msg));
        if slot.failures >= BREAKER_THRESHOLD {
            slot.open_until = Some(Instant::now() + BREAKER_COOLDOWN);
            self.set_state(slot, "breaker_open", None);
            self.metrics
                .plugin_breaker_open
                .with_label_values(&[name])
                .set(1);
            tracing::error!(
                processor = name,
                failures = slot.failures,
                cooldown_s = BREAKER_COOLDOWN.as_secs(),
                "Plugin keeps failing; breaker open, on_error applies without calling it."
            );
        }
    }

    /// Counts a failure that needs no new instance; `called` says whether the plugin ran.
    fn count_error(&self, kind: &'static str, called: bool) {
        let name = &*self.name;
        self.metrics
            .plugin_errors
            .with_label_values(&[name, kind])
            .inc();
        if called {
            self.metrics
                .plugin_calls
                .with_label_values(&[name, "failed"])
                .inc();
        }
    }

    /// A snapshot within [`SNAPSHOT_BYTES`], or `None` (counted) when it is larger.
    fn checked_snapshot(&self, snapshot: Vec<u8>) -> Option<Vec<u8>> {
        if snapshot.len() <= SNAPSHOT_BYTES {
            return Some(snapshot);
        }
        self.count_error("snapshot_too_large", false);
        tracing::warn!(
            processor = %self.name,
            bytes = snapshot.len(),
            limit = SNAPSHOT_BYTES,
            "Plugin snapshot too large; the previous one is kept."
        );
        None
    }

    fn on_error(&self, batch: Arc<Batch>, reason: &'static str, message: String) -> Outcome {
        let name = &*self.name;
        match self.spec.on_error {
            OnError::Pass => Outcome::Forward(batch),
            OnError::Drop => {
                self.metrics.drop_records(
                    &format!("processor/{name}"),
                    batch.signal().as_str(),
                    reason,
                    batch.records(),
                );
                Outcome::Drop { reason }
            }
            OnError::Reject => Outcome::Reject {
                message: format!("processor {name} could not process the batch ({message})"),
            },
        }
    }

    /// The batch the plugin's verdict makes; on failure, the error kind and message.
    fn apply(
        &self,
        batch: Arc<Batch>,
        verdict: Verdict,
    ) -> Result<Outcome, (&'static str, String)> {
        Ok(match verdict {
            Verdict::Unchanged => Outcome::Forward(batch),
            Verdict::Keep(indices) => {
                if indices.len() == batch.records()
                    && indices.iter().enumerate().all(|(i, v)| *v as usize == i)
                {
                    return Ok(Outcome::Forward(batch));
                }
                let mut payload = batch.payload().clone();
                payload.retain_records(&indices);
                let filtered = batch.records() - payload.record_count();
                self.metrics.drop_records(
                    &format!("processor/{}", self.name),
                    batch.signal().as_str(),
                    "filtered",
                    filtered,
                );
                if payload.record_count() == 0 {
                    return Ok(Outcome::Drop { reason: "filtered" });
                }
                Outcome::Forward(Arc::new(batch.derive(payload, None)))
            }
            Verdict::Replace(bytes) => {
                if bytes.len() > self.spec.max_batch_bytes {
                    return Err((
                        "replace_too_large",
                        format!(
                            "the plugin returned a batch of {} bytes, over the limit of {}",
                            bytes.len(),
                            self.spec.max_batch_bytes
                        ),
                    ));
                }
                // Valid protobuf with valid records (the usual case) is taken as it is, without
                // decoding it; anything else is decoded, for the precise error.
                let signal = batch.signal();
                if let crate::model::scan::Scan::Valid(records) =
                    crate::model::scan::scan_derived(signal, &bytes, batch.encoded())
                {
                    return Ok(Outcome::Forward(Arc::new(
                        batch.derive_wire(bytes.into(), records),
                    )));
                }
                let payload = Payload::decode_protobuf(signal, &bytes).map_err(|e| {
                    (
                        "invalid_output",
                        format!("the plugin returned an invalid batch: {e}"),
                    )
                })?;
                Outcome::Forward(Arc::new(batch.derive(payload, Some(bytes.into()))))
            }
        })
    }

    /// Calls the plugin's `tick`, and keeps a snapshot of a stateful plugin's state.
    pub fn tick(&self, now: u64) -> Emitted {
        let mut slot = self.slot();
        let stateful = slot.stateful;
        let Some(live) = slot.instance.as_mut() else {
            return Vec::new();
        };
        let ticks = deadline_ticks(self.spec.timeout);
        live.store.set_epoch_deadline(ticks);
        live.store.data_mut().begin_call();
        let plugin = live.bindings.sluice_plugin_plugin();
        let mut result = plugin
            .call_tick(&mut live.store, now)
            .map(|r| r.map_err(|e| guest_error(&e)));
        let mut snapshot = None;
        if stateful && matches!(result, Ok(Ok(()))) {
            live.store.set_epoch_deadline(ticks);
            match plugin.call_snapshot(&mut live.store) {
                Ok(s) => snapshot = Some(s),
                Err(e) => result = Err(e),
            }
        }
        let (emitted, exceeded) = live.store.data_mut().end_call();
        if let Some(kind) = exceeded {
            self.count_error(kind, false);
            tracing::warn!(processor = %self.name, kind, "Plugin tick emitted more than its caps allow; its emits are dropped.");
        }
        if let Some(s) = snapshot.and_then(|s| self.checked_snapshot(s)) {
            slot.snapshot = s;
        }
        match result {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => {
                self.metrics
                    .plugin_errors
                    .with_label_values(&[&self.name, "plugin_error"])
                    .inc();
                tracing::warn!(processor = %self.name, error = %msg, "Plugin tick failed.");
            }
            Err(e) => {
                let kind = failure_kind(&e);
                slot.instance = None;
                self.fail(
                    &mut slot,
                    kind,
                    &format!("tick: {kind}: {}", e.root_cause()),
                );
            }
        }
        emitted
    }

    /// Reloads the plugin from its file if the file changed (`force` reloads regardless).
    /// A plugin that fails to load or init keeps the old one running. Returns whether it
    /// swapped.
    pub fn reload(&self, force: bool) -> Result<bool, PluginError> {
        let current = fingerprint(&self.spec);
        {
            let slot = self.slot();
            if !force && (current.is_none() || current == slot.fingerprint) {
                return Ok(false);
            }
        }
        // Compile outside the lock: batches keep flowing on the old instance meanwhile.
        let compiled = compile(&self.engine, &self.spec).map(|(component, _)| component);
        let mut slot = self.slot();
        let stateful = slot.stateful;
        let last = slot.snapshot.clone();
        let snapshot = match slot.instance.as_mut() {
            Some(live) if stateful => {
                live.store
                    .set_epoch_deadline(deadline_ticks(self.spec.timeout));
                live.bindings
                    .sluice_plugin_plugin()
                    .call_snapshot(&mut live.store)
                    .ok()
                    .and_then(|s| self.checked_snapshot(s))
                    .unwrap_or(last)
            }
            _ => last,
        };
        let result = compiled.and_then(|component| {
            Self::prepare(
                &self.spec,
                &self.engine,
                &self.name,
                &self.quotas,
                &component,
                snapshot,
            )
        });
        let name = &*self.name;
        match result {
            Ok((fresh, mut status)) => {
                let version = status.version.clone();
                {
                    let mut view = self.view();
                    status.reloads = view.status.reloads + 1;
                    status.history = std::mem::take(&mut view.status.history);
                    status.record(true, None);
                    view.status = status;
                    view.signals = fresh.signals.clone();
                }
                *slot = fresh;
                self.metrics
                    .plugin_reloads
                    .with_label_values(&[name, "ok"])
                    .inc();
                self.metrics
                    .plugin_breaker_open
                    .with_label_values(&[name])
                    .set(0);
                tracing::info!(processor = name, %version, "Plugin reloaded.");
                Ok(true)
            }
            Err(e) => {
                // Do not retry the same broken file every poll.
                slot.fingerprint = current;
                {
                    let mut view = self.view();
                    view.status.last_reload_error = Some(e.to_string());
                    view.status.record(false, Some(e.to_string()));
                }
                self.metrics
                    .plugin_reloads
                    .with_label_values(&[name, "failed"])
                    .inc();
                tracing::error!(processor = name, error = %e, "Plugin reload failed; the previous version keeps running.");
                Err(e)
            }
        }
    }
}

fn instantiate(
    pre: &ProcessorPre<HostState>,
    spec: &ProcessorSpec,
    name: &Arc<str>,
    quotas: &Arc<Quotas>,
) -> wasmtime::Result<Live> {
    let limits = TrackedLimits::new(spec.memory_mb << 20);
    let mut store = Store::new(
        pre.engine(),
        HostState::new(name.clone(), limits, quotas.clone()),
    );
    store.limiter(|s| &mut s.limits);
    // Instantiation and init get ten times the per-batch deadline.
    store.set_epoch_deadline(deadline_ticks(spec.timeout) * 10);
    let instance = pre.instance_pre().instantiate(&mut store)?;
    let bindings = World::new(&mut store, &instance)?;
    let process = instance
        .get_export_index(&mut store, None, PLUGIN_INTERFACE)
        .and_then(|iface| instance.get_export_index(&mut store, Some(&iface), "process"))
        .and_then(|index| instance.get_func(&mut store, index))
        .ok_or_else(|| {
            wasmtime::format_err!("the component exports no {PLUGIN_INTERFACE}#process")
        })?;
    Ok(Live {
        store,
        bindings,
        process,
    })
}

fn init(live: &mut Live, spec: &ProcessorSpec, snapshot: &[u8]) -> Result<(), String> {
    let ticks = deadline_ticks(spec.timeout) * 10;
    live.store.set_epoch_deadline(ticks);
    let plugin = live.bindings.sluice_plugin_plugin();
    let result = plugin
        .call_init(&mut live.store, &spec.config_json)
        .map_err(|e| format!("{e:#}"))
        .and_then(|r| r.map_err(|e| guest_error(&e)));
    live.store.data_mut().flush_output();
    result?;
    if !snapshot.is_empty() {
        live.store.set_epoch_deadline(ticks);
        plugin
            .call_restore(&mut live.store, snapshot)
            .map_err(|e| format!("{e:#}"))
            .and_then(|r| r.map_err(|e| guest_error(&e)))
            .map_err(|e| format!("restore: {e}"))?;
    }
    Ok(())
}

/// A call's deadline in epoch ticks.
fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Each limit against the `chaos` test plugin (`tests/plugins/chaos`, built for wasm32-wasip2
/// by `scripts/build-plugins.sh`; missing, these tests fail and say how to build it).
#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn chaos() -> std::path::PathBuf {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/wasm32-wasip2/release/sluice_plugin_chaos.wasm");
        assert!(
            path.is_file(),
            "{} is missing: build it with scripts/build-plugins.sh",
            path.display()
        );
        path
    }

    fn load(on_error: OnError, timeout_ms: u64, max_batch_bytes: usize) -> Processor {
        let spec = ProcessorSpec {
            name: "chaos".into(),
            path: chaos(),
            builtin: None,
            embedded: None,
            config_json: "{}".into(),
            display_config: serde_json::Value::Null,
            memory_mb: 64,
            timeout: Duration::from_millis(timeout_ms),
            timeout_is_default: false,
            max_batch_bytes,
            on_error,
        };
        let engine = PluginEngine::new(None).expect("engine");
        Processor::load(spec, engine, Arc::new(SelfMetrics::new())).expect("chaos loads")
    }

    fn spans(names: &[&str]) -> Arc<Batch> {
        let spans: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    r#"{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"{:016x}","name":"{n}"}}"#,
                    i + 1
                )
            })
            .collect();
        let json = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            spans.join(",")
        );
        let payload = Payload::decode_json(Signal::Traces, json.as_bytes()).expect("OTLP/JSON");
        Arc::new(Batch::new(payload, None, "test".into()))
    }

    fn errors(p: &Processor, kind: &str) -> u64 {
        p.metrics
            .plugin_errors
            .with_label_values(&["chaos", kind])
            .get()
    }

    fn forwarded(outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Forward(_))
    }

    #[test]
    fn sleeping_returns_at_once_within_the_deadline() {
        let p = load(OnError::Reject, 200, usize::MAX);
        let started = Instant::now();
        let (outcome, _) = p.process(spans(&["chaos:sleep", "a"]));
        let took = started.elapsed();
        assert!(forwarded(&outcome), "{outcome:?}");
        assert!(
            took < Duration::from_millis(200),
            "a 10 s sleep took {took:?}"
        );
        assert_eq!(
            p.metrics
                .plugin_calls
                .with_label_values(&["chaos", "ok"])
                .get(),
            1
        );
    }

    #[test]
    fn waiting_for_time_to_pass_is_a_timeout() {
        let p = load(OnError::Drop, 100, usize::MAX);
        let started = Instant::now();
        let (outcome, _) = p.process(spans(&["chaos:sleep_loop"]));
        assert!(matches!(outcome, Outcome::Drop { .. }), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(errors(&p, "timeout"), 1);
    }

    #[test]
    fn status_never_waits_for_a_call_in_progress() {
        let p = Arc::new(load(OnError::Pass, 1000, usize::MAX));
        let busy = p.clone();
        let call = std::thread::spawn(move || busy.process(spans(&["chaos:loop"])));
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        let status = p.status();
        let signals = p.signals();
        let took = started.elapsed();
        assert!(!call.is_finished(), "the call should still be running");
        assert!(took < Duration::from_millis(20), "status took {took:?}");
        assert_eq!((status.state, signals), ("ok", vec![Signal::Traces]));
        let (outcome, _) = call.join().expect("no panic");
        assert!(forwarded(&outcome));
        assert_eq!(p.status().state, "failing");
        assert_eq!(errors(&p, "timeout"), 1);
    }

    #[test]
    fn unbounded_allocation_is_a_memory_failure() {
        let p = load(OnError::Drop, 2000, usize::MAX);
        let (outcome, _) = p.process(spans(&["chaos:alloc"]));
        assert!(matches!(outcome, Outcome::Drop { .. }), "{outcome:?}");
        assert_eq!(errors(&p, "memory"), 1);
        assert!(p.peak_memory() <= 64 << 20);
        // The next batch gets a fresh instance.
        let (outcome, _) = p.process(spans(&["a"]));
        assert!(forwarded(&outcome));
    }

    #[test]
    fn an_oversized_emit_fails_the_batch_and_emits_nothing() {
        let p = load(OnError::Drop, 1000, usize::MAX);
        let (outcome, emitted) = p.process(spans(&["chaos:big_emit"]));
        assert!(matches!(outcome, Outcome::Drop { .. }), "{outcome:?}");
        assert!(emitted.is_empty());
        assert_eq!(errors(&p, "emit_too_large"), 1);
        // Not a trap: the instance lives on.
        assert_eq!(errors(&p, "trap"), 0);
        assert!(forwarded(&p.process(spans(&["a"])).0));
    }

    #[test]
    fn emitting_faster_than_the_rate_fails_the_batch() {
        let p = load(OnError::Pass, 1000, usize::MAX);
        let (outcome, emitted) = p.process(spans(&["chaos:emit_rate"]));
        assert!(forwarded(&outcome));
        assert_eq!(emitted.len(), 1);
        for _ in 0..5 {
            p.process(spans(&["chaos:emit_rate"]));
        }
        assert!(errors(&p, "emit_rate") >= 1);
    }

    #[test]
    fn an_oversized_replace_follows_on_error() {
        let p = load(OnError::Pass, 1000, 1 << 20);
        let batch = spans(&["chaos:big_replace", "b"]);
        let (outcome, _) = p.process(batch.clone());
        let Outcome::Forward(out) = outcome else {
            panic!("on_error pass forwards the batch")
        };
        assert!(Arc::ptr_eq(&out, &batch), "the batch as it came");
        assert_eq!(errors(&p, "replace_too_large"), 1);
    }

    #[test]
    fn an_oversized_snapshot_is_refused_and_the_last_one_kept() {
        let p = load(OnError::Pass, 1000, usize::MAX);
        p.process(spans(&["a", "b"]));
        p.tick(1);
        assert_eq!(p.slot().snapshot.len(), 8);
        p.process(spans(&["chaos:big_snapshot"]));
        p.tick(2);
        assert_eq!(errors(&p, "snapshot_too_large"), 1);
        assert_eq!(p.slot().snapshot.len(), 8);
    }

    #[test]
    fn a_log_flood_is_rate_limited_and_counted() {
        let p = load(OnError::Pass, 2000, usize::MAX);
        let (outcome, _) = p.process(spans(&["chaos:log_flood"]));
        assert!(forwarded(&outcome));
        let suppressed = p
            .metrics
            .plugin_log_suppressed
            .with_label_values(&["chaos"])
            .get();
        assert!(suppressed >= 9000, "{suppressed} of 10000 lines suppressed");
    }
}
