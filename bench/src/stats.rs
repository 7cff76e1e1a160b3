//! What a run measured: counters (requests, applied / rejected / unknown
//! commands, fills, reads) and latency HDR histograms, overall and per
//! second of completion time, plus the RSS samples of the node processes.
//!
//! Latencies are recorded in microseconds, one sample per request (a batch
//! of commands is one request). A run with a fault (a follower stopped or
//! restarted) also splits the figures into [`Phase`]s by completion time
//! (at most [`MAX_PHASES`]). Per-second histograms are summarized into a
//! [`SecondRow`] and dropped once their second is over, so memory stays flat
//! however long the run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Largest latency recorded exactly (2 minutes); larger ones saturate.
pub const MAX_LATENCY_US: u64 = 120_000_000;

/// Distinct rejection reasons / error messages kept (the rest are counted as "other").
const MAX_REASONS: usize = 32;

/// Most phases one run is split into (all up, node stopped, resumed, ...).
pub const MAX_PHASES: usize = 8;

/// Completion seconds kept open for late records before being summarized.
const OPEN_SECONDS: u64 = 2;

/// Counts of one request, one second, or the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests completed (with any outcome).
    pub requests: u64,
    /// Requests that failed as a whole (transport error, timeout, refusal).
    pub request_errors: u64,
    /// Commands applied.
    pub applied: u64,
    /// Commands definitely rejected (engine refusal or invalid request).
    pub rejected: u64,
    /// Commands with an unknown outcome (timeout after sending).
    pub unknown: u64,
    /// Fill commands applied.
    pub fills: u64,
    /// Reads answered.
    pub reads: u64,
    /// Reads that failed.
    pub read_errors: u64,
}

impl Counters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counters) {
        self.requests += other.requests;
        self.request_errors += other.request_errors;
        self.applied += other.applied;
        self.rejected += other.rejected;
        self.unknown += other.unknown;
        self.fills += other.fills;
        self.reads += other.reads;
        self.read_errors += other.read_errors;
    }

    /// `self - earlier`, field by field (saturating).
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            requests: self.requests.saturating_sub(earlier.requests),
            request_errors: self.request_errors.saturating_sub(earlier.request_errors),
            applied: self.applied.saturating_sub(earlier.applied),
            rejected: self.rejected.saturating_sub(earlier.rejected),
            unknown: self.unknown.saturating_sub(earlier.unknown),
            fills: self.fills.saturating_sub(earlier.fills),
            reads: self.reads.saturating_sub(earlier.reads),
            read_errors: self.read_errors.saturating_sub(earlier.read_errors),
        }
    }

    /// Operations that count as throughput: applied commands plus answered reads.
    pub fn ops(&self) -> u64 {
        self.applied + self.reads
    }
}

/// The outcome of one request, as the driver reports it.
#[derive(Clone, Debug, Default)]
pub struct RequestOutcome {
    pub counters: Counters,
    /// A rejection reason seen in this request (the first one).
    pub reject_reason: Option<String>,
    /// Why the request failed, if it did.
    pub error: Option<String>,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn of<T: hdrhistogram::Counter>(h: &Histogram<T>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// One row of the per-second table.
#[derive(Clone, Debug, Default)]
pub struct SecondRow {
    /// Seconds since the measurement started (completion time).
    pub second: u64,
    pub counters: Counters,
    pub latency: Percentiles,
    /// VmRSS of each sampled process at the end of this second, in KiB.
    pub rss_kib: Vec<Option<u64>>,
}

/// The requests of a run that completed between `start` and the next
/// phase's start (or the end of the run).
#[derive(Clone, Debug)]
pub struct Phase {
    /// What held during the phase, e.g. `all up` or `node-2 stopped`.
    pub label: String,
    pub start: Instant,
    pub counters: Counters,
    pub latency: Histogram<u64>,
}

/// A phase as the report shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhaseSummary {
    pub label: String,
    /// Seconds since the measurement started when the phase began.
    pub from_s: f64,
    /// Length of the phase in seconds (to the next phase or the last completion).
    pub secs: f64,
    pub counters: Counters,
    pub latency: Percentiles,
}

/// Collects everything a run measures. Shared behind a mutex by the workers
/// (one short lock per request) and the once-a-second monitor.
pub struct Recorder {
    start: Instant,
    pub total: Counters,
    pub latency: Histogram<u64>,
    /// Everything recorded since the monitor's last progress line.
    tick: Histogram<u32>,
    /// Per-second histograms still open, by second.
    open: BTreeMap<u64, (Counters, Histogram<u32>)>,
    /// Summarized seconds, in order.
    pub rows: Vec<SecondRow>,
    /// RSS samples not yet attached to a row, by second.
    rss: BTreeMap<u64, Vec<Option<u64>>>,
    pub last_done: Option<Instant>,
    pub reject_reasons: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Empty unless a fault split the run: the first phase starts at the
    /// measurement's start, each later one where [`Recorder::begin_phase`] put it.
    phases: Vec<Phase>,
}

fn new_histogram<T: hdrhistogram::Counter>(sigfig: u8) -> Histogram<T> {
    // Bounds and precision are constants: construction cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig).expect("valid histogram bounds")
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    if let Some(count) = map.get_mut(key) {
        *count += n;
    } else if map.len() < MAX_REASONS {
        map.insert(key.to_string(), n);
    } else {
        *map.entry("(other)".to_string()).or_default() += n;
    }
}

/// An error message with every run of digits replaced by `N`, so messages
/// that differ only in counts, times or ports are counted together.
pub fn normalize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_digits = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

impl Recorder {
    /// A recorder whose second 0 starts at `start`.
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            total: Counters::default(),
            latency: new_histogram(3),
            tick: new_histogram(2),
            open: BTreeMap::new(),
            rows: Vec::new(),
            rss: BTreeMap::new(),
            last_done: None,
            reject_reasons: BTreeMap::new(),
            errors: BTreeMap::new(),
            phases: Vec::new(),
        }
    }

    /// Names the phase running from the measurement's start (until the
    /// first [`Recorder::begin_phase`]); a run that calls neither has no phases.
    pub fn first_phase(&mut self, label: &str) {
        if self.phases.is_empty() {
            self.phases.push(Phase {
                label: label.to_string(),
                start: self.start,
                counters: Counters::default(),
                latency: new_histogram(3),
            });
        }
    }

    /// Starts a new phase at `at`: requests completing from then on count
    /// in it. Ignored beyond [`MAX_PHASES`] or if `at` is before the last
    /// phase's start.
    pub fn begin_phase(&mut self, label: &str, at: Instant) {
        if self.phases.is_empty() {
            self.first_phase("before");
        }
        let last_start = self.phases.last().map_or(self.start, |p| p.start);
        if self.phases.len() >= MAX_PHASES || at < last_start {
            return;
        }
        self.phases.push(Phase {
            label: label.to_string(),
            start: at,
            counters: Counters::default(),
            latency: new_histogram(3),
        });
    }

    /// Each phase summarized; the last one ends at the last completion (or
    /// its own start, if nothing completed in it).
    pub fn phase_summaries(&self) -> Vec<PhaseSummary> {
        let end = self.last_done.unwrap_or(self.start);
        self.phases
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let until = self
                    .phases
                    .get(i + 1)
                    .map_or(end.max(p.start), |next| next.start);
                PhaseSummary {
                    label: p.label.clone(),
                    from_s: p.start.saturating_duration_since(self.start).as_secs_f64(),
                    secs: until.saturating_duration_since(p.start).as_secs_f64(),
                    counters: p.counters,
                    latency: Percentiles::of(&p.latency),
                }
            })
            .collect()
    }

    /// When the measurement started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records one request completed at `done` after `latency`.
    pub fn record(&mut self, done: Instant, latency: Duration, outcome: &RequestOutcome) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_LATENCY_US);
        self.total.add(&outcome.counters);
        self.latency.saturating_record(us);
        self.tick.saturating_record(us);
        if let Some(phase) = self.phases.iter_mut().rev().find(|p| p.start <= done) {
            phase.counters.add(&outcome.counters);
            phase.latency.saturating_record(us);
        } else if let Some(first) = self.phases.first_mut() {
            // Completed before the measurement started: cannot happen for
            // recorded requests, but never lose one.
            first.counters.add(&outcome.counters);
            first.latency.saturating_record(us);
        }
        let mut second = done.saturating_duration_since(self.start).as_secs();
        // A record racing the monitor lands in the oldest still-open second.
        if let Some(closed) = self.rows.last().map(|r| r.second) {
            second = second.max(closed + 1);
        }
        let (counters, histogram) = self
            .open
            .entry(second)
            .or_insert_with(|| (Counters::default(), new_histogram(2)));
        counters.add(&outcome.counters);
        histogram.saturating_record(us);
        if let Some(reason) = &outcome.reject_reason {
            bump(
                &mut self.reject_reasons,
                reason,
                outcome.counters.rejected.max(1),
            );
        }
        if let Some(error) = &outcome.error {
            bump(&mut self.errors, &normalize(error), 1);
        }
        self.last_done = Some(self.last_done.map_or(done, |d| d.max(done)));
    }

    /// Attaches an RSS sample (one value per sampled process) to `second`.
    pub fn note_rss(&mut self, second: u64, rss_kib: Vec<Option<u64>>) {
        self.rss.insert(second, rss_kib);
    }

    /// Summarizes every second that ended at least `OPEN_SECONDS` before
    /// `now` (all of them when `now` is `None`).
    pub fn close_seconds(&mut self, now: Option<Instant>) {
        let limit = match now {
            Some(now) => now
                .saturating_duration_since(self.start)
                .as_secs()
                .saturating_sub(OPEN_SECONDS),
            None => u64::MAX,
        };
        let next = self.rows.last().map_or(0, |r| r.second + 1);
        let mut second = next;
        while second < limit {
            let open = self.open.remove(&second);
            let rss = self.rss.remove(&second);
            if open.is_none() && rss.is_none() && self.open.is_empty() && self.rss.is_empty() {
                break;
            }
            let (counters, latency) = match open {
                Some((counters, histogram)) => (counters, Percentiles::of(&histogram)),
                None => (Counters::default(), Percentiles::default()),
            };
            self.rows.push(SecondRow {
                second,
                counters,
                latency,
                rss_kib: rss.unwrap_or_default(),
            });
            second += 1;
        }
    }

    /// Percentiles of what was recorded since the last call (for progress lines).
    pub fn take_tick(&mut self) -> Percentiles {
        let p = Percentiles::of(&self.tick);
        self.tick.reset();
        p
    }

    /// Overall latency percentiles.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles::of(&self.latency)
    }

    /// Time from the start to the last completion (at least 1 ms).
    pub fn elapsed(&self) -> Duration {
        self.last_done
            .map_or(Duration::ZERO, |d| d.saturating_duration_since(self.start))
            .max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(applied: u64, fills: u64) -> RequestOutcome {
        RequestOutcome {
            counters: Counters {
                requests: 1,
                applied,
                fills,
                ..Counters::default()
            },
            ..RequestOutcome::default()
        }
    }

    #[test]
    fn per_second_rows_and_totals() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        r.record(start, Duration::from_micros(500), &outcome(3, 1));
        r.record(
            start + Duration::from_millis(1500),
            Duration::from_millis(2),
            &outcome(3, 1),
        );
        r.record(
            start + Duration::from_millis(3200),
            Duration::from_millis(4),
            &outcome(6, 2),
        );
        r.note_rss(1, vec![Some(1024), None]);
        r.close_seconds(Some(start + Duration::from_secs(4)));
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[1].rss_kib, vec![Some(1024), None]);
        r.close_seconds(None);
        let seconds: Vec<u64> = r.rows.iter().map(|row| row.second).collect();
        assert_eq!(seconds, [0, 1, 2, 3]);
        assert_eq!(r.rows[2].counters.requests, 0);
        assert_eq!(r.total.fills, 4);
        assert_eq!(r.total.applied, 12);
        let p = r.percentiles();
        assert_eq!(p.count, 3);
        assert!(p.p50_us >= 1_990 && p.p50_us <= 2_010, "{p:?}");
        assert!(p.max_us >= 3_990);
        // A late record lands after the last closed second.
        r.record(start, Duration::from_millis(1), &outcome(1, 0));
        r.close_seconds(None);
        assert_eq!(r.rows.last().map(|row| row.second), Some(4));
    }

    #[test]
    fn phases_split_records_by_completion_time() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        r.record(start, Duration::from_millis(1), &outcome(3, 1));
        assert!(r.phase_summaries().is_empty(), "no phases without a fault");
        r.first_phase("all up");
        r.record(
            start + Duration::from_millis(500),
            Duration::from_millis(2),
            &outcome(3, 1),
        );
        let stop = start + Duration::from_secs(1);
        r.begin_phase("node-2 stopped", stop);
        // Recorded after the phase began but completed before it: the first phase.
        r.record(
            stop - Duration::from_millis(1),
            Duration::from_millis(3),
            &outcome(3, 1),
        );
        r.record(
            start + Duration::from_millis(3000),
            Duration::from_millis(40),
            &outcome(6, 2),
        );
        // A phase starting before the last one is ignored.
        r.begin_phase("bogus", start);
        let phases = r.phase_summaries();
        assert_eq!(phases.len(), 2);
        assert_eq!(phases[0].label, "all up");
        // The record before `first_phase` is in the totals only.
        assert_eq!(phases[0].counters.requests, 2);
        assert_eq!(phases[0].counters.fills, 2);
        assert_eq!(r.total.requests, 4);
        assert!(
            (phases[0].from_s, phases[0].secs) == (0.0, 1.0),
            "{phases:?}"
        );
        assert_eq!(phases[1].label, "node-2 stopped");
        assert_eq!(phases[1].counters.applied, 6);
        assert_eq!(phases[1].latency.count, 1);
        assert!(phases[1].latency.p50_us >= 39_900, "{phases:?}");
        assert!(
            (phases[1].from_s, phases[1].secs) == (1.0, 2.0),
            "{phases:?}"
        );
        // Bounded: at most MAX_PHASES.
        for i in 0..20 {
            r.begin_phase(&format!("p{i}"), start + Duration::from_secs(4 + i));
        }
        assert_eq!(r.phase_summaries().len(), MAX_PHASES);
    }

    #[test]
    fn errors_are_normalized() {
        assert_eq!(
            normalize("2 attempt(s) in 10001 ms, last: 127.0.0.1:29231: CANCELLED"),
            "N attempt(s) in N ms, last: N.N.N.N:N: CANCELLED"
        );
    }

    #[test]
    fn reasons_are_bounded() {
        let mut r = Recorder::new(Instant::now());
        for i in 0..100 {
            let o = RequestOutcome {
                error: Some(format!("error {}", "x".repeat(i))),
                ..RequestOutcome::default()
            };
            r.record(Instant::now(), Duration::from_micros(1), &o);
        }
        assert_eq!(r.errors.len(), MAX_REASONS + 1);
        assert_eq!(r.errors.get("(other)"), Some(&(100 - MAX_REASONS as u64)));
    }
}
