//! Crash points for the recovery tests, in debug builds only: the
//! `TALLY_FAILPOINTS` environment variable (comma-separated `name=n`) makes
//! the process abort (as a `kill -9` would: no cleanup, no flush) at a
//! chosen moment, so a test can crash a node exactly mid-snapshot or
//! mid-log-replay and prove it recovers. Release builds compile every
//! crash point to nothing and only warn when the variable is set.
//!
//! Points:
//! - `snapshot-save-partial=n`: the n-th snapshot this process saves writes
//!   half of its temp file, then aborts (before the rename that would make
//!   it current).
//! - `apply-abort-after-entries=n`: aborts once this process applied its
//!   n-th log entry in memory, before that apply batch is written to
//!   RocksDB (so the batch is lost and must be re-applied from the log).

use std::sync::OnceLock;
#[cfg(debug_assertions)]
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms the crash points.
pub const ENV: &str = "TALLY_FAILPOINTS";

/// A crash point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    SnapshotSavePartial,
    ApplyAbortAfterEntries,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::SnapshotSavePartial => "snapshot-save-partial",
            Point::ApplyAbortAfterEntries => "apply-abort-after-entries",
        }
    }
}

/// The armed points: (point, at which hit it fires).
#[derive(Debug, Default)]
struct Armed {
    points: Vec<(Point, u64)>,
}

/// Parses `name=n,name=n`; unknown names and bad counts are errors.
fn parse(spec: &str) -> Result<Armed, String> {
    let mut armed = Armed::default();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, n) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected name=n"))?;
        let point = [Point::SnapshotSavePartial, Point::ApplyAbortAfterEntries]
            .into_iter()
            .find(|p| p.name() == name.trim())
            .ok_or_else(|| format!("unknown crash point {name:?}"))?;
        let n: u64 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{item:?}: n must be a positive integer"))?;
        armed.points.push((point, n));
    }
    Ok(armed)
}

fn armed() -> &'static Armed {
    static ARMED: OnceLock<Armed> = OnceLock::new();
    ARMED.get_or_init(|| {
        let Ok(spec) = std::env::var(ENV) else {
            return Armed::default();
        };
        if !cfg!(debug_assertions) {
            tracing::warn!("{ENV} is ignored: crash points exist in debug builds only");
            return Armed::default();
        }
        match parse(&spec) {
            Ok(armed) => {
                tracing::warn!(spec = %spec, "crash points armed ({ENV}): this process will abort");
                armed
            }
            Err(e) => {
                tracing::error!(error = %e, "{ENV} refused: no crash point armed");
                Armed::default()
            }
        }
    })
}

/// Reads [`ENV`] now (logging what is armed) rather than at the first hit.
pub fn init() {
    let _ = armed();
}

/// Counts `hits` more hits of `point`; true if the armed count was reached
/// (the caller then does its partial work and calls [`abort`]).
pub fn reached(point: Point, hits: u64) -> bool {
    #[cfg(debug_assertions)]
    {
        static COUNTS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
        let Some(&(_, at)) = armed().points.iter().find(|(p, _)| *p == point) else {
            return false;
        };
        let slot = &COUNTS[point as usize];
        let before = slot.fetch_add(hits, Ordering::Relaxed);
        before < at && before + hits >= at
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = (point, hits, armed());
        false
    }
}

/// Aborts the process at `point` (logged first, so the test can tell).
pub fn abort(point: Point, detail: &str) -> ! {
    tracing::error!(
        point = point.name(),
        detail,
        "crash point reached: aborting"
    );
    eprintln!("crash point {} reached ({detail}): aborting", point.name());
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_armed_points_and_refuses_unknown_names_and_zero_counts() {
        let armed = parse("snapshot-save-partial=2, apply-abort-after-entries=50").expect("parse");
        assert_eq!(
            armed.points,
            vec![
                (Point::SnapshotSavePartial, 2),
                (Point::ApplyAbortAfterEntries, 50)
            ]
        );
        assert!(parse("snapshot-save=1").is_err());
        assert!(parse("apply-abort-after-entries=0").is_err());
        assert!(parse("apply-abort-after-entries").is_err());
        assert!(parse("").expect("empty").points.is_empty());
    }
}
