//! What an operator sees: `/metrics` scraped from a real node under load
//! has the required series with their Prometheus types and the counters
//! move; the JSON log has one line, with node id and term, for each
//! cluster event (leadership moved, a node killed, a node removed, a
//! snapshot built) and a start-up line with version and config.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tally_client::{Client, ClientConfig, commands};
use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::{RemoveRequest, SnapshotRequest, TransferLeaderRequest};
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

async fn cluster_with_http(n: u64) -> (Cluster, BTreeMap<u64, String>) {
    let http: BTreeMap<u64, String> = (1..=n)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let node_args = http
        .iter()
        .map(|(id, addr)| (*id, vec!["--http-listen".to_string(), addr.clone()]))
        .collect();
    let cluster = Cluster::start_with(
        n,
        &["--log-format", "json", "--snapshot-every-entries", "100000"],
        BTreeMap::new(),
        node_args,
    )
    .await;
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
        ("tally_commands_applied_total", "counter"),
        ("tally_commands_rejected_total", "counter"),
        ("tally_wal_fsync_duration_seconds", "histogram"),
        ("tally_apply_write_duration_seconds", "histogram"),
        ("tally_apply_duration_seconds", "histogram"),
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
