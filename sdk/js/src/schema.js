// The OTLP messages the codec knows, as one table: message name -> fields.
//
// A field is [number, name, type, label]:
//   - name: the lowerCamelCase name of the OTLP/JSON mapping (the property of decoded objects);
//   - type: a scalar type (string, bytes, bool, int32, uint32, sint32, int64, uint64, fixed32,
//     fixed64, sfixed64, double, enum) or the name of another message in this table;
//   - label: '' (singular), 'repeated', 'optional' (proto3 explicit presence) or
//     'oneof <group>' (a member of a oneof).
//
// Field numbers and types follow opentelemetry-proto (common/v1, resource/v1, trace/v1,
// metrics/v1, logs/v1 and the collector Export*ServiceRequest messages).

export const SCHEMA = {
  // opentelemetry.proto.common.v1
  AnyValue: [
    [1, 'stringValue', 'string', 'oneof value'],
    [2, 'boolValue', 'bool', 'oneof value'],
    [3, 'intValue', 'int64', 'oneof value'],
    [4, 'doubleValue', 'double', 'oneof value'],
    [5, 'arrayValue', 'ArrayValue', 'oneof value'],
    [6, 'kvlistValue', 'KeyValueList', 'oneof value'],
    [7, 'bytesValue', 'bytes', 'oneof value'],
    [8, 'stringValueStrindex', 'int32', 'oneof value'],
  ],
  ArrayValue: [[1, 'values', 'AnyValue', 'repeated']],
  KeyValueList: [[1, 'values', 'KeyValue', 'repeated']],
  KeyValue: [
    [1, 'key', 'string', ''],
    [2, 'value', 'AnyValue', ''],
    [3, 'keyStrindex', 'int32', ''],
  ],
  InstrumentationScope: [
    [1, 'name', 'string', ''],
    [2, 'version', 'string', ''],
    [3, 'attributes', 'KeyValue', 'repeated'],
    [4, 'droppedAttributesCount', 'uint32', ''],
  ],
  EntityRef: [
    [1, 'schemaUrl', 'string', ''],
    [2, 'type', 'string', ''],
    [3, 'idKeys', 'string', 'repeated'],
    [4, 'descriptionKeys', 'string', 'repeated'],
  ],

  // opentelemetry.proto.resource.v1
  Resource: [
    [1, 'attributes', 'KeyValue', 'repeated'],
    [2, 'droppedAttributesCount', 'uint32', ''],
    [3, 'entityRefs', 'EntityRef', 'repeated'],
  ],

  // opentelemetry.proto.trace.v1
  ResourceSpans: [
    [1, 'resource', 'Resource', ''],
    [2, 'scopeSpans', 'ScopeSpans', 'repeated'],
    [3, 'schemaUrl', 'string', ''],
  ],
  ScopeSpans: [
    [1, 'scope', 'InstrumentationScope', ''],
    [2, 'spans', 'Span', 'repeated'],
    [3, 'schemaUrl', 'string', ''],
  ],
  Span: [
    [1, 'traceId', 'bytes', ''],
    [2, 'spanId', 'bytes', ''],
    [3, 'traceState', 'string', ''],
    [4, 'parentSpanId', 'bytes', ''],
    [16, 'flags', 'fixed32', ''],
    [5, 'name', 'string', ''],
    [6, 'kind', 'enum', ''],
    [7, 'startTimeUnixNano', 'fixed64', ''],
    [8, 'endTimeUnixNano', 'fixed64', ''],
    [9, 'attributes', 'KeyValue', 'repeated'],
    [10, 'droppedAttributesCount', 'uint32', ''],
    [11, 'events', 'SpanEvent', 'repeated'],
    [12, 'droppedEventsCount', 'uint32', ''],
    [13, 'links', 'SpanLink', 'repeated'],
    [14, 'droppedLinksCount', 'uint32', ''],
    [15, 'status', 'Status', ''],
  ],
  SpanEvent: [
    [1, 'timeUnixNano', 'fixed64', ''],
    [2, 'name', 'string', ''],
    [3, 'attributes', 'KeyValue', 'repeated'],
    [4, 'droppedAttributesCount', 'uint32', ''],
  ],
  SpanLink: [
    [1, 'traceId', 'bytes', ''],
    [2, 'spanId', 'bytes', ''],
    [3, 'traceState', 'string', ''],
    [4, 'attributes', 'KeyValue', 'repeated'],
    [5, 'droppedAttributesCount', 'uint32', ''],
    [6, 'flags', 'fixed32', ''],
  ],
  Status: [
    [2, 'message', 'string', ''],
    [3, 'code', 'enum', ''],
  ],

  // opentelemetry.proto.metrics.v1
  ResourceMetrics: [
    [1, 'resource', 'Resource', ''],
    [2, 'scopeMetrics', 'ScopeMetrics', 'repeated'],
    [3, 'schemaUrl', 'string', ''],
  ],
  ScopeMetrics: [
    [1, 'scope', 'InstrumentationScope', ''],
    [2, 'metrics', 'Metric', 'repeated'],
    [3, 'schemaUrl', 'string', ''],
  ],
  Metric: [
    [1, 'name', 'string', ''],
    [2, 'description', 'string', ''],
    [3, 'unit', 'string', ''],
    [5, 'gauge', 'Gauge', 'oneof data'],
    [7, 'sum', 'Sum', 'oneof data'],
    [9, 'histogram', 'Histogram', 'oneof data'],
    [10, 'exponentialHistogram', 'ExponentialHistogram', 'oneof data'],
    [11, 'summary', 'Summary', 'oneof data'],
    [12, 'metadata', 'KeyValue', 'repeated'],
  ],
  Gauge: [[1, 'dataPoints', 'NumberDataPoint', 'repeated']],
  Sum: [
    [1, 'dataPoints', 'NumberDataPoint', 'repeated'],
    [2, 'aggregationTemporality', 'enum', ''],
    [3, 'isMonotonic', 'bool', ''],
  ],
  Histogram: [
    [1, 'dataPoints', 'HistogramDataPoint', 'repeated'],
    [2, 'aggregationTemporality', 'enum', ''],
  ],
  ExponentialHistogram: [
    [1, 'dataPoints', 'ExponentialHistogramDataPoint', 'repeated'],
    [2, 'aggregationTemporality', 'enum', ''],
  ],
  Summary: [[1, 'dataPoints', 'SummaryDataPoint', 'repeated']],
  NumberDataPoint: [
    [7, 'attributes', 'KeyValue', 'repeated'],
    [2, 'startTimeUnixNano', 'fixed64', ''],
    [3, 'timeUnixNano', 'fixed64', ''],
    [4, 'asDouble', 'double', 'oneof value'],
    [6, 'asInt', 'sfixed64', 'oneof value'],
    [5, 'exemplars', 'Exemplar', 'repeated'],
    [8, 'flags', 'uint32', ''],
  ],
  HistogramDataPoint: [
    [9, 'attributes', 'KeyValue', 'repeated'],
    [2, 'startTimeUnixNano', 'fixed64', ''],
    [3, 'timeUnixNano', 'fixed64', ''],
    [4, 'count', 'fixed64', ''],
    [5, 'sum', 'double', 'optional'],
    [6, 'bucketCounts', 'fixed64', 'repeated'],
    [7, 'explicitBounds', 'double', 'repeated'],
    [8, 'exemplars', 'Exemplar', 'repeated'],
    [10, 'flags', 'uint32', ''],
    [11, 'min', 'double', 'optional'],
    [12, 'max', 'double', 'optional'],
  ],
  ExponentialHistogramDataPoint: [
    [1, 'attributes', 'KeyValue', 'repeated'],
    [2, 'startTimeUnixNano', 'fixed64', ''],
    [3, 'timeUnixNano', 'fixed64', ''],
    [4, 'count', 'fixed64', ''],
    [5, 'sum', 'double', 'optional'],
    [6, 'scale', 'sint32', ''],
    [7, 'zeroCount', 'fixed64', ''],
    [8, 'positive', 'Buckets', ''],
    [9, 'negative', 'Buckets', ''],
    [10, 'flags', 'uint32', ''],
    [11, 'exemplars', 'Exemplar', 'repeated'],
    [12, 'min', 'double', 'optional'],
    [13, 'max', 'double', 'optional'],
    [14, 'zeroThreshold', 'double', ''],
  ],
  Buckets: [
    [1, 'offset', 'sint32', ''],
    [2, 'bucketCounts', 'uint64', 'repeated'],
  ],
  SummaryDataPoint: [
    [7, 'attributes', 'KeyValue', 'repeated'],
    [2, 'startTimeUnixNano', 'fixed64', ''],
    [3, 'timeUnixNano', 'fixed64', ''],
    [4, 'count', 'fixed64', ''],
    [5, 'sum', 'double', ''],
    [6, 'quantileValues', 'ValueAtQuantile', 'repeated'],
    [8, 'flags', 'uint32', ''],
  ],
  ValueAtQuantile: [
    [1, 'quantile', 'double', ''],
    [2, 'value', 'double', ''],
  ],
  Exemplar: [
    [7, 'filteredAttributes', 'KeyValue', 'repeated'],
    [2, 'timeUnixNano', 'fixed64', ''],
    [3, 'asDouble', 'double', 'oneof value'],
    [6, 'asInt', 'sfixed64', 'oneof value'],
    [4, 'spanId', 'bytes', ''],
    [5, 'traceId', 'bytes', ''],
  ],

  // opentelemetry.proto.logs.v1
  ResourceLogs: [
    [1, 'resource', 'Resource', ''],
    [2, 'scopeLogs', 'ScopeLogs', 'repeated'],
    [3, 'schemaUrl', 'string', ''],
  ],
  ScopeLogs: [
    [1, 'scope', 'InstrumentationScope', ''],
    [2, 'logRecords', 'LogRecord', 'repeated'],
    [3, 'schemaUrl', 'string', ''],
  ],
  LogRecord: [
    [1, 'timeUnixNano', 'fixed64', ''],
    [11, 'observedTimeUnixNano', 'fixed64', ''],
    [2, 'severityNumber', 'enum', ''],
    [3, 'severityText', 'string', ''],
    [5, 'body', 'AnyValue', ''],
    [6, 'attributes', 'KeyValue', 'repeated'],
    [7, 'droppedAttributesCount', 'uint32', ''],
    [8, 'flags', 'fixed32', ''],
    [9, 'traceId', 'bytes', ''],
    [10, 'spanId', 'bytes', ''],
    [12, 'eventName', 'string', ''],
  ],

  // opentelemetry.proto.collector.{trace,metrics,logs}.v1
  ExportTraceServiceRequest: [[1, 'resourceSpans', 'ResourceSpans', 'repeated']],
  ExportMetricsServiceRequest: [[1, 'resourceMetrics', 'ResourceMetrics', 'repeated']],
  ExportLogsServiceRequest: [[1, 'resourceLogs', 'ResourceLogs', 'repeated']],
};

/** The request message of each signal. */
export const REQUEST_TYPES = {
  traces: 'ExportTraceServiceRequest',
  metrics: 'ExportMetricsServiceRequest',
  logs: 'ExportLogsServiceRequest',
};
