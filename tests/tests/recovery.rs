//! Crash recovery at the worst moments: a follower aborted (debug-build
//! crash points, `TALLY_FAILPOINTS`, see `tally_node::failpoint`) halfway
//! through writing a snapshot, then in the middle of applying log entries,
//! then again in the middle of re-applying its own log at startup. Each
//! time it restarts from its data dir; at the end every node has the same
//! state hash, and every acknowledged deposit is in it exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tally_client::{Client, ClientConfig, Owner, ReadOptions, WriteResult, commands, reasons};
use tally_tests::{Cluster, node_status};

const ASSET: &str = "USDT";
const ACCOUNTS: u64 = 8;

async fn must_apply(c: &Client, cmd: tally_proto::v1::Command) -> u64 {
    match c.submit(cmd).await {
        WriteResult::Applied { applied_index, .. } => applied_index,
        other => panic!("expected applied, got {other:?}"),
    }
}

/// Deposits 1 USDT per command from 8 concurrent writers until `commands`
/// more were acknowledged; adds them to `acked`. Returns the highest
/// acknowledged index.
async fn deposit(c: &Client, commands_total: u64, acked: &Arc<AtomicU64>) -> u64 {
    let target = acked.load(Ordering::SeqCst) + commands_total;
    let top = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let (c, acked, top) = (c.clone(), acked.clone(), top.clone());
        writers.push(tokio::spawn(async move {
            let mut i = w;
            while acked.load(Ordering::SeqCst) < target {
                let account = 1 + i % ACCOUNTS;
                i += 8;
                // Until definite: an unknown outcome is retried with the same
                // command id, so it applies at most once.
                let command = commands::deposit(account, ASSET, "1");
                loop {
                    match c.submit(command.clone()).await {
                        WriteResult::Applied { applied_index, .. } => {
                            acked.fetch_add(1, Ordering::SeqCst);
                            top.fetch_max(applied_index, Ordering::SeqCst);
                            break;
                        }
                        WriteResult::Unknown { .. } => {}
                        WriteResult::Rejected { reason, .. } if reason == reasons::NOT_SENT => {}
                        other => panic!("deposit refused: {other:?}"),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    top.load(Ordering::SeqCst)
}

/// Waits until node `id` applied at least `index`.
async fn wait_applied(cluster: &Cluster, id: u64, index: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(st) = node_status(&cluster.addr(id)).await
            && st.applied_index >= index
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not apply {index}; log:\n{}",
            cluster.log_tail(id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn crash_points(spec: &str) -> Vec<(String, String)> {
    vec![("TALLY_FAILPOINTS".to_string(), spec.to_string())]
}

fn log_of(cluster: &Cluster, id: u64) -> String {
    std::fs::read_to_string(cluster.data_dir(id).join("tallyd.log")).unwrap_or_default()
}

/// The `to_replay` count of the node's last "recovering" log line.
fn last_replay_count(log: &str) -> u64 {
    log.lines()
        .rev()
        .find(|l| l.contains("recovering: re-applying"))
        .and_then(|l| l.split("to_replay=").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_killed_mid_snapshot_mid_apply_and_mid_log_replay_recovers_to_the_same_state_hash()
 {
    // No automatic snapshots: the test takes them.
    let mut cluster = Cluster::start(3, &["--snapshot-every-entries", "1000000"]).await;
    let c = Client::new(ClientConfig {
        timeout_ms: 15_000,
        ..ClientConfig::new(cluster.endpoints())
    })
    .expect("client");
    must_apply(&c, commands::create_asset(ASSET, 6)).await;
    for a in 1..=ACCOUNTS {
        must_apply(&c, commands::create_account(a)).await;
    }
    let acked = Arc::new(AtomicU64::new(0));
    deposit(&c, 600, &acked).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    let victim_addr = cluster.addr(victim);

    // 1. Mid-snapshot: the first snapshot is saved whole, the second is
    //    cut off halfway through its file.
    cluster.kill9(victim);
    cluster.set_env(victim, crash_points("snapshot-save-partial=2"));
    cluster.restart(victim).await;
    let top = deposit(&c, 300, &acked).await;
    wait_applied(&cluster, victim, top).await;
    let first = c.snapshot(&victim_addr).await.expect("first snapshot");
    assert!(first.snapshot_index >= top, "{first:?} below {top}");
    let top = deposit(&c, 300, &acked).await;
    wait_applied(&cluster, victim, top).await;
    assert!(
        c.snapshot(&victim_addr).await.is_err(),
        "the second snapshot should have crashed node {victim}"
    );
    assert!(
        cluster
            .wait_exit(victim, Duration::from_secs(20))
            .await
            .is_some(),
        "node {victim} did not abort at the crash point"
    );
    assert!(
        log_of(&cluster, victim).contains("crash point snapshot-save-partial reached"),
        "{}",
        cluster.log_tail(victim)
    );
    let partial = cluster.data_dir(victim).join("snapshot.bin.tmp");
    assert!(partial.exists(), "no half-written snapshot at {partial:?}");

    // 2. Mid-apply: back with the crash point for the 40th entry it
    //    applies, while the others moved on by 1,000 commands.
    deposit(&c, 1000, &acked).await;
    cluster.set_env(victim, crash_points("apply-abort-after-entries=40"));
    assert!(
        cluster.restart_expecting_exit(victim).await.is_some(),
        "node {victim} did not abort mid-apply; log:\n{}",
        cluster.log_tail(victim)
    );

    // 3. Mid-log-replay: it restarts with committed entries in its own log
    //    that its state machine never wrote (the batch the crash cut off
    //    and those after it) and aborts again, at the 10th it re-applies.
    let log = log_of(&cluster, victim);
    assert_eq!(
        log.matches("crash point apply-abort-after-entries reached")
            .count(),
        1,
        "{}",
        cluster.log_tail(victim)
    );
    cluster.set_env(victim, crash_points("apply-abort-after-entries=10"));
    assert!(
        cluster.restart_expecting_exit(victim).await.is_some(),
        "node {victim} did not abort mid-replay; log:\n{}",
        cluster.log_tail(victim)
    );
    let log = log_of(&cluster, victim);
    assert!(
        last_replay_count(&log) > 10,
        "the restart had no more than 10 entries of its own log to re-apply, so the crash \
         was not mid-replay:\n{}",
        cluster.log_tail(victim)
    );

    // 4. A clean restart recovers; writes go on; all three agree.
    cluster.set_env(victim, Vec::new());
    cluster.restart(victim).await;
    let top = deposit(&c, 200, &acked).await;
    wait_applied(&cluster, victim, top).await;
    let hash = cluster.wait_converged(Duration::from_secs(60)).await;
    let hashes = cluster.state_hashes(top).await;
    assert!(
        hashes.values().all(|(h, _)| *h == hash),
        "state hashes differ: {hashes:?}"
    );
    // Every acknowledged deposit is there exactly once (the writers retry
    // unknown outcomes with the same command id).
    let mut total = 0u64;
    for account in 1..=ACCOUNTS {
        let b = c
            .balance(Owner::Account(account), ASSET, ReadOptions::linearizable())
            .await
            .expect("balance")
            .balance
            .expect("a balance");
        let whole = b.available.split('.').next().unwrap_or("0");
        total += whole.parse::<u64>().expect("whole units");
    }
    assert_eq!(total, acked.load(Ordering::SeqCst));
}
