//! Every checker is proven to fail: known-bad histories (a lost write, a
//! double apply, a stale read, a broken total, ...) must be judged invalid,
//! and known-good ones valid. Pure and fast: no cluster.

use std::collections::BTreeMap;

use tally_jepsen::checker::convergence::{self, NodeHash};
use tally_jepsen::checker::{Verdict, bank, final_state, idempotence, linear, unavailability};
use tally_jepsen::history::{self, Builder, EventType, FaultWindow, Func};

fn finals(node_balances: &[(&str, &[(u64, i64)])]) -> BTreeMap<String, BTreeMap<u64, i64>> {
    node_balances
        .iter()
        .map(|(n, b)| (n.to_string(), b.iter().copied().collect()))
        .collect()
}

fn lin(events: &[history::Event]) -> Verdict {
    let ops = history::pair(events);
    let h = linear::counter_histories(&ops, &["register", "idempotence"]);
    linear::check_accounts(&h, linear::Limits::default())
}

const OK: EventType = EventType::Ok;
const INFO: EventType = EventType::Info;
const FAIL: EventType = EventType::Fail;

// ---- linearizability ----

#[test]
fn linearizability_accepts_a_good_concurrent_history() {
    let mut b = Builder::new();
    b.deposit("register", 1000, 17, 0, Some((50, OK)));
    b.deposit("register", 1000, 5, 10, Some((60, OK))); // concurrent with the first
    b.read("register", 1000, 17, 20, 30); // sees only the first: fine (concurrent)
    b.read("register", 1000, 22, 70, 80);
    b.deposit("register", 1000, 100, 90, None); // unknown, never seen
    b.read("register", 1000, 22, 100, 110);
    b.deposit("register", 1001, 9, 0, Some((10, INFO))); // other account, unknown, later seen
    b.read("register", 1001, 9, 500, 510);
    let v = lin(&b.finish());
    assert!(v.is_valid(), "{v}");
}

#[test]
fn linearizability_rejects_a_stale_read() {
    let mut b = Builder::new();
    b.deposit("register", 1000, 17, 0, Some((10, OK)));
    b.read("register", 1000, 17, 20, 30);
    b.deposit("register", 1000, 5, 40, Some((50, OK)));
    b.read("register", 1000, 17, 60, 70); // stale: the +5 was acknowledged before this read began
    let v = lin(&b.finish());
    assert!(v.is_invalid(), "{v}");
    assert!(v.detail().contains("account 1000"), "{v}");
}

#[test]
fn linearizability_rejects_a_lost_write_seen_by_reads() {
    let mut b = Builder::new();
    b.deposit("register", 1000, 17, 0, Some((10, OK)));
    b.read("register", 1000, 0, 20, 30);
    assert!(lin(&b.finish()).is_invalid());
}

#[test]
fn linearizability_rejects_a_double_apply_seen_by_reads() {
    let mut b = Builder::new();
    b.deposit("register", 1000, 17, 0, Some((10, OK)));
    b.read("register", 1000, 34, 20, 30);
    assert!(lin(&b.finish()).is_invalid());
}

#[test]
fn linearizability_rejects_an_unknown_write_that_vanishes() {
    let mut b = Builder::new();
    b.deposit("register", 1000, 17, 0, Some((10, INFO)));
    b.read("register", 1000, 17, 20, 30);
    b.read("register", 1000, 0, 40, 50);
    assert!(lin(&b.finish()).is_invalid());
}

#[test]
fn linearizability_ignores_failed_writes_only_when_unseen() {
    let mut b = Builder::new();
    b.deposit("register", 1000, 17, 0, Some((10, FAIL)));
    b.read("register", 1000, 0, 20, 30);
    assert!(lin(&b.finish()).is_valid());
    let mut b = Builder::new();
    b.deposit("register", 1000, 17, 0, Some((10, FAIL)));
    b.read("register", 1000, 17, 20, 30); // a failed write must not be visible
    assert!(lin(&b.finish()).is_invalid());
}

#[test]
fn linearizability_gives_unknown_when_bounds_are_hit() {
    let mut b = Builder::new();
    for i in 0..22u64 {
        b.deposit("register", 1000, 1 << i, i, None);
    }
    b.read("register", 1000, -1, 100, 200);
    let ops = history::pair(&b.finish());
    let h = linear::counter_histories(&ops, &["register"]);
    let v = linear::check_accounts(
        &h,
        linear::Limits {
            max_cache_bytes: 50_000,
            max_time: std::time::Duration::from_secs(5),
        },
    );
    assert!(matches!(v, Verdict::Unknown(_)), "{v}");
}

// ---- bank ----

#[test]
fn bank_accepts_conserving_reads() {
    let mut b = Builder::new();
    b.transfer(1, 2, 10, 0, Some((10, OK)));
    b.bank_read(&[(1, 90), (2, 110)], 20, 30);
    let ops = history::pair(&b.finish());
    let v = bank::check(&ops, &[1, 2], 200, &finals(&[("n0", &[(1, 90), (2, 110)])]));
    assert!(v.is_valid(), "{v}");
}

#[test]
fn bank_rejects_a_broken_total() {
    let mut b = Builder::new();
    b.bank_read(&[(1, 90), (2, 100)], 20, 30); // 10 vanished
    let ops = history::pair(&b.finish());
    let v = bank::check(&ops, &[1, 2], 200, &BTreeMap::new());
    assert!(v.is_invalid(), "{v}");
    assert!(v.detail().contains("total is 190"), "{v}");
}

#[test]
fn bank_rejects_a_negative_balance() {
    let mut b = Builder::new();
    b.bank_read(&[(1, -10), (2, 210)], 20, 30);
    let ops = history::pair(&b.finish());
    let v = bank::check(&ops, &[1, 2], 200, &BTreeMap::new());
    assert!(v.is_invalid() && v.detail().contains("negative"), "{v}");
}

#[test]
fn bank_rejects_a_broken_final_state() {
    let ops = history::pair(&Builder::new().finish());
    let v = bank::check(
        &ops,
        &[1, 2],
        200,
        &finals(&[("n0", &[(1, 100), (2, 100)]), ("n1", &[(1, 100), (2, 99)])]),
    );
    assert!(v.is_invalid() && v.detail().contains("n1"), "{v}");
}

// ---- final state: lost writes, double applies ----

fn final_verdict(
    events: &[history::Event],
    workload: &str,
    f: &[(&str, &[(u64, i64)])],
) -> Verdict {
    let ops = history::pair(events);
    let writes = final_state::account_writes(&ops, &[workload]);
    final_state::check(&writes, &finals(f))
}

#[test]
fn final_state_accepts_acknowledged_plus_some_unknown_writes() {
    let mut b = Builder::new();
    b.deposit("register", 1000, 17, 0, Some((10, OK)));
    b.deposit("register", 1000, 5, 20, Some((30, INFO)));
    b.deposit("register", 1000, 300, 40, None);
    b.deposit("register", 1000, 1, 50, Some((60, FAIL)));
    let e = b.finish();
    for balance in [17, 22, 317, 322] {
        let v = final_verdict(&e, "register", &[("n0", &[(1000, balance)])]);
        assert!(v.is_valid(), "{balance}: {v}");
    }
}

#[test]
fn final_state_rejects_a_lost_acknowledged_write() {
    let mut b = Builder::new();
    b.deposit("register", 1000, 17, 0, Some((10, OK)));
    b.deposit("register", 1000, 5, 20, Some((30, OK)));
    let v = final_verdict(
        &b.finish(),
        "register",
        &[("n0", &[(1000, 22)]), ("n1", &[(1000, 17)])],
    );
    assert!(v.is_invalid(), "{v}");
    assert!(
        v.detail().contains("n1") && v.detail().contains("lost"),
        "{v}"
    );
}

#[test]
fn final_state_rejects_a_double_apply() {
    let mut b = Builder::new();
    b.deposit("register", 1000, 17, 0, Some((10, OK)));
    b.deposit("register", 1000, 5, 20, Some((30, INFO)));
    // 17 twice (+5 or not) is not explained.
    for balance in [34, 39] {
        let v = final_verdict(&b.events.clone(), "register", &[("n0", &[(1000, balance)])]);
        assert!(v.is_invalid(), "{balance}: {v}");
    }
    // An unknown write applied twice is not explained either.
    let v = final_verdict(&b.finish(), "register", &[("n0", &[(1000, 27)])]);
    assert!(v.is_invalid(), "{v}");
}

#[test]
fn final_state_counts_retries_of_one_command_id_once() {
    let mut b = Builder::new();
    b.deposit_with_id(
        "idempotence",
        "cmd-1",
        100_000,
        40,
        0,
        Some((10, INFO)),
        false,
    );
    b.deposit_with_id(
        "idempotence",
        "cmd-1",
        100_000,
        40,
        20,
        Some((30, OK)),
        true,
    );
    let e = b.finish();
    assert!(final_verdict(&e, "idempotence", &[("n0", &[(100_000, 40)])]).is_valid());
    assert!(final_verdict(&e, "idempotence", &[("n0", &[(100_000, 80)])]).is_invalid());
    assert!(final_verdict(&e, "idempotence", &[("n0", &[(100_000, 0)])]).is_invalid());
}

#[test]
fn final_state_checks_transfer_legs() {
    let mut b = Builder::new();
    b.deposit("bank", 1, 100, 0, Some((1, OK)));
    b.deposit("bank", 2, 100, 0, Some((1, OK)));
    b.transfer(1, 2, 7, 10, Some((20, OK)));
    b.transfer(2, 1, 3, 30, Some((40, INFO)));
    let e = b.finish();
    assert!(final_verdict(&e, "bank", &[("n0", &[(1, 93), (2, 107)])]).is_valid());
    assert!(final_verdict(&e, "bank", &[("n0", &[(1, 96), (2, 104)])]).is_valid());
    // The acknowledged transfer lost.
    assert!(final_verdict(&e, "bank", &[("n0", &[(1, 100), (2, 100)])]).is_invalid());
}

// ---- idempotence ----

#[test]
fn idempotence_accepts_a_retry_reporting_duplicate() {
    let mut b = Builder::new();
    b.deposit_with_id(
        "idempotence",
        "cmd-1",
        100_000,
        40,
        0,
        Some((10, INFO)),
        false,
    );
    b.deposit_with_id(
        "idempotence",
        "cmd-1",
        100_000,
        40,
        20,
        Some((30, OK)),
        true,
    );
    let ops = history::pair(&b.finish());
    let v = idempotence::check(&ops, &["idempotence"]);
    assert!(v.is_valid(), "{v}");
}

#[test]
fn idempotence_rejects_two_fresh_applies_of_one_id() {
    let mut b = Builder::new();
    b.deposit_with_id(
        "idempotence",
        "cmd-1",
        100_000,
        40,
        0,
        Some((10, OK)),
        false,
    );
    b.deposit_with_id(
        "idempotence",
        "cmd-1",
        100_000,
        40,
        20,
        Some((30, OK)),
        false,
    );
    let ops = history::pair(&b.finish());
    let v = idempotence::check(&ops, &["idempotence"]);
    assert!(
        v.is_invalid() && v.detail().contains("applied 2 times"),
        "{v}"
    );
}

#[test]
fn idempotence_rejects_a_rejected_retry_after_an_apply() {
    let mut b = Builder::new();
    b.deposit_with_id(
        "idempotence",
        "cmd-1",
        100_000,
        40,
        0,
        Some((10, OK)),
        false,
    );
    let op = b.deposit_with_id("idempotence", "cmd-1", 100_000, 40, 20, None, false);
    b.complete(30, op, FAIL, |e| {
        e.error = Some("UNKNOWN_ACCOUNT: forgot".into())
    });
    let ops = history::pair(&b.finish());
    assert!(idempotence::check(&ops, &["idempotence"]).is_invalid());
}

// ---- convergence ----

#[test]
fn convergence_needs_equal_hashes() {
    let h = |n: &str, hash: &str, i: u64| NodeHash {
        node: n.into(),
        hash: Ok((hash.into(), i)),
    };
    assert!(convergence::check(&[h("n0", "ab", 9), h("n1", "ab", 9)]).is_valid());
    assert!(convergence::check(&[h("n0", "ab", 9), h("n1", "cd", 9)]).is_invalid());
    assert!(convergence::check(&[h("n0", "ab", 9), h("n1", "ab", 8)]).is_invalid());
    let down = NodeHash {
        node: "n2".into(),
        hash: Err("timeout".into()),
    };
    assert!(convergence::check(&[h("n0", "ab", 9), down]).is_invalid());
}

// ---- unavailability and history round trip ----

#[test]
fn unavailability_measures_the_gap() {
    let mut b = Builder::new();
    for t in [0u64, 100, 200, 2_700, 2_800] {
        b.deposit("register", 1000, 1 + t as i64, t, Some((t + 5, OK)));
    }
    let ops = history::pair(&b.finish());
    let w = FaultWindow {
        fault: "kill".into(),
        detail: "kill -9 leader".into(),
        start_ns: 210_000_000,
        end_ns: 2_000_000_000,
    };
    let r = unavailability::measure(&ops, &[w]);
    assert_eq!(r[0].longest_gap_ms, 2_495);
    assert_eq!(r[0].first_ok_after_ms, Some(2_495));
}

#[test]
fn history_round_trips_through_jsonl() -> anyhow::Result<()> {
    let mut b = Builder::new();
    b.deposit("register", 1000, 17, 0, Some((10, OK)));
    let op = b.invoke(20, "nemesis", "nemesis", Func::StartFault, |e| {
        e.fault = Some("kill".into())
    });
    b.complete(30, op, OK, |e| e.f = Func::StopFault);
    let events = b.finish();
    let dir = std::env::temp_dir().join(format!("tj-history-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("history.jsonl");
    let mut w = history::HistoryWriter::create(&path)?;
    for e in &events {
        w.write(e.clone())?;
    }
    w.flush()?;
    let back = history::read(&path)?;
    assert_eq!(back, events);
    assert_eq!(history::faults(&back).len(), 1);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
