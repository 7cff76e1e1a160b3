//! Command builders for dated futures, options, perpetual options,
//! premium-index funding and inverse markets (ledger.proto, cluster
//! version 2), one function per command body, each stamping a fresh id
//! like [`crate::commands`].
//!
//! ```
//! use tally_client::derivatives;
//! let settle = derivatives::settle_future("BTC-0327", "30000.5");
//! assert!(settle.body.is_some());
//! ```

use tally_proto::v1::{
    ApplyOptionFunding, ApplyPremiumFunding, Command, CreateDatedFuture, CreateInverseMarket,
    CreateMarket, CreateOption, ExerciseOption, SetFundingClamp, SetOptionMark, SettleFuture,
    command::Body,
};

use crate::commands::{IntoAmount, command};

/// Creates a dated future: `spec` as for a perpetual (no funding applies),
/// expiring at leader time `expiry_ms`, charging `delivery_fee_rate` of
/// each notional at settlement.
pub fn create_dated_future(
    spec: CreateMarket,
    expiry_ms: u64,
    delivery_fee_rate: impl IntoAmount,
) -> Command {
    command(Body::CreateDatedFuture(CreateDatedFuture {
        market: Some(spec),
        expiry_ms,
        delivery_fee_rate: delivery_fee_rate.into_amount(),
    }))
}

/// Settles a dated future at one stated price (once, at or after expiry).
pub fn settle_future(market: impl Into<String>, price: impl IntoAmount) -> Command {
    command(Body::SettleFuture(SettleFuture {
        market: market.into(),
        price: price.into_amount(),
    }))
}

/// Creates an option market (`spec.expiry_ms` 0: a perpetual option).
pub fn create_option(spec: CreateOption) -> Command {
    command(Body::CreateOption(spec))
}

/// Exercises an expiring option at the underlying's settlement price.
pub fn exercise_option(market: impl Into<String>, price: impl IntoAmount) -> Command {
    command(Body::ExerciseOption(ExerciseOption {
        market: market.into(),
        price: price.into_amount(),
    }))
}

/// One perpetual-option funding round at `funding_time_ms`.
pub fn apply_option_funding(market: impl Into<String>, funding_time_ms: u64) -> Command {
    command(Body::ApplyOptionFunding(ApplyOptionFunding {
        market: market.into(),
        funding_time_ms,
    }))
}

/// A perp funding round at the rate computed from premium-index samples
/// (oldest first), the interest rate and the market's funding clamp
/// ([`set_funding_clamp`]).
pub fn apply_premium_funding<S: IntoAmount>(
    market: impl Into<String>,
    funding_time_ms: u64,
    premium_samples: impl IntoIterator<Item = S>,
    interest_rate: impl IntoAmount,
) -> Command {
    command(Body::ApplyPremiumFunding(ApplyPremiumFunding {
        market: market.into(),
        funding_time_ms,
        premium_samples: premium_samples
            .into_iter()
            .map(IntoAmount::into_amount)
            .collect(),
        interest_rate: interest_rate.into_amount(),
    }))
}

/// Sets a perpetual's funding clamp for premium-index funding.
pub fn set_funding_clamp(market: impl Into<String>, clamp_rate: impl IntoAmount) -> Command {
    command(Body::SetFundingClamp(SetFundingClamp {
        market: market.into(),
        clamp_rate: clamp_rate.into_amount(),
    }))
}

/// Sets an option's mark price with its delta at that mark (the pricer's).
pub fn set_option_mark(
    market: impl Into<String>,
    price: impl IntoAmount,
    delta: impl IntoAmount,
) -> Command {
    command(Body::SetOptionMark(SetOptionMark {
        market: market.into(),
        price: price.into_amount(),
        delta: delta.into_amount(),
    }))
}

/// Creates an inverse perpetual (`expiry_ms` 0) or dated future of
/// `contract_value` quote units per contract, settled in the base asset.
pub fn create_inverse_market(
    spec: CreateMarket,
    contract_value: impl IntoAmount,
    expiry_ms: u64,
    delivery_fee_rate: impl IntoAmount,
) -> Command {
    command(Body::CreateInverseMarket(CreateInverseMarket {
        market: Some(spec),
        contract_value: contract_value.into_amount(),
        expiry_ms,
        delivery_fee_rate: delivery_fee_rate.into_amount(),
    }))
}
