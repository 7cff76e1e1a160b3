//! Reads at every consistency level, and safe cluster operations, against
//! real `tallyd` processes on loopback:
//!
//! * linearizable reads served by a follower always see a write the leader
//!   acknowledged before the read began;
//! * bounded reads: a follower cut off from its leader refuses once its
//!   last leader contact is older than the bound (`STALE_REPLICA`), and
//!   serves within a looser bound; at-least-index reads wait for the index,
//!   and give up with `INDEX_NOT_REACHED` after 5 s;
//! * leadership moved back and forth under load fails no client request and
//!   loses no acknowledged write;
//! * membership safety: one change at a time, node ids never reused, never
//!   below one voter or (without force) below a reachable majority, and
//!   `replace` keeps the cluster writable under load; removing the leader
//!   hands leadership over first, and the new leader does the removal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tally_client::{
    Client, ClientConfig, ClientError, Owner, ReadOptions, ReadPolicy, WriteResult, commands,
    reasons,
};
use tally_proto::v1::ledger_client::LedgerClient;
use tally_proto::v1::{GetBalanceRequest, GetBalanceResponse, ReadConsistency};
use tally_tests::load::{Load, LoadSpec, Tally};
use tally_tests::{Cluster, node_status};
use tonic::Code;
use tonic::transport::Channel;

const ASSET: &str = "USDT";

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

async fn setup(c: &Client, accounts: u64) -> u64 {
    must_apply(c, commands::create_asset(ASSET, 6)).await;
    let mut index = 0;
    for a in 1..=accounts {
        index = must_apply(c, commands::create_account(a)).await;
    }
    index
}

async fn raw(addr: &str) -> LedgerClient<Channel> {
    LedgerClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

fn read_options(
    consistency: ReadConsistency,
    min_index: u64,
    max_lag_entries: u64,
    max_lag_ms: u64,
) -> tally_proto::v1::ReadOptions {
    tally_proto::v1::ReadOptions {
        consistency: consistency as i32,
        min_index,
        max_lag_entries,
        max_lag_ms,
    }
}

/// One balance read on one node at the given options.
async fn balance_at(
    ledger: &mut LedgerClient<Channel>,
    account: u64,
    read: tally_proto::v1::ReadOptions,
) -> Result<GetBalanceResponse, tonic::Status> {
    let request = GetBalanceRequest {
        owner: Some(Owner::Account(account).to_proto()),
        asset: ASSET.into(),
        read: Some(read),
    };
    ledger
        .get_balance(request)
        .await
        .map(tonic::Response::into_inner)
}

fn available(r: &GetBalanceResponse) -> String {
    r.balance
        .as_ref()
        .map(|b| b.available.clone())
        .unwrap_or_default()
}

fn reason_of(status: &tonic::Status) -> String {
    status
        .metadata()
        .get(tally_proto::REASON_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn units(n: u64) -> String {
    format!("{n}.000000")
}

/// Sends SIGSTOP/SIGCONT to a node's process.
fn signal_node(cluster: &Cluster, id: u64, sig: &str) {
    let pid = cluster.nodes[&id]
        .child
        .as_ref()
        .expect("running node")
        .id();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Resumes stopped node processes when the test ends, even by a panic (the
/// harness kills them on drop, but a process stopped mid-write is better
/// resumed first).
struct ContOnDrop(Vec<u32>);
impl ContOnDrop {
    fn new(cluster: &Cluster, ids: &[u64]) -> ContOnDrop {
        ContOnDrop(
            ids.iter()
                .filter_map(|id| cluster.nodes[id].child.as_ref().map(|c| c.id()))
                .collect(),
        )
    }
}
impl Drop for ContOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    }
}

/// `tasks` client tasks depositing 1 into their own accounts in turn and,
/// every fifth write, reading one back linearizably (see `tally_tests::load`).
fn start_load(c: &Client, tasks: u64, per_task: u64) -> Load {
    Load::start(
        c,
        LoadSpec {
            asset: ASSET,
            tasks,
            per_task,
            read_every: 5,
            pause_ms: 0,
        },
    )
}

/// Every acknowledged deposit is in every running node's state, and nothing more.
async fn assert_balances_everywhere(
    cluster: &Cluster,
    c: &Client,
    expected: &BTreeMap<u64, u64>,
    accounts: u64,
) {
    let index = must_apply(c, commands::create_account(9_999)).await;
    for addr in cluster
        .nodes
        .values()
        .filter(|p| p.child.is_some())
        .map(|p| p.addr.clone())
    {
        let mut ledger = raw(&addr).await;
        for account in 1..=accounts {
            let want = expected.get(&account).copied().unwrap_or(0);
            let r = balance_at(
                &mut ledger,
                account,
                read_options(ReadConsistency::AtLeastIndex, index, 0, 0),
            )
            .await
            .unwrap_or_else(|e| panic!("read account {account} on {addr}: {e}"));
            assert_eq!(available(&r), units(want), "account {account} on {addr}");
        }
    }
}

/// Load tasks of [`three_nodes_under_load`], and accounts per task.
const LOAD_TASKS: u64 = 4;
const LOAD_PER_TASK: u64 = 3;

/// A 3-node cluster, a client, and [`LOAD_TASKS`] load tasks that have been
/// writing for 500 ms.
async fn three_nodes_under_load() -> (Cluster, Client, Load) {
    let cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster, 15_000);
    setup(&c, LOAD_TASKS * LOAD_PER_TASK).await;
    let load = start_load(&c, LOAD_TASKS, LOAD_PER_TASK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    (cluster, c, load)
}

/// Lets `load` acknowledge `more` writes (within 10 s, else the cluster is
/// "not writable `after`"), stops it and returns what it saw.
async fn more_writes_then_finish(load: Load, more: u64, after: &str) -> Arc<Tally> {
    let acknowledged = load.tally.acknowledged();
    let deadline = Instant::now() + Duration::from_secs(10);
    while load.tally.acknowledged() < acknowledged + more {
        assert!(Instant::now() < deadline, "cluster not writable {after}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tally = load.finish().await;
    eprintln!(
        "{} writes acknowledged; slowest write {} ms",
        tally.acknowledged(),
        tally.max_write_ms.load(Ordering::Relaxed)
    );
    tally
}

/// After a membership change: 50 more writes, then every acknowledged
/// deposit on every running node, and the nodes converge.
async fn keep_writing_then_check_everything(
    cluster: &Cluster,
    c: &Client,
    load: Load,
    accounts: u64,
) {
    let tally = more_writes_then_finish(load, 50, "after the membership change").await;
    assert_balances_everywhere(cluster, c, &tally.applied(), accounts).await;
    cluster.wait_converged(Duration::from_secs(30)).await;
}

fn expect_refusal<T: std::fmt::Debug>(result: Result<T, ClientError>, reason: &str) -> ClientError {
    match result {
        Err(e) if e.reason() == reason => e,
        other => panic!("expected a refusal with {reason}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linearizable_read_on_a_follower_always_sees_the_write_the_leader_just_acknowledged() {
    const PROBES: u64 = 5;
    const ITERATIONS: u64 = 60;
    let cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster, 10_000);
    setup(&c, 4 + PROBES).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let followers: Vec<(u64, String)> = cluster
        .nodes
        .values()
        .filter(|p| p.id != leader)
        .map(|p| (p.id, p.addr.clone()))
        .collect();

    // Two background writers keep the log moving on other accounts (1..=4).
    let background = start_load(&c, 2, 2);

    // Each probe owns one account: it writes through the client (to the
    // leader), and once the write is acknowledged reads the account back
    // LINEARIZABLE from a follower, alternating between the two. The read
    // must come from that follower and include the write: 5 x 60 = 300 checks.
    let started = Instant::now();
    let probes: Vec<_> = (0..PROBES)
        .map(|p| {
            let (c, followers) = (c.clone(), followers.clone());
            tokio::spawn(async move {
                let account = 5 + p;
                let mut ledgers = Vec::new();
                for (id, addr) in &followers {
                    ledgers.push((*id, raw(addr).await));
                }
                let (mut write_time, mut read_time) = (Duration::ZERO, Duration::ZERO);
                for i in 1..=ITERATIONS {
                    let t = Instant::now();
                    let index = must_apply(&c, commands::deposit(account, ASSET, "1")).await;
                    write_time += t.elapsed();
                    let (id, ledger) = &mut ledgers[((i + p) % 2) as usize];
                    let t = Instant::now();
                    let r = balance_at(ledger, account, read_options(ReadConsistency::Linearizable, 0, 0, 0))
                        .await
                        .unwrap_or_else(|e| panic!("account {account}, write {i}: linearizable read on follower {id}: {e:?}"));
                    read_time += t.elapsed();
                    assert_eq!(r.served_by, *id, "account {account}, write {i}: served by another node");
                    assert!(r.applied_index >= index, "account {account}, write {i}: served at {} < write index {index}", r.applied_index);
                    assert_eq!(available(&r), units(i), "account {account}, write {i}: follower {id} missed an acknowledged write");
                }
                (write_time, read_time)
            })
        })
        .collect();
    let (mut write_time, mut read_time) = (Duration::ZERO, Duration::ZERO);
    for probe in probes {
        let (w, r) = probe.await.expect("probe");
        write_time += w;
        read_time += r;
    }
    let checks = (PROBES * ITERATIONS) as u32;
    eprintln!(
        "{checks} write -> follower linearizable read checks in {:?}: mean write {:?}, mean follower read {:?}",
        started.elapsed(),
        write_time / checks,
        read_time / checks
    );
    let tally = background.finish().await;
    assert!(
        tally.acknowledged() > 20,
        "background writers barely ran: {}",
        tally.acknowledged()
    );

    // The client's follower-preferred policy sends linearizable reads to followers too.
    let config = ClientConfig {
        read_policy: ReadPolicy::FollowersPreferred,
        ..ClientConfig::new(cluster.endpoints())
    };
    let reader = Client::new(config).expect("client");
    for _ in 0..10 {
        let r = reader
            .balance(5, ASSET, ReadOptions::linearizable())
            .await
            .expect("read");
        assert_ne!(
            r.served_by, leader,
            "followers preferred, yet the leader served"
        );
        assert_eq!(available(&r), units(ITERATIONS));
    }
    // The nearest policy measures every node, then serves linearizable reads
    // from whichever answers fastest; the guarantee is the same.
    let config = ClientConfig {
        read_policy: ReadPolicy::Nearest,
        ..ClientConfig::new(cluster.endpoints())
    };
    let nearest = Client::new(config).expect("client");
    let mut served_by = std::collections::BTreeSet::new();
    for n in 1..=20 {
        let index = must_apply(&nearest, commands::deposit(6, ASSET, "1")).await;
        let r = nearest
            .balance(6, ASSET, ReadOptions::linearizable())
            .await
            .expect("read");
        assert!(r.applied_index >= index);
        assert_eq!(available(&r), units(ITERATIONS + n));
        served_by.insert(r.served_by);
    }
    assert_eq!(
        served_by.len(),
        3,
        "the nearest policy should have measured every node: {served_by:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bounded_read_on_a_cut_off_follower_is_refused_outside_its_bound_and_served_inside() {
    let cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster, 10_000);
    setup(&c, 1).await;
    let index = must_apply(&c, commands::deposit(1, ASSET, "7")).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let follower = cluster
        .nodes
        .keys()
        .copied()
        .find(|id| *id != leader)
        .expect("follower");
    let other = cluster
        .nodes
        .keys()
        .copied()
        .find(|id| *id != leader && *id != follower)
        .expect("other");
    let mut f = raw(&cluster.addr(follower)).await;

    // Connected: within a tight bound, it serves locally.
    let r = balance_at(
        &mut f,
        1,
        read_options(ReadConsistency::AtLeastIndex, index, 0, 0),
    )
    .await
    .expect("caught up");
    assert_eq!(available(&r), units(7));
    let r = balance_at(
        &mut f,
        1,
        read_options(ReadConsistency::Bounded, 0, 10, 1_000),
    )
    .await
    .expect("bounded read while connected");
    assert_eq!((r.served_by, available(&r)), (follower, units(7)));

    // The leader-only policy sends even bounded reads to the leader.
    let leader_only = Client::new(ClientConfig {
        read_policy: ReadPolicy::LeaderOnly,
        ..ClientConfig::new(cluster.endpoints())
    })
    .expect("client");
    for _ in 0..5 {
        let r = leader_only
            .balance(1, ASSET, ReadOptions::bounded(0, 1_000))
            .await
            .expect("read");
        assert_eq!(r.served_by, leader);
    }

    // Cut it off: stop the leader and the other follower (no new leader can
    // be elected without them), so its last leader contact only ages.
    let _resume = ContOnDrop::new(&cluster, &[leader, other]);
    signal_node(&cluster, other, "-STOP");
    signal_node(&cluster, leader, "-STOP");
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // Outside a 500 ms bound: refused, definitely, with the reason.
    let e = balance_at(&mut f, 1, read_options(ReadConsistency::Bounded, 0, 0, 500))
        .await
        .expect_err("stale follower served");
    assert_eq!(
        (e.code(), reason_of(&e).as_str()),
        (Code::FailedPrecondition, reasons::STALE_REPLICA),
        "{e:?}"
    );
    // Within a one-minute bound: served from its local state, which has the write.
    let r = balance_at(
        &mut f,
        1,
        read_options(ReadConsistency::Bounded, 0, 0, 60_000),
    )
    .await
    .expect("within bound");
    assert_eq!((r.served_by, available(&r)), (follower, units(7)));
    assert!(r.applied_index >= index);
    // Linearizable cannot be served without a leader, and says so.
    let e = balance_at(
        &mut f,
        1,
        read_options(ReadConsistency::Linearizable, 0, 0, 0),
    )
    .await
    .expect_err("no leader to confirm");
    assert!(
        matches!(e.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{e:?}"
    );
    // The client, addressed at this node alone, reports the refusal as such.
    let only_f = Client::new(ClientConfig {
        timeout_ms: 2_000,
        ..ClientConfig::new([cluster.addr(follower)])
    })
    .expect("client");
    let e = only_f.balance(1, ASSET, ReadOptions::bounded(0, 500)).await;
    expect_refusal(e, reasons::STALE_REPLICA);
    eprintln!("cut off for {:?}", cut_at.elapsed());

    // Reconnect: it hears from a leader again and serves tight bounds.
    signal_node(&cluster, leader, "-CONT");
    signal_node(&cluster, other, "-CONT");
    cluster.wait_leader(Duration::from_secs(20)).await;
    let index = must_apply(&c, commands::deposit(1, ASSET, "1")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match balance_at(&mut f, 1, read_options(ReadConsistency::Bounded, 0, 0, 500)).await {
            Ok(r) if r.applied_index >= index => {
                assert_eq!(available(&r), units(8));
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "follower did not recover: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_least_index_read_waits_for_its_index_and_gives_up_with_index_not_reached_after_five_seconds()
 {
    let cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster, 10_000);
    setup(&c, 1).await;
    let index = must_apply(&c, commands::deposit(1, ASSET, "3")).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let follower = cluster
        .nodes
        .keys()
        .copied()
        .find(|id| *id != leader)
        .expect("follower");
    let mut f = raw(&cluster.addr(follower)).await;

    // A reachable index: served once applied, at or above it.
    let r = balance_at(
        &mut f,
        1,
        read_options(ReadConsistency::AtLeastIndex, index, 0, 0),
    )
    .await
    .expect("reachable index");
    assert_eq!((r.served_by, available(&r)), (follower, units(3)));
    assert!(r.applied_index >= index);

    // The next index: the read waits for the write that produces it.
    let next = r.applied_index + 1;
    let mut waiting = raw(&cluster.addr(follower)).await;
    let read = tokio::spawn(async move {
        let started = Instant::now();
        let r = balance_at(
            &mut waiting,
            1,
            read_options(ReadConsistency::AtLeastIndex, next, 0, 0),
        )
        .await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !read.is_finished(),
        "read at a future index returned before the write"
    );
    must_apply(&c, commands::deposit(1, ASSET, "1")).await;
    let (r, waited) = read.await.expect("read task");
    let r = r.expect("served after the write");
    assert!(
        r.applied_index >= next && waited >= Duration::from_millis(250),
        "{r:?} after {waited:?}"
    );
    assert_eq!(available(&r), units(4));

    // An index far in the future: refused after the 5 s wait, with the reason.
    let started = Instant::now();
    let e = balance_at(
        &mut f,
        1,
        read_options(ReadConsistency::AtLeastIndex, index + 1_000_000, 0, 0),
    )
    .await
    .expect_err("future index served");
    let waited = started.elapsed();
    assert_eq!(
        (e.code(), reason_of(&e).as_str()),
        (Code::DeadlineExceeded, reasons::INDEX_NOT_REACHED),
        "{e:?}"
    );
    assert!(
        waited >= Duration::from_millis(4_500) && waited < Duration::from_secs(8),
        "gave up after {waited:?}"
    );

    // Session reads through the client: read-your-writes from any node.
    let session = Client::new(ClientConfig {
        read_policy: ReadPolicy::FollowersPreferred,
        ..ClientConfig::new(cluster.endpoints())
    })
    .expect("client");
    for n in 1..=20u64 {
        let index = must_apply(&session, commands::deposit(1, ASSET, "1")).await;
        assert!(session.session_index() >= index);
        let r = session
            .balance(1, ASSET, ReadOptions::session())
            .await
            .expect("session read");
        assert!(r.applied_index >= index);
        assert_eq!(available(&r), units(4 + n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moved_back_and_forth_under_load_fails_no_request_and_loses_no_acknowledged_write()
 {
    let cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster, 15_000);
    const TASKS: u64 = 4;
    const PER_TASK: u64 = 3;
    setup(&c, TASKS * PER_TASK).await;
    let load = start_load(&c, TASKS, PER_TASK);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let admin = client(&cluster, 30_000);
    let mut leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let first = leader;
    let others: Vec<u64> = (1..=3).filter(|n| *n != first).collect();
    for round in 0..6 {
        // first -> a -> first -> b -> first -> a -> first.
        let target = if round % 2 == 0 {
            others[round / 2 % 2]
        } else {
            first
        };
        let acknowledged_before = load.tally.acknowledged();
        let started = Instant::now();
        let r = admin
            .transfer_leader(target)
            .await
            .unwrap_or_else(|e| panic!("transfer {leader} -> {target}: {e}"));
        assert_eq!(r.leader_id, target);
        let st = node_status(&cluster.addr(target)).await.expect("status");
        assert_eq!(
            st.role, "leader",
            "node {target} does not lead after the transfer"
        );
        eprintln!(
            "round {round}: leadership {leader} -> {target} in {:?} (term {})",
            started.elapsed(),
            r.term
        );
        leader = target;
        // Let the load run on the new leader before moving again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while load.tally.acknowledged() < acknowledged_before + 20 {
            assert!(
                Instant::now() < deadline,
                "no progress after moving leadership to {target}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let tally = load.finish().await;
    eprintln!(
        "{} writes and {} reads acknowledged; slowest write {} ms",
        tally.acknowledged(),
        tally.reads.load(Ordering::Relaxed),
        tally.max_write_ms.load(Ordering::Relaxed)
    );
    assert_balances_everywhere(&cluster, &c, &tally.applied(), TASKS * PER_TASK).await;
    cluster.wait_converged(Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_changes_run_one_at_a_time_and_a_concurrent_change_is_refused_with_membership_change_in_progress()
 {
    let mut cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster, 60_000);
    setup(&c, 1).await;

    // Node 4 joins as a learner but is frozen, so it cannot catch up and the
    // promote that waits for it stays in progress.
    let addr4 = cluster.add_node_process(4);
    cluster.wait_up(4).await;
    let _resume = ContOnDrop::new(&cluster, &[4]);
    signal_node(&cluster, 4, "-STOP");
    let m = c
        .add_learner(4, addr4.clone())
        .await
        .expect("add learner 4");
    assert!(m.learners.iter().any(|l| l.node_id == 4), "{m:?}");
    let promoting = {
        let c = c.clone();
        tokio::spawn(async move { c.promote(4).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !promoting.is_finished(),
        "promote of a frozen learner finished early"
    );

    // Meanwhile, every other change is refused, definitely and at once.
    let addr5 = cluster.add_node_process(5);
    let started = Instant::now();
    expect_refusal(
        c.add_learner(5, addr5.clone()).await,
        reasons::MEMBERSHIP_CHANGE_IN_PROGRESS,
    );
    expect_refusal(
        c.remove(3, false).await,
        reasons::MEMBERSHIP_CHANGE_IN_PROGRESS,
    );
    expect_refusal(c.promote(4).await, reasons::MEMBERSHIP_CHANGE_IN_PROGRESS);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusals took {:?}",
        started.elapsed()
    );
    // Writes are not blocked by the pending change.
    must_apply(&c, commands::deposit(1, ASSET, "1")).await;

    // Thaw node 4: it catches up, the promote completes, and the next change goes through.
    signal_node(&cluster, 4, "-CONT");
    let m = promoting.await.expect("promote task").expect("promote 4");
    assert!(m.voters.iter().any(|v| v.node_id == 4), "{m:?}");
    cluster.wait_up(5).await;
    let m = c
        .add_learner(5, addr5)
        .await
        .expect("add learner 5 after the promote");
    assert!(m.learners.iter().any(|l| l.node_id == 5), "{m:?}");
    let status = c.cluster_status().await.expect("status");
    assert_eq!(
        (status.voters.len(), status.learners.len()),
        (4, 1),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_ids_are_never_reused_node_id_in_use_and_node_id_retired() {
    let mut cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster, 30_000);
    setup(&c, 1).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let victim = (1..=3).find(|id| *id != leader).expect("follower");

    // The id of a current member: refused whatever the address.
    let spare = cluster.add_node_process(4);
    expect_refusal(
        c.add_learner(victim, spare.clone()).await,
        reasons::NODE_ID_IN_USE,
    );
    expect_refusal(
        c.add_learner(leader, cluster.addr(leader)).await,
        reasons::NODE_ID_IN_USE,
    );

    // Remove a voter: its id is retired for good, even for a fresh process.
    let m = c.remove(victim, false).await.expect("remove follower");
    assert!(m.voters.iter().all(|v| v.node_id != victim), "{m:?}");
    cluster.forget(victim);
    expect_refusal(
        c.add_learner(victim, spare.clone()).await,
        reasons::NODE_ID_RETIRED,
    );
    expect_refusal(
        c.replace(leader, victim, spare.clone(), false).await,
        reasons::NODE_ID_RETIRED,
    );

    // A learner that is removed is retired too.
    cluster.wait_up(4).await;
    c.add_learner(4, spare.clone())
        .await
        .expect("add learner 4");
    c.remove(4, false).await.expect("remove learner 4");
    expect_refusal(c.add_learner(4, spare).await, reasons::NODE_ID_RETIRED);

    // The refusals changed nothing.
    let status = c.cluster_status().await.expect("status");
    let voters: Vec<u64> = status.voters.iter().map(|v| v.node_id).collect();
    assert_eq!(voters.len(), 2, "{status:?}");
    assert!(status.learners.is_empty(), "{status:?}");
    must_apply(&c, commands::deposit(1, ASSET, "1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_the_last_voter_is_refused_with_last_voter_even_with_force() {
    let cluster = Cluster::start(1, &[]).await;
    let c = client(&cluster, 10_000);
    setup(&c, 1).await;
    expect_refusal(c.remove(1, false).await, reasons::LAST_VOTER);
    expect_refusal(c.remove(1, true).await, reasons::LAST_VOTER);
    let status = c.cluster_status().await.expect("status");
    assert_eq!(status.voters.len(), 1);
    must_apply(&c, commands::deposit(1, ASSET, "1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_a_voter_that_would_leave_no_reachable_majority_is_refused_with_would_lose_quorum()
{
    let mut cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster, 30_000);
    setup(&c, 1).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let mut followers = (1..=3).filter(|id| *id != leader);
    let (down, up) = (
        followers.next().expect("follower"),
        followers.next().expect("follower"),
    );
    cluster.kill9(down);
    // Removing the live follower would leave {leader, down}: 1 of 2 reachable.
    let e = expect_refusal(c.remove(up, false).await, reasons::WOULD_LOSE_QUORUM);
    assert!(e.to_string().contains("force"), "{e}");
    // Removing the dead one keeps {leader, up}: fine.
    let m = c
        .remove(down, false)
        .await
        .expect("remove the dead follower");
    assert_eq!(m.voters.len(), 2, "{m:?}");
    must_apply(&c, commands::deposit(1, ASSET, "1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replace_under_load_keeps_the_cluster_writable_with_zero_failed_writes() {
    let (mut cluster, c, load) = three_nodes_under_load().await;

    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let old = (1..=3).find(|id| *id != leader).expect("follower");
    let addr4 = cluster.add_node_process(4);
    cluster.wait_up(4).await;
    let admin = client(&cluster, 60_000);
    let started = Instant::now();
    let m = admin
        .replace(old, 4, addr4.clone(), false)
        .await
        .expect("replace");
    eprintln!("replaced node {old} by node 4 in {:?}", started.elapsed());
    let voters: Vec<u64> = m.voters.iter().map(|v| v.node_id).collect();
    assert!(
        voters.contains(&4) && !voters.contains(&old) && voters.len() == 3,
        "{m:?}"
    );
    assert!(m.learners.is_empty(), "{m:?}");

    cluster.forget(old);
    keep_writing_then_check_everything(&cluster, &c, load, LOAD_TASKS * LOAD_PER_TASK).await;
    let st4 = node_status(&addr4).await.expect("node 4");
    assert!(st4.voter, "{st4:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_the_leader_hands_leadership_over_first_and_the_new_leader_removes_it_under_load()
{
    let (mut cluster, c, load) = three_nodes_under_load().await;

    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let admin = client(&cluster, 60_000);
    let m = admin
        .remove(leader, false)
        .await
        .expect("remove the leader");
    let voters: Vec<u64> = m.voters.iter().map(|v| v.node_id).collect();
    assert!(
        voters.len() == 2 && !voters.contains(&leader),
        "the answer (the new leader's) must show the old leader gone: {m:?}"
    );
    // The old leader handed over before anything was removed: it did not
    // commit its own removal and step down into an election.
    let log = std::fs::read_to_string(cluster.data_dir(leader).join("tallyd.log"))
        .expect("old leader's log");
    assert!(
        log.contains("remove self: leadership handed over"),
        "old leader {leader} did not hand over first:\n{}",
        cluster.log_tail(leader)
    );
    cluster.forget(leader);
    let new_leader = cluster.wait_leader(Duration::from_secs(5)).await;
    assert!(
        voters.contains(&new_leader),
        "leader {new_leader} vs {voters:?}"
    );
    keep_writing_then_check_everything(&cluster, &c, load, LOAD_TASKS * LOAD_PER_TASK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_transfer_to_a_dead_voter_is_refused_and_the_cluster_stays_writable() {
    let mut cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster, 15_000);
    const TASKS: u64 = 4;
    const PER_TASK: u64 = 3;
    setup(&c, TASKS * PER_TASK).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let dead = (1..=3).find(|id| *id != leader).expect("follower");
    cluster.kill9(dead);
    let load = start_load(&c, TASKS, PER_TASK);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let admin = client(&cluster, 30_000);
    let started = Instant::now();
    let result = admin.transfer_leader(dead).await;
    let took = started.elapsed();
    eprintln!("transfer to dead node {dead}: {result:?} after {took:?}");
    // Refused up front (the target does not answer), so the leader never
    // stops its writes for a transfer that cannot complete.
    let e = expect_refusal(result, reasons::TARGET_NOT_READY);
    assert!(e.is_definite_answer(), "{e:?}");
    assert!(
        took < Duration::from_secs(5),
        "transfer refusal took {took:?}"
    );
    let now = cluster.wait_leader(Duration::from_secs(10)).await;
    assert_eq!(
        now, leader,
        "leadership moved although the transfer was refused"
    );
    let tally = more_writes_then_finish(load, 20, "after a transfer to a dead node").await;
    assert_balances_everywhere(&cluster, &c, &tally.applied(), TASKS * PER_TASK).await;
}
