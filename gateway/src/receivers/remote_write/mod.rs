//! Prometheus remote-write 1.0 in: `POST /api/v1/write` on the OTLP/HTTP port.
//!
//! The snappy-compressed `WriteRequest` becomes OTLP metrics that flow through the metrics
//! pipelines like any OTLP input: `__name__` is the metric name, `job` and `instance` become the
//! resource (`service.namespace/service.name`, `service.instance.id`), the other labels become
//! attributes, exemplars keep their trace and span ids, and native histograms become
//! exponential histograms. Series typed COUNTER by the request's metadata (or, without metadata, named
//! `*_total`) become monotonic cumulative sums; everything else becomes a gauge under its own
//! name, so that names survive the round trip through the Prometheus exporters
//! ([`crate::prompb::to_otlp_within`] translates, within the request's decode budget).
//!
//! Status codes follow the remote-write specification: 204 on success; 400 for anything a retry
//! cannot fix (corrupt snappy, bad protobuf, out-of-order samples); 413 when the snappy header
//! announces more than the limit, checked *before* decompressing; 503 with `Retry-After` when
//! the pipeline is full, because Prometheus retries 5xx but, by default, not 429.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{StatusCode, header};
use prost::Message;

use super::Tenant;
use super::body::{drain, read_body};
use super::error::RETRY_AFTER;
use super::{Intake, ReceiverError, Transport, offload};
use crate::model::cost::{self, Cost};
use crate::model::{Payload, Signal};
use crate::prompb::{self, Translate, WriteRequest, to_otlp_within};
use crate::telemetry::CorrelationId;

pub const PATH: &str = "/api/v1/write";

pub struct RemoteWriteReceiver {
    pub intake: Intake,
    /// Largest decompressed request.
    pub max_decoded: usize,
    pub read_timeout: Duration,
}

/// The route to merge into an OTLP/HTTP router.
pub fn router(receiver: RemoteWriteReceiver) -> Router {
    let metrics = receiver.intake.self_metrics.clone();
    let router = Router::new()
        .route(PATH, post(write))
        .with_state(Arc::new(receiver));
    crate::catch_panic::layer(router, "receiver", metrics)
}

async fn write(State(st): State<Arc<RemoteWriteReceiver>>, req: Request) -> Response {
    let started = Instant::now();
    let correlation = req
        .extensions()
        .get::<CorrelationId>()
        .map(|c| c.0.clone())
        .unwrap_or_else(|| "-".into());
    let tenant = Tenant::of(&req);
    let result = handle(&st, req, correlation, tenant).await;
    let response = match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            st.intake.count_bad_request(Transport::Http, &e);
            // Prometheus retries 5xx but, by default, not 429: every refusal worth a retry
            // (a full queue, the memory limiter, a tenant's limit, the in-flight budget) is 503.
            let status = if e.retryable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                e.http_status()
            };
            let mut response = (status, format!("{e}\n")).into_response();
            if e.retryable() {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    http::HeaderValue::from(RETRY_AFTER.as_secs()),
                );
            }
            response
        }
    };
    st.intake.count_request(
        Transport::Http,
        Signal::Metrics,
        response.status().as_str(),
        started,
    );
    response
}

async fn handle(
    st: &RemoteWriteReceiver,
    req: Request,
    correlation: Arc<str>,
    tenant: Option<Arc<str>>,
) -> Result<(), ReceiverError> {
    let (content_type, encoding) = {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase()
        };
        (
            header(header::CONTENT_TYPE),
            header(header::CONTENT_ENCODING),
        )
    };
    if !content_type.starts_with("application/x-protobuf") {
        return Err(ReceiverError::UnsupportedMediaType(content_type));
    }
    if encoding != "snappy" {
        return Err(ReceiverError::UnsupportedEncoding(if encoding.is_empty() {
            "(none; remote write requires snappy)".into()
        } else {
            encoding
        }));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_decoded as u64) {
        drain(req.into_body(), st.read_timeout).await;
        return Err(ReceiverError::TooLarge {
            limit: st.max_decoded,
            decompressed: false,
        });
    }
    let body = read_body(req.into_body(), st.max_decoded, st.read_timeout).await?;
    let limit = st.max_decoded;
    let decoded = offload(body.len().saturating_mul(4), move || {
        let decoded = decode_snappy(&body, limit)?;
        // The decoded `WriteRequest` and the OTLP it becomes share one budget, known before
        // either is built: the translation stops as soon as it would pass it.
        // Broken wire is refused undecoded (see `cost::Malformed`).
        let cost = cost::remote_write(&decoded).map_err(|(broken, _)| {
            ReceiverError::Malformed(crate::model::DecodeError::Wire("WriteRequest", broken.0))
        })?;
        Ok::<_, ReceiverError>((decoded, cost))
    })
    .await??;
    let (decoded, cost) = decoded;
    let received = decoded.len();
    let _reservation = st
        .intake
        .reserve_decode(Transport::Http, Signal::Metrics, cost, received)
        .await?;
    let request = offload(received, move || {
        let write = WriteRequest::decode(decoded.as_slice()).map_err(|e| {
            ReceiverError::Invalid(format!("invalid remote-write WriteRequest protobuf: {e}"))
        })?;
        drop(decoded);
        let budget = Cost::budget(received).saturating_sub(cost.bytes);
        to_otlp_within(&write, budget).map_err(|e| match e {
            Translate::Invalid(message) => ReceiverError::Invalid(message),
            Translate::OverBudget(translated) => ReceiverError::Expansion {
                cost: cost.bytes.saturating_add(translated),
                received,
            },
        })
    })
    .await??;
    st.intake
        .accept(
            Transport::Http,
            Payload::Metrics(request),
            None,
            correlation,
            tenant,
        )
        .await?;
    Ok(())
}

/// Decompresses a snappy body, refusing one whose header announces more than `limit`.
pub fn decode_snappy(body: &[u8], limit: usize) -> Result<Vec<u8>, ReceiverError> {
    prompb::decode_snappy(body, limit).map_err(|e| match e {
        prompb::SnappyError::TooLarge { limit } => ReceiverError::TooLarge {
            limit,
            decompressed: true,
        },
        prompb::SnappyError::Corrupt(e) => ReceiverError::CorruptEncoding {
            encoding: "snappy".into(),
            detail: e.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snappy_bomb_is_refused_before_decoding() {
        // A snappy header is a varint of the decoded length: claim 1 GiB.
        let bomb = [0x80, 0x80, 0x80, 0x80, 0x04, 0x00];
        let err = decode_snappy(&bomb, 32 << 20).expect_err("refused");
        assert!(matches!(err, ReceiverError::TooLarge { .. }), "{err}");
        let err = decode_snappy(b"\x05garbage", 32 << 20).expect_err("corrupt");
        assert!(
            matches!(err, ReceiverError::CorruptEncoding { .. }),
            "{err}"
        );
    }
}
