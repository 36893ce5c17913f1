// Shared test data: a batch of each signal using every message type and field kind.
import { create, fromJson } from '../src/otlp.js';

export const METRICS_JSON = {
  resourceMetrics: [
    {
      resource: {
        attributes: [
          { key: 'service.name', value: { stringValue: 'checkout' } },
          { key: 'pi', value: { doubleValue: 3.25 } },
          { key: 'big', value: { intValue: '-9007199254740993' } },
          { key: 'ok', value: { boolValue: true } },
          { key: 'raw', value: { bytesValue: 'AAEC/w==' } },
          { key: 'list', value: { arrayValue: { values: [{ stringValue: 'a' }, { intValue: '1' }] } } },
          { key: 'map', value: { kvlistValue: { values: [{ key: 'k', value: { stringValue: 'v' } }] } } },
        ],
        droppedAttributesCount: 2,
        entityRefs: [{ schemaUrl: 's', type: 'service', idKeys: ['service.name'], descriptionKeys: ['a', 'b'] }],
      },
      schemaUrl: 'https://opentelemetry.io/schemas/1.26.0',
      scopeMetrics: [
        {
          scope: { name: 'meter', version: '1.0', attributes: [{ key: 'x', value: { stringValue: 'y' } }] },
          metrics: [
            {
              name: 'g', unit: '1', description: 'gauge',
              gauge: { dataPoints: [
                { timeUnixNano: '1700000000000000000', asDouble: 0.5, attributes: [{ key: 'a', value: { stringValue: 'b' } }] },
                { timeUnixNano: '1700000000000000001', asInt: '-3', flags: 1,
                  exemplars: [{ timeUnixNano: '5', asInt: '7', spanId: '0102030405060708', traceId: '0102030405060708090a0b0c0d0e0f10',
                    filteredAttributes: [{ key: 'f', value: { stringValue: 'g' } }] }] },
              ] },
            },
            {
              name: 's', metadata: [{ key: 'm', value: { stringValue: 'n' } }],
              sum: { aggregationTemporality: 2, isMonotonic: true, dataPoints: [{ startTimeUnixNano: '1', timeUnixNano: '2', asInt: '0' }] },
            },
            {
              name: 'h',
              histogram: { aggregationTemporality: 1, dataPoints: [
                { count: '6', sum: 0, bucketCounts: ['1', '2', '3'], explicitBounds: [1.5, 10], min: -1, max: 9,
                  exemplars: [{ asDouble: 2.5 }] },
                { count: '0' },
              ] },
            },
            {
              name: 'eh',
              exponentialHistogram: { aggregationTemporality: 2, dataPoints: [
                { count: '10', sum: 12.5, scale: -2, zeroCount: '1', zeroThreshold: 1e-9,
                  positive: { offset: -3, bucketCounts: ['1', '0', '300'] }, negative: { offset: 2, bucketCounts: [] },
                  min: 0.1, max: 4 },
              ] },
            },
            {
              name: 'sm',
              summary: { dataPoints: [
                { count: '3', sum: 7.5, quantileValues: [{ quantile: 0.5, value: 2 }, { quantile: 1, value: 4 }] },
              ] },
            },
            { name: 'empty' },
          ],
        },
      ],
    },
    { scopeMetrics: [{ metrics: [{ name: 'second', gauge: { dataPoints: [{ asDouble: 1 }, { asDouble: 2 }] } }] }] },
  ],
};

export const TRACES_JSON = {
  resourceSpans: [
    {
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'api' } }] },
      scopeSpans: [
        {
          scope: { name: 'http' },
          spans: [
            {
              traceId: '0102030405060708090a0b0c0d0e0f10', spanId: '0102030405060708', parentSpanId: '1112131415161718',
              traceState: 'k=v', flags: 257, name: 'GET /users', kind: 2,
              startTimeUnixNano: '1700000000000000000', endTimeUnixNano: '18446744073709551615',
              attributes: [{ key: 'http.route', value: { stringValue: '/users/{id}' } }, { key: 'unicode', value: { stringValue: 'héllo 🌍' } }],
              droppedAttributesCount: 1,
              events: [{ timeUnixNano: '1', name: 'ev', attributes: [{ key: 'e', value: { intValue: '42' } }], droppedAttributesCount: 3 }],
              droppedEventsCount: 4,
              links: [{ traceId: 'ffffffffffffffffffffffffffffffff', spanId: 'ffffffffffffffff', traceState: 't', flags: 1,
                attributes: [{ key: 'l', value: { boolValue: false } }], droppedAttributesCount: 5 }],
              droppedLinksCount: 6,
              status: { code: 2, message: 'boom' },
            },
            { traceId: '0102030405060708090a0b0c0d0e0f10', spanId: '0102030405060709', name: 'db', kind: 3 },
          ],
        },
        { spans: [{ name: 'other scope' }] },
      ],
    },
    { scopeSpans: [] },
  ],
};

export const LOGS_JSON = {
  resourceLogs: [
    {
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'worker' } }] },
      scopeLogs: [
        {
          scope: { name: 'log' },
          logRecords: [
            { timeUnixNano: '1', observedTimeUnixNano: '2', severityNumber: 9, severityText: 'INFO',
              body: { stringValue: 'hello' }, attributes: [{ key: 'a', value: { doubleValue: -0.5 } }],
              droppedAttributesCount: 1, flags: 1, traceId: '0102030405060708090a0b0c0d0e0f10', spanId: '0102030405060708', eventName: 'e' },
            { body: { kvlistValue: { values: [{ key: 'nested', value: { arrayValue: { values: [{ stringValue: 'x' }] } } }] } } },
            {},
          ],
        },
      ],
    },
  ],
};

export const traces = () => fromJson('ExportTraceServiceRequest', TRACES_JSON);
export const metrics = () => fromJson('ExportMetricsServiceRequest', METRICS_JSON);
export const logs = () => fromJson('ExportLogsServiceRequest', LOGS_JSON);
export { create };

export function hex(bytes) {
  return Buffer.from(bytes).toString('hex');
}
