// What a plugin says about a batch.

const KINDS = new Set(['unchanged', 'keep', 'modified']);

export class Verdict {
  /** @private use Verdict.unchanged(), Verdict.keep(indices) or Verdict.modified() */
  constructor(kind, indices = null) {
    if (!KINDS.has(kind)) throw new TypeError(`unknown verdict: ${kind}`);
    this.kind = kind;
    this.indices = indices;
    Object.freeze(this);
  }

  /** Forward the batch as it came (the gateway forwards its own bytes; nothing is encoded). */
  static unchanged() {
    return UNCHANGED;
  }

  /**
   * Keep only the records at these indices: spans, metric data points or log records,
   * counted in document order across all resources and scopes. Nothing is encoded.
   */
  static keep(indices) {
    const list = Array.from(indices, (i) => {
      const n = typeof i === 'bigint' ? Number(i) : i;
      if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
        throw new TypeError(`Verdict.keep: ${String(i)} is not a record index`);
      }
      return n;
    });
    return new Verdict('keep', Object.freeze(list));
  }

  /** The plugin changed the batch in place: forward the changed batch (it is re-encoded). */
  static modified() {
    return MODIFIED;
  }

  get isUnchanged() {
    return this.kind === 'unchanged';
  }
}

const UNCHANGED = new Verdict('unchanged');
const MODIFIED = new Verdict('modified');
