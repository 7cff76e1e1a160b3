//! The gRPC edge: one file per service (Ledger and Perps, Admin, Kafka, Raft), the shared status helpers, and the
//! conversions between the proto messages and the engine (`convert`).

pub mod admin_service;
pub mod backup_service;
pub mod cluster_version;
pub mod convert;
pub mod kafka_service;
pub mod ledger_service;
pub mod metrics_layer;
pub mod raft_service;
pub mod status;
