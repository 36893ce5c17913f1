"""TLS to backends: the remote_write exporter writes into a real Prometheus served over HTTPS
(and with mutual TLS), trusting a private CA from `tls.ca_file`; a server whose certificate
is not trusted is refused and the failure is counted, not silently ignored."""

import subprocess
import time

import requests

from support.config import gateway_config, otlp_receiver, pipeline
from support.polling import wait_until

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ["server", "client"]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    return d


def metrics_request(value: float) -> bytes:
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource_pb2.Resource(
                    attributes=[common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="tls-app"))]
                ),
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        metrics=[
                            metrics_pb2.Metric(
                                name="tls.probe",
                                gauge=metrics_pb2.Gauge(
                                    data_points=[metrics_pb2.NumberDataPoint(time_unix_nano=time.time_ns(), as_double=value)]
                                ),
                            )
                        ]
                    )
                ],
            )
        ]
    ).SerializeToString()


def https_prometheus(prometheus, pki, mutual: bool):
    web = pki / ("web-mtls.yml" if mutual else "web.yml")
    lines = ["tls_server_config:", f"  cert_file: {pki / 'server.crt'}", f"  key_file: {pki / 'server.key'}"]
    if mutual:
        lines += ["  client_auth_type: RequireAndVerifyClientCert", f"  client_ca_file: {pki / 'ca.crt'}"]
    web.write_text("\n".join(lines) + "\n")
    prom = prometheus({"global": {"scrape_interval": "1h"}},
                      flags=["--web.enable-remote-write-receiver", f"--web.config.file={web}"], wait_ready=False)
    client = (str(pki / "client.crt"), str(pki / "client.key")) if mutual else None

    def ready():
        try:
            return requests.get(f"https://127.0.0.1:{prom.port}/-/ready", verify=str(pki / "ca.crt"),
                                cert=client, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, 20, "prometheus over https")
    return prom, client


def query(prom, pki, client, promql):
    r = requests.get(f"https://127.0.0.1:{prom.port}/api/v1/query", params={"query": promql},
                     verify=str(pki / "ca.crt"), cert=client, timeout=5)
    return r.json()["data"]["result"]


def gateway_writing_to(gateway, prom, tls):
    def config(ports):
        return gateway_config(
            ports,
            {
                "prometheus_remote_write": {
                    "endpoint": f"https://127.0.0.1:{prom.port}/api/v1/write",
                    "tls": tls,
                    "retry_on_failure": {"initial_interval": "100ms", "max_elapsed_time": "2s"},
                }
            },
            receivers={"otlp": otlp_receiver(ports, grpc=False)},
            pipelines={"metrics": pipeline(["prometheus_remote_write"])},
        )

    return gateway(config=config)


def test_remote_write_over_https_with_a_private_ca(gateway, prometheus, tmp_path):
    pki = make_pki(tmp_path)
    prom, client = https_prometheus(prometheus, pki, mutual=False)
    gw = gateway_writing_to(gateway, prom, {"ca_file": str(pki / "ca.crt")})
    assert gw.post("metrics", metrics_request(42.0)).status_code == 200
    wait_until(lambda: query(prom, pki, client, 'tls_probe{job="tls-app"}'), 15, "the sample in Prometheus")
    assert float(query(prom, pki, client, 'tls_probe{job="tls-app"}')[0]["value"][1]) == 42.0


def test_remote_write_with_mutual_tls(gateway, prometheus, tmp_path):
    pki = make_pki(tmp_path)
    prom, client = https_prometheus(prometheus, pki, mutual=True)
    gw = gateway_writing_to(gateway, prom, {
        "ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "client.crt"), "key_file": str(pki / "client.key"),
    })
    assert gw.post("metrics", metrics_request(7.0)).status_code == 200
    wait_until(lambda: query(prom, pki, client, 'tls_probe{job="tls-app"}'), 15, "the sample in Prometheus")


def test_an_untrusted_server_is_refused_and_counted(gateway, prometheus, tmp_path):
    pki = make_pki(tmp_path)
    prom, client = https_prometheus(prometheus, pki, mutual=False)
    gw = gateway_writing_to(gateway, prom, None)  # the private CA is not trusted
    assert gw.post("metrics", metrics_request(1.0)).status_code == 200
    gw.wait_metric("sluice_dropped_records_total", 1, timeout=15,
                   component="exporter/prometheus_remote_write", reason="retries_exhausted")
    assert gw.metric("sluice_exporter_send_failures_total", retryable="true") >= 1
    assert query(prom, pki, client, "tls_probe") == []


def test_otlp_grpc_exporter_over_tls_with_mutual_auth(gateway, tmp_path):
    """The otlp exporter sends over gRPC with TLS to a server that requires a client
    certificate signed by the private CA."""
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
    from opentelemetry.proto.trace.v1 import trace_pb2

    pki = make_pki(tmp_path)
    received = []

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802 - gRPC method name
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.crt").read_bytes())],
        root_certificates=(pki / "ca.crt").read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        def config(ports):
            return gateway_config(
                ports,
                {
                    "otlp/tls": {
                        "endpoint": f"https://127.0.0.1:{port}",
                        "protocol": "grpc",
                        "tls": {
                            "ca_file": str(pki / "ca.crt"),
                            "cert_file": str(pki / "client.crt"),
                            "key_file": str(pki / "client.key"),
                        },
                    }
                },
                receivers={"otlp": otlp_receiver(ports, grpc=False)},
                pipelines={"traces": pipeline(["otlp/tls"])},
            )

        gw = gateway(config=config)
        request = trace_service_pb2.ExportTraceServiceRequest(
            resource_spans=[
                trace_pb2.ResourceSpans(
                    scope_spans=[
                        trace_pb2.ScopeSpans(
                            spans=[trace_pb2.Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="over-tls")]
                        )
                    ]
                )
            ]
        )
        assert gw.post("traces", request.SerializeToString()).status_code == 200
        wait_until(lambda: received, 15, "the span over TLS")
        assert received[0] == request
    finally:
        server.stop(0)
