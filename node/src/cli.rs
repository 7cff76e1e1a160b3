//! The `tallyd` command line: `run` starts one node, `dev` starts a local
//! three-node cluster of separate `tallyd run` processes and initializes it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::kafka::KafkaConfig;
use crate::node::{self, NodeConfig};

#[derive(Parser, Debug)]
#[command(
    name = "tallyd",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TALLY_GIT_COMMIT"), ")"),
    about = "Tally node: a Raft-replicated account ledger for crypto exchanges",
    long_about = "Tally node: a Raft-replicated account ledger for crypto exchanges.\n\n\
        `tallyd dev` starts a local 3-node cluster on 127.0.0.1:50051-50053 with data under ./data.\n\
        `tallyd run` starts one node of a real cluster; initialize a new cluster once with\n\
        `tallyctl cluster init --member 1=HOST:PORT --member 2=...`."
)]
pub struct Cli {
    /// Log line format on stderr: text (for people) or json (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. info or info,tally_node=debug (RUST_LOG syntax; RUST_LOG wins when set).
    /// openraft's own warnings are off by default (their texts are debug dumps; tallyd logs the
    /// same events itself: peer unreachable, leadership, membership).
    #[arg(long, global = true, default_value = "info,openraft=error")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start one node (flags override values from --config).
    Run(Box<RunArgs>),
    /// Start a local development cluster of separate tallyd processes on loopback.
    Dev(DevArgs),
    /// Probes and hooks for images without a shell: readyz, healthz, step-down.
    Probe(crate::probe::ProbeArgs),
    /// Restore a backup (`tallyctl backup`) into a new, empty data dir; restore
    /// every node of a new cluster from the same file, start them, then
    /// `tallyctl cluster init` once.
    Restore(RestoreArgs),
    /// Make a cluster CA (once, in --dir) and issue node and client
    /// certificates from it: for tests, dev and small installs. Production
    /// may use any PKI issuing the same shape (CN = name, O = roles).
    Certs(CertsArgs),
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Directory of ca.pem and ca.key (made if absent) and the issued <name>.pem/.key files.
    #[arg(long)]
    pub dir: PathBuf,
    /// A node certificate: ID=SAN[,SAN...] (the names and IPs peers dial), written as node-ID.pem/.key.
    #[arg(long, value_name = "ID=SANS")]
    pub node: Vec<String>,
    /// A client certificate: NAME=ROLE[+ROLE...] (roles: admin, risk, trader, reader, node).
    #[arg(long, value_name = "NAME=ROLES")]
    pub client: Vec<String>,
}

/// `tallyd certs`.
pub fn certs(args: CertsArgs) -> anyhow::Result<()> {
    use tally_tls::issue::{open_or_create_ca, write_issued};
    use tally_tls::{Role, RoleSet};
    let (ca, created) =
        open_or_create_ca(&args.dir, "tally cluster CA").map_err(anyhow::Error::msg)?;
    println!(
        "{} CA {}",
        if created { "made" } else { "using" },
        args.dir.join("ca.pem").display()
    );
    for spec in &args.node {
        let (id, sans) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--node {spec:?}: expected ID=SAN[,SAN...]"))?;
        let id: u64 = id
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| anyhow::anyhow!("--node {spec:?}: the id must be a number > 0"))?;
        let sans: Vec<String> = sans.split(',').map(|s| s.trim().to_string()).collect();
        let (cert, _) = write_issued(
            &ca,
            &args.dir,
            &format!("node-{id}"),
            RoleSet::of(&[Role::Node]),
            &sans,
        )
        .map_err(anyhow::Error::msg)?;
        println!("issued {} (node {id}; {})", cert.display(), sans.join(", "));
    }
    for spec in &args.client {
        let (name, roles) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--client {spec:?}: expected NAME=ROLE[+ROLE...]"))?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            anyhow::bail!("--client {spec:?}: the name must be ASCII letters, digits, '-' or '_'");
        }
        let roles = roles
            .split('+')
            .map(str::parse::<Role>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--client {spec:?}: {e}"))?;
        let (cert, _) = write_issued(&ca, &args.dir, name, RoleSet::of(&roles), &[])
            .map_err(anyhow::Error::msg)?;
        println!(
            "issued {} ({name}; roles {})",
            cert.display(),
            RoleSet::of(&roles)
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    pub from: PathBuf,
    /// The new node's data dir (must not hold a database).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The new node's id.
    #[arg(long)]
    pub node_id: u64,
    /// The new cluster's id (default: the backed-up cluster's).
    #[arg(long)]
    pub cluster_id: Option<String>,
}

/// `tallyd restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    if args.node_id == 0 {
        anyhow::bail!("--node-id must be greater than 0");
    }
    let info = crate::backup::restore(
        &args.from,
        &args.data_dir,
        args.node_id,
        args.cluster_id.as_deref(),
    )?;
    println!(
        "restored {} records (cluster '{}', taken at index {}, state hash {}) into {} as node {}",
        info.records,
        info.cluster_id,
        info.applied_index,
        info.state_hash,
        args.data_dir.display(),
        args.node_id
    );
    Ok(())
}

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// TOML file with any of: node_id, cluster_id, listen, advertise, data_dir, http_listen, heartbeat_interval_ms,
    /// election_timeout_min_ms, election_timeout_max_ms, snapshot_every_entries, keep_entries_after_snapshot,
    /// kafka_brokers, kafka_ingest_topic, kafka_events_topic, kafka_outbox_max_bytes, kafka_ingest_batch_records,
    /// tls_ca, tls_cert, tls_key, insecure, tls_reload_interval_ms, audit_log, lease_reads, tcp_rto_min_ms.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's id (> 0, unique in the cluster, never reused).
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Cluster id; the data dir and every peer must agree on it. Default "tally".
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Address to listen on for gRPC (clients and peers), e.g. 0.0.0.0:50051.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address peers and clients use to reach this node (default: --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Data directory (RocksDB and identity file). Refused if it belongs to another node or cluster.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address for HTTP /healthz, /readyz and /metrics (off unless set).
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Raft heartbeat interval in ms (default 50).
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// Election timeout range in ms (defaults 150..300; a follower campaigns
    /// max + a sample of min..max ms after the last heartbeat).
    #[arg(long)]
    pub election_timeout_min_ms: Option<u64>,
    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,
    /// Take a snapshot after this many log entries (default 20000). Node i
    /// stretches it by ((i mod 4) / 8) so that the nodes of a cluster do not
    /// all snapshot at the same moment.
    #[arg(long)]
    pub snapshot_every_entries: Option<u64>,
    /// Log entries kept after a snapshot for slightly-behind followers (default 1000).
    #[arg(long)]
    pub keep_entries_after_snapshot: Option<u64>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The audit log: one JSON line per admin call and per refused call (default <data-dir>/audit.log; rotated at 64 MiB).
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Serve linearizable reads on the leader from its leader lease (no
    /// quorum round) while the lease holds, else by a read-index round.
    /// Off by default: it assumes the nodes' clocks run at nearly the same
    /// rate (drift well under the 300 ms lease per lease; README, *Read
    /// consistency*).
    #[arg(long)]
    pub lease_reads: bool,
    /// Floor of the TCP retransmission timeout on the node's connections, in
    /// ms (default 20; 0 keeps the kernel's 200 ms; 2..=200). A lost packet
    /// between nodes then stalls replication ~20 ms instead of 200 ms.
    /// Needs Linux 6.15+ (older kernels: a warning at start, kernel default).
    #[arg(long)]
    pub tcp_rto_min_ms: Option<u64>,
    /// Stop when the parent process (the `tallyd dev` supervisor) is gone.
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
    /// Tests: behave as a release that supports cluster versions only up
    /// to N (at most this build's; see `tally_node::version`).
    #[arg(long, hide = true, value_name = "N")]
    pub max_cluster_version: Option<u32>,
}

/// TLS on the node's listener (clients and peers) and on its connections
/// to peers. Either all three files or `--insecure`.
#[derive(Args, Debug, Default, Clone)]
pub struct TlsArgs {
    /// PEM file of the cluster CA: peers and clients are accepted only with a
    /// certificate it issued (roles from the subject's O values; see docs/security.md).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// PEM file of this node's certificate (role node; SANs for every name and address peers dial).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of this node's private key.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Plaintext gRPC with no authentication or roles: anyone who reaches the
    /// port can move money. Only for tests and isolated networks.
    #[arg(long)]
    pub insecure: bool,
    /// How often the TLS files are checked for changes, in ms (default 10000);
    /// changed files are reloaded without a restart (SIGHUP reloads at once).
    #[arg(long)]
    pub tls_reload_interval_ms: Option<u64>,
}

impl TlsArgs {
    /// The TLS files (`None` with `--insecure`), flags over the file config
    /// (`--insecure` on the command line overrides the file's TLS keys).
    fn resolve(&self, file: &FileConfig) -> anyhow::Result<Option<tally_tls::TlsFiles>> {
        let flags_name_tls =
            self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some();
        if self.insecure && flags_name_tls {
            anyhow::bail!("--insecure and --tls-ca/--tls-cert/--tls-key exclude each other");
        }
        if self.insecure {
            return Ok(None);
        }
        let ca = self.tls_ca.clone().or(file.tls_ca.clone());
        let cert = self.tls_cert.clone().or(file.tls_cert.clone());
        let key = self.tls_key.clone().or(file.tls_key.clone());
        let insecure = !flags_name_tls && file.insecure.unwrap_or(false);
        match (ca, cert, key) {
            _ if insecure => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(tally_tls::TlsFiles { ca, cert, key })),
            (None, None, None) => anyhow::bail!(
                "TLS is required: pass --tls-ca, --tls-cert and --tls-key (make a test set with \
                 `tallyd certs`), or --insecure for plaintext without authentication"
            ),
            _ => anyhow::bail!("--tls-ca, --tls-cert and --tls-key go together: pass all three"),
        }
    }
}

/// Kafka in and out (docs/kafka.md). Every node of a cluster must name the
/// same topics: whichever node leads ingests and publishes.
#[derive(Args, Debug, Default, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap brokers, host:port[,host:port...]; needed by the two topic flags.
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// Topic to ingest ledger commands from, exactly once (one protobuf tally.v1.Command per record).
    #[arg(long)]
    pub kafka_ingest_topic: Option<String>,
    /// Topic to publish ledger events to, at least once with stable ids (tally.v1.LedgerEvent, keyed by account).
    #[arg(long)]
    pub kafka_events_topic: Option<String>,
    /// Bound on unpublished events kept in the outbox, in bytes (default 1 GiB); writes are refused beyond it.
    #[arg(long)]
    pub kafka_outbox_max_bytes: Option<u64>,
    /// Records per ingest Raft entry, 1..=4096 (default 4096).
    #[arg(long)]
    pub kafka_ingest_batch_records: Option<usize>,
}

impl KafkaArgs {
    /// The node's Kafka config (`None`: no Kafka), from flags over the file.
    fn resolve(&self, file: &FileConfig) -> anyhow::Result<Option<KafkaConfig>> {
        let brokers = self.kafka_brokers.clone().or(file.kafka_brokers.clone());
        let ingest_topic = self
            .kafka_ingest_topic
            .clone()
            .or(file.kafka_ingest_topic.clone());
        let events_topic = self
            .kafka_events_topic
            .clone()
            .or(file.kafka_events_topic.clone());
        for topic in [&ingest_topic, &events_topic].into_iter().flatten() {
            if !tally_ledger::is_valid_topic(topic) {
                anyhow::bail!("{topic:?} is not a Kafka topic name (1..=249 of a-z A-Z 0-9 . _ -)");
            }
        }
        if ingest_topic.is_some() && ingest_topic == events_topic {
            anyhow::bail!("--kafka-ingest-topic and --kafka-events-topic must differ");
        }
        let Some(brokers) = brokers else {
            if ingest_topic.is_some() || events_topic.is_some() {
                anyhow::bail!("--kafka-brokers is required with a Kafka topic");
            }
            return Ok(None);
        };
        let batch = self
            .kafka_ingest_batch_records
            .or(file.kafka_ingest_batch_records)
            .unwrap_or(crate::kafka::DEFAULT_INGEST_BATCH_RECORDS);
        if batch == 0 || batch > tally_ledger::MAX_INGEST_BATCH_RECORDS {
            anyhow::bail!(
                "--kafka-ingest-batch-records must be 1..={}",
                tally_ledger::MAX_INGEST_BATCH_RECORDS
            );
        }
        Ok(Some(KafkaConfig {
            brokers,
            ingest_topic,
            events_topic,
            outbox_max_bytes: self
                .kafka_outbox_max_bytes
                .or(file.kafka_outbox_max_bytes)
                .unwrap_or(crate::kafka::DEFAULT_OUTBOX_MAX_BYTES)
                .max(1),
            ingest_batch_records: batch,
        }))
    }

    /// The flags again, for a child `tallyd run`.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                out.push(format!("--{name}"));
                out.push(v);
            }
        };
        flag("kafka-brokers", self.kafka_brokers.clone());
        flag("kafka-ingest-topic", self.kafka_ingest_topic.clone());
        flag("kafka-events-topic", self.kafka_events_topic.clone());
        flag(
            "kafka-outbox-max-bytes",
            self.kafka_outbox_max_bytes.map(|v| v.to_string()),
        );
        flag(
            "kafka-ingest-batch-records",
            self.kafka_ingest_batch_records.map(|v| v.to_string()),
        );
        out
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<u64>,
    cluster_id: Option<String>,
    listen: Option<SocketAddr>,
    advertise: Option<String>,
    data_dir: Option<PathBuf>,
    http_listen: Option<SocketAddr>,
    heartbeat_interval_ms: Option<u64>,
    election_timeout_min_ms: Option<u64>,
    election_timeout_max_ms: Option<u64>,
    snapshot_every_entries: Option<u64>,
    keep_entries_after_snapshot: Option<u64>,
    kafka_brokers: Option<String>,
    kafka_ingest_topic: Option<String>,
    kafka_events_topic: Option<String>,
    kafka_outbox_max_bytes: Option<u64>,
    kafka_ingest_batch_records: Option<usize>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure: Option<bool>,
    tls_reload_interval_ms: Option<u64>,
    audit_log: Option<PathBuf>,
    lease_reads: Option<bool>,
    tcp_rto_min_ms: Option<u64>,
}

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Where the nodes keep their data (node-1, node-2, ... below it).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// gRPC port of node 1; node i listens on base_port + i - 1 (HTTP health on that + 1000).
    #[arg(long, default_value_t = 50051)]
    pub base_port: u16,
    /// Cluster id.
    #[arg(long, default_value = "tally-dev")]
    pub cluster_id: String,
    /// Snapshot every N entries (passed to each node).
    #[arg(long, default_value_t = 20_000)]
    pub snapshot_every_entries: u64,
    /// Kafka flags, passed to every node.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Plaintext without authentication. By default the dev cluster runs TLS
    /// with a throwaway CA and certificates made in <data-dir>/tls.
    #[arg(long)]
    pub insecure: bool,
    /// Serve linearizable reads on each leader from its leader lease
    /// (passes `--lease-reads` to every node; see `tallyd run --help`).
    #[arg(long)]
    pub lease_reads: bool,
}

impl RunArgs {
    /// Merges the config file and the flags into a node config.
    pub fn resolve(&self) -> anyhow::Result<NodeConfig> {
        let file: FileConfig = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let kafka = self.kafka.resolve(&file)?;
        let node_id = self
            .node_id
            .or(file.node_id)
            .ok_or_else(|| anyhow::anyhow!("--node-id is required"))?;
        // Before anything moves out of `file`; after the node id, so a
        // missing --node-id is reported first.
        let tls = self.tls.resolve(&file);
        if node_id == 0 {
            anyhow::bail!("--node-id must be greater than 0");
        }
        let listen = self
            .listen
            .or(file.listen)
            .ok_or_else(|| anyhow::anyhow!("--listen is required (e.g. 127.0.0.1:50051)"))?;
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir)
            .ok_or_else(|| anyhow::anyhow!("--data-dir is required"))?;
        let cluster_id = self
            .cluster_id
            .clone()
            .or(file.cluster_id)
            .unwrap_or_else(|| "tally".into());
        if cluster_id.is_empty()
            || !cluster_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            anyhow::bail!("--cluster-id must be non-empty ASCII letters, digits, '-' or '_'");
        }
        let tls = tls?;
        let mut c = NodeConfig::new(node_id, &cluster_id, listen, data_dir);
        if let Some(a) = self.advertise.clone().or(file.advertise) {
            c.advertise_addr = a;
        }
        c.http_addr = self.http_listen.or(file.http_listen);
        if let Some(v) = self.heartbeat_interval_ms.or(file.heartbeat_interval_ms) {
            c.heartbeat_interval_ms = v;
        }
        if let Some(v) = self
            .election_timeout_min_ms
            .or(file.election_timeout_min_ms)
        {
            c.election_timeout_min_ms = v;
        }
        if let Some(v) = self
            .election_timeout_max_ms
            .or(file.election_timeout_max_ms)
        {
            c.election_timeout_max_ms = v;
        }
        if let Some(v) = self.snapshot_every_entries.or(file.snapshot_every_entries) {
            c.snapshot_every_entries = v.max(1);
        }
        if let Some(v) = self
            .keep_entries_after_snapshot
            .or(file.keep_entries_after_snapshot)
        {
            c.keep_entries_after_snapshot = v;
        }
        c.kafka = kafka;
        c.tls = tls;
        if let Some(v) = self
            .tls
            .tls_reload_interval_ms
            .or(file.tls_reload_interval_ms)
        {
            c.tls_reload_interval_ms = v.max(100);
        }
        c.audit_log = self.audit_log.clone().or(file.audit_log);
        c.lease_reads = self.lease_reads || file.lease_reads.unwrap_or(false);
        if let Some(v) = self.tcp_rto_min_ms.or(file.tcp_rto_min_ms) {
            if v != 0 && !tally_tls::tcp::RTO_MIN_RANGE_MS.contains(&v) {
                anyhow::bail!(
                    "--tcp-rto-min-ms / tcp_rto_min_ms must be 0 (the kernel's) or 2..=200, got {v}"
                );
            }
            c.tcp_rto_min_ms = v;
        }
        Ok(c)
    }
}

/// Runs one node until Ctrl-C or SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    crate::version::limit_supported(args.max_cluster_version);
    let kafka = config.kafka.as_ref().map_or("off".to_string(), |k| {
        format!(
            "brokers {} ingest {} events {}",
            k.brokers,
            k.ingest_topic.as_deref().unwrap_or("-"),
            k.events_topic.as_deref().unwrap_or("-")
        )
    });
    tracing::info!(
        node_id = config.node_id,
        version = crate::version::RELEASE_VERSION,
        max_cluster_version = crate::version::max_supported(),
        commit = crate::GIT_COMMIT,
        listen = %config.listen_addr,
        advertise = %config.advertise_addr,
        http = %config.http_addr.map_or("off".to_string(), |a| a.to_string()),
        data_dir = %config.data_dir.display(),
        cluster = %config.cluster_id,
        heartbeat_ms = config.heartbeat_interval_ms,
        election_timeout_ms = %format!("{}..{}", config.election_timeout_min_ms, config.election_timeout_max_ms),
        snapshot_every_entries = config.snapshot_every_entries,
        kafka = %kafka,
        tls = %config.tls.as_ref().map_or("off (--insecure)".to_string(), |t| format!("on, certificate {}", t.cert.display())),
        "starting tallyd"
    );
    if args.exit_with_parent {
        exit_with_parent();
    }
    let running = node::start(config, shutdown_signal()).await?;
    running.server.await??;
    tracing::info!("tallyd stopped");
    Ok(())
}

/// Ends the process once its parent is gone, so a killed `tallyd dev`
/// leaves no orphan nodes behind. Two ways, both by SIGKILL:
/// - the kernel's parent-death signal (`PR_SET_PDEATHSIG`), sent the moment
///   the supervisor's spawning thread ends. `tallyd dev` spawns every node
///   from its main future (`crate::dev::run`, driven by `block_on` on the
///   main thread), so that thread lives exactly as long as the supervisor;
/// - a watcher OS thread that polls the parent pid every 200 ms: covers a
///   parent that died before the signal was armed.
///
/// Nothing is logged on the way out: a write to the log file can block for
/// seconds under dirty-page throttling on a disk-bound machine, and a
/// logging watcher once outlived its supervisor by more than 10 s in CI.
/// SIGKILL, not `exit`: `exit` runs RocksDB's static destructors, which wait
/// for a running compaction. Ending abruptly is what a crash does, which the
/// node survives by design (the log is fsynced before any acknowledgement).
fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        tracing::warn!(error = %e, "cannot arm the parent-death signal; watching the parent pid only");
    }
    // Its own OS thread, not a tokio task: a busy or blocked runtime (the
    // full test suite on two cores) must not delay it.
    let spawned = std::thread::Builder::new()
        .name("exit-with-parent".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(200));
                if std::os::unix::process::parent_id() != parent {
                    let me = rustix::process::getpid();
                    let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
                    std::process::exit(1);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch the parent process");
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Starts a local cluster of `tallyd run` child processes, initializes it
/// and supervises it (`crate::dev`).
pub async fn dev(args: DevArgs) -> anyhow::Result<()> {
    crate::dev::run(args, shutdown_signal()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_supplies_values_and_flags_override_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tally.toml");
        std::fs::write(
            &path,
            "node_id = 7\ncluster_id = \"prod\"\nlisten = \"127.0.0.1:6000\"\ndata_dir = \"/tmp/x\"\nsnapshot_every_entries = 500\ninsecure = true\n",
        )
        .unwrap();
        let args = RunArgs {
            config: Some(path.clone()),
            node_id: Some(8),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(
            (c.node_id, c.cluster_id.as_str(), c.snapshot_every_entries),
            (8, "prod", 500)
        );
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:6000");
        assert_eq!(c.advertise_addr, "127.0.0.1:6000");
    }

    #[test]
    fn unknown_config_keys_and_missing_required_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "node_idd = 1\n").unwrap();
        let err = RunArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("node_idd"), "{err}");
        let err = RunArgs::default().resolve().unwrap_err().to_string();
        assert!(err.contains("--node-id is required"), "{err}");
        let err = RunArgs {
            node_id: Some(1),
            listen: Some("127.0.0.1:1".parse().unwrap()),
            data_dir: Some("/tmp/y".into()),
            cluster_id: Some("bad id".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("--cluster-id"), "{err}");
    }

    fn required() -> RunArgs {
        RunArgs {
            node_id: Some(1),
            listen: Some("127.0.0.1:1".parse().unwrap()),
            data_dir: Some("/tmp/y".into()),
            ..Default::default()
        }
    }

    #[test]
    fn tls_is_required_unless_insecure_and_its_three_files_go_together() {
        let err = required().resolve().unwrap_err().to_string();
        assert!(
            err.contains("TLS is required") && err.contains("--insecure"),
            "{err}"
        );
        let mut args = required();
        args.tls.tls_ca = Some("/ca.pem".into());
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("go together"), "{err}");
        args.tls.insecure = true;
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("exclude each other"), "{err}");
        let mut args = required();
        args.tls.insecure = true;
        assert_eq!(args.resolve().unwrap().tls, None);
        let mut args = required();
        args.tls.tls_ca = Some("/ca.pem".into());
        args.tls.tls_cert = Some("/n.pem".into());
        args.tls.tls_key = Some("/n.key".into());
        let files = args.resolve().unwrap().tls.expect("tls");
        assert_eq!(files.cert, std::path::PathBuf::from("/n.pem"));
    }

    #[test]
    fn tcp_rto_min_defaults_to_20_ms_zero_keeps_the_kernels_and_out_of_range_is_refused() {
        let insecure = || RunArgs {
            tls: TlsArgs {
                insecure: true,
                ..Default::default()
            },
            ..required()
        };
        let c = insecure().resolve().unwrap();
        assert_eq!(
            c.tcp_tuning().rto_min,
            Some(std::time::Duration::from_millis(20))
        );
        let c = RunArgs {
            tcp_rto_min_ms: Some(0),
            ..insecure()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.tcp_tuning().rto_min, None);
        for bad in [1, 201, u64::MAX] {
            let err = RunArgs {
                tcp_rto_min_ms: Some(bad),
                ..insecure()
            }
            .resolve()
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("tcp_rto_min_ms") && err.contains("2..=200"),
                "{err}"
            );
        }
    }

    #[test]
    fn insecure_on_the_command_line_overrides_the_files_tls_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tally.toml");
        std::fs::write(
            &path,
            "tls_ca = \"/ca.pem\"\ntls_cert = \"/n.pem\"\ntls_key = \"/n.key\"\n",
        )
        .unwrap();
        let mut args = required();
        args.config = Some(path);
        assert!(args.resolve().unwrap().tls.is_some());
        args.tls.insecure = true;
        assert_eq!(args.resolve().unwrap().tls, None);
    }
}
