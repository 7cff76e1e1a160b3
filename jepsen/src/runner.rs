//! One test run end to end: hosts, cluster, workloads, the nemesis
//! schedule, healing, final reads, teardown, checkers, results folder.
//!
//! Teardown is by `Drop` (the cluster kills its processes, the hosts remove
//! their namespaces, links and rules), so it also happens when the run
//! fails half-way, panics, or is interrupted (the CLI drops the run future
//! on SIGINT/SIGTERM).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::availability::{self, Bounds};
use crate::checker::{self, Verdict, linear};
use crate::cluster::Cluster;
use crate::history::{self, EventType, Func, HistoryWriter};
use crate::hosts::Hosts;
use crate::nemesis::{self, Nemesis};
use crate::report::Report;
use crate::workload::{self, Kind, Recorder, Workloads};

/// Where data dirs of runs live (removed after each run unless kept).
pub const DATA_ROOT: &str = "/var/tmp/tally-jepsen";

/// Parameters of a run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Number of nodes (3 or 5 recommended).
    pub nodes: usize,
    /// Seconds of workload under faults.
    pub time_limit_s: u64,
    /// Nemesis names (expanded).
    pub nemeses: Vec<String>,
    /// Workloads.
    pub workloads: Vec<Kind>,
    /// Target operations per second over all clients.
    pub rate: f64,
    /// Client processes.
    pub concurrency: usize,
    /// Healthy seconds between faults.
    pub fault_interval_s: f64,
    /// Seconds each fault lasts.
    pub fault_duration_s: f64,
    /// Let loss/delay overlap another fault.
    pub overlap: bool,
    /// RNG seed.
    pub seed: u64,
    /// Parent of the per-run results folders.
    pub results_root: PathBuf,
    /// The tallyd binary.
    pub tallyd: PathBuf,
    /// The previous release's tallyd (`upgrade` nemesis), if any.
    pub upgrade_from: Option<PathBuf>,
    /// Keep node data dirs after the run.
    pub keep_data: bool,
    /// Extra `tallyd run` arguments for every node.
    pub node_args: Vec<String>,
    /// Bounds of the `availability` checker (not run when none is set).
    pub availability: Bounds,
    /// Gaps between successful writes up to this long are not unavailable time.
    pub gap_threshold_ms: u64,
}

/// What a run produced.
pub struct Outcome {
    /// The results folder.
    pub dir: PathBuf,
    /// Every checker valid?
    pub valid: bool,
    /// results.txt contents.
    pub text: String,
}

/// `YYYYMMDDTHHMMSSZ` (UTC) from the system clock.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Runs one test.
pub async fn run(opts: Options) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut dir = opts.results_root.join(timestamp());
    if dir.exists() {
        dir = opts
            .results_root
            .join(format!("{}-{}", timestamp(), std::process::id()));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let run_id = format!(
        "{:04x}",
        (std::process::id() as u64 ^ opts.seed.rotate_left(7)) & 0xffff
    );
    let data_dir = Path::new(DATA_ROOT).join(format!("{}{run_id}", crate::hosts::PREFIX));
    std::fs::create_dir_all(&data_dir)?;
    let _data_guard = DataDirGuard {
        path: data_dir.clone(),
        keep: opts.keep_data,
    };
    let params = format!(
        "run {run_id}: nodes {}, time limit {} s, nemesis [{}], workload [{}], rate {}/s, concurrency {}, \
         fault interval {} s, duration {} s, overlap {}, seed {}, tallyd args [{}], client max backoff {} ms, \
         availability bounds [{}], gap threshold {} ms",
        opts.nodes,
        opts.time_limit_s,
        opts.nemeses.join(","),
        opts.workloads
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(","),
        opts.rate,
        opts.concurrency,
        opts.fault_interval_s,
        opts.fault_duration_s,
        opts.overlap,
        opts.seed,
        opts.node_args.join(" "),
        crate::workload::CLIENT_MAX_BACKOFF_MS.load(std::sync::atomic::Ordering::Relaxed),
        opts.availability.describe(),
        opts.gap_threshold_ms,
    );
    eprintln!(
        "tally-jepsen: {params}\ntally-jepsen: results in {}",
        dir.display()
    );

    let hosts = Hosts::setup(&run_id, opts.nodes).context("setting up hosts")?;
    eprintln!("tally-jepsen: hosts up on 10.77.{}.0/24", hosts.subnet);
    let self_exe = std::env::current_exe()?;
    let mut cluster = Cluster::start(
        hosts,
        &data_dir,
        &opts.tallyd,
        opts.upgrade_from.as_deref(),
        &self_exe,
        &opts.node_args,
    )
    .await
    .context("starting cluster")?;
    eprintln!("tally-jepsen: cluster of {} initialized", opts.nodes);

    let recorder = Arc::new(Recorder::new(
        HistoryWriter::create(&dir.join("history.jsonl"))?,
        started,
    ));
    let keys = ((opts.time_limit_s as f64 * opts.rate / 40.0) as u64 + 20).min(20_000);
    let workloads = Arc::new(
        Workloads::setup(
            opts.workloads.clone(),
            Arc::clone(&recorder),
            cluster.endpoints(),
            keys,
        )
        .await?,
    );
    let interval = Duration::from_secs_f64(opts.concurrency as f64 / opts.rate.max(0.1));
    let mut clients = Vec::new();
    for p in 0..opts.concurrency {
        clients.push(tokio::spawn(
            Arc::clone(&workloads).run_client(p, interval, opts.seed),
        ));
    }

    let mut notes = Vec::new();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut nems: Vec<Box<dyn Nemesis>> = Vec::new();
    for name in &opts.nemeses {
        nems.push(nemesis::build(name, opts.nodes)?);
    }
    let end = Instant::now() + Duration::from_secs(opts.time_limit_s);
    schedule(
        &mut cluster,
        &mut nems,
        &recorder,
        &opts,
        end,
        &mut rng,
        &mut notes,
    )
    .await;

    workloads
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        if tokio::time::timeout(Duration::from_secs(20), c)
            .await
            .is_err()
        {
            notes.push("a client did not finish within 20 s after stop".into());
        }
    }
    // Heal everything.
    if let Err(e) = cluster
        .hosts
        .heal_partition()
        .and_then(|_| cluster.hosts.heal_loss())
    {
        notes.push(format!("healing network: {e}"));
    }
    if let Err(e) = cluster.heal_processes().await {
        notes.push(format!("healing processes: {e}"));
    }
    eprintln!("tally-jepsen: healed; waiting for convergence");
    let hashes = cluster.wait_converged(Duration::from_secs(60)).await;
    let max_index = hashes
        .iter()
        .filter_map(|h| h.hash.as_ref().ok().map(|(_, i)| *i))
        .max()
        .unwrap_or(0);
    let mut finals: BTreeMap<Kind, BTreeMap<String, BTreeMap<u64, i64>>> = BTreeMap::new();
    for &kind in &opts.workloads {
        let accounts = workloads.accounts_used(kind);
        for s in cluster.slots.iter().filter(|s| s.member) {
            match cluster
                .final_balances(s.host, max_index, kind.asset(), &accounts)
                .await
            {
                Ok(b) => {
                    finals
                        .entry(kind)
                        .or_default()
                        .insert(cluster.name(s.host), b);
                }
                Err(e) => notes.push(format!(
                    "final read of {} on {}: {e}",
                    kind.name(),
                    cluster.name(s.host)
                )),
            }
        }
    }
    recorder.flush();
    copy_logs(&cluster, &dir);
    drop(cluster); // kills processes, removes namespaces
    eprintln!("tally-jepsen: torn down; checking");

    let events = recorder.events();
    let ops = history::pair(&events);
    let faults = history::faults(&events);
    let mut verdicts: Vec<(String, Verdict)> = Vec::new();
    let names: Vec<&str> = opts.workloads.iter().map(|k| k.name()).collect();
    if opts.workloads.contains(&Kind::Bank) {
        let total = workload::BANK_INITIAL * workload::BANK_ACCOUNTS.len() as i64;
        let empty = BTreeMap::new();
        let f = finals.get(&Kind::Bank).unwrap_or(&empty);
        verdicts.push((
            "bank".into(),
            checker::bank::check(&ops, &workload::BANK_ACCOUNTS, total, f),
        ));
    }
    let lin_workloads: Vec<&str> = names.iter().copied().filter(|n| *n != "bank").collect();
    if !lin_workloads.is_empty() {
        let histories = linear::counter_histories(&ops, &lin_workloads);
        verdicts.push((
            "linearizability".into(),
            linear::check_accounts(&histories, linear::Limits::default()),
        ));
    }
    for &kind in &opts.workloads {
        let writes = checker::final_state::account_writes(&ops, &[kind.name()]);
        let empty = BTreeMap::new();
        let f = finals.get(&kind).unwrap_or(&empty);
        verdicts.push((
            format!("final-state/{}", kind.name()),
            checker::final_state::check(&writes, f),
        ));
    }
    verdicts.push((
        "idempotence".into(),
        checker::idempotence::check(&ops, &names),
    ));
    verdicts.push(("convergence".into(), checker::convergence::check(&hashes)));

    let unavailability = checker::unavailability::measure(&ops, &faults);
    let summary = availability::summarize(&ops, &faults, &unavailability, opts.gap_threshold_ms);
    if opts.availability.is_set() {
        verdicts.push((
            "availability".into(),
            availability::check(&summary, &opts.availability),
        ));
    }
    let report = Report {
        params,
        verdicts,
        unavailability,
        availability: Some((summary, opts.availability.clone())),
        notes,
    };
    let text = report.render(&ops);
    std::fs::write(dir.join("results.txt"), &text)?;
    let end_ns = events.iter().map(|e| e.time_ns).max().unwrap_or(0);
    let nemesis_names = if opts.nemeses.len() == nemesis::ALL.len() {
        "all".to_string()
    } else {
        opts.nemeses.join(",")
    };
    let title = format!(
        "tally-jepsen {} nodes, {} s, nemesis {}, workload {}: {}",
        opts.nodes,
        opts.time_limit_s,
        nemesis_names,
        names.join(","),
        if report.valid() { "valid" } else { "NOT valid" }
    );
    std::fs::write(
        dir.join("latency.svg"),
        crate::svg::render(&title, &ops, &faults, end_ns),
    )?;
    Ok(Outcome {
        dir,
        valid: report.valid(),
        text,
    })
}

/// Re-checks a history file with the history-only checkers; writes
/// `latency-recheck.svg` beside it. Returns the report text and validity.
pub fn recheck(
    path: &Path,
    title: Option<String>,
    bounds: &Bounds,
    gap_threshold_ms: u64,
) -> anyhow::Result<(String, bool)> {
    let events = history::read(path)?;
    let ops = history::pair(&events);
    let faults = history::faults(&events);
    let mut names: Vec<&str> = ops.iter().map(|o| o.workload()).collect();
    names.sort_unstable();
    names.dedup();
    let mut verdicts: Vec<(String, Verdict)> = Vec::new();
    if names.contains(&"bank") {
        let total = workload::BANK_INITIAL * workload::BANK_ACCOUNTS.len() as i64;
        verdicts.push((
            "bank (reads only)".into(),
            checker::bank::check(&ops, &workload::BANK_ACCOUNTS, total, &BTreeMap::new()),
        ));
    }
    let lin_workloads: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| *n == "register" || *n == "idempotence")
        .collect();
    if !lin_workloads.is_empty() {
        let histories = linear::counter_histories(&ops, &lin_workloads);
        verdicts.push((
            "linearizability".into(),
            linear::check_accounts(&histories, linear::Limits::default()),
        ));
    }
    verdicts.push((
        "idempotence".into(),
        checker::idempotence::check(&ops, &names),
    ));
    let unavailability = checker::unavailability::measure(&ops, &faults);
    let summary = availability::summarize(&ops, &faults, &unavailability, gap_threshold_ms);
    if bounds.is_set() {
        verdicts.push(("availability".into(), availability::check(&summary, bounds)));
    }
    let report = Report {
        availability: Some((summary, bounds.clone())),
        params: format!(
            "re-check of {} (final-state and convergence need the live cluster: not re-checked)",
            path.display()
        ),
        verdicts,
        unavailability,
        notes: Vec::new(),
    };
    let end_ns = events.iter().map(|e| e.time_ns).max().unwrap_or(0);
    let title = title.unwrap_or_else(|| format!("re-check of {}", path.display()));
    let svg = crate::svg::render(&title, &ops, &faults, end_ns);
    std::fs::write(path.with_file_name("latency-recheck.svg"), svg)?;
    Ok((report.render(&ops), report.valid()))
}

/// The nemesis schedule: healthy interval, one fault (maybe with an
/// overlapping network fault), heal, repeat until `end`.
async fn schedule(
    cluster: &mut Cluster,
    nems: &mut [Box<dyn Nemesis>],
    recorder: &Recorder,
    opts: &Options,
    end: Instant,
    rng: &mut StdRng,
    notes: &mut Vec<String>,
) {
    let interval = Duration::from_secs_f64(opts.fault_interval_s);
    let duration = Duration::from_secs_f64(opts.fault_duration_s);
    sleep_until_or(Instant::now() + interval, end).await;
    while !nems.is_empty() && Instant::now() + duration < end {
        let first = rng.random_range(0..nems.len());
        let mut chosen = vec![first];
        if opts.overlap && !nems[first].is_network_quality() && rng.random_bool(0.3) {
            let net: Vec<usize> = (0..nems.len())
                .filter(|&i| nems[i].is_network_quality())
                .collect();
            if !net.is_empty() {
                chosen.push(net[rng.random_range(0..net.len())]);
            }
        }
        let mut started = Vec::new();
        for &i in &chosen {
            let name = nems[i].name().to_string();
            match nems[i].start(cluster, rng).await {
                Ok(what) => {
                    eprintln!(
                        "tally-jepsen: {:>7.1}s fault {name}: {what}",
                        recorder.now_ns() as f64 / 1e9
                    );
                    let inv = recorder.invoke("nemesis", "nemesis", Func::StartFault, |e| {
                        e.fault = Some(name.clone());
                        e.error = Some(what);
                    });
                    started.push((i, inv));
                }
                Err(err) => notes.push(format!("nemesis {name} failed to start: {err:#}")),
            }
        }
        sleep_until_or(Instant::now() + duration, end).await;
        for (i, inv) in started.into_iter().rev() {
            let name = nems[i].name().to_string();
            let result = nems[i].stop(cluster).await;
            let what = match result {
                Ok(w) => w,
                Err(err) => {
                    notes.push(format!("nemesis {name} failed to heal: {err:#}"));
                    format!("heal failed: {err:#}")
                }
            };
            eprintln!(
                "tally-jepsen: {:>7.1}s heal {name}: {what}",
                recorder.now_ns() as f64 / 1e9
            );
            recorder.complete(&inv, EventType::Ok, |ev| {
                ev.f = Func::StopFault;
                ev.error = Some(what);
            });
        }
        sleep_until_or(Instant::now() + interval, end).await;
    }
    sleep_until_or(end, end).await;
}

async fn sleep_until_or(t: Instant, end: Instant) {
    let t = t.min(end);
    let now = Instant::now();
    if t > now {
        tokio::time::sleep(t - now).await;
    }
}

fn copy_logs(cluster: &Cluster, dir: &Path) {
    let logs = dir.join("logs");
    if std::fs::create_dir_all(&logs).is_err() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(&cluster.run_dir) {
        for entry in entries.flatten() {
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                let _ = std::fs::copy(p.join("tallyd.log"), logs.join(format!("{name}.log")));
            } else if name.ends_with(".log") {
                let _ = std::fs::copy(&p, logs.join(&name));
            }
        }
    }
}

struct DataDirGuard {
    path: PathBuf,
    keep: bool,
}

impl Drop for DataDirGuard {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
