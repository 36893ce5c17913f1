// Drops health-check spans: every span whose name starts with one of the configured prefixes.
//
// Config: {"prefixes": ["GET /health", ...]}; default ["GET /health", "GET /ready", "GET /live"].

import { Plugin, ConfigError, checkConfigKeys, keepSpans } from '@sluice/plugin';

export const DEFAULT_PREFIXES = ['GET /health', 'GET /ready', 'GET /live'];

export default class DropHealth extends Plugin {
  static info = { name: 'drop-health', version: '0.1.0', signals: ['traces'], stateful: false };

  constructor(config) {
    super(config);
    checkConfigKeys(config, ['prefixes']);
    const prefixes = config.prefixes ?? DEFAULT_PREFIXES;
    if (!Array.isArray(prefixes) || !prefixes.every((p) => typeof p === 'string')) {
      throw new ConfigError('prefixes: expected a list of strings');
    }
    this.prefixes = prefixes;
  }

  traces(batch) {
    return keepSpans(batch, (_resource, _scope, span) => !this.prefixes.some((p) => span.name.startsWith(p)));
  }
}
