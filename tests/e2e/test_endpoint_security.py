"""The admin and scrape endpoints can be exposed: TLS and credentials on both (a real Prometheus
scrapes over TLS with basic auth), probes stay open, and certificates are reloaded when their
files change, without a restart."""

from __future__ import annotations

import base64
import secrets
import subprocess
import shutil
import socket
import ssl
import time

import pytest
import requests

from conftest import free_port, grpc_export, simple_trace_request, wait_until
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
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{ports['http']}"}}}},
            "exporters": {"otlp/down": {"endpoint": ds.endpoint}},
            "service": {
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp/down"]}},
                "admin": {"endpoint": f"127.0.0.1:{ports['admin']}", "auth": auth_block(creds)},
            },
        }

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
        return {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{ports['grpc']}"}}}},
            "exporters": {
                "prometheus": {"endpoint": f"127.0.0.1:{ports['scrape']}", "tls": tls, "auth": auth_block(creds)}
            },
            "service": {
                "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["prometheus"]}},
                "admin": {"endpoint": f"127.0.0.1:{ports['admin']}", "tls": tls, "auth": auth_block(creds)},
            },
        }

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
