//! Read-only views of the state for queries, in `Decimal` at each asset's
//! scale and in canonical (sorted) order.

use rust_decimal::Decimal;

use crate::amount::to_decimal;
use crate::command::{AccountId, HoldId, Owner};
use crate::engine::Ledger;
use crate::state::{AssetIdx, Balance, system_slot};

/// A registered asset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetView {
    pub symbol: String,
    pub scale: u32,
}

/// One (owner, asset) balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceView {
    pub available: Decimal,
    pub locked: Decimal,
}

/// A client account: every asset it ever touched, sorted by symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountView {
    pub account: AccountId,
    pub balances: Vec<(String, BalanceView)>,
}

/// An open hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldView {
    pub hold: HoldId,
    pub account: AccountId,
    pub asset: String,
    /// The amount originally locked.
    pub amount: Decimal,
    /// What is still locked.
    pub remaining: Decimal,
}

impl Ledger {
    fn balance_view(&self, balance: Balance, idx: AssetIdx) -> BalanceView {
        let scale = self.scale(idx);
        BalanceView {
            available: to_decimal(balance.available, scale),
            locked: to_decimal(balance.locked, scale),
        }
    }

    pub fn asset(&self, symbol: &str) -> Option<AssetView> {
        let idx = *self.asset_index.get(symbol)?;
        let asset = self.assets.get(idx as usize)?;
        Some(AssetView {
            symbol: asset.symbol.clone(),
            scale: asset.scale,
        })
    }

    /// All assets, sorted by symbol.
    pub fn assets(&self) -> Vec<AssetView> {
        let mut out: Vec<_> = self
            .assets
            .iter()
            .map(|a| AssetView {
                symbol: a.symbol.clone(),
                scale: a.scale,
            })
            .collect();
        out.sort_unstable_by(|a, b| a.symbol.cmp(&b.symbol));
        out
    }

    /// None if the asset is unknown or `Owner::Account` is unknown; zero
    /// balances for a known account and asset it never touched.
    pub fn balance(&self, owner: Owner, asset: &str) -> Option<BalanceView> {
        let idx = *self.asset_index.get(asset)?;
        let balance = match (owner.client(), system_slot(owner)) {
            (Some((id, wallet)), _) => self
                .accounts
                .get(&id)?
                .get(wallet, idx)
                .copied()
                .unwrap_or_default(),
            (_, Some(slot)) => self.assets.get(idx as usize)?.system[slot],
            (_, None) => return None,
        };
        Some(self.balance_view(balance, idx))
    }

    pub fn account(&self, account: AccountId) -> Option<AccountView> {
        let state = self.accounts.get(&account)?;
        let mut balances: Vec<_> = state
            .balances
            .iter()
            .map(|slot| {
                (
                    self.symbol(slot.asset).to_string(),
                    self.balance_view(slot.balance, slot.asset),
                )
            })
            .collect();
        balances.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Some(AccountView { account, balances })
    }

    pub fn hold(&self, hold: HoldId) -> Option<HoldView> {
        let open = self.holds.get(&hold)?;
        let scale = self.scale(open.asset);
        Some(HoldView {
            hold,
            account: open.account,
            asset: self.symbol(open.asset).to_string(),
            amount: to_decimal(open.amount, scale),
            remaining: to_decimal(open.remaining, scale),
        })
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    pub fn open_hold_count(&self) -> usize {
        self.holds.len()
    }
}
