//! Perpetual-futures commands: market creation and pause, perpetual fills,
//! mark prices (which trigger liquidations, see `liquidation`) and funding.
//!
//! Perp commands may touch many balances and positions (a mark price can
//! liquidate a cascade of accounts), so they write as they go, through the
//! engine's journal (see the `journal` module) like every command: a
//! command that fails half-way (only an arithmetic overflow can, after
//! validation) is rolled back completely, so a rejected command still
//! changes nothing.
//!
//! Documented choices:
//! - Fees of a perp fill are amounts of the settle asset chosen by the caller
//!   (the matching engine knows maker and taker), at most the asset's scale,
//!   zero or more; both go to `Fees`.
//! - A fill needs a mark price on its market (initial margin is measured at
//!   the mark) and distinct buyer and seller.
//! - Realized PnL is paid from / into the market's PnL pool, the
//!   counter-entry of all unrealized PnL (see `MarketState::pool`): when both
//!   sides of a fill close against each other their realized PnLs are exact
//!   opposites; when one side opens, the closing side's PnL comes out of the
//!   pool, which the still-open positions will pay back when they close.
//! - Initial margin is checked only for a side whose position opens, grows
//!   or flips, as its cost to open (`Ledger::cost_to_open`): its equity
//!   (collateral balance + unrealized PnL at the marks) without the opened
//!   size's profit against the mark must stay at or above Σ ceil(notional /
//!   leverage) over its positions in that settle asset, the traded one at
//!   the higher of the fill price and the mark. Example (20x, mark 30,000):
//!   buying 1 at 30,300 costs IM 30,300 / 20 = 1,515 plus the open loss
//!   300 = 1,815 of equity before the fill; buying 1 at 29,700 costs IM at
//!   the mark, 1,500, and its 300 of open profit does not count. A side that only reduces is never refused for margin
//!   (only for a balance that its loss and fee would make negative).
//! - Funding: debits are rounded away from zero and credits toward zero at
//!   the settle scale; the residue (Σ debits - Σ credits ≥ 0) goes to the
//!   insurance fund. A payer is charged at most its available balance; the
//!   insurance fund pays what it could not (`uncollected`). The insurance
//!   fund's own inventory pays and receives funding like any position.

use rust_decimal::Decimal;

use crate::amount::{self, AmountError};
use crate::command::{
    AccountId, ApplyFunding, CreateMarket, Event, MAX_LEVERAGE, MAX_MARGIN_BRACKETS, MAX_MARKETS,
    Owner, PerpFill, PositionCause, RATE_SCALE, is_valid_asset_symbol, is_valid_market_symbol,
};
use crate::engine::{Ledger, reject};
use crate::events::Events;
use crate::journal::{Journal, Posting};
use crate::market::{
    Instrument, Mark, Market, MarketIdx, MarketState, Position, RATE_ONE, Traded, with_cum,
};
use crate::reject::{Field, RejectDetail, Rejection, SHOWN_SYMBOL_CHARS, shown};
use crate::state::{AssetIdx, Balance, DirtyKey};
use crate::wide::{Round, mul_div, pow10};

/// Extra decimal places, beyond the tick's, of prices the engine derives by
/// division (entry, bankruptcy and liquidation prices), rounded half to even.
pub(crate) const DERIVED_PRICE_EXTRA_DECIMALS: u32 = 4;

/// Decimal places of a displayed margin ratio (rounded up).
pub(crate) const RATIO_SCALE: u32 = 8;

// Derived prices (at most the settle scale plus the extra decimals) and
// ratios are `Decimal`s.
const _: () =
    assert!(crate::command::MAX_ASSET_SCALE + DERIVED_PRICE_EXTRA_DECIMALS <= Decimal::MAX_SCALE);
const _: () = assert!(RATIO_SCALE <= Decimal::MAX_SCALE);

fn overflow() -> Rejection {
    reject(RejectDetail::Overflow)
}

/// Rate in `RATE_SCALE` units, or `BadPrecision` / `InvalidRate`.
pub(crate) fn rate_units(rate: Decimal, field: Field) -> Result<i128, Rejection> {
    amount::to_units(rate, RATE_SCALE).map_err(|e| match e {
        AmountError::TooPrecise => reject(RejectDetail::RateTooPrecise { field, rate }),
        AmountError::TooLarge => reject(RejectDetail::RateTooLarge { field, rate }),
    })
}

/// A decimal step/tick as (units, scale) with the scale as small as possible.
pub(crate) fn grid(value: Decimal) -> (i128, u32) {
    let n = value.normalize();
    (n.mantissa(), n.scale())
}

/// `value * 10^k / den` rounded half to even, with `k` possibly negative.
/// For display values only (the fallback rounds twice at absurd magnitudes).
pub(crate) fn scaled_ratio(value: i128, den: i128, k: i64) -> Option<i128> {
    if k >= 0 {
        return mul_div(value, pow10(u32::try_from(k).ok()?)?, den, Round::HalfEven);
    }
    let down = pow10(u32::try_from(-k).ok()?)?;
    match den.checked_mul(down) {
        Some(d) => mul_div(value, 1, d, Round::HalfEven),
        None => mul_div(
            mul_div(value, 1, den, Round::HalfEven)?,
            1,
            down,
            Round::HalfEven,
        ),
    }
}

impl Ledger {
    // ----- lookups ----------------------------------------------------------

    pub(crate) fn market_idx(&self, symbol: &str) -> Result<MarketIdx, Rejection> {
        self.market_index.get(symbol).copied().ok_or_else(|| {
            reject(RejectDetail::UnknownMarket {
                market: shown(symbol, SHOWN_SYMBOL_CHARS),
            })
        })
    }

    /// Markets settled in `asset`, in symbol order.
    pub(crate) fn settle_markets(&self, asset: AssetIdx) -> impl Iterator<Item = MarketIdx> + '_ {
        self.market_order
            .iter()
            .copied()
            .filter(move |&m| self.markets[m as usize].settle == asset)
    }

    /// Display decimal of a size in market `m`.
    pub(crate) fn size_decimal(&self, m: MarketIdx, size: i128) -> Decimal {
        amount::to_decimal_saturating(size, self.markets[m as usize].size_scale)
    }

    /// Display decimal of a price in tick units of market `m`.
    pub(crate) fn price_decimal(&self, m: MarketIdx, price: i128) -> Decimal {
        amount::to_decimal_saturating(price, self.markets[m as usize].price_scale)
    }

    /// Display decimal of settle minor units of market `m`.
    pub(crate) fn money_decimal(&self, m: MarketIdx, units: i128) -> Decimal {
        amount::to_decimal_saturating(units, self.markets[m as usize].settle_scale)
    }

    /// `value / size` as a price (value in settle units, size in size units),
    /// at tick scale + `DERIVED_PRICE_EXTRA_DECIMALS`, half to even; 0 when
    /// flat or not representable.
    pub(crate) fn derived_price(&self, m: MarketIdx, value: i128, size: i128) -> Decimal {
        let market = &self.markets[m as usize];
        if size == 0 {
            return Decimal::ZERO;
        }
        let out_scale = market.price_scale + DERIVED_PRICE_EXTRA_DECIMALS;
        if market.instrument.is_inverse() {
            // value = −size × N / price (N = `inverse_numerator`, at the
            // tick's scale): price = −size × N / value, shown at out_scale.
            if value == 0 {
                return Decimal::ZERO;
            }
            return market
                .inverse_numerator()
                .and_then(|n| size.checked_neg()?.checked_mul(n))
                .and_then(|num| scaled_ratio(num, value, i64::from(DERIVED_PRICE_EXTRA_DECIMALS)))
                .and_then(|units| Decimal::try_from_i128_with_scale(units, out_scale).ok())
                .unwrap_or(Decimal::ZERO);
        }
        // price = value / 10^s / (size / 10^ss) = value * 10^(ss - s) / size.
        let k =
            i64::from(market.size_scale) - i64::from(market.settle_scale) + i64::from(out_scale);
        scaled_ratio(value, size, k)
            .and_then(|units| Decimal::try_from_i128_with_scale(units, out_scale).ok())
            .unwrap_or(Decimal::ZERO)
    }

    // ----- journaled mutation -----------------------------------------------

    /// Adds `delta` to the available balance of `owner` in `asset` and emits
    /// a `Balance` event. Only the ±`MAX_UNITS` range is checked here; the
    /// callers enforce the sign rules.
    pub(crate) fn post(
        &mut self,
        journal: &mut Journal,
        owner: Owner,
        asset: AssetIdx,
        delta: i128,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        if delta == 0 {
            return Ok(());
        }
        // A client's perps money lives in its collateral wallet.
        let owner = self.collateral(owner);
        let current = self.balance_units(owner, asset);
        let available = current
            .available
            .checked_add(delta)
            .filter(|v| amount::in_range(*v))
            .ok_or_else(|| self.too_large(owner, asset))?;
        let posting = Posting {
            owner,
            asset,
            available_delta: delta,
            locked_delta: 0,
            after: Balance {
                available,
                locked: current.locked,
            },
        };
        self.write_balance(journal, &posting, events);
        Ok(())
    }

    /// Moves the PnL pool by `delta` and emits a `Pool` event.
    pub(crate) fn move_pool(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        delta: i128,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        if delta == 0 {
            return Ok(());
        }
        let pool = self.markets[m as usize]
            .state
            .pool
            .checked_add(delta)
            .filter(|v| amount::in_range(*v))
            .ok_or_else(overflow)?;
        self.state_mut(journal, m).pool = pool;
        let market = &self.markets[m as usize];
        events.emit(|| Event::Pool {
            market: market.symbol.clone(),
            asset: self.symbol(market.settle).to_string(),
            delta: self.money_decimal(m, delta),
            balance: self.money_decimal(m, pool),
        });
        Ok(())
    }

    /// Sets a client position (removing it when flat).
    pub(crate) fn set_position(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        account: AccountId,
        position: Position,
    ) -> Result<(), Rejection> {
        if !amount::in_range(position.size) || !amount::in_range(position.cost) {
            return Err(overflow());
        }
        self.write_position(journal, m, account, position);
        Ok(())
    }

    /// The position of `holder` (a client account or the insurance fund).
    pub(crate) fn position_of(&self, m: MarketIdx, holder: Owner) -> Position {
        let market = &self.markets[m as usize];
        match holder {
            Owner::Account(id) => market.positions.get(&id).copied().unwrap_or_default(),
            Owner::Insurance => market.state.insurance,
            _ => Position::default(),
        }
    }

    /// Sets the position of `holder` (a client account or the insurance fund).
    pub(crate) fn set_holder_position(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        holder: Owner,
        position: Position,
    ) -> Result<(), Rejection> {
        match holder {
            Owner::Account(id) => self.set_position(journal, m, id, position),
            Owner::Insurance => {
                if !amount::in_range(position.size) || !amount::in_range(position.cost) {
                    return Err(overflow());
                }
                self.state_mut(journal, m).insurance = position;
                Ok(())
            }
            _ => panic!("invariant broken: {holder:?} cannot hold a position"),
        }
    }

    /// Applies a trade of `delta` for `value` to `holder`'s position, settles
    /// its realized PnL less `fee` into its balance (one `Balance` event)
    /// and emits a `Position` event.
    /// Returns the realized PnL; the caller moves the pool by minus the net
    /// realized PnL of the trade's two sides (zero when both close).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn trade_holder(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        holder: Owner,
        counterparty: Owner,
        cause: PositionCause,
        delta: i128,
        value: i128,
        shown_price: Decimal,
        fee: i128,
        events: &mut Events,
    ) -> Result<i128, Rejection> {
        let before = self.position_of(m, holder);
        let traded = self
            .holder_trade(m, holder, before, delta, value)
            .ok_or_else(overflow)?;
        self.set_holder_position(journal, m, holder, traded.after)?;
        events.emit(|| Event::Position {
            market: self.markets[m as usize].symbol.clone(),
            holder,
            counterparty,
            cause,
            size_delta: self.size_decimal(m, delta),
            price: shown_price,
            size: self.size_decimal(m, traded.after.size),
            entry_price: self.derived_price(m, traded.after.cost, traded.after.size),
            realized_pnl: self.money_decimal(m, traded.realized),
        });
        let change = traded.realized.checked_sub(fee).ok_or_else(overflow)?;
        self.post_position_money(journal, m, holder, change, events)?;
        Ok(traded.realized)
    }

    /// Marks the insurance fund's inventory in `m` to the mark price: its
    /// unrealized PnL is realized into the insurance balance (through the
    /// pool), so the insurance balance is always the fund's equity.
    pub(crate) fn mark_insurance(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let market = &self.markets[m as usize];
        let (inventory, Some(mark)) = (market.state.insurance, market.mark_price()) else {
            return Ok(());
        };
        if inventory.size == 0 {
            return Ok(());
        }
        let value = market.value(inventory.size, mark).ok_or_else(overflow)?;
        let realized = value.checked_sub(inventory.cost).ok_or_else(overflow)?;
        if realized == 0 {
            return Ok(());
        }
        let settle = market.settle;
        self.set_holder_position(
            journal,
            m,
            Owner::Insurance,
            Position {
                size: inventory.size,
                cost: value,
            },
        )?;
        events.emit(|| Event::Position {
            market: self.markets[m as usize].symbol.clone(),
            holder: Owner::Insurance,
            counterparty: Owner::Insurance,
            cause: PositionCause::Mark,
            size_delta: self.size_decimal(m, 0),
            price: self.price_decimal(m, mark),
            size: self.size_decimal(m, inventory.size),
            entry_price: self.derived_price(m, value, inventory.size),
            realized_pnl: self.money_decimal(m, realized),
        });
        self.post(journal, Owner::Insurance, settle, realized, events)?;
        self.move_pool(journal, m, -realized, events)
    }

    // ----- commands ---------------------------------------------------------

    pub(crate) fn create_market(
        &mut self,
        spec: &CreateMarket,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let market = self.new_market(spec, Instrument::default())?;
        self.push_market(market, events)
    }

    /// A validated new market of `spec` with the contract terms
    /// `instrument` (checked by the caller), not yet registered.
    pub(crate) fn new_market(
        &self,
        spec: &CreateMarket,
        instrument: Instrument,
    ) -> Result<Market, Rejection> {
        let symbol = spec.market.as_str();
        if !is_valid_market_symbol(symbol) {
            return Err(reject(RejectDetail::MalformedMarketSymbol {
                market: shown(symbol, SHOWN_SYMBOL_CHARS),
            }));
        }
        if !is_valid_asset_symbol(&spec.base) {
            return Err(reject(RejectDetail::MalformedBaseSymbol {
                base: shown(&spec.base, SHOWN_SYMBOL_CHARS),
            }));
        }
        if self.market_index.contains_key(symbol) {
            return Err(reject(RejectDetail::MarketExists {
                market: symbol.to_string(),
            }));
        }
        if self.markets.len() >= MAX_MARKETS {
            return Err(reject(RejectDetail::MarketLimit));
        }
        let settle = self.asset_idx(&spec.settle_asset)?;
        let settle_scale = self.scale(settle);
        if spec.tick_size <= Decimal::ZERO || spec.step_size <= Decimal::ZERO {
            return Err(reject(RejectDetail::GridNotPositive {
                tick_size: spec.tick_size,
                step_size: spec.step_size,
            }));
        }
        let ((tick, price_scale), (step, size_scale)) =
            (grid(spec.tick_size), grid(spec.step_size));
        if price_scale + size_scale > settle_scale {
            return Err(reject(RejectDetail::GridTooFine {
                tick_size: spec.tick_size,
                price_scale,
                step_size: spec.step_size,
                size_scale,
                settle: self.symbol(settle).to_string(),
                settle_scale,
            }));
        }
        if !(1..=MAX_LEVERAGE).contains(&spec.max_leverage) {
            return Err(reject(RejectDetail::MaxLeverageOutOfRange {
                leverage: spec.max_leverage,
            }));
        }
        if spec.brackets.is_empty() || spec.brackets.len() > MAX_MARGIN_BRACKETS {
            return Err(reject(RejectDetail::BracketCount {
                count: spec.brackets.len() as u64,
            }));
        }
        let brackets = self.margin_brackets(spec, settle)?;
        let liquidation_fee_rate =
            rate_units(spec.liquidation_fee_rate, Field::LiquidationFeeRate)?;
        if !(0..RATE_ONE).contains(&liquidation_fee_rate) {
            return Err(reject(RejectDetail::LiquidationFeeRateOutOfRange {
                rate: spec.liquidation_fee_rate,
            }));
        }
        if spec.funding_interval_ms == 0 {
            return Err(reject(RejectDetail::ZeroFundingInterval));
        }
        Ok(Market {
            isolated: std::collections::BTreeMap::new(),
            symbol: symbol.to_string(),
            base: spec.base.to_string(),
            settle,
            settle_scale,
            tick,
            price_scale,
            step,
            size_scale,
            max_leverage: spec.max_leverage,
            brackets,
            liquidation_fee_rate,
            funding_interval_ms: spec.funding_interval_ms,
            instrument,
            state: MarketState::default(),
            positions: Default::default(),
        })
    }

    /// Registers a market built by `new_market` (its last step: nothing
    /// after it can fail) and emits `MarketCreated`.
    pub(crate) fn push_market(
        &mut self,
        market: Market,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let Ok(idx) = MarketIdx::try_from(self.markets.len()) else {
            return Err(reject(RejectDetail::TooManyMarkets));
        };
        let (symbol, base, settle) = (market.symbol.clone(), market.base.clone(), market.settle);
        self.markets.push(market);
        self.index_market(idx);
        events.emit(|| Event::MarketCreated {
            market: symbol,
            base,
            settle_asset: self.symbol(settle).to_string(),
        });
        Ok(())
    }

    /// Indexes the market just pushed at `idx`: by symbol, in symbol order,
    /// and as a dirty record.
    fn index_market(&mut self, idx: MarketIdx) {
        let symbol = self.markets[idx as usize].symbol.clone();
        let at = self
            .market_order
            .partition_point(|&m| self.markets[m as usize].symbol < symbol);
        self.market_order.insert(at, idx);
        self.market_index.insert(symbol, idx);
        self.liq.add_settle_asset(self.markets[idx as usize].settle);
        self.dirty.push(DirtyKey::Market(idx));
        if !self.markets[idx as usize].instrument.is_perpetual() {
            self.dirty.push(DirtyKey::Instrument(idx));
        }
    }

    /// The validated maintenance-margin brackets of a new market, with
    /// their cumulative amounts.
    fn margin_brackets(
        &self,
        spec: &CreateMarket,
        settle: AssetIdx,
    ) -> Result<Vec<crate::market::Bracket>, Rejection> {
        let mut tiers = Vec::with_capacity(spec.brackets.len());
        for (i, b) in spec.brackets.iter().enumerate() {
            // At most MAX_MARGIN_BRACKETS (16) brackets.
            let bracket = i as u32;
            let floor = self.units(b.notional_floor, settle, Field::BracketNotionalFloor)?;
            let rate = b.maintenance_margin_rate;
            let mmr = rate_units(rate, Field::MaintenanceMarginRate)?;
            if !(0 < mmr && mmr < RATE_ONE) {
                return Err(reject(RejectDetail::MarginRateOutOfRange { bracket, rate }));
            }
            if !(1..=MAX_LEVERAGE).contains(&b.max_leverage) {
                return Err(reject(RejectDetail::BracketLeverageOutOfRange {
                    bracket,
                    leverage: b.max_leverage,
                }));
            }
            let leverage = spec.max_leverage.min(b.max_leverage);
            if mmr.saturating_mul(i128::from(leverage)) >= RATE_ONE {
                return Err(reject(RejectDetail::MarginRateNotBelowInitial {
                    bracket,
                    rate,
                    leverage,
                }));
            }
            match tiers.last() {
                None if floor != 0 => {
                    return Err(reject(RejectDetail::FirstFloorNotZero {
                        floor: b.notional_floor,
                    }));
                }
                Some(&(prev_floor, prev_mmr, prev_leverage))
                    if floor <= prev_floor || mmr < prev_mmr || b.max_leverage > prev_leverage =>
                {
                    return Err(reject(RejectDetail::BracketsOutOfOrder { bracket }));
                }
                _ => {}
            }
            tiers.push((floor, mmr, b.max_leverage));
        }
        with_cum(&tiers).ok_or_else(overflow)
    }

    pub(crate) fn set_market_paused(
        &mut self,
        journal: &mut Journal,
        market: &str,
        paused: bool,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let m = self.market_idx(market)?;
        self.state_mut(journal, m).paused = paused;
        events.emit(|| Event::MarketPaused {
            market: market.to_string(),
            paused,
        });
        Ok(())
    }

    /// A fill price or size in grid units: positive, on the grid (off it:
    /// `PriceOffTick` for a price, `SizeOffStep` for a size).
    fn on_grid(
        &self,
        value: Decimal,
        scale: u32,
        grid: i128,
        field: Field,
        grid_value: Decimal,
    ) -> Result<i128, Rejection> {
        let off = || {
            reject(RejectDetail::OffGrid {
                field,
                value,
                grid: grid_value,
            })
        };
        let units = amount::to_units(value, scale).map_err(|e| match e {
            AmountError::TooPrecise => off(),
            AmountError::TooLarge => reject(RejectDetail::ValueTooLarge { field, value }),
        })?;
        if grid <= 0 || units % grid != 0 {
            return Err(off());
        }
        Ok(units)
    }

    pub(crate) fn set_mark_price(
        &mut self,
        journal: &mut Journal,
        market: &str,
        price: Decimal,
        now_ms: u64,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let m = self.market_idx(market)?;
        self.set_mark_price_with(journal, m, price, None, now_ms, events)
    }

    /// `SetMarkPrice` (`delta` `None`) and `SetOptionMark` (`delta`: the
    /// option's, in `RATE_SCALE` units, checked by the caller) of market
    /// `m`: a mark without a delta clears a stated one.
    pub(crate) fn set_mark_price_with(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        price: Decimal,
        delta: Option<i128>,
        now_ms: u64,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        self.check_not_settled(m)?;
        if price <= Decimal::ZERO {
            return Err(reject(RejectDetail::NotPositive {
                field: Field::MarkPrice,
                value: price,
            }));
        }
        let mk = &self.markets[m as usize];
        let price_units = amount::to_units(price, mk.price_scale).map_err(|e| match e {
            AmountError::TooPrecise => reject(RejectDetail::MarkTooPrecise {
                price,
                scale: mk.price_scale,
            }),
            AmountError::TooLarge => reject(RejectDetail::ValueTooLarge {
                field: Field::MarkPrice,
                value: price,
            }),
        })?;
        // Every position must stay valuable at the new price.
        let sizes = mk
            .positions
            .values()
            .map(|p| p.size)
            .chain([mk.state.insurance.size]);
        for size in sizes {
            let value = mk.value(size, price_units);
            if !value.is_some_and(amount::in_range) {
                return Err(reject(RejectDetail::MarkNotionalTooLarge { price }));
            }
        }
        let settle = mk.settle;
        let state = self.state_mut(journal, m);
        state.mark = Some(Mark {
            price: price_units,
            time_ms: now_ms,
        });
        state.mark_delta = delta;
        events.emit(|| Event::MarkPrice {
            market: self.markets[m as usize].symbol.clone(),
            price: self.price_decimal(m, price_units),
            time_ms: now_ms,
            delta: delta.map(|d| crate::amount::to_decimal_saturating(d, RATE_SCALE)),
        });
        self.mark_insurance(journal, m, events)?;
        self.liquidate_below_maintenance(journal, settle, events)
    }

    pub(crate) fn apply_funding(
        &mut self,
        journal: &mut Journal,
        c: &ApplyFunding,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let (market, rate, funding_time_ms) = (c.market.as_str(), c.rate, c.funding_time_ms);
        let m = self.market_idx(market)?;
        self.check_funded(m)?;
        let rate_u = rate_units(rate, Field::FundingRate)?;
        if rate_u <= -RATE_ONE || rate_u >= RATE_ONE {
            return Err(reject(RejectDetail::FundingRateOutOfRange { rate }));
        }
        self.check_funding_time(m, funding_time_ms)?;
        let Some(mark) = self.markets[m as usize].mark_price() else {
            return Err(reject(RejectDetail::NoMarkPrice {
                market: market.to_string(),
            }));
        };
        let round = self.funding_round(m, mark, rate_u, RATE_ONE)?;
        let residue = round.residue()?;
        self.state_mut(journal, m).last_funding_ms = Some(funding_time_ms);
        events.emit(|| Event::Funding {
            market: market.to_string(),
            rate,
            funding_time_ms,
            mark_price: self.price_decimal(m, mark),
            paid: self.money_decimal(m, round.paid),
            received: self.money_decimal(m, round.received),
            residue: self.money_decimal(m, residue),
            uncollected: self.money_decimal(m, round.uncollected),
        });
        self.pay_funding_round(journal, m, round, residue, events)
    }

    /// `FundingTimeOffInterval` unless `funding_time_ms` is a multiple of
    /// `m`'s funding interval, `AlreadyFunded` unless it is later than the
    /// last round. Returns the time since the last round (one interval for
    /// the first).
    pub(crate) fn check_funding_time(
        &self,
        m: MarketIdx,
        funding_time_ms: u64,
    ) -> Result<u64, Rejection> {
        let mk = &self.markets[m as usize];
        if !funding_time_ms.is_multiple_of(mk.funding_interval_ms) {
            return Err(reject(RejectDetail::FundingTimeOffInterval {
                funding_time_ms,
                interval_ms: mk.funding_interval_ms,
            }));
        }
        match mk.state.last_funding_ms {
            Some(last) if funding_time_ms <= last => Err(reject(RejectDetail::AlreadyFunded {
                market: mk.symbol.clone(),
                last_ms: last,
                funding_time_ms,
            })),
            Some(last) => Ok(funding_time_ms - last),
            None => Ok(mk.funding_interval_ms),
        }
    }

    /// Posts a funding round's payments (`FundingPayment` events) and its
    /// residue less what the payers could not pay to the insurance fund.
    pub(crate) fn pay_funding_round(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        round: FundingRound,
        residue: i128,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let market = self.markets[m as usize].symbol.clone();
        let settle = self.markets[m as usize].settle;
        for (holder, amount) in round.payments {
            if amount == 0 {
                continue;
            }
            events.emit(|| Event::FundingPayment {
                market: market.clone(),
                holder,
                amount: self.money_decimal(m, amount),
            });
            self.post_position_money(journal, m, holder, amount, events)?;
        }
        let to_fund = residue
            .checked_sub(round.uncollected)
            .ok_or_else(overflow)?;
        self.post(journal, Owner::Insurance, settle, to_fund, events)
    }

    /// What one funding round charges every holder of market `m`: holder
    /// with size `s` owes `value(s, price) × num / den` (settle minor
    /// units; a perp: price = mark, num / den = the rate; a perpetual
    /// option: price = time value, num / den = elapsed / period), debits
    /// rounded away from zero and credits toward zero. Holders in a fixed
    /// order (client accounts by id, then the insurance fund), each payer
    /// at most its available balance (or isolated margin). `den > 0`.
    pub(crate) fn funding_round(
        &self,
        m: MarketIdx,
        price: i128,
        num: i128,
        den: i128,
    ) -> Result<FundingRound, Rejection> {
        let mk = &self.markets[m as usize];
        let holders: Vec<(Owner, Position)> = mk
            .positions
            .iter()
            .map(|(id, p)| (Owner::Account(*id), *p))
            .chain((mk.state.insurance.size != 0).then_some((Owner::Insurance, mk.state.insurance)))
            .collect();
        let mut round = FundingRound {
            payments: Vec::with_capacity(holders.len()),
            paid: 0,
            received: 0,
            uncollected: 0,
        };
        for (holder, position) in holders {
            // Linear: value × num / den, exact before the one rounding, and
            // the values of all holders sum to zero. Inverse: the signed
            // base notional size × N / price (a long's, positive), again
            // one rounding of an exact quotient summing to zero.
            let (value, den) = if mk.instrument.is_inverse() {
                let n = mk.inverse_numerator().ok_or_else(overflow)?;
                let value = position.size.checked_mul(n).ok_or_else(overflow)?;
                (value, den.checked_mul(price).ok_or_else(overflow)?)
            } else {
                (mk.value(position.size, price).ok_or_else(overflow)?, den)
            };
            // owed > 0: the holder pays (long with a positive rate).
            let owed_round = if (value > 0) == (num > 0) {
                Round::Up
            } else {
                Round::Down
            };
            let owed = mul_div(value, num, den, owed_round).ok_or_else(overflow)?;
            let charged = if owed > 0 {
                round.paid = round.paid.checked_add(owed).ok_or_else(overflow)?;
                let can_pay = match (holder, self.isolated_margin(m, holder)) {
                    (Owner::Account(_), Some(margin)) => margin.max(0),
                    (Owner::Account(_), None) => {
                        let wallet = self.collateral(holder);
                        self.balance_units(wallet, mk.settle).available.max(0)
                    }
                    _ => owed,
                };
                let collected = owed.min(can_pay);
                round.uncollected += owed - collected;
                collected
            } else {
                round.received = round.received.checked_sub(owed).ok_or_else(overflow)?;
                owed
            };
            round.payments.push((holder, -charged));
        }
        Ok(round)
    }

    pub(crate) fn perp_fill(
        &mut self,
        journal: &mut Journal,
        spec: &PerpFill,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let t = self.perp_fill_terms(spec)?;
        let m = t.m;
        let sides = [
            (spec.buyer, t.size, t.value, t.buyer_fee),
            (spec.seller, -t.size, -t.value, t.seller_fee),
        ];
        let mut planned = Vec::with_capacity(2);
        for (account, delta, value, fee) in sides {
            planned.push(self.plan_perp_side(&t, spec, account, delta, value, fee)?);
        }
        for side in &planned {
            self.check_initial_margin(&t, side)?;
        }
        let shown_price = self.price_decimal(m, t.price);
        events.emit(|| Event::PerpFill {
            market: spec.market.to_string(),
            buyer: spec.buyer,
            seller: spec.seller,
            size: self.size_decimal(m, t.size),
            price: shown_price,
            buyer_fee: self.money_decimal(m, t.buyer_fee),
            seller_fee: self.money_decimal(m, t.seller_fee),
        });
        let counterparties = [
            (Owner::Account(spec.seller), t.buyer_fee),
            (Owner::Account(spec.buyer), t.seller_fee),
        ];
        let mut realized = 0i128;
        for (side, (counterparty, fee)) in planned.into_iter().zip(counterparties) {
            let pnl = self.trade_holder(
                journal,
                m,
                Owner::Account(side.account),
                counterparty,
                PositionCause::Fill,
                side.delta,
                side.value,
                shown_price,
                fee,
                events,
            )?;
            realized = realized.checked_add(pnl).ok_or_else(overflow)?;
        }
        self.move_pool(journal, m, -realized, events)?;
        let fees = t.buyer_fee.checked_add(t.seller_fee).ok_or_else(overflow)?;
        self.post(journal, Owner::Fees, t.settle, fees, events)
    }

    /// A perp fill's stateless and market checks: known market and
    /// distinct accounts, positive price and size on the grid, fees at the
    /// settle scale, a mark price, a representable notional.
    fn perp_fill_terms(&self, spec: &PerpFill) -> Result<PerpFillTerms, Rejection> {
        let m = self.market_idx(&spec.market)?;
        let (buyer, seller) = (spec.buyer, spec.seller);
        self.check_account(buyer)?;
        self.check_account(seller)?;
        if buyer == seller {
            return Err(reject(RejectDetail::SelfTrade { account: buyer }));
        }
        for (field, value) in [(Field::Price, spec.price), (Field::Size, spec.size)] {
            if value <= Decimal::ZERO {
                return Err(reject(RejectDetail::NotPositive { field, value }));
            }
        }
        self.check_tradable(m)?;
        let mk = &self.markets[m as usize];
        let settle = mk.settle;
        let tick = amount::to_decimal(mk.tick, mk.price_scale);
        let step = amount::to_decimal(mk.step, mk.size_scale);
        let price = self.on_grid(spec.price, mk.price_scale, mk.tick, Field::Price, tick)?;
        let size = self.on_grid(spec.size, mk.size_scale, mk.step, Field::Size, step)?;
        let buyer_fee = self.fee_units(spec.buyer_fee, settle, Field::BuyerFee)?;
        let seller_fee = self.fee_units(spec.seller_fee, settle, Field::SellerFee)?;
        if mk.mark_price().is_none() {
            return Err(reject(RejectDetail::NoMarkPriceYet {
                market: spec.market.clone(),
            }));
        }
        self.check_underlying_mark(m)?;
        let value = mk
            .value(size, price)
            .filter(|v| amount::in_range(*v))
            .ok_or_else(|| {
                reject(RejectDetail::NotionalTooLarge {
                    amount: spec.size,
                    price: spec.price,
                })
            })?;
        // An option's fees are capped at its fee cap of the premium.
        let buyer_fee = self.capped_fee(m, buyer_fee, value).ok_or_else(overflow)?;
        let seller_fee = self.capped_fee(m, seller_fee, value).ok_or_else(overflow)?;
        Ok(PerpFillTerms {
            m,
            settle,
            price,
            size,
            value,
            buyer_fee,
            seller_fee,
        })
    }

    /// One side of a perp fill: `account` trades `delta` for `value` and
    /// pays `fee`. Refused if the market is paused and the trade grows the
    /// position, or if its realized loss and fee would make the settle
    /// balance negative.
    fn plan_perp_side(
        &self,
        t: &PerpFillTerms,
        spec: &PerpFill,
        account: AccountId,
        delta: i128,
        value: i128,
        fee: i128,
    ) -> Result<PlannedSide, Rejection> {
        let (m, settle) = (t.m, t.settle);
        let mk = &self.markets[m as usize];
        let before = mk.positions.get(&account).copied().unwrap_or_default();
        let traded = self
            .holder_trade(m, Owner::Account(account), before, delta, value)
            .filter(|t| amount::in_range(t.after.size) && amount::in_range(t.after.cost))
            .ok_or_else(overflow)?;
        if mk.state.paused && traded.increased {
            return Err(reject(RejectDetail::PausedIncrease {
                market: spec.market.clone(),
                account,
            }));
        }
        let holder = Owner::Account(account);
        let wallet = match self.isolated_margin(m, holder) {
            Some(margin) => margin,
            None => {
                self.balance_units(self.collateral(holder), settle)
                    .available
            }
        };
        let change = traded.realized.checked_sub(fee).ok_or_else(overflow)?;
        let after = wallet
            .checked_add(change)
            .filter(|v| amount::in_range(*v))
            .ok_or_else(overflow)?;
        if after < 0 && change < 0 {
            return Err(reject(RejectDetail::PnlFundsShort {
                account,
                available: self.money_decimal(m, wallet),
                asset: self.symbol(settle).to_string(),
                realized: self.money_decimal(m, traded.realized),
                fee: self.money_decimal(m, fee),
                after: self.money_decimal(m, after),
            }));
        }
        Ok(PlannedSide {
            account,
            delta,
            value,
            traded,
            wallet_after: after,
        })
    }

    /// `InsufficientMargin` unless a side whose position opens, grows or
    /// flips can pay its cost to open: equity (at the marks) without the
    /// opened size's profit against the mark, at or above the initial
    /// margin with the traded position margined at the higher of the fill
    /// price and the mark (see `cost_to_open`). With the legacy rules
    /// (`Ledger::set_legacy_rules`): equity at or above the IM at the marks.
    fn check_initial_margin(&self, t: &PerpFillTerms, side: &PlannedSide) -> Result<(), Rejection> {
        if !side.traded.increased {
            return Ok(());
        }
        let (m, settle) = (t.m, t.settle);
        let risk = match self.isolated_margin(m, Owner::Account(side.account)) {
            // An isolated side is its own group: its margin after the fill.
            Some(_) => self.isolated_risk_with(m, side.wallet_after, side.traded.after),
            None => self.group_risk_with(
                side.account,
                settle,
                side.wallet_after,
                Some((m, side.traded.after)),
            ),
        }
        .ok_or_else(overflow)?;
        let (equity, initial) = if self.legacy_rules {
            (risk.equity, risk.initial)
        } else {
            self.cost_to_open(t, side, &risk).ok_or_else(overflow)?
        };
        if equity < initial {
            return Err(reject(RejectDetail::MarginShort {
                account: side.account,
                equity: self.money_decimal(m, equity),
                asset: self.symbol(settle).to_string(),
                initial: self.money_decimal(m, initial),
            }));
        }
        Ok(())
    }

    /// The (equity, initial margin) a risk-increasing side must satisfy,
    /// Binance's "cost to open" (IM at the order price plus the open loss)
    /// made no weaker than the mark rule: the opened size's profit against
    /// the mark (bought below or sold above it) is not counted, its loss is
    /// (it is in the equity already, as unrealized PnL at the mark), and
    /// the traded position's IM is taken at the higher of the fill price
    /// and the mark. So a fill is refused whenever the mark rule or
    /// Binance's cost to open would refuse it.
    fn cost_to_open(
        &self,
        t: &PerpFillTerms,
        side: &PlannedSide,
        risk: &crate::risk::GroupRisk,
    ) -> Option<(i128, i128)> {
        let mk = &self.markets[t.m as usize];
        let mark = mk.mark_price()?;
        let after = side.traded.after;
        let before = after.size.checked_sub(side.delta)?;
        // The size this fill opened: all of a new or flipped position, the
        // growth of a grown one.
        let opened = if before == 0 || (before > 0) != (after.size > 0) {
            after.size
        } else {
            side.delta
        };
        let open_pnl = mk
            .value(opened, mark)?
            .checked_sub(mk.value(opened, t.price)?)?;
        let equity = risk.equity.checked_sub(open_pnl.max(0))?;
        let at_mark = self.position_risk(t.m, after, mark)?.initial_margin;
        let at_price = self.position_risk(t.m, after, t.price)?.initial_margin;
        let initial = risk.initial.checked_add(at_price.max(at_mark) - at_mark)?;
        Some((equity, initial))
    }
}

/// A perp fill that passed its market checks, in market units: price in
/// ticks' units, size in steps' units, notional value and fees in settle
/// minor units.
struct PerpFillTerms {
    m: MarketIdx,
    settle: AssetIdx,
    price: i128,
    size: i128,
    value: i128,
    buyer_fee: i128,
    seller_fee: i128,
}

/// One checked side of a perp fill: its trade and settle balance after it.
struct PlannedSide {
    account: AccountId,
    delta: i128,
    value: i128,
    traded: Traded,
    wallet_after: i128,
}

/// One funding round's charges (settle minor units): each holder's payment
/// (negative: it pays), the sum of debits owed, of credits, and of debits
/// the payers' balances could not cover.
pub(crate) struct FundingRound {
    pub payments: Vec<(Owner, i128)>,
    pub paid: i128,
    pub received: i128,
    pub uncollected: i128,
}

impl FundingRound {
    /// `paid − received`: never negative, since positions net to zero
    /// size, so payers and receivers hold equal value, and debits round up
    /// and credits down.
    pub(crate) fn residue(&self) -> Result<i128, Rejection> {
        let residue = self.paid.checked_sub(self.received).ok_or_else(overflow)?;
        assert!(
            residue >= 0,
            "invariant broken: funding residue {residue} is negative"
        );
        Ok(residue)
    }
}
