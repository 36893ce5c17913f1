//! drop-health: drops health-check spans (those whose name starts with a configured prefix).
//! The same plugin is in `examples/plugins/python/drop_health` and
//! `examples/plugins/js/drop_health`; the end-to-end tests hold the three to one output.

use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::{Error, Info, Plugin, Signal, Verdict, keep_spans};

const DEFAULT_PREFIXES: [&str; 3] = ["GET /health", "GET /ready", "GET /live"];

#[derive(Debug)]
pub struct DropHealth {
    prefixes: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    prefixes: Option<sluice_sdk::serde_json::Value>,
}

impl Plugin for DropHealth {
    fn describe() -> Info {
        Info::new("drop-health", "0.1.0", &[Signal::Traces])
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config: Config = sluice_sdk::parse_config(config)?;
        let prefixes = match config.prefixes {
            None => DEFAULT_PREFIXES.map(String::from).to_vec(),
            Some(v) => sluice_sdk::serde_json::from_value(v)
                .map_err(|_| Error::Config("`prefixes` must be a list of strings".into()))?,
        };
        Ok(DropHealth { prefixes })
    }

    fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
        Ok(keep_spans(batch, |_, _, span| {
            !self
                .prefixes
                .iter()
                .any(|p| span.name.starts_with(p.as_str()))
        }))
    }
}

sluice_sdk::export_plugin!(DropHealth);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing;

    #[test]
    fn drops_health_checks_and_keeps_the_rest() {
        let mut plugin = DropHealth::new("{}").expect("default config");
        let mut batch = testing::traces(&[
            "GET /health",
            "GET /orders",
            "GET /ready",
            "GET /healthz/deep",
        ]);
        assert_eq!(plugin.traces(&mut batch), Ok(Verdict::Keep(vec![1])));
    }

    #[test]
    fn configured_prefixes_replace_the_defaults() {
        let mut plugin = DropHealth::new(r#"{"prefixes": ["ping"]}"#).expect("valid config");
        let mut batch = testing::traces(&["ping", "GET /health"]);
        assert_eq!(plugin.traces(&mut batch), Ok(Verdict::Keep(vec![1])));
    }

    #[test]
    fn bad_config_is_refused() {
        for bad in [
            r#"{"prefix": "x"}"#,
            r#"{"prefixes": "GET /health"}"#,
            r#"{"prefixes": [1]}"#,
        ] {
            assert!(
                matches!(DropHealth::new(bad), Err(Error::Config(_))),
                "{bad}"
            );
        }
    }
}
