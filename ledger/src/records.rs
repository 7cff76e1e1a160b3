//! The ledger state as key/value records: the stable binary encoding the
//! shell persists (RocksDB) and snapshots, `drain_dirty` and `take_dirty`
//! (what changed), `records` (everything) and `from_records` (rebuild, with
//! validation).
//!
//! Every key starts with a one-byte kind tag ([`RecordKind::of_key`]);
//! integers are big-endian so that byte order is numeric order.
//!
//! | kind    | key                                              | value |
//! |---------|--------------------------------------------------|-------|
//! | Meta    | `01`                                             | `u8` format version (6, or 7 once the cluster version is above 1), `u64` dedup clock (`max_seen_now_ms`), `u64` dedup window ms, format 7 only: `u32` cluster version |
//! | Asset   | `02` symbol bytes                                | `u8` scale |
//! | Account | `03` `u64` account id                            | empty, or settings (below) |
//! | Balance | `04` owner, symbol bytes                         | `i128` available, `i128` locked (minor units) |
//! | Hold    | `05` `u64` hold id                               | `u64` account, `i128` amount, `i128` remaining, symbol bytes; a hold outside the spot wallet then `00`, `u8` wallet |
//! | Dedup   | `06` command id bytes                            | `u64` stamp ms, `u128` command fingerprint, verdict |
//! | Market  | `07` market symbol bytes                         | see below |
//! | Position| `08` market symbol bytes, `00`, `u64` account id | `i128` size, `i128` cost (see `market`) |
//! | IngestSource | `09` string topic, `u32` partition            | `u64` next offset, `u64` applied, `u64` duplicate, `u64` failed records |
//! | IngestFailure| `0A` string topic, `u32` partition, `u64` offset | string command id, string code, string message |
//! | Pair    | `0B` pair symbol bytes                           | string base, string quote, `u8` size scale, `u8` price scale, `i128` min base amount (base minor units) |
//! | Isolated| `0D` market symbol bytes, `00`, `u64` account id | `i128` isolated margin (settle minor units) |
//! | Instrument | `0E` market symbol bytes                      | `u8` kind (1 dated future, 2 call, 3 put, 4 perpetual call, 5 perpetual put), `u64` expiry ms (0 for perpetual options), `i128` delivery fee rate (`* 10^8`), `u8` 0/1 then `i128` settlement price (tick units; an option's: the underlying's), options only: string underlying market symbol, `i128` strike (underlying tick units), `i128` IM rate, `i128` IM floor rate, `i128` MM rate, `i128` fee cap rate (rates `* 10^8`), `u64` funding period ms; then `i128` inverse contract value (quote units; 0 linear), `u8` 0/1 then `i128` funding clamp rate (`* 10^8`), `u8` 0/1 then `i128` mark delta (`* 10^8`, options only). Kind 0 (a perpetual) has a record only when inverse or with a funding clamp |
//! | History | `0C` `u64` account id, `u64` sequence number      | `u64` log index, `u64` time ms, string command id, `u8` wallet, `i128` available delta, `i128` locked delta, `i128` available, `i128` locked, asset symbol bytes |
//!
//! Account settings (version 6; empty for the defaults `CreateAccount`
//! makes): `u64` parent (0: top-level), `u8` collateral wallet (0 spot, 2
//! margin), `u8` can withdraw, `u32` grant count, then a `u64` sub-account
//! id per grant (sorted), then `u8` keeps history.
//!
//! Market value: base string, settle asset string, `i128` tick and `u8`
//! price scale, `i128` step and `u8` size scale, `u32` max leverage, `i128`
//! liquidation fee rate, `u64` funding interval ms, `u8` bracket count then
//! per bracket `i128` floor, `i128` maintenance margin rate, `u32` max
//! leverage (cumulative amounts are recomputed), `u8` paused, `u8` 0/1 then
//! (`i128` mark price, `u64` mark time ms), `u8` 0/1 then `u64` last funding
//! time ms, `i128` PnL pool, `i128` insurance inventory size, `i128`
//! insurance inventory cost. Units: see the `market` module (sizes and
//! prices in step/tick scale units, money in settle minor units, rates
//! `* 10^8`).
//!
//! Primitives: `u8`/`u32`/`u64` big-endian; `i128` two's complement,
//! big-endian, 16 bytes; owner = `u8` kind (0 client account's spot
//! wallet, 1 External, 2 Fees, 3 Insurance, 4 a client's funding wallet, 5
//! a client's margin wallet) then `u64` account id (0 for system owners);
//! string = `u32` byte length then UTF-8.
//!
//! Verdict (what a retry is told; see the `dedup` module): `u8` 0 =
//! Applied (nothing follows: events are never stored), or `u8` 1 =
//! Rejected, then `u8` reject code (`RejectCode` declaration order, 0 =
//! InvalidCommandId .. 28 = InvalidRate, 29 = InvalidDedupWindow) and the
//! rejection's detail: `u8` detail tag (`RejectDetail`, tags defined in the
//! `reject` module), then the detail's fields in declaration order, each
//! `u32`/`u64` (big-endian), string (at most 80 characters), owner, field
//! name = `u8` (`Field` declaration order), side = `u8` (0 buy, 1 sell) or
//! decimal = `u8` sign (1 negative), `u8` scale (0..=28), `u128` magnitude
//! (below 2^96): the exact value, scale kept. No message text is stored: the
//! message is rendered from the detail at the edge (`Rejection::message`),
//! so rewording one changes no record and no state hash. `from_records`
//! refuses an unknown code, detail, field or side tag, a bad decimal, a
//! longer string, trailing bytes, and a code that is not its detail's. An
//! applied command's record value is 25 bytes. The fingerprint is the
//! xxh3-128 of the command's canonical encoding (`wire::fingerprint`).
//!
//! Format history: version 1 stored the 32-byte blake3 fingerprint and the
//! whole encoded outcome (every event) per command id. Version 2 stores the
//! verdict only, and its meta record the dedup clock only. Version 3 adds
//! the dedup window to the meta record (replicated state since
//! `Command::SetDedupWindow`). Version 4 keeps the layout of 3
//! except for two things: its fingerprints hash the `wire` encoding of the
//! command body instead of a separate canonical encoding (a version-3 dedup
//! record would not recognize a retry), and a rejected verdict holds the
//! typed detail instead of a message string. Version 5 adds the
//! ingest records (`IngestSource`, `IngestFailure`); a version-4 store has
//! none and is read as is. Version 6 (this one) adds the account model:
//! balance records of owner kinds 4 and 5 (funding and margin wallets),
//! account settings in the account value and `Pair` records; a version-4
//! or -5 store has none of them (every balance is a spot balance, every
//! account has the default settings) and is read as is. Version 7 is
//! version 6 plus the cluster version in the meta record; it is written
//! only once a `SetClusterVersion` entry raised the version above 1 (the
//! `version` module), so until an upgrade is finalized the records stay
//! readable by release 0.1; a version-7 record of a cluster version this
//! binary does not support is refused (`ClusterVersionUnsupported`). `from_records` refuses every other version (`UnsupportedVersion`), and a data directory written by an
//! older build must be recreated (or restored from a snapshot of this
//! build).
//!
//! Instrument records (cluster version 2) exist only for markets that are
//! not linear perpetuals or have a funding clamp: a linear perpetual
//! without one is its market record alone, exactly as release 0.1 wrote it,
//! and an instrument record without its market record, or with a linear
//! perpetual's terms and no clamp, is refused.
//!
//! Every asset has its three system balance records; a client balance record
//! exists once the account touched the asset (even if now zero). Closed
//! holds and evicted dedup entries are deleted. A new format gets a new
//! meta version; `from_records` refuses versions it does not know.

use std::collections::BTreeMap;

use rustc_hash::FxHashSet;

use crate::codec::{Reader, Sink};
use crate::command::{
    AccountId, HoldId, MAX_ASSET_SCALE, MAX_COMMAND_ID_BYTES, MAX_MARGIN_BRACKETS,
    MAX_TRANSFER_GRANTS, Owner, Wallet, is_valid_asset_symbol, is_valid_market_symbol,
};
use crate::dedup::{DedupEntry, DedupTable, RestoreRefusal, StoredId, Verdict};
use crate::engine::{Ledger, LedgerConfig};
use crate::history::HistoryEntry;
use crate::ingest::{
    IngestFailure, IngestPosition, IngestSource, MAX_INGEST_FAILURES_KEPT, MAX_INGEST_REASON_BYTES,
    MAX_INGEST_SOURCES, SourceState, is_valid_topic,
};
use crate::market::{
    Instrument, InstrumentKind, Mark, Market, MarketIdx, MarketState, OptionTerms, Position,
    with_cum,
};
use crate::pairs::Pair;
use crate::state::{
    Account, AccountSettings, Asset, AssetIdx, Balance, DirtyKey, Hold, SYSTEM_OWNERS, system_slot,
};

/// Version written in the meta record while the cluster version is the
/// base one: what release 0.1 reads (so a node can still be rolled back).
const FORMAT_VERSION: u8 = 6;
/// Version written once the cluster is finalized at version 2 or later:
/// the meta record also holds the cluster version. Release 0.1 refuses it
/// ("unsupported record format version 7"): no downgrade after finalizing.
const FORMAT_VERSION_WITH_CLUSTER_VERSION: u8 = 7;
/// The older versions still read: 5 (no wallet balances, account settings
/// or pairs) and 4 (no ingest records either); both are version 6 stores
/// without those records.
const OLDER_FORMAT_VERSIONS: [u8; 2] = [4, 5];

const TAG_META: u8 = 0x01;
const TAG_ASSET: u8 = 0x02;
const TAG_ACCOUNT: u8 = 0x03;
const TAG_BALANCE: u8 = 0x04;
const TAG_HOLD: u8 = 0x05;
const TAG_DEDUP: u8 = 0x06;
const TAG_MARKET: u8 = 0x07;
const TAG_POSITION: u8 = 0x08;
const TAG_INGEST_SOURCE: u8 = 0x09;
const TAG_INGEST_FAILURE: u8 = 0x0A;
const TAG_PAIR: u8 = 0x0B;
const TAG_HISTORY: u8 = 0x0C;
const TAG_ISOLATED: u8 = 0x0D;
const TAG_INSTRUMENT: u8 = 0x0E;

/// The kind of a record, from the first byte of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    Meta,
    Asset,
    Account,
    Balance,
    Hold,
    /// An idempotency (command id) entry.
    Dedup,
    /// A perpetual market (parameters and state).
    Market,
    /// A client position in a perpetual market.
    Position,
    /// A Kafka partition's ingest position.
    IngestSource,
    /// A kept ingest failure.
    IngestFailure,
    /// A spot pair.
    Pair,
    /// An account history entry.
    History,
    /// An isolated margin of a position.
    Isolated,
    /// A non-perpetual market's contract terms and settlement.
    Instrument,
}

impl RecordKind {
    /// The kind of the record with this key, or `None` if it is not a ledger key.
    pub fn of_key(key: &[u8]) -> Option<RecordKind> {
        match *key.first()? {
            TAG_META => Some(RecordKind::Meta),
            TAG_ASSET => Some(RecordKind::Asset),
            TAG_ACCOUNT => Some(RecordKind::Account),
            TAG_BALANCE => Some(RecordKind::Balance),
            TAG_HOLD => Some(RecordKind::Hold),
            TAG_DEDUP => Some(RecordKind::Dedup),
            TAG_MARKET => Some(RecordKind::Market),
            TAG_POSITION => Some(RecordKind::Position),
            TAG_INGEST_SOURCE => Some(RecordKind::IngestSource),
            TAG_INGEST_FAILURE => Some(RecordKind::IngestFailure),
            TAG_PAIR => Some(RecordKind::Pair),
            TAG_HISTORY => Some(RecordKind::History),
            TAG_ISOLATED => Some(RecordKind::Isolated),
            TAG_INSTRUMENT => Some(RecordKind::Instrument),
            _ => None,
        }
    }
}

/// A record that cannot be part of a ledger state.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record key {key:02x?} has no known kind")]
    UnknownKind { key: Vec<u8> },
    #[error("malformed {kind:?} record {key:02x?}: {detail}")]
    Malformed {
        kind: RecordKind,
        key: Vec<u8>,
        detail: String,
    },
    #[error("duplicate {kind:?} record {key:02x?}")]
    Duplicate { kind: RecordKind, key: Vec<u8> },
    #[error(
        "unsupported record format version {0}: this binary reads formats 4 to 6 (a newer \
         release wrote this data; a downgrade is refused)"
    )]
    UnsupportedVersion(u8),
    /// A format-7 meta record of a cluster version above what this binary
    /// interprets: the data dir was finalized by a newer release.
    #[error("data dir finalized at a newer cluster version (downgrade refused): {0}")]
    ClusterVersionUnsupported(crate::version::UnsupportedClusterVersion),
    #[error("restored state violates an invariant: {0}")]
    Invariant(String),
}

// ----- keys -----------------------------------------------------------------
// Every encoder appends to `out`; callers clear or allocate it.

fn meta_key(out: &mut Vec<u8>) {
    out.push(TAG_META);
}

fn asset_key(out: &mut Vec<u8>, symbol: &str) {
    out.push(TAG_ASSET);
    out.put(symbol.as_bytes());
}

fn account_key(out: &mut Vec<u8>, account: AccountId) {
    out.push(TAG_ACCOUNT);
    out.put_u64(account);
}

fn balance_key(out: &mut Vec<u8>, owner: Owner, symbol: &str) {
    out.push(TAG_BALANCE);
    out.put_owner(owner);
    out.put(symbol.as_bytes());
}

fn pair_key(out: &mut Vec<u8>, symbol: &str) {
    out.push(TAG_PAIR);
    out.put(symbol.as_bytes());
}

fn pair_value(value: &mut Vec<u8>, pair: &Pair, base: &str, quote: &str) {
    value.put_str(base);
    value.put_str(quote);
    // Scales are validated to be <= MAX_ASSET_SCALE (18).
    value.put_u8(pair.size_scale as u8);
    value.put_u8(pair.price_scale as u8);
    value.put_i128(pair.min_base);
}

/// Empty for the default settings (`CreateAccount`), else `u64` parent
/// (0: none), `u8` collateral wallet, `u8` can withdraw, `u32` grant count
/// and a `u64` per grant.
fn account_value(value: &mut Vec<u8>, settings: &AccountSettings) {
    if *settings == AccountSettings::default() {
        return;
    }
    value.put_u64(settings.parent.unwrap_or(0));
    value.put_u8(settings.collateral.tag());
    value.put_u8(u8::from(settings.can_withdraw));
    // Grants are bounded by MAX_TRANSFER_GRANTS.
    value.put_u32(settings.grants.len() as u32);
    for grant in &settings.grants {
        value.put_u64(*grant);
    }
    value.put_u8(u8::from(settings.history));
}

fn isolated_key(out: &mut Vec<u8>, market: &str, account: AccountId) {
    out.push(TAG_ISOLATED);
    out.put(market.as_bytes());
    out.push(0);
    out.put_u64(account);
}

fn history_key(out: &mut Vec<u8>, account: AccountId, seq: u64) {
    out.push(TAG_HISTORY);
    out.put_u64(account);
    out.put_u64(seq);
}

fn history_value(value: &mut Vec<u8>, entry: &HistoryEntry, symbol: &str) {
    value.put_u64(entry.log_index);
    value.put_u64(entry.time_ms);
    value.put_str(&entry.command_id);
    value.put_u8(entry.wallet.tag());
    value.put_i128(entry.available_delta);
    value.put_i128(entry.locked_delta);
    value.put_i128(entry.after.available);
    value.put_i128(entry.after.locked);
    value.put(symbol.as_bytes());
}

fn read_account_settings(v: &mut Reader<'_>) -> Result<AccountSettings, String> {
    if v.finish().is_ok() {
        return Ok(AccountSettings::default());
    }
    let parent = v.u64()?;
    let tag = v.u8()?;
    let collateral = Wallet::from_tag(tag).ok_or_else(|| format!("unknown wallet {tag}"))?;
    let can_withdraw = v.bool()?;
    let count = v.u32()? as usize;
    if count > MAX_TRANSFER_GRANTS {
        return Err(format!("{count} grants, more than {MAX_TRANSFER_GRANTS}"));
    }
    let mut grants = Vec::with_capacity(count);
    for _ in 0..count {
        grants.push(v.u64()?);
    }
    let history = v.bool()?;
    let settings = AccountSettings {
        parent: (parent != 0).then_some(parent),
        collateral,
        can_withdraw,
        grants,
        history,
    };
    if settings == AccountSettings::default() {
        return Err("default settings spelled out (they are written empty)".into());
    }
    Ok(settings)
}

fn hold_key(out: &mut Vec<u8>, hold: HoldId) {
    out.push(TAG_HOLD);
    out.put_u64(hold);
}

fn dedup_key(out: &mut Vec<u8>, id: &StoredId) {
    out.push(TAG_DEDUP);
    out.put(id.as_bytes());
}

fn market_key(out: &mut Vec<u8>, symbol: &str) {
    out.push(TAG_MARKET);
    out.put(symbol.as_bytes());
}

fn position_key(out: &mut Vec<u8>, symbol: &str, account: AccountId) {
    out.push(TAG_POSITION);
    out.put(symbol.as_bytes());
    out.put_u8(0);
    out.put_u64(account);
}

// ----- values ---------------------------------------------------------------

fn ingest_source_key(out: &mut Vec<u8>, source: &IngestSource) {
    out.put_u8(TAG_INGEST_SOURCE);
    out.put_str(&source.topic);
    out.put_u32(source.partition);
}

fn ingest_failure_key(out: &mut Vec<u8>, source: &IngestSource, offset: u64) {
    out.put_u8(TAG_INGEST_FAILURE);
    out.put_str(&source.topic);
    out.put_u32(source.partition);
    out.put_u64(offset);
}

fn ingest_source_value(value: &mut Vec<u8>, p: &IngestPosition) {
    for n in [
        p.next_offset,
        p.applied_records,
        p.duplicate_records,
        p.failed_records,
    ] {
        value.put_u64(n);
    }
}

fn ingest_failure_value(value: &mut Vec<u8>, f: &IngestFailure) {
    value.put_str(&f.command_id);
    value.put_str(&f.code);
    value.put_str(&f.message);
}

fn put_opt_flag(value: &mut Vec<u8>, present: bool) {
    value.put_u8(u8::from(present));
}

fn market_value(value: &mut Vec<u8>, market: &Market, settle_symbol: &str) {
    value.put_str(&market.base);
    value.put_str(settle_symbol);
    value.put_i128(market.tick);
    // Scales are at most the settle scale (<= 18).
    value.put_u8(market.price_scale as u8);
    value.put_i128(market.step);
    value.put_u8(market.size_scale as u8);
    value.put_u32(market.max_leverage);
    value.put_i128(market.liquidation_fee_rate);
    value.put_u64(market.funding_interval_ms);
    // At most MAX_MARGIN_BRACKETS (16).
    value.put_u8(market.brackets.len() as u8);
    for b in &market.brackets {
        value.put_i128(b.floor);
        value.put_i128(b.mmr);
        value.put_u32(b.max_leverage);
    }
    let state = &market.state;
    value.put_u8(u8::from(state.paused));
    put_opt_flag(value, state.mark.is_some());
    if let Some(mark) = state.mark {
        value.put_i128(mark.price);
        value.put_u64(mark.time_ms);
    }
    put_opt_flag(value, state.last_funding_ms.is_some());
    if let Some(t) = state.last_funding_ms {
        value.put_u64(t);
    }
    value.put_i128(state.pool);
    value.put_i128(state.insurance.size);
    value.put_i128(state.insurance.cost);
}

fn instrument_key(out: &mut Vec<u8>, symbol: &str) {
    out.push(TAG_INSTRUMENT);
    out.extend_from_slice(symbol.as_bytes());
}

fn instrument_value(value: &mut Vec<u8>, market: &Market, underlying_symbol: &str) {
    let instrument = &market.instrument;
    value.put_u8(instrument.kind.tag());
    value.put_u64(instrument.expiry_ms);
    value.put_i128(instrument.delivery_fee_rate);
    put_opt_flag(value, market.state.settlement.is_some());
    if let Some(price) = market.state.settlement {
        value.put_i128(price);
    }
    if let Some(o) = &instrument.option {
        value.put_str(underlying_symbol);
        value.put_i128(o.strike);
        value.put_i128(o.im_rate);
        value.put_i128(o.im_floor_rate);
        value.put_i128(o.mm_rate);
        value.put_i128(o.fee_cap_rate);
        value.put_u64(o.funding_period_ms);
    }
    value.put_i128(instrument.inverse_contract_value);
    for state in [market.state.funding_clamp_rate, market.state.mark_delta] {
        put_opt_flag(value, state.is_some());
        if let Some(rate) = state {
            value.put_i128(rate);
        }
    }
}

/// The symbol of `market`'s underlying (empty if it has none).
fn underlying_symbol<'a>(ledger: &'a Ledger, market: &Market) -> &'a str {
    market.instrument.option.map_or("", |o| {
        ledger.markets[o.underlying as usize].symbol.as_str()
    })
}

/// An instrument record before its underlying is resolved: terms, the
/// settlement price, the underlying symbol (options).
type ParsedInstrument = (Instrument, InstrumentState, Option<String>);

/// The market state an instrument record carries.
#[derive(Clone, Copy)]
struct InstrumentState {
    settlement: Option<i128>,
    funding_clamp_rate: Option<i128>,
    mark_delta: Option<i128>,
}

/// An instrument record's value: the terms, the settlement price and an
/// option's underlying symbol (its index and scale are resolved later).
fn read_instrument(v: &mut Reader<'_>) -> Result<ParsedInstrument, String> {
    let tag = v.u8()?;
    let Some(kind) = InstrumentKind::from_tag(tag) else {
        return Err(format!("unknown instrument kind {tag}"));
    };
    let expiry_ms = v.u64()?;
    let delivery_fee_rate = v.i128()?;
    let settlement = if v.bool()? { Some(v.i128()?) } else { None };
    let (option, underlying) = if kind.is_option() {
        let underlying = v.string()?;
        let terms = OptionTerms {
            underlying: 0,
            underlying_price_scale: 0,
            strike: v.i128()?,
            im_rate: v.i128()?,
            im_floor_rate: v.i128()?,
            mm_rate: v.i128()?,
            fee_cap_rate: v.i128()?,
            funding_period_ms: v.u64()?,
        };
        (Some(terms), Some(underlying))
    } else {
        (None, None)
    };
    let inverse_contract_value = v.i128()?;
    let funding_clamp_rate = if v.bool()? { Some(v.i128()?) } else { None };
    let mark_delta = if v.bool()? { Some(v.i128()?) } else { None };
    v.finish()?;
    let instrument = Instrument {
        kind,
        expiry_ms,
        delivery_fee_rate,
        option,
        inverse_contract_value,
    };
    if instrument.is_perpetual() && funding_clamp_rate.is_none() {
        return Err("a linear perpetual without a funding clamp has no instrument record".into());
    }
    if mark_delta.is_some() && !kind.is_option() {
        return Err("a mark delta on a market that is not an option".into());
    }
    let state = InstrumentState {
        settlement,
        funding_clamp_rate,
        mark_delta,
    };
    Ok((instrument, state, underlying))
}

fn position_value(value: &mut Vec<u8>, position: &Position) {
    value.put_i128(position.size);
    value.put_i128(position.cost);
}

fn meta_value(value: &mut Vec<u8>, ledger: &Ledger) {
    let base = ledger.cluster_version == crate::version::BASE_CLUSTER_VERSION;
    value.put_u8(if base {
        FORMAT_VERSION
    } else {
        FORMAT_VERSION_WITH_CLUSTER_VERSION
    });
    value.put_u64(ledger.dedup.max_seen_now_ms);
    value.put_u64(ledger.dedup_window_ms);
    if !base {
        value.put_u32(ledger.cluster_version);
    }
}

fn asset_value(value: &mut Vec<u8>, asset: &Asset) {
    // Scales are validated to be <= MAX_ASSET_SCALE (18).
    value.put_u8(asset.scale as u8);
}

fn balance_value(value: &mut Vec<u8>, balance: Balance) {
    value.put_i128(balance.available);
    value.put_i128(balance.locked);
}

/// A spot hold ends with its symbol (as in format 5); a hold in another
/// wallet appends `00` and the wallet tag (no symbol byte is `00`).
fn hold_value(value: &mut Vec<u8>, hold: &Hold, symbol: &str) {
    value.put_u64(hold.account);
    value.put_i128(hold.amount);
    value.put_i128(hold.remaining);
    value.put(symbol.as_bytes());
    if hold.wallet != Wallet::Spot {
        value.put_u8(0);
        value.put_u8(hold.wallet.tag());
    }
}

/// The symbol and wallet of a hold value's tail (see `hold_value`).
fn hold_tail(tail: &[u8]) -> Result<(&[u8], Wallet), String> {
    match tail.iter().position(|b| *b == 0) {
        None => Ok((tail, Wallet::Spot)),
        Some(at) => match (&tail[at + 1..], tail.len() - at) {
            (&[tag], 2) => match Wallet::from_tag(tag) {
                Some(wallet) if wallet != Wallet::Spot => Ok((&tail[..at], wallet)),
                _ => Err(format!("bad hold wallet {tag}")),
            },
            _ => Err("bad hold wallet suffix".into()),
        },
    }
}

fn dedup_value(value: &mut Vec<u8>, entry: &DedupEntry) {
    value.put_u64(entry.stamp_ms);
    value.put(&entry.fingerprint().to_be_bytes());
    match &entry.verdict {
        Verdict::Applied => value.put_u8(0),
        Verdict::Rejected(rejection) => {
            value.put_u8(1);
            crate::reject::put_rejection(value, rejection);
        }
    }
}

/// A dedup record's value back into an entry for `id`.
fn read_dedup(id: StoredId, v: &mut Reader<'_>) -> Result<DedupEntry, String> {
    let stamp_ms = v.u64()?;
    let fingerprint = v.u128()?;
    let verdict = match v.u8()? {
        0 => Verdict::Applied,
        1 => Verdict::Rejected(Box::new(crate::reject::read_rejection(v)?)),
        other => return Err(format!("unknown verdict tag {other}")),
    };
    v.finish()?;
    Ok(DedupEntry::new(id, stamp_ms, fingerprint, verdict))
}

/// A fresh buffer filled by `encode`.
fn encoded(encode: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    encode(&mut out);
    out
}

impl Ledger {
    /// Hands every record changed since the last call (or `take_dirty`) to
    /// `put`: `(key, Some(value))` for a written record, `(key, None)` for a
    /// deleted one, each key at most once per call, in no particular order
    /// (a RocksDB `WriteBatch` needs none). Keys and values are encoded
    /// into two buffers reused for every record: nothing is allocated per
    /// record and nothing is sorted. Encoding: see the module docs.
    pub fn drain_dirty(&mut self, mut put: impl FnMut(&[u8], Option<&[u8]>)) {
        let mut key = Vec::with_capacity(80);
        let mut value = Vec::with_capacity(256);
        if self.dirty.take_meta() {
            key.clear();
            value.clear();
            meta_key(&mut key);
            meta_value(&mut value, self);
            put(&key, Some(&value));
        }
        // Balances: written once each, on the occurrence that clears its
        // flag; a balance removed by a rollback is deleted once.
        let mut balances = std::mem::take(&mut self.dirty.balances);
        let mut deleted: FxHashSet<(Owner, AssetIdx)> = FxHashSet::default();
        for (owner, asset) in balances.drain(..) {
            key.clear();
            let Some((listed, balance)) = self.balance_listed_mut(owner, asset) else {
                if deleted.insert((owner, asset)) {
                    balance_key(&mut key, owner, self.symbol(asset));
                    put(&key, None);
                }
                continue;
            };
            if !std::mem::take(listed) {
                continue; // A repeat: written already.
            }
            value.clear();
            balance_key(&mut key, owner, self.symbol(asset));
            balance_value(&mut value, balance);
            put(&key, Some(&value));
        }
        // Gives the emptied list back, capacity included.
        self.dirty.balances = balances;
        let mut keys = self.dirty.take();
        // Distinct keys, one put each: the order of the puts cannot change the records stored.
        #[allow(clippy::disallowed_methods)]
        for dirty in keys.drain() {
            key.clear();
            value.clear();
            let present = self.encode_dirty(dirty, &mut key, &mut value);
            put(&key, present.then_some(&value[..]));
        }
        // Gives the emptied set back, capacity included.
        self.dirty.restore(keys);
        let (evicted, inserted) = self.dedup.take_dirty();
        for entry in inserted {
            key.clear();
            value.clear();
            dedup_key(&mut key, &entry.id);
            dedup_value(&mut value, entry);
            put(&key, Some(&value));
        }
        for id in evicted {
            // Evicted and remembered again since: written above.
            if !self.dedup.contains(id.as_bytes()) {
                key.clear();
                dedup_key(&mut key, &id);
                put(&key, None);
            }
        }
    }

    /// How many records `drain_dirty` would hand out now, about (an upper
    /// bound): the shell drains when this passes its batch bound. O(1).
    pub fn dirty_count(&self) -> usize {
        self.dirty.count() + self.dedup.dirty_count()
    }

    /// Records changed since the last call (or `drain_dirty`):
    /// `(key, Some(value))` for written, `(key, None)` for deleted, sorted by
    /// key, each key once: [`Ledger::drain_dirty`], collected and sorted.
    pub fn take_dirty(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        self.drain_dirty(|key, value| out.push((key.to_vec(), value.map(<[u8]>::to_vec))));
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Two values for one key would let the store keep either: the
        // replica's disk state would depend on the order. Cheap next to the
        // sort.
        assert!(
            out.windows(2).all(|w| w[0].0 != w[1].0),
            "invariant broken: a dirty batch names a record twice"
        );
        out
    }

    /// Encodes the record of `dirty` into `key` and, if it exists, `value`;
    /// false if the record is deleted.
    fn encode_dirty(&self, dirty: DirtyKey, key: &mut Vec<u8>, value: &mut Vec<u8>) -> bool {
        match dirty {
            DirtyKey::Meta => {
                meta_key(key);
                meta_value(value, self);
                true
            }
            DirtyKey::Asset(idx) => {
                let asset = &self.assets[idx as usize];
                asset_key(key, &asset.symbol);
                asset_value(value, asset);
                true
            }
            DirtyKey::Account(account) => {
                account_key(key, account);
                let state = self.accounts.get(&account);
                if let Some(state) = state {
                    account_value(value, &state.settings);
                }
                state.is_some()
            }
            DirtyKey::Isolated(m, account) => {
                let market = &self.markets[m as usize];
                isolated_key(key, &market.symbol, account);
                let margin = market.isolated.get(&account);
                if let Some(margin) = margin {
                    value.put_i128(*margin);
                }
                margin.is_some()
            }
            DirtyKey::History(account, seq) => {
                history_key(key, account, seq);
                let entry = self
                    .accounts
                    .get(&account)
                    .and_then(|a| a.history.as_ref())
                    .and_then(|h| {
                        let at = h.entries.partition_point(|e| e.seq < seq);
                        h.entries.get(at).filter(|e| e.seq == seq)
                    });
                if let Some(entry) = entry {
                    history_value(value, entry, self.symbol(entry.asset));
                }
                entry.is_some()
            }
            DirtyKey::Pair(idx) => {
                let pair = &self.pairs[idx as usize];
                pair_key(key, &pair.symbol);
                pair_value(value, pair, self.symbol(pair.base), self.symbol(pair.quote));
                true
            }
            DirtyKey::Hold(hold) => {
                hold_key(key, hold);
                let open = self.holds.get(&hold);
                if let Some(h) = open {
                    hold_value(value, h, self.symbol(h.asset));
                }
                open.is_some()
            }
            DirtyKey::Market(m) => {
                let market = &self.markets[m as usize];
                market_key(key, &market.symbol);
                market_value(value, market, self.symbol(market.settle));
                true
            }
            DirtyKey::Instrument(m) => self.encode_instrument(m, key, value),
            DirtyKey::Position(m, account) => {
                let market = &self.markets[m as usize];
                position_key(key, &market.symbol, account);
                let position = market.positions.get(&account);
                if let Some(position) = position {
                    position_value(value, position);
                }
                position.is_some()
            }
            DirtyKey::IngestSource(idx) => {
                let state = &self.ingest.sources[idx as usize];
                ingest_source_key(key, &state.source);
                ingest_source_value(value, &state.position);
                true
            }
            DirtyKey::IngestFailure(idx, offset) => {
                let state = &self.ingest.sources[idx as usize];
                ingest_failure_key(key, &state.source, offset);
                let failure = state.failures.get(&offset);
                if let Some(failure) = failure {
                    ingest_failure_value(value, failure);
                }
                failure.is_some()
            }
        }
    }

    /// `encode_dirty` of an instrument record: a rolled-back funding clamp
    /// leaves a linear perpetual without one (deleted, or never written).
    fn encode_instrument(&self, m: MarketIdx, key: &mut Vec<u8>, value: &mut Vec<u8>) -> bool {
        let market = &self.markets[m as usize];
        instrument_key(key, &market.symbol);
        let listed = market.has_instrument_record();
        if listed {
            instrument_value(value, market, underlying_symbol(self, market));
        }
        listed
    }

    /// The `listed` flag and the value of a balance that has a record.
    fn balance_listed_mut(&mut self, owner: Owner, idx: AssetIdx) -> Option<(&mut bool, Balance)> {
        match (owner.client(), system_slot(owner)) {
            (Some((id, wallet)), _) => {
                let account = self.accounts.get_mut(&id)?;
                let pos = account
                    .balances
                    .binary_search_by_key(&(wallet, idx), |slot| (slot.wallet, slot.asset))
                    .ok()?;
                let slot = &mut account.balances[pos];
                Some((&mut slot.listed, slot.balance))
            }
            (_, Some(slot)) => {
                let asset = self.assets.get_mut(idx as usize)?;
                Some((&mut asset.system_listed[slot], asset.system[slot]))
            }
            (_, None) => None,
        }
    }

    /// Every record of the state, sorted by key (for snapshots and tests).
    pub fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::with_capacity(
            1 + self.assets.len() * 4
                + self.accounts.len() * 2
                + self.holds.len()
                + self.dedup.len(),
        );
        out.push((encoded(meta_key), encoded(|v| meta_value(v, self))));
        for asset in &self.assets {
            out.push((
                encoded(|k| asset_key(k, &asset.symbol)),
                encoded(|v| asset_value(v, asset)),
            ));
            for (owner, balance) in SYSTEM_OWNERS.iter().zip(asset.system) {
                out.push((
                    encoded(|k| balance_key(k, *owner, &asset.symbol)),
                    encoded(|v| balance_value(v, balance)),
                ));
            }
        }
        // `out` is sorted by key before it is returned: hash order cannot leak.
        #[allow(clippy::disallowed_methods)]
        for (id, account) in &self.accounts {
            out.push((
                encoded(|k| account_key(k, *id)),
                encoded(|v| account_value(v, &account.settings)),
            ));
            for entry in account.history.iter().flat_map(|h| &h.entries) {
                out.push((
                    encoded(|k| history_key(k, *id, entry.seq)),
                    encoded(|v| history_value(v, entry, self.symbol(entry.asset))),
                ));
            }
            for slot in &account.balances {
                let owner = Owner::wallet(*id, slot.wallet);
                out.push((
                    encoded(|k| balance_key(k, owner, self.symbol(slot.asset))),
                    encoded(|v| balance_value(v, slot.balance)),
                ));
            }
        }
        // `out` is sorted by key before it is returned: hash order cannot leak.
        #[allow(clippy::disallowed_methods)]
        for (id, hold) in &self.holds {
            out.push((
                encoded(|k| hold_key(k, *id)),
                encoded(|v| hold_value(v, hold, self.symbol(hold.asset))),
            ));
        }
        for entry in self.dedup.iter() {
            out.push((
                encoded(|k| dedup_key(k, &entry.id)),
                encoded(|v| dedup_value(v, entry)),
            ));
        }
        for market in &self.markets {
            out.push((
                encoded(|k| market_key(k, &market.symbol)),
                encoded(|v| market_value(v, market, self.symbol(market.settle))),
            ));
            if market.has_instrument_record() {
                out.push((
                    encoded(|k| instrument_key(k, &market.symbol)),
                    encoded(|v| instrument_value(v, market, underlying_symbol(self, market))),
                ));
            }
            for (account, position) in &market.positions {
                out.push((
                    encoded(|k| position_key(k, &market.symbol, *account)),
                    encoded(|v| position_value(v, position)),
                ));
            }
            for (account, margin) in &market.isolated {
                out.push((
                    encoded(|k| isolated_key(k, &market.symbol, *account)),
                    encoded(|v| v.put_i128(*margin)),
                ));
            }
        }
        for pair in &self.pairs {
            out.push((
                encoded(|k| pair_key(k, &pair.symbol)),
                encoded(|v| pair_value(v, pair, self.symbol(pair.base), self.symbol(pair.quote))),
            ));
        }
        for state in &self.ingest.sources {
            out.push((
                encoded(|k| ingest_source_key(k, &state.source)),
                encoded(|v| ingest_source_value(v, &state.position)),
            ));
            for (offset, failure) in &state.failures {
                out.push((
                    encoded(|k| ingest_failure_key(k, &state.source, *offset)),
                    encoded(|v| ingest_failure_value(v, failure)),
                ));
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Rebuilds a ledger from records (as written by `take_dirty`/`records`),
    /// in any order. Validates every record and then the invariants, so a
    /// corrupt store is refused rather than served. A missing meta record
    /// means a dedup clock of 0 and `config.dedup_window_ms`. Missing
    /// system balances mean zero.
    pub fn from_records<I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>>(
        config: LedgerConfig,
        records: I,
    ) -> Result<Ledger, RecordError> {
        let records = records.into_iter();
        let expected = records.size_hint().0;
        Ledger::from_records_expecting(config, records, expected)
    }

    /// [`Ledger::from_records`] with an estimate of the record count (e.g.
    /// the store's key estimate): the big tables (accounts, balances,
    /// remembered commands) are reserved for it up front instead of grown
    /// by copying (each regrowth of a table of millions copies it and
    /// faults in fresh pages). Reserved room that stays unused is address
    /// space, never touched. Capped at [`MAX_EXPECTED_RECORDS`].
    pub fn from_records_expecting<I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>>(
        config: LedgerConfig,
        records: I,
        expected_records: usize,
    ) -> Result<Ledger, RecordError> {
        let mut parsed = Parsed::default();
        parsed.reserve(expected_records.min(MAX_EXPECTED_RECORDS));
        for (key, value) in records {
            parsed.add(key, value)?;
        }
        let mut ledger = parsed.build(config)?;
        // The idempotency table is consistent by construction (restore).
        ledger
            .check_money_invariants()
            .map_err(RecordError::Invariant)?;
        ledger.note_every_position();
        Ok(ledger)
    }
}

/// The most records [`Ledger::from_records_expecting`] reserves room for.
pub const MAX_EXPECTED_RECORDS: usize = 64 << 20;

/// Records sorted by kind, before they are linked together.
#[derive(Default)]
struct Parsed {
    max_seen_now_ms: Option<u64>,
    /// The window of the meta record.
    dedup_window_ms: Option<u64>,
    /// The cluster version of a format-7 meta record.
    cluster_version: Option<u32>,
    assets: BTreeMap<String, u32>,
    /// Accounts; their keys are rebuilt for an error (the encoding is canonical).
    accounts: Vec<(AccountId, AccountSettings)>,
    pairs: BTreeMap<String, ParsedPair>,
    /// Isolated margins by (market symbol, account).
    isolated: BTreeMap<(String, AccountId), (i128, Vec<u8>)>,
    /// History entries by (account, seq), with their asset symbols.
    history: BTreeMap<(AccountId, u64), (HistoryEntry, String, Vec<u8>)>,
    /// Balances by owner and interned symbol (an index into `symbols`):
    /// a node with a million accounts restores millions of these, so none
    /// carries its own symbol or key (rebuilt for an error).
    balances: Vec<(Owner, u32, Balance)>,
    /// Asset symbols of balance records, each once, checked once.
    symbols: Vec<String>,
    symbol_ids: rustc_hash::FxHashMap<String, u32>,
    holds: Vec<ParsedHold>,
    dedup: Vec<DedupEntry>,
    markets: BTreeMap<String, (ParsedMarket, Vec<u8>)>,
    /// Instrument records by market symbol: terms, settlement price, key.
    instruments: BTreeMap<String, (ParsedInstrument, Vec<u8>)>,
    positions: Vec<(String, AccountId, Position, Vec<u8>)>,
    ingest_sources: BTreeMap<IngestSource, IngestPosition>,
    ingest_failures: Vec<(IngestSource, IngestFailure, Vec<u8>)>,
}

/// A hold record before its asset is resolved: id, account, wallet,
/// symbol, amount, remaining, and its key (for errors).
type ParsedHold = (HoldId, AccountId, Wallet, String, i128, i128, Vec<u8>);

/// A pair record before its assets are resolved: base, quote, size
/// scale, price scale, min base units, and its key (for errors).
type ParsedPair = (String, String, u32, u32, i128, Vec<u8>);

/// A market record before its settle asset is resolved.
struct ParsedMarket {
    base: String,
    settle: String,
    tick: i128,
    price_scale: u32,
    step: i128,
    size_scale: u32,
    max_leverage: u32,
    liquidation_fee_rate: i128,
    funding_interval_ms: u64,
    tiers: Vec<(i128, i128, u32)>,
    state: MarketState,
}

fn read_market(v: &mut Reader<'_>) -> Result<ParsedMarket, String> {
    let base = v.string()?;
    let settle = v.string()?;
    let tick = v.i128()?;
    let price_scale = u32::from(v.u8()?);
    let step = v.i128()?;
    let size_scale = u32::from(v.u8()?);
    let max_leverage = v.u32()?;
    let liquidation_fee_rate = v.i128()?;
    let funding_interval_ms = v.u64()?;
    let count = usize::from(v.u8()?);
    if count == 0 || count > MAX_MARGIN_BRACKETS {
        return Err(format!("{count} brackets"));
    }
    let mut tiers = Vec::with_capacity(count);
    for _ in 0..count {
        tiers.push((v.i128()?, v.i128()?, v.u32()?));
    }
    let paused = v.bool()?;
    let mark = if v.bool()? {
        Some(Mark {
            price: v.i128()?,
            time_ms: v.u64()?,
        })
    } else {
        None
    };
    let last_funding_ms = if v.bool()? { Some(v.u64()?) } else { None };
    let pool = v.i128()?;
    let insurance = Position {
        size: v.i128()?,
        cost: v.i128()?,
    };
    v.finish()?;
    Ok(ParsedMarket {
        base,
        settle,
        tick,
        price_scale,
        step,
        size_scale,
        max_leverage,
        liquidation_fee_rate,
        funding_interval_ms,
        tiers,
        state: MarketState {
            paused,
            mark,
            last_funding_ms,
            pool,
            insurance,
            settlement: None,
            mark_delta: None,
            funding_clamp_rate: None,
        },
    })
}

/// The topic and partition at the front of an ingest key.
fn read_ingest_source(k: &mut Reader<'_>) -> Result<IngestSource, String> {
    let topic = k.string()?;
    if !is_valid_topic(&topic) {
        return Err("bad topic name".into());
    }
    let partition = k.u32()?;
    Ok(IngestSource { topic, partition })
}

fn malformed(kind: RecordKind, key: &[u8], detail: impl Into<String>) -> RecordError {
    RecordError::Malformed {
        kind,
        key: key.to_vec(),
        detail: detail.into(),
    }
}

fn duplicate(kind: RecordKind, key: &[u8]) -> RecordError {
    RecordError::Duplicate {
        kind,
        key: key.to_vec(),
    }
}

fn symbol_from(kind: RecordKind, key: &[u8], bytes: &[u8]) -> Result<String, RecordError> {
    match std::str::from_utf8(bytes) {
        Ok(symbol) if is_valid_asset_symbol(symbol) => Ok(symbol.to_string()),
        _ => Err(malformed(kind, key, "bad asset symbol")),
    }
}

impl Parsed {
    /// Room for `records` of each of the kinds a big ledger is made of.
    fn reserve(&mut self, records: usize) {
        self.accounts.reserve(records);
        self.balances.reserve(records);
        self.dedup.reserve(records);
    }

    fn add(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), RecordError> {
        let Some(kind) = RecordKind::of_key(&key) else {
            return Err(RecordError::UnknownKind { key });
        };
        let bad = |detail: String| malformed(kind, &key, detail);
        let mut k = Reader::new(&key[1..]);
        let mut v = Reader::new(&value);
        match kind {
            RecordKind::Meta => self.add_meta(&key, &value)?,
            RecordKind::Asset => {
                let symbol = symbol_from(kind, &key, k.rest())?;
                let scale = u32::from(v.u8().map_err(bad)?);
                v.finish().map_err(bad)?;
                if scale > MAX_ASSET_SCALE {
                    return Err(bad(format!("scale {scale} above {MAX_ASSET_SCALE}")));
                }
                if self.assets.insert(symbol, scale).is_some() {
                    return Err(duplicate(kind, &key));
                }
            }
            RecordKind::Account => {
                let account = k.u64().map_err(bad)?;
                k.finish().map_err(bad)?;
                let settings = read_account_settings(&mut v).map_err(bad)?;
                v.finish().map_err(bad)?;
                if account == 0 {
                    return Err(bad("account id 0".into()));
                }
                self.accounts.push((account, settings));
            }
            RecordKind::Balance => {
                let owner = k.owner().map_err(bad)?;
                let symbol = self.intern_symbol(kind, &key, k.rest())?;
                let available = v.i128().map_err(bad)?;
                let locked = v.i128().map_err(bad)?;
                v.finish().map_err(bad)?;
                self.balances
                    .push((owner, symbol, Balance { available, locked }));
            }
            RecordKind::Hold => {
                let hold = k.u64().map_err(bad)?;
                k.finish().map_err(bad)?;
                let account = v.u64().map_err(bad)?;
                let amount = v.i128().map_err(bad)?;
                let remaining = v.i128().map_err(bad)?;
                let (tail, wallet) = hold_tail(v.rest()).map_err(bad)?;
                let symbol = symbol_from(kind, &key, tail)?;
                self.holds
                    .push((hold, account, wallet, symbol, amount, remaining, key));
            }
            RecordKind::Dedup => {
                let id = k.rest();
                let valid = !id.is_empty()
                    && id.len() <= MAX_COMMAND_ID_BYTES
                    && id.iter().all(|b| (0x20..=0x7E).contains(b));
                if !valid {
                    return Err(bad("bad command id".into()));
                }
                let entry = read_dedup(StoredId::new(id), &mut v).map_err(bad)?;
                self.dedup.push(entry);
            }
            RecordKind::Market => {
                let symbol = match std::str::from_utf8(k.rest()) {
                    Ok(symbol) if is_valid_market_symbol(symbol) => symbol.to_string(),
                    _ => return Err(malformed(kind, &key, "bad market symbol")),
                };
                let market = read_market(&mut v).map_err(bad)?;
                if self.markets.contains_key(&symbol) {
                    return Err(duplicate(kind, &key));
                }
                self.markets.insert(symbol, (market, key));
            }
            RecordKind::Instrument => {
                let symbol = match std::str::from_utf8(k.rest()) {
                    Ok(symbol) if is_valid_market_symbol(symbol) => symbol.to_string(),
                    _ => return Err(malformed(kind, &key, "bad market symbol")),
                };
                let parsed = read_instrument(&mut v).map_err(bad)?;
                if self.instruments.contains_key(&symbol) {
                    return Err(duplicate(kind, &key));
                }
                self.instruments.insert(symbol, (parsed, key));
            }
            RecordKind::Position => self.add_position(key, &value)?,
            RecordKind::History => self.add_history(key, &value)?,
            RecordKind::Isolated => self.add_isolated(key, &value)?,
            RecordKind::Pair => self.add_pair(key, &value)?,
            RecordKind::IngestSource | RecordKind::IngestFailure => {
                self.add_ingest(kind, key, &value)?
            }
        }
        Ok(())
    }

    /// The interned id of a balance record's asset symbol (validated the
    /// first time it is seen).
    fn intern_symbol(
        &mut self,
        kind: RecordKind,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<u32, RecordError> {
        if let Some(&id) = std::str::from_utf8(bytes)
            .ok()
            .and_then(|symbol| self.symbol_ids.get(symbol))
        {
            return Ok(id);
        }
        let symbol = symbol_from(kind, key, bytes)?;
        let id = u32::try_from(self.symbols.len())
            .map_err(|_| malformed(kind, key, "too many asset symbols"))?;
        self.symbols.push(symbol.clone());
        self.symbol_ids.insert(symbol, id);
        Ok(id)
    }

    /// An ingest record: a partition's position, or a kept failure.
    fn add_ingest(
        &mut self,
        kind: RecordKind,
        key: Vec<u8>,
        value: &[u8],
    ) -> Result<(), RecordError> {
        let bad = |detail: String| malformed(kind, &key, detail);
        let mut k = Reader::new(&key[1..]);
        let mut v = Reader::new(value);
        match kind {
            RecordKind::IngestSource => {
                let source = read_ingest_source(&mut k).map_err(bad)?;
                k.finish().map_err(bad)?;
                let position = IngestPosition {
                    next_offset: v.u64().map_err(bad)?,
                    applied_records: v.u64().map_err(bad)?,
                    duplicate_records: v.u64().map_err(bad)?,
                    failed_records: v.u64().map_err(bad)?,
                };
                v.finish().map_err(bad)?;
                if self.ingest_sources.insert(source, position).is_some() {
                    return Err(duplicate(kind, &key));
                }
            }
            RecordKind::IngestFailure => {
                let source = read_ingest_source(&mut k).map_err(bad)?;
                let offset = k.u64().map_err(bad)?;
                k.finish().map_err(bad)?;
                let failure = IngestFailure {
                    offset,
                    command_id: v.string().map_err(bad)?,
                    code: v.string().map_err(bad)?,
                    message: v.string().map_err(bad)?,
                };
                v.finish().map_err(bad)?;
                let too_long = [&failure.command_id, &failure.code, &failure.message]
                    .iter()
                    .any(|s| s.len() > MAX_INGEST_REASON_BYTES);
                if too_long {
                    return Err(bad("ingest failure text too long".into()));
                }
                self.ingest_failures.push((source, failure, key));
            }
            _ => return Err(bad("not an ingest record".into())),
        }
        Ok(())
    }

    /// The meta record: format version (only this one), dedup clock and
    /// window.
    fn add_meta(&mut self, key: &[u8], value: &[u8]) -> Result<(), RecordError> {
        let kind = RecordKind::Meta;
        let bad = |detail: String| malformed(kind, key, detail);
        let mut v = Reader::new(value);
        Reader::new(&key[1..]).finish().map_err(bad)?;
        let version = v.u8().map_err(bad)?;
        if version != FORMAT_VERSION
            && version != FORMAT_VERSION_WITH_CLUSTER_VERSION
            && !OLDER_FORMAT_VERSIONS.contains(&version)
        {
            return Err(RecordError::UnsupportedVersion(version));
        }
        let clock = v.u64().map_err(bad)?;
        let window = Some(v.u64().map_err(bad)?);
        if version == FORMAT_VERSION_WITH_CLUSTER_VERSION {
            let cluster_version = v.u32().map_err(bad)?;
            if cluster_version <= crate::version::BASE_CLUSTER_VERSION {
                return Err(bad(format!(
                    "format {version} with cluster version {cluster_version}"
                )));
            }
            if cluster_version > crate::version::MAX_CLUSTER_VERSION {
                return Err(RecordError::ClusterVersionUnsupported(
                    crate::version::UnsupportedClusterVersion {
                        active: cluster_version,
                    },
                ));
            }
            self.cluster_version = Some(cluster_version);
        }
        v.finish().map_err(bad)?;
        if self.max_seen_now_ms.replace(clock).is_some() {
            return Err(duplicate(kind, key));
        }
        self.dedup_window_ms = window;
        Ok(())
    }

    /// A pair record: symbol; assets, scales and minimum.
    fn add_pair(&mut self, key: Vec<u8>, value: &[u8]) -> Result<(), RecordError> {
        let kind = RecordKind::Pair;
        let bad = |detail: String| malformed(kind, &key, detail);
        let mut k = Reader::new(&key[1..]);
        let mut v = Reader::new(value);
        let symbol = match std::str::from_utf8(k.rest()) {
            Ok(symbol) if is_valid_market_symbol(symbol) => symbol.to_string(),
            _ => return Err(malformed(kind, &key, "bad pair symbol")),
        };
        let base = v.string().map_err(bad)?;
        let quote = v.string().map_err(bad)?;
        let size_scale = u32::from(v.u8().map_err(bad)?);
        let price_scale = u32::from(v.u8().map_err(bad)?);
        let min_base = v.i128().map_err(bad)?;
        v.finish().map_err(bad)?;
        if self.pairs.contains_key(&symbol) {
            return Err(duplicate(kind, &key));
        }
        let parsed = (base, quote, size_scale, price_scale, min_base, key);
        self.pairs.insert(symbol, parsed);
        Ok(())
    }

    /// An isolated-margin record: market symbol, `00`, account; the margin.
    fn add_isolated(&mut self, key: Vec<u8>, value: &[u8]) -> Result<(), RecordError> {
        let kind = RecordKind::Isolated;
        let bad = |detail: String| malformed(kind, &key, detail);
        let rest = &key[1..];
        let Some(split) = rest.iter().position(|b| *b == 0) else {
            return Err(malformed(kind, &key, "no market separator"));
        };
        let symbol = match std::str::from_utf8(&rest[..split]) {
            Ok(symbol) if is_valid_market_symbol(symbol) => symbol.to_string(),
            _ => return Err(malformed(kind, &key, "bad market symbol")),
        };
        let mut k = Reader::new(&rest[split + 1..]);
        let account = k.u64().map_err(bad)?;
        k.finish().map_err(bad)?;
        let mut v = Reader::new(value);
        let margin = v.i128().map_err(bad)?;
        v.finish().map_err(bad)?;
        if self.isolated.contains_key(&(symbol.clone(), account)) {
            return Err(duplicate(kind, &key));
        }
        self.isolated.insert((symbol, account), (margin, key));
        Ok(())
    }

    /// A history record: account and sequence number; the entry.
    fn add_history(&mut self, key: Vec<u8>, value: &[u8]) -> Result<(), RecordError> {
        let kind = RecordKind::History;
        let bad = |detail: String| malformed(kind, &key, detail);
        let mut k = Reader::new(&key[1..]);
        let mut v = Reader::new(value);
        let account = k.u64().map_err(bad)?;
        let seq = k.u64().map_err(bad)?;
        k.finish().map_err(bad)?;
        let (entry, symbol) = read_history(seq, &mut v).map_err(bad)?;
        if self.history.contains_key(&(account, seq)) {
            return Err(duplicate(kind, &key));
        }
        self.history.insert((account, seq), (entry, symbol, key));
        Ok(())
    }

    /// A position record: market symbol, `00`, account id; size and cost.
    fn add_position(&mut self, key: Vec<u8>, value: &[u8]) -> Result<(), RecordError> {
        let kind = RecordKind::Position;
        let bad = |detail: String| malformed(kind, &key, detail);
        let rest = &key[1..];
        let Some(split) = rest.iter().position(|b| *b == 0) else {
            return Err(malformed(kind, &key, "no market separator"));
        };
        let symbol = match std::str::from_utf8(&rest[..split]) {
            Ok(symbol) if is_valid_market_symbol(symbol) => symbol.to_string(),
            _ => return Err(malformed(kind, &key, "bad market symbol")),
        };
        let mut k = Reader::new(&rest[split + 1..]);
        let account = k.u64().map_err(bad)?;
        k.finish().map_err(bad)?;
        let mut v = Reader::new(value);
        let position = Position {
            size: v.i128().map_err(bad)?,
            cost: v.i128().map_err(bad)?,
        };
        v.finish().map_err(bad)?;
        self.positions.push((symbol, account, position, key));
        Ok(())
    }

    fn build(self, config: LedgerConfig) -> Result<Ledger, RecordError> {
        let mut ledger = Ledger::empty(config);
        // Assets in symbol order (indices are internal; any order works).
        for (symbol, scale) in self.assets {
            let idx = AssetIdx::try_from(ledger.assets.len())
                .map_err(|_| RecordError::Invariant("too many assets".into()))?;
            ledger.asset_index.insert(symbol.clone(), idx);
            ledger.assets.push(Asset {
                symbol,
                scale,
                system: [Balance::default(); 3],
                system_listed: [false; 3],
            });
        }
        ledger.accounts.reserve(self.accounts.len());
        for (account, settings) in self.accounts {
            let state = Account {
                balances: Vec::new(),
                history: settings.history.then(crate::history::History::default),
                settings,
            };
            if ledger.accounts.insert(account, state).is_some() {
                let key = encoded(|k| account_key(k, account));
                return Err(duplicate(RecordKind::Account, &key));
            }
        }
        restore_balances(&mut ledger, self.balances, &self.symbols)?;
        for (hold, account, wallet, symbol, amount, remaining, key) in self.holds {
            let Some(&asset) = ledger.asset_index.get(&symbol) else {
                return Err(malformed(RecordKind::Hold, &key, "unknown asset"));
            };
            let open = Hold {
                account,
                wallet,
                asset,
                amount,
                remaining,
            };
            if ledger.holds.insert(hold, open).is_some() {
                return Err(duplicate(RecordKind::Hold, &key));
            }
        }
        ledger.dedup = DedupTable::restore(self.max_seen_now_ms.unwrap_or(0), self.dedup).map_err(
            |refusal| match refusal {
                RestoreRefusal::RepeatedId(id) => {
                    duplicate(RecordKind::Dedup, &encoded(|k| dedup_key(k, &id)))
                }
                RestoreRefusal::StampedAfterClock(id) => {
                    RecordError::Invariant(format!("dedup id {id:?} stamped after the dedup clock"))
                }
            },
        )?;
        if let Some(window_ms) = self.dedup_window_ms {
            ledger.dedup_window_ms = window_ms;
        }
        if let Some(version) = self.cluster_version {
            ledger.cluster_version = version;
        }
        restore_markets(&mut ledger, self.markets)?;
        restore_instruments(&mut ledger, self.instruments)?;
        for (symbol, account, position, key) in self.positions {
            let Some(&m) = ledger.market_index.get(&symbol) else {
                return Err(malformed(RecordKind::Position, &key, "unknown market"));
            };
            let positions = &mut ledger.markets[m as usize].positions;
            if positions.insert(account, position).is_some() {
                return Err(duplicate(RecordKind::Position, &key));
            }
        }
        restore_ingest(&mut ledger, self.ingest_sources, self.ingest_failures)?;
        restore_pairs(&mut ledger, self.pairs)?;
        restore_history(&mut ledger, self.history)?;
        for ((symbol, account), (margin, key)) in self.isolated {
            let Some(&m) = ledger.market_index.get(&symbol) else {
                return Err(malformed(RecordKind::Isolated, &key, "unknown market"));
            };
            ledger.markets[m as usize].isolated.insert(account, margin);
        }
        Ok(ledger)
    }
}

/// A history entry's value (its key gave `seq`), with its asset symbol.
fn read_history(seq: u64, v: &mut Reader<'_>) -> Result<(HistoryEntry, String), String> {
    let log_index = v.u64()?;
    let time_ms = v.u64()?;
    let command_id = v.string()?;
    if command_id.len() > MAX_COMMAND_ID_BYTES {
        return Err("command id too long".into());
    }
    let tag = v.u8()?;
    let wallet = Wallet::from_tag(tag).ok_or_else(|| format!("unknown wallet {tag}"))?;
    let available_delta = v.i128()?;
    let locked_delta = v.i128()?;
    let after = Balance {
        available: v.i128()?,
        locked: v.i128()?,
    };
    let symbol = String::from_utf8(v.rest().to_vec()).map_err(|_| "bad asset symbol")?;
    let entry = HistoryEntry {
        seq,
        log_index,
        time_ms,
        command_id,
        wallet,
        asset: 0,
        available_delta,
        locked_delta,
        after,
    };
    Ok((entry, symbol))
}

/// Links history entries (in sequence order) to accounts that keep history.
fn restore_history(
    ledger: &mut Ledger,
    history: BTreeMap<(AccountId, u64), (HistoryEntry, String, Vec<u8>)>,
) -> Result<(), RecordError> {
    for ((account, _), (mut entry, symbol, key)) in history {
        let bad = |detail: &str| malformed(RecordKind::History, &key, detail);
        let Some(&asset) = ledger.asset_index.get(&symbol) else {
            return Err(bad("unknown asset"));
        };
        entry.asset = asset;
        let Some(kept) = ledger
            .accounts
            .get_mut(&account)
            .and_then(|a| a.history.as_mut())
        else {
            return Err(bad("no account keeping history"));
        };
        if kept.entries.len() >= crate::history::MAX_HISTORY_PER_ACCOUNT {
            return Err(bad("more entries than are kept"));
        }
        kept.entries.push_back(entry);
    }
    Ok(())
}

/// Rebuilds the spot pairs, in symbol order, linked to their assets.
fn restore_pairs(
    ledger: &mut Ledger,
    pairs: BTreeMap<String, ParsedPair>,
) -> Result<(), RecordError> {
    for (symbol, (base, quote, size_scale, price_scale, min_base, key)) in pairs {
        let bad = |detail: &str| malformed(RecordKind::Pair, &key, detail);
        let (Some(&base), Some(&quote)) = (
            ledger.asset_index.get(&base),
            ledger.asset_index.get(&quote),
        ) else {
            return Err(bad("unknown asset"));
        };
        let idx = u32::try_from(ledger.pairs.len()).map_err(|_| bad("too many pairs"))?;
        ledger.pair_index.insert(symbol.clone(), idx);
        ledger.pairs.push(Pair {
            symbol,
            base,
            quote,
            size_scale,
            price_scale,
            min_base,
        });
    }
    Ok(())
}

/// Links kept ingest failures to their partitions (each once).
fn restore_ingest(
    ledger: &mut Ledger,
    sources: BTreeMap<IngestSource, IngestPosition>,
    failures: Vec<(IngestSource, IngestFailure, Vec<u8>)>,
) -> Result<(), RecordError> {
    if sources.len() > MAX_INGEST_SOURCES {
        return Err(RecordError::Invariant("too many ingest sources".into()));
    }
    for (source, position) in sources {
        ledger.ingest.insert(SourceState {
            source,
            position,
            failures: BTreeMap::new(),
        });
    }
    for (source, failure, key) in failures {
        let kind = RecordKind::IngestFailure;
        let Some(&idx) = ledger.ingest.index.get(&source) else {
            return Err(malformed(kind, &key, "unknown ingest source"));
        };
        let kept = &mut ledger.ingest.sources[idx as usize].failures;
        if kept.len() >= MAX_INGEST_FAILURES_KEPT {
            return Err(malformed(kind, &key, "more failures than are kept"));
        }
        if kept.insert(failure.offset, failure).is_some() {
            return Err(duplicate(kind, &key));
        }
    }
    Ok(())
}

/// Links balance records to their accounts and assets (each once).
fn restore_balances(
    ledger: &mut Ledger,
    balances: Vec<(Owner, u32, Balance)>,
    symbols: &[String],
) -> Result<(), RecordError> {
    // Interned symbol -> asset index, resolved once per symbol.
    let assets: Vec<Option<AssetIdx>> = symbols
        .iter()
        .map(|symbol| ledger.asset_index.get(symbol).copied())
        .collect();
    let mut seen_system = rustc_hash::FxHashSet::default();
    for (owner, symbol, balance) in balances {
        let key = || encoded(|k| balance_key(k, owner, &symbols[symbol as usize]));
        let Some(idx) = assets[symbol as usize] else {
            return Err(malformed(RecordKind::Balance, &key(), "unknown asset"));
        };
        match (owner.client(), system_slot(owner)) {
            (Some((id, wallet)), _) => {
                let Some(account) = ledger.accounts.get_mut(&id) else {
                    return Err(malformed(RecordKind::Balance, &key(), "unknown account"));
                };
                if account.get(wallet, idx).is_some() {
                    return Err(duplicate(RecordKind::Balance, &key()));
                }
                *account.slot_mut(wallet, idx) = balance;
            }
            (_, Some(slot)) => {
                if !seen_system.insert((slot, idx)) {
                    return Err(duplicate(RecordKind::Balance, &key()));
                }
                ledger.assets[idx as usize].system[slot] = balance;
            }
            (_, None) => return Err(malformed(RecordKind::Balance, &key(), "bad owner")),
        }
    }
    Ok(())
}

/// Links the instrument records to their markets (and an option to its
/// underlying market, which must be a perpetual or dated future).
fn restore_instruments(
    ledger: &mut Ledger,
    instruments: BTreeMap<String, (ParsedInstrument, Vec<u8>)>,
) -> Result<(), RecordError> {
    for (symbol, ((mut instrument, state, underlying), key)) in instruments {
        let bad = |detail: &str| malformed(RecordKind::Instrument, &key, detail);
        let Some(&m) = ledger.market_index.get(&symbol) else {
            return Err(bad("unknown market"));
        };
        if let (Some(terms), Some(underlying)) = (instrument.option.as_mut(), underlying) {
            let Some(&u) = ledger.market_index.get(&underlying) else {
                return Err(bad("unknown underlying market"));
            };
            terms.underlying = u;
            terms.underlying_price_scale = ledger.markets[u as usize].price_scale;
        }
        let market = &mut ledger.markets[m as usize];
        market.instrument = instrument;
        market.state.settlement = state.settlement;
        market.state.funding_clamp_rate = state.funding_clamp_rate;
        market.state.mark_delta = state.mark_delta;
    }
    // An underlying must itself be an index (not an option): checked
    // after every instrument is linked.
    for market in &ledger.markets {
        if let Some(terms) = market.instrument.option
            && ledger.markets[terms.underlying as usize]
                .instrument
                .kind
                .is_option()
        {
            return Err(RecordError::Invariant(format!(
                "option {} has an option as its underlying",
                market.symbol
            )));
        }
    }
    Ok(())
}

/// Rebuilds the markets, in symbol order (indices are internal; any order
/// works), linked to their settle assets.
fn restore_markets(
    ledger: &mut Ledger,
    markets: BTreeMap<String, (ParsedMarket, Vec<u8>)>,
) -> Result<(), RecordError> {
    for (symbol, (parsed, key)) in markets {
        let bad = |detail: &str| malformed(RecordKind::Market, &key, detail);
        let Some(&settle) = ledger.asset_index.get(&parsed.settle) else {
            return Err(bad("unknown settle asset"));
        };
        if !is_valid_asset_symbol(&parsed.base) {
            return Err(bad("bad base symbol"));
        }
        let brackets = with_cum(&parsed.tiers).ok_or_else(|| bad("bracket overflow"))?;
        let idx = MarketIdx::try_from(ledger.markets.len())
            .map_err(|_| RecordError::Invariant("too many markets".into()))?;
        ledger.market_index.insert(symbol.clone(), idx);
        ledger.market_order.push(idx);
        ledger.markets.push(Market {
            symbol,
            base: parsed.base,
            settle,
            settle_scale: ledger.assets[settle as usize].scale,
            tick: parsed.tick,
            price_scale: parsed.price_scale,
            step: parsed.step,
            size_scale: parsed.size_scale,
            max_leverage: parsed.max_leverage,
            brackets,
            liquidation_fee_rate: parsed.liquidation_fee_rate,
            funding_interval_ms: parsed.funding_interval_ms,
            instrument: Instrument::default(),
            state: parsed.state,
            positions: BTreeMap::new(),
            isolated: BTreeMap::new(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, CommandId, CreateAccount, CreateAsset, Deposit, Envelope};

    fn apply(ledger: &mut Ledger, id: &str, command: Command) {
        let envelope = Envelope {
            command_id: CommandId(id.into()),
            command,
        };
        let result = ledger.apply(&envelope, 1);
        assert!(matches!(result.outcome, crate::Outcome::Applied { .. }));
    }

    fn drained(ledger: &mut Ledger) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        ledger.drain_dirty(|k, v| out.push((k.to_vec(), v.map(<[u8]>::to_vec))));
        out
    }

    /// A client balance created, removed by a rollback and created again
    /// before the next drain is listed twice: written once, with its final
    /// value; removed again, it is deleted once.
    #[test]
    fn a_balance_listed_twice_is_drained_once() {
        let mut ledger = Ledger::new(LedgerConfig::default());
        apply(
            &mut ledger,
            "a",
            Command::CreateAsset(CreateAsset {
                symbol: "USDT".into(),
                scale: 6,
            }),
        );
        apply(
            &mut ledger,
            "b",
            Command::CreateAccount(CreateAccount { account: 1 }),
        );
        drained(&mut ledger);
        let owner = Owner::Account(1);
        let touch = |ledger: &mut Ledger| {
            let Some(account) = ledger.accounts.get_mut(&1) else {
                panic!("account 1")
            };
            let entry = account.entry_mut(crate::command::Wallet::Spot, 0);
            ledger.dirty.note_balance(&mut entry.listed, owner, 0);
        };
        let remove = |ledger: &mut Ledger| {
            if let Some(account) = ledger.accounts.get_mut(&1) {
                account.balances.retain(|s| s.asset != 0);
            }
        };
        let mut key = Vec::new();
        balance_key(&mut key, owner, "USDT");
        // Created, rolled back, created again by a deposit.
        touch(&mut ledger);
        remove(&mut ledger);
        let deposit = Command::Deposit(Deposit {
            account: 1,
            asset: "USDT".into(),
            amount: rust_decimal::Decimal::new(5, 0),
        });
        apply(&mut ledger, "c", deposit);
        assert_eq!(
            ledger
                .dirty
                .balances
                .iter()
                .filter(|b| b.0 == owner)
                .count(),
            2
        );
        let batch = drained(&mut ledger);
        let mine: Vec<_> = batch.iter().filter(|(k, _)| *k == key).collect();
        let mut value = Vec::new();
        balance_value(
            &mut value,
            Balance {
                available: 5_000_000,
                locked: 0,
            },
        );
        assert_eq!(mine, [&(key.clone(), Some(value))]);
        // Touched, removed, touched, removed: one delete.
        touch(&mut ledger);
        remove(&mut ledger);
        touch(&mut ledger);
        remove(&mut ledger);
        let batch = drained(&mut ledger);
        assert_eq!(batch, [(key, None)]);
        assert!(drained(&mut ledger).is_empty());
    }
}
