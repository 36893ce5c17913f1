//! Authentication blocks: a receiver's tenants (`auth.tenants`, each with a bearer token and/or a
//! basic-auth user, and limits) and the credentials of the admin and scrape endpoints.
//!
//! Secrets are never written in the config: each names a file or an environment variable.
//! Validation here checks the blocks' shape; the gateway reads the secrets into
//! [`Credential`]s in its load step, where a missing file, an unset variable, an empty secret
//! or one given to two tenants is reported with the same paths.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::errors::{ConfigError, err};

/// The tenants a receiver accepts, each with its bearer token read from a file or an
/// environment variable (never written in the config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverAuthConfig {
    pub tenants: Vec<TenantConfig>,
    /// A header (e.g. `X-API-Key`) in which the tenants' tokens are also accepted, for clients
    /// that cannot send `Authorization: Bearer`.
    pub api_key_header: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's name, attached to its data.
    pub tenant: String,
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// The name of an environment variable holding the token.
    pub bearer_token_env: Option<String>,
    /// HTTP basic authentication (`Authorization: Basic`), instead of or besides a token.
    pub basic_auth: Option<ReceiverBasicAuth>,
    /// Limits of this tenant; over one, its requests get 429 / `UNAVAILABLE` while other
    /// tenants are unaffected.
    #[serde(default)]
    pub limits: TenantLimitsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverBasicAuth {
    pub username: String,
    pub password_file: Option<std::path::PathBuf>,
    /// The name of an environment variable holding the password.
    pub password_env: Option<String>,
}

/// Per-tenant limits; unset means unlimited.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantLimitsConfig {
    /// Requests per second (a token bucket with a burst of one second's worth).
    pub requests_per_second: Option<f64>,
    /// Records (spans, data points, log records) per second, same bucket.
    pub records_per_second: Option<f64>,
    /// Requests of this tenant being processed at once.
    pub max_concurrent_requests: Option<usize>,
}

/// The credentials an admin or scrape endpoint accepts: a bearer token and/or a basic-auth
/// user, read from files or environment variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointAuthConfig {
    pub bearer_token_file: Option<std::path::PathBuf>,
    pub bearer_token_env: Option<String>,
    pub basic_auth: Option<ReceiverBasicAuth>,
}

/// One way a tenant can authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub kind: CredentialKind,
    /// The token, or `username:password` for basic authentication.
    pub secret: String,
    pub tenant: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Bearer,
    Basic,
}

/// Where one secret is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource<'a> {
    File(&'a Path),
    Env(&'a str),
}

/// The source of a secret given as `<what>_file` or `<what>_env`: exactly one of them.
pub fn secret_source<'a>(
    file: &'a Option<PathBuf>,
    env: &'a Option<String>,
) -> Option<SecretSource<'a>> {
    match (file, env) {
        (Some(file), None) => Some(SecretSource::File(file)),
        (None, Some(var)) => Some(SecretSource::Env(var)),
        _ => None,
    }
}

impl ReceiverAuthConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.tenants.is_empty() {
            err(
                errors,
                format!("{path}.tenants"),
                "list at least one tenant (or remove `auth`)",
            );
        }
        for (i, t) in self.tenants.iter().enumerate() {
            let at = format!("{path}.tenants[{i}]");
            if t.tenant.trim().is_empty() {
                err(errors, format!("{at}.tenant"), "must not be empty");
            }
            t.validate_secrets(&at, errors);
            t.limits.validate(&format!("{at}.limits"), errors);
        }
        if let Some(h) = &self.api_key_header
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            err(
                errors,
                format!("{path}.api_key_header"),
                format!("`{h}` is not a valid header name"),
            );
        }
    }
}

impl TenantConfig {
    /// Whether the tenant has a bearer token to read: it names one, or it has no basic-auth
    /// user either (and then the token is what is missing).
    pub fn wants_token(&self) -> bool {
        self.bearer_token_file.is_some()
            || self.bearer_token_env.is_some()
            || self.basic_auth.is_none()
    }

    /// That each secret names exactly one source, and the basic-auth user name is usable.
    pub fn validate_secrets(&self, at: &str, errors: &mut Vec<ConfigError>) {
        if self.wants_token()
            && secret_source(&self.bearer_token_file, &self.bearer_token_env).is_none()
        {
            let has_token = self.bearer_token_file.is_some() || self.bearer_token_env.is_some();
            err(
                errors,
                at,
                if self.basic_auth.is_none() && !has_token {
                    "set `bearer_token_file`, `bearer_token_env` or `basic_auth`"
                } else {
                    "set exactly one of `bearer_token_file` and `bearer_token_env`"
                },
            );
        }
        if let Some(b) = &self.basic_auth {
            let at = format!("{at}.basic_auth");
            if !b.valid_username() {
                err(errors, at, "`username` must be non-empty and without `:`");
            } else if secret_source(&b.password_file, &b.password_env).is_none() {
                err(
                    errors,
                    at,
                    "set exactly one of `password_file` and `password_env`",
                );
            }
        }
    }
}

impl ReceiverBasicAuth {
    pub fn valid_username(&self) -> bool {
        !self.username.is_empty() && !self.username.contains(':')
    }
}

impl TenantLimitsConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        for (name, v) in [
            ("requests_per_second", self.requests_per_second),
            ("records_per_second", self.records_per_second),
        ] {
            if v.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
                err(
                    errors,
                    format!("{path}.{name}"),
                    "must be a positive number",
                );
            }
        }
        if self.max_concurrent_requests == Some(0) {
            err(
                errors,
                format!("{path}.max_concurrent_requests"),
                "must be at least 1",
            );
        }
    }
}

impl EndpointAuthConfig {
    /// The block as the one tenant (`admin`) of an endpoint.
    pub fn as_tenant(&self) -> TenantConfig {
        TenantConfig {
            tenant: "admin".into(),
            bearer_token_file: self.bearer_token_file.clone(),
            bearer_token_env: self.bearer_token_env.clone(),
            basic_auth: self.basic_auth.clone(),
            limits: TenantLimitsConfig::default(),
        }
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        self.as_tenant().validate_secrets(path, errors);
    }
}
