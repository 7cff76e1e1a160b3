//! Cluster tests: three (or four) real `tallyd` processes on loopback, real
//! gRPC, real RocksDB. Failover under `kill -9`, restart from the data dir,
//! writes through any node, snapshot catch-up of a new learner, removal.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tally_client::{Client, ClientConfig, Owner, WriteResult, commands};
use tally_proto::v1::ledger_client::LedgerClient;
use tally_proto::v1::{GetBalanceRequest, ReadConsistency, SubmitRequest};
use tally_tests::{Cluster, node_status};
use tokio::sync::Mutex;

const ASSET: &str = "USDT";
const ACCOUNTS: u64 = 16;

fn client(cluster: &Cluster, timeout_ms: u64) -> Client {
    Client::new(ClientConfig {
        timeout_ms,
        ..ClientConfig::new(cluster.endpoints())
    })
    .expect("client")
}

async fn must_apply(c: &Client, cmd: tally_proto::v1::Command) -> u64 {
    match c.submit(cmd).await {
        WriteResult::Applied { applied_index, .. } => applied_index,
        other => panic!("expected applied, got {other:?}"),
    }
}

async fn setup_accounts(c: &Client) {
    must_apply(c, commands::create_asset(ASSET, 6)).await;
    for a in 1..=ACCOUNTS {
        must_apply(c, commands::create_account(a)).await;
    }
}

/// Balance (in whole units of 1, as deposited) of `account` read on one node at `min_index`.
async fn balance_on(addr: &str, account: u64, min_index: u64) -> String {
    let mut c = LedgerClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let read = tally_proto::v1::ReadOptions {
        consistency: ReadConsistency::AtLeastIndex as i32,
        min_index,
        ..Default::default()
    };
    let r = c
        .get_balance(GetBalanceRequest {
            owner: Some(Owner::Account(account).to_proto()),
            asset: ASSET.into(),
            read: Some(read),
        })
        .await
        .expect("balance")
        .into_inner();
    r.balance.expect("balance").available
}

/// Ledger of what writers saw: every command id with its deposit's account, and how it ended.
#[derive(Default)]
struct History {
    applied: Vec<(String, u64)>,
    unknown: Vec<(tally_proto::v1::Command, u64)>,
}

/// Runs `writers` tasks that each deposit 1 USDT per command until `stop` is set.
fn spawn_writers(
    c: &Client,
    writers: u64,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let c = c.clone();
            let stop = stop.clone();
            let history = history.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let account = 1 + (w * 7 + i) % ACCOUNTS;
                    i += 1;
                    let cmd = commands::deposit(account, ASSET, "1");
                    let id = cmd.command_id.clone();
                    match c.submit(cmd.clone()).await {
                        WriteResult::Applied { .. } => {
                            history.lock().await.applied.push((id, account))
                        }
                        WriteResult::Unknown { .. } => {
                            history.lock().await.unknown.push((cmd, account))
                        }
                        WriteResult::Rejected {
                            reason, message, ..
                        } => panic!("deposit rejected: {reason}: {message}"),
                    }
                }
            })
        })
        .collect()
}

/// Retries every unknown command with its own id until it is definite; returns all applied (id, account).
async fn resolve(c: &Client, history: History) -> Vec<(String, u64)> {
    let mut applied = history.applied;
    for (cmd, account) in history.unknown {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c.submit(cmd.clone()).await {
                WriteResult::Applied { .. } => {
                    applied.push((cmd.command_id.clone(), account));
                    break;
                }
                WriteResult::Rejected { reason, .. } => {
                    panic!("retry of {} rejected: {reason}", cmd.command_id)
                }
                WriteResult::Unknown { .. } => assert!(
                    Instant::now() < deadline,
                    "{} still unknown",
                    cmd.command_id
                ),
            }
        }
    }
    applied
}

fn expected_balances(applied: &[(String, u64)]) -> BTreeMap<u64, u64> {
    let ids: HashSet<&String> = applied.iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids.len(),
        applied.len(),
        "a command id was acknowledged twice as newly applied"
    );
    let mut per_account = BTreeMap::new();
    for (_, account) in applied {
        *per_account.entry(*account).or_insert(0u64) += 1;
    }
    per_account
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_leader_under_load_keeps_every_acknowledged_write_exactly_once_and_restarted_node_catches_up()
 {
    let mut cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster, 15_000);
    setup_accounts(&c).await;

    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(History::default()));
    let writers = spawn_writers(&c, 6, stop.clone(), history.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let old_leader = cluster.wait_leader(Duration::from_secs(5)).await;
    cluster.kill9(old_leader);
    let t_kill = Instant::now();
    let new_leader = loop {
        let l = cluster.wait_leader(Duration::from_secs(20)).await;
        if l != old_leader {
            break l;
        }
    };
    eprintln!(
        "leader {old_leader} killed; node {new_leader} leads after {:?}",
        t_kill.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let history = std::mem::take(&mut *history.lock().await);
    let acked_before_resolve = history.applied.len();
    assert!(
        acked_before_resolve > 50,
        "too few writes acknowledged: {acked_before_resolve}"
    );
    let applied = resolve(&c, history).await;
    let expected = expected_balances(&applied);

    // The killed node restarts from its data dir and catches up.
    cluster.restart(old_leader).await;
    let final_index = must_apply(&c, commands::create_account(1000)).await;
    cluster.wait_converged(Duration::from_secs(30)).await;
    for addr in cluster.endpoints() {
        for account in 1..=ACCOUNTS {
            let want = expected.get(&account).copied().unwrap_or(0);
            let got = balance_on(&addr, account, final_index).await;
            assert_eq!(got, format!("{want}.000000"), "account {account} on {addr}");
        }
    }
    let hashes = cluster.state_hashes(final_index).await;
    let distinct: HashSet<&String> = hashes.values().map(|(h, _)| h).collect();
    assert_eq!(distinct.len(), 1, "state hashes differ: {hashes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_through_any_node_are_applied_and_replicated() {
    let cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster, 10_000);
    setup_accounts(&c).await;
    let mut last = 0;
    for (i, addr) in cluster.endpoints().iter().enumerate() {
        // Raw gRPC to each node, leader or follower: followers forward to the leader.
        let mut raw = LedgerClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let cmd = commands::deposit(1, ASSET, format!("{}", i + 1));
        let r = raw
            .submit(SubmitRequest {
                command: Some(cmd),
                ..Default::default()
            })
            .await
            .expect("submit")
            .into_inner();
        let result = r.result.expect("result");
        assert!(result.applied, "write via {addr} not applied: {result:?}");
        last = last.max(r.applied_index);
    }
    for addr in cluster.endpoints() {
        assert_eq!(balance_on(&addr, 1, last).await, "6.000000", "on {addr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_learner_catches_up_through_snapshot_then_promote_and_remove_keep_cluster_writable() {
    let mut cluster = Cluster::start(
        3,
        &[
            "--snapshot-every-entries",
            "300",
            "--keep-entries-after-snapshot",
            "50",
        ],
    )
    .await;
    let c = client(&cluster, 15_000);
    setup_accounts(&c).await;

    // Several thousand commands, from concurrent writers so they span many Raft entries.
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(History::default()));
    let writers = spawn_writers(&c, 8, stop.clone(), history.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while history.lock().await.applied.len() < 3000 {
        assert!(Instant::now() < deadline, "too slow to write 3000 commands");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let st = node_status(&cluster.addr(leader)).await.expect("status");
    assert!(
        st.purged_index > 0,
        "leader has not purged its log; a learner would not need a snapshot: {st:?}"
    );

    // Add node 4 as a learner and promote it.
    let addr4 = cluster.add_node_process(4);
    cluster.wait_up(4).await;
    c.add_learner(4, addr4.clone()).await.expect("add learner");
    c.promote(4).await.expect("promote");
    let idx = must_apply(&c, commands::create_account(2000)).await;
    cluster.wait_converged(Duration::from_secs(60)).await;
    let st4 = node_status(&addr4).await.expect("status 4");
    assert!(
        st4.snapshot_index > 0,
        "node 4 did not install a snapshot: {st4:?}"
    );
    assert!(st4.voter, "node 4 is not a voter");
    for account in 1..=ACCOUNTS {
        assert_eq!(
            balance_on(&addr4, account, idx).await,
            balance_on(&cluster.addr(leader), account, idx).await,
            "account {account}"
        );
    }

    // Remove a follower while writes continue; every write keeps succeeding.
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(History::default()));
    let writers = spawn_writers(&c, 4, stop.clone(), history.clone());
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = c.remove(victim, false).await.expect("remove");
    assert!(
        m.voters.iter().all(|v| v.node_id != victim),
        "node {victim} still a voter: {m:?}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let history = std::mem::take(&mut *history.lock().await);
    assert!(
        history.unknown.is_empty(),
        "writes became unknown during remove: {}",
        history.unknown.len()
    );
    assert!(
        history.applied.len() > 20,
        "too few writes during remove: {}",
        history.applied.len()
    );
    cluster.forget(victim);
    let status = c.cluster_status().await.expect("cluster status");
    assert_eq!(status.voters.len(), 3, "{status:?}");
    cluster.wait_converged(Duration::from_secs(30)).await;
}
