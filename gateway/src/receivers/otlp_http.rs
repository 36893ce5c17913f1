//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with protobuf or JSON bodies,
//! optionally gzip or zstd encoded.
//!
//! Responses follow the OTLP/HTTP specification: the `Export*ServiceResponse` (with
//! `partial_success` when records were removed) in the request's format on success, and a
//! `google.rpc.Status` with a message a person can act on otherwise; 429 and 503 carry
//! `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::BodyExt;
use prost::Message;

use super::Tenant;
use super::body::{Encoding, Format, decode_body};
use super::error::RETRY_AFTER;
use super::{ExportResponse, Intake, ReceiverError, Transport, offload};
use crate::model::{Payload, Rejected, Signal};
use crate::telemetry::CorrelationId;

pub struct HttpReceiver {
    pub intake: Intake,
    pub max_body: usize,
    pub read_timeout: Duration,
}

/// The router for one OTLP/HTTP listener. Extra routes (remote_write) may be merged in.
pub fn router(receiver: HttpReceiver) -> Router {
    let metrics = receiver.intake.self_metrics.clone();
    let state = Arc::new(receiver);
    let route = |signal: Signal| {
        post(
            move |State(st): State<Arc<HttpReceiver>>, req: Request| async move {
                export(st, signal, req).await
            },
        )
    };
    let router = Router::new()
        .route(Signal::Traces.http_path(), route(Signal::Traces))
        .route(Signal::Metrics.http_path(), route(Signal::Metrics))
        .route(Signal::Logs.http_path(), route(Signal::Logs))
        .with_state(state);
    crate::catch_panic::layer(router, "receiver", metrics)
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

async fn export(st: Arc<HttpReceiver>, signal: Signal, req: Request) -> Response {
    let started = Instant::now();
    let correlation = req
        .extensions()
        .get::<CorrelationId>()
        .map(|c| c.0.clone())
        .unwrap_or_else(|| "-".into());
    let (format, encoding) = {
        let header_str = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        (
            Format::from_content_type(header_str(header::CONTENT_TYPE)),
            Encoding::from_header(header_str(header::CONTENT_ENCODING)),
        )
    };
    let reply_format = format.as_ref().copied().unwrap_or(Format::Json);
    let result = match (format, encoding) {
        (Ok(format), Ok(encoding)) => handle(&st, signal, format, encoding, req, correlation)
            .await
            .map(|rejected| (format, rejected)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let response = match result {
        Ok((format, rejected)) => success(signal, format, &rejected),
        Err(e) => {
            st.intake.count_bad_request(Transport::Http, &e);
            failure(&e, reply_format)
        }
    };
    st.intake
        .count_request(Transport::Http, signal, response.status().as_str(), started);
    response
}

async fn handle(
    st: &HttpReceiver,
    signal: Signal,
    format: Format,
    encoding: Encoding,
    req: Request,
    correlation: Arc<str>,
) -> Result<Rejected, ReceiverError> {
    let limit = st.max_body;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // Refused before reading; the body is read and thrown away (up to a bound) so that
        // the client, still writing, reads the 413 instead of a reset connection.
        drain(req.into_body(), st.read_timeout).await;
        return Err(ReceiverError::TooLarge {
            limit,
            decompressed: false,
        });
    }
    let tenant = Tenant::of(&req);
    let body = read_body(req.into_body(), limit, st.read_timeout).await?;
    // A compressed body's size says little of the work to inflate it.
    let work = if encoding == Encoding::Identity {
        body.len()
    } else {
        body.len().saturating_mul(64)
    };
    let body = offload(work, move || decode_body(encoding, body, limit)).await??;
    match format {
        Format::Protobuf => {
            st.intake
                .accept_protobuf(Transport::Http, signal, body, correlation, tenant)
                .await
        }
        Format::Json => {
            let size = body.len();
            let text = body.clone();
            let cost = offload(size, move || crate::model::cost::json(&text)).await?;
            let _reservation = st
                .intake
                .reserve_decode(Transport::Http, signal, cost, size)
                .await?;
            let payload = offload(size, move || Payload::decode_json(signal, &body)).await??;
            st.intake
                .accept(Transport::Http, payload, None, correlation, tenant)
                .await
        }
    }
}

/// Reads a body of at most `limit` bytes within `timeout`. A body over the limit is read on
/// and thrown away (see [`drain`]) before the 413, so the client reads the answer.
pub(super) async fn read_body(
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ReceiverError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut body = body;
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ReceiverError::ReadTimeout(timeout)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ReceiverError::BodyRead(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit {
            drop(parts);
            drain(
                body,
                deadline.saturating_duration_since(tokio::time::Instant::now()),
            )
            .await;
            return Err(ReceiverError::TooLarge {
                limit,
                decompressed: false,
            });
        }
        parts.push(data);
    }
    Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut out = Vec::with_capacity(total);
            for p in parts {
                out.extend_from_slice(&p);
            }
            out.into()
        }
    })
}

/// Most bytes of a refused body read and thrown away before answering; past it (or past the
/// read timeout) the connection is closed.
pub const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads and discards what is left of `body`, up to [`DRAIN_LIMIT`] bytes and `timeout`: an
/// HTTP client still sending a body it was refused for then reads the answer, where closing
/// at once would reset the connection under it (a broken pipe instead of a 413).
pub(super) async fn drain(mut body: Body, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout.min(Duration::from_secs(10));
    let mut read = 0usize;
    while read <= DRAIN_LIMIT {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, |d| d.len());
            }
            _ => return,
        }
    }
}

fn success(signal: Signal, format: Format, rejected: &Rejected) -> Response {
    let response = ExportResponse::new(signal, rejected);
    let body = match format {
        Format::Protobuf => Ok(response.to_protobuf()),
        Format::Json => response.to_json(),
    };
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn failure(e: &ReceiverError, format: Format) -> Response {
    let status = RpcStatus {
        code: e.grpc_code() as i32,
        message: e.to_string(),
    };
    let body = match format {
        Format::Protobuf => status.encode_to_vec(),
        Format::Json => serde_json::to_vec(&status).unwrap_or_default(),
    };
    let mut response = (
        e.http_status(),
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response();
    if e.retryable() {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            http::HeaderValue::from(RETRY_AFTER.as_secs()),
        );
    }
    response
}
