"""The admin and scrape endpoints can be exposed: TLS and credentials on both (a real Prometheus
scrapes over TLS with basic auth), probes stay open, and certificates are reloaded when their
files change, without a restart. The admin endpoint refuses cross-site requests that change state
(a form post from another origin, a POST without `X-Sluice-Request`), sends security headers on
every response, and is not served beyond loopback without credentials unless the config says
`allow_unauthenticated`."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import shutil
import socket
import ssl
import time
from pathlib import Path

import pytest
import requests

from support.config import gateway_config, otlp_receiver, pipeline
from support.otlp import grpc_export, simple_trace_request
from support.polling import wait_until
from support.ports import free_port
from support.process import REPO, SLUICE_BIN, clean_env
from test_tls import make_pki, metrics_request, openssl


@pytest.fixture
def creds(tmp_path):
    token, password = secrets.token_hex(20), secrets.token_hex(12)
    (tmp_path / "admin.token").write_text(token + "\n")
    (tmp_path / "admin.password").write_text(password + "\n")
    return {"token": token, "password": password, "dir": tmp_path}


def auth_block(c) -> dict:
    return {
        "bearer_token_file": str(c["dir"] / "admin.token"),
        "basic_auth": {"username": "ops", "password_file": str(c["dir"] / "admin.password")},
    }


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_admin_endpoint_with_credentials_keeps_probes_open(gateway, downstream, creds):
    ds = downstream()

    def config(ports):
        return gateway_config(
            ports,
            {"otlp/down": {"endpoint": ds.endpoint}},
            receivers={"otlp": otlp_receiver(ports, grpc=False)},
            pipelines={"traces": pipeline(["otlp/down"])},
            admin={"auth": auth_block(creds)},
        )

    gw = gateway(config=config)
    for probe in ("/health/live", "/health/ready"):
        assert gw.get(probe).status_code == 200, probe
    for path in ("/metrics", "/api/v1/status", "/health/detailed", "/", "/api/services"):
        r = gw.get(path)
        assert r.status_code == 401, (path, r.status_code)
        assert r.headers["WWW-Authenticate"].startswith("Basic"), path
    assert gw.get("/metrics", headers={"Authorization": f"Bearer {creds['token']}"}).status_code == 200
    assert gw.get("/api/v1/status", headers=basic("ops", creds["password"])).status_code == 200
    assert gw.get("/api/v1/status", headers=basic("ops", "wrong")).status_code == 401
    r = requests.post(f"{gw.admin_url}/api/v1/plugins/x/reload", timeout=5)
    assert r.status_code == 401
    # Data still flows; the receiver has no auth of its own here.
    req, _ = simple_trace_request(1)
    assert gw.post("traces", req.SerializeToString()).status_code == 200
    text = gw.get("/api/v1/status", headers=basic("ops", creds["password"])).text
    assert creds["token"] not in text and creds["password"] not in text
    assert creds["token"] not in gw.stderr() and creds["password"] not in gw.stderr()


def test_prometheus_scrapes_the_gateway_over_tls_with_basic_auth(gateway, prometheus, tmp_path, creds, monkeypatch):
    pki = make_pki(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki / "ca.crt"))
    tls = {"cert_file": str(pki / "server.crt"), "key_file": str(pki / "server.key")}

    def config(ports):
        ports["scrape"] = free_port()
        return gateway_config(
            ports,
            {"prometheus": {"endpoint": f"127.0.0.1:{ports['scrape']}", "tls": tls, "auth": auth_block(creds)}},
            receivers={"otlp": otlp_receiver(ports, http=False)},
            pipelines={"metrics": pipeline(["prometheus"])},
            admin={"tls": tls, "auth": auth_block(creds)},
        )

    gw = gateway(config=config, wait_ready=False)
    gw.wait_ready(admin_url=f"https://127.0.0.1:{gw.ports['admin']}")
    grpc_export(gw.grpc_target, "metrics", metrics_request(42.0))
    scrape = f"https://127.0.0.1:{gw.ports['scrape']}/metrics"
    assert requests.get(scrape, timeout=5).status_code == 401
    r = requests.get(scrape, headers=basic("ops", creds["password"]), timeout=5)
    assert r.status_code == 200 and "tls_probe" in r.text, r.text[:500]
    # Trusting anything but the private CA, the certificate is refused.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(scrape, verify=str(pki / "client.crt"), timeout=5)
    prom = prometheus(
        {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "sluice",
                    "scheme": "https",
                    "tls_config": {"ca_file": str(pki / "ca.crt")},
                    "basic_auth": {"username": "ops", "password_file": str(creds["dir"] / "admin.password")},
                    "static_configs": [{"targets": [f"127.0.0.1:{gw.ports['scrape']}"]}],
                },
                {
                    "job_name": "sluice-self",
                    "scheme": "https",
                    "tls_config": {"ca_file": str(pki / "ca.crt")},
                    "authorization": {"credentials_file": str(creds["dir"] / "admin.token")},
                    "static_configs": [{"targets": [f"127.0.0.1:{gw.ports['admin']}"]}],
                },
            ],
        }
    )
    rows = prom.wait_query('tls_probe{job="sluice"}', lambda r: len(r) == 1, timeout=30)
    assert rows[0][1] == 42.0
    prom.wait_query('up{job="sluice-self"} == 1', lambda r: len(r) == 1, timeout=30)
    prom.wait_query('sluice_receiver_accepted_records_total{job="sluice-self"}', lambda r: len(r) >= 1, timeout=30)


def peer_cert_serial(port: int, ca) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            der = s.getpeercert(binary_form=True)
    r = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der, capture_output=True, check=True
    )
    return int(r.stdout.decode().strip().split("=", 1)[1], 16)


def test_a_renewed_certificate_is_served_without_a_restart(gateway, downstream, tmp_path):
    pki = make_pki(tmp_path)
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(pki / "server.crt", live / "server.crt")
    shutil.copy(pki / "server.key", live / "server.key")
    ds = downstream()
    tls = {"cert_file": str(live / "server.crt"), "key_file": str(live / "server.key")}
    gw = gateway({"otlp/down": {"endpoint": ds.endpoint}}, http_options={"tls": tls})
    port = gw.ports["http"]
    first = peer_cert_serial(port, pki / "ca.crt")
    # Renew: a new key and certificate from the same CA, written over the old files.
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=server-renewed",
            "-keyout", "renewed.key", "-out", "renewed.csr", cwd=pki)
    openssl("x509", "-req", "-in", "renewed.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "server.ext", "-out", "renewed.crt", cwd=pki)
    time.sleep(1.1)  # a different modification time
    shutil.copy(pki / "renewed.key", live / "server.key")
    shutil.copy(pki / "renewed.crt", live / "server.crt")
    wait_until(lambda: peer_cert_serial(port, pki / "ca.crt") != first, 10, "the renewed certificate served")
    # A broken renewal keeps the last good certificate.
    renewed = peer_cert_serial(port, pki / "ca.crt")
    (live / "server.crt").write_text("not a certificate")
    time.sleep(1.5)
    assert peer_cert_serial(port, pki / "ca.crt") == renewed
    assert "does not load; keeping the previous one" in gw.stderr()
    assert gw.alive()


# ----------------------------------------------------------- cross-site requests, security headers

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


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


def assert_security_headers(r: requests.Response, what: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, (what, name, r.headers.get(name))
    csp = r.headers.get("Content-Security-Policy", "")
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, (what, csp)
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (what, csp)


def test_admin_refuses_cross_site_requests_and_sends_security_headers(gateway, tmp_path):
    plugin = chaos_plugin()

    def config(ports):
        return gateway_config(
            ports,
            {"debug": {"verbosity": "basic"}},
            receivers={"otlp": otlp_receiver(ports, grpc=False)},
            processors={"chaos": {"plugin": str(plugin)}},
            pipelines={"traces": pipeline(["debug"], processors=["chaos"])},
            plugins={"cache_dir": str(tmp_path / "plugin-cache"), "reload_interval": "0s"},
        )

    gw = gateway(config=config)
    reload_url = f"{gw.admin_url}/api/v1/plugins/chaos/reload"
    own_origin = f"http://127.0.0.1:{gw.ports['admin']}"

    def reloads() -> float:
        return gw.metric("sluice_plugin_reloads_total", processor="chaos", result="ok")

    def refused(reason: str) -> float:
        return gw.metric("sluice_admin_requests_refused_total", reason=reason)

    # A form on another site posting to the admin endpoint: refused, the plugin not reloaded.
    r = requests.post(
        reload_url,
        data={"x": "1"},
        headers={"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert r.status_code == 403, r.text
    assert "http://evil.example" in r.json()["error"]
    assert_security_headers(r, "refused reload")
    # Fetch metadata of a cross-site request, even with the header and no Origin.
    r = requests.post(reload_url, headers={"Sec-Fetch-Site": "cross-site", "X-Sluice-Request": "1"}, timeout=5)
    assert r.status_code == 403, r.text
    # No custom header: a simple request a page could send.
    r = requests.post(reload_url, timeout=5)
    assert r.status_code == 403 and "X-Sluice-Request: 1" in r.json()["error"], r.text
    assert reloads() == 0
    assert refused("origin") == 1 and refused("cross_site") == 1 and refused("missing_header") == 1

    # What the web UI sends (same origin), and what curl sends.
    r = requests.post(
        reload_url,
        headers={"X-Sluice-Request": "1", "Origin": own_origin, "Sec-Fetch-Site": "same-origin"},
        timeout=120,
    )
    assert r.status_code == 200 and r.json()["reloaded"] is True, r.text
    r = requests.post(reload_url, headers={"X-Sluice-Request": "1"}, timeout=120)
    assert r.status_code == 200, r.text
    assert reloads() == 2

    # Every response carries the security headers: the UI, the API, errors.
    for path in ("/", "/api/v1/status", "/api/v1/plugins", "/metrics", "/health/ready", "/nowhere"):
        assert_security_headers(gw.get(path), path)
    page = gw.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert csp.count("'sha256-") == 2 and "connect-src 'self'" in csp, csp


def test_credentials_check_answers_with_security_headers(gateway, downstream, creds):
    ds = downstream()

    def config(ports):
        return gateway_config(
            ports,
            {"otlp/down": {"endpoint": ds.endpoint}},
            receivers={"otlp": otlp_receiver(ports, grpc=False)},
            pipelines={"traces": pipeline(["otlp/down"])},
            admin={"auth": auth_block(creds)},
        )

    gw = gateway(config=config)
    r = gw.get("/api/v1/status")
    assert r.status_code == 401
    assert_security_headers(r, "401")
    # Credentials do not replace the header: a browser would send remembered basic auth itself.
    url = f"{gw.admin_url}/api/v1/plugins/x/reload"
    r = requests.post(url, headers={**basic("ops", creds["password"]), "Origin": "http://evil.example"}, timeout=5)
    assert r.status_code == 403, r.text
    r = requests.post(url, headers={**basic("ops", creds["password"]), "X-Sluice-Request": "1"}, timeout=5)
    assert r.status_code == 404, r.text  # reached the handler: no processor named x


# ----------------------------------------------------------------- exposed without credentials


def exposed_config(tmp_path, admin: dict) -> Path:
    # Nothing binds here: the config is refused before any listener starts, or only validated.
    path = tmp_path / "exposed.yaml"
    path.write_text(json.dumps({
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{free_port()}"}}}},
        "exporters": {"debug": {}},
        "service": {
            "pipelines": {"traces": pipeline(["debug"])},
            "admin": admin,
        },
    }))
    return path


def run_sluice(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SLUICE_BIN), *args], capture_output=True, text=True, timeout=60,
        env=clean_env(env), stdin=subprocess.DEVNULL, check=False,
    )


def test_an_admin_endpoint_beyond_loopback_without_credentials_is_refused(tmp_path):
    exposed = exposed_config(tmp_path, {"endpoint": f"0.0.0.0:{free_port()}"})
    for command in ("run", "validate"):
        r = run_sluice([command, "--config", str(exposed)])
        assert r.returncode == 64, (command, r.returncode, r.stdout, r.stderr)
        assert "service.admin.auth" in r.stderr and "allow_unauthenticated" in r.stderr, (command, r.stderr)
    # The endpoint override is checked the same way.
    loopback = exposed_config(tmp_path, {"endpoint": f"127.0.0.1:{free_port()}"})
    r = run_sluice(["run", "--config", str(loopback)], env={"SLUICE_ADMIN_ENDPOINT": f"[::]:{free_port()}"})
    assert r.returncode == 64 and "service.admin.auth" in r.stderr, r.stderr


def test_the_opt_out_accepts_an_unauthenticated_admin_endpoint(tmp_path):
    """Checked with `validate` (the same checks as `run`), so that no test listens beyond
    loopback."""
    opted_out = exposed_config(tmp_path, {"endpoint": f"0.0.0.0:{free_port()}", "allow_unauthenticated": True})
    r = run_sluice(["validate", "--config", str(opted_out)])
    assert r.returncode == 0 and "valid" in r.stdout, r.stdout + r.stderr
    exposed = exposed_config(tmp_path, {"endpoint": f"0.0.0.0:{free_port()}"})
    for args, env in (
        (["--admin-allow-unauthenticated"], None),
        (["--admin-allow-unauthenticated=true"], None),
        ([], {"SLUICE_ADMIN_ALLOW_UNAUTHENTICATED": "true"}),
    ):
        r = run_sluice(["validate", "--config", str(exposed), *args], env=env)
        assert r.returncode == 0, (args, env, r.stderr)
