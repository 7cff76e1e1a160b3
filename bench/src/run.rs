//! One `tally-bench` run from start to finish: bring up (or reach) the
//! cluster, find the leader, set the idempotency window if asked
//! (`--dedup-window-ms`), set up assets and funded accounts, run the
//! measured phase with the monitor (and the fault, if one is asked for:
//! `fault`), stop the cluster and build the report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::json;
use tally_proto::v1::command::Body;
use tally_proto::v1::{ReadConsistency as PbConsistency, ReadOptions, SetDedupWindow};

use crate::args::{Args, Mode, ReadConsistency, ReadTarget, ReplyMode};
use crate::cluster::{self, DevCluster};
use crate::driver::{self, Limits, Live, MonitorConfig, Source, Target};
use crate::fault::{self, FaultPlan};
use crate::fixture::{self, EngineFixture};
use crate::report::{Report, grouped};
use crate::rss::{self, Sampled};
use crate::stats::Recorder;
use crate::workload::{ASSETS, AccountCursor, Ids, Plan, Request, Workload};

/// How long to wait for a leader before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// Pause before the final RSS sample of the `accounts` workload, so the
/// nodes have applied and settled.
const SETTLE: Duration = Duration::from_secs(2);

/// What `main` prints and how it exits.
pub struct Outcome {
    pub stdout: String,
    /// `Some(verdict)` with `--smoke`: whether anything was applied.
    pub smoke_ok: Option<bool>,
}

/// Runs what `args` asks for.
pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    args.validate()?;
    if args.workload == Workload::Engine {
        return Ok(run_engine(&args));
    }
    if args.workload == Workload::Ingest {
        return crate::ingest::run(&args).await;
    }
    let mut dev = None;
    let endpoints: Vec<String> = if args.dev {
        let tallyd = cluster::find_tallyd(args.tallyd.as_deref())?;
        let (nodes, data_dir) = (args.nodes, args.data_dir.clone());
        eprintln!(
            "tally-bench: starting {} (dev, {nodes} nodes)",
            tallyd.display()
        );
        let tls = args.tls;
        let extra: Vec<String> = args
            .lease_reads
            .then(|| "--lease-reads".to_string())
            .into_iter()
            .collect();
        let started = tokio::task::spawn_blocking(move || {
            DevCluster::start_tls(&tallyd, nodes, data_dir.as_deref(), &extra, tls)
        })
        .await
        .context("dev cluster start panicked")??;
        cluster::set_client_tls(started.tls.clone());
        let endpoints = started.endpoints.clone();
        dev = Some(started);
        endpoints
    } else {
        let endpoints: Vec<String> = args
            .endpoints
            .iter()
            .map(|e| tally_client::parse_endpoint(e).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<_>>()?;
        cluster::check_loopback(&endpoints)?;
        cluster::set_client_tls(args.client_tls()?);
        endpoints
    };
    // Ctrl-C or SIGTERM (e.g. from `timeout`) ends the run early, and the
    // dev cluster is still stopped below.
    let result = tokio::select! {
        result = run_cluster(&args, &endpoints, dev.as_ref()) => result,
        signal = shutdown_signal() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    if let Some(mut dev) = dev {
        eprintln!("tally-bench: stopping the dev cluster");
        tokio::task::spawn_blocking(move || dev.stop())
            .await
            .context("dev cluster stop panicked")?;
    }
    let report = result?;
    let smoke_ok = args.smoke.then(|| {
        let t = &report.totals;
        let work = match args.workload {
            Workload::Spot => t.fills > 0,
            Workload::Mixed => t.fills > 0 && t.reads > 0,
            _ => t.ops() > 0,
        };
        work && report.fault.as_ref().is_none_or(fault::FaultReport::ok)
    });
    let stdout = if args.json {
        serde_json::to_string_pretty(&report.json())? + "\n"
    } else {
        report.text(!args.no_table)
    };
    Ok(Outcome { stdout, smoke_ok })
}

/// Resolves on Ctrl-C or SIGTERM, naming the signal.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                name = ctrl_c => name,
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c.await
    }
}

fn read_options(consistency: ReadConsistency) -> ReadOptions {
    let consistency = match consistency {
        ReadConsistency::Linearizable => PbConsistency::Linearizable,
        ReadConsistency::Bounded => PbConsistency::Bounded,
    };
    ReadOptions {
        consistency: consistency as i32,
        ..ReadOptions::default()
    }
}

fn title(args: &Args, plan: &Plan) -> String {
    let mode = match args.mode {
        Mode::Closed => format!("closed loop, {} clients", args.clients),
        Mode::Open => format!(
            "open loop, {} {}/s offered",
            grouped(args.rate.unwrap_or(0.0)),
            args.workload.unit()
        ),
    };
    let mut title = format!(
        "workload {} ({mode}), batch {} commands/request, {} connection(s), {} accounts {}, {} assets, seed {}",
        args.workload,
        match args.workload {
            Workload::Spot | Workload::Mixed => plan.spot_batch(),
            _ => plan.batch,
        },
        args.connections,
        grouped(plan.accounts as f64),
        args.distribution,
        args.assets,
        args.seed
    );
    if matches!(args.workload, Workload::Reads | Workload::Mixed) {
        title.push_str(&format!(
            ", reads {:?} on {:?}",
            args.read_consistency, args.read_target
        ));
    }
    if args.workload == Workload::Mixed {
        title.push_str(&format!(", read ratio {}", args.read_ratio));
    }
    if let Some(stop_s) = args.stop_follower_at_s {
        title.push_str(&format!(", a follower stopped at {stop_s} s"));
        if let Some(resume_s) = args.resume_follower_at_s {
            title.push_str(&format!(" and resumed at {resume_s} s"));
        }
    }
    if let Some(restart_s) = args.restart_node_at_s {
        title.push_str(&format!(
            ", a follower killed and restarted at {restart_s} s"
        ));
    }
    title
}

fn settings(args: &Args) -> serde_json::Value {
    json!({
        "workload": args.workload.to_string(),
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "clients": args.clients,
        "connections": args.connections,
        "batch": args.batch,
        "reply": format!("{:?}", args.reply).to_lowercase(),
        "duration_s": args.duration_s(),
        "warmup_s": args.warmup_s(),
        "count": args.count,
        "rate": args.rate,
        "max_inflight": args.max_inflight,
        "accounts": args.accounts(),
        "account_base": args.account_base,
        "assets": args.assets,
        "distribution": args.distribution.to_string(),
        "read_ratio": args.read_ratio,
        "read_target": format!("{:?}", args.read_target).to_lowercase(),
        "read_consistency": format!("{:?}", args.read_consistency).to_lowercase(),
        "seed": args.seed,
        "dedup_window_ms": args.dedup_window_ms,
        "dev": args.dev,
        "nodes": args.nodes,
        "stop_follower_at_s": args.stop_follower_at_s,
        "resume_follower_at_s": args.resume_follower_at_s,
        "restart_node_at_s": args.restart_node_at_s,
        "restart_timeout_s": args.restart_node_at_s.map(|_| args.restart_timeout_s),
    })
}

async fn run_cluster(
    args: &Args,
    endpoints: &[String],
    dev: Option<&DevCluster>,
) -> anyhow::Result<Report> {
    let leader_index = cluster::find_leader(endpoints, LEADER_WAIT).await?;
    let leader = endpoints[leader_index].clone();
    let mut processes: Vec<Sampled> = dev.map(DevCluster::sampled).unwrap_or_default();
    processes.extend(args.sample_rss_pid.iter().map(|pid| Sampled {
        label: format!("pid-{pid}"),
        pid: *pid,
    }));
    let read_endpoints: Vec<String> = match args.read_target {
        ReadTarget::Leader => vec![leader.clone()],
        ReadTarget::All => endpoints.to_vec(),
        ReadTarget::Followers => endpoints
            .iter()
            .filter(|e| **e != leader)
            .cloned()
            .collect(),
    };
    if read_endpoints.is_empty() {
        anyhow::bail!(
            "no node to read from with --read-target {:?}",
            args.read_target
        );
    }
    let target = Arc::new(Target::new(
        endpoints,
        args.connections,
        args.timeout_ms,
        args.reply == ReplyMode::Events,
        &read_endpoints,
        read_options(args.read_consistency),
    )?);
    let clock_nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
    let nonce = (clock_nanos as u16) & 0xFFFE;
    let plan = Arc::new(Plan::new(
        args.workload,
        args.account_base,
        args.accounts(),
        args.assets,
        args.batch,
        args.read_ratio,
        args.distribution,
        args.seed,
        nonce,
    ));

    let mut report = Report {
        title: title(args, &plan),
        settings: settings(args),
        cluster: match dev {
            Some(dev) => format!(
                "tallyd dev, {} nodes on {} (data {} on {})",
                dev.nodes.len(),
                endpoints.join(","),
                dev.data_dir.display(),
                cluster::fs_type(&dev.data_dir).unwrap_or_else(|| "?".into())
            ),
            None => format!("endpoints {}", endpoints.join(",")),
        },
        leader: Some(match dev {
            Some(_) => format!("{leader} (node-{})", leader_index + 1),
            None => leader.clone(),
        }),
        warmup_s: args.warmup_s(),
        processes: processes.clone(),
        ..Report::default()
    };

    if let Some(window_ms) = args.dedup_window_ms {
        set_dedup_window(&target, &plan, window_ms).await?;
        report.notes.push(format!(
            "dedup window set to {} ms before the run (stays after it)",
            grouped(window_ms as f64)
        ));
    }
    if args.workload.needs_setup() && !args.skip_setup {
        report.setup = Some(setup(args, &target, &plan, &processes).await?);
    } else if args.workload == Workload::Accounts {
        create_assets(&target, &plan).await?;
    }

    report.rss_before = rss::sample(&processes);
    let mut cpu_processes = processes.clone();
    cpu_processes.push(Sampled {
        label: "tally-bench".into(),
        pid: std::process::id(),
    });
    let accounts_workload = args.workload == Workload::Accounts;
    let limits = Limits::new(
        Duration::from_secs(args.warmup_s()),
        Duration::from_secs(args.window_s()),
        args.count,
        Duration::from_secs(args.drain_s),
    );
    let recorder = Arc::new(Mutex::new(Recorder::new(limits.measure_start)));
    let live = Arc::new(Live::default());
    let done = Arc::new(AtomicBool::new(false));
    let cpu_start = {
        let cpu_processes = cpu_processes.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(limits.measure_start.into()).await;
            rss::sample_cpu(&cpu_processes)
        })
    };
    let monitor = tokio::spawn(driver::monitor(
        MonitorConfig {
            label: args.workload.to_string(),
            unit_is_fills: matches!(args.workload, Workload::Spot | Workload::Mixed),
            processes: processes.clone(),
            quiet: args.quiet,
        },
        limits,
        Arc::clone(&recorder),
        Arc::clone(&live),
        Arc::clone(&done),
    ));
    let fault_plan = FaultPlan::from_args(args).filter(|_| dev.is_some());
    if fault_plan.is_some() {
        // Before the first request completes, so the phases cover them all.
        driver::lock(&recorder).first_phase("all up");
    }
    let (workload_done, workload_done_rx) = tokio::sync::watch::channel(false);
    let workload = async {
        drive(args, &target, &plan, limits, &recorder, &live).await;
        // Nobody listening (no fault) is fine.
        let _ = workload_done.send(true);
    };
    let inject = async {
        match (fault_plan, dev) {
            (Some(fault_plan), Some(dev)) => Some(
                fault::run(
                    fault_plan,
                    dev,
                    endpoints,
                    limits,
                    &recorder,
                    workload_done_rx,
                    plan.account_base,
                    ASSETS[0].0,
                )
                .await,
            ),
            _ => None,
        }
    };
    let ((), fault_report) = tokio::join!(workload, inject);
    report.fault = fault_report;
    let cpu_end = rss::sample_cpu(&cpu_processes);

    let cpu_start = cpu_start.await.unwrap_or_default();
    report.cpu = cpu_processes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let used = match (
                cpu_start.get(i).copied().flatten(),
                cpu_end.get(i).copied().flatten(),
            ) {
                (Some(a), Some(b)) => Some((b - a).max(0.0)),
                _ => None,
            };
            (p.label.clone(), used)
        })
        .collect();
    done.store(true, Ordering::Relaxed);
    let _ = monitor.await;
    if accounts_workload {
        tokio::time::sleep(SETTLE).await;
    }
    report.rss_after = rss::sample(&processes);

    let mut r = driver::lock(&recorder);
    r.close_seconds(None);
    report.measured_s = r.elapsed().as_secs_f64();
    report.totals = r.total;
    report.latency = r.percentiles();
    report.rows = std::mem::take(&mut r.rows);
    report.reject_reasons = std::mem::take(&mut r.reject_reasons);
    report.errors = std::mem::take(&mut r.errors);
    report.phases = r.phase_summaries();
    drop(r);

    if accounts_workload {
        let created = report.totals.applied / (1 + args.assets as u64);
        for (i, p) in processes.iter().enumerate() {
            let (Some(before), Some(after)) = (
                report.rss_before.get(i).copied().flatten(),
                report.rss_after.get(i).copied().flatten(),
            ) else {
                continue;
            };
            let per_account = (after.saturating_sub(before) * 1024) as f64 / created.max(1) as f64;
            report.notes.push(format!(
                "accounts: {} created and funded in {} assets; {} RSS {} MiB after, {:.0} bytes per account over the start",
                grouped(created as f64),
                args.assets,
                p.label,
                rss::mib(Some(after)),
                per_account
            ));
        }
    }
    Ok(report)
}

/// Runs the workload of `args` (closed or open loop) until `limits` end it.
async fn drive(
    args: &Args,
    target: &Arc<Target>,
    plan: &Arc<Plan>,
    limits: Limits,
    recorder: &Arc<Mutex<Recorder>>,
    live: &Arc<Live>,
) {
    match (args.workload, args.mode) {
        (Workload::Accounts, _) => {
            let source = Source::Accounts(Arc::new(AccountCursor::new()));
            driver::closed_loop(
                Arc::clone(target),
                Arc::clone(plan),
                source,
                args.clients,
                limits,
                Arc::clone(recorder),
                Arc::clone(live),
            )
            .await;
        }
        (_, Mode::Closed) => {
            driver::closed_loop(
                Arc::clone(target),
                Arc::clone(plan),
                Source::Generated { stream_base: 0 },
                args.clients,
                limits,
                Arc::clone(recorder),
                Arc::clone(live),
            )
            .await;
        }
        (_, Mode::Open) => {
            driver::open_loop(
                Arc::clone(target),
                Arc::clone(plan),
                args.rate.unwrap_or(1.0),
                args.max_inflight,
                limits,
                Arc::clone(recorder),
                Arc::clone(live),
            )
            .await;
        }
    }
}

/// Creates the assets, then creates and funds every account, batched.
/// Returns (commands applied, seconds, commands not applied).
async fn setup(
    args: &Args,
    target: &Arc<Target>,
    plan: &Plan,
    processes: &[Sampled],
) -> anyhow::Result<(u64, f64, u64)> {
    let started = Instant::now();
    let setup_plan = Arc::new(Plan::new(
        Workload::Accounts,
        plan.account_base,
        plan.accounts,
        plan.assets,
        args.setup_batch,
        0.0,
        args.distribution,
        plan.seed,
        plan.nonce.wrapping_add(1),
    ));
    let n = create_assets(target, plan).await?;
    let limits = Limits::new(
        Duration::ZERO,
        Duration::from_secs(args.setup_timeout_s),
        None,
        Duration::from_secs(args.drain_s),
    );
    let recorder = Arc::new(Mutex::new(Recorder::new(limits.measure_start)));
    let live = Arc::new(Live::default());
    let done = Arc::new(AtomicBool::new(false));
    let monitor = tokio::spawn(driver::monitor(
        MonitorConfig {
            label: "setup".into(),
            unit_is_fills: false,
            processes: processes.to_vec(),
            quiet: args.quiet,
        },
        limits,
        Arc::clone(&recorder),
        Arc::clone(&live),
        Arc::clone(&done),
    ));
    driver::closed_loop(
        Arc::clone(target),
        setup_plan,
        Source::Accounts(Arc::new(AccountCursor::new())),
        args.setup_clients,
        limits,
        Arc::clone(&recorder),
        live,
    )
    .await;
    done.store(true, Ordering::Relaxed);
    let _ = monitor.await;
    let r = driver::lock(&recorder);
    let expected = plan.accounts * (1 + plan.assets as u64);
    let not_applied = expected.saturating_sub(r.total.applied);
    // Re-running against a cluster that has the accounts: creates are
    // rejected (ACCOUNT_EXISTS), deposits still apply. Anything else is fatal.
    let other_rejections: u64 = r
        .reject_reasons
        .iter()
        .filter(|(reason, _)| reason.as_str() != "ACCOUNT_EXISTS")
        .map(|(_, n)| *n)
        .sum();
    if r.total.unknown > 0 || r.total.request_errors > 0 || other_rejections > 0 {
        anyhow::bail!(
            "set-up failed: {} unknown, {} failed requests, rejections {:?}, errors {:?}",
            r.total.unknown,
            r.total.request_errors,
            r.reject_reasons,
            r.errors
        );
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "tally-bench: set-up done: {} accounts in {} assets, {} commands in {secs:.2} s",
        grouped(plan.accounts as f64),
        plan.assets,
        grouped(r.total.applied as f64)
    );
    Ok((r.total.applied + n as u64, secs, not_applied))
}

/// Creates the plan's assets (an existing asset is fine); returns how many.
async fn create_assets(target: &Target, plan: &Plan) -> anyhow::Result<usize> {
    let mut ids = Ids::new(plan.nonce.wrapping_add(1), crate::workload::MAX_STREAMS - 1);
    let assets = plan.create_assets(&mut ids);
    let n = assets.len();
    let outcome = target
        .execute(
            0,
            Request::Write {
                commands: assets,
                fills: vec![false; n],
            },
        )
        .await;
    let c = outcome.counters;
    let unexpected = outcome
        .reject_reason
        .as_deref()
        .is_some_and(|reason| reason != "ASSET_EXISTS");
    if c.applied + c.rejected != n as u64 || unexpected {
        anyhow::bail!(
            "creating the assets failed: {}",
            outcome
                .error
                .or(outcome.reject_reason)
                .unwrap_or_else(|| "unknown outcome".into())
        );
    }
    Ok(n)
}

/// `--dedup-window-ms`: one `SetDedupWindow` command, which must apply.
/// The window is replicated ledger state, so it travels through the log
/// like any write and stays set after the run.
async fn set_dedup_window(target: &Target, plan: &Plan, window_ms: u64) -> anyhow::Result<()> {
    // Stream MAX_STREAMS - 2 of the set-up nonce: used by nothing else.
    let mut ids = Ids::new(plan.nonce.wrapping_add(1), crate::workload::MAX_STREAMS - 2);
    let command = ids.command(Body::SetDedupWindow(SetDedupWindow { window_ms }));
    let outcome = target
        .execute(
            0,
            Request::Write {
                commands: vec![command],
                fills: vec![false],
            },
        )
        .await;
    if outcome.counters.applied != 1 {
        anyhow::bail!(
            "setting the dedup window to {window_ms} ms failed: {}",
            outcome
                .error
                .or(outcome.reject_reason)
                .unwrap_or_else(|| "unknown outcome".into())
        );
    }
    eprintln!("tally-bench: dedup window set to {window_ms} ms");
    Ok(())
}

/// `--workload engine`: the engine alone on this thread.
fn run_engine(args: &Args) -> Outcome {
    let accounts = args.accounts();
    let trades = args.count.unwrap_or(1_000_000);
    let max_time = Duration::from_secs(args.duration_s.unwrap_or(120));
    let build = Instant::now();
    let window_ms = (args.dedup_entries / fixture::COMMANDS_PER_MS).max(1);
    let mut fixture = EngineFixture::with_dedup_window(
        accounts,
        args.assets,
        args.distribution,
        args.seed,
        window_ms,
    );
    let build_s = build.elapsed().as_secs_f64();
    let rss_after_build = rss::rss_kib(std::process::id());
    let run = fixture::run_engine(&mut fixture, trades, args.fills_only, max_time);
    let apply_s = run.apply_time.as_secs_f64().max(1e-9);
    let cpu_s = run.apply_cpu.as_secs_f64().max(1e-9);
    let total_s = (run.apply_time + run.take_dirty_time)
        .as_secs_f64()
        .max(1e-9);
    let mix = match (args.fills_only, fixture.from_log) {
        (true, false) => "fills against standing holds",
        (false, false) => "lock + lock + fill per trade",
        (true, true) => "fills against standing holds, decoded from wire bytes (replica path)",
        (false, true) => "lock + lock + fill per trade, decoded from wire bytes (replica path)",
    };
    let smoke_ok = args.smoke.then_some(run.fills > 0);
    let stdout = if args.json {
        let value = json!({
            "workload": "engine",
            "mix": mix,
            "accounts": accounts,
            "assets": args.assets,
            "distribution": args.distribution.to_string(),
            "dedup_entries": args.dedup_entries,
            "fills": run.fills,
            "commands": run.commands,
            "rejected": run.rejected,
            "apply_s": apply_s,
            "take_dirty_s": run.take_dirty_time.as_secs_f64(),
            "fills_per_s_apply": run.fills as f64 / apply_s,
            "apply_cpu_s": cpu_s,
            "fills_per_cpu_s_apply": run.fills as f64 / cpu_s,
            "fills_per_s_with_take_dirty": run.fills as f64 / total_s,
            "commands_per_s_apply": run.commands as f64 / apply_s,
            "fixture_build_s": build_s,
            "rss_after_fixture_kib": rss_after_build,
        });
        serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
    } else {
        format!(
            "tally-bench: engine alone, one thread ({mix}), {} accounts {}, {} assets, ~{} live dedup entries\n\
             fixture built in {build_s:.2} s, process RSS then {} MiB\n\
             {} fills ({} commands, {} rejected) applied in {apply_s:.3} s: {} fills/s, {} commands/s\n\
             by thread CPU time ({cpu_s:.3} s): {} fills/s, {:.2} us per fill\n\
             with the changed records drained (drain_dirty) once per {}-command entry: {} fills/s ({:.3} s draining)\n",
            grouped(accounts as f64),
            args.distribution,
            args.assets,
            grouped(args.dedup_entries as f64),
            rss::mib(rss_after_build),
            grouped(run.fills as f64),
            grouped(run.commands as f64),
            run.rejected,
            grouped(run.fills as f64 / apply_s),
            grouped(run.commands as f64 / apply_s),
            grouped(run.fills as f64 / cpu_s),
            cpu_s * 1e6 / run.fills.max(1) as f64,
            fixture::ENTRY_COMMANDS,
            grouped(run.fills as f64 / total_s),
            run.take_dirty_time.as_secs_f64(),
        )
    };
    Outcome { stdout, smoke_ok }
}
