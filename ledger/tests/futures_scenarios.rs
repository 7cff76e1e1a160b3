//! Dated futures with hand-computed numbers: a settlement with winners, a
//! loser within its equity and a loser beyond it (covered by the insurance
//! fund, or auto-deleveraged when the fund is empty); a loser whose other
//! positions' profit keeps it above maintenance but whose balance cannot
//! absorb the settlement loss; the refusals around expiry (fills after
//! expiry, settlement before expiry and twice, funding of a future, a
//! settlement of a perpetual, bad terms), each changing nothing; and the
//! instrument record surviving a rebuild from records.
//!
//! Market BTC-0327: the standard test market of `common::market_command`
//! (tick 0.1, step 0.001, USDT 6 decimals, 20x, brackets 1% / 2% / 5%,
//! liquidation fee 1%) expiring at `EXPIRY_MS`, delivery fee 0.05%.

mod common;

use common::*;
use tally_ledger::*;

const EXPIRY_MS: u64 = 1_000_000;
const FUTURE: &str = "BTC-0327";

fn acct(id: u64) -> Owner {
    Owner::Account(id)
}

fn conserved(events: &[Event]) {
    for (asset, net) in net_flows(events) {
        assert!(net.is_zero(), "{asset} not conserved: {net} in {events:#?}");
    }
}

fn future_command(symbol: &str, expiry_ms: u64, delivery_fee_rate: &str) -> Command {
    let Command::CreateMarket(spec) = market_command(symbol) else {
        unreachable!("market_command builds a CreateMarket")
    };
    Command::CreateDatedFuture(CreateDatedFuture {
        market: spec,
        expiry_ms,
        delivery_fee_rate: d(delivery_fee_rate),
    })
}

fn settle(market: &str, price: &str) -> Command {
    Command::SettleFuture(SettleFuture {
        market: market.into(),
        price: d(price),
    })
}

fn fund_insurance(account: u64, amount: &str) -> Command {
    Command::FundInsurance(FundInsurance {
        account,
        asset: "USDT".into(),
        amount: d(amount),
    })
}

/// `perp_harness` (USDT, accounts 1..=6, BTC-PERP, ETH-PERP) at cluster
/// version 2 with BTC-0327 listed.
fn future_harness() -> Harness {
    let mut h = perp_harness();
    assert_eq!(h.ledger.set_cluster_version(2), Ok(true));
    h.ok(future_command(FUTURE, EXPIRY_MS, "0.0005"));
    h
}

/// Alice (1) 1,000, Bob (2) 1,000, Carol (3) 200; mark 100; Carol buys 15
/// and Bob 5 from Alice at 100: Alice short 20 (cost -2,000), Bob long 5
/// (500), Carol long 15 (1,500).
fn three_traders(h: &mut Harness) {
    for (account, amount) in [(1, "1000"), (2, "1000"), (3, "200")] {
        h.ok(deposit(account, amount));
    }
    h.ok(mark(FUTURE, "100"));
    h.ok(perp_fill(FUTURE, 3, 1, "15", "100"));
    h.ok(perp_fill(FUTURE, 2, 1, "5", "100"));
}

/// Moves the clock: the next command is stamped `at_ms`.
fn at(h: &mut Harness, at_ms: u64) {
    h.now_ms = at_ms - 1;
}

#[test]
fn settlement_pays_winners_and_the_insurance_fund_covers_a_loser_beyond_equity() {
    let mut h = future_harness();
    three_traders(&mut h);
    h.ok(deposit(4, "150"));
    h.ok(fund_insurance(4, "150"));
    let market = h.ledger.market(FUTURE).expect("listed");
    assert_eq!(
        (market.kind, market.expiry_ms, market.delivery_fee_rate),
        ("dated_future", EXPIRY_MS, d("0.0005"))
    );
    assert_eq!(market.settlement_price, None);

    at(&mut h, EXPIRY_MS);
    let events = h.ok(settle(FUTURE, "80"));
    conserved(&events);
    // 1. Mark 80: Carol's equity 200 + 15 × (80 - 100) = -100 < MM 12 (1%
    //    of 1,200). Fee min(12, max(-100, 0)) = 0; her position closes at
    //    its bankruptcy value 1,200 + 100 = 1,300 against the fund (150 ≥
    //    100): she realizes 1,300 - 1,500 = -200, ending at 0; the fund's
    //    inventory (long 15 at 1,300) is marked to 1,200: -100, fund 50.
    let liquidation = events.iter().find_map(|e| match e {
        Event::Liquidation {
            account: 3,
            equity,
            fee,
            ..
        } => Some((*equity, *fee)),
        _ => None,
    });
    assert_eq!(liquidation, Some((d("-100"), d("0"))));
    // 2. Nobody else is short of balance. 3. Everything closes at 80:
    //    Alice short 20: 2,000 - 1,600 = +400, fee 1,600 × 0.05% = 0.8;
    //    Bob long 5: 400 - 500 = -100, fee 400 × 0.05% = 0.2; the fund's
    //    inventory (cost 1,200 after the mark) realizes 0, pays no fee.
    //    Σ realized = 300 = the pool, which ends at 0.
    let settlement = events.iter().find_map(|e| match e {
        Event::Settlement {
            price,
            positions,
            realized,
            delivery_fees,
            ..
        } => Some((*price, *positions, *realized, *delivery_fees)),
        _ => None,
    });
    assert_eq!(settlement, Some((d("80"), 3, d("300"), d("1"))));
    assert_eq!(h.usdt(acct(1)), d("1399.2")); // 1,000 + 400 - 0.8
    assert_eq!(h.usdt(acct(2)), d("899.8")); // 1,000 - 100 - 0.2
    assert_eq!(h.usdt(acct(3)), d("0"));
    assert_eq!(h.usdt(Owner::Insurance), d("50"));
    assert_eq!(h.usdt(Owner::Fees), d("1"));
    let exposure = h.ledger.market_exposure(FUTURE).expect("listed");
    assert_eq!(
        (exposure.open_interest, exposure.pnl_pool),
        (d("0"), d("0"))
    );
    assert_eq!(
        h.ledger.market(FUTURE).expect("listed").settlement_price,
        Some(d("80"))
    );
    for account in [1, 2, 3] {
        assert_eq!(h.pos(FUTURE, account), (d("0"), d("0")));
    }
}

#[test]
fn settlement_auto_deleverages_the_winner_when_the_fund_is_empty() {
    let mut h = future_harness();
    three_traders(&mut h);
    at(&mut h, EXPIRY_MS + 5);
    let events = h.ok(settle(FUTURE, "80"));
    conserved(&events);
    // Carol's bankruptcy value 1,300 (as above), fund 0 < 100: Alice (the
    // only profitable short) buys 15 back for 1,300: cost removed
    // -2,000 × 15/20 = -1,500, realized +200; Carol realizes -200 (to 0).
    let deleveraged = events.iter().any(|e| {
        matches!(
            e,
            Event::Position {
                holder: Owner::Account(1),
                cause: PositionCause::Deleverage,
                ..
            }
        )
    });
    assert!(deleveraged, "{events:#?}");
    // Then Alice's short 5 (cost -500) settles at 80: +100, fee 0.2; Bob
    // -100, fee 0.2.
    assert_eq!(h.usdt(acct(1)), d("1299.8")); // 1,000 + 200 + 100 - 0.2
    assert_eq!(h.usdt(acct(2)), d("899.8"));
    assert_eq!(h.usdt(acct(3)), d("0"));
    assert_eq!(h.usdt(Owner::Insurance), d("0"));
    assert_eq!(h.usdt(Owner::Fees), d("0.4"));
}

#[test]
fn a_loser_kept_above_maintenance_by_other_profit_is_liquidated_when_its_balance_cannot_absorb_the_loss()
 {
    let mut h = future_harness();
    three_traders(&mut h);
    // Carol also holds BTC-PERP long 10 at 100 against Dave (4), marked
    // 150: +500 of unrealized profit.
    h.ok(deposit(4, "1000"));
    h.ok(mark("BTC-PERP", "100"));
    h.ok(perp_fill("BTC-PERP", 3, 4, "10", "100"));
    h.ok(mark("BTC-PERP", "150"));
    at(&mut h, EXPIRY_MS);
    let events = h.ok(settle(FUTURE, "80"));
    conserved(&events);
    // At 80 Carol's equity is 200 - 300 + 500 = 400, above her maintenance
    // margin (12 + 15), but her balance 200 cannot absorb the future's
    // -300: she is liquidated. Fee 12 + 15 = 27 to the fund; the 373 left
    // is split by notional (1,200 / 2,700 of it to the future, rounded
    // down: 165.777777; the perp takes 207.222223) and both positions go to
    // the fund at their bankruptcy values, 165.777777 and 207.222223 below
    // their values: the fund ends with all of her equity, 400.
    let liquidation = events.iter().find_map(|e| match e {
        Event::Liquidation {
            account: 3,
            equity,
            fee,
            ..
        } => Some((*equity, *fee)),
        _ => None,
    });
    assert_eq!(liquidation, Some((d("400"), d("27"))));
    assert_eq!(h.usdt(acct(3)), d("0"));
    assert_eq!(h.usdt(Owner::Insurance), d("400"));
    assert_eq!(h.pos("BTC-PERP", 3), (d("0"), d("0")));
    // Alice +400 - 0.8, Bob -100 - 0.2, as in the first scenario.
    assert_eq!(h.usdt(acct(1)), d("1399.2"));
    assert_eq!(h.usdt(acct(2)), d("899.8"));
    // The fund still holds Carol's perp (long 10), not the future.
    let perp = h.ledger.market_exposure("BTC-PERP").expect("listed");
    assert_eq!(perp.open_interest, d("10"));
}

#[test]
fn fills_after_expiry_settlement_before_expiry_and_twice_are_refused_and_change_nothing() {
    let mut h = future_harness();
    three_traders(&mut h);
    at(&mut h, EXPIRY_MS - 2);
    // Before the expiry a fill still settles ...
    h.ok(perp_fill(FUTURE, 2, 1, "1", "100"));
    // ... and settlement is refused (stamped 1 ms before the expiry).
    let early = h.rejected(settle(FUTURE, "100"), RejectCode::NotExpired);
    assert_eq!(
        early.detail,
        RejectDetail::SettlementBeforeExpiry {
            market: FUTURE.into(),
            expiry_ms: EXPIRY_MS,
            now_ms: EXPIRY_MS - 1,
        }
    );
    at(&mut h, EXPIRY_MS);
    let late = h.rejected(
        perp_fill(FUTURE, 2, 1, "1", "100"),
        RejectCode::MarketExpired,
    );
    assert!(late.message().contains("expired at 1000000 ms"), "{late}");
    // Mark prices are still taken between expiry and settlement.
    h.ok(mark(FUTURE, "101"));
    // A funding round never applies to a future.
    h.rejected(funding(FUTURE, "0.0001", 0), RejectCode::WrongInstrument);
    // Settling a perpetual is refused.
    h.ok(mark("BTC-PERP", "100"));
    h.rejected(settle("BTC-PERP", "100"), RejectCode::WrongInstrument);
    // A settlement price must be positive and on the tick's decimals.
    h.rejected(settle(FUTURE, "0"), RejectCode::InvalidPrice);
    h.rejected(settle(FUTURE, "100.05"), RejectCode::BadPrecision);
    h.ok(settle(FUTURE, "100"));
    let twice = h.rejected(settle(FUTURE, "100"), RejectCode::AlreadySettled);
    assert_eq!(
        twice.detail,
        RejectDetail::FutureAlreadySettled {
            market: FUTURE.into(),
            price: d("100.0"),
        }
    );
    h.rejected(
        perp_fill(FUTURE, 2, 1, "1", "100"),
        RejectCode::MarketExpired,
    );
    h.rejected(mark(FUTURE, "100"), RejectCode::MarketExpired);
}

#[test]
fn bad_dated_future_terms_are_refused() {
    let mut h = future_harness();
    h.rejected(
        future_command("BTC-0328", 0, "0.0005"),
        RejectCode::InvalidMarket,
    );
    h.rejected(future_command("BTC-0328", 5, "1"), RejectCode::InvalidRate);
    h.rejected(
        future_command("BTC-0328", 5, "-0.1"),
        RejectCode::InvalidRate,
    );
    h.rejected(
        future_command("BTC-0328", 5, "0.000000001"),
        RejectCode::BadPrecision,
    );
    h.rejected(future_command(FUTURE, 5, "0"), RejectCode::MarketExists);
}

#[test]
fn dated_future_commands_need_cluster_version_2() {
    let mut h = perp_harness();
    let hash = h.ledger.state_hash();
    let create = envelope("future-1", future_command(FUTURE, EXPIRY_MS, "0"));
    let refused = h.ledger.apply(&create, 5_000);
    let Outcome::Rejected(rejection) = refused.outcome else {
        panic!("applied before version 2: {refused:?}")
    };
    assert_eq!(rejection.code, RejectCode::FeatureNotActive);
    assert_eq!(h.ledger.state_hash(), hash);
    let settle = envelope("settle-1", settle(FUTURE, "1"));
    assert!(matches!(
        h.ledger.apply(&settle, 5_001).outcome,
        Outcome::Rejected(Rejection {
            code: RejectCode::FeatureNotActive,
            ..
        })
    ));
    assert_eq!(h.ledger.state_hash(), hash);
}

#[test]
fn a_dated_future_survives_a_rebuild_from_records_before_and_after_settlement() {
    let mut h = future_harness();
    three_traders(&mut h);
    let rebuilt = |ledger: &Ledger| {
        let restored =
            Ledger::from_records(LedgerConfig::default(), ledger.records()).expect("restores");
        assert_eq!(restored.state_hash(), ledger.state_hash());
        assert_eq!(restored.market(FUTURE), ledger.market(FUTURE));
        restored
    };
    let kinds: Vec<_> = h
        .ledger
        .records()
        .iter()
        .filter_map(|(k, _)| RecordKind::of_key(k))
        .filter(|k| *k == RecordKind::Instrument)
        .collect();
    assert_eq!(kinds.len(), 1, "one instrument record: the future's");
    rebuilt(&h.ledger);
    at(&mut h, EXPIRY_MS);
    h.ok(settle(FUTURE, "80"));
    let mut restored = rebuilt(&h.ledger);
    // The rebuilt ledger knows it was settled.
    let again = envelope("again", settle(FUTURE, "80"));
    let outcome = restored.apply(&again, EXPIRY_MS + 10).outcome;
    assert!(
        matches!(
            outcome,
            Outcome::Rejected(Rejection {
                code: RejectCode::AlreadySettled,
                ..
            })
        ),
        "{outcome:?}"
    );
}
