//! Client load for cluster tests: tasks that deposit 1 into their own
//! accounts in turn and read one back linearizably every few writes, with
//! counters of what was acknowledged and of every failed request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tally_client::{Client, ReadOptions, WriteResult, commands};

/// What a load runs: `tasks` tasks; task t owns accounts
/// `t*per_task+1 ..= (t+1)*per_task` of `asset`, reads one back every
/// `read_every` writes and pauses `pause_ms` after each write.
#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    pub asset: &'static str,
    pub tasks: u64,
    pub per_task: u64,
    pub read_every: u64,
    pub pause_ms: u64,
}

/// Request counters of a load run.
#[derive(Default)]
pub struct Tally {
    /// Per account: deposits of 1 acknowledged as applied.
    applied: std::sync::Mutex<BTreeMap<u64, u64>>,
    pub rejected: AtomicU64,
    pub unknown: AtomicU64,
    pub read_errors: AtomicU64,
    pub reads: AtomicU64,
    /// The slowest acknowledged write, in milliseconds.
    pub max_write_ms: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failure.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(what);
    }

    /// Acknowledged deposits per account.
    pub fn applied(&self) -> BTreeMap<u64, u64> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn acknowledged(&self) -> u64 {
        self.applied().values().sum()
    }

    /// Panics unless every write was applied and every read answered.
    pub fn assert_no_failures(&self) {
        let (rejected, unknown, read_errors) = (
            self.rejected.load(Ordering::Relaxed),
            self.unknown.load(Ordering::Relaxed),
            self.read_errors.load(Ordering::Relaxed),
        );
        let first = self
            .first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        assert_eq!(
            (rejected, unknown, read_errors),
            (0, 0, 0),
            "failed requests: {rejected} rejected, {unknown} unknown, {read_errors} read errors; first: {first:?}"
        );
    }

    /// Waits (at most 20 s) until `more` writes were acknowledged after now.
    pub async fn wait_progress(&self, more: u64, what: &str) {
        let start = self.acknowledged();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.acknowledged() < start + more {
            assert!(Instant::now() < deadline, "no write progress {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A running load (see the module docs).
pub struct Load {
    stop: Arc<AtomicBool>,
    pub tally: Arc<Tally>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(c: &Client, spec: LoadSpec) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let tasks = (0..spec.tasks)
            .map(|t| {
                let (c, stop, tally) = (c.clone(), stop.clone(), tally.clone());
                tokio::spawn(async move { run_task(c, spec, t, stop, tally).await })
            })
            .collect();
        Load { stop, tally, tasks }
    }

    /// Stops the tasks, asserts that no request failed and reports.
    pub async fn finish(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        self.tally.assert_no_failures();
        eprintln!(
            "{} writes and {} reads, none failed; slowest write {} ms",
            self.tally.acknowledged(),
            self.tally.reads.load(Ordering::Relaxed),
            self.tally.max_write_ms.load(Ordering::Relaxed)
        );
        self.tally
    }
}

async fn run_task(c: Client, spec: LoadSpec, t: u64, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let account = t * spec.per_task + 1 + i % spec.per_task;
        i += 1;
        let sent = Instant::now();
        let result = c.submit(commands::deposit(account, spec.asset, "1")).await;
        let took_ms = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
        tally.max_write_ms.fetch_max(took_ms, Ordering::Relaxed);
        match result {
            WriteResult::Applied { .. } => {
                *tally
                    .applied
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(account)
                    .or_insert(0) += 1;
            }
            WriteResult::Rejected {
                reason, message, ..
            } => tally.fail(
                &tally.rejected,
                format!("deposit rejected: {reason}: {message}"),
            ),
            WriteResult::Unknown { last_error, .. } => {
                tally.fail(&tally.unknown, format!("deposit unknown: {last_error}"))
            }
        }
        if i.is_multiple_of(spec.read_every.max(1)) {
            tally.reads.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = c
                .balance(account, spec.asset, ReadOptions::linearizable())
                .await
            {
                tally.fail(&tally.read_errors, format!("read failed: {e}"));
            }
        }
        if spec.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(spec.pause_ms)).await;
        }
    }
}
