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
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{StatusCode, header};
use prost::Message;

use super::super::Tenant;
use super::super::body::{Encoding, Format, decode_body, drain, read_body};
use super::super::error::RETRY_AFTER;
use super::super::{ExportResponse, Intake, ReceiverError, Transport, offload};
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
