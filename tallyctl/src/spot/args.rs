//! Spot trading's command line: the clap definitions of the `asset`,
//! `account`, `deposit`, `withdraw`, `transfer`, `assert-balance`, `lock`, `release`
//! (`cancel`), `fill`, `balance` and `hold` subcommands.

use clap::{Args, Subcommand};
use tally_client::Owner;

use crate::args::{AMOUNT_HELP, ReadArgs, WriteArgs, non_negative_decimal, positive_decimal};

fn owner_arg(s: &str) -> Result<Owner, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum SpotCmd {
    /// Manage assets.
    #[command(subcommand)]
    Asset(AssetCmd),

    /// Show an account's balances, or create an account (`account create`).
    Account(AccountArgs),

    /// Credit an account (the asset's `external` account is debited).
    #[command(after_long_help = AMOUNT_HELP)]
    Deposit {
        /// Account id.
        account: u64,
        /// Asset symbol, e.g. BTC.
        asset: String,
        /// Decimal amount, e.g. 1.5 (at most the asset's scale in decimal places).
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Debit an account's available balance (credited to `external`).
    #[command(after_long_help = AMOUNT_HELP)]
    Withdraw {
        /// Account id.
        account: u64,
        /// Asset symbol.
        asset: String,
        /// Decimal amount (at most the asset's scale in decimal places).
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Move available funds from one account to another.
    #[command(after_long_help = AMOUNT_HELP)]
    Transfer {
        /// Account to debit.
        from: u64,
        /// Account to credit.
        to: u64,
        /// Asset symbol.
        asset: String,
        /// Decimal amount (at most the asset's scale in decimal places).
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Check that an account's balance is exactly AVAILABLE and LOCKED (changes nothing).
    ///
    /// Rejected with BALANCE_MISMATCH (exit 2) otherwise: a reconciliation
    /// checkpoint in the log. Needs cluster version 2: refused with
    /// FEATURE_NOT_ACTIVE until the upgrade is finalized (`cluster finalize`).
    #[command(after_long_help = AMOUNT_HELP)]
    AssertBalance {
        /// Account id.
        account: u64,
        /// Asset symbol.
        asset: String,
        /// The available balance expected (decimal).
        #[arg(value_parser = non_negative_decimal, allow_negative_numbers = true)]
        available: String,
        /// The locked balance expected (decimal, default 0).
        #[arg(value_parser = non_negative_decimal, allow_negative_numbers = true, default_value = "0")]
        locked: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Lock funds for an order: move AMOUNT from available to locked under HOLD.
    #[command(after_long_help = AMOUNT_HELP)]
    Lock {
        /// New hold id (normally the order id).
        hold: u64,
        /// Account whose funds are locked.
        account: u64,
        /// Asset symbol.
        asset: String,
        /// Decimal amount (at most the asset's scale in decimal places).
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Close a hold (order cancel): its remainder returns to available.
    #[command(visible_alias = "cancel", after_long_help = AMOUNT_HELP)]
    Release {
        /// Hold id.
        hold: u64,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Settle a trade between a buy hold (quote asset) and a sell hold (base asset).
    ///
    /// The buyer's hold pays AMOUNT * PRICE of the quote asset, the seller's
    /// hold AMOUNT of the base asset. The buyer receives AMOUNT minus
    /// --buyer-fee (base), the seller the quote minus --seller-fee (quote);
    /// fees go to the `fees` account. A fill that would overdraw a hold
    /// changes nothing (HOLD_INSUFFICIENT).
    #[command(after_long_help = AMOUNT_HELP)]
    Fill {
        /// Hold of the buyer (locks the quote asset, e.g. USDT).
        #[arg(long, value_name = "HOLD")]
        buy_hold: u64,
        /// Hold of the seller (locks the base asset, e.g. BTC).
        #[arg(long, value_name = "HOLD")]
        sell_hold: u64,
        /// Base amount traded (decimal).
        #[arg(long, value_parser = positive_decimal, allow_negative_numbers = true)]
        amount: String,
        /// Price in quote per base (decimal).
        #[arg(long, value_parser = positive_decimal, allow_negative_numbers = true)]
        price: String,
        /// Fee the buyer pays, in the base asset (decimal, default 0).
        #[arg(long, value_parser = non_negative_decimal, allow_negative_numbers = true, default_value = "0", value_name = "FEE")]
        buyer_fee: String,
        /// Fee the seller pays, in the quote asset (decimal, default 0).
        #[arg(long, value_parser = non_negative_decimal, allow_negative_numbers = true, default_value = "0", value_name = "FEE")]
        seller_fee: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Show one balance of an account or of a system account.
    Balance {
        /// Account id, or a system account: external, fees, insurance.
        #[arg(value_parser = owner_arg, value_name = "ACCOUNT|external|fees|insurance")]
        owner: Owner,
        /// Asset symbol.
        asset: String,
        #[command(flatten)]
        read: ReadArgs,
    },

    /// Show a hold (order lock): owner, asset, amount and remainder.
    Hold {
        /// Hold id.
        hold: u64,
        #[command(flatten)]
        read: ReadArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AssetCmd {
    /// Register an asset with a fixed scale (decimal places), e.g. `asset create BTC 8`.
    Create {
        /// Symbol: up to 16 of A-Z, 0-9, _ and -.
        symbol: String,
        /// Decimal places amounts of this asset may have (0-18).
        #[arg(value_parser = clap::value_parser!(u32).range(0..=18))]
        scale: u32,
        #[command(flatten)]
        write: WriteArgs,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AccountArgs {
    #[command(subcommand)]
    pub action: Option<AccountCmd>,
    /// Account id whose balances to show.
    #[arg(required = true, value_name = "ACCOUNT")]
    pub account: Option<u64>,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Open a client account (ids are chosen by the caller; 0 is reserved).
    Create {
        /// Account id.
        account: u64,
        #[command(flatten)]
        write: WriteArgs,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Cmd;
    use crate::args::tests::{ok, parse};

    fn spot(args: &[&str]) -> SpotCmd {
        match ok(args).command {
            Cmd::Spot(cmd) => cmd,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn writes() {
        match spot(&["deposit", "7", "BTC", "0.00000001", "--id", "dep-1"]) {
            SpotCmd::Deposit {
                account,
                amount,
                write,
                ..
            } => {
                assert_eq!((account, amount.as_str()), (7, "0.00000001"));
                assert_eq!(write.id.as_deref(), Some("dep-1"));
            }
            other => panic!("{other:?}"),
        }
        for bad in ["-1", "1e3", "0", "1,5", "abc", ".5"] {
            assert!(parse(&["deposit", "7", "BTC", bad]).is_err(), "{bad}");
        }
        assert!(parse(&["deposit", "x", "BTC", "1"]).is_err());
        assert!(parse(&["deposit", "7", "BTC", "1", "--id", ""]).is_err());
        assert!(matches!(
            spot(&["cancel", "9"]),
            SpotCmd::Release { hold: 9, .. }
        ));
        assert!(matches!(
            spot(&["transfer", "1", "2", "USDT", "10"]),
            SpotCmd::Transfer { from: 1, to: 2, .. }
        ));
        assert!(matches!(
            spot(&["lock", "101", "1", "USDT", "15000"]),
            SpotCmd::Lock {
                hold: 101,
                account: 1,
                ..
            }
        ));
        match spot(&[
            "fill",
            "--buy-hold",
            "1",
            "--sell-hold",
            "2",
            "--amount",
            "0.5",
            "--price",
            "30000",
            "--seller-fee",
            "15",
        ]) {
            SpotCmd::Fill {
                buyer_fee,
                seller_fee,
                ..
            } => assert_eq!((buyer_fee.as_str(), seller_fee.as_str()), ("0", "15")),
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&[
                "fill",
                "--buy-hold",
                "1",
                "--sell-hold",
                "2",
                "--amount",
                "1"
            ])
            .is_err()
        );
        assert!(matches!(
            spot(&["asset", "create", "BTC", "8"]),
            SpotCmd::Asset(AssetCmd::Create { scale: 8, .. })
        ));
        assert!(parse(&["asset", "create", "BTC", "19"]).is_err());
    }

    #[test]
    fn account_show_and_create() {
        match spot(&["account", "7"]) {
            SpotCmd::Account(AccountArgs {
                action: None,
                account: Some(7),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match spot(&["account", "create", "7", "--id", "acct-7"]) {
            SpotCmd::Account(AccountArgs {
                action: Some(AccountCmd::Create { account: 7, write }),
                account: None,
                ..
            }) => assert_eq!(write.id.as_deref(), Some("acct-7")),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["account"]).is_err());
    }
}
