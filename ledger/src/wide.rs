//! Exact `a * b / d` on `i128` with a 256-bit intermediate product and an
//! explicit rounding mode. Every perpetual-futures quantity that needs a
//! division (cost removed on a partial reduce, funding, margin, liquidation
//! fees, displayed prices and ratios) goes through [`mul_div`], so rounding
//! happens exactly once, in the direction the caller names, and no
//! intermediate product can overflow. `None` means the result does not fit
//! an `i128` (or `d == 0`); callers turn that into a rejection.

/// How to round a quotient that is not a whole number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Round {
    /// Toward zero (truncate).
    Down,
    /// Away from zero.
    Up,
    /// Toward negative infinity.
    Floor,
    /// Toward positive infinity.
    Ceil,
    /// To the nearest; ties to the even neighbour.
    HalfEven,
}

/// `10^k` for `k <= 38`.
pub(crate) fn pow10(k: u32) -> Option<i128> {
    10i128.checked_pow(k)
}

/// The full 256-bit product of two `u128`, as (high, low) halves.
fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a_hi, a_lo) = (a >> 64, a & MASK);
    let (b_hi, b_lo) = (b >> 64, b & MASK);
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    // Middle column: three terms below 2^64 each, so the sum fits a u128.
    let mid = (lo_lo >> 64) + (hi_lo & MASK) + (lo_hi & MASK);
    let low = (mid << 64) | (lo_lo & MASK);
    let high = hi_hi + (hi_lo >> 64) + (lo_hi >> 64) + (mid >> 64);
    (high, low)
}

/// (quotient, remainder) of the 256-bit `(high, low)` by `d`, or `None` if
/// `d == 0` or the quotient does not fit a `u128`.
fn div_wide(high: u128, low: u128, d: u128) -> Option<(u128, u128)> {
    if d == 0 {
        return None;
    }
    if high == 0 {
        return Some((low / d, low % d));
    }
    if high >= d {
        return None;
    }
    // Restoring long division, one bit of `low` at a time; `rem < d` holds
    // before every step, so `2 * rem + bit < 2 * d` and one subtraction
    // suffices (the carry marks a value at or above 2^128, hence above d).
    let mut rem = high;
    let mut quotient: u128 = 0;
    for bit in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((low >> bit) & 1);
        quotient <<= 1;
        if carry == 1 || rem >= d {
            rem = rem.wrapping_sub(d);
            quotient |= 1;
        }
    }
    Some((quotient, rem))
}

/// `a * b / d`, rounded as `round` says. `None` if `d == 0` or the result
/// does not fit an `i128`.
pub(crate) fn mul_div(a: i128, b: i128, d: i128, round: Round) -> Option<i128> {
    if d == 0 {
        return None;
    }
    let negative = (a < 0) ^ (b < 0) ^ (d < 0);
    let (high, low) = mul_wide(a.unsigned_abs(), b.unsigned_abs());
    let divisor = d.unsigned_abs();
    let (quotient, rem) = div_wide(high, low, divisor)?;
    let bump = rem != 0
        && match round {
            Round::Down => false,
            Round::Up => true,
            Round::Floor => negative,
            Round::Ceil => !negative,
            Round::HalfEven => {
                // rem < divisor <= 2^127, so doubling cannot overflow.
                let twice = rem << 1;
                twice > divisor || (twice == divisor && quotient & 1 == 1)
            }
        };
    let magnitude = quotient.checked_add(u128::from(bump))?;
    if negative {
        // -2^127 is representable, 2^127 is not.
        if magnitude == 1u128 << 127 {
            Some(i128::MIN)
        } else {
            i128::try_from(magnitude).ok().map(|m| -m)
        }
    } else {
        i128::try_from(magnitude).ok()
    }
}

/// `a / d` rounded as `round` says.
#[cfg(test)]
pub(crate) fn div(a: i128, d: i128, round: Round) -> Option<i128> {
    mul_div(a, 1, d, round)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rounding_modes() {
        use Round::*;
        let cases = [
            // (a, d, down, up, floor, ceil, half_even)
            (7, 2, 3, 4, 3, 4, 4),
            (5, 2, 2, 3, 2, 3, 2),
            (-7, 2, -3, -4, -4, -3, -4),
            (-5, 2, -2, -3, -3, -2, -2),
            (6, 3, 2, 2, 2, 2, 2),
            (1, 3, 0, 1, 0, 1, 0),
            (2, 3, 0, 1, 0, 1, 1),
            (-2, 3, 0, -1, -1, 0, -1),
        ];
        for (a, d, down, up, floor, ceil, even) in cases {
            assert_eq!(div(a, d, Down), Some(down), "{a}/{d}");
            assert_eq!(div(a, d, Up), Some(up), "{a}/{d}");
            assert_eq!(div(a, d, Floor), Some(floor), "{a}/{d}");
            assert_eq!(div(a, d, Ceil), Some(ceil), "{a}/{d}");
            assert_eq!(div(a, d, HalfEven), Some(even), "{a}/{d}");
            // A negative divisor flips the sign like a negative numerator.
            assert_eq!(div(-a, -d, Floor), Some(floor));
        }
        assert_eq!(div(1, 0, Down), None);
    }

    #[test]
    fn wide_products_are_exact() {
        let big = 10i128.pow(30);
        // 10^30 * 10^30 / 10^25 = 10^35: the product overflows i128, the result does not.
        assert_eq!(
            mul_div(big, big, 10i128.pow(25), Round::Down),
            Some(10i128.pow(35))
        );
        assert_eq!(mul_div(big, big, 1, Round::Down), None);
        assert_eq!(mul_div(i128::MAX, 2, 2, Round::Down), Some(i128::MAX));
        assert_eq!(mul_div(i128::MIN, 1, 1, Round::Down), Some(i128::MIN));
        assert_eq!(mul_div(i128::MIN, -1, 1, Round::Down), None);
        // (2^127 - 1) * 3 / 7, cross-checked by splitting.
        let max = std::hint::black_box(i128::MAX);
        let q = mul_div(max, 3, 7, Round::Down).unwrap_or_default();
        assert_eq!(q, (max / 7) * 3 + (max % 7) * 3 / 7);
    }

    proptest! {
        #[test]
        fn matches_native_arithmetic_when_it_fits(
            a in -(1i128 << 62)..(1i128 << 62),
            b in -(1i128 << 62)..(1i128 << 62),
            d in 1i128..(1i128 << 40),
            negate_d in any::<bool>(),
        ) {
            let d = if negate_d { -d } else { d };
            let product = a * b;
            // Floor toward -inf for either sign of d: n / m with m > 0.
            let exact_floor = {
                let (n, m) = if d < 0 { (-product, -d) } else { (product, d) };
                n.div_euclid(m)
            };
            prop_assert_eq!(mul_div(a, b, d, Round::Floor), Some(exact_floor));
            let exact_ceil = if (a * b) % d == 0 { exact_floor } else { exact_floor + 1 };
            prop_assert_eq!(mul_div(a, b, d, Round::Ceil), Some(exact_ceil));
            let toward_zero = product / d;
            prop_assert_eq!(mul_div(a, b, d, Round::Down), Some(toward_zero));
        }
    }
}
