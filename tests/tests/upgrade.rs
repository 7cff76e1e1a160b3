//! Upgrades between two real binaries: the previous release (0.1.0, built
//! from a git revision of this repository by `scripts/build-prev-release`)
//! and this build (0.2.0, cluster version 2), as separate `tallyd`
//! processes on loopback under continuous client load:
//!
//! * a rolling upgrade (one node rolled forward, back and forward again
//!   before finalizing) fails no request, the new feature (`AssertBalance`)
//!   is refused with `FEATURE_NOT_ACTIVE` until `cluster finalize`
//!   (refused itself while an old node is a member) and accepted after, a
//!   SIGTERM'd leader hands leadership over, and every node ends with the
//!   same state hash;
//! * a blue-green upgrade driven by `tallyctl cluster upgrade` fails no
//!   request, and its `--rollback` before the blue nodes are gone returns to
//!   the old binaries with no acknowledged write lost;
//! * a log spanning the `SetClusterVersion` entry, written by both
//!   binaries, replays on a fresh node (and installs as a snapshot) to the
//!   same state hash; the old binary refuses a finalized data dir, and a
//!   node whose binary does not support the active version stops rather
//!   than apply.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tally_client::{Client, ClientConfig, ReadOptions, WriteResult, commands};
use tally_tests::load::{Load, LoadSpec};
use tally_tests::{Cluster, bin_path, node_status, prev_release_tallyd};

const ASSET: &str = "USDT";
const OLD_RELEASE: &str = "0.1.0";
const NEW_RELEASE: &str = env!("CARGO_PKG_VERSION");
/// Load tasks and accounts per task.
const TASKS: u64 = 3;
const PER_TASK: u64 = 3;

fn client(endpoints: Vec<String>, timeout_ms: u64) -> Client {
    Client::new(ClientConfig {
        timeout_ms,
        ..ClientConfig::new(endpoints)
    })
    .expect("client")
}

async fn must_apply(c: &Client, cmd: tally_proto::v1::Command) -> u64 {
    match c.submit(cmd).await {
        WriteResult::Applied { applied_index, .. } => applied_index,
        other => panic!("expected applied, got {other:?}"),
    }
}

async fn setup(c: &Client) {
    must_apply(c, commands::create_asset(ASSET, 6)).await;
    for a in 1..=TASKS * PER_TASK {
        must_apply(c, commands::create_account(a)).await;
    }
}

/// The load of these tests: deposits and, every third write, a
/// linearizable read; every request must succeed.
const LOAD: LoadSpec = LoadSpec {
    asset: ASSET,
    tasks: TASKS,
    per_task: PER_TASK,
    read_every: 3,
    pause_ms: 5,
};

/// Every acknowledged deposit is on every running node, and nothing more.
async fn assert_balances_everywhere(cluster: &Cluster, c: &Client, expected: &BTreeMap<u64, u64>) {
    // A fresh account per call: its index is a write after every deposit.
    static BARRIER_ACCOUNT: AtomicU64 = AtomicU64::new(9_000);
    let barrier = BARRIER_ACCOUNT.fetch_add(1, Ordering::Relaxed);
    let index = must_apply(c, commands::create_account(barrier)).await;
    for p in cluster.nodes.values().filter(|p| p.child.is_some()) {
        let one = client(vec![p.addr.clone()], 10_000);
        for account in 1..=TASKS * PER_TASK {
            let want = expected.get(&account).copied().unwrap_or(0);
            let r = one
                .balance(account, ASSET, ReadOptions::at_least_index(index))
                .await
                .unwrap_or_else(|e| panic!("read account {account} on {}: {e}", p.addr));
            assert_eq!(
                r.balance.map(|b| b.available),
                Some(format!("{want}.000000")),
                "account {account} on node {}",
                p.id
            );
        }
    }
}

/// Waits until node `id` answers on `release`, knows a leader and has
/// applied what the leader had committed when the wait began.
async fn wait_back_on(cluster: &Cluster, id: u64, release: &str) {
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let target = node_status(&cluster.addr(leader))
        .await
        .map(|s| s.committed_index)
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(st) = node_status(&cluster.addr(id)).await
            && st.version == release
            && st.has_leader
            && st.applied_index >= target
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} not back on {release}; log:\n{}",
            cluster.log_tail(id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One rolling step: move leadership away from `id` if it leads, stop it
/// gracefully, start `bin` on the same data dir, wait until it caught up.
async fn roll(cluster: &mut Cluster, admin: &Client, id: u64, bin: Option<PathBuf>, release: &str) {
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    if leader == id {
        let to = cluster
            .nodes
            .keys()
            .copied()
            .find(|n| *n != id)
            .expect("another node");
        admin
            .transfer_leader(to)
            .await
            .unwrap_or_else(|e| panic!("transfer {id} -> {to}: {e}"));
    }
    assert!(
        cluster.stop_graceful(id, Duration::from_secs(20)),
        "node {id} did not stop on SIGTERM"
    );
    cluster.set_bin(id, bin);
    cluster.restart(id).await;
    wait_back_on(cluster, id, release).await;
    eprintln!("node {id} now runs {release}");
}

/// `tallyctl --endpoints <e> <args>`: (exit code, stdout, stderr).
fn tallyctl(endpoints: &[String], args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin_path("tallyctl"))
        .args(["--endpoints", &endpoints.join(",")])
        .args(args)
        .output()
        .expect("run tallyctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The gated command's verdict: `Ok(index)` applied, `Err(reason)` refused.
async fn assert_balance(c: &Client, account: u64, available: &str) -> Result<u64, String> {
    match c
        .submit(commands::assert_balance(account, ASSET, available, "0"))
        .await
    {
        WriteResult::Applied { applied_index, .. } => Ok(applied_index),
        WriteResult::Rejected { reason, .. } => Err(reason),
        other => panic!("assert_balance outcome unknown: {other:?}"),
    }
}

/// The balance of `account` as the cluster has it now.
async fn available(c: &Client, account: u64) -> String {
    c.balance(account, ASSET, ReadOptions::linearizable())
        .await
        .expect("balance")
        .balance
        .map(|b| b.available)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_upgrade_from_the_previous_release_under_load_fails_no_request_and_gates_the_new_feature_until_finalize()
 {
    let old = prev_release_tallyd();
    let mut cluster = Cluster::start_on(3, &[], old.clone()).await;
    let endpoints = cluster.endpoints();
    let c = client(endpoints.clone(), 20_000);
    let admin = client(endpoints.clone(), 30_000);
    setup(&c).await;
    for id in 1..=3 {
        let st = node_status(&cluster.addr(id)).await.expect("status");
        assert_eq!(
            (st.version.as_str(), st.max_cluster_version),
            (OLD_RELEASE, 0)
        );
    }
    let load = Load::start(&c, LOAD);
    load.tally.wait_progress(20, "on the old release").await;

    // Followers first, the leader last; node `first` is rolled forward,
    // back to the old binary (possible before finalizing) and forward again.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let mut order: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    order.push(leader);
    let first = order[0];
    roll(&mut cluster, &admin, first, None, NEW_RELEASE).await;
    load.tally.wait_progress(20, "with one new node").await;
    // A mixed cluster: the new node refuses the new feature at its edge.
    let on_new = client(vec![cluster.addr(first)], 10_000);
    assert_eq!(
        assert_balance(&on_new, 1, "0").await,
        Err("FEATURE_NOT_ACTIVE".to_string())
    );
    // The plan for the rest: the rolled node is skipped, the leader goes last.
    let (code, out, err) = tallyctl(
        &endpoints,
        &["cluster", "upgrade", "--plan", "--release", NEW_RELEASE],
    );
    assert_eq!(code, 0, "{err}");
    let steps: Vec<&str> = out.lines().collect();
    assert!(
        steps[1].contains(&format!("node {first} ")) && steps[1].ends_with("skip"),
        "{out}"
    );
    assert!(
        steps[3].contains(&format!("node {leader} ")) && steps[3].contains("move leadership"),
        "{out}"
    );
    assert!(steps[4].contains("finalize"), "{out}");
    // Finalizing is refused while old binaries are members.
    let (code, _, err) = tallyctl(&endpoints, &["cluster", "finalize"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("VERSION_NOT_SUPPORTED") || err.contains("not supported by every member"),
        "{err}"
    );
    roll(&mut cluster, &admin, first, Some(old.clone()), OLD_RELEASE).await;
    load.tally.wait_progress(20, "after rolling back").await;
    for id in order.iter().copied() {
        roll(&mut cluster, &admin, id, None, NEW_RELEASE).await;
        load.tally.wait_progress(20, "during the roll").await;
    }

    // Every node on the new release, still at cluster version 1.
    assert_eq!(
        assert_balance(&c, 1, "0").await,
        Err("FEATURE_NOT_ACTIVE".to_string())
    );
    let (code, _, err) = tallyctl(&endpoints, &["assert-balance", "1", ASSET, "0"]);
    assert!(
        code == 2 && err.contains("FEATURE_NOT_ACTIVE"),
        "{code} {err}"
    );
    let (code, out, err) = tallyctl(&endpoints, &["cluster", "status"]);
    assert!(
        out.contains("cluster version 1 active; every member supports up to 2: ready to finalize"),
        "{code} {out} {err}"
    );
    let (code, out, err) = tallyctl(&endpoints, &["cluster", "finalize"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("cluster version raised 1 -> 2"), "{out}");
    let (code, out, _) = tallyctl(&endpoints, &["cluster", "finalize"]);
    assert!(code == 0 && out.contains("already active"), "{out}");
    load.tally.wait_progress(20, "after finalize").await;

    // Graceful stop of the (new) leader without a transfer first: it hands
    // leadership over itself; the load sees no failure.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let started = Instant::now();
    assert!(
        cluster.stop_graceful(leader, Duration::from_secs(20)),
        "the leader did not stop on SIGTERM"
    );
    eprintln!("leader {leader} stopped in {:?}", started.elapsed());
    let log = std::fs::read_to_string(cluster.nodes[&leader].data_dir.join("tallyd.log"))
        .unwrap_or_default();
    assert!(log.contains("leadership handed over"), "{log}");
    load.tally
        .wait_progress(20, "after the leader stopped")
        .await;
    cluster.restart(leader).await;
    wait_back_on(&cluster, leader, NEW_RELEASE).await;

    let tally = load.finish().await;
    let expected = tally.applied();
    let balance = available(&c, 1).await;
    assert!(assert_balance(&c, 1, &balance).await.is_ok());
    assert_eq!(
        assert_balance(&c, 1, "0.000001").await,
        Err("BALANCE_MISMATCH".to_string())
    );
    let (code, out, err) = tallyctl(&endpoints, &["assert-balance", "1", ASSET, &balance]);
    assert!(
        code == 0 && out.starts_with("applied"),
        "{code} {out} {err}"
    );
    assert_balances_everywhere(&cluster, &c, &expected).await;
    cluster.wait_converged(Duration::from_secs(30)).await;
    for id in 1..=3 {
        let st = node_status(&cluster.addr(id)).await.expect("status");
        assert_eq!(
            (
                st.version.as_str(),
                st.cluster_version,
                st.max_cluster_version
            ),
            (NEW_RELEASE, 2, 2)
        );
    }
}

/// Starts green nodes 4..=6 on this build, as processes (not yet members).
async fn start_green(cluster: &mut Cluster) -> Vec<String> {
    cluster.default_bin = None;
    let mut green = Vec::new();
    for id in 4..=6 {
        let addr = cluster.add_node_process(id);
        cluster.wait_up(id).await;
        green.push(format!("{id}={addr}"));
    }
    green
}

fn green_args<'a>(green: &'a [String], base: &[&'a str]) -> Vec<&'a str> {
    let mut args = base.to_vec();
    for g in green {
        args.push("--green");
        args.push(g);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blue_green_upgrade_with_tallyctl_under_load_fails_no_request_and_rollback_before_finalize_returns_to_the_old_binaries()
 {
    let old = prev_release_tallyd();
    let mut cluster = Cluster::start_on(3, &[], old).await;
    let blue = cluster.endpoints();
    let c = client(blue.clone(), 20_000);
    setup(&c).await;
    let green = start_green(&mut cluster).await;
    let all = cluster.endpoints();
    // The load knows the blue nodes (followers forward to a green leader).
    let load = Load::start(&c, LOAD);
    load.tally.wait_progress(20, "on blue").await;

    let (code, out, err) = tallyctl(
        &blue,
        &green_args(
            &green,
            &["cluster", "upgrade", "--strategy", "blue-green", "--plan"],
        ),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("blue-green upgrade plan") && out.contains("remove blue node 1"),
        "{out}"
    );
    // Half way: a canary (node 4) joins and is watched, nodes 5 and 6
    // join, a green node leads; then roll back while the blue nodes are
    // still members.
    let (code, out, err) = tallyctl(
        &blue,
        &[
            "cluster",
            "upgrade",
            "--strategy",
            "canary",
            "--green",
            &green[0],
            "--apply",
            "--observe-s",
            "3",
        ],
    );
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("healthy; continue the upgrade"), "{out}");
    let admin = client(all.clone(), 60_000);
    for id in 5..=6 {
        admin
            .add_learner(id, cluster.addr(id))
            .await
            .expect("add learner");
        admin.promote(id).await.expect("promote");
    }
    admin.transfer_leader(4).await.expect("lead on green");
    load.tally.wait_progress(20, "led by green").await;
    let (code, out, err) = tallyctl(
        &blue,
        &green_args(
            &green,
            &[
                "cluster",
                "upgrade",
                "--strategy",
                "blue-green",
                "--rollback",
            ],
        ),
    );
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("rolled back"), "{out}");
    load.tally.wait_progress(20, "back on blue").await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    assert!(leader <= 3, "blue leads again");
    let st = node_status(&cluster.addr(leader)).await.expect("status");
    assert_eq!(st.version, OLD_RELEASE);
    // Stop the removed green nodes, wipe them, start them afresh for the real run.
    for id in 4..=6 {
        cluster.forget(id);
    }
    let tally_rollback = load.finish().await;
    assert_balances_everywhere(&cluster, &c, &tally_rollback.applied()).await;
    cluster.wait_converged(Duration::from_secs(30)).await;

    // The whole blue-green upgrade, with fresh node ids 7..=9, under load.
    cluster.default_bin = None;
    let mut green = Vec::new();
    for id in 7..=9 {
        let addr = cluster.add_node_process(id);
        cluster.wait_up(id).await;
        green.push(format!("{id}={addr}"));
    }
    let c = client(cluster.endpoints(), 20_000);
    let load = Load::start(&c, LOAD);
    load.tally.wait_progress(20, "before blue-green").await;
    let (code, out, err) = tallyctl(
        &blue,
        &green_args(
            &green,
            &[
                "cluster",
                "upgrade",
                "--strategy",
                "blue-green",
                "--apply",
                "--finalize",
            ],
        ),
    );
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        out.contains("cluster version raised 1 -> 2"),
        "{out}\n{err}"
    );
    load.tally.wait_progress(20, "on green").await;
    for id in 1..=3 {
        cluster.forget(id);
    }
    let tally = load.finish().await;
    let mut expected = tally_rollback.applied();
    for (account, n) in tally.applied() {
        *expected.entry(account).or_insert(0) += n;
    }
    let c = client(cluster.endpoints(), 20_000);
    assert!(assert_balance(&c, 2, &available(&c, 2).await).await.is_ok());
    assert_balances_everywhere(&cluster, &c, &expected).await;
    cluster.wait_converged(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_spanning_the_version_change_replays_to_the_same_hash_old_binaries_refuse_finalized_data_and_unsupported_nodes_stop()
 {
    let old = prev_release_tallyd();
    let mut cluster = Cluster::start_on(3, &[], old.clone()).await;
    let endpoints = cluster.endpoints();
    let c = client(endpoints.clone(), 20_000);
    let admin = client(endpoints.clone(), 30_000);
    setup(&c).await;
    for i in 0..20 {
        must_apply(&c, commands::deposit(1 + i % 3, ASSET, "2.5")).await;
    }
    for id in 1..=3 {
        roll(&mut cluster, &admin, id, None, NEW_RELEASE).await;
        must_apply(&c, commands::deposit(id, ASSET, "1")).await;
    }
    let finalized = admin.set_cluster_version(0, false).await.expect("finalize");
    assert_eq!(
        (finalized.previous_version, finalized.active_version),
        (1, 2)
    );
    let version_index = finalized.log_index;
    let balance = available(&c, 1).await;
    assert!(assert_balance(&c, 1, &balance).await.is_ok());
    must_apply(&c, commands::deposit(2, ASSET, "3")).await;

    // A fresh node replays the whole log: entries of the old leader, the
    // SetClusterVersion entry, and gated commands after it.
    cluster.default_bin = None;
    let addr4 = cluster.add_node_process(4);
    cluster.wait_up(4).await;
    admin.add_learner(4, addr4).await.expect("add learner 4");
    cluster.wait_converged(Duration::from_secs(30)).await;
    let st4 = node_status(&cluster.addr(4)).await.expect("node 4");
    assert_eq!(st4.cluster_version, 2);

    // A node whose binary does not support version 2 stops at that entry.
    cluster
        .node_args
        .insert(5, vec!["--max-cluster-version".into(), "1".into()]);
    let addr5 = cluster.add_node_process(5);
    cluster.wait_up(5).await;
    admin.add_learner(5, addr5).await.expect("add learner 5");
    let code = cluster.wait_exit(5, Duration::from_secs(30)).await;
    assert_eq!(code, Some(78), "log:\n{}", cluster.log_tail(5));
    let log5 = cluster.log_tail(5);
    assert!(
        log5.contains(&format!("log entry {version_index}"))
            && log5.contains("supports cluster versions up to 1")
            && log5.contains("stopping without applying it"),
        "{log5}"
    );
    // Restarted, it stops again rather than apply past its version.
    assert_eq!(cluster.restart_expecting_exit(5).await, Some(78));
    admin.remove(5, false).await.expect("remove 5");

    // The previous release on a finalized data dir refuses to start.
    assert!(cluster.stop_graceful(3, Duration::from_secs(20)));
    cluster.set_bin(3, Some(old));
    let code = cluster.restart_expecting_exit(3).await;
    assert_ne!(code, Some(0));
    let log3 = cluster.log_tail(3);
    assert!(
        log3.contains("unsupported record format version 7"),
        "{log3}"
    );
    cluster.set_bin(3, None);
    cluster.restart(3).await;

    // The snapshot of a finalized node installs on a fresh node.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let leader_addr = cluster.addr(leader);
    admin.snapshot(&leader_addr).await.expect("snapshot");
    admin.compact(&leader_addr).await.expect("compact");
    let addr6 = cluster.add_node_process(6);
    cluster.wait_up(6).await;
    admin.add_learner(6, addr6).await.expect("add learner 6");
    must_apply(&c, commands::deposit(3, ASSET, "1")).await;
    cluster.wait_converged(Duration::from_secs(30)).await;
    let st6 = node_status(&cluster.addr(6)).await.expect("node 6");
    assert_eq!(st6.cluster_version, 2);
    let log6 =
        std::fs::read_to_string(cluster.nodes[&6].data_dir.join("tallyd.log")).unwrap_or_default();
    assert!(log6.contains("installed snapshot"), "{log6}");
}

/// A cluster initialized on this release has nothing to roll back to: it
/// starts at the highest cluster version its members support (2), so the
/// gated command applies without a finalize; a cluster whose initial
/// members include one that supports only version 1 stays at 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_cluster_starts_at_the_highest_version_all_its_initial_members_support() {
    let cluster = Cluster::start(3, &[]).await;
    let c = client(cluster.endpoints(), 20_000);
    setup(&c).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut versions = Vec::new();
        for id in 1..=3 {
            versions.push(
                node_status(&cluster.addr(id))
                    .await
                    .ok()
                    .map(|s| s.cluster_version),
            );
        }
        if versions.iter().all(|v| *v == Some(2)) {
            break;
        }
        assert!(Instant::now() < deadline, "cluster versions: {versions:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    must_apply(&c, commands::deposit(1, ASSET, "5")).await;
    assert!(assert_balance(&c, 1, "5").await.is_ok());
    assert_eq!(
        assert_balance(&c, 1, "4").await,
        Err("BALANCE_MISMATCH".to_string())
    );

    let mut node_args = BTreeMap::new();
    node_args.insert(3, vec!["--max-cluster-version".into(), "1".into()]);
    let mixed = Cluster::start_with(3, &[], BTreeMap::new(), node_args).await;
    let c = client(mixed.endpoints(), 20_000);
    setup(&c).await;
    let log1 =
        || std::fs::read_to_string(mixed.nodes[&1].data_dir.join("tallyd.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(40);
    while !log1().contains("cluster version left as is") {
        assert!(Instant::now() < deadline, "{}", mixed.log_tail(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(log1().contains("supports up to 1"), "{}", log1());
    must_apply(&c, commands::deposit(1, ASSET, "5")).await;
    assert_eq!(
        assert_balance(&c, 1, "5").await,
        Err("FEATURE_NOT_ACTIVE".to_string()),
        "node 3 supports only version 1: the cluster stays there"
    );
    for id in 1..=3 {
        let st = node_status(&mixed.addr(id)).await.expect("status");
        assert_eq!(st.cluster_version, 1, "node {id}");
    }
}
