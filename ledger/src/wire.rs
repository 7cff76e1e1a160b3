//! The one canonical, versioned binary encoding of commands: what a Raft
//! entry carries and what a command's idempotency fingerprint hashes.
//!
//! The gRPC edge encodes each command once ([`encode_envelope`]); the log
//! store, the Raft network and the followers copy those bytes; every node
//! decodes them once ([`decode_envelope`]) and hands the engine the decoded
//! command together with the fingerprint of its body bytes, so no node ever
//! re-encodes a command. Hand-written (not serde) so the replicated format
//! never changes with a library upgrade or a field reordering.
//!
//! ```text
//! envelope = id body
//! id       = varint length, that many bytes (UTF-8; the engine validates it)
//! body     = u8 command tag, then the command's fields in declaration order
//! u64/u32  = unsigned LEB128 varint, shortest form
//! bool     = u8 0 or 1
//! string   = varint byte length, UTF-8 bytes
//! decimal  = u8 scale (0..=28), zigzag LEB128 mantissa; canonical: no
//!            trailing fractional zeros (1.50 is written as 1.5, zero as 0)
//! list     = varint count, the items
//! ```
//!
//! Decoding is strict: a non-canonical decimal or varint, an unknown tag,
//! bad UTF-8 or a truncated field is an error, so two different byte
//! strings never decode to the same command. The fingerprint is xxh3-128
//! of the body bytes (the id excluded): a retry that writes `1.50` as `1.5`
//! is the same command.
//!
//! [`WIRE_VERSION`] names this format; the Raft entry frame carries it, and
//! a node refuses entries of a version it does not know.

use rust_decimal::Decimal;

use crate::codec::canonical_decimal;
use crate::command::{CommandId, Envelope};

/// The command encoding's version, carried by every Raft entry frame.
/// Version 1 is this format.
pub const WIRE_VERSION: u8 = 1;

/// A command fingerprint: xxh3-128 of the command's body bytes.
pub type Fingerprint = u128;

/// Largest decimal scale the wire carries (`rust_decimal`'s limit).
const MAX_WIRE_SCALE: u8 = 28;

/// Why bytes are not a well-formed encoded command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated command: need {need} more bytes")]
    Truncated { need: usize },
    #[error("varint longer than its type or not in shortest form")]
    BadVarint,
    #[error("unknown command tag {0}")]
    UnknownTag(u8),
    #[error("string is not UTF-8")]
    BadUtf8,
    #[error("bad bool byte {0}")]
    BadBool(u8),
    #[error("decimal {mantissa}e-{scale} is not canonical or out of range")]
    BadDecimal { mantissa: i128, scale: u8 },
    #[error("unknown wallet kind {0}")]
    BadWallet(u8),
    #[error("unsupported command wire version {0}")]
    UnsupportedVersion(u8),
}

/// A decoded command and the fingerprint of its body bytes: what the
/// engine applies (`Ledger::apply_decoded`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedCommand {
    pub envelope: Envelope,
    pub fingerprint: Fingerprint,
}

/// Appends the encoding of `envelope` to `out`. Never fails: every command
/// value has an encoding.
pub fn encode_envelope(envelope: &Envelope, out: &mut Vec<u8>) {
    envelope.command_id.0.put(out);
    envelope.command.put_body(out);
}

/// Decodes one envelope from the front of `bytes`; returns it with its
/// fingerprint and the number of bytes it took.
pub fn decode_envelope(bytes: &[u8]) -> Result<(DecodedCommand, usize), WireError> {
    let mut reader = WireReader::new(bytes);
    let command_id = CommandId(String::read(&mut reader)?);
    let body_start = reader.position();
    let command = crate::command::Command::read_body(&mut reader)?;
    let end = reader.position();
    let fingerprint = xxhash_rust::xxh3::xxh3_128(&bytes[body_start..end]);
    Ok((
        DecodedCommand {
            envelope: Envelope {
                command_id,
                command,
            },
            fingerprint,
        },
        end,
    ))
}

/// The fingerprint of a command's canonical body, encoded into `scratch`
/// (cleared first): what [`decode_envelope`] returns for the same command.
pub(crate) fn fingerprint(scratch: &mut Vec<u8>, command: &crate::command::Command) -> Fingerprint {
    scratch.clear();
    command.put_body(scratch);
    xxhash_rust::xxh3::xxh3_128(scratch)
}

/// Bounds-checked reads of the primitive encodings.
pub(crate) struct WireReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> WireReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        WireReader { bytes, position: 0 }
    }

    fn position(&self) -> usize {
        self.position
    }

    /// The bytes not read yet.
    pub(crate) fn rest_bytes(&self) -> &'a [u8] {
        &self.bytes[self.position..]
    }

    /// Skips `n` bytes (at most `rest_bytes().len()`; clamped).
    pub(crate) fn skip(&mut self, n: usize) {
        self.position = (self.position + n).min(self.bytes.len());
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated {
                need: n - self.remaining(),
            });
        }
        let out = &self.bytes[self.position..self.position + n];
        self.position += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned LEB128 varint of at most `max_bits` bits, shortest form.
    fn varint(&mut self, max_bits: u32) -> Result<u128, WireError> {
        // One byte: values below 128 (most ids, scales, lengths).
        if let Some(&byte) = self.bytes.get(self.position)
            && byte < 0x80
        {
            self.position += 1;
            return Ok(u128::from(byte));
        }
        // Up to nine bytes (63 bits) accumulate in a u64.
        let mut small: u64 = 0;
        for (i, &byte) in self.bytes[self.position..].iter().take(9).enumerate() {
            small |= u64::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                let bits = 7 * i as u32 + (32 - u32::from(byte).leading_zeros());
                // Shortest form (no final zero byte after the first) and fits.
                if (byte == 0 && i > 0) || bits > max_bits {
                    return Err(WireError::BadVarint);
                }
                self.position += i + 1;
                return Ok(u128::from(small));
            }
        }
        let mut value: u128 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.u8()?;
            let low = u128::from(byte & 0x7F);
            if shift >= max_bits || (shift > 0 && low >> (max_bits - shift).min(127) != 0) {
                return Err(WireError::BadVarint);
            }
            value |= low << shift;
            if byte & 0x80 == 0 {
                // Shortest form: no final zero byte after the first.
                if byte == 0 && shift > 0 {
                    return Err(WireError::BadVarint);
                }
                return Ok(value);
            }
            shift += 7;
        }
    }
}

fn put_varint(out: &mut Vec<u8>, value: u128) {
    // Almost every value (ids, counts, mantissas) fits 64 bits: loop on a
    // u64 there, which is several times cheaper than 128-bit shifts.
    if let Ok(mut small) = u64::try_from(value) {
        while small >= 0x80 {
            out.push((small as u8) | 0x80);
            small >>= 7;
        }
        out.push(small as u8);
        return;
    }
    let mut value = value;
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A command field type with a canonical wire form.
pub(crate) trait WireField: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn read(reader: &mut WireReader<'_>) -> Result<Self, WireError>;
}

impl WireField for u64 {
    fn put(&self, out: &mut Vec<u8>) {
        put_varint_u64(out, *self);
    }
    fn read(reader: &mut WireReader<'_>) -> Result<Self, WireError> {
        // 64 bits: the conversion cannot fail.
        u64::try_from(reader.varint(64)?).map_err(|_| WireError::BadVarint)
    }
}

impl WireField for u32 {
    fn put(&self, out: &mut Vec<u8>) {
        put_varint_u64(out, u64::from(*self));
    }
    fn read(reader: &mut WireReader<'_>) -> Result<Self, WireError> {
        u32::try_from(reader.varint(32)?).map_err(|_| WireError::BadVarint)
    }
}

impl WireField for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn read(reader: &mut WireReader<'_>) -> Result<Self, WireError> {
        match reader.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(WireError::BadBool(other)),
        }
    }
}

impl WireField for String {
    fn put(&self, out: &mut Vec<u8>) {
        put_varint_u64(out, self.len() as u64);
        out.extend_from_slice(self.as_bytes());
    }
    fn read(reader: &mut WireReader<'_>) -> Result<Self, WireError> {
        let len = usize::try_from(reader.varint(64)?).map_err(|_| WireError::BadVarint)?;
        let bytes = reader.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| WireError::BadUtf8)
    }
}

impl WireField for Decimal {
    fn put(&self, out: &mut Vec<u8>) {
        let (mantissa, scale) = canonical_decimal(*self);
        // Decimal scales are 0..=28.
        out.push(scale as u8);
        // Zigzag: small magnitudes of either sign stay short.
        put_varint(out, ((mantissa << 1) ^ (mantissa >> 127)) as u128);
    }
    fn read(reader: &mut WireReader<'_>) -> Result<Self, WireError> {
        let scale = reader.u8()?;
        let zigzag = reader.varint(97)?;
        let mantissa = ((zigzag >> 1) as i128) ^ -((zigzag & 1) as i128);
        let bad = WireError::BadDecimal { mantissa, scale };
        let canonical = if mantissa == 0 {
            scale == 0
        } else {
            scale == 0 || mantissa % 10 != 0
        };
        if scale > MAX_WIRE_SCALE || !canonical {
            return Err(bad);
        }
        Decimal::try_from_i128_with_scale(mantissa, u32::from(scale)).map_err(|_| bad)
    }
}

impl<T: WireField> WireField for Vec<T> {
    fn put(&self, out: &mut Vec<u8>) {
        put_varint_u64(out, self.len() as u64);
        for item in self {
            item.put(out);
        }
    }
    fn read(reader: &mut WireReader<'_>) -> Result<Self, WireError> {
        let count = usize::try_from(reader.varint(64)?).map_err(|_| WireError::BadVarint)?;
        // Every item takes at least one byte: the input bounds the allocation.
        let mut items = Vec::with_capacity(count.min(reader.remaining()));
        for _ in 0..count {
            items.push(T::read(reader)?);
        }
        Ok(items)
    }
}

/// Defines the command structs, the `Command` enum over them, and their
/// wire encoding from one list: a command's fields are written once.
/// Tags are part of the replicated format: never reuse or renumber one.
macro_rules! define_commands {
    (
        $(
            $(#[$meta:meta])*
            $tag:literal => $name:ident {
                $( $(#[$field_meta:meta])* $field:ident : $ty:ty ),* $(,)?
            }
        )*
    ) => {
        $(
            $(#[$meta])*
            #[derive(Clone, Debug, PartialEq, Eq)]
            pub struct $name {
                $( $(#[$field_meta])* pub $field: $ty, )*
            }

            impl From<$name> for Command {
                fn from(command: $name) -> Command {
                    Command::$name(command)
                }
            }
        )*

        /// One state-changing request: one of the command structs. Amounts
        /// are exact decimals in the asset's natural unit (e.g. `0.5` BTC);
        /// the engine converts them to minor units once and rejects any
        /// with more decimal places than the asset's scale.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Command {
            $( $(#[$meta])* $name($name), )*
        }

        impl Command {
            /// The command's name (its struct's), for logs and metrics.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( Command::$name(_) => stringify!($name), )*
                }
            }

            /// Appends the body encoding: tag, then the fields in order.
            pub(crate) fn put_body(&self, out: &mut Vec<u8>) {
                match self {
                    $(
                        Command::$name(command) => {
                            out.push($tag);
                            $( $crate::wire::WireField::put(&command.$field, out); )*
                        }
                    )*
                }
            }

            /// Reads a body written by [`Command::put_body`].
            pub(crate) fn read_body(
                reader: &mut $crate::wire::WireReader<'_>,
            ) -> Result<Command, $crate::wire::WireError> {
                match reader.u8()? {
                    $(
                        $tag => Ok(Command::$name($name {
                            $( $field: $crate::wire::WireField::read(reader)?, )*
                        })),
                    )*
                    tag => Err($crate::wire::WireError::UnknownTag(tag)),
                }
            }
        }
    };
}

pub(crate) use define_commands;

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::command::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    fn envelope(id: &str, command: impl Into<Command>) -> Envelope {
        Envelope {
            command_id: CommandId(id.into()),
            command: command.into(),
        }
    }

    fn every_command() -> Vec<Command> {
        vec![
            CreateAsset {
                symbol: "BTC".into(),
                scale: 8,
            }
            .into(),
            CreateAccount { account: u64::MAX }.into(),
            Deposit {
                account: 1,
                asset: "USDT".into(),
                amount: d("-12.345"),
            }
            .into(),
            Withdraw {
                account: 2,
                asset: "BTC".into(),
                amount: Decimal::MAX,
            }
            .into(),
            Lock {
                hold: 9,
                account: 1,
                asset: "BTC".into(),
                amount: Decimal::MIN,
            }
            .into(),
            Release { hold: 300 }.into(),
            Fill {
                buy_hold: 1,
                sell_hold: 2,
                base_amount: d("0.2"),
                price: d("29900"),
                buyer_fee: d("0.0002"),
                seller_fee: d("0"),
            }
            .into(),
            Transfer {
                from: 1,
                to: 2,
                asset: "ü".into(),
                amount: d("0.0000000000000000000000000001"),
            }
            .into(),
            CreateMarket {
                market: "BTC-PERP".into(),
                base: "BTC".into(),
                settle_asset: "USDT".into(),
                tick_size: d("0.1"),
                step_size: d("0.001"),
                max_leverage: 20,
                brackets: vec![
                    MarginBracket {
                        notional_floor: d("0"),
                        maintenance_margin_rate: d("0.01"),
                        max_leverage: 20,
                    },
                    MarginBracket {
                        notional_floor: d("10000"),
                        maintenance_margin_rate: d("0.02"),
                        max_leverage: 10,
                    },
                ],
                liquidation_fee_rate: d("0.01"),
                funding_interval_ms: 28_800_000,
            }
            .into(),
            SetMarketPaused {
                market: "BTC-PERP".into(),
                paused: true,
            }
            .into(),
            SetMarkPrice {
                market: "BTC-PERP".into(),
                price: d("30000.5"),
            }
            .into(),
            ApplyFunding {
                market: "BTC-PERP".into(),
                rate: d("-0.0001"),
                funding_time_ms: 1_700_000_000_000,
            }
            .into(),
            PerpFill {
                market: "BTC-PERP".into(),
                buyer: 1,
                seller: 2,
                size: d("1.5"),
                price: d("30000"),
                buyer_fee: d("1.2"),
                seller_fee: d("0.6"),
            }
            .into(),
            SetDedupWindow { window_ms: 60_000 }.into(),
            FundInsurance {
                account: 3,
                asset: "USDT".into(),
                amount: d("1000"),
            }
            .into(),
            OpenAccount {
                account: 11,
                parent: 1,
                collateral: Wallet::Margin,
                can_withdraw: false,
                history: true,
            }
            .into(),
            SetWithdrawAllowed {
                account: 11,
                allowed: true,
            }
            .into(),
            SetTransferGrant {
                master: 1,
                from: 11,
                to: 12,
                allowed: true,
            }
            .into(),
            WalletTransfer {
                from: 1,
                from_wallet: Wallet::Spot,
                to: 11,
                to_wallet: Wallet::Funding,
                asset: "USDT".into(),
                amount: d("2.5"),
            }
            .into(),
            WalletDeposit {
                account: 1,
                wallet: Wallet::Funding,
                asset: "BTC".into(),
                amount: d("1"),
            }
            .into(),
            WalletWithdraw {
                account: 1,
                wallet: Wallet::Margin,
                asset: "BTC".into(),
                amount: d("0.1"),
            }
            .into(),
            WithdrawInsurance {
                asset: "USDT".into(),
                account: 2,
                wallet: Wallet::Spot,
                amount: d("7"),
            }
            .into(),
            SweepFees {
                asset: "USDT".into(),
                account: 2,
                wallet: Wallet::Funding,
                amount: d("8"),
            }
            .into(),
            CreatePair {
                pair: "BTC-USDT".into(),
                base: "BTC".into(),
                quote: "USDT".into(),
                size_scale: 4,
                price_scale: 2,
                min_base_amount: d("0.001"),
            }
            .into(),
            PairFill {
                pair: "BTC-USDT".into(),
                buy_hold: 1,
                sell_hold: 2,
                base_amount: d("0.2"),
                price: d("29900"),
                buyer_fee: Fee {
                    asset: "BNB".into(),
                    amount: d("0.01"),
                },
                seller_fee: Fee::default(),
                buyer_limit_price: d("30000"),
            }
            .into(),
            ReleasePart {
                hold: 1,
                amount: d("3"),
            }
            .into(),
            SetIsolated {
                account: 3,
                market: "BTC-PERP".into(),
                isolated: true,
            }
            .into(),
            AdjustIsolatedMargin {
                account: 3,
                market: "BTC-PERP".into(),
                delta: d("-12.5"),
            }
            .into(),
            WalletLock {
                hold: 5,
                account: 3,
                wallet: Wallet::Margin,
                asset: "USDT".into(),
                amount: d("151.5"),
            }
            .into(),
            PerpOrderFill {
                fill: PerpFill {
                    market: "BTC-PERP".into(),
                    buyer: 3,
                    seller: 2,
                    size: d("0.1"),
                    price: d("30300"),
                    buyer_fee: d("0"),
                    seller_fee: d("0.3"),
                },
                buy_hold: 5,
                buy_release: d("151.5"),
                sell_hold: 0,
                sell_release: d("0"),
            }
            .into(),
            CreateDatedFuture {
                market: CreateMarket {
                    market: "BTC-0327".into(),
                    base: "BTC".into(),
                    settle_asset: "USDT".into(),
                    tick_size: d("0.1"),
                    step_size: d("0.001"),
                    max_leverage: 20,
                    brackets: vec![MarginBracket {
                        notional_floor: d("0"),
                        maintenance_margin_rate: d("0.01"),
                        max_leverage: 20,
                    }],
                    liquidation_fee_rate: d("0.01"),
                    funding_interval_ms: 28_800_000,
                },
                expiry_ms: u64::MAX,
                delivery_fee_rate: d("0.0005"),
            }
            .into(),
            SettleFuture {
                market: "BTC-0327".into(),
                price: d("30123.4"),
            }
            .into(),
            CreateOption {
                market: "BTC-C-32000".into(),
                underlying: "BTC-PERP".into(),
                call: true,
                strike: d("32000"),
                expiry_ms: 0,
                tick_size: d("0.1"),
                step_size: d("0.001"),
                im_rate: d("0.15"),
                im_floor_rate: d("0.1"),
                mm_rate: d("0.075"),
                fee_cap_rate: d("0.125"),
                delivery_fee_rate: d("0.0002"),
                liquidation_fee_rate: d("0.01"),
                funding_interval_ms: 28_800_000,
                funding_period_ms: u64::MAX,
            }
            .into(),
            ExerciseOption {
                market: "BTC-C-32000".into(),
                price: d("-1"),
            }
            .into(),
            ApplyOptionFunding {
                market: "BTC-PC-30000".into(),
                funding_time_ms: 28_800_000,
            }
            .into(),
            CreateInverseMarket {
                market: CreateMarket {
                    market: "BTCUSD-PERP".into(),
                    base: "BTC".into(),
                    settle_asset: "BTC".into(),
                    tick_size: d("0.5"),
                    step_size: d("1"),
                    max_leverage: 100,
                    brackets: vec![],
                    liquidation_fee_rate: d("0.005"),
                    funding_interval_ms: 28_800_000,
                },
                contract_value: d("100"),
                expiry_ms: 0,
                delivery_fee_rate: d("0"),
            }
            .into(),
            ApplyPremiumFunding {
                market: "BTC-PERP".into(),
                funding_time_ms: 28_800_000,
                premium_samples: vec![d("0.0001"), d("-0.00000001"), Decimal::MAX],
                interest_rate: d("0.0001"),
            }
            .into(),
            SetOptionMark {
                market: "BTC-C-32000".into(),
                price: d("1250.5"),
                delta: d("-0.00000001"),
            }
            .into(),
            SetFundingClamp {
                market: "BTC-PERP".into(),
                clamp_rate: d("0.0005"),
            }
            .into(),
        ]
    }

    #[test]
    fn every_command_round_trips_through_its_encoding() {
        for command in every_command() {
            let env = envelope("tc-1", command);
            let mut bytes = Vec::new();
            encode_envelope(&env, &mut bytes);
            let (decoded, used) = decode_envelope(&bytes).expect("decodes");
            assert_eq!(used, bytes.len());
            assert_eq!(decoded.envelope, env);
            let mut scratch = Vec::new();
            assert_eq!(
                decoded.fingerprint,
                fingerprint(&mut scratch, &env.command),
                "decode and encode fingerprint alike: {:?}",
                env.command.kind()
            );
        }
    }

    #[test]
    fn truncated_or_extended_bytes_are_errors_never_panics() {
        for command in every_command() {
            let mut bytes = Vec::new();
            encode_envelope(&envelope("id", command), &mut bytes);
            for cut in 0..bytes.len() {
                assert!(decode_envelope(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            // Every single-byte corruption decodes to an error or to some
            // command, never a panic.
            for i in 0..bytes.len() {
                for flip in [0x01u8, 0x80, 0xFF] {
                    let mut bad = bytes.clone();
                    bad[i] ^= flip;
                    let _ = decode_envelope(&bad);
                }
            }
        }
    }

    #[test]
    fn fingerprint_ignores_trailing_zeros_and_the_id_but_not_values() {
        let deposit = |amount: &str| -> Command {
            Deposit {
                account: 1,
                asset: "BTC".into(),
                amount: d(amount),
            }
            .into()
        };
        let mut buf = Vec::new();
        let mut fp = |command: &Command| fingerprint(&mut buf, command);
        assert_eq!(fp(&deposit("1.5")), fp(&deposit("1.50")));
        assert_eq!(fp(&deposit("0")), fp(&deposit("-0.00")));
        assert_ne!(fp(&deposit("1.5")), fp(&deposit("1.6")));
        assert_ne!(fp(&deposit("1.5")), fp(&deposit("15")));
        assert_ne!(fp(&deposit("1.5")), fp(&deposit("-1.5")));
        assert_ne!(
            fp(&Release { hold: 1 }.into()),
            fp(&CreateAccount { account: 1 }.into())
        );
        let window = |window_ms| -> Command { SetDedupWindow { window_ms }.into() };
        assert_ne!(fp(&window(60_000)), fp(&window(60_001)));
        let (a, _) = decode_envelope(&{
            let mut b = Vec::new();
            encode_envelope(&envelope("a", deposit("1.50")), &mut b);
            b
        })
        .expect("decodes");
        let (b, _) = decode_envelope(&{
            let mut b = Vec::new();
            encode_envelope(&envelope("another-id", deposit("1.5")), &mut b);
            b
        })
        .expect("decodes");
        assert_eq!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn decimals_are_written_canonically_and_non_canonical_ones_refused() {
        let mut out = Vec::new();
        d("1.50").put(&mut out);
        let mut again = Vec::new();
        d("1.5").put(&mut again);
        assert_eq!(out, again);
        assert_eq!(out, vec![1, 30], "scale 1, zigzag(15) = 30");
        // 1.50 spelled with its trailing zero (zigzag 300), 0.000, scale 29:
        // refused.
        for bad in [vec![2u8, 0xAC, 0x02], vec![3, 0], vec![29, 2]] {
            assert!(
                matches!(
                    Decimal::read(&mut WireReader::new(&bad)),
                    Err(WireError::BadDecimal { .. })
                ),
                "{bad:?}"
            );
        }
        // A mantissa beyond 96 bits.
        let mut huge = vec![0u8];
        put_varint(&mut huge, 1u128 << 97);
        assert!(Decimal::read(&mut WireReader::new(&huge)).is_err());
    }

    #[test]
    fn varints_must_be_shortest_and_fit_their_type() {
        // 1 written in two bytes.
        assert_eq!(
            u64::read(&mut WireReader::new(&[0x81, 0x00])),
            Err(WireError::BadVarint)
        );
        let mut max = Vec::new();
        u64::MAX.put(&mut max);
        assert_eq!(u64::read(&mut WireReader::new(&max)), Ok(u64::MAX));
        assert!(u32::read(&mut WireReader::new(&max)).is_err());
        let mut over = Vec::new();
        put_varint(&mut over, u128::from(u64::MAX) + 1);
        assert_eq!(
            u64::read(&mut WireReader::new(&over)),
            Err(WireError::BadVarint)
        );
        for v in [1u64 << 32, (1 << 35) + 7, u64::MAX] {
            let mut b = Vec::new();
            v.put(&mut b);
            assert_eq!(
                u32::read(&mut WireReader::new(&b)),
                Err(WireError::BadVarint),
                "{v} does not fit a u32"
            );
        }
        let mut b = Vec::new();
        u32::MAX.put(&mut b);
        assert_eq!(u32::read(&mut WireReader::new(&b)), Ok(u32::MAX));
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            1 << 35,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
        ] {
            let mut b = Vec::new();
            v.put(&mut b);
            assert_eq!(u64::read(&mut WireReader::new(&b)), Ok(v));
        }
    }

    #[test]
    fn unknown_tags_and_bad_utf8_are_refused() {
        let mut bytes = Vec::new();
        "id".to_string().put(&mut bytes);
        bytes.push(200);
        assert!(matches!(
            decode_envelope(&bytes),
            Err(WireError::UnknownTag(200))
        ));
        let bad_id = [2u8, 0xC3, 0x28, 5, 1];
        assert!(matches!(decode_envelope(&bad_id), Err(WireError::BadUtf8)));
    }
}
