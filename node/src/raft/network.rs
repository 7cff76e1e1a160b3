//! The Raft client side: sends openraft messages to peers over gRPC (the
//! `tally.v1.Raft` service), streaming snapshots in bounded chunks.

use std::future::Future;
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkV2};
use tally_proto::v1::raft_client::RaftClient;
use tally_proto::v1::{RaftPayload, SnapshotChunk};
use tonic::transport::Channel;

use crate::codec;
use crate::raft::types::{Node, NodeId, Snapshot, SnapshotData, TypeConfig, Vote};

/// gRPC metadata key carrying the sender's cluster id on every Raft message.
pub const CLUSTER_METADATA_KEY: &str = "tally-cluster";

/// Bytes of snapshot data per streamed chunk (1 MiB).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Largest gRPC message between nodes (64 MiB): bounds an AppendEntries batch.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Least gRPC deadline of an AppendEntries RPC. openraft hands replication
/// the heartbeat interval as its time to live (`RPCOption::hard_ttl`), which
/// is a heartbeat's budget, not an append's: a follower's fsync under load
/// (100-250 ms seen on a shared 2-core machine) or one TCP retransmission
/// under packet loss (200 ms minimum RTO on Linux) outlasts it, and an
/// append cut off at its deadline is sent again on the same connection,
/// behind the same lost segment, so short deadlines turn a slow link into
/// a dead one (jepsen/README.md, *Server findings* 1). Only the stream to
/// that one follower waits; heartbeats carry their own timeout in openraft.
pub const MIN_APPEND_DEADLINE: Duration = Duration::from_secs(1);

/// Time to open a connection to a peer. Above Linux's 1 s initial SYN
/// retransmission timeout: under packet loss a lost SYN or SYN-ACK is
/// common (36% at 20% loss each way), and with 500 ms such a connect always
/// failed and the replication stream backed off and dialed again.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(2_500);

/// Builds per-peer clients. Connections are lazy: nothing dials until the first RPC.
#[derive(Clone)]
pub struct NetworkFactory {
    pub cluster_id: String,
    pub transport: crate::transport::Transport,
}

/// One peer's client.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    cluster_id: String,
    transport: crate::transport::Transport,
    client: Option<RaftClient<Channel>>,
    /// Whether the last RPC reached the peer (a change is logged once).
    reachable: bool,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
            cluster_id: self.cluster_id.clone(),
            transport: self.transport.clone(),
            client: None,
            reachable: true,
        }
    }
}

impl PeerClient {
    fn client(&mut self) -> Result<RaftClient<Channel>, Unreachable<TypeConfig>> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let channel = self
            .transport
            .channel(&self.addr, PEER_CONNECT_TIMEOUT)
            .map_err(|e| Unreachable::new(&std::io::Error::other(e)))?;
        let c = RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
        self.client = Some(c.clone());
        Ok(c)
    }

    fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        if let Ok(v) = self.cluster_id.parse() {
            req.metadata_mut().insert(CLUSTER_METADATA_KEY, v);
        }
        req
    }

    fn status_error(&mut self, status: tonic::Status) -> RPCError<TypeConfig> {
        // A transport-level failure: drop the channel so the next call redials.
        if matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown
        ) {
            self.client = None;
            return RPCError::Unreachable(Unreachable::new(&status));
        }
        RPCError::Network(NetworkError::new(&status))
    }

    /// Logs the peer becoming unreachable, or reachable again, once per change.
    fn note_reachable(&mut self, error: Option<&tonic::Status>) {
        let ok = error.is_none();
        if ok == self.reachable {
            return;
        }
        self.reachable = ok;
        match error {
            None => tracing::info!(peer = self.target, addr = %self.addr, "peer reachable again"),
            Some(status) => tracing::warn!(
                peer = self.target,
                addr = %self.addr,
                error = %error_chain(status),
                "peer unreachable"
            ),
        }
    }

    async fn unary<Req, Resp>(
        &mut self,
        kind: RpcKind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        let data = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self.client().map_err(RPCError::Unreachable)?;
        let deadline = match kind {
            RpcKind::Append => option.hard_ttl().max(MIN_APPEND_DEADLINE),
            RpcKind::Vote | RpcKind::PreVote | RpcKind::TransferLeader => option.hard_ttl(),
        };
        let request = self.request(RaftPayload { data }, deadline);
        let started = std::time::Instant::now();
        let result = match kind {
            RpcKind::Append => client.append_entries(request).await,
            RpcKind::Vote => client.vote(request).await,
            RpcKind::PreVote => client.pre_vote(request).await,
            RpcKind::TransferLeader => client.transfer_leader(request).await,
        };
        crate::metrics::METRICS.peer_rpc(self.target, started.elapsed(), result.is_ok());
        self.note_reachable(result.as_ref().err());
        let reply = result.map_err(|s| self.status_error(s))?;
        codec::decode(&reply.into_inner().data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

enum RpcKind {
    Append,
    Vote,
    PreVote,
    TransferLeader,
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(RpcKind::Append, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(RpcKind::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(RpcKind::PreVote, &rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(RpcKind::TransferLeader, &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let vote_bytes =
            codec::encode(&vote).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let meta_bytes = codec::encode(&snapshot.meta)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let data = snapshot.snapshot.into_inner();
        let total = data.len();
        let mut chunks = Vec::with_capacity(total / SNAPSHOT_CHUNK_BYTES + 1);
        let mut offset = 0;
        loop {
            let end = (offset + SNAPSHOT_CHUNK_BYTES).min(total);
            let first = offset == 0;
            chunks.push(SnapshotChunk {
                vote: if first {
                    vote_bytes.clone()
                } else {
                    Vec::new()
                },
                meta: if first {
                    meta_bytes.clone()
                } else {
                    Vec::new()
                },
                data: data[offset..end].to_vec(),
            });
            offset = end;
            if offset >= total {
                break;
            }
        }
        let mut client = self.client().map_err(StreamingError::Unreachable)?;
        // Snapshots of real data take a while: allow at least 10 minutes.
        let timeout = option.hard_ttl().max(Duration::from_secs(600));
        let request = self.request(tokio_stream::iter(chunks), timeout);
        tracing::info!(target_node = self.target, bytes = total, "sending snapshot");
        let reply = tokio::select! {
            r = client.install_snapshot(request) => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let reply = reply.map_err(|s| match self.status_error(s) {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            RPCError::Network(n) => StreamingError::Network(n),
            other => StreamingError::Network(NetworkError::new(&other)),
        })?;
        codec::decode(&reply.into_inner().data)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}

/// A status with its causes (a TLS or connect failure is in the source
/// chain, not in the message).
fn error_chain(status: &tonic::Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    let mut depth = 0;
    while let Some(cause) = source
        && depth < 8
    {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
        depth += 1;
    }
    text
}
