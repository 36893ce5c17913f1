//! Per-record helpers: write a filter or a map as a plain function over one record; the helper
//! walks the batch and produces the verdict (still one call per batch across the boundary).

use crate::Verdict;
use crate::otlp::collector::logs::v1::ExportLogsServiceRequest;
use crate::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
use crate::otlp::common::v1::InstrumentationScope;
use crate::otlp::logs::v1::LogRecord;
use crate::otlp::metrics::v1::{Metric, metric::Data};
use crate::otlp::resource::v1::Resource;
use crate::otlp::trace::v1::Span;

fn keep_verdict(kept: Vec<u32>, total: usize) -> Verdict {
    if kept.len() == total {
        Verdict::Unchanged
    } else {
        Verdict::Keep(kept)
    }
}

/// Keeps the spans for which `keep` returns true.
pub fn keep_spans(
    batch: &ExportTraceServiceRequest,
    mut keep: impl FnMut(Option<&Resource>, Option<&InstrumentationScope>, &Span) -> bool,
) -> Verdict {
    let mut kept = Vec::new();
    let mut i = 0u32;
    for rs in &batch.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                if keep(rs.resource.as_ref(), ss.scope.as_ref(), span) {
                    kept.push(i);
                }
                i += 1;
            }
        }
    }
    keep_verdict(kept, i as usize)
}

/// Keeps the log records for which `keep` returns true.
pub fn keep_logs(
    batch: &ExportLogsServiceRequest,
    mut keep: impl FnMut(Option<&Resource>, Option<&InstrumentationScope>, &LogRecord) -> bool,
) -> Verdict {
    let mut kept = Vec::new();
    let mut i = 0u32;
    for rl in &batch.resource_logs {
        for sl in &rl.scope_logs {
            for log in &sl.log_records {
                if keep(rl.resource.as_ref(), sl.scope.as_ref(), log) {
                    kept.push(i);
                }
                i += 1;
            }
        }
    }
    keep_verdict(kept, i as usize)
}

/// Keeps whole metrics (all their data points) for which `keep` returns true.
pub fn keep_data_points(
    batch: &ExportMetricsServiceRequest,
    mut keep: impl FnMut(Option<&Resource>, &Metric) -> bool,
) -> Verdict {
    let mut kept = Vec::new();
    let mut i = 0u32;
    for rm in &batch.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let n = match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.len(),
                    Some(Data::Sum(s)) => s.data_points.len(),
                    Some(Data::Histogram(h)) => h.data_points.len(),
                    Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                    Some(Data::Summary(s)) => s.data_points.len(),
                    None => 0,
                } as u32;
                if keep(rm.resource.as_ref(), m) {
                    kept.extend(i..i + n);
                }
                i += n;
            }
        }
    }
    keep_verdict(kept, i as usize)
}

/// Applies `f` to every span; `f` returns whether it changed the span.
pub fn map_spans(
    batch: &mut ExportTraceServiceRequest,
    mut f: impl FnMut(&mut Span) -> bool,
) -> Verdict {
    let mut changed = false;
    for rs in &mut batch.resource_spans {
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                changed |= f(span);
            }
        }
    }
    if changed {
        Verdict::Modified
    } else {
        Verdict::Unchanged
    }
}

/// Applies `f` to every log record; `f` returns whether it changed the record.
pub fn map_logs(
    batch: &mut ExportLogsServiceRequest,
    mut f: impl FnMut(&mut LogRecord) -> bool,
) -> Verdict {
    let mut changed = false;
    for rl in &mut batch.resource_logs {
        for sl in &mut rl.scope_logs {
            for log in &mut sl.log_records {
                changed |= f(log);
            }
        }
    }
    if changed {
        Verdict::Modified
    } else {
        Verdict::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn keep_spans_reports_indices_or_unchanged() {
        let batch = testing::traces(&["a", "health", "b"]);
        assert_eq!(
            keep_spans(&batch, |_, _, s| s.name != "health"),
            Verdict::Keep(vec![0, 2])
        );
        assert_eq!(keep_spans(&batch, |_, _, _| true), Verdict::Unchanged);
    }

    #[test]
    fn map_logs_reports_modification() {
        let mut batch = testing::logs(&["x", "y"]);
        assert_eq!(map_logs(&mut batch, |_| false), Verdict::Unchanged);
        assert_eq!(
            map_logs(&mut batch, |l| {
                l.severity_text = "INFO".into();
                true
            }),
            Verdict::Modified
        );
    }
}
