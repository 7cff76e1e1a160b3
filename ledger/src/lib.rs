//! Tally's ledger engine: a pure, deterministic state machine over assets,
//! client accounts, per-asset system accounts (External, Fees, Insurance),
//! holds (order locks) and an idempotency table. No I/O, no clock (time comes
//! with each command), no floats, no unordered iteration reaching output.
//!
//! `Ledger::apply` (and `apply_quiet`, the same without building events) is
//! the only mutator. Every movement is double-entry, so each asset sums to
//! zero over all owners (`check_invariants`). The state is persisted as
//! key/value records (`drain_dirty` or `take_dirty`, `records`,
//! `from_records`; encoding documented in [`records`]) and summarized by
//! `state_hash`.
//!
//! Perpetual futures: linear markets settled in an asset, one-way positions
//! with an exact cost basis, mark prices, funding, cross margin over the
//! settle balance, tiered maintenance margin, liquidation against the
//! insurance fund and auto-deleveraging. See `Command::CreateMarket` and the
//! `perp`, `liquidation` and `risk` modules for the rules and rounding.
//!
//! Dated futures, inverse (coin-margined) perpetuals and futures, options
//! (calls and puts, expiring or perpetual) and the funding rate from the
//! premium index share that machinery: one instrument registry
//! (`market::Instrument`), settlement and exercise at one stated price (the
//! `expiry` and `options` modules), perpetual-option funding and
//! `ApplyPremiumFunding` with the market's clamp (`funding_rate`),
//! delta-equivalent exposure per underlying (`Ledger::delta_exposure`, with
//! the pricer's option deltas from `SetOptionMark`). A liquidation index
//! (`liq_index`) keeps a mark price from scanning every holder, and the
//! liquidations and checks of one command are bounded (`liquidation`).
//!
//! Kafka ingest: the consumed position of every partition that feeds the
//! ledger is ledger state, and `Ledger::apply_ingest` applies a batch of
//! records only from that position (the `ingest` module).
//!
//! Rejections are replicated as a code plus typed detail (`Rejection`,
//! `RejectDetail`); their messages are rendered at the edge
//! (`Rejection::message`). Every command is one transaction over one undo
//! journal (the `journal` module), and broken invariants stop the replica
//! (see the `engine` module).

#![forbid(unsafe_code)]

mod account_views;
mod accounts;
mod amount;
mod codec;
mod command;
mod dedup;
mod engine;
mod events;
mod expiry;
mod funding_rate;
mod hash;
mod history;
mod ingest;
mod invariants;
mod isolated;
mod journal;
mod liq_index;
mod liquidation;
mod market;
mod options;
mod orders;
mod pairs;
mod perp;
mod perp_views;
pub mod records;
mod reject;
mod risk;
mod state;
mod version;
mod views;
mod wide;
mod wire;

pub use account_views::*;
pub use command::*;
pub use engine::*;
pub use history::{HistoryView, MAX_HISTORY_PER_ACCOUNT};
pub use ingest::{
    IngestBatch, IngestBatchWriter, IngestBody, IngestFailure, IngestOutcome, IngestPosition,
    IngestRecord, IngestRecordResult, IngestSource, MALFORMED_RECORD, MAX_INGEST_BATCH_RECORDS,
    MAX_INGEST_FAILURES_KEPT, MAX_INGEST_REASON_BYTES, MAX_INGEST_SOURCES, decode_ingest_batch,
    is_valid_topic,
};
pub use liquidation::{MAX_LIQUIDATION_CHECKS_PER_COMMAND, MAX_LIQUIDATIONS_PER_COMMAND};
pub use perp_views::*;
pub use records::{RecordError, RecordKind};
pub use reject::{Field, MAX_DETAIL_TEXT_CHARS, RejectDetail, Rejection, Side};
pub use version::{BASE_CLUSTER_VERSION, MAX_CLUSTER_VERSION, UnsupportedClusterVersion};
pub use views::*;
pub use wire::{
    DecodedCommand, Fingerprint, WIRE_VERSION, WireError, decode_envelope, encode_envelope,
};

/// The decimal type of every amount in commands, events and views.
pub use rust_decimal::Decimal;
