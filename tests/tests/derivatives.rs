//! Dated futures, options, perpetual options, premium-index funding and an
//! inverse perpetual end to end against a real 3-node cluster (real
//! `tallyd` processes, gRPC, RocksDB), through `tally-client` and
//! `tallyctl`: the new commands are refused until the cluster is finalized
//! at version 2, then a dated future is settled after its expiry (and
//! refused before it), an option is exercised in the money, a perpetual
//! option pays funding, a perp's funding rate comes from premium samples
//! with the clamp hit; every node ends with the same state hash.

use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tally_client::proto::v1::CreateMarket;
use tally_client::{Client, ClientConfig, Owner, ReadOptions, WriteResult, commands, derivatives};
use tally_tests::{Cluster, bin_path};

fn client(endpoints: Vec<String>) -> Client {
    Client::new(ClientConfig {
        timeout_ms: 20_000,
        ..ClientConfig::new(endpoints)
    })
    .expect("client")
}

fn spec(market: &str, settle: &str, tick: &str, step: &str) -> CreateMarket {
    CreateMarket {
        market: market.into(),
        base: "BTC".into(),
        settle_asset: settle.into(),
        tick_size: tick.into(),
        step_size: step.into(),
        max_leverage: 20,
        brackets: vec![commands::margin_bracket("0", "0.01", 20)],
        liquidation_fee_rate: "0.01".into(),
        funding_interval_ms: 28_800_000,
    }
}

async fn apply(c: &Client, cmd: tally_client::proto::v1::Command) -> u64 {
    match c.submit(cmd).await {
        WriteResult::Applied { applied_index, .. } => applied_index,
        other => panic!("expected applied, got {other:?}"),
    }
}

async fn refused(c: &Client, cmd: tally_client::proto::v1::Command, reason: &str) {
    match c.submit(cmd).await {
        WriteResult::Rejected {
            reason: got,
            message,
            ..
        } => assert_eq!(got, reason, "{message}"),
        other => panic!("expected {reason}, got {other:?}"),
    }
}

async fn available(c: &Client, account: u64, asset: &str) -> String {
    let r = c
        .balance(Owner::Account(account), asset, ReadOptions::linearizable())
        .await
        .expect("balance");
    r.balance.expect("balance").available
}

/// One `tallyctl --json` run: (exit code, JSON, stderr).
fn ctl(endpoints: &str, args: &[&str]) -> (i32, Value, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(bin_path("tallyctl"))
        .args(["--endpoints", endpoints, "--json", "--timeout-ms", "20000"])
        .args(args)
        .env_remove("TALLY_ENDPOINTS")
        .output()
        .expect("run tallyctl");
    let stdout = String::from_utf8_lossy(&stdout).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&stderr).to_string(),
    )
}

fn ok(endpoints: &str, args: &[&str]) -> Value {
    let (code, json, stderr) = ctl(endpoints, args);
    assert_eq!(code, 0, "tallyctl {args:?}: {stderr} {json}");
    json
}

fn event_types(json: &Value) -> Vec<String> {
    json["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derivatives_through_the_client_and_tallyctl_are_replicated_identically() {
    let cluster = Cluster::start(3, &[]).await;
    let c = client(cluster.endpoints());
    let endpoints = cluster.endpoints().join(",");
    let e = endpoints.as_str();
    apply(&c, commands::create_asset("USDT", 6)).await;
    apply(&c, commands::create_asset("BTC", 8)).await;
    for account in 1..=4 {
        apply(&c, commands::create_account(account)).await;
        apply(&c, commands::deposit(account, "USDT", "100000")).await;
        apply(&c, commands::deposit(account, "BTC", "1")).await;
    }
    apply(
        &c,
        commands::create_market(spec("BTC-PERP", "USDT", "0.1", "0.001")),
    )
    .await;
    apply(&c, commands::set_mark_price("BTC-PERP", "30000")).await;
    // A new cluster starts at cluster version 2 (the derivatives' version;
    // how they are refused before an upgrade is finalized: ledger
    // cluster_version tests and tests/tests/upgrade.rs).
    let expiry_ms = now_ms() + 4_000;
    let future = || {
        derivatives::create_dated_future(
            spec("BTC-0327", "USDT", "0.1", "0.001"),
            expiry_ms,
            "0.0005",
        )
    };
    apply(&c, future()).await;

    // A dated future: Alice (1) buys 1 from Bob (2) at 30,000; settlement
    // before the expiry is refused, after it Alice gains 1,000 at 31,000
    // less the delivery fee 0.05% × 31,000 = 15.5; Bob loses as much.
    ok(e, &["mark", "BTC-0327", "30000"]);
    apply(
        &c,
        commands::perp_fill("BTC-0327", 1, 2, "1", "30000", "0", "0"),
    )
    .await;
    let (code, json, _) = ctl(e, &["settle", "BTC-0327", "31000"]);
    assert_eq!((code, json["reason"].as_str()), (2, Some("NOT_EXPIRED")));

    // A call K 32,000 expiring with the future, and a perpetual call.
    let option = |symbol: &str, expiry: &str| {
        ok(
            e,
            &[
                "market",
                "create-option",
                symbol,
                "--underlying",
                "BTC-PERP",
                "--strike",
                "32000",
                "--expiry-ms",
                expiry,
                "--tick",
                "0.1",
                "--step",
                "0.001",
                "--fee-cap-rate",
                "0.125",
            ],
        )
    };
    let created = option("BTC-C-32000", &expiry_ms.to_string());
    assert!(
        event_types(&created).contains(&"market_created".to_string()),
        "{created}"
    );
    option("BTC-PC-32000", "0");
    let (code, json, _) = ctl(
        e,
        &[
            "market",
            "create-option",
            "BTC-C-1",
            "--underlying",
            "BTC-PERP",
            "--strike",
            "32000.05",
            "--expiry-ms",
            "5",
            "--tick",
            "0.1",
            "--step",
            "0.001",
        ],
    );
    assert_eq!(
        (code, json["reason"].as_str()),
        (2, Some("STRIKE_OFF_GRID"))
    );
    ok(e, &["mark", "BTC-C-32000", "500"]);
    // Alice buys 2 calls from Carol (3) at 500: premium 1,000.
    apply(
        &c,
        commands::perp_fill("BTC-C-32000", 1, 3, "2", "500", "0", "0"),
    )
    .await;

    // The perpetual call (U 30,000 < K: intrinsic 0, time value 90):
    // Alice long 3 pays 3 × 90 × 8 h / 24 h = 90 to Dave (4).
    ok(e, &["mark", "BTC-PC-32000", "90"]);
    apply(
        &c,
        commands::perp_fill("BTC-PC-32000", 1, 4, "3", "90", "0", "0"),
    )
    .await;
    let funded = ok(
        e,
        &["option-funding", "BTC-PC-32000", "--time-ms", "28800000"],
    );
    assert!(
        event_types(&funded).contains(&"option_funding".to_string()),
        "{funded}"
    );

    // Premium funding on the perp: P = (1 × 0.0001 + 2 × 0.0003) / 3 =
    // 0.00023333, I = 0.0001, the market's clamp 0.00005: F = 0.00018333.
    // Alice long 1 at 30,000 pays 30,000 × 0.00018333 = 5.4999 to Bob.
    // Without a clamp the round is refused.
    let premium_args = [
        "premium-funding",
        "BTC-PERP",
        "--time-ms",
        "28800000",
        "--sample",
        "0.0001",
        "--sample",
        "0.0003",
        "--interest-rate",
        "0.0001",
    ];
    let (code, json, _) = ctl(e, &premium_args);
    assert_eq!(
        (code, json["reason"].as_str()),
        (2, Some("FUNDING_CLAMP_NOT_SET")),
        "{json}"
    );
    ok(e, &["funding-clamp", "BTC-PERP", "0.00005"]);
    apply(
        &c,
        commands::perp_fill("BTC-PERP", 1, 2, "1", "30000", "0", "0"),
    )
    .await;
    let premium = ok(e, &premium_args);
    let rate = premium["events"]
        .as_array()
        .and_then(|events| events.iter().find(|ev| ev["type"] == "funding_rate"))
        .map(|ev| ev["rate"].clone());
    assert_eq!(rate, Some(Value::from("0.00018333")), "{premium}");

    // An inverse perpetual settled in BTC, 100 USD contracts.
    ok(
        e,
        &[
            "market",
            "create",
            "BTCUSD-PERP",
            "--base",
            "BTC",
            "--settle",
            "BTC",
            "--tick",
            "0.5",
            "--step",
            "1",
            "--max-leverage",
            "20",
            "--bracket",
            "0:0.005:20",
            "--funding-interval-ms",
            "28800000",
            "--contract-value",
            "100",
        ],
    );
    ok(e, &["mark", "BTCUSD-PERP", "20000"]);
    apply(
        &c,
        commands::perp_fill("BTCUSD-PERP", 3, 4, "1000", "20000", "0", "0"),
    )
    .await;
    apply(
        &c,
        commands::perp_fill("BTCUSD-PERP", 4, 3, "1000", "25000", "0", "0"),
    )
    .await;
    // Carol: 1,000 × 100 × (1/20,000 − 1/25,000) = 1 BTC.
    assert_eq!(available(&c, 3, "BTC").await, "2.00000000");

    // After the expiry: settle the future, exercise the call at 33,500
    // (Carol pays Alice 2 × 1,500 = 3,000; the call has no delivery fee).
    tokio::time::sleep(Duration::from_millis(
        expiry_ms.saturating_sub(now_ms()) + 500,
    ))
    .await;
    let settled = ok(e, &["settle", "BTC-0327", "31000"]);
    assert!(
        event_types(&settled).contains(&"settlement".to_string()),
        "{settled}"
    );
    let (code, json, _) = ctl(e, &["settle", "BTC-0327", "31000"]);
    assert_eq!(
        (code, json["reason"].as_str()),
        (2, Some("ALREADY_SETTLED"))
    );
    refused(
        &c,
        commands::perp_fill("BTC-0327", 1, 2, "1", "31000", "0", "0"),
        "MARKET_EXPIRED",
    )
    .await;
    let index = apply(&c, derivatives::exercise_option("BTC-C-32000", "33500")).await;
    let market = c
        .market("BTC-0327", ReadOptions::linearizable())
        .await
        .expect("market")
        .market
        .expect("market");
    assert_eq!(
        (market.kind.as_str(), market.settlement_price.as_str()),
        ("dated_future", "31000.0")
    );
    let shown = ok(e, &["market", "show", "BTC-C-32000"]);
    assert_eq!(
        (
            &shown["market"]["kind"],
            &shown["market"]["strike"],
            &shown["market"]["settlement_price"]
        ),
        (
            &Value::from("call"),
            &Value::from("32000.0"),
            &Value::from("33500.0")
        ),
        "{shown}"
    );
    // Alice: 100,000 + 1,000 − 15.5 (future) − 1,000 + 3,000 (call) − 270
    // (perpetual call premium) − 90 (its funding) − 5.4999 (perp funding).
    assert_eq!(available(&c, 1, "USDT").await, "102619.000100");
    // Delta-equivalent exposure: the perp long 1 exactly, the perpetual
    // call long 3 as [0, 3].
    let delta = ok(e, &["delta", "1"]);
    assert_eq!(
        (
            &delta["exposures"][0]["delta_low"],
            &delta["exposures"][0]["delta_high"]
        ),
        (&Value::from("1.000"), &Value::from("4.000")),
        "{delta}"
    );
    assert_eq!(delta["exposures"][0]["options_without_delta"], 1, "{delta}");
    // The pricer's delta with the mark makes it a number: 1 + 3 × 0.45.
    ok(e, &["mark", "BTC-PC-32000", "90", "--delta", "0.45"]);
    let delta = ok(e, &["delta", "1"]);
    let exposure = &delta["exposures"][0];
    assert_eq!(
        (
            exposure["delta"].as_str().map(|d| d.trim_end_matches('0')),
            exposure["options_without_delta"].as_u64(),
            exposure["delta_low"] == exposure["delta_high"],
        ),
        (Some("2.35"), Some(0), true),
        "{delta}"
    );
    // A delta is for options only; a call's lies in [0, 1].
    let (code, json, _) = ctl(e, &["mark", "BTC-PERP", "30000", "--delta", "0.5"]);
    assert_eq!(
        (code, json["reason"].as_str()),
        (2, Some("WRONG_INSTRUMENT"))
    );
    let (code, json, _) = ctl(e, &["mark", "BTC-PC-32000", "90", "--delta", "-0.1"]);
    assert_eq!((code, json["reason"].as_str()), (2, Some("INVALID_DELTA")));
    let hash = cluster.wait_converged(Duration::from_secs(30)).await;
    let hashes = cluster.state_hashes(index).await;
    assert_eq!(hashes.len(), 3);
    for (node, (h, applied)) in &hashes {
        assert!(*applied >= index, "node {node} at {applied} < {index}");
        assert_eq!(h, &hash, "node {node} diverged: {hashes:?}");
    }
}
