//! Scraping Prometheus targets, the parts that need no I/O: the exposition parser
//! ([`expfmt`], text 0.0.4 and OpenMetrics 1.0), relabeling ([`relabel`]), and the mapping of a
//! scrape to OTLP metrics ([`otlp`]). The gateway's `receivers/prometheus` schedules the
//! scrapes and feeds the bodies through these.

pub mod expfmt;
pub mod otlp;
pub mod relabel;
