//! `tallyd dev` survives drills: a killed node is reported and restarted
//! while the others keep serving; a second `tallyd dev` on the same data
//! dir is refused with a clear message and a non-zero exit; killing the
//! supervisor stops its nodes too (no orphans).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tally_client::{Client, ClientConfig, commands};
use tally_tests::bin_path;

/// A base port whose 3 gRPC and 3 HTTP ports are free now.
fn free_base_port() -> u16 {
    // A pseudo-random first range, so that concurrent tests (and the
    // harness's own port picks) rarely probe the same ports.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let first = (nanos ^ std::process::id()) % 180;
    for base in (0..180u32).map(|i| 21_000 + ((first + i) % 180) as u16 * 97) {
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if (0..3).all(|i| free(base + i) && free(base + 1000 + i)) {
            return base;
        }
    }
    panic!("no free port range");
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// For a failure message: a live process's state, what it waits on, and
/// the state of each of its threads (tells a stuck exit from no signal).
fn process_state(pid: u32) -> String {
    let read = |path: String| std::fs::read_to_string(path).unwrap_or_default();
    let status = read(format!("/proc/{pid}/status"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("?")
            .trim()
            .to_string()
    };
    let mut threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| {
            let stat = read(format!("{}/stat", t.path().display()));
            let state = stat
                .rsplit_once(") ")
                .map_or("?", |(_, r)| &r[..1])
                .to_string();
            let wchan = read(format!("{}/wchan", t.path().display()));
            format!("{state}:{wchan}")
        })
        .collect();
    threads.sort();
    threads.dedup();
    format!(
        "pid {pid} state {} ppid {} sigpnd {} shdpnd {} threads {threads:?}",
        field("State:"),
        field("PPid:"),
        field("SigPnd:"),
        field("ShdPnd:")
    )
}

/// The pid in `started node N (pid P) ...`.
fn started_pid(line: &str, node: u64) -> Option<u32> {
    let rest = line.strip_prefix(&format!("started node {node} (pid "))?;
    rest.split_once(')')?.0.parse().ok()
}

fn wait_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    pred: impl Fn(&str) -> bool,
) -> String {
    try_wait_line(rx, seen, pred)
        .unwrap_or_else(|| panic!("line not seen; output so far:\n{}", seen.join("\n")))
}

/// The first line within 30 s that satisfies `pred`, if any.
fn try_wait_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(line.clone());
            if pred(&line) {
                return Some(line);
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_cluster_restarts_a_killed_node_refuses_a_second_supervisor_and_leaves_no_orphans() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    let base = free_base_port();
    let mut dev = Command::new(bin_path("tallyd"))
        .args([
            "dev",
            "--insecure",
            "--base-port",
            &base.to_string(),
            "--data-dir",
        ])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tallyd dev");
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(dev.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(dev.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut seen = Vec::new();
    if try_wait_line(&rx, &mut seen, |l| l.starts_with("Tally dev cluster is up")).is_none() {
        // Tells a hung supervisor from one that died.
        panic!(
            "no banner from tallyd dev (exit status now: {:?}); output so far:\n{}",
            dev.try_wait(),
            seen.join("\n")
        );
    }
    let pid_of = |seen: &[String], node: u64| seen.iter().rev().find_map(|l| started_pid(l, node));
    let first_pid = pid_of(&seen, 2).expect("node 2 pid");
    let endpoints: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    let client = Client::new(ClientConfig::new(endpoints)).expect("client");
    assert!(
        client
            .submit(commands::create_asset("USD", 2))
            .await
            .applied_index()
            .is_some()
    );

    // A second supervisor on the same dir: refused, non-zero, clear message.
    let second = Command::new(bin_path("tallyd"))
        .args([
            "dev",
            "--insecure",
            "--base-port",
            &(base + 50).to_string(),
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .expect("second tallyd dev");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another tallyd dev holds this data dir"),
        "{stderr}"
    );

    // kill -9 node 2: reported, restarted; the cluster keeps serving.
    assert!(
        Command::new("kill")
            .args(["-9", &first_pid.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    wait_line(&rx, &mut seen, |l| {
        l.starts_with("node 2 exited") && l.contains("restarting")
    });
    assert!(
        client
            .submit(commands::create_account(1))
            .await
            .applied_index()
            .is_some()
    );
    // stdout ("started node 2") and stderr ("node 2 exited") are read by two
    // threads: the restart's line may have arrived before the exit line.
    let restarted_pid = seen
        .iter()
        .filter_map(|l| started_pid(l, 2))
        .find(|pid| *pid != first_pid);
    let new_pid = match restarted_pid {
        Some(pid) => pid,
        None => {
            let line = wait_line(&rx, &mut seen, |l| {
                started_pid(l, 2).is_some_and(|pid| pid != first_pid)
            });
            started_pid(&line, 2).expect("pid")
        }
    };
    assert_ne!(new_pid, first_pid);
    assert!(
        client
            .submit(commands::deposit(1, "USD", "5"))
            .await
            .applied_index()
            .is_some()
    );

    // Kill the supervisor itself: its nodes stop too.
    let pids: Vec<u32> = (1..=3).filter_map(|n| pid_of(&seen, n)).collect();
    assert_eq!(pids.len(), 3);
    dev.kill().expect("kill supervisor");
    let _ = dev.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "orphan nodes left: {:?}",
            pids.iter()
                .filter(|p| alive(**p))
                .map(|p| process_state(*p))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
