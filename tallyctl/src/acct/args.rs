//! The account model's command line: the clap definitions of
//! `open-account`, `grant`, `allow-withdraw`, `wallet-transfer`,
//! `wallet-deposit`, `wallet-withdraw`, `insurance-withdraw`,
//! `sweep-fees`, `pair-create`, `pair-fill`, `release-part`, and the reads
//! `wallets`, `transferable`, `history`, `accounts`, `holds`, `assets`,
//! `pairs`, `markets` and `conservation`.

use clap::Subcommand;
use tally_client::Wallet;

use crate::args::{AMOUNT_HELP, ReadArgs, WriteArgs, non_negative_decimal, positive_decimal};

fn wallet_arg(s: &str) -> Result<Wallet, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum AcctCmd {
    /// Open an account with its model settings (master, collateral wallet,
    /// withdrawal right, history).
    OpenAccount {
        /// New account id.
        account: u64,
        /// Its master (a top-level account): makes it a sub-account.
        #[arg(long, value_name = "ACCOUNT")]
        parent: Option<u64>,
        /// The wallet its perpetual positions are margined over.
        #[arg(long, value_parser = wallet_arg, default_value = "margin", value_name = "spot|margin")]
        collateral: Wallet,
        /// Forbid withdrawals (default for a sub-account).
        #[arg(long)]
        no_withdraw: bool,
        /// Allow withdrawals even for a sub-account.
        #[arg(long, conflicts_with = "no_withdraw")]
        withdraw: bool,
        /// Keep its balance changes (`tallyctl history`).
        #[arg(long)]
        history: bool,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// As MASTER, allow (or with --revoke forbid) transfers from
    /// sub-account FROM to sub-account TO.
    Grant {
        master: u64,
        from: u64,
        to: u64,
        #[arg(long)]
        revoke: bool,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Allow (or with --forbid forbid) withdrawals from an account.
    AllowWithdraw {
        account: u64,
        #[arg(long)]
        forbid: bool,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Move available funds between (account, wallet)s: within an account,
    /// master <-> sub-account, or to a granted sibling.
    #[command(after_long_help = AMOUNT_HELP)]
    WalletTransfer {
        from: u64,
        #[arg(value_parser = wallet_arg)]
        from_wallet: Wallet,
        to: u64,
        #[arg(value_parser = wallet_arg)]
        to_wallet: Wallet,
        asset: String,
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Credit an account's wallet (debits `external`).
    #[command(after_long_help = AMOUNT_HELP)]
    WalletDeposit {
        account: u64,
        #[arg(value_parser = wallet_arg)]
        wallet: Wallet,
        asset: String,
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Debit an account's wallet (at most its transferable amount).
    #[command(after_long_help = AMOUNT_HELP)]
    WalletWithdraw {
        account: u64,
        #[arg(value_parser = wallet_arg)]
        wallet: Wallet,
        asset: String,
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Pay out of the insurance fund of ASSET into an account's wallet.
    InsuranceWithdraw {
        asset: String,
        account: u64,
        #[arg(value_parser = wallet_arg)]
        wallet: Wallet,
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Sweep the fee account of ASSET into an account's wallet.
    SweepFees {
        asset: String,
        account: u64,
        #[arg(value_parser = wallet_arg)]
        wallet: Wallet,
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Register a spot pair, e.g. `pair-create BTC-USDT BTC USDT --size-scale 4 --price-scale 2`.
    PairCreate {
        pair: String,
        base: String,
        quote: String,
        #[arg(long, default_value_t = 0)]
        size_scale: u32,
        #[arg(long, default_value_t = 0)]
        price_scale: u32,
        #[arg(long, value_parser = non_negative_decimal, default_value = "0")]
        min_base_amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Settle a trade of a pair; fees in any asset (--buyer-fee-asset,
    /// --seller-fee-asset; default: the asset each side receives).
    PairFill {
        pair: String,
        #[arg(long, value_name = "HOLD")]
        buy_hold: u64,
        #[arg(long, value_name = "HOLD")]
        sell_hold: u64,
        #[arg(long, value_parser = positive_decimal)]
        amount: String,
        #[arg(long, value_parser = positive_decimal)]
        price: String,
        #[arg(long, value_parser = non_negative_decimal, default_value = "0")]
        buyer_fee: String,
        #[arg(long, default_value = "")]
        buyer_fee_asset: String,
        #[arg(long, value_parser = non_negative_decimal, default_value = "0")]
        seller_fee: String,
        #[arg(long, default_value = "")]
        seller_fee_asset: String,
        /// The buy order's limit price: its improvement returns at once.
        #[arg(long, value_parser = non_negative_decimal, default_value = "0")]
        buyer_limit_price: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Make an account's position in MARKET isolated (--cross: cross again) while flat.
    Isolate {
        account: u64,
        market: String,
        #[arg(long)]
        cross: bool,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Move isolated margin in (DELTA > 0) or out (DELTA < 0).
    AdjustIsolated {
        account: u64,
        market: String,
        #[arg(allow_negative_numbers = true)]
        delta: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Return AMOUNT of a hold's remainder to available (order amended down).
    ReleasePart {
        hold: u64,
        #[arg(value_parser = positive_decimal)]
        amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Show an account's settings and every wallet balance.
    Wallets {
        account: u64,
        #[command(flatten)]
        read: ReadArgs,
    },

    /// Show what may move out of an account's wallet now.
    Transferable {
        account: u64,
        #[arg(value_parser = wallet_arg)]
        wallet: Wallet,
        asset: String,
        #[command(flatten)]
        read: ReadArgs,
    },

    /// Show one page of an account's balance changes (accounts opened with --history).
    History {
        account: u64,
        /// First sequence number (the previous page's next_seq).
        #[arg(long, default_value_t = 0)]
        from_seq: u64,
        /// Only changes at or after this log index.
        #[arg(long, default_value_t = 0)]
        from_index: u64,
        #[arg(long, default_value_t = 0)]
        limit: u32,
        #[command(flatten)]
        read: ReadArgs,
    },

    /// List accounts (one page; pass --after the previous page's next_after).
    Accounts {
        #[arg(long)]
        parent: Option<u64>,
        #[arg(long)]
        non_zero: bool,
        #[arg(long)]
        has_positions: bool,
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 0)]
        limit: u32,
        #[command(flatten)]
        read: ReadArgs,
    },

    /// List an account's open holds (one page).
    Holds {
        account: u64,
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 0)]
        limit: u32,
        #[command(flatten)]
        read: ReadArgs,
    },

    /// List every asset.
    Assets {
        #[command(flatten)]
        read: ReadArgs,
    },

    /// List every spot pair.
    Pairs {
        #[command(flatten)]
        read: ReadArgs,
    },

    /// List every perpetual market.
    Markets {
        #[command(flatten)]
        read: ReadArgs,
    },

    /// Every asset summed over all owners and wallets (each total is 0).
    Conservation {
        #[command(flatten)]
        read: ReadArgs,
    },
}
