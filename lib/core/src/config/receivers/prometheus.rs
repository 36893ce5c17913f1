//! `receivers.prometheus`: scraping Prometheus targets. The `config:` block is Prometheus's own
//! configuration (its `global` and `scrape_configs` sections, the shape the Collector's
//! `prometheus` receiver takes), so an existing scrape config carries over. Keys Prometheus has
//! but Sluice does not support are refused by name rather than ignored, so that a config never
//! silently scrapes differently from what it says.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use super::super::errors::{ConfigError, err};
use super::super::tls::TlsClientConfig;
use crate::scrape::relabel::{RelabelConfig, compile_all};

/// Scrapes running at once across all targets of the receiver, unless configured.
pub const DEFAULT_MAX_CONCURRENT_SCRAPES: usize = 32;
/// The largest body read from a target when its job sets no `body_size_limit`: Prometheus's
/// default is unlimited, but an unbounded read is a memory limit someone else sets for us.
pub const DEFAULT_BODY_SIZE_LIMIT: u64 = 32 << 20;
/// The most targets one receiver scrapes (discovery beyond that is refused and counted).
pub const MAX_TARGETS: usize = 10_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusReceiverConfig {
    /// Prometheus's configuration: `global` and `scrape_configs`.
    pub config: PromConfig,
    /// Scrapes in flight at once, over all jobs.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_scrapes: usize,
}

fn default_max_concurrent() -> usize {
    DEFAULT_MAX_CONCURRENT_SCRAPES
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromConfig {
    #[serde(default)]
    pub global: GlobalConfig,
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    #[serde(default = "default_interval", deserialize_with = "prom_duration")]
    pub scrape_interval: Duration,
    #[serde(default = "default_timeout", deserialize_with = "prom_duration")]
    pub scrape_timeout: Duration,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: default_interval(),
            scrape_timeout: default_timeout(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One job, as in Prometheus's `scrape_configs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub job_name: String,
    /// Falls back to `global.scrape_interval`.
    #[serde(default, deserialize_with = "opt_prom_duration")]
    pub scrape_interval: Option<Duration>,
    /// Falls back to `global.scrape_timeout`, and never exceeds the interval.
    #[serde(default, deserialize_with = "opt_prom_duration")]
    pub scrape_timeout: Option<Duration>,
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// URL parameters, as `__param_<name>` target labels.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub honor_labels: bool,
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    /// Most samples per scrape after metric relabeling; more fails the scrape. 0: no limit.
    #[serde(default)]
    pub sample_limit: usize,
    /// Most labels per sample; more fails the scrape. 0: no limit.
    #[serde(default)]
    pub label_limit: usize,
    #[serde(default)]
    pub label_name_length_limit: usize,
    #[serde(default)]
    pub label_value_length_limit: usize,
    /// Most targets this job keeps after relabeling; 0: up to the receiver's own bound.
    #[serde(default)]
    pub target_limit: usize,
    /// Largest body, e.g. `10MB`; 0 or unset: 32 MiB (Prometheus: unlimited).
    #[serde(default, deserialize_with = "byte_size")]
    pub body_size_limit: u64,
    pub basic_auth: Option<ScrapeBasicAuth>,
    pub authorization: Option<Authorization>,
    /// The older spelling of `authorization.credentials`.
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls_config: Option<ScrapeTlsConfig>,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    #[serde(default = "yes")]
    pub enable_http2: bool,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(default)]
    pub http_sd_configs: Vec<HttpSdConfig>,
    #[serde(default)]
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

fn yes() -> bool {
    true
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

fn default_scheme() -> String {
    "http".into()
}

impl ScrapeConfig {
    pub fn interval(&self, global: &GlobalConfig) -> Duration {
        self.scrape_interval.unwrap_or(global.scrape_interval)
    }

    /// The timeout, at most the interval (Prometheus refuses a larger one; a job that only
    /// sets a short interval gets the global timeout cut to it).
    pub fn timeout(&self, global: &GlobalConfig) -> Duration {
        let interval = self.interval(global);
        self.scrape_timeout
            .unwrap_or(global.scrape_timeout.min(interval))
    }

    pub fn body_limit(&self) -> u64 {
        if self.body_size_limit == 0 {
            DEFAULT_BODY_SIZE_LIMIT
        } else {
            self.body_size_limit
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeBasicAuth {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// `Bearer` unless set.
    #[serde(default = "bearer", rename = "type")]
    pub kind: String,
    pub credentials: Option<String>,
    pub credentials_file: Option<PathBuf>,
}

fn bearer() -> String {
    "Bearer".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeTlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl ScrapeTlsConfig {
    pub fn client(&self) -> TlsClientConfig {
        TlsClientConfig {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            insecure_skip_verify: self.insecure_skip_verify,
        }
    }
}

/// A target group: addresses and the labels they share.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// JSON or YAML files of target groups; the last path component may hold a `*` pattern.
    pub files: Vec<PathBuf>,
    /// Every file is re-read this often even when it seems unchanged; changes are noticed
    /// within a second regardless.
    #[serde(default = "default_file_refresh", deserialize_with = "prom_duration")]
    pub refresh_interval: Duration,
}

fn default_file_refresh() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSdConfig {
    pub url: String,
    #[serde(default = "default_http_refresh", deserialize_with = "prom_duration")]
    pub refresh_interval: Duration,
    pub basic_auth: Option<ScrapeBasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls_config: Option<ScrapeTlsConfig>,
}

fn default_http_refresh() -> Duration {
    Duration::from_secs(60)
}

/// Targets from the Kubernetes API: pods, or the addresses behind services' endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSdConfig {
    pub role: KubernetesRole,
    /// The API server; unset: the cluster the gateway runs in (its service account).
    pub api_server: Option<String>,
    #[serde(default)]
    pub namespaces: KubernetesNamespaces,
    /// How often the objects are listed again (Prometheus watches instead).
    #[serde(
        default = "default_kubernetes_refresh",
        deserialize_with = "prom_duration"
    )]
    pub refresh_interval: Duration,
    pub basic_auth: Option<ScrapeBasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls_config: Option<ScrapeTlsConfig>,
}

fn default_kubernetes_refresh() -> Duration {
    Duration::from_secs(15)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesRole {
    Pod,
    Endpoints,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesNamespaces {
    /// Only these namespaces; empty: all.
    #[serde(default)]
    pub names: Vec<String>,
    /// Also the namespace the gateway runs in (read from its service account).
    #[serde(default)]
    pub own_namespace: bool,
}

impl PrometheusReceiverConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.max_concurrent_scrapes == 0 || self.max_concurrent_scrapes > 1024 {
            err(
                errors,
                format!("{path}.max_concurrent_scrapes"),
                "must be between 1 and 1024",
            );
        }
        let global = &self.config.global;
        let base = format!("{path}.config");
        if global.scrape_timeout > global.scrape_interval {
            err(
                errors,
                format!("{base}.global.scrape_timeout"),
                "must not be longer than global.scrape_interval",
            );
        }
        if self.config.scrape_configs.is_empty() {
            err(
                errors,
                format!("{base}.scrape_configs"),
                "no scrape_configs: name at least one job to scrape",
            );
        }
        let mut jobs = HashSet::new();
        for (i, job) in self.config.scrape_configs.iter().enumerate() {
            let at = format!("{base}.scrape_configs[{i}]");
            if job.job_name.is_empty() {
                err(errors, format!("{at}.job_name"), "must not be empty");
            } else if !jobs.insert(job.job_name.as_str()) {
                err(
                    errors,
                    format!("{at}.job_name"),
                    format!("`{}` is used by an earlier job", job.job_name),
                );
            }
            job.validate(global, &at, errors);
        }
    }
}

impl ScrapeConfig {
    fn validate(&self, global: &GlobalConfig, at: &str, errors: &mut Vec<ConfigError>) {
        let interval = self.interval(global);
        if interval < Duration::from_millis(100) {
            err(
                errors,
                format!("{at}.scrape_interval"),
                "must be at least 100ms",
            );
        }
        if self.timeout(global) > interval {
            err(
                errors,
                format!("{at}.scrape_timeout"),
                format!(
                    "{:?} is longer than the scrape interval {interval:?}",
                    self.timeout(global)
                ),
            );
        }
        if self.timeout(global).is_zero() {
            err(errors, format!("{at}.scrape_timeout"), "must be above zero");
        }
        if self.scheme != "http" && self.scheme != "https" {
            err(
                errors,
                format!("{at}.scheme"),
                format!("`{}`: use http or https", self.scheme),
            );
        }
        if !self.metrics_path.starts_with('/') {
            err(errors, format!("{at}.metrics_path"), "must start with `/`");
        }
        let credentials = [
            self.basic_auth.is_some(),
            self.authorization.is_some(),
            self.bearer_token.is_some() || self.bearer_token_file.is_some(),
        ];
        if credentials.iter().filter(|c| **c).count() > 1 {
            err(
                errors,
                at,
                "at most one of basic_auth, authorization and bearer_token(_file)",
            );
        }
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            err(
                errors,
                at,
                "bearer_token and bearer_token_file are exclusive",
            );
        }
        check_auth(
            self.basic_auth.as_ref(),
            self.authorization.as_ref(),
            at,
            errors,
        );
        if let Some(tls) = &self.tls_config {
            check_tls(tls, &format!("{at}.tls_config"), errors);
        }
        for (g, group) in self.static_configs.iter().enumerate() {
            for (t, target) in group.targets.iter().enumerate() {
                if let Err(e) = check_address(target) {
                    err(errors, format!("{at}.static_configs[{g}].targets[{t}]"), e);
                }
            }
            for name in group.labels.keys() {
                if !is_label_name(name) {
                    err(
                        errors,
                        format!("{at}.static_configs[{g}].labels.{name}"),
                        "not a valid label name",
                    );
                }
            }
        }
        for (f, sd) in self.file_sd_configs.iter().enumerate() {
            if sd.files.is_empty() {
                err(
                    errors,
                    format!("{at}.file_sd_configs[{f}].files"),
                    "name at least one file",
                );
            }
            for (n, file) in sd.files.iter().enumerate() {
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let ext_ok = [".json", ".yml", ".yaml"]
                    .iter()
                    .any(|ext| name.ends_with(ext));
                if !ext_ok {
                    err(
                        errors,
                        format!("{at}.file_sd_configs[{f}].files[{n}]"),
                        "must end in .json, .yml or .yaml",
                    );
                }
                if file
                    .parent()
                    .is_some_and(|p| p.to_string_lossy().contains('*'))
                {
                    err(
                        errors,
                        format!("{at}.file_sd_configs[{f}].files[{n}]"),
                        "a `*` pattern is allowed in the file name only",
                    );
                }
            }
        }
        for (h, sd) in self.http_sd_configs.iter().enumerate() {
            let p = format!("{at}.http_sd_configs[{h}]");
            check_client(
                Some((&sd.url, "url")),
                sd.basic_auth.as_ref(),
                sd.authorization.as_ref(),
                sd.tls_config.as_ref(),
                &p,
                errors,
            );
        }
        for (k, sd) in self.kubernetes_sd_configs.iter().enumerate() {
            let p = format!("{at}.kubernetes_sd_configs[{k}]");
            check_client(
                sd.api_server.as_deref().map(|url| (url, "api_server")),
                sd.basic_auth.as_ref(),
                sd.authorization.as_ref(),
                sd.tls_config.as_ref(),
                &p,
                errors,
            );
            if sd.refresh_interval < Duration::from_secs(1) {
                err(
                    errors,
                    format!("{p}.refresh_interval"),
                    "must be at least 1s",
                );
            }
        }
        for (field, rules) in [
            ("relabel_configs", &self.relabel_configs),
            ("metric_relabel_configs", &self.metric_relabel_configs),
        ] {
            if let Err(problems) = compile_all(rules) {
                for (i, message) in problems {
                    err(errors, format!("{at}.{field}[{i}]"), message);
                }
            }
        }
    }
}

/// A discovery source's HTTP client: its URL (and the key naming it), credentials and TLS.
fn check_client(
    url: Option<(&str, &str)>,
    basic: Option<&ScrapeBasicAuth>,
    authorization: Option<&Authorization>,
    tls: Option<&ScrapeTlsConfig>,
    at: &str,
    errors: &mut Vec<ConfigError>,
) {
    if let Some((url, key)) = url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        err(
            errors,
            format!("{at}.{key}"),
            "must be an http:// or https:// URL",
        );
    }
    check_auth(basic, authorization, at, errors);
    if let Some(tls) = tls {
        check_tls(tls, &format!("{at}.tls_config"), errors);
    }
}

fn check_auth(
    basic: Option<&ScrapeBasicAuth>,
    authorization: Option<&Authorization>,
    at: &str,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(b) = basic
        && b.password.is_some()
        && b.password_file.is_some()
    {
        err(
            errors,
            format!("{at}.basic_auth"),
            "password and password_file are exclusive",
        );
    }
    if let Some(a) = authorization {
        if a.credentials.is_some() && a.credentials_file.is_some() {
            err(
                errors,
                format!("{at}.authorization"),
                "credentials and credentials_file are exclusive",
            );
        }
        if a.kind.eq_ignore_ascii_case("basic") {
            err(
                errors,
                format!("{at}.authorization.type"),
                "use basic_auth for Basic credentials",
            );
        }
        if a.kind.is_empty()
            || !a
                .kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            err(
                errors,
                format!("{at}.authorization.type"),
                "must be a single word such as Bearer",
            );
        }
    }
}

fn check_tls(tls: &ScrapeTlsConfig, at: &str, errors: &mut Vec<ConfigError>) {
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        err(
            errors,
            at,
            "a client certificate needs both cert_file and key_file",
        );
    }
    if tls.server_name.is_some() {
        err(
            errors,
            format!("{at}.server_name"),
            "not supported: the name checked is the target's host; address the target by that name",
        );
    }
}

/// `host:port` or `host` as Prometheus takes it in `targets` (no scheme, no path).
pub fn check_address(address: &str) -> Result<(), String> {
    if address.is_empty() {
        return Err("an empty target address".into());
    }
    if address.contains("://") || address.contains('/') {
        return Err(format!(
            "`{address}` is not host:port: set the scheme with `scheme` and the path with `metrics_path`"
        ));
    }
    if address
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!("`{address}` holds whitespace"));
    }
    Ok(())
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Prometheus's duration syntax: units `y w d h m s ms`, combined largest first (`1h30m`).
pub fn parse_prom_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration `{text}`: expected e.g. `15s`, `1m30s` or `500ms`");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut last_unit = u128::MAX;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 || digits > 12 {
            return Err(bad());
        }
        let value: u128 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit_ms, len) = match rest.as_bytes() {
            [b'm', b's', ..] => (1, 2),
            [b'y', ..] => (365 * 86_400_000, 1),
            [b'w', ..] => (7 * 86_400_000, 1),
            [b'd', ..] => (86_400_000, 1),
            [b'h', ..] => (3_600_000, 1),
            [b'm', ..] => (60_000, 1),
            [b's', ..] => (1_000, 1),
            _ => return Err(bad()),
        };
        if unit_ms >= last_unit {
            return Err(bad());
        }
        last_unit = unit_ms;
        rest = &rest[len..];
        total = total.saturating_add(value.saturating_mul(unit_ms));
    }
    if total > 10 * 365 * 86_400_000 {
        return Err(format!("duration `{text}` is out of range"));
    }
    Ok(Duration::from_millis(total as u64))
}

fn prom_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_prom_duration(&text).map_err(de::Error::custom)
}

fn opt_prom_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    prom_duration(d).map(Some)
}

/// Prometheus's byte sizes: `512`, `10KB`, `64MB`, `1GB` (powers of 1024, as Prometheus reads them).
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("invalid size `{text}`: expected e.g. `10MB`"))?;
    let unit: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" => 1 << 10,
        "MB" | "MIB" => 1 << 20,
        "GB" | "GIB" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size unit `{other}` in `{text}`: use B, KB, MB or GB"
            ));
        }
    };
    value
        .checked_mul(unit)
        .ok_or_else(|| format!("size `{text}` is out of range"))
}

fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(t) => parse_byte_size(&t).map_err(de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_prometheus_writes_them() {
        assert_eq!(parse_prom_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_prom_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_prom_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_prom_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_prom_duration("30s1m").is_err(), "units largest first");
        assert!(parse_prom_duration("1.5s").is_err());
        assert!(parse_prom_duration("").is_err());
        assert!(parse_prom_duration("99999999999999y").is_err());
        assert_eq!(parse_byte_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_byte_size("512"), Ok(512));
        assert!(parse_byte_size("10XB").is_err());
        assert!(parse_byte_size("99999999999GB").is_err());
    }

    #[test]
    fn addresses_and_label_names() {
        assert!(check_address("127.0.0.1:9100").is_ok());
        assert!(check_address("[::1]:9100").is_ok());
        assert!(check_address("http://a:1").is_err());
        assert!(check_address("a:1/metrics").is_err());
        assert!(is_label_name("_a1"));
        assert!(!is_label_name("1a"));
        assert!(!is_label_name("a-b"));
    }
}
