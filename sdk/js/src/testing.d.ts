import type * as O from './otlp.js';
import type { Plugin, Verdict, Level } from './index.js';

export class MockHost {
  constructor(options?: { now?: bigint | number });
  logs: { level: Level; msg: string }[];
  emitted: { signal: O.Signal; bytes: Uint8Array; batch: any }[];
  time: bigint;
  now(): bigint;
  setNow(ns: bigint | number): void;
  takeLogs(): { level: Level; msg: string }[];
  takeEmitted(): { signal: O.Signal; bytes: Uint8Array; batch: any }[];
  install(): this;
}
export function mockHost(options?: { now?: bigint | number }): MockHost;
export function traces(names: string[]): O.ExportTraceServiceRequest;
export function logs(bodies: string[]): O.ExportLogsServiceRequest;
export function instantiate<P extends Plugin>(pluginClass: new (config: any) => P, configText?: string): P;
export function run(plugin: Plugin, signal: O.Signal, batch: object): {
  verdict: Verdict | undefined; kind: 'unchanged' | 'keep' | 'modified'; indices: number[] | null; output: any;
};
