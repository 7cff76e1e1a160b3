//! One Tally node: opens storage (after the data-dir identity check), starts
//! openraft, the group-commit writer and the gRPC server, and serves until
//! shutdown. Also owns the read barriers for each consistency level.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::{Config, ReadPolicy, ServerState, SnapshotPolicy};
use rocksdb::DB;
use tally_ledger::LedgerConfig;
use tally_proto::v1::admin_server::AdminServer;
use tally_proto::v1::ledger_server::LedgerServer;
use tally_proto::v1::raft_client::RaftClient;
use tally_proto::v1::raft_server::RaftServer;
use tally_proto::v1::{NodeStatus, ReadConsistency, ReadIndexRequest, ReadOptions};
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::grpc::admin_service::AdminService;
use crate::grpc::ledger_service::LedgerService;
use crate::grpc::raft_service::RaftService;
use crate::grpc::status::{not_leader, status};
use crate::raft::log_store::LogStore;
use crate::raft::network::{
    CLUSTER_METADATA_KEY, MAX_RAFT_MESSAGE_BYTES, NetworkFactory, lazy_channel,
};
use crate::raft::state_machine::{SharedState, StateMachineStore};
use crate::raft::types::{NodeId, Raft};
use crate::storage::{self, identity};
use crate::writer::Writer;

/// Longest a read waits for this node to apply far enough.
pub const READ_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest client gRPC message (16 MiB): bounds a SubmitBatch request.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub cluster_id: String,
    /// Address to bind the gRPC server to.
    pub listen_addr: SocketAddr,
    /// Address other nodes and clients use to reach this node.
    pub advertise_addr: String,
    /// Address for the HTTP health/metrics endpoint (`/healthz`, `/readyz`, `/metrics`), if any.
    pub http_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Take a snapshot after this many log entries since the last one.
    pub snapshot_every_entries: u64,
    /// Log entries kept after a snapshot (for followers slightly behind).
    pub keep_entries_after_snapshot: u64,
    pub ledger: LedgerConfig,
}

impl NodeConfig {
    pub fn new(
        node_id: NodeId,
        cluster_id: &str,
        listen_addr: SocketAddr,
        data_dir: PathBuf,
    ) -> Self {
        NodeConfig {
            node_id,
            cluster_id: cluster_id.to_string(),
            listen_addr,
            advertise_addr: listen_addr.to_string(),
            http_addr: None,
            data_dir,
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_every_entries: 20_000,
            keep_entries_after_snapshot: 1_000,
            ledger: LedgerConfig::default(),
        }
    }
}

/// When this node last heard from a leader, and the leader's commit index then.
#[derive(Default)]
pub struct LeaderContact {
    last: Mutex<Option<Instant>>,
    leader_commit: AtomicU64,
}

impl LeaderContact {
    pub fn heard(&self, leader_commit: u64) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Instant::now());
        }
        self.leader_commit
            .fetch_max(leader_commit, Ordering::Relaxed);
    }

    fn since_ms(&self) -> Option<u64> {
        self.last
            .lock()
            .ok()
            .and_then(|l| l.map(|t| t.elapsed().as_millis() as u64))
    }
}

/// State shared by the gRPC services of one node.
pub struct NodeCtx {
    pub config: NodeConfig,
    pub raft: Raft,
    pub writer: Writer,
    pub state: SharedState,
    pub applied: watch::Receiver<u64>,
    pub db: Arc<DB>,
    pub leader_contact: LeaderContact,
    channels: Mutex<HashMap<String, Channel>>,
    /// (applied index, hex state hash): hashing walks the whole ledger, so it
    /// is done at most once per applied index however often status is asked.
    hash_cache: Mutex<(u64, String)>,
}

impl NodeCtx {
    /// A snapshot of this node's Raft metrics (role, term, log indexes, membership, replication).
    pub fn metrics(&self) -> openraft::RaftMetrics<crate::raft::types::TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// The current leader's address, if known.
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.metrics();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// A cached lazy channel to another node.
    pub fn peer_channel(&self, addr: &str) -> Result<Channel, String> {
        let mut map = self
            .channels
            .lock()
            .map_err(|_| "channel cache poisoned".to_string())?;
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let c = lazy_channel(addr, Duration::from_millis(500))
            .map_err(|e| format!("bad address {addr}: {e}"))?;
        map.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    async fn wait_applied(&self, index: u64, reason: &str) -> Result<(), Status> {
        let mut rx = self.applied.clone();
        match tokio::time::timeout(READ_WAIT_TIMEOUT, rx.wait_for(|&applied| applied >= index))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Status::unavailable("node shutting down")),
            Err(_) => Err(status(
                Code::DeadlineExceeded,
                reason,
                format!(
                    "node {} has not applied index {index} within {} ms (applied {})",
                    self.config.node_id,
                    READ_WAIT_TIMEOUT.as_millis(),
                    *self.applied.borrow()
                ),
            )),
        }
    }

    /// Returns once a read at `opts` may be served from this node's state.
    pub async fn read_barrier(&self, opts: &ReadOptions) -> Result<(), Status> {
        match ReadConsistency::try_from(opts.consistency).unwrap_or(ReadConsistency::Linearizable) {
            ReadConsistency::Linearizable => {
                if self.raft.is_leader() {
                    return match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                        Ok(_) => Ok(()),
                        Err(_) => Err(not_leader(self.leader_addr().as_deref())),
                    };
                }
                // Follower read: ask the leader for its read index, then wait to apply it.
                let leader = self.leader_addr().ok_or_else(|| not_leader(None))?;
                let channel = self
                    .peer_channel(&leader)
                    .map_err(|e| status(Code::Unavailable, "NO_LEADER", e))?;
                let mut req = tonic::Request::new(ReadIndexRequest {});
                req.set_timeout(READ_WAIT_TIMEOUT);
                if let Ok(v) = self.config.cluster_id.parse() {
                    req.metadata_mut().insert(CLUSTER_METADATA_KEY, v);
                }
                let read_index = RaftClient::new(channel)
                    .read_index(req)
                    .await
                    .map_err(|s| {
                        status(
                            Code::Unavailable,
                            "NOT_LEADER",
                            format!("read index from leader {leader}: {}", s.message()),
                        )
                    })?
                    .into_inner()
                    .read_index;
                self.wait_applied(read_index, "READ_INDEX_NOT_APPLIED")
                    .await
            }
            ReadConsistency::AtLeastIndex => {
                self.wait_applied(opts.min_index, "INDEX_NOT_REACHED").await
            }
            ReadConsistency::Bounded => {
                if self.raft.is_leader() {
                    return Ok(());
                }
                let applied = *self.applied.borrow();
                let lag_entries = self
                    .leader_contact
                    .leader_commit
                    .load(Ordering::Relaxed)
                    .saturating_sub(applied);
                let since_ms = self.leader_contact.since_ms();
                if opts.max_lag_entries > 0 && lag_entries > opts.max_lag_entries {
                    return Err(status(
                        Code::FailedPrecondition,
                        "STALE_REPLICA",
                        format!(
                            "node {} lags {lag_entries} entries (bound {})",
                            self.config.node_id, opts.max_lag_entries
                        ),
                    ));
                }
                if opts.max_lag_ms > 0 && since_ms.is_none_or(|ms| ms > opts.max_lag_ms) {
                    return Err(status(
                        Code::FailedPrecondition,
                        "STALE_REPLICA",
                        format!(
                            "node {} last heard from a leader {} ago (bound {} ms)",
                            self.config.node_id,
                            since_ms
                                .map(|m| format!("{m} ms"))
                                .unwrap_or("never".into()),
                            opts.max_lag_ms
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The state hash at the current applied index, computed once per index.
    pub fn state_hash_cached(&self) -> (String, u64) {
        let applied = *self.applied.borrow();
        if let Ok(cache) = self.hash_cache.lock()
            && cache.0 == applied
            && !cache.1.is_empty()
        {
            return (cache.1.clone(), applied);
        }
        let (hash, applied) = match self.state.read() {
            Ok(st) => (hex::encode(st.ledger.state_hash()), st.applied_index()),
            Err(_) => return (String::new(), 0),
        };
        if let Ok(mut cache) = self.hash_cache.lock() {
            *cache = (applied, hash.clone());
        }
        (hash, applied)
    }

    /// This node's own status.
    pub fn node_status(&self) -> NodeStatus {
        let m = self.metrics();
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.config.node_id);
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let (hash, applied) = self.state_hash_cached();
        NodeStatus {
            node_id: self.config.node_id,
            addr: self.config.advertise_addr.clone(),
            role: role.into(),
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            has_leader: m.current_leader.is_some(),
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: applied,
            committed_index: m.local_committed.as_ref().map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.as_ref().map(|l| l.index).unwrap_or(0),
            cluster_id: self.config.cluster_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            state_hash: hash,
            data_size_bytes: storage::data_size_bytes(&self.db),
            matched_index: 0,
            voter,
            error: String::new(),
        }
    }
}

/// A started node: its context and the server task.
pub struct RunningNode {
    pub ctx: Arc<NodeCtx>,
    pub server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Opens storage, starts Raft and serves gRPC on `config.listen_addr` until `shutdown` resolves.
pub async fn start(
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningNode> {
    identity::check_or_create(&config.data_dir, &config.cluster_id, config.node_id)?;
    let db = storage::open_db(&config.data_dir)?;
    let raft_config = Config {
        cluster_name: config.cluster_id.clone(),
        heartbeat_interval: config.heartbeat_interval_ms,
        election_timeout_min: config.election_timeout_min_ms,
        election_timeout_max: config.election_timeout_max_ms,
        install_snapshot_timeout: 600_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(staggered_snapshot_interval(
            config.snapshot_every_entries,
            config.node_id,
        )),
        max_in_snapshot_log_to_keep: config.keep_entries_after_snapshot,
        max_payload_entries: 64,
        // A node coming back from a partition asks before campaigning, so it does not
        // unseat a healthy leader with its inflated term (found by the jepsen suite).
        enable_pre_vote: Some(true),
        ..Default::default()
    }
    .validate()?;
    let log_store = LogStore::new(db.clone())?;
    let sm = StateMachineStore::open(db.clone(), config.ledger)?;
    let state = sm.shared();
    let applied = sm.applied_watch();
    let network = NetworkFactory {
        cluster_id: config.cluster_id.clone(),
    };
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        network,
        log_store,
        sm,
    )
    .await?;
    let writer = Writer::start(raft.clone());
    let ctx = Arc::new(NodeCtx {
        config: config.clone(),
        raft: raft.clone(),
        writer,
        state,
        applied,
        db,
        leader_contact: LeaderContact::default(),
        channels: Mutex::new(HashMap::new()),
        hash_cache: Mutex::new((0, String::new())),
    });
    let ledger = LedgerServer::new(LedgerService { ctx: ctx.clone() })
        .max_decoding_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_CLIENT_MESSAGE_BYTES);
    // Perpetual-futures queries, served by the same ledger service.
    let perps = tally_proto::v1::perps_server::PerpsServer::new(LedgerService { ctx: ctx.clone() })
        .max_decoding_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_CLIENT_MESSAGE_BYTES);
    let admin = AdminServer::new(AdminService {
        ctx: ctx.clone(),
        membership_lock: tokio::sync::Mutex::new(()),
    });
    let raft_svc = RaftServer::new(RaftService { ctx: ctx.clone() })
        .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen_addr))?;
    // Accepted connections need TCP_NODELAY set here: the builder's
    // `tcp_nodelay` only applies to listeners tonic binds itself. Without it
    // a reply written after a flow-control frame waited for the client's
    // delayed ACK: every request above ~5 KB took 40 ms longer.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    if let Some(http_addr) = config.http_addr {
        let http = tokio::net::TcpListener::bind(http_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {http_addr} (http): {e}"))?;
        tokio::spawn(crate::health::serve_http(ctx.clone(), http));
    }
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(crate::health::drive_grpc_health(
        ctx.clone(),
        health_reporter,
    ));
    let raft_for_shutdown = raft.clone();
    let server = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(health_service)
            .add_service(ledger)
            .add_service(perps)
            .add_service(admin)
            .add_service(raft_svc)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        let _ = raft_for_shutdown.shutdown().await;
        result
    });
    Ok(RunningNode { ctx, server })
}

/// The snapshot interval a node actually uses: `every_entries` stretched by
/// 0, 1/8, 2/8 or 3/8 by node id, so that the nodes of a cluster do not all
/// build a snapshot at the same log index. (On shared cores three
/// simultaneous builds of a large ledger saturated the machine and pushed
/// write p99 from ~10 ms to ~400 ms for a few seconds.)
pub fn staggered_snapshot_interval(every_entries: u64, node_id: u64) -> u64 {
    let every_entries = every_entries.max(1);
    every_entries.saturating_add(every_entries / 8 * (node_id % 4))
}

#[cfg(test)]
mod snapshot_interval_tests {
    use super::staggered_snapshot_interval;

    #[test]
    fn nodes_get_different_snapshot_intervals_never_below_the_configured_one() {
        let got: Vec<u64> = (1..=4)
            .map(|id| staggered_snapshot_interval(20_000, id))
            .collect();
        assert_eq!(got, vec![22_500, 25_000, 27_500, 20_000]);
        assert_eq!(staggered_snapshot_interval(0, 3), 1);
        assert_eq!(staggered_snapshot_interval(u64::MAX, 3), u64::MAX);
    }
}
