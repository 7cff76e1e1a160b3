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
//! - Settlement, in one transaction (options expire the same way, at
//!   their intrinsic value; see `options`):
//!   1. the price becomes the mark price (no maintenance pass: the risk of
//!      the contract ends here) and the insurance fund's inventory is
//!      marked to it;
//!   2. a holder whose balance cannot absorb its settlement loss is
//!      liquidated as a mark price liquidates: a cross account whose
//!      settle-asset `available` plus its settlement PnL is negative (a
//!      loser beyond its equity, or one whose other positions' profit kept
//!      its equity up) loses its whole cross group in the settle asset at
//!      bankruptcy prices, against the insurance fund and then ADL; an
//!      isolated position whose margin plus its PnL is negative closes at
//!      its bankruptcy value against the fund. So no client balance goes
//!      negative while it holds positions, and a deficit lands on the fund
//!      (or the ADL'd winners) exactly as in a liquidation;
//!   3. every remaining position (client accounts in id order, then the
//!      insurance fund's inventory) closes at the settlement price against
//!      the PnL pool: realized PnL = value at the price − cost; Σ realized
//!      equals the pool, which ends at 0, so settlement is zero-sum (an
//!      inverse market's values are rounded per position: the pool's
//!      remainder, under one minor unit per position, goes to the insurance
//!      fund);
//!   4. each client position pays a delivery fee of ceil(|size| × price ×
//!      rate) to `Fees`, at most what its balance (or isolated margin)
//!      holds after its PnL (the insurance fund's inventory pays none);
//!   5. an isolated position's margin left is released to the collateral
//!      wallet and the position is cross again.
//!
//! Bound: settlement closes each holder of the market once; step 2 scans
//! the holders once per liquidated holder (so O(holders × liquidated),
//! each liquidation as costly as one by a mark price); the number of
//! holders is bounded by the accounts, as for a funding round.

use rust_decimal::Decimal;

use crate::amount;
use crate::command::{
    AccountId, CreateDatedFuture, CreateInverseMarket, Event, Owner, PositionCause, SettleFuture,
};
use crate::engine::{Ledger, reject};
use crate::events::Events;
use crate::journal::Journal;
use crate::market::{Instrument, InstrumentKind, Mark, MarketIdx, RATE_ONE};
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
            option: None,
            inverse_contract_value: 0,
        };
        let market = self.new_market(&c.market, instrument)?;
        self.push_market(market, events)
    }

    /// An inverse perpetual or dated future (see `Command::CreateInverseMarket`).
    pub(crate) fn create_inverse_market(
        &mut self,
        c: &CreateInverseMarket,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let cv = c.contract_value;
        let whole = cv > Decimal::ZERO && cv.fract().is_zero();
        let Some(contract_value) = whole.then(|| i128::try_from(cv.trunc()).ok()).flatten() else {
            return Err(reject(RejectDetail::ContractValueNotWhole {
                contract_value: cv,
            }));
        };
        if !amount::in_range(contract_value) {
            return Err(reject(RejectDetail::ContractValueNotWhole {
                contract_value: cv,
            }));
        }
        let rate = c.delivery_fee_rate;
        let delivery_fee_rate = crate::perp::rate_units(rate, Field::DeliveryFeeRate)?;
        let dated = c.expiry_ms > 0;
        if !(0..RATE_ONE).contains(&delivery_fee_rate) || (!dated && delivery_fee_rate != 0) {
            return Err(reject(RejectDetail::DeliveryFeeRateOutOfRange { rate }));
        }
        let instrument = Instrument {
            kind: if dated {
                InstrumentKind::DatedFuture
            } else {
                InstrumentKind::Perpetual
            },
            expiry_ms: c.expiry_ms,
            delivery_fee_rate,
            option: None,
            inverse_contract_value: contract_value,
        };
        let market = self.new_market(&c.market, instrument)?;
        self.push_market(market, events)
    }

    /// `MarketSettled` if `m` is a settled dated future or option;
    /// `FillAfterExpiry` if it expires and the leader time of the command
    /// being applied is at or after its expiry.
    pub(crate) fn check_tradable(&self, m: MarketIdx) -> Result<(), Rejection> {
        let market = &self.markets[m as usize];
        if !market.instrument.kind.expires() {
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
                price: self.settlement_decimal(m, price),
            })),
            None => Ok(()),
        }
    }

    /// `NoFundingForDatedFuture` unless `m` is a perpetual (perpetual
    /// options have their own funding, `ApplyOptionFunding`).
    pub(crate) fn check_funded(&self, m: MarketIdx) -> Result<(), Rejection> {
        let market = &self.markets[m as usize];
        if !market.instrument.takes_funding() {
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
                kind: market.kind_name().to_string(),
            }));
        }
        self.check_settleable(m, now_ms)?;
        let price = self.settlement_units(c.price, market.price_scale)?;
        self.settle_at(journal, m, price, price, now_ms, events)
    }

    /// `FutureAlreadySettled` if `m` was settled, `SettlementBeforeExpiry`
    /// before its expiry.
    pub(crate) fn check_settleable(&self, m: MarketIdx, now_ms: u64) -> Result<(), Rejection> {
        let market = &self.markets[m as usize];
        if let Some(price) = market.state.settlement {
            return Err(reject(RejectDetail::FutureAlreadySettled {
                market: market.symbol.clone(),
                price: self.settlement_decimal(m, price),
            }));
        }
        if now_ms < market.instrument.expiry_ms {
            return Err(reject(RejectDetail::SettlementBeforeExpiry {
                market: market.symbol.clone(),
                expiry_ms: market.instrument.expiry_ms,
                now_ms,
            }));
        }
        Ok(())
    }

    /// A stated settlement price in units of `scale`: positive, at most
    /// `scale` decimals.
    pub(crate) fn settlement_units(&self, price: Decimal, scale: u32) -> Result<i128, Rejection> {
        if price <= Decimal::ZERO {
            return Err(reject(RejectDetail::NotPositive {
                field: Field::SettlementPrice,
                value: price,
            }));
        }
        amount::to_units(price, scale).map_err(|e| match e {
            amount::AmountError::TooPrecise => {
                reject(RejectDetail::MarkTooPrecise { price, scale })
            }
            amount::AmountError::TooLarge => reject(RejectDetail::ValueTooLarge {
                field: Field::SettlementPrice,
                value: price,
            }),
        })
    }

    /// Display decimal of `m`'s settlement price: tick units for a dated
    /// future, the underlying's tick units for an option.
    pub(crate) fn settlement_decimal(&self, m: MarketIdx, price: i128) -> Decimal {
        let market = &self.markets[m as usize];
        let scale = market.instrument.option.map_or(market.price_scale, |o| {
            self.markets[o.underlying as usize].price_scale
        });
        amount::to_decimal_saturating(price, scale)
    }

    /// Settles `m`: every position closes at `close_price` (tick units of
    /// `m`, zero for an option expiring out of the money), and
    /// `settlement` (the stated price) is recorded. Steps 1 to 5 of the
    /// module docs.
    pub(crate) fn settle_at(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        close_price: i128,
        settlement: i128,
        now_ms: u64,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        // 1. The close price becomes the mark (no maintenance pass: the
        //    risk ends here); the fund's inventory is marked to it.
        self.state_mut(journal, m).mark = Some(Mark {
            price: close_price,
            time_ms: now_ms,
        });
        let symbol = self.markets[m as usize].symbol.clone();
        self.state_mut(journal, m).mark_delta = None;
        events.emit(|| Event::MarkPrice {
            market: symbol.clone(),
            price: self.price_decimal(m, close_price),
            time_ms: now_ms,
            delta: None,
        });
        self.mark_insurance(journal, m, events)?;
        // 2. Holders who cannot pay their settlement loss.
        self.liquidate_unabsorbed(journal, m, close_price, events)?;
        // 3-5. Close everything at the price.
        let (positions, realized, fees) =
            self.close_at_settlement(journal, m, close_price, events)?;
        self.move_pool(journal, m, -realized, events)?;
        let pool = self.markets[m as usize].state.pool;
        let settle = self.markets[m as usize].settle;
        if self.markets[m as usize].instrument.is_inverse() {
            // Inverse values are rounded per position, so they need not
            // sum to zero: the pool's remainder (under one minor unit per
            // position, either sign) is the insurance fund's.
            self.move_pool(journal, m, -pool, events)?;
            self.post(journal, Owner::Insurance, settle, pool, events)?;
        } else {
            assert!(
                pool == 0,
                "invariant broken: pool {pool} after settling every position"
            );
        }
        self.post(journal, Owner::Fees, settle, fees, events)?;
        self.state_mut(journal, m).settlement = Some(settlement);
        events.emit(|| Event::Settlement {
            market: symbol,
            price: self.settlement_decimal(m, settlement),
            time_ms: now_ms,
            positions,
            realized: self.money_decimal(m, realized),
            delivery_fees: self.money_decimal(m, fees),
        });
        Ok(())
    }

    /// Step 2 of a settlement: liquidates every holder of `m` whose
    /// settlement PnL at `price` its balance cannot absorb: a cross account
    /// whose collateral `available` plus that PnL is negative (its whole
    /// cross group in the settle asset, as a mark price would: insurance
    /// fund, then ADL), an isolated position whose margin plus that PnL is
    /// negative (at its bankruptcy value against the fund).
    fn liquidate_unabsorbed(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        price: i128,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        // Each pass liquidates one holder, which then holds no position
        // here: at most one pass per holder (each a scan of the holders),
        // plus the last.
        let holders = self.markets[m as usize].positions.len();
        for _ in 0..=holders {
            let Some((account, isolated)) = self.first_unabsorbed(m, price)? else {
                return Ok(());
            };
            let settle = self.markets[m as usize].settle;
            if isolated {
                let risk = self.isolated_risk(m, account).ok_or_else(overflow)?;
                self.liquidate_isolated_position(journal, m, account, &risk, events)?;
            } else {
                self.liquidate_account(journal, account, settle, events)?;
            }
            assert!(
                !self.markets[m as usize].positions.contains_key(&account),
                "invariant broken: account {account} still holds a position after its liquidation"
            );
        }
        panic!("invariant broken: settlement liquidated more holders than the market had")
    }

    /// The first holder of `m` (account order) whose balance (collateral
    /// `available`, or isolated margin) plus its settlement PnL at `price`
    /// is negative, and whether its position is isolated.
    fn first_unabsorbed(
        &self,
        m: MarketIdx,
        price: i128,
    ) -> Result<Option<(AccountId, bool)>, Rejection> {
        let market = &self.markets[m as usize];
        for (&account, position) in &market.positions {
            let value = market.value(position.size, price).ok_or_else(overflow)?;
            let realized = value.checked_sub(position.cost).ok_or_else(overflow)?;
            let (wallet, isolated) = match market.isolated.get(&account) {
                Some(&margin) => (margin, true),
                None => {
                    let owner = self.collateral(Owner::Account(account));
                    (self.balance_units(owner, market.settle).available, false)
                }
            };
            if wallet.checked_add(realized).ok_or_else(overflow)? < 0 {
                return Ok(Some((account, isolated)));
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
