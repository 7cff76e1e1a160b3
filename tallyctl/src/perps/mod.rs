//! Perpetual futures in `tallyctl`: the `market`, `mark`, `funding`,
//! `perp-fill`, `position`, `margin` and `exposure` subcommands, cut like
//! every product area into their command line ([`args`]), execution
//! ([`run`]) and output ([`render`]).

pub mod args;
pub mod render;
pub mod run;
