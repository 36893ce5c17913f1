//! Sluice: a telemetry gateway. OTLP (gRPC and HTTP) and Prometheus remote write in, a bounded
//! pipeline per signal running sandboxed WebAssembly plugins, OTLP, Prometheus (scrape and
//! remote write), debug and in-memory exporters out, with the gateway's own health, metrics,
//! UI and Jaeger query API on the admin endpoint.
//!
//! Data enters at [`receivers`], becomes a [`model::Batch`], passes its [`pipeline`] (whose
//! processors are [`plugins`]), and leaves through [`exporters`]. [`config`] loads the YAML file
//! into a validated topology, and [`gateway::run`] assembles and runs it.
//!
//! The modules form layers, and imports only point down (`tests/layers.rs` checks it; see
//! `docs/architecture.md`):
//!
//! 1. [`gateway`]: assembly, start and shutdown.
//! 2. [`server`] and [`admin`]: the listeners' server loop; the admin endpoint.
//! 3. [`pipeline`]: queues, the processor chain, fan-out to exporters.
//! 4. Components: [`receivers`], [`plugins`], [`exporters`], [`store`], [`limiter`], [`slo`].
//! 5. [`config`]'s load step (the files a config names).
//! 6. Leaves: [`telemetry`], [`tls`], [`inlet`], [`rt`], [`catch_panic`], [`grpc_codec`],
//!    [`build_info`]; and from the `sluice-core` crate [`model`], [`prompb`], [`naming`] and
//!    the config schema.

pub use sluice_core::{model, naming, prompb, scrape};

pub mod admin;
pub mod budget;
pub mod build_info;
pub mod catch_panic;
pub mod config;
pub mod exporters;
pub mod gateway;
pub mod grpc_codec;
pub mod inlet;
pub mod limiter;
pub mod pipeline;
pub mod plugins;
pub mod receivers;
pub mod rt;
pub mod server;
pub mod slo;
pub mod store;
pub mod telemetry;
pub mod tls;
