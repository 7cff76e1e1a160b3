//! Rebuilding a ledger from records: a faithful round trip, and corrupt or
//! foreign records refused with a `RecordError` (never a panic, never a
//! ledger that violates its invariants).

mod common;

use common::{d, spot_harness};
use proptest::prelude::*;
use tally_ledger::*;

/// A small state with every kind of record: assets, accounts, balances
/// (client and system), an open hold, and dedup entries.
fn sample() -> Ledger {
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
    h.ok(Command::Fill(Fill {
        buy_hold: 10,
        sell_hold: 20,
        base_amount: d("0.5"),
        price: d("1000"),
        buyer_fee: d("0.0005"),
        seller_fee: d("0.5"),
    }));
    h.rejected(
        Command::Release(Release { hold: 20 }),
        RejectCode::UnknownHold,
    );
    h.ledger
}

fn config() -> LedgerConfig {
    LedgerConfig::default()
}

#[test]
fn records_round_trip_through_from_records() {
    let ledger = sample();
    let records = ledger.records();
    let kinds: Vec<_> = records.iter().map(|(k, _)| RecordKind::of_key(k)).collect();
    for kind in [
        RecordKind::Meta,
        RecordKind::Asset,
        RecordKind::Account,
        RecordKind::Balance,
        RecordKind::Hold,
        RecordKind::Dedup,
    ] {
        assert!(kinds.contains(&Some(kind)), "no {kind:?} record");
    }
    // Any order of records rebuilds the same state.
    let mut reversed = records.clone();
    reversed.reverse();
    let rebuilt = Ledger::from_records(config(), reversed).expect("restores");
    assert_eq!(rebuilt.state_hash(), ledger.state_hash());
    assert_eq!(rebuilt.records(), records);
    assert_eq!(rebuilt.account(1), ledger.account(1));
    assert_eq!(rebuilt.hold(10), ledger.hold(10));
    assert_eq!(rebuilt.assets(), ledger.assets());
}

#[test]
fn corrupt_records_are_refused() {
    let records = sample().records();
    let mut unknown = records.clone();
    unknown.push((vec![0x7f, 1, 2], vec![]));
    assert!(matches!(
        Ledger::from_records(config(), unknown),
        Err(RecordError::UnknownKind { .. })
    ));
    let mut duplicated = records.clone();
    duplicated.push(records[1].clone());
    assert!(matches!(
        Ledger::from_records(config(), duplicated),
        Err(RecordError::Duplicate { .. })
    ));
    // Dropping a hold breaks locked == sum of holds.
    let without_hold: Vec<_> = records
        .iter()
        .filter(|(k, _)| RecordKind::of_key(k) != Some(RecordKind::Hold))
        .cloned()
        .collect();
    assert!(matches!(
        Ledger::from_records(config(), without_hold),
        Err(RecordError::Invariant(_))
    ));
    // A truncated balance value.
    let mut truncated = records.clone();
    let balance = truncated
        .iter_mut()
        .find(|(k, _)| RecordKind::of_key(k) == Some(RecordKind::Balance))
        .expect("a balance record");
    balance.1.pop();
    assert!(matches!(
        Ledger::from_records(config(), truncated),
        Err(RecordError::Malformed {
            kind: RecordKind::Balance,
            ..
        })
    ));
    // A future format version, and older ones (version 1 kept outcomes
    // with their events, 3 fingerprints of another encoding): not migrated.
    for version in [8, 1, 3] {
        let mut other = records.clone();
        other[0].1[0] = version;
        assert!(matches!(
            Ledger::from_records(config(), other),
            Err(RecordError::UnsupportedVersion(v)) if v == version
        ));
    }
}

#[derive(Clone, Debug)]
enum Corruption {
    SetKeyByte(usize, usize, u8),
    SetValueByte(usize, usize, u8),
    TruncateValue(usize, usize),
    AppendToValue(usize, u8),
    Drop(usize),
    Duplicate(usize),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    let (i, b) = (any::<usize>(), any::<u8>());
    prop_oneof![
        1 => (i, i, b).prop_map(|(r, p, b)| Corruption::SetKeyByte(r, p, b)),
        4 => (i, i, b).prop_map(|(r, p, b)| Corruption::SetValueByte(r, p, b)),
        1 => (i, i).prop_map(|(r, n)| Corruption::TruncateValue(r, n)),
        1 => (i, b).prop_map(|(r, b)| Corruption::AppendToValue(r, b)),
        1 => i.prop_map(Corruption::Drop),
        1 => i.prop_map(Corruption::Duplicate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Corrupted records are refused or, if still a consistent state,
    /// accepted; never a panic, never an accepted state that breaks an
    /// invariant or does not round-trip.
    #[test]
    fn from_records_never_panics_on_corrupted_records(
        corruptions in prop::collection::vec(corruption(), 1..4),
    ) {
        let mut records = sample().records();
        for c in corruptions {
            let n = records.len();
            match c {
                Corruption::SetKeyByte(r, p, b) => {
                    let key = &mut records[r % n].0;
                    let len = key.len();
                    key[p % len] = b;
                }
                Corruption::SetValueByte(r, p, b) => {
                    let value = &mut records[r % n].1;
                    if !value.is_empty() {
                        let len = value.len();
                        value[p % len] = b;
                    }
                }
                Corruption::TruncateValue(r, k) => {
                    let value = &mut records[r % n].1;
                    value.truncate(k % (value.len() + 1));
                }
                Corruption::AppendToValue(r, b) => records[r % n].1.push(b),
                Corruption::Drop(r) => {
                    records.remove(r % n);
                }
                Corruption::Duplicate(r) => records.push(records[r % n].clone()),
            }
            if records.is_empty() {
                break;
            }
        }
        if let Ok(ledger) = Ledger::from_records(config(), records) {
            prop_assert!(ledger.check_invariants().is_ok());
            let again = Ledger::from_records(config(), ledger.records());
            prop_assert_eq!(again.map(|l| l.state_hash()).ok(), Some(ledger.state_hash()));
        }
    }
}
