//! The data dir's identity file (`tally-node.json`): which cluster and node a
//! data dir belongs to. A node started with a different node id or cluster id
//! refuses the dir instead of corrupting two clusters.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StorageError;

/// Name of the identity file inside a data dir.
pub const IDENTITY_FILE: &str = "tally-node.json";

/// Format of the on-disk data; bumped on incompatible changes.
pub const DATA_FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: u64,
    pub format_version: u32,
}

/// Checks (or, for an empty dir, writes) the identity of `dir`.
pub fn check_or_create(
    dir: &Path,
    cluster_id: &str,
    node_id: u64,
) -> Result<Identity, StorageError> {
    let path = dir.join(IDENTITY_FILE);
    let err = |message: String| StorageError::DataDir {
        path: dir.display().to_string(),
        message,
    };
    let wanted = Identity {
        cluster_id: cluster_id.to_string(),
        node_id,
        format_version: DATA_FORMAT_VERSION,
    };
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("cannot read {IDENTITY_FILE}: {e}")))?;
        let found: Identity = serde_json::from_str(&text)
            .map_err(|e| err(format!("{IDENTITY_FILE} is not valid: {e}")))?;
        if found.cluster_id != wanted.cluster_id {
            return Err(err(format!(
                "belongs to cluster '{}', not '{}'; refusing to start (point --data-dir at this cluster's own dir)",
                found.cluster_id, wanted.cluster_id
            )));
        }
        if found.node_id != wanted.node_id {
            return Err(err(format!(
                "belongs to node {}, not node {}; refusing to start (each node needs its own data dir)",
                found.node_id, wanted.node_id
            )));
        }
        if found.format_version != DATA_FORMAT_VERSION {
            return Err(err(format!(
                "has data format {}, this binary reads format {DATA_FORMAT_VERSION}",
                found.format_version
            )));
        }
        return Ok(found);
    }
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create: {e}")))?;
    if dir.join("db").exists() {
        return Err(err(format!(
            "has a database but no {IDENTITY_FILE}; refusing to adopt it"
        )));
    }
    let text = serde_json::to_string_pretty(&wanted).map_err(|e| err(e.to_string()))?;
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| err(format!("cannot write identity: {e}")))?;
    std::fs::rename(&tmp, &path).map_err(|e| err(format!("cannot write identity: {e}")))?;
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_written_once_then_enforced() {
        let dir = tempfile::tempdir().unwrap();
        check_or_create(dir.path(), "c1", 1).unwrap();
        check_or_create(dir.path(), "c1", 1).unwrap();
        let wrong_node = check_or_create(dir.path(), "c1", 2)
            .unwrap_err()
            .to_string();
        assert!(wrong_node.contains("belongs to node 1"), "{wrong_node}");
        let wrong_cluster = check_or_create(dir.path(), "c2", 1)
            .unwrap_err()
            .to_string();
        assert!(
            wrong_cluster.contains("belongs to cluster 'c1'"),
            "{wrong_cluster}"
        );
    }
}
