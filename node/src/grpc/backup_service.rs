//! The public `tally.v1.Backup` service: streams a consistent backup of
//! this node's ledger (`crate::backup`) in 1 MiB chunks.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tally_proto::v1::backup_server::Backup as BackupRpc;
use tally_proto::v1::{BackupChunk, BackupRequest};
use tonic::{Code, Request, Response, Status};

use crate::ctx::NodeCtx;
use crate::grpc::status::status;

/// Bytes per streamed chunk.
const CHUNK_BYTES: usize = 1 << 20;

pub struct BackupService {
    pub ctx: Arc<NodeCtx>,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<BackupChunk, Status>> + Send>>;

#[tonic::async_trait]
impl BackupRpc for BackupService {
    type BackupStream = ChunkStream;

    async fn backup(
        &self,
        _req: Request<BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let db = self.ctx.db.clone();
        let checkpoints = self.ctx.checkpoints.clone();
        let cluster_id = self.ctx.config.cluster_id.clone();
        // A checkpoint first: the backup holds every write applied before it.
        let (file, info) = tokio::task::spawn_blocking(move || {
            checkpoints.checkpoint(true)?;
            crate::backup::create(&db, &cluster_id)
        })
        .await
        .map_err(|e| status(Code::Internal, "BACKUP_FAILED", e.to_string()))?
        .map_err(|e| status(Code::Internal, "BACKUP_FAILED", e.to_string()))?;
        tracing::info!(
            node_id = self.ctx.config.node_id,
            index = info.applied_index,
            records = info.records,
            bytes = file.len(),
            "backup taken"
        );
        let total = file.len() as u64;
        let chunks: Vec<Result<BackupChunk, Status>> = file
            .chunks(CHUNK_BYTES)
            .enumerate()
            .map(|(i, data)| {
                Ok(BackupChunk {
                    data: data.to_vec(),
                    applied_index: if i == 0 { info.applied_index } else { 0 },
                    state_hash: if i == 0 {
                        info.state_hash.clone()
                    } else {
                        String::new()
                    },
                    total_bytes: if i == 0 { total } else { 0 },
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
}
