//! Property tests over random histories of every instrument kind margined
//! together in one USDT account: a perpetual (BTC-PERP, also the options'
//! underlying index), a dated future, an expiring call and put and a
//! perpetual call; and, margined in BTC, an inverse perpetual and an
//! inverse dated future (contracts of 100 USD). Deposits, fills in every market at prices around its
//! mark (with fees, an option's capped), mark prices that random-walk and
//! gap (liquidations of every kind, ADL, shortfalls), perp funding,
//! perpetual-option funding (either sign of time value), the clock passing
//! the expiry, settlement and exercise attempts at gapped prices.
//!
//! After every command: all invariants; every applied command's balance
//! and pool movements sum to zero per asset, realized PnL (for an option
//! the premium cash) is zero-sum against the pools; both kinds of funding
//! round are zero-sum up to a non-negative residue below one minor unit per
//! holder; a settlement or exercise closes every position, its realized PnL
//! is the sum of its closes and its delivery fees are exactly what `Fees`
//! gained (zero-sum up to the fee); no fill of an expiring market applies
//! at or after its expiry; each expiring market settles at most once; a
//! rejected command changes nothing. At the end: a replay gives the same
//! results and state hash, and the records rebuild the same state.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use tally_ledger::*;

const PERP: &str = "BTC-PERP";
const FUTURE: &str = "BTC-0327";
const CALL: &str = "BTC-C-100";
const PUT: &str = "BTC-P-100";
const PERP_CALL: &str = "BTC-PC-100";
const INVERSE: &str = "BTCUSD-PERP";
const INVERSE_FUTURE: &str = "BTCUSD-0327";
const MARKETS: [&str; 7] = [PERP, FUTURE, CALL, PUT, PERP_CALL, INVERSE, INVERSE_FUTURE];
const EXPIRING: [&str; 4] = [FUTURE, CALL, PUT, INVERSE_FUTURE];
const ACCOUNTS: u64 = 5;
const EXPIRY_MS: u64 = 12_000;
const OPTION_INTERVAL_MS: u64 = 3_600_000;

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
    /// Moves a mark by `ticks` (0.1 each).
    Mark(usize, i32),
    /// A funding round of BTC-PERP (0) or the inverse perpetual (1).
    Funding(usize, i32),
    OptionFunding,
    Wait(u64),
    /// Settles or exercises `EXPIRING[i]` at its reference moved by `ticks`.
    Expire(usize, i32),
}

fn op() -> impl Strategy<Value = Op> {
    let account = 1..=ACCOUNTS;
    prop_oneof![
        2 => (1..=ACCOUNTS, 100u64..2_000).prop_map(|(a, x)| Op::Deposit(a, x)),
        14 => (0..7usize, account.clone(), 1..=ACCOUNTS, 1u32..=30_000, -30i32..=30, 0u32..=500_000)
            .prop_map(|(market, buyer, seller, lots, ticks, fee_micros)| Op::Fill {
                market, buyer, seller, lots, ticks, fee_micros,
            }),
        7 => (0..7usize, prop_oneof![8 => -20i32..=20, 2 => -200i32..=200]).prop_map(|(m, t)| Op::Mark(m, t)),
        1 => (0..2usize, -100_000i32..=100_000).prop_map(|(m, r)| Op::Funding(m, r)),
        1 => Just(Op::OptionFunding),
        3 => (0u64..3_000).prop_map(Op::Wait),
        2 => (0..4usize, prop_oneof![1 => -30i32..=30, 3 => -400i32..=400]).prop_map(|(i, t)| Op::Expire(i, t)),
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

fn moved(price: Decimal, ticks: i32) -> Decimal {
    (price + Decimal::new(i64::from(ticks), 1))
        .round_dp(1)
        .max(d("0.1"))
}

fn is_inverse(market: &str) -> bool {
    market.starts_with("BTCUSD")
}

/// A price `ticks` ticks from `price` on `market`'s grid (inverse: 0.5 USD
/// ticks, scaled ×100 so the moves matter at 20,000).
fn moved_on(market: &str, price: Decimal, ticks: i32) -> Decimal {
    if is_inverse(market) {
        (price + Decimal::from(ticks) * d("50")).max(d("1000"))
    } else {
        moved(price, ticks)
    }
}

/// A fill size on `market`'s grid: lots of 0.001, or whole contracts.
fn size_on(market: &str, lots: u32) -> Decimal {
    if is_inverse(market) {
        Decimal::from(lots / 100 + 1)
    } else {
        Decimal::new(i64::from(lots), 3)
    }
}

/// A fee in `market`'s settle asset (USDT 6 decimals, BTC 8).
fn fee_on(market: &str, micros: u32) -> Decimal {
    if is_inverse(market) {
        Decimal::from_i128_with_scale(i128::from(micros / 1_000), 8)
    } else {
        usdt(i128::from(micros))
    }
}

struct Clock {
    funding_ms: [u64; 2],
    option_funding_ms: u64,
}

fn command(h: &mut Harness, op: &Op, clock: &mut Clock) -> Command {
    match *op {
        Op::Deposit(account, units) => deposit(account, &units.to_string()),
        Op::Fill {
            market,
            buyer,
            seller,
            lots,
            ticks,
            fee_micros,
        } => {
            let symbol = MARKETS[market];
            Command::PerpFill(PerpFill {
                market: symbol.into(),
                buyer,
                seller,
                size: size_on(symbol, lots),
                price: moved_on(symbol, current_mark(h, symbol), ticks),
                buyer_fee: fee_on(symbol, fee_micros),
                seller_fee: fee_on(symbol, fee_micros / 2),
            })
        }
        Op::Mark(market, ticks) => {
            let symbol = MARKETS[market];
            mark(
                symbol,
                &moved_on(symbol, current_mark(h, symbol), ticks).to_string(),
            )
        }
        Op::Funding(market, rate_e8) => {
            clock.funding_ms[market] += FUNDING_INTERVAL_MS;
            Command::ApplyFunding(ApplyFunding {
                market: [PERP, INVERSE][market].into(),
                rate: Decimal::new(i64::from(rate_e8), 8),
                funding_time_ms: clock.funding_ms[market],
            })
        }
        Op::OptionFunding => {
            clock.option_funding_ms += OPTION_INTERVAL_MS;
            Command::ApplyOptionFunding(ApplyOptionFunding {
                market: PERP_CALL.into(),
                funding_time_ms: clock.option_funding_ms,
            })
        }
        Op::Wait(ms) => {
            h.now_ms += ms;
            Command::SetMarketPaused(SetMarketPaused {
                market: PERP.into(),
                paused: false,
            })
        }
        Op::Expire(i, ticks) => {
            // The future settles at a price near its mark, the options are
            // exercised at an underlying price near the perp's mark.
            let reference = match i {
                0 => FUTURE,
                3 => INVERSE_FUTURE,
                _ => PERP,
            };
            let price = moved_on(reference, current_mark(h, reference), ticks);
            let market = EXPIRING[i].into();
            if i == 0 || i == 3 {
                Command::SettleFuture(SettleFuture { market, price })
            } else {
                Command::ExerciseOption(ExerciseOption { market, price })
            }
        }
    }
}

fn option(symbol: &str, call: bool, expiry_ms: u64) -> Command {
    Command::CreateOption(CreateOption {
        market: symbol.into(),
        underlying: PERP.into(),
        call,
        strike: d("100"),
        expiry_ms,
        tick_size: d("0.1"),
        step_size: d("0.001"),
        im_rate: d("0.15"),
        im_floor_rate: d("0.1"),
        mm_rate: d("0.075"),
        fee_cap_rate: d("0.125"),
        delivery_fee_rate: d("0.0003"),
        liquidation_fee_rate: d("0.01"),
        funding_interval_ms: OPTION_INTERVAL_MS,
        funding_period_ms: 24 * OPTION_INTERVAL_MS,
    })
}

fn setup() -> Harness {
    let mut h = perp_harness();
    assert_eq!(h.ledger.set_cluster_version(2), Ok(true));
    let Command::CreateMarket(spec) = market_command(FUTURE) else {
        unreachable!("market_command builds a CreateMarket")
    };
    h.ok(Command::CreateDatedFuture(CreateDatedFuture {
        market: spec,
        expiry_ms: EXPIRY_MS,
        delivery_fee_rate: d("0.0007"),
    }));
    h.ok(option(CALL, true, EXPIRY_MS));
    h.ok(option(PUT, false, EXPIRY_MS));
    h.ok(option(PERP_CALL, true, 0));
    h.ok(Command::CreateAsset(CreateAsset {
        symbol: "BTC".into(),
        scale: 8,
    }));
    for (symbol, expiry_ms) in [(INVERSE, 0), (INVERSE_FUTURE, EXPIRY_MS)] {
        h.ok(Command::CreateInverseMarket(CreateInverseMarket {
            market: CreateMarket {
                market: symbol.into(),
                base: "BTC".into(),
                settle_asset: "BTC".into(),
                tick_size: d("0.5"),
                step_size: d("1"),
                max_leverage: 20,
                brackets: vec![bracket("0", "0.01", 20), bracket("2", "0.02", 10)],
                liquidation_fee_rate: d("0.005"),
                funding_interval_ms: FUNDING_INTERVAL_MS,
            },
            contract_value: d("100"),
            expiry_ms,
            delivery_fee_rate: d(if expiry_ms == 0 { "0" } else { "0.0005" }),
        }));
    }
    for account in 1..=ACCOUNTS {
        h.ok(deposit(account, "1000"));
        h.ok(Command::Deposit(Deposit {
            account,
            asset: "BTC".into(),
            amount: d("0.05"),
        }));
    }
    for (market, price) in [
        (PERP, "100"),
        (FUTURE, "100"),
        (CALL, "5"),
        (PUT, "5"),
        (PERP_CALL, "8"),
        (INVERSE, "20000"),
        (INVERSE_FUTURE, "20000"),
    ] {
        h.ok(mark(market, price));
    }
    h
}

/// The fee account's balance in `market`'s settle asset.
fn fees_of(h: &Harness, market: &str) -> Decimal {
    let asset = if is_inverse(market) { "BTC" } else { "USDT" };
    h.balance(Owner::Fees, asset).0
}

/// A funding round (perp or option) is zero-sum up to its residue.
fn check_funding(events: &[Event]) -> Result<(), TestCaseError> {
    let Some((paid, received, residue, uncollected)) = events.iter().find_map(|e| match e {
        Event::Funding {
            paid,
            received,
            residue,
            uncollected,
            ..
        }
        | Event::OptionFunding {
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
    prop_assert!(residue <= usdt(payments.len() as i128 + 1));
    let net: Decimal = payments.iter().copied().sum();
    prop_assert_eq!(net + residue - uncollected, Decimal::ZERO);
    Ok(())
}

fn check_settlement(
    h: &Harness,
    events: &[Event],
    fees_before: [Decimal; 2],
) -> Result<Option<String>, TestCaseError> {
    let Some((market, realized, delivery_fees)) = events.iter().find_map(|e| match e {
        Event::Settlement {
            market,
            realized,
            delivery_fees,
            ..
        } => Some((market.clone(), *realized, *delivery_fees)),
        _ => None,
    }) else {
        return Ok(None);
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
    let before = fees_before[usize::from(is_inverse(&market))];
    prop_assert_eq!(fees_of(h, &market) - before, delivery_fees);
    let exposure = h.ledger.market_exposure(&market).expect("listed");
    prop_assert_eq!(exposure.open_interest, Decimal::ZERO);
    prop_assert_eq!(exposure.pnl_pool, Decimal::ZERO);
    Ok(Some(market))
}

fn check_applied(h: &Harness, envelope: &Envelope, events: &[Event]) -> Result<(), TestCaseError> {
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
            !EXPIRING.contains(&fill.market.as_str()) || h.now_ms < EXPIRY_MS,
            "a fill of {} applied at {}",
            fill.market,
            h.now_ms
        );
    }
    check_funding(events)
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = setup();
    let mut clock = Clock {
        funding_ms: [0; 2],
        option_funding_ms: 0,
    };
    let mut envelopes: Vec<(Envelope, u64, ApplyResult)> = Vec::new();
    let mut settled: BTreeMap<String, usize> = BTreeMap::new();
    for op in ops {
        let command = command(&mut h, op, &mut clock);
        let before = business_hash(&h.ledger);
        let fees_before = [fees_of(&h, PERP), fees_of(&h, INVERSE)];
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
                check_applied(&h, &envelope, events)?;
                if let Some(market) = check_settlement(&h, events, fees_before)? {
                    prop_assert!(h.now_ms >= EXPIRY_MS);
                    *settled.entry(market).or_default() += 1;
                }
            }
        }
    }
    prop_assert!(settled.values().all(|n| *n == 1), "{:?}", settled);
    check_replay_and_rebuild(&mut setup().ledger, &envelopes, &h.ledger)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_of_every_instrument_kind_conserve_and_settle_zero_sum(
        ops in prop::collection::vec(op(), 1..100)
    ) {
        run(&ops)?;
    }
}

/// The generator reaches the interesting paths over a fixed set of seeds:
/// option fills, liquidations holding options, perpetual-option funding
/// paid both ways, exercises in and out of the money, future settlements.
#[test]
fn generator_covers_every_instrument_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..40 {
        let ops = prop::collection::vec(op(), 70..100)
            .new_tree(&mut runner)
            .map(|t| t.current())
            .unwrap_or_default();
        let mut h = setup();
        let mut clock = Clock {
            funding_ms: [0; 2],
            option_funding_ms: 0,
        };
        for op in &ops {
            let c = command(&mut h, op, &mut clock);
            let Outcome::Applied { events } = h.send(c).1.outcome else {
                continue;
            };
            for e in &events {
                let key = match e {
                    Event::PerpFill { market, .. } if market.starts_with("BTC-C") => "call fill",
                    Event::Position {
                        market,
                        cause: PositionCause::Liquidation,
                        ..
                    } if market.contains("-C-") || market.contains("-P-") => "option liquidation",
                    Event::OptionFunding { time_value, .. } if time_value.is_sign_negative() => {
                        "negative time value"
                    }
                    Event::OptionFunding { .. } => "positive time value",
                    Event::Settlement { market, .. } if market == CALL || market == PUT => {
                        let positions = events
                            .iter()
                            .filter(|e| {
                                matches!(e, Event::Balance(b) if b.owner.is_client() && !b.available_delta.is_zero())
                            })
                            .count();
                        if positions > 0 {
                            "exercise with payments"
                        } else {
                            "exercise without payments"
                        }
                    }
                    Event::Settlement { market, .. } if market == INVERSE_FUTURE => {
                        "inverse settlement"
                    }
                    Event::Position {
                        market,
                        cause: PositionCause::Liquidation,
                        ..
                    } if is_inverse(market) => "inverse liquidation",
                    Event::Funding { market, .. } if market == INVERSE => "inverse funding",
                    Event::Settlement { .. } => "future settlement",
                    _ => continue,
                };
                *seen.entry(key).or_default() += 1;
            }
        }
    }
    for key in [
        "call fill",
        "option liquidation",
        "negative time value",
        "positive time value",
        "exercise with payments",
        "exercise without payments",
        "future settlement",
        "inverse settlement",
        "inverse liquidation",
        "inverse funding",
    ] {
        assert!(
            seen.get(key).copied().unwrap_or(0) > 0,
            "{key} never seen: {seen:?}"
        );
    }
}
