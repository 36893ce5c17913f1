//! The HTTP/1.1 and HTTP/2 (cleartext, prior knowledge for gRPC) server loop every listener
//! uses: receivers and the admin endpoint.
//!
//! It exists rather than `axum::serve` for two things a gateway needs: a header read timeout, so
//! a client that opens a connection and never sends a request does not pin a task, and a
//! graceful shutdown that stops accepting, lets in-flight requests finish, and then returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Binds `endpoint` (`host:port`), with a message that names what failed.
pub async fn bind(endpoint: &str, what: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(endpoint).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {endpoint} for {what}: {e}"),
        )
    })
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits up to `drain` for
/// in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    header_read_timeout: Duration,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(60)));
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().layer(axum::Extension(Peer(peer))));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(peer = %peer, error = %e, "Connection ended with an error.");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Connections still open after the drain timeout; closing them.");
    }
}

/// The client's address, for logs.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The request's correlation id, put in the extensions by [`correlate`].
#[derive(Debug, Clone)]
pub struct CorrelationId(pub Arc<str>);

/// Middleware: assigns each request a correlation id, runs it inside a tracing span carrying
/// the id, and returns the id in `X-Correlation-ID`.
pub async fn correlate(mut req: Request, next: Next) -> Response {
    let id = crate::receivers::correlation_id(req.headers());
    req.extensions_mut().insert(CorrelationId(id.clone()));
    let span = tracing::info_span!("request", correlation_id = %id, path = %req.uri().path());
    // Continue the client's trace in the gateway's own traces.
    if let Some(parent) = remote_parent(req.headers()) {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(parent);
    }
    let mut response = next.run(req).instrument(span).await;
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-correlation-id", v);
    }
    response
}

/// The W3C trace context a request carries, if any.
fn remote_parent(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    struct Headers<'a>(&'a http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    if !headers.contains_key("traceparent") {
        return None;
    }
    let cx =
        opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Headers(headers));
    cx.span().span_context().is_valid().then_some(cx)
}
