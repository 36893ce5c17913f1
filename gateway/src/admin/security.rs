//! What the admin endpoint asks of browsers and tells them: a guard against cross-site request
//! forgery on the requests that change state, and the security headers of every response.
//!
//! A web page on any origin can make a browser send a "simple" request (a form post, no
//! custom header) to the admin endpoint, and with basic auth the browser even adds the
//! credentials it remembers. So every request that is not `GET`, `HEAD` or `OPTIONS` must:
//! - carry [`REQUEST_HEADER`] (`X-Sluice-Request: 1`). A custom header makes a cross-origin
//!   request non-simple: the browser asks first (CORS preflight), and the admin endpoint never
//!   allows it. The web UI sends it; `curl -X POST -H 'X-Sluice-Request: 1' …` does too.
//! - not come from a foreign origin: an `Origin` header whose host and port differ from the
//!   request's `Host`, or `Sec-Fetch-Site` other than `same-origin` or `none`, is refused.
//!
//! Refusals are answered `403` with a JSON `error` naming what is missing and counted in
//! `sluice_admin_requests_refused_total{reason}`. Requests come in through [`protect`]'s
//! middleware and leave to the routes unchanged.
//!
//! Every response carries a `Content-Security-Policy` that lets the web UI (one page with one
//! inline `<style>` and one inline `<script>`) run and nothing else: the inline blocks are
//! allowed by their SHA-256 hashes, computed once from the page the binary serves, rather than
//! with `'unsafe-inline'`, so injected markup cannot run script. The page may not be framed
//! (`frame-ancestors 'none'`, `X-Frame-Options: DENY`), responses are not sniffed, and no
//! referrer leaves the page.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::telemetry::metrics::SelfMetrics;

/// The web UI, as served at `/`.
pub const UI_PAGE: &str = include_str!("ui/index.html");

/// The header every state-changing admin request must carry (any non-empty value; `1` by
/// convention).
pub const REQUEST_HEADER: &str = "x-sluice-request";

/// Why a state-changing request was refused: the `reason` label and the client's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// Wraps the admin routes: the forgery guard on state-changing requests, and the security
/// headers on every response.
pub fn protect(router: Router, metrics: Arc<SelfMetrics>) -> Router {
    router
        .layer(axum::middleware::from_fn_with_state(metrics, guard))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Whether a request may change state. Reads and preflights always may.
pub fn check(method: &Method, headers: &HeaderMap, authority: Option<&str>) -> Result<(), Refusal> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = String::from_utf8_lossy(site.as_bytes())
            .trim()
            .to_ascii_lowercase();
        if site != "same-origin" && site != "none" {
            return Err(Refusal {
                reason: "cross_site",
                message: format!(
                    "refused a {site} request (Sec-Fetch-Site): the admin API changes state only for its own web UI and for clients that are not browsers"
                ),
            });
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        let ours = origin_host_port(&origin).and_then(|(default_port, o)| {
            let host = authority.and_then(|a| host_port(a, default_port))?;
            Some(host == o)
        });
        if ours != Some(true) {
            return Err(Refusal {
                reason: "origin",
                message: format!(
                    "refused a request from origin {origin}: it does not match this endpoint's host {}; the admin API changes state only for its own web UI (a reverse proxy must pass the Host header through)",
                    authority.unwrap_or("(none)")
                ),
            });
        }
    }
    if headers.get(REQUEST_HEADER).is_none_or(|v| v.is_empty()) {
        return Err(Refusal {
            reason: "missing_header",
            message: "refused: a request that changes state must carry the header `X-Sluice-Request: 1` (protection against cross-site request forgery)".into(),
        });
    }
    Ok(())
}

async fn guard(State(metrics): State<Arc<SelfMetrics>>, req: Request, next: Next) -> Response {
    let authority = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match check(req.method(), req.headers(), authority) {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            metrics
                .admin_requests_refused
                .with_label_values(&[refusal.reason])
                .inc();
            (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({ "error": refusal.message })),
            )
                .into_response()
        }
    }
}

/// Adds the security headers to a response that does not set them itself. Public so that
/// what answers before the admin routes (the credentials check) carries them too.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let set: [(HeaderName, &HeaderValue); 4] = [
        (header::CONTENT_SECURITY_POLICY, &CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, &DENY),
        (header::X_CONTENT_TYPE_OPTIONS, &NOSNIFF),
        (header::REFERRER_POLICY, &NO_REFERRER),
    ];
    for (name, value) in set {
        headers.entry(name).or_insert_with(|| value.clone());
    }
    response
}

static DENY: LazyLock<HeaderValue> = LazyLock::new(|| HeaderValue::from_static("DENY"));
static NOSNIFF: LazyLock<HeaderValue> = LazyLock::new(|| HeaderValue::from_static("nosniff"));
static NO_REFERRER: LazyLock<HeaderValue> =
    LazyLock::new(|| HeaderValue::from_static("no-referrer"));
static CONTENT_SECURITY_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::from_str(&content_security_policy(UI_PAGE))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"))
});

/// The policy for a self-contained page: its inline scripts and styles by hash, requests to
/// its own origin (the API, the event stream), `data:` images (the empty favicon), nothing
/// else.
pub fn content_security_policy(page: &str) -> String {
    let sources = |tag: &str| {
        inline_blocks(page, tag)
            .map(|block| {
                let digest = Sha256::digest(block.as_bytes());
                format!(
                    " 'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                )
            })
            .collect::<String>()
    };
    let script = sources("script");
    let style = sources("style");
    format!(
        "default-src 'none'; script-src{}; style-src{}; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        if script.is_empty() {
            " 'none'"
        } else {
            &script
        },
        if style.is_empty() { " 'none'" } else { &style },
    )
}

/// The contents of every `<tag …>…</tag>` in `page`, exactly as a browser hashes them.
fn inline_blocks<'a>(page: &'a str, tag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut rest = page;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find(&open)?;
            let after = &rest[start + open.len()..];
            // `<scripts>` or `<style-x>` are other elements.
            if !after.starts_with(['>', ' ', '\t', '\n', '\r']) {
                rest = after;
                continue;
            }
            let body_start = after.find('>')? + 1;
            let body = &after[body_start..];
            let end = body.find(&close)?;
            rest = &body[end + close.len()..];
            return Some(&body[..end]);
        }
    })
}

/// `(default port, (host, port))` of an `Origin` (`scheme://host[:port]`).
fn origin_host_port(origin: &str) -> Option<(u16, (String, u16))> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    Some((default_port, host_port(rest, default_port)?))
}

/// The lowercased host and the port of an authority (`host`, `host:port`, `[v6]:port`).
fn host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let a = authority.trim();
    if a.is_empty() || a.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    let (host, port) = if let Some(v6) = a.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        let port = match after {
            "" => default_port,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        (format!("[{addr}]"), port)
    } else {
        match a.split_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (a.to_string(), default_port),
        }
    };
    Some((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    fn app(metrics: Arc<SelfMetrics>) -> Router {
        let routes = Router::new().route(
            "/api/v1/plugins/{name}/reload",
            post(|| async { "reloaded" }).get(|| async { "status" }),
        );
        protect(routes, metrics)
    }

    async fn send(metrics: &Arc<SelfMetrics>, req: http::Request<Body>) -> Response {
        app(metrics.clone()).oneshot(req).await.expect("infallible")
    }

    fn reload() -> http::request::Builder {
        http::Request::post("/api/v1/plugins/redact/reload").header(header::HOST, "127.0.0.1:8888")
    }

    fn refused(metrics: &SelfMetrics, reason: &str) -> u64 {
        metrics
            .admin_requests_refused
            .with_label_values(&[reason])
            .get()
    }

    async fn error_of(response: Response) -> String {
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("valid in a test")
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid in a test");
        v["error"].as_str().expect("valid in a test").to_string()
    }

    #[tokio::test]
    async fn a_cross_origin_form_post_is_refused_and_counted() {
        let m = Arc::new(SelfMetrics::new());
        let r = send(
            &m,
            reload()
                .header(header::ORIGIN, "http://evil.example")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("x=1"))
                .expect("valid in a test"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(error_of(r).await.contains("http://evil.example"));
        assert_eq!(refused(&m, "origin"), 1);
    }

    #[tokio::test]
    async fn a_foreign_origin_is_refused_even_with_the_header() {
        let m = Arc::new(SelfMetrics::new());
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:9999",
            "http://localhost:8888",
            "null",
            "http://127.0.0.1:8888.evil.example",
        ] {
            let r = send(
                &m,
                reload()
                    .header(header::ORIGIN, origin)
                    .header(REQUEST_HEADER, "1")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin}");
        }
        assert_eq!(refused(&m, "origin"), 5);
    }

    #[tokio::test]
    async fn a_post_without_the_header_is_refused() {
        let m = Arc::new(SelfMetrics::new());
        let r = send(&m, reload().body(Body::empty()).expect("valid in a test")).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(error_of(r).await.contains("X-Sluice-Request: 1"));
        assert_eq!(refused(&m, "missing_header"), 1);
        let r = send(
            &m,
            reload()
                .header(REQUEST_HEADER, "")
                .body(Body::empty())
                .expect("valid in a test"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn cross_site_fetch_metadata_is_refused() {
        let m = Arc::new(SelfMetrics::new());
        for site in ["cross-site", "same-site"] {
            let r = send(
                &m,
                reload()
                    .header("sec-fetch-site", site)
                    .header(REQUEST_HEADER, "1")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{site}");
        }
        assert_eq!(refused(&m, "cross_site"), 2);
    }

    #[tokio::test]
    async fn same_origin_and_non_browser_requests_with_the_header_pass() {
        let m = Arc::new(SelfMetrics::new());
        let requests = [
            // curl: no Origin, no fetch metadata.
            reload().header(REQUEST_HEADER, "1"),
            // The web UI.
            reload()
                .header(REQUEST_HEADER, "1")
                .header(header::ORIGIN, "http://127.0.0.1:8888")
                .header("sec-fetch-site", "same-origin"),
            // Default ports and letter case.
            http::Request::post("/api/v1/plugins/redact/reload")
                .header(header::HOST, "Gateway.example")
                .header(header::ORIGIN, "https://gateway.EXAMPLE:443")
                .header(REQUEST_HEADER, "1"),
            http::Request::post("/api/v1/plugins/redact/reload")
                .header(header::HOST, "[::1]:8888")
                .header(header::ORIGIN, "http://[::1]:8888")
                .header(REQUEST_HEADER, "1"),
        ];
        for req in requests {
            let r = send(&m, req.body(Body::empty()).expect("valid in a test")).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
        let total: u64 = ["cross_site", "origin", "missing_header"]
            .iter()
            .map(|r| refused(&m, r))
            .sum();
        assert_eq!(total, 0);
    }

    #[tokio::test]
    async fn reads_need_no_header_and_every_response_carries_the_security_headers() {
        let m = Arc::new(SelfMetrics::new());
        let get = http::Request::get("/api/v1/plugins/redact/reload")
            .header(header::ORIGIN, "http://evil.example")
            .body(Body::empty())
            .expect("valid in a test");
        let refused = reload().body(Body::empty()).expect("valid in a test");
        let missing = http::Request::get("/nowhere")
            .body(Body::empty())
            .expect("valid in a test");
        for (req, status) in [
            (get, StatusCode::OK),
            (refused, StatusCode::FORBIDDEN),
            (missing, StatusCode::NOT_FOUND),
        ] {
            let r = send(&m, req).await;
            assert_eq!(r.status(), status);
            let h = r.headers();
            let csp = h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("valid in a test");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(csp.starts_with("default-src 'none';"), "{csp}");
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        }
    }

    /// The real admin routes: the reload is guarded, the UI and the API carry the headers.
    #[tokio::test]
    async fn the_admin_router_guards_the_reload() {
        let metrics = Arc::new(SelfMetrics::new());
        let state = Arc::new(super::super::AdminState {
            metrics: metrics.clone(),
            health: Arc::default(),
            started: std::time::Instant::now(),
            receivers: Vec::new(),
            pipelines: Vec::new(),
            exporters: Vec::new(),
            processors: Vec::new(),
            emit: crate::pipeline::EmitRouter::new(),
            store: None,
            scrapes: Vec::new(),
            series: Default::default(),
            tap_budget: Default::default(),
            reload: Default::default(),
        });
        let admin = super::super::router(state);
        let forged = reload()
            .header(header::ORIGIN, "http://evil.example")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("a=b"))
            .expect("valid in a test");
        let r = admin
            .clone()
            .oneshot(forged)
            .await
            .expect("valid in a test");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let bare = reload().body(Body::empty()).expect("valid in a test");
        let r = admin.clone().oneshot(bare).await.expect("valid in a test");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // With the header the request reaches the handler, which knows no such processor.
        let ok = reload()
            .header(REQUEST_HEADER, "1")
            .header(header::ORIGIN, "http://127.0.0.1:8888")
            .body(Body::empty())
            .expect("valid in a test");
        let r = admin.clone().oneshot(ok).await.expect("valid in a test");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(refused(&metrics, "origin"), 1);
        assert_eq!(refused(&metrics, "missing_header"), 1);
        for path in ["/", "/api/v1/status", "/metrics", "/health/live"] {
            let req = http::Request::get(path)
                .body(Body::empty())
                .expect("valid in a test");
            let r = admin.clone().oneshot(req).await.expect("infallible");
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert!(
                r.headers().contains_key(header::CONTENT_SECURITY_POLICY),
                "{path}"
            );
            assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY", "{path}");
        }
    }

    #[test]
    fn the_policy_allows_exactly_the_pages_inline_blocks() {
        let page = "<style>a{}</style><script>go()</script><scripts></scripts><script type=\"module\">b()</script>";
        let csp = content_security_policy(page);
        let hash = |s: &str| {
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes()))
        };
        assert!(csp.contains(&format!(
            "script-src 'sha256-{}' 'sha256-{}';",
            hash("go()"),
            hash("b()")
        )));
        assert!(csp.contains(&format!("style-src 'sha256-{}';", hash("a{}"))));
        assert!(!csp.contains("unsafe-inline"));
        // The real page has one of each.
        let real = content_security_policy(UI_PAGE);
        assert_eq!(real.matches("'sha256-").count(), 2, "{real}");
        assert!(HeaderValue::from_str(&real).is_ok());
    }

    #[test]
    fn authorities_compare_by_host_and_port() {
        assert_eq!(host_port("a:1", 80), Some(("a".into(), 1)));
        assert_eq!(host_port("A", 443), Some(("a".into(), 443)));
        assert_eq!(host_port("[::1]", 80), Some(("[::1]".into(), 80)));
        assert_eq!(host_port("a:b", 80), None);
        assert_eq!(host_port("user@a", 80), None);
        assert_eq!(origin_host_port("ftp://a"), None);
        assert_eq!(origin_host_port("null"), None);
    }
}
