"""TLS and mutual TLS on the receivers, with certificates made by openssl at test time: the
official SDK over HTTPS, gRPC with a private CA, a second Sluice forwarding over TLS, and clients
without a (trusted) certificate refused."""

from __future__ import annotations

import subprocess

import grpc
import pytest
import requests

from support.config import gateway_config, otlp_receiver, pipeline
from support.otlp import GRPC_METHODS, simple_trace_request
from support.process import SLUICE_BIN
from test_tls import make_pki

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


def tls_gateway(gateway, downstream_endpoint: str, pki, mutual: bool = False):
    tls = {"cert_file": str(pki / "server.crt"), "key_file": str(pki / "server.key")}
    if mutual:
        tls["client_ca_file"] = str(pki / "ca.crt")

    def config(ports):
        return gateway_config(
            ports,
            {"otlp/down": {"endpoint": downstream_endpoint}},
            receivers={"otlp": otlp_receiver(ports, grpc={"tls": tls}, http={"tls": tls})},
            pipelines={"traces": pipeline(["otlp/down"])},
            shutdown_timeout="5s",
        )

    return gateway(config=config)


def grpc_tls_export(target: str, body: bytes, pki, client_cert: bool):
    creds = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.crt").read_bytes(),
        private_key=(pki / "client.key").read_bytes() if client_cert else None,
        certificate_chain=(pki / "client.crt").read_bytes() if client_cert else None,
    )
    with grpc.secure_channel(target, creds) as channel:
        call = channel.unary_unary(GRPC_METHODS["traces"], request_serializer=None, response_deserializer=None)
        return call(body, timeout=10)


def test_receivers_serve_https_and_grpc_over_tls(gateway, downstream, tmp_path, monkeypatch):
    # requests lets these variables win over the exporter's own certificate_file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    pki = make_pki(tmp_path)
    ds = downstream()
    gw = tls_gateway(gateway, ds.endpoint, pki)
    https = f"https://127.0.0.1:{gw.ports['http']}"

    # The official SDK, trusting the private CA.
    provider = TracerProvider(resource=Resource.create({"service.name": "tls-client"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{https}/v1/traces", certificate_file=str(pki / "ca.crt")))
    )
    with provider.get_tracer("e2e").start_as_current_span("over https"):
        pass
    provider.shutdown()
    ds.wait_for("traces", 1, timeout=10)

    req, _ = simple_trace_request(2)
    grpc_tls_export(gw.grpc_target, req.SerializeToString(), pki, client_cert=False)
    got = ds.wait_for("traces", 2, timeout=10)
    assert got[1].raw == req.SerializeToString()

    # Clear text to a TLS port fails; a client that does not trust the CA fails.
    with pytest.raises(requests.RequestException):
        requests.post(f"http://127.0.0.1:{gw.ports['http']}/v1/traces", data=b"",
                      headers={"Content-Type": "application/x-protobuf"}, timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(f"{https}/v1/traces", data=b"", headers={"Content-Type": "application/x-protobuf"}, timeout=5)
    assert gw.alive()
    assert len(ds.requests("traces")) == 2


def test_mutual_tls_requires_a_client_certificate_from_the_ca(gateway, downstream, tmp_path):
    pki = make_pki(tmp_path)
    ds = downstream()
    gw = tls_gateway(gateway, ds.endpoint, pki, mutual=True)
    https = f"https://127.0.0.1:{gw.ports['http']}/v1/traces"
    req, _ = simple_trace_request(1)
    body = req.SerializeToString()
    headers = {"Content-Type": "application/x-protobuf"}
    with pytest.raises(requests.RequestException):
        requests.post(https, data=body, headers=headers, verify=str(pki / "ca.crt"), timeout=5)
    r = requests.post(https, data=body, headers=headers, verify=str(pki / "ca.crt"),
                      cert=(str(pki / "client.crt"), str(pki / "client.key")), timeout=5)
    assert r.status_code == 200, r.text
    with pytest.raises(grpc.RpcError):
        grpc_tls_export(gw.grpc_target, body, pki, client_cert=False)
    grpc_tls_export(gw.grpc_target, body, pki, client_cert=True)
    assert len(ds.wait_for("traces", 2, timeout=10)) == 2


def test_sluice_forwards_to_sluice_over_mutual_tls(gateway, downstream, tmp_path):
    """Edge gateway -> central gateway over OTLP/gRPC with mTLS, both Sluice."""
    pki = make_pki(tmp_path)
    ds = downstream()
    central = tls_gateway(gateway, ds.endpoint, pki, mutual=True)
    edge = gateway({
        "otlp/central": {
            "endpoint": f"https://127.0.0.1:{central.ports['grpc']}",
            "tls": {"ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "client.crt"),
                    "key_file": str(pki / "client.key")},
        }
    }, pipelines={"traces": pipeline(["otlp/central"])})
    req, _ = simple_trace_request(3)
    assert edge.post("traces", req.SerializeToString()).status_code == 200
    (got,) = ds.wait_for("traces", 1, timeout=15)
    assert got.raw == req.SerializeToString()


def test_bad_tls_files_stop_the_gateway_with_a_clear_error(tmp_path):
    pki = make_pki(tmp_path)
    cfg = tmp_path / "tls.yaml"
    cfg.write_text(
        "receivers:\n"
        "  otlp:\n"
        "    protocols:\n"
        f"      http: {{ endpoint: 127.0.0.1:0, tls: {{ cert_file: {pki / 'server.crt'}, key_file: {tmp_path / 'missing.key'} }} }}\n"
        "exporters: { debug: {} }\n"
        "service: { pipelines: { traces: { receivers: [otlp], exporters: [debug] } }, admin: { endpoint: 127.0.0.1:0 } }\n"
    )
    r = subprocess.run([str(SLUICE_BIN), "validate", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 64, r.stdout + r.stderr
    assert "receivers.otlp.protocols.http.tls" in r.stderr and "missing.key" in r.stderr, r.stderr
