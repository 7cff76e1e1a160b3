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
    Command, CreateAccount, CreateAsset, Deposit, Fill, Lock, Release, Transfer, Withdraw,
    command::Body,
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
        }
    }
}

fn command(body: Body) -> Command {
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
    fn with_id_replaces_id_only() {
        let c = release(3);
        let body = c.body.clone();
        let c = c.with_id("order-3-cancel");
        assert_eq!(c.id(), "order-3-cancel");
        assert_eq!(c.body, body);
    }
}
