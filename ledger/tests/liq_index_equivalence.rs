//! The liquidation index changes no result: twin ledgers, one with the
//! index (the default) and one scanning every holder at each mark price
//! (`set_liquidation_index(false)`), apply the same random histories
//! (fills in two perpetuals, a dated future, an option and an inverse
//! perpetual, some positions
//! isolated, deposits, withdrawals, insurance top-ups, funding, mark prices
//! that walk and gap, so liquidations cascade through ADL across markets)
//! and must return identical results, events included, and identical state
//! hashes after every command; and a ledger rebuilt from records (its index
//! rebuilt from the positions) continues identically.

// A test, not the engine: ledger/clippy.toml's determinism bans are for
// ledger/src (this reads LIQ_STATS to print run statistics).
#![allow(clippy::disallowed_methods)]

mod common;

use common::*;
use proptest::prelude::*;
use tally_ledger::*;

const MARKETS: [&str; 5] = ["BTC-PERP", "ETH-PERP", "BTC-0327", "BTC-C-100", "USD-INV"];
const ACCOUNTS: u64 = 6;

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
    },
    Mark(usize, i32),
    Funding(usize, i32),
    Insurance(u64, u64),
    Isolate(u64, usize, bool),
    /// Rebuilds the indexed ledger from its records.
    Restore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1..=ACCOUNTS, 100u64..2_000).prop_map(|(a, x)| Op::Deposit(a, x)),
        1 => (1..=ACCOUNTS, 1u64..2_000).prop_map(|(a, x)| Op::Withdraw(a, x)),
        12 => (0..5usize, 1..=ACCOUNTS, 1..=ACCOUNTS, 1u32..=120_000, -40i32..=40)
            .prop_map(|(market, buyer, seller, lots, ticks)| Op::Fill { market, buyer, seller, lots, ticks }),
        7 => (0..5usize, prop_oneof![5 => -40i32..=40, 5 => -450i32..=450]).prop_map(|(m, t)| Op::Mark(m, t)),
        1 => (0..2usize, -100_000i32..=100_000).prop_map(|(m, r)| Op::Funding(m, r)),
        1 => (1..=ACCOUNTS, 1u64..200).prop_map(|(a, x)| Op::Insurance(a, x)),
        1 => (1..=ACCOUNTS, 0..2usize, prop::bool::ANY).prop_map(|(a, m, i)| Op::Isolate(a, m, i)),
        1 => Just(Op::Restore),
    ]
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

fn command(h: &Harness, op: &Op, funding_ms: &mut [u64; 2]) -> Option<Command> {
    Some(match *op {
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
        } => {
            // The inverse market trades whole contracts (of 1 USDT-quote
            // each, settled in USDT, at prices near 100).
            let size = if market == 4 {
                Decimal::from(lots / 10 + 1)
            } else {
                Decimal::new(i64::from(lots), 3)
            };
            perp_fill(
                MARKETS[market],
                buyer,
                seller,
                &size.to_string(),
                &moved(current_mark(h, MARKETS[market]), ticks).to_string(),
            )
        }
        Op::Mark(market, ticks) => mark(
            MARKETS[market],
            &moved(current_mark(h, MARKETS[market]), ticks).to_string(),
        ),
        Op::Funding(market, rate_e8) => {
            funding_ms[market] += FUNDING_INTERVAL_MS;
            funding(
                MARKETS[market],
                &Decimal::new(i64::from(rate_e8), 8).to_string(),
                funding_ms[market],
            )
        }
        Op::Insurance(account, units) => Command::FundInsurance(FundInsurance {
            account,
            asset: "USDT".into(),
            amount: Decimal::from(units),
        }),
        Op::Isolate(account, market, isolated) => Command::SetIsolated(SetIsolated {
            account,
            market: MARKETS[market].into(),
            isolated,
        }),
        Op::Restore => return None,
    })
}

fn setup(indexed: bool) -> Harness {
    let mut h = perp_harness();
    h.ledger.set_liquidation_index(indexed);
    assert_eq!(h.ledger.set_cluster_version(2), Ok(true));
    let Command::CreateMarket(spec) = market_command("BTC-0327") else {
        unreachable!("market_command builds a CreateMarket")
    };
    h.ok(Command::CreateDatedFuture(CreateDatedFuture {
        market: spec,
        expiry_ms: u64::MAX,
        delivery_fee_rate: d("0"),
    }));
    h.ok(Command::CreateOption(CreateOption {
        market: "BTC-C-100".into(),
        underlying: "BTC-PERP".into(),
        call: true,
        strike: d("100"),
        expiry_ms: u64::MAX,
        tick_size: d("0.1"),
        step_size: d("0.001"),
        im_rate: d("0.15"),
        im_floor_rate: d("0.1"),
        mm_rate: d("0.075"),
        fee_cap_rate: d("0"),
        delivery_fee_rate: d("0"),
        liquidation_fee_rate: d("0.01"),
        funding_interval_ms: FUNDING_INTERVAL_MS,
        funding_period_ms: FUNDING_INTERVAL_MS,
    }));
    let Command::CreateMarket(spec) = market_command("USD-INV") else {
        unreachable!("market_command builds a CreateMarket")
    };
    h.ok(Command::CreateInverseMarket(CreateInverseMarket {
        market: CreateMarket {
            step_size: d("1"),
            ..spec
        },
        contract_value: d("100"),
        expiry_ms: 0,
        delivery_fee_rate: d("0"),
    }));
    for account in 1..=ACCOUNTS {
        h.ok(deposit(account, "1000"));
    }
    for (market, price) in [
        ("BTC-PERP", "100"),
        ("ETH-PERP", "100"),
        ("BTC-0327", "100"),
        ("BTC-C-100", "6"),
        ("USD-INV", "100"),
    ] {
        h.ok(mark(market, price));
    }
    h
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut indexed = setup(true);
    let mut scanned = setup(false);
    let mut funding_ms = [0u64; 2];
    let mut liquidations = 0usize;
    for op in ops {
        let Some(command) = command(&indexed, op, &mut funding_ms) else {
            let restored = Ledger::from_records(LedgerConfig::default(), indexed.ledger.records());
            prop_assert!(restored.is_ok(), "{:?}", restored.err());
            if let Ok(restored) = restored {
                indexed.ledger = restored;
            }
            continue;
        };
        let (envelope, a) = indexed.send(command);
        let b = scanned.ledger.apply(&envelope, indexed.now_ms);
        scanned.now_ms = indexed.now_ms;
        prop_assert_eq!(&a, &b, "results differ for {:?}", envelope);
        prop_assert_eq!(indexed.ledger.state_hash(), scanned.ledger.state_hash());
        if let Outcome::Applied { events } = &a.outcome {
            liquidations += events
                .iter()
                .filter(|e| matches!(e, Event::Liquidation { .. }))
                .count();
        }
    }
    if std::env::var_os("LIQ_STATS").is_some() {
        eprintln!("liquidations {liquidations} over {} ops", ops.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_index_liquidates_exactly_what_a_scan_of_every_holder_does(
        ops in prop::collection::vec(op(), 1..120)
    ) {
        run(&ops)?;
    }
}
