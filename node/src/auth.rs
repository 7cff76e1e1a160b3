//! Who may call what: the rights each role grants, the right each gRPC
//! method and each ledger command needs, and the caller a request carries.
//!
//! Rights by role (a certificate may carry several roles):
//!
//! | role   | rights |
//! |--------|--------|
//! | node   | every right (a cluster member can already append any entry) |
//! | admin  | admin (membership, snapshots, compaction, backup, upgrades), configure (assets, markets, dedup window), status, ledger and perps reads |
//! | risk   | risk writes (mark prices, funding, market pauses, insurance fund top-up and payout, fee sweeps), perps reads, ledger reads, status |
//! | trader | ledger writes (accounts and their settings, deposits, withdrawals, holds, fills, wallet transfers, isolated margin, perp fills), ledger reads, status |
//! | reader | ledger reads, perps reads, status |
//!
//! The gRPC methods: `Ledger/Submit` and `SubmitBatch` need the right of
//! every command they carry (checked per command by the ledger service,
//! [`command_right`]); other `Ledger` methods and every `Accounts` method
//! (listings, history, transferable, conservation) are ledger reads; `Perps`
//! methods perps reads; `Admin/Get*` status, other `Admin` and `Backup`
//! methods admin; `Kafka` methods status; `Raft` methods the raft right
//! (nodes only); the gRPC health service is open to any connection. Any
//! other path needs admin (deny by default). On an `--insecure` listener
//! nothing is checked.

use tally_ledger::Command;
use tally_tls::{Peer, Role, RoleSet};

/// What a call may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Right {
    LedgerWrite,
    LedgerRead,
    PerpsRead,
    RiskWrite,
    Configure,
    Admin,
    Status,
    Raft,
}

impl Right {
    pub fn as_str(self) -> &'static str {
        match self {
            Right::LedgerWrite => "ledger write",
            Right::LedgerRead => "ledger read",
            Right::PerpsRead => "perps read",
            Right::RiskWrite => "risk write",
            Right::Configure => "configure",
            Right::Admin => "admin",
            Right::Status => "status",
            Right::Raft => "raft",
        }
    }

    /// The roles that grant this right, for messages.
    fn granted_by(self) -> &'static str {
        match self {
            Right::LedgerWrite => "trader",
            Right::LedgerRead => "trader, reader, risk or admin",
            Right::PerpsRead => "reader, risk or admin",
            Right::RiskWrite => "risk",
            Right::Configure | Right::Admin => "admin",
            Right::Status => "any role",
            Right::Raft => "node",
        }
    }
}

/// Whether `role` grants `right`.
pub fn grants(role: Role, right: Right) -> bool {
    use Right::*;
    match role {
        Role::Node => true,
        Role::Admin => matches!(right, Admin | Configure | Status | LedgerRead | PerpsRead),
        Role::Risk => matches!(right, RiskWrite | PerpsRead | LedgerRead | Status),
        Role::Trader => matches!(right, LedgerWrite | LedgerRead | Status),
        Role::Reader => matches!(right, LedgerRead | PerpsRead | Status),
    }
}

/// What a gRPC method needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Anyone who connected (gRPC health).
    Open,
    Needs(Right),
    /// Ledger submissions: each command's right, checked by the service;
    /// the layer only requires some write right.
    Commands,
}

/// The gate of a request path (`/package.Service/Method`).
pub fn gate(path: &str) -> Gate {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Gate::Needs(Right::Admin);
    };
    match service {
        "grpc.health.v1.Health" => Gate::Open,
        "tally.v1.Ledger" if method == "Submit" || method == "SubmitBatch" => Gate::Commands,
        "tally.v1.Ledger" => Gate::Needs(Right::LedgerRead),
        "tally.v1.Perps" => Gate::Needs(Right::PerpsRead),
        "tally.v1.Accounts" => Gate::Needs(Right::LedgerRead),
        "tally.v1.Admin" if method.starts_with("Get") => Gate::Needs(Right::Status),
        "tally.v1.Admin" | "tally.v1.Backup" => Gate::Needs(Right::Admin),
        "tally.v1.Kafka" => Gate::Needs(Right::Status),
        "tally.v1.Raft" => Gate::Needs(Right::Raft),
        _ => Gate::Needs(Right::Admin),
    }
}

/// The right a ledger command needs. Exhaustive: a new command must be
/// classified here before it compiles.
pub fn command_right(command: &Command) -> Right {
    match command {
        Command::CreateAccount(_)
        | Command::Deposit(_)
        | Command::Withdraw(_)
        | Command::Lock(_)
        | Command::Release(_)
        | Command::Fill(_)
        | Command::Transfer(_)
        | Command::PerpFill(_)
        | Command::OpenAccount(_)
        | Command::SetWithdrawAllowed(_)
        | Command::SetTransferGrant(_)
        | Command::WalletTransfer(_)
        | Command::WalletDeposit(_)
        | Command::WalletWithdraw(_)
        | Command::PairFill(_)
        | Command::ReleasePart(_)
        | Command::SetIsolated(_)
        | Command::AdjustIsolatedMargin(_)
        | Command::WalletLock(_)
        | Command::PerpOrderFill(_)
        | Command::AssertBalance(_) => Right::LedgerWrite,
        Command::SetMarkPrice(_)
        | Command::ApplyFunding(_)
        | Command::SetMarketPaused(_)
        | Command::FundInsurance(_)
        | Command::WithdrawInsurance(_)
        | Command::SweepFees(_)
        | Command::SettleFuture(_)
        | Command::ExerciseOption(_)
        | Command::ApplyOptionFunding(_)
        | Command::ApplyPremiumFunding(_)
        | Command::SetOptionMark(_) => Right::RiskWrite,
        Command::CreateAsset(_)
        | Command::CreateMarket(_)
        | Command::CreatePair(_)
        | Command::CreateDatedFuture(_)
        | Command::CreateOption(_)
        | Command::CreateInverseMarket(_)
        | Command::SetFundingClamp(_)
        | Command::SetDedupWindow(_) => Right::Configure,
    }
}

/// The caller of one request, as the auth layer put it in the request's
/// extensions.
#[derive(Clone, Debug)]
pub struct Caller {
    pub peer: std::sync::Arc<Peer>,
    pub remote: String,
}

impl Caller {
    /// Whether the caller may use `right`; `Err` is the refusal message.
    pub fn check(&self, right: Right) -> Result<(), String> {
        let roles: RoleSet = match &*self.peer {
            Peer::Insecure => return Ok(()),
            Peer::NoCertificate => {
                return Err(format!(
                    "no client certificate: {} needs a certificate from the cluster CA with role {}",
                    right.as_str(),
                    right.granted_by()
                ));
            }
            Peer::Untrusted(reason) => {
                return Err(format!(
                    "client certificate not accepted ({reason}): only certificates from the cluster CA are"
                ));
            }
            Peer::Verified(identity) => identity.roles,
        };
        if roles.iter().any(|role| grants(role, right)) {
            Ok(())
        } else {
            Err(format!(
                "{} (roles: {roles}) may not {}: that needs role {}",
                self.describe(),
                right.as_str(),
                right.granted_by()
            ))
        }
    }

    pub fn describe(&self) -> String {
        self.peer.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_family_maps_to_its_right_and_unknown_paths_need_admin() {
        assert_eq!(gate("/tally.v1.Ledger/Submit"), Gate::Commands);
        assert_eq!(gate("/tally.v1.Ledger/SubmitBatch"), Gate::Commands);
        assert_eq!(
            gate("/tally.v1.Ledger/GetBalance"),
            Gate::Needs(Right::LedgerRead)
        );
        assert_eq!(
            gate("/tally.v1.Perps/GetMargin"),
            Gate::Needs(Right::PerpsRead)
        );
        assert_eq!(
            gate("/tally.v1.Accounts/GetHistory"),
            Gate::Needs(Right::LedgerRead)
        );
        assert_eq!(
            gate("/tally.v1.Admin/GetNodeStatus"),
            Gate::Needs(Right::Status)
        );
        assert_eq!(
            gate("/tally.v1.Admin/AddLearner"),
            Gate::Needs(Right::Admin)
        );
        assert_eq!(gate("/tally.v1.Backup/Backup"), Gate::Needs(Right::Admin));
        assert_eq!(gate("/tally.v1.Raft/Vote"), Gate::Needs(Right::Raft));
        assert_eq!(gate("/grpc.health.v1.Health/Check"), Gate::Open);
        assert_eq!(gate("/evil.Service/X"), Gate::Needs(Right::Admin));
        assert_eq!(gate("nonsense"), Gate::Needs(Right::Admin));
    }

    #[test]
    fn roles_grant_exactly_the_documented_rights() {
        use Right::*;
        let all = [
            LedgerWrite,
            LedgerRead,
            PerpsRead,
            RiskWrite,
            Configure,
            Admin,
            Status,
            Raft,
        ];
        let granted =
            |role| -> Vec<Right> { all.into_iter().filter(|r| grants(role, *r)).collect() };
        assert_eq!(granted(Role::Node), all.to_vec());
        assert_eq!(
            granted(Role::Admin),
            vec![LedgerRead, PerpsRead, Configure, Admin, Status]
        );
        assert_eq!(
            granted(Role::Risk),
            vec![LedgerRead, PerpsRead, RiskWrite, Status]
        );
        assert_eq!(granted(Role::Trader), vec![LedgerWrite, LedgerRead, Status]);
        assert_eq!(granted(Role::Reader), vec![LedgerRead, PerpsRead, Status]);
    }

    #[test]
    fn refusals_say_who_what_and_which_role_would_do() {
        let caller = |peer| Caller {
            peer: std::sync::Arc::new(peer),
            remote: "127.0.0.1:1".into(),
        };
        let reader = caller(Peer::Verified(tally_tls::Identity {
            name: "dash".into(),
            roles: RoleSet::of(&[Role::Reader]),
        }));
        assert!(reader.check(Right::LedgerRead).is_ok());
        let err = reader.check(Right::Admin).unwrap_err();
        assert!(
            err.contains("dash") && err.contains("needs role admin"),
            "{err}"
        );
        let err = caller(Peer::NoCertificate)
            .check(Right::LedgerRead)
            .unwrap_err();
        assert!(err.contains("no client certificate"), "{err}");
        let err = caller(Peer::Untrusted("unknown issuer".into()))
            .check(Right::Status)
            .unwrap_err();
        assert!(err.contains("unknown issuer"), "{err}");
        assert!(caller(Peer::Insecure).check(Right::Raft).is_ok());
    }
}
