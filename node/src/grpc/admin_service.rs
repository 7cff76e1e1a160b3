//! The public `tally.v1.Admin` service: cluster init, membership changes and
//! status. Membership changes run on the leader, one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, InitializeError, RaftError};
use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::admin_server::Admin as AdminRpc;
use tally_proto::v1::{
    AddLearnerRequest, ClusterStatus, ClusterStatusRequest, InitRequest, InitResponse, Member, MembershipResponse,
    NodeStatus, NodeStatusRequest, PromoteRequest, RemoveRequest,
};
use tonic::{Code, Request, Response, Status};

use crate::grpc::status::{invalid, not_leader, status};
use crate::node::NodeCtx;
use crate::raft::types::{Node, TypeConfig};

/// How long `promote` waits for a learner to catch up before giving up.
const PROMOTE_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// A learner within this many entries of the leader's log counts as caught up.
const PROMOTE_MAX_LAG_ENTRIES: u64 = 1000;
/// Per-node timeout when collecting cluster status.
const STATUS_TIMEOUT: Duration = Duration::from_millis(1000);

pub struct AdminService {
    pub ctx: Arc<NodeCtx>,
    /// Serializes membership changes on this node (openraft also refuses overlapping ones).
    pub membership_lock: tokio::sync::Mutex<()>,
}

impl AdminService {
    fn require_leader(&self) -> Result<(), Status> {
        if self.ctx.raft.is_leader() { Ok(()) } else { Err(not_leader(self.ctx.leader_addr().as_deref())) }
    }

    fn membership_response(&self) -> MembershipResponse {
        let m = self.ctx.raft.metrics().borrow_watched().membership_config.clone();
        let voters: BTreeSet<u64> = m.voter_ids().collect();
        let mut resp = MembershipResponse { log_index: m.log_id().as_ref().map(|l| l.index).unwrap_or(0), ..Default::default() };
        for (id, node) in m.nodes() {
            let member = Member { node_id: *id, addr: node.addr.clone() };
            if voters.contains(id) { resp.voters.push(member) } else { resp.learners.push(member) }
        }
        resp
    }

    async fn change(&self, change: ChangeMembers<u64, Node>) -> Result<Response<MembershipResponse>, Status> {
        let _guard = self.membership_lock.try_lock().map_err(|_| {
            status(Code::FailedPrecondition, "MEMBERSHIP_CHANGE_IN_PROGRESS", "another membership change is in progress on this node; retry when it finishes")
        })?;
        self.ctx.raft.change_membership(change, false).await.map_err(|e| self.membership_error(e))?;
        Ok(Response::new(self.membership_response()))
    }

    fn membership_error(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Status {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f.leader_node.map(|n| n.addr).as_deref()),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                let text = c.to_string();
                let reason = if text.contains("progress") { "MEMBERSHIP_CHANGE_IN_PROGRESS" } else { "MEMBERSHIP_CHANGE_REFUSED" };
                status(Code::FailedPrecondition, reason, text)
            }
            other => status(Code::Unavailable, "OUTCOME_UNKNOWN", other.to_string()),
        }
    }
}

#[tonic::async_trait]
impl AdminRpc for AdminService {
    async fn init(&self, req: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let req = req.into_inner();
        if req.members.is_empty() {
            return Err(invalid("NO_MEMBERS", "init needs at least one member"));
        }
        let mut members = BTreeMap::new();
        for m in req.members {
            if m.node_id == 0 || m.addr.is_empty() {
                return Err(invalid("INVALID_MEMBER", format!("member {}={}: node id must be > 0 and addr non-empty", m.node_id, m.addr)));
            }
            if members.insert(m.node_id, Node { addr: m.addr }).is_some() {
                return Err(invalid("DUPLICATE_MEMBER", format!("node id {} listed twice", m.node_id)));
            }
        }
        if !members.contains_key(&self.ctx.config.node_id) {
            return Err(invalid("INVALID_MEMBER", format!("the members must include this node ({})", self.ctx.config.node_id)));
        }
        match self.ctx.raft.initialize(members).await {
            Ok(()) => Ok(Response::new(InitResponse {})),
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                Err(status(Code::FailedPrecondition, "ALREADY_INITIALIZED", format!("cluster already initialized: {e}")))
            }
            Err(e) => Err(status(Code::FailedPrecondition, "INIT_FAILED", e.to_string())),
        }
    }

    async fn add_learner(&self, req: Request<AddLearnerRequest>) -> Result<Response<MembershipResponse>, Status> {
        self.require_leader()?;
        let member = req.into_inner().member.ok_or_else(|| invalid("MISSING_FIELD", "member: missing"))?;
        if member.node_id == 0 || member.addr.is_empty() {
            return Err(invalid("INVALID_MEMBER", "node id must be > 0 and addr non-empty"));
        }
        let m = self.ctx.raft.metrics().borrow_watched().membership_config.clone();
        if m.nodes().any(|(id, _)| *id == member.node_id) {
            return Err(status(Code::AlreadyExists, "NODE_ID_IN_USE", format!("node id {} is already a member", member.node_id)));
        }
        let _guard = self.membership_lock.try_lock().map_err(|_| {
            status(Code::FailedPrecondition, "MEMBERSHIP_CHANGE_IN_PROGRESS", "another membership change is in progress")
        })?;
        self.ctx
            .raft
            .add_learner(member.node_id, Node { addr: member.addr }, false)
            .await
            .map_err(|e| self.membership_error(e))?;
        Ok(Response::new(self.membership_response()))
    }

    async fn promote(&self, req: Request<PromoteRequest>) -> Result<Response<MembershipResponse>, Status> {
        self.require_leader()?;
        let id = req.into_inner().node_id;
        let m = self.ctx.raft.metrics().borrow_watched().membership_config.clone();
        if !m.membership().learner_ids().any(|l| l == id) {
            return Err(status(Code::FailedPrecondition, "NOT_A_LEARNER", format!("node {id} is not a learner (add it with add-learner first)")));
        }
        // Wait for the learner to catch up so the new voter does not stall commits.
        let start = Instant::now();
        loop {
            let metrics = self.ctx.raft.metrics().borrow_watched().clone();
            let last = metrics.last_log_index.unwrap_or(0);
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index)
                .unwrap_or(0);
            if last.saturating_sub(matched) <= PROMOTE_MAX_LAG_ENTRIES {
                break;
            }
            if start.elapsed() > PROMOTE_CATCH_UP_TIMEOUT {
                return Err(status(Code::DeadlineExceeded, "LEARNER_LAGGING", format!("node {id} is at {matched}, leader at {last}; still catching up")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await
    }

    async fn remove(&self, req: Request<RemoveRequest>) -> Result<Response<MembershipResponse>, Status> {
        self.require_leader()?;
        let req = req.into_inner();
        let id = req.node_id;
        let m = self.ctx.raft.metrics().borrow_watched().membership_config.clone();
        let voters: BTreeSet<u64> = m.voter_ids().collect();
        if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(status(Code::FailedPrecondition, "LAST_VOTER", "refusing to remove the last voter"));
            }
            self.change(ChangeMembers::RemoveVoters(BTreeSet::from([id]))).await
        } else if m.nodes().any(|(n, _)| *n == id) {
            self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id]))).await
        } else {
            Err(status(Code::NotFound, "UNKNOWN_NODE", format!("node {id} is not a member")))
        }
    }

    async fn get_node_status(&self, _req: Request<NodeStatusRequest>) -> Result<Response<NodeStatus>, Status> {
        Ok(Response::new(self.ctx.node_status()))
    }

    async fn get_cluster_status(&self, _req: Request<ClusterStatusRequest>) -> Result<Response<ClusterStatus>, Status> {
        let metrics = self.ctx.raft.metrics().borrow_watched().clone();
        let m = metrics.membership_config.clone();
        let voters: BTreeSet<u64> = m.voter_ids().collect();
        let mut out = ClusterStatus {
            leader_id: metrics.current_leader.unwrap_or(0),
            has_leader: metrics.current_leader.is_some(),
            term: metrics.current_term,
            ..Default::default()
        };
        let mut probes = Vec::new();
        for (id, node) in m.nodes() {
            let member = Member { node_id: *id, addr: node.addr.clone() };
            if voters.contains(id) { out.voters.push(member.clone()) } else { out.learners.push(member.clone()) }
            let ctx = self.ctx.clone();
            let is_voter = voters.contains(id);
            let matched = metrics.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map(|l| l.index).unwrap_or(0);
            probes.push(tokio::spawn(async move {
                let mut st = if member.node_id == ctx.config.node_id {
                    ctx.node_status()
                } else {
                    probe(&ctx, &member).await
                };
                st.voter = is_voter;
                st.matched_index = matched;
                st
            }));
        }
        for p in probes {
            if let Ok(st) = p.await {
                out.nodes.push(st);
            }
        }
        Ok(Response::new(out))
    }
}

async fn probe(ctx: &NodeCtx, member: &Member) -> NodeStatus {
    let unreachable = |error: String| NodeStatus {
        node_id: member.node_id,
        addr: member.addr.clone(),
        role: "unreachable".into(),
        error,
        ..Default::default()
    };
    let channel = match ctx.peer_channel(&member.addr) {
        Ok(c) => c,
        Err(e) => return unreachable(e),
    };
    let mut req = Request::new(NodeStatusRequest {});
    req.set_timeout(STATUS_TIMEOUT);
    match tokio::time::timeout(STATUS_TIMEOUT, AdminClient::new(channel).get_node_status(req)).await {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(s)) => unreachable(s.message().to_string()),
        Err(_) => unreachable("timed out".into()),
    }
}
