//! gRPC error statuses with Tally's machine-readable reason (metadata
//! `tally-reason`) and, when known, the leader's address (`tally-leader`).

use tally_proto::{LEADER_METADATA_KEY, REASON_METADATA_KEY};
use tonic::{Code, Status};

use crate::reads::ReadError;

/// A status with a machine-readable reason.
pub fn status(code: Code, reason: &str, message: impl Into<String>) -> Status {
    let mut s = Status::new(code, message.into());
    if let Ok(v) = reason.parse() {
        s.metadata_mut().insert(REASON_METADATA_KEY, v);
    }
    s
}

/// Malformed request: a definite refusal, nothing changed.
pub fn invalid(reason: &str, message: impl Into<String>) -> Status {
    status(Code::InvalidArgument, reason, message)
}

/// This node cannot serve the request; the leader (if known) can.
pub fn not_leader(leader_addr: Option<&str>) -> Status {
    match leader_addr {
        Some(addr) => {
            let mut s = status(
                Code::Unavailable,
                "NOT_LEADER",
                format!("not the leader; the leader is at {addr}"),
            );
            if let Ok(v) = addr.parse() {
                s.metadata_mut().insert(LEADER_METADATA_KEY, v);
            }
            s
        }
        None => status(
            Code::Unavailable,
            "NO_LEADER",
            "no leader is known (election in progress?); retry",
        ),
    }
}

/// This node was removed from the cluster: it serves no client traffic.
pub fn node_removed(node_id: u64) -> Status {
    read_error(ReadError::NodeRemoved { node_id })
}

/// The status for a read that may not be served here: the error's reason in
/// `tally-reason` (none when the node is shutting down) and, for
/// `NotLeader`, the leader's address in `tally-leader`.
pub fn read_error(e: ReadError) -> Status {
    let code = match &e {
        ReadError::NotLeader { leader_addr } => return not_leader(Some(leader_addr)),
        ReadError::NoLeader => return not_leader(None),
        ReadError::LeaderUnreachable(_)
        | ReadError::ReadIndexFailed { .. }
        | ReadError::ShuttingDown
        | ReadError::NodeRemoved { .. } => Code::Unavailable,
        ReadError::ReadIndexNotApplied(_) | ReadError::IndexNotReached(_) => Code::DeadlineExceeded,
        ReadError::StaleByEntries { .. } | ReadError::StaleByTime { .. } => {
            Code::FailedPrecondition
        }
    };
    match e.reason() {
        Some(reason) => status(code, reason, e.to_string()),
        None => Status::new(code, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reads::NotApplied;

    fn parts(s: &Status) -> (Code, Option<&str>, &str, Option<&str>) {
        let meta = |key| s.metadata().get(key).and_then(|v| v.to_str().ok());
        (
            s.code(),
            meta(REASON_METADATA_KEY),
            s.message(),
            meta(LEADER_METADATA_KEY),
        )
    }

    #[test]
    fn read_errors_map_to_the_codes_reasons_and_messages_clients_see() {
        let not_applied = NotApplied {
            node_id: 2,
            index: 40,
            applied: 31,
        };
        let cases = [
            (
                ReadError::NotLeader {
                    leader_addr: "10.0.0.1:50051".into(),
                },
                (
                    Code::Unavailable,
                    Some("NOT_LEADER"),
                    "not the leader; the leader is at 10.0.0.1:50051",
                    Some("10.0.0.1:50051"),
                ),
            ),
            (
                ReadError::NoLeader,
                (
                    Code::Unavailable,
                    Some("NO_LEADER"),
                    "no leader is known (election in progress?); retry",
                    None,
                ),
            ),
            (
                ReadError::LeaderUnreachable("bad address x: invalid".into()),
                (
                    Code::Unavailable,
                    Some("NO_LEADER"),
                    "bad address x: invalid",
                    None,
                ),
            ),
            (
                ReadError::ReadIndexFailed {
                    leader: "10.0.0.1:50051".into(),
                    message: "not leader".into(),
                },
                (
                    Code::Unavailable,
                    Some("NOT_LEADER"),
                    "read index from leader 10.0.0.1:50051: not leader",
                    None,
                ),
            ),
            (
                ReadError::ReadIndexNotApplied(not_applied.clone()),
                (
                    Code::DeadlineExceeded,
                    Some("READ_INDEX_NOT_APPLIED"),
                    "node 2 has not applied index 40 within 5000 ms (applied 31)",
                    None,
                ),
            ),
            (
                ReadError::IndexNotReached(not_applied),
                (
                    Code::DeadlineExceeded,
                    Some("INDEX_NOT_REACHED"),
                    "node 2 has not applied index 40 within 5000 ms (applied 31)",
                    None,
                ),
            ),
            (
                ReadError::StaleByEntries {
                    node_id: 3,
                    lag_entries: 12,
                    bound: 10,
                },
                (
                    Code::FailedPrecondition,
                    Some("STALE_REPLICA"),
                    "node 3 lags 12 entries (bound 10)",
                    None,
                ),
            ),
            (
                ReadError::StaleByTime {
                    node_id: 3,
                    since_ms: Some(750),
                    bound_ms: 500,
                },
                (
                    Code::FailedPrecondition,
                    Some("STALE_REPLICA"),
                    "node 3 last heard from a leader 750 ms ago (bound 500 ms)",
                    None,
                ),
            ),
            (
                ReadError::StaleByTime {
                    node_id: 3,
                    since_ms: None,
                    bound_ms: 500,
                },
                (
                    Code::FailedPrecondition,
                    Some("STALE_REPLICA"),
                    "node 3 last heard from a leader never ago (bound 500 ms)",
                    None,
                ),
            ),
            (
                ReadError::NodeRemoved { node_id: 2 },
                (
                    Code::Unavailable,
                    Some("NODE_REMOVED"),
                    "node 2 was removed from the cluster; ask a current member",
                    None,
                ),
            ),
            (
                ReadError::ShuttingDown,
                (Code::Unavailable, None, "node shutting down", None),
            ),
        ];
        for (error, want) in cases {
            let shown = format!("{error:?}");
            assert_eq!(parts(&read_error(error)), want, "{shown}");
        }
    }
}
