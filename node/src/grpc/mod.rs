//! The gRPC edge: one file per service, plus the shared status helpers.

pub mod admin_service;
pub mod ledger_service;
pub mod raft_service;
pub mod status;
