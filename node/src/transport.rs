//! The node's connections, in and out, plain (`--insecure`) or TLS.
//!
//! - In: [`incoming`] accepts TCP connections, runs the TLS handshake of
//!   each in its own task (at most [`MAX_PENDING_HANDSHAKES`] at once, each
//!   within [`HANDSHAKE_TIMEOUT`]) and hands the finished streams, each
//!   carrying its peer identity (`ConnInfo`), to the gRPC server through a
//!   bounded channel.
//! - Out: [`Transport::channel`] opens lazy gRPC channels to other nodes
//!   that dial TCP and, with TLS, verify the peer against the cluster CA
//!   and present this node's certificate (read at each connect, so a
//!   reloaded certificate is used by every new connection).
//! - Both sides carry the node's `TcpTuning` (the retransmission timeout
//!   floor, `--tcp-rto-min-ms`): set on the listener, inherited by every
//!   accepted connection, and set on every connection dialed.
//! - Reload: [`watch_reload`] re-reads the certificate files when they
//!   change (checked every `reload_interval`) or on SIGHUP; a bad file
//!   is logged and counted, and the running config stays.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tally_tls::{ClientStream, ServerStream, ServerTls};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Handshakes in progress at once; further connections wait in the
/// kernel's accept queue.
pub const MAX_PENDING_HANDSHAKES: usize = 256;
/// Time a peer has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections waiting for the gRPC server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// How this node connects: plain, or TLS with its certificate.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// The node's own (reloadable) identity.
    pub tls: Option<Arc<ServerTls>>,
    /// A client identity (tools inside tallyd: the dev supervisor, probes).
    pub client_tls: Option<tally_tls::ClientTls>,
    /// Socket options of every connection this transport opens.
    pub tcp: tally_tls::TcpTuning,
}

impl Transport {
    /// A transport of a client (not a node) with these TLS settings.
    pub fn client(client_tls: Option<tally_tls::ClientTls>) -> Transport {
        Transport {
            tls: None,
            client_tls,
            tcp: tally_tls::TcpTuning::default(),
        }
    }

    fn client_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        match (&self.tls, &self.client_tls) {
            (Some(node), _) => Some(node.client_config()),
            (None, Some(client)) => Some(client.config()),
            (None, None) => None,
        }
    }

    /// A lazy channel to `addr` (host:port): nothing dials until the first
    /// call; each (re)connect dials within `connect_timeout`.
    pub fn channel(&self, addr: &str, connect_timeout: Duration) -> Result<Channel, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad address {addr}: {e}"))?
            .connect_timeout(connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let transport = self.clone();
        let addr = addr.to_string();
        let connector = tower::service_fn(move |_uri: tonic::codegen::http::Uri| {
            let config = transport.client_config();
            let tuning = transport.tcp;
            let addr = addr.clone();
            async move {
                let stream = tokio::time::timeout(
                    connect_timeout,
                    ClientStream::connect_tuned(&addr, config, tuning),
                )
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connect to {addr} timed out"),
                    )
                })??;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        Ok(endpoint.connect_with_connector_lazy(connector))
    }
}

/// The stream of accepted connections for the gRPC server.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
) -> ReceiverStream<Result<ServerStream, std::io::Error>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    tokio::spawn(accept_loop(listener, tls, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    tx: mpsc::Sender<Result<ServerStream, std::io::Error>>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Replies after a flow-control frame must not wait for a delayed ACK.
        let _ = tcp.set_nodelay(true);
        let tx = tx.clone();
        match &tls {
            None => {
                drop(permit);
                if tx.send(Ok(ServerStream::plain(tcp))).await.is_err() {
                    return;
                }
            }
            Some(tls) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    let accepted = tls.accept(tcp, HANDSHAKE_TIMEOUT).await;
                    drop(permit);
                    match accepted {
                        Ok(stream) => {
                            let _ = tx.send(Ok(stream)).await;
                        }
                        Err(e) => {
                            crate::metrics::METRICS
                                .tls_handshake_failures
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        }
                    }
                });
            }
        }
    }
}

/// Reloads the TLS files when they change or on SIGHUP.
pub async fn watch_reload(tls: Arc<ServerTls>, reload_interval: Duration) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(reload_interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let forced = tokio::select! {
            _ = tick.tick() => false,
            _ = signalled => true,
        };
        if !forced && !tls.files_changed() {
            continue;
        }
        match tls.reload() {
            Ok(()) => {
                crate::metrics::METRICS
                    .tls_reloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    cert = %tls.files().cert.display(),
                    trigger = if forced { "SIGHUP" } else { "file change" },
                    "TLS certificates reloaded; new connections use them"
                );
            }
            Err(e) => {
                crate::metrics::METRICS
                    .tls_reload_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "TLS reload failed; the previous certificates stay in use");
            }
        }
    }
}
