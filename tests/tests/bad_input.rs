//! Bad input against a real cluster: malformed requests get INVALID_ARGUMENT
//! with a machine-readable reason, engine refusals come back as definite
//! rejections, and none of them changes the state hash. A node pointed at
//! another node's or cluster's data dir refuses to start.

use std::process::Command;
use std::time::Duration;

use tally_client::{Client, ClientConfig, Owner, ReadOptions, WriteResult, commands};
use tally_proto::REASON_METADATA_KEY;
use tally_proto::v1::ledger_client::LedgerClient;
use tally_proto::v1::{Command as PbCommand, GetAccountRequest, SubmitBatchRequest, SubmitRequest};
use tally_tests::{Cluster, bin_path, free_port};

fn reason(s: &tonic::Status) -> String {
    s.metadata()
        .get(REASON_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_and_engine_refusals_change_nothing() {
    let cluster = Cluster::start(3, &[]).await;
    let c = Client::new(ClientConfig::new(cluster.endpoints())).expect("client");
    for cmd in [
        commands::create_asset("BTC", 8),
        commands::create_account(1),
        commands::deposit(1, "BTC", "1"),
    ] {
        assert!(c.submit(cmd).await.is_applied());
    }
    // "Changes nothing": no balance, account or hold moves. (The state hash does move: the
    // ledger remembers each refused command id so a retry gets the same refusal.)
    let snapshot = || async {
        let account = c
            .account(1, ReadOptions::linearizable())
            .await
            .expect("account")
            .balances;
        let external = c
            .balance(Owner::External, "BTC", ReadOptions::linearizable())
            .await
            .expect("external")
            .balance;
        let hash = c
            .state_hash(ReadOptions::linearizable())
            .await
            .expect("hash");
        (
            format!("{account:?}"),
            format!("{external:?}"),
            hash.accounts,
            hash.open_holds,
        )
    };
    let before = snapshot().await;

    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let mut raw = LedgerClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .expect("connect");

    // Malformed on the wire: refused at the edge.
    let bad_decimal = commands::deposit(1, "BTC", "1.2.3");
    let s = raw
        .submit(SubmitRequest {
            command: Some(bad_decimal),
            ..Default::default()
        })
        .await
        .expect_err("malformed decimal");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (tonic::Code::InvalidArgument, "MALFORMED_DECIMAL"),
        "{s:?}"
    );
    let s = raw
        .submit(SubmitRequest {
            command: Some(PbCommand {
                command_id: "no-body".into(),
                body: None,
            }),
            ..Default::default()
        })
        .await
        .expect_err("no body");
    assert_eq!(reason(&s), "MISSING_FIELD", "{s:?}");
    let s = raw
        .submit(SubmitRequest {
            command: None,
            ..Default::default()
        })
        .await
        .expect_err("no command");
    assert_eq!(reason(&s), "MISSING_FIELD", "{s:?}");
    let s = raw
        .submit_batch(SubmitBatchRequest {
            commands: vec![],
            ..Default::default()
        })
        .await
        .expect_err("empty batch");
    assert_eq!(reason(&s), "EMPTY_BATCH", "{s:?}");
    let too_many = (0..4097)
        .map(|_| commands::deposit(1, "BTC", "1"))
        .collect();
    let s = raw
        .submit_batch(SubmitBatchRequest {
            commands: too_many,
            ..Default::default()
        })
        .await
        .expect_err("batch too large");
    assert_eq!(reason(&s), "BATCH_TOO_LARGE", "{s:?}");

    // Well-formed but refused by the engine: definite rejections with their reason.
    let cases = [
        (commands::deposit(1, "BTC", "-1"), "INVALID_AMOUNT"),
        (commands::deposit(1, "BTC", "0"), "INVALID_AMOUNT"),
        (commands::deposit(1, "BTC", "0.000000001"), "BAD_PRECISION"),
        (
            commands::deposit(1, "BTC", "100000000000000000000000"),
            "AMOUNT_TOO_LARGE",
        ),
        (commands::deposit(1, "DOGE", "1"), "UNKNOWN_ASSET"),
        (commands::deposit(42, "BTC", "1"), "UNKNOWN_ACCOUNT"),
        (commands::withdraw(1, "BTC", "2"), "INSUFFICIENT_FUNDS"),
        (commands::release(777), "UNKNOWN_HOLD"),
    ];
    for (cmd, want) in cases {
        match c.submit(cmd.clone()).await {
            WriteResult::Rejected { reason, .. } => assert_eq!(reason, want, "{cmd:?}"),
            other => panic!("{cmd:?}: expected rejection {want}, got {other:?}"),
        }
    }
    let s = raw
        .get_account(GetAccountRequest {
            account: 4242,
            read: None,
        })
        .await
        .expect_err("unknown account read");
    assert_eq!(s.code(), tonic::Code::NotFound);

    assert_eq!(
        before,
        snapshot().await,
        "a refused request changed the ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_with_too_many_digits_are_amount_too_large_or_bad_precision_at_the_node_not_malformed_decimal()
 {
    let cluster = Cluster::start(1, &[]).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let mut raw = LedgerClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .expect("connect");
    let too_large = "9".repeat(40);
    let far_too_large = "1".repeat(70);
    let too_precise = format!("0.{}1", "0".repeat(30));
    let far_too_precise = format!("1.{}", "5".repeat(70));
    let mixed = "12345678901234567890.123456789012".to_string();
    let cases = [
        (too_large, "AMOUNT_TOO_LARGE"),
        (far_too_large, "AMOUNT_TOO_LARGE"),
        (too_precise, "BAD_PRECISION"),
        (far_too_precise, "BAD_PRECISION"),
        (mixed, "BAD_PRECISION"),
        ("1.2.3".to_string(), "MALFORMED_DECIMAL"),
        ("12abc".to_string(), "MALFORMED_DECIMAL"),
        (format!("{}x", "1".repeat(70)), "MALFORMED_DECIMAL"),
    ];
    for (amount, want) in cases {
        // Straight to the node's gRPC edge, past any client-side check.
        let s = raw
            .submit(SubmitRequest {
                command: Some(commands::deposit(1, "BTC", &amount)),
                ..Default::default()
            })
            .await
            .expect_err("refused at the edge");
        assert_eq!(
            (s.code(), reason(&s).as_str()),
            (tonic::Code::InvalidArgument, want),
            "{amount}: {s:?}"
        );
        assert!(!s.message().contains('\n'), "{s:?}");
    }
    // Through tally-client: the same reasons, as definite rejections.
    let c = Client::new(ClientConfig::new(cluster.endpoints())).expect("client");
    let too_large = "9".repeat(40);
    match c.submit(commands::deposit(1, "BTC", &too_large)).await {
        WriteResult::Rejected { reason, .. } => assert_eq!(reason, "AMOUNT_TOO_LARGE"),
        other => panic!("expected AMOUNT_TOO_LARGE, got {other:?}"),
    }
}

fn run_tallyd(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin_path("tallyd"))
        .args(args)
        .output()
        .expect("run tallyd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn node_refuses_data_dir_of_another_node_or_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node");
    let data_s = data.to_str().expect("utf8 path");
    // Create the dir as node 1 of cluster "alpha" and stop it.
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(bin_path("tallyd"))
        .args([
            "run",
            "--insecure",
            "--node-id",
            "1",
            "--cluster-id",
            "alpha",
            "--listen",
            &addr,
            "--data-dir",
            data_s,
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !data.join("db").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "node never created its db"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();

    let addr = format!("127.0.0.1:{}", free_port());
    let (ok, err) = run_tallyd(&[
        "run",
        "--insecure",
        "--node-id",
        "2",
        "--cluster-id",
        "alpha",
        "--listen",
        &addr,
        "--data-dir",
        data_s,
    ]);
    assert!(!ok, "started on another node's data dir");
    assert!(err.contains("belongs to node 1"), "unclear error: {err}");
    let (ok, err) = run_tallyd(&[
        "run",
        "--insecure",
        "--node-id",
        "1",
        "--cluster-id",
        "beta",
        "--listen",
        &addr,
        "--data-dir",
        data_s,
    ]);
    assert!(!ok, "started on another cluster's data dir");
    assert!(
        err.contains("belongs to cluster 'alpha'"),
        "unclear error: {err}"
    );
    let (ok, err) = run_tallyd(&[
        "run",
        "--insecure",
        "--node-id",
        "0",
        "--listen",
        &addr,
        "--data-dir",
        data_s,
    ]);
    assert!(
        !ok && err.contains("--node-id must be greater than 0"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdict_replies_carry_no_events_and_unknown_reply_detail_is_refused_unapplied() {
    use tally_proto::v1::ReplyDetail;
    let cluster = Cluster::start(3, &[]).await;
    let c = Client::new(ClientConfig::new(cluster.endpoints())).expect("client");
    for cmd in [
        commands::create_asset("BTC", 8),
        commands::create_account(1),
    ] {
        assert!(c.submit(cmd).await.is_applied());
    }
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let mut raw = LedgerClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .expect("connect");
    let batch = |detail: i32, ids: [&str; 2]| SubmitBatchRequest {
        commands: vec![
            PbCommand {
                command_id: ids[0].into(),
                ..commands::deposit(1, "BTC", "1.5")
            },
            // Overdraws: a definite rejection.
            PbCommand {
                command_id: ids[1].into(),
                ..commands::withdraw(1, "BTC", "100")
            },
        ],
        reply_detail: detail,
    };
    // Verdicts only: applied / rejected with reason, no events, no echoed id.
    let verdicts = raw
        .submit_batch(batch(ReplyDetail::Verdict as i32, ["v-dep", "v-wd"]))
        .await
        .expect("verdict batch")
        .into_inner();
    assert_eq!(verdicts.results.len(), 2);
    let (dep, wd) = (&verdicts.results[0], &verdicts.results[1]);
    assert!(
        dep.applied && dep.events.is_empty() && dep.command_id.is_empty(),
        "{dep:?}"
    );
    assert!(
        !wd.applied && wd.reason == "INSUFFICIENT_FUNDS" && wd.events.is_empty(),
        "{wd:?}"
    );
    // Events (the default): the same commands carry their balance events.
    let full = raw
        .submit_batch(batch(ReplyDetail::Events as i32, ["e-dep", "e-wd"]))
        .await
        .expect("events batch")
        .into_inner();
    assert!(full.results[0].applied && !full.results[0].events.is_empty());
    assert_eq!(full.results[0].command_id, "e-dep");
    assert_eq!(full.results[1].reason, "INSUFFICIENT_FUNDS");
    // The tally-client handle asking for verdicts sees the same.
    let quiet = c.with_reply_events(false);
    let r = quiet.submit(commands::deposit(1, "BTC", "0.5")).await;
    match &r {
        WriteResult::Applied { result, .. } => assert!(result.events.is_empty(), "{r:?}"),
        other => panic!("not applied: {other:?}"),
    }
    // An unknown reply detail is refused before anything is proposed.
    let before = c
        .state_hash(ReadOptions::linearizable())
        .await
        .expect("hash");
    let s = raw
        .submit_batch(batch(99, ["u-dep", "u-wd"]))
        .await
        .expect_err("unknown reply detail");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (tonic::Code::InvalidArgument, "UNKNOWN_REPLY_DETAIL"),
        "{s:?}"
    );
    let after = c
        .state_hash(ReadOptions::linearizable())
        .await
        .expect("hash");
    assert_eq!(
        before.state_hash, after.state_hash,
        "refused batch changed state"
    );
    // Balance: 1.5 + 1.5 + 0.5 deposited, both withdrawals refused.
    let balance = c
        .balance(1, "BTC", ReadOptions::linearizable())
        .await
        .expect("balance")
        .balance
        .expect("balance present");
    assert_eq!(balance.available, "3.50000000");
}
