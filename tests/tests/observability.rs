//! What an operator sees: `/metrics` scraped from a real node under load
//! has the required series with their Prometheus types and the counters
//! move; the JSON log has one line, with node id and term, for each
//! cluster event (leadership moved, a node killed, a node removed, a
//! snapshot built) and a start-up line with version and config. Also the
//! read-index round counters: concurrent linearizable reads share rounds,
//! and each still sees every write acknowledged before it began; a
//! follower's round stuck on a paused leader restarts once a new leader is
//! known. And a status poll can leave out the state hash.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tally_client::{Client, ClientConfig, commands};
use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::{NodeStatusRequest, RemoveRequest, SnapshotRequest, TransferLeaderRequest};
use tally_tests::{Cluster, free_port};

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect http");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// name -> type, from the `# TYPE` lines.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// The value of the sample line that starts with `series` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series}"))
}

/// The leader (waiting up to 10 s for one) and another node.
async fn leader_and_a_follower(cluster: &Cluster) -> (u64, u64) {
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let follower = cluster
        .nodes
        .keys()
        .copied()
        .find(|id| *id != leader)
        .expect("a follower");
    (leader, follower)
}

async fn cluster_with_http(n: u64) -> (Cluster, BTreeMap<u64, String>) {
    cluster_with_http_and(n, &[]).await
}

/// Like `cluster_with_http`, with `extra` flags for every node.
async fn cluster_with_http_and(n: u64, extra: &[&str]) -> (Cluster, BTreeMap<u64, String>) {
    let http: BTreeMap<u64, String> = (1..=n)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let node_args = http
        .iter()
        .map(|(id, addr)| (*id, vec!["--http-listen".to_string(), addr.clone()]))
        .collect();
    let mut args = vec!["--log-format", "json", "--snapshot-every-entries", "100000"];
    args.extend_from_slice(extra);
    let cluster = Cluster::start_with(n, &args, BTreeMap::new(), node_args).await;
    (cluster, http)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_of_a_node_under_load_have_the_required_series_and_types_and_counters_move() {
    let (cluster, http) = cluster_with_http(3).await;
    let c = Client::new(ClientConfig::new(cluster.endpoints())).expect("client");
    assert!(
        c.submit(commands::create_asset("USD", 2))
            .await
            .applied_index()
            .is_some()
    );
    assert!(
        c.submit(commands::create_account(1))
            .await
            .applied_index()
            .is_some()
    );
    let load = |n: usize| {
        let c = c.clone();
        async move {
            for _ in 0..n {
                c.submit(commands::deposit(1, "USD", "1")).await;
            }
            // A rejection: the account does not exist.
            c.submit(commands::deposit(99, "USD", "1")).await;
        }
    };
    load(50).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let before = http_get(&http[&leader], "/metrics");
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    let want = [
        ("tally_build_info", "gauge"),
        ("tally_node_info", "gauge"),
        ("tally_has_leader", "gauge"),
        ("tally_leader_changes_total", "counter"),
        ("tally_proposals_total", "counter"),
        ("tally_proposals_pending", "gauge"),
        ("tally_writer_queue_depth", "gauge"),
        ("tally_writer_overloaded_total", "counter"),
        ("tally_read_index_rounds_total", "counter"),
        ("tally_read_index_reads_total", "counter"),
        ("tally_read_index_lease_rounds_total", "counter"),
        ("tally_read_index_round_restarts_total", "counter"),
        ("tally_commands_applied_total", "counter"),
        ("tally_commands_rejected_total", "counter"),
        ("tally_wal_fsync_duration_seconds", "histogram"),
        ("tally_apply_write_duration_seconds", "histogram"),
        ("tally_apply_duration_seconds", "histogram"),
        ("tally_checkpoint_duration_seconds", "histogram"),
        ("tally_entry_commands", "histogram"),
        ("tally_grpc_requests_total", "counter"),
        ("tally_grpc_request_duration_seconds", "histogram"),
        ("tally_peer_rpc_duration_seconds", "histogram"),
        ("tally_snapshot_build_duration_seconds", "histogram"),
        ("tally_snapshot_install_duration_seconds", "histogram"),
        ("tally_snapshot_size_bytes", "gauge"),
        ("tally_disk_usage_bytes", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_open_fds", "gauge"),
    ];
    let got = types(&before);
    for (name, kind) in want {
        assert_eq!(
            got.get(name).map(String::as_str),
            Some(kind),
            "{name} in:\n{before}"
        );
    }
    // Every counter ends in _total; every histogram has buckets, sum and count.
    for (name, kind) in &got {
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter {name}");
        }
        if kind == "histogram" && before.contains(&format!("{name}_count")) {
            assert!(
                before.contains(&format!("{name}_bucket{{")),
                "{name} buckets"
            );
            assert!(before.contains(&format!("{name}_sum")), "{name} sum");
        }
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        before.contains(&format!(
            "tally_build_info{{version=\"{version}\",commit=\""
        )),
        "{before}"
    );
    assert!(before.contains(&format!(
        "tally_node_info{{node_id=\"{leader}\",cluster_id=\"test-cluster\"}} 1"
    )));
    assert_eq!(value(&before, "tally_has_leader"), 1.0);
    assert!(value(&before, "tally_disk_usage_bytes") > 0.0);
    assert!(
        value(
            &before,
            "tally_commands_rejected_total{reason=\"UNKNOWN_ACCOUNT\"}"
        ) >= 1.0
    );
    load(30).await;
    // A query string is accepted.
    let after = http_get(
        &http[&leader],
        "/metrics?name[]=tally_commands_applied_total",
    );
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
    for series in [
        "tally_commands_applied_total",
        "tally_proposals_total{result=\"committed\"}",
        "tally_grpc_requests_total{method=\"Ledger/Submit\",code=\"OK\"}",
        "tally_wal_fsync_duration_seconds_count",
        "tally_entry_commands_count",
        "process_cpu_seconds_total",
    ] {
        assert!(
            value(&after, series) > value(&before, series),
            "{series} did not move: {} -> {}",
            value(&before, series),
            value(&after, series)
        );
    }
    // The Grafana dashboard plots only series a node exports (Kafka ones
    // need Kafka configured).
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/grafana/tally-dashboard.json"),
    )
    .expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !(word.starts_with("tally_") || word.starts_with("process_"))
                    || word.starts_with("tally_ingest_")
                    || word.starts_with("tally_events_")
                {
                    continue;
                }
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix).filter(|b| got.contains_key(*b)))
                    .unwrap_or(word);
                assert!(
                    got.contains_key(base),
                    "dashboard uses {word}, not exported"
                );
            }
        }
    }
    // A follower applies the same commands and times its peer RPCs... from the leader.
    let follower = *http.keys().find(|id| **id != leader).expect("a follower");
    let text = http_get(&http[&follower], "/metrics");
    assert!(
        value(&text, "tally_commands_applied_total") >= 80.0,
        "{text}"
    );
    assert!(
        value(
            &before,
            &format!("tally_peer_rpc_duration_seconds_count{{peer=\"{follower}\"}}")
        ) > 0.0,
        "{before}"
    );
}

/// The JSON log lines of node `id` (every line of its log must be JSON).
fn json_log(cluster: &Cluster, id: u64) -> Vec<serde_json::Value> {
    let path = cluster.nodes[&id].data_dir.join("tallyd.log");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn message(line: &serde_json::Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

/// Reads per round must exceed one on a node serving many concurrent
/// linearizable reads: a node that ran one round per read (no batching)
/// fails this. Each read must also show every deposit acknowledged before
/// it started (the batch is taken only from reads that arrived before the
/// round began), on the leader and on a follower (whose rounds are shared
/// fetches of the leader's read index).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_linearizable_reads_share_read_index_rounds_and_each_sees_every_write_acknowledged_before_it()
 {
    let rounds = concurrent_linearizable_reads(&[]).await;
    assert_eq!(
        rounds.leader_lease_rounds, 0.0,
        "lease reads are off by default"
    );
}

/// With `--lease-reads` the leader answers rounds from its lease, and the
/// reads still see every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_reads_answer_rounds_from_the_leader_lease_and_each_read_sees_every_write_acknowledged_before_it()
 {
    let rounds = concurrent_linearizable_reads(&["--lease-reads"]).await;
    assert!(
        rounds.leader_lease_rounds > 0.0,
        "no round was answered from the lease"
    );
}

/// Rounds and reads counted on the leader during `concurrent_linearizable_reads`.
struct ReadRounds {
    leader_lease_rounds: f64,
}

/// 48 readers (half on the leader, half on a follower) read one balance
/// while 150 deposits are acknowledged one by one; asserts every read saw
/// every deposit acknowledged before it began, and that reads shared rounds.
async fn concurrent_linearizable_reads(extra: &[&str]) -> ReadRounds {
    use tally_proto::v1::ledger_client::LedgerClient;
    use tally_proto::v1::{GetBalanceRequest, ReadConsistency, ReadOptions};
    const READERS: usize = 48;
    const DEPOSITS: u64 = 150;
    let (cluster, http) = cluster_with_http_and(3, extra).await;
    let c = Client::new(ClientConfig::new(cluster.endpoints())).expect("client");
    for cmd in [
        commands::create_asset("USD", 2),
        commands::create_account(1),
    ] {
        assert!(c.submit(cmd).await.applied_index().is_some());
    }
    let (leader, follower) = leader_and_a_follower(&cluster).await;
    let rounds_of = |id: u64| {
        let text = http_get(&http[&id], "/metrics");
        (
            value(&text, "tally_read_index_rounds_total"),
            value(&text, "tally_read_index_reads_total"),
        )
    };
    let lease_rounds_before = value(
        &http_get(&http[&leader], "/metrics"),
        "tally_read_index_lease_rounds_total",
    );
    let (leader_rounds_before, leader_reads_before) = rounds_of(leader);
    let (follower_rounds_before, follower_reads_before) = rounds_of(follower);

    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let addr = cluster.addr(if r % 2 == 0 { leader } else { follower });
            let (acked, done) = (acked.clone(), done.clone());
            tokio::spawn(async move {
                let mut ledger = LedgerClient::connect(format!("http://{addr}"))
                    .await
                    .expect("connect");
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    let floor = acked.load(Ordering::Acquire);
                    let request = GetBalanceRequest {
                        owner: Some(tally_client::Owner::Account(1).to_proto()),
                        asset: "USD".into(),
                        read: Some(ReadOptions {
                            consistency: ReadConsistency::Linearizable as i32,
                            ..Default::default()
                        }),
                    };
                    let balance = ledger
                        .get_balance(request)
                        .await
                        .unwrap_or_else(|e| panic!("reader {r} on {addr}: {e:?}"))
                        .into_inner();
                    let available = balance.balance.map(|b| b.available).unwrap_or_default();
                    let whole: u64 = available
                        .split('.')
                        .next()
                        .and_then(|w| w.parse().ok())
                        .unwrap_or_else(|| panic!("reader {r}: balance {available:?}"));
                    assert!(
                        whole >= floor,
                        "reader {r} on {addr}: read {whole} after {floor} deposits were acknowledged"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for n in 1..=DEPOSITS {
        assert!(
            c.submit(commands::deposit(1, "USD", "1"))
                .await
                .applied_index()
                .is_some(),
            "deposit {n}"
        );
        acked.store(n, Ordering::Release);
    }
    done.store(true, Ordering::Release);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.expect("reader");
    }
    assert!(reads > READERS as u64, "the readers barely ran: {reads}");
    let (leader_rounds, leader_reads) = rounds_of(leader);
    let (follower_rounds, follower_reads) = rounds_of(follower);
    let leader_rounds = leader_rounds - leader_rounds_before;
    let leader_reads = leader_reads - leader_reads_before;
    let follower_rounds = follower_rounds - follower_rounds_before;
    let follower_reads = follower_reads - follower_reads_before;
    eprintln!(
        "{reads} linearizable reads; leader: {leader_reads} reads in {leader_rounds} rounds; \
         follower: {follower_reads} reads in {follower_rounds} rounds"
    );
    assert!(follower_rounds > 0.0 && leader_rounds > 0.0);
    // (With lease reads a leader's round is answered at once, so its
    // batches may be of one read.)
    assert!(
        extra.contains(&"--lease-reads") || leader_reads > leader_rounds,
        "the leader ran a round per read: {leader_reads} reads, {leader_rounds} rounds"
    );
    assert!(
        follower_reads > follower_rounds,
        "the follower fetched a read index per read: {follower_reads} reads, {follower_rounds} rounds"
    );
    let leader_lease_rounds = value(
        &http_get(&http[&leader], "/metrics"),
        "tally_read_index_lease_rounds_total",
    ) - lease_rounds_before;
    ReadRounds {
        leader_lease_rounds,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_followers_read_stuck_on_a_paused_leader_restarts_with_the_new_leader_and_is_served_before_its_timeout()
 {
    use tally_proto::v1::ledger_client::LedgerClient;
    use tally_proto::v1::{GetBalanceRequest, ReadConsistency, ReadOptions};
    let (cluster, http) = cluster_with_http(3).await;
    let c = Client::new(ClientConfig::new(cluster.endpoints())).expect("client");
    for cmd in [
        commands::create_asset("USD", 2),
        commands::create_account(1),
        commands::deposit(1, "USD", "7"),
    ] {
        assert!(c.submit(cmd).await.applied_index().is_some());
    }
    let (leader, follower) = leader_and_a_follower(&cluster).await;
    let restarts = || {
        value(
            &http_get(&http[&follower], "/metrics"),
            "tally_read_index_round_restarts_total",
        )
    };
    let restarts_before = restarts();
    let mut ledger = LedgerClient::connect(format!("http://{}", cluster.addr(follower)))
        .await
        .expect("connect");
    let pid = cluster.nodes[&leader]
        .child
        .as_ref()
        .expect("leader runs")
        .id();
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill")
    };
    assert!(signal("-STOP").success());
    // The follower still believes in the paused leader: its round asks it
    // and gets no answer, until the other two elect a new leader.
    let started = Instant::now();
    let read = ledger
        .get_balance(GetBalanceRequest {
            owner: Some(tally_client::Owner::Account(1).to_proto()),
            asset: "USD".into(),
            read: Some(ReadOptions {
                consistency: ReadConsistency::Linearizable as i32,
                ..Default::default()
            }),
        })
        .await;
    let took = started.elapsed();
    let restarted = restarts() - restarts_before;
    assert!(signal("-CONT").success());
    let balance = read
        .unwrap_or_else(|e| panic!("read on follower {follower} failed after {took:?}: {e:?}"))
        .into_inner();
    let available = balance.balance.map(|b| b.available).unwrap_or_default();
    assert_eq!(available.split('.').next(), Some("7"), "{available}");
    // Without the restart the round waits out its whole 5 s timeout and
    // the read fails; an election takes well under a second.
    assert!(
        took < tally_node::reads::READ_WAIT_TIMEOUT - Duration::from_secs(1),
        "the read took {took:?}"
    );
    assert!(restarted >= 1.0, "no round was restarted ({restarted})");
}

/// Waits until node `id` logged a line whose message contains `text`, with
/// node id and term; returns it.
async fn wait_logged(cluster: &Cluster, id: u64, text: &str) -> serde_json::Value {
    wait_logged_where(cluster, id, text, |_| true).await
}

/// Like `wait_logged`, for a line that also satisfies `pred`.
async fn wait_logged_where(
    cluster: &Cluster,
    id: u64,
    text: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = json_log(cluster, id)
            .into_iter()
            .find(|l| message(l).contains(text) && pred(l))
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never logged {text:?}:\n{}",
            cluster.log_tail(id)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_poll_may_omit_the_state_hash_and_a_plain_one_carries_the_ledgers_hash() {
    let (cluster, _http) = cluster_with_http(3).await;
    let (leader, _) = leader_and_a_follower(&cluster).await;
    let mut admin = admin(&cluster.addr(leader)).await;
    let plain = admin
        .get_node_status(NodeStatusRequest::default())
        .await
        .expect("status")
        .into_inner();
    let omitted = admin
        .get_node_status(NodeStatusRequest {
            omit_state_hash: true,
        })
        .await
        .expect("status without the hash")
        .into_inner();
    assert_eq!(omitted.state_hash, "", "the hash was asked to be left out");
    assert_eq!((omitted.role.as_str(), omitted.node_id), ("leader", leader));
    assert!(omitted.applied_index >= plain.applied_index);
    let hashes = cluster.state_hashes(plain.applied_index).await;
    let (hash, index) = &hashes[&leader];
    assert_eq!(
        *index, plain.applied_index,
        "an idle cluster applied nothing meanwhile"
    );
    assert_eq!(
        &plain.state_hash, hash,
        "a plain status carries GetStateHash's hash"
    );
}

async fn admin(addr: &str) -> AdminClient<tonic::transport::Channel> {
    AdminClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_log_has_one_line_per_cluster_event_with_node_id_and_term() {
    let (mut cluster, _http) = cluster_with_http(4).await;
    let first = cluster.wait_leader(Duration::from_secs(10)).await;
    let start = wait_logged(&cluster, first, "starting tallyd").await;
    assert_eq!(
        start["fields"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{start}"
    );
    assert!(start["fields"]["commit"].is_string(), "{start}");
    let became = wait_logged(&cluster, first, "became leader").await;
    assert_eq!(became["fields"]["node_id"], first, "{became}");
    assert!(
        became["fields"]["term"].as_u64().is_some_and(|t| t > 0),
        "{became}"
    );
    // Leadership moves: the old leader says it lost it, the new one that it leads.
    let others: Vec<u64> = cluster
        .nodes
        .keys()
        .copied()
        .filter(|id| *id != first)
        .collect();
    let target = others[0];
    admin(&cluster.addr(first))
        .await
        .transfer_leader(TransferLeaderRequest { node_id: target })
        .await
        .expect("transfer");
    wait_logged(&cluster, first, "lost leadership").await;
    wait_logged(&cluster, target, "became leader").await;
    // A snapshot on the leader.
    admin(&cluster.addr(target))
        .await
        .trigger_snapshot(SnapshotRequest {})
        .await
        .expect("snapshot");
    let built = wait_logged(&cluster, target, "built snapshot").await;
    assert_eq!(built["fields"]["node_id"], target, "{built}");
    assert!(
        built["fields"]["term"].as_u64().is_some_and(|t| t > 0),
        "{built}"
    );
    // A node killed: the leader says the peer is unreachable.
    let killed = others[1];
    cluster.kill9(killed);
    let unreachable = wait_logged(&cluster, target, "peer unreachable").await;
    assert_eq!(unreachable["fields"]["peer"], killed, "{unreachable}");
    // A node removed: every member logs it once, with the new membership.
    admin(&cluster.addr(target))
        .await
        .remove(RemoveRequest {
            node_id: killed,
            force: false,
        })
        .await
        .expect("remove");
    let removed = wait_logged(
        &cluster,
        target,
        &format!("node {killed} removed from the cluster"),
    )
    .await;
    assert_eq!(removed["fields"]["node_id"], target, "{removed}");
    assert!(removed["fields"]["term"].as_u64().is_some(), "{removed}");
    let voters_of = |line: &serde_json::Value| -> BTreeSet<String> {
        line["fields"]["voters"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .map(str::to_string)
            .collect()
    };
    let changed = wait_logged_where(&cluster, others[2], "membership changed", |l| {
        !voters_of(l).contains(&killed.to_string())
    })
    .await;
    assert!(changed["fields"]["term"].as_u64().is_some(), "{changed}");
    // No Rust Debug dumps in the messages of these lines.
    for id in [first, target] {
        for line in json_log(&cluster, id) {
            let text = message(&line);
            assert!(
                !text.contains("LogId {") && !text.contains("Account("),
                "{text}"
            );
        }
    }
}
