//! The `sluice` command: its arguments ([`cli`]), the `loadgen` subcommand ([`loadgen`]) and
//! `tap` ([`tap`]).
//! Compiled into the binary only; the library (`sluice`) holds the gateway itself.

pub mod cli;
pub mod loadgen;
pub mod tap;
