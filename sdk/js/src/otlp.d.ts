// OTLP message shapes as decoded by @sluice/plugin (OTLP/JSON field names; every field present).

export type Signal = 'traces' | 'metrics' | 'logs';

export type AnyValue =
  | { stringValue: string } | { boolValue: boolean } | { intValue: bigint } | { doubleValue: number }
  | { arrayValue: ArrayValue } | { kvlistValue: KeyValueList } | { bytesValue: Uint8Array }
  | { stringValueStrindex: number } | Record<string, never>;
export interface ArrayValue { values: AnyValue[] }
export interface KeyValueList { values: KeyValue[] }
export interface KeyValue { key: string; value: AnyValue; keyStrindex: number }
export interface InstrumentationScope { name: string; version: string; attributes: KeyValue[]; droppedAttributesCount: number }
export interface EntityRef { schemaUrl: string; type: string; idKeys: string[]; descriptionKeys: string[] }
export interface Resource { attributes: KeyValue[]; droppedAttributesCount: number; entityRefs: EntityRef[] }

export interface ResourceSpans { resource: Resource; scopeSpans: ScopeSpans[]; schemaUrl: string }
export interface ScopeSpans { scope: InstrumentationScope; spans: Span[]; schemaUrl: string }
export interface Span {
  traceId: Uint8Array; spanId: Uint8Array; traceState: string; parentSpanId: Uint8Array; flags: number;
  name: string; kind: number; startTimeUnixNano: bigint; endTimeUnixNano: bigint;
  attributes: KeyValue[]; droppedAttributesCount: number; events: SpanEvent[]; droppedEventsCount: number;
  links: SpanLink[]; droppedLinksCount: number; status: Status;
}
export interface SpanEvent { timeUnixNano: bigint; name: string; attributes: KeyValue[]; droppedAttributesCount: number }
export interface SpanLink { traceId: Uint8Array; spanId: Uint8Array; traceState: string; attributes: KeyValue[]; droppedAttributesCount: number; flags: number }
export interface Status { message: string; code: number }

export interface ResourceMetrics { resource: Resource; scopeMetrics: ScopeMetrics[]; schemaUrl: string }
export interface ScopeMetrics { scope: InstrumentationScope; metrics: Metric[]; schemaUrl: string }
export interface Metric {
  name: string; description: string; unit: string; metadata: KeyValue[];
  gauge?: Gauge; sum?: Sum; histogram?: Histogram; exponentialHistogram?: ExponentialHistogram; summary?: Summary;
}
export interface Gauge { dataPoints: NumberDataPoint[] }
export interface Sum { dataPoints: NumberDataPoint[]; aggregationTemporality: number; isMonotonic: boolean }
export interface Histogram { dataPoints: HistogramDataPoint[]; aggregationTemporality: number }
export interface ExponentialHistogram { dataPoints: ExponentialHistogramDataPoint[]; aggregationTemporality: number }
export interface Summary { dataPoints: SummaryDataPoint[] }
export interface NumberDataPoint {
  attributes: KeyValue[]; startTimeUnixNano: bigint; timeUnixNano: bigint; exemplars: Exemplar[]; flags: number;
  asDouble?: number; asInt?: bigint;
}
export interface HistogramDataPoint {
  attributes: KeyValue[]; startTimeUnixNano: bigint; timeUnixNano: bigint; count: bigint; sum: number | null;
  bucketCounts: bigint[]; explicitBounds: number[]; exemplars: Exemplar[]; flags: number; min: number | null; max: number | null;
}
export interface Buckets { offset: number; bucketCounts: bigint[] }
export interface ExponentialHistogramDataPoint {
  attributes: KeyValue[]; startTimeUnixNano: bigint; timeUnixNano: bigint; count: bigint; sum: number | null;
  scale: number; zeroCount: bigint; positive: Buckets; negative: Buckets; flags: number; exemplars: Exemplar[];
  min: number | null; max: number | null; zeroThreshold: number;
}
export interface ValueAtQuantile { quantile: number; value: number }
export interface SummaryDataPoint {
  attributes: KeyValue[]; startTimeUnixNano: bigint; timeUnixNano: bigint; count: bigint; sum: number;
  quantileValues: ValueAtQuantile[]; flags: number;
}
export interface Exemplar {
  filteredAttributes: KeyValue[]; timeUnixNano: bigint; spanId: Uint8Array; traceId: Uint8Array; asDouble?: number; asInt?: bigint;
}

export interface ResourceLogs { resource: Resource; scopeLogs: ScopeLogs[]; schemaUrl: string }
export interface ScopeLogs { scope: InstrumentationScope; logRecords: LogRecord[]; schemaUrl: string }
export interface LogRecord {
  timeUnixNano: bigint; observedTimeUnixNano: bigint; severityNumber: number; severityText: string; body: AnyValue;
  attributes: KeyValue[]; droppedAttributesCount: number; flags: number; traceId: Uint8Array; spanId: Uint8Array; eventName: string;
}

export interface ExportTraceServiceRequest { resourceSpans: ResourceSpans[] }
export interface ExportMetricsServiceRequest { resourceMetrics: ResourceMetrics[] }
export interface ExportLogsServiceRequest { resourceLogs: ResourceLogs[] }

/** Deeply partial message, as `encode`/`emit` accept (missing fields are defaults; 64-bit fields also take number | string). */
export type Partial64<T> = T extends bigint ? bigint | number | string
  : T extends Uint8Array ? Uint8Array
  : T extends (infer E)[] ? Partial64<E>[]
  : T extends object ? { [K in keyof T]?: Partial64<T[K]> | null } : T;

export type MessageType = string;
export const MAX_DEPTH: number;
export const UNKNOWN_FIELDS: unique symbol;
export const MESSAGE_TYPES: readonly string[];
export function decode(type: MessageType, bytes: Uint8Array): any;
export function encode(type: MessageType, obj: object): Uint8Array;
export function create(type: MessageType, fields?: object): any;
export function requestType(signal: Signal): MessageType;
export function decodeBatch(signal: 'traces', bytes: Uint8Array): ExportTraceServiceRequest;
export function decodeBatch(signal: 'metrics', bytes: Uint8Array): ExportMetricsServiceRequest;
export function decodeBatch(signal: 'logs', bytes: Uint8Array): ExportLogsServiceRequest;
export function encodeBatch(signal: Signal, batch: object): Uint8Array;
export function fromJson(type: MessageType, json: unknown): any;
export function toJson(type: MessageType, obj: object): any;
export const SpanKind: Readonly<{ UNSPECIFIED: 0; INTERNAL: 1; SERVER: 2; CLIENT: 3; PRODUCER: 4; CONSUMER: 5 }>;
export const StatusCode: Readonly<{ UNSET: 0; OK: 1; ERROR: 2 }>;
export const AggregationTemporality: Readonly<{ UNSPECIFIED: 0; DELTA: 1; CUMULATIVE: 2 }>;
export const SeverityNumber: Readonly<{ UNSPECIFIED: 0; TRACE: 1; DEBUG: 5; INFO: 9; WARN: 13; ERROR: 17; FATAL: 21 }>;
