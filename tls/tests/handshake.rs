//! Real TLS handshakes over loopback TCP between a `ServerTls` and clients
//! with a cluster certificate, no certificate, a foreign CA's certificate;
//! and a reload that swaps the server's certificate without a restart.

use std::path::Path;
use std::time::Duration;

use tally_tls::issue::{open_or_create_ca, write_issued};
use tally_tls::{ClientStream, ClientTls, Peer, Role, RoleSet, ServerTls, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn node_files(dir: &Path) -> TlsFiles {
    let (ca, _) = open_or_create_ca(dir, "cluster CA").unwrap();
    let (cert, key) = write_issued(
        &ca,
        dir,
        "node-1",
        RoleSet::of(&[Role::Node]),
        &["127.0.0.1".into()],
    )
    .unwrap();
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert,
        key,
    }
}

/// Accepts one connection, echoes one byte, returns what the server saw.
async fn serve_one(server: &ServerTls, listener: &TcpListener) -> Result<Peer, String> {
    let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
    let mut stream = server
        .accept(tcp, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let peer = (*stream.info().peer).clone();
    let mut byte = [0u8; 1];
    stream
        .read_exact(&mut byte)
        .await
        .map_err(|e| e.to_string())?;
    stream.write_all(&byte).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    Ok(peer)
}

async fn round_trip(addr: &str, tls: &ClientTls) -> Result<(), String> {
    let mut stream = ClientStream::connect(addr, Some(tls.config()))
        .await
        .map_err(|e| e.to_string())?;
    stream.write_all(b"x").await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut byte = [0u8; 1];
    stream
        .read_exact(&mut byte)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[tokio::test]
async fn server_classifies_verified_missing_and_foreign_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let files = node_files(dir.path());
    let server = ServerTls::load(files.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (ca, _) = open_or_create_ca(dir.path(), "cluster CA").unwrap();
    let (cert, key) =
        write_issued(&ca, dir.path(), "ops", RoleSet::of(&[Role::Admin]), &[]).unwrap();
    let admin = ClientTls::from_files(&files.ca, Some((&cert, &key))).unwrap();
    let anonymous = ClientTls::from_files(&files.ca, None).unwrap();
    let foreign_dir = tempfile::tempdir().unwrap();
    let (foreign_ca, _) = open_or_create_ca(foreign_dir.path(), "other CA").unwrap();
    let (fcert, fkey) = write_issued(
        &foreign_ca,
        foreign_dir.path(),
        "intruder",
        RoleSet::of(&[Role::Admin]),
        &[],
    )
    .unwrap();
    // Trusts the cluster CA (so it reaches the server) but presents a foreign certificate.
    let foreign = ClientTls::from_files(&files.ca, Some((&fcert, &fkey))).unwrap();

    for (client, expect) in [
        (&admin, "verified"),
        (&anonymous, "none"),
        (&foreign, "untrusted"),
    ] {
        let (served, sent) = tokio::join!(serve_one(&server, &listener), round_trip(&addr, client));
        sent.unwrap();
        let peer = served.unwrap();
        match (expect, &peer) {
            ("verified", Peer::Verified(id)) => {
                assert_eq!(id.name, "ops");
                assert!(id.roles.contains(Role::Admin));
            }
            ("none", Peer::NoCertificate) | ("untrusted", Peer::Untrusted(_)) => {}
            _ => panic!("expected {expect}, server saw {peer:?}"),
        }
    }

    // A client that only trusts another CA refuses the node's certificate.
    let distrustful = ClientTls::from_files(&foreign_dir.path().join("ca.pem"), None).unwrap();
    let (served, sent) = tokio::join!(
        serve_one(&server, &listener),
        round_trip(&addr, &distrustful)
    );
    assert!(
        sent.is_err(),
        "a client trusting another CA must not accept the node"
    );
    assert!(served.is_err());
}

#[tokio::test]
async fn reload_swaps_the_server_certificate_for_new_connections_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = node_files(dir.path());
    let server = ServerTls::load(files.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = ClientTls::from_files(&files.ca, None).unwrap();
    // Re-issue the node certificate for a name the client does not dial.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (ca, _) = open_or_create_ca(dir.path(), "cluster CA").unwrap();
    write_issued(
        &ca,
        dir.path(),
        "node-1",
        RoleSet::of(&[Role::Node]),
        &["node-1.example".into()],
    )
    .unwrap();
    assert!(server.files_changed());
    // Before the reload the old certificate (valid for 127.0.0.1) serves.
    let (served, sent) = tokio::join!(serve_one(&server, &listener), round_trip(&addr, &client));
    sent.unwrap();
    served.unwrap();
    server.reload().unwrap();
    assert!(!server.files_changed());
    let (_served, sent) = tokio::join!(serve_one(&server, &listener), round_trip(&addr, &client));
    let err = sent.unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    // A broken file is refused and the running config stays.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    let refused = server.reload().unwrap_err().to_string();
    assert!(refused.contains("node-1.pem"), "{refused}");
}
