//! The fault-injecting TCP proxy (message delay; `tc netem` is not
//! available in this kernel).
//!
//! One proxy runs inside each node's namespace (`tally-jepsen proxy`,
//! started by the runner with `ip netns exec`). The node advertises the
//! proxy's address to its peers, so all Raft traffic *into* a node passes
//! its proxy, which forwards to the node's real listener on the same host.
//! Because the proxy sits on the receiving host, peers' packets still carry
//! their own source IPs and the iptables partitions keep working.
//!
//! Each chunk read from a connection is forwarded after `delay_ms` plus a
//! uniform random `0..=jitter_ms`, never before an earlier chunk of the
//! same direction (TCP order is kept). The settings are read from a control
//! file (`<delay_ms> <jitter_ms>`, polled every 100 ms), so the runner (in
//! the root namespace) changes them by writing a file: no extra port.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The live settings.
#[derive(Default)]
struct Settings {
    delay_ms: AtomicU64,
    jitter_ms: AtomicU64,
}

/// Writes a control file (atomically: temp file then rename).
pub fn write_control(path: &Path, delay_ms: u64, jitter_ms: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{delay_ms} {jitter_ms}\n"))?;
    std::fs::rename(tmp, path)
}

/// Parses a control file's text.
pub fn parse_control(text: &str) -> Option<(u64, u64)> {
    let mut words = text.split_whitespace();
    let delay = words.next()?.parse().ok()?;
    let jitter = words.next().map(|w| w.parse().ok()).unwrap_or(Some(0))?;
    Some((delay, jitter))
}

/// Runs the proxy until the process is killed.
pub async fn run(listen: String, upstream: String, control: PathBuf) -> anyhow::Result<()> {
    let settings = Arc::new(Settings::default());
    let watcher = Arc::clone(&settings);
    tokio::spawn(async move {
        loop {
            if let Ok(text) = tokio::fs::read_to_string(&control).await
                && let Some((d, j)) = parse_control(&text)
            {
                watcher.delay_ms.store(d.min(60_000), Ordering::Relaxed);
                watcher.jitter_ms.store(j.min(60_000), Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let listener = TcpListener::bind(&listen).await?;
    loop {
        let (inbound, _) = listener.accept().await?;
        let settings = Arc::clone(&settings);
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(Ok(outbound)) =
                tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&upstream)).await
            else {
                return; // node down: drop the connection, as a dead host would
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            let a = tokio::spawn(pump(ri, wo, Arc::clone(&settings)));
            let b = tokio::spawn(pump(ro, wi, settings));
            let _ = tokio::join!(a, b);
        });
    }
}

/// Copies one direction, delaying each chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    settings: Arc<Settings>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_due = Instant::now();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = settings.delay_ms.load(Ordering::Relaxed);
        let jitter = settings.jitter_ms.load(Ordering::Relaxed);
        let extra = if jitter > 0 {
            rand::rng().random_range(0..=jitter)
        } else {
            0
        };
        let due = (Instant::now() + Duration::from_millis(delay + extra)).max(last_due);
        last_due = due;
        if tx.send((due, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_text() {
        assert_eq!(parse_control("100 50\n"), Some((100, 50)));
        assert_eq!(parse_control("7"), Some((7, 0)));
        assert_eq!(parse_control(""), None);
        assert_eq!(parse_control("x 1"), None);
    }

    #[tokio::test]
    async fn proxy_delays_and_forwards() -> anyhow::Result<()> {
        let echo = TcpListener::bind("127.0.0.1:0").await?;
        let echo_addr = echo.local_addr()?.to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let dir = std::env::temp_dir().join(format!("tj-proxy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let control = dir.join("proxy.conf");
        write_control(&control, 100, 0)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("127.0.0.1:{port}");
        tokio::spawn(run(listen.clone(), echo_addr, control));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut c = TcpStream::connect(&listen).await?;
        let t = std::time::Instant::now();
        c.write_all(b"ping").await?;
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await?;
        assert_eq!(&b, b"ping");
        // 100 ms each way.
        assert!(
            t.elapsed() >= Duration::from_millis(190),
            "{:?}",
            t.elapsed()
        );
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }
}
