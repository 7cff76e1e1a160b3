//! Test harness: starts real `tallyd` processes on loopback, each with its
//! own RocksDB data dir, and talks to them over real gRPC. Used by the
//! integration tests in `tests/tests/`.

#![forbid(unsafe_code)]

pub mod kafka;
pub mod load;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::ledger_client::LedgerClient;
use tally_proto::v1::{
    GetStateHashRequest, InitRequest, Member, NodeStatus, NodeStatusRequest, ReadConsistency,
    ReadOptions,
};

/// Path of a workspace binary (`tallyd`, `tallyctl`) next to the test executable.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// The previous release's `tallyd` for the two-binary upgrade tests:
/// `$TALLY_PREV_TALLYD`, else `<target dir>/prev-release/tallyd`, which
/// `scripts/build-prev-release` builds from a git revision of this
/// repository (run by `scripts/test-all`).
pub fn prev_release_tallyd() -> PathBuf {
    let path = match std::env::var_os("TALLY_PREV_TALLYD") {
        Some(p) => PathBuf::from(p),
        None => {
            let here = bin_path("tallyd");
            // target/<profile>/tallyd -> target/prev-release/tallyd
            let target = here.parent().and_then(Path::parent).expect("target dir");
            target.join("prev-release").join("tallyd")
        }
    };
    assert!(
        path.exists(),
        "{} not found: build the previous release first (`scripts/build-prev-release`)",
        path.display()
    );
    path
}

/// Ports handed out by `free_port` below the kernel's ephemeral range.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// A port on 127.0.0.1 that was free a moment ago, chosen below the
/// kernel's ephemeral range (32768+): a port `bind(0)` returned could be
/// taken by an outgoing connection's source port (the nodes' own gRPC
/// connections) before the node under test binds it. Never the same port
/// twice in one test process; a pseudo-random start (pid and clock) keeps
/// concurrent test processes apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = (std::process::id().wrapping_mul(7919) ^ nanos) % span;
        let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = PORT_RANGE.start + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORT_RANGE:?}");
}

/// One `tallyd run` process.
pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    /// Extra environment for this node's process (fault injection).
    pub env: Vec<(String, String)>,
    /// Extra `tallyd run` flags for this node only.
    pub args: Vec<String>,
    /// The `tallyd` binary this node runs (`None`: this build's).
    pub bin: Option<PathBuf>,
}

/// A cluster of real `tallyd` processes under one temp dir; killed on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub cluster_id: String,
    pub nodes: BTreeMap<u64, NodeProc>,
    /// Extra `tallyd run` flags for every node.
    pub extra_args: Vec<String>,
    /// Extra environment per node id, for processes started from now on.
    pub node_env: BTreeMap<u64, Vec<(String, String)>>,
    /// Extra `tallyd run` flags per node id, for processes started from now on.
    pub node_args: BTreeMap<u64, Vec<String>>,
    /// The cluster's certificates when it runs TLS (`None`: `--insecure`).
    pub tls: Option<TestTls>,
    /// The binary of nodes added from now on (`None`: this build's).
    pub default_bin: Option<PathBuf>,
}

/// A TLS cluster's CA and certificates, in a temp dir: `node-<id>` for
/// every node (SAN 127.0.0.1) and one client certificate per role
/// (`admin`, `risk`, `trader`, `reader`).
pub struct TestTls {
    pub dir: PathBuf,
}

impl TestTls {
    /// Makes the CA and the role certificates in `dir`.
    pub fn create(dir: PathBuf) -> TestTls {
        use tally_tls::{Role, RoleSet};
        let (ca, _) = tally_tls::issue::open_or_create_ca(&dir, "test CA").expect("CA");
        for role in [Role::Admin, Role::Risk, Role::Trader, Role::Reader] {
            tally_tls::issue::write_issued(&ca, &dir, role.as_str(), RoleSet::of(&[role]), &[])
                .expect("client certificate");
        }
        TestTls { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues (or re-issues) node `id`'s certificate; returns its flags.
    pub fn node_args(&self, id: u64) -> Vec<String> {
        use tally_tls::{Role, RoleSet};
        let (ca, _) = tally_tls::issue::open_or_create_ca(&self.dir, "test CA").expect("CA");
        let name = format!("node-{id}");
        let (cert, key) = tally_tls::issue::write_issued(
            &ca,
            &self.dir,
            &name,
            RoleSet::of(&[Role::Node]),
            &["127.0.0.1".into()],
        )
        .expect("node certificate");
        tally_tls::TlsFiles {
            ca: self.ca(),
            cert,
            key,
        }
        .flags()
    }

    /// Client TLS presenting the certificate `name` (e.g. a role name).
    pub fn client(&self, name: &str) -> tally_tls::ClientTls {
        let (cert, key) = tally_tls::issue::cert_paths(&self.dir, name);
        tally_tls::ClientTls::from_files(&self.ca(), Some((&cert, &key))).expect("client TLS")
    }

    /// Client TLS that trusts the cluster CA but presents no certificate.
    pub fn anonymous(&self) -> tally_tls::ClientTls {
        tally_tls::ClientTls::from_files(&self.ca(), None).expect("client TLS")
    }
}

/// A lazy gRPC channel to `addr`, TLS with `tls` (else plaintext).
pub fn channel(addr: &str, tls: Option<&tally_tls::ClientTls>) -> tonic::transport::Channel {
    tally_node::transport::Transport::client(tls.cloned())
        .channel(addr, Duration::from_secs(1))
        .expect("channel")
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) and initializes them as voters.
    pub async fn start(n: u64, extra_args: &[&str]) -> Cluster {
        Cluster::start_with_env(n, extra_args, BTreeMap::new()).await
    }

    /// Like `start`, with extra environment for some nodes' processes.
    pub async fn start_with_env(
        n: u64,
        extra_args: &[&str],
        node_env: BTreeMap<u64, Vec<(String, String)>>,
    ) -> Cluster {
        Cluster::start_with(n, extra_args, node_env, BTreeMap::new()).await
    }

    /// Like `start`, with extra environment and flags for some nodes.
    pub async fn start_with(
        n: u64,
        extra_args: &[&str],
        node_env: BTreeMap<u64, Vec<(String, String)>>,
        node_args: BTreeMap<u64, Vec<String>>,
    ) -> Cluster {
        let mut c = Cluster::unstarted(extra_args, node_env, node_args, false, None);
        c.init_nodes(n).await;
        c
    }

    /// Starts `n` nodes with TLS (a fresh CA; see [`TestTls`]) and initializes
    /// them as voters; the harness itself calls them as `admin`.
    pub async fn start_tls(n: u64, extra_args: &[&str]) -> Cluster {
        let mut c = Cluster::unstarted(extra_args, BTreeMap::new(), BTreeMap::new(), true, None);
        c.init_nodes(n).await;
        c
    }

    /// The cluster before its nodes start (`init_nodes` starts them).
    fn unstarted(
        extra_args: &[&str],
        node_env: BTreeMap<u64, Vec<(String, String)>>,
        node_args: BTreeMap<u64, Vec<String>>,
        tls: bool,
        default_bin: Option<PathBuf>,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = tls.then(|| TestTls::create(dir.path().join("tls")));
        Cluster {
            dir,
            cluster_id: "test-cluster".into(),
            nodes: BTreeMap::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            node_env,
            node_args,
            tls,
            default_bin,
        }
    }

    /// Starts `n` nodes (ids 1..=n) running `bin` and initializes them as voters.
    pub async fn start_on(n: u64, extra_args: &[&str], bin: PathBuf) -> Cluster {
        let mut c = Cluster::unstarted(
            extra_args,
            BTreeMap::new(),
            BTreeMap::new(),
            false,
            Some(bin),
        );
        c.init_nodes(n).await;
        c
    }

    async fn init_nodes(&mut self, n: u64) {
        let c = self;
        for id in 1..=n {
            c.add_node_process(id);
        }
        for id in 1..=n {
            c.wait_up(id).await;
        }
        let members = c
            .nodes
            .values()
            .map(|p| Member {
                node_id: p.id,
                addr: p.addr.clone(),
            })
            .collect();
        let mut admin = AdminClient::new(c.channel(1));
        admin.init(InitRequest { members }).await.expect("init");
        let leader = c.wait_leader(Duration::from_secs(20)).await;
        // A new cluster's leader raises the cluster version right after init
        // (one log entry): wait for it, so tests start from a quiet log.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let log = c.nodes[&leader].data_dir.join("tallyd.log");
            match c.status_of(&c.addr(leader)).await {
                Ok(st) if st.cluster_version >= st.max_cluster_version => break,
                Ok(st) if st.max_cluster_version == 0 => break, // a release before versions
                _ if std::fs::read_to_string(log)
                    .is_ok_and(|l| l.contains("cluster version left as is")) =>
                {
                    break;
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Spawns a new node process with id `id` (not yet a member).
    pub fn add_node_process(&mut self, id: u64) -> String {
        let addr = format!("127.0.0.1:{}", free_port());
        let data_dir = self.dir.path().join(format!("node-{id}"));
        std::fs::create_dir_all(&data_dir).expect("mkdir");
        let mut p = NodeProc {
            id,
            addr: addr.clone(),
            data_dir,
            child: None,
            env: self.node_env.get(&id).cloned().unwrap_or_default(),
            args: self.node_args.get(&id).cloned().unwrap_or_default(),
            bin: self.default_bin.clone(),
        };
        match &self.tls {
            Some(tls) => p.args.extend(tls.node_args(id)),
            None if !p.args.iter().any(|a| a == "--tls-ca") => p.args.push("--insecure".into()),
            None => {}
        }
        p.child = Some(spawn_tallyd(&p, &self.cluster_id, &self.extra_args));
        self.nodes.insert(id, p);
        addr
    }

    /// The client TLS the harness uses (the `admin` certificate), if TLS.
    pub fn admin_tls(&self) -> Option<tally_tls::ClientTls> {
        self.tls.as_ref().map(|t| t.client("admin"))
    }

    /// A channel to node `id` as the harness (admin under TLS).
    pub fn channel(&self, id: u64) -> tonic::transport::Channel {
        self.channel_to(&self.addr(id))
    }

    fn channel_to(&self, addr: &str) -> tonic::transport::Channel {
        channel(addr, self.admin_tls().as_ref())
    }

    /// A node's own status (1 s timeout), over TLS when the cluster has it.
    pub async fn status_of(&self, addr: &str) -> Result<NodeStatus, String> {
        status_over(self.channel_to(addr)).await
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.values().map(|p| p.addr.clone()).collect()
    }

    /// Node `id`'s data dir (its log is `tallyd.log` in it).
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.nodes[&id].data_dir.clone()
    }

    pub fn addr(&self, id: u64) -> String {
        self.nodes[&id].addr.clone()
    }

    /// `kill -9` a node.
    pub fn kill9(&mut self, id: u64) {
        if let Some(p) = self.nodes.get_mut(&id)
            && let Some(mut child) = p.child.take()
        {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// Restarts a killed node from its data dir on the same address.
    pub async fn restart(&mut self, id: u64) {
        let p = self.nodes.get_mut(&id).expect("node");
        assert!(p.child.is_none(), "node {id} still running");
        p.child = Some(spawn_tallyd(p, &self.cluster_id, &self.extra_args));
        self.wait_up(id).await;
    }

    /// Stops a node gracefully (SIGTERM: a leader hands leadership over
    /// first) and waits for it to exit, at most `timeout` (then `kill -9`).
    /// Returns whether it exited by itself.
    pub fn stop_graceful(&mut self, id: u64, timeout: Duration) -> bool {
        let Some(p) = self.nodes.get_mut(&id) else {
            return false;
        };
        let Some(mut child) = p.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// The extra environment node `id` gets from its next start on.
    pub fn set_env(&mut self, id: u64, env: Vec<(String, String)>) {
        if let Some(p) = self.nodes.get_mut(&id) {
            p.env = env;
        }
    }

    /// The binary node `id` runs from its next start on (`None`: this build's).
    pub fn set_bin(&mut self, id: u64, bin: Option<PathBuf>) {
        if let Some(p) = self.nodes.get_mut(&id) {
            p.bin = bin;
        }
    }

    /// Waits until a node's process exits by itself; its exit code, or
    /// `None` if it still runs after `timeout`.
    pub async fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<i32> {
        let p = self.nodes.get_mut(&id)?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = p.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                p.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Starts a stopped node whose process is expected to exit by itself
    /// (a refused data dir); its exit code (`None`: still running after 30 s).
    pub async fn restart_expecting_exit(&mut self, id: u64) -> Option<i32> {
        let p = self.nodes.get_mut(&id).expect("node");
        assert!(p.child.is_none(), "node {id} still running");
        p.child = Some(spawn_tallyd(p, &self.cluster_id, &self.extra_args));
        self.wait_exit(id, Duration::from_secs(30)).await
    }

    /// Stops a node and forgets it (after it was removed from the cluster).
    pub fn forget(&mut self, id: u64) {
        self.kill9(id);
        self.nodes.remove(&id);
    }

    /// Waits until node `id` answers NodeStatus.
    pub async fn wait_up(&self, id: u64) {
        let addr = self.addr(id);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.status_of(&addr).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not come up on {addr}; log:\n{}",
                self.log_tail(id)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a running node reports a leader; returns the leader id.
    pub async fn wait_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            for p in self.nodes.values().filter(|p| p.child.is_some()) {
                if let Ok(st) = self.status_of(&p.addr).await
                    && st.role == "leader"
                {
                    return st.node_id;
                }
            }
            assert!(Instant::now() < deadline, "no leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Each running node's (state hash, applied index), read locally once it applied `min_index`.
    pub async fn state_hashes(&self, min_index: u64) -> BTreeMap<u64, (String, u64)> {
        let mut out = BTreeMap::new();
        for p in self.nodes.values().filter(|p| p.child.is_some()) {
            let mut c = LedgerClient::new(self.channel_to(&p.addr));
            let read = ReadOptions {
                consistency: ReadConsistency::AtLeastIndex as i32,
                min_index,
                ..Default::default()
            };
            let r = c
                .get_state_hash(GetStateHashRequest { read: Some(read) })
                .await
                .expect("state hash")
                .into_inner();
            out.insert(p.id, (r.state_hash, r.applied_index));
        }
        out
    }

    /// Waits until every running node has the same state hash at the same applied index.
    pub async fn wait_converged(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let mut statuses = Vec::new();
            for p in self.nodes.values().filter(|p| p.child.is_some()) {
                if let Ok(st) = self.status_of(&p.addr).await {
                    statuses.push(st);
                }
            }
            let running = self.nodes.values().filter(|p| p.child.is_some()).count();
            if statuses.len() == running {
                let first = &statuses[0];
                if statuses.iter().all(|s| {
                    s.state_hash == first.state_hash && s.applied_index == first.applied_index
                }) {
                    return first.state_hash.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "nodes did not converge within {timeout:?}: {statuses:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of a node's log (for failure messages).
    pub fn log_tail(&self, id: u64) -> String {
        let path = self.nodes[&id].data_dir.join("tallyd.log");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.nodes.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn spawn_tallyd(p: &NodeProc, cluster_id: &str, extra: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p.data_dir.join("tallyd.log"))
        .expect("log file");
    let bin = p.bin.clone().unwrap_or_else(|| bin_path("tallyd"));
    Command::new(bin)
        .args([
            "run",
            "--node-id",
            &p.id.to_string(),
            "--listen",
            &p.addr,
            "--cluster-id",
            cluster_id,
        ])
        .arg("--data-dir")
        .arg(&p.data_dir)
        .args(extra)
        .args(&p.args)
        .env("RUST_LOG", "info,openraft=warn")
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn tallyd")
}

/// A node's own status over gRPC (1 s timeout).
pub async fn node_status(addr: &str) -> Result<NodeStatus, String> {
    status_over(channel(addr, None)).await
}

async fn status_over(channel: tonic::transport::Channel) -> Result<NodeStatus, String> {
    let fut = async {
        let mut c = AdminClient::new(channel);
        c.get_node_status(NodeStatusRequest::default())
            .await
            .map(|r| r.into_inner())
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(1), fut)
        .await
        .map_err(|_| "timeout".to_string())?
}
