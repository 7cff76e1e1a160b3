//! The funding rate of a perpetual computed from premium-index samples
//! (`ApplyPremiumFunding`), so an exchange need not compute it outside:
//! Binance's and Bybit's formula, F = P + clamp(I − P, −c, +c), with P the
//! time-weighted average premium index of the interval (weights 1, 2, ...,
//! n, oldest first: later samples count more, as Binance's "average
//! premium index") and I the interest rate, both stated in the command (the
//! price service samples the premium index; the engine only averages and
//! clamps, exactly), and c the market's clamp, a market parameter set by
//! `SetFundingClamp` (this module owns it; without one the round is
//! refused, `FUNDING_CLAMP_NOT_SET`). P is rounded half to even to
//! `RATE_SCALE` decimals (the precision of every rate), then F is exact.
//! The round itself is `ApplyFunding`'s at F (same checks, same rounding,
//! same residue rule), after a `FundingRate` event.
//!
//! Bound: at most `MAX_PREMIUM_SAMPLES` samples (5,760: every 5 s of an
//! 8-hour interval); more, or none, is refused (`PremiumSampleCount`).

use crate::command::{
    ApplyFunding, ApplyPremiumFunding, Event, MAX_PREMIUM_SAMPLES, RATE_SCALE, SetFundingClamp,
};
use crate::engine::{Ledger, reject};
use crate::events::Events;
use crate::journal::Journal;
use crate::market::RATE_ONE;
use crate::perp::rate_units;
use crate::reject::{Field, RejectDetail, Rejection};
use crate::wide::{Round, mul_div};

fn overflow() -> Rejection {
    reject(RejectDetail::Overflow)
}

/// The time-weighted average (weights 1..=n) of rates in `RATE_SCALE`
/// units, half to even; `None` if empty or on overflow.
pub(crate) fn weighted_average(samples: &[i128]) -> Option<i128> {
    let (mut sum, mut weights) = (0i128, 0i128);
    for (i, sample) in samples.iter().enumerate() {
        let weight = i128::try_from(i).ok()?.checked_add(1)?;
        sum = sum.checked_add(sample.checked_mul(weight)?)?;
        weights = weights.checked_add(weight)?;
    }
    if weights == 0 {
        return None;
    }
    mul_div(sum, 1, weights, Round::HalfEven)
}

/// F = P + clamp(I − P, −c, +c), all in `RATE_SCALE` units (`c ≥ 0`).
pub(crate) fn clamped_rate(premium: i128, interest: i128, clamp: i128) -> Option<i128> {
    premium.checked_add(interest.checked_sub(premium)?.clamp(-clamp, clamp))
}

impl Ledger {
    pub(crate) fn apply_premium_funding(
        &mut self,
        journal: &mut Journal,
        c: &ApplyPremiumFunding,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let m = self.market_idx(&c.market)?;
        self.check_funded(m)?;
        let count = c.premium_samples.len();
        if count == 0 || count > MAX_PREMIUM_SAMPLES {
            return Err(reject(RejectDetail::PremiumSampleCount {
                count: count as u64,
            }));
        }
        let mut samples = Vec::with_capacity(count);
        for sample in &c.premium_samples {
            samples.push(rate_units(*sample, Field::PremiumIndex)?);
        }
        let interest = rate_units(c.interest_rate, Field::InterestRate)?;
        let Some(clamp) = self.markets[m as usize].state.funding_clamp_rate else {
            return Err(reject(RejectDetail::NoFundingClamp {
                market: c.market.clone(),
            }));
        };
        let premium = weighted_average(&samples).ok_or_else(overflow)?;
        let rate = clamped_rate(premium, interest, clamp).ok_or_else(overflow)?;
        let to_decimal = |units: i128| crate::amount::to_decimal_saturating(units, RATE_SCALE);
        let round = ApplyFunding {
            market: c.market.clone(),
            rate: to_decimal(rate),
            funding_time_ms: c.funding_time_ms,
        };
        events.emit(|| Event::FundingRate {
            market: c.market.clone(),
            samples: count as u64,
            premium_index: to_decimal(premium),
            interest_rate: c.interest_rate,
            clamp_rate: to_decimal(clamp),
            rate: to_decimal(rate),
        });
        // Its checks (interval, already funded, mark, rate range) reject
        // the whole command, events included.
        self.apply_funding(journal, &round, events)
    }

    /// `SetFundingClamp`: a perpetual's clamp for premium-index funding.
    pub(crate) fn set_funding_clamp(
        &mut self,
        journal: &mut Journal,
        c: &SetFundingClamp,
    ) -> Result<(), Rejection> {
        let m = self.market_idx(&c.market)?;
        self.check_funded(m)?;
        let clamp = rate_units(c.clamp_rate, Field::ClampRate)?;
        if !(0..RATE_ONE).contains(&clamp) {
            return Err(reject(RejectDetail::ClampRateOutOfRange {
                rate: c.clamp_rate,
            }));
        }
        self.state_mut(journal, m).funding_clamp_rate = Some(clamp);
        // A linear perpetual's first clamp creates its instrument record.
        self.dirty.push(crate::state::DirtyKey::Instrument(m));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_average_weights_later_samples_more_and_rounds_half_even() {
        // (1×10 + 2×20 + 3×30) / 6 = 140 / 6 = 23.33 → 23.
        assert_eq!(weighted_average(&[10, 20, 30]), Some(23));
        // (1×1 + 2×2) / 3 = 5 / 3 = 1.67 → 2; (1 + 2×0) / 3 → 0.
        assert_eq!(weighted_average(&[1, 2]), Some(2));
        assert_eq!(weighted_average(&[1, 0]), Some(0));
        // (1×(-1) + 2×(-1) + 3×0 + 4×1) / 10 = 1/10 → 0.
        assert_eq!(weighted_average(&[-1, -1, 0, 1]), Some(0));
        assert_eq!(weighted_average(&[]), None);
    }

    #[test]
    fn clamped_rate_moves_toward_the_interest_rate_by_at_most_the_clamp() {
        assert_eq!(clamped_rate(100, 10_000, 5_000), Some(5_100));
        assert_eq!(clamped_rate(100, -10_000, 5_000), Some(-4_900));
        assert_eq!(clamped_rate(100, 3_000, 5_000), Some(3_000));
        assert_eq!(clamped_rate(100, 3_000, 0), Some(100));
    }
}
