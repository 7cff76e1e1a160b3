//! An inverse (coin-margined) perpetual with hand-computed numbers: value,
//! unrealized and realized PnL and funding all in the base asset (BTC),
//! contracts of 100 USD; and an inverse dated future settled, its rounding
//! remainder going to the insurance fund. Bad terms change nothing.
//!
//! Market BTCUSD-PERP: settled in BTC (8 decimals), tick 0.5 USD, step 1
//! contract, contract value 100 USD, 20x, maintenance 0.5%, funding every
//! 8 hours. A position of n contracts at price p is worth −n × 100 / p BTC
//! (rounded half to even to a satoshi): a long of 1,000 at 20,000 is
//! worth −5 BTC.

mod common;

use common::*;
use tally_ledger::*;

const PERP: &str = "BTCUSD-PERP";

fn btc(owner: Owner, h: &Harness) -> Decimal {
    h.balance(owner, "BTC").0
}

fn inverse(symbol: &str, contract_value: &str, expiry_ms: u64, fee: &str) -> Command {
    Command::CreateInverseMarket(CreateInverseMarket {
        market: CreateMarket {
            market: symbol.into(),
            base: "BTC".into(),
            settle_asset: "BTC".into(),
            tick_size: d("0.5"),
            step_size: d("1"),
            max_leverage: 20,
            brackets: vec![bracket("0", "0.005", 20)],
            liquidation_fee_rate: d("0.005"),
            funding_interval_ms: FUNDING_INTERVAL_MS,
        },
        contract_value: d(contract_value),
        expiry_ms,
        delivery_fee_rate: d(fee),
    })
}

fn harness() -> Harness {
    let mut h = Harness::new();
    assert_eq!(h.ledger.set_cluster_version(2), Ok(true));
    h.ok(Command::CreateAsset(CreateAsset {
        symbol: "BTC".into(),
        scale: 8,
    }));
    for account in 1..=3 {
        h.ok(Command::CreateAccount(CreateAccount { account }));
        h.ok(Command::Deposit(Deposit {
            account,
            asset: "BTC".into(),
            amount: d("1"),
        }));
    }
    h.ok(inverse(PERP, "100", 0, "0"));
    h
}

fn btc_margin(h: &Harness, account: u64) -> MarginView {
    h.ledger
        .margin(account)
        .expect("known account")
        .into_iter()
        .find(|v| v.settle_asset == "BTC")
        .expect("BTC margin")
}

#[test]
fn inverse_perpetual_pnl_and_funding_are_in_base_units() {
    let mut h = harness();
    h.ok(mark(PERP, "20000"));
    // Alice (1) buys 1,000 contracts (100,000 USD) from Bob (2) at 20,000:
    // value −1,000 × 100 / 20,000 = −5 BTC, notional 5 BTC, IM 5 / 20.
    h.ok(perp_fill(PERP, 1, 2, "1000", "20000"));
    let alice = btc_margin(&h, 1);
    assert_eq!(alice.initial_margin, d("0.25"));
    assert_eq!(alice.positions[0].entry_price, d("20000.00000"));
    assert_eq!(alice.positions[0].notional, d("5"));
    assert_eq!(alice.positions[0].liquidation_price, None);
    // Mark 21,000: value −100,000 / 21,000 = −4.76190476(19) BTC, so
    // Alice's UPNL = 5 − 4.76190476 = 0.23809524 BTC, Bob's the opposite.
    h.ok(mark(PERP, "21000"));
    assert_eq!(btc_margin(&h, 1).unrealized_pnl, d("0.23809524"));
    assert_eq!(btc_margin(&h, 2).unrealized_pnl, d("-0.23809524"));
    // Delta-equivalent exposure in BTC: 100,000 USD / 21,000 = 4.76190476.
    let delta = h.ledger.delta_exposure(1).expect("known account");
    assert_eq!(
        (delta[0].underlying.as_str(), delta[0].futures_delta),
        ("BTC", d("4.76190476"))
    );
    // Funding +0.01% at 21,000: the long pays its base notional × rate:
    // 100,000 / 21,000 × 0.0001 = 0.00047619047.. BTC, 0.00047620 (debit
    // rounded up); Bob receives 0.00047619; 1 satoshi residue to the fund.
    let events = h.ok(funding(PERP, "0.0001", FUNDING_INTERVAL_MS));
    let round = events.iter().find_map(|e| match e {
        Event::Funding {
            paid,
            received,
            residue,
            ..
        } => Some((*paid, *received, *residue)),
        _ => None,
    });
    assert_eq!(
        round,
        Some((d("0.0004762"), d("0.00047619"), d("0.00000001")))
    );
    // Alice sells her 1,000 back to Bob at 22,000: value −100,000 / 22,000
    // = −4.5454545454.. → −4.54545455 BTC; realized 5 − 4.54545455 =
    // 0.45454545 BTC (= 100,000 × (1/20,000 − 1/22,000), to the satoshi).
    let events = h.ok(perp_fill(PERP, 2, 1, "1000", "22000"));
    let realized: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Position {
                holder,
                realized_pnl,
                ..
            } => Some((*holder, *realized_pnl)),
            _ => None,
        })
        .collect();
    assert_eq!(
        realized,
        [
            (Owner::Account(2), d("-0.45454545")),
            (Owner::Account(1), d("0.45454545")),
        ]
    );
    assert_eq!(btc(Owner::Account(1), &h), d("1.45406925")); // 1 − 0.0004762 + 0.45454545
    assert_eq!(btc(Owner::Account(2), &h), d("0.54593074")); // 1 + 0.00047619 − 0.45454545
    assert_eq!(btc(Owner::Insurance, &h), d("0.00000001"));
    let view = h.ledger.market(PERP).expect("listed");
    assert_eq!(
        (view.kind, view.contract_value),
        ("inverse_perpetual", Some(d("100")))
    );
}

#[test]
fn an_inverse_future_settles_in_base_units_with_its_remainder_to_the_fund() {
    let mut h = harness();
    h.ok(inverse("BTCUSD-0327", "100", 1_000_000, "0.0005"));
    h.ok(mark("BTCUSD-0327", "30000"));
    // Alice long 1 and Carol long 2 contracts from Bob at 30,000: values
    // −100 / 30,000 = −0.00333333(3) and −0.00666666(7) BTC; Bob −0.01.
    h.ok(perp_fill("BTCUSD-0327", 1, 2, "1", "30000"));
    h.ok(perp_fill("BTCUSD-0327", 3, 2, "2", "30000"));
    h.now_ms = 1_000_000;
    // Settled at 30,001: values −100 / 30,001 = −0.00333322(2), −200 /
    // 30,001 = −0.00666644(4) and +300 / 30,001 = +0.00999966(67) →
    // +0.00999967 BTC, each rounded half to even. Realized: Alice −333,322
    // + 333,333 = +11 sat, Carol +23 sat, Bob 999,967 − 1,000,000 = −33
    // sat: Σ = +1 sat, which the pool pays and the insurance fund makes
    // good (it ends at −1 sat). Delivery fees 0.05% of each notional,
    // rounded up: 167, 334 and 500 sat.
    let events = h.ok(Command::SettleFuture(SettleFuture {
        market: "BTCUSD-0327".into(),
        price: d("30001"),
    }));
    let settlement = events.iter().find_map(|e| match e {
        Event::Settlement {
            realized,
            delivery_fees,
            ..
        } => Some((*realized, *delivery_fees)),
        _ => None,
    });
    assert_eq!(settlement, Some((d("0.00000001"), d("0.00001001"))));
    assert_eq!(btc(Owner::Account(1), &h), d("0.99999844")); // 1 + 11 − 167 sat
    assert_eq!(btc(Owner::Account(3), &h), d("0.99999689")); // 1 + 23 − 334 sat
    assert_eq!(btc(Owner::Account(2), &h), d("0.99999467")); // 1 − 33 − 500 sat
    assert_eq!(btc(Owner::Fees, &h), d("0.00001001"));
    assert_eq!(btc(Owner::Insurance, &h), d("-0.00000001"));
    let exposure = h.ledger.market_exposure("BTCUSD-0327").expect("listed");
    assert_eq!(exposure.pnl_pool, d("0"));
}

#[test]
fn bad_inverse_terms_are_refused_and_change_nothing() {
    let mut h = harness();
    h.rejected(inverse("BTCUSD-X", "0", 0, "0"), RejectCode::InvalidMarket);
    h.rejected(
        inverse("BTCUSD-X", "100.5", 0, "0"),
        RejectCode::InvalidMarket,
    );
    h.rejected(
        inverse("BTCUSD-X", "100", 0, "0.001"),
        RejectCode::InvalidRate,
    );
    h.rejected(inverse(PERP, "100", 0, "0"), RejectCode::MarketExists);
    // An inverse market is no option's underlying index.
    h.ok(mark(PERP, "20000"));
    h.rejected(
        Command::CreateOption(CreateOption {
            market: "BTC-C-1".into(),
            underlying: PERP.into(),
            call: true,
            strike: d("20000"),
            expiry_ms: 5,
            tick_size: d("0.5"),
            step_size: d("1"),
            im_rate: d("0.15"),
            im_floor_rate: d("0.1"),
            mm_rate: d("0.075"),
            fee_cap_rate: d("0"),
            delivery_fee_rate: d("0"),
            liquidation_fee_rate: d("0"),
            funding_interval_ms: 1,
            funding_period_ms: 1,
        }),
        RejectCode::NoUnderlyingIndex,
    );
}
