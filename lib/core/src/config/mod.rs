//! Configuration: the YAML file (or the embedded defaults) in, a validated [`Config`] out.
//!
//! Parsing happens in one step from raw text to validated config, and it collects *every*
//! problem it finds, each with its path in the file (`service.pipelines.traces.exporters[1]`) and,
//! for a misspelled name or key, the nearest valid one. Each section has its file
//! ([`receivers`], [`processors`], [`exporters`], [`service`]) and each component kind its
//! config struct with a `validate` that reports into the same list.
//!
//! Nothing here does I/O: files a config names (certificates, token files, built-in plugins)
//! are read by the gateway in its load step after this one, which adds its problems to the
//! same report. That keeps this module a leaf that `sluice validate`'s checks, the fuzzer and
//! every component can use without the gateway's runtime.

pub mod auth;
pub mod duration;
mod endpoints;
mod errors;
pub mod exporters;
pub mod processors;
pub mod receivers;
mod secrets;
pub mod service;
pub mod tls;

use std::path::Path;
use std::time::Duration;

use serde_yaml_ng::Value;

pub use auth::*;
pub use endpoints::is_loopback_endpoint;
pub use errors::{ConfigError, ConfigErrors, err, nearest};
pub use exporters::*;
pub use processors::{
    BUILTIN_PLUGINS, DEFAULT_TIMEOUT_MS, OnError, PluginLimits, ProcessorConfig, ProcessorSpec,
};
pub use receivers::*;
pub use secrets::mask_secrets;
pub use service::*;
pub use tls::{TlsClientConfig, TlsServerConfig};

use crate::model::Signal;
use endpoints::{check_endpoint, check_listeners, check_url};
use errors::{check_refs, kind_of, suggestion};

/// The embedded defaults `sluice run` uses with no `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");

const TOP_LEVEL_KEYS: &[&str] = &["receivers", "processors", "exporters", "service"];

/// A validated configuration: every reference resolves, every value is in range.
#[derive(Debug, Clone)]
pub struct Config {
    pub receivers: Vec<ReceiverSpec>,
    pub exporters: Vec<ExporterSpec>,
    pub processors: Vec<ProcessorSpec>,
    pub pipelines: Vec<PipelineSpec>,
    pub admin_endpoint: String,
    pub admin_tls: Option<TlsServerConfig>,
    /// `service.admin.auth` as written; the gateway reads its secrets into `admin_auth`.
    pub admin_auth_config: Option<EndpointAuthConfig>,
    /// Credentials of the admin endpoint (`service.admin.auth`); empty: open.
    pub admin_auth: Vec<Credential>,
    /// Where compiled plugins are cached, if anywhere.
    pub plugin_cache_dir: Option<std::path::PathBuf>,
    pub plugin_reload_interval: Duration,
    pub logs: LogsConfig,
    /// Where the gateway sends its own traces (OTLP/HTTP), if anywhere.
    pub traces_endpoint: Option<String>,
    pub shutdown_timeout: Duration,
    pub memory_limiter: Option<MemoryLimiterConfig>,
    /// Bytes of estimated decoded size that requests may hold at once, all receivers together.
    pub in_flight_decode_bytes: u64,
}

/// Values given on the command line or in `SLUICE_*` variables; they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub grpc_endpoint: Option<String>,
    pub http_endpoint: Option<String>,
    pub admin_endpoint: Option<String>,
    /// Overrides `service.admin.allow_unauthenticated`.
    pub admin_allow_unauthenticated: Option<bool>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// The embedded defaults, with overrides applied.
    pub fn embedded(overrides: &Overrides) -> Result<Config, ConfigErrors> {
        Config::from_yaml(DEFAULT_CONFIG, "embedded defaults", overrides)
    }

    /// Parses and validates config text; relative plugin paths are relative to the current
    /// directory. Validation only: no file named in it is read (see [`parse`]).
    pub fn from_yaml(
        text: &str,
        source_name: &str,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        Config::parse_with_base(text, source_name, Path::new(""), overrides)
    }

    fn parse_with_base(
        text: &str,
        source_name: &str,
        base: &Path,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let config = parse(text, base, overrides, &mut errors);
        match config {
            Some(c) if errors.is_empty() => Ok(c),
            _ => Err(ConfigErrors {
                source_name: source_name.to_string(),
                errors,
            }),
        }
    }

    /// The OTLP receiver whose HTTP listener also serves remote write: `otlp` if it has HTTP,
    /// else the first OTLP receiver with HTTP.
    pub fn http_host_of(receivers: &[ReceiverSpec]) -> Option<&ReceiverSpec> {
        let has_http = |r: &&ReceiverSpec| matches!(&r.kind, ReceiverKind::Otlp(c) if c.protocols.http.is_some());
        receivers
            .iter()
            .filter(has_http)
            .find(|r| r.name == "otlp")
            .or_else(|| receivers.iter().find(has_http))
    }

    /// The processors at least one pipeline uses.
    pub fn used_processors(&self) -> impl Iterator<Item = &ProcessorSpec> {
        self.processors.iter().filter(|p| {
            self.pipelines
                .iter()
                .any(|pl| pl.processors.contains(&p.name))
        })
    }

    pub fn pipelines_of(&self, signal: Signal) -> impl Iterator<Item = &PipelineSpec> {
        self.pipelines.iter().filter(move |p| p.signal == signal)
    }
}

/// Parses and validates config text, pushing every problem into `errors`. `None` when the text
/// is not a YAML mapping at all; otherwise the config as far as it parsed, for the gateway's
/// load step to go on with (it adds the problems of the files the config names).
pub fn parse(
    text: &str,
    base: &Path,
    overrides: &Overrides,
    errors: &mut Vec<ConfigError>,
) -> Option<Config> {
    let root: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            err(errors, "", format!("invalid YAML: {e}"));
            return None;
        }
    };
    let mut top = match root {
        Value::Mapping(m) => m,
        Value::Null => Default::default(),
        _ => {
            err(errors, "", "the config must be a YAML mapping");
            return None;
        }
    };
    for key in top.keys() {
        let name = key.as_str().unwrap_or("?");
        if !TOP_LEVEL_KEYS.contains(&name) {
            err(
                errors,
                name,
                format!(
                    "unknown top-level key `{name}`{}",
                    suggestion(name, TOP_LEVEL_KEYS)
                ),
            );
        }
    }

    let (receivers, receiver_names) = receivers::parse(top.remove("receivers"), overrides, errors);
    let (processors, processor_names) = processors::parse(top.remove("processors"), base, errors);
    let (exporters, exporter_names) = exporters::parse(top.remove("exporters"), errors);

    // Service, key by key, so that one bad key does not hide the problems of the others.
    let service = service::parse(top.remove("service"), errors);
    let pipelines = pipelines(
        &service,
        &receivers,
        &exporters,
        [&receiver_names, &processor_names, &exporter_names],
        errors,
    );

    let mut admin_endpoint = service.admin.endpoint.clone();
    if let Some(a) = &overrides.admin_endpoint {
        admin_endpoint = a.clone();
    }
    check_endpoint(&admin_endpoint, "service.admin.endpoint", errors);
    if let Some(a) = &service.admin.auth {
        a.validate("service.admin.auth", errors);
    }
    let allow_unauthenticated = overrides
        .admin_allow_unauthenticated
        .unwrap_or(service.admin.allow_unauthenticated);
    let client_certificates = service
        .admin
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca_file.is_some());
    if service.admin.auth.is_none()
        && !client_certificates
        && !allow_unauthenticated
        && !is_loopback_endpoint(&admin_endpoint)
    {
        err(
            errors,
            "service.admin.auth",
            format!(
                "the admin endpoint listens on {admin_endpoint}, beyond loopback, without authentication: \
                 set `service.admin.auth` (a bearer token or basic auth), bind it to 127.0.0.1, \
                 or accept that anyone who reaches it can read the gateway's status and reload its plugins \
                 with `service.admin.allow_unauthenticated: true` (or --admin-allow-unauthenticated, \
                 SLUICE_ADMIN_ALLOW_UNAUTHENTICATED=true)"
            ),
        );
    }
    check_listeners(&receivers, &exporters, &admin_endpoint, errors);
    if let Some(rw) = receivers
        .iter()
        .find(|r| matches!(r.kind, ReceiverKind::RemoteWrite(_)))
        && Config::http_host_of(&receivers).is_none()
    {
        err(
            errors,
            format!("receivers.{}", rw.name),
            "remote write is served on the OTLP/HTTP listener: add an `otlp` receiver with `protocols.http`",
        );
    }

    if let Some(e) = &service.telemetry.traces.endpoint {
        check_url(e, "service.telemetry.traces.endpoint", errors);
    }
    let mut logs = service.telemetry.logs.clone();
    if let Some(level) = &overrides.log_level {
        logs.level = level.clone();
    }
    if let Some(format) = overrides.log_format {
        logs.format = format;
    }
    if !service::valid_log_filter(&logs.level) {
        err(
            errors,
            "service.telemetry.logs.level",
            format!(
                "invalid log level `{}`: use error, warn, info, debug or trace (or a filter such as `sluice=debug,info`)",
                logs.level
            ),
        );
    }

    let plugin_cache_dir = match service.plugins.cache_dir.as_deref() {
        Some("") => None,
        Some(dir) => Some(base.join(dir)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
            })
            .map(|d| d.join("sluice").join("plugins")),
    };
    Some(Config {
        receivers,
        exporters,
        processors,
        pipelines,
        plugin_cache_dir,
        plugin_reload_interval: service.plugins.reload_interval,
        admin_endpoint,
        admin_tls: service.admin.tls.clone(),
        admin_auth_config: service.admin.auth.clone(),
        admin_auth: Vec::new(),
        logs,
        traces_endpoint: service.telemetry.traces.endpoint.clone(),
        shutdown_timeout: service.shutdown_timeout,
        memory_limiter: service.memory_limiter.clone(),
        in_flight_decode_bytes: service.in_flight_decode_mib.saturating_mul(1 << 20),
    })
}

/// `service.pipelines`: each a known signal, with receivers, processors and exporters that are
/// defined and handle that signal.
fn pipelines(
    service: &ServiceConfig,
    receivers: &[ReceiverSpec],
    exporters: &[ExporterSpec],
    [receiver_names, processor_names, exporter_names]: [&[String]; 3],
    errors: &mut Vec<ConfigError>,
) -> Vec<PipelineSpec> {
    fn names(n: &[String]) -> Vec<&str> {
        n.iter().map(String::as_str).collect()
    }
    let (receiver_names, processor_names, exporter_names) = (
        names(receiver_names),
        names(processor_names),
        names(exporter_names),
    );
    let mut pipelines = Vec::new();
    if service.pipelines.is_empty() {
        err(
            errors,
            "service.pipelines",
            "define at least one pipeline (`traces`, `metrics` or `logs`)",
        );
    }
    for (name, p) in &service.pipelines {
        let path = format!("service.pipelines.{name}");
        let signal_name = kind_of(name);
        let Some(signal) = Signal::parse(signal_name) else {
            err(
                errors,
                &path,
                format!(
                    "unknown pipeline signal `{signal_name}`{}",
                    suggestion(signal_name, &["traces", "metrics", "logs"])
                ),
            );
            continue;
        };
        check_refs(
            &p.receivers,
            &receiver_names,
            "receiver",
            &format!("{path}.receivers"),
            errors,
        );
        check_refs(
            &p.exporters,
            &exporter_names,
            "exporter",
            &format!("{path}.exporters"),
            errors,
        );
        for (i, receiver) in p.receivers.iter().enumerate() {
            if let Some(r) = receivers.iter().find(|r| &r.name == receiver)
                && !r.kind.signals().contains(&signal)
            {
                err(
                    errors,
                    format!("{path}.receivers[{i}]"),
                    format!("receiver `{receiver}` does not produce {signal}"),
                );
            }
        }
        for (i, exporter) in p.exporters.iter().enumerate() {
            if let Some(e) = exporters.iter().find(|e| &e.name == exporter)
                && !e.kind.signals().contains(&signal)
            {
                err(
                    errors,
                    format!("{path}.exporters[{i}]"),
                    format!("exporter `{exporter}` does not take {signal}"),
                );
            }
        }
        if !p.processors.is_empty() {
            check_refs(
                &p.processors,
                &processor_names,
                "processor",
                &format!("{path}.processors"),
                errors,
            );
        }
        if p.queue_size == 0 {
            err(errors, format!("{path}.queue_size"), "must be at least 1");
        }
        if p.queue_max_size_mib == 0 {
            err(
                errors,
                format!("{path}.queue_max_size_mib"),
                "must be at least 1",
            );
        }
        pipelines.push(PipelineSpec {
            name: name.clone(),
            signal,
            receivers: p.receivers.clone(),
            processors: p.processors.clone(),
            exporters: p.exporters.clone(),
            queue_size: p.queue_size,
            queue_max_size_mib: p.queue_max_size_mib,
        });
    }
    pipelines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secrets::expand_env;

    fn errors_of(yaml: &str) -> Vec<String> {
        match Config::from_yaml(yaml, "test.yaml", &Overrides::default()) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn loadbalancing_exporters_check_their_resolver_and_backend_template() {
        let config = |exporter: &str| {
            format!(
                "receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: 127.0.0.1:4317 }} }} }} }}\n\
                 exporters: {{ loadbalancing: {exporter} }}\n\
                 service: {{ pipelines: {{ traces: {{ receivers: [otlp], exporters: [loadbalancing] }} }} }}\n"
            )
        };
        let ok = config(
            "{ protocol: { otlp: { timeout: 2s } }, resolver: { static: { hostnames: [a:4317, 'http://b:4317'] } } }",
        );
        assert_eq!(errors_of(&ok), Vec::<String>::new());
        let parsed = Config::from_yaml(&ok, "t.yaml", &Overrides::default()).expect("valid");
        let ExporterKind::LoadBalancing(lb) = &parsed.exporters[0].kind else {
            panic!("loadbalancing")
        };
        assert_eq!(
            lb.static_endpoints(),
            vec!["http://a:4317", "http://b:4317"]
        );
        assert_eq!(lb.routing_key, RoutingKey::TraceId);
        assert_eq!(
            lb.protocol
                .otlp
                .for_endpoint("http://a:4317")
                .timeout
                .as_secs(),
            2
        );
        for (exporter, says) in [
            (
                "{ protocol: { otlp: {} }, resolver: {} }",
                "exactly one of `static` and `dns`",
            ),
            (
                "{ protocol: { otlp: { endpoint: 'http://x:4317' } }, resolver: { static: { hostnames: [a:1] } } }",
                "no `endpoint` here",
            ),
            (
                "{ protocol: { otlp: {} }, resolver: { static: { hostnames: [] } } }",
                "at least one backend",
            ),
            (
                "{ protocol: { otlp: {} }, resolver: { static: { hostnames: [a:1, a:1] } } }",
                "listed twice",
            ),
            (
                "{ protocol: { otlp: { tls: {} } }, resolver: { static: { hostnames: ['http://a:1'] } } }",
                "https://",
            ),
            (
                "{ protocol: { otlp: {} }, resolver: { dns: { hostname: 'svc:4317' } } }",
                "the port goes in `port`",
            ),
            (
                "{ protocol: { otlp: {} }, resolver: { dns: { hostname: svc, interval: 1ms } } }",
                "at least 100ms",
            ),
            (
                "{ protocol: { otlp: {} }, routing_key: span, resolver: { dns: { hostname: svc } } }",
                "routing_key",
            ),
        ] {
            let errors = errors_of(&config(exporter));
            assert!(
                errors.iter().any(|e| e.contains(says)),
                "{exporter}: {errors:?}"
            );
        }
    }

    #[test]
    fn an_admin_endpoint_beyond_loopback_needs_credentials_or_the_opt_out() {
        let config = |admin: &str| {
            format!(
                "receivers: {{ otlp: {{ protocols: {{ http: {{ endpoint: 127.0.0.1:4318 }} }} }} }}\n\
                 exporters: {{ debug: {{}} }}\n\
                 service:\n  pipelines: {{ traces: {{ receivers: [otlp], exporters: [debug] }} }}\n  \
                 admin: {admin}\n"
            )
        };
        let refused = errors_of(&config("{ endpoint: 0.0.0.0:8888 }"));
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].starts_with("service.admin.auth: ")
                && refused[0].contains("0.0.0.0:8888")
                && refused[0].contains("allow_unauthenticated"),
            "{refused:?}"
        );
        for open in [
            "{ endpoint: 127.0.0.1:8888 }",
            "{ endpoint: '[::1]:8888' }",
            "{ endpoint: localhost:8888 }",
            "{ endpoint: 0.0.0.0:8888, allow_unauthenticated: true }",
            "{ endpoint: '[::]:8888', auth: { bearer_token_env: PATH } }",
        ] {
            assert_eq!(errors_of(&config(open)), Vec::<String>::new(), "{open}");
        }
        assert_eq!(errors_of(&config("{ endpoint: 'gateway:8888' }")).len(), 1);
        // The override mechanism reaches both the endpoint and the opt-out.
        let exposed = Overrides {
            admin_endpoint: Some("0.0.0.0:8888".into()),
            ..Default::default()
        };
        assert!(Config::embedded(&exposed).is_err());
        let opted_out = Overrides {
            admin_allow_unauthenticated: Some(true),
            ..exposed
        };
        assert!(Config::embedded(&opted_out).is_ok());
        assert!(is_loopback_endpoint("127.8.9.1:1"));
        assert!(!is_loopback_endpoint("[::]:1"));
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::embedded(&Overrides::default()).expect("defaults validate");
        assert_eq!(c.pipelines.len(), 3);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.admin_endpoint, "127.0.0.1:8888");
    }

    #[test]
    fn overrides_win_over_the_file() {
        let o = Overrides {
            grpc_endpoint: Some("127.0.0.1:14317".into()),
            admin_endpoint: Some("127.0.0.1:18888".into()),
            ..Default::default()
        };
        let c = Config::embedded(&o).expect("valid");
        let Some(ReceiverKind::Otlp(r)) = c.receivers.iter().map(|r| &r.kind).next() else {
            panic!("the defaults start with the otlp receiver")
        };
        assert_eq!(
            r.protocols.grpc.as_ref().map(|g| g.endpoint.as_str()),
            Some("127.0.0.1:14317")
        );
        assert_eq!(
            r.protocols.http.as_ref().map(|g| g.endpoint.as_str()),
            Some("127.0.0.1:4318")
        );
        assert_eq!(c.admin_endpoint, "127.0.0.1:18888");
    }

    #[test]
    fn all_errors_are_reported_with_paths_and_suggestions() {
        let errors = errors_of(
            r#"
receivers:
  otlp:
    protocols:
      grpc: { endpont: 127.0.0.1:4317 }
exporters:
  otlp/jaeger: { endpoint: http://127.0.0.1:14317, protocol: grcp }
  otlp/tempo: { endpoint: http://127.0.0.1:24317 }
  debugg: {}
service:
  pipelines:
    traces: { receivers: [otlp], exporters: [otlp/tempo, otlp/tempp] }
    trace: { receivers: [otlpp], exporters: [otlp/tempo] }
"#,
        );
        let expected = [
            "receivers.otlp.protocols.grpc.endpont: unknown key `endpont`; did you mean `endpoint`?",
            "exporters.otlp/jaeger.protocol: unknown value `grcp`; did you mean `grpc`?",
            "exporters.debugg: unknown exporter type `debugg`; did you mean `debug`?",
            "service.pipelines.trace: unknown pipeline signal `trace`; did you mean `traces`?",
            "service.pipelines.traces.exporters[1]: unknown exporter `otlp/tempp`; did you mean `otlp/tempo`?",
        ];
        for e in expected {
            assert!(
                errors.iter().any(|x| x == e),
                "missing {e:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }

    #[test]
    fn unknown_top_level_key_and_bad_yaml() {
        assert_eq!(
            errors_of("servce: {}\nservice: { pipelines: {} }"),
            vec![
                "servce: unknown top-level key `servce`; did you mean `service`?".to_string(),
                "service.pipelines: define at least one pipeline (`traces`, `metrics` or `logs`)"
                    .to_string()
            ]
        );
        let e = errors_of("receivers: [");
        assert!(e[0].starts_with("invalid YAML"), "{e:?}");
    }

    #[test]
    fn port_conflicts_and_bad_durations() {
        let errors = errors_of(
            r#"
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:8888, read_timeout: 5 parsecs }
exporters:
  debug: {}
service:
  pipelines:
    logs: { receivers: [otlp], exporters: [debug] }
"#,
        );
        assert!(
            errors.iter().any(
                |e| e.contains("read_timeout") && e.contains("invalid duration unit `parsecs`")
            ),
            "{errors:#?}"
        );
    }

    #[test]
    fn env_references_in_plugin_configs_are_expanded() {
        // SAFETY of the test: the variable name is unique to this test.
        let name = "SLUICE_TEST_HASH_KEY_7f3a";
        let yaml = format!("a: [\"x-${{env:{name}}}-y\", 3]\nb: {{ c: \"${{env:{name}}}\" }}");
        let v: Value = serde_yaml_ng::from_str(&yaml).expect("yaml");
        assert!(
            expand_env(v.clone(), "p")
                .expect_err("unset")
                .contains(name)
        );
        #[allow(
            unsafe_code,
            reason = "tests set a process variable no other test reads"
        )]
        // SAFETY: no other thread reads this variable.
        unsafe {
            std::env::set_var(name, "s3cret")
        };
        let out = expand_env(v, "p").expect("set");
        assert_eq!(
            serde_json::to_string(&out).expect("json"),
            r#"{"a":["x-s3cret-y",3],"b":{"c":"s3cret"}}"#
        );
    }

    #[test]
    fn secrets_are_masked_for_display() {
        let shown = mask_secrets(serde_json::json!({
            "hmac_key": "s3cr3t",
            "key": "also secret",
            "api_token": "${env:API_TOKEN}",
            "rules": [{ "match": "email", "password": 1234, "keep": ["user.email"] }],
            "hash_keys": { "k2025": "0123abcd", "k2024": "${env:OLD_KEY}" },
            "endpoint": "http://collector:4318",
        }));
        assert_eq!(
            shown,
            serde_json::json!({
                "hmac_key": "***",
                "key": "***",
                "api_token": "${env:API_TOKEN}",
                "rules": [{ "match": "email", "password": "***", "keep": ["user.email"] }],
                "hash_keys": { "k2025": "***", "k2024": "${env:OLD_KEY}" },
                "endpoint": "http://collector:4318",
            })
        );
    }

    #[test]
    fn listener_conflict_is_reported() {
        let errors = errors_of(
            r#"
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:8888 }
exporters:
  debug: {}
service:
  pipelines:
    logs: { receivers: [otlp], exporters: [debug] }
"#,
        );
        assert_eq!(
            errors,
            vec![
                "receivers.otlp.protocols.grpc.endpoint: endpoint 127.0.0.1:8888 is already used by service.admin.endpoint"
            ]
        );
    }
}
