//! `tallyctl backup --out FILE`: a consistent backup of the leader's ledger
//! written to FILE (via FILE.tmp, fsynced, then renamed), for
//! `tallyd restore`.

use std::io::Write as _;
use std::path::PathBuf;

use serde_json::json;
use tally_client::Client;

use crate::run::{Outcome, interruptible};

pub async fn run(client: &Client, out: PathBuf) -> Outcome {
    interruptible(client.backup(), false, |backup| {
        let tmp = out.with_extension("tmp");
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(&backup.bytes)?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &out)) {
            return Outcome::error(
                1,
                format!("error: cannot write {}: {e}", out.display()),
                "IO",
                &e.to_string(),
            );
        }
        Outcome::Ok {
            text: format!(
                "backup of index {} (state hash {}, {} bytes) written to {}",
                backup.applied_index,
                backup.state_hash,
                backup.bytes.len(),
                out.display()
            ),
            json: json!({
                "applied_index": backup.applied_index,
                "state_hash": backup.state_hash,
                "bytes": backup.bytes.len(),
                "file": out.display().to_string(),
            }),
        }
    })
    .await
}
