//! Options with hand-computed numbers: a fill moves the premium buyer to
//! seller with the fee capped at the market's share of the premium; a long
//! needs no margin beyond the premium; short call and short put standard
//! margin out of and in the money (and a put's risk capped at the strike);
//! a short liquidated at mark; exercise in the money (shorts pay
//! intrinsic) and expiry out of the money (worthless), margin released; a
//! perpetual option's funding with a positive and a negative time value,
//! rounded as perp funding; and the bad inputs (strike off its grid, no
//! underlying index, exercising too early, twice, or a perpetual option),
//! each changing nothing.
//!
//! Underlying: BTC-PERP (`common::market_command`, tick 0.1, USDT 6
//! decimals), marked 30,000. Options: tick 0.1, step 0.001, standard margin
//! a = 0.15, b = 0.10, c = 0.075, fee cap 12.5%, delivery fee 0.02%,
//! liquidation fee 1%, funding every 8 hours over a 24-hour period.

mod common;

use common::*;
use tally_ledger::*;

const EXPIRY_MS: u64 = 1_000_000;
const CALL: &str = "BTC-C-32000";
const PUT: &str = "BTC-P-28000";
const PERP_CALL: &str = "BTC-PC-30000";
const HOUR_MS: u64 = 3_600_000;

fn acct(id: u64) -> Owner {
    Owner::Account(id)
}

fn conserved(events: &[Event]) {
    for (asset, net) in net_flows(events) {
        assert!(net.is_zero(), "{asset} not conserved: {net} in {events:#?}");
    }
}

fn option(
    symbol: &str,
    underlying: &str,
    call: bool,
    strike: &str,
    expiry_ms: u64,
) -> CreateOption {
    CreateOption {
        market: symbol.into(),
        underlying: underlying.into(),
        call,
        strike: d(strike),
        expiry_ms,
        tick_size: d("0.1"),
        step_size: d("0.001"),
        im_rate: d("0.15"),
        im_floor_rate: d("0.10"),
        mm_rate: d("0.075"),
        fee_cap_rate: d("0.125"),
        delivery_fee_rate: d("0.0002"),
        liquidation_fee_rate: d("0.01"),
        funding_interval_ms: 8 * HOUR_MS,
        funding_period_ms: 24 * HOUR_MS,
    }
}

fn exercise(market: &str, price: &str) -> Command {
    Command::ExerciseOption(ExerciseOption {
        market: market.into(),
        price: d(price),
    })
}

fn option_funding(market: &str, funding_time_ms: u64) -> Command {
    Command::ApplyOptionFunding(ApplyOptionFunding {
        market: market.into(),
        funding_time_ms,
    })
}

/// `perp_harness` at cluster version 2, BTC-PERP marked 30,000, the call
/// (K 32,000), the put (K 28,000) and a perpetual call (K 30,000) listed.
fn option_harness() -> Harness {
    let mut h = perp_harness();
    assert_eq!(h.ledger.set_cluster_version(2), Ok(true));
    h.ok(mark("BTC-PERP", "30000"));
    h.ok(Command::CreateOption(option(
        CALL, "BTC-PERP", true, "32000", EXPIRY_MS,
    )));
    h.ok(Command::CreateOption(option(
        PUT, "BTC-PERP", false, "28000", EXPIRY_MS,
    )));
    h.ok(Command::CreateOption(option(
        PERP_CALL, "BTC-PERP", true, "30000", 0,
    )));
    h
}

fn position(h: &Harness, account: u64, market: &str) -> PositionView {
    h.margin(account)
        .positions
        .into_iter()
        .find(|p| p.market == market)
        .expect("a position")
}

#[test]
fn a_fill_moves_the_premium_with_a_capped_fee_and_a_long_needs_nothing_more() {
    let mut h = option_harness();
    h.ok(deposit(1, "1000"));
    h.ok(deposit(2, "10000"));
    h.ok(mark(CALL, "500"));
    // Alice (1) buys 1 call from Bob (2) at 500: premium 500. Her fee 100
    // is capped at 12.5% × 500 = 62.5; Bob's 10 is under the cap.
    let events = h.ok(perp_fill_fees(CALL, 1, 2, "1", "500", "100", "10"));
    conserved(&events);
    let fill = events.iter().find_map(|e| match e {
        Event::PerpFill {
            buyer_fee,
            seller_fee,
            ..
        } => Some((*buyer_fee, *seller_fee)),
        _ => None,
    });
    assert_eq!(fill, Some((d("62.5"), d("10"))));
    assert_eq!(h.usdt(acct(1)), d("437.5")); // 1,000 - 500 - 62.5
    assert_eq!(h.usdt(acct(2)), d("10490")); // 10,000 + 500 - 10
    assert_eq!(h.usdt(Owner::Fees), d("72.5"));
    // Equity counts the option at mark: Alice 437.5 + 500; no margin.
    let alice = h.margin(1);
    assert_eq!(
        (alice.equity, alice.initial_margin, alice.maintenance_margin),
        (d("937.5"), d("0"), d("0"))
    );
    assert_eq!(alice.unrealized_pnl, d("500"));
    // Bob is short: 10,490 - 500 of equity.
    assert_eq!(h.margin(2).equity, d("9990"));
    // Alice cannot pay a second premium of 2 × 500 from 437.5: refused,
    // although a long needs no margin.
    h.rejected(
        perp_fill(CALL, 1, 2, "2", "500"),
        RejectCode::InsufficientFunds,
    );
    // Alice sells her call back to Bob at 520: she receives 520, Bob pays.
    h.ok(perp_fill(CALL, 2, 1, "1", "520"));
    assert_eq!(h.usdt(acct(1)), d("957.5"));
    assert_eq!(h.usdt(acct(2)), d("9970"));
    assert_eq!(h.ledger.margin(1), Some(Vec::new()));
}

#[test]
fn short_call_and_short_put_standard_margin_out_of_and_in_the_money() {
    let mut h = option_harness();
    for account in [1, 2, 3, 4] {
        h.ok(deposit(account, "100000"));
    }
    h.ok(mark(CALL, "500"));
    h.ok(mark(PUT, "300"));
    h.ok(perp_fill(CALL, 1, 2, "2", "500"));
    h.ok(perp_fill(PUT, 3, 4, "2", "300"));
    // U = 30,000. Short call K 32,000: OTM 2,000; per unit IM = max(0.15 ×
    // 30,000 - 2,000, 0.10 × 30,000) + 500 = 3,000 + 500 = 3,500, MM =
    // 0.075 × 30,000 + 500 = 2,750; size 2: 7,000 and 5,500.
    let call = position(&h, 2, CALL);
    assert_eq!(
        (call.initial_margin, call.maintenance_margin),
        (d("7000"), d("5500"))
    );
    assert_eq!(call.liquidation_price, None);
    // Short put K 28,000: OTM = 30,000 - 28,000 = 2,000: IM = 3,000 + 300
    // = 3,300, MM = 2,250 + 300 = 2,550; size 2: 6,600 and 5,100.
    let put = position(&h, 4, PUT);
    assert_eq!(
        (put.initial_margin, put.maintenance_margin),
        (d("6600"), d("5100"))
    );
    // Longs need none.
    assert_eq!(position(&h, 1, CALL).initial_margin, d("0"));
    // In the money. U = 34,000, call mark 2,500: OTM 0, IM = max(5,100,
    // 3,400) + 2,500 = 7,600, MM = 2,550 + 2,500 = 5,050; size 2.
    h.ok(mark("BTC-PERP", "34000"));
    h.ok(mark(CALL, "2500"));
    let call = position(&h, 2, CALL);
    assert_eq!(
        (call.initial_margin, call.maintenance_margin),
        (d("15200"), d("10100"))
    );
    // U = 25,000, put mark 3,100: OTM 0, IM = max(3,750, 2,500) + 3,100 =
    // 6,850, MM = 1,875 + 3,100 = 4,975; size 2.
    h.ok(mark("BTC-PERP", "25000"));
    h.ok(mark(PUT, "3100"));
    let put = position(&h, 4, PUT);
    assert_eq!(
        (put.initial_margin, put.maintenance_margin),
        (d("13700"), d("9950"))
    );
    // Far out of the money a put's risk is capped at its strike: U =
    // 300,000, mark 0.1: max(45,000 - 272,000, 30,000) = 30,000 → 28,000;
    // MM min(22,500, 28,000). Per unit 28,000.1 and 22,500.1.
    h.ok(mark("BTC-PERP", "300000"));
    h.ok(mark(PUT, "0.1"));
    let put = position(&h, 4, PUT);
    assert_eq!(
        (put.initial_margin, put.maintenance_margin),
        (d("56000.2"), d("45000.2"))
    );
}

#[test]
fn a_short_below_maintenance_is_liquidated_at_mark_against_the_fund() {
    let mut h = option_harness();
    h.ok(deposit(1, "10000"));
    h.ok(deposit(2, "3500"));
    h.ok(mark(CALL, "500"));
    // Bob's equity 3,500 exactly covers his IM 3,500 (see the margin test).
    h.ok(perp_fill(CALL, 1, 2, "1", "500"));
    assert_eq!(h.usdt(acct(2)), d("4000"));
    // Mark 1,300: Bob's equity 4,000 - 1,300 = 2,700 < MM 2,250 + 1,300.
    let events = h.ok(mark(CALL, "1300"));
    conserved(&events);
    // Fee min(1% × 1,300, 2,700) = 13; he buys back at his bankruptcy
    // value 1,300 + 2,687 = 3,987 (from the fund): his balance ends at 0
    // and the fund, short 1 marked at 1,300, holds 13 + 2,687 = 2,700.
    let liquidation = events.iter().find_map(|e| match e {
        Event::Liquidation {
            account: 2,
            equity,
            fee,
            ..
        } => Some((*equity, *fee)),
        _ => None,
    });
    assert_eq!(liquidation, Some((d("2700"), d("13"))));
    assert_eq!(h.usdt(acct(2)), d("0"));
    assert_eq!(h.usdt(Owner::Insurance), d("2700"));
    assert_eq!(h.ledger.margin(2), Some(Vec::new()));
    // At expiry the fund's short settles like any short: S = 33,000,
    // intrinsic 1,000. Marking its inventory from 1,300 to 1,000 gains it
    // 300 (3,000); the long receives 1,000 (through the pool the fund's
    // marked inventory funded) less its fee 0.02% × 1,000 = 0.2.
    h.now_ms = EXPIRY_MS;
    let events = h.ok(exercise(CALL, "33000"));
    conserved(&events);
    assert_eq!(h.usdt(acct(1)), d("10499.8")); // 10,000 - 500 + 1,000 - 0.2
    assert_eq!(h.usdt(Owner::Insurance), d("3000"));
    assert_eq!(h.usdt(Owner::Fees), d("0.2"));
}

#[test]
fn exercise_in_the_money_pays_intrinsic_and_out_of_the_money_expires_worthless() {
    let mut h = option_harness();
    for account in [1, 2, 3, 4] {
        h.ok(deposit(account, "100000"));
    }
    h.ok(mark(CALL, "500"));
    h.ok(mark(PUT, "300"));
    // Alice (1) long 2 calls from Bob (2) at 500; Dave (4) long 2 puts
    // from Carol (3) at 300.
    h.ok(perp_fill(CALL, 1, 2, "2", "500"));
    h.ok(perp_fill(PUT, 4, 3, "2", "300"));
    h.rejected(exercise(CALL, "33500"), RejectCode::NotExpired);
    h.now_ms = EXPIRY_MS - 1;
    h.rejected(perp_fill(CALL, 1, 2, "1", "500"), RejectCode::MarketExpired);
    // S = 33,500: the call is 1,500 in the money. Bob pays Alice 2 × 1,500
    // = 3,000; each pays the delivery fee 0.02% × 3,000 = 0.6.
    let events = h.ok(exercise(CALL, "33500"));
    conserved(&events);
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
    // Realized: +3,000 and -3,000: zero-sum.
    assert_eq!(settlement, Some((d("33500"), 2, d("0"), d("1.2"))));
    assert_eq!(h.usdt(acct(1)), d("101999.4")); // 100,000 - 1,000 + 3,000 - 0.6
    assert_eq!(h.usdt(acct(2)), d("97999.4")); // 100,000 + 1,000 - 3,000 - 0.6
    // The put (K 28,000) at S = 33,500 is out of the money: worthless;
    // Carol keeps the premium 600, no fee.
    let events = h.ok(exercise(PUT, "33500"));
    conserved(&events);
    assert_eq!(h.usdt(acct(3)), d("100600"));
    assert_eq!(h.usdt(acct(4)), d("99400"));
    assert_eq!(h.usdt(Owner::Fees), d("1.2"));
    // Margin released: nobody holds anything.
    for account in 1..=4 {
        assert_eq!(
            h.ledger.margin(account),
            Some(Vec::new()),
            "account {account}"
        );
    }
    let view = h.ledger.market(CALL).expect("listed");
    assert_eq!(
        (view.kind, view.settlement_price, view.strike),
        ("call", Some(d("33500.0")), Some(d("32000.0")))
    );
    h.rejected(exercise(CALL, "33500"), RejectCode::AlreadySettled);
    h.rejected(perp_fill(CALL, 1, 2, "1", "500"), RejectCode::MarketExpired);
    h.rejected(exercise(PERP_CALL, "33500"), RejectCode::WrongInstrument);
    // The rebuilt ledger is the same one.
    let restored =
        Ledger::from_records(LedgerConfig::default(), h.ledger.records()).expect("restores");
    assert_eq!(restored.state_hash(), h.ledger.state_hash());
    assert_eq!(restored.markets(), h.ledger.markets());
}

#[test]
fn perpetual_option_funding_with_positive_and_negative_time_value() {
    let mut h = option_harness();
    for account in [1, 2, 3] {
        h.ok(deposit(account, "100000"));
    }
    h.ok(mark(PERP_CALL, "100"));
    // Alice (1) long 1 and Carol (3) long 2, Bob (2) short 3.
    h.ok(perp_fill(PERP_CALL, 1, 2, "1", "100"));
    h.ok(perp_fill(PERP_CALL, 3, 2, "2", "100"));
    let (alice, bob, carol) = (h.usdt(acct(1)), h.usdt(acct(2)), h.usdt(acct(3)));
    // U = 30,000 = K: intrinsic 0, time value 100. First round at 8 h:
    // elapsed one interval (8 h) of the 24 h period. Alice owes 1 × 100 /
    // 3 = 33.33.. → 33.333334 (debits away from zero), Carol 66.666667;
    // Bob receives 3 × 100 / 3 = 100. Residue 0.000001 to the fund.
    let events = h.ok(option_funding(PERP_CALL, 8 * HOUR_MS));
    conserved(&events);
    let round = events.iter().find_map(|e| match e {
        Event::OptionFunding {
            time_value,
            elapsed_ms,
            paid,
            received,
            residue,
            ..
        } => Some((*time_value, *elapsed_ms, *paid, *received, *residue)),
        _ => None,
    });
    assert_eq!(
        round,
        Some((
            d("100"),
            8 * HOUR_MS,
            d("100.000001"),
            d("100"),
            d("0.000001")
        ))
    );
    assert_eq!(h.usdt(acct(1)), alice - d("33.333334"));
    assert_eq!(h.usdt(acct(3)), carol - d("66.666667"));
    assert_eq!(h.usdt(acct(2)), bob + d("100"));
    assert_eq!(h.usdt(Owner::Insurance), d("0.000001"));
    // Idempotent per funding time.
    h.rejected(
        option_funding(PERP_CALL, 8 * HOUR_MS),
        RejectCode::FundingAlreadyApplied,
    );
    // Negative time value: U = 31,000 (intrinsic 1,000), mark 950: -50.
    // Shorts pay longs: Bob owes 3 × 50 / 3 = 50; Alice receives 50 / 3 →
    // 16.666666 (credits toward zero), Carol 33.333333; residue 0.000001.
    h.ok(mark("BTC-PERP", "31000"));
    h.ok(mark(PERP_CALL, "950"));
    let (alice, bob, carol) = (h.usdt(acct(1)), h.usdt(acct(2)), h.usdt(acct(3)));
    let events = h.ok(option_funding(PERP_CALL, 16 * HOUR_MS));
    conserved(&events);
    assert_eq!(h.usdt(acct(1)), alice + d("16.666666"));
    assert_eq!(h.usdt(acct(3)), carol + d("33.333333"));
    assert_eq!(h.usdt(acct(2)), bob - d("50"));
    assert_eq!(h.usdt(Owner::Insurance), d("0.000002"));
    // Perp funding does not apply to an option, option funding not to an
    // expiring option.
    h.rejected(
        funding(PERP_CALL, "0.0001", 24 * HOUR_MS),
        RejectCode::WrongInstrument,
    );
    h.rejected(
        option_funding(CALL, 24 * HOUR_MS),
        RejectCode::WrongInstrument,
    );
    h.rejected(
        option_funding(PERP_CALL, 24 * HOUR_MS + 1),
        RejectCode::InvalidFundingTime,
    );
}

#[test]
fn bad_option_terms_are_refused_and_change_nothing() {
    let mut h = option_harness();
    let create = |f: &dyn Fn(&mut CreateOption)| {
        let mut c = option("BTC-C-1", "BTC-PERP", true, "32000", EXPIRY_MS);
        f(&mut c);
        Command::CreateOption(c)
    };
    h.rejected(
        create(&|c| c.strike = d("32000.05")),
        RejectCode::StrikeOffGrid,
    );
    h.rejected(create(&|c| c.strike = d("0")), RejectCode::StrikeOffGrid);
    h.rejected(create(&|c| c.strike = d("-100")), RejectCode::StrikeOffGrid);
    h.rejected(
        create(&|c| c.underlying = "NOPE-PERP".into()),
        RejectCode::NoUnderlyingIndex,
    );
    h.rejected(
        create(&|c| c.underlying = CALL.into()),
        RejectCode::NoUnderlyingIndex,
    );
    h.rejected(create(&|c| c.tick_size = d("1")), RejectCode::InvalidMarket);
    h.rejected(create(&|c| c.mm_rate = d("0.2")), RejectCode::InvalidRate);
    h.rejected(create(&|c| c.im_rate = d("1")), RejectCode::InvalidRate);
    h.rejected(
        create(&|c| c.fee_cap_rate = d("1")),
        RejectCode::InvalidRate,
    );
    h.rejected(
        create(&|c| {
            c.expiry_ms = 0;
            c.funding_period_ms = 0;
        }),
        RejectCode::InvalidMarket,
    );
    h.rejected(
        create(&|c| c.market = CALL.into()),
        RejectCode::MarketExists,
    );
    // An option on ETH-PERP, which has no mark yet, takes no fill.
    h.ok(Command::CreateOption(option(
        "ETH-C-2000",
        "ETH-PERP",
        true,
        "2000",
        EXPIRY_MS,
    )));
    h.ok(deposit(1, "1000"));
    h.ok(deposit(2, "1000"));
    h.ok(mark("ETH-C-2000", "10"));
    h.rejected(
        perp_fill("ETH-C-2000", 1, 2, "1", "10"),
        RejectCode::NoMarkPrice,
    );
}

/// `accounts` funded with 100,000; call marked 500, put 300; Alice (1)
/// long 0.5 BTC-PERP, long 2 calls, short 1 put, all from Bob (2).
fn exposure_harness(accounts: &[u64]) -> Harness {
    let mut h = option_harness();
    for &account in accounts {
        h.ok(deposit(account, "100000"));
    }
    h.ok(mark(CALL, "500"));
    h.ok(mark(PUT, "300"));
    h.ok(perp_fill("BTC-PERP", 1, 2, "0.5", "30000"));
    h.ok(perp_fill(CALL, 1, 2, "2", "500"));
    h.ok(perp_fill(PUT, 2, 1, "1", "300"));
    h
}

#[test]
fn delta_equivalent_exposure_per_underlying_is_exact_for_futures_and_bounded_for_options() {
    let h = exposure_harness(&[1, 2, 3]);
    let alice = h.ledger.delta_exposure(1).expect("known account");
    assert_eq!(alice.len(), 1);
    let btc = &alice[0];
    assert_eq!(btc.underlying, "BTC");
    assert_eq!(btc.futures_delta, d("0.5"));
    // Calls add [0, 2], the short put [0, 1]: delta in [0.5, 3.5].
    assert_eq!((btc.delta_low, btc.delta_high), (d("0.5"), d("3.5")));
    assert_eq!((btc.long_calls, btc.short_puts), (d("2"), d("1")));
    // Bob is the mirror image: [-3.5, -0.5].
    let bob = &h.ledger.delta_exposure(2).expect("known account")[0];
    assert_eq!((bob.delta_low, bob.delta_high), (d("-3.5"), d("-0.5")));
    assert_eq!(h.ledger.delta_exposure(3), Some(Vec::new()));
    assert_eq!(h.ledger.delta_exposure(99), None);
}

fn option_mark(market: &str, price: &str, delta: &str) -> Command {
    Command::SetOptionMark(SetOptionMark {
        market: market.into(),
        price: d(price),
        delta: d(delta),
    })
}

#[test]
fn a_mark_with_the_pricers_delta_makes_option_exposure_a_number_until_a_plain_mark() {
    let mut h = exposure_harness(&[1, 2]);
    // The pricer's deltas: call 0.4, put -0.35. Alice: 0.5 + 2 × 0.4 +
    // (−1) × (−0.35) = 0.5 + 0.8 + 0.35 = 1.65; Bob the mirror, −1.65.
    let events = h.ok(option_mark(CALL, "500", "0.4"));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::MarkPrice { delta: Some(delta), .. } if *delta == d("0.4")
    )));
    h.ok(option_mark(PUT, "300", "-0.35"));
    let alice = &h.ledger.delta_exposure(1).expect("known account")[0];
    assert_eq!(
        (
            alice.delta,
            alice.options_delta,
            alice.options_without_delta
        ),
        (d("1.65"), d("1.15"), 0)
    );
    assert_eq!((alice.delta_low, alice.delta_high), (d("1.65"), d("1.65")));
    let bob = &h.ledger.delta_exposure(2).expect("known account")[0];
    assert_eq!(bob.delta, d("-1.65"));
    // The delta is state: it survives a rebuild from the records.
    let rebuilt =
        Ledger::from_records(LedgerConfig::default(), h.ledger.records()).expect("rebuilds");
    assert_eq!(rebuilt.delta_exposure(1), h.ledger.delta_exposure(1));
    // A plain mark of the put clears its delta: the put is a range again
    // (short put [0, 1]): delta_low 0.5 + 0.8 = 1.3, delta_high 2.3.
    h.ok(mark(PUT, "310"));
    let alice = &h.ledger.delta_exposure(1).expect("known account")[0];
    assert_eq!(
        (
            alice.options_without_delta,
            alice.delta_low,
            alice.delta_high
        ),
        (1, d("1.3"), d("2.3"))
    );
}

#[test]
fn bad_option_marks_are_refused_and_change_nothing() {
    let mut h = option_harness();
    // A call's delta lies in [0, 1], a put's in [−1, 0].
    h.rejected(option_mark(CALL, "500", "1.01"), RejectCode::InvalidDelta);
    h.rejected(option_mark(CALL, "500", "-0.1"), RejectCode::InvalidDelta);
    h.rejected(option_mark(PUT, "300", "0.2"), RejectCode::InvalidDelta);
    h.rejected(
        option_mark(CALL, "500", "0.000000001"),
        RejectCode::BadPrecision,
    );
    // Not an option; not a market; a bad price.
    h.rejected(
        option_mark("BTC-PERP", "30000", "0.5"),
        RejectCode::WrongInstrument,
    );
    h.rejected(option_mark("NOPE", "1", "0.5"), RejectCode::UnknownMarket);
    h.rejected(option_mark(CALL, "-1", "0.5"), RejectCode::InvalidPrice);
    // The bounds themselves are deltas.
    h.ok(option_mark(CALL, "500", "1"));
    h.ok(option_mark(PUT, "300", "-1"));
}
