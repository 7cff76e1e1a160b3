//! Workloads: concurrent clients (processes `c0`, `c1`, ...) driving the
//! cluster through `tally-client` at a configured rate, recording every
//! invocation and completion.
//!
//! * `bank`: accounts 1..=5 of asset `BANK`, funded once with 100 each;
//!   random transfers between them; reads of every balance. A bank read
//!   reads each account (linearizable, concurrently) and keeps the result
//!   only if all answers carry the same applied index (the same state), so
//!   it is a consistent snapshot; otherwise it retries, then fails.
//! * `register`: per-account counters (asset `REG`): deposits of unique
//!   random amounts are writes, linearizable balance reads must equal the
//!   sum of deposits linearized before them. Keys rotate (a fresh account
//!   every [`OPS_PER_KEY`] operations, or sooner after [`UNKNOWNS_PER_KEY`]
//!   unknown outcomes), which keeps each account's history small enough for
//!   an exact linearizability search, as Jepsen's independent keys do.
//! * `idempotence`: like `register` (asset `IDM`) but deposits use a short
//!   client timeout; after an unknown outcome the same command id is
//!   retried through a client that starts at another node.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tally_client::commands::{self, CommandExt};
use tally_client::proto::v1::Command;
use tally_client::{Client, ClientConfig, ClientError, ReadOptions, WriteResult};

use crate::history::{Event, EventType, Func, HistoryWriter};

/// Operations per register/idempotence key before moving to a fresh one.
pub const OPS_PER_KEY: u64 = 150;
/// Unknown write outcomes per key before moving to a fresh one.
pub const UNKNOWNS_PER_KEY: u64 = 6;
/// Bank accounts.
pub const BANK_ACCOUNTS: [u64; 5] = [1, 2, 3, 4, 5];
/// Initial balance of each bank account.
pub const BANK_INITIAL: i64 = 100;

/// Parses a decimal amount of a scale-0 asset (`"12"`, `"12.000"`, `"-3"`).
pub fn parse_units(s: &str) -> Option<i64> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !frac.chars().all(|c| c == '0') {
        return None;
    }
    int.parse().ok()
}

/// Shared recorder: appends events with timestamps relative to the run start.
pub struct Recorder {
    writer: Mutex<HistoryWriter>,
    events: Mutex<Vec<Event>>,
    start: Instant,
    next_op: AtomicU64,
}

impl Recorder {
    /// A recorder writing to `writer`.
    pub fn new(writer: HistoryWriter, start: Instant) -> Recorder {
        Recorder {
            writer: Mutex::new(writer),
            events: Mutex::new(Vec::new()),
            start,
            next_op: AtomicU64::new(0),
        }
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.start
            .elapsed()
            .as_nanos()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// Records an invocation; returns the event (with its op id) for completing.
    pub fn invoke(
        &self,
        process: &str,
        workload: &str,
        f: Func,
        fill: impl FnOnce(&mut Event),
    ) -> Event {
        let op_id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let mut e = Event::new(op_id, EventType::Invoke, process, workload, f);
        fill(&mut e);
        self.record(e)
    }

    /// Records the completion of `invoke`.
    pub fn complete(
        &self,
        invoke: &Event,
        kind: EventType,
        fill: impl FnOnce(&mut Event),
    ) -> Event {
        let mut e = invoke.clone();
        e.kind = kind;
        fill(&mut e);
        self.record(e)
    }

    fn record(&self, mut e: Event) -> Event {
        // Take the time under the lock so the file is in time order.
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        e.time_ns = self.now_ns();
        match writer.write(e.clone()) {
            Ok(numbered) => e = numbered,
            Err(err) => eprintln!("tally-jepsen: history write failed: {err}"),
        }
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
        e
    }

    /// Flushes the file.
    pub fn flush(&self) {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writer.flush() {
            eprintln!("tally-jepsen: history flush failed: {e}");
        }
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Which workloads run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Transfers and total-preserving reads.
    Bank,
    /// Per-account counter registers.
    Register,
    /// Retries with the same command id.
    Idempotence,
}

impl Kind {
    /// Name used on the command line and in the history.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bank => "bank",
            Kind::Register => "register",
            Kind::Idempotence => "idempotence",
        }
    }
    /// Asset used by the workload (scale 0).
    pub fn asset(self) -> &'static str {
        match self {
            Kind::Bank => "BANK",
            Kind::Register => "REG",
            Kind::Idempotence => "IDM",
        }
    }
    /// First account id of the workload's keys.
    fn first_key(self) -> u64 {
        match self {
            Kind::Bank => 1,
            Kind::Register => 1_000,
            Kind::Idempotence => 100_000,
        }
    }
    /// Parses a name.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "bank" => Some(Kind::Bank),
            "register" => Some(Kind::Register),
            "idempotence" => Some(Kind::Idempotence),
            _ => None,
        }
    }
}

/// Rotating key state of a register-like workload.
struct Keys {
    key: u64,
    last_key: u64,
    ops: u64,
    unknowns: u64,
}

/// Shared state of the running workloads.
pub struct Workloads {
    /// Enabled kinds.
    pub kinds: Vec<Kind>,
    recorder: Arc<Recorder>,
    endpoints: Vec<String>,
    keys: BTreeMap<Kind, Mutex<Keys>>,
    /// Set to stop the clients.
    pub stop: AtomicBool,
}

/// The kind client `process` runs (round robin over the enabled kinds).
fn kind_of(kinds: &[Kind], process: usize) -> Kind {
    kinds[process % kinds.len()]
}

/// Cap of the pause between a client's retries (tally-client's default is
/// 500 ms); set once from `--client-max-backoff-ms` before clients start.
pub static CLIENT_MAX_BACKOFF_MS: AtomicU64 = AtomicU64::new(500);

fn client_for(endpoints: &[String], first: usize, timeout_ms: u64) -> Result<Client, ClientError> {
    let n = endpoints.len().max(1);
    let rotated: Vec<String> = (0..endpoints.len())
        .map(|i| endpoints[(first + i) % n].clone())
        .collect();
    Client::new(ClientConfig {
        timeout_ms,
        attempt_timeout_ms: 1_000.min(timeout_ms),
        connect_timeout_ms: 500,
        max_retry_backoff_ms: CLIENT_MAX_BACKOFF_MS.load(Ordering::Relaxed).max(20),
        ..ClientConfig::new(rotated)
    })
}

impl Workloads {
    /// Sets up the enabled workloads (assets, accounts, bank funding), recording the writes.
    /// `keys` is how many register/idempotence accounts to create.
    pub async fn setup(
        kinds: Vec<Kind>,
        recorder: Arc<Recorder>,
        endpoints: Vec<String>,
        keys: u64,
    ) -> anyhow::Result<Workloads> {
        let client = client_for(&endpoints, 0, 10_000)?;
        let mut key_state = BTreeMap::new();
        for &kind in &kinds {
            let w = kind.name();
            setup_write(
                &client,
                &recorder,
                w,
                Func::CreateAsset,
                commands::create_asset(kind.asset(), 0),
                |_| {},
            )
            .await?;
            let accounts: Vec<u64> = match kind {
                Kind::Bank => BANK_ACCOUNTS.to_vec(),
                _ => (kind.first_key()..kind.first_key() + keys.max(1)).collect(),
            };
            for chunk in accounts.chunks(200) {
                let batch: Vec<Command> = chunk
                    .iter()
                    .map(|&a| {
                        commands::create_account(a).with_id(format!(
                            "setup-{}-{}-{a}",
                            w,
                            recorder.start_tag()
                        ))
                    })
                    .collect();
                let results = client.submit_batch(batch).await?;
                for r in results {
                    match r {
                        WriteResult::Applied { .. } => {}
                        WriteResult::Rejected { reason, .. } if reason == "ACCOUNT_EXISTS" => {}
                        other => anyhow::bail!("creating {w} accounts: {other:?}"),
                    }
                }
            }
            if kind == Kind::Bank {
                for &a in &BANK_ACCOUNTS {
                    let cmd = commands::deposit(a, kind.asset(), BANK_INITIAL as u64)
                        .with_id(format!("setup-bank-fund-{a}-{}", recorder.start_tag()));
                    setup_write(&client, &recorder, w, Func::Deposit, cmd, |e| {
                        e.account = Some(a);
                        e.amount = Some(BANK_INITIAL);
                    })
                    .await?;
                }
            }
            let first = kind.first_key();
            key_state.insert(
                kind,
                Mutex::new(Keys {
                    key: first,
                    last_key: first + keys.max(1) - 1,
                    ops: 0,
                    unknowns: 0,
                }),
            );
        }
        Ok(Workloads {
            kinds,
            recorder,
            endpoints,
            keys: key_state,
            stop: AtomicBool::new(false),
        })
    }

    /// Accounts each workload used (for final reads).
    pub fn accounts_used(&self, kind: Kind) -> Vec<u64> {
        match kind {
            Kind::Bank => BANK_ACCOUNTS.to_vec(),
            _ => match self.keys.get(&kind) {
                Some(k) => {
                    let k = k.lock().unwrap_or_else(|p| p.into_inner());
                    (kind.first_key()..=k.key).collect()
                }
                None => Vec::new(),
            },
        }
    }

    /// Runs client `process` until `stop` is set: one operation at a time,
    /// paced to `interval` between starts.
    pub async fn run_client(self: Arc<Self>, process: usize, interval: Duration, seed: u64) {
        let kind = kind_of(&self.kinds, process);
        let name = format!("c{process}");
        let mut rng =
            StdRng::seed_from_u64(seed ^ (process as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let timeout_ms = if kind == Kind::Idempotence {
            700
        } else {
            5_000
        };
        let Ok(client) = client_for(&self.endpoints, process, timeout_ms) else {
            return;
        };
        let mut next = Instant::now() + interval.mul_f64(rng.random_range(0.0..1.0));
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if next > now {
                tokio::time::sleep(next - now).await;
            }
            // Exponential-ish spacing around the target interval.
            next = Instant::now() + interval.mul_f64(rng.random_range(0.5..1.5));
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            match kind {
                Kind::Bank => self.bank_op(&client, &name, &mut rng).await,
                Kind::Register | Kind::Idempotence => {
                    self.register_op(kind, &client, &name, process, &mut rng)
                        .await
                }
            }
        }
    }

    async fn bank_op(&self, client: &Client, name: &str, rng: &mut StdRng) {
        let r = &self.recorder;
        if rng.random_bool(0.7) {
            let from = BANK_ACCOUNTS[rng.random_range(0..BANK_ACCOUNTS.len())];
            let mut to = BANK_ACCOUNTS[rng.random_range(0..BANK_ACCOUNTS.len())];
            if to == from {
                to = if from == BANK_ACCOUNTS[0] {
                    BANK_ACCOUNTS[1]
                } else {
                    BANK_ACCOUNTS[0]
                };
            }
            let amount: i64 = rng.random_range(1..=10);
            let cmd = commands::transfer(from, to, Kind::Bank.asset(), amount as u64);
            let inv = r.invoke(name, "bank", Func::Transfer, |e| {
                e.from = Some(from);
                e.to = Some(to);
                e.amount = Some(amount);
                e.command_id = Some(cmd.command_id.clone());
                e.node = client.leader();
            });
            let result = client.submit(cmd).await;
            complete_write(r, &inv, &result, client.leader());
        } else {
            let inv = r.invoke(name, "bank", Func::BankRead, |e| e.node = client.leader());
            let mut last_err = String::new();
            for _ in 0..5 {
                let reads =
                    futures::future::join_all(BANK_ACCOUNTS.iter().map(|&a| {
                        client.balance(a, Kind::Bank.asset(), ReadOptions::linearizable())
                    }))
                    .await;
                let mut balances = BTreeMap::new();
                let mut indexes = Vec::new();
                let mut served = Vec::new();
                for (a, res) in BANK_ACCOUNTS.iter().zip(reads) {
                    match res {
                        Ok(resp) => {
                            let avail = resp
                                .balance
                                .as_ref()
                                .map(|b| b.available.as_str())
                                .unwrap_or("0");
                            match parse_units(avail) {
                                Some(v) => {
                                    balances.insert(*a, v);
                                }
                                None => last_err = format!("bad amount {avail:?}"),
                            }
                            indexes.push(resp.applied_index);
                            served.push(resp.served_by);
                        }
                        Err(e) => last_err = e.to_string(),
                    }
                }
                if balances.len() == BANK_ACCOUNTS.len() && indexes.windows(2).all(|w| w[0] == w[1])
                {
                    r.complete(&inv, EventType::Ok, |e| {
                        e.balances = Some(balances);
                        e.applied_index = indexes.first().copied();
                        e.node = served.first().map(|s| format!("id {s}"));
                    });
                    return;
                }
                if last_err.is_empty() {
                    last_err = format!("no consistent snapshot (indexes {indexes:?})");
                }
                if self.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            r.complete(&inv, EventType::Fail, |e| e.error = Some(last_err));
        }
    }

    /// Picks the current key, rotating when it has seen enough.
    fn current_key(&self, kind: Kind) -> u64 {
        let Some(keys) = self.keys.get(&kind) else {
            return kind.first_key();
        };
        let mut k = keys.lock().unwrap_or_else(|p| p.into_inner());
        if (k.ops >= OPS_PER_KEY || k.unknowns >= UNKNOWNS_PER_KEY) && k.key < k.last_key {
            k.key += 1;
            k.ops = 0;
            k.unknowns = 0;
        }
        k.ops += 1;
        k.key
    }

    fn note_unknown(&self, kind: Kind, key: u64) {
        if let Some(keys) = self.keys.get(&kind) {
            let mut k = keys.lock().unwrap_or_else(|p| p.into_inner());
            if k.key == key {
                k.unknowns += 1;
            }
        }
    }

    async fn register_op(
        &self,
        kind: Kind,
        client: &Client,
        name: &str,
        process: usize,
        rng: &mut StdRng,
    ) {
        let r = &self.recorder;
        let w = kind.name();
        let key = self.current_key(kind);
        if rng.random_bool(0.5) {
            let amount: i64 = rng.random_range(1..=1_000_000);
            let cmd = commands::deposit(key, kind.asset(), amount as u64);
            let id = cmd.command_id.clone();
            let inv = r.invoke(name, w, Func::Deposit, |e| {
                e.account = Some(key);
                e.amount = Some(amount);
                e.command_id = Some(id.clone());
                e.node = client.leader();
            });
            let result = client.submit(cmd.clone()).await;
            complete_write(r, &inv, &result, client.leader());
            if !result.is_unknown() {
                return;
            }
            self.note_unknown(kind, key);
            if kind != Kind::Idempotence {
                return;
            }
            // Retry the same command id through clients starting at other nodes.
            for attempt in 1..=3usize {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(other) = client_for(&self.endpoints, process + attempt, 5_000) else {
                    return;
                };
                let retry = cmd.clone().with_id(id.clone());
                let inv = r.invoke(name, w, Func::Deposit, |e| {
                    e.account = Some(key);
                    e.amount = Some(amount);
                    e.command_id = Some(id.clone());
                    e.node = other.endpoints().first().cloned();
                });
                let result = other.submit(retry).await;
                complete_write(r, &inv, &result, other.leader());
                if !result.is_unknown() {
                    return;
                }
            }
        } else {
            let inv = r.invoke(name, w, Func::Read, |e| {
                e.account = Some(key);
                e.node = client.leader();
            });
            match client
                .balance(key, kind.asset(), ReadOptions::linearizable())
                .await
            {
                Ok(resp) => {
                    let avail = resp
                        .balance
                        .as_ref()
                        .map(|b| b.available.clone())
                        .unwrap_or_else(|| "0".into());
                    match parse_units(&avail) {
                        Some(v) => r.complete(&inv, EventType::Ok, |e| {
                            e.value = Some(v);
                            e.applied_index = Some(resp.applied_index);
                            e.node = Some(format!("id {}", resp.served_by));
                        }),
                        None => r.complete(&inv, EventType::Fail, |e| {
                            e.error = Some(format!("bad amount {avail:?}"))
                        }),
                    };
                }
                // A read has no effect: a failed read is simply dropped by the checkers.
                Err(e) => {
                    r.complete(&inv, EventType::Fail, |ev| ev.error = Some(e.to_string()));
                }
            }
        }
    }
}

impl Recorder {
    /// A tag unique to this run for setup command ids.
    pub fn start_tag(&self) -> String {
        format!("{:x}", std::process::id())
    }
}

/// Records the completion of a write from its result.
pub fn complete_write(r: &Recorder, inv: &Event, result: &WriteResult, leader: Option<String>) {
    match result {
        WriteResult::Applied {
            result,
            applied_index,
        } => {
            r.complete(inv, EventType::Ok, |e| {
                e.applied_index = Some(*applied_index);
                e.duplicate = Some(result.duplicate);
                e.node = leader;
            });
        }
        WriteResult::Rejected {
            reason, message, ..
        } => {
            r.complete(inv, EventType::Fail, |e| {
                e.error = Some(format!("{reason}: {message}"));
                e.node = leader;
            });
        }
        WriteResult::Unknown { last_error, .. } => {
            r.complete(inv, EventType::Info, |e| {
                e.error = Some(last_error.clone());
                e.node = leader;
            });
        }
    }
}

/// Submits a setup write until it is applied (same id each time), recording it.
async fn setup_write(
    client: &Client,
    r: &Recorder,
    workload: &str,
    f: Func,
    cmd: Command,
    fill: impl Fn(&mut Event),
) -> anyhow::Result<()> {
    for _ in 0..10 {
        let inv = r.invoke("setup", workload, f, |e| {
            e.command_id = Some(cmd.command_id.clone());
            fill(e);
        });
        let result = client.submit(cmd.clone()).await;
        complete_write(r, &inv, &result, client.leader());
        match &result {
            WriteResult::Applied { .. } => return Ok(()),
            WriteResult::Rejected { reason, .. } if reason == "ASSET_EXISTS" => return Ok(()),
            WriteResult::Rejected {
                reason, message, ..
            } => anyhow::bail!("setup {f:?}: {reason}: {message}"),
            WriteResult::Unknown { .. } => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    anyhow::bail!("setup {f:?} did not complete")
}
