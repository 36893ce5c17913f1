"""What Sluice's end-to-end tests are built from; `conftest.py` turns it into fixtures.

- `process`: the binary under test, the environment it runs in, and the registry of every
  process a test starts, so that none outlives the session.
- `ports`, `polling`: free loopback ports, and waiting for a condition with a deadline.
- `config`: gateway configs on loopback ports (`gateway_config`, `otlp_receiver`, `pipeline`).
- `gateway`: one `sluice run` process: start, wait until ready, stop, its logs and admin API.
- `backends`: fake downstream backends (OTLP/gRPC and OTLP/HTTP) that record what they get.
- `otlp`: OTLP request builders and a raw OTLP/gRPC client call.
- `prometheus`: a real Prometheus server, and where `prometheus` and `promtool` are.
- `exposition`: parsing the Prometheus text exposition.
"""
