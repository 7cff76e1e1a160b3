//! [`ClientError`]: why a read or admin call did not return a value, and the
//! canonical names of the reasons the client itself produces.
//!
//! Writes do not use this type for their outcome: see [`crate::WriteResult`].

use tonic::Code;

/// Machine-readable reasons produced by the client or the server's gRPC edge
/// (the engine's own rejection reasons, e.g. `INSUFFICIENT_FUNDS`, come from
/// the server in `CommandResult.reason`).
pub mod reasons {
    /// A follower refused and (maybe) named the leader in `tally-leader`.
    pub const NOT_LEADER: &str = "NOT_LEADER";
    /// No leader is known (election in progress).
    pub const NO_LEADER: &str = "NO_LEADER";
    /// The request is malformed (e.g. a bad decimal string); nothing changed.
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    /// The object read does not exist.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// The server gave up waiting (e.g. for commit); the outcome is unknown.
    pub const TIMEOUT: &str = "TIMEOUT";
    /// The command id is empty, longer than 64 bytes or not printable ASCII.
    pub const INVALID_COMMAND_ID: &str = "INVALID_COMMAND_ID";
    /// A required field (e.g. the command body) is missing.
    pub const MISSING_FIELD: &str = "MISSING_FIELD";
    /// A batch has more than `MAX_BATCH_COMMANDS` commands.
    pub const BATCH_TOO_LARGE: &str = "BATCH_TOO_LARGE";
    /// Client-side: no node could be connected to before the deadline, so
    /// the command was never sent. It did not apply; retrying it is safe.
    pub const NOT_SENT: &str = "NOT_SENT";
    /// The node was removed from the cluster and serves nothing
    /// (`UNAVAILABLE`); nothing was applied. The client tries another node.
    pub const NODE_REMOVED: &str = "NODE_REMOVED";
    /// The Kafka events outbox is at its bound (`RESOURCE_EXHAUSTED`):
    /// nothing was applied; retry once the events topic catches up.
    pub const EVENTS_OUTBOX_FULL: &str = "EVENTS_OUTBOX_FULL";
    /// The caller's certificate (or its absence) does not grant the call
    /// (`PERMISSION_DENIED`): nothing changed, and retrying will not help.
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";

    // ---- reads ----

    /// A bounded read reached a node further behind than the bound allows
    /// (`FAILED_PRECONDITION`). The client tries another node unless the
    /// read was addressed to this one.
    pub const STALE_REPLICA: &str = "STALE_REPLICA";
    /// An at-least-index (or session) read waited 5 s on a node that did not
    /// apply the index (`DEADLINE_EXCEEDED`).
    pub const INDEX_NOT_REACHED: &str = "INDEX_NOT_REACHED";
    /// A linearizable read on a follower waited 5 s without applying the
    /// leader's read index (`DEADLINE_EXCEEDED`).
    pub const READ_INDEX_NOT_APPLIED: &str = "READ_INDEX_NOT_APPLIED";

    // ---- cluster administration ----

    /// Another membership change is running; only one runs at a time
    /// (`FAILED_PRECONDITION`). Nothing changed; retry when it finishes.
    pub const MEMBERSHIP_CHANGE_IN_PROGRESS: &str = "MEMBERSHIP_CHANGE_IN_PROGRESS";
    /// `add-learner`/`replace` with the id of a current member (`ALREADY_EXISTS`).
    pub const NODE_ID_IN_USE: &str = "NODE_ID_IN_USE";
    /// `add-learner`/`replace` with the id of a removed node: ids are never
    /// reused (`ALREADY_EXISTS`).
    pub const NODE_ID_RETIRED: &str = "NODE_ID_RETIRED";
    /// `remove` of the only voter (`FAILED_PRECONDITION`), refused even with force.
    pub const LAST_VOTER: &str = "LAST_VOTER";
    /// `remove` would leave fewer than a majority of the remaining voters
    /// reachable (`FAILED_PRECONDITION`); `force` overrides.
    pub const WOULD_LOSE_QUORUM: &str = "WOULD_LOSE_QUORUM";
    /// `promote` of a node that is not a learner.
    pub const NOT_A_LEARNER: &str = "NOT_A_LEARNER";
    /// `transfer-leader` to a node that is not a voter.
    pub const NOT_A_VOTER: &str = "NOT_A_VOTER";
    /// `transfer-leader`: the target did not take over within the server's
    /// wait (`DEADLINE_EXCEEDED`); another node may lead now.
    pub const TRANSFER_TIMEOUT: &str = "TRANSFER_TIMEOUT";
    /// Leadership transfer refused up front: the target is unreachable or far behind.
    pub const TARGET_NOT_READY: &str = "TARGET_NOT_READY";
    /// `promote`/`replace`: the learner did not catch up within the
    /// server's wait (`DEADLINE_EXCEEDED`); it stays a learner.
    pub const LEARNER_LAGGING: &str = "LEARNER_LAGGING";
    /// `remove`/`replace` of a node that is not a member (`NOT_FOUND`).
    pub const UNKNOWN_NODE: &str = "UNKNOWN_NODE";
}

/// Why a read or admin call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The configuration (or an endpoint string) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No node could be connected to before the deadline: the request was
    /// never sent anywhere.
    #[error("no node reachable: {last_error}")]
    Unavailable {
        /// The last connection error seen.
        last_error: String,
    },
    /// The deadline passed after the request reached at least one node
    /// without a definite answer. For an admin change (add learner, promote,
    /// remove, init) this means it may or may not have taken effect.
    #[error("no answer within {timeout_ms} ms: {last_error}")]
    Timeout {
        /// The call's whole budget.
        timeout_ms: u64,
        /// The last error seen.
        last_error: String,
    },
    /// The requested account, hold or balance does not exist.
    #[error("not found: {message}")]
    NotFound {
        /// The server's explanation.
        message: String,
    },
    /// The request was refused as malformed; nothing changed.
    #[error("invalid argument: {reason}: {message}")]
    InvalidArgument {
        /// Machine-readable reason (`tally-reason`, or `INVALID_ARGUMENT`).
        reason: String,
        /// Human-readable detail.
        message: String,
    },
    /// Any other definite error answer from a node.
    #[error("{}: {reason}: {message}", code_name(*.code))]
    Status {
        /// The gRPC status code.
        code: Code,
        /// Machine-readable reason (`tally-reason`, or the code's name).
        reason: String,
        /// Human-readable detail.
        message: String,
    },
}

impl ClientError {
    /// A stable machine-readable name for this error (for logs and JSON).
    pub fn reason(&self) -> &str {
        match self {
            ClientError::Config(_) => "CONFIG",
            ClientError::Unavailable { .. } => "UNAVAILABLE",
            ClientError::Timeout { .. } => reasons::TIMEOUT,
            ClientError::NotFound { .. } => reasons::NOT_FOUND,
            ClientError::InvalidArgument { reason, .. } | ClientError::Status { reason, .. } => {
                reason
            }
        }
    }

    /// True when a node answered definitely (not found, invalid argument or
    /// another status), as opposed to configuration, connection or timeout
    /// problems.
    pub fn is_definite_answer(&self) -> bool {
        matches!(
            self,
            ClientError::NotFound { .. }
                | ClientError::InvalidArgument { .. }
                | ClientError::Status { .. }
        )
    }
}

/// The canonical SCREAMING_SNAKE name of a gRPC status code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line() {
        let errors = [
            ClientError::Config("no endpoints given".into()),
            ClientError::Unavailable {
                last_error: "a:1: connection refused".into(),
            },
            ClientError::Timeout {
                timeout_ms: 5,
                last_error: "x".into(),
            },
            ClientError::NotFound {
                message: "hold 9".into(),
            },
            ClientError::InvalidArgument {
                reason: "INVALID_ARGUMENT".into(),
                message: "bad amount".into(),
            },
            ClientError::Status {
                code: Code::FailedPrecondition,
                reason: "NOT_INITIALIZED".into(),
                message: "cluster not initialized".into(),
            },
        ];
        for e in errors {
            let s = e.to_string();
            assert!(!s.contains('\n'), "{s}");
            assert!(!e.reason().is_empty());
        }
        let status = ClientError::Status {
            code: Code::FailedPrecondition,
            reason: "R".into(),
            message: "m".into(),
        };
        assert_eq!(status.to_string(), "FAILED_PRECONDITION: R: m");
    }
}
