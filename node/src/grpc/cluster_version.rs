//! `Admin.SetClusterVersion` (`tallyctl cluster finalize`): the leader asks
//! every voter and learner for the highest cluster version its binary
//! supports (`GetNodeStatus`; a release before cluster versions reports 0,
//! i.e. version 1), and proposes a `SetClusterVersion` log entry only when
//! every one of them answered and supports the target. The caller holds
//! the membership lock, so no member joins between the check and the
//! proposal through this leader. A member downgraded after the check stops
//! on the entry (see `version`) rather than diverge.

use openraft::errors::{ClientWriteError, RaftError};
use tally_ledger::BASE_CLUSTER_VERSION;
use tally_proto::v1::{
    ClusterVersionSupport, Member, NodeStatus, SetClusterVersionRequest, SetClusterVersionResponse,
};
use tonic::{Code, Status};

use crate::ctx::NodeCtx;
use crate::grpc::status::{not_leader, status};
use crate::raft::types::EntryRequest;

/// What a member's status says it supports (0 from an old release: the base).
fn supported(st: &NodeStatus) -> u32 {
    st.max_cluster_version.max(BASE_CLUSTER_VERSION)
}

/// Checks support on every member of `statuses`, then (unless a dry run or
/// nothing to raise) proposes the entry and waits until this node applied it.
pub async fn set_cluster_version(
    ctx: &NodeCtx,
    req: SetClusterVersionRequest,
    statuses: Vec<NodeStatus>,
) -> Result<SetClusterVersionResponse, Status> {
    let previous = ctx.cluster_version();
    let nodes: Vec<ClusterVersionSupport> = statuses
        .iter()
        .map(|st| ClusterVersionSupport {
            node_id: st.node_id,
            addr: st.addr.clone(),
            release_version: st.version.clone(),
            max_cluster_version: supported(st),
            cluster_version: st.cluster_version.max(BASE_CLUSTER_VERSION),
            error: st.error.clone(),
        })
        .collect();
    let unreachable: Vec<String> = nodes
        .iter()
        .filter(|n| !n.error.is_empty())
        .map(|n| format!("node {} ({})", n.node_id, n.error))
        .collect();
    if !unreachable.is_empty() {
        return Err(status(
            Code::FailedPrecondition,
            "NODE_UNREACHABLE",
            format!(
                "every member must report its supported cluster version; unreachable: {}",
                unreachable.join(", ")
            ),
        ));
    }
    let common = nodes
        .iter()
        .map(|n| n.max_cluster_version)
        .min()
        .unwrap_or(BASE_CLUSTER_VERSION);
    let target = if req.version == 0 {
        common
    } else {
        req.version
    };
    let lacking: Vec<String> = nodes
        .iter()
        .filter(|n| n.max_cluster_version < target)
        .map(|n| {
            format!(
                "node {} (release {}, supports up to {})",
                n.node_id,
                if n.release_version.is_empty() {
                    "?"
                } else {
                    &n.release_version
                },
                n.max_cluster_version
            )
        })
        .collect();
    if !lacking.is_empty() {
        return Err(status(
            Code::FailedPrecondition,
            "VERSION_NOT_SUPPORTED",
            format!(
                "cluster version {target} is not supported by every member: {}; upgrade them first",
                lacking.join(", ")
            ),
        ));
    }
    let mut out = SetClusterVersionResponse {
        previous_version: previous,
        active_version: previous,
        log_index: 0,
        nodes,
    };
    if target <= previous || req.dry_run {
        // The version never goes down; a dry run only reports.
        return Ok(out);
    }
    let clock = std::sync::atomic::AtomicU64::new(0);
    let entry = EntryRequest::cluster_version(crate::writer::leader_now_ms(&clock), target);
    let reply = ctx.raft.client_write(entry).await.map_err(|e| match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            not_leader(f.leader_node.map(|n| n.addr).as_deref())
        }
        e => status(
            Code::Unavailable,
            "OUTCOME_UNKNOWN",
            format!("SetClusterVersion {target} may or may not have committed: {e}"),
        ),
    })?;
    let index = reply.log_id.index;
    let mut applied = ctx.applied.clone();
    // client_write returns once this leader applied the entry; the wait
    // is only a guard.
    let _ = applied.wait_for(|a| *a >= index).await;
    tracing::info!(
        node_id = ctx.config.node_id,
        from = previous,
        to = target,
        index,
        "finalized: cluster version raised"
    );
    out.active_version = ctx.cluster_version();
    out.log_index = index;
    Ok(out)
}

/// The members of the applied membership, as `Member`s.
pub fn members(ctx: &NodeCtx) -> Vec<Member> {
    ctx.metrics()
        .membership_config
        .nodes()
        .map(|(id, node)| Member {
            node_id: *id,
            addr: node.addr.clone(),
        })
        .collect()
}
