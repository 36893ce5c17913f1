//! `receivers.otlp`: OTLP over gRPC ([`grpc`]) and HTTP ([`http`]), each on its own listener.
//! The HTTP listener also serves the routes of remote-write receivers.

pub mod grpc;
pub mod http;

use axum::Router;

use super::auth::Authenticator;
use super::{Intake, Listener};
use crate::config::OtlpReceiverConfig;

/// The listeners of OTLP receiver `name`: its gRPC and HTTP routes, behind its authentication,
/// with `extra` routes (remote write) on the HTTP listener.
pub fn listeners(
    name: &str,
    c: &OtlpReceiverConfig,
    intake: Intake,
    auth: Option<Authenticator>,
    extra: Vec<Router>,
) -> Vec<Listener> {
    let protect = |router: Router| match &auth {
        Some(a) => router.layer(axum::middleware::from_fn_with_state(
            a.clone(),
            super::auth::require,
        )),
        None => router,
    };
    let mut out = Vec::new();
    if let Some(g) = &c.protocols.grpc {
        let router = grpc::router(grpc::GrpcReceiver {
            intake: intake.clone(),
            max_message: g.max_recv_msg_size_mib * 1024 * 1024,
            read_timeout: g.read_timeout,
        });
        out.push(Listener {
            endpoint: g.endpoint.clone(),
            transport: "grpc",
            what: format!("receiver {name} (OTLP/gRPC)"),
            tls: g.tls.clone(),
            max_connections: g.max_connections,
            router: protect(router),
        });
    }
    if let Some(h) = &c.protocols.http {
        let mut router = http::router(http::HttpReceiver {
            intake,
            max_body: h.max_request_body_size_mib * 1024 * 1024,
            read_timeout: h.read_timeout,
        });
        for route in extra {
            router = router.merge(route);
        }
        out.push(Listener {
            endpoint: h.endpoint.clone(),
            transport: "http",
            what: format!("receiver {name} (OTLP/HTTP)"),
            tls: h.tls.clone(),
            max_connections: h.max_connections,
            router: protect(router),
        });
    }
    out
}
