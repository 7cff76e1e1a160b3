//! No lost acknowledged write, no double apply: each node's final balance of
//! every account must be explained by the history.
//!
//! For an account, let `known` be the sum of its acknowledged writes (each
//! distinct command id once) and `unknown` the amounts of its writes with
//! unknown outcome. The final balance must equal `known + s` for a sum `s`
//! of some subset of `unknown`, each used at most once. An acknowledged
//! write missing from the node, or applied twice, breaks this (unless an
//! unknown subset happens to match, which the workloads make unlikely by
//! using unique random amounts). This is checked per account (a necessary
//! condition; a transfer's two legs are not forced to agree), with the set
//! of reachable subset sums bounded: past the bound the verdict is Unknown.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::checker::{Verdict, first_few};
use crate::history::{Func, Op, Outcome};

/// Bound on distinct subset sums tracked per account.
pub const MAX_SUBSET_SUMS: usize = 2_000_000;

/// What the history says about one account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountWrites {
    /// Sum of acknowledged writes.
    pub known: i64,
    /// Amounts of writes with unknown outcome.
    pub unknown: Vec<i64>,
}

/// The writes of `workloads` per account. Ops sharing a command id are one
/// logical write: acknowledged if any attempt was `ok`, else unknown if any
/// was `info`, else (all `fail`) absent.
pub fn account_writes(ops: &[Op], workloads: &[&str]) -> BTreeMap<u64, AccountWrites> {
    // command id -> (legs, best outcome)
    let mut logical: BTreeMap<String, (Vec<(u64, i64)>, Outcome)> = BTreeMap::new();
    let mut anonymous = 0u64;
    for op in ops {
        if !workloads.contains(&op.workload()) {
            continue;
        }
        let i = &op.invoke;
        let amount = i.amount.unwrap_or(0);
        let legs = match i.f {
            Func::Deposit => vec![(i.account.unwrap_or(0), amount)],
            Func::Transfer => vec![(i.from.unwrap_or(0), -amount), (i.to.unwrap_or(0), amount)],
            _ => continue,
        };
        let id = i.command_id.clone().unwrap_or_else(|| {
            anonymous += 1;
            format!("<anonymous {anonymous}>")
        });
        let entry = logical.entry(id).or_insert((legs, Outcome::Fail));
        entry.1 = match (entry.1, op.outcome) {
            (Outcome::Ok, _) | (_, Outcome::Ok) => Outcome::Ok,
            (Outcome::Info, _) | (_, Outcome::Info) => Outcome::Info,
            _ => Outcome::Fail,
        };
    }
    let mut out: BTreeMap<u64, AccountWrites> = BTreeMap::new();
    for (legs, outcome) in logical.into_values() {
        for (account, delta) in legs {
            let w = out.entry(account).or_default();
            match outcome {
                Outcome::Ok => w.known = w.known.saturating_add(delta),
                Outcome::Info => w.unknown.push(delta),
                Outcome::Fail => {}
            }
        }
    }
    out
}

/// Every subset sum of `amounts`, or `None` past `max` distinct sums.
pub fn subset_sums(amounts: &[i64], max: usize) -> Option<HashSet<i64>> {
    let mut sums: HashSet<i64> = HashSet::from([0]);
    for &a in amounts {
        let add: Vec<i64> = sums.iter().map(|s| s.saturating_add(a)).collect();
        sums.extend(add);
        if sums.len() > max {
            return None;
        }
    }
    Some(sums)
}

/// Checks each node's final balances (`finals`: node -> account -> balance)
/// against `writes`. An account with writes but no balance on a node counts as 0.
pub fn check(
    writes: &BTreeMap<u64, AccountWrites>,
    finals: &BTreeMap<String, BTreeMap<u64, i64>>,
) -> Verdict {
    if finals.is_empty() {
        return Verdict::Unknown("no node's final state could be read".to_string());
    }
    let mut problems = Vec::new();
    let mut undecided = Vec::new();
    let mut checked = 0usize;
    let mut sums_cache: BTreeMap<u64, Option<HashSet<i64>>> = BTreeMap::new();
    for (node, balances) in finals {
        let accounts: BTreeSet<u64> = writes.keys().copied().collect();
        for account in accounts {
            let w = &writes[&account];
            let actual = balances.get(&account).copied().unwrap_or(0);
            let extra = actual.saturating_sub(w.known);
            if w.unknown.is_empty() {
                checked += 1;
                if extra != 0 {
                    problems.push(explain(node, account, actual, w, extra));
                }
                continue;
            }
            let sums = sums_cache
                .entry(account)
                .or_insert_with(|| subset_sums(&w.unknown, MAX_SUBSET_SUMS));
            match sums {
                Some(sums) => {
                    checked += 1;
                    if !sums.contains(&extra) {
                        problems.push(explain(node, account, actual, w, extra));
                    }
                }
                None => undecided.push(format!(
                    "{node} account {account}: {} unknown writes",
                    w.unknown.len()
                )),
            }
        }
    }
    if !problems.is_empty() {
        Verdict::Invalid(format!(
            "{} accounts not explained by the history: {}",
            problems.len(),
            first_few(&problems, 5)
        ))
    } else if !undecided.is_empty() {
        Verdict::Unknown(format!(
            "too many unknown writes to decide: {}",
            first_few(&undecided, 5)
        ))
    } else {
        Verdict::Valid(format!(
            "{checked} (node, account) final balances explained by acknowledged plus unknown writes"
        ))
    }
}

fn explain(node: &str, account: u64, actual: i64, w: &AccountWrites, extra: i64) -> String {
    let what = if w.unknown.is_empty() && extra < 0 {
        "an acknowledged write is lost"
    } else if w.unknown.is_empty() {
        "a write was applied twice or out of nowhere"
    } else {
        "no subset of the unknown writes (each at most once) explains it: a lost or doubled write"
    };
    format!(
        "{node} account {account}: balance {actual}, acknowledged writes sum to {}, {} unknown writes {:?}: {what}",
        w.known,
        w.unknown.len(),
        &w.unknown[..w.unknown.len().min(8)]
    )
}
