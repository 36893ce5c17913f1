//! Golden test of `sluice slo rules`: the rules generated for `tests/fixtures/slo/gateway.yaml`
//! against `tests/fixtures/slo/expected-rules.yml` (the recording-rule expressions and the
//! burn-rate thresholds of the SRE Workbook table). `SLUICE_BLESS=1` rewrites the expected file.

use std::path::Path;

#[test]
fn slo_rules_golden() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/slo");
    let text = std::fs::read_to_string(dir.join("gateway.yaml")).expect("fixture");
    let slos = sluice::slo::slos_in_gateway_config(&text).expect("valid SLOs");
    let actual = sluice::slo::rules(&slos).expect("rules");
    let expected_path = dir.join("expected-rules.yml");
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&expected_path, &actual).expect("write expected");
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    assert_eq!(
        actual,
        expected,
        "rules differ from {}",
        expected_path.display()
    );
}
