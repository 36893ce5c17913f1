//! What a listener that survives config reloads costs per request: the receiver's router called
//! directly, against the same router behind [`sluice::gateway::listeners::dispatch`] (a read
//! of the listener's router slot and a second routing step).
//!
//! `cargo bench -p sluice --bench dispatch`

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;

fn request() -> http::Request<Body> {
    http::Request::post("/v1/traces")
        .header("content-type", "application/x-protobuf")
        .body(Body::from(vec![0u8; 64]))
        .expect("a valid request")
}

fn routes() -> Router {
    Router::new()
        .route("/v1/traces", post(|| async { "ok" }))
        .route("/v1/metrics", post(|| async { "ok" }))
        .route("/v1/logs", post(|| async { "ok" }))
}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let direct = routes();
    let swappable = sluice::gateway::listeners::dispatch(Arc::new(RwLock::new(routes())));
    let mut group = c.benchmark_group("receiver_request");
    group.bench_function("router", |b| {
        b.iter(|| rt.block_on(direct.clone().oneshot(request())))
    });
    group.bench_function("router_behind_reload_slot", |b| {
        b.iter(|| rt.block_on(swappable.clone().oneshot(request())))
    });
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
