//! The public `tally.v1.Kafka` service: this node's view of ingest (stored
//! offsets from the replicated ledger, watermarks and state from the
//! ingester, which runs on the leader) and publishing (outbox and marker),
//! and the failed records kept per partition.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tally_ledger::{IngestSource, MAX_INGEST_FAILURES_KEPT, is_valid_topic};
use tally_proto::v1::kafka_server::Kafka as KafkaRpc;
use tally_proto::v1::{
    IngestFailure, IngestPartitionStatus, IngestStatusRequest, IngestStatusResponse,
    ListIngestFailuresRequest, ListIngestFailuresResponse, PublishStatus,
};
use tonic::{Request, Response, Status};

use crate::ctx::NodeCtx;
use crate::grpc::status::invalid;

/// Failures listed when the request names no limit.
const DEFAULT_FAILURES_LIMIT: usize = 100;

pub struct KafkaService {
    pub ctx: Arc<NodeCtx>,
}

fn locked_text(text: &std::sync::Mutex<String>) -> String {
    text.lock().map(|t| t.clone()).unwrap_or_default()
}

impl KafkaService {
    fn partitions(&self, topic: &str) -> Vec<IngestPartitionStatus> {
        let positions = match self.ctx.state.read() {
            Ok(st) => st.ledger.ingest_positions(),
            Err(_) => Vec::new(),
        };
        let live = self
            .ctx
            .kafka
            .ingest
            .partitions
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let mut out: Vec<IngestPartitionStatus> = positions
            .into_iter()
            .filter(|(source, _)| source.topic == topic)
            .map(|(source, p)| {
                let view = live.get(&source.partition).cloned().unwrap_or_default();
                let high = if view.state.is_empty() {
                    -1
                } else {
                    view.high_watermark
                };
                IngestPartitionStatus {
                    topic: source.topic,
                    partition: source.partition,
                    stored_offset: p.next_offset,
                    high_watermark: high,
                    lag: lag(high, p.next_offset),
                    applied_records: p.applied_records,
                    duplicate_records: p.duplicate_records,
                    failed_records: p.failed_records,
                    state: if view.state.is_empty() {
                        "idle".into()
                    } else {
                        view.state
                    },
                    last_error: view.last_error,
                }
            })
            .collect();
        // Partitions the ingester sees that have no stored position yet.
        for (partition, view) in live {
            if !out.iter().any(|p| p.partition == partition) {
                out.push(IngestPartitionStatus {
                    topic: topic.to_string(),
                    partition,
                    stored_offset: 0,
                    high_watermark: view.high_watermark,
                    lag: lag(view.high_watermark, 0),
                    state: view.state,
                    last_error: view.last_error,
                    ..Default::default()
                });
            }
        }
        out.sort_by_key(|p| p.partition);
        out
    }
}

/// `high - stored`, at least 0 (-1: the watermark is unknown).
fn lag(high: i64, stored: u64) -> i64 {
    if high < 0 {
        return -1;
    }
    (high - i64::try_from(stored).unwrap_or(i64::MAX)).max(0)
}

#[tonic::async_trait]
impl KafkaRpc for KafkaService {
    async fn get_ingest_status(
        &self,
        _req: Request<IngestStatusRequest>,
    ) -> Result<Response<IngestStatusResponse>, Status> {
        let kafka = &self.ctx.kafka;
        let config = kafka.config.clone().unwrap_or_default();
        let ingest_topic = config.ingest_topic.clone().unwrap_or_default();
        let outbox = &kafka.outbox;
        let mut partitions = self.partitions(&ingest_topic);
        let session_error = locked_text(&kafka.ingest.last_error);
        if !session_error.is_empty() {
            for p in partitions.iter_mut().filter(|p| p.last_error.is_empty()) {
                p.last_error = session_error.clone();
            }
        }
        Ok(Response::new(IngestStatusResponse {
            node_id: self.ctx.config.node_id,
            leader: self.ctx.raft.is_leader(),
            ingest_enabled: config.ingest_topic.is_some(),
            ingest_topic,
            partitions,
            publish: Some(PublishStatus {
                enabled: config.events_topic.is_some(),
                topic: config.events_topic.clone().unwrap_or_default(),
                published_up_to: outbox.published_up_to.load(Ordering::Relaxed),
                outbox_entries: outbox.entries.load(Ordering::Relaxed),
                outbox_bytes: outbox.bytes.load(Ordering::Relaxed),
                outbox_max_bytes: outbox.max_bytes,
                events_published: kafka.publish.events_published.load(Ordering::Relaxed),
                last_error: locked_text(&kafka.publish.last_error),
            }),
            applied_index: *self.ctx.applied.borrow(),
            fenced_batches: kafka.fenced_batches.load(Ordering::Relaxed),
        }))
    }

    async fn list_ingest_failures(
        &self,
        req: Request<ListIngestFailuresRequest>,
    ) -> Result<Response<ListIngestFailuresResponse>, Status> {
        let req = req.into_inner();
        if !is_valid_topic(&req.topic) {
            return Err(invalid(
                "BAD_TOPIC",
                format!("{:?} is not a Kafka topic name", req.topic),
            ));
        }
        let limit = match req.limit {
            0 => DEFAULT_FAILURES_LIMIT,
            n => (n as usize).min(MAX_INGEST_FAILURES_KEPT),
        };
        let source = IngestSource {
            topic: req.topic,
            partition: req.partition,
        };
        let failures = match self.ctx.state.read() {
            Ok(st) => st.ledger.ingest_failures(&source, req.from_offset, limit),
            Err(_) => Vec::new(),
        };
        Ok(Response::new(ListIngestFailuresResponse {
            failures: failures
                .into_iter()
                .map(|f| IngestFailure {
                    topic: source.topic.clone(),
                    partition: source.partition,
                    offset: f.offset,
                    command_id: f.command_id,
                    code: f.code,
                    message: f.message,
                })
                .collect(),
        }))
    }
}
