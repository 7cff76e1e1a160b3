//! Executing a parsed command line: builds the client, hands spot and perps
//! commands to their areas and runs the rest (`state-hash`, `cluster`,
//! `ledger`) here, with the plumbing every area shares: the exit codes, the
//! [`Outcome`] (text, JSON and exit code) of writes and calls, Ctrl-C
//! handling. `cluster status --watch` prints as it goes and ends in
//! [`Outcome::Printed`].

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::{Value, json};
use tally_client::proto::v1::{
    Command, GetSettingsResponse, GetStateHashResponse, Member, MembershipResponse, NodeStatus,
};
use tally_client::{
    Client, ClientConfig, ClientError, CommandExt, ReadOptions, WriteResult, commands, reasons,
};

use crate::args::{Cli, ClusterCmd, Cmd, LedgerCmd, ReadArgs, WriteArgs};
use crate::{perps, render, spot};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: usage, configuration or connection error.
pub const EXIT_ERROR: u8 = 1;
/// Exit status: the cluster refused (rejected write, invalid argument, not found).
pub const EXIT_REJECTED: u8 = 2;
/// Exit status: a write's (or membership change's) outcome is unknown.
pub const EXIT_UNKNOWN: u8 = 3;
/// Exit status: `cluster status` answered, and the cluster is degraded (no
/// leader, a voter unreachable or lagging beyond `--max-lag`).
pub const EXIT_DEGRADED: u8 = 4;

/// What to print and how to exit.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Success: text for stdout, or the JSON object with `--json`.
    Ok { text: String, json: Value },
    /// Failure: one line for stderr (already prefixed), the JSON object for
    /// stdout with `--json`, and the exit status.
    Fail { exit: u8, line: String, json: Value },
    /// An answer that is bad news (`cluster status` of a degraded cluster):
    /// text (or JSON) for stdout as with `Ok`, one line for stderr, and a
    /// non-zero exit status.
    Warn {
        exit: u8,
        text: String,
        json: Value,
        line: String,
    },
    /// Success whose output was already printed (`cluster status --watch`).
    Printed,
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Ok { .. } | Outcome::Printed => EXIT_OK,
            Outcome::Fail { exit, .. } | Outcome::Warn { exit, .. } => *exit,
        }
    }

    /// A failure with the usual JSON object: status `error`, the exit code,
    /// a machine-readable reason and the error message.
    pub fn error(exit: u8, line: String, reason: &str, error: &str) -> Outcome {
        Outcome::Fail {
            exit,
            line,
            json: json!({"status": "error", "exit_code": exit, "reason": reason, "error": error}),
        }
    }

    /// A usage error found after parsing (contradicting flags).
    pub fn usage(message: &str) -> Outcome {
        Outcome::error(EXIT_ERROR, format!("error: {message}"), "USAGE", message)
    }

    /// Ctrl-C stopped a call; `change` marks calls that change the cluster
    /// (their outcome is then unknown).
    pub fn interrupted(change: bool) -> Outcome {
        let exit = if change { EXIT_UNKNOWN } else { EXIT_ERROR };
        let mut line = "error: interrupted".to_string();
        if change {
            line.push_str("; the change may or may not have taken effect");
        }
        Outcome::error(exit, line, "INTERRUPTED", "interrupted")
    }
}

/// The exit status of a write outcome.
pub fn write_exit_code(result: &WriteResult) -> u8 {
    match result {
        WriteResult::Applied { .. } => EXIT_OK,
        WriteResult::Rejected { reason, .. } if reason == reasons::NOT_SENT => EXIT_ERROR,
        WriteResult::Rejected { .. } => EXIT_REJECTED,
        WriteResult::Unknown { .. } => EXIT_UNKNOWN,
    }
}

/// The exit status of a failed read or admin call; `change` marks calls
/// that change the cluster (their timeouts are unknown outcomes).
pub fn error_exit_code(error: &ClientError, change: bool) -> u8 {
    match error {
        ClientError::Config(_) | ClientError::Unavailable { .. } => EXIT_ERROR,
        ClientError::Timeout { .. } if change => EXIT_UNKNOWN,
        ClientError::Timeout { .. } => EXIT_ERROR,
        ClientError::NotFound { .. }
        | ClientError::InvalidArgument { .. }
        | ClientError::Status { .. } => EXIT_REJECTED,
    }
}

pub fn write_outcome(result: &WriteResult) -> Outcome {
    let exit = write_exit_code(result);
    match result {
        WriteResult::Applied {
            result,
            applied_index,
        } => Outcome::Ok {
            text: render::applied_text(result, *applied_index),
            json: render::applied_json(result, *applied_index),
        },
        WriteResult::Rejected {
            reason, message, ..
        } if reason == reasons::NOT_SENT => Outcome::Fail {
            exit,
            line: format!(
                "error: {message} (command {}; safe to retry)",
                result.command_id()
            ),
            json: json!({
                "status": "not_sent",
                "exit_code": exit,
                "command_id": result.command_id(),
                "reason": reason,
                "error": message,
            }),
        },
        WriteResult::Rejected {
            reason,
            message,
            result: command_result,
        } => Outcome::Fail {
            exit,
            line: format!("rejected: {reason}: {message}"),
            json: json!({
                "status": "rejected",
                "exit_code": exit,
                "command_id": command_result.command_id,
                "reason": reason,
                "message": message,
                "duplicate": command_result.duplicate,
            }),
        },
        WriteResult::Unknown {
            command_id,
            last_error,
        } => Outcome::Fail {
            exit,
            line: format!(
                "error: outcome unknown: command {command_id} may or may not have applied \
                 (last error: {last_error}); retry with --id {command_id}"
            ),
            json: json!({
                "status": "unknown",
                "exit_code": exit,
                "command_id": command_id,
                "error": last_error,
            }),
        },
    }
}

pub fn error_outcome(error: &ClientError, change: bool) -> Outcome {
    let exit = error_exit_code(error, change);
    let mut line = format!("error: {error}");
    if exit == EXIT_UNKNOWN {
        line.push_str(
            "; the change may or may not have taken effect (check `tallyctl cluster status`)",
        );
    }
    Outcome::error(exit, line, error.reason(), &error.to_string())
}

pub(crate) fn read_options(read: &ReadArgs) -> Result<ReadOptions, Outcome> {
    read.options().map_err(|m| Outcome::usage(&m))
}

pub(crate) fn with_id(command: Command, write: &WriteArgs) -> Command {
    match &write.id {
        Some(id) => command.with_id(id.clone()),
        None => command,
    }
}

/// Submits a write; Ctrl-C makes the outcome unknown (it may be in flight).
pub(crate) async fn submit(client: &Client, command: Command) -> Outcome {
    let command_id = command.id().to_string();
    let result = tokio::select! {
        result = client.submit(command) => result,
        _ = tokio::signal::ctrl_c() => WriteResult::Unknown {
            command_id,
            last_error: "interrupted".to_string(),
        },
    };
    write_outcome(&result)
}

/// Runs a non-write call; Ctrl-C aborts it.
pub(crate) async fn interruptible<T>(
    call: impl Future<Output = Result<T, ClientError>>,
    change: bool,
    done: impl FnOnce(T) -> Outcome,
) -> Outcome {
    tokio::select! {
        result = call => match result {
            Ok(value) => done(value),
            Err(error) => error_outcome(&error, change),
        },
        _ = tokio::signal::ctrl_c() => Outcome::interrupted(change),
    }
}

/// Runs a read at the consistency its flags ask for (contradicting flags
/// are a usage error); Ctrl-C aborts it.
pub(crate) async fn run_read<T, F>(
    read: &ReadArgs,
    call: impl FnOnce(ReadOptions) -> F,
    done: impl FnOnce(T) -> Outcome,
) -> Outcome
where
    F: Future<Output = Result<T, ClientError>>,
{
    match read_options(read) {
        Ok(options) => interruptible(call(options), false, done).await,
        Err(outcome) => outcome,
    }
}

pub async fn run(cli: Cli) -> Outcome {
    let json = cli.json;
    let tls = match (&cli.tls_ca, &cli.tls_cert, &cli.tls_key) {
        (None, None, None) => None,
        (Some(ca), cert, key) => {
            let identity = cert.as_deref().zip(key.as_deref());
            match tally_client::ClientTls::from_files(ca, identity) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    return error_outcome(&ClientError::Config(format!("TLS: {e}")), false);
                }
            }
        }
        (None, _, _) => {
            return error_outcome(
                &ClientError::Config("--tls-cert needs --tls-ca (the cluster CA) too".into()),
                false,
            );
        }
    };
    let config = ClientConfig {
        timeout_ms: cli.effective_timeout_ms(),
        connect_timeout_ms: cli.connect_timeout_ms,
        tls,
        ..ClientConfig::new(cli.endpoints.0)
    };
    let client = match Client::new(config) {
        Ok(client) => client,
        Err(error) => return error_outcome(&error, false),
    };
    match cli.command {
        Cmd::Spot(cmd) => spot::run::run(&client, cmd).await,
        Cmd::StateHash { node, read } => {
            let done = |r: GetStateHashResponse| Outcome::Ok {
                text: render::state_hash_text(&r),
                json: render::state_hash_json(&r),
            };
            match node {
                Some(node) => run_read(&read, |o| client.state_hash_at(&node, o), done).await,
                None => run_read(&read, |o| client.state_hash(o), done).await,
            }
        }
        Cmd::Cluster(cmd) => cluster(&client, cmd, json).await,
        Cmd::Perps(cmd) => perps::run::run(&client, cmd).await,
        Cmd::Acct(cmd) => crate::acct::run::run(&client, cmd).await,
        Cmd::Ingest(cmd) => crate::ingest::run(&client, cmd).await,
        Cmd::Backup { out } => crate::backup::run(&client, out).await,
        Cmd::Ledger(LedgerCmd::Settings { read }) => {
            let done = |r: GetSettingsResponse| Outcome::Ok {
                text: render::settings_text(&r),
                json: render::settings_json(&r),
            };
            run_read(&read, |o| client.settings(o), done).await
        }
        Cmd::Ledger(LedgerCmd::SetDedupWindow { window_ms, write }) => {
            submit(
                &client,
                with_id(commands::set_dedup_window(window_ms), &write),
            )
            .await
        }
    }
}

async fn cluster(client: &Client, cmd: ClusterCmd, json: bool) -> Outcome {
    match cmd {
        ClusterCmd::Init {
            members,
            ok_if_initialized,
        } => {
            let members: Vec<Member> = members
                .into_iter()
                .map(|m| Member {
                    node_id: m.node_id,
                    addr: m.addr,
                })
                .collect();
            let count = members.len();
            let call = async {
                match client.init(members).await {
                    Ok(()) => Ok(true),
                    Err(ClientError::Status { reason, .. })
                        if ok_if_initialized && reason == "ALREADY_INITIALIZED" =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            };
            interruptible(call, true, |fresh| {
                if fresh {
                    Outcome::Ok {
                        text: format!("cluster initialized with {count} voter(s)"),
                        json: json!({"status": "ok", "action": "init", "voters": count}),
                    }
                } else {
                    Outcome::Ok {
                        text: "cluster already initialized; nothing changed".to_string(),
                        json: json!({"status": "ok", "action": "init", "already_initialized": true}),
                    }
                }
            })
            .await
        }
        ClusterCmd::AddLearner { node_id, addr } => {
            let action = format!("node {node_id} added as learner");
            membership_change(client.add_learner(node_id, addr), &action, "add_learner").await
        }
        ClusterCmd::Promote { node_id } => {
            let action = format!("node {node_id} promoted to voter");
            membership_change(client.promote(node_id), &action, "promote").await
        }
        ClusterCmd::Remove { node_id, force } => {
            let action = format!("node {node_id} removed");
            membership_change(client.remove(node_id, force), &action, "remove").await
        }
        ClusterCmd::Replace {
            old_id,
            new_id,
            addr,
            force,
        } => {
            let action = format!("node {old_id} replaced by node {new_id}");
            let call = client.replace(old_id, new_id, addr, force);
            membership_change(call, &action, "replace").await
        }
        ClusterCmd::TransferLeader { node_id } => {
            interruptible(client.transfer_leader(node_id), true, |r| Outcome::Ok {
                text: format!("node {} leads (term {})", r.leader_id, r.term),
                json: json!({"status": "ok", "action": "transfer_leader", "leader_id": r.leader_id, "term": r.term}),
            })
            .await
        }
        ClusterCmd::Finalize { version, dry_run } => {
            crate::upgrade::finalize(client, version.unwrap_or(0), dry_run).await
        }
        ClusterCmd::Upgrade(args) => crate::upgrade::upgrade(client, args).await,
        ClusterCmd::Snapshot { node } => per_node(client, node, NodeOp::Snapshot).await,
        ClusterCmd::Compact { node } => per_node(client, node, NodeOp::Compact).await,
        ClusterCmd::Status {
            watch: false,
            max_lag,
            ..
        } => cluster_status(client, max_lag).await,
        ClusterCmd::Status {
            watch: true,
            interval_ms,
            max_lag,
        } => watch_status(client, interval_ms, max_lag, json).await,
    }
}

/// Runs a membership change; `action` says what it did for people, `name`
/// for `--json`.
async fn membership_change(
    call: impl Future<Output = Result<MembershipResponse, ClientError>>,
    action: &str,
    name: &str,
) -> Outcome {
    interruptible(call, true, |r| Outcome::Ok {
        text: render::membership_text(action, &r),
        json: render::membership_json(name, &r),
    })
    .await
}

/// A maintenance operation run on individual nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeOp {
    Snapshot,
    Compact,
}

impl NodeOp {
    fn name(self) -> &'static str {
        match self {
            NodeOp::Snapshot => "snapshot",
            NodeOp::Compact => "compact",
        }
    }

    /// Runs on one node; the text and JSON of a success.
    async fn run(self, client: &Client, endpoint: &str) -> Result<(String, Value), ClientError> {
        match self {
            NodeOp::Snapshot => client.snapshot(endpoint).await.map(|r| {
                (
                    format!("{endpoint}: snapshot at index {}", r.snapshot_index),
                    json!({"node": endpoint, "snapshot_index": r.snapshot_index}),
                )
            }),
            NodeOp::Compact => client.compact(endpoint).await.map(|r| {
                (
                    format!(
                        "{endpoint}: log purged up to index {} (snapshot at {})",
                        r.purged_index, r.snapshot_index
                    ),
                    json!({"node": endpoint, "purged_index": r.purged_index, "snapshot_index": r.snapshot_index}),
                )
            }),
        }
    }
}

/// Runs `op` on `node`, or on every configured endpoint in turn. Fails
/// (with the worst exit status) if any node failed, listing every node.
async fn per_node(client: &Client, node: Option<String>, op: NodeOp) -> Outcome {
    let targets: Vec<String> = match node {
        Some(node) => vec![node],
        None => client.endpoints().to_vec(),
    };
    let mut lines = Vec::with_capacity(targets.len());
    let mut nodes = Vec::with_capacity(targets.len());
    let mut failures: Vec<String> = Vec::new();
    let mut exit = EXIT_OK;
    for endpoint in &targets {
        let result = tokio::select! {
            result = op.run(client, endpoint) => result,
            _ = tokio::signal::ctrl_c() => return Outcome::interrupted(false),
        };
        match result {
            Ok((text, value)) => {
                lines.push(text);
                nodes.push(value);
            }
            Err(error) => {
                exit = exit.max(error_exit_code(&error, false));
                failures.push(format!("{endpoint}: {error}"));
                nodes.push(
                    json!({"node": endpoint, "reason": error.reason(), "error": error.to_string()}),
                );
            }
        }
    }
    if failures.is_empty() {
        return Outcome::Ok {
            text: lines.join("\n"),
            json: json!({"status": "ok", "action": op.name(), "nodes": nodes}),
        };
    }
    Outcome::Fail {
        exit,
        line: format!(
            "error: {} failed on {} of {} node(s): {}",
            op.name(),
            failures.len(),
            targets.len(),
            failures.join("; ")
        ),
        json: json!({
            "status": "error",
            "exit_code": exit,
            "action": op.name(),
            "reason": "NODE_FAILED",
            "error": failures.join("; "),
            "nodes": nodes,
        }),
    }
}

/// `cluster status --watch`: one status per interval until Ctrl-C. On a
/// terminal the screen is redrawn; otherwise (and with --json, one object
/// per line) each refresh is appended. Errors are shown and watching goes on.
async fn watch_status(client: &Client, interval_ms: u64, max_lag: u64, json: bool) -> Outcome {
    let interval = Duration::from_millis(interval_ms);
    // A refresh may not take longer than the interval (or the timeout).
    let per_refresh = client.with_timeout_ms(client.timeout_ms().min(interval_ms.max(500)));
    let terminal = std::io::stdout().is_terminal();
    let mut refresh: u64 = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        refresh += 1;
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            outcome = cluster_status(&per_refresh, max_lag) => outcome,
            _ = &mut ctrl_c => return Outcome::Printed,
        };
        let frame = watch_frame(&outcome, json, refresh, interval_ms);
        let mut out = std::io::stdout().lock();
        let clear = if terminal && !json {
            "\x1b[H\x1b[2J"
        } else {
            ""
        };
        let separator = if terminal || json || refresh == 1 {
            ""
        } else {
            "\n"
        };
        let written = writeln!(out, "{clear}{separator}{frame}").and_then(|()| out.flush());
        drop(out);
        if written.is_err() {
            // stdout closed (e.g. `| head`): nothing more to show.
            return Outcome::Printed;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + interval) => {}
            _ = &mut ctrl_c => return Outcome::Printed,
        }
    }
}

/// One refresh of `--watch`: a header line and the status (or its error);
/// with --json, the status object with `refresh` added, on one line.
pub fn watch_frame(outcome: &Outcome, json: bool, refresh: u64, interval_ms: u64) -> String {
    if json {
        let mut value = match outcome {
            Outcome::Ok { json, .. } | Outcome::Fail { json, .. } | Outcome::Warn { json, .. } => {
                json.clone()
            }
            Outcome::Printed => json!({}),
        };
        if let Some(object) = value.as_object_mut() {
            object.insert("refresh".to_string(), json!(refresh));
        }
        return value.to_string();
    }
    let body = match outcome {
        Outcome::Ok { text, .. } => text.clone(),
        Outcome::Fail { line, .. } => line.clone(),
        Outcome::Warn { text, line, .. } => format!("{text}\n{line}"),
        Outcome::Printed => String::new(),
    };
    format!("every {interval_ms} ms, refresh {refresh} (Ctrl-C to stop)\n{body}")
}

/// The leader's view; failing that, each configured node's own view,
/// labelled as such. Degraded (exit [`EXIT_DEGRADED`], the problems on
/// stderr and under `problems`): no leader answered, a voter is
/// unreachable, or a voter lags more than `max_lag` entries.
async fn cluster_status(client: &Client, max_lag: u64) -> Outcome {
    let half = (client.timeout_ms() / 2).max(1);
    let error = match client.with_timeout_ms(half).cluster_status().await {
        Ok(status) => {
            let problems = render::cluster_problems(&status, max_lag);
            let mut json = render::cluster_json(&status);
            json["healthy"] = json!(problems.is_empty());
            json["problems"] = json!(problems);
            json["max_lag_entries"] = json!(max_lag);
            return health_outcome(render::cluster_text(&status), json, &problems);
        }
        Err(error) if error.is_definite_answer() => return error_outcome(&error, false),
        Err(error) => error,
    };
    let per_node = client.with_timeout_ms(half);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, endpoint) in client.endpoints().iter().enumerate() {
        let per_node = per_node.clone();
        let endpoint = endpoint.clone();
        tasks.spawn(async move {
            let status = per_node.node_status(&endpoint).await;
            (i, endpoint, status.map_err(|e| e.to_string()))
        });
    }
    let mut views: Vec<(usize, String, Result<NodeStatus, String>)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(view) => views.push(view),
            Err(join_error) => {
                return Outcome::usage(&format!("status task failed: {join_error}"));
            }
        }
    }
    views.sort_by_key(|(i, _, _)| *i);
    let views: Vec<(String, Result<NodeStatus, String>)> =
        views.into_iter().map(|(_, e, s)| (e, s)).collect();
    if views.iter().all(|(_, s)| s.is_err()) {
        return error_outcome(&error, false);
    }
    let problems = vec![format!("no leader answered for the cluster ({error})")];
    let mut json = render::node_views_json(&views, &error.to_string());
    json["healthy"] = json!(false);
    json["problems"] = json!(problems);
    json["max_lag_entries"] = json!(max_lag);
    let text = format!(
        "NOT the leader's view: no leader answered ({error}); each node's own view, \
         possibly stale:\n{}",
        render::node_views_text(&views)
    );
    health_outcome(text, json, &problems)
}

/// `Ok` for a healthy cluster, else `Warn` with exit [`EXIT_DEGRADED`].
fn health_outcome(text: String, json: Value, problems: &[String]) -> Outcome {
    if problems.is_empty() {
        return Outcome::Ok { text, json };
    }
    Outcome::Warn {
        exit: EXIT_DEGRADED,
        text,
        json,
        line: format!("degraded: {}", problems.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tally_client::proto::v1::CommandResult;
    use tonic::Code;

    #[test]
    fn write_exit_codes() {
        let applied = WriteResult::Applied {
            result: CommandResult {
                command_id: "a".into(),
                applied: true,
                ..CommandResult::default()
            },
            applied_index: 3,
        };
        assert_eq!(write_exit_code(&applied), 0);
        let rejected = WriteResult::Rejected {
            reason: "INSUFFICIENT_FUNDS".into(),
            message: "needs 2".into(),
            result: CommandResult::default(),
        };
        assert_eq!(write_exit_code(&rejected), 2);
        match write_outcome(&rejected) {
            Outcome::Fail { line, json, .. } => {
                assert_eq!(line, "rejected: INSUFFICIENT_FUNDS: needs 2");
                assert_eq!(json["status"], "rejected");
            }
            other => panic!("{other:?}"),
        }
        let not_sent = WriteResult::Rejected {
            reason: reasons::NOT_SENT.into(),
            message: "could not connect".into(),
            result: CommandResult {
                command_id: "n".into(),
                ..CommandResult::default()
            },
        };
        assert_eq!(write_exit_code(&not_sent), 1);
        let unknown = WriteResult::Unknown {
            command_id: "tc-9".into(),
            last_error: "timeout".into(),
        };
        assert_eq!(write_exit_code(&unknown), 3);
        match write_outcome(&unknown) {
            Outcome::Fail { line, json, exit } => {
                assert_eq!(exit, 3);
                assert!(line.starts_with("error: "));
                assert!(line.contains("may or may not have applied"));
                assert!(line.contains("--id tc-9"));
                assert!(!line.contains('\n'));
                assert_eq!(json["command_id"], "tc-9");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_exit_codes() {
        let timeout = ClientError::Timeout {
            timeout_ms: 1,
            last_error: "x".into(),
        };
        assert_eq!(error_exit_code(&timeout, false), 1);
        assert_eq!(error_exit_code(&timeout, true), 3);
        let unavailable = ClientError::Unavailable {
            last_error: "x".into(),
        };
        assert_eq!(error_exit_code(&unavailable, true), 1);
        assert_eq!(
            error_exit_code(
                &ClientError::NotFound {
                    message: "h".into()
                },
                false
            ),
            2
        );
        let status = ClientError::Status {
            code: Code::FailedPrecondition,
            reason: "ALREADY_INITIALIZED".into(),
            message: "m".into(),
        };
        assert_eq!(error_exit_code(&status, true), 2);
        assert_eq!(error_exit_code(&ClientError::Config("c".into()), false), 1);
        match error_outcome(&timeout, true) {
            Outcome::Fail { line, .. } => {
                assert!(line.starts_with("error: ") && line.contains("may or may not"));
            }
            other => panic!("{other:?}"),
        }
    }

    fn dead_endpoint() -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        format!("127.0.0.1:{port}")
    }

    async fn run_args(args: &[&str]) -> Outcome {
        let endpoints = dead_endpoint();
        let mut all = vec!["tallyctl", "--endpoints", &endpoints, "--timeout-ms", "200"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all) {
            Ok(cli) => run(cli).await,
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn dead_cluster_outcomes() {
        let out = run_args(&["deposit", "7", "BTC", "1", "--id", "dep-7"]).await;
        assert_eq!(out.exit_code(), EXIT_ERROR);
        match out {
            Outcome::Fail { line, json, .. } => {
                assert!(
                    line.starts_with("error: ") && line.contains("dep-7"),
                    "{line}"
                );
                assert_eq!(json["status"], "not_sent");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(run_args(&["hold", "1"]).await.exit_code(), EXIT_ERROR);
        assert_eq!(
            run_args(&["cluster", "status"]).await.exit_code(),
            EXIT_ERROR
        );
        assert_eq!(
            run_args(&["cluster", "promote", "2"]).await.exit_code(),
            EXIT_ERROR
        );
        let out = run_args(&["hold", "1", "--consistency", "bounded"]).await;
        assert_eq!(out.exit_code(), EXIT_ERROR);
        let out = run_args(&["cluster", "snapshot"]).await;
        assert_eq!(out.exit_code(), EXIT_ERROR);
        match out {
            Outcome::Fail { line, json, .. } => {
                assert!(
                    line.starts_with("error: snapshot failed on 1 of 1 node(s): "),
                    "{line}"
                );
                assert!(!line.contains('\n'));
                assert_eq!(json["nodes"][0]["reason"], "UNAVAILABLE");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            run_args(&["cluster", "transfer-leader", "2"])
                .await
                .exit_code(),
            EXIT_ERROR
        );
    }

    #[test]
    fn interrupted_calls() {
        let read = Outcome::interrupted(false);
        assert_eq!(read.exit_code(), EXIT_ERROR);
        let change = Outcome::interrupted(true);
        assert_eq!(change.exit_code(), EXIT_UNKNOWN);
        match change {
            Outcome::Fail { line, json, .. } => {
                assert!(line.starts_with("error: interrupted; the change may or may not"));
                assert_eq!(json["reason"], "INTERRUPTED");
                assert_eq!(json["exit_code"], EXIT_UNKNOWN);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn watch_frames() {
        let ok = Outcome::Ok {
            text: "leader: node 1, term 2".into(),
            json: json!({"leader_id": 1}),
        };
        let text = watch_frame(&ok, false, 3, 500);
        assert_eq!(
            text,
            "every 500 ms, refresh 3 (Ctrl-C to stop)\nleader: node 1, term 2"
        );
        let line = watch_frame(&ok, true, 3, 500);
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(value["refresh"], 3);
        assert_eq!(value["leader_id"], 1);
        let fail = error_outcome(
            &ClientError::Unavailable {
                last_error: "down".into(),
            },
            false,
        );
        assert!(watch_frame(&fail, false, 1, 100).ends_with("error: no node reachable: down"));
    }
}
