//! Isolated margin: a client's position in one market may be isolated, with
//! its own margin balance (settle minor units, `Market::isolated`) instead
//! of the account's cross collateral. Cross stays the default.
//!
//! Rules:
//! - `SetIsolated` switches an account's mode in a market while it holds no
//!   position there; switching back to cross returns any margin left to the
//!   collateral wallet.
//! - `AdjustIsolatedMargin` adds margin from the collateral wallet (at most
//!   its transferable amount) or removes it back; a removal never leaves
//!   the position's margin + UPNL below its initial margin at the mark (so
//!   never below maintenance): `IsolatedMarginShort`, nothing changes.
//! - Fills of an isolated position settle realized PnL and fees into its
//!   margin, and a risk-increasing one must keep margin + UPNL − open
//!   profit at or above the position's IM at the higher of fill price and
//!   mark (its cost to open; the caller adds margin first). Funding is paid
//!   from and into the margin.
//! - Risk: cross equity, margin and liquidation never see isolated
//!   positions. An isolated position is liquidated when margin + UPNL <
//!   its maintenance margin: it closes against the insurance fund at its
//!   bankruptcy value `cost − margin` (the margin ends at exactly 0), and
//!   nothing else of the account is touched. A loss beyond the margin (a
//!   gap past the bankruptcy price) is the insurance fund's.
//! - Liquidation price (Binance's isolated formula: the cross formula with
//!   the wallet balance replaced by the isolated margin and the other
//!   positions' maintenance margin and UPNL taken as zero).

use crate::amount;
use crate::command::{AccountId, AdjustIsolatedMargin, Event, Owner, PositionCause, SetIsolated};
use crate::engine::{Ledger, reject};
use crate::events::Events;
use crate::journal::Journal;
use crate::market::{MarketIdx, Position};
use crate::reject::{Field, RejectDetail, Rejection};
use crate::risk::{GroupRisk, HeldPosition};

fn overflow() -> Rejection {
    reject(RejectDetail::Overflow)
}

impl Ledger {
    /// The isolated margin of `holder` in `m`, if its position there is isolated.
    pub(crate) fn isolated_margin(&self, m: MarketIdx, holder: Owner) -> Option<i128> {
        match holder {
            Owner::Account(id) => self.markets[m as usize].isolated.get(&id).copied(),
            _ => None,
        }
    }

    /// Moves `delta` of realized PnL, fees or funding of `holder`'s position
    /// in `m` into its isolated margin if it is isolated, else into its
    /// collateral balance (`post`).
    pub(crate) fn post_position_money(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        holder: Owner,
        delta: i128,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let settle = self.markets[m as usize].settle;
        match (holder, self.isolated_margin(m, holder)) {
            (Owner::Account(id), Some(margin)) => {
                let after = margin
                    .checked_add(delta)
                    .filter(|v| amount::in_range(*v))
                    .ok_or_else(overflow)?;
                self.write_isolated(journal, m, id, Some(after), delta, events);
                Ok(())
            }
            _ => self.post(journal, holder, settle, delta, events),
        }
    }

    /// The risk of `account`'s isolated position in `m` as a one-position
    /// group (wallet = its margin), `None` if not isolated, flat or on overflow.
    pub(crate) fn isolated_risk(&self, m: MarketIdx, account: AccountId) -> Option<GroupRisk> {
        let market = &self.markets[m as usize];
        let margin = *market.isolated.get(&account)?;
        let position = *market.positions.get(&account)?;
        self.isolated_risk_with(m, margin, position)
    }

    /// The one-position risk of `position` in `m` with `margin`.
    pub(crate) fn isolated_risk_with(
        &self,
        m: MarketIdx,
        margin: i128,
        position: Position,
    ) -> Option<GroupRisk> {
        let market = &self.markets[m as usize];
        let mark = market.mark_price()?;
        let r = self.position_risk(m, position, mark)?;
        Some(GroupRisk {
            wallet: margin,
            upnl: r.upnl,
            equity: margin.checked_add(r.upnl)?,
            initial: r.initial_margin,
            maintenance: r.maintenance,
            maintenance_exact: r.maintenance_exact,
            positions: vec![HeldPosition {
                market: m,
                position,
                mark,
                risk: r,
            }],
        })
    }

    pub(crate) fn set_isolated(
        &mut self,
        journal: &mut Journal,
        c: &SetIsolated,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        self.check_account(c.account)?;
        let m = self.market_idx(&c.market)?;
        if self.markets[m as usize].positions.contains_key(&c.account) {
            return Err(reject(RejectDetail::PositionOpen {
                account: c.account,
                market: c.market.clone(),
            }));
        }
        let current = self.markets[m as usize].isolated.get(&c.account).copied();
        match (c.isolated, current) {
            (true, None) => self.write_isolated(journal, m, c.account, Some(0), 0, events),
            (false, Some(margin)) => {
                let settle = self.markets[m as usize].settle;
                self.write_isolated(journal, m, c.account, None, -margin, events);
                self.post(journal, Owner::Account(c.account), settle, margin, events)?;
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn adjust_isolated_margin(
        &mut self,
        journal: &mut Journal,
        c: &AdjustIsolatedMargin,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        self.check_account(c.account)?;
        let m = self.market_idx(&c.market)?;
        let settle = self.markets[m as usize].settle;
        let Some(margin) = self.isolated_margin(m, Owner::Account(c.account)) else {
            return Err(reject(RejectDetail::NotIsolated {
                account: c.account,
                market: c.market.clone(),
            }));
        };
        if c.delta.is_zero() {
            return Err(reject(RejectDetail::NotPositive {
                field: Field::Amount,
                value: c.delta,
            }));
        }
        let units = self.units(c.delta, settle, Field::Amount)?;
        let after = margin.checked_add(units).ok_or_else(overflow)?;
        if units > 0 {
            let wallet = self.collateral(Owner::Account(c.account));
            let available = self.balance_units(wallet, settle).available;
            if available < units {
                return Err(self.isolated_short(m, c, margin, available));
            }
            let (account, collateral) = wallet.client().unwrap_or((c.account, Default::default()));
            self.check_transferable(account, collateral, settle, units)?;
        } else {
            self.check_isolated_removal(m, c, margin, after)?;
        }
        self.write_isolated(journal, m, c.account, Some(after), units, events);
        self.post(journal, Owner::Account(c.account), settle, -units, events)
    }

    /// `IsolatedMarginShort` unless the margin may drop to `after`: at
    /// least 0, and with a position at least its IM at the mark less UPNL.
    fn check_isolated_removal(
        &self,
        m: MarketIdx,
        c: &AdjustIsolatedMargin,
        margin: i128,
        after: i128,
    ) -> Result<(), Rejection> {
        let position = self.markets[m as usize].positions.get(&c.account).copied();
        let floor = match position {
            None => 0,
            Some(p) => {
                let risk = self.isolated_risk_with(m, after, p).ok_or_else(overflow)?;
                // after + upnl >= initial  <=>  after >= initial - upnl
                risk.initial
                    .checked_sub(risk.upnl)
                    .ok_or_else(overflow)?
                    .max(0)
            }
        };
        if after >= floor {
            return Ok(());
        }
        Err(self.isolated_short(m, c, margin, margin.saturating_sub(floor).max(0)))
    }

    fn isolated_short(
        &self,
        m: MarketIdx,
        c: &AdjustIsolatedMargin,
        margin: i128,
        movable: i128,
    ) -> Rejection {
        reject(RejectDetail::IsolatedMarginShort {
            account: c.account,
            market: c.market.clone(),
            margin: self.money_decimal(m, margin).normalize(),
            delta: c.delta,
            movable: self.money_decimal(m, movable).normalize(),
        })
    }

    /// Sets (`Some`) or removes (`None`) `account`'s isolated margin in `m`,
    /// journaled, noting the record dirty; emits `IsolatedMargin`.
    pub(crate) fn write_isolated(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        account: AccountId,
        margin: Option<i128>,
        delta: i128,
        events: &mut Events,
    ) {
        let isolated = &mut self.markets[m as usize].isolated;
        let before = match margin {
            Some(v) => isolated.insert(account, v),
            None => isolated.remove(&account),
        };
        journal.record_isolated(m, account, before);
        let settle = self.markets[m as usize].settle;
        self.note_risk(account, settle);
        self.liq.note_isolated(m, account);
        self.dirty
            .push(crate::state::DirtyKey::Isolated(m, account));
        events.emit(|| Event::IsolatedMargin {
            market: self.markets[m as usize].symbol.clone(),
            account,
            delta: self.money_decimal(m, delta),
            margin: margin.map(|v| self.money_decimal(m, v)),
        });
    }

    /// Liquidates every isolated position in `m` whose margin + UPNL is
    /// below its maintenance margin (account order): it closes against the
    /// insurance fund at its bankruptcy value, leaving its margin at 0.
    pub(crate) fn liquidate_isolated(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        budget: &mut crate::liquidation::LiquidationBudget,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        // With the index: only the crossed or always-checked positions (a
        // safe one's band is recentred at this mark); the scan: all.
        let indexed = self.liq.enabled;
        let accounts: Vec<AccountId> = if indexed {
            self.crossed_isolated(m).into_iter().collect()
        } else {
            self.markets[m as usize].isolated.keys().copied().collect()
        };
        for account in accounts {
            if indexed {
                if budget.checks_spent() {
                    return Ok(());
                }
                budget.checked += 1;
            }
            let Some(risk) = self.isolated_risk(m, account) else {
                continue;
            };
            if risk.equity >= risk.maintenance {
                self.liq.note_isolated(m, account);
                continue;
            }
            if budget.liquidations_spent() {
                return Ok(());
            }
            self.liquidate_isolated_position(journal, m, account, &risk, events)?;
            budget.liquidated += 1;
        }
        Ok(())
    }

    /// Closes `account`'s isolated position in `m` (its one-position
    /// group `risk`) against the insurance fund at its bankruptcy value
    /// `cost − margin`, leaving its margin at 0. Also used by settlement.
    pub(crate) fn liquidate_isolated_position(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        account: AccountId,
        risk: &GroupRisk,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let held = risk.positions[0];
        let settle = self.markets[m as usize].settle;
        events.emit(|| Event::Liquidation {
            account,
            asset: self.symbol(settle).to_string(),
            equity: self.money_decimal(m, risk.equity),
            maintenance_margin: self.money_decimal(m, risk.maintenance),
            fee: self.money_decimal(m, 0),
        });
        let position = held.position;
        // Closing at value V realizes V − cost; V = cost − margin takes
        // exactly the margin.
        let value = position
            .cost
            .checked_sub(risk.wallet)
            .ok_or_else(overflow)?;
        let shown = self.derived_price(m, value, position.size);
        let (liquidated, fund) = (Owner::Account(account), Owner::Insurance);
        let closed = self.trade_holder(
            journal,
            m,
            liquidated,
            fund,
            PositionCause::Liquidation,
            -position.size,
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
            position.size,
            value,
            shown,
            0,
            events,
        )?;
        let net = closed.checked_add(taken).ok_or_else(overflow)?;
        self.move_pool(journal, m, -net, events)?;
        self.mark_insurance(journal, m, events)?;
        Ok(())
    }
}
