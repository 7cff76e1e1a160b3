//! Read barriers: when a read at a given consistency level ([`ReadLevel`])
//! may be served from this node's state. Linearizable (the leader confirms
//! its leadership; a follower asks the leader for its read index and waits
//! to apply it), at-least-index (wait to apply an index) and bounded
//! staleness (refuse when too far behind the leader). They fail with a
//! [`ReadError`] carrying the machine-readable reason; the gRPC edge maps it
//! to a status (`grpc::status::read_error`).
//!
//! Linearizable reads are batched ([`start_read_rounds`]): one read-index
//! round (on the leader a leadership confirmation by a quorum, on a follower
//! one fetch of the leader's read index) answers every read that arrived
//! while the previous round was in flight, as etcd does. A read only ever
//! takes the index of a round that *started after it arrived*, so that index
//! is at least the commit index at its arrival: the guarantee of one round
//! per read, at one round per batch. A round in flight when the node learns
//! of a new leader is started again for the same reads (a round stuck on a
//! leader that is gone would hold every read behind it). At most
//! [`MAX_WAITING_READS`] reads wait for a round; more wait for room
//! (backpressure).

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::ReadPolicy;
use openraft::async_runtime::WatchReceiver;
use tally_proto::v1::raft_client::RaftClient;
use tally_proto::v1::{ReadConsistency, ReadIndexRequest, ReadOptions};
use tokio::sync::{mpsc, oneshot};

use crate::ctx::NodeCtx;
use crate::raft::network::CLUSTER_METADATA_KEY;

/// Longest a read waits for this node to apply far enough, and longest one
/// read-index round may take.
pub const READ_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A read-index round still running after this long starts watching for a
/// new leader (see `read_index_round_following_leader`). A leader change
/// takes longer than this anyway (the election timeout is 150-300 ms).
const SLOW_ROUND: Duration = Duration::from_millis(50);

/// Most times one batch's read-index round is started again because the
/// leader changed while it ran (then it runs to its end or timeout).
pub const MAX_ROUND_RESTARTS: u32 = 3;

/// Most linearizable reads queued for the next read-index round (and so the
/// most one round answers); a read that finds the queue full waits for room.
pub const MAX_WAITING_READS: usize = 16_384;

/// Where a read waiting for a round gets the round's read index.
pub type ReadIndexReply = oneshot::Sender<Result<u64, ReadError>>;

/// Starts the task that runs this node's read-index rounds, one at a time,
/// each for all reads queued since the last one began. It holds the context
/// weakly and ends when the context is dropped.
pub fn start_read_rounds(ctx: &Arc<NodeCtx>) {
    let (tx, rx) = mpsc::channel(MAX_WAITING_READS);
    if ctx.read_rounds.set(tx).is_ok() {
        tokio::spawn(run_read_rounds(Arc::downgrade(ctx), rx));
    }
}

async fn run_read_rounds(ctx: Weak<NodeCtx>, mut rx: mpsc::Receiver<ReadIndexReply>) {
    let mut batch: Vec<ReadIndexReply> = Vec::new();
    // Every read in `batch` was queued before this round starts (the round
    // begins only after `recv_many` returned them): the invariant that makes
    // sharing the round linearizable.
    while rx.recv_many(&mut batch, MAX_WAITING_READS).await > 0 {
        let Some(ctx) = ctx.upgrade() else { break };
        // Reads whose callers went away need no answer.
        batch.retain(|reply| !reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let result = ctx.read_index_round_following_leader().await;
        crate::metrics::METRICS
            .read_index_rounds
            .fetch_add(1, Relaxed);
        crate::metrics::METRICS
            .read_index_reads
            .fetch_add(batch.len() as u64, Relaxed);
        for reply in batch.drain(..) {
            let _ = reply.send(result.clone());
        }
    }
}

/// The consistency a read asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadLevel {
    /// Reflects every write acknowledged before the read started.
    Linearizable,
    /// Reflects at least the log up to `min_index` (read-your-writes).
    AtLeastIndex { min_index: u64 },
    /// Any node at most this far behind the leader (0: no bound).
    Bounded {
        max_lag_entries: u64,
        max_lag_ms: u64,
    },
}

impl From<&ReadOptions> for ReadLevel {
    /// An unknown consistency value reads linearizably.
    fn from(opts: &ReadOptions) -> Self {
        match ReadConsistency::try_from(opts.consistency).unwrap_or(ReadConsistency::Linearizable) {
            ReadConsistency::Linearizable => ReadLevel::Linearizable,
            ReadConsistency::AtLeastIndex => ReadLevel::AtLeastIndex {
                min_index: opts.min_index,
            },
            ReadConsistency::Bounded => ReadLevel::Bounded {
                max_lag_entries: opts.max_lag_entries,
                max_lag_ms: opts.max_lag_ms,
            },
        }
    }
}

/// This node did not apply an index within [`READ_WAIT_TIMEOUT`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotApplied {
    pub node_id: u64,
    /// The index waited for.
    pub index: u64,
    /// The applied index when the wait gave up.
    pub applied: u64,
}

impl fmt::Display for NotApplied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} has not applied index {} within {} ms (applied {})",
            self.node_id,
            self.index,
            READ_WAIT_TIMEOUT.as_millis(),
            self.applied
        )
    }
}

/// Why a read may not be served here (now).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Not the leader (any more); the leader is at `leader_addr`.
    #[error("not the leader; the leader is at {leader_addr}")]
    NotLeader { leader_addr: String },
    /// No leader is known.
    #[error("no leader is known (election in progress?); retry")]
    NoLeader,
    /// The known leader's address is unusable.
    #[error("{0}")]
    LeaderUnreachable(String),
    /// The leader did not answer the read index request.
    #[error("read index from leader {leader}: {message}")]
    ReadIndexFailed { leader: String, message: String },
    /// A follower did not apply the leader's read index in time.
    #[error("{0}")]
    ReadIndexNotApplied(NotApplied),
    /// An at-least-index read: the index was not applied in time.
    #[error("{0}")]
    IndexNotReached(NotApplied),
    /// A bounded read: more entries behind the leader's commit than allowed.
    #[error("node {node_id} lags {lag_entries} entries (bound {bound})")]
    StaleByEntries {
        node_id: u64,
        lag_entries: u64,
        bound: u64,
    },
    /// A bounded read: the leader was last heard from longer ago than allowed.
    #[error(
        "node {node_id} last heard from a leader {} ago (bound {bound_ms} ms)",
        since_ms.map(|m| format!("{m} ms")).unwrap_or("never".into())
    )]
    StaleByTime {
        node_id: u64,
        since_ms: Option<u64>,
        bound_ms: u64,
    },
    /// This node was removed from the cluster: it serves no reads.
    #[error("node {node_id} was removed from the cluster; ask a current member")]
    NodeRemoved { node_id: u64 },
    /// The state machine stopped while the read waited.
    #[error("node shutting down")]
    ShuttingDown,
}

impl ReadError {
    /// `NotLeader` naming the leader when it is known, else `NoLeader`.
    pub fn not_leader(leader_addr: Option<String>) -> Self {
        match leader_addr {
            Some(leader_addr) => ReadError::NotLeader { leader_addr },
            None => ReadError::NoLeader,
        }
    }

    /// The machine-readable reason (`None`: the node is going away).
    pub fn reason(&self) -> Option<&'static str> {
        Some(match self {
            ReadError::NotLeader { .. } | ReadError::ReadIndexFailed { .. } => "NOT_LEADER",
            ReadError::NoLeader | ReadError::LeaderUnreachable(_) => "NO_LEADER",
            ReadError::ReadIndexNotApplied(_) => "READ_INDEX_NOT_APPLIED",
            ReadError::IndexNotReached(_) => "INDEX_NOT_REACHED",
            ReadError::StaleByEntries { .. } | ReadError::StaleByTime { .. } => "STALE_REPLICA",
            ReadError::NodeRemoved { .. } => "NODE_REMOVED",
            ReadError::ShuttingDown => return None,
        })
    }
}

impl NodeCtx {
    /// Returns once a read at `level` may be served from this node's state.
    /// A removed node refuses every read (`NodeRemoved`).
    pub async fn read_barrier(&self, level: ReadLevel) -> Result<(), ReadError> {
        if self.removed() {
            return Err(ReadError::NodeRemoved {
                node_id: self.config.node_id,
            });
        }
        match level {
            ReadLevel::Linearizable => self.linearizable_barrier().await,
            ReadLevel::AtLeastIndex { min_index } => {
                self.wait_applied(min_index, ReadError::IndexNotReached)
                    .await
            }
            ReadLevel::Bounded {
                max_lag_entries,
                max_lag_ms,
            } => self.bounded_barrier(max_lag_entries, max_lag_ms),
        }
    }

    /// Waits for a read index shared with the other linearizable reads (the
    /// next round's, see the module doc), then to apply it.
    pub async fn linearizable_barrier(&self) -> Result<(), ReadError> {
        let read_index = self.batched_read_index().await?;
        self.wait_applied(read_index, ReadError::ReadIndexNotApplied)
            .await
    }

    /// The read index of the next read-index round to start (one round of
    /// its own if the round task is not running).
    pub async fn batched_read_index(&self) -> Result<u64, ReadError> {
        let Some(rounds) = self.read_rounds.get() else {
            return self.read_index_round_following_leader().await;
        };
        let (reply, answer) = oneshot::channel();
        rounds
            .send(reply)
            .await
            .map_err(|_| ReadError::ShuttingDown)?;
        answer.await.map_err(|_| ReadError::ShuttingDown)?
    }

    /// A read-index round that is abandoned and started again when this
    /// node learns of a new leader while it runs (at most
    /// [`MAX_ROUND_RESTARTS`] times). Rounds run one at a time, so a round
    /// stuck on a leader that is gone (a follower's fetch from a paused or
    /// cut-off leader waits up to [`READ_WAIT_TIMEOUT`]) held every read
    /// queued behind it, even after this node or another had become leader:
    /// 3.5 s without reads, and so without the writes of the clients that
    /// wait for them, in a jepsen pause run. Restarting is as safe as the
    /// first round: every read of the batch arrived before it started.
    async fn read_index_round_following_leader(&self) -> Result<u64, ReadError> {
        let mut leader_at_start = self.raft.metrics().borrow_watched().current_leader;
        let round = self.read_index_round();
        tokio::pin!(round);
        // Most rounds end within a round trip: only a slow one watches the
        // leader (a watch on the Raft metrics wakes on every heartbeat
        // answer, which costs throughput when paid by every round).
        if let Ok(result) = tokio::time::timeout(SLOW_ROUND, &mut round).await {
            return result;
        }
        let mut restarts = 0;
        loop {
            let mut metrics = self.raft.metrics();
            let leader_changed = async move {
                loop {
                    // A leader known, and another one than at the round's
                    // start (an election in progress, no leader known, is
                    // waited out: a round restarted then would only fail
                    // with NO_LEADER).
                    let now = metrics.borrow_watched().current_leader;
                    if now.is_some() && now != leader_at_start {
                        return now;
                    }
                    if metrics.changed().await.is_err() {
                        // Shutting down: let the round itself end.
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                result = &mut round => return result,
                now = leader_changed, if restarts < MAX_ROUND_RESTARTS => {
                    leader_at_start = now;
                    restarts += 1;
                    crate::metrics::METRICS
                        .read_index_round_restarts
                        .fetch_add(1, Relaxed);
                    round.set(self.read_index_round());
                }
            }
        }
    }

    /// One read-index round. On the leader: the commit index, once a quorum
    /// confirmed this node still leads. On a follower: the leader's read index.
    async fn read_index_round(&self) -> Result<u64, ReadError> {
        if self.raft.is_leader() {
            // A lease read answers at once while the leader lease holds (no
            // follower can have voted for another leader within it); when
            // the lease is stale it fails at once and a quorum round runs.
            if self.config.lease_reads
                && let Ok((read_log_id, _applied)) =
                    self.raft.get_read_log_id(ReadPolicy::LeaseRead).await
            {
                crate::metrics::METRICS.lease_reads.fetch_add(1, Relaxed);
                return Ok(read_log_id.index());
            }
            let round = self.raft.get_read_log_id(ReadPolicy::ReadIndex);
            return match tokio::time::timeout(READ_WAIT_TIMEOUT, round).await {
                Ok(Ok((read_log_id, _applied))) => Ok(read_log_id.index()),
                _ => Err(ReadError::not_leader(self.leader_addr())),
            };
        }
        let leader = self.leader_addr().ok_or(ReadError::NoLeader)?;
        let channel = self
            .peer_channel(&leader)
            .map_err(ReadError::LeaderUnreachable)?;
        let mut req = tonic::Request::new(ReadIndexRequest {});
        req.set_timeout(READ_WAIT_TIMEOUT);
        if let Ok(v) = self.config.cluster_id.parse() {
            req.metadata_mut().insert(CLUSTER_METADATA_KEY, v);
        }
        match RaftClient::new(channel).read_index(req).await {
            Ok(resp) => Ok(resp.into_inner().read_index),
            Err(s) => Err(ReadError::ReadIndexFailed {
                leader,
                message: s.message().to_string(),
            }),
        }
    }

    /// The leader always passes; a follower passes if it is within
    /// `max_lag_entries` of the leader's last reported commit index and heard
    /// from the leader within `max_lag_ms` (a bound of 0 is not checked).
    pub fn bounded_barrier(&self, max_lag_entries: u64, max_lag_ms: u64) -> Result<(), ReadError> {
        if self.raft.is_leader() {
            return Ok(());
        }
        let applied = *self.applied.borrow();
        let lag_entries = self.leader_contact.leader_commit().saturating_sub(applied);
        let since_ms = self.leader_contact.since_ms();
        if max_lag_entries > 0 && lag_entries > max_lag_entries {
            return Err(ReadError::StaleByEntries {
                node_id: self.config.node_id,
                lag_entries,
                bound: max_lag_entries,
            });
        }
        if max_lag_ms > 0 && since_ms.is_none_or(|ms| ms > max_lag_ms) {
            return Err(ReadError::StaleByTime {
                node_id: self.config.node_id,
                since_ms,
                bound_ms: max_lag_ms,
            });
        }
        Ok(())
    }

    /// Waits up to [`READ_WAIT_TIMEOUT`] for this node to apply `index`;
    /// `timed_out` names what the wait was for.
    pub async fn wait_applied(
        &self,
        index: u64,
        timed_out: fn(NotApplied) -> ReadError,
    ) -> Result<(), ReadError> {
        let mut rx = self.applied.clone();
        match tokio::time::timeout(READ_WAIT_TIMEOUT, rx.wait_for(|&applied| applied >= index))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ReadError::ShuttingDown),
            Err(_) => Err(timed_out(NotApplied {
                node_id: self.config.node_id,
                index,
                applied: *self.applied.borrow(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_options_map_to_levels_and_unknown_consistency_reads_linearizably() {
        let opts = |consistency: i32| ReadOptions {
            consistency,
            min_index: 7,
            max_lag_entries: 3,
            max_lag_ms: 500,
        };
        assert_eq!(
            ReadLevel::from(&opts(ReadConsistency::Linearizable as i32)),
            ReadLevel::Linearizable
        );
        assert_eq!(
            ReadLevel::from(&opts(ReadConsistency::AtLeastIndex as i32)),
            ReadLevel::AtLeastIndex { min_index: 7 }
        );
        assert_eq!(
            ReadLevel::from(&opts(ReadConsistency::Bounded as i32)),
            ReadLevel::Bounded {
                max_lag_entries: 3,
                max_lag_ms: 500
            }
        );
        assert_eq!(ReadLevel::from(&opts(99)), ReadLevel::Linearizable);
    }
}
