//! Sends requests and records what happened.
//!
//! * [`Target`] executes one [`Request`]: writes through `tally-client`
//!   (leader discovery, retries with the same ids), reads through a raw
//!   `LedgerClient` pinned to one node, so leader-only and spread reads can
//!   be compared.
//! * [`closed_loop`]: N workers, each sending its next request once the
//!   previous one answered. Latency is measured from the actual send.
//! * [`open_loop`]: one scheduler sends requests at fixed intended times
//!   (a constant offered rate) whatever the replies do; latency is measured
//!   from the *intended* send time, so a stalled server shows up as latency
//!   instead of as fewer requests (no coordinated omission). A cap on
//!   requests in flight delays sends but never hides that delay.
//! * [`monitor`]: once a second, closes the per-second histograms, samples
//!   the RSS of the node processes and prints a progress line on stderr.
//!
//! Everything is bounded: by time (warm-up + duration, then a drain
//! deadline after which unfinished requests are recorded as errors at their
//! latency so far and abandoned) and optionally by count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tally_client::{Client, ClientConfig, WriteResult};
use tally_proto::v1::ledger_client::LedgerClient;
use tally_proto::v1::{GetBalanceRequest, Owner, OwnerKind, ReadOptions};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::rss::{self, Sampled};
use crate::stats::{Counters, Recorder, RequestOutcome};
use crate::workload::{AccountCursor, Generator, Ids, Plan, Request};

/// Longest error text kept per distinct error.
const MAX_ERROR_CHARS: usize = 160;

/// Locks the recorder; a panicked holder cannot leave it inconsistent for
/// our purposes (counters only grow), so poisoning is ignored.
pub fn lock(recorder: &Mutex<Recorder>) -> MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(|p| p.into_inner())
}

fn short(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(MAX_ERROR_CHARS).collect()
}

/// Where requests go.
pub struct Target {
    /// Write clients (one HTTP/2 connection per node each); request `i`
    /// uses client `i % len`.
    writers: Vec<Client>,
    /// Read channels, one per node read from; request `i` uses `i % len`.
    readers: Vec<Channel>,
    read_options: ReadOptions,
    read_timeout: Duration,
}

impl Target {
    /// `connections` clients over all `endpoints` for writes; reads go to
    /// `read_endpoints` at `read_options`.
    pub fn new(
        endpoints: &[String],
        connections: usize,
        timeout_ms: u64,
        reply_events: bool,
        read_endpoints: &[String],
        read_options: ReadOptions,
    ) -> anyhow::Result<Target> {
        let mut writers = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            // One attempt may use the whole budget: a slow (not failed)
            // attempt is not re-sent, so an overloaded cluster is measured
            // as slow instead of being buried under retries of big batches.
            let config = ClientConfig {
                timeout_ms,
                attempt_timeout_ms: timeout_ms,
                tls: crate::cluster::client_tls(),
                ..ClientConfig::new(endpoints.iter().cloned())
            };
            writers.push(Client::new(config)?.with_reply_events(reply_events));
        }
        let mut readers = Vec::with_capacity(read_endpoints.len());
        for endpoint in read_endpoints {
            let channel = tally_client::raw_channel(
                endpoint,
                Duration::from_secs(2),
                crate::cluster::client_tls().as_ref(),
            )?;
            readers.push(channel);
        }
        Ok(Target {
            writers,
            readers,
            read_options,
            read_timeout: Duration::from_millis(timeout_ms),
        })
    }

    /// Sends one request (as request number `i`) and classifies the answer.
    pub async fn execute(&self, i: u64, request: Request) -> RequestOutcome {
        match request {
            Request::Write { commands, fills } => {
                let client = &self.writers[(i % self.writers.len() as u64) as usize];
                write(client, commands, &fills).await
            }
            Request::Read { account, asset } => {
                if self.readers.is_empty() {
                    return RequestOutcome {
                        counters: Counters {
                            requests: 1,
                            read_errors: 1,
                            request_errors: 1,
                            ..Counters::default()
                        },
                        error: Some("no read endpoints".into()),
                        ..RequestOutcome::default()
                    };
                }
                let channel = self.readers[(i % self.readers.len() as u64) as usize].clone();
                read(
                    channel,
                    account,
                    asset,
                    self.read_options,
                    self.read_timeout,
                )
                .await
            }
        }
    }
}

async fn write(
    client: &Client,
    commands: Vec<tally_proto::v1::Command>,
    fills: &[bool],
) -> RequestOutcome {
    let results = if commands.len() == 1 {
        let mut commands = commands;
        match commands.pop() {
            Some(command) => vec![client.submit(command).await],
            None => Vec::new(),
        }
    } else {
        match client.submit_batch(commands).await {
            Ok(results) => results,
            Err(e) => {
                return RequestOutcome {
                    counters: Counters {
                        requests: 1,
                        request_errors: 1,
                        ..Counters::default()
                    },
                    error: Some(short(&e.to_string())),
                    ..RequestOutcome::default()
                };
            }
        }
    };
    let mut outcome = RequestOutcome {
        counters: Counters {
            requests: 1,
            ..Counters::default()
        },
        ..RequestOutcome::default()
    };
    for (result, is_fill) in results.iter().zip(fills.iter().copied()) {
        match result {
            WriteResult::Applied { .. } => {
                outcome.counters.applied += 1;
                outcome.counters.fills += u64::from(is_fill);
            }
            WriteResult::Rejected { reason, .. } => {
                outcome.counters.rejected += 1;
                if outcome.reject_reason.is_none() {
                    outcome.reject_reason = Some(reason.clone());
                }
            }
            WriteResult::Unknown { last_error, .. } => {
                outcome.counters.unknown += 1;
                if outcome.error.is_none() {
                    outcome.error = Some(short(last_error));
                }
            }
        }
    }
    if !results.is_empty() && outcome.counters.unknown == results.len() as u64 {
        outcome.counters.request_errors = 1;
    }
    outcome
}

async fn read(
    channel: Channel,
    account: u64,
    asset: &str,
    options: ReadOptions,
    timeout: Duration,
) -> RequestOutcome {
    let mut request = tonic::Request::new(GetBalanceRequest {
        owner: Some(Owner {
            kind: OwnerKind::Account as i32,
            account,
            wallet: 0,
        }),
        asset: asset.to_string(),
        read: Some(options),
    });
    request.set_timeout(timeout);
    let answer = tokio::time::timeout(
        timeout + Duration::from_millis(100),
        LedgerClient::new(channel).get_balance(request),
    )
    .await;
    let mut outcome = RequestOutcome {
        counters: Counters {
            requests: 1,
            ..Counters::default()
        },
        ..RequestOutcome::default()
    };
    match answer {
        Ok(Ok(_)) => outcome.counters.reads = 1,
        Ok(Err(status)) => {
            let reason = status
                .metadata()
                .get(tally_proto::REASON_METADATA_KEY)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            outcome.counters.read_errors = 1;
            outcome.counters.request_errors = 1;
            outcome.error = Some(short(&format!(
                "read {:?} {reason}: {}",
                status.code(),
                status.message()
            )));
        }
        Err(_) => {
            outcome.counters.read_errors = 1;
            outcome.counters.request_errors = 1;
            outcome.error = Some("read timed out".into());
        }
    }
    outcome
}

/// When a run starts measuring and when it stops sending.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Sending starts now; nothing completing a request sent before
    /// `measure_start` is recorded.
    pub start: Instant,
    pub measure_start: Instant,
    /// No request is sent at or after this.
    pub end: Instant,
    /// Most workload units sent after `measure_start` (None: no count bound).
    pub count: Option<u64>,
    /// How long in-flight requests may take to finish after `end`.
    pub drain: Duration,
}

impl Limits {
    pub fn new(
        warmup: Duration,
        duration: Duration,
        count: Option<u64>,
        drain: Duration,
    ) -> Limits {
        let start = Instant::now();
        Limits {
            start,
            measure_start: start + warmup,
            end: start + warmup + duration,
            count,
            drain,
        }
    }
}

/// Requests in flight, by request number, with the time they count from.
#[derive(Default)]
struct Inflight {
    map: Mutex<HashMap<u64, Instant>>,
}

impl Inflight {
    fn begin(&self, id: u64, from: Instant) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, from);
    }

    fn end(&self, id: u64) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Records every request still in flight as an error at its latency so far.
    fn abandon(&self, recorder: &Mutex<Recorder>, measure_start: Instant) -> u64 {
        let now = Instant::now();
        let left: Vec<Instant> = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, from)| from)
            .collect();
        let mut recorder = lock(recorder);
        let outcome = RequestOutcome {
            counters: Counters {
                requests: 1,
                request_errors: 1,
                ..Counters::default()
            },
            error: Some("unfinished at the drain deadline".into()),
            ..RequestOutcome::default()
        };
        let mut n = 0;
        for from in left.into_iter().filter(|from| *from >= measure_start) {
            recorder.record(now, now.saturating_duration_since(from), &outcome);
            n += 1;
        }
        n
    }
}

/// Live state shared with the monitor.
#[derive(Default)]
pub struct Live {
    inflight: Inflight,
    /// Workload units sent after the measurement started.
    sent_units: AtomicU64,
    /// Set once sending is over (the monitor then prints "drain").
    pub stopped: AtomicBool,
}

impl Live {
    /// Requests in flight now.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Reserves `units` under the count bound; false once it is reached.
    fn take(&self, units: u64, limits: &Limits, now: Instant) -> bool {
        match limits.count {
            Some(max) if now >= limits.measure_start => {
                self.sent_units.fetch_add(units, Ordering::Relaxed) < max
            }
            _ => true,
        }
    }
}

/// Where a closed-loop worker gets its requests.
pub enum Source {
    /// Each worker's own generator stream (stream = worker index + `stream_base`).
    Generated { stream_base: u64 },
    /// Shared account ranges (the `accounts` workload and the set-up).
    Accounts(Arc<AccountCursor>),
}

/// Runs `workers` closed-loop workers until `limits` end them.
pub async fn closed_loop(
    target: Arc<Target>,
    plan: Arc<Plan>,
    source: Source,
    workers: usize,
    limits: Limits,
    recorder: Arc<Mutex<Recorder>>,
    live: Arc<Live>,
) {
    let units = plan.units_per_request();
    let source = Arc::new(source);
    let mut tasks = JoinSet::new();
    for worker in 0..workers as u64 {
        let (target, plan, recorder, live, source) = (
            Arc::clone(&target),
            Arc::clone(&plan),
            Arc::clone(&recorder),
            Arc::clone(&live),
            Arc::clone(&source),
        );
        tasks.spawn(async move {
            let stream = match source.as_ref() {
                Source::Generated { stream_base } => stream_base + worker,
                Source::Accounts(_) => worker,
            };
            let mut generator = Generator::new(Arc::clone(&plan), stream);
            let mut ids = Ids::new(plan.nonce, stream);
            loop {
                let now = Instant::now();
                if now >= limits.end || !live.take(units, &limits, now) {
                    break;
                }
                let request = match source.as_ref() {
                    Source::Generated { .. } => generator.next_request(),
                    Source::Accounts(cursor) => match cursor.next_request(&plan, &mut ids) {
                        Some(request) => request,
                        None => break,
                    },
                };
                let sent = Instant::now();
                live.inflight.begin(worker, sent);
                let outcome = target.execute(worker, request).await;
                live.inflight.end(worker);
                let done = Instant::now();
                if sent >= limits.measure_start {
                    lock(&recorder).record(done, done - sent, &outcome);
                }
            }
        });
    }
    finish(tasks, &limits, &recorder, &live).await;
}

/// Sends requests at `rate` workload units per second (see
/// [`crate::workload::Workload::unit`]) until `limits` end the run, with at
/// most `max_inflight` requests outstanding.
pub async fn open_loop(
    target: Arc<Target>,
    plan: Arc<Plan>,
    rate: f64,
    max_inflight: usize,
    limits: Limits,
    recorder: Arc<Mutex<Recorder>>,
    live: Arc<Live>,
) {
    let units = plan.units_per_request();
    let request_rate = (rate / units as f64).max(1e-3);
    let interval_s = 1.0 / request_rate;
    let permits = Arc::new(Semaphore::new(max_inflight.max(1)));
    let mut generator = Generator::new(Arc::clone(&plan), 0);
    let mut tasks = JoinSet::new();
    let mut i: u64 = 0;
    loop {
        let intended = limits.start + Duration::from_secs_f64(i as f64 * interval_s);
        if intended >= limits.end || !live.take(units, &limits, intended) {
            break;
        }
        tokio::time::sleep_until(intended.into()).await;
        // A full window delays this send; the delay is measured, never hidden.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        if Instant::now() >= limits.end + limits.drain {
            break;
        }
        let request = generator.next_request();
        live.inflight.begin(i, intended);
        let (target, recorder, live) = (
            Arc::clone(&target),
            Arc::clone(&recorder),
            Arc::clone(&live),
        );
        tasks.spawn(async move {
            let outcome = target.execute(i, request).await;
            live.inflight.end(i);
            drop(permit);
            let done = Instant::now();
            if intended >= limits.measure_start {
                lock(&recorder).record(done, done - intended, &outcome);
            }
        });
        // Reap finished tasks so the set stays as small as the window.
        while tasks.try_join_next().is_some() {}
        i += 1;
    }
    live.stopped.store(true, Ordering::Relaxed);
    finish(tasks, &limits, &recorder, &live).await;
}

/// Waits for the tasks until the drain deadline, then records whatever is
/// still in flight as unfinished and abandons it.
async fn finish(mut tasks: JoinSet<()>, limits: &Limits, recorder: &Mutex<Recorder>, live: &Live) {
    let deadline = limits.end.max(Instant::now()) + limits.drain;
    let drained = tokio::time::timeout_at(deadline.into(), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let n = live.inflight.abandon(recorder, limits.measure_start);
        eprintln!(
            "tally-bench: {n} requests unfinished at the drain deadline (recorded as errors)"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// What the monitor prints and samples.
pub struct MonitorConfig {
    pub label: String,
    pub unit_is_fills: bool,
    pub processes: Vec<Sampled>,
    pub quiet: bool,
}

/// Once a second until `live.stopped` and no request is in flight (or
/// `hard_stop`): closes per-second rows, samples RSS, prints progress.
pub async fn monitor(
    config: MonitorConfig,
    limits: Limits,
    recorder: Arc<Mutex<Recorder>>,
    live: Arc<Live>,
    done: Arc<AtomicBool>,
) {
    let mut previous = Counters::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = Instant::now();
    loop {
        tick.tick().await;
        if done.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        let rss = rss::sample(&config.processes);
        let (delta, tick) = {
            let mut r = lock(&recorder);
            if now >= limits.measure_start {
                let second = now
                    .saturating_duration_since(limits.measure_start)
                    .as_secs();
                r.note_rss(second.saturating_sub(1), rss.clone());
            }
            r.close_seconds(Some(now));
            let delta = r.total.since(&previous);
            previous = r.total;
            (delta, r.take_tick())
        };
        if config.quiet {
            continue;
        }
        let secs = now.saturating_duration_since(last).as_secs_f64().max(1e-3);
        last = now;
        let phase = if now >= limits.end || live.stopped.load(Ordering::Relaxed) {
            "drain"
        } else if now < limits.measure_start {
            "warmup"
        } else {
            "run"
        };
        let elapsed = now.saturating_duration_since(limits.start).as_secs();
        let mut line = format!(
            "[{} {phase:>6} {elapsed:>4}s] {:>9.0} cmd/s",
            config.label,
            delta.applied as f64 / secs
        );
        if config.unit_is_fills {
            line.push_str(&format!(" {:>9.0} fills/s", delta.fills as f64 / secs));
        }
        if delta.reads > 0 {
            line.push_str(&format!(" {:>9.0} reads/s", delta.reads as f64 / secs));
        }
        line.push_str(&format!(
            "  p50 {:.2} ms p99 {:.2} ms  inflight {}  rej {} unk {} err {}",
            tick.p50_us as f64 / 1000.0,
            tick.p99_us as f64 / 1000.0,
            live.inflight(),
            delta.rejected,
            delta.unknown,
            delta.request_errors
        ));
        for (p, kib) in config.processes.iter().zip(&rss) {
            line.push_str(&format!("  {} {} MiB", p.label, rss::mib(*kib)));
        }
        eprintln!("{line}");
    }
}
