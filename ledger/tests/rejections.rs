//! Bad input: each case is refused with its specific `RejectCode` and leaves
//! balances, holds, accounts and assets unchanged (the business-state digest
//! is equal before and after; the only new record is the remembered
//! rejection). Command-id rejections are not remembered, so there even the
//! full `state_hash` is unchanged. See `Harness::rejected`.

mod common;

use common::{Harness, d, envelope, spot_harness};
use tally_ledger::*;

/// BTC/USDT, accounts 1..=3; account 1 has 1,000 USDT with 600 locked in
/// buy hold 10; account 2 has 1 BTC with 0.5 locked in sell hold 20.
fn funded() -> Harness {
    let mut h = spot_harness();
    h.ok(Command::Deposit(Deposit {
        account: 1,
        asset: "USDT".into(),
        amount: d("1000"),
    }));
    h.ok(Command::Deposit(Deposit {
        account: 2,
        asset: "BTC".into(),
        amount: d("1"),
    }));
    h.ok(Command::Lock(Lock {
        hold: 10,
        account: 1,
        asset: "USDT".into(),
        amount: d("600"),
    }));
    h.ok(Command::Lock(Lock {
        hold: 20,
        account: 2,
        asset: "BTC".into(),
        amount: d("0.5"),
    }));
    h
}

fn deposit(account: AccountId, asset: &str, amount: &str) -> Command {
    Command::Deposit(Deposit {
        account,
        asset: asset.into(),
        amount: d(amount),
    })
}

fn fill(base: &str, price: &str, buyer_fee: &str, seller_fee: &str) -> Command {
    Command::Fill(Fill {
        buy_hold: 10,
        sell_hold: 20,
        base_amount: d(base),
        price: d(price),
        buyer_fee: d(buyer_fee),
        seller_fee: d(seller_fee),
    })
}

#[test]
fn negative_and_zero_amounts_are_invalid_amount() {
    let mut h = funded();
    h.rejected(deposit(1, "BTC", "-1"), RejectCode::InvalidAmount);
    h.rejected(deposit(1, "BTC", "0"), RejectCode::InvalidAmount);
    h.rejected(deposit(1, "BTC", "0.00000000"), RejectCode::InvalidAmount);
    h.rejected(
        Command::Withdraw(Withdraw {
            account: 1,
            asset: "USDT".into(),
            amount: d("-5"),
        }),
        RejectCode::InvalidAmount,
    );
    h.rejected(
        Command::Lock(Lock {
            hold: 99,
            account: 1,
            asset: "USDT".into(),
            amount: d("0"),
        }),
        RejectCode::InvalidAmount,
    );
    h.rejected(
        Command::Transfer(Transfer {
            from: 1,
            to: 2,
            asset: "USDT".into(),
            amount: d("-0.01"),
        }),
        RejectCode::InvalidAmount,
    );
    h.rejected(fill("0", "100", "0", "0"), RejectCode::InvalidAmount);
    h.rejected(
        fill("0.001", "100", "-0.00000001", "0"),
        RejectCode::InvalidAmount,
    );
    h.rejected(
        fill("0.001", "100", "0", "-0.01"),
        RejectCode::InvalidAmount,
    );
}

#[test]
fn too_precise_amounts_are_bad_precision() {
    let mut h = funded();
    h.rejected(deposit(1, "BTC", "0.000000001"), RejectCode::BadPrecision);
    h.rejected(deposit(1, "USDT", "1.0000001"), RejectCode::BadPrecision);
    // Trailing zeros beyond the scale are fine.
    h.ok(deposit(1, "USDT", "1.500000000000"));
    h.rejected(
        fill("0.000000001", "100", "0", "0"),
        RejectCode::BadPrecision,
    );
    h.rejected(
        fill("0.001", "100", "0.000000001", "0"),
        RejectCode::BadPrecision,
    );
    h.rejected(
        fill("0.001", "100", "0", "0.0000001"),
        RejectCode::BadPrecision,
    );
}

#[test]
fn oversized_amounts_are_amount_too_large() {
    let mut h = funded();
    // MAX_UNITS minor units is the largest amount: 10^20 BTC.
    let over = Decimal::from_i128_with_scale(MAX_UNITS + 1, 8);
    h.rejected(
        Command::Deposit(Deposit {
            account: 1,
            asset: "BTC".into(),
            amount: over,
        }),
        RejectCode::AmountTooLarge,
    );
    // A legal amount whose resulting balance would exceed the limit.
    let max = Decimal::from_i128_with_scale(MAX_UNITS, 8);
    h.rejected(
        Command::Deposit(Deposit {
            account: 3,
            asset: "BTC".into(),
            amount: max,
        }),
        RejectCode::AmountTooLarge,
    );
    // A quote beyond the limit: 0.5 BTC at 10^23 USDT = 5 * 10^22 USDT > 10^22.
    h.rejected(
        fill("0.5", "100000000000000000000000", "0", "0"),
        RejectCode::AmountTooLarge,
    );
}

#[test]
fn unknown_and_invalid_references_are_refused() {
    let mut h = funded();
    h.rejected(deposit(1, "DOGE", "1"), RejectCode::UnknownAsset);
    h.rejected(deposit(9, "BTC", "1"), RejectCode::UnknownAccount);
    h.rejected(deposit(0, "BTC", "1"), RejectCode::InvalidAccount);
    h.rejected(
        Command::CreateAccount(CreateAccount { account: 0 }),
        RejectCode::InvalidAccount,
    );
    h.rejected(
        Command::CreateAccount(CreateAccount { account: 1 }),
        RejectCode::AccountExists,
    );
    h.rejected(
        Command::Transfer(Transfer {
            from: 1,
            to: 9,
            asset: "USDT".into(),
            amount: d("1"),
        }),
        RejectCode::UnknownAccount,
    );
    h.rejected(
        Command::Release(Release { hold: 77 }),
        RejectCode::UnknownHold,
    );
    h.rejected(
        Command::Fill(Fill {
            buy_hold: 10,
            sell_hold: 77,
            base_amount: d("0.1"),
            price: d("100"),
            buyer_fee: d("0"),
            seller_fee: d("0"),
        }),
        RejectCode::UnknownHold,
    );
    h.rejected(
        Command::Lock(Lock {
            hold: 10,
            account: 1,
            asset: "USDT".into(),
            amount: d("1"),
        }),
        RejectCode::HoldExists,
    );
    h.rejected(
        Command::CreateAsset(CreateAsset {
            symbol: "BTC".into(),
            scale: 8,
        }),
        RejectCode::AssetExists,
    );
    h.rejected(
        Command::CreateAsset(CreateAsset {
            symbol: "btc".into(),
            scale: 8,
        }),
        RejectCode::InvalidAsset,
    );
    h.rejected(
        Command::CreateAsset(CreateAsset {
            symbol: "".into(),
            scale: 8,
        }),
        RejectCode::InvalidAsset,
    );
    h.rejected(
        Command::CreateAsset(CreateAsset {
            symbol: "A234567890123456X".into(),
            scale: 8,
        }),
        RejectCode::InvalidAsset,
    );
    h.rejected(
        Command::CreateAsset(CreateAsset {
            symbol: "ETH".into(),
            scale: 19,
        }),
        RejectCode::InvalidAsset,
    );
    h.ok(Command::CreateAsset(CreateAsset {
        symbol: "A234567890123456".into(),
        scale: 18,
    }));
}

#[test]
fn release_of_a_fully_consumed_hold_is_unknown_hold() {
    let mut h = funded();
    // Consume sell hold 20 entirely: 0.5 BTC at 1,000 = 500 USDT of the 600.
    h.ok(fill("0.5", "1000", "0", "0"));
    assert_eq!(h.ledger.hold(20), None);
    h.rejected(
        Command::Release(Release { hold: 20 }),
        RejectCode::UnknownHold,
    );
    h.rejected(fill("0.01", "1000", "0", "0"), RejectCode::UnknownHold);
}

#[test]
fn fills_larger_than_their_holds_are_hold_insufficient() {
    let mut h = funded();
    // Seller side: 0.6 BTC > 0.5 held (quote 0.6 * 100 = 60 fits the buy hold).
    h.rejected(fill("0.6", "100", "0", "0"), RejectCode::HoldInsufficient);
    // Buyer side: 0.5 BTC at 1,201 = 600.5 USDT > 600 held.
    h.rejected(fill("0.5", "1201", "0", "0"), RejectCode::HoldInsufficient);
    // Exactly the hold is fine.
    h.ok(fill("0.5", "1200", "0", "0"));
    assert_eq!(h.ledger.hold(10), None);
}

#[test]
fn fill_with_wrong_hold_assets_is_hold_asset_mismatch() {
    let mut h = funded();
    h.ok(Command::Lock(Lock {
        hold: 11,
        account: 1,
        asset: "USDT".into(),
        amount: d("100"),
    }));
    // Both holds in USDT.
    h.rejected(
        Command::Fill(Fill {
            buy_hold: 10,
            sell_hold: 11,
            base_amount: d("1"),
            price: d("1"),
            buyer_fee: d("0"),
            seller_fee: d("0"),
        }),
        RejectCode::HoldAssetMismatch,
    );
    // The same hold on both sides.
    h.rejected(
        Command::Fill(Fill {
            buy_hold: 20,
            sell_hold: 20,
            base_amount: d("0.1"),
            price: d("1"),
            buyer_fee: d("0"),
            seller_fee: d("0"),
        }),
        RejectCode::HoldAssetMismatch,
    );
}

#[test]
fn fee_larger_than_received_is_fee_too_large() {
    let mut h = funded();
    h.rejected(
        fill("0.1", "1000", "0.10000001", "0"),
        RejectCode::FeeTooLarge,
    );
    h.rejected(
        fill("0.1", "1000", "0", "100.000001"),
        RejectCode::FeeTooLarge,
    );
    // A fee equal to everything received is allowed.
    h.ok(fill("0.1", "1000", "0.1", "100"));
}

#[test]
fn zero_or_negative_price_is_invalid_price() {
    let mut h = funded();
    h.rejected(fill("0.1", "0", "0", "0"), RejectCode::InvalidPrice);
    h.rejected(fill("0.1", "-1000", "0", "0"), RejectCode::InvalidPrice);
}

#[test]
fn price_times_amount_not_representable_at_quote_scale_is_bad_precision() {
    let mut h = funded();
    // 0.00000001 BTC at 1.5 = 0.000000015 USDT: below 6 decimals.
    h.rejected(
        fill("0.00000001", "1.5", "0", "0"),
        RejectCode::BadPrecision,
    );
    // 0.1234567 BTC at 0.0000001 = 0.00000001234567 USDT.
    h.rejected(
        fill("0.1234567", "0.0000001", "0", "0"),
        RejectCode::BadPrecision,
    );
    // Many price decimals are fine when the product is exact:
    // 0.5 BTC at 0.000002 = 0.000001 USDT.
    h.ok(fill("0.5", "0.000002", "0", "0"));
}

#[test]
fn insufficient_funds_for_withdraw_lock_and_transfer() {
    let mut h = funded();
    // Account 1: 1,000 USDT, 600 locked -> 400 available.
    h.rejected(
        Command::Withdraw(Withdraw {
            account: 1,
            asset: "USDT".into(),
            amount: d("400.000001"),
        }),
        RejectCode::InsufficientFunds,
    );
    h.rejected(
        Command::Lock(Lock {
            hold: 12,
            account: 1,
            asset: "USDT".into(),
            amount: d("401"),
        }),
        RejectCode::InsufficientFunds,
    );
    h.rejected(
        Command::Transfer(Transfer {
            from: 1,
            to: 2,
            asset: "USDT".into(),
            amount: d("500"),
        }),
        RejectCode::InsufficientFunds,
    );
    // Never-touched balance.
    h.rejected(
        Command::Withdraw(Withdraw {
            account: 3,
            asset: "BTC".into(),
            amount: d("0.00000001"),
        }),
        RejectCode::InsufficientFunds,
    );
    let message = h
        .rejected(
            Command::Withdraw(Withdraw {
                account: 2,
                asset: "BTC".into(),
                amount: d("0.6"),
            }),
            RejectCode::InsufficientFunds,
        )
        .message();
    assert_eq!(
        message,
        "account 2 has 0.50000000 BTC available, needs 0.60000000"
    );
    h.ok(Command::Withdraw(Withdraw {
        account: 1,
        asset: "USDT".into(),
        amount: d("400"),
    }));
}

#[test]
fn transfer_to_self_is_a_validated_no_op() {
    let mut h = funded();
    let hash = common::business_hash(&h.ledger);
    let events = h.ok(Command::Transfer(Transfer {
        from: 1,
        to: 1,
        asset: "USDT".into(),
        amount: d("400"),
    }));
    assert!(events.is_empty());
    assert_eq!(common::business_hash(&h.ledger), hash);
    h.rejected(
        Command::Transfer(Transfer {
            from: 1,
            to: 1,
            asset: "USDT".into(),
            amount: d("401"),
        }),
        RejectCode::InsufficientFunds,
    );
}

#[test]
fn invalid_command_ids_are_refused_and_not_remembered() {
    let mut h = funded();
    let long = "x".repeat(MAX_COMMAND_ID_BYTES + 1);
    for id in ["", long.as_str(), "tab\there", "naïve", "nul\0", "del\x7f"] {
        let hash = h.ledger.state_hash();
        let result = h.ledger.apply(&envelope(id, deposit(1, "BTC", "1")), 5_000);
        assert!(!result.duplicate);
        match result.outcome {
            Outcome::Rejected(r) => assert_eq!(r.code, RejectCode::InvalidCommandId, "{id:?}"),
            other => panic!("{id:?} applied: {other:?}"),
        }
        assert_eq!(h.ledger.state_hash(), hash, "{id:?} changed the state");
    }
    // The longest and the widest legal ids.
    let longest = "y".repeat(MAX_COMMAND_ID_BYTES);
    for id in [longest.as_str(), " !~"] {
        let result = h.ledger.apply(&envelope(id, deposit(1, "BTC", "1")), 5_000);
        assert!(matches!(result.outcome, Outcome::Applied { .. }), "{id:?}");
    }
}

#[test]
fn command_id_reused_with_a_different_body_is_refused_and_not_remembered() {
    let mut h = funded();
    let first = envelope("order-1", deposit(1, "BTC", "1"));
    assert!(matches!(
        h.ledger.apply(&first, 5_000).outcome,
        Outcome::Applied { .. }
    ));
    let hash = h.ledger.state_hash();
    let other = envelope("order-1", deposit(1, "BTC", "2"));
    let result = h.ledger.apply(&other, 5_001);
    assert!(!result.duplicate);
    match result.outcome {
        Outcome::Rejected(r) => assert_eq!(r.code, RejectCode::CommandIdReused),
        other => panic!("applied: {other:?}"),
    }
    assert_eq!(h.ledger.state_hash(), hash);
    // Not remembered: the original is still what the id means.
    let retry = h.ledger.apply(&first, 5_002);
    assert!(retry.duplicate);
    assert_eq!(h.ledger.state_hash(), hash);
}
