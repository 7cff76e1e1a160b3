//! Low-level, hand-written binary encoding shared by records, the state hash
//! and command fingerprints: big-endian integers, length-prefixed strings,
//! decimals as (mantissa, scale), and the encodings of `Outcome` (stored in
//! the dedup table) and `Command` (hashed into a fingerprint). The formats
//! are documented in the `records` module.
//!
//! Hand-written rather than serde so that the persisted format and the
//! fingerprints never change with a library upgrade.

use rust_decimal::Decimal;

use crate::command::{
    BalanceChange, Command, Event, Outcome, Owner, PositionCause, RejectCode, Rejection,
};

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
        // Strings the engine stores are bounded (symbols, ids, messages).
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.put_u32(len);
        self.put(&value.as_bytes()[..len as usize]);
    }
    fn put_decimal(&mut self, value: Decimal) {
        self.put_i128(value.mantissa());
        // Decimal scales are 0..=28.
        self.put_u8(value.scale() as u8);
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
    }
}

fn owner_from_parts(kind: u8, id: u64) -> Result<Owner, String> {
    match (kind, id) {
        (0, id) => Ok(Owner::Account(id)),
        (1, 0) => Ok(Owner::External),
        (2, 0) => Ok(Owner::Fees),
        (3, 0) => Ok(Owner::Insurance),
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
    pub fn bytes32(&mut self) -> Result<[u8; 32], String> {
        self.array()
    }
    pub fn string(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }
    pub fn decimal(&mut self) -> Result<Decimal, String> {
        let mantissa = self.i128()?;
        let scale = u32::from(self.u8()?);
        Decimal::try_from_i128_with_scale(mantissa, scale)
            .map_err(|e| format!("bad decimal {mantissa}e-{scale}: {e}"))
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

const ALL_REJECT_CODES: [RejectCode; 29] = [
    RejectCode::InvalidCommandId,
    RejectCode::CommandIdReused,
    RejectCode::InvalidAmount,
    RejectCode::BadPrecision,
    RejectCode::AmountTooLarge,
    RejectCode::InvalidAsset,
    RejectCode::AssetExists,
    RejectCode::UnknownAsset,
    RejectCode::InvalidAccount,
    RejectCode::AccountExists,
    RejectCode::UnknownAccount,
    RejectCode::HoldExists,
    RejectCode::UnknownHold,
    RejectCode::InsufficientFunds,
    RejectCode::HoldInsufficient,
    RejectCode::HoldAssetMismatch,
    RejectCode::FeeTooLarge,
    RejectCode::InvalidPrice,
    RejectCode::UnknownMarket,
    RejectCode::MarketExists,
    RejectCode::InvalidMarket,
    RejectCode::MarketPaused,
    RejectCode::PriceOffTick,
    RejectCode::SizeOffStep,
    RejectCode::NoMarkPrice,
    RejectCode::InsufficientMargin,
    RejectCode::FundingAlreadyApplied,
    RejectCode::InvalidFundingTime,
    RejectCode::InvalidRate,
];

/// The persisted tag of a reject code: its position in declaration order.
pub(crate) fn reject_code_tag(code: RejectCode) -> u8 {
    // Exhaustive so that a new variant cannot be forgotten here.
    match code {
        RejectCode::InvalidCommandId => 0,
        RejectCode::CommandIdReused => 1,
        RejectCode::InvalidAmount => 2,
        RejectCode::BadPrecision => 3,
        RejectCode::AmountTooLarge => 4,
        RejectCode::InvalidAsset => 5,
        RejectCode::AssetExists => 6,
        RejectCode::UnknownAsset => 7,
        RejectCode::InvalidAccount => 8,
        RejectCode::AccountExists => 9,
        RejectCode::UnknownAccount => 10,
        RejectCode::HoldExists => 11,
        RejectCode::UnknownHold => 12,
        RejectCode::InsufficientFunds => 13,
        RejectCode::HoldInsufficient => 14,
        RejectCode::HoldAssetMismatch => 15,
        RejectCode::FeeTooLarge => 16,
        RejectCode::InvalidPrice => 17,
        RejectCode::UnknownMarket => 18,
        RejectCode::MarketExists => 19,
        RejectCode::InvalidMarket => 20,
        RejectCode::MarketPaused => 21,
        RejectCode::PriceOffTick => 22,
        RejectCode::SizeOffStep => 23,
        RejectCode::NoMarkPrice => 24,
        RejectCode::InsufficientMargin => 25,
        RejectCode::FundingAlreadyApplied => 26,
        RejectCode::InvalidFundingTime => 27,
        RejectCode::InvalidRate => 28,
    }
}

fn reject_code_from_tag(tag: u8) -> Result<RejectCode, String> {
    ALL_REJECT_CODES
        .get(tag as usize)
        .copied()
        .ok_or_else(|| format!("unknown reject code {tag}"))
}

pub(crate) fn put_outcome(sink: &mut impl Sink, outcome: &Outcome) {
    match outcome {
        Outcome::Applied { events } => {
            sink.put_u8(0);
            sink.put_u32(u32::try_from(events.len()).unwrap_or(u32::MAX));
            for event in events {
                put_event(sink, event);
            }
        }
        Outcome::Rejected(rejection) => {
            sink.put_u8(1);
            sink.put_u8(reject_code_tag(rejection.code));
            sink.put_str(&rejection.message);
        }
    }
}

fn put_event(sink: &mut impl Sink, event: &Event) {
    match event {
        Event::AssetCreated { symbol, scale } => {
            sink.put_u8(0);
            sink.put_str(symbol);
            sink.put_u32(*scale);
        }
        Event::AccountCreated { account } => {
            sink.put_u8(1);
            sink.put_u64(*account);
        }
        Event::Balance(change) => {
            sink.put_u8(2);
            sink.put_owner(change.owner);
            sink.put_str(&change.asset);
            sink.put_decimal(change.available_delta);
            sink.put_decimal(change.locked_delta);
            sink.put_decimal(change.available);
            sink.put_decimal(change.locked);
        }
        Event::Hold {
            hold,
            account,
            asset,
            remaining,
            closed,
        } => {
            sink.put_u8(3);
            sink.put_u64(*hold);
            sink.put_u64(*account);
            sink.put_str(asset);
            sink.put_decimal(*remaining);
            sink.put_u8(u8::from(*closed));
        }
        Event::Fill {
            buyer,
            seller,
            base_asset,
            quote_asset,
            base_amount,
            quote_amount,
            buyer_fee,
            seller_fee,
        } => {
            sink.put_u8(4);
            sink.put_u64(*buyer);
            sink.put_u64(*seller);
            sink.put_str(base_asset);
            sink.put_str(quote_asset);
            sink.put_decimal(*base_amount);
            sink.put_decimal(*quote_amount);
            sink.put_decimal(*buyer_fee);
            sink.put_decimal(*seller_fee);
        }
        Event::MarketCreated {
            market,
            base,
            settle_asset,
        } => {
            sink.put_u8(5);
            sink.put_str(market);
            sink.put_str(base);
            sink.put_str(settle_asset);
        }
        Event::MarketPaused { market, paused } => {
            sink.put_u8(6);
            sink.put_str(market);
            sink.put_u8(u8::from(*paused));
        }
        Event::MarkPrice {
            market,
            price,
            time_ms,
        } => {
            sink.put_u8(7);
            sink.put_str(market);
            sink.put_decimal(*price);
            sink.put_u64(*time_ms);
        }
        Event::PerpFill {
            market,
            buyer,
            seller,
            size,
            price,
            buyer_fee,
            seller_fee,
        } => {
            sink.put_u8(8);
            sink.put_str(market);
            sink.put_u64(*buyer);
            sink.put_u64(*seller);
            sink.put_decimal(*size);
            sink.put_decimal(*price);
            sink.put_decimal(*buyer_fee);
            sink.put_decimal(*seller_fee);
        }
        Event::Position {
            market,
            holder,
            counterparty,
            cause,
            size_delta,
            price,
            size,
            entry_price,
            realized_pnl,
        } => {
            sink.put_u8(9);
            sink.put_str(market);
            sink.put_owner(*holder);
            sink.put_owner(*counterparty);
            sink.put_u8(position_cause_tag(*cause));
            sink.put_decimal(*size_delta);
            sink.put_decimal(*price);
            sink.put_decimal(*size);
            sink.put_decimal(*entry_price);
            sink.put_decimal(*realized_pnl);
        }
        Event::Pool {
            market,
            asset,
            delta,
            balance,
        } => {
            sink.put_u8(10);
            sink.put_str(market);
            sink.put_str(asset);
            sink.put_decimal(*delta);
            sink.put_decimal(*balance);
        }
        Event::Funding {
            market,
            rate,
            funding_time_ms,
            mark_price,
            paid,
            received,
            residue,
            uncollected,
        } => {
            sink.put_u8(11);
            sink.put_str(market);
            sink.put_decimal(*rate);
            sink.put_u64(*funding_time_ms);
            sink.put_decimal(*mark_price);
            sink.put_decimal(*paid);
            sink.put_decimal(*received);
            sink.put_decimal(*residue);
            sink.put_decimal(*uncollected);
        }
        Event::FundingPayment {
            market,
            holder,
            amount,
        } => {
            sink.put_u8(12);
            sink.put_str(market);
            sink.put_owner(*holder);
            sink.put_decimal(*amount);
        }
        Event::Liquidation {
            account,
            asset,
            equity,
            maintenance_margin,
            fee,
        } => {
            sink.put_u8(13);
            sink.put_u64(*account);
            sink.put_str(asset);
            sink.put_decimal(*equity);
            sink.put_decimal(*maintenance_margin);
            sink.put_decimal(*fee);
        }
        Event::Shortfall {
            account,
            asset,
            amount,
        } => {
            sink.put_u8(14);
            sink.put_u64(*account);
            sink.put_str(asset);
            sink.put_decimal(*amount);
        }
    }
}

fn position_cause_tag(cause: PositionCause) -> u8 {
    match cause {
        PositionCause::Fill => 0,
        PositionCause::Liquidation => 1,
        PositionCause::Deleverage => 2,
        PositionCause::Takeover => 3,
        PositionCause::Mark => 4,
    }
}

fn position_cause_from_tag(tag: u8) -> Result<PositionCause, String> {
    Ok(match tag {
        0 => PositionCause::Fill,
        1 => PositionCause::Liquidation,
        2 => PositionCause::Deleverage,
        3 => PositionCause::Takeover,
        4 => PositionCause::Mark,
        other => return Err(format!("unknown position cause {other}")),
    })
}

pub(crate) fn read_outcome(reader: &mut Reader<'_>) -> Result<Outcome, String> {
    match reader.u8()? {
        0 => {
            let count = reader.u32()? as usize;
            // Every event takes at least 9 bytes; do not trust a huge count.
            let mut events = Vec::with_capacity(count.min(64));
            for _ in 0..count {
                events.push(read_event(reader)?);
            }
            Ok(Outcome::Applied { events })
        }
        1 => {
            let code = reject_code_from_tag(reader.u8()?)?;
            let message = reader.string()?;
            Ok(Outcome::Rejected(Rejection { code, message }))
        }
        other => Err(format!("unknown outcome tag {other}")),
    }
}

fn read_event(reader: &mut Reader<'_>) -> Result<Event, String> {
    Ok(match reader.u8()? {
        0 => Event::AssetCreated {
            symbol: reader.string()?,
            scale: reader.u32()?,
        },
        1 => Event::AccountCreated {
            account: reader.u64()?,
        },
        2 => Event::Balance(BalanceChange {
            owner: reader.owner()?,
            asset: reader.string()?,
            available_delta: reader.decimal()?,
            locked_delta: reader.decimal()?,
            available: reader.decimal()?,
            locked: reader.decimal()?,
        }),
        3 => Event::Hold {
            hold: reader.u64()?,
            account: reader.u64()?,
            asset: reader.string()?,
            remaining: reader.decimal()?,
            closed: reader.bool()?,
        },
        4 => Event::Fill {
            buyer: reader.u64()?,
            seller: reader.u64()?,
            base_asset: reader.string()?,
            quote_asset: reader.string()?,
            base_amount: reader.decimal()?,
            quote_amount: reader.decimal()?,
            buyer_fee: reader.decimal()?,
            seller_fee: reader.decimal()?,
        },
        5 => Event::MarketCreated {
            market: reader.string()?,
            base: reader.string()?,
            settle_asset: reader.string()?,
        },
        6 => Event::MarketPaused {
            market: reader.string()?,
            paused: reader.bool()?,
        },
        7 => Event::MarkPrice {
            market: reader.string()?,
            price: reader.decimal()?,
            time_ms: reader.u64()?,
        },
        8 => Event::PerpFill {
            market: reader.string()?,
            buyer: reader.u64()?,
            seller: reader.u64()?,
            size: reader.decimal()?,
            price: reader.decimal()?,
            buyer_fee: reader.decimal()?,
            seller_fee: reader.decimal()?,
        },
        9 => Event::Position {
            market: reader.string()?,
            holder: reader.owner()?,
            counterparty: reader.owner()?,
            cause: position_cause_from_tag(reader.u8()?)?,
            size_delta: reader.decimal()?,
            price: reader.decimal()?,
            size: reader.decimal()?,
            entry_price: reader.decimal()?,
            realized_pnl: reader.decimal()?,
        },
        10 => Event::Pool {
            market: reader.string()?,
            asset: reader.string()?,
            delta: reader.decimal()?,
            balance: reader.decimal()?,
        },
        11 => Event::Funding {
            market: reader.string()?,
            rate: reader.decimal()?,
            funding_time_ms: reader.u64()?,
            mark_price: reader.decimal()?,
            paid: reader.decimal()?,
            received: reader.decimal()?,
            residue: reader.decimal()?,
            uncollected: reader.decimal()?,
        },
        12 => Event::FundingPayment {
            market: reader.string()?,
            holder: reader.owner()?,
            amount: reader.decimal()?,
        },
        13 => Event::Liquidation {
            account: reader.u64()?,
            asset: reader.string()?,
            equity: reader.decimal()?,
            maintenance_margin: reader.decimal()?,
            fee: reader.decimal()?,
        },
        14 => Event::Shortfall {
            account: reader.u64()?,
            asset: reader.string()?,
            amount: reader.decimal()?,
        },
        other => return Err(format!("unknown event tag {other}")),
    })
}

/// Length of a command fingerprint.
pub(crate) type Fingerprint = [u8; 32];

/// blake3 of the command's canonical encoding: `u8` variant tag (declaration
/// order), then the fields in declaration order, decimals normalized (so a
/// retry that writes `1.50` as `1.5` is the same command).
pub(crate) fn fingerprint(command: &Command) -> Fingerprint {
    let mut hasher = blake3::Hasher::new();
    hasher.put(b"tally.command.v1");
    let h = &mut hasher;
    match command {
        Command::CreateAsset { symbol, scale } => {
            h.put_u8(0);
            h.put_str(symbol);
            h.put_u32(*scale);
        }
        Command::CreateAccount { account } => {
            h.put_u8(1);
            h.put_u64(*account);
        }
        Command::Deposit {
            account,
            asset,
            amount,
        } => {
            h.put_u8(2);
            h.put_u64(*account);
            h.put_str(asset);
            h.put_decimal(amount.normalize());
        }
        Command::Withdraw {
            account,
            asset,
            amount,
        } => {
            h.put_u8(3);
            h.put_u64(*account);
            h.put_str(asset);
            h.put_decimal(amount.normalize());
        }
        Command::Lock {
            hold,
            account,
            asset,
            amount,
        } => {
            h.put_u8(4);
            h.put_u64(*hold);
            h.put_u64(*account);
            h.put_str(asset);
            h.put_decimal(amount.normalize());
        }
        Command::Release { hold } => {
            h.put_u8(5);
            h.put_u64(*hold);
        }
        Command::Fill {
            buy_hold,
            sell_hold,
            base_amount,
            price,
            buyer_fee,
            seller_fee,
        } => {
            h.put_u8(6);
            h.put_u64(*buy_hold);
            h.put_u64(*sell_hold);
            h.put_decimal(base_amount.normalize());
            h.put_decimal(price.normalize());
            h.put_decimal(buyer_fee.normalize());
            h.put_decimal(seller_fee.normalize());
        }
        Command::Transfer {
            from,
            to,
            asset,
            amount,
        } => {
            h.put_u8(7);
            h.put_u64(*from);
            h.put_u64(*to);
            h.put_str(asset);
            h.put_decimal(amount.normalize());
        }
        Command::CreateMarket {
            market,
            base,
            settle_asset,
            tick_size,
            step_size,
            max_leverage,
            brackets,
            liquidation_fee_rate,
            funding_interval_ms,
        } => {
            h.put_u8(8);
            h.put_str(market);
            h.put_str(base);
            h.put_str(settle_asset);
            h.put_decimal(tick_size.normalize());
            h.put_decimal(step_size.normalize());
            h.put_u32(*max_leverage);
            h.put_u32(u32::try_from(brackets.len()).unwrap_or(u32::MAX));
            for b in brackets {
                h.put_decimal(b.notional_floor.normalize());
                h.put_decimal(b.maintenance_margin_rate.normalize());
                h.put_u32(b.max_leverage);
            }
            h.put_decimal(liquidation_fee_rate.normalize());
            h.put_u64(*funding_interval_ms);
        }
        Command::SetMarketPaused { market, paused } => {
            h.put_u8(9);
            h.put_str(market);
            h.put_u8(u8::from(*paused));
        }
        Command::SetMarkPrice { market, price } => {
            h.put_u8(10);
            h.put_str(market);
            h.put_decimal(price.normalize());
        }
        Command::ApplyFunding {
            market,
            rate,
            funding_time_ms,
        } => {
            h.put_u8(11);
            h.put_str(market);
            h.put_decimal(rate.normalize());
            h.put_u64(*funding_time_ms);
        }
        Command::PerpFill {
            market,
            buyer,
            seller,
            size,
            price,
            buyer_fee,
            seller_fee,
        } => {
            h.put_u8(12);
            h.put_str(market);
            h.put_u64(*buyer);
            h.put_u64(*seller);
            h.put_decimal(size.normalize());
            h.put_decimal(price.normalize());
            h.put_decimal(buyer_fee.normalize());
            h.put_decimal(seller_fee.normalize());
        }
    }
    *hasher.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn reject_code_tags_round_trip_in_declaration_order() {
        for (i, code) in ALL_REJECT_CODES.iter().enumerate() {
            assert_eq!(reject_code_tag(*code) as usize, i);
            assert_eq!(reject_code_from_tag(i as u8), Ok(*code));
        }
        assert!(reject_code_from_tag(ALL_REJECT_CODES.len() as u8).is_err());
    }

    #[test]
    fn outcome_encoding_round_trips() {
        let d = |s: &str| Decimal::from_str(s).expect("decimal");
        let outcomes = [
            Outcome::Applied {
                events: vec![
                    Event::AssetCreated {
                        symbol: "BTC".into(),
                        scale: 8,
                    },
                    Event::AccountCreated { account: u64::MAX },
                    Event::Balance(BalanceChange {
                        owner: Owner::External,
                        asset: "BTC".into(),
                        available_delta: d("-1.50000000"),
                        locked_delta: d("0.00000000"),
                        available: d("-1.50000000"),
                        locked: d("0"),
                    }),
                    Event::Hold {
                        hold: 7,
                        account: 1,
                        asset: "USDT".into(),
                        remaining: d("35.000000"),
                        closed: false,
                    },
                    Event::Fill {
                        buyer: 1,
                        seller: 2,
                        base_asset: "BTC".into(),
                        quote_asset: "USDT".into(),
                        base_amount: d("0.20000000"),
                        quote_amount: d("5980.000000"),
                        buyer_fee: d("0.00020000"),
                        seller_fee: d("5.980000"),
                    },
                ],
            },
            Outcome::Rejected(Rejection {
                code: RejectCode::InvalidPrice,
                message: "ü".into(),
            }),
        ];
        for outcome in outcomes {
            let mut bytes = Vec::new();
            put_outcome(&mut bytes, &outcome);
            let mut reader = Reader::new(&bytes);
            let back = read_outcome(&mut reader).expect("decodes");
            reader.finish().expect("no trailing bytes");
            assert_eq!(back, outcome);
            // Scales survive (1.50000000 stays 8 decimals).
            assert_eq!(format!("{back:?}"), format!("{outcome:?}"));
            // Truncation is an error, never a panic.
            for cut in 0..bytes.len() {
                assert!(read_outcome(&mut Reader::new(&bytes[..cut])).is_err());
            }
        }
    }

    #[test]
    fn perp_events_round_trip() {
        let d = |s: &str| Decimal::from_str(s).expect("decimal");
        let outcome = Outcome::Applied {
            events: vec![
                Event::MarketCreated {
                    market: "BTC-PERP".into(),
                    base: "BTC".into(),
                    settle_asset: "USDT".into(),
                },
                Event::MarketPaused {
                    market: "BTC-PERP".into(),
                    paused: true,
                },
                Event::MarkPrice {
                    market: "BTC-PERP".into(),
                    price: d("100.5"),
                    time_ms: 7,
                },
                Event::PerpFill {
                    market: "BTC-PERP".into(),
                    buyer: 1,
                    seller: 2,
                    size: d("0.010"),
                    price: d("100.0"),
                    buyer_fee: d("0.000000"),
                    seller_fee: d("0.010000"),
                },
                Event::Position {
                    market: "BTC-PERP".into(),
                    holder: Owner::Insurance,
                    counterparty: Owner::Account(3),
                    cause: PositionCause::Takeover,
                    size_delta: d("-0.010"),
                    price: d("90.91300"),
                    size: d("0.000"),
                    entry_price: d("0"),
                    realized_pnl: d("-1.250000"),
                },
                Event::Pool {
                    market: "BTC-PERP".into(),
                    asset: "USDT".into(),
                    delta: d("1.25"),
                    balance: d("-3"),
                },
                Event::Funding {
                    market: "BTC-PERP".into(),
                    rate: d("-0.00012345"),
                    funding_time_ms: 28_800_000,
                    mark_price: d("100.3"),
                    paid: d("1"),
                    received: d("0.9"),
                    residue: d("0.1"),
                    uncollected: d("0"),
                },
                Event::FundingPayment {
                    market: "BTC-PERP".into(),
                    holder: Owner::Account(1),
                    amount: d("-0.5"),
                },
                Event::Liquidation {
                    account: 4,
                    asset: "USDT".into(),
                    equity: d("-100"),
                    maintenance_margin: d("89"),
                    fee: d("0"),
                },
                Event::Shortfall {
                    account: 4,
                    asset: "USDT".into(),
                    amount: d("100"),
                },
            ],
        };
        let mut bytes = Vec::new();
        put_outcome(&mut bytes, &outcome);
        let mut reader = Reader::new(&bytes);
        let back = read_outcome(&mut reader).expect("decodes");
        reader.finish().expect("no trailing bytes");
        assert_eq!(format!("{back:?}"), format!("{outcome:?}"));
        for cut in 0..bytes.len() {
            assert!(read_outcome(&mut Reader::new(&bytes[..cut])).is_err());
        }
    }

    #[test]
    fn fingerprint_ignores_trailing_zeros_but_not_values() {
        let deposit = |amount: &str| Command::Deposit {
            account: 1,
            asset: "BTC".into(),
            amount: Decimal::from_str(amount).expect("decimal"),
        };
        assert_eq!(fingerprint(&deposit("1.5")), fingerprint(&deposit("1.50")));
        assert_ne!(fingerprint(&deposit("1.5")), fingerprint(&deposit("1.6")));
        assert_ne!(
            fingerprint(&Command::Release { hold: 1 }),
            fingerprint(&Command::CreateAccount { account: 1 })
        );
    }
}
