//! The configuration reference (`docs/configuration.md`) against the config schema: every key
//! that a config struct accepts must be documented there, so the reference cannot fall behind
//! the code. The keys come from the structs themselves: serde hands a struct's field names to
//! the deserializer, and the one below records them instead of deserializing.

use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use sluice::config::*;

#[derive(Debug)]
struct Fields(Vec<&'static str>);

impl std::fmt::Display for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for Fields {}

impl de::Error for Fields {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Fields(Vec::new())
    }
}

/// Answers `deserialize_struct` with the field names, as an error.
struct FieldNames;

impl<'de> Deserializer<'de> for FieldNames {
    type Error = Fields;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Fields> {
        Err(Fields(fields.to_vec()))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Fields> {
        Err(Fields(Vec::new()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

fn fields<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    match T::deserialize(FieldNames) {
        Err(Fields(f)) => f,
        Ok(_) => Vec::new(),
    }
}

#[test]
fn every_config_key_is_in_the_reference() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .expect("docs/configuration.md");
    let structs: Vec<(&str, Vec<&'static str>)> = vec![
        ("otlp receiver", fields::<OtlpReceiverConfig>()),
        ("receiver auth", fields::<ReceiverAuthConfig>()),
        ("tenant", fields::<TenantConfig>()),
        ("tenant basic_auth", fields::<ReceiverBasicAuth>()),
        ("tenant limits", fields::<TenantLimitsConfig>()),
        ("attribute limits", fields::<AttributeLimitsConfig>()),
        ("endpoint auth", fields::<EndpointAuthConfig>()),
        ("receiver tls", fields::<TlsServerConfig>()),
        ("otlp protocols", fields::<OtlpProtocols>()),
        ("grpc server", fields::<GrpcServerConfig>()),
        ("http server", fields::<HttpServerConfig>()),
        (
            "remote_write receiver",
            fields::<RemoteWriteReceiverConfig>(),
        ),
        ("prometheus receiver", fields::<PrometheusReceiverConfig>()),
        ("prometheus config", fields::<PromConfig>()),
        ("prometheus global", fields::<GlobalConfig>()),
        ("scrape_configs", fields::<ScrapeConfig>()),
        ("scrape basic_auth", fields::<ScrapeBasicAuth>()),
        ("scrape authorization", fields::<Authorization>()),
        ("scrape tls_config", fields::<ScrapeTlsConfig>()),
        ("static_configs", fields::<StaticConfig>()),
        ("file_sd_configs", fields::<FileSdConfig>()),
        ("http_sd_configs", fields::<HttpSdConfig>()),
        ("kubernetes_sd_configs", fields::<KubernetesSdConfig>()),
        ("kubernetes namespaces", fields::<KubernetesNamespaces>()),
        (
            "relabel_configs",
            fields::<sluice::scrape::relabel::RelabelConfig>(),
        ),
        ("processor", fields::<ProcessorConfig>()),
        ("plugin limits", fields::<PluginLimits>()),
        ("otlp exporter", fields::<OtlpExporterConfig>()),
        ("tls", fields::<TlsClientConfig>()),
        ("sending_queue", fields::<SendingQueueConfig>()),
        ("retry_on_failure", fields::<RetryConfig>()),
        ("circuit_breaker", fields::<BreakerConfig>()),
        ("debug exporter", fields::<DebugExporterConfig>()),
        ("prometheus exporter", fields::<PrometheusExporterConfig>()),
        ("basic_auth", fields::<BasicAuth>()),
        (
            "remote_write exporter",
            fields::<RemoteWriteExporterConfig>(),
        ),
        ("memory exporter", fields::<MemoryExporterConfig>()),
        (
            "loadbalancing exporter",
            fields::<LoadBalancingExporterConfig>(),
        ),
        ("loadbalancing protocol", fields::<BalancedProtocol>()),
        ("loadbalancing resolver", fields::<ResolverConfig>()),
        ("static resolver", fields::<StaticResolver>()),
        ("dns resolver", fields::<DnsResolver>()),
        ("service", fields::<ServiceConfig>()),
        ("memory_limiter", fields::<MemoryLimiterConfig>()),
        ("service.plugins", fields::<PluginsConfig>()),
        ("pipeline", fields::<PipelineConfig>()),
        ("service.admin", fields::<AdminConfig>()),
        ("service.telemetry", fields::<TelemetryConfig>()),
        ("service.telemetry.traces", fields::<TracesConfig>()),
        ("service.telemetry.logs", fields::<LogsConfig>()),
    ];
    let mut missing = Vec::new();
    for (what, keys) in &structs {
        assert!(
            !keys.is_empty(),
            "{what}: no fields found; is it still a struct?"
        );
        for key in keys {
            let documented = doc.contains(&format!("{key}:")) || doc.contains(&format!("`{key}`"));
            if !documented {
                missing.push(format!("{what}.{key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys the config accepts but docs/configuration.md does not mention: {missing:?}"
    );
}

#[test]
fn the_field_collector_sees_every_field() {
    // A known struct, so that the test above cannot pass by collecting nothing.
    assert_eq!(
        fields::<MemoryLimiterConfig>(),
        ["soft_limit_mib", "hard_limit_mib", "check_interval"]
    );
}
