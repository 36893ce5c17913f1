//! OTLP/gRPC: the `Export` method of the trace, metrics and logs services.
//!
//! Served by the same HTTP/2 server as everything else, with a byte-carrying codec so that the
//! request's protobuf is decoded once here and forwarded unchanged when nothing alters it.
//! gzip and zstd are accepted; the size limit applies after decompression. tonic reports an
//! oversized message as `OUT_OF_RANGE` and a corrupt compressed one as `INTERNAL`; clients
//! should see `RESOURCE_EXHAUSTED` and `INVALID_ARGUMENT`, so those are rewritten here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Status};

use super::super::Tenant;
use super::super::{ExportResponse, Intake, ReceiverError, Transport};
use crate::grpc_codec::WireCodec;
use crate::model::Signal;
use crate::telemetry::CorrelationId;

pub struct GrpcReceiver {
    pub intake: Intake,
    pub max_message: usize,
    pub read_timeout: Duration,
}

pub fn router(receiver: GrpcReceiver) -> Router {
    let metrics = receiver.intake.self_metrics.clone();
    let state = Arc::new(receiver);
    let route = |signal: Signal| {
        post(
            move |State(st): State<Arc<GrpcReceiver>>, req: Request| async move {
                export(st, signal, req).await
            },
        )
    };
    let router = Router::new()
        .route(Signal::Traces.grpc_path(), route(Signal::Traces))
        .route(Signal::Metrics.grpc_path(), route(Signal::Metrics))
        .route(Signal::Logs.grpc_path(), route(Signal::Logs))
        .with_state(state);
    crate::catch_panic::layer(router, "receiver", metrics)
}

async fn export(st: Arc<GrpcReceiver>, signal: Signal, req: Request) -> Response {
    let started = Instant::now();
    let correlation: Arc<str> = req
        .extensions()
        .get::<CorrelationId>()
        .map(|c| c.0.clone())
        .unwrap_or_else(|| "-".into());
    let mut grpc = tonic::server::Grpc::new(WireCodec::<Bytes>::default())
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(st.max_message);
    let tenant = Tenant::of(&req);
    let reached_handler = Arc::new(AtomicBool::new(false));
    let service = {
        let st = st.clone();
        let reached = reached_handler.clone();
        tower::service_fn(move |request: tonic::Request<Bytes>| {
            reached.store(true, Ordering::Relaxed);
            let st = st.clone();
            let correlation = correlation.clone();
            let tenant = tenant.clone();
            async move { handle(&st, signal, request.into_inner(), correlation, tenant).await }
        })
    };
    let mut response = match tokio::time::timeout(st.read_timeout, grpc.unary(service, req)).await {
        Ok(r) => r,
        Err(_) => {
            let e = ReceiverError::ReadTimeout(st.read_timeout);
            count_bad(&st, &e);
            Status::new(e.grpc_code(), e.to_string()).into_http()
        }
    };
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
        .unwrap_or(Code::Ok);
    let code = if reached_handler.load(Ordering::Relaxed) {
        code
    } else {
        // Refused by tonic before our handler ran: the frame was too big, compressed with an
        // unknown encoding, or not decompressible.
        let (rewritten, reason) = match code {
            Code::OutOfRange | Code::ResourceExhausted => (Code::ResourceExhausted, "too_large"),
            Code::Internal => (Code::InvalidArgument, "corrupt_encoding"),
            Code::Unimplemented => (Code::Unimplemented, "unsupported_encoding"),
            other => (other, "body_read"),
        };
        if code != Code::Ok && code != Code::DeadlineExceeded {
            st.intake
                .self_metrics
                .receiver_bad_requests
                .with_label_values(&[&st.intake.receiver, "grpc", reason])
                .inc();
        }
        if rewritten != code {
            response
                .headers_mut()
                .insert("grpc-status", http::HeaderValue::from(rewritten as i32));
        }
        rewritten
    };
    st.intake
        .count_request(Transport::Grpc, signal, &format!("{code:?}"), started);
    response.map(axum::body::Body::new)
}

fn count_bad(st: &GrpcReceiver, e: &ReceiverError) {
    st.intake.count_bad_request(Transport::Grpc, e);
}

async fn handle(
    st: &GrpcReceiver,
    signal: Signal,
    bytes: Bytes,
    correlation: Arc<str>,
    tenant: Option<Arc<str>>,
) -> Result<tonic::Response<Bytes>, Status> {
    let result = st
        .intake
        .accept_protobuf(Transport::Grpc, signal, bytes, correlation, tenant)
        .await;
    match result {
        Ok(rejected) => Ok(tonic::Response::new(
            ExportResponse::new(signal, &rejected).to_protobuf().into(),
        )),
        Err(e) => {
            count_bad(st, &e);
            Err(Status::new(e.grpc_code(), e.to_string()))
        }
    }
}
