//! Tally's gRPC protocol, package `tally.v1`: the generated messages, clients
//! and servers for the `Ledger`, `Perps`, `Admin`, `Kafka` and `Raft` services.

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
/// gRPC metadata key a client sets on a write to ask a follower not to
/// forward it: the follower then answers `NOT_LEADER` with `tally-leader`, so
/// the client learns the leader. Followers also set it on the one hop they
/// forward a write, so a write is never forwarded twice.
pub const NO_FORWARD_METADATA_KEY: &str = "tally-forwarded";
/// Largest number of commands in one `SubmitBatch` request.
pub const MAX_BATCH_COMMANDS: usize = 4096;
