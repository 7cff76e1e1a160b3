//! gRPC error statuses with Tally's machine-readable reason (metadata
//! `tally-reason`) and, when known, the leader's address (`tally-leader`).

use tally_proto::{LEADER_METADATA_KEY, REASON_METADATA_KEY};
use tonic::{Code, Status};

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
