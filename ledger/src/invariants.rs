//! `Ledger::check_invariants`: the properties every state must have —
//! conservation per asset, no negative client `available`, `locked` equal to
//! the open holds, every magnitude within `MAX_UNITS`, and internal
//! consistency (asset index, holds, dedup table). Used after every step in
//! tests and on every `from_records`.

use rustc_hash::FxHashMap;

use crate::amount::{display, in_range};
use crate::command::{AccountId, Owner};
use crate::engine::Ledger;
use crate::state::{AssetIdx, SYSTEM_OWNERS};

impl Ledger {
    /// Checks conservation (every asset sums to zero over all owners incl.
    /// system accounts), no negative available on client accounts, locked ==
    /// sum of open holds per (account, asset), all |balances| <= MAX_UNITS.
    /// Err with a description of the first violation (accounts and holds are
    /// visited in id order, so the report is deterministic).
    pub fn check_invariants(&self) -> Result<(), String> {
        let amount = |units: i128, idx: AssetIdx| {
            format!("{} {}", display(units, self.scale(idx)), self.symbol(idx))
        };
        if self.asset_index.len() != self.assets.len() {
            return Err("asset index and asset table differ in size".into());
        }
        let mut sums = vec![0i128; self.assets.len()];
        for (i, asset) in self.assets.iter().enumerate() {
            if self.asset_index.get(&asset.symbol).map(|&idx| idx as usize) != Some(i) {
                return Err(format!("asset {} missing from the index", asset.symbol));
            }
            for (owner, balance) in SYSTEM_OWNERS.iter().zip(asset.system) {
                let idx = i as AssetIdx;
                if balance.locked != 0 {
                    return Err(format!(
                        "{owner:?} has {} locked",
                        amount(balance.locked, idx)
                    ));
                }
                if !in_range(balance.available) {
                    return Err(format!("{owner:?} {} out of range", asset.symbol));
                }
                sums[i] += balance.available;
            }
        }

        let mut held: FxHashMap<(AccountId, AssetIdx), i128> = FxHashMap::default();
        let mut hold_ids: Vec<_> = self.holds.keys().copied().collect();
        hold_ids.sort_unstable();
        for id in hold_ids {
            let hold = self.holds[&id];
            if hold.asset as usize >= self.assets.len() {
                return Err(format!("hold {id} has an unknown asset"));
            }
            if !self.accounts.contains_key(&hold.account) {
                return Err(format!(
                    "hold {id} belongs to unknown account {}",
                    hold.account
                ));
            }
            if !(0 < hold.remaining && hold.remaining <= hold.amount && in_range(hold.amount)) {
                return Err(format!(
                    "hold {id} has remaining {} of {}",
                    amount(hold.remaining, hold.asset),
                    amount(hold.amount, hold.asset)
                ));
            }
            let total = held.entry((hold.account, hold.asset)).or_insert(0);
            *total = total
                .checked_add(hold.remaining)
                .ok_or_else(|| format!("holds of account {} overflow", hold.account))?;
        }

        let mut account_ids: Vec<_> = self.accounts.keys().copied().collect();
        account_ids.sort_unstable();
        for id in account_ids {
            if id == 0 {
                return Err("account 0 exists".into());
            }
            let account = &self.accounts[&id];
            if !account.balances.windows(2).all(|w| w[0].0 < w[1].0) {
                return Err(format!("account {id} balances out of order"));
            }
            for &(idx, balance) in &account.balances {
                let Some(sum) = sums.get_mut(idx as usize) else {
                    return Err(format!("account {id} has a balance in an unknown asset"));
                };
                if !in_range(balance.available) || !in_range(balance.locked) {
                    return Err(format!(
                        "{:?} {} out of range",
                        Owner::Account(id),
                        self.symbol(idx)
                    ));
                }
                if balance.available < 0 {
                    return Err(format!(
                        "account {id} has negative available {}",
                        amount(balance.available, idx)
                    ));
                }
                let in_holds = held.remove(&(id, idx)).unwrap_or(0);
                if balance.locked != in_holds {
                    return Err(format!(
                        "account {id} has {} locked but its open holds total {}",
                        amount(balance.locked, idx),
                        amount(in_holds, idx)
                    ));
                }
                // Each term is within ±1e28, so a sum over fewer than 1.7e10
                // balances cannot overflow; check anyway.
                *sum = sum
                    .checked_add(balance.available + balance.locked)
                    .ok_or_else(|| format!("sum of {} overflows", self.symbol(idx)))?;
            }
        }
        let mut leftover: Vec<_> = held.into_iter().collect();
        leftover.sort_unstable();
        if let Some(((account, idx), total)) = leftover.first() {
            return Err(format!(
                "account {account} has open holds of {} but no such balance",
                amount(*total, *idx)
            ));
        }

        for (i, sum) in sums.iter().enumerate() {
            if *sum != 0 {
                return Err(format!(
                    "conservation: {} sums to {}",
                    self.assets[i].symbol,
                    amount(*sum, i as AssetIdx)
                ));
            }
        }
        self.dedup.check()
    }
}
