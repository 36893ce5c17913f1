//! The WebAssembly plugin host: loading, limits, calls, recovery and reload.
//!
//! A plugin is a component of the `sluice:plugin/processor` world (`sdk/wit/plugin.wit`),
//! compiled once per file (precompiled artifacts are cached by file hash and engine
//! compatibility hash) into an `InstancePre`. Each processor owns one long-lived instance in its
//! own `Store`, with an empty WASI context (no filesystem, network or environment, clocks that
//! stand still and sleeps that end at once, so nothing it imports can block; guest stdout and
//! stderr go to the gateway log, rate-limited and escaped), one memory budget for all its
//! memories and tables, byte caps on what it emits, returns and snapshots, and an epoch
//! deadline per call. The limits and their defaults are listed in `engine`'s and
//! `processor`'s module docs.
//!
//! A trap, a timeout or a memory overrun poisons the instance: it is dropped and the next call
//! gets a fresh one, `init`ed and `restore`d from the last snapshot. The failed batch follows
//! the processor's `on_error` policy. Repeated failures open a breaker that applies the policy
//! without calling the plugin for a while. Every outcome is counted.

mod engine;
pub mod language;
mod processor;
pub mod project;
pub mod tool;

pub use engine::{
    CHILD_COMPILE_MIN_BYTES, PluginEngine, PluginError, compile_large_components_in_a_child,
};
pub use processor::{Emitted, Outcome, Processor, ProcessorStatus};

/// Host bindings generated from the WIT world, the single source of truth.
mod bindings {
    wasmtime::component::bindgen!({
        world: "processor",
        path: "../sdk/wit",
    });
}
