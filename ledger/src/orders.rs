//! Open-order margin of perpetual orders: holds in the margin wallet.
//!
//! `WalletLock` locks funds of a spot or margin wallet under a hold id
//! (the order id), like `Lock` does in spot. In a margin collateral wallet
//! the lock is the order's margin (the matching engine states it, e.g. IM
//! at the order price plus the open loss): it moves at most the
//! transferable amount, and from then on it counts both as margin balance
//! (equity) and as required margin (IM) of the account's cross group (the
//! `risk` module), so it is never transferable and cannot be withdrawn,
//! but it does not push the account toward liquidation. `Release` and
//! `ReleasePart` return it (an order cancelled or amended down);
//! `PerpOrderFill` consumes it as the order fills: it returns the stated
//! part of each side's hold to available and settles the fill in one
//! transaction, so the fill's own margin check sees that margin. When an
//! account is liquidated its open orders are cancelled first: every
//! margin hold of the liquidated asset is released (in hold-id order).
//!
//! Margin holds never settle spot fills (`HoldNotSpot`), and a spot hold
//! is never consumed by a perp fill (`OrderHoldMismatch`).

use rust_decimal::Decimal;

use crate::command::{AccountId, HoldId, Owner, PerpOrderFill, Wallet, WalletLock};
use crate::engine::{Ledger, postings, reject};
use crate::events::Events;
use crate::journal::{Journal, Posting};
use crate::reject::{Field, RejectDetail, Rejection, Side};
use crate::state::{AssetIdx, Balance, Hold};

impl Ledger {
    /// The open-order margin of `account` in `asset`: the locked balance
    /// of its margin wallet if that is its collateral, else 0.
    pub(crate) fn order_margin(&self, account: AccountId, asset: AssetIdx) -> i128 {
        match self.accounts.get(&account) {
            Some(a) if a.settings.collateral == Wallet::Margin => a
                .get(Wallet::Margin, asset)
                .map_or(0, |balance| balance.locked),
            _ => 0,
        }
    }

    pub(crate) fn wallet_lock(
        &mut self,
        journal: &mut Journal,
        c: &WalletLock,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        if !matches!(c.wallet, Wallet::Spot | Wallet::Margin) {
            return Err(reject(RejectDetail::HoldWalletInvalid { wallet: c.wallet }));
        }
        self.check_account(c.account)?;
        let idx = self.asset_idx(&c.asset)?;
        let units = self.positive_units(c.amount, idx, Field::Amount)?;
        if self.holds.contains_key(&c.hold) {
            return Err(reject(RejectDetail::HoldExists { hold: c.hold }));
        }
        let owner = Owner::wallet(c.account, c.wallet);
        self.check_wallet_available(owner, idx, units)?;
        if c.wallet == Wallet::Margin {
            self.check_transferable(c.account, c.wallet, idx, units)?;
        }
        postings!(let mut postings = (owner, idx, -units, units));
        self.check_postings(&mut postings)?;
        events.reserve(3);
        self.commit_postings(journal, &postings, events);
        let open = Hold {
            account: c.account,
            wallet: c.wallet,
            asset: idx,
            amount: units,
            remaining: units,
        };
        self.write_hold(journal, c.hold, Some(open));
        events.emit(|| self.hold_event(c.hold, c.account, idx, units, false));
        Ok(())
    }

    pub(crate) fn perp_order_fill(
        &mut self,
        journal: &mut Journal,
        c: &PerpOrderFill,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let m = self.market_idx(&c.fill.market)?;
        let settle = self.markets[m as usize].settle;
        let sides = [
            (Side::Buy, c.fill.buyer, c.buy_hold, c.buy_release),
            (Side::Sell, c.fill.seller, c.sell_hold, c.sell_release),
        ];
        for (side, account, hold, release) in sides {
            if hold == 0 {
                continue;
            }
            let Some(&open) = self.holds.get(&hold) else {
                return Err(reject(RejectDetail::FillHoldNotOpen { side, hold }));
            };
            let theirs = open.account == account && open.asset == settle;
            if open.wallet != Wallet::Margin || !theirs {
                return Err(reject(RejectDetail::OrderHoldMismatch { side, hold }));
            }
            let units = self.positive_units(release, settle, Field::Amount)?;
            self.unlock(journal, hold, open, units, release, events)?;
        }
        self.perp_fill(journal, &c.fill, events)
    }

    /// Returns `units` of margin hold `hold` to available, journaled (no
    /// commit point: the caller may still fail and roll it back).
    fn unlock(
        &mut self,
        journal: &mut Journal,
        hold: HoldId,
        open: Hold,
        units: i128,
        shown: Decimal,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        if units > open.remaining {
            return Err(reject(RejectDetail::ReleaseAboveRemaining {
                hold,
                amount: shown,
                remaining: crate::amount::shown_decimal(open.remaining, self.scale(open.asset)),
            }));
        }
        let owner = Owner::wallet(open.account, open.wallet);
        let current = self.balance_units(owner, open.asset);
        let posting = Posting {
            owner,
            asset: open.asset,
            available_delta: units,
            locked_delta: -units,
            after: Balance {
                available: current.available + units,
                locked: current.locked - units,
            },
        };
        assert!(
            posting.after.locked >= 0,
            "invariant broken: hold {hold} releases more than is locked"
        );
        self.write_balance(journal, &posting, events);
        self.take_from_hold(journal, hold, open, units, events);
        Ok(())
    }

    /// Releases every margin hold of `account` in `asset` (hold-id order):
    /// its open orders are cancelled before a liquidation.
    pub(crate) fn release_order_margin(
        &mut self,
        journal: &mut Journal,
        account: AccountId,
        asset: AssetIdx,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        // Sorted on the next line: hash order cannot leak.
        #[allow(clippy::disallowed_methods)]
        let mut holds: Vec<(HoldId, Hold)> = self
            .holds
            .iter()
            .filter(|(_, h)| h.account == account && h.wallet == Wallet::Margin && h.asset == asset)
            .map(|(id, h)| (*id, *h))
            .collect();
        holds.sort_unstable_by_key(|(id, _)| *id);
        for (hold, open) in holds {
            let shown = crate::amount::to_decimal(open.remaining, self.scale(asset));
            self.unlock(journal, hold, open, open.remaining, shown, events)?;
        }
        Ok(())
    }
}
