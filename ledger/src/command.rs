//! The engine's public vocabulary: commands in, outcomes and events out.
//!
//! These types are the contract between the pure engine and the replicated
//! shell. They are serialized into Raft log entries (bincode + serde), so a
//! change here is a change of the replicated format: add variants at the end
//! and never reorder.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

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
}

/// One state-changing request. Amounts are exact decimals in the asset's
/// natural unit (e.g. `0.5` BTC); the engine rejects any with more decimal
/// places than the asset's scale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Registers an asset with a fixed scale (e.g. BTC 8, USDT 6).
    CreateAsset { symbol: String, scale: u32 },
    /// Opens a client account.
    CreateAccount { account: AccountId },
    /// Credits `available`; debits the asset's `External` account.
    Deposit {
        account: AccountId,
        asset: String,
        amount: Decimal,
    },
    /// Debits `available`; credits the asset's `External` account.
    Withdraw {
        account: AccountId,
        asset: String,
        amount: Decimal,
    },
    /// Moves `amount` from `available` to `locked` under a new hold.
    Lock {
        hold: HoldId,
        account: AccountId,
        asset: String,
        amount: Decimal,
    },
    /// Closes a hold and returns its remainder from `locked` to `available`.
    Release { hold: HoldId },
    /// Settles one trade. `buy_hold` must hold the quote asset, `sell_hold` the
    /// base asset. The buyer's hold is debited `base_amount * price` (quote),
    /// the seller's hold `base_amount` (base). The buyer receives
    /// `base_amount - buyer_fee` (base), the seller `quote - seller_fee`
    /// (quote); both fees go to the `Fees` account: each side pays its fee in
    /// the asset it receives. Any price improvement stays on the buy hold.
    Fill {
        buy_hold: HoldId,
        sell_hold: HoldId,
        base_amount: Decimal,
        price: Decimal,
        buyer_fee: Decimal,
        seller_fee: Decimal,
    },
    /// Moves `available` from one client account to another.
    Transfer {
        from: AccountId,
        to: AccountId,
        asset: String,
        amount: Decimal,
    },
}

/// A command with its idempotency key, as replicated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub command_id: CommandId,
    pub command: Command,
}

/// Why a command was refused. Machine-readable; stable names (see `as_str`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RejectCode {
    /// Command id empty, too long or not printable ASCII.
    InvalidCommandId,
    /// The command id was already used for a different command.
    CommandIdReused,
    /// Amount is zero or negative where a positive amount is required
    /// (fees may be zero, never negative).
    InvalidAmount,
    /// Amount has more decimal places than the asset's scale.
    BadPrecision,
    /// Amount, or a resulting balance, exceeds `MAX_UNITS`.
    AmountTooLarge,
    /// Asset symbol malformed or scale above `MAX_ASSET_SCALE`.
    InvalidAsset,
    AssetExists,
    UnknownAsset,
    /// Account id 0.
    InvalidAccount,
    AccountExists,
    UnknownAccount,
    HoldExists,
    UnknownHold,
    /// Not enough `available` for a withdraw, lock or transfer.
    InsufficientFunds,
    /// A fill would take more from a hold than it has left.
    HoldInsufficient,
    /// The holds of a fill do not form a (quote, base) pair of different assets.
    HoldAssetMismatch,
    /// A fee exceeds what its payer receives.
    FeeTooLarge,
    /// Price zero or negative.
    InvalidPrice,
}

impl RejectCode {
    /// Stable SCREAMING_SNAKE name, used as the machine-readable reason at the gRPC edge.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::InvalidCommandId => "INVALID_COMMAND_ID",
            RejectCode::CommandIdReused => "COMMAND_ID_REUSED",
            RejectCode::InvalidAmount => "INVALID_AMOUNT",
            RejectCode::BadPrecision => "BAD_PRECISION",
            RejectCode::AmountTooLarge => "AMOUNT_TOO_LARGE",
            RejectCode::InvalidAsset => "INVALID_ASSET",
            RejectCode::AssetExists => "ASSET_EXISTS",
            RejectCode::UnknownAsset => "UNKNOWN_ASSET",
            RejectCode::InvalidAccount => "INVALID_ACCOUNT",
            RejectCode::AccountExists => "ACCOUNT_EXISTS",
            RejectCode::UnknownAccount => "UNKNOWN_ACCOUNT",
            RejectCode::HoldExists => "HOLD_EXISTS",
            RejectCode::UnknownHold => "UNKNOWN_HOLD",
            RejectCode::InsufficientFunds => "INSUFFICIENT_FUNDS",
            RejectCode::HoldInsufficient => "HOLD_INSUFFICIENT",
            RejectCode::HoldAssetMismatch => "HOLD_ASSET_MISMATCH",
            RejectCode::FeeTooLarge => "FEE_TOO_LARGE",
            RejectCode::InvalidPrice => "INVALID_PRICE",
        }
    }
}

/// A definite refusal: the command changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: RejectCode,
    /// Human-readable detail, e.g. "account 7 has 1.5 BTC available, needs 2".
    pub message: String,
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
}

/// The result of applying one envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Applied { events: Vec<Event> },
    Rejected(Rejection),
}

/// `Ledger::apply`'s answer: the outcome, and whether it is the remembered
/// outcome of an earlier command with the same id (a retry that changed nothing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    pub outcome: Outcome,
    pub duplicate: bool,
}
