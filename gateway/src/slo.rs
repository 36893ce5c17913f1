//! SLO definitions and the Prometheus rules `sluice slo rules` generates for them.
//!
//! SLOs are declared in the `config:` block of a processor running the `slo` plugin (an
//! OpenSLO-compatible subset: name, service, objective, window, SLI). The plugin counts good
//! and bad events into `sluice_slo_events_total{slo,outcome}`; Prometheus aggregates them over
//! every gateway replica with the recording rules below, and alerts with the multiwindow,
//! multi-burn-rate alerts of the SRE Workbook, their factors scaled to the SLO window the way
//! Sloth does (a 30-day window gives 14.4, 6, 3 and 1).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// The windows error ratios are recorded over.
pub const WINDOWS: &[&str] = &["5m", "30m", "1h", "2h", "6h", "1d", "3d"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    pub slos: Vec<Slo>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub name: String,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Percent, e.g. 99.9.
    pub objective: f64,
    /// e.g. `30d` or `28d`.
    #[serde(default = "default_window")]
    pub window: String,
    pub sli: Sli,
    /// Runbook link for the alerts' annotations.
    #[serde(default)]
    pub runbook_url: Option<String>,
}

fn default_window() -> String {
    "30d".into()
}

/// Exactly one of the three kinds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sli {
    /// Good = span not in error (status ERROR or HTTP 5xx), from spans; the plugin reads the
    /// span filters (service, span name, route, kind).
    pub availability: Option<Value>,
    /// Good = span duration at most `threshold_ms`, from spans.
    pub latency: Option<Value>,
    /// The ratio of two metric series from incoming metrics (PromQL selectors).
    pub ratio: Option<RatioSli>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RatioSli {
    /// Selector of good events (e.g. `http_requests_total{code!~"5.."}`); or give `bad`.
    pub good: Option<String>,
    pub bad: Option<String>,
    pub total: String,
}

/// Parses a duration like `30d`, `28d`, `6h`, `5m`.
pub fn window_duration(w: &str) -> Result<Duration, String> {
    let (n, unit) = w.split_at(w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len()));
    let n: u64 = n.parse().map_err(|_| format!("invalid window `{w}`"))?;
    let secs = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err(format!("invalid window `{w}`: use m, h, d or w")),
    };
    Ok(Duration::from_secs(n * secs))
}

/// The SLOs of every processor in a gateway config that declares `config.slos`.
pub fn slos_in_gateway_config(text: &str) -> Result<Vec<Slo>, String> {
    let root: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    let mut out = Vec::new();
    let Some(processors) = root.get("processors").and_then(Value::as_mapping) else {
        return Ok(out);
    };
    for (name, p) in processors {
        let name = name.as_str().unwrap_or("?");
        let Some(config) = p.get("config") else {
            continue;
        };
        if config.get("slos").is_none() {
            continue;
        }
        let c: SloConfig = serde_yaml_ng::from_value(config.clone())
            .map_err(|e| format!("processors.{name}.config: {e}"))?;
        for slo in &c.slos {
            validate(slo)
                .map_err(|e| format!("processors.{name}.config.slos[{}]: {e}", slo.name))?;
        }
        out.extend(c.slos);
    }
    Ok(out)
}

fn validate(slo: &Slo) -> Result<(), String> {
    if !(slo.objective > 0.0 && slo.objective < 100.0) {
        return Err(format!(
            "objective {} must be between 0 and 100 (a percentage)",
            slo.objective
        ));
    }
    if slo.name.is_empty()
        || !slo
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err("name must be non-empty and use letters, digits, -, _ and .".into());
    }
    let window = window_duration(&slo.window)?;
    if window < Duration::from_secs(86400) {
        return Err(format!("window {} is shorter than a day", slo.window));
    }
    let kinds = [
        slo.sli.availability.is_some(),
        slo.sli.latency.is_some(),
        slo.sli.ratio.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err("sli needs exactly one of `availability`, `latency` and `ratio`".into());
    }
    if let Some(r) = &slo.sli.ratio
        && r.good.is_some() == r.bad.is_some()
    {
        return Err("a ratio SLI needs exactly one of `good` and `bad`".into());
    }
    Ok(())
}

/// The multiwindow multi-burn-rate alerts: (severity, long window, short window, share of the
/// error budget consumed within the long window).
const ALERTS: &[(&str, &str, &str, f64)] = &[
    ("page", "1h", "5m", 0.02),
    ("page", "6h", "30m", 0.05),
    ("ticket", "1d", "2h", 0.10),
    ("ticket", "3d", "6h", 0.10),
];

/// The burn-rate factor for consuming `share` of the budget within `alert_window` of an SLO
/// `window`: 14.4 for 2 % in 1 h of 30 days.
pub fn burn_factor(share: f64, alert_window: &str, window: &str) -> Result<f64, String> {
    let a = window_duration(alert_window)?.as_secs_f64();
    let w = window_duration(window)?.as_secs_f64();
    Ok(share * w / a)
}

fn error_ratio_expr(slo: &Slo, w: &str) -> String {
    let name = &slo.name;
    match &slo.sli.ratio {
        None => format!(
            "sum(rate(sluice_slo_events_total{{slo=\"{name}\",outcome=\"bad\"}}[{w}]))\n/\n(sum(rate(sluice_slo_events_total{{slo=\"{name}\"}}[{w}])) > 0)"
        ),
        Some(r) => match (&r.good, &r.bad) {
            (_, Some(bad)) => format!(
                "sum(rate({bad}[{w}]))\n/\n(sum(rate({total}[{w}])) > 0)",
                total = r.total
            ),
            (Some(good), None) => format!(
                "1 - (\n  sum(rate({good}[{w}]))\n  /\n  (sum(rate({total}[{w}])) > 0)\n)",
                total = r.total
            ),
            (None, None) => String::new(),
        },
    }
}

fn fmt_num(v: f64) -> String {
    let s = format!("{v:.10}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Prometheus rule file (recording and alerting rules) for `slos`.
pub fn rules(slos: &[Slo]) -> Result<String, String> {
    let mut out = String::from(
        "# Generated by `sluice slo rules`. Do not edit: change the SLOs in the gateway config.\ngroups:\n",
    );
    for slo in slos {
        validate(slo)?;
        let name = &slo.name;
        let budget = 1.0 - slo.objective / 100.0;
        let service = slo.service.clone().unwrap_or_default();
        let labels = format!(
            "        labels:\n          slo: {name:?}\n          service: {service:?}\n          objective: {:?}",
            fmt_num(slo.objective)
        );
        let mut windows: Vec<&str> = WINDOWS.to_vec();
        if !windows.contains(&slo.window.as_str()) {
            windows.push(&slo.window);
        }
        let _ = writeln!(out, "  - name: sluice-slo-{name}-recordings\n    rules:");
        for w in &windows {
            let _ = writeln!(
                out,
                "      - record: slo:sli_error:ratio_rate{w}\n        expr: |\n{}\n{labels}",
                indent(&error_ratio_expr(slo, w), 10),
            );
        }
        let _ = writeln!(
            out,
            "      - record: slo:objective:ratio\n        expr: vector({})\n        labels:\n          slo: {name:?}\n          service: {service:?}",
            fmt_num(slo.objective / 100.0)
        );
        let _ = writeln!(
            out,
            "      - record: slo:error_budget:ratio\n        expr: vector({})\n        labels:\n          slo: {name:?}\n          service: {service:?}",
            fmt_num(budget)
        );
        // Remaining budget over the SLO window; with no traffic, nothing was spent.
        let _ = writeln!(
            out,
            "      - record: slo:error_budget:remaining_ratio\n        expr: |\n          (1 - max(slo:sli_error:ratio_rate{w}{{slo={name:?}}}) / {b})\n          or on() vector(1)\n        labels:\n          slo: {name:?}\n          service: {service:?}",
            w = slo.window,
            b = fmt_num(budget)
        );
        let _ = writeln!(out, "  - name: sluice-slo-{name}-alerts\n    rules:");
        for severity in ["page", "ticket"] {
            let mut conditions = Vec::new();
            for (sev, long, short, share) in ALERTS {
                if *sev != severity {
                    continue;
                }
                let factor = burn_factor(*share, long, &slo.window)?;
                let threshold = fmt_num(factor * budget);
                conditions.push(format!(
                    "(\n  max(slo:sli_error:ratio_rate{long}{{slo={name:?}}}) > {threshold}\n  and\n  max(slo:sli_error:ratio_rate{short}{{slo={name:?}}}) > {threshold}\n)"
                ));
            }
            let alert = format!(
                "SLO{}{}BurnRate",
                name.split(['-', '_', '.'])
                    .map(|w| {
                        let mut c = w.chars();
                        c.next()
                            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                            .unwrap_or_default()
                    })
                    .collect::<String>(),
                if severity == "page" {
                    "High"
                } else {
                    "Elevated"
                }
            );
            let runbook = slo
                .runbook_url
                .clone()
                .unwrap_or_else(|| format!("https://runbooks.example/slo/{name}"));
            let _ = writeln!(
                out,
                "      - alert: {alert}\n        expr: |\n{}\n        labels:\n          severity: {severity}\n          slo: {name:?}\n          service: {service:?}\n        annotations:\n          summary: {summary:?}\n          description: {desc:?}\n          runbook_url: {runbook:?}",
                indent(&conditions.join("\nor\n"), 10),
                summary = format!("{name}: the error budget is burning too fast ({severity})"),
                desc = format!(
                    "{name} ({}) objective {}% over {}: error rate above the {severity} burn-rate thresholds.",
                    if service.is_empty() { "-" } else { &service },
                    fmt_num(slo.objective),
                    slo.window
                ),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_factors_match_the_sre_workbook_for_30_days() {
        let f = |share, w| burn_factor(share, w, "30d").expect("valid");
        assert!((f(0.02, "1h") - 14.4).abs() < 1e-9);
        assert!((f(0.05, "6h") - 6.0).abs() < 1e-9);
        assert!((f(0.10, "1d") - 3.0).abs() < 1e-9);
        assert!((f(0.10, "3d") - 1.0).abs() < 1e-9);
        // Scaled for a 28-day window.
        assert!((burn_factor(0.02, "1h", "28d").expect("valid") - 13.44).abs() < 1e-9);
    }

    #[test]
    fn slos_are_read_from_a_gateway_config_and_validated() {
        let text = r#"
processors:
  slo:
    plugin: builtin/slo
    config:
      slos:
        - { name: checkout-availability, service: checkout, objective: 99.9, window: 30d, sli: { availability: {} } }
  other: { plugin: x.wasm, config: { a: 1 } }
"#;
        let slos = slos_in_gateway_config(text).expect("valid");
        assert_eq!(slos.len(), 1);
        assert_eq!(slos[0].objective, 99.9);
        let bad = text.replace("99.9", "120");
        assert!(
            slos_in_gateway_config(&bad)
                .expect_err("invalid")
                .contains("objective")
        );
    }
}

/// The latest SLO figures the `slo` plugin emitted (`sluice.slo.*` metrics), by SLO name, for
/// `GET /api/v1/slos`. Bounded by the number of configured SLOs.
#[derive(Debug, Default)]
pub struct SloBoard(std::sync::Mutex<std::collections::BTreeMap<String, SloStatus>>);

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SloStatus {
    pub service: String,
    pub good: f64,
    pub bad: f64,
    /// Error ratio over the window divided by the error budget, by window.
    pub burn_rates: std::collections::BTreeMap<String, f64>,
    pub error_budget_remaining: Option<f64>,
}

const MAX_SLOS: usize = 1000;

impl SloBoard {
    pub fn observe(
        &self,
        req: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
    ) {
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as N;
        let mut board = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for m in req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name.starts_with("sluice.slo."))
        {
            let points = match &m.data {
                Some(Data::Sum(s)) => &s.data_points,
                Some(Data::Gauge(g)) => &g.data_points,
                _ => continue,
            };
            for p in points {
                let attr = |k: &str| {
                    p.attributes.iter().find(|a| a.key == k).and_then(|a| {
                        match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(V::StringValue(s)) => Some(s.clone()),
                            _ => None,
                        }
                    })
                };
                let Some(slo) = attr("slo") else { continue };
                let value = match p.value {
                    Some(N::AsDouble(d)) => d,
                    Some(N::AsInt(i)) => i as f64,
                    None => continue,
                };
                if !board.contains_key(&slo) && board.len() >= MAX_SLOS {
                    continue;
                }
                let entry = board.entry(slo).or_default();
                if let Some(service) = attr("service") {
                    entry.service = service;
                }
                match m.name.as_str() {
                    "sluice.slo.events" => match attr("outcome").as_deref() {
                        Some("good") => entry.good = value,
                        Some("bad") => entry.bad = value,
                        _ => {}
                    },
                    "sluice.slo.burn_rate" => {
                        if let Some(w) = attr("window") {
                            entry.burn_rates.insert(w, value);
                        }
                    }
                    "sluice.slo.error_budget.remaining" => {
                        entry.error_budget_remaining = Some(value)
                    }
                    _ => {}
                }
            }
        }
    }

    pub fn snapshot(&self) -> std::collections::BTreeMap<String, SloStatus> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
