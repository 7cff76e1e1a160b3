//! Graceful stop on SIGTERM or Ctrl-C: a leader first hands leadership to
//! the most caught-up other voter (so stopping it costs no election
//! timeout and its clients are redirected at once), then the gRPC server
//! stops accepting connections and answers the requests in flight (a
//! write whose entry did not commit before leadership moved is answered
//! `OUTCOME_UNKNOWN`, which clients retry with the same command id), and
//! Raft shuts down. Bounded: the hand-over gives up after
//! [`HAND_OVER_TIMEOUT`] and the node stops anyway; requests or
//! connections still open [`DRAIN_TIMEOUT`] after it are cut off.

use std::time::Duration;

use openraft::ServerState;

use crate::ctx::NodeCtx;

/// Longest the whole leadership hand-over may take before the node stops anyway.
pub const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the server waits for open requests and connections after the
/// hand-over; then they are cut off (a client sees an unknown outcome and
/// retries with the same command id).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one candidate gets to take over.
const PER_CANDIDATE_TIMEOUT: Duration = Duration::from_secs(3);
/// A candidate further behind than this many entries is not asked.
const MAX_LAG_ENTRIES: u64 = 1000;

/// If this node leads, moves leadership to another voter, the most caught
/// up first. Returns the new leader's id (`None`: not the leader, no other
/// voter, or none took over in time).
pub async fn hand_over_leadership(ctx: &NodeCtx) -> Option<u64> {
    tokio::time::timeout(HAND_OVER_TIMEOUT, hand_over(ctx))
        .await
        .ok()
        .flatten()
}

async fn hand_over(ctx: &NodeCtx) -> Option<u64> {
    let me = ctx.config.node_id;
    let m = ctx.metrics();
    if m.state != ServerState::Leader {
        return None;
    }
    let last = m.last_log_index.unwrap_or(0);
    let matched = |id: u64| {
        m.replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|l| l.index)
            .unwrap_or(0)
    };
    let mut candidates: Vec<(u64, u64)> = m
        .membership_config
        .voter_ids()
        .filter(|id| *id != me)
        .map(|id| (matched(id), id))
        .filter(|(at, _)| *at > 0 && last.saturating_sub(*at) <= MAX_LAG_ENTRIES)
        .collect();
    candidates.sort_by_key(|(at, id)| (std::cmp::Reverse(*at), *id));
    for (_, to) in candidates {
        tracing::info!(node_id = me, to, "stopping: handing leadership over");
        if ctx.raft.trigger().transfer_leader(to).await.is_err() {
            continue;
        }
        let took = ctx
            .raft
            .wait(Some(PER_CANDIDATE_TIMEOUT))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "leadership hand-over",
            )
            .await;
        if let Ok(m) = took {
            let leader = m.current_leader.unwrap_or(to);
            tracing::info!(node_id = me, leader, "stopping: leadership handed over");
            return Some(leader);
        }
    }
    tracing::warn!(
        node_id = me,
        "stopping: no other voter took leadership in time; stopping as leader"
    );
    None
}
