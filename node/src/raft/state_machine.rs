//! The replicated state machine: applies committed Raft entries to the ledger
//! engine (each command decoded once from the entry frame, with its
//! fingerprint), in memory. The applied state reaches RocksDB in
//! checkpoints (`raft::checkpoint`: changed records plus `last_applied` and
//! membership in one atomic write, at most about a second apart), not per
//! applied batch: every entry is already durable in the Raft log, and a
//! restart re-applies the committed entries after the last checkpoint.
//! Also builds and installs snapshots.
//!
//! Kafka: an ingest entry is applied through `Ledger::apply_ingest` (fenced
//! by the stored offset); with publishing on, every entry's events go to the
//! outbox (`kafka::outbox`) in the same batch, and a published marker
//! entry trims it on every node. Snapshots carry the unpublished outbox.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rocksdb::{DB, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};
use tally_ledger::{IngestOutcome, Ledger, LedgerConfig, Outcome};
use tokio::sync::watch;

use crate::codec;
use crate::failpoint::{self, Point};
use crate::kafka::outbox::{EntryEvents, OutboxGauge};
use crate::metrics::METRICS;
use crate::raft::checkpoint::Checkpoints;
use crate::raft::types::{
    EntryBody, EntryRequest, EntryResponse, IngestReply, LogId, Snapshot, SnapshotData,
    SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::storage::{CF_OUTBOX, CF_SM, CF_SM_META, cf, unsynced};

pub(crate) const KEY_LAST_APPLIED: &[u8] = b"last_applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"membership";
/// File name of the current snapshot in the data dir.
const SNAPSHOT_FILE: &str = "snapshot.bin";
pub(crate) const KEY_RETIRED: &[u8] = b"retired_node_ids";
/// Written with the outbox trims it describes (not in checkpoints): always
/// in step with the outbox rows on disk.
const KEY_PUBLISHED: &[u8] = b"published_up_to";

/// The in-memory state machine, shared with the read path.
pub struct SmState {
    pub ledger: Ledger,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// Node ids that were members once and left: never to be reused.
    pub retired_node_ids: BTreeSet<u64>,
    /// Every event of entries up to this index is in the events topic
    /// (replicated by published markers).
    pub published_up_to: u64,
    /// Bytes of each outbox row still kept, by log index.
    pub outbox_rows: BTreeMap<u64, u64>,
}

impl SmState {
    pub fn applied_index(&self) -> u64 {
        self.last_applied.as_ref().map(|id| id.index).unwrap_or(0)
    }
}

/// Shared, lock-protected state machine (readers take the read lock briefly).
pub type SharedState = Arc<RwLock<SmState>>;

/// What a snapshot's bytes hold.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    retired_node_ids: BTreeSet<u64>,
    records: Vec<(Vec<u8>, Vec<u8>)>,
    published_up_to: u64,
    /// Outbox rows not yet published, by log index.
    outbox: Vec<(u64, Vec<u8>)>,
}

/// A snapshot body as builds before the Kafka outbox wrote it (no
/// published index, no outbox): still installed, with an empty outbox.
#[derive(Serialize, Deserialize)]
struct SnapshotBodyWithoutOutbox {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    retired_node_ids: BTreeSet<u64>,
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl SnapshotBody {
    /// Decodes this build's body, or the older one without the outbox.
    fn decode(data: &[u8]) -> Result<SnapshotBody, io::Error> {
        match codec::decode_snapshot::<SnapshotBody>(data) {
            Ok(body) => Ok(body),
            Err(error) => match codec::decode_snapshot::<SnapshotBodyWithoutOutbox>(data) {
                Ok(old) => Ok(SnapshotBody {
                    last_applied: old.last_applied,
                    membership: old.membership,
                    retired_node_ids: old.retired_node_ids,
                    records: old.records,
                    published_up_to: 0,
                    outbox: Vec::new(),
                }),
                Err(_) => Err(error),
            },
        }
    }
}

/// A snapshot kept on disk as the node's current snapshot.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The reject code of a rejected result (`None`: applied).
fn rejected_code(result: &tally_ledger::ApplyResult) -> Option<tally_ledger::RejectCode> {
    match &result.outcome {
        Outcome::Rejected(rejection) => Some(rejection.code),
        Outcome::Applied { .. } => None,
    }
}

/// The log index of an outbox key (8 bytes, big-endian).
fn outbox_index(key: &[u8]) -> Result<u64, io::Error> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("outbox key of {} bytes", key.len()),
        )
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn lock_poisoned() -> io::Error {
    io::Error::other("state machine lock poisoned")
}

/// Readahead of the startup scan of the ledger records (one sequential
/// pass over the state machine's column family).
const SCAN_READAHEAD_BYTES: usize = 4 << 20;

/// Write buffer of the snapshot file.
const SNAPSHOT_WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Records per chunk the startup scan hands to the parser.
const SCAN_CHUNK_RECORDS: usize = 4096;
/// Chunks scanned ahead of the parser (bounds the scan's memory to about
/// `SCAN_CHUNKS_AHEAD * SCAN_CHUNK_RECORDS` records).
const SCAN_CHUNKS_AHEAD: usize = 8;

/// Rebuilds the ledger from the state machine's records: one thread scans
/// RocksDB (one sequential pass, past the block cache) while this one
/// parses and links the records, so a restart with a million accounts
/// uses both cores. Nothing is collected first: chunks stream through a
/// bounded channel.
fn restore_ledger(db: &DB, ledger_config: LedgerConfig) -> Result<Ledger, io::Error> {
    let sm_cf = cf(db, CF_SM)?;
    // The store's estimate sizes the big tables up front (no regrowth).
    let expected_records = db
        .property_int_value_cf(sm_cf, "rocksdb.estimate-num-keys")
        .ok()
        .flatten()
        .unwrap_or(0);
    type Chunk = Result<Vec<(Vec<u8>, Vec<u8>)>, rocksdb::Error>;
    let (restored, read_error) = std::thread::scope(|scope| {
        let (chunks_tx, chunks_rx) = std::sync::mpsc::sync_channel::<Chunk>(SCAN_CHUNKS_AHEAD);
        let scanner = std::thread::Builder::new()
            .name("tally-restore-scan".into())
            .spawn_scoped(scope, move || {
                let mut scan = rocksdb::ReadOptions::default();
                scan.fill_cache(false);
                scan.set_readahead_size(SCAN_READAHEAD_BYTES);
                let mut chunk = Vec::with_capacity(SCAN_CHUNK_RECORDS);
                for item in db.iterator_cf_opt(sm_cf, scan, IteratorMode::Start) {
                    match item {
                        Ok((k, v)) => chunk.push((k.into_vec(), v.into_vec())),
                        Err(e) => {
                            let _ = chunks_tx.send(Err(e));
                            return;
                        }
                    }
                    if chunk.len() == SCAN_CHUNK_RECORDS {
                        let full =
                            std::mem::replace(&mut chunk, Vec::with_capacity(SCAN_CHUNK_RECORDS));
                        // The parser stopped (it refused a record): done.
                        if chunks_tx.send(Ok(full)).is_err() {
                            return;
                        }
                    }
                }
                if !chunk.is_empty() {
                    let _ = chunks_tx.send(Ok(chunk));
                }
            });
        if let Err(e) = scanner {
            return (None, Some(format!("cannot start the restore scan: {e}")));
        }
        let mut read_error = None;
        let records = chunks_rx
            .iter()
            .map_while(|chunk| match chunk {
                Ok(records) => Some(records),
                Err(e) => {
                    read_error = Some(format!("reading ledger records: {e}"));
                    None
                }
            })
            .flatten();
        let restored = Ledger::from_records_expecting(
            ledger_config,
            records,
            usize::try_from(expected_records).unwrap_or(usize::MAX),
        );
        (Some(restored), read_error)
    });
    if let Some(e) = read_error {
        return Err(io::Error::other(e));
    }
    restored
        .ok_or_else(|| io::Error::other("restore scan did not run"))?
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("ledger records: {e}")))
}

/// openraft's state-machine handle.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    state: SharedState,
    applied_tx: Arc<watch::Sender<u64>>,
    ledger_config: LedgerConfig,
    /// The events outbox's gauge; `max_bytes == 0`: publishing off, no outbox.
    outbox: Arc<OutboxGauge>,
    checkpoints: Arc<Checkpoints>,
}

impl StateMachineStore {
    /// Loads the state machine from the database (empty on first start).
    /// `outbox`: the events outbox gauge (`max_bytes` 0 when publishing is off).
    pub fn open(
        db: Arc<DB>,
        ledger_config: LedgerConfig,
        outbox: Arc<OutboxGauge>,
    ) -> Result<Self, io::Error> {
        let ledger = restore_ledger(&db, ledger_config)?;
        if ledger.cluster_version() > crate::version::max_supported() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "ledger records: downgrade refused: {}",
                    crate::version::unsupported_message(ledger.cluster_version())
                ),
            ));
        }
        let meta_cf = cf(&db, CF_SM_META)?;
        let last_applied: Option<LogId> = match db
            .get_cf(meta_cf, KEY_LAST_APPLIED)
            .map_err(io::Error::other)?
        {
            Some(b) => codec::decode(&b)?,
            None => None,
        };
        let membership: StoredMembership = match db
            .get_cf(meta_cf, KEY_MEMBERSHIP)
            .map_err(io::Error::other)?
        {
            Some(b) => codec::decode(&b)?,
            None => StoredMembership::default(),
        };
        let retired_node_ids: BTreeSet<u64> =
            match db.get_cf(meta_cf, KEY_RETIRED).map_err(io::Error::other)? {
                Some(b) => codec::decode(&b)?,
                None => BTreeSet::new(),
            };
        let published_up_to: u64 = match db
            .get_cf(meta_cf, KEY_PUBLISHED)
            .map_err(io::Error::other)?
        {
            Some(b) => codec::decode(&b)?,
            None => 0,
        };
        let mut outbox_rows = BTreeMap::new();
        for item in db.iterator_cf(cf(&db, CF_OUTBOX)?, IteratorMode::Start) {
            let (k, v) = item.map_err(io::Error::other)?;
            outbox_rows.insert(outbox_index(&k)?, v.len() as u64);
        }
        outbox
            .published_up_to
            .store(published_up_to, std::sync::atomic::Ordering::Relaxed);
        outbox.set(outbox_rows.len() as u64, outbox_rows.values().sum());
        let applied = last_applied.as_ref().map(|id| id.index).unwrap_or(0);
        let (applied_tx, _) = watch::channel(applied);
        let state = Arc::new(RwLock::new(SmState {
            ledger,
            last_applied,
            membership,
            retired_node_ids,
            published_up_to,
            outbox_rows,
        }));
        Ok(StateMachineStore {
            checkpoints: Checkpoints::start(db.clone(), state.clone())?,
            db,
            state,
            applied_tx: Arc::new(applied_tx),
            ledger_config,
            outbox,
        })
    }

    /// The checkpoints of this state machine (forced by backups and at shutdown).
    pub fn checkpoints(&self) -> Arc<Checkpoints> {
        self.checkpoints.clone()
    }

    /// The shared state for the read path.
    pub fn shared(&self) -> SharedState {
        self.state.clone()
    }

    /// A watch of the applied log index (for read-your-writes waits).
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// Every metadata record of `st` (a snapshot install replaces them all).
    fn write_meta(&self, batch: &mut WriteBatch, st: &SmState) -> Result<(), io::Error> {
        crate::raft::checkpoint::put_meta(&self.db, batch, st)?;
        let meta_cf = cf(&self.db, CF_SM_META)?;
        batch.put_cf(meta_cf, KEY_PUBLISHED, codec::encode(&st.published_up_to)?);
        Ok(())
    }

    /// Applies a normal entry's body: commands, an ingest batch or a
    /// published marker. Outbox rows and trims go into `batch`. A body that
    /// does not decode is corruption: the error stops applying (the node
    /// fails) rather than skip it.
    fn apply_normal(
        &self,
        st: &mut SmState,
        req: &EntryRequest,
        index: u64,
        waited_on: bool,
        batch: &mut WriteBatch,
    ) -> Result<EntryResponse, io::Error> {
        let timestamp_ms = req.timestamp_ms();
        let publishing = self.outbox.max_bytes > 0;
        // An entry at or below the published index is being re-applied
        // after a restart (the checkpoint is older than the outbox trim):
        // its events are in the topic already, its row trimmed.
        let mut events = (publishing && index > st.published_up_to)
            .then(|| EntryEvents::new(index, timestamp_ms));
        let mut response = EntryResponse::default();
        // History entries of the commands below name this log index.
        st.ledger.set_log_index(index);
        match req.body()? {
            EntryBody::Commands => {
                // Events only where a waiting client asked for them or the
                // outbox needs them; verdict-only replies and replicas nobody
                // waits on (a follower, or a leader re-applying after
                // restart) apply quietly when not publishing: same state,
                // no events built.
                let detailed = (waited_on && req.events()) || publishing;
                if waited_on {
                    response.results.reserve(req.count() as usize);
                }
                METRICS.entry_commands.observe(f64::from(req.count()));
                for command in req.commands() {
                    let command = command?;
                    let result = st.ledger.apply_decoded(&command, timestamp_ms, detailed);
                    METRICS.command(rejected_code(&result));
                    if let Some(events) = &mut events {
                        events.add_result(&command.envelope.command_id.0, &result);
                    }
                    if waited_on {
                        response.results.push(result);
                    }
                }
            }
            EntryBody::Ingest(ingest) => {
                let outcome = st.ledger.apply_ingest(&ingest, timestamp_ms, publishing);
                response.ingest = Some(match outcome {
                    IngestOutcome::Applied {
                        results,
                        next_offset,
                    } => {
                        let (mut failed, mut duplicates) = (0u32, 0u32);
                        METRICS.entry_commands.observe(results.len() as f64);
                        for (record, result) in ingest.records.iter().zip(&results) {
                            if let Some(r) = &result.result {
                                METRICS.command(rejected_code(r));
                            }
                            failed += u32::from(result.failure.is_some());
                            duplicates +=
                                u32::from(result.result.as_ref().is_some_and(|r| r.duplicate));
                            let Some(events) = &mut events else { continue };
                            if let (Some(r), tally_ledger::IngestBody::Command(c)) =
                                (&result.result, &record.body)
                                && matches!(r.outcome, Outcome::Applied { .. })
                            {
                                events.add_result(&c.envelope.command_id.0, r);
                            }
                            if let Some(failure) = &result.failure {
                                events.add_failure(&ingest.source, failure);
                            }
                        }
                        IngestReply::Applied {
                            next_offset,
                            failed,
                            duplicates,
                        }
                    }
                    IngestOutcome::Fenced { expected_offset } => {
                        IngestReply::Fenced { expected_offset }
                    }
                    IngestOutcome::TooManySources => IngestReply::TooManySources,
                });
            }
            EntryBody::Published(up_to) => self.trim_outbox(st, up_to, batch)?,
            EntryBody::ClusterVersion(version) => {
                if version > crate::version::max_supported() {
                    crate::version::stop_unsupported(version, &format!("log entry {index}"));
                }
                let before = st.ledger.cluster_version();
                let raised = st
                    .ledger
                    .set_cluster_version(version)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                if raised {
                    tracing::info!(
                        node_id = crate::metrics::node_id(),
                        index,
                        from = before,
                        to = version,
                        "cluster version raised (finalized): new features and formats are on"
                    );
                }
            }
        }
        if let Some(row) = events.and_then(EntryEvents::finish) {
            batch.put_cf(cf(&self.db, CF_OUTBOX)?, index.to_be_bytes(), &row);
            // Re-applied after a restart: the same row is on disk and counted.
            if st.outbox_rows.insert(index, row.len() as u64).is_none() {
                self.outbox.added(row.len());
            }
        }
        Ok(response)
    }

    /// Applies a published marker: rows up to `up_to` are acknowledged and
    /// deleted (on every node, in the applied batch).
    fn trim_outbox(
        &self,
        st: &mut SmState,
        up_to: u64,
        batch: &mut WriteBatch,
    ) -> Result<(), io::Error> {
        if up_to <= st.published_up_to {
            return Ok(());
        }
        st.published_up_to = up_to;
        batch.put_cf(
            cf(&self.db, CF_SM_META)?,
            KEY_PUBLISHED,
            codec::encode(&st.published_up_to)?,
        );
        batch.delete_range_cf(
            cf(&self.db, CF_OUTBOX)?,
            0u64.to_be_bytes(),
            up_to.saturating_add(1).to_be_bytes(),
        );
        st.outbox_rows = st.outbox_rows.split_off(&up_to.saturating_add(1));
        self.publish_gauge(st);
        Ok(())
    }

    fn publish_gauge(&self, st: &SmState) {
        self.outbox
            .published_up_to
            .store(st.published_up_to, std::sync::atomic::Ordering::Relaxed);
        self.outbox
            .set(st.outbox_rows.len() as u64, st.outbox_rows.values().sum());
    }

    /// The current snapshot's file: `snapshot.bin` in the data dir, beside `db/`.
    fn snapshot_path(&self) -> std::path::PathBuf {
        let db_dir = self.db.path();
        db_dir.parent().unwrap_or(db_dir).join(SNAPSHOT_FILE)
    }

    /// Saves the snapshot as a file (written to a temp file, fsynced, renamed
    /// over the old one, directory fsynced). Not a RocksDB value: a
    /// snapshot of millions of records is tens of MB, and pushing that
    /// through the write-ahead log held up every write behind it.
    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), io::Error> {
        use std::io::Write as _;
        let path = self.snapshot_path();
        let tmp = path.with_extension("bin.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        if failpoint::reached(Point::SnapshotSavePartial, 1) {
            let bytes = codec::encode(snapshot)?;
            file.write_all(&bytes[..bytes.len() / 2])?;
            file.sync_all()?;
            failpoint::abort(Point::SnapshotSavePartial, "half the snapshot file written");
        }
        // Encoded straight into the file: no second in-memory copy of a
        // snapshot that can be hundreds of MB.
        let mut out = std::io::BufWriter::with_capacity(SNAPSHOT_WRITE_BUFFER_BYTES, file);
        codec::encode_to_writer(snapshot, &mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, io::Error> {
        match std::fs::read(self.snapshot_path()) {
            Ok(bytes) => Ok(Some(codec::decode_snapshot(&bytes)?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // Built from a RocksDB snapshot of this node's own store, not from the
        // in-memory ledger: each checkpoint wrote its changed records and
        // `last_applied` atomically, so a RocksDB snapshot is a consistent
        // view of the state at some applied index, and reading it needs no
        // lock on the live state. (Copying the ledger under the state lock
        // stalled writes ~0.8 s for 1.8M records; encoding it there, ~2.5 s.)
        // A checkpoint is forced first: the snapshot is of the state applied
        // now, not up to a second ago. Runs on a blocking thread while the
        // node keeps applying.
        let started = std::time::Instant::now();
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            store.checkpoints.checkpoint(true)?;
            let view = store.db.snapshot();
            let meta_cf = cf(&store.db, CF_SM_META)?;
            let sm_cf = cf(&store.db, CF_SM)?;
            let read = |key: &[u8]| view.get_cf(meta_cf, key).map_err(io::Error::other);
            let last_applied: Option<LogId> = match read(KEY_LAST_APPLIED)? {
                Some(b) => codec::decode(&b)?,
                None => None,
            };
            let membership: StoredMembership = match read(KEY_MEMBERSHIP)? {
                Some(b) => codec::decode(&b)?,
                None => StoredMembership::default(),
            };
            let retired_node_ids: BTreeSet<u64> = match read(KEY_RETIRED)? {
                Some(b) => codec::decode(&b)?,
                None => BTreeSet::new(),
            };
            let published_up_to: u64 = match read(KEY_PUBLISHED)? {
                Some(b) => codec::decode(&b)?,
                None => 0,
            };
            let mut records = Vec::new();
            for item in view.iterator_cf(sm_cf, IteratorMode::Start) {
                let (k, v) = item.map_err(io::Error::other)?;
                records.push((k.to_vec(), v.to_vec()));
            }
            let mut outbox = Vec::new();
            for item in view.iterator_cf(cf(&store.db, CF_OUTBOX)?, IteratorMode::Start) {
                let (k, v) = item.map_err(io::Error::other)?;
                outbox.push((outbox_index(&k)?, v.to_vec()));
            }
            drop(view);
            let meta = SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership.clone(),
            };
            let body = SnapshotBody {
                last_applied,
                membership,
                retired_node_ids,
                records,
                published_up_to,
                outbox,
            };
            let data = codec::encode(&body)?;
            let records = body.records.len();
            // The records are in `data` now: free them before the file is written.
            drop(body);
            METRICS
                .snapshot_build_seconds
                .observe_duration(started.elapsed());
            METRICS
                .snapshot_bytes
                .store(data.len() as u64, Ordering::Relaxed);
            tracing::info!(
                node_id = crate::metrics::node_id(),
                term = meta.last_log_id.as_ref().map_or(0, |l| l.leader_id.term),
                index = meta.last_log_id.as_ref().map_or(0, |l| l.index),
                bytes = data.len(),
                records,
                total_ms = started.elapsed().as_millis() as u64,
                "built snapshot"
            );
            let stored = StoredSnapshot {
                meta: meta.clone(),
                data,
            };
            store.save_snapshot(&stored)?;
            Ok(Snapshot {
                meta,
                snapshot: std::io::Cursor::new(stored.data),
            })
        })
        .await
        .map_err(|e| io::Error::other(format!("snapshot builder task: {e}")))?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let st = self.state.read().map_err(|_| lock_poisoned())?;
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        if let Some(e) = self.checkpoints.failed() {
            return Err(io::Error::other(format!("not applying: {e}")));
        }
        let started = std::time::Instant::now();
        let mut replies = Vec::new();
        // Outbox rows and trims only: the ledger's records go in checkpoints.
        let mut batch = WriteBatch::default();
        let applied_index;
        let dirty_records;
        {
            while let Some(item) = entries.next().await {
                let (entry, responder) = item?;
                let mut st = self.state.write().map_err(|_| lock_poisoned())?;
                let response = match entry.payload {
                    EntryPayload::Blank => EntryResponse::default(),
                    EntryPayload::Normal(req) => self.apply_normal(
                        &mut st,
                        &req,
                        entry.log_id.index,
                        responder.is_some(),
                        &mut batch,
                    )?,
                    EntryPayload::Membership(m) => {
                        let before: BTreeSet<u64> =
                            st.membership.nodes().map(|(id, _)| *id).collect();
                        let after: BTreeSet<u64> = m.nodes().map(|(id, _)| *id).collect();
                        st.retired_node_ids.extend(before.difference(&after));
                        st.membership = StoredMembership::new(Some(entry.log_id), m);
                        EntryResponse::default()
                    }
                };
                st.last_applied = Some(entry.log_id);
                if failpoint::reached(Point::ApplyAbortAfterEntries, 1) {
                    failpoint::abort(
                        Point::ApplyAbortAfterEntries,
                        &format!(
                            "entry {} applied in memory, not written",
                            entry.log_id.index
                        ),
                    );
                }
                if let Some(r) = responder {
                    replies.push((r, response));
                }
                // Bounds a checkpoint's drain (time under the lock, memory)
                // whatever the size of the entries this call applies.
                let dirty_records = st.ledger.dirty_count();
                drop(st);
                if self.checkpoints.over_records(dirty_records) {
                    self.checkpoints.checkpoint(false)?;
                }
            }
            let st = self.state.read().map_err(|_| lock_poisoned())?;
            applied_index = st.applied_index();
            dirty_records = st.ledger.dirty_count();
        }
        let engine_us = started.elapsed().as_micros() as u64;
        let outbox_records = batch.len();
        // Outbox rows are written before any reply, not fsynced: the Raft log
        // shares this database's one write-ahead log, so the next synced log
        // append makes this write durable too, and a lost row is rebuilt by
        // re-applying its (committed, logged) entry. No fsync, so no
        // block_in_place.
        if outbox_records > 0 {
            let write_started = std::time::Instant::now();
            self.db
                .write_opt(batch, &unsynced())
                .map_err(io::Error::other)?;
            METRICS
                .apply_write_seconds
                .observe_duration(write_started.elapsed());
        }
        METRICS
            .apply_batch_seconds
            .observe_duration(started.elapsed());
        self.applied_tx.send_replace(applied_index);
        tracing::debug!(
            index = applied_index,
            outbox_records,
            dirty_records,
            engine_us,
            total_us = started.elapsed().as_micros() as u64,
            "applied batch"
        );
        for (responder, response) in replies {
            responder.send(response);
        }
        // After the replies: a client never waits on a checkpoint's drain.
        if self.checkpoints.due(dirty_records)? {
            self.checkpoints.checkpoint(false)?;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let started = std::time::Instant::now();
        let data = snapshot.into_inner();
        let body = SnapshotBody::decode(&data)?;
        let ledger = match Ledger::from_records(self.ledger_config, body.records.iter().cloned()) {
            Ok(ledger) => ledger,
            Err(tally_ledger::RecordError::ClusterVersionUnsupported(e)) => {
                crate::version::stop_unsupported(e.active, "snapshot")
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("snapshot records: {e}"),
                ));
            }
        };
        if ledger.cluster_version() > crate::version::max_supported() {
            crate::version::stop_unsupported(ledger.cluster_version(), "snapshot");
        }
        // Through the checkpoint writer, behind every checkpoint of the
        // state it replaces, with no checkpoint of that state drained after.
        let applied_index = self.checkpoints.replace_state(|batch| {
            let sm_cf = cf(&self.db, CF_SM)?;
            batch.delete_range_cf(sm_cf, &[0u8; 0][..], &[0xFFu8; 64][..]);
            for (k, v) in &body.records {
                batch.put_cf(sm_cf, k, v);
            }
            let outbox_cf = cf(&self.db, CF_OUTBOX)?;
            batch.delete_range_cf(outbox_cf, 0u64.to_be_bytes(), u64::MAX.to_be_bytes());
            batch.delete_cf(outbox_cf, u64::MAX.to_be_bytes());
            for (index, row) in &body.outbox {
                batch.put_cf(outbox_cf, index.to_be_bytes(), row);
            }
            let mut st = self.state.write().map_err(|_| lock_poisoned())?;
            st.ledger = ledger;
            st.last_applied = meta.last_log_id;
            st.membership = meta.last_membership.clone();
            st.retired_node_ids = body.retired_node_ids.clone();
            st.published_up_to = body.published_up_to;
            st.outbox_rows = body
                .outbox
                .iter()
                .map(|(index, row)| (*index, row.len() as u64))
                .collect();
            self.publish_gauge(&st);
            self.write_meta(batch, &st)?;
            Ok(st.applied_index())
        })?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let bytes = stored.data.len() as u64;
        tokio::task::block_in_place(|| self.save_snapshot(&stored))?;
        self.applied_tx.send_replace(applied_index);
        METRICS
            .snapshot_install_seconds
            .observe_duration(started.elapsed());
        METRICS.snapshot_bytes.store(bytes, Ordering::Relaxed);
        tracing::info!(
            node_id = crate::metrics::node_id(),
            term = meta.last_log_id.as_ref().map_or(0, |l| l.leader_id.term),
            index = applied_index,
            records = body.records.len(),
            "installed snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self.load_snapshot()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: std::io::Cursor::new(s.data),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_body_from_before_the_outbox_still_decodes_with_an_empty_outbox() {
        let old = SnapshotBodyWithoutOutbox {
            last_applied: None,
            membership: StoredMembership::default(),
            retired_node_ids: BTreeSet::from([7]),
            records: vec![(vec![1], vec![2])],
        };
        let bytes = codec::encode(&old).expect("encode");
        let body = SnapshotBody::decode(&bytes).expect("decodes");
        assert_eq!(body.retired_node_ids, BTreeSet::from([7]));
        assert_eq!(body.records, vec![(vec![1], vec![2])]);
        assert!(body.outbox.is_empty() && body.published_up_to == 0);
        let new = SnapshotBody {
            outbox: vec![(5, vec![9])],
            published_up_to: 4,
            ..body
        };
        let round = SnapshotBody::decode(&codec::encode(&new).expect("encode")).expect("decodes");
        assert_eq!(
            (round.published_up_to, round.outbox),
            (4, vec![(5, vec![9])])
        );
        assert!(SnapshotBody::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
