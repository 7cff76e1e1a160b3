//! The bank checker: a fixed set of accounts is funded once; afterwards only
//! transfers between them happen, so every consistent read of all balances
//! must sum to the funded total, and no available balance may be negative.
//! The same holds for each node's final state.

use std::collections::BTreeMap;

use crate::checker::{Verdict, first_few};
use crate::history::{Func, Op, Outcome};

/// Checks every successful bank read, and each node's final balances
/// (`finals`: node -> account -> available) when given.
pub fn check(
    ops: &[Op],
    accounts: &[u64],
    total: i64,
    finals: &BTreeMap<String, BTreeMap<u64, i64>>,
) -> Verdict {
    let mut problems = Vec::new();
    let mut reads = 0usize;
    for op in ops
        .iter()
        .filter(|o| o.workload() == "bank" && o.f() == Func::BankRead && o.outcome == Outcome::Ok)
    {
        let Some(balances) = op.complete.as_ref().and_then(|c| c.balances.as_ref()) else {
            problems.push(format!("{}: no balances recorded", op.describe()));
            continue;
        };
        reads += 1;
        problems.extend(
            check_balances(balances, accounts, total)
                .into_iter()
                .map(|p| format!("{}: {p}", op.describe())),
        );
    }
    for (node, balances) in finals {
        problems.extend(
            check_balances(balances, accounts, total)
                .into_iter()
                .map(|p| format!("final state of {node}: {p}")),
        );
    }
    if problems.is_empty() {
        Verdict::Valid(format!(
            "{reads} reads and {} final states sum to {total}, none negative",
            finals.len()
        ))
    } else {
        Verdict::Invalid(format!(
            "{} problems: {}",
            problems.len(),
            first_few(&problems, 5)
        ))
    }
}

fn check_balances(balances: &BTreeMap<u64, i64>, accounts: &[u64], total: i64) -> Vec<String> {
    let mut problems = Vec::new();
    let mut sum: i64 = 0;
    for account in accounts {
        match balances.get(account) {
            Some(&v) => {
                sum = sum.saturating_add(v);
                if v < 0 {
                    problems.push(format!("account {account} is negative ({v})"));
                }
            }
            None => problems.push(format!("account {account} missing")),
        }
    }
    if sum != total {
        problems.push(format!("total is {sum}, expected {total} ({balances:?})"));
    }
    problems
}
