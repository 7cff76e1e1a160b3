//! openraft glue: type config, RocksDB log store, state machine, and the
//! gRPC network client.

pub mod checkpoint;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;
