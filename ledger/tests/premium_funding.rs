//! A perpetual funding rate computed by the engine from premium-index
//! samples (`ApplyPremiumFunding`) and the market's clamp
//! (`SetFundingClamp`), with hand-computed numbers: the clamp hit (the
//! rate moves only `clamp` toward the interest rate) and not hit (the rate
//! is the interest rate), the round then applied as `ApplyFunding` would;
//! and the bad inputs (no samples, too many, a sample beyond the rate
//! precision, a negative clamp, no clamp set, a dated future), each
//! changing nothing; the clamp survives a rebuild from the records.
//!
//! Market BTC-PERP: `common::market_command`, marked 100.

mod common;

use common::*;
use tally_ledger::*;

fn premium_funding(samples: &[&str], interest: &str, time_ms: u64) -> Command {
    Command::ApplyPremiumFunding(ApplyPremiumFunding {
        market: "BTC-PERP".into(),
        funding_time_ms: time_ms,
        premium_samples: samples.iter().map(|s| d(s)).collect(),
        interest_rate: d(interest),
    })
}

fn clamp(rate: &str) -> Command {
    Command::SetFundingClamp(SetFundingClamp {
        market: "BTC-PERP".into(),
        clamp_rate: d(rate),
    })
}

fn harness() -> Harness {
    let mut h = perp_harness();
    assert_eq!(h.ledger.set_cluster_version(2), Ok(true));
    h.ok(deposit(1, "10000"));
    h.ok(deposit(2, "10000"));
    h.ok(mark("BTC-PERP", "100"));
    // Alice (1) long 10, Bob (2) short 10: notional 1,000 at the mark.
    h.ok(perp_fill("BTC-PERP", 1, 2, "10", "100"));
    h
}

fn rate_event(events: &[Event]) -> Option<(u64, Decimal, Decimal)> {
    events.iter().find_map(|e| match e {
        Event::FundingRate {
            samples,
            premium_index,
            rate,
            ..
        } => Some((*samples, *premium_index, *rate)),
        _ => None,
    })
}

#[test]
fn the_rate_from_premium_samples_with_the_clamp_hit_and_not_hit() {
    let mut h = harness();
    h.ok(clamp("0.00005"));
    // P = (1 × 0.0001 + 2 × 0.0002 + 3 × 0.0003) / 6 = 0.0014 / 6 =
    // 0.000233333.. → 0.00023333. I = 0.0001: I − P = −0.00013333, beyond
    // the clamp 0.00005: F = 0.00023333 − 0.00005 = 0.00018333. Alice
    // (long 1,000 notional) pays 0.18333, Bob receives it.
    let events = h.ok(premium_funding(
        &["0.0001", "0.0002", "0.0003"],
        "0.0001",
        FUNDING_INTERVAL_MS,
    ));
    assert_eq!(
        rate_event(&events),
        Some((3, d("0.00023333"), d("0.00018333")))
    );
    assert_eq!(h.usdt(Owner::Account(1)), d("9999.81667"));
    assert_eq!(h.usdt(Owner::Account(2)), d("10000.18333"));
    // Not hit: I = 0.0002, I − P = −0.00003333 within ±0.00005: F = I.
    // Alice pays 1,000 × 0.0002 = 0.2.
    let events = h.ok(premium_funding(
        &["0.0001", "0.0002", "0.0003"],
        "0.0002",
        2 * FUNDING_INTERVAL_MS,
    ));
    assert_eq!(rate_event(&events).map(|r| r.2), Some(d("0.0002")));
    assert_eq!(h.usdt(Owner::Account(1)), d("9999.61667"));
    // The same funding time again: refused like `ApplyFunding`.
    h.rejected(
        premium_funding(&["0.0001"], "0.0001", 2 * FUNDING_INTERVAL_MS),
        RejectCode::FundingAlreadyApplied,
    );
    // The clamp is market state: it survives a rebuild from the records
    // (a linear perpetual with a clamp has an instrument record).
    let rebuilt =
        Ledger::from_records(LedgerConfig::default(), h.ledger.records()).expect("rebuilds");
    assert_eq!(rebuilt.state_hash(), h.ledger.state_hash());
    h.ledger = rebuilt;
    let events = h.ok(premium_funding(
        &["0.0001", "0.0002", "0.0003"],
        "0.0001",
        3 * FUNDING_INTERVAL_MS,
    ));
    assert_eq!(rate_event(&events).map(|r| r.2), Some(d("0.00018333")));
}

#[test]
fn premium_funding_without_a_clamp_is_refused_and_a_bad_clamp_sets_nothing() {
    let mut h = harness();
    let before = business_hash(&h.ledger);
    h.rejected(
        premium_funding(&["0.0001"], "0.0001", FUNDING_INTERVAL_MS),
        RejectCode::FundingClampNotSet,
    );
    h.rejected(clamp("-0.0005"), RejectCode::InvalidRate);
    h.rejected(clamp("1"), RejectCode::InvalidRate);
    h.rejected(clamp("0.000000001"), RejectCode::BadPrecision);
    assert_eq!(business_hash(&h.ledger), before, "nothing changed");
    // A clamp of 0 is a clamp: the rate is P.
    h.ok(clamp("0"));
    let events = h.ok(premium_funding(&["0.0003"], "0.0001", FUNDING_INTERVAL_MS));
    assert_eq!(rate_event(&events).map(|r| r.2), Some(d("0.0003")));
}

#[test]
fn bad_premium_samples_are_refused_and_change_nothing() {
    let mut h = harness();
    h.ok(clamp("0.0005"));
    let t = FUNDING_INTERVAL_MS;
    h.rejected(
        premium_funding(&[], "0.0001", t),
        RejectCode::InvalidSamples,
    );
    let many = vec!["0.0001"; MAX_PREMIUM_SAMPLES + 1];
    h.rejected(
        premium_funding(&many, "0.0001", t),
        RejectCode::InvalidSamples,
    );
    h.rejected(
        premium_funding(&["0.000000001"], "0.0001", t),
        RejectCode::BadPrecision,
    );
    h.rejected(
        premium_funding(&["0.0001"], "0.0001", t + 1),
        RejectCode::InvalidFundingTime,
    );
    // The most samples allowed apply.
    let most = vec!["0.0001"; MAX_PREMIUM_SAMPLES];
    let events = h.ok(premium_funding(&most, "0.0001", t));
    assert_eq!(
        rate_event(&events),
        Some((MAX_PREMIUM_SAMPLES as u64, d("0.0001"), d("0.0001")))
    );
}
