import type * as O from './otlp.js';
export * as otlp from './otlp.js';
export type { Signal } from './otlp.js';

export interface Info { name: string; version: string; signals: O.Signal[]; stateful?: boolean }

export class Verdict {
  readonly kind: 'unchanged' | 'keep' | 'modified';
  readonly indices: readonly number[] | null;
  static unchanged(): Verdict;
  static keep(indices: Iterable<number | bigint>): Verdict;
  static modified(): Verdict;
}

export class Plugin {
  static info: Info;
  constructor(config?: any);
  config: any;
  readonly info: Required<Info>;
  traces(batch: O.ExportTraceServiceRequest): Verdict | undefined | void;
  metrics(batch: O.ExportMetricsServiceRequest): Verdict | undefined | void;
  logs(batch: O.ExportLogsServiceRequest): Verdict | undefined | void;
  tick(nowNs: bigint): void;
  snapshot(): Uint8Array;
  restore(state: Uint8Array): void;
}

export class PluginError extends Error {}
export class ConfigError extends PluginError {}
export class InputError extends PluginError {}
export class InternalError extends PluginError {}

export function describe(pluginClass: typeof Plugin): Required<Info>;
export function parseConfig(text: string): any;
export function checkConfigKeys<T extends object>(config: T, allowed: string[]): T;

export function keepSpans(batch: O.ExportTraceServiceRequest, keep: (resource: O.Resource, scope: O.InstrumentationScope, span: O.Span) => boolean): Verdict;
export function keepLogs(batch: O.ExportLogsServiceRequest, keep: (resource: O.Resource, scope: O.InstrumentationScope, record: O.LogRecord) => boolean): Verdict;
export function keepDataPoints(batch: O.ExportMetricsServiceRequest, keep: (resource: O.Resource, metric: O.Metric, scope: O.InstrumentationScope) => boolean): Verdict;
export function mapSpans(batch: O.ExportTraceServiceRequest, f: (span: O.Span, resource: O.Resource, scope: O.InstrumentationScope) => boolean): Verdict;
export function mapLogs(batch: O.ExportLogsServiceRequest, f: (record: O.LogRecord, resource: O.Resource, scope: O.InstrumentationScope) => boolean): Verdict;
export function dataPoints(metric: O.Metric): object[];

export type AttributeValue = string | boolean | bigint | number | Uint8Array | null | AttributeValue[] | { [key: string]: AttributeValue };
export function getAttribute(attributes: O.KeyValue[], key: string): AttributeValue | undefined;
export function setAttribute(attributes: O.KeyValue[], key: string, value: AttributeValue): O.KeyValue[];
export function removeAttribute(attributes: O.KeyValue[], key: string): number;
export function findAttribute(attributes: O.KeyValue[], key: string): O.KeyValue | undefined;
export function fromAnyValue(value: O.AnyValue | null | undefined): AttributeValue;
export function toAnyValue(value: AttributeValue | undefined): O.AnyValue;
export function keyValue(key: string, value: AttributeValue): O.KeyValue;

export type Level = 'debug' | 'info' | 'warn' | 'error';
export function log(level: Level, msg: string): void;
export function now(): bigint;
export function emit(signal: 'traces', batch: O.Partial64<O.ExportTraceServiceRequest> | Uint8Array): void;
export function emit(signal: 'metrics', batch: O.Partial64<O.ExportMetricsServiceRequest> | Uint8Array): void;
export function emit(signal: 'logs', batch: O.Partial64<O.ExportLogsServiceRequest> | Uint8Array): void;
export const host: Readonly<{ log: typeof log; now: typeof now; emit: typeof emit }>;
