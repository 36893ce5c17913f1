import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  Plugin, Verdict, ConfigError, InputError, keepSpans, keepLogs, keepDataPoints, mapSpans, mapLogs,
  getAttribute, setAttribute, removeAttribute, toAnyValue, checkConfigKeys, parseConfig, describe, log, now, emit,
} from '../src/index.js';
import * as testing from '../src/testing.js';
import { exportPlugin } from '../src/component.js';
import { encodeBatch } from '../src/otlp.js';
import { metrics } from './helpers.js';

test('the shipped WIT is byte-identical to the repository\'s', (t) => {
  const shipped = new URL('../wit/plugin.wit', import.meta.url);
  const source = new URL('../../wit/plugin.wit', import.meta.url);
  if (!fs.existsSync(source)) return t.skip('no ../wit/plugin.wit outside the repository');
  assert.ok(fs.readFileSync(shipped).equals(fs.readFileSync(source)), 'copy sdk/wit/plugin.wit to sdk/js/wit/plugin.wit');
});

test('keepSpans: indices in document order across resources and scopes; unchanged when all kept', () => {
  const batch = testing.traces(['a', 'health', 'b']);
  batch.resourceSpans.push(structuredClone(batch.resourceSpans[0]));
  const v = keepSpans(batch, (_r, _s, span) => span.name !== 'health');
  assert.equal(v.kind, 'keep');
  assert.deepEqual(v.indices, [0, 2, 3, 5]);
  assert.equal(keepSpans(batch, () => true), Verdict.unchanged());
  assert.equal(keepSpans(testing.traces([]), () => false), Verdict.unchanged());
});

test('keepLogs', () => {
  const v = keepLogs(testing.logs(['x', 'drop', 'y']), (_r, _s, rec) => rec.body.stringValue !== 'drop');
  assert.deepEqual(v.indices, [0, 2]);
});

test('keepDataPoints counts every data point of every metric, keeps whole metrics', () => {
  // metrics(): gauge 2 points, sum 1, histogram 2, exp histogram 1, summary 1, empty 0 | second resource: gauge 2
  const v = keepDataPoints(metrics(), (_r, m) => m.name !== 'h' && m.name !== 'second');
  assert.deepEqual(v.indices, [0, 1, 2, 5, 6]);
  assert.equal(keepDataPoints(metrics(), () => true), Verdict.unchanged());
});

test('mapSpans / mapLogs report modification', () => {
  const b = testing.traces(['a']);
  assert.equal(mapSpans(b, () => false), Verdict.unchanged());
  assert.equal(mapSpans(b, (s) => ((s.name = 'b'), true)), Verdict.modified());
  assert.equal(mapLogs(testing.logs(['x']), () => true), Verdict.modified());
});

test('getAttribute / setAttribute', () => {
  const attrs = [];
  setAttribute(attrs, 's', 'v');
  setAttribute(attrs, 'i', 3);
  setAttribute(attrs, 'd', 1.5);
  setAttribute(attrs, 'b', true);
  setAttribute(attrs, 'n', 2n ** 63n - 1n);
  setAttribute(attrs, 'a', ['x', 1]);
  setAttribute(attrs, 'm', { k: 'v' });
  setAttribute(attrs, 'bytes', new Uint8Array([1]));
  assert.deepEqual(attrs[1].value, { intValue: 3n });
  assert.deepEqual(attrs[2].value, { doubleValue: 1.5 });
  assert.equal(getAttribute(attrs, 's'), 'v');
  assert.equal(getAttribute(attrs, 'i'), 3n);
  assert.equal(getAttribute(attrs, 'd'), 1.5);
  assert.equal(getAttribute(attrs, 'b'), true);
  assert.deepEqual(getAttribute(attrs, 'a'), ['x', 1n]);
  assert.deepEqual(getAttribute(attrs, 'm'), { k: 'v' });
  assert.deepEqual(getAttribute(attrs, 'bytes'), new Uint8Array([1]));
  assert.equal(getAttribute(attrs, 'missing'), undefined);
  setAttribute(attrs, 's', 'w'); // replaces in place
  assert.equal(attrs.length, 8);
  assert.equal(getAttribute(attrs, 's'), 'w');
  assert.equal(removeAttribute(attrs, 's'), 1);
  assert.equal(getAttribute(attrs, 's'), undefined);
  assert.deepEqual(toAnyValue(null), {});
  // attributes survive an encode
  const b = testing.traces(['x']);
  b.resourceSpans[0].scopeSpans[0].spans[0].attributes = attrs;
  const out = testing.run(new Plugin(), 'traces', b).output;
  assert.deepEqual(getAttribute(out.resourceSpans[0].scopeSpans[0].spans[0].attributes, 'a'), ['x', 1n]);
});

class Strict extends Plugin {
  static info = { name: 'strict', version: '1.2.3', signals: ['traces', 'logs'] };
  constructor(config) {
    super(config);
    checkConfigKeys(config, ['limit']);
    if (config.limit !== undefined && typeof config.limit !== 'number') throw new ConfigError('limit: expected a number');
  }
  traces(batch) {
    if (batch.resourceSpans.length === 0) throw new InputError('empty');
    if (batch.resourceSpans.length > 5) throw new Error('boom');
    return keepSpans(batch, (_r, _s, span) => span.name !== 'drop');
  }
  logs(batch) {
    batch.resourceLogs[0].scopeLogs[0].logRecords[0].severityText = 'INFO';
    log('info', 'rewrote');
    return Verdict.modified();
  }
}

test('config: parse, defaults, unknown keys', () => {
  assert.deepEqual(parseConfig(''), {});
  assert.deepEqual(parseConfig('  '), {});
  assert.throws(() => parseConfig('{'), ConfigError);
  assert.throws(() => testing.instantiate(Strict, '{"limt": 1}'), /unknown field `limt`, expected `limit`/);
  assert.throws(() => checkConfigKeys({ x: 1 }, ['a', 'b']), /expected one of `a`, `b`/);
  assert.throws(() => checkConfigKeys([], ['a']), ConfigError);
  assert.throws(() => testing.instantiate(Strict, '{"limit": "x"}'), ConfigError);
  assert.ok(testing.instantiate(Strict, ''));
});

test('describe checks and completes static info', () => {
  assert.deepEqual(describe(Strict), { name: 'strict', version: '1.2.3', signals: ['traces', 'logs'], stateful: false });
  class NoName extends Plugin {}
  assert.throws(() => describe(NoName), /info.name/);
  assert.throws(() => describe(class {}), /extending Plugin/);
  class Bad extends Plugin {
    static info = { name: 'b', signals: ['spans'] };
  }
  assert.throws(() => describe(Bad), /signals/);
  assert.equal(new Strict({}).info.name, 'strict');
});

test('the component glue maps verdicts and errors to the WIT shapes', () => {
  const host = new testing.MockHost({ now: 7n });
  const wit = exportPlugin(Strict, host);
  assert.deepEqual(wit.describe(), { name: 'strict', version: '1.2.3', signals: ['traces', 'logs'], stateful: false });
  assert.throws(() => wit.process('traces', new Uint8Array(0)), { tag: 'internal', val: 'the plugin was not initialised' });
  assert.throws(() => wit.init('{"nope": 1}'), (e) => e.tag === 'config' && /nope/.test(e.val));
  wit.init('');
  const bytes = encodeBatch('traces', testing.traces(['a', 'drop', 'b']));
  const v = wit.process('traces', bytes);
  assert.equal(v.tag, 'keep');
  assert.deepEqual(Array.from(v.val), [0, 2]);
  assert.deepEqual(wit.process('traces', encodeBatch('traces', testing.traces(['a']))), { tag: 'unchanged' });
  assert.throws(() => wit.process('traces', new Uint8Array(0)), { tag: 'input', val: 'empty' });
  assert.throws(() => wit.process('traces', Uint8Array.from([0x0a, 0x05])), (e) => e.tag === 'input' && /invalid OTLP batch/.test(e.val));
  const six = { resourceSpans: Array.from({ length: 6 }, () => ({})) };
  assert.throws(() => wit.process('traces', encodeBatch('traces', six)), { tag: 'internal', val: 'boom' });
  const r = wit.process('logs', encodeBatch('logs', testing.logs(['x'])));
  assert.equal(r.tag, 'replace');
  assert.deepEqual(host.takeLogs(), [{ level: 'info', msg: 'rewrote' }]);
  wit.tick(5n);
  assert.deepEqual(wit.snapshot(), new Uint8Array(0));
  wit.restore(new Uint8Array([1]));
});

test('the mock host records logs and emitted batches; its clock is settable', () => {
  const host = testing.mockHost({ now: 10n });
  assert.equal(now(), 10n);
  host.setNow(1_700_000_000_000_000_000n);
  assert.equal(now(), 1_700_000_000_000_000_000n);
  log('warn', 'careful');
  assert.throws(() => log('loud', 'x'), TypeError);
  emit('logs', testing.logs(['hello']));
  emit('traces', encodeBatch('traces', testing.traces(['raw'])));
  assert.throws(() => emit('spans', {}), TypeError);
  assert.deepEqual(host.takeLogs(), [{ level: 'warn', msg: 'careful' }]);
  const emitted = host.takeEmitted();
  assert.equal(emitted.length, 2);
  assert.equal(emitted[0].signal, 'logs');
  assert.equal(emitted[0].batch.resourceLogs[0].scopeLogs[0].logRecords[0].body.stringValue, 'hello');
  assert.equal(emitted[1].batch.resourceSpans[0].scopeSpans[0].spans[0].name, 'raw');
  assert.deepEqual(host.takeEmitted(), []);
});

test('testing builders mirror the Rust SDK\'s', () => {
  const b = testing.traces(['a', 'b']);
  const spans = b.resourceSpans[0].scopeSpans[0].spans;
  assert.deepEqual(spans[1].traceId, new Uint8Array(16).fill(2));
  assert.deepEqual(spans[1].spanId, new Uint8Array(8).fill(2));
  assert.equal(encodeBatch('traces', b).length, 2 + 2 + 2 * 33);
  const l = testing.logs(['x']);
  assert.equal(l.resourceLogs[0].scopeLogs[0].logRecords[0].body.stringValue, 'x');
});

test('Verdict.keep validates indices', () => {
  assert.deepEqual(Verdict.keep([1, 2n]).indices, [1, 2]);
  assert.throws(() => Verdict.keep([-1]), TypeError);
  assert.throws(() => Verdict.keep([1.5]), TypeError);
});
