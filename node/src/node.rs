//! Bootstrap of one Tally node: opens storage (after the data-dir identity
//! check), starts openraft, the group-commit writer, the health endpoints and
//! the Kafka ingester and publisher (when configured), and the gRPC server
//! with every service mounted, and serves until shutdown.
//! The services' shared state is `ctx`, the read barriers are `reads`.

use std::sync::Arc;

use openraft::{Config, SnapshotPolicy};
use tally_proto::v1::admin_server::AdminServer;
use tally_proto::v1::ledger_server::LedgerServer;
use tally_proto::v1::raft_server::RaftServer;

/// The node's configuration, re-exported for callers of [`start`].
pub use crate::config::NodeConfig;
use crate::ctx::NodeCtx;
use crate::grpc::admin_service::AdminService;
use crate::grpc::kafka_service::KafkaService;
use crate::grpc::ledger_service::LedgerService;
use crate::grpc::raft_service::RaftService;
use crate::kafka::KafkaRuntime;
use crate::raft::log_store::LogStore;
use crate::raft::network::{MAX_RAFT_MESSAGE_BYTES, NetworkFactory};
use crate::raft::state_machine::StateMachineStore;
use crate::raft::types::Raft;
use crate::storage::{self, identity};
use crate::writer::Writer;

/// Largest client gRPC message (16 MiB): bounds a SubmitBatch request.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// A started node: its context and the server task.
pub struct RunningNode {
    pub ctx: Arc<NodeCtx>,
    pub server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    /// Held while the node runs: no second tallyd opens the data dir.
    pub data_dir_lock: std::fs::File,
}

/// Streams a peer may reset before the server accepted them, at once
/// (h2's default is 20), see the server builder in [`start`].
const MAX_PENDING_ACCEPT_RESETS: usize = 256;

/// Opens storage, starts Raft and serves gRPC on `config.listen_addr` until
/// `shutdown` resolves; then stops gracefully (`shutdown` module: a leader
/// hands leadership over first, requests in flight are answered).
pub async fn start(
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningNode> {
    // Every listener is bound before the data dir is touched: a start that
    // fails on a port in use leaves no identity and no database behind.
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen_addr))?;
    let tcp_tuning = config.tcp_tuning();
    if let Err(e) = tcp_tuning.apply_listener(&listener) {
        tracing::warn!(
            tcp_rto_min_ms = config.tcp_rto_min_ms,
            error = %e,
            "cannot lower the TCP retransmission timeout floor (needs Linux 6.15+); the kernel default (200 ms) stays"
        );
    }
    let http_listener = match config.http_addr {
        Some(http_addr) => Some(
            tokio::net::TcpListener::bind(http_addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {http_addr} (http): {e}"))?,
        ),
        None => None,
    };
    // Certificates are read before the data dir is touched too: a start
    // that fails on a bad certificate file changes nothing.
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(
            tally_tls::ServerTls::load(files.clone()).map_err(|e| anyhow::anyhow!("TLS: {e}"))?,
        )),
        None => None,
    };
    let transport = crate::transport::Transport {
        tls: tls.clone(),
        client_tls: None,
        tcp: tcp_tuning,
    };
    let data_dir_lock = storage::lock_data_dir(&config.data_dir)?;
    crate::metrics::set_node_id(config.node_id);
    identity::check_or_create(&config.data_dir, &config.cluster_id, config.node_id)?;
    let started_at = std::time::Instant::now();
    let db = storage::open_db(&config.data_dir)?;
    let storage_open_ms = started_at.elapsed().as_millis() as u64;
    let raft_config = Config {
        cluster_name: config.cluster_id.clone(),
        heartbeat_interval: config.heartbeat_interval_ms,
        election_timeout_min: config.election_timeout_min_ms,
        election_timeout_max: config.election_timeout_max_ms,
        install_snapshot_timeout: 600_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(staggered_snapshot_interval(
            config.snapshot_every_entries,
            config.node_id,
        )),
        max_in_snapshot_log_to_keep: config.keep_entries_after_snapshot,
        max_payload_entries: 64,
        // A node coming back from a partition asks before campaigning, so it does not
        // unseat a healthy leader with its inflated term (found by the jepsen suite).
        enable_pre_vote: Some(true),
        ..Default::default()
    }
    .validate()?;
    let log_store = LogStore::new(db.clone())?;
    let kafka = Arc::new(KafkaRuntime::new(config.kafka.clone()));
    let loading_at = std::time::Instant::now();
    let sm = StateMachineStore::open(db.clone(), config.ledger, kafka.outbox.clone())?;
    let state_load_ms = loading_at.elapsed().as_millis() as u64;
    let state = sm.shared();
    let applied = sm.applied_watch();
    let checkpoints = sm.checkpoints();
    let network = NetworkFactory {
        cluster_id: config.cluster_id.clone(),
        transport: transport.clone(),
    };
    // Recovery: the state machine as last written, then the committed log
    // entries after it re-applied (inside `Raft::new`).
    let recovered_index = *applied.borrow();
    let saved_committed = log_store.saved_committed_index()?;
    let raft_started = std::time::Instant::now();
    tracing::info!(
        node_id = config.node_id,
        applied_index = recovered_index,
        committed_index = saved_committed,
        to_replay = saved_committed.saturating_sub(recovered_index),
        storage_open_ms,
        state_load_ms,
        "recovering: re-applying committed log entries after the state machine's last applied"
    );
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        network,
        log_store,
        sm,
    )
    .await?;
    tracing::info!(
        node_id = config.node_id,
        applied_index = *applied.borrow(),
        replay_ms = raft_started.elapsed().as_millis() as u64,
        "recovered: raft started"
    );
    let writer = Writer::start(raft.clone(), kafka.outbox.clone());
    let ctx = Arc::new(
        NodeCtx::new(
            config.clone(),
            raft.clone(),
            writer,
            state,
            applied,
            checkpoints.clone(),
            kafka.clone(),
        )
        .with_transport(transport),
    );
    if let Some(kafka_config) = &config.kafka {
        if let Some(topic) = &kafka_config.ingest_topic {
            tokio::spawn(crate::kafka::ingest::run(
                ctx.clone(),
                kafka.clone(),
                kafka_config.clone(),
                topic.clone(),
            ));
        }
        if let Some(topic) = &kafka_config.events_topic {
            tokio::spawn(crate::kafka::publish::run(
                ctx.clone(),
                kafka.clone(),
                kafka_config.clone(),
                topic.clone(),
            ));
        }
    }
    tokio::spawn(crate::observe::run(ctx.clone()));
    crate::failpoint::init();
    crate::reads::start_read_rounds(&ctx);
    let backup_svc = tally_proto::v1::backup_server::BackupServer::new(
        crate::grpc::backup_service::BackupService { ctx: ctx.clone() },
    );
    let kafka_svc =
        tally_proto::v1::kafka_server::KafkaServer::new(KafkaService { ctx: ctx.clone() });
    let ledger = LedgerServer::new(LedgerService { ctx: ctx.clone() })
        .max_decoding_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_CLIENT_MESSAGE_BYTES);
    // Perpetual-futures queries, served by the same ledger service.
    let perps = tally_proto::v1::perps_server::PerpsServer::new(LedgerService { ctx: ctx.clone() })
        .max_decoding_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_CLIENT_MESSAGE_BYTES);
    // Account-model queries, served by the same ledger service.
    let accounts =
        tally_proto::v1::accounts_server::AccountsServer::new(LedgerService { ctx: ctx.clone() })
            .max_decoding_message_size(MAX_CLIENT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_CLIENT_MESSAGE_BYTES);
    let admin = AdminServer::new(AdminService {
        ctx: ctx.clone(),
        membership_lock: Default::default(),
    });
    let raft_svc = RaftServer::new(RaftService { ctx: ctx.clone() })
        .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
    // Accepted connections get TCP_NODELAY in the accept loop: without it
    // a reply written after a flow-control frame waited for the client's
    // delayed ACK (every request above ~5 KB took 40 ms longer).
    let incoming = crate::transport::incoming(listener, tls.clone());
    if let Some(tls) = tls {
        tokio::spawn(crate::transport::watch_reload(
            tls,
            std::time::Duration::from_millis(config.tls_reload_interval_ms),
        ));
    }
    let audit = Arc::new(crate::audit::AuditLog::new(
        config
            .audit_log
            .clone()
            .unwrap_or_else(|| config.data_dir.join("audit.log")),
    ));
    if let Some(http) = http_listener {
        tokio::spawn(crate::health::serve_http(ctx.clone(), http));
    }
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(crate::health::drive_grpc_health(
        ctx.clone(),
        health_reporter,
    ));
    tokio::spawn(crate::removal::watch(ctx.clone()));
    let raft_for_shutdown = raft.clone();
    // On the signal a leader hands leadership over first, while it still
    // serves (`shutdown`); then the server drains its requests.
    // The drain is bounded (`shutdown::DRAIN_TIMEOUT`): a request still
    // open then is cut off, which its client sees as unknown and retries.
    let ctx_for_shutdown = ctx.clone();
    let draining = Arc::new(tokio::sync::Notify::new());
    let drain_started = draining.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!(node_id = ctx_for_shutdown.config.node_id, "stopping");
        crate::shutdown::hand_over_leadership(&ctx_for_shutdown).await;
        drain_started.notify_one();
    };
    let node_id = config.node_id;
    let server = tokio::spawn(async move {
        let serve = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            // Peers cancel heartbeats that outlive their 50 ms budget; under
            // packet loss a TCP stall then delivers many requests together with
            // their resets, and h2's default of 20 pending-accept resets made the
            // server drop the whole connection ("too_many_resets", seen in the
            // jepsen loss runs), costing a reconnect under loss.
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
            .layer(crate::grpc::metrics_layer::GrpcMetricsLayer)
            .layer(crate::grpc::auth_layer::AuthLayer {
                audit,
                node_id: config.node_id,
            })
            .add_service(health_service)
            .add_service(ledger)
            .add_service(perps)
            .add_service(accounts)
            .add_service(admin)
            .add_service(kafka_svc)
            .add_service(backup_svc)
            .add_service(raft_svc)
            .serve_with_incoming_shutdown(incoming, shutdown);
        let result = tokio::select! {
            result = serve => result,
            _ = async {
                draining.notified().await;
                tokio::time::sleep(crate::shutdown::DRAIN_TIMEOUT).await;
            } => {
                tracing::warn!(
                    node_id,
                    "stopping: requests still open after {} ms; cut off (clients retry them)",
                    crate::shutdown::DRAIN_TIMEOUT.as_millis()
                );
                Ok(())
            }
        };
        let _ = raft_for_shutdown.shutdown().await;
        // The applied state on disk as of now: the next start re-applies
        // nothing it has not missed.
        match tokio::task::spawn_blocking(move || checkpoints.checkpoint(true)).await {
            Ok(Ok(index)) => tracing::info!(node_id, index, "final checkpoint written"),
            Ok(Err(e)) => {
                tracing::warn!(node_id, error = %e, "final checkpoint not written; the next start re-applies from the last one")
            }
            Err(e) => {
                tracing::warn!(node_id, error = %e, "final checkpoint not written; the next start re-applies from the last one")
            }
        }
        result
    });
    Ok(RunningNode {
        ctx,
        server,
        data_dir_lock,
    })
}

/// The snapshot interval a node actually uses: `every_entries` stretched by
/// 0, 1/8, 2/8 or 3/8 by node id, so that the nodes of a cluster do not all
/// build a snapshot at the same log index. (On shared cores three
/// simultaneous builds of a large ledger saturated the machine and pushed
/// write p99 from ~10 ms to ~400 ms for a few seconds.)
pub fn staggered_snapshot_interval(every_entries: u64, node_id: u64) -> u64 {
    let every_entries = every_entries.max(1);
    every_entries.saturating_add(every_entries / 8 * (node_id % 4))
}

#[cfg(test)]
mod snapshot_interval_tests {
    use super::staggered_snapshot_interval;

    #[test]
    fn nodes_get_different_snapshot_intervals_never_below_the_configured_one() {
        let got: Vec<u64> = (1..=4)
            .map(|id| staggered_snapshot_interval(20_000, id))
            .collect();
        assert_eq!(got, vec![22_500, 25_000, 27_500, 20_000]);
        assert_eq!(staggered_snapshot_interval(0, 3), 1);
        assert_eq!(staggered_snapshot_interval(u64::MAX, 3), u64::MAX);
    }
}
