//! CI smoke of the load generator: `tally-bench --dev --workload spot
//! --duration-s 3 --smoke` against a real 3-node `tallyd dev` cluster (the
//! debug `tallyd` next to this test's executable, under target/<profile>/).
//!
//! It checks that the whole path works end to end (cluster start, set-up,
//! spot trades, report, cluster stop) and that the JSON report is well
//! formed. It asserts no figure: `--smoke` itself exits non-zero only if
//! nothing was applied. Bounded: the child is killed after `TIMEOUT`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest the smoke run may take (it normally takes well under 30 s).
const TIMEOUT: Duration = Duration::from_secs(180);

/// target/<profile>/ (this test runs from target/<profile>/deps/).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory")
        .to_path_buf()
}

#[test]
fn spot_smoke_against_a_dev_cluster() {
    let tallyd = profile_dir().join("tallyd");
    assert!(
        tallyd.is_file(),
        "{} not found: build it first (cargo build -p tally-node --bin tallyd, \
         or cargo build --workspace --bins)",
        tallyd.display()
    );
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_tally-bench"));
    let mut child = Command::new(&bench)
        .arg("--dev")
        .arg("--tallyd")
        .arg(&tallyd)
        .args(["--workload", "spot", "--duration-s", "3", "--smoke"])
        .args(["--clients", "4", "--batch", "30", "--json", "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tally-bench");
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut err = String::new();
        let reader = std::thread::spawn(move || {
            let _ = stderr.read_to_string(&mut err);
            err
        });
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let err = reader.join().unwrap_or_default();
        let _ = tx.send((out, err));
    });
    let Ok((out, err)) = rx.recv_timeout(TIMEOUT) else {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        std::thread::sleep(Duration::from_secs(20));
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "tally-bench smoke did not finish within {} s",
            TIMEOUT.as_secs()
        );
    };
    let status = child.wait().expect("wait for tally-bench");
    assert!(
        status.success(),
        "tally-bench --smoke failed ({status}):\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(err.contains("SMOKE OK"), "stderr:\n{err}");
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{out}"));
    for key in [
        "throughput",
        "latency",
        "totals",
        "per_second",
        "processes",
        "cpu",
    ] {
        assert!(report.get(key).is_some(), "report lacks {key}:\n{out}");
    }
    assert_eq!(report["settings"]["workload"], "spot");
    assert_eq!(report["processes"].as_array().map(Vec::len), Some(3));
}
