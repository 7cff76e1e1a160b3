//! The cluster version in the engine: a gated command is refused with
//! `FeatureNotActive` (not remembered, nothing changed) until the version
//! is raised, and applies after; the records stay in release 0.1's format
//! until then and carry the version after; the version never goes down and
//! a version this build does not know is refused without changing anything.

mod common;

use common::{d, envelope, spot_harness};
use tally_ledger::*;

fn assert_balance(account: u64, available: &str, locked: &str) -> Command {
    Command::AssertBalance(AssertBalance {
        account,
        asset: "BTC".into(),
        available: d(available),
        locked: d(locked),
    })
}

fn meta_value(ledger: &Ledger) -> Vec<u8> {
    ledger
        .records()
        .into_iter()
        .find(|(k, _)| RecordKind::of_key(k) == Some(RecordKind::Meta))
        .map(|(_, v)| v)
        .expect("a meta record")
}

#[test]
fn a_gated_command_is_refused_unremembered_until_the_version_is_raised_then_applies() {
    let mut h = spot_harness();
    h.ok(Command::Deposit(Deposit {
        account: 1,
        asset: "BTC".into(),
        amount: d("1.5"),
    }));
    assert_eq!(h.ledger.cluster_version(), BASE_CLUSTER_VERSION);
    let hash = h.ledger.state_hash();
    let check = envelope("check-1", assert_balance(1, "1.5", "0"));
    let refused = h.ledger.apply(&check, 10_000);
    let Outcome::Rejected(rejection) = &refused.outcome else {
        panic!("applied before the version was raised: {refused:?}")
    };
    assert_eq!(rejection.code, RejectCode::FeatureNotActive);
    assert_eq!(rejection.code.as_str(), "FEATURE_NOT_ACTIVE");
    assert!(
        rejection.message().contains("needs cluster version 2")
            && rejection.message().contains("runs at version 1"),
        "{}",
        rejection.message()
    );
    assert_eq!(
        h.ledger.state_hash(),
        hash,
        "a refused gated command changes nothing, not even the dedup clock"
    );
    assert!(!refused.duplicate);

    assert_eq!(h.ledger.set_cluster_version(2), Ok(true));
    assert_eq!(h.ledger.cluster_version(), 2);
    // The same id now applies: the refusal was not remembered.
    let applied = h.ledger.apply(&check, 10_001);
    assert!(
        matches!(applied.outcome, Outcome::Applied { .. }) && !applied.duplicate,
        "{applied:?}"
    );
    // A wrong assertion is an ordinary, remembered rejection.
    let wrong = h.rejected(assert_balance(1, "1.4", "0"), RejectCode::BalanceMismatch);
    assert!(
        wrong.message().contains("has 1.50000000 BTC available"),
        "{wrong}"
    );
    h.rejected(
        assert_balance(1, "1.5", "0.000000001"),
        RejectCode::BadPrecision,
    );
    h.rejected(assert_balance(9, "0", "0"), RejectCode::UnknownAccount);
}

#[test]
fn records_keep_release_0_1_format_until_raised_then_carry_the_version_and_round_trip() {
    let mut h = spot_harness();
    let before = meta_value(&h.ledger);
    assert_eq!(before[0], 6, "format 6 (release 0.1's) while at version 1");
    assert_eq!(before.len(), 1 + 8 + 8);
    let base_hash = h.ledger.state_hash();
    assert_eq!(h.ledger.set_cluster_version(2), Ok(true));
    assert_ne!(h.ledger.state_hash(), base_hash, "the version is state");
    let after = meta_value(&h.ledger);
    assert_eq!(after[0], 7);
    assert_eq!(&after[17..], &2u32.to_be_bytes());
    // The raise is a dirty record, as every change is.
    let dirty = h.ledger.take_dirty();
    assert!(
        dirty
            .iter()
            .any(|(k, v)| RecordKind::of_key(k) == Some(RecordKind::Meta)
                && v.as_deref() == Some(&after[..]))
    );
    let restored =
        Ledger::from_records(LedgerConfig::default(), h.ledger.records()).expect("restores");
    assert_eq!(restored.cluster_version(), 2);
    assert_eq!(restored.state_hash(), h.ledger.state_hash());
    h.ok(Command::CreateAccount(CreateAccount { account: 4 }));
    assert_eq!(meta_value(&h.ledger)[0], 7, "stays format 7");
}

#[test]
fn the_version_never_goes_down_and_an_unknown_one_is_refused_without_change() {
    let mut h = spot_harness();
    assert_eq!(h.ledger.set_cluster_version(1), Ok(false));
    let hash = h.ledger.state_hash();
    let too_new = MAX_CLUSTER_VERSION + 1;
    let err = h
        .ledger
        .set_cluster_version(too_new)
        .expect_err("unknown version");
    assert_eq!(err.active, too_new);
    assert!(
        err.to_string()
            .contains("supports cluster versions up to 2")
    );
    assert_eq!(h.ledger.state_hash(), hash);
    assert_eq!(h.ledger.set_cluster_version(2), Ok(true));
    assert_eq!(h.ledger.set_cluster_version(1), Ok(false));
    assert_eq!(h.ledger.cluster_version(), 2);
}

#[test]
fn records_finalized_at_a_version_this_build_does_not_know_are_refused_as_a_downgrade() {
    let mut h = spot_harness();
    h.ledger.set_cluster_version(2).expect("raise");
    let mut records = h.ledger.records();
    let meta = records
        .iter_mut()
        .find(|(k, _)| RecordKind::of_key(k) == Some(RecordKind::Meta))
        .expect("meta");
    let len = meta.1.len();
    meta.1[len - 4..].copy_from_slice(&(MAX_CLUSTER_VERSION + 1).to_be_bytes());
    let err = Ledger::from_records(LedgerConfig::default(), records.clone())
        .expect_err("a newer cluster version");
    assert!(
        matches!(err, RecordError::ClusterVersionUnsupported(e) if e.active == MAX_CLUSTER_VERSION + 1)
    );
    assert!(err.to_string().contains("downgrade refused"), "{err}");
    // Format 6 claiming the base version is not a valid record either.
    let meta = records
        .iter_mut()
        .find(|(k, _)| RecordKind::of_key(k) == Some(RecordKind::Meta))
        .expect("meta");
    meta.1[len - 4..].copy_from_slice(&1u32.to_be_bytes());
    assert!(matches!(
        Ledger::from_records(LedgerConfig::default(), records),
        Err(RecordError::Malformed { .. })
    ));
}
