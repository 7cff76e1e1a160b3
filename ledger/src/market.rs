//! Perpetual-market state and its pure arithmetic: market parameters in
//! integer units, positions as (signed size, signed cost basis), the value of
//! a position at a price, margin brackets (maintenance and initial margin)
//! and the trade rule (open, increase, reduce, flip) with its realized PnL.
//!
//! Units (all `i128`):
//! - size: minor units of the market's step (`size * 10^size_scale`);
//! - price: minor units of the market's tick (`price * 10^price_scale`);
//! - money (cost basis, value, PnL, margins): settle-asset minor units. A
//!   market requires `size_scale + price_scale <= settle scale`, so
//!   `size * price` is always a whole number of settle minor units;
//! - rates: `rate * 10^RATE_SCALE`; the cumulative maintenance amount `cum`
//!   is kept at settle scale + `RATE_SCALE`, where it is exact.
//!
//! Instruments: every market is an entry of one registry, and its
//! [`Instrument`] says what it trades: a perpetual (the default; its record
//! is the market record alone, as release 0.1 wrote it), a dated future
//! (a linear perpetual without funding, plus an expiry time, a delivery fee
//! rate and, once settled, its settlement price; the `expiry` module), or
//! an option (a European cash-settled call or put on the mark price of an
//! underlying market, expiring or perpetual; the `options` module). The
//! instrument's parameters and settlement price are persisted in their own
//! `Instrument` record (see `records`), written only for non-perpetuals.
//!
//! Option positions carry no cost basis (`cost` is always 0 after a
//! command): the premium is cash, paid at the fill, so a position's value
//! `size × mark` is all of its unrealized PnL and equity counts it at mark.
//!
//! Cost basis: a position keeps `cost = Σ size_i * price_i` over the fills
//! that opened it, exactly (signed like the size). The entry price is
//! `cost / size`; it is never stored rounded, so it cannot drift. On a
//! partial reduce the cost removed is `cost * closed / size` rounded half to
//! even to a settle minor unit (the fraction stays with the remaining
//! position's cost; it is not money, so no residue arises), and realized PnL
//! is `proceeds - cost removed`, a whole number of minor units.

use std::collections::BTreeMap;

use crate::command::{AccountId, RATE_SCALE};
use crate::state::AssetIdx;
use crate::wide::{Round, mul_div, pow10};

/// Index of a market in `Ledger::markets` (creation order on this replica;
/// never leaves the engine, never used for ordering output).
pub(crate) type MarketIdx = u32;

/// `10^RATE_SCALE`: a rate of 1.
pub(crate) const RATE_ONE: i128 = 100_000_000;
const _: () = assert!(RATE_ONE == 10i128.pow(RATE_SCALE));

/// A position: signed size (long > 0) and signed cost basis (same sign, or
/// zero after rounding), both zero when flat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Position {
    pub size: i128,
    pub cost: i128,
}

/// A maintenance-margin tier in internal units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bracket {
    /// Notional floor, settle minor units.
    pub floor: i128,
    /// Maintenance margin rate, `RATE_SCALE` units.
    pub mmr: i128,
    pub max_leverage: u32,
    /// Cumulative maintenance amount, settle minor units * 10^RATE_SCALE.
    pub cum: i128,
}

/// A mark price and its leader time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    pub price: i128,
    pub time_ms: u64,
}

/// What a market trades. Persisted by its tag (see `records`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum InstrumentKind {
    /// A perpetual future: funding, never expires.
    #[default]
    Perpetual,
    /// A dated (expiring) future: no funding; trading stops at the expiry
    /// time and `SettleFuture` closes every position at one price.
    DatedFuture,
    /// A European call, cash-settled at expiry (`ExerciseOption`).
    Call,
    /// A European put, cash-settled at expiry.
    Put,
    /// A perpetual (everlasting) call: never expires, pays funding.
    PerpetualCall,
    /// A perpetual (everlasting) put.
    PerpetualPut,
}

impl InstrumentKind {
    /// The record tag (0 perpetual, 1 dated future).
    pub fn tag(self) -> u8 {
        match self {
            InstrumentKind::Perpetual => 0,
            InstrumentKind::DatedFuture => 1,
            InstrumentKind::Call => 2,
            InstrumentKind::Put => 3,
            InstrumentKind::PerpetualCall => 4,
            InstrumentKind::PerpetualPut => 5,
        }
    }

    /// The kind of a record tag, if it names one.
    pub fn from_tag(tag: u8) -> Option<InstrumentKind> {
        match tag {
            0 => Some(InstrumentKind::Perpetual),
            1 => Some(InstrumentKind::DatedFuture),
            2 => Some(InstrumentKind::Call),
            3 => Some(InstrumentKind::Put),
            4 => Some(InstrumentKind::PerpetualCall),
            5 => Some(InstrumentKind::PerpetualPut),
            _ => None,
        }
    }

    /// Stable lowercase name (`perpetual`, `dated_future`, `call`, `put`,
    /// `perpetual_call`, `perpetual_put`).
    pub fn as_str(self) -> &'static str {
        match self {
            InstrumentKind::Perpetual => "perpetual",
            InstrumentKind::DatedFuture => "dated_future",
            InstrumentKind::Call => "call",
            InstrumentKind::Put => "put",
            InstrumentKind::PerpetualCall => "perpetual_call",
            InstrumentKind::PerpetualPut => "perpetual_put",
        }
    }

    /// True for the four option kinds.
    pub fn is_option(self) -> bool {
        matches!(
            self,
            InstrumentKind::Call
                | InstrumentKind::Put
                | InstrumentKind::PerpetualCall
                | InstrumentKind::PerpetualPut
        )
    }

    /// True for a call (expiring or perpetual).
    pub fn is_call(self) -> bool {
        matches!(self, InstrumentKind::Call | InstrumentKind::PerpetualCall)
    }

    /// True for the kinds that expire and are settled once.
    pub fn expires(self) -> bool {
        matches!(
            self,
            InstrumentKind::DatedFuture | InstrumentKind::Call | InstrumentKind::Put
        )
    }
}

/// An option's terms (all prices in the underlying market's tick units,
/// rates in `RATE_SCALE` units).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct OptionTerms {
    /// The market whose mark price is the underlying index `U`.
    pub underlying: MarketIdx,
    /// The underlying market's price scale (copied; never changes). The
    /// option's own price scale is at least this one.
    pub underlying_price_scale: u32,
    pub strike: i128,
    /// Standard margin coefficients: short IM per unit `max(a·U − OTM,
    /// b·U) + mark`, MM per unit `c·U + mark` (see `options`).
    pub im_rate: i128,
    pub im_floor_rate: i128,
    pub mm_rate: i128,
    /// A fill's fee is at most this fraction of its premium (0: no cap).
    pub fee_cap_rate: i128,
    /// Perpetual options: the funding period (funding per round =
    /// size × (mark − intrinsic) × elapsed / period).
    pub funding_period_ms: u64,
}

/// A market's contract terms beyond the perpetual parameters (all zero for
/// a perpetual).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Instrument {
    pub kind: InstrumentKind,
    /// Leader time (ms) from which fills are refused and settlement is
    /// allowed; 0 for a perpetual.
    pub expiry_ms: u64,
    /// Delivery fee rate (`RATE_SCALE` units) charged at settlement on each
    /// position's notional at the settlement price, to `Fees`.
    pub delivery_fee_rate: i128,
    /// An option's terms (`None` for a perpetual or a dated future).
    pub option: Option<OptionTerms>,
    /// An inverse (coin-margined) perpetual or dated future: the contract
    /// value in quote units (a whole number, e.g. 100 USD); 0 for a linear
    /// market. See [`Market::value`].
    pub inverse_contract_value: i128,
}

impl Instrument {
    /// True for the default terms (a linear perpetual), which have no
    /// record.
    pub fn is_perpetual(&self) -> bool {
        *self == Instrument::default()
    }

    /// True for a perpetual future (linear or inverse): it takes funding.
    pub fn takes_funding(&self) -> bool {
        self.kind == InstrumentKind::Perpetual
    }

    /// True for an inverse market.
    pub fn is_inverse(&self) -> bool {
        self.inverse_contract_value != 0
    }
}

/// The mutable, non-position state of a market.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MarketState {
    pub paused: bool,
    pub mark: Option<Mark>,
    pub last_funding_ms: Option<u64>,
    /// The PnL pool, settle minor units: the counter-entry of realized PnL,
    /// always `-(Σ cost of all positions + insurance inventory cost)`.
    pub pool: i128,
    /// The insurance fund's inventory (positions it took over).
    pub insurance: Position,
    /// A dated future's settlement price (tick units) once settled; for an
    /// option, the underlying settlement price (underlying tick units) it
    /// was exercised at. Always `None` for a perpetual. Persisted in the
    /// `Instrument` record.
    pub settlement: Option<i128>,
    /// An option's delta at its mark (`RATE_SCALE` units: a call in
    /// [0, 1], a put in [−1, 0]), stated with the mark by `SetOptionMark`
    /// (the exchange's pricer computes it; Tally has no pricing model);
    /// `None` until stated and after a mark without one. Persisted in the
    /// `Instrument` record.
    pub mark_delta: Option<i128>,
    /// A perpetual's funding clamp c (`RATE_SCALE` units, 0 ≤ c < 1) for
    /// `ApplyPremiumFunding`, set by `SetFundingClamp`; `None`: not set
    /// (premium funding is refused). Persisted in the `Instrument` record
    /// (a linear perpetual with a clamp has one).
    pub funding_clamp_rate: Option<i128>,
}

impl Market {
    /// True if the market has an `Instrument` record: anything but a
    /// linear perpetual without a funding clamp.
    pub fn has_instrument_record(&self) -> bool {
        !self.instrument.is_perpetual() || self.state.funding_clamp_rate.is_some()
    }
}

/// A perpetual market.
#[derive(Clone, Debug)]
pub(crate) struct Market {
    pub symbol: String,
    pub base: String,
    pub settle: AssetIdx,
    /// Settle asset scale (copied; assets never change scale).
    pub settle_scale: u32,
    pub tick: i128,
    pub price_scale: u32,
    pub step: i128,
    pub size_scale: u32,
    pub max_leverage: u32,
    pub brackets: Vec<Bracket>,
    pub liquidation_fee_rate: i128,
    pub funding_interval_ms: u64,
    /// What the market trades (perpetual, dated future).
    pub instrument: Instrument,
    pub state: MarketState,
    /// Open client positions by account (never zero-size).
    pub positions: BTreeMap<AccountId, Position>,
    /// Isolated margins (settle minor units, never negative) of accounts
    /// whose position here is isolated (the `isolated` module).
    pub isolated: BTreeMap<AccountId, i128>,
}

/// Computes the cumulative maintenance amounts of brackets given as
/// (floor, mmr, max_leverage); `None` on overflow.
pub(crate) fn with_cum(tiers: &[(i128, i128, u32)]) -> Option<Vec<Bracket>> {
    let mut out = Vec::with_capacity(tiers.len());
    let (mut cum, mut previous_mmr) = (0i128, 0i128);
    for (i, &(floor, mmr, max_leverage)) in tiers.iter().enumerate() {
        if i > 0 {
            cum = floor
                .checked_mul(mmr.checked_sub(previous_mmr)?)?
                .checked_add(cum)?;
        }
        previous_mmr = mmr;
        out.push(Bracket {
            floor,
            mmr,
            max_leverage,
            cum,
        });
    }
    Some(out)
}

/// Risk numbers of one position at a mark price, in settle minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PositionRisk {
    /// `size * mark` (signed).
    pub value: i128,
    pub notional: i128,
    /// `value - cost`.
    pub upnl: i128,
    pub tier: usize,
    /// `min(market max leverage, tier max leverage)`.
    pub leverage: u32,
    /// `ceil(notional / leverage)`.
    pub initial_margin: i128,
    /// `notional * mmr - cum`, exact, at settle scale + `RATE_SCALE`.
    pub maintenance_exact: i128,
    /// `maintenance_exact` rounded up to a settle minor unit.
    pub maintenance: i128,
}

impl Market {
    /// The value of `size` at `price` in settle minor units: linear,
    /// `size * price` (exact); inverse, `−size × contract value / price`
    /// rounded half to even (a long of n contracts of CV quote each is, in
    /// the base asset, a short of n × CV / price: its PnL from entry e to
    /// p is n × CV × (1/e − 1/p) = value(p) − value(e)). `None` on
    /// overflow (or a non-positive inverse price).
    pub fn value(&self, size: i128, price: i128) -> Option<i128> {
        if self.instrument.is_inverse() {
            if price <= 0 {
                return None;
            }
            return mul_div(
                size.checked_neg()?,
                self.inverse_numerator()?,
                price,
                Round::HalfEven,
            );
        }
        let shift = self
            .settle_scale
            .checked_sub(self.size_scale + self.price_scale)?;
        size.checked_mul(price)?.checked_mul(pow10(shift)?)
    }

    /// The instrument's stable name (`InstrumentKind::as_str`, or
    /// `inverse_perpetual` / `inverse_dated_future`).
    pub fn kind_name(&self) -> &'static str {
        match (self.instrument.is_inverse(), self.instrument.kind) {
            (true, InstrumentKind::Perpetual) => "inverse_perpetual",
            (true, InstrumentKind::DatedFuture) => "inverse_dated_future",
            (_, kind) => kind.as_str(),
        }
    }

    /// An inverse market's `CV × 10^(settle scale + price scale − size
    /// scale)`: `value = −size × this / price` in minor units.
    pub fn inverse_numerator(&self) -> Option<i128> {
        let k = (self.settle_scale + self.price_scale).checked_sub(self.size_scale)?;
        self.instrument
            .inverse_contract_value
            .checked_mul(pow10(k)?)
    }

    /// The tier whose floor is the highest one at or below `notional`.
    pub fn tier(&self, notional: i128) -> usize {
        self.brackets
            .iter()
            .rposition(|b| b.floor <= notional)
            .unwrap_or(0)
    }

    /// Leverage allowed in tier `tier`.
    pub fn leverage(&self, tier: usize) -> u32 {
        let tier_max = self.brackets.get(tier).map_or(1, |b| b.max_leverage);
        self.max_leverage.min(tier_max).max(1)
    }

    /// Exact maintenance margin of `notional` in tier `tier`, at settle
    /// scale + `RATE_SCALE`.
    pub fn maintenance_exact(&self, notional: i128, tier: usize) -> Option<i128> {
        let bracket = self.brackets.get(tier)?;
        notional.checked_mul(bracket.mmr)?.checked_sub(bracket.cum)
    }

    /// The risk numbers of `position` at `price`.
    pub fn risk(&self, position: Position, price: i128) -> Option<PositionRisk> {
        let value = self.value(position.size, price)?;
        let notional = value.checked_abs()?;
        let upnl = value.checked_sub(position.cost)?;
        let tier = self.tier(notional);
        let leverage = self.leverage(tier);
        let initial_margin = mul_div(notional, 1, i128::from(leverage), Round::Ceil)?;
        let maintenance_exact = self.maintenance_exact(notional, tier)?;
        let maintenance = mul_div(maintenance_exact, 1, RATE_ONE, Round::Ceil)?;
        Some(PositionRisk {
            value,
            notional,
            upnl,
            tier,
            leverage,
            initial_margin,
            maintenance_exact,
            maintenance,
        })
    }

    /// The liquidation fee of a position of `notional`: `notional * rate`,
    /// rounded up to a settle minor unit.
    pub fn liquidation_fee(&self, notional: i128) -> Option<i128> {
        mul_div(notional, self.liquidation_fee_rate, RATE_ONE, Round::Ceil)
    }

    /// The current mark price, if any.
    pub fn mark_price(&self) -> Option<i128> {
        self.state.mark.map(|m| m.price)
    }
}

/// What a trade did to a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Traded {
    pub after: Position,
    /// Realized PnL, settle minor units.
    pub realized: i128,
    /// True if the trade opened, grew or flipped the position (risk-increasing).
    pub increased: bool,
}

/// Applies a trade of `delta` (signed size: + buy, - sell) for `value`
/// (signed like `delta`: `delta * price` for a fill, in settle minor units)
/// to `position`. Increase: the cost grows by `value`. Reduce: the cost
/// removed is `cost * |delta| / |size|` (half to even; all of it when
/// closing), and realized PnL is `-value - removed`. Flip: close at the
/// matching share of `value` (half to even; exact for fills), open the rest.
/// `None` on overflow.
pub(crate) fn trade(position: Position, delta: i128, value: i128) -> Option<Traded> {
    let Position { size, cost } = position;
    if delta == 0 {
        return Some(Traded {
            after: position,
            realized: 0,
            increased: false,
        });
    }
    if size == 0 || (size > 0) == (delta > 0) {
        return Some(Traded {
            after: Position {
                size: size.checked_add(delta)?,
                cost: cost.checked_add(value)?,
            },
            realized: 0,
            increased: true,
        });
    }
    let (closing, open) = (delta.checked_abs()?, size.checked_abs()?);
    if closing <= open {
        let removed = if closing == open {
            cost
        } else {
            mul_div(cost, closing, open, Round::HalfEven)?
        };
        let after_size = size.checked_add(delta)?;
        let after = Position {
            size: after_size,
            cost: if after_size == 0 {
                0
            } else {
                cost.checked_sub(removed)?
            },
        };
        return Some(Traded {
            after,
            realized: value.checked_neg()?.checked_sub(removed)?,
            increased: false,
        });
    }
    let close_value = mul_div(value, open, closing, Round::HalfEven)?;
    Some(Traded {
        after: Position {
            size: size.checked_add(delta)?,
            cost: value.checked_sub(close_value)?,
        },
        realized: close_value.checked_neg()?.checked_sub(cost)?,
        increased: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(size: i128, cost: i128) -> Position {
        Position { size, cost }
    }

    #[test]
    fn trade_open_increase_reduce_flip() {
        // Buy 2 at 100: long 2, cost 200.
        let t = trade(p(0, 0), 2, 200).unwrap();
        assert_eq!((t.after, t.realized, t.increased), (p(2, 200), 0, true));
        // Buy 1 at 103: long 3, cost 303 (entry 101).
        let t = trade(t.after, 1, 103).unwrap();
        assert_eq!(t.after, p(3, 303));
        // Sell 1 at 110: removes 101 of cost, realizes 9.
        let t = trade(t.after, -1, -110).unwrap();
        assert_eq!((t.after, t.realized, t.increased), (p(2, 202), 9, false));
        // Sell 3 at 90: closes 2 (cost 202, proceeds 180: -22), opens short 1 at 90.
        let t = trade(t.after, -3, -270).unwrap();
        assert_eq!((t.after, t.realized, t.increased), (p(-1, -90), -22, true));
        // Buy 1 at 80: short closes with +10.
        let t = trade(t.after, 1, 80).unwrap();
        assert_eq!((t.after, t.realized), (p(0, 0), 10));
    }

    #[test]
    fn partial_reduce_rounds_cost_half_even() {
        // Long 3 with cost 100 (entry 33.33..): selling 1 removes 33 (33.33 rounds down).
        let t = trade(p(3, 100), -1, -40).unwrap();
        assert_eq!((t.after, t.realized), (p(2, 67), 7));
        // Short 3, cost -100: buying 1 removes -33.
        let t = trade(p(-3, -100), 1, 30).unwrap();
        assert_eq!((t.after, t.realized), (p(-2, -67), 3));
    }

    #[test]
    fn brackets_cumulative_amounts() {
        // Floors 0 / 50,000 / 250,000 with mmr 0.4% / 0.5% / 1%:
        // cum1 = 50,000 * 0.001 = 50, cum2 = 250,000 * 0.005 + 50 = 1,300.
        let b = with_cum(&[
            (0, 400_000, 50),
            (50_000, 500_000, 25),
            (250_000, 1_000_000, 10),
        ])
        .unwrap();
        assert_eq!(
            b.iter().map(|b| b.cum / RATE_ONE).collect::<Vec<_>>(),
            [0, 50, 1_300]
        );
    }
}
