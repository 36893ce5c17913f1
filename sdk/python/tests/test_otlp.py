"""The codec against the official OpenTelemetry protobuf classes: the same bytes both ways,
every message kind; lazy reading; hostile input."""

import random

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from sluice_plugin import get_attribute, otlp, set_attribute

TRACES = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}], "droppedAttributesCount": 2},
            "scopeSpans": [
                {
                    "scope": {"name": "lib", "version": "1.2", "attributes": [{"key": "k", "value": {"boolValue": True}}]},
                    "schemaUrl": "https://opentelemetry.io/schemas/1.21.0",
                    "spans": [
                        {
                            "traceId": "W47/95gDgQPSabYzgT/GDA==",
                            "spanId": "7uGbfsPBsXQ=",
                            "parentSpanId": "7uGbfsPBsXU=",
                            "traceState": "a=b",
                            "flags": 257,
                            "name": "GET /orders",
                            "kind": "SPAN_KIND_SERVER",
                            "startTimeUnixNano": "18446744073709551615",
                            "endTimeUnixNano": "1700000000000000000",
                            "attributes": [
                                {"key": "int", "value": {"intValue": "-9223372036854775808"}},
                                {"key": "double", "value": {"doubleValue": -0.5}},
                                {"key": "bytes", "value": {"bytesValue": "AAH/"}},
                                {"key": "text", "value": {"stringValue": "é ✓ \u0000"}},
                                {"key": "array", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "3"}]}}},
                                {"key": "map", "value": {"kvlistValue": {"values": [{"key": "x", "value": {"boolValue": False}}]}}},
                                {"key": "empty", "value": {}},
                            ],
                            "droppedAttributesCount": 1,
                            "events": [{"timeUnixNano": "5", "name": "ev", "attributes": [{"key": "a", "value": {"intValue": "1"}}], "droppedAttributesCount": 3}],
                            "droppedEventsCount": 4,
                            "links": [{"traceId": "W47/95gDgQPSabYzgT/GDA==", "spanId": "7uGbfsPBsXQ=", "traceState": "x", "flags": 1, "droppedAttributesCount": 2}],
                            "droppedLinksCount": 5,
                            "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                        },
                        {"name": "empty status", "status": {}},
                    ],
                }
            ],
        },
        {},
    ]
}

METRICS = {
    "resourceMetrics": [
        {
            "resource": {"attributes": [{"key": "host", "value": {"stringValue": "h"}}]},
            "scopeMetrics": [
                {
                    "metrics": [
                        {"name": "g", "unit": "1", "description": "d", "gauge": {"dataPoints": [{"asDouble": 0.0, "timeUnixNano": "3"}, {"asInt": "-7", "flags": 1}]}},
                        {
                            "name": "s",
                            "sum": {
                                "aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
                                "isMonotonic": True,
                                "dataPoints": [
                                    {
                                        "asInt": "12",
                                        "attributes": [{"key": "a", "value": {"stringValue": "b"}}],
                                        "exemplars": [{"asDouble": 1.5, "timeUnixNano": "9", "spanId": "7uGbfsPBsXQ=", "traceId": "W47/95gDgQPSabYzgT/GDA==", "filteredAttributes": [{"key": "f", "value": {"intValue": "1"}}]}],
                                    }
                                ],
                            },
                        },
                        {
                            "name": "h",
                            "histogram": {
                                "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA",
                                "dataPoints": [{"count": "6", "sum": 0.0, "bucketCounts": ["1", "0", "5"], "explicitBounds": [0.5, 1.0], "min": -1.0, "max": 9.0}, {"count": "1"}],
                            },
                        },
                        {
                            "name": "e",
                            "exponentialHistogram": {
                                "aggregationTemporality": 1,
                                "dataPoints": [{"count": "4", "scale": -3, "zeroCount": "1", "zeroThreshold": 1e-9, "positive": {"offset": -2, "bucketCounts": ["1", "300"]}, "negative": {}, "sum": 2.5}],
                            },
                        },
                        {"name": "q", "summary": {"dataPoints": [{"count": "3", "sum": 7.5, "quantileValues": [{"quantile": 0.5, "value": 2.0}, {"quantile": 1.0, "value": 4.0}]}]}},
                        {"name": "no data", "metadata": [{"key": "m", "value": {"stringValue": "v"}}]},
                    ]
                }
            ],
        }
    ]
}

LOGS = {
    "resourceLogs": [
        {
            "scopeLogs": [
                {
                    "logRecords": [
                        {
                            "timeUnixNano": "1",
                            "observedTimeUnixNano": "2",
                            "severityNumber": 17,
                            "severityText": "ERROR",
                            "body": {"kvlistValue": {"values": [{"key": "msg", "value": {"stringValue": "hi"}}]}},
                            "attributes": [{"key": "a", "value": {"doubleValue": 3.25}}],
                            "flags": 1,
                            "traceId": "W47/95gDgQPSabYzgT/GDA==",
                            "spanId": "7uGbfsPBsXQ=",
                            "eventName": "app.start",
                        },
                        {"body": {"stringValue": "plain"}},
                    ]
                }
            ]
        }
    ]
}

CASES = [
    (TRACES, trace_service_pb2.ExportTraceServiceRequest, otlp.ExportTraceServiceRequest),
    (METRICS, metrics_service_pb2.ExportMetricsServiceRequest, otlp.ExportMetricsServiceRequest),
    (LOGS, logs_service_pb2.ExportLogsServiceRequest, otlp.ExportLogsServiceRequest),
]


def official(doc, cls):
    return json_format.ParseDict(doc, cls())


@pytest.mark.parametrize("doc,official_cls,cls", CASES, ids=["traces", "metrics", "logs"])
@pytest.mark.parametrize("lazy", [True, False])
def test_reencoding_gives_the_official_encoding(doc, official_cls, cls, lazy):
    reference = official(doc, official_cls).SerializeToString(deterministic=True)
    decoded = cls.decode(reference, lazy=lazy)
    # Touch every field, so the encoding comes from the fields and not the original bytes.
    otlp_copy = cls.decode(reference, lazy=False)
    assert decoded == otlp_copy
    assert otlp_copy.encode() == reference
    assert decoded.encode() == reference
    # And the official classes read what this codec writes as what they wrote.
    assert official_cls.FromString(otlp_copy.encode()) == official(doc, official_cls)


def test_fields_read_as_the_proto_says():
    data = official(TRACES, trace_service_pb2.ExportTraceServiceRequest).SerializeToString()
    batch = otlp.ExportTraceServiceRequest.decode(data)
    span = batch.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert span.start_time_unix_nano == 2**64 - 1
    assert span.kind == 2 and span.flags == 257
    assert get_attribute(span.attributes, "int") == -(2**63)
    assert get_attribute(span.attributes, "double") == -0.5
    assert get_attribute(span.attributes, "bytes") == b"\x00\x01\xff"
    assert get_attribute(span.attributes, "text") == "é ✓ \x00"
    assert get_attribute(span.attributes, "array") == ["a", 3]
    assert get_attribute(span.attributes, "map") == {"x": False}
    assert get_attribute(span.attributes, "empty") is None
    assert get_attribute(span.attributes, "absent", "d") == "d"
    assert span.status.code == 2 and span.status.message == "boom"
    assert batch.resource_spans[0].scope_spans[0].spans[1].status == otlp.Status()
    assert batch.resource_spans[1].resource is None
    hist = otlp.ExportMetricsServiceRequest.decode(
        official(METRICS, metrics_service_pb2.ExportMetricsServiceRequest).SerializeToString()
    ).resource_metrics[0].scope_metrics[0].metrics[2].histogram
    assert hist.data_points[0].sum == 0.0 and hist.data_points[1].sum is None
    assert hist.data_points[0].bucket_counts == [1, 0, 5]


def test_changes_are_encoded_and_untouched_parts_copied():
    data = official(TRACES, trace_service_pb2.ExportTraceServiceRequest).SerializeToString()
    batch = otlp.ExportTraceServiceRequest.decode(data)
    span = batch.resource_spans[0].scope_spans[0].spans[0]
    span.name = "renamed"
    set_attribute(span.attributes, "text", "masked")
    set_attribute(batch.resource_spans[0].resource, "tenant", "acme")
    batch.resource_spans[0].scope_spans[0].spans[1].status.message = "set on a lazy child"
    expected = official(TRACES, trace_service_pb2.ExportTraceServiceRequest)
    espan = expected.resource_spans[0].scope_spans[0].spans[0]
    espan.name = "renamed"
    for kv in espan.attributes:
        if kv.key == "text":
            kv.value.string_value = "masked"
    kv = expected.resource_spans[0].resource.attributes.add()
    kv.key, kv.value.string_value = "tenant", "acme"
    expected.resource_spans[0].scope_spans[0].spans[1].status.message = "set on a lazy child"
    assert trace_service_pb2.ExportTraceServiceRequest.FromString(batch.encode()) == expected


def test_unknown_fields_are_kept():
    # Span field 99 (varint) and 100 (bytes): written back as they came.
    span = otlp.Span(name="x").encode() + bytes([0x98, 0x06, 0x2A]) + bytes([0xA2, 0x06, 0x02]) + b"hi"
    decoded = otlp.Span.decode(span)
    assert decoded.name == "x"
    decoded.name = "y"
    assert decoded.encode() == otlp.Span(name="y").encode() + bytes([0x98, 0x06, 0x2A, 0xA2, 0x06, 0x02]) + b"hi"


@pytest.mark.parametrize(
    "data,message",
    [
        (b"\x0a", "ends in the middle"),  # a tag with no length
        (b"\x0a\x05abc", "runs past the end"),  # length past the end
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "varint"),  # an 11-byte varint
        (b"\x08\x01", "wire type 0 where 2"),  # resource_spans as a varint
        (b"\x0b", "wire type 3"),  # a group
        (b"\x00", "field number 0"),
    ],
)
def test_malformed_input_is_refused(data, message):
    with pytest.raises(otlp.DecodeError, match=message):
        otlp.ExportTraceServiceRequest.decode(data, lazy=False)


def test_non_utf8_strings_are_refused():
    span = b"\x2a\x02\xc3\x28"  # name = invalid UTF-8
    scope = b"\x12" + bytes([len(span)]) + span
    rs = b"\x12" + bytes([len(scope)]) + scope
    data = b"\x0a" + bytes([len(rs)]) + rs
    with pytest.raises(otlp.DecodeError, match="UTF-8"):
        otlp.ExportTraceServiceRequest.decode(data, lazy=False)


def test_deep_nesting_is_refused_without_recursing_far():
    value = otlp.AnyValue(string_value="x")
    for _ in range(200):
        value = otlp.AnyValue(array_value=otlp.ArrayValue(values=[value]))
    data = value.encode()
    with pytest.raises(otlp.DecodeError, match="nested deeper"):
        otlp.AnyValue.decode(data, lazy=False)
    lazy = otlp.AnyValue.decode(data)
    with pytest.raises(otlp.DecodeError, match="nested deeper"):
        while True:
            lazy = lazy.array_value.values[0]


def test_huge_length_prefixes_allocate_nothing():
    # A 4 GiB length in a 10-byte batch is refused before anything is read or allocated.
    with pytest.raises(otlp.DecodeError, match="runs past the end"):
        otlp.ExportTraceServiceRequest.decode(b"\x0a\x80\x80\x80\x80\x10xx", lazy=False)


def test_random_bytes_never_escape_as_other_errors():
    rng = random.Random(7)
    good = official(TRACES, trace_service_pb2.ExportTraceServiceRequest).SerializeToString()
    for _ in range(2000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = rng.randrange(len(data) + 1)
        try:
            otlp.ExportTraceServiceRequest.decode(bytes(data[:cut]), lazy=False).encode()
        except otlp.DecodeError:
            pass


def test_attributes_not_read_yet_are_found_without_decoding_the_others():
    data = official(TRACES, trace_service_pb2.ExportTraceServiceRequest).SerializeToString()
    for key, expected in [("int", -(2**63)), ("map", {"x": False}), ("empty", None), ("absent", None), ("in", None)]:
        span = otlp.ExportTraceServiceRequest.decode(data).resource_spans[0].scope_spans[0].spans[0]
        assert get_attribute(span, key) == expected, key
        assert "attributes" in span._pending, "the list stayed encoded"
        # The same answer once the list is read.
        assert get_attribute(span.attributes, key) == expected, key
    # A KeyValue written value-first is still found.
    kv = otlp.KeyValue(key="late", value=otlp.AnyValue(string_value="v")).encode()
    value_first = kv[kv.index(b"\x12"):] + kv[: kv.index(b"\x12")]
    span = otlp.Span.decode(b"\x4a" + bytes([len(value_first)]) + value_first)
    assert get_attribute(span, "late") == "v"
