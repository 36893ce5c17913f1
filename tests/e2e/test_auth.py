"""Receiver authentication: bearer tokens (from a file or an environment variable) mapped to
tenants; the tenant travels with the data to the backend in `X-Scope-OrgID`."""

from __future__ import annotations

import secrets
import subprocess

import grpc
import pytest

from support.config import gateway_config, otlp_receiver, pipeline
from support.otlp import grpc_export, simple_trace_request
from support.process import SLUICE_BIN, clean_env

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


@pytest.fixture
def tokens(tmp_path):
    a, b = secrets.token_hex(24), secrets.token_hex(24)
    (tmp_path / "team-a.token").write_text(a + "\n")
    return {"team-a": a, "team-b": b, "file": str(tmp_path / "team-a.token")}


def auth_gateway(gateway, ds, tokens):
    auth = {
        "tenants": [
            {"tenant": "team-a", "bearer_token_file": tokens["file"]},
            {"tenant": "team-b", "bearer_token_env": "E2E_TEAM_B_TOKEN"},
        ]
    }

    def config(ports):
        return gateway_config(
            ports,
            {"otlp/down": {"endpoint": ds.endpoint, "tenant_header": "X-Scope-OrgID"}},
            receivers={"otlp": otlp_receiver(ports, auth=auth)},
            pipelines={"traces": pipeline(["otlp/down"])},
            shutdown_timeout="5s",
        )

    return gateway(config=config, env={"E2E_TEAM_B_TOKEN": tokens["team-b"]})


def test_requests_without_a_known_token_are_refused(gateway, downstream, tokens):
    ds = downstream()
    gw = auth_gateway(gateway, ds, tokens)
    req, _ = simple_trace_request(1)
    body = req.SerializeToString()
    r = gw.post("traces", body)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization" in r.text
    r = gw.post("traces", body, headers={"Authorization": "Bearer " + secrets.token_hex(24)})
    assert r.status_code == 401 and "unknown bearer token" in r.text
    r = gw.post("traces", body, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(gw.grpc_target, "traces", body, timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert gw.metric("sluice_receiver_bad_requests_total", reason="unauthenticated", transport="http") == 3
    assert gw.metric("sluice_receiver_bad_requests_total", reason="unauthenticated", transport="grpc") == 1
    assert ds.requests("traces") == []
    # Admin endpoints stay reachable (health probes carry no token) and show no token.
    for path in ("/health/detailed", "/api/v1/status", "/metrics"):
        text = gw.get(path).text
        assert tokens["team-a"] not in text and tokens["team-b"] not in text, path
    assert tokens["team-a"] not in gw.stderr() and tokens["team-b"] not in gw.stderr()


def test_each_token_sends_its_tenant_to_the_backend(gateway, downstream, tokens):
    ds = downstream()
    gw = auth_gateway(gateway, ds, tokens)
    # The official SDK with its headers option, as a user would configure it.
    provider = TracerProvider(resource=Resource.create({"service.name": "a-service"}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(
                endpoint=gw.http_url + "/v1/traces",
                headers={"Authorization": f"Bearer {tokens['team-a']}"},
            )
        )
    )
    with provider.get_tracer("e2e").start_as_current_span("from team a"):
        pass
    provider.shutdown()
    (got,) = ds.wait_for("traces", 1, timeout=10)
    assert got.metadata.get("x-scope-orgid") == "team-a", got.metadata

    req, _ = simple_trace_request(2)
    grpc_export(
        gw.grpc_target, "traces", req.SerializeToString(), timeout=5,
        metadata=[("authorization", f"Bearer {tokens['team-b']}")],
    )
    got = ds.wait_for("traces", 2, timeout=10)
    assert got[1].metadata.get("x-scope-orgid") == "team-b", got[1].metadata
    assert got[1].raw == req.SerializeToString(), "forwarded unchanged"


def test_auth_settings_are_validated_without_printing_tokens(tmp_path, tokens):
    cfg = tmp_path / "auth.yaml"
    cfg.write_text(
        "receivers:\n"
        "  otlp:\n"
        "    protocols: { http: { endpoint: 127.0.0.1:4318 } }\n"
        "    auth:\n"
        "      tenants:\n"
        f"        - {{ tenant: team-a, bearer_token_file: {tokens['file']} }}\n"
        "        - { tenant: team-b, bearer_token_env: E2E_UNSET_TOKEN_VAR }\n"
        f"        - {{ tenant: team-c, bearer_token_file: {tokens['file']}, bearer_token_env: X }}\n"
        f"        - {{ tenant: team-d, bearer_token_file: {tokens['file']} }}\n"
        "exporters: { debug: {} }\n"
        "service: { pipelines: { traces: { receivers: [otlp], exporters: [debug] } } }\n"
    )
    r = subprocess.run(
        [str(SLUICE_BIN), "validate", "--config", str(cfg)],
        capture_output=True, text=True, timeout=30, env=clean_env(),
    )
    assert r.returncode == 64
    assert "receivers.otlp.auth.tenants[1]: environment variable `E2E_UNSET_TOKEN_VAR` is not set" in r.stderr, r.stderr
    assert "receivers.otlp.auth.tenants[2]: set exactly one of" in r.stderr, r.stderr
    assert "receivers.otlp.auth.tenants[3]: the same token is given to two tenants" in r.stderr, r.stderr
    assert tokens["team-a"] not in r.stderr + r.stdout
