//! The cluster under test: either a `tallyd dev` started here (in a temp
//! dir, on a free loopback port range, stopped on drop) or given endpoints,
//! which must be loopback addresses. Also finds the leader and the node
//! processes to sample RSS from, and signals single dev nodes for the fault
//! runs: SIGSTOP / SIGCONT (a paused node is always resumed before the
//! cluster stops) and SIGKILL (the `tallyd dev` supervisor restarts the
//! node on its data dir; its new pid is found among the supervisor's
//! children by its `--node-id`).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::{NodeStatus, NodeStatusRequest};

use crate::rss::Sampled;

/// How long `tallyd dev` may take to print that the cluster is up.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the dev cluster may take to stop after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The line `tallyd dev` prints once a leader is elected.
const UP_LINE: &str = "Tally dev cluster is up";
/// `tallyd dev` serves HTTP health on the gRPC port + this.
const HTTP_PORT_OFFSET: u16 = 1000;
/// Attempts at finding a free port range.
const PORT_ATTEMPTS: u32 = 64;

/// True if `endpoint` (`host:port`, optional `http://`) names a loopback address.
pub fn is_loopback(endpoint: &str) -> bool {
    let s = endpoint.trim();
    let s = s.strip_prefix("http://").unwrap_or(s);
    let Some((host, _port)) = s.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses any endpoint that is not a loopback address.
pub fn check_loopback(endpoints: &[String]) -> anyhow::Result<()> {
    for endpoint in endpoints {
        if !is_loopback(endpoint) {
            bail!(
                "endpoint {endpoint:?} is not a loopback address: tally-bench only targets \
                 127.0.0.0/8, localhost or [::1]"
            );
        }
    }
    Ok(())
}

/// The `tallyd` binary: `explicit`, else next to this executable.
pub fn find_tallyd(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--tallyd {}: no such file", path.display());
        }
        return Ok(path.to_path_buf());
    }
    let exe = std::env::current_exe().context("cannot locate the tally-bench executable")?;
    let dir = exe
        .parent()
        .context("tally-bench executable has no directory")?;
    let candidate = dir.join("tallyd");
    if candidate.is_file() {
        return Ok(candidate);
    }
    bail!(
        "tallyd not found next to {} (build it: cargo build --release -p tally-node), \
         or pass --tallyd PATH",
        exe.display()
    )
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A base port whose `nodes` gRPC ports and their HTTP ports are free now.
fn free_port_range(nodes: u16) -> anyhow::Result<u16> {
    for _ in 0..PORT_ATTEMPTS {
        let base: u16 = rand::random_range(20_000..40_000);
        let ok = (0..nodes).all(|i| port_free(base + i) && port_free(base + HTTP_PORT_OFFSET + i));
        if ok {
            return Ok(base);
        }
    }
    bail!("no free loopback port range found after {PORT_ATTEMPTS} attempts")
}

/// Parses `started node 2 (pid 1234) on 127.0.0.1:20001 ...`.
fn parse_started(line: &str) -> Option<(u64, u32)> {
    let rest = line.strip_prefix("started node ")?;
    let (id, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("(pid ")?;
    let (pid, _) = rest.split_once(')')?;
    Some((id.parse().ok()?, pid.parse().ok()?))
}

/// A `tallyd dev` cluster owned by this process.
pub struct DevCluster {
    child: Option<Child>,
    /// Keeps the data dir alive (deleted on drop) unless the user chose one.
    _temp: Option<tempfile::TempDir>,
    pub data_dir: PathBuf,
    pub endpoints: Vec<String>,
    /// (node id, pid) of each node process.
    pub nodes: Vec<(u64, u32)>,
    /// The client TLS of a TLS dev cluster.
    pub tls: Option<tally_client::ClientTls>,
    /// Node pids SIGSTOPped by [`DevCluster::pause`] and not resumed yet.
    paused: Mutex<Vec<u32>>,
}

/// The TLS every client of this bench process uses (`None`: plaintext).
static CLIENT_TLS: std::sync::OnceLock<Option<tally_client::ClientTls>> =
    std::sync::OnceLock::new();

/// Sets the bench's client TLS (the first call wins).
pub fn set_client_tls(tls: Option<tally_client::ClientTls>) {
    let _ = CLIENT_TLS.set(tls);
}

/// The bench's client TLS.
pub fn client_tls() -> Option<tally_client::ClientTls> {
    CLIENT_TLS.get().cloned().flatten()
}

impl DevCluster {
    /// Starts `tallyd dev` with `nodes` nodes and waits until it is up.
    /// `data_dir`: where the nodes keep their data (kept afterwards); by
    /// default a temp dir under `/var/tmp` (a real disk, so fsync is real),
    /// deleted when the cluster stops.
    /// `extra_args`: more `tallyd dev` flags (e.g. Kafka topics).
    pub fn start(
        tallyd: &Path,
        nodes: u16,
        data_dir: Option<&Path>,
        extra_args: &[String],
    ) -> anyhow::Result<DevCluster> {
        DevCluster::start_tls(tallyd, nodes, data_dir, extra_args, false)
    }

    /// [`DevCluster::start`], with TLS on (`tallyd dev`'s throwaway CA; the
    /// bench then connects with its `dev` client certificate) or off
    /// (`--insecure`).
    pub fn start_tls(
        tallyd: &Path,
        nodes: u16,
        data_dir: Option<&Path>,
        extra_args: &[String],
        tls: bool,
    ) -> anyhow::Result<DevCluster> {
        if !(1..=9).contains(&nodes) {
            bail!("--nodes must be between 1 and 9");
        }
        let (temp, data_dir) = match data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                (None, dir.to_path_buf())
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("tally-bench-")
                    .tempdir_in(default_temp_root())
                    .context("cannot create a temp dir")?;
                let path = temp.path().to_path_buf();
                (Some(temp), path)
            }
        };
        let base = free_port_range(nodes)?;
        let log_path = data_dir.join("tallyd-dev.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut child = Command::new(tallyd)
            .arg("dev")
            .args(["--base-port", &base.to_string()])
            .args(["--nodes", &nodes.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra_args)
            .args((!tls).then_some("--insecure"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", tallyd.display()))?;
        let stdout = child.stdout.take().context("tallyd dev stdout")?;
        let (tx, rx) = mpsc::channel::<String>();
        // Drains tallyd dev's stdout for its whole life (it prints on stop too).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining silently.
                    continue;
                }
            }
        });
        let mut cluster = DevCluster {
            child: Some(child),
            _temp: temp,
            data_dir: data_dir.clone(),
            endpoints: (0..nodes)
                .map(|i| format!("127.0.0.1:{}", base + i))
                .collect(),
            nodes: Vec::new(),
            tls: None,
            paused: Mutex::new(Vec::new()),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "tallyd dev did not come up within {} s (logs: {})",
                    START_TIMEOUT.as_secs(),
                    data_dir.display()
                );
            }
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(node) = parse_started(&line) {
                        cluster.nodes.push(node);
                    }
                    if line.contains(UP_LINE) {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "tallyd dev exited before the cluster was up (see {})",
                        log_path.display()
                    );
                }
            }
            let exited = cluster
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                bail!(
                    "tallyd dev exited ({status}) before the cluster was up (see {})",
                    log_path.display()
                );
            }
        }
        if tls {
            let dir = data_dir.join("tls");
            cluster.tls = Some(
                tally_client::ClientTls::from_files(
                    &dir.join("ca.pem"),
                    Some((&dir.join("dev.pem"), &dir.join("dev.key"))),
                )
                .map_err(|e| anyhow::anyhow!("dev cluster TLS: {e}"))?,
            );
        }
        Ok(cluster)
    }

    /// The node processes, labelled `node-<id>`.
    pub fn sampled(&self) -> Vec<Sampled> {
        self.nodes
            .iter()
            .map(|(id, pid)| Sampled {
                label: format!("node-{id}"),
                pid: *pid,
            })
            .collect()
    }

    /// The pid of node `id` now: the supervisor's child running `tallyd run
    /// --node-id <id>` (it changes when the supervisor restarts the node),
    /// else the pid it was started with if that is still a tallyd.
    pub fn node_pid(&self, id: u64) -> Option<u32> {
        let supervisor = self.child.as_ref().map(Child::id);
        if let Some(pid) = supervisor.and_then(|parent| child_node_pid(parent, id)) {
            return Some(pid);
        }
        self.nodes
            .iter()
            .find(|(node, _)| *node == id)
            .map(|(_, pid)| *pid)
            .filter(|pid| is_tallyd(*pid))
    }

    /// SIGSTOPs node process `pid` (it stays stopped until
    /// [`DevCluster::resume`] or [`DevCluster::stop`]).
    pub fn pause(&self, pid: u32) -> anyhow::Result<()> {
        self.check_node(pid)?;
        send_signal(pid, libc::SIGSTOP).with_context(|| format!("SIGSTOP to pid {pid}"))?;
        self.paused_pids().push(pid);
        Ok(())
    }

    /// SIGCONTs node process `pid` stopped by [`DevCluster::pause`].
    pub fn resume(&self, pid: u32) -> anyhow::Result<()> {
        self.paused_pids().retain(|p| *p != pid);
        send_signal(pid, libc::SIGCONT).with_context(|| format!("SIGCONT to pid {pid}"))
    }

    /// SIGKILLs node process `pid` (the supervisor then restarts the node).
    pub fn kill_node(&self, pid: u32) -> anyhow::Result<()> {
        self.check_node(pid)?;
        send_signal(pid, libc::SIGKILL).with_context(|| format!("SIGKILL to pid {pid}"))
    }

    /// Refuses to signal anything but a live tallyd process.
    fn check_node(&self, pid: u32) -> anyhow::Result<()> {
        if !is_tallyd(pid) {
            bail!("pid {pid} is not a running tallyd process");
        }
        Ok(())
    }

    fn paused_pids(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the cluster: SIGCONT to any node still paused, SIGTERM to
    /// `tallyd dev` (which stops its nodes), then SIGKILL to everything
    /// still running after `STOP_TIMEOUT`.
    pub fn stop(&mut self) {
        let paused = std::mem::take(&mut *self.paused_pids());
        for pid in paused {
            if is_tallyd(pid)
                && let Err(e) = send_signal(pid, libc::SIGCONT)
            {
                eprintln!("tally-bench: cannot resume node pid {pid}: {e}");
            }
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Nodes orphaned by a dev process that did not stop them cleanly.
        for (_, pid) in &self.nodes {
            if Path::new(&format!("/proc/{pid}")).exists() && is_tallyd(*pid) {
                signal(*pid, "KILL");
            }
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where temp data dirs go: `/var/tmp` when it exists (disk-backed on most
/// systems, unlike a tmpfs `/tmp`), else the system temp dir.
fn default_temp_root() -> PathBuf {
    let var_tmp = PathBuf::from("/var/tmp");
    if var_tmp.is_dir() {
        var_tmp
    } else {
        std::env::temp_dir()
    }
}

/// True if `pid` is (still) a tallyd process, so a recycled pid is never signalled.
fn is_tallyd(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "tallyd")
}

/// Sends signal `sig` to `pid`.
fn send_signal(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) takes plain integers and has no memory preconditions;
    // `pid` is positive (a u32 that fits pid_t), so it names one process.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The pid of the child of `parent` whose command line is `tallyd run ...
/// --node-id <id> ...` (what `tallyd dev` spawns per node).
fn child_node_pid(parent: u32, id: u64) -> Option<u32> {
    let id = id.to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if parse_ppid(&stat) != Some(parent) || !is_tallyd(*pid) {
                return false;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            is_node_cmdline(&cmdline, &id)
        })
}

/// The parent pid (field 4) of a `/proc/<pid>/stat` line; the command name
/// (field 2) may hold spaces and parentheses, so fields count after its last `)`.
fn parse_ppid(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// True if a NUL-separated `/proc/<pid>/cmdline` is `... run ... --node-id <id> ...`.
fn is_node_cmdline(cmdline: &[u8], id: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.get(1) == Some(&b"run".as_slice())
        && args
            .windows(2)
            .any(|w| w[0] == b"--node-id" && w[1] == id.as_bytes())
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The file system type holding `path` (from `/proc/mounts`), e.g. `ext4` or `tmpfs`.
pub fn fs_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let _device = parts.next()?;
            let mount_point = parts.next()?;
            let fs = parts.next()?;
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), fs.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
}

/// Each endpoint's role as it reports it (`leader`, `follower`, ... or
/// `unreachable`), asked once.
pub async fn roles(endpoints: &[String]) -> Vec<String> {
    statuses(endpoints)
        .await
        .into_iter()
        .map(|status| status.map_or_else(|| "unreachable".into(), |s| s.role))
        .collect()
}

/// Each endpoint's `NodeStatus` (`None`: no answer within 5 s), asked once
/// each, in turn (without the state hash, which would hold back applying).
pub async fn statuses(endpoints: &[String]) -> Vec<Option<NodeStatus>> {
    let mut out = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        out.push(node_status(endpoint, Duration::from_secs(5)).await);
    }
    out
}

/// `endpoint`'s `NodeStatus`, or `None` if it does not answer within `timeout`.
pub async fn node_status(endpoint: &str, timeout: Duration) -> Option<NodeStatus> {
    let status = async {
        let channel = tally_client::raw_channel(endpoint, timeout, client_tls().as_ref()).ok()?;
        let mut admin = AdminClient::new(channel);
        let status = admin
            .get_node_status(NodeStatusRequest {
                omit_state_hash: true,
            })
            .await
            .ok()?;
        Some(status.into_inner())
    };
    tokio::time::timeout(timeout, status).await.ok().flatten()
}

/// The index of the leader among `endpoints`, waiting up to `wait` for one.
pub async fn find_leader(endpoints: &[String], wait: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + wait;
    loop {
        let roles = roles(endpoints).await;
        if let Some(i) = roles.iter().position(|r| r == "leader") {
            return Ok(i);
        }
        if Instant::now() >= deadline {
            bail!("no leader among {endpoints:?} (roles {roles:?})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        for ok in [
            "127.0.0.1:1",
            "http://127.0.0.2:50051",
            "localhost:9",
            "[::1]:5",
        ] {
            assert!(is_loopback(ok), "{ok}");
        }
        for bad in [
            "10.0.0.1:1",
            "192.168.1.1:2",
            "example.com:80",
            "8.8.8.8:53",
            "nope",
        ] {
            assert!(!is_loopback(bad), "{bad}");
        }
        assert!(check_loopback(&["127.0.0.1:1".into(), "10.1.1.1:1".into()]).is_err());
    }

    #[test]
    fn parses_started_lines() {
        let line = "started node 2 (pid 4321) on 127.0.0.1:20001 (health http://127.0.0.1:21001/readyz), data /x";
        assert_eq!(parse_started(line), Some((2, 4321)));
        assert_eq!(parse_started("leader elected: node 1 (term 1)"), None);
    }

    #[test]
    fn finds_node_processes_by_command_line() {
        let cmdline = b"/x/tallyd\0run\0--node-id\x002\0--listen\0localhost:1\0";
        assert!(is_node_cmdline(cmdline, "2"));
        assert!(!is_node_cmdline(cmdline, "1"));
        assert!(!is_node_cmdline(b"/x/tallyd\0dev\0--node-id\x002\0", "2"));
        let stat = "4321 (tallyd (x)) S 77 4321 4321 0 -1 4194560";
        assert_eq!(parse_ppid(stat), Some(77));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn fs_type_of_root() {
        if cfg!(target_os = "linux") {
            assert!(fs_type(Path::new("/")).is_some());
        }
    }
}
