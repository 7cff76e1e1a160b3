//! Decimal amount strings: the syntax the client accepts before sending.
//!
//! Amounts and prices travel as decimal strings (`"12.5"`). The server is the
//! authority on an asset's scale (it rejects an amount with more decimal
//! places than the asset allows with `BAD_PRECISION`, never rounding); this
//! module only rejects what can never be valid, so mistakes surface before a
//! command id is spent.

use std::str::FromStr;

use rust_decimal::Decimal;

/// Most decimal places any asset can have (the server's `MAX_ASSET_SCALE`).
pub const MAX_SCALE: u32 = 18;

/// Longest amount string accepted, in bytes.
const MAX_AMOUNT_BYTES: usize = 64;

/// Whether zero is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// Greater than zero (amounts, prices).
    Positive,
    /// Zero or more (fees).
    NonNegative,
}

/// Validates a plain decimal string: digits with at most one `.` and digits
/// on both sides of it, no sign, no exponent, no blanks, at most
/// [`MAX_SCALE`] decimal places, representable exactly. Returns the string
/// unchanged (the server sees exactly what the user typed).
///
/// ```
/// use tally_client::amount::{validate_amount, Sign};
/// assert_eq!(validate_amount("0.00000001", Sign::Positive).unwrap(), "0.00000001");
/// assert!(validate_amount("1e3", Sign::Positive).is_err());
/// assert!(validate_amount("0", Sign::Positive).is_err());
/// assert!(validate_amount("0", Sign::NonNegative).is_ok());
/// ```
pub fn validate_amount(s: &str, sign: Sign) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty amount".to_string());
    }
    if s.len() > MAX_AMOUNT_BYTES {
        return Err(format!("amount longer than {MAX_AMOUNT_BYTES} characters"));
    }
    let (int_part, frac_part) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int_part) || frac_part.is_some_and(|f| !digits(f)) {
        return Err(format!(
            "{s:?} is not a plain decimal number (expected digits like 12 or 0.5; no sign, exponent or separators)"
        ));
    }
    let places = frac_part.map_or(0, str::len);
    if places > MAX_SCALE as usize {
        return Err(format!(
            "{s:?} has {places} decimal places; no asset allows more than {MAX_SCALE}"
        ));
    }
    let value = Decimal::from_str(s).map_err(|_| format!("{s:?} is too large"))?;
    if value.scale() as usize != places {
        return Err(format!("{s:?} cannot be represented exactly"));
    }
    if sign == Sign::Positive && value.is_zero() {
        return Err("amount must be greater than zero".to_string());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_decimals() {
        for s in [
            "1",
            "0.5",
            "12.50",
            "100000000",
            "0.000000000000000001",
            "007",
        ] {
            assert_eq!(validate_amount(s, Sign::Positive).as_deref(), Ok(s), "{s}");
        }
        assert!(validate_amount("0", Sign::NonNegative).is_ok());
        assert!(validate_amount("0.000", Sign::NonNegative).is_ok());
    }

    #[test]
    fn rejects_everything_else() {
        for s in [
            "",
            "-1",
            "+1",
            ".5",
            "5.",
            "1.2.3",
            "1e3",
            "1,5",
            " 1",
            "1 ",
            "NaN",
            "inf",
            "0x10",
            "1_000",
            "0.0000000000000000001",
            "99999999999999999999999999999999",
        ] {
            assert!(validate_amount(s, Sign::NonNegative).is_err(), "{s:?}");
        }
        assert!(validate_amount("0", Sign::Positive).is_err());
        assert!(validate_amount("0.00", Sign::Positive).is_err());
    }
}
