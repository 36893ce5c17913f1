//! The `otlp` exporter: sends batches to any OTLP backend over gRPC or HTTP/protobuf.
//!
//! The batch's protobuf bytes are sent as they are (the client's original bytes when nothing
//! changed them). Responses are mapped per the OTLP specification: gRPC `UNAVAILABLE`,
//! `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, `ABORTED`, `CANCELLED`, `OUT_OF_RANGE`, `DATA_LOSS`
//! and HTTP 429/502/503/504 are retried; everything else is permanent. `partial_success` is
//! reported back to the worker, which counts the rejected records.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::{Delivered, ExportError};
use crate::config::{Compression, OtlpExporterConfig, OtlpProtocol};
use crate::grpc_codec::{Prost, WireCodec};
use crate::model::{Batch, Signal};
use futures_util::future::BoxFuture;

use super::{Built, Export};

pub struct OtlpExporter {
    transport: Transport,
    compression: Compression,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Carries each batch's tenant, if it has one.
    tenant_header: Option<http::HeaderName>,
}

enum Transport {
    Grpc(Channel),
    Http {
        client: reqwest::Client,
        base: String,
    },
}

impl OtlpExporter {
    pub fn new(name: &str, c: &OtlpExporterConfig) -> Result<OtlpExporter, ExportError> {
        let headers = c
            .headers
            .iter()
            .map(|(k, v)| {
                let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
                    ExportError::permanent(format!("exporter {name}: header {k}: {e}"))
                })?;
                let value = http::HeaderValue::from_str(v).map_err(|e| {
                    ExportError::permanent(format!("exporter {name}: header {k}: {e}"))
                })?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, ExportError>>()?;
        let tenant_header = c
            .tenant_header
            .as_ref()
            .map(|h| {
                http::HeaderName::from_bytes(h.as_bytes()).map_err(|e| {
                    ExportError::permanent(format!("exporter {name}: tenant_header {h}: {e}"))
                })
            })
            .transpose()?;
        let transport = match c.protocol {
            OtlpProtocol::Grpc => {
                let endpoint = Endpoint::from_shared(c.endpoint.clone())
                    .map_err(|e| {
                        ExportError::permanent(format!(
                            "exporter {name}: invalid endpoint {}: {e}",
                            c.endpoint
                        ))
                    })?
                    .connect_timeout(c.timeout.min(Duration::from_secs(10)))
                    .timeout(c.timeout)
                    .tcp_nodelay(true);
                let endpoint = if c.endpoint.starts_with("https://") {
                    let tls = crate::tls::grpc_channel(c.tls.as_ref())
                        .map_err(|e| ExportError::permanent(format!("exporter {name}: {e}")))?;
                    endpoint
                        .tls_config(tls)
                        .map_err(|e| ExportError::permanent(format!("exporter {name}: TLS: {e}")))?
                } else {
                    endpoint
                };
                Transport::Grpc(endpoint.connect_lazy())
            }
            OtlpProtocol::Http => {
                let builder = reqwest::Client::builder()
                    .timeout(c.timeout)
                    .connect_timeout(c.timeout.min(Duration::from_secs(10)));
                let client = crate::tls::http_client(builder, c.tls.as_ref(), name)
                    .map_err(|e| ExportError::permanent(format!("exporter {name}: {e}")))?
                    .build()
                    .map_err(|e| {
                        ExportError::permanent(format!("exporter {name}: HTTP client: {e}"))
                    })?;
                Transport::Http {
                    client,
                    base: c.endpoint.trim_end_matches('/').to_string(),
                }
            }
        };
        Ok(OtlpExporter {
            transport,
            compression: c.compression,
            headers,
            tenant_header,
        })
    }

    /// The tenant header for this batch, when configured and the batch has a tenant.
    fn tenant(&self, batch: &Batch) -> Option<(http::HeaderName, http::HeaderValue)> {
        let name = self.tenant_header.clone()?;
        let value = http::HeaderValue::from_str(batch.tenant.as_deref()?).ok()?;
        Some((name, value))
    }

    pub async fn send(&self, batch: &Batch) -> Result<Delivered, ExportError> {
        match &self.transport {
            Transport::Grpc(channel) => self.send_grpc(channel.clone(), batch).await,
            Transport::Http { client, base } => self.send_http(client, base, batch).await,
        }
    }

    async fn send_grpc(&self, channel: Channel, batch: &Batch) -> Result<Delivered, ExportError> {
        let mut grpc = tonic::client::Grpc::new(channel);
        match self.compression {
            Compression::None => {}
            Compression::Gzip => grpc = grpc.send_compressed(CompressionEncoding::Gzip),
            Compression::Zstd => grpc = grpc.send_compressed(CompressionEncoding::Zstd),
        }
        grpc = grpc
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(4 * 1024 * 1024);
        grpc.ready()
            .await
            .map_err(|e| ExportError::retryable(format!("backend not reachable: {e}")))?;
        let mut request = tonic::Request::new(batch.encoded().clone());
        for (k, v) in self.headers.iter().chain(self.tenant(batch).as_ref()) {
            if let (Ok(k), Ok(v)) = (
                MetadataKey::from_bytes(k.as_str().as_bytes()),
                MetadataValue::try_from(v.as_bytes()),
            ) {
                request.metadata_mut().insert(k, v);
            }
        }
        let path = PathAndQuery::from_static(batch.signal().grpc_path());
        let partial = match batch.signal() {
            Signal::Traces => unary::<ExportTraceServiceResponse>(&mut grpc, request, path).await,
            Signal::Metrics => {
                unary::<ExportMetricsServiceResponse>(&mut grpc, request, path).await
            }
            Signal::Logs => unary::<ExportLogsServiceResponse>(&mut grpc, request, path).await,
        };
        match partial {
            Ok(p) => Ok(delivered(p)),
            Err(status) => Err(grpc_error(&status)),
        }
    }

    async fn send_http(
        &self,
        client: &reqwest::Client,
        base: &str,
        batch: &Batch,
    ) -> Result<Delivered, ExportError> {
        let url = format!("{base}{}", batch.signal().http_path());
        let mut request = client
            .post(&url)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf");
        for (k, v) in self.headers.iter().chain(self.tenant(batch).as_ref()) {
            request = request.header(k, v);
        }
        let body: Bytes = match self.compression {
            Compression::None => batch.encoded().clone(),
            Compression::Gzip => {
                request = request.header(http::header::CONTENT_ENCODING, "gzip");
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(batch.encoded())
                    .and_then(|_| enc.finish())
                    .map_err(|e| ExportError::permanent(format!("gzip: {e}")))?
                    .into()
            }
            Compression::Zstd => {
                request = request.header(http::header::CONTENT_ENCODING, "zstd");
                zstd::bulk::compress(batch.encoded(), 1)
                    .map_err(|e| ExportError::permanent(format!("zstd: {e}")))?
                    .into()
            }
        };
        let response = request.body(body).send().await.map_err(|e| {
            ExportError::retryable(format!("POST {url}: {}", super::error_chain(&e)))
        })?;
        let status = response.status();
        let retry_after = super::retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            let partial = match batch.signal() {
                Signal::Traces => decode_partial::<ExportTraceServiceResponse>(&body),
                Signal::Metrics => decode_partial::<ExportMetricsServiceResponse>(&body),
                Signal::Logs => decode_partial::<ExportLogsServiceResponse>(&body),
            };
            return Ok(delivered(partial));
        }
        let detail = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let message = format!("POST {url}: HTTP {status}: {detail}");
        let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504);
        Err(ExportError {
            message,
            retryable,
            retry_after,
        })
    }
}

/// The three OTLP export responses: their `partial_success`, if any.
trait ExportResponse: Message + Default + Send + Sync + 'static {
    fn partial(self) -> Option<(i64, String)>;
}

impl ExportResponse for ExportTraceServiceResponse {
    fn partial(self) -> Option<(i64, String)> {
        self.partial_success
            .map(|p| (p.rejected_spans, p.error_message))
    }
}

impl ExportResponse for ExportMetricsServiceResponse {
    fn partial(self) -> Option<(i64, String)> {
        self.partial_success
            .map(|p| (p.rejected_data_points, p.error_message))
    }
}

impl ExportResponse for ExportLogsServiceResponse {
    fn partial(self) -> Option<(i64, String)> {
        self.partial_success
            .map(|p| (p.rejected_log_records, p.error_message))
    }
}

async fn unary<R: ExportResponse>(
    grpc: &mut tonic::client::Grpc<Channel>,
    request: tonic::Request<Bytes>,
    path: PathAndQuery,
) -> Result<Option<(i64, String)>, Status> {
    grpc.unary::<_, Prost<R>, _>(request, path, WireCodec::default())
        .await
        .map(|r| r.into_inner().0.partial())
}

fn decode_partial<R: ExportResponse>(body: &[u8]) -> Option<(i64, String)> {
    R::decode(body).ok().and_then(R::partial)
}

fn delivered(partial: Option<(i64, String)>) -> Delivered {
    match partial {
        Some((rejected, message)) => Delivered {
            rejected: rejected.max(0) as u64,
            message,
        },
        None => Delivered::default(),
    }
}

fn grpc_error(status: &Status) -> ExportError {
    let retryable = matches!(
        status.code(),
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Cancelled
            | Code::OutOfRange
            | Code::DataLoss
    );
    ExportError {
        message: format!("gRPC {:?}: {}", status.code(), status.message()),
        retryable,
        retry_after: None,
    }
}

impl Export for OtlpExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(self.send(batch))
    }
}

pub(super) fn build(name: &str, c: &OtlpExporterConfig) -> Result<Built, ExportError> {
    Ok(Built::new(OtlpExporter::new(name, c)?).retrying(&c.retry_on_failure))
}
