//! Compact serde form of the `Decimal` fields of replicated commands.
//!
//! Binary formats (bincode: the Raft log and the Raft wire) get the exact
//! `(scale, mantissa)` pair: a varint-sized integer and a byte instead of a
//! formatted string that every follower would parse again. Human-readable
//! formats (JSON) keep the decimal string. Both keep the scale as written
//! ("1.50" stays "1.50"), and decoding rejects a scale above 28 or a
//! mantissa beyond 96 bits instead of building an invalid `Decimal`.

use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.collect_str(value)
    } else {
        (value.scale() as u8, value.mantissa()).serialize(serializer)
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    if deserializer.is_human_readable() {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse::<Decimal>()
            .map_err(|e| D::Error::custom(format!("decimal {text:?}: {e}")))
    } else {
        let (scale, mantissa) = <(u8, i128)>::deserialize(deserializer)?;
        Decimal::try_from_i128_with_scale(mantissa, u32::from(scale))
            .map_err(|e| D::Error::custom(format!("decimal {mantissa}e-{scale}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Wrapper(#[serde(with = "super")] Decimal);

    fn bin_roundtrip(text: &str) -> Decimal {
        let value = Wrapper(Decimal::from_str(text).expect("decimal"));
        let bytes =
            bincode::serde::encode_to_vec(&value, bincode::config::standard()).expect("encode");
        let (back, _): (Wrapper, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).expect("decode");
        back.0
    }

    #[test]
    fn binary_form_keeps_value_sign_and_scale_exactly() {
        for text in [
            "0",
            "1.50",
            "-0.00000001",
            "79228162514264337593543950335",
            "123.456789012345678901234567",
        ] {
            let back = bin_roundtrip(text);
            assert_eq!(
                back.to_string(),
                Decimal::from_str(text).expect("d").to_string(),
                "{text}"
            );
        }
    }

    #[test]
    fn binary_form_rejects_scale_above_28_and_oversized_mantissa() {
        for (scale, mantissa) in [(29u8, 1i128), (0, 1i128 << 96), (0, -(1i128 << 96))] {
            let bytes =
                bincode::serde::encode_to_vec((scale, mantissa), bincode::config::standard())
                    .expect("encode");
            let decoded: Result<(Wrapper, usize), _> =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard());
            assert!(decoded.is_err(), "{scale} {mantissa}");
        }
    }

    #[test]
    fn json_form_is_the_decimal_string() {
        let json =
            serde_json::to_string(&Wrapper(Decimal::from_str("1.50").expect("d"))).expect("json");
        assert_eq!(json, "\"1.50\"");
        let back: Wrapper = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.0.to_string(), "1.50");
    }
}
