//! Kafka in and out. The ingester (`ingest`) consumes commands from a topic
//! and proposes them as fenced ingest entries, exactly once per record
//! (positions are ledger state); the publisher (`publish`) sends every
//! applied entry's events from the outbox (`outbox`) to an events topic, at
//! least once with stable event ids, and replicates how far it got. Both run
//! on the leader only and follow leadership. The guarantees and the
//! consumer's duty are in docs/kafka.md.

pub mod ingest;
pub mod outbox;
pub mod publish;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::kafka::outbox::OutboxGauge;

/// Default bound on the outbox (unpublished events), in bytes.
pub const DEFAULT_OUTBOX_MAX_BYTES: u64 = 1 << 30;
/// Default records per ingest entry.
pub const DEFAULT_INGEST_BATCH_RECORDS: usize = 4096;

/// What a node is told about Kafka. Every node of a cluster must have the
/// same topics (any node may lead); `brokers` may differ per node.
#[derive(Clone, Debug, Default)]
pub struct KafkaConfig {
    /// `host:port,...` of the brokers.
    pub brokers: String,
    /// The topic commands are ingested from (off if `None`).
    pub ingest_topic: Option<String>,
    /// The topic events are published to (off if `None`).
    pub events_topic: Option<String>,
    /// Bound on the unpublished outbox; writes are refused beyond it.
    pub outbox_max_bytes: u64,
    /// Records per ingest entry (at most `MAX_INGEST_BATCH_RECORDS`).
    pub ingest_batch_records: usize,
}

/// The live side of Kafka on one node, shared with the status RPC,
/// metrics and the writer.
pub struct KafkaRuntime {
    pub config: Option<KafkaConfig>,
    pub outbox: Arc<OutboxGauge>,
    pub ingest: ingest::IngestStatus,
    pub publish: publish::PublishStatus,
    /// Ingest batches this node proposed that were refused as stale.
    pub fenced_batches: AtomicU64,
}

impl KafkaRuntime {
    pub fn new(config: Option<KafkaConfig>) -> Self {
        let max_bytes = config
            .as_ref()
            .filter(|c| c.events_topic.is_some())
            .map(|c| c.outbox_max_bytes.max(1))
            .unwrap_or(0);
        KafkaRuntime {
            config,
            outbox: Arc::new(OutboxGauge::new(max_bytes)),
            ingest: ingest::IngestStatus::default(),
            publish: publish::PublishStatus::default(),
            fenced_batches: AtomicU64::new(0),
        }
    }
}

impl KafkaRuntime {
    /// Appends the Kafka series in Prometheus text format: per ingest
    /// partition (`positions` from the ledger) and for the outbox.
    pub fn render_metrics(
        &self,
        positions: &[(tally_ledger::IngestSource, tally_ledger::IngestPosition)],
        applied_index: u64,
        out: &mut String,
    ) {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let Some(config) = &self.config else { return };
        let live = self
            .ingest
            .partitions
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        if let Some(topic) = &config.ingest_topic {
            type Pick = fn(&tally_ledger::IngestPosition, &ingest::PartitionView) -> i64;
            let series: [(&str, &str, &str, Pick); 7] = [
                (
                    "tally_ingest_stored_offset",
                    "gauge",
                    "Next offset to apply (replicated).",
                    |p, _| p.next_offset as i64,
                ),
                (
                    "tally_ingest_high_watermark",
                    "gauge",
                    "Broker high watermark seen by the ingester (-1 unknown).",
                    |_, v| v.high_watermark,
                ),
                (
                    "tally_ingest_lag_records",
                    "gauge",
                    "High watermark minus stored offset (-1 unknown).",
                    |p, v| {
                        if v.high_watermark < 0 {
                            -1
                        } else {
                            (v.high_watermark - p.next_offset as i64).max(0)
                        }
                    },
                ),
                (
                    "tally_ingest_partition_stopped",
                    "gauge",
                    "1 if ingest stopped for the partition (offset gone from the broker).",
                    |_, v| i64::from(v.state == "stopped"),
                ),
                (
                    "tally_ingest_applied_records_total",
                    "counter",
                    "Records whose command was applied.",
                    |p, _| p.applied_records as i64,
                ),
                (
                    "tally_ingest_duplicate_records_total",
                    "counter",
                    "Records whose command id was already applied.",
                    |p, _| p.duplicate_records as i64,
                ),
                (
                    "tally_ingest_failed_records_total",
                    "counter",
                    "Records that did not decode or were rejected.",
                    |p, _| p.failed_records as i64,
                ),
            ];
            for (name, kind, help, pick) in series {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (source, position) in positions.iter().filter(|(s, _)| &s.topic == topic) {
                    let view =
                        live.get(&source.partition)
                            .cloned()
                            .unwrap_or(ingest::PartitionView {
                                high_watermark: -1,
                                ..Default::default()
                            });
                    let _ = writeln!(
                        out,
                        "{name}{{topic=\"{topic}\",partition=\"{}\"}} {}",
                        source.partition,
                        pick(position, &view)
                    );
                }
            }
            let fenced = self.fenced_batches.load(Relaxed);
            let _ = writeln!(
                out,
                "# HELP tally_ingest_fenced_batches_total Ingest batches of this node refused as stale.\n# TYPE tally_ingest_fenced_batches_total counter\ntally_ingest_fenced_batches_total {fenced}"
            );
        }
        if config.events_topic.is_some() {
            let published = self.outbox.published_up_to.load(Relaxed);
            let lines = [
                (
                    "tally_events_outbox_entries",
                    "gauge",
                    "Log entries whose events are not yet acknowledged.",
                    self.outbox.entries.load(Relaxed),
                ),
                (
                    "tally_events_outbox_bytes",
                    "gauge",
                    "Bytes of unacknowledged events in the outbox.",
                    self.outbox.bytes.load(Relaxed),
                ),
                (
                    "tally_events_outbox_max_bytes",
                    "gauge",
                    "Outbox bound; writes are refused at it.",
                    self.outbox.max_bytes,
                ),
                (
                    "tally_events_published_up_to_index",
                    "gauge",
                    "Every event up to this log index is acknowledged.",
                    published,
                ),
                (
                    "tally_events_outbox_lag_entries",
                    "gauge",
                    "Applied index minus the published index.",
                    applied_index.saturating_sub(published),
                ),
                (
                    "tally_events_published_total",
                    "counter",
                    "Events acknowledged by the broker (this node).",
                    self.publish.events_published.load(Relaxed),
                ),
            ];
            for (name, kind, help, value) in lines {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                );
            }
        }
    }
}
