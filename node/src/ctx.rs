//! The state one node's services share ([`NodeCtx`]): config, Raft handle,
//! group-commit writer, the state machine's shared state and applied-index
//! watch, the database, the Kafka runtime, when the leader was last heard from
//! ([`LeaderContact`]) and a cache of channels to peers. Also what is derived
//! from it without waiting: Raft metrics, the leader's address, this node's
//! status and its state hash, and whether this node was removed from the
//! cluster ([`NodeCtx::removed`]). The read barriers built on it are in `reads`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use rocksdb::DB;
use tally_proto::v1::NodeStatus;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::config::NodeConfig;
use crate::kafka::KafkaRuntime;
use crate::raft::state_machine::SharedState;
use crate::raft::types::{Raft, TypeConfig};
use crate::storage;
use crate::writer::Writer;

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

    /// The highest commit index a leader has reported to this node.
    pub fn leader_commit(&self) -> u64 {
        self.leader_commit.load(Ordering::Relaxed)
    }

    /// Milliseconds since a leader was last heard from (`None`: never).
    pub fn since_ms(&self) -> Option<u64> {
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
    /// The state machine's checkpoints (a backup forces one first).
    pub checkpoints: Arc<crate::raft::checkpoint::Checkpoints>,
    pub leader_contact: LeaderContact,
    /// Kafka ingest and publishing state (inactive without Kafka config).
    pub kafka: Arc<KafkaRuntime>,
    /// How this node dials its peers (plain or TLS).
    pub transport: crate::transport::Transport,
    channels: Mutex<HashMap<String, Channel>>,
    /// (applied index, hex state hash): hashing walks the whole ledger, so it
    /// is done at most once per applied index however often status is asked.
    hash_cache: Mutex<(u64, String)>,
    /// Set once a peer reported this node's id as retired (a removed node
    /// hears nothing from the leader, so it must ask; see `removal`).
    removed_by_peer: AtomicBool,
    /// Queue of the read-index round task (`reads::start_read_rounds`).
    pub read_rounds: OnceLock<tokio::sync::mpsc::Sender<crate::reads::ReadIndexReply>>,
}

impl NodeCtx {
    pub fn new(
        config: NodeConfig,
        raft: Raft,
        writer: Writer,
        state: SharedState,
        applied: watch::Receiver<u64>,
        checkpoints: Arc<crate::raft::checkpoint::Checkpoints>,
        kafka: Arc<KafkaRuntime>,
    ) -> Self {
        NodeCtx {
            config,
            raft,
            writer,
            state,
            applied,
            db: checkpoints.db(),
            checkpoints,
            leader_contact: LeaderContact::default(),
            kafka,
            transport: crate::transport::Transport::default(),
            channels: Mutex::new(HashMap::new()),
            hash_cache: Mutex::new((0, String::new())),
            removed_by_peer: AtomicBool::new(false),
            read_rounds: OnceLock::new(),
        }
    }

    /// The same context dialing peers with `transport` (TLS or plain).
    pub fn with_transport(mut self, transport: crate::transport::Transport) -> Self {
        self.transport = transport;
        self
    }

    /// A snapshot of this node's Raft metrics (role, term, log indexes, membership, replication).
    pub fn metrics(&self) -> openraft::RaftMetrics<TypeConfig> {
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

    /// How long a leader may go without a majority acknowledging it before it
    /// stops taking writes: the soonest the followers can have elected
    /// another leader (their leader lease, `election_timeout_max`, plus the
    /// shortest election timeout, `election_timeout_min`, after the last
    /// heartbeat they got, which is no earlier than the last one acked).
    pub fn quorum_contact_limit(&self) -> Duration {
        Duration::from_millis(
            self.config.election_timeout_min_ms + self.config.election_timeout_max_ms,
        )
    }

    /// If this node leads a cluster of two or more voters and no majority
    /// has acknowledged it for longer than [`Self::quorum_contact_limit`]
    /// (it is cut off or its followers are gone), for how long. A write it
    /// proposed now could not commit, and a new leader may already serve.
    pub fn leader_out_of_contact(&self) -> Option<Duration> {
        use openraft::Instant as _;
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        if m.state != ServerState::Leader
            || m.membership_config
                .membership()
                .voter_ids()
                .nth(1)
                .is_none()
        {
            return None;
        }
        // None: not acknowledged yet since it was elected (a fresh leader).
        let age = m.last_quorum_acked.as_ref()?.elapsed();
        (age > self.quorum_contact_limit()).then_some(age)
    }

    /// Resolves once [`Self::leader_out_of_contact`] says so (checked every
    /// heartbeat interval), with the time since the last quorum ack.
    pub async fn lost_quorum_contact(&self) -> Duration {
        let every = Duration::from_millis(self.config.heartbeat_interval_ms.max(10));
        loop {
            if let Some(age) = self.leader_out_of_contact() {
                return age;
            }
            tokio::time::sleep(every).await;
        }
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
        let c = self.transport.channel(addr, Duration::from_millis(500))?;
        map.insert(addr.to_string(), c.clone());
        Ok(c)
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

    /// Records that a peer reported this node as removed.
    pub fn mark_removed(&self) {
        self.removed_by_peer.store(true, Ordering::Relaxed);
    }

    /// Whether this node was removed from the cluster: a peer said so, or
    /// the membership it applied retired its id or (once it has one) no
    /// longer lists it. Node ids are never reused, so this is for good.
    pub fn removed(&self) -> bool {
        if self.removed_by_peer.load(Ordering::Relaxed) {
            return true;
        }
        let Ok(st) = self.state.read() else {
            return false;
        };
        let id = self.config.node_id;
        st.retired_node_ids.contains(&id)
            || (st.membership.log_id().is_some()
                && !st.membership.membership().nodes().any(|(n, _)| *n == id))
    }

    /// This node's own status; `with_hash`: the state hash too (it reads
    /// the whole ledger under the state lock, once per applied index).
    pub fn node_status(&self, with_hash: bool) -> NodeStatus {
        let m = self.metrics();
        let removed = self.removed();
        let voter = !removed
            && m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == self.config.node_id);
        let role = match m.state {
            _ if removed => "removed",
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let leader_contact_ms = match m.state {
            ServerState::Leader => None,
            _ => self.leader_contact.since_ms(),
        };
        let (hash, applied) = if with_hash {
            self.state_hash_cached()
        } else {
            (String::new(), *self.applied.borrow())
        };
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
            version: crate::version::RELEASE_VERSION.into(),
            state_hash: hash,
            data_size_bytes: storage::data_size_bytes(&self.db),
            matched_index: 0,
            voter,
            error: String::new(),
            removed,
            leader_contact_ms,
            max_cluster_version: crate::version::max_supported(),
            cluster_version: self.cluster_version(),
            commit: crate::GIT_COMMIT.into(),
        }
    }

    /// The cluster version this node has applied.
    pub fn cluster_version(&self) -> u32 {
        self.state
            .read()
            .map(|st| st.ledger.cluster_version())
            .unwrap_or(tally_ledger::BASE_CLUSTER_VERSION)
    }
}
