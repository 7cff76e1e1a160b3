//! Dated (expiring) futures: their creation, the expiry rules the other
//! perpetual commands apply to them, and their settlement.
//!
//! A dated future is a linear perpetual market (same parameters, margin,
//! liquidation and ADL; see `perp`, `risk`, `liquidation`) without funding,
//! plus an expiry time and a delivery fee rate (`market::Instrument`).
//!
//! Rules (documented choices):
//! - From the expiry time (leader time `>= expiry_ms`) every fill is
//!   refused (`FillAfterExpiry`); mark prices are still taken (and still
//!   liquidate) until the settlement. `ApplyFunding` is refused for a dated
//!   future at any time (`NoFundingForDatedFuture`).
//! - `SettleFuture` takes one stated price (the exchange's settlement index,
//!   e.g. a 30-minute TWAP of the underlying index before expiry, computed
//!   by the price service); it does not sample. It is refused before the
//!   expiry (`SettlementBeforeExpiry`) and a second time
//!   (`FutureAlreadySettled`); after it the market takes no fill and no
//!   mark price (`MarketSettled`).
//! - Settlement, in one transaction:
//!   1. the price is applied as a mark price, with the liquidations any
//!      mark price runs (cross accounts of the settle asset whose equity
//!      is below maintenance, then isolated positions): a loser beyond its
//!      equity is liquidated at its bankruptcy price against the insurance
//!      fund, then ADL, exactly as by a mark price;
//!   2. a cross account whose settle-asset `available` cannot absorb its
//!      settlement loss (its other positions' unrealized profit kept it
//!      above maintenance) is liquidated the same way, so no client balance
//!      goes negative while it still holds positions;
//!   3. every remaining position (client accounts in id order, then the
//!      insurance fund's inventory) closes at the settlement price against
//!      the PnL pool: realized PnL = size × price − cost; Σ realized equals
//!      the pool, which ends at 0, so settlement is zero-sum;
//!   4. each client position pays a delivery fee of ceil(|size| × price ×
//!      rate) to `Fees`, at most what its balance (or isolated margin)
//!      holds after its PnL (the insurance fund's inventory pays none);
//!   5. an isolated position's margin left is released to the collateral
//!      wallet and the position is cross again.
//!
//! Bound: settlement touches each holder of the market once (plus the
//! liquidations of step 1 and 2, which are those of a mark price); the
//! number of holders is bounded by the accounts, as for a funding round.

use rust_decimal::Decimal;

use crate::amount;
use crate::command::{AccountId, CreateDatedFuture, Event, Owner, PositionCause, SettleFuture};
use crate::engine::{Ledger, reject};
use crate::events::Events;
use crate::journal::Journal;
use crate::market::{Instrument, InstrumentKind, MarketIdx, RATE_ONE};
use crate::reject::{Field, RejectDetail, Rejection};
use crate::wide::{Round, mul_div};

fn overflow() -> Rejection {
    reject(RejectDetail::Overflow)
}

impl Ledger {
    pub(crate) fn create_dated_future(
        &mut self,
        c: &CreateDatedFuture,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        if c.expiry_ms == 0 {
            return Err(reject(RejectDetail::ZeroExpiry));
        }
        let rate = c.delivery_fee_rate;
        let delivery_fee_rate =
            amount::to_units(rate, crate::command::RATE_SCALE).map_err(|e| match e {
                amount::AmountError::TooPrecise => reject(RejectDetail::RateTooPrecise {
                    field: Field::DeliveryFeeRate,
                    rate,
                }),
                amount::AmountError::TooLarge => reject(RejectDetail::RateTooLarge {
                    field: Field::DeliveryFeeRate,
                    rate,
                }),
            })?;
        if !(0..RATE_ONE).contains(&delivery_fee_rate) {
            return Err(reject(RejectDetail::DeliveryFeeRateOutOfRange { rate }));
        }
        let instrument = Instrument {
            kind: InstrumentKind::DatedFuture,
            expiry_ms: c.expiry_ms,
            delivery_fee_rate,
        };
        let market = self.new_market(&c.market, instrument)?;
        self.push_market(market, events)
    }

    /// `MarketSettled` if `m` is a settled dated future; `FillAfterExpiry`
    /// if it is a dated future at or after its expiry (leader time of the
    /// command being applied).
    pub(crate) fn check_tradable(&self, m: MarketIdx) -> Result<(), Rejection> {
        let market = &self.markets[m as usize];
        if market.instrument.kind != InstrumentKind::DatedFuture {
            return Ok(());
        }
        self.check_not_settled(m)?;
        let now_ms = self.context.time_ms;
        if now_ms >= market.instrument.expiry_ms {
            return Err(reject(RejectDetail::FillAfterExpiry {
                market: market.symbol.clone(),
                expiry_ms: market.instrument.expiry_ms,
                now_ms,
            }));
        }
        Ok(())
    }

    /// `MarketSettled` if `m` was settled.
    pub(crate) fn check_not_settled(&self, m: MarketIdx) -> Result<(), Rejection> {
        let market = &self.markets[m as usize];
        match market.state.settlement {
            Some(price) => Err(reject(RejectDetail::MarketSettled {
                market: market.symbol.clone(),
                price: self.price_decimal(m, price),
            })),
            None => Ok(()),
        }
    }

    /// `NoFundingForDatedFuture` unless `m` takes funding.
    pub(crate) fn check_funded(&self, m: MarketIdx) -> Result<(), Rejection> {
        let market = &self.markets[m as usize];
        if market.instrument.kind == InstrumentKind::DatedFuture {
            return Err(reject(RejectDetail::NoFundingForDatedFuture {
                market: market.symbol.clone(),
            }));
        }
        Ok(())
    }

    pub(crate) fn settle_future(
        &mut self,
        journal: &mut Journal,
        c: &SettleFuture,
        now_ms: u64,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let m = self.market_idx(&c.market)?;
        let market = &self.markets[m as usize];
        if market.instrument.kind != InstrumentKind::DatedFuture {
            return Err(reject(RejectDetail::NotDatedFuture {
                market: market.symbol.clone(),
                kind: market.instrument.kind.as_str().to_string(),
            }));
        }
        if let Some(price) = market.state.settlement {
            return Err(reject(RejectDetail::FutureAlreadySettled {
                market: market.symbol.clone(),
                price: self.price_decimal(m, price),
            }));
        }
        if now_ms < market.instrument.expiry_ms {
            return Err(reject(RejectDetail::SettlementBeforeExpiry {
                market: market.symbol.clone(),
                expiry_ms: market.instrument.expiry_ms,
                now_ms,
            }));
        }
        if c.price <= Decimal::ZERO {
            return Err(reject(RejectDetail::NotPositive {
                field: Field::SettlementPrice,
                value: c.price,
            }));
        }
        // 1. The price as a mark price, with its liquidations.
        self.set_mark_price(journal, &c.market, c.price, now_ms, events)?;
        let settle = self.markets[m as usize].settle;
        let price = self.markets[m as usize].mark_price().ok_or_else(overflow)?;
        // 2. Cross accounts whose balance cannot absorb the settlement loss.
        self.liquidate_unabsorbed(journal, m, price, events)?;
        // 3-5. Close everything at the price.
        let (positions, realized, fees) = self.close_at_settlement(journal, m, price, events)?;
        self.move_pool(journal, m, -realized, events)?;
        let pool = self.markets[m as usize].state.pool;
        assert!(
            pool == 0,
            "invariant broken: pool {pool} after settling every position"
        );
        self.post(journal, Owner::Fees, settle, fees, events)?;
        self.state_mut(journal, m).settlement = Some(price);
        events.emit(|| Event::Settlement {
            market: c.market.clone(),
            price: self.price_decimal(m, price),
            time_ms: now_ms,
            positions,
            realized: self.money_decimal(m, realized),
            delivery_fees: self.money_decimal(m, fees),
        });
        Ok(())
    }

    /// Step 2 of a settlement: liquidates (as a mark price would) every
    /// cross account holding a position in `m` whose collateral
    /// `available` plus its settlement PnL at `price` is negative.
    fn liquidate_unabsorbed(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        price: i128,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        // Each pass liquidates at least one holder, which then holds no
        // position here: at most one pass per holder, plus the last.
        loop {
            let Some(account) = self.first_unabsorbed(m, price)? else {
                return Ok(());
            };
            let settle = self.markets[m as usize].settle;
            self.liquidate_account(journal, account, settle, events)?;
        }
    }

    /// The first cross holder of `m` (account order) whose collateral
    /// `available` plus its settlement PnL at `price` is negative.
    fn first_unabsorbed(&self, m: MarketIdx, price: i128) -> Result<Option<AccountId>, Rejection> {
        let market = &self.markets[m as usize];
        for (&account, position) in &market.positions {
            if market.isolated.contains_key(&account) {
                continue;
            }
            let value = market.value(position.size, price).ok_or_else(overflow)?;
            let realized = value.checked_sub(position.cost).ok_or_else(overflow)?;
            let wallet = self.collateral(Owner::Account(account));
            let available = self.balance_units(wallet, market.settle).available;
            if available.checked_add(realized).ok_or_else(overflow)? < 0 {
                return Ok(Some(account));
            }
        }
        Ok(None)
    }

    /// Steps 3 to 5 of a settlement: closes every position of `m` at
    /// `price`. Returns (positions closed, Σ realized PnL, Σ delivery fees).
    fn close_at_settlement(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        price: i128,
        events: &mut Events,
    ) -> Result<(u64, i128, i128), Rejection> {
        let market = &self.markets[m as usize];
        let mut holders: Vec<Owner> = market
            .positions
            .keys()
            .map(|&id| Owner::Account(id))
            .collect();
        if market.state.insurance.size != 0 {
            holders.push(Owner::Insurance);
        }
        let shown = self.price_decimal(m, price);
        let (mut realized, mut fees) = (0i128, 0i128);
        for &holder in &holders {
            let market = &self.markets[m as usize];
            let position = self.position_of(m, holder);
            let value = market.value(position.size, price).ok_or_else(overflow)?;
            let pnl = value.checked_sub(position.cost).ok_or_else(overflow)?;
            let fee = match holder {
                Owner::Account(account) => self.delivery_fee(m, account, value, pnl)?,
                _ => 0,
            };
            let closed = self.trade_holder(
                journal,
                m,
                holder,
                holder,
                PositionCause::Settlement,
                -position.size,
                -value,
                shown,
                fee,
                events,
            )?;
            realized = realized.checked_add(closed).ok_or_else(overflow)?;
            fees = fees.checked_add(fee).ok_or_else(overflow)?;
            if let Owner::Account(account) = holder {
                self.release_isolated_at_settlement(journal, m, account, events)?;
            }
        }
        // At most one position per client account plus the fund.
        Ok((holders.len() as u64, realized, fees))
    }

    /// The delivery fee of `account`'s position of notional `|value|` in
    /// `m`: ceil(|value| × rate), at most what its balance (or isolated
    /// margin) holds after the settlement PnL `pnl`.
    fn delivery_fee(
        &self,
        m: MarketIdx,
        account: AccountId,
        value: i128,
        pnl: i128,
    ) -> Result<i128, Rejection> {
        let market = &self.markets[m as usize];
        let notional = value.checked_abs().ok_or_else(overflow)?;
        let due = mul_div(
            notional,
            market.instrument.delivery_fee_rate,
            RATE_ONE,
            Round::Ceil,
        )
        .ok_or_else(overflow)?;
        let holder = Owner::Account(account);
        let wallet = match self.isolated_margin(m, holder) {
            Some(margin) => margin,
            None => {
                self.balance_units(self.collateral(holder), market.settle)
                    .available
            }
        };
        let after = wallet.checked_add(pnl).ok_or_else(overflow)?;
        Ok(due.min(after.max(0)))
    }

    /// Returns what is left of `account`'s isolated margin in `m` (if
    /// isolated) to its collateral wallet; the position is cross again.
    fn release_isolated_at_settlement(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        account: AccountId,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let Some(margin) = self.isolated_margin(m, Owner::Account(account)) else {
            return Ok(());
        };
        let settle = self.markets[m as usize].settle;
        self.write_isolated(journal, m, account, None, -margin, events);
        self.post(journal, Owner::Account(account), settle, margin, events)
    }
}
