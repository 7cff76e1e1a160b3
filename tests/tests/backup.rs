//! Backup of a running cluster and restore into a new cluster give the same
//! state hash; the restored cluster keeps serving (its balances are the
//! backed-up ones, and it takes new writes); a corrupted backup file and a
//! data dir that already has a database are refused.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use tally_client::{Client, ClientConfig, Owner, ReadOptions, commands};
use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::{InitRequest, Member};
use tally_tests::{Cluster, bin_path, free_port, node_status};

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().expect("run")
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_of_a_running_cluster_restores_into_a_new_cluster_with_the_same_state_hash() {
    let old = Cluster::start(3, &[]).await;
    let c = Client::new(ClientConfig::new(old.endpoints())).expect("client");
    for command in [
        commands::create_asset("USD", 2),
        commands::create_account(1),
        commands::create_account(2),
        commands::deposit(1, "USD", "100"),
        commands::lock(7, 1, "USD", "30"),
        commands::transfer(1, 2, "USD", "20"),
    ] {
        assert!(c.submit(command).await.applied_index().is_some());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tally.backup");
    let out = run(Command::new(bin_path("tallyctl"))
        .args([
            "--endpoints",
            &old.endpoints().join(","),
            "--json",
            "backup",
            "--out",
        ])
        .arg(&file)
        .env_remove("TALLY_ENDPOINTS"));
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let hash = report["state_hash"].as_str().expect("hash").to_string();
    let index = report["applied_index"].as_u64().expect("index");
    // The backup's hash is the old cluster's state hash at that index.
    let old_hashes = old.state_hashes(index).await;
    assert!(
        old_hashes.values().all(|(h, _)| h == &hash),
        "{old_hashes:?} vs {hash}"
    );

    // Restore three data dirs, start them as a new cluster, init once.
    let mut procs = BTreeMap::new();
    let mut members = Vec::new();
    for id in 1..=3u64 {
        let data = dir.path().join(format!("new-{id}"));
        let out = run(Command::new(bin_path("tallyd"))
            .args([
                "restore",
                "--node-id",
                &id.to_string(),
                "--cluster-id",
                "restored",
                "--from",
            ])
            .arg(&file)
            .arg("--data-dir")
            .arg(&data));
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(&hash));
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin_path("tallyd"))
            .args([
                "run",
                "--insecure",
                "--node-id",
                &id.to_string(),
                "--cluster-id",
                "restored",
                "--listen",
                &addr,
            ])
            .arg("--data-dir")
            .arg(&data)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn");
        procs.insert(id, KillOnDrop(child));
        members.push(Member { node_id: id, addr });
    }
    for m in &members {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while node_status(&m.addr).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "node {} did not start",
                m.node_id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    AdminClient::connect(format!("http://{}", members[0].addr))
        .await
        .expect("connect")
        .init(InitRequest {
            members: members.clone(),
        })
        .await
        .expect("init");
    let endpoints: Vec<String> = members.iter().map(|m| m.addr.clone()).collect();
    let new = Client::new(ClientConfig::new(endpoints)).expect("client");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let new_hash = loop {
        if let Ok(r) = new.state_hash(ReadOptions::linearizable()).await {
            break r.state_hash;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new cluster not serving"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        new_hash, hash,
        "the restored cluster has the backed-up state"
    );
    let balance = new
        .balance(Owner::Account(1), "USD", ReadOptions::linearizable())
        .await
        .expect("balance")
        .balance
        .expect("a balance");
    assert_eq!(
        (balance.available.as_str(), balance.locked.as_str()),
        ("50.00", "30.00")
    );
    assert!(
        new.submit(commands::deposit(2, "USD", "1"))
            .await
            .applied_index()
            .is_some()
    );

    // Refusals: a data dir with a database, and a corrupted file.
    let again = run(Command::new(bin_path("tallyd"))
        .args(["restore", "--node-id", "1", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("new-1")));
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already has a database"),
        "{again:?}"
    );
    let mut bytes = std::fs::read(&file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let corrupt = dir.path().join("corrupt.backup");
    std::fs::write(&corrupt, &bytes).expect("write");
    let refused = run(Command::new(bin_path("tallyd"))
        .args(["restore", "--node-id", "1", "--from"])
        .arg(&corrupt)
        .arg("--data-dir")
        .arg(dir.path().join("other")));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("not a usable backup: checksum mismatch"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("other").join("db").exists(),
        "nothing was created"
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
