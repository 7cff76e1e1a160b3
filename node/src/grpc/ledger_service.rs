//! The public `tally.v1.Ledger` service: writes go through group commit on
//! the leader (a follower forwards them there once); reads are served at the
//! consistency level the request asks for.

use std::sync::Arc;
use std::time::Duration;

use tally_proto::MAX_BATCH_COMMANDS;
use tally_proto::v1::ledger_client::LedgerClient;
use tally_proto::v1::ledger_server::Ledger as LedgerRpc;
use tally_proto::v1::{
    Balance, GetAccountRequest, GetAccountResponse, GetBalanceRequest, GetBalanceResponse,
    GetHoldRequest, GetHoldResponse, GetSettingsRequest, GetSettingsResponse, GetStateHashRequest,
    GetStateHashResponse, ReadOptions, ReplyDetail, SubmitBatchRequest, SubmitBatchResponse,
    SubmitRequest, SubmitResponse,
};
use tonic::{Code, Request, Response, Status};

use crate::auth::{Caller, command_right};
use crate::ctx::NodeCtx;
use crate::grpc::auth_layer::PERMISSION_DENIED_REASON;
use crate::grpc::convert;
use crate::grpc::status::{invalid, node_removed, not_leader, read_error, status};
use crate::raft::state_machine::SmState;
use crate::raft::types::EncodedCommands;
use crate::reads::ReadLevel;
use crate::writer::WriteError;

/// Metadata marking a write that must not be forwarded (a client asking for a leader hint, or a write already forwarded once).
pub use tally_proto::NO_FORWARD_METADATA_KEY as FORWARDED_METADATA_KEY;

/// Longest a forwarded write may take at the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

pub struct LedgerService {
    pub ctx: Arc<NodeCtx>,
}

impl LedgerService {
    /// Proposes a batch; on a follower, forwards it to the leader once.
    async fn write(&self, req: Request<SubmitBatchRequest>) -> Result<SubmitBatchResponse, Status> {
        if self.ctx.removed() {
            return Err(node_removed(self.ctx.config.node_id));
        }
        let forwarded = req.metadata().get(FORWARDED_METADATA_KEY).is_some();
        let caller = req.extensions().get::<Caller>().cloned();
        let batch = req.into_inner();
        if batch.commands.is_empty() {
            return Err(invalid("EMPTY_BATCH", "a batch needs at least one command"));
        }
        if batch.commands.len() > MAX_BATCH_COMMANDS {
            return Err(invalid(
                "BATCH_TOO_LARGE",
                format!(
                    "{} commands; at most {MAX_BATCH_COMMANDS} per request",
                    batch.commands.len()
                ),
            ));
        }
        let Ok(reply_detail) = ReplyDetail::try_from(batch.reply_detail) else {
            return Err(invalid(
                "UNKNOWN_REPLY_DETAIL",
                format!(
                    "reply_detail {} is not a known ReplyDetail (0 events, 1 verdict)",
                    batch.reply_detail
                ),
            ));
        };
        // Encoded here, once: the entry carries these bytes to every node.
        // A command of a feature the cluster has not switched on is refused
        // here, before it is proposed (nothing of the request is), so no
        // replica still on an older binary ever has to decode it.
        let cluster_version = self.ctx.cluster_version();
        let mut encoded = EncodedCommands::default();
        for (i, cmd) in batch.commands.iter().enumerate() {
            let env = convert::envelope(cmd)
                .map_err(|e| invalid(e.reason(), format!("command {i}: {e}")))?;
            // Every command of the batch is checked before any is proposed:
            // a batch with one command its caller may not send changes nothing.
            let right = command_right(&env.command);
            caller
                .as_ref()
                .ok_or_else(|| "no caller identity".to_string())
                .and_then(|c| c.check(right))
                .map_err(|message| {
                    crate::metrics::METRICS
                        .auth_denied
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    status(
                        Code::PermissionDenied,
                        PERMISSION_DENIED_REASON,
                        format!("command {i} ({}): {message}", env.command.kind()),
                    )
                })?;
            let needed = env.command.required_cluster_version();
            if needed > cluster_version {
                return Err(status(
                    Code::FailedPrecondition,
                    "FEATURE_NOT_ACTIVE",
                    format!(
                        "command {i}: {} needs cluster version {needed}; the cluster runs at \
                         version {cluster_version} (finish the upgrade with `tallyctl cluster \
                         finalize` first); nothing in this request was applied",
                        env.command.kind()
                    ),
                ));
            }
            encoded.push(&env);
        }
        let verdict_only = reply_detail == ReplyDetail::Verdict;
        // A leader cut off from its majority cannot commit; answering at
        // once (nothing proposed: certainly not applied) sends the client to
        // the other nodes instead of letting it wait out its attempt timeout.
        if let Some(age) = self.ctx.leader_out_of_contact() {
            return Err(status(
                Code::Unavailable,
                "NO_LEADER",
                format!(
                    "this node leads but no majority has acknowledged it for {} ms \
                     (cut off?); nothing in this request was applied; retry",
                    age.as_millis()
                ),
            ));
        }
        // Likewise for a write already proposed when contact is lost: its
        // outcome is unknown (the entry may still commit, e.g. if this node is
        // re-elected), and the client's retry with the same command ids at the
        // new leader finds out.
        let submitted = tokio::select! {
            r = self.ctx.writer.submit(encoded, !verdict_only) => r,
            age = self.ctx.lost_quorum_contact() => {
                return Err(status(
                    Code::Unavailable,
                    "OUTCOME_UNKNOWN",
                    format!(
                        "this node lost its majority (no acknowledgement for {} ms) while the \
                         write was pending; it may or may not be applied: retry with the same \
                         command ids",
                        age.as_millis()
                    ),
                ));
            }
        };
        match submitted {
            Ok((results, index)) => Ok(SubmitBatchResponse {
                results: batch
                    .commands
                    .iter()
                    .zip(results.iter())
                    .map(|(cmd, r)| {
                        if verdict_only {
                            convert::verdict_to_pb(r)
                        } else {
                            convert::result_to_pb(&cmd.command_id, r)
                        }
                    })
                    .collect(),
                applied_index: index,
            }),
            Err(WriteError::NotLeader { leader_addr, .. }) => match leader_addr {
                Some(addr) if !forwarded && addr != self.ctx.config.advertise_addr => {
                    self.forward(&addr, batch).await
                }
                other => Err(not_leader(other.as_deref())),
            },
            Err(WriteError::Overloaded) => Err(status(
                Code::ResourceExhausted,
                "OVERLOADED",
                WriteError::Overloaded.to_string(),
            )),
            Err(e @ WriteError::OutboxFull { .. }) => Err(status(
                Code::ResourceExhausted,
                "EVENTS_OUTBOX_FULL",
                e.to_string(),
            )),
            Err(e @ WriteError::Unknown(_)) => {
                Err(status(Code::Unavailable, "OUTCOME_UNKNOWN", e.to_string()))
            }
        }
    }

    /// A write response, with `tally-leader` metadata when this node is not the leader (it forwarded).
    fn with_leader_hint<T>(&self, body: T) -> Response<T> {
        let mut resp = Response::new(body);
        if !self.ctx.raft.is_leader()
            && let Some(v) = self.ctx.leader_addr().and_then(|a| a.parse().ok())
        {
            resp.metadata_mut()
                .insert(tally_proto::LEADER_METADATA_KEY, v);
        }
        resp
    }

    async fn forward(
        &self,
        leader: &str,
        batch: SubmitBatchRequest,
    ) -> Result<SubmitBatchResponse, Status> {
        let channel = self
            .ctx
            .peer_channel(leader)
            .map_err(|e| status(Code::Unavailable, "NOT_LEADER", e))?;
        let mut client = LedgerClient::new(channel);
        let mut req = Request::new(batch);
        req.set_timeout(FORWARD_TIMEOUT);
        req.metadata_mut().insert(
            FORWARDED_METADATA_KEY,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        match client.submit_batch(req).await {
            Ok(resp) => Ok(resp.into_inner()),
            // The leader this node knows could not be reached (it is down, or
            // cut off): say so with the reason a read gets in that case, so
            // the client treats it as an election in progress. The leader may
            // have applied it (a connection broken mid-call): the caller treats
            // any answer as a possible apply and retries with the same ids.
            Err(s)
                if s.code() == Code::Unavailable
                    && s.metadata().get(tally_proto::REASON_METADATA_KEY).is_none() =>
            {
                Err(status(
                    Code::Unavailable,
                    "NO_LEADER",
                    format!(
                        "forwarding to the leader at {leader} failed: {}; the write may or may \
                         not be applied: retry with the same command ids",
                        s.message()
                    ),
                ))
            }
            // The leader's own answer, or an unknown outcome: passed on as is.
            Err(s) => Err(s),
        }
    }

    /// Waits until this node may serve a read at `opts`, then runs `read` on the state.
    pub(crate) async fn read<T>(
        &self,
        opts: Option<ReadOptions>,
        read: impl FnOnce(&SmState) -> Result<T, Status>,
    ) -> Result<(T, u64), Status> {
        let level = ReadLevel::from(&opts.unwrap_or_default());
        self.ctx.read_barrier(level).await.map_err(read_error)?;
        let st = self
            .ctx
            .state
            .read()
            .map_err(|_| Status::internal("state lock poisoned"))?;
        let value = read(&st)?;
        Ok((value, st.applied_index()))
    }
}

pub(crate) fn not_found(what: String) -> Status {
    status(Code::NotFound, "NOT_FOUND", what)
}

#[tonic::async_trait]
impl LedgerRpc for LedgerService {
    async fn submit(
        &self,
        req: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let (meta, ext, body) = req.into_parts();
        let command = body
            .command
            .ok_or_else(|| invalid("MISSING_FIELD", "command: missing"))?;
        let batch_req = Request::from_parts(
            meta,
            ext,
            SubmitBatchRequest {
                commands: vec![command],
                reply_detail: body.reply_detail,
            },
        );
        let resp = self.write(batch_req).await?;
        let result = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("no result"))?;
        Ok(self.with_leader_hint(SubmitResponse {
            result: Some(result),
            applied_index: resp.applied_index,
        }))
    }

    async fn submit_batch(
        &self,
        req: Request<SubmitBatchRequest>,
    ) -> Result<Response<SubmitBatchResponse>, Status> {
        let resp = self.write(req).await?;
        Ok(self.with_leader_hint(resp))
    }

    async fn get_balance(
        &self,
        req: Request<GetBalanceRequest>,
    ) -> Result<Response<GetBalanceResponse>, Status> {
        let req = req.into_inner();
        let owner = convert::owner_from_pb(req.owner.as_ref())
            .map_err(|e| invalid(e.reason(), e.to_string()))?;
        let asset = req.asset.clone();
        let (balance, index) = self
            .read(req.read, |st| {
                if st.ledger.asset(&asset).is_none() {
                    return Err(not_found(format!("unknown asset '{asset}'")));
                }
                let b = st
                    .ledger
                    .balance(owner, &asset)
                    .ok_or_else(|| match owner.client() {
                        Some((a, _)) => not_found(format!("unknown account {a}")),
                        None => not_found(format!("unknown asset '{asset}'")),
                    })?;
                Ok(Balance {
                    asset: asset.clone(),
                    available: b.available.to_string(),
                    locked: b.locked.to_string(),
                })
            })
            .await?;
        Ok(Response::new(GetBalanceResponse {
            balance: Some(balance),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn get_account(
        &self,
        req: Request<GetAccountRequest>,
    ) -> Result<Response<GetAccountResponse>, Status> {
        let req = req.into_inner();
        let account = req.account;
        let (balances, index) = self
            .read(req.read, |st| {
                let view = st
                    .ledger
                    .account(account)
                    .ok_or_else(|| not_found(format!("unknown account {account}")))?;
                Ok(view
                    .balances
                    .into_iter()
                    .map(|(asset, b)| Balance {
                        asset,
                        available: b.available.to_string(),
                        locked: b.locked.to_string(),
                    })
                    .collect())
            })
            .await?;
        Ok(Response::new(GetAccountResponse {
            account,
            balances,
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn get_hold(
        &self,
        req: Request<GetHoldRequest>,
    ) -> Result<Response<GetHoldResponse>, Status> {
        let req = req.into_inner();
        let hold = req.hold;
        let (view, index) = self
            .read(req.read, |st| {
                st.ledger.hold(hold).ok_or_else(|| {
                    not_found(format!(
                        "unknown hold {hold} (never locked, released, or fully filled)"
                    ))
                })
            })
            .await?;
        Ok(Response::new(GetHoldResponse {
            hold,
            account: view.account,
            asset: view.asset,
            amount: view.amount.to_string(),
            remaining: view.remaining.to_string(),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn get_state_hash(
        &self,
        req: Request<GetStateHashRequest>,
    ) -> Result<Response<GetStateHashResponse>, Status> {
        let req = req.into_inner();
        let ((hash, accounts, holds), index) = self
            .read(req.read, |st| {
                Ok((
                    hex::encode(st.ledger.state_hash()),
                    st.ledger.account_count() as u64,
                    st.ledger.open_hold_count() as u64,
                ))
            })
            .await?;
        Ok(Response::new(GetStateHashResponse {
            state_hash: hash,
            applied_index: index,
            served_by: self.ctx.config.node_id,
            accounts,
            open_holds: holds,
        }))
    }

    async fn get_settings(
        &self,
        req: Request<GetSettingsRequest>,
    ) -> Result<Response<GetSettingsResponse>, Status> {
        let req = req.into_inner();
        let (settings, index) = self
            .read(req.read, |st| {
                Ok(GetSettingsResponse {
                    dedup_window_ms: st.ledger.dedup_window_ms(),
                    min_dedup_window_ms: tally_ledger::MIN_DEDUP_WINDOW_MS,
                    max_dedup_window_ms: tally_ledger::MAX_DEDUP_WINDOW_MS,
                    dedup_entries: st.ledger.dedup_entries() as u64,
                    dedup_max_entries: st.ledger.dedup_max_entries() as u64,
                    ..Default::default()
                })
            })
            .await?;
        Ok(Response::new(GetSettingsResponse {
            applied_index: index,
            served_by: self.ctx.config.node_id,
            ..settings
        }))
    }
}

// ---- perpetual futures queries (the `tally.v1.Perps` service) ----

use tally_proto::v1 as perps_pb;

/// Rows `ListAtRisk` returns when the request asks for 0.
const DEFAULT_AT_RISK: usize = 10;
/// Most rows `ListAtRisk` returns.
const MAX_AT_RISK: usize = 1000;

fn unknown_market(market: &str) -> Status {
    let shown: String = market.chars().take(40).collect();
    not_found(format!("unknown market '{shown}'"))
}

#[tonic::async_trait]
impl perps_pb::perps_server::Perps for LedgerService {
    async fn get_market(
        &self,
        req: Request<perps_pb::GetMarketRequest>,
    ) -> Result<Response<perps_pb::GetMarketResponse>, Status> {
        let req = req.into_inner();
        let market = req.market;
        let (view, index) = self
            .read(req.read, |st| {
                st.ledger
                    .market(&market)
                    .ok_or_else(|| unknown_market(&market))
            })
            .await?;
        Ok(Response::new(perps_pb::GetMarketResponse {
            market: Some(convert::market_to_pb(&view)),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn get_position(
        &self,
        req: Request<perps_pb::GetPositionRequest>,
    ) -> Result<Response<perps_pb::GetPositionResponse>, Status> {
        let req = req.into_inner();
        let (market, account) = (req.market, req.account);
        let (view, index) = self
            .read(req.read, |st| {
                if st.ledger.market(&market).is_none() {
                    return Err(unknown_market(&market));
                }
                if st.ledger.account(account).is_none() {
                    return Err(not_found(format!("unknown account {account}")));
                }
                st.ledger.position(&market, account).ok_or_else(|| {
                    not_found(format!("account {account} has no position in {market}"))
                })
            })
            .await?;
        Ok(Response::new(perps_pb::GetPositionResponse {
            position: Some(convert::position_to_pb(&view)),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn get_margin(
        &self,
        req: Request<perps_pb::GetMarginRequest>,
    ) -> Result<Response<perps_pb::GetMarginResponse>, Status> {
        let req = req.into_inner();
        let account = req.account;
        let (margins, index) = self
            .read(req.read, |st| {
                st.ledger
                    .margin(account)
                    .ok_or_else(|| not_found(format!("unknown account {account}")))
            })
            .await?;
        Ok(Response::new(perps_pb::GetMarginResponse {
            account,
            margins: margins.iter().map(convert::margin_to_pb).collect(),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn get_delta_exposure(
        &self,
        req: Request<perps_pb::GetDeltaExposureRequest>,
    ) -> Result<Response<perps_pb::GetDeltaExposureResponse>, Status> {
        let req = req.into_inner();
        let account = req.account;
        let (exposures, index) = self
            .read(req.read, |st| {
                st.ledger
                    .delta_exposure(account)
                    .ok_or_else(|| not_found(format!("unknown account {account}")))
            })
            .await?;
        Ok(Response::new(perps_pb::GetDeltaExposureResponse {
            account,
            exposures: exposures
                .iter()
                .map(crate::grpc::convert_derivatives::delta_to_pb)
                .collect(),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn get_exposure(
        &self,
        req: Request<perps_pb::GetExposureRequest>,
    ) -> Result<Response<perps_pb::GetExposureResponse>, Status> {
        let req = req.into_inner();
        let market = req.market;
        let (e, index) = self
            .read(req.read, |st| {
                st.ledger
                    .market_exposure(&market)
                    .ok_or_else(|| unknown_market(&market))
            })
            .await?;
        Ok(Response::new(perps_pb::GetExposureResponse {
            market: Some(convert::market_to_pb(&e.market)),
            open_interest: e.open_interest.to_string(),
            long_size: e.long_size.to_string(),
            short_size: e.short_size.to_string(),
            long_accounts: e.long_accounts,
            short_accounts: e.short_accounts,
            open_interest_notional: e.open_interest_notional.to_string(),
            insurance_balance: e.insurance_balance.to_string(),
            insurance_position: e.insurance_position.to_string(),
            pnl_pool: e.pnl_pool.to_string(),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn list_at_risk(
        &self,
        req: Request<perps_pb::ListAtRiskRequest>,
    ) -> Result<Response<perps_pb::ListAtRiskResponse>, Status> {
        let req = req.into_inner();
        let limit = match req.limit as usize {
            0 => DEFAULT_AT_RISK,
            n => n.min(MAX_AT_RISK),
        };
        let asset = req.settle_asset;
        let (margins, index) = self
            .read(req.read, |st| {
                if !asset.is_empty() && st.ledger.asset(&asset).is_none() {
                    return Err(not_found(format!("unknown asset '{asset}'")));
                }
                let filter = (!asset.is_empty()).then_some(asset.as_str());
                Ok(st.ledger.closest_to_liquidation(limit, filter))
            })
            .await?;
        Ok(Response::new(perps_pb::ListAtRiskResponse {
            margins: margins.iter().map(convert::margin_to_pb).collect(),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }
}
