//! The public `tally.v1.Admin` service: cluster init, membership changes and
//! status. Membership changes run on the leader, one at a time (a leader
//! asked to remove itself hands leadership over first). Operations
//! that wait for the cluster to get somewhere (a learner catching up, a
//! leadership transfer, a snapshot, a purge) wait on openraft's metrics
//! with its `Wait` API, each with its own timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{ClientWriteError, InitializeError, RaftError};
use openraft::metrics::WaitError;
use openraft::{ChangeMembers, RaftMetrics};
use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::admin_server::Admin as AdminRpc;
use tally_proto::v1::{
    AddLearnerRequest, AppliedMembership, AppliedMembershipRequest, ClusterStatus,
    ClusterStatusRequest, CompactRequest, CompactResponse, InitRequest, InitResponse, Member,
    MembershipResponse, NodeStatus, NodeStatusRequest, PromoteRequest, RemoveRequest,
    ReplaceRequest, SetClusterVersionRequest, SetClusterVersionResponse, SnapshotRequest,
    SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
};
use tonic::{Code, Request, Response, Status};

use crate::ctx::NodeCtx;
use crate::grpc::status::{invalid, not_leader, status};
use crate::raft::types::{Node, TypeConfig};

/// How long `promote` waits for a learner to catch up before giving up.
const PROMOTE_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// A learner within this many entries of the leader's log counts as caught up.
const PROMOTE_MAX_LAG_ENTRIES: u64 = 1000;
/// Per-node timeout when collecting cluster status.
const STATUS_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long `transfer_leader` waits for the target to take over.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a leader removing itself waits for the new leader to do it.
const FORWARDED_REMOVE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `trigger_snapshot` and `compact` wait for the operation.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);

pub struct AdminService {
    pub ctx: Arc<NodeCtx>,
    /// Serializes membership changes on this node (openraft also refuses overlapping ones).
    pub membership_lock: tokio::sync::Mutex<()>,
}

/// How far `id` has replicated, per the leader's replication metrics (0: unknown).
fn matched_index(m: &RaftMetrics<TypeConfig>, id: u64) -> u64 {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id).cloned().flatten())
        .map(|l| l.index)
        .unwrap_or(0)
}

/// Whether learner `id` is close enough to the leader's log to be promoted.
fn caught_up(m: &RaftMetrics<TypeConfig>, id: u64) -> bool {
    let matched = matched_index(m, id);
    matched > 0 && m.last_log_index.unwrap_or(0).saturating_sub(matched) <= PROMOTE_MAX_LAG_ENTRIES
}

impl AdminService {
    /// Waits until this node's Raft metrics satisfy `done`, for at most
    /// `timeout`: `Ok(Some(metrics))` once they do, `Ok(None)` on timeout.
    async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&RaftMetrics<TypeConfig>) -> bool + Send,
        what: &str,
    ) -> Result<Option<RaftMetrics<TypeConfig>>, Status> {
        match self.ctx.raft.wait(Some(timeout)).metrics(done, what).await {
            Ok(m) => Ok(Some(m)),
            Err(WaitError::Timeout(..)) => Ok(None),
            Err(e @ WaitError::ShuttingDown) => Err(status(
                Code::Unavailable,
                "RAFT_ERROR",
                format!("{e} (while waiting: {what})"),
            )),
        }
    }

    fn require_leader(&self) -> Result<(), Status> {
        if self.ctx.raft.is_leader() {
            Ok(())
        } else {
            Err(not_leader(self.ctx.leader_addr().as_deref()))
        }
    }

    fn membership_response(&self) -> MembershipResponse {
        let m = self.ctx.metrics().membership_config.clone();
        let (voters, learners) = voters_and_learners(m.membership());
        MembershipResponse {
            log_index: m.log_id().as_ref().map(|l| l.index).unwrap_or(0),
            voters,
            learners,
        }
    }

    fn lock_membership(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, Status> {
        self.membership_lock.try_lock().map_err(|_| {
            status(
                Code::FailedPrecondition,
                "MEMBERSHIP_CHANGE_IN_PROGRESS",
                "another membership change is in progress; retry when it finishes",
            )
        })
    }

    async fn change(&self, change: ChangeMembers<u64, Node>) -> Result<(), Status> {
        self.ctx
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| self.membership_error(e))?;
        Ok(())
    }

    async fn add_learner_locked(&self, member: &Member) -> Result<(), Status> {
        if member.node_id == 0 || member.addr.is_empty() {
            return Err(invalid(
                "INVALID_MEMBER",
                "node id must be > 0 and addr non-empty",
            ));
        }
        let m = self.ctx.metrics().membership_config.clone();
        if m.nodes().any(|(id, _)| *id == member.node_id) {
            return Err(status(
                Code::AlreadyExists,
                "NODE_ID_IN_USE",
                format!("node id {} is already a member", member.node_id),
            ));
        }
        let retired = self
            .ctx
            .state
            .read()
            .map(|st| st.retired_node_ids.contains(&member.node_id))
            .unwrap_or(true);
        if retired {
            return Err(status(
                Code::AlreadyExists,
                "NODE_ID_RETIRED",
                format!(
                    "node id {} belonged to a removed node; node ids are never reused, pick a new one",
                    member.node_id
                ),
            ));
        }
        self.ctx
            .raft
            .add_learner(
                member.node_id,
                Node {
                    addr: member.addr.clone(),
                },
                false,
            )
            .await
            .map_err(|e| self.membership_error(e))?;
        Ok(())
    }

    async fn promote_locked(&self, id: u64) -> Result<(), Status> {
        let m = self.ctx.metrics().membership_config.clone();
        if !m.membership().learner_ids().any(|l| l == id) {
            return Err(status(
                Code::FailedPrecondition,
                "NOT_A_LEARNER",
                format!("node {id} is not a learner (add it with add-learner first)"),
            ));
        }
        // Wait for the learner to catch up so the new voter does not stall commits.
        let ready = self
            .wait_for(
                PROMOTE_CATCH_UP_TIMEOUT,
                |m| caught_up(m, id),
                &format!("learner {id} catching up"),
            )
            .await?;
        if ready.is_none() {
            let m = self.ctx.metrics();
            let (matched, last) = (matched_index(&m, id), m.last_log_index.unwrap_or(0));
            return Err(status(
                Code::DeadlineExceeded,
                "LEARNER_LAGGING",
                format!("node {id} is at {matched}, leader at {last}; still catching up"),
            ));
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await
    }

    /// Hands leadership to voter `to` and waits until it has taken over;
    /// returns the new term. Refused (`TARGET_NOT_READY`) unless `to` is
    /// reachable and nearly caught up: openraft stops this leader's writes
    /// as soon as a transfer starts, so a slow target would stall them
    /// until an election.
    async fn hand_over(&self, to: u64) -> Result<u64, Status> {
        let metrics = self.ctx.metrics();
        let last = metrics.last_log_index.unwrap_or(0);
        let matched = matched_index(&metrics, to);
        if last.saturating_sub(matched) > PROMOTE_MAX_LAG_ENTRIES {
            return Err(status(
                Code::FailedPrecondition,
                "TARGET_NOT_READY",
                format!(
                    "node {to} has replicated up to {matched}, the leader's log is at {last}; retry when it has caught up"
                ),
            ));
        }
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&to)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        let probe_status = probe(&self.ctx, &Member { node_id: to, addr }).await;
        if !probe_status.error.is_empty() {
            return Err(status(
                Code::FailedPrecondition,
                "TARGET_NOT_READY",
                format!("node {to} is unreachable: {}", probe_status.error),
            ));
        }
        self.ctx
            .raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| status(Code::Unavailable, "RAFT_ERROR", e.to_string()))?;
        let took_over = self
            .wait_for(
                TRANSFER_TIMEOUT,
                |m| m.current_leader == Some(to),
                &format!("node {to} taking leadership"),
            )
            .await?;
        match took_over {
            Some(m) => Ok(m.current_term),
            None => Err(status(
                Code::DeadlineExceeded,
                "TRANSFER_TIMEOUT",
                format!(
                    "node {to} did not take leadership within {} ms (leader now {})",
                    TRANSFER_TIMEOUT.as_millis(),
                    self.ctx
                        .metrics()
                        .current_leader
                        .map_or("unknown".to_string(), |id| format!("node {id}"))
                ),
            )),
        }
    }

    /// This leader is asked to remove itself. A leader that commits its own
    /// removal steps down and the others wait out a whole election
    /// (election timeout plus openraft's leader lease, 450-600 ms with the
    /// defaults) before anyone takes writes again. Instead, leadership goes
    /// first to the most caught-up reachable voter (a transfer: the target
    /// campaigns at once), and that node removes this one. Returns `None`
    /// when no voter can take over (the caller then removes in place).
    async fn remove_self_by_hand_over(
        &self,
        force: bool,
    ) -> Result<Option<MembershipResponse>, Status> {
        let me = self.ctx.config.node_id;
        let metrics = self.ctx.metrics();
        let mut others: Vec<(u64, u64, String)> = metrics
            .membership_config
            .membership()
            .nodes()
            .filter(|(n, _)| **n != me && metrics.membership_config.voter_ids().any(|v| v == **n))
            .map(|(n, node)| (matched_index(&metrics, *n), *n, node.addr.clone()))
            .collect();
        others.sort_unstable_by(|a, b| b.cmp(a));
        for (_, to, addr) in others {
            match self.hand_over(to).await {
                Ok(_) => {
                    tracing::info!(
                        new_leader = to,
                        "remove self: leadership handed over, asking it to remove this node"
                    );
                    let channel = self
                        .ctx
                        .peer_channel(&addr)
                        .map_err(|e| status(Code::Unavailable, "NEW_LEADER_UNREACHABLE", e))?;
                    let mut req = Request::new(RemoveRequest { node_id: me, force });
                    req.set_timeout(FORWARDED_REMOVE_TIMEOUT);
                    let resp = AdminClient::new(channel).remove(req).await?;
                    return Ok(Some(resp.into_inner()));
                }
                Err(e) => {
                    tracing::warn!(target_node = to, error = %e.message(), "remove self: hand over refused, trying the next voter");
                }
            }
        }
        Ok(None)
    }

    /// Removes node `id`. Returns the new leader's answer when this leader
    /// removed itself by handing over (see [`Self::remove_self_by_hand_over`]).
    async fn remove_locked(
        &self,
        id: u64,
        force: bool,
    ) -> Result<Option<MembershipResponse>, Status> {
        let m = self.ctx.metrics().membership_config.clone();
        let voters: BTreeSet<u64> = m.voter_ids().collect();
        if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(status(
                    Code::FailedPrecondition,
                    "LAST_VOTER",
                    "refusing to remove the last voter",
                ));
            }
            if id == self.ctx.config.node_id
                && let Some(answer) = self.remove_self_by_hand_over(force).await?
            {
                return Ok(Some(answer));
            }
            if !force {
                // The remaining voters must still have a reachable majority.
                let remaining: Vec<Member> = m
                    .nodes()
                    .filter(|(n, _)| voters.contains(n) && **n != id)
                    .map(|(n, node)| Member {
                        node_id: *n,
                        addr: node.addr.clone(),
                    })
                    .collect();
                let mut reachable = 0;
                for member in &remaining {
                    if member.node_id == self.ctx.config.node_id
                        || probe(&self.ctx, member).await.error.is_empty()
                    {
                        reachable += 1;
                    }
                }
                let majority = remaining.len() / 2 + 1;
                if reachable < majority {
                    return Err(status(
                        Code::FailedPrecondition,
                        "WOULD_LOSE_QUORUM",
                        format!(
                            "after removing node {id}, only {reachable} of {} voters are reachable (need {majority}); pass --force to do it anyway",
                            remaining.len()
                        ),
                    ));
                }
            }
            self.change(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
                .await
                .map(|()| None)
        } else if m.nodes().any(|(n, _)| *n == id) {
            self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id])))
                .await
                .map(|()| None)
        } else {
            Err(status(
                Code::NotFound,
                "UNKNOWN_NODE",
                format!("node {id} is not a member"),
            ))
        }
    }

    fn membership_error(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Status {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                not_leader(f.leader_node.map(|n| n.addr).as_deref())
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                use openraft::errors::ChangeMembershipError as E;
                // Plain words: openraft's own texts carry Debug dumps of log ids.
                let (reason, text) = match &c {
                    E::InProgress(_) => (
                        "MEMBERSHIP_CHANGE_IN_PROGRESS",
                        "another membership change is still being committed; retry when it is done"
                            .to_string(),
                    ),
                    E::UncommittedLeaderLog(_) => (
                        "MEMBERSHIP_CHANGE_IN_PROGRESS",
                        "the new leader has not committed an entry of its term yet; retry shortly"
                            .to_string(),
                    ),
                    E::EmptyMembership(_) => (
                        "MEMBERSHIP_CHANGE_REFUSED",
                        "the change would leave no voters".to_string(),
                    ),
                    E::LearnerNotFound(l) => (
                        "MEMBERSHIP_CHANGE_REFUSED",
                        format!("node {} is not a learner of this cluster", l.node_id),
                    ),
                    other => ("MEMBERSHIP_CHANGE_REFUSED", other.to_string()),
                };
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
                return Err(invalid(
                    "INVALID_MEMBER",
                    format!(
                        "member {}={}: node id must be > 0 and addr non-empty",
                        m.node_id, m.addr
                    ),
                ));
            }
            if members.insert(m.node_id, Node { addr: m.addr }).is_some() {
                return Err(invalid(
                    "DUPLICATE_MEMBER",
                    format!("node id {} listed twice", m.node_id),
                ));
            }
        }
        if !members.contains_key(&self.ctx.config.node_id) {
            return Err(invalid(
                "INVALID_MEMBER",
                format!(
                    "the members must include this node ({})",
                    self.ctx.config.node_id
                ),
            ));
        }
        match self.ctx.raft.initialize(members).await {
            Ok(()) => {
                // A new cluster starts at the highest cluster version all its
                // initial members support (as CockroachDB bootstraps at the
                // binary's version): there is nothing to roll back to.
                tokio::spawn(bootstrap_cluster_version(self.ctx.clone()));
                Ok(Response::new(InitResponse {}))
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => Err(status(
                Code::FailedPrecondition,
                "ALREADY_INITIALIZED",
                format!(
                    "cluster already initialized (this node already has {})",
                    if e.last_log_id.is_some() {
                        "a log"
                    } else {
                        "a vote"
                    }
                ),
            )),
            Err(e) => Err(status(
                Code::FailedPrecondition,
                "INIT_FAILED",
                e.to_string(),
            )),
        }
    }

    async fn add_learner(
        &self,
        req: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        self.require_leader()?;
        let member = req
            .into_inner()
            .member
            .ok_or_else(|| invalid("MISSING_FIELD", "member: missing"))?;
        let _guard = self.lock_membership()?;
        self.add_learner_locked(&member).await?;
        Ok(Response::new(self.membership_response()))
    }

    async fn promote(
        &self,
        req: Request<PromoteRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        self.require_leader()?;
        let id = req.into_inner().node_id;
        let _guard = self.lock_membership()?;
        self.promote_locked(id).await?;
        Ok(Response::new(self.membership_response()))
    }

    async fn remove(
        &self,
        req: Request<RemoveRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        self.require_leader()?;
        let req = req.into_inner();
        let _guard = self.lock_membership()?;
        let answer = self.remove_locked(req.node_id, req.force).await?;
        Ok(Response::new(
            answer.unwrap_or_else(|| self.membership_response()),
        ))
    }

    async fn replace(
        &self,
        req: Request<ReplaceRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        self.require_leader()?;
        let req = req.into_inner();
        let member = req
            .new_member
            .ok_or_else(|| invalid("MISSING_FIELD", "new_member: missing"))?;
        let m = self.ctx.metrics().membership_config.clone();
        if !m.voter_ids().any(|v| v == req.old_node_id) {
            return Err(status(
                Code::NotFound,
                "UNKNOWN_NODE",
                format!("node {} is not a voter", req.old_node_id),
            ));
        }
        let _guard = self.lock_membership()?;
        tracing::info!(
            old = req.old_node_id,
            new = member.node_id,
            "replace: adding learner"
        );
        self.add_learner_locked(&member).await?;
        tracing::info!(new = member.node_id, "replace: promoting");
        self.promote_locked(member.node_id).await?;
        tracing::info!(old = req.old_node_id, "replace: removing");
        let answer = self.remove_locked(req.old_node_id, req.force).await?;
        Ok(Response::new(
            answer.unwrap_or_else(|| self.membership_response()),
        ))
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        self.require_leader()?;
        let to = req.into_inner().node_id;
        let metrics = self.ctx.metrics();
        if !metrics.membership_config.voter_ids().any(|v| v == to) {
            return Err(status(
                Code::FailedPrecondition,
                "NOT_A_VOTER",
                format!("node {to} is not a voter"),
            ));
        }
        if to == self.ctx.config.node_id {
            return Ok(Response::new(TransferLeaderResponse {
                leader_id: to,
                term: metrics.current_term,
            }));
        }
        let term = self.hand_over(to).await?;
        Ok(Response::new(TransferLeaderResponse {
            leader_id: to,
            term,
        }))
    }

    async fn trigger_snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<SnapshotResponse>, Status> {
        let before = self
            .ctx
            .metrics()
            .snapshot
            .as_ref()
            .map(|l| l.index)
            .unwrap_or(0);
        let applied = *self.ctx.applied.borrow();
        self.ctx
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| status(Code::Unavailable, "RAFT_ERROR", e.to_string()))?;
        let snapshot_index =
            |m: &RaftMetrics<TypeConfig>| m.snapshot.as_ref().map(|l| l.index).unwrap_or(0);
        let built = self
            .wait_for(
                SNAPSHOT_TIMEOUT,
                |m| {
                    let now = snapshot_index(m);
                    now > before || (now >= applied && now > 0)
                },
                "snapshot",
            )
            .await?;
        match built {
            Some(m) => Ok(Response::new(SnapshotResponse {
                snapshot_index: snapshot_index(&m),
            })),
            None => Err(status(
                Code::DeadlineExceeded,
                "SNAPSHOT_TIMEOUT",
                "snapshot not finished in time; it may still complete",
            )),
        }
    }

    async fn compact(
        &self,
        _req: Request<CompactRequest>,
    ) -> Result<Response<CompactResponse>, Status> {
        let m = self.ctx.metrics();
        let Some(snapshot) = m.snapshot.as_ref().map(|l| l.index) else {
            return Err(status(
                Code::FailedPrecondition,
                "NO_SNAPSHOT",
                "no snapshot yet: run `cluster snapshot` first",
            ));
        };
        self.ctx
            .raft
            .trigger()
            .purge_log(snapshot)
            .await
            .map_err(|e| status(Code::Unavailable, "RAFT_ERROR", e.to_string()))?;
        let purged_index =
            |m: &RaftMetrics<TypeConfig>| m.purged.as_ref().map(|l| l.index).unwrap_or(0);
        // On timeout the answer is how far the purge got by then.
        let purged = self
            .wait_for(
                SNAPSHOT_TIMEOUT,
                |m| purged_index(m) >= snapshot,
                &format!("purge up to {snapshot}"),
            )
            .await?
            .unwrap_or_else(|| self.ctx.metrics());
        Ok(Response::new(CompactResponse {
            purged_index: purged_index(&purged),
            snapshot_index: snapshot,
        }))
    }

    async fn get_node_status(
        &self,
        req: Request<NodeStatusRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        let with_hash = !req.get_ref().omit_state_hash;
        Ok(Response::new(self.ctx.node_status(with_hash)))
    }

    async fn get_cluster_status(
        &self,
        _req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        // Only the leader's view is the cluster's: a follower sends the
        // client on (the client follows `tally-leader`).
        self.require_leader()?;
        let metrics = self.ctx.metrics();
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
            let member = Member {
                node_id: *id,
                addr: node.addr.clone(),
            };
            if voters.contains(id) {
                out.voters.push(member.clone())
            } else {
                out.learners.push(member.clone())
            }
            let ctx = self.ctx.clone();
            let is_voter = voters.contains(id);
            let matched = matched_index(&metrics, *id);
            probes.push(tokio::spawn(async move {
                let mut st = if member.node_id == ctx.config.node_id {
                    ctx.node_status(true)
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

    async fn get_applied_membership(
        &self,
        _req: Request<AppliedMembershipRequest>,
    ) -> Result<Response<AppliedMembership>, Status> {
        self.applied_membership().map(Response::new)
    }

    async fn set_cluster_version(
        &self,
        req: Request<SetClusterVersionRequest>,
    ) -> Result<Response<SetClusterVersionResponse>, Status> {
        self.require_leader()?;
        // No membership change while the members' support is checked and
        // the entry proposed: a node joining in between could lack support.
        let _guard = self.lock_membership()?;
        let statuses = member_statuses(&self.ctx).await;
        crate::grpc::cluster_version::set_cluster_version(&self.ctx, req.into_inner(), statuses)
            .await
            .map(Response::new)
    }
}

impl AdminService {
    /// The membership this node applied and the retired node ids.
    fn applied_membership(&self) -> Result<AppliedMembership, Status> {
        let st = self
            .ctx
            .state
            .read()
            .map_err(|_| status(Code::Internal, "INTERNAL", "state lock poisoned"))?;
        let (voters, learners) = voters_and_learners(st.membership.membership());
        Ok(AppliedMembership {
            cluster_id: self.ctx.config.cluster_id.clone(),
            log_index: st
                .membership
                .log_id()
                .as_ref()
                .map(|l| l.index)
                .unwrap_or(0),
            retired_node_ids: st.retired_node_ids.iter().copied().collect(),
            voters,
            learners,
        })
    }
}

/// The members of `m` as (voters, learners).
fn voters_and_learners(m: &openraft::Membership<u64, Node>) -> (Vec<Member>, Vec<Member>) {
    let voter_ids: BTreeSet<u64> = m.voter_ids().collect();
    let (mut voters, mut learners) = (Vec::new(), Vec::new());
    for (id, node) in m.nodes() {
        let member = Member {
            node_id: *id,
            addr: node.addr.clone(),
        };
        if voter_ids.contains(id) {
            voters.push(member);
        } else {
            learners.push(member);
        }
    }
    (voters, learners)
}

/// Every member's status: this node's own, the others' by `probe`.
async fn member_statuses(ctx: &NodeCtx) -> Vec<NodeStatus> {
    let mut statuses = Vec::new();
    for member in crate::grpc::cluster_version::members(ctx) {
        statuses.push(if member.node_id == ctx.config.node_id {
            ctx.node_status(true)
        } else {
            probe(ctx, &member).await
        });
    }
    statuses
}

/// How long a freshly initialized node tries to raise the cluster version:
/// its initial members must be up and one of them elected by then.
const BOOTSTRAP_VERSION_DEADLINE: Duration = Duration::from_secs(30);

/// After `Init`: once this node leads, raises the cluster version to the
/// highest every initial member supports (the `finalize` path: the same
/// checks, one `SetClusterVersion` entry). A member that is unreachable is
/// retried until `BOOTSTRAP_VERSION_DEADLINE`; a member on an older release,
/// another node elected, or the deadline passing leaves the version where
/// it is, logged, for `tallyctl cluster finalize`.
///
/// It does not take the membership lock (an operator's first `add-learner`
/// right after `init` is not refused because of it): a member that joins
/// between the check and the entry and lacks support stops at the entry
/// (see `version`) rather than diverge, as after `finalize`.
async fn bootstrap_cluster_version(ctx: Arc<NodeCtx>) {
    let deadline = tokio::time::Instant::now() + BOOTSTRAP_VERSION_DEADLINE;
    let mut last_error = String::from("no leader elected");
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !ctx.raft.is_leader() {
            match ctx.leader_addr() {
                Some(_) => {
                    last_error = "another node was elected".into();
                    break;
                }
                None => continue,
            }
        }
        let statuses = member_statuses(&ctx).await;
        let request = SetClusterVersionRequest {
            version: 0,
            dry_run: false,
        };
        match crate::grpc::cluster_version::set_cluster_version(&ctx, request, statuses).await {
            Ok(reply) => {
                let own_max = crate::version::max_supported();
                if reply.active_version >= own_max {
                    tracing::info!(
                        node_id = ctx.config.node_id,
                        cluster_version = reply.active_version,
                        "new cluster: cluster version set to the highest its members support"
                    );
                    return;
                }
                last_error = reply
                    .nodes
                    .iter()
                    .filter(|n| n.max_cluster_version < own_max)
                    .map(|n| {
                        format!(
                            "node {} supports up to {}",
                            n.node_id, n.max_cluster_version
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                break;
            }
            Err(e)
                if e.metadata()
                    .get(tally_proto::REASON_METADATA_KEY)
                    .and_then(|v| v.to_str().ok())
                    == Some("NODE_UNREACHABLE") =>
            {
                last_error = e.message().to_string()
            }
            Err(e) => {
                last_error = e.message().to_string();
                break;
            }
        }
    }
    tracing::warn!(
        node_id = ctx.config.node_id,
        cluster_version = ctx.cluster_version(),
        reason = %last_error,
        "new cluster: cluster version left as is; raise it with `tallyctl cluster finalize`"
    );
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
    let mut req = Request::new(NodeStatusRequest::default());
    req.set_timeout(STATUS_TIMEOUT);
    match tokio::time::timeout(
        STATUS_TIMEOUT,
        AdminClient::new(channel).get_node_status(req),
    )
    .await
    {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(s)) => unreachable(s.message().to_string()),
        Err(_) => unreachable("timed out".into()),
    }
}
