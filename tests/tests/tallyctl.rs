//! `tallyctl` end to end against a real `tallyd dev` cluster (three node
//! processes on random free ports): the operator's and the exchange's walk
//! through assets, accounts, deposits, order locks, a fill in two parts with
//! fees and price improvement, cancel, and the error paths (rejections exit
//! 2 with `rejected: REASON: ...`, an unreachable cluster exits 1 with one
//! `error:` line). Also the cluster commands (status, transfer-leader,
//! snapshot, compact, replace, status --watch) and the HTTP readiness probe.
//!
//! Every command runs as a separate `tallyctl --json` process, as an
//! operator's script would, and asserts on its exit code, JSON and stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tally_tests::{bin_path, free_port};

/// How long `tallyd dev` may take to print that the cluster is up.
const DEV_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at finding free ports and starting `tallyd dev`.
const DEV_START_ATTEMPTS: usize = 5;

/// A running `tallyd dev`: the parent process (leader of its own process
/// group) and its three `tallyd run` children. Killed on drop.
struct DevCluster {
    dev: Option<Child>,
    base_port: u16,
    node_pids: Vec<u32>,
    dir: tempfile::TempDir,
    /// Lines `tallyd dev` prints after startup.
    stdout: mpsc::Receiver<String>,
}

/// Whether 127.0.0.1:P..P+2 (gRPC) and P+1000..P+1002 (HTTP) are free now.
fn ports_free(base: u16) -> bool {
    let ports = (0..3).flat_map(|i| [base + i, base + 1000 + i]);
    let listeners: Vec<_> = ports.map(|p| TcpListener::bind(("127.0.0.1", p))).collect();
    listeners.iter().all(Result::is_ok)
}

fn random_base_port() -> u16 {
    loop {
        let base: u16 = rand::random_range(20_000..40_000);
        if ports_free(base) {
            return base;
        }
    }
}

fn signal(pid: i64, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", &pid.to_string()])
        .status();
}

/// Whether a process is gone (no /proc entry) or a zombie awaiting its parent.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // Format: pid (comm) state ...; comm may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

impl DevCluster {
    fn start() -> DevCluster {
        let mut last_error = String::new();
        for _ in 0..DEV_START_ATTEMPTS {
            match DevCluster::try_start(random_base_port()) {
                Ok(cluster) => return cluster,
                Err(e) => {
                    eprintln!("tallyd dev did not start: {e}; retrying on other ports");
                    last_error = e;
                }
            }
        }
        panic!("tallyd dev did not start in {DEV_START_ATTEMPTS} attempts: {last_error}");
    }

    fn try_start(base_port: u16) -> Result<DevCluster, String> {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr = std::fs::File::create(dir.path().join("dev.stderr")).expect("stderr file");
        let mut child = Command::new(bin_path("tallyd"))
            .arg("dev")
            .arg("--insecure")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--base-port", &base_port.to_string()])
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            // Its own process group, so the whole cluster can be signalled at once.
            .process_group(0)
            .spawn()
            .expect("spawn tallyd dev");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut cluster = DevCluster {
            dev: Some(child),
            base_port,
            node_pids: Vec::new(),
            dir,
            stdout: rx,
        };
        let deadline = Instant::now() + DEV_START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match cluster
                .stdout
                .recv_timeout(left.min(Duration::from_millis(500)))
            {
                Ok(line) => {
                    eprintln!("tallyd dev: {line}");
                    if let Some(pid) = line.split("(pid ").nth(1).and_then(|r| r.split(')').next())
                    {
                        cluster.node_pids.push(pid.parse().expect("pid"));
                    }
                    if line.contains("Tally dev cluster is up") {
                        assert_eq!(cluster.node_pids.len(), 3, "expected 3 node pids");
                        return Ok(cluster);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let stderr = std::fs::read_to_string(cluster.dir.path().join("dev.stderr"))
                        .unwrap_or_default();
                    return Err(format!("tallyd dev exited: {stderr}"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                    return Err("no 'Tally dev cluster is up' in time".to_string());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn endpoint(&self, node: u16) -> String {
        format!("127.0.0.1:{}", self.base_port + node - 1)
    }

    fn endpoints(&self) -> String {
        (1..=3)
            .map(|n| self.endpoint(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `tallyctl --endpoints <all> --json <args>`.
    fn ctl(&self, args: &[&str]) -> Ctl {
        ctl(&self.endpoints(), args)
    }

    /// Like [`DevCluster::ctl`], and the command must succeed.
    fn ok(&self, args: &[&str]) -> Value {
        let out = self.ctl(args);
        assert_eq!(out.code, 0, "tallyctl {args:?} failed: {out:?}");
        assert!(
            out.json.is_object(),
            "tallyctl {args:?}: stdout is not one JSON object: {}",
            out.stdout
        );
        out.json
    }

    /// SIGTERM to the whole process group; the parent and every node must exit.
    fn stop(mut self) {
        let mut dev = self.dev.take().expect("running");
        signal(-i64::from(dev.id()), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = dev.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "tallyd dev did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        eprintln!("tallyd dev exited: {status}");
        for pid in &self.node_pids {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !process_gone(*pid) {
                assert!(
                    Instant::now() < deadline,
                    "node process {pid} still running after tallyd dev exited"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        if let Some(mut dev) = self.dev.take() {
            signal(-i64::from(dev.id()), "-KILL");
            let _ = dev.wait();
        }
    }
}

/// The outcome of one `tallyctl` run.
#[derive(Debug)]
struct Ctl {
    code: i32,
    json: Value,
    stdout: String,
    stderr: String,
}

fn ctl(endpoints: &str, args: &[&str]) -> Ctl {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(bin_path("tallyctl"))
        .args(["--endpoints", endpoints, "--json"])
        .args(args)
        .env_remove("TALLY_ENDPOINTS")
        .output()
        .expect("run tallyctl");
    let stdout = String::from_utf8(stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8(stderr).expect("utf-8 stderr");
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    Ctl {
        code: status.code().unwrap_or(-1),
        json,
        stdout,
        stderr,
    }
}

/// `{"available", "locked"}` of one balance, read linearizably.
fn balance(c: &DevCluster, owner: &str, asset: &str) -> (String, String) {
    let j = c.ok(&["balance", owner, asset]);
    (
        j["available"].as_str().expect("available").to_string(),
        j["locked"].as_str().expect("locked").to_string(),
    )
}

fn pair(available: &str, locked: &str) -> (String, String) {
    (available.to_string(), locked.to_string())
}

/// The balance events of an applied write: (owner kind or account, asset, available, locked).
fn balance_events(j: &Value) -> Vec<(String, String, String, String)> {
    j["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "balance")
        .map(|e| {
            let owner = match e["owner"]["kind"].as_str() {
                Some("account") => e["owner"]["account"].to_string(),
                other => other.unwrap_or("?").to_string(),
            };
            let s = |k: &str| e[k].as_str().unwrap_or("?").to_string();
            (owner, s("asset"), s("available"), s("locked"))
        })
        .collect()
}

/// A raw HTTP/1.1 GET on 127.0.0.1:`port`; returns the status code and body.
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let code = response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

#[test]
fn trading_walkthrough_with_tallyctl_json_against_tallyd_dev_gives_exact_balances_and_clear_errors()
{
    let c = DevCluster::start();

    // Health: every node's /readyz answers 200 once it knows the leader and has applied its commits.
    for node in 0..3 {
        let port = c.base_port + 1000 + node;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match http_get(port, "/readyz") {
                Ok((200, body)) => {
                    assert_eq!(body.trim(), "ready");
                    break;
                }
                other => assert!(Instant::now() < deadline, "/readyz on {port}: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(http_get(port, "/healthz").expect("healthz").0, 200);
    }

    // The cluster: three voters, exactly one leader.
    let status = c.ok(&["cluster", "status"]);
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{status}");
    let leaders: Vec<&Value> = nodes.iter().filter(|n| n["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{status}");
    assert_eq!(leaders[0]["node_id"], status["leader_id"]);
    assert_eq!(status["voters"].as_array().map(Vec::len), Some(3));
    assert!(
        nodes
            .iter()
            .all(|n| n["lag"].is_u64() && n["version"] != ""),
        "{status}"
    );

    // Assets and accounts.
    let j = c.ok(&["asset", "create", "BTC", "8"]);
    assert_eq!(j["status"], "applied");
    assert_eq!(j["events"][0]["type"], "asset_created");
    c.ok(&["asset", "create", "USDT", "6"]);
    c.ok(&["account", "create", "1"]);
    c.ok(&["account", "create", "2"]);

    // Deposits: buyer 1 gets 100000 USDT, seller 2 gets 2 BTC.
    let j = c.ok(&["deposit", "1", "USDT", "100000", "--id", "dep-usdt-1"]);
    let deposit_index = j["applied_index"].as_u64().expect("applied_index");
    assert!(deposit_index > 0);
    assert_eq!(
        balance_events(&j),
        [
            (
                "1".into(),
                "USDT".into(),
                "100000.000000".into(),
                "0.000000".into()
            ),
            (
                "external".into(),
                "USDT".into(),
                "-100000.000000".into(),
                "0.000000".into()
            ),
        ]
    );
    // The same command id again: the remembered outcome, nothing applied twice.
    let again = c.ok(&["deposit", "1", "USDT", "100000", "--id", "dep-usdt-1"]);
    assert_eq!(again["duplicate"], true, "{again}");
    c.ok(&["deposit", "2", "BTC", "2"]);
    assert_eq!(balance(&c, "1", "USDT"), pair("100000.000000", "0.000000"));

    // Orders: buy 1 BTC at up to 31000 USDT (hold 101), sell 1 BTC (hold 202).
    c.ok(&["lock", "101", "1", "USDT", "31000"]);
    c.ok(&["lock", "202", "2", "BTC", "1"]);
    assert_eq!(
        balance(&c, "1", "USDT"),
        pair("69000.000000", "31000.000000")
    );
    assert_eq!(balance(&c, "2", "BTC"), pair("1.00000000", "1.00000000"));

    // Two partial fills at 30000 (better than the buyer's limit), with fees.
    let fill = |amount: &str, buyer_fee: &str, seller_fee: &str| {
        c.ok(&[
            "fill",
            "--buy-hold",
            "101",
            "--sell-hold",
            "202",
            "--amount",
            amount,
            "--price",
            "30000",
            "--buyer-fee",
            buyer_fee,
            "--seller-fee",
            seller_fee,
        ])
    };
    let j = fill("0.4", "0.0004", "12");
    let fill_event = j["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["type"] == "fill")
        .cloned();
    let fill_event = fill_event.expect("a fill event");
    assert_eq!(fill_event["quote_amount"], "12000.000000", "{j}");
    assert_eq!(
        (fill_event["buyer"].as_u64(), fill_event["seller"].as_u64()),
        (Some(1), Some(2))
    );
    fill("0.35", "0.00035", "10.5");

    // 0.75 BTC traded for 22500 USDT. The buy hold keeps 31000 - 22500 = 8500
    // (price improvement stays on the hold); the sell hold keeps 0.25 BTC.
    let hold = c.ok(&["hold", "101"]);
    assert_eq!(
        (hold["amount"].as_str(), hold["remaining"].as_str()),
        (Some("31000.000000"), Some("8500.000000"))
    );
    assert_eq!(c.ok(&["hold", "202"])["remaining"], "0.25000000");
    assert_eq!(
        balance(&c, "1", "USDT"),
        pair("69000.000000", "8500.000000")
    );
    assert_eq!(balance(&c, "1", "BTC"), pair("0.74925000", "0.00000000"));
    assert_eq!(balance(&c, "2", "BTC"), pair("1.00000000", "0.25000000"));
    assert_eq!(balance(&c, "2", "USDT"), pair("22477.500000", "0.000000"));

    // Cancel both orders: the remainders return to available.
    c.ok(&["release", "101"]);
    c.ok(&["cancel", "202"]);
    let missing = c.ctl(&["hold", "101"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing.stderr.starts_with("error: not found"),
        "{missing:?}"
    );

    // Final balances, exact to the asset's scale; every asset sums to zero.
    let account = |id: &str| -> Vec<(String, String, String)> {
        let j = c.ok(&["account", id]);
        assert_eq!(
            j["account"].as_u64().map(|a| a.to_string()).as_deref(),
            Some(id)
        );
        let mut rows: Vec<(String, String, String)> = j["balances"]
            .as_array()
            .expect("balances")
            .iter()
            .map(|b| {
                let s = |k: &str| b[k].as_str().expect("string").to_string();
                (s("asset"), s("available"), s("locked"))
            })
            .collect();
        rows.sort();
        rows
    };
    let row = |a: &str, v: &str, l: &str| (a.to_string(), v.to_string(), l.to_string());
    assert_eq!(
        account("1"),
        [
            row("BTC", "0.74925000", "0.00000000"),
            row("USDT", "77500.000000", "0.000000")
        ]
    );
    assert_eq!(
        account("2"),
        [
            row("BTC", "1.25000000", "0.00000000"),
            row("USDT", "22477.500000", "0.000000")
        ]
    );
    assert_eq!(balance(&c, "fees", "BTC"), pair("0.00075000", "0.00000000"));
    assert_eq!(balance(&c, "fees", "USDT"), pair("22.500000", "0.000000"));
    assert_eq!(balance(&c, "external", "BTC").0, "-2.00000000");
    assert_eq!(balance(&c, "external", "USDT").0, "-100000.000000");

    // Rejected: withdrawing more than is available exits 2, says why on one
    // stderr line, and changes nothing.
    let before = c.ok(&["balance", "1", "USDT"]);
    let out = c.ctl(&["withdraw", "1", "USDT", "1000000"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.starts_with("rejected: INSUFFICIENT_FUNDS: "),
        "{out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert_eq!(out.json["status"], "rejected");
    assert_eq!(out.json["reason"], "INSUFFICIENT_FUNDS");
    let after = c.ok(&["balance", "1", "USDT"]);
    assert_eq!(
        (&after["available"], &after["locked"]),
        (&before["available"], &before["locked"])
    );
    assert_eq!(after["available"], "77500.000000");

    // Too many decimals for the asset: refused by the ledger, never rounded.
    let out = c.ctl(&["deposit", "1", "USDT", "0.0000001"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("rejected: "), "{out:?}");

    // Read-your-writes through any node with the index a write printed.
    let j = c.ok(&["deposit", "2", "USDT", "0.5"]);
    let index = j["applied_index"].as_u64().expect("index").to_string();
    for node in 1..=3 {
        let out = ctl(
            &c.endpoint(node),
            &["balance", "2", "USDT", "--min-index", &index],
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.json["available"], "22478.000000");
        assert!(out.json["applied_index"].as_u64() >= index.parse().ok());
    }

    // Unreachable: exit 1 and exactly one `error:` line.
    let dead = format!("127.0.0.1:{}", free_port());
    let out = ctl(&dead, &["--timeout-ms", "500", "balance", "1", "USDT"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.starts_with("error: "), "{out:?}");
    assert_eq!(out.json["reason"], "UNAVAILABLE");
    let out = ctl(&dead, &["--timeout-ms", "500", "deposit", "1", "USDT", "1"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("not sent"),
        "{out:?}"
    );

    c.stop();
}

#[test]
fn cluster_commands_transfer_leadership_snapshot_compact_replace_and_watch_status() {
    let c = DevCluster::start();
    c.ok(&["asset", "create", "USDT", "6"]);
    c.ok(&["account", "create", "1"]);
    for _ in 0..20 {
        c.ok(&["deposit", "1", "USDT", "1"]);
    }

    // Help for every new command.
    for cmd in [
        "transfer-leader",
        "replace",
        "snapshot",
        "compact",
        "status",
    ] {
        let out = Command::new(bin_path("tallyctl"))
            .args(["cluster", cmd, "--help"])
            .output()
            .expect("help");
        assert!(out.status.success(), "{cmd} --help");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains("Usage: tallyctl cluster"), "{cmd}: {text}");
    }

    // Move leadership to each of the other two nodes in turn.
    let leader = c.ok(&["cluster", "status"])["leader_id"]
        .as_u64()
        .expect("leader");
    for target in (1..=3u64).filter(|n| *n != leader) {
        let j = c.ok(&["cluster", "transfer-leader", &target.to_string()]);
        assert_eq!(j["leader_id"].as_u64(), Some(target), "{j}");
        assert_eq!(
            c.ok(&["cluster", "status"])["leader_id"].as_u64(),
            Some(target)
        );
        c.ok(&["deposit", "1", "USDT", "1"]);
    }
    assert_eq!(c.ok(&["balance", "1", "USDT"])["available"], "22.000000");
    let out = c.ctl(&["cluster", "transfer-leader", "9"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("NOT_A_VOTER"), "{out:?}");

    // Snapshot every node, then compact one.
    let j = c.ok(&["cluster", "snapshot"]);
    let snapshots = j["nodes"].as_array().expect("nodes");
    assert_eq!(snapshots.len(), 3, "{j}");
    assert!(
        snapshots
            .iter()
            .all(|n| n["snapshot_index"].as_u64() > Some(0)),
        "{j}"
    );
    let node2 = c.endpoint(2);
    let j = c.ok(&["cluster", "compact", "--node", &node2]);
    assert_eq!(j["nodes"][0]["node"], node2.as_str());
    assert!(j["nodes"][0]["purged_index"].as_u64() > Some(0), "{j}");
    let status = c.ok(&["cluster", "status"]);
    let n2 = status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node_id"] == 2)
        .cloned()
        .expect("node 2");
    assert!(
        n2["purged_index"].as_u64() > Some(0) && n2["snapshot_index"].as_u64() > Some(0),
        "{n2}"
    );

    // Replace node 3 by a new node 4 (started by hand, as an operator would).
    let addr4 = format!("127.0.0.1:{}", free_port());
    let data4 = c.dir.path().join("node-4");
    std::fs::create_dir_all(&data4).expect("mkdir");
    let log4 = std::fs::File::create(data4.join("tallyd.log")).expect("log");
    let mut node4 = Command::new(bin_path("tallyd"))
        .args([
            "run",
            "--insecure",
            "--node-id",
            "4",
            "--listen",
            &addr4,
            "--cluster-id",
            "tally-dev",
        ])
        .arg("--data-dir")
        .arg(&data4)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log4.try_clone().expect("log")))
        .stderr(Stdio::from(log4))
        .spawn()
        .expect("spawn node 4");
    struct KillOnDrop<'a>(&'a mut Child);
    impl Drop for KillOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _node4 = KillOnDrop(&mut node4);
    let j = c.ok(&[
        "--timeout-ms",
        "60000",
        "cluster",
        "replace",
        "3",
        "4",
        &addr4,
    ]);
    let voters: Vec<u64> = j["voters"]
        .as_array()
        .expect("voters")
        .iter()
        .filter_map(|v| v["node_id"].as_u64())
        .collect();
    assert_eq!(j["action"], "replace");
    assert!(
        voters.contains(&4) && !voters.contains(&3) && voters.len() == 3,
        "{j}"
    );
    // Node 3's id is retired for good.
    let out = c.ctl(&["cluster", "add-learner", "3", &c.endpoint(3)]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("NODE_ID_RETIRED"), "{out:?}");
    let j = c.ok(&["deposit", "1", "USDT", "1"]);
    let index = j["applied_index"].as_u64().expect("index").to_string();
    let out = ctl(&addr4, &["balance", "1", "USDT", "--min-index", &index]);
    assert_eq!(out.json["available"], "23.000000", "{out:?}");
    assert_eq!(out.json["served_by"], 4);

    // status --watch --json: one object per refresh until Ctrl-C, then exit 0.
    let mut watch = Command::new(bin_path("tallyctl"))
        .args([
            "--endpoints",
            &c.endpoints(),
            "--json",
            "cluster",
            "status",
            "--watch",
            "--interval-ms",
            "200",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let started = Instant::now();
    for refresh in 1..=3u64 {
        let line = lines.next().expect("a refresh").expect("read");
        let j: Value = serde_json::from_str(&line).expect("one JSON object per line");
        assert_eq!(j["refresh"], refresh, "{j}");
        // The members: voters 1, 2 and 4 (node 3 was replaced).
        assert_eq!(j["nodes"].as_array().map(Vec::len), Some(3), "{j}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "refreshes too fast: {:?}",
        started.elapsed()
    );
    signal(i64::from(watch.id()), "-INT");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = watch.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "watch did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "watch exit");

    // Text mode: a header line per refresh and the table.
    let out = Command::new(bin_path("tallyctl"))
        .args(["--endpoints", &c.endpoints(), "cluster", "status"])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let header = text.lines().nth(1).unwrap_or_default();
    for column in [
        "ROLE", "TERM", "LAST LOG", "APPLIED", "LAG", "SNAPSHOT", "DATA", "VERSION",
    ] {
        assert!(header.contains(column), "{column} missing: {text}");
    }
    drop(_node4);
    c.stop();
}

/// A local TCP listener that accepts connections and never says a word:
/// an address that does not answer, as far as gRPC is concerned. Its
/// connections are held open until the test ends.
fn mute_listener() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            match conn {
                Ok(conn) => held.push(conn),
                Err(_) => break,
            }
        }
    });
    addr
}

/// Asserts a definite "not sent": exit 1 and the JSON status/reason.
fn assert_not_sent(what: &str, out: &Ctl, status: &str, reason: &str) {
    assert_eq!(out.code, 1, "{what}: exit 1 (not sent), never 3: {out:?}");
    assert_eq!(out.json["status"], status, "{what}: {out:?}");
    assert_eq!(out.json["reason"], reason, "{what}: {out:?}");
    assert!(
        out.stderr.starts_with("error: ") && !out.stderr.contains("outcome unknown"),
        "{what}: {out:?}"
    );
}

#[test]
fn refused_port_dns_failure_and_mute_listener_exit_1_not_sent_never_3_and_slow_admin_commands_stop_at_the_connect_timeout()
 {
    let refused = format!("127.0.0.1:{}", free_port());
    let mute = mute_listener();
    for (what, endpoint) in [
        ("connection refused", refused.as_str()),
        ("unresolvable host", "nonexistent.invalid:50051"),
        ("listener that never answers", mute.as_str()),
    ] {
        let write = ctl(
            endpoint,
            &[
                "--timeout-ms",
                "1500",
                "--connect-timeout-ms",
                "300",
                "deposit",
                "1",
                "BTC",
                "1",
                "--id",
                "never-sent",
            ],
        );
        assert_not_sent(what, &write, "not_sent", "NOT_SENT");
        assert_eq!(write.json["command_id"], "never-sent", "{what}");
        // Slow admin commands default to a 120 s budget; an address that
        // cannot be connected to ends them after the connect timeout.
        for args in [
            &["cluster", "promote", "2"][..],
            &["cluster", "transfer-leader", "2"],
            &["cluster", "snapshot"],
        ] {
            let started = Instant::now();
            let mut all = vec!["--connect-timeout-ms", "300"];
            all.extend_from_slice(args);
            let out = ctl(endpoint, &all);
            let took = started.elapsed();
            assert_eq!(out.code, 1, "{what}: {args:?}: {out:?}");
            assert!(
                took < Duration::from_secs(10),
                "{what}: {args:?} took {took:?}, not bounded by the connect timeout: {out:?}"
            );
            assert!(!out.stderr.contains("may or may not"), "{what}: {out:?}");
        }
    }
    // The flag is checked like the other budgets.
    let out = ctl(&refused, &["--connect-timeout-ms", "0", "hold", "1"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json["reason"], "USAGE", "{out:?}");
}

#[test]
fn amounts_with_too_many_digits_are_refused_as_amount_too_large_or_bad_precision_not_malformed_decimal()
 {
    // Checked by tallyctl before anything is sent (no cluster needed).
    let refused = format!("127.0.0.1:{}", free_port());
    let too_large = "1".repeat(31);
    let too_precise = "0.0000000000000000001";
    let long_fraction = format!("1.{}", "5".repeat(70));
    for (amount, reason) in [
        (too_large.as_str(), "AMOUNT_TOO_LARGE"),
        (too_precise, "BAD_PRECISION"),
        (long_fraction.as_str(), "BAD_PRECISION"),
        ("1.2.3", "MALFORMED_DECIMAL"),
        ("12abc", "MALFORMED_DECIMAL"),
    ] {
        let out = ctl(&refused, &["deposit", "1", "BTC", amount]);
        assert_eq!(out.code, 1, "{amount}: {out:?}");
        assert_eq!(out.json["reason"], reason, "{amount}: {out:?}");
        assert!(
            out.stderr.contains(&format!("{reason}: ")) && out.stderr.lines().count() == 1,
            "{amount}: {out:?}"
        );
    }
}

#[test]
fn the_http_health_port_of_a_real_node_is_not_sent_exit_1_and_write_text_shows_old_to_new() {
    let c = DevCluster::start();
    let http = format!("127.0.0.1:{}", c.base_port + 1000);
    assert_eq!(
        http_get(c.base_port + 1000, "/healthz").expect("healthz").0,
        200
    );

    // The node's HTTP/1.1 health port is no gRPC endpoint: nothing reaches a Tally node.
    let write = ctl(
        &http,
        &[
            "--timeout-ms",
            "1500",
            "--connect-timeout-ms",
            "300",
            "deposit",
            "1",
            "BTC",
            "1",
        ],
    );
    assert_not_sent("HTTP health port", &write, "not_sent", "NOT_SENT");
    assert!(
        write.stderr.contains("HTTP/2"),
        "says why: {}",
        write.stderr
    );
    let started = Instant::now();
    let promote = ctl(
        &http,
        &["--connect-timeout-ms", "300", "cluster", "promote", "2"],
    );
    assert_not_sent(
        "HTTP health port, promote",
        &promote,
        "error",
        "UNAVAILABLE",
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{promote:?}");
    // The real gRPC port of the same node still works.
    c.ok(&["asset", "create", "BTC", "8"]);
    c.ok(&["account", "create", "1"]);

    // Text output of a write: old -> new (delta) per balance, unchanged sides say so.
    let text = |args: &[&str]| {
        let out = Command::new(bin_path("tallyctl"))
            .args(["--endpoints", &c.endpoints()])
            .args(args)
            .env_remove("TALLY_ENDPOINTS")
            .output()
            .expect("tallyctl");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let deposit = text(&["deposit", "1", "BTC", "2.5"]);
    let lines: Vec<&str> = deposit.lines().map(str::trim).collect();
    assert!(lines[0].starts_with("applied "), "{deposit}");
    let account = lines
        .iter()
        .find(|l| l.starts_with("account 1 "))
        .expect("account line");
    assert!(
        account.contains("available 0.00000000 -> 2.50000000 (+2.50000000)")
            && account.contains("locked 0.00000000 (unchanged)"),
        "{deposit}"
    );
    let external = lines
        .iter()
        .find(|l| l.starts_with("external "))
        .expect("external line");
    assert!(
        external.contains("available 0.00000000 -> -2.50000000 (-2.50000000)"),
        "{deposit}"
    );
    let lock = text(&["lock", "7", "1", "BTC", "1"]);
    let account = lock
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("account 1 "))
        .expect("account line");
    assert!(
        account.contains("available 2.50000000 -> 1.50000000 (-1.00000000)")
            && account.contains("locked 0.00000000 -> 1.00000000 (+1.00000000)"),
        "{lock}"
    );
    c.stop();
}
