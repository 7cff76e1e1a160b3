//! Server side of the node-to-node `tally.v1.Raft` service: hands openraft
//! messages to the local Raft, assembles streamed snapshots, answers read
//! index requests for follower reads, and records when the leader was last
//! heard from (for bounded-staleness reads).

use std::sync::Arc;

use futures::StreamExt;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use tally_proto::v1::raft_server::Raft as RaftRpc;
use tally_proto::v1::{RaftPayload, ReadIndexRequest, ReadIndexResponse, SnapshotChunk};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::codec;
use crate::ctx::NodeCtx;
use crate::grpc::status::{invalid, not_leader, status};
use crate::raft::network::CLUSTER_METADATA_KEY;
use crate::raft::types::{Snapshot, SnapshotMeta, TypeConfig, Vote};

/// Largest snapshot accepted from a peer (16 GiB).
pub const MAX_SNAPSHOT_BYTES: usize = 16 * 1024 * 1024 * 1024;

pub struct RaftService {
    pub ctx: Arc<NodeCtx>,
}

impl RaftService {
    fn check_cluster<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let theirs = req
            .metadata()
            .get(CLUSTER_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if theirs != self.ctx.config.cluster_id {
            return Err(status(
                Code::FailedPrecondition,
                "WRONG_CLUSTER",
                format!(
                    "this node belongs to cluster '{}', the sender to '{theirs}'",
                    self.ctx.config.cluster_id
                ),
            ));
        }
        Ok(())
    }
}

fn decode<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, Status> {
    codec::decode(data).map_err(|e| invalid("MALFORMED_RAFT_MESSAGE", e.to_string()))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let data = codec::encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload { data: data.into() }))
}

fn raft_err(e: impl std::fmt::Display) -> Status {
    status(Code::Unavailable, "RAFT_ERROR", e.to_string())
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_cluster(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.get_ref().data)?;
        let leader_commit = rpc.leader_commit.as_ref().map(|l| l.index).unwrap_or(0);
        let resp = self.ctx.raft.append_entries(rpc).await.map_err(raft_err)?;
        if resp.is_success() {
            self.ctx.leader_contact.heard(leader_commit);
        }
        encode(&resp)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.check_cluster(&req)?;
        let rpc: VoteRequest<TypeConfig> = decode(&req.get_ref().data)?;
        let resp = self.ctx.raft.vote(rpc).await.map_err(raft_err)?;
        encode(&resp)
    }

    async fn pre_vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.check_cluster(&req)?;
        let rpc: VoteRequest<TypeConfig> = decode(&req.get_ref().data)?;
        let resp = self.ctx.raft.pre_vote(rpc).await.map_err(raft_err)?;
        encode(&resp)
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_cluster(&req)?;
        let rpc: TransferLeaderRequest<TypeConfig> = decode(&req.get_ref().data)?;
        let resp = self
            .ctx
            .raft
            .handle_transfer_leader(rpc)
            .await
            .map_err(raft_err)?;
        encode(&resp)
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_cluster(&req)?;
        let mut stream = req.into_inner();
        let mut vote: Option<Vote> = None;
        let mut meta: Option<SnapshotMeta> = None;
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if vote.is_none() {
                vote = Some(decode(&chunk.vote)?);
                meta = Some(decode(&chunk.meta)?);
            }
            if data.len() + chunk.data.len() > MAX_SNAPSHOT_BYTES {
                return Err(invalid(
                    "SNAPSHOT_TOO_LARGE",
                    format!("snapshot exceeds {MAX_SNAPSHOT_BYTES} bytes"),
                ));
            }
            data.extend_from_slice(&chunk.data);
        }
        let (Some(vote), Some(meta)) = (vote, meta) else {
            return Err(invalid("EMPTY_SNAPSHOT", "snapshot stream had no chunks"));
        };
        let snapshot = Snapshot {
            meta,
            snapshot: std::io::Cursor::new(data),
        };
        let resp = self
            .ctx
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(raft_err)?;
        encode(&resp)
    }

    async fn read_index(
        &self,
        req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        self.check_cluster(&req)?;
        // Only the leader answers (a follower's round asking a follower that
        // believes another node leads must not be forwarded on): the round
        // is shared with this node's own linearizable reads.
        if !self.ctx.raft.is_leader() {
            return Err(not_leader(self.ctx.leader_addr().as_deref()));
        }
        match self.ctx.batched_read_index().await {
            Ok(read_index) => Ok(Response::new(ReadIndexResponse { read_index })),
            Err(_) => Err(not_leader(self.ctx.leader_addr().as_deref())),
        }
    }
}
