//! Idempotence: every attempt that shares a command id is the same logical
//! write. At most one attempt may report a fresh apply (`duplicate: false`);
//! once any attempt was applied, no later attempt may be definitely
//! rejected by the engine (a rejection with reason `NOT_SENT` means the
//! attempt never left the client and says nothing).

use std::collections::BTreeMap;

use crate::checker::{Verdict, first_few};
use crate::history::{Op, Outcome};

/// Client-side reason for a command that was never sent.
pub const NOT_SENT: &str = "NOT_SENT";

/// Checks the attempts of every command id of the given workloads.
pub fn check(ops: &[Op], workloads: &[&str]) -> Verdict {
    let mut by_id: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if !workloads.contains(&op.workload()) || !op.f().is_write() {
            continue;
        }
        if let Some(id) = op.invoke.command_id.as_deref() {
            by_id.entry(id).or_default().push(op);
        }
    }
    let mut problems = Vec::new();
    let mut retried = 0usize;
    for (id, attempts) in &by_id {
        if attempts.len() > 1 {
            retried += 1;
        }
        let fresh: Vec<&&Op> = attempts
            .iter()
            .filter(|o| o.outcome == Outcome::Ok && o.duplicate() == Some(false))
            .collect();
        if fresh.len() > 1 {
            problems.push(format!(
                "command {id} applied {} times: {}",
                fresh.len(),
                describe(&fresh)
            ));
        }
        let first_ok = attempts
            .iter()
            .filter(|o| o.outcome == Outcome::Ok)
            .filter_map(|o| o.ret_ns)
            .min();
        if let Some(t) = first_ok {
            let rejected: Vec<&&Op> = attempts
                .iter()
                .filter(|o| {
                    o.outcome == Outcome::Fail
                        && o.inv_ns > t
                        && !o.error().unwrap_or("").contains(NOT_SENT)
                })
                .collect();
            if !rejected.is_empty() {
                problems.push(format!(
                    "command {id} was applied, then a retry was rejected: {}",
                    describe(&rejected)
                ));
            }
        }
    }
    if problems.is_empty() {
        Verdict::Valid(format!(
            "{} command ids ({retried} retried), none applied twice",
            by_id.len()
        ))
    } else {
        Verdict::Invalid(first_few(&problems, 5))
    }
}

fn describe(ops: &[&&Op]) -> String {
    ops.iter()
        .map(|o| o.describe())
        .collect::<Vec<_>>()
        .join(", ")
}
