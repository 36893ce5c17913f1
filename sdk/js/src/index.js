// @sluice/plugin: write Sluice plugins in JavaScript. See README.md.

export { Plugin, describe, parseConfig, checkConfigKeys } from './plugin.js';
export { Verdict } from './verdict.js';
export { PluginError, ConfigError, InputError, InternalError } from './errors.js';
export { keepSpans, keepLogs, keepDataPoints, mapSpans, mapLogs, dataPoints } from './records.js';
export {
  getAttribute,
  setAttribute,
  removeAttribute,
  findAttribute,
  fromAnyValue,
  toAnyValue,
  keyValue,
} from './attributes.js';
export { host, log, now, emit } from './host.js';
export * as otlp from './otlp.js';
