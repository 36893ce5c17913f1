//! Golden tests for config validation, and a check of every shipped example config.
//!
//! Each `tests/fixtures/config/<case>/` holds a `config.yaml` and an `expected.txt`: either
//! `valid` or the exact error report. `SLUICE_BLESS=1 cargo test` rewrites the expected files
//! after an intended change.

use std::path::{Path, PathBuf};

use sluice::config::{Overrides, load_file, load_yaml};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway/ has a parent")
        .to_path_buf()
}

fn report(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("fixture readable");
    match load_yaml(&text, "config.yaml", &Overrides::default()) {
        Ok(_) => "valid\n".to_string(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_fixtures() {
    let dir = repo().join("tests/fixtures/config");
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("config.yaml").exists())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no fixtures in {}", dir.display());
    let mut failures = Vec::new();
    for case in cases {
        let actual = report(&case.join("config.yaml"));
        let expected_path = case.join("expected.txt");
        if bless {
            std::fs::write(&expected_path, &actual).expect("write expected");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shipped_example_configs_validate() {
    let mut checked = 0;
    for dir in ["deploy/examples", "docs/examples"] {
        let Ok(entries) = std::fs::read_dir(repo().join(dir)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                if let Err(e) = load_file(&path, &Overrides::default()) {
                    panic!("{e}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no example configs found");
}
