//! The openraft type configuration: what a Raft log entry carries (a batch of
//! ledger commands stamped with the leader's clock) and what applying it returns.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};
use tally_ledger::{
    ApplyResult, DecodedCommand, Envelope, IngestBatch, WIRE_VERSION, decode_envelope,
    decode_ingest_batch, encode_envelope,
};

/// Raft node id. Never reused within a cluster.
pub type NodeId = u64;

/// A node's address: host:port of its gRPC listener (Raft, Ledger and Admin services).
pub type Node = openraft::BasicNode;

/// Largest number of ledger commands coalesced into one Raft entry.
pub const MAX_ENTRY_COMMANDS: usize = 4096;

// A full SubmitBatch always fits in one entry.
const _: () = assert!(tally_proto::MAX_BATCH_COMMANDS <= MAX_ENTRY_COMMANDS);

/// The payload of one Raft entry: commands from one or more clients (group
/// commit), applied in order, all at the leader's timestamp.
///
/// It is one immutable frame of bytes, built once by the leader's writer
/// from the commands the gRPC handlers encoded ([`EncodedCommands`]):
///
/// ```text
/// frame = u8 wire version (tally_ledger::WIRE_VERSION)
///         u64 timestamp_ms (big-endian; the leader's clock)
///         u32 count (big-endian; at most MAX_ENTRY_COMMANDS)
///         u8 flags (bit 0: a waiting client asked for events;
///                   bit 1: an ingest batch; bit 2: a published marker;
///                   bit 3: a cluster version)
///         body:
///           commands:  count encoded envelopes (tally_ledger::wire), back to back
///           ingest:    one ingest batch of count records (tally_ledger::ingest)
///           published: u64 log index (big-endian), count 0: every event up to
///                      it is acknowledged by the events topic (`kafka::publish`)
///           cluster version: u32 version (big-endian), count 0: from the next
///                      entry on, the cluster runs at this version
///                      (`SetClusterVersion`; see `tally_ledger::MAX_CLUSTER_VERSION`)
/// ```
///
/// `SetClusterVersion` is an entry kind of its own rather than a ledger
/// command: it is not a client's command (no command id, no dedup entry,
/// never submitted through `Submit` or Kafka), it is alone in its entry (no
/// command shares an entry with a version change, so entry *i* is always
/// interpreted under the version active before *i*), and the node checks
/// it before the engine sees anything: a binary that does not support the
/// version stops there. A release-0.1 binary, which knows no bit 3, refuses
/// the entry as corrupt and stops applying too (it never interprets it).
///
/// From then on the log store, the Raft network and the followers copy the
/// frame, never re-encode it (its serde form is the frame as one byte
/// string), and each node decodes the commands once, in its state machine,
/// with the fingerprint of their bytes ([`EntryRequest::commands`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryRequest {
    frame: bytes::Bytes,
}

/// Bytes of the frame header before the commands.
pub const ENTRY_HEADER_BYTES: usize = 1 + 8 + 4 + 1;

/// Flag bit: a client waiting for these commands asked for events; the
/// leader then builds them while applying. Never changes the state;
/// followers ignore it.
const FLAG_EVENTS: u8 = 1;
/// Flag bit: the body is one Kafka ingest batch.
const FLAG_INGEST: u8 = 2;
/// Flag bit: the body is a published marker.
const FLAG_PUBLISHED: u8 = 4;
/// Flag bit: the body is a cluster version (`SetClusterVersion`).
const FLAG_CLUSTER_VERSION: u8 = 8;
const KNOWN_FLAGS: u8 = FLAG_EVENTS | FLAG_INGEST | FLAG_PUBLISHED | FLAG_CLUSTER_VERSION;

/// What an entry's body holds (by its flags).
#[derive(Debug)]
pub enum EntryBody {
    /// Client commands: iterate [`EntryRequest::commands`].
    Commands,
    /// A Kafka ingest batch (decoded).
    Ingest(IngestBatch),
    /// Every event of entries up to this log index is in the events topic.
    Published(u64),
    /// `SetClusterVersion`: the cluster runs at this version from the next entry on.
    ClusterVersion(u32),
}

fn corrupt(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl EntryRequest {
    /// Builds the frame of an entry holding `parts`, concatenated (their
    /// total count at most `MAX_ENTRY_COMMANDS`).
    pub fn build<'a>(
        timestamp_ms: u64,
        events: bool,
        parts: impl IntoIterator<Item = &'a EncodedCommands> + Clone,
    ) -> Self {
        let (count, bytes) = parts
            .clone()
            .into_iter()
            .fold((0usize, 0usize), |(c, b), p| {
                (c + p.len(), b + p.bytes.len())
            });
        assert!(
            count <= MAX_ENTRY_COMMANDS,
            "entry of {count} commands exceeds {MAX_ENTRY_COMMANDS}"
        );
        let mut frame = Vec::with_capacity(ENTRY_HEADER_BYTES + bytes);
        frame.push(WIRE_VERSION);
        frame.extend_from_slice(&timestamp_ms.to_be_bytes());
        // count <= MAX_ENTRY_COMMANDS, far below u32::MAX.
        frame.extend_from_slice(&(count as u32).to_be_bytes());
        frame.push(if events { FLAG_EVENTS } else { 0 });
        for part in parts {
            frame.extend_from_slice(&part.bytes);
        }
        EntryRequest {
            frame: frame.into(),
        }
    }

    /// An ingest entry: one batch of `count` records (its bytes from
    /// `tally_ledger::IngestBatchWriter::finish`).
    pub fn ingest(timestamp_ms: u64, batch: &[u8], count: u32) -> Self {
        EntryRequest::with_body(timestamp_ms, count, FLAG_INGEST, batch)
    }

    /// A published marker: events of entries up to `index` are acknowledged.
    pub fn published(timestamp_ms: u64, index: u64) -> Self {
        EntryRequest::with_body(timestamp_ms, 0, FLAG_PUBLISHED, &index.to_be_bytes())
    }

    /// A `SetClusterVersion` entry: from the next entry on, the cluster
    /// runs at `version`.
    pub fn cluster_version(timestamp_ms: u64, version: u32) -> Self {
        EntryRequest::with_body(
            timestamp_ms,
            0,
            FLAG_CLUSTER_VERSION,
            &version.to_be_bytes(),
        )
    }

    fn with_body(timestamp_ms: u64, count: u32, flags: u8, body: &[u8]) -> Self {
        let mut frame = Vec::with_capacity(ENTRY_HEADER_BYTES + body.len());
        frame.push(WIRE_VERSION);
        frame.extend_from_slice(&timestamp_ms.to_be_bytes());
        frame.extend_from_slice(&count.to_be_bytes());
        frame.push(flags);
        frame.extend_from_slice(body);
        EntryRequest {
            frame: frame.into(),
        }
    }

    /// What the body holds. An error is a corrupt log (the caller stops
    /// applying): unknown flags, a batch that does not decode or whose
    /// count differs from the header's, a marker of the wrong size.
    pub fn body(&self) -> Result<EntryBody, io::Error> {
        let flags = self.frame[13];
        let body = &self.frame[ENTRY_HEADER_BYTES..];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(corrupt(format!("entry flags {flags:#04x} unknown")));
        }
        if flags & FLAG_INGEST != 0 {
            let batch =
                decode_ingest_batch(body).map_err(|e| corrupt(format!("ingest batch: {e}")))?;
            if batch.records.len() != self.count() as usize {
                return Err(corrupt(format!(
                    "ingest batch of {} records in an entry of {}",
                    batch.records.len(),
                    self.count()
                )));
            }
            return Ok(EntryBody::Ingest(batch));
        }
        if flags & FLAG_PUBLISHED != 0 {
            let index: [u8; 8] = body
                .try_into()
                .map_err(|_| corrupt(format!("published marker of {} bytes", body.len())))?;
            return Ok(EntryBody::Published(u64::from_be_bytes(index)));
        }
        if flags & FLAG_CLUSTER_VERSION != 0 {
            let version: [u8; 4] = body
                .try_into()
                .map_err(|_| corrupt(format!("cluster version of {} bytes", body.len())))?;
            return Ok(EntryBody::ClusterVersion(u32::from_be_bytes(version)));
        }
        Ok(EntryBody::Commands)
    }

    /// An entry of `commands` (tests and benchmarks; the writer builds
    /// entries from [`EncodedCommands`]).
    pub fn from_envelopes(timestamp_ms: u64, commands: &[Envelope]) -> Self {
        let encoded = EncodedCommands::encode(commands);
        EntryRequest::build(timestamp_ms, true, [&encoded])
    }

    /// Takes a frame read from the log or the network; refuses one whose
    /// header is truncated, of another wire version, or over the bound.
    /// The commands themselves are checked when decoded.
    pub fn from_frame(frame: bytes::Bytes) -> Result<Self, io::Error> {
        if frame.len() < ENTRY_HEADER_BYTES {
            return Err(corrupt(format!(
                "entry frame of {} bytes is shorter than its header",
                frame.len()
            )));
        }
        if frame[0] != WIRE_VERSION {
            return Err(corrupt(format!(
                "entry frame of command wire version {} (this build reads {WIRE_VERSION})",
                frame[0]
            )));
        }
        let entry = EntryRequest { frame };
        if entry.count() as usize > MAX_ENTRY_COMMANDS {
            return Err(corrupt(format!(
                "entry frame of {} commands exceeds {MAX_ENTRY_COMMANDS}",
                entry.count()
            )));
        }
        Ok(entry)
    }

    /// The whole frame, as stored and sent.
    pub fn frame(&self) -> &bytes::Bytes {
        &self.frame
    }

    fn header<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        // The header length was checked when the frame was built or taken.
        out.copy_from_slice(&self.frame[at..at + N]);
        out
    }

    /// Wall-clock milliseconds at the leader when the entry was proposed.
    /// The engine never reads a clock; this is its only notion of time.
    pub fn timestamp_ms(&self) -> u64 {
        u64::from_be_bytes(self.header(1))
    }

    /// How many commands the entry holds (at most `MAX_ENTRY_COMMANDS`).
    pub fn count(&self) -> u32 {
        u32::from_be_bytes(self.header(9))
    }

    /// True if a client waiting for these commands asked for events.
    pub fn events(&self) -> bool {
        self.frame[13] & FLAG_EVENTS != 0
    }

    /// The commands, decoded one at a time with their fingerprints. An
    /// error (bytes that are not exactly `count` well-formed envelopes) is
    /// a corrupt log: the caller stops applying rather than skip it.
    pub fn commands(&self) -> impl Iterator<Item = Result<DecodedCommand, io::Error>> + '_ {
        let mut rest = &self.frame[ENTRY_HEADER_BYTES..];
        let count = self.count();
        let mut decoded = 0u32;
        std::iter::from_fn(move || {
            if decoded == count {
                if rest.is_empty() {
                    return None;
                }
                let trailing = rest.len();
                rest = &[];
                return Some(Err(corrupt(format!(
                    "entry has {trailing} bytes after its {count} commands"
                ))));
            }
            decoded += 1;
            match decode_envelope(rest) {
                Ok((command, used)) => {
                    rest = &rest[used..];
                    Some(Ok(command))
                }
                Err(e) => {
                    let index = decoded;
                    decoded = count;
                    rest = &[];
                    Some(Err(corrupt(format!("entry command {index}: {e}"))))
                }
            }
        })
    }

    /// All commands decoded (tests and tools).
    pub fn decode_commands(&self) -> Result<Vec<Envelope>, io::Error> {
        self.commands().map(|c| c.map(|c| c.envelope)).collect()
    }
}

impl Serialize for EntryRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.frame)
    }
}

impl<'de> Deserialize<'de> for EntryRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FrameVisitor;
        impl serde::de::Visitor<'_> for FrameVisitor {
            type Value = bytes::Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an entry frame (bytes)")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(bytes::Bytes::copy_from_slice(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(v.into())
            }
        }
        let frame = deserializer.deserialize_bytes(FrameVisitor)?;
        EntryRequest::from_frame(frame).map_err(serde::de::Error::custom)
    }
}

/// Commands encoded back to back (`tally_ledger::encode_envelope`), as one
/// client request's share of an [`EntryRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedCommands {
    count: u32,
    pub bytes: Vec<u8>,
}

impl EncodedCommands {
    pub fn encode(commands: &[Envelope]) -> Self {
        let mut out = EncodedCommands {
            count: 0,
            bytes: Vec::with_capacity(commands.len() * 48),
        };
        for envelope in commands {
            out.push(envelope);
        }
        out
    }

    pub fn push(&mut self, envelope: &Envelope) {
        encode_envelope(envelope, &mut self.bytes);
        self.count += 1;
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
            self.timestamp_ms(),
            self.count(),
            self.frame.len()
        )
    }
}

/// The outcome of applying one entry: one result per command, in order
/// (commands entries), or the ingest verdict (ingest entries).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryResponse {
    pub results: Vec<ApplyResult>,
    pub ingest: Option<IngestReply>,
}

/// What became of an ingest entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IngestReply {
    /// Applied: the partition's next offset now, and how many of its
    /// records failed (recorded) or were retries of applied commands.
    Applied {
        next_offset: u64,
        failed: u32,
        duplicates: u32,
    },
    /// Refused whole: the batch did not start at the stored next offset.
    Fenced { expected_offset: u64 },
    /// Refused whole: the ledger tracks its maximum number of partitions.
    TooManySources,
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

    use tally_ledger::{Command, CommandId, Decimal, Deposit};

    use super::*;
    use crate::codec;

    fn deposit(id: &str, amount: &str) -> Envelope {
        Envelope {
            command_id: CommandId(id.into()),
            command: Command::Deposit(Deposit {
                account: 7,
                asset: "BTC".into(),
                amount: Decimal::from_str(amount).expect("decimal"),
            }),
        }
    }

    #[test]
    fn entry_frame_round_trips_through_serde_as_the_same_bytes() {
        let commands = vec![deposit("a", "1.50"), deposit("b", "0.00000001")];
        let entry = EntryRequest::from_envelopes(42, &commands);
        assert_eq!(
            (entry.count(), entry.timestamp_ms(), entry.events()),
            (2, 42, true)
        );
        let stored = codec::encode(&entry).expect("encode entry");
        let back: EntryRequest = codec::decode(&stored).expect("decode entry");
        assert_eq!(
            back.frame(),
            entry.frame(),
            "the frame is copied, not re-encoded"
        );
        let decoded = back.decode_commands().expect("decode commands");
        // Canonical amounts: 1.50 travels as 1.5, the same number.
        assert_eq!(decoded[0].command, deposit("a", "1.5").command);
        assert_eq!(decoded[1], commands[1]);
        // The state machine gets the fingerprints the engine would compute.
        let mut ledger = tally_ledger::Ledger::new(Default::default());
        for command in back.commands() {
            let command = command.expect("decodes");
            let mut fresh = ledger.clone();
            assert_eq!(
                ledger.apply_decoded(&command, 1, true),
                fresh.apply(&command.envelope, 1)
            );
        }
    }

    #[test]
    fn a_cluster_version_entry_carries_its_version_alone_and_a_bad_body_is_corrupt() {
        let entry = EntryRequest::cluster_version(7, 2);
        assert_eq!((entry.count(), entry.timestamp_ms()), (0, 7));
        let back = EntryRequest::from_frame(entry.frame().clone()).expect("frame");
        assert!(matches!(back.body(), Ok(EntryBody::ClusterVersion(2))));
        let mut short = entry.frame().to_vec();
        short.pop();
        let short = EntryRequest::from_frame(short.into()).expect("header ok");
        assert!(short.body().is_err(), "a 3-byte version is corrupt");
        // Release 0.1 knew flags up to bit 2: bit 3 is what it refuses.
        assert_eq!(entry.frame()[13], 8);
    }

    #[test]
    fn entry_with_wrong_count_trailing_bytes_or_version_is_refused_as_corrupt() {
        let entry = EntryRequest::from_envelopes(1, &[deposit("a", "1")]);
        let mut frame = entry.frame().to_vec();
        frame[9..13].copy_from_slice(&2u32.to_be_bytes());
        let more = EntryRequest::from_frame(frame.clone().into()).expect("header ok");
        assert!(
            more.decode_commands().is_err(),
            "count above what the bytes hold"
        );
        frame[9..13].copy_from_slice(&0u32.to_be_bytes());
        let fewer = EntryRequest::from_frame(frame.clone().into()).expect("header ok");
        assert!(
            fewer.decode_commands().is_err(),
            "bytes after the last command"
        );
        let truncated = EntryRequest::from_frame(entry.frame().slice(..entry.frame().len() - 1))
            .expect("header ok");
        assert!(truncated.decode_commands().is_err(), "truncated command");
        let mut other_version = entry.frame().to_vec();
        other_version[0] = WIRE_VERSION + 1;
        assert!(EntryRequest::from_frame(other_version.into()).is_err());
        assert!(EntryRequest::from_frame(entry.frame().slice(..5)).is_err());
        let mut too_many = entry.frame().to_vec();
        too_many[9..13].copy_from_slice(&(MAX_ENTRY_COMMANDS as u32 + 1).to_be_bytes());
        assert!(EntryRequest::from_frame(too_many.into()).is_err());
    }
}
