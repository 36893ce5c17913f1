// The errors a plugin throws. They map to the WIT `error` variant: `ConfigError` from the
// constructor keeps the gateway from loading the plugin; `InputError` (and any other error,
// as `internal`) from a call applies the processor's `on_error` policy to that batch.

export class PluginError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** The configuration is unusable (WIT `error::config`). */
export class ConfigError extends PluginError {}

/** This batch could not be processed (WIT `error::input`). */
export class InputError extends PluginError {}

/** Anything else (WIT `error::internal`); any other thrown value maps here too. */
export class InternalError extends PluginError {}
