//! `tallyd dev`: a local cluster of separate `tallyd run` processes on
//! loopback, initialized once and supervised. The supervisor holds the
//! data dir's lock (`dev.lock`: a second `tallyd dev` on the same dir is
//! refused), restarts a node that exits (it is reported; after
//! `MAX_RESTARTS` exits within `RESTART_WINDOW` it is left down, said so,
//! while the others keep serving), and its nodes run with
//! `--exit-with-parent`, so killing the supervisor leaves no orphans.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::{InitRequest, Member, NodeStatusRequest};
use tally_tls::issue::{cert_paths, open_or_create_ca, write_issued};
use tally_tls::{ClientTls, Role, RoleSet};
use tokio::process::Child;

use crate::cli::DevArgs;
use crate::transport::Transport;

/// Exits of one node within `RESTART_WINDOW` after which it is left down.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How long the nodes may take to answer, and the cluster to elect a leader.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One supervised node.
struct DevNode {
    id: u64,
    addr: String,
    http: String,
    child: Option<Child>,
    exits: VecDeque<Instant>,
}

/// Where `tallyd dev` keeps its throwaway CA and certificates.
pub fn tls_dir(args: &DevArgs) -> PathBuf {
    args.data_dir.join("tls")
}

/// The name of the dev client certificate (every client role) that
/// `tallyctl` and the supervisor use.
pub const DEV_CLIENT_CERT: &str = "dev";

/// Makes the dev cluster's CA (once; kept across restarts) and issues
/// fresh node and client certificates from it.
fn make_dev_certs(args: &DevArgs, nodes: &[DevNode]) -> anyhow::Result<ClientTls> {
    let dir = tls_dir(args);
    let (ca, created) =
        open_or_create_ca(&dir, "tally dev CA").map_err(|e| anyhow::anyhow!("dev TLS: {e}"))?;
    for node in nodes {
        write_issued(
            &ca,
            &dir,
            &format!("node-{}", node.id),
            RoleSet::of(&[Role::Node]),
            &["127.0.0.1".into(), "localhost".into()],
        )
        .map_err(|e| anyhow::anyhow!("dev TLS: {e}"))?;
    }
    let client_roles = RoleSet::of(&[Role::Admin, Role::Risk, Role::Trader, Role::Reader]);
    let (cert, key) = write_issued(&ca, &dir, DEV_CLIENT_CERT, client_roles, &[])
        .map_err(|e| anyhow::anyhow!("dev TLS: {e}"))?;
    println!(
        "TLS on: {} the dev CA in {}; node and client certificates issued",
        if created { "made" } else { "reusing" },
        dir.display()
    );
    ClientTls::from_files(&dir.join("ca.pem"), Some((&cert, &key)))
        .map_err(|e| anyhow::anyhow!("dev TLS: {e}"))
}

/// The TLS flags of node `id` (or `--insecure`).
fn node_tls_args(args: &DevArgs, id: u64) -> Vec<String> {
    if args.insecure {
        return vec!["--insecure".into()];
    }
    let dir = tls_dir(args);
    let (cert, key) = cert_paths(&dir, &format!("node-{id}"));
    tally_tls::TlsFiles {
        ca: dir.join("ca.pem"),
        cert,
        key,
    }
    .flags()
}

/// Called only from `run`'s own future, never from a spawned task: a node's
/// parent-death signal (`--exit-with-parent`) fires when the *thread* that
/// spawned it ends, and `run` is driven on the main thread, which lives as
/// long as the supervisor.
fn spawn_node(args: &DevArgs, node: &DevNode) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?;
    let dir = args.data_dir.join(format!("node-{}", node.id));
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tallyd.log"))?;
    let child = tokio::process::Command::new(&exe)
        .args([
            "run",
            "--node-id",
            &node.id.to_string(),
            "--listen",
            &node.addr,
        ])
        .args(["--cluster-id", &args.cluster_id])
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--snapshot-every-entries",
            &args.snapshot_every_entries.to_string(),
        ])
        .args(["--http-listen", &node.http, "--exit-with-parent"])
        .args(args.kafka.to_args())
        .args(node_tls_args(args, node.id))
        .args(args.lease_reads.then_some("--lease-reads"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()?;
    println!(
        "started node {} (pid {}) on {} (health http://{}/readyz), data {}",
        node.id,
        child.id().unwrap_or(0),
        node.addr,
        node.http,
        dir.display()
    );
    Ok(child)
}

async fn wait_answering(
    members: &[Member],
    data_dir: &Path,
    transport: &Transport,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    for m in members {
        loop {
            if let Ok(channel) = transport.channel(&m.addr, Duration::from_secs(1))
                && AdminClient::new(channel)
                    .get_node_status(NodeStatusRequest {
                        omit_state_hash: true,
                    })
                    .await
                    .is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "node {} did not come up on {} (see {}/node-{}/tallyd.log)",
                    m.node_id,
                    m.addr,
                    data_dir.display(),
                    m.node_id
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn init_and_wait_leader(
    args: &DevArgs,
    members: &[Member],
    transport: &Transport,
) -> anyhow::Result<()> {
    let channel = transport
        .channel(&members[0].addr, Duration::from_secs(1))
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut admin = AdminClient::new(channel);
    match admin
        .init(InitRequest {
            members: members.to_vec(),
        })
        .await
    {
        Ok(_) => println!(
            "initialized cluster '{}' with {} voters",
            args.cluster_id,
            members.len()
        ),
        Err(s) if s.code() == tonic::Code::FailedPrecondition => println!(
            "cluster '{}' already initialized; resuming",
            args.cluster_id
        ),
        Err(s) => anyhow::bail!("init failed: {}", s.message()),
    }
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let st = admin
            .get_node_status(NodeStatusRequest {
                omit_state_hash: true,
            })
            .await?
            .into_inner();
        if st.has_leader {
            println!("leader elected: node {} (term {})", st.leader_id, st.term);
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("no leader elected within {} s", START_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_banner(args: &DevArgs, members: &[Member]) {
    let endpoints: Vec<String> = members.iter().map(|m| m.addr.clone()).collect();
    println!();
    println!(
        "Tally dev cluster is up. Endpoints: {}",
        endpoints.join(",")
    );
    if !args.insecure {
        let dir = tls_dir(args);
        let (cert, key) = cert_paths(&dir, DEV_CLIENT_CERT);
        println!(
            "TLS is on (mTLS between nodes; roles from client certificates). For tallyctl:\n  \
             export TALLY_TLS_CA={} TALLY_TLS_CERT={} TALLY_TLS_KEY={}",
            dir.join("ca.pem").display(),
            cert.display(),
            key.display()
        );
    }
    println!(
        "  tallyctl --endpoints {} cluster status",
        endpoints.join(",")
    );
    println!(
        "  tallyctl asset create BTC 8 && tallyctl account create 1 && tallyctl deposit 1 BTC 1.5"
    );
    println!(
        "Logs: {}/node-*/tallyd.log. A node that exits is restarted. Press Ctrl-C to stop.",
        args.data_dir.display()
    );
}

/// Starts, initializes and supervises the cluster until `shutdown`.
pub async fn run(
    args: DevArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > 9 {
        anyhow::bail!("--nodes must be between 1 and 9");
    }
    let _lock = crate::storage::lock_dir(&args.data_dir, "dev.lock", "tallyd dev")?;
    let mut nodes: Vec<DevNode> = (1..=args.nodes)
        .map(|id| {
            let port = u64::from(args.base_port) + id - 1;
            DevNode {
                id,
                addr: format!("127.0.0.1:{port}"),
                http: format!("127.0.0.1:{}", port + 1000),
                child: None,
                exits: VecDeque::new(),
            }
        })
        .collect();
    let transport = if args.insecure {
        Transport::default()
    } else {
        Transport::client(Some(make_dev_certs(&args, &nodes)?))
    };
    for node in nodes.iter_mut() {
        node.child = Some(spawn_node(&args, node)?);
    }
    let members: Vec<Member> = nodes
        .iter()
        .map(|n| Member {
            node_id: n.id,
            addr: n.addr.clone(),
        })
        .collect();
    wait_answering(&members, &args.data_dir, &transport).await?;
    init_and_wait_leader(&args, &members, &transport).await?;
    print_banner(&args, &members);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                println!("stopping...");
                break;
            }
            (index, status) = first_exit(&mut nodes) => {
                restart_or_leave_down(&args, &mut nodes[index], status);
            }
        }
    }
    stop_all(&mut nodes).await;
    Ok(())
}

/// The first running node to exit: its index and exit status text. Pends
/// forever if no node runs.
async fn first_exit(nodes: &mut [DevNode]) -> (usize, String) {
    let waits: Vec<_> = nodes
        .iter_mut()
        .enumerate()
        .filter_map(|(i, n)| n.child.as_mut().map(|c| (i, c)))
        .map(|(i, c)| Box::pin(async move { (i, c.wait().await) }))
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    let ((index, status), _, _) = futures::future::select_all(waits).await;
    let text = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("wait failed: {e}"),
    };
    (index, text)
}

fn restart_or_leave_down(args: &DevArgs, node: &mut DevNode, status: String) {
    node.child = None;
    let now = Instant::now();
    node.exits.push_back(now);
    while node
        .exits
        .front()
        .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
    {
        node.exits.pop_front();
    }
    if node.exits.len() > MAX_RESTARTS {
        eprintln!(
            "node {} exited ({status}) {} times within {} s; left down (see {}/node-{}/tallyd.log); the others keep serving",
            node.id,
            node.exits.len(),
            RESTART_WINDOW.as_secs(),
            args.data_dir.display(),
            node.id
        );
        return;
    }
    eprintln!("node {} exited ({status}); restarting it", node.id);
    match spawn_node(args, node) {
        Ok(child) => node.child = Some(child),
        Err(e) => eprintln!("node {} could not be restarted: {e}; left down", node.id),
    }
}

async fn stop_all(nodes: &mut [DevNode]) {
    for node in nodes.iter_mut() {
        let Some(mut child) = node.child.take() else {
            continue;
        };
        if let Some(pid) = child.id() {
            // SIGTERM first so nodes shut down cleanly.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        let _ = child.kill().await;
        println!("node {} stopped", node.id);
    }
}
