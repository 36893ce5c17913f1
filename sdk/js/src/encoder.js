// The protobuf encoder, generated from the schema table like the decoder (see decoder.js): one
// function per message writing its fields in prost's order (field number, a oneof at its
// lowest number), with proto3 defaults omitted and repeated scalars packed. Lengths are
// written by reserving one byte and moving the body when it turns out longer than 127 bytes.

const RUNTIME = String.raw`
let out = new Uint8Array(4096), oview = new DataView(out.buffer), opos = 0;

function ensure(n) {
  if (opos + n <= out.length) return;
  let size = out.length * 2;
  while (size < opos + n) size *= 2;
  const bigger = new Uint8Array(size);
  bigger.set(out.subarray(0, opos));
  out = bigger;
  oview = new DataView(out.buffer);
}

function wv32(v) {
  ensure(5);
  while (v > 0x7f) { out[opos++] = (v & 0x7f) | 0x80; v >>>= 7; }
  out[opos++] = v;
}

function wv64(lo, hi) {
  if (hi === 0) return wv32(lo);
  ensure(10);
  for (let i = 0; i < 4; i++) { out[opos++] = (lo & 0x7f) | 0x80; lo >>>= 7; }
  const b = lo | ((hi & 0x07) << 4);
  hi >>>= 3;
  if (hi === 0) { out[opos++] = b; return; }
  out[opos++] = b | 0x80;
  while (hi > 0x7f) { out[opos++] = (hi & 0x7f) | 0x80; hi >>>= 7; }
  out[opos++] = hi;
}

function wk(k) {
  if (k < 0x80) { ensure(1); out[opos++] = k; } else wv32(k);
}

function begin() { ensure(1); return opos++; }

function finish(slot) {
  const len = opos - slot - 1;
  if (len < 0x80) { out[slot] = len; return len; }
  let n = 1;
  for (let v = len; v > 0x7f; v >>>= 7) n++;
  ensure(n - 1);
  out.copyWithin(slot + n, slot + 1, opos);
  const save = opos + n - 1;
  opos = slot;
  wv32(len);
  opos = save;
  return len;
}

function big(v, what) {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' || typeof v === 'string') {
    try { return BigInt(v); } catch (e) { /* below */ }
  }
  throw new TypeError(what + ': expected an integer (bigint, safe-integer number or decimal string), got ' + String(v));
}

function wStr(s, what) {
  if (typeof s !== 'string') throw new TypeError(what + ': expected a string, got ' + typeof s);
  const n = s.length;
  ensure(n * 3 + 5);
  const slot = opos++;
  if (n !== 0) opos += utf8enc.encodeInto(s, out.subarray(opos)).written;
  finish(slot);
}

function wBytes(v, what) {
  if (!(v instanceof Uint8Array) && !Array.isArray(v)) throw new TypeError(what + ': expected a Uint8Array, got ' + typeof v);
  wv32(v.length);
  ensure(v.length);
  out.set(v, opos);
  opos += v.length;
}

function wBool(v) { ensure(1); out[opos++] = v ? 1 : 0; }
function wInt32(v) { const n = Number(v) | 0; if (n >= 0) wv32(n); else wv64(n >>> 0, 0xffffffff); }
function wUint32(v) { wv32(Number(v) >>> 0); }
function wSint32(v) { const n = Number(v) | 0; wv32(((n << 1) ^ (n >> 31)) >>> 0); }
function wInt64(v, what) {
  if (typeof v === 'number' && v >= 0 && v <= 0xffffffff && Number.isInteger(v)) return wv32(v);
  const b = BigInt.asUintN(64, big(v, what));
  wv64(Number(b & 0xffffffffn), Number(b >> 32n));
}
function wFixed32(v) { ensure(4); oview.setUint32(opos, Number(v) >>> 0, true); opos += 4; }
function wFixed64(v, what) {
  ensure(8);
  if (typeof v === 'number' && v >= 0 && v <= 0xffffffff && Number.isInteger(v)) {
    oview.setUint32(opos, v, true);
    oview.setUint32(opos + 4, 0, true);
  } else oview.setBigUint64(opos, BigInt.asUintN(64, big(v, what)), true);
  opos += 8;
}
function wDouble(v) { ensure(8); oview.setFloat64(opos, Number(v), true); opos += 8; }

function unknown(o) {
  const chunks = o[UNKNOWN_FIELDS];
  if (chunks === undefined) return;
  for (let i = 0; i < chunks.length; i++) {
    ensure(chunks[i].length);
    out.set(chunks[i], opos);
    opos += chunks[i].length;
  }
}

const EMPTY = {};
`;

const WRITERS = {
  string: 'wStr',
  bytes: 'wBytes',
  bool: 'wBool',
  int32: 'wInt32',
  enum: 'wInt32',
  uint32: 'wUint32',
  sint32: 'wSint32',
  int64: 'wInt64',
  uint64: 'wInt64',
  fixed32: 'wFixed32',
  fixed64: 'wFixed64',
  sfixed64: 'wFixed64',
  double: 'wDouble',
};
const WIRE = { double: 1, fixed64: 1, sfixed64: 1, fixed32: 5, string: 2, bytes: 2 };

/**
 * Builds the encoder for `schema`. Returns encode(type, obj) -> Uint8Array.
 */
export function buildEncoder(schema, { UNKNOWN_FIELDS, MAX_DEPTH, ABSENT }) {
  const names = Object.keys(schema);
  const index = Object.fromEntries(names.map((n, i) => [n, i]));
  const q = (s) => JSON.stringify(s);
  const parts = [RUNTIME];

  names.forEach((name, mi) => {
    // prost's order: by field number, a oneof at its lowest number (the sort is stable).
    const fields = schema[name].slice();
    const lowest = {};
    for (const [tag, , , label] of fields) {
      if (label.startsWith('oneof ')) lowest[label] = Math.min(lowest[label] ?? tag, tag);
    }
    const order = (f) => (f[3].startsWith('oneof ') ? lowest[f[3]] : f[0]);
    fields.sort((a, b) => order(a) - order(b));

    const lines = [];
    for (const [tag, fname, type, label] of fields) {
      const what = q(`${name}.${fname}`);
      const get = `v = o[${q(fname)}];`;
      const writer = WRITERS[type];
      if (!writer) {
        const fn = `e${index[type]}`;
        const key = (tag << 3) | 2;
        if (label === 'repeated') {
          lines.push(
            `${get} if (v != null) for (let i = 0; i < v.length; i++) { wk(${key}); const s = begin(); ${fn}(v[i] || EMPTY, depth + 1); finish(s); }`,
          );
        } else {
          lines.push(
            `${get} if (v != null) { const at = opos; wk(${key}); const s = begin(); ${fn}(v, depth + 1); if (finish(s) === 0 && v[ABSENT] === true) opos = at; }`,
          );
        }
        continue;
      }
      const wire = WIRE[type] ?? 0;
      if (label === 'repeated') {
        if (wire === 2) {
          lines.push(`${get} if (v != null) for (let i = 0; i < v.length; i++) { wk(${(tag << 3) | 2}); ${writer}(v[i], ${what}); }`);
        } else {
          lines.push(
            `${get} if (v != null && v.length !== 0) { wk(${(tag << 3) | 2}); const s = begin(); for (let i = 0; i < v.length; i++) ${writer}(v[i], ${what}); finish(s); }`,
          );
        }
        continue;
      }
      const key = (tag << 3) | wire;
      let present;
      if (label === 'optional' || label.startsWith('oneof ')) present = 'v != null';
      else if (type === 'string' || type === 'bytes') present = 'v != null && v.length !== 0';
      else if (type === 'bool') present = 'v';
      else present = 'v != null && v != 0'; // 0, -0 and 0n alike; NaN is written, as prost does
      lines.push(`${get} if (${present}) { wk(${key}); ${writer}(v, ${what}); }`);
    }
    parts.push(`
function e${mi}(o, depth) {
  if (depth > MAX_DEPTH) throw new TypeError('encode: messages nested deeper than ' + MAX_DEPTH + ' (a cycle?)');
  let v;
  ${lines.join('\n  ')}
  unknown(o);
}`);
  });

  parts.push(`
const ENCODERS = [${names.map((_, i) => `e${i}`).join(', ')}];
return function encode(mi, obj) {
  opos = 0;
  ENCODERS[mi](obj || EMPTY, 1);
  const bytes = out.slice(0, opos);
  if (out.length > 1 << 22) { out = new Uint8Array(4096); oview = new DataView(out.buffer); }
  return bytes;
};`);

  const factory = new Function('UNKNOWN_FIELDS', 'MAX_DEPTH', 'ABSENT', 'utf8enc', parts.join('\n'));
  const encodeIndex = factory(UNKNOWN_FIELDS, MAX_DEPTH, ABSENT, new TextEncoder());
  return (type, obj) => encodeIndex(index[type], obj);
}
