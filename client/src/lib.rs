//! # tally-client
//!
//! The Rust client of Tally, the Raft-replicated account ledger: leader
//! discovery, retries across nodes with the same command id, and honest
//! write outcomes ([`WriteResult::Applied`], [`WriteResult::Rejected`],
//! [`WriteResult::Unknown`]).
//!
//! * Writes ([`Client::submit`], [`Client::submit_batch`]) go to the leader.
//!   Every retry re-sends the same `command_id`, and the server remembers
//!   outcomes, so a retry never applies a command twice. When the deadline
//!   passes after the command may have reached a node, the outcome is
//!   [`WriteResult::Unknown`]: it may or may not have applied, and must never
//!   be reported as failed; submit it again with the same id to find out.
//! * Reads ([`Client::balance`], [`Client::account`], [`Client::hold`],
//!   [`Client::state_hash`]) are linearizable by default; [`Consistency`]
//!   documents each level's guarantee (linearizable, session
//!   read-your-writes, bounded staleness, at-least-index), and
//!   [`ReadPolicy`] which nodes serve them (leader only, followers
//!   preferred, round-robin, nearest). Every answer carries the applied
//!   index it was served at and the serving node.
//! * Admin calls ([`Client::init`], [`Client::add_learner`],
//!   [`Client::replace`], [`Client::transfer_leader`], [`Client::snapshot`],
//!   ...) manage the cluster.
//!
//! A process that only needs its own writes reflected in its reads (e.g. a
//! gateway confirming an order it just placed) can make session reads its
//! default and keep read load off the leader:
//!
//! ```no_run
//! use tally_client::{Client, ClientConfig, Consistency, ReadOptions, ReadPolicy, commands};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(ClientConfig {
//!     read_consistency_default: Consistency::Session,
//!     read_policy: ReadPolicy::FollowersPreferred,
//!     ..ClientConfig::new(["10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"])
//! })?;
//! client.submit(commands::deposit(1, "USDT", "100")).await;
//! // Served by a follower once it has applied the deposit: read-your-writes.
//! let balance = client.balance(1, "USDT", ReadOptions::default()).await?;
//! // Another client's acknowledged writes need a linearizable read.
//! let fresh = client.balance(1, "USDT", ReadOptions::linearizable()).await?;
//! # let _ = (balance, fresh);
//! # Ok(())
//! # }
//! ```
//!
//! Amounts are decimal strings (`"0.5"`); the server rejects an amount with
//! more decimal places than the asset's scale (`BAD_PRECISION`) and never
//! rounds.
//!
//! ```no_run
//! use tally_client::{Client, ClientConfig, ReadOptions, WriteResult, commands};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(ClientConfig::new([
//!     "127.0.0.1:50051",
//!     "127.0.0.1:50052",
//!     "127.0.0.1:50053",
//! ]))?;
//!
//! // Fund a buyer (account 1, USDT) and a seller (account 2, BTC).
//! client.submit(commands::deposit(1, "USDT", "60000")).await;
//! client.submit(commands::deposit(2, "BTC", "1")).await;
//!
//! // Lock funds for the two orders (hold id = order id), then settle a fill:
//! // 0.5 BTC at 30000 USDT, buyer pays 0.0005 BTC fee, seller 15 USDT.
//! client.submit(commands::lock(101, 1, "USDT", "15000")).await;
//! client.submit(commands::lock(102, 2, "BTC", "0.5")).await;
//! let fill = commands::fill_with_fees(101, 102, "0.5", "30000", "0.0005", "15");
//!
//! match client.submit(fill).await {
//!     WriteResult::Applied { result, applied_index } => {
//!         println!("filled at index {applied_index} (duplicate: {})", result.duplicate);
//!         // Read-your-writes from any node:
//!         let balance = client
//!             .balance(1, "BTC", ReadOptions::at_least_index(applied_index))
//!             .await?;
//!         println!("buyer BTC: {:?}", balance.balance);
//!     }
//!     WriteResult::Rejected { reason, message, .. } => {
//!         // Definite: nothing changed.
//!         eprintln!("fill rejected: {reason}: {message}");
//!     }
//!     WriteResult::Unknown { command_id, last_error } => {
//!         // Maybe applied: retry later with the same id, never treat as failed.
//!         eprintln!("fill {command_id} outcome unknown ({last_error})");
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod accounts;
mod admin;
pub mod amount;
mod backup;
mod client;
pub mod commands;
mod config;
mod connect;
pub mod derivatives;
mod error;
mod ids;
mod kafka;
#[cfg(test)]
mod mock_tests;
mod read;
mod result;
mod retry;
mod router;

pub use accounts::Wallet;
pub use backup::Backup;
pub use client::Client;
pub use commands::CommandExt;
pub use config::{ClientConfig, DEV_ENDPOINTS, MAX_ENDPOINTS, parse_endpoint, parse_endpoint_list};
pub use connect::raw_channel;
pub use error::{ClientError, code_name, reasons};
pub use ids::{COMMAND_ID_PREFIX, MAX_COMMAND_ID_BYTES, new_command_id, validate_command_id};
pub use read::{Consistency, Owner, ReadOptions, ReadPolicy};
pub use result::WriteResult;
pub use tally_tls::ClientTls;

/// The protocol crate, re-exported so users need not depend on it directly.
pub use tally_proto as proto;
pub use tally_proto::MAX_BATCH_COMMANDS;
