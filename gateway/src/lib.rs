//! Sluice: a telemetry gateway. OTLP (gRPC and HTTP) in, a bounded pipeline per signal, OTLP and
//! debug exporters out, with the gateway's own health and metrics on the admin endpoint.
//!
//! Data enters at [`receivers`], becomes a [`pipeline::Batch`], passes its [`pipeline`], and leaves
//! through [`exporters`]. [`config`] turns the YAML file into a validated topology, and
//! [`gateway::run`] assembles and runs it.

pub use sluice_core::{model, naming, prompb};

pub mod admin;
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
