//! Binary encoding of everything Tally persists or sends between nodes:
//! bincode (standard config) over serde. Every decode is bounded by
//! `MAX_DECODE_BYTES` so a corrupt or hostile length prefix cannot make a
//! node allocate without limit.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest single message or record decoded: 256 MiB.
pub const MAX_DECODE_BYTES: usize = 256 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

/// Encodes a value.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, std::io::Error> {
    bincode::serde::encode_to_vec(value, config())
        .map_err(|e| std::io::Error::other(format!("encode: {e}")))
}

/// Decodes a value; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config()).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("decode: {e}"))
    })?;
    if read != bytes.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("decode: {} trailing bytes", bytes.len() - read),
        ));
    }
    Ok(value)
}

/// Appends the encoding of `value` to `out` (values encoded back to back
/// are read again with [`decode_prefix`]).
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), std::io::Error> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(|e| std::io::Error::other(format!("encode: {e}")))
}

/// Decodes one value from the front of `bytes`; returns it and the bytes it took.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), std::io::Error> {
    bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("decode: {e}")))
}
