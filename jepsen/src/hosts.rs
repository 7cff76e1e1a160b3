//! Hosts: one Linux network namespace per node, joined by veth pairs to a
//! bridge in the root namespace, and the iptables rules that cut them apart.
//!
//! Layout of run `<run>` (a 4-hex-digit id) with subnet `10.77.<k>.0/24`:
//!
//! ```text
//!  root ns (runner, clients)           bridge tj-<run>-br 10.77.<k>.1
//!    ├── veth tj-<run>-v0 ── eth0 in ns tj-<run>-n0  10.77.<k>.10
//!    ├── veth tj-<run>-v1 ── eth0 in ns tj-<run>-n1  10.77.<k>.11
//!    └── ...
//! ```
//!
//! Every host has its own IP, so partitions are real: a node's INPUT chain
//! jumps to `tj-part` (partition DROP rules by source IP) and `tj-loss`
//! (random DROP of peer traffic, `-m statistic`). The runner's address
//! (`.1`) is never dropped, so clients reach every node, as Jepsen's control
//! node does. Each namespace's OUTPUT chain accepts only loopback and the
//! run's /24, and there is no default route, so nothing leaves the test
//! network. The bridge needs one ACCEPT rule in the root FORWARD chain
//! (br_netfilter sends bridged frames through it, and its policy may be
//! DROP); that rule carries the comment `tj-<run>`.
//!
//! Everything is named `tj-*`, so [`cleanup_all`] can find leftovers of
//! any run (after a crash) by name. [`Hosts`] tears its run down on drop.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, bail};

/// Prefix of every namespace, link, chain comment and data dir we create.
pub const PREFIX: &str = "tj-";

/// Runs a command; returns stdout, or an error with stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when this process can create network namespaces (root, `ip netns` works).
pub fn netns_supported() -> Result<(), String> {
    let uid = run("id", &["-u"]).map_err(|e| e.to_string())?;
    if uid.trim() != "0" {
        return Err(format!("not root (uid {})", uid.trim()));
    }
    run("ip", &["netns", "list"]).map_err(|e| format!("`ip netns` unavailable: {e}"))?;
    run("iptables", &["-S", "INPUT"]).map_err(|e| format!("iptables unavailable: {e}"))?;
    Ok(())
}

/// One host.
#[derive(Clone, Debug)]
pub struct Host {
    /// Position (0-based).
    pub index: usize,
    /// Namespace name.
    pub ns: String,
    /// The host's address.
    pub ip: Ipv4Addr,
    /// Root-side veth name.
    pub veth: String,
}

/// The hosts of one run. Dropping it removes everything it created.
pub struct Hosts {
    /// Run id (`tj-<run>-...`).
    pub run: String,
    /// Third octet of the subnet.
    pub subnet: u8,
    /// The bridge.
    pub bridge: String,
    /// The hosts.
    pub hosts: Vec<Host>,
    forward_rule: Option<Vec<String>>,
    torn_down: bool,
}

impl Hosts {
    /// Creates `n` hosts. On error, whatever was created is removed again.
    pub fn setup(run_id: &str, n: usize) -> anyhow::Result<Hosts> {
        if n == 0 || n > 50 {
            bail!("between 1 and 50 hosts, not {n}");
        }
        let subnet = free_subnet(run_id)?;
        let mut hosts = Hosts {
            run: run_id.to_string(),
            subnet,
            bridge: format!("{PREFIX}{run_id}-br"),
            hosts: Vec::new(),
            forward_rule: None,
            torn_down: false,
        };
        hosts.create(n)?; // on error, Drop tears down
        Ok(hosts)
    }

    fn create(&mut self, n: usize) -> anyhow::Result<()> {
        let br = self.bridge.clone();
        let gw = format!("{}/24", self.gateway());
        run("ip", &["link", "add", &br, "type", "bridge"])?;
        run("ip", &["addr", "add", &gw, "dev", &br])?;
        run("ip", &["link", "set", &br, "up"])?;
        let rule: Vec<String> = [
            "FORWARD",
            "-i",
            &br,
            "-o",
            &br,
            "-m",
            "comment",
            "--comment",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("{PREFIX}{}", self.run),
            "-j".into(),
            "ACCEPT".into(),
        ])
        .collect();
        let mut insert = vec!["-I".to_string()];
        insert.extend(rule.iter().cloned());
        run(
            "iptables",
            &insert.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        self.forward_rule = Some(rule);
        let subnet = format!("10.77.{}.0/24", self.subnet);
        for i in 0..n {
            let host = Host {
                index: i,
                ns: format!("{PREFIX}{}-n{i}", self.run),
                ip: Ipv4Addr::new(10, 77, self.subnet, 10 + i as u8),
                veth: format!("{PREFIX}{}-v{i}", self.run),
            };
            run("ip", &["netns", "add", &host.ns])?;
            self.hosts.push(host.clone());
            run(
                "ip",
                &[
                    "link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns",
                    &host.ns,
                ],
            )?;
            run("ip", &["link", "set", &host.veth, "master", &br, "up"])?;
            let addr = format!("{}/24", host.ip);
            run("ip", &["-n", &host.ns, "addr", "add", &addr, "dev", "eth0"])?;
            run("ip", &["-n", &host.ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &host.ns, "link", "set", "lo", "up"])?;
            for args in [
                vec!["-N", "tj-part"],
                vec!["-N", "tj-loss"],
                vec!["-A", "INPUT", "-j", "tj-part"],
                vec!["-A", "INPUT", "-j", "tj-loss"],
                vec!["-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT"],
                vec!["-A", "OUTPUT", "-d", &subnet, "-j", "ACCEPT"],
                vec!["-A", "OUTPUT", "-j", "DROP"],
            ] {
                self.ns_iptables(i, &args)?;
            }
        }
        Ok(())
    }

    /// The runner's address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    /// Runs iptables inside host `i`'s namespace.
    pub fn ns_iptables(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let ns = &self.hosts[i].ns;
        let mut full = vec!["netns", "exec", ns.as_str(), "iptables", "-w"];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Cuts the network so that host `i` only receives from the hosts in
    /// `sees[i]` (plus itself and the runner). `sees` must be symmetric for
    /// a clean partition; asymmetric inputs give one-way cuts.
    pub fn partition(&self, sees: &[BTreeSet<usize>]) -> anyhow::Result<()> {
        self.heal_partition()?;
        for (i, visible) in sees.iter().enumerate().take(self.hosts.len()) {
            for (j, other) in self.hosts.iter().enumerate() {
                if j != i && !visible.contains(&j) {
                    let src = other.ip.to_string();
                    self.ns_iptables(i, &["-A", "tj-part", "-s", &src, "-j", "DROP"])?;
                }
            }
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal_partition(&self) -> anyhow::Result<()> {
        for i in 0..self.hosts.len() {
            self.ns_iptables(i, &["-F", "tj-part"])?;
        }
        Ok(())
    }

    /// Drops each packet from a peer node with probability `p` on every host.
    pub fn loss(&self, p: f64) -> anyhow::Result<()> {
        self.heal_loss()?;
        let p = format!("{:.3}", p.clamp(0.0, 1.0));
        for i in 0..self.hosts.len() {
            for (j, other) in self.hosts.iter().enumerate() {
                if i != j {
                    let src = other.ip.to_string();
                    self.ns_iptables(
                        i,
                        &[
                            "-A",
                            "tj-loss",
                            "-s",
                            &src,
                            "-m",
                            "statistic",
                            "--mode",
                            "random",
                            "--probability",
                            &p,
                            "-j",
                            "DROP",
                        ],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Removes every loss rule.
    pub fn heal_loss(&self) -> anyhow::Result<()> {
        for i in 0..self.hosts.len() {
            self.ns_iptables(i, &["-F", "tj-loss"])?;
        }
        Ok(())
    }

    /// Kills every process in the namespaces, removes namespaces, links and the FORWARD rule.
    pub fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        let mut errors = Vec::new();
        for host in &self.hosts {
            kill_ns_processes(&host.ns);
            if let Err(e) = run("ip", &["netns", "del", &host.ns]) {
                errors.push(e.to_string());
            }
            let _ = run("ip", &["link", "del", &host.veth]); // usually gone with the namespace
        }
        if let Err(e) = run("ip", &["link", "del", &self.bridge]) {
            errors.push(e.to_string());
        }
        if let Some(rule) = self.forward_rule.take() {
            let mut delete = vec!["-D".to_string()];
            delete.extend(rule);
            if let Err(e) = run(
                "iptables",
                &delete.iter().map(String::as_str).collect::<Vec<_>>(),
            ) {
                errors.push(e.to_string());
            }
        }
        errors
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("tally-jepsen: teardown: {e}");
        }
    }
}

/// SIGKILLs every process in a namespace (also stopped ones), then waits briefly for them to go.
pub fn kill_ns_processes(ns: &str) {
    for _ in 0..20 {
        let pids = run("ip", &["netns", "pids", ns]).unwrap_or_default();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            return;
        }
        let mut args = vec!["-KILL"];
        args.extend(pids.iter().copied());
        let _ = run("kill", &args);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Picks a /24 in 10.77.0.0/16 no interface uses, starting from a hash of the run id.
fn free_subnet(run_id: &str) -> anyhow::Result<u8> {
    let addrs = run("ip", &["-4", "-o", "addr", "show"])?;
    let used: BTreeSet<u8> = addrs
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("10.77."))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect();
    let start = run_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
        % 200;
    for k in 0..200u32 {
        let candidate = (20 + (start + k) % 200) as u8;
        if !used.contains(&candidate) {
            return Ok(candidate);
        }
    }
    bail!("no free 10.77.x.0/24 subnet")
}

/// What [`cleanup_all`] found and removed.
#[derive(Debug, Default)]
pub struct CleanupReport {
    /// Namespaces removed (their processes killed first).
    pub namespaces: Vec<String>,
    /// Links removed.
    pub links: Vec<String>,
    /// Root iptables rules removed.
    pub rules: Vec<String>,
    /// Data directories removed.
    pub dirs: Vec<String>,
    /// Errors met on the way.
    pub errors: Vec<String>,
}

/// Leftover `tj-*` namespaces (with their processes), links and root iptables rules.
pub fn leftovers() -> (Vec<String>, Vec<String>, Vec<String>) {
    let namespaces = run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(String::from)
        .collect();
    let links = run("ip", &["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    let rules = run("iptables", &["-S"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("-A ") && l.contains(PREFIX))
        .map(String::from)
        .collect();
    (namespaces, links, rules)
}

/// Removes every `tj-*` namespace (killing its processes), link, root
/// iptables rule, and data dir under `data_root` left by any run.
pub fn cleanup_all(data_root: &std::path::Path) -> CleanupReport {
    let mut report = CleanupReport::default();
    let (namespaces, links, rules) = leftovers();
    for ns in namespaces {
        kill_ns_processes(&ns);
        match run("ip", &["netns", "del", &ns]) {
            Ok(_) => report.namespaces.push(ns),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    for link in links {
        // veths may already be gone with their namespace.
        if run("ip", &["link", "del", &link]).is_ok() {
            report.links.push(link);
        }
    }
    for rule in rules {
        let Some(spec) = rule.strip_prefix("-A ") else {
            continue;
        };
        let mut args = vec!["-D"];
        args.extend(spec.split_whitespace().map(|w| w.trim_matches('"')));
        match run("iptables", &args) {
            Ok(_) => report.rules.push(rule),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    if let Ok(entries) = std::fs::read_dir(data_root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(PREFIX) {
                match std::fs::remove_dir_all(entry.path()) {
                    Ok(()) => report.dirs.push(entry.path().display().to_string()),
                    Err(e) => report
                        .errors
                        .push(format!("{}: {e}", entry.path().display())),
                }
            }
        }
    }
    report
}
