//! Binary encoding of everything Tally persists or sends between nodes:
//! bincode (standard config) over serde. Every decode is bounded by
//! `MAX_DECODE_BYTES` so a corrupt or hostile length prefix cannot make a
//! node allocate without limit.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest single message or record decoded: 256 MiB.
pub const MAX_DECODE_BYTES: usize = 256 * 1024 * 1024;

/// Largest snapshot or backup decoded: the largest snapshot a node
/// accepts from a peer (`grpc::raft_service::MAX_SNAPSHOT_BYTES`, 16 GiB).
/// A ledger of a million accounts snapshots to ~230 MB, so the 256 MiB
/// message bound would refuse the snapshots of a slightly larger one. The
/// bytes decoded are already in memory, and serde preallocates at most
/// 1 MiB per claimed length, so the bound only stops a length prefix
/// claiming more than the input could hold.
pub const MAX_SNAPSHOT_DECODE_BYTES: usize = 16 * 1024 * 1024 * 1024;

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
    decode_limited::<T, MAX_DECODE_BYTES>(bytes)
}

/// [`decode`] for a snapshot or a backup (bounded by
/// [`MAX_SNAPSHOT_DECODE_BYTES`]).
pub fn decode_snapshot<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    decode_limited::<T, MAX_SNAPSHOT_DECODE_BYTES>(bytes)
}

/// Writes the encoding of `value` to `out` (the bytes of [`encode`],
/// without building them in memory first).
pub fn encode_to_writer<T: Serialize, W: std::io::Write>(
    value: &T,
    out: &mut W,
) -> Result<(), std::io::Error> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(|e| std::io::Error::other(format!("encode: {e}")))
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<T, std::io::Error> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (value, read) = bincode::serde::decode_from_slice(bytes, config).map_err(|e| {
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
    encode_to_writer(value, out)
}

/// Decodes one value from the front of `bytes`; returns it and the bytes it took.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), std::io::Error> {
    bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_over_the_limit_is_refused_and_the_snapshot_bound_is_the_larger() {
        let value = vec![7u8; 2000];
        let bytes = encode(&value).expect("encodes");
        assert!(decode_limited::<Vec<u8>, 1024>(&bytes).is_err());
        assert_eq!(
            decode_limited::<Vec<u8>, 4096>(&bytes).expect("fits"),
            value
        );
        assert_eq!(decode_snapshot::<Vec<u8>>(&bytes).expect("fits"), value);
        const { assert!(MAX_SNAPSHOT_DECODE_BYTES > MAX_DECODE_BYTES) };
    }

    #[test]
    fn writing_to_a_writer_gives_the_bytes_of_encode() {
        let value = (Some(3u64), vec![(vec![1u8, 2], vec![3u8; 300])]);
        let mut written = Vec::new();
        encode_to_writer(&value, &mut written).expect("writes");
        assert_eq!(written, encode(&value).expect("encodes"));
    }
}
