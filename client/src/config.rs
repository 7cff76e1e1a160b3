//! Client configuration and endpoint (`host:port`) parsing.
//!
//! Owns [`ClientConfig`], its defaults, and the rules for what counts as a
//! valid endpoint, so the library and `tallyctl` accept exactly the same
//! strings.

use std::time::Duration;

use crate::error::ClientError;
use crate::read::{Consistency, ReadPolicy};

/// Where `tallyd dev` listens: the default endpoints of `tallyctl`.
pub const DEV_ENDPOINTS: [&str; 3] = ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"];

/// Upper bound on the number of configured endpoints (a limit on everything).
pub const MAX_ENDPOINTS: usize = 64;

/// Upper bound on any configured duration: one day.
const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;

/// How a [`crate::Client`] reaches the cluster and how long it keeps trying.
///
/// ```
/// use tally_client::ClientConfig;
/// let config = ClientConfig {
///     timeout_ms: 2_000,
///     ..ClientConfig::new(["10.0.0.1:50051", "10.0.0.2:50051"])
/// };
/// assert_eq!(config.retry_backoff_ms, 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Nodes to contact, `host:port` (an `http://` prefix is accepted). The
    /// client also follows leader hints to nodes not in this list.
    pub endpoints: Vec<String>,
    /// Budget of one whole call, including every retry. Default 5000.
    pub timeout_ms: u64,
    /// Budget of one connection: the TCP connect (name resolution included)
    /// and the peer's HTTP/2 SETTINGS frame, which the client waits for
    /// before writing anything (a peer that does not send it is no gRPC
    /// server, and the call counts it as not connected: nothing was sent).
    /// Calls that wait on the cluster (membership changes, leader transfer,
    /// snapshot, compact: their attempts are not capped) give up as not sent
    /// once no node could be connected to for this long per node, whatever
    /// their `timeout_ms`. Default 1000.
    pub connect_timeout_ms: u64,
    /// Budget of one RPC attempt (capped by what is left of `timeout_ms`), so
    /// a hung node costs one attempt, not the whole call. Membership changes
    /// and `init` are not capped: they get the whole remaining budget.
    /// Default 2000.
    pub attempt_timeout_ms: u64,
    /// First pause between retries; doubles after each failed attempt. Default 20.
    pub retry_backoff_ms: u64,
    /// Cap of the pause between retries. Default 500.
    pub max_retry_backoff_ms: u64,
    /// Which nodes reads go to. Default [`ReadPolicy::RoundRobin`]:
    /// non-linearizable reads spread over every node, linearizable reads to
    /// the leader.
    pub read_policy: ReadPolicy,
    /// What `ReadOptions::default()` ([`Consistency::ClientDefault`]) means
    /// for this client: [`Consistency::Linearizable`] (the default) or
    /// [`Consistency::Session`]. The other levels need per-read parameters
    /// and are refused here.
    ///
    /// Linearizable stays the default because a ledger's readers are often
    /// other processes than its writers (a gateway showing a balance the
    /// matching engine just changed), and only linearizable reads see other
    /// clients' acknowledged writes. Choose `Session` for a process that
    /// only needs its own writes reflected: its reads are served locally by
    /// any node, with no leader round trip.
    pub read_consistency_default: Consistency,
    /// TLS to the cluster: the cluster CA and this client's certificate
    /// (its roles decide what it may call). `None`: plaintext, for nodes
    /// started with `--insecure`. Default `None`.
    pub tls: Option<tally_tls::ClientTls>,
}

impl Default for ClientConfig {
    /// Defaults for every knob and no endpoints (set them, or use [`ClientConfig::new`]).
    fn default() -> Self {
        ClientConfig {
            endpoints: Vec::new(),
            timeout_ms: 5_000,
            connect_timeout_ms: 1_000,
            attempt_timeout_ms: 2_000,
            retry_backoff_ms: 20,
            max_retry_backoff_ms: 500,
            read_policy: ReadPolicy::default(),
            read_consistency_default: Consistency::Linearizable,
            tls: None,
        }
    }
}

impl ClientConfig {
    /// The defaults with the given endpoints.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..ClientConfig::default()
        }
    }

    /// Checks every field and returns the normalized, de-duplicated endpoints.
    pub(crate) fn validate(&self) -> Result<Vec<String>, ClientError> {
        let mut endpoints: Vec<String> = Vec::with_capacity(self.endpoints.len());
        for raw in &self.endpoints {
            let endpoint = parse_endpoint(raw)?;
            if !endpoints.contains(&endpoint) {
                endpoints.push(endpoint);
            }
        }
        if endpoints.is_empty() {
            return Err(ClientError::Config("no endpoints given".to_string()));
        }
        if endpoints.len() > MAX_ENDPOINTS {
            return Err(ClientError::Config(format!(
                "{} endpoints given, at most {MAX_ENDPOINTS} allowed",
                endpoints.len()
            )));
        }
        let durations = [
            ("timeout_ms", self.timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("attempt_timeout_ms", self.attempt_timeout_ms),
            ("retry_backoff_ms", self.retry_backoff_ms),
            ("max_retry_backoff_ms", self.max_retry_backoff_ms),
        ];
        for (name, value_ms) in durations {
            if value_ms == 0 || value_ms > MAX_DURATION_MS {
                return Err(ClientError::Config(format!(
                    "{name} must be between 1 and {MAX_DURATION_MS}, got {value_ms}"
                )));
            }
        }
        if self.max_retry_backoff_ms < self.retry_backoff_ms {
            return Err(ClientError::Config(format!(
                "max_retry_backoff_ms ({}) is below retry_backoff_ms ({})",
                self.max_retry_backoff_ms, self.retry_backoff_ms
            )));
        }
        match self.read_consistency_default {
            Consistency::Linearizable | Consistency::Session => {}
            other => {
                return Err(ClientError::Config(format!(
                    "read_consistency_default must be linearizable or session, got {}",
                    other.as_str()
                )));
            }
        }
        Ok(endpoints)
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Parses one endpoint into its normalized `host:port` form.
///
/// Accepts `host:port`, `[v6addr]:port` and an optional `http://` prefix or
/// trailing `/`. Rejects anything else (paths, `https://`, missing or zero
/// port, blanks inside).
///
/// ```
/// use tally_client::parse_endpoint;
/// assert_eq!(parse_endpoint(" http://127.0.0.1:50051/ ").unwrap(), "127.0.0.1:50051");
/// assert!(parse_endpoint("127.0.0.1").is_err());
/// ```
pub fn parse_endpoint(raw: &str) -> Result<String, ClientError> {
    let bad = |why: &str| ClientError::Config(format!("invalid endpoint {raw:?}: {why}"));
    let mut s = raw.trim();
    if let Some(rest) = s.strip_prefix("http://") {
        s = rest;
    } else if s.contains("://") {
        return Err(bad(
            "only plain host:port (or http://host:port) is supported",
        ));
    }
    s = s.strip_suffix('/').unwrap_or(s);
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.len() > 255 {
        return Err(bad("longer than 255 bytes"));
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(bad("contains blanks or '/'"));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(bad("expected host:port"));
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    if host.contains(':') && !bracketed {
        return Err(bad("an IPv6 address must be written as [addr]:port"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(bad("port must be a number from 1 to 65535")),
        Ok(_) => {}
    }
    Ok(s.to_string())
}

/// Parses a comma-separated endpoint list (e.g. from `TALLY_ENDPOINTS`),
/// ignoring empty items and duplicates.
pub fn parse_endpoint_list(list: &str) -> Result<Vec<String>, ClientError> {
    let mut endpoints = Vec::new();
    for item in list.split(',') {
        if item.trim().is_empty() {
            continue;
        }
        let endpoint = parse_endpoint(item)?;
        if !endpoints.contains(&endpoint) {
            endpoints.push(endpoint);
        }
    }
    if endpoints.is_empty() {
        return Err(ClientError::Config(format!("no endpoints in {list:?}")));
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_normalize() {
        for (raw, want) in [
            ("127.0.0.1:50051", "127.0.0.1:50051"),
            ("  localhost:1 ", "localhost:1"),
            ("http://node-1.internal:50051", "node-1.internal:50051"),
            ("http://10.0.0.1:8080/", "10.0.0.1:8080"),
            ("[::1]:50051", "[::1]:50051"),
        ] {
            assert_eq!(parse_endpoint(raw).ok().as_deref(), Some(want), "{raw}");
        }
    }

    #[test]
    fn endpoints_reject_garbage() {
        for raw in [
            "",
            "   ",
            "127.0.0.1",
            ":50051",
            "host:",
            "host:0",
            "host:65536",
            "host:port",
            "::1:50051",
            "https://host:1",
            "grpc://host:1",
            "host:1/path",
            "ho st:1",
        ] {
            assert!(parse_endpoint(raw).is_err(), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn endpoint_lists() {
        let list = parse_endpoint_list("a:1, b:2,,a:1,").ok();
        assert_eq!(list, Some(vec!["a:1".to_string(), "b:2".to_string()]));
        assert!(parse_endpoint_list(" , ").is_err());
        assert!(parse_endpoint_list("a:1,b").is_err());
    }

    #[test]
    fn config_validation() {
        assert!(ClientConfig::default().validate().is_err(), "no endpoints");
        let ok = ClientConfig::new(DEV_ENDPOINTS);
        assert_eq!(ok.validate().map(|e| e.len()).ok(), Some(3));
        let zero = ClientConfig {
            timeout_ms: 0,
            ..ok.clone()
        };
        assert!(zero.validate().is_err());
        let inverted = ClientConfig {
            retry_backoff_ms: 600,
            ..ok.clone()
        };
        assert!(inverted.validate().is_err());
        for (consistency, valid) in [
            (Consistency::Linearizable, true),
            (Consistency::Session, true),
            (Consistency::ClientDefault, false),
            (Consistency::Bounded, false),
            (Consistency::AtLeastIndex, false),
        ] {
            let config = ClientConfig {
                read_consistency_default: consistency,
                ..ok.clone()
            };
            assert_eq!(config.validate().is_ok(), valid, "{consistency:?}");
        }
        let dup = ClientConfig::new(["a:1", "http://a:1"]);
        assert_eq!(dup.validate().ok(), Some(vec!["a:1".to_string()]));
    }
}
