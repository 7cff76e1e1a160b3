//! Backups on [`Client`]: a consistent backup of the leader's ledger as the
//! bytes of a backup file (see `tallyd restore`). The whole file is held
//! in memory (about the size of the ledger's records).

use tally_proto::v1::BackupRequest;
use tally_proto::v1::backup_client::BackupClient;

use crate::client::{Client, MAX_MESSAGE_BYTES, with_timeout};
use crate::error::ClientError;
use crate::retry::{CallFailure, Policy, Route};

/// A backup file and what it holds.
#[derive(Clone, Debug)]
pub struct Backup {
    /// The backup file's bytes (write them to a file for `tallyd restore`).
    pub bytes: Vec<u8>,
    /// The applied log index the backup is consistent at.
    pub applied_index: u64,
    /// The ledger's state hash at that index.
    pub state_hash: String,
}

impl Client {
    /// A consistent backup of the leader's ledger (every record at one
    /// applied index, with the state hash there).
    pub async fn backup(&self) -> Result<Backup, ClientError> {
        let policy = Policy {
            route: Route::Leader { remember: false },
            cap_attempts: false,
            write: false,
            observe: false,
        };
        self.run(policy, |channel, timeout| async move {
            let mut client =
                BackupClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
            let mut stream = client
                .backup(with_timeout(BackupRequest {}, timeout))
                .await?
                .into_inner();
            let mut backup = Backup {
                bytes: Vec::new(),
                applied_index: 0,
                state_hash: String::new(),
            };
            let mut expected = 0u64;
            while let Some(chunk) = stream.message().await? {
                if backup.bytes.is_empty() {
                    backup.applied_index = chunk.applied_index;
                    backup.state_hash = chunk.state_hash;
                    expected = chunk.total_bytes;
                    backup.bytes.reserve(expected.min(1 << 34) as usize);
                }
                backup.bytes.extend_from_slice(&chunk.data);
            }
            if backup.bytes.len() as u64 != expected {
                return Err(tonic::Status::data_loss(format!(
                    "backup stream ended at {} of {expected} bytes",
                    backup.bytes.len()
                )));
            }
            Ok(backup)
        })
        .await
        .map_err(CallFailure::into_client_error)
    }
}
