//! The data model every stage shares: a [`Signal`], a [`Batch`] of one signal's OTLP
//! [`Payload`], and the decoders that face untrusted bytes.
//!
//! Bytes enter through [`scan`] (a wire walk that validates OTLP protobuf and counts its
//! records without decoding it), [`cost`] (what decoding a request would take in memory, before
//! anything is decoded) and [`Payload::decode_protobuf`] / [`Payload::decode_json`]; attribute
//! limits ([`limits`]) apply to a decoded payload. Nothing here imports another module of the
//! gateway: receivers, plugins, exporters and the pipeline all build on it.

mod batch;
pub mod cost;
pub mod limits;
pub mod scan;

pub use batch::{Batch, DecodeError, Payload, Rejected, Signal, request_name};

/// A string attribute.
pub fn string_kv(key: &str, value: &str) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}
