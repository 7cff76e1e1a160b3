//! Turning responses into output, the parts every product area shares:
//! concise aligned text for people and `serde_json` values for `--json`
//! (tables, owners, amounts, read suffixes), write outcomes with their
//! events (balance changes aligned; spot and perps events rendered by their
//! areas), and the `state-hash`, membership and `cluster status` answers.
//! Pure functions, no I/O.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally_client::Owner;
use tally_client::proto::v1::{
    self as pb, ClusterStatus, CommandResult, Event, GetSettingsResponse, GetStateHashResponse,
    Member, MembershipResponse, NodeStatus, event,
};

use crate::{perps, spot};

/// The text of an event this build does not know.
const UNRECOGNIZED_EVENT: &str = "unrecognized event (newer server?)";

/// Characters of the state hash shown in tables.
const HASH_PREFIX_CHARS: usize = 12;

/// Formats rows as columns separated by two spaces; `right` marks the
/// columns to right-align (numbers). Trailing blanks are trimmed.
pub fn table(header: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate().take(columns) {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if right.get(i).copied().unwrap_or(false) {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// An owner for people: `account 7`, `external`, `fees`, `insurance`.
pub(crate) fn owner_text(owner: Option<&pb::Owner>) -> String {
    match owner.and_then(Owner::from_proto) {
        Some(owner) => owner.to_string(),
        None => "unknown owner".to_string(),
    }
}

/// An owner for `--json`: `{"kind": "account", "account": 7}`, `{"kind": "fees"}`, ...
pub(crate) fn owner_json(owner: Option<&pb::Owner>) -> Value {
    match owner.and_then(Owner::from_proto) {
        Some(Owner::Account(id)) => json!({"kind": "account", "account": id}),
        Some(Owner::InWallet(id, wallet)) => {
            json!({"kind": "account", "account": id, "wallet": wallet.as_str()})
        }
        Some(Owner::External) => json!({"kind": "external"}),
        Some(Owner::Fees) => json!({"kind": "fees"}),
        Some(Owner::Insurance) => json!({"kind": "insurance"}),
        None => Value::Null,
    }
}

fn is_zero(amount: &str) -> bool {
    amount.is_empty() || Decimal::from_str(amount).is_ok_and(|d| d.is_zero())
}

/// `+1.5`, `-1.5` or `0`.
fn signed(delta: &str) -> String {
    if is_zero(delta) {
        "0".to_string()
    } else if delta.starts_with('-') || delta.starts_with('+') {
        delta.to_string()
    } else {
        format!("+{delta}")
    }
}

/// A balance's change, unambiguous: `0 -> 1.5 (+1.5)` (old -> new, then the
/// delta), `1.5 (unchanged)`, or `+1.5 = 1.5` (delta = new) when the old
/// value cannot be worked out.
pub(crate) fn change_text(delta: &str, new: &str) -> String {
    let new = or_zero(new);
    if is_zero(delta) {
        return format!("{new} (unchanged)");
    }
    let delta = signed(delta);
    match old_value(&delta, new) {
        Some(old) => format!("{old} -> {new} ({delta})"),
        None => format!("{delta} = {new}"),
    }
}

/// `new - delta`, written with as many decimal places as `new` (the node
/// writes amounts at their asset's scale), or more if needed.
fn old_value(delta: &str, new: &str) -> Option<String> {
    let d = Decimal::from_str_exact(delta.strip_prefix('+').unwrap_or(delta)).ok()?;
    let n = Decimal::from_str_exact(new).ok()?;
    let mut old = n.checked_sub(d)?.normalize();
    if old.scale() < n.scale() {
        old.rescale(n.scale());
    }
    Some(old.to_string())
}

pub(crate) fn or_zero(amount: &str) -> &str {
    if amount.is_empty() { "0" } else { amount }
}

/// `-` for an empty (unknown or absent) value.
pub(crate) fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Appends each line on a line of its own, indented by two spaces.
pub(crate) fn push_indented<S: AsRef<str>>(out: &mut String, lines: impl IntoIterator<Item = S>) {
    for line in lines {
        out.push_str("\n  ");
        out.push_str(line.as_ref());
    }
}

/// The lines describing an applied command's events, balance changes aligned.
pub fn event_lines(events: &[Event]) -> Vec<String> {
    let mut balances: Vec<(usize, [String; 4])> = Vec::new();
    let mut lines: Vec<Option<String>> = Vec::new();
    for event in events {
        let text = match &event.kind {
            Some(event::Kind::Balance(b)) => {
                balances.push((
                    lines.len(),
                    [
                        owner_text(b.owner.as_ref()),
                        b.asset.clone(),
                        change_text(&b.available_delta, &b.available),
                        change_text(&b.locked_delta, &b.locked),
                    ],
                ));
                lines.push(None);
                continue;
            }
            Some(event::Kind::DedupWindowSet(w)) => format!(
                "dedup window set to {} ms (from the next command on)",
                w.window_ms
            ),
            Some(kind) => spot::render::event_text(kind)
                .or_else(|| perps::render::event_text(kind))
                .or_else(|| crate::acct::render::event_text(kind))
                .unwrap_or_else(|| UNRECOGNIZED_EVENT.to_string()),
            None => UNRECOGNIZED_EVENT.to_string(),
        };
        lines.push(Some(text));
    }
    let mut widths = [0usize; 4];
    for (_, cells) in &balances {
        for (w, cell) in widths.iter_mut().zip(cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for (at, [owner, asset, available, locked]) in balances {
        lines[at] = Some(format!(
            "{owner:<w0$}  {asset:<w1$}  available {available:<w2$}  locked {locked}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        ));
    }
    lines.into_iter().flatten().collect()
}

pub fn event_json(event: &Event) -> Value {
    match &event.kind {
        Some(event::Kind::Balance(b)) => json!({
            "type": "balance",
            "owner": owner_json(b.owner.as_ref()),
            "asset": b.asset,
            "available_delta": or_zero(&b.available_delta),
            "locked_delta": or_zero(&b.locked_delta),
            "available": or_zero(&b.available),
            "locked": or_zero(&b.locked),
        }),
        Some(event::Kind::DedupWindowSet(w)) => {
            json!({"type": "dedup_window_set", "window_ms": w.window_ms})
        }
        Some(kind) => spot::render::event_json(kind)
            .or_else(|| perps::render::event_json(kind))
            .or_else(|| crate::acct::render::event_json(kind))
            .unwrap_or_else(|| json!({"type": "unknown"})),
        None => json!({"type": "unknown"}),
    }
}

/// Human text of an applied command.
pub fn applied_text(result: &CommandResult, applied_index: u64) -> String {
    let mut out = format!("applied {} at index {applied_index}", result.command_id);
    if result.duplicate {
        out.push_str(
            " (duplicate: applied by an earlier submission, nothing applied again; \
             its events came with that first reply)",
        );
    }
    push_indented(&mut out, event_lines(&result.events));
    out
}

pub fn applied_json(result: &CommandResult, applied_index: u64) -> Value {
    json!({
        "status": "applied",
        "command_id": result.command_id,
        "applied_index": applied_index,
        "duplicate": result.duplicate,
        "events": result.events.iter().map(event_json).collect::<Vec<_>>(),
    })
}

/// Where a read was served: `(index 42, node 2)`.
pub(crate) fn read_suffix(applied_index: u64, served_by: u64) -> String {
    format!("(index {applied_index}, node {served_by})")
}

pub fn state_hash_text(r: &GetStateHashResponse) -> String {
    format!(
        "{}  index {}  node {}  accounts {}  open holds {}",
        r.state_hash, r.applied_index, r.served_by, r.accounts, r.open_holds
    )
}

/// A duration in ms for people: `86400000 ms (24 h)`, `90000 ms (1.5 min)`.
fn ms_text(ms: u64) -> String {
    let unit = [(3_600_000, "h"), (60_000, "min"), (1_000, "s")]
        .into_iter()
        .find(|(per, _)| ms >= *per);
    match unit {
        Some((per, name)) if ms.is_multiple_of(per) => format!("{ms} ms ({} {name})", ms / per),
        Some((per, name)) => format!("{ms} ms ({}.{} {name})", ms / per, ms % per * 10 / per),
        None => format!("{ms} ms"),
    }
}

pub fn settings_text(r: &GetSettingsResponse) -> String {
    format!(
        "dedup window:      {} (set-dedup-window accepts {} to {})\n\
         dedup table:       {} of at most {} command ids (new commands are refused with \
         DEDUP_TABLE_FULL at the bound)\n{}",
        ms_text(r.dedup_window_ms),
        ms_text(r.min_dedup_window_ms),
        ms_text(r.max_dedup_window_ms),
        r.dedup_entries,
        r.dedup_max_entries,
        read_suffix(r.applied_index, r.served_by),
    )
}

pub fn settings_json(r: &GetSettingsResponse) -> Value {
    json!({
        "dedup_window_ms": r.dedup_window_ms,
        "min_dedup_window_ms": r.min_dedup_window_ms,
        "max_dedup_window_ms": r.max_dedup_window_ms,
        "dedup_entries": r.dedup_entries,
        "dedup_max_entries": r.dedup_max_entries,
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn state_hash_json(r: &GetStateHashResponse) -> Value {
    json!({
        "state_hash": r.state_hash,
        "applied_index": r.applied_index,
        "served_by": r.served_by,
        "accounts": r.accounts,
        "open_holds": r.open_holds,
    })
}

fn members_json(members: &[Member]) -> Value {
    Value::Array(
        members
            .iter()
            .map(|m| json!({"node_id": m.node_id, "addr": m.addr}))
            .collect(),
    )
}

fn members_text(members: &[Member]) -> String {
    if members.is_empty() {
        return "none".to_string();
    }
    members
        .iter()
        .map(|m| format!("{}={}", m.node_id, m.addr))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn membership_text(action: &str, r: &MembershipResponse) -> String {
    format!(
        "{action} at log index {}\nvoters:   {}\nlearners: {}",
        r.log_index,
        members_text(&r.voters),
        members_text(&r.learners)
    )
}

pub fn membership_json(action: &str, r: &MembershipResponse) -> Value {
    json!({
        "status": "ok",
        "action": action,
        "log_index": r.log_index,
        "voters": members_json(&r.voters),
        "learners": members_json(&r.learners),
    })
}

pub fn node_status_json(n: &NodeStatus) -> Value {
    json!({
        "node_id": n.node_id,
        "addr": n.addr,
        "role": n.role,
        "voter": n.voter,
        "term": n.term,
        "leader_id": n.leader_id,
        "has_leader": n.has_leader,
        "last_log_index": n.last_log_index,
        "applied_index": n.applied_index,
        "committed_index": n.committed_index,
        "snapshot_index": n.snapshot_index,
        "purged_index": n.purged_index,
        "matched_index": n.matched_index,
        "cluster_id": n.cluster_id,
        "version": n.version,
        "max_cluster_version": n.max_cluster_version.max(1),
        "cluster_version": n.cluster_version.max(1),
        "commit": n.commit,
        "state_hash": n.state_hash,
        "data_size_bytes": n.data_size_bytes,
        "removed": n.removed,
        "leader_contact_ms": n.leader_contact_ms,
        "error": n.error,
    })
}

/// Whether a node's status is an answer (not an unreachable placeholder).
fn answered(n: &NodeStatus) -> bool {
    n.error.is_empty() && n.role != "unreachable"
}

/// Why the cluster the leader reports is degraded (empty: healthy): no
/// leader, a voter unreachable, or a voter more than `max_lag` entries
/// behind the leader's last log index (see [`lag`]).
pub fn cluster_problems(s: &ClusterStatus, max_lag: u64) -> Vec<String> {
    let mut problems = Vec::new();
    if !s.has_leader {
        problems.push("no leader".to_string());
    }
    let leader_id = s.has_leader.then_some(s.leader_id);
    let leader_last_log = leader_last_log(&s.nodes, leader_id);
    for voter in &s.voters {
        let status = s.nodes.iter().find(|n| n.node_id == voter.node_id);
        match status.filter(|n| answered(n)) {
            None => {
                let why = status
                    .map(|n| n.error.as_str())
                    .filter(|e| !e.is_empty())
                    .unwrap_or("no answer");
                problems.push(format!(
                    "voter {} ({}) unreachable: {why}",
                    voter.node_id, voter.addr
                ));
            }
            Some(n) => {
                if let Some(l) = lag(n, leader_last_log).filter(|l| *l > max_lag) {
                    problems.push(format!(
                        "voter {} lags {l} entries behind the leader (bound {max_lag})",
                        voter.node_id
                    ));
                }
            }
        }
    }
    problems
}

/// How stale a node's own view is, for people: when it last heard from a leader.
pub fn staleness_text(n: &NodeStatus) -> String {
    if n.role == "leader" {
        return format!("node {} says it leads (term {})", n.node_id, n.term);
    }
    match n.leader_contact_ms {
        Some(ms) => format!(
            "node {} ({}): last heard from a leader {ms} ms ago",
            n.node_id, n.role
        ),
        None => format!(
            "node {} ({}): has not heard from a leader since it started",
            n.node_id, n.role
        ),
    }
}

/// The leader's last log index, if the leader is among `nodes` and answered.
fn leader_last_log(nodes: &[NodeStatus], leader_id: Option<u64>) -> Option<u64> {
    nodes
        .iter()
        .find(|n| Some(n.node_id) == leader_id && n.error.is_empty() && n.role == "leader")
        .map(|n| n.last_log_index)
}

/// Without the leader's view of the cluster: the first node in `nodes` that
/// says it leads, and its last log index (if it answered).
fn self_declared_leader(nodes: &[NodeStatus]) -> (Option<u64>, Option<u64>) {
    let leader_id = nodes.iter().find(|n| n.role == "leader").map(|n| n.node_id);
    (leader_id, leader_last_log(nodes, leader_id))
}

/// Each node's JSON with its `lag` (null when unknown or unreachable).
fn nodes_json(nodes: &[NodeStatus], leader_last_log: Option<u64>) -> Vec<Value> {
    nodes
        .iter()
        .map(|n| {
            let mut value = node_status_json(n);
            let reachable = n.error.is_empty() && n.role != "unreachable";
            value["lag"] = match lag(n, leader_last_log).filter(|_| reachable) {
                Some(l) => json!(l),
                None => Value::Null,
            };
            value
        })
        .collect()
}

pub fn cluster_json(s: &ClusterStatus) -> Value {
    let leader_id = s.has_leader.then_some(s.leader_id);
    json!({
        "source": "leader",
        "cluster_version": {
            "active": cluster_versions(&s.nodes).0,
            "supported_by_all": cluster_versions(&s.nodes).1,
        },
        "leader_id": s.leader_id,
        "has_leader": s.has_leader,
        "term": s.term,
        "voters": members_json(&s.voters),
        "learners": members_json(&s.learners),
        "nodes": nodes_json(&s.nodes, leader_last_log(&s.nodes, leader_id)),
    })
}

/// One row of the cluster table, before formatting.
struct Row<'a> {
    node_id: u64,
    addr: &'a str,
    status: Option<&'a NodeStatus>,
    membership: &'static str,
}

/// Entries node `n` has yet to apply compared with the leader's log: the
/// leader's last log index minus the node's applied index (`None` without a
/// leader to compare with).
pub fn lag(n: &NodeStatus, leader_last_log: Option<u64>) -> Option<u64> {
    leader_last_log.map(|last| last.saturating_sub(n.applied_index))
}

/// A byte count for people: `512 B`, `1.5 KiB`, `20.0 MiB`, `3.2 GiB`
/// (one decimal, truncated; integer arithmetic only).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut scale: u128 = 1024;
    while unit + 1 < UNITS.len() && u128::from(bytes) >= scale * 1024 {
        scale *= 1024;
        unit += 1;
    }
    let tenths = u128::from(bytes) * 10 / scale;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// The cluster table. `leader_id` (if any) is marked with `*`; the lag is
/// the leader's last log index minus the node's applied index (see [`lag`]).
fn nodes_table(
    rows: &[Row<'_>],
    leader_id: Option<u64>,
    leader_last_log: Option<u64>,
) -> (String, Vec<String>) {
    let mut cells = Vec::with_capacity(rows.len());
    let mut notes = Vec::new();
    for row in rows {
        let mark = if Some(row.node_id) == leader_id {
            "*"
        } else {
            ""
        };
        // Node ids start at 1; 0 means the node never said who it is.
        let id = match row.node_id {
            0 => "?".to_string(),
            n => format!("{n}{mark}"),
        };
        let Some(n) = row
            .status
            .filter(|n| n.error.is_empty() && n.role != "unreachable")
        else {
            if let Some(err) = row
                .status
                .map(|n| n.error.as_str())
                .filter(|e| !e.is_empty())
            {
                notes.push(format!("node {}: {}", row.node_id, err));
            }
            let mut r = vec![id, row.addr.to_string(), "unreachable".to_string()];
            r.push(row.membership.to_string());
            r.extend(std::iter::repeat_n("-".to_string(), 8));
            cells.push(r);
            continue;
        };
        let lag = lag(n, leader_last_log).map_or_else(|| "-".to_string(), |l| l.to_string());
        let hash: String = n.state_hash.chars().take(HASH_PREFIX_CHARS).collect();
        cells.push(vec![
            id,
            if n.addr.is_empty() { row.addr } else { &n.addr }.to_string(),
            n.role.clone(),
            row.membership.to_string(),
            n.term.to_string(),
            n.last_log_index.to_string(),
            n.applied_index.to_string(),
            lag,
            n.snapshot_index.to_string(),
            human_bytes(n.data_size_bytes),
            or_dash(&n.version).to_string(),
            or_dash(&hash).to_string(),
        ]);
    }
    let header = [
        "NODE",
        "ADDR",
        "ROLE",
        "MEMBER",
        "TERM",
        "LAST LOG",
        "APPLIED",
        "LAG",
        "SNAPSHOT",
        "DATA",
        "VERSION",
        "STATE HASH",
    ];
    let right = [
        false, false, false, false, true, true, true, true, true, true, false, false,
    ];
    (table(&header, &cells, &right), notes)
}

fn membership_of(
    voters: &[Member],
    learners: &[Member],
    node_id: u64,
    voter_flag: Option<bool>,
) -> &'static str {
    if voters.iter().any(|m| m.node_id == node_id) {
        "voter"
    } else if learners.iter().any(|m| m.node_id == node_id) {
        "learner"
    } else {
        match voter_flag {
            Some(true) => "voter",
            Some(false) => "learner",
            None => "-",
        }
    }
}

/// The cluster as the leader reports it.
pub fn cluster_text(s: &ClusterStatus) -> String {
    // Every member plus any node the leader reported that is not a member.
    let mut order: BTreeMap<u64, (&str, Option<&NodeStatus>)> = BTreeMap::new();
    for m in s.voters.iter().chain(&s.learners) {
        order.insert(m.node_id, (m.addr.as_str(), None));
    }
    for n in &s.nodes {
        let entry = order.entry(n.node_id).or_insert((n.addr.as_str(), None));
        entry.1 = Some(n);
    }
    let rows: Vec<Row<'_>> = order
        .iter()
        .map(|(id, (addr, status))| Row {
            node_id: *id,
            addr,
            status: *status,
            membership: membership_of(&s.voters, &s.learners, *id, status.map(|n| n.voter)),
        })
        .collect();
    let leader_id = s.has_leader.then_some(s.leader_id);
    let leader_last_log = leader_last_log(&s.nodes, leader_id);
    let headline = match leader_id {
        Some(id) => format!("leader: node {id}, term {}", s.term),
        None => format!("no leader, term {}", s.term),
    };
    let (table, notes) = nodes_table(&rows, leader_id, leader_last_log);
    let mut out = format!("{headline}\n{table}");
    for note in notes {
        out.push('\n');
        out.push_str(&note);
    }
    out.push('\n');
    out.push_str(&cluster_version_line(&s.nodes));
    out
}

/// The active cluster version (the highest any answering node applied),
/// the highest version every answering member supports, and whether every
/// node answered. Nodes of a release before cluster versions report 0:
/// version 1.
pub fn cluster_versions(nodes: &[NodeStatus]) -> (u32, u32, bool) {
    let answering: Vec<&NodeStatus> = nodes.iter().filter(|n| answered(n)).collect();
    let active = answering
        .iter()
        .map(|n| n.cluster_version.max(1))
        .max()
        .unwrap_or(1);
    let common = answering
        .iter()
        .map(|n| n.max_cluster_version.max(1))
        .min()
        .unwrap_or(1);
    (active, common, answering.len() == nodes.len())
}

/// e.g. `cluster version 1 active; every member supports up to 2: ready to
/// finalize (tallyctl cluster finalize)`.
pub fn cluster_version_line(nodes: &[NodeStatus]) -> String {
    let (active, common, all) = cluster_versions(nodes);
    let mut line = format!("cluster version {active} active; every member supports up to {common}");
    if common > active && all {
        line.push_str(": ready to finalize (tallyctl cluster finalize)");
    }
    line
}

/// Each node's own view, when no leader could answer for the cluster.
/// `views` pairs each endpoint with its status or error.
pub fn node_views_text(views: &[(String, Result<NodeStatus, String>)]) -> String {
    let unreachable: Vec<NodeStatus> = views
        .iter()
        .map(|(addr, r)| match r {
            Ok(n) => n.clone(),
            Err(e) => NodeStatus {
                addr: addr.clone(),
                role: "unreachable".to_string(),
                error: e.clone(),
                ..NodeStatus::default()
            },
        })
        .collect();
    let (leader_id, leader_last_log) = self_declared_leader(&unreachable);
    let rows: Vec<Row<'_>> = unreachable
        .iter()
        .map(|n| Row {
            node_id: n.node_id,
            addr: &n.addr,
            status: Some(n),
            membership: if n.error.is_empty() {
                if n.voter { "voter" } else { "learner" }
            } else {
                "-"
            },
        })
        .collect();
    let (table, _) = nodes_table(&rows, leader_id, leader_last_log);
    let mut out = table;
    for (addr, r) in views {
        match r {
            Ok(n) => out.push_str(&format!("\n{}", staleness_text(n))),
            Err(e) => out.push_str(&format!("\n{addr}: unreachable: {e}")),
        }
    }
    out
}

pub fn node_views_json(
    views: &[(String, Result<NodeStatus, String>)],
    cluster_error: &str,
) -> Value {
    let answered: Vec<NodeStatus> = views
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect();
    let (_, leader_last_log) = self_declared_leader(&answered);
    json!({
        "source": "nodes",
        "cluster_error": cluster_error,
        "nodes": views.iter().map(|(addr, r)| match r {
            Ok(n) => nodes_json(std::slice::from_ref(n), leader_last_log).remove(0),
            Err(e) => json!({"addr": addr, "role": "unreachable", "error": e, "lag": null}),
        }).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::{BalanceChange, FillEvent, HoldEvent};

    fn balance(owner: Owner, asset: &str, ad: &str, a: &str, ld: &str, l: &str) -> Event {
        Event {
            kind: Some(event::Kind::Balance(BalanceChange {
                owner: Some(owner.to_proto()),
                asset: asset.into(),
                available_delta: ad.into(),
                locked_delta: ld.into(),
                available: a.into(),
                locked: l.into(),
            })),
        }
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "NUM"],
            &[
                vec!["long-name".into(), "1".into()],
                vec!["x".into(), "100".into()],
            ],
            &[false, true],
        );
        assert_eq!(t, "A          NUM\nlong-name    1\nx          100");
    }

    #[test]
    fn applied_write_lists_balance_changes_one_per_line() {
        let result = CommandResult {
            command_id: "tc-1".into(),
            applied: true,
            duplicate: true,
            events: vec![
                balance(Owner::Account(7), "BTC", "1.5", "1.5", "0", "0"),
                balance(Owner::External, "BTC", "-1.5", "-1.5", "", ""),
                Event {
                    kind: Some(event::Kind::Hold(HoldEvent {
                        hold: 9,
                        account: 7,
                        asset: "BTC".into(),
                        remaining: "0".into(),
                        closed: true,
                    })),
                },
                Event {
                    kind: Some(event::Kind::Fill(FillEvent {
                        buyer: 1,
                        seller: 2,
                        base_asset: "BTC".into(),
                        quote_asset: "USDT".into(),
                        base_amount: "0.5".into(),
                        quote_amount: "15000".into(),
                        buyer_fee: "".into(),
                        seller_fee: "15".into(),
                    })),
                },
            ],
            ..CommandResult::default()
        };
        let text = applied_text(&result, 42);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("applied tc-1 at index 42 (duplicate"));
        assert_eq!(
            lines[1],
            "  account 7  BTC  available 0.0 -> 1.5 (+1.5)   locked 0 (unchanged)"
        );
        assert_eq!(
            lines[2],
            "  external   BTC  available 0.0 -> -1.5 (-1.5)  locked 0 (unchanged)"
        );
        assert_eq!(lines[3], "  hold 9 (account 7, BTC) remaining 0, closed");
        assert!(lines[4].contains("buyer 1 fee 0 BTC, seller 2 fee 15 USDT"));
        let j = applied_json(&result, 42);
        assert_eq!(j["status"], "applied");
        assert_eq!(j["duplicate"], true);
        assert_eq!(j["events"][1]["owner"]["kind"], "external");
        assert_eq!(j["events"][1]["locked"], "0");
    }

    #[test]
    fn dedup_window_event_renders_as_text_and_json() {
        let result = CommandResult {
            command_id: "w-1".into(),
            applied: true,
            events: vec![Event {
                kind: Some(event::Kind::DedupWindowSet(pb::DedupWindowSetEvent {
                    window_ms: 600_000,
                })),
            }],
            ..CommandResult::default()
        };
        let text = applied_text(&result, 7);
        assert!(
            text.ends_with("\n  dedup window set to 600000 ms (from the next command on)"),
            "{text}"
        );
        let j = applied_json(&result, 7);
        assert_eq!(j["events"][0]["type"], "dedup_window_set");
        assert_eq!(j["events"][0]["window_ms"], 600_000);
    }

    #[test]
    fn cluster_table_marks_leader_and_lag() {
        let node = |id: u64, role: &str, last: u64, applied: u64| NodeStatus {
            node_id: id,
            addr: format!("127.0.0.1:5005{id}"),
            role: role.into(),
            term: 3,
            last_log_index: last,
            applied_index: applied,
            committed_index: last,
            matched_index: last,
            voter: true,
            state_hash: "0123456789abcdef0123".into(),
            snapshot_index: 40,
            data_size_bytes: 3 * 1024 * 1024 + 512 * 1024,
            version: "0.1.0".into(),
            ..NodeStatus::default()
        };
        let member = |id: u64| Member {
            node_id: id,
            addr: format!("127.0.0.1:5005{id}"),
        };
        let mut down = node(3, "unreachable", 0, 0);
        down.error = "connection refused".into();
        let status = ClusterStatus {
            leader_id: 1,
            has_leader: true,
            term: 3,
            voters: vec![member(1), member(2), member(3)],
            learners: vec![member(4)],
            nodes: vec![
                node(1, "leader", 100, 100),
                node(2, "follower", 97, 95),
                down,
            ],
        };
        let text = cluster_text(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "leader: node 1, term 3");
        assert!(lines[1].starts_with("NODE"));
        assert!(lines[2].starts_with("1*"), "{text}");
        assert!(lines[2].contains("0123456789ab"));
        assert!(!lines[2].contains("0123456789abc"));
        assert!(
            lines[1].contains("LAG") && lines[1].contains("DATA") && lines[1].contains("VERSION")
        );
        assert!(
            lines[2].contains("3.5 MiB") && lines[2].contains("0.1.0"),
            "{text}"
        );
        // Lag: the leader's last log (100) minus the node's applied index (95).
        assert!(
            lines[3].contains("follower") && lines[3].contains(" 5 "),
            "{text}"
        );
        assert!(lines[4].contains("unreachable"));
        assert!(lines[5].starts_with("4") && lines[5].contains("learner"));
        assert_eq!(lines[6], "node 3: connection refused");
        let j = cluster_json(&status);
        assert_eq!(j["nodes"][2]["error"], "connection refused");
        assert_eq!(j["nodes"][0]["lag"], 0);
        assert_eq!(j["nodes"][1]["lag"], 5);
        assert_eq!(j["nodes"][2]["lag"], Value::Null);
        assert_eq!(
            j["nodes"][1]["data_size_bytes"],
            3 * 1024 * 1024 + 512 * 1024
        );
    }

    #[test]
    fn settings_render_the_window_and_the_dedup_bound() {
        let r = GetSettingsResponse {
            dedup_window_ms: 86_400_000,
            min_dedup_window_ms: 1_000,
            max_dedup_window_ms: 604_800_000,
            dedup_entries: 12,
            dedup_max_entries: 50_000_000,
            applied_index: 42,
            served_by: 2,
        };
        assert_eq!(
            settings_text(&r),
            "dedup window:      86400000 ms (24 h) (set-dedup-window accepts 1000 ms (1 s) to \
             604800000 ms (168 h))\n\
             dedup table:       12 of at most 50000000 command ids (new commands are refused \
             with DEDUP_TABLE_FULL at the bound)\n\
             (index 42, node 2)"
        );
        assert_eq!(ms_text(90_000), "90000 ms (1.5 min)");
        assert_eq!(ms_text(500), "500 ms");
        let j = settings_json(&r);
        assert_eq!(j["dedup_window_ms"], 86_400_000);
        assert_eq!(j["dedup_max_entries"], 50_000_000);
    }

    #[test]
    fn cluster_problems_name_no_leader_unreachable_and_lagging_voters() {
        let member = |id: u64| Member {
            node_id: id,
            addr: format!("h:{id}"),
        };
        let node = |id: u64, role: &str, last: u64, applied: u64| NodeStatus {
            node_id: id,
            role: role.into(),
            last_log_index: last,
            applied_index: applied,
            ..NodeStatus::default()
        };
        let mut s = ClusterStatus {
            leader_id: 1,
            has_leader: true,
            term: 3,
            voters: vec![member(1), member(2), member(3)],
            learners: vec![member(4)],
            nodes: vec![
                node(1, "leader", 5000, 5000),
                node(2, "follower", 5000, 4000),
                node(3, "follower", 5000, 5000),
                NodeStatus {
                    error: "timed out".into(),
                    ..node(4, "unreachable", 0, 0)
                },
            ],
        };
        // A lag of exactly the bound is fine; an unreachable learner is no problem.
        assert_eq!(cluster_problems(&s, 1000), Vec::<String>::new());
        assert_eq!(
            cluster_problems(&s, 999),
            vec!["voter 2 lags 1000 entries behind the leader (bound 999)".to_string()]
        );
        s.nodes[2] = NodeStatus {
            error: "connection refused".into(),
            ..node(3, "unreachable", 0, 0)
        };
        assert_eq!(
            cluster_problems(&s, 1000),
            vec!["voter 3 (h:3) unreachable: connection refused".to_string()]
        );
        s.has_leader = false;
        assert_eq!(cluster_problems(&s, 1000)[0], "no leader");
    }

    #[test]
    fn balance_changes_read_old_to_new_then_delta() {
        assert_eq!(change_text("+5980", "9020"), "3040 -> 9020 (+5980)");
        assert_eq!(change_text("-5980", "9020"), "15000 -> 9020 (-5980)");
        assert_eq!(change_text("5980", "15000"), "9020 -> 15000 (+5980)");
        assert_eq!(change_text("0.2", "0.5"), "0.3 -> 0.5 (+0.2)");
        assert_eq!(
            change_text("-0.5", "0.00000000"),
            "0.50000000 -> 0.00000000 (-0.5)"
        );
        assert_eq!(change_text("1.25", "1.25"), "0.00 -> 1.25 (+1.25)");
        assert_eq!(change_text("-1.25", "0"), "1.25 -> 0 (-1.25)");
        assert_eq!(change_text("0", "7"), "7 (unchanged)");
        assert_eq!(change_text("", ""), "0 (unchanged)");
        // No old value to be had: delta = new.
        assert_eq!(change_text("x", "7"), "+x = 7");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(20 * 1024 * 1024), "20.0 MiB");
        assert!(human_bytes(u64::MAX).ends_with("PiB"));
    }

    #[test]
    fn node_views_without_leader() {
        let views = vec![
            (
                "a:1".to_string(),
                Ok(NodeStatus {
                    node_id: 1,
                    addr: "a:1".into(),
                    role: "candidate".into(),
                    voter: true,
                    ..NodeStatus::default()
                }),
            ),
            ("b:2".to_string(), Err("no node reachable".to_string())),
        ];
        let text = node_views_text(&views);
        assert!(text.contains("candidate"));
        let third = text.lines().nth(2).unwrap_or_default();
        assert!(third.starts_with("?  "), "{text}");
        assert!(
            text.contains("b:2: unreachable: no node reachable"),
            "{text}"
        );
        assert!(
            text.contains("node 1 (candidate): has not heard from a leader since it started"),
            "{text}"
        );
        let mut stale = views.clone();
        if let Ok(n) = &mut stale[0].1 {
            n.role = "follower".into();
            n.leader_contact_ms = Some(3400);
        }
        assert!(
            node_views_text(&stale)
                .contains("node 1 (follower): last heard from a leader 3400 ms ago"),
            "{text}"
        );
        let j = node_views_json(&views, "x");
        assert_eq!(j["nodes"][1]["role"], "unreachable");
    }
}
