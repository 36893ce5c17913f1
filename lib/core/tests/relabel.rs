//! Golden relabeling cases. Every directory under `tests/relabel/` is one case:
//!
//! - `rules.yaml`: a list of relabel configs, as in a Prometheus `relabel_configs`;
//! - `input.yaml`: a list of label sets (maps);
//! - `expected.yaml`: for each input, the label set Prometheus produces, or `null` when dropped.
//!
//! The expected files were worked out by hand from Prometheus's semantics, so a difference is a
//! bug until shown otherwise. `SLUICE_BLESS=1` rewrites `expected.yaml` from the current output;
//! read the diff before keeping it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use sluice_core::scrape::relabel::{Labels, RelabelConfig, compile_all, process};

type LabelMap = BTreeMap<String, String>;

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs one case; Ok(None) when the output matches (or was blessed), Ok(Some(report)) when not.
fn run_case(dir: &Path, bless: bool) -> Result<Option<String>, String> {
    let configs: Vec<RelabelConfig> = read_yaml(&dir.join("rules.yaml"))?;
    let rules = compile_all(&configs).map_err(|errors| format!("rules.yaml: {errors:?}"))?;
    let inputs: Vec<LabelMap> = read_yaml(&dir.join("input.yaml"))?;

    let actual: Vec<Option<LabelMap>> = inputs
        .into_iter()
        .map(|input| {
            let mut labels: Labels = input.into_iter().collect();
            process(&mut labels, &rules).then(|| labels.into_iter().collect())
        })
        .collect();

    let expected_path = dir.join("expected.yaml");
    if bless {
        let text = serde_yaml_ng::to_string(&actual).map_err(|e| e.to_string())?;
        fs::write(&expected_path, text).map_err(|e| format!("{}: {e}", expected_path.display()))?;
        return Ok(None);
    }
    let expected: Vec<Option<LabelMap>> = read_yaml(&expected_path)?;
    if expected == actual {
        return Ok(None);
    }
    let mut report = String::new();
    if expected.len() != actual.len() {
        report.push_str(&format!(
            "  {} expected results for {} inputs\n",
            expected.len(),
            actual.len()
        ));
    }
    for (i, (want, got)) in expected.iter().zip(&actual).enumerate() {
        if want != got {
            report.push_str(&format!(
                "  input {i}:\n    expected {want:?}\n    actual   {got:?}\n"
            ));
        }
    }
    Ok(Some(report))
}

#[test]
fn golden_relabel_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/relabel");
    let bless = std::env::var_os("SLUICE_BLESS").is_some_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 8,
        "expected the golden cases under {}, found {}",
        root.display(),
        cases.len()
    );

    let mut failures = Vec::new();
    for dir in &cases {
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match run_case(dir, bless) {
            Ok(None) => {}
            Ok(Some(report)) => failures.push(format!("{name}:\n{report}")),
            Err(error) => failures.push(format!("{name}: {error}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases differ (SLUICE_BLESS=1 rewrites expected.yaml):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
