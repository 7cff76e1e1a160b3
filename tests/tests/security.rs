//! TLS, mTLS and roles on a real 3-node cluster (separate `tallyd`
//! processes, TLS on every connection): callers without a certificate,
//! with a certificate from another CA, or with a role that lacks the right
//! are refused with PERMISSION_DENIED for every RPC family and change
//! nothing; a node with a foreign certificate never receives the log,
//! cannot be promoted and its votes are refused; admin calls and refusals
//! land in the audit log; a re-issued certificate is picked up without a
//! restart; and `tallyd dev` runs TLS by default with tallyctl on top.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tally_client::proto::v1 as pb;
use tally_client::{
    Client, ClientConfig, ClientTls, ReadOptions, WriteResult, commands, raw_channel,
};
use tally_tests::{Cluster, bin_path, free_port};
use tally_tls::issue::{open_or_create_ca, write_issued};
use tally_tls::{Role, RoleSet};
use tonic::Code;

fn client(c: &Cluster, tls: ClientTls) -> Client {
    Client::new(ClientConfig {
        tls: Some(tls),
        ..ClientConfig::new(c.endpoints())
    })
    .expect("client")
}

fn applied(result: WriteResult) {
    assert!(
        matches!(result, WriteResult::Applied { .. }),
        "not applied: {result:?}"
    );
}

/// The RPC families, one representative call each, through raw stubs.
#[derive(Clone, Copy, Debug)]
enum Family {
    LedgerWrite,
    LedgerRead,
    Perps,
    Admin,
    Raft,
}

const FAMILIES: [Family; 5] = [
    Family::LedgerWrite,
    Family::LedgerRead,
    Family::Perps,
    Family::Admin,
    Family::Raft,
];

/// Calls `family` on `addr` as `tls`; the status on failure.
async fn call(addr: &str, tls: &ClientTls, family: Family) -> Result<(), tonic::Status> {
    let channel = raw_channel(addr, Duration::from_secs(2), Some(tls)).expect("channel");
    let timeout = Duration::from_secs(5);
    match family {
        Family::LedgerWrite => {
            let mut stub = pb::ledger_client::LedgerClient::new(channel);
            let mut req = tonic::Request::new(pb::SubmitRequest {
                command: Some(commands::deposit(1, "BTC", "5")),
                ..Default::default()
            });
            req.set_timeout(timeout);
            stub.submit(req).await.map(|_| ())
        }
        Family::LedgerRead => {
            let mut stub = pb::ledger_client::LedgerClient::new(channel);
            let mut req = tonic::Request::new(pb::GetStateHashRequest { read: None });
            req.set_timeout(timeout);
            stub.get_state_hash(req).await.map(|_| ())
        }
        Family::Perps => {
            let mut stub = pb::perps_client::PerpsClient::new(channel);
            let mut req = tonic::Request::new(pb::GetMarketRequest {
                market: "BTC-PERP".into(),
                ..Default::default()
            });
            req.set_timeout(timeout);
            stub.get_market(req).await.map(|_| ())
        }
        Family::Admin => {
            let mut stub = pb::admin_client::AdminClient::new(channel);
            let mut req = tonic::Request::new(pb::AddLearnerRequest {
                member: Some(pb::Member {
                    node_id: 77,
                    addr: "127.0.0.1:1".into(),
                }),
            });
            req.set_timeout(timeout);
            stub.add_learner(req).await.map(|_| ())
        }
        Family::Raft => {
            let mut stub = pb::raft_client::RaftClient::new(channel);
            let mut req = tonic::Request::new(pb::RaftPayload::default());
            req.set_timeout(timeout);
            stub.vote(req).await.map(|_| ())
        }
    }
}

fn assert_denied(outcome: Result<(), tonic::Status>, who: &str, family: Family) {
    let status = match outcome {
        Ok(()) => panic!("{who} was allowed to call {family:?}"),
        Err(status) => status,
    };
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{who} / {family:?}: {status:?}"
    );
    assert_eq!(
        status
            .metadata()
            .get(tally_client::proto::REASON_METADATA_KEY)
            .and_then(|v| v.to_str().ok()),
        Some("PERMISSION_DENIED"),
        "{who} / {family:?}: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_foreign_and_underprivileged_callers_are_refused_for_every_rpc_family_and_change_nothing()
 {
    let c = Cluster::start_tls(3, &[]).await;
    let tls = c.tls.as_ref().expect("tls");
    // A certificate from the cluster CA with no role at all.
    let (ca, _) = open_or_create_ca(&tls.dir, "test CA").expect("CA");
    write_issued(&ca, &tls.dir, "nobody", RoleSet::default(), &[]).expect("cert");
    // A certificate (role admin) from another CA, presented by a client that
    // trusts the cluster CA (so the handshake reaches the node).
    let foreign_dir = c.dir.path().join("foreign");
    let (foreign_ca, _) = open_or_create_ca(&foreign_dir, "foreign CA").expect("CA");
    let (fcert, fkey) = write_issued(
        &foreign_ca,
        &foreign_dir,
        "intruder",
        RoleSet::of(&[Role::Admin, Role::Node, Role::Trader]),
        &["127.0.0.1".into()],
    )
    .expect("cert");
    let foreign = ClientTls::from_files(&tls.ca(), Some((&fcert, &fkey))).expect("tls");

    // Allowed calls work (so the refusals below are about rights).
    let admin = client(&c, tls.client("admin"));
    let trader = client(&c, tls.client("trader"));
    applied(admin.submit(commands::create_asset("BTC", 8)).await);
    applied(trader.submit(commands::create_account(1)).await);
    applied(trader.submit(commands::deposit(1, "BTC", "1.5")).await);
    let leader = c.addr(c.wait_leader(Duration::from_secs(10)).await);
    for (name, family) in [
        ("reader", Family::LedgerRead),
        ("risk", Family::LedgerRead),
        ("admin", Family::LedgerRead),
    ] {
        call(&leader, &tls.client(name), family)
            .await
            .unwrap_or_else(|s| panic!("{name} {family:?}: {s:?}"));
    }
    // Perps: the market does not exist, so NOT_FOUND: past authorization.
    let perps = call(&leader, &tls.client("reader"), Family::Perps).await;
    assert_eq!(perps.expect_err("no market").code(), Code::NotFound);

    let before = c.state_hashes(0).await;
    let lacking = |family: Family| match family {
        Family::LedgerWrite => "reader",
        Family::LedgerRead => "nobody",
        Family::Perps => "trader",
        Family::Admin => "trader",
        Family::Raft => "admin",
    };
    for addr in c.endpoints() {
        for family in FAMILIES {
            assert_denied(
                call(&addr, &tls.anonymous(), family).await,
                "no certificate",
                family,
            );
            assert_denied(call(&addr, &foreign, family).await, "foreign CA", family);
            let name = lacking(family);
            assert_denied(call(&addr, &tls.client(name), family).await, name, family);
        }
    }
    // Per command: risk may submit, but not a deposit; a trader's batch
    // with one risk command is refused whole.
    let risk_deposit = call(&leader, &tls.client("risk"), Family::LedgerWrite).await;
    assert_denied(risk_deposit, "risk", Family::LedgerWrite);
    let mut stub = pb::ledger_client::LedgerClient::new(
        raw_channel(&leader, Duration::from_secs(2), Some(&tls.client("trader"))).expect("ch"),
    );
    let mixed = stub
        .submit_batch(pb::SubmitBatchRequest {
            commands: vec![
                commands::deposit(1, "BTC", "7"),
                commands::set_mark_price("BTC-PERP", "100"),
            ],
            ..Default::default()
        })
        .await;
    let status = mixed.expect_err("mixed batch refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("command 1"), "{status:?}");

    // Nothing changed on any node: same state hashes at the same index.
    let after = c.state_hashes(0).await;
    assert_eq!(before, after, "a refused call changed the state");
    let balance = trader
        .balance(1, "BTC", ReadOptions::default())
        .await
        .expect("balance");
    assert_eq!(balance.balance.expect("balance").available, "1.50000000");

    // The audit log of the leader: the refused admin call, with who and why.
    let leader_id = c.wait_leader(Duration::from_secs(10)).await;
    let audit =
        std::fs::read_to_string(c.nodes[&leader_id].data_dir.join("audit.log")).expect("audit log");
    let entries: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(
        entries.iter().any(|e| e["what"] == "Admin/AddLearner"
            && e["result"] == "PERMISSION_DENIED"
            && e["who"].as_str().is_some_and(|w| w.contains("trader"))),
        "{audit}"
    );
    assert!(
        entries.iter().any(|e| e["result"] == "PERMISSION_DENIED"
            && e["who"] == "anonymous (no client certificate)"),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_a_foreign_certificate_gets_no_log_cannot_be_promoted_and_admin_calls_are_audited()
 {
    let mut c = Cluster::start_tls(3, &[]).await;
    let tls = c.tls.as_ref().expect("tls");
    let admin = client(&c, tls.client("admin"));
    let trader = client(&c, tls.client("trader"));
    applied(admin.submit(commands::create_asset("BTC", 8)).await);
    applied(trader.submit(commands::create_account(1)).await);
    // Node 4 runs with its own CA: it trusts nobody here and nobody trusts it.
    let foreign_dir = c.dir.path().join("foreign");
    let (foreign_ca, _) = open_or_create_ca(&foreign_dir, "foreign CA").expect("CA");
    let (cert, key) = write_issued(
        &foreign_ca,
        &foreign_dir,
        "node-4",
        RoleSet::of(&[Role::Node]),
        &["127.0.0.1".into()],
    )
    .expect("cert");
    c.node_args.insert(
        4,
        vec![
            "--tls-ca".into(),
            foreign_dir.join("ca.pem").display().to_string(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ],
    );
    let saved = c.tls.take();
    let addr4 = c.add_node_process(4);
    c.tls = saved;
    // Its own CA's admin may ask it for status; the cluster's may not reach it.
    let (own_admin, own_key) = write_issued(
        &foreign_ca,
        &foreign_dir,
        "admin4",
        RoleSet::of(&[Role::Admin]),
        &[],
    )
    .expect("cert");
    let own = ClientTls::from_files(&foreign_dir.join("ca.pem"), Some((&own_admin, &own_key)))
        .expect("tls");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ch = raw_channel(&addr4, Duration::from_secs(1), Some(&own)).expect("ch");
        if pb::admin_client::AdminClient::new(ch)
            .get_node_status(pb::NodeStatusRequest::default())
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "node 4 did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin
        .add_learner(4, addr4.clone())
        .await
        .expect("learner entry");
    for i in 0..20 {
        applied(trader.submit(commands::deposit(1, "BTC", "1")).await);
        if i == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ch = raw_channel(&addr4, Duration::from_secs(1), Some(&own)).expect("ch");
    let st4 = pb::admin_client::AdminClient::new(ch)
        .get_node_status(pb::NodeStatusRequest::default())
        .await
        .expect("status of node 4")
        .into_inner();
    assert_eq!(st4.applied_index, 0, "node 4 received the log: {st4:?}");
    let promote = tokio::time::timeout(Duration::from_secs(30), admin.promote(4)).await;
    assert!(
        !matches!(promote, Ok(Ok(_))),
        "a node the cluster cannot verify was promoted: {promote:?}"
    );
    let status = admin.cluster_status().await.expect("status");
    let voters: Vec<u64> = status
        .nodes
        .iter()
        .filter(|n| n.voter)
        .map(|n| n.node_id)
        .collect();
    assert_eq!(voters, vec![1, 2, 3], "{status:?}");
    // The leader logs why it cannot replicate to node 4.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let log =
        std::fs::read_to_string(c.nodes[&leader].data_dir.join("tallyd.log")).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains("peer unreachable")
            && l.contains("peer=4")
            && l.contains("certificate")),
        "{}",
        c.log_tail(leader)
    );
    // Admin calls are audited with who and the result.
    let audit =
        std::fs::read_to_string(c.nodes[&leader].data_dir.join("audit.log")).expect("audit");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"what\":\"Admin/AddLearner\"")
                && l.contains("\"result\":\"OK\"")
                && l.contains("admin [admin]")),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reissued_node_certificate_is_served_without_a_restart() {
    let c = Cluster::start_tls(3, &["--tls-reload-interval-ms", "200"]).await;
    let tls = c.tls.as_ref().expect("tls");
    let admin = client(&c, tls.client("admin"));
    applied(admin.submit(commands::create_asset("BTC", 8)).await);
    let addr = c.addr(2);
    let pid_before = c.nodes[&2].child.as_ref().map(|ch| ch.id());
    // Re-issue node 2's certificate for a name clients do not dial: new
    // connections to it must then fail verification, without a restart.
    let (ca, _) = open_or_create_ca(&tls.dir, "test CA").expect("CA");
    write_issued(
        &ca,
        &tls.dir,
        "node-2",
        RoleSet::of(&[Role::Node]),
        &["elsewhere.example".into()],
    )
    .expect("cert");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = tls.client("reader");
        let outcome = call(&addr, &fresh, Family::LedgerRead).await;
        if let Err(status) = &outcome
            && status.code() == Code::Unavailable
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served: {outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back to a valid certificate: served again, same process.
    tally_tls::issue::write_issued(
        &ca,
        &tls.dir,
        "node-2",
        RoleSet::of(&[Role::Node]),
        &["127.0.0.1".into()],
    )
    .expect("cert");
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&addr, &tls.client("reader"), Family::LedgerRead)
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the restored certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.nodes[&2].child.as_ref().map(|ch| ch.id()), pid_before);
    let log = std::fs::read_to_string(c.nodes[&2].data_dir.join("tallyd.log")).unwrap_or_default();
    assert!(
        log.contains("TLS certificates reloaded"),
        "{}",
        c.log_tail(2)
    );
}

#[test]
fn tallyd_dev_runs_tls_by_default_and_tallyctl_uses_the_printed_certificates() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port();
    // free_port leaves its neighbours to chance; dev needs base..base+2 and +1000.
    let mut dev = Command::new(bin_path("tallyd"))
        .args(["dev", "--base-port", &base.to_string(), "--data-dir"])
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("tallyd dev");
    let stdout = dev.stdout.take().expect("stdout");
    // Drained for the supervisor's whole life (it prints more later).
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut env = Vec::new();
    let mut up = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    while (!up || env.is_empty()) && Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if let Some(rest) = line.trim().strip_prefix("export ") {
            for kv in rest.split_whitespace() {
                if let Some((k, v)) = kv.split_once('=') {
                    env.push((k.to_string(), v.to_string()));
                }
            }
        }
        up |= line.contains("Tally dev cluster is up");
    }
    let endpoints = (0..3)
        .map(|i| format!("127.0.0.1:{}", base + i))
        .collect::<Vec<_>>()
        .join(",");
    let ctl = |args: &[&str], with_tls: bool| {
        let mut cmd = Command::new(bin_path("tallyctl"));
        cmd.args(["--endpoints", &endpoints, "--json", "--timeout-ms", "3000"])
            .args(args)
            .env_remove("TALLY_TLS_CA")
            .env_remove("TALLY_TLS_CERT")
            .env_remove("TALLY_TLS_KEY");
        if with_tls {
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
        }
        cmd.output().expect("tallyctl")
    };
    let result = std::panic::catch_unwind(|| {
        assert!(up, "tallyd dev did not come up");
        assert_eq!(env.len(), 3, "no TALLY_TLS_* line in the banner: {env:?}");
        for args in [
            &["asset", "create", "BTC", "8"][..],
            &["account", "create", "1"],
            &["deposit", "1", "BTC", "1.5"],
        ] {
            let out = ctl(args, true);
            assert!(out.status.success(), "{args:?}: {out:?}");
        }
        let out = ctl(&["balance", "1", "BTC"], true);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(json["available"], "1.50000000", "{json}");
        // Plaintext against the TLS cluster: refused, nothing sent.
        let out = ctl(&["deposit", "1", "BTC", "1"], false);
        assert!(!out.status.success(), "{out:?}");
    });
    let group = format!("-{}", dev.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = dev.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
