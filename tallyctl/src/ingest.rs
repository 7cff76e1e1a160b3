//! `tallyctl ingest`: Kafka ingest and publishing, as the leader sees them
//! (`status`: per partition stored offset, broker high watermark, lag, state
//! and last error, plus the events outbox) and the failed records kept per
//! partition (`failures`).

use clap::Subcommand;
use serde_json::{Value, json};
use tally_client::Client;
use tally_client::proto::v1::{IngestFailure, IngestStatusResponse};

use crate::run::{Outcome, interruptible};

const STATUS_HELP: &str = "\
Per partition of the ingest topic: STORED (the next offset to apply: \
replicated ledger state, so every record before it was applied exactly \
once), HIGH (the broker's high watermark as last seen by the leader's \
ingester; - if unknown), LAG (HIGH - STORED), APPLIED, DUP (records whose \
command id had already been applied), FAILED (records that did not decode \
or were rejected: see `tallyctl ingest failures`), STATE (running, \
stopped, idle) and the last error. A stopped partition (its stored offset \
no longer exists on the broker) is never reset silently.

Then the publisher: the last log index whose events the events topic \
acknowledged, and the outbox of events not yet acknowledged (entries, \
bytes, bound).";

#[derive(Debug, Subcommand)]
pub enum IngestCmd {
    /// Ingest offsets, watermarks and lag per partition, and publishing status.
    #[command(after_long_help = STATUS_HELP)]
    Status,
    /// Failed records of one partition (offset, command id, reason), oldest first.
    Failures {
        /// Topic (default: the ingest topic the leader reports).
        #[arg(long)]
        topic: Option<String>,
        #[arg(long, default_value_t = 0)]
        partition: u32,
        /// First offset to list.
        #[arg(long, default_value_t = 0)]
        from_offset: u64,
        /// At most this many (at most 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}

pub async fn run(client: &Client, cmd: IngestCmd) -> Outcome {
    match cmd {
        IngestCmd::Status => {
            interruptible(client.ingest_status(), false, |r| Outcome::Ok {
                text: status_text(&r),
                json: status_json(&r),
            })
            .await
        }
        IngestCmd::Failures {
            topic,
            partition,
            from_offset,
            limit,
        } => {
            let topic = match topic {
                Some(topic) => topic,
                None => match client.ingest_status().await {
                    Ok(r) if !r.ingest_topic.is_empty() => r.ingest_topic,
                    Ok(_) => return Outcome::usage("ingest is off on the leader; name --topic"),
                    Err(error) => return crate::run::error_outcome(&error, false),
                },
            };
            let call = client.ingest_failures(&topic, partition, from_offset, limit);
            interruptible(call, false, |f| Outcome::Ok {
                text: failures_text(&f),
                json: json!({"topic": topic, "partition": partition, "failures": f.iter().map(failure_json).collect::<Vec<_>>()}),
            })
            .await
        }
    }
}

fn dash(value: i64) -> String {
    if value < 0 {
        "-".into()
    } else {
        value.to_string()
    }
}

fn status_text(r: &IngestStatusResponse) -> String {
    let mut out = String::new();
    let role = if r.leader {
        "leader"
    } else {
        "follower (no watermarks)"
    };
    if r.ingest_enabled {
        out.push_str(&format!(
            "ingest topic {}  (node {}, {role}, applied index {}, fenced batches {})\n",
            r.ingest_topic, r.node_id, r.applied_index, r.fenced_batches
        ));
        out.push_str(&format!(
            "{:>9} {:>12} {:>12} {:>10} {:>12} {:>6} {:>8}  {:<8} {}\n",
            "PARTITION", "STORED", "HIGH", "LAG", "APPLIED", "DUP", "FAILED", "STATE", "LAST ERROR"
        ));
        for p in &r.partitions {
            out.push_str(&format!(
                "{:>9} {:>12} {:>12} {:>10} {:>12} {:>6} {:>8}  {:<8} {}\n",
                p.partition,
                p.stored_offset,
                dash(p.high_watermark),
                dash(p.lag),
                p.applied_records,
                p.duplicate_records,
                p.failed_records,
                p.state,
                p.last_error
            ));
        }
    } else {
        out.push_str(&format!("ingest off on node {}\n", r.node_id));
    }
    match &r.publish {
        Some(p) if p.enabled => out.push_str(&format!(
            "events topic {}: published up to index {}, outbox {} entries / {} bytes (bound {}), {} events sent by this node{}",
            p.topic,
            p.published_up_to,
            p.outbox_entries,
            p.outbox_bytes,
            p.outbox_max_bytes,
            p.events_published,
            if p.last_error.is_empty() { String::new() } else { format!(", last error: {}", p.last_error) }
        )),
        _ => out.push_str("publishing off"),
    }
    out
}

fn status_json(r: &IngestStatusResponse) -> Value {
    let partitions: Vec<Value> = r
        .partitions
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic, "partition": p.partition, "stored_offset": p.stored_offset,
                "high_watermark": p.high_watermark, "lag": p.lag,
                "applied_records": p.applied_records, "duplicate_records": p.duplicate_records,
                "failed_records": p.failed_records, "state": p.state, "last_error": p.last_error,
            })
        })
        .collect();
    let publish = r.publish.as_ref().map(|p| {
        json!({
            "enabled": p.enabled, "topic": p.topic, "published_up_to": p.published_up_to,
            "outbox_entries": p.outbox_entries, "outbox_bytes": p.outbox_bytes,
            "outbox_max_bytes": p.outbox_max_bytes, "events_published": p.events_published,
            "last_error": p.last_error,
        })
    });
    json!({
        "node_id": r.node_id, "leader": r.leader, "ingest_enabled": r.ingest_enabled,
        "ingest_topic": r.ingest_topic, "applied_index": r.applied_index,
        "fenced_batches": r.fenced_batches, "partitions": partitions, "publish": publish,
    })
}

fn failure_json(f: &IngestFailure) -> Value {
    json!({"offset": f.offset, "command_id": f.command_id, "code": f.code, "message": f.message})
}

fn failures_text(failures: &[IngestFailure]) -> String {
    if failures.is_empty() {
        return "no failed records".into();
    }
    failures
        .iter()
        .map(|f| {
            let id = if f.command_id.is_empty() {
                "-"
            } else {
                &f.command_id
            };
            format!("{:>12}  {:<20}  {}  {}", f.offset, f.code, id, f.message)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
