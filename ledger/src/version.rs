//! The cluster version: which engine features and record formats a cluster
//! has switched on. It is replicated ledger state, raised only through the
//! log (the shell's `SetClusterVersion` entry calls
//! [`Ledger::set_cluster_version`]), so entry *i* is interpreted under the
//! version active before *i* on every replica, and a binary knows the
//! highest version it can interpret ([`MAX_CLUSTER_VERSION`]).
//!
//! | version | what it switches on |
//! |---------|---------------------|
//! | 1 | the features and formats of release 0.1 (the base: a ledger that never saw a `SetClusterVersion` entry) |
//! | 2 | `Command::AssertBalance`, `CreateDatedFuture`, `SettleFuture`, `CreateOption`, `ExerciseOption`, `ApplyOptionFunding`, `ApplyPremiumFunding`, `CreateInverseMarket`, `SetOptionMark`, `SetFundingClamp` (and the `Instrument` records these markets write); the meta record in format 7 (it carries the cluster version; release 0.1 refuses it, so a finalized data dir cannot be downgraded) |
//!
//! Until a cluster is finalized at version 2 the ledger writes exactly what
//! release 0.1 reads (meta format 6, no version-2 command in any record), so
//! a node can still be rolled back to the old binary on the same data dir.
//!
//! A command that needs a newer version than the active one is refused with
//! `FeatureNotActive`, deterministically on every replica, and is not
//! remembered (a retry after finalization applies). The shell also refuses
//! such a command at its edge, before proposing it, so an old binary never
//! meets a command it cannot decode.

use crate::amount;
use crate::command::{AssertBalance, Command, Owner};
use crate::engine::{Ledger, reject};
use crate::reject::{Field, RejectDetail, Rejection};
use crate::state::DirtyKey;

/// The cluster version of a ledger that never applied a `SetClusterVersion`
/// entry: release 0.1's features and formats.
pub const BASE_CLUSTER_VERSION: u32 = 1;

/// The highest cluster version this build of the engine can interpret.
pub const MAX_CLUSTER_VERSION: u32 = 2;

const _: () = assert!(BASE_CLUSTER_VERSION <= MAX_CLUSTER_VERSION);

/// A cluster version this build cannot interpret: the replica must stop
/// rather than apply anything under rules it does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the cluster's active version is {active}; this binary supports cluster versions up to \
     {MAX_CLUSTER_VERSION}: run a release that supports version {active} on this node"
)]
pub struct UnsupportedClusterVersion {
    pub active: u32,
}

impl Command {
    /// The cluster version that must be active before the engine applies
    /// this command (`BASE_CLUSTER_VERSION` for every release-0.1 command).
    pub fn required_cluster_version(&self) -> u32 {
        match self {
            Command::AssertBalance(_)
            | Command::CreateDatedFuture(_)
            | Command::SettleFuture(_)
            | Command::CreateOption(_)
            | Command::ExerciseOption(_)
            | Command::ApplyOptionFunding(_)
            | Command::ApplyPremiumFunding(_)
            | Command::CreateInverseMarket(_)
            | Command::SetOptionMark(_)
            | Command::SetFundingClamp(_) => 2,
            _ => BASE_CLUSTER_VERSION,
        }
    }
}

impl Ledger {
    /// The active cluster version (replicated; see the module docs).
    pub fn cluster_version(&self) -> u32 {
        self.cluster_version
    }

    /// Raises the active cluster version to `version` (the shell's
    /// `SetClusterVersion` entry). Lower or equal versions change nothing
    /// (`Ok(false)`): the version never goes down. A version above
    /// [`MAX_CLUSTER_VERSION`] is refused and changes nothing: the caller
    /// must stop applying.
    pub fn set_cluster_version(&mut self, version: u32) -> Result<bool, UnsupportedClusterVersion> {
        if version > MAX_CLUSTER_VERSION {
            return Err(UnsupportedClusterVersion { active: version });
        }
        if version <= self.cluster_version {
            return Ok(false);
        }
        self.cluster_version = version;
        self.dirty.push(DirtyKey::Meta);
        Ok(true)
    }

    /// `FeatureNotActive` if `command` needs a newer cluster version than
    /// the active one.
    pub fn check_feature_active(&self, command: &Command) -> Result<(), Rejection> {
        let needed = command.required_cluster_version();
        if needed > self.cluster_version {
            return Err(reject(RejectDetail::FeatureNotActive {
                command: command.kind().to_string(),
                needed,
                active: self.cluster_version,
            }));
        }
        Ok(())
    }

    /// `AssertBalance`: changes nothing; rejected with `BalanceMismatch`
    /// unless the account's balance of the asset is exactly the one stated.
    pub(crate) fn assert_balance(&mut self, c: &AssertBalance) -> Result<(), Rejection> {
        self.check_account(c.account)?;
        let idx = self.asset_idx(&c.asset)?;
        let available = self.units(c.available, idx, Field::Amount)?;
        let locked = self.units(c.locked, idx, Field::Amount)?;
        let balance = self.balance_units(Owner::Account(c.account), idx);
        if balance.available != available || balance.locked != locked {
            let scale = self.scale(idx);
            return Err(reject(RejectDetail::BalanceMismatch {
                account: c.account,
                asset: c.asset.clone(),
                available: amount::to_decimal(balance.available, scale),
                locked: amount::to_decimal(balance.locked, scale),
            }));
        }
        Ok(())
    }
}
