import pytest

from sluice_plugin import ConfigError, Signal, Verdict, get_attribute, otlp, testing
from tenant_counter import TenantCounter


def span(name, tenant=None):
    attributes = []
    if tenant is not None:
        attributes.append(
            otlp.KeyValue(
                key="http.request.header.x-tenant-id",
                value=otlp.AnyValue.of([tenant]),
            )
        )
    return otlp.Span(name=name, attributes=attributes)


def batch(*resources):
    return otlp.ExportTraceServiceRequest(
        resource_spans=[
            otlp.ResourceSpans(resource=resource, scope_spans=[otlp.ScopeSpans(spans=spans)])
            for resource, spans in resources
        ]
    )


def emitted_counts(host):
    assert len(host.emitted) == 1
    signal, request = host.emitted[0]
    assert signal is Signal.METRICS
    metric = request.resource_metrics[0].scope_metrics[0].metrics[0]
    assert metric.name == "tenant.spans" and metric.sum.is_monotonic
    assert metric.sum.aggregation_temporality == 1
    return {get_attribute(p.attributes, "tenant"): p.as_int for p in metric.sum.data_points}


def test_copies_the_header_into_the_resource_and_counts_per_tenant():
    host = testing.mock_host(clock=1_700_000_000_000_000_000)
    plugin = TenantCounter({})
    b = batch(
        (otlp.Resource(), [span("a"), span("b", "acme"), span("c", "other")]),
        (None, [span("d")]),
        (otlp.Resource(attributes=[otlp.KeyValue(key="tenant", value=otlp.AnyValue.of("globex"))]), [span("e", "acme")]),
    )
    assert plugin.traces(b) == Verdict.MODIFIED
    assert get_attribute(b.resource_spans[0].resource, "tenant") == "acme"
    assert b.resource_spans[1].resource is None
    assert get_attribute(b.resource_spans[2].resource, "tenant") == "globex"
    assert emitted_counts(host) == {"acme": 3, "unknown": 1, "globex": 1}
    point = host.emitted[0][1].resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
    assert point.time_unix_nano == 1_700_000_000_000_000_000


def test_a_batch_without_the_header_is_unchanged_but_counted():
    host = testing.mock_host()
    plugin = TenantCounter({"default": "none"})
    assert testing.run(plugin, Signal.TRACES, batch((None, [span("a"), span("b")])).encode()) == ("unchanged", None)
    assert emitted_counts(host) == {"none": 2}


def test_an_empty_batch_emits_nothing():
    host = testing.mock_host()
    TenantCounter({}).traces(otlp.ExportTraceServiceRequest())
    assert host.emitted == []


@pytest.mark.parametrize("config", [{"headers": "x"}, {"header": ""}, {"attribute": 3}])
def test_bad_config_is_refused(config):
    with pytest.raises(ConfigError):
        TenantCounter(config)
