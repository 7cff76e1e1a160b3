//! Rejections as replicated data: a [`RejectCode`] plus a typed
//! [`RejectDetail`] (ids, symbols, exact amounts, field names), never prose.
//!
//! The dedup table remembers a rejected command's `Rejection` and the state
//! hash covers it (see the `records` module), so what it holds is part of the
//! replicated format. Holding only typed values keeps that format
//! independent of wording: the human message is rendered from the detail by
//! a pure function ([`Rejection::message`], or `Display`), called at the edge
//! (the gRPC conversion) and never stored. Rewording a message changes no
//! record, no state hash and no replica.
//!
//! Each detail is defined once, by `define_reject_details!` below, with its
//! persisted tag, typed fields, reject code and message template, so the
//! encoding, the code and the wording of a detail cannot drift apart. Tags
//! are part of the record format: never reuse or renumber one; add details
//! with new tags. Decimals keep the exact value the engine saw or computed
//! (its scale included: `0.50000000` renders as written), and every string
//! is at most [`MAX_DETAIL_TEXT_CHARS`] characters (inputs are shown
//! truncated, as the messages always did).

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::codec::{Reader, Sink};
use crate::command::{
    AccountId, HoldId, MAX_ASSET_SCALE, MAX_DEDUP_WINDOW_MS, MAX_LEVERAGE, MAX_MARGIN_BRACKETS,
    MAX_MARKETS, MAX_PAIRS, MAX_PREMIUM_SAMPLES, MIN_DEDUP_WINDOW_MS, Owner, RATE_SCALE,
    RejectCode, Wallet,
};

/// Longest string (in characters) a detail holds: a command id shown in an
/// `InvalidCommandId` rejection. Symbols and other inputs are shown with at
/// most 40.
pub const MAX_DETAIL_TEXT_CHARS: usize = 80;

/// How much of a malformed or unknown symbol a rejection shows.
pub(crate) const SHOWN_SYMBOL_CHARS: usize = 40;

const _: () = assert!(SHOWN_SYMBOL_CHARS <= MAX_DETAIL_TEXT_CHARS);
const _: () = assert!(crate::command::MAX_COMMAND_ID_BYTES <= MAX_DETAIL_TEXT_CHARS);

/// The first `max` characters of `text`, as a rejection shows an input.
pub(crate) fn shown(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A definite refusal: the command changed nothing. `code` is the
/// machine-readable reason (`RejectCode::as_str` at the edge), `detail` the
/// typed facts behind it; `message()` renders them for humans. Both are
/// remembered (a retry gets an identical rejection, also after a rebuild
/// from records); the message is not.
///
/// Engine-built rejections always have `code == detail.code()`
/// ([`Rejection::new`]); `from_records` refuses a record where they differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: RejectCode,
    pub detail: RejectDetail,
}

impl Rejection {
    /// The rejection with `detail` and the code it implies.
    pub fn new(detail: RejectDetail) -> Rejection {
        Rejection {
            code: detail.code(),
            detail,
        }
    }

    /// The human-readable message, e.g. "account 7 has 1.5 BTC available,
    /// needs 2": rendered from the detail, never stored.
    pub fn message(&self) -> String {
        self.detail.to_string()
    }
}

impl From<RejectDetail> for Rejection {
    fn from(detail: RejectDetail) -> Rejection {
        Rejection::new(detail)
    }
}

/// Renders the message (not the code), like [`Rejection::message`].
impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.detail.fmt(f)
    }
}

/// Which field of a command a detail is about. Persisted by its tag
/// (declaration order); renders as its name in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Field {
    Amount,
    BaseAmount,
    BuyerFee,
    SellerFee,
    Price,
    MarkPrice,
    Size,
    FundingRate,
    MaintenanceMarginRate,
    LiquidationFeeRate,
    BracketNotionalFloor,
    BuyerLimitPrice,
    MinBaseAmount,
    Fee,
    DeliveryFeeRate,
    SettlementPrice,
    Strike,
    OptionMarginRate,
    FeeCapRate,
    PremiumIndex,
    InterestRate,
    ClampRate,
    Delta,
}

const ALL_FIELDS: [Field; 23] = [
    Field::Amount,
    Field::BaseAmount,
    Field::BuyerFee,
    Field::SellerFee,
    Field::Price,
    Field::MarkPrice,
    Field::Size,
    Field::FundingRate,
    Field::MaintenanceMarginRate,
    Field::LiquidationFeeRate,
    Field::BracketNotionalFloor,
    Field::BuyerLimitPrice,
    Field::MinBaseAmount,
    Field::Fee,
    Field::DeliveryFeeRate,
    Field::SettlementPrice,
    Field::Strike,
    Field::OptionMarginRate,
    Field::FeeCapRate,
    Field::PremiumIndex,
    Field::InterestRate,
    Field::ClampRate,
    Field::Delta,
];

impl Field {
    /// The field's name as messages show it ("base amount").
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Amount => "amount",
            Field::BaseAmount => "base amount",
            Field::BuyerFee => "buyer fee",
            Field::SellerFee => "seller fee",
            Field::Price => "price",
            Field::MarkPrice => "mark price",
            Field::Size => "size",
            Field::FundingRate => "funding rate",
            Field::MaintenanceMarginRate => "maintenance margin rate",
            Field::LiquidationFeeRate => "liquidation fee rate",
            Field::BracketNotionalFloor => "bracket notional floor",
            Field::BuyerLimitPrice => "buyer limit price",
            Field::MinBaseAmount => "min base amount",
            Field::Fee => "fee",
            Field::DeliveryFeeRate => "delivery fee rate",
            Field::SettlementPrice => "settlement price",
            Field::Strike => "strike",
            Field::OptionMarginRate => "option margin rate",
            Field::FeeCapRate => "fee cap rate",
            Field::PremiumIndex => "premium index",
            Field::InterestRate => "interest rate",
            Field::ClampRate => "clamp rate",
            Field::Delta => "delta",
        }
    }

    /// True for the price fields (a non-positive one is `InvalidPrice`).
    pub fn is_price(self) -> bool {
        matches!(
            self,
            Field::Price | Field::MarkPrice | Field::SettlementPrice | Field::Strike
        )
    }

    fn tag(self) -> u8 {
        // Exhaustive: a new field cannot be forgotten here.
        match self {
            Field::Amount => 0,
            Field::BaseAmount => 1,
            Field::BuyerFee => 2,
            Field::SellerFee => 3,
            Field::Price => 4,
            Field::MarkPrice => 5,
            Field::Size => 6,
            Field::FundingRate => 7,
            Field::MaintenanceMarginRate => 8,
            Field::LiquidationFeeRate => 9,
            Field::BracketNotionalFloor => 10,
            Field::BuyerLimitPrice => 11,
            Field::MinBaseAmount => 12,
            Field::Fee => 13,
            Field::DeliveryFeeRate => 14,
            Field::SettlementPrice => 15,
            Field::Strike => 16,
            Field::OptionMarginRate => 17,
            Field::FeeCapRate => 18,
            Field::PremiumIndex => 19,
            Field::InterestRate => 20,
            Field::ClampRate => 21,
            Field::Delta => 22,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The side of a spot fill a hold is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    Buy,
    Sell,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        })
    }
}

/// A detail field type with a strict record encoding (see the `records`
/// module: integers big-endian, strings length-prefixed).
pub(crate) trait DetailField: Sized {
    fn put(&self, sink: &mut impl Sink);
    fn read(reader: &mut Reader<'_>) -> Result<Self, String>;
}

impl DetailField for u32 {
    fn put(&self, sink: &mut impl Sink) {
        sink.put_u32(*self);
    }
    fn read(reader: &mut Reader<'_>) -> Result<Self, String> {
        reader.u32()
    }
}

impl DetailField for u64 {
    fn put(&self, sink: &mut impl Sink) {
        sink.put_u64(*self);
    }
    fn read(reader: &mut Reader<'_>) -> Result<Self, String> {
        reader.u64()
    }
}

/// `u32` byte length, then UTF-8 of at most `MAX_DETAIL_TEXT_CHARS` chars.
impl DetailField for String {
    fn put(&self, sink: &mut impl Sink) {
        sink.put_str(self);
    }
    fn read(reader: &mut Reader<'_>) -> Result<Self, String> {
        let text = reader.string()?;
        if text.chars().count() > MAX_DETAIL_TEXT_CHARS {
            return Err(format!(
                "rejection text longer than {MAX_DETAIL_TEXT_CHARS} characters"
            ));
        }
        Ok(text)
    }
}

/// The exact decimal: `u8` sign (1 negative), `u8` scale (0..=28), `u128`
/// magnitude of the mantissa (below 2^96). Unlike the canonical command
/// encoding it keeps the scale, so a value renders as it did.
impl DetailField for Decimal {
    fn put(&self, sink: &mut impl Sink) {
        sink.put_u8(u8::from(self.is_sign_negative()));
        // A Decimal's scale is 0..=28.
        sink.put_u8(self.scale() as u8);
        sink.put(&self.mantissa().unsigned_abs().to_be_bytes());
    }
    fn read(reader: &mut Reader<'_>) -> Result<Self, String> {
        let negative = reader.bool()?;
        let scale = reader.u8()?;
        let magnitude = reader.u128()?;
        if u32::from(scale) > Decimal::MAX_SCALE || magnitude >> 96 != 0 {
            return Err(format!("bad decimal {magnitude}e-{scale}"));
        }
        let mut value = Decimal::from_parts(
            magnitude as u32,
            (magnitude >> 32) as u32,
            (magnitude >> 64) as u32,
            false,
            u32::from(scale),
        );
        value.set_sign_negative(negative);
        Ok(value)
    }
}

impl DetailField for Field {
    fn put(&self, sink: &mut impl Sink) {
        sink.put_u8(self.tag());
    }
    fn read(reader: &mut Reader<'_>) -> Result<Self, String> {
        let tag = reader.u8()?;
        ALL_FIELDS
            .get(usize::from(tag))
            .copied()
            .ok_or_else(|| format!("unknown rejection field {tag}"))
    }
}

impl DetailField for Side {
    fn put(&self, sink: &mut impl Sink) {
        sink.put_u8(match self {
            Side::Buy => 0,
            Side::Sell => 1,
        });
    }
    fn read(reader: &mut Reader<'_>) -> Result<Self, String> {
        match reader.u8()? {
            0 => Ok(Side::Buy),
            1 => Ok(Side::Sell),
            other => Err(format!("unknown side {other}")),
        }
    }
}

impl DetailField for Wallet {
    fn put(&self, sink: &mut impl Sink) {
        sink.put_u8(self.tag());
    }
    fn read(reader: &mut Reader<'_>) -> Result<Self, String> {
        let tag = reader.u8()?;
        Wallet::from_tag(tag).ok_or_else(|| format!("unknown wallet {tag}"))
    }
}

impl DetailField for Owner {
    fn put(&self, sink: &mut impl Sink) {
        sink.put_owner(*self);
    }
    fn read(reader: &mut Reader<'_>) -> Result<Self, String> {
        reader.owner()
    }
}

/// Defines `RejectDetail` from one list: per detail its persisted tag,
/// typed fields, reject code (an expression over the fields) and message
/// template (a format string over the fields and constants in scope).
macro_rules! define_reject_details {
    (
        $(
            $(#[$meta:meta])*
            $tag:literal => $name:ident $({ $($field:ident : $ty:ty),* $(,)? })?
                => $code:expr, $message:literal;
        )*
    ) => {
        /// The typed facts behind a rejection: what the message is rendered
        /// from (`Display`), and what the dedup table remembers and the
        /// records persist (`u8` tag, then the fields in order). Variants
        /// document their message template.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum RejectDetail {
            $(
                $(#[$meta])*
                #[doc = concat!("\n\nMessage: `", $message, "`.")]
                $name $({ $($field: $ty),* })?,
            )*
        }

        impl RejectDetail {
            /// The reject code this detail explains.
            #[allow(unused_variables)]
            pub fn code(&self) -> RejectCode {
                match self {
                    $( RejectDetail::$name $({ $($field),* })? => $code, )*
                }
            }

            /// Appends the record encoding: tag, then the fields in order.
            pub(crate) fn put(&self, sink: &mut impl Sink) {
                match self {
                    $(
                        RejectDetail::$name $({ $($field),* })? => {
                            sink.put_u8($tag);
                            $($( DetailField::put($field, sink); )*)?
                        }
                    )*
                }
            }

            /// Reads a detail written by [`RejectDetail::put`]; strict.
            pub(crate) fn read(reader: &mut Reader<'_>) -> Result<RejectDetail, String> {
                match reader.u8()? {
                    $(
                        $tag => Ok(RejectDetail::$name $({
                            $( $field: DetailField::read(reader)?, )*
                        })?),
                    )*
                    tag => Err(format!("unknown rejection detail {tag}")),
                }
            }
        }

        /// Every detail tag, in declaration order (tests check they are
        /// `0..n` and that the test list covers each).
        #[cfg(test)]
        const DETAIL_TAGS: &[u8] = &[$($tag),*];

        impl fmt::Display for RejectDetail {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( RejectDetail::$name $({ $($field),* })? => write!(f, $message), )*
                }
            }
        }
    };
}

define_reject_details! {
    // ----- command ids (never remembered: the engine does not store them) --
    /// The command id is empty, too long or not printable ASCII (`id`: its
    /// first `MAX_DETAIL_TEXT_CHARS` characters).
    0 => MalformedCommandId { id: String }
        => RejectCode::InvalidCommandId,
        "command id {id:?} must be 1..=64 bytes of printable ASCII";
    1 => CommandIdReused { id: String }
        => RejectCode::CommandIdReused,
        "command id {id:?} was already used for a different command";
    2 => DedupWindowOutOfRange { window_ms: u64 }
        => RejectCode::InvalidDedupWindow,
        "dedup window {window_ms} ms outside {MIN_DEDUP_WINDOW_MS}..={MAX_DEDUP_WINDOW_MS} ms \
         (1 s to 7 days)";

    // ----- assets and accounts ----------------------------------------------
    /// `symbol`: the first `SHOWN_SYMBOL_CHARS` characters of the input.
    3 => MalformedAssetSymbol { symbol: String }
        => RejectCode::InvalidAsset,
        "asset symbol {symbol:?} must be 1..=16 of A-Z 0-9 _ -";
    4 => AssetScaleTooLarge { asset: String, scale: u32 }
        => RejectCode::InvalidAsset,
        "asset {asset} scale {scale} above {MAX_ASSET_SCALE}";
    5 => AssetExists { asset: String }
        => RejectCode::AssetExists,
        "asset {asset} exists";
    6 => TooManyAssets
        => RejectCode::InvalidAsset,
        "too many assets";
    /// `asset`: the first `SHOWN_SYMBOL_CHARS` characters of the input.
    7 => UnknownAsset { asset: String }
        => RejectCode::UnknownAsset,
        "asset {asset:?} unknown";
    8 => ReservedAccount
        => RejectCode::InvalidAccount,
        "account id 0 is reserved";
    9 => AccountExists { account: AccountId }
        => RejectCode::AccountExists,
        "account {account} exists";
    10 => UnknownAccount { account: AccountId }
        => RejectCode::UnknownAccount,
        "account {account} unknown";

    // ----- holds -------------------------------------------------------------
    11 => HoldExists { hold: HoldId }
        => RejectCode::HoldExists,
        "hold {hold} exists";
    12 => HoldNotOpen { hold: HoldId }
        => RejectCode::UnknownHold,
        "hold {hold} is not open";
    13 => FillHoldNotOpen { side: Side, hold: HoldId }
        => RejectCode::UnknownHold,
        "{side} hold {hold} is not open";
    14 => HoldsSameAsset { buy_hold: HoldId, sell_hold: HoldId, asset: String }
        => RejectCode::HoldAssetMismatch,
        "buy hold {buy_hold} and sell hold {sell_hold} both hold {asset}";
    15 => HoldShort { side: Side, hold: HoldId, remaining: Decimal, asset: String, taken: Decimal }
        => RejectCode::HoldInsufficient,
        "{side} hold {hold} has {remaining} {asset} left, the fill takes {taken}";

    // ----- amounts -----------------------------------------------------------
    /// Zero or negative where a positive value is required (a price:
    /// `InvalidPrice`, anything else `InvalidAmount`).
    16 => NotPositive { field: Field, value: Decimal }
        => if field.is_price() { RejectCode::InvalidPrice } else { RejectCode::InvalidAmount },
        "{field} {value} must be positive";
    17 => Negative { field: Field, value: Decimal }
        => RejectCode::InvalidAmount,
        "{field} {value} must not be negative";
    18 => TooPrecise { field: Field, value: Decimal, scale: u32, asset: String }
        => RejectCode::BadPrecision,
        "{field} {value} has more than {scale} decimals ({asset})";
    19 => TooLarge { field: Field, value: Decimal, asset: String }
        => RejectCode::AmountTooLarge,
        "{field} {value} {asset} exceeds the largest amount";
    20 => QuoteNotWhole {
            base_amount: Decimal,
            base: String,
            price: Decimal,
            quote: String,
            quote_scale: u32,
        }
        => RejectCode::BadPrecision,
        "{base_amount} {base} at {price} is not a whole number of {quote} minor units \
         (scale {quote_scale})";
    /// `amount * price` (a spot quote or a perp notional) is too large.
    21 => NotionalTooLarge { amount: Decimal, price: Decimal }
        => RejectCode::AmountTooLarge,
        "{amount} at {price} exceeds the largest amount";
    22 => FeeExceedsReceived { field: Field, fee: Decimal, received: Decimal }
        => RejectCode::FeeTooLarge,
        "{field} {fee} exceeds the {received} received";
    23 => AvailableShort { account: AccountId, available: Decimal, asset: String, needed: Decimal }
        => RejectCode::InsufficientFunds,
        "account {account} has {available} {asset} available, needs {needed}";
    24 => WouldGoNegative { owner: Owner, asset: String }
        => RejectCode::InsufficientFunds,
        "{owner} would have negative {asset} available";
    25 => BalanceTooLarge { owner: Owner, asset: String }
        => RejectCode::AmountTooLarge,
        "{owner} {asset} balance would exceed the largest amount";
    26 => Overflow
        => RejectCode::AmountTooLarge,
        "an amount in this command would exceed the largest representable value";
    27 => LiquidationOverflow
        => RejectCode::AmountTooLarge,
        "a liquidation amount would exceed the largest representable value";
    /// A value (price or size) whose magnitude is too large.
    28 => ValueTooLarge { field: Field, value: Decimal }
        => RejectCode::AmountTooLarge,
        "{field} {value} exceeds the largest amount";

    // ----- rates -------------------------------------------------------------
    29 => RateTooPrecise { field: Field, rate: Decimal }
        => RejectCode::BadPrecision,
        "{field} {rate} has more than {RATE_SCALE} decimals";
    30 => RateTooLarge { field: Field, rate: Decimal }
        => RejectCode::InvalidRate,
        "{field} {rate} too large";
    31 => MarginRateOutOfRange { bracket: u32, rate: Decimal }
        => RejectCode::InvalidRate,
        "bracket {bracket}: maintenance margin rate {rate} must be in (0, 1)";
    32 => LiquidationFeeRateOutOfRange { rate: Decimal }
        => RejectCode::InvalidRate,
        "liquidation fee rate {rate} must be in [0, 1)";
    33 => FundingRateOutOfRange { rate: Decimal }
        => RejectCode::InvalidRate,
        "funding rate {rate} must be in (-1, 1)";

    // ----- market parameters -------------------------------------------------
    /// `market`: the first `SHOWN_SYMBOL_CHARS` characters of the input.
    34 => UnknownMarket { market: String }
        => RejectCode::UnknownMarket,
        "market {market:?} unknown";
    /// `market`: the first `SHOWN_SYMBOL_CHARS` characters of the input.
    35 => MalformedMarketSymbol { market: String }
        => RejectCode::InvalidMarket,
        "market symbol {market:?} must be 1..=32 of A-Z 0-9 _ -";
    /// `base`: the first `SHOWN_SYMBOL_CHARS` characters of the input.
    36 => MalformedBaseSymbol { base: String }
        => RejectCode::InvalidMarket,
        "base {base:?} must be 1..=16 of A-Z 0-9 _ -";
    37 => MarketExists { market: String }
        => RejectCode::MarketExists,
        "market {market} exists";
    38 => MarketLimit
        => RejectCode::InvalidMarket,
        "at most {MAX_MARKETS} markets";
    39 => GridNotPositive { tick_size: Decimal, step_size: Decimal }
        => RejectCode::InvalidMarket,
        "tick size {tick_size} and step size {step_size} must be positive";
    40 => GridTooFine {
            tick_size: Decimal,
            price_scale: u32,
            step_size: Decimal,
            size_scale: u32,
            settle: String,
            settle_scale: u32,
        }
        => RejectCode::InvalidMarket,
        "tick size {tick_size} ({price_scale} decimals) and step size {step_size} \
         ({size_scale} decimals) together exceed the {settle} scale {settle_scale}: fill \
         notionals would not be whole minor units";
    41 => MaxLeverageOutOfRange { leverage: u32 }
        => RejectCode::InvalidMarket,
        "max leverage {leverage} must be 1..={MAX_LEVERAGE}";
    42 => BracketCount { count: u64 }
        => RejectCode::InvalidMarket,
        "a market needs 1..={MAX_MARGIN_BRACKETS} margin brackets, got {count}";
    43 => BracketLeverageOutOfRange { bracket: u32, leverage: u32 }
        => RejectCode::InvalidMarket,
        "bracket {bracket}: max leverage {leverage} must be 1..={MAX_LEVERAGE}";
    44 => MarginRateNotBelowInitial { bracket: u32, rate: Decimal, leverage: u32 }
        => RejectCode::InvalidMarket,
        "bracket {bracket}: maintenance margin rate {rate} is not below the initial margin \
         rate 1/{leverage}";
    45 => FirstFloorNotZero { floor: Decimal }
        => RejectCode::InvalidMarket,
        "the first bracket's notional floor must be 0, got {floor}";
    46 => BracketsOutOfOrder { bracket: u32 }
        => RejectCode::InvalidMarket,
        "bracket {bracket}: floors must increase, rates must not decrease and leverages must \
         not increase";
    47 => ZeroFundingInterval
        => RejectCode::InvalidMarket,
        "funding interval must be at least 1 ms";
    48 => TooManyMarkets
        => RejectCode::InvalidMarket,
        "too many markets";

    // ----- perpetual commands ------------------------------------------------
    /// A fill price off the tick (`PriceOffTick`) or size off the step
    /// (`SizeOffStep`).
    49 => OffGrid { field: Field, value: Decimal, grid: Decimal }
        => if matches!(field, Field::Size) { RejectCode::SizeOffStep } else { RejectCode::PriceOffTick },
        "{field} {value} is not a multiple of {grid}";
    50 => MarkTooPrecise { price: Decimal, scale: u32 }
        => RejectCode::BadPrecision,
        "mark price {price} has more than the tick's {scale} decimals";
    51 => MarkNotionalTooLarge { price: Decimal }
        => RejectCode::AmountTooLarge,
        "at mark price {price} a position's notional exceeds the largest amount";
    52 => FundingTimeOffInterval { funding_time_ms: u64, interval_ms: u64 }
        => RejectCode::InvalidFundingTime,
        "funding time {funding_time_ms} is not a multiple of the funding interval \
         {interval_ms} ms";
    53 => AlreadyFunded { market: String, last_ms: u64, funding_time_ms: u64 }
        => RejectCode::FundingAlreadyApplied,
        "market {market} already funded at {last_ms} (funding time {funding_time_ms} is not \
         later)";
    54 => NoMarkPrice { market: String }
        => RejectCode::NoMarkPrice,
        "market {market} has no mark price";
    55 => NoMarkPriceYet { market: String }
        => RejectCode::NoMarkPrice,
        "market {market} has no mark price yet";
    56 => SelfTrade { account: AccountId }
        => RejectCode::InvalidAccount,
        "buyer and seller of a perp fill must differ (both {account})";
    57 => PausedIncrease { market: String, account: AccountId }
        => RejectCode::MarketPaused,
        "market {market} is paused (reduce-only): the fill would open or increase account \
         {account}'s position";
    58 => PnlFundsShort {
            account: AccountId,
            available: Decimal,
            asset: String,
            realized: Decimal,
            fee: Decimal,
            after: Decimal,
        }
        => RejectCode::InsufficientFunds,
        "account {account} has {available} {asset} available; realized PnL {realized} and fee \
         {fee} would make it {after}";
    59 => MarginShort { account: AccountId, equity: Decimal, asset: String, initial: Decimal }
        => RejectCode::InsufficientMargin,
        "account {account}: equity {equity} {asset} would be below the initial margin \
         {initial} (Σ notional / leverage at the mark prices)";

    // ----- the idempotency table (never remembered) --------------------------
    60 => DedupTableFull { entries: u64, window_ms: u64 }
        => RejectCode::DedupTableFull,
        "the idempotency table is full ({entries} command ids remembered within the \
         {window_ms} ms window): retry later, or shrink the window (set-dedup-window)";

    // ----- account model: sub-accounts, wallets, transfers ------------------
    61 => UnknownParent { parent: AccountId }
        => RejectCode::InvalidParent,
        "parent account {parent} does not exist";
    62 => ParentNotTopLevel { parent: AccountId }
        => RejectCode::InvalidParent,
        "account {parent} is a sub-account: a master must be a top-level account";
    63 => CollateralWalletInvalid { wallet: Wallet }
        => RejectCode::InvalidWallet,
        "the {wallet} wallet cannot be a collateral wallet (spot or margin)";
    64 => TransferToItself { owner: Owner }
        => RejectCode::InvalidWallet,
        "a transfer from {owner} to itself";
    65 => NotSubAccountOf { master: AccountId, account: AccountId }
        => RejectCode::NotSubAccount,
        "account {account} is not a sub-account of account {master}";
    66 => SubToSubWithoutGrant { from: AccountId, to: AccountId, master: AccountId }
        => RejectCode::TransferNotAllowed,
        "sub-account {from} may not transfer to sub-account {to}: their master, account \
         {master}, has not granted it";
    67 => OutsideFamily { from: AccountId, to: AccountId }
        => RejectCode::TransferNotAllowed,
        "account {from} and account {to} are not master and sub-account (a sub-account \
         transfers only with its master, or to a sibling its master granted)";
    68 => WithdrawForbidden { account: AccountId }
        => RejectCode::WithdrawNotAllowed,
        "account {account} may not withdraw";
    69 => AboveTransferable { owner: Owner, asset: String, amount: Decimal, transferable: Decimal }
        => RejectCode::ExceedsTransferable,
        "{owner} can transfer at most {transferable} {asset}, not {amount} (initial margin \
         stays covered; unrealized profit is not transferable)";
    70 => LockedNotTransferable {
            owner: Owner,
            available: Decimal,
            locked: Decimal,
            asset: String,
            amount: Decimal,
        }
        => RejectCode::InsufficientFunds,
        "{owner} has {available} {asset} available, needs {amount}: its {locked} locked is \
         never transferable";
    71 => GrantToItself { account: AccountId }
        => RejectCode::TransferNotAllowed,
        "a transfer grant from account {account} to itself";
    72 => GrantLimit { account: AccountId, max: u32 }
        => RejectCode::TooManyGrants,
        "account {account} already has {max} transfer grants";
    73 => OwnerShort { owner: Owner, available: Decimal, asset: String, needed: Decimal }
        => RejectCode::InsufficientFunds,
        "{owner} holds {available} {asset}, needs {needed}";

    // ----- spot pairs ----------------------------------------------------------
    /// `pair`: the first `SHOWN_SYMBOL_CHARS` characters of the input.
    74 => MalformedPairSymbol { pair: String }
        => RejectCode::InvalidPair,
        "pair symbol {pair:?} must be 1..=32 of A-Z 0-9 _ -";
    75 => PairExists { pair: String }
        => RejectCode::PairExists,
        "pair {pair} exists";
    /// `pair`: the first `SHOWN_SYMBOL_CHARS` characters of the input.
    76 => UnknownPair { pair: String }
        => RejectCode::UnknownPair,
        "pair {pair:?} unknown";
    77 => PairSameAsset { asset: String }
        => RejectCode::InvalidPair,
        "a pair needs two different assets, not {asset} twice";
    78 => PairSizeScale { size_scale: u32, base_scale: u32 }
        => RejectCode::InvalidPair,
        "size scale {size_scale} exceeds the base asset's scale {base_scale}";
    79 => PairPriceScale { price_scale: u32 }
        => RejectCode::InvalidPair,
        "price scale {price_scale} above {MAX_ASSET_SCALE}";
    80 => PairHoldMismatch { pair: String, side: Side, hold: HoldId, asset: String, expected: String }
        => RejectCode::PairMismatch,
        "{side} hold {hold} holds {asset}, but the {side} side of {pair} locks {expected}";
    81 => UnderMinSize { pair: String, base_amount: Decimal, min: Decimal }
        => RejectCode::BelowMinSize,
        "base amount {base_amount} is below pair {pair}'s minimum {min}";
    82 => PairTooPrecise { field: Field, value: Decimal, scale: u32, pair: String }
        => RejectCode::BadPrecision,
        "{field} {value} has more than the {scale} decimals pair {pair} allows";
    83 => FeeUncovered { side: Side, fee: Decimal, asset: String, has: Decimal }
        => RejectCode::FeeNotCovered,
        "the {side} fee {fee} {asset} is not covered: {has} {asset} left for it";
    84 => LimitBelowPrice { limit: Decimal, price: Decimal }
        => RejectCode::InvalidPrice,
        "buyer limit price {limit} is below the fill price {price}";
    85 => ReleaseAboveRemaining { hold: HoldId, amount: Decimal, remaining: Decimal }
        => RejectCode::HoldInsufficient,
        "hold {hold} has {remaining} left, cannot release {amount}";
    86 => PairLimit
        => RejectCode::InvalidPair,
        "too many pairs (at most {MAX_PAIRS})";

    // ----- isolated margin -----------------------------------------------------
    87 => PositionOpen { account: AccountId, market: String }
        => RejectCode::PositionOpen,
        "account {account} holds a position in {market}: its margin mode changes only while flat";
    88 => NotIsolated { account: AccountId, market: String }
        => RejectCode::NotIsolated,
        "account {account}'s position in {market} is not isolated";
    89 => IsolatedMarginShort {
            account: AccountId,
            market: String,
            margin: Decimal,
            delta: Decimal,
            movable: Decimal,
        }
        => RejectCode::InsufficientMargin,
        "account {account} {market} isolated margin {margin}: cannot move {delta}, at most \
         {movable} (margin + UPNL stays at or above the initial margin)";

    // ----- open-order margin ------------------------------------------------
    90 => HoldNotSpot { side: Side, hold: HoldId }
        => RejectCode::HoldAssetMismatch,
        "{side} hold {hold} locks open-order margin, not a spot order's funds";
    91 => HoldWalletInvalid { wallet: Wallet }
        => RejectCode::InvalidWallet,
        "holds lock funds in the spot or margin wallet, not the {wallet} wallet";
    92 => OrderHoldMismatch { side: Side, hold: HoldId }
        => RejectCode::HoldAssetMismatch,
        "{side} hold {hold} is not that side's open-order margin in the market's settle asset";
    // ----- cluster versions (the `version` module) ---------------------------
    /// Never remembered: a retry after finalization applies.
    93 => FeatureNotActive { command: String, needed: u32, active: u32 }
        => RejectCode::FeatureNotActive,
        "{command} needs cluster version {needed}; the cluster runs at version {active} \
         (finish the upgrade with `tallyctl cluster finalize` first)";
    94 => BalanceMismatch { account: AccountId, asset: String, available: Decimal, locked: Decimal }
        => RejectCode::BalanceMismatch,
        "account {account} has {available} {asset} available and {locked} locked, not the \
         asserted amounts";

    // ----- dated futures (the `expiry` module) -------------------------------
    95 => FillAfterExpiry { market: String, expiry_ms: u64, now_ms: u64 }
        => RejectCode::MarketExpired,
        "{market} expired at {expiry_ms} ms (now {now_ms} ms): no more fills";
    96 => MarketSettled { market: String, price: Decimal }
        => RejectCode::MarketExpired,
        "{market} was settled at {price}: it takes no more fills or mark prices";
    97 => FutureAlreadySettled { market: String, price: Decimal }
        => RejectCode::AlreadySettled,
        "{market} was already settled at {price}";
    98 => SettlementBeforeExpiry { market: String, expiry_ms: u64, now_ms: u64 }
        => RejectCode::NotExpired,
        "{market} expires at {expiry_ms} ms: it cannot be settled at {now_ms} ms";
    99 => NotDatedFuture { market: String, kind: String }
        => RejectCode::WrongInstrument,
        "{market} is a {kind}, not a dated future: it is never settled";
    100 => NoFundingForDatedFuture { market: String }
        => RejectCode::WrongInstrument,
        "{market} is a dated future: it has no funding";
    101 => DeliveryFeeRateOutOfRange { rate: Decimal }
        => RejectCode::InvalidRate,
        "delivery fee rate {rate} outside [0, 1)";
    102 => ZeroExpiry
        => RejectCode::InvalidMarket,
        "a dated future needs an expiry time above 0 ms";

    // ----- options (the `options` module) ------------------------------------
    103 => StrikeOffGrid { strike: Decimal, grid: Decimal }
        => RejectCode::StrikeOffGrid,
        "strike {strike} is not a positive multiple of the underlying's tick {grid}";
    /// `underlying`: the first `SHOWN_SYMBOL_CHARS` characters of the input.
    104 => UnknownUnderlying { underlying: String }
        => RejectCode::NoUnderlyingIndex,
        "option underlying index {underlying:?} is not a market";
    105 => UnderlyingNotIndex { underlying: String, kind: String }
        => RejectCode::NoUnderlyingIndex,
        "{underlying} is a {kind}: an option's underlying index is a perpetual or dated future";
    106 => OptionTickTooCoarse { tick_size: Decimal, underlying_tick: Decimal }
        => RejectCode::InvalidMarket,
        "option tick {tick_size} has fewer decimals than the underlying's tick {underlying_tick}";
    107 => OptionMarginRatesOutOfOrder { im_rate: Decimal, im_floor_rate: Decimal, mm_rate: Decimal }
        => RejectCode::InvalidRate,
        "option margin rates must satisfy 0 < mm {mm_rate} <= floor {im_floor_rate} <= im \
         {im_rate} < 1";
    108 => FeeCapRateOutOfRange { rate: Decimal }
        => RejectCode::InvalidRate,
        "fee cap rate {rate} outside [0, 1)";
    109 => ZeroFundingPeriod
        => RejectCode::InvalidMarket,
        "a perpetual option needs a funding period above 0 ms";
    110 => NotExpiringOption { market: String, kind: String }
        => RejectCode::WrongInstrument,
        "{market} is a {kind}: only an expiring option is exercised";
    111 => NotPerpetualOption { market: String, kind: String }
        => RejectCode::WrongInstrument,
        "{market} is a {kind}: option funding applies to perpetual options only";
    112 => NoUnderlyingMark { market: String, underlying: String }
        => RejectCode::NoMarkPrice,
        "{underlying}, the underlying index of {market}, has no mark price yet";

    // ----- funding rate from the premium index (the `funding_rate` module) ----
    113 => PremiumSampleCount { count: u64 }
        => RejectCode::InvalidSamples,
        "{count} premium index samples: 1..={MAX_PREMIUM_SAMPLES} are needed";
    114 => ClampRateOutOfRange { rate: Decimal }
        => RejectCode::InvalidRate,
        "clamp rate {rate} outside [0, 1)";

    // ----- inverse markets --------------------------------------------------
    115 => ContractValueNotWhole { contract_value: Decimal }
        => RejectCode::InvalidMarket,
        "contract value {contract_value} must be a positive whole number of quote units";

    // ----- option marks and funding clamps ----------------------------------
    /// `range`: "[0, 1]" for a call, "[-1, 0]" for a put.
    116 => DeltaOutOfRange { market: String, delta: Decimal, range: String }
        => RejectCode::InvalidDelta,
        "delta {delta} of {market} outside {range}";
    117 => NoFundingClamp { market: String }
        => RejectCode::FundingClampNotSet,
        "{market} has no funding clamp: set one with SetFundingClamp before premium-index funding";
    118 => NotOption { market: String, kind: String }
        => RejectCode::WrongInstrument,
        "{market} is a {kind}: a mark with a delta is for options";
}

/// A rejection's record encoding: `u8` reject code tag, then the detail.
pub(crate) fn put_rejection(sink: &mut impl Sink, rejection: &Rejection) {
    sink.put_u8(crate::codec::reject_code_tag(rejection.code));
    rejection.detail.put(sink);
}

/// Reads a rejection written by [`put_rejection`]; refuses a code that does
/// not match its detail.
pub(crate) fn read_rejection(reader: &mut Reader<'_>) -> Result<Rejection, String> {
    let code = crate::codec::reject_code_from_tag(reader.u8()?)?;
    let detail = RejectDetail::read(reader)?;
    if detail.code() != code {
        return Err(format!(
            "reject code {} does not match its detail ({})",
            code.as_str(),
            detail.code().as_str()
        ));
    }
    Ok(Rejection { code, detail })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn messages_name_owners_in_words_not_rust_debug() {
        let over = Rejection::new(RejectDetail::BalanceTooLarge {
            owner: Owner::Account(3),
            asset: "BTC".into(),
        });
        assert_eq!(
            over.message(),
            "account 3 BTC balance would exceed the largest amount"
        );
        let negative = Rejection::new(RejectDetail::WouldGoNegative {
            owner: Owner::Insurance,
            asset: "USDT".into(),
        });
        assert_eq!(
            negative.message(),
            "the insurance fund would have negative USDT available"
        );
    }

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).expect("decimal")
    }

    /// One of every detail, in tag order, with awkward values.
    fn every_detail() -> Vec<RejectDetail> {
        use RejectDetail::*;
        let s = |text: &str| text.to_string();
        vec![
            MalformedCommandId {
                id: "é".repeat(MAX_DETAIL_TEXT_CHARS),
            },
            CommandIdReused { id: s("tc-1") },
            DedupWindowOutOfRange {
                window_ms: u64::MAX,
            },
            MalformedAssetSymbol { symbol: s("b\"tc") },
            AssetScaleTooLarge {
                asset: s("BTC"),
                scale: 19,
            },
            AssetExists { asset: s("BTC") },
            TooManyAssets,
            UnknownAsset { asset: s("") },
            ReservedAccount,
            AccountExists { account: 7 },
            UnknownAccount { account: u64::MAX },
            HoldExists { hold: 1 },
            HoldNotOpen { hold: 2 },
            FillHoldNotOpen {
                side: Side::Sell,
                hold: 3,
            },
            HoldsSameAsset {
                buy_hold: 4,
                sell_hold: 5,
                asset: s("USDT"),
            },
            HoldShort {
                side: Side::Buy,
                hold: 6,
                remaining: d("0.50000000"),
                asset: s("BTC"),
                taken: d("0.60000000"),
            },
            NotPositive {
                field: Field::Price,
                value: d("-0.000"),
            },
            Negative {
                field: Field::SellerFee,
                value: Decimal::MIN,
            },
            TooPrecise {
                field: Field::Amount,
                value: d("0.0000000000000000000000000001"),
                scale: 8,
                asset: s("BTC"),
            },
            TooLarge {
                field: Field::BaseAmount,
                value: Decimal::MAX,
                asset: s("BTC"),
            },
            QuoteNotWhole {
                base_amount: d("0.00000001"),
                base: s("BTC"),
                price: d("1.5"),
                quote: s("USDT"),
                quote_scale: 6,
            },
            NotionalTooLarge {
                amount: d("0.5"),
                price: d("1e20"),
            },
            FeeExceedsReceived {
                field: Field::BuyerFee,
                fee: d("0.2"),
                received: d("0.1"),
            },
            AvailableShort {
                account: 2,
                available: d("0.50000000"),
                asset: s("BTC"),
                needed: d("0.60000000"),
            },
            WouldGoNegative {
                owner: Owner::Account(9),
                asset: s("BTC"),
            },
            BalanceTooLarge {
                owner: Owner::Insurance,
                asset: s("USDT"),
            },
            Overflow,
            LiquidationOverflow,
            ValueTooLarge {
                field: Field::Size,
                value: d("-1"),
            },
            RateTooPrecise {
                field: Field::FundingRate,
                rate: d("0.000000001"),
            },
            RateTooLarge {
                field: Field::MaintenanceMarginRate,
                rate: d("1e25"),
            },
            MarginRateOutOfRange {
                bracket: 0,
                rate: d("1"),
            },
            LiquidationFeeRateOutOfRange { rate: d("-0.01") },
            FundingRateOutOfRange { rate: d("1.00") },
            UnknownMarket {
                market: s("ETH-PERP"),
            },
            MalformedMarketSymbol {
                market: s("btc perp"),
            },
            MalformedBaseSymbol { base: s("ü") },
            MarketExists {
                market: s("BTC-PERP"),
            },
            MarketLimit,
            GridNotPositive {
                tick_size: d("0"),
                step_size: d("-0.1"),
            },
            GridTooFine {
                tick_size: d("0.01"),
                price_scale: 2,
                step_size: d("0.00001"),
                size_scale: 5,
                settle: s("USDT"),
                settle_scale: 6,
            },
            MaxLeverageOutOfRange { leverage: 0 },
            BracketCount { count: 17 },
            BracketLeverageOutOfRange {
                bracket: 3,
                leverage: 1001,
            },
            MarginRateNotBelowInitial {
                bracket: 1,
                rate: d("0.05"),
                leverage: 20,
            },
            FirstFloorNotZero { floor: d("10") },
            BracketsOutOfOrder { bracket: 2 },
            ZeroFundingInterval,
            TooManyMarkets,
            OffGrid {
                field: Field::Price,
                value: d("100.05"),
                grid: d("0.1"),
            },
            MarkTooPrecise {
                price: d("1.123"),
                scale: 1,
            },
            MarkNotionalTooLarge { price: d("1e27") },
            FundingTimeOffInterval {
                funding_time_ms: 5,
                interval_ms: 3,
            },
            AlreadyFunded {
                market: s("BTC-PERP"),
                last_ms: 10,
                funding_time_ms: 10,
            },
            NoMarkPrice {
                market: s("BTC-PERP"),
            },
            NoMarkPriceYet {
                market: s("BTC-PERP"),
            },
            SelfTrade { account: 1 },
            PausedIncrease {
                market: s("BTC-PERP"),
                account: 2,
            },
            PnlFundsShort {
                account: 3,
                available: d("-1.000000"),
                asset: s("USDT"),
                realized: d("-5.5"),
                fee: d("0.1"),
                after: d("-6.6"),
            },
            MarginShort {
                account: 4,
                equity: d("10"),
                asset: s("USDT"),
                initial: d("20.5"),
            },
            DedupTableFull {
                entries: 50_000_000,
                window_ms: 86_400_000,
            },
            UnknownParent { parent: 9 },
            ParentNotTopLevel { parent: 10 },
            CollateralWalletInvalid {
                wallet: Wallet::Funding,
            },
            TransferToItself {
                owner: Owner::Margin(3),
            },
            NotSubAccountOf {
                master: 1,
                account: 2,
            },
            SubToSubWithoutGrant {
                from: 11,
                to: 12,
                master: 1,
            },
            OutsideFamily { from: 11, to: 20 },
            WithdrawForbidden { account: 11 },
            AboveTransferable {
                owner: Owner::Margin(4),
                asset: s("USDT"),
                amount: d("100.5"),
                transferable: d("0"),
            },
            LockedNotTransferable {
                owner: Owner::Account(4),
                available: d("1"),
                locked: d("2.50"),
                asset: s("BTC"),
                amount: d("3"),
            },
            GrantToItself { account: 5 },
            GrantLimit {
                account: 5,
                max: 256,
            },
            OwnerShort {
                owner: Owner::Insurance,
                available: d("-1"),
                asset: s("USDT"),
                needed: d("5"),
            },
            MalformedPairSymbol {
                pair: s("btc/usdt"),
            },
            PairExists {
                pair: s("BTC-USDT"),
            },
            UnknownPair {
                pair: s("ETH-USDT"),
            },
            PairSameAsset { asset: s("BTC") },
            PairSizeScale {
                size_scale: 9,
                base_scale: 8,
            },
            PairPriceScale { price_scale: 19 },
            PairHoldMismatch {
                pair: s("BTC-USDT"),
                side: Side::Buy,
                hold: 7,
                asset: s("BTC"),
                expected: s("USDT"),
            },
            UnderMinSize {
                pair: s("BTC-USDT"),
                base_amount: d("0.0001"),
                min: d("0.001"),
            },
            PairTooPrecise {
                field: Field::Price,
                value: d("1.234"),
                scale: 2,
                pair: s("BTC-USDT"),
            },
            FeeUncovered {
                side: Side::Sell,
                fee: d("0.5"),
                asset: s("BNB"),
                has: d("0.1"),
            },
            LimitBelowPrice {
                limit: d("29000"),
                price: d("30000"),
            },
            ReleaseAboveRemaining {
                hold: 3,
                amount: d("5"),
                remaining: d("4.5"),
            },
            PairLimit,
            PositionOpen {
                account: 3,
                market: s("BTC-PERP"),
            },
            NotIsolated {
                account: 3,
                market: s("BTC-PERP"),
            },
            IsolatedMarginShort {
                account: 3,
                market: s("BTC-PERP"),
                margin: d("100"),
                delta: d("-80"),
                movable: d("45.5"),
            },
            HoldNotSpot {
                side: Side::Sell,
                hold: 4,
            },
            HoldWalletInvalid {
                wallet: Wallet::Funding,
            },
            OrderHoldMismatch {
                side: Side::Buy,
                hold: 9,
            },
            FeatureNotActive {
                command: s("AssertBalance"),
                needed: 2,
                active: 1,
            },
            BalanceMismatch {
                account: 5,
                asset: s("BTC"),
                available: d("0.50000000"),
                locked: d("0"),
            },
            FillAfterExpiry {
                market: s("BTC-0327"),
                expiry_ms: 1_000,
                now_ms: u64::MAX,
            },
            MarketSettled {
                market: s("BTC-0327"),
                price: d("30000.0"),
            },
            FutureAlreadySettled {
                market: s("BTC-0327"),
                price: d("-0.0"),
            },
            SettlementBeforeExpiry {
                market: s("BTC-0327"),
                expiry_ms: u64::MAX,
                now_ms: 0,
            },
            NotDatedFuture {
                market: s("BTC-PERP"),
                kind: s("perpetual"),
            },
            NoFundingForDatedFuture {
                market: s("BTC-0327"),
            },
            DeliveryFeeRateOutOfRange { rate: d("1.00") },
            ZeroExpiry,
            StrikeOffGrid {
                strike: d("30000.05"),
                grid: d("0.1"),
            },
            UnknownUnderlying { underlying: s("") },
            UnderlyingNotIndex {
                underlying: s("BTC-C-30000"),
                kind: s("call"),
            },
            OptionTickTooCoarse {
                tick_size: d("1"),
                underlying_tick: d("0.1"),
            },
            OptionMarginRatesOutOfOrder {
                im_rate: d("0.1"),
                im_floor_rate: d("0.15"),
                mm_rate: d("0"),
            },
            FeeCapRateOutOfRange { rate: d("-0.1") },
            ZeroFundingPeriod,
            NotExpiringOption {
                market: s("BTC-PC-30000"),
                kind: s("perpetual_call"),
            },
            NotPerpetualOption {
                market: s("BTC-C-30000"),
                kind: s("call"),
            },
            NoUnderlyingMark {
                market: s("BTC-C-30000"),
                underlying: s("BTC-PERP"),
            },
            PremiumSampleCount { count: u64::MAX },
            ClampRateOutOfRange { rate: d("-0.0005") },
            ContractValueNotWhole {
                contract_value: d("0.5"),
            },
            DeltaOutOfRange {
                market: s("BTC-C-30000"),
                delta: d("1.5"),
                range: s("[0, 1]"),
            },
            NoFundingClamp {
                market: s("BTC-PERP"),
            },
            NotOption {
                market: s("BTC-PERP"),
                kind: s("perpetual"),
            },
        ]
    }

    fn encoded(rejection: &Rejection) -> Vec<u8> {
        let mut bytes = Vec::new();
        put_rejection(&mut bytes, rejection);
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<Rejection, String> {
        let mut reader = Reader::new(bytes);
        let rejection = read_rejection(&mut reader)?;
        reader.finish()?;
        Ok(rejection)
    }

    #[test]
    fn detail_tags_are_dense_and_the_test_list_covers_every_one() {
        let tags: Vec<u8> = (0..DETAIL_TAGS.len() as u8).collect();
        assert_eq!(DETAIL_TAGS, &tags[..]);
        let details = every_detail();
        let listed: Vec<u8> = details
            .iter()
            .map(|detail| {
                let mut bytes = Vec::new();
                detail.put(&mut bytes);
                bytes[0]
            })
            .collect();
        assert_eq!(listed, tags);
    }

    #[test]
    fn every_detail_round_trips_exactly_and_renders_the_same() {
        for detail in every_detail() {
            let rejection = Rejection::new(detail);
            let bytes = encoded(&rejection);
            let back = decode(&bytes).expect("decodes");
            assert_eq!(back, rejection);
            assert_eq!(back.message(), rejection.message());
            assert_eq!(rejection.to_string(), rejection.message());
            assert!(!rejection.message().is_empty());
            // Decimals keep their scale and sign, so the message is the same
            // text, not just an equal value.
            let json = serde_json::to_string(&rejection).expect("serde");
            let from_json: Rejection = serde_json::from_str(&json).expect("serde back");
            assert_eq!(from_json.message(), rejection.message());
        }
    }

    #[test]
    fn corrupt_rejections_are_errors_never_panics() {
        for detail in every_detail() {
            let rejection = Rejection::new(detail);
            let bytes = encoded(&rejection);
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{rejection:?} cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode(&longer).is_err());
            for i in 0..bytes.len() {
                for flip in [0x01u8, 0x80, 0xFF] {
                    let mut bad = bytes.clone();
                    bad[i] ^= flip;
                    if let Ok(other) = decode(&bad) {
                        assert_eq!(other.code, other.detail.code());
                    }
                }
            }
        }
    }

    #[test]
    fn a_code_that_is_not_its_details_is_refused() {
        let rejection = Rejection::new(RejectDetail::HoldExists { hold: 1 });
        let mut bytes = encoded(&rejection);
        assert_eq!(
            bytes[0],
            crate::codec::reject_code_tag(RejectCode::HoldExists)
        );
        bytes[0] = crate::codec::reject_code_tag(RejectCode::UnknownHold);
        let err = decode(&bytes).expect_err("mismatch refused");
        assert!(err.contains("does not match"), "{err}");
        // A hand-built mismatched rejection is refused the same way.
        let forged = Rejection {
            code: RejectCode::InvalidPrice,
            detail: RejectDetail::NotPositive {
                field: Field::Amount,
                value: d("0"),
            },
        };
        assert!(decode(&encoded(&forged)).is_err());
    }

    #[test]
    fn bad_tags_decimals_and_long_text_are_refused() {
        let code = crate::codec::reject_code_tag(RejectCode::InvalidAmount);
        let detail = |tail: &[u8]| -> Vec<u8> {
            let mut bytes = vec![code, 16, 0]; // NotPositive, Field::Amount
            bytes.extend_from_slice(tail);
            bytes
        };
        let magnitude = |m: u128| m.to_be_bytes();
        let good = [&[0u8, 2][..], &magnitude(150)[..]].concat();
        let parsed = decode(&detail(&good)).expect("good");
        assert_eq!(parsed.message(), "amount 1.50 must be positive");
        for bad in [
            [&[2u8, 2][..], &magnitude(150)[..]].concat(), // sign 2
            [&[0u8, 29][..], &magnitude(150)[..]].concat(), // scale 29
            [&[0u8, 0][..], &magnitude(1 << 96)[..]].concat(), // 97 bits
        ] {
            assert!(decode(&detail(&bad)).is_err(), "{bad:?}");
        }
        // Unknown detail and field tags.
        let mut unknown = vec![code, DETAIL_TAGS.len() as u8];
        unknown.extend_from_slice(&good);
        assert!(decode(&unknown).is_err());
        let mut bad_field = vec![code, 16, ALL_FIELDS.len() as u8];
        bad_field.extend_from_slice(&good);
        assert!(decode(&bad_field).is_err());
        // Text: at most MAX_DETAIL_TEXT_CHARS characters, UTF-8.
        let text = |t: &[u8]| -> Vec<u8> {
            let mut bytes = vec![crate::codec::reject_code_tag(RejectCode::UnknownAsset), 7];
            bytes.extend_from_slice(&(t.len() as u32).to_be_bytes());
            bytes.extend_from_slice(t);
            bytes
        };
        let longest = "é".repeat(MAX_DETAIL_TEXT_CHARS);
        assert!(decode(&text(longest.as_bytes())).is_ok());
        let longer = "e".repeat(MAX_DETAIL_TEXT_CHARS + 1);
        assert!(decode(&text(longer.as_bytes())).is_err());
        assert!(decode(&text(&[0xC3, 0x28])).is_err());
    }

    #[test]
    fn a_negative_zero_keeps_its_sign_through_the_encoding() {
        let mut zero = d("0.00");
        zero.set_sign_negative(true);
        let rejection = Rejection::new(RejectDetail::NotPositive {
            field: Field::Amount,
            value: zero,
        });
        let back = decode(&encoded(&rejection)).expect("decodes");
        assert_eq!(back.message(), rejection.message());
        assert_eq!(back.message(), "amount -0.00 must be positive");
    }

    #[test]
    fn shown_inputs_are_truncated_to_fit_a_detail() {
        let long = "x".repeat(500);
        assert_eq!(shown(&long, SHOWN_SYMBOL_CHARS).chars().count(), 40);
        assert_eq!(shown("ab", SHOWN_SYMBOL_CHARS), "ab");
    }
}
