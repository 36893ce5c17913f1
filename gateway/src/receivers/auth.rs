//! Receiver authentication: bearer tokens, each mapped to a tenant.
//!
//! Configured per OTLP receiver (`auth.tenants`), with each token read from a file or an
//! environment variable, never written in the config. A middleware in front of the receiver's
//! routes (OTLP/HTTP, remote_write and OTLP/gRPC alike) checks `Authorization: Bearer TOKEN`:
//! a missing or unknown token is answered HTTP 401 with `WWW-Authenticate`, or gRPC
//! `UNAUTHENTICATED`, and counted (`sluice_receiver_bad_requests_total{reason="unauthenticated"}`);
//! a known one attaches its tenant to the request, then to the batch, where exporters can send
//! it on (`tenant_header`, e.g. `X-Scope-OrgID`). Tokens are kept as SHA-256 digests and
//! compared digest to digest, so the comparison's timing says nothing about a token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

use super::{Intake, ReceiverError, Transport};

/// The tenant a request authenticated as (a request extension).
#[derive(Debug, Clone)]
pub struct Tenant(pub Arc<str>);

impl Tenant {
    pub fn of<B>(req: &http::Request<B>) -> Option<Arc<str>> {
        req.extensions().get::<Tenant>().map(|t| t.0.clone())
    }
}

/// The tokens a receiver accepts.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<Vec<([u8; 32], Arc<str>)>>,
    intake: Intake,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens, not even their digests.
        f.debug_struct("Authenticator")
            .field("tenants", &self.tokens.len())
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Authenticator {
    /// `tokens`: (token, tenant) pairs, already read from their files or variables.
    pub fn new(tokens: &[(String, String)], intake: Intake) -> Authenticator {
        Authenticator {
            tokens: Arc::new(
                tokens
                    .iter()
                    .map(|(t, tenant)| (digest(t.trim().as_bytes()), tenant.as_str().into()))
                    .collect(),
            ),
            intake,
        }
    }

    fn tenant_of(&self, headers: &http::HeaderMap) -> Result<Arc<str>, &'static str> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err("missing Authorization header; send `Authorization: Bearer <token>`");
        };
        let value = value.as_bytes();
        let token = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
            .ok_or("the Authorization header is not a bearer token")?;
        let d = digest(token.trim_ascii());
        self.tokens
            .iter()
            .find(|(known, _)| *known == d)
            .map(|(_, tenant)| tenant.clone())
            .ok_or("unknown bearer token")
    }
}

/// The middleware: authenticate, or answer 401 / `UNAUTHENTICATED`.
pub async fn require(State(auth): State<Authenticator>, mut req: Request, next: Next) -> Response {
    match auth.tenant_of(req.headers()) {
        Ok(tenant) => {
            req.extensions_mut().insert(Tenant(tenant));
            next.run(req).await
        }
        Err(why) => {
            let grpc = req
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            let e = ReceiverError::Unauthenticated(why.to_string());
            let transport = if grpc {
                Transport::Grpc
            } else {
                Transport::Http
            };
            auth.intake.count_bad_request(transport, &e);
            if grpc {
                tonic::Status::unauthenticated(e.to_string()).into_http::<axum::body::Body>()
            } else {
                let mut r = (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sluice\""),
                );
                r
            }
        }
    }
}
