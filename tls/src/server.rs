//! The node's side of TLS: a server config (and the node's outbound client
//! config, same identity) loaded from PEM files and reloadable without a
//! restart, the handshake of an accepted connection, and the peer identity
//! each connection carries into gRPC requests (`ConnInfo`).
//!
//! Client certificates are offered, not demanded, and their chains are
//! verified against the cluster CA just after the handshake (the
//! handshake itself still proves the peer holds the certificate's key), so
//! "no certificate" and "certificate from another CA" become typed
//! [`Peer`] values that the node's authorization layer refuses per call
//! with a clear reason. Nothing is ever served to such a peer: every
//! gRPC method requires a right that only a verified role grants.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::roles::{Identity, Peer};
use crate::{TlsError, TlsFiles, load_certs, load_key, provider, root_store};

/// ALPN protocol both sides speak.
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// One load of the node's TLS files.
struct Loaded {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    /// The cluster CA verifier, used after the handshake.
    verifier: Arc<dyn ClientCertVerifier>,
    /// Modification times of the files when they were read.
    stamp: FileStamp,
}

/// Modification times of (ca, cert, key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp([Option<SystemTime>; 3]);

impl FileStamp {
    fn of(files: &TlsFiles) -> FileStamp {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        FileStamp([mtime(&files.ca), mtime(&files.cert), mtime(&files.key)])
    }
}

/// The node's TLS: server config for its listener, client config for its
/// connections to other nodes, both from the same files, swapped together
/// by [`ServerTls::reload`].
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish()
    }
}

/// Why an accepted connection did not become a TLS stream.
#[derive(Debug, thiserror::Error)]
pub enum TlsAcceptError {
    #[error("TLS handshake did not finish within {0} ms")]
    Timeout(u128),
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
}

/// Accepts whatever certificate a client offers (the handshake still
/// verifies the client's signature with it); the chain is checked after
/// the handshake by the same cluster-CA verifier this delegates to.
#[derive(Debug)]
struct AcceptOffered {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for AcceptOffered {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let stamp = FileStamp::of(files);
    let ca = load_certs(&files.ca)?;
    let chain = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let roots = Arc::new(root_store(&ca)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(format!("cluster CA {}: {e}", files.ca.display())))?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(AcceptOffered {
            inner: verifier.clone(),
        }))
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| {
            TlsError::Config(format!(
                "{} with {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    server.alpn_protocols = vec![ALPN_H2.to_vec()];
    let client = crate::client::client_config(roots, Some((chain, key)))?;
    Ok(Loaded {
        server: Arc::new(server),
        client,
        verifier,
        stamp,
    })
}

impl ServerTls {
    /// Loads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsError> {
        let loaded = load(&files)?;
        Ok(ServerTls {
            files,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether a file changed since the last (re)load.
    pub fn files_changed(&self) -> bool {
        FileStamp::of(&self.files) != self.current().stamp
    }

    /// Reads the files again and, if they make a valid config, uses it for
    /// every new connection (open connections keep theirs). On error the
    /// previous config stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = Arc::new(load(&self.files)?);
        match self.current.write() {
            Ok(mut guard) => *guard = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        Ok(())
    }

    /// The client config for this node's connections to other nodes.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current().client.clone()
    }

    /// Runs the handshake on an accepted connection (within `timeout`) and
    /// classifies the peer's certificate.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<ServerStream, TlsAcceptError> {
        let remote_addr = tcp.peer_addr().ok();
        let loaded = self.current();
        let acceptor = tokio_rustls::TlsAcceptor::from(loaded.server.clone());
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| TlsAcceptError::Timeout(timeout.as_millis()))?
            .map_err(TlsAcceptError::Handshake)?;
        let peer = match tls.get_ref().1.peer_certificates() {
            None | Some([]) => Peer::NoCertificate,
            Some([end_entity, intermediates @ ..]) => {
                match loaded
                    .verifier
                    .verify_client_cert(end_entity, intermediates, UnixTime::now())
                {
                    Err(e) => Peer::Untrusted(e.to_string()),
                    Ok(_) => match Identity::from_cert(end_entity) {
                        Ok(identity) => Peer::Verified(identity),
                        Err(reason) => Peer::Untrusted(reason),
                    },
                }
            }
        };
        Ok(ServerStream {
            io: ServerIo::Tls(Box::new(tls)),
            info: ConnInfo {
                remote_addr,
                peer: Arc::new(peer),
            },
        })
    }
}

/// What a gRPC request knows about its connection (tonic puts it in the
/// request's extensions).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote_addr: Option<SocketAddr>,
    pub peer: Arc<Peer>,
}

enum ServerIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection, plain (insecure listener) or TLS, with its peer.
pub struct ServerStream {
    io: ServerIo,
    info: ConnInfo,
}

impl ServerStream {
    /// A connection of an insecure listener: its peer is [`Peer::Insecure`].
    pub fn plain(tcp: TcpStream) -> ServerStream {
        let remote_addr = tcp.peer_addr().ok();
        ServerStream {
            io: ServerIo::Plain(tcp),
            info: ConnInfo {
                remote_addr,
                peer: Arc::new(Peer::Insecure),
            },
        }
    }

    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl tonic::transport::server::Connected for ServerStream {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

macro_rules! delegate_io {
    ($ty:ty, $field:ident, $($variant:path),+) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match &mut self.get_mut().$field {
                    $($variant(s) => Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match &mut self.get_mut().$field {
                    $($variant(s) => Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match &mut self.get_mut().$field {
                    $($variant(s) => Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match &mut self.get_mut().$field {
                    $($variant(s) => Pin::new(s).poll_shutdown(cx),)+
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match &mut self.get_mut().$field {
                    $($variant(s) => Pin::new(s).poll_write_vectored(cx, bufs),)+
                }
            }

            fn is_write_vectored(&self) -> bool {
                match &self.$field {
                    $($variant(s) => s.is_write_vectored(),)+
                }
            }
        }
    };
}
pub(crate) use delegate_io;

delegate_io!(ServerStream, io, ServerIo::Plain, ServerIo::Tls);
