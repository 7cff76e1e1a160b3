//! Cluster events in the log, one line each with node id and term, from
//! openraft's metrics: this node became leader or lost leadership, the
//! leader changed, the membership changed (with the nodes added and
//! removed). Also counts leader changes (`tally_leader_changes_total`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;

use crate::ctx::NodeCtx;
use crate::metrics::METRICS;

/// Runs for the life of the node.
pub async fn run(ctx: Arc<NodeCtx>) {
    let me = ctx.config.node_id;
    let mut metrics = ctx.raft.metrics();
    let mut leader: Option<u64> = None;
    let mut was_leader = false;
    let mut members: Option<(BTreeSet<u64>, BTreeSet<u64>)> = None;
    loop {
        let m = metrics.borrow_watched().clone();
        let term = m.current_term;
        if m.current_leader != leader {
            if leader.is_some() || m.current_leader.is_some() {
                METRICS.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            match m.current_leader {
                Some(id) => tracing::info!(node_id = me, term, leader = id, "leader is node {id}"),
                None => tracing::warn!(node_id = me, term, "no leader known"),
            }
            leader = m.current_leader;
        }
        let is_leader = m.state == ServerState::Leader;
        if is_leader != was_leader {
            if is_leader {
                tracing::info!(node_id = me, term, "became leader");
            } else {
                tracing::info!(node_id = me, term, "lost leadership");
            }
            was_leader = is_leader;
        }
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        let all: BTreeSet<u64> = voters.union(&learners).copied().collect();
        if let Some((old_voters, old_learners)) = &members
            && (old_voters != &voters || old_learners != &learners)
        {
            let before: BTreeSet<u64> = old_voters.union(old_learners).copied().collect();
            for id in all.difference(&before) {
                tracing::info!(
                    node_id = me,
                    term,
                    added = id,
                    "node {id} added to the cluster"
                );
            }
            for id in before.difference(&all) {
                tracing::info!(
                    node_id = me,
                    term,
                    removed = id,
                    "node {id} removed from the cluster"
                );
            }
            let list =
                |ids: &BTreeSet<u64>| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            tracing::info!(
                node_id = me,
                term,
                voters = %list(&voters),
                learners = %list(&learners),
                "membership changed"
            );
        }
        members = Some((voters, learners));
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
