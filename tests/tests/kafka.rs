//! Kafka in and out through a real Kafka-protocol broker (tansu) and a real
//! three-node cluster: commands produced to the ingest topic are applied
//! exactly once (balances as computed by hand), their events reach the
//! events topic with the documented keys and ids; poison and rejected
//! records are recorded and skipped over; a stale ingester is fenced; and
//! exactly-once holds across a leader `kill -9` and a broker restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use prost::Message;
use tally_client::{Client, ClientConfig, Owner, ReadOptions, commands};
use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::kafka_client::KafkaClient;
use tally_proto::v1::{
    Command, IngestStatusRequest, IngestStatusResponse, LedgerEvent, ListIngestFailuresRequest,
    TransferLeaderRequest,
};
use tally_tests::Cluster;
use tally_tests::kafka::{Broker, Record, produce};

const INGEST: &str = "commands";
const EVENTS: &str = "events";
const EVENT_PARTITIONS: i32 = 3;

fn with_id(mut command: Command, id: &str) -> Command {
    command.command_id = id.to_string();
    command
}

fn kafka_args(broker: &Broker) -> Vec<String> {
    vec![
        "--kafka-brokers".into(),
        broker.bootstrap(),
        "--kafka-ingest-topic".into(),
        INGEST.into(),
        "--kafka-events-topic".into(),
        EVENTS.into(),
        "--snapshot-every-entries".into(),
        "200".into(),
    ]
}

async fn start_cluster(
    broker: &Broker,
    ingest_partitions: i32,
    env: BTreeMap<u64, Vec<(String, String)>>,
) -> Cluster {
    broker.create_topic(INGEST, ingest_partitions).await;
    broker.create_topic(EVENTS, EVENT_PARTITIONS).await;
    let args = kafka_args(broker);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Cluster::start_with_env(3, &args, env).await
}

fn client(cluster: &Cluster) -> Client {
    Client::new(ClientConfig::new(cluster.endpoints())).expect("client")
}

async fn ingest_status(addr: &str) -> IngestStatusResponse {
    let mut c = KafkaClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    c.get_ingest_status(IngestStatusRequest {})
        .await
        .expect("ingest status")
        .into_inner()
}

/// The leader's ingest status once every listed partition's stored offset
/// reaches `want` (partition -> offset) and the ingester has seen the
/// broker's high watermark there (the tests produce one record per batch,
/// so tansu's high watermark is the true end offset).
async fn wait_offsets(
    cluster: &Cluster,
    want: &BTreeMap<u32, u64>,
    timeout: Duration,
) -> IngestStatusResponse {
    let deadline = Instant::now() + timeout;
    loop {
        let leader = cluster.wait_leader(Duration::from_secs(20)).await;
        let status = ingest_status(&cluster.addr(leader)).await;
        let stored: BTreeMap<u32, u64> = status
            .partitions
            .iter()
            .filter(|p| p.high_watermark >= 0 && p.high_watermark as u64 == p.stored_offset)
            .map(|p| (p.partition, p.stored_offset))
            .collect();
        if want.iter().all(|(p, o)| stored.get(p) == Some(o)) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "stored offsets {stored:?} did not reach {want:?}: {status:#?}\nleader log:\n{}",
            cluster.log_tail(leader)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn balance(c: &Client, owner: impl Into<Owner>, asset: &str) -> (String, String) {
    let b = c
        .balance(owner, asset, ReadOptions::linearizable())
        .await
        .expect("balance")
        .balance
        .expect("a balance");
    (b.available, b.locked)
}

/// Every event on the events topic, decoded, with its key and header id.
fn read_events(broker: &Broker, quiet: Duration) -> Vec<(String, String, LedgerEvent)> {
    broker
        .read_all(EVENTS, EVENT_PARTITIONS, quiet)
        .into_iter()
        .map(|r: Record| {
            let key = String::from_utf8(r.key.unwrap_or_default()).expect("utf-8 key");
            let header =
                String::from_utf8(r.headers.get("tally-event-id").cloned().unwrap_or_default())
                    .expect("utf-8 id");
            let event =
                LedgerEvent::decode(r.value.unwrap_or_default().as_slice()).expect("a LedgerEvent");
            (key, header, event)
        })
        .collect()
}

/// Every distinct event id, and for each log index its positions are
/// 0..n with none missing.
fn check_ids_contiguous(events: &[(String, String, LedgerEvent)]) -> BTreeSet<String> {
    let mut positions: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (_, header, event) in events {
        assert_eq!(header, &event.event_id, "header id equals the body's");
        assert_eq!(
            event.event_id,
            format!("{}.{}", event.log_index, event.position)
        );
        positions
            .entry(event.log_index)
            .or_default()
            .insert(event.position);
        ids.insert(event.event_id.clone());
    }
    for (index, set) in &positions {
        let expected: BTreeSet<u32> = (0..set.len() as u32).collect();
        assert_eq!(set, &expected, "entry {index} has an event id missing");
    }
    ids
}

fn balance_keys_of(events: &[(String, String, LedgerEvent)], command_id: &str) -> BTreeSet<String> {
    events
        .iter()
        .filter(|(_, _, e)| e.command_id == command_id)
        .filter(|(_, _, e)| {
            matches!(
                e.body,
                Some(tally_proto::v1::ledger_event::Body::Event(ref ev))
                    if matches!(ev.kind, Some(tally_proto::v1::event::Kind::Balance(_)))
            )
        })
        .map(|(k, _, _)| k.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn fills_from_the_topic_apply_exactly_once_with_hand_computed_balances_and_keyed_events() {
    let broker = Broker::start_memory();
    let cluster = start_cluster(&broker, 2, BTreeMap::new()).await;
    let producer = broker.producer(true);
    let setup = [
        with_id(commands::create_asset("BTC", 8), "a-btc"),
        with_id(commands::create_asset("USD", 2), "a-usd"),
        with_id(commands::create_account(1), "acct-1"),
        with_id(commands::create_account(2), "acct-2"),
        with_id(commands::create_account(3), "acct-3"),
        with_id(commands::deposit(1, "USD", "1000.00"), "dep-1"),
        with_id(commands::deposit(2, "BTC", "1"), "dep-2"),
        with_id(commands::lock(10, 1, "USD", "600"), "lock-10"),
        with_id(commands::lock(20, 2, "BTC", "0.5"), "lock-20"),
        // 0.4 BTC at 1250 = 500.00 USD; buyer pays 0.0004 BTC, seller 0.50 USD.
        with_id(
            commands::fill_with_fees(10, 20, "0.4", "1250", "0.0004", "0.50"),
            "fill-1",
        ),
    ];
    for command in &setup {
        produce(&producer, INGEST, 0, "m1", &command.encode_to_vec()).await;
    }
    wait_offsets(
        &cluster,
        &BTreeMap::from([(0, setup.len() as u64)]),
        Duration::from_secs(30),
    )
    .await;
    // Partition 1: five deposits of 1.00 USD to account 3.
    for i in 0..5 {
        let command = with_id(commands::deposit(3, "USD", "1"), &format!("d3-{i}"));
        produce(&producer, INGEST, 1, "3", &command.encode_to_vec()).await;
    }
    let status = wait_offsets(
        &cluster,
        &BTreeMap::from([(0, setup.len() as u64), (1, 5)]),
        Duration::from_secs(30),
    )
    .await;
    for p in &status.partitions {
        assert_eq!(p.failed_records, 0, "{p:?}");
        assert_eq!(p.duplicate_records, 0, "{p:?}");
        assert_eq!(p.high_watermark as u64, p.stored_offset, "caught up: {p:?}");
        assert_eq!(p.lag, 0);
    }
    let c = client(&cluster);
    assert_eq!(
        balance(&c, 1, "USD").await,
        ("400.00".into(), "100.00".into())
    );
    assert_eq!(
        balance(&c, 1, "BTC").await,
        ("0.39960000".into(), "0.00000000".into())
    );
    assert_eq!(
        balance(&c, 2, "BTC").await,
        ("0.50000000".into(), "0.10000000".into())
    );
    assert_eq!(
        balance(&c, 2, "USD").await,
        ("499.50".into(), "0.00".into())
    );
    assert_eq!(balance(&c, 3, "USD").await, ("5.00".into(), "0.00".into()));
    assert_eq!(balance(&c, Owner::Fees, "BTC").await.0, "0.00040000");
    assert_eq!(balance(&c, Owner::Fees, "USD").await.0, "0.50");
    // Conservation: the external accounts hold minus everything deposited.
    assert_eq!(balance(&c, Owner::External, "USD").await.0, "-1005.00");
    assert_eq!(balance(&c, Owner::External, "BTC").await.0, "-1.00000000");
    cluster.wait_converged(Duration::from_secs(20)).await;

    // The events topic: every entry's events with contiguous ids, keyed by account.
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = read_events(&broker, Duration::from_millis(800));
        let done = (0..5).all(|i| !balance_keys_of(&events, &format!("d3-{i}")).is_empty());
        if done || Instant::now() > deadline {
            break events;
        }
    };
    check_ids_contiguous(&events);
    let fill_keys: BTreeSet<String> = events
        .iter()
        .filter(|(_, _, e)| e.command_id == "fill-1")
        .map(|(k, _, _)| k.clone())
        .collect();
    assert_eq!(
        fill_keys,
        BTreeSet::from(["1", "2", "system:fees:BTC", "system:fees:USD"].map(String::from)),
        "a fill's events are keyed by both accounts and the fee owners"
    );
    assert_eq!(
        balance_keys_of(&events, "dep-1"),
        BTreeSet::from(["1".to_string(), "system:external:USD".to_string()])
    );
    for i in 0..5 {
        assert_eq!(
            balance_keys_of(&events, &format!("d3-{i}")),
            BTreeSet::from(["3".to_string(), "system:external:USD".to_string()])
        );
    }
    // One account's events sit in one partition.
    let mut partition_of: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for r in broker.read_all(EVENTS, EVENT_PARTITIONS, Duration::from_millis(300)) {
        let key = String::from_utf8(r.key.unwrap_or_default()).expect("key");
        partition_of.entry(key).or_default().insert(r.partition);
    }
    assert!(
        partition_of.values().all(|p| p.len() == 1),
        "{partition_of:?}"
    );
    // The outbox is trimmed once published.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leader = cluster.wait_leader(Duration::from_secs(5)).await;
        let publish = ingest_status(&cluster.addr(leader))
            .await
            .publish
            .expect("publish");
        if publish.outbox_entries == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "outbox not trimmed: {publish:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_and_rejected_records_are_recorded_with_offset_and_reason_and_the_partition_moves_on()
 {
    let broker = Broker::start_memory();
    let cluster = start_cluster(&broker, 1, BTreeMap::new()).await;
    let producer = broker.producer(true);
    let records: Vec<Vec<u8>> = vec![
        with_id(commands::create_asset("USD", 2), "a").encode_to_vec(),
        with_id(commands::create_account(1), "b").encode_to_vec(),
        with_id(commands::deposit(1, "USD", "10"), "c").encode_to_vec(),
        // Offset 3: garbage bytes (not a protobuf Command).
        vec![0xff, 0x00, 0x13, 0x37, 0xde, 0xad],
        // Offset 4: a withdrawal above the balance: rejected by the engine.
        with_id(commands::withdraw(1, "USD", "11"), "too-much").encode_to_vec(),
        // Offset 5: bad precision (3 decimals for a 2-decimal asset).
        with_id(commands::deposit(1, "USD", "0.001"), "bad-precision").encode_to_vec(),
        // Offset 6: the partition goes on.
        with_id(commands::deposit(1, "USD", "5"), "d").encode_to_vec(),
    ];
    for value in &records {
        produce(&producer, INGEST, 0, "1", value).await;
    }
    let status = wait_offsets(&cluster, &BTreeMap::from([(0, 7)]), Duration::from_secs(30)).await;
    assert_eq!(status.partitions[0].failed_records, 3, "{status:?}");
    assert_eq!(status.partitions[0].applied_records, 4);
    let c = client(&cluster);
    assert_eq!(balance(&c, 1, "USD").await, ("15.00".into(), "0.00".into()));
    // Every node keeps the same failures, with offset and reason.
    for addr in cluster.endpoints() {
        let mut k = KafkaClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let deadline = Instant::now() + Duration::from_secs(10);
        let failures = loop {
            let f = k
                .list_ingest_failures(ListIngestFailuresRequest {
                    topic: INGEST.into(),
                    partition: 0,
                    from_offset: 0,
                    limit: 10,
                })
                .await
                .expect("failures")
                .into_inner()
                .failures;
            if f.len() == 3 || Instant::now() > deadline {
                break f;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let got: Vec<(u64, &str, &str)> = failures
            .iter()
            .map(|f| (f.offset, f.code.as_str(), f.command_id.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, "MALFORMED_RECORD", ""),
                (4, "INSUFFICIENT_FUNDS", "too-much"),
                (5, "BAD_PRECISION", "bad-precision"),
            ],
            "on {addr}: {failures:?}"
        );
        assert!(
            failures[0].message.contains("not a tally.v1.Command"),
            "{failures:?}"
        );
        assert!(
            failures[2].message.contains("more than 2 decimals"),
            "{failures:?}"
        );
    }
    // tallyctl shows the same, for people and for scripts.
    let endpoints = cluster.endpoints().join(",");
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(tally_tests::bin_path("tallyctl"))
            .args(["--endpoints", &endpoints, "--json", "ingest"])
            .args(args)
            .env_remove("TALLY_ENDPOINTS")
            .output()
            .expect("run tallyctl");
        assert!(out.status.success(), "tallyctl ingest {args:?}: {out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let status = ctl(&["status"]);
    assert_eq!(status["leader"], true, "{status}");
    assert_eq!(status["partitions"][0]["stored_offset"], 7, "{status}");
    assert_eq!(status["partitions"][0]["high_watermark"], 7, "{status}");
    assert_eq!(status["partitions"][0]["lag"], 0, "{status}");
    assert_eq!(status["partitions"][0]["failed_records"], 3, "{status}");
    let listed = ctl(&["failures", "--partition", "0"]);
    let offsets: Vec<u64> = listed["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .filter_map(|f| f["offset"].as_u64())
        .collect();
    assert_eq!(offsets, vec![3, 4, 5], "{listed}");
    // Published as events too, keyed by the partition.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = read_events(&broker, Duration::from_millis(500));
        let failures: Vec<u64> = events
            .iter()
            .filter(|(k, _, _)| k == &format!("ingest:{INGEST}:0"))
            .filter_map(|(_, _, e)| match &e.body {
                Some(tally_proto::v1::ledger_event::Body::IngestFailure(f)) => Some(f.offset),
                _ => None,
            })
            .collect();
        if failures == vec![3, 4, 5] {
            break;
        }
        assert!(Instant::now() < deadline, "failure events: {failures:?}");
    }
}

/// Makes node `to` the leader (asking the current leader).
async fn transfer_leader(cluster: &Cluster, to: u64) {
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    if leader == to {
        return;
    }
    let mut admin = AdminClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .expect("connect");
    admin
        .transfer_leader(TransferLeaderRequest { node_id: to })
        .await
        .unwrap_or_else(|e| panic!("transfer from {leader} to {to}: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_ingester_on_a_former_leader_is_fenced_and_applies_nothing() {
    let broker = Broker::start_memory();
    // Node 1 holds every batch 4 s before proposing it and keeps its session
    // across leadership changes: a slow former leader with records in hand.
    let env = BTreeMap::from([(
        1,
        vec![("TALLY_FAULT_INGEST_HOLD_MS".to_string(), "4000".to_string())],
    )]);
    let cluster = start_cluster(&broker, 1, env).await;
    transfer_leader(&cluster, 1).await;
    // Setup through gRPC, then let node 1's ingester start.
    let c = client(&cluster);
    for command in [
        commands::create_asset("USD", 2),
        commands::create_account(1),
    ] {
        assert!(c.submit(command).await.applied_index().is_some());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let producer = broker.producer(true);
    for i in 0..3 {
        let command = with_id(commands::deposit(1, "USD", "1"), &format!("dep-{i}"));
        produce(&producer, INGEST, 0, "1", &command.encode_to_vec()).await;
    }
    // Node 1 now holds offsets 0..3. Node 2 leads and applies them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    transfer_leader(&cluster, 2).await;
    wait_offsets(&cluster, &BTreeMap::from([(0, 3)]), Duration::from_secs(10)).await;
    // Node 1 leads again before its held batch goes out: it is fenced.
    transfer_leader(&cluster, 1).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = ingest_status(&cluster.addr(1)).await;
        if status.fenced_batches >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no fenced batch on node 1: {status:?}\n{}",
            cluster.log_tail(1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        cluster.log_tail(1).contains("fenced"),
        "{}",
        cluster.log_tail(1)
    );
    let status = ingest_status(&cluster.addr(1)).await;
    let p = &status.partitions[0];
    assert_eq!(
        (p.stored_offset, p.applied_records, p.duplicate_records),
        (3, 3, 0),
        "{p:?}"
    );
    assert_eq!(balance(&c, 1, "USD").await.0, "3.00");
}

/// Produces deposits of 1.00 number `range` (ids `f-<n>`) to accounts
/// 1..=accounts round robin over `partitions`, from a background task,
/// `pause_ms` apart.
fn spawn_load(
    broker: &Broker,
    partitions: i32,
    accounts: u64,
    range: std::ops::Range<u64>,
    pause_ms: u64,
) -> tokio::task::JoinHandle<()> {
    let producer = broker.producer(true);
    tokio::spawn(async move {
        for n in range {
            let account = 1 + n % accounts;
            let command = with_id(commands::deposit(account, "USD", "1"), &format!("f-{n}"));
            let partition = (n % partitions as u64) as i32;
            produce(
                &producer,
                INGEST,
                partition,
                &account.to_string(),
                &command.encode_to_vec(),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_record_applies_exactly_once_across_a_leader_kill_and_a_broker_restart() {
    const PARTITIONS: i32 = 3;
    const ACCOUNTS: u64 = 6;
    const PER_PHASE: u64 = 300;
    let mut broker = Broker::start_persistent();
    let mut cluster = start_cluster(&broker, PARTITIONS, BTreeMap::new()).await;
    let c = client(&cluster);
    assert!(
        c.submit(commands::create_asset("USD", 2))
            .await
            .applied_index()
            .is_some()
    );
    for a in 1..=ACCOUNTS {
        assert!(
            c.submit(commands::create_account(a))
                .await
                .applied_index()
                .is_some()
        );
    }
    // Phase 1: kill -9 the leader while records flow, then restart it.
    let load = spawn_load(&broker, PARTITIONS, ACCOUNTS, 0..PER_PHASE, 10);
    // Kill the leader once it has applied some of the records, not all.
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        let leader = cluster.wait_leader(Duration::from_secs(10)).await;
        let applied: u64 = ingest_status(&cluster.addr(leader))
            .await
            .partitions
            .iter()
            .map(|p| p.stored_offset)
            .sum();
        if applied > 0 {
            assert!(applied < PER_PHASE, "killed mid-flow ({applied} applied)");
            break leader;
        }
        assert!(Instant::now() < deadline, "nothing ingested");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cluster.kill9(leader);
    load.await.expect("load");
    cluster.restart(leader).await;
    // Phase 2: restart the broker while records flow.
    spawn_load(&broker, PARTITIONS, ACCOUNTS, PER_PHASE..PER_PHASE + 50, 0)
        .await
        .expect("load");
    broker.restart();
    let total = PER_PHASE + 100;
    spawn_load(&broker, PARTITIONS, ACCOUNTS, PER_PHASE + 50..total, 0)
        .await
        .expect("load");
    let per_partition = |p: u32| {
        (0..total)
            .filter(|n| n % PARTITIONS as u64 == p as u64)
            .count() as u64
    };
    let want: BTreeMap<u32, u64> = (0..PARTITIONS as u32)
        .map(|p| (p, per_partition(p)))
        .collect();
    let status = wait_offsets(&cluster, &want, Duration::from_secs(60)).await;
    for p in &status.partitions {
        assert_eq!(p.duplicate_records, 0, "no record applied twice: {p:?}");
        assert_eq!(p.failed_records, 0, "{p:?}");
        assert_eq!(p.applied_records, per_partition(p.partition), "{p:?}");
        assert_eq!(
            p.high_watermark as u64, p.stored_offset,
            "stored = high watermark: {p:?}"
        );
    }
    // The fault-free replay of the same records: each account got one 1.00 per record.
    for a in 1..=ACCOUNTS {
        let want = (0..total).filter(|n| 1 + n % ACCOUNTS == a).count();
        assert_eq!(
            balance(&c, a, "USD").await.0,
            format!("{want}.00"),
            "account {a}"
        );
    }
    assert_eq!(
        balance(&c, Owner::External, "USD").await.0,
        format!("-{total}.00")
    );
    cluster.wait_converged(Duration::from_secs(30)).await;
    // Every record's events arrived at least once, with no id missing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = read_events(&broker, Duration::from_millis(1000));
        let seen: BTreeSet<String> = events
            .iter()
            .map(|(_, _, e)| e.command_id.clone())
            .collect();
        let missing: Vec<u64> = (0..total)
            .filter(|n| !seen.contains(&format!("f-{n}")))
            .collect();
        if missing.is_empty() {
            check_ids_contiguous(&events);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events of {} records missing (first {:?}); broker log tail:\n{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            broker
                .log()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_events_outbox_refuses_writes_until_the_broker_is_back_and_drops_no_event() {
    let mut broker = Broker::start_persistent();
    broker.create_topic(INGEST, 1).await;
    broker.create_topic(EVENTS, EVENT_PARTITIONS).await;
    // A one-byte bound: one unpublished row fills the outbox.
    let mut args = kafka_args(&broker);
    args.extend(["--kafka-outbox-max-bytes".to_string(), "1".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = Cluster::start(3, &args).await;
    let c = client(&cluster);
    for command in [
        commands::create_asset("USD", 2),
        commands::create_account(1),
    ] {
        assert!(c.submit(command).await.applied_index().is_some());
    }
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let outbox_empty = || async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let publish = ingest_status(&cluster.addr(leader))
                .await
                .publish
                .expect("publish");
            if publish.outbox_entries == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "outbox not drained: {publish:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    outbox_empty().await;
    broker.kill();
    let mut ledger = tally_proto::v1::ledger_client::LedgerClient::connect(format!(
        "http://{}",
        cluster.addr(leader)
    ))
    .await
    .expect("connect");
    let submit = |id: &str| tally_proto::v1::SubmitRequest {
        command: Some(with_id(commands::deposit(1, "USD", "1"), id)),
        reply_detail: 0,
    };
    ledger
        .submit(submit("first"))
        .await
        .expect("applied while the outbox had room");
    let refused = ledger
        .submit(submit("second"))
        .await
        .expect_err("refused when full");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_eq!(
        refused
            .metadata()
            .get(tally_proto::REASON_METADATA_KEY)
            .and_then(|v| v.to_str().ok()),
        Some("EVENTS_OUTBOX_FULL"),
        "{refused:?}"
    );
    assert_eq!(
        balance(&c, 1, "USD").await.0,
        "1.00",
        "the refused write changed nothing"
    );
    broker.restart();
    outbox_empty().await;
    ledger
        .submit(submit("second"))
        .await
        .expect("accepted once published");
    assert_eq!(balance(&c, 1, "USD").await.0, "2.00");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = read_events(&broker, Duration::from_millis(500));
        let ids: BTreeSet<String> = events
            .iter()
            .map(|(_, _, e)| e.command_id.clone())
            .collect();
        if ids.contains("first") && ids.contains("second") {
            check_ids_contiguous(&events);
            break;
        }
        assert!(Instant::now() < deadline, "events missing: {ids:?}");
    }
}
