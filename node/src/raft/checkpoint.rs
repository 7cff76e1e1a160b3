//! Ledger checkpoints: the applied state machine written to RocksDB now and
//! then, not on every applied batch. Every command is durable in the Raft
//! log before it is applied, so the ledger records on disk only bound how
//! much log a restart re-applies; writing them per batch paid the disk a
//! second time for every command (a fill changed ~9 records, each a
//! memtable insert, then flushed and compacted).
//!
//! A checkpoint drains the ledger's changed records (each changed record
//! once however often it changed since the last one) with `last_applied`,
//! the membership and the retired node ids into one atomic batch, at an
//! entry boundary. One writer thread writes the batches in the order they
//! were drained, so the store always holds exactly one checkpoint's state.
//! Due after `CHECKPOINT_INTERVAL_MS` or `CHECKPOINT_MAX_RECORDS` changed
//! records, whichever first; forced before a snapshot is built, before a
//! backup, and at shutdown.
//!
//! Recovery: the node opens the last checkpoint and openraft re-applies the
//! committed log entries after its `last_applied` (deterministically, with
//! the same outcomes). Those entries are still in the log: the log is
//! purged only behind a snapshot, and a snapshot is built from a forced
//! checkpoint that the store's WAL (one, recovered as a prefix) holds
//! before the purge. Lock order: `Checkpoints::drain` before the state lock.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rocksdb::{DB, WriteBatch};

use crate::codec;
use crate::metrics::METRICS;
use crate::raft::state_machine::{
    KEY_LAST_APPLIED, KEY_MEMBERSHIP, KEY_RETIRED, SharedState, SmState,
};
use crate::storage::{CF_SM, CF_SM_META, cf, synced, unsynced};

/// Longest time applied state stays only in memory while commands apply.
pub const CHECKPOINT_INTERVAL_MS: u64 = 1_000;
/// Changed records after which a checkpoint is due sooner (checked after
/// every applied entry), before the node's stagger: bounds the drain's
/// time under the state lock (2-50 ms for ~33k records on the loaded
/// 2-core machine) and a batch's memory (~5 MB), plus one entry's changes.
pub const CHECKPOINT_MAX_RECORDS: usize = 32_768;

/// The record bound a node actually uses: `CHECKPOINT_MAX_RECORDS`
/// stretched by 0, 1/4, 2/4 or 3/4 by node id. The replicas change the
/// same records at the same log indexes, so with one bound all three
/// drained and wrote at the same moment (a burst of ~100 ms of CPU on
/// each node at once, on shared cores).
pub fn staggered_max_records(node_id: u64) -> usize {
    CHECKPOINT_MAX_RECORDS + CHECKPOINT_MAX_RECORDS / 4 * (node_id % 4) as usize
}
/// Checkpoints drained but not yet written; a full queue holds the apply
/// path back until the writer catches up.
const CHECKPOINTS_QUEUED: usize = 2;

/// A ledger record changed since the last checkpoint: key, and value
/// (`None`: deleted).
type ChangedRecord = (Box<[u8]>, Option<Box<[u8]>>);

/// One batch for the writer thread.
struct Job {
    batch: WriteBatch,
    applied_index: u64,
    records: usize,
    /// Time the drain held the state lock.
    drain_us: u64,
    /// Fsync the write (a snapshot install); checkpoints are made durable
    /// by the next synced log write, like the log's own purge.
    sync: bool,
    done: Option<SyncSender<Result<(), String>>>,
}

/// The drain side, behind its mutex: drained batches are queued in drain order.
struct Drain {
    jobs: SyncSender<Job>,
    last_at: Instant,
}

/// Checkpoints of one node's state machine (shared by apply, the snapshot
/// builder, backups and shutdown).
pub struct Checkpoints {
    db: Arc<DB>,
    state: SharedState,
    drain: Mutex<Drain>,
    /// This node's record bound (`staggered_max_records`).
    max_records: usize,
    /// The first write error: nothing is written after it and the state
    /// machine stops applying (a restart recovers from the last checkpoint).
    failed: Arc<OnceLock<String>>,
}

fn poisoned() -> io::Error {
    io::Error::other("checkpoint lock poisoned")
}

impl Checkpoints {
    /// Starts the writer thread of `db`'s checkpoints of `state`.
    pub fn start(db: Arc<DB>, state: SharedState) -> Result<Arc<Checkpoints>, io::Error> {
        let (jobs, queue) = sync_channel(CHECKPOINTS_QUEUED);
        let failed = Arc::new(OnceLock::new());
        // Weak: the writer never keeps the database open (RocksDB aborts a
        // process that exits with a database open in another thread).
        let writer_db = Arc::downgrade(&db);
        let writer_failed = failed.clone();
        std::thread::Builder::new()
            .name("tally-checkpoint".into())
            .spawn(move || write_jobs(&writer_db, &queue, &writer_failed))?;
        Ok(Arc::new(Checkpoints {
            db,
            state,
            drain: Mutex::new(Drain {
                jobs,
                last_at: Instant::now(),
            }),
            max_records: staggered_max_records(crate::metrics::node_id()),
            failed,
        }))
    }

    /// The database the checkpoints are written to.
    pub fn db(&self) -> Arc<DB> {
        self.db.clone()
    }

    /// The first checkpoint write error, if one failed.
    pub fn failed(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// Whether a checkpoint is due with `dirty_records` changed records.
    pub fn due(&self, dirty_records: usize) -> Result<bool, io::Error> {
        let drain = self.drain.lock().map_err(|_| poisoned())?;
        Ok(dirty_records >= self.max_records
            || drain.last_at.elapsed() >= Duration::from_millis(CHECKPOINT_INTERVAL_MS))
    }

    /// Whether `dirty_records` changed records reach this node's bound
    /// (checked after every applied entry).
    pub fn over_records(&self, dirty_records: usize) -> bool {
        dirty_records >= self.max_records
    }

    /// Drains the applied state into a checkpoint and queues it; with
    /// `wait`, returns once it is written. The applied index it holds.
    pub fn checkpoint(&self, wait: bool) -> Result<u64, io::Error> {
        let mut drain = self.drain.lock().map_err(|_| poisoned())?;
        let drain_started = Instant::now();
        let sm_cf = cf(&self.db, CF_SM)?;
        let mut batch = WriteBatch::default();
        // Nothing fallible after the drain: drained records not written
        // would be missing from every later checkpoint.
        let (mut changed, applied_index) = {
            let mut st = self.state.write().map_err(|_| poisoned())?;
            put_meta(&self.db, &mut batch, &st)?;
            let mut changed: Vec<ChangedRecord> =
                Vec::with_capacity(st.ledger.dirty_count().min(CHECKPOINT_MAX_RECORDS * 2));
            st.ledger
                .drain_dirty(|key, value| changed.push((key.into(), value.map(Into::into))));
            (changed, st.applied_index())
        };
        drain.last_at = Instant::now();
        let drain_us = drain_started.elapsed().as_micros() as u64;
        // Sorted: the memtable's skip list inserts keys that follow the
        // previous one from where that one went (its "splice"), far cheaper
        // than a fresh search per record.
        changed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, value) in &changed {
            match value {
                Some(v) => batch.put_cf(sm_cf, key, v),
                None => batch.delete_cf(sm_cf, key),
            }
        }
        let records = changed.len();
        drop(changed);
        let sent = self.send(
            &drain,
            batch,
            (applied_index, records, drain_us),
            false,
            wait,
        );
        if let Err(e) = &sent {
            // Drained and not written: no later checkpoint may be written.
            let _ = self.failed.set(e.to_string());
        }
        sent.map(|()| applied_index)
    }

    /// Queues `fill`'s batch behind every checkpoint drained before it and
    /// waits until it is written and fsynced (a snapshot install replacing
    /// the state). `fill` runs with the drain held: no checkpoint of the
    /// state it replaces can be drained after it.
    /// The applied index `fill` returned.
    pub fn replace_state(
        &self,
        fill: impl FnOnce(&mut WriteBatch) -> Result<u64, io::Error>,
    ) -> Result<u64, io::Error> {
        let mut drain = self.drain.lock().map_err(|_| poisoned())?;
        let mut batch = WriteBatch::default();
        let applied_index = fill(&mut batch)?;
        drain.last_at = Instant::now();
        let records = batch.len();
        self.send(&drain, batch, (applied_index, records, 0), true, true)?;
        Ok(applied_index)
    }

    fn send(
        &self,
        drain: &Drain,
        batch: WriteBatch,
        (applied_index, records, drain_us): (u64, usize, u64),
        sync: bool,
        wait: bool,
    ) -> Result<(), io::Error> {
        let (done, written) = if wait {
            let (tx, rx) = sync_channel(1);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let job = Job {
            batch,
            applied_index,
            records,
            drain_us,
            sync,
            done,
        };
        let gone = || io::Error::other("checkpoint writer stopped");
        match drain.jobs.try_send(job) {
            Ok(()) => {}
            // The writer is behind: wait for room (off the async runtime's
            // worker when called from one).
            Err(TrySendError::Full(job)) => {
                block(|| drain.jobs.send(job)).map_err(|_| gone())?;
            }
            Err(TrySendError::Disconnected(_)) => return Err(gone()),
        }
        if let Some(written) = written {
            block(|| written.recv())
                .map_err(|_| gone())?
                .map_err(io::Error::other)?;
        }
        Ok(())
    }
}

/// Runs `f`, which may block, without stalling other tasks of a
/// multi-threaded tokio runtime it is called from.
fn block<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The state machine's metadata written with every checkpoint (not the
/// ledger records, not the published index) into `batch`.
pub(crate) fn put_meta(db: &DB, batch: &mut WriteBatch, st: &SmState) -> Result<(), io::Error> {
    let meta_cf = cf(db, CF_SM_META)?;
    batch.put_cf(meta_cf, KEY_LAST_APPLIED, codec::encode(&st.last_applied)?);
    batch.put_cf(meta_cf, KEY_MEMBERSHIP, codec::encode(&st.membership)?);
    batch.put_cf(meta_cf, KEY_RETIRED, codec::encode(&st.retired_node_ids)?);
    Ok(())
}

/// The writer thread: writes queued batches in order until the drain side
/// is gone; after a failed write it writes nothing more.
fn write_jobs(db: &Weak<DB>, queue: &Receiver<Job>, failed: &OnceLock<String>) {
    for job in queue.iter() {
        let result = match (failed.get(), db.upgrade()) {
            (Some(e), _) => Err(format!("an earlier checkpoint failed: {e}")),
            (None, None) => Err("the database is closed".to_string()),
            (None, Some(db)) => {
                let started = Instant::now();
                let options = if job.sync { synced() } else { unsynced() };
                match db.write_opt(job.batch, &options) {
                    Ok(()) => {
                        METRICS
                            .checkpoint_seconds
                            .observe_duration(started.elapsed());
                        tracing::debug!(
                            index = job.applied_index,
                            records = job.records,
                            drain_us = job.drain_us,
                            write_us = started.elapsed().as_micros() as u64,
                            "checkpoint written"
                        );
                        Ok(())
                    }
                    Err(e) => {
                        let message = format!("checkpoint at index {}: {e}", job.applied_index);
                        tracing::error!(error = %message, "checkpoint write failed; the state machine stops");
                        let _ = failed.set(message.clone());
                        Err(message)
                    }
                }
            }
        };
        if let Some(done) = job.done {
            let _ = done.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::RwLock;

    use openraft::vote::RaftLeaderIdExt;
    use rocksdb::IteratorMode;
    use rust_decimal::Decimal;
    use tally_ledger::{
        Command, CommandId, CreateAccount, CreateAsset, Deposit, Envelope, Ledger, LedgerConfig,
        Outcome,
    };

    use super::*;
    use crate::raft::types::{LogId, StoredMembership};

    fn log_id(index: u64) -> LogId {
        let leader = openraft::impls::leader_id_adv::LeaderId::<u64, u64>::new_committed(1, 1);
        LogId::new(leader, index)
    }

    fn apply(state: &SharedState, index: u64, command: Command) {
        let mut st = state.write().expect("lock");
        let envelope = Envelope {
            command_id: CommandId(format!("c-{index}")),
            command,
        };
        let result = st.ledger.apply(&envelope, index);
        assert!(
            matches!(result.outcome, Outcome::Applied { .. }),
            "{result:?}"
        );
        st.last_applied = Some(log_id(index));
    }

    fn deposit(amount: u32) -> Command {
        Command::Deposit(Deposit {
            account: 1,
            asset: "USD".into(),
            amount: Decimal::from(amount),
        })
    }

    /// The state on disk: the ledger rebuilt from its records (state hash)
    /// and `last_applied`'s index.
    fn on_disk(db: &DB) -> ([u8; 32], u64) {
        let records: Vec<(Vec<u8>, Vec<u8>)> = db
            .iterator_cf(cf(db, CF_SM).expect("cf"), IteratorMode::Start)
            .map(|item| {
                let (k, v) = item.expect("read");
                (k.to_vec(), v.to_vec())
            })
            .collect();
        let ledger = Ledger::from_records(LedgerConfig::default(), records).expect("records");
        let applied: Option<LogId> = db
            .get_cf(cf(db, CF_SM_META).expect("cf"), KEY_LAST_APPLIED)
            .expect("read")
            .map(|b| codec::decode(&b).expect("decode"))
            .unwrap_or(None);
        (ledger.state_hash(), applied.map_or(0, |l| l.index))
    }

    #[test]
    fn a_checkpoint_writes_the_state_applied_at_its_index_and_nothing_applied_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::storage::open_db(dir.path()).expect("db");
        let state: SharedState = Arc::new(RwLock::new(SmState {
            ledger: Ledger::new(LedgerConfig::default()),
            last_applied: None,
            membership: StoredMembership::default(),
            retired_node_ids: BTreeSet::new(),
            published_up_to: 0,
            outbox_rows: BTreeMap::new(),
        }));
        let checkpoints = Checkpoints::start(db.clone(), state.clone()).expect("start");
        apply(
            &state,
            1,
            Command::CreateAsset(CreateAsset {
                symbol: "USD".into(),
                scale: 2,
            }),
        );
        apply(
            &state,
            2,
            Command::CreateAccount(CreateAccount { account: 1 }),
        );
        apply(&state, 3, deposit(5));
        assert!(
            !checkpoints.due(3).expect("due"),
            "due with 3 records, at once"
        );
        assert!(checkpoints.due(CHECKPOINT_MAX_RECORDS).expect("due"));

        assert_eq!(checkpoints.checkpoint(true).expect("checkpoint"), 3);
        let at_3 = state.read().expect("lock").ledger.state_hash();
        assert_eq!(on_disk(&db), (at_3, 3));

        // Applied in memory only: the disk keeps checkpoint 3, whole.
        apply(&state, 4, deposit(7));
        apply(&state, 5, deposit(11));
        assert_eq!(on_disk(&db), (at_3, 3));
        assert_eq!(checkpoints.checkpoint(true).expect("checkpoint"), 5);
        let at_5 = state.read().expect("lock").ledger.state_hash();
        assert_ne!(at_5, at_3);
        assert_eq!(on_disk(&db), (at_5, 5));
        assert_eq!(state.read().expect("lock").ledger.dirty_count(), 0);
        assert!(checkpoints.failed().is_none());
    }

    #[test]
    fn the_nodes_of_a_cluster_checkpoint_at_different_record_counts() {
        let bounds: BTreeSet<usize> = (1..=3).map(staggered_max_records).collect();
        assert_eq!(bounds.len(), 3, "{bounds:?}");
        assert!(
            bounds
                .iter()
                .all(|b| *b >= CHECKPOINT_MAX_RECORDS && *b < 2 * CHECKPOINT_MAX_RECORDS)
        );
    }
}
