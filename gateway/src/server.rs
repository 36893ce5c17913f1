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

/// A client gets this long to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` is cancelled,
/// then waits up to `drain` for in-flight requests.
/// The connection limit of a listener, and where it is reported.
pub struct Connections {
    /// Connections open at once; one more is closed at once and counted in `refused`.
    pub max: usize,
    pub open: prometheus::IntGauge,
    pub refused: prometheus::IntCounter,
}

/// Holds one of the listener's connection slots until the connection ends.
struct Slot {
    open: prometheus::IntGauge,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
    connections: Connections,
    header_read_timeout: Duration,
    drain: Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(connections.max.max(1)));
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // At the limit: close at once (the client sees a reset and retries, or goes to
            // another instance) rather than letting connections pile up to the fd limit.
            connections.refused.inc();
            tracing::debug!(peer = %peer, max = connections.max, "Connection limit reached; closing a new connection.");
            drop(stream);
            continue;
        };
        connections.open.inc();
        let slot = Slot {
            open: connections.open.clone(),
            _permit: permit,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().layer(axum::Extension(Peer(peer))));
        // The TLS handshake runs in the connection's task, so a slow client delays nobody else.
        let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                return serve_stream(
                    &builder,
                    stream,
                    service,
                    watcher,
                    header_read_timeout,
                    peer,
                )
                .await;
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => {
                    serve_stream(&builder, s, service, watcher, header_read_timeout, peer).await
                }
                Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed."),
                Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out."),
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

/// Serves HTTP/1.1 or HTTP/2 on one accepted (and, for TLS, handshaken) connection until it
/// ends or the graceful shutdown closes it.
async fn serve_stream<S>(
    builder: &auto::Builder<TokioExecutor>,
    stream: S,
    service: TowerToHyperService<Router>,
    watcher: hyper_util::server::graceful::Watcher,
    header_read_timeout: Duration,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder
        .serve_connection_with_upgrades(
            TokioIo::new(FirstBytesDeadline::new(stream, header_read_timeout)),
            service,
        )
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(peer = %peer, error = %e, "Connection ended with an error.");
    }
}

/// Bytes a connection must send within the header read timeout: the HTTP/2 preface is 24, and
/// the protocol detection reads up to that many before HTTP/1.1's own header timeout applies.
const FIRST_BYTES: usize = 24;

/// A stream whose first [`FIRST_BYTES`] bytes must arrive before a deadline: a client that
/// connects and sends nothing, or a partial preface, or a TLS client silent after its handshake,
/// gets its connection closed instead of holding one of the listener's slots forever.
struct FirstBytesDeadline<S> {
    inner: S,
    read: usize,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<S> FirstBytesDeadline<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        FirstBytesDeadline {
            inner,
            read: 0,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FirstBytesDeadline<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.read < FIRST_BYTES && this.deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no request within the header read timeout",
            )));
        }
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled {
            this.read += buf.filled().len() - before;
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FirstBytesDeadline<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The client's address, for logs.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Middleware: assigns each request a correlation id, runs it inside a tracing span carrying
/// the id, and returns the id in `X-Correlation-ID`.
pub async fn correlate(mut req: Request, next: Next) -> Response {
    let id = crate::telemetry::correlation_id(req.headers());
    req.extensions_mut()
        .insert(crate::telemetry::CorrelationId(id.clone()));
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
