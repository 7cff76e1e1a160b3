//! The figures a run prints: a text summary with a per-second table, or the
//! same as JSON (`--json`) for scripts; with a fault (`--stop-follower-at-s`,
//! `--restart-node-at-s`), also what it did and the figures of each phase
//! (before, during, after).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::fault::{self, FaultReport};
use crate::rss::{self, Sampled};
use crate::stats::{Counters, Percentiles, PhaseSummary, SecondRow};

/// Everything about one cluster run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One line describing the settings.
    pub title: String,
    /// The settings, for JSON.
    pub settings: Value,
    /// Where the cluster was (one line).
    pub cluster: String,
    pub leader: Option<String>,
    /// The set-up phase: (commands applied, seconds, commands not applied).
    pub setup: Option<(u64, f64, u64)>,
    pub warmup_s: u64,
    /// Seconds from the start of measurement to the last completion.
    pub measured_s: f64,
    pub totals: Counters,
    pub latency: Percentiles,
    pub rows: Vec<SecondRow>,
    pub processes: Vec<Sampled>,
    /// RSS of each process before the measured run (KiB).
    pub rss_before: Vec<Option<u64>>,
    /// RSS of each process after it (KiB).
    pub rss_after: Vec<Option<u64>>,
    pub reject_reasons: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// CPU seconds each process (the nodes, then `tally-bench` itself) used
    /// during the measured run, including its drain.
    pub cpu: Vec<(String, Option<f64>)>,
    /// Free-form extra figures (e.g. accounts per GiB).
    pub notes: Vec<String>,
    /// The fault injected, if any.
    pub fault: Option<FaultReport>,
    /// The run split at the fault's signals (empty without a fault).
    pub phases: Vec<PhaseSummary>,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn rate(n: u64, secs: f64) -> f64 {
    n as f64 / secs.max(1e-9)
}

/// `1234567.8` as `1,234,568`.
pub fn grouped(value: f64) -> String {
    let n = value.round().max(0.0) as u64;
    let digits = n.to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|chunk| std::str::from_utf8(chunk).unwrap_or("?"))
        .collect();
    groups.join(",")
}

/// Milliseconds as `1,234 ms`, or `not within <timeout> s`.
fn milestone(ms: Option<f64>, timeout_s: u64) -> String {
    match ms {
        Some(ms) => format!("{} ms", grouped(ms)),
        None => format!("not within {timeout_s} s"),
    }
}

/// Phase throughput, or 0 for a phase too short to divide by.
fn phase_rate(n: u64, secs: f64) -> f64 {
    if secs < 1e-3 { 0.0 } else { rate(n, secs) }
}

/// The fault lines and the per-phase table of the text report.
fn fault_text(out: &mut String, fault: &FaultReport, phases: &[PhaseSummary]) {
    let node = match (fault.node_id, fault.pid) {
        (Some(id), Some(pid)) => format!("node-{id} (pid {pid})"),
        (Some(id), None) => format!("node-{id}"),
        _ => "no node".to_string(),
    };
    let leader = fault
        .leader_id
        .map_or_else(String::new, |id| format!(", leader node-{id}"));
    let actions: Vec<String> = fault
        .actions
        .iter()
        .map(|(signal, at_s)| format!("{signal} at {at_s:.2} s"))
        .collect();
    let _ = writeln!(
        out,
        "\nfault {}: {node}{leader}: {}",
        fault.kind,
        if actions.is_empty() {
            "nothing sent".to_string()
        } else {
            actions.join(", ")
        }
    );
    if let Some(r) = &fault.restart {
        let from_process = |ms: Option<f64>| match (ms, r.process_ms) {
            (Some(ms), Some(p)) => format!(" ({} ms after it started)", grouped(ms - p)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "restart, from the SIGKILL: new process{} {}; gRPC port answering {}{}; \
             caught up (applied >= {}, the leader's at the kill) {}{}; bounded read \
             (lag <= {} entries) served {}{}; RSS then {} MiB",
            r.new_pid
                .map_or_else(String::new, |pid| format!(" (pid {pid})")),
            milestone(r.process_ms, r.timeout_s),
            milestone(r.port_ms, r.timeout_s),
            from_process(r.port_ms),
            grouped(r.leader_applied_index as f64),
            milestone(r.caught_up_ms, r.timeout_s),
            from_process(r.caught_up_ms),
            fault::BOUNDED_READ_MAX_LAG_ENTRIES,
            milestone(r.bounded_read_ms, r.timeout_s),
            from_process(r.bounded_read_ms),
            rss::mib(r.rss_after_kib),
        );
    }
    if let Some(error) = &fault.error {
        let _ = writeln!(out, "fault error: {error}");
    }
    for note in &fault.notes {
        let _ = writeln!(out, "fault note: {note}");
    }
    if phases.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "phases (by completion time; latency per request in ms):"
    );
    let _ = writeln!(
        out,
        "  {:<20} {:>7} {:>7} {:>10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "phase",
        "from_s",
        "secs",
        "cmd/s",
        "fills/s",
        "reads/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "n",
        "err"
    );
    for p in phases {
        let (c, l) = (&p.counters, &p.latency);
        let _ = writeln!(
            out,
            "  {:<20} {:>7.2} {:>7.2} {:>10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
            p.label,
            p.from_s,
            p.secs,
            grouped(phase_rate(c.applied, p.secs)),
            grouped(phase_rate(c.fills, p.secs)),
            grouped(phase_rate(c.reads, p.secs)),
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us),
            l.count,
            c.request_errors
        );
    }
}

fn fault_json(fault: &FaultReport) -> Value {
    json!({
        "kind": fault.kind,
        "node_id": fault.node_id,
        "pid": fault.pid,
        "leader_id": fault.leader_id,
        "actions": fault.actions.iter().map(|(signal, at_s)| json!({
            "signal": signal, "at_s": at_s,
        })).collect::<Vec<Value>>(),
        "restart": fault.restart.as_ref().map(|r| json!({
            "leader_applied_index": r.leader_applied_index,
            "new_pid": r.new_pid,
            "process_ms": r.process_ms,
            "port_answering_ms": r.port_ms,
            "caught_up_ms": r.caught_up_ms,
            "bounded_read_ms": r.bounded_read_ms,
            "bounded_read_max_lag_entries": fault::BOUNDED_READ_MAX_LAG_ENTRIES,
            "rss_after_kib": r.rss_after_kib,
            "timeout_s": r.timeout_s,
        })),
        "error": fault.error,
        "notes": fault.notes,
    })
}

fn phase_json(p: &PhaseSummary) -> Value {
    let c = &p.counters;
    json!({
        "label": p.label,
        "from_s": p.from_s,
        "secs": p.secs,
        "throughput": {
            "commands_per_s": phase_rate(c.applied, p.secs),
            "fills_per_s": phase_rate(c.fills, p.secs),
            "reads_per_s": phase_rate(c.reads, p.secs),
            "requests_per_s": phase_rate(c.requests, p.secs),
        },
        "totals": counters_json(c),
        "latency": percentiles_json(&p.latency),
    })
}

fn percentiles_json(p: &Percentiles) -> Value {
    json!({
        "count": p.count,
        "p50_us": p.p50_us,
        "p90_us": p.p90_us,
        "p99_us": p.p99_us,
        "p999_us": p.p999_us,
        "max_us": p.max_us,
        "mean_us": (p.mean_us * 10.0).round() / 10.0,
    })
}

fn counters_json(c: &Counters) -> Value {
    json!({
        "requests": c.requests,
        "request_errors": c.request_errors,
        "applied": c.applied,
        "rejected": c.rejected,
        "unknown": c.unknown,
        "fills": c.fills,
        "reads": c.reads,
        "read_errors": c.read_errors,
    })
}

impl Report {
    /// Maximum RSS seen per process over the rows and the before/after samples.
    pub fn rss_max(&self) -> Vec<Option<u64>> {
        (0..self.processes.len())
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.rss_kib.get(i).copied().flatten())
                    .chain(self.rss_before.get(i).copied().flatten())
                    .chain(self.rss_after.get(i).copied().flatten())
                    .max()
            })
            .collect()
    }

    /// What CPU time is divided by: fills if any, else applied commands, else reads.
    fn cpu_unit(&self) -> (&'static str, u64) {
        let t = &self.totals;
        if t.fills > 0 {
            ("fill", t.fills)
        } else if t.applied > 0 {
            ("command", t.applied)
        } else {
            ("read", t.reads)
        }
    }

    /// The report as text.
    pub fn text(&self, table: bool) -> String {
        let mut out = String::new();
        let secs = self.measured_s;
        let t = &self.totals;
        let _ = writeln!(out, "tally-bench: {}", self.title);
        let _ = writeln!(out, "cluster: {}", self.cluster);
        if let Some(leader) = &self.leader {
            let _ = writeln!(out, "leader: {leader}");
        }
        if let Some((commands, setup_s, failed)) = self.setup {
            let _ = writeln!(
                out,
                "set-up: {} commands applied in {setup_s:.2} s ({} commands/s), {failed} not applied",
                grouped(commands as f64),
                grouped(rate(commands, setup_s))
            );
        }
        let _ = writeln!(
            out,
            "\nmeasured {secs:.2} s (after {} s warm-up)",
            self.warmup_s
        );
        let _ = writeln!(
            out,
            "throughput: {} commands/s, {} fills/s, {} reads/s, {} requests/s",
            grouped(rate(t.applied, secs)),
            grouped(rate(t.fills, secs)),
            grouped(rate(t.reads, secs)),
            grouped(rate(t.requests, secs)),
        );
        let p = &self.latency;
        let _ = writeln!(
            out,
            "latency per request (ms): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.2}  (n = {})",
            ms(p.p50_us),
            ms(p.p90_us),
            ms(p.p99_us),
            ms(p.p999_us),
            ms(p.max_us),
            p.mean_us / 1000.0,
            p.count
        );
        let _ = writeln!(
            out,
            "outcomes: {} applied ({} fills), {} rejected, {} unknown, {} reads, {} failed requests",
            grouped(t.applied as f64),
            grouped(t.fills as f64),
            grouped(t.rejected as f64),
            grouped(t.unknown as f64),
            grouped(t.reads as f64),
            grouped(t.request_errors as f64),
        );
        for (reason, n) in &self.reject_reasons {
            let _ = writeln!(out, "  rejected {reason}: {n}");
        }
        for (error, n) in &self.errors {
            let _ = writeln!(out, "  error x{n}: {error}");
        }
        if !self.processes.is_empty() {
            let max = self.rss_max();
            for (i, p) in self.processes.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "rss {} (pid {}): before {} MiB, after {} MiB, max {} MiB",
                    p.label,
                    p.pid,
                    rss::mib(self.rss_before.get(i).copied().flatten()),
                    rss::mib(self.rss_after.get(i).copied().flatten()),
                    rss::mib(max.get(i).copied().flatten()),
                );
            }
        }
        if !self.cpu.is_empty() && self.cpu_unit().1 > 0 {
            let (unit, n) = self.cpu_unit();
            let mut line = format!("cpu during the run (s, and us per {unit}):");
            let mut total = 0.0;
            for (label, secs) in &self.cpu {
                match secs {
                    Some(secs) => {
                        total += secs;
                        let per = secs * 1e6 / n.max(1) as f64;
                        let _ = write!(line, "  {label} {secs:.2} ({per:.1})");
                    }
                    None => {
                        let _ = write!(line, "  {label} -");
                    }
                }
            }
            let per = total * 1e6 / n.max(1) as f64;
            let _ = write!(line, "  total {total:.2} ({per:.1})");
            let _ = writeln!(out, "{line}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        if let Some(fault) = &self.fault {
            fault_text(&mut out, fault, &self.phases);
        }
        if table && !self.rows.is_empty() {
            let _ = writeln!(
                out,
                "\nper second (latency in ms, by completion second; RSS in MiB):"
            );
            let mut header = format!(
                "{:>5} {:>10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6}",
                "sec",
                "cmd/s",
                "fills/s",
                "reads/s",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "max",
                "rej",
                "unk",
                "err"
            );
            for p in &self.processes {
                let _ = write!(header, " {:>8}", p.label);
            }
            let _ = writeln!(out, "{header}");
            for row in &self.rows {
                let c = &row.counters;
                let l = &row.latency;
                let mut line = format!(
                    "{:>5} {:>10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6}",
                    row.second,
                    c.applied,
                    c.fills,
                    c.reads,
                    ms(l.p50_us),
                    ms(l.p90_us),
                    ms(l.p99_us),
                    ms(l.p999_us),
                    ms(l.max_us),
                    c.rejected,
                    c.unknown,
                    c.request_errors
                );
                for i in 0..self.processes.len() {
                    let _ = write!(
                        line,
                        " {:>8}",
                        rss::mib(row.rss_kib.get(i).copied().flatten())
                    );
                }
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    /// The report as JSON.
    pub fn json(&self) -> Value {
        let secs = self.measured_s;
        let t = &self.totals;
        let max = self.rss_max();
        let processes: Vec<Value> = self
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({
                    "label": p.label,
                    "pid": p.pid,
                    "rss_before_kib": self.rss_before.get(i).copied().flatten(),
                    "rss_after_kib": self.rss_after.get(i).copied().flatten(),
                    "rss_max_kib": max.get(i).copied().flatten(),
                })
            })
            .collect();
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "second": r.second,
                    "counters": counters_json(&r.counters),
                    "latency": percentiles_json(&r.latency),
                    "rss_kib": r.rss_kib,
                })
            })
            .collect();
        json!({
            "title": self.title,
            "settings": self.settings,
            "cluster": self.cluster,
            "leader": self.leader,
            "setup": self.setup.map(|(commands, seconds, failed)| json!({
                "commands": commands, "seconds": seconds, "not_applied": failed,
            })),
            "warmup_s": self.warmup_s,
            "measured_s": secs,
            "throughput": {
                "commands_per_s": rate(t.applied, secs),
                "fills_per_s": rate(t.fills, secs),
                "reads_per_s": rate(t.reads, secs),
                "requests_per_s": rate(t.requests, secs),
            },
            "totals": counters_json(t),
            "latency": percentiles_json(&self.latency),
            "reject_reasons": self.reject_reasons,
            "errors": self.errors,
            "processes": processes,
            "cpu": {
                "per": self.cpu_unit().0,
                "processes": self.cpu.iter().map(|(label, secs)| json!({
                    "label": label,
                    "cpu_s": secs,
                    "us_per_unit": secs.map(|s| s * 1e6 / self.cpu_unit().1.max(1) as f64),
                })).collect::<Vec<Value>>(),
            },
            "notes": self.notes,
            "fault": self.fault.as_ref().map(fault_json),
            "phases": self.phases.iter().map(phase_json).collect::<Vec<Value>>(),
            "per_second": rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(grouped(0.0), "0");
        assert_eq!(grouped(999.4), "999");
        assert_eq!(grouped(1000.0), "1,000");
        assert_eq!(grouped(1234567.8), "1,234,568");
    }

    #[test]
    fn renders_both_ways() {
        let report = Report {
            title: "spot".into(),
            measured_s: 2.0,
            totals: Counters {
                applied: 300,
                fills: 100,
                requests: 10,
                ..Counters::default()
            },
            processes: vec![Sampled {
                label: "node-1".into(),
                pid: 1,
            }],
            rss_before: vec![Some(1024)],
            rss_after: vec![Some(4096)],
            rows: vec![SecondRow {
                second: 0,
                rss_kib: vec![Some(2048)],
                ..SecondRow::default()
            }],
            ..Report::default()
        };
        let text = report.text(true);
        assert!(text.contains("150 commands/s, 50 fills/s"), "{text}");
        assert!(text.contains("max 4.0 MiB"), "{text}");
        let json = report.json();
        assert_eq!(json["throughput"]["fills_per_s"], json!(50.0));
        assert_eq!(json["processes"][0]["rss_max_kib"], json!(4096));
        assert!(!text.contains("phases"), "{text}");
        assert_eq!(json["fault"], Value::Null);
        assert_eq!(json["phases"], json!([]));
    }

    fn phase(label: &str, from_s: f64, secs: f64, applied: u64, p99_us: u64) -> PhaseSummary {
        PhaseSummary {
            label: label.into(),
            from_s,
            secs,
            counters: Counters {
                applied,
                requests: applied / 10,
                ..Counters::default()
            },
            latency: Percentiles {
                count: applied / 10,
                p50_us: 1_000,
                p90_us: 2_000,
                p99_us,
                p999_us: p99_us * 2,
                max_us: p99_us * 3,
                mean_us: 1_100.0,
            },
        }
    }

    #[test]
    fn renders_the_phases_of_a_stopped_follower_in_text_and_json() {
        let report = Report {
            title: "deposit".into(),
            measured_s: 12.0,
            fault: Some(FaultReport {
                kind: "stop-follower".into(),
                node_id: Some(2),
                pid: Some(4321),
                leader_id: Some(1),
                actions: vec![("SIGSTOP".into(), 5.0), ("SIGCONT".into(), 9.0)],
                ..FaultReport::default()
            }),
            phases: vec![
                phase("all up", 0.0, 5.0, 50_000, 4_000),
                phase("node-2 stopped", 5.0, 4.0, 20_000, 9_500),
                phase("node-2 resumed", 9.0, 3.0, 30_000, 4_500),
            ],
            ..Report::default()
        };
        let text = report.text(false);
        assert!(
            text.contains("fault stop-follower: node-2 (pid 4321), leader node-1: SIGSTOP at 5.00 s, SIGCONT at 9.00 s"),
            "{text}"
        );
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.trim_start().starts_with("node-2") || l.trim_start().starts_with("all up")
            })
            .collect();
        assert_eq!(rows.len(), 3, "{text}");
        // all up: 50,000 commands in 5 s; p99 4 ms, p99.9 8 ms, max 12 ms.
        assert!(
            rows[0].contains("10,000") && rows[0].contains("4.00"),
            "{}",
            rows[0]
        );
        assert!(
            rows[0].contains("8.00") && rows[0].contains("12.00"),
            "{}",
            rows[0]
        );
        // stopped: 20,000 in 4 s, p99 9.5 ms.
        assert!(
            rows[1].contains("5,000") && rows[1].contains("9.50"),
            "{}",
            rows[1]
        );
        assert!(
            rows[2].contains("10,000") && rows[2].contains("4.50"),
            "{}",
            rows[2]
        );
        let json = report.json();
        assert_eq!(json["fault"]["node_id"], json!(2));
        assert_eq!(json["fault"]["actions"][1]["signal"], json!("SIGCONT"));
        assert_eq!(json["fault"]["restart"], Value::Null);
        assert_eq!(json["phases"][1]["label"], json!("node-2 stopped"));
        assert_eq!(
            json["phases"][1]["throughput"]["commands_per_s"],
            json!(5000.0)
        );
        assert_eq!(json["phases"][1]["latency"]["p99_us"], json!(9_500));
        assert_eq!(json["phases"][1]["latency"]["p999_us"], json!(19_000));
        assert_eq!(json["phases"][2]["from_s"], json!(9.0));
    }

    #[test]
    fn renders_restart_timings_and_missed_milestones() {
        let restart = crate::fault::Restart {
            leader_applied_index: 12_345,
            new_pid: Some(999),
            process_ms: Some(15.0),
            port_ms: Some(815.0),
            caught_up_ms: Some(2_015.0),
            bounded_read_ms: None,
            rss_after_kib: Some(2048),
            timeout_s: 60,
        };
        let report = Report {
            fault: Some(FaultReport {
                kind: "restart-node".into(),
                node_id: Some(3),
                pid: Some(111),
                actions: vec![("SIGKILL".into(), 5.0)],
                restart: Some(restart),
                ..FaultReport::default()
            }),
            phases: vec![
                phase("all up", 0.0, 5.0, 100, 1_000),
                phase("node-3 restarting", 5.0, 0.0, 0, 0),
            ],
            ..Report::default()
        };
        let text = report.text(false);
        assert!(text.contains("new process (pid 999) 15 ms"), "{text}");
        assert!(
            text.contains("gRPC port answering 815 ms (800 ms after it started)"),
            "{text}"
        );
        assert!(text.contains("caught up (applied >= 12,345, the leader's at the kill) 2,015 ms (2,000 ms after it started)"), "{text}");
        assert!(text.contains("served not within 60 s"), "{text}");
        assert!(text.contains("RSS then 2.0 MiB"), "{text}");
        assert!(!report.fault.as_ref().is_some_and(FaultReport::ok));
        let json = report.json();
        assert_eq!(json["fault"]["restart"]["port_answering_ms"], json!(815.0));
        assert_eq!(json["fault"]["restart"]["bounded_read_ms"], Value::Null);
        // A phase of zero length has no throughput, not a division by zero.
        assert_eq!(
            json["phases"][1]["throughput"]["commands_per_s"],
            json!(0.0)
        );
    }
}
