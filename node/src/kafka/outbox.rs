//! The events outbox: the Kafka records (key, `tally.v1.LedgerEvent` value)
//! that applying one log entry produced, written by the state machine in the
//! same atomic RocksDB batch as the state change, keyed by the entry's log
//! index, and deleted once a replicated published marker covers it.
//!
//! Row encoding (value of CF `outbox`, key = `u64` big-endian log index):
//! `u32` record count, then per record `u32` key length, key bytes, `u32`
//! value length, value bytes (all big-endian). Rows are built identically on
//! every node (the engine is deterministic), so event ids
//! (`<log_index>.<position>`) are the same whichever node publishes them.
//!
//! Which key an event gets (so that one account's events stay in one
//! partition, in order): see [`event_keys`].

use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;
use tally_ledger::{ApplyResult, Event, IngestFailure, IngestSource, Outcome, Owner};
use tally_proto::v1 as pb;

use crate::grpc::convert::event_to_pb;

/// Kafka header holding the event id.
pub const EVENT_ID_HEADER: &str = "tally-event-id";

/// Unpublished outbox size, shared by the state machine (adds and trims),
/// the publisher (reads) and the writer (refuses writes when full).
#[derive(Debug, Default)]
pub struct OutboxGauge {
    pub entries: AtomicU64,
    pub bytes: AtomicU64,
    /// Highest log index acknowledged by the events topic (replicated).
    pub published_up_to: AtomicU64,
    /// Bound on `bytes`; 0: no outbox (publishing off).
    pub max_bytes: u64,
}

impl OutboxGauge {
    pub fn new(max_bytes: u64) -> Self {
        OutboxGauge {
            max_bytes,
            ..OutboxGauge::default()
        }
    }

    /// True when the outbox holds `max_bytes` or more: writes are refused
    /// until the publisher catches up (events are never dropped).
    pub fn is_full(&self) -> bool {
        self.max_bytes > 0 && self.bytes.load(Ordering::Relaxed) >= self.max_bytes
    }

    pub fn added(&self, bytes: usize) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Sets the totals (after a trim, a snapshot install or at start).
    pub fn set(&self, entries: u64, bytes: u64) {
        self.entries.store(entries, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }
}

/// The published records of one entry, built while it is applied.
pub struct EntryEvents {
    log_index: u64,
    timestamp_ms: u64,
    count: u32,
    row: Vec<u8>,
    value: Vec<u8>,
}

impl EntryEvents {
    pub fn new(log_index: u64, timestamp_ms: u64) -> Self {
        EntryEvents {
            log_index,
            timestamp_ms,
            count: 0,
            row: 0u32.to_be_bytes().to_vec(),
            value: Vec::new(),
        }
    }

    fn push(&mut self, key: &str, command_id: &str, body: pb::ledger_event::Body) {
        let position = self.count;
        let event = pb::LedgerEvent {
            event_id: format!("{}.{position}", self.log_index),
            log_index: self.log_index,
            position,
            command_id: command_id.to_string(),
            timestamp_ms: self.timestamp_ms,
            body: Some(body),
        };
        self.value.clear();
        // Encoding into a Vec cannot fail (it grows as needed).
        let _ = event.encode(&mut self.value);
        for part in [key.as_bytes(), &self.value[..]] {
            // Keys are short; one event is far below 4 GiB.
            self.row
                .extend_from_slice(&(part.len() as u32).to_be_bytes());
            self.row.extend_from_slice(part);
        }
        self.count += 1;
    }

    /// Adds the events of an applied command (a rejected one publishes
    /// nothing here: its client got the reply; ingested rejections are
    /// added with `add_failure`).
    pub fn add_result(&mut self, command_id: &str, result: &ApplyResult) {
        let Outcome::Applied { events } = &result.outcome else {
            return;
        };
        for event in events {
            let pb_event = event_to_pb(event);
            let keys = event_keys(event);
            for key in keys.iter().flatten() {
                self.push(
                    key,
                    command_id,
                    pb::ledger_event::Body::Event(pb_event.clone()),
                );
            }
        }
    }

    /// Adds an ingest failure (keyed `ingest:TOPIC:PARTITION`).
    pub fn add_failure(&mut self, source: &IngestSource, failure: &IngestFailure) {
        let key = format!("ingest:{}:{}", source.topic, source.partition);
        let body = pb::ledger_event::Body::IngestFailure(pb::IngestFailure {
            topic: source.topic.clone(),
            partition: source.partition,
            offset: failure.offset,
            command_id: failure.command_id.clone(),
            code: failure.code.clone(),
            message: failure.message.clone(),
        });
        self.push(&key, &failure.command_id, body);
    }

    /// The row to store, or `None` if the entry published nothing.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        self.row[..4].copy_from_slice(&self.count.to_be_bytes());
        Some(self.row)
    }
}

/// One record of a row, borrowed.
pub struct OutboxRecord<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// The records of a stored row; an error if the row is malformed (a
/// corrupt outbox: the publisher stops and says so).
pub fn decode_row(row: &[u8]) -> Result<Vec<OutboxRecord<'_>>, String> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if rest.len() < n {
            return Err(format!(
                "outbox row truncated (need {n}, have {})",
                rest.len()
            ));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn u32_of(rest: &mut &[u8]) -> Result<usize, String> {
        let bytes = take(rest, 4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    }
    let mut rest = row;
    let count = u32_of(&mut rest)?;
    // Each record takes at least 8 bytes: a bad count cannot allocate much.
    let mut out = Vec::with_capacity(count.min(rest.len() / 8));
    for _ in 0..count {
        let key_len = u32_of(&mut rest)?;
        let key = take(&mut rest, key_len)?;
        let value_len = u32_of(&mut rest)?;
        let value = take(&mut rest, value_len)?;
        out.push(OutboxRecord { key, value });
    }
    if !rest.is_empty() {
        return Err(format!(
            "{} bytes after the outbox row's records",
            rest.len()
        ));
    }
    Ok(out)
}

fn owner_key(owner: Owner, asset: &str) -> String {
    match owner {
        Owner::Account(id) => id.to_string(),
        Owner::External => format!("system:external:{asset}"),
        Owner::Fees => format!("system:fees:{asset}"),
        Owner::Insurance => format!("system:insurance:{asset}"),
        // Every wallet of an account shares the account's key (and partition).
        Owner::Funding(id) | Owner::Margin(id) => id.to_string(),
    }
}

/// The Kafka keys an event is published under: one, or two for a trade
/// between two different accounts (once per side, so each account's
/// partition sees it). Client-account events are keyed by the account id in
/// decimal; market-wide ones `market:SYMBOL`; asset creation
/// `asset:SYMBOL`; system balances `system:OWNER:ASSET`; settings `system`.
pub fn event_keys(event: &Event) -> [Option<String>; 2] {
    let one = |key: String| [Some(key), None];
    let two = |a: u64, b: u64| [Some(a.to_string()), (a != b).then(|| b.to_string())];
    match event {
        Event::AssetCreated { symbol, .. } => one(format!("asset:{symbol}")),
        Event::AccountCreated { account } => one(account.to_string()),
        Event::Balance(b) => one(owner_key(b.owner, &b.asset)),
        Event::Hold { account, .. } => one(account.to_string()),
        Event::Fill { buyer, seller, .. } => two(*buyer, *seller),
        Event::PerpFill { buyer, seller, .. } => two(*buyer, *seller),
        Event::MarketCreated { market, .. }
        | Event::MarketPaused { market, .. }
        | Event::MarkPrice { market, .. }
        | Event::Pool { market, .. }
        | Event::Funding { market, .. }
        | Event::Settlement { market, .. }
        | Event::OptionFunding { market, .. }
        | Event::FundingRate { market, .. } => one(format!("market:{market}")),
        Event::Position { market, holder, .. } | Event::FundingPayment { market, holder, .. } => {
            match holder {
                Owner::Account(id) => one(id.to_string()),
                _ => one(format!("market:{market}")),
            }
        }
        Event::Liquidation { account, .. } | Event::Shortfall { account, .. } => {
            one(account.to_string())
        }
        Event::DedupWindowSet { .. } => one("system".to_string()),
        Event::AccountOpened { account, .. }
        | Event::WithdrawAllowed { account, .. }
        | Event::FeesSwept { account, .. } => one(account.to_string()),
        Event::TransferGrant { from, .. } => one(from.to_string()),
        Event::InsuranceFund { asset, .. } => one(format!("system:insurance:{asset}")),
        Event::LiquidationsDeferred { asset, .. } => one(format!("system:liquidations:{asset}")),
        Event::PairCreated { pair, .. } => one(format!("pair:{pair}")),
        Event::PairFill { buyer, seller, .. } => two(*buyer, *seller),
        Event::IsolatedMargin { account, .. } => one(account.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_ledger::Decimal;

    #[test]
    fn a_row_round_trips_with_positions_and_fan_out_per_trade_side() {
        let mut events = EntryEvents::new(42, 1_000);
        let fill = Event::Fill {
            buyer: 1,
            seller: 2,
            base_asset: "BTC".into(),
            quote_asset: "USD".into(),
            base_amount: Decimal::ONE,
            quote_amount: Decimal::TEN,
            buyer_fee: Decimal::ZERO,
            seller_fee: Decimal::ZERO,
        };
        let result = ApplyResult {
            outcome: Outcome::Applied {
                events: vec![fill, Event::AccountCreated { account: 3 }],
            },
            duplicate: false,
        };
        events.add_result("c1", &result);
        let row = events.finish().expect("a row");
        let records = decode_row(&row).expect("decodes");
        let keys: Vec<&[u8]> = records.iter().map(|r| r.key).collect();
        assert_eq!(keys, vec![&b"1"[..], b"2", b"3"]);
        let last = pb::LedgerEvent::decode(records[2].value).expect("an event");
        assert_eq!((last.event_id.as_str(), last.position), ("42.2", 2));
        assert_eq!(last.command_id, "c1");
        assert!(decode_row(&row[..row.len() - 1]).is_err());
    }

    #[test]
    fn an_entry_without_events_stores_no_row() {
        let mut events = EntryEvents::new(1, 1);
        let rejected = ApplyResult {
            outcome: Outcome::Applied { events: vec![] },
            duplicate: true,
        };
        events.add_result("c", &rejected);
        assert!(events.finish().is_none());
    }
}
