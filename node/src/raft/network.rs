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

/// TCP connections per peer client: the primary and the spares that take
/// the hedged copies (see [`PeerClient`]).
pub const PEER_CONNECTIONS: usize = 3;
/// Least time an AppendEntries or vote waits for its answer before it is
/// also sent on the next spare connection (see [`PeerClient`]).
pub const HEDGE_AFTER_MIN: Duration = Duration::from_millis(15);
/// Most time before the next copy goes out.
pub const HEDGE_AFTER_MAX: Duration = Duration::from_millis(250);
/// Larger requests are not hedged (a second copy of a big append costs
/// more than the stall it would save).
pub const HEDGE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Latencies kept per peer to pick the hedge delay from.
const LATENCY_SAMPLES: usize = 16;
/// The hedge budget (see [`HedgeBudget`]), in tenths of a copy: what one
/// RPC earns (a fifth of a copy)...
const HEDGE_TENTHS_PER_RPC: u32 = 2;
/// ...what a copy costs...
const HEDGE_TENTHS_PER_COPY: u32 = 10;
/// ...and the most a quiet stretch saves up (a burst of ten copies).
const HEDGE_TENTHS_MAX: u32 = 100;

/// How many hedged copies a peer client may still send: each RPC earns a
/// fifth of a copy, up to ten copies saved (gRPC's retry throttling,
/// applied to hedges), so copies stay at most a fifth of the RPCs over
/// time. Without it an overloaded cluster, whose answers are slow but not
/// lost, could send up to three copies of everything: more load exactly
/// when it has none to spare, and every losing copy is cancelled, which
/// counts against the peer's HTTP/2 limit of resets before accept (past
/// it the server drops the connection).
#[derive(Debug)]
struct HedgeBudget {
    tenths: u32,
}

impl HedgeBudget {
    fn new() -> Self {
        HedgeBudget {
            tenths: HEDGE_TENTHS_MAX,
        }
    }

    /// One more RPC sent.
    fn earn(&mut self) {
        self.tenths = (self.tenths + HEDGE_TENTHS_PER_RPC).min(HEDGE_TENTHS_MAX);
    }

    /// Takes the price of one copy; false if the budget is spent.
    fn spend(&mut self) -> bool {
        if !self.can_spend() {
            return false;
        }
        self.tenths -= HEDGE_TENTHS_PER_COPY;
        true
    }

    fn can_spend(&self) -> bool {
        self.tenths >= HEDGE_TENTHS_PER_COPY
    }
}

/// Builds per-peer clients. Connections are lazy: nothing dials until the first RPC.
#[derive(Clone)]
pub struct NetworkFactory {
    pub cluster_id: String,
    pub transport: crate::transport::Transport,
}

/// One peer's client, over [`PEER_CONNECTIONS`] TCP connections, best
/// first. Every RPC goes out on the first one; an AppendEntries (heartbeats
/// included) or vote not answered within the hedge delay is also sent,
/// unchanged, on the next connection, and again on the one after after
/// another delay, and the first answer wins (its connection moves to the
/// front). Under packet loss a lost segment stalls a TCP connection, and
/// everything multiplexed on it, until a retransmission timeout (at least
/// 200 ms on Linux, doubling on each further loss), while the other
/// connections are most likely not stalled at the same moment: at 20% loss
/// each way one RPC stalls about a third of the time, all three copies about
/// 5% of the time (jepsen/README.md, *Availability*). Every copy is safe to
/// deliver twice or late: an append of entries the follower already has
/// changes nothing, and a vote request is answered from the persisted vote.
/// The hedge delay is 3 times the fastest quarter of the last
/// [`LATENCY_SAMPLES`] answers, within [`HEDGE_AFTER_MIN`]..[`HEDGE_AFTER_MAX`]:
/// well above a healthy round trip and fsync, so a loaded but healthy
/// link is rarely hedged.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    cluster_id: String,
    transport: crate::transport::Transport,
    /// The connections, best first (`None`: not dialed, or dropped after a
    /// transport error; dialed lazily).
    conns: [Option<RaftClient<Channel>>; PEER_CONNECTIONS],
    /// The last answers' latencies (ring of [`LATENCY_SAMPLES`]).
    latencies: Vec<Duration>,
    next_sample: usize,
    /// The current hedge delay (kept by [`PeerClient::record_latency`]).
    hedge_after: Duration,
    /// What the hedged copies may still cost.
    hedge_budget: HedgeBudget,
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
            conns: Default::default(),
            latencies: Vec::with_capacity(LATENCY_SAMPLES),
            next_sample: 0,
            hedge_after: HEDGE_AFTER_MAX,
            hedge_budget: HedgeBudget::new(),
            reachable: true,
        }
    }
}

impl PeerClient {
    /// Connection `slot` (0: the primary), dialed if it is not yet.
    fn conn(&mut self, slot: usize) -> Result<RaftClient<Channel>, Unreachable<TypeConfig>> {
        if let Some(c) = &self.conns[slot] {
            return Ok(c.clone());
        }
        let c = self.connect()?;
        self.conns[slot] = Some(c.clone());
        Ok(c)
    }

    fn connect(&self) -> Result<RaftClient<Channel>, Unreachable<TypeConfig>> {
        let channel = self
            .transport
            .channel(&self.addr, PEER_CONNECT_TIMEOUT)
            .map_err(|e| Unreachable::new(&std::io::Error::other(e)))?;
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES))
    }

    /// Remembers an answer's latency and refreshes the hedge delay (3 times
    /// the fastest quarter of the ring, once it is half full), so the RPC
    /// path reads one field instead of sorting the ring on every send.
    fn record_latency(&mut self, latency: Duration) {
        if self.latencies.len() < LATENCY_SAMPLES {
            self.latencies.push(latency);
        } else {
            self.latencies[self.next_sample] = latency;
        }
        self.next_sample = (self.next_sample + 1) % LATENCY_SAMPLES;
        if self.latencies.len() >= LATENCY_SAMPLES / 2 {
            let mut sorted = [Duration::ZERO; LATENCY_SAMPLES];
            let sorted = &mut sorted[..self.latencies.len()];
            sorted.copy_from_slice(&self.latencies);
            sorted.sort_unstable();
            self.hedge_after =
                (sorted[sorted.len() / 4] * 3).clamp(HEDGE_AFTER_MIN, HEDGE_AFTER_MAX);
        }
    }

    fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        if let Ok(v) = self.cluster_id.parse() {
            req.metadata_mut().insert(CLUSTER_METADATA_KEY, v);
        }
        req
    }

    /// Maps the failure of an RPC on connection `slot`. A transport-level
    /// failure drops that connection so the next call on it redials.
    fn status_error(&mut self, slot: usize, status: tonic::Status) -> RPCError<TypeConfig> {
        if is_transport_failure(&status) {
            self.conns[slot] = None;
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
        let data: bytes::Bytes = codec::encode(req)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?
            .into();
        let deadline = match kind {
            RpcKind::Append => option.hard_ttl().max(MIN_APPEND_DEADLINE),
            RpcKind::Vote | RpcKind::PreVote | RpcKind::TransferLeader => option.hard_ttl(),
        };
        let copies = if !matches!(kind, RpcKind::TransferLeader) && data.len() <= HEDGE_MAX_BYTES {
            PEER_CONNECTIONS
        } else {
            1
        };
        let started = tokio::time::Instant::now();
        let (slot, result) = self.send_hedged(kind, data, deadline, copies).await?;
        let latency = started.elapsed();
        if result.is_ok() {
            self.record_latency(latency);
            if slot > 0 {
                // The copy on a spare answered first: make that connection
                // the primary, the old primary the first spare.
                self.conns[..=slot].rotate_right(1);
                crate::metrics::METRICS
                    .peer_rpc_hedge_wins
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        crate::metrics::METRICS.peer_rpc(self.target, latency, result.is_ok());
        self.note_reachable(result.as_ref().err());
        let reply = result.map_err(|s| self.status_error(slot, s))?;
        codec::decode(&reply.into_inner().data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    /// Sends `data` on the primary connection and, while no copy has been
    /// answered, one more copy on the next connection every hedge delay (at
    /// most `copies` in all; a copy that fails at once makes the next go out
    /// at once). Returns the slot and result of the first success, or of
    /// the last failure when every copy failed. A connection that fails at
    /// the transport level is dropped (redialed on its next use).
    async fn send_hedged(
        &mut self,
        kind: RpcKind,
        data: bytes::Bytes,
        deadline: Duration,
        copies: usize,
    ) -> Result<(usize, RpcResult), RPCError<TypeConfig>> {
        use futures::StreamExt as _;
        let mut inflight = futures::stream::FuturesUnordered::new();
        let mut launched = 0;
        let mut next_copy_at = tokio::time::Instant::now();
        let mut last_failure = None;
        self.hedge_budget.earn();
        loop {
            // Launch the copies that are due (the first one at once).
            while launched < copies
                && (inflight.is_empty() || tokio::time::Instant::now() >= next_copy_at)
            {
                // A copy beside one still in flight costs budget; one sent
                // because every earlier copy failed at once does not.
                if !inflight.is_empty() && !self.hedge_budget.spend() {
                    break;
                }
                let slot = launched;
                launched += 1;
                let client = match self.conn(slot) {
                    Ok(c) => c,
                    Err(e) if slot == 0 => return Err(RPCError::Unreachable(e)),
                    Err(_) => continue,
                };
                if slot > 0 {
                    crate::metrics::METRICS
                        .peer_rpc_hedged
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let request = self.request(RaftPayload { data: data.clone() }, deadline);
                inflight.push(async move { (slot, send(kind, client, request).await) });
                next_copy_at = tokio::time::Instant::now() + self.hedge_after;
            }
            if inflight.is_empty() {
                // Every copy failed (the primary's was sent, or we returned).
                return match last_failure {
                    Some(failure) => Ok(failure),
                    None => Err(RPCError::Unreachable(Unreachable::new(
                        &std::io::Error::other("no connection to the peer"),
                    ))),
                };
            }
            let hedge_due = launched < copies && self.hedge_budget.can_spend();
            tokio::select! {
                Some((slot, result)) = inflight.next() => match result {
                    Ok(reply) => return Ok((slot, Ok(reply))),
                    Err(status) => {
                        if is_transport_failure(&status) {
                            self.conns[slot] = None;
                        }
                        last_failure = Some((slot, Err(status)));
                    }
                },
                () = tokio::time::sleep_until(next_copy_at), if hedge_due => {}
            }
        }
    }
}

/// A failure of the connection rather than an answer from the peer.
fn is_transport_failure(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    )
}

type RpcResult = Result<tonic::Response<RaftPayload>, tonic::Status>;

/// One RPC of `kind` on `client`.
async fn send(
    kind: RpcKind,
    mut client: RaftClient<Channel>,
    request: tonic::Request<RaftPayload>,
) -> RpcResult {
    match kind {
        RpcKind::Append => client.append_entries(request).await,
        RpcKind::Vote => client.vote(request).await,
        RpcKind::PreVote => client.pre_vote(request).await,
        RpcKind::TransferLeader => client.transfer_leader(request).await,
    }
}

#[derive(Clone, Copy)]
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
        let mut client = self.conn(0).map_err(StreamingError::Unreachable)?;
        // Snapshots of real data take a while: allow at least 10 minutes.
        let timeout = option.hard_ttl().max(Duration::from_secs(600));
        let request = self.request(tokio_stream::iter(chunks), timeout);
        tracing::info!(target_node = self.target, bytes = total, "sending snapshot");
        let reply = tokio::select! {
            r = client.install_snapshot(request) => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let reply = reply.map_err(|s| match self.status_error(0, s) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hedged_copies_are_limited_to_a_fifth_of_the_rpcs_after_a_saved_burst() {
        let mut budget = HedgeBudget::new();
        let burst = (0..100).take_while(|_| budget.spend()).count();
        assert_eq!(burst, 10);
        let mut copies = 0;
        for _ in 0..1000 {
            budget.earn();
            if budget.spend() {
                copies += 1;
            }
        }
        assert_eq!(copies, 200, "a fifth of 1000 RPCs");
        for _ in 0..1000 {
            budget.earn();
        }
        assert_eq!(budget.tenths, HEDGE_TENTHS_MAX);
    }
}
