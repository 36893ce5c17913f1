// Builds a real component with sluice-plugin-build and runs it under the gateway's engine
// (`sluice plugin test`): the gateway binary is $SLUICE_BIN, else a checkout's
// target/debug/sluice or target/release/sluice; without one, or without componentize-js
// (`npm install`), the test fails and says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { fromJson, encode } from '../src/otlp.js';
import { TRACES_JSON, METRICS_JSON, LOGS_JSON } from './helpers.js';

const SDK = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SLUICE = process.env.SLUICE_BIN
  ?? ['debug', 'release'].map((p) => path.resolve(SDK, `../../target/${p}/sluice`)).find((p) => fs.existsSync(p))
  ?? 'sluice';
const HAVE_COMPONENTIZE = fs.existsSync(path.join(SDK, 'node_modules/@bytecodealliance/componentize-js'));

const PLUGIN = `
import { Plugin, Verdict, getAttribute } from '@sluice/plugin';
export default class RoundTrip extends Plugin {
  static info = { name: 'roundtrip', version: '0.1.0', signals: ['traces', 'metrics', 'logs'] };
  constructor(config) { super(config); this.mode = config.mode ?? 'unchanged'; }
  traces(b) { return this.answer(b); }
  metrics(b) { return this.answer(b); }
  logs(b) { return this.answer(b); }
  answer() { return this.mode === 'modified' ? Verdict.modified() : Verdict.unchanged(); }
}
`;

test('a built component re-encodes batches exactly as the gateway reads them', { timeout: 180_000 }, () => {
  assert.ok(HAVE_COMPONENTIZE, 'componentize-js is not installed: npm install in sdk/js');
  assert.ok(SLUICE === 'sluice' || fs.existsSync(SLUICE), `no sluice binary at ${SLUICE}: build it or set SLUICE_BIN`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-js-'));
  try {
    fs.mkdirSync(path.join(dir, 'src'));
    fs.mkdirSync(path.join(dir, 'node_modules/@sluice'), { recursive: true });
    fs.symlinkSync(SDK, path.join(dir, 'node_modules/@sluice/plugin'));
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'roundtrip', type: 'module', private: true }));
    fs.writeFileSync(path.join(dir, 'src/plugin.js'), PLUGIN);
    const built = execFileSync(process.execPath, [path.join(SDK, 'bin/sluice-plugin-build.js')], { cwd: dir, encoding: 'utf8' });
    const wasm = built.trim().split('\n').at(-1);
    assert.equal(wasm, path.join(dir, 'dist/roundtrip.wasm'));
    assert.ok(fs.statSync(wasm).size > 0);

    const run = (input, mode) => {
      fs.writeFileSync(path.join(dir, 'cfg.json'), JSON.stringify({ mode }));
      const r = spawnSync(SLUICE, ['plugin', 'test', wasm, '--input', input, '--config', path.join(dir, 'cfg.json')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    for (const [name, type, json] of [
      ['traces', 'ExportTraceServiceRequest', TRACES_JSON],
      ['metrics', 'ExportMetricsServiceRequest', METRICS_JSON],
      ['logs', 'ExportLogsServiceRequest', LOGS_JSON],
    ]) {
      const input = path.join(dir, `${name}.json`);
      fs.writeFileSync(input, JSON.stringify(json));
      const unchanged = run(input, 'unchanged');
      const modified = run(input, 'modified');
      assert.equal(modified, unchanged, `${name}: decode + encode inside the component changed the batch`);
      // and the gateway read the JSON as we do
      assert.deepEqual(encode(type, fromJson(type, JSON.parse(unchanged))), encode(type, fromJson(type, json)), name);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
