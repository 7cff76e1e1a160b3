//! Read-only views of perpetual markets for queries (exposure monitoring):
//! market parameters and state, per-market exposure, an account's positions
//! and margin per settle asset, and the accounts closest to liquidation.
//! Amounts are `Decimal` at the settle asset's scale, sizes at the step's,
//! prices at the tick's; derived prices (entry, liquidation) carry
//! `DERIVED_PRICE_EXTRA_DECIMALS` more decimals (half to even) and margin
//! ratios 8 decimals (rounded up). Everything in canonical order (markets by
//! symbol, accounts by id).

use std::cmp::Ordering;

use rust_decimal::Decimal;

use crate::amount::{to_decimal, to_decimal_saturating};
use crate::command::{AccountId, Owner, RATE_SCALE};
use crate::engine::Ledger;
use crate::market::MarketIdx;
use crate::perp::{DERIVED_PRICE_EXTRA_DECIMALS, RATIO_SCALE};
use crate::risk::GroupRisk;
use crate::state::AssetIdx;
use crate::wide::{Round, mul_div, pow10};

/// One maintenance-margin bracket as configured, with its cumulative amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BracketView {
    pub notional_floor: Decimal,
    pub maintenance_margin_rate: Decimal,
    pub max_leverage: u32,
    /// `cum` of the bracket (settle asset), exact.
    pub maintenance_amount: Decimal,
}

/// A market's parameters and state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketView {
    pub market: String,
    pub base: String,
    pub settle_asset: String,
    pub tick_size: Decimal,
    pub step_size: Decimal,
    pub max_leverage: u32,
    pub brackets: Vec<BracketView>,
    pub liquidation_fee_rate: Decimal,
    pub funding_interval_ms: u64,
    pub paused: bool,
    pub mark_price: Option<Decimal>,
    pub mark_time_ms: Option<u64>,
    pub last_funding_time_ms: Option<u64>,
    /// `perpetual`, `dated_future`, `inverse_perpetual`,
    /// `inverse_dated_future`, `call`, `put`, `perpetual_call` or
    /// `perpetual_put`.
    pub kind: &'static str,
    /// A dated future's expiry (leader time ms); 0 for a perpetual.
    pub expiry_ms: u64,
    /// A dated future's delivery fee rate (zero for a perpetual).
    pub delivery_fee_rate: Decimal,
    /// A settled dated future's settlement price; an exercised option's
    /// underlying settlement price.
    pub settlement_price: Option<Decimal>,
    /// An option's underlying market (its index) and strike.
    pub underlying: Option<String>,
    pub strike: Option<Decimal>,
    /// An inverse market's contract value (quote units per contract).
    pub contract_value: Option<Decimal>,
}

/// A market's exposure: open interest, long and short totals, and what
/// stands behind them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExposureView {
    pub market: MarketView,
    /// Total size of client longs plus any long insurance inventory (= total shorts).
    pub open_interest: Decimal,
    /// Total size of client long positions.
    pub long_size: Decimal,
    /// Total size of client short positions (positive).
    pub short_size: Decimal,
    pub long_accounts: u64,
    pub short_accounts: u64,
    /// `open_interest * mark` (settle asset), zero without a mark.
    pub open_interest_notional: Decimal,
    /// The settle asset's insurance fund balance.
    pub insurance_balance: Decimal,
    /// The insurance fund's inventory in this market (signed size).
    pub insurance_position: Decimal,
    /// The market's PnL pool (minus the total cost basis of open positions).
    pub pnl_pool: Decimal,
}

/// One position with its risk at the mark price.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionView {
    pub market: String,
    pub account: AccountId,
    /// Signed: long > 0.
    pub size: Decimal,
    pub entry_price: Decimal,
    pub mark_price: Decimal,
    pub notional: Decimal,
    pub unrealized_pnl: Decimal,
    pub initial_margin: Decimal,
    pub maintenance_margin: Decimal,
    /// Leverage allowed at this notional: min(market max, bracket max).
    pub max_leverage: u32,
    /// Index of the bracket the notional falls in.
    pub bracket: u32,
    /// The mark price at which this account would be liquidated, the other
    /// positions' marks unchanged; `None` if no positive price would do it.
    /// For an isolated position, Binance's isolated formula (its margin as
    /// the wallet, the other positions ignored).
    pub liquidation_price: Option<Decimal>,
    /// The isolated margin, for an isolated position.
    pub isolated_margin: Option<Decimal>,
}

/// An account's cross margin in one settle asset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarginView {
    pub account: AccountId,
    pub settle_asset: String,
    /// The settle asset's available balance.
    pub wallet_balance: Decimal,
    pub unrealized_pnl: Decimal,
    /// Wallet balance + unrealized PnL.
    pub equity: Decimal,
    pub initial_margin: Decimal,
    pub maintenance_margin: Decimal,
    /// Maintenance margin / equity (1 or more means liquidatable); `None`
    /// when equity is zero or negative.
    pub margin_ratio: Option<Decimal>,
    /// Positions in markets settled in this asset, by market symbol.
    pub positions: Vec<PositionView>,
}

impl Ledger {
    fn market_view(&self, m: MarketIdx) -> MarketView {
        let market = &self.markets[m as usize];
        let scale = market.settle_scale;
        let rate = |units: i128| to_decimal(units, RATE_SCALE).normalize();
        MarketView {
            market: market.symbol.clone(),
            base: market.base.clone(),
            settle_asset: self.symbol(market.settle).to_string(),
            tick_size: to_decimal(market.tick, market.price_scale),
            step_size: to_decimal(market.step, market.size_scale),
            max_leverage: market.max_leverage,
            brackets: market
                .brackets
                .iter()
                .map(|b| BracketView {
                    notional_floor: to_decimal(b.floor, scale),
                    maintenance_margin_rate: rate(b.mmr),
                    max_leverage: b.max_leverage,
                    maintenance_amount: Decimal::try_from_i128_with_scale(
                        b.cum,
                        scale + RATE_SCALE,
                    )
                    .map(|d| d.normalize())
                    .unwrap_or_default(),
                })
                .collect(),
            liquidation_fee_rate: rate(market.liquidation_fee_rate),
            funding_interval_ms: market.funding_interval_ms,
            paused: market.state.paused,
            mark_price: market
                .state
                .mark
                .map(|mark| to_decimal(mark.price, market.price_scale)),
            mark_time_ms: market.state.mark.map(|mark| mark.time_ms),
            last_funding_time_ms: market.state.last_funding_ms,
            kind: market.kind_name(),
            expiry_ms: market.instrument.expiry_ms,
            delivery_fee_rate: rate(market.instrument.delivery_fee_rate),
            settlement_price: market
                .state
                .settlement
                .map(|p| self.settlement_decimal(m, p)),
            underlying: market
                .instrument
                .option
                .map(|o| self.markets[o.underlying as usize].symbol.clone()),
            strike: market
                .instrument
                .option
                .map(|o| to_decimal(o.strike, o.underlying_price_scale)),
            contract_value: market.instrument.is_inverse().then(|| {
                Decimal::from_i128_with_scale(market.instrument.inverse_contract_value, 0)
            }),
        }
    }

    /// A market's parameters and state.
    pub fn market(&self, market: &str) -> Option<MarketView> {
        let &m = self.market_index.get(market)?;
        Some(self.market_view(m))
    }

    /// Every market, by symbol.
    pub fn markets(&self) -> Vec<MarketView> {
        self.market_order
            .iter()
            .map(|&m| self.market_view(m))
            .collect()
    }

    /// A market's exposure.
    pub fn market_exposure(&self, market: &str) -> Option<ExposureView> {
        let &m = self.market_index.get(market)?;
        let mk = &self.markets[m as usize];
        let (mut long, mut short, mut longs, mut shorts) = (0i128, 0i128, 0u64, 0u64);
        for position in mk.positions.values() {
            if position.size > 0 {
                long = long.saturating_add(position.size);
                longs += 1;
            } else {
                short = short.saturating_add(position.size.saturating_neg());
                shorts += 1;
            }
        }
        let inventory = mk.state.insurance.size;
        let open_interest = long.saturating_add(inventory.max(0));
        let oi_notional = mk
            .mark_price()
            .and_then(|price| mk.value(open_interest, price))
            .unwrap_or(0);
        Some(ExposureView {
            market: self.market_view(m),
            open_interest: self.size_decimal(m, open_interest),
            long_size: self.size_decimal(m, long),
            short_size: self.size_decimal(m, short),
            long_accounts: longs,
            short_accounts: shorts,
            open_interest_notional: self.money_decimal(m, oi_notional),
            insurance_balance: self
                .money_decimal(m, self.balance_units(Owner::Insurance, mk.settle).available),
            insurance_position: self.size_decimal(m, inventory),
            pnl_pool: self.money_decimal(m, mk.state.pool),
        })
    }

    fn margin_view(&self, account: AccountId, asset: AssetIdx, group: &GroupRisk) -> MarginView {
        let scale = self.scale(asset);
        let money = |units: i128| to_decimal_saturating(units, scale);
        let positions = group
            .positions
            .iter()
            .enumerate()
            .map(|(i, held)| {
                let m = held.market;
                let market = &self.markets[m as usize];
                let shown = market.price_scale + DERIVED_PRICE_EXTRA_DECIMALS;
                PositionView {
                    market: market.symbol.clone(),
                    account,
                    size: self.size_decimal(m, held.position.size),
                    entry_price: self.derived_price(m, held.position.cost, held.position.size),
                    mark_price: self.price_decimal(m, held.mark),
                    notional: money(held.risk.notional),
                    unrealized_pnl: money(held.risk.upnl),
                    initial_margin: money(held.risk.initial_margin),
                    maintenance_margin: money(held.risk.maintenance),
                    max_leverage: held.risk.leverage,
                    bracket: u32::try_from(held.risk.tier).unwrap_or(u32::MAX),
                    liquidation_price: self
                        .liquidation_price(group, i)
                        .and_then(|lp| Decimal::try_from_i128_with_scale(lp, shown).ok()),
                    isolated_margin: self
                        .isolated_margin(m, crate::command::Owner::Account(account))
                        .map(money),
                }
            })
            .collect();
        MarginView {
            account,
            settle_asset: self.symbol(asset).to_string(),
            wallet_balance: money(group.wallet),
            unrealized_pnl: money(group.upnl),
            equity: money(group.equity),
            initial_margin: money(group.initial),
            maintenance_margin: money(group.maintenance),
            margin_ratio: margin_ratio(group)
                .and_then(|r| Decimal::try_from_i128_with_scale(r, RATIO_SCALE).ok()),
            positions,
        }
    }

    /// Settle assets of all markets, by symbol, each once.
    fn settle_assets(&self) -> Vec<AssetIdx> {
        let mut assets: Vec<AssetIdx> = self.markets.iter().map(|m| m.settle).collect();
        assets.sort_unstable_by(|a, b| self.symbol(*a).cmp(self.symbol(*b)));
        assets.dedup();
        assets
    }

    /// An account's margin per settle asset in which it holds positions (by
    /// asset symbol); `None` if the account is unknown.
    pub fn margin(&self, account: AccountId) -> Option<Vec<MarginView>> {
        if !self.accounts.contains_key(&account) {
            return None;
        }
        Some(
            self.settle_assets()
                .into_iter()
                .filter_map(|asset| {
                    let group = self.group_risk(account, asset)?;
                    (!group.positions.is_empty()).then(|| self.margin_view(account, asset, &group))
                })
                .collect(),
        )
    }

    /// One position with its risk; `None` if the market is unknown or the
    /// account holds no position there.
    pub fn position(&self, market: &str, account: AccountId) -> Option<PositionView> {
        let &m = self.market_index.get(market)?;
        let settle = self.markets[m as usize].settle;
        self.markets[m as usize].positions.get(&account)?;
        let group = match self.isolated_risk(m, account) {
            Some(isolated) => isolated,
            None => self.group_risk(account, settle)?,
        };
        let view = self.margin_view(account, settle, &group);
        view.positions.into_iter().find(|p| p.market == market)
    }

    /// The `limit` account margins (settle asset groups with positions)
    /// closest to liquidation: non-positive equity first, then by margin
    /// ratio descending, ties by account id then asset symbol. Restricted to
    /// one settle asset if `settle_asset` is given.
    pub fn closest_to_liquidation(
        &self,
        limit: usize,
        settle_asset: Option<&str>,
    ) -> Vec<MarginView> {
        let assets: Vec<AssetIdx> = match settle_asset {
            Some(symbol) => self.asset_index.get(symbol).copied().into_iter().collect(),
            None => self.settle_assets(),
        };
        // (ratio or None for equity <= 0, account, asset, group)
        let mut rows: Vec<(Option<i128>, AccountId, AssetIdx, GroupRisk)> = Vec::new();
        for asset in assets {
            let mut accounts: Vec<AccountId> = self
                .settle_markets(asset)
                .flat_map(|m| self.markets[m as usize].positions.keys().copied())
                .collect();
            accounts.sort_unstable();
            accounts.dedup();
            for account in accounts {
                if let Some(group) = self.group_risk(account, asset)
                    && !group.positions.is_empty()
                {
                    rows.push((margin_ratio(&group), account, asset, group));
                }
            }
        }
        rows.sort_by(|a, b| {
            let by_ratio = match (a.0, b.0) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => y.cmp(&x),
            };
            by_ratio
                .then(a.1.cmp(&b.1))
                .then(self.symbol(a.2).cmp(self.symbol(b.2)))
        });
        rows.into_iter()
            .take(limit)
            .map(|(_, account, asset, group)| self.margin_view(account, asset, &group))
            .collect()
    }
}

/// Maintenance margin / equity at `RATIO_SCALE`, rounded up; `None` when
/// equity ≤ 0.
fn margin_ratio(group: &GroupRisk) -> Option<i128> {
    if group.equity <= 0 {
        return None;
    }
    mul_div(
        group.maintenance,
        pow10(RATIO_SCALE)?,
        group.equity,
        Round::Ceil,
    )
}

/// An account's delta-equivalent exposure to one underlying (a base
/// symbol: BTC for BTC-PERP, a BTC future, an inverse BTCUSD market and
/// options on any of them), in units of the underlying, without Greeks.
/// Futures and perpetuals contribute exactly: a linear position its size;
/// an inverse one its base value n × CV / mark (long positive). An option
/// whose mark came with a delta (`SetOptionMark`, the exchange's pricer's)
/// contributes exactly `size × delta` (to `options_delta`). One without
/// (never stated, or cleared by a plain `SetMarkPrice`) contributes a
/// model-free range: a call's delta is in [0, 1] per unit, a put's in
/// [−1, 0], so a long call adds [0, q], a short call [−q, 0], a long put
/// [−q, 0], a short put [0, q]. The exposure is `delta` = futures +
/// options delta when every option has a stated delta
/// (`options_without_delta` 0, then `delta_low` = `delta_high` = `delta`);
/// otherwise it lies in [`delta_low`, `delta_high`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaView {
    pub underlying: String,
    /// Σ over perpetuals and dated futures (linear and inverse).
    pub futures_delta: Decimal,
    /// Σ size × stated delta over the options with one.
    pub options_delta: Decimal,
    /// `futures_delta + options_delta`.
    pub delta: Decimal,
    /// Option positions whose mark has no stated delta (their ranges
    /// widen [`delta_low`, `delta_high`]).
    pub options_without_delta: u64,
    pub delta_low: Decimal,
    pub delta_high: Decimal,
    /// Option sizes by side (positive): long calls, short calls, long
    /// puts, short puts.
    pub long_calls: Decimal,
    pub short_calls: Decimal,
    pub long_puts: Decimal,
    pub short_puts: Decimal,
}

impl Ledger {
    /// The delta-equivalent exposure of `account` per underlying (see
    /// [`DeltaView`]), by underlying symbol; cross and isolated positions
    /// alike; `None` for an unknown account. Visits every market once.
    pub fn delta_exposure(&self, account: AccountId) -> Option<Vec<DeltaView>> {
        if !self.accounts.contains_key(&account) {
            return None;
        }
        let mut by: std::collections::BTreeMap<String, DeltaView> = Default::default();
        for &m in &self.market_order {
            let market = &self.markets[m as usize];
            let Some(position) = market.positions.get(&account) else {
                continue;
            };
            let view = by.entry(market.base.clone()).or_insert_with(|| DeltaView {
                underlying: market.base.clone(),
                futures_delta: Decimal::ZERO,
                options_delta: Decimal::ZERO,
                delta: Decimal::ZERO,
                options_without_delta: 0,
                delta_low: Decimal::ZERO,
                delta_high: Decimal::ZERO,
                long_calls: Decimal::ZERO,
                short_calls: Decimal::ZERO,
                long_puts: Decimal::ZERO,
                short_puts: Decimal::ZERO,
            });
            let size = self.size_decimal(m, position.size);
            if market.instrument.option.is_some() {
                let q = size.abs();
                let (slot, low, high) =
                    match (market.instrument.kind.is_call(), size > Decimal::ZERO) {
                        (true, true) => (&mut view.long_calls, Decimal::ZERO, q),
                        (true, false) => (&mut view.short_calls, -q, Decimal::ZERO),
                        (false, true) => (&mut view.long_puts, -q, Decimal::ZERO),
                        (false, false) => (&mut view.short_puts, Decimal::ZERO, q),
                    };
                *slot += q;
                match market.state.mark_delta {
                    Some(delta) => {
                        // |size| and |delta| ≤ 1 in range: exact in Decimal.
                        let delta = to_decimal_saturating(delta, RATE_SCALE);
                        let exposure = size.checked_mul(delta).unwrap_or(Decimal::ZERO);
                        view.options_delta += exposure;
                        view.delta += exposure;
                        view.delta_low += exposure;
                        view.delta_high += exposure;
                    }
                    None => {
                        view.options_without_delta += 1;
                        view.delta_low += low;
                        view.delta_high += high;
                    }
                }
                continue;
            }
            let delta = if market.instrument.is_inverse() {
                // Base value of the contracts at the mark, long positive.
                let value = market
                    .mark_price()
                    .and_then(|mark| market.value(position.size, mark))
                    .unwrap_or(0);
                -self.money_decimal(m, value)
            } else {
                size
            };
            view.futures_delta += delta;
            view.delta += delta;
            view.delta_low += delta;
            view.delta_high += delta;
        }
        Some(by.into_values().collect())
    }
}
