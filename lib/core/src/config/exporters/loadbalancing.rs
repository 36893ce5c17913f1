//! `exporters.loadbalancing`: OTLP to a set of backends, each trace to one of them (consistent
//! hashing by trace id), as the Collector's loadbalancing exporter. The backends come from a
//! static list or from a DNS name resolved again periodically; each backend is an `otlp`
//! exporter built from `protocol.otlp`, with its own queue, retries and breaker.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::super::duration;
use super::super::endpoints::check_url;
use super::super::errors::{ConfigError, err};
use super::{OtlpExporterConfig, SendingQueueConfig};

/// What picks a record's backend.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum RoutingKey {
    /// Spans (and logs that carry a trace id) by trace id; metrics, and logs without a trace
    /// id, by their resource's `service.name`.
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    /// Everything by its resource's `service.name`.
    #[serde(rename = "service")]
    Service,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancingExporterConfig {
    #[serde(default)]
    pub routing_key: RoutingKey,
    pub protocol: BalancedProtocol,
    pub resolver: ResolverConfig,
    /// The queue in front of the split: batches wait here before they are cut per backend.
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancedProtocol {
    /// An `otlp` exporter's settings, without `endpoint` (each backend's is its own).
    pub otlp: OtlpTemplate,
}

/// An `otlp` exporter's settings whose endpoint is filled in per backend.
#[derive(Debug, Clone)]
pub struct OtlpTemplate(pub OtlpExporterConfig);

/// The endpoint a template holds until a backend's replaces it.
const PLACEHOLDER: &str = "backend.invalid:4317";

impl<'de> Deserialize<'de> for OtlpTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut value = serde_yaml_ng::Value::deserialize(d)?;
        if value.is_null() {
            value = serde_yaml_ng::Value::Mapping(Default::default());
        }
        let serde_yaml_ng::Value::Mapping(map) = &mut value else {
            return Err(D::Error::custom(
                "expected the settings of an otlp exporter",
            ));
        };
        if map.contains_key("endpoint") {
            return Err(D::Error::custom(
                "no `endpoint` here: each backend's comes from the resolver",
            ));
        }
        let scheme = if map.contains_key("tls") {
            "https"
        } else {
            "http"
        };
        map.insert(
            "endpoint".into(),
            format!("{scheme}://{PLACEHOLDER}").into(),
        );
        OtlpExporterConfig::deserialize(value)
            .map(OtlpTemplate)
            .map_err(D::Error::custom)
    }
}

impl OtlpTemplate {
    /// The scheme of the backends' endpoints: `https` when TLS is configured.
    pub fn scheme(&self) -> &'static str {
        if self.0.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The `otlp` exporter settings for one backend.
    pub fn for_endpoint(&self, endpoint: &str) -> OtlpExporterConfig {
        let mut c = self.0.clone();
        c.endpoint = endpoint.to_string();
        c
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    #[serde(rename = "static")]
    pub static_list: Option<StaticResolver>,
    pub dns: Option<DnsResolver>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResolver {
    /// `host:port` or URLs (`http://host:port`).
    pub hostnames: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    /// A name whose A/AAAA records are the backends (a headless Service in Kubernetes).
    pub hostname: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// How often the name is resolved again.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// How long one resolution may take.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_port() -> u16 {
    4317
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

/// A backend's endpoint: a URL as written, or `scheme://` before a bare `host:port`.
pub fn backend_endpoint(hostname: &str, scheme: &str) -> String {
    if hostname.contains("://") {
        hostname.to_string()
    } else {
        format!("{scheme}://{hostname}")
    }
}

impl LoadBalancingExporterConfig {
    /// The static backends' endpoints, as the resolver gives them.
    pub fn static_endpoints(&self) -> Vec<String> {
        let scheme = self.protocol.otlp.scheme();
        let mut out: Vec<String> = self
            .resolver
            .static_list
            .iter()
            .flat_map(|s| &s.hostnames)
            .map(|h| backend_endpoint(h.trim(), scheme))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        let otlp = &self.protocol.otlp.0;
        otlp.validate(&format!("{path}.protocol.otlp"), errors);
        match (&self.resolver.static_list, &self.resolver.dns) {
            (Some(_), Some(_)) | (None, None) => err(
                errors,
                format!("{path}.resolver"),
                "give exactly one of `static` and `dns`",
            ),
            (Some(s), None) => {
                if s.hostnames.is_empty() {
                    err(
                        errors,
                        format!("{path}.resolver.static.hostnames"),
                        "list at least one backend",
                    );
                }
                let scheme = self.protocol.otlp.scheme();
                for (i, h) in s.hostnames.iter().enumerate() {
                    let p = format!("{path}.resolver.static.hostnames[{i}]");
                    let endpoint = backend_endpoint(h.trim(), scheme);
                    check_url(&endpoint, &p, errors);
                    if otlp.tls.is_some() && !endpoint.starts_with("https://") {
                        err(errors, &p, "protocol.otlp.tls needs https:// backends");
                    }
                    if s.hostnames[..i].iter().any(|x| x.trim() == h.trim()) {
                        err(errors, &p, format!("`{h}` is listed twice"));
                    }
                }
            }
            (None, Some(d)) => {
                if d.hostname.trim().is_empty() || d.hostname.contains(['/', ' ', ':']) {
                    err(
                        errors,
                        format!("{path}.resolver.dns.hostname"),
                        "a DNS name such as sluice-processing.observability.svc.cluster.local (the port goes in `port`)",
                    );
                }
                if d.port == 0 {
                    err(errors, format!("{path}.resolver.dns.port"), "must not be 0");
                }
                if d.interval < Duration::from_millis(100) {
                    err(
                        errors,
                        format!("{path}.resolver.dns.interval"),
                        "at least 100ms",
                    );
                }
                if d.timeout.is_zero() {
                    err(
                        errors,
                        format!("{path}.resolver.dns.timeout"),
                        "must be more than 0",
                    );
                }
            }
        }
        if otlp.sending_queue.storage.is_some() {
            err(
                errors,
                format!("{path}.protocol.otlp.sending_queue.storage"),
                "the backends' queues are in memory (backends come and go); a disk queue goes in the exporter's own sending_queue",
            );
        }
    }
}
