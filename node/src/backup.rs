//! Backups and restore. A backup is every ledger record of one node at one
//! applied index (read from a RocksDB snapshot: consistent, no lock on the
//! live state), with the state hash there, in a self-checking file:
//!
//! ```text
//! file = "TALLYBAK" | u32 format version (1, big-endian) | body | blake3(body) (32 bytes)
//! body = bincode BackupBody { cluster_id, applied_index, state_hash, records }
//! ```
//!
//! `tallyd restore` writes the records of a verified backup into a fresh
//! data dir (refusing one that has a database); a new cluster whose nodes
//! were all restored from the same backup and then initialized
//! (`tallyctl cluster init`) starts from exactly that ledger state: same
//! balances, holds, positions, idempotency table and Kafka ingest offsets,
//! same state hash. Its Raft log starts afresh.

use std::path::Path;

use rocksdb::{DB, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};
use tally_ledger::{Ledger, LedgerConfig};

use crate::codec;
use crate::raft::state_machine::KEY_LAST_APPLIED;
use crate::raft::types::LogId;
use crate::storage::{CF_SM, CF_SM_META, cf, identity, open_db, synced};

const MAGIC: &[u8; 8] = b"TALLYBAK";
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct BackupBody {
    cluster_id: String,
    applied_index: u64,
    state_hash: String,
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a backup is of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    pub cluster_id: String,
    pub applied_index: u64,
    pub state_hash: String,
    pub records: usize,
}

/// A consistent backup of `db`'s ledger: the file's bytes and what it holds.
/// Validates the records (rebuilds the ledger) to compute the state hash.
pub fn create(db: &DB, cluster_id: &str) -> Result<(Vec<u8>, BackupInfo), std::io::Error> {
    let view = db.snapshot();
    let applied: Option<LogId> = match view
        .get_cf(cf(db, CF_SM_META)?, KEY_LAST_APPLIED)
        .map_err(std::io::Error::other)?
    {
        Some(bytes) => codec::decode(&bytes)?,
        None => None,
    };
    let mut records = Vec::new();
    for item in view.iterator_cf(cf(db, CF_SM)?, IteratorMode::Start) {
        let (k, v) = item.map_err(std::io::Error::other)?;
        records.push((k.to_vec(), v.to_vec()));
    }
    drop(view);
    let ledger = Ledger::from_records(LedgerConfig::default(), records.iter().cloned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let body = BackupBody {
        cluster_id: cluster_id.to_string(),
        applied_index: applied.map_or(0, |l| l.index),
        state_hash: hex::encode(ledger.state_hash()),
        records,
    };
    let info = BackupInfo {
        cluster_id: body.cluster_id.clone(),
        applied_index: body.applied_index,
        state_hash: body.state_hash.clone(),
        records: body.records.len(),
    };
    let encoded = codec::encode(&body)?;
    let mut file = Vec::with_capacity(encoded.len() + 44);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    file.extend_from_slice(&encoded);
    file.extend_from_slice(blake3::hash(&encoded).as_bytes());
    Ok((file, info))
}

fn invalid(message: String) -> anyhow::Error {
    anyhow::anyhow!("not a usable backup: {message}")
}

/// Reads and checks a backup file: magic, version, checksum, records (the
/// ledger is rebuilt and its hash compared with the recorded one).
fn read(path: &Path) -> anyhow::Result<BackupBody> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if bytes.len() < 44 || &bytes[..8] != MAGIC {
        return Err(invalid("no TALLYBAK header".into()));
    }
    let version = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != FORMAT_VERSION {
        return Err(invalid(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        )));
    }
    let (body, sum) = bytes[12..].split_at(bytes.len() - 12 - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err(invalid("checksum mismatch (truncated or corrupted)".into()));
    }
    let body: BackupBody = codec::decode_snapshot(body).map_err(|e| invalid(e.to_string()))?;
    let ledger = Ledger::from_records(LedgerConfig::default(), body.records.iter().cloned())
        .map_err(|e| invalid(format!("records: {e}")))?;
    let hash = hex::encode(ledger.state_hash());
    if hash != body.state_hash {
        return Err(invalid(format!(
            "state hash {hash} differs from the recorded {}",
            body.state_hash
        )));
    }
    Ok(body)
}

/// Restores a verified backup into a fresh data dir for node `node_id` of
/// cluster `cluster_id` (the backup's own cluster id unless given).
pub fn restore(
    from: &Path,
    data_dir: &Path,
    node_id: u64,
    cluster_id: Option<&str>,
) -> anyhow::Result<BackupInfo> {
    let body = read(from)?;
    if data_dir.join("db").exists() {
        anyhow::bail!(
            "{} already has a database; restore only into a new, empty data dir",
            data_dir.display()
        );
    }
    let cluster_id = cluster_id.unwrap_or(&body.cluster_id).to_string();
    let _lock = crate::storage::lock_data_dir(data_dir)?;
    identity::check_or_create(data_dir, &cluster_id, node_id)?;
    let db = open_db(data_dir)?;
    let mut batch = WriteBatch::default();
    let sm = cf(&db, CF_SM)?;
    for (k, v) in &body.records {
        batch.put_cf(sm, k, v);
    }
    db.write_opt(batch, &synced())?;
    Ok(BackupInfo {
        cluster_id,
        applied_index: body.applied_index,
        state_hash: body.state_hash,
        records: body.records.len(),
    })
}
