//! The bottom of Sluice: the data model and the decoders that face untrusted bytes, which every
//! component of the gateway builds on and which import none of them.
//!
//! - [`model`]: [`model::Signal`], [`model::Batch`], [`model::Payload`]; the wire scan, the
//!   decode-cost walk and attribute limits.
//! - [`prompb`]: Prometheus remote-write types, snappy, and their translation to OTLP.
//! - [`naming`]: OTLP to Prometheus metric and label names.
//! - [`config`]: the config file's schema and its validation, every problem at once (no I/O:
//!   the files a config names are read by the gateway's load step).
//!
//! A crate of its own so that a component importing upward is a compile error, and so that the
//! fuzz targets build these decoders without the gateway's runtime (wasmtime, tonic, hyper).

pub mod config;
pub mod model;
pub mod naming;
pub mod prompb;
pub mod scrape;
