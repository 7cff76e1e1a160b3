//! Command ids: generation of fresh random ids and the validity rule the
//! server applies (1..=64 bytes of printable ASCII).

/// Prefix of ids made by [`new_command_id`], so they are recognizable in logs.
pub const COMMAND_ID_PREFIX: &str = "tc-";

/// Longest command id the server accepts, in bytes.
pub const MAX_COMMAND_ID_BYTES: usize = 64;

/// A fresh command id: [`COMMAND_ID_PREFIX`] followed by 128 random bits as
/// 32 lowercase hex digits (35 bytes), from the thread-local CSPRNG seeded
/// by the operating system.
///
/// ```
/// let id = tally_client::new_command_id();
/// assert!(id.starts_with("tc-") && id.len() == 35);
/// ```
pub fn new_command_id() -> String {
    let bits: u128 = rand::random();
    format!("{COMMAND_ID_PREFIX}{bits:032x}")
}

/// Checks a command id against the server's rule: 1..=64 bytes, printable
/// ASCII (`'!'..='~'` and space). Returns the problem in words.
pub fn validate_command_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("command id is empty".to_string());
    }
    if id.len() > MAX_COMMAND_ID_BYTES {
        return Err(format!(
            "command id is {} bytes long, at most {MAX_COMMAND_ID_BYTES} allowed",
            id.len()
        ));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(format!(
            "command id contains {c:?}; only printable ASCII is allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = new_command_id();
            assert_eq!(validate_command_id(&id), Ok(()));
            assert_eq!(id.len(), COMMAND_ID_PREFIX.len() + 32);
            let hex = &id[COMMAND_ID_PREFIX.len()..];
            assert!(
                hex.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(seen.insert(id), "duplicate id");
        }
    }

    #[test]
    fn id_rule() {
        assert!(validate_command_id("order-17/fill-3").is_ok());
        assert!(validate_command_id(&"x".repeat(64)).is_ok());
        assert!(validate_command_id("").is_err());
        assert!(validate_command_id(&"x".repeat(65)).is_err());
        assert!(validate_command_id("tab\there").is_err());
        assert!(validate_command_id("caf\u{e9}").is_err());
    }
}
