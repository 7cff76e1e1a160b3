//! [`Client`]: the handle applications use. Owns the shared routing state
//! and the session index (the highest applied index this client has seen,
//! for [`Consistency::Session`] reads), and turns each public call (writes
//! and reads) into a retry-loop run with the right routing policy and
//! outcome mapping. Admin calls live in `admin.rs`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tally_proto::MAX_BATCH_COMMANDS;
use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::ledger_client::LedgerClient;
use tally_proto::v1::{
    Command, CommandResult, GetAccountRequest, GetAccountResponse, GetBalanceRequest,
    GetBalanceResponse, GetHoldRequest, GetHoldResponse, GetSettingsRequest, GetSettingsResponse,
    GetStateHashRequest, GetStateHashResponse, NodeStatusRequest, ReplyDetail, SubmitBatchRequest,
    SubmitRequest,
};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::config::{ClientConfig, parse_endpoint};
use crate::error::{ClientError, reasons};
use crate::ids::validate_command_id;
use crate::read::{Consistency, Owner, ReadOptions, ReadPolicy};
use crate::result::WriteResult;
use crate::retry::{self, CallFailure, Policy, Route};
use crate::router::Router;

/// Largest gRPC message the client sends or accepts (a full batch's results
/// with their events can exceed tonic's 4 MiB default).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Request metadata with which a follower marks a write it forwards to the
/// leader; a write carrying it is not forwarded again. The client sets it on
/// its own writes: a follower then answers `NOT_LEADER` with the leader's
/// address instead of forwarding, so the client learns the real leader and
/// sends later writes there directly (a forwarded success would not say
/// which node led, and every later write would pay the extra hop). When a
/// hinted leader address cannot be connected to (the client reaches only
/// some nodes), the client leaves it off for a while and lets followers
/// forward (see `Router::forward_writes`).
use tally_proto::NO_FORWARD_METADATA_KEY;

/// Longest a leader discovery (a node-status sweep) waits for each node.
const DISCOVERY_TIMEOUT: Duration = Duration::from_millis(1000);

/// A handle to a Tally cluster. Cheap to clone (the state is shared behind an
/// `Arc`); use one per process from as many tasks as you like. Every call
/// retries across nodes until its deadline (`timeout_ms`).
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    pub(crate) timeout: Duration,
    /// False: writes ask for verdicts only (`REPLY_DETAIL_VERDICT`).
    pub(crate) reply_events: bool,
}

pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    pub(crate) router: Router,
    /// The highest applied index seen in any answer (writes and reads): the
    /// floor of [`Consistency::Session`] reads.
    pub(crate) session_index: AtomicU64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.shared.router.endpoints())
            .field("leader", &self.shared.router.leader())
            .field("session_index", &self.session_index())
            .field("timeout_ms", &self.timeout.as_millis())
            .finish()
    }
}

impl Client {
    /// Validates the configuration. Connects lazily: nothing is dialed until
    /// the first call, so this succeeds while nodes are down, and it need
    /// not run inside a Tokio runtime (calls must).
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let endpoints = config.validate()?;
        let router = Router::new(endpoints, Duration::from_millis(config.connect_timeout_ms))
            .with_tls(config.tls.as_ref().map(|t| t.config()));
        let timeout = config.timeout();
        Ok(Client {
            shared: Arc::new(Shared {
                config,
                router,
                session_index: AtomicU64::new(0),
            }),
            timeout,
            reply_events: true,
        })
    }

    /// The session index: the highest applied log index this client (or a
    /// clone) has seen in a write or read answer. [`Consistency::Session`]
    /// reads are served only by nodes that have applied at least this far.
    pub fn session_index(&self) -> u64 {
        self.shared.session_index.load(Ordering::Acquire)
    }

    /// Raises the session index to `index` (never lowers it): e.g. to carry
    /// a session over from another process that passed its index along.
    pub fn advance_session(&self, index: u64) {
        self.shared.session_index.fetch_max(index, Ordering::AcqRel);
    }

    fn forward_writes(&self) -> bool {
        self.shared.router.forward_writes()
    }

    /// The read options `read` stands for on this client: the configured
    /// default filled in for [`Consistency::ClientDefault`], and the session
    /// index as the floor of a [`Consistency::Session`] read.
    pub fn resolve_read(&self, read: ReadOptions) -> ReadOptions {
        let mut read = read;
        if read.consistency == Consistency::ClientDefault {
            read.consistency = self.shared.config.read_consistency_default;
        }
        if read.consistency == Consistency::Session {
            read.min_index = read.min_index.max(self.session_index());
        }
        read
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    /// The normalized configured endpoints.
    pub fn endpoints(&self) -> &[String] {
        self.shared.router.endpoints()
    }

    /// The node that last accepted a write or membership change, if any.
    pub fn leader(&self) -> Option<String> {
        self.shared.router.leader()
    }

    /// A handle sharing this client's connections and leader tracking, whose
    /// calls get a different whole-call budget (0 is treated as 1 ms).
    pub fn with_timeout_ms(&self, timeout_ms: u64) -> Client {
        Client {
            shared: Arc::clone(&self.shared),
            timeout: Duration::from_millis(timeout_ms.max(1)),
            reply_events: self.reply_events,
        }
    }

    /// A handle sharing this client's connections and leader tracking whose
    /// writes return verdicts only (applied, or rejected with reason and
    /// message) and no events when `events` is false: the leader then skips
    /// formatting every balance change, and a batch's reply shrinks to a
    /// few bytes per command. For bulk writers that track balances
    /// themselves (a matching engine). `WriteResult::events()` is then empty.
    pub fn with_reply_events(&self, events: bool) -> Client {
        Client {
            shared: Arc::clone(&self.shared),
            timeout: self.timeout,
            reply_events: events,
        }
    }

    fn reply_detail(&self) -> i32 {
        if self.reply_events {
            ReplyDetail::Events as i32
        } else {
            ReplyDetail::Verdict as i32
        }
    }

    /// The whole-call budget of this handle, in milliseconds.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout.as_millis().try_into().unwrap_or(u64::MAX)
    }

    pub(crate) async fn run<T, F, Fut>(&self, policy: Policy, op: F) -> Result<T, CallFailure>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        retry::call(
            &self.shared.router,
            &self.shared.config,
            self.timeout,
            policy,
            op,
        )
        .await
    }

    // ---- writes ----

    /// Submits one command and waits for its outcome. Retries (with the same
    /// `command_id`) across nodes until applied, definitely rejected, or the
    /// deadline passes (then [`WriteResult::Unknown`]).
    pub async fn submit(&self, command: Command) -> WriteResult {
        let command_id = command.command_id.clone();
        if let Err((reason, message)) = check_command(&command) {
            return WriteResult::rejected(&command_id, reason, message);
        }
        let request = SubmitRequest {
            command: Some(command),
            reply_detail: self.reply_detail(),
        };
        let outcome = self
            .run(write_policy(), |channel, timeout| {
                let request = write_request(request.clone(), timeout, self.forward_writes());
                let command_id = command_id.clone();
                async move {
                    let response = ledger_client(channel).submit(request).await?.into_inner();
                    let result = response
                        .result
                        .ok_or_else(|| Status::internal("server returned no command result"))?;
                    let result = matching_result(result, &command_id)?;
                    Ok(WriteResult::from_engine(result, response.applied_index))
                }
            })
            .await;
        let result =
            outcome.unwrap_or_else(|failure| WriteResult::from_failure(&command_id, &failure));
        if let Some(index) = result.applied_index() {
            self.advance_session(index);
        }
        result
    }

    /// Submits up to [`MAX_BATCH_COMMANDS`] commands applied in order in one
    /// Raft entry; returns one outcome per command, in order. If the call
    /// fails as a whole every command gets the same kind of outcome (e.g. all
    /// `Unknown`). An empty batch returns at once.
    ///
    /// Returns [`ClientError::InvalidArgument`] without sending anything when
    /// the batch is larger than [`MAX_BATCH_COMMANDS`]; split it yourself,
    /// deciding what a later chunk should do if an earlier one is unknown.
    pub async fn submit_batch(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<WriteResult>, ClientError> {
        if commands.len() > MAX_BATCH_COMMANDS {
            return Err(ClientError::InvalidArgument {
                reason: reasons::BATCH_TOO_LARGE.to_string(),
                message: format!(
                    "a batch holds at most {MAX_BATCH_COMMANDS} commands, got {}",
                    commands.len()
                ),
            });
        }
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = commands.iter().map(|c| c.command_id.clone()).collect();
        for (i, command) in commands.iter().enumerate() {
            if let Err((reason, message)) = check_command(command) {
                let message = format!("command {i} of the batch: {message}");
                return Ok(ids
                    .iter()
                    .map(|id| WriteResult::rejected(id, reason, message.clone()))
                    .collect());
            }
        }
        let request = SubmitBatchRequest {
            commands,
            reply_detail: self.reply_detail(),
        };
        let outcome = self
            .run(write_policy(), |channel, timeout| {
                let request = write_request(request.clone(), timeout, self.forward_writes());
                let ids = ids.clone();
                async move {
                    let response = ledger_client(channel)
                        .submit_batch(request)
                        .await?
                        .into_inner();
                    if response.results.len() != ids.len() {
                        return Err(Status::internal(format!(
                            "server returned {} results for {} commands",
                            response.results.len(),
                            ids.len()
                        )));
                    }
                    let index = response.applied_index;
                    response
                        .results
                        .into_iter()
                        .zip(&ids)
                        .map(|(result, id)| {
                            matching_result(result, id).map(|r| WriteResult::from_engine(r, index))
                        })
                        .collect::<Result<Vec<_>, Status>>()
                }
            })
            .await;
        let results: Vec<WriteResult> = outcome.unwrap_or_else(|failure| {
            ids.iter()
                .map(|id| WriteResult::from_failure(id, &failure))
                .collect()
        });
        if let Some(index) = results.iter().filter_map(WriteResult::applied_index).max() {
            self.advance_session(index);
        }
        Ok(results)
    }

    // ---- reads ----

    /// One balance of an account or system account.
    pub async fn balance(
        &self,
        owner: impl Into<Owner>,
        asset: impl Into<String>,
        read: ReadOptions,
    ) -> Result<GetBalanceResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = GetBalanceRequest {
            owner: Some(owner.into().to_proto()),
            asset: asset.into(),
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, ledger_client, |mut c, r| async move {
            c.get_balance(r).await
        })
        .await
    }

    /// Every balance of a client account.
    pub async fn account(
        &self,
        account: u64,
        read: ReadOptions,
    ) -> Result<GetAccountResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = GetAccountRequest {
            account,
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, ledger_client, |mut c, r| async move {
            c.get_account(r).await
        })
        .await
    }

    /// One hold (order lock).
    pub async fn hold(&self, hold: u64, read: ReadOptions) -> Result<GetHoldResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = GetHoldRequest {
            hold,
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, ledger_client, |mut c, r| async move {
            c.get_hold(r).await
        })
        .await
    }

    /// The hash of the whole ledger state, from whichever node serves the read.
    pub async fn state_hash(&self, read: ReadOptions) -> Result<GetStateHashResponse, ClientError> {
        let read = self.resolve_read(read);
        let route = self.read_route(read).await;
        self.state_hash_via(route, read).await
    }

    /// The ledger's replicated settings (the idempotency window in force,
    /// its bounds, and the dedup table's fill and bound).
    pub async fn settings(&self, read: ReadOptions) -> Result<GetSettingsResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = GetSettingsRequest {
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, ledger_client, |mut c, r| async move {
            c.get_settings(r).await
        })
        .await
    }

    /// The hash of the whole ledger state as one specific node sees it (no
    /// failover to other nodes; transient errors are retried on that node).
    pub async fn state_hash_at(
        &self,
        endpoint: &str,
        read: ReadOptions,
    ) -> Result<GetStateHashResponse, ClientError> {
        let endpoint = parse_endpoint(endpoint)?;
        let read = self.resolve_read(read);
        self.state_hash_via(Route::Fixed(endpoint), read).await
    }

    async fn state_hash_via(
        &self,
        route: Route,
        read: ReadOptions,
    ) -> Result<GetStateHashResponse, ClientError> {
        let request = GetStateHashRequest {
            read: Some(read.to_proto()),
        };
        let policy = Policy {
            route,
            cap_attempts: true,
            write: false,
            observe: true,
        };
        let response = self
            .run(policy, |channel, timeout| async move {
                let response = ledger_client(channel)
                    .get_state_hash(with_timeout(request, timeout))
                    .await?;
                Ok(response.into_inner())
            })
            .await
            .map_err(CallFailure::into_client_error)?;
        self.advance_session(response.applied_index);
        Ok(response)
    }

    /// Runs a read (already resolved) on the nodes its consistency and the
    /// read policy pick, and folds its applied index into the session.
    async fn read<T, F, Fut>(&self, read: ReadOptions, op: F) -> Result<T, ClientError>
    where
        T: Served,
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let policy = Policy {
            route: self.read_route(read).await,
            cap_attempts: true,
            write: false,
            observe: true,
        };
        let value = self
            .run(policy, op)
            .await
            .map_err(CallFailure::into_client_error)?;
        self.advance_session(value.applied_index());
        Ok(value)
    }

    /// One read RPC through [`Client::read`]: each attempt builds `new_client`
    /// on the chosen channel and calls `call` with a copy of `request`
    /// carrying the attempt's deadline.
    pub(crate) async fn read_rpc<Req, Resp, C, F, Fut>(
        &self,
        read: ReadOptions,
        request: Req,
        new_client: fn(Channel) -> C,
        call: F,
    ) -> Result<Resp, ClientError>
    where
        Req: Clone,
        Resp: Served,
        F: Fn(C, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        self.read(read, |channel, timeout| {
            let pending = call(new_client(channel), with_timeout(request.clone(), timeout));
            async move { Ok(pending.await?.into_inner()) }
        })
        .await
    }

    /// Where a resolved read goes under the configured [`ReadPolicy`]. Finds
    /// the leader first when the policy needs it and none is known.
    async fn read_route(&self, read: ReadOptions) -> Route {
        let policy = self.shared.config.read_policy;
        let route = route_for(read.consistency, policy);
        let needs_leader = matches!(
            policy,
            ReadPolicy::LeaderOnly | ReadPolicy::FollowersPreferred
        );
        if needs_leader && self.leader().is_none() {
            self.discover_leader().await;
        }
        route
    }

    /// Asks every configured node for its status and remembers the one that
    /// says it leads (highest term wins). At most one sweep per 500 ms;
    /// returns the leader known afterwards. Node status is not free on the
    /// server, so this runs only when a routing decision needs the leader
    /// and none is known.
    pub(crate) async fn discover_leader(&self) -> Option<String> {
        let router = &self.shared.router;
        if !router.begin_discovery() {
            return router.leader();
        }
        let timeout =
            DISCOVERY_TIMEOUT.min(Duration::from_millis(self.shared.config.attempt_timeout_ms));
        let mut sweeps = tokio::task::JoinSet::new();
        for endpoint in router.endpoints() {
            let channel = match router.channel(endpoint) {
                Ok(channel) => channel,
                Err(_) => continue,
            };
            let endpoint = endpoint.clone();
            sweeps.spawn(async move {
                let mut admin = AdminClient::new(channel);
                let call = admin.get_node_status(with_timeout(
                    NodeStatusRequest {
                        omit_state_hash: true,
                    },
                    timeout,
                ));
                match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(status)) => {
                        let status = status.into_inner();
                        (status.role == "leader").then_some((status.term, endpoint))
                    }
                    _ => None,
                }
            });
        }
        let mut best: Option<(u64, String)> = None;
        while let Some(joined) = sweeps.join_next().await {
            if let Ok(Some((term, endpoint))) = joined
                && best.as_ref().is_none_or(|(t, _)| term > *t)
            {
                best = Some((term, endpoint));
            }
        }
        if let Some((_, endpoint)) = &best {
            router.set_leader(endpoint);
        }
        router.leader()
    }
}

/// Responses that say at which applied index they were served.
pub(crate) trait Served {
    fn applied_index(&self) -> u64;
}

/// `Served` for responses with an `applied_index` field.
macro_rules! served {
    ($($response:ty),* $(,)?) => {
        $(impl Served for $response {
            fn applied_index(&self) -> u64 {
                self.applied_index
            }
        })*
    };
}

served!(
    GetBalanceResponse,
    GetSettingsResponse,
    GetAccountResponse,
    GetHoldResponse,
    perps_pb::GetMarketResponse,
    perps_pb::GetPositionResponse,
    perps_pb::GetMarginResponse,
    perps_pb::GetExposureResponse,
    perps_pb::ListAtRiskResponse,
    perps_pb::GetDeltaExposureResponse,
);

fn write_policy() -> Policy {
    Policy {
        route: Route::Leader { remember: true },
        cap_attempts: true,
        write: true,
        observe: false,
    }
}

/// The route of a read at `consistency` (resolved) under `policy`; see the
/// table on [`ReadPolicy`].
fn route_for(consistency: Consistency, policy: ReadPolicy) -> Route {
    let linearizable = matches!(
        consistency,
        Consistency::Linearizable | Consistency::ClientDefault
    );
    match policy {
        ReadPolicy::LeaderOnly => Route::Leader { remember: false },
        ReadPolicy::FollowersPreferred => Route::Followers,
        ReadPolicy::Nearest => Route::Nearest,
        ReadPolicy::RoundRobin if linearizable => Route::Leader { remember: false },
        ReadPolicy::RoundRobin => Route::Spread,
    }
}

pub(crate) fn with_timeout<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

/// A write request with its timeout; unless `forward`, asking followers to
/// answer `NOT_LEADER` with a hint rather than forward (see
/// [`NO_FORWARD_METADATA_KEY`]).
fn write_request<T>(message: T, timeout: Duration, forward: bool) -> Request<T> {
    let mut request = with_timeout(message, timeout);
    if !forward {
        request
            .metadata_mut()
            .insert(NO_FORWARD_METADATA_KEY, MetadataValue::from_static("1"));
    }
    request
}

fn ledger_client(channel: Channel) -> LedgerClient<Channel> {
    LedgerClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Local checks that spare a round trip: a well-formed id and a body.
/// Returns the reason (the same names the server uses) and a message.
fn check_command(command: &Command) -> Result<(), (&'static str, String)> {
    validate_command_id(&command.command_id).map_err(|m| (reasons::INVALID_COMMAND_ID, m))?;
    if command.body.is_none() {
        return Err((
            reasons::MISSING_FIELD,
            format!("command {:?} has no body", command.command_id),
        ));
    }
    Ok(())
}

/// The result must belong to the command sent (an empty id is filled in).
fn matching_result(mut result: CommandResult, command_id: &str) -> Result<CommandResult, Status> {
    if result.command_id.is_empty() {
        result.command_id = command_id.to_string();
    }
    if result.command_id != command_id {
        return Err(Status::internal(format!(
            "server answered for command {:?} instead of {command_id:?}",
            result.command_id
        )));
    }
    Ok(result)
}

// ---- perpetual futures reads ----

use tally_proto::v1 as perps_pb;

fn perps_client(channel: Channel) -> perps_pb::perps_client::PerpsClient<Channel> {
    perps_pb::perps_client::PerpsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

impl Client {
    /// A perpetual market's parameters and state (mark price, funding time).
    pub async fn market(
        &self,
        market: impl Into<String>,
        read: ReadOptions,
    ) -> Result<perps_pb::GetMarketResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = perps_pb::GetMarketRequest {
            market: market.into(),
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, perps_client, |mut c, r| async move {
            c.get_market(r).await
        })
        .await
    }

    /// One position with its risk at the mark price (entry price, UPNL,
    /// margins, bracket, liquidation price).
    pub async fn position(
        &self,
        market: impl Into<String>,
        account: u64,
        read: ReadOptions,
    ) -> Result<perps_pb::GetPositionResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = perps_pb::GetPositionRequest {
            market: market.into(),
            account,
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, perps_client, |mut c, r| async move {
            c.get_position(r).await
        })
        .await
    }

    /// An account's cross margin per settle asset: wallet, equity, margins,
    /// margin ratio and its positions with liquidation prices.
    pub async fn margin(
        &self,
        account: u64,
        read: ReadOptions,
    ) -> Result<perps_pb::GetMarginResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = perps_pb::GetMarginRequest {
            account,
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, perps_client, |mut c, r| async move {
            c.get_margin(r).await
        })
        .await
    }

    /// An account's delta-equivalent exposure per underlying (exact for
    /// perpetuals and futures, a model-free range for options).
    pub async fn delta_exposure(
        &self,
        account: u64,
        read: ReadOptions,
    ) -> Result<perps_pb::GetDeltaExposureResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = perps_pb::GetDeltaExposureRequest {
            account,
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, perps_client, |mut c, r| async move {
            c.get_delta_exposure(r).await
        })
        .await
    }

    /// A market's exposure: open interest, long and short totals, mark
    /// price, insurance fund balance and inventory, PnL pool.
    pub async fn exposure(
        &self,
        market: impl Into<String>,
        read: ReadOptions,
    ) -> Result<perps_pb::GetExposureResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = perps_pb::GetExposureRequest {
            market: market.into(),
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, perps_client, |mut c, r| async move {
            c.get_exposure(r).await
        })
        .await
    }

    /// The `limit` accounts closest to liquidation (0 = 10; at most 1000),
    /// optionally only those margined in `settle_asset` (empty = all).
    pub async fn at_risk(
        &self,
        settle_asset: impl Into<String>,
        limit: u32,
        read: ReadOptions,
    ) -> Result<perps_pb::ListAtRiskResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = perps_pb::ListAtRiskRequest {
            settle_asset: settle_asset.into(),
            limit,
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, perps_client, |mut c, r| async move {
            c.list_at_risk(r).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{self, CommandExt};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn client_is_send_sync_clone() {
        assert_send_sync::<Client>();
    }

    #[test]
    fn reads_route_by_policy_and_consistency() {
        use Consistency::*;
        let leader = Route::Leader { remember: false };
        assert_eq!(route_for(Linearizable, ReadPolicy::RoundRobin), leader);
        assert_eq!(route_for(Session, ReadPolicy::RoundRobin), Route::Spread);
        assert_eq!(route_for(Bounded, ReadPolicy::RoundRobin), Route::Spread);
        assert_eq!(route_for(Bounded, ReadPolicy::LeaderOnly), leader);
        assert_eq!(
            route_for(Linearizable, ReadPolicy::FollowersPreferred),
            Route::Followers
        );
        assert_eq!(route_for(AtLeastIndex, ReadPolicy::Nearest), Route::Nearest);
        assert_eq!(route_for(Linearizable, ReadPolicy::Nearest), Route::Nearest);
    }

    #[test]
    fn session_reads_carry_the_highest_index_seen() {
        let client = dead_client(100);
        let session = client.resolve_read(ReadOptions::session());
        assert_eq!(
            (session.consistency, session.min_index),
            (Consistency::Session, 0)
        );
        client.advance_session(40);
        client.advance_session(7); // never lowers
        assert_eq!(client.session_index(), 40);
        let clone = client.clone();
        assert_eq!(clone.resolve_read(ReadOptions::session()).min_index, 40);
        let floor = ReadOptions {
            min_index: 90,
            ..ReadOptions::session()
        };
        assert_eq!(client.resolve_read(floor).min_index, 90);
        // The default read is the configured default: linearizable here...
        assert_eq!(
            client.resolve_read(ReadOptions::default()).consistency,
            Consistency::Linearizable
        );
        // ...or session when configured.
        let config = ClientConfig {
            read_consistency_default: Consistency::Session,
            ..ClientConfig::new(["127.0.0.1:1"])
        };
        let session_client = Client::new(config).map_err(|e| e.to_string());
        let Ok(session_client) = session_client else {
            panic!("{session_client:?}")
        };
        session_client.advance_session(5);
        let resolved = session_client.resolve_read(ReadOptions::default());
        assert_eq!(
            (resolved.consistency, resolved.min_index),
            (Consistency::Session, 5)
        );
        // Explicit levels are left alone.
        assert_eq!(
            client.resolve_read(ReadOptions::bounded(3, 0)),
            ReadOptions::bounded(3, 0)
        );
    }

    #[test]
    fn new_needs_no_runtime_and_validates() {
        assert!(Client::new(ClientConfig::new(["127.0.0.1:1"])).is_ok());
        assert!(matches!(
            Client::new(ClientConfig::default()),
            Err(ClientError::Config(_))
        ));
        assert!(Client::new(ClientConfig::new(["nope"])).is_err());
    }

    /// A port with nothing listening: bind, note the port, drop the listener.
    fn dead_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0");
        let port = listener
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        format!("127.0.0.1:{port}")
    }

    fn dead_client(timeout_ms: u64) -> Client {
        let config = ClientConfig {
            timeout_ms,
            ..ClientConfig::new([dead_endpoint(), dead_endpoint()])
        };
        match Client::new(config) {
            Ok(client) => client,
            Err(e) => panic!("config: {e}"),
        }
    }

    #[tokio::test]
    async fn write_to_dead_cluster_ends_within_timeout_and_is_not_applied() {
        let client = dead_client(300);
        let started = Instant::now();
        let result = client.submit(commands::deposit(7, "BTC", "1")).await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(1_500), "took {elapsed:?}");
        assert!(
            elapsed >= Duration::from_millis(250),
            "gave up early: {elapsed:?}"
        );
        // Connection refused everywhere: the command was never sent.
        match &result {
            WriteResult::Rejected {
                reason, message, ..
            } => {
                assert_eq!(reason, reasons::NOT_SENT);
                assert!(message.contains("127.0.0.1"), "{message}");
            }
            other => panic!("expected NOT_SENT, got {other:?}"),
        }
        assert!(!result.is_applied());
        assert_eq!(client.leader(), None);
    }

    #[tokio::test]
    async fn batch_to_dead_cluster_is_not_sent() {
        let client = dead_client(200);
        let batch = vec![commands::create_account(1), commands::create_account(2)];
        let ids: Vec<String> = batch.iter().map(|c| c.id().to_string()).collect();
        let results = client.submit_batch(batch).await.unwrap_or_default();
        let got: Vec<&str> = results.iter().map(WriteResult::command_id).collect();
        assert_eq!(got, ids);
        assert!(results.iter().all(WriteResult::is_rejected));
    }

    #[tokio::test]
    async fn read_from_dead_cluster_is_unavailable_within_timeout() {
        let client = dead_client(300);
        let started = Instant::now();
        let result = client.balance(7, "BTC", ReadOptions::default()).await;
        assert!(started.elapsed() < Duration::from_millis(1_500));
        assert!(
            matches!(result, Err(ClientError::Unavailable { .. })),
            "{result:?}"
        );
        let result = client
            .state_hash_at(&dead_endpoint(), ReadOptions::at_least_index(1))
            .await;
        assert!(matches!(result, Err(ClientError::Unavailable { .. })));
    }

    /// A listener that accepts connections, optionally opens each with an
    /// HTTP/2 SETTINGS frame, then stays silent; it counts the bytes it
    /// receives.
    async fn silent_listener(
        settings_first: bool,
    ) -> Option<(String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
        let addr = listener.local_addr().ok()?.to_string();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    if settings_first {
                        let _ = conn.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
                    }
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        counter.fetch_add(n, Ordering::Relaxed);
                    }
                });
            }
        });
        Some((addr, received, task))
    }

    #[tokio::test]
    async fn silent_http2_node_gives_unknown_not_failed() {
        // Opens with HTTP/2 SETTINGS, then never answers: the request was
        // delivered and may be acted on, so the outcome must be Unknown.
        let Some((addr, received, task)) = silent_listener(true).await else {
            return;
        };
        let config = ClientConfig {
            timeout_ms: 400,
            attempt_timeout_ms: 150,
            ..ClientConfig::new([addr])
        };
        let client = Client::new(config).map_err(|e| e.to_string());
        let Ok(client) = client else {
            panic!("{client:?}")
        };
        let started = Instant::now();
        let cmd = commands::release(5).with_id("retry-me");
        let result = client.submit(cmd).await;
        assert!(started.elapsed() < Duration::from_millis(1_500));
        match result {
            WriteResult::Unknown { command_id, .. } => assert_eq!(command_id, "retry-me"),
            other => panic!("expected Unknown, got {other:?}"),
        }
        assert!(
            received.load(Ordering::Relaxed) > 0,
            "the request was written"
        );
        let read = client.hold(5, ReadOptions::default()).await;
        assert!(matches!(read, Err(ClientError::Timeout { .. })), "{read:?}");
        task.abort();
    }

    #[tokio::test]
    async fn listener_that_never_speaks_http2_is_sent_nothing_so_not_sent() {
        // Accepts TCP connections but never sends the HTTP/2 SETTINGS frame
        // every gRPC server opens with: the client writes nothing to it, so
        // the command was definitely not sent (a stalled process that might
        // read the socket later finds nothing there).
        let Some((addr, received, task)) = silent_listener(false).await else {
            return;
        };
        let config = ClientConfig {
            timeout_ms: 600,
            connect_timeout_ms: 100,
            attempt_timeout_ms: 150,
            ..ClientConfig::new([addr])
        };
        let client = Client::new(config).map_err(|e| e.to_string());
        let Ok(client) = client else {
            panic!("{client:?}")
        };
        let result = client
            .submit(commands::release(5).with_id("never-sent"))
            .await;
        match &result {
            WriteResult::Rejected {
                reason, message, ..
            } => {
                assert_eq!(reason, reasons::NOT_SENT, "{message}");
                assert!(message.contains("no HTTP/2 SETTINGS"), "{message}");
            }
            other => panic!("expected NOT_SENT, got {other:?}"),
        }
        assert_eq!(received.load(Ordering::Relaxed), 0, "nothing was written");
        let read = client.hold(5, ReadOptions::default()).await;
        assert!(
            matches!(read, Err(ClientError::Unavailable { .. })),
            "{read:?}"
        );
        task.abort();
    }

    #[tokio::test]
    async fn local_validation() {
        let client = dead_client(100);
        let no_body = Command {
            command_id: "x".into(),
            body: None,
        };
        let result = client.submit(no_body).await;
        assert!(
            matches!(&result, WriteResult::Rejected { reason, .. } if reason == "MISSING_FIELD")
        );
        let bad_id = commands::release(1).with_id("");
        let result = client.submit(bad_id).await;
        assert!(
            matches!(&result, WriteResult::Rejected { reason, .. } if reason == "INVALID_COMMAND_ID")
        );
        let too_many: Vec<Command> = (0..=MAX_BATCH_COMMANDS as u64)
            .map(commands::release)
            .collect();
        assert!(matches!(
            client.submit_batch(too_many).await,
            Err(ClientError::InvalidArgument { .. })
        ));
        assert_eq!(client.submit_batch(Vec::new()).await, Ok(Vec::new()));
    }
}
