//! Property tests over random histories of a perpetual (BTC-PERP) and a
//! dated future (BTC-0327) margined together in USDT: deposits, fills in
//! both at prices around the mark (with fees), mark prices that random-walk
//! and gap (liquidations, ADL, shortfalls in either market), perp funding,
//! insurance top-ups, the clock passing the future's expiry, and settlement
//! attempts at gapped prices (before the expiry, once, and again).
//!
//! After every command: all invariants (conservation per asset with the PnL
//! pools, positions netting to zero, a settled future holding nothing);
//! every applied command's balance and pool movements sum to zero per
//! asset, and realized PnL is zero-sum against the pool; a settlement
//! closes every position (open interest and pool end at zero), its
//! `Settlement` event's realized PnL is the sum of the settlement closes,
//! and its delivery fees are exactly what `Fees` gained, so settlement is
//! zero-sum up to the delivery fee; no fill of the future applies at or
//! after its expiry; a rejected command changes nothing. At the end:
//! replaying the envelopes gives the same results and state hash, and the
//! records rebuild the same state.

mod common;

use common::*;
use proptest::prelude::*;
use tally_ledger::*;

const MARKETS: [&str; 2] = ["BTC-PERP", "BTC-0327"];
const ACCOUNTS: u64 = 5;
const EXPIRY_MS: u64 = 12_000;

#[derive(Clone, Debug)]
enum Op {
    Deposit(u64, u64),
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
    Funding(i32),
    Insurance(u64, u64),
    /// Advances the clock by this many ms.
    Wait(u64),
    /// Settles the future at the mark moved by `ticks`.
    Settle(i32),
}

fn op() -> impl Strategy<Value = Op> {
    let account = 1..=ACCOUNTS;
    prop_oneof![
        2 => (1..=ACCOUNTS, 100u64..2_000).prop_map(|(a, x)| Op::Deposit(a, x)),
        10 => (0..2usize, account.clone(), 1..=ACCOUNTS, 1u32..=40_000, -60i32..=60, 0u32..=2_000_000)
            .prop_map(|(market, buyer, seller, lots, ticks, fee_micros)| Op::Fill {
                market, buyer, seller, lots, ticks, fee_micros,
            }),
        5 => (0..2usize, prop_oneof![8 => -30i32..=30, 2 => -250i32..=250]).prop_map(|(m, t)| Op::Mark(m, t)),
        1 => (-100_000i32..=100_000).prop_map(Op::Funding),
        1 => (1..=ACCOUNTS, 1u64..300).prop_map(|(a, x)| Op::Insurance(a, x)),
        3 => (0u64..3_000).prop_map(Op::Wait),
        2 => prop_oneof![1 => -30i32..=30, 3 => -600i32..=600].prop_map(Op::Settle),
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

fn moved(mark: Decimal, ticks: i32) -> Decimal {
    (mark + Decimal::new(i64::from(ticks), 1))
        .round_dp(1)
        .max(d("0.1"))
}

fn command(h: &mut Harness, op: &Op, funding_time_ms: &mut u64) -> Command {
    match *op {
        Op::Deposit(account, units) => deposit(account, &units.to_string()),
        Op::Fill {
            market,
            buyer,
            seller,
            lots,
            ticks,
            fee_micros,
        } => Command::PerpFill(PerpFill {
            market: MARKETS[market].into(),
            buyer,
            seller,
            size: Decimal::new(i64::from(lots), 3),
            price: moved(current_mark(h, MARKETS[market]), ticks),
            buyer_fee: usdt(i128::from(fee_micros)),
            seller_fee: usdt(i128::from(fee_micros / 2)),
        }),
        Op::Mark(market, ticks) => mark(
            MARKETS[market],
            &moved(current_mark(h, MARKETS[market]), ticks).to_string(),
        ),
        Op::Funding(rate_e8) => {
            *funding_time_ms += FUNDING_INTERVAL_MS;
            Command::ApplyFunding(ApplyFunding {
                market: MARKETS[0].into(),
                rate: Decimal::new(i64::from(rate_e8), 8),
                funding_time_ms: *funding_time_ms,
            })
        }
        Op::Insurance(account, units) => Command::FundInsurance(FundInsurance {
            account,
            asset: "USDT".into(),
            amount: Decimal::from(units),
        }),
        Op::Wait(ms) => {
            h.now_ms += ms;
            // A no-op command to stamp the new time.
            Command::SetMarketPaused(SetMarketPaused {
                market: MARKETS[0].into(),
                paused: false,
            })
        }
        Op::Settle(ticks) => Command::SettleFuture(SettleFuture {
            market: MARKETS[1].into(),
            price: moved(current_mark(h, MARKETS[1]), ticks),
        }),
    }
}

fn setup() -> Harness {
    let mut h = perp_harness();
    assert_eq!(h.ledger.set_cluster_version(2), Ok(true));
    let Command::CreateMarket(spec) = market_command(MARKETS[1]) else {
        unreachable!("market_command builds a CreateMarket")
    };
    h.ok(Command::CreateDatedFuture(CreateDatedFuture {
        market: spec,
        expiry_ms: EXPIRY_MS,
        delivery_fee_rate: d("0.0007"),
    }));
    for account in 1..=ACCOUNTS {
        h.ok(deposit(account, "1000"));
    }
    h.ok(mark(MARKETS[0], "100"));
    h.ok(mark(MARKETS[1], "100"));
    h
}

/// A settlement's own checks: everything closed, realized PnL of the
/// closes equals the event's, fees equal what `Fees` gained.
fn check_settlement(
    h: &Harness,
    events: &[Event],
    fees_before: Decimal,
) -> Result<(), TestCaseError> {
    let Some((realized, delivery_fees)) = events.iter().find_map(|e| match e {
        Event::Settlement {
            realized,
            delivery_fees,
            ..
        } => Some((*realized, *delivery_fees)),
        _ => None,
    }) else {
        return Ok(());
    };
    let closes: Decimal = events
        .iter()
        .filter_map(|e| match e {
            Event::Position {
                cause: PositionCause::Settlement,
                realized_pnl,
                ..
            } => Some(*realized_pnl),
            _ => None,
        })
        .sum();
    prop_assert_eq!(closes, realized);
    prop_assert_eq!(h.usdt(Owner::Fees) - fees_before, delivery_fees);
    let exposure = h.ledger.market_exposure(MARKETS[1]).expect("listed");
    prop_assert_eq!(exposure.open_interest, Decimal::ZERO);
    prop_assert_eq!(exposure.pnl_pool, Decimal::ZERO);
    Ok(())
}

fn check_applied(
    h: &Harness,
    envelope: &Envelope,
    events: &[Event],
    fees_before: Decimal,
) -> Result<(), TestCaseError> {
    for (asset, net) in net_flows(events) {
        prop_assert!(net.is_zero(), "{} not conserved by {:?}", asset, envelope);
    }
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
        "realized + pool = {} in {:?}",
        realized,
        envelope
    );
    if let Command::PerpFill(fill) = &envelope.command {
        prop_assert!(
            fill.market != MARKETS[1] || h.now_ms < EXPIRY_MS,
            "a fill of the future applied at {}",
            h.now_ms
        );
    }
    check_settlement(h, events, fees_before)
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = setup();
    let mut funding_time_ms = 0u64;
    let mut envelopes: Vec<(Envelope, u64, ApplyResult)> = Vec::new();
    let mut settled = 0;
    for op in ops {
        let command = command(&mut h, op, &mut funding_time_ms);
        let before = business_hash(&h.ledger);
        let fees_before = h.usdt(Owner::Fees);
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
                check_applied(&h, &envelope, events, fees_before)?;
                if matches!(envelope.command, Command::SettleFuture(_)) {
                    settled += 1;
                    prop_assert!(h.now_ms >= EXPIRY_MS);
                }
            }
        }
    }
    prop_assert!(settled <= 1, "settled {} times", settled);
    check_replay_and_rebuild(&mut setup().ledger, &envelopes, &h.ledger)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_perp_and_future_histories_conserve_and_settle_zero_sum(
        ops in prop::collection::vec(op(), 1..90)
    ) {
        run(&ops)?;
    }
}

/// The generator reaches the interesting paths: settlements, some of them
/// liquidating a loser, over a fixed set of seeds.
#[test]
fn generator_covers_settlement_and_liquidation_at_settlement() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let (mut settlements, mut liquidating, mut expired_fills) = (0, 0, 0);
    for _ in 0..40 {
        let ops = prop::collection::vec(op(), 60..90)
            .new_tree(&mut runner)
            .map(|t| t.current())
            .unwrap_or_default();
        let mut h = setup();
        let mut funding_time_ms = 0;
        for op in &ops {
            let c = command(&mut h, op, &mut funding_time_ms);
            match h.send(c).1.outcome {
                Outcome::Applied { events } => {
                    if events
                        .iter()
                        .any(|e| matches!(e, Event::Settlement { positions, .. } if *positions > 0))
                    {
                        settlements += 1;
                        if events
                            .iter()
                            .any(|e| matches!(e, Event::Liquidation { .. }))
                        {
                            liquidating += 1;
                        }
                    }
                }
                Outcome::Rejected(r) => {
                    if r.code == RejectCode::MarketExpired {
                        expired_fills += 1;
                    }
                }
            }
        }
    }
    assert!(
        settlements > 5 && liquidating > 0 && expired_fills > 0,
        "settlements {settlements}, liquidating {liquidating}, expired fills {expired_fills}"
    );
}
