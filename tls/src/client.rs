//! The connecting side: a client config that trusts only the cluster CA
//! and presents the caller's certificate, and the TLS handshake over an
//! open TCP stream (the server name is the host of the address dialed: a
//! DNS name or an IP address, which the node's certificate must list in
//! its SANs).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::server::{ALPN_H2, delegate_io};
use crate::{TlsError, certs_from_pem, key_from_pem, load_certs, load_key, provider, root_store};

/// A client config trusting `roots`, presenting `identity` if given.
pub(crate) fn client_config(
    roots: Arc<rustls::RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// TLS settings of a client (`tally-client`, `tallyctl`, `tally-bench`):
/// the cluster CA and, normally, the caller's certificate and key.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    /// What the settings were made from, for messages.
    pub description: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientTls({})", self.description)
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for ClientTls {}

impl ClientTls {
    /// From PEM text: the CA certificate(s) and an optional (certificate
    /// chain, private key) pair.
    pub fn from_pem(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<ClientTls, String> {
        let ca = certs_from_pem(ca_pem).map_err(|e| format!("CA: {e}"))?;
        let roots = Arc::new(root_store(&ca).map_err(|e| e.to_string())?);
        let identity = match identity {
            Some((cert, key)) => Some((
                certs_from_pem(cert).map_err(|e| format!("certificate: {e}"))?,
                key_from_pem(key).map_err(|e| format!("key: {e}"))?,
            )),
            None => None,
        };
        let config = client_config(roots, identity).map_err(|e| e.to_string())?;
        Ok(ClientTls {
            config,
            description: "PEM".into(),
        })
    }

    /// From PEM files; `cert` and `key` go together.
    pub fn from_files(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTls, TlsError> {
        let roots = Arc::new(root_store(&load_certs(ca)?)?);
        let description = match identity {
            Some((cert, _)) => format!("CA {}, certificate {}", ca.display(), cert.display()),
            None => format!("CA {}, no client certificate", ca.display()),
        };
        let identity = match identity {
            Some((cert, key)) => Some((load_certs(cert)?, load_key(key)?)),
            None => None,
        };
        Ok(ClientTls {
            config: client_config(roots, identity)?,
            description,
        })
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
pub fn host_of(addr: &str) -> &str {
    let addr = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr);
    let host = match addr.rfind(':') {
        Some(i) if !addr[..i].contains(':') || addr.starts_with('[') => &addr[..i],
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Runs the client handshake over `tcp`, verifying that the server's
/// certificate is from the cluster CA and names the host of `addr`.
pub async fn connect_tls(
    config: Arc<ClientConfig>,
    addr: &str,
    tcp: TcpStream,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let host = host_of(addr);
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host}: not a TLS server name: {e}"),
        )
    })?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake with {addr} failed: {e}")))
}

enum ClientIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A client connection, plain or TLS.
pub struct ClientStream {
    io: ClientIo,
}

impl ClientStream {
    pub fn plain(tcp: TcpStream) -> ClientStream {
        ClientStream {
            io: ClientIo::Plain(tcp),
        }
    }

    pub fn tls(tls: tokio_rustls::client::TlsStream<TcpStream>) -> ClientStream {
        ClientStream {
            io: ClientIo::Tls(Box::new(tls)),
        }
    }

    /// Connects to `addr` (plain when `tls` is None), TCP_NODELAY set.
    pub async fn connect(addr: &str, tls: Option<Arc<ClientConfig>>) -> io::Result<ClientStream> {
        ClientStream::connect_tuned(addr, tls, crate::TcpTuning::default()).await
    }

    /// [`ClientStream::connect`] with `tuning` applied to the socket (an
    /// option the kernel lacks is skipped: the node logs that at start).
    pub async fn connect_tuned(
        addr: &str,
        tls: Option<Arc<ClientConfig>>,
        tuning: crate::TcpTuning,
    ) -> io::Result<ClientStream> {
        let dial = addr
            .strip_prefix("https://")
            .or_else(|| addr.strip_prefix("http://"))
            .unwrap_or(addr);
        let tcp = TcpStream::connect(dial).await?;
        tcp.set_nodelay(true)?;
        let _ = tuning.apply(&tcp);
        match tls {
            None => Ok(ClientStream::plain(tcp)),
            Some(config) => Ok(ClientStream::tls(connect_tls(config, dial, tcp).await?)),
        }
    }
}

delegate_io!(ClientStream, io, ClientIo::Plain, ClientIo::Tls);

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_strips_port_scheme_and_ipv6_brackets() {
        assert_eq!(host_of("127.0.0.1:50051"), "127.0.0.1");
        assert_eq!(host_of("http://tally-0.tally:50051"), "tally-0.tally");
        assert_eq!(host_of("[::1]:50051"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
