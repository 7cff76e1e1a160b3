//! Property tests over random perpetual-futures histories: deposits,
//! withdrawals, fills at prices around the mark (with fees), mark prices
//! that random-walk and sometimes gap (liquidations, ADL, shortfalls),
//! funding rounds of either sign (some repeated), pauses, changes of the
//! idempotency window.
//!
//! After every command: all invariants (conservation per asset including
//! the PnL pools, positions netting to zero, pool = −Σ cost, …); every
//! applied command's balance and pool movements sum to zero per asset;
//! funding is zero-sum up to a non-negative residue that goes to insurance;
//! a client's settle balance is negative only after a `Shortfall` event
//! for it, emitted only when the insurance fund was exhausted; a rejected
//! command changes nothing. At the end: replaying the same envelopes gives
//! the same state hash and results, and so does replaying them with
//! `apply_quiet` (same verdicts, no events) and rebuilding from records.

// A test, not the engine: ledger/clippy.toml's determinism bans are for
// ledger/src (this reads PERP_STATS to print run statistics).
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use tally_ledger::*;

const MARKETS: [&str; 2] = ["BTC-PERP", "ETH-PERP"];
const ACCOUNTS: u64 = 5;

#[derive(Clone, Debug)]
enum Op {
    Deposit(u64, u64),
    Withdraw(u64, u64),
    Fill {
        market: usize,
        buyer: u64,
        seller: u64,
        lots: u32,
        ticks: i32,
        fee_micros: u32,
    },
    /// Moves the mark by `ticks` (0.1 each).
    Mark(usize, i32),
    Funding {
        market: usize,
        rate_e8: i32,
        repeat: bool,
    },
    Pause(usize, bool),
    /// A new idempotency window (some out of range).
    DedupWindow(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let account = 1..=ACCOUNTS;
    prop_oneof![
        2 => (1..=ACCOUNTS, 100u64..2_000).prop_map(|(a, x)| Op::Deposit(a, x)),
        1 => (1..=ACCOUNTS, 1u64..3_000).prop_map(|(a, x)| Op::Withdraw(a, x)),
        10 => (0..2usize, account.clone(), 1..=ACCOUNTS, 1u32..=40_000, -60i32..=60, 0u32..=2_000_000)
            .prop_map(|(market, buyer, seller, lots, ticks, fee_micros)| Op::Fill {
                market, buyer, seller, lots, ticks, fee_micros,
            }),
        5 => (0..2usize, prop_oneof![8 => -30i32..=30, 2 => -250i32..=250]).prop_map(|(m, t)| Op::Mark(m, t)),
        2 => (0..2usize, -100_000i32..=100_000, prop::bool::weighted(0.2))
            .prop_map(|(market, rate_e8, repeat)| Op::Funding { market, rate_e8, repeat }),
        1 => (0..2usize, prop::bool::weighted(0.3)).prop_map(|(m, p)| Op::Pause(m, p)),
        1 => prop::sample::select(vec![999, 1_000, 60_000, 604_800_001]).prop_map(Op::DedupWindow),
    ]
}

fn usdt(micros: i128) -> Decimal {
    Decimal::from_i128_with_scale(micros, 6)
}

fn current_mark(h: &Harness, market: &str) -> Decimal {
    h.ledger
        .market(market)
        .and_then(|m| m.mark_price)
        .unwrap_or(d("100"))
}

fn command(h: &Harness, op: &Op, funding_times: &mut [u64; 2]) -> Command {
    match *op {
        Op::Deposit(account, units) => deposit(account, &units.to_string()),
        Op::Withdraw(account, units) => Command::Withdraw(Withdraw {
            account,
            asset: "USDT".into(),
            amount: Decimal::from(units),
        }),
        Op::Fill {
            market,
            buyer,
            seller,
            lots,
            ticks,
            fee_micros,
        } => {
            let mark = current_mark(h, MARKETS[market]);
            let price = (mark + Decimal::new(i64::from(ticks), 1)).round_dp(1);
            Command::PerpFill(PerpFill {
                market: MARKETS[market].into(),
                buyer,
                seller,
                size: Decimal::new(i64::from(lots), 3),
                price,
                buyer_fee: usdt(i128::from(fee_micros)),
                seller_fee: usdt(i128::from(fee_micros / 2)),
            })
        }
        Op::Mark(market, ticks) => {
            let mark = current_mark(h, MARKETS[market]);
            Command::SetMarkPrice(SetMarkPrice {
                market: MARKETS[market].into(),
                price: mark + Decimal::new(i64::from(ticks), 1),
            })
        }
        Op::Funding {
            market,
            rate_e8,
            repeat,
        } => {
            if !repeat {
                funding_times[market] += FUNDING_INTERVAL_MS;
            }
            Command::ApplyFunding(ApplyFunding {
                market: MARKETS[market].into(),
                rate: Decimal::new(i64::from(rate_e8), 8),
                funding_time_ms: funding_times[market].max(FUNDING_INTERVAL_MS),
            })
        }
        Op::Pause(market, paused) => Command::SetMarketPaused(SetMarketPaused {
            market: MARKETS[market].into(),
            paused,
        }),
        Op::DedupWindow(window_ms) => Command::SetDedupWindow(SetDedupWindow { window_ms }),
    }
}

fn check_funding(events: &[Event]) -> Result<(), TestCaseError> {
    let Some((paid, received, residue, uncollected)) = events.iter().find_map(|e| match e {
        Event::Funding {
            paid,
            received,
            residue,
            uncollected,
            ..
        } => Some((*paid, *received, *residue, *uncollected)),
        _ => None,
    }) else {
        return Ok(());
    };
    let payments: Vec<Decimal> = events
        .iter()
        .filter_map(|e| match e {
            Event::FundingPayment { amount, .. } => Some(*amount),
            _ => None,
        })
        .collect();
    prop_assert_eq!(paid - received, residue);
    prop_assert!(residue >= Decimal::ZERO);
    // Each holder rounds by less than one minor unit.
    prop_assert!(residue <= usdt(payments.len() as i128 + 1));
    prop_assert!(uncollected >= Decimal::ZERO);
    // Zero-sum: what holders got and paid, plus what the fund kept.
    let net: Decimal = payments.iter().copied().sum();
    prop_assert_eq!(net + residue - uncollected, Decimal::ZERO);
    Ok(())
}

/// Shortfalls in `events`: each must come after the insurance fund was
/// exhausted (its last balance at or below zero, or never touched and zero).
fn check_shortfalls(
    events: &[Event],
    insurance_before: Decimal,
    shortfalls: &mut BTreeSet<u64>,
) -> Result<(), TestCaseError> {
    let mut insurance = insurance_before;
    for event in events {
        match event {
            Event::Balance(b) if b.owner == Owner::Insurance && b.asset == "USDT" => {
                insurance = b.available;
            }
            Event::Shortfall {
                account, amount, ..
            } => {
                prop_assert!(
                    insurance <= Decimal::ZERO,
                    "shortfall of {} for {} while the fund holds {}",
                    amount,
                    account,
                    insurance
                );
                prop_assert!(*amount > Decimal::ZERO);
                shortfalls.insert(*account);
            }
            _ => {}
        }
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = perp_harness();
    for account in 1..=ACCOUNTS {
        h.ok(deposit(account, "1000"));
    }
    h.ok(mark("BTC-PERP", "100"));
    h.ok(mark("ETH-PERP", "100"));
    let mut funding_times = [0u64; 2];
    let mut envelopes: Vec<(Envelope, u64, ApplyResult)> = Vec::new();
    let mut shortfalls = BTreeSet::new();
    let mut stats = [0usize; 4];
    for op in ops {
        let command = command(&h, op, &mut funding_times);
        let before = business_hash(&h.ledger);
        let insurance_before = h.usdt(Owner::Insurance);
        let (envelope, result) = h.send(command);
        envelopes.push((envelope.clone(), h.now_ms, result.clone()));
        if let Err(violation) = h.ledger.check_invariants() {
            return Err(TestCaseError::fail(format!(
                "{violation} after {envelope:?} -> {result:?}"
            )));
        }
        match &result.outcome {
            Outcome::Rejected(_) => {
                prop_assert_eq!(business_hash(&h.ledger), before, "rejection changed state");
            }
            Outcome::Applied { events } => {
                stats[0] += 1;
                for (asset, net) in net_flows(events) {
                    prop_assert!(net.is_zero(), "{} not conserved by {:?}", asset, envelope);
                }
                // Realized PnL is zero-sum against the PnL pool: when both
                // sides of a trade close, exactly between them.
                let realized: Decimal = events
                    .iter()
                    .map(|e| match e {
                        Event::Position { realized_pnl, .. } => *realized_pnl,
                        Event::Pool { delta, .. } => *delta,
                        _ => Decimal::ZERO,
                    })
                    .sum();
                prop_assert!(
                    realized.is_zero(),
                    "realized PnL + pool = {} in {:?}",
                    realized,
                    envelope
                );
                check_funding(events)?;
                check_shortfalls(events, insurance_before, &mut shortfalls)?;
                stats[1] += events
                    .iter()
                    .filter(|e| matches!(e, Event::Liquidation { .. }))
                    .count();
                stats[2] += events
                    .iter()
                    .filter(|e| {
                        matches!(
                            e,
                            Event::Position {
                                cause: PositionCause::Deleverage,
                                ..
                            }
                        )
                    })
                    .count();
                stats[3] +=
                    usize::from(events.iter().any(|e| matches!(e, Event::Shortfall { .. })));
            }
        }
        for account in 1..=ACCOUNTS {
            let balance = h.usdt(Owner::Account(account));
            if balance < Decimal::ZERO {
                prop_assert!(
                    shortfalls.contains(&account),
                    "account {} negative ({}) without a shortfall event",
                    account,
                    balance
                );
                prop_assert!(h.ledger.margin(account).unwrap_or_default().is_empty());
            }
        }
    }
    // Determinism: the same envelopes at the same times, with and without
    // events, and a rebuild from records.
    let mut replay = perp_harness();
    let mut quiet = perp_harness();
    for r in [&mut replay, &mut quiet] {
        for account in 1..=ACCOUNTS {
            r.ok(deposit(account, "1000"));
        }
        r.ok(mark("BTC-PERP", "100"));
        r.ok(mark("ETH-PERP", "100"));
    }
    for (envelope, now_ms, result) in &envelopes {
        prop_assert_eq!(&replay.ledger.apply(envelope, *now_ms), result);
        let expected = ApplyResult {
            outcome: match &result.outcome {
                Outcome::Applied { .. } => Outcome::Applied { events: vec![] },
                rejected => rejected.clone(),
            },
            duplicate: result.duplicate,
        };
        prop_assert_eq!(quiet.ledger.apply_quiet(envelope, *now_ms), expected);
    }
    prop_assert_eq!(replay.ledger.state_hash(), h.ledger.state_hash());
    prop_assert_eq!(quiet.ledger.state_hash(), h.ledger.state_hash());
    prop_assert_eq!(quiet.ledger.take_dirty(), replay.ledger.take_dirty());
    let rebuilt = Ledger::from_records(LedgerConfig::default(), h.ledger.records());
    prop_assert!(rebuilt.is_ok(), "{:?}", rebuilt.err());
    if let Ok(rebuilt) = rebuilt {
        prop_assert_eq!(rebuilt.state_hash(), h.ledger.state_hash());
    }
    if std::env::var_os("PERP_STATS").is_some() {
        eprintln!(
            "applied {}, liquidations {}, adl {}, shortfalls {} of {}",
            stats[0],
            stats[1],
            stats[2],
            stats[3],
            ops.len()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_perp_histories_keep_every_invariant(ops in prop::collection::vec(op(), 1..90)) {
        run(&ops)?;
    }
}

/// The generator reaches the interesting paths: liquidations, ADL and
/// shortfalls all happen over a fixed set of seeds.
#[test]
fn generator_covers_liquidation_adl_and_shortfall() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut totals = [0usize; 3];
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    for _ in 0..40 {
        let ops = prop::collection::vec(op(), 60..90)
            .new_tree(&mut runner)
            .map(|t| t.current())
            .unwrap_or_default();
        let mut h = perp_harness();
        for account in 1..=ACCOUNTS {
            h.ok(deposit(account, "1000"));
        }
        h.ok(mark("BTC-PERP", "100"));
        h.ok(mark("ETH-PERP", "100"));
        let mut times = [0u64; 2];
        for op in &ops {
            let c = command(&h, op, &mut times);
            if let (
                _,
                ApplyResult {
                    outcome: Outcome::Applied { events },
                    ..
                },
            ) = h.send(c)
            {
                for e in &events {
                    match e {
                        Event::Liquidation { .. } => totals[0] += 1,
                        Event::Position {
                            cause: PositionCause::Deleverage,
                            ..
                        } => totals[1] += 1,
                        Event::Shortfall { .. } => totals[2] += 1,
                        _ => {}
                    }
                }
            }
        }
    }
    if std::env::var_os("PERP_STATS").is_some() {
        eprintln!("liquidations, ADL chunks, shortfalls: {totals:?}");
    }
    assert!(
        totals.iter().all(|n| *n > 0),
        "liquidations, ADL chunks, shortfalls: {totals:?}"
    );
}
