// The JavaScript example of the plugin guide (docs/plugins.md) loads and behaves as written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Verdict, ConfigError } from '@sluice/plugin';
import { traces } from '@sluice/plugin/testing';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const GUIDE = path.resolve(HERE, '../../../docs/plugins.md');

test("the guide's JavaScript plugin drops health checks and refuses unknown keys", async () => {
  const blocks = [...fs.readFileSync(GUIDE, 'utf8').matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length > 0, 'docs/plugins.md has no JavaScript example');
  const file = path.join(HERE, `.guide-example-${process.pid}.mjs`);
  try {
    fs.writeFileSync(file, blocks[0]);
    const { default: Example } = await import(pathToFileURL(file).href);
    const plugin = new Example({});
    assert.deepEqual(plugin.traces(traces(['GET /health', 'GET /orders'])), Verdict.keep([1]));
    assert.throws(() => new Example({ prefix: 'x' }), ConfigError);
  } finally {
    fs.rmSync(file, { force: true });
  }
});
