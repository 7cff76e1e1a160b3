//! The public `tally.v1.Accounts` service: account-model reads (an
//! account's wallets and settings, the transferable amount, listings of
//! assets, pairs, markets, accounts and holds, the conservation report),
//! served by the ledger service's read path at the consistency the request
//! asks for. Every reply is one state at one applied index. Pages hold at
//! most `MAX_PAGE_ITEMS` (limit 0: `DEFAULT_PAGE_ITEMS`).

use tally_ledger::{AccountFilter, MAX_PAGE_ITEMS};
use tally_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::grpc::convert::{self, ConvertError};
use crate::grpc::convert_accounts as conv;
use crate::grpc::ledger_service::{LedgerService, not_found};
use crate::grpc::status::invalid;

/// Items per page when the request asks for 0.
pub const DEFAULT_PAGE_ITEMS: usize = 100;

fn page_limit(limit: u32) -> usize {
    match limit as usize {
        0 => DEFAULT_PAGE_ITEMS,
        n => n.min(MAX_PAGE_ITEMS),
    }
}

fn bad(e: ConvertError) -> Status {
    invalid(e.reason(), e.to_string())
}

#[tonic::async_trait]
impl pb::accounts_server::Accounts for LedgerService {
    async fn get_account_model(
        &self,
        req: Request<pb::GetAccountModelRequest>,
    ) -> Result<Response<pb::GetAccountModelResponse>, Status> {
        let req = req.into_inner();
        let account = req.account;
        let (view, index) = self
            .read(req.read, |st| {
                st.ledger
                    .account_model(account)
                    .ok_or_else(|| not_found(format!("unknown account {account}")))
            })
            .await?;
        Ok(Response::new(pb::GetAccountModelResponse {
            account: Some(conv::account_model_to_pb(&view)),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn get_transferable(
        &self,
        req: Request<pb::GetTransferableRequest>,
    ) -> Result<Response<pb::GetTransferableResponse>, Status> {
        let req = req.into_inner();
        let (account, asset) = (req.account, req.asset.clone());
        let wallet = conv::wallet_from_pb("wallet", req.wallet).map_err(bad)?;
        let ((transferable, available), index) = self
            .read(req.read, |st| {
                if st.ledger.asset(&asset).is_none() {
                    let shown: String = asset.chars().take(40).collect();
                    return Err(not_found(format!("unknown asset '{shown}'")));
                }
                let owner = tally_ledger::Owner::wallet(account, wallet);
                match (
                    st.ledger.transferable(account, wallet, &asset),
                    st.ledger.balance(owner, &asset),
                ) {
                    (Some(t), Some(b)) => Ok((t, b.available)),
                    _ => Err(not_found(format!("unknown account {account}"))),
                }
            })
            .await?;
        Ok(Response::new(pb::GetTransferableResponse {
            transferable: transferable.to_string(),
            available: available.to_string(),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn list_assets(
        &self,
        req: Request<pb::ListAssetsRequest>,
    ) -> Result<Response<pb::ListAssetsResponse>, Status> {
        let (assets, index) = self
            .read(req.into_inner().read, |st| Ok(st.ledger.assets()))
            .await?;
        Ok(Response::new(pb::ListAssetsResponse {
            assets: assets
                .into_iter()
                .map(|a| pb::AssetInfo {
                    symbol: a.symbol,
                    scale: a.scale,
                })
                .collect(),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn list_pairs(
        &self,
        req: Request<pb::ListPairsRequest>,
    ) -> Result<Response<pb::ListPairsResponse>, Status> {
        let (pairs, index) = self
            .read(req.into_inner().read, |st| Ok(st.ledger.pairs()))
            .await?;
        Ok(Response::new(pb::ListPairsResponse {
            pairs: pairs.iter().map(conv::pair_to_pb).collect(),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn list_markets(
        &self,
        req: Request<pb::ListMarketsRequest>,
    ) -> Result<Response<pb::ListMarketsResponse>, Status> {
        let (markets, index) = self
            .read(req.into_inner().read, |st| Ok(st.ledger.markets()))
            .await?;
        Ok(Response::new(pb::ListMarketsResponse {
            markets: markets.iter().map(convert::market_to_pb).collect(),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn list_accounts(
        &self,
        req: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let req = req.into_inner();
        let filter = AccountFilter {
            parent: (req.parent != 0).then_some(req.parent),
            non_zero: req.non_zero,
            has_positions: req.has_positions,
        };
        let limit = page_limit(req.limit);
        let (accounts, index) = self
            .read(req.read, |st| {
                Ok(st.ledger.list_accounts(filter, req.after, limit))
            })
            .await?;
        let next_after = match accounts.last() {
            Some(last) if accounts.len() == limit => last.account,
            _ => 0,
        };
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: accounts.iter().map(conv::account_model_to_pb).collect(),
            next_after,
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn list_holds(
        &self,
        req: Request<pb::ListHoldsRequest>,
    ) -> Result<Response<pb::ListHoldsResponse>, Status> {
        let req = req.into_inner();
        let (account, limit) = (req.account, page_limit(req.limit));
        let (holds, index) = self
            .read(req.read, |st| {
                if st.ledger.account(account).is_none() {
                    return Err(not_found(format!("unknown account {account}")));
                }
                Ok(st.ledger.list_holds(account, req.after, limit))
            })
            .await?;
        let next_after = match holds.last() {
            Some(last) if holds.len() == limit => last.hold,
            _ => 0,
        };
        Ok(Response::new(pb::ListHoldsResponse {
            holds: holds
                .into_iter()
                .map(|h| pb::HoldInfo {
                    hold: h.hold,
                    account: h.account,
                    asset: h.asset,
                    amount: h.amount.to_string(),
                    remaining: h.remaining.to_string(),
                })
                .collect(),
            next_after,
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn get_history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let req = req.into_inner();
        let (account, limit) = (req.account, page_limit(req.limit));
        let (entries, index) = self
            .read(req.read, |st| {
                st.ledger
                    .history(account, req.from_seq, req.from_index, limit)
                    .ok_or_else(|| not_found(format!("unknown account {account}")))
            })
            .await?;
        let next_seq = match entries.last() {
            Some(last) if entries.len() == limit => last.seq + 1,
            _ => 0,
        };
        Ok(Response::new(pb::GetHistoryResponse {
            entries: entries.iter().map(conv::history_to_pb).collect(),
            next_seq,
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }

    async fn get_conservation(
        &self,
        req: Request<pb::GetConservationRequest>,
    ) -> Result<Response<pb::GetConservationResponse>, Status> {
        let (sums, index) = self
            .read(req.into_inner().read, |st| Ok(st.ledger.conservation()))
            .await?;
        Ok(Response::new(pb::GetConservationResponse {
            assets: sums.iter().map(conv::sums_to_pb).collect(),
            applied_index: index,
            served_by: self.ctx.config.node_id,
        }))
    }
}
