//! `Ledger::state_hash`: one blake3 digest of the whole state, computed over
//! `records()` (sorted by key), so it is independent of hash-map order and of
//! how the state was reached, and equal for a ledger rebuilt from its records.
//! Cost is linear in the state: meant for tests, snapshots and divergence
//! checks, not for every command.

use crate::codec::Sink;
use crate::engine::Ledger;

impl Ledger {
    /// blake3 over `"tally.state.v1"` then, per record in key order,
    /// `u32` key length, key, `u32` value length, value (big-endian lengths).
    pub fn state_hash(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.put(b"tally.state.v1");
        for (key, value) in self.records() {
            for part in [&key, &value] {
                hasher.put_u32(u32::try_from(part.len()).unwrap_or(u32::MAX));
                hasher.put(part);
            }
        }
        *hasher.finalize().as_bytes()
    }
}
