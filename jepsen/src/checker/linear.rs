//! Linearizability of each account as a counter register, checked with a
//! Wing–Gong–Lowe search (the algorithm of Knossos and Porcupine).
//!
//! P-compositionality: linearizability is local, so a history is checked one
//! account at a time; each account's sub-history is much smaller than the
//! whole, which is what makes the search feasible.
//!
//! The model: an account's available balance is a counter. A write is
//! `add(d)` (a deposit of `d`, or one leg of a transfer: `-d` for the source,
//! `+d` for the destination); a read must return the sum of every add
//! linearized before it. A `fail`ed op never happened and is dropped; a read
//! with unknown outcome tells nothing and is dropped. A write with unknown
//! outcome (`info`) may take effect at any time after its invocation, or
//! never: its return is placed at +infinity, so it may be linearized
//! anywhere after its invocation, including after every other op (where an
//! add changes nothing any read saw, i.e. "never").
//!
//! The search is bounded in memory (the visited-configuration cache) and
//! time; when a bound is hit the verdict is `Unknown`, never a guess.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::checker::Verdict;
use crate::history::{Func, Op, Outcome};

/// One operation on one counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterOp {
    /// Adds to the counter.
    Add(i64),
    /// Reads the counter (must equal the sum of adds before it).
    Read(i64),
}

/// An operation with its real-time interval (nanoseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    /// The operation.
    pub op: CounterOp,
    /// Invocation time.
    pub inv_ns: u64,
    /// Completion time; `None` when the outcome is unknown (+infinity).
    pub ret_ns: Option<u64>,
    /// Text for verdicts.
    pub label: String,
}

/// Bounds of one search.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes the visited-configuration cache may use, per account.
    pub max_cache_bytes: usize,
    /// Wall-clock budget for the whole history (all accounts).
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_cache_bytes: 512 * 1024 * 1024,
            max_time: Duration::from_secs(120),
        }
    }
}

/// The counter sub-history of every account touched by `ops` in `workloads`
/// (deposits, transfers and single-account reads).
pub fn counter_histories(ops: &[Op], workloads: &[&str]) -> BTreeMap<u64, Vec<Timed>> {
    let mut out: BTreeMap<u64, Vec<Timed>> = BTreeMap::new();
    for op in ops {
        if !workloads.contains(&op.workload()) || op.outcome == Outcome::Fail {
            continue;
        }
        let i = &op.invoke;
        let amount = i.amount.unwrap_or(0);
        let mut push = |account: u64, cop: CounterOp| {
            out.entry(account).or_default().push(Timed {
                op: cop,
                inv_ns: op.inv_ns,
                ret_ns: op.ret_ns,
                label: op.describe(),
            });
        };
        match (i.f, op.outcome) {
            (Func::Deposit, _) => push(i.account.unwrap_or(0), CounterOp::Add(amount)),
            (Func::Transfer, _) => {
                push(i.from.unwrap_or(0), CounterOp::Add(-amount));
                push(i.to.unwrap_or(0), CounterOp::Add(amount));
            }
            (Func::Read, Outcome::Ok) => {
                if let Some(v) = op.value() {
                    push(i.account.unwrap_or(0), CounterOp::Read(v));
                }
            }
            _ => {}
        }
    }
    out
}

/// Checks every account; the verdict is the worst of all accounts
/// (invalid beats unknown beats valid).
pub fn check_accounts(histories: &BTreeMap<u64, Vec<Timed>>, limits: Limits) -> Verdict {
    let deadline = Instant::now() + limits.max_time;
    let mut unknown = Vec::new();
    let mut checked = 0usize;
    let mut ops = 0usize;
    for (account, history) in histories {
        ops += history.len();
        match check_counter(history, limits.max_cache_bytes, deadline) {
            Verdict::Valid(_) => checked += 1,
            Verdict::Invalid(why) => return Verdict::Invalid(format!("account {account}: {why}")),
            Verdict::Unknown(why) => unknown.push(format!("account {account}: {why}")),
        }
    }
    if unknown.is_empty() {
        Verdict::Valid(format!("{checked} accounts, {ops} operations linearizable"))
    } else {
        Verdict::Unknown(format!(
            "{} of {} accounts undecided: {}",
            unknown.len(),
            histories.len(),
            unknown.join("; ")
        ))
    }
}

const NONE: usize = usize::MAX;

/// One WGL search over a single counter's history.
pub fn check_counter(history: &[Timed], max_cache_bytes: usize, deadline: Instant) -> Verdict {
    let n = history.len();
    if n == 0 {
        return Verdict::Valid("empty".to_string());
    }
    // Events: 2 per op. Entry 2*i is the call of op i, 2*i+1 its return.
    // Order by time; at equal times calls first (concurrent, the lenient choice).
    let mut order: Vec<usize> = (0..2 * n).collect();
    let key = |e: usize| -> (u64, u8) {
        let t = &history[e / 2];
        if e.is_multiple_of(2) {
            (t.inv_ns, 0)
        } else {
            (t.ret_ns.unwrap_or(u64::MAX), 1)
        }
    };
    order.sort_by_key(|&e| (key(e), e));
    // Doubly linked list over entries; slot 2n is the head sentinel.
    let head = 2 * n;
    let mut next = vec![NONE; 2 * n + 1];
    let mut prev = vec![NONE; 2 * n + 1];
    let mut last = head;
    for &e in &order {
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, call: usize| {
        for e in [call, call + 1] {
            let (p, nx) = (prev[e], next[e]);
            next[p] = nx;
            if nx != NONE {
                prev[nx] = p;
            }
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, call: usize| {
        for e in [call + 1, call] {
            let (p, nx) = (prev[e], next[e]);
            next[p] = e;
            if nx != NONE {
                prev[nx] = e;
            }
        }
    };

    let words = n.div_ceil(64);
    let entry_bytes = words * 8 + 8 + 32;
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, i64)> = HashSet::new();
    let mut calls: Vec<(usize, i64)> = Vec::new();
    let mut state: i64 = 0;
    let mut entry = next[head];
    let mut steps: u64 = 0;
    let mut best_depth = 0usize;
    let mut stuck_at: Option<usize> = None;
    while next[head] != NONE {
        steps += 1;
        if steps.is_multiple_of(4096) && Instant::now() > deadline {
            return Verdict::Unknown(format!(
                "time limit hit after {steps} steps ({} of {n} ops linearized so far)",
                best_depth
            ));
        }
        if entry == NONE {
            // Cannot happen: a return entry always precedes the end of the list.
            return Verdict::Unknown("search ran off the end of the history".to_string());
        }
        if entry.is_multiple_of(2) {
            let i = entry / 2;
            let (ok, new_state) = match history[i].op {
                CounterOp::Add(d) => (true, state.saturating_add(d)),
                CounterOp::Read(v) => (v == state, state),
            };
            if ok {
                let mut lin = linearized.clone();
                lin[i / 64] |= 1 << (i % 64);
                if !cache.contains(&(lin.clone(), new_state)) {
                    if cache.len().saturating_mul(entry_bytes) > max_cache_bytes {
                        return Verdict::Unknown(format!(
                            "memory bound hit: {} configurations cached ({} of {n} ops linearized so far)",
                            cache.len(),
                            best_depth
                        ));
                    }
                    cache.insert((lin.clone(), new_state));
                    calls.push((entry, state));
                    state = new_state;
                    linearized = lin;
                    lift(&mut next, &mut prev, entry);
                    if calls.len() > best_depth {
                        best_depth = calls.len();
                        stuck_at = None;
                    }
                    entry = next[head];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // Reached a return whose op is not linearized: backtrack.
            if calls.len() == best_depth && stuck_at.is_none() {
                stuck_at = Some(entry / 2);
            }
            let Some((call, old_state)) = calls.pop() else {
                let culprit = stuck_at
                    .map(|i| history[i].label.clone())
                    .unwrap_or_default();
                return Verdict::Invalid(format!(
                    "not linearizable: at most {best_depth} of {n} ops can be linearized; \
                     no order explains {culprit} (the counter held {} at that point in the longest order)",
                    counter_after_prefix(history, best_depth, stuck_at)
                ));
            };
            state = old_state;
            let i = call / 2;
            linearized[i / 64] &= !(1 << (i % 64));
            unlift(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Verdict::Valid(format!("{n} ops"))
}

/// For the message only: the counter value a read would have needed is unknown
/// in general; report the sum of the adds that completed before the stuck op started.
fn counter_after_prefix(history: &[Timed], _depth: usize, stuck: Option<usize>) -> String {
    let Some(s) = stuck else {
        return "?".to_string();
    };
    let inv = history[s].inv_ns;
    let before: i64 = history
        .iter()
        .filter_map(|t| match (t.op, t.ret_ns) {
            (CounterOp::Add(d), Some(r)) if r < inv => Some(d),
            _ => None,
        })
        .sum();
    format!("at least the acknowledged adds {before}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(d: i64, inv: u64, ret: Option<u64>) -> Timed {
        Timed {
            op: CounterOp::Add(d),
            inv_ns: inv,
            ret_ns: ret,
            label: format!("add {d}"),
        }
    }
    fn read(v: i64, inv: u64, ret: u64) -> Timed {
        Timed {
            op: CounterOp::Read(v),
            inv_ns: inv,
            ret_ns: Some(ret),
            label: format!("read {v}"),
        }
    }
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            add(5, 0, Some(10)),
            read(5, 20, 30),
            add(7, 40, Some(50)),
            read(12, 60, 70),
        ];
        assert!(check_counter(&h, 1 << 20, far()).is_valid());
    }

    #[test]
    fn concurrent_read_may_see_either_side() {
        for v in [0, 5] {
            let h = vec![add(5, 0, Some(100)), read(v, 10, 20)];
            assert!(check_counter(&h, 1 << 20, far()).is_valid(), "read {v}");
        }
        let h = vec![add(5, 0, Some(100)), read(4, 10, 20)];
        assert!(check_counter(&h, 1 << 20, far()).is_invalid());
    }

    #[test]
    fn stale_read_is_invalid() {
        // The add completed before the read began; the read missed it.
        let h = vec![add(5, 0, Some(10)), read(0, 20, 30)];
        assert!(check_counter(&h, 1 << 20, far()).is_invalid());
    }

    #[test]
    fn non_monotonic_reads_are_invalid() {
        // Two sequential reads: 5 then 0 with no negative adds.
        let h = vec![add(5, 0, Some(100)), read(5, 10, 20), read(0, 30, 40)];
        assert!(check_counter(&h, 1 << 20, far()).is_invalid());
    }

    #[test]
    fn unknown_add_may_apply_late_or_never() {
        let never = vec![add(5, 0, None), read(0, 10, 20), read(0, 30, 40)];
        assert!(check_counter(&never, 1 << 20, far()).is_valid());
        let late = vec![add(5, 0, None), read(0, 10, 20), read(5, 1_000, 1_010)];
        assert!(check_counter(&late, 1 << 20, far()).is_valid());
        // ...but not before its invocation.
        let early = vec![read(5, 0, 10), add(5, 20, None)];
        assert!(check_counter(&early, 1 << 20, far()).is_invalid());
        // ...and not undone once seen.
        let undone = vec![add(5, 0, None), read(5, 10, 20), read(0, 30, 40)];
        assert!(check_counter(&undone, 1 << 20, far()).is_invalid());
    }

    #[test]
    fn bounds_give_unknown_not_a_verdict() {
        // Many concurrent unknown adds and a read no subset explains: the
        // search space is 2^20; a tiny cache must give up with Unknown.
        let mut h: Vec<Timed> = (0..20).map(|i| add(1 << i, i, None)).collect();
        h.push(read(-1, 100, 200));
        let v = check_counter(&h, 10_000, far());
        assert!(matches!(v, Verdict::Unknown(_)), "{v:?}");
        let v = check_counter(&h, 1 << 30, Instant::now());
        assert!(matches!(v, Verdict::Unknown(_)) || v.is_invalid(), "{v:?}");
    }
}
