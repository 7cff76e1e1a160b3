//! The idempotency table: the verdict (applied, or rejected with its code
//! and typed detail, never a rendered message) of every validated command
//! id, kept for `dedup_window_ms` of leader time, plus the dedup clock.
//!
//! Contract (like TigerBeetle's `exists` results): only the verdict is
//! remembered, never the events. A retry of an applied command returns
//! `Outcome::Applied { events: vec![] }` with `duplicate: true` (events are
//! delivered once, with the first reply); a retry of a rejected command
//! returns the identical `Rejection`, also with `duplicate: true`. A retry
//! is recognized by the command id plus a 128-bit fingerprint of the
//! command's canonical encoding (`wire::fingerprint`), so a retry that
//! writes `1.50` as `1.5` is the same command and a different body under the
//! same id is `CommandIdReused`.
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
//!
//! The window is replicated ledger state (`Ledger::dedup_window_ms`):
//! initially `LedgerConfig::dedup_window_ms`, persisted in the meta record
//! and changed only by `Command::SetDedupWindow` through the log, so every
//! replica uses the same window at the same log position. A change takes
//! effect from the next command on: the `SetDedupWindow` command itself is
//! looked up, evicts and is stamped under the old window. Every later
//! command computes its horizon with the new one, so:
//! - shrinking: every entry with `stamp < now - new_window` is expired at
//!   once — a retry of such an id is applied as a new command — and the
//!   next new command evicts all of them in one go (its dirty batch deletes
//!   their records); nothing is evicted by the change itself;
//! - growing: every entry still remembered stays until the later horizon
//!   passes it; ids evicted before the change stay forgotten.
//!
//! With the window the steady-state size is about `window_ms / 1000 ×
//! commands per second` entries (see Memory below for the bytes per entry):
//! a run shorter than the window only ever grows the table.
//!
//! Memory: entries live in one ring (`VecDeque`, oldest first) that is also
//! the eviction order, and a hash index maps each id to its entry's sequence
//! number, so an id is stored once. An id of up to [`INLINE_ID_BYTES`] bytes
//! (the client's 35-byte `tc-<32 hex>` ids included) lives inline in the
//! entry: an applied command costs one 72-byte entry plus an 8-byte index
//! slot and its control byte, and no heap allocation of its own. Longer ids
//! (up to 64 bytes) and rejections take one allocation each (a rejection's
//! detail strings one more each). With
//! the ring's and the index's spare capacity, measured: about 94 bytes per
//! remembered command at 1,000,000 entries and 106 at 100,000 (up to ~160
//! right after the ring doubles), against ~400 to ~1,000 bytes per command
//! when whole outcomes were kept.
//!
//! The index hashes ids with a fixed-key hash (xxh3): it never reaches
//! output, but ids are client-chosen, so a client able to craft colliding
//! ids could slow its own lookups (as with the `FxHashMap` it replaced).

use std::collections::VecDeque;

use hashbrown::HashTable;

use crate::command::Outcome;
use crate::reject::Rejection;

pub(crate) use crate::wire::Fingerprint;

/// Longest command id stored inline (without a heap allocation).
pub(crate) const INLINE_ID_BYTES: usize = 38;

// An inline id is a prefix of the longest id, its length fits the `u8`.
const _: () = assert!(INLINE_ID_BYTES <= crate::command::MAX_COMMAND_ID_BYTES);
const _: () = assert!(INLINE_ID_BYTES <= u8::MAX as usize);

/// A validated command id (1..=64 bytes of printable ASCII): inline when it
/// fits in [`INLINE_ID_BYTES`], else one boxed slice. 40 bytes either way.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum StoredId {
    Inline {
        len: u8,
        bytes: [u8; INLINE_ID_BYTES],
    },
    Heap(Box<[u8]>),
}

impl StoredId {
    pub fn new(id: &[u8]) -> StoredId {
        if id.len() <= INLINE_ID_BYTES {
            let mut bytes = [0u8; INLINE_ID_BYTES];
            bytes[..id.len()].copy_from_slice(id);
            StoredId::Inline {
                // len <= INLINE_ID_BYTES < 256.
                len: id.len() as u8,
                bytes,
            }
        } else {
            StoredId::Heap(id.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            StoredId::Inline { len, bytes } => &bytes[..usize::from(*len)],
            StoredId::Heap(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for StoredId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// What a remembered command's retries are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Applied,
    /// Boxed: rejections are rare, and an applied entry stays one word.
    Rejected(Box<Rejection>),
}

impl Verdict {
    /// The verdict of `outcome`.
    pub fn of(outcome: &Outcome) -> Verdict {
        match outcome {
            Outcome::Applied { .. } => Verdict::Applied,
            Outcome::Rejected(rejection) => Verdict::Rejected(Box::new(rejection.clone())),
        }
    }

    /// The outcome a retry gets: no events for an applied command (they
    /// were delivered with the first reply), the identical rejection for a
    /// rejected one.
    pub fn outcome(&self) -> Outcome {
        match self {
            Verdict::Applied => Outcome::Applied { events: Vec::new() },
            Verdict::Rejected(rejection) => Outcome::Rejected((**rejection).clone()),
        }
    }
}

/// Why [`DedupTable::restore`] refused its entries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RestoreRefusal {
    /// This id comes more than once.
    RepeatedId(StoredId),
    /// This entry is stamped after the dedup clock.
    StampedAfterClock(StoredId),
}

/// One remembered command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DedupEntry {
    pub id: StoredId,
    /// The dedup clock right after the command was applied.
    pub stamp_ms: u64,
    /// The fingerprint as two halves (high, low): keeps the entry 8-aligned
    /// (a `u128` would pad it to 80 bytes).
    fingerprint: [u64; 2],
    pub verdict: Verdict,
}

impl DedupEntry {
    pub fn new(id: StoredId, stamp_ms: u64, fingerprint: Fingerprint, verdict: Verdict) -> Self {
        DedupEntry {
            id,
            stamp_ms,
            fingerprint: [(fingerprint >> 64) as u64, fingerprint as u64],
            verdict,
        }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        (u128::from(self.fingerprint[0]) << 64) | u128::from(self.fingerprint[1])
    }
}

/// Hash of an id for the index (internal: never reaches output).
fn id_hash(id: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id)
}

#[derive(Clone, Debug, Default)]
pub(crate) struct DedupTable {
    /// Every remembered command, oldest first: stamps non-decreasing.
    entries: VecDeque<DedupEntry>,
    /// Sequence number of `entries[0]`; entry `i` has `first_seq + i`.
    first_seq: u64,
    /// The sequence number of every entry, by `id_hash` of its id.
    index: HashTable<u64>,
    pub max_seen_now_ms: u64,
    /// Ids evicted since the last `drain_dirty` that had been handed out before.
    evicted_since_take: Vec<StoredId>,
    /// The last `new_since_take` entries were inserted since the last
    /// `drain_dirty`.
    new_since_take: usize,
}

impl DedupTable {
    /// Number of remembered commands.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The memory the ring and the index hold, capacity included (ids
    /// longer than `INLINE_ID_BYTES` and rejection details, one heap
    /// allocation each, are not counted): O(1), for metrics.
    pub fn approx_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<DedupEntry>()
            + self.index.capacity() * (std::mem::size_of::<u64>() + 1)
    }

    /// Every remembered command, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &DedupEntry> {
        self.entries.iter()
    }

    /// The entry for `id` (live or expired but not yet evicted).
    fn get(&self, id: &[u8]) -> Option<&DedupEntry> {
        let (entries, first_seq) = (&self.entries, self.first_seq);
        let seq = self.index.find(id_hash(id), |&seq| {
            entries
                .get(seq.wrapping_sub(first_seq) as usize)
                .is_some_and(|e| e.id.as_bytes() == id)
        })?;
        entries.get(seq.wrapping_sub(first_seq) as usize)
    }

    /// The entry for `id` if it is still inside the window ending at `horizon`.
    pub fn live(&self, id: &[u8], horizon_ms: u64) -> Option<&DedupEntry> {
        self.get(id).filter(|entry| entry.stamp_ms >= horizon_ms)
    }

    /// True if `id` is remembered (live or not yet evicted).
    pub fn contains(&self, id: &[u8]) -> bool {
        self.get(id).is_some()
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

    /// How many entries `evict_before(horizon_ms)` would evict.
    pub fn expired_count(&self, horizon_ms: u64) -> usize {
        self.entries
            .iter()
            .take_while(|e| e.stamp_ms < horizon_ms)
            .count()
    }

    /// Evicts every entry stamped before `horizon_ms`, oldest first.
    pub fn evict_before(&mut self, horizon_ms: u64) {
        while self
            .entries
            .front()
            .is_some_and(|front| front.stamp_ms < horizon_ms)
        {
            let was_new = self.entries.len() <= self.new_since_take;
            let Some(entry) = self.entries.pop_front() else {
                break;
            };
            let seq = self.first_seq;
            self.first_seq += 1;
            // An entry missing from the index would be remembered and
            // forgotten differently on other replicas: stop instead.
            match self
                .index
                .find_entry(id_hash(entry.id.as_bytes()), |&s| s == seq)
            {
                Ok(slot) => {
                    slot.remove();
                }
                Err(_) => panic!(
                    "invariant broken: dedup entry {:?} missing from the index",
                    entry.id
                ),
            }
            if was_new {
                // Never handed out by drain_dirty: nothing to delete.
                self.new_since_take -= 1;
            } else {
                self.evicted_since_take.push(entry.id);
            }
        }
    }

    /// Remembers a new command. Its stamp must not be older than the newest
    /// entry's (asserted: eviction, which takes entries oldest first,
    /// relies on the order) and its id must not be present. The latter
    /// follows from the caller's order (a live id is a retry, an expired
    /// one was just evicted, since eviction takes every entry stamped
    /// before the horizon) and is checked in debug builds only: it costs a
    /// second index probe per command.
    pub fn insert(&mut self, entry: DedupEntry) {
        assert!(
            self.entries
                .back()
                .is_none_or(|last| last.stamp_ms <= entry.stamp_ms),
            "invariant broken: dedup entry {:?} stamped before the newest",
            entry.id
        );
        debug_assert!(!self.contains(entry.id.as_bytes()));
        self.push(entry);
        self.new_since_take += 1;
    }

    fn push(&mut self, entry: DedupEntry) {
        let seq = self.first_seq + self.entries.len() as u64;
        let hash = id_hash(entry.id.as_bytes());
        self.entries.push_back(entry);
        let (entries, first_seq) = (&self.entries, self.first_seq);
        self.index.insert_unique(hash, seq, |&s| {
            entries
                .get(s.wrapping_sub(first_seq) as usize)
                .map_or(0, |e| id_hash(e.id.as_bytes()))
        });
    }

    /// Rebuilds the table from restored entries (any order). Refused: an
    /// id that comes twice (the table's own index finds it, so a restore
    /// costs one probe per entry and no second set) and an entry stamped
    /// after the clock. What [`DedupTable::check`] verifies besides holds
    /// by construction: entries in stamp order, each indexed once.
    pub fn restore(
        max_seen_now_ms: u64,
        mut entries: Vec<DedupEntry>,
    ) -> Result<DedupTable, RestoreRefusal> {
        entries.sort_unstable_by(|a, b| {
            (a.stamp_ms, a.id.as_bytes()).cmp(&(b.stamp_ms, b.id.as_bytes()))
        });
        if let Some(last) = entries.last()
            && last.stamp_ms > max_seen_now_ms
        {
            return Err(RestoreRefusal::StampedAfterClock(last.id.clone()));
        }
        let mut index = HashTable::with_capacity(entries.len());
        for (seq, entry) in entries.iter().enumerate() {
            let id = entry.id.as_bytes();
            let hash = id_hash(id);
            let at = |s: &u64| &entries[*s as usize];
            if index.find(hash, |s| at(s).id.as_bytes() == id).is_some() {
                return Err(RestoreRefusal::RepeatedId(entry.id.clone()));
            }
            index.insert_unique(hash, seq as u64, |s| id_hash(at(s).id.as_bytes()));
        }
        Ok(DedupTable {
            max_seen_now_ms,
            // A `Vec` becomes a `VecDeque` in place (no copy).
            entries: VecDeque::from(entries),
            index,
            ..DedupTable::default()
        })
    }

    /// Records `take_dirty` would hand out now (an upper bound: an id
    /// evicted and remembered again counts twice).
    pub fn dirty_count(&self) -> usize {
        self.evicted_since_take.len() + self.new_since_take.min(self.entries.len())
    }

    /// Records changed since the last call (`Ledger::drain_dirty`): the
    /// evicted ids, and the entries inserted since (the newest). An id may be in both (evicted, then
    /// remembered again); each is in each at most once.
    pub fn take_dirty(&mut self) -> (Vec<StoredId>, impl Iterator<Item = &DedupEntry>) {
        let evicted = std::mem::take(&mut self.evicted_since_take);
        let new = std::mem::take(&mut self.new_since_take);
        let skip = self.entries.len().saturating_sub(new);
        (evicted, self.entries.iter().skip(skip))
    }

    /// Checks the table's own consistency.
    pub fn check(&self) -> Result<(), String> {
        if self.index.len() != self.entries.len() {
            return Err(format!(
                "dedup index has {} ids but the table {} entries",
                self.index.len(),
                self.entries.len()
            ));
        }
        let mut previous = 0;
        for (i, entry) in self.entries.iter().enumerate() {
            let id = &entry.id;
            let seq = self.first_seq + i as u64;
            let indexed = self
                .index
                .find(id_hash(id.as_bytes()), |&s| s == seq)
                .is_some();
            let found = self.get(id.as_bytes());
            if !indexed || !found.is_some_and(|e| std::ptr::eq(e, entry)) {
                return Err(format!("dedup id {id:?} not indexed at its entry"));
            }
            if entry.stamp_ms < previous {
                return Err(format!("dedup id {id:?} out of stamp order"));
            }
            if entry.stamp_ms > self.max_seen_now_ms {
                return Err(format!("dedup id {id:?} stamped after the dedup clock"));
            }
            previous = entry.stamp_ms;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RejectCode;

    #[test]
    fn an_applied_entry_stays_small() {
        assert_eq!(std::mem::size_of::<StoredId>(), 40);
        assert_eq!(std::mem::size_of::<Verdict>(), 8);
        assert_eq!(std::mem::size_of::<DedupEntry>(), 72);
    }

    #[test]
    #[should_panic(expected = "stamped before the newest")]
    fn an_entry_stamped_out_of_order_stops_the_replica() {
        let mut table = DedupTable::default();
        for (id, stamp) in [(b"a", 10), (b"b", 9)] {
            table.insert(DedupEntry::new(
                StoredId::new(id),
                stamp,
                1,
                Verdict::Applied,
            ));
        }
    }

    #[test]
    fn ids_round_trip_inline_and_boxed() {
        for len in [1, 24, 35, INLINE_ID_BYTES, INLINE_ID_BYTES + 1, 64] {
            let id: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let stored = StoredId::new(&id);
            assert_eq!(stored.as_bytes(), &id[..]);
            assert_eq!(
                matches!(stored, StoredId::Inline { .. }),
                len <= INLINE_ID_BYTES
            );
        }
    }

    #[test]
    fn verdicts_answer_retries() {
        assert_eq!(
            Verdict::Applied.outcome(),
            Outcome::Applied { events: vec![] }
        );
        let rejection = Rejection::new(crate::reject::RejectDetail::HoldNotOpen { hold: 7 });
        assert_eq!(rejection.code, RejectCode::UnknownHold);
        let verdict = Verdict::of(&Outcome::Rejected(rejection.clone()));
        assert_eq!(verdict.outcome(), Outcome::Rejected(rejection));
    }

    #[test]
    fn insert_lookup_evict_and_restore() {
        let mut table = DedupTable::default();
        let ids = [
            "a",
            "b",
            "tc-0123456789abcdef0123456789abcdef",
            &"x".repeat(64),
        ];
        for (i, id) in ids.iter().enumerate() {
            table.advance_clock(i as u64 * 10);
            let entry = DedupEntry::new(
                StoredId::new(id.as_bytes()),
                i as u64 * 10,
                u128::MAX - i as u128,
                Verdict::Applied,
            );
            table.insert(entry);
            table.check().expect("consistent");
        }
        let entry = table.live(ids[2].as_bytes(), 0).expect("present");
        assert_eq!(entry.fingerprint(), u128::MAX - 2);
        assert!(table.live(ids[2].as_bytes(), 21).is_none());
        assert!(table.live(b"c", 0).is_none());
        let restored = DedupTable::restore(table.max_seen_now_ms, table.iter().cloned().collect())
            .expect("distinct ids");
        restored.check().expect("restored consistent");
        table.evict_before(20);
        table.check().expect("consistent after eviction");
        assert_eq!(table.len(), 2);
        assert!(!table.contains(b"a") && !table.contains(b"b"));
        assert!(table.contains(ids[3].as_bytes()));
        assert_eq!(restored.len(), 4);
    }

    #[test]
    fn restore_refuses_an_id_that_comes_twice_even_with_different_stamps() {
        let entry = |id: &str, stamp_ms: u64| {
            DedupEntry::new(StoredId::new(id.as_bytes()), stamp_ms, 7, Verdict::Applied)
        };
        let entries = vec![entry("a", 30), entry("b", 10), entry("a", 20)];
        let refused = DedupTable::restore(30, entries).expect_err("duplicate id");
        assert_eq!(refused, RestoreRefusal::RepeatedId(StoredId::new(b"a")));
        let table =
            DedupTable::restore(30, vec![entry("b", 10), entry("a", 20)]).expect("distinct");
        assert_eq!(table.len(), 2);
        table
            .check()
            .expect("a restored table passes its own check");
        let late = DedupTable::restore(15, vec![entry("b", 10), entry("a", 20)]);
        assert_eq!(
            late.expect_err("stamped after the clock"),
            RestoreRefusal::StampedAfterClock(StoredId::new(b"a"))
        );
    }
}
