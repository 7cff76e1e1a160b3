//! The CI chaos suite: two short real runs of the `tally-jepsen` binary
//! (3 nodes in network namespaces):
//!
//! * safety: partitions, kill -9 and rolling upgrades between the previous
//!   release and this build, bank workload;
//! * availability: leader kills and leader isolation under a register
//!   workload, with the `availability` checker on and loose bounds (below).
//!
//! Each asserts exit code 0 (every checker valid) and that nothing of its
//! run is left behind: no namespace, link, process or iptables rule of the
//! run (`tj-<run id>`; other runs on the machine are not this test's to judge).
//! The two run one after the other (nextest test group `jepsen`).
//!
//! Skips (and passes) with a clear message only when this machine cannot
//! create network namespaces (not root, no `ip netns`, no iptables).

use std::path::PathBuf;
use std::process::Command;

use tally_jepsen::hosts;

fn tallyd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tally-jepsen")).with_file_name("tallyd")
}

/// The previous release's tallyd (`scripts/build-prev-release`):
/// `<target>/prev-release/tallyd`.
fn prev_tallyd() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tally-jepsen"));
    let target = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf();
    target.join("prev-release").join("tallyd")
}

/// Processes whose command line mentions this run's data dir or namespaces.
fn tj_processes(run: &str) -> Vec<String> {
    let out = Command::new("ps").args(["-eo", "pid,args"]).output();
    let Ok(out) = out else { return Vec::new() };
    let dir = format!("/var/tmp/tally-jepsen/{run}");
    let ns = format!("netns exec {run}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&dir) || l.contains(&ns))
        .filter(|l| !l.contains(" ps -eo"))
        .map(String::from)
        .collect()
}

/// `tj-<run id>` from the runner's first stderr line (`tally-jepsen: run <id>: ...`).
fn run_prefix(stderr: &str) -> Option<String> {
    let rest = stderr.split("tally-jepsen: run ").nth(1)?;
    let id = rest.split(':').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| format!("{}{id}", hosts::PREFIX))
}

/// Runs `tally-jepsen test` with `args` (plus results dir and tallyd),
/// asserts it said valid and left nothing of its own behind; returns stdout.
fn run_valid(name: &str, args: &[&str]) -> Option<String> {
    if let Err(why) = hosts::netns_supported() {
        eprintln!(
            "SKIPPED {name}: network namespaces unavailable here ({why}); run as root with iproute2 and iptables"
        );
        return None;
    }
    let tallyd = tallyd();
    assert!(
        tallyd.exists(),
        "{} not found: `cargo build --workspace --bins` first",
        tallyd.display()
    );
    let results = std::env::temp_dir().join(format!("tj-{name}-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_tally-jepsen"))
        .arg("test")
        .args(args)
        .arg("--results-dir")
        .arg(&results)
        .arg("--tallyd")
        .arg(&tallyd)
        .output()
        .expect("run tally-jepsen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");

    let run = run_prefix(&stderr).unwrap_or_else(|| panic!("no run id in stderr:\n{stderr}"));
    let (namespaces, links, rules) = hosts::leftovers();
    let mine =
        |v: Vec<String>| -> Vec<String> { v.into_iter().filter(|x| x.contains(&run)).collect() };
    let (namespaces, links, rules) = (mine(namespaces), mine(links), mine(rules));
    let procs = tj_processes(&run);
    assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
    assert!(links.is_empty(), "links left: {links:?}");
    assert!(rules.is_empty(), "iptables rules left: {rules:?}");
    assert!(procs.is_empty(), "processes left: {procs:?}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "tally-jepsen did not say valid:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("Overall: VALID"), "{stdout}");
    // The results folder has every artifact.
    let dirs: Vec<PathBuf> = std::fs::read_dir(&results)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(dirs.len(), 1, "one results folder in {}", results.display());
    for f in ["history.jsonl", "results.txt", "latency.svg"] {
        assert!(dirs[0].join(f).exists(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&results);
    Some(stdout)
}

#[test]
fn short_chaos_suite_is_valid_and_leaves_nothing_behind() {
    let prev = prev_tallyd();
    if hosts::netns_supported().is_ok() {
        assert!(
            prev.exists(),
            "{} not found: `scripts/build-prev-release` first",
            prev.display()
        );
    }
    let prev = prev.to_string_lossy().into_owned();
    run_valid(
        "short_chaos_suite",
        &[
            "--nodes",
            "3",
            "--time-limit",
            "60",
            "--nemesis",
            "partition,kill,upgrade",
            "--workload",
            "bank",
            "--fault-interval",
            "4",
            "--fault-duration",
            "6",
            "--upgrade-from",
            prev.as_str(),
        ],
    );
}

/// The CI-sized availability run. Bounds are loose on purpose: CI is a
/// loaded 2-core machine (fsyncs of 100-250 ms were seen while builds ran
/// beside a run), so they catch a failover that does not happen or a client
/// that stays stuck (a 5 s fault would show a gap of 5 s or more), not a
/// slow one. The tight targets of issue 18 (a new leader serving writes in
/// under 1 s, 500 ms under 20% loss, 200 ms for a membership change) are
/// measured by the longer runs in jepsen/README.md. Faults: leader kills
/// and isolations, 20% packet loss between the nodes, and membership
/// changes (a node removed, the leader half the time, then a fresh one
/// added and promoted).
/// * whole run: no gap over 4000 ms between successful writes; under loss
///   and membership changes none over 2000 ms;
/// * at most 30% of the run in gaps over 250 ms (each fault costs about
///   1 s of a ~9 s fault cycle when healthy: ~10%).
#[test]
fn short_availability_suite_meets_loose_bounds() {
    let Some(stdout) = run_valid(
        "short_availability_suite",
        &[
            "--nodes",
            "3",
            "--time-limit",
            "60",
            "--nemesis",
            "kill,partition-leader,loss,member",
            "--workload",
            "register",
            "--rate",
            "100",
            "--concurrency",
            "8",
            "--fault-interval",
            "4",
            "--fault-duration",
            "5",
            "--max-write-gap-ms",
            "4000,loss=2000,member=2000",
            "--max-unavailable-share",
            "0.3",
        ],
    ) else {
        return;
    };
    assert!(
        stdout.contains("availability") && stdout.contains("Availability per fault kind"),
        "{stdout}"
    );
}
