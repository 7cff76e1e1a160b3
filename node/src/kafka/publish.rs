//! The publisher: on the leader only, sends the outbox (`outbox`) to the
//! events topic in log order with librdkafka's idempotent producer
//! (`acks=all`), each record keyed as `outbox::event_keys` says and carrying
//! its event id in the `tally-event-id` header. Once every record of a run
//! of rows is acknowledged, it proposes a published marker up to the last
//! row's index; applying the marker trims those rows on every node, so a new
//! leader resumes after the last acknowledged position.
//!
//! At least once: a crash or a leadership change between an acknowledgment
//! and the marker's commit re-sends those events (same ids, same keys, same
//! order per key). Never lost: a row leaves the outbox only after its
//! events were acknowledged, and the outbox is replicated (written by every
//! node's state machine, carried by snapshots). Bounded: writes are refused
//! while the outbox holds `outbox_max_bytes` (never dropped).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rocksdb::{Direction, IteratorMode};

use crate::ctx::NodeCtx;
use crate::kafka::outbox::{EVENT_ID_HEADER, decode_row};
use crate::kafka::{KafkaConfig, KafkaRuntime};
use crate::raft::types::EntryRequest;
use crate::storage::{CF_OUTBOX, cf};

/// Rows (log entries) sent per round, at most.
const MAX_ROWS_PER_ROUND: usize = 256;
/// Bytes sent per round, at most (a round may exceed it by one row).
const MAX_BYTES_PER_ROUND: usize = 8 << 20;
/// A published marker is proposed at most this often.
const MARKER_INTERVAL: Duration = Duration::from_millis(100);
/// Wait before retrying after a broker error.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// The publisher's live status.
#[derive(Default)]
pub struct PublishStatus {
    /// Events acknowledged by the broker (this node, since start).
    pub events_published: AtomicU64,
    pub last_error: Mutex<String>,
}

impl PublishStatus {
    fn set_error(&self, error: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = error.to_string();
        }
    }
}

fn is_leader(ctx: &NodeCtx) -> bool {
    let m = ctx.metrics();
    m.state == ServerState::Leader && m.current_leader == Some(ctx.config.node_id)
}

/// Runs the publisher for the life of the node.
pub async fn run(ctx: Arc<NodeCtx>, kafka: Arc<KafkaRuntime>, config: KafkaConfig, topic: String) {
    let producer: FutureProducer = match ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", format!("tally-{}-events", ctx.config.node_id))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .set("queue.buffering.max.messages", "200000")
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "kafka producer could not be created; events are not published");
            kafka.publish.set_error(&format!("producer: {e}"));
            return;
        }
    };
    let mut metrics = ctx.raft.metrics();
    let mut applied = ctx.applied.clone();
    // The next index to send: local progress, ahead of the replicated
    // marker between two markers; reset on every leadership change.
    let mut cursor: Option<u64> = None;
    let mut marked = 0u64;
    let mut last_marker = Instant::now();
    loop {
        if !is_leader(&ctx) {
            cursor = None;
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(MARKER_INTERVAL) => {}
            }
            continue;
        }
        let published = kafka.outbox.published_up_to.load(Ordering::Relaxed);
        let from = cursor.unwrap_or(0).max(published + 1);
        let rows = match read_rows(&ctx, from) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "events outbox unreadable; publishing stopped");
                kafka.publish.set_error(&e);
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
        };
        let Some(&(last_index, _)) = rows.last() else {
            let sent_up_to = from.saturating_sub(1);
            if sent_up_to > marked.max(published) {
                propose_marker(&ctx, sent_up_to, &mut marked, &mut last_marker).await;
            }
            tokio::select! {
                _ = applied.changed() => {}
                _ = tokio::time::sleep(MARKER_INTERVAL) => {}
            }
            continue;
        };
        match send_rows(&producer, &topic, &rows).await {
            Ok(sent) => {
                kafka
                    .publish
                    .events_published
                    .fetch_add(sent, Ordering::Relaxed);
                kafka.publish.set_error("");
                cursor = Some(last_index + 1);
                if last_marker.elapsed() >= MARKER_INTERVAL {
                    propose_marker(&ctx, last_index, &mut marked, &mut last_marker).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, from, "publishing events failed; retrying from the last acknowledged row");
                kafka.publish.set_error(&e);
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
        }
    }
}

async fn propose_marker(ctx: &NodeCtx, up_to: u64, marked: &mut u64, last: &mut Instant) {
    *last = Instant::now();
    let clock = AtomicU64::new(0);
    let entry = EntryRequest::published(crate::writer::leader_now_ms(&clock), up_to);
    match ctx.raft.client_write(entry).await {
        Ok(_) => *marked = up_to,
        Err(e) => tracing::debug!(error = %e, up_to, "published marker not committed"),
    }
}

/// Up to a round's worth of outbox rows from index `from` on, in order.
fn read_rows(ctx: &NodeCtx, from: u64) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let outbox = cf(&ctx.db, CF_OUTBOX).map_err(|e| e.to_string())?;
    let start = from.to_be_bytes();
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    for item in ctx
        .db
        .iterator_cf(outbox, IteratorMode::From(&start, Direction::Forward))
    {
        let (key, value) = item.map_err(|e| format!("outbox read: {e}"))?;
        let index: [u8; 8] = key[..]
            .try_into()
            .map_err(|_| format!("outbox key of {} bytes", key.len()))?;
        bytes += value.len();
        rows.push((u64::from_be_bytes(index), value.to_vec()));
        if rows.len() >= MAX_ROWS_PER_ROUND || bytes >= MAX_BYTES_PER_ROUND {
            break;
        }
    }
    Ok(rows)
}

/// Sends every record of `rows` and waits for all acknowledgments; the
/// number of records, or the first error.
async fn send_rows(
    producer: &FutureProducer,
    topic: &str,
    rows: &[(u64, Vec<u8>)],
) -> Result<u64, String> {
    let mut pending: Vec<DeliveryFuture> = Vec::new();
    let mut sent = 0u64;
    for (index, row) in rows {
        let records = decode_row(row).map_err(|e| format!("outbox row {index}: {e}"))?;
        for (position, record) in records.iter().enumerate() {
            let id = format!("{index}.{position}");
            loop {
                let headers = OwnedHeaders::new().insert(Header {
                    key: EVENT_ID_HEADER,
                    value: Some(id.as_bytes()),
                });
                let message = FutureRecord::to(topic)
                    .key(record.key)
                    .payload(record.value)
                    .headers(headers);
                match producer.send_result(message) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        _,
                    )) => {
                        // The producer's queue is full: wait for what is in flight.
                        await_all(&mut pending).await?;
                    }
                    Err((e, _)) => return Err(format!("produce: {e}")),
                }
            }
            sent += 1;
        }
    }
    await_all(&mut pending).await?;
    Ok(sent)
}

async fn await_all(pending: &mut Vec<DeliveryFuture>) -> Result<(), String> {
    for delivery in pending.drain(..) {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(format!("delivery: {e}")),
            Err(_) => return Err("delivery cancelled (producer shutting down)".into()),
        }
    }
    Ok(())
}
