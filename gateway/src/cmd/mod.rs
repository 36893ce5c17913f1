//! The `sluice` command: its arguments ([`cli`]) and the `loadgen` subcommand ([`loadgen`]).
//! Compiled into the binary only; the library (`sluice`) holds the gateway itself.

pub mod cli;
pub mod loadgen;
