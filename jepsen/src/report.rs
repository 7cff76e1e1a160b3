//! results.txt: the verdict of each checker, the run's parameters, the
//! operation counts, the write-unavailability report per fault and the
//! availability per fault kind.

use std::fmt::Write;

use crate::checker::Verdict;
use crate::checker::availability::{Availability, Bounds, HEALTHY};
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
    /// Availability per fault kind and the bounds it was checked against.
    pub availability: Option<(Availability, Bounds)>,
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
        if let Some((a, bounds)) = &self.availability {
            render_availability(&mut s, a, bounds);
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

/// The availability table: per fault kind, the longest write gap and the
/// time without successful writes (gaps over the threshold) as a share of
/// the run, with the bounds in force.
fn render_availability(s: &mut String, a: &Availability, bounds: &Bounds) {
    let _ = writeln!(
        s,
        "\nAvailability per fault kind (longest write gap; time in gaps over {} ms between successful writes, inside the kind's faults and the 5 s after each heal)",
        a.gap_threshold_ms
    );
    let _ = writeln!(
        s,
        "----------------------------------------------------------------------------------------------"
    );
    let bound = |gap: Option<u64>, share: Option<f64>| {
        let mut parts = Vec::new();
        if let Some(g) = gap {
            parts.push(format!("gap <= {g} ms"));
        }
        if let Some(sh) = share {
            parts.push(format!("share <= {:.1}%", sh * 100.0));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("  bound: {}", parts.join(", "))
        }
    };
    let _ = writeln!(
        s,
        "{:<18} {:>6} {:>12} {:>16} {:>8}",
        "kind", "faults", "longest gap", "unavailable", "share"
    );
    for k in &a.kinds {
        let faults = if k.kind == HEALTHY {
            "-".to_string()
        } else {
            k.faults.to_string()
        };
        let _ = writeln!(
            s,
            "{:<18} {:>6} {:>9} ms {:>13} ms {:>7.2}%{}",
            k.kind,
            faults,
            k.longest_gap_ms,
            k.unavailable_ms,
            k.share * 100.0,
            bound(
                bounds.max_gap_ms.kind(&k.kind),
                bounds.max_share.kind(&k.kind)
            )
        );
    }
    let _ = writeln!(
        s,
        "{:<18} {:>6} {:>9} ms {:>13} ms {:>7.2}%{}",
        "whole run",
        a.kinds.iter().map(|k| k.faults).sum::<usize>(),
        a.longest_gap_ms,
        a.unavailable_ms,
        a.share * 100.0,
        bound(bounds.max_gap_ms.run, bounds.max_share.run)
    );
    let _ = writeln!(
        s,
        "({} successful writes over {:.1} s; {} gaps over {} ms; longest gap starts at {:.1}s){}",
        a.ok_writes,
        a.span_ms as f64 / 1e3,
        a.gaps_over_threshold,
        a.gap_threshold_ms,
        a.longest_at_ns as f64 / 1e9,
        if bounds.is_set() {
            ""
        } else {
            "\nNo availability bound set (--max-write-gap-ms, --max-unavailable-share): the availability checker did not run."
        }
    );
}
