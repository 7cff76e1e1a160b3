//! Read-side vocabulary: [`ReadOptions`] and [`Consistency`] (how fresh a
//! read must be, with the guarantee of each level), [`ReadPolicy`] (which
//! nodes reads go to) and [`Owner`] (whose balance), with conversions to the
//! protocol types.

use std::fmt;
use std::str::FromStr;

use tally_proto::v1 as pb;

/// How fresh a read must be. Every read response carries the `applied_index`
/// it was served at and `served_by` (the node id), whatever the level.
///
/// | level | guarantee | served by | cost |
/// |---|---|---|---|
/// | [`Linearizable`](Consistency::Linearizable) | every write acknowledged to anyone before the read began | leader, or a follower after fetching the leader's read index | a leadership check (one heartbeat round); on a follower also a round trip to the leader and a wait to apply |
/// | [`Session`](Consistency::Session) | read-your-writes and monotonic reads for this [`crate::Client`] (and its clones) | any node that has applied the session's index | local; waits on a lagging node |
/// | [`Bounded`](Consistency::Bounded) | at most `max_lag_entries` / `max_lag_ms` behind the leader | any node within the bound | local, never waits |
/// | [`AtLeastIndex`](Consistency::AtLeastIndex) | includes log index `min_index` | any node that has applied it | local; waits up to 5 s |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Whatever [`crate::ClientConfig::read_consistency_default`] says
    /// (linearizable unless configured otherwise). This is what
    /// `ReadOptions::default()` asks for. Sent without a client (e.g.
    /// [`ReadOptions::to_proto`]) it means linearizable.
    #[default]
    ClientDefault,
    /// Reflects every write acknowledged (to any client) before the read
    /// began: no stale read, ever. The leader confirms it still leads
    /// (ReadIndex) before serving; a follower asks the leader for its read
    /// index and serves once it has applied up to it. Which node gets the
    /// read depends on [`ReadPolicy`].
    Linearizable,
    /// Read-your-writes and monotonic reads within one client: the read
    /// reflects every write this client (or a clone of it) saw applied, and
    /// never an older state than any earlier read of this client returned.
    /// It may miss writes of *other* clients that were acknowledged before
    /// it began (it is not linearizable). Sent as `AT_LEAST_INDEX` with the
    /// highest applied index the client has seen (writes and reads), or
    /// [`ReadOptions::min_index`] if higher, so any node can serve it
    /// locally once it has applied that far. A write whose outcome was
    /// unknown is not covered until it is resolved.
    Session,
    /// Served locally by any node within `max_lag_entries` (entries behind
    /// the commit index the node last heard from the leader) and
    /// `max_lag_ms` (milliseconds since it last heard from a leader); 0 means
    /// no limit of that kind. A node outside its bound refuses with
    /// `STALE_REPLICA` and the client tries another (the leader always
    /// serves). No read-your-writes.
    Bounded,
    /// Served by any node once it has applied at least `min_index` (pass the
    /// `applied_index` of a write for read-your-writes across clients). A
    /// node waits up to 5 s, then refuses with `INDEX_NOT_REACHED`.
    AtLeastIndex,
}

impl Consistency {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::ClientDefault => "client-default",
            Consistency::Linearizable => "linearizable",
            Consistency::Session => "session",
            Consistency::Bounded => "bounded",
            Consistency::AtLeastIndex => "at-least-index",
        }
    }
}

/// Which nodes a [`crate::Client`] sends reads to
/// ([`crate::ClientConfig::read_policy`]). Writes always go to the leader.
///
/// | policy | linearizable reads | other reads |
/// |---|---|---|
/// | [`LeaderOnly`](ReadPolicy::LeaderOnly) | leader | leader |
/// | [`FollowersPreferred`](ReadPolicy::FollowersPreferred) | followers | followers |
/// | [`RoundRobin`](ReadPolicy::RoundRobin) (default) | leader | every configured node in turn |
/// | [`Nearest`](ReadPolicy::Nearest) | lowest observed latency | lowest observed latency |
///
/// Whatever the policy, a node that cannot serve the read (down, stale for
/// a bounded read, not caught up for an index read) makes the client try the
/// next node, the leader included, until the call's deadline. The policy
/// changes where reads go, never what they guarantee.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadPolicy {
    /// Every read goes to the node the client knows as leader (found from
    /// write answers, leader hints, or by asking each node's status when
    /// none is known). Cheapest linearizable reads; all read load on one node.
    LeaderOnly,
    /// Reads go to the configured nodes other than the known leader, in
    /// turn, linearizable reads included (a follower fetches the leader's
    /// read index, one extra round trip, and serves the data itself). Keeps
    /// read load off the leader.
    FollowersPreferred,
    /// Non-linearizable reads rotate over every configured node; linearizable
    /// reads go to the leader (it can confirm them without the extra hop).
    #[default]
    RoundRobin,
    /// Every read goes to the configured node with the lowest recently
    /// observed read latency (an exponentially weighted average of this
    /// client's own read round trips). Nodes not measured yet are tried
    /// first, one read in 16 goes round-robin to keep the measurements
    /// fresh, and a node that just failed is avoided for 2 s.
    Nearest,
}

impl ReadPolicy {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadPolicy::LeaderOnly => "leader-only",
            ReadPolicy::FollowersPreferred => "followers-preferred",
            ReadPolicy::RoundRobin => "round-robin",
            ReadPolicy::Nearest => "nearest",
        }
    }
}

/// Consistency of one read. `ReadOptions::default()` asks for the client's
/// configured default ([`Consistency::ClientDefault`], linearizable unless
/// [`crate::ClientConfig::read_consistency_default`] says otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReadOptions {
    /// The consistency level.
    pub consistency: Consistency,
    /// For [`Consistency::AtLeastIndex`]: the lowest acceptable applied
    /// index. For [`Consistency::Session`]: a floor added to the session's
    /// own index (0 for none).
    pub min_index: u64,
    /// For [`Consistency::Bounded`]: how many log entries behind is acceptable.
    pub max_lag_entries: u64,
    /// For [`Consistency::Bounded`]: how many milliseconds behind is acceptable.
    pub max_lag_ms: u64,
}

impl ReadOptions {
    /// Linearizable, whatever the client's default.
    pub fn linearizable() -> Self {
        ReadOptions {
            consistency: Consistency::Linearizable,
            ..ReadOptions::default()
        }
    }

    /// Read-your-writes and monotonic reads for this client
    /// ([`Consistency::Session`]).
    pub fn session() -> Self {
        ReadOptions {
            consistency: Consistency::Session,
            ..ReadOptions::default()
        }
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

    /// The protocol message. [`Consistency::ClientDefault`] becomes
    /// linearizable and [`Consistency::Session`] becomes `AT_LEAST_INDEX`
    /// with `min_index` as it is here (a [`crate::Client`] raises it to its
    /// session index before sending).
    pub fn to_proto(self) -> pb::ReadOptions {
        let consistency = match self.consistency {
            Consistency::ClientDefault | Consistency::Linearizable => {
                pb::ReadConsistency::Linearizable
            }
            Consistency::Bounded => pb::ReadConsistency::Bounded,
            Consistency::Session | Consistency::AtLeastIndex => pb::ReadConsistency::AtLeastIndex,
        };
        let linearizable = consistency == pb::ReadConsistency::Linearizable;
        pb::ReadOptions {
            consistency: consistency as i32,
            min_index: if linearizable { 0 } else { self.min_index },
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
    /// A client account's funding or margin wallet (its spot wallet is
    /// `Account`; [`Owner::wallet`] picks the right form).
    InWallet(u64, crate::accounts::Wallet),
}

impl Owner {
    /// The owner of `account`'s `wallet` balances.
    pub fn wallet(account: u64, wallet: crate::accounts::Wallet) -> Owner {
        match wallet {
            crate::accounts::Wallet::Spot => Owner::Account(account),
            other => Owner::InWallet(account, other),
        }
    }

    /// The protocol message.
    pub fn to_proto(self) -> pb::Owner {
        let (kind, account, wallet) = match self {
            Owner::Account(id) => (pb::OwnerKind::Account, id, pb::Wallet::Spot),
            Owner::InWallet(id, w) => (pb::OwnerKind::Account, id, w.to_proto()),
            Owner::External => (pb::OwnerKind::External, 0, pb::Wallet::Spot),
            Owner::Fees => (pb::OwnerKind::Fees, 0, pb::Wallet::Spot),
            Owner::Insurance => (pb::OwnerKind::Insurance, 0, pb::Wallet::Spot),
        };
        pb::Owner {
            kind: kind as i32,
            account,
            wallet: wallet as i32,
        }
    }

    /// From the protocol message; `None` for an unknown kind or wallet.
    pub fn from_proto(owner: &pb::Owner) -> Option<Owner> {
        match pb::OwnerKind::try_from(owner.kind).ok()? {
            pb::OwnerKind::Account => Some(Owner::wallet(
                owner.account,
                crate::accounts::Wallet::from_proto(owner.wallet)?,
            )),
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
            Owner::InWallet(id, wallet) => write!(f, "account {id} {wallet}"),
            Owner::External => f.write_str("external"),
            Owner::Fees => f.write_str("fees"),
            Owner::Insurance => f.write_str("insurance"),
        }
    }
}

/// Parses an account number (its spot wallet), `ACCOUNT:WALLET` (e.g.
/// `7:margin`), or `external` / `fees` / `insurance` (case-insensitive).
impl FromStr for Owner {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "external" => Ok(Owner::External),
            "fees" => Ok(Owner::Fees),
            "insurance" => Ok(Owner::Insurance),
            other if other.contains(':') => {
                let (id, wallet) = other.split_once(':').unwrap_or((other, ""));
                let id = id
                    .parse::<u64>()
                    .map_err(|_| format!("{s:?}: {id:?} is not an account number"))?;
                Ok(Owner::wallet(id, wallet.parse()?))
            }
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
            wallet: 0,
        };
        assert_eq!(Owner::from_proto(&unknown), None);
        // Wallets: `ACCOUNT:WALLET`, spot is the plain account.
        use crate::accounts::Wallet;
        let margin = Owner::InWallet(7, Wallet::Margin);
        assert_eq!("7:margin".parse::<Owner>(), Ok(margin));
        assert_eq!("7:spot".parse::<Owner>(), Ok(Owner::Account(7)));
        assert_eq!(Owner::from_proto(&margin.to_proto()), Some(margin));
        assert_eq!(margin.to_string(), "account 7 margin");
        assert!("7:savings".parse::<Owner>().is_err());
        let unknown_wallet = pb::Owner {
            wallet: 9,
            ..Owner::Account(7).to_proto()
        };
        assert_eq!(Owner::from_proto(&unknown_wallet), None);
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
        assert_eq!(
            ReadOptions::linearizable().to_proto(),
            pb::ReadOptions::default()
        );
        let s = ReadOptions {
            min_index: 9,
            ..ReadOptions::session()
        }
        .to_proto();
        assert_eq!(s.consistency, pb::ReadConsistency::AtLeastIndex as i32);
        assert_eq!(s.min_index, 9);
        assert_eq!(ReadPolicy::default(), ReadPolicy::RoundRobin);
    }
}
