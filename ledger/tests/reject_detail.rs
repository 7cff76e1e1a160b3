//! Rejections are replicated as a code plus typed detail, never as prose:
//! the dedup records of rejected commands hold no message text, the detail
//! (hence the rendered message) survives a rebuild from records exactly, and
//! a corrupt detail is refused by `from_records`.

mod common;

use std::collections::BTreeMap;

use common::*;
use tally_ledger::*;

/// BTC (8), USDT (6), accounts 1..=3, BTC-PERP settled in USDT with a mark
/// price, account 1 long 1 from account 2, and a BTC hold (10) of account 1
/// and a USDT hold (11) of account 2.
fn harness() -> Harness {
    let mut h = spot_harness();
    h.ok(market_command("BTC-PERP"));
    for (account, asset, amount) in [(1, "BTC", "1"), (1, "USDT", "1000"), (2, "USDT", "1000")] {
        h.ok(Command::Deposit(Deposit {
            account,
            asset: asset.into(),
            amount: d(amount),
        }));
    }
    h.ok(mark("BTC-PERP", "100"));
    h.ok(perp_fill("BTC-PERP", 1, 2, "1", "100"));
    for (hold, account, asset, amount) in [(10, 1, "BTC", "0.5"), (11, 2, "USDT", "100")] {
        h.ok(Command::Lock(Lock {
            hold,
            account,
            asset: asset.into(),
            amount: d(amount),
        }));
    }
    h
}

fn spot_fill(buy_hold: u64, sell_hold: u64, base: &str, price: &str, fees: [&str; 2]) -> Command {
    Command::Fill(Fill {
        buy_hold,
        sell_hold,
        base_amount: d(base),
        price: d(price),
        buyer_fee: d(fees[0]),
        seller_fee: d(fees[1]),
    })
}

/// Rejected commands of many kinds (spot, markets, perps) with their codes.
fn refused() -> Vec<(Command, RejectCode)> {
    let asset = |symbol: &str, scale: u32| {
        Command::CreateAsset(CreateAsset {
            symbol: symbol.into(),
            scale,
        })
    };
    let withdraw = |account: u64, asset: &str, amount: &str| {
        Command::Withdraw(Withdraw {
            account,
            asset: asset.into(),
            amount: d(amount),
        })
    };
    let mut bad_market = market_command("SOL-PERP");
    if let Command::CreateMarket(m) = &mut bad_market {
        m.brackets[1].maintenance_margin_rate = d("1.5");
    }
    vec![
        (asset("B@D", 8), RejectCode::InvalidAsset),
        (asset("ETH", 19), RejectCode::InvalidAsset),
        (asset("BTC", 8), RejectCode::AssetExists),
        (withdraw(1, "DOGE", "1"), RejectCode::UnknownAsset),
        (withdraw(1, "BTC", "0.000000001"), RejectCode::BadPrecision),
        (
            withdraw(1, "BTC", "0.60000000"),
            RejectCode::InsufficientFunds,
        ),
        (withdraw(0, "BTC", "1"), RejectCode::InvalidAccount),
        (withdraw(1, "USDT", "-2.50"), RejectCode::InvalidAmount),
        (
            Command::Release(Release { hold: 99 }),
            RejectCode::UnknownHold,
        ),
        (
            spot_fill(11, 10, "0.6", "100", ["0", "0"]),
            RejectCode::HoldInsufficient,
        ),
        (
            spot_fill(11, 10, "0.1", "100", ["0.2", "0"]),
            RejectCode::FeeTooLarge,
        ),
        (
            spot_fill(11, 10, "0.00000001", "0.5", ["0", "0"]),
            RejectCode::BadPrecision,
        ),
        (
            spot_fill(10, 10, "0.1", "100", ["0", "0"]),
            RejectCode::HoldAssetMismatch,
        ),
        (market_command("BTC-PERP"), RejectCode::MarketExists),
        (bad_market, RejectCode::InvalidRate),
        (mark("ETH-PERP", "1"), RejectCode::UnknownMarket),
        (mark("BTC-PERP", "100.05"), RejectCode::BadPrecision),
        (
            perp_fill("BTC-PERP", 1, 2, "0.0015", "100"),
            RejectCode::SizeOffStep,
        ),
        (
            perp_fill("BTC-PERP", 1, 2, "1000", "100"),
            RejectCode::InsufficientMargin,
        ),
        (
            perp_fill("BTC-PERP", 1, 1, "1", "100"),
            RejectCode::InvalidAccount,
        ),
        (
            Command::ApplyFunding(ApplyFunding {
                market: "BTC-PERP".into(),
                rate: d("0.000000001"),
                funding_time_ms: FUNDING_INTERVAL_MS,
            }),
            RejectCode::BadPrecision,
        ),
        (
            Command::SetDedupWindow(SetDedupWindow { window_ms: 5 }),
            RejectCode::InvalidDedupWindow,
        ),
    ]
}

/// Applies every command of `refused` (each must be rejected with its
/// code); returns (id, command, rejection) of each.
fn reject_all(h: &mut Harness) -> Vec<(String, Command, Rejection)> {
    refused()
        .into_iter()
        .map(|(command, code)| {
            let rejection = h.rejected(command.clone(), code);
            (format!("cmd-{}", h.next_id), command, rejection)
        })
        .collect()
}

fn dedup_key(id: &str) -> Vec<u8> {
    let mut key = vec![0x06];
    key.extend_from_slice(id.as_bytes());
    key
}

#[test]
fn dedup_records_of_rejections_hold_no_prose() {
    let mut h = harness();
    let rejected = reject_all(&mut h);
    let records: BTreeMap<_, _> = h.ledger.records().into_iter().collect();
    for (id, command, rejection) in &rejected {
        let value = &records[&dedup_key(id)];
        let message = rejection.message();
        // Every lowercase word of the message is template prose (inputs
        // here are upper case or digits): none of it is stored.
        let words: Vec<&str> = message
            .split(|c: char| !c.is_ascii_lowercase())
            .filter(|word| word.len() >= 3)
            .collect();
        assert!(!words.is_empty(), "{message}");
        for word in words {
            assert!(
                !value.windows(word.len()).any(|w| w == word.as_bytes()),
                "{command:?}: {word:?} of {message:?} is in its dedup record"
            );
        }
    }
}

#[test]
fn rejection_details_and_messages_survive_a_rebuild_from_records() {
    let mut h = harness();
    let rejected = reject_all(&mut h);
    let mut restored =
        Ledger::from_records(LedgerConfig::default(), h.ledger.records()).expect("restores");
    assert_eq!(restored.state_hash(), h.ledger.state_hash());
    let now = h.now_ms + 10;
    for (id, command, rejection) in rejected {
        let retry = restored.apply(&envelope(&id, command.clone()), now);
        assert!(retry.duplicate, "{command:?}");
        let Outcome::Rejected(again) = retry.outcome else {
            panic!("{command:?} applied after a rebuild")
        };
        assert_eq!(again, rejection, "{command:?}");
        assert_eq!(again.detail.code(), again.code);
        assert_eq!(again.message(), rejection.message());
        // And the original answers the same.
        let original = h.ledger.apply(&envelope(&id, command), now);
        assert_eq!(original.outcome, Outcome::Rejected(again));
    }
    assert_eq!(restored.state_hash(), h.ledger.state_hash());
}

#[test]
fn the_message_renders_the_detail_word_for_word() {
    let mut h = harness();
    let rejected = reject_all(&mut h);
    let messages: Vec<String> = rejected.iter().map(|(_, _, r)| r.message()).collect();
    for expected in [
        "asset symbol \"B@D\" must be 1..=16 of A-Z 0-9 _ -",
        "asset ETH scale 19 above 18",
        "account 1 has 0.50000000 BTC available, needs 0.60000000",
        "amount -2.50 must be positive",
        "sell hold 10 has 0.50000000 BTC left, the fill takes 0.60000000",
        "bracket 1: maintenance margin rate 1.5 must be in (0, 1)",
        "size 0.0015 is not a multiple of 0.001",
        "funding rate 0.000000001 has more than 8 decimals",
        "dedup window 5 ms outside 1000..=604800000 ms (1 s to 7 days)",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "{expected:?} not among {messages:#?}"
        );
    }
    assert!(matches!(
        rejected[5].2.detail,
        RejectDetail::AvailableShort { account: 1, .. }
    ));
}

#[test]
fn a_corrupt_rejection_detail_is_refused_by_from_records() {
    let mut h = harness();
    let rejected = reject_all(&mut h);
    let records = h.ledger.records();
    let (id, _, rejection) = &rejected[5];
    assert_eq!(rejection.code, RejectCode::InsufficientFunds);
    let key = dedup_key(id);
    let original = records
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.clone())
        .expect("dedup record");
    // u64 stamp, u128 fingerprint, verdict 1, code, detail tag, fields.
    assert_eq!(original[24], 1);
    let with_value = |value: Vec<u8>| -> Vec<(Vec<u8>, Vec<u8>)> {
        records
            .iter()
            .map(|(k, v)| (k.clone(), if *k == key { value.clone() } else { v.clone() }))
            .collect()
    };
    let refused = |value: Vec<u8>, what: &str| {
        let result = Ledger::from_records(LedgerConfig::default(), with_value(value));
        assert!(
            matches!(
                result,
                Err(RecordError::Malformed {
                    kind: RecordKind::Dedup,
                    ..
                })
            ),
            "{what}: {result:?}"
        );
    };
    let mut mismatched = original.clone();
    mismatched[25] = original[25] + 1; // another code, same detail
    refused(mismatched, "code not the detail's");
    let mut unknown = original.clone();
    unknown[26] = 250;
    refused(unknown, "unknown detail tag");
    let mut bad_sign = original.clone();
    bad_sign[26 + 9] = 7; // AvailableShort: tag, u64 account, then the sign
    refused(bad_sign, "bad decimal sign");
    let mut bad_scale = original.clone();
    bad_scale[26 + 10] = 29;
    refused(bad_scale, "decimal scale 29");
    for cut in 25..original.len() {
        refused(original[..cut].to_vec(), "truncated");
    }
    let mut longer = original.clone();
    longer.push(0);
    refused(longer, "trailing byte");
    // Any single-byte corruption is refused or read, never a panic.
    for i in 24..original.len() {
        for flip in [0x01u8, 0x10, 0x80, 0xFF] {
            let mut bad = original.clone();
            bad[i] ^= flip;
            let _ = Ledger::from_records(LedgerConfig::default(), with_value(bad));
        }
    }
    // The untouched records restore.
    assert!(Ledger::from_records(LedgerConfig::default(), with_value(original)).is_ok());
}
