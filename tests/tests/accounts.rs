//! The account model end to end against a real 3-node cluster (real
//! `tallyd` processes, gRPC, RocksDB): sub-accounts, wallets, transfers,
//! pairs and history written through `tally-client`, then every listing
//! (assets, pairs, markets, accounts with filters, holds), an account's
//! wallets, its history, the transferable amount and the conservation
//! report read from each node at the same index, identical on every node,
//! through gRPC and through `tallyctl --json`; history pages read from
//! different nodes while writes continue stay stable (each page is exactly
//! the final history at those sequence numbers, no gaps, no repeats); bad
//! input (an unknown wallet kind, a sub-to-sub transfer without a grant,
//! a transfer above the transferable amount) refused with its reason.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tally_client::accounts::{self, AccountFilter};
use tally_client::proto::v1 as pb;
use tally_client::{Client, ClientConfig, ReadOptions, Wallet, WriteResult, commands};
use tally_tests::{Cluster, bin_path};

const MASTER: u64 = 1;
const SUB_A: u64 = 11;
const SUB_B: u64 = 12;
const OTHER: u64 = 2;

fn client(endpoints: Vec<String>) -> Client {
    Client::new(ClientConfig {
        timeout_ms: 20_000,
        ..ClientConfig::new(endpoints)
    })
    .expect("client")
}

/// True for a decimal zero at any scale (`0`, `0.000000`).
fn is_zero(amount: &str) -> bool {
    !amount.is_empty() && amount.chars().all(|c| c == '0' || c == '.')
}

async fn apply(c: &Client, cmd: pb::Command) -> u64 {
    match c.submit(cmd).await {
        WriteResult::Applied { applied_index, .. } => applied_index,
        other => panic!("expected applied, got {other:?}"),
    }
}

async fn refused(c: &Client, cmd: pb::Command, reason: &str) {
    match c.submit(cmd).await {
        WriteResult::Rejected {
            reason: got,
            message,
            ..
        } => assert_eq!(got, reason, "{message}"),
        other => panic!("expected {reason}, got {other:?}"),
    }
}

/// Assets, a master with two sub-accounts (history kept), an outsider,
/// money in several wallets, two holds, a pair: returns the last index.
async fn populate(c: &Client) -> u64 {
    apply(c, commands::create_asset("BTC", 8)).await;
    apply(c, commands::create_asset("USDT", 6)).await;
    apply(
        c,
        accounts::open_account(MASTER, 0, Wallet::Margin, true, true),
    )
    .await;
    apply(
        c,
        accounts::open_account(SUB_A, MASTER, Wallet::Margin, false, true),
    )
    .await;
    apply(
        c,
        accounts::open_account(SUB_B, MASTER, Wallet::Margin, false, false),
    )
    .await;
    apply(
        c,
        accounts::open_account(OTHER, 0, Wallet::Spot, true, false),
    )
    .await;
    apply(c, commands::deposit(MASTER, "USDT", "1000")).await;
    let to_margin = accounts::wallet_transfer(
        (MASTER, Wallet::Spot),
        (MASTER, Wallet::Margin),
        "USDT",
        "600",
    );
    apply(c, to_margin).await;
    let to_sub = accounts::wallet_transfer(
        (MASTER, Wallet::Margin),
        (SUB_A, Wallet::Margin),
        "USDT",
        "250",
    );
    apply(c, to_sub).await;
    apply(
        c,
        accounts::wallet_deposit(OTHER, Wallet::Funding, "BTC", "2"),
    )
    .await;
    apply(c, commands::lock(7, MASTER, "USDT", "100")).await;
    apply(c, commands::lock(8, MASTER, "USDT", "50")).await;
    apply(
        c,
        accounts::create_pair(pb::CreatePair {
            pair: "BTC-USDT".into(),
            base: "BTC".into(),
            quote: "USDT".into(),
            size_scale: 4,
            price_scale: 2,
            min_base_amount: "0.001".into(),
        }),
    )
    .await
}

/// Every account-model read of one node at `index` (served_by cleared so
/// replies from different nodes compare).
async fn snapshot(c: &Client, index: u64) -> Vec<String> {
    let at = ReadOptions::at_least_index(index);
    let mut out = Vec::new();
    let mut push = |applied: u64, debug: String| {
        assert_eq!(applied, index, "read served at another index");
        out.push(debug);
    };
    let r = c.list_assets(at).await.expect("assets");
    push(r.applied_index, format!("{:?}", r.assets));
    let r = c.list_pairs(at).await.expect("pairs");
    push(r.applied_index, format!("{:?}", r.pairs));
    let r = c.list_markets(at).await.expect("markets");
    push(r.applied_index, format!("{:?}", r.markets));
    for filter in [
        AccountFilter::default(),
        AccountFilter {
            parent: MASTER,
            ..AccountFilter::default()
        },
        AccountFilter {
            non_zero: true,
            ..AccountFilter::default()
        },
    ] {
        let r = c.list_accounts(filter, 0, 2, at).await.expect("accounts");
        push(
            r.applied_index,
            format!("{:?} {}", r.accounts, r.next_after),
        );
        let r = c
            .list_accounts(filter, r.next_after, 2, at)
            .await
            .expect("accounts page 2");
        push(
            r.applied_index,
            format!("{:?} {}", r.accounts, r.next_after),
        );
    }
    let r = c.list_holds(MASTER, 0, 10, at).await.expect("holds");
    push(r.applied_index, format!("{:?}", r.holds));
    let r = c.account_model(SUB_A, at).await.expect("model");
    push(r.applied_index, format!("{:?}", r.account));
    let r = c.history(MASTER, 0, 0, 100, at).await.expect("history");
    push(r.applied_index, format!("{:?}", r.entries));
    let r = c
        .transferable(MASTER, Wallet::Margin, "USDT", at)
        .await
        .expect("transferable");
    push(
        r.applied_index,
        format!("{} {}", r.transferable, r.available),
    );
    let r = c.conservation(at).await.expect("conservation");
    push(r.applied_index, format!("{:?}", r.assets));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_and_history_through_grpc_are_identical_on_every_node_and_pages_stay_stable() {
    let cluster = Cluster::start(3, &[]).await;
    let c = client(cluster.endpoints());
    let index = populate(&c).await;

    // The same answers from every node at the same index.
    let mut snapshots = Vec::new();
    for id in 1..=3 {
        let node = client(vec![cluster.addr(id)]);
        snapshots.push(snapshot(&node, index).await);
    }
    assert_eq!(snapshots[0], snapshots[1]);
    assert_eq!(snapshots[0], snapshots[2]);

    // What they say, checked once.
    let at = ReadOptions::at_least_index(index);
    let subs = c
        .list_accounts(
            AccountFilter {
                parent: MASTER,
                ..AccountFilter::default()
            },
            0,
            10,
            at,
        )
        .await
        .expect("subs");
    let ids: Vec<u64> = subs.accounts.iter().map(|a| a.account).collect();
    assert_eq!(ids, vec![SUB_A, SUB_B]);
    let holds = c.list_holds(MASTER, 0, 1, at).await.expect("holds");
    assert_eq!(holds.holds.len(), 1);
    assert_eq!(holds.next_after, 7);
    let sums = c.conservation(at).await.expect("conservation");
    for row in &sums.assets {
        assert!(is_zero(&row.total), "{row:?}");
    }
    let usdt = sums
        .assets
        .iter()
        .find(|r| r.asset == "USDT")
        .expect("USDT");
    assert_eq!(
        (usdt.spot.as_str(), usdt.margin.as_str()),
        ("400.000000", "600.000000")
    );
    let transferable = c
        .transferable(MASTER, Wallet::Margin, "USDT", at)
        .await
        .expect("transferable");
    assert_eq!(transferable.transferable, "350.000000");

    // Bad input: each refused with its reason.
    refused(
        &c,
        accounts::wallet_transfer(
            (SUB_A, Wallet::Margin),
            (SUB_B, Wallet::Margin),
            "USDT",
            "1",
        ),
        "TRANSFER_NOT_ALLOWED",
    )
    .await;
    refused(
        &c,
        accounts::wallet_withdraw(SUB_A, Wallet::Margin, "USDT", "1"),
        "WITHDRAW_NOT_ALLOWED",
    )
    .await;
    let mut bad_wallet = accounts::wallet_deposit(MASTER, Wallet::Spot, "USDT", "1");
    if let Some(pb::command::Body::WalletDeposit(d)) = &mut bad_wallet.body {
        d.wallet = 9;
    }
    match c.submit(bad_wallet).await {
        WriteResult::Rejected {
            reason, message, ..
        } => {
            assert_eq!(reason, "UNKNOWN_WALLET", "{message}");
        }
        other => panic!("expected UNKNOWN_WALLET, got {other:?}"),
    }

    // History pages read from different nodes while writes continue.
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 0..40u32 {
                let amount = format!("0.{:06}", i + 1);
                apply(
                    &c,
                    accounts::wallet_deposit(MASTER, Wallet::Funding, "USDT", amount),
                )
                .await;
            }
        })
    };
    let mut pages = Vec::new();
    let mut from_seq = 0u64;
    let mut node = 0u64;
    while !writer.is_finished() || from_seq != 0 {
        node = node % 3 + 1;
        let reader = client(vec![cluster.addr(node)]);
        let page = reader
            .history(MASTER, from_seq, 0, 3, ReadOptions::bounded(1_000, 0))
            .await
            .expect("page");
        if page.entries.is_empty() {
            if writer.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        from_seq = page.entries.last().map_or(0, |e| e.seq + 1);
        pages.extend(page.entries);
    }
    writer.await.expect("writer");
    let last = apply(
        &c,
        accounts::wallet_deposit(MASTER, Wallet::Funding, "USDT", "1"),
    )
    .await;
    let full = c
        .history(MASTER, 0, 0, 1000, ReadOptions::at_least_index(last))
        .await
        .expect("full history");
    assert!(pages.len() >= 10, "read {} entries", pages.len());
    for (i, entry) in pages.iter().enumerate() {
        assert_eq!(entry.seq, i as u64, "pages have no gaps and no repeats");
        assert_eq!(Some(entry), full.entries.get(i), "a page changed later");
    }
    // Log order: indexes never go back; ids name the commands.
    assert!(
        full.entries
            .windows(2)
            .all(|w| w[0].log_index <= w[1].log_index)
    );
    assert!(full.entries.iter().all(|e| !e.command_id.is_empty()));
    let hash = cluster.wait_converged(Duration::from_secs(30)).await;
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

/// The JSON without the serving node (which differs by design).
fn unserved(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.remove("served_by");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_and_history_through_tallyctl_json_are_identical_on_every_node() {
    let cluster = Cluster::start(3, &[]).await;
    let endpoints = cluster.endpoints().join(",");
    let e = endpoints.as_str();
    ok(e, &["asset", "create", "USDT", "6"]);
    ok(e, &["open-account", "1", "--history"]);
    ok(e, &["open-account", "11", "--parent", "1"]);
    ok(e, &["open-account", "12", "--parent", "1"]);
    ok(e, &["wallet-deposit", "1", "spot", "USDT", "100"]);
    ok(
        e,
        &["wallet-transfer", "1", "spot", "11", "margin", "USDT", "40"],
    );
    let (code, json, _) = ctl(
        e,
        &[
            "wallet-transfer",
            "11",
            "margin",
            "12",
            "margin",
            "USDT",
            "1",
        ],
    );
    assert_eq!(
        (code, json["reason"].as_str()),
        (2, Some("TRANSFER_NOT_ALLOWED"))
    );
    ok(e, &["grant", "1", "11", "12"]);
    ok(
        e,
        &[
            "wallet-transfer",
            "11",
            "margin",
            "12",
            "margin",
            "USDT",
            "1",
        ],
    );
    ok(e, &["lock", "5", "1", "USDT", "10"]);
    let written = ok(e, &["release-part", "5", "4"]);
    let index = written["applied_index"].as_u64().expect("applied_index");
    // An unknown wallet kind never leaves tallyctl.
    let (code, _, stderr) = ctl(e, &["wallet-deposit", "1", "savings", "USDT", "1"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("UNKNOWN_WALLET"), "{stderr}");

    let min = index.to_string();
    let reads: [&[&str]; 8] = [
        &["accounts"],
        &["accounts", "--parent", "1"],
        &["wallets", "11"],
        &["holds", "1"],
        &["history", "1"],
        &["assets"],
        &["transferable", "1", "spot", "USDT"],
        &["conservation"],
    ];
    for read in reads {
        let mut answers = Vec::new();
        for id in 1..=3 {
            let node = cluster.addr(id);
            let mut args = read.to_vec();
            args.extend(["--min-index", min.as_str()]);
            let json = ok(&node, &args);
            assert_eq!(
                json["applied_index"].as_u64(),
                Some(index),
                "{read:?} on node {id}"
            );
            answers.push(unserved(json));
        }
        assert_eq!(answers[0], answers[1], "{read:?}");
        assert_eq!(answers[0], answers[2], "{read:?}");
    }
    let subs = ok(e, &["accounts", "--parent", "1", "--min-index", &min]);
    let ids: Vec<u64> = subs["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a["account"].as_u64())
        .collect();
    assert_eq!(ids, vec![11, 12]);
    let history = ok(e, &["history", "1", "--min-index", &min]);
    let deltas: Vec<&str> = history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|x| x["available_delta"].as_str())
        .collect();
    assert_eq!(
        deltas,
        vec!["100.000000", "-40.000000", "-10.000000", "4.000000"]
    );
    let holds = ok(e, &["holds", "1", "--min-index", &min]);
    assert_eq!(holds["holds"][0]["remaining"], "6.000000");
    let sums = ok(e, &["conservation", "--min-index", &min]);
    assert!(
        is_zero(sums["assets"][0]["total"].as_str().unwrap_or("?")),
        "{sums}"
    );
}
