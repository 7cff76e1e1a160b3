//! A start that fails leaves the data dir as it was: a port in use is
//! refused before any identity or database is created, and a second tallyd
//! on a data dir in use is refused with a clear message (not RocksDB's
//! LOCK error) while the first keeps running.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use tally_tests::{Cluster, bin_path, free_port, node_status};

fn tallyd(args: &[&str]) -> std::process::Output {
    Command::new(bin_path("tallyd"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tallyd")
}

#[test]
fn a_start_on_a_port_in_use_fails_and_leaves_no_identity_or_database() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("node-1");
    let out = tallyd(&[
        "run",
        "--insecure",
        "--node-id",
        "1",
        "--listen",
        &addr,
        "--data-dir",
        dir.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(
        !dir.exists(),
        "the data dir was created: {:?}",
        std::fs::read_dir(&dir).map(|d| d.count())
    );
    // The HTTP port too.
    let free = format!("127.0.0.1:{}", free_port());
    let out = tallyd(&[
        "run",
        "--insecure",
        "--node-id",
        "1",
        "--listen",
        &free,
        "--http-listen",
        &addr,
        "--data-dir",
        dir.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("(http)"));
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_tallyd_on_a_data_dir_in_use_is_refused_clearly_and_the_first_keeps_serving() {
    let cluster = Cluster::start(1, &[]).await;
    let node = &cluster.nodes[&1];
    let free = format!("127.0.0.1:{}", free_port());
    let out = tallyd(&[
        "run",
        "--insecure",
        "--node-id",
        "1",
        "--cluster-id",
        &cluster.cluster_id,
        "--listen",
        &free,
        "--data-dir",
        node.data_dir.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another tallyd holds this data dir (pid "),
        "{stderr}"
    );
    assert!(!stderr.contains("LOCK"), "{stderr}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = node_status(&node.addr)
        .await
        .expect("the first node still answers");
    assert_eq!(status.node_id, 1);
}
