//! Read-side vocabulary: [`ReadOptions`] (consistency of a read) and
//! [`Owner`] (whose balance), with conversions to the protocol types.

use std::fmt;
use std::str::FromStr;

use tally_proto::v1 as pb;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began. Sent to the
    /// leader (a follower may serve it after a read-index round trip).
    #[default]
    Linearizable,
    /// Served locally by any node within `max_lag_entries` / `max_lag_ms`.
    Bounded,
    /// Served by any node once it has applied at least `min_index` (pass the
    /// `applied_index` of a write for read-your-writes).
    AtLeastIndex,
}

impl Consistency {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Bounded => "bounded",
            Consistency::AtLeastIndex => "at-least-index",
        }
    }
}

/// Consistency of one read. `ReadOptions::default()` is linearizable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReadOptions {
    /// The consistency level.
    pub consistency: Consistency,
    /// For [`Consistency::AtLeastIndex`]: the lowest acceptable applied index.
    pub min_index: u64,
    /// For [`Consistency::Bounded`]: how many log entries behind is acceptable.
    pub max_lag_entries: u64,
    /// For [`Consistency::Bounded`]: how many milliseconds behind is acceptable.
    pub max_lag_ms: u64,
}

impl ReadOptions {
    /// Linearizable (the default).
    pub fn linearizable() -> Self {
        ReadOptions::default()
    }

    /// A local read on any node at most `max_lag_entries` entries or
    /// `max_lag_ms` milliseconds behind (0 = no limit of that kind, as the
    /// server interprets it).
    pub fn bounded(max_lag_entries: u64, max_lag_ms: u64) -> Self {
        ReadOptions {
            consistency: Consistency::Bounded,
            max_lag_entries,
            max_lag_ms,
            ..ReadOptions::default()
        }
    }

    /// A read on any node that has applied at least `min_index`.
    pub fn at_least_index(min_index: u64) -> Self {
        ReadOptions {
            consistency: Consistency::AtLeastIndex,
            min_index,
            ..ReadOptions::default()
        }
    }

    /// The protocol message.
    pub fn to_proto(self) -> pb::ReadOptions {
        let consistency = match self.consistency {
            Consistency::Linearizable => pb::ReadConsistency::Linearizable,
            Consistency::Bounded => pb::ReadConsistency::Bounded,
            Consistency::AtLeastIndex => pb::ReadConsistency::AtLeastIndex,
        };
        pb::ReadOptions {
            consistency: consistency as i32,
            min_index: self.min_index,
            max_lag_entries: self.max_lag_entries,
            max_lag_ms: self.max_lag_ms,
        }
    }
}

impl From<ReadOptions> for pb::ReadOptions {
    fn from(options: ReadOptions) -> Self {
        options.to_proto()
    }
}

/// Who owns a balance: a client account or one of the per-asset system accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// A client account.
    Account(u64),
    /// The other side of deposits and withdrawals (may be negative).
    External,
    /// Collected trading fees.
    Fees,
    /// The insurance fund.
    Insurance,
}

impl Owner {
    /// The protocol message.
    pub fn to_proto(self) -> pb::Owner {
        let (kind, account) = match self {
            Owner::Account(id) => (pb::OwnerKind::Account, id),
            Owner::External => (pb::OwnerKind::External, 0),
            Owner::Fees => (pb::OwnerKind::Fees, 0),
            Owner::Insurance => (pb::OwnerKind::Insurance, 0),
        };
        pb::Owner {
            kind: kind as i32,
            account,
        }
    }

    /// From the protocol message; `None` for an unknown kind.
    pub fn from_proto(owner: &pb::Owner) -> Option<Owner> {
        match pb::OwnerKind::try_from(owner.kind).ok()? {
            pb::OwnerKind::Account => Some(Owner::Account(owner.account)),
            pb::OwnerKind::External => Some(Owner::External),
            pb::OwnerKind::Fees => Some(Owner::Fees),
            pb::OwnerKind::Insurance => Some(Owner::Insurance),
        }
    }
}

impl From<u64> for Owner {
    fn from(account: u64) -> Self {
        Owner::Account(account)
    }
}

impl From<Owner> for pb::Owner {
    fn from(owner: Owner) -> Self {
        owner.to_proto()
    }
}

/// `account 7`, `external`, `fees`, `insurance`.
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Account(id) => write!(f, "account {id}"),
            Owner::External => f.write_str("external"),
            Owner::Fees => f.write_str("fees"),
            Owner::Insurance => f.write_str("insurance"),
        }
    }
}

/// Parses an account number or `external` / `fees` / `insurance`
/// (case-insensitive).
impl FromStr for Owner {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "external" => Ok(Owner::External),
            "fees" => Ok(Owner::Fees),
            "insurance" => Ok(Owner::Insurance),
            other => other.parse::<u64>().map(Owner::Account).map_err(|_| {
                format!("{s:?} is neither an account number nor external, fees or insurance")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip() {
        for owner in [
            Owner::Account(7),
            Owner::External,
            Owner::Fees,
            Owner::Insurance,
        ] {
            assert_eq!(Owner::from_proto(&owner.to_proto()), Some(owner));
        }
        assert_eq!("FEES".parse::<Owner>(), Ok(Owner::Fees));
        assert_eq!("42".parse::<Owner>(), Ok(Owner::Account(42)));
        assert!("-1".parse::<Owner>().is_err());
        assert!("bank".parse::<Owner>().is_err());
        assert_eq!(Owner::Account(7).to_string(), "account 7");
        let unknown = pb::Owner {
            kind: 99,
            account: 0,
        };
        assert_eq!(Owner::from_proto(&unknown), None);
    }

    #[test]
    fn read_options_to_proto() {
        assert_eq!(
            ReadOptions::default().to_proto(),
            pb::ReadOptions::default()
        );
        let p = ReadOptions::at_least_index(42).to_proto();
        assert_eq!(p.consistency, pb::ReadConsistency::AtLeastIndex as i32);
        assert_eq!(p.min_index, 42);
        let b = ReadOptions::bounded(100, 0).to_proto();
        assert_eq!(b.consistency, pb::ReadConsistency::Bounded as i32);
        assert_eq!(b.max_lag_entries, 100);
    }
}
