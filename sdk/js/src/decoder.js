// The protobuf decoder, generated from the schema table when the SDK is loaded (inside a
// component that is at build time, under Wizer): one specialised function per message, with a
// `switch` on the field key and the object literal of the message's defaults. JavaScript
// engines without a JIT (the component's) run this several times faster than a table-walking
// decoder. The reader primitives below are part of the generated source, so that all of them
// share the reader's state as plain local variables.

const RUNTIME = String.raw`
let buf = EMPTY_BYTES, view = null, pos = 0, end = 0, vlo = 0, vhi = 0;

function fail(what) {
  throw new InputError('invalid OTLP protobuf: ' + what + ' at byte ' + pos);
}

function readVarint() {
  if (pos >= end) fail('truncated varint');
  let b = buf[pos++];
  if (b < 0x80) { vlo = b; vhi = 0; return vlo; }
  let lo = b & 0x7f;
  for (let shift = 7; shift < 28; shift += 7) {
    if (pos >= end) fail('truncated varint');
    b = buf[pos++];
    lo |= (b & 0x7f) << shift;
    if (b < 0x80) { vlo = lo >>> 0; vhi = 0; return vlo; }
  }
  if (pos >= end) fail('truncated varint');
  b = buf[pos++];
  lo |= (b & 0x0f) << 28;
  let hi = (b & 0x7f) >>> 4;
  if (b < 0x80) { vlo = lo >>> 0; vhi = hi; return vlo; }
  for (let shift = 3; shift < 32; shift += 7) {
    if (pos >= end) fail('truncated varint');
    b = buf[pos++];
    hi |= (b & 0x7f) << shift;
    if (b < 0x80) {
      if (shift === 31 && b > 1) break;
      vlo = lo >>> 0; vhi = hi >>> 0; return vlo;
    }
  }
  fail('varint longer than 64 bits');
}

function readKey() {
  readVarint();
  if (vhi !== 0) fail('invalid field key');
  return vlo;
}

function rLen() {
  const b = pos < end ? buf[pos] : 0x80;
  if (b < 0x80 && b < end - pos) { pos++; return b; }
  readVarint();
  if (vhi !== 0 || vlo > end - pos) fail('length past the end of the message');
  return vlo;
}

function need(n) {
  if (end - pos < n) fail('truncated fixed-width value');
}

function u64() {
  return vhi === 0 ? BigInt(vlo) : (BigInt(vhi) << 32n) | BigInt(vlo);
}

function rStr() {
  const len = rLen();
  const start = pos;
  pos += len;
  if (len === 0) return '';
  try {
    return utf8.decode(buf.subarray(start, pos));
  } catch (e) {
    pos = start;
    return fail('string is not valid UTF-8');
  }
}

function rBytes() {
  const len = rLen();
  pos += len;
  return buf.slice(pos - len, pos);
}

function rBool() { readVarint(); return vlo !== 0 || vhi !== 0; }
function rInt32() { return readVarint() | 0; }
function rUint32() { return readVarint(); }
function rSint32() { const v = readVarint(); return (v >>> 1) ^ -(v & 1); }
function rInt64() { readVarint(); return vhi === 0 ? BigInt(vlo) : BigInt.asIntN(64, u64()); }
function rUint64() { readVarint(); return u64(); }
function rFixed32() { need(4); pos += 4; return view.getUint32(pos - 4, true); }
function rFixed64() { need(8); pos += 8; return view.getBigUint64(pos - 8, true); }
function rSfixed64() { need(8); pos += 8; return view.getBigInt64(pos - 8, true); }
function rDouble() { need(8); pos += 8; return view.getFloat64(pos - 8, true); }

function skipField(wire, tag, depth) {
  switch (wire) {
    case 0: readVarint(); return;
    case 1: need(8); pos += 8; return;
    case 2: { const n = rLen(); pos += n; return; }
    case 5: need(4); pos += 4; return;
    case 3:
      if (depth >= MAX_DEPTH) fail('nesting deeper than ' + MAX_DEPTH);
      for (;;) {
        if (pos >= end) fail('unterminated group');
        const k = readKey();
        if ((k >>> 3) === 0) fail('invalid field number 0');
        if ((k & 7) === 4) {
          if ((k >>> 3) !== tag) fail('mismatched end of group');
          return;
        }
        skipField(k & 7, k >>> 3, depth + 1);
      }
    case 4: fail('end of group without a start');
  }
  fail('invalid wire type ' + wire);
}

// A key that no case of the message's switch took: a wrong wire type, or an unknown field
// (skipped and kept, as raw bytes, for re-encoding).
function other(o, k, start, depth, mi) {
  const tag = k >>> 3;
  const wire = k & 7;
  if (tag === 0) fail('invalid field number 0');
  const msg = MSGS[mi];
  const f = msg.byTag[tag];
  if (f !== undefined) fail('wrong wire type ' + wire + ' for ' + msg.name + '.' + f.name);
  skipField(wire, tag, depth);
  let unknown = o[UNKNOWN_FIELDS];
  if (unknown === undefined) {
    unknown = [];
    Object.defineProperty(o, UNKNOWN_FIELDS, { value: unknown, configurable: true, writable: true });
  }
  unknown.push(buf.slice(start, pos));
}

function sub(fn, depth, target) {
  const len = rLen();
  const outer = end;
  end = pos + len;
  const r = fn(depth + 1, target);
  end = outer;
  return r;
}
`;

const READERS = {
  string: 'rStr()',
  bytes: 'rBytes()',
  bool: 'rBool()',
  int32: 'rInt32()',
  enum: 'rInt32()',
  uint32: 'rUint32()',
  sint32: 'rSint32()',
  int64: 'rInt64()',
  uint64: 'rUint64()',
  fixed32: 'rFixed32()',
  fixed64: 'rFixed64()',
  sfixed64: 'rSfixed64()',
  double: 'rDouble()',
};

const WIRE = { double: 1, fixed64: 1, sfixed64: 1, fixed32: 5, string: 2, bytes: 2 };
const DEFAULTS = { string: "''", bytes: 'EMPTY_BYTES', bool: 'false', int64: '0n', uint64: '0n', fixed64: '0n', sfixed64: '0n' };

/**
 * Builds the decoder for `schema` (see schema.js). `msgs` is the compiled schema (name ->
 * {name, byTag}), in the same order as the schema's keys; `absent(msg)` makes the default of an
 * absent singular message. Returns decode(type, bytes).
 */
export function buildDecoder(schema, msgs, { InputError, UNKNOWN_FIELDS, MAX_DEPTH, EMPTY_BYTES, absent }) {
  const names = Object.keys(schema);
  const index = Object.fromEntries(names.map((n, i) => [n, i]));
  const q = (s) => JSON.stringify(s);
  const parts = [RUNTIME];

  names.forEach((name, mi) => {
    const fields = schema[name];
    const literal = [];
    const cases = [];
    const groups = {};
    const fills = [];
    for (const [tag, fname, type, label] of fields) {
      const isMsg = !READERS[type];
      const prop = `o[${q(fname)}]`;
      const oneof = label.startsWith('oneof ') ? label.slice(6) : null;
      if (oneof) (groups[oneof] ||= []).push(fname);
      if (label === 'repeated') literal.push(`${q(fname)}: []`);
      else if (oneof) {
        /* absent until set */
      } else if (isMsg || label === 'optional') literal.push(`${q(fname)}: null`);
      else literal.push(`${q(fname)}: ${DEFAULTS[type] ?? '0'}`);
      if (isMsg && !oneof && label !== 'repeated') fills.push([fname, index[type]]);

      const clear = oneof ? `if (g_${oneof}++ !== 0) { CLEAR_${oneof}_${fname} }` : '';
      if (isMsg) {
        const key = (tag << 3) | 2;
        const fn = `d${index[type]}`;
        if (label === 'repeated') cases.push(`case ${key}: ${prop}.push(sub(${fn}, depth, undefined)); break;`);
        else if (oneof) cases.push(`case ${key}: ${clear} ${prop} = sub(${fn}, depth, ${prop}); break;`);
        else cases.push(`case ${key}: ${prop} = sub(${fn}, depth, ${prop} === null ? undefined : ${prop}); break;`);
      } else {
        const wire = WIRE[type] ?? 0;
        const key = (tag << 3) | wire;
        const read = READERS[type];
        if (label === 'repeated') {
          cases.push(`case ${key}: ${prop}.push(${read}); break;`);
          if (wire !== 2) {
            cases.push(
              `case ${(tag << 3) | 2}: { const len = rLen(); const outer = end; end = pos + len; ` +
                `const list = ${prop}; while (pos < end) list.push(${read}); end = outer; break; }`,
            );
          }
        } else cases.push(`case ${key}: ${clear} ${prop} = ${read}; break;`);
      }
    }
    let body = cases.join('\n      ');
    for (const [group, members] of Object.entries(groups)) {
      for (const m of members) {
        const deletes = members.filter((x) => x !== m).map((x) => `delete o[${q(x)}];`).join(' ');
        body = body.replace(`CLEAR_${group}_${m}`, deletes);
      }
    }
    const counters = Object.keys(groups).map((g) => `let g_${g} = fresh ? 0 : 1;`).join(' ');
    const fillCode = fills.map(([f, ti]) => `if (o[${q(f)}] === null) o[${q(f)}] = absent(MSGS[${ti}]);`).join('\n  ');
    parts.push(`
function d${mi}(depth, o) {
  if (depth > MAX_DEPTH) fail('nesting deeper than ' + MAX_DEPTH);
  const fresh = o === undefined;
  if (fresh) o = { ${literal.join(', ')} };
  ${counters}
  while (pos < end) {
    const start = pos;
    let k = buf[pos];
    if (k < 0x80) pos++; else k = readKey();
    switch (k) {
      ${body}
      default: other(o, k, start, depth, ${mi});
    }
  }
  ${fillCode}
  return o;
}`);
  });

  parts.push(`
const DECODERS = [${names.map((_, i) => `d${i}`).join(', ')}];
return function decode(mi, bytes) {
  const saved = [buf, view, pos, end];
  buf = bytes;
  view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  pos = 0;
  end = bytes.length;
  try {
    return DECODERS[mi](1, undefined);
  } finally {
    buf = saved[0]; view = saved[1]; pos = saved[2]; end = saved[3];
  }
};`);

  const MSGS = names.map((n) => msgs[n]);
  const factory = new Function(
    'InputError',
    'UNKNOWN_FIELDS',
    'MAX_DEPTH',
    'EMPTY_BYTES',
    'absent',
    'MSGS',
    'utf8',
    parts.join('\n'),
  );
  const decodeIndex = factory(
    InputError,
    UNKNOWN_FIELDS,
    MAX_DEPTH,
    EMPTY_BYTES,
    absent,
    MSGS,
    new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }),
  );
  return (type, bytes) => decodeIndex(index[type], bytes);
}
