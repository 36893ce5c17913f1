"""Tenants: basic authentication and API keys besides bearer tokens, and per-tenant limits
(requests and records per second, concurrent requests). A tenant over a limit gets 429 with
`Retry-After` (gRPC `UNAVAILABLE`); the other tenants are unaffected."""

from __future__ import annotations

import base64
import secrets
import select
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from support.config import gateway_config, otlp_receiver, pipeline
from support.otlp import grpc_export, simple_trace_request
from support.polling import wait_until
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


@pytest.fixture
def secrets_dir(tmp_path):
    out = {"a": secrets.token_hex(24), "b": secrets.token_hex(24), "password": secrets.token_hex(12)}
    for name in ("a", "b", "password"):
        (tmp_path / f"{name}.secret").write_text(out[name] + "\n")
        out[f"{name}_file"] = str(tmp_path / f"{name}.secret")
    return out


def tenants_gateway(gateway, ds, s, limits_a: dict | None = None):
    auth = {
        "api_key_header": "X-API-Key",
        "tenants": [
            {"tenant": "team-a", "bearer_token_file": s["a_file"], "limits": limits_a or {}},
            {"tenant": "team-b", "bearer_token_file": s["b_file"]},
            {
                "tenant": "team-c",
                "basic_auth": {"username": "collector-c", "password_file": s["password_file"]},
            },
        ],
    }

    def config(ports):
        return gateway_config(
            ports,
            {"otlp/down": {"endpoint": ds.endpoint, "tenant_header": "X-Scope-OrgID"}},
            receivers={"otlp": otlp_receiver(ports, auth=auth)},
            pipelines={"traces": pipeline(["otlp/down"])},
            shutdown_timeout="5s",
        )

    return gateway(config=config)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def tenants_seen(ds) -> dict[str, int]:
    seen: dict[str, int] = {}
    for r in ds.requests("traces"):
        t = r.metadata.get("x-scope-orgid", "")
        seen[t] = seen.get(t, 0) + 1
    return seen


def test_basic_auth_from_the_official_sdk_and_api_keys_map_to_tenants(gateway, downstream, secrets_dir):
    s = secrets_dir
    ds = downstream()
    gw = tenants_gateway(gateway, ds, s)
    basic = base64.b64encode(f"collector-c:{s['password']}".encode()).decode()
    provider = TracerProvider(resource=Resource.create({"service.name": "basic-auth"}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{gw.http_url}/v1/traces", headers={"Authorization": f"Basic {basic}"})
        )
    )
    with provider.get_tracer("e2e").start_as_current_span("with-basic-auth"):
        pass
    provider.shutdown()
    ds.wait_for("traces", 1)
    assert tenants_seen(ds) == {"team-c": 1}

    req, _ = simple_trace_request(2)
    body = req.SerializeToString()
    assert gw.post("traces", body, headers={"X-API-Key": s["a"]}).status_code == 200
    ds.wait_for("traces", 2)
    assert tenants_seen(ds) == {"team-c": 1, "team-a": 1}

    wrong = base64.b64encode(b"collector-c:not-the-password").decode()
    r = gw.post("traces", body, headers={"Authorization": f"Basic {wrong}"})
    assert r.status_code == 401 and "unknown user or wrong password" in r.text, r.text
    assert "Basic" in r.headers["WWW-Authenticate"]
    r = gw.post("traces", body, headers={"X-API-Key": "nope"})
    assert r.status_code == 401 and "unknown API key" in r.text, r.text
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(gw.grpc_target, "traces", body, timeout=5, metadata=[("x-api-key", "nope")])
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    grpc_export(gw.grpc_target, "traces", body, timeout=5, metadata=[("x-api-key", s["b"])])
    ds.wait_for("traces", 3)
    assert gw.metric("sluice_tenant_accepted_records_total", tenant="team-b") == 2
    assert gw.metric("sluice_tenant_accepted_records_total", tenant="team-c") == 1
    for path in ("/health/detailed", "/api/v1/status", "/metrics"):
        text = gw.get(path).text
        assert s["password"] not in text and s["a"] not in text, path
    assert s["password"] not in gw.stderr()


def test_a_tenant_over_its_records_per_second_is_refused_and_the_others_are_not(gateway, downstream, secrets_dir):
    s = secrets_dir
    ds = downstream()
    gw = tenants_gateway(gateway, ds, s, limits_a={"records_per_second": 200})
    statuses: dict[str, list[int]] = {"a": [], "b": []}
    sent_b = 0
    refused_a = None

    def send(who: str):
        req, _ = simple_trace_request(50)
        return who, gw.post("traces", req.SerializeToString(), headers=bearer(s[who]))

    with ThreadPoolExecutor(max_workers=4) as pool:
        for who, r in pool.map(send, ["a", "b"] * 20):
            statuses[who].append(r.status_code)
            if who == "b":
                sent_b += 50
            elif r.status_code == 429 and refused_a is None:
                refused_a = r
    assert statuses["b"] == [200] * 20, statuses["b"]
    assert 200 in statuses["a"] and 429 in statuses["a"], statuses["a"]
    assert refused_a is not None
    assert int(refused_a.headers["Retry-After"]) >= 1
    assert "tenant team-a is over its limit of 200 records_per_second" in refused_a.text, refused_a.text
    limited = gw.metric("sluice_tenant_limited_total", tenant="team-a", limit="records_per_second")
    assert limited == statuses["a"].count(429)
    assert gw.metric("sluice_tenant_limited_total", tenant="team-b", limit="records_per_second") == 0
    assert gw.metric("sluice_receiver_refused_records_total", reason="tenant_limit") == 50 * limited
    wait_until(lambda: gw.metric("sluice_tenant_accepted_records_total", tenant="team-b") == sent_b, 5, "team-b")
    # After a second the budget is back.
    time.sleep(1.2)
    req, _ = simple_trace_request(50)
    assert gw.post("traces", req.SerializeToString(), headers=bearer(s["a"])).status_code == 200


def test_a_tenant_over_its_request_rate_gets_429_or_unavailable(gateway, downstream, secrets_dir):
    s = secrets_dir
    ds = downstream()
    gw = tenants_gateway(gateway, ds, s, limits_a={"requests_per_second": 5})
    req, _ = simple_trace_request(1)
    body = req.SerializeToString()
    codes = [gw.post("traces", body, headers=bearer(s["a"])).status_code for _ in range(15)]
    assert codes.count(429) >= 5 and codes.count(200) >= 5, codes
    with pytest.raises(grpc.RpcError) as e:
        for _ in range(10):
            grpc_export(gw.grpc_target, "traces", body, timeout=5, metadata=[("authorization", f"Bearer {s['a']}")])
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "requests_per_second" in e.value.details()
    assert all(gw.post("traces", body, headers=bearer(s["b"])).status_code == 200 for _ in range(15))
    assert gw.metric("sluice_receiver_bad_requests_total", reason="tenant_limit", transport="http") == codes.count(429)


def test_a_tenant_at_its_concurrency_limit_is_refused_while_others_proceed(gateway, downstream, secrets_dir):
    s = secrets_dir
    ds = downstream()
    gw = tenants_gateway(gateway, ds, s, limits_a={"max_concurrent_requests": 1})
    req, _ = simple_trace_request(3)
    body = req.SerializeToString()
    # One request of team-a whose body is still arriving holds the tenant's only slot.
    head = (
        f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s['a']}\r\n"
        f"Content-Type: application/x-protobuf\r\nContent-Length: {len(body)}\r\n\r\n"
    )

    def hold_the_slot() -> socket.socket:
        for _attempt in range(10):
            slow = socket.create_connection(("127.0.0.1", gw.ports["http"]), timeout=10)
            slow.sendall(head.encode() + body[:5])
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if select.select([slow], [], [], 0)[0]:
                    # Answered already: a probe below overtook it and held the slot.
                    break
                if gw.post("traces", body, headers=bearer(s["a"])).status_code == 429:
                    return slow
                time.sleep(0.02)
            slow.close()
        raise AssertionError("team-a's second concurrent request was never refused")

    slow = hold_the_slot()
    try:
        r = gw.post("traces", body, headers=bearer(s["a"]))
        assert r.status_code == 429 and "max_concurrent_requests" in r.text, r.text
        assert gw.post("traces", body, headers=bearer(s["b"])).status_code == 200
        slow.sendall(body[5:])
        assert b" 200 " in slow.recv(4096).split(b"\r\n", 1)[0] + b" "
    finally:
        slow.close()
    # The slot is free again.
    assert gw.post("traces", body, headers=bearer(s["a"])).status_code == 200
    assert gw.metric("sluice_tenant_limited_total", tenant="team-a", limit="max_concurrent_requests") >= 1
