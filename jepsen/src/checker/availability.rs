//! The `availability` checker: write availability per fault kind, against
//! configured bounds.
//!
//! Built on [`super::unavailability`] (the per-fault report): per fault kind
//! (`kill`, `partition-leader`, `loss`, ...) it takes the longest write gap
//! of any of that kind's faults (the per-fault figure: from the fault's
//! start, over the fault and the [`SETTLE_NS`] after its heal), and the time
//! without a successful write inside that kind's windows (fault plus
//! settle), as a share of the run. Time outside every fault window is the
//! kind [`HEALTHY`]. A gap between two successful write completions counts
//! as unavailable time only when it is longer than the gap threshold (at
//! 30 ops/s a healthy run has gaps of tens of ms; those are not outages).
//!
//! The run's span is from the first client invocation to the last client
//! event, so an outage at the end of the run counts too.
//!
//! With no bound configured the checker is not run (the figures are still
//! in results.txt); with bounds, any one exceeded makes it **invalid**.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::str::FromStr;

use super::Verdict;
use super::unavailability::{self, FaultUnavailability, SETTLE_NS};
use crate::history::{FaultWindow, Op};

/// The pseudo fault kind of the time outside every fault window (and its settle time).
pub const HEALTHY: &str = "healthy";

/// Default gap threshold: gaps between successful writes up to this long
/// are not counted as unavailable time.
pub const DEFAULT_GAP_THRESHOLD_MS: u64 = 250;

/// A bound for the whole run and/or for single fault kinds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits<T> {
    /// Bound on the whole run (a bare number on the command line).
    pub run: Option<T>,
    /// Bounds per fault kind (`KIND=VALUE`).
    pub kinds: BTreeMap<String, T>,
}

impl<T: Copy> Limits<T> {
    /// True when no bound is set.
    pub fn is_empty(&self) -> bool {
        self.run.is_none() && self.kinds.is_empty()
    }

    /// The bound for `kind`, if any.
    pub fn kind(&self, kind: &str) -> Option<T> {
        self.kinds.get(kind).copied()
    }
}

/// Parses `VALUE`, `KIND=VALUE` or a comma list of them (at most one bare
/// value); kinds must be in `known` (nemesis names and [`HEALTHY`]).
pub fn parse_limits<T>(text: &str, known: &[&str]) -> Result<Limits<T>, String>
where
    T: FromStr + Copy,
    T::Err: std::fmt::Display,
{
    let mut limits = Limits {
        run: None,
        kinds: BTreeMap::new(),
    };
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (kind, value) = match item.split_once('=') {
            Some((k, v)) => (Some(k.trim()), v.trim()),
            None => (None, item),
        };
        let value: T = value
            .parse()
            .map_err(|e| format!("{item:?}: bad value: {e}"))?;
        match kind {
            None if limits.run.is_some() => {
                return Err(format!("{text:?}: more than one bound for the whole run"));
            }
            None => limits.run = Some(value),
            Some(k) if !known.contains(&k) => {
                return Err(format!(
                    "{item:?}: unknown fault kind {k:?}; known: {}",
                    known.join(", ")
                ));
            }
            Some(k) => {
                if limits.kinds.insert(k.to_string(), value).is_some() {
                    return Err(format!("{text:?}: two bounds for {k}"));
                }
            }
        }
    }
    Ok(limits)
}

/// The configured bounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bounds {
    /// Longest write gap (ms): whole run and per kind.
    pub max_gap_ms: Limits<u64>,
    /// Share of the run without successful writes (0..=1): whole run and per kind.
    pub max_share: Limits<f64>,
}

impl Bounds {
    /// True when at least one bound is set (the checker runs).
    pub fn is_set(&self) -> bool {
        !self.max_gap_ms.is_empty() || !self.max_share.is_empty()
    }

    /// One line for results.txt.
    pub fn describe(&self) -> String {
        fn part<T: std::fmt::Display + Copy>(name: &str, l: &Limits<T>, unit: &str) -> String {
            let mut items = Vec::new();
            if let Some(v) = l.run {
                items.push(format!("run {v}{unit}"));
            }
            for (k, v) in &l.kinds {
                items.push(format!("{k} {v}{unit}"));
            }
            if items.is_empty() {
                format!("{name}: none")
            } else {
                format!("{name}: {}", items.join(", "))
            }
        }
        format!(
            "{}; {}",
            part("max write gap", &self.max_gap_ms, " ms"),
            part("max unavailable share", &self.max_share, "")
        )
    }
}

/// Availability of one fault kind.
#[derive(Clone, Debug, PartialEq)]
pub struct KindSummary {
    /// Fault name, or [`HEALTHY`].
    pub kind: String,
    /// Faults of this kind in the run (0 for [`HEALTHY`]).
    pub faults: usize,
    /// Longest write gap of this kind (ms).
    pub longest_gap_ms: u64,
    /// When that gap's fault started (ns; for [`HEALTHY`], when the gap started).
    pub longest_at_ns: u64,
    /// Unavailable time inside this kind's windows (ms).
    pub unavailable_ms: u64,
    /// `unavailable_ms` as a share of the run's span.
    pub share: f64,
}

/// Availability of a whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct Availability {
    /// Gaps up to this long are not unavailable time (ms).
    pub gap_threshold_ms: u64,
    /// The run's span: first client invocation to last client event (ms).
    pub span_ms: u64,
    /// Successful writes.
    pub ok_writes: usize,
    /// Longest gap between successful writes in the whole run (ms).
    pub longest_gap_ms: u64,
    /// When that gap started (ns).
    pub longest_at_ns: u64,
    /// Gaps over the threshold, and their total (ms).
    pub gaps_over_threshold: usize,
    /// Total unavailable time (ms).
    pub unavailable_ms: u64,
    /// `unavailable_ms / span_ms`.
    pub share: f64,
    /// Per fault kind (sorted by name), then [`HEALTHY`].
    pub kinds: Vec<KindSummary>,
}

/// Merges intervals into a sorted list of disjoint ones.
fn union(mut spans: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    spans.retain(|(a, b)| b > a);
    spans.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Length of `[a, b]` inside the disjoint sorted `spans`.
fn overlap(a: u64, b: u64, spans: &[(u64, u64)]) -> u64 {
    spans
        .iter()
        .map(|&(s, e)| e.min(b).saturating_sub(s.max(a)))
        .sum()
}

/// The longest piece of `[a, b]` outside the disjoint sorted `spans`, and where it starts.
fn longest_outside(a: u64, b: u64, spans: &[(u64, u64)]) -> (u64, u64) {
    let mut best = (0, a);
    let mut cursor = a;
    for &(s, e) in spans {
        if e <= cursor {
            continue;
        }
        if s >= b {
            break;
        }
        if s > cursor && s - cursor > best.0 {
            best = (s - cursor, cursor);
        }
        cursor = cursor.max(e);
        if cursor >= b {
            return best;
        }
    }
    if b > cursor && b - cursor > best.0 {
        best = (b - cursor, cursor);
    }
    best
}

/// Computes the availability of a run from its operations, fault windows
/// and the per-fault report ([`unavailability::measure`] of the same).
pub fn summarize(
    ops: &[Op],
    faults: &[FaultWindow],
    per_fault: &[FaultUnavailability],
    gap_threshold_ms: u64,
) -> Availability {
    let client = ops.iter().filter(|o| o.invoke.process.starts_with('c'));
    let start = client.clone().map(|o| o.inv_ns).min().unwrap_or(0);
    // The last client event: a completion (an unknown outcome's too, which
    // `ret_ns` leaves out), else the invocation of an op never completed.
    let end = client
        .map(|o| o.complete.as_ref().map_or(o.inv_ns, |c| c.time_ns))
        .max()
        .unwrap_or(start)
        .max(start);
    let oks = unavailability::ok_write_times(ops);
    let mut points = vec![start];
    points.extend(oks.iter().copied().filter(|&t| t > start && t < end));
    points.push(end);
    let gaps: Vec<(u64, u64)> = points.windows(2).map(|p| (p[0], p[1])).collect();
    let threshold_ns = gap_threshold_ms.saturating_mul(1_000_000);
    let outages: Vec<(u64, u64)> = gaps
        .iter()
        .copied()
        .filter(|(a, b)| b - a > threshold_ns)
        .collect();
    let span_ns = end - start;
    let share = |ns: u64| {
        if span_ns == 0 {
            0.0
        } else {
            ns as f64 / span_ns as f64
        }
    };
    let window = |w: &FaultWindow| (w.start_ns, w.end_ns.saturating_add(SETTLE_NS));

    let mut by_kind: BTreeMap<&str, Vec<&FaultUnavailability>> = BTreeMap::new();
    for u in per_fault {
        by_kind.entry(u.window.fault.as_str()).or_default().push(u);
    }
    let mut kinds = Vec::new();
    for (kind, us) in &by_kind {
        let spans = union(us.iter().map(|u| window(&u.window)).collect());
        let unavailable: u64 = outages.iter().map(|&(a, b)| overlap(a, b, &spans)).sum();
        let worst = us
            .iter()
            .max_by_key(|u| (u.longest_gap_ms, std::cmp::Reverse(u.window.start_ns)));
        kinds.push(KindSummary {
            kind: kind.to_string(),
            faults: us.len(),
            longest_gap_ms: worst.map_or(0, |u| u.longest_gap_ms),
            longest_at_ns: worst.map_or(0, |u| u.window.start_ns),
            unavailable_ms: unavailable / 1_000_000,
            share: share(unavailable),
        });
    }
    let all = union(faults.iter().map(window).collect());
    let healthy_unavailable: u64 = outages
        .iter()
        .map(|&(a, b)| (b - a) - overlap(a, b, &all))
        .sum();
    let (healthy_longest, healthy_at) = gaps
        .iter()
        .map(|&(a, b)| longest_outside(a, b, &all))
        .max_by_key(|&(len, at)| (len, std::cmp::Reverse(at)))
        .unwrap_or((0, start));
    kinds.push(KindSummary {
        kind: HEALTHY.to_string(),
        faults: 0,
        longest_gap_ms: healthy_longest / 1_000_000,
        longest_at_ns: healthy_at,
        unavailable_ms: healthy_unavailable / 1_000_000,
        share: share(healthy_unavailable),
    });
    let (longest, longest_at) = gaps
        .iter()
        .map(|&(a, b)| (b - a, a))
        .max_by_key(|&(len, at)| (len, std::cmp::Reverse(at)))
        .unwrap_or((0, start));
    let unavailable: u64 = outages.iter().map(|(a, b)| b - a).sum();
    Availability {
        gap_threshold_ms,
        span_ms: span_ns / 1_000_000,
        ok_writes: oks.len(),
        longest_gap_ms: longest / 1_000_000,
        longest_at_ns: longest_at,
        gaps_over_threshold: outages.len(),
        unavailable_ms: unavailable / 1_000_000,
        share: share(unavailable),
        kinds,
    }
}

/// The verdict of `a` against `bounds`: invalid iff a bound is exceeded.
pub fn check(a: &Availability, bounds: &Bounds) -> Verdict {
    let mut over = Vec::new();
    let mut within = Vec::new();
    let secs = |ns: u64| ns as f64 / 1e9;
    if let Some(max) = bounds.max_gap_ms.run {
        let line = format!(
            "run: longest gap {} ms at {:.1}s (bound {max} ms)",
            a.longest_gap_ms,
            secs(a.longest_at_ns)
        );
        if a.longest_gap_ms > max {
            over.push(line);
        } else {
            within.push(line);
        }
    }
    if let Some(max) = bounds.max_share.run {
        let line = format!(
            "run: {:.1}% unavailable ({} ms of {} ms; bound {:.1}%)",
            a.share * 100.0,
            a.unavailable_ms,
            a.span_ms,
            max * 100.0
        );
        if a.share > max {
            over.push(line);
        } else {
            within.push(line);
        }
    }
    let kinds: std::collections::BTreeSet<&String> = bounds
        .max_gap_ms
        .kinds
        .keys()
        .chain(bounds.max_share.kinds.keys())
        .collect();
    for kind in kinds {
        let Some(k) = a.kinds.iter().find(|k| &k.kind == kind) else {
            within.push(format!(
                "{kind}: no such fault in the run (bound not exercised)"
            ));
            continue;
        };
        if let Some(max) = bounds.max_gap_ms.kind(kind) {
            let line = format!(
                "{kind}: longest gap {} ms (fault at {:.1}s; bound {max} ms)",
                k.longest_gap_ms,
                secs(k.longest_at_ns)
            );
            if k.longest_gap_ms > max {
                over.push(line);
            } else {
                within.push(line);
            }
        }
        if let Some(max) = bounds.max_share.kind(kind) {
            let line = format!(
                "{kind}: {:.1}% of the run unavailable ({} ms; bound {:.1}%)",
                k.share * 100.0,
                k.unavailable_ms,
                max * 100.0
            );
            if k.share > max {
                over.push(line);
            } else {
                within.push(line);
            }
        }
    }
    if over.is_empty() {
        Verdict::Valid(within.join("; "))
    } else {
        let mut s = format!("bound exceeded: {}", over.join("; "));
        if !within.is_empty() {
            let _ = write!(s, " (within: {})", within.join("; "));
        }
        Verdict::Invalid(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{self, Builder, EventType};

    fn window(fault: &str, start_ms: u64, end_ms: u64) -> FaultWindow {
        FaultWindow {
            fault: fault.into(),
            detail: format!("{fault} of leader n1"),
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
        }
    }

    /// Writes every 50 ms over [0, 30 s) except in the `holes` (ms ranges).
    fn run(holes: &[(u64, u64)]) -> Vec<Op> {
        let mut b = Builder::new();
        let mut t = 0;
        while t < 30_000 {
            if !holes.iter().any(|&(a, z)| t >= a && t < z) {
                b.deposit("register", 1, t as i64 + 1, t, Some((t + 5, EventType::Ok)));
            }
            t += 50;
        }
        history::pair(&b.finish())
    }

    fn gaps(ms: u64) -> Bounds {
        Bounds {
            max_gap_ms: Limits {
                run: Some(ms),
                kinds: BTreeMap::new(),
            },
            ..Bounds::default()
        }
    }

    #[test]
    fn union_overlap_and_outside() {
        let u = union(vec![(5, 10), (0, 3), (8, 12), (20, 20)]);
        assert_eq!(u, vec![(0, 3), (5, 12)]);
        assert_eq!(overlap(2, 6, &u), 2);
        assert_eq!(longest_outside(0, 30, &u), (18, 12));
        assert_eq!(longest_outside(4, 5, &u), (1, 4));
        assert_eq!(longest_outside(6, 9, &u), (0, 6));
    }

    #[test]
    fn a_gap_over_the_bound_is_invalid_and_within_it_valid() {
        // A kill at 10 s; no write completes from 10.0 to 11.5 s.
        let ops = run(&[(10_000, 11_500)]);
        let faults = [window("kill", 10_000, 16_000)];
        let per = unavailability::measure(&ops, &faults);
        let a = summarize(&ops, &faults, &per, DEFAULT_GAP_THRESHOLD_MS);
        // The whole run's longest gap: the last ok before (9.955 s) to the first after.
        assert_eq!(a.longest_gap_ms, 1_550);
        let kill = &a.kinds[0];
        assert_eq!(kill.kind, "kill");
        assert_eq!(kill.faults, 1);
        // From the fault's start (10.0 s) to the first ok after it (11.505 s).
        assert_eq!(kill.longest_gap_ms, 1_505);
        assert!(
            check(&a, &gaps(1_000)).is_invalid(),
            "{:?}",
            check(&a, &gaps(1_000))
        );
        assert!(check(&a, &gaps(2_000)).is_valid());
        // Per kind: kill bounded at 1 s is invalid; a bound for another kind is not.
        let mut per_kind = Bounds::default();
        per_kind.max_gap_ms.kinds.insert("kill".into(), 1_000);
        assert!(check(&a, &per_kind).is_invalid());
        let mut other = Bounds::default();
        other.max_gap_ms.kinds.insert("pause".into(), 100);
        other.max_gap_ms.kinds.insert(HEALTHY.into(), 100);
        let v = check(&a, &other);
        assert!(v.is_valid(), "{v}");
        assert!(v.detail().contains("not exercised"), "{v}");
    }

    #[test]
    fn unavailable_share_is_bounded_and_attributed() {
        // 3 s hole under a partition, 1 s hole while healthy, small gaps elsewhere.
        let ops = run(&[(5_000, 8_000), (25_000, 26_000)]);
        let faults = [window("partition-leader", 5_000, 9_000)];
        let per = unavailability::measure(&ops, &faults);
        let a = summarize(&ops, &faults, &per, DEFAULT_GAP_THRESHOLD_MS);
        assert_eq!(a.gaps_over_threshold, 2);
        assert_eq!(a.unavailable_ms, 3_050 + 1_050);
        let part = a
            .kinds
            .iter()
            .find(|k| k.kind == "partition-leader")
            .unwrap();
        // Only the part of the gap inside the window counts for the fault.
        assert_eq!(part.unavailable_ms, 3_005);
        let healthy = a.kinds.iter().find(|k| k.kind == HEALTHY).unwrap();
        assert_eq!(healthy.unavailable_ms, 1_050 + 45);
        assert_eq!(healthy.longest_gap_ms, 1_050);
        let share = |run: Option<f64>, kind: Option<(&str, f64)>| Bounds {
            max_share: Limits {
                run,
                kinds: kind.map(|(k, v)| (k.to_string(), v)).into_iter().collect(),
            },
            ..Bounds::default()
        };
        // 4.1 s of a ~30 s run: about 13.7%.
        assert!(check(&a, &share(Some(0.10), None)).is_invalid());
        assert!(check(&a, &share(Some(0.20), None)).is_valid());
        assert!(check(&a, &share(None, Some(("partition-leader", 0.05)))).is_invalid());
        assert!(check(&a, &share(None, Some(("partition-leader", 0.15)))).is_valid());
        assert!(check(&a, &share(None, Some((HEALTHY, 0.01)))).is_invalid());
    }

    #[test]
    fn an_outage_at_the_end_counts() {
        let mut ops = run(&[(28_000, 30_000)]);
        // A client still waiting at the end (an unknown write returning at 30 s).
        let mut b = Builder::new();
        b.deposit("register", 2, 7, 29_000, Some((30_000, EventType::Info)));
        ops.extend(history::pair(&b.finish()));
        let a = summarize(&ops, &[], &[], DEFAULT_GAP_THRESHOLD_MS);
        assert_eq!(a.longest_gap_ms, 2_045);
        assert!(check(&a, &gaps(1_000)).is_invalid());
    }

    #[test]
    fn limits_parse() {
        let known = ["kill", "loss", HEALTHY];
        let l: Limits<u64> = parse_limits("2000, kill=1000,loss=500", &known).unwrap();
        assert_eq!(l.run, Some(2000));
        assert_eq!(l.kind("kill"), Some(1000));
        assert_eq!(l.kind("loss"), Some(500));
        assert_eq!(l.kind("pause"), None);
        let s: Limits<f64> = parse_limits("healthy=0.01", &known).unwrap();
        assert_eq!(s.run, None);
        assert!(parse_limits::<u64>("kil=5", &known).is_err());
        assert!(parse_limits::<u64>("1,2", &known).is_err());
        assert!(parse_limits::<u64>("kill=1,kill=2", &known).is_err());
        assert!(parse_limits::<u64>("kill=x", &known).is_err());
        assert!(parse_limits::<u64>("", &known).unwrap().is_empty());
    }
}
