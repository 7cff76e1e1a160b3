//! The Raft log store on RocksDB: entries, vote, committed id and purge
//! point. Vote, truncation and purge are one WriteBatch written with fsync.
//! `append` writes its entries in one WriteBatch (readable at once) and
//! hands openraft's completion callback to the WAL syncer thread, which
//! fsyncs the write-ahead log once for every append queued meanwhile (group
//! fsync) and only then reports the entries persisted. Raft's core never
//! waits on a disk sync, and many appends share one.
//!
//! A log record's value is written by hand ([`encode_entry`]): `u8` record
//! version ([`LOG_RECORD_VERSION`]), `u8` payload kind (0 blank, 1 normal,
//! 2 membership), `u32` big-endian length of the bincode log id, the log
//! id, then the payload: for a normal entry the entry frame verbatim (see
//! `EntryRequest`: it is copied, never re-encoded), for a membership entry
//! its bincode. A record of another version is refused as corrupt.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::mpsc;

use bytes::Bytes;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch};

use crate::codec;
use crate::raft::types::{Entry, EntryRequest, LogId, TypeConfig, Vote};
use crate::storage::{CF_LOG, CF_RAFT_META, cf, synced, unsynced};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Largest number of entries returned by one `limited_get_log_entries` (the
/// replication read: bounds memory when a far-behind follower is replicated
/// to). `try_get_log_entries` must return its whole range (openraft applies
/// a committed range read through it), so it has no limit.
pub const MAX_READ_ENTRIES: usize = 100_000;

/// Version of the log record layout (see the module docs). Version 1 was a
/// bincode `Entry` whose commands were bincode envelopes.
pub const LOG_RECORD_VERSION: u8 = 2;

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// Appends the log record value of `entry` to `out`.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) -> Result<(), io::Error> {
    let log_id = codec::encode(&entry.log_id)?;
    let kind = match &entry.payload {
        EntryPayload::Blank => KIND_BLANK,
        EntryPayload::Normal(_) => KIND_NORMAL,
        EntryPayload::Membership(_) => KIND_MEMBERSHIP,
    };
    out.push(LOG_RECORD_VERSION);
    out.push(kind);
    // A log id is a few varints.
    out.extend_from_slice(&(log_id.len() as u32).to_be_bytes());
    out.extend_from_slice(&log_id);
    match &entry.payload {
        EntryPayload::Blank => {}
        EntryPayload::Normal(request) => out.extend_from_slice(request.frame()),
        EntryPayload::Membership(membership) => out.extend_from_slice(&codec::encode(membership)?),
    }
    Ok(())
}

/// Reads a log record value written by [`encode_entry`].
pub fn decode_entry(value: &[u8]) -> Result<Entry, io::Error> {
    let corrupt = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("raft log record: {what}"),
        )
    };
    let [version, kind, l0, l1, l2, l3, rest @ ..] = value else {
        return Err(corrupt("shorter than its header"));
    };
    if *version != LOG_RECORD_VERSION {
        return Err(corrupt(&format!(
            "record version {version} (this build reads {LOG_RECORD_VERSION}); \
             a data dir of an older build must be recreated"
        )));
    }
    let id_len = u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize;
    if rest.len() < id_len {
        return Err(corrupt("truncated log id"));
    }
    let (id_bytes, payload) = rest.split_at(id_len);
    let log_id: LogId = codec::decode(id_bytes)?;
    let payload = match *kind {
        KIND_BLANK if payload.is_empty() => EntryPayload::Blank,
        KIND_NORMAL => {
            EntryPayload::Normal(EntryRequest::from_frame(Bytes::copy_from_slice(payload))?)
        }
        KIND_MEMBERSHIP => EntryPayload::Membership(codec::decode(payload)?),
        _ => {
            return Err(corrupt(&format!(
                "bad payload kind {kind} or trailing bytes"
            )));
        }
    };
    Ok(Entry { log_id, payload })
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Result<u64, io::Error> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "raft log key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Appends waiting for the WAL syncer at most; a full queue makes `append`
/// wait (openraft bounds its in-flight IO far below this).
pub const MAX_PENDING_SYNCS: usize = 4096;

/// The log store; cheap to clone (shares the DB and the WAL syncer).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    syncer: Arc<WalSyncer>,
}

/// The WAL syncer thread's handle. Dropping the last one closes the queue
/// and joins the thread, so the database is released deterministically (a
/// reopen right after cannot find it still locked).
struct WalSyncer {
    queue: Option<mpsc::SyncSender<IOFlushed<TypeConfig>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WalSyncer {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl LogStore {
    /// Opens the store on `db` and starts its WAL syncer thread, which ends
    /// when the last clone of the store is dropped.
    pub fn new(db: Arc<DB>) -> Result<Self, io::Error> {
        let (queue, pending) = mpsc::sync_channel(MAX_PENDING_SYNCS);
        let sync_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("tally-wal-sync".into())
            .spawn(move || wal_syncer(sync_db, pending))?;
        Ok(LogStore {
            db,
            syncer: Arc::new(WalSyncer {
                queue: Some(queue),
                thread: Some(thread),
            }),
        })
    }

    /// The commit index last saved (0: none), read before Raft starts: the
    /// entries between the state machine's last applied and it are
    /// re-applied from this log at startup.
    pub fn saved_committed_index(&self) -> Result<u64, io::Error> {
        Ok(self
            .get_meta::<Option<LogId>>(KEY_COMMITTED)?
            .flatten()
            .map_or(0, |l| l.index))
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, io::Error> {
        let cf = cf(&self.db, CF_RAFT_META)?;
        match self.db.get_cf(cf, key).map_err(io::Error::other)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), io::Error> {
        let cf = cf(&self.db, CF_RAFT_META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, key, codec::encode(value)?);
        self.db
            .write_opt(batch, &synced())
            .map_err(io::Error::other)
    }

    /// The last entry's log id, if the log holds any entry.
    fn last_entry_log_id(&self) -> Result<Option<LogId>, io::Error> {
        let cf = cf(&self.db, CF_LOG)?;
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(io::Error::other)?;
                Ok(Some(decode_entry(&value)?.log_id))
            }
        }
    }

    /// The stored entries of `range` in order, at most `limit` of them. An
    /// index missing between two stored entries is corruption: an error, not
    /// a shorter answer.
    fn read_entries(
        &self,
        range: impl RangeBounds<u64>,
        limit: usize,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let cf = cf(&self.db, CF_LOG)?;
        let mut entries = Vec::new();
        let from = index_key(start);
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item.map_err(io::Error::other)?;
            let index = key_index(&key)?;
            if !range.contains(&index) || entries.len() >= limit {
                break;
            }
            if let Some(prev) = entries.last().map(|e: &Entry| e.log_id.index)
                && index != prev + 1
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("raft log has a hole: entry {prev} is followed by {index}"),
                ));
            }
            let entry = decode_entry(&value)?;
            // Paired assertion: the key we stored under is the entry's own index.
            if entry.log_id.index != index {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("raft log key {index} holds entry {}", entry.log_id.index),
                ));
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.read_entries(range, usize::MAX)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        self.read_entries(start..end, MAX_READ_ENTRIES)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.put_meta(KEY_VOTE, vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Optional for openraft (it relearns the commit point from the
        // leader); made durable by the next synced write.
        let cf = cf(&self.db, CF_RAFT_META)?;
        self.db
            .put_cf_opt(cf, KEY_COMMITTED, codec::encode(&committed)?, &unsynced())
            .map_err(io::Error::other)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = cf(&self.db, CF_LOG)?;
        let mut batch = WriteBatch::default();
        let mut value = Vec::new();
        for entry in entries {
            value.clear();
            encode_entry(&entry, &mut value)?;
            batch.put_cf(cf, index_key(entry.log_id.index), &value);
        }
        // Readable once written; persisted (and reported) by the syncer.
        if let Err(e) = self.db.write_opt(batch, &unsynced()) {
            let e = io::Error::other(e);
            callback.io_completed(Err(io::Error::other(e.to_string())));
            return Err(e);
        }
        let Some(queue) = &self.syncer.queue else {
            callback.io_completed(Err(io::Error::other("WAL syncer stopped")));
            return Err(io::Error::other("WAL syncer stopped"));
        };
        match queue.try_send(callback) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(callback)) => {
                tokio::task::block_in_place(|| queue.send(callback))
                    .map_err(|_| io::Error::other("WAL syncer stopped"))
            }
            Err(mpsc::TrySendError::Disconnected(callback)) => {
                callback.io_completed(Err(io::Error::other("WAL syncer stopped")));
                Err(io::Error::other("WAL syncer stopped"))
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index + 1).unwrap_or(0);
        let cf = cf(&self.db, CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(from), index_key(u64::MAX));
        batch.delete_cf(cf, index_key(u64::MAX));
        self.db
            .write_opt(batch, &synced())
            .map_err(io::Error::other)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let meta = cf(&self.db, CF_RAFT_META)?;
        let log = cf(&self.db, CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, KEY_LAST_PURGED, codec::encode(&log_id)?);
        batch.delete_range_cf(log, index_key(0), index_key(log_id.index + 1));
        self.db
            .write_opt(batch, &synced())
            .map_err(io::Error::other)
    }
}

/// The WAL syncer: waits for an append, takes every other append queued by
/// then, fsyncs the write-ahead log once (RocksDB has one WAL for all column
/// families, so this also persists the state machine's unsynced writes made
/// before it) and completes the appends in order. Runs until the store is
/// dropped.
/// A WAL fsync at least this long is logged (warning).
const SLOW_FSYNC: std::time::Duration = std::time::Duration::from_millis(100);

fn wal_syncer(db: Arc<DB>, pending: mpsc::Receiver<IOFlushed<TypeConfig>>) {
    while let Ok(first) = pending.recv() {
        let mut callbacks = vec![first];
        while let Ok(next) = pending.try_recv() {
            callbacks.push(next);
        }
        let started = std::time::Instant::now();
        let result = db.flush_wal(true).map_err(|e| e.to_string());
        let elapsed = started.elapsed();
        crate::metrics::METRICS
            .wal_fsync_seconds
            .observe_duration(elapsed);
        if elapsed >= SLOW_FSYNC {
            tracing::warn!(
                fsync_ms = elapsed.as_millis() as u64,
                appends = callbacks.len(),
                "slow WAL fsync"
            );
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "WAL fsync failed; appends reported as failed");
        }
        for callback in callbacks {
            callback.io_completed(result.clone().map_err(io::Error::other));
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderIdExt;

    use super::*;

    fn entry(term: u64, index: u64) -> Entry {
        let leader = openraft::impls::leader_id_adv::LeaderId::<u64, u64>::new_committed(term, 1);
        let log_id = LogId::new(leader, index);
        Entry::new_normal(log_id, EntryRequest::from_envelopes(index, &[]))
    }

    #[test]
    fn log_records_keep_the_frame_verbatim_and_refuse_other_versions() {
        let normal = entry(3, 7);
        let mut value = Vec::new();
        encode_entry(&normal, &mut value).unwrap();
        let EntryPayload::Normal(request) = &normal.payload else {
            panic!("not normal")
        };
        assert!(value.ends_with(request.frame()), "frame stored as is");
        assert_eq!(decode_entry(&value).unwrap(), normal);
        let blank = Entry::new_blank(normal.log_id);
        let mut blank_value = Vec::new();
        encode_entry(&blank, &mut blank_value).unwrap();
        assert_eq!(decode_entry(&blank_value).unwrap(), blank);
        let mut old = value.clone();
        old[0] = 1;
        assert!(decode_entry(&old).is_err());
        for cut in 0..value.len().min(40) {
            assert!(decode_entry(&value[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_survives_reopen_and_truncate_and_purge_move_the_right_bounds() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::storage::open_db(dir.path()).unwrap();
            let mut store = LogStore::new(db).unwrap();
            store
                .append((1..=10).map(|i| entry(1, i)), IOFlushed::noop())
                .await
                .unwrap();
            store
                .truncate_after(Some(entry(1, 8).log_id))
                .await
                .unwrap();
            store.purge(entry(1, 3).log_id).await.unwrap();
        }
        let db = crate::storage::open_db(dir.path()).unwrap();
        let mut store = LogStore::new(db).unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(3));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(8));
        let got: Vec<u64> = store
            .try_get_log_entries(0..100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(got, (4..=8).collect::<Vec<_>>());
    }
}
