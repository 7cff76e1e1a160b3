//! The engine's internal state types: interned assets with their system
//! balances, client accounts with per-asset balances, holds, and the keys of
//! records changed since the last `drain_dirty`. Amounts here are always
//! minor units (`i128`); `Decimal` only appears at the edges.

use rustc_hash::FxHashSet;

use crate::command::{AccountId, Owner};

/// Index of an interned asset in `Ledger::assets` (creation order). Never
/// leaves the engine: records, hashes and views use the symbol.
pub(crate) type AssetIdx = u32;

/// One (owner, asset) balance in minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Balance {
    pub available: i128,
    pub locked: i128,
}

/// The per-asset system owners, in the order of `Asset::system`.
pub(crate) const SYSTEM_OWNERS: [Owner; 3] = [Owner::External, Owner::Fees, Owner::Insurance];

/// Position of a system owner in `Asset::system`; `None` for client accounts.
pub(crate) fn system_slot(owner: Owner) -> Option<usize> {
    match owner {
        Owner::Account(_) => None,
        Owner::External => Some(0),
        Owner::Fees => Some(1),
        Owner::Insurance => Some(2),
    }
}

/// A registered asset and the balances of its system owners.
#[derive(Clone, Debug)]
pub(crate) struct Asset {
    pub symbol: String,
    pub scale: u32,
    /// External, Fees, Insurance (see `SYSTEM_OWNERS`); `locked` is always 0.
    pub system: [Balance; 3],
}

/// A client account: the balances of every asset it ever touched, sorted by
/// `AssetIdx` (a handful per account, so a binary search beats a map).
#[derive(Clone, Debug, Default)]
pub(crate) struct Account {
    pub balances: Vec<(AssetIdx, Balance)>,
}

impl Account {
    pub fn get(&self, asset: AssetIdx) -> Option<&Balance> {
        self.balances
            .binary_search_by_key(&asset, |(idx, _)| *idx)
            .ok()
            .map(|pos| &self.balances[pos].1)
    }

    /// The balance slot for `asset`, created (zero) on first touch.
    pub fn slot_mut(&mut self, asset: AssetIdx) -> &mut Balance {
        let pos = match self.balances.binary_search_by_key(&asset, |(idx, _)| *idx) {
            Ok(pos) => pos,
            Err(pos) => {
                self.balances.insert(pos, (asset, Balance::default()));
                pos
            }
        };
        &mut self.balances[pos].1
    }
}

/// An open hold (order lock). Holds whose `remaining` reaches zero are removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hold {
    pub account: AccountId,
    pub asset: AssetIdx,
    /// The amount originally locked.
    pub amount: i128,
    /// What is still locked: `0 < remaining <= amount`.
    pub remaining: i128,
}

/// A record that changed since the last `drain_dirty`, named by internal ids;
/// encoded into a key (and its current value) only in `drain_dirty`.
/// Command-id (dedup) records are tracked by the dedup table itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum DirtyKey {
    Meta,
    Asset(AssetIdx),
    Account(AccountId),
    Balance(Owner, AssetIdx),
    Hold(u64),
    /// A market's parameters and state (mark, funding time, pool, insurance inventory).
    Market(crate::market::MarketIdx),
    /// A client position (deleted when flat).
    Position(crate::market::MarketIdx, AccountId),
}

/// Keys changed since the last `take_dirty`, each once: memory stays
/// proportional to the number of distinct changed records however rarely
/// the shell takes them.
#[derive(Clone, Debug, Default)]
pub(crate) struct DirtySet {
    keys: FxHashSet<DirtyKey>,
}

impl DirtySet {
    pub fn push(&mut self, key: DirtyKey) {
        self.keys.insert(key);
    }

    /// The distinct dirty keys (unordered); leaves the set empty. Hand the
    /// drained set back with `restore` to keep its capacity.
    pub fn take(&mut self) -> FxHashSet<DirtyKey> {
        std::mem::take(&mut self.keys)
    }

    /// Reinstalls a set returned by `take` once it is drained (keys pushed
    /// meanwhile are kept).
    pub fn restore(&mut self, mut drained: FxHashSet<DirtyKey>) {
        debug_assert!(drained.is_empty());
        drained.extend(self.keys.drain());
        self.keys = drained;
    }
}
