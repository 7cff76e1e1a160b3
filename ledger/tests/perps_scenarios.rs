//! Perpetual-futures scenarios with hand-computed numbers: opening,
//! increasing, partially reducing and flipping positions; funding with a
//! positive and a negative rate; tiered maintenance margin across bracket
//! boundaries (and the liquidation price re-tiering); a liquidation covered
//! by the insurance fund; one that needs auto-deleveraging; one that leaves
//! a shortfall.
//!
//! Market (see `common::market_command`): tick 0.1, step 0.001, USDT (6
//! decimals), max leverage 20, brackets [0: 1% / 20x], [10,000: 2% / 10x],
//! [50,000: 5% / 5x] with cumulative amounts 0, 100 (= 10,000 × 1%) and
//! 1,600 (= 50,000 × 3% + 100), liquidation fee 1%.

mod common;

use common::*;
use tally_ledger::*;

fn acct(id: u64) -> Owner {
    Owner::Account(id)
}

/// Conservation check over one command's events.
fn conserved(events: &[Event]) {
    for (asset, net) in net_flows(events) {
        assert!(net.is_zero(), "{asset} not conserved: {net} in {events:#?}");
    }
}

fn position_events(events: &[Event]) -> Vec<(Owner, PositionCause, Decimal, Decimal)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Position {
                holder,
                cause,
                size,
                realized_pnl,
                ..
            } => Some((*holder, *cause, *size, *realized_pnl)),
            _ => None,
        })
        .collect()
}

#[test]
fn open_increase_partial_reduce_and_flip() {
    let mut h = perp_harness();
    for account in [1, 2, 3] {
        h.ok(deposit(account, "10000"));
    }
    h.ok(mark("BTC-PERP", "100"));

    // 1. Open: Alice (1) buys 10 from Bob (2) at 100, fees 0.5 each.
    //    Alice long 10, cost 1,000, entry 100; Bob short 10.
    //    Balances 10,000 - 0.5 = 9,999.5 each; Fees 1.
    let events = h.ok(perp_fill_fees("BTC-PERP", 1, 2, "10", "100", "0.5", "0.5"));
    conserved(&events);
    assert_eq!(h.pos("BTC-PERP", 1), (d("10"), d("100")));
    assert_eq!(h.pos("BTC-PERP", 2), (d("-10"), d("100")));
    assert_eq!(h.usdt(acct(1)), d("9999.5"));
    assert_eq!(h.usdt(acct(2)), d("9999.5"));
    assert_eq!(h.usdt(Owner::Fees), d("1"));

    // 2. Increase: Alice buys 10 more at 103. Cost 1,000 + 1,030 = 2,030,
    //    size 20: entry = 2,030 / 20 = 101.5 (size-weighted average).
    h.ok(perp_fill("BTC-PERP", 1, 2, "10", "103"));
    assert_eq!(h.pos("BTC-PERP", 1), (d("20"), d("101.5")));
    assert_eq!(h.pos("BTC-PERP", 2), (d("-20"), d("101.5")));

    // 3. Partial reduce: Alice sells 5 to Bob at 110. Cost removed =
    //    2,030 × 5/20 = 507.5; realized = 5 × 110 - 507.5 = +42.5. Bob buys
    //    back 5 of his short: realized = 507.5 - 550 = -42.5. Both sides
    //    reduce, so realized PnL is zero-sum and the pool does not move.
    let events = h.ok(perp_fill("BTC-PERP", 2, 1, "5", "110"));
    conserved(&events);
    let realized = position_events(&events);
    assert_eq!(
        realized,
        [
            (acct(2), PositionCause::Fill, d("-15"), d("-42.5")),
            (acct(1), PositionCause::Fill, d("15"), d("42.5")),
        ]
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Pool { .. })));
    assert_eq!(h.pos("BTC-PERP", 1), (d("15"), d("101.5")));
    assert_eq!(h.usdt(acct(1)), d("10042")); // 9,999.5 + 42.5
    assert_eq!(h.usdt(acct(2)), d("9957")); // 9,999.5 - 42.5

    // 4. Flip: Alice sells 20 to Carol (3) at 95. The first 15 close her long
    //    (cost 1,522.5, proceeds 1,425: realized -97.5); the other 5 open a
    //    short at 95. Carol opens long 20 at 95. Carol opened, so Alice's
    //    loss goes into the PnL pool: pool = +97.5 = -(Σ cost) =
    //    -(-475 [Alice] - 1,522.5 [Bob] + 1,900 [Carol]).
    let events = h.ok(perp_fill("BTC-PERP", 3, 1, "20", "95"));
    conserved(&events);
    assert_eq!(h.pos("BTC-PERP", 1), (d("-5"), d("95")));
    assert_eq!(h.pos("BTC-PERP", 3), (d("20"), d("95")));
    assert_eq!(h.usdt(acct(1)), d("9944.5"));
    let exposure = h.ledger.market_exposure("BTC-PERP").expect("market");
    assert_eq!(exposure.pnl_pool, d("97.5"));
    assert_eq!(exposure.long_size, d("20"));
    assert_eq!(exposure.short_size, d("20")); // Alice 5 + Bob 15
    assert_eq!(exposure.open_interest, d("20"));
    assert_eq!((exposure.long_accounts, exposure.short_accounts), (1, 2));

    // Unrealized PnL at mark 100: Alice short 5 @95: -25; Bob short 15
    // @101.5: +22.5; Carol long 20 @95: +100. Σ UPNL = 97.5 = the pool.
    assert_eq!(h.margin(1).unrealized_pnl, d("-25"));
    assert_eq!(h.margin(2).unrealized_pnl, d("22.5"));
    assert_eq!(h.margin(3).unrealized_pnl, d("100"));
    // Equity = balance + UPNL: Alice 9,944.5 - 25 = 9,919.5.
    assert_eq!(h.margin(1).equity, d("9919.5"));

    // Everyone closes against each other at 100: the pool returns to 0.
    h.ok(perp_fill("BTC-PERP", 1, 3, "5", "100"));
    h.ok(perp_fill("BTC-PERP", 2, 3, "15", "100"));
    let exposure = h.ledger.market_exposure("BTC-PERP").expect("market");
    assert_eq!(exposure.pnl_pool, d("0"));
    assert_eq!(exposure.open_interest, d("0"));
    // Total realized: Alice 42.5 - 97.5 - 25 = -80; Bob -42.5 + 22.5 = -20;
    // Carol +100. Less fees 0.5 each for Alice and Bob.
    assert_eq!(h.usdt(acct(1)), d("9919.5"));
    assert_eq!(h.usdt(acct(2)), d("9979.5"));
    assert_eq!(h.usdt(acct(3)), d("10100"));
    assert_eq!(h.ledger.margin(1), Some(Vec::new()));
}

#[test]
fn funding_rounds_with_positive_and_negative_rates() {
    let mut h = perp_harness();
    for account in [1, 2, 3] {
        h.ok(deposit(account, "10000"));
    }
    h.ok(mark("BTC-PERP", "100"));
    // Alice long 10; Bob short 6, Carol short 4 (all at 100).
    h.ok(perp_fill("BTC-PERP", 1, 2, "6", "100"));
    h.ok(perp_fill("BTC-PERP", 1, 3, "4", "100"));
    h.ok(mark("BTC-PERP", "100.3"));

    // Rate +0.00012345 at mark 100.3: longs pay.
    //   Alice pays 10 × 100.3 × 0.00012345 = 0.12382035 -> away from zero 0.123821
    //   Bob gets    6 × 100.3 × 0.00012345 = 0.07429221 -> toward zero   0.074292
    //   Carol gets  4 × 100.3 × 0.00012345 = 0.04952814 -> toward zero   0.049528
    //   paid 0.123821 - received 0.123820 = residue 0.000001 -> insurance.
    let events = h.ok(funding("BTC-PERP", "0.00012345", FUNDING_INTERVAL_MS));
    conserved(&events);
    let summary = events.iter().find_map(|e| match e {
        Event::Funding {
            paid,
            received,
            residue,
            uncollected,
            ..
        } => Some((*paid, *received, *residue, *uncollected)),
        _ => None,
    });
    assert_eq!(
        summary,
        Some((d("0.123821"), d("0.12382"), d("0.000001"), d("0")))
    );
    assert_eq!(h.usdt(acct(1)), d("9999.876179"));
    assert_eq!(h.usdt(acct(2)), d("10000.074292"));
    assert_eq!(h.usdt(acct(3)), d("10000.049528"));
    assert_eq!(h.usdt(Owner::Insurance), d("0.000001"));

    // Rate -0.00012345 eight hours later: shorts pay.
    //   Alice gets 0.12382035 -> 0.123820; Bob pays 0.07429221 -> 0.074293;
    //   Carol pays 0.04952814 -> 0.049529. Paid 0.123822, residue 0.000002.
    let events = h.ok(funding("BTC-PERP", "-0.00012345", 2 * FUNDING_INTERVAL_MS));
    conserved(&events);
    assert_eq!(h.usdt(acct(1)), d("9999.999999"));
    assert_eq!(h.usdt(acct(2)), d("9999.999999"));
    assert_eq!(h.usdt(acct(3)), d("9999.999999"));
    assert_eq!(h.usdt(Owner::Insurance), d("0.000003"));
    let payments: Vec<(Owner, Decimal)> = events
        .iter()
        .filter_map(|e| match e {
            Event::FundingPayment { holder, amount, .. } => Some((*holder, *amount)),
            _ => None,
        })
        .collect();
    assert_eq!(
        payments,
        [
            (acct(1), d("0.123820")),
            (acct(2), d("-0.074293")),
            (acct(3), d("-0.049529")),
        ]
    );
    assert_eq!(
        h.ledger
            .market("BTC-PERP")
            .and_then(|m| m.last_funding_time_ms),
        Some(2 * FUNDING_INTERVAL_MS)
    );
    // The same round again (and any earlier time) is refused.
    h.rejected(
        funding("BTC-PERP", "-0.00012345", 2 * FUNDING_INTERVAL_MS),
        RejectCode::FundingAlreadyApplied,
    );
    h.rejected(
        funding("BTC-PERP", "0.0001", FUNDING_INTERVAL_MS),
        RejectCode::FundingAlreadyApplied,
    );
}

#[test]
fn maintenance_margin_is_tiered_and_continuous_across_brackets() {
    let mut h = perp_harness();
    h.ok(deposit(1, "1000"));
    h.ok(deposit(2, "100000"));
    h.ok(mark("BTC-PERP", "100"));
    // Alice: long 100 at 100, notional 10,000 = the floor of bracket 1
    // (2%, 10x): IM = 10,000 / 10 = 1,000 = her whole balance (allowed).
    h.ok(perp_fill("BTC-PERP", 1, 2, "100", "100"));
    let m = h.margin(1);
    assert_eq!(m.initial_margin, d("1000"));
    // MM = 10,000 × 2% - 100 = 100 (= 10,000 × 1% in bracket 0: continuous).
    assert_eq!(m.maintenance_margin, d("100"));
    assert_eq!(m.positions[0].bracket, 1);
    assert_eq!(m.positions[0].max_leverage, 10);
    // Margin ratio = 100 / 1,000.
    assert_eq!(m.margin_ratio, Some(d("0.1")));
    // Liquidation price: bracket 1 gives (1,000 + 100 - 10,000) / (100 × 0.02
    // - 100) = 90.816..., whose notional 9,081.6 is in bracket 0; re-tiered:
    // (1,000 + 0 - 10,000) / (100 × 0.01 - 100) = 90.90909...
    assert_eq!(m.positions[0].liquidation_price, Some(d("90.90909")));

    // Mark 99.9: notional 9,990 in bracket 0 (1%, 20x): MM = 99.9, IM = 499.5.
    h.ok(mark("BTC-PERP", "99.9"));
    let m = h.margin(1);
    assert_eq!(
        (m.maintenance_margin, m.initial_margin),
        (d("99.9"), d("499.5"))
    );
    assert_eq!(m.positions[0].bracket, 0);

    // Mark 300: notional 30,000 in bracket 1: MM = 600 - 100 = 500, IM 3,000.
    h.ok(mark("BTC-PERP", "300"));
    let m = h.margin(1);
    assert_eq!(
        (m.maintenance_margin, m.initial_margin),
        (d("500"), d("3000"))
    );
    // Mark 500: notional 50,000 at the floor of bracket 2: 50,000 × 5% -
    // 1,600 = 900 = 50,000 × 2% - 100 (continuous).
    h.ok(mark("BTC-PERP", "500"));
    assert_eq!(h.margin(1).maintenance_margin, d("900"));
    // Mark 600: notional 60,000: MM = 3,000 - 1,600 = 1,400; IM = 60,000 / 5.
    h.ok(mark("BTC-PERP", "600"));
    let m = h.margin(1);
    assert_eq!(
        (m.maintenance_margin, m.initial_margin),
        (d("1400"), d("12000"))
    );
    assert_eq!(m.positions[0].bracket, 2);
    assert_eq!(m.positions[0].max_leverage, 5);
    // Bob (short 100 at 100, 100,000 deposited): UPNL -50,000, equity 50,000,
    // MM 1,400: ratio 0.028.
    let bob = h.margin(2);
    assert_eq!(bob.equity, d("50000"));
    assert_eq!(bob.margin_ratio, Some(d("0.028")));

    // Back to 91: equity 1,000 - 900 = 100 >= MM 91 (bracket 0): safe.
    h.ok(mark("BTC-PERP", "91"));
    assert_eq!(h.pos("BTC-PERP", 1), (d("100"), d("100")));
    // The closest to liquidation is Alice (ratio 91 / 100 = 0.91).
    let risky = h.ledger.closest_to_liquidation(1, Some("USDT"));
    assert_eq!(risky.len(), 1);
    assert_eq!(
        (risky[0].account, risky[0].margin_ratio),
        (1, Some(d("0.91")))
    );
    // 90.9 is below the liquidation price 90.909...: equity 90 < MM 90.9.
    let events = h.ok(mark("BTC-PERP", "90.9"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Liquidation { account: 1, .. }))
    );
    assert_eq!(h.pos("BTC-PERP", 1), (d("0"), d("0")));
}

/// Seeds the insurance fund with 260 USDT through a liquidation in ETH-PERP.
///
/// Frank (5) deposits 2,000 and buys 200 ETH-PERP at 100 (notional 20,000,
/// bracket 1, IM 2,000). At mark 91.3: equity 2,000 - 200 × 8.7 = 260;
/// notional 18,260, MM = 18,260 × 2% - 100 = 265.2 > 260: liquidated. Fee =
/// 18,260 × 1% = 182.6 (< equity, charged in full); the remaining 77.4 is
/// the bankruptcy give-up: the fund takes the long over at 18,260 - 77.4 =
/// 18,182.6 (bankruptcy price 90.913) and marks it to 91.3 (+77.4). Frank
/// ends at 0; the fund at 182.6 + 77.4 = 260.
fn seed_insurance(h: &mut Harness) {
    h.ok(deposit(5, "2000"));
    h.ok(deposit(6, "100000"));
    h.ok(mark("ETH-PERP", "100"));
    h.ok(perp_fill("ETH-PERP", 5, 6, "200", "100"));
    let events = h.ok(mark("ETH-PERP", "91.3"));
    conserved(&events);
    let liquidation = events.iter().find_map(|e| match e {
        Event::Liquidation {
            account,
            equity,
            maintenance_margin,
            fee,
            ..
        } => Some((*account, *equity, *maintenance_margin, *fee)),
        _ => None,
    });
    assert_eq!(liquidation, Some((5, d("260"), d("265.2"), d("182.6"))));
    let prices: Vec<Decimal> = events
        .iter()
        .filter_map(|e| match e {
            Event::Position {
                cause: PositionCause::Takeover,
                price,
                ..
            } => Some(*price),
            _ => None,
        })
        .collect();
    assert_eq!(prices, [d("90.91300")]);
    assert_eq!(h.usdt(acct(5)), d("0"));
    assert_eq!(h.usdt(Owner::Insurance), d("260"));
    let exposure = h.ledger.market_exposure("ETH-PERP").expect("market");
    assert_eq!(exposure.insurance_position, d("200"));
    assert_eq!(exposure.insurance_balance, d("260"));
}

#[test]
fn liquidation_covered_by_the_insurance_fund() {
    let mut h = perp_harness();
    seed_insurance(&mut h);
    h.ok(deposit(1, "1000"));
    h.ok(deposit(2, "100000"));
    h.ok(mark("BTC-PERP", "100"));
    h.ok(perp_fill("BTC-PERP", 1, 2, "100", "100"));
    // Gap to 89: Alice's equity = 1,000 - 1,100 = -100 < MM 89. No fee (no
    // equity left). Bankruptcy value = 8,900 + 100 = 9,000 (price 90): the
    // fund takes the long over at 90 and marks it to 89, losing 100, which
    // its 260 covers. Alice ends at exactly 0; the fund at 160.
    let events = h.ok(mark("BTC-PERP", "89"));
    conserved(&events);
    let liquidation = events.iter().find_map(|e| match e {
        Event::Liquidation { equity, fee, .. } => Some((*equity, *fee)),
        _ => None,
    });
    assert_eq!(liquidation, Some((d("-100"), d("0"))));
    assert_eq!(
        position_events(&events),
        [
            // Alice sells 100 at the bankruptcy price 90: -1,000.
            (acct(1), PositionCause::Liquidation, d("0"), d("-1000")),
            (Owner::Insurance, PositionCause::Takeover, d("100"), d("0")),
            // Marked to 89: -100.
            (Owner::Insurance, PositionCause::Mark, d("100"), d("-100")),
        ]
    );
    assert_eq!(h.usdt(acct(1)), d("0"));
    assert_eq!(h.usdt(Owner::Insurance), d("160"));
    assert!(!events.iter().any(|e| matches!(e, Event::Shortfall { .. })));
    // Bob's short is untouched.
    assert_eq!(h.pos("BTC-PERP", 2), (d("-100"), d("100")));
    let exposure = h.ledger.market_exposure("BTC-PERP").expect("market");
    assert_eq!(exposure.insurance_position, d("100"));
    assert_eq!(exposure.open_interest, d("100"));
}

#[test]
fn liquidation_that_needs_auto_deleveraging() {
    let mut h = perp_harness();
    h.ok(deposit(1, "1000"));
    h.ok(deposit(2, "10000"));
    h.ok(deposit(4, "2000"));
    h.ok(mark("BTC-PERP", "100"));
    // Alice long 100 at 100: 60 from Bob, 40 from Dave (4).
    h.ok(perp_fill("BTC-PERP", 1, 2, "60", "100"));
    h.ok(perp_fill("BTC-PERP", 1, 4, "40", "100"));
    // Gap to 89: Alice's equity -100, the insurance fund is empty: ADL.
    // Bankruptcy value 8,900 + 100 = 9,000 (price 90). Ranking by PnL% ×
    // effective leverage:
    //   Dave: UPNL 440 / cost 4,000 = 11%; notional 3,560 / equity 2,440 =
    //         1.459x -> score 0.1605
    //   Bob:  UPNL 660 / cost 6,000 = 11%; notional 5,340 / equity 10,660 =
    //         0.501x -> score 0.0551
    // Dave first: 40 closed at 9,000 × 40/100 = 3,600 (realized 4,000 -
    // 3,600 = +400 instead of +440 at the mark); then Bob: the remaining 60
    // at 5,400 (realized +600 instead of +660). Alice: -400 - 600 = -1,000:
    // ends at 0.
    let events = h.ok(mark("BTC-PERP", "89"));
    conserved(&events);
    assert_eq!(
        position_events(&events),
        [
            (acct(1), PositionCause::Liquidation, d("60"), d("-400")),
            (acct(4), PositionCause::Deleverage, d("0"), d("400")),
            (acct(1), PositionCause::Liquidation, d("0"), d("-600")),
            (acct(2), PositionCause::Deleverage, d("0"), d("600")),
        ]
    );
    let adl_prices: Vec<Decimal> = events
        .iter()
        .filter_map(|e| match e {
            Event::Position {
                cause: PositionCause::Deleverage,
                price,
                ..
            } => Some(*price),
            _ => None,
        })
        .collect();
    assert_eq!(adl_prices, [d("90.00000"), d("90.00000")]);
    assert_eq!(h.usdt(acct(1)), d("0"));
    assert_eq!(h.usdt(acct(4)), d("2400"));
    assert_eq!(h.usdt(acct(2)), d("10600"));
    assert_eq!(h.usdt(Owner::Insurance), d("0"));
    assert!(!events.iter().any(|e| matches!(e, Event::Shortfall { .. })));
    let exposure = h.ledger.market_exposure("BTC-PERP").expect("market");
    assert_eq!(exposure.open_interest, d("0"));
    assert_eq!(exposure.pnl_pool, d("0"));
}

#[test]
fn exhausted_insurance_and_adl_leave_a_reported_shortfall() {
    let mut h = perp_harness();
    h.ok(deposit(1, "1000"));
    h.ok(deposit(2, "10000"));
    h.ok(deposit(3, "10000"));
    h.ok(mark("BTC-PERP", "100"));
    // Alice long 100 at 100 from Bob; Bob then buys 100 back from Carol at
    // 60: Bob is flat (realized +4,000 from the pool), Carol short 100 at 60.
    h.ok(perp_fill("BTC-PERP", 1, 2, "100", "100"));
    h.ok(perp_fill("BTC-PERP", 2, 3, "100", "60"));
    assert_eq!(h.usdt(acct(2)), d("14000"));
    // Gap to 89: Alice's equity -100. The fund is empty, and the only short
    // (Carol at 60) is losing (UPNL -2,900): no ADL. The fund takes the long
    // at the mark (losing nothing it does not have), Alice's -100 stays.
    let events = h.ok(mark("BTC-PERP", "89"));
    conserved(&events);
    let shortfall = events.iter().find_map(|e| match e {
        Event::Shortfall {
            account, amount, ..
        } => Some((*account, *amount)),
        _ => None,
    });
    assert_eq!(shortfall, Some((1, d("100"))));
    assert_eq!(h.usdt(acct(1)), d("-100"));
    assert_eq!(h.usdt(Owner::Insurance), d("0"));
    // The debt can be repaid; withdrawals stay refused until it is.
    h.rejected(
        Command::Withdraw(Withdraw {
            account: 1,
            asset: "USDT".into(),
            amount: d("1"),
        }),
        RejectCode::InsufficientFunds,
    );
    h.ok(deposit(1, "150"));
    assert_eq!(h.usdt(acct(1)), d("50"));
}

#[test]
fn perp_state_survives_records_and_take_dirty() {
    let mut h = perp_harness();
    seed_insurance(&mut h);
    h.ok(deposit(1, "1000"));
    h.ok(mark("BTC-PERP", "100"));
    h.ok(perp_fill("BTC-PERP", 1, 6, "3", "100"));
    h.ok(funding("BTC-PERP", "0.0001", FUNDING_INTERVAL_MS));
    h.ok(Command::SetMarketPaused(SetMarketPaused {
        market: "BTC-PERP".into(),
        paused: true,
    }));
    let records = h.ledger.records();
    for kind in [RecordKind::Market, RecordKind::Position] {
        assert!(
            records
                .iter()
                .any(|(k, _)| RecordKind::of_key(k) == Some(kind))
        );
    }
    let rebuilt = Ledger::from_records(LedgerConfig::default(), records.clone()).expect("restores");
    assert_eq!(rebuilt.state_hash(), h.ledger.state_hash());
    assert_eq!(rebuilt.markets(), h.ledger.markets());
    assert_eq!(rebuilt.margin(1), h.ledger.margin(1));
    assert_eq!(
        rebuilt.market_exposure("ETH-PERP"),
        h.ledger.market_exposure("ETH-PERP")
    );
    // take_dirty, applied to an empty store from the start, equals records().
    let mut store = std::collections::BTreeMap::new();
    let mut fresh = perp_harness();
    for (key, value) in fresh.ledger.take_dirty() {
        match value {
            Some(v) => store.insert(key, v),
            None => store.remove(&key),
        };
    }
    seed_insurance(&mut fresh);
    fresh.ok(deposit(1, "5000"));
    fresh.ok(perp_fill("ETH-PERP", 6, 1, "10", "91.3"));
    fresh.ok(perp_fill("ETH-PERP", 1, 6, "10", "90"));
    assert_eq!(fresh.pos("ETH-PERP", 1), (d("0"), d("0")));
    for (key, value) in fresh.ledger.take_dirty() {
        match value {
            Some(v) => store.insert(key, v),
            None => store.remove(&key),
        };
    }
    let expected: std::collections::BTreeMap<_, _> = fresh.ledger.records().into_iter().collect();
    assert_eq!(store, expected);
}

#[test]
fn short_liquidation_price_and_liquidation() {
    let mut h = perp_harness();
    h.ok(deposit(1, "100000"));
    h.ok(deposit(2, "1000"));
    h.ok(mark("BTC-PERP", "100"));
    // Bob (2) short 100 at 100 (notional 10,000, bracket 1, IM 1,000).
    h.ok(perp_fill("BTC-PERP", 1, 2, "100", "100"));
    // LP = (WB + cum - side × size × entry) / (size × mmr - side × size)
    //    = (1,000 + 100 + 10,000) / (100 × 0.02 + 100) = 11,100 / 102
    //    = 108.8235294... (notional 10,882 stays in bracket 1).
    let bob = h.margin(2);
    assert_eq!(bob.positions[0].liquidation_price, Some(d("108.82353")));
    // Alice's long is far from liquidation: no liquidation price.
    assert_eq!(h.margin(1).positions[0].liquidation_price, None);
    // 108.8: equity 1,000 - 880 = 120 >= MM 10,880 × 2% - 100 = 117.6.
    h.ok(mark("BTC-PERP", "108.8"));
    assert_eq!(h.pos("BTC-PERP", 2).0, d("-100"));
    // 108.9: equity 110 < MM 117.8. Fee = 10,890 × 1% = 108.9 (< 110);
    // the remaining 1.1 makes the bankruptcy value -10,890 - 1.1 (price
    // 108.911): the fund takes the short over and marks it to 108.9 (+1.1).
    let events = h.ok(mark("BTC-PERP", "108.9"));
    conserved(&events);
    let liquidation = events.iter().find_map(|e| match e {
        Event::Liquidation {
            account,
            equity,
            maintenance_margin,
            fee,
            ..
        } => Some((*account, *equity, *maintenance_margin, *fee)),
        _ => None,
    });
    assert_eq!(liquidation, Some((2, d("110"), d("117.8"), d("108.9"))));
    let takeover = events.iter().find_map(|e| match e {
        Event::Position {
            cause: PositionCause::Takeover,
            price,
            size,
            ..
        } => Some((*price, *size)),
        _ => None,
    });
    assert_eq!(takeover, Some((d("108.91100"), d("-100"))));
    assert_eq!(h.usdt(acct(2)), d("0"));
    assert_eq!(h.usdt(Owner::Insurance), d("110"));
    assert_eq!(
        h.ledger
            .market_exposure("BTC-PERP")
            .map(|e| e.insurance_position),
        Some(d("-100"))
    );
}
