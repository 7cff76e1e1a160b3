//! [`WriteResult`]: the three possible outcomes of a write, and how a failed
//! call turns into one of them.
//!
//! The rule that matters: an outcome is only `Rejected` when it is certain
//! the command changed nothing. Anything after which the command might have
//! been applied (timeouts, lost connections, errors after the request may
//! have reached a node) is `Unknown`, never "failed": retrying with the same
//! `command_id` is always safe and returns the original outcome.

use tally_proto::v1::CommandResult;
use tonic::Code;

use crate::error::{code_name, reasons};
use crate::retry::{CallFailure, FailureKind};

/// The outcome of one write command.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteResult {
    /// The command is applied. `result.duplicate` is true when an earlier
    /// submission of the same id applied it (nothing was applied again); a
    /// duplicate carries no events: they came with the first reply.
    Applied {
        /// The engine's result, with the events (balance changes, holds, fills).
        result: CommandResult,
        /// The Raft log index of the entry that applied it; pass it to
        /// [`crate::ReadOptions::at_least_index`] for read-your-writes.
        applied_index: u64,
    },
    /// Definite: the command changed nothing. Either the engine refused it
    /// (e.g. `INSUFFICIENT_FUNDS`; `result` is the engine's result and a
    /// retry with the same id returns the same refusal), or the request was
    /// malformed (gRPC `INVALID_ARGUMENT`, `reason` from `tally-reason`,
    /// e.g. `MALFORMED_DECIMAL`, `AMOUNT_TOO_LARGE`, `BAD_PRECISION`; or
    /// caught locally: `INVALID_COMMAND_ID`, `MISSING_FIELD`), or no node
    /// could even be connected to ([`reasons::NOT_SENT`]: refused, timed out,
    /// DNS failure, or a peer that is no gRPC server, such as an HTTP port;
    /// the command was never sent; it may be submitted again).
    Rejected {
        /// Machine-readable reason.
        reason: String,
        /// Human-readable detail.
        message: String,
        /// The engine's result, or one made up by the client (`applied` false, no events).
        result: CommandResult,
    },
    /// The command may or may not have been applied (timeout or lost
    /// connection after it may have reached a node). Retry with the same
    /// `command_id` to learn the outcome. Never report this as failed.
    Unknown {
        /// The id to retry with.
        command_id: String,
        /// The last error seen.
        last_error: String,
    },
}

impl WriteResult {
    /// The command id.
    pub fn command_id(&self) -> &str {
        match self {
            WriteResult::Applied { result, .. } | WriteResult::Rejected { result, .. } => {
                &result.command_id
            }
            WriteResult::Unknown { command_id, .. } => command_id,
        }
    }

    /// True for [`WriteResult::Applied`].
    pub fn is_applied(&self) -> bool {
        matches!(self, WriteResult::Applied { .. })
    }

    /// True for [`WriteResult::Rejected`].
    pub fn is_rejected(&self) -> bool {
        matches!(self, WriteResult::Rejected { .. })
    }

    /// True for [`WriteResult::Unknown`].
    pub fn is_unknown(&self) -> bool {
        matches!(self, WriteResult::Unknown { .. })
    }

    /// The applied index of an applied command.
    pub fn applied_index(&self) -> Option<u64> {
        match self {
            WriteResult::Applied { applied_index, .. } => Some(*applied_index),
            _ => None,
        }
    }

    /// The engine's (or synthesized) result, unless the outcome is unknown.
    pub fn result(&self) -> Option<&CommandResult> {
        match self {
            WriteResult::Applied { result, .. } | WriteResult::Rejected { result, .. } => {
                Some(result)
            }
            WriteResult::Unknown { .. } => None,
        }
    }

    /// Classifies one engine result from a successful RPC.
    pub(crate) fn from_engine(result: CommandResult, applied_index: u64) -> WriteResult {
        if result.applied {
            WriteResult::Applied {
                result,
                applied_index,
            }
        } else {
            let reason = if result.reason.is_empty() {
                "REJECTED".to_string()
            } else {
                result.reason.clone()
            };
            WriteResult::Rejected {
                reason,
                message: result.message.clone(),
                result,
            }
        }
    }

    /// A definite refusal made up by the client or the gRPC edge.
    pub(crate) fn rejected(command_id: &str, reason: &str, message: String) -> WriteResult {
        let result = CommandResult {
            command_id: command_id.to_string(),
            applied: false,
            reason: reason.to_string(),
            message: message.clone(),
            duplicate: false,
            events: Vec::new(),
        };
        WriteResult::Rejected {
            reason: reason.to_string(),
            message,
            result,
        }
    }

    /// Classifies a call that ended without a successful RPC.
    pub(crate) fn from_failure(command_id: &str, failure: &CallFailure) -> WriteResult {
        match &failure.kind {
            FailureKind::Refused {
                code,
                reason,
                message,
            } => {
                let reason = if reason.is_empty() {
                    code_name(*code)
                } else {
                    reason.as_str()
                };
                // INVALID_ARGUMENT is decided from the request bytes alone, so
                // an earlier attempt with the same bytes cannot have applied.
                // Any other refusal only proves that this attempt did nothing.
                if *code == Code::InvalidArgument || !failure.uncertain {
                    WriteResult::rejected(command_id, reason, message.clone())
                } else {
                    WriteResult::Unknown {
                        command_id: command_id.to_string(),
                        last_error: format!(
                            "{}; an earlier attempt may have applied",
                            failure.last_error
                        ),
                    }
                }
            }
            FailureKind::Exhausted if failure.uncertain => WriteResult::Unknown {
                command_id: command_id.to_string(),
                last_error: failure.last_error.clone(),
            },
            FailureKind::Exhausted => WriteResult::rejected(
                command_id,
                reasons::NOT_SENT,
                format!(
                    "could not connect to any node ({}); the command was not sent",
                    failure.last_error
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: FailureKind, uncertain: bool) -> CallFailure {
        CallFailure {
            kind,
            uncertain,
            last_error: "last".into(),
            timeout_ms: 100,
        }
    }

    fn refused(code: Code) -> FailureKind {
        FailureKind::Refused {
            code,
            reason: String::new(),
            message: "m".into(),
        }
    }

    #[test]
    fn engine_results() {
        let applied = CommandResult {
            command_id: "a".into(),
            applied: true,
            ..CommandResult::default()
        };
        let r = WriteResult::from_engine(applied, 9);
        assert!(r.is_applied());
        assert_eq!(r.applied_index(), Some(9));
        assert_eq!(r.command_id(), "a");
        let refused = CommandResult {
            command_id: "b".into(),
            applied: false,
            reason: "INSUFFICIENT_FUNDS".into(),
            message: "needs 2".into(),
            ..CommandResult::default()
        };
        match WriteResult::from_engine(refused, 9) {
            WriteResult::Rejected {
                reason, message, ..
            } => {
                assert_eq!(
                    (reason.as_str(), message.as_str()),
                    ("INSUFFICIENT_FUNDS", "needs 2")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failures_are_unknown_unless_certain() {
        // Never reached a node: certain it did not apply.
        let r = WriteResult::from_failure("c", &failure(FailureKind::Exhausted, false));
        assert!(matches!(&r, WriteResult::Rejected { reason, .. } if reason == reasons::NOT_SENT));
        // Reached a node and then ran out of time: unknown.
        let r = WriteResult::from_failure("c", &failure(FailureKind::Exhausted, true));
        assert!(r.is_unknown());
        assert_eq!(r.command_id(), "c");
        // Malformed request: definite even after earlier uncertain attempts.
        let r = WriteResult::from_failure("c", &failure(refused(Code::InvalidArgument), true));
        assert!(matches!(&r, WriteResult::Rejected { reason, .. } if reason == "INVALID_ARGUMENT"));
        // Another refusal is definite only if no earlier attempt was uncertain.
        let r = WriteResult::from_failure("c", &failure(refused(Code::FailedPrecondition), false));
        assert!(r.is_rejected());
        let r = WriteResult::from_failure("c", &failure(refused(Code::FailedPrecondition), true));
        assert!(r.is_unknown());
    }
}
