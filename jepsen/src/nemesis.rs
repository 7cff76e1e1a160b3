//! Nemeses: faults behind one trait, so later issues can add new ones
//! (clock faults, ...) without touching the runner: implement [`Nemesis`]
//! and add it to [`build`]. `upgrade` rolls nodes between two binaries
//! (`--upgrade-from` and `--tallyd`) the way an operator does.
//!
//! A nemesis has a `start` (inject; returns what it did) and a `stop`
//! (heal). The runner's schedule picks a random enabled nemesis, starts it,
//! waits, stops it, waits, and so on; with `--overlap` a network nemesis
//! (loss or delay) may run together with a process or partition fault.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::bail;
use futures::future::LocalBoxFuture;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::cluster::Cluster;

/// A fault.
pub trait Nemesis {
    /// Name as on the command line and in the history (`kill`, `partition-ring`, ...).
    fn name(&self) -> &str;
    /// Is it a network-quality fault (loss, delay) that may overlap others?
    fn is_network_quality(&self) -> bool {
        false
    }
    /// Injects the fault; returns a description naming the targets (and
    /// `leader` when the leader was targeted).
    fn start<'a>(
        &'a mut self,
        cx: &'a mut Cluster,
        rng: &'a mut StdRng,
    ) -> LocalBoxFuture<'a, anyhow::Result<String>>;
    /// Heals it; returns a description.
    fn stop<'a>(&'a mut self, cx: &'a mut Cluster) -> LocalBoxFuture<'a, anyhow::Result<String>>;
}

/// Every nemesis name accepted by `--nemesis` (groups expand, see [`expand`]).
pub const ALL: [&str; 11] = [
    "partition-leader",
    "partition-halves",
    "partition-bridge",
    "partition-ring",
    "kill",
    "pause",
    "member",
    "transfer",
    "loss",
    "delay",
    "upgrade",
];

/// Expands groups: `partition` is every partition kind, `all` everything
/// but `upgrade` (it needs `--upgrade-from`), `none` nothing.
pub fn expand(list: &str) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let names: Vec<&str> = match word {
            // `upgrade` needs a second binary: named explicitly only.
            "all" => ALL.iter().copied().filter(|n| *n != "upgrade").collect(),
            "none" => Vec::new(),
            "partition" => ALL
                .iter()
                .copied()
                .filter(|n| n.starts_with("partition"))
                .collect(),
            other if ALL.contains(&other) => vec![other],
            other => bail!(
                "unknown nemesis {other:?}; known: all, none, partition, {}",
                ALL.join(", ")
            ),
        };
        for n in names {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
        }
    }
    Ok(out)
}

/// Builds the nemesis called `name`.
pub fn build(name: &str, nodes: usize) -> anyhow::Result<Box<dyn Nemesis>> {
    Ok(match name {
        "partition-leader" => Box::new(Partition {
            kind: PartitionKind::LeaderIsolated,
            name: name.into(),
        }),
        "partition-halves" => Box::new(Partition {
            kind: PartitionKind::Halves,
            name: name.into(),
        }),
        "partition-bridge" => Box::new(Partition {
            kind: PartitionKind::Bridge,
            name: name.into(),
        }),
        "partition-ring" if nodes >= 5 => Box::new(Partition {
            kind: PartitionKind::Ring,
            name: name.into(),
        }),
        // With 3 nodes a majorities ring is no partition at all: use halves.
        "partition-ring" => Box::new(Partition {
            kind: PartitionKind::Halves,
            name: "partition-halves".into(),
        }),
        "kill" => Box::new(Kill { host: None }),
        "pause" => Box::new(Pause { host: None }),
        "member" => Box::new(Member { host: None }),
        "transfer" => Box::new(Transfer),
        "upgrade" => Box::new(Upgrade { forward: true }),
        "loss" => Box::new(Loss { probability: 0.2 }),
        "delay" => Box::new(Delay {
            delay_ms: 100,
            jitter_ms: 100,
        }),
        other => bail!("unknown nemesis {other:?}"),
    })
}

/// A random member host, the leader with probability 1/2 (when known).
async fn pick_target(cx: &Cluster, rng: &mut StdRng) -> Option<(usize, bool)> {
    let leader = cx.leader().await;
    let members: Vec<usize> = cx
        .slots
        .iter()
        .filter(|s| s.member && s.child.is_some())
        .map(|s| s.host)
        .collect();
    if let Some(l) = leader
        && (rng.random_bool(0.5) || members.len() <= 1)
    {
        return Some((l, true));
    }
    let h = *members.get(rng.random_range(0..members.len().max(1)))?;
    Some((h, leader == Some(h)))
}

fn role(is_leader: bool) -> &'static str {
    if is_leader { "leader" } else { "follower" }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartitionKind {
    /// The leader with at most one other node, cut from the majority.
    LeaderIsolated,
    /// Random halves.
    Halves,
    /// Two halves joined by one node that sees both.
    Bridge,
    /// Each node sees a majority (its neighbours on a ring), no two the same.
    Ring,
}

/// The connectivity of a partition: `sees[i]` = hosts `i` receives from.
pub fn grouping(components: &[Vec<usize>], n: usize) -> Vec<BTreeSet<usize>> {
    let mut sees = vec![BTreeSet::new(); n];
    for comp in components {
        for &a in comp {
            for &b in comp {
                if a < n && b < n {
                    sees[a].insert(b);
                }
            }
        }
    }
    sees
}

/// Majorities ring over a random permutation: node at position p sees positions p-1, p, p+1 (n >= 5).
pub fn ring(order: &[usize]) -> Vec<BTreeSet<usize>> {
    let n = order.len();
    let mut sees = vec![BTreeSet::new(); n];
    for p in 0..n {
        for d in [n - 1, 0, 1] {
            sees[order[p]].insert(order[(p + d) % n]);
        }
    }
    sees
}

struct Partition {
    kind: PartitionKind,
    name: String,
}

impl Nemesis for Partition {
    fn name(&self) -> &str {
        &self.name
    }

    fn start<'a>(
        &'a mut self,
        cx: &'a mut Cluster,
        rng: &'a mut StdRng,
    ) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let n = cx.slots.len();
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(rng);
            let (sees, what) = match self.kind {
                PartitionKind::LeaderIsolated => {
                    let leader = cx.leader().await.unwrap_or(order[0]);
                    let mut minority = vec![leader];
                    let rest: Vec<usize> = order.iter().copied().filter(|&h| h != leader).collect();
                    let minority_size = n.saturating_sub(1) / 2; // 5 -> 2, 3 -> 1
                    minority.extend(rest.iter().copied().take(minority_size.saturating_sub(1)));
                    let majority: Vec<usize> = rest
                        .iter()
                        .copied()
                        .filter(|h| !minority.contains(h))
                        .collect();
                    let what = format!(
                        "leader {} isolated in minority {minority:?} from {majority:?}",
                        cx.name(leader)
                    );
                    (grouping(&[minority, majority], n), what)
                }
                PartitionKind::Halves => {
                    let cut = n / 2;
                    let (a, b) = order.split_at(cut);
                    (
                        grouping(&[a.to_vec(), b.to_vec()], n),
                        format!("halves {a:?} | {b:?}"),
                    )
                }
                PartitionKind::Bridge => {
                    let bridge = order[0];
                    let rest = &order[1..];
                    let (a, b) = rest.split_at(rest.len() / 2);
                    let mut left = a.to_vec();
                    left.push(bridge);
                    let mut right = b.to_vec();
                    right.push(bridge);
                    (
                        grouping(&[left, right], n),
                        format!("bridge n{bridge} between {a:?} and {b:?}"),
                    )
                }
                PartitionKind::Ring => (ring(&order), format!("majorities ring {order:?}")),
            };
            let mut what = what;
            if self.kind != PartitionKind::LeaderIsolated
                && let Some(l) = cx.leader().await
            {
                if sees[l].len() < n / 2 + 1 {
                    what.push_str(&format!("; leader {} cut off from a majority", cx.name(l)));
                } else {
                    what.push_str(&format!("; old leader n{l} keeps a majority"));
                }
            }
            cx.hosts.partition(&sees)?;
            Ok(what)
        })
    }

    fn stop<'a>(&'a mut self, cx: &'a mut Cluster) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            cx.hosts.heal_partition()?;
            Ok("healed".to_string())
        })
    }
}

struct Kill {
    host: Option<usize>,
}

impl Nemesis for Kill {
    fn name(&self) -> &str {
        "kill"
    }

    fn start<'a>(
        &'a mut self,
        cx: &'a mut Cluster,
        rng: &'a mut StdRng,
    ) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let Some((h, is_leader)) = pick_target(cx, rng).await else {
                bail!("no node to kill")
            };
            let name = cx.name(h);
            cx.kill(h);
            self.host = Some(h);
            Ok(format!("kill -9 {} {name}", role(is_leader)))
        })
    }

    fn stop<'a>(&'a mut self, cx: &'a mut Cluster) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let Some(h) = self.host.take() else {
                return Ok("nothing to restart".to_string());
            };
            cx.restart(h).await?;
            Ok(format!("restarted {}", cx.name(h)))
        })
    }
}

struct Pause {
    host: Option<usize>,
}

impl Nemesis for Pause {
    fn name(&self) -> &str {
        "pause"
    }

    fn start<'a>(
        &'a mut self,
        cx: &'a mut Cluster,
        rng: &'a mut StdRng,
    ) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let Some((h, is_leader)) = pick_target(cx, rng).await else {
                bail!("no node to pause")
            };
            cx.pause(h)?;
            self.host = Some(h);
            Ok(format!("SIGSTOP {} {}", role(is_leader), cx.name(h)))
        })
    }

    fn stop<'a>(&'a mut self, cx: &'a mut Cluster) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let Some(h) = self.host.take() else {
                return Ok("nothing to resume".to_string());
            };
            cx.resume(h)?;
            Ok(format!("SIGCONT {}", cx.name(h)))
        })
    }
}

/// Removes a node, then (on stop) adds a node with a new id on that host.
struct Member {
    host: Option<usize>,
}

impl Nemesis for Member {
    fn name(&self) -> &str {
        "member"
    }

    fn start<'a>(
        &'a mut self,
        cx: &'a mut Cluster,
        rng: &'a mut StdRng,
    ) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let Some((h, is_leader)) = pick_target(cx, rng).await else {
                bail!("no node to remove")
            };
            let name = cx.name(h);
            cx.remove_node(h).await?;
            self.host = Some(h);
            Ok(format!("removed {} {name}", role(is_leader)))
        })
    }

    fn stop<'a>(&'a mut self, cx: &'a mut Cluster) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let Some(h) = self.host.take() else {
                return Ok("nothing to add".to_string());
            };
            let id = cx.add_fresh_node(h).await?;
            Ok(format!("added fresh node id {id} on n{h} and promoted it"))
        })
    }
}

struct Transfer;

impl Nemesis for Transfer {
    fn name(&self) -> &str {
        "transfer"
    }

    fn start<'a>(
        &'a mut self,
        cx: &'a mut Cluster,
        rng: &'a mut StdRng,
    ) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let Some(leader) = cx.leader().await else {
                bail!("no leader to transfer from")
            };
            let others: Vec<usize> = cx
                .slots
                .iter()
                .filter(|s| s.member && s.child.is_some() && s.host != leader)
                .map(|s| s.host)
                .collect();
            let Some(&to) = others.get(rng.random_range(0..others.len().max(1))) else {
                bail!("no other voter")
            };
            cx.transfer_leader(leader, to).await?;
            Ok(format!("leadership {} -> {}", cx.name(leader), cx.name(to)))
        })
    }

    fn stop<'a>(&'a mut self, _cx: &'a mut Cluster) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move { Ok("nothing to heal".to_string()) })
    }
}

/// One rolling-upgrade step, as an operator does it: a node (the leader
/// too) is moved to the other binary on the same data dir: leadership
/// handed over if it leads, SIGTERM, the other binary started. Forward
/// (the previous release to this build) until every member runs this
/// build, then back (a rollback, possible before finalizing), and so on:
/// the cluster runs mixed versions most of the run. The cluster version
/// is never raised, so the two binaries stay compatible. Nothing to heal.
struct Upgrade {
    forward: bool,
}

impl Upgrade {
    /// Running, unpaused members on the binary this direction leaves.
    fn candidates(&self, cx: &Cluster) -> Vec<usize> {
        cx.slots
            .iter()
            .filter(|s| s.member && s.child.is_some() && !s.paused && s.on_old == self.forward)
            .map(|s| s.host)
            .collect()
    }
}

impl Nemesis for Upgrade {
    fn name(&self) -> &str {
        "upgrade"
    }

    fn start<'a>(
        &'a mut self,
        cx: &'a mut Cluster,
        rng: &'a mut StdRng,
    ) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            if cx.upgrade_from.is_none() {
                bail!("the upgrade nemesis needs --upgrade-from (the previous release's tallyd)");
            }
            let mut hosts = self.candidates(cx);
            if hosts.is_empty() {
                self.forward = !self.forward;
                hosts = self.candidates(cx);
            }
            let Some(&h) = hosts.get(rng.random_range(0..hosts.len().max(1))) else {
                bail!("no running member to upgrade")
            };
            let leader = cx.leader().await;
            let mut what = String::new();
            if leader == Some(h)
                && let Some(&to) = cx
                    .slots
                    .iter()
                    .filter(|s| s.member && s.child.is_some() && !s.paused && s.host != h)
                    .map(|s| &s.host)
                    .next()
            {
                match cx.transfer_leader(h, to).await {
                    Ok(()) => {
                        what.push_str(&format!("leadership {} -> {}; ", cx.name(h), cx.name(to)))
                    }
                    Err(e) => what.push_str(&format!("transfer failed ({e}); ")),
                }
            }
            let graceful = cx.stop_graceful(h, Duration::from_secs(15)).await;
            cx.slots[h].on_old = !self.forward;
            cx.spawn_node(h)?;
            cx.wait_up(h, Duration::from_secs(60)).await?;
            what.push_str(&format!(
                "{} {} to the {} binary{}",
                if self.forward {
                    "upgraded"
                } else {
                    "rolled back"
                },
                cx.name(h),
                if self.forward { "new" } else { "previous" },
                if graceful {
                    ""
                } else {
                    " (SIGTERM timed out: killed)"
                }
            ));
            Ok(what)
        })
    }

    fn stop<'a>(&'a mut self, _cx: &'a mut Cluster) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move { Ok("nothing to heal".to_string()) })
    }
}

struct Loss {
    probability: f64,
}

impl Nemesis for Loss {
    fn name(&self) -> &str {
        "loss"
    }
    fn is_network_quality(&self) -> bool {
        true
    }

    fn start<'a>(
        &'a mut self,
        cx: &'a mut Cluster,
        _rng: &'a mut StdRng,
    ) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            cx.hosts.loss(self.probability)?;
            Ok(format!(
                "drop {:.0}% of packets between nodes",
                self.probability * 100.0
            ))
        })
    }

    fn stop<'a>(&'a mut self, cx: &'a mut Cluster) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            cx.hosts.heal_loss()?;
            Ok("healed".to_string())
        })
    }
}

struct Delay {
    delay_ms: u64,
    jitter_ms: u64,
}

impl Nemesis for Delay {
    fn name(&self) -> &str {
        "delay"
    }
    fn is_network_quality(&self) -> bool {
        true
    }

    fn start<'a>(
        &'a mut self,
        cx: &'a mut Cluster,
        _rng: &'a mut StdRng,
    ) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            cx.set_delay(self.delay_ms, self.jitter_ms)?;
            // The proxies poll their control files every 100 ms.
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok(format!(
                "delay {} ms + 0..{} ms jitter on every node's inbound Raft traffic",
                self.delay_ms, self.jitter_ms
            ))
        })
    }

    fn stop<'a>(&'a mut self, cx: &'a mut Cluster) -> LocalBoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            cx.set_delay(0, 0)?;
            Ok("healed".to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_expand() -> anyhow::Result<()> {
        assert_eq!(expand("partition,kill")?.len(), 5);
        assert_eq!(expand("upgrade,kill")?, vec!["upgrade", "kill"]);
        assert_eq!(expand("all")?.len(), ALL.len() - 1);
        assert!(!expand("all")?.contains(&"upgrade".to_string()));
        assert!(expand("none")?.is_empty());
        assert!(expand("bogus").is_err());
        Ok(())
    }

    #[test]
    fn ring_gives_each_node_a_distinct_majority() {
        let sees = ring(&[0, 1, 2, 3, 4]);
        for s in &sees {
            assert_eq!(s.len(), 3);
        }
        let distinct: BTreeSet<_> = sees.iter().collect();
        assert_eq!(distinct.len(), 5);
        // Symmetric.
        for (i, s) in sees.iter().enumerate() {
            for &j in s {
                assert!(sees[j].contains(&i));
            }
        }
    }
}
