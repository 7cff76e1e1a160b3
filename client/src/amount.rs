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

/// Most significant integer digits an amount can have: the engine keeps
/// |value| ≤ 10^28 minor units, so no amount of any asset needs more.
pub const MAX_INTEGER_DIGITS: usize = 28;

/// Reasons [`check_amount`] refuses a string with; the first two are the
/// server's codes for the same mistakes.
pub mod reasons {
    /// More integer digits than any amount can have.
    pub const AMOUNT_TOO_LARGE: &str = "AMOUNT_TOO_LARGE";
    /// More decimal places than any asset allows, or than can be held exactly.
    pub const BAD_PRECISION: &str = "BAD_PRECISION";
    /// Not a plain decimal number at all.
    pub const MALFORMED_DECIMAL: &str = "MALFORMED_DECIMAL";
    /// Zero where only a positive amount makes sense (the server says
    /// `INVALID_AMOUNT`).
    pub const INVALID_AMOUNT: &str = "INVALID_AMOUNT";
}

/// Why an amount string was refused before sending: a machine-readable
/// reason (one of [`reasons`]) and a one-line explanation. Displays as
/// `REASON: explanation`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct AmountError {
    /// One of [`reasons`].
    pub reason: &'static str,
    /// What is wrong, naming the value.
    pub message: String,
}

/// Validates a plain decimal string: digits with at most one `.` and digits
/// on both sides of it, no sign, no exponent, no blanks, at most
/// [`MAX_SCALE`] decimal places and [`MAX_INTEGER_DIGITS`] significant
/// integer digits, representable exactly. Text that is not such a number is
/// `MALFORMED_DECIMAL`; a number with too many integer digits is
/// `AMOUNT_TOO_LARGE`, one with too many decimals `BAD_PRECISION`.
///
/// ```
/// use tally_client::amount::{check_amount, reasons, Sign};
/// assert!(check_amount("0.00000001", Sign::Positive).is_ok());
/// let too_large = "1".repeat(30);
/// assert_eq!(check_amount(&too_large, Sign::Positive).unwrap_err().reason, reasons::AMOUNT_TOO_LARGE);
/// assert_eq!(check_amount("0.0000000000000000001", Sign::Positive).unwrap_err().reason, reasons::BAD_PRECISION);
/// assert_eq!(check_amount("1e3", Sign::Positive).unwrap_err().reason, reasons::MALFORMED_DECIMAL);
/// ```
pub fn check_amount(s: &str, sign: Sign) -> Result<(), AmountError> {
    let err = |reason: &'static str, message: String| AmountError { reason, message };
    let shown: String = s.chars().take(80).collect();
    if s.is_empty() {
        return Err(err(reasons::MALFORMED_DECIMAL, "empty amount".to_string()));
    }
    let (int_part, frac_part) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int_part) || frac_part.is_some_and(|f| !digits(f)) {
        let what = if s.len() > MAX_AMOUNT_BYTES {
            format!("an amount of {} characters", s.len())
        } else {
            format!("{shown:?}")
        };
        return Err(err(
            reasons::MALFORMED_DECIMAL,
            format!(
                "{what} is not a plain decimal number (expected digits like 12 or 0.5; no sign, exponent or separators)"
            ),
        ));
    }
    let places = frac_part.map_or(0, str::len);
    let integer_digits = int_part.trim_start_matches('0').len();
    if integer_digits > MAX_INTEGER_DIGITS {
        return Err(err(
            reasons::AMOUNT_TOO_LARGE,
            format!(
                "{shown:?} has {integer_digits} integer digits; no amount has more than {MAX_INTEGER_DIGITS}"
            ),
        ));
    }
    if places > MAX_SCALE as usize {
        return Err(err(
            reasons::BAD_PRECISION,
            format!("{shown:?} has {places} decimal places; no asset allows more than {MAX_SCALE}"),
        ));
    }
    if s.len() > MAX_AMOUNT_BYTES {
        // Short enough in digits, so padded with leading zeros.
        return Err(err(
            reasons::AMOUNT_TOO_LARGE,
            format!(
                "{shown:?} has {} integer digits (with leading zeros); at most {MAX_AMOUNT_BYTES} characters are accepted",
                int_part.len()
            ),
        ));
    }
    // At most 28 integer digits always fit, so a parse that fails or rounds
    // had too many decimals for the value's size.
    let exact = Decimal::from_str(s)
        .ok()
        .filter(|v| v.scale() as usize == places);
    let Some(value) = exact else {
        return Err(err(
            reasons::BAD_PRECISION,
            format!(
                "{shown:?} has more digits than can be held exactly ({places} decimal places at this size)"
            ),
        ));
    };
    if sign == Sign::Positive && value.is_zero() {
        return Err(err(
            reasons::INVALID_AMOUNT,
            "amount must be greater than zero".to_string(),
        ));
    }
    Ok(())
}

/// [`check_amount`] for command-line parsers: returns the string unchanged
/// (the server sees exactly what the user typed), or the error as
/// `REASON: explanation`.
///
/// ```
/// use tally_client::amount::{validate_amount, Sign};
/// assert_eq!(validate_amount("0.00000001", Sign::Positive).unwrap(), "0.00000001");
/// assert!(validate_amount("1e3", Sign::Positive).is_err());
/// assert!(validate_amount("0", Sign::Positive).is_err());
/// assert!(validate_amount("0", Sign::NonNegative).is_ok());
/// ```
pub fn validate_amount(s: &str, sign: Sign) -> Result<String, String> {
    check_amount(s, sign)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
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
    fn too_many_digits_is_too_large_or_bad_precision_not_malformed() {
        let reason = |s: &str| check_amount(s, Sign::NonNegative).map_err(|e| e.reason);
        let long_int = "9".repeat(32);
        let huge_int = "1".repeat(70);
        let padded = format!("{}1", "0".repeat(70));
        let long_frac = format!("0.{}1", "0".repeat(18));
        let huge_frac = format!("1.{}", "5".repeat(70));
        let max_int = "9".repeat(28);
        for (s, want) in [
            (long_int.as_str(), reasons::AMOUNT_TOO_LARGE),
            (huge_int.as_str(), reasons::AMOUNT_TOO_LARGE),
            (padded.as_str(), reasons::AMOUNT_TOO_LARGE),
            (long_frac.as_str(), reasons::BAD_PRECISION),
            (huge_frac.as_str(), reasons::BAD_PRECISION),
            ("12345678901234567890.12345678901", reasons::BAD_PRECISION),
            ("1.2.3", reasons::MALFORMED_DECIMAL),
            ("1e3", reasons::MALFORMED_DECIMAL),
            ("-1", reasons::MALFORMED_DECIMAL),
            ("", reasons::MALFORMED_DECIMAL),
        ] {
            assert_eq!(reason(s), Err(want), "{s:?}");
        }
        assert_eq!(
            reason(&format!("{huge_int}x")),
            Err(reasons::MALFORMED_DECIMAL)
        );
        assert_eq!(reason(&max_int), Ok(()));
        let message = validate_amount(&long_int, Sign::Positive);
        assert!(
            message
                .as_ref()
                .is_err_and(|m| m.starts_with("AMOUNT_TOO_LARGE: ") && !m.contains('\n')),
            "{message:?}"
        );
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
        assert!(
            validate_amount("0", Sign::Positive).is_err_and(|e| e.starts_with("INVALID_AMOUNT: "))
        );
        assert!(validate_amount("0", Sign::Positive).is_err());
        assert!(validate_amount("0.00", Sign::Positive).is_err());
    }
}
