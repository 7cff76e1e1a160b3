//! Conversions between the gRPC messages (`tally.v1`) and the engine's
//! commands and outcomes. Malformed input (bad decimal strings, missing
//! fields) is refused here with a `ConvertError`, before it reaches Raft.

use rust_decimal::Decimal;
use tally_ledger as ledger;
use tally_proto::v1 as pb;

/// Longest decimal string accepted for an amount or price.
pub const MAX_DECIMAL_CHARS: usize = 64;

/// A request that cannot be turned into a command.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{field}: missing")]
    Missing { field: &'static str },
    #[error("{field}: '{value}' is not a decimal number ({message})")]
    BadDecimal { field: &'static str, value: String, message: String },
}

impl ConvertError {
    /// Machine-readable reason for the gRPC edge.
    pub fn reason(&self) -> &'static str {
        match self {
            ConvertError::Missing { .. } => "MISSING_FIELD",
            ConvertError::BadDecimal { .. } => "MALFORMED_DECIMAL",
        }
    }
}

fn decimal(field: &'static str, value: &str) -> Result<Decimal, ConvertError> {
    let bad = |message: String| ConvertError::BadDecimal { field, value: value.chars().take(80).collect(), message };
    if value.is_empty() {
        return Err(ConvertError::Missing { field });
    }
    if value.len() > MAX_DECIMAL_CHARS {
        return Err(bad(format!("longer than {MAX_DECIMAL_CHARS} characters")));
    }
    if !value.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+') {
        return Err(bad("only digits, one '.', and a sign are allowed".into()));
    }
    // Exact parse: a value that would need rounding to fit is an error, never rounded.
    Decimal::from_str_exact(value).map_err(|e| bad(e.to_string()))
}

fn fee(field: &'static str, value: &str) -> Result<Decimal, ConvertError> {
    if value.is_empty() { Ok(Decimal::ZERO) } else { decimal(field, value) }
}

/// Turns a gRPC command into the engine's envelope.
pub fn envelope(cmd: &pb::Command) -> Result<ledger::Envelope, ConvertError> {
    use pb::command::Body;
    let body = cmd.body.as_ref().ok_or(ConvertError::Missing { field: "command.body" })?;
    let command = match body {
        Body::CreateAsset(c) => ledger::Command::CreateAsset { symbol: c.symbol.clone(), scale: c.scale },
        Body::CreateAccount(c) => ledger::Command::CreateAccount { account: c.account },
        Body::Deposit(c) => ledger::Command::Deposit {
            account: c.account,
            asset: c.asset.clone(),
            amount: decimal("amount", &c.amount)?,
        },
        Body::Withdraw(c) => ledger::Command::Withdraw {
            account: c.account,
            asset: c.asset.clone(),
            amount: decimal("amount", &c.amount)?,
        },
        Body::Lock(c) => ledger::Command::Lock {
            hold: c.hold,
            account: c.account,
            asset: c.asset.clone(),
            amount: decimal("amount", &c.amount)?,
        },
        Body::Release(c) => ledger::Command::Release { hold: c.hold },
        Body::Fill(c) => ledger::Command::Fill {
            buy_hold: c.buy_hold,
            sell_hold: c.sell_hold,
            base_amount: decimal("base_amount", &c.base_amount)?,
            price: decimal("price", &c.price)?,
            buyer_fee: fee("buyer_fee", &c.buyer_fee)?,
            seller_fee: fee("seller_fee", &c.seller_fee)?,
        },
        Body::Transfer(c) => ledger::Command::Transfer {
            from: c.from,
            to: c.to,
            asset: c.asset.clone(),
            amount: decimal("amount", &c.amount)?,
        },
    };
    Ok(ledger::Envelope { command_id: ledger::CommandId(cmd.command_id.clone()), command })
}

/// The engine's owner as a gRPC owner.
pub fn owner_to_pb(owner: ledger::Owner) -> pb::Owner {
    match owner {
        ledger::Owner::Account(account) => pb::Owner { kind: pb::OwnerKind::Account as i32, account },
        ledger::Owner::External => pb::Owner { kind: pb::OwnerKind::External as i32, account: 0 },
        ledger::Owner::Fees => pb::Owner { kind: pb::OwnerKind::Fees as i32, account: 0 },
        ledger::Owner::Insurance => pb::Owner { kind: pb::OwnerKind::Insurance as i32, account: 0 },
    }
}

/// A gRPC owner as the engine's owner.
pub fn owner_from_pb(owner: Option<&pb::Owner>) -> Result<ledger::Owner, ConvertError> {
    let owner = owner.ok_or(ConvertError::Missing { field: "owner" })?;
    Ok(match pb::OwnerKind::try_from(owner.kind).unwrap_or(pb::OwnerKind::Account) {
        pb::OwnerKind::Account => ledger::Owner::Account(owner.account),
        pb::OwnerKind::External => ledger::Owner::External,
        pb::OwnerKind::Fees => ledger::Owner::Fees,
        pb::OwnerKind::Insurance => ledger::Owner::Insurance,
    })
}

fn event_to_pb(event: &ledger::Event) -> pb::Event {
    use pb::event::Kind;
    let kind = match event {
        ledger::Event::AssetCreated { symbol, scale } => {
            Kind::AssetCreated(pb::CreateAsset { symbol: symbol.clone(), scale: *scale })
        }
        ledger::Event::AccountCreated { account } => Kind::AccountCreated(pb::CreateAccount { account: *account }),
        ledger::Event::Balance(b) => Kind::Balance(pb::BalanceChange {
            owner: Some(owner_to_pb(b.owner)),
            asset: b.asset.clone(),
            available_delta: b.available_delta.to_string(),
            locked_delta: b.locked_delta.to_string(),
            available: b.available.to_string(),
            locked: b.locked.to_string(),
        }),
        ledger::Event::Hold { hold, account, asset, remaining, closed } => Kind::Hold(pb::HoldEvent {
            hold: *hold,
            account: *account,
            asset: asset.clone(),
            remaining: remaining.to_string(),
            closed: *closed,
        }),
        ledger::Event::Fill {
            buyer,
            seller,
            base_asset,
            quote_asset,
            base_amount,
            quote_amount,
            buyer_fee,
            seller_fee,
        } => Kind::Fill(pb::FillEvent {
            buyer: *buyer,
            seller: *seller,
            base_asset: base_asset.clone(),
            quote_asset: quote_asset.clone(),
            base_amount: base_amount.to_string(),
            quote_amount: quote_amount.to_string(),
            buyer_fee: buyer_fee.to_string(),
            seller_fee: seller_fee.to_string(),
        }),
    };
    pb::Event { kind: Some(kind) }
}

/// An engine result as a gRPC command result.
pub fn result_to_pb(command_id: &str, result: &ledger::ApplyResult) -> pb::CommandResult {
    match &result.outcome {
        ledger::Outcome::Applied { events } => pb::CommandResult {
            command_id: command_id.to_string(),
            applied: true,
            reason: String::new(),
            message: String::new(),
            duplicate: result.duplicate,
            events: events.iter().map(event_to_pb).collect(),
        },
        ledger::Outcome::Rejected(r) => pb::CommandResult {
            command_id: command_id.to_string(),
            applied: false,
            reason: r.code.as_str().to_string(),
            message: r.message.clone(),
            duplicate: result.duplicate,
            events: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_decimals_are_refused_not_rounded() {
        for bad in ["", "abc", "1e5", "1.2.3", "0x10", "1,5", "NaN", "99999999999999999999999999999999999"] {
            assert!(decimal("amount", bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(decimal("amount", "1.50").unwrap().to_string(), "1.50");
        assert_eq!(decimal("amount", "-2").unwrap(), Decimal::from(-2));
    }

    #[test]
    fn command_without_body_is_refused() {
        let cmd = pb::Command { command_id: "c1".into(), body: None };
        assert_eq!(envelope(&cmd).unwrap_err().reason(), "MISSING_FIELD");
    }
}
