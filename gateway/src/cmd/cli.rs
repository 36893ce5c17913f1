//! The `sluice` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use sluice::build_info;
use sluice::config::{LogFormat, Overrides};
use sluice::plugins::project::Lang;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version = build_info::long_version(),
    about = "A telemetry gateway: OTLP in, sandboxed Wasm plugins over each batch, Prometheus and OTLP out."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (on the embedded defaults when no config is given).
    Run(RunArgs),
    /// Check a config file and report every problem with its location, then load and
    /// instantiate every plugin it uses; exit 0 or 64.
    Validate(RunArgs),
    /// SLO tooling.
    Slo {
        #[command(subcommand)]
        command: SloCommand,
    },
    /// Write and test Wasm plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Send generated OTLP load (realistic spans, metrics or logs) at a fixed rate and print
    /// sent, accepted, refused, errors and latency percentiles.
    Loadgen(super::loadgen::LoadgenArgs),
    /// Print a sample of the records passing a point of a running gateway's pipeline (before or
    /// after a processor, or at an exporter), from its admin API.
    Tap(super::tap::TapArgs),
}

#[derive(Debug, Subcommand)]
pub enum SloCommand {
    /// Print Prometheus recording and alerting rules for the SLOs in a gateway config.
    Rules {
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create a plugin project (Rust, Python or JavaScript) with a passing test.
    New {
        /// The project name, e.g. `my-plugin`.
        name: String,
        /// The language: rust (cargo), python (componentize-py) or js (componentize-js).
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// The SDK directory (`sdk/` of a Sluice checkout); found automatically when run from
        /// a checkout.
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// Where to create the crate (default: the current directory).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build the plugin project in a directory, whatever its language, and print the path of
    /// its `.wasm` component.
    Build {
        /// The project directory (default: the current directory).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The SDK directory (`sdk/` of a Sluice checkout), for Python projects built before
        /// the SDK is installed; found automatically when run from a checkout.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Compile a plugin into the cache (what the gateway runs in a child process for large
    /// components).
    #[command(hide = true)]
    Precompile {
        /// The plugin's `.wasm` component.
        plugin: PathBuf,
        /// The cache directory (`service.plugins.cache_dir`).
        #[arg(long)]
        cache_dir: PathBuf,
    },
    /// Run a plugin over one OTLP/JSON batch under the gateway's engine and limits. Given a
    /// project directory, first run the project's own tests and build it.
    Test {
        /// The plugin's `.wasm` component, or a plugin project's directory (default: the
        /// current directory).
        #[arg(default_value = ".")]
        plugin: PathBuf,
        /// An OTLP/JSON batch (traces, metrics or logs); for a project, `batch.json` in it by
        /// default.
        #[arg(long)]
        input: Option<PathBuf>,
        /// The SDK directory, as for `build`.
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// The plugin's config, JSON or YAML (default: `{}`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The expected output as OTLP/JSON; exit 1 if it differs.
        #[arg(long)]
        expect: Option<PathBuf>,
        #[arg(long, default_value_t = 64)]
        memory_mb: usize,
        /// The deadline per call (default: 100, or 1000 for a Python or JavaScript plugin).
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The YAML config file.
    #[arg(long, short = 'c', env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Overrides the `otlp` receiver's gRPC endpoint (host:port).
    #[arg(long, env = "SLUICE_GRPC_ENDPOINT")]
    pub grpc_endpoint: Option<String>,
    /// Overrides the `otlp` receiver's HTTP endpoint (host:port).
    #[arg(long, env = "SLUICE_HTTP_ENDPOINT")]
    pub http_endpoint: Option<String>,
    /// Overrides `service.admin.endpoint` (host:port).
    #[arg(long, env = "SLUICE_ADMIN_ENDPOINT")]
    pub admin_endpoint: Option<String>,
    /// Overrides `service.admin.allow_unauthenticated`: serve the admin endpoint beyond
    /// loopback without credentials.
    #[arg(long, env = "SLUICE_ADMIN_ALLOW_UNAUTHENTICATED", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub admin_allow_unauthenticated: Option<bool>,
    /// Log level or filter, e.g. `debug` or `sluice=debug,info`.
    #[arg(long, env = "SLUICE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log line format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Reload the config when its file changes (checked every second). SIGHUP and
    /// `POST /api/v1/config/reload` reload it in any case.
    #[arg(long, env = "SLUICE_WATCH_CONFIG")]
    pub watch_config: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

impl RunArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            grpc_endpoint: self.grpc_endpoint.clone(),
            http_endpoint: self.http_endpoint.clone(),
            admin_endpoint: self.admin_endpoint.clone(),
            admin_allow_unauthenticated: self.admin_allow_unauthenticated,
            log_level: self.log_level.clone(),
            log_format: self.log_format.map(|f| match f {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
