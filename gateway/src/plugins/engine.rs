//! The shared wasmtime engine: configuration, the epoch ticker, the linker, and compiling
//! components with an on-disk cache of precompiled artifacts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, StoreLimits};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::Processor as World;
use super::bindings::sluice::plugin::host::{self, Level};
use super::bindings::sluice::plugin::types::{self, Signal};

/// How often the epoch advances; per-call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

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

/// The state a plugin's store carries.
pub struct HostState {
    pub plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: TrackedLimits,
    /// Guest stdout and stderr, capped; read after each call.
    pub output: MemoryOutputPipe,
    pub output_read: usize,
    /// Telemetry the plugin emitted during the current call.
    pub emitted: Vec<(crate::pipeline::Signal, Vec<u8>)>,
    /// Log lines left for this call (a chatty plugin cannot flood the gateway log).
    pub log_budget: usize,
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

/// Guest stdout/stderr kept per instance.
const OUTPUT_CAP: usize = 1 << 20;
/// Log lines a plugin may write per call.
pub const LOG_LINES_PER_CALL: usize = 100;

impl HostState {
    pub fn new(plugin: Arc<str>, limits: StoreLimits) -> HostState {
        let output = MemoryOutputPipe::new(OUTPUT_CAP);
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
            limits: TrackedLimits {
                inner: limits,
                peak_memory: 0,
            },
            output,
            output_read: 0,
            emitted: Vec::new(),
            log_budget: LOG_LINES_PER_CALL,
        }
    }

    /// Logs what the guest printed since the last call.
    pub fn flush_output(&mut self) {
        let all = self.output.contents();
        if all.len() > self.output_read {
            let text = String::from_utf8_lossy(&all[self.output_read..]);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!(plugin = %self.plugin, "Plugin output: {line}");
            }
            self.output_read = all.len();
        }
    }
}

/// The store's limits, remembering the largest linear memory the plugin asked for.
pub struct TrackedLimits {
    inner: StoreLimits,
    pub peak_memory: usize,
}

impl ResourceLimiter for TrackedLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
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
        if self.log_budget == 0 {
            return;
        }
        self.log_budget -= 1;
        let msg: String = msg.chars().take(2000).collect();
        match level {
            Level::Debug => tracing::debug!(plugin = %self.plugin, "{msg}"),
            Level::Info => tracing::info!(plugin = %self.plugin, "{msg}"),
            Level::Warn => tracing::warn!(plugin = %self.plugin, "{msg}"),
            Level::Error => tracing::error!(plugin = %self.plugin, "{msg}"),
        }
    }

    fn now(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }

    fn emit(&mut self, signal: Signal, data: Vec<u8>) {
        let signal = match signal {
            Signal::Traces => crate::pipeline::Signal::Traces,
            Signal::Metrics => crate::pipeline::Signal::Metrics,
            Signal::Logs => crate::pipeline::Signal::Logs,
        };
        // Bounded: a plugin cannot queue unbounded derived telemetry in one call.
        if self.emitted.len() < 64 {
            self.emitted.push((signal, data));
        }
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
