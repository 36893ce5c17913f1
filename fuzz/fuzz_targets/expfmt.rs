//! The Prometheus exposition parser (text 0.0.4 and OpenMetrics 1.0): a scrape body never
//! panics, and what it yields is bounded by the body (every returned string comes from bytes of
//! its own) and by the scrape limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::scrape::expfmt::parse;
use sluice_core::scrape::expfmt::Family;
use sluice_core::scrape::expfmt::Format;
use sluice_core::scrape::expfmt::Limits;

const SMALL: Limits = Limits {
    max_samples: 16,
    max_labels: 4,
    max_label_name_len: 16,
    max_label_value_len: 64,
};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Text, Format::OpenMetrics] {
        for limits in [Limits::default(), SMALL] {
            if let Ok(families) = parse(data, format, &limits) {
                check(&families, data, &limits);
            }
        }
    }
});

fn check(families: &[Family], data: &[u8], limits: &Limits) {
    // Each family and each sample comes from a line of its own.
    let lines = data.split(|&b| b == b'\n').count();
    assert!(families.len() <= lines);
    let mut samples = 0;
    let mut bytes = 0;
    for family in families {
        bytes += family.help.as_ref().map_or(0, String::len);
        bytes += family.unit.as_ref().map_or(0, String::len);
        for sample in &family.samples {
            samples += 1;
            bytes += sample.name.len();
            if limits.max_labels != 0 {
                assert!(sample.labels.len() <= limits.max_labels);
            }
            for (name, value) in &sample.labels {
                bytes += name.len() + value.len();
                if limits.max_label_name_len != 0 {
                    assert!(name.len() <= limits.max_label_name_len);
                }
                if limits.max_label_value_len != 0 {
                    assert!(value.len() <= limits.max_label_value_len);
                }
            }
            if let Some(exemplar) = &sample.exemplar {
                for (name, value) in &exemplar.labels {
                    bytes += name.len() + value.len();
                }
            }
        }
    }
    assert!(samples <= lines);
    if limits.max_samples != 0 {
        assert!(samples <= limits.max_samples);
    }
    assert!(bytes <= data.len());
}
