//! `tallyd probe`: the hooks an orchestrator runs inside an image that has
//! no shell and no curl (the `FROM scratch` image of `deploy/image/`):
//! `readyz` and `healthz` GET the node's HTTP health endpoint (`health`)
//! with a plain HTTP/1.0 request over `std::net::TcpStream` and exit 0 on
//! `200`, 1 otherwise with the reason; `step-down` is the pre-stop hook
//! that hands leadership to the most caught-up other voter when the local
//! node leads, so stopping it costs no election timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use tally_proto::v1::admin_client::AdminClient;
use tally_proto::v1::{ClusterStatusRequest, NodeStatusRequest, TransferLeaderRequest};

/// Largest response read from the health endpoint (its answers are a few bytes;
/// `/metrics` is a few KiB).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

#[derive(Args, Debug)]
pub struct ProbeArgs {
    #[command(subcommand)]
    pub check: Check,
}

#[derive(Subcommand, Debug)]
pub enum Check {
    /// GET /readyz: exit 0 when the node knows a leader and has applied all it knows committed.
    Readyz(HttpArgs),
    /// GET /healthz: exit 0 when the node process answers.
    Healthz(HttpArgs),
    /// Pre-stop hook: if the node leads, move leadership to the most caught-up
    /// other voter (exit 0 also when it does not lead or has no other voter).
    StepDown(StepDownArgs),
}

#[derive(Args, Debug)]
pub struct HttpArgs {
    /// The node's --http-listen address, host:port.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub http: String,
    /// Give up after this many milliseconds (connect, send and read).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub timeout_ms: u64,
}

#[derive(Args, Debug)]
pub struct StepDownArgs {
    /// The node's gRPC address, host:port.
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "HOST:PORT")]
    pub grpc: String,
    /// Give up after this many milliseconds (keep it under the orchestrator's grace period).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub timeout_ms: u64,
    /// The cluster CA (PEM); with --tls-cert and --tls-key (the node's own
    /// certificate will do) the hook connects with TLS, else plaintext.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<std::path::PathBuf>,
    #[arg(long, requires = "tls_ca")]
    pub tls_cert: Option<std::path::PathBuf>,
    #[arg(long, requires = "tls_ca")]
    pub tls_key: Option<std::path::PathBuf>,
}

impl StepDownArgs {
    fn transport(&self) -> anyhow::Result<crate::transport::Transport> {
        let tls = match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(
                tally_tls::ClientTls::from_files(ca, Some((cert, key)))
                    .map_err(|e| anyhow::anyhow!("step-down: TLS: {e}"))?,
            ),
            _ => None,
        };
        Ok(crate::transport::Transport::client(tls))
    }
}

/// An HTTP answer: status code and body.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpAnswer {
    pub code: u16,
    pub body: String,
}

/// Runs one probe; an error is the reason it failed (`tallyd` prints it and exits 1).
pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    match args.check {
        Check::Readyz(a) => check_http(&a, "/readyz"),
        Check::Healthz(a) => check_http(&a, "/healthz"),
        Check::StepDown(a) => {
            let timeout = Duration::from_millis(a.timeout_ms);
            let transport = a.transport()?;
            tokio::time::timeout(timeout, step_down(&a.grpc, &transport))
                .await
                .map_err(|_| anyhow::anyhow!("step-down: gave up after {} ms", a.timeout_ms))?
        }
    }
}

fn check_http(args: &HttpArgs, path: &str) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let answer = http_get(&args.http, path, timeout)
        .map_err(|e| anyhow::anyhow!("{path} on {}: {e}", args.http))?;
    let body = answer.body.trim();
    if answer.code == 200 {
        println!("{path}: {body}");
        Ok(())
    } else {
        anyhow::bail!("{path} on {}: HTTP {}: {body}", args.http, answer.code)
    }
}

/// `GET path` on `addr` (host:port) with HTTP/1.0, all within `timeout`.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<HttpAnswer, String> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let mut last_error = format!("{addr} resolves to no address");
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, remaining(deadline)?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = format!("cannot connect to {a}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    let io = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            format!("no answer within {} ms", timeout.as_millis())
        } else {
            e.to_string()
        }
    };
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(io)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(io)?;
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        if response.len() > MAX_RESPONSE_BYTES {
            return Err(format!("answer longer than {MAX_RESPONSE_BYTES} bytes"));
        }
    }
    parse_response(&response)
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err("timed out".into())
    } else {
        Ok(left)
    }
}

/// Parses `HTTP/1.x CODE REASON\r\n...\r\n\r\nBODY`.
fn parse_response(bytes: &[u8]) -> Result<HttpAnswer, String> {
    let text = String::from_utf8_lossy(bytes);
    if text.is_empty() {
        return Err("connection closed without an answer".into());
    }
    let status_line = text.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let code = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => code
            .parse::<u16>()
            .map_err(|_| format!("bad status line {status_line:?}"))?,
        _ => return Err(format!("not an HTTP answer: {status_line:?}")),
    };
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(HttpAnswer { code, body })
}

/// If the node at `grpc` leads, transfers leadership to another voter,
/// trying the most caught-up first.
async fn step_down(grpc: &str, transport: &crate::transport::Transport) -> anyhow::Result<()> {
    let channel = transport
        .channel(grpc, Duration::from_secs(2))
        .map_err(|e| anyhow::anyhow!("step-down: cannot connect to {grpc}: {e}"))?;
    let mut admin = AdminClient::new(channel);
    let me = admin
        .get_node_status(NodeStatusRequest {
            omit_state_hash: true,
        })
        .await
        .map_err(|s| anyhow::anyhow!("step-down: node status: {}", s.message()))?
        .into_inner();
    if me.role != "leader" {
        println!(
            "step-down: node {} is {} (leader {}): nothing to hand over",
            me.node_id, me.role, me.leader_id
        );
        return Ok(());
    }
    let cluster = admin
        .get_cluster_status(ClusterStatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("step-down: cluster status: {}", s.message()))?
        .into_inner();
    let mut candidates: Vec<_> = cluster
        .nodes
        .iter()
        .filter(|n| n.voter && n.node_id != me.node_id && n.error.is_empty())
        .collect();
    if candidates.is_empty() {
        println!(
            "step-down: node {} leads and no other voter is reachable: nothing to hand over",
            me.node_id
        );
        return Ok(());
    }
    candidates.sort_by_key(|n| (std::cmp::Reverse(n.matched_index), n.node_id));
    let mut failures = Vec::new();
    for c in candidates {
        match admin
            .transfer_leader(TransferLeaderRequest { node_id: c.node_id })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                println!(
                    "step-down: node {} handed leadership to node {} (term {})",
                    me.node_id, r.leader_id, r.term
                );
                return Ok(());
            }
            Err(s) => failures.push(format!("node {}: {}", c.node_id, s.message())),
        }
    }
    anyhow::bail!(
        "step-down: no voter took over from node {}: {}",
        me.node_id,
        failures.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection with `answer` and returns the request it read.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 1024];
            let mut len = 0;
            while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                len += s.read(&mut buf[len..]).unwrap();
            }
            s.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&buf[..len]).into_owned()
        });
        (addr, handle)
    }

    #[test]
    fn a_200_answer_is_parsed_and_the_request_is_plain_http_1_0() {
        let (addr, server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nready\n");
        let answer = http_get(&addr, "/readyz", Duration::from_secs(5)).unwrap();
        assert_eq!(
            answer,
            HttpAnswer {
                code: 200,
                body: "ready\n".into()
            }
        );
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /readyz HTTP/1.0\r\n"), "{request}");
    }

    #[test]
    fn a_503_answer_fails_the_check_with_the_body_as_reason() {
        let (addr, _server) =
            serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready: no leader known\n");
        let err = check_http(
            &HttpArgs {
                http: addr,
                timeout_ms: 5_000,
            },
            "/readyz",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("HTTP 503") && err.contains("no leader known"),
            "{err}"
        );
    }

    #[test]
    fn no_listener_garbage_and_silence_are_errors() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = http_get(
            &format!("127.0.0.1:{port}"),
            "/healthz",
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
        assert!(parse_response(b"SSH-2.0-x\r\n").is_err());
        assert!(parse_response(b"").is_err());
        // A server that accepts and never answers: the timeout holds.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let started = Instant::now();
        let err = http_get(&addr, "/readyz", Duration::from_millis(300)).unwrap_err();
        assert!(
            err.contains("no answer") || err.contains("timed out"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}
