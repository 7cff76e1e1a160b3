//! How a removed node learns that it was removed. The leader stops
//! replicating to a node as soon as it leaves the membership, so the node
//! never applies the change that removed it: it only stops hearing from a
//! leader. When that lasts [`SILENCE_BEFORE_ASKING`], it asks the peers in
//! the membership it knows for their applied membership
//! (`Admin.GetAppliedMembership`); a peer of the same cluster that lists its
//! id among the retired ids settles it (ids are never reused). From then on
//! the node is not ready (`/readyz` 503, gRPC health NOT_SERVING), refuses
//! client reads and writes with `NODE_REMOVED`, reports role `removed`, and
//! says so once in its log. The check of its own applied state
//! (`NodeCtx::removed`) covers a node that did apply its removal.

use std::sync::Arc;
use std::time::Duration;

use tally_proto::v1::AppliedMembershipRequest;
use tally_proto::v1::admin_client::AdminClient;

use crate::ctx::NodeCtx;

/// How long without a leader's message before a node asks its peers.
pub const SILENCE_BEFORE_ASKING: Duration = Duration::from_secs(2);
/// How often the check runs.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// Per-peer timeout of the question.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);

/// Watches for this node's removal until the process exits; logs it once.
pub async fn watch(ctx: Arc<NodeCtx>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if ctx.removed() {
            break;
        }
        if ctx.raft.is_leader() {
            continue;
        }
        let silent = ctx
            .leader_contact
            .since_ms()
            .is_none_or(|ms| ms >= SILENCE_BEFORE_ASKING.as_millis() as u64);
        if silent && peer_says_removed(&ctx).await {
            ctx.mark_removed();
            break;
        }
    }
    tracing::warn!(
        node_id = ctx.config.node_id,
        "this node was removed from the cluster: it serves no client traffic any more \
         (readyz 503, reads and writes refused with NODE_REMOVED); it can be stopped"
    );
}

/// Whether any peer of this node's cluster lists this node's id as retired.
async fn peer_says_removed(ctx: &NodeCtx) -> bool {
    let me = ctx.config.node_id;
    let peers: Vec<String> = ctx
        .metrics()
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| **id != me)
        .map(|(_, node)| node.addr.clone())
        .collect();
    for addr in peers {
        let Ok(channel) = ctx.peer_channel(&addr) else {
            continue;
        };
        let mut req = tonic::Request::new(AppliedMembershipRequest {});
        req.set_timeout(ASK_TIMEOUT);
        let answer = tokio::time::timeout(
            ASK_TIMEOUT,
            AdminClient::new(channel).get_applied_membership(req),
        )
        .await;
        if let Ok(Ok(resp)) = answer {
            let m = resp.into_inner();
            if m.cluster_id == ctx.config.cluster_id && m.retired_node_ids.contains(&me) {
                return true;
            }
        }
    }
    false
}
