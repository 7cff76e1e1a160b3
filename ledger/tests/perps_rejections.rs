//! Bad perpetual-futures input: every refusal has a specific code and changes
//! no balance, position or market (`Harness::rejected` checks the whole
//! business state and that a retry returns the same refusal).

mod common;

use common::*;
use tally_ledger::*;

/// Alice (1) long 10 at 100 from Bob (2), 1,000 USDT each, mark 100.
fn trading() -> Harness {
    let mut h = perp_harness();
    h.ok(deposit(1, "1000"));
    h.ok(deposit(2, "1000"));
    h.ok(mark("BTC-PERP", "100"));
    h.ok(perp_fill("BTC-PERP", 1, 2, "10", "100"));
    h
}

#[test]
fn zero_or_negative_prices_and_sizes() {
    let mut h = trading();
    for price in ["0", "-100", "0.0"] {
        h.rejected(
            perp_fill("BTC-PERP", 1, 2, "1", price),
            RejectCode::InvalidPrice,
        );
        h.rejected(mark("BTC-PERP", price), RejectCode::InvalidPrice);
    }
    for size in ["0", "-1"] {
        h.rejected(
            perp_fill("BTC-PERP", 1, 2, size, "100"),
            RejectCode::InvalidAmount,
        );
    }
}

#[test]
fn sizes_off_the_step_and_prices_off_the_tick() {
    let mut h = trading();
    // Step 0.001: 0.0015 is between steps.
    h.rejected(
        perp_fill("BTC-PERP", 1, 2, "0.0015", "100"),
        RejectCode::SizeOffStep,
    );
    // Tick 0.1: 100.05 is between ticks.
    h.rejected(
        perp_fill("BTC-PERP", 1, 2, "1", "100.05"),
        RejectCode::PriceOffTick,
    );
    // A mark price needs no tick multiple, but no more decimals than the tick.
    h.rejected(mark("BTC-PERP", "100.05"), RejectCode::BadPrecision);
    // Fees are settle-asset amounts at its scale.
    h.rejected(
        perp_fill_fees("BTC-PERP", 1, 2, "1", "100", "0.0000001", "0"),
        RejectCode::BadPrecision,
    );
    h.rejected(
        perp_fill_fees("BTC-PERP", 1, 2, "1", "100", "0", "-1"),
        RejectCode::InvalidAmount,
    );
    // Grid multiples with trailing zeros are fine.
    h.ok(perp_fill("BTC-PERP", 1, 2, "0.0010", "100.00"));
}

#[test]
fn a_fill_above_the_bracket_leverage_is_insufficient_margin() {
    let mut h = perp_harness();
    h.ok(deposit(1, "1000"));
    h.ok(deposit(2, "100000"));
    h.ok(mark("BTC-PERP", "100"));
    // 100.001 at 100 is notional 10,000.1: bracket 1, max leverage 10, IM
    // 1,000.01 > 1,000 of equity (= 10.00001x), though the market allows 20x.
    h.rejected(
        perp_fill("BTC-PERP", 1, 2, "100.001", "100"),
        RejectCode::InsufficientMargin,
    );
    // 100 exactly is 10x in bracket 1: allowed.
    h.ok(perp_fill("BTC-PERP", 1, 2, "100", "100"));
    // Any increase now is refused; a reduce is not.
    h.rejected(
        perp_fill("BTC-PERP", 1, 2, "0.001", "100"),
        RejectCode::InsufficientMargin,
    );
    h.ok(perp_fill("BTC-PERP", 2, 1, "1", "100"));
    // A fill far above the mark carries an immediate unrealized loss.
    h.rejected(
        perp_fill("BTC-PERP", 1, 2, "1", "150"),
        RejectCode::InsufficientMargin,
    );
}

#[test]
fn unknown_markets_and_accounts() {
    let mut h = trading();
    h.rejected(
        perp_fill("DOGE-PERP", 1, 2, "1", "100"),
        RejectCode::UnknownMarket,
    );
    h.rejected(mark("DOGE-PERP", "1"), RejectCode::UnknownMarket);
    h.rejected(
        funding("DOGE-PERP", "0.0001", FUNDING_INTERVAL_MS),
        RejectCode::UnknownMarket,
    );
    h.rejected(
        Command::SetMarketPaused(SetMarketPaused {
            market: "DOGE-PERP".into(),
            paused: true,
        }),
        RejectCode::UnknownMarket,
    );
    h.rejected(
        perp_fill("BTC-PERP", 1, 99, "1", "100"),
        RejectCode::UnknownAccount,
    );
    h.rejected(
        perp_fill("BTC-PERP", 1, 1, "1", "100"),
        RejectCode::InvalidAccount,
    );
}

#[test]
fn funding_twice_for_the_same_time_and_bad_rounds() {
    let mut h = trading();
    h.ok(funding("BTC-PERP", "0.0001", FUNDING_INTERVAL_MS));
    h.rejected(
        funding("BTC-PERP", "0.0001", FUNDING_INTERVAL_MS),
        RejectCode::FundingAlreadyApplied,
    );
    // A different rate for the same time is still the same round.
    h.rejected(
        funding("BTC-PERP", "-0.0003", FUNDING_INTERVAL_MS),
        RejectCode::FundingAlreadyApplied,
    );
    h.rejected(
        funding("BTC-PERP", "0.0001", FUNDING_INTERVAL_MS + 1),
        RejectCode::InvalidFundingTime,
    );
    h.rejected(
        funding("BTC-PERP", "1", 2 * FUNDING_INTERVAL_MS),
        RejectCode::InvalidRate,
    );
    h.rejected(
        funding("BTC-PERP", "0.000000001", 2 * FUNDING_INTERVAL_MS),
        RejectCode::BadPrecision,
    );
    // ETH-PERP has no mark price yet.
    h.rejected(
        funding("ETH-PERP", "0.0001", FUNDING_INTERVAL_MS),
        RejectCode::NoMarkPrice,
    );
    h.rejected(
        perp_fill("ETH-PERP", 1, 2, "1", "100"),
        RejectCode::NoMarkPrice,
    );
}

#[test]
fn a_paused_market_is_reduce_only() {
    let mut h = trading();
    h.ok(Command::SetMarketPaused(SetMarketPaused {
        market: "BTC-PERP".into(),
        paused: true,
    }));
    // Increase either side: refused.
    h.rejected(
        perp_fill("BTC-PERP", 1, 2, "1", "100"),
        RejectCode::MarketPaused,
    );
    // Alice reduces, Carol (3) would open: refused.
    h.ok(deposit(3, "1000"));
    h.rejected(
        perp_fill("BTC-PERP", 3, 1, "1", "100"),
        RejectCode::MarketPaused,
    );
    // A flip opens the other side: refused.
    h.rejected(
        perp_fill("BTC-PERP", 2, 1, "11", "100"),
        RejectCode::MarketPaused,
    );
    // Both sides reduce: allowed.
    h.ok(perp_fill("BTC-PERP", 2, 1, "4", "100"));
    assert_eq!(h.pos("BTC-PERP", 1).0, d("6"));
    h.ok(Command::SetMarketPaused(SetMarketPaused {
        market: "BTC-PERP".into(),
        paused: false,
    }));
    h.ok(perp_fill("BTC-PERP", 1, 2, "1", "100"));
}

#[test]
fn a_reducing_fill_cannot_overdraw_the_balance() {
    let mut h = trading();
    // Alice sells her 10 at 0.1: proceeds 1 - cost 1,000 = -999, leaving 1;
    // her fee of 10 would take the balance to -9.
    h.rejected(
        perp_fill_fees("BTC-PERP", 2, 1, "10", "0.1", "0", "10"),
        RejectCode::InsufficientFunds,
    );
}

#[test]
fn malformed_markets() {
    let mut h = perp_harness();
    let base = market_command("SOL-PERP");
    let with = |edit: &dyn Fn(&mut Command)| {
        let mut c = base.clone();
        edit(&mut c);
        c
    };
    fn fields(
        c: &mut Command,
    ) -> (
        &mut String,
        &mut String,
        &mut Decimal,
        &mut Decimal,
        &mut u32,
        &mut Vec<MarginBracket>,
        &mut Decimal,
        &mut u64,
    ) {
        match c {
            Command::CreateMarket(CreateMarket {
                market,
                settle_asset,
                tick_size,
                step_size,
                max_leverage,
                brackets,
                liquidation_fee_rate,
                funding_interval_ms,
                ..
            }) => (
                market,
                settle_asset,
                tick_size,
                step_size,
                max_leverage,
                brackets,
                liquidation_fee_rate,
                funding_interval_ms,
            ),
            _ => unreachable!(),
        }
    }
    h.rejected(market_command("BTC-PERP"), RejectCode::MarketExists);
    let cases: Vec<(Command, RejectCode)> = vec![
        (
            with(&|c| *fields(c).0 = "sol perp".into()),
            RejectCode::InvalidMarket,
        ),
        (
            with(&|c| *fields(c).1 = "EUR".into()),
            RejectCode::UnknownAsset,
        ),
        (with(&|c| *fields(c).2 = d("0")), RejectCode::InvalidMarket),
        (with(&|c| *fields(c).3 = d("-1")), RejectCode::InvalidMarket),
        // 0.0001 tick (4) + 0.001 step (3) > USDT scale 6.
        (
            with(&|c| *fields(c).2 = d("0.0001")),
            RejectCode::InvalidMarket,
        ),
        (with(&|c| *fields(c).4 = 0), RejectCode::InvalidMarket),
        (with(&|c| fields(c).5.clear()), RejectCode::InvalidMarket),
        // First floor must be 0.
        (
            with(&|c| fields(c).5[0].notional_floor = d("1")),
            RejectCode::InvalidMarket,
        ),
        // Floors must increase.
        (
            with(&|c| fields(c).5[2].notional_floor = d("10000")),
            RejectCode::InvalidMarket,
        ),
        // Rates must not decrease.
        (
            with(&|c| fields(c).5[2].maintenance_margin_rate = d("0.015")),
            RejectCode::InvalidMarket,
        ),
        // Leverages must not increase.
        (
            with(&|c| fields(c).5[1].max_leverage = 50),
            RejectCode::InvalidMarket,
        ),
        // Maintenance rate at or above the initial rate 1/20.
        (
            with(&|c| fields(c).5[0].maintenance_margin_rate = d("0.05")),
            RejectCode::InvalidMarket,
        ),
        (
            with(&|c| fields(c).5[0].maintenance_margin_rate = d("0")),
            RejectCode::InvalidRate,
        ),
        (
            with(&|c| fields(c).5[0].maintenance_margin_rate = d("0.000000001")),
            RejectCode::BadPrecision,
        ),
        (
            with(&|c| fields(c).5[1].notional_floor = d("0.0000001")),
            RejectCode::BadPrecision,
        ),
        (with(&|c| *fields(c).6 = d("1")), RejectCode::InvalidRate),
        (
            with(&|c| *fields(c).6 = d("-0.01")),
            RejectCode::InvalidRate,
        ),
        (with(&|c| *fields(c).7 = 0), RejectCode::InvalidMarket),
    ];
    for (command, code) in cases {
        h.rejected(command, code);
    }
    h.ok(base);
}
