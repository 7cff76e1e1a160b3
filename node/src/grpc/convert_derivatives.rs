//! Conversions of dated futures, options, perpetual options, premium-index
//! funding and inverse markets between the gRPC messages and the engine:
//! their commands and events (`tally.v1` ledger.proto, cluster version 2).
//! Kept apart from `convert` (which calls in here), like `convert_accounts`.

use tally_ledger as ledger;
use tally_proto::v1 as pb;

use crate::grpc::convert::{ConvertError, create_market, decimal, fee};

/// The `CreateMarket` spec a dated future or inverse market carries.
fn spec(market: Option<&pb::CreateMarket>) -> Result<ledger::CreateMarket, ConvertError> {
    let market = market.ok_or(ConvertError::Missing { field: "market" })?;
    create_market(market)
}

/// The engine command of a derivatives body, or `None` for any other.
pub fn command(body: &pb::command::Body) -> Option<Result<ledger::Command, ConvertError>> {
    use pb::command::Body;
    let command = || -> Result<Option<ledger::Command>, ConvertError> {
        Ok(Some(match body {
            Body::CreateDatedFuture(c) => ledger::CreateDatedFuture {
                market: spec(c.market.as_ref())?,
                expiry_ms: c.expiry_ms,
                delivery_fee_rate: fee("delivery_fee_rate", &c.delivery_fee_rate)?,
            }
            .into(),
            Body::SettleFuture(c) => ledger::SettleFuture {
                market: c.market.clone(),
                price: decimal("price", &c.price)?,
            }
            .into(),
            Body::CreateOption(c) => ledger::CreateOption {
                market: c.market.clone(),
                underlying: c.underlying.clone(),
                call: c.call,
                strike: decimal("strike", &c.strike)?,
                expiry_ms: c.expiry_ms,
                tick_size: decimal("tick_size", &c.tick_size)?,
                step_size: decimal("step_size", &c.step_size)?,
                im_rate: decimal("im_rate", &c.im_rate)?,
                im_floor_rate: decimal("im_floor_rate", &c.im_floor_rate)?,
                mm_rate: decimal("mm_rate", &c.mm_rate)?,
                fee_cap_rate: fee("fee_cap_rate", &c.fee_cap_rate)?,
                delivery_fee_rate: fee("delivery_fee_rate", &c.delivery_fee_rate)?,
                liquidation_fee_rate: fee("liquidation_fee_rate", &c.liquidation_fee_rate)?,
                funding_interval_ms: c.funding_interval_ms,
                funding_period_ms: c.funding_period_ms,
            }
            .into(),
            Body::ExerciseOption(c) => ledger::ExerciseOption {
                market: c.market.clone(),
                price: decimal("price", &c.price)?,
            }
            .into(),
            Body::ApplyOptionFunding(c) => ledger::ApplyOptionFunding {
                market: c.market.clone(),
                funding_time_ms: c.funding_time_ms,
            }
            .into(),
            Body::ApplyPremiumFunding(c) => ledger::ApplyPremiumFunding {
                market: c.market.clone(),
                funding_time_ms: c.funding_time_ms,
                premium_samples: c
                    .premium_samples
                    .iter()
                    .map(|s| decimal("premium_samples", s))
                    .collect::<Result<_, _>>()?,
                interest_rate: fee("interest_rate", &c.interest_rate)?,
            }
            .into(),
            Body::SetOptionMark(c) => ledger::SetOptionMark {
                market: c.market.clone(),
                price: decimal("price", &c.price)?,
                delta: decimal("delta", &c.delta)?,
            }
            .into(),
            Body::SetFundingClamp(c) => ledger::SetFundingClamp {
                market: c.market.clone(),
                clamp_rate: decimal("clamp_rate", &c.clamp_rate)?,
            }
            .into(),
            Body::CreateInverseMarket(c) => ledger::CreateInverseMarket {
                market: spec(c.market.as_ref())?,
                contract_value: decimal("contract_value", &c.contract_value)?,
                expiry_ms: c.expiry_ms,
                delivery_fee_rate: fee("delivery_fee_rate", &c.delivery_fee_rate)?,
            }
            .into(),
            _ => return Ok(None),
        }))
    };
    command().transpose()
}

/// The proto event of a derivatives event, or `None` for any other.
pub fn event(event: &ledger::Event) -> Option<pb::event::Kind> {
    use pb::event::Kind;
    Some(match event {
        ledger::Event::Settlement {
            market,
            price,
            time_ms,
            positions,
            realized,
            delivery_fees,
        } => Kind::Settlement(pb::SettlementEvent {
            market: market.clone(),
            price: price.to_string(),
            time_ms: *time_ms,
            positions: *positions,
            realized: realized.to_string(),
            delivery_fees: delivery_fees.to_string(),
        }),
        ledger::Event::OptionFunding {
            market,
            funding_time_ms,
            mark_price,
            underlying_price,
            time_value,
            elapsed_ms,
            period_ms,
            paid,
            received,
            residue,
            uncollected,
        } => Kind::OptionFunding(pb::OptionFundingEvent {
            market: market.clone(),
            funding_time_ms: *funding_time_ms,
            mark_price: mark_price.to_string(),
            underlying_price: underlying_price.to_string(),
            time_value: time_value.to_string(),
            elapsed_ms: *elapsed_ms,
            period_ms: *period_ms,
            paid: paid.to_string(),
            received: received.to_string(),
            residue: residue.to_string(),
            uncollected: uncollected.to_string(),
        }),
        ledger::Event::FundingRate {
            market,
            samples,
            premium_index,
            interest_rate,
            clamp_rate,
            rate,
        } => Kind::FundingRate(pb::FundingRateEvent {
            market: market.clone(),
            samples: *samples,
            premium_index: premium_index.to_string(),
            interest_rate: interest_rate.to_string(),
            clamp_rate: clamp_rate.to_string(),
            rate: rate.to_string(),
        }),
        _ => return None,
    })
}

/// A delta-exposure view as the gRPC message.
pub fn delta_to_pb(v: &ledger::DeltaView) -> pb::DeltaExposure {
    pb::DeltaExposure {
        underlying: v.underlying.clone(),
        futures_delta: v.futures_delta.to_string(),
        delta_low: v.delta_low.to_string(),
        delta_high: v.delta_high.to_string(),
        long_calls: v.long_calls.to_string(),
        short_calls: v.short_calls.to_string(),
        long_puts: v.long_puts.to_string(),
        short_puts: v.short_puts.to_string(),
        delta: v.delta.to_string(),
        options_delta: v.options_delta.to_string(),
        options_without_delta: v.options_without_delta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(body: pb::command::Body) -> Result<ledger::Envelope, ConvertError> {
        crate::grpc::convert::envelope(&pb::Command {
            command_id: "d-1".into(),
            body: Some(body),
        })
    }

    #[test]
    fn derivatives_commands_convert_with_defaults_and_events_back() {
        use pb::command::Body;
        let settle = envelope(Body::SettleFuture(pb::SettleFuture {
            market: "BTC-0327".into(),
            price: "30000.5".into(),
        }))
        .expect("converts");
        assert_eq!(
            settle.command,
            ledger::SettleFuture {
                market: "BTC-0327".into(),
                price: "30000.5".parse().expect("decimal"),
            }
            .into()
        );
        let premium = envelope(Body::ApplyPremiumFunding(pb::ApplyPremiumFunding {
            market: "BTC-PERP".into(),
            funding_time_ms: 28_800_000,
            premium_samples: vec!["0.0001".into(), "-0.0002".into()],
            interest_rate: String::new(),
        }))
        .expect("converts");
        let ledger::Command::ApplyPremiumFunding(p) = premium.command else {
            panic!("not premium funding")
        };
        assert_eq!(
            (p.premium_samples.len(), p.interest_rate),
            (2, ledger::Decimal::ZERO)
        );
        // An option mark needs its delta: an empty one is refused.
        let mark = |delta: &str| {
            envelope(Body::SetOptionMark(pb::SetOptionMark {
                market: "BTC-C-30000".into(),
                price: "1200".into(),
                delta: delta.into(),
            }))
        };
        assert!(mark("").is_err());
        let ledger::Command::SetOptionMark(m) = mark("0.55").expect("converts").command else {
            panic!("not an option mark")
        };
        assert_eq!(m.delta, "0.55".parse().expect("decimal"));
        // A dated future without its market spec is refused, not defaulted.
        assert!(
            envelope(Body::CreateDatedFuture(pb::CreateDatedFuture {
                market: None,
                expiry_ms: 5,
                delivery_fee_rate: String::new(),
            }))
            .is_err()
        );
        let kind = event(&ledger::Event::Settlement {
            market: "BTC-0327".into(),
            price: "80".parse().expect("decimal"),
            time_ms: 7,
            positions: 3,
            realized: "300".parse().expect("decimal"),
            delivery_fees: "1".parse().expect("decimal"),
        });
        assert!(
            matches!(kind, Some(pb::event::Kind::Settlement(s)) if s.positions == 3 && s.realized == "300")
        );
    }
}
