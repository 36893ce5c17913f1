//! Golden tests for the OTLP to Prometheus translation.
//!
//! Each `tests/fixtures/prometheus/<case>/` holds `input.json` (a JSON array of OTLP/JSON
//! `ExportMetricsServiceRequest`s, ingested in order), an optional `options.json` (exporter
//! settings), and the expected scrape output in the text format (`expected.prom`) and in
//! OpenMetrics (`expected.om`). `SLUICE_BLESS=1` rewrites the expected files.

use std::path::Path;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice::config::PrometheusExporterConfig;
use sluice::exporters::prometheus::store_config;
use sluice::exporters::series::Store;

#[test]
fn prometheus_translation_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/prometheus");
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("input.json").exists())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let options = std::fs::read_to_string(case.join("options.json")).unwrap_or("{}".into());
        let config: PrometheusExporterConfig =
            serde_json::from_str(&options).expect("valid options.json");
        let input = std::fs::read_to_string(case.join("input.json")).expect("input.json");
        let requests: Vec<ExportMetricsServiceRequest> =
            serde_json::from_str(&input).expect("valid OTLP/JSON requests");
        let mut store = Store::new(store_config(&config));
        let now = Instant::now();
        for (i, r) in requests.iter().enumerate() {
            store.ingest(r, now + Duration::from_millis(i as u64), None);
        }
        for (file, openmetrics) in [("expected.prom", false), ("expected.om", true)] {
            let actual = store.render(openmetrics, now + Duration::from_secs(1));
            let path = case.join(file);
            if bless {
                std::fs::write(&path, &actual).expect("write expected");
                continue;
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_default();
            if actual != expected {
                failures.push(format!(
                    "{}:\n--- expected\n{expected}--- actual\n{actual}",
                    path.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
