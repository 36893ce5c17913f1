//! Version, commit and build date, fixed at compile time by `build.rs`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("SLUICE_GIT_COMMIT");
pub const BUILD_DATE: &str = env!("SLUICE_BUILD_DATE");

/// The text `sluice --version` prints.
pub fn long_version() -> &'static str {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("SLUICE_GIT_COMMIT"),
        ", built ",
        env!("SLUICE_BUILD_DATE"),
        ")"
    )
}
