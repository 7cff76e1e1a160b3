//! Checkers: pure functions from a history (and the nodes' final state) to a
//! [`Verdict`]. Each one is proven to fail on known-bad histories by the
//! unit tests beside it and in `tests/checkers.rs`.
//!
//! * [`linear`]: linearizability of every account as a counter (WGL search).
//! * [`bank`]: every bank read sums to the funded total; nothing negative.
//! * [`final_state`]: no lost acknowledged write, no double apply.
//! * [`idempotence`]: retries with one command id apply at most once.
//! * [`convergence`]: every node ends with the same state hash.
//! * [`unavailability`]: the longest time without a successful write per fault (a report, not a verdict).
//! * [`availability`]: per fault kind, the longest write gap and the share of
//!   the run without writes, against configured bounds (off without bounds).

pub mod availability;
pub mod bank;
pub mod convergence;
pub mod final_state;
pub mod idempotence;
pub mod linear;
pub mod unavailability;

use std::fmt;

/// A checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The property holds (with a summary).
    Valid(String),
    /// The property is violated (with the evidence).
    Invalid(String),
    /// Could not decide within the bounds (never counted as valid).
    Unknown(String),
}

impl Verdict {
    /// True for `Valid`.
    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid(_))
    }
    /// True for `Invalid`.
    pub fn is_invalid(&self) -> bool {
        matches!(self, Verdict::Invalid(_))
    }
    /// `valid`, `INVALID` or `unknown`.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Valid(_) => "valid",
            Verdict::Invalid(_) => "INVALID",
            Verdict::Unknown(_) => "unknown",
        }
    }
    /// The summary or evidence.
    pub fn detail(&self) -> &str {
        match self {
            Verdict::Valid(s) | Verdict::Invalid(s) | Verdict::Unknown(s) => s,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.word(), self.detail())
    }
}

/// Shortens a list of problems for a verdict line.
pub(crate) fn first_few(problems: &[String], n: usize) -> String {
    let mut s = problems
        .iter()
        .take(n)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > n {
        s.push_str(&format!("; ... and {} more", problems.len() - n));
    }
    s
}
