//! The engine's internal state types: interned assets with their system
//! balances, client accounts with per-asset balances, holds, and the keys of
//! records changed since the last `drain_dirty` (balances are tracked by a
//! `listed` flag next to the balance itself, everything else in a set). Amounts here are always
//! minor units (`i128`); `Decimal` only appears at the edges.

use rustc_hash::FxHashSet;

use crate::command::{AccountId, Owner, Wallet};

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
        Owner::Account(_) | Owner::Funding(_) | Owner::Margin(_) => None,
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
    /// Whether each system balance's record is in `DirtySet::balances`.
    pub system_listed: [bool; 3],
}

/// One (wallet, asset) balance of a client account.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BalanceSlot {
    pub wallet: Wallet,
    pub asset: AssetIdx,
    pub balance: Balance,
    /// Whether this balance's record is in `DirtySet::balances`.
    pub listed: bool,
}

/// A client account's model settings (the `accounts` module). The
/// default is what `CreateAccount` makes: top-level, spot collateral,
/// withdrawals allowed, no grants; its record value is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccountSettings {
    /// The master of a sub-account (`None`: top-level).
    pub parent: Option<AccountId>,
    /// The wallet its perpetual positions are margined over (spot or margin).
    pub collateral: Wallet,
    pub can_withdraw: bool,
    /// Sub-accounts of the same master this sub-account may transfer to
    /// (granted by the master), sorted, at most `MAX_TRANSFER_GRANTS`.
    pub grants: Vec<AccountId>,
    /// Whether its balance changes are recorded (the `history` module).
    pub history: bool,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            parent: None,
            collateral: Wallet::Spot,
            can_withdraw: true,
            grants: Vec::new(),
            history: false,
        }
    }
}

/// A client account: the balances of every (wallet, asset) it ever
/// touched, sorted by (wallet, asset) (a handful per account, so a binary
/// search beats a map), and its settings.
#[derive(Clone, Debug, Default)]
pub(crate) struct Account {
    pub balances: Vec<BalanceSlot>,
    pub settings: AccountSettings,
    /// Its kept history: `Some` exactly when `settings.history`.
    pub history: Option<crate::history::History>,
}

impl Account {
    fn search(&self, wallet: Wallet, asset: AssetIdx) -> Result<usize, usize> {
        self.balances
            .binary_search_by_key(&(wallet, asset), |slot| (slot.wallet, slot.asset))
    }

    /// The `wallet` balance of `asset`, if touched.
    pub fn get(&self, wallet: Wallet, asset: AssetIdx) -> Option<&Balance> {
        self.search(wallet, asset)
            .ok()
            .map(|pos| &self.balances[pos].balance)
    }

    /// The slot for (`wallet`, `asset`), created (zero, not listed) on first touch.
    pub fn entry_mut(&mut self, wallet: Wallet, asset: AssetIdx) -> &mut BalanceSlot {
        self.entry_and_before(wallet, asset).0
    }

    /// The slot for (`wallet`, `asset`) and its balance before this call:
    /// `None` if the slot was created (zero, not listed) by it.
    #[inline]
    pub fn entry_and_before(
        &mut self,
        wallet: Wallet,
        asset: AssetIdx,
    ) -> (&mut BalanceSlot, Option<Balance>) {
        match self.search(wallet, asset) {
            Ok(pos) => {
                let slot = &mut self.balances[pos];
                let before = slot.balance;
                (slot, Some(before))
            }
            Err(pos) => {
                let slot = BalanceSlot {
                    wallet,
                    asset,
                    balance: Balance::default(),
                    listed: false,
                };
                self.balances.insert(pos, slot);
                (&mut self.balances[pos], None)
            }
        }
    }

    /// The balance for (`wallet`, `asset`), created (zero) on first touch.
    pub fn slot_mut(&mut self, wallet: Wallet, asset: AssetIdx) -> &mut Balance {
        &mut self.entry_mut(wallet, asset).balance
    }

    /// Removes the (`wallet`, `asset`) slot (a rollback of its creation).
    pub fn remove(&mut self, wallet: Wallet, asset: AssetIdx) {
        if let Ok(pos) = self.search(wallet, asset) {
            self.balances.remove(pos);
        }
    }
}

/// An open hold (order lock). Holds whose `remaining` reaches zero are removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hold {
    pub account: AccountId,
    /// Where the funds are locked: `Spot` (orders of spot pairs) or
    /// `Margin` (open-order margin of perpetual orders).
    pub wallet: Wallet,
    pub asset: AssetIdx,
    /// The amount originally locked.
    pub amount: i128,
    /// What is still locked: `0 < remaining <= amount`.
    pub remaining: i128,
}

/// A record that changed since the last `drain_dirty`, named by internal ids;
/// encoded into a key (and its current value) only in `drain_dirty`.
/// Command-id (dedup) records are tracked by the dedup table itself;
/// balances go through `DirtySet::note_balance`, the meta record is a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum DirtyKey {
    Meta,
    Asset(AssetIdx),
    Account(AccountId),
    Hold(u64),
    /// A market's parameters and state (mark, funding time, pool, insurance inventory).
    Market(crate::market::MarketIdx),
    /// A client position (deleted when flat).
    Position(crate::market::MarketIdx, AccountId),
    /// An ingest partition's position (by `IngestTable` index).
    IngestSource(u32),
    /// A kept ingest failure (partition index, offset; deleted when dropped).
    IngestFailure(u32, u64),
    /// A spot pair (by `PairIdx`).
    Pair(u32),
    /// A history entry (account, sequence number; deleted when dropped).
    History(AccountId, u64),
    /// An isolated margin (market, account; deleted when back to cross).
    Isolated(crate::market::MarketIdx, AccountId),
    /// A non-perpetual market's contract terms and settlement (the
    /// `Instrument` record).
    Instrument(crate::market::MarketIdx),
}

/// Keys changed since the last `drain_dirty`: memory stays proportional to
/// the number of distinct changed records however rarely the shell drains
/// them.
///
/// Balances, the bulk of every command's changes, skip the hash set: the
/// `listed` flag beside each balance says whether its key is already in
/// `balances`, so noting a change is a flag test. A key can appear twice
/// only if a perpetuals rollback removed a new client balance and a later
/// command created it again; `drain_dirty` writes such a record once (the
/// flag is cleared on the first occurrence) and deletes a removed one once.
#[derive(Clone, Debug, Default)]
pub(crate) struct DirtySet {
    keys: FxHashSet<DirtyKey>,
    pub balances: Vec<(Owner, AssetIdx)>,
    meta: bool,
}

impl DirtySet {
    /// Notes a changed record other than a balance (`note_balance`).
    pub fn push(&mut self, key: DirtyKey) {
        match key {
            DirtyKey::Meta => self.meta = true,
            _ => {
                self.keys.insert(key);
            }
        }
    }

    /// Notes a changed balance whose `listed` flag is `listed`.
    #[inline]
    pub fn note_balance(&mut self, listed: &mut bool, owner: Owner, asset: AssetIdx) {
        if !*listed {
            *listed = true;
            self.balances.push((owner, asset));
        }
    }

    /// Records noted since the last drain (an upper bound: a balance
    /// re-created after a rollback counts twice).
    pub fn count(&self) -> usize {
        self.keys.len() + self.balances.len() + usize::from(self.meta)
    }

    /// Whether the meta record changed; clears the flag.
    pub fn take_meta(&mut self) -> bool {
        std::mem::take(&mut self.meta)
    }

    /// The distinct dirty keys other than balances and meta (unordered);
    /// leaves the set empty. Hand the drained set back with `restore` to
    /// keep its capacity.
    pub fn take(&mut self) -> FxHashSet<DirtyKey> {
        std::mem::take(&mut self.keys)
    }

    /// Reinstalls a set returned by `take` once it is drained (keys pushed
    /// meanwhile are kept).
    pub fn restore(&mut self, mut drained: FxHashSet<DirtyKey>) {
        assert!(drained.is_empty(), "restore takes a drained set");
        // Moves keys from one set into another: the result has no order to leak.
        #[allow(clippy::disallowed_methods)]
        drained.extend(self.keys.drain());
        self.keys = drained;
    }
}
