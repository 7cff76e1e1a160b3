//! The openraft type configuration: what a Raft log entry carries (a batch of
//! ledger commands stamped with the leader's clock) and what applying it returns.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};
use tally_ledger::{ApplyResult, Envelope};

use crate::codec;

/// Raft node id. Never reused within a cluster.
pub type NodeId = u64;

/// A node's address: host:port of its gRPC listener (Raft, Ledger and Admin services).
pub type Node = openraft::BasicNode;

/// Largest number of ledger commands coalesced into one Raft entry.
pub const MAX_ENTRY_COMMANDS: usize = 4096;

/// The payload of one Raft entry: commands from one or more clients (group
/// commit), applied in order, all at the leader's timestamp.
///
/// The commands travel encoded: the gRPC handler that accepted them encodes
/// each once ([`EncodedCommands`]), the writer concatenates requests, and
/// from then on the log store, the Raft network and the followers' log
/// stores copy bytes (a cheap `Bytes` clone in memory). Each node decodes
/// them once, in its state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRequest {
    /// Wall-clock milliseconds at the leader when the entry was proposed.
    /// The engine never reads a clock; this is its only notion of time.
    pub timestamp_ms: u64,
    /// How many commands `commands` holds (at most `MAX_ENTRY_COMMANDS`).
    pub count: u32,
    /// `count` bincode-encoded `Envelope`s, back to back.
    pub commands: bytes::Bytes,
    /// True if a client waiting for these commands asked for events: the
    /// leader then builds them while applying. Never changes the state;
    /// followers ignore it.
    pub events: bool,
}

impl EntryRequest {
    /// An entry of `commands` (tests and benchmarks; the writer builds
    /// entries from [`EncodedCommands`]).
    pub fn from_envelopes(timestamp_ms: u64, commands: &[Envelope]) -> Result<Self, io::Error> {
        let encoded = EncodedCommands::encode(commands)?;
        Ok(EntryRequest {
            timestamp_ms,
            count: encoded.count,
            commands: encoded.bytes.into(),
            events: true,
        })
    }

    /// The commands, decoded. Fails on bytes that are not exactly `count`
    /// envelopes (a corrupt log).
    pub fn decode_commands(&self) -> Result<Vec<Envelope>, io::Error> {
        let mut rest: &[u8] = &self.commands;
        let mut out = Vec::with_capacity((self.count as usize).min(MAX_ENTRY_COMMANDS));
        for _ in 0..self.count {
            let (envelope, used) = codec::decode_prefix::<Envelope>(rest)?;
            out.push(envelope);
            rest = &rest[used..];
        }
        if !rest.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "entry has {} bytes after its {} commands",
                    rest.len(),
                    self.count
                ),
            ));
        }
        Ok(out)
    }
}

/// Commands encoded back to back, as they go into an [`EntryRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedCommands {
    pub count: u32,
    pub bytes: Vec<u8>,
}

impl EncodedCommands {
    pub fn encode(commands: &[Envelope]) -> Result<Self, io::Error> {
        let mut out = EncodedCommands {
            count: 0,
            bytes: Vec::with_capacity(commands.len() * 64),
        };
        for envelope in commands {
            out.push(envelope)?;
        }
        Ok(out)
    }

    pub fn push(&mut self, envelope: &Envelope) -> Result<(), io::Error> {
        codec::encode_into(envelope, &mut self.bytes)?;
        self.count += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl fmt::Display for EntryRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EntryRequest(t={}, n={}, bytes={})",
            self.timestamp_ms,
            self.count,
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

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use tally_ledger::{Command, CommandId, Decimal};

    use super::*;

    fn deposit(id: &str, amount: &str) -> Envelope {
        Envelope {
            command_id: CommandId(id.into()),
            command: Command::Deposit {
                account: 7,
                asset: "BTC".into(),
                amount: Decimal::from_str(amount).expect("decimal"),
            },
        }
    }

    #[test]
    fn entry_commands_round_trip_through_the_log_encoding_with_scale_kept() {
        let commands = vec![deposit("a", "1.50"), deposit("b", "0.00000001")];
        let entry = EntryRequest::from_envelopes(42, &commands).expect("encode");
        assert_eq!(entry.count, 2);
        let stored = codec::encode(&entry).expect("encode entry");
        let back: EntryRequest = codec::decode(&stored).expect("decode entry");
        let decoded = back.decode_commands().expect("decode commands");
        assert_eq!(decoded, commands);
        let Command::Deposit { amount, .. } = &decoded[0].command else {
            panic!("not a deposit: {decoded:?}");
        };
        assert_eq!(amount.to_string(), "1.50");
    }

    #[test]
    fn entry_with_wrong_count_or_trailing_bytes_is_refused_as_corrupt() {
        let mut entry = EntryRequest::from_envelopes(1, &[deposit("a", "1")]).expect("encode");
        entry.count = 2;
        assert!(
            entry.decode_commands().is_err(),
            "count above what the bytes hold"
        );
        entry.count = 0;
        assert!(
            entry.decode_commands().is_err(),
            "bytes after the last command"
        );
        let truncated = EntryRequest {
            count: 1,
            commands: entry.commands.slice(..entry.commands.len() - 1),
            ..entry
        };
        assert!(truncated.decode_commands().is_err(), "truncated command");
    }
}
