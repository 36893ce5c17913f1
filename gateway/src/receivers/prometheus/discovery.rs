//! Where a job's targets come from, and what they become: target groups from `static_configs`,
//! `file_sd_configs` (files polled every second for a change, re-read at `refresh_interval`
//! regardless) and `http_sd_configs` (fetched every `refresh_interval`), then Prometheus's
//! target labels and `relabel_configs` ([`targets`]).
//!
//! A discovery source that fails keeps the groups it had, as Prometheus does: a bad edit to a
//! file or an HTTP endpoint that is down does not take the targets away. Files and answers are
//! read up to [`MAX_SD_BYTES`]; groups past [`crate::config::MAX_TARGETS`] targets are cut.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{
    FileSdConfig, GlobalConfig, HttpSdConfig, MAX_TARGETS, ScrapeConfig, StaticConfig,
    check_address, is_label_name, parse_prom_duration,
};
use crate::scrape::otlp::Target;
use crate::scrape::relabel::{Labels, Rule, process};

use super::http::{Credentials, read_limited};

/// The largest file_sd file or http_sd answer read.
pub const MAX_SD_BYTES: u64 = 16 << 20;

/// A target ready to scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    pub target: Target,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// The labels before relabeling, as Prometheus shows them.
    pub discovered: Labels,
    /// Identity: labels and URL.
    pub key: u64,
}

/// One discovery source of a job and the groups it last produced.
#[derive(Debug)]
pub enum Source {
    Static(Vec<StaticConfig>),
    File(FileSource),
    Http(Box<HttpSource>),
    Kubernetes(Box<super::kubernetes::KubernetesSource>),
}

/// A file's modification time and length, `None` when it could not be read.
type Stamp = Option<(SystemTime, u64)>;

#[derive(Debug)]
pub struct FileSource {
    config: FileSdConfig,
    /// Per file: what it looked like when read, and its groups.
    files: BTreeMap<PathBuf, (Stamp, Vec<StaticConfig>)>,
    last_full: Option<Instant>,
}

#[derive(Debug)]
pub struct HttpSource {
    config: HttpSdConfig,
    client: reqwest::Client,
    credentials: Credentials,
    groups: Vec<StaticConfig>,
    next: Instant,
}

/// Why a refresh kept the old groups.
#[derive(Debug)]
pub struct SdFailure {
    pub mechanism: &'static str,
    pub message: String,
}

impl Source {
    pub fn file(config: FileSdConfig) -> Source {
        Source::File(FileSource {
            config,
            files: BTreeMap::new(),
            last_full: None,
        })
    }

    pub fn http(config: HttpSdConfig, client: reqwest::Client, credentials: Credentials) -> Source {
        Source::Http(Box::new(HttpSource {
            config,
            client,
            credentials,
            groups: Vec::new(),
            next: Instant::now(),
        }))
    }

    /// Looks for changes; true when the groups changed. Failures are reported and the old
    /// groups kept.
    pub async fn refresh(&mut self, failures: &mut Vec<SdFailure>) -> bool {
        match self {
            Source::Static(_) => false,
            Source::File(f) => f.refresh(failures).await,
            Source::Http(h) => h.refresh(failures).await,
            Source::Kubernetes(k) => match k.refresh().await {
                Ok(changed) => changed,
                Err(message) => {
                    failures.push(SdFailure {
                        mechanism: "kubernetes_sd",
                        message,
                    });
                    false
                }
            },
        }
    }

    pub fn groups(&self) -> Box<dyn Iterator<Item = &StaticConfig> + '_> {
        match self {
            Source::Static(g) => Box::new(g.iter()),
            Source::File(f) => Box::new(f.files.values().flat_map(|(_, g)| g.iter())),
            Source::Http(h) => Box::new(h.groups.iter()),
            Source::Kubernetes(k) => Box::new(k.groups.iter()),
        }
    }
}

impl FileSource {
    async fn refresh(&mut self, failures: &mut Vec<SdFailure>) -> bool {
        let full = self
            .last_full
            .is_none_or(|t| t.elapsed() >= self.config.refresh_interval);
        if full {
            self.last_full = Some(Instant::now());
        }
        let mut present = Vec::new();
        for pattern in &self.config.files {
            match expand(pattern).await {
                Ok(paths) => present.extend(paths),
                Err(e) => failures.push(SdFailure {
                    mechanism: "file_sd",
                    message: format!("{}: {e}", pattern.display()),
                }),
            }
        }
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|path, _| present.contains(path));
        changed |= self.files.len() != before;
        for path in present {
            let stamp = match tokio::fs::metadata(&path).await {
                Ok(m) => Some((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())),
                Err(_) => None,
            };
            let known = self.files.get(&path).map(|(s, _)| *s);
            if !full && known == Some(stamp) && stamp.is_some() {
                continue;
            }
            match read_groups(&path).await {
                Ok(groups) => {
                    changed |= self.files.get(&path).is_none_or(|(_, old)| *old != groups);
                    self.files.insert(path, (stamp, groups));
                }
                Err(message) => {
                    // Keep what the file held before; remember the stamp so a broken file is
                    // not re-read every second.
                    if let Some(entry) = self.files.get_mut(&path) {
                        entry.0 = stamp;
                    } else {
                        self.files.insert(path.clone(), (stamp, Vec::new()));
                    }
                    failures.push(SdFailure {
                        mechanism: "file_sd",
                        message,
                    });
                }
            }
        }
        changed
    }
}

/// The files a `files` entry names: itself, or the matches of a `*` pattern in its name.
async fn expand(pattern: &Path) -> std::io::Result<Vec<PathBuf>> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains('*') {
        return Ok(if tokio::fs::try_exists(pattern).await.unwrap_or(false) {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let dir = pattern
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut out = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let file = entry.file_name().to_string_lossy().into_owned();
        if wildcard(&name, &file) {
            out.push(entry.path());
        }
        if out.len() >= 10_000 {
            break;
        }
    }
    out.sort();
    Ok(out)
}

/// `*` matches any run of characters; everything else itself.
fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    if parts.len() == 1 {
        return pattern == name;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

async fn read_groups(path: &Path) -> Result<Vec<StaticConfig>, String> {
    let shown = path.display();
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("{shown}: {e}"))?;
    if meta.len() > MAX_SD_BYTES {
        return Err(format!(
            "{shown}: {} bytes is more than the {MAX_SD_BYTES} a file_sd file may hold",
            meta.len()
        ));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("{shown}: {e}"))?;
    let json = path.extension().is_some_and(|e| e == "json");
    let mut groups: Vec<StaticConfig> = if json {
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("{shown}: not a list of target groups: {e}"))?
    } else {
        serde_yaml_ng::from_slice(&bytes)
            .map_err(|e| format!("{shown}: not a list of target groups: {e}"))?
    };
    for g in &mut groups {
        g.labels
            .insert("__meta_filepath".into(), path.display().to_string());
    }
    Ok(groups)
}

impl HttpSource {
    async fn refresh(&mut self, failures: &mut Vec<SdFailure>) -> bool {
        if Instant::now() < self.next {
            return false;
        }
        self.next = Instant::now() + self.config.refresh_interval;
        match self.fetch().await {
            Ok(groups) => {
                let changed = groups != self.groups;
                self.groups = groups;
                changed
            }
            Err(message) => {
                failures.push(SdFailure {
                    mechanism: "http_sd",
                    message: format!("{}: {message}", self.config.url),
                });
                false
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<StaticConfig>, String> {
        let mut request = self
            .client
            .get(&self.config.url)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, super::http::USER_AGENT);
        if let Some(value) = self.credentials.header()? {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        let timeout = self.config.refresh_interval.min(Duration::from_secs(30));
        let fetched = tokio::time::timeout(timeout, async {
            let response = request.send().await.map_err(|e| format!("{e}"))?;
            if response.status() != http::StatusCode::OK {
                return Err(format!("server returned HTTP status {}", response.status()));
            }
            let json = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if !json {
                return Err("the answer is not application/json".into());
            }
            read_limited(response, MAX_SD_BYTES).await
        })
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))??;
        let mut groups: Vec<StaticConfig> = serde_json::from_slice(&fetched)
            .map_err(|e| format!("not a list of target groups: {e}"))?;
        for g in &mut groups {
            g.labels
                .insert("__meta_url".into(), self.config.url.clone());
        }
        Ok(groups)
    }
}

/// The job's targets from its groups: Prometheus's target labels, `relabel_configs`, then
/// the URL and the final labels. Also returns how many were dropped by relabeling or found
/// invalid (with the first reason).
pub fn targets<'a>(
    job: &ScrapeConfig,
    global: &GlobalConfig,
    rules: &[Rule],
    groups: impl Iterator<Item = &'a StaticConfig>,
    seed: u64,
) -> (Vec<TargetSpec>, usize, Option<String>) {
    let mut out: Vec<TargetSpec> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut dropped = 0;
    let mut invalid = None;
    let limit = if job.target_limit > 0 {
        job.target_limit.min(MAX_TARGETS)
    } else {
        MAX_TARGETS
    };
    'groups: for group in groups {
        for address in &group.targets {
            if out.len() >= limit {
                dropped += 1;
                invalid.get_or_insert_with(|| {
                    format!("more than {limit} targets (target_limit): the rest are not scraped")
                });
                break 'groups;
            }
            match target(job, global, rules, group, address, seed) {
                Ok(Some(spec)) => {
                    if seen.insert(spec.key) {
                        out.push(spec);
                    }
                }
                Ok(None) => dropped += 1,
                Err(e) => {
                    dropped += 1;
                    invalid.get_or_insert(e);
                }
            }
        }
    }
    (out, dropped, invalid)
}

fn target(
    job: &ScrapeConfig,
    global: &GlobalConfig,
    rules: &[Rule],
    group: &StaticConfig,
    address: &str,
    seed: u64,
) -> Result<Option<TargetSpec>, String> {
    let mut labels: BTreeMap<String, String> = group.labels.clone();
    labels.insert("__address__".into(), address.to_string());
    let mut defaults = vec![
        ("job".to_string(), job.job_name.clone()),
        ("__scheme__".into(), job.scheme.clone()),
        ("__metrics_path__".into(), job.metrics_path.clone()),
        (
            "__scrape_interval__".into(),
            format_duration(job.interval(global)),
        ),
        (
            "__scrape_timeout__".into(),
            format_duration(job.timeout(global)),
        ),
    ];
    for (name, values) in &job.params {
        if let Some(first) = values.first() {
            defaults.push((format!("__param_{name}"), first.clone()));
        }
    }
    for (k, v) in defaults {
        labels.entry(k).or_insert(v);
    }
    let discovered: Labels = labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let mut relabeled = discovered.clone();
    if !process(&mut relabeled, rules) {
        return Ok(None);
    }
    let get = |name: &str| {
        relabeled
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let Some(address) = get("__address__") else {
        return Ok(None);
    };
    check_address(&address)?;
    let scheme = get("__scheme__").unwrap_or_else(|| job.scheme.clone());
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "`{scheme}` is not a scheme Sluice scrapes (http, https)"
        ));
    }
    let path = get("__metrics_path__").unwrap_or_else(|| job.metrics_path.clone());
    let interval = match get("__scrape_interval__") {
        Some(v) => parse_prom_duration(&v).map_err(|e| format!("__scrape_interval__: {e}"))?,
        None => job.interval(global),
    };
    let timeout = match get("__scrape_timeout__") {
        Some(v) => parse_prom_duration(&v).map_err(|e| format!("__scrape_timeout__: {e}"))?,
        None => job.timeout(global),
    };
    if interval < Duration::from_millis(100) || timeout.is_zero() || timeout > interval {
        return Err(format!(
            "target {address}: scrape timeout {timeout:?} and interval {interval:?} do not fit (0 < timeout <= interval, interval >= 100ms)"
        ));
    }
    // Job params, overridden and extended by `__param_` labels.
    let mut params: Vec<(String, String)> = Vec::new();
    for (name, values) in &job.params {
        if get(&format!("__param_{name}")).is_none() {
            for v in values {
                params.push((name.clone(), v.clone()));
            }
        }
    }
    for (k, v) in &relabeled {
        if let Some(name) = k.strip_prefix("__param_") {
            params.push((name.to_string(), v.clone()));
        }
    }
    let mut url = format!("{scheme}://{address}{path}");
    if !params.is_empty() {
        url.push(if path.contains('?') { '&' } else { '?' });
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        url.push_str(&query.join("&"));
    }
    if reqwest::Url::parse(&url).is_err() {
        return Err(format!("`{url}` is not a valid URL"));
    }
    let mut final_labels: Labels = relabeled
        .iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .cloned()
        .collect();
    if !final_labels.iter().any(|(k, _)| k == "instance") {
        final_labels.push(("instance".into(), address.clone()));
        final_labels.sort();
    }
    if let Some((bad, _)) = final_labels.iter().find(|(k, _)| !is_label_name(k)) {
        return Err(format!("`{bad}` is not a valid label name"));
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    final_labels.hash(&mut h);
    url.hash(&mut h);
    let key = h.finish() ^ seed;
    Ok(Some(TargetSpec {
        target: Target {
            labels: final_labels,
            scheme,
            address,
        },
        url,
        interval,
        timeout,
        discovered,
        key,
    }))
}

/// Prometheus writes durations as `15s`, `1m`, `1m30s`, `500ms`.
fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut s = (ms / 1000) as u64;
    let mut out = String::new();
    for (unit, len) in [("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Percent-encoding for a query component.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Targets by key, to tell what changed.
pub fn by_key(specs: Vec<TargetSpec>) -> HashMap<u64, TargetSpec> {
    specs.into_iter().map(|s| (s.key, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(yaml: &str) -> ScrapeConfig {
        serde_yaml_ng::from_str(yaml).expect("job config")
    }

    #[test]
    fn wildcards_match_file_names() {
        assert!(wildcard("*.json", "a.json"));
        assert!(wildcard("targets-*.yml", "targets-prod.yml"));
        assert!(!wildcard("targets-*.yml", "targets-prod.yaml"));
        assert!(wildcard("a*b*c", "abc"));
        assert!(!wildcard("a*b*c", "acb"));
    }

    #[test]
    fn targets_get_prometheus_labels_and_urls() {
        let job = job(
            "job_name: node\nscrape_interval: 15s\nparams: {module: [http_2xx]}\nstatic_configs: [{targets: ['127.0.0.1:9100', 'b:1'], labels: {env: prod}}]",
        );
        let global = GlobalConfig::default();
        let (specs, dropped, invalid) = targets(&job, &global, &[], job.static_configs.iter(), 0);
        assert_eq!((specs.len(), dropped, invalid), (2, 0, None));
        let t = &specs[0];
        assert_eq!(t.url, "http://127.0.0.1:9100/metrics?module=http_2xx");
        assert_eq!(t.interval, Duration::from_secs(15));
        assert_eq!(t.timeout, Duration::from_secs(10));
        assert_eq!(
            t.target.labels,
            vec![
                ("env".to_string(), "prod".to_string()),
                ("instance".into(), "127.0.0.1:9100".into()),
                ("job".into(), "node".into()),
            ]
        );
        assert!(
            t.discovered
                .iter()
                .any(|(k, v)| k == "__scrape_interval__" && v == "15s")
        );
    }

    #[test]
    fn relabeling_shapes_and_drops_targets() {
        let job = job(r#"
job_name: app
static_configs: [{targets: ['10.0.0.1:80', '10.0.0.2:80'], labels: {__meta_port: '9102', __meta_keep: 'true'}}, {targets: ['10.0.0.3:80']}]
relabel_configs:
  - source_labels: [__meta_keep]
    regex: 'true'
    action: keep
  - source_labels: [__address__, __meta_port]
    regex: '([^:]+)(?::\d+)?;(\d+)'
    replacement: '$1:$2'
    target_label: __address__
  - target_label: __metrics_path__
    replacement: /custom
"#);
        let rules = crate::scrape::relabel::compile_all(&job.relabel_configs).expect("rules");
        let (specs, dropped, _) = targets(
            &job,
            &GlobalConfig::default(),
            &rules,
            job.static_configs.iter(),
            7,
        );
        assert_eq!(dropped, 1, "the group without __meta_keep is dropped");
        let urls: Vec<&str> = specs.iter().map(|s| s.url.as_str()).collect();
        assert_eq!(
            urls,
            ["http://10.0.0.1:9102/custom", "http://10.0.0.2:9102/custom"]
        );
        assert_eq!(specs[0].target.label("instance"), "10.0.0.1:9102");
    }

    #[test]
    fn bad_addresses_are_reported_not_scraped() {
        let job = job(
            "job_name: x\nstatic_configs: [{targets: ['a:1']}]\nrelabel_configs: [{target_label: __address__, replacement: 'http://a/b'}]",
        );
        let rules = crate::scrape::relabel::compile_all(&job.relabel_configs).expect("rules");
        let (specs, dropped, invalid) = targets(
            &job,
            &GlobalConfig::default(),
            &rules,
            job.static_configs.iter(),
            0,
        );
        assert!(specs.is_empty());
        assert_eq!(dropped, 1);
        assert!(invalid.expect("a reason").contains("not host:port"));
    }

    #[test]
    fn durations_are_written_as_prometheus_does() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
    }

    #[tokio::test]
    async fn file_sd_reads_json_and_yaml_and_keeps_groups_on_a_bad_edit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let json = dir.path().join("a.json");
        let yaml = dir.path().join("b.yml");
        std::fs::write(&json, r#"[{"targets": ["h:1"], "labels": {"team": "x"}}]"#).expect("write");
        std::fs::write(&yaml, "- targets: ['h:2', 'h:3']\n").expect("write");
        let mut source = Source::file(FileSdConfig {
            files: vec![dir.path().join("*.json"), yaml.clone()],
            refresh_interval: Duration::from_secs(300),
        });
        let mut failures = Vec::new();
        assert!(source.refresh(&mut failures).await);
        assert!(failures.is_empty(), "{failures:?}");
        let targets: Vec<&String> = source.groups().flat_map(|g| g.targets.iter()).collect();
        assert_eq!(targets, ["h:1", "h:2", "h:3"]);
        assert!(!source.refresh(&mut failures).await, "unchanged files");
        std::fs::write(&yaml, "- targets: [unclosed\n").expect("write");
        source.refresh(&mut failures).await;
        assert_eq!(failures.len(), 1, "{failures:?}");
        let targets: Vec<&String> = source.groups().flat_map(|g| g.targets.iter()).collect();
        assert_eq!(targets, ["h:1", "h:2", "h:3"], "the old groups stay");
        std::fs::remove_file(&json).expect("remove");
        assert!(source.refresh(&mut failures).await);
        assert_eq!(source.groups().count(), 1);
    }
}
