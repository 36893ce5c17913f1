import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Verdict, ConfigError } from '@sluice/plugin';
import * as testing from '@sluice/plugin/testing';
import DropHealth from '../src/plugin.js';

test('drops spans starting with a default prefix', () => {
  const p = testing.instantiate(DropHealth, '{}');
  const v = p.traces(testing.traces(['GET /health', 'GET /users', 'GET /ready?x', 'GET /livez', 'POST /health']));
  assert.equal(v.kind, 'keep');
  assert.deepEqual(v.indices, [1, 4]);
});

test('unchanged when nothing is dropped', () => {
  const p = testing.instantiate(DropHealth, '');
  assert.equal(p.traces(testing.traces(['GET /users', 'get /health'])), Verdict.unchanged());
});

test('configured prefixes replace the defaults', () => {
  const p = testing.instantiate(DropHealth, '{"prefixes": ["/ping"]}');
  assert.deepEqual(p.traces(testing.traces(['GET /health', '/ping/x'])).indices, [0]);
  const none = testing.instantiate(DropHealth, '{"prefixes": []}');
  assert.equal(none.traces(testing.traces(['GET /health'])), Verdict.unchanged());
});

test('bad config is a ConfigError', () => {
  assert.throws(() => testing.instantiate(DropHealth, '{"prefix": ["x"]}'), (e) => e instanceof ConfigError && /`prefix`/.test(e.message));
  assert.throws(() => testing.instantiate(DropHealth, '{"prefixes": "GET /health"}'), ConfigError);
  assert.throws(() => testing.instantiate(DropHealth, '{"prefixes": [1]}'), ConfigError);
  assert.throws(() => testing.instantiate(DropHealth, '[]'), ConfigError);
});

test('across resources and scopes, through an encode', () => {
  const batch = testing.traces(['GET /health', 'a']);
  batch.resourceSpans.push(structuredClone(batch.resourceSpans[0]));
  const r = testing.run(testing.instantiate(DropHealth), 'traces', batch);
  assert.equal(r.kind, 'keep');
  assert.deepEqual(r.indices, [1, 3]);
});
