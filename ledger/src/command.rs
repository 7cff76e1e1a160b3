//! The engine's public vocabulary: commands in, outcomes and events out.
//!
//! These types are the contract between the pure engine and the replicated
//! shell. Each command is a named struct (`Command::Fill(Fill)`), defined
//! once, with its wire encoding, by `define_commands!` (see the `wire`
//! module): a command's tag and field order are the replicated format, so
//! add commands with new tags and never reorder fields.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::reject::Rejection;

/// A client account (an exchange user, sub-account or the matching engine's
/// own book). Chosen by the caller; `0` is reserved and rejected.
pub type AccountId = u64;

/// A hold (order lock) id, chosen by the caller; normally the order id.
pub type HoldId = u64;

/// Longest command id accepted, in bytes.
pub const MAX_COMMAND_ID_BYTES: usize = 64;

/// Longest asset symbol accepted, in bytes (ASCII `A-Z`, `0-9`, `_`, `-`).
pub const MAX_ASSET_SYMBOL_BYTES: usize = 16;

/// Largest scale (digits after the decimal point) an asset may have.
pub const MAX_ASSET_SCALE: u32 = 18;

/// Largest magnitude of any amount in a command or any balance, in minor units
/// (`amount * 10^scale`). Keeps every balance representable as a `Decimal`
/// (96-bit mantissa) and every sum inside `i128`.
pub const MAX_UNITS: i128 = 10i128.pow(28);

// The relations the engine relies on between these limits, checked at
// compile time.
// Every balance and amount is a `Decimal` mantissa (below 2^96) ...
const _: () = assert!(MAX_UNITS < 1i128 << 96);
// ... and more than 10^10 of them sum inside i128 (conservation checks).
const _: () = assert!(i128::MAX / MAX_UNITS > 10_000_000_000);
// Scales are `Decimal` scales, and rates are converted like asset amounts.
const _: () = assert!(MAX_ASSET_SCALE <= rust_decimal::Decimal::MAX_SCALE);
const _: () = assert!(RATE_SCALE <= MAX_ASSET_SCALE);
// Records store scales and bracket counts in one byte.
const _: () = assert!(MAX_ASSET_SCALE <= u8::MAX as u32);
const _: () = assert!(MAX_MARGIN_BRACKETS <= u8::MAX as usize);
const _: () = assert!(MIN_DEDUP_WINDOW_MS <= MAX_DEDUP_WINDOW_MS);
const _: () = assert!(MAX_MARKETS <= u32::MAX as usize);

/// Longest market symbol accepted, in bytes (ASCII `A-Z`, `0-9`, `_`, `-`).
pub const MAX_MARKET_SYMBOL_BYTES: usize = 32;

/// Most perpetual markets a ledger holds.
pub const MAX_MARKETS: usize = 1024;

/// Most maintenance-margin brackets (tiers) a market may have.
pub const MAX_MARGIN_BRACKETS: usize = 16;

/// Largest leverage a market or bracket may allow.
pub const MAX_LEVERAGE: u32 = 1000;

/// Most transfer grants (sub-accounts it may transfer to) one sub-account
/// holds; `SetTransferGrant` beyond it is refused with `TooManyGrants`.
pub const MAX_TRANSFER_GRANTS: usize = 256;

/// Most spot pairs a ledger holds.
pub const MAX_PAIRS: usize = 4096;

/// Most decimal places of a rate (maintenance margin rate, liquidation fee
/// rate, funding rate). A rate with more is rejected (`BadPrecision`).
pub const RATE_SCALE: u32 = 8;

/// Shortest idempotency window `Command::SetDedupWindow` accepts: 1 second.
pub const MIN_DEDUP_WINDOW_MS: u64 = 1_000;

/// Longest idempotency window `Command::SetDedupWindow` accepts: 7 days.
pub const MAX_DEDUP_WINDOW_MS: u64 = 7 * 24 * 3_600_000;

/// Most command ids the idempotency table remembers (about 100 bytes each:
/// about 5 GB). At the bound a new command is refused with
/// `DedupTableFull` (not remembered, nothing changed) until entries expire
/// out of the window; `SetDedupWindow` is exempt, so an operator can always
/// shrink the window. A code constant, not a node setting: every replica
/// must refuse the same commands at the same log position.
pub const MAX_DEDUP_ENTRIES: usize = 50_000_000;

/// The client-chosen idempotency key of a command: 1..=64 bytes, printable ASCII.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CommandId(pub String);

impl CommandId {
    /// True if the id is 1..=`MAX_COMMAND_ID_BYTES` bytes of printable ASCII
    /// (`0x20..=0x7E`, space included). The engine rejects any other id with
    /// `InvalidCommandId` and does not remember it; the edge may check early.
    pub fn is_valid(&self) -> bool {
        let bytes = self.0.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= MAX_COMMAND_ID_BYTES
            && bytes.iter().all(|b| (0x20..=0x7E).contains(b))
    }
}

/// True if `symbol` is a well-formed asset symbol: 1..=`MAX_ASSET_SYMBOL_BYTES`
/// bytes of ASCII `A-Z`, `0-9`, `_`, `-`.
pub fn is_valid_asset_symbol(symbol: &str) -> bool {
    let bytes = symbol.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_ASSET_SYMBOL_BYTES
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

/// True if `symbol` is a well-formed market symbol: 1..=`MAX_MARKET_SYMBOL_BYTES`
/// bytes of ASCII `A-Z`, `0-9`, `_`, `-` (e.g. `BTC-PERP`).
pub fn is_valid_market_symbol(symbol: &str) -> bool {
    let bytes = symbol.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_MARKET_SYMBOL_BYTES
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

/// Who owns a balance: a client account, or one of the per-asset system accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Owner {
    /// A client account.
    Account(AccountId),
    /// The other side of deposits and withdrawals; goes negative as money comes in.
    External,
    /// Collected trading fees.
    Fees,
    /// The insurance fund (perpetuals).
    Insurance,
    /// A client account's funding wallet.
    Funding(AccountId),
    /// A client account's margin wallet (the collateral of its perpetual
    /// positions if the account was opened with margin collateral).
    Margin(AccountId),
}

/// The kind of a client account's wallet. Every account holds, per asset,
/// one balance in each wallet it touched: `Spot` (available + locked, where
/// every legacy command and every hold acts), `Funding` (deposits and
/// withdrawals named to it) and `Margin` (the cross collateral of
/// derivatives, see `OpenAccount::collateral`). Only `Spot` balances carry
/// holds; the others have `locked == 0`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Wallet {
    #[default]
    Spot,
    Funding,
    Margin,
}

impl Wallet {
    /// Every wallet kind, in tag order.
    pub const ALL: [Wallet; 3] = [Wallet::Spot, Wallet::Funding, Wallet::Margin];

    /// Stable lowercase name (`spot`, `funding`, `margin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Wallet::Spot => "spot",
            Wallet::Funding => "funding",
            Wallet::Margin => "margin",
        }
    }

    /// The wallet named `name` (as `as_str` spells it), if any.
    pub fn parse(name: &str) -> Option<Wallet> {
        Wallet::ALL.into_iter().find(|w| w.as_str() == name)
    }

    /// The wire and record tag (0 spot, 1 funding, 2 margin).
    pub fn tag(self) -> u8 {
        match self {
            Wallet::Spot => 0,
            Wallet::Funding => 1,
            Wallet::Margin => 2,
        }
    }

    /// The wallet of a tag, if it names one.
    pub fn from_tag(tag: u8) -> Option<Wallet> {
        Wallet::ALL.get(usize::from(tag)).copied()
    }
}

impl std::fmt::Display for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Owner {
    /// The owner of `account`'s `wallet` balances.
    pub fn wallet(account: AccountId, wallet: Wallet) -> Owner {
        match wallet {
            Wallet::Spot => Owner::Account(account),
            Wallet::Funding => Owner::Funding(account),
            Wallet::Margin => Owner::Margin(account),
        }
    }

    /// The client account and wallet, or `None` for a system owner.
    pub fn client(self) -> Option<(AccountId, Wallet)> {
        match self {
            Owner::Account(id) => Some((id, Wallet::Spot)),
            Owner::Funding(id) => Some((id, Wallet::Funding)),
            Owner::Margin(id) => Some((id, Wallet::Margin)),
            Owner::External | Owner::Fees | Owner::Insurance => None,
        }
    }

    /// True for a client account's wallet (any kind).
    pub fn is_client(self) -> bool {
        self.client().is_some()
    }
}

/// How messages name an owner: `account 7`, `the external account`, `the
/// fee account`, `the insurance fund` (never a Rust Debug form).
impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Account(id) => write!(f, "account {id}"),
            Owner::External => f.write_str("the external account"),
            Owner::Fees => f.write_str("the fee account"),
            Owner::Insurance => f.write_str("the insurance fund"),
            Owner::Funding(id) => write!(f, "account {id}'s funding wallet"),
            Owner::Margin(id) => write!(f, "account {id}'s margin wallet"),
        }
    }
}

crate::wire::define_commands! {
    /// Registers an asset with a fixed scale (e.g. BTC 8, USDT 6).
    0 => CreateAsset { symbol: String, scale: u32 }
    /// Opens a client account.
    1 => CreateAccount { account: AccountId }
    /// Credits `available`; debits the asset's `External` account.
    2 => Deposit { account: AccountId, asset: String, amount: Decimal }
    /// Debits `available`; credits the asset's `External` account.
    3 => Withdraw { account: AccountId, asset: String, amount: Decimal }
    /// Moves `amount` from `available` to `locked` under a new hold.
    4 => Lock { hold: HoldId, account: AccountId, asset: String, amount: Decimal }
    /// Closes a hold and returns its remainder from `locked` to `available`.
    5 => Release { hold: HoldId }
    /// Settles one trade. `buy_hold` must hold the quote asset, `sell_hold` the
    /// base asset. The buyer's hold is debited `base_amount * price` (quote),
    /// the seller's hold `base_amount` (base). The buyer receives
    /// `base_amount - buyer_fee` (base), the seller `quote - seller_fee`
    /// (quote); both fees go to the `Fees` account: each side pays its fee in
    /// the asset it receives. Any price improvement stays on the buy hold.
    6 => Fill {
        buy_hold: HoldId,
        sell_hold: HoldId,
        base_amount: Decimal,
        price: Decimal,
        buyer_fee: Decimal,
        seller_fee: Decimal,
    }
    /// Moves `available` from one client account to another.
    7 => Transfer { from: AccountId, to: AccountId, asset: String, amount: Decimal }
    /// Creates a linear perpetual market on `base` (a symbol; need not be an
    /// asset), margined and settled in `settle_asset` (an existing asset).
    /// Prices are multiples of `tick_size`, sizes multiples of `step_size`;
    /// the decimal places of the two together may not exceed the settle
    /// asset's scale, so every fill's notional is a whole number of settle
    /// minor units. `brackets` are the maintenance-margin tiers by notional
    /// (the first floor is 0, floors strictly increase, rates never decrease,
    /// leverages never increase); a position's leverage is
    /// `min(max_leverage, bracket max_leverage)`. Rates have at most
    /// `RATE_SCALE` decimals.
    8 => CreateMarket {
        market: String,
        base: String,
        settle_asset: String,
        tick_size: Decimal,
        step_size: Decimal,
        max_leverage: u32,
        brackets: Vec<MarginBracket>,
        liquidation_fee_rate: Decimal,
        funding_interval_ms: u64,
    }
    /// Pauses a market (reduce-only: fills that would open or increase a
    /// position are rejected) or resumes it.
    9 => SetMarketPaused { market: String, paused: bool }
    /// Sets a market's mark price (at most the tick's decimal places; need not
    /// be a multiple of the tick), stamped with the entry's leader time, and
    /// then liquidates every account whose equity fell below its maintenance
    /// margin.
    10 => SetMarkPrice { market: String, price: Decimal }
    /// One funding round at the current mark price: every position pays
    /// `size * mark * rate` (positive rate: longs pay shorts). At most one
    /// round per market and `funding_time_ms`, which must be a multiple of
    /// the market's funding interval and later than the previous round.
    11 => ApplyFunding { market: String, rate: Decimal, funding_time_ms: u64 }
    /// Settles one perpetual trade: `buyer` buys `size` from `seller` at
    /// `price`. Each side's position opens, grows, shrinks or flips; realized
    /// PnL is settled into its settle-asset balance; `buyer_fee` and
    /// `seller_fee` are amounts of the settle asset paid to `Fees`.
    12 => PerpFill {
        market: String,
        buyer: AccountId,
        seller: AccountId,
        size: Decimal,
        price: Decimal,
        buyer_fee: Decimal,
        seller_fee: Decimal,
    }
    /// Sets the idempotency window: how long (leader time) every command
    /// id's verdict is remembered, from the next command on. Must be
    /// `MIN_DEDUP_WINDOW_MS..=MAX_DEDUP_WINDOW_MS` (else
    /// `InvalidDedupWindow`). The window is replicated ledger state (see the
    /// `dedup` module for how a change takes effect); the command itself is
    /// remembered like any other.
    13 => SetDedupWindow { window_ms: u64 }
    /// Moves `amount` of `asset` from a client account's `available` to
    /// the asset's insurance fund (`Owner::Insurance`), which absorbs
    /// liquidation losses: how an exchange seeds or tops up the fund.
    14 => FundInsurance { account: AccountId, asset: String, amount: Decimal }
    /// Opens a client account with its account-model settings (see the
    /// `accounts` module): `parent` its master (`0`: a top-level account;
    /// a master must be a top-level account), `collateral` the wallet its
    /// perpetual positions are margined over (`Spot`, as for
    /// `CreateAccount`, or `Margin`), `can_withdraw` whether withdrawals
    /// are allowed, `history` whether its balance changes are kept (the
    /// `history` module).
    15 => OpenAccount {
        account: AccountId,
        parent: AccountId,
        collateral: Wallet,
        can_withdraw: bool,
        history: bool,
    }
    /// Allows or forbids withdrawals from `account` (any wallet).
    16 => SetWithdrawAllowed { account: AccountId, allowed: bool }
    /// The master `master` allows (or revokes) transfers from its
    /// sub-account `from` to its sub-account `to`.
    17 => SetTransferGrant { master: AccountId, from: AccountId, to: AccountId, allowed: bool }
    /// Moves `amount` of `asset` from one (account, wallet) `available` to
    /// another, atomically: between two wallets of one account, between a
    /// master and its sub-account (either way), between two sub-accounts of
    /// one master with a grant, or between two unrelated top-level accounts.
    /// Out of a collateral wallet at most the transferable amount moves.
    18 => WalletTransfer {
        from: AccountId,
        from_wallet: Wallet,
        to: AccountId,
        to_wallet: Wallet,
        asset: String,
        amount: Decimal,
    }
    /// Credits `account`'s `wallet`; debits the asset's `External` account.
    19 => WalletDeposit { account: AccountId, wallet: Wallet, asset: String, amount: Decimal }
    /// Debits `account`'s `wallet` (at most its transferable amount, and
    /// only if the account may withdraw); credits `External`.
    20 => WalletWithdraw { account: AccountId, wallet: Wallet, asset: String, amount: Decimal }
    /// Pays `amount` of `asset` out of the insurance fund to `account`'s
    /// `wallet` (at most what the fund holds).
    21 => WithdrawInsurance { asset: String, account: AccountId, wallet: Wallet, amount: Decimal }
    /// Sweeps `amount` of `asset` from the fee account to `account`'s
    /// `wallet` (at most what the fee account holds).
    22 => SweepFees { asset: String, account: AccountId, wallet: Wallet, amount: Decimal }
    /// Registers a spot pair: `base` and `quote` existing, different
    /// assets; fills of the pair trade base amounts of at most `size_scale`
    /// decimals (at most the base scale) at prices of at most `price_scale`
    /// decimals, and at least `min_base_amount` (zero: no minimum).
    23 => CreatePair {
        pair: String,
        base: String,
        quote: String,
        size_scale: u32,
        price_scale: u32,
        min_base_amount: Decimal,
    }
    /// Settles one trade of a registered pair (see the `pairs` module):
    /// the buy hold must hold the pair's quote, the sell hold its base.
    /// Each side's fee is an amount of an asset of its choice (see `Fee`).
    /// `buyer_limit_price`, if positive, is the buy order's limit price:
    /// the price improvement `base_amount * (limit - price)` is returned
    /// from the buy hold to available at once; zero keeps it on the hold.
    24 => PairFill {
        pair: String,
        buy_hold: HoldId,
        sell_hold: HoldId,
        base_amount: Decimal,
        price: Decimal,
        buyer_fee: Fee,
        seller_fee: Fee,
        buyer_limit_price: Decimal,
    }
    /// Returns `amount` of a hold's remainder to available (an order
    /// amended down); the whole remainder closes the hold.
    25 => ReleasePart { hold: HoldId, amount: Decimal }
    /// Makes `account`'s position in `market` isolated (or cross again)
    /// while it holds none there (see the `isolated` module).
    26 => SetIsolated { account: AccountId, market: String, isolated: bool }
    /// Adds (`delta > 0`, from the collateral wallet) or removes (`delta
    /// < 0`, back to it) isolated margin of `account`'s position in `market`.
    27 => AdjustIsolatedMargin { account: AccountId, market: String, delta: Decimal }
    /// Locks `amount` of `account`'s `wallet` (spot or margin) under a new
    /// hold: in the margin wallet, open-order margin of a perpetual order
    /// (at most the transferable amount; it counts in the initial margin
    /// and in equity, see the `risk` module).
    28 => WalletLock { hold: HoldId, account: AccountId, wallet: Wallet, asset: String, amount: Decimal }
    /// A perpetual fill that first returns `buy_release` / `sell_release`
    /// of the buyer's / seller's open-order margin holds to available (the
    /// order's margin, consumed by the fill), all in one transaction. A
    /// hold id 0 releases nothing.
    29 => PerpOrderFill {
        fill: PerpFillSpec,
        buy_hold: HoldId,
        buy_release: Decimal,
        sell_hold: HoldId,
        sell_release: Decimal,
    }
    /// Changes nothing; rejected with `BalanceMismatch` unless `account`'s
    /// balance of `asset` is exactly `available` and `locked` at this point
    /// of the log: a reconciliation checkpoint (e.g. "my books and the
    /// ledger agree before this withdrawal batch"). Needs cluster version 2
    /// (the `version` module): refused with `FeatureNotActive` before.
    30 => AssertBalance { account: AccountId, asset: String, available: Decimal, locked: Decimal }
    /// Creates a dated (expiring) linear future (see the `expiry` module):
    /// a market with the parameters of `market` (as `CreateMarket`; its
    /// funding interval is kept but no funding ever applies) that expires
    /// at leader time `expiry_ms` (> 0): fills from then on are refused,
    /// and `SettleFuture` closes every position at the settlement price,
    /// charging `delivery_fee_rate` (in [0, 1), at most `RATE_SCALE`
    /// decimals) of each position's notional at that price to `Fees`.
    /// Needs cluster version 2.
    31 => CreateDatedFuture { market: CreateMarketSpec, expiry_ms: u64, delivery_fee_rate: Decimal }
    /// Settles a dated future at `price`, one stated price (at most the
    /// tick's decimals, positive): the exchange's settlement index, e.g.
    /// the 30-minute TWAP of the underlying index before expiry, computed
    /// by the price service that also sends mark prices. Allowed once, at
    /// or after the expiry (leader time). The price is first applied as a
    /// mark price (with its liquidations), then every position closes at
    /// it (see the `expiry` module). Needs cluster version 2.
    32 => SettleFuture { market: String, price: Decimal }
    /// Creates an option market (see the `options` module): a European,
    /// cash-settled, linear call (`call`) or put on the mark price of the
    /// market `underlying` (its index `U`: a perpetual or dated future,
    /// whose settle asset the option settles in), struck at `strike` (a
    /// multiple of the underlying's tick), expiring at leader time
    /// `expiry_ms` (`ExerciseOption`), or never if `expiry_ms` is 0 (a
    /// perpetual option, paying funding every `funding_interval_ms` for
    /// the elapsed share of `funding_period_ms`). Premiums are multiples of
    /// `tick_size` (at least the underlying tick's decimals), sizes of
    /// `step_size`. Short margin per unit: IM = max(`im_rate`·U − OTM,
    /// `im_floor_rate`·U) + mark, MM = `mm_rate`·U + mark (a put's risk
    /// part capped at the strike), 0 < mm ≤ floor ≤ im < 1. A fill's fee
    /// is capped at `fee_cap_rate` of its premium (0: no cap); exercise
    /// charges `delivery_fee_rate` of the intrinsic value; liquidation
    /// charges `liquidation_fee_rate` of the premium value. Needs cluster
    /// version 2.
    33 => CreateOption {
        market: String,
        underlying: String,
        call: bool,
        strike: Decimal,
        expiry_ms: u64,
        tick_size: Decimal,
        step_size: Decimal,
        im_rate: Decimal,
        im_floor_rate: Decimal,
        mm_rate: Decimal,
        fee_cap_rate: Decimal,
        delivery_fee_rate: Decimal,
        liquidation_fee_rate: Decimal,
        funding_interval_ms: u64,
        funding_period_ms: u64,
    }
    /// Exercises an expiring option at `price`, the underlying's settlement
    /// price (one stated price, at most the underlying tick's decimals, as
    /// `SettleFuture`): in the money, every position settles at its
    /// intrinsic value (shorts pay longs `intrinsic × size`); out of the
    /// money it expires worthless. Once, at or after the expiry. Needs
    /// cluster version 2.
    34 => ExerciseOption { market: String, price: Decimal }
    /// One funding round of a perpetual option at its mark and the
    /// underlying's mark: every position pays `size × (mark − intrinsic)
    /// × elapsed / funding period` (longs pay shorts when the time value
    /// is positive, shorts pay longs when negative), rounded as perp
    /// funding, residue to the insurance fund. At most one round per
    /// `funding_time_ms`, a multiple of the funding interval, later than
    /// the previous one; `elapsed` is the time since the previous round
    /// (one interval for the first). Needs cluster version 2.
    35 => ApplyOptionFunding { market: String, funding_time_ms: u64 }
    /// One perpetual funding round (as `ApplyFunding`) at a rate the
    /// engine computes from the premium index (see the `funding_rate`
    /// module): P = the time-weighted average of `premium_samples` (oldest
    /// first, weights 1..n; 1..=`MAX_PREMIUM_SAMPLES` of them, rates of at
    /// most `RATE_SCALE` decimals), rate = P + clamp(`interest_rate` − P,
    /// −c, +c) with c the market's funding clamp (`SetFundingClamp`;
    /// Binance / Bybit), rounded half to even to `RATE_SCALE` decimals.
    /// Needs cluster version 2.
    36 => ApplyPremiumFunding {
        market: String,
        funding_time_ms: u64,
        premium_samples: Vec<Decimal>,
        interest_rate: Decimal,
    }
    /// Creates an inverse (coin-margined) perpetual (`expiry_ms` 0) or
    /// dated future (`expiry_ms` > 0, settled as `CreateDatedFuture`'s,
    /// with `delivery_fee_rate`; 0 for a perpetual) with the parameters of
    /// `market`: sizes are contracts of `contract_value` quote units each
    /// (a positive whole number, e.g. 100 USD), prices quote per base, and
    /// value, PnL, margin, fees and funding are in the settle asset (the
    /// base, e.g. BTC): a position of n contracts at price p is worth
    /// −n × CV / p (rounded half to even to a settle minor unit), so a long
    /// from e to p gains n × CV × (1/e − 1/p) (BitMEX, Binance COIN-M).
    /// Needs cluster version 2.
    37 => CreateInverseMarket {
        market: CreateMarketSpec,
        contract_value: Decimal,
        expiry_ms: u64,
        delivery_fee_rate: Decimal,
    }
    /// Sets an option's mark price as `SetMarkPrice` does (then liquidates
    /// as it does) together with its delta at that mark, as the exchange's
    /// pricer computed it (Deribit publishes both with every mark): a call's
    /// in [0, 1], a put's in [−1, 0], at most `RATE_SCALE` decimals. The
    /// delta makes the option's delta-equivalent exposure a number
    /// (`size × delta` of the underlying); a later `SetMarkPrice` of the
    /// option clears it. Needs cluster version 2.
    38 => SetOptionMark { market: String, price: Decimal, delta: Decimal }
    /// Sets a perpetual's (linear or inverse) funding clamp c for
    /// `ApplyPremiumFunding`: 0 ≤ c < 1, at most `RATE_SCALE` decimals
    /// (Binance: 0.0005 on most USDⓈ-M perpetuals). Needs cluster version 2.
    39 => SetFundingClamp { market: String, clamp_rate: Decimal }
}

/// Most premium-index samples one `ApplyPremiumFunding` takes: an 8-hour
/// interval sampled every 5 seconds (Binance).
pub const MAX_PREMIUM_SAMPLES: usize = 5_760;

/// The parameters of a `CreateMarket`, as `CreateDatedFuture` carries them.
pub type CreateMarketSpec = CreateMarket;

impl crate::wire::WireField for CreateMarket {
    fn put(&self, out: &mut Vec<u8>) {
        self.market.put(out);
        self.base.put(out);
        self.settle_asset.put(out);
        self.tick_size.put(out);
        self.step_size.put(out);
        self.max_leverage.put(out);
        self.brackets.put(out);
        self.liquidation_fee_rate.put(out);
        self.funding_interval_ms.put(out);
    }
    fn read(reader: &mut crate::wire::WireReader<'_>) -> Result<Self, crate::wire::WireError> {
        Ok(CreateMarket {
            market: String::read(reader)?,
            base: String::read(reader)?,
            settle_asset: String::read(reader)?,
            tick_size: Decimal::read(reader)?,
            step_size: Decimal::read(reader)?,
            max_leverage: u32::read(reader)?,
            brackets: Vec::<MarginBracket>::read(reader)?,
            liquidation_fee_rate: Decimal::read(reader)?,
            funding_interval_ms: u64::read(reader)?,
        })
    }
}

/// The fields of a `PerpFill`, as `PerpOrderFill` carries them.
pub type PerpFillSpec = PerpFill;

impl crate::wire::WireField for PerpFill {
    fn put(&self, out: &mut Vec<u8>) {
        self.market.put(out);
        self.buyer.put(out);
        self.seller.put(out);
        self.size.put(out);
        self.price.put(out);
        self.buyer_fee.put(out);
        self.seller_fee.put(out);
    }
    fn read(reader: &mut crate::wire::WireReader<'_>) -> Result<Self, crate::wire::WireError> {
        Ok(PerpFill {
            market: String::read(reader)?,
            buyer: AccountId::read(reader)?,
            seller: AccountId::read(reader)?,
            size: Decimal::read(reader)?,
            price: Decimal::read(reader)?,
            buyer_fee: Decimal::read(reader)?,
            seller_fee: Decimal::read(reader)?,
        })
    }
}

/// A fill side's fee: `amount` of `asset`. An empty `asset` means the asset
/// the side receives. A fee in the received asset is deducted from what it
/// receives (at most all of it); in the asset it pays, it is taken from its
/// hold after the trade's amount (the order locked it); in any other asset
/// (an exchange token) from its spot `available`. Not covered: the fill is
/// refused (`FeeNotCovered`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fee {
    pub asset: String,
    pub amount: Decimal,
}

impl crate::wire::WireField for Fee {
    fn put(&self, out: &mut Vec<u8>) {
        self.asset.put(out);
        self.amount.put(out);
    }
    fn read(reader: &mut crate::wire::WireReader<'_>) -> Result<Self, crate::wire::WireError> {
        Ok(Fee {
            asset: String::read(reader)?,
            amount: Decimal::read(reader)?,
        })
    }
}

impl crate::wire::WireField for Wallet {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
    }
    fn read(reader: &mut crate::wire::WireReader<'_>) -> Result<Self, crate::wire::WireError> {
        let tag = reader.u8()?;
        Wallet::from_tag(tag).ok_or(crate::wire::WireError::BadWallet(tag))
    }
}

/// One maintenance-margin tier of a market: from `notional_floor` (settle
/// asset) up to the next tier's floor, a position's maintenance margin is
/// `notional * maintenance_margin_rate - cum`, with the cumulative amount
/// `cum_n = floor_n * (mmr_n - mmr_(n-1)) + cum_(n-1)`, `cum_0 = 0`, which
/// keeps the margin continuous across tier boundaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarginBracket {
    pub notional_floor: Decimal,
    pub maintenance_margin_rate: Decimal,
    pub max_leverage: u32,
}

impl crate::wire::WireField for MarginBracket {
    fn put(&self, out: &mut Vec<u8>) {
        self.notional_floor.put(out);
        self.maintenance_margin_rate.put(out);
        self.max_leverage.put(out);
    }
    fn read(reader: &mut crate::wire::WireReader<'_>) -> Result<Self, crate::wire::WireError> {
        Ok(MarginBracket {
            notional_floor: Decimal::read(reader)?,
            maintenance_margin_rate: Decimal::read(reader)?,
            max_leverage: u32::read(reader)?,
        })
    }
}

/// A command with its idempotency key, as replicated (encoding: `wire`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub command_id: CommandId,
    pub command: Command,
}

/// Defines `RejectCode` from one list: each row gives the persisted tag
/// (the byte the dedup record stores; never reuse or renumber one), the
/// variant and its stable machine-readable name (the gRPC `tally-reason`).
macro_rules! define_reject_codes {
    ($( $(#[$meta:meta])* $tag:literal => $name:ident $text:literal )*) => {
        /// Why a command was refused. Machine-readable; stable names (see `as_str`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum RejectCode {
            $( $(#[$meta])* $name, )*
        }

        impl RejectCode {
            /// Every code, in tag order.
            pub const ALL: &'static [RejectCode] = &[$( RejectCode::$name, )*];

            /// Stable SCREAMING_SNAKE name, used as the machine-readable reason at the gRPC edge.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( RejectCode::$name => $text, )*
                }
            }

            /// The persisted tag of the code (dedup records).
            pub(crate) fn tag(self) -> u8 {
                match self {
                    $( RejectCode::$name => $tag, )*
                }
            }

            /// The code of a persisted tag.
            pub(crate) fn from_tag(tag: u8) -> Option<RejectCode> {
                match tag {
                    $( $tag => Some(RejectCode::$name), )*
                    _ => None,
                }
            }
        }
    };
}

define_reject_codes! {
    /// Command id empty, too long or not printable ASCII.
    0 => InvalidCommandId "INVALID_COMMAND_ID"
    /// The command id was already used for a different command.
    1 => CommandIdReused "COMMAND_ID_REUSED"
    /// Amount is zero or negative where a positive amount is required
    /// (fees may be zero, never negative).
    2 => InvalidAmount "INVALID_AMOUNT"
    /// Amount has more decimal places than the asset's scale.
    3 => BadPrecision "BAD_PRECISION"
    /// Amount, or a resulting balance, exceeds `MAX_UNITS`.
    4 => AmountTooLarge "AMOUNT_TOO_LARGE"
    /// Asset symbol malformed or scale above `MAX_ASSET_SCALE`.
    5 => InvalidAsset "INVALID_ASSET"
    6 => AssetExists "ASSET_EXISTS"
    7 => UnknownAsset "UNKNOWN_ASSET"
    /// Account id 0.
    8 => InvalidAccount "INVALID_ACCOUNT"
    9 => AccountExists "ACCOUNT_EXISTS"
    10 => UnknownAccount "UNKNOWN_ACCOUNT"
    11 => HoldExists "HOLD_EXISTS"
    12 => UnknownHold "UNKNOWN_HOLD"
    /// Not enough `available` for a withdraw, lock or transfer.
    13 => InsufficientFunds "INSUFFICIENT_FUNDS"
    /// A fill would take more from a hold than it has left.
    14 => HoldInsufficient "HOLD_INSUFFICIENT"
    /// The holds of a fill do not form a (quote, base) pair of different assets.
    15 => HoldAssetMismatch "HOLD_ASSET_MISMATCH"
    /// A fee exceeds what its payer receives.
    16 => FeeTooLarge "FEE_TOO_LARGE"
    /// Price zero or negative.
    17 => InvalidPrice "INVALID_PRICE"
    /// No market with that symbol.
    18 => UnknownMarket "UNKNOWN_MARKET"
    19 => MarketExists "MARKET_EXISTS"
    /// Market parameters malformed (symbol, tick, step, leverage, brackets, rates).
    20 => InvalidMarket "INVALID_MARKET"
    /// The market is paused (reduce-only) and the fill would open or grow a position.
    21 => MarketPaused "MARKET_PAUSED"
    /// A fill price that is not a multiple of the market's tick size.
    22 => PriceOffTick "PRICE_OFF_TICK"
    /// A fill size that is not a multiple of the market's step size.
    23 => SizeOffStep "SIZE_OFF_STEP"
    /// The market has no mark price yet (fills and funding need one).
    24 => NoMarkPrice "NO_MARK_PRICE"
    /// The fill would leave an account's equity below its initial margin
    /// (e.g. a position above its bracket's maximum leverage).
    25 => InsufficientMargin "INSUFFICIENT_MARGIN"
    /// A funding round for this market at this (or a later) funding time was
    /// already applied.
    26 => FundingAlreadyApplied "FUNDING_ALREADY_APPLIED"
    /// Funding time not a multiple of the market's funding interval.
    27 => InvalidFundingTime "INVALID_FUNDING_TIME"
    /// A rate outside its range (rates are in (-1, 1); margin rates in (0, 1)).
    28 => InvalidRate "INVALID_RATE"
    /// An idempotency window outside
    /// `MIN_DEDUP_WINDOW_MS..=MAX_DEDUP_WINDOW_MS`.
    29 => InvalidDedupWindow "INVALID_DEDUP_WINDOW"
    /// The idempotency table holds `MAX_DEDUP_ENTRIES` live command ids: a
    /// new command is refused (not remembered) until some expire or the
    /// window is shrunk.
    30 => DedupTableFull "DEDUP_TABLE_FULL"
    /// A transfer a sub-account rule forbids (sub to sub without the
    /// master's grant, a sub-account with an unrelated account).
    31 => TransferNotAllowed "TRANSFER_NOT_ALLOWED"
    /// The account may not withdraw (a sub-account not allowed to).
    32 => WithdrawNotAllowed "WITHDRAW_NOT_ALLOWED"
    /// More than the transferable amount out of a collateral wallet (its
    /// initial margin stays covered; unrealized profit never moves).
    33 => ExceedsTransferable "EXCEEDS_TRANSFERABLE"
    /// A parent that does not exist or is itself a sub-account.
    34 => InvalidParent "INVALID_PARENT"
    /// The account is not a sub-account of the named master.
    35 => NotSubAccount "NOT_SUB_ACCOUNT"
    /// A wallet that cannot serve here (funding as collateral, a transfer
    /// from a wallet to itself).
    36 => InvalidWallet "INVALID_WALLET"
    /// The bound on transfer grants of one account is reached.
    37 => TooManyGrants "TOO_MANY_GRANTS"
    /// No spot pair with that symbol.
    38 => UnknownPair "UNKNOWN_PAIR"
    39 => PairExists "PAIR_EXISTS"
    /// Pair parameters malformed (symbol, same asset twice, scales).
    40 => InvalidPair "INVALID_PAIR"
    /// A fill's holds do not hold its pair's quote (buy) and base (sell).
    41 => PairMismatch "PAIR_MISMATCH"
    /// A fill below its pair's minimum base amount.
    42 => BelowMinSize "BELOW_MIN_SIZE"
    /// A fee in the paid or a third asset that the payer cannot cover.
    43 => FeeNotCovered "FEE_NOT_COVERED"
    /// The account holds a position in the market (a margin mode changes
    /// only while flat).
    44 => PositionOpen "POSITION_OPEN"
    /// The account's position in the market is not isolated.
    45 => NotIsolated "NOT_ISOLATED"
    /// The command needs a newer cluster version than the active one (the
    /// upgrade is not finalized): not remembered, nothing changed.
    46 => FeatureNotActive "FEATURE_NOT_ACTIVE"
    /// `AssertBalance`: the balance is not the asserted one.
    47 => BalanceMismatch "BALANCE_MISMATCH"
    /// A fill in a dated future at or after its expiry, or a mark price
    /// for one already settled.
    48 => MarketExpired "MARKET_EXPIRED"
    /// The dated future was already settled.
    49 => AlreadySettled "ALREADY_SETTLED"
    /// Settlement of a dated future before its expiry time.
    50 => NotExpired "NOT_EXPIRED"
    /// A command for another kind of instrument (funding of a dated
    /// future, settlement of a perpetual).
    51 => WrongInstrument "WRONG_INSTRUMENT"
    /// An option strike that is not a positive multiple of the underlying's
    /// tick.
    52 => StrikeOffGrid "STRIKE_OFF_GRID"
    /// An option whose underlying index is not a perpetual or dated future
    /// market.
    53 => NoUnderlyingIndex "NO_UNDERLYING_INDEX"
    /// Premium-index samples: none, or more than `MAX_PREMIUM_SAMPLES`.
    54 => InvalidSamples "INVALID_SAMPLES"
    /// `ApplyPremiumFunding` on a market without a funding clamp
    /// (`SetFundingClamp` first).
    55 => FundingClampNotSet "FUNDING_CLAMP_NOT_SET"
    /// An option delta outside its kind's range (call [0, 1], put [−1, 0]).
    56 => InvalidDelta "INVALID_DELTA"
}

/// One balance movement caused by an applied command. `available` and
/// `locked` are the balances after the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceChange {
    pub owner: Owner,
    pub asset: String,
    pub available_delta: Decimal,
    pub locked_delta: Decimal,
    pub available: Decimal,
    pub locked: Decimal,
}

/// What an applied command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    AssetCreated {
        symbol: String,
        scale: u32,
    },
    AccountCreated {
        account: AccountId,
    },
    Balance(BalanceChange),
    /// A hold's state after the command (`remaining` zero and `closed` true
    /// once released or fully consumed).
    Hold {
        hold: HoldId,
        account: AccountId,
        asset: String,
        remaining: Decimal,
        closed: bool,
    },
    /// A settled trade, in the units the fill was given.
    Fill {
        buyer: AccountId,
        seller: AccountId,
        base_asset: String,
        quote_asset: String,
        base_amount: Decimal,
        quote_amount: Decimal,
        buyer_fee: Decimal,
        seller_fee: Decimal,
    },
    /// A perpetual market was created.
    MarketCreated {
        market: String,
        base: String,
        settle_asset: String,
    },
    /// A market was paused (reduce-only) or resumed.
    MarketPaused {
        market: String,
        paused: bool,
    },
    /// A market's new mark price and its (leader) time; an option's
    /// delta at it when stated (`SetOptionMark`).
    MarkPrice {
        market: String,
        price: Decimal,
        time_ms: u64,
        delta: Option<Decimal>,
    },
    /// A settled perpetual trade, in the units the fill was given (fees in
    /// the settle asset).
    PerpFill {
        market: String,
        buyer: AccountId,
        seller: AccountId,
        size: Decimal,
        price: Decimal,
        buyer_fee: Decimal,
        seller_fee: Decimal,
    },
    /// One holder's position changed. `holder` is a client account or the
    /// insurance fund (which takes over liquidated positions). `size_delta`
    /// is signed (+ bought, - sold); `price` the trade price (for
    /// liquidations and auto-deleveraging the bankruptcy price, rounded for
    /// display; for `Mark` the mark price); `size` and `entry_price` are
    /// after the change (0 when flat); `realized_pnl` was settled into the
    /// holder's settle-asset balance.
    Position {
        market: String,
        holder: Owner,
        counterparty: Owner,
        cause: PositionCause,
        size_delta: Decimal,
        price: Decimal,
        size: Decimal,
        entry_price: Decimal,
        realized_pnl: Decimal,
    },
    /// The market's PnL pool changed: the counter-entry of realized PnL
    /// (equal to minus the total cost basis of all open positions). `balance`
    /// is after the change.
    Pool {
        market: String,
        asset: String,
        delta: Decimal,
        balance: Decimal,
    },
    /// A funding round: `paid` is what payers paid (debits rounded away from
    /// zero), `received` what receivers got (credits rounded toward zero),
    /// `residue = paid - received` went to the insurance fund, and
    /// `uncollected` (debits a payer's balance could not cover) was paid by
    /// the insurance fund instead.
    Funding {
        market: String,
        rate: Decimal,
        funding_time_ms: u64,
        mark_price: Decimal,
        paid: Decimal,
        received: Decimal,
        residue: Decimal,
        uncollected: Decimal,
    },
    /// One holder's funding payment: positive received, negative paid.
    FundingPayment {
        market: String,
        holder: Owner,
        amount: Decimal,
    },
    /// An account (its positions settled in `asset`) is being liquidated:
    /// equity and maintenance margin at the mark prices, and the liquidation
    /// fee charged to it for the insurance fund.
    Liquidation {
        account: AccountId,
        asset: String,
        equity: Decimal,
        maintenance_margin: Decimal,
        fee: Decimal,
    },
    /// After a liquidation the insurance fund and auto-deleveraging could not
    /// absorb the whole loss: `account` is left with a negative `asset`
    /// balance of `-amount`.
    Shortfall {
        account: AccountId,
        asset: String,
        amount: Decimal,
    },
    /// A mark price's liquidation passes stopped at the per-command bound
    /// (`liquidation::MAX_LIQUIDATIONS_PER_COMMAND` /
    /// `MAX_LIQUIDATION_CHECKS_PER_COMMAND`) after `liquidated`
    /// liquidations and `checked` candidate checks: accounts below
    /// maintenance in `asset` may remain; the next mark price of a market
    /// settled in `asset` continues (re-send the current mark to drain).
    LiquidationsDeferred {
        asset: String,
        liquidated: u32,
        checked: u32,
    },
    /// The idempotency window is now `window_ms` (from the next command on).
    DedupWindowSet {
        window_ms: u64,
    },
    /// An account was opened with its settings (`parent` 0: top-level).
    AccountOpened {
        account: AccountId,
        parent: AccountId,
        collateral: Wallet,
        can_withdraw: bool,
        history: bool,
    },
    /// Withdrawals from `account` are now allowed or not.
    WithdrawAllowed {
        account: AccountId,
        allowed: bool,
    },
    /// The master granted (or revoked) transfers from sub-account `from`
    /// to sub-account `to`.
    TransferGrant {
        master: AccountId,
        from: AccountId,
        to: AccountId,
        allowed: bool,
    },
    /// The insurance fund of `asset` was topped up (`delta` > 0) or paid
    /// out (`delta` < 0) by command; `balance` is after the change.
    InsuranceFund {
        asset: String,
        delta: Decimal,
        balance: Decimal,
    },
    /// `amount` of `asset` was swept from the fee account to `account`'s
    /// `wallet`.
    FeesSwept {
        asset: String,
        account: AccountId,
        wallet: Wallet,
        amount: Decimal,
    },
    /// An isolated margin changed by `delta` to `margin` (`None`: the
    /// position is cross again).
    IsolatedMargin {
        market: String,
        account: AccountId,
        delta: Decimal,
        margin: Option<Decimal>,
    },
    /// A dated future was settled at `price` (leader time `time_ms`):
    /// `positions` positions closed, `realized` is the sum of their
    /// settlement PnL (what the PnL pool paid out) and `delivery_fees` went
    /// to `Fees`.
    Settlement {
        market: String,
        price: Decimal,
        time_ms: u64,
        positions: u64,
        realized: Decimal,
        delivery_fees: Decimal,
    },
    /// A perpetual option's funding round: `time_value` = mark −
    /// intrinsic (at the underlying's mark `underlying_price`) paid for
    /// `elapsed_ms` of `period_ms`; `paid`, `received`, `residue` and
    /// `uncollected` as for `Funding`.
    OptionFunding {
        market: String,
        funding_time_ms: u64,
        mark_price: Decimal,
        underlying_price: Decimal,
        time_value: Decimal,
        elapsed_ms: u64,
        period_ms: u64,
        paid: Decimal,
        received: Decimal,
        residue: Decimal,
        uncollected: Decimal,
    },
    /// A funding rate computed from the premium index (`ApplyPremiumFunding`):
    /// `samples` samples averaged to `premium_index`, the interest rate and
    /// clamp it was given, and the `rate` the round then applied (its
    /// `Funding` event follows).
    FundingRate {
        market: String,
        samples: u64,
        premium_index: Decimal,
        interest_rate: Decimal,
        clamp_rate: Decimal,
        rate: Decimal,
    },
    /// A spot pair was registered.
    PairCreated {
        pair: String,
        base: String,
        quote: String,
    },
    /// A settled trade of a pair: fees with the asset each side paid them
    /// in; `price_improvement` (quote) went back from the buy hold to the
    /// buyer's available.
    PairFill {
        pair: String,
        buyer: AccountId,
        seller: AccountId,
        base_amount: Decimal,
        quote_amount: Decimal,
        price: Decimal,
        buyer_fee_asset: String,
        buyer_fee: Decimal,
        seller_fee_asset: String,
        seller_fee: Decimal,
        price_improvement: Decimal,
    },
}

/// Why a position changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PositionCause {
    /// A perpetual fill.
    Fill,
    /// The liquidated account's position closed at its bankruptcy price.
    Liquidation,
    /// A profitable opposite position auto-deleveraged at the bankruptcy price.
    Deleverage,
    /// The insurance fund took over a liquidated position.
    Takeover,
    /// The insurance fund's inventory marked to the mark price.
    Mark,
    /// A dated future's position closed at its settlement price.
    Settlement,
}

impl PositionCause {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PositionCause::Fill => "fill",
            PositionCause::Liquidation => "liquidation",
            PositionCause::Deleverage => "deleverage",
            PositionCause::Takeover => "takeover",
            PositionCause::Mark => "mark",
            PositionCause::Settlement => "settlement",
        }
    }
}

/// The result of applying one envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Applied { events: Vec<Event> },
    Rejected(Rejection),
}

/// `Ledger::apply`'s answer: the outcome, and whether it answers a retry of
/// an earlier command with the same id (`duplicate`: nothing changed).
///
/// A retry gets the remembered verdict only: `Applied { events: vec![] }`
/// for an applied command — its events were delivered once, with the first
/// reply, and are not stored — or the identical `Rejection` (code and
/// detail, hence the same message) for a rejected one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    pub outcome: Outcome,
    pub duplicate: bool,
}
