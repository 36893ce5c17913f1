//! Prometheus naming, a leaf shared by the config, the Prometheus exporters and the
//! receivers: OTLP to Prometheus names, per the OpenTelemetry specification's "Prometheus and OpenMetrics
//! Compatibility": metric names with unit and `_total` suffixes, and label names.

use std::borrow::Cow;

use serde::Deserialize;

/// How OTLP names become Prometheus names (`translation_strategy`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum TranslationStrategy {
    /// Invalid characters to `_`, unit and `_total` suffixes added (the default).
    #[default]
    UnderscoreEscapingWithSuffixes,
    /// Invalid characters to `_`, no suffixes.
    UnderscoreEscapingWithoutSuffixes,
    /// Names kept as UTF-8 (Prometheus 3 accepts them, quoted), with suffixes.
    NoUTF8EscapingWithSuffixes,
    /// Names kept as they are.
    NoTranslation,
}

impl TranslationStrategy {
    fn escapes(self) -> bool {
        matches!(
            self,
            TranslationStrategy::UnderscoreEscapingWithSuffixes
                | TranslationStrategy::UnderscoreEscapingWithoutSuffixes
        )
    }

    fn suffixes(self) -> bool {
        matches!(
            self,
            TranslationStrategy::UnderscoreEscapingWithSuffixes
                | TranslationStrategy::NoUTF8EscapingWithSuffixes
        )
    }
}

/// What a metric becomes, for the `_total` and `ratio` rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Counter,
    Gauge,
    Other,
}

fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        // Time
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        // Bytes
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "bit" => "bits",
        // SI
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// Drops `{annotations}`; `None` when nothing is left.
fn strip_annotations(unit: &str) -> Cow<'_, str> {
    if !unit.contains('{') {
        return Cow::Borrowed(unit);
    }
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    Cow::Owned(out)
}

/// The Prometheus words for a UCUM unit: `s` -> `seconds`, `m/s` -> `meters_per_second`,
/// `{requests}` -> nothing, `1` -> nothing (`ratio` on gauges is added by the caller).
pub fn unit_suffix(unit: &str) -> String {
    let unit = strip_annotations(unit.trim());
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit.trim(), None),
    };
    let mut words = Vec::new();
    if !main.is_empty() && main != "1" {
        words.push(
            unit_word(main)
                .map(str::to_string)
                .unwrap_or_else(|| sanitize_word(main)),
        );
    }
    if let Some(per) = per.filter(|p| !p.is_empty()) {
        let w = per_unit_word(per)
            .or_else(|| unit_word(per))
            .map(str::to_string)
            .unwrap_or_else(|| sanitize_word(per));
        words.push(format!("per_{w}"));
    }
    words.retain(|w| !w.is_empty());
    words.join("_")
}

fn sanitize_word(word: &str) -> String {
    let s: String = word
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    s.trim_matches('_').to_string()
}

/// A valid Prometheus metric name: runs of invalid characters become one `_`, and a leading
/// digit gets a `_` prefix.
pub fn escape_metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    let mut last_underscore = false;
    for c in name.chars() {
        let valid = c.is_ascii_alphanumeric() || c == '_' || c == ':';
        if valid {
            if c == '_' {
                if last_underscore {
                    continue;
                }
                last_underscore = true;
            } else {
                last_underscore = false;
            }
            out.push(c);
        } else if !last_underscore {
            out.push('_');
            last_underscore = true;
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// The Prometheus metric family name for an OTLP metric.
pub fn metric_name(
    name: &str,
    unit: &str,
    kind: NameKind,
    strategy: TranslationStrategy,
) -> String {
    let mut out = if strategy.escapes() {
        escape_metric_name(name)
    } else {
        name.to_string()
    };
    if !strategy.suffixes() {
        return out;
    }
    let mut suffix = unit_suffix(unit);
    if suffix.is_empty() && unit.trim() == "1" && kind == NameKind::Gauge {
        suffix = "ratio".into();
    }
    // Not doubled: `http.server.duration` with unit `s` -> `..._duration_seconds`, but
    // `process.runtime.seconds` with unit `s` stays.
    if !suffix.is_empty() {
        let tokens: Vec<&str> = out.split('_').collect();
        let suffix_tokens: Vec<&str> = suffix.split('_').collect();
        let already = tokens
            .windows(suffix_tokens.len())
            .any(|w| w == suffix_tokens.as_slice());
        if !already {
            if !out.ends_with('_') {
                out.push('_');
            }
            out.push_str(&suffix);
        }
    }
    if kind == NameKind::Counter {
        if let Some(stripped) = out.strip_suffix("_total") {
            out = stripped.to_string();
        }
        out.push_str("_total");
    }
    out
}

/// A valid label name: invalid characters to `_`, a leading digit gets `key_`.
pub fn label_name(key: &str, strategy: TranslationStrategy) -> String {
    let mut out = String::with_capacity(key.len());
    push_label_name(&mut out, key, strategy);
    out
}

/// [`label_name`], appended to `out` (ingest builds every label of a point in one buffer).
pub fn push_label_name(out: &mut String, key: &str, strategy: TranslationStrategy) {
    if !strategy.escapes() {
        out.push_str(key);
        return;
    }
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push_str("key_");
    } else if key.is_empty() {
        out.push('_');
        return;
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
}

/// Whether a name needs quoting in the exposition (UTF-8 names under Prometheus 3).
pub fn is_legacy_name(name: &str) -> bool {
    // Bytes, not chars: this runs for every label of every sample a scrape renders, and any
    // non-ASCII byte already makes the name non-legacy.
    let b = name.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: TranslationStrategy = TranslationStrategy::UnderscoreEscapingWithSuffixes;

    #[test]
    fn metric_names_follow_the_specification() {
        let cases = [
            (
                "http.server.request.duration",
                "s",
                NameKind::Other,
                "http_server_request_duration_seconds",
            ),
            (
                "http.server.requests",
                "{request}",
                NameKind::Counter,
                "http_server_requests_total",
            ),
            (
                "system.memory.usage",
                "By",
                NameKind::Gauge,
                "system_memory_usage_bytes",
            ),
            ("net.io", "By", NameKind::Counter, "net_io_bytes_total"),
            (
                "cpu.utilization",
                "1",
                NameKind::Gauge,
                "cpu_utilization_ratio",
            ),
            ("queue.items", "1", NameKind::Counter, "queue_items_total"),
            ("speed", "m/s", NameKind::Gauge, "speed_meters_per_second"),
            (
                "throughput",
                "{packet}/s",
                NameKind::Gauge,
                "throughput_per_second",
            ),
            ("temp", "Cel", NameKind::Gauge, "temp_celsius"),
            ("latency", "ms", NameKind::Other, "latency_milliseconds"),
            ("requests_total", "", NameKind::Counter, "requests_total"),
            (
                "process.cpu.seconds",
                "s",
                NameKind::Counter,
                "process_cpu_seconds_total",
            ),
            (
                "disk.io.bytes",
                "By",
                NameKind::Counter,
                "disk_io_bytes_total",
            ),
            ("2xx.count", "", NameKind::Counter, "_2xx_count_total"),
            ("weird..name__x", "", NameKind::Gauge, "weird_name_x"),
            ("memory", "MiBy", NameKind::Gauge, "memory_mebibytes"),
            ("custom", "widgets", NameKind::Gauge, "custom_widgets"),
        ];
        for (name, unit, kind, expected) in cases {
            assert_eq!(
                metric_name(name, unit, kind, S),
                expected,
                "{name} [{unit}]"
            );
        }
        assert_eq!(
            metric_name(
                "http.requests",
                "s",
                NameKind::Counter,
                TranslationStrategy::UnderscoreEscapingWithoutSuffixes
            ),
            "http_requests"
        );
        assert_eq!(
            metric_name(
                "http.requests",
                "s",
                NameKind::Counter,
                TranslationStrategy::NoUTF8EscapingWithSuffixes
            ),
            "http.requests_seconds_total"
        );
    }

    #[test]
    fn label_names() {
        assert_eq!(label_name("http.route", S), "http_route");
        assert_eq!(label_name("9lives", S), "key_9lives");
        assert_eq!(label_name("a-b c", S), "a_b_c");
        assert_eq!(label_name("", S), "_");
        let mut out = String::from("x=");
        push_label_name(&mut out, "k8s.pod", S);
        assert_eq!(out, "x=k8s_pod");
        assert!(is_legacy_name("abc_1:x"));
        assert!(!is_legacy_name("a.b"));
    }
}
