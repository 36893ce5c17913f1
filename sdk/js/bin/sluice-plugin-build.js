#!/usr/bin/env node
// Builds the Sluice plugin in the current project into a WebAssembly component:
//
//   1. finds the entry (package.json "sluice": {"entry": ...}, default src/plugin.js; a .ts
//      entry works too), which must `export default` a subclass of Plugin;
//   2. loads it under node once to check its `static info` (and to name the output);
//   3. generates the glue module that imports the real `sluice:plugin/host` and exports the
//      WIT `plugin` interface backed by the class;
//   4. bundles glue, plugin and SDK into one ES module (esbuild);
//   5. runs componentize-js with the WIT shipped in this package. componentize-js
//      pre-initialises the component with Wizer: the engine start-up, parsing and the module's
//      top level (the SDK's schema tables, the plugin class) run at build time, not at load;
//   6. writes dist/<package name, - as _>.wasm and prints its absolute path as the last line of stdout.
//
// Usage: sluice-plugin-build [--entry FILE] [--out-dir DIR]

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SDK_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WIT_DIR = path.join(SDK_DIR, 'wit');
const COMPONENTIZE = '@bytecodealliance/componentize-js';
const COMPONENTIZE_VERSION = '0.23.0';
const PREVIEW2_SHIM_VERSION = '0.25.0';

function die(msg) {
  process.stderr.write(`sluice-plugin-build: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const args = { entry: null, outDir: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--entry') args.entry = argv[++i];
    else if (a === '--out-dir') args.outDir = argv[++i];
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: sluice-plugin-build [--entry FILE] [--out-dir DIR]\n');
      process.exit(0);
    } else die(`unknown argument ${a}`);
  }
  return args;
}

function findProject(start) {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) die('no package.json here or above: run this inside a plugin project');
  }
}

// A package's directory, looked up in node_modules from each of `starts` upwards.
function findPackage(name, starts) {
  for (const start of starts) {
    for (let dir = start; ; dir = path.dirname(dir)) {
      const candidate = path.join(dir, 'node_modules', name);
      if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
      if (path.dirname(dir) === dir) break;
    }
  }
  return null;
}

async function loadEsbuild(project) {
  const dir = findPackage('esbuild', [project, SDK_DIR]);
  if (!dir) die('esbuild is missing: run `npm install` in the SDK (@sluice/plugin depends on it)');
  const mod = await import(pathToFileURL(path.join(dir, 'lib', 'main.js')).href);
  return mod.default ?? mod;
}

async function loadComponentize(project) {
  const dir = findPackage(COMPONENTIZE, [project, fs.realpathSync(SDK_DIR)]);
  if (!dir) {
    die(
      `${COMPONENTIZE} is missing. Install it in the plugin project:\n` +
        `  npm install --save-dev ${COMPONENTIZE}@${COMPONENTIZE_VERSION}`,
    );
  }
  // componentize-js 0.23.0 imports @bytecodealliance/preview2-shim without depending on it.
  if (!findPackage('@bytecodealliance/preview2-shim', [dir])) {
    die(
      `@bytecodealliance/preview2-shim (which ${COMPONENTIZE} needs) is missing. Install it in the plugin project:\n` +
        `  npm install --save-dev @bytecodealliance/preview2-shim@${PREVIEW2_SHIM_VERSION}`,
    );
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  if (pkg.version !== COMPONENTIZE_VERSION) {
    process.stderr.write(
      `sluice-plugin-build: warning: ${COMPONENTIZE} ${pkg.version} found; this SDK is tested with ${COMPONENTIZE_VERSION}\n`,
    );
  }
  return import(pathToFileURL(path.join(dir, 'src', 'componentize.js')).href);
}

const js = (p) => JSON.stringify(p.split(path.sep).join('/'));

async function main() {
  const started = Date.now();
  const args = parseArgs(process.argv.slice(2));
  const project = findProject(process.cwd());
  const pkg = JSON.parse(fs.readFileSync(path.join(project, 'package.json'), 'utf8'));

  let entry = args.entry ?? pkg.sluice?.entry ?? 'src/plugin.js';
  entry = path.resolve(project, entry);
  if (!args.entry && !pkg.sluice?.entry && !fs.existsSync(entry) && fs.existsSync(entry.replace(/\.js$/, '.ts'))) {
    entry = entry.replace(/\.js$/, '.ts');
  }
  if (!fs.existsSync(entry)) {
    die(`entry ${path.relative(project, entry)} not found (set "sluice": {"entry": "..."} in package.json)`);
  }

  const outDir = path.resolve(project, args.outDir ?? 'dist');
  const work = path.join(outDir, '.build');
  fs.mkdirSync(work, { recursive: true });

  const esbuild = await loadEsbuild(project);
  const componentizeJs = await loadComponentize(project);

  // 2. Load the plugin under node: checks the default export and its info.
  const probeSrc = path.join(work, 'probe.js');
  const probeOut = path.join(work, 'probe.mjs');
  fs.writeFileSync(
    probeSrc,
    `import Plugin from ${js(entry)};\n` +
      `import { describe } from ${js(path.join(SDK_DIR, 'src', 'plugin.js'))};\n` +
      `export default describe(Plugin);\n`,
  );
  await esbuild.build({
    entryPoints: [probeSrc],
    bundle: true,
    format: 'esm',
    platform: 'node',
    outfile: probeOut,
    logLevel: 'error',
  });
  let info;
  try {
    info = (await import(pathToFileURL(probeOut).href + `?t=${Date.now()}`)).default;
  } catch (e) {
    die(`${path.relative(project, entry)} must \`export default\` a class extending Plugin: ${e.message}`);
  }
  // The file is named after the package, as the Python build names it after the project:
  // `drop-health` (or `@org/drop-health`) builds dist/drop_health.wasm.
  const name = (pkg.name ?? info.name).replace(/^@[^/]+\//, '').replace(/[^A-Za-z0-9._]/g, '_');

  // 3. The glue module.
  const glue = path.join(work, 'glue.js');
  fs.writeFileSync(
    glue,
    `import { log, now, emit } from 'sluice:plugin/host@0.1.0';\n` +
      `import { exportPlugin } from ${js(path.join(SDK_DIR, 'src', 'component.js'))};\n` +
      `import Plugin from ${js(entry)};\n` +
      `export const plugin = exportPlugin(Plugin, { log, now, emit });\n`,
  );

  // 4. One ES module.
  const bundle = path.join(work, `${name}.js`);
  await esbuild.build({
    entryPoints: [glue],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    mainFields: ['module', 'main'],
    target: 'es2022',
    external: ['sluice:*'],
    outfile: bundle,
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'error',
  });

  // 5. The component.
  const { componentize } = componentizeJs;
  const { component } = await componentize({
    sourcePath: bundle,
    witPath: WIT_DIR,
    worldName: 'processor',
    disableFeatures: ['http', 'fetch-event'],
  });

  const wasm = path.join(outDir, `${name}.wasm`);
  fs.writeFileSync(wasm, component);
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  const mib = (component.length / 1048576).toFixed(1);
  process.stdout.write(`built ${info.name} ${info.version} (${info.signals.join(', ')}): ${mib} MiB in ${secs} s\n`);
  process.stdout.write(`${wasm}\n`);
}

main().catch((e) => die(e.stack || String(e)));
