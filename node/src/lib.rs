//! Tally node: the replicated shell around the pure ledger engine
//! (`tally-ledger`). Raft via openraft on RocksDB, gRPC services via tonic.
//!
//! Layout: `storage` (RocksDB column families, identity), `raft` (openraft
//! glue: log store, state machine, network, types), `writer` (group commit),
//! `grpc` (one file per service, and `grpc::convert`: proto <-> engine), `node`
//! (wiring and read barriers), `cli` (the `tallyd` command line).

pub mod cli;
pub mod codec;
pub mod grpc;
pub mod health;
pub mod node;
pub mod raft;
pub mod storage;
pub mod writer;
