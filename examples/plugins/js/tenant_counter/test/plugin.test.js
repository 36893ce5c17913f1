import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Verdict, ConfigError, getAttribute, setAttribute, otlp } from '@sluice/plugin';
import * as testing from '@sluice/plugin/testing';
import TenantCounter from '../src/plugin.js';

const HEADER = 'http.request.header.x-tenant-id';

// A batch of resources, each a list of spans given as [name, tenant header value or undefined].
function batch(resources) {
  return {
    resourceSpans: resources.map(({ attrs = [], spans }) => ({
      resource: { attributes: attrs },
      scopeSpans: [{ spans: spans.map(([name, header]) => {
        const attributes = [];
        if (header !== undefined) setAttribute(attributes, HEADER, header);
        return { name, attributes };
      }) }],
    })),
  };
}

function counts(host) {
  const emitted = host.takeEmitted();
  assert.equal(emitted.length, 1);
  assert.equal(emitted[0].signal, 'metrics');
  const rm = emitted[0].batch.resourceMetrics;
  assert.equal(rm.length, 1);
  assert.equal(getAttribute(rm[0].resource.attributes, 'service.name'), 'tenant_counter');
  const sm = rm[0].scopeMetrics[0];
  assert.equal(sm.scope.name, 'tenant_counter');
  assert.equal(sm.scope.version, '0.1.0');
  const m = sm.metrics[0];
  assert.equal(m.name, 'tenant.spans');
  assert.equal(m.description, 'Spans seen per tenant');
  assert.equal(m.unit, '{span}');
  assert.equal(m.sum.aggregationTemporality, otlp.AggregationTemporality.DELTA);
  assert.equal(m.sum.isMonotonic, true);
  return m.sum.dataPoints.map((dp) => {
    assert.equal(dp.startTimeUnixNano, 42n);
    assert.equal(dp.timeUnixNano, 42n);
    assert.equal(dp.attributes.length, 1);
    return [getAttribute(dp.attributes, 'tenant'), dp.asInt];
  });
}

test('tags resources from the first span header and counts spans per tenant', () => {
  const host = testing.mockHost({ now: 42n });
  const p = testing.instantiate(TenantCounter, '{}');
  const b = batch([
    { spans: [['a', undefined], ['b', ['acme', 'other']], ['c', 'zeta']] },
    { attrs: [{ key: 'tenant', value: { stringValue: 'beta' } }], spans: [['d', 'acme']] },
    { spans: [['e', undefined], ['f', 7]] },
    { spans: [['g', 'zeta'], ['h', 'zeta']] },
  ]);
  const r = testing.run(p, 'traces', b);
  assert.equal(r.kind, 'modified');
  const res = r.output.resourceSpans.map((rs) => rs.resource.attributes.map((kv) => [kv.key, otlp.toJson('AnyValue', kv.value)]));
  assert.deepEqual(res, [
    [['tenant', { stringValue: 'acme' }]],
    [['tenant', { stringValue: 'beta' }]],
    [],
    [['tenant', { stringValue: 'zeta' }]],
  ]);
  assert.deepEqual(counts(host), [['acme', 3n], ['beta', 1n], ['unknown', 2n], ['zeta', 2n]]);
});

test('unchanged when every resource has its tenant or none is found; nothing emitted without spans', () => {
  const host = testing.mockHost({ now: 42n });
  const p = testing.instantiate(TenantCounter, '');
  const v = p.traces(batch([{ attrs: [{ key: 'tenant', value: { stringValue: 't' } }], spans: [['a', 'x']] }, { spans: [['b', undefined]] }]));
  assert.equal(v, Verdict.unchanged());
  assert.deepEqual(counts(host), [['t', 1n], ['unknown', 1n]]);
  assert.equal(p.traces(batch([{ spans: [] }])), Verdict.unchanged());
  assert.deepEqual(host.takeEmitted(), []);
});

test('config: header, attribute and default', () => {
  const host = testing.mockHost({ now: 42n });
  const p = testing.instantiate(TenantCounter, '{"header": "x-org", "attribute": "org", "default": "none"}');
  const b = { resourceSpans: [
    { scopeSpans: [{ spans: [{ name: 'a', attributes: setAttribute([], 'http.request.header.x-org', ['o1']) }] }] },
    { scopeSpans: [{ spans: [{ name: 'b', attributes: setAttribute([], HEADER, 'ignored') }] }] },
  ] };
  const r = testing.run(p, 'traces', b);
  assert.equal(getAttribute(r.output.resourceSpans[0].resource.attributes, 'org'), 'o1');
  assert.deepEqual(r.output.resourceSpans[1].resource.attributes, []);
  assert.deepEqual(counts(host), [['none', 1n], ['o1', 1n]]);
});

test('tenants sort by UTF-8 bytes', () => {
  const host = testing.mockHost({ now: 42n });
  const p = testing.instantiate(TenantCounter);
  p.traces(batch([{ spans: [['a', '\u{1F600}']] }, { spans: [['b', '\uFF5E']] }, { spans: [['c', 'B']] }, { spans: [['d', 'a']] }]));
  assert.deepEqual(counts(host).map(([t]) => t), ['B', 'a', '\uFF5E', '\u{1F600}']);
});

test('bad config is a ConfigError', () => {
  assert.throws(() => testing.instantiate(TenantCounter, '{"tenant": "x"}'), (e) => e instanceof ConfigError && /`tenant`/.test(e.message));
  assert.throws(() => testing.instantiate(TenantCounter, '{"header": 1}'), ConfigError);
});
