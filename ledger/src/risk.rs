//! Cross-margin risk of one account in one settle asset: its wallet (the
//! settle asset's `available` in the account's collateral wallet, see the
//! `accounts` module), every position it holds in markets settled
//! in that asset valued at their mark prices, equity, initial and
//! maintenance margin, and each position's liquidation price.
//!
//! - equity = wallet + Σ unrealized PnL, UPNL = size × mark − cost; for a
//!   margin collateral wallet, wallet = available + locked (open-order
//!   margin, the `orders` module) and the locked part is added to the IM;
//! - initial margin = Σ ceil(notional / leverage), leverage =
//!   min(market max, bracket max) for the bracket of the notional;
//! - maintenance margin = Σ ceil(notional × mmr − cum) (each position's exact
//!   amount rounded up to a settle minor unit); an account is liquidated when
//!   equity < maintenance margin;
//! - liquidation price (one-way, cross): `LP = (WB − TMM1 + UPNL1 + cum −
//!   side × size × entry) / (size × mmr − side × size)` with TMM1 / UPNL1 the
//!   other positions' exact maintenance margin and UPNL, recomputed with the
//!   bracket of the notional at LP until the bracket is stable; none if LP ≤ 0.

use crate::command::AccountId;
use crate::engine::Ledger;
use crate::market::{MarketIdx, Position, PositionRisk, RATE_ONE};
use crate::perp::{DERIVED_PRICE_EXTRA_DECIMALS, scaled_ratio};
use crate::state::AssetIdx;

/// One position of a risk group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeldPosition {
    pub market: MarketIdx,
    pub position: Position,
    pub mark: i128,
    pub risk: PositionRisk,
}

/// An account's risk in one settle asset (settle minor units).
#[derive(Clone, Debug)]
pub(crate) struct GroupRisk {
    pub wallet: i128,
    pub upnl: i128,
    pub equity: i128,
    pub initial: i128,
    pub maintenance: i128,
    /// Σ exact maintenance margin, settle units × 10^RATE_SCALE.
    pub maintenance_exact: i128,
    pub positions: Vec<HeldPosition>,
}

impl Ledger {
    /// The risk of `account` in `asset` as the state stands; `None` on
    /// overflow (or a position in a market without a mark price, which
    /// cannot happen: fills need one).
    pub(crate) fn group_risk(&self, account: AccountId, asset: AssetIdx) -> Option<GroupRisk> {
        let wallet = self
            .balance_units(
                self.collateral(crate::command::Owner::Account(account)),
                asset,
            )
            .available;
        self.group_risk_with(account, asset, wallet, None)
    }

    /// The risk with the wallet and (optionally) one position replaced.
    pub(crate) fn group_risk_with(
        &self,
        account: AccountId,
        asset: AssetIdx,
        wallet: i128,
        replace: Option<(MarketIdx, Position)>,
    ) -> Option<GroupRisk> {
        let mut risk = GroupRisk {
            wallet,
            upnl: 0,
            equity: 0,
            initial: 0,
            maintenance: 0,
            maintenance_exact: 0,
            positions: Vec::new(),
        };
        for m in self.settle_markets(asset) {
            let market = &self.markets[m as usize];
            // An isolated position is its own group (the `isolated` module).
            if market.isolated.contains_key(&account) {
                continue;
            }
            let position = match replace {
                Some((rm, p)) if rm == m => p,
                _ => market.positions.get(&account).copied().unwrap_or_default(),
            };
            if position.size == 0 {
                continue;
            }
            let mark = market.mark_price()?;
            let r = self.position_risk(m, position, mark)?;
            risk.upnl = risk.upnl.checked_add(r.upnl)?;
            risk.initial = risk.initial.checked_add(r.initial_margin)?;
            risk.maintenance = risk.maintenance.checked_add(r.maintenance)?;
            risk.maintenance_exact = risk.maintenance_exact.checked_add(r.maintenance_exact)?;
            risk.positions.push(HeldPosition {
                market: m,
                position,
                mark,
                risk: r,
            });
        }
        // Open-order margin locked in a margin collateral wallet is margin
        // balance (equity) and required margin (IM) at once.
        let order_margin = self.order_margin(account, asset);
        risk.wallet = wallet.checked_add(order_margin)?;
        risk.initial = risk.initial.checked_add(order_margin)?;
        risk.equity = risk.wallet.checked_add(risk.upnl)?;
        Some(risk)
    }

    /// The liquidation price of position `i` of `group`, in tick units
    /// scaled by 10^`DERIVED_PRICE_EXTRA_DECIMALS`, half to even; `None` if
    /// the position cannot be liquidated by its own price (LP ≤ 0) or the
    /// numbers do not fit.
    pub(crate) fn liquidation_price(&self, group: &GroupRisk, i: usize) -> Option<i128> {
        let held = group.positions.get(i)?;
        let market = &self.markets[held.market as usize];
        // Options (their margin moves with the underlying) and inverse
        // markets (value is not linear in the price): not computed.
        if market.instrument.option.is_some() || market.instrument.is_inverse() {
            return None;
        }
        let size = held.position.size;
        let side: i128 = if size > 0 { 1 } else { -1 };
        // Other positions' exact maintenance margin and UPNL.
        let tmm1 = group
            .maintenance_exact
            .checked_sub(held.risk.maintenance_exact)?;
        let upnl1 = group.upnl.checked_sub(held.risk.upnl)?;
        // WB + UPNL1 - side*size*entry (= cost), at settle scale.
        let base = group
            .wallet
            .checked_add(upnl1)?
            .checked_sub(held.position.cost)?;
        let out_scale = market.price_scale + DERIVED_PRICE_EXTRA_DECIMALS;
        let mut tier = held.risk.tier;
        let mut price = None;
        for _ in 0..=market.brackets.len() {
            let bracket = market.brackets.get(tier)?;
            // Numerator at settle scale + RATE_SCALE.
            let numerator = base
                .checked_mul(RATE_ONE)?
                .checked_sub(tmm1)?
                .checked_add(bracket.cum)?;
            // Denominator: |size| * (mmr - side), size units * RATE_SCALE.
            let rate = bracket.mmr.checked_sub(side.checked_mul(RATE_ONE)?)?;
            let denominator = size.checked_abs()?.checked_mul(rate)?;
            // price = numerator / denominator * 10^(ss - s), shown at out_scale.
            let k = i64::from(market.size_scale) - i64::from(market.settle_scale)
                + i64::from(out_scale);
            let lp = scaled_ratio(numerator, denominator, k)?;
            if lp <= 0 {
                return None;
            }
            price = Some(lp);
            // Re-tier: the notional at LP, in settle units.
            let notional_at_lp = scaled_ratio(
                size.checked_abs()?.checked_mul(lp)?,
                1,
                i64::from(market.settle_scale)
                    - i64::from(market.size_scale)
                    - i64::from(out_scale),
            )?;
            let lp_tier = market.tier(notional_at_lp);
            if lp_tier == tier {
                break;
            }
            tier = lp_tier;
        }
        price
    }
}
