//! The TCP connector behind every channel. It hands a connection to the
//! HTTP/2 client only once the peer has proved it is an HTTP/2 server, and
//! records whether any connection to an address was ever handed over.
//!
//! This is what lets a call say "not sent" honestly for more than a refused
//! connection. Every Tally node (tonic) opens each connection with an HTTP/2
//! SETTINGS frame, at once and without waiting for the client. The
//! connector waits for that frame (within the connect timeout) before the
//! client writes a single byte: a peer that answers with something else or
//! nothing (an HTTP/1.1 server such as a node's health port waits for a
//! request) fails the connect, so nothing was sent to it. And an attempt
//! that timed out before any connection to its address was ever handed
//! over never left the client.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tally_tls::ClientStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::codegen::Service;
use tonic::codegen::http::Uri;

/// Length of an HTTP/2 frame header.
const FRAME_HEADER_BYTES: usize = 9;
/// Frame type of SETTINGS, the first frame every HTTP/2 server sends.
const SETTINGS_FRAME: u8 = 0x4;

/// Whether a connection to one address was ever handed to the HTTP/2
/// client (after which a request may have been written to it).
#[derive(Debug, Default)]
pub(crate) struct PeerWatch(AtomicBool);

impl PeerWatch {
    pub(crate) fn new() -> Arc<PeerWatch> {
        Arc::new(PeerWatch::default())
    }

    /// True once a connection was handed over: bytes may have been sent.
    pub(crate) fn ever_connected(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Whether the first bytes a server sent are an HTTP/2 SETTINGS frame
/// header (on stream 0, a whole number of 6-byte settings).
fn is_settings_header(header: &[u8]) -> bool {
    header.len() == FRAME_HEADER_BYTES
        && header[3] == SETTINGS_FRAME
        && header[5..9]
            .iter()
            .zip([0x7f, 0xff, 0xff, 0xff])
            .all(|(b, m)| b & m == 0)
        && (u32::from(header[0]) << 16 | u32::from(header[1]) << 8 | u32::from(header[2])) % 6 == 0
}

/// A TCP stream whose first bytes (the peer's SETTINGS frame, read by the
/// connector) are replayed to the reader before the socket is read again.
pub(crate) struct Watched {
    inner: ClientStream,
    /// Bytes already read from the socket, not yet given to the reader.
    replay: Vec<u8>,
    replayed: usize,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.replay.len() {
                this.replay = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why the peer is no HTTP/2 server, from what it sent first.
fn not_http2(first: &[u8]) -> io::Error {
    let what = if first.is_empty() {
        "closed the connection without a byte".to_string()
    } else if first.starts_with(b"HTTP/") {
        let line = first
            .split(|b| *b == b'\r' || *b == b'\n')
            .next()
            .unwrap_or(first);
        format!("answered {:?}", String::from_utf8_lossy(line))
    } else {
        "answered bytes that are not an HTTP/2 SETTINGS frame".to_string()
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the peer {what}: it does not speak HTTP/2, so it is no gRPC (Tally) endpoint \
             (an HTTP port, such as a node's health port?); nothing was sent"
        ),
    )
}

/// Connects to `addr` and reads the peer's first frame header, all within
/// `timeout`; returns the stream and the bytes read.
async fn connect_http2(
    addr: &str,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> io::Result<(ClientStream, Vec<u8>)> {
    let ms = timeout.as_millis();
    let deadline = tokio::time::Instant::now() + timeout;
    let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {ms} ms"),
            )
        })??;
    tcp.set_nodelay(true)?;
    // With TLS the handshake comes first (the server speaks only after the
    // client's hello), then the SETTINGS frame inside it.
    let mut stream = match tls {
        None => ClientStream::plain(tcp),
        Some(config) => ClientStream::tls(
            tokio::time::timeout_at(deadline, tally_tls::connect_tls(config, addr, tcp))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "TLS handshake with {addr} timed out after {ms} ms; nothing was sent"
                        ),
                    )
                })??,
        ),
    };
    let mut first = Vec::with_capacity(64);
    while first.len() < FRAME_HEADER_BYTES {
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut first)).await;
        match read {
            Ok(Ok(0)) => return Err(not_http2(&first)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) if first.is_empty() => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "connected, but the peer sent no HTTP/2 SETTINGS frame within {ms} ms \
                         (no gRPC server, e.g. an HTTP port; a TLS node dialed without TLS; or overloaded); \
                         nothing was sent"
                    ),
                ));
            }
            Err(_) => return Err(not_http2(&first)),
        }
    }
    if !is_settings_header(&first[..FRAME_HEADER_BYTES]) {
        return Err(not_http2(&first));
    }
    Ok((stream, first))
}

/// Connects to the URI's `host:port` (resolving names, trying each
/// address), waits for the peer's HTTP/2 SETTINGS frame, all within the
/// connect timeout, and only then hands the stream over. Its errors
/// (refused, timed out, DNS, not HTTP/2) surface as tonic `ConnectError`s:
/// nothing was sent.
#[derive(Clone, Debug)]
pub(crate) struct WatchingConnector {
    pub watch: Arc<PeerWatch>,
    pub connect_timeout: Duration,
    /// TLS to the cluster (None: plaintext).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Service<Uri> for WatchingConnector {
    type Response = TokioIo<Watched>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Watched>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let watch = self.watch.clone();
        let timeout = self.connect_timeout;
        let tls = self.tls.clone();
        Box::pin(async move {
            let addr = uri
                .authority()
                .map(|a| a.as_str().to_string())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host:port"))?;
            let (stream, first) = connect_http2(&addr, timeout, tls).await?;
            watch.0.store(true, Ordering::Release);
            Ok(TokioIo::new(Watched {
                inner: stream,
                replay: first,
                replayed: 0,
            }))
        })
    }
}

/// A lazy gRPC channel to one node (`host:port`) through the same connector
/// as the client's own channels (TLS when `tls` is given, the peer's HTTP/2
/// greeting awaited within `connect_timeout`), for callers that use the
/// generated `tally_proto` stubs directly.
pub fn raw_channel(
    addr: &str,
    connect_timeout: Duration,
    tls: Option<&tally_tls::ClientTls>,
) -> Result<tonic::transport::Channel, crate::ClientError> {
    let connector = WatchingConnector {
        watch: PeerWatch::new(),
        connect_timeout,
        tls: tls.map(|t| t.config()),
    };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| crate::ClientError::Config(format!("{addr}: invalid address: {e}")))?;
    Ok(endpoint.connect_with_connector_lazy(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_headers() {
        // An empty SETTINGS frame, and one with 3 settings (18 bytes).
        assert!(is_settings_header(&[0, 0, 0, 4, 0, 0, 0, 0, 0]));
        assert!(is_settings_header(&[0, 0, 18, 4, 0, 0, 0, 0, 0]));
        assert!(!is_settings_header(b"HTTP/1.1 "));
        assert!(!is_settings_header(&[0, 0, 7, 4, 0, 0, 0, 0, 0]));
        assert!(!is_settings_header(&[0, 0, 0, 4, 0, 0, 0, 0, 1]));
        assert!(!is_settings_header(&[0, 0, 0, 1, 0, 0, 0, 0, 0]));
        assert!(!is_settings_header(&[0, 0, 0, 4]));
    }
}
