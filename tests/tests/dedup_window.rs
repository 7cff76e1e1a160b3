//! The idempotency window as replicated state: `SetDedupWindow` submitted
//! through the client to a real 3-node cluster changes every node's ledger
//! at the same log position (equal state hashes, also after a node restarts
//! from its data dir), retries inside the new window stay duplicates, and
//! the new window — not the 24 h default — decides when an id is forgotten.
//! `tallyctl ledger set-dedup-window` submits the same command.

use std::time::Duration;

use tally_client::{Client, ClientConfig, Owner, ReadOptions, WriteResult, commands};
use tally_proto::v1::{DedupWindowSetEvent, event};
use tally_tests::{Cluster, bin_path};

const ASSET: &str = "USDT";
/// Short enough for the test to outlive it, long enough that an immediate
/// retry on a loaded machine is still inside it.
const WINDOW_MS: u64 = 3_000;

fn client(cluster: &Cluster) -> Client {
    Client::new(ClientConfig {
        timeout_ms: 10_000,
        ..ClientConfig::new(cluster.endpoints())
    })
    .expect("client")
}

/// Submits `cmd`, which must apply; returns (applied index, duplicate, result).
async fn must_apply(
    c: &Client,
    cmd: tally_proto::v1::Command,
) -> (u64, bool, tally_proto::v1::CommandResult) {
    match c.submit(cmd).await {
        WriteResult::Applied {
            applied_index,
            result,
        } => (applied_index, result.duplicate, result),
        other => panic!("expected applied, got {other:?}"),
    }
}

/// Waits until every node has the same state hash at the same applied
/// index (nothing else is written meanwhile), at least `min_index`.
async fn same_hash_everywhere(cluster: &Cluster, min_index: u64) -> String {
    let converged = cluster.wait_converged(Duration::from_secs(20)).await;
    let hashes = cluster.state_hashes(min_index).await;
    assert_eq!(hashes.len(), cluster.nodes.len());
    for (id, (hash, index)) in &hashes {
        assert!(*index >= min_index, "node {id} at {index} < {min_index}");
        assert_eq!(*hash, converged, "node {id} diverged at index {index}");
    }
    converged
}

async fn available(c: &Client, account: u64) -> Option<String> {
    c.balance(Owner::Account(account), ASSET, ReadOptions::linearizable())
        .await
        .expect("balance")
        .balance
        .map(|b| b.available)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_dedup_window_replicates_to_every_node_and_decides_when_a_retry_applies_again() {
    let mut cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster);
    must_apply(&c, commands::create_asset(ASSET, 6)).await;
    must_apply(&c, commands::create_account(1)).await;
    let before = cluster.wait_converged(Duration::from_secs(20)).await;

    // The window change is a replicated write with its event.
    let (index, duplicate, result) = must_apply(&c, commands::set_dedup_window(WINDOW_MS)).await;
    assert!(!duplicate);
    assert_eq!(
        result
            .events
            .iter()
            .map(|e| e.kind.clone())
            .collect::<Vec<_>>(),
        [Some(event::Kind::DedupWindowSet(DedupWindowSetEvent {
            window_ms: WINDOW_MS
        }))]
    );
    let after = same_hash_everywhere(&cluster, index).await;
    assert_ne!(after, before, "the window is part of the state hash");

    // Out of range: rejected (and remembered), nothing else changes.
    match c.submit(commands::set_dedup_window(999)).await {
        WriteResult::Rejected { reason, .. } => assert_eq!(reason, "INVALID_DEDUP_WINDOW"),
        other => panic!("expected INVALID_DEDUP_WINDOW, got {other:?}"),
    }

    // A retry inside the window is a duplicate: applied once.
    let deposit = commands::deposit(1, ASSET, "1");
    let (first_index, duplicate, _) = must_apply(&c, deposit.clone()).await;
    assert!(!duplicate);
    let (_, duplicate, _) = must_apply(&c, deposit.clone()).await;
    assert!(duplicate, "a retry inside the window must be a duplicate");
    assert_eq!(available(&c, 1).await.as_deref(), Some("1.000000"));

    // A follower restarted from its data dir rebuilds the same window: its
    // state hash matches (a lost window would fall back to 24 h and differ).
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.kill9(follower);
    cluster.restart(follower).await;
    same_hash_everywhere(&cluster, first_index).await;

    // Past the new window (not 24 h) the id is forgotten: the retry applies.
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 500)).await;
    let (last, duplicate, _) = must_apply(&c, deposit).await;
    assert!(
        !duplicate,
        "a retry after the {WINDOW_MS} ms window must apply again"
    );
    assert_eq!(available(&c, 1).await.as_deref(), Some("2.000000"));
    let short = same_hash_everywhere(&cluster, last).await;

    // The operator's way: tallyctl submits the same replicated command.
    let out = std::process::Command::new(bin_path("tallyctl"))
        .args(["--endpoints", &cluster.endpoints().join(","), "--json"])
        .args(["ledger", "set-dedup-window", "--window-ms", "60000"])
        .env_remove("TALLY_ENDPOINTS")
        .output()
        .expect("run tallyctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tallyctl: {stdout} {:?}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(j["status"], "applied", "{j}");
    assert_eq!(j["events"][0]["type"], "dedup_window_set", "{j}");
    assert_eq!(j["events"][0]["window_ms"], 60_000, "{j}");
    let index = j["applied_index"].as_u64().expect("applied_index");
    assert_ne!(same_hash_everywhere(&cluster, index).await, short);
}
