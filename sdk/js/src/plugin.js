// The Plugin base class: subclass it, set `static info`, override what you need. Every method
// has a default that passes data through unchanged.

import { Verdict } from './verdict.js';
import { ConfigError } from './errors.js';

const SIGNALS = ['traces', 'metrics', 'logs'];

export class Plugin {
  /** Name, version, the signals the gateway should call the plugin for, statefulness. */
  static info = { name: '', version: '0.0.0', signals: [], stateful: false };

  /**
   * Builds the plugin from its parsed JSON config (`{}` when the config is empty). Throw a
   * ConfigError to refuse the config: the gateway then does not load the plugin.
   */
  constructor(config = {}) {
    this.config = config;
  }

  /** This plugin's info (the class's `static info`, checked and with defaults). */
  get info() {
    return describe(this.constructor);
  }

  /** @returns {Verdict | undefined} undefined means unchanged */
  traces(batch) {
    return Verdict.unchanged();
  }

  metrics(batch) {
    return Verdict.unchanged();
  }

  logs(batch) {
    return Verdict.unchanged();
  }

  /** Called about once a second with the current unix time in nanoseconds (a bigint). */
  tick(nowNs) {}

  /** The state to hand to a fresh instance after a reload or a trap (stateful plugins). */
  snapshot() {
    return new Uint8Array(0);
  }

  /** Takes over the state of a previous instance. */
  restore(state) {}
}

/** Checks a Plugin subclass's `static info` and returns it with defaults filled in. */
export function describe(PluginClass) {
  if (typeof PluginClass !== 'function' || !(PluginClass.prototype instanceof Plugin)) {
    throw new TypeError('the plugin must be a class extending Plugin from @sluice/plugin');
  }
  const info = PluginClass.info ?? {};
  const { name, version = '0.0.0', signals = [], stateful = false } = info;
  if (typeof name !== 'string' || name === '') {
    throw new TypeError(`${PluginClass.name}: static info.name must be a non-empty string`);
  }
  if (typeof version !== 'string') throw new TypeError(`${PluginClass.name}: static info.version must be a string`);
  if (!Array.isArray(signals) || signals.some((s) => !SIGNALS.includes(s))) {
    throw new TypeError(`${PluginClass.name}: static info.signals must list some of ${SIGNALS.join(', ')}`);
  }
  return { name, version, signals: [...signals], stateful: Boolean(stateful) };
}

/** Parses the JSON text of a plugin's config (empty text is `{}`); ConfigError if invalid. */
export function parseConfig(text) {
  if (text === undefined || text === null || String(text).trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`the config is not valid JSON: ${e.message}`);
  }
}

/**
 * Checks that `config` is a JSON object whose keys are all in `allowed`; throws a ConfigError
 * naming the first unknown key. Returns `config`.
 */
export function checkConfigKeys(config, allowed) {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new ConfigError('the config must be a JSON object');
  }
  for (const key of Object.keys(config)) {
    if (!allowed.includes(key)) {
      const expected = allowed.length === 1 ? `\`${allowed[0]}\`` : `one of ${allowed.map((k) => `\`${k}\``).join(', ')}`;
      throw new ConfigError(`unknown field \`${key}\`, expected ${expected}`);
    }
  }
  return config;
}
