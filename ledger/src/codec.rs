//! Low-level, hand-written binary encoding of the persisted state, shared by
//! records and the state hash: big-endian integers, length-prefixed strings,
//! canonical decimals as (mantissa, scale) and reject code tags (rejections
//! themselves, remembered by the dedup table, are encoded by `reject`). The
//! formats are documented in the `records` module; the command encoding (log
//! payload and fingerprint input) is the `wire` module.
//!
//! Hand-written rather than serde so that the persisted format and the
//! fingerprints never change with a library upgrade.

use rust_decimal::Decimal;

use crate::command::{Owner, RejectCode};

/// Something bytes can be written to: a buffer, or a hasher.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn put_u8(&mut self, value: u8) {
        self.put(&[value]);
    }
    fn put_u32(&mut self, value: u32) {
        self.put(&value.to_be_bytes());
    }
    fn put_u64(&mut self, value: u64) {
        self.put(&value.to_be_bytes());
    }
    fn put_i128(&mut self, value: i128) {
        self.put(&value.to_be_bytes());
    }
    fn put_str(&mut self, value: &str) {
        // Strings the engine stores are bounded (symbols, ids, detail text).
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.put_u32(len);
        self.put(&value.as_bytes()[..len as usize]);
    }
    fn put_owner(&mut self, owner: Owner) {
        let (kind, id) = owner_parts(owner);
        self.put_u8(kind);
        self.put_u64(id);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for blake3::Hasher {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// (kind byte, account id) of an owner, as used in keys and values.
pub(crate) fn owner_parts(owner: Owner) -> (u8, u64) {
    match owner {
        Owner::Account(id) => (0, id),
        Owner::External => (1, 0),
        Owner::Fees => (2, 0),
        Owner::Insurance => (3, 0),
        Owner::Funding(id) => (4, id),
        Owner::Margin(id) => (5, id),
    }
}

fn owner_from_parts(kind: u8, id: u64) -> Result<Owner, String> {
    match (kind, id) {
        (0, id) => Ok(Owner::Account(id)),
        (1, 0) => Ok(Owner::External),
        (2, 0) => Ok(Owner::Fees),
        (3, 0) => Ok(Owner::Insurance),
        (4, id) => Ok(Owner::Funding(id)),
        (5, id) => Ok(Owner::Margin(id)),
        _ => Err(format!("bad owner kind {kind} with id {id}")),
    }
}

/// Reads the primitive encodings back; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!(
                "truncated: need {n} bytes, have {}",
                self.bytes.len()
            ));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn i128(&mut self) -> Result<i128, String> {
        Ok(i128::from_be_bytes(self.array()?))
    }
    pub fn u128(&mut self) -> Result<u128, String> {
        Ok(u128::from_be_bytes(self.array()?))
    }
    pub fn string(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }
    pub fn owner(&mut self) -> Result<Owner, String> {
        let kind = self.u8()?;
        let id = self.u64()?;
        owner_from_parts(kind, id)
    }
    pub fn bool(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("bad bool {other}")),
        }
    }
    /// The unread rest.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
    pub fn finish(&self) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.bytes.len()))
        }
    }
}

/// The persisted tag of a reject code (see `define_reject_codes!`).
pub(crate) fn reject_code_tag(code: RejectCode) -> u8 {
    code.tag()
}

pub(crate) fn reject_code_from_tag(tag: u8) -> Result<RejectCode, String> {
    RejectCode::from_tag(tag).ok_or_else(|| format!("unknown reject code {tag}"))
}

/// `value` without trailing fractional zeros: (mantissa, scale) with
/// `scale == 0` or `mantissa % 10 != 0`; zero is (0, 0). `1.50` and `1.5`
/// give the same pair. Same result as `Decimal::normalize`, without its
/// 96-bit divisions for the common small mantissas.
pub(crate) fn canonical_decimal(value: Decimal) -> (i128, u32) {
    let (mantissa, mut scale) = (value.mantissa(), value.scale());
    if mantissa == 0 {
        return (0, 0);
    }
    let negative = mantissa < 0;
    let mut magnitude = mantissa.unsigned_abs();
    if let Ok(mut small) = u64::try_from(magnitude) {
        while scale > 0 && small % 10 == 0 {
            small /= 10;
            scale -= 1;
        }
        magnitude = u128::from(small);
    } else {
        while scale > 0 && magnitude % 10 == 0 {
            magnitude /= 10;
            scale -= 1;
        }
    }
    // |mantissa| < 2^96: no overflow either way.
    let magnitude = magnitude as i128;
    (if negative { -magnitude } else { magnitude }, scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn reject_code_tags_round_trip_in_declaration_order() {
        for (i, code) in RejectCode::ALL.iter().enumerate() {
            assert_eq!(reject_code_tag(*code) as usize, i);
            assert_eq!(reject_code_from_tag(i as u8), Ok(*code));
        }
        assert!(reject_code_from_tag(RejectCode::ALL.len() as u8).is_err());
        // Names are distinct.
        let names: std::collections::BTreeSet<_> =
            RejectCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), RejectCode::ALL.len());
    }

    #[test]
    fn canonical_decimal_matches_normalize() {
        let d = |s: &str| Decimal::from_str(s).expect("decimal");
        let mut values = vec![
            d("0"),
            d("-0.000"),
            d("1.50"),
            d("-1.5000000000"),
            d("100"),
            d("100.00"),
            d("0.00000001"),
            Decimal::MAX,
            Decimal::MIN,
            Decimal::from_i128_with_scale(10i128.pow(27), 28),
            Decimal::from_i128_with_scale(-(10i128.pow(28)), 20),
            Decimal::from_i128_with_scale(u64::MAX as i128 * 10, 5),
        ];
        for scale in 0..=28 {
            values.push(Decimal::from_i128_with_scale(1_000_000, scale));
            values.push(Decimal::from_i128_with_scale(
                -7_000_000_000_000_000_000,
                scale,
            ));
        }
        for value in values {
            let normalized = value.normalize();
            assert_eq!(
                canonical_decimal(value),
                (normalized.mantissa(), normalized.scale()),
                "{value}"
            );
        }
    }
}
