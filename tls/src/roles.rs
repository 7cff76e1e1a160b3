//! Who is calling: roles, the identity a verified certificate names, and
//! what a connection's peer is (insecure listener, no certificate, an
//! untrusted certificate, or a verified identity).

use std::fmt;
use std::str::FromStr;

/// A role a certificate (or token) grants. What each may call is the
/// node's authorization table (`tally_node::auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Another node of the cluster: Raft, forwarded writes and reads, status.
    Node,
    /// Membership, snapshots, compaction, backup, upgrades, configuration.
    Admin,
    /// Perpetuals reads, mark prices, funding, market pauses, insurance.
    Risk,
    /// Ledger commands (deposits, holds, fills, ...) and ledger reads.
    Trader,
    /// Reads only.
    Reader,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Node,
        Role::Admin,
        Role::Risk,
        Role::Trader,
        Role::Reader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Admin => "admin",
            Role::Risk => "risk",
            Role::Trader => "trader",
            Role::Reader => "reader",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (roles: node, admin, risk, trader, reader)"))
    }
}

/// A set of roles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RoleSet(u8);

impl RoleSet {
    pub fn of(roles: &[Role]) -> RoleSet {
        RoleSet(roles.iter().fold(0, |bits, r| bits | r.bit()))
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub fn insert(&mut self, role: Role) {
        self.0 |= role.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Roles from organization (O) values: each a role name, or a
    /// comma-separated list of them. Unknown names are ignored (a
    /// certificate may carry an ordinary organization name too).
    pub fn from_organizations<'a>(values: impl IntoIterator<Item = &'a str>) -> RoleSet {
        let mut set = RoleSet::default();
        for value in values {
            for name in value.split(',') {
                if let Ok(role) = name.trim().parse::<Role>() {
                    set.insert(role);
                }
            }
        }
        set
    }
}

impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Role::as_str).collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// A verified caller: the certificate's common name and roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub roles: RoleSet,
}

/// Longest identity name kept (longer common names are cut, for logs).
pub const MAX_IDENTITY_NAME_BYTES: usize = 128;

impl Identity {
    /// The identity a certificate names (CN and O values), or why none.
    pub fn from_cert(der: &[u8]) -> Result<Identity, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("unparsable certificate: {e}"))?;
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_IDENTITY_NAME_BYTES)
            .collect::<String>();
        let roles = RoleSet::from_organizations(
            subject.iter_organization().filter_map(|o| o.as_str().ok()),
        );
        Ok(Identity {
            name: if name.is_empty() {
                "unnamed".into()
            } else {
                name
            },
            roles,
        })
    }
}

/// What the peer of one connection is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The listener runs without TLS (`--insecure`): nobody is checked.
    Insecure,
    /// TLS, but the peer presented no certificate.
    NoCertificate,
    /// TLS, and the peer's certificate failed verification (the reason).
    Untrusted(String),
    /// TLS with a certificate issued by the cluster CA.
    Verified(Identity),
}

impl Peer {
    /// Who, for logs and the audit log.
    pub fn describe(&self) -> String {
        match self {
            Peer::Insecure => "anonymous (insecure listener)".into(),
            Peer::NoCertificate => "anonymous (no client certificate)".into(),
            Peer::Untrusted(_) => "untrusted certificate".into(),
            Peer::Verified(id) => format!("{} [{}]", id.name, id.roles),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_organization_values_and_lists_ignoring_other_names() {
        let set = RoleSet::from_organizations(["trader,reader", "Acme Corp", " admin "]);
        assert!(set.contains(Role::Trader));
        assert!(set.contains(Role::Reader));
        assert!(set.contains(Role::Admin));
        assert!(!set.contains(Role::Node));
        assert!(!set.contains(Role::Risk));
        assert_eq!(set.to_string(), "admin,trader,reader");
        assert!(RoleSet::from_organizations(["Trader"]).is_empty());
    }

    #[test]
    fn unknown_role_name_is_refused_with_the_known_ones() {
        let err = "root".parse::<Role>().unwrap_err();
        assert!(err.contains("node, admin, risk, trader, reader"), "{err}");
    }
}
