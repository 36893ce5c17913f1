"""The deployment material under deploy/ and the runbooks under docs/runbooks/.

- Prometheus: the gateway's alert rules pass `promtool check rules` and their unit tests; every
  alert has a unit test that fires and one that stays silent, annotations and a runbook that
  exists; the SLO rules file is what `sluice slo rules` generates today; the compose
  Prometheus config passes `promtool check config`; the PrometheusRule objects carry the same
  alerts.
- Every gateway config under deploy/ (image default, compose, the Kubernetes ConfigMap, the Helm
  chart's values) passes `sluice validate`, and binds every interface; the admin endpoint has
  credentials (from $SLUICE_ADMIN_TOKEN, which the manifests fill from a Secret) or says why not.
- Kubernetes manifests are checked structurally (no cluster needed): names, known fields,
  security settings, ports against the config's endpoints, selectors, HPA/PDB targets, and the
  probe paths answer 200 on a real gateway running the ConfigMap's config.
- The Helm chart: values consistent with the plain manifests, template references that exist;
  rendered and compared with the manifests when `helm` is installed.
- Dashboards: valid JSON, PromQL that parses, and every metric name they use exists in a real
  gateway's output (admin /metrics and the scrape endpoint) or among the recording rules
  `sluice slo rules` generates; a real Prometheus scraping that gateway answers every panel's
  query with data and evaluates the alerts without errors, with the expected ones pending.
- The Dockerfile, the compose file and the systemd unit agree with the configs they use.

Needs PyYAML, `promtool` and `prometheus` (as the other Prometheus tests), and the `chaos` test
plugin (as test_plugins.py). `helm` and `systemd-analyze` are used when present.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from support.config import gateway_config, pipeline
from support.exposition import parse_prometheus
from support.otlp import kv, new_ids, span, trace_request
from support.polling import wait_until
from support.ports import free_port
from support.process import REPO, SLUICE_BIN
from support.prometheus import prometheus_tool

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    yaml = None

DEPLOY = REPO / "deploy"
RUNBOOKS = REPO / "docs" / "runbooks"
PROM_DIR = DEPLOY / "prometheus"
ALERTS = PROM_DIR / "sluice-alerts.yaml"
ALERT_TESTS = PROM_DIR / "sluice-alerts.test.yaml"
SLO_RULES = PROM_DIR / "slo-rules.yaml"
COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_CONFIG = DEPLOY / "compose" / "sluice.yaml"
IMAGE_CONFIG = DEPLOY / "docker" / "sluice.yaml"
K8S = DEPLOY / "kubernetes"
CHART = DEPLOY / "helm" / "sluice"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
UNIT = DEPLOY / "systemd" / "sluice.service"

# The gateway's own default listeners, as container ports are named in the manifests.
PORT_NAMES = {"grpc": "otlp-grpc", "http": "otlp-http", "prometheus": "prom-metrics", "admin": "admin"}
HEALTH_PATHS = {"/health/live", "/health/ready"}


# ------------------------------------------------------------------------------------ helpers


def need_yaml():
    if yaml is None:
        pytest.fail(
            "PyYAML is not installed: the deployment tests parse YAML manifests; "
            "install it (pip install PyYAML) or add it to tests/requirements.txt",
            pytrace=False,
        )
    return yaml


def load_yaml(path: Path) -> Any:
    return need_yaml().safe_load(path.read_text())


def load_yaml_docs(path: Path) -> list[Any]:
    return [d for d in need_yaml().safe_load_all(path.read_text()) if d is not None]


def run(cmd: list[str], cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# The admin endpoint's token the deploy configs read (from a Secret, or `docker run -e`).
ADMIN_TOKEN_ENV = "SLUICE_ADMIN_TOKEN"
ADMIN_TOKEN = "0123456789abcdef0123456789abcdef"


def sluice_validate(path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env[ADMIN_TOKEN_ENV] = ADMIN_TOKEN
    return subprocess.run(
        [str(SLUICE_BIN), "validate", "--config", str(path)],
        capture_output=True, text=True, timeout=180, env=env,
    )


def duration_seconds(text: str | int | float) -> float:
    """`30s`, `250ms`, `5m`, `1h` or a bare number of seconds (the gateway's duration syntax)."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(text).strip())
    assert m, f"not a duration: {text!r}"
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * factor


def config_endpoints(config: dict) -> dict[str, str]:
    """The listening endpoints of a gateway config by role: grpc, http, prometheus, admin."""
    out = {}
    protocols = config.get("receivers", {}).get("otlp", {}).get("protocols", {})
    for role in ("grpc", "http"):
        if protocols.get(role):
            out[role] = protocols[role]["endpoint"]
    for name, exporter in (config.get("exporters") or {}).items():
        if name.split("/")[0] == "prometheus":
            out["prometheus"] = exporter["endpoint"]
    admin = config.get("service", {}).get("admin", {}).get("endpoint")
    if admin:
        out["admin"] = admin
    return out


def endpoint_port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def alert_rules() -> list[dict]:
    return [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "alert" in r]


def k8s_objects() -> dict[str, dict]:
    """The plain Kubernetes manifests by kind (one object of each)."""
    objects: dict[str, dict] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_yaml_docs(path):
            assert doc["kind"] not in objects, f"{path.name}: a second {doc['kind']}"
            objects[doc["kind"]] = doc
    return objects


def configmap_config(objects: dict[str, dict]) -> dict:
    data = objects["ConfigMap"]["data"]
    assert set(data) == {"sluice.yaml"}, sorted(data)
    return need_yaml().safe_load(data["sluice.yaml"])


def sluice_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    found = [c for c in containers if c["name"] == "sluice"]
    assert len(found) == 1, [c["name"] for c in containers]
    return found[0]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ------------------------------------------------------------------- PromQL metric extraction

_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names in grouping clauses, or inside label matchers and ranges."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*", e):
        token = m.group(0)
        if e[m.end():].lstrip().startswith("("):
            continue  # a function or aggregation
        if token.lower() in _PROMQL_WORDS:
            continue
        names.add(token)
    return names


def grafana_query_names(query: str) -> set[str]:
    """Metric names of a Grafana Prometheus variable query (`label_values(selector, label)` or
    plain PromQL)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    if m:
        return promql_metric_names(m.group(1))
    m = re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", query)
    if m:
        return set()
    return promql_metric_names(query)


def promql_label_uses(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """The label names an expression relies on: (metric name, labels in its matchers) per
    selector, and the labels of its grouping and matching clauses."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    selectors = [
        (m.group(1), set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", m.group(2))))
        for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", e)
    ]
    grouping = {
        label.strip()
        for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e)
        for label in clause.split(",")
        if label.strip()
    }
    return selectors, grouping


def test_promql_metric_name_extraction():
    assert promql_metric_names(
        'histogram_quantile(0.99, sum by (le, processor) (rate(sluice_plugin_call_duration_seconds_bucket{job=~"$job"}[$__rate_interval])))'
    ) == {"sluice_plugin_call_duration_seconds_bucket"}
    assert promql_metric_names(
        "max by (slo) (slo:sli_error:ratio_rate1h{slo=~\"$slo\"}) / on (slo) group_left max by (slo) (slo:error_budget:ratio)"
    ) == {"slo:sli_error:ratio_rate1h", "slo:error_budget:ratio"}
    assert promql_metric_names('sum(rate(a_total{reason!="x y"}[5m] offset 1h)) > 0 unless b_total == bool 1e9') == {
        "a_total", "b_total"
    }
    assert grafana_query_names('label_values(sluice_build_info{job=~"$job"}, instance)') == {"sluice_build_info"}
    assert promql_label_uses(
        'sum by (exporter, signal) (rate(a_total{job=~"$job", reason!="x,y"}[5m])) / on (exporter) b{le="1"}'
    ) == ([("a_total", {"job", "reason"}), ("b", {"le"})], {"exporter", "signal"})


def dashboard_files() -> list[Path]:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, "no dashboards"
    return files


def dashboard_panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))  # panels of collapsed rows
    return out


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every panel target."""
    return [
        (p.get("title", ""), t["expr"])
        for p in dashboard_panels(dashboard)
        for t in p.get("targets", [])
        if t.get("expr")
    ]


def variable_queries(dashboard: dict) -> list[str]:
    out = []
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        out.append(q.get("query", "") if isinstance(q, dict) else str(q))
    return out


def concrete(expr: str, rate_interval: str = "5m") -> str:
    """A dashboard expression with Grafana's variables replaced, as Prometheus would get it with
    'All' selected."""
    e = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    e = e.replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", e)


# ------------------------------------------------------------------------ Prometheus rules


def test_alert_rules_pass_promtool_check():
    r = run([prometheus_tool("promtool"), "check", "rules", str(ALERTS)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in r.stdout + r.stderr


def test_alert_rules_pass_their_unit_tests():
    r = run([prometheus_tool("promtool"), "test", "rules", ALERT_TESTS.name], cwd=PROM_DIR)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_is_tested_firing_and_silent():
    tests = load_yaml(ALERT_TESTS)
    assert tests["rule_files"] == [ALERTS.name]
    firing: set[str] = set()
    silent: set[str] = set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names <= firing, f"alerts never expected to fire: {sorted(names - firing)}"
    assert names <= silent, f"alerts never expected to stay silent: {sorted(names - silent)}"
    assert (firing | silent) <= names, f"tests of unknown alerts: {sorted((firing | silent) - names)}"


def test_every_alert_has_annotations_and_a_runbook():
    rules = alert_rules()
    expected = {
        "SluiceDown", "SluiceReceiverRefusingRecords", "SluicePipelineQueueNearlyFull",
        "SluiceExporterQueueNearlyFull", "SluiceExporterFailing", "SluicePluginBreakerOpen",
        "SluicePluginFailing", "SluiceMemoryNearLimit",
    }
    assert expected <= {r["alert"] for r in rules}
    for rule in rules:
        name = rule["alert"]
        annotations = rule.get("annotations", {})
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        assert rule.get("labels", {}).get("severity") in {"critical", "warning"}, name
        url = annotations["runbook_url"]
        assert url.endswith(f"docs/runbooks/{name}.md"), (name, url)
        page = RUNBOOKS / f"{name}.md"
        assert page.is_file(), f"{name}: runbook {page.relative_to(REPO)} is missing"
        text = page.read_text()
        assert text.startswith(f"# {name}\n"), f"{page.name} must open with its alert's name"
        headings = [line[3:].lower() for line in text.splitlines() if line.startswith("## ")]
        for wanted in ("what it means", "confirm", "what to do"):
            assert any(wanted in h for h in headings), f"{page.name}: no section on {wanted!r}"
    pages = {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == {r["alert"] for r in rules}, "a runbook per alert, and no runbook without one"
    index = (RUNBOOKS / "README.md").read_text()
    for name in pages:
        assert f"]({name}.md)" in index, f"docs/runbooks/README.md does not link {name}"


def test_slo_rules_file_is_what_sluice_generates():
    r = run([str(SLUICE_BIN), "slo", "rules", "--config", str(COMPOSE_CONFIG)], timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == SLO_RULES.read_text(), (
        f"{SLO_RULES.relative_to(REPO)} is stale: regenerate it with "
        f"`sluice slo rules --config {COMPOSE_CONFIG.relative_to(REPO)} > {SLO_RULES.relative_to(REPO)}`"
    )


def test_compose_prometheus_config_passes_promtool():
    r = run([prometheus_tool("promtool"), "check", "config", str(PROM_DIR / "prometheus.yml")])
    assert r.returncode == 0, r.stdout + r.stderr
    config = load_yaml(PROM_DIR / "prometheus.yml")
    assert set(config["rule_files"]) == {ALERTS.name, SLO_RULES.name}
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    compose_config = load_yaml(COMPOSE_CONFIG)
    ports = {role: endpoint_port(e) for role, e in config_endpoints(compose_config).items()}
    # The alerts expect the admin endpoint as job="sluice".
    assert jobs["sluice"]["static_configs"][0]["targets"] == [f"sluice:{ports['admin']}"]
    assert jobs["sluice"].get("metrics_path", "/metrics") == "/metrics"
    exported = [j for j in jobs.values() if j["static_configs"][0]["targets"] == [f"sluice:{ports['prometheus']}"]]
    assert len(exported) == 1 and exported[0].get("honor_labels") is True


def test_prometheus_rule_objects_carry_the_same_alerts():
    source = load_yaml(ALERTS)
    rule = load_yaml(K8S / "prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"] == source, "deploy/kubernetes/prometheusrule.yaml differs from sluice-alerts.yaml"
    chart_copy = CHART / "files" / "sluice-alerts.yaml"
    assert chart_copy.read_text() == ALERTS.read_text(), f"{chart_copy.relative_to(REPO)} differs from {ALERTS.name}"


# ---------------------------------------------------------------------------- gateway configs


def chart_values() -> dict:
    return load_yaml(CHART / "values.yaml")


def deploy_configs() -> list[tuple[str, str]]:
    """(where, YAML text) of every gateway config under deploy/ outside examples/."""
    need_yaml()
    objects = k8s_objects()
    return [
        ("deploy/docker/sluice.yaml", IMAGE_CONFIG.read_text()),
        ("deploy/compose/sluice.yaml", COMPOSE_CONFIG.read_text()),
        ("deploy/kubernetes/configmap.yaml data.sluice.yaml", objects["ConfigMap"]["data"]["sluice.yaml"]),
        ("deploy/helm/sluice/values.yaml .config", yaml.safe_dump(chart_values()["config"], sort_keys=False)),
    ]


def test_every_deploy_config_passes_sluice_validate(tmp_path):
    for i, (where, text) in enumerate(deploy_configs()):
        path = tmp_path / f"config-{i}.yaml"
        path.write_text(text)
        r = sluice_validate(path)
        assert r.returncode == 0, f"{where}: sluice validate exited {r.returncode}\n{r.stdout}{r.stderr}"
        assert "valid" in r.stdout + r.stderr, where


def test_validation_catches_a_broken_config(tmp_path):
    """The validation above can fail: the same configs with a misspelt key do not pass."""
    where, text = deploy_configs()[2]
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("endpoint: 0.0.0.0:4317", "endpont: 0.0.0.0:4317"))
    assert broken.read_text() != text, where
    r = sluice_validate(broken)
    assert r.returncode != 0 and "endpont" in r.stdout + r.stderr, r.stdout + r.stderr


def test_container_configs_bind_every_interface():
    for where, text in deploy_configs():
        endpoints = config_endpoints(yaml.safe_load(text))
        assert {"grpc", "http", "prometheus", "admin"} <= set(endpoints), (where, endpoints)
        for role, endpoint in endpoints.items():
            assert endpoint.rsplit(":", 1)[0] in {"0.0.0.0", "[::]"}, f"{where}: {role} binds {endpoint}"


def test_exposed_admin_endpoints_have_credentials_or_say_why_not(tmp_path):
    for where, text in deploy_configs():
        admin = yaml.safe_load(text)["service"]["admin"]
        if admin.get("allow_unauthenticated"):
            # The opt-out is commented where it is set.
            assert where.startswith("deploy/compose/"), f"{where}: no opt-out outside the local stack"
            line = next(i for i, l in enumerate(text.splitlines()) if "allow_unauthenticated" in l)
            assert text.splitlines()[line - 1].lstrip().startswith("#"), f"{where}: say why there are no credentials"
            continue
        auth = admin["auth"]
        assert auth.get("bearer_token_env") == ADMIN_TOKEN_ENV, where
        assert auth.get("basic_auth", {}).get("password_env") == ADMIN_TOKEN_ENV, where
    # Without the token (the Secret missing), the gateway refuses the config and says why.
    path = tmp_path / "image.yaml"
    path.write_text(IMAGE_CONFIG.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    r = subprocess.run([str(SLUICE_BIN), "validate", "--config", str(path)], capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 64 and ADMIN_TOKEN_ENV in r.stderr, r.stdout + r.stderr


# ------------------------------------------------------------------------------------ compose


def test_compose_stack_is_wired_to_its_files():
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert {"sluice", "prometheus", "jaeger", "grafana"} <= set(services)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: mounts missing {source}"
    sluice = services["sluice"]
    assert sluice["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / sluice["build"]["context"] / sluice["build"]["dockerfile"]).is_file()
    # The config it runs is the mounted compose config.
    config_path = sluice["command"][sluice["command"].index("--config") + 1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in sluice["volumes"]}
    assert (DEPLOY / mounts[config_path]).resolve() == COMPOSE_CONFIG.resolve()
    config = load_yaml(COMPOSE_CONFIG)
    published = {int(p.rsplit(":", 2)[-1]) for p in sluice["ports"]}
    assert {endpoint_port(e) for e in config_endpoints(config).values()} <= published
    # Traces go to Jaeger's OTLP/gRPC port over the compose network.
    jaeger = config["exporters"]["otlp/jaeger"]
    assert jaeger["endpoint"] == "http://jaeger:4317" and jaeger.get("protocol", "grpc") == "grpc"
    assert "otlp/jaeger" in config["service"]["pipelines"]["traces"]["exporters"]
    assert "slo" in config["service"]["pipelines"]["traces"].get("processors", [])
    # stop_grace_period outlives the gateway's shutdown timeout.
    assert duration_seconds(sluice["stop_grace_period"]) > duration_seconds(config["service"]["shutdown_timeout"])
    # Prometheus gets its config and both rule files next to it.
    prom_mounts = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"] if v.startswith(".")}
    assert prom_mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    for rule_file in (ALERTS.name, SLO_RULES.name):
        assert prom_mounts[f"/etc/prometheus/{rule_file}"] == f"./prometheus/{rule_file}"
    # Grafana: provisioning and dashboards where the provider looks for them.
    grafana_mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"] if v.startswith(".")}
    assert grafana_mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "sluice.yaml")["providers"][0]
    assert grafana_mounts[provider["options"]["path"]] == "./grafana/dashboards"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DASHBOARDS / Path(home).name).is_file() and home.startswith(provider["options"]["path"] + "/")
    sources = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "sluice.yaml")["datasources"]
    by_type = {s["type"]: s for s in sources}
    assert by_type["prometheus"]["url"] == "http://prometheus:9090"
    assert by_type["jaeger"]["url"] == "http://jaeger:16686"


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        p = pattern[1:] if negate else pattern
        p = p.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, p) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerfile_matches_the_image_config():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    instructions = [line.strip() for line in re.sub(r"\\\n", " ", dockerfile).splitlines() if line.strip() and not line.strip().startswith("#")]
    froms = [i for i in instructions if i.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage build"
    exposed = {int(p) for i in instructions if i.startswith("EXPOSE ") for p in i.split()[1:]}
    ports = {endpoint_port(e) for e in config_endpoints(load_yaml(IMAGE_CONFIG)).values()}
    assert exposed == ports == {4317, 4318, 9464, 8888}
    user = [i.split()[1] for i in instructions if i.startswith("USER ")][-1]
    assert user.split(":")[0] not in {"root", "0"}
    assert "cargo build --release --locked -p sluice" in dockerfile
    # The built-in plugins are embedded by the gateway's build script, which needs the target.
    assert "rustup target add wasm32-wasip2" in dockerfile
    assert "plugins" in (REPO / "gateway" / "build.rs").read_text()
    assert re.search(r"^COPY --from=builder \S+ /usr/bin/sluice$", dockerfile, re.M)
    # The image's only file is the binary: no plugin directory shadows the embedded built-ins.
    assert not re.search(r"^COPY .*/usr/lib/sluice/plugins", dockerfile, re.M)
    assert instructions[-1] == 'CMD ["run", "--config", "/etc/sluice/sluice.yaml"]'
    assert "COPY deploy/docker/sluice.yaml /etc/sluice/sluice.yaml" in instructions
    # The image's writable cache is the config's plugin cache.
    assert load_yaml(IMAGE_CONFIG)["service"]["plugins"]["cache_dir"] == "/var/cache/sluice"
    assert re.search(r"--chown=65532:65532 \S+ /var/cache/sluice/?$", dockerfile, re.M)
    # The context filter keeps what the build copies and drops the build output.
    patterns = [
        line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kept in ("deploy/docker/sluice.yaml", "rust-toolchain.toml", "Cargo.lock", "gateway/src/main.rs", "plugins/slo/Cargo.toml"):
        assert not dockerignore_excludes(kept, patterns), kept
    for dropped in ("target/debug/sluice", "deploy/kubernetes/deployment.yaml"):
        assert dockerignore_excludes(dropped, patterns), dropped


# --------------------------------------------------------------------------------- Kubernetes

POD_SPEC_KEYS = {
    "terminationGracePeriodSeconds", "automountServiceAccountToken", "securityContext",
    "topologySpreadConstraints", "containers", "volumes", "imagePullSecrets", "nodeSelector",
    "affinity", "tolerations", "serviceAccountName", "priorityClassName", "initContainers",
}
CONTAINER_KEYS = {
    "name", "image", "imagePullPolicy", "args", "command", "env", "envFrom", "ports",
    "startupProbe", "livenessProbe", "readinessProbe", "resources", "securityContext",
    "volumeMounts", "lifecycle",
}
PROBE_KEYS = {"httpGet", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold", "initialDelaySeconds"}
POD_SECURITY_KEYS = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile", "supplementalGroups", "fsGroupChangePolicy"}
CONTAINER_SECURITY_KEYS = {"allowPrivilegeEscalation", "readOnlyRootFilesystem", "runAsNonRoot", "runAsUser", "runAsGroup", "capabilities", "privileged", "seccompProfile"}


def test_manifests_are_well_formed():
    objects = k8s_objects()
    assert set(objects) == {
        "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "NetworkPolicy", "ServiceMonitor", "PrometheusRule",
    }
    api = {
        "ConfigMap": "v1", "Service": "v1", "Deployment": "apps/v1",
        "HorizontalPodAutoscaler": "autoscaling/v2", "PodDisruptionBudget": "policy/v1",
        "NetworkPolicy": "networking.k8s.io/v1", "ServiceMonitor": "monitoring.coreos.com/v1",
        "PrometheusRule": "monitoring.coreos.com/v1",
    }
    for kind, obj in objects.items():
        assert obj["apiVersion"] == api[kind], kind
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"]), kind
        assert "namespace" not in obj["metadata"], f"{kind}: manifests are namespace-less"
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_deployment_fields_are_known_and_locked_down():
    objects = k8s_objects()
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert set(pod) <= POD_SPEC_KEYS, sorted(set(pod) - POD_SPEC_KEYS)
    assert set(pod["securityContext"]) <= POD_SECURITY_KEYS
    container = sluice_container(deployment)
    assert set(container) <= CONTAINER_KEYS, sorted(set(container) - CONTAINER_KEYS)
    assert set(container["securityContext"]) <= CONTAINER_SECURITY_KEYS
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert set(container[probe]) <= PROBE_KEYS, (probe, sorted(set(container[probe]) - PROBE_KEYS))

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]

    config = configmap_config(objects)
    shutdown = duration_seconds(config["service"].get("shutdown_timeout", "30s"))
    assert pod["terminationGracePeriodSeconds"] > shutdown
    # It runs the ConfigMap's config, mounted where the args point.
    args = container["args"]
    config_file = Path(args[args.index("--config") + 1])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_mount = [m for m in mounts.values() if m["mountPath"] == str(config_file.parent)]
    assert len(config_mount) == 1 and config_mount[0].get("readOnly") is True
    assert volumes[config_mount[0]["name"]]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    # A changed ConfigMap is reloaded without a restart (test_reload.py checks the kubelet's
    # way of updating the mounted file).
    assert "--watch-config" in args
    assert config_file.name in objects["ConfigMap"]["data"]
    # With a read-only root, the plugin cache must be a writable volume.
    cache = config["service"]["plugins"]["cache_dir"]
    cache_mount = [m for m in mounts.values() if m["mountPath"] == cache]
    assert len(cache_mount) == 1 and not cache_mount[0].get("readOnly")
    assert "emptyDir" in volumes[cache_mount[0]["name"]]


def test_container_ports_and_probes_match_the_config():
    objects = k8s_objects()
    container = sluice_container(objects["Deployment"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    endpoints = config_endpoints(configmap_config(objects))
    assert set(ports) == {PORT_NAMES[role] for role in endpoints}
    for role, endpoint in endpoints.items():
        assert ports[PORT_NAMES[role]] == endpoint_port(endpoint), role
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        port = get["port"]
        assert port == "admin" or port == ports["admin"], (probe, port)
        assert get["path"] in HEALTH_PATHS, (probe, get["path"])
        paths[probe] = get["path"]
    assert paths["livenessProbe"] == "/health/live" and paths["readinessProbe"] == "/health/ready"


def test_probe_paths_answer_on_a_gateway_running_the_configmap_config(gateway, tmp_path):
    objects = k8s_objects()
    container = sluice_container(objects["Deployment"])
    base = configmap_config(objects)

    def config(ports):
        c = json.loads(json.dumps(base))
        protocols = c["receivers"]["otlp"]["protocols"]
        protocols["grpc"]["endpoint"] = f"127.0.0.1:{ports['grpc']}"
        protocols["http"]["endpoint"] = f"127.0.0.1:{ports['http']}"
        ports["prometheus"] = free_port()
        c["exporters"]["prometheus"]["endpoint"] = f"127.0.0.1:{ports['prometheus']}"
        c["service"]["admin"]["endpoint"] = f"127.0.0.1:{ports['admin']}"
        c["service"]["plugins"]["cache_dir"] = str(tmp_path / "plugin-cache")
        return c

    gw = gateway(config=config, env={ADMIN_TOKEN_ENV: ADMIN_TOKEN})
    # The probes need no credentials.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = container[probe]["httpGet"]["path"]
        r = gw.get(path)
        assert r.status_code == 200, f"{probe} {path}: {r.status_code} {r.text}"
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # The admin endpoint does not answer 200 to anything: a wrong path would fail the probes.
    assert gw.get("/health/nonexistent", headers=bearer).status_code == 404
    assert gw.get("/metrics").status_code == 401
    assert gw.get("/metrics", headers=bearer).status_code == 200
    assert gw.get("/metrics", auth=("admin", ADMIN_TOKEN)).status_code == 200
    scrape = requests.get(f"http://127.0.0.1:{gw.ports['prometheus']}/metrics", timeout=5)
    assert scrape.status_code == 200


def test_service_selects_the_pods_and_targets_named_ports():
    objects = k8s_objects()
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert matches(objects["Deployment"]["spec"]["selector"]["matchLabels"], pod_labels)
    service = objects["Service"]
    assert matches(service["spec"]["selector"], pod_labels)
    container_ports = {p["name"]: p["containerPort"] for p in sluice_container(objects["Deployment"])["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in container_ports, port
        assert port["port"] == container_ports[port["targetPort"]], port
    assert {p["name"] for p in service["spec"]["ports"]} == set(container_ports)


def test_hpa_and_pdb_target_the_deployment():
    objects = k8s_objects()
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    by_type = {m["type"]: m for m in hpa["metrics"]}
    assert by_type["Resource"]["resource"]["name"] == "cpu"
    pods_metric = by_type["Pods"]["pods"]["metric"]["name"]
    assert f'"{pods_metric}"' in (REPO / "gateway" / "src" / "telemetry" / "metrics.rs").read_text(), (
        f"the HPA scales on {pods_metric}, which the gateway does not export"
    )
    assert pods_metric == "sluice_exporter_queue_depth_batches"
    pdb = objects["PodDisruptionBudget"]["spec"]
    assert matches(pdb["selector"]["matchLabels"], pod_labels)
    assert pdb["minAvailable"] < hpa["minReplicas"], "a PDB as large as the HPA minimum blocks node drains"


def test_network_policy_and_service_monitor_match_the_pods():
    objects = k8s_objects()
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for p in sluice_container(objects["Deployment"])["ports"]}
    policy = objects["NetworkPolicy"]["spec"]
    assert matches(policy["podSelector"]["matchLabels"], pod_labels)
    allowed = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert allowed == container_ports
    monitor = objects["ServiceMonitor"]["spec"]
    service = objects["Service"]
    assert matches(monitor["selector"]["matchLabels"], service["metadata"]["labels"])
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    scraped = {e["port"]: e for e in monitor["endpoints"]}
    assert set(scraped) <= service_ports and {"admin", "prom-metrics"} <= set(scraped)
    assert scraped["prom-metrics"].get("honorLabels") is True
    # The alerts select job="sluice": the job label comes from the Service's label.
    assert service["metadata"]["labels"][monitor["jobLabel"]] == "sluice"
    assert 'up{job="sluice"}' in ALERTS.read_text()
    # Prometheus scrapes the admin endpoint with the token the gateway reads.
    env = {e["name"]: e for e in sluice_container(objects["Deployment"])["env"]}
    secret = env[ADMIN_TOKEN_ENV]["valueFrom"]["secretKeyRef"]
    credentials = scraped["admin"]["authorization"]
    assert credentials["type"] == "Bearer" and credentials["credentials"] == secret


# --------------------------------------------------------------------------------------- Helm


def test_helm_chart_is_consistent_with_the_manifests():
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2" and chart["name"] == "sluice"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"]) and chart["appVersion"]
    values = chart_values()
    objects = k8s_objects()
    assert values["config"] == configmap_config(objects), "values.yaml config differs from the ConfigMap's"
    endpoints = config_endpoints(values["config"])
    key = {"grpc": "otlpGrpc", "http": "otlpHttp", "prometheus": "promMetrics", "admin": "admin"}
    for role, endpoint in endpoints.items():
        assert values["ports"][key[role]] == endpoint_port(endpoint), role
    assert values["terminationGracePeriodSeconds"] > duration_seconds(values["config"]["service"]["shutdown_timeout"])
    container = sluice_container(objects["Deployment"])
    assert values["resources"] == container["resources"]
    assert values["securityContext"] == container["securityContext"]
    assert values["podSecurityContext"] == objects["Deployment"]["spec"]["template"]["spec"]["securityContext"]

    templates = {p.name: p.read_text() for p in (CHART / "templates").iterdir()}
    defined = set(re.findall(r'define "([^"]+)"', templates["_helpers.tpl"]))
    for name, text in templates.items():
        # Every value a template reads exists in values.yaml.
        for path in set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text)):
            node: Any = values
            for part in path.split("."):
                assert isinstance(node, dict) and part in node, f"{name}: .Values.{path} is not in values.yaml"
                node = node[part]
        for included in re.findall(r'include "([^"]+)"', text):
            assert included in defined, f"{name}: include of undefined {included}"
        opened = len(re.findall(r"\{\{-?\s*(?:if|range|with|define)\b", text))
        closed = len(re.findall(r"\{\{-?\s*end\s*-?\}\}", text))
        assert opened == closed, f"{name}: {opened} blocks opened, {closed} closed"
        assert text.count("{{") == text.count("}}"), name
        for path in re.findall(r'\.Files\.Get "([^"]+)"', text):
            assert (CHART / path).is_file(), f"{name}: {path} is not in the chart"
    kinds = {
        m for text in templates.values() for m in re.findall(r"^kind: (\w+)$", text, re.M)
    }
    # ... plus the admin endpoint's Secret, which the plain manifests leave to the operator.
    assert kinds == set(objects) | {"Secret"}, "the chart renders the same kinds as deploy/kubernetes"
    deployment = templates["deployment.yaml"]
    assert f"- name: {ADMIN_TOKEN_ENV}" in deployment and 'include "sluice.adminSecretName"' in deployment
    assert 'include "sluice.adminSecretName"' in templates["servicemonitor.yaml"]


# ------------------------------------------------------------------------------------ systemd


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, line
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_is_hardened_and_reloads_on_sighup(tmp_path):
    text = UNIT.read_text()
    s = unit_settings(text)["Service"]
    one = {k: v[-1] for k, v in s.items()}
    assert one["ExecStart"] == "/usr/bin/sluice run --config /etc/sluice/sluice.yaml"
    assert "-HUP" in one["ExecReload"] and "$MAINPID" in one["ExecReload"]
    assert one["Restart"] == "on-failure"
    assert one.get("DynamicUser") == "yes" or one.get("User") not in (None, "root", "0")
    assert one["NoNewPrivileges"] == "yes" and one["ProtectSystem"] == "strict"
    assert one["ProtectHome"] == "yes" and one["PrivateTmp"] == "yes"
    assert one["CapabilityBoundingSet"] == ""
    # wasmtime needs executable JIT memory.
    assert one.get("MemoryDenyWriteExecute", "no") == "no"
    # Longer than the gateway's default shutdown_timeout of 30 s.
    assert duration_seconds(one["TimeoutStopSec"]) > 30
    assert "64" in one.get("RestartPreventExitStatus", "")
    analyze = shutil.which("systemd-analyze")
    if analyze:
        # `verify` needs the executables to exist: point the unit at the binary under test.
        unit = tmp_path / "sluice.service"
        unit.write_text(text.replace("/usr/bin/sluice", str(SLUICE_BIN)))
        r = run([analyze, "verify", str(unit)])
        problems = [line for line in (r.stdout + r.stderr).splitlines() if "sluice.service" in line]
        assert r.returncode == 0 and not problems, r.stdout + r.stderr


# --------------------------------------------------------------------------------- dashboards


def test_dashboards_are_well_formed():
    uids = set()
    for path in dashboard_files():
        d = json.loads(path.read_text())
        assert d["uid"] not in uids and path.stem == d["uid"], path.name
        uids.add(d["uid"])
        assert d["title"] and "sluice" in d.get("tags", [])
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in dashboard_panels(d)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for p in dashboard_panels(d):
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, (path.name, p["title"])
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == "${datasource}", (path.name, p["title"])
            assert p.get("targets") and all(t.get("expr") for t in p["targets"]), (path.name, p["title"])
            for t in p["targets"]:
                used = set(re.findall(r"\$\{?(\w+)\}?", t["expr"])) - {"__rate_interval", "__interval", "__range"}
                assert used <= set(variables), (path.name, p["title"], used - set(variables))


def test_dashboard_queries_parse(tmp_path):
    rules = []
    for path in dashboard_files():
        d = json.loads(path.read_text())
        for i, (title, expr) in enumerate(dashboard_queries(d)):
            rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:q{i}", "expr": concrete(expr)})
    rule_file = tmp_path / "dashboards.rules.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
    r = run([prometheus_tool("promtool"), "check", "rules", str(rule_file)])
    assert r.returncode == 0, r.stdout + r.stderr


def dashboard_metric_names() -> dict[str, set[str]]:
    """Metric name -> the dashboards (and panels) that use it."""
    used: dict[str, set[str]] = {}
    for path in dashboard_files():
        d = json.loads(path.read_text())
        for title, expr in dashboard_queries(d):
            for name in promql_metric_names(expr):
                used.setdefault(name, set()).add(f"{path.name}: {title}")
        for query in variable_queries(d):
            for name in grafana_query_names(query):
                used.setdefault(name, set()).add(f"{path.name}: variable")
    return used


def recording_rule_labels() -> dict[str, set[str]]:
    """Series `sluice slo rules` records (for the compose stack's SLOs) -> their labels."""
    r = run([str(SLUICE_BIN), "slo", "rules", "--config", str(COMPOSE_CONFIG)], timeout=60)
    assert r.returncode == 0, r.stderr
    out: dict[str, set[str]] = {}
    for group in yaml.safe_load(r.stdout)["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                out.setdefault(rule["record"], set()).update(rule.get("labels", {}))
    return out


# Series Prometheus makes itself rather than scrapes.
PROMETHEUS_SERIES = {"up", "ALERTS"}


def chaos_plugin() -> Path:
    configured = os.environ.get("SLUICE_TEST_PLUGINS")
    base = Path(configured) if configured else REPO / "target" / "wasm32-wasip2" / "release"
    path = (base / "sluice_plugin_chaos.wasm").resolve()
    if not path.is_file():
        pytest.fail(
            f"test plugin sluice_plugin_chaos.wasm not found in {base}: build it with "
            "`cargo build --release --target wasm32-wasip2 -p sluice-plugin-chaos` or set $SLUICE_TEST_PLUGINS",
            pytrace=False,
        )
    return path


def server_spans(n: int, errors: int) -> bytes:
    spans = []
    for i in range(n):
        s = span(*new_ids(), f"GET /item/{i}")
        s.kind = trace_pb2.Span.SPAN_KIND_SERVER
        if i < errors:
            s.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        spans.append(s)
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=[kv("service.name", "checkout")]),
                scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
            )
        ]
    )
    return request.SerializeToString()


def exercise(gw, prom) -> None:
    """Traffic that makes every family of the gateway's own metrics appear: a reload (SIGHUP),
    good and bad spans (SLO events), an invalid span (refusal), a corrupt body (bad request),
    plugin traps (errors, restarts, breaker), an exporter that cannot connect (failures,
    drops). The reload comes first: a successful reload closes a plugin's breaker.

    It runs in two rounds with a scrape between them: Prometheus only sees a counter increase
    once it has scraped the counter before, and these counters appear with their first event."""
    gw.signal(signal.SIGHUP)
    gw.wait_metric("sluice_plugin_reloads_total", 2, timeout=60, result="ok")
    assert gw.post("traces", server_spans(20, errors=2)).status_code == 200
    bad = span(b"\x00" * 16, new_ids()[1], "invalid")
    assert gw.post("traces", trace_request(bad, span(*new_ids(), "ok")).SerializeToString()).status_code == 200
    assert gw.post("traces", b"\x0a\xff\xff\xff").status_code == 400
    gw.post("traces", trace_request(span(*new_ids(), "chaos:trap")).SerializeToString())
    for selector in (
        'sluice_plugin_errors_total{kind="trap"}',
        'sluice_exporter_send_failures_total{exporter="otlp/dead"}',
        'sluice_dropped_records_total{reason="retry_disabled"}',
    ):
        prom.wait_query(selector, bool, timeout=30, what=f"{selector} scraped")
    # Five traps in a row open the breaker.
    for _ in range(5):
        gw.post("traces", trace_request(span(*new_ids(), "chaos:trap")).SerializeToString())
    assert gw.post("traces", server_spans(10, errors=0)).status_code == 200


def exercised_gateway_config(ports: dict[str, int], cache: Path) -> dict:
    compose = load_yaml(COMPOSE_CONFIG)
    ports["prometheus"] = free_port()
    ports["dead"] = free_port()
    return gateway_config(
        ports,
        {
            "debug": {"verbosity": "basic"},
            "otlp/dead": {
                "endpoint": f"http://127.0.0.1:{ports['dead']}",
                "protocol": "grpc",
                "timeout": "1s",
                "retry_on_failure": {"enabled": False},
            },
            "prometheus": {"endpoint": f"127.0.0.1:{ports['prometheus']}"},
        },
        processors={
            "chaos": {"plugin": str(chaos_plugin()), "on_error": "pass"},
            # The compose stack's SLOs, so that the committed SLO rules find their series.
            "slo": compose["processors"]["slo"],
        },
        pipelines={
            "traces": pipeline(["debug", "otlp/dead"], processors=["chaos", "slo"]),
            "metrics": pipeline(["prometheus"]),
        },
        plugins={"cache_dir": str(cache), "reload_interval": "0s"},
        shutdown_timeout="5s",
    )


def scraped_labels(gw) -> dict[str, set[str]]:
    """Metric name -> label names, from the admin endpoint and the scrape endpoint; Prometheus
    adds job and instance to every scraped series."""
    text = requests.get(f"http://127.0.0.1:{gw.ports['prometheus']}/metrics", timeout=5).text
    out: dict[str, set[str]] = {}
    for name, labels, _ in gw.metrics() + parse_prometheus(text):
        out.setdefault(name, {"job", "instance"}).update(labels)
    return out


def known(name: str, names) -> bool:
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in names or any(f"{base}{s}" in names for s in ("_bucket", "_sum", "_count"))


def test_dashboards_and_alerts_work_on_a_real_gateway(gateway, prometheus, tmp_path):
    gw = gateway(config=lambda ports: exercised_gateway_config(ports, tmp_path / "plugin-cache"), wait_ready=False)
    gw.wait_ready(timeout=120)

    prom = prometheus(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(SLO_RULES), str(ALERTS)],
            "scrape_configs": [
                {"job_name": "sluice", "static_configs": [{"targets": [f"127.0.0.1:{gw.ports['admin']}"]}]},
                {
                    "job_name": "sluice-exported",
                    "honor_labels": True,
                    "static_configs": [{"targets": [f"127.0.0.1:{gw.ports['prometheus']}"]}],
                },
            ],
        }
    )
    # Counters must be seen before and after the traffic for rates to exist.
    prom.wait_query('count(up == 1)', lambda r: r and r[0][1] == 2, timeout=30, what="both targets scraped")
    prom.wait_query("sluice_slo_events_total", lambda r: len(r) >= 2, timeout=30, what="the SLO counters before traffic")
    exercise(gw, prom)

    # 1. Every metric a dashboard uses is a real one.
    used = dashboard_metric_names()
    records = recording_rule_labels()
    sluice_used = {n for n in used if not known(n, records) and n not in PROMETHEUS_SERIES}
    seen: dict[str, Any] = {}

    def all_present():
        seen["labels"] = scraped_labels(gw)
        seen["names"] = set(seen["labels"])
        return all(known(n, seen["names"]) for n in sluice_used)

    try:
        wait_until(all_present, 30, "every dashboard metric in the gateway's output")
    except pytest.fail.Exception:
        missing = {n: sorted(used[n]) for n in sluice_used if not known(n, seen.get("names", set()))}
        pytest.fail(f"dashboards use metrics the gateway does not export: {json.dumps(missing, indent=2)}")
    assert any(n.startswith("slo:") for n in used), "the SLO dashboard uses the recording rules"

    # ... and so is every label a dashboard filters, groups or matches on.
    labels_of = {**seen["labels"], **records, "up": {"job", "instance"}}
    wrong = []
    for path in dashboard_files():
        d = json.loads(path.read_text())
        for title, expr in dashboard_queries(d) + [("variable", q) for q in variable_queries(d)]:
            selectors, grouping = promql_label_uses(expr)
            available: set[str] = {"le"} if "histogram_quantile" in expr else set()
            for name, labels in selectors:
                if name in PROMETHEUS_SERIES - {"up"}:
                    continue
                have = labels_of.get(name, set())
                available |= have
                wrong += [f"{path.name}: {title}: {name} has no label {label}" for label in sorted(labels - have)]
            for name in promql_metric_names(expr) & set(labels_of):
                available |= labels_of[name]
            m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", expr)
            if m:
                grouping.add(m.group(2))
            if not (promql_metric_names(expr) & (PROMETHEUS_SERIES - {"up"})):
                wrong += [f"{path.name}: {title}: no metric has label {label}" for label in sorted(grouping - available)]
    assert not wrong, "\n".join(wrong)

    # 2. Prometheus answers every panel's query with data (the firing-alerts table may be empty).
    queries = [
        (path.name, title, concrete(expr, "1m"))
        for path in dashboard_files()
        for title, expr in dashboard_queries(json.loads(path.read_text()))
    ]
    pending = {q for q in queries if not q[2].startswith("ALERTS")}

    def answered():
        for q in list(pending):
            if prom.query(q[2]):
                pending.discard(q)
        return not pending

    try:
        wait_until(answered, 30, "data for every dashboard query", interval=0.5)
    except pytest.fail.Exception:
        pytest.fail("dashboard queries without data:\n" + "\n".join(f"{f}: {t}: {e}" for f, t, e in sorted(pending)))

    # 3. The alerts evaluate on real series: the ones this traffic should trigger are pending
    # (their `for` has not elapsed), the others are not, and no rule fails to evaluate.
    should = {"SluiceExporterFailing", "SluiceRecordsDropped", "SluicePluginFailing", "SluicePluginBreakerOpen"}
    should_not = {"SluiceDown", "SluiceReceiverRefusingRecords", "SluicePluginReloadFailed", "SluiceMemoryNearLimit"}
    state: dict[str, Any] = {}

    def alerts_active():
        state["alerts"] = {a["labels"]["alertname"]: a["labels"] for a in prom.api("/api/v1/alerts")["alerts"]}
        return should <= set(state["alerts"])

    try:
        wait_until(alerts_active, 30, f"alerts {sorted(should)} pending", interval=0.5)
    except pytest.fail.Exception:
        pytest.fail(f"expected {sorted(should)} pending or firing; active: {json.dumps(state.get('alerts'), indent=2)}")
    alerts = state["alerts"]
    assert not (should_not & set(alerts)), sorted(should_not & set(alerts))
    assert alerts["SluiceExporterFailing"]["exporter"] == "otlp/dead"
    assert alerts["SluicePluginBreakerOpen"]["processor"] == "chaos"
    assert alerts["SluicePluginFailing"]["kind"] == "trap"
    assert alerts["SluiceRecordsDropped"]["reason"] == "retry_disabled"
    broken = [
        (g["name"], r.get("name"), r.get("lastError"))
        for g in prom.api("/api/v1/rules")["groups"]
        for r in g["rules"]
        if r.get("health") == "err"
    ]
    assert not broken, broken


# ------------------------------------------------------------------ two tiers (loadbalancing)

TWO_TIER = K8S / "two-tier"


def test_two_tier_example_routes_traces_to_its_headless_service(tmp_path):
    """deploy/kubernetes/two-tier, checked statically (no cluster here): the overlay builds on
    the base and patches its ConfigMap; the routing config resolves the processing tier's
    headless Service on the port its pods listen on; and both configs pass `sluice validate`
    (the processing one with the built-in plugins it names)."""
    kustomization = load_yaml(TWO_TIER / "kustomization.yaml")
    assert "../" in kustomization["resources"]
    for r in kustomization["resources"][1:]:
        assert (TWO_TIER / r).is_file(), r
    patch = load_yaml(TWO_TIER / kustomization["patches"][0]["path"])
    base_configmap = k8s_objects()["ConfigMap"]
    assert (patch["kind"], patch["metadata"]["name"]) == ("ConfigMap", base_configmap["metadata"]["name"])

    objects = {d["kind"]: d for d in load_yaml_docs(TWO_TIER / "processing.yaml")}
    service, deployment, configmap = objects["Service"], objects["Deployment"], objects["ConfigMap"]
    assert service["spec"]["clusterIP"] == "None", "headless: DNS answers with every ready pod"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_labels["app.kubernetes.io/instance"] != "sluice", "not selected by the base's Service, HPA or PDB"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for p in service["spec"]["ports"]:
        assert p["targetPort"] in container_ports, p
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]

    yaml = need_yaml()
    routing = yaml.safe_load(patch["data"]["sluice.yaml"])
    dns = routing["exporters"]["loadbalancing"]["resolver"]["dns"]
    assert dns["hostname"] == service["metadata"]["name"]
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "otlp-grpc")
    assert dns["port"] == grpc_port == container_ports["otlp-grpc"]
    processing = yaml.safe_load(configmap["data"]["sluice.yaml"])
    listen = processing["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert listen.endswith(f":{container_ports['otlp-grpc']}")
    assert set(processing["service"]["pipelines"]["traces"]["processors"]) == {"spanmetrics", "servicegraph"}

    plugins = Path(os.environ.get("SLUICE_TEST_PLUGINS", REPO / "target" / "wasm32-wasip2" / "release"))
    for name, text in (("routing", patch["data"]["sluice.yaml"]), ("processing", configmap["data"]["sluice.yaml"])):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text.replace("/var/cache/sluice", str(tmp_path / f"{name}-cache")))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.update({ADMIN_TOKEN_ENV: ADMIN_TOKEN, "SLUICE_PLUGIN_DIR": str(plugins)})
        r = subprocess.run([str(SLUICE_BIN), "validate", "--config", str(path)],
                           capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, f"{name}: {r.stdout}{r.stderr}"
