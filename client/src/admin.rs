//! Cluster administration on [`Client`]: init, membership changes,
//! leadership transfer and finalizing an upgrade (sent to the leader,
//! following `NOT_LEADER` like writes), per-node maintenance (snapshot,
//! compact) and status.
//!
//! Membership changes are not idempotent the way ledger commands are: if one
//! ends in [`ClientError::Timeout`] it may or may not have taken effect, and
//! a retry may be refused because it already did. Check `cluster_status`.
//!
//! Refusals carry a machine-readable reason ([`ClientError::reason`], one of
//! [`crate::reasons`]): only one membership change runs at a time
//! (`MEMBERSHIP_CHANGE_IN_PROGRESS`), ids of current members
//! (`NODE_ID_IN_USE`) and of removed nodes (`NODE_ID_RETIRED`) cannot be
//! added, and `remove` refuses to drop the last voter (`LAST_VOTER`) or,
//! without `force`, to leave the remaining voters without a reachable
//! majority (`WOULD_LOSE_QUORUM`).

use std::time::Duration;

use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::{
    AddLearnerRequest, ClusterStatus, ClusterStatusRequest, CompactRequest, CompactResponse,
    InitRequest, Member, MembershipResponse, NodeStatus, NodeStatusRequest, PromoteRequest,
    RemoveRequest, ReplaceRequest, SetClusterVersionRequest, SetClusterVersionResponse,
    SnapshotRequest, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
};
use tonic::transport::Channel;

use crate::client::{Client, MAX_MESSAGE_BYTES, with_timeout};
use crate::config::parse_endpoint;
use crate::error::ClientError;
use crate::retry::{CallFailure, Policy, Route};

fn admin_client(channel: Channel) -> AdminClient<Channel> {
    AdminClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Membership changes may wait for a learner to catch up: no per-attempt cap.
fn membership_policy() -> Policy {
    Policy {
        route: Route::Leader { remember: true },
        cap_attempts: false,
        write: false,
        observe: false,
    }
}

/// A maintenance call on one node that may take long (no per-attempt cap).
fn node_policy(endpoint: &str) -> Result<Policy, ClientError> {
    Ok(Policy {
        route: Route::Fixed(parse_endpoint(endpoint)?),
        cap_attempts: false,
        write: false,
        observe: false,
    })
}

impl Client {
    /// Initializes a new cluster with `members` as its voters. Sent to the
    /// first configured endpoint that answers (call it once per cluster).
    pub async fn init(&self, members: Vec<Member>) -> Result<(), ClientError> {
        if members.is_empty() {
            return Err(ClientError::InvalidArgument {
                reason: "INVALID_ARGUMENT".to_string(),
                message: "init needs at least one member".to_string(),
            });
        }
        let mut normalized = Vec::with_capacity(members.len());
        for member in members {
            normalized.push(Member {
                node_id: member.node_id,
                addr: parse_endpoint(&member.addr)?,
            });
        }
        let request = InitRequest {
            members: normalized,
        };
        let policy = Policy {
            route: Route::InOrder,
            cap_attempts: true,
            write: false,
            observe: false,
        };
        self.run(policy, |channel, timeout| {
            let request = request.clone();
            async move {
                admin_client(channel)
                    .init(with_timeout(request, timeout))
                    .await?;
                Ok(())
            }
        })
        .await
        .map_err(CallFailure::into_client_error)
    }

    /// Adds a node as a non-voting learner (it starts replicating).
    pub async fn add_learner(
        &self,
        node_id: u64,
        addr: impl Into<String>,
    ) -> Result<MembershipResponse, ClientError> {
        let addr = parse_endpoint(&addr.into())?;
        let request = AddLearnerRequest {
            member: Some(Member { node_id, addr }),
        };
        self.membership(move |channel, timeout| {
            let request = request.clone();
            async move {
                let response = admin_client(channel)
                    .add_learner(with_timeout(request, timeout))
                    .await?;
                Ok(response.into_inner())
            }
        })
        .await
    }

    /// Turns a learner into a voter.
    pub async fn promote(&self, node_id: u64) -> Result<MembershipResponse, ClientError> {
        let request = PromoteRequest { node_id };
        self.membership(move |channel, timeout| async move {
            let response = admin_client(channel)
                .promote(with_timeout(request, timeout))
                .await?;
            Ok(response.into_inner())
        })
        .await
    }

    /// Removes a node from the membership. `force` asks the server to skip
    /// its safety checks (see the server's documentation).
    pub async fn remove(
        &self,
        node_id: u64,
        force: bool,
    ) -> Result<MembershipResponse, ClientError> {
        let request = RemoveRequest { node_id, force };
        self.membership(move |channel, timeout| async move {
            let response = admin_client(channel)
                .remove(with_timeout(request, timeout))
                .await?;
            Ok(response.into_inner())
        })
        .await
    }

    /// Replaces voter `old_node_id` by a new node in one server-side
    /// sequence: adds `new_node_id` at `addr` as a learner, waits for it to
    /// catch up, promotes it, then removes the old node (the cluster never
    /// has fewer voters than before). `force` skips the removal's quorum
    /// check. The new node's process must already be running (empty data
    /// dir, same cluster id). Can take long: give the client a generous
    /// timeout. On [`ClientError::Timeout`] the sequence may have stopped
    /// part-way: check `cluster_status`.
    pub async fn replace(
        &self,
        old_node_id: u64,
        new_node_id: u64,
        addr: impl Into<String>,
        force: bool,
    ) -> Result<MembershipResponse, ClientError> {
        let addr = parse_endpoint(&addr.into())?;
        let request = ReplaceRequest {
            old_node_id,
            new_member: Some(Member {
                node_id: new_node_id,
                addr,
            }),
            force,
        };
        self.membership(move |channel, timeout| {
            let request = request.clone();
            async move {
                let response = admin_client(channel)
                    .replace(with_timeout(request, timeout))
                    .await?;
                Ok(response.into_inner())
            }
        })
        .await
    }

    /// Moves leadership to voter `node_id` and returns once it leads (the
    /// server waits up to 10 s). Transferring to the current leader succeeds
    /// at once. Writes in flight are retried on the new leader by the client
    /// like after any leader change; the client forgets its remembered
    /// leader and finds the new one on its next write.
    pub async fn transfer_leader(
        &self,
        node_id: u64,
    ) -> Result<TransferLeaderResponse, ClientError> {
        let request = TransferLeaderRequest { node_id };
        let policy = Policy {
            route: Route::Leader { remember: false },
            cap_attempts: false,
            write: false,
            observe: false,
        };
        let response = self
            .run(policy, |channel, timeout| async move {
                let response = admin_client(channel)
                    .transfer_leader(with_timeout(request, timeout))
                    .await?;
                Ok(response.into_inner())
            })
            .await
            .map_err(CallFailure::into_client_error)?;
        self.shared.router.clear_leader();
        Ok(response)
    }

    /// Makes the node at `endpoint` take a snapshot of its state now (each
    /// node snapshots on its own; this is not replicated). Returns the
    /// snapshot's log index.
    pub async fn snapshot(&self, endpoint: &str) -> Result<SnapshotResponse, ClientError> {
        self.run(node_policy(endpoint)?, |channel, timeout| async move {
            let response = admin_client(channel)
                .trigger_snapshot(with_timeout(SnapshotRequest {}, timeout))
                .await?;
            Ok(response.into_inner())
        })
        .await
        .map_err(CallFailure::into_client_error)
    }

    /// Makes the node at `endpoint` purge its Raft log up to its last
    /// snapshot (refused with `NO_SNAPSHOT` before the first one). Returns
    /// the purged and snapshot indexes.
    pub async fn compact(&self, endpoint: &str) -> Result<CompactResponse, ClientError> {
        self.run(node_policy(endpoint)?, |channel, timeout| async move {
            let response = admin_client(channel)
                .compact(with_timeout(CompactRequest {}, timeout))
                .await?;
            Ok(response.into_inner())
        })
        .await
        .map_err(CallFailure::into_client_error)
    }

    async fn membership<F, Fut>(&self, op: F) -> Result<MembershipResponse, ClientError>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<MembershipResponse, tonic::Status>>,
    {
        self.run(membership_policy(), op)
            .await
            .map_err(CallFailure::into_client_error)
    }

    /// Finalizes an upgrade: asks the leader to raise the active cluster
    /// version to `version` (0: the highest every member supports). The
    /// leader refuses (`VERSION_NOT_SUPPORTED`, `NODE_UNREACHABLE`) unless
    /// every voter and learner answers and supports it. With `dry_run` it
    /// only reports each member's support. Idempotent: raising to the
    /// active version (or below) changes nothing.
    pub async fn set_cluster_version(
        &self,
        version: u32,
        dry_run: bool,
    ) -> Result<SetClusterVersionResponse, ClientError> {
        let request = SetClusterVersionRequest { version, dry_run };
        let policy = Policy {
            route: Route::Leader { remember: false },
            cap_attempts: false,
            write: false,
            observe: false,
        };
        let result = self
            .run(policy, |channel, timeout| async move {
                let response = admin_client(channel)
                    .set_cluster_version(with_timeout(request, timeout))
                    .await?;
                Ok(response.into_inner())
            })
            .await
            .map_err(CallFailure::into_client_error);
        match result {
            // A leader of a release before cluster versions has no such method.
            Err(ClientError::Status {
                code: tonic::Code::Unimplemented,
                ..
            }) => Err(ClientError::Status {
                code: tonic::Code::FailedPrecondition,
                reason: "VERSION_NOT_SUPPORTED".into(),
                message: "the leader runs a release without cluster versions (before 0.2.0): \
                          upgrade every node first"
                    .into(),
            }),
            other => other,
        }
    }

    /// The cluster as the leader sees it (membership and every node's
    /// status). Goes to the leader when one is known, following hints.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        let policy = Policy {
            route: Route::Leader { remember: false },
            cap_attempts: true,
            write: false,
            observe: false,
        };
        self.run(policy, |channel, timeout| async move {
            let response = admin_client(channel)
                .get_cluster_status(with_timeout(ClusterStatusRequest {}, timeout))
                .await?;
            Ok(response.into_inner())
        })
        .await
        .map_err(CallFailure::into_client_error)
    }

    /// One node's own view of itself, asked of that node only.
    pub async fn node_status(&self, endpoint: &str) -> Result<NodeStatus, ClientError> {
        let policy = Policy {
            route: Route::Fixed(parse_endpoint(endpoint)?),
            cap_attempts: true,
            write: false,
            observe: false,
        };
        self.run(policy, |channel, timeout| async move {
            let response = admin_client(channel)
                .get_node_status(with_timeout(NodeStatusRequest::default(), timeout))
                .await?;
            Ok(response.into_inner())
        })
        .await
        .map_err(CallFailure::into_client_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientConfig;

    #[tokio::test]
    async fn admin_arguments_are_checked_locally() {
        let client = Client::new(ClientConfig {
            timeout_ms: 50,
            ..ClientConfig::new(["127.0.0.1:1"])
        });
        let Ok(client) = client else { panic!("config") };
        assert!(matches!(
            client.init(Vec::new()).await,
            Err(ClientError::InvalidArgument { .. })
        ));
        let bad = vec![Member {
            node_id: 1,
            addr: "no-port".into(),
        }];
        assert!(matches!(
            client.init(bad).await,
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            client.add_learner(4, "bad addr:1").await,
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            client.node_status("x").await,
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            client.replace(1, 4, "no-port", false).await,
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            client.snapshot("x").await,
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            client.compact("x:0").await,
            Err(ClientError::Config(_))
        ));
    }

    /// A listener that accepts TCP connections and never says anything (an
    /// address that does not answer, as far as gRPC is concerned).
    async fn mute_listener() -> Option<(String, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
        let addr = listener.local_addr().ok()?.to_string();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        Some((addr, task))
    }

    #[tokio::test]
    async fn slow_admin_calls_to_an_unreachable_node_fail_after_the_connect_timeout() {
        let Some((mute, task)) = mute_listener().await else {
            return;
        };
        let refused = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr())
        {
            Ok(addr) => addr.to_string(),
            Err(_) => return,
        };
        for addr in [mute, refused] {
            let client = Client::new(ClientConfig {
                timeout_ms: 120_000,
                connect_timeout_ms: 200,
                ..ClientConfig::new([addr.clone()])
            });
            let Ok(client) = client else { panic!("config") };
            let started = std::time::Instant::now();
            let promote = client.promote(2).await;
            let snapshot = client.snapshot(&addr).await;
            let transfer = client.transfer_leader(2).await;
            let took = started.elapsed();
            for result in [
                promote.map(|_| ()),
                snapshot.map(|_| ()),
                transfer.map(|_| ()),
            ] {
                assert!(
                    matches!(&result, Err(ClientError::Unavailable { last_error }) if last_error.contains("connect timeout")),
                    "{addr}: {result:?}"
                );
            }
            // Three calls, each bounded by one connect timeout plus backoff.
            assert!(
                took < std::time::Duration::from_secs(3),
                "{addr}: took {took:?}"
            );
        }
        task.abort();
    }
}
