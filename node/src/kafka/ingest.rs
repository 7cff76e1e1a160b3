//! The ingester: on the leader only, consumes the ingest topic (every
//! partition, assigned by hand at the replicated next offsets; no consumer
//! group, no broker-side offsets or transactions), groups each partition's
//! records into ingest entries (group commit) and proposes them. Applying
//! an entry is fenced by the stored next offset (`Ledger::apply_ingest`),
//! so a record is applied exactly once whatever the ingester does: a stale
//! session on a former leader, or a batch proposed twice, is refused whole.
//!
//! One entry per partition is in flight at a time (entries of one partition
//! must commit in offset order); records arriving meanwhile wait in that
//! partition's next batch, at most `ingest_batch_records` of them, after
//! which the consumer is not polled until a batch commits (backpressure;
//! librdkafka's own prefetch is bounded by `queued.max.messages.kbytes`).
//!
//! A record that does not decode as a `tally.v1.Command` is proposed as a
//! malformed marker and recorded with its reason; a command the engine
//! rejects is recorded too (`ListIngestFailures`, and an event). If the
//! broker says a stored offset no longer exists (retention, a recreated
//! topic), the partition is stopped and reported (status, metric, error
//! log), never reset silently. Anything else that ends a session (lost
//! leadership, a broker outage, a fenced batch) restarts it from the
//! replicated positions after a short backoff.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tally_ledger::{IngestBatchWriter, IngestSource, MAX_INGEST_BATCH_RECORDS};
use tally_proto::v1 as pb;

use crate::ctx::NodeCtx;
use crate::grpc::convert;
use crate::kafka::{KafkaConfig, KafkaRuntime};
use crate::raft::types::{EntryRequest, IngestReply};

/// Bound on the bytes of one ingest entry (records beyond go to the next).
const MAX_INGEST_ENTRY_BYTES: usize = 4 << 20;
/// How often watermarks and partition counts are refreshed, and the
/// backoff after a session ends.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Broker calls (metadata, watermarks) time out after this.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);
/// Fault injection for tests (`TALLY_FAULT_INGEST_HOLD_MS`): hold every
/// batch this long before proposing it, and keep the session running
/// across a leadership change, as a slow former leader would.
const HOLD_ENV: &str = "TALLY_FAULT_INGEST_HOLD_MS";

/// What the status RPC and metrics show per partition.
#[derive(Clone, Debug, Default)]
pub struct PartitionView {
    /// The broker's high watermark as last seen (-1: unknown).
    pub high_watermark: i64,
    pub low_watermark: i64,
    /// "running", "stopped" (see `last_error`), "idle".
    pub state: String,
    pub last_error: String,
}

/// The ingester's live status, by partition.
#[derive(Default)]
pub struct IngestStatus {
    pub partitions: Mutex<BTreeMap<u32, PartitionView>>,
    /// The last error that ended a session (empty when healthy).
    pub last_error: Mutex<String>,
    /// Records proposed (not necessarily applied) by this node.
    pub proposed_records: AtomicU64,
}

impl IngestStatus {
    fn with_partition(&self, partition: u32, f: impl FnOnce(&mut PartitionView)) {
        if let Ok(mut map) = self.partitions.lock() {
            let view = map.entry(partition).or_insert_with(|| PartitionView {
                high_watermark: -1,
                low_watermark: -1,
                ..PartitionView::default()
            });
            f(view);
        }
    }

    fn set_error(&self, error: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = error.to_string();
        }
    }

    fn mark_all(&self, state: &str) {
        if let Ok(mut map) = self.partitions.lock() {
            for view in map.values_mut() {
                if view.state != "stopped" {
                    view.state = state.to_string();
                }
            }
        }
    }
}

fn is_leader(ctx: &NodeCtx) -> bool {
    let m = ctx.metrics();
    m.state == ServerState::Leader && m.current_leader == Some(ctx.config.node_id)
}

/// Runs the ingester for the life of the node: a session whenever this
/// node leads.
pub async fn run(ctx: Arc<NodeCtx>, kafka: Arc<KafkaRuntime>, config: KafkaConfig, topic: String) {
    let hold_ms: u64 = std::env::var(HOLD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut metrics = ctx.raft.metrics();
    loop {
        while !is_leader(&ctx) {
            kafka.ingest.mark_all("idle");
            if metrics.changed().await.is_err() {
                return;
            }
        }
        let mut session = tokio::spawn(session(
            ctx.clone(),
            kafka.clone(),
            config.clone(),
            topic.clone(),
            hold_ms,
        ));
        let ended = loop {
            tokio::select! {
                result = &mut session => break Some(result),
                changed = metrics.changed() => {
                    if changed.is_err() {
                        session.abort();
                        return;
                    }
                    if !is_leader(&ctx) && hold_ms == 0 {
                        session.abort();
                        break None;
                    }
                }
            }
        };
        match ended {
            Some(Ok(Ok(()))) | None => {}
            Some(Ok(Err(error))) => {
                tracing::warn!(topic = %topic, %error, "ingest session ended; restarting from the replicated offsets");
                kafka.ingest.set_error(&error);
            }
            Some(Err(join)) if join.is_cancelled() => {}
            Some(Err(join)) => {
                tracing::error!(topic = %topic, error = %join, "ingest session failed");
                kafka.ingest.set_error(&join.to_string());
            }
        }
        tokio::time::sleep(REFRESH_INTERVAL).await;
    }
}

/// One partition inside a session.
struct Partition {
    /// The next offset to propose from (the stored one at session start,
    /// then each proposed batch's end).
    next: u64,
    pending: IngestBatchWriter,
    inflight: bool,
    stopped: bool,
}

type Proposal = (u32, Result<IngestReply, String>);

async fn session(
    ctx: Arc<NodeCtx>,
    kafka: Arc<KafkaRuntime>,
    config: KafkaConfig,
    topic: String,
    hold_ms: u64,
) -> Result<(), String> {
    wait_applied_to_commit(&ctx).await?;
    let consumer: Arc<StreamConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set(
                "group.id",
                format!("tally-ingest-{}", ctx.config.cluster_id),
            )
            .set("client.id", format!("tally-{}-ingest", ctx.config.node_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("queued.max.messages.kbytes", "65536")
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(|e| format!("kafka consumer: {e}"))?,
    );
    let partition_count = fetch_partition_count(&consumer, &topic).await?;
    let stored: BTreeMap<u32, u64> = {
        let st = ctx.state.read().map_err(|_| "state lock poisoned")?;
        st.ledger
            .ingest_positions()
            .into_iter()
            .filter(|(s, _)| s.topic == topic)
            .map(|(s, p)| (s.partition, p.next_offset))
            .collect()
    };
    let mut partitions: BTreeMap<u32, Partition> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partition_count {
        let next = stored.get(&partition).copied().unwrap_or(0);
        let (low, high) = watermarks(&consumer, &topic, partition).await?;
        let stopped = i64::try_from(next).map_or(true, |n| n < low);
        kafka.ingest.with_partition(partition, |view| {
            view.low_watermark = low;
            view.high_watermark = high;
            if stopped {
                view.state = "stopped".into();
                view.last_error = format!(
                    "stored offset {next} no longer exists on the broker (earliest is {low}); \
                     not resetting: restore the records or reset the position deliberately"
                );
            } else {
                view.state = "running".into();
                view.last_error.clear();
            }
        });
        if stopped {
            tracing::error!(topic = %topic, partition, stored_offset = next, earliest = low,
                "ingest stopped for partition: stored offset no longer exists on the broker");
        } else {
            assignment
                .add_partition_offset(&topic, partition as i32, offset_of(next)?)
                .map_err(|e| format!("assign: {e}"))?;
        }
        let source = IngestSource {
            topic: topic.clone(),
            partition,
        };
        partitions.insert(
            partition,
            Partition {
                next,
                pending: IngestBatchWriter::new(&source, next),
                inflight: false,
                stopped,
            },
        );
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("assign: {e}"))?;
    kafka.ingest.set_error("");
    tracing::info!(topic = %topic, partitions = partition_count, "ingest session started");
    let batch_limit = config
        .ingest_batch_records
        .clamp(1, MAX_INGEST_BATCH_RECORDS);
    let mut inflight: FuturesUnordered<futures::future::BoxFuture<'static, Proposal>> =
        FuturesUnordered::new();
    let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
    let clock = AtomicU64::new(0);
    // Watermarks and the partition count are refreshed beside the loop:
    // broker round trips must not hold up proposals.
    let repartitioned = Arc::new(AtomicBool::new(false));
    let _monitor = AbortOnDrop(tokio::spawn(monitor_broker(
        consumer.clone(),
        kafka.clone(),
        topic.clone(),
        partition_count,
        repartitioned.clone(),
    )));
    loop {
        let full = partitions.values().any(|p| {
            p.pending.len() >= batch_limit || p.pending.encoded_len() >= MAX_INGEST_ENTRY_BYTES
        });
        let outbox_full = kafka.outbox.is_full();
        tokio::select! {
            message = consumer.recv(), if !full && !outbox_full => {
                match message {
                    Ok(message) => {
                        let partition = u32::try_from(message.partition()).map_err(|_| "negative partition")?;
                        let offset = u64::try_from(message.offset()).map_err(|_| "negative offset")?;
                        let Some(p) = partitions.get_mut(&partition) else { continue };
                        if p.stopped || offset < p.pending.end_offset() {
                            continue; // A re-delivery of a record already batched.
                        }
                        let pushed = match decode_record(message.payload(), ctx.cluster_version()) {
                            Ok(envelope) => p.pending.push_command(offset, &envelope),
                            Err(reason) => p.pending.push_malformed(offset, &reason),
                        };
                        if !pushed {
                            // Guarded above (room, order); never skip a record silently.
                            return Err(format!("record {partition}/{offset} did not fit its batch"));
                        }
                    }
                    Err(KafkaError::MessageConsumption(code)) => {
                        return Err(offset_problem(&kafka, &consumer, &topic, &mut partitions, code).await);
                    }
                    Err(e) => return Err(format!("kafka consume: {e}")),
                }
            }
            Some((partition, reply)) = inflight.next(), if !inflight.is_empty() => {
                if let Some(p) = partitions.get_mut(&partition) {
                    p.inflight = false;
                }
                match reply {
                    Ok(IngestReply::Applied { .. }) => {}
                    Ok(IngestReply::Fenced { expected_offset }) => {
                        kafka.fenced_batches.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(topic = %topic, partition, expected_offset,
                            "ingest batch refused as stale (fenced): the stored offset moved on; nothing applied");
                        return Err(format!("batch for partition {partition} fenced (stored offset is {expected_offset})"));
                    }
                    Ok(IngestReply::TooManySources) => {
                        return Err("the ledger tracks its maximum number of partitions".into());
                    }
                    Err(e) => return Err(e),
                }
            }
            _ = refresh.tick() => {
                if repartitioned.load(Ordering::Relaxed) {
                    return Err("the topic's partition count changed; re-assigning".into());
                }
            }
        }
        // Propose every partition's pending records that is not in flight.
        for (&partition, p) in partitions.iter_mut() {
            if p.inflight || p.pending.is_empty() || outbox_full {
                continue;
            }
            let source = IngestSource {
                topic: topic.clone(),
                partition,
            };
            let next_writer = IngestBatchWriter::new(&source, p.pending.end_offset());
            let writer = std::mem::replace(&mut p.pending, next_writer);
            let start = p.next;
            p.next = writer.end_offset();
            p.inflight = true;
            let (bytes, count) = writer.finish();
            kafka
                .ingest
                .proposed_records
                .fetch_add(u64::from(count), Ordering::Relaxed);
            let entry = EntryRequest::ingest(crate::writer::leader_now_ms(&clock), &bytes, count);
            let raft = ctx.raft.clone();
            inflight.push(Box::pin(async move {
                if hold_ms > 0 {
                    tracing::warn!(
                        partition,
                        start_offset = start,
                        hold_ms,
                        "fault injection: holding an ingest batch"
                    );
                    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                }
                let reply = match raft.client_write(entry).await {
                    Ok(response) => response
                        .data
                        .ingest
                        .ok_or_else(|| "ingest entry without an ingest reply".to_string()),
                    Err(e) => Err(format!("proposing ingest batch at {start}: {e}")),
                };
                (partition, reply)
            }));
        }
    }
}

/// Aborts the task when dropped (the session ended).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every `REFRESH_INTERVAL`: each partition's watermarks into the status,
/// and whether the topic's partition count changed.
async fn monitor_broker(
    consumer: Arc<StreamConsumer>,
    kafka: Arc<KafkaRuntime>,
    topic: String,
    partition_count: u32,
    repartitioned: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(REFRESH_INTERVAL).await;
        for partition in 0..partition_count {
            if let Ok((low, high)) = watermarks(&consumer, &topic, partition).await {
                kafka.ingest.with_partition(partition, |v| {
                    v.low_watermark = low;
                    v.high_watermark = high;
                });
            }
        }
        if let Ok(count) = fetch_partition_count(&consumer, &topic).await
            && count != partition_count
        {
            repartitioned.store(true, Ordering::Relaxed);
        }
    }
}

/// A Kafka record's value as a command, or why it is not one. A command
/// of a feature the active cluster version (`cluster_version`) has not
/// switched on is not one yet: it is recorded as a failed record
/// (`FEATURE_NOT_ACTIVE`), so no replica on an older binary ever has to
/// decode it.
fn decode_record(
    payload: Option<&[u8]>,
    cluster_version: u32,
) -> Result<tally_ledger::Envelope, String> {
    let bytes = payload.ok_or("record has no value")?;
    let command = pb::Command::decode(bytes).map_err(|e| format!("not a tally.v1.Command: {e}"))?;
    let envelope = convert::envelope(&command).map_err(|e| format!("{}: {e}", e.reason()))?;
    let needed = envelope.command.required_cluster_version();
    if needed > cluster_version {
        return Err(format!(
            "FEATURE_NOT_ACTIVE: {} needs cluster version {needed}; the cluster runs at {cluster_version}",
            envelope.command.kind()
        ));
    }
    Ok(envelope)
}

fn offset_of(next: u64) -> Result<Offset, String> {
    i64::try_from(next)
        .map(Offset::Offset)
        .map_err(|_| format!("offset {next} out of range"))
}

/// The broker refused a fetch (`code`): if a stored offset is outside the
/// partition's range now, stop that partition loudly; the error ends the
/// session either way.
async fn offset_problem(
    kafka: &KafkaRuntime,
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    partitions: &mut BTreeMap<u32, Partition>,
    code: rdkafka::types::RDKafkaErrorCode,
) -> String {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let offset_error = matches!(code, Code::AutoOffsetReset | Code::OffsetOutOfRange);
    if !offset_error {
        return format!("kafka consume: {code}");
    }
    for (&partition, p) in partitions.iter_mut() {
        let Ok((low, high)) = watermarks(consumer, topic, partition).await else {
            continue;
        };
        let next = i64::try_from(p.next).unwrap_or(i64::MAX);
        if next < low || (high >= 0 && next > high && low == high) {
            p.stopped = true;
            let error = format!(
                "stored offset {} is outside the broker's range {low}..{high} ({code}); \
                 not resetting: the topic was truncated or recreated",
                p.next
            );
            tracing::error!(topic, partition, %error, "ingest stopped for partition");
            kafka.ingest.with_partition(partition, |v| {
                v.state = "stopped".into();
                v.last_error = error.clone();
            });
        }
    }
    format!("kafka consume: {code}")
}

async fn wait_applied_to_commit(ctx: &NodeCtx) -> Result<(), String> {
    let committed = ctx.metrics().local_committed.map(|l| l.index).unwrap_or(0);
    let mut applied = ctx.applied.clone();
    tokio::time::timeout(BROKER_TIMEOUT, applied.wait_for(|a| *a >= committed))
        .await
        .map_err(|_| "leader did not apply its committed log in time".to_string())?
        .map_err(|_| "node shutting down".to_string())?;
    Ok(())
}

async fn fetch_partition_count(consumer: &Arc<StreamConsumer>, topic: &str) -> Result<u32, String> {
    let consumer = consumer.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), BROKER_TIMEOUT)
            .map_err(|e| format!("kafka metadata for {topic}: {e}"))?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| format!("topic {topic} not found"))?;
        if let Some(e) = t.error() {
            return Err(format!("topic {topic}: {:?}", e));
        }
        if t.partitions().is_empty() {
            return Err(format!("topic {topic} has no partitions"));
        }
        u32::try_from(t.partitions().len()).map_err(|_| "too many partitions".to_string())
    })
    .await
    .map_err(|e| format!("metadata task: {e}"))?
}

async fn watermarks(
    consumer: &StreamConsumer,
    topic: &str,
    partition: u32,
) -> Result<(i64, i64), String> {
    // fetch_watermarks blocks (a broker round trip): run it off the runtime's workers.
    let result = tokio::task::block_in_place(|| {
        consumer.fetch_watermarks(topic, partition as i32, BROKER_TIMEOUT)
    });
    result.map_err(|e| format!("watermarks of {topic}/{partition}: {e}"))
}
