//! The liquidation index: which cross accounts a mark price may push under
//! maintenance, so a mark price touches only those instead of every holder
//! of its settle asset. Derived state: never persisted, rebuilt from the
//! positions after `from_records`, and it never changes a result (the
//! liquidation passes visit the same accounts in the same order with the
//! same outcome as a scan of every holder; see below and the equivalence
//! property test).
//!
//! Bands. For a cross account in a settle asset with k positions, slack =
//! equity − maintenance margin at the marks of the time it was indexed
//! (p0). Its budget per position is floor((slack − k) / k). A position of
//! size s in market m loses at most `rate` per price unit the mark moves
//! against it, with `rate` = |s| × (money per price unit) for a long (its
//! maintenance margin falls with the price) and that × (1 + the market's
//! highest maintenance rate), rounded up, for a short. While every mark
//! stays within its band (a long: mark > p0 − budget / rate − 1; a short:
//! mark < p0 + budget / rate + 1), the account's equity stays at or above
//! its maintenance margin: the losses sum to at most slack − k, and each
//! position's maintenance rounds up by less than one minor unit. So an
//! account whose band was not crossed needs no check. The band of each
//! position is a trigger price in a per-market ordered set (longs
//! liquidatable at or below theirs, shorts at or above), and a mark price
//! finds the crossed ones with one range query per market of the asset.
//!
//! Always checked (the `always` set of the asset): accounts whose slack is
//! at most k (already at or near maintenance), accounts holding an option
//! (its margin moves with the underlying index, another market's mark) or
//! an inverse position (its value is not linear in the price, so the loss
//! per price unit is not bounded by the value of one unit), and any whose
//! numbers overflow.
//!
//! Staleness: every write of a client balance, position or isolated margin
//! notes (account, asset) dirty (a `Vec` push); `refresh` recomputes the
//! bands of the dirty accounts from the current state and marks before any
//! use, and after each liquidation of a pass (the liquidation changes the
//! balances and positions of the liquidated account and of the ADL'd
//! ones). A rolled-back command leaves its dirty notes: the refresh reads
//! the restored state. A mark price moves no band: bands are compared with
//! the current marks. Options' underlying marks move their holders' margin,
//! which is why they are always checked.
//!
//! Equivalence with the scan: a pass visits candidates (crossed or always
//! checked accounts) in account-id order; after each liquidation the index
//! is refreshed and newly crossed accounts above the cursor join the pass;
//! those below it wait for the next pass, as in the scan. An account the
//! scan would liquidate at its turn is a candidate at that point, and
//! checking a safe account changes nothing, so both liquidate the same
//! accounts in the same order.
//!
//! Bound: per mark price, one range query per market of the settle asset,
//! one risk computation per candidate, and O(log n) per refreshed account;
//! the number of candidates is not capped (every account under maintenance
//! is liquidated in the command, as before), but accounts whose band was
//! not crossed cost nothing. The dirty list is refreshed at the end of any
//! command once it holds more than `MAX_DIRTY_RISK` notes (spot traffic
//! between mark prices), so it stays bounded. Isolated positions are
//! still scanned per market (`isolated`).

use std::collections::{BTreeMap, BTreeSet};

use crate::command::AccountId;
use crate::engine::Ledger;
use crate::market::{MarketIdx, RATE_ONE};
use crate::state::AssetIdx;
use crate::wide::{Round, mul_div};

/// Dirty notes kept before the end of a command refreshes them.
pub(crate) const MAX_DIRTY_RISK: usize = 65_536;

/// One indexed account's bands: per position (market, long, trigger).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Always,
    Bands(Vec<(MarketIdx, bool, i128)>),
}

/// See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct LiquidationIndex {
    /// Off: every liquidation pass scans every holder (the benchmark's
    /// "before" and the equivalence test).
    pub enabled: bool,
    entries: BTreeMap<(AssetIdx, AccountId), Entry>,
    /// Per market: (trigger, account) of cross longs, liquidatable when the
    /// mark is at or below the trigger.
    longs: BTreeMap<MarketIdx, BTreeSet<(i128, AccountId)>>,
    /// Per market: (trigger, account) of cross shorts, liquidatable when
    /// the mark is at or above the trigger.
    shorts: BTreeMap<MarketIdx, BTreeSet<(i128, AccountId)>>,
    /// Per settle asset: accounts checked at every pass.
    always: BTreeMap<AssetIdx, BTreeSet<AccountId>>,
    /// (account, asset) whose bands may be stale.
    pub dirty: Vec<(AccountId, AssetIdx)>,
}

impl Default for LiquidationIndex {
    fn default() -> Self {
        LiquidationIndex {
            enabled: true,
            entries: BTreeMap::new(),
            longs: BTreeMap::new(),
            shorts: BTreeMap::new(),
            always: BTreeMap::new(),
            dirty: Vec::new(),
        }
    }
}

impl LiquidationIndex {
    fn remove(&mut self, asset: AssetIdx, account: AccountId) {
        match self.entries.remove(&(asset, account)) {
            Some(Entry::Always) => {
                if let Some(set) = self.always.get_mut(&asset) {
                    set.remove(&account);
                }
            }
            Some(Entry::Bands(bands)) => {
                for (m, long, trigger) in bands {
                    let sets = if long {
                        &mut self.longs
                    } else {
                        &mut self.shorts
                    };
                    if let Some(set) = sets.get_mut(&m) {
                        set.remove(&(trigger, account));
                    }
                }
            }
            None => {}
        }
    }

    fn insert(&mut self, asset: AssetIdx, account: AccountId, entry: Entry) {
        match &entry {
            Entry::Always => {
                self.always.entry(asset).or_default().insert(account);
            }
            Entry::Bands(bands) => {
                for &(m, long, trigger) in bands {
                    let sets = if long {
                        &mut self.longs
                    } else {
                        &mut self.shorts
                    };
                    sets.entry(m).or_default().insert((trigger, account));
                }
            }
        }
        self.entries.insert((asset, account), entry);
    }
}

impl Ledger {
    /// Notes that `account`'s risk in `asset` may have changed.
    #[inline]
    pub(crate) fn note_risk(&mut self, account: AccountId, asset: AssetIdx) {
        if self.liq.enabled {
            self.liq.dirty.push((account, asset));
        }
    }

    /// Turns the liquidation index on (the default) or off (every pass
    /// scans every holder). Not replicated state and no effect on any
    /// result: for benchmarks and tests.
    pub fn set_liquidation_index(&mut self, enabled: bool) {
        self.liq = crate::liq_index::LiquidationIndex {
            enabled,
            ..Default::default()
        };
        if enabled {
            self.note_every_position();
        }
    }

    /// Notes every cross holder dirty (a rebuilt index).
    pub(crate) fn note_every_position(&mut self) {
        let mut notes = Vec::new();
        for market in &self.markets {
            for &account in market.positions.keys() {
                notes.push((account, market.settle));
            }
        }
        self.liq.dirty.extend(notes);
    }

    /// Recomputes the bands of every dirty (account, asset).
    pub(crate) fn refresh_liquidation_index(&mut self) {
        let mut dirty = std::mem::take(&mut self.liq.dirty);
        self.refresh_notes(&mut dirty);
        // Keep the buffer's capacity.
        dirty.clear();
        if self.liq.dirty.is_empty() {
            self.liq.dirty = dirty;
        }
    }

    /// Recomputes the bands of the dirty notes, then adds to `candidates`
    /// those of `asset` above `after` that are now crossed or always
    /// checked (the refreshed accounts are the only ones whose status can
    /// have changed while the marks stand still).
    pub(crate) fn refresh_into(
        &mut self,
        asset: AssetIdx,
        after: AccountId,
        candidates: &mut BTreeSet<AccountId>,
    ) {
        let mut dirty = std::mem::take(&mut self.liq.dirty);
        self.refresh_notes(&mut dirty);
        for &(account, a) in &dirty {
            if a == asset && account > after && self.is_crossed(asset, account) {
                candidates.insert(account);
            }
        }
        dirty.clear();
        if self.liq.dirty.is_empty() {
            self.liq.dirty = dirty;
        }
    }

    /// Sorts, dedups and recomputes `notes`.
    fn refresh_notes(&mut self, notes: &mut Vec<(AccountId, AssetIdx)>) {
        notes.sort_unstable();
        notes.dedup();
        for &(account, asset) in notes.iter() {
            self.liq.remove(asset, account);
            if let Some(entry) = self.bands_of(account, asset) {
                self.liq.insert(asset, account, entry);
            }
        }
    }

    /// True if `account`'s entry in `asset` is always checked or has a band
    /// crossed at the current marks.
    fn is_crossed(&self, asset: AssetIdx, account: AccountId) -> bool {
        match self.liq.entries.get(&(asset, account)) {
            None => false,
            Some(Entry::Always) => true,
            Some(Entry::Bands(bands)) => bands.iter().any(|&(m, long, trigger)| {
                self.markets[m as usize].mark_price().is_some_and(|mark| {
                    if long {
                        mark <= trigger
                    } else {
                        mark >= trigger
                    }
                })
            }),
        }
    }

    /// The bands of `account` in `asset` at the current state (`None`:
    /// no cross position there).
    fn bands_of(&self, account: AccountId, asset: AssetIdx) -> Option<Entry> {
        let Some(risk) = self.group_risk(account, asset) else {
            return Some(Entry::Always);
        };
        if risk.positions.is_empty() {
            return None;
        }
        let nonlinear = |m: MarketIdx| {
            let instrument = &self.markets[m as usize].instrument;
            instrument.option.is_some() || instrument.is_inverse()
        };
        if risk.positions.iter().any(|p| nonlinear(p.market)) {
            return Some(Entry::Always);
        }
        let k = risk.positions.len() as i128;
        let slack = risk.equity.checked_sub(risk.maintenance);
        let budget = slack.and_then(|s| s.checked_sub(k)).map(|s| s / k);
        let Some(budget) = budget.filter(|b| *b > 0) else {
            return Some(Entry::Always);
        };
        let mut bands = Vec::with_capacity(risk.positions.len());
        for held in &risk.positions {
            let market = &self.markets[held.market as usize];
            let size = held.position.size;
            let long = size > 0;
            let band = (|| {
                let per_unit = market.value(size.checked_abs()?, 1)?;
                let rate = if long {
                    per_unit
                } else {
                    let top = market.brackets.last().map_or(0, |b| b.mmr);
                    mul_div(per_unit, RATE_ONE.checked_add(top)?, RATE_ONE, Round::Ceil)?
                };
                let moves = budget.checked_div(rate)?.checked_add(1)?;
                if long {
                    held.mark.checked_sub(moves)
                } else {
                    held.mark.checked_add(moves)
                }
            })();
            let Some(trigger) = band else {
                return Some(Entry::Always);
            };
            bands.push((held.market, long, trigger));
        }
        Some(Entry::Bands(bands))
    }

    /// Accounts of `asset` whose band is crossed at the current marks, or
    /// always checked.
    pub(crate) fn crossed(&self, asset: AssetIdx) -> BTreeSet<AccountId> {
        let mut out: BTreeSet<AccountId> = self
            .liq
            .always
            .get(&asset)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for m in self.settle_markets(asset) {
            let Some(mark) = self.markets[m as usize].mark_price() else {
                continue;
            };
            if let Some(set) = self.liq.longs.get(&m) {
                out.extend(set.range((mark, 0)..).map(|(_, a)| *a));
            }
            if let Some(set) = self.liq.shorts.get(&m) {
                out.extend(set.range(..=(mark, u64::MAX)).map(|(_, a)| *a));
            }
        }
        out
    }
}
