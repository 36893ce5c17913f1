// A protobuf codec for the OTLP messages, driven by the table in schema.js.
//
// Decoded messages are plain objects with the OTLP/JSON (lowerCamelCase) field names. Every
// field is present after decode with its proto3 default: '' for strings, 0 for 32-bit numbers
// and enums, 0n for 64-bit integers (always BigInt), false, an empty Uint8Array for bytes, []
// for repeated fields, and a default-filled object for an absent singular message (so
// `rs.resource.attributes` can be read without checks). Exceptions: a oneof is one present key
// (or none), and a proto3 `optional` field is null when absent.
//
// Encoding writes fields in field-number order, a oneof at the position of its lowest field
// number (exactly as prost does, so a batch decoded and re-encoded is byte-identical to the
// gateway's own encoding), omits proto3 defaults, packs repeated scalars, and writes back the
// unknown fields kept at decode time (after the known ones). A singular message that was absent
// from the input and is still empty is not written; one that was present stays present.
//
// Decoding rejects malformed input with an InputError: a truncated or over-long varint, a
// length past the end of its message, a wrong wire type for a known field, a field number 0,
// a stray end-group, nesting deeper than 64 messages, and strings that are not valid UTF-8
// (as prost does; they are never replaced by U+FFFD). Memory use is bounded by the input:
// nothing is allocated from a length before the length is checked against the bytes left.

import { SCHEMA, REQUEST_TYPES } from './schema.js';
import { InputError } from './errors.js';
import { buildDecoder } from './decoder.js';
import { buildEncoder } from './encoder.js';

/** Messages nested deeper than this are refused (InputError on decode, TypeError on encode). */
export const MAX_DEPTH = 64;

/** The property (non-enumerable) holding a message's unknown fields, as raw byte chunks. */
export const UNKNOWN_FIELDS = Symbol.for('sluice.otlp.unknownFields');

// Marks a default-filled message standing in for an absent field (non-enumerable).
const ABSENT = Symbol.for('sluice.otlp.absent');

const K_STRING = 0;
const K_BYTES = 1;
const K_BOOL = 2;
const K_INT32 = 3; // also enums
const K_UINT32 = 4;
const K_SINT32 = 5;
const K_INT64 = 6;
const K_UINT64 = 7;
const K_FIXED32 = 8;
const K_FIXED64 = 9;
const K_SFIXED64 = 10;
const K_DOUBLE = 11;
const K_MESSAGE = 12;

const SCALARS = {
  string: [K_STRING, 2],
  bytes: [K_BYTES, 2],
  bool: [K_BOOL, 0],
  int32: [K_INT32, 0],
  enum: [K_INT32, 0],
  uint32: [K_UINT32, 0],
  sint32: [K_SINT32, 0],
  int64: [K_INT64, 0],
  uint64: [K_UINT64, 0],
  fixed32: [K_FIXED32, 5],
  fixed64: [K_FIXED64, 1],
  sfixed64: [K_SFIXED64, 1],
  double: [K_DOUBLE, 1],
};

const EMPTY_BYTES = new Uint8Array(0);

// ---------------------------------------------------------------------------------------------
// The compiled schema.

const MESSAGES = Object.create(null);

function compile() {
  for (const name of Object.keys(SCHEMA)) {
    MESSAGES[name] = { name, fields: [], byTag: [], encodeOrder: [], singularMessages: [] };
  }
  for (const name of Object.keys(SCHEMA)) {
    const msg = MESSAGES[name];
    const groups = Object.create(null);
    for (const [tag, fname, type, label] of SCHEMA[name]) {
      const scalar = SCALARS[type];
      if (!scalar && !MESSAGES[type]) throw new Error(`schema: ${name}.${fname}: unknown type ${type}`);
      const oneof = label.startsWith('oneof ') ? label.slice(6) : null;
      const kind = scalar ? scalar[0] : K_MESSAGE;
      const field = {
        tag,
        name: fname,
        kind,
        wire: scalar ? scalar[1] : 2,
        repeated: label === 'repeated',
        optional: label === 'optional',
        packed: label === 'repeated' && kind !== K_STRING && kind !== K_BYTES && kind !== K_MESSAGE,
        message: scalar ? null : MESSAGES[type],
        oneof: null, // the names of the other members of its oneof
        order: tag,
      };
      if (oneof) (groups[oneof] ||= []).push(field);
      msg.fields.push(field);
      msg.byTag[tag] = field;
      if (kind === K_MESSAGE && !field.repeated && !oneof) msg.singularMessages.push(field);
    }
    for (const members of Object.values(groups)) {
      const lowest = Math.min(...members.map((f) => f.tag));
      for (const f of members) {
        f.oneof = members.filter((o) => o !== f).map((o) => o.name);
        f.order = lowest;
      }
    }
    // prost writes fields sorted by number, a oneof at its lowest number; sort is stable.
    msg.encodeOrder = msg.fields.slice().sort((a, b) => a.order - b.order);
  }
}
compile();

function messageType(type) {
  const msg = MESSAGES[type];
  if (!msg) throw new TypeError(`unknown OTLP message type: ${type}`);
  return msg;
}

function scalarDefault(kind) {
  switch (kind) {
    case K_STRING:
      return '';
    case K_BYTES:
      return EMPTY_BYTES;
    case K_BOOL:
      return false;
    case K_INT64:
    case K_UINT64:
    case K_FIXED64:
    case K_SFIXED64:
      return 0n;
    default:
      return 0;
  }
}

// A fresh object with every field at its default; singular messages are left null (to be
// filled by fillAbsent once decoding is done).
function blank(msg) {
  const obj = {};
  const fields = msg.fields;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    if (f.oneof) continue;
    if (f.repeated) obj[f.name] = [];
    else if (f.optional || f.kind === K_MESSAGE) obj[f.name] = null;
    else obj[f.name] = scalarDefault(f.kind);
  }
  return obj;
}

function fillAbsent(msg, obj) {
  const singular = msg.singularMessages;
  for (let i = 0; i < singular.length; i++) {
    const f = singular[i];
    if (obj[f.name] === null) obj[f.name] = absent(f.message);
  }
  return obj;
}

function absent(msg) {
  const obj = fillAbsent(msg, blank(msg));
  Object.defineProperty(obj, ABSENT, { value: true, configurable: true, writable: true });
  return obj;
}

/**
 * A new message of `type` with every field at its default, then `fields` assigned over it.
 * Singular message fields left at their default are empty messages that encode as absent.
 */
export function create(type, fields) {
  const obj = absent(messageType(type));
  delete obj[ABSENT];
  return fields ? Object.assign(obj, fields) : obj;
}

/** The names of the message types the codec knows. */
export const MESSAGE_TYPES = Object.freeze(Object.keys(SCHEMA));

// ---------------------------------------------------------------------------------------------
// Decoding (generated per message from the schema: see decoder.js).

const decodeGenerated = buildDecoder(SCHEMA, MESSAGES, { InputError, UNKNOWN_FIELDS, MAX_DEPTH, EMPTY_BYTES, absent });

function asBytes(b) {
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (Array.isArray(b)) return Uint8Array.from(b);
  throw new TypeError(`decode: expected bytes (a Uint8Array), got ${Object.prototype.toString.call(b)}`);
}

/**
 * Decodes `bytes` (a Uint8Array) as an OTLP message of `type` (e.g. 'ExportTraceServiceRequest').
 * Throws InputError on malformed input.
 */
export function decode(type, bytes) {
  const msg = messageType(type);
  bytes = asBytes(bytes);
  return decodeGenerated(msg.name, bytes);
}

// ---------------------------------------------------------------------------------------------
// Encoding (generated per message from the schema: see encoder.js).

const encodeGenerated = buildEncoder(SCHEMA, { UNKNOWN_FIELDS, MAX_DEPTH, ABSENT });

/**
 * Encodes `obj` as an OTLP message of `type`. Missing fields count as their defaults, 64-bit
 * fields take a bigint, a safe-integer number or a decimal string, and bytes a Uint8Array.
 */
export function encode(type, obj) {
  return encodeGenerated(messageType(type).name, obj);
}

function isDefault(kind, v) {
  if (v === undefined || v === null) return true;
  switch (kind) {
    case K_STRING:
    case K_BYTES:
      return v.length === 0;
    case K_BOOL:
      return !v;
    default:
      return v == 0;
  }
}

/** The message type of a signal's batches ('traces' -> 'ExportTraceServiceRequest', ...). */
export function requestType(signal) {
  const type = REQUEST_TYPES[signal];
  if (!type) throw new TypeError(`unknown signal: ${signal} (expected traces, metrics or logs)`);
  return type;
}

/** Decodes a batch of `signal` ('traces', 'metrics' or 'logs'). */
export function decodeBatch(signal, bytes) {
  return decode(requestType(signal), bytes);
}

/** Encodes a batch of `signal`. */
export function encodeBatch(signal, batch) {
  return encode(requestType(signal), batch);
}

/** Enum values used in OTLP batches. */
export const SpanKind = Object.freeze({
  UNSPECIFIED: 0,
  INTERNAL: 1,
  SERVER: 2,
  CLIENT: 3,
  PRODUCER: 4,
  CONSUMER: 5,
});
export const StatusCode = Object.freeze({ UNSET: 0, OK: 1, ERROR: 2 });
export const AggregationTemporality = Object.freeze({ UNSPECIFIED: 0, DELTA: 1, CUMULATIVE: 2 });
export const SeverityNumber = Object.freeze({
  UNSPECIFIED: 0,
  TRACE: 1,
  DEBUG: 5,
  INFO: 9,
  WARN: 13,
  ERROR: 17,
  FATAL: 21,
});

// ---------------------------------------------------------------------------------------------
// OTLP/JSON (the protobuf JSON mapping as OTLP uses it: trace and span ids in hex, other bytes
// in base64, 64-bit integers as decimal strings, enums as numbers).

const HEX_FIELDS = new Set(['traceId', 'spanId', 'parentSpanId']);

function bytesFromJson(name, v) {
  if (v instanceof Uint8Array) return v;
  if (typeof v !== 'string') throw new TypeError(`${name}: expected a string`);
  if (HEX_FIELDS.has(name)) {
    if (v.length % 2 !== 0 || /[^0-9a-fA-F]/.test(v)) throw new TypeError(`${name}: not hex: ${v}`);
    const b = new Uint8Array(v.length / 2);
    for (let i = 0; i < b.length; i++) b[i] = parseInt(v.slice(2 * i, 2 * i + 2), 16);
    return b;
  }
  const bin = atob(v.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function bytesToJson(name, b) {
  if (HEX_FIELDS.has(name)) return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return btoa(String.fromCharCode(...b));
}

function scalarFromJson(f, v) {
  switch (f.kind) {
    case K_BYTES:
      return bytesFromJson(f.name, v);
    case K_INT64:
    case K_SFIXED64:
      return BigInt.asIntN(64, BigInt(v));
    case K_UINT64:
    case K_FIXED64:
      return BigInt.asUintN(64, BigInt(v));
    case K_DOUBLE:
      return typeof v === 'string' ? Number(v) : v;
    default:
      return v;
  }
}

function messageFromJson(msg, json, depth) {
  if (depth > MAX_DEPTH) throw new TypeError(`fromJson: nesting deeper than ${MAX_DEPTH}`);
  const obj = blank(msg);
  for (const f of msg.fields) {
    const v = json[f.name];
    if (v === undefined || v === null) continue;
    const one = (x) => (f.kind === K_MESSAGE ? messageFromJson(f.message, x, depth + 1) : scalarFromJson(f, x));
    obj[f.name] = f.repeated ? v.map(one) : one(v);
  }
  return fillAbsent(msg, obj);
}

/** A message of `type` from its OTLP/JSON form (as parsed by JSON.parse), with all defaults. */
export function fromJson(type, json) {
  return messageFromJson(messageType(type), json ?? {}, 1);
}

function scalarToJson(f, v) {
  if (f.kind === K_BYTES) return bytesToJson(f.name, v);
  if (typeof v === 'bigint') return v.toString();
  return v;
}

function messageToJson(msg, obj, depth) {
  if (depth > MAX_DEPTH) throw new TypeError(`toJson: nesting deeper than ${MAX_DEPTH}`);
  const json = {};
  for (const f of msg.fields) {
    const v = obj[f.name];
    if (v === undefined || v === null) continue;
    if (f.repeated) {
      if (v.length === 0) continue;
      json[f.name] = v.map((x) => (f.kind === K_MESSAGE ? messageToJson(f.message, x || {}, depth + 1) : scalarToJson(f, x)));
    } else if (f.kind === K_MESSAGE) {
      if (v[ABSENT] && encode(msg.name === f.message.name ? msg.name : f.message.name, v).length === 0) continue;
      json[f.name] = messageToJson(f.message, v, depth + 1);
    } else if (f.oneof || f.optional || !isDefault(f.kind, v)) {
      json[f.name] = scalarToJson(f, v);
    }
  }
  return json;
}

/**
 * The OTLP/JSON form of a message of `type` (defaults omitted, as protobuf JSON does; 64-bit
 * integers as strings), ready for JSON.stringify.
 */
export function toJson(type, obj) {
  return messageToJson(messageType(type), obj ?? {}, 1);
}
