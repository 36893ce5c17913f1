//! The HTTP side of scraping: one client per job (TLS through the gateway's TLS module,
//! redirects and HTTP/2 as the job says), credentials read at each request as Prometheus
//! re-reads its `*_file` settings, and bodies read up to a limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderValue;

use crate::config::{Authorization, ScrapeBasicAuth, ScrapeTlsConfig};

pub const USER_AGENT: &str = concat!("Sluice/", env!("CARGO_PKG_VERSION"));

/// What Prometheus 2.42 asks targets for: OpenMetrics first, then the text format.
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The largest credentials file read.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Default)]
pub enum Credentials {
    #[default]
    None,
    Basic {
        username: String,
        password: Option<String>,
        password_file: Option<PathBuf>,
    },
    Token {
        kind: String,
        value: Option<String>,
        file: Option<PathBuf>,
    },
}

impl Credentials {
    pub fn new(
        basic: Option<&ScrapeBasicAuth>,
        authorization: Option<&Authorization>,
        bearer_token: Option<&String>,
        bearer_token_file: Option<&PathBuf>,
    ) -> Credentials {
        if let Some(b) = basic {
            return Credentials::Basic {
                username: b.username.clone(),
                password: b.password.clone(),
                password_file: b.password_file.clone(),
            };
        }
        if let Some(a) = authorization {
            return Credentials::Token {
                kind: a.kind.clone(),
                value: a.credentials.clone(),
                file: a.credentials_file.clone(),
            };
        }
        if bearer_token.is_some() || bearer_token_file.is_some() {
            return Credentials::Token {
                kind: "Bearer".into(),
                value: bearer_token.cloned(),
                file: bearer_token_file.cloned(),
            };
        }
        Credentials::None
    }

    /// The `Authorization` header, reading files now.
    pub fn header(&self) -> Result<Option<HeaderValue>, String> {
        let text = match self {
            Credentials::None => return Ok(None),
            Credentials::Basic {
                username,
                password,
                password_file,
            } => {
                use base64::Engine;
                let password = match password_file {
                    Some(f) => read_secret(f)?,
                    None => password.clone().unwrap_or_default(),
                };
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                format!("Basic {encoded}")
            }
            Credentials::Token { kind, value, file } => {
                let token = match file {
                    Some(f) => read_secret(f)?,
                    None => value.clone().unwrap_or_default(),
                };
                format!("{kind} {token}")
            }
        };
        let mut value = HeaderValue::from_str(&text)
            .map_err(|_| "the credentials hold characters a header cannot carry".to_string())?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

fn read_secret(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > MAX_SECRET_BYTES {
        return Err(format!("{shown} is larger than a credentials file may be"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    Ok(text.trim().to_string())
}

/// A client for a job's scrapes or an http_sd source.
pub fn client(
    tls: Option<&ScrapeTlsConfig>,
    follow_redirects: bool,
    enable_http2: bool,
    what: &str,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(if follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        });
    if !enable_http2 {
        builder = builder.http1_only();
    }
    let tls = tls.map(ScrapeTlsConfig::client);
    builder =
        crate::tls::http_client(builder, tls.as_ref(), what).map_err(|e| format!("{what}: {e}"))?;
    builder.build().map_err(|e| format!("{what}: {e}"))
}

/// A body up to `limit` bytes, for discovery answers.
pub async fn read_limited(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, String> {
    let too_large = || format!("the answer is larger than {limit} bytes");
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
    {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
