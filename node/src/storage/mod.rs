//! RocksDB: the column families Tally keeps, how the database is opened, and
//! the data-dir identity check that stops a node from using another node's
//! or another cluster's data.

pub mod identity;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteOptions};

/// Raft log entries, keyed by big-endian index.
pub const CF_LOG: &str = "raft_log";
/// Raft metadata: vote, committed log id, last purged log id.
pub const CF_RAFT_META: &str = "raft_meta";
/// The ledger state machine's records (see `tally_ledger` record encoding).
pub const CF_SM: &str = "sm";
/// State machine metadata (last applied, membership) and the current snapshot.
pub const CF_SM_META: &str = "sm_meta";

/// Ledger events not yet acknowledged by the Kafka events topic, keyed by
/// big-endian log index (see `kafka::outbox`).
pub const CF_OUTBOX: &str = "outbox";

const ALL_CFS: [&str; 5] = [CF_LOG, CF_RAFT_META, CF_SM, CF_SM_META, CF_OUTBOX];

/// Errors opening or using storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("data dir {path}: {message}")]
    DataDir { path: String, message: String },
    #[error("corrupt {what}: {message}")]
    Corrupt { what: &'static str, message: String },
}

impl From<StorageError> for std::io::Error {
    fn from(e: StorageError) -> Self {
        std::io::Error::other(e.to_string())
    }
}

/// Name of the lock file in a data dir.
pub const LOCK_FILE: &str = "tallyd.lock";

/// Takes the data dir's lock (`tallyd.lock`): see [`lock_dir`].
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StorageError> {
    lock_dir(dir, LOCK_FILE, "tallyd")
}

/// Takes an exclusive advisory lock on `dir/file` (held until the returned
/// file is dropped, i.e. for the life of the process; the lock file holds
/// the pid), creating the dir if needed; refuses with a clear message
/// naming `holder` if another process holds it.
pub fn lock_dir(dir: &Path, file: &str, holder: &str) -> Result<std::fs::File, StorageError> {
    use std::io::Write as _;
    let err = |message: String| StorageError::DataDir {
        path: dir.display().to_string(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create: {e}")))?;
    let path = dir.join(file);
    let lock_name = file;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| err(format!("cannot open {lock_name}: {e}")))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            let pid = pid.trim();
            let pid = if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            };
            return Err(err(format!(
                "another {holder} holds this data dir{pid}; stop it first or use another --data-dir"
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(err(format!("cannot lock {LOCK_FILE}: {e}")));
        }
    }
    let _ = file.set_len(0);
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

/// The write-ahead log kept before the oldest file's column families are
/// flushed: the most a restart after a crash replays (about 0.4 s).
pub const MAX_TOTAL_WAL_BYTES: u64 = 256 << 20;

/// Opens (creating if missing) the node's RocksDB under `dir/db`.
pub fn open_db(dir: &Path) -> Result<Arc<DB>, StorageError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // The small column families (Raft vote and commit index, state machine
    // meta) are written on every batch but never fill a memtable, so
    // without a cap they pin every write-ahead log file since the start
    // and a restart after a crash re-reads all of them (1.8 s after 3M
    // commands). Past this size RocksDB flushes the column families that
    // hold the oldest log file, which bounds the log a restart replays.
    opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    let cfs = ALL_CFS.iter().map(|name| {
        let mut cf_opts = Options::default();
        // Raft log entries live until the next snapshot's purge: compressing
        // them on every flush and compaction cost ~5% of a node's CPU.
        let compression = if *name == CF_LOG {
            rocksdb::DBCompressionType::None
        } else {
            rocksdb::DBCompressionType::Lz4
        };
        cf_opts.set_compression_type(compression);
        ColumnFamilyDescriptor::new(*name, cf_opts)
    });
    let db = DB::open_cf_descriptors(&opts, dir.join("db"), cfs)?;
    Ok(Arc::new(db))
}

/// Write options for every durable write: the WAL is fsynced before the write returns.
pub fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// Write options for writes made durable by a later synced write to the
/// same database (one WAL, recovered as a prefix): see the state machine.
pub fn unsynced() -> WriteOptions {
    WriteOptions::default()
}

/// The handle of a column family that `open_db` always creates.
pub fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, StorageError> {
    db.cf_handle(name).ok_or_else(|| StorageError::Corrupt {
        what: "database",
        message: format!("column family {name} missing"),
    })
}

/// Approximate on-disk size of the database in bytes.
pub fn data_size_bytes(db: &DB) -> u64 {
    ALL_CFS
        .iter()
        .filter_map(|name| db.cf_handle(name))
        .filter_map(|h| {
            db.property_int_value_cf(h, "rocksdb.total-sst-files-size")
                .ok()
                .flatten()
        })
        .sum::<u64>()
        + ALL_CFS
            .iter()
            .filter_map(|name| db.cf_handle(name))
            .filter_map(|h| {
                db.property_int_value_cf(h, "rocksdb.size-all-mem-tables")
                    .ok()
                    .flatten()
            })
            .sum::<u64>()
}
