"""OTLP messages as plain Python objects, and their protobuf wire format.

Every message of the OTLP traces, metrics and logs protocols (``opentelemetry/proto``
``common``, ``resource``, ``trace``, ``metrics``, ``logs`` and the three ``collector``
requests) is a class here with the proto's own snake_case field names::

    batch = ExportTraceServiceRequest.decode(data)
    for rs in batch.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                print(span.name, span.start_time_unix_nano)
    data = batch.encode()

Fields hold their proto3 defaults when absent (``0``, ``""``, ``b""``, ``False``, ``[]``),
except sub-messages, which are ``None`` when absent (as ``HasField`` is false in the official
classes), proto3 ``optional`` fields (``sum``, ``min``, ``max`` of histograms), which are
``None`` when absent, and ``oneof`` members, of which at most one is not ``None``.

Decoding refuses malformed input with :class:`DecodeError` (a truncated field, a length past
the end, a wrong wire type, a string that is not UTF-8, nesting deeper than
:data:`MAX_DEPTH`). Fields this version does not know are kept as bytes and written back.
Encoding writes canonical protobuf: fields in number order, proto3 defaults left out, repeated
numbers packed.
"""

from __future__ import annotations

import struct

__all__ = [
    "DecodeError",
    "MAX_DEPTH",
    "AnyValue",
    "ArrayValue",
    "KeyValueList",
    "KeyValue",
    "InstrumentationScope",
    "Resource",
    "ResourceSpans",
    "ScopeSpans",
    "Span",
    "Event",
    "Link",
    "Status",
    "ResourceMetrics",
    "ScopeMetrics",
    "Metric",
    "Gauge",
    "Sum",
    "Histogram",
    "ExponentialHistogram",
    "Summary",
    "NumberDataPoint",
    "HistogramDataPoint",
    "ExponentialHistogramDataPoint",
    "Buckets",
    "SummaryDataPoint",
    "ValueAtQuantile",
    "Exemplar",
    "ResourceLogs",
    "ScopeLogs",
    "LogRecord",
    "ExportTraceServiceRequest",
    "ExportMetricsServiceRequest",
    "ExportLogsServiceRequest",
]

#: Messages nested deeper than this (``AnyValue`` inside arrays inside maps ...) are refused.
MAX_DEPTH = 64


class DecodeError(ValueError):
    """The bytes are not a valid encoding of the message."""


# Field kinds. Scalars are decoded to int, float, bool, str or bytes.
_WIRE = {
    "int32": 0,
    "int64": 0,
    "uint32": 0,
    "uint64": 0,
    "bool": 0,
    "enum": 0,
    "sint32": 0,
    "sint64": 0,
    "fixed64": 1,
    "sfixed64": 1,
    "double": 1,
    "fixed32": 5,
    "sfixed32": 5,
    "float": 5,
    "string": 2,
    "bytes": 2,
    "message": 2,
}
_FIXED_FORMAT = {
    "fixed64": "<Q",
    "sfixed64": "<q",
    "double": "<d",
    "fixed32": "<I",
    "sfixed32": "<i",
    "float": "<f",
}
_DEFAULT = {
    "string": "",
    "bytes": b"",
    "bool": False,
    "double": 0.0,
    "float": 0.0,
}


# How a field is read (`_Field.code`): by a varint, 8 or 4 fixed bytes, or a length.
_VARINT, _FIXED64, _FIXED32, _LENGTH, _STRING, _BYTES, _MESSAGE, _RUN, _PACKED = range(9)


class _Field:
    __slots__ = (
        "code",
        "convert",
        "number",
        "name",
        "kind",
        "repeated",
        "message",
        "oneof",
        "optional",
        "wire",
        "tag",
        "fmt",
    )

    def __init__(self, number, name, kind, repeated=False, oneof=None, optional=False):
        self.number = number
        self.name = name
        # `kind` is a scalar kind or the name of a message class (resolved after all exist).
        self.kind = kind if kind in _WIRE else "message"
        self.message = None if kind in _WIRE else kind
        self.repeated = repeated
        self.oneof = oneof
        self.optional = optional
        self.wire = _WIRE[self.kind]
        self.tag = _varint((number << 3) | self.wire)
        self.fmt = _FIXED_FORMAT.get(self.kind)
        self.code = {0: _VARINT, 1: _FIXED64, 5: _FIXED32}.get(self.wire)
        if self.kind == "string":
            self.code = _STRING
        elif self.kind == "bytes":
            self.code = _BYTES
        elif self.kind == "message":
            self.code = _RUN if repeated else _MESSAGE
        # Whether a varint needs converting (signed, 32-bit, bool); uint64 and fixed need not.
        self.convert = self.kind not in ("uint64",)

    def default(self):
        if self.repeated:
            return []
        if self.kind == "message" or self.oneof or self.optional:
            return None
        return _DEFAULT.get(self.kind, 0)


class Message:
    """Base of every OTLP message class.

    A decoded message is read lazily: its own fields are parsed the first time one of them is
    read or set, and a message nobody looked into is written back by copying its bytes. A
    plugin pays for the parts of a batch it touches."""

    # Instance attributes: the fields, and
    # `_src`: (bytes, start, end, depth) until the fields are parsed, then None;
    # `_pending`: repeated message fields not read yet, {name: (message class, bytes, spans,
    # depth)};
    # `_unknown`: the encoding of fields this version does not know.
    _fields: tuple = ()
    _by_number: dict = {}

    def __init__(self, **values):
        fields = self.__dict__
        fields.update(self._template)
        for f in self._lists:
            fields[f] = []
        for name, value in values.items():
            if name not in self._by_name:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            fields[name] = value
        fields["_src"] = None
        fields["_pending"] = None
        fields["_unknown"] = b""

    def __getattr__(self, name):
        # Only called for a field not parsed yet (or a name that is no field).
        fields = self.__dict__
        if fields["_src"] is not None:
            _fill(self)
            return getattr(self, name)
        pending = fields["_pending"]
        if pending and name in pending:
            cls, data, spans, depth = pending.pop(name)
            items = [_shell(cls, data, start, stop, depth) for start, stop in spans]
            fields[name] = items
            return items
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __setattr__(self, name, value):
        fields = self.__dict__
        if name not in self._by_name:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        if fields["_src"] is not None:
            _fill(self)
        pending = fields["_pending"]
        if pending and name in pending:
            del pending[name]
        fields[name] = value

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, f.name) == getattr(other, f.name) for f in self._fields
        )

    def __repr__(self):
        shown = []
        for f in self._fields:
            v = getattr(self, f.name)
            if v != f.default():
                shown.append(f"{f.name}={v!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    @classmethod
    def decode(cls, data, lazy: bool = True) -> "Message":
        """Decodes ``data`` (bytes-like). With ``lazy`` (the default) nested messages are
        parsed when first read, and a malformed one raises :class:`DecodeError` then; with
        ``lazy=False`` all of it is parsed and checked now."""
        data = bytes(data)
        msg = _shell(cls, data, 0, len(data), 0)
        if lazy:
            _fill(msg)
        else:
            _fill_all(msg)
        return msg

    def encode(self) -> bytes:
        """The protobuf encoding: canonical for what was built or changed, the bytes as they
        came for what was decoded and never read."""
        out = bytearray()
        _encode(self, out)
        return bytes(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(data: bytes, i: int, end: int):
    b = data[i] if i < end else _truncated()
    if b < 0x80:
        return b, i + 1
    result = b & 0x7F
    shift = 7
    i += 1
    while True:
        if i >= end:
            _truncated()
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if shift >= 63 and result >> 64:
                raise DecodeError("a varint is longer than 64 bits")
            return result, i
        shift += 7
        if shift > 63:
            raise DecodeError("a varint is longer than 10 bytes")


def _truncated():
    raise DecodeError("the message ends in the middle of a field")


def _skip(data: bytes, i: int, end: int, wire: int) -> int:
    if wire == 0:
        return _read_varint(data, i, end)[1]
    if wire == 1:
        i += 8
    elif wire == 5:
        i += 4
    elif wire == 2:
        n, i = _read_varint(data, i, end)
        i += n
    else:
        raise DecodeError(f"wire type {wire} is not supported (groups are not used by OTLP)")
    if i > end:
        _truncated()
    return i


def _signed(n: int, bits: int) -> int:
    n &= (1 << bits) - 1
    return n - (1 << bits) if n >> (bits - 1) else n


def _scalar_from_varint(kind: str, n: int):
    if kind == "bool":
        return n != 0
    if kind == "int64":
        return _signed(n, 64)
    if kind in ("int32", "enum"):
        return _signed(n, 64) if n >> 63 else _signed(n, 32)
    if kind == "uint32":
        return n & 0xFFFFFFFF
    if kind == "sint32" or kind == "sint64":
        return (n >> 1) ^ -(n & 1)
    return n


def _shell(cls, data: bytes, start: int, end: int, depth: int):
    """A message over ``data[start:end]``, parsed when first used."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"messages are nested deeper than {MAX_DEPTH}")
    msg = cls.__new__(cls)
    msg.__dict__["_src"] = (data, start, end, depth)
    return msg


def _fill_all(msg):
    """Parses ``msg`` and everything in it (checks the whole encoding)."""
    for f in msg._fields:
        if f.kind != "message":
            continue
        v = getattr(msg, f.name)
        if f.repeated:
            for item in v:
                _fill_all(item)
        elif v is not None:
            _fill_all(v)


def _fill(msg):
    """Parses the fields of a lazily decoded message; nested messages stay lazy."""
    cls = type(msg)
    fields = msg.__dict__
    data, i, end, depth = fields["_src"]
    depth += 1
    if depth > MAX_DEPTH:
        raise DecodeError(f"messages are nested deeper than {MAX_DEPTH}")
    values = dict(cls._template)
    runs = None
    unknown = None
    by_key = cls._by_key
    while i < end:
        key = data[i]
        if key < 0x80:
            i += 1
        else:
            key, i = _read_varint(data, i, end)
        f = by_key.get(key)
        if f is None:
            i, unknown = _unexpected(cls, data, i, end, key, unknown)
            continue
        code = f.code
        if code >= _LENGTH:
            n = data[i] if i < end else _truncated()
            if n < 0x80:
                i += 1
            else:
                n, i = _read_varint(data, i, end)
            stop = i + n
            if stop > end:
                raise DecodeError(f"{cls.__name__}.{f.name}: length {n} runs past the end")
            if code == _RUN:
                if runs is None:
                    runs = {}
                found = runs.get(f.name)
                if found is None:
                    runs[f.name] = [(i, stop)]
                else:
                    found.append((i, stop))
            elif code == _STRING:
                try:
                    values[f.name] = data[i:stop].decode("utf-8")
                except UnicodeDecodeError:
                    raise DecodeError(f"{cls.__name__}.{f.name} is not valid UTF-8") from None
            elif code == _MESSAGE:
                values[f.name] = _shell(f.message, data, i, stop, depth)
                if f.oneof:
                    _clear_others(cls, f, values)
            elif code == _BYTES:
                values[f.name] = data[i:stop]
            else:
                _packed(cls, f, data, i, stop, n, values)
            i = stop
        elif code == _VARINT:
            n = data[i] if i < end else _truncated()
            if n < 0x80:
                i += 1
            else:
                n, i = _read_varint(data, i, end)
            value = _scalar_from_varint(f.kind, n) if f.convert else n
            if f.repeated:
                values.setdefault(f.name, []).append(value)
            else:
                if f.oneof:
                    _clear_others(cls, f, values)
                values[f.name] = value
        else:
            size = 8 if code == _FIXED64 else 4
            if i + size > end:
                _truncated()
            value = struct.unpack_from(f.fmt, data, i)[0]
            i += size
            if f.repeated:
                values.setdefault(f.name, []).append(value)
            else:
                if f.oneof:
                    _clear_others(cls, f, values)
                values[f.name] = value
    pending = None
    for name in cls._lists:
        if name not in values:
            if runs is not None and name in runs:
                if pending is None:
                    pending = {}
                pending[name] = (cls._by_name[name].message, data, runs[name], depth)
            else:
                values[name] = []
    values["_pending"] = pending
    values["_unknown"] = bytes(unknown) if unknown else b""
    values["_src"] = None
    fields.update(values)


def _clear_others(cls, f, values):
    for other in cls._oneofs[f.oneof]:
        if other is not f:
            values[other.name] = None


def _packed(cls, f, data, i, stop, n, values):
    run = values.setdefault(f.name, [])
    if f.fmt:
        size = struct.calcsize(f.fmt)
        if n % size:
            raise DecodeError(
                f"{cls.__name__}.{f.name}: packed length {n} is not a multiple of {size}"
            )
        run.extend(struct.unpack(f"<{n // size}{f.fmt[1]}", data[i:stop]))
    else:
        j = i
        while j < stop:
            v, j = _read_varint(data, j, stop)
            run.append(_scalar_from_varint(f.kind, v))


def _unexpected(cls, data, i, end, key, unknown):
    """A field this class does not expect: kept if unknown, refused if known with another
    wire type."""
    number = key >> 3
    wire = key & 7
    if number == 0:
        raise DecodeError("field number 0 is not valid")
    start = i
    i = _skip(data, i, end, wire)
    f = cls._by_number.get(number)
    if f is not None:
        raise DecodeError(f"{cls.__name__}.{f.name}: wire type {wire} where {f.wire} was expected")
    if unknown is None:
        unknown = bytearray()
    unknown += _varint(key)
    unknown += data[start:i]
    return i, unknown


def _encode_scalar(f: _Field, v, out: bytearray):
    kind = f.kind
    if f.fmt:
        out += struct.pack(f.fmt, v)
    elif kind == "string":
        b = v.encode("utf-8")
        out += _varint(len(b))
        out += b
    elif kind == "bytes":
        out += _varint(len(v))
        out += v
    elif kind == "bool":
        out.append(1 if v else 0)
    elif kind in ("sint32", "sint64"):
        bits = 64 if kind == "sint64" else 32
        out += _varint(((v << 1) ^ (v >> (bits - 1))) & ((1 << bits) - 1))
    else:
        out += _varint(v & 0xFFFFFFFFFFFFFFFF)


def _encode(msg: Message, out: bytearray):
    src = msg.__dict__.get("_src")
    if src is not None:
        out += src[0][src[1] : src[2]]
        return
    pending = msg._pending
    for f in msg._fields:
        if pending and f.name in pending:
            _, data, spans, _ = pending[f.name]
            for start, stop in spans:
                out += f.tag
                out += _varint(stop - start)
                out += data[start:stop]
            continue
        v = getattr(msg, f.name)
        if f.repeated:
            if not v:
                continue
            if f.kind == "message":
                for item in v:
                    out += f.tag
                    body = bytearray()
                    _encode(item, body)
                    out += _varint(len(body))
                    out += body
            elif f.kind in ("string", "bytes"):
                for item in v:
                    out += f.tag
                    _encode_scalar(f, item, out)
            else:
                body = bytearray()
                for item in v:
                    _encode_scalar(f, item, body)
                out += _varint((f.number << 3) | 2)
                out += _varint(len(body))
                out += body
            continue
        if v is None:
            continue
        if f.kind == "message":
            out += f.tag
            body = bytearray()
            _encode(v, body)
            out += _varint(len(body))
            out += body
            continue
        if not (f.oneof or f.optional) and v == _DEFAULT.get(f.kind, 0):
            continue
        out += f.tag
        _encode_scalar(f, v, out)
    if msg._unknown:
        out += msg._unknown


_CLASSES: dict = {}


def _packed_field(f: _Field) -> _Field:
    packed = _Field(f.number, f.name, f.kind, repeated=True)
    packed.code = _PACKED
    return packed


def _message(name: str, fields, doc: str = "") -> type:
    specs = tuple(_Field(*f[:3], **(f[3] if len(f) > 3 else {})) for f in fields)
    ordered = tuple(sorted(specs, key=lambda f: f.number))
    oneofs: dict = {}
    for f in ordered:
        if f.oneof:
            oneofs.setdefault(f.oneof, []).append(f)
    by_key = {}
    for f in ordered:
        by_key[(f.number << 3) | f.wire] = f
        if f.repeated and f.kind not in ("string", "bytes", "message"):
            # A packed run of numbers: the same field, length-delimited.
            by_key[(f.number << 3) | 2] = _packed_field(f)
    cls = type(
        name,
        (Message,),
        {
            "__doc__": doc or f"The OTLP ``{name}`` message.",
            "_fields": ordered,
            "_by_number": {f.number: f for f in ordered},
            "_by_name": {f.name: f for f in ordered},
            "_by_key": by_key,
            # Fresh defaults of every field that is not a list, and the lists' names.
            "_template": {f.name: f.default() for f in ordered if not f.repeated},
            "_lists": tuple(f.name for f in ordered if f.repeated),
            "_oneofs": oneofs,
        },
    )
    _CLASSES[name] = cls
    return cls


R = {"repeated": True}
OPT = {"optional": True}


def _one(group):
    return {"oneof": group}


AnyValue = _message(
    "AnyValue",
    [
        (1, "string_value", "string", _one("value")),
        (2, "bool_value", "bool", _one("value")),
        (3, "int_value", "int64", _one("value")),
        (4, "double_value", "double", _one("value")),
        (5, "array_value", "ArrayValue", _one("value")),
        (6, "kvlist_value", "KeyValueList", _one("value")),
        (7, "bytes_value", "bytes", _one("value")),
    ],
    "An attribute value or a log body: one of its fields is set (see :meth:`value`).",
)
ArrayValue = _message("ArrayValue", [(1, "values", "AnyValue", R)])
KeyValueList = _message("KeyValueList", [(1, "values", "KeyValue", R)])
KeyValue = _message("KeyValue", [(1, "key", "string"), (2, "value", "AnyValue")])
InstrumentationScope = _message(
    "InstrumentationScope",
    [
        (1, "name", "string"),
        (2, "version", "string"),
        (3, "attributes", "KeyValue", R),
        (4, "dropped_attributes_count", "uint32"),
    ],
)
Resource = _message(
    "Resource", [(1, "attributes", "KeyValue", R), (2, "dropped_attributes_count", "uint32")]
)

# Traces.
Status = _message("Status", [(2, "message", "string"), (3, "code", "enum")])
Event = _message(
    "Event",
    [
        (1, "time_unix_nano", "fixed64"),
        (2, "name", "string"),
        (3, "attributes", "KeyValue", R),
        (4, "dropped_attributes_count", "uint32"),
    ],
)
Link = _message(
    "Link",
    [
        (1, "trace_id", "bytes"),
        (2, "span_id", "bytes"),
        (3, "trace_state", "string"),
        (4, "attributes", "KeyValue", R),
        (5, "dropped_attributes_count", "uint32"),
        (6, "flags", "fixed32"),
    ],
)
Span = _message(
    "Span",
    [
        (1, "trace_id", "bytes"),
        (2, "span_id", "bytes"),
        (3, "trace_state", "string"),
        (4, "parent_span_id", "bytes"),
        (5, "name", "string"),
        (6, "kind", "enum"),
        (7, "start_time_unix_nano", "fixed64"),
        (8, "end_time_unix_nano", "fixed64"),
        (9, "attributes", "KeyValue", R),
        (10, "dropped_attributes_count", "uint32"),
        (11, "events", "Event", R),
        (12, "dropped_events_count", "uint32"),
        (13, "links", "Link", R),
        (14, "dropped_links_count", "uint32"),
        (15, "status", "Status"),
        (16, "flags", "fixed32"),
    ],
)
ScopeSpans = _message(
    "ScopeSpans",
    [(1, "scope", "InstrumentationScope"), (2, "spans", "Span", R), (3, "schema_url", "string")],
)
ResourceSpans = _message(
    "ResourceSpans",
    [(1, "resource", "Resource"), (2, "scope_spans", "ScopeSpans", R), (3, "schema_url", "string")],
)

# Metrics.
Exemplar = _message(
    "Exemplar",
    [
        (2, "time_unix_nano", "fixed64"),
        (3, "as_double", "double", _one("value")),
        (4, "span_id", "bytes"),
        (5, "trace_id", "bytes"),
        (6, "as_int", "sfixed64", _one("value")),
        (7, "filtered_attributes", "KeyValue", R),
    ],
)
NumberDataPoint = _message(
    "NumberDataPoint",
    [
        (2, "start_time_unix_nano", "fixed64"),
        (3, "time_unix_nano", "fixed64"),
        (4, "as_double", "double", _one("value")),
        (5, "exemplars", "Exemplar", R),
        (6, "as_int", "sfixed64", _one("value")),
        (7, "attributes", "KeyValue", R),
        (8, "flags", "uint32"),
    ],
)
HistogramDataPoint = _message(
    "HistogramDataPoint",
    [
        (2, "start_time_unix_nano", "fixed64"),
        (3, "time_unix_nano", "fixed64"),
        (4, "count", "fixed64"),
        (5, "sum", "double", OPT),
        (6, "bucket_counts", "fixed64", R),
        (7, "explicit_bounds", "double", R),
        (8, "exemplars", "Exemplar", R),
        (9, "attributes", "KeyValue", R),
        (10, "flags", "uint32"),
        (11, "min", "double", OPT),
        (12, "max", "double", OPT),
    ],
)
Buckets = _message("Buckets", [(1, "offset", "sint32"), (2, "bucket_counts", "uint64", R)])
ExponentialHistogramDataPoint = _message(
    "ExponentialHistogramDataPoint",
    [
        (1, "attributes", "KeyValue", R),
        (2, "start_time_unix_nano", "fixed64"),
        (3, "time_unix_nano", "fixed64"),
        (4, "count", "fixed64"),
        (5, "sum", "double", OPT),
        (6, "scale", "sint32"),
        (7, "zero_count", "fixed64"),
        (8, "positive", "Buckets"),
        (9, "negative", "Buckets"),
        (10, "flags", "uint32"),
        (11, "exemplars", "Exemplar", R),
        (12, "min", "double", OPT),
        (13, "max", "double", OPT),
        (14, "zero_threshold", "double"),
    ],
)
ValueAtQuantile = _message("ValueAtQuantile", [(1, "quantile", "double"), (2, "value", "double")])
SummaryDataPoint = _message(
    "SummaryDataPoint",
    [
        (2, "start_time_unix_nano", "fixed64"),
        (3, "time_unix_nano", "fixed64"),
        (4, "count", "fixed64"),
        (5, "sum", "double"),
        (6, "quantile_values", "ValueAtQuantile", R),
        (7, "attributes", "KeyValue", R),
        (8, "flags", "uint32"),
    ],
)
Gauge = _message("Gauge", [(1, "data_points", "NumberDataPoint", R)])
Sum = _message(
    "Sum",
    [
        (1, "data_points", "NumberDataPoint", R),
        (2, "aggregation_temporality", "enum"),
        (3, "is_monotonic", "bool"),
    ],
)
Histogram = _message(
    "Histogram",
    [(1, "data_points", "HistogramDataPoint", R), (2, "aggregation_temporality", "enum")],
)
ExponentialHistogram = _message(
    "ExponentialHistogram",
    [
        (1, "data_points", "ExponentialHistogramDataPoint", R),
        (2, "aggregation_temporality", "enum"),
    ],
)
Summary = _message("Summary", [(1, "data_points", "SummaryDataPoint", R)])
Metric = _message(
    "Metric",
    [
        (1, "name", "string"),
        (2, "description", "string"),
        (3, "unit", "string"),
        (5, "gauge", "Gauge", _one("data")),
        (7, "sum", "Sum", _one("data")),
        (9, "histogram", "Histogram", _one("data")),
        (10, "exponential_histogram", "ExponentialHistogram", _one("data")),
        (11, "summary", "Summary", _one("data")),
        (12, "metadata", "KeyValue", R),
    ],
)
ScopeMetrics = _message(
    "ScopeMetrics",
    [(1, "scope", "InstrumentationScope"), (2, "metrics", "Metric", R), (3, "schema_url", "string")],
)
ResourceMetrics = _message(
    "ResourceMetrics",
    [
        (1, "resource", "Resource"),
        (2, "scope_metrics", "ScopeMetrics", R),
        (3, "schema_url", "string"),
    ],
)

# Logs.
LogRecord = _message(
    "LogRecord",
    [
        (1, "time_unix_nano", "fixed64"),
        (2, "severity_number", "enum"),
        (3, "severity_text", "string"),
        (5, "body", "AnyValue"),
        (6, "attributes", "KeyValue", R),
        (7, "dropped_attributes_count", "uint32"),
        (8, "flags", "fixed32"),
        (9, "trace_id", "bytes"),
        (10, "span_id", "bytes"),
        (11, "observed_time_unix_nano", "fixed64"),
        (12, "event_name", "string"),
    ],
)
ScopeLogs = _message(
    "ScopeLogs",
    [
        (1, "scope", "InstrumentationScope"),
        (2, "log_records", "LogRecord", R),
        (3, "schema_url", "string"),
    ],
)
ResourceLogs = _message(
    "ResourceLogs",
    [(1, "resource", "Resource"), (2, "scope_logs", "ScopeLogs", R), (3, "schema_url", "string")],
)

ExportTraceServiceRequest = _message(
    "ExportTraceServiceRequest", [(1, "resource_spans", "ResourceSpans", R)]
)
ExportMetricsServiceRequest = _message(
    "ExportMetricsServiceRequest", [(1, "resource_metrics", "ResourceMetrics", R)]
)
ExportLogsServiceRequest = _message(
    "ExportLogsServiceRequest", [(1, "resource_logs", "ResourceLogs", R)]
)

for _cls in _CLASSES.values():
    for _f in _cls._fields:
        if _f.kind == "message":
            _f.message = _CLASSES[_f.message]
del _cls, _f


#: What :func:`find_pending_attribute` answers when the attributes were already read.
NOT_PENDING = object()


def find_pending_attribute(msg: Message, key: str):
    """The first ``KeyValue`` named ``key`` among the ``attributes`` of ``msg`` if they were
    not read yet (``None`` if there is none), without decoding the others; else
    :data:`NOT_PENDING`."""
    if msg._src is not None:
        _fill(msg)
    pending = msg._pending
    if not pending or "attributes" not in pending:
        return NOT_PENDING
    cls, data, spans, depth = pending["attributes"]
    raw = key.encode("utf-8")
    prefix = b"\x0a" + _varint(len(raw)) + raw
    size = len(prefix)
    for start, stop in spans:
        if data.startswith(prefix, start):
            kv = _shell(cls, data, start, stop, depth)
            # The key field first, then the value (or nothing), as every encoder writes it.
            if start + size == stop or data[start + size] == 0x12 or kv.key == key:
                return kv
        elif start < stop and data[start] != 0x0A:
            # A KeyValue that does not start with its key is decoded to be sure.
            kv = _shell(cls, data, start, stop, depth)
            if kv.key == key:
                return kv
    return None


def _any_value(self):
    """The value as a Python object: str, bool, int, float, bytes, a list for an array, a dict
    for a key-value list, or ``None`` when nothing is set."""
    if self.string_value is not None:
        return self.string_value
    if self.bool_value is not None:
        return self.bool_value
    if self.int_value is not None:
        return self.int_value
    if self.double_value is not None:
        return self.double_value
    if self.bytes_value is not None:
        return self.bytes_value
    if self.array_value is not None:
        return [v.value() for v in self.array_value.values]
    if self.kvlist_value is not None:
        return {kv.key: (kv.value.value() if kv.value else None) for kv in self.kvlist_value.values}
    return None


def _any_value_of(value) -> "AnyValue":
    """An ``AnyValue`` holding a Python value (str, bool, int, float, bytes, list, dict)."""
    if isinstance(value, AnyValue):
        return value
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise ValueError(f"{value} does not fit an OTLP int (64 bits)")
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return AnyValue(bytes_value=bytes(value))
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[_any_value_of(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(
            kvlist_value=KeyValueList(
                values=[KeyValue(key=str(k), value=_any_value_of(v)) for k, v in value.items()]
            )
        )
    raise TypeError(f"an OTLP value cannot hold a {type(value).__name__}")


AnyValue.value = _any_value
AnyValue.of = staticmethod(_any_value_of)
