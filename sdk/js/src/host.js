// What the gateway offers a plugin: logging, the clock, and emitting derived telemetry.
//
// Inside a built component these call the component's `sluice:plugin/host` imports. Under node
// (unit tests) they go to a MockHost (see `@sluice/plugin/testing`), so plugins are tested
// without a gateway.

import { decodeBatch, encodeBatch } from './otlp.js';

const LEVELS = ['debug', 'info', 'warn', 'error'];
const SIGNALS = ['traces', 'metrics', 'logs'];

/** A host for tests: records log lines and emitted batches; its clock is set by hand. */
export class MockHost {
  constructor({ now = 0n } = {}) {
    /** @type {{level: string, msg: string}[]} */
    this.logs = [];
    /** @type {{signal: string, bytes: Uint8Array, batch: object}[]} */
    this.emitted = [];
    this.time = BigInt(now);
  }

  log(level, msg) {
    this.logs.push({ level, msg });
  }

  now() {
    return this.time;
  }

  /** Sets the clock (unix nanoseconds; a bigint or a safe-integer number). */
  setNow(ns) {
    this.time = BigInt(ns);
  }

  emit(signal, bytes) {
    this.emitted.push({ signal, bytes, batch: decodeBatch(signal, bytes) });
  }

  /** The log lines written so far, removing them. */
  takeLogs() {
    return this.logs.splice(0);
  }

  /** The telemetry emitted so far (decoded again, with all defaults), removing it. */
  takeEmitted() {
    return this.emitted.splice(0);
  }

  /** Makes this the host that `log`, `now` and `emit` talk to; returns this. */
  install() {
    setHost(this);
    return this;
  }
}

let backend = null;

/**
 * Sets the host implementation ({log(level, msg), now() -> bigint, emit(signal, bytes)});
 * returns the previous one. The generated component glue installs the real host imports.
 */
export function setHost(impl) {
  const previous = backend;
  backend = impl;
  return previous;
}

/** The current host: the installed one, or (under node) a MockHost made on first use. */
export function currentHost() {
  if (backend === null) backend = new MockHost();
  return backend;
}

/** Writes to the gateway's log, tagged with the plugin's name. Level: debug|info|warn|error. */
export function log(level, msg) {
  if (!LEVELS.includes(level)) throw new TypeError(`log: unknown level ${level} (expected ${LEVELS.join(', ')})`);
  currentHost().log(level, String(msg));
}

/** The current unix time in nanoseconds, as a bigint (the mock host's clock in tests). */
export function now() {
  return BigInt(currentHost().now());
}

/**
 * Sends derived telemetry into the gateway's pipelines for `signal`: `batch` is the signal's
 * Export*ServiceRequest, as an object (encoded here) or already encoded as a Uint8Array.
 */
export function emit(signal, batch) {
  if (!SIGNALS.includes(signal)) throw new TypeError(`emit: unknown signal ${signal} (expected ${SIGNALS.join(', ')})`);
  const bytes = batch instanceof Uint8Array ? batch : encodeBatch(signal, batch);
  currentHost().emit(signal, bytes);
}

/** The host functions as one object: host.log, host.now, host.emit. */
export const host = Object.freeze({ log, now, emit });
