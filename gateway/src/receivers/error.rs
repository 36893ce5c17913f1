//! Every way a receiver can turn a request down, and its HTTP status and gRPC code.

use std::time::Duration;

use http::StatusCode;
use tonic::Code;

use crate::inlet::Refusal;
use crate::model::{DecodeError, Signal};

/// What clients are told to wait before retrying a refused request.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("unsupported content type `{0}`: send application/x-protobuf or application/json")]
    UnsupportedMediaType(String),
    #[error("unsupported content encoding `{0}`: send gzip, zstd or no encoding")]
    UnsupportedEncoding(String),
    #[error("corrupt {encoding} body: {detail}")]
    CorruptEncoding { encoding: String, detail: String },
    #[error("request body exceeds the limit of {limit} bytes{}", if *.decompressed { " after decompression" } else { "" })]
    TooLarge { limit: usize, decompressed: bool },
    #[error("{0}")]
    Malformed(#[from] DecodeError),
    #[error(
        "the request would decode into about {cost} bytes, more than {} times the {received} bytes received; records without content (empty spans, attributes or points) are not accepted",
        crate::model::cost::EXPANSION
    )]
    Expansion { cost: u64, received: usize },
    #[error(
        "the request would decode into about {needed} bytes, more than the gateway decodes at once ({budget} bytes); send smaller requests"
    )]
    OverInFlightBudget { needed: u64, budget: u64 },
    #[error(
        "the gateway is decoding as much as it may at once ({budget} bytes in flight); retry later"
    )]
    InFlightFull { needed: u64, budget: u64 },
    #[error(
        "the request could not be handled: {0}; the gateway counted it (sluice_panics_total) and keeps serving"
    )]
    Internal(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}; retry later")]
    RejectedByProcessor(String),
    #[error("the request body did not arrive within {0:?}")]
    ReadTimeout(Duration),
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    #[error("tenant {tenant} is over its limit of {value} {limit}; retry later")]
    TenantLimited {
        tenant: std::sync::Arc<str>,
        limit: &'static str,
        value: String,
        /// Refused before its records were counted (request rate, concurrency).
        per_request: bool,
    },
    #[error("receiver {receiver} is not part of any {signal} pipeline")]
    NoPipeline { receiver: String, signal: Signal },
    #[error("{}", match refusal {
        Refusal::QueueFull => format!("the queue of pipeline {pipeline} is full ({signal}; it holds queue_size batches and queue_max_size_mib of them, and waits for room in its exporters' queues); retry later"),
        Refusal::ShuttingDown => "the gateway is shutting down; retry against another instance or later".to_string(),
        Refusal::MemoryLimit => "the gateway is above its memory limit (service.memory_limiter) while its queues drain; retry later".to_string(),
        Refusal::StorageFull => format!("the disk queue behind pipeline {pipeline} is full or cannot be written ({signal}); retry later"),
    })]
    Refused {
        refusal: Refusal,
        signal: Signal,
        pipeline: String,
    },
}

impl ReceiverError {
    pub fn http_status(&self) -> StatusCode {
        match self {
            ReceiverError::UnsupportedMediaType(_) | ReceiverError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ReceiverError::CorruptEncoding { .. }
            | ReceiverError::Malformed(_)
            | ReceiverError::Invalid(_)
            | ReceiverError::Expansion { .. }
            | ReceiverError::BodyRead(_) => StatusCode::BAD_REQUEST,
            ReceiverError::TooLarge { .. } | ReceiverError::OverInFlightBudget { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ReceiverError::InFlightFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ReceiverError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ReceiverError::ReadTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ReceiverError::NoPipeline { .. } => StatusCode::NOT_FOUND,
            ReceiverError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ReceiverError::TenantLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ReceiverError::Refused {
                refusal: Refusal::QueueFull | Refusal::MemoryLimit,
                ..
            } => StatusCode::TOO_MANY_REQUESTS,
            ReceiverError::Refused {
                refusal: Refusal::ShuttingDown | Refusal::StorageFull,
                ..
            }
            | ReceiverError::RejectedByProcessor(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn grpc_code(&self) -> Code {
        match self {
            ReceiverError::UnsupportedMediaType(_) | ReceiverError::UnsupportedEncoding(_) => {
                Code::Unimplemented
            }
            ReceiverError::CorruptEncoding { .. }
            | ReceiverError::Malformed(_)
            | ReceiverError::Invalid(_)
            | ReceiverError::Expansion { .. }
            | ReceiverError::BodyRead(_) => Code::InvalidArgument,
            ReceiverError::TooLarge { .. } | ReceiverError::OverInFlightBudget { .. } => {
                Code::ResourceExhausted
            }
            ReceiverError::Internal(_) => Code::Internal,
            ReceiverError::ReadTimeout(_) => Code::DeadlineExceeded,
            ReceiverError::NoPipeline { .. } => Code::Unimplemented,
            ReceiverError::Unauthenticated(_) => Code::Unauthenticated,
            // UNAVAILABLE is retryable by every OTLP client without further detail.
            ReceiverError::Refused { .. }
            | ReceiverError::RejectedByProcessor(_)
            | ReceiverError::InFlightFull { .. }
            | ReceiverError::TenantLimited { .. } => Code::Unavailable,
        }
    }

    /// Whether the client should retry (and so gets `Retry-After`).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ReceiverError::Refused { .. }
                | ReceiverError::RejectedByProcessor(_)
                | ReceiverError::InFlightFull { .. }
                | ReceiverError::TenantLimited { .. }
        )
    }

    /// The `reason` label for `sluice_receiver_bad_requests_total`, for errors that stop a
    /// request before its records are counted.
    pub fn bad_request_reason(&self) -> Option<&'static str> {
        Some(match self {
            ReceiverError::UnsupportedMediaType(_) => "unsupported_media_type",
            ReceiverError::UnsupportedEncoding(_) => "unsupported_encoding",
            ReceiverError::CorruptEncoding { .. } => "corrupt_encoding",
            ReceiverError::TooLarge { .. } => "too_large",
            ReceiverError::Malformed(_) | ReceiverError::Invalid(_) => "malformed",
            ReceiverError::Expansion { .. } => "decode_budget",
            ReceiverError::OverInFlightBudget { .. } => "too_large",
            ReceiverError::InFlightFull { .. } => "in_flight_budget",
            ReceiverError::Internal(_) => "panic",
            ReceiverError::ReadTimeout(_) => "read_timeout",
            ReceiverError::BodyRead(_) => "body_read",
            ReceiverError::NoPipeline { .. } => "no_pipeline",
            ReceiverError::Unauthenticated(_) => "unauthenticated",
            ReceiverError::TenantLimited {
                per_request: true, ..
            } => "tenant_limit",
            ReceiverError::Refused { .. }
            | ReceiverError::RejectedByProcessor(_)
            | ReceiverError::TenantLimited { .. } => return None,
        })
    }
}
