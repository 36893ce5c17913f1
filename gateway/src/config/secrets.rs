//! The secrets of `auth` blocks, read from their files or environment variables into
//! [`Credential`]s. Validation has checked each block's shape; here a file that cannot be read,
//! a variable that is not set, an empty secret, or one given to two tenants is reported,
//! without ever printing a secret.

use super::{
    ConfigError, Credential, CredentialKind, EndpointAuthConfig, SecretSource, TenantConfig, err,
    secret_source,
};

/// The credentials of a receiver's `auth.tenants`, `path` being the `auth` block's.
pub(super) fn tenant_credentials(
    tenants: &[TenantConfig],
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Credential> {
    let mut out = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        read_tenant(t, &format!("{path}.tenants[{i}]"), errors, &mut out);
    }
    out
}

/// The credentials of an admin or scrape endpoint's `auth`.
pub(super) fn endpoint_credentials(
    a: &EndpointAuthConfig,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Credential> {
    let mut out = Vec::new();
    read_tenant(&a.as_tenant(), path, errors, &mut out);
    out
}

fn read(source: SecretSource<'_>, what: &str) -> Result<String, String> {
    match source {
        SecretSource::File(file) => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display())),
        SecretSource::Env(var) => {
            std::env::var(var).map_err(|_| format!("environment variable `{var}` is not set"))
        }
    }
    .map(|s| s.trim().to_string())
    .and_then(|s| {
        if s.is_empty() {
            Err(format!("the {what} is empty"))
        } else {
            Ok(s)
        }
    })
}

/// Reads one tenant's token and/or basic-auth password into `out`.
fn read_tenant(
    t: &TenantConfig,
    at: &str,
    errors: &mut Vec<ConfigError>,
    out: &mut Vec<Credential>,
) {
    let mut push = |kind: CredentialKind, secret: Result<String, String>, at: &str| match secret {
        Ok(secret) => {
            if out.iter().any(|c| c.kind == kind && c.secret == secret) {
                err(
                    errors,
                    at,
                    match kind {
                        CredentialKind::Bearer => "the same token is given to two tenants",
                        CredentialKind::Basic => {
                            "the same user and password are given to two tenants"
                        }
                    },
                );
            } else {
                out.push(Credential {
                    kind,
                    secret,
                    tenant: t.tenant.clone(),
                });
            }
        }
        Err(e) => err(errors, at, e),
    };
    // Sources that are not exactly one were reported by validation.
    if t.wants_token()
        && let Some(source) = secret_source(&t.bearer_token_file, &t.bearer_token_env)
    {
        push(CredentialKind::Bearer, read(source, "bearer_token"), at);
    }
    if let Some(b) = &t.basic_auth
        && b.valid_username()
        && let Some(source) = secret_source(&b.password_file, &b.password_env)
    {
        let secret = read(source, "password").map(|p| format!("{}:{p}", b.username));
        push(CredentialKind::Basic, secret, &format!("{at}.basic_auth"));
    }
}
