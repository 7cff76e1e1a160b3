//! Spot trading in `tallyctl`: assets, accounts, deposits, withdrawals,
//! transfers, holds (order locks) and fills, cut like every product area
//! into their command line ([`args`]), execution ([`run`]) and output
//! ([`render`]).

pub mod args;
pub mod render;
pub mod run;
