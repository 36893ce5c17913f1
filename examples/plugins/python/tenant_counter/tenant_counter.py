"""tenant-counter: copies the tenant a request header names into a resource attribute, and
counts spans per tenant into a `tenant.spans` metric it emits after each batch."""

from sluice_plugin import ConfigError, Plugin, Signal, Verdict, get_attribute, host, otlp

DEFAULTS = {"header": "x-tenant-id", "attribute": "tenant", "default": "unknown"}


def _tenant_of(value):
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return None


class TenantCounter(Plugin):
    name = "tenant-counter"
    version = "0.1.0"
    signals = [Signal.TRACES]

    def __init__(self, config):
        unknown = sorted(set(config) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"unknown config key `{unknown[0]}` (known: attribute, default, header)")
        settings = {**DEFAULTS, **config}
        for key, value in settings.items():
            if not isinstance(value, str) or not value:
                raise ConfigError(f"`{key}` must be a non-empty string")
        self.header_attribute = "http.request.header." + settings["header"].lower()
        self.attribute = settings["attribute"]
        self.default = settings["default"]

    def traces(self, batch):
        counts = {}
        modified = False
        for rs in batch.resource_spans:
            spans = [span for ss in rs.scope_spans for span in ss.spans]
            tenant = _tenant_of(get_attribute(rs.resource, self.attribute))
            if tenant is None:
                for span in spans:
                    tenant = _tenant_of(get_attribute(span, self.header_attribute))
                    if tenant is not None:
                        break
                if tenant is not None:
                    if rs.resource is None:
                        rs.resource = otlp.Resource()
                    rs.resource.attributes.append(
                        otlp.KeyValue(key=self.attribute, value=otlp.AnyValue(string_value=tenant))
                    )
                    modified = True
                else:
                    tenant = self.default
            if spans:
                counts[tenant] = counts.get(tenant, 0) + len(spans)
        if counts:
            host.emit(Signal.METRICS, self.count_metric(counts, host.now()))
        return Verdict.MODIFIED if modified else Verdict.UNCHANGED

    def count_metric(self, counts, now):
        points = [
            otlp.NumberDataPoint(
                attributes=[otlp.KeyValue(key="tenant", value=otlp.AnyValue(string_value=t))],
                start_time_unix_nano=now,
                time_unix_nano=now,
                as_int=counts[t],
            )
            for t in sorted(counts, key=lambda t: t.encode())
        ]
        metric = otlp.Metric(
            name="tenant.spans",
            description="Spans seen per tenant",
            unit="{span}",
            sum=otlp.Sum(data_points=points, aggregation_temporality=1, is_monotonic=True),
        )
        return otlp.ExportMetricsServiceRequest(
            resource_metrics=[
                otlp.ResourceMetrics(
                    resource=otlp.Resource(
                        attributes=[
                            otlp.KeyValue(
                                key="service.name", value=otlp.AnyValue(string_value="tenant_counter")
                            )
                        ]
                    ),
                    scope_metrics=[
                        otlp.ScopeMetrics(
                            scope=otlp.InstrumentationScope(name="tenant_counter", version="0.1.0"),
                            metrics=[metric],
                        )
                    ],
                )
            ]
        )
