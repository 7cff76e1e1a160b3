//! Group commit: coalesces concurrent clients' commands into Raft entries.
//!
//! Handlers put a job (one request's commands) on a bounded queue; one
//! batcher task drains whatever is queued, up to `MAX_ENTRY_COMMANDS`
//! commands, into a single entry stamped with the leader's clock, and
//! proposes it. Up to `MAX_INFLIGHT_ENTRIES` entries are in flight at once
//! (openraft pipelines their replication and fsyncs), so throughput comes
//! from batching, never from skipping fsync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::errors::{ClientWriteError, RaftError};
use tally_ledger::ApplyResult;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::kafka::outbox::OutboxGauge;
use crate::metrics::METRICS;
use crate::raft::types::{
    EncodedCommands, EntryRequest, MAX_ENTRY_COMMANDS, NodeId, Raft, TypeConfig,
};

/// Jobs (client requests) waiting for the batcher; a full queue answers `Overloaded`.
pub const WRITE_QUEUE_JOBS: usize = 16_384;

/// Raft entries proposed but not yet applied, at most.
pub const MAX_INFLIGHT_ENTRIES: usize = 64;

/// Why a write was not applied by this node.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// Definitely not applied: this node is not the leader.
    #[error("not the leader")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// Definitely not applied: the queue is full.
    #[error("write queue full ({WRITE_QUEUE_JOBS} requests); retry with backoff")]
    Overloaded,
    /// Definitely not applied: the Kafka events outbox is at its bound
    /// (the events topic is not taking events); events are never dropped,
    /// so writes wait for the publisher.
    #[error(
        "events outbox full ({bytes} bytes unpublished, bound {max_bytes}); the events topic is not keeping up"
    )]
    OutboxFull { bytes: u64, max_bytes: u64 },
    /// Outcome unknown: the entry may or may not commit (leadership lost, shutdown).
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

/// Results of a job: one per command, and the log index they were applied at.
pub type WriteReply = Result<(Vec<ApplyResult>, u64), WriteError>;

struct Job {
    commands: EncodedCommands,
    /// The caller wants each applied command's events.
    events: bool,
    reply: oneshot::Sender<WriteReply>,
}

/// Handle for submitting commands; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    outbox: Arc<OutboxGauge>,
}

impl Writer {
    /// Starts the batcher task for `raft`; writes are refused while
    /// `outbox` is full.
    pub fn start(raft: Raft, outbox: Arc<OutboxGauge>) -> Writer {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_JOBS);
        tokio::spawn(batcher(raft, rx));
        Writer { tx, outbox }
    }

    /// Proposes `commands` (at most `MAX_ENTRY_COMMANDS`) and waits for their outcomes.
    /// With `events` false the outcomes may come without events.
    pub async fn submit(&self, commands: EncodedCommands, events: bool) -> WriteReply {
        if commands.len() > MAX_ENTRY_COMMANDS {
            // The gRPC edge bounds requests to MAX_BATCH_COMMANDS first.
            return Err(WriteError::Unknown(format!(
                "{} commands exceed one entry ({MAX_ENTRY_COMMANDS})",
                commands.len()
            )));
        }
        if self.outbox.is_full() {
            return Err(WriteError::OutboxFull {
                bytes: self.outbox.bytes.load(Ordering::Relaxed),
                max_bytes: self.outbox.max_bytes,
            });
        }
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job {
            commands,
            events,
            reply,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                METRICS.writer_overloaded.fetch_add(1, Ordering::Relaxed);
                return Err(WriteError::Overloaded);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(WriteError::Unknown("node shutting down".into()));
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(WriteError::Unknown("write dropped".into())))
    }
}

/// Leader clock in ms since the epoch, never going backwards on this node.
pub fn leader_now_ms(last: &AtomicU64) -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let prev = last.fetch_max(wall, Ordering::Relaxed);
    prev.max(wall)
}

async fn batcher(raft: Raft, mut rx: mpsc::Receiver<Job>) {
    let inflight = Arc::new(Semaphore::new(MAX_INFLIGHT_ENTRIES));
    let clock = Arc::new(AtomicU64::new(0));
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        METRICS
            .writer_queue_depth
            .store(rx.len() as u64, Ordering::Relaxed);
        let mut count = first.commands.len();
        let mut jobs = vec![first];
        while count < MAX_ENTRY_COMMANDS {
            match rx.try_recv() {
                Ok(job) if count + job.commands.len() <= MAX_ENTRY_COMMANDS => {
                    count += job.commands.len();
                    jobs.push(job);
                }
                Ok(job) => {
                    carry = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let events = jobs.iter().any(|job| job.events);
            // count <= MAX_ENTRY_COMMANDS (checked above; `build` asserts it).
            let request = EntryRequest::build(
                leader_now_ms(&clock),
                events,
                jobs.iter().map(|job| &job.commands),
            );
            let replies: Vec<_> = jobs
                .into_iter()
                .map(|job| (job.commands.len(), job.reply))
                .collect();
            let proposed = std::time::Instant::now();
            METRICS.proposals_pending.fetch_add(1, Ordering::Relaxed);
            let outcome = raft.client_write(request).await;
            METRICS.proposals_pending.fetch_sub(1, Ordering::Relaxed);
            let counter = match &outcome {
                Ok(_) => &METRICS.proposals_committed,
                Err(_) => &METRICS.proposals_failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                commands = count,
                commit_apply_us = proposed.elapsed().as_micros() as u64,
                "entry applied"
            );
            drop(permit);
            match outcome {
                Ok(resp) => {
                    let index = resp.log_id.index;
                    let mut results = resp.data.results.into_iter();
                    for (n, reply) in replies {
                        let mine: Vec<ApplyResult> = results.by_ref().take(n).collect();
                        let r = if mine.len() == n {
                            Ok((mine, index))
                        } else {
                            Err(WriteError::Unknown(
                                "state machine returned too few results".into(),
                            ))
                        };
                        let _ = reply.send(r);
                    }
                }
                Err(e) => {
                    let err = map_write_error(e);
                    for (_, reply) in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}

fn map_write_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> WriteError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => WriteError::NotLeader {
            leader_id: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        other => WriteError::Unknown(other.to_string()),
    }
}
