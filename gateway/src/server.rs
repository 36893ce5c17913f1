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

fn pem_certs(
    path: &std::path::Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// Reads a certificate chain and its key, checking that they belong together.
fn load_certified_key(
    cert: &std::path::Path,
    key: &std::path::Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let chain = pem_certs(cert)?;
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    rustls::sign::CertifiedKey::from_der(chain, key_der, provider)
        .map(Arc::new)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serves the certificate of `cert_file` and `key_file`, reloading them when either file
/// changes (checked at most once a second, on a handshake): a renewed certificate (cert-manager,
/// certbot) is picked up without a restart. A pair that does not load is logged and the previous
/// one kept.
#[derive(Debug)]
struct ReloadingCert {
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    state: std::sync::Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    key: Arc<rustls::sign::CertifiedKey>,
    stamps: (Option<std::time::SystemTime>, Option<std::time::SystemTime>),
    checked: std::time::Instant,
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.checked.elapsed() >= Duration::from_secs(1) {
            st.checked = std::time::Instant::now();
            let stamps = (modified(&self.cert_file), modified(&self.key_file));
            if stamps != st.stamps {
                match load_certified_key(&self.cert_file, &self.key_file, &self.provider) {
                    Ok(key) => {
                        tracing::info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded.");
                        st.key = key;
                        st.stamps = stamps;
                    }
                    // Half-written files during a renewal: try again on a later handshake.
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS certificate changed but does not load; keeping the previous one.")
                    }
                }
            }
        }
        Some(st.key.clone())
    }
}

/// The rustls server config of a listener's `tls` block: TLS 1.2 and 1.3, ALPN `h2` (gRPC) and
/// `http/1.1`, client certificates checked against `client_ca_file` when set, and the
/// certificate reloaded when its files change.
pub fn tls_config(c: &crate::config::TlsServerConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let stamps = (modified(&c.cert_file), modified(&c.key_file));
    let key = load_certified_key(&c.cert_file, &c.key_file, &provider)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match &c.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in pem_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(ReloadingCert {
        cert_file: c.cert_file.clone(),
        key_file: c.key_file.clone(),
        provider,
        state: std::sync::Mutex::new(CertState {
            key,
            stamps,
            checked: std::time::Instant::now(),
        }),
    }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

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
