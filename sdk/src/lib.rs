//! # Sluice plugin SDK
//!
//! Write a Sluice plugin as a Rust type implementing [`Plugin`], export it with
//! [`export_plugin!`], and build it with `cargo build --release --target wasm32-wasip2`. The
//! gateway calls the plugin once per batch with the batch's OTLP request, already decoded into
//! the [`otlp`] types; every method has a default that passes data through unchanged.
//!
//! ```
//! use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
//! use sluice_sdk::{Error, Info, Plugin, Signal, Verdict, keep_spans};
//!
//! /// Drops health-check spans.
//! #[derive(Default)]
//! pub struct DropHealthChecks {
//!     prefix: String,
//! }
//!
//! impl Plugin for DropHealthChecks {
//!     fn describe() -> Info {
//!         Info::new("drop-health-checks", "0.1.0", &[Signal::Traces])
//!     }
//!
//!     fn new(config: &str) -> Result<Self, Error> {
//!         #[derive(serde::Deserialize, Default)]
//!         struct Config { prefix: Option<String> }
//!         let c: Config = sluice_sdk::parse_config(config)?;
//!         Ok(DropHealthChecks { prefix: c.prefix.unwrap_or_else(|| "GET /health".into()) })
//!     }
//!
//!     fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
//!         Ok(keep_spans(batch, |_resource, _scope, span| !span.name.starts_with(&self.prefix)))
//!     }
//! }
//!
//! // In the plugin crate: sluice_sdk::export_plugin!(DropHealthChecks);
//!
//! // A native unit test, with the SDK's mock host:
//! let mut p = DropHealthChecks::new("{}").unwrap();
//! let mut batch = sluice_sdk::testing::traces(&["GET /health", "GET /users"]);
//! assert_eq!(p.traces(&mut batch).unwrap(), Verdict::Keep(vec![1]));
//! ```
//!
//! Data crosses the WebAssembly boundary as one protobuf message per batch (never per record);
//! a plugin that only reads answers [`Verdict::Unchanged`] or [`Verdict::Keep`] and the gateway
//! forwards its own bytes, so only plugins that rewrite pay for an encode.

pub mod host;
pub mod metrics;
pub mod records;
pub mod seen;
pub mod state;
pub mod testing;
pub mod view;
pub mod wire;

#[doc(hidden)]
pub mod guest;

/// The plugin author guide, `docs/plugins.md`: its Rust examples run as doctests, so they
/// cannot drift from the SDK.
#[cfg(doctest)]
#[doc = include_str!("../../docs/plugins.md")]
pub struct PluginGuide;

/// The OTLP types (prost structs from `opentelemetry-proto`).
pub use opentelemetry_proto::tonic as otlp;
pub use prost;
pub use records::{keep_data_points, keep_logs, keep_spans, map_logs, map_spans};
pub use serde_json;

use otlp::collector::logs::v1::ExportLogsServiceRequest;
use otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use otlp::collector::trace::v1::ExportTraceServiceRequest;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "processor",
        path: "wit",
        pub_export_macro: true,
        default_bindings_module: "sluice_sdk::bindings",
    });
}

/// The OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub version: String,
    /// The signals the gateway should call the plugin for.
    pub signals: Vec<Signal>,
    /// Whether the plugin keeps state across batches (see [`Plugin::snapshot`]).
    pub stateful: bool,
}

impl Info {
    pub fn new(name: &str, version: &str, signals: &[Signal]) -> Info {
        Info {
            name: name.into(),
            version: version.into(),
            signals: signals.to_vec(),
            stateful: false,
        }
    }

    pub fn stateful(mut self) -> Info {
        self.stateful = true;
        self
    }
}

/// What to do with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the batch as it came.
    Unchanged,
    /// Keep only the records at these indices (document order across resources and scopes).
    Keep(Vec<u32>),
    /// The plugin changed the batch in place; forward the changed batch.
    Modified,
}

/// A plugin's error. `Config` from `new` keeps the gateway from loading the plugin; `Input`
/// and `Internal` from a call apply the processor's `on_error` policy to that batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Config(String),
    Input(String),
    Internal(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(m) => write!(f, "config: {m}"),
            Error::Input(m) => write!(f, "input: {m}"),
            Error::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Parses the JSON of the processor's `config:` block into `T` (an empty config is `{}`).
pub fn parse_config<T: serde::de::DeserializeOwned>(config: &str) -> Result<T, Error> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))
}

/// Parses a duration in a plugin's config into nanoseconds: `250ms`, `1.5s`, `100us`, `2m`,
/// `1h`, `500ns`; a bare number (or numeric string) counts `bare_unit` nanoseconds per unit.
/// `what` names the setting in the error.
///
/// ```
/// use sluice_sdk::{parse_duration, serde_json::json};
/// assert_eq!(parse_duration(&json!("250ms"), 1e9, "ttl").unwrap(), 250e6);
/// assert_eq!(parse_duration(&json!(2), 1e9, "ttl").unwrap(), 2e9);
/// assert!(parse_duration(&json!("soon"), 1e9, "ttl").is_err());
/// ```
pub fn parse_duration(v: &serde_json::Value, bare_unit: f64, what: &str) -> Result<f64, Error> {
    use serde_json::Value;
    let nanos = match v {
        Value::Number(n) => n.as_f64().map(|x| x * bare_unit),
        Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(s.len());
            let (number, unit) = s.split_at(split);
            let per = match unit.trim() {
                "ns" => Some(1.0),
                "us" | "µs" => Some(1e3),
                "ms" => Some(1e6),
                "s" => Some(1e9),
                "m" => Some(60e9),
                "h" => Some(3600e9),
                "" => Some(bare_unit),
                _ => None,
            };
            match (number.parse::<f64>(), per) {
                (Ok(n), Some(per)) => Some(n * per),
                _ => None,
            }
        }
        _ => None,
    };
    match nanos {
        Some(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(Error::Config(format!(
            "{what}: `{v}` is not a duration; write e.g. `250ms`, `1.5s`, `100us` or `1m`"
        ))),
    }
}

/// A Sluice plugin. Implement the methods for the signals listed in [`Plugin::describe`]; the
/// defaults pass everything through.
pub trait Plugin: Sized + 'static {
    /// Name, version, signals, statefulness.
    fn describe() -> Info;

    /// Builds the plugin from the JSON of its `config:` block.
    fn new(config: &str) -> Result<Self, Error>;

    fn traces(&mut self, _batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
        Ok(Verdict::Unchanged)
    }

    fn metrics(&mut self, _batch: &mut ExportMetricsServiceRequest) -> Result<Verdict, Error> {
        Ok(Verdict::Unchanged)
    }

    fn logs(&mut self, _batch: &mut ExportLogsServiceRequest) -> Result<Verdict, Error> {
        Ok(Verdict::Unchanged)
    }

    /// Reads a traces batch in place, before (and usually instead of) decoding it: return
    /// `Some(Unchanged)` or `Some(Keep(..))` to answer from the [`view`], or `None` to be called
    /// through [`Plugin::traces`] with the decoded batch. A plugin that only reads skips the
    /// decode this way, which is most of a reading plugin's cost. `Some(Modified)` is an error.
    fn read_traces(&mut self, _batch: &view::TracesView<'_>) -> Result<Option<Verdict>, Error> {
        Ok(None)
    }

    /// As [`Plugin::read_traces`], for logs.
    fn read_logs(&mut self, _batch: &view::LogsView<'_>) -> Result<Option<Verdict>, Error> {
        Ok(None)
    }

    /// Rewrites a batch of any signal without decoding all of it, e.g. with
    /// [`wire::rewrite_resources`]: return `Some(..)` to answer, or `None` to be called through
    /// `read_*` and the decoded path. Called first, before `read_traces` and `read_logs`.
    fn rewrite(&mut self, _signal: Signal, _batch: &[u8]) -> Result<Option<wire::Rewrite>, Error> {
        Ok(None)
    }

    /// Called about once a second with the current unix time in nanoseconds.
    fn tick(&mut self, _now: u64) -> Result<(), Error> {
        Ok(())
    }

    /// The state to hand to a fresh instance after a reload or a trap.
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Takes over the state of a previous instance.
    fn restore(&mut self, _state: &[u8]) -> Result<(), Error> {
        Ok(())
    }
}

/// Exports a [`Plugin`] as the component's `sluice:plugin/plugin` interface.
///
/// ```text
/// sluice_sdk::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // Only a WebAssembly build exports the interface; a native build (unit tests) has
        // nothing to export.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        mod __sluice_export {
            #[allow(unused_imports)]
            use super::*;
            use $crate::bindings::exports::sluice::plugin::plugin as wit;

            pub struct Guest;

            impl wit::Guest for Guest {
                fn describe() -> wit::Info {
                    $crate::guest::describe::<$plugin>()
                }
                fn init(config: ::std::string::String) -> ::std::result::Result<(), wit::Error> {
                    $crate::guest::init::<$plugin>(&config)
                }
                fn process(
                    signal: wit::Signal,
                    batch: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<wit::Verdict, wit::Error> {
                    $crate::guest::process::<$plugin>(signal, &batch)
                }
                fn tick(now: u64) -> ::std::result::Result<(), wit::Error> {
                    $crate::guest::tick::<$plugin>(now)
                }
                fn snapshot() -> ::std::vec::Vec<u8> {
                    $crate::guest::snapshot::<$plugin>()
                }
                fn restore(state: ::std::vec::Vec<u8>) -> ::std::result::Result<(), wit::Error> {
                    $crate::guest::restore::<$plugin>(&state)
                }
            }

            $crate::bindings::export!(Guest with_types_in $crate::bindings);
        }
    };
}
