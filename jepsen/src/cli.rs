//! The command line: `test` (one run), `cleanup` (remove leftovers of any
//! run), `proxy` (the delay proxy; started by the runner inside a node's
//! namespace).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::runner::{self, Options};
use crate::workload::Kind;

#[derive(Parser)]
#[command(
    name = "tally-jepsen",
    about = "Chaos and partition testing of Tally with checkers that can fail."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one test: set up hosts, run workloads under faults, check, tear down.
    /// Exit code 0 only if every checker says valid (with availability
    /// bounds given, the `availability` checker too).
    Test(TestArgs),
    /// Remove every leftover tj-* namespace (and its processes), link, iptables rule and data dir.
    Cleanup,
    /// Re-check a recorded history offline (the checkers that need only the
    /// history: linearizability, bank reads, idempotence, unavailability,
    /// availability against the bounds given) and
    /// redraw its SVG next to it as latency-recheck.svg. Exit 0 iff all valid.
    Check {
        /// Path of a history.jsonl.
        history: PathBuf,
        /// Title of the redrawn SVG.
        #[arg(long)]
        title: Option<String>,
        #[command(flatten)]
        availability: AvailabilityArgs,
    },
    /// The delay proxy (internal: the runner starts one per node).
    #[command(hide = true)]
    Proxy {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        upstream: String,
        #[arg(long)]
        control: PathBuf,
    },
}

#[derive(clap::Args)]
struct TestArgs {
    /// Number of nodes (hosts).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Comma list: partition (all kinds), partition-leader, partition-halves,
    /// partition-bridge, partition-ring, kill, pause, member, transfer, loss,
    /// delay, upgrade (needs --upgrade-from), all (every one but upgrade), none.
    #[arg(long, default_value = "partition,kill")]
    nemesis: String,
    /// Comma list of workloads: bank, register, idempotence.
    #[arg(long, default_value = "bank")]
    workload: String,
    /// Target operations per second over all clients.
    #[arg(long, default_value_t = 30.0)]
    rate: f64,
    /// Concurrent client processes (spread round robin over the workloads).
    #[arg(long, default_value_t = 6)]
    concurrency: usize,
    /// Healthy seconds between faults.
    #[arg(long, default_value_t = 5.0)]
    fault_interval: f64,
    /// Seconds each fault lasts.
    #[arg(long, default_value_t = 8.0)]
    fault_duration: f64,
    /// Let loss/delay overlap other faults (30% of faults).
    #[arg(long)]
    overlap: bool,
    /// RNG seed (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Parent of the per-run results folder.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    results_dir: PathBuf,
    /// The tallyd binary (default: next to this executable).
    #[arg(long)]
    tallyd: Option<PathBuf>,
    /// The previous release's tallyd: every node starts on it, and the
    /// `upgrade` nemesis rolls nodes between it and --tallyd
    /// (`scripts/build-prev-release` builds it).
    #[arg(long, value_name = "PATH")]
    upgrade_from: Option<PathBuf>,
    /// Keep the nodes' data dirs (under /var/tmp/tally-jepsen).
    #[arg(long)]
    keep_data: bool,
    /// Extra argument for every `tallyd run` (repeatable), e.g.
    /// `--node-arg=--heartbeat-interval-ms=300`.
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    node_arg: Vec<String>,
    /// Cap of the pause between a client's retries (tally-client default 500).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(20..=60_000))]
    client_max_backoff_ms: u64,
    #[command(flatten)]
    availability: AvailabilityArgs,
}

/// The `availability` checker's bounds (it runs only if one is given).
#[derive(clap::Args)]
struct AvailabilityArgs {
    /// Longest allowed gap between successful writes, in ms: a bare number
    /// bounds the whole run, `KIND=MS` one fault kind (a nemesis name, or
    /// `healthy` for the time outside every fault), comma separated, e.g.
    /// `2000,kill=1000,member=200`. A kind's gap is measured from each of
    /// its faults' start over the fault and the 5 s after its heal.
    #[arg(long, value_name = "MS|KIND=MS,...")]
    max_write_gap_ms: Option<String>,
    /// Largest allowed share (0..1) of the run spent in gaps over
    /// --gap-threshold-ms: bare for the whole run, `KIND=SHARE` for the time
    /// inside one kind's faults (plus 5 s after each heal), e.g. `0.1,loss=0.02`.
    #[arg(long, value_name = "SHARE|KIND=SHARE,...")]
    max_unavailable_share: Option<String>,
    /// Gaps between successful writes up to this long are not counted as unavailable time.
    #[arg(long, default_value_t = crate::checker::availability::DEFAULT_GAP_THRESHOLD_MS)]
    gap_threshold_ms: u64,
}

impl AvailabilityArgs {
    fn bounds(&self) -> anyhow::Result<crate::checker::availability::Bounds> {
        use crate::checker::availability::{Bounds, HEALTHY, parse_limits};
        let mut known: Vec<&str> = crate::nemesis::ALL.to_vec();
        known.push(HEALTHY);
        let gap = match &self.max_write_gap_ms {
            Some(t) => parse_limits::<u64>(t, &known)
                .map_err(|e| anyhow::anyhow!("--max-write-gap-ms: {e}"))?,
            None => Default::default(),
        };
        let share = match &self.max_unavailable_share {
            Some(t) => parse_limits::<f64>(t, &known)
                .map_err(|e| anyhow::anyhow!("--max-unavailable-share: {e}"))?,
            None => Default::default(),
        };
        for v in share.run.iter().chain(share.kinds.values()) {
            if !(0.0..=1.0).contains(v) {
                anyhow::bail!("--max-unavailable-share: {v} is not in 0..1");
            }
        }
        Ok(Bounds {
            max_gap_ms: gap,
            max_share: share,
        })
    }
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tally-jepsen: runtime: {e}");
            return 2;
        }
    };
    match cli.command {
        Cmd::Cleanup => {
            let r = crate::hosts::cleanup_all(std::path::Path::new(runner::DATA_ROOT));
            println!(
                "removed {} namespaces, {} links, {} iptables rules, {} data dirs",
                r.namespaces.len(),
                r.links.len(),
                r.rules.len(),
                r.dirs.len()
            );
            for e in &r.errors {
                eprintln!("error: {e}");
            }
            i32::from(!r.errors.is_empty())
        }
        Cmd::Check {
            history,
            title,
            availability,
        } => {
            let checked = availability.bounds().and_then(|bounds| {
                crate::runner::recheck(&history, title, &bounds, availability.gap_threshold_ms)
            });
            match checked {
                Ok((text, valid)) => {
                    print!("{text}");
                    i32::from(!valid)
                }
                Err(e) => {
                    eprintln!("tally-jepsen: {e:#}");
                    2
                }
            }
        }
        Cmd::Proxy {
            listen,
            upstream,
            control,
        } => match rt.block_on(crate::proxy::run(listen, upstream, control)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("tally-jepsen proxy: {e:#}");
                1
            }
        },
        Cmd::Test(args) => match options(args) {
            Ok(opts) => rt.block_on(test(opts)),
            Err(e) => {
                eprintln!("tally-jepsen: {e:#}");
                2
            }
        },
    }
}

fn options(a: TestArgs) -> anyhow::Result<Options> {
    let mut workloads = Vec::new();
    for w in a
        .workload
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        let Some(k) = Kind::parse(w) else {
            anyhow::bail!("unknown workload {w:?}; known: bank, register, idempotence")
        };
        if !workloads.contains(&k) {
            workloads.push(k);
        }
    }
    if workloads.is_empty() {
        anyhow::bail!("no workload given");
    }
    if !(a.rate > 0.0 && a.rate <= 10_000.0) {
        anyhow::bail!("--rate must be in (0, 10000]");
    }
    if a.concurrency == 0 || a.concurrency > 200 {
        anyhow::bail!("--concurrency must be in 1..=200");
    }
    if !(a.fault_interval >= 0.0 && a.fault_duration > 0.0) {
        anyhow::bail!("--fault-interval must be >= 0 and --fault-duration > 0");
    }
    let tallyd = match a.tallyd {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("tallyd"),
    };
    if !tallyd.exists() {
        anyhow::bail!(
            "{} not found: build it (`cargo build --workspace --bins`) or pass --tallyd",
            tallyd.display()
        );
    }
    if let Some(old) = &a.upgrade_from
        && !old.exists()
    {
        anyhow::bail!("--upgrade-from {}: not found", old.display());
    }
    crate::workload::CLIENT_MAX_BACKOFF_MS.store(
        a.client_max_backoff_ms,
        std::sync::atomic::Ordering::Relaxed,
    );
    let availability = a.availability.bounds()?;
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    Ok(Options {
        nodes: a.nodes as usize,
        time_limit_s: a.time_limit,
        nemeses: crate::nemesis::expand(&a.nemesis)?,
        workloads,
        rate: a.rate,
        concurrency: a.concurrency.max(1),
        fault_interval_s: a.fault_interval,
        fault_duration_s: a.fault_duration,
        overlap: a.overlap,
        seed,
        results_root: a.results_dir,
        tallyd,
        upgrade_from: a.upgrade_from,
        keep_data: a.keep_data,
        node_args: a.node_arg,
        availability,
        gap_threshold_ms: a.availability.gap_threshold_ms,
    })
}

async fn test(opts: Options) -> i32 {
    if let Err(why) = crate::hosts::netns_supported() {
        eprintln!("tally-jepsen: cannot create hosts: {why}");
        return 2;
    }
    let interrupted = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => "SIGTERM",
        }
    };
    tokio::select! {
        result = runner::run(opts) => match result {
            Ok(outcome) => {
                print!("{}", outcome.text);
                println!("\nresults: {}", outcome.dir.display());
                if outcome.valid { 0 } else { 1 }
            }
            Err(e) => {
                eprintln!("tally-jepsen: run failed: {e:#}");
                2
            }
        },
        sig = interrupted => {
            // Dropping the run future (at the end of this select) kills the
            // processes and removes the namespaces; sweep any leftovers too.
            eprintln!("tally-jepsen: {sig}: tearing down");
            130
        }
    }
}
