//! Health for orchestrators: a tiny HTTP/1.1 endpoint (`/healthz` process
//! up, `/readyz` has a leader and has applied up to its commit index,
//! `/metrics` Prometheus text) and the standard gRPC health service
//! (`grpc.health.v1`), both driven by the same readiness check.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::ctx::NodeCtx;

/// Largest HTTP request head read, in bytes; anything longer is answered 400.
const MAX_REQUEST_BYTES: usize = 4096;
/// How long a client may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the node is ready to serve: it was not removed from the
/// cluster, knows a leader and has applied all it knows committed.
pub fn readiness(ctx: &NodeCtx) -> Result<(), String> {
    if ctx.removed() {
        return Err(format!(
            "NODE_REMOVED: node {} was removed from the cluster",
            ctx.config.node_id
        ));
    }
    let m = ctx.metrics();
    if m.current_leader.is_none() {
        return Err("no leader known".into());
    }
    let committed = m.local_committed.as_ref().map(|l| l.index).unwrap_or(0);
    let applied = *ctx.applied.borrow();
    if applied < committed {
        return Err(format!("applied {applied} < committed {committed}"));
    }
    Ok(())
}

fn metrics_text(ctx: &NodeCtx) -> String {
    let m = ctx.metrics();
    // No state hash: a scrape must not hold back applying.
    let st = ctx.node_status(false);
    let is_leader = u8::from(m.current_leader == Some(ctx.config.node_id));
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    gauge("tally_node_id", "This node's id.", ctx.config.node_id);
    gauge(
        "tally_is_leader",
        "1 if this node is the Raft leader.",
        is_leader as u64,
    );
    gauge("tally_term", "Current Raft term.", m.current_term);
    gauge(
        "tally_last_log_index",
        "Last Raft log index on this node.",
        st.last_log_index,
    );
    gauge(
        "tally_committed_index",
        "Committed index known to this node.",
        st.committed_index,
    );
    gauge(
        "tally_applied_index",
        "Last log index applied to the ledger.",
        st.applied_index,
    );
    gauge(
        "tally_snapshot_index",
        "Log index of the latest snapshot.",
        st.snapshot_index,
    );
    gauge(
        "tally_purged_index",
        "Log purged up to this index.",
        st.purged_index,
    );
    gauge(
        "tally_data_size_bytes",
        "Approximate RocksDB size.",
        st.data_size_bytes,
    );
    let mut positions = Vec::new();
    if let Ok(s) = ctx.state.read() {
        gauge(
            "tally_accounts",
            "Client accounts in the ledger.",
            s.ledger.account_count() as u64,
        );
        gauge(
            "tally_open_holds",
            "Open holds (order locks).",
            s.ledger.open_hold_count() as u64,
        );
        gauge(
            "tally_dedup_entries",
            "Command ids the idempotency table remembers.",
            s.ledger.dedup_entries() as u64,
        );
        gauge(
            "tally_dedup_max_entries",
            "Most command ids remembered; then new commands are refused (DEDUP_TABLE_FULL).",
            s.ledger.dedup_max_entries() as u64,
        );
        gauge(
            "tally_dedup_bytes",
            "Approximate memory of the idempotency table (ring and index, with spare capacity).",
            s.ledger.dedup_approx_bytes() as u64,
        );
        positions = s.ledger.ingest_positions();
    }
    gauge(
        "tally_ready",
        "1 if /readyz would answer 200.",
        u64::from(readiness(ctx).is_ok()),
    );
    ctx.kafka
        .render_metrics(&positions, st.applied_index, &mut out);
    let info = |out: &mut String, name: &str, help: &str, labels: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} 1\n"
        ));
    };
    info(
        &mut out,
        "tally_build_info",
        "The tallyd build.",
        format!(
            "version=\"{}\",commit=\"{}\"",
            env!("CARGO_PKG_VERSION"),
            crate::GIT_COMMIT
        ),
    );
    info(
        &mut out,
        "tally_node_info",
        "This node's identity.",
        format!(
            "node_id=\"{}\",cluster_id=\"{}\"",
            ctx.config.node_id, ctx.config.cluster_id
        ),
    );
    out.push_str(&format!(
        "# HELP tally_has_leader 1 if this node knows a leader.\n# TYPE tally_has_leader gauge\ntally_has_leader {}\n",
        u8::from(m.current_leader.is_some())
    ));
    out.push_str(&format!(
        "# HELP tally_disk_usage_bytes Bytes the data dir occupies on disk (allocated blocks).\n# TYPE tally_disk_usage_bytes gauge\ntally_disk_usage_bytes {}\n",
        crate::metrics::disk_usage_bytes(&ctx.config.data_dir)
    ));
    crate::metrics::METRICS.render(&mut out);
    out
}

async fn answer(ctx: &NodeCtx, mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    let read = async {
        while len < buf.len() {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .map_err(|_| std::io::Error::other("request timeout"))??;
    let head = String::from_utf8_lossy(&buf[..len]);
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    // `/metrics?name[]=...` and the like: the query is accepted and ignored.
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let (code, body, content_type) = match path {
        "/healthz" => (200, "ok\n".to_string(), "text/plain"),
        "/readyz" => match readiness(ctx) {
            Ok(()) => (200, "ready\n".to_string(), "text/plain"),
            Err(why) => (503, format!("not ready: {why}\n"), "text/plain"),
        },
        "/metrics" => (200, metrics_text(ctx), "text/plain; version=0.0.4"),
        "" => (400, "bad request\n".to_string(), "text/plain"),
        _ => (
            404,
            "not found: try /healthz, /readyz, /metrics\n".to_string(),
            "text/plain",
        ),
    };
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Serves the HTTP health endpoints on `listener` until the process exits.
pub async fn serve_http(ctx: Arc<NodeCtx>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ = answer(&ctx, stream).await;
        });
    }
}

/// Keeps the gRPC health service's status in step with readiness.
pub async fn drive_grpc_health(ctx: Arc<NodeCtx>, reporter: tonic_health::server::HealthReporter) {
    loop {
        let status = if readiness(&ctx).is_ok() {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        reporter.set_service_status("", status).await;
        reporter.set_service_status("tally.v1.Ledger", status).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
