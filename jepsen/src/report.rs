//! results.txt: the verdict of each checker, the run's parameters, the
//! operation counts and the write-unavailability report.

use std::fmt::Write;

use crate::checker::Verdict;
use crate::checker::unavailability::{FaultUnavailability, TARGET_MS, is_leader_fault};
use crate::history::{Op, Outcome};

/// Everything results.txt says.
pub struct Report {
    /// The command line / parameters.
    pub params: String,
    /// (checker name, verdict).
    pub verdicts: Vec<(String, Verdict)>,
    /// Unavailability per fault.
    pub unavailability: Vec<FaultUnavailability>,
    /// Notes (setup problems, nemesis errors).
    pub notes: Vec<String>,
}

impl Report {
    /// True iff every checker said valid.
    pub fn valid(&self) -> bool {
        !self.verdicts.is_empty() && self.verdicts.iter().all(|(_, v)| v.is_valid())
    }

    /// The text.
    pub fn render(&self, ops: &[Op]) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "tally-jepsen results\n====================\n");
        let _ = writeln!(s, "{}\n", self.params);
        let overall = if self.valid() { "VALID" } else { "NOT VALID" };
        let _ = writeln!(s, "Overall: {overall}\n");
        let _ = writeln!(s, "Checkers");
        let _ = writeln!(s, "--------");
        for (name, v) in &self.verdicts {
            let _ = writeln!(s, "{name:<22} {}", v.word());
            let _ = writeln!(s, "{:<22} {}", "", v.detail());
        }
        let _ = writeln!(s, "\nOperations (client processes)");
        let _ = writeln!(s, "-----------------------------");
        let mut counts: std::collections::BTreeMap<(String, String), [u64; 3]> = Default::default();
        for op in ops.iter().filter(|o| o.invoke.process.starts_with('c')) {
            let c = counts
                .entry((op.workload().to_string(), format!("{:?}", op.f())))
                .or_default();
            c[match op.outcome {
                Outcome::Ok => 0,
                Outcome::Fail => 1,
                Outcome::Info => 2,
            }] += 1;
        }
        for ((w, f), [ok, fail, info]) in counts {
            let _ = writeln!(
                s,
                "{w:<12} {f:<10} ok {ok:>7}  fail {fail:>6}  info {info:>6}"
            );
        }
        let _ = writeln!(
            s,
            "\nWrite unavailability per fault (longest gap between successful writes overlapping the fault or the 5 s after its heal; target < {TARGET_MS} ms after a leader kill/isolation)"
        );
        let _ = writeln!(
            s,
            "----------------------------------------------------------------------------------------------"
        );
        let mut worst_leader: Option<u64> = None;
        for u in &self.unavailability {
            let leader = is_leader_fault(&u.window.fault, &u.window.detail);
            if leader {
                worst_leader = Some(worst_leader.unwrap_or(0).max(u.longest_gap_ms));
            }
            let _ = writeln!(
                s,
                "{:>8.1}s..{:>7.1}s {:<17} gap {:>6} ms  first ok after {:>6}  {}{}",
                u.window.start_ns as f64 / 1e9,
                u.window.end_ns as f64 / 1e9,
                u.window.fault,
                u.longest_gap_ms,
                u.first_ok_after_ms
                    .map(|m| format!("{m} ms"))
                    .unwrap_or_else(|| "-".into()),
                u.window.detail,
                if leader && u.longest_gap_ms >= TARGET_MS {
                    "  [over target]"
                } else {
                    ""
                }
            );
        }
        match worst_leader {
            Some(w) => {
                let _ = writeln!(
                    s,
                    "\nWorst write unavailability after a leader kill/pause/isolation: {w} ms (target < {TARGET_MS} ms)"
                );
            }
            None => {
                let _ = writeln!(s, "\nNo leader kill/pause/isolation in this run.");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\nNotes\n-----");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}
