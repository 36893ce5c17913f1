//! Config files: parsing and validating any text answers with errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::config::{Config, Overrides};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_yaml(text, "fuzz", &Overrides::default());
    }
});
