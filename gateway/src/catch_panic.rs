//! A panic in a request handler becomes an answer, not a dropped connection.
//!
//! No input should reach a panic; this layer is the net under that rule. The panic is caught
//! where the handler's future is polled, logged once with the request's method and path,
//! counted in `sluice_panics_total{listener}`, and answered: 500 with a plain message for HTTP,
//! `INTERNAL` (a trailers-only gRPC answer) for gRPC. Locks the handler held are released as
//! the stack unwinds; shared state uses locks that recover from poisoning, so the next request
//! is served as if nothing happened.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use http::{HeaderValue, StatusCode, header};

use crate::telemetry::metrics::SelfMetrics;

#[derive(Clone)]
struct Guard {
    listener: &'static str,
    metrics: Arc<SelfMetrics>,
}

/// Wraps every route of `router`: a panic in a handler is answered and counted under
/// `listener` (`receiver`, `admin`).
pub fn layer(router: Router, listener: &'static str, metrics: Arc<SelfMetrics>) -> Router {
    // Exposed at 0 from the start, so that an alert on its increase has a series to watch.
    metrics.panics.with_label_values(&[listener]);
    router.layer(middleware::from_fn_with_state(
        Guard { listener, metrics },
        guard,
    ))
}

async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            g.metrics.panics.with_label_values(&[g.listener]).inc();
            tracing::error!(listener = g.listener, %method, path, panic = %what, "A request handler panicked; answered 500 and kept serving.");
            internal_error(grpc)
        }
    }
}

fn internal_error(grpc: bool) -> Response {
    const MESSAGE: &str = "internal error while handling the request; the gateway counted it (sluice_panics_total) and keeps serving";
    if grpc {
        let mut response = Response::new(Body::empty());
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            "grpc-status",
            HeaderValue::from(tonic::Code::Internal as i32),
        );
        h.insert(
            "grpc-message",
            HeaderValue::from_static("internal%20error%3B%20the%20gateway%20keeps%20serving"),
        );
        return response;
    }
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{MESSAGE}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_is_answered_and_counted() {
        let metrics = Arc::new(SelfMetrics::new());
        let router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    let v: Vec<u8> = Vec::new();
                    // An index out of bounds, as input could cause.
                    let i = v.len() + 1;
                    format!("{}", v[i])
                }),
            )
            .route("/fine", get(|| async { "ok" }));
        let app = layer(router, "receiver", metrics.clone());
        let response = app
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).expect("request"))
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let grpc = app
            .clone()
            .oneshot(
                Request::get("/boom")
                    .header(header::CONTENT_TYPE, "application/grpc")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answered");
        assert_eq!(grpc.status(), StatusCode::OK);
        assert_eq!(
            grpc.headers().get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"13"[..])
        );
        assert_eq!(
            metrics.panics.with_label_values(&["receiver"]).get(),
            2,
            "both panics counted"
        );
        let fine = app
            .oneshot(Request::get("/fine").body(Body::empty()).expect("request"))
            .await
            .expect("answered");
        assert_eq!(fine.status(), StatusCode::OK);
    }
}
