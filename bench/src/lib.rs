//! # tally-bench
//!
//! The load generator and benchmarks of Tally. The `tally-bench` binary
//! drives a real cluster (one it starts with `tallyd dev`, or loopback
//! endpoints) in closed or open loop and prints throughput and latency
//! percentiles, overall and per second, with the RSS of the node processes.
//! The criterion benches (`benches/engine.rs`, `benches/storage.rs`) measure
//! the engine alone and the Raft log store alone.
//!
//! Modules: `args` (command line and limits), `cluster` (dev cluster,
//! loopback checks, leader, node signals), `workload` (what is sent),
//! `dist` (account popularity), `driver` (closed / open loop, monitor),
//! `fault` (a follower stopped or restarted mid-run), `stats` (counters,
//! HDR histograms, phases), `rss` (process memory), `report` (text and
//! JSON), `fixture` (the in-memory engine fixture), `ingest` (fills through
//! Kafka end to end), `run` (one run end to end).

pub mod args;
pub mod cluster;
pub mod dist;
pub mod driver;
pub mod fault;
pub mod fixture;
pub mod ingest;
pub mod report;
pub mod rss;
pub mod run;
pub mod stats;
pub mod workload;
