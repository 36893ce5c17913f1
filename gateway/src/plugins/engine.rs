//! The shared wasmtime engine: configuration, the epoch ticker, the linker, and compiling
//! components with an on-disk cache of precompiled artifacts; and the host side a plugin's
//! store carries: its limits, its quotas and the `sluice:plugin/host` imports.
//!
//! Nothing a plugin imports can hold the calling thread outside its epoch deadline. Every WASI
//! interface is linked (components built from other languages import clocks and `poll` even
//! when they never use them), but the sandbox gives them nothing to wait for: no files, no
//! sockets, no environment, an empty stdin, and clocks that stand still. Sleeping is the one
//! way left to block, so the monotonic clock's `subscribe-duration` and `subscribe-instant`
//! hand out pollables that are ready at once: a guest `sleep` (Rust's `std::thread::sleep`,
//! C's `nanosleep`) returns immediately and the call goes on, under its deadline. A plugin
//! that waits for time to pass in a loop never sees it pass, and its deadline stops it
//! (counted as a `timeout`).
//!
//! The resource caps a store enforces, all of them whatever the plugin does:
//! - memory: every linear memory and every table of the store together, against one budget
//!   (`limits.memory_mb`); a table element counts [`TABLE_ELEMENT_BYTES`]. Growing past it
//!   traps (kind `memory`, or `table` when a table asked).
//! - `emit`: at most [`EMIT_MESSAGES_PER_CALL`] messages and [`EMIT_BYTES_PER_CALL`] bytes per
//!   call, and [`EMIT_BYTES_PER_SECOND`] bytes per second per processor. A call that breaks
//!   one loses everything it emitted and fails (kinds `emit_too_large`, `emit_rate`).
//! - log lines (`host::log`, and what the guest writes to stdout or stderr): a token bucket of
//!   [`LOG_LINES_PER_SECOND`] lines per second per processor, bursts of [`LOG_BURST`]; lines
//!   over it are dropped and counted (`sluice_plugin_log_lines_suppressed_total`), and one line
//!   says how many went when logging resumes. Each line is cut to [`LOG_LINE_CHARS`]
//!   characters, its control characters (newlines too) escaped, and it travels in the `text`
//!   field of a record of its own: a plugin cannot write what looks like a gateway line.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasData, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::Processor as World;
use super::bindings::sluice::plugin::host::{self, Level};
use super::bindings::sluice::plugin::types::{self, Signal};

/// How often the epoch advances; per-call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// What one table element costs against the memory budget (a pointer).
pub const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();
/// Messages one call may `emit`.
pub const EMIT_MESSAGES_PER_CALL: usize = 256;
/// Bytes one call may `emit`, all messages together.
pub const EMIT_BYTES_PER_CALL: usize = 4 << 20;
/// Bytes a processor may `emit` per second (also the burst).
pub const EMIT_BYTES_PER_SECOND: usize = 8 << 20;
/// Log lines a processor may write per second, and in a burst.
pub const LOG_LINES_PER_SECOND: f64 = 50.0;
pub const LOG_BURST: f64 = 100.0;
/// Characters kept of one plugin log line.
pub const LOG_LINE_CHARS: usize = 1024;
/// Guest stdout/stderr kept per call; the rest of a call's output is dropped.
const OUTPUT_CAP: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read plugin {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {path} is not a valid sluice:plugin component: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("plugin {name}: init failed: {message}")]
    Init { name: String, message: String },
}

/// A growth the store's budget refused; it traps the call.
#[derive(Debug, thiserror::Error)]
#[error(
    "{resource} growth refused: the store would use {wanted} bytes of its {budget}-byte budget"
)]
pub struct LimitExceeded {
    /// `memory` or `table`, the `kind` the failure is counted as.
    pub resource: &'static str,
    pub wanted: usize,
    pub budget: usize,
}

/// A refill-over-time allowance.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            rate,
            burst,
            last: Instant::now(),
        }
    }

    /// Takes `n` tokens if there are that many.
    fn take(&mut self, n: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// A processor's rate limits, shared by its successive instances (a plugin that traps gets a
/// new instance, not a new allowance).
#[derive(Debug)]
pub struct Quotas {
    state: Mutex<QuotaState>,
    suppressed: IntCounter,
}

#[derive(Debug)]
struct QuotaState {
    log: TokenBucket,
    emit: TokenBucket,
    /// Lines dropped since the last line that got through.
    unreported: u64,
}

/// Whether a log line may be written, and how many went unwritten before it.
enum LogPermit {
    Write { suppressed_before: u64 },
    Suppressed,
}

impl Quotas {
    pub fn new(suppressed: IntCounter) -> Quotas {
        Quotas {
            state: Mutex::new(QuotaState {
                log: TokenBucket::new(LOG_LINES_PER_SECOND, LOG_BURST),
                emit: TokenBucket::new(EMIT_BYTES_PER_SECOND as f64, EMIT_BYTES_PER_SECOND as f64),
                unreported: 0,
            }),
            suppressed,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QuotaState> {
        // The state is two numbers per bucket, consistent after any panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log_line(&self) -> LogPermit {
        let mut s = self.state();
        if s.log.take(1.0, Instant::now()) {
            LogPermit::Write {
                suppressed_before: std::mem::take(&mut s.unreported),
            }
        } else {
            s.unreported += 1;
            self.suppressed.inc();
            LogPermit::Suppressed
        }
    }

    fn emit_bytes(&self, n: usize) -> bool {
        self.state().emit.take(n as f64, Instant::now())
    }
}

/// One line of plugin text made safe for the gateway log: at most [`LOG_LINE_CHARS`]
/// characters, control characters escaped, so it stays one record however it is rendered.
pub fn sanitize_log_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(LOG_LINE_CHARS) + 8);
    for (n, c) in text.chars().enumerate() {
        if n == LOG_LINE_CHARS {
            out.push_str("...");
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                out.extend(c.escape_unicode())
            }
            c => out.push(c),
        }
    }
    out
}

/// The state a plugin's store carries.
pub struct HostState {
    pub plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: TrackedLimits,
    /// Guest stdout and stderr, capped; read after each call.
    output: GuestOutput,
    /// Telemetry the plugin emitted during the current call.
    pub emitted: Vec<(crate::model::Signal, Vec<u8>)>,
    emitted_bytes: usize,
    /// The first cap the current call broke: the `kind` its failure is counted as.
    pub exceeded: Option<&'static str>,
    quotas: Arc<Quotas>,
}

/// The WASI clocks a plugin gets: always zero. Time comes from `host::now`, so that tests
/// (`sluice plugin test`, the SDK's mock host) and the gateway agree on what a plugin can see.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// `wasi:clocks/monotonic-clock` as plugins see it: frozen at zero, and every wait over before
/// it starts (see the module doc). Linked over the one `wasmtime_wasi` provides, whose
/// pollables sleep the calling thread where no epoch deadline can stop it.
struct StillTime<'a> {
    table: &'a mut ResourceTable,
}

impl HasData for StillTime<'static> {
    type Data<'a> = StillTime<'a>;
}

/// A pollable that is always ready.
struct Elapsed;

#[wasmtime_wasi::async_trait]
impl Pollable for Elapsed {
    async fn ready(&mut self) {}
}

/// Guest stdout and stderr: what the current call printed, up to [`OUTPUT_CAP`] bytes. Output
/// over the cap is dropped, never refused (a refused write makes the guest's `print` trap).
#[derive(Clone, Default)]
struct GuestOutput(Arc<Mutex<Vec<u8>>>);

impl GuestOutput {
    fn buffer(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // Bytes only: consistent after any panic.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, bytes: &[u8]) {
        let mut buffer = self.buffer();
        let room = OUTPUT_CAP.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buffer())
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl StillTime<'_> {
    fn elapsed(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        let done = self.table.push(Elapsed)?;
        wasmtime_wasi::p2::subscribe(self.table, done)
    }
}

impl monotonic_clock::Host for StillTime<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(0)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1_000_000_000)
    }

    fn subscribe_instant(
        &mut self,
        _when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.elapsed()
    }

    fn subscribe_duration(
        &mut self,
        _duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.elapsed()
    }
}

impl HostState {
    pub fn new(plugin: Arc<str>, limits: TrackedLimits, quotas: Arc<Quotas>) -> HostState {
        let output = GuestOutput::default();
        // No preopened directories, no network, no environment, no arguments, and clocks that
        // stand still: the only time a plugin sees is the host's `now`.
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .build();
        HostState {
            plugin,
            wasi,
            table: ResourceTable::new(),
            limits,
            output,
            emitted: Vec::new(),
            emitted_bytes: 0,
            exceeded: None,
            quotas,
        }
    }

    /// Starts a call: nothing emitted, no cap broken.
    pub fn begin_call(&mut self) {
        self.emitted.clear();
        self.emitted_bytes = 0;
        self.exceeded = None;
    }

    /// Ends a call: logs what the guest printed, and hands over what it emitted (nothing when
    /// it broke a cap) with the cap it broke.
    pub fn end_call(&mut self) -> (Vec<(crate::model::Signal, Vec<u8>)>, Option<&'static str>) {
        self.flush_output();
        self.emitted_bytes = 0;
        let exceeded = self.exceeded.take();
        let emitted = std::mem::take(&mut self.emitted);
        if exceeded.is_some() {
            return (Vec::new(), exceeded);
        }
        (emitted, None)
    }

    /// Logs what the guest printed since the last call.
    pub fn flush_output(&mut self) {
        let printed = self.output.take();
        if !printed.is_empty() {
            let text = String::from_utf8_lossy(&printed);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                self.write_log(Level::Info, line);
            }
        }
    }

    fn write_log(&self, level: Level, line: &str) {
        let suppressed = match self.quotas.log_line() {
            LogPermit::Suppressed => return,
            LogPermit::Write { suppressed_before } => suppressed_before,
        };
        let plugin = &*self.plugin;
        if suppressed > 0 {
            tracing::warn!(
                plugin,
                suppressed,
                "Plugin log lines were dropped: over its rate limit."
            );
        }
        let text = sanitize_log_line(line);
        match level {
            Level::Debug => tracing::debug!(plugin, %text, "Plugin log line."),
            Level::Info => tracing::info!(plugin, %text, "Plugin log line."),
            Level::Warn => tracing::warn!(plugin, %text, "Plugin log line."),
            Level::Error => tracing::error!(plugin, %text, "Plugin log line."),
        }
    }
}

/// The store's limits: all its memories and tables against one budget, remembering the most
/// the plugin used.
pub struct TrackedLimits {
    budget: usize,
    /// Bytes of every memory and table created or grown so far (they never shrink).
    used: usize,
    pub peak_memory: usize,
}

/// Instances, tables and memories one store may create (a component made of many modules).
const MAX_INSTANCES: usize = 32;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 8;

impl TrackedLimits {
    pub fn new(budget: usize) -> TrackedLimits {
        TrackedLimits {
            budget,
            used: 0,
            peak_memory: 0,
        }
    }

    fn grow(
        &mut self,
        resource: &'static str,
        more: usize,
        over_maximum: bool,
    ) -> wasmtime::Result<bool> {
        if over_maximum {
            // The module's own maximum: an ordinary failed grow, as the spec says.
            return Ok(false);
        }
        let wanted = self.used.saturating_add(more);
        if wanted > self.budget {
            return Err(LimitExceeded {
                resource,
                wanted,
                budget: self.budget,
            }
            .into());
        }
        self.used = wanted;
        self.peak_memory = self.peak_memory.max(wanted);
        Ok(true)
    }
}

impl ResourceLimiter for TrackedLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let over = maximum.is_some_and(|m| desired > m);
        self.grow("memory", desired.saturating_sub(current), over)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let over = maximum.is_some_and(|m| desired > m);
        let more = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow("table", more, over)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: Level, msg: String) {
        self.write_log(level, &msg);
    }

    fn now(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }

    fn emit(&mut self, signal: Signal, data: Vec<u8>) {
        if self.exceeded.is_some() {
            return;
        }
        let signal = match signal {
            Signal::Traces => crate::model::Signal::Traces,
            Signal::Metrics => crate::model::Signal::Metrics,
            Signal::Logs => crate::model::Signal::Logs,
        };
        let bytes = self.emitted_bytes.saturating_add(data.len());
        let broke = if self.emitted.len() >= EMIT_MESSAGES_PER_CALL || bytes > EMIT_BYTES_PER_CALL {
            Some("emit_too_large")
        } else if !self.quotas.emit_bytes(data.len()) {
            Some("emit_rate")
        } else {
            None
        };
        if broke.is_some() {
            self.exceeded = broke;
            self.emitted = Vec::new();
            return;
        }
        self.emitted_bytes = bytes;
        self.emitted.push((signal, data));
    }
}
/// The engine every plugin runs on, with its epoch ticker.
pub struct PluginEngine {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl PluginEngine {
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<Arc<PluginEngine>> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // `SLUICE_WASM_PERFMAP=1` writes /tmp/perf-<pid>.map so `perf report` can name the
        // functions of plugins' compiled code.
        if std::env::var_os("SLUICE_WASM_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // Over the stock monotonic clock, whose pollables sleep (see the module doc).
        linker.allow_shadowing(true);
        monotonic_clock::add_to_linker::<HostState, StillTime<'static>>(&mut linker, |s| {
            StillTime {
                table: &mut s.table,
            }
        })?;
        linker.allow_shadowing(false);
        World::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = engine.weak();
        let stop_ticker = stop.clone();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !stop_ticker.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(wasmtime::Error::from)?;
        Ok(Arc::new(PluginEngine {
            engine,
            linker,
            cache_dir,
            stop,
        }))
    }

    /// Compiles a component, or loads its precompiled artifact from the cache.
    pub fn compile(&self, path: &Path) -> Result<Component, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.compile_bytes(path, &bytes)
    }

    pub fn compile_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Component, PluginError> {
        let invalid = |e: wasmtime::Error| PluginError::Invalid {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes).map_err(invalid);
        };
        let mut hasher = Sha256::new();
        hasher.update(bytes);
        let mut compat = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut compat);
        let key = format!(
            "{:x}-{:016x}.cwasm",
            hasher.finalize(),
            std::hash::Hasher::finish(&compat)
        );
        let cached = dir.join(key);
        if cached.exists() {
            match load_precompiled(&self.engine, &cached) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %cached.display(), error = %e, "Ignoring an unusable cached plugin artifact.")
                }
            }
        }
        if COMPILE_IN_CHILD.load(Ordering::Relaxed)
            && bytes.len() >= CHILD_COMPILE_MIN_BYTES
            && path.is_file()
        {
            let started = Instant::now();
            match compile_in_child(path, dir).and_then(|()| {
                load_precompiled(&self.engine, &cached).map_err(|e| format!("{e:#}"))
            }) {
                Ok(c) => {
                    tracing::info!(path = %path.display(), seconds = started.elapsed().as_secs_f64(), "Plugin compiled in a child process.");
                    return Ok(c);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "Compiling the plugin in a child process failed; compiling it here.")
                }
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(invalid)?;
        match component.serialize() {
            Ok(artifact) => {
                let tmp = cached.with_extension("tmp");
                let written = std::fs::create_dir_all(dir)
                    .and_then(|_| std::fs::write(&tmp, artifact))
                    .and_then(|_| std::fs::rename(&tmp, &cached));
                if let Err(e) = written {
                    tracing::debug!(dir = %dir.display(), error = %e, "Cannot cache a compiled plugin.");
                }
            }
            Err(e) => tracing::debug!(error = %e, "Cannot serialize a compiled plugin."),
        }
        Ok(component)
    }
}

/// Components at least this large (an interpreter inside: Python, JavaScript) are compiled in
/// a child process when the cache is on and [`compile_large_components_in_a_child`] was
/// called: compiling an 18 MB Python component took a release gateway from 82 MiB to 549 MiB
/// resident, and the allocator kept that memory after the compiler freed it.
pub const CHILD_COMPILE_MIN_BYTES: usize = 4 << 20;

static COMPILE_IN_CHILD: AtomicBool = AtomicBool::new(false);

/// From now on, large components missing from the cache are compiled by a child `sluice
/// plugin precompile` (this executable), whose memory goes back to the system when it exits;
/// this process then loads the artifact from the cache. For the `sluice` binary only: other
/// executables that link the library have no such subcommand.
pub fn compile_large_components_in_a_child() {
    COMPILE_IN_CHILD.store(true, Ordering::Relaxed);
}

/// Runs `sluice plugin precompile --cache-dir DIR PATH` and waits for it.
fn compile_in_child(path: &Path, dir: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let out = std::process::Command::new(exe)
        .args(["plugin", "precompile", "--cache-dir"])
        .arg(dir)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot start it: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Loads an artifact this process's engine wrote into the cache. Artifacts are named by the
/// hash of their source and of the engine's compatibility hash, written atomically (rename),
/// and wasmtime checks the engine configuration again when loading them.
#[allow(
    unsafe_code,
    reason = "wasmtime marks deserializing precompiled code unsafe; the cache only holds artifacts this engine produced"
)]
fn load_precompiled(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: see above: the file was produced by `Component::serialize` on a compatible engine
    // and is only ever replaced atomically.
    unsafe { Component::deserialize_file(engine, path) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use host::Host as _;

    fn quotas() -> Arc<Quotas> {
        Arc::new(Quotas::new(
            IntCounter::new("suppressed", "test").expect("valid counter"),
        ))
    }

    fn limit_of(e: wasmtime::Error) -> &'static str {
        e.downcast_ref::<LimitExceeded>()
            .expect("a LimitExceeded")
            .resource
    }

    #[test]
    fn memories_and_tables_share_one_budget() {
        let mut l = TrackedLimits::new(1 << 20);
        // Two memories of half the budget each fit; a third page of either does not.
        assert!(l.memory_growing(0, 512 << 10, None).expect("fits"));
        assert!(l.memory_growing(0, 448 << 10, None).expect("fits"));
        assert_eq!(
            limit_of(
                l.memory_growing(0, 128 << 10, None)
                    .expect_err("over the budget")
            ),
            "memory"
        );
        // The 64 KiB left go to a table of 8 Ki elements, and nothing more.
        assert!(
            l.table_growing(0, (64 << 10) / TABLE_ELEMENT_BYTES, None)
                .expect("fits")
        );
        assert_eq!(
            limit_of(l.table_growing(10, 11, None).expect_err("over the budget")),
            "table"
        );
        assert_eq!(l.peak_memory, 1 << 20);
    }

    #[test]
    fn one_huge_table_is_refused() {
        let mut l = TrackedLimits::new(64 << 20);
        assert_eq!(
            limit_of(
                l.table_growing(0, 100_000_000, None)
                    .expect_err("over the budget")
            ),
            "table"
        );
        // A grow past the module's own maximum is an ordinary failure, not a trap.
        assert!(
            !l.memory_growing(0, 2 << 16, Some(1 << 16))
                .expect("no trap")
        );
    }

    #[test]
    fn log_lines_are_one_escaped_capped_record() {
        assert_eq!(
            sanitize_log_line("a\nlevel=ERROR b\r\t\u{1b}[31m\\"),
            "a\\nlevel=ERROR b\\r\\t\\u{1b}[31m\\\\"
        );
        let long = sanitize_log_line(&"é".repeat(5000));
        assert_eq!(long.chars().count(), LOG_LINE_CHARS + 3);
        assert!(!sanitize_log_line("x\u{2028}y\u{85}").contains(['\u{2028}', '\u{85}']));
    }

    #[test]
    fn token_bucket_refills_with_time() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10.0, 2.0);
        b.last = start;
        b.tokens = 2.0;
        assert!(b.take(1.0, start) && b.take(1.0, start));
        assert!(!b.take(1.0, start));
        assert!(b.take(1.0, start + Duration::from_millis(100)));
        // Never more than the burst, however long it waited.
        assert!(b.take(2.0, start + Duration::from_secs(60)));
        assert!(!b.take(1.0, start + Duration::from_secs(60)));
    }

    #[test]
    fn log_flood_is_cut_to_the_burst_and_counted() {
        let q = quotas();
        let state = HostState::new("t".into(), TrackedLimits::new(1 << 20), q.clone());
        for i in 0..1000 {
            state.write_log(Level::Info, &format!("line {i}"));
        }
        let suppressed = q.suppressed.get();
        assert!(
            (850..=900).contains(&suppressed),
            "{suppressed} of 1000 lines suppressed"
        );
    }

    #[test]
    fn guest_output_is_capped_per_call_and_never_refused() {
        let mut out = GuestOutput::default();
        for _ in 0..3 {
            assert_eq!(out.check_write().ok(), Some(64 << 10));
            out.write(bytes::Bytes::from(vec![b'x'; OUTPUT_CAP / 2 + 1]))
                .expect("never refused");
        }
        assert_eq!(out.take().len(), OUTPUT_CAP);
        out.write(bytes::Bytes::from_static(b"next call\n"))
            .expect("never refused");
        assert_eq!(out.take(), b"next call\n");
    }

    #[test]
    fn emit_caps_per_call_and_per_second() {
        let q = quotas();
        let mut state = HostState::new("t".into(), TrackedLimits::new(1 << 20), q.clone());
        state.begin_call();
        state.emit(Signal::Metrics, vec![0; 100]);
        let (emitted, exceeded) = state.end_call();
        assert_eq!((emitted.len(), exceeded), (1, None));

        state.begin_call();
        state.emit(Signal::Metrics, vec![0; 10]);
        state.emit(Signal::Metrics, vec![0; EMIT_BYTES_PER_CALL]);
        state.emit(Signal::Metrics, vec![0; 10]);
        let (emitted, exceeded) = state.end_call();
        assert_eq!((emitted.len(), exceeded), (0, Some("emit_too_large")));

        state.begin_call();
        for _ in 0..=EMIT_MESSAGES_PER_CALL {
            state.emit(Signal::Logs, Vec::new());
        }
        assert_eq!(state.end_call().1, Some("emit_too_large"));

        // Per second: two calls of 3 MiB fit the 8 MiB allowance, the third does not.
        let mut broke = None;
        for _ in 0..3 {
            state.begin_call();
            state.emit(Signal::Traces, vec![0; 3 << 20]);
            broke = broke.or(state.end_call().1);
        }
        assert_eq!(broke, Some("emit_rate"));
    }
}
