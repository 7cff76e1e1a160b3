//! The idempotency table: the remembered outcome of every validated command
//! id, kept for `dedup_window_ms` of leader time, plus the dedup clock.
//!
//! Time model: `max_seen_now_ms` is the largest `now_ms` of any remembered
//! command (never decreases, so a leader whose clock is behind after a
//! failover cannot shorten the window). Each entry is stamped with the clock
//! after its command, so stamps never decrease in insertion order. At time
//! `now = max(max_seen_now_ms, now_ms)` the horizon is `now - window`; an
//! entry with `stamp < horizon` is expired: it no longer answers retries and
//! is evicted (oldest first) when the next new command is remembered.
//! Because every entry with `stamp < horizon` is evicted at once, the order
//! of entries with equal stamps never matters, so a table rebuilt from
//! records (ordered by stamp, then id) behaves exactly like the original.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::codec::{self, Fingerprint};
use crate::command::{Outcome, RejectCode, Rejection};

/// One remembered command. The outcome is kept encoded (`codec`): one
/// allocation instead of one per event, a fraction of the memory, and
/// `take_dirty` copies it instead of re-encoding. Only a retry decodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DedupEntry {
    /// The dedup clock right after the command was applied.
    pub stamp_ms: u64,
    pub fingerprint: Fingerprint,
    pub outcome: Box<[u8]>,
}

impl DedupEntry {
    pub fn new(stamp_ms: u64, fingerprint: Fingerprint, outcome: &Outcome) -> Self {
        let mut bytes = Vec::with_capacity(512);
        codec::put_outcome(&mut bytes, outcome);
        DedupEntry {
            stamp_ms,
            fingerprint,
            outcome: bytes.into_boxed_slice(),
        }
    }

    /// The remembered outcome. The bytes were written by `new` or checked by
    /// `from_records`, so decoding cannot fail; if it ever did, the retry
    /// gets a rejection saying so rather than a panic.
    pub fn outcome(&self) -> Outcome {
        let mut reader = codec::Reader::new(&self.outcome);
        let decoded = codec::read_outcome(&mut reader).and_then(|o| reader.finish().map(|()| o));
        debug_assert!(decoded.is_ok(), "stored outcome unreadable: {decoded:?}");
        decoded.unwrap_or_else(|e| {
            Outcome::Rejected(Rejection {
                code: RejectCode::CommandIdReused,
                message: format!("the remembered outcome of this command id is unreadable: {e}"),
            })
        })
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct DedupTable {
    pub entries: FxHashMap<String, DedupEntry>,
    /// (stamp, id) in insertion order: stamps non-decreasing.
    pub order: VecDeque<(u64, String)>,
    pub max_seen_now_ms: u64,
    /// Ids evicted since the last `take_dirty` that had been handed out before.
    evicted_since_take: Vec<String>,
    /// The last `new_since_take` entries of `order` were inserted since the
    /// last `take_dirty`.
    new_since_take: usize,
}

impl DedupTable {
    /// The entry for `id` if it is still inside the window ending at `horizon`.
    pub fn live(&self, id: &str, horizon_ms: u64) -> Option<&DedupEntry> {
        self.entries
            .get(id)
            .filter(|entry| entry.stamp_ms >= horizon_ms)
    }

    /// Moves the clock forward to `now_ms`; true if it moved.
    pub fn advance_clock(&mut self, now_ms: u64) -> bool {
        if now_ms > self.max_seen_now_ms {
            self.max_seen_now_ms = now_ms;
            true
        } else {
            false
        }
    }

    /// Evicts every entry stamped before `horizon_ms`, oldest first.
    pub fn evict_before(&mut self, horizon_ms: u64) {
        while let Some((stamp_ms, _)) = self.order.front() {
            if *stamp_ms >= horizon_ms {
                break;
            }
            let was_new = self.order.len() <= self.new_since_take;
            let Some((_, id)) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&id);
            if was_new {
                // Never handed out by take_dirty: nothing to delete.
                self.new_since_take -= 1;
            } else {
                self.evicted_since_take.push(id);
            }
        }
    }

    /// Remembers a new command. `id` must not be present (the caller evicted
    /// any expired entry with that id first).
    pub fn insert(&mut self, id: String, entry: DedupEntry) {
        debug_assert!(!self.entries.contains_key(&id));
        debug_assert!(
            self.order
                .back()
                .is_none_or(|(stamp, _)| *stamp <= entry.stamp_ms)
        );
        self.order.push_back((entry.stamp_ms, id.clone()));
        self.entries.insert(id, entry);
        self.new_since_take += 1;
    }

    /// Rebuilds the table from restored entries (any order).
    pub fn restore(max_seen_now_ms: u64, mut entries: Vec<(String, DedupEntry)>) -> DedupTable {
        entries.sort_unstable_by(|(a_id, a), (b_id, b)| {
            (a.stamp_ms, a_id.as_str()).cmp(&(b.stamp_ms, b_id.as_str()))
        });
        let mut table = DedupTable {
            max_seen_now_ms,
            ..DedupTable::default()
        };
        for (id, entry) in entries {
            table.order.push_back((entry.stamp_ms, id.clone()));
            table.entries.insert(id, entry);
        }
        table
    }

    /// Ids whose records changed since the last call: the evicted ids, and
    /// the entries inserted since (the newest of `order`). An id may be in both.
    pub fn take_dirty(&mut self) -> (Vec<String>, impl Iterator<Item = (&str, &DedupEntry)>) {
        let evicted = std::mem::take(&mut self.evicted_since_take);
        let new = std::mem::take(&mut self.new_since_take);
        let skip = self.order.len().saturating_sub(new);
        let entries = &self.entries;
        let inserted = self
            .order
            .iter()
            .skip(skip)
            .filter_map(move |(_, id)| entries.get(id).map(|entry| (id.as_str(), entry)));
        (evicted, inserted)
    }

    /// Checks the table's own consistency.
    pub fn check(&self) -> Result<(), String> {
        if self.entries.len() != self.order.len() {
            return Err(format!(
                "dedup table has {} entries but {} in eviction order",
                self.entries.len(),
                self.order.len()
            ));
        }
        let mut previous = 0;
        for (stamp_ms, id) in &self.order {
            let Some(entry) = self.entries.get(id) else {
                return Err(format!(
                    "dedup id {id:?} in eviction order but not in the table"
                ));
            };
            if entry.stamp_ms != *stamp_ms || *stamp_ms < previous {
                return Err(format!("dedup id {id:?} out of stamp order"));
            }
            if *stamp_ms > self.max_seen_now_ms {
                return Err(format!("dedup id {id:?} stamped after the dedup clock"));
            }
            previous = *stamp_ms;
        }
        Ok(())
    }
}
