//! A tonic codec that carries OTLP protobuf as bytes instead of decoded messages.
//!
//! The gRPC receiver takes the request's bytes as they came off the wire (so the passthrough path
//! can forward them unchanged) and decodes them itself; the OTLP exporter sends a batch's bytes
//! without re-encoding and decodes the backend's small `Export*ServiceResponse` with prost.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// What the decoding side of [`WireCodec`] produces.
pub trait FromWire: Sized + Send + 'static {
    fn from_wire(buf: &mut DecodeBuf<'_>) -> Result<Self, Status>;
}

impl FromWire for Bytes {
    fn from_wire(buf: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        Ok(buf.copy_to_bytes(buf.remaining()))
    }
}

/// Decodes any prost message (used for the small OTLP responses).
#[derive(Debug)]
pub struct Prost<M>(pub M);

impl<M: prost::Message + Default + Send + 'static> FromWire for Prost<M> {
    fn from_wire(buf: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        M::decode(buf)
            .map(Prost)
            .map_err(|e| Status::internal(format!("invalid response message: {e}")))
    }
}

/// Encodes `Bytes` as they are; decodes into `D`.
#[derive(Debug)]
pub struct WireCodec<D>(PhantomData<fn() -> D>);

impl<D> Default for WireCodec<D> {
    fn default() -> Self {
        WireCodec(PhantomData)
    }
}

impl<D: FromWire> Codec for WireCodec<D> {
    type Encode = Bytes;
    type Decode = D;
    type Encoder = BytesEncoder;
    type Decoder = WireDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder(PhantomData)
    }
}

#[derive(Debug)]
pub struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

#[derive(Debug)]
pub struct WireDecoder<D>(PhantomData<fn() -> D>);

impl<D: FromWire> Decoder for WireDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::from_wire(src).map(Some)
    }
}
