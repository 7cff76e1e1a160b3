//! The history: every invocation and completion of a client operation (and
//! every nemesis action), as JSON lines with monotonic timestamps.
//!
//! A client operation is two events with the same `op_id`: an `invoke` and
//! then exactly one of `ok` (it happened), `fail` (it certainly did not
//! happen) or `info` (unknown: it may have happened, at any time after its
//! invocation, or never). [`pair`] folds the events into [`Op`]s, the form
//! the checkers read.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What kind of history line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// A client started an operation.
    Invoke,
    /// The operation happened (a write was applied, a read returned).
    Ok,
    /// The operation certainly did not happen.
    Fail,
    /// Unknown outcome: it may have happened, or not.
    Info,
}

/// The operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Func {
    /// Deposit `amount` into `account` (a write of +amount to its counter).
    Deposit,
    /// Move `amount` from `from` to `to`.
    Transfer,
    /// Linearizable read of one account's available balance (`value`).
    Read,
    /// Read of every bank account at one applied index (`balances`).
    BankRead,
    /// Create an account (setup).
    CreateAccount,
    /// Create an asset (setup).
    CreateAsset,
    /// A nemesis injected a fault (`fault`, `detail`).
    StartFault,
    /// A nemesis healed a fault.
    StopFault,
}

impl Func {
    /// True for operations that change ledger state.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Func::Deposit | Func::Transfer | Func::CreateAccount | Func::CreateAsset
        )
    }
}

/// One history line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history (0, 1, 2, ...).
    pub index: u64,
    /// Pairs an invocation with its completion.
    pub op_id: u64,
    /// invoke / ok / fail / info.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Nanoseconds since the start of the run (monotonic clock).
    pub time_ns: u64,
    /// Who: `c<N>` for client N, `setup`, `final`, or `nemesis`.
    pub process: String,
    /// Which workload the operation belongs to (`bank`, `register`, `idempotence`, `nemesis`).
    pub workload: String,
    /// The operation.
    pub f: Func,
    /// The node the client talked to (its leader guess, or the node that served a read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The command id of a write (retries reuse it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// Account of a deposit or read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<u64>,
    /// Source account of a transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Destination account of a transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
    /// Amount of a deposit or transfer, in whole units of the asset (scale 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    /// Value returned by a read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    /// Balances returned by a bank read (account -> available).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balances: Option<BTreeMap<u64, i64>>,
    /// Raft index reported by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_index: Option<u64>,
    /// For an applied write: was it the remembered outcome of an earlier submission?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// Fault name (nemesis events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Error or rejection reason, or a nemesis' description of what it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// An event with only the required fields set.
    pub fn new(op_id: u64, kind: EventType, process: &str, workload: &str, f: Func) -> Event {
        Event {
            index: 0,
            op_id,
            kind,
            time_ns: 0,
            process: process.to_string(),
            workload: workload.to_string(),
            f,
            node: None,
            command_id: None,
            account: None,
            from: None,
            to: None,
            amount: None,
            value: None,
            balances: None,
            applied_index: None,
            duplicate: None,
            fault: None,
            error: None,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Happened.
    Ok,
    /// Certainly did not happen.
    Fail,
    /// May or may not have happened (also: no completion in the history).
    Info,
}

/// An invocation paired with its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// The invocation event (request fields).
    pub invoke: Event,
    /// The completion event, if any.
    pub complete: Option<Event>,
    /// How it ended.
    pub outcome: Outcome,
    /// Invocation time.
    pub inv_ns: u64,
    /// Completion time of an `ok` or `fail`; `None` for unknown outcomes.
    pub ret_ns: Option<u64>,
}

impl Op {
    /// The workload.
    pub fn workload(&self) -> &str {
        &self.invoke.workload
    }
    /// The function.
    pub fn f(&self) -> Func {
        self.invoke.f
    }
    /// The completion's value (a read's result).
    pub fn value(&self) -> Option<i64> {
        self.complete.as_ref().and_then(|c| c.value)
    }
    /// The completion's error text.
    pub fn error(&self) -> Option<&str> {
        self.complete.as_ref().and_then(|c| c.error.as_deref())
    }
    /// The completion's duplicate flag.
    pub fn duplicate(&self) -> Option<bool> {
        self.complete.as_ref().and_then(|c| c.duplicate)
    }
    /// A one-line description for verdicts.
    pub fn describe(&self) -> String {
        let i = &self.invoke;
        let what = match i.f {
            Func::Deposit => format!(
                "deposit {} to account {}",
                i.amount.unwrap_or(0),
                i.account.unwrap_or(0)
            ),
            Func::Transfer => format!(
                "transfer {} from {} to {}",
                i.amount.unwrap_or(0),
                i.from.unwrap_or(0),
                i.to.unwrap_or(0)
            ),
            Func::Read => format!(
                "read account {} -> {:?}",
                i.account.unwrap_or(0),
                self.value()
            ),
            Func::BankRead => "bank read".to_string(),
            other => format!("{other:?}"),
        };
        let outcome = match self.outcome {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        };
        let id = i
            .command_id
            .as_deref()
            .map(|c| format!(" id={c}"))
            .unwrap_or_default();
        format!(
            "op {} ({}, {}{}) {} [{:.3}s .. {}]",
            i.op_id,
            i.process,
            what,
            id,
            outcome,
            self.inv_ns as f64 / 1e9,
            self.ret_ns
                .map(|r| format!("{:.3}s", r as f64 / 1e9))
                .unwrap_or_else(|| "?".to_string())
        )
    }
}

/// Folds events into operations, in invocation order. An invocation with no
/// completion counts as `info`. Nemesis events are skipped (see [`faults`]).
pub fn pair(events: &[Event]) -> Vec<Op> {
    let mut open: BTreeMap<u64, Event> = BTreeMap::new();
    let mut done: Vec<Op> = Vec::new();
    for e in events {
        if matches!(e.f, Func::StartFault | Func::StopFault) {
            continue;
        }
        match e.kind {
            EventType::Invoke => {
                open.insert(e.op_id, e.clone());
            }
            kind => {
                let Some(invoke) = open.remove(&e.op_id) else {
                    continue;
                };
                let outcome = match kind {
                    EventType::Ok => Outcome::Ok,
                    EventType::Fail => Outcome::Fail,
                    _ => Outcome::Info,
                };
                let ret_ns = (outcome != Outcome::Info).then_some(e.time_ns);
                done.push(Op {
                    inv_ns: invoke.time_ns,
                    invoke,
                    complete: Some(e.clone()),
                    outcome,
                    ret_ns,
                });
            }
        }
    }
    for (_, invoke) in open {
        done.push(Op {
            inv_ns: invoke.time_ns,
            invoke,
            complete: None,
            outcome: Outcome::Info,
            ret_ns: None,
        });
    }
    done.sort_by_key(|op| (op.inv_ns, op.invoke.op_id));
    done
}

/// One fault window from the nemesis events.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultWindow {
    /// Fault name (e.g. `kill`, `partition-leader`).
    pub fault: String,
    /// What the nemesis did (targets).
    pub detail: String,
    /// When it was injected.
    pub start_ns: u64,
    /// When it was healed (end of history if never).
    pub end_ns: u64,
}

/// The fault windows: each `start_fault` up to the next `stop_fault` of the same op id.
pub fn faults(events: &[Event]) -> Vec<FaultWindow> {
    let end = events.iter().map(|e| e.time_ns).max().unwrap_or(0);
    let mut open: BTreeMap<u64, FaultWindow> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        match e.f {
            Func::StartFault => {
                open.insert(
                    e.op_id,
                    FaultWindow {
                        fault: e.fault.clone().unwrap_or_default(),
                        detail: e.error.clone().unwrap_or_default(),
                        start_ns: e.time_ns,
                        end_ns: end,
                    },
                );
            }
            Func::StopFault => {
                if let Some(mut w) = open.remove(&e.op_id) {
                    w.end_ns = e.time_ns;
                    out.push(w);
                }
            }
            _ => {}
        }
    }
    out.extend(open.into_values());
    out.sort_by_key(|w| w.start_ns);
    out
}

/// Writes events as JSON lines.
pub struct HistoryWriter {
    out: std::io::BufWriter<std::fs::File>,
    next_index: u64,
}

impl HistoryWriter {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> anyhow::Result<HistoryWriter> {
        let file = std::fs::File::create(path)?;
        Ok(HistoryWriter {
            out: std::io::BufWriter::new(file),
            next_index: 0,
        })
    }

    /// Appends one event, numbering it.
    pub fn write(&mut self, mut event: Event) -> anyhow::Result<Event> {
        event.index = self.next_index;
        self.next_index += 1;
        serde_json::to_writer(&mut self.out, &event)?;
        self.out.write_all(b"\n")?;
        Ok(event)
    }

    /// Flushes buffered lines to the file.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// Reads a history file.
pub fn read(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file = std::fs::File::open(path)?;
    let mut events = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
        events.push(event);
    }
    Ok(events)
}

/// A small builder for hand-written histories (tests).
#[derive(Default)]
pub struct Builder {
    /// The events so far.
    pub events: Vec<Event>,
    next_op: u64,
}

impl Builder {
    /// An empty history.
    pub fn new() -> Builder {
        Builder::default()
    }

    fn push(&mut self, mut e: Event, t_ms: u64) {
        e.index = self.events.len() as u64;
        e.time_ns = t_ms * 1_000_000;
        self.events.push(e);
    }

    /// Invokes an operation at `t_ms`; returns its op id.
    pub fn invoke(
        &mut self,
        t_ms: u64,
        process: &str,
        workload: &str,
        f: Func,
        fill: impl FnOnce(&mut Event),
    ) -> u64 {
        let op_id = self.next_op;
        self.next_op += 1;
        let mut e = Event::new(op_id, EventType::Invoke, process, workload, f);
        fill(&mut e);
        self.push(e, t_ms);
        op_id
    }

    /// Completes `op_id` at `t_ms` (fields copied from the invocation, then `fill`).
    pub fn complete(
        &mut self,
        t_ms: u64,
        op_id: u64,
        kind: EventType,
        fill: impl FnOnce(&mut Event),
    ) {
        let Some(inv) = self
            .events
            .iter()
            .find(|e| e.op_id == op_id && e.kind == EventType::Invoke)
        else {
            return;
        };
        let mut e = inv.clone();
        e.kind = kind;
        fill(&mut e);
        self.push(e, t_ms);
    }

    /// A deposit `[inv_ms, ret_ms]` with the given outcome (`None` end: never completes).
    pub fn deposit(
        &mut self,
        workload: &str,
        account: u64,
        amount: i64,
        inv_ms: u64,
        end: Option<(u64, EventType)>,
    ) -> u64 {
        let id = format!("{workload}-{account}-{amount}-{}", self.next_op);
        self.deposit_with_id(workload, &id, account, amount, inv_ms, end, false)
    }

    /// A deposit with an explicit command id (retries) and duplicate flag.
    #[allow(clippy::too_many_arguments)]
    pub fn deposit_with_id(
        &mut self,
        workload: &str,
        command_id: &str,
        account: u64,
        amount: i64,
        inv_ms: u64,
        end: Option<(u64, EventType)>,
        duplicate: bool,
    ) -> u64 {
        let op = self.invoke(inv_ms, "c0", workload, Func::Deposit, |e| {
            e.account = Some(account);
            e.amount = Some(amount);
            e.command_id = Some(command_id.to_string());
        });
        if let Some((t, kind)) = end {
            self.complete(t, op, kind, |e| {
                if kind == EventType::Ok {
                    e.duplicate = Some(duplicate);
                }
            });
        }
        op
    }

    /// A transfer with the given outcome.
    pub fn transfer(
        &mut self,
        from: u64,
        to: u64,
        amount: i64,
        inv_ms: u64,
        end: Option<(u64, EventType)>,
    ) -> u64 {
        let id = format!("bank-t-{}", self.next_op);
        let op = self.invoke(inv_ms, "c0", "bank", Func::Transfer, |e| {
            e.from = Some(from);
            e.to = Some(to);
            e.amount = Some(amount);
            e.command_id = Some(id);
        });
        if let Some((t, kind)) = end {
            self.complete(t, op, kind, |_| {});
        }
        op
    }

    /// A successful read `[inv_ms, ret_ms]` of `account` returning `value`.
    pub fn read(
        &mut self,
        workload: &str,
        account: u64,
        value: i64,
        inv_ms: u64,
        ret_ms: u64,
    ) -> u64 {
        let op = self.invoke(inv_ms, "c1", workload, Func::Read, |e| {
            e.account = Some(account)
        });
        self.complete(ret_ms, op, EventType::Ok, |e| e.value = Some(value));
        op
    }

    /// A successful bank read.
    pub fn bank_read(&mut self, balances: &[(u64, i64)], inv_ms: u64, ret_ms: u64) -> u64 {
        let op = self.invoke(inv_ms, "c2", "bank", Func::BankRead, |_| {});
        let map: BTreeMap<u64, i64> = balances.iter().copied().collect();
        self.complete(ret_ms, op, EventType::Ok, |e| e.balances = Some(map));
        op
    }

    /// Sorted by time (completions may be added out of order).
    pub fn finish(mut self) -> Vec<Event> {
        self.events.sort_by_key(|e| (e.time_ns, e.index));
        for (i, e) in self.events.iter_mut().enumerate() {
            e.index = i as u64;
        }
        self.events
    }
}
