//! Options: European, cash-settled, linear calls and puts on the mark
//! price of an underlying market (the index `U`), expiring or perpetual
//! (everlasting); their creation, margin model, exercise and funding.
//! Fills, liquidation and ADL are the perpetual ones (`perp`,
//! `liquidation`) with the option rules below.
//!
//! Units: premiums (option prices, marks) in the option's tick units;
//! `U`, the strike `K` and a settlement price in the underlying's tick
//! units, converted to the option's (which has at least as many decimals,
//! so exactly) before any arithmetic; money in settle minor units.
//!
//! Rules (documented choices):
//! - Premium is cash: a fill moves `price × size` from the buyer to the
//!   seller at once (through the position's cost basis, which a client's
//!   option position never keeps: after every trade its `cost` is 0 and
//!   the premium has been paid or received), plus each side's fee to
//!   `Fees`, capped at `fee_cap_rate × premium` (rounded down) when the
//!   market has a cap (Deribit: 12.5%). A side that cannot pay its premium
//!   and fee from its balance is refused (`PnlFundsShort`), so a long needs
//!   no margin beyond the premium.
//! - Equity counts every option position at `size × mark` (all of it is
//!   unrealized PnL: the cost is 0). The insurance fund's inventory is
//!   kept perp-style (cost marked to the mark, its balance is its equity).
//! - Standard margin (Deribit's, linear): a long needs none; a short of
//!   size q needs, per unit, with OTM = max(K − U, 0) for a call and
//!   max(U − K, 0) for a put,
//!   IM = max(a·U − OTM, b·U) + mark and MM = c·U + mark;
//!   for a put the risk part (`max(a·U − OTM, b·U)`, `c·U`) is capped at
//!   K, what a short put can lose at most. IM = q × ... rounded up to a
//!   settle minor unit; MM exact (for the liquidation formula) and rounded
//!   up. A, b, c are per-market: 0 < c ≤ b ≤ a < 1 (Deribit 0.15, 0.10,
//!   0.075). The liquidation fee is on the premium value `|size| × mark`.
//!   Liquidation prices are not computed for options.
//! - Exercise (`ExerciseOption`, expiring options only, once, at or after
//!   the expiry, at one stated settlement price S of the underlying): the
//!   intrinsic value I = max(S − K, 0) (call) or max(K − S, 0) (put)
//!   becomes the close price and the market settles as a dated future
//!   does (see `expiry`): a short that cannot pay `I × size` is
//!   liquidated (insurance fund, then ADL), then every position closes at
//!   I (longs receive, shorts pay; out of the money nothing moves), a
//!   delivery fee of `delivery_fee_rate × I × |size|` (capped at the
//!   balance) goes to `Fees`, isolated margin is released.
//! - Perpetual options (`expiry_ms` 0) never expire; `ApplyOptionFunding`
//!   charges each holder `size × (mark − I(U)) × elapsed / period`
//!   (longs pay shorts when the time value is positive, shorts pay longs
//!   when negative) with the rounding of perp funding (debits away from
//!   zero, credits toward zero, residue to the fund, payers charged at
//!   most their available balance, the fund paying what they could not).

use rust_decimal::Decimal;

use crate::amount::{self, AmountError};
use crate::command::{
    ApplyOptionFunding, CreateMarket, CreateOption, Event, ExerciseOption, MarginBracket, Owner,
    SetOptionMark,
};
use crate::engine::{Ledger, reject};
use crate::events::Events;
use crate::journal::Journal;
use crate::market::{
    Instrument, InstrumentKind, Market, MarketIdx, OptionTerms, Position, PositionRisk, RATE_ONE,
    Traded, trade,
};
use crate::perp::rate_units;
use crate::reject::{Field, RejectDetail, Rejection, SHOWN_SYMBOL_CHARS, shown};
use crate::wide::{Round, mul_div, pow10};

fn overflow() -> Rejection {
    reject(RejectDetail::Overflow)
}

impl Market {
    /// A price in the underlying's tick units in this option's tick units.
    pub(crate) fn option_price(&self, terms: &OptionTerms, underlying_units: i128) -> Option<i128> {
        let shift = self.price_scale.checked_sub(terms.underlying_price_scale)?;
        underlying_units.checked_mul(pow10(shift)?)
    }

    /// The intrinsic value per unit at underlying price `u` (underlying
    /// tick units), in this option's tick units; `None` if not an option.
    pub(crate) fn intrinsic(&self, u: i128) -> Option<i128> {
        let terms = self.instrument.option?;
        let (u, k) = (
            self.option_price(&terms, u)?,
            self.option_price(&terms, terms.strike)?,
        );
        let value = if self.instrument.kind.is_call() {
            u.checked_sub(k)?
        } else {
            k.checked_sub(u)?
        };
        Some(value.max(0))
    }

    /// The risk numbers of an option `position` at option mark `mark` and
    /// underlying mark `u` (standard margin, see the module docs).
    pub(crate) fn option_risk(
        &self,
        position: Position,
        mark: i128,
        u: i128,
    ) -> Option<PositionRisk> {
        let terms = self.instrument.option?;
        let value = self.value(position.size, mark)?;
        let notional = value.checked_abs()?;
        let upnl = value.checked_sub(position.cost)?;
        let (mut initial_margin, mut maintenance_exact) = (0, 0);
        if position.size < 0 {
            let q = position.size.checked_neg()?;
            let (u, k) = (
                self.option_price(&terms, u)?,
                self.option_price(&terms, terms.strike)?,
            );
            let call = self.instrument.kind.is_call();
            let otm = if call { k - u } else { u - k }.max(0);
            let mut im_risk = u
                .checked_mul(terms.im_rate)?
                .checked_sub(otm.checked_mul(RATE_ONE)?)?
                .max(u.checked_mul(terms.im_floor_rate)?);
            let mut mm_risk = u.checked_mul(terms.mm_rate)?;
            if !call {
                let cap = k.checked_mul(RATE_ONE)?;
                im_risk = im_risk.min(cap);
                mm_risk = mm_risk.min(cap);
            }
            let premium = self.value(q, mark)?;
            initial_margin =
                mul_div(self.value(q, im_risk)?, 1, RATE_ONE, Round::Ceil)?.checked_add(premium)?;
            maintenance_exact = self
                .value(q, mm_risk)?
                .checked_add(premium.checked_mul(RATE_ONE)?)?;
        }
        Some(PositionRisk {
            value,
            notional,
            upnl,
            tier: 0,
            leverage: 1,
            initial_margin,
            maintenance_exact,
            maintenance: mul_div(maintenance_exact, 1, RATE_ONE, Round::Ceil)?,
        })
    }
}

impl Ledger {
    /// The risk numbers of `position` in market `m` at `price`: the
    /// perpetual model, or the option model at the underlying's mark
    /// (`None` without one, or on overflow).
    pub(crate) fn position_risk(
        &self,
        m: MarketIdx,
        position: Position,
        price: i128,
    ) -> Option<PositionRisk> {
        let market = &self.markets[m as usize];
        match market.instrument.option {
            None => market.risk(position, price),
            Some(terms) => {
                let u = self.markets[terms.underlying as usize].mark_price()?;
                market.option_risk(position, price, u)
            }
        }
    }

    /// `market::trade` for `holder`'s `position` in `m`: for a client's
    /// option position the cost basis is paid in cash at once (the
    /// premium): realized −= cost after, cost after = 0. `None` on overflow.
    pub(crate) fn holder_trade(
        &self,
        m: MarketIdx,
        holder: Owner,
        position: Position,
        delta: i128,
        value: i128,
    ) -> Option<Traded> {
        let mut traded = trade(position, delta, value)?;
        if self.is_option(m) && matches!(holder, Owner::Account(_)) {
            traded.realized = traded.realized.checked_sub(traded.after.cost)?;
            traded.after.cost = 0;
        }
        Some(traded)
    }

    /// True if `m` is an option market.
    pub(crate) fn is_option(&self, m: MarketIdx) -> bool {
        self.markets[m as usize].instrument.option.is_some()
    }

    /// `NoUnderlyingMark` if `m` is an option whose underlying has no mark
    /// price yet.
    pub(crate) fn check_underlying_mark(&self, m: MarketIdx) -> Result<(), Rejection> {
        let market = &self.markets[m as usize];
        let Some(terms) = market.instrument.option else {
            return Ok(());
        };
        let underlying = &self.markets[terms.underlying as usize];
        if underlying.mark_price().is_none() {
            return Err(reject(RejectDetail::NoUnderlyingMark {
                market: market.symbol.clone(),
                underlying: underlying.symbol.clone(),
            }));
        }
        Ok(())
    }

    /// A fill fee capped at the option market's fee cap of `premium`
    /// (rounded down); unchanged for other markets or without a cap.
    pub(crate) fn capped_fee(&self, m: MarketIdx, fee: i128, premium: i128) -> Option<i128> {
        let Some(terms) = self.markets[m as usize].instrument.option else {
            return Some(fee);
        };
        if terms.fee_cap_rate == 0 {
            return Some(fee);
        }
        let cap = mul_div(
            premium.checked_abs()?,
            terms.fee_cap_rate,
            RATE_ONE,
            Round::Down,
        )?;
        Some(fee.min(cap))
    }

    pub(crate) fn create_option(
        &mut self,
        c: &CreateOption,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let Some(&u) = self.market_index.get(c.underlying.as_str()) else {
            return Err(reject(RejectDetail::UnknownUnderlying {
                underlying: shown(&c.underlying, SHOWN_SYMBOL_CHARS),
            }));
        };
        let underlying = &self.markets[u as usize];
        if underlying.instrument.kind.is_option() || underlying.instrument.is_inverse() {
            return Err(reject(RejectDetail::UnderlyingNotIndex {
                underlying: underlying.symbol.clone(),
                kind: underlying.kind_name().to_string(),
            }));
        }
        let spec = CreateMarket {
            market: c.market.clone(),
            base: underlying.base.clone(),
            settle_asset: self.symbol(underlying.settle).to_string(),
            tick_size: c.tick_size,
            step_size: c.step_size,
            max_leverage: 1,
            brackets: vec![MarginBracket {
                notional_floor: Decimal::ZERO,
                maintenance_margin_rate: c.mm_rate,
                max_leverage: 1,
            }],
            liquidation_fee_rate: c.liquidation_fee_rate,
            funding_interval_ms: c.funding_interval_ms,
        };
        let terms = self.option_terms(c, u)?;
        let kind = match (c.call, c.expiry_ms == 0) {
            (true, false) => InstrumentKind::Call,
            (false, false) => InstrumentKind::Put,
            (true, true) => InstrumentKind::PerpetualCall,
            (false, true) => InstrumentKind::PerpetualPut,
        };
        if c.expiry_ms == 0 && c.funding_period_ms == 0 {
            return Err(reject(RejectDetail::ZeroFundingPeriod));
        }
        let delivery_fee_rate = rate_units(c.delivery_fee_rate, Field::DeliveryFeeRate)?;
        if !(0..RATE_ONE).contains(&delivery_fee_rate) {
            return Err(reject(RejectDetail::DeliveryFeeRateOutOfRange {
                rate: c.delivery_fee_rate,
            }));
        }
        let instrument = Instrument {
            kind,
            expiry_ms: c.expiry_ms,
            delivery_fee_rate,
            option: Some(terms),
            inverse_contract_value: 0,
        };
        let market = self.new_market(&spec, instrument)?;
        if market.price_scale < terms.underlying_price_scale {
            let underlying = &self.markets[u as usize];
            return Err(reject(RejectDetail::OptionTickTooCoarse {
                tick_size: c.tick_size,
                underlying_tick: amount::to_decimal(underlying.tick, underlying.price_scale),
            }));
        }
        self.push_market(market, events)
    }

    /// The validated option terms of `c` on underlying market `u`: strike
    /// on the underlying's grid, margin rates in order, fee cap in [0, 1).
    fn option_terms(&self, c: &CreateOption, u: MarketIdx) -> Result<OptionTerms, Rejection> {
        let underlying = &self.markets[u as usize];
        let tick = amount::to_decimal(underlying.tick, underlying.price_scale);
        let off = || {
            reject(RejectDetail::StrikeOffGrid {
                strike: c.strike,
                grid: tick,
            })
        };
        let strike = match amount::to_units(c.strike, underlying.price_scale) {
            Ok(units) if units > 0 && units % underlying.tick == 0 => units,
            Ok(_) | Err(AmountError::TooPrecise) => return Err(off()),
            Err(AmountError::TooLarge) => {
                return Err(reject(RejectDetail::ValueTooLarge {
                    field: Field::Strike,
                    value: c.strike,
                }));
            }
        };
        let im_rate = rate_units(c.im_rate, Field::OptionMarginRate)?;
        let im_floor_rate = rate_units(c.im_floor_rate, Field::OptionMarginRate)?;
        let mm_rate = rate_units(c.mm_rate, Field::OptionMarginRate)?;
        if !(0 < mm_rate
            && mm_rate <= im_floor_rate
            && im_floor_rate <= im_rate
            && im_rate < RATE_ONE)
        {
            return Err(reject(RejectDetail::OptionMarginRatesOutOfOrder {
                im_rate: c.im_rate,
                im_floor_rate: c.im_floor_rate,
                mm_rate: c.mm_rate,
            }));
        }
        let fee_cap_rate = rate_units(c.fee_cap_rate, Field::FeeCapRate)?;
        if !(0..RATE_ONE).contains(&fee_cap_rate) {
            return Err(reject(RejectDetail::FeeCapRateOutOfRange {
                rate: c.fee_cap_rate,
            }));
        }
        Ok(OptionTerms {
            underlying: u,
            underlying_price_scale: underlying.price_scale,
            strike,
            im_rate,
            im_floor_rate,
            mm_rate,
            fee_cap_rate,
            funding_period_ms: c.funding_period_ms,
        })
    }

    pub(crate) fn exercise_option(
        &mut self,
        journal: &mut Journal,
        c: &ExerciseOption,
        now_ms: u64,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let m = self.market_idx(&c.market)?;
        let market = &self.markets[m as usize];
        let kind = market.instrument.kind;
        let (true, Some(terms)) = (kind.expires(), market.instrument.option) else {
            return Err(reject(RejectDetail::NotExpiringOption {
                market: market.symbol.clone(),
                kind: kind.as_str().to_string(),
            }));
        };
        self.check_settleable(m, now_ms)?;
        let settlement = self.settlement_units(c.price, terms.underlying_price_scale)?;
        let intrinsic = market.intrinsic(settlement).ok_or_else(overflow)?;
        self.settle_at(journal, m, intrinsic, settlement, now_ms, events)
    }

    pub(crate) fn apply_option_funding(
        &mut self,
        journal: &mut Journal,
        c: &ApplyOptionFunding,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let m = self.market_idx(&c.market)?;
        let market = &self.markets[m as usize];
        let kind = market.instrument.kind;
        let (true, Some(terms)) = (!kind.expires(), market.instrument.option) else {
            return Err(reject(RejectDetail::NotPerpetualOption {
                market: market.symbol.clone(),
                kind: kind.as_str().to_string(),
            }));
        };
        let funding_time_ms = c.funding_time_ms;
        let elapsed_ms = self.check_funding_time(m, funding_time_ms)?;
        let Some(mark) = market.mark_price() else {
            return Err(reject(RejectDetail::NoMarkPrice {
                market: c.market.clone(),
            }));
        };
        self.check_underlying_mark(m)?;
        let u = self.markets[terms.underlying as usize]
            .mark_price()
            .ok_or_else(overflow)?;
        let intrinsic = market.intrinsic(u).ok_or_else(overflow)?;
        let time_value = mark.checked_sub(intrinsic).ok_or_else(overflow)?;
        let period_ms = terms.funding_period_ms;
        let round =
            self.funding_round(m, time_value, i128::from(elapsed_ms), i128::from(period_ms))?;
        let residue = round.residue()?;
        self.state_mut(journal, m).last_funding_ms = Some(funding_time_ms);
        let underlying_scale = terms.underlying_price_scale;
        events.emit(|| Event::OptionFunding {
            market: c.market.clone(),
            funding_time_ms,
            mark_price: self.price_decimal(m, mark),
            underlying_price: amount::to_decimal_saturating(u, underlying_scale),
            time_value: self.price_decimal(m, time_value),
            elapsed_ms,
            period_ms,
            paid: self.money_decimal(m, round.paid),
            received: self.money_decimal(m, round.received),
            residue: self.money_decimal(m, residue),
            uncollected: self.money_decimal(m, round.uncollected),
        });
        self.pay_funding_round(journal, m, round, residue, events)
    }

    /// `SetOptionMark`: an option's mark with its delta (see the command).
    pub(crate) fn set_option_mark(
        &mut self,
        journal: &mut Journal,
        c: &SetOptionMark,
        now_ms: u64,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let m = self.market_idx(&c.market)?;
        let market = &self.markets[m as usize];
        if !market.instrument.kind.is_option() {
            return Err(reject(RejectDetail::NotOption {
                market: market.symbol.clone(),
                kind: market.kind_name().to_string(),
            }));
        }
        let call = market.instrument.kind.is_call();
        let delta = crate::perp::rate_units(c.delta, crate::reject::Field::Delta)?;
        let range = if call { 0..=RATE_ONE } else { -RATE_ONE..=0 };
        if !range.contains(&delta) {
            return Err(reject(RejectDetail::DeltaOutOfRange {
                market: market.symbol.clone(),
                delta: c.delta,
                range: if call { "[0, 1]" } else { "[-1, 0]" }.to_string(),
            }));
        }
        self.set_mark_price_with(journal, m, c.price, Some(delta), now_ms, events)
    }
}
