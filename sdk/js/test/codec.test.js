import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { decode, encode, decodeBatch, encodeBatch, create, fromJson, toJson, UNKNOWN_FIELDS } from '../src/otlp.js';
import { InputError } from '../src/errors.js';
import { traces, metrics, logs, TRACES_JSON, METRICS_JSON, LOGS_JSON, hex } from './helpers.js';

const fixture = (name) => new Uint8Array(fs.readFileSync(new URL(`fixtures/${name}`, import.meta.url)));

test('decode(encode(x)) gives x back, for every signal and field kind', () => {
  for (const [signal, make] of [['traces', traces], ['metrics', metrics], ['logs', logs]]) {
    const batch = make();
    const bytes = encodeBatch(signal, batch);
    assert.deepEqual(decodeBatch(signal, bytes), batch, signal);
    assert.equal(hex(encodeBatch(signal, decodeBatch(signal, bytes))), hex(bytes), `${signal} re-encode`);
  }
});

test('batches encoded by the gateway (prost) re-encode byte for byte', () => {
  for (const [name, signal] of [['traces.pb', 'traces'], ['traces_attrs.pb', 'traces'], ['metrics.pb', 'metrics'], ['logs.pb', 'logs']]) {
    const bytes = fixture(name);
    assert.equal(hex(encodeBatch(signal, decodeBatch(signal, bytes))), hex(bytes), name);
  }
});

test('OTLP/JSON round trip', () => {
  for (const [type, json] of [['ExportTraceServiceRequest', TRACES_JSON], ['ExportMetricsServiceRequest', METRICS_JSON], ['ExportLogsServiceRequest', LOGS_JSON]]) {
    const obj = fromJson(type, json);
    assert.deepEqual(fromJson(type, toJson(type, obj)), obj);
  }
});

test('decoded messages have every field with its default', () => {
  const batch = decodeBatch('traces', encodeBatch('traces', { resourceSpans: [{ scopeSpans: [{ spans: [{ name: 'x' }] }] }] }));
  const rs = batch.resourceSpans[0];
  assert.deepEqual(rs.resource, { attributes: [], droppedAttributesCount: 0, entityRefs: [] });
  const span = rs.scopeSpans[0].spans[0];
  assert.equal(span.name, 'x');
  assert.equal(span.startTimeUnixNano, 0n);
  assert.ok(span.traceId instanceof Uint8Array && span.traceId.length === 0);
  assert.deepEqual(span.status, { message: '', code: 0 });
  assert.deepEqual(span.attributes, []);
  // absent messages stay absent when re-encoded
  assert.equal(hex(encodeBatch('traces', batch)), '0a07120512032a0178');
});

test('64-bit values are BigInt, full range', () => {
  const b = decodeBatch('traces', encodeBatch('traces', traces()));
  assert.equal(b.resourceSpans[0].scopeSpans[0].spans[0].endTimeUnixNano, 18446744073709551615n);
  const m = decodeBatch('metrics', encodeBatch('metrics', metrics()));
  assert.equal(m.resourceMetrics[0].resource.attributes[2].value.intValue, -9007199254740993n);
  assert.equal(m.resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[1].asInt, -3n);
});

test('a oneof is one key; proto3 optional is null when absent', () => {
  const m = metrics();
  const [g, s, h] = m.resourceMetrics[0].scopeMetrics[0].metrics;
  assert.ok('gauge' in g && !('sum' in g));
  assert.ok('sum' in s && !('gauge' in s));
  assert.equal(h.histogram.dataPoints[0].sum, 0);
  assert.equal(h.histogram.dataPoints[1].sum, null);
  const d = decodeBatch('metrics', encodeBatch('metrics', m)).resourceMetrics[0].scopeMetrics[0].metrics[2];
  assert.equal(d.histogram.dataPoints[0].sum, 0, 'an optional 0 is kept');
  assert.equal(d.histogram.dataPoints[1].sum, null);
  // a later oneof member replaces an earlier one
  const twice = Uint8Array.from([0x0a, 0x01, 0x61, 0x10, 0x01]); // stringValue 'a', then boolValue true
  assert.deepEqual(decode('AnyValue', twice), { boolValue: true });
});

test('field order is prost\'s: a oneof at its lowest field number', () => {
  const dp = { timeUnixNano: 1n, asInt: 2n, exemplars: [{}] };
  assert.equal(hex(encode('NumberDataPoint', dp)), '190100000000000000' + '310200000000000000' + '2a00');
});

test('encode omits proto3 defaults, packs repeated scalars, writes oneof defaults', () => {
  assert.equal(hex(encode('Span', create('Span'))), '');
  assert.equal(hex(encode('AnyValue', { intValue: 0n })), '1800');
  assert.equal(hex(encode('HistogramDataPoint', { bucketCounts: [1n, 2n] })), '3210' + '0100000000000000' + '0200000000000000');
  assert.equal(hex(encode('Buckets', { offset: -1, bucketCounts: [300] })), '0801' + '1202ac02');
  assert.equal(hex(encode('KeyValue', { key: 'k', value: { intValue: -1n } })), '0a016b' + '120b18ffffffffffffffffff01');
});

test('encode accepts numbers and decimal strings for 64-bit fields', () => {
  const a = encode('Span', { startTimeUnixNano: 5, endTimeUnixNano: '18446744073709551615' });
  const d = decode('Span', a);
  assert.equal(d.startTimeUnixNano, 5n);
  assert.equal(d.endTimeUnixNano, 2n ** 64n - 1n);
  assert.throws(() => encode('Span', { startTimeUnixNano: 1.5 }), TypeError);
  assert.throws(() => encode('Span', { name: 5 }), TypeError);
});

test('unpacked repeated scalars decode too', () => {
  // bucketCounts (field 6, fixed64) as two unpacked entries
  const bytes = Uint8Array.from([0x31, 1, 0, 0, 0, 0, 0, 0, 0, 0x31, 2, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(decode('HistogramDataPoint', bytes).bucketCounts, [1n, 2n]);
});

test('unknown fields are kept and written back', () => {
  // Span: name 'x', then unknown field 99 (varint 7) and unknown field 100 (bytes 'ab')
  const bytes = Uint8Array.from([0x2a, 0x01, 0x78, 0x98, 0x06, 0x07, 0xa2, 0x06, 0x02, 0x61, 0x62]);
  const span = decode('Span', bytes);
  assert.equal(span[UNKNOWN_FIELDS].length, 2);
  assert.equal(Object.keys(span).includes(String(UNKNOWN_FIELDS)), false);
  assert.equal(hex(encode('Span', span)), hex(bytes));
  // groups (wire types 3/4) are skipped and kept too
  const group = Uint8Array.from([0x2a, 0x01, 0x78, 0xfb, 0x06, 0x08, 0x01, 0xfc, 0x06]);
  assert.equal(hex(encode('Span', decode('Span', group))), hex(group));
});

test('non-UTF-8 strings are an InputError (as prost), never replaced', () => {
  assert.throws(() => decode('Span', Uint8Array.from([0x2a, 0x02, 0xc3, 0x28])), InputError);
  assert.throws(() => decode('Span', Uint8Array.from([0x2a, 0x01, 0xff])), /UTF-8/);
  assert.equal(decode('Span', Uint8Array.from([0x2a, 0x02, 0xc3, 0xa9])).name, 'é');
});

test('malformed input is an InputError', () => {
  const cases = {
    'truncated varint': [0x38, 0x80],
    'truncated key': [0x80],
    'length past end': [0x2a, 0x05, 0x61],
    'huge length': [0x2a, 0xff, 0xff, 0xff, 0xff, 0x0f],
    'huge 64-bit length': [0x2a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    'varint over 10 bytes': [0x38, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    'wrong wire type': [0x2d, 0, 0, 0, 0],
    'field number 0': [0x00, 0x01],
    'wire type 7': [0x2f],
    'stray end group': [0x2c],
    'truncated fixed64': [0x39, 1, 2, 3],
    'truncated nested message': [0x4a, 0x03, 0x0a, 0x05, 0x61],
    'unterminated group': [0xfb, 0x06, 0x08, 0x01],
  };
  for (const [what, bytes] of Object.entries(cases)) {
    assert.throws(() => decode('Span', Uint8Array.from(bytes)), InputError, what);
  }
  assert.throws(() => decodeBatch('traces', Uint8Array.from([0x0a, 0x02, 0x0a])), InputError);
});

test('nesting deeper than 64 messages is refused, 64 is not', () => {
  // AnyValue{arrayValue{values: [AnyValue{...}]}} nested n times
  const nested = (n) => {
    let inner = Uint8Array.from([0x08, 0x01]); // boolValue true
    for (let i = 0; i < n; i++) {
      const values = Uint8Array.from([0x0a, inner.length, ...inner]); // ArrayValue.values
      if (values.length > 127) throw new Error('test helper: keep it short');
      inner = Uint8Array.from([0x2a, values.length, ...values]); // AnyValue.arrayValue
    }
    return inner;
  };
  const deep = (levels) => {
    // Build with lengths as varints
    let inner = [0x10, 0x01];
    for (let i = 0; i < levels; i++) {
      const values = [0x0a, ...varint(inner.length), ...inner];
      inner = [0x2a, ...varint(values.length), ...values];
    }
    return Uint8Array.from(inner);
  };
  assert.ok(nested(3));
  // AnyValue at depth 1, each level adds 2 messages (ArrayValue, AnyValue)
  assert.doesNotThrow(() => decode('AnyValue', deep(31))); // 63 levels
  assert.throws(() => decode('AnyValue', deep(40)), /nesting deeper than 64/);
  // a very deep hostile input fails cleanly (no stack overflow)
  assert.throws(() => decode('AnyValue', deep(5000)), InputError);
});

function varint(n) {
  const out = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

test('random garbage never hangs and only throws InputError', () => {
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  const valid = encodeBatch('traces', traces());
  for (let i = 0; i < 3000; i++) {
    const bytes = i % 2 ? Uint8Array.from({ length: rand() % 64 }, () => rand() & 0xff) : valid.slice();
    if (i % 2 === 0) for (let j = 0; j < 3; j++) bytes[rand() % bytes.length] = rand() & 0xff;
    try {
      const d = decodeBatch('traces', bytes);
      encodeBatch('traces', d);
    } catch (e) {
      assert.ok(e instanceof InputError, `${e}`);
    }
  }
});

test('a truncated batch at every length is an InputError or decodes', () => {
  const valid = encodeBatch('metrics', metrics());
  for (let n = 0; n < valid.length; n++) {
    try {
      decodeBatch('metrics', valid.subarray(0, n));
    } catch (e) {
      assert.ok(e instanceof InputError);
    }
  }
});
