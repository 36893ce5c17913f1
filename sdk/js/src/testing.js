// Testing helpers: the mock host, small batch builders, and a runner that passes a batch
// through a plugin the way the gateway does (encode, decode, call, re-encode if modified).

import { MockHost, setHost } from './host.js';
import { create, decodeBatch, encodeBatch } from './otlp.js';
import { toWitVerdict } from './component.js';
import { parseConfig } from './plugin.js';

export { MockHost };

/** Installs a fresh MockHost (clock at `now`, default 0n) and returns it. */
export function mockHost({ now = 0n } = {}) {
  const host = new MockHost({ now });
  setHost(host);
  return host;
}

/** A traces batch: one resource, one scope, one span per name; ids derived from the position. */
export function traces(names) {
  const spans = names.map((name, i) =>
    create('Span', {
      traceId: new Uint8Array(16).fill(1 + i),
      spanId: new Uint8Array(8).fill(1 + i),
      name,
    }),
  );
  return create('ExportTraceServiceRequest', {
    resourceSpans: [create('ResourceSpans', { scopeSpans: [create('ScopeSpans', { spans })] })],
  });
}

/** A logs batch: one resource, one scope, one record with a string body per body. */
export function logs(bodies) {
  const logRecords = bodies.map((body) => create('LogRecord', { body: { stringValue: body } }));
  return create('ExportLogsServiceRequest', {
    resourceLogs: [create('ResourceLogs', { scopeLogs: [create('ScopeLogs', { logRecords })] })],
  });
}

/**
 * Builds a plugin from the JSON text of its config the way the gateway does (empty text -> {}).
 */
export function instantiate(PluginClass, configText = '') {
  return new PluginClass(parseConfig(configText));
}

/**
 * Runs `plugin` on `batch` as the component would: the batch is encoded and decoded first, and
 * a modified batch is encoded again. Returns {verdict, kind, indices, output}: `output` is the
 * batch that would be forwarded, decoded (null for a keep verdict).
 */
export function run(plugin, signal, batch) {
  const decoded = decodeBatch(signal, encodeBatch(signal, batch));
  const verdict = plugin[signal](decoded);
  const wit = toWitVerdict(verdict, signal, decoded);
  switch (wit.tag) {
    case 'unchanged':
      return { verdict, kind: 'unchanged', indices: null, output: decoded };
    case 'keep':
      return { verdict, kind: 'keep', indices: Array.from(wit.val), output: null };
    default:
      return { verdict, kind: 'modified', indices: null, output: decodeBatch(signal, wit.val) };
  }
}
