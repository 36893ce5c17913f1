// Per-record helpers: write a filter or a map as a plain function over one record; the helper
// walks the batch and produces the verdict (still one call per batch across the boundary).

import { Verdict } from './verdict.js';

function keepVerdict(kept, total) {
  return kept.length === total ? Verdict.unchanged() : Verdict.keep(kept);
}

/**
 * Keeps the spans for which `keep(resource, scope, span)` returns true: Verdict.keep(indices),
 * or Verdict.unchanged() when every span is kept.
 */
export function keepSpans(batch, keep) {
  const kept = [];
  let i = 0;
  for (const rs of batch.resourceSpans) {
    for (const ss of rs.scopeSpans) {
      for (const span of ss.spans) {
        if (keep(rs.resource, ss.scope, span)) kept.push(i);
        i++;
      }
    }
  }
  return keepVerdict(kept, i);
}

/** Keeps the log records for which `keep(resource, scope, logRecord)` returns true. */
export function keepLogs(batch, keep) {
  const kept = [];
  let i = 0;
  for (const rl of batch.resourceLogs) {
    for (const sl of rl.scopeLogs) {
      for (const record of sl.logRecords) {
        if (keep(rl.resource, sl.scope, record)) kept.push(i);
        i++;
      }
    }
  }
  return keepVerdict(kept, i);
}

/** The data points of a metric (of whichever type it is; [] for a metric without data). */
export function dataPoints(metric) {
  const data =
    metric.gauge ?? metric.sum ?? metric.histogram ?? metric.exponentialHistogram ?? metric.summary;
  return data ? data.dataPoints : [];
}

/**
 * Keeps whole metrics (all their data points) for which `keep(resource, metric, scope)` returns
 * true. Data points are counted in document order: every data point of every metric of every
 * scope of every resource.
 */
export function keepDataPoints(batch, keep) {
  const kept = [];
  let i = 0;
  for (const rm of batch.resourceMetrics) {
    for (const sm of rm.scopeMetrics) {
      for (const metric of sm.metrics) {
        const n = dataPoints(metric).length;
        if (keep(rm.resource, metric, sm.scope)) for (let j = 0; j < n; j++) kept.push(i + j);
        i += n;
      }
    }
  }
  return keepVerdict(kept, i);
}

/** Applies `f(span, resource, scope)` to every span; `f` returns whether it changed the span. */
export function mapSpans(batch, f) {
  let changed = false;
  for (const rs of batch.resourceSpans) {
    for (const ss of rs.scopeSpans) {
      for (const span of ss.spans) if (f(span, rs.resource, ss.scope)) changed = true;
    }
  }
  return changed ? Verdict.modified() : Verdict.unchanged();
}

/** Applies `f(logRecord, resource, scope)` to every log record; `f` returns whether it changed it. */
export function mapLogs(batch, f) {
  let changed = false;
  for (const rl of batch.resourceLogs) {
    for (const sl of rl.scopeLogs) {
      for (const record of sl.logRecords) if (f(record, rl.resource, sl.scope)) changed = true;
    }
  }
  return changed ? Verdict.modified() : Verdict.unchanged();
}
