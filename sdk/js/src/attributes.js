// Reading and writing OTLP attributes (lists of {key, value: AnyValue}) as JavaScript values.
//
// AnyValue <-> JavaScript:
//   stringValue <-> string          boolValue <-> boolean
//   intValue    <-> bigint          doubleValue <-> number (not an integer)
//   arrayValue  <-> Array           kvlistValue <-> plain object
//   bytesValue  <-> Uint8Array      (no value) <-> null
// Writing, a number that is a safe integer (Number.isSafeInteger) becomes an intValue, any
// other number a doubleValue. To store a whole number as a double, write the AnyValue
// yourself: `attrs.push({ key, value: { doubleValue: 2 } })`.

/** The JavaScript value of an AnyValue (see the table above). */
export function fromAnyValue(v) {
  if (v === null || v === undefined) return null;
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  if ('intValue' in v) return typeof v.intValue === 'bigint' ? v.intValue : BigInt(v.intValue);
  if ('doubleValue' in v) return v.doubleValue;
  if ('arrayValue' in v) return (v.arrayValue?.values ?? []).map(fromAnyValue);
  if ('kvlistValue' in v) {
    const obj = {};
    for (const kv of v.kvlistValue?.values ?? []) obj[kv.key] = fromAnyValue(kv.value);
    return obj;
  }
  if ('bytesValue' in v) return v.bytesValue;
  if ('stringValueStrindex' in v) return v.stringValueStrindex;
  return null;
}

/** The AnyValue of a JavaScript value (see the table above). */
export function toAnyValue(x) {
  switch (typeof x) {
    case 'string':
      return { stringValue: x };
    case 'boolean':
      return { boolValue: x };
    case 'bigint':
      return { intValue: BigInt.asIntN(64, x) };
    case 'number':
      return Number.isSafeInteger(x) ? { intValue: BigInt(x) } : { doubleValue: x };
    case 'undefined':
      return {};
    case 'object':
      if (x === null) return {};
      if (x instanceof Uint8Array) return { bytesValue: x };
      if (Array.isArray(x)) return { arrayValue: { values: x.map(toAnyValue) } };
      return {
        kvlistValue: { values: Object.entries(x).map(([key, value]) => keyValue(key, value)) },
      };
    default:
      throw new TypeError(`cannot store a ${typeof x} in an attribute`);
  }
}

/** A KeyValue with all its fields ({key, value, keyStrindex: 0}). */
export function keyValue(key, value) {
  return { key, value: toAnyValue(value), keyStrindex: 0 };
}

/** The KeyValue with this key (the first one), or undefined. */
export function findAttribute(attributes, key) {
  if (!attributes) return undefined;
  for (let i = 0; i < attributes.length; i++) if (attributes[i].key === key) return attributes[i];
  return undefined;
}

/** The value of the attribute `key` as a JavaScript value; undefined when there is none. */
export function getAttribute(attributes, key) {
  const kv = findAttribute(attributes, key);
  return kv === undefined ? undefined : fromAnyValue(kv.value);
}

/**
 * Sets the attribute `key` to `value`: replaces the value of the first attribute with that
 * key, or appends a new attribute at the end. Returns `attributes`.
 */
export function setAttribute(attributes, key, value) {
  const kv = findAttribute(attributes, key);
  if (kv) kv.value = toAnyValue(value);
  else attributes.push(keyValue(key, value));
  return attributes;
}

/** Removes every attribute with this key; returns how many were removed. */
export function removeAttribute(attributes, key) {
  let w = 0;
  for (let r = 0; r < attributes.length; r++) if (attributes[r].key !== key) attributes[w++] = attributes[r];
  const removed = attributes.length - w;
  attributes.length = w;
  return removed;
}
