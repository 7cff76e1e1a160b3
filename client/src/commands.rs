//! Command builders: one function per command body in `ledger.proto`, each
//! stamping a fresh id from [`new_command_id`], plus [`CommandExt`] to set an
//! explicit id (e.g. derived from an order id, or a retry of an earlier id).
//!
//! ```
//! use tally_client::commands::{self, CommandExt};
//! let cmd = commands::deposit(7, "BTC", "1.5").with_id("deposit-7-0001");
//! assert_eq!(cmd.id(), "deposit-7-0001");
//! ```

use rust_decimal::Decimal;
use tally_proto::v1::{
    ApplyFunding, AssertBalance, Command, CreateAccount, CreateAsset, CreateMarket, Deposit, Fill,
    FundInsurance, Lock, MarginBracket, PerpFill, Release, SetDedupWindow, SetMarkPrice,
    SetMarketPaused, Transfer, Withdraw, command::Body,
};

use crate::ids::new_command_id;

/// Something usable as an exact decimal amount: a decimal string, a
/// [`Decimal`], or an integer. Deliberately not implemented for floats.
pub trait IntoAmount {
    /// The decimal string sent to the server.
    fn into_amount(self) -> String;
}

impl IntoAmount for &str {
    fn into_amount(self) -> String {
        self.to_string()
    }
}
impl IntoAmount for String {
    fn into_amount(self) -> String {
        self
    }
}
impl IntoAmount for &String {
    fn into_amount(self) -> String {
        self.clone()
    }
}
impl IntoAmount for Decimal {
    fn into_amount(self) -> String {
        self.to_string()
    }
}
impl IntoAmount for &Decimal {
    fn into_amount(self) -> String {
        self.to_string()
    }
}
impl IntoAmount for u64 {
    fn into_amount(self) -> String {
        self.to_string()
    }
}
impl IntoAmount for u32 {
    fn into_amount(self) -> String {
        self.to_string()
    }
}

/// Id accessors for [`Command`].
pub trait CommandExt {
    /// The same command with `command_id` replaced.
    #[must_use]
    fn with_id(self, command_id: impl Into<String>) -> Self;
    /// The command id.
    fn id(&self) -> &str;
    /// The body's name in `snake_case` (`"deposit"`, ...), or `"empty"`.
    fn kind(&self) -> &'static str;
}

impl CommandExt for Command {
    fn with_id(mut self, command_id: impl Into<String>) -> Self {
        self.command_id = command_id.into();
        self
    }

    fn id(&self) -> &str {
        &self.command_id
    }

    fn kind(&self) -> &'static str {
        match &self.body {
            None => "empty",
            Some(Body::CreateAsset(_)) => "create_asset",
            Some(Body::CreateAccount(_)) => "create_account",
            Some(Body::Deposit(_)) => "deposit",
            Some(Body::Withdraw(_)) => "withdraw",
            Some(Body::Lock(_)) => "lock",
            Some(Body::Release(_)) => "release",
            Some(Body::Fill(_)) => "fill",
            Some(Body::Transfer(_)) => "transfer",
            Some(Body::CreateMarket(_)) => "create_market",
            Some(Body::SetMarketPaused(_)) => "set_market_paused",
            Some(Body::SetMarkPrice(_)) => "set_mark_price",
            Some(Body::ApplyFunding(_)) => "apply_funding",
            Some(Body::PerpFill(_)) => "perp_fill",
            Some(Body::SetDedupWindow(_)) => "set_dedup_window",
            Some(Body::FundInsurance(_)) => "fund_insurance",
            Some(Body::OpenAccount(_)) => "open_account",
            Some(Body::SetWithdrawAllowed(_)) => "set_withdraw_allowed",
            Some(Body::SetTransferGrant(_)) => "set_transfer_grant",
            Some(Body::WalletTransfer(_)) => "wallet_transfer",
            Some(Body::WalletDeposit(_)) => "wallet_deposit",
            Some(Body::WalletWithdraw(_)) => "wallet_withdraw",
            Some(Body::WithdrawInsurance(_)) => "withdraw_insurance",
            Some(Body::SweepFees(_)) => "sweep_fees",
            Some(Body::CreatePair(_)) => "create_pair",
            Some(Body::PairFill(_)) => "pair_fill",
            Some(Body::ReleasePart(_)) => "release_part",
            Some(Body::SetIsolated(_)) => "set_isolated",
            Some(Body::AdjustIsolatedMargin(_)) => "adjust_isolated_margin",
            Some(Body::AssertBalance(_)) => "assert_balance",
            Some(Body::CreateDatedFuture(_)) => "create_dated_future",
            Some(Body::SettleFuture(_)) => "settle_future",
            Some(Body::CreateOption(_)) => "create_option",
            Some(Body::ExerciseOption(_)) => "exercise_option",
            Some(Body::ApplyOptionFunding(_)) => "apply_option_funding",
            Some(Body::ApplyPremiumFunding(_)) => "apply_premium_funding",
            Some(Body::CreateInverseMarket(_)) => "create_inverse_market",
            Some(Body::SetOptionMark(_)) => "set_option_mark",
            Some(Body::SetFundingClamp(_)) => "set_funding_clamp",
        }
    }
}

pub(crate) fn command(body: Body) -> Command {
    Command {
        command_id: new_command_id(),
        body: Some(body),
    }
}

/// Registers an asset with a fixed scale (e.g. `BTC` 8, `USDT` 6).
pub fn create_asset(symbol: impl Into<String>, scale: u32) -> Command {
    command(Body::CreateAsset(CreateAsset {
        symbol: symbol.into(),
        scale,
    }))
}

/// Opens a client account (`0` is reserved).
pub fn create_account(account: u64) -> Command {
    command(Body::CreateAccount(CreateAccount { account }))
}

/// Credits `available` of `account`; debits the asset's `external` account.
pub fn deposit(account: u64, asset: impl Into<String>, amount: impl IntoAmount) -> Command {
    command(Body::Deposit(Deposit {
        account,
        asset: asset.into(),
        amount: amount.into_amount(),
    }))
}

/// Debits `available` of `account`; credits the asset's `external` account.
pub fn withdraw(account: u64, asset: impl Into<String>, amount: impl IntoAmount) -> Command {
    command(Body::Withdraw(Withdraw {
        account,
        asset: asset.into(),
        amount: amount.into_amount(),
    }))
}

/// Moves `amount` from `available` to `locked` under a new hold (the order id).
pub fn lock(hold: u64, account: u64, asset: impl Into<String>, amount: impl IntoAmount) -> Command {
    command(Body::Lock(Lock {
        hold,
        account,
        asset: asset.into(),
        amount: amount.into_amount(),
    }))
}

/// Closes a hold, returning its remainder to `available` (order cancel).
pub fn release(hold: u64) -> Command {
    command(Body::Release(Release { hold }))
}

/// Settles a trade without fees: `buy_hold` holds the quote asset,
/// `sell_hold` the base asset; the buyer pays `base_amount * price`.
pub fn fill(
    buy_hold: u64,
    sell_hold: u64,
    base_amount: impl IntoAmount,
    price: impl IntoAmount,
) -> Command {
    fill_with_fees(buy_hold, sell_hold, base_amount, price, "0", "0")
}

/// Settles a trade with fees: each side pays its fee in the asset it
/// receives (`buyer_fee` in base, `seller_fee` in quote).
pub fn fill_with_fees(
    buy_hold: u64,
    sell_hold: u64,
    base_amount: impl IntoAmount,
    price: impl IntoAmount,
    buyer_fee: impl IntoAmount,
    seller_fee: impl IntoAmount,
) -> Command {
    command(Body::Fill(Fill {
        buy_hold,
        sell_hold,
        base_amount: base_amount.into_amount(),
        price: price.into_amount(),
        buyer_fee: buyer_fee.into_amount(),
        seller_fee: seller_fee.into_amount(),
    }))
}

/// Moves `available` from one client account to another.
pub fn transfer(from: u64, to: u64, asset: impl Into<String>, amount: impl IntoAmount) -> Command {
    command(Body::Transfer(Transfer {
        from,
        to,
        asset: asset.into(),
        amount: amount.into_amount(),
    }))
}

/// Moves `amount` of `asset` from `account`'s available balance into the
/// asset's insurance fund, which absorbs liquidation losses.
pub fn fund_insurance(account: u64, asset: impl Into<String>, amount: impl IntoAmount) -> Command {
    command(Body::FundInsurance(FundInsurance {
        account,
        asset: asset.into(),
        amount: amount.into_amount(),
    }))
}

/// Changes nothing; rejected with `BALANCE_MISMATCH` unless `account`'s
/// balance of `asset` is exactly `available` and `locked` at this point of
/// the log (a reconciliation checkpoint). Needs cluster version 2: refused
/// with `FEATURE_NOT_ACTIVE` until the upgrade is finalized.
pub fn assert_balance(
    account: u64,
    asset: impl Into<String>,
    available: impl IntoAmount,
    locked: impl IntoAmount,
) -> Command {
    command(Body::AssertBalance(AssertBalance {
        account,
        asset: asset.into(),
        available: available.into_amount(),
        locked: locked.into_amount(),
    }))
}

// ---- perpetual futures ----

/// One maintenance-margin bracket of [`create_market`]: from
/// `notional_floor` (settle asset) the maintenance margin rate is
/// `maintenance_margin_rate` and the leverage at most `max_leverage`.
pub fn margin_bracket(
    notional_floor: impl IntoAmount,
    maintenance_margin_rate: impl IntoAmount,
    max_leverage: u32,
) -> MarginBracket {
    MarginBracket {
        notional_floor: notional_floor.into_amount(),
        maintenance_margin_rate: maintenance_margin_rate.into_amount(),
        max_leverage,
    }
}

/// Creates a linear perpetual market. Fill in every field of `spec`
/// (`CreateMarket` in `ledger.proto` documents them; brackets via
/// [`margin_bracket`]).
///
/// ```
/// use tally_client::commands::{self, margin_bracket};
/// use tally_client::proto::v1::CreateMarket;
/// let cmd = commands::create_market(CreateMarket {
///     market: "BTC-PERP".into(),
///     base: "BTC".into(),
///     settle_asset: "USDT".into(),
///     tick_size: "0.1".into(),
///     step_size: "0.001".into(),
///     max_leverage: 20,
///     brackets: vec![
///         margin_bracket("0", "0.01", 20),
///         margin_bracket("10000", "0.02", 10),
///     ],
///     liquidation_fee_rate: "0.01".into(),
///     funding_interval_ms: 8 * 3_600_000,
/// });
/// ```
pub fn create_market(spec: CreateMarket) -> Command {
    command(Body::CreateMarket(spec))
}

/// Pauses a market (reduce-only: fills that open or grow a position are refused).
pub fn pause_market(market: impl Into<String>) -> Command {
    command(Body::SetMarketPaused(SetMarketPaused {
        market: market.into(),
        paused: true,
    }))
}

/// Resumes a paused market.
pub fn resume_market(market: impl Into<String>) -> Command {
    command(Body::SetMarketPaused(SetMarketPaused {
        market: market.into(),
        paused: false,
    }))
}

/// Sets a market's mark price (then every account under its maintenance
/// margin is liquidated).
pub fn set_mark_price(market: impl Into<String>, price: impl IntoAmount) -> Command {
    command(Body::SetMarkPrice(SetMarkPrice {
        market: market.into(),
        price: price.into_amount(),
    }))
}

/// One funding round at `funding_time_ms` (a multiple of the market's
/// funding interval): positions pay `size × mark × rate`; a positive rate
/// means longs pay shorts. `rate` may be negative (`"-0.0001"`).
pub fn apply_funding(
    market: impl Into<String>,
    rate: impl IntoAmount,
    funding_time_ms: u64,
) -> Command {
    command(Body::ApplyFunding(ApplyFunding {
        market: market.into(),
        rate: rate.into_amount(),
        funding_time_ms,
    }))
}

/// Settles a perpetual trade: `buyer` buys `size` from `seller` at `price`;
/// the fees are settle-asset amounts paid to the fees account.
pub fn perp_fill(
    market: impl Into<String>,
    buyer: u64,
    seller: u64,
    size: impl IntoAmount,
    price: impl IntoAmount,
    buyer_fee: impl IntoAmount,
    seller_fee: impl IntoAmount,
) -> Command {
    command(Body::PerpFill(PerpFill {
        market: market.into(),
        buyer,
        seller,
        size: size.into_amount(),
        price: price.into_amount(),
        buyer_fee: buyer_fee.into_amount(),
        seller_fee: seller_fee.into_amount(),
    }))
}

// ---- ledger settings ----

/// Shortest idempotency window the ledger accepts (ms): 1 second.
pub const MIN_DEDUP_WINDOW_MS: u64 = 1_000;
/// Longest idempotency window the ledger accepts (ms): 7 days.
pub const MAX_DEDUP_WINDOW_MS: u64 = 604_800_000;

/// Sets the ledger's idempotency window: how long (leader time) every
/// command id's verdict is remembered, from the next command on.
///
/// Replicated ledger state, not a node setting: it travels through the
/// Raft log, so every node changes it at the same log position. The ledger
/// accepts [`MIN_DEDUP_WINDOW_MS`]`..=`[`MAX_DEDUP_WINDOW_MS`] and rejects
/// anything else with `INVALID_DEDUP_WINDOW`. Shrinking it forgets ids older
/// than the new window at once (a retry of one applies as a new command).
/// Memory: about 100 bytes per remembered command, i.e. `window_ms / 1000 ×
/// commands per second × 100 B` per node (24 h at 1,000 commands/s ≈ 8.6 GB;
/// 10 min at 100,000 commands/s ≈ 6 GB).
pub fn set_dedup_window(window_ms: u64) -> Command {
    command(Body::SetDedupWindow(SetDedupWindow { window_ms }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn builders_fill_bodies_and_fresh_ids() {
        let a = deposit(7, "BTC", "1.5");
        let b = deposit(7, "BTC", "1.5");
        assert_ne!(a.id(), b.id(), "each builder call gets a fresh id");
        assert_eq!(
            a.body,
            Some(Body::Deposit(Deposit {
                account: 7,
                asset: "BTC".into(),
                amount: "1.5".into()
            }))
        );
        let d = Decimal::from_str("0.10").ok();
        assert_eq!(d.map(|d| withdraw(1, "BTC", d).kind()), Some("withdraw"));
        let f = fill(1, 2, "0.5", 30_000u64);
        match f.body {
            Some(Body::Fill(fill)) => {
                assert_eq!(fill.price, "30000");
                assert_eq!(fill.buyer_fee, "0");
                assert_eq!(fill.seller_fee, "0");
            }
            other => panic!("unexpected body {other:?}"),
        }
        let kinds: Vec<&str> = [
            create_asset("BTC", 8),
            create_account(1),
            lock(9, 1, "USDT", "10"),
            release(9),
            fill_with_fees(1, 2, "1", "2", "0.1", "0.2"),
            transfer(1, 2, "BTC", "1"),
        ]
        .iter()
        .map(CommandExt::kind)
        .collect();
        assert_eq!(
            kinds,
            [
                "create_asset",
                "create_account",
                "lock",
                "release",
                "fill",
                "transfer"
            ]
        );
    }

    #[test]
    fn perp_builders() {
        let kinds: Vec<&str> = [
            create_market(CreateMarket::default()),
            pause_market("BTC-PERP"),
            resume_market("BTC-PERP"),
            set_mark_price("BTC-PERP", "100.5"),
            apply_funding("BTC-PERP", "-0.0001", 28_800_000),
            perp_fill("BTC-PERP", 1, 2, "0.5", "100", "0", "0.05"),
        ]
        .iter()
        .map(CommandExt::kind)
        .collect();
        assert_eq!(
            kinds,
            [
                "create_market",
                "set_market_paused",
                "set_market_paused",
                "set_mark_price",
                "apply_funding",
                "perp_fill"
            ]
        );
        match pause_market("X").body {
            Some(Body::SetMarketPaused(p)) => assert!(p.paused),
            other => panic!("{other:?}"),
        }
        assert_eq!(margin_bracket("0", "0.01", 20).max_leverage, 20);
    }

    #[test]
    fn set_dedup_window_builder() {
        let c = set_dedup_window(600_000);
        assert_eq!(c.kind(), "set_dedup_window");
        assert_eq!(
            c.body,
            Some(Body::SetDedupWindow(SetDedupWindow { window_ms: 600_000 }))
        );
    }

    #[test]
    fn with_id_replaces_id_only() {
        let c = release(3);
        let body = c.body.clone();
        let c = c.with_id("order-3-cancel");
        assert_eq!(c.id(), "order-3-cancel");
        assert_eq!(c.body, body);
    }
}
