//! `sluice tap`: prints the records passing one point of a running gateway's pipeline, from its
//! admin API (`GET /api/v1/tap`), as JSON lines or one line of text per record.

use std::io::Write;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::Value;

#[derive(Debug, Args)]
pub struct TapArgs {
    /// The gateway's admin endpoint.
    #[arg(
        long,
        env = "SLUICE_ADMIN_URL",
        default_value = "http://127.0.0.1:8888"
    )]
    pub admin: String,
    /// The pipeline to look into.
    #[arg(long)]
    pub pipeline: String,
    /// Look after this processor (default: before the first one, as received).
    #[arg(long, group = "place")]
    pub after: Option<String>,
    /// Look before this processor.
    #[arg(long, group = "place")]
    pub before: Option<String>,
    /// Look at what this exporter gets (after every processor).
    #[arg(long, group = "place")]
    pub exporter: Option<String>,
    /// Stop after this many records.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// `json`: one OTLP/JSON record a line, with its resource and scope; `text`: a line a
    /// record.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TapFormat,
    /// A bearer token for an admin endpoint with `auth`.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TapFormat {
    Json,
    Text,
}

/// Prints records as they come; returns how many.
pub async fn run(args: &TapArgs) -> Result<usize, String> {
    sluice::tls::install_crypto_provider();
    let mut url = reqwest::Url::parse(args.admin.trim_end_matches('/'))
        .map_err(|e| format!("--admin {:?}: {e}", args.admin))?;
    url.set_path("/api/v1/tap");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("pipeline", &args.pipeline);
        for (key, value) in [
            ("after", &args.after),
            ("before", &args.before),
            ("exporter", &args.exporter),
        ] {
            if let Some(v) = value {
                q.append_pair(key, v);
            }
        }
        q.append_pair("limit", &args.limit.to_string());
        q.append_pair("seconds", &args.seconds.to_string());
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client.get(url.clone());
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("{}: {}", url, sluice::telemetry::error_chain(&e)))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or(body);
        return Err(format!("{status}: {message}"));
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut shown = 0;
    let stdout = std::io::stdout();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| sluice::telemetry::error_chain(&e))?
    {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            let mut out = stdout.lock();
            let written = match args.format {
                TapFormat::Json => out.write_all(line).and_then(|_| out.write_all(b"\n")),
                TapFormat::Text => match serde_json::from_slice::<Value>(line) {
                    Ok(v) => writeln!(out, "{}", text(&v)),
                    Err(_) => out.write_all(line).and_then(|_| out.write_all(b"\n")),
                },
            };
            // A closed pipe (`| head`) ends the tap.
            if written.and_then(|_| out.flush()).is_err() {
                return Ok(shown);
            }
            shown += 1;
        }
    }
    Ok(shown)
}

/// One line for a record: its kind, name, the service, and its attributes.
pub fn text(v: &Value) -> String {
    let service = v
        .pointer("/resource/attributes")
        .and_then(Value::as_array)
        .and_then(|attrs| {
            attrs
                .iter()
                .find(|a| a.get("key").and_then(Value::as_str) == Some("service.name"))
        })
        .and_then(|a| a.pointer("/value/stringValue"))
        .and_then(Value::as_str)
        .unwrap_or("-");
    let attributes = |record: &Value| -> String {
        record
            .get("attributes")
            .and_then(Value::as_array)
            .map(|attrs| {
                attrs
                    .iter()
                    .map(|a| {
                        let key = a.get("key").and_then(Value::as_str).unwrap_or("");
                        format!("{key}={}", any_value(a.get("value")))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    if let Some(span) = v.get("span") {
        let name = span.get("name").and_then(Value::as_str).unwrap_or("");
        let trace = span.get("traceId").and_then(Value::as_str).unwrap_or("");
        format!(
            "span {name:?} service={service} trace={trace} {}",
            attributes(span)
        )
    } else if let Some(log) = v.get("log") {
        let severity = log
            .get("severityText")
            .and_then(Value::as_str)
            .unwrap_or("");
        format!(
            "log {severity} service={service} body={} {}",
            any_value(log.get("body")),
            attributes(log)
        )
    } else if let Some(metric) = v.get("metric") {
        let name = metric.get("name").and_then(Value::as_str).unwrap_or("");
        let points = metric
            .as_object()
            .and_then(|m| {
                [
                    "sum",
                    "gauge",
                    "histogram",
                    "exponentialHistogram",
                    "summary",
                ]
                .iter()
                .find_map(|k| m.get(*k))
            })
            .and_then(|d| d.get("dataPoints"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        format!("metric {name:?} service={service} points={points}")
    } else {
        v.to_string()
    }
}

fn any_value(v: Option<&Value>) -> String {
    let Some(v) = v.and_then(Value::as_object) else {
        return String::new();
    };
    match v.iter().next() {
        // OTLP/JSON writes 64-bit integers as strings.
        Some((kind, Value::String(s))) if kind == "intValue" => s.clone(),
        Some((_, Value::String(s))) => format!("{s:?}"),
        Some((_, other)) => other.to_string(),
        None => String::new(),
    }
}
