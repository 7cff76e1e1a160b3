//! Honest status, against real `tallyd` processes on loopback:
//!
//! * a node removed from the cluster stops serving client traffic: its
//!   `/readyz` answers 503 naming `NODE_REMOVED`, its gRPC health is
//!   NOT_SERVING, reads and writes are refused with `tally-reason:
//!   NODE_REMOVED`, it reports role `removed` (not a voter) and says so once
//!   in its log; the dedup table's fill and bound are metrics;
//! * `tallyctl cluster status` reports the leader's view even when asked of a
//!   follower, exits 0 on a healthy cluster and 4 (degraded) with a voter
//!   killed, marking it unreachable;
//! * `tallyctl ledger settings --json` shows the idempotency window in force
//!   after `tallyctl ledger set-dedup-window`.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tally_client::{Client, ClientConfig, Owner, WriteResult, commands};
use tally_proto::v1::GetBalanceRequest;
use tally_proto::v1::ledger_client::LedgerClient;
use tally_tests::{Cluster, bin_path, free_port, node_status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn client(cluster: &Cluster) -> Client {
    Client::new(ClientConfig {
        timeout_ms: 30_000,
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

/// `GET path` on a node's HTTP port: (status code, body).
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((code, body))
}

/// Waits (up to 5 s: the health driver refreshes every 250 ms) for a node's
/// gRPC health of `service` to be `want`.
async fn wait_health(addr: &str, service: &str, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = health(addr, service).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health of {service:?}: {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn health(addr: &str, service: &str) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect health");
    let mut h = HealthClient::new(channel);
    let r = h
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner();
    ServingStatus::try_from(r.status).expect("serving status")
}

fn reason(s: &tonic::Status) -> String {
    s.metadata()
        .get("tally-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Runs tallyctl against `endpoints`: (exit code, stdout, stderr).
fn tallyctl(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin_path("tallyctl"))
        .args(["--endpoints", endpoints])
        .args(args)
        .env_remove("TALLY_ENDPOINTS")
        .output()
        .expect("run tallyctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_node_answers_readyz_503_and_not_serving_and_refuses_reads_and_writes_with_node_removed()
 {
    let mut cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster);
    must_apply(&c, commands::create_asset("USDT", 6)).await;
    must_apply(&c, commands::create_account(1)).await;

    // Node 4 with an HTTP health port, added and promoted to voter.
    let http = format!("127.0.0.1:{}", free_port());
    let shared = cluster.extra_args.clone();
    cluster
        .extra_args
        .extend(["--http-listen".to_string(), http.clone()]);
    let addr = cluster.add_node_process(4);
    cluster.extra_args = shared;
    cluster.wait_up(4).await;
    c.add_learner(4, addr.clone()).await.expect("add learner");
    c.promote(4).await.expect("promote");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(&http, "/readyz").map(|r| r.0).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "node 4 never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_health(&addr, "tally.v1.Ledger", ServingStatus::Serving).await;
    // The dedup table's fill and bound are metrics.
    let (code, metrics) = http_get(&http, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    let series = |name: &str| -> Option<u64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    };
    assert!(series("tally_dedup_entries") >= Some(2), "{metrics}");
    assert_eq!(
        series("tally_dedup_max_entries"),
        Some(50_000_000),
        "{metrics}"
    );
    assert!(series("tally_dedup_bytes") > Some(0), "{metrics}");
    assert!(
        metrics.contains("# TYPE tally_dedup_entries gauge"),
        "{metrics}"
    );

    c.remove(4, false).await.expect("remove node 4");
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (code, body) = http_get(&http, "/readyz").expect("readyz");
        if code == 503 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "removed node 4 still answers readyz {code} {body}; log:\n{}",
            cluster.log_tail(4)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        body.contains("NODE_REMOVED") && body.contains("node 4 was removed"),
        "{body}"
    );
    wait_health(&addr, "", ServingStatus::NotServing).await;
    wait_health(&addr, "tally.v1.Ledger", ServingStatus::NotServing).await;

    let st = node_status(&addr).await.expect("status of node 4");
    assert!(st.removed && !st.voter, "{st:?}");
    assert_eq!(st.role, "removed", "{st:?}");

    let mut raw = LedgerClient::connect(format!("http://{addr}"))
        .await
        .expect("connect node 4");
    let read = raw
        .get_balance(GetBalanceRequest {
            owner: Some(Owner::Account(1).to_proto()),
            asset: "USDT".into(),
            read: None,
        })
        .await
        .expect_err("a removed node must refuse reads");
    assert_eq!(reason(&read), "NODE_REMOVED", "{read:?}");
    assert!(
        read.message().contains("removed from the cluster"),
        "{read:?}"
    );
    let write = raw
        .submit(tally_proto::v1::SubmitRequest {
            command: Some(commands::deposit(1, "USDT", "1")),
            ..Default::default()
        })
        .await
        .expect_err("a removed node must refuse writes");
    assert_eq!(reason(&write), "NODE_REMOVED", "{write:?}");

    // Said once in its log.
    let log =
        std::fs::read_to_string(cluster.nodes[&4].data_dir.join("tallyd.log")).expect("node 4 log");
    assert_eq!(
        log.matches("this node was removed from the cluster")
            .count(),
        1,
        "{log}"
    );
    // The others still serve.
    must_apply(&c, commands::deposit(1, "USDT", "1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_status_reports_the_leaders_view_and_exits_0_healthy_and_4_with_a_voter_killed() {
    let mut cluster = Cluster::start(3, &[]).await;
    let c = client(&cluster);
    must_apply(&c, commands::create_asset("USDT", 6)).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).expect("follower");
    let all = cluster.endpoints().join(",");

    // Asked of a follower only, the answer is still the leader's view.
    let (code, out, err) = tallyctl(&cluster.addr(follower), &["--json", "cluster", "status"]);
    assert_eq!(code, 0, "{out} {err}");
    let j: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(j["source"], "leader", "{j}");
    assert_eq!(j["leader_id"], leader, "{j}");
    assert_eq!(j["healthy"], true, "{j}");
    let leader_row = j["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node_id"] == leader)
        .cloned()
        .expect("leader row");
    assert_eq!(leader_row["role"], "leader", "{j}");
    let (code, text, err) = tallyctl(&all, &["cluster", "status"]);
    assert_eq!(code, 0, "{text} {err}");
    assert!(text.contains(&format!("leader: node {leader}")), "{text}");

    // One voter killed: degraded, exit 4, the node marked unreachable.
    let victim = (1..=3)
        .find(|id| *id != leader && *id != follower)
        .expect("victim");
    cluster.kill9(victim);
    let (code, text, err) = tallyctl(&all, &["cluster", "status"]);
    assert_eq!(code, 4, "{text} {err}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(
        err.contains("degraded") && err.contains(&format!("voter {victim}")),
        "{err}"
    );
    let (code, out, _) = tallyctl(&all, &["--json", "cluster", "status"]);
    assert_eq!(code, 4, "{out}");
    let j: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(j["healthy"], false, "{j}");
    assert_eq!(j["source"], "leader", "{j}");
    assert!(
        j["problems"][0]
            .as_str()
            .expect("problem")
            .contains("unreachable"),
        "{j}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_settings_json_shows_the_window_set_with_set_dedup_window() {
    let cluster = Cluster::start(3, &[]).await;
    let all = cluster.endpoints().join(",");
    let (code, out, err) = tallyctl(&all, &["--json", "ledger", "settings"]);
    assert_eq!(code, 0, "{out} {err}");
    let j: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(j["dedup_window_ms"], 86_400_000, "{j}");
    assert_eq!(j["dedup_max_entries"], 50_000_000, "{j}");
    assert_eq!(j["min_dedup_window_ms"], 1_000, "{j}");
    assert_eq!(j["max_dedup_window_ms"], 604_800_000, "{j}");

    let (code, out, err) = tallyctl(
        &all,
        &[
            "--json",
            "ledger",
            "set-dedup-window",
            "--window-ms",
            "60000",
        ],
    );
    assert_eq!(code, 0, "{out} {err}");
    let set: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let index = set["applied_index"].as_u64().expect("applied_index");
    // Every node reports the new window once it applied the change.
    for addr in cluster.endpoints() {
        let (code, out, err) = tallyctl(
            &addr,
            &[
                "--json",
                "ledger",
                "settings",
                "--min-index",
                &index.to_string(),
            ],
        );
        assert_eq!(code, 0, "{addr}: {out} {err}");
        let j: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        assert_eq!(j["dedup_window_ms"], 60_000, "{addr}: {j}");
        assert!(j["applied_index"].as_u64() >= Some(index), "{j}");
        assert!(j["dedup_entries"].as_u64() >= Some(1), "{j}");
    }
    let (code, text, _) = tallyctl(&all, &["ledger", "settings"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("60000 ms (1 min)"), "{text}");
}
