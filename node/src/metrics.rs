//! The node's Prometheus metrics: one process-wide registry of lock-free
//! counters and fixed-bucket histograms that the hot paths update (writer,
//! log store, state machine, Raft network, gRPC layer, snapshots), rendered
//! with the gauges read off the node (`health::metrics_text`) in the text
//! exposition format: `# HELP`/`# TYPE`, counters ending in `_total`,
//! durations in seconds, labels where a series has dimensions.
//!
//! Bounded: every label set is fixed or bounded (reject reasons come from
//! `RejectCode::ALL`; gRPC methods from the services' fixed method set,
//! capped at `MAX_GRPC_SERIES` methods; peers by node id, capped at `MAX_PEERS`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::Duration;

use tally_ledger::RejectCode;

/// Most gRPC methods with their own series (each with at most the 17 codes).
const MAX_GRPC_SERIES: usize = 512;
/// Most peers with their own RPC series.
const MAX_PEERS: usize = 64;

/// Upper bounds (seconds) of the latency histograms' buckets.
const LATENCY_BUCKETS_S: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds of the commands-per-entry histogram.
const SIZE_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// A histogram with fixed buckets; observations are lock-free.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum of observations in micro-units (µs for durations).
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6).max(0.0) as u64, Relaxed);
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Per gRPC method: its latency histogram and its count per status code.
/// A request allocates only the first time its method or code is seen.
struct GrpcSeries {
    methods: BTreeMap<String, (Histogram, BTreeMap<&'static str, u64>)>,
}

/// Every metric the hot paths update.
pub struct Metrics {
    pub leader_changes: AtomicU64,
    pub proposals_committed: AtomicU64,
    pub proposals_failed: AtomicU64,
    pub proposals_pending: AtomicU64,
    pub writer_queue_depth: AtomicU64,
    pub writer_overloaded: AtomicU64,
    pub commands_applied: AtomicU64,
    /// Rejected commands by `RejectCode` tag.
    commands_rejected: Vec<AtomicU64>,
    pub wal_fsync_seconds: Histogram,
    pub apply_write_seconds: Histogram,
    pub apply_batch_seconds: Histogram,
    pub entry_commands: Histogram,
    pub snapshot_build_seconds: Histogram,
    pub checkpoint_seconds: Histogram,
    pub snapshot_install_seconds: Histogram,
    pub snapshot_bytes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub tls_reloads: AtomicU64,
    pub tls_reload_failures: AtomicU64,
    /// Calls refused with PERMISSION_DENIED.
    pub auth_denied: AtomicU64,
    /// Read-index rounds run (one leadership confirmation each).
    pub read_index_rounds: AtomicU64,
    /// Linearizable reads served by those rounds (reads / rounds = batch size).
    pub read_index_reads: AtomicU64,
    /// Read-index rounds answered from the leader lease (`--lease-reads`).
    pub lease_reads: AtomicU64,
    /// Read-index rounds started again because the leader changed while they ran.
    pub read_index_round_restarts: AtomicU64,
    /// Raft RPCs also sent on the peer's spare connection (hedged).
    pub peer_rpc_hedged: AtomicU64,
    /// Hedged Raft RPCs the spare connection answered first.
    pub peer_rpc_hedge_wins: AtomicU64,
    pub audit_write_failures: AtomicU64,
    grpc: Mutex<GrpcSeries>,
    peers: Mutex<BTreeMap<u64, (Histogram, u64)>>,
}

/// This process's node id, for log lines of modules that are not handed
/// it (the state machine's snapshot lines); 0 until set. One node per
/// process (`tallyd run`).
static NODE_ID: OnceLock<u64> = OnceLock::new();

/// Records this process's node id (the first call wins).
pub fn set_node_id(node_id: u64) {
    let _ = NODE_ID.set(node_id);
}

/// This process's node id (0 if not set).
pub fn node_id() -> u64 {
    NODE_ID.get().copied().unwrap_or(0)
}

/// The process's registry.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    leader_changes: AtomicU64::new(0),
    proposals_committed: AtomicU64::new(0),
    proposals_failed: AtomicU64::new(0),
    proposals_pending: AtomicU64::new(0),
    writer_queue_depth: AtomicU64::new(0),
    writer_overloaded: AtomicU64::new(0),
    commands_applied: AtomicU64::new(0),
    commands_rejected: RejectCode::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
    wal_fsync_seconds: Histogram::new(&LATENCY_BUCKETS_S),
    apply_write_seconds: Histogram::new(&LATENCY_BUCKETS_S),
    apply_batch_seconds: Histogram::new(&LATENCY_BUCKETS_S),
    entry_commands: Histogram::new(&SIZE_BUCKETS),
    snapshot_build_seconds: Histogram::new(&LATENCY_BUCKETS_S),
    checkpoint_seconds: Histogram::new(&LATENCY_BUCKETS_S),
    snapshot_install_seconds: Histogram::new(&LATENCY_BUCKETS_S),
    snapshot_bytes: AtomicU64::new(0),
    tls_handshake_failures: AtomicU64::new(0),
    tls_reloads: AtomicU64::new(0),
    tls_reload_failures: AtomicU64::new(0),
    auth_denied: AtomicU64::new(0),
    read_index_rounds: AtomicU64::new(0),
    read_index_reads: AtomicU64::new(0),
    lease_reads: AtomicU64::new(0),
    read_index_round_restarts: AtomicU64::new(0),
    peer_rpc_hedged: AtomicU64::new(0),
    peer_rpc_hedge_wins: AtomicU64::new(0),
    audit_write_failures: AtomicU64::new(0),
    grpc: Mutex::new(GrpcSeries {
        methods: BTreeMap::new(),
    }),
    peers: Mutex::new(BTreeMap::new()),
});

impl Metrics {
    /// Counts one command's verdict (`None`: applied).
    pub fn command(&self, rejected: Option<RejectCode>) {
        match rejected {
            None => self.commands_applied.fetch_add(1, Relaxed),
            Some(code) => {
                let i = RejectCode::ALL.iter().position(|c| *c == code).unwrap_or(0);
                self.commands_rejected[i].fetch_add(1, Relaxed)
            }
        };
    }

    /// Counts one gRPC request of `method` answered with `code` after `elapsed`.
    pub fn grpc(&self, method: &str, code: &'static str, elapsed: Duration) {
        let Ok(mut grpc) = self.grpc.lock() else {
            return;
        };
        if !grpc.methods.contains_key(method) {
            if grpc.methods.len() >= MAX_GRPC_SERIES {
                return;
            }
            grpc.methods.insert(
                method.to_string(),
                (Histogram::new(&LATENCY_BUCKETS_S), BTreeMap::new()),
            );
        }
        if let Some((latency, codes)) = grpc.methods.get_mut(method) {
            latency.observe_duration(elapsed);
            *codes.entry(code).or_insert(0) += 1;
        }
    }

    /// Times one Raft RPC to `peer` (`ok`: it answered).
    pub fn peer_rpc(&self, peer: u64, elapsed: Duration, ok: bool) {
        let Ok(mut peers) = self.peers.lock() else {
            return;
        };
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            return;
        }
        let (histogram, failures) = peers
            .entry(peer)
            .or_insert_with(|| (Histogram::new(&LATENCY_BUCKETS_S), 0));
        if ok {
            histogram.observe_duration(elapsed);
        } else {
            *failures += 1;
        }
    }

    /// Appends every metric of the registry to `out`.
    pub fn render(&self, out: &mut String) {
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        counter(
            out,
            "tally_leader_changes_total",
            "Leader changes this node saw.",
            self.leader_changes.load(Relaxed),
        );
        counter(
            out,
            "tally_tls_handshake_failures_total",
            "Accepted connections whose TLS handshake failed or timed out.",
            self.tls_handshake_failures.load(Relaxed),
        );
        counter(
            out,
            "tally_tls_reloads_total",
            "Certificate reloads that took effect.",
            self.tls_reloads.load(Relaxed),
        );
        counter(
            out,
            "tally_tls_reload_failures_total",
            "Certificate reloads refused (bad files); the previous certificates stayed.",
            self.tls_reload_failures.load(Relaxed),
        );
        counter(
            out,
            "tally_auth_denied_total",
            "Calls refused with PERMISSION_DENIED.",
            self.auth_denied.load(Relaxed),
        );
        counter(
            out,
            "tally_read_index_rounds_total",
            "Read-index rounds (one leadership confirmation or one fetch from the leader each).",
            self.read_index_rounds.load(Relaxed),
        );
        counter(
            out,
            "tally_read_index_reads_total",
            "Linearizable reads served by read-index rounds (reads per round = the batch).",
            self.read_index_reads.load(Relaxed),
        );
        counter(
            out,
            "tally_read_index_lease_rounds_total",
            "Read-index rounds answered from the leader lease without a quorum round (--lease-reads).",
            self.lease_reads.load(Relaxed),
        );
        counter(
            out,
            "tally_read_index_round_restarts_total",
            "Read-index rounds abandoned and started again because this node's view of the leader changed while they ran.",
            self.read_index_round_restarts.load(Relaxed),
        );
        counter(
            out,
            "tally_peer_rpc_hedged_total",
            "Copies of Raft RPCs (appends, heartbeats, votes) sent on a peer's spare connections after the hedge delay.",
            self.peer_rpc_hedged.load(Relaxed),
        );
        counter(
            out,
            "tally_peer_rpc_hedge_wins_total",
            "Hedged Raft RPCs answered first on the spare connection (which then became the primary).",
            self.peer_rpc_hedge_wins.load(Relaxed),
        );
        counter(
            out,
            "tally_audit_write_failures_total",
            "Audit log entries that could not be written to the file.",
            self.audit_write_failures.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP tally_proposals_total Raft entries this node proposed, by result.\n# TYPE tally_proposals_total counter"
        );
        let _ = writeln!(
            out,
            "tally_proposals_total{{result=\"committed\"}} {}",
            self.proposals_committed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "tally_proposals_total{{result=\"failed\"}} {}",
            self.proposals_failed.load(Relaxed)
        );
        gauge(
            out,
            "tally_proposals_pending",
            "Raft entries proposed and not yet applied.",
            self.proposals_pending.load(Relaxed),
        );
        gauge(
            out,
            "tally_writer_queue_depth",
            "Write requests waiting for the batcher.",
            self.writer_queue_depth.load(Relaxed),
        );
        counter(
            out,
            "tally_writer_overloaded_total",
            "Write requests refused with OVERLOADED.",
            self.writer_overloaded.load(Relaxed),
        );
        counter(
            out,
            "tally_commands_applied_total",
            "Commands applied by this node's state machine.",
            self.commands_applied.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP tally_commands_rejected_total Commands rejected by the engine, by reason.\n# TYPE tally_commands_rejected_total counter"
        );
        for (code, count) in RejectCode::ALL.iter().zip(&self.commands_rejected) {
            let _ = writeln!(
                out,
                "tally_commands_rejected_total{{reason=\"{}\"}} {}",
                code.as_str(),
                count.load(Relaxed)
            );
        }
        let histograms: [(&str, &str, &Histogram); 7] = [
            (
                "tally_wal_fsync_duration_seconds",
                "WAL fsync (group of Raft log appends).",
                &self.wal_fsync_seconds,
            ),
            (
                "tally_apply_write_duration_seconds",
                "Write of one applied batch's events outbox rows to RocksDB.",
                &self.apply_write_seconds,
            ),
            (
                "tally_apply_duration_seconds",
                "Applying one batch of entries (engine and outbox write).",
                &self.apply_batch_seconds,
            ),
            (
                "tally_entry_commands",
                "Commands per applied Raft entry.",
                &self.entry_commands,
            ),
            (
                "tally_checkpoint_duration_seconds",
                "Writing one ledger checkpoint (changed records and the applied index) to RocksDB.",
                &self.checkpoint_seconds,
            ),
            (
                "tally_snapshot_build_duration_seconds",
                "Building a snapshot.",
                &self.snapshot_build_seconds,
            ),
            (
                "tally_snapshot_install_duration_seconds",
                "Installing a snapshot from the leader.",
                &self.snapshot_install_seconds,
            ),
        ];
        for (name, help, histogram) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            histogram.render(out, name, "");
        }
        gauge(
            out,
            "tally_snapshot_size_bytes",
            "Size of the latest snapshot built or installed.",
            self.snapshot_bytes.load(Relaxed),
        );
        if let Ok(grpc) = self.grpc.lock() {
            let _ = writeln!(
                out,
                "# HELP tally_grpc_requests_total gRPC requests served, by method and status code.\n# TYPE tally_grpc_requests_total counter"
            );
            for (method, (_, codes)) in &grpc.methods {
                for (code, count) in codes {
                    let _ = writeln!(
                        out,
                        "tally_grpc_requests_total{{method=\"{method}\",code=\"{code}\"}} {count}"
                    );
                }
            }
            let name = "tally_grpc_request_duration_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} gRPC request latency, by method.\n# TYPE {name} histogram"
            );
            for (method, (histogram, _)) in &grpc.methods {
                histogram.render(out, name, &format!("method=\"{method}\""));
            }
        }
        if let Ok(peers) = self.peers.lock() {
            let name = "tally_peer_rpc_duration_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} Round trip of Raft RPCs to each peer.\n# TYPE {name} histogram"
            );
            for (peer, (histogram, _)) in peers.iter() {
                histogram.render(out, name, &format!("peer=\"{peer}\""));
            }
            let _ = writeln!(
                out,
                "# HELP tally_peer_rpc_failures_total Raft RPCs to each peer that failed.\n# TYPE tally_peer_rpc_failures_total counter"
            );
            for (peer, (_, failures)) in peers.iter() {
                let _ = writeln!(
                    out,
                    "tally_peer_rpc_failures_total{{peer=\"{peer}\"}} {failures}"
                );
            }
        }
        render_process(out);
    }
}

/// Bytes a directory tree occupies on disk (allocated blocks, not file
/// lengths), following no symlinks; at most `MAX_DISK_WALK_ENTRIES` entries.
pub fn disk_usage_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    const MAX_DISK_WALK_ENTRIES: usize = 100_000;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_DISK_WALK_ENTRIES {
                return total;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// process_resident_memory_bytes, process_cpu_seconds_total and
/// process_open_fds, from /proc/self (Linux).
fn render_process(out: &mut String) {
    let page = 4096u64;
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(rss_pages) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
    {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            rss_pages * page
        );
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
    {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total CPU time (user and system).\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
            ticks as f64 / 100.0
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            out,
            "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}",
            fds.count()
        );
    }
}
