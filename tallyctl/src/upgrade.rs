//! `tallyctl cluster finalize` (raise the active cluster version) and
//! `tallyctl cluster upgrade` (rolling, blue-green and canary upgrades,
//! `--plan` to print the steps, `--apply` to run them, `--rollback` for
//! blue-green and canary). Every step is an ordinary admin call (status,
//! transfer-leader, add-learner, promote, remove, finalize); tallyctl never
//! starts processes on other hosts: a rolling upgrade restarts each node
//! through the operator's `--restart-hook` (or waits for the operator).
//! Progress goes to stderr as it happens; the outcome to stdout at the end.
//! Every wait is bounded (`--node-timeout-ms`, `--observe-s`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tally_client::proto::v1::{ClusterStatus, NodeStatus, SetClusterVersionResponse};
use tally_client::{Client, ClientError};

use crate::args::{Strategy, UpgradeArgs};
use crate::run::{EXIT_DEGRADED, EXIT_ERROR, Outcome, error_outcome};

/// Per status call while polling.
const POLL_TIMEOUT_MS: u64 = 2_000;
/// Between polls.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

fn progress(line: &str) {
    eprintln!("upgrade: {line}");
}

fn fail(line: String) -> Outcome {
    Outcome::error(
        EXIT_ERROR,
        format!("error: {line}"),
        "UPGRADE_FAILED",
        &line,
    )
}

fn support_json(r: &SetClusterVersionResponse) -> Value {
    json!({
        "status": "ok",
        "action": "finalize",
        "previous_version": r.previous_version,
        "active_version": r.active_version,
        "log_index": r.log_index,
        "nodes": r.nodes.iter().map(|n| json!({
            "node_id": n.node_id,
            "addr": n.addr,
            "release_version": n.release_version,
            "max_cluster_version": n.max_cluster_version,
            "cluster_version": n.cluster_version,
        })).collect::<Vec<_>>(),
    })
}

fn support_text(r: &SetClusterVersionResponse, dry_run: bool) -> String {
    let mut out = if dry_run {
        format!("cluster version {} active (dry run)", r.active_version)
    } else if r.active_version > r.previous_version {
        format!(
            "cluster version raised {} -> {} at index {}",
            r.previous_version, r.active_version, r.log_index
        )
    } else {
        format!(
            "cluster version {} already active; nothing changed",
            r.active_version
        )
    };
    for n in &r.nodes {
        out.push_str(&format!(
            "\n  node {} {}  release {}  supports up to {}",
            n.node_id,
            n.addr,
            if n.release_version.is_empty() {
                "?"
            } else {
                &n.release_version
            },
            n.max_cluster_version
        ));
    }
    out
}

/// `cluster finalize`.
pub async fn finalize(client: &Client, version: u32, dry_run: bool) -> Outcome {
    crate::run::interruptible(client.set_cluster_version(version, dry_run), true, |r| {
        Outcome::Ok {
            text: support_text(&r, dry_run),
            json: support_json(&r),
        }
    })
    .await
}

/// `cluster upgrade`.
pub async fn upgrade(client: &Client, args: UpgradeArgs) -> Outcome {
    if !args.plan && !args.apply && !args.rollback {
        return Outcome::usage("say --plan, --apply or --rollback");
    }
    if args.strategy != Strategy::Rolling && args.green.is_empty() {
        return Outcome::usage("blue-green and canary need the new nodes (--green ID=HOST:PORT)");
    }
    if args.strategy == Strategy::Canary && args.green.len() != 1 {
        return Outcome::usage("a canary is one --green node");
    }
    if args.rollback && args.strategy == Strategy::Rolling {
        return Outcome::usage(
            "a rolling upgrade is rolled back by rolling again to the old binary (before finalize)",
        );
    }
    let status = match client.cluster_status().await {
        Ok(s) => s,
        Err(e) => return error_outcome(&e, false),
    };
    if args.plan {
        let text = plan_text(&status, &args);
        return Outcome::Ok {
            json: json!({"status": "ok", "action": "plan", "steps": text.lines().skip(1).collect::<Vec<_>>()}),
            text,
        };
    }
    let run = async {
        match (args.strategy, args.rollback) {
            (Strategy::Rolling, _) => rolling(client, &args, &status).await,
            (_, false) => blue_green(client, &args, &status).await,
            (_, true) => roll_back(client, &args).await,
        }
    };
    let result = tokio::select! {
        r = run => r,
        _ = tokio::signal::ctrl_c() => return Outcome::interrupted(true),
    };
    match result {
        Ok(outcome) if args.finalize && outcome.exit_code() == 0 => {
            progress("finalizing");
            finalize(client, 0, false).await
        }
        Ok(outcome) => outcome,
        Err(line) => fail(line),
    }
}

/// Members in rolling order: learners, then followers, the leader last.
fn rolling_order(s: &ClusterStatus) -> Vec<(u64, String, &'static str)> {
    let mut order: Vec<(u8, u64, String, &'static str)> = Vec::new();
    for m in &s.learners {
        order.push((0, m.node_id, m.addr.clone(), "learner"));
    }
    for m in &s.voters {
        let leads = s.has_leader && m.node_id == s.leader_id;
        let (rank, role) = if leads {
            (2, "leader")
        } else {
            (1, "follower")
        };
        order.push((rank, m.node_id, m.addr.clone(), role));
    }
    order.sort();
    order
        .into_iter()
        .map(|(_, id, addr, role)| (id, addr, role))
        .collect()
}

fn release_of(s: &ClusterStatus, id: u64) -> String {
    s.nodes
        .iter()
        .find(|n| n.node_id == id && n.error.is_empty())
        .map_or("?".to_string(), |n| n.version.clone())
}

fn plan_text(s: &ClusterStatus, args: &UpgradeArgs) -> String {
    let (active, common, _) = crate::render::cluster_versions(&s.nodes);
    let target = args.release.as_deref().unwrap_or("the new release");
    let mut steps = Vec::new();
    match args.strategy {
        Strategy::Rolling => {
            for (id, addr, role) in rolling_order(s) {
                let now = release_of(s, id);
                if args.release.as_deref() == Some(now.as_str()) {
                    steps.push(format!("node {id} ({addr}) already runs {now}: skip"));
                    continue;
                }
                let first = if role == "leader" {
                    "move leadership to the most caught-up other voter, then "
                } else {
                    ""
                };
                steps.push(format!(
                    "node {id} ({addr}, {role}, release {now}): {first}stop it (SIGTERM), start \
                     {target} on the same data dir, wait until it reports {target} and is within \
                     {} entries of the leader",
                    args.max_lag
                ));
            }
        }
        Strategy::BlueGreen | Strategy::Canary => {
            for g in &args.green {
                steps.push(format!(
                    "add node {} ({}) as a learner, wait until it caught up, promote it to voter",
                    g.node_id, g.addr
                ));
            }
            if args.strategy == Strategy::Canary {
                steps.push(format!(
                    "watch node {} for {} s: health, lag, state hash against the leader's; then \
                     continue (rolling or blue-green for the rest) or --rollback (remove it)",
                    args.green[0].node_id, args.observe_s
                ));
            } else {
                let green: BTreeSet<u64> = args.green.iter().map(|g| g.node_id).collect();
                steps.push(format!("move leadership to node {}", args.green[0].node_id));
                for m in s.voters.iter().chain(&s.learners) {
                    if !green.contains(&m.node_id) {
                        steps.push(format!("remove blue node {} ({})", m.node_id, m.addr));
                    }
                }
                steps.push(
                    "until the blue nodes are removed, --rollback moves leadership back and \
                     removes the green nodes"
                        .to_string(),
                );
            }
        }
    }
    steps.push(format!(
        "finalize (tallyctl cluster finalize) once every node runs {target}: raises cluster \
         version {active} to what all support (now {common}); no downgrade after it"
    ));
    let mut out = format!(
        "{} upgrade plan ({} steps):",
        match args.strategy {
            Strategy::Rolling => "rolling",
            Strategy::BlueGreen => "blue-green",
            Strategy::Canary => "canary",
        },
        steps.len()
    );
    for (i, step) in steps.iter().enumerate() {
        out.push_str(&format!("\n  {}. {step}", i + 1));
    }
    out
}

fn poller(client: &Client) -> Client {
    client.with_timeout_ms(POLL_TIMEOUT_MS)
}

/// Waits until node `addr` answers, reports `release` (if given), knows a
/// leader and has applied to within `max_lag` of the leader's last log.
async fn wait_caught_up(
    client: &Client,
    addr: &str,
    release: Option<&str>,
    max_lag: u64,
    timeout: Duration,
) -> Result<NodeStatus, String> {
    let poll = poller(client);
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match poll.node_status(addr).await {
            Ok(n) if release.is_some_and(|r| r != n.version) => {
                last = format!("it reports release {}", n.version);
            }
            Ok(n) if !n.has_leader => last = "it knows no leader".into(),
            Ok(n) => {
                last = match poll.cluster_status().await {
                    Ok(s) => {
                        let leader_last = s
                            .nodes
                            .iter()
                            .find(|l| l.node_id == s.leader_id)
                            .map_or(0, |l| l.last_log_index);
                        if leader_last > 0 && n.applied_index + max_lag >= leader_last {
                            return Ok(n);
                        }
                        format!("applied {} of the leader's {leader_last}", n.applied_index)
                    }
                    Err(e) => format!("cluster status: {e}"),
                };
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(format!(
        "node {addr} did not come back caught up within {} ms ({last})",
        timeout.as_millis()
    ))
}

/// Moves leadership away from `id` if it leads, to the voter with the
/// highest matched index; up to three rounds, each on a fresh status (an
/// election may move leadership on its own meanwhile, which is as good).
async fn lead_elsewhere(client: &Client, id: u64) -> Result<(), String> {
    let mut errors = Vec::new();
    for _ in 0..3 {
        let s = client.cluster_status().await.map_err(|e| e.to_string())?;
        if !(s.has_leader && s.leader_id == id) {
            return Ok(());
        }
        let mut others: Vec<&NodeStatus> = s
            .nodes
            .iter()
            .filter(|n| n.voter && n.node_id != id && n.error.is_empty())
            .collect();
        others.sort_by_key(|n| (std::cmp::Reverse(n.matched_index), n.node_id));
        for n in others {
            match client.transfer_leader(n.node_id).await {
                Ok(r) => {
                    progress(&format!(
                        "leadership moved from node {id} to node {} (term {})",
                        r.leader_id, r.term
                    ));
                    return Ok(());
                }
                Err(e) => errors.push(format!("node {}: {e}", n.node_id)),
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(format!(
        "no voter took leadership from node {id}: {}",
        errors.join("; ")
    ))
}

fn run_hook(hook: &str, id: u64, addr: &str) -> Result<(), String> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(hook)
        .env("TALLY_NODE_ID", id.to_string())
        .env("TALLY_NODE_ADDR", addr)
        .status()
        .map_err(|e| format!("restart hook for node {id}: {e}"))?;
    if !status.success() {
        return Err(format!("restart hook for node {id} failed ({status})"));
    }
    Ok(())
}

async fn rolling(
    client: &Client,
    args: &UpgradeArgs,
    status: &ClusterStatus,
) -> Result<Outcome, String> {
    let timeout = Duration::from_millis(args.node_timeout_ms);
    let mut done = Vec::new();
    for (id, addr, _) in rolling_order(status) {
        let now = poller(client).node_status(&addr).await.ok();
        if let (Some(r), Some(n)) = (&args.release, &now)
            && *r == n.version
        {
            progress(&format!("node {id} already runs {r}: skipped"));
            continue;
        }
        lead_elsewhere(client, id).await?;
        match &args.restart_hook {
            Some(hook) => {
                progress(&format!(
                    "restarting node {id} ({addr}) with the restart hook"
                ));
                let (hook, addr2) = (hook.clone(), addr.clone());
                tokio::task::spawn_blocking(move || run_hook(&hook, id, &addr2))
                    .await
                    .map_err(|e| format!("restart hook task: {e}"))??;
            }
            None => progress(&format!(
                "restart node {id} ({addr}) on the new binary now (SIGTERM, same data dir); \
                 waiting up to {} s",
                timeout.as_secs()
            )),
        }
        let back = wait_caught_up(
            client,
            &addr,
            args.release.as_deref(),
            args.max_lag,
            timeout,
        )
        .await?;
        progress(&format!(
            "node {id} is back on release {} (supports cluster version {}), applied {}",
            back.version,
            back.max_cluster_version.max(1),
            back.applied_index
        ));
        done.push(id);
    }
    let (active, common, _) = crate::render::cluster_versions(
        &client
            .cluster_status()
            .await
            .map_err(|e| e.to_string())?
            .nodes,
    );
    Ok(Outcome::Ok {
        text: format!(
            "rolled {} node(s): {done:?}; cluster version {active} active, every member \
             supports up to {common}{}",
            done.len(),
            if common > active && !args.finalize {
                ": finalize with `tallyctl cluster finalize`"
            } else {
                ""
            }
        ),
        json: json!({"status": "ok", "action": "upgrade", "strategy": "rolling", "restarted": done,
                     "cluster_version": active, "supported_by_all": common}),
    })
}

async fn step(
    what: String,
    call: impl Future<Output = Result<impl Sized, ClientError>>,
) -> Result<(), String> {
    progress(&what);
    call.await.map(|_| ()).map_err(|e| format!("{what}: {e}"))
}

async fn blue_green(
    client: &Client,
    args: &UpgradeArgs,
    status: &ClusterStatus,
) -> Result<Outcome, String> {
    let green: BTreeSet<u64> = args.green.iter().map(|g| g.node_id).collect();
    let members: BTreeSet<u64> = status
        .voters
        .iter()
        .chain(&status.learners)
        .map(|m| m.node_id)
        .collect();
    for g in &args.green {
        if !members.contains(&g.node_id) {
            step(
                format!("adding node {} ({}) as a learner", g.node_id, g.addr),
                client.add_learner(g.node_id, g.addr.clone()),
            )
            .await?;
        }
    }
    for g in &args.green {
        if !status.voters.iter().any(|v| v.node_id == g.node_id) {
            step(
                format!("promoting node {} once it caught up", g.node_id),
                client.promote(g.node_id),
            )
            .await?;
        }
    }
    if args.strategy == Strategy::Canary {
        return canary_watch(client, args).await;
    }
    step(
        format!("moving leadership to node {}", args.green[0].node_id),
        client.transfer_leader(args.green[0].node_id),
    )
    .await?;
    let mut removed = Vec::new();
    for m in status.voters.iter().chain(&status.learners) {
        if !green.contains(&m.node_id) {
            step(
                format!("removing blue node {}", m.node_id),
                client.remove(m.node_id, false),
            )
            .await?;
            removed.push(m.node_id);
        }
    }
    Ok(Outcome::Ok {
        text: format!(
            "blue-green done: green nodes {:?} serve, blue nodes {removed:?} removed (stop \
             them); finalize with `tallyctl cluster finalize`",
            green
        ),
        json: json!({"status": "ok", "action": "upgrade", "strategy": "blue-green",
                     "green": green, "removed": removed}),
    })
}

/// Blue-green or canary rollback: leadership to a non-green voter, then
/// every green node removed.
async fn roll_back(client: &Client, args: &UpgradeArgs) -> Result<Outcome, String> {
    let green: BTreeSet<u64> = args.green.iter().map(|g| g.node_id).collect();
    let s = client.cluster_status().await.map_err(|e| e.to_string())?;
    let blue: Vec<&NodeStatus> = s
        .nodes
        .iter()
        .filter(|n| n.voter && !green.contains(&n.node_id) && n.error.is_empty())
        .collect();
    let Some(to) = blue
        .iter()
        .max_by_key(|n| (n.matched_index, std::cmp::Reverse(n.node_id)))
    else {
        return Err("no reachable old (blue) voter is left: too late to roll back".into());
    };
    if s.has_leader && green.contains(&s.leader_id) {
        step(
            format!("moving leadership back to node {}", to.node_id),
            client.transfer_leader(to.node_id),
        )
        .await?;
    }
    let mut removed = Vec::new();
    for m in s.voters.iter().chain(&s.learners) {
        if green.contains(&m.node_id) {
            step(
                format!("removing green node {}", m.node_id),
                client.remove(m.node_id, false),
            )
            .await?;
            removed.push(m.node_id);
        }
    }
    Ok(Outcome::Ok {
        text: format!(
            "rolled back: green nodes {removed:?} removed (stop them); {} old voter(s) serve",
            blue.len()
        ),
        json: json!({"status": "ok", "action": "rollback", "removed": removed}),
    })
}

/// Watches the canary for `--observe-s`: it must answer, know a leader,
/// stay within `--max-lag` and have the leader's state hash whenever both
/// were seen at the same applied index.
async fn canary_watch(client: &Client, args: &UpgradeArgs) -> Result<Outcome, String> {
    let canary = &args.green[0];
    let poll = poller(client);
    let until = Instant::now() + Duration::from_secs(args.observe_s);
    progress(&format!(
        "watching canary node {} for {} s",
        canary.node_id, args.observe_s
    ));
    let (mut samples, mut max_lag, mut problems) = (0u64, 0u64, Vec::new());
    let mut leader_hashes: BTreeMap<u64, String> = BTreeMap::new();
    let mut canary_hashes: BTreeMap<u64, String> = BTreeMap::new();
    while Instant::now() < until {
        tokio::time::sleep(POLL_INTERVAL).await;
        samples += 1;
        let s = match poll.cluster_status().await {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("cluster status: {e}"));
                continue;
            }
        };
        let leader = s.nodes.iter().find(|n| n.node_id == s.leader_id);
        let Some(c) = s
            .nodes
            .iter()
            .find(|n| n.node_id == canary.node_id && n.error.is_empty())
        else {
            problems.push(format!("canary node {} unreachable", canary.node_id));
            continue;
        };
        if let Some(l) = leader {
            let lag = l.last_log_index.saturating_sub(c.applied_index);
            max_lag = max_lag.max(lag);
            if lag > args.max_lag {
                problems.push(format!("canary {lag} entries behind"));
            }
            for (map, n) in [(&mut leader_hashes, l), (&mut canary_hashes, c)] {
                if map.len() < 10_000 {
                    map.insert(n.applied_index, n.state_hash.clone());
                }
            }
        }
    }
    let mut compared = 0u64;
    for (index, hash) in &canary_hashes {
        if let Some(other) = leader_hashes.get(index) {
            compared += 1;
            if other != hash {
                problems.push(format!(
                    "state hash differs from the leader's at index {index}"
                ));
            }
        }
    }
    let text = format!(
        "canary node {}: {samples} samples, max lag {max_lag} entries, {compared} state hash \
         comparisons at equal indexes, {} problem(s){}",
        canary.node_id,
        problems.len(),
        if problems.is_empty() {
            ": healthy; continue the upgrade"
        } else {
            ": roll back with --rollback"
        }
    );
    let json = json!({"status": if problems.is_empty() {"ok"} else {"degraded"}, "action": "canary",
        "samples": samples, "max_lag": max_lag, "hash_comparisons": compared, "problems": problems});
    if problems.is_empty() {
        return Ok(Outcome::Ok { text, json });
    }
    problems.dedup();
    Ok(Outcome::Warn {
        exit: EXIT_DEGRADED,
        line: format!("canary problems: {}", problems.join("; ")),
        text,
        json,
    })
}
