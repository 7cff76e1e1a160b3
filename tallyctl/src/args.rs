//! The shared command line: the top-level clap definition (global flags,
//! help texts, the subcommand list that takes in the spot and perps areas'
//! own), the flags of every write and every read, the validators the areas
//! share (endpoints, amounts, command ids), and the subcommands that belong
//! to no product area: `state-hash`, `cluster` and `ledger`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use tally_client::amount::{AmountError, Sign, check_amount};
use tally_client::{Consistency, ReadOptions, parse_endpoint, parse_endpoint_list};

use crate::perps::args::PerpsCmd;
use crate::spot::args::SpotCmd;

/// Default of `--endpoints`: where `tallyd dev` listens.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053";

/// Default `--timeout-ms` of most commands.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Default `--connect-timeout-ms` (the client library's default).
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Default `--timeout-ms` of cluster commands that wait for the cluster
/// (a learner catching up, a new leader, a snapshot).
pub const DEFAULT_SLOW_TIMEOUT_MS: u64 = 120_000;

/// `cluster status --max-lag` default: as far behind as a learner may be
/// and still count as caught up for promotion.
pub const DEFAULT_MAX_LAG_ENTRIES: u64 = 1000;

const STATUS_HELP: &str = "\
Columns: NODE (id; * marks the leader), ADDR, ROLE (leader, follower, \
candidate, learner, removed, unreachable), MEMBER (voter or learner), TERM, LAST LOG \
(last Raft log index on the node), APPLIED (last index applied to its \
ledger), LAG (the leader's last log index minus the node's applied index: \
entries the node has yet to apply), SNAPSHOT (index of its latest \
snapshot), DATA (size of its data dir), VERSION (tallyd version) and STATE \
HASH (prefix of the hash of its ledger state; equal hashes at equal applied \
indexes mean equal state).

Health: exit status 0 when the cluster is healthy, 4 (degraded) when no \
leader answered, a voter is unreachable, or a voter lags more than \
--max-lag entries behind the leader's log; the problems are listed on \
stderr (and under \"problems\" with --json), so scripts can use it like \
`etcdctl endpoint health`. Unreachable nodes are marked in the table. When \
no leader answers, each node's own view is shown and labelled as such, with \
how long ago each node last heard from a leader.

With --watch the table is redrawn every --interval-ms until Ctrl-C; with \
--json each refresh is one JSON object on its own line.";

pub(crate) const AMOUNT_HELP: &str = "\
Amounts and prices are plain decimal strings such as 1.5 or 0.00000001: digits \
with an optional fractional part, no sign, exponent or thousands separators. \
An amount may not have more decimal places than its asset's scale (e.g. 8 for \
BTC, 6 for USDT): the ledger rejects it with BAD_PRECISION and never rounds.

Every write carries a command id (--id, default: a fresh random id, printed \
in the output). Re-running a write with the same --id never applies it twice: \
it returns the first outcome. After an unknown outcome (exit 3), retry with \
the printed id.";

const EXIT_HELP: &str = "\
Exit codes:
  0  success
  1  usage, configuration or connection error (for writes: the command was not sent:
     connection refused or timed out, DNS failure, or an endpoint that is no gRPC
     server, such as a node's HTTP health port)
  2  rejected: the cluster refused (the write changed nothing), or not found
  3  unknown outcome: the write may or may not have applied; retry with the same --id

Errors are one line on stderr starting with 'error: ' (rejections: 'rejected: \
<REASON>: <message>'). With --json, stdout holds exactly one JSON object, \
errors included.";

/// tallyctl: operate a Tally ledger cluster.
#[derive(Debug, Parser)]
#[command(
    name = "tallyctl",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TALLY_GIT_COMMIT"), ")"),
    about = "Operate a Tally ledger cluster: writes, reads and cluster administration",
    after_long_help = EXIT_HELP
)]
pub struct Cli {
    /// Nodes to contact, comma-separated host:port. The leader is found
    /// automatically (NOT_LEADER hints are followed).
    #[arg(
        long,
        global = true,
        env = "TALLY_ENDPOINTS",
        default_value = DEFAULT_ENDPOINTS,
        value_parser = endpoints_arg,
        value_name = "HOST:PORT,..."
    )]
    pub endpoints: Endpoints,

    /// Print one machine-readable JSON object on stdout (errors included).
    #[arg(long, global = true)]
    pub json: bool,

    /// Budget of the whole call in milliseconds, retries included. Default
    /// 5000; 120000 for the cluster commands that wait on the cluster
    /// (promote, replace, transfer-leader, snapshot, compact).
    #[arg(
        long,
        global = true,
        value_parser = clap::value_parser!(u64).range(1..=86_400_000),
        value_name = "MS"
    )]
    pub timeout_ms: Option<u64>,

    /// Budget of one connection in milliseconds: the TCP connect (DNS
    /// included) plus the node's HTTP/2 greeting, before anything is sent.
    /// A node that cannot be connected to within it counts as down; the
    /// cluster commands with a long --timeout-ms (promote, replace,
    /// transfer-leader, snapshot, compact) then give up after this per node
    /// (exit 1, nothing sent), instead of after their whole --timeout-ms.
    #[arg(
        long,
        global = true,
        default_value_t = DEFAULT_CONNECT_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..=86_400_000),
        value_name = "MS"
    )]
    pub connect_timeout_ms: u64,

    /// The cluster CA (PEM). With it, tallyctl connects with TLS and checks
    /// the nodes' certificates; without it, plaintext (nodes run --insecure).
    /// `tallyd dev` prints the three TALLY_TLS_* values of its cluster.
    #[arg(long, global = true, env = "TALLY_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Your client certificate (PEM): its roles (O values) decide what you
    /// may call (admin for cluster commands, trader for ledger commands, ...).
    #[arg(
        long,
        global = true,
        env = "TALLY_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        global = true,
        env = "TALLY_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: Cmd,
}

impl Cli {
    /// The whole-call budget: `--timeout-ms`, or the command's default.
    pub fn effective_timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(match &self.command {
            Cmd::Cluster(
                ClusterCmd::Promote { .. }
                | ClusterCmd::Replace { .. }
                | ClusterCmd::TransferLeader { .. }
                | ClusterCmd::Snapshot { .. }
                | ClusterCmd::Compact { .. }
                | ClusterCmd::Finalize { .. }
                | ClusterCmd::Upgrade(_),
            ) => DEFAULT_SLOW_TIMEOUT_MS,
            _ => DEFAULT_TIMEOUT_MS,
        })
    }
}

/// A validated, normalized endpoint list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints(pub Vec<String>);

fn endpoints_arg(s: &str) -> Result<Endpoints, String> {
    parse_endpoint_list(s)
        .map(Endpoints)
        .map_err(|e| e.to_string())
}

pub(crate) fn endpoint_arg(s: &str) -> Result<String, String> {
    parse_endpoint(s).map_err(|e| e.to_string())
}

/// A plain decimal above zero: amounts, prices, sizes, ticks, rates. The
/// error keeps its reason (`AMOUNT_TOO_LARGE`, `BAD_PRECISION`,
/// `MALFORMED_DECIMAL`, ...) for `--json` (see `main.rs`).
pub(crate) fn positive_decimal(s: &str) -> Result<String, AmountError> {
    check_amount(s, Sign::Positive).map(|()| s.to_string())
}

/// A plain decimal, zero allowed: fees, fee rates, bracket floors.
pub(crate) fn non_negative_decimal(s: &str) -> Result<String, AmountError> {
    check_amount(s, Sign::NonNegative).map(|()| s.to_string())
}

fn command_id_arg(s: &str) -> Result<String, String> {
    tally_client::validate_command_id(s).map(|()| s.to_string())
}

/// `ID=HOST:PORT` of `cluster init --member`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberArg {
    pub node_id: u64,
    pub addr: String,
}

fn member_arg(s: &str) -> Result<MemberArg, String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=HOST:PORT, got {s:?}"))?;
    let node_id = id
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("node id {id:?} is not a number"))?;
    if node_id == 0 {
        return Err("node id 0 is reserved".to_string());
    }
    let addr = endpoint_arg(addr)?;
    Ok(MemberArg { node_id, addr })
}

/// Flags of every write.
#[derive(Clone, Debug, Default, Args)]
pub struct WriteArgs {
    /// Command id (1-64 printable ASCII characters). Default: a fresh random
    /// id. Reuse the id of an earlier attempt to retry it safely.
    #[arg(long = "id", value_name = "COMMAND_ID", value_parser = command_id_arg)]
    pub id: Option<String>,
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    /// Reflects every write acknowledged before the read (served via the leader).
    Linearizable,
    /// Served by any node at most --max-lag-entries / --max-lag-ms behind.
    Bounded,
    /// Served by any node once it has applied --min-index.
    AtLeastIndex,
}

/// Flags of every read.
#[derive(Clone, Debug, Default, Args)]
pub struct ReadArgs {
    /// Read consistency. Default: linearizable, or implied by --min-index
    /// (at-least-index) or --max-lag-* (bounded).
    #[arg(long, value_enum)]
    pub consistency: Option<ConsistencyArg>,
    /// For at-least-index: the lowest acceptable applied log index (e.g. the
    /// index printed by a write, for read-your-writes).
    #[arg(long, value_name = "INDEX")]
    pub min_index: Option<u64>,
    /// For bounded: how many log entries behind the leader is acceptable.
    #[arg(long, value_name = "N")]
    pub max_lag_entries: Option<u64>,
    /// For bounded: how many milliseconds behind the leader is acceptable.
    #[arg(long, value_name = "MS")]
    pub max_lag_ms: Option<u64>,
}

impl ReadArgs {
    /// The read options these flags ask for, or why they contradict.
    pub fn options(&self) -> Result<ReadOptions, String> {
        let lag = self.max_lag_entries.is_some() || self.max_lag_ms.is_some();
        let consistency = match (self.consistency, self.min_index.is_some(), lag) {
            (Some(c), _, _) => c,
            (None, true, true) => {
                return Err(
                    "--min-index and --max-lag-* imply different consistencies; pass --consistency"
                        .to_string(),
                );
            }
            (None, true, false) => ConsistencyArg::AtLeastIndex,
            (None, false, true) => ConsistencyArg::Bounded,
            (None, false, false) => ConsistencyArg::Linearizable,
        };
        let consistency = match consistency {
            ConsistencyArg::Linearizable => Consistency::Linearizable,
            ConsistencyArg::Bounded => Consistency::Bounded,
            ConsistencyArg::AtLeastIndex => Consistency::AtLeastIndex,
        };
        match consistency {
            Consistency::Linearizable if self.min_index.is_some() || lag => {
                return Err(
                    "--min-index and --max-lag-* do not apply to linearizable reads".to_string(),
                );
            }
            Consistency::AtLeastIndex if self.min_index.is_none() => {
                return Err("--consistency at-least-index needs --min-index".to_string());
            }
            Consistency::AtLeastIndex if lag => {
                return Err("--max-lag-* apply to bounded reads only".to_string());
            }
            Consistency::Bounded if !lag => {
                return Err(
                    "--consistency bounded needs --max-lag-entries and/or --max-lag-ms".to_string(),
                );
            }
            Consistency::Bounded if self.min_index.is_some() => {
                return Err("--min-index applies to at-least-index reads only".to_string());
            }
            _ => {}
        }
        Ok(ReadOptions {
            consistency,
            min_index: self.min_index.unwrap_or(0),
            max_lag_entries: self.max_lag_entries.unwrap_or(0),
            max_lag_ms: self.max_lag_ms.unwrap_or(0),
        })
    }
}

/// Every subcommand, in the order `tallyctl --help` lists them: the spot
/// area's and the perps area's come from their own enums.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    // asset, account, deposit, withdraw, transfer, lock, release, fill,
    // balance, hold: listed here, in this order.
    #[command(flatten)]
    Spot(SpotCmd),

    /// Show the hash of the whole ledger state and the index it was taken at.
    StateHash {
        /// Ask this node only (host:port) instead of any node.
        #[arg(long, value_parser = endpoint_arg, value_name = "HOST:PORT")]
        node: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
    },

    /// Cluster administration: status, membership, leadership, snapshots.
    #[command(subcommand)]
    Cluster(ClusterCmd),

    // market, mark, funding, perp-fill, position, margin, exposure.
    #[command(flatten)]
    Perps(PerpsCmd),

    // open-account, grant, allow-withdraw, wallet-*, insurance-withdraw,
    // sweep-fees, pair-*, release-part, wallets, transferable, history,
    // accounts, holds, assets, pairs, markets, conservation.
    #[command(flatten)]
    Acct(crate::acct::args::AcctCmd),

    /// Ledger-wide settings (replicated through the log, like any write).
    #[command(subcommand)]
    Ledger(LedgerCmd),

    /// Kafka ingest and publishing: offsets, lag, failed records.
    #[command(subcommand)]
    Ingest(crate::ingest::IngestCmd),

    /// Write a consistent backup of the leader's ledger to a file (restore
    /// it into a new cluster with `tallyd restore`).
    Backup {
        /// Where to write the backup (replaced atomically).
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
}

const DEDUP_WINDOW_HELP: &str = "\
The window is replicated ledger state, not a node flag: the command travels \
through the Raft log like any write, so every node changes it at the same log \
position and keeps it across restarts and snapshots. It takes effect from the \
next command on. Bounds: 1000 to 604800000 ms (1 s to 7 days). The initial \
window of a new cluster is 24 h.

Shrinking it forgets every command id older than the new window at once: a \
retry of such an id is applied as a new command, so keep the window longer \
than any client retries for.

Memory: every node keeps about 100 bytes per remembered command, i.e. \
window_ms / 1000 x commands per second x 100 B. Examples: 24 h at 1,000 \
commands/s = 8.6 GB; 10 min at 100,000 commands/s = 6 GB; 1 min at 100,000 \
commands/s = 600 MB. The table holds at most 50,000,000 ids (~5 GB): at the \
bound new commands are refused with DEDUP_TABLE_FULL until ids expire (24 h \
at 1,000 commands/s would reach it after about 14 h), and this command is \
always accepted, so the window can be shrunk. `tallyctl ledger settings` \
shows the window in force and the table's fill.";

#[derive(Debug, Subcommand)]
pub enum LedgerCmd {
    /// Set how long every command id's verdict is remembered (the idempotency window).
    ///
    /// A retry with the same command id inside the window returns the first
    /// outcome and changes nothing; after it, the id is forgotten.
    #[command(after_long_help = DEDUP_WINDOW_HELP)]
    SetDedupWindow {
        /// The new window in milliseconds of leader time (1000 to 604800000).
        #[arg(
            long,
            value_name = "MS",
            value_parser = clap::value_parser!(u64).range(1_000..=604_800_000)
        )]
        window_ms: u64,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Show the ledger's replicated settings: the idempotency window in
    /// force (and the bounds set-dedup-window accepts), and the idempotency
    /// table's fill against its bound (at the bound new commands are refused
    /// with DEDUP_TABLE_FULL).
    Settings {
        #[command(flatten)]
        read: ReadArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Initialize a new cluster with its voters (once per cluster).
    Init {
        /// A voter as ID=HOST:PORT (repeat for each voter).
        #[arg(long = "member", required = true, value_parser = member_arg, value_name = "ID=HOST:PORT")]
        members: Vec<MemberArg>,
        /// Succeed (exit 0, nothing changed) when the node is already
        /// initialized, so a one-shot init job may run again.
        #[arg(long)]
        ok_if_initialized: bool,
    },
    /// Show every node: role, term, indexes, lag, snapshot, data size, version.
    ///
    /// Asks the leader for the cluster's view (every member, with its role,
    /// membership, term, last log and applied indexes, lag behind the
    /// leader, snapshot index, data size, version and state hash); the
    /// leader is marked with `*`. Without a leader, shows each node's own
    /// view.
    #[command(after_long_help = STATUS_HELP)]
    Status {
        /// Redraw the status every --interval-ms until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Refresh interval of --watch in milliseconds (100 to 3600000).
        #[arg(
            long,
            default_value_t = 1000,
            requires = "watch",
            value_parser = clap::value_parser!(u64).range(100..=3_600_000),
            value_name = "MS"
        )]
        interval_ms: u64,
        /// A voter more than this many entries behind the leader's log
        /// counts as lagging (the cluster is then degraded, exit 4).
        #[arg(long, default_value_t = DEFAULT_MAX_LAG_ENTRIES, value_name = "ENTRIES")]
        max_lag: u64,
    },
    /// Add a node as a learner (replicates, does not vote).
    ///
    /// Refused with NODE_ID_IN_USE for the id of a current member and
    /// NODE_ID_RETIRED for the id of a removed node (ids are never reused).
    AddLearner {
        /// Node id (never reuse the id of a removed node).
        node_id: u64,
        /// Its gRPC address, host:port.
        #[arg(value_parser = endpoint_arg)]
        addr: String,
    },
    /// Promote a learner to voter (waits for it to catch up first).
    Promote {
        /// Node id.
        node_id: u64,
    },
    /// Remove a node from the cluster.
    ///
    /// Refused with LAST_VOTER for the only voter, and with
    /// WOULD_LOSE_QUORUM when fewer than a majority of the remaining voters
    /// would be reachable (--force overrides the latter only).
    Remove {
        /// Node id.
        node_id: u64,
        /// Remove even if the remaining voters would have no reachable majority.
        #[arg(long)]
        force: bool,
    },
    /// Replace a voter by a new node: add it as a learner, wait for it to
    /// catch up, promote it, remove the old one (one safe sequence).
    ///
    /// Start the new node first (`tallyd run` with an empty data dir and the
    /// cluster's id). The cluster never has fewer voters than before during
    /// the sequence. On an unknown outcome (exit 3), check `cluster status`
    /// to see how far it got.
    Replace {
        /// Id of the voter to remove.
        old_id: u64,
        /// Id of the new node (never used before in this cluster).
        new_id: u64,
        /// The new node's gRPC address, host:port.
        #[arg(value_parser = endpoint_arg, value_name = "ADDR")]
        addr: String,
        /// Remove the old node even if the remaining voters would have no
        /// reachable majority.
        #[arg(long)]
        force: bool,
    },
    /// Move leadership to another voter; returns once it leads.
    ///
    /// Use before restarting or removing the leader's host. Writes in flight
    /// are retried on the new leader.
    TransferLeader {
        /// Id of the voter to lead.
        node_id: u64,
    },
    /// Take a snapshot of a node's state now (each node snapshots on its own).
    ///
    /// Without --node, every node in --endpoints is asked in turn.
    Snapshot {
        /// Only this node, host:port.
        #[arg(long, value_parser = endpoint_arg, value_name = "HOST:PORT")]
        node: Option<String>,
    },
    /// Purge a node's Raft log up to its latest snapshot (frees disk).
    ///
    /// Refused with NO_SNAPSHOT before the node's first snapshot (run
    /// `cluster snapshot` first). Without --node, every node in --endpoints
    /// is asked in turn.
    Compact {
        /// Only this node, host:port.
        #[arg(long, value_parser = endpoint_arg, value_name = "HOST:PORT")]
        node: Option<String>,
    },
    /// Finish an upgrade: raise the active cluster version.
    ///
    /// The leader asks every voter and learner which cluster version its
    /// binary supports and raises the version (one replicated
    /// SetClusterVersion entry) only if all of them support it; refused
    /// with VERSION_NOT_SUPPORTED or NODE_UNREACHABLE otherwise. New
    /// features (e.g. assert-balance) are refused with FEATURE_NOT_ACTIVE
    /// until then. After it, the nodes write formats the previous release
    /// cannot read: rolling back to it is no longer possible.
    Finalize {
        /// The version to raise to (default: the highest every member supports).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        version: Option<u32>,
        /// Only show each member's support; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Upgrade to a new release with no downtime: rolling, blue-green or canary.
    ///
    /// --plan prints the steps for this cluster; --apply runs them (see
    /// the README, "Upgrades", for the whole procedure).
    #[command(after_long_help = UPGRADE_HELP)]
    Upgrade(UpgradeArgs),
}

const UPGRADE_HELP: &str = "\
Rolling (default): for each node, followers first and the leader last: move
leadership away if it leads, restart it on the new binary with the same data
dir, wait until it reports --release and has caught up. tallyctl cannot start
processes on other hosts: --restart-hook CMD is run (sh -c) per node with
TALLY_NODE_ID and TALLY_NODE_ADDR set and must stop the node (SIGTERM) and
start the new binary; without a hook, tallyctl says which node to restart and
waits for it. Blue-green: start the --green nodes on the new binary with empty
data dirs; --apply adds them as learners, promotes them once caught up, moves
leadership to a green node and removes the blue ones; --rollback (before the
blue nodes are removed) moves leadership back and removes the green nodes.
Canary: one --green node joins as a voter and is watched for --observe-s
seconds (health, lag, state hash against the leader's at equal indexes);
--rollback removes it. Finalize (cluster finalize, or --finalize) only once
every node runs the new release: there is no rollback after it.";

/// How an upgrade proceeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Node by node on the same data dirs.
    Rolling,
    /// A whole new set of nodes replaces the old one.
    BlueGreen,
    /// One new node joins and is watched before going on.
    Canary,
}

#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// Print the steps for this cluster; change nothing.
    #[arg(long, conflicts_with_all = ["apply", "rollback"])]
    pub plan: bool,
    /// Run the steps.
    #[arg(long, conflicts_with = "rollback")]
    pub apply: bool,
    /// Blue-green or canary: undo (move leadership to an old node, remove the --green nodes).
    #[arg(long)]
    pub rollback: bool,
    #[arg(long, value_enum, default_value_t = Strategy::Rolling)]
    pub strategy: Strategy,
    /// The release the upgraded nodes report (their `version`): rolling skips
    /// nodes already on it and waits for each restarted node to report it.
    #[arg(long, value_name = "VERSION")]
    pub release: Option<String>,
    /// Rolling: command run per node (sh -c, with TALLY_NODE_ID and
    /// TALLY_NODE_ADDR) that restarts it on the new binary, same data dir.
    #[arg(long, value_name = "CMD")]
    pub restart_hook: Option<String>,
    /// Blue-green and canary: a new node as ID=HOST:PORT, already started on
    /// the new binary with an empty data dir and the cluster's id (repeat).
    #[arg(long = "green", value_parser = member_arg, value_name = "ID=HOST:PORT")]
    pub green: Vec<MemberArg>,
    /// Canary: how long to watch the new node, seconds.
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub observe_s: u64,
    /// Raise the cluster version at the end (as `cluster finalize`).
    #[arg(long, requires = "apply")]
    pub finalize: bool,
    /// How long to wait for one node to come back and catch up, ms.
    #[arg(long, default_value_t = 120_000, value_name = "MS")]
    pub node_timeout_ms: u64,
    /// A node within this many entries of the leader's log has caught up.
    #[arg(long, default_value_t = DEFAULT_MAX_LAG_ENTRIES, value_name = "ENTRIES")]
    pub max_lag: u64,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tally_client::Owner;

    use crate::spot::args::SpotCmd;

    pub(crate) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tallyctl").chain(args.iter().copied()))
    }

    pub(crate) fn ok(args: &[&str]) -> Cli {
        match parse(args) {
            Ok(cli) => cli,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn upgrade_and_finalize_parse_and_refuse_contradictions() {
        let cli = ok(&[
            "cluster",
            "upgrade",
            "--strategy",
            "blue-green",
            "--green",
            "4=127.0.0.1:5004",
            "--apply",
            "--finalize",
        ]);
        let Cmd::Cluster(ClusterCmd::Upgrade(u)) = cli.command else {
            panic!("not an upgrade")
        };
        assert_eq!(
            (u.strategy, u.apply, u.finalize),
            (Strategy::BlueGreen, true, true)
        );
        assert_eq!(u.green[0].node_id, 4);
        assert!(parse(&["cluster", "upgrade", "--plan", "--apply"]).is_err());
        assert!(
            parse(&["cluster", "upgrade", "--finalize"]).is_err(),
            "needs --apply"
        );
        assert!(parse(&["cluster", "upgrade", "--green", "0=127.0.0.1:1", "--plan"]).is_err());
        let cli = ok(&["cluster", "finalize", "--version", "2", "--dry-run"]);
        assert!(matches!(
            cli.command,
            Cmd::Cluster(ClusterCmd::Finalize {
                version: Some(2),
                dry_run: true
            })
        ));
        assert!(parse(&["cluster", "finalize", "--version", "0"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_and_defaults() {
        let cli = ok(&["deposit", "7", "BTC", "1.5"]);
        assert_eq!(cli.endpoints.0.len(), 3);
        assert_eq!(cli.timeout_ms, None);
        assert_eq!(cli.effective_timeout_ms(), DEFAULT_TIMEOUT_MS);
        assert!(!cli.json);
        let cli = ok(&[
            "--endpoints",
            "10.0.0.1:1,http://10.0.0.2:2",
            "balance",
            "fees",
            "BTC",
            "--json",
            "--timeout-ms",
            "100",
        ]);
        assert_eq!(cli.endpoints.0, ["10.0.0.1:1", "10.0.0.2:2"]);
        assert!(cli.json);
        assert_eq!(cli.effective_timeout_ms(), 100);
        match cli.command {
            Cmd::Spot(SpotCmd::Balance { owner, asset, .. }) => {
                assert_eq!(owner, Owner::Fees);
                assert_eq!(asset, "BTC");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["--endpoints", "nope", "hold", "1"]).is_err());
        assert!(parse(&["--timeout-ms", "0", "hold", "1"]).is_err());
    }

    #[test]
    fn ledger() {
        match ok(&[
            "ledger",
            "set-dedup-window",
            "--window-ms",
            "600000",
            "--id",
            "w-1",
        ])
        .command
        {
            Cmd::Ledger(LedgerCmd::SetDedupWindow { window_ms, write }) => {
                assert_eq!(window_ms, 600_000);
                assert_eq!(write.id.as_deref(), Some("w-1"));
            }
            other => panic!("{other:?}"),
        }
        for bad in ["999", "604800001", "-1", "1e3", "x"] {
            assert!(
                parse(&["ledger", "set-dedup-window", "--window-ms", bad]).is_err(),
                "{bad}"
            );
        }
        assert!(parse(&["ledger", "set-dedup-window"]).is_err());
    }

    #[test]
    fn reads() {
        let read = |args: &[&str]| match ok(args).command {
            Cmd::Spot(SpotCmd::Hold { read, .. }) => read.options(),
            other => panic!("{other:?}"),
        };
        assert_eq!(read(&["hold", "1"]), Ok(ReadOptions::linearizable()));
        assert_eq!(
            read(&["hold", "1", "--min-index", "42"]),
            Ok(ReadOptions::at_least_index(42))
        );
        assert_eq!(
            read(&["hold", "1", "--max-lag-entries", "10"]),
            Ok(ReadOptions::bounded(10, 0))
        );
        assert_eq!(
            read(&[
                "hold",
                "1",
                "--consistency",
                "at-least-index",
                "--min-index",
                "3"
            ]),
            Ok(ReadOptions::at_least_index(3))
        );
        assert!(read(&["hold", "1", "--consistency", "bounded"]).is_err());
        assert!(read(&["hold", "1", "--consistency", "at-least-index"]).is_err());
        assert!(
            read(&[
                "hold",
                "1",
                "--consistency",
                "linearizable",
                "--min-index",
                "1"
            ])
            .is_err()
        );
        assert!(read(&["hold", "1", "--min-index", "1", "--max-lag-ms", "5"]).is_err());
        assert!(parse(&["hold", "1", "--consistency", "eventual"]).is_err());
        match ok(&["state-hash", "--node", "127.0.0.1:50052"]).command {
            Cmd::StateHash { node, .. } => assert_eq!(node.as_deref(), Some("127.0.0.1:50052")),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["balance", "bank", "BTC"]).is_err());
    }

    #[test]
    fn cluster() {
        match ok(&[
            "cluster",
            "init",
            "--member",
            "1=127.0.0.1:50051",
            "--member",
            "2=127.0.0.1:50052",
        ])
        .command
        {
            Cmd::Cluster(ClusterCmd::Init {
                members,
                ok_if_initialized: false,
            }) => {
                assert_eq!(members.len(), 2);
                assert_eq!(members[1].node_id, 2);
                assert_eq!(members[1].addr, "127.0.0.1:50052");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["cluster", "init"]).is_err());
        assert!(parse(&["cluster", "init", "--member", "1"]).is_err());
        assert!(parse(&["cluster", "init", "--member", "0=a:1"]).is_err());
        assert!(matches!(
            ok(&["cluster", "status"]).command,
            Cmd::Cluster(ClusterCmd::Status {
                watch: false,
                interval_ms: 1000,
                max_lag: DEFAULT_MAX_LAG_ENTRIES,
            })
        ));
        assert!(matches!(
            ok(&["cluster", "status", "--watch", "--interval-ms", "250"]).command,
            Cmd::Cluster(ClusterCmd::Status {
                watch: true,
                interval_ms: 250,
                ..
            })
        ));
        assert!(parse(&["cluster", "status", "--interval-ms", "250"]).is_err());
        assert!(parse(&["cluster", "status", "--watch", "--interval-ms", "5"]).is_err());
        let cli = ok(&["cluster", "transfer-leader", "2"]);
        assert_eq!(cli.effective_timeout_ms(), DEFAULT_SLOW_TIMEOUT_MS);
        assert!(matches!(
            cli.command,
            Cmd::Cluster(ClusterCmd::TransferLeader { node_id: 2 })
        ));
        match ok(&["cluster", "replace", "3", "4", "127.0.0.1:50054", "--force"]).command {
            Cmd::Cluster(ClusterCmd::Replace {
                old_id,
                new_id,
                addr,
                force,
            }) => {
                assert_eq!(
                    (old_id, new_id, addr.as_str(), force),
                    (3, 4, "127.0.0.1:50054", true)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["cluster", "replace", "3", "4"]).is_err());
        assert!(parse(&["cluster", "replace", "3", "4", "nope"]).is_err());
        assert!(matches!(
            ok(&["cluster", "snapshot"]).command,
            Cmd::Cluster(ClusterCmd::Snapshot { node: None })
        ));
        match ok(&["cluster", "compact", "--node", "http://127.0.0.1:50052"]).command {
            Cmd::Cluster(ClusterCmd::Compact { node }) => {
                assert_eq!(node.as_deref(), Some("127.0.0.1:50052"));
            }
            other => panic!("{other:?}"),
        }
        let cli = ok(&["--timeout-ms", "7", "cluster", "snapshot"]);
        assert_eq!(cli.effective_timeout_ms(), 7);
        assert!(matches!(
            ok(&["cluster", "add-learner", "4", "127.0.0.1:50054"]).command,
            Cmd::Cluster(ClusterCmd::AddLearner { node_id: 4, .. })
        ));
        assert!(matches!(
            ok(&["cluster", "promote", "4"]).command,
            Cmd::Cluster(ClusterCmd::Promote { node_id: 4 })
        ));
        assert!(matches!(
            ok(&["cluster", "remove", "4", "--force"]).command,
            Cmd::Cluster(ClusterCmd::Remove {
                node_id: 4,
                force: true
            })
        ));
    }
}
