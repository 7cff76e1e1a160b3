//! A spot trade settled end to end with every number written out by hand.
//!
//! Assets: BTC (scale 8), USDT (scale 6). Accounts: 1 buyer, 2 seller A,
//! 3 seller B. Fees: 0.1 % each side, the buyer pays in BTC (what it
//! receives), the sellers in USDT.
//!
//! ```text
//! deposits      buyer    +20,000 USDT        External USDT -20,000
//!               seller A +1 BTC, seller B +0.5 BTC   External BTC -1.5
//! buy order     hold 100: 0.5 BTC at limit 30,000 -> lock 15,000 USDT
//! sell orders   hold 200: seller A locks 0.2 BTC; hold 300: seller B 0.3 BTC
//!
//! fill 1  0.2 BTC @ 29,900  quote = 0.2 * 29,900 = 5,980 USDT
//!         buyer fee 0.1% of 0.2 BTC = 0.0002 BTC -> buyer gets 0.1998 BTC
//!         seller fee 0.1% of 5,980 = 5.98 USDT   -> A gets 5,974.02 USDT
//!         hold 100: 15,000 - 5,980 = 9,020 USDT;  hold 200: 0.2 - 0.2 = 0 (closed)
//! fill 2  0.3 BTC @ 29,950  quote = 0.3 * 29,950 = 8,985 USDT
//!         buyer fee 0.0003 BTC -> buyer gets 0.2997 BTC (total 0.4995)
//!         seller fee 8.985 USDT -> B gets 8,976.015 USDT
//!         hold 100: 9,020 - 8,985 = 35 USDT (the price improvement:
//!         0.2 * 100 + 0.3 * 50 = 35);  hold 300: 0 (closed)
//! cancel  release hold 100: 35 USDT back to available
//!
//! final   buyer    USDT 20,000 - 15,000 + 35 = 5,035 available, 0 locked
//!                  BTC 0.4995
//!         seller A BTC 1 - 0.2 = 0.8, USDT 5,974.02
//!         seller B BTC 0.5 - 0.3 = 0.2, USDT 8,976.015
//!         Fees     BTC 0.0002 + 0.0003 = 0.0005, USDT 5.98 + 8.985 = 14.965
//!         External BTC -1.5, USDT -20,000
//! check   USDT 5,035 + 5,974.02 + 8,976.015 + 14.965 - 20,000 = 0
//!         BTC  0.4995 + 0.8 + 0.2 + 0.0005 - 1.5 = 0
//! ```

mod common;

use common::{d, spot_harness};
use tally_ledger::*;

const BUYER: AccountId = 1;
const SELLER_A: AccountId = 2;
const SELLER_B: AccountId = 3;

fn deposit(account: AccountId, asset: &str, amount: &str) -> Command {
    Command::Deposit(Deposit {
        account,
        asset: asset.into(),
        amount: d(amount),
    })
}

fn lock(hold: HoldId, account: AccountId, asset: &str, amount: &str) -> Command {
    Command::Lock(Lock {
        hold,
        account,
        asset: asset.into(),
        amount: d(amount),
    })
}

#[test]
fn spot_buy_fills_in_two_parts_at_better_prices_then_cancel_returns_the_improvement() {
    let mut h = spot_harness();
    h.ok(deposit(BUYER, "USDT", "20000"));
    h.ok(deposit(SELLER_A, "BTC", "1"));
    h.ok(deposit(SELLER_B, "BTC", "0.5"));
    h.ok(lock(100, BUYER, "USDT", "15000"));
    h.ok(lock(200, SELLER_A, "BTC", "0.2"));
    h.ok(lock(300, SELLER_B, "BTC", "0.3"));
    assert_eq!(
        h.balance(Owner::Account(BUYER), "USDT"),
        (d("5000"), d("15000"))
    );

    let events = h.ok(Command::Fill(Fill {
        buy_hold: 100,
        sell_hold: 200,
        base_amount: d("0.2"),
        price: d("29900"),
        buyer_fee: d("0.0002"),
        seller_fee: d("5.98"),
    }));
    assert_eq!(
        events[0],
        Event::Fill {
            buyer: BUYER,
            seller: SELLER_A,
            base_asset: "BTC".into(),
            quote_asset: "USDT".into(),
            base_amount: d("0.20000000"),
            quote_amount: d("5980.000000"),
            buyer_fee: d("0.00020000"),
            seller_fee: d("5.980000"),
        }
    );
    // Amounts come out at the asset's scale.
    assert_eq!(
        format!(
            "{}",
            balance_event(&events, Owner::Account(BUYER), "USDT").locked
        ),
        "9020.000000"
    );
    let buyer_btc = balance_event(&events, Owner::Account(BUYER), "BTC");
    assert_eq!(
        (buyer_btc.available_delta, buyer_btc.available),
        (d("0.1998"), d("0.1998"))
    );
    let seller_usdt = balance_event(&events, Owner::Account(SELLER_A), "USDT");
    assert_eq!(seller_usdt.available_delta, d("5974.02"));
    assert_eq!(
        balance_event(&events, Owner::Fees, "BTC").available,
        d("0.0002")
    );
    assert_eq!(
        balance_event(&events, Owner::Fees, "USDT").available,
        d("5.98")
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Balance(_)))
            .count(),
        6
    );
    assert_eq!(
        events[7..],
        [
            Event::Hold {
                hold: 100,
                account: BUYER,
                asset: "USDT".into(),
                remaining: d("9020"),
                closed: false
            },
            Event::Hold {
                hold: 200,
                account: SELLER_A,
                asset: "BTC".into(),
                remaining: d("0"),
                closed: true
            },
        ]
    );
    let buy_hold = h.ledger.hold(100).expect("buy hold open");
    assert_eq!(
        (buy_hold.amount, buy_hold.remaining),
        (d("15000"), d("9020"))
    );
    assert_eq!(h.ledger.hold(200), None);

    h.ok(Command::Fill(Fill {
        buy_hold: 100,
        sell_hold: 300,
        base_amount: d("0.3"),
        price: d("29950"),
        buyer_fee: d("0.0003"),
        seller_fee: d("8.985"),
    }));
    assert_eq!(h.ledger.hold(100).map(|v| v.remaining), Some(d("35")));
    assert_eq!(h.ledger.hold(300), None);
    assert_eq!(h.ledger.open_hold_count(), 1);
    assert_eq!(
        h.balance(Owner::Account(BUYER), "USDT"),
        (d("5000"), d("35"))
    );

    let events = h.ok(Command::Release(Release { hold: 100 }));
    assert_eq!(
        events,
        [
            Event::Balance(BalanceChange {
                owner: Owner::Account(BUYER),
                asset: "USDT".into(),
                available_delta: d("35"),
                locked_delta: d("-35"),
                available: d("5035"),
                locked: d("0"),
            }),
            Event::Hold {
                hold: 100,
                account: BUYER,
                asset: "USDT".into(),
                remaining: d("0"),
                closed: true
            },
        ]
    );
    assert_eq!(h.ledger.open_hold_count(), 0);

    assert_eq!(
        h.balance(Owner::Account(BUYER), "USDT"),
        (d("5035"), d("0"))
    );
    assert_eq!(
        h.balance(Owner::Account(BUYER), "BTC"),
        (d("0.4995"), d("0"))
    );
    assert_eq!(
        h.balance(Owner::Account(SELLER_A), "BTC"),
        (d("0.8"), d("0"))
    );
    assert_eq!(
        h.balance(Owner::Account(SELLER_A), "USDT"),
        (d("5974.02"), d("0"))
    );
    assert_eq!(
        h.balance(Owner::Account(SELLER_B), "BTC"),
        (d("0.2"), d("0"))
    );
    assert_eq!(
        h.balance(Owner::Account(SELLER_B), "USDT"),
        (d("8976.015"), d("0"))
    );
    assert_eq!(h.balance(Owner::Fees, "BTC"), (d("0.0005"), d("0")));
    assert_eq!(h.balance(Owner::Fees, "USDT"), (d("14.965"), d("0")));
    assert_eq!(h.balance(Owner::External, "BTC"), (d("-1.5"), d("0")));
    assert_eq!(h.balance(Owner::External, "USDT"), (d("-20000"), d("0")));
    assert_eq!(h.balance(Owner::Insurance, "USDT"), (d("0"), d("0")));
    // Outputs carry the asset scale.
    assert_eq!(
        h.balance(Owner::Account(SELLER_B), "USDT").0.to_string(),
        "8976.015000"
    );

    let view = h.ledger.account(BUYER).expect("buyer exists");
    assert_eq!(
        view.balances
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>(),
        ["BTC", "USDT"]
    );

    // The buy order is gone: a second cancel is refused.
    h.rejected(
        Command::Release(Release { hold: 100 }),
        RejectCode::UnknownHold,
    );
}

fn balance_event<'a>(events: &'a [Event], owner: Owner, asset: &str) -> &'a BalanceChange {
    events
        .iter()
        .find_map(|e| match e {
            Event::Balance(c) if c.owner == owner && c.asset == asset => Some(c),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no balance event for {owner:?} {asset}"))
}

#[test]
fn zero_fees_emit_no_fee_balance_events_and_self_trade_settles() {
    let mut h = spot_harness();
    h.ok(deposit(BUYER, "USDT", "100"));
    h.ok(deposit(BUYER, "BTC", "1"));
    h.ok(lock(1, BUYER, "USDT", "100"));
    h.ok(lock(2, BUYER, "BTC", "1"));
    // Buyer and seller are the same account: quote locked -> quote
    // available, base locked -> base available, in one balance each.
    let events = h.ok(Command::Fill(Fill {
        buy_hold: 1,
        sell_hold: 2,
        base_amount: d("0.001"),
        price: d("100"),
        buyer_fee: d("0"),
        seller_fee: d("0"),
    }));
    let changes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Balance(c) => {
                Some((c.owner, c.asset.as_str(), c.available_delta, c.locked_delta))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (Owner::Account(BUYER), "USDT", d("0.1"), d("-0.1")),
            (Owner::Account(BUYER), "BTC", d("0.001"), d("-0.001")),
        ]
    );
    assert_eq!(h.balance(Owner::Fees, "BTC"), (d("0"), d("0")));
}

#[test]
fn fund_insurance_moves_available_into_the_insurance_fund_and_changes_nothing_when_refused() {
    let mut h = spot_harness();
    h.ok(Command::Deposit(Deposit {
        account: 1,
        asset: "USDT".into(),
        amount: d("500"),
    }));
    let fund = |account: u64, amount: &str| {
        Command::FundInsurance(FundInsurance {
            account,
            asset: "USDT".into(),
            amount: d(amount),
        })
    };
    let events = h.ok(fund(1, "200.5"));
    // Two balance changes (the client's debit and the fund's credit) and
    // the fund's top-up.
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[2],
        Event::InsuranceFund {
            asset: "USDT".into(),
            delta: d("200.5"),
            balance: d("200.5"),
        }
    );
    assert_eq!(h.balance(Owner::Account(1), "USDT"), (d("299.5"), d("0")));
    assert_eq!(h.balance(Owner::Insurance, "USDT"), (d("200.5"), d("0")));
    // Refused, nothing changed (the harness checks balances and records).
    h.rejected(fund(1, "300"), RejectCode::InsufficientFunds);
    h.rejected(fund(9, "1"), RejectCode::UnknownAccount);
    h.rejected(fund(1, "0.0000001"), RejectCode::BadPrecision);
    h.rejected(fund(1, "0"), RejectCode::InvalidAmount);
    h.rejected(
        Command::FundInsurance(FundInsurance {
            account: 1,
            asset: "XYZ".into(),
            amount: d("1"),
        }),
        RejectCode::UnknownAsset,
    );
    assert_eq!(h.balance(Owner::Insurance, "USDT"), (d("200.5"), d("0")));
}
