"""`sluice slo rules`: the generated rule file passes `promtool check rules`, and
`promtool test rules` shows the page alert firing for a full outage, silence for a 0.05 % error
rate at a 99.9 % objective, a full budget with zero traffic, and a ratio SLI summed over
replicas."""

import shutil
import subprocess

from support.process import REPO, SLUICE_BIN
from support.prometheus import prometheus_tool

FIXTURES = REPO / "tests" / "fixtures" / "slo"


def generate(tmp_path):
    r = subprocess.run(
        [str(SLUICE_BIN), "slo", "rules", "--config", str(FIXTURES / "gateway.yaml")],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    rules = tmp_path / "rules.yml"
    rules.write_text(r.stdout)
    return rules


def test_rules_pass_promtool_check(tmp_path):
    rules = generate(tmp_path)
    promtool = prometheus_tool("promtool")
    r = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr
    text = rules.read_text()
    # Every window of the SRE Workbook's alerts is recorded for each SLO.
    for w in ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d", "28d"]:
        assert f"slo:sli_error:ratio_rate{w}" in text
    # The burn-rate thresholds, scaled to each window: 14.4 x 0.1 % and 13.44 x 1 %.
    assert "> 0.0144" in text
    assert "> 0.1344" in text


def test_rules_behave_under_promtool_test(tmp_path):
    generate(tmp_path)
    shutil.copy(FIXTURES / "tests.yaml", tmp_path / "tests.yaml")
    promtool = prometheus_tool("promtool")
    r = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_invalid_slos_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((FIXTURES / "gateway.yaml").read_text().replace("objective: 99.9", "objective: 199.9"))
    r = subprocess.run(
        [str(SLUICE_BIN), "slo", "rules", "--config", str(bad)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 64
    assert "objective 199.9" in r.stderr and "checkout-availability" in r.stderr
