//! Read-only views of the account model for queries: wallet balances and
//! settings of an account, the transferable amount, spot pairs, paginated
//! listings (accounts with filters, holds of an account) and the
//! conservation report. Everything in `Decimal` at each asset's scale and
//! in canonical (sorted) order, so every replica at the same applied index
//! answers byte for byte the same.
//!
//! Bounds: a page holds at most `MAX_PAGE_ITEMS` items (a larger `limit` is
//! clamped). Listing accounts or an account's holds visits every account or
//! hold once per page (cost linear in the state, like a snapshot; the
//! result is sorted by id and starts after the caller's cursor).

use rust_decimal::Decimal;

use crate::amount::{to_decimal, to_decimal_saturating};
use crate::command::{AccountId, HoldId, Owner, Wallet};
use crate::engine::Ledger;
use crate::state::{AssetIdx, SYSTEM_OWNERS};
use crate::views::HoldView;

/// Most items one listing page returns.
pub const MAX_PAGE_ITEMS: usize = 1000;

/// One (wallet, asset) balance of a client account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletBalanceView {
    pub wallet: Wallet,
    pub asset: String,
    pub available: Decimal,
    pub locked: Decimal,
}

/// A client account with its settings and every wallet balance it touched
/// (sorted by wallet, then asset symbol).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountModelView {
    pub account: AccountId,
    /// Its master, for a sub-account.
    pub parent: Option<AccountId>,
    pub collateral: Wallet,
    pub can_withdraw: bool,
    /// Sub-accounts it may transfer to (granted by its master), sorted.
    pub grants: Vec<AccountId>,
    /// Its sub-accounts, sorted (for a master).
    pub subs: Vec<AccountId>,
    pub wallets: Vec<WalletBalanceView>,
}

/// A registered spot pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairView {
    pub pair: String,
    pub base: String,
    pub quote: String,
    pub size_scale: u32,
    pub price_scale: u32,
    pub min_base_amount: Decimal,
}

/// Which accounts a listing returns (all filters must hold).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// Only sub-accounts of this master.
    pub parent: Option<AccountId>,
    /// Only accounts with some non-zero balance (any wallet, available or locked).
    pub non_zero: bool,
    /// Only accounts holding a perpetual position.
    pub has_positions: bool,
}

/// One asset's sums over every owner: what auditors check is zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConservationView {
    pub asset: String,
    /// Σ client balances (available + locked) per wallet: spot, funding, margin.
    pub clients: [Decimal; 3],
    pub external: Decimal,
    pub fees: Decimal,
    pub insurance: Decimal,
    /// Σ PnL pools of the perpetual markets settled in the asset.
    pub pools: Decimal,
    /// Σ isolated margins of positions in those markets.
    pub isolated: Decimal,
    /// The sum of everything above: zero in every valid state.
    pub total: Decimal,
}

impl Ledger {
    /// The account's settings and wallet balances.
    pub fn account_model(&self, account: AccountId) -> Option<AccountModelView> {
        let state = self.accounts.get(&account)?;
        let mut wallets: Vec<_> = state
            .balances
            .iter()
            .map(|slot| {
                let scale = self.scale(slot.asset);
                WalletBalanceView {
                    wallet: slot.wallet,
                    asset: self.symbol(slot.asset).to_string(),
                    available: to_decimal(slot.balance.available, scale),
                    locked: to_decimal(slot.balance.locked, scale),
                }
            })
            .collect();
        wallets.sort_unstable_by(|a, b| (a.wallet, &a.asset).cmp(&(b.wallet, &b.asset)));
        let s = &state.settings;
        Some(AccountModelView {
            account,
            parent: s.parent,
            collateral: s.collateral,
            can_withdraw: s.can_withdraw,
            grants: s.grants.clone(),
            subs: self.sub_accounts(account),
            wallets,
        })
    }

    /// The sub-accounts of `master`, sorted.
    fn sub_accounts(&self, master: AccountId) -> Vec<AccountId> {
        // Sorted on the next line: hash order cannot leak.
        #[allow(clippy::disallowed_methods)]
        let mut subs: Vec<_> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.settings.parent == Some(master))
            .map(|(id, _)| *id)
            .collect();
        subs.sort_unstable();
        subs
    }

    /// What may move out of `account`'s `wallet` of `asset` now (see the
    /// `accounts` module); `None` for an unknown account or asset.
    pub fn transferable(&self, account: AccountId, wallet: Wallet, asset: &str) -> Option<Decimal> {
        let idx = *self.asset_index.get(asset)?;
        self.accounts.get(&account)?;
        let units = self.transferable_units(account, wallet, idx);
        Some(to_decimal(units, self.scale(idx)))
    }

    fn pair_view(&self, pair: &crate::pairs::Pair) -> PairView {
        PairView {
            pair: pair.symbol.clone(),
            base: self.symbol(pair.base).to_string(),
            quote: self.symbol(pair.quote).to_string(),
            size_scale: pair.size_scale,
            price_scale: pair.price_scale,
            min_base_amount: to_decimal(pair.min_base, self.scale(pair.base)),
        }
    }

    pub fn pair(&self, pair: &str) -> Option<PairView> {
        let idx = *self.pair_index.get(pair)?;
        Some(self.pair_view(&self.pairs[idx as usize]))
    }

    /// All spot pairs, sorted by symbol.
    pub fn pairs(&self) -> Vec<PairView> {
        self.pair_index
            .values()
            .map(|&idx| self.pair_view(&self.pairs[idx as usize]))
            .collect()
    }

    /// Accounts with ids above `after` matching `filter`, ascending, at
    /// most `limit` (clamped to `MAX_PAGE_ITEMS`).
    pub fn list_accounts(
        &self,
        filter: AccountFilter,
        after: AccountId,
        limit: usize,
    ) -> Vec<AccountModelView> {
        let limit = limit.clamp(1, MAX_PAGE_ITEMS);
        // Sorted on the next line: hash order cannot leak.
        #[allow(clippy::disallowed_methods)]
        let mut ids: Vec<_> = self
            .accounts
            .iter()
            .filter(|(id, a)| {
                **id > after
                    && filter.parent.is_none_or(|p| a.settings.parent == Some(p))
                    && (!filter.non_zero
                        || a.balances
                            .iter()
                            .any(|s| s.balance.available != 0 || s.balance.locked != 0))
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter(|id| !filter.has_positions || self.holds_positions(*id))
            .take(limit)
            .filter_map(|id| self.account_model(id))
            .collect()
    }

    fn holds_positions(&self, account: AccountId) -> bool {
        self.markets
            .iter()
            .any(|m| m.positions.contains_key(&account))
    }

    /// The open holds of `account` with ids above `after`, ascending, at
    /// most `limit` (clamped to `MAX_PAGE_ITEMS`).
    pub fn list_holds(&self, account: AccountId, after: HoldId, limit: usize) -> Vec<HoldView> {
        let limit = limit.clamp(1, MAX_PAGE_ITEMS);
        // Sorted on the next line: hash order cannot leak.
        #[allow(clippy::disallowed_methods)]
        let mut ids: Vec<_> = self
            .holds
            .iter()
            .filter(|(id, h)| h.account == account && **id > after)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .take(limit)
            .filter_map(|id| self.hold(id))
            .collect()
    }

    /// Per asset (sorted by symbol), the sums over every owner and wallet.
    pub fn conservation(&self) -> Vec<ConservationView> {
        let n = self.assets.len();
        let mut clients = vec![[0i128; 3]; n];
        // Sums are commutative: hash order cannot leak.
        #[allow(clippy::disallowed_methods)]
        for account in self.accounts.values() {
            for slot in &account.balances {
                let sum = &mut clients[slot.asset as usize][usize::from(slot.wallet.tag())];
                *sum = sum.saturating_add(slot.balance.available + slot.balance.locked);
            }
        }
        let mut pools = vec![0i128; n];
        let mut isolated = vec![0i128; n];
        for market in &self.markets {
            let pool = &mut pools[market.settle as usize];
            *pool = pool.saturating_add(market.state.pool);
            let margins = &mut isolated[market.settle as usize];
            for margin in market.isolated.values() {
                *margins = margins.saturating_add(*margin);
            }
        }
        let mut out: Vec<_> = (0..n)
            .map(|i| {
                let idx = i as AssetIdx;
                let asset = &self.assets[i];
                let system = |owner: Owner| {
                    let slot = SYSTEM_OWNERS.iter().position(|o| *o == owner).unwrap_or(0);
                    asset.system[slot].available
                };
                let parts = [
                    clients[i][0],
                    clients[i][1],
                    clients[i][2],
                    system(Owner::External),
                    system(Owner::Fees),
                    system(Owner::Insurance),
                    pools[i],
                    isolated[i],
                ];
                let total = parts.iter().fold(0i128, |a, b| a.saturating_add(*b));
                let dec = |units| to_decimal_saturating(units, self.scale(idx));
                ConservationView {
                    asset: asset.symbol.clone(),
                    clients: [dec(parts[0]), dec(parts[1]), dec(parts[2])],
                    external: dec(parts[3]),
                    fees: dec(parts[4]),
                    insurance: dec(parts[5]),
                    pools: dec(parts[6]),
                    isolated: dec(parts[7]),
                    total: dec(total),
                }
            })
            .collect();
        out.sort_unstable_by(|a, b| a.asset.cmp(&b.asset));
        out
    }
}
