//! `chaos`: the plugin the gateway's tests use to exercise the runtime.
//!
//! Behaviour per batch, by span name: `chaos:trap` panics (a trap), `chaos:loop` never returns,
//! `chaos:alloc` allocates until the memory limit stops it, `chaos:error` returns an input
//! error, `chaos:probe` tries to read a file, the environment, a socket and the wall clock and
//! renames that span to what it found (`probe:file=denied,env=0,net=denied,clock=0` in the
//! gateway). Hostile ones: `chaos:sleep` sleeps ten seconds (WASI clocks and poll) and then
//! passes the batch, `chaos:sleep_loop` waits in a loop for a second of monotonic time to go by,
//! `chaos:log_flood` writes 5,000 log lines and 5,000 stdout lines with newlines and escape codes
//! in them, `chaos:big_emit` emits 5 MiB in one call, `chaos:emit_rate` emits 3 MiB (a few
//! batches of it a second are over the rate), `chaos:big_replace` renames that span to a 2 MiB
//! name, and `chaos:big_snapshot` makes every later snapshot 17 MiB. Otherwise `mode` decides: `pass` (unchanged), `keep_even` (keeps spans at even
//! indices), `rename` (prefixes span names, so the batch is replaced), `count` (counts spans,
//! emits the total as a metric on every tick, and keeps the count across reloads and traps
//! through snapshot/restore). `pass`, `count` and `keep_even` answer from the SDK's in-place
//! view of the batch; `pass_decoded` is `pass` through the decoded batch, and `noop` answers
//! unchanged without reading the batch (both for benchmarks: `noop` costs what calling a plugin
//! costs).

use sluice_sdk::host::{self, Level};
use sluice_sdk::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_sdk::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_sdk::otlp::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use sluice_sdk::view::TracesView;
use sluice_sdk::{Error, Info, Plugin, Signal, Verdict, keep_spans, map_spans};

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    prefix: String,
    /// Makes `init` fail, to test reloads that must keep the old plugin.
    #[serde(default)]
    fail_init: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Pass,
    PassDecoded,
    Noop,
    KeepEven,
    Rename,
    Count,
}

#[derive(Debug)]
pub struct Chaos {
    config: Config,
    spans_seen: u64,
    big_snapshot: bool,
}

impl Plugin for Chaos {
    fn describe() -> Info {
        Info::new("chaos", env!("CARGO_PKG_VERSION"), &[Signal::Traces]).stateful()
    }

    fn new(config: &str) -> Result<Self, Error> {
        let config: Config = sluice_sdk::parse_config(config)?;
        if config.fail_init {
            return Err(Error::Config("fail_init is set".into()));
        }
        Ok(Chaos {
            config,
            spans_seen: 0,
            big_snapshot: false,
        })
    }

    fn read_traces(&mut self, batch: &TracesView<'_>) -> Result<Option<Verdict>, Error> {
        if self.config.mode == Mode::Noop {
            return Ok(Some(Verdict::Unchanged));
        }
        if matches!(self.config.mode, Mode::Rename | Mode::PassDecoded) {
            return Ok(None);
        }
        let mut spans = 0u32;
        let mut special = false;
        batch.for_each_span(|_, span| {
            special |= span.name.starts_with("chaos:");
            spans += 1;
            Ok(())
        })?;
        if special {
            // Traps, loops and probes run on the decoding path.
            return Ok(None);
        }
        self.spans_seen += u64::from(spans);
        host::log(Level::Debug, &format!("saw {spans} spans"));
        Ok(Some(match self.config.mode {
            Mode::KeepEven => Verdict::Keep((0..spans).step_by(2).collect()),
            _ => Verdict::Unchanged,
        }))
    }

    fn traces(&mut self, batch: &mut ExportTraceServiceRequest) -> Result<Verdict, Error> {
        let names: Vec<&str> = batch
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.name.as_str())
            .collect();
        if names.contains(&"chaos:trap") {
            panic!("chaos:trap asked for a trap");
        }
        if names.contains(&"chaos:loop") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if names.contains(&"chaos:alloc") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        if names.contains(&"chaos:probe") {
            // What the sandbox lets through: report it in the span names.
            let report = probe_sandbox();
            return Ok(map_spans(batch, |s| {
                if s.name == "chaos:probe" {
                    s.name = report.clone();
                    true
                } else {
                    false
                }
            }));
        }
        if names.contains(&"chaos:sleep") {
            std::thread::sleep(std::time::Duration::from_secs(10));
        }
        if names.contains(&"chaos:sleep_loop") {
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_secs(1) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        if names.contains(&"chaos:log_flood") {
            for i in 0..5000 {
                host::log(
                    Level::Warn,
                    &format!("flood {i}\nlevel=ERROR forged gateway line\r\u{1b}[31mred"),
                );
                println!("stdout flood {i}");
            }
        }
        if names.contains(&"chaos:big_emit") {
            host::emit(Signal::Metrics, &vec![0u8; 5 << 20]);
        }
        if names.contains(&"chaos:emit_rate") {
            host::emit(Signal::Metrics, &vec![0u8; 3 << 20]);
        }
        if names.contains(&"chaos:big_snapshot") {
            self.big_snapshot = true;
        }
        if names.contains(&"chaos:big_replace") {
            let long = "x".repeat(2 << 20);
            return Ok(map_spans(batch, |s| {
                if s.name == "chaos:big_replace" {
                    s.name = long.clone();
                    true
                } else {
                    false
                }
            }));
        }
        if names.contains(&"chaos:error") {
            return Err(Error::Input("chaos:error asked for an error".into()));
        }
        self.spans_seen += names.len() as u64;
        host::log(Level::Debug, &format!("saw {} spans", names.len()));
        Ok(match self.config.mode {
            Mode::Pass | Mode::PassDecoded | Mode::Count | Mode::Noop => Verdict::Unchanged,
            Mode::KeepEven => {
                let mut i = 0;
                keep_spans(batch, |_, _, _| {
                    i += 1;
                    (i - 1) % 2 == 0
                })
            }
            Mode::Rename => {
                let prefix = self.config.prefix.clone();
                map_spans(batch, |s| {
                    s.name = format!("{prefix}{}", s.name);
                    true
                })
            }
        })
    }

    fn tick(&mut self, now: u64) -> Result<(), Error> {
        if self.config.mode == Mode::Count {
            host::emit_metrics(&count_metric(self.spans_seen, now));
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        if self.big_snapshot {
            return vec![0u8; 17 << 20];
        }
        self.spans_seen.to_le_bytes().to_vec()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        let bytes: [u8; 8] = state
            .try_into()
            .map_err(|_| Error::Input(format!("state of {} bytes, expected 8", state.len())))?;
        self.spans_seen = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Tries to read a file, the environment, a socket and the clocks.
fn probe_sandbox() -> String {
    let file = match std::fs::read("/etc/hostname") {
        Ok(_) => "open".to_string(),
        Err(_) => "denied".to_string(),
    };
    let env = std::env::vars().count();
    let net = match std::net::TcpStream::connect(("127.0.0.1", 4318)) {
        Ok(_) => "open".to_string(),
        Err(_) => "denied".to_string(),
    };
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("probe:file={file},env={env},net={net},clock={clock}")
}

fn count_metric(total: u64, now: u64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "chaos.spans".into(),
                    description: "Spans the chaos plugin has seen.".into(),
                    unit: "{span}".into(),
                    data: Some(metric::Data::Sum(Sum {
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: now,
                            value: Some(number_data_point::Value::AsInt(total as i64)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

sluice_sdk::export_plugin!(Chaos);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::prost::Message;
    use sluice_sdk::testing;

    #[test]
    fn keep_even_and_rename() {
        let mut p = Chaos::new(r#"{"mode": "keep_even"}"#).expect("valid config");
        let mut batch = testing::traces(&["a", "b", "c"]);
        assert_eq!(p.traces(&mut batch), Ok(Verdict::Keep(vec![0, 2])));
        let mut p = Chaos::new(r#"{"mode": "rename", "prefix": "x-"}"#).expect("valid config");
        let mut batch = testing::traces(&["a"]);
        assert_eq!(p.traces(&mut batch), Ok(Verdict::Modified));
        assert_eq!(batch.resource_spans[0].scope_spans[0].spans[0].name, "x-a");
    }

    #[test]
    fn count_emits_and_survives_snapshot_restore() {
        let mut p = Chaos::new(r#"{"mode": "count"}"#).expect("valid config");
        p.traces(&mut testing::traces(&["a", "b"]))
            .expect("processes");
        let state = p.snapshot();
        let mut q = Chaos::new(r#"{"mode": "count"}"#).expect("valid config");
        q.restore(&state).expect("restores");
        testing::set_now(42);
        q.tick(testing::take_logs().len() as u64).expect("ticks");
        let emitted = testing::take_emitted();
        assert_eq!(emitted.len(), 1);
        let req = ExportMetricsServiceRequest::decode(emitted[0].1.as_slice()).expect("metrics");
        let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(metric::Data::Sum(sum)) = &m.data else {
            panic!("sum expected")
        };
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(2))
        );
    }

    #[test]
    fn bad_config_is_a_config_error() {
        assert!(matches!(
            Chaos::new(r#"{"mode": "nope"}"#),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Chaos::new(r#"{"fail_init": true}"#),
            Err(Error::Config(_))
        ));
    }
}
