// Counts spans per tenant and tags each resource with its tenant.
//
// Config (all optional): {"header": "x-tenant-id", "attribute": "tenant", "default": "unknown"}.
//
// For each resource: the tenant is the resource's own attribute <attribute> (a string, or an
// array starting with one); failing that, the first span (in document order) whose attribute
// `http.request.header.<header>` (the header in lower case) is a string, or an array starting
// with a string, gives the tenant, and the resource gets <attribute> = tenant appended to its
// attributes; failing that, the tenant is <default> and the resource is left as it is. After
// each batch with spans, one delta Sum `tenant.spans` (one data point per tenant, sorted by
// tenant) is emitted into the metrics pipelines.

import {
  Plugin,
  ConfigError,
  Verdict,
  checkConfigKeys,
  getAttribute,
  setAttribute,
  emit,
  now,
} from '@sluice/plugin';

const NAME = 'tenant_counter';
const VERSION = '0.1.0';

function stringOption(config, key, fallback) {
  const v = config[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || v === '') throw new ConfigError(`\`${key}\` must be a non-empty string`);
  return v;
}

// The tenant a header attribute names: a string, or the first element of a list of strings.
function headerTenant(value) {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
  return undefined;
}

// Orders strings by their UTF-8 bytes (as Rust and Python sort them), not by UTF-16 units.
const utf8 = new TextEncoder();
function byteOrder(a, b) {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

export default class TenantCounter extends Plugin {
  static info = { name: 'tenant-counter', version: VERSION, signals: ['traces'], stateful: false };

  constructor(config) {
    super(config);
    checkConfigKeys(config, ['header', 'attribute', 'default']);
    // Header attributes are named in lower case (OpenTelemetry's HTTP conventions).
    this.headerKey = `http.request.header.${stringOption(config, 'header', 'x-tenant-id').toLowerCase()}`;
    this.attribute = stringOption(config, 'attribute', 'tenant');
    this.fallback = stringOption(config, 'default', 'unknown');
  }

  traces(batch) {
    const counts = new Map();
    let spans = 0;
    let modified = false;
    for (const rs of batch.resourceSpans) {
      let tenant = headerTenant(getAttribute(rs.resource.attributes, this.attribute));
      if (tenant === undefined) {
        tenant = undefined;
        search: for (const ss of rs.scopeSpans) {
          for (const span of ss.spans) {
            tenant = headerTenant(getAttribute(span.attributes, this.headerKey));
            if (tenant !== undefined) break search;
          }
        }
        if (tenant !== undefined) {
          rs.resource.attributes.push({ key: this.attribute, value: { stringValue: tenant }, keyStrindex: 0 });
          modified = true;
        } else tenant = this.fallback;
      }
      let n = 0;
      for (const ss of rs.scopeSpans) n += ss.spans.length;
      if (n > 0) counts.set(tenant, (counts.get(tenant) ?? 0) + n);
      spans += n;
    }
    if (spans > 0) this.emitCounts(counts);
    return modified ? Verdict.modified() : Verdict.unchanged();
  }

  emitCounts(counts) {
    const t = now();
    const dataPoints = [...counts.keys()].sort(byteOrder).map((tenant) => ({
      attributes: [{ key: 'tenant', value: { stringValue: tenant } }],
      startTimeUnixNano: t,
      timeUnixNano: t,
      asInt: BigInt(counts.get(tenant)),
    }));
    emit('metrics', {
      resourceMetrics: [
        {
          resource: { attributes: setAttribute([], 'service.name', NAME) },
          scopeMetrics: [
            {
              scope: { name: NAME, version: VERSION },
              metrics: [
                {
                  name: 'tenant.spans',
                  description: 'Spans seen per tenant',
                  unit: '{span}',
                  sum: { aggregationTemporality: 1, isMonotonic: true, dataPoints },
                },
              ],
            },
          ],
        },
      ],
    });
  }
}
