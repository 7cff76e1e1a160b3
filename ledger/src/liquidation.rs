//! Liquidation and auto-deleveraging (ADL), run after every mark price.
//!
//! Which accounts: every account holding a position in a market settled in
//! the repriced market's settle asset, in account-id order, in passes until
//! a pass liquidates nobody (ADL can push another account under water). An
//! account is liquidated when its equity (settle balance + Σ UPNL at the
//! marks) is below its maintenance margin. A liquidated account holds no
//! positions in that asset afterwards, so the passes end. The liquidation
//! index (`liq_index`) finds the accounts a pass must check without
//! scanning every holder; the result is the scan's.
//!
//! How (all amounts settle minor units, exact):
//! 1. `Q` = equity; fee `F = min(Σ ceil(notional × liquidation fee rate),
//!    max(Q, 0))` goes to the insurance fund.
//! 2. The remaining equity `Q' = Q − F` is split over the positions in
//!    proportion to notional (toward zero; the last position, in market
//!    symbol order, takes the remainder): `d_i`. Each position closes at its
//!    bankruptcy value `V_i = size × mark − d_i` (bankruptcy price
//!    `V_i / size`), which leaves the account's balance exactly 0.
//! 3. Whoever takes a position over at `V_i` gains `d_i` against the mark.
//!    If `d_i ≥ 0` or the insurance balance covers the loss `−d_i`, the
//!    insurance fund takes the whole position over (its inventory, marked to
//!    the mark price at once, so the gain or loss lands in its balance).
//! 4. Otherwise profitable opposite positions are auto-deleveraged at the
//!    bankruptcy price, best first by PnL% × effective leverage (PnL% = UPNL
//!    / |cost| scaled 10^12, effective leverage = notional / equity scaled
//!    10^6, both toward zero; ties by account id). A chunk closing `x` of
//!    the remaining size `s` is valued `V × x / s` rounded toward −∞ (in the
//!    deleveraged holder's favour); the last chunk takes the rest, so the
//!    chunks sum to `V` exactly. A holder whose balance the chunk would make
//!    negative is skipped.
//! 5. What ADL could not absorb goes to the insurance fund, which loses at
//!    most its balance (if positive); the rest of the loss stays on the
//!    account as a negative balance, reported with `Event::Shortfall`.
//!
//! Bound per command: at most [`MAX_LIQUIDATIONS_PER_COMMAND`] liquidations
//! (cross accounts and isolated positions together) and, with the index, at
//! most [`MAX_LIQUIDATION_CHECKS_PER_COMMAND`] risk checks of candidates.
//! A command that reaches either stops there (what it did stands) and emits
//! `Event::LiquidationsDeferred`: the accounts it did not reach are still
//! below maintenance (or unchecked) and are taken, in the same order, by the
//! next mark price of any market settled in the asset (an exchange's mark
//! feed sends one per market every second; re-sending the current mark
//! drains the backlog at once). Meanwhile their initial margin (above the
//! maintenance margin) already refuses every order, withdrawal and transfer
//! that would add risk. The scan (index off) applies the same liquidation
//! bound, not the check bound (it checks every holder by design).

use std::collections::BTreeSet;

use crate::command::{AccountId, Event, Owner, PositionCause};
use crate::engine::{Ledger, reject};
use crate::events::Events;
use crate::journal::Journal;
use crate::market::MarketIdx;
use crate::reject::{RejectDetail, Rejection};
use crate::risk::GroupRisk;
use crate::state::AssetIdx;
use crate::wide::{Round, mul_div};

fn overflow() -> Rejection {
    reject(RejectDetail::LiquidationOverflow)
}

/// Liquidations one command performs at most (see the module docs): with
/// ~7 µs per liquidation measured (`liquidation_index` bench) a mark price
/// stays within a few milliseconds of apply time.
pub const MAX_LIQUIDATIONS_PER_COMMAND: u32 = 1_024;

/// Candidate risk checks one command performs at most with the index.
pub const MAX_LIQUIDATION_CHECKS_PER_COMMAND: u32 = 65_536;

/// What one command's liquidation passes have spent of their bounds.
#[derive(Default)]
pub(crate) struct LiquidationBudget {
    pub liquidated: u32,
    pub checked: u32,
    /// Set when a bound stopped the passes with work left.
    pub deferred: bool,
}

impl LiquidationBudget {
    /// True (and marks the budget deferred) if no liquidation may follow.
    pub(crate) fn liquidations_spent(&mut self) -> bool {
        if self.liquidated >= MAX_LIQUIDATIONS_PER_COMMAND {
            self.deferred = true;
        }
        self.deferred
    }

    /// True (and marks the budget deferred) if no check may follow.
    pub(crate) fn checks_spent(&mut self) -> bool {
        if self.checked >= MAX_LIQUIDATION_CHECKS_PER_COMMAND {
            self.deferred = true;
        }
        self.deferred
    }
}

/// A candidate for auto-deleveraging.
struct AdlCandidate {
    account: AccountId,
    score: i128,
}

impl Ledger {
    /// Liquidates, in passes, every account (with positions settled in
    /// `asset`) whose equity is below its maintenance margin, within the
    /// per-command bounds (module docs).
    pub(crate) fn liquidate_below_maintenance(
        &mut self,
        journal: &mut Journal,
        asset: AssetIdx,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let mut budget = LiquidationBudget::default();
        if self.liq.enabled {
            self.liquidate_indexed(journal, asset, &mut budget, events)?;
        } else {
            self.liquidate_scanned(journal, asset, &mut budget, events)?;
        }
        // Isolated positions: each on its own, after the cross passes.
        let markets: Vec<_> = self.settle_markets(asset).collect();
        for m in markets {
            if budget.deferred {
                break;
            }
            self.liquidate_isolated(journal, m, &mut budget, events)?;
        }
        if budget.deferred {
            events.emit(|| Event::LiquidationsDeferred {
                asset: self.symbol(asset).to_string(),
                liquidated: budget.liquidated,
                checked: budget.checked,
            });
        }
        Ok(())
    }

    /// The cross passes with the liquidation index (see `liq_index`): the
    /// same accounts as `liquidate_scanned`, in the same order. After a
    /// liquidation only the refreshed accounts can change status (the
    /// marks stand still), so only they can join the pass.
    fn liquidate_indexed(
        &mut self,
        journal: &mut Journal,
        asset: AssetIdx,
        budget: &mut LiquidationBudget,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        loop {
            self.refresh_liquidation_index();
            let mut candidates = self.crossed(asset);
            let mut liquidated = false;
            while let Some(account) = candidates.pop_first() {
                if budget.checks_spent() {
                    break;
                }
                budget.checked += 1;
                let risk = self.group_risk(account, asset).ok_or_else(overflow)?;
                if risk.positions.is_empty() || risk.equity >= risk.maintenance {
                    // Checked safe: its bands are recentred at these marks.
                    self.note_risk(account, asset);
                    continue;
                }
                if budget.liquidations_spent() {
                    break;
                }
                self.liquidate_account(journal, account, asset, events)?;
                budget.liquidated += 1;
                liquidated = true;
                self.refresh_into(asset, account, &mut candidates);
            }
            if !liquidated || budget.deferred {
                self.refresh_liquidation_index();
                return Ok(());
            }
        }
    }

    /// The cross passes by scanning every holder of the asset.
    fn liquidate_scanned(
        &mut self,
        journal: &mut Journal,
        asset: AssetIdx,
        budget: &mut LiquidationBudget,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        loop {
            let accounts: BTreeSet<AccountId> = self
                .settle_markets(asset)
                .flat_map(|m| self.markets[m as usize].positions.keys().copied())
                .collect();
            let mut liquidated = false;
            for account in accounts {
                let risk = self.group_risk(account, asset).ok_or_else(overflow)?;
                if risk.positions.is_empty() || risk.equity >= risk.maintenance {
                    continue;
                }
                if budget.liquidations_spent() {
                    return Ok(());
                }
                self.liquidate_account(journal, account, asset, events)?;
                budget.liquidated += 1;
                liquidated = true;
            }
            if !liquidated {
                return Ok(());
            }
        }
    }

    /// Liquidates `account`'s cross positions settled in `asset`: its open
    /// orders are cancelled first (their margin joins the available
    /// balance, equity unchanged), then every position closes as described
    /// in the module docs. Also used by a dated future's settlement.
    pub(crate) fn liquidate_account(
        &mut self,
        journal: &mut Journal,
        account: AccountId,
        asset: AssetIdx,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        if self.order_margin(account, asset) > 0 {
            self.release_order_margin(journal, account, asset, events)?;
        }
        let risk = self.group_risk(account, asset).ok_or_else(overflow)?;
        if risk.positions.is_empty() {
            return Ok(());
        }
        self.liquidate(journal, account, asset, &risk, events)
    }

    fn liquidate(
        &mut self,
        journal: &mut Journal,
        account: AccountId,
        asset: AssetIdx,
        risk: &GroupRisk,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let owner = Owner::Account(account);
        let equity = risk.equity;
        let mut fee_due = 0i128;
        let mut total_notional = 0i128;
        for held in &risk.positions {
            let market = &self.markets[held.market as usize];
            let fee = market
                .liquidation_fee(held.risk.notional)
                .ok_or_else(overflow)?;
            fee_due = fee_due.checked_add(fee).ok_or_else(overflow)?;
            total_notional = total_notional
                .checked_add(held.risk.notional)
                .ok_or_else(overflow)?;
        }
        let fee = fee_due.min(equity.max(0));
        let scale = self.scale(asset);
        events.emit(|| Event::Liquidation {
            account,
            asset: self.symbol(asset).to_string(),
            equity: crate::amount::to_decimal_saturating(equity, scale),
            maintenance_margin: crate::amount::to_decimal_saturating(risk.maintenance, scale),
            fee: crate::amount::to_decimal_saturating(fee, scale),
        });
        self.post(journal, owner, asset, -fee, events)?;
        self.post(journal, Owner::Insurance, asset, fee, events)?;
        let remaining = equity - fee;
        let n = risk.positions.len();
        let mut shares = Vec::with_capacity(n);
        let mut assigned = 0i128;
        for (i, held) in risk.positions.iter().enumerate() {
            let share = if i + 1 == n {
                remaining.checked_sub(assigned).ok_or_else(overflow)?
            } else {
                mul_div(remaining, held.risk.notional, total_notional, Round::Down)
                    .ok_or_else(overflow)?
            };
            assigned = assigned.checked_add(share).ok_or_else(overflow)?;
            shares.push(share);
        }
        for (held, share) in risk.positions.iter().zip(shares) {
            let m = held.market;
            let size = held.position.size;
            let bankruptcy = held.risk.value.checked_sub(share).ok_or_else(overflow)?;
            let fund = self.balance_units(Owner::Insurance, asset).available;
            if share >= 0 || fund >= -share {
                self.close_against_fund(journal, m, account, size, bankruptcy, events)?;
                continue;
            }
            let (rest_size, rest_value) =
                self.deleverage(journal, m, account, size, bankruptcy, events)?;
            if rest_size == 0 {
                continue;
            }
            let market = &self.markets[m as usize];
            let mark = market.mark_price().ok_or_else(overflow)?;
            let market_value = market.value(rest_size, mark).ok_or_else(overflow)?;
            let loss = rest_value.checked_sub(market_value).ok_or_else(overflow)?;
            let cover = self.balance_units(Owner::Insurance, asset).available.max(0);
            let value = if loss <= cover {
                rest_value
            } else {
                market_value.checked_add(cover).ok_or_else(overflow)?
            };
            self.close_against_fund(journal, m, account, rest_size, value, events)?;
        }
        let wallet = self.balance_units(self.collateral(owner), asset).available;
        if wallet < 0 {
            events.emit(|| Event::Shortfall {
                account,
                asset: self.symbol(asset).to_string(),
                amount: crate::amount::to_decimal_saturating(-wallet, scale),
            });
        }
        Ok(())
    }

    /// Closes `size` of `account`'s position in `m` against the insurance
    /// fund for `value` (signed like `size`), then marks the fund's
    /// inventory to the mark price.
    fn close_against_fund(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        account: AccountId,
        size: i128,
        value: i128,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let shown = self.derived_price(m, value, size);
        let (liquidated, fund) = (Owner::Account(account), Owner::Insurance);
        let closed = self.trade_holder(
            journal,
            m,
            liquidated,
            fund,
            PositionCause::Liquidation,
            -size,
            -value,
            shown,
            0,
            events,
        )?;
        let taken = self.trade_holder(
            journal,
            m,
            fund,
            liquidated,
            PositionCause::Takeover,
            size,
            value,
            shown,
            0,
            events,
        )?;
        let realized = closed.checked_add(taken).ok_or_else(overflow)?;
        self.move_pool(journal, m, -realized, events)?;
        self.mark_insurance(journal, m, events)
    }

    /// Auto-deleverages `account`'s position of `size` in `m` (bankruptcy
    /// value `value`) against profitable opposite positions. Returns the size
    /// and value left over.
    fn deleverage(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        account: AccountId,
        size: i128,
        value: i128,
        events: &mut Events,
    ) -> Result<(i128, i128), Rejection> {
        let market = &self.markets[m as usize];
        let settle = market.settle;
        let mark = market.mark_price().ok_or_else(overflow)?;
        let mut candidates = Vec::new();
        for (&other, position) in &market.positions {
            if other == account || (position.size > 0) == (size > 0) {
                continue;
            }
            let r = self
                .position_risk(m, *position, mark)
                .ok_or_else(overflow)?;
            if r.upnl <= 0 {
                continue;
            }
            let group = self.group_risk(other, settle).ok_or_else(overflow)?;
            if group.equity <= 0 {
                continue;
            }
            let pnl_pct = match position.cost.checked_abs() {
                Some(0) | None => i128::MAX,
                Some(cost) => {
                    mul_div(r.upnl, 1_000_000_000_000, cost, Round::Down).unwrap_or(i128::MAX)
                }
            };
            let leverage =
                mul_div(r.notional, 1_000_000, group.equity, Round::Down).unwrap_or(i128::MAX);
            candidates.push(AdlCandidate {
                account: other,
                score: pnl_pct.saturating_mul(leverage),
            });
        }
        candidates.sort_by(|a, b| b.score.cmp(&a.score).then(a.account.cmp(&b.account)));
        let side: i128 = if size > 0 { 1 } else { -1 };
        let (mut rest_size, mut rest_value) = (size, value);
        for candidate in candidates {
            if rest_size == 0 {
                break;
            }
            let other = Owner::Account(candidate.account);
            let position = self.position_of(m, other);
            let open = position.size.checked_abs().ok_or_else(overflow)?;
            let left = rest_size.checked_abs().ok_or_else(overflow)?;
            let x = open.min(left);
            let chunk = if x == left {
                rest_value
            } else {
                mul_div(rest_value, x, left, Round::Floor).ok_or_else(overflow)?
            };
            // The deleveraged holder buys back (or sells) `x` for `chunk`.
            let traded = self
                .holder_trade(m, other, position, side * x, chunk)
                .ok_or_else(overflow)?;
            let wallet = match self.isolated_margin(m, other) {
                Some(margin) => margin,
                None => self.balance_units(self.collateral(other), settle).available,
            };
            if wallet.checked_add(traded.realized).is_none_or(|w| w < 0) {
                continue;
            }
            let shown = self.derived_price(m, chunk, side * x);
            let closed = self.trade_holder(
                journal,
                m,
                Owner::Account(account),
                other,
                PositionCause::Liquidation,
                -side * x,
                -chunk,
                shown,
                0,
                events,
            )?;
            let deleveraged = self.trade_holder(
                journal,
                m,
                other,
                Owner::Account(account),
                PositionCause::Deleverage,
                side * x,
                chunk,
                shown,
                0,
                events,
            )?;
            let realized = closed.checked_add(deleveraged).ok_or_else(overflow)?;
            self.move_pool(journal, m, -realized, events)?;
            rest_size -= side * x;
            rest_value = rest_value.checked_sub(chunk).ok_or_else(overflow)?;
        }
        Ok((rest_size, rest_value))
    }
}
