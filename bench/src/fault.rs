//! The faults a `--dev` run may inject while the workload runs, and what
//! they measured:
//!
//! * `--stop-follower-at-s S [--resume-follower-at-s R]`: at S seconds into
//!   the measured window, SIGSTOP one follower (never the leader: every
//!   node is asked its role [`PICK_AHEAD`] before, so the status calls,
//!   which hash each node's state, do not delay the signal); SIGCONT it at
//!   R, else it stays stopped until the end ([`DevCluster::stop`] resumes
//!   it first).
//! * `--restart-node-at-s S`: at S seconds (or when the workload ends, if
//!   earlier), SIGKILL one follower. `tallyd dev` supervises its nodes and
//!   restarts one that exits, on the same data dir with the same flags; the
//!   new process is found among its children by `--node-id`. The follower
//!   is picked [`PICK_AHEAD`] before too; just before the kill a
//!   linearizable read on the leader gives its applied index (a status
//!   call would hash its state). Then timed from the kill, each polled every [`POLL`] up to `--restart-timeout-s`:
//!   the new process, its gRPC port answering (`GetNodeStatus`, asked until
//!   the first answer only: the call hashes the whole state), the node
//!   caught up (a balance read at `AT_LEAST_INDEX` the leader's applied
//!   index just before the kill is served: the barrier that NodeStatus's
//!   applied index would show, without rehashing the state at every poll),
//!   and a bounded read (at most [`BOUNDED_READ_MAX_LAG_ENTRIES`] behind
//!   the leader) served.
//!
//! Either splits the recorder's figures into phases (all up, down, back) at
//! the moments the signals were sent.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tally_proto::v1::ledger_client::LedgerClient;
use tally_proto::v1::{
    GetBalanceRequest, NodeStatus, Owner, OwnerKind, ReadConsistency, ReadOptions,
};
use tokio::sync::watch;

use crate::args::Args;
use crate::cluster::{self, DevCluster};
use crate::driver::{Limits, lock};
use crate::stats::Recorder;

/// How long before the signal the node to signal is picked.
pub const PICK_AHEAD: Duration = Duration::from_secs(1);
/// How often the restart probes poll.
pub const POLL: Duration = Duration::from_millis(20);
/// Deadline of one probe request (the node may be busy loading its state).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The lag bound of the "serving a bounded read" probe, in log entries.
pub const BOUNDED_READ_MAX_LAG_ENTRIES: u64 = 100;

/// Which fault to inject, from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPlan {
    StopFollower { at_s: u64, resume_at_s: Option<u64> },
    RestartNode { at_s: u64, timeout_s: u64 },
}

impl FaultPlan {
    /// The fault `args` ask for, if any (validated by `Args::validate`).
    pub fn from_args(args: &Args) -> Option<FaultPlan> {
        if let Some(at_s) = args.stop_follower_at_s {
            return Some(FaultPlan::StopFollower {
                at_s,
                resume_at_s: args.resume_follower_at_s,
            });
        }
        args.restart_node_at_s.map(|at_s| FaultPlan::RestartNode {
            at_s,
            timeout_s: args.restart_timeout_s,
        })
    }

    /// `stop-follower` or `restart-node`.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultPlan::StopFollower { .. } => "stop-follower",
            FaultPlan::RestartNode { .. } => "restart-node",
        }
    }
}

/// The timings of a restart, in milliseconds from the SIGKILL (`None`: not
/// reached within the timeout).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Restart {
    /// The leader's applied index just before the kill: "caught up" is
    /// reaching it.
    pub leader_applied_index: u64,
    pub new_pid: Option<u32>,
    pub process_ms: Option<f64>,
    pub port_ms: Option<f64>,
    pub caught_up_ms: Option<f64>,
    pub bounded_read_ms: Option<f64>,
    /// The restarted node's RSS once it served again (KiB).
    pub rss_after_kib: Option<u64>,
    pub timeout_s: u64,
}

impl Restart {
    /// Whether every milestone was reached.
    pub fn complete(&self) -> bool {
        self.process_ms.is_some()
            && self.port_ms.is_some()
            && self.caught_up_ms.is_some()
            && self.bounded_read_ms.is_some()
    }
}

/// What a fault did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultReport {
    /// `stop-follower` or `restart-node`.
    pub kind: String,
    /// The node signalled.
    pub node_id: Option<u64>,
    pub pid: Option<u32>,
    /// The leader when the node was picked.
    pub leader_id: Option<u64>,
    /// Each signal sent, with seconds into the measured window.
    pub actions: Vec<(String, f64)>,
    pub restart: Option<Restart>,
    /// Why the fault was not (fully) carried out.
    pub error: Option<String>,
    pub notes: Vec<String>,
}

impl FaultReport {
    /// Whether the fault went as asked (for `--smoke`).
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.restart.as_ref().is_none_or(Restart::complete)
    }
}

/// Waits until `at`, or until the workload is over; true if `at` came first.
async fn wait_until(at: Instant, workload_done: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(at.into()) => true,
        _ = workload_done.wait_for(|done| *done) => Instant::now() >= at,
    }
}

fn secs_into(limits: &Limits, at: Instant) -> f64 {
    at.saturating_duration_since(limits.measure_start)
        .as_secs_f64()
}

/// The nodes to signal and to ask: (endpoint index, status) of the first
/// follower (by endpoint order) and of the leader. Fails unless both answered.
async fn pick_follower(
    endpoints: &[String],
) -> anyhow::Result<((usize, NodeStatus), (usize, NodeStatus))> {
    let statuses = cluster::statuses(endpoints).await;
    let leader = statuses
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.as_ref().filter(|s| s.role == "leader").map(|s| (i, s)));
    let follower = statuses
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.as_ref().filter(|s| s.role == "follower").map(|s| (i, s)));
    let roles: Vec<&str> = statuses
        .iter()
        .map(|s| s.as_ref().map_or("unreachable", |s| s.role.as_str()))
        .collect();
    match (leader, follower) {
        (Some((l, leader)), Some((f, follower))) => {
            Ok(((f, follower.clone()), (l, leader.clone())))
        }
        _ => anyhow::bail!("no leader and follower to pick from (roles {roles:?})"),
    }
}

/// Runs `plan` against `dev` alongside the workload (whose end
/// `workload_done` announces), marking the phases in `recorder`; returns
/// what it did. Never fails: a step that cannot be done ends it with
/// `error` set.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    plan: FaultPlan,
    dev: &DevCluster,
    endpoints: &[String],
    limits: Limits,
    recorder: &Mutex<Recorder>,
    mut workload_done: watch::Receiver<bool>,
    read_account: u64,
    read_asset: &str,
) -> FaultReport {
    let mut report = FaultReport {
        kind: plan.kind().to_string(),
        ..FaultReport::default()
    };
    lock(recorder).first_phase("all up");
    let outcome = match plan {
        FaultPlan::StopFollower { at_s, resume_at_s } => {
            stop_follower(
                dev,
                endpoints,
                limits,
                recorder,
                &mut workload_done,
                at_s,
                resume_at_s,
                &mut report,
            )
            .await
        }
        FaultPlan::RestartNode { at_s, timeout_s } => {
            let probe = Probe {
                account: read_account,
                asset: read_asset,
            };
            restart_node(
                dev,
                endpoints,
                limits,
                recorder,
                &mut workload_done,
                (at_s, timeout_s),
                &probe,
                &mut report,
            )
            .await
        }
    };
    if let Err(e) = outcome {
        eprintln!("tally-bench: {} fault: {e:#}", report.kind);
        report.error = Some(format!("{e:#}"));
    }
    report
}

#[allow(clippy::too_many_arguments)]
async fn stop_follower(
    dev: &DevCluster,
    endpoints: &[String],
    limits: Limits,
    recorder: &Mutex<Recorder>,
    workload_done: &mut watch::Receiver<bool>,
    at_s: u64,
    resume_at_s: Option<u64>,
    report: &mut FaultReport,
) -> anyhow::Result<()> {
    let at = limits.measure_start + Duration::from_secs(at_s);
    let mut on_time = wait_until(at.checked_sub(PICK_AHEAD).unwrap_or(at), workload_done).await;
    if on_time {
        let picked = pick_follower(endpoints).await?;
        on_time = wait_until(at, workload_done).await;
        if on_time {
            return stop_picked(
                dev,
                limits,
                recorder,
                workload_done,
                picked,
                resume_at_s,
                report,
            )
            .await;
        }
    }
    report.notes.push(format!(
        "the workload ended before {at_s} s: no follower was stopped"
    ));
    Ok(())
}

/// [`stop_follower`] once the follower is picked and its time came.
async fn stop_picked(
    dev: &DevCluster,
    limits: Limits,
    recorder: &Mutex<Recorder>,
    workload_done: &mut watch::Receiver<bool>,
    ((_, follower), (_, leader)): ((usize, NodeStatus), (usize, NodeStatus)),
    resume_at_s: Option<u64>,
    report: &mut FaultReport,
) -> anyhow::Result<()> {
    let id = follower.node_id;
    report.node_id = Some(id);
    report.leader_id = Some(leader.node_id);
    let pid = dev
        .node_pid(id)
        .ok_or_else(|| anyhow::anyhow!("no process found for node {id}"))?;
    report.pid = Some(pid);
    dev.pause(pid)?;
    let stopped = Instant::now();
    lock(recorder).begin_phase(&format!("node-{id} stopped"), stopped);
    report
        .actions
        .push(("SIGSTOP".into(), secs_into(&limits, stopped)));
    eprintln!(
        "tally-bench: node {id} (pid {pid}, a follower; leader node {}) stopped (SIGSTOP)",
        leader.node_id
    );
    let Some(resume_at_s) = resume_at_s else {
        return Ok(());
    };
    if !wait_until(
        limits.measure_start + Duration::from_secs(resume_at_s),
        workload_done,
    )
    .await
    {
        report.notes.push(format!(
            "the workload ended before {resume_at_s} s: node {id} stayed stopped to the end"
        ));
        return Ok(());
    }
    dev.resume(pid)?;
    let resumed = Instant::now();
    lock(recorder).begin_phase(&format!("node-{id} resumed"), resumed);
    report
        .actions
        .push(("SIGCONT".into(), secs_into(&limits, resumed)));
    eprintln!("tally-bench: node {id} (pid {pid}) resumed (SIGCONT)");
    Ok(())
}

/// What the restart probes read.
struct Probe<'a> {
    account: u64,
    asset: &'a str,
}

/// The result of one balance read probe.
enum ReadProbe {
    /// Served; the node's applied index if the answer carried one.
    Served(Option<u64>),
    NotYet,
}

impl Probe<'_> {
    async fn read(&self, endpoint: &str, options: ReadOptions) -> ReadProbe {
        let Ok(channel) =
            tally_client::raw_channel(endpoint, PROBE_TIMEOUT, cluster::client_tls().as_ref())
        else {
            return ReadProbe::NotYet;
        };
        let mut request = tonic::Request::new(GetBalanceRequest {
            owner: Some(Owner {
                kind: OwnerKind::Account as i32,
                account: self.account,
                wallet: 0,
            }),
            asset: self.asset.to_string(),
            read: Some(options),
        });
        request.set_timeout(PROBE_TIMEOUT);
        let answer = tokio::time::timeout(
            PROBE_TIMEOUT + Duration::from_millis(100),
            LedgerClient::new(channel).get_balance(request),
        )
        .await;
        match answer {
            Ok(Ok(reply)) => ReadProbe::Served(Some(reply.into_inner().applied_index)),
            // The read barrier passed; the account or asset just does not
            // exist (yet): the node serves.
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => ReadProbe::Served(None),
            _ => ReadProbe::NotYet,
        }
    }
}

fn ms_since(from: Instant) -> f64 {
    from.elapsed().as_secs_f64() * 1000.0
}

#[allow(clippy::too_many_arguments)]
async fn restart_node(
    dev: &DevCluster,
    endpoints: &[String],
    limits: Limits,
    recorder: &Mutex<Recorder>,
    workload_done: &mut watch::Receiver<bool>,
    (at_s, timeout_s): (u64, u64),
    probe: &Probe<'_>,
    report: &mut FaultReport,
) -> anyhow::Result<()> {
    let at = limits.measure_start + Duration::from_secs(at_s);
    let mut on_time = wait_until(at.checked_sub(PICK_AHEAD).unwrap_or(at), workload_done).await;
    let ((index, follower), (leader_index, leader)) = pick_follower(endpoints).await?;
    on_time = on_time && wait_until(at, workload_done).await;
    if !on_time {
        report.notes.push(format!(
            "the workload ended before {at_s} s: the node was restarted then, on an idle cluster"
        ));
    }
    let id = follower.node_id;
    let endpoint = &endpoints[index];
    // The leader's applied index now, cheaply; else the (older) status's.
    let linearizable = ReadOptions {
        consistency: ReadConsistency::Linearizable as i32,
        ..ReadOptions::default()
    };
    let leader_applied_index = match probe.read(&endpoints[leader_index], linearizable).await {
        ReadProbe::Served(Some(applied)) => applied,
        _ => leader.applied_index,
    };
    report.node_id = Some(id);
    report.leader_id = Some(leader.node_id);
    let old_pid = dev
        .node_pid(id)
        .ok_or_else(|| anyhow::anyhow!("no process found for node {id}"))?;
    report.pid = Some(old_pid);
    let mut restart = Restart {
        leader_applied_index,
        timeout_s,
        ..Restart::default()
    };
    dev.kill_node(old_pid)?;
    let killed = Instant::now();
    lock(recorder).begin_phase(&format!("node-{id} restarting"), killed);
    report
        .actions
        .push(("SIGKILL".into(), secs_into(&limits, killed)));
    eprintln!(
        "tally-bench: node {id} (pid {old_pid}, a follower; leader node {} at applied index {}) killed (SIGKILL)",
        leader.node_id, leader_applied_index
    );
    let deadline = killed + Duration::from_secs(timeout_s);
    // The new process, then its gRPC port.
    while Instant::now() < deadline && restart.port_ms.is_none() {
        if restart.new_pid.is_none()
            && let Some(pid) = dev.node_pid(id).filter(|pid| *pid != old_pid)
        {
            restart.new_pid = Some(pid);
            restart.process_ms = Some(ms_since(killed));
        }
        if restart.new_pid.is_some()
            && cluster::node_status(endpoint, PROBE_TIMEOUT)
                .await
                .is_some()
        {
            restart.port_ms = Some(ms_since(killed));
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    // Caught up and serving a bounded read, probed side by side.
    let caught_up = async {
        let options = ReadOptions {
            consistency: ReadConsistency::AtLeastIndex as i32,
            min_index: restart.leader_applied_index,
            ..ReadOptions::default()
        };
        while restart.port_ms.is_some() && Instant::now() < deadline {
            match probe.read(endpoint, options).await {
                ReadProbe::Served(applied) if applied.is_none_or(|a| a >= options.min_index) => {
                    return Some(ms_since(killed));
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
        None
    };
    let bounded = async {
        let options = ReadOptions {
            consistency: ReadConsistency::Bounded as i32,
            max_lag_entries: BOUNDED_READ_MAX_LAG_ENTRIES,
            ..ReadOptions::default()
        };
        while restart.port_ms.is_some() && Instant::now() < deadline {
            match probe.read(endpoint, options).await {
                ReadProbe::Served(_) => return Some(ms_since(killed)),
                ReadProbe::NotYet => tokio::time::sleep(POLL).await,
            }
        }
        None
    };
    let (caught_up_ms, bounded_read_ms) = tokio::join!(caught_up, bounded);
    restart.caught_up_ms = caught_up_ms;
    restart.bounded_read_ms = bounded_read_ms;
    restart.rss_after_kib = restart.new_pid.and_then(crate::rss::rss_kib);
    if let (Some(a), Some(b)) = (caught_up_ms, bounded_read_ms) {
        // Now: the later probe just answered.
        lock(recorder).begin_phase(&format!("node-{id} recovered"), Instant::now());
        eprintln!(
            "tally-bench: node {id} serves again: caught up {a:.0} ms, bounded read {b:.0} ms after the kill"
        );
    } else {
        eprintln!("tally-bench: node {id} did not serve again within {timeout_s} s");
    }
    report.restart = Some(restart);
    Ok(())
}
