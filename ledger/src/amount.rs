//! Exact conversion between command amounts (`Decimal`) and the engine's
//! internal minor units (`i128`, `amount * 10^scale`), and the exact
//! `base * price` product of a fill. No floats, no rounding: an amount that
//! does not fit its asset's scale is an error, never rounded.

use rust_decimal::Decimal;

use crate::command::{MAX_ASSET_SCALE, MAX_UNITS};

/// `POW10[k] == 10^k` for every `k` whose power fits an `i128` (0..=38).
const POW10: [i128; 39] = {
    let mut table = [1i128; 39];
    let mut k = 1;
    while k < table.len() {
        table[k] = table[k - 1] * 10;
        k += 1;
    }
    table
};

// Every scale an amount is converted at has its power in the table.
const _: () = assert!((MAX_ASSET_SCALE as usize) < POW10.len());
// `to_decimal`'s fast path covers every value the engine produces: a few
// merged deltas of at most MAX_UNITS each stay below 2^96.
const _: () = assert!(MAX_UNITS * 6 < 1i128 << 96);

/// Why an amount cannot be expressed in minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AmountError {
    /// More decimal places than the scale allows (or, for a fill, a quote
    /// that is not a whole number of quote minor units).
    TooPrecise,
    /// Magnitude above `MAX_UNITS` minor units.
    TooLarge,
}

/// Converts `amount` to minor units at `scale`, exactly. Any sign; the caller
/// checks the sign it requires. Trailing zeros are fine ("1.50" at scale 2).
///
/// No normalization: with `amount = m / 10^s`, the units are
/// `m * 10^(scale - s)` when `s <= scale`, else `m / 10^(s - scale)`, which
/// must divide exactly (the dropped digits are trailing zeros) or the
/// amount is too precise. Same results as normalizing first, without its
/// divisions.
pub(crate) fn to_units(amount: Decimal, scale: u32) -> Result<i128, AmountError> {
    assert!(scale <= MAX_ASSET_SCALE, "invariant broken: scale {scale}");
    let (mantissa, own_scale) = (amount.mantissa(), amount.scale());
    let units = if own_scale <= scale {
        let factor = POW10
            .get((scale - own_scale) as usize)
            .copied()
            .ok_or(AmountError::TooLarge)?;
        mantissa.checked_mul(factor).ok_or(AmountError::TooLarge)?
    } else {
        // own_scale <= 28: the divisor is in the table.
        let divisor = POW10
            .get((own_scale - scale) as usize)
            .copied()
            .ok_or(AmountError::TooPrecise)?;
        if mantissa % divisor != 0 {
            return Err(AmountError::TooPrecise);
        }
        mantissa / divisor
    };
    if !in_range(units) {
        return Err(AmountError::TooLarge);
    }
    Ok(units)
}

/// Minor units back to a `Decimal` carrying the asset's scale (`1.50000000`).
/// Every value the engine produces is within `±MAX_UNITS * 6` (a few merged
/// deltas at most), far inside `Decimal`'s 96-bit mantissa, so the fallback
/// is unreachable; it exists only so that no input can ever panic here.
pub(crate) fn to_decimal(units: i128, scale: u32) -> Decimal {
    // Fast path: a mantissa below 2^96 at a legal scale is the parts as they
    // are (what `try_from_i128_with_scale` builds, without its checks).
    let magnitude = units.unsigned_abs();
    if magnitude >> 96 == 0 && scale <= 28 {
        return Decimal::from_parts(
            magnitude as u32,
            (magnitude >> 32) as u32,
            (magnitude >> 64) as u32,
            units < 0,
            scale,
        );
    }
    // Unreachable (see the const assert above): a value the engine made
    // that is not a `Decimal` is a broken invariant, never shown as zero.
    match Decimal::try_from_i128_with_scale(units, scale) {
        Ok(value) => value,
        Err(_) => panic!("invariant broken: units {units} at scale {scale} not representable"),
    }
}

/// Like [`to_decimal`], for derived aggregates (equity, margins, exposure
/// sums) that are not bounded by `MAX_UNITS`: saturates at `Decimal::MAX` /
/// `Decimal::MIN` instead of asserting. Only absurd magnitudes get there.
pub(crate) fn to_decimal_saturating(units: i128, scale: u32) -> Decimal {
    match Decimal::try_from_i128_with_scale(units, scale) {
        Ok(value) => value,
        Err(_) if units < 0 => Decimal::MIN,
        Err(_) => Decimal::MAX,
    }
}

/// `units` at `scale` for messages: the decimal when representable,
/// otherwise `<units>e-<scale>` (only corrupt restored records get there).
pub(crate) fn display(units: i128, scale: u32) -> String {
    match Decimal::try_from_i128_with_scale(units, scale) {
        Ok(value) => value.to_string(),
        Err(_) => format!("{units}e-{scale}"),
    }
}

/// `value > 0`, read from the sign and mantissa (no rescaling compare).
pub(crate) fn is_positive(value: Decimal) -> bool {
    !value.is_zero() && !value.is_sign_negative()
}

/// `value < 0` (a negative zero is zero).
pub(crate) fn is_negative(value: Decimal) -> bool {
    !value.is_zero() && value.is_sign_negative()
}

/// True if `units` is a legal amount or balance magnitude.
pub(crate) fn in_range(units: i128) -> bool {
    (-MAX_UNITS..=MAX_UNITS).contains(&units)
}

/// The quote side of a fill in quote minor units: `base * price`, where
/// `base_units` is at `base_scale`, exactly representable at `quote_scale`.
///
/// `base_units` and `price` must be positive (checked by the caller).
/// With the price `p / 10^ps` (as written: trailing zeros change nothing,
/// the product is the same), the quote in quote units is `base_units * p *
/// 10^(quote_scale - base_scale - ps)`; a negative exponent must divide the
/// product exactly, else `TooPrecise`. When the exponent is not negative
/// every intermediate product is at most the result, so overflow means
/// the result is too large whatever the representation of the price.
pub(crate) fn quote_units(
    base_units: i128,
    base_scale: u32,
    price: Decimal,
    quote_scale: u32,
) -> Result<i128, AmountError> {
    assert!(
        base_units > 0 && is_positive(price),
        "invariant broken: quote of {base_units} units at {price}"
    );
    let (Ok(base), Ok(mantissa)) = (u128::try_from(base_units), u128::try_from(price.mantissa()))
    else {
        return Err(AmountError::TooPrecise);
    };
    let up = i64::from(quote_scale);
    let down = i64::from(base_scale) + i64::from(price.scale());
    let quote = if up >= down {
        let factor = POW10
            .get((up - down) as usize)
            .copied()
            .ok_or(AmountError::TooLarge)?;
        base.checked_mul(mantissa)
            .and_then(|product| product.checked_mul(factor as u128))
            .ok_or(AmountError::TooLarge)?
    } else {
        exact_divide_by_pow10(base, mantissa, (down - up) as u32)?
    };
    match i128::try_from(quote) {
        Ok(units) if in_range(units) => Ok(units),
        _ => Err(AmountError::TooLarge),
    }
}

/// `a * b / 10^k` if that is a whole number, else `TooPrecise`; `TooLarge`
/// if the result overflows `u128`. Exact even when `a * b` overflows.
fn exact_divide_by_pow10(a: u128, b: u128, k: u32) -> Result<u128, AmountError> {
    // Fast path: the product fits and the divisor is one table entry.
    if let (Some(product), Some(&divisor)) = (a.checked_mul(b), POW10.get(k as usize)) {
        let divisor = divisor as u128;
        if product % divisor != 0 {
            return Err(AmountError::TooPrecise);
        }
        return Ok(product / divisor);
    }
    // Slow path: cancel 10^k chunk by chunk. With g = gcd(a, d), a*b/d is
    // whole iff (d/g) divides b, because gcd(a/g, d/g) == 1.
    let (mut a, mut b, mut k) = (a, b, k);
    while k > 0 {
        let chunk = k.min(38);
        let divisor = POW10[chunk as usize] as u128;
        let g = gcd(a, divisor);
        a /= g;
        let rest = divisor / g;
        if b % rest != 0 {
            return Err(AmountError::TooPrecise);
        }
        b /= rest;
        k -= chunk;
    }
    a.checked_mul(b).ok_or(AmountError::TooLarge)
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `units` at `scale` without trailing zeros: how rejection details and
/// account-model events show computed amounts (`20`, not `20.000000`).
pub(crate) fn shown_decimal(units: i128, scale: u32) -> Decimal {
    to_decimal(units, scale).normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("test decimal")
    }

    #[test]
    fn to_units_accepts_trailing_zeros_and_rejects_extra_digits() {
        assert_eq!(to_units(d("1.50"), 2), Ok(150));
        assert_eq!(to_units(d("1.5000000000"), 2), Ok(150));
        assert_eq!(to_units(d("0.00000001"), 8), Ok(1));
        assert_eq!(to_units(d("0.000000001"), 8), Err(AmountError::TooPrecise));
        assert_eq!(to_units(d("-2"), 0), Ok(-2));
        assert_eq!(to_units(d("0"), 18), Ok(0));
    }

    #[test]
    fn to_units_matches_normalizing_first() {
        let mut amounts = vec![
            d("0"),
            d("-0.00"),
            d("1.50"),
            d("0.000000010"),
            d("123456789.123456789"),
            Decimal::MAX,
            Decimal::MIN,
            Decimal::new(1, 28),
            Decimal::from_i128_with_scale(MAX_UNITS * 7, 20),
            Decimal::from_i128_with_scale(MAX_UNITS * 7 + 1, 19),
            Decimal::from_i128_with_scale(MAX_UNITS, 0),
        ];
        for scale in 0..=28 {
            amounts.push(Decimal::from_i128_with_scale(5_000_000_000, scale));
            amounts.push(Decimal::from_i128_with_scale(-123_000, scale));
        }
        for amount in amounts {
            for scale in 0..=MAX_ASSET_SCALE {
                let normalized = amount.normalize();
                let expected = match scale.checked_sub(normalized.scale()) {
                    None => Err(AmountError::TooPrecise),
                    Some(shift) => normalized
                        .mantissa()
                        .checked_mul(POW10[shift as usize])
                        .filter(|u| in_range(*u))
                        .ok_or(AmountError::TooLarge),
                };
                assert_eq!(to_units(amount, scale), expected, "{amount} at {scale}");
            }
        }
    }

    #[test]
    fn to_decimal_keeps_the_scale_and_matches_the_checked_constructor() {
        for units in [
            0i128,
            1,
            -1,
            150,
            -150,
            MAX_UNITS,
            -MAX_UNITS,
            (1 << 96) - 1,
        ] {
            for scale in [0, 2, 8, 18, 28] {
                let expected = Decimal::try_from_i128_with_scale(units, scale).expect("fits");
                let got = to_decimal(units, scale);
                assert_eq!(got, expected);
                assert_eq!(got.to_string(), expected.to_string());
                assert_eq!(got.is_sign_negative(), expected.is_sign_negative());
            }
        }
        assert_eq!(to_decimal(150, 2).to_string(), "1.50");
    }

    #[test]
    fn quote_units_ignores_trailing_zeros_of_the_price() {
        for (price, normalized) in [("29900.000", "29900"), ("0.50", "0.5"), ("2.0", "2")] {
            for (base, base_scale, quote_scale) in [(20_000_000, 8, 6), (3, 0, 2), (1, 8, 6)] {
                assert_eq!(
                    quote_units(base, base_scale, d(price), quote_scale),
                    quote_units(base, base_scale, d(normalized), quote_scale),
                    "{base} at {price}"
                );
            }
        }
    }

    #[test]
    fn sign_tests_match_comparisons_with_zero() {
        let zero = Decimal::ZERO;
        for value in [
            d("0"),
            d("-0"),
            d("-0.000"),
            d("0.01"),
            d("-0.01"),
            Decimal::MAX,
            Decimal::MIN,
            Decimal::from_parts(0, 0, 0, true, 5),
        ] {
            assert_eq!(is_positive(value), value > zero, "{value:?}");
            assert_eq!(is_negative(value), value < zero, "{value:?}");
        }
    }

    #[test]
    fn to_units_bounds_magnitude_by_max_units() {
        let max = Decimal::from_i128_with_scale(MAX_UNITS, 8);
        assert_eq!(to_units(max, 8), Ok(MAX_UNITS));
        let over = Decimal::from_i128_with_scale(MAX_UNITS + 1, 8);
        assert_eq!(to_units(over, 8), Err(AmountError::TooLarge));
        // 7.9e28 at scale 18 overflows i128 in the multiplication itself.
        assert_eq!(to_units(Decimal::MAX, 18), Err(AmountError::TooLarge));
    }

    #[test]
    fn quote_units_is_exact_at_the_quote_scale() {
        // 0.2 BTC (8) at 29,900 USDT (6) = 5,980 USDT.
        assert_eq!(quote_units(20_000_000, 8, d("29900"), 6), Ok(5_980_000_000));
        // 0.00000001 BTC at 0.5 = 0.000000005: not a whole USDT minor unit.
        assert_eq!(quote_units(1, 8, d("0.5"), 6), Err(AmountError::TooPrecise));
        // 3 units (scale 0) at 0.25 = 0.75 at scale 2.
        assert_eq!(quote_units(3, 0, d("0.25"), 2), Ok(75));
        // 2 * 0.5 = 1 with both factors contributing the 10.
        assert_eq!(quote_units(2, 0, d("0.5"), 0), Ok(1));
        assert_eq!(
            quote_units(MAX_UNITS, 0, d("2"), 0),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn quote_units_slow_path_matches_exact_arithmetic() {
        // base 10^28 units at scale 18 times a 28-digit price: the product
        // overflows u128, the exact result does not.
        let price = Decimal::from_i128_with_scale(1_234_567_890_123_456_789_012_345_678, 27);
        // 10^10 coins * 1.234... = 12345678901.23456789012345678, at scale 6 not exact.
        assert_eq!(
            quote_units(MAX_UNITS, 18, price, 6),
            Err(AmountError::TooPrecise)
        );
        // Price 2^-20 = 0.00000095367431640625 (scale 20); base 2^20 * 10^18
        // units at scale 18 (2^20 coins) gives exactly 1 coin.
        let price = d("0.00000095367431640625");
        let base = (1i128 << 20) * 10i128.pow(18);
        assert_eq!(quote_units(base, 18, price, 0), Ok(1));
        assert_eq!(
            exact_divide_by_pow10(u128::MAX / 3, 10, 1),
            Ok(u128::MAX / 3)
        );
        assert_eq!(
            exact_divide_by_pow10(10u128.pow(30), 10u128.pow(20), 45),
            Ok(100_000)
        );
        assert_eq!(
            exact_divide_by_pow10(10u128.pow(30), 10u128.pow(20), 51),
            Err(AmountError::TooPrecise)
        );
    }
}
