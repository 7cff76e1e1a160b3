//! The gRPC edge: one file per service (Ledger and Perps, Accounts, Admin, Kafka, Raft), the shared status helpers, and the
//! conversions between the proto messages and the engine (`convert`).

pub mod accounts_service;
pub mod admin_service;
pub mod auth_layer;
pub mod backup_service;
pub mod cluster_version;
pub mod convert;
pub mod convert_accounts;
pub mod convert_derivatives;
pub mod kafka_service;
pub mod ledger_service;
pub mod metrics_layer;
pub mod raft_service;
pub mod status;
