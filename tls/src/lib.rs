//! TLS for Tally: every listener and every connection between nodes and
//! from clients.
//!
//! - [`roles`]: who a peer is. A certificate issued by the cluster CA names
//!   its holder in the subject's common name (CN) and its roles in the
//!   subject's organization (O) attributes (`node`, `admin`, `risk`,
//!   `trader`, `reader`; several as several O values or one O value
//!   `trader,reader`).
//! - [`server`]: the node's listener side. A reloadable rustls server
//!   config that offers client authentication; the chain of a presented
//!   certificate is verified against the cluster CA right after the
//!   handshake, so a call without a certificate, or with one from another
//!   CA, reaches the node's authorization layer and is refused there with a
//!   clear `PERMISSION_DENIED` reason instead of a bare handshake alert.
//! - [`client`]: the connecting side (other nodes, `tally-client`,
//!   `tallyctl`): verifies the server against the cluster CA (names and IP
//!   addresses from the certificate's SANs) and presents its own
//!   certificate.
//! - [`tcp`]: socket options on the node's connections (the retransmission
//!   timeout floor).
//! - [`issue`]: certificate generation with rcgen for `tallyd dev`,
//!   `tallyd certs` and tests (a CA, node and client certificates).
//!
//! Only the ring crypto provider is used, passed explicitly (no process-wide
//! default provider is installed).

// Unsafe only where marked: the two setsockopt/getsockopt calls in `tcp`.
#![deny(unsafe_code)]

pub mod client;
pub mod issue;
pub mod roles;
pub mod server;
pub mod tcp;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use client::{ClientStream, ClientTls, connect_tls};
pub use roles::{Identity, Peer, Role, RoleSet};
pub use server::{ServerStream, ServerTls, TlsAcceptError};
pub use tcp::TcpTuning;

/// Largest PEM file read (certificates, keys, CA bundles): 1 MiB.
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
}

/// The PEM files of one TLS identity: the CA that issued every cluster
/// certificate, this holder's certificate (chain) and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The `tallyd run` flags naming these files.
    pub fn flags(&self) -> Vec<String> {
        [
            ("--tls-ca", &self.ca),
            ("--tls-cert", &self.cert),
            ("--tls-key", &self.key),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
    }
}

/// The crypto provider every Tally TLS config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let file_error = |reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| file_error(format!("cannot read: {e}")))?
        .len();
    if len > MAX_PEM_FILE_BYTES {
        return Err(file_error(format!(
            "{len} bytes, more than the {MAX_PEM_FILE_BYTES} a PEM file may have"
        )));
    }
    std::fs::read(path).map_err(|e| file_error(format!("cannot read: {e}")))
}

/// The certificates of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem_file(path)?;
    certs_from_pem(&pem).map_err(|reason| TlsError::File {
        path: path.to_path_buf(),
        reason,
    })
}

/// The certificates of PEM text (at least one).
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("holds no CERTIFICATE block".into());
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem_file(path)?;
    key_from_pem(&pem).map_err(|reason| TlsError::File {
        path: path.to_path_buf(),
        reason,
    })
}

/// The private key of PEM text.
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no PEM private key: {e}"))
}

/// A root store holding the CA certificates of `ca`.
fn root_store(ca: &[CertificateDer<'static>]) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots
            .add(cert.clone())
            .map_err(|e| TlsError::Config(format!("bad CA certificate: {e}")))?;
    }
    Ok(roots)
}
