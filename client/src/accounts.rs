//! The account model from the client: wallets ([`Wallet`]), the command
//! builders of sub-accounts, grants, wallet transfers, deposits and
//! withdrawals, insurance payouts, fee sweeps, spot pairs, pair fills and
//! partial releases, and the `tally.v1.Accounts` reads (an account's
//! wallets and settings, the transferable amount, paginated listings,
//! account history and the conservation report).
//!
//! ```
//! use tally_client::{Wallet, accounts};
//! // Master 1 moves 250 USDT from its margin wallet to sub-account 11's.
//! let cmd = accounts::wallet_transfer((1, Wallet::Margin), (11, Wallet::Margin), "USDT", "250");
//! assert!(cmd.body.is_some());
//! ```

use std::fmt;
use std::str::FromStr;

use tally_proto::v1 as pb;
use tally_proto::v1::command::Body;
use tonic::transport::Channel;

use crate::client::{Client, MAX_MESSAGE_BYTES, Served};
use crate::commands::{IntoAmount, command};
use crate::error::ClientError;
use crate::read::ReadOptions;

/// A client account's wallet: `spot` (where legacy commands and holds act),
/// `funding`, or `margin` (perps collateral of accounts opened with it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Wallet {
    /// Available + locked; holds live here.
    #[default]
    Spot,
    /// Deposits and withdrawals, if the exchange routes them here.
    Funding,
    /// The cross collateral of perpetual positions.
    Margin,
}

impl Wallet {
    /// The protocol value.
    pub fn to_proto(self) -> pb::Wallet {
        match self {
            Wallet::Spot => pb::Wallet::Spot,
            Wallet::Funding => pb::Wallet::Funding,
            Wallet::Margin => pb::Wallet::Margin,
        }
    }

    /// From the protocol value; `None` for one this build does not know.
    pub fn from_proto(value: i32) -> Option<Wallet> {
        match pb::Wallet::try_from(value).ok()? {
            pb::Wallet::Spot => Some(Wallet::Spot),
            pb::Wallet::Funding => Some(Wallet::Funding),
            pb::Wallet::Margin => Some(Wallet::Margin),
        }
    }

    /// `spot`, `funding` or `margin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Wallet::Spot => "spot",
            Wallet::Funding => "funding",
            Wallet::Margin => "margin",
        }
    }
}

impl fmt::Display for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `spot`, `funding` or `margin` (case-insensitive).
impl FromStr for Wallet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "spot" => Ok(Wallet::Spot),
            "funding" => Ok(Wallet::Funding),
            "margin" => Ok(Wallet::Margin),
            _ => Err(format!(
                "UNKNOWN_WALLET: {s:?} is not a wallet (spot, funding, margin)"
            )),
        }
    }
}

// ---- commands ----

/// Opens `account` with a master (`parent`, 0 for a top-level account),
/// the wallet its perps are margined over (spot or margin), whether it may
/// withdraw and whether its balance changes are kept ([`Client::history`]).
pub fn open_account(
    account: u64,
    parent: u64,
    collateral: Wallet,
    can_withdraw: bool,
    history: bool,
) -> pb::Command {
    command(Body::OpenAccount(pb::OpenAccount {
        account,
        parent,
        collateral: collateral.to_proto() as i32,
        can_withdraw,
        history,
    }))
}

/// Allows or forbids withdrawals from `account`.
pub fn set_withdraw_allowed(account: u64, allowed: bool) -> pb::Command {
    command(Body::SetWithdrawAllowed(pb::SetWithdrawAllowed {
        account,
        allowed,
    }))
}

/// The master allows (or revokes) transfers from sub-account `from` to
/// sub-account `to`.
pub fn set_transfer_grant(master: u64, from: u64, to: u64, allowed: bool) -> pb::Command {
    command(Body::SetTransferGrant(pb::SetTransferGrant {
        master,
        from,
        to,
        allowed,
    }))
}

/// Moves `amount` of `asset` from one (account, wallet) to another.
pub fn wallet_transfer(
    from: (u64, Wallet),
    to: (u64, Wallet),
    asset: impl Into<String>,
    amount: impl IntoAmount,
) -> pb::Command {
    command(Body::WalletTransfer(pb::WalletTransfer {
        from: from.0,
        from_wallet: from.1.to_proto() as i32,
        to: to.0,
        to_wallet: to.1.to_proto() as i32,
        asset: asset.into(),
        amount: amount.into_amount(),
    }))
}

/// Credits `account`'s `wallet`; debits the asset's external account.
pub fn wallet_deposit(
    account: u64,
    wallet: Wallet,
    asset: impl Into<String>,
    amount: impl IntoAmount,
) -> pb::Command {
    command(Body::WalletDeposit(pb::WalletDeposit {
        account,
        wallet: wallet.to_proto() as i32,
        asset: asset.into(),
        amount: amount.into_amount(),
    }))
}

/// Debits `account`'s `wallet` (at most its transferable amount).
pub fn wallet_withdraw(
    account: u64,
    wallet: Wallet,
    asset: impl Into<String>,
    amount: impl IntoAmount,
) -> pb::Command {
    command(Body::WalletWithdraw(pb::WalletWithdraw {
        account,
        wallet: wallet.to_proto() as i32,
        asset: asset.into(),
        amount: amount.into_amount(),
    }))
}

/// Pays `amount` out of the insurance fund of `asset` to a wallet.
pub fn withdraw_insurance(
    asset: impl Into<String>,
    account: u64,
    wallet: Wallet,
    amount: impl IntoAmount,
) -> pb::Command {
    command(Body::WithdrawInsurance(pb::WithdrawInsurance {
        asset: asset.into(),
        account,
        wallet: wallet.to_proto() as i32,
        amount: amount.into_amount(),
    }))
}

/// Sweeps `amount` of `asset` from the fee account to a wallet.
pub fn sweep_fees(
    asset: impl Into<String>,
    account: u64,
    wallet: Wallet,
    amount: impl IntoAmount,
) -> pb::Command {
    command(Body::SweepFees(pb::SweepFees {
        asset: asset.into(),
        account,
        wallet: wallet.to_proto() as i32,
        amount: amount.into_amount(),
    }))
}

/// Registers a spot pair (`CreatePair` in `ledger.proto` documents the
/// fields).
pub fn create_pair(spec: pb::CreatePair) -> pb::Command {
    command(Body::CreatePair(spec))
}

/// A fee of `amount` in `asset` (empty: the asset the side receives).
pub fn fee(asset: impl Into<String>, amount: impl IntoAmount) -> pb::FeeSpec {
    pb::FeeSpec {
        asset: asset.into(),
        amount: amount.into_amount(),
    }
}

/// Settles a trade of a pair (`PairFill` in `ledger.proto` documents the
/// fields; fees via [`fee`]).
pub fn pair_fill(spec: pb::PairFill) -> pb::Command {
    command(Body::PairFill(spec))
}

/// Returns `amount` of hold `hold`'s remainder to available.
pub fn release_part(hold: u64, amount: impl IntoAmount) -> pb::Command {
    command(Body::ReleasePart(pb::ReleasePart {
        hold,
        amount: amount.into_amount(),
    }))
}

/// Makes `account`'s position in `market` isolated (or cross again) while flat.
pub fn set_isolated(account: u64, market: impl Into<String>, isolated: bool) -> pb::Command {
    command(Body::SetIsolated(pb::SetIsolated {
        account,
        market: market.into(),
        isolated,
    }))
}

/// Moves isolated margin in (`delta` > 0) or out (`delta` < 0, e.g. "-50").
pub fn adjust_isolated_margin(
    account: u64,
    market: impl Into<String>,
    delta: impl IntoAmount,
) -> pb::Command {
    command(Body::AdjustIsolatedMargin(pb::AdjustIsolatedMargin {
        account,
        market: market.into(),
        delta: delta.into_amount(),
    }))
}

// ---- reads ----

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
    pb::GetAccountModelResponse,
    pb::GetTransferableResponse,
    pb::ListAssetsResponse,
    pb::ListPairsResponse,
    pb::ListMarketsResponse,
    pb::ListAccountsResponse,
    pb::ListHoldsResponse,
    pb::GetConservationResponse,
    pb::GetHistoryResponse,
);

fn accounts_client(channel: Channel) -> pb::accounts_client::AccountsClient<Channel> {
    pb::accounts_client::AccountsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Which accounts [`Client::list_accounts`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// Only sub-accounts of this master (0: any).
    pub parent: u64,
    /// Only accounts with a non-zero balance.
    pub non_zero: bool,
    /// Only accounts holding a perpetual position.
    pub has_positions: bool,
}

impl Client {
    /// An account's settings (master, collateral, withdrawal right, grants,
    /// sub-accounts) and every wallet balance.
    pub async fn account_model(
        &self,
        account: u64,
        read: ReadOptions,
    ) -> Result<pb::GetAccountModelResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = pb::GetAccountModelRequest {
            account,
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, accounts_client, |mut c, r| async move {
            c.get_account_model(r).await
        })
        .await
    }

    /// What may move out of `account`'s `wallet` of `asset` now.
    pub async fn transferable(
        &self,
        account: u64,
        wallet: Wallet,
        asset: impl Into<String>,
        read: ReadOptions,
    ) -> Result<pb::GetTransferableResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = pb::GetTransferableRequest {
            account,
            wallet: wallet.to_proto() as i32,
            asset: asset.into(),
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, accounts_client, |mut c, r| async move {
            c.get_transferable(r).await
        })
        .await
    }

    /// Every asset, sorted by symbol.
    pub async fn list_assets(
        &self,
        read: ReadOptions,
    ) -> Result<pb::ListAssetsResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = pb::ListAssetsRequest {
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, accounts_client, |mut c, r| async move {
            c.list_assets(r).await
        })
        .await
    }

    /// Every spot pair, sorted by symbol.
    pub async fn list_pairs(
        &self,
        read: ReadOptions,
    ) -> Result<pb::ListPairsResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = pb::ListPairsRequest {
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, accounts_client, |mut c, r| async move {
            c.list_pairs(r).await
        })
        .await
    }

    /// Every perpetual market, sorted by symbol.
    pub async fn list_markets(
        &self,
        read: ReadOptions,
    ) -> Result<pb::ListMarketsResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = pb::ListMarketsRequest {
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, accounts_client, |mut c, r| async move {
            c.list_markets(r).await
        })
        .await
    }

    /// One page of accounts with ids above `after` (0 = 100 per page, at
    /// most 1000); the reply's `next_after` continues it (0: no more).
    pub async fn list_accounts(
        &self,
        filter: AccountFilter,
        after: u64,
        limit: u32,
        read: ReadOptions,
    ) -> Result<pb::ListAccountsResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = pb::ListAccountsRequest {
            parent: filter.parent,
            non_zero: filter.non_zero,
            has_positions: filter.has_positions,
            after,
            limit,
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, accounts_client, |mut c, r| async move {
            c.list_accounts(r).await
        })
        .await
    }

    /// One page of `account`'s open holds with ids above `after`.
    pub async fn list_holds(
        &self,
        account: u64,
        after: u64,
        limit: u32,
        read: ReadOptions,
    ) -> Result<pb::ListHoldsResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = pb::ListHoldsRequest {
            account,
            after,
            limit,
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, accounts_client, |mut c, r| async move {
            c.list_holds(r).await
        })
        .await
    }

    /// Every asset summed over all owners and wallets (each total is 0).
    pub async fn conservation(
        &self,
        read: ReadOptions,
    ) -> Result<pb::GetConservationResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = pb::GetConservationRequest {
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, accounts_client, |mut c, r| async move {
            c.get_conservation(r).await
        })
        .await
    }

    /// One page of `account`'s kept balance changes from sequence number
    /// `from_seq` and log index `from_index` on; the reply's `next_seq`
    /// continues it (0: no more).
    pub async fn history(
        &self,
        account: u64,
        from_seq: u64,
        from_index: u64,
        limit: u32,
        read: ReadOptions,
    ) -> Result<pb::GetHistoryResponse, ClientError> {
        let read = self.resolve_read(read);
        let request = pb::GetHistoryRequest {
            account,
            from_seq,
            from_index,
            limit,
            read: Some(read.to_proto()),
        };
        self.read_rpc(read, request, accounts_client, |mut c, r| async move {
            c.get_history(r).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wallets_parse_and_round_trip() {
        for wallet in [Wallet::Spot, Wallet::Funding, Wallet::Margin] {
            assert_eq!(Wallet::from_proto(wallet.to_proto() as i32), Some(wallet));
            assert_eq!(wallet.as_str().parse::<Wallet>(), Ok(wallet));
        }
        assert_eq!("MARGIN".parse::<Wallet>(), Ok(Wallet::Margin));
        let err = "savings".parse::<Wallet>().expect_err("unknown");
        assert!(err.starts_with("UNKNOWN_WALLET"), "{err}");
        assert_eq!(Wallet::from_proto(7), None);
    }
}
