//! Tally's gRPC protocol, package `tally.v1`: the generated messages, clients
//! and servers for the `Ledger`, `Admin` and `Raft` services.

#![allow(clippy::all)]

/// Generated code for package `tally.v1`.
pub mod v1 {
    tonic::include_proto!("tally.v1");
}

pub use v1::*;

/// gRPC metadata key carrying a machine-readable error reason (e.g. `NOT_LEADER`).
pub const REASON_METADATA_KEY: &str = "tally-reason";
/// gRPC metadata key carrying the current leader's API address when known.
pub const LEADER_METADATA_KEY: &str = "tally-leader";
/// Largest number of commands in one `SubmitBatch` request.
pub const MAX_BATCH_COMMANDS: usize = 4096;
