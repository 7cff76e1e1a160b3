//! Conversions between the gRPC messages (`tally.v1`) and the engine's
//! commands, outcomes and views: the only place the proto meets the engine.
//! Malformed input (bad decimal strings, missing fields) is refused here
//! with a `ConvertError`, before it reaches Raft. An amount string becomes
//! an exact decimal here, once (never rounded); the engine turns it into
//! minor units of its asset's scale, which only the replicated state knows.

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
    BadDecimal {
        field: &'static str,
        value: String,
        message: String,
    },
    /// A well-formed decimal with more integer digits than any amount can
    /// have (the engine's bound is 10^28 minor units).
    #[error("{field}: '{value}' is too large ({integer_digits} integer digits)")]
    TooManyIntegerDigits {
        field: &'static str,
        value: String,
        integer_digits: usize,
    },
    /// A well-formed decimal with more decimal places than can be held
    /// exactly at its magnitude (never rounded).
    #[error("{field}: '{value}' has too many decimal places ({decimal_places}) to be held exactly")]
    TooManyDecimals {
        field: &'static str,
        value: String,
        decimal_places: usize,
    },
    #[error("{field}: {value} is not a known wallet (0 spot, 1 funding, 2 margin)")]
    UnknownWallet { field: &'static str, value: i32 },
}

impl ConvertError {
    /// Machine-readable reason for the gRPC edge: the engine's own codes
    /// for numbers that do not fit (`AMOUNT_TOO_LARGE`, `BAD_PRECISION`),
    /// so a value gets the same reason whether it is caught here or in the
    /// engine; `MALFORMED_DECIMAL` only for text that is not a decimal.
    pub fn reason(&self) -> &'static str {
        match self {
            ConvertError::Missing { .. } => "MISSING_FIELD",
            ConvertError::BadDecimal { .. } => "MALFORMED_DECIMAL",
            ConvertError::TooManyIntegerDigits { .. } => "AMOUNT_TOO_LARGE",
            ConvertError::TooManyDecimals { .. } => "BAD_PRECISION",
            ConvertError::UnknownWallet { .. } => "UNKNOWN_WALLET",
        }
    }
}

/// Most integer digits a decimal can have and still parse: `Decimal`'s
/// 96-bit mantissa holds every 28-digit integer (and some of 29, which the
/// engine then refuses as `AMOUNT_TOO_LARGE` against its 10^28 bound).
const MAX_INTEGER_DIGITS: usize = 28;

/// Splits a decimal string into its integer and fraction digits if it is
/// syntactically a decimal number (an optional sign, digits, at most one
/// `.`, at least one digit), whatever its size.
fn decimal_digits(value: &str) -> Option<(&str, &str)> {
    let unsigned = value
        .strip_prefix('-')
        .or_else(|| value.strip_prefix('+'))
        .unwrap_or(value);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    (all_digits(int) && all_digits(frac) && !(int.is_empty() && frac.is_empty()))
        .then_some((int, frac))
}

/// Why a well-formed decimal string does not fit: too many integer digits
/// (`AMOUNT_TOO_LARGE`) or else too many decimals (`BAD_PRECISION`).
fn does_not_fit(field: &'static str, value: &str, int: &str, frac: &str) -> ConvertError {
    let significant = int.trim_start_matches('0').len();
    // Over-long with the integer part the longer one: padded with zeros.
    let padded = value.len() > MAX_DECIMAL_CHARS && int.len() >= frac.len();
    let value: String = value.chars().take(80).collect();
    if significant > MAX_INTEGER_DIGITS || padded {
        ConvertError::TooManyIntegerDigits {
            field,
            value,
            integer_digits: if padded { int.len() } else { significant },
        }
    } else {
        ConvertError::TooManyDecimals {
            field,
            value,
            decimal_places: frac.len(),
        }
    }
}

pub(crate) fn decimal(field: &'static str, value: &str) -> Result<Decimal, ConvertError> {
    let bad = |message: String| ConvertError::BadDecimal {
        field,
        value: value.chars().take(80).collect(),
        message,
    };
    if value.is_empty() {
        return Err(ConvertError::Missing { field });
    }
    let Some((int, frac)) = decimal_digits(value) else {
        if value.len() > MAX_DECIMAL_CHARS {
            return Err(bad(format!("longer than {MAX_DECIMAL_CHARS} characters")));
        }
        return Err(bad(
            "only digits, at most one '.', and a sign are allowed".into()
        ));
    };
    if value.len() > MAX_DECIMAL_CHARS {
        return Err(does_not_fit(field, value, int, frac));
    }
    // Exact parse: a value that would need rounding to fit is an error, never
    // rounded. The syntax is checked above, so a failure here is about size.
    Decimal::from_str_exact(value).map_err(|e| match decimal_digits(value) {
        Some((int, frac)) => does_not_fit(field, value, int, frac),
        None => bad(e.to_string()),
    })
}

pub(crate) fn fee(field: &'static str, value: &str) -> Result<Decimal, ConvertError> {
    if value.is_empty() {
        Ok(Decimal::ZERO)
    } else {
        decimal(field, value)
    }
}

/// A gRPC market spec as the engine's `CreateMarket` (also carried by
/// `CreateDatedFuture` and `CreateInverseMarket`).
pub(crate) fn create_market(c: &pb::CreateMarket) -> Result<ledger::CreateMarket, ConvertError> {
    Ok(ledger::CreateMarket {
        market: c.market.clone(),
        base: c.base.clone(),
        settle_asset: c.settle_asset.clone(),
        tick_size: decimal("tick_size", &c.tick_size)?,
        step_size: decimal("step_size", &c.step_size)?,
        max_leverage: c.max_leverage,
        brackets: c
            .brackets
            .iter()
            .map(|b| {
                Ok(ledger::MarginBracket {
                    notional_floor: fee("notional_floor", &b.notional_floor)?,
                    maintenance_margin_rate: decimal(
                        "maintenance_margin_rate",
                        &b.maintenance_margin_rate,
                    )?,
                    max_leverage: b.max_leverage,
                })
            })
            .collect::<Result<_, ConvertError>>()?,
        liquidation_fee_rate: fee("liquidation_fee_rate", &c.liquidation_fee_rate)?,
        funding_interval_ms: c.funding_interval_ms,
    })
}

/// Turns a gRPC command into the engine's envelope.
pub fn envelope(cmd: &pb::Command) -> Result<ledger::Envelope, ConvertError> {
    use pb::command::Body;
    let body = cmd.body.as_ref().ok_or(ConvertError::Missing {
        field: "command.body",
    })?;
    let command: ledger::Command = match body {
        Body::CreateAsset(c) => ledger::CreateAsset {
            symbol: c.symbol.clone(),
            scale: c.scale,
        }
        .into(),
        Body::CreateAccount(c) => ledger::CreateAccount { account: c.account }.into(),
        Body::Deposit(c) => ledger::Deposit {
            account: c.account,
            asset: c.asset.clone(),
            amount: decimal("amount", &c.amount)?,
        }
        .into(),
        Body::Withdraw(c) => ledger::Withdraw {
            account: c.account,
            asset: c.asset.clone(),
            amount: decimal("amount", &c.amount)?,
        }
        .into(),
        Body::Lock(c) => ledger::Lock {
            hold: c.hold,
            account: c.account,
            asset: c.asset.clone(),
            amount: decimal("amount", &c.amount)?,
        }
        .into(),
        Body::Release(c) => ledger::Release { hold: c.hold }.into(),
        Body::Fill(c) => ledger::Fill {
            buy_hold: c.buy_hold,
            sell_hold: c.sell_hold,
            base_amount: decimal("base_amount", &c.base_amount)?,
            price: decimal("price", &c.price)?,
            buyer_fee: fee("buyer_fee", &c.buyer_fee)?,
            seller_fee: fee("seller_fee", &c.seller_fee)?,
        }
        .into(),
        Body::Transfer(c) => ledger::Transfer {
            from: c.from,
            to: c.to,
            asset: c.asset.clone(),
            amount: decimal("amount", &c.amount)?,
        }
        .into(),
        Body::CreateMarket(c) => create_market(c)?.into(),
        Body::SetMarketPaused(c) => ledger::SetMarketPaused {
            market: c.market.clone(),
            paused: c.paused,
        }
        .into(),
        Body::SetMarkPrice(c) => ledger::SetMarkPrice {
            market: c.market.clone(),
            price: decimal("price", &c.price)?,
        }
        .into(),
        Body::ApplyFunding(c) => ledger::ApplyFunding {
            market: c.market.clone(),
            rate: decimal("rate", &c.rate)?,
            funding_time_ms: c.funding_time_ms,
        }
        .into(),
        Body::PerpFill(c) => ledger::PerpFill {
            market: c.market.clone(),
            buyer: c.buyer,
            seller: c.seller,
            size: decimal("size", &c.size)?,
            price: decimal("price", &c.price)?,
            buyer_fee: fee("buyer_fee", &c.buyer_fee)?,
            seller_fee: fee("seller_fee", &c.seller_fee)?,
        }
        .into(),
        // The bounds are the engine's (INVALID_DEDUP_WINDOW): a replicated,
        // remembered rejection like any other.
        Body::SetDedupWindow(c) => ledger::SetDedupWindow {
            window_ms: c.window_ms,
        }
        .into(),
        Body::FundInsurance(c) => ledger::FundInsurance {
            account: c.account,
            asset: c.asset.clone(),
            amount: decimal("amount", &c.amount)?,
        }
        .into(),
        Body::AssertBalance(c) => ledger::AssertBalance {
            account: c.account,
            asset: c.asset.clone(),
            available: decimal("available", &c.available)?,
            locked: decimal("locked", &c.locked)?,
        }
        .into(),
        other => match crate::grpc::convert_accounts::command(other)
            .or_else(|| crate::grpc::convert_derivatives::command(other))
        {
            Some(command) => command?,
            None => {
                return Err(ConvertError::Missing {
                    field: "command.body",
                });
            }
        },
    };
    Ok(ledger::Envelope {
        command_id: ledger::CommandId(cmd.command_id.clone()),
        command,
    })
}

/// The engine's owner as a gRPC owner.
pub fn owner_to_pb(owner: ledger::Owner) -> pb::Owner {
    match owner {
        ledger::Owner::Account(account) => pb::Owner {
            kind: pb::OwnerKind::Account as i32,
            account,
            wallet: pb::Wallet::Spot as i32,
        },
        ledger::Owner::Funding(account) => pb::Owner {
            kind: pb::OwnerKind::Account as i32,
            account,
            wallet: pb::Wallet::Funding as i32,
        },
        ledger::Owner::Margin(account) => pb::Owner {
            kind: pb::OwnerKind::Account as i32,
            account,
            wallet: pb::Wallet::Margin as i32,
        },
        ledger::Owner::External => pb::Owner {
            kind: pb::OwnerKind::External as i32,
            account: 0,
            wallet: 0,
        },
        ledger::Owner::Fees => pb::Owner {
            kind: pb::OwnerKind::Fees as i32,
            account: 0,
            wallet: 0,
        },
        ledger::Owner::Insurance => pb::Owner {
            kind: pb::OwnerKind::Insurance as i32,
            account: 0,
            wallet: 0,
        },
    }
}

/// A gRPC owner as the engine's owner.
pub fn owner_from_pb(owner: Option<&pb::Owner>) -> Result<ledger::Owner, ConvertError> {
    let owner = owner.ok_or(ConvertError::Missing { field: "owner" })?;
    Ok(
        match pb::OwnerKind::try_from(owner.kind).unwrap_or(pb::OwnerKind::Account) {
            pb::OwnerKind::Account => ledger::Owner::wallet(
                owner.account,
                crate::grpc::convert_accounts::wallet_from_pb("owner.wallet", owner.wallet)?,
            ),
            pb::OwnerKind::External => ledger::Owner::External,
            pb::OwnerKind::Fees => ledger::Owner::Fees,
            pb::OwnerKind::Insurance => ledger::Owner::Insurance,
        },
    )
}

pub fn event_to_pb(event: &ledger::Event) -> pb::Event {
    use pb::event::Kind;
    let kind = match event {
        ledger::Event::AssetCreated { symbol, scale } => Kind::AssetCreated(pb::CreateAsset {
            symbol: symbol.clone(),
            scale: *scale,
        }),
        ledger::Event::AccountCreated { account } => {
            Kind::AccountCreated(pb::CreateAccount { account: *account })
        }
        ledger::Event::Balance(b) => Kind::Balance(pb::BalanceChange {
            owner: Some(owner_to_pb(b.owner)),
            asset: b.asset.clone(),
            available_delta: b.available_delta.to_string(),
            locked_delta: b.locked_delta.to_string(),
            available: b.available.to_string(),
            locked: b.locked.to_string(),
        }),
        ledger::Event::Hold {
            hold,
            account,
            asset,
            remaining,
            closed,
        } => Kind::Hold(pb::HoldEvent {
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
        ledger::Event::MarketCreated {
            market,
            base,
            settle_asset,
        } => Kind::MarketCreated(pb::MarketCreatedEvent {
            market: market.clone(),
            base: base.clone(),
            settle_asset: settle_asset.clone(),
        }),
        ledger::Event::MarketPaused { market, paused } => {
            Kind::MarketPaused(pb::MarketPausedEvent {
                market: market.clone(),
                paused: *paused,
            })
        }
        ledger::Event::MarkPrice {
            market,
            price,
            time_ms,
            delta,
        } => Kind::MarkPrice(pb::MarkPriceEvent {
            market: market.clone(),
            price: price.to_string(),
            time_ms: *time_ms,
            delta: delta.map(|d| d.to_string()).unwrap_or_default(),
        }),
        ledger::Event::PerpFill {
            market,
            buyer,
            seller,
            size,
            price,
            buyer_fee,
            seller_fee,
        } => Kind::PerpFill(pb::PerpFillEvent {
            market: market.clone(),
            buyer: *buyer,
            seller: *seller,
            size: size.to_string(),
            price: price.to_string(),
            buyer_fee: buyer_fee.to_string(),
            seller_fee: seller_fee.to_string(),
        }),
        ledger::Event::Position {
            market,
            holder,
            counterparty,
            cause,
            size_delta,
            price,
            size,
            entry_price,
            realized_pnl,
        } => Kind::Position(pb::PositionEvent {
            market: market.clone(),
            holder: Some(owner_to_pb(*holder)),
            counterparty: Some(owner_to_pb(*counterparty)),
            cause: cause_to_pb(*cause) as i32,
            size_delta: size_delta.to_string(),
            price: price.to_string(),
            size: size.to_string(),
            entry_price: entry_price.to_string(),
            realized_pnl: realized_pnl.to_string(),
        }),
        ledger::Event::Pool {
            market,
            asset,
            delta,
            balance,
        } => Kind::Pool(pb::PoolEvent {
            market: market.clone(),
            asset: asset.clone(),
            delta: delta.to_string(),
            balance: balance.to_string(),
        }),
        ledger::Event::Funding {
            market,
            rate,
            funding_time_ms,
            mark_price,
            paid,
            received,
            residue,
            uncollected,
        } => Kind::Funding(pb::FundingEvent {
            market: market.clone(),
            rate: rate.to_string(),
            funding_time_ms: *funding_time_ms,
            mark_price: mark_price.to_string(),
            paid: paid.to_string(),
            received: received.to_string(),
            residue: residue.to_string(),
            uncollected: uncollected.to_string(),
        }),
        ledger::Event::FundingPayment {
            market,
            holder,
            amount,
        } => Kind::FundingPayment(pb::FundingPaymentEvent {
            market: market.clone(),
            holder: Some(owner_to_pb(*holder)),
            amount: amount.to_string(),
        }),
        ledger::Event::LiquidationsDeferred {
            asset,
            liquidated,
            checked,
        } => Kind::LiquidationsDeferred(pb::LiquidationsDeferredEvent {
            asset: asset.clone(),
            liquidated: *liquidated,
            checked: *checked,
        }),
        ledger::Event::Liquidation {
            account,
            asset,
            equity,
            maintenance_margin,
            fee,
        } => Kind::Liquidation(pb::LiquidationEvent {
            account: *account,
            asset: asset.clone(),
            equity: equity.to_string(),
            maintenance_margin: maintenance_margin.to_string(),
            fee: fee.to_string(),
        }),
        ledger::Event::Shortfall {
            account,
            asset,
            amount,
        } => Kind::Shortfall(pb::ShortfallEvent {
            account: *account,
            asset: asset.clone(),
            amount: amount.to_string(),
        }),
        ledger::Event::DedupWindowSet { window_ms } => {
            Kind::DedupWindowSet(pb::DedupWindowSetEvent {
                window_ms: *window_ms,
            })
        }
        other => match crate::grpc::convert_accounts::event(other)
            .or_else(|| crate::grpc::convert_derivatives::event(other))
        {
            Some(kind) => kind,
            // Every engine event has a proto form (convert_accounts covers
            // the rest); an unconverted one is a build mistake caught by the
            // conversion tests, not input.
            None => return pb::Event { kind: None },
        },
    };
    pb::Event { kind: Some(kind) }
}

fn cause_to_pb(cause: ledger::PositionCause) -> pb::PositionCause {
    match cause {
        ledger::PositionCause::Fill => pb::PositionCause::Fill,
        ledger::PositionCause::Liquidation => pb::PositionCause::Liquidation,
        ledger::PositionCause::Deleverage => pb::PositionCause::Deleverage,
        ledger::PositionCause::Takeover => pb::PositionCause::Takeover,
        ledger::PositionCause::Mark => pb::PositionCause::Mark,
        ledger::PositionCause::Settlement => pb::PositionCause::Settlement,
    }
}

fn opt_string(value: Option<Decimal>) -> String {
    value.map(|d| d.to_string()).unwrap_or_default()
}

/// A market view as the gRPC market.
pub fn market_to_pb(m: &ledger::MarketView) -> pb::Market {
    pb::Market {
        market: m.market.clone(),
        base: m.base.clone(),
        settle_asset: m.settle_asset.clone(),
        tick_size: m.tick_size.to_string(),
        step_size: m.step_size.to_string(),
        max_leverage: m.max_leverage,
        brackets: m
            .brackets
            .iter()
            .map(|b| pb::MarketBracket {
                notional_floor: b.notional_floor.to_string(),
                maintenance_margin_rate: b.maintenance_margin_rate.to_string(),
                max_leverage: b.max_leverage,
                maintenance_amount: b.maintenance_amount.to_string(),
            })
            .collect(),
        liquidation_fee_rate: m.liquidation_fee_rate.to_string(),
        funding_interval_ms: m.funding_interval_ms,
        paused: m.paused,
        mark_price: opt_string(m.mark_price),
        mark_time_ms: m.mark_time_ms.unwrap_or(0),
        funded: m.last_funding_time_ms.is_some(),
        last_funding_time_ms: m.last_funding_time_ms.unwrap_or(0),
        kind: m.kind.to_string(),
        expiry_ms: m.expiry_ms,
        delivery_fee_rate: m.delivery_fee_rate.to_string(),
        settlement_price: opt_string(m.settlement_price),
        underlying: m.underlying.clone().unwrap_or_default(),
        strike: opt_string(m.strike),
        contract_value: opt_string(m.contract_value),
    }
}

/// A position view as the gRPC position.
pub fn position_to_pb(p: &ledger::PositionView) -> pb::PositionInfo {
    pb::PositionInfo {
        market: p.market.clone(),
        account: p.account,
        size: p.size.to_string(),
        entry_price: p.entry_price.to_string(),
        mark_price: p.mark_price.to_string(),
        notional: p.notional.to_string(),
        unrealized_pnl: p.unrealized_pnl.to_string(),
        initial_margin: p.initial_margin.to_string(),
        maintenance_margin: p.maintenance_margin.to_string(),
        max_leverage: p.max_leverage,
        bracket: p.bracket,
        liquidation_price: opt_string(p.liquidation_price),
        isolated_margin: opt_string(p.isolated_margin),
    }
}

/// A margin view as the gRPC margin.
pub fn margin_to_pb(m: &ledger::MarginView) -> pb::Margin {
    pb::Margin {
        account: m.account,
        settle_asset: m.settle_asset.clone(),
        wallet_balance: m.wallet_balance.to_string(),
        unrealized_pnl: m.unrealized_pnl.to_string(),
        equity: m.equity.to_string(),
        initial_margin: m.initial_margin.to_string(),
        maintenance_margin: m.maintenance_margin.to_string(),
        margin_ratio: opt_string(m.margin_ratio),
        positions: m.positions.iter().map(position_to_pb).collect(),
    }
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
            message: r.message(),
            duplicate: result.duplicate,
            events: Vec::new(),
        },
    }
}

/// A command's verdict without events or the echoed id (`REPLY_DETAIL_VERDICT`).
pub fn verdict_to_pb(result: &ledger::ApplyResult) -> pb::CommandResult {
    match &result.outcome {
        ledger::Outcome::Applied { .. } => pb::CommandResult {
            applied: true,
            duplicate: result.duplicate,
            ..Default::default()
        },
        ledger::Outcome::Rejected(r) => pb::CommandResult {
            applied: false,
            reason: r.code.as_str().to_string(),
            message: r.message(),
            duplicate: result.duplicate,
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_decimals_are_refused_not_rounded() {
        for bad in [
            "",
            "abc",
            "1e5",
            "1.2.3",
            "0x10",
            "1,5",
            "NaN",
            "99999999999999999999999999999999999",
        ] {
            assert!(decimal("amount", bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(decimal("amount", "1.50").unwrap().to_string(), "1.50");
        assert_eq!(decimal("amount", "-2").unwrap(), Decimal::from(-2));
    }

    #[test]
    fn perp_commands_convert_with_defaults() {
        use pb::command::Body;
        let cmd = pb::Command {
            command_id: "m1".into(),
            body: Some(Body::CreateMarket(pb::CreateMarket {
                market: "BTC-PERP".into(),
                base: "BTC".into(),
                settle_asset: "USDT".into(),
                tick_size: "0.1".into(),
                step_size: "0.001".into(),
                max_leverage: 20,
                brackets: vec![pb::MarginBracket {
                    notional_floor: String::new(),
                    maintenance_margin_rate: "0.01".into(),
                    max_leverage: 20,
                }],
                liquidation_fee_rate: String::new(),
                funding_interval_ms: 28_800_000,
            })),
        };
        match envelope(&cmd).unwrap().command {
            ledger::Command::CreateMarket(ledger::CreateMarket {
                brackets,
                liquidation_fee_rate,
                ..
            }) => {
                assert_eq!(brackets[0].notional_floor, Decimal::ZERO);
                assert_eq!(liquidation_fee_rate, Decimal::ZERO);
            }
            other => panic!("{other:?}"),
        }
        let fill = pb::Command {
            command_id: "f1".into(),
            body: Some(Body::PerpFill(pb::PerpFill {
                market: "BTC-PERP".into(),
                buyer: 1,
                seller: 2,
                size: "0.5".into(),
                price: "1e3".into(),
                ..Default::default()
            })),
        };
        assert_eq!(envelope(&fill).unwrap_err().reason(), "MALFORMED_DECIMAL");
        let funding = pb::Command {
            command_id: "r1".into(),
            body: Some(Body::ApplyFunding(pb::ApplyFunding {
                market: "BTC-PERP".into(),
                rate: "-0.0001".into(),
                funding_time_ms: 1,
            })),
        };
        assert!(matches!(
            envelope(&funding).unwrap().command,
            ledger::Command::ApplyFunding(ledger::ApplyFunding { rate, .. }) if rate == Decimal::new(-1, 4)
        ));
    }

    #[test]
    fn set_dedup_window_converts_both_ways() {
        use pb::command::Body;
        let cmd = pb::Command {
            command_id: "w1".into(),
            body: Some(Body::SetDedupWindow(pb::SetDedupWindow {
                window_ms: 60_000,
            })),
        };
        assert_eq!(
            envelope(&cmd).unwrap().command,
            ledger::Command::SetDedupWindow(ledger::SetDedupWindow { window_ms: 60_000 })
        );
        let event = event_to_pb(&ledger::Event::DedupWindowSet { window_ms: 60_000 });
        assert_eq!(
            event.kind,
            Some(pb::event::Kind::DedupWindowSet(pb::DedupWindowSetEvent {
                window_ms: 60_000
            }))
        );
    }

    #[test]
    fn numbers_that_do_not_fit_are_too_large_or_bad_precision_not_malformed() {
        let reason = |v: &str| decimal("amount", v).map_err(|e| e.reason());
        let long_int = "9".repeat(29);
        let longer_int = "1".repeat(40);
        let huge_int = "1".repeat(70);
        let long_frac = format!("0.{}1", "0".repeat(28));
        let huge_frac = format!("1.{}", "5".repeat(70));
        let mixed = "12345678901234567890.123456789012";
        let padded = format!("{}1", "0".repeat(70));
        for (value, want) in [
            (long_int.as_str(), "AMOUNT_TOO_LARGE"),
            (longer_int.as_str(), "AMOUNT_TOO_LARGE"),
            (huge_int.as_str(), "AMOUNT_TOO_LARGE"),
            (padded.as_str(), "AMOUNT_TOO_LARGE"),
            (long_frac.as_str(), "BAD_PRECISION"),
            (huge_frac.as_str(), "BAD_PRECISION"),
            (mixed, "BAD_PRECISION"),
            ("1.2.3", "MALFORMED_DECIMAL"),
            ("1e3", "MALFORMED_DECIMAL"),
            ("abc", "MALFORMED_DECIMAL"),
            ("-", "MALFORMED_DECIMAL"),
            (".", "MALFORMED_DECIMAL"),
            ("+-5", "MALFORMED_DECIMAL"),
        ] {
            assert_eq!(reason(value), Err(want), "{value}");
        }
        let garbage = format!("{}x", "1".repeat(70));
        assert_eq!(reason(&garbage), Err("MALFORMED_DECIMAL"));
        // What fits still parses exactly.
        let max_int = "9".repeat(28);
        assert!(decimal("amount", &max_int).is_ok());
        assert!(decimal("amount", "0.0000000000000000000000000001").is_ok());
        assert_eq!(decimal("amount", "-1.50").ok(), Some(Decimal::new(-150, 2)));
        let message = decimal("amount", &long_int).map_err(|e| e.to_string());
        assert!(
            message.as_ref().is_err_and(|m| m.contains("too large")),
            "{message:?}"
        );
    }

    #[test]
    fn command_without_body_is_refused() {
        let cmd = pb::Command {
            command_id: "c1".into(),
            body: None,
        };
        assert_eq!(envelope(&cmd).unwrap_err().reason(), "MISSING_FIELD");
    }
}
