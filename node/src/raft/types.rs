//! The openraft type configuration: what a Raft log entry carries (a batch of
//! ledger commands stamped with the leader's clock) and what applying it returns.

use std::fmt;

use serde::{Deserialize, Serialize};
use tally_ledger::{ApplyResult, Envelope};

/// Raft node id. Never reused within a cluster.
pub type NodeId = u64;

/// A node's address: host:port of its gRPC listener (Raft, Ledger and Admin services).
pub type Node = openraft::BasicNode;

/// Largest number of ledger commands coalesced into one Raft entry.
pub const MAX_ENTRY_COMMANDS: usize = 4096;

/// The payload of one Raft entry: commands from one or more clients (group
/// commit), applied in order, all at the leader's timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRequest {
    /// Wall-clock milliseconds at the leader when the entry was proposed.
    /// The engine never reads a clock; this is its only notion of time.
    pub timestamp_ms: u64,
    pub commands: Vec<Envelope>,
}

impl fmt::Display for EntryRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EntryRequest(t={}, n={})",
            self.timestamp_ms,
            self.commands.len()
        )
    }
}

/// The outcome of applying one entry: one result per command, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryResponse {
    pub results: Vec<ApplyResult>,
}

openraft::declare_raft_types!(
    /// Tally's Raft types.
    pub TypeConfig:
        D = EntryRequest,
        R = EntryResponse,
        NodeId = NodeId,
        Node = Node,
);

pub type Raft = openraft::Raft<TypeConfig, crate::raft::state_machine::StateMachineStore>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// A snapshot as bytes: a bincode `SnapshotBody` (see `state_machine`).
pub type SnapshotData = std::io::Cursor<Vec<u8>>;
