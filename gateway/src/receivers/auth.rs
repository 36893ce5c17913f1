//! Receiver authentication and per-tenant limits.
//!
//! Configured per OTLP receiver (`auth.tenants`): each tenant has a bearer token and/or a
//! basic-auth user, read from files or environment variables, never written in the config.
//! A middleware in front of the receiver's routes (OTLP/HTTP, remote_write and OTLP/gRPC alike)
//! checks `Authorization: Bearer TOKEN`, `Authorization: Basic ...`, or the token in
//! `auth.api_key_header`: a missing or unknown credential is answered HTTP 401 with
//! `WWW-Authenticate`, or gRPC `UNAUTHENTICATED`, and counted
//! (`sluice_receiver_bad_requests_total{reason="unauthenticated"}`); a known one attaches its
//! tenant to the request, then to the batch, where exporters can send it on (`tenant_header`,
//! e.g. `X-Scope-OrgID`) and the disk queue keeps it. Secrets are kept as SHA-256 digests and
//! compared digest to digest, so the comparison's timing says nothing about a secret.
//!
//! A tenant's `limits` (requests and records per second, concurrent requests) are checked here
//! and in [`super::Intake`]: a tenant over one gets HTTP 429 with `Retry-After` (gRPC
//! `UNAVAILABLE`), counted in `sluice_tenant_limited_total`, and other tenants are unaffected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderName, HeaderValue, header};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::error::RETRY_AFTER;
use super::{Intake, ReceiverError, Transport};
use crate::config::{Credential, CredentialKind, TenantLimitsConfig};

/// A token bucket holding one second's worth: `rate` per second, refilled continuously.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            rate,
            state: Mutex::new((rate.max(1.0), Instant::now())),
        }
    }

    /// Takes `n`. With `debt`, a take succeeds whenever the bucket is not empty and may leave
    /// it below zero, so a batch larger than one second's worth still passes, then waits.
    fn take(&self, n: f64, debt: bool) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, last) = *s;
        // Room for one request even below one per second; debt of at most one second's worth,
        // so one huge batch delays a tenant for a second, not for hours.
        let cap = self.rate.max(1.0);
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(cap);
        let ok = if debt { tokens > 0.0 } else { tokens >= n };
        let left = if ok { (tokens - n).max(-cap) } else { tokens };
        *s = (left, now);
        ok
    }
}

/// The limits of one tenant.
#[derive(Debug)]
pub struct TenantLimiter {
    requests: Option<Bucket>,
    records: Option<Bucket>,
    concurrency: Option<(Arc<Semaphore>, usize)>,
}

/// The limiters of a receiver's tenants, by tenant name.
pub type TenantLimits = Arc<HashMap<Arc<str>, Arc<TenantLimiter>>>;

pub fn tenant_limits(config: &[(String, TenantLimitsConfig)]) -> TenantLimits {
    Arc::new(
        config
            .iter()
            .map(|(tenant, l)| {
                (
                    Arc::<str>::from(tenant.as_str()),
                    Arc::new(TenantLimiter {
                        requests: l.requests_per_second.map(Bucket::new),
                        records: l.records_per_second.map(Bucket::new),
                        concurrency: l
                            .max_concurrent_requests
                            .map(|n| (Arc::new(Semaphore::new(n)), n)),
                    }),
                )
            })
            .collect(),
    )
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        v.to_string()
    }
}

impl TenantLimiter {
    /// Takes `records` from the tenant's records-per-second budget, or says which limit it hit.
    pub fn take_records(&self, tenant: &Arc<str>, records: usize) -> Result<(), ReceiverError> {
        match &self.records {
            Some(b) if !b.take(records as f64, true) => Err(ReceiverError::TenantLimited {
                tenant: tenant.clone(),
                limit: "records_per_second",
                value: number(b.rate),
                per_request: false,
            }),
            _ => Ok(()),
        }
    }
}

/// The tenant a request authenticated as (a request extension).
#[derive(Debug, Clone)]
pub struct Tenant(pub Arc<str>);

impl Tenant {
    pub fn of<B>(req: &http::Request<B>) -> Option<Arc<str>> {
        req.extensions().get::<Tenant>().map(|t| t.0.clone())
    }
}

/// A credential's kind, the digest of its secret, and its tenant.
type Known = (CredentialKind, [u8; 32], Arc<str>);

/// A set of credentials, each naming its tenant.
#[derive(Clone)]
pub struct Credentials {
    tokens: Arc<Vec<Known>>,
    api_key_header: Option<HeaderName>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets, not even their digests.
        f.debug_struct("Credentials")
            .field("count", &self.tokens.len())
            .finish()
    }
}

/// The credentials a receiver accepts, and its tenants' limits.
#[derive(Clone)]
pub struct Authenticator {
    credentials: Credentials,
    limits: TenantLimits,
    intake: Intake,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens, not even their digests.
        f.debug_struct("Authenticator")
            .field("credentials", &self.credentials)
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Authenticator {
    /// `credentials`: already read from their files or variables.
    pub fn new(
        credentials: &[Credential],
        api_key_header: Option<&str>,
        limits: TenantLimits,
        intake: Intake,
    ) -> Authenticator {
        Authenticator {
            credentials: Credentials::new(credentials, api_key_header),
            limits,
            intake,
        }
    }
}

impl Credentials {
    pub fn new(credentials: &[Credential], api_key_header: Option<&str>) -> Credentials {
        Credentials {
            tokens: Arc::new(
                credentials
                    .iter()
                    .map(|c| {
                        (
                            c.kind,
                            digest(c.secret.trim().as_bytes()),
                            c.tenant.as_str().into(),
                        )
                    })
                    .collect(),
            ),
            api_key_header: api_key_header.and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        }
    }

    fn find(&self, kind: CredentialKind, secret: &[u8]) -> Option<Arc<str>> {
        let d = digest(secret);
        self.tokens
            .iter()
            .find(|(k, known, _)| *k == kind && *known == d)
            .map(|(_, _, tenant)| tenant.clone())
    }

    /// The tenant of the request's credentials, or why there is none.
    pub fn tenant_of(&self, headers: &http::HeaderMap) -> Result<Arc<str>, &'static str> {
        if let Some(h) = &self.api_key_header
            && let Some(key) = headers.get(h)
        {
            return self
                .find(CredentialKind::Bearer, key.as_bytes().trim_ascii())
                .ok_or("unknown API key");
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(if self.api_key_header.is_some() {
                "missing credentials; send `Authorization: Bearer <token>`, basic authentication or the API key header"
            } else {
                "missing Authorization header; send `Authorization: Bearer <token>` or basic authentication"
            });
        };
        let value = value.as_bytes();
        if let Some(token) = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
        {
            return self
                .find(CredentialKind::Bearer, token.trim_ascii())
                .ok_or("unknown bearer token");
        }
        if let Some(encoded) = value
            .strip_prefix(b"Basic ")
            .or_else(|| value.strip_prefix(b"basic "))
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim_ascii())
                .map_err(|_| "the basic credentials are not valid base64")?;
            return self
                .find(CredentialKind::Basic, &decoded)
                .ok_or("unknown user or wrong password");
        }
        Err("the Authorization header is neither a bearer token nor basic credentials")
    }
}

/// The middleware: authenticate and apply the tenant's request limits, or answer 401 /
/// `UNAUTHENTICATED`, 429 / `UNAVAILABLE`.
pub async fn require(State(auth): State<Authenticator>, mut req: Request, next: Next) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let transport = if grpc {
        Transport::Grpc
    } else {
        Transport::Http
    };
    let tenant = match auth.credentials.tenant_of(req.headers()) {
        Ok(tenant) => tenant,
        Err(why) => {
            let e = ReceiverError::Unauthenticated(why.to_string());
            auth.intake.count_bad_request(transport, &e);
            return refusal(&e, grpc);
        }
    };
    let mut permit = None;
    if let Some(l) = auth.limits.get(&tenant) {
        let limited = |limit: &'static str, value: String| ReceiverError::TenantLimited {
            tenant: tenant.clone(),
            limit,
            value,
            per_request: true,
        };
        let mut refused = None;
        if let Some(b) = &l.requests
            && !b.take(1.0, false)
        {
            refused = Some(limited("requests_per_second", number(b.rate)));
        } else if let Some((sem, n)) = &l.concurrency {
            match sem.clone().try_acquire_owned() {
                Ok(p) => permit = Some(p),
                Err(_) => refused = Some(limited("max_concurrent_requests", n.to_string())),
            }
        }
        if let Some(e) = refused {
            auth.intake.count_tenant_limited(&e);
            auth.intake.count_bad_request(transport, &e);
            return refusal(&e, grpc);
        }
    }
    req.extensions_mut().insert(Tenant(tenant));
    let response = next.run(req).await;
    drop(permit);
    response
}

/// The middleware of the admin and scrape endpoints: everything but the probes
/// (`/health/live`, `/health/ready`) needs one of the credentials; a browser asks for basic
/// credentials (the web UI).
pub async fn require_endpoint(
    State(credentials): State<Credentials>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path == "/health/live" || path == "/health/ready" {
        return next.run(req).await;
    }
    match credentials.tenant_of(req.headers()) {
        Ok(_) => next.run(req).await,
        Err(why) => {
            tracing::debug!(
                path,
                why,
                "Unauthenticated request to an admin or scrape endpoint."
            );
            let mut r = (
                http::StatusCode::UNAUTHORIZED,
                format!("not authenticated: {why}\n"),
            )
                .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sluice\", charset=\"UTF-8\""),
            );
            r
        }
    }
}

fn refusal(e: &ReceiverError, grpc: bool) -> Response {
    if grpc {
        return tonic::Status::new(e.grpc_code(), e.to_string()).into_http::<axum::body::Body>();
    }
    let mut r = (e.http_status(), format!("{e}\n")).into_response();
    if matches!(e, ReceiverError::Unauthenticated(_)) {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"sluice\", Basic realm=\"sluice\""),
        );
    }
    if e.retryable() {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(RETRY_AFTER.as_secs()),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_rate_then_refills() {
        let b = Bucket::new(5.0);
        assert!((0..5).all(|_| b.take(1.0, false)));
        assert!(!b.take(1.0, false));
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(b.take(1.0, false), "a quarter second refills one token");
        // Debt: one large take passes, then the bucket is empty for a while.
        let r = Bucket::new(100.0);
        assert!(r.take(1000.0, true));
        assert!(!r.take(1.0, true));
    }
}
