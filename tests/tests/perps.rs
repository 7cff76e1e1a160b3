//! Perpetual futures end to end against a real 3-node cluster (real
//! `tallyd` processes, gRPC, RocksDB): markets, mark prices, fills, funding,
//! pause, margin and exposure queries and a liquidation that needs
//! auto-deleveraging, through `tally-client` and through `tallyctl`; bad
//! input refused with specific reasons; every node ends with the same state
//! hash and answers the perps queries identically.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tally_client::proto::v1::{CreateMarket, event};
use tally_client::{Client, ClientConfig, Owner, ReadOptions, WriteResult, commands};
use tally_tests::{Cluster, bin_path};

const MARKET: &str = "BTC-PERP";
const FUNDING_INTERVAL_MS: u64 = 8 * 3_600_000;

fn client(endpoints: Vec<String>) -> Client {
    Client::new(ClientConfig {
        timeout_ms: 20_000,
        ..ClientConfig::new(endpoints)
    })
    .expect("client")
}

/// Tick 0.1, step 0.001, 20x; brackets [0: 1% / 20x], [10,000: 2% / 10x],
/// [50,000: 5% / 5x]; liquidation fee 1%; funding every 8 hours; USDT.
fn market_spec() -> CreateMarket {
    CreateMarket {
        market: MARKET.into(),
        base: "BTC".into(),
        settle_asset: "USDT".into(),
        tick_size: "0.1".into(),
        step_size: "0.001".into(),
        max_leverage: 20,
        brackets: vec![
            commands::margin_bracket("0", "0.01", 20),
            commands::margin_bracket("10000", "0.02", 10),
            commands::margin_bracket("50000", "0.05", 5),
        ],
        liquidation_fee_rate: "0.01".into(),
        funding_interval_ms: FUNDING_INTERVAL_MS,
    }
}

/// Submits a command that must apply; returns its events and index.
async fn apply(c: &Client, cmd: tally_client::proto::v1::Command) -> (Vec<event::Kind>, u64) {
    match c.submit(cmd).await {
        WriteResult::Applied {
            result,
            applied_index,
        } => (
            result.events.into_iter().filter_map(|e| e.kind).collect(),
            applied_index,
        ),
        other => panic!("expected applied, got {other:?}"),
    }
}

/// Submits a command that the engine must refuse with `reason`.
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

async fn available(c: &Client, owner: Owner) -> String {
    let r = c
        .balance(owner, "USDT", ReadOptions::linearizable())
        .await
        .expect("balance");
    r.balance.expect("balance").available
}

/// Every node has the same state hash at the same applied index, at least `index`.
async fn assert_replicated(cluster: &Cluster, index: u64) -> String {
    let hash = cluster.wait_converged(Duration::from_secs(30)).await;
    let hashes = cluster.state_hashes(index).await;
    assert_eq!(hashes.len(), 3);
    for (node, (h, applied)) in &hashes {
        assert!(*applied >= index, "node {node} at {applied} < {index}");
        assert_eq!(h, &hash, "node {node} diverged: {hashes:?}");
    }
    hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perps_through_the_client_are_replicated_identically() {
    let cluster = Cluster::start(3, &[]).await;
    let c = client(cluster.endpoints());
    apply(&c, commands::create_asset("USDT", 6)).await;
    for account in 1..=4 {
        apply(&c, commands::create_account(account)).await;
    }
    for (account, amount) in [(1, "1000"), (2, "10000"), (3, "10000"), (4, "2000")] {
        apply(&c, commands::deposit(account, "USDT", amount)).await;
    }
    let (events, _) = apply(&c, commands::create_market(market_spec())).await;
    assert!(matches!(&events[..], [event::Kind::MarketCreated(e)] if e.settle_asset == "USDT"));
    refused(&c, commands::create_market(market_spec()), "MARKET_EXISTS").await;
    // Fills need a mark price.
    refused(
        &c,
        commands::perp_fill(MARKET, 1, 2, "1", "100", "0", "0"),
        "NO_MARK_PRICE",
    )
    .await;
    let (events, _) = apply(&c, commands::set_mark_price(MARKET, "100")).await;
    assert!(matches!(&events[..], [event::Kind::MarkPrice(e)] if e.price == "100.0"));

    // Alice (1) buys 60 from Bob (2) and 40 from Dave (4) at 100; Bob pays a
    // 0.5 fee. Alice: long 100, cost 10,000, notional 10,000 = bracket 1
    // (10x): IM 1,000 = her whole balance.
    let (events, _) = apply(
        &c,
        commands::perp_fill(MARKET, 1, 2, "60", "100", "0", "0.5"),
    )
    .await;
    assert!(events.iter().any(|e| matches!(e, event::Kind::PerpFill(_))));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, event::Kind::Position(p) if p.size == "60.000" && p.entry_price == "100.00000"))
    );
    apply(&c, commands::perp_fill(MARKET, 1, 4, "40", "100", "0", "0")).await;
    assert_eq!(available(&c, Owner::Fees).await, "0.500000");

    // Bad input: specific reasons, nothing applied.
    refused(
        &c,
        commands::perp_fill(MARKET, 3, 2, "1", "100.05", "0", "0"),
        "PRICE_OFF_TICK",
    )
    .await;
    refused(
        &c,
        commands::perp_fill(MARKET, 3, 2, "0.0005", "100", "0", "0"),
        "SIZE_OFF_STEP",
    )
    .await;
    refused(
        &c,
        commands::perp_fill(MARKET, 3, 2, "1", "0", "0", "0"),
        "INVALID_PRICE",
    )
    .await;
    refused(
        &c,
        commands::perp_fill("ETH-PERP", 3, 2, "1", "100", "0", "0"),
        "UNKNOWN_MARKET",
    )
    .await;
    // Any increase of Alice's position exceeds bracket 1's 10x.
    refused(
        &c,
        commands::perp_fill(MARKET, 1, 3, "0.001", "100", "0", "0"),
        "INSUFFICIENT_MARGIN",
    )
    .await;
    refused(
        &c,
        commands::apply_funding(MARKET, "0.0001", 1_000),
        "INVALID_FUNDING_TIME",
    )
    .await;

    // Position, margin, and who is closest to liquidation.
    let p = c
        .position(MARKET, 1, ReadOptions::linearizable())
        .await
        .expect("position")
        .position
        .expect("position");
    assert_eq!(
        (p.size.as_str(), p.entry_price.as_str()),
        ("100.000", "100.00000")
    );
    assert_eq!((p.bracket, p.max_leverage), (1, 10));
    // (1,000 + 0 − 10,000) / (100 × 0.01 − 100), re-tiered into bracket 0.
    assert_eq!(p.liquidation_price, "90.90909");
    let m = c
        .margin(1, ReadOptions::linearizable())
        .await
        .expect("margin");
    assert_eq!(m.margins.len(), 1);
    let m = &m.margins[0];
    assert_eq!(
        (
            m.equity.as_str(),
            m.initial_margin.as_str(),
            m.maintenance_margin.as_str(),
            m.margin_ratio.as_str()
        ),
        ("1000.000000", "1000.000000", "100.000000", "0.10000000")
    );
    let risky = c
        .at_risk("USDT", 2, ReadOptions::linearizable())
        .await
        .expect("at risk");
    assert_eq!(risky.margins.first().map(|m| m.account), Some(1));

    // Funding: +0.0001 at mark 100 — Alice pays 1, Bob gets 0.6, Dave 0.4.
    let (events, _) = apply(
        &c,
        commands::apply_funding(MARKET, "0.0001", FUNDING_INTERVAL_MS),
    )
    .await;
    let payments: Vec<(u64, String)> = events
        .iter()
        .filter_map(|e| match e {
            event::Kind::FundingPayment(f) => {
                Some((f.holder.map_or(0, |h| h.account), f.amount.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        payments,
        [
            (1, "-1.000000".to_string()),
            (2, "0.600000".into()),
            (4, "0.400000".into())
        ]
    );
    refused(
        &c,
        commands::apply_funding(MARKET, "-0.0002", FUNDING_INTERVAL_MS),
        "FUNDING_ALREADY_APPLIED",
    )
    .await;

    // Paused: reduce-only.
    apply(&c, commands::pause_market(MARKET)).await;
    refused(
        &c,
        commands::perp_fill(MARKET, 3, 2, "1", "100", "0", "0"),
        "MARKET_PAUSED",
    )
    .await;
    apply(&c, commands::resume_market(MARKET)).await;

    // Gap to 89: Alice's equity 999 − 1,100 = −101 < MM 89; the insurance
    // fund is empty, so Dave's and Bob's profitable shorts are deleveraged at
    // the bankruptcy price (8,900 + 101) / 100 = 90.01. Alice ends at 0.
    let (events, index) = apply(&c, commands::set_mark_price(MARKET, "89")).await;
    assert!(events.iter().any(
        |e| matches!(e, event::Kind::Liquidation(l) if l.account == 1 && l.equity == "-101.000000")
    ));
    let deleveraged: Vec<(u64, String)> = events
        .iter()
        .filter_map(|e| match e {
            event::Kind::Position(p)
                if p.cause == tally_client::proto::v1::PositionCause::Deleverage as i32 =>
            {
                Some((p.holder.map_or(0, |h| h.account), p.price.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        deleveraged,
        [(4, "90.01000".to_string()), (2, "90.01000".into())]
    );
    assert_eq!(available(&c, Owner::Account(1)).await, "0.000000");
    let m = c
        .margin(1, ReadOptions::linearizable())
        .await
        .expect("margin");
    assert!(m.margins.is_empty());

    let hash = assert_replicated(&cluster, index).await;
    // Every node answers the perps queries identically.
    let mut answers = Vec::new();
    for addr in cluster.endpoints() {
        let node = client(vec![addr]);
        let read = ReadOptions::at_least_index(index);
        let e = node.exposure(MARKET, read).await.expect("exposure");
        let m = node.margin(2, read).await.expect("margin");
        let k = node.market(MARKET, read).await.expect("market");
        answers.push((
            e.open_interest,
            e.insurance_balance,
            e.pnl_pool,
            format!("{:?}", m.margins),
            format!("{:?}", k.market),
        ));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:#?}");
    assert_eq!(answers[0].0, "0.000");
    assert!(!hash.is_empty());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perps_through_tallyctl() {
    let cluster = Cluster::start(3, &[]).await;
    let endpoints = cluster.endpoints().join(",");
    let e = endpoints.as_str();
    ok(e, &["asset", "create", "USDT", "6"]);
    for account in ["1", "2"] {
        ok(e, &["account", "create", account]);
        ok(e, &["deposit", account, "USDT", "5000"]);
    }
    // Seeding the insurance fund: available moves to the fund, and an
    // overdraft is refused (exit 2) with nothing changed.
    ok(e, &["account", "create", "3"]);
    ok(e, &["deposit", "3", "USDT", "5000"]);
    ok(e, &["fund-insurance", "3", "USDT", "250.5"]);
    let fund = ok(e, &["balance", "insurance", "USDT"]);
    assert_eq!(fund["available"], "250.500000");
    let (code, json, stderr) = ctl(e, &["fund-insurance", "3", "USDT", "4750"]);
    assert_eq!(
        (code, json["reason"].as_str()),
        (2, Some("INSUFFICIENT_FUNDS")),
        "{stderr}"
    );
    assert_eq!(ok(e, &["balance", "3", "USDT"])["available"], "4749.500000");
    assert_eq!(
        ok(e, &["balance", "insurance", "USDT"])["available"],
        "250.500000"
    );
    let created = ok(
        e,
        &[
            "market",
            "create",
            MARKET,
            "--base",
            "BTC",
            "--settle",
            "USDT",
            "--tick",
            "0.1",
            "--step",
            "0.001",
            "--max-leverage",
            "20",
            "--bracket",
            "0:0.01:20",
            "--bracket",
            "10000:0.02:10",
            "--bracket",
            "50000:0.05:5",
            "--liquidation-fee-rate",
            "0.01",
            "--funding-interval-ms",
            "28800000",
        ],
    );
    assert_eq!(created["events"][0]["type"], "market_created");
    let shown = ok(e, &["market", "show", MARKET]);
    assert_eq!(shown["market"]["brackets"][2]["maintenance_amount"], "1600");
    assert_eq!(shown["market"]["mark_price"], Value::Null);

    let marked = ok(e, &["mark", MARKET, "100"]);
    assert_eq!(marked["events"][0]["type"], "mark_price");
    let filled = ok(
        e,
        &[
            "perp-fill",
            "--market",
            MARKET,
            "--buyer",
            "1",
            "--seller",
            "2",
            "--size",
            "2",
            "--price",
            "100",
            "--buyer-fee",
            "0.1",
            "--seller-fee",
            "0.1",
        ],
    );
    let types: Vec<&str> = filled["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        types.contains(&"perp_fill") && types.contains(&"position"),
        "{types:?}"
    );

    // A negative funding rate: shorts pay longs. 2 × 100 × 0.0001 = 0.02.
    let funded = ok(e, &["funding", MARKET, "-0.0001", "--time-ms", "28800000"]);
    let funding = funded["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["type"] == "funding")
        .expect("funding event");
    assert_eq!(
        (funding["paid"].as_str(), funding["received"].as_str()),
        (Some("0.020000"), Some("0.020000"))
    );
    let (code, json, stderr) = ctl(e, &["funding", MARKET, "-0.0001", "--time-ms", "28800000"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(json["reason"], "FUNDING_ALREADY_APPLIED");
    assert!(
        stderr.starts_with("rejected: FUNDING_ALREADY_APPLIED"),
        "{stderr}"
    );

    let position = ok(e, &["position", MARKET, "1"]);
    assert_eq!(position["position"]["size"], "2.000");
    assert_eq!(position["position"]["entry_price"], "100.00000");
    let margin = ok(e, &["margin", "2"]);
    assert_eq!(margin["margins"][0]["positions"][0]["size"], "-2.000");
    // 5,000 − 0.1 fee − 0.02 funding.
    assert_eq!(margin["margins"][0]["wallet_balance"], "4999.880000");
    let exposure = ok(e, &["exposure", MARKET, "--top", "2"]);
    assert_eq!(exposure["open_interest"], "2.000");
    assert_eq!(exposure["long_accounts"], 1);
    assert_eq!(exposure["at_risk"].as_array().map(Vec::len), Some(2));

    ok(e, &["market", "pause", MARKET]);
    let (code, json, _) = ctl(
        e,
        &[
            "perp-fill",
            "--market",
            MARKET,
            "--buyer",
            "1",
            "--seller",
            "2",
            "--size",
            "1",
            "--price",
            "100",
        ],
    );
    assert_eq!((code, json["reason"].as_str()), (2, Some("MARKET_PAUSED")));
    // Reduce-only still works.
    ok(
        e,
        &[
            "perp-fill",
            "--market",
            MARKET,
            "--buyer",
            "2",
            "--seller",
            "1",
            "--size",
            "1",
            "--price",
            "100",
        ],
    );
    ok(e, &["market", "resume", MARKET]);
    let (code, json, _) = ctl(
        e,
        &[
            "perp-fill",
            "--market",
            MARKET,
            "--buyer",
            "1",
            "--seller",
            "2",
            "--size",
            "1",
            "--price",
            "100.05",
        ],
    );
    assert_eq!((code, json["reason"].as_str()), (2, Some("PRICE_OFF_TICK")));
    let (code, _, _) = ctl(e, &["position", MARKET, "3"]);
    assert_eq!(code, 2);

    // Text output for people.
    let out = Command::new(bin_path("tallyctl"))
        .args(["--endpoints", e, "exposure", MARKET])
        .env_remove("TALLY_ENDPOINTS")
        .output()
        .expect("tallyctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("open interest 1.000"), "{text}");
    assert!(text.contains("closest to liquidation"), "{text}");

    let index = exposure["applied_index"].as_u64().unwrap_or(0);
    assert_replicated(&cluster, index).await;
}
