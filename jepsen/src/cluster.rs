//! The cluster under test: one `tallyd` (and one delay proxy) per host, the
//! node id each host currently runs, and the operations nemeses need
//! (kill, restart, pause, resume, replace a node with a fresh id).
//!
//! Ports on every host: `7000` tallyd (clients connect here directly),
//! `7100` the delay proxy in front of it (what the node advertises, so
//! peers' Raft traffic passes the proxy).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tally_client::proto::v1::admin_client::AdminClient;
use tally_client::proto::v1::ledger_client::LedgerClient;
use tally_client::proto::v1::{
    GetAccountRequest, GetStateHashRequest, Member, NodeStatus, NodeStatusRequest,
    TransferLeaderRequest,
};
use tally_client::{Client, ClientConfig, ReadOptions};

use crate::hosts::Hosts;

/// tallyd's port on every host.
pub const NODE_PORT: u16 = 7000;
/// The delay proxy's port on every host.
pub const PROXY_PORT: u16 = 7100;

/// What runs on one host.
pub struct Slot {
    /// Host index.
    pub host: usize,
    /// Node id running there now (fresh after a replacement).
    pub node_id: u64,
    /// Data dir of the current node.
    pub data_dir: PathBuf,
    /// The tallyd process, if running.
    pub child: Option<Child>,
    /// SIGSTOPped?
    pub paused: bool,
    /// Is the node a member (voter) of the cluster?
    pub member: bool,
    /// The proxy process.
    pub proxy: Option<Child>,
    /// The proxy's control file.
    pub proxy_control: PathBuf,
    /// Runs the other binary (`Cluster::upgrade_from`), not `tallyd`.
    pub on_old: bool,
}

/// The cluster. Dropping it kills every process it started (the hosts tear
/// down their namespaces after that).
pub struct Cluster {
    /// Slots, one per host.
    pub slots: Vec<Slot>,
    /// Run directory (data dirs, control files).
    pub run_dir: PathBuf,
    /// Cluster id passed to tallyd.
    pub cluster_id: String,
    /// Next fresh node id.
    pub next_id: u64,
    tallyd: PathBuf,
    /// The previous release's tallyd (`--upgrade-from`): every node starts
    /// on it and the `upgrade` nemesis rolls nodes between it and `tallyd`.
    pub upgrade_from: Option<PathBuf>,
    self_exe: PathBuf,
    /// Extra `tallyd run` arguments for every node.
    pub node_args: Vec<String>,
    /// A client over every node's direct address (admin calls, final reads).
    pub client: Client,
    // Declared last: dropped after the processes above are killed.
    /// The hosts.
    pub hosts: Hosts,
}

impl Cluster {
    /// Starts a proxy and a node on every host and initializes the cluster.
    pub async fn start(
        hosts: Hosts,
        run_dir: &Path,
        tallyd: &Path,
        upgrade_from: Option<&Path>,
        self_exe: &Path,
        node_args: &[String],
    ) -> anyhow::Result<Cluster> {
        let endpoints: Vec<String> = hosts
            .hosts
            .iter()
            .map(|h| format!("{}:{NODE_PORT}", h.ip))
            .collect();
        let client = Client::new(ClientConfig {
            timeout_ms: 10_000,
            ..ClientConfig::new(endpoints)
        })?;
        let mut cluster = Cluster {
            slots: Vec::new(),
            run_dir: run_dir.to_path_buf(),
            cluster_id: format!("jepsen-{}", hosts.run),
            next_id: 1,
            tallyd: tallyd.to_path_buf(),
            upgrade_from: upgrade_from.map(Path::to_path_buf),
            self_exe: self_exe.to_path_buf(),
            node_args: node_args.to_vec(),
            client,
            hosts,
        };
        for host in 0..cluster.hosts.hosts.len() {
            let node_id = cluster.fresh_id();
            let control = run_dir.join(format!("proxy-n{host}.conf"));
            crate::proxy::write_control(&control, 0, 0)?;
            cluster.slots.push(Slot {
                host,
                node_id,
                data_dir: run_dir.join(format!("n{host}-id{node_id}")),
                child: None,
                paused: false,
                member: true,
                proxy: None,
                proxy_control: control,
                on_old: upgrade_from.is_some(),
            });
            cluster.spawn_proxy(host)?;
            cluster.spawn_node(host)?;
        }
        for host in 0..cluster.slots.len() {
            cluster.wait_up(host, Duration::from_secs(60)).await?;
        }
        let members: Vec<Member> = cluster
            .slots
            .iter()
            .map(|s| Member {
                node_id: s.node_id,
                addr: cluster.advertised(s.host),
            })
            .collect();
        cluster.client.init(members).await.context("init")?;
        cluster.wait_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Host `i`'s direct node address.
    pub fn direct(&self, host: usize) -> String {
        format!("{}:{NODE_PORT}", self.hosts.hosts[host].ip)
    }

    /// Host `i`'s advertised (proxied) address.
    pub fn advertised(&self, host: usize) -> String {
        format!("{}:{PROXY_PORT}", self.hosts.hosts[host].ip)
    }

    /// Every host's direct address.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.slots.len()).map(|h| self.direct(h)).collect()
    }

    /// `n<host> (id <id>)`.
    pub fn name(&self, host: usize) -> String {
        format!("n{host} (id {})", self.slots[host].node_id)
    }

    fn spawn_in_ns(
        &self,
        host: usize,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> anyhow::Result<Child> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.hosts.hosts[host].ns])
            .arg(program)
            .args(args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {} in {}",
                    program.display(),
                    self.hosts.hosts[host].ns
                )
            })?;
        Ok(child)
    }

    fn spawn_proxy(&mut self, host: usize) -> anyhow::Result<()> {
        let args = vec![
            "proxy".to_string(),
            "--listen".to_string(),
            self.advertised(host),
            "--upstream".to_string(),
            self.direct(host),
            "--control".to_string(),
            self.slots[host].proxy_control.display().to_string(),
        ];
        let log = self.run_dir.join(format!("proxy-n{host}.log"));
        let child = self.spawn_in_ns(host, &self.self_exe.clone(), &args, &log)?;
        self.slots[host].proxy = Some(child);
        Ok(())
    }

    /// Starts the slot's node process (from its data dir).
    pub fn spawn_node(&mut self, host: usize) -> anyhow::Result<()> {
        let slot = &self.slots[host];
        if slot.child.is_some() {
            bail!("{} is already running", self.name(host));
        }
        std::fs::create_dir_all(&slot.data_dir)?;
        let args: Vec<String> = vec![
            "run".into(),
            "--node-id".into(),
            slot.node_id.to_string(),
            "--listen".into(),
            self.direct(host),
            "--advertise".into(),
            self.advertised(host),
            "--cluster-id".into(),
            self.cluster_id.clone(),
            "--data-dir".into(),
            slot.data_dir.display().to_string(),
            "--snapshot-every-entries".into(),
            "2000".into(),
            // The suite tests consensus and the ledger under faults; TLS is
            // tested by the integration tests (tests/tests/security.rs).
            "--insecure".into(),
        ];
        let args: Vec<String> = args
            .into_iter()
            .chain(self.node_args.iter().cloned())
            .collect();
        let log = slot.data_dir.join("tallyd.log");
        let bin = match (&self.upgrade_from, slot.on_old) {
            (Some(old), true) => old.clone(),
            _ => self.tallyd.clone(),
        };
        let child = self.spawn_in_ns(host, &bin, &args, &log)?;
        self.slots[host].child = Some(child);
        self.slots[host].paused = false;
        Ok(())
    }

    /// Waits until the host's node answers NodeStatus.
    pub async fn wait_up(&self, host: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if node_status(&self.direct(host)).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not come up within {timeout:?}", self.name(host));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The host whose running, unpaused node says it is leader (highest term wins).
    pub async fn leader(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for s in self
            .slots
            .iter()
            .filter(|s| s.child.is_some() && !s.paused && s.member)
        {
            if let Ok(st) = node_status(&self.direct(s.host)).await
                && st.role == "leader"
                && best.is_none_or(|(t, _)| st.term > t)
            {
                best = Some((st.term, s.host));
            }
        }
        best.map(|(_, h)| h)
    }

    /// Waits for a leader.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(h) = self.leader().await {
                return Ok(h);
            }
            if Instant::now() > deadline {
                bail!("no leader within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9` the node on `host`.
    pub fn kill(&mut self, host: usize) {
        if let Some(mut child) = self.slots[host].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.slots[host].paused = false;
    }

    /// Stops the node on `host` with SIGTERM (graceful: a leader hands
    /// leadership over first) and waits for it to exit, at most
    /// `timeout`, then `kill -9`. Returns whether it exited by itself.
    pub async fn stop_graceful(&mut self, host: usize, timeout: Duration) -> bool {
        let Some(mut child) = self.slots[host].child.take() else {
            return false;
        };
        let _ = crate::hosts::run("kill", &["-TERM", &child.id().to_string()]);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGSTOP the node on `host`.
    pub fn pause(&mut self, host: usize) -> anyhow::Result<()> {
        let Some(child) = &self.slots[host].child else {
            bail!("{} is not running", self.name(host))
        };
        crate::hosts::run("kill", &["-STOP", &child.id().to_string()])?;
        self.slots[host].paused = true;
        Ok(())
    }

    /// SIGCONT the node on `host`.
    pub fn resume(&mut self, host: usize) -> anyhow::Result<()> {
        if let Some(child) = &self.slots[host].child {
            crate::hosts::run("kill", &["-CONT", &child.id().to_string()])?;
        }
        self.slots[host].paused = false;
        Ok(())
    }

    /// Restarts the node on `host` if it is not running (same id, same data).
    pub async fn restart(&mut self, host: usize) -> anyhow::Result<()> {
        if self.slots[host].child.is_none() {
            self.spawn_node(host)?;
            self.wait_up(host, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// Sets the delay of every host's proxy.
    pub fn set_delay(&self, delay_ms: u64, jitter_ms: u64) -> anyhow::Result<()> {
        for s in &self.slots {
            crate::proxy::write_control(&s.proxy_control, delay_ms, jitter_ms)?;
        }
        Ok(())
    }

    /// Asks the leader to hand leadership to the node on `host`.
    pub async fn transfer_leader(&self, leader: usize, host: usize) -> anyhow::Result<()> {
        let mut admin = AdminClient::connect(format!("http://{}", self.direct(leader))).await?;
        let mut req = tonic::Request::new(TransferLeaderRequest {
            node_id: self.slots[host].node_id,
        });
        req.set_timeout(Duration::from_secs(10));
        admin.transfer_leader(req).await?;
        Ok(())
    }

    /// Removes the node on `host` from the cluster and stops it.
    pub async fn remove_node(&mut self, host: usize) -> anyhow::Result<()> {
        let id = self.slots[host].node_id;
        let client = self.client.with_timeout_ms(30_000);
        client
            .remove(id, false)
            .await
            .with_context(|| format!("removing node {id}"))?;
        self.slots[host].member = false;
        self.kill(host);
        Ok(())
    }

    /// Starts a node with a fresh id on `host` (empty data dir), adds it as
    /// a learner and promotes it to voter.
    pub async fn add_fresh_node(&mut self, host: usize) -> anyhow::Result<u64> {
        self.kill(host);
        let id = self.fresh_id();
        self.slots[host].node_id = id;
        self.slots[host].data_dir = self.run_dir.join(format!("n{host}-id{id}"));
        self.spawn_node(host)?;
        self.wait_up(host, Duration::from_secs(60)).await?;
        let client = self.client.with_timeout_ms(60_000);
        client
            .add_learner(id, self.advertised(host))
            .await
            .with_context(|| format!("adding learner {id}"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match client.promote(id).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing_like(&format!("promote {id}: {e}; retrying"));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e).with_context(|| format!("promoting node {id}")),
            }
        }
        self.slots[host].member = true;
        Ok(id)
    }

    /// Undoes every process fault: resume paused nodes, restart killed
    /// members, zero the proxy delay. (Network rules are healed by the nemesis.)
    pub async fn heal_processes(&mut self) -> anyhow::Result<()> {
        self.set_delay(0, 0)?;
        for host in 0..self.slots.len() {
            if self.slots[host].paused {
                self.resume(host)?;
            }
            if self.slots[host].member {
                self.restart(host).await?;
            }
        }
        Ok(())
    }

    /// Waits until every member node reports the same state hash and applied
    /// index; returns each member's last report.
    pub async fn wait_converged(
        &self,
        timeout: Duration,
    ) -> Vec<crate::checker::convergence::NodeHash> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut reports = Vec::new();
            for s in self.slots.iter().filter(|s| s.member) {
                let hash = match node_status(&self.direct(s.host)).await {
                    Ok(st) => Ok((st.state_hash, st.applied_index)),
                    Err(e) => Err(e),
                };
                reports.push(crate::checker::convergence::NodeHash {
                    node: self.name(s.host),
                    hash,
                });
            }
            let first = reports.first().map(|r| r.hash.clone());
            let agree = reports
                .iter()
                .all(|r| r.hash.is_ok() && Some(&r.hash) == first.as_ref());
            if (agree && !reports.is_empty()) || Instant::now() > deadline {
                return reports;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every member node's own state hash via GetStateHash at least at `index`.
    pub async fn state_hash_at(&self, host: usize, index: u64) -> Result<(String, u64), String> {
        let mut c = LedgerClient::connect(format!("http://{}", self.direct(host)))
            .await
            .map_err(|e| e.to_string())?;
        let read = ReadOptions::at_least_index(index).to_proto();
        let r = c
            .get_state_hash(GetStateHashRequest { read: Some(read) })
            .await
            .map_err(|e| e.to_string())?;
        let r = r.into_inner();
        Ok((r.state_hash, r.applied_index))
    }

    /// One node's available balances of `asset` for `accounts`, read
    /// locally on that node once it applied `index`.
    pub async fn final_balances(
        &self,
        host: usize,
        index: u64,
        asset: &str,
        accounts: &[u64],
    ) -> Result<BTreeMap<u64, i64>, String> {
        let mut c = LedgerClient::connect(format!("http://{}", self.direct(host)))
            .await
            .map_err(|e| e.to_string())?;
        let mut out = BTreeMap::new();
        for &account in accounts {
            let read = ReadOptions::at_least_index(index).to_proto();
            let mut req = tonic::Request::new(GetAccountRequest {
                account,
                read: Some(read),
            });
            req.set_timeout(Duration::from_secs(10));
            let r = c
                .get_account(req)
                .await
                .map_err(|e| format!("account {account}: {e}"))?
                .into_inner();
            let value = match r.balances.iter().find(|b| b.asset == asset) {
                Some(b) => crate::workload::parse_units(&b.available)
                    .ok_or_else(|| format!("account {account}: bad amount {:?}", b.available))?,
                None => 0,
            };
            out.insert(account, value);
        }
        Ok(out)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &mut self.slots {
            for child in [s.child.take(), s.proxy.take()].into_iter().flatten() {
                let mut child = child;
                let _ = crate::hosts::run("kill", &["-CONT", &child.id().to_string()]);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A node's own status (2 s budget).
pub async fn node_status(addr: &str) -> Result<NodeStatus, String> {
    let fut = async {
        let mut c = AdminClient::connect(format!("http://{addr}"))
            .await
            .map_err(|e| e.to_string())?;
        c.get_node_status(NodeStatusRequest::default())
            .await
            .map(|r| r.into_inner())
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .map_err(|_| "timeout".to_string())?
}

fn tracing_like(msg: &str) {
    eprintln!("tally-jepsen: {msg}");
}
