//! Idempotency: a retried command id returns its remembered verdict without
//! changing anything — `Applied` with no events (events are delivered once,
//! with the first reply) or the identical rejection; a reused id with
//! another body is refused; entries expire after `dedup_window_ms` of
//! leader time (measured on the dedup clock, which never goes back) and are
//! evicted by the next new command. The window is replicated state, set by
//! `Command::SetDedupWindow`: it takes effect from the next command,
//! persists in the meta record and is part of the state hash.

mod common;

use std::collections::BTreeMap;

use common::{d, envelope};
use tally_ledger::*;

const WINDOW_MS: u64 = 1_000;

fn ledger() -> Ledger {
    let mut ledger = Ledger::new(LedgerConfig {
        dedup_window_ms: WINDOW_MS,
    });
    let setup = [
        Command::CreateAsset(CreateAsset {
            symbol: "BTC".into(),
            scale: 8,
        }),
        Command::CreateAccount(CreateAccount { account: 1 }),
    ];
    for (i, command) in setup.into_iter().enumerate() {
        let result = ledger.apply(&envelope(&format!("setup-{i}"), command), 0);
        assert!(matches!(result.outcome, Outcome::Applied { .. }));
    }
    ledger
}

fn deposit(amount: &str) -> Command {
    Command::Deposit(Deposit {
        account: 1,
        asset: "BTC".into(),
        amount: d(amount),
    })
}

fn btc(ledger: &Ledger) -> Decimal {
    ledger
        .balance(Owner::Account(1), "BTC")
        .expect("balance")
        .available
}

fn dedup_keys(ledger: &Ledger) -> Vec<Vec<u8>> {
    ledger
        .records()
        .into_iter()
        .filter(|(key, _)| RecordKind::of_key(key) == Some(RecordKind::Dedup))
        .map(|(key, _)| key)
        .collect()
}

fn dedup_key(id: &str) -> Vec<u8> {
    let mut key = vec![0x06];
    key.extend_from_slice(id.as_bytes());
    key
}

#[test]
fn default_window_is_24_hours() {
    assert_eq!(LedgerConfig::default().dedup_window_ms, 86_400_000);
}

/// What a retry of an applied command returns.
fn applied_retry() -> ApplyResult {
    ApplyResult {
        outcome: Outcome::Applied { events: vec![] },
        duplicate: true,
    }
}

#[test]
fn retry_returns_the_verdict_and_changes_nothing() {
    let mut ledger = ledger();
    let first = ledger.apply(&envelope("a", deposit("1")), 10_000);
    assert!(!first.duplicate);
    // The first reply carries the events (credit and External debit).
    let Outcome::Applied { events } = &first.outcome else {
        panic!("deposit rejected: {first:?}")
    };
    assert_eq!(events.len(), 2);
    let hash = ledger.state_hash();
    for now in [10_000, 10_500, 11_000, 3] {
        // Retries get the verdict only: applied, no events.
        let retry = ledger.apply(&envelope("a", deposit("1")), now);
        assert_eq!(retry, applied_retry(), "at {now}");
        assert_eq!(ledger.state_hash(), hash);
    }
    assert_eq!(btc(&ledger), d("1"));
    // Rejections are remembered too, with their code and message.
    let refused = ledger.apply(&envelope("b", deposit("-1")), 10_001);
    assert!(!refused.duplicate);
    let Outcome::Rejected(rejection) = &refused.outcome else {
        panic!("negative deposit applied: {refused:?}")
    };
    assert_eq!(rejection.code, RejectCode::InvalidAmount);
    assert!(
        rejection.message().contains("-1"),
        "{}",
        rejection.message()
    );
    let hash = ledger.state_hash();
    let retry = ledger.apply(&envelope("b", deposit("-1")), 10_002);
    assert_eq!(
        retry,
        ApplyResult {
            outcome: Outcome::Rejected(rejection.clone()),
            duplicate: true,
        }
    );
    assert_eq!(ledger.state_hash(), hash);
    // The same amount written with trailing zeros is the same command.
    let retry = ledger.apply(&envelope("a", deposit("1.000")), 10_003);
    assert_eq!(retry, applied_retry());
    // A different body under the same id is refused and not remembered.
    let reused = ledger.apply(&envelope("a", deposit("2")), 10_004);
    assert!(!reused.duplicate);
    assert!(matches!(
        reused.outcome,
        Outcome::Rejected(Rejection {
            code: RejectCode::CommandIdReused,
            ..
        })
    ));
    assert_eq!(ledger.state_hash(), hash);
    // "a" still means the first deposit.
    assert_eq!(
        ledger.apply(&envelope("a", deposit("1")), 10_005),
        applied_retry()
    );
    ledger.check_invariants().expect("invariants");
}

#[test]
fn dedup_records_hold_the_verdict_only() {
    let mut ledger = ledger();
    ledger.take_dirty();
    let id = "tc-0123456789abcdef0123456789abcdef";
    assert!(!ledger.apply(&envelope(id, deposit("1")), 10_000).duplicate);
    let refused = ledger.apply(&envelope("r", deposit("0.000000001")), 10_000);
    let Outcome::Rejected(rejection) = refused.outcome else {
        panic!("too precise deposit applied")
    };
    let dirty: BTreeMap<_, _> = ledger.take_dirty().into_iter().collect();
    // Applied: u64 stamp, u128 fingerprint, verdict 0; nothing else.
    let applied = dirty[&dedup_key(id)].as_ref().expect("written");
    assert_eq!(applied.len(), 25);
    assert_eq!(&applied[..8], &10_000u64.to_be_bytes());
    assert_eq!(applied[24], 0);
    // Rejected: verdict 1, the code, then the typed detail; no message text.
    assert_eq!(rejection.code, RejectCode::BadPrecision);
    assert_eq!(
        rejection.detail,
        RejectDetail::TooPrecise {
            field: Field::Amount,
            value: d("0.000000001"),
            scale: 8,
            asset: "BTC".into(),
        }
    );
    let rejected = dirty[&dedup_key("r")].as_ref().expect("written");
    assert_eq!(&rejected[..8], &10_000u64.to_be_bytes());
    let mut detail = vec![
        1,  // verdict: rejected
        3,  // RejectCode::BadPrecision
        18, // RejectDetail::TooPrecise
        0,  // field: Field::Amount
        0,  // value: sign (positive)
        9,  // value: scale
    ];
    detail.extend_from_slice(&1u128.to_be_bytes()); // value: magnitude
    detail.extend_from_slice(&8u32.to_be_bytes()); // scale
    detail.extend_from_slice(&3u32.to_be_bytes()); // asset: length, bytes
    detail.extend_from_slice(b"BTC");
    assert_eq!(&rejected[24..], &detail[..]);
    let message = rejection.message();
    assert_eq!(message, "amount 0.000000001 has more than 8 decimals (BTC)");
    for prose in [message.as_str(), "decimals", "amount"] {
        assert!(
            !rejected.windows(prose.len()).any(|w| w == prose.as_bytes()),
            "{prose:?} stored"
        );
    }
}

#[test]
fn entries_expire_after_the_window_and_are_evicted_by_the_next_command() {
    let mut ledger = ledger();
    ledger.take_dirty();
    assert!(!ledger.apply(&envelope("a", deposit("1")), 10_000).duplicate);
    assert!(!ledger.apply(&envelope("b", deposit("5")), 10_000).duplicate);
    // Inside the window (stamp 10,000 >= 11,000 - 1,000).
    assert!(ledger.apply(&envelope("a", deposit("1")), 11_000).duplicate);
    assert_eq!(btc(&ledger), d("6"));
    // One millisecond later the entry has expired: the retry is a new command.
    let again = ledger.apply(&envelope("a", deposit("1")), 11_001);
    assert!(!again.duplicate);
    assert_eq!(btc(&ledger), d("7"));
    // After expiry the id is free, even for another body (no CommandIdReused).
    let other = ledger.apply(&envelope("b", deposit("6")), 11_001);
    assert!(!other.duplicate);
    assert!(matches!(other.outcome, Outcome::Applied { .. }));
    assert_eq!(btc(&ledger), d("13"));
    // "a" at 10,000 evicted the setup entries (stamped 0).
    let dirty: BTreeMap<_, _> = ledger.take_dirty().into_iter().collect();
    assert_eq!(dirty.get(&dedup_key("setup-0")), Some(&None));
    assert!(matches!(dirty.get(&dedup_key("a")), Some(Some(_))));
    assert_eq!(dedup_keys(&ledger), [dedup_key("a"), dedup_key("b")]);

    // The next command at 12,002 evicts everything stamped before 11,002.
    assert!(!ledger.apply(&envelope("c", deposit("1")), 12_002).duplicate);
    assert_eq!(dedup_keys(&ledger), [dedup_key("c")]);
    let dirty: BTreeMap<_, _> = ledger.take_dirty().into_iter().collect();
    for gone in ["a", "b"] {
        assert_eq!(
            dirty.get(&dedup_key(gone)),
            Some(&None),
            "{gone} not deleted"
        );
    }
    assert!(matches!(dirty.get(&dedup_key("c")), Some(Some(_))));
    // An id evicted before it was ever taken produces no record at all.
    assert!(!ledger.apply(&envelope("d", deposit("1")), 20_000).duplicate);
    assert!(!ledger.apply(&envelope("e", deposit("1")), 30_000).duplicate);
    let dirty: BTreeMap<_, _> = ledger.take_dirty().into_iter().collect();
    assert!(!dirty.contains_key(&dedup_key("d")));
    assert_eq!(dirty.get(&dedup_key("c")), Some(&None));
    ledger.check_invariants().expect("invariants");
}

#[test]
fn time_going_backwards_after_failover_does_not_shorten_the_window() {
    let mut ledger = ledger();
    assert!(
        !ledger
            .apply(&envelope("x", deposit("1")), 100_000)
            .duplicate
    );
    // A new leader whose clock is behind: the dedup clock stays at 100,000
    // and "y" is stamped 100,000.
    assert!(!ledger.apply(&envelope("y", deposit("1")), 40_000).duplicate);
    assert!(ledger.apply(&envelope("x", deposit("1")), 40_000).duplicate);
    assert!(
        ledger
            .apply(&envelope("y", deposit("1")), 100_000 + WINDOW_MS)
            .duplicate
    );
    assert!(
        !ledger
            .apply(&envelope("y", deposit("1")), 100_001 + WINDOW_MS)
            .duplicate
    );
    assert_eq!(btc(&ledger), d("3"));
}

#[test]
fn duplicates_and_refused_ids_do_not_advance_the_dedup_clock() {
    let mut ledger = ledger();
    assert!(!ledger.apply(&envelope("a", deposit("1")), 10_000).duplicate);
    let hash = ledger.state_hash();
    // A live duplicate at a later time, an invalid id far in the future and
    // a reused id: none of them moves the clock.
    assert!(ledger.apply(&envelope("a", deposit("1")), 10_900).duplicate);
    let invalid = ledger.apply(&envelope("", deposit("1")), 1_000_000);
    assert!(matches!(
        invalid.outcome,
        Outcome::Rejected(Rejection {
            code: RejectCode::InvalidCommandId,
            ..
        })
    ));
    let reused = ledger.apply(&envelope("a", deposit("9")), 10_950);
    assert!(matches!(
        reused.outcome,
        Outcome::Rejected(Rejection {
            code: RejectCode::CommandIdReused,
            ..
        })
    ));
    assert_eq!(ledger.state_hash(), hash);
    assert!(ledger.apply(&envelope("a", deposit("1")), 10_900).duplicate);
}

#[test]
fn dedup_table_survives_a_rebuild_from_records() {
    let mut ledger = ledger();
    for (i, now) in [10_000u64, 10_000, 10_400, 10_800].into_iter().enumerate() {
        assert!(
            !ledger
                .apply(&envelope(&format!("k{i}"), deposit("1")), now)
                .duplicate
        );
    }
    let mut restored = Ledger::from_records(
        LedgerConfig {
            dedup_window_ms: WINDOW_MS,
        },
        ledger.records(),
    )
    .expect("restores");
    assert_eq!(restored.state_hash(), ledger.state_hash());
    // Both evolve identically: retries, expiry and eviction.
    for (id, amount, now, duplicate) in [
        ("k0", "1", 10_900, true),
        ("k1", "1", 11_001, false),
        ("k3", "1", 11_300, true),
        ("bad", "-2", 11_300, false),
        ("bad", "-2", 11_301, true),
        ("z", "4", 11_401, false),
    ] {
        let a = ledger.apply(&envelope(id, deposit(amount)), now);
        let b = restored.apply(&envelope(id, deposit(amount)), now);
        assert_eq!(a, b);
        assert_eq!(a.duplicate, duplicate, "{id} at {now}");
        assert_eq!(ledger.state_hash(), restored.state_hash());
    }
    assert_eq!(btc(&ledger), d("9"));
    // A remembered rejection keeps its message through a rebuild.
    let mut again = Ledger::from_records(
        LedgerConfig {
            dedup_window_ms: WINDOW_MS,
        },
        ledger.records(),
    )
    .expect("restores");
    let first = ledger.apply(&envelope("bad", deposit("-2")), 11_401);
    let retry = again.apply(&envelope("bad", deposit("-2")), 11_401);
    assert!(retry.duplicate && matches!(retry.outcome, Outcome::Rejected(_)));
    assert_eq!(retry, first);
}

#[test]
fn an_id_evicted_and_remembered_again_is_drained_once_as_a_write() {
    let mut ledger = ledger();
    assert!(!ledger.apply(&envelope("a", deposit("1")), 10_000).duplicate);
    ledger.take_dirty();
    // Expired: evicted (its record was handed out) and applied again.
    assert!(!ledger.apply(&envelope("a", deposit("1")), 12_000).duplicate);
    let mut seen = Vec::new();
    ledger.drain_dirty(|key, value| {
        if key == dedup_key("a").as_slice() {
            seen.push(value.map(<[u8]>::to_vec));
        }
    });
    assert_eq!(seen.len(), 1, "{seen:?}");
    let value = seen[0].as_ref().expect("a write, not a delete");
    assert_eq!(&value[..8], &12_000u64.to_be_bytes());
    assert!(ledger.take_dirty().is_empty());
    assert_eq!(btc(&ledger), d("2"));
}

// ----- the window as replicated state (Command::SetDedupWindow) -------------

fn ledger_with_window(window_ms: u64) -> Ledger {
    let mut ledger = Ledger::new(LedgerConfig {
        dedup_window_ms: window_ms,
    });
    for (i, command) in [
        Command::CreateAsset(CreateAsset {
            symbol: "BTC".into(),
            scale: 8,
        }),
        Command::CreateAccount(CreateAccount { account: 1 }),
    ]
    .into_iter()
    .enumerate()
    {
        let result = ledger.apply(&envelope(&format!("setup-{i}"), command), 0);
        assert!(matches!(result.outcome, Outcome::Applied { .. }));
    }
    ledger
}

fn set_window(window_ms: u64) -> Command {
    Command::SetDedupWindow(SetDedupWindow { window_ms })
}

/// Applies `SetDedupWindow` under `id`, which must succeed; returns its events.
fn apply_set_window(ledger: &mut Ledger, id: &str, window_ms: u64, now_ms: u64) -> Vec<Event> {
    let result = ledger.apply(&envelope(id, set_window(window_ms)), now_ms);
    assert!(!result.duplicate);
    let Outcome::Applied { events } = result.outcome else {
        panic!("window {window_ms} rejected: {result:?}")
    };
    events
}

/// The meta record's value (format version, dedup clock, window).
fn meta_value(ledger: &Ledger) -> Vec<u8> {
    ledger
        .records()
        .into_iter()
        .find(|(key, _)| RecordKind::of_key(key) == Some(RecordKind::Meta))
        .map(|(_, value)| value)
        .expect("meta record")
}

#[test]
fn set_dedup_window_is_applied_with_its_event_and_remembered_like_any_command() {
    let mut ledger = ledger_with_window(WINDOW_MS);
    assert_eq!(ledger.dedup_window_ms(), WINDOW_MS);
    let events = apply_set_window(&mut ledger, "w", 60_000, 10_000);
    assert_eq!(events, [Event::DedupWindowSet { window_ms: 60_000 }]);
    assert_eq!(ledger.dedup_window_ms(), 60_000);
    // A retry is a duplicate (no events), a different window under the same
    // id is a reused id; neither changes the window.
    let hash = ledger.state_hash();
    assert_eq!(
        ledger.apply(&envelope("w", set_window(60_000)), 10_001),
        applied_retry()
    );
    let reused = ledger.apply(&envelope("w", set_window(5_000)), 10_002);
    assert!(matches!(
        reused.outcome,
        Outcome::Rejected(Rejection {
            code: RejectCode::CommandIdReused,
            ..
        })
    ));
    assert_eq!(ledger.dedup_window_ms(), 60_000);
    assert_eq!(ledger.state_hash(), hash);
    // apply_quiet: the same verdict and state, no event.
    let mut quiet = ledger_with_window(WINDOW_MS);
    let result = quiet.apply_quiet(&envelope("w", set_window(60_000)), 10_000);
    assert_eq!(result.outcome, Outcome::Applied { events: vec![] });
    assert_eq!(quiet.dedup_window_ms(), 60_000);
    let mut full = ledger_with_window(WINDOW_MS);
    apply_set_window(&mut full, "w", 60_000, 10_000);
    assert_eq!(quiet.state_hash(), full.state_hash());
    ledger.check_invariants().expect("invariants");
}

#[test]
fn shrinking_the_window_makes_an_older_retry_apply_as_new_once_the_new_window_passes() {
    let mut ledger = ledger_with_window(10_000);
    assert!(!ledger.apply(&envelope("a", deposit("1")), 10_000).duplicate);
    // Same history without the change: "a" stays a duplicate for 10 s.
    let mut unchanged = ledger.clone();
    apply_set_window(&mut ledger, "w", 1_000, 10_100);
    // "w" itself was checked, and evicted, under the old window: only the
    // set-up entries (stamped 0 < 10,100 - 10,000) went.
    assert_eq!(dedup_keys(&ledger), [dedup_key("a"), dedup_key("w")]);
    // Inside the new window: still a duplicate.
    assert!(ledger.apply(&envelope("a", deposit("1")), 11_000).duplicate);
    // Past it (10,000 < 11,001 - 1,000): expired, and the next new command
    // evicts every entry stamped before its horizon at once.
    assert!(!ledger.apply(&envelope("c", deposit("2")), 11_050).duplicate);
    assert_eq!(dedup_keys(&ledger), [dedup_key("c"), dedup_key("w")]);
    let again = ledger.apply(&envelope("a", deposit("1")), 11_100);
    assert!(!again.duplicate, "{again:?}");
    assert!(matches!(again.outcome, Outcome::Applied { .. }));
    assert_eq!(btc(&ledger), d("4"));
    // Under the old window the same retry was still a duplicate.
    assert!(
        unchanged
            .apply(&envelope("a", deposit("1")), 11_100)
            .duplicate
    );
    // The new window holds from now on: "a" (stamped 11,100) until 12,100.
    assert!(ledger.apply(&envelope("a", deposit("1")), 12_100).duplicate);
    assert!(!ledger.apply(&envelope("a", deposit("1")), 12_101).duplicate);
    ledger.check_invariants().expect("invariants");
}

#[test]
fn growing_the_window_keeps_remembered_entries_longer() {
    let mut ledger = ledger_with_window(WINDOW_MS);
    assert!(
        !ledger
            .apply(&envelope("old", deposit("1")), 5_000)
            .duplicate
    );
    // "a" at 10,000 evicts "old" (stamped before 9,000).
    assert!(!ledger.apply(&envelope("a", deposit("1")), 10_000).duplicate);
    apply_set_window(&mut ledger, "w", 10_000, 10_500);
    assert_eq!(ledger.dedup_window_ms(), 10_000);
    // "a" stays a duplicate well past the old 1 s window...
    assert!(ledger.apply(&envelope("a", deposit("1")), 14_000).duplicate);
    assert!(ledger.apply(&envelope("a", deposit("1")), 20_000).duplicate);
    // ...until the new one passes.
    assert!(!ledger.apply(&envelope("a", deposit("1")), 20_001).duplicate);
    // An id evicted before the change stays forgotten.
    assert!(
        !ledger
            .apply(&envelope("old", deposit("1")), 20_002)
            .duplicate
    );
    assert_eq!(btc(&ledger), d("4"));
    ledger.check_invariants().expect("invariants");
}

#[test]
fn an_out_of_range_window_is_rejected_and_changes_nothing_but_its_dedup_entry() {
    for window_ms in [0, 1, 999, MAX_DEDUP_WINDOW_MS + 1, u64::MAX] {
        let mut ledger = ledger_with_window(WINDOW_MS);
        // A twin that gets another rejected command under the same id at
        // the same time: everything but that id's dedup record must match.
        let mut twin = ledger.clone();
        let result = ledger.apply(&envelope("x", set_window(window_ms)), 10_000);
        let Outcome::Rejected(rejection) = &result.outcome else {
            panic!("window {window_ms} applied: {result:?}")
        };
        assert_eq!(rejection.code, RejectCode::InvalidDedupWindow);
        assert_eq!(rejection.code.as_str(), "INVALID_DEDUP_WINDOW");
        assert!(
            rejection.message().contains(&window_ms.to_string()),
            "{}",
            rejection.message()
        );
        let other = twin.apply(
            &envelope("x", Command::Release(Release { hold: 9 })),
            10_000,
        );
        assert!(matches!(other.outcome, Outcome::Rejected(_)));
        assert_eq!(ledger.dedup_window_ms(), WINDOW_MS);
        let without_x = |ledger: &Ledger| -> Vec<(Vec<u8>, Vec<u8>)> {
            ledger
                .records()
                .into_iter()
                .filter(|(key, _)| *key != dedup_key("x"))
                .collect()
        };
        assert_eq!(without_x(&ledger), without_x(&twin), "window {window_ms}");
        // The rejection is remembered: a retry gets it again.
        let retry = ledger.apply(&envelope("x", set_window(window_ms)), 10_001);
        assert!(retry.duplicate);
        assert_eq!(retry.outcome, result.outcome);
        // The old window still holds.
        assert!(!ledger.apply(&envelope("a", deposit("1")), 10_000).duplicate);
        assert!(!ledger.apply(&envelope("a", deposit("1")), 11_001).duplicate);
    }
    // The bounds themselves are accepted.
    let mut ledger = ledger_with_window(WINDOW_MS);
    for (i, window_ms) in [MIN_DEDUP_WINDOW_MS, MAX_DEDUP_WINDOW_MS]
        .into_iter()
        .enumerate()
    {
        apply_set_window(&mut ledger, &format!("w{i}"), window_ms, 10_000);
        assert_eq!(ledger.dedup_window_ms(), window_ms);
    }
    assert_eq!(
        (MIN_DEDUP_WINDOW_MS, MAX_DEDUP_WINDOW_MS),
        (1_000, 604_800_000)
    );
}

#[test]
fn the_window_survives_a_rebuild_from_records_and_is_part_of_the_state_hash() {
    let mut ledger = ledger_with_window(WINDOW_MS);
    assert!(!ledger.apply(&envelope("a", deposit("1")), 10_000).duplicate);
    let before = ledger.state_hash();
    apply_set_window(&mut ledger, "w", 5_000, 10_000);
    assert_ne!(ledger.state_hash(), before);
    // The meta record holds version 6, the clock and the window.
    let mut expected = vec![6u8];
    expected.extend_from_slice(&10_000u64.to_be_bytes());
    expected.extend_from_slice(&5_000u64.to_be_bytes());
    assert_eq!(meta_value(&ledger), expected);
    // The drained batch carries it too.
    let dirty: BTreeMap<_, _> = ledger.take_dirty().into_iter().collect();
    assert_eq!(dirty.get([0x01u8].as_slice()), Some(&Some(expected)));

    // Rebuilt with any configured window, the ledger keeps its own.
    let mut restored =
        Ledger::from_records(LedgerConfig::default(), ledger.records()).expect("restores");
    assert_eq!(restored.dedup_window_ms(), 5_000);
    assert_eq!(restored.state_hash(), ledger.state_hash());
    for (id, now, duplicate) in [
        ("a", 14_000, true),
        ("w", 14_500, true),
        ("a", 15_001, false),
    ] {
        let command = if id == "w" {
            set_window(5_000)
        } else {
            deposit("1")
        };
        let a = ledger.apply(&envelope(id, command.clone()), now);
        let b = restored.apply(&envelope(id, command), now);
        assert_eq!(a, b);
        assert_eq!(a.duplicate, duplicate, "{id} at {now}");
        assert_eq!(ledger.state_hash(), restored.state_hash());
    }

    // Only the window differs: the hash differs, and so does the restored window.
    let patched: Vec<_> = ledger
        .records()
        .into_iter()
        .map(|(key, mut value)| {
            if RecordKind::of_key(&key) == Some(RecordKind::Meta) {
                value[9..17].copy_from_slice(&6_000u64.to_be_bytes());
            }
            (key, value)
        })
        .collect();
    let other = Ledger::from_records(LedgerConfig::default(), patched).expect("restores");
    assert_eq!(other.dedup_window_ms(), 6_000);
    assert_ne!(other.state_hash(), ledger.state_hash());
}

#[test]
fn meta_records_of_unknown_or_unreadable_versions_are_refused_and_versions_4_and_5_are_read() {
    let mut ledger = ledger_with_window(WINDOW_MS);
    assert!(!ledger.apply(&envelope("a", deposit("1")), 10_000).duplicate);
    let config = LedgerConfig {
        dedup_window_ms: WINDOW_MS,
    };
    // Version 2 (no window) and 3 (fingerprints of another command
    // encoding) are refused, not misread, as are unknown ones.
    for version in [1u8, 2, 3, 8] {
        let mut records = ledger.records();
        for (key, value) in &mut records {
            if RecordKind::of_key(key) == Some(RecordKind::Meta) {
                value[0] = version;
            }
        }
        assert!(matches!(
            Ledger::from_records(config, records),
            Err(RecordError::UnsupportedVersion(v)) if v == version
        ));
    }
    let restored = Ledger::from_records(config, ledger.records()).expect("restores version 6");
    assert_eq!(restored.state_hash(), ledger.state_hash());
    // Version 5 is the same records without account-model ones: still read.
    let mut records = ledger.records();
    for (key, value) in &mut records {
        if RecordKind::of_key(key) == Some(RecordKind::Meta) {
            value[0] = 5;
        }
    }
    let restored = Ledger::from_records(config, records).expect("restores version 5");
    assert_eq!(restored.dedup_window_ms(), ledger.dedup_window_ms());
    // Version 4 is the same records without ingest ones: still read.
    let mut records = ledger.records();
    for (key, value) in &mut records {
        if RecordKind::of_key(key) == Some(RecordKind::Meta) {
            value[0] = 4;
        }
    }
    let restored = Ledger::from_records(config, records).expect("restores version 4");
    assert_eq!(restored.dedup_window_ms(), ledger.dedup_window_ms());
}
