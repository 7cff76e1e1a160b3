//! Exactly-once ingest positions: where each Kafka topic partition that feeds
//! the ledger has been consumed up to, as replicated ledger state, and the
//! records that failed (undecodable, or rejected by the engine), kept with
//! their offset and reason.
//!
//! The node's ingester (leader only) turns a run of records of one partition
//! into an [`IngestBatch`]: the offset it believes comes next
//! (`start_offset`) and the records, each a decoded command or a
//! `Malformed` marker with the reason it could not be decoded.
//! [`Ledger::apply_ingest`] applies the batch only if `start_offset` is the
//! stored next offset of that partition (a fence: a stale ingester on a
//! former leader, or a batch proposed twice, is refused whole with
//! [`IngestOutcome::Fenced`] and changes nothing); then it applies every
//! command as `Ledger::apply` would, records every failure, and moves the
//! partition's next offset past the batch's last record. Offsets may have
//! gaps (Kafka control records); the next batch starts where the last one
//! ended.
//!
//! Bounds: at most [`MAX_INGEST_SOURCES`] partitions, at most
//! [`MAX_INGEST_BATCH_RECORDS`] records per batch, reasons of at most
//! [`MAX_INGEST_REASON_BYTES`] bytes, and the newest
//! [`MAX_INGEST_FAILURES_KEPT`] failures per partition (older ones are
//! dropped; the count of all failures is kept).
//!
//! Batch encoding (what a Raft entry carries; `wire` primitives):
//!
//! ```text
//! batch  = string topic, u32 partition, u64 start_offset, u32 count (1..=4096), count records
//! record = u64 gap (offset - start_offset for the first record, else
//!          offset - previous offset - 1), u8 kind, then
//!          kind 0: an envelope (wire::encode_envelope)
//!          kind 1: string reason (at most 256 bytes): a record that did not decode
//! ```

use std::collections::BTreeMap;

use crate::command::{ApplyResult, Envelope, Outcome};
use crate::engine::Ledger;
use crate::state::DirtyKey;
use crate::wire::{self, DecodedCommand, WireError, WireField, WireReader};

/// Most partitions the ledger tracks; a batch for another one is refused.
pub const MAX_INGEST_SOURCES: usize = 1024;
/// Most records in one batch (one Raft entry's worth of commands).
pub const MAX_INGEST_BATCH_RECORDS: usize = 4096;
/// Longest failure reason carried or kept, in bytes.
pub const MAX_INGEST_REASON_BYTES: usize = 256;
/// Failures kept per partition (the newest; older are dropped).
pub const MAX_INGEST_FAILURES_KEPT: usize = 1000;
/// The failure code of a record that did not decode as a command.
pub const MALFORMED_RECORD: &str = "MALFORMED_RECORD";

/// One Kafka topic partition that feeds the ledger.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IngestSource {
    pub topic: String,
    pub partition: u32,
}

/// Kafka's rule for topic names: 1..=249 of `[a-zA-Z0-9._-]`.
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Where a partition stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestPosition {
    /// The offset the next batch must start at (0 for a partition never seen).
    pub next_offset: u64,
    /// Records whose command was applied (or rejected: see `failed_records`).
    pub applied_records: u64,
    /// Records whose command id was already applied (a retry): no effect.
    pub duplicate_records: u64,
    /// Records that did not decode or whose command was rejected.
    pub failed_records: u64,
}

/// A record that failed, kept with its offset and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestFailure {
    pub offset: u64,
    /// The command id, if the record decoded.
    pub command_id: String,
    /// A reject code name (`RejectCode::as_str`) or `MALFORMED_RECORD`.
    pub code: String,
    pub message: String,
}

/// One record of a batch.
// Most records are commands; since `CreateOption` (15 fields) a command is
// far larger than a malformed record's reason, and boxing it would cost an
// allocation per ingested command to save bytes on the rare malformed one.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestBody {
    Command(DecodedCommand),
    /// The record's bytes are not a command; `reason` says why.
    Malformed {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestRecord {
    pub offset: u64,
    pub body: IngestBody,
}

/// A run of records of one partition, as the ingester proposes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestBatch {
    pub source: IngestSource,
    /// Must equal the partition's stored next offset.
    pub start_offset: u64,
    /// Non-empty, offsets strictly increasing from `start_offset` on.
    pub records: Vec<IngestRecord>,
}

/// What became of one record of an applied batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestRecordResult {
    pub offset: u64,
    /// The command's result (`None` for a malformed record).
    pub result: Option<ApplyResult>,
    /// Set when the record failed (what the ledger recorded).
    pub failure: Option<IngestFailure>,
}

/// The outcome of `Ledger::apply_ingest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Applied; one result per record, in order.
    Applied {
        results: Vec<IngestRecordResult>,
        next_offset: u64,
    },
    /// Refused whole: the batch does not start at the stored next offset.
    Fenced { expected_offset: u64 },
    /// Refused whole: the ledger tracks `MAX_INGEST_SOURCES` partitions already.
    TooManySources,
}

/// A partition's position and its kept failures, by offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SourceState {
    pub source: IngestSource,
    pub position: IngestPosition,
    pub failures: BTreeMap<u64, IngestFailure>,
}

/// Every partition the ledger has ingested from, by index (creation order)
/// and by name.
#[derive(Clone, Debug, Default)]
pub(crate) struct IngestTable {
    pub sources: Vec<SourceState>,
    pub index: BTreeMap<IngestSource, u32>,
}

impl IngestTable {
    /// Adds a partition (restore and first batch); its index.
    pub fn insert(&mut self, state: SourceState) -> u32 {
        // At most MAX_INGEST_SOURCES (checked by the callers), far below u32::MAX.
        let idx = self.sources.len() as u32;
        self.index.insert(state.source.clone(), idx);
        self.sources.push(state);
        idx
    }
}

/// Builds the encoding of a batch record by record (the ingester's side).
pub struct IngestBatchWriter {
    header: Vec<u8>,
    body: Vec<u8>,
    count: u32,
    next: u64,
    last_offset: Option<u64>,
}

impl IngestBatchWriter {
    /// A batch of `source` starting at `start_offset` (the stored next offset).
    pub fn new(source: &IngestSource, start_offset: u64) -> Self {
        let mut header = Vec::with_capacity(source.topic.len() + 16);
        source.topic.put(&mut header);
        source.partition.put(&mut header);
        start_offset.put(&mut header);
        IngestBatchWriter {
            header,
            body: Vec::new(),
            count: 0,
            next: start_offset,
            last_offset: None,
        }
    }

    /// Records so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The offset after the last record (the start offset while empty).
    pub fn end_offset(&self) -> u64 {
        self.next
    }

    /// Bytes of the encoded batch so far.
    pub fn encoded_len(&self) -> usize {
        self.header.len() + self.body.len() + 5
    }

    fn push_gap(&mut self, offset: u64) -> bool {
        if offset < self.next || self.len() >= MAX_INGEST_BATCH_RECORDS {
            return false;
        }
        (offset - self.next).put(&mut self.body);
        self.next = offset + 1;
        self.last_offset = Some(offset);
        self.count += 1;
        true
    }

    /// Adds a record that decoded to `envelope`. False (nothing added) if
    /// `offset` is not after the last record or the batch is full.
    pub fn push_command(&mut self, offset: u64, envelope: &Envelope) -> bool {
        if !self.push_gap(offset) {
            return false;
        }
        self.body.push(0);
        wire::encode_envelope(envelope, &mut self.body);
        true
    }

    /// Adds a record that did not decode, with the reason (cut to
    /// `MAX_INGEST_REASON_BYTES` at a character boundary).
    pub fn push_malformed(&mut self, offset: u64, reason: &str) -> bool {
        if !self.push_gap(offset) {
            return false;
        }
        self.body.push(1);
        cut(reason, MAX_INGEST_REASON_BYTES)
            .to_string()
            .put(&mut self.body);
        true
    }

    /// The encoded batch and its record count.
    pub fn finish(self) -> (Vec<u8>, u32) {
        let mut out = self.header;
        self.count.put(&mut out);
        out.extend_from_slice(&self.body);
        (out, self.count)
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Decodes a batch (strictly: a bad topic, an empty or oversized batch, an
/// offset overflow, a longer reason or trailing bytes is an error).
pub fn decode_ingest_batch(bytes: &[u8]) -> Result<IngestBatch, String> {
    let mut reader = WireReader::new(bytes);
    let wire = |e: WireError| e.to_string();
    let topic = String::read(&mut reader).map_err(wire)?;
    if !is_valid_topic(&topic) {
        return Err(format!("bad topic name {:?}", cut(&topic, 64)));
    }
    let partition = u32::read(&mut reader).map_err(wire)?;
    let start_offset = u64::read(&mut reader).map_err(wire)?;
    let count = u32::read(&mut reader).map_err(wire)? as usize;
    if count == 0 || count > MAX_INGEST_BATCH_RECORDS {
        return Err(format!(
            "batch of {count} records (1..={MAX_INGEST_BATCH_RECORDS})"
        ));
    }
    let mut records = Vec::with_capacity(count);
    let mut next = start_offset;
    for _ in 0..count {
        let gap = u64::read(&mut reader).map_err(wire)?;
        let offset = next
            .checked_add(gap)
            .filter(|o| *o < u64::MAX)
            .ok_or("record offset overflows")?;
        next = offset + 1;
        let body = match reader.u8().map_err(wire)? {
            0 => {
                let (command, used) = wire::decode_envelope(reader.rest_bytes()).map_err(wire)?;
                reader.skip(used);
                IngestBody::Command(command)
            }
            1 => {
                let reason = String::read(&mut reader).map_err(wire)?;
                if reason.len() > MAX_INGEST_REASON_BYTES {
                    return Err(format!("reason of {} bytes", reason.len()));
                }
                IngestBody::Malformed { reason }
            }
            kind => return Err(format!("unknown record kind {kind}")),
        };
        records.push(IngestRecord { offset, body });
    }
    if !reader.rest_bytes().is_empty() {
        return Err(format!(
            "{} bytes after the batch",
            reader.rest_bytes().len()
        ));
    }
    Ok(IngestBatch {
        source: IngestSource { topic, partition },
        start_offset,
        records,
    })
}

impl Ledger {
    /// Applies an ingest batch at leader time `now_ms` (see the module
    /// docs). Deterministic; never panics on any batch. `detailed` as for
    /// `apply_decoded`.
    pub fn apply_ingest(
        &mut self,
        batch: &IngestBatch,
        now_ms: u64,
        detailed: bool,
    ) -> IngestOutcome {
        let found = self.ingest.index.get(&batch.source).copied();
        let expected_offset = found
            .map(|idx| self.ingest.sources[idx as usize].position.next_offset)
            .unwrap_or(0);
        if batch.start_offset != expected_offset {
            return IngestOutcome::Fenced { expected_offset };
        }
        let Some(last) = batch.records.last() else {
            // Decoded batches are never empty; an empty one changes nothing.
            return IngestOutcome::Applied {
                results: Vec::new(),
                next_offset: expected_offset,
            };
        };
        let next_offset = last.offset.saturating_add(1);
        let idx = match found {
            Some(idx) => idx,
            None if self.ingest.sources.len() >= MAX_INGEST_SOURCES => {
                return IngestOutcome::TooManySources;
            }
            None => self.ingest.insert(SourceState {
                source: batch.source.clone(),
                position: IngestPosition::default(),
                failures: BTreeMap::new(),
            }),
        };
        let mut results = Vec::with_capacity(batch.records.len());
        for record in &batch.records {
            let (result, failure) = match &record.body {
                IngestBody::Command(command) => {
                    let result = self.apply_decoded(command, now_ms, detailed);
                    let failure = match &result.outcome {
                        Outcome::Rejected(rejection) => Some(IngestFailure {
                            offset: record.offset,
                            command_id: command.envelope.command_id.0.clone(),
                            code: rejection.code.as_str().to_string(),
                            message: cut(&rejection.message(), MAX_INGEST_REASON_BYTES).to_string(),
                        }),
                        Outcome::Applied { .. } => None,
                    };
                    (Some(result), failure)
                }
                IngestBody::Malformed { reason } => (
                    None,
                    Some(IngestFailure {
                        offset: record.offset,
                        command_id: String::new(),
                        code: MALFORMED_RECORD.to_string(),
                        message: reason.clone(),
                    }),
                ),
            };
            self.note_ingested(idx, &result, failure.clone());
            results.push(IngestRecordResult {
                offset: record.offset,
                result,
                failure,
            });
        }
        let position = &mut self.ingest.sources[idx as usize].position;
        assert!(
            next_offset > position.next_offset,
            "invariant broken: an ingest batch moves a partition backwards"
        );
        position.next_offset = next_offset;
        self.dirty.push(DirtyKey::IngestSource(idx));
        IngestOutcome::Applied {
            results,
            next_offset,
        }
    }

    /// Counts one record of partition `idx` and keeps its failure, if any
    /// (dropping the oldest kept one beyond the bound).
    fn note_ingested(
        &mut self,
        idx: u32,
        result: &Option<ApplyResult>,
        failure: Option<IngestFailure>,
    ) {
        let state = &mut self.ingest.sources[idx as usize];
        let counter = match (&failure, result) {
            (Some(_), _) => &mut state.position.failed_records,
            (None, Some(r)) if r.duplicate => &mut state.position.duplicate_records,
            (None, _) => &mut state.position.applied_records,
        };
        *counter = counter.saturating_add(1);
        if let Some(failure) = failure {
            let offset = failure.offset;
            state.failures.insert(offset, failure);
            self.dirty.push(DirtyKey::IngestFailure(idx, offset));
            if state.failures.len() > MAX_INGEST_FAILURES_KEPT
                && let Some((oldest, _)) = state.failures.pop_first()
            {
                self.dirty.push(DirtyKey::IngestFailure(idx, oldest));
            }
        }
    }

    /// Every partition's position, ordered by (topic, partition).
    pub fn ingest_positions(&self) -> Vec<(IngestSource, IngestPosition)> {
        self.ingest
            .index
            .iter()
            .map(|(source, idx)| (source.clone(), self.ingest.sources[*idx as usize].position))
            .collect()
    }

    /// The kept failures of `source` at offsets `>= from_offset`, oldest
    /// first, at most `limit`.
    pub fn ingest_failures(
        &self,
        source: &IngestSource,
        from_offset: u64,
        limit: usize,
    ) -> Vec<IngestFailure> {
        let Some(idx) = self.ingest.index.get(source) else {
            return Vec::new();
        };
        self.ingest.sources[*idx as usize]
            .failures
            .range(from_offset..)
            .take(limit)
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// The ingest table's invariants: indexes agree, kept failures are
    /// within the bound and before the next offset.
    pub(crate) fn check_ingest(&self) -> Result<(), String> {
        let table = &self.ingest;
        if table.index.len() != table.sources.len() || table.sources.len() > MAX_INGEST_SOURCES {
            return Err("ingest index and table differ or exceed the bound".into());
        }
        for (i, state) in table.sources.iter().enumerate() {
            if table.index.get(&state.source).map(|idx| *idx as usize) != Some(i) {
                return Err(format!(
                    "ingest source {:?} missing from the index",
                    state.source
                ));
            }
            if state.failures.len() > MAX_INGEST_FAILURES_KEPT {
                return Err(format!("{:?} keeps too many failures", state.source));
            }
            if let Some((last, _)) = state.failures.last_key_value()
                && *last >= state.position.next_offset
            {
                return Err(format!(
                    "{:?} has a failure at {last}, not before its next offset",
                    state.source
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, CommandId, CreateAsset, Deposit};
    use crate::engine::LedgerConfig;
    use rust_decimal::Decimal;

    fn source() -> IngestSource {
        IngestSource {
            topic: "fills".into(),
            partition: 3,
        }
    }

    fn deposit(id: &str, amount: i64) -> Envelope {
        Envelope {
            command_id: CommandId(id.into()),
            command: Command::Deposit(Deposit {
                account: 7,
                asset: "USD".into(),
                amount: Decimal::new(amount, 0),
            }),
        }
    }

    fn ledger() -> Ledger {
        let mut ledger = Ledger::new(LedgerConfig::default());
        for (id, command) in [
            (
                "a",
                Command::CreateAsset(CreateAsset {
                    symbol: "USD".into(),
                    scale: 2,
                }),
            ),
            (
                "b",
                Command::CreateAccount(crate::command::CreateAccount { account: 7 }),
            ),
        ] {
            let result = ledger.apply(
                &Envelope {
                    command_id: CommandId(id.into()),
                    command,
                },
                1,
            );
            assert!(matches!(result.outcome, Outcome::Applied { .. }));
        }
        ledger
    }

    fn batch(start: u64, items: &[(u64, Option<Envelope>)]) -> IngestBatch {
        let mut writer = IngestBatchWriter::new(&source(), start);
        for (offset, envelope) in items {
            let pushed = match envelope {
                Some(e) => writer.push_command(*offset, e),
                None => writer.push_malformed(*offset, "not a tally.v1.Command"),
            };
            assert!(pushed);
        }
        let (bytes, count) = writer.finish();
        let decoded = decode_ingest_batch(&bytes).expect("decodes");
        assert_eq!(decoded.records.len(), count as usize);
        decoded
    }

    fn available(ledger: &Ledger) -> Decimal {
        ledger
            .balance(crate::command::Owner::Account(7), "USD")
            .map(|b| b.available)
            .unwrap_or_default()
    }

    #[test]
    fn a_batch_applies_once_and_a_replayed_batch_is_fenced_without_effect() {
        let mut ledger = ledger();
        let first = batch(
            0,
            &[(0, Some(deposit("d1", 5))), (2, Some(deposit("d2", 7)))],
        );
        let outcome = ledger.apply_ingest(&first, 10, false);
        assert!(matches!(
            outcome,
            IngestOutcome::Applied { next_offset: 3, .. }
        ));
        assert_eq!(available(&ledger), Decimal::new(12, 0));
        let hash = ledger.state_hash();
        // The same batch again (a stale ingester): refused whole.
        assert_eq!(
            ledger.apply_ingest(&first, 11, false),
            IngestOutcome::Fenced { expected_offset: 3 }
        );
        // A batch that skips ahead: refused too.
        let ahead = batch(4, &[(4, Some(deposit("d3", 1)))]);
        assert_eq!(
            ledger.apply_ingest(&ahead, 11, false),
            IngestOutcome::Fenced { expected_offset: 3 }
        );
        assert_eq!(ledger.state_hash(), hash);
        let position = ledger.ingest_positions()[0].1;
        assert_eq!(position.next_offset, 3);
        assert_eq!(position.applied_records, 2);
    }

    #[test]
    fn malformed_and_rejected_records_are_recorded_and_the_partition_moves_on() {
        let mut ledger = ledger();
        let unknown_account = Envelope {
            command_id: CommandId("bad".into()),
            command: Command::Deposit(Deposit {
                account: 99,
                asset: "USD".into(),
                amount: Decimal::new(1, 0),
            }),
        };
        let b = batch(
            0,
            &[
                (0, None),
                (1, Some(unknown_account)),
                (2, Some(deposit("ok", 3))),
            ],
        );
        let IngestOutcome::Applied {
            results,
            next_offset,
        } = ledger.apply_ingest(&b, 10, true)
        else {
            panic!("applied");
        };
        assert_eq!(next_offset, 3);
        assert_eq!(
            results[0].failure.as_ref().map(|f| f.code.as_str()),
            Some(MALFORMED_RECORD)
        );
        assert_eq!(
            results[1].failure.as_ref().map(|f| f.code.as_str()),
            Some("UNKNOWN_ACCOUNT")
        );
        assert!(results[2].failure.is_none());
        assert_eq!(available(&ledger), Decimal::new(3, 0));
        let failures = ledger.ingest_failures(&source(), 0, 10);
        assert_eq!(
            failures.iter().map(|f| f.offset).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(failures[1].command_id, "bad");
        let position = ledger.ingest_positions()[0].1;
        assert_eq!((position.applied_records, position.failed_records), (1, 2));
        ledger.check_invariants().expect("invariants");
    }

    #[test]
    fn ingest_state_survives_records_round_trip_with_the_same_hash() {
        let mut ledger = ledger();
        ledger.apply_ingest(
            &batch(0, &[(0, None), (5, Some(deposit("x", 2)))]),
            10,
            false,
        );
        let _ = ledger.take_dirty();
        let restored =
            Ledger::from_records(LedgerConfig::default(), ledger.records()).expect("restores");
        assert_eq!(restored.state_hash(), ledger.state_hash());
        assert_eq!(restored.ingest_positions(), ledger.ingest_positions());
        assert_eq!(
            restored.ingest_failures(&source(), 0, 10),
            ledger.ingest_failures(&source(), 0, 10)
        );
    }

    #[test]
    fn kept_failures_are_bounded_and_the_dirty_stream_matches_the_records() {
        let mut ledger = ledger();
        let mut store: BTreeMap<Vec<u8>, Vec<u8>> = ledger.records().into_iter().collect();
        let mut next = 0u64;
        for _ in 0..3 {
            let items: Vec<(u64, Option<Envelope>)> =
                (next..next + 400).map(|o| (o, None)).collect();
            ledger.apply_ingest(&batch(next, &items), 10, false);
            next += 400;
            for (key, value) in ledger.take_dirty() {
                match value {
                    Some(v) => store.insert(key, v),
                    None => store.remove(&key),
                };
            }
        }
        let failures = ledger.ingest_failures(&source(), 0, usize::MAX);
        assert_eq!(failures.len(), MAX_INGEST_FAILURES_KEPT);
        assert_eq!(failures[0].offset, 1200 - MAX_INGEST_FAILURES_KEPT as u64);
        assert_eq!(ledger.ingest_positions()[0].1.failed_records, 1200);
        assert_eq!(store.into_iter().collect::<Vec<_>>(), ledger.records());
    }

    #[test]
    fn bad_batch_bytes_are_refused_by_the_decoder() {
        let (mut bytes, _) = {
            let mut w = IngestBatchWriter::new(&source(), 0);
            assert!(w.push_malformed(0, "x"));
            w.finish()
        };
        assert!(decode_ingest_batch(&bytes).is_ok());
        bytes.push(0);
        assert!(decode_ingest_batch(&bytes).is_err());
        let (empty, _) = IngestBatchWriter::new(&source(), 0).finish();
        assert!(decode_ingest_batch(&empty).is_err());
        let bad_topic = IngestSource {
            topic: "no spaces".into(),
            partition: 0,
        };
        let mut w = IngestBatchWriter::new(&bad_topic, 0);
        assert!(w.push_malformed(0, "x"));
        assert!(decode_ingest_batch(&w.finish().0).is_err());
        // Offsets must increase.
        let mut w = IngestBatchWriter::new(&source(), 5);
        assert!(!w.push_malformed(4, "before the start"));
        assert!(w.push_malformed(5, "x"));
        assert!(!w.push_malformed(5, "again"));
    }
}
