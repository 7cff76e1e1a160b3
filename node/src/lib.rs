//! Tally node: the replicated shell around the pure ledger engine
//! (`tally-ledger`). Raft via openraft on RocksDB, gRPC services via tonic.
//!
//! Layout, by responsibility (each module depends only on those listed
//! before it, so there are no import cycles):
//! - `codec`, `storage` (RocksDB column families, identity check), `raft`
//!   (openraft glue: types, log store, state machine, network), `writer`
//!   (group commit), `metrics` (the Prometheus registry): the building blocks;
//! - `kafka`: the ingester, the events outbox and the publisher (leader
//!   only; built on `ctx`);
//! - `config`: [`config::NodeConfig`], what a node is started with;
//! - `ctx`: [`ctx::NodeCtx`], the state the services share (Raft handle,
//!   writer, state machine, leader contact, peer channels) and what is read
//!   off it directly (metrics, leader address, node status, state hash);
//! - `reads`: the read barriers per consistency level, failing with the
//!   typed [`reads::ReadError`];
//! - `grpc` (one file per service; `grpc::convert` turns proto messages
//!   into engine commands and back; `grpc::status` is the only place errors
//!   become `tonic::Status` with their `tally-reason`) and `health`: the
//!   edges, built on `ctx` and `reads`;
//! - `node`: the bootstrap that opens storage, starts Raft and mounts the
//!   services, and stops gracefully (`shutdown`: leadership handed over first); `observe`: cluster events (leadership, membership) in the
//!   log; `backup`: backup files and `tallyd restore`; `dev`: the `tallyd dev` supervisor; `cli`: the `tallyd` command line on top of it; `probe`: the
//!   `tallyd probe` hooks for orchestrators (HTTP health checks, pre-stop
//!   leadership hand-off); `version`: the release and supported cluster
//!   versions of this binary, and the stop on an unsupported one.

#![forbid(unsafe_code)]

/// The git commit this build was made from ("unknown" outside a checkout).
pub const GIT_COMMIT: &str = env!("TALLY_GIT_COMMIT");

pub mod audit;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod codec;
pub mod config;
pub mod ctx;
pub mod dev;
pub mod failpoint;
pub mod grpc;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod node;
pub mod observe;
pub mod probe;
pub mod raft;
pub mod reads;
pub mod removal;
pub mod shutdown;
pub mod storage;
pub mod transport;
pub mod version;
pub mod writer;
