//! Where to send a request: the configured endpoints, the remembered leader,
//! each endpoint's observed read latency (for [`crate::ReadPolicy::Nearest`]),
//! and one lazily-connected gRPC channel per address.
//!
//! Channels are created on first use (inside the runtime) with
//! `Endpoint::connect_lazy`, so a client can be built while every node is
//! down, and are shared by all clones of a client: one HTTP/2 connection per
//! node, multiplexed across tasks. Addresses learned from leader hints get a
//! channel too, up to [`MAX_EXTRA_CHANNELS`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use crate::connect::{PeerWatch, WatchingConnector};

/// Most channels kept for addresses outside the configured list (leader
/// hints); the oldest is dropped beyond this.
pub(crate) const MAX_EXTRA_CHANNELS: usize = 16;

/// HTTP/2 keep-alive: ping interval and how long to wait for the answer.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// One pick in this many by the nearest policy goes round-robin instead, so
/// every node's latency estimate stays fresh.
const NEAREST_EXPLORE_EVERY: usize = 16;
/// How long the nearest policy avoids a node after a failed attempt.
const NEAREST_FAILURE_PENALTY: Duration = Duration::from_secs(2);
/// Weight of a new sample in the latency average, as 1/N.
const LATENCY_EWMA_DIVISOR: u64 = 8;
/// The least time between two leader discoveries (node status sweeps).
const DISCOVERY_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// How long writes let followers forward after a leader hint pointed at an
/// address this client could not connect to.
const FORWARD_WRITES_FOR: Duration = Duration::from_secs(30);
/// How long an address that left an attempt unanswered (connected, but no
/// answer within the attempt timeout: a paused or wedged node) is passed
/// over: leader hints naming it are not followed and rotation skips it,
/// unless every node is passed over. Followers keep naming a lost leader
/// until they elect a new one, and following that hint costs a whole
/// attempt timeout each time.
pub(crate) const UNRESPONSIVE_FOR: Duration = Duration::from_secs(1);

/// What the client has observed of one configured endpoint's latency.
#[derive(Clone, Copy, Debug, Default)]
struct Latency {
    /// Exponentially weighted average of answered attempts, in microseconds;
    /// 0 until the first sample.
    average_us: u64,
    /// When an attempt on this node last failed without an answer.
    failed_at: Option<Instant>,
}

pub(crate) struct Router {
    endpoints: Vec<String>,
    connect_timeout: Duration,
    /// Round-robin cursor for reads that any node may serve, and for the
    /// first pick when no leader is known.
    cursor: AtomicUsize,
    /// Picks made by the nearest policy (every N-th one explores).
    nearest_picks: AtomicUsize,
    state: Mutex<RouterState>,
    /// TLS to the cluster (None: plaintext).
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

#[derive(Default)]
struct RouterState {
    /// The last node that accepted a leader-only request.
    leader: Option<String>,
    channels: HashMap<String, Channel>,
    /// Whether each channel's connector ever handed a connection over (same keys).
    peers: HashMap<String, std::sync::Arc<PeerWatch>>,
    /// Addresses with a channel that are not configured endpoints, oldest first.
    extras: VecDeque<String>,
    /// Per configured endpoint (same order).
    latency: Vec<Latency>,
    /// When the last leader discovery started.
    discovered_at: Option<Instant>,
    /// Until when writes let followers forward them (see
    /// [`Router::forward_writes`]).
    forward_writes_until: Option<Instant>,
    /// Addresses that left an attempt unanswered, and when (see [`UNRESPONSIVE_FOR`]).
    unresponsive: HashMap<String, Instant>,
}

impl Router {
    /// `endpoints` must be validated, normalized and non-empty.
    pub(crate) fn new(endpoints: Vec<String>, connect_timeout: Duration) -> Router {
        debug_assert!(!endpoints.is_empty());
        let state = RouterState {
            latency: vec![Latency::default(); endpoints.len()],
            ..RouterState::default()
        };
        Router {
            endpoints,
            connect_timeout,
            cursor: AtomicUsize::new(0),
            nearest_picks: AtomicUsize::new(0),
            state: Mutex::new(state),
            tls: None,
        }
    }

    /// Connects with TLS (`Some`) or plaintext.
    pub(crate) fn with_tls(mut self, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Router {
        self.tls = tls;
        self
    }

    fn state(&self) -> MutexGuard<'_, RouterState> {
        // The state stays consistent even if a holder panicked: every update
        // is a single assignment or insert.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub(crate) fn leader(&self) -> Option<String> {
        self.state().leader.clone()
    }

    pub(crate) fn set_leader(&self, addr: &str) {
        let mut state = self.state();
        if state.leader.as_deref() != Some(addr) {
            tracing::debug!(leader = addr, "tally client: leader changed");
            state.leader = Some(addr.to_string());
        }
    }

    /// Forgets `addr` as the leader (it failed or refused).
    pub(crate) fn forget_leader(&self, addr: &str) {
        let mut state = self.state();
        if state.leader.as_deref() == Some(addr) {
            state.leader = None;
        }
    }

    /// Forgets the leader whoever it was (leadership was just moved).
    pub(crate) fn clear_leader(&self) {
        self.state().leader = None;
    }

    /// Whether a leader discovery may start now (at most one per
    /// [`DISCOVERY_MIN_INTERVAL`]); if so, records that it started.
    pub(crate) fn begin_discovery(&self) -> bool {
        let mut state = self.state();
        let now = Instant::now();
        match state.discovered_at {
            Some(at) if now.duration_since(at) < DISCOVERY_MIN_INTERVAL => false,
            _ => {
                state.discovered_at = Some(now);
                true
            }
        }
    }

    /// Whether writes should let a follower forward them to the leader
    /// rather than ask it for a leader hint. Normally false: the client
    /// follows hints itself and so learns the real leader. True for a while
    /// after a hinted address (not a configured endpoint) could not be
    /// connected to, e.g. an internal address behind a load balancer or
    /// NAT: then only the nodes this client can reach can carry its writes.
    pub(crate) fn forward_writes(&self) -> bool {
        self.state()
            .forward_writes_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// Records a failed connection to `addr`; if it is not a configured
    /// endpoint (it came from a hint), lets followers forward writes for
    /// [`FORWARD_WRITES_FOR`].
    pub(crate) fn hinted_address_unreachable(&self, addr: &str) {
        if !self.endpoints.iter().any(|e| e == addr) {
            tracing::debug!(
                addr,
                "tally client: hinted leader unreachable; letting followers forward writes"
            );
            self.state().forward_writes_until = Some(Instant::now() + FORWARD_WRITES_FOR);
        }
    }

    /// Records that an attempt on `addr` got no answer in time although a
    /// connection to it was made.
    pub(crate) fn mark_unresponsive(&self, addr: &str) {
        self.state()
            .unresponsive
            .insert(addr.to_string(), Instant::now());
    }

    /// Records an answer from `addr` (any answer: the node is alive).
    pub(crate) fn mark_responsive(&self, addr: &str) {
        let mut state = self.state();
        if !state.unresponsive.is_empty() {
            state.unresponsive.remove(addr);
        }
    }

    /// Whether `addr` left an attempt unanswered within [`UNRESPONSIVE_FOR`].
    pub(crate) fn is_unresponsive(&self, addr: &str) -> bool {
        let mut state = self.state();
        match state.unresponsive.get(addr) {
            Some(at) if at.elapsed() < UNRESPONSIVE_FOR => true,
            Some(_) => {
                state.unresponsive.remove(addr);
                false
            }
            None => false,
        }
    }

    /// A configured endpoint other than the remembered leader, in
    /// round-robin order (the leader itself if it is the only endpoint).
    pub(crate) fn follower(&self) -> String {
        let leader = self.leader();
        let n = self.endpoints.len();
        for _ in 0..n {
            let i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            if leader.as_deref() != Some(self.endpoints[i].as_str()) {
                return self.endpoints[i].clone();
            }
        }
        self.spread()
    }

    /// The configured endpoint with the lowest observed latency: unmeasured
    /// nodes first, nodes that just failed last, and one pick in
    /// [`NEAREST_EXPLORE_EVERY`] round-robin.
    pub(crate) fn nearest(&self) -> String {
        let pick = self.nearest_picks.fetch_add(1, Ordering::Relaxed);
        if pick % NEAREST_EXPLORE_EVERY == NEAREST_EXPLORE_EVERY - 1 {
            return self.spread();
        }
        let state = self.state();
        let now = Instant::now();
        let best = state
            .latency
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                l.failed_at
                    .is_none_or(|at| now.duration_since(at) >= NEAREST_FAILURE_PENALTY)
            })
            .min_by_key(|(_, l)| l.average_us)
            .map(|(i, _)| i);
        drop(state);
        match best {
            Some(i) => self.endpoints[i].clone(),
            None => self.spread(),
        }
    }

    /// Records an answered attempt's round trip on `addr` (ignored for
    /// addresses that are not configured endpoints).
    pub(crate) fn observe(&self, addr: &str, elapsed: Duration) {
        let Some(i) = self.endpoints.iter().position(|e| e == addr) else {
            return;
        };
        let sample_us = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut state = self.state();
        let latency = &mut state.latency[i];
        latency.average_us = if latency.average_us == 0 || latency.failed_at.is_some() {
            sample_us
        } else {
            let kept = latency.average_us - latency.average_us / LATENCY_EWMA_DIVISOR;
            kept.saturating_add(sample_us / LATENCY_EWMA_DIVISOR).max(1)
        };
        latency.failed_at = None;
    }

    /// Records an attempt on `addr` that got no answer.
    pub(crate) fn observe_failure(&self, addr: &str) {
        if let Some(i) = self.endpoints.iter().position(|e| e == addr) {
            self.state().latency[i].failed_at = Some(Instant::now());
        }
    }

    /// The next configured endpoint in round-robin order, passing over
    /// unresponsive ones (unless all are).
    pub(crate) fn spread(&self) -> String {
        let n = self.endpoints.len();
        let mut first = None;
        for _ in 0..n {
            let i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            if !self.is_unresponsive(&self.endpoints[i]) {
                return self.endpoints[i].clone();
            }
            first.get_or_insert(i);
        }
        self.endpoints[first.unwrap_or(0)].clone()
    }

    /// The remembered leader, else the next endpoint in round-robin order.
    pub(crate) fn leader_or_spread(&self) -> String {
        self.leader().unwrap_or_else(|| self.spread())
    }

    pub(crate) fn first_endpoint(&self) -> String {
        self.endpoints[0].clone()
    }

    /// The configured endpoint after `addr` (wrapping), or the round-robin
    /// pick if `addr` is not configured.
    pub(crate) fn after(&self, addr: &str) -> String {
        let n = self.endpoints.len();
        match self.endpoints.iter().position(|e| e == addr) {
            Some(i) => (1..=n)
                .map(|k| &self.endpoints[(i + k) % n])
                .find(|e| !self.is_unresponsive(e))
                .unwrap_or(&self.endpoints[(i + 1) % n])
                .clone(),
            None => self.spread(),
        }
    }

    /// The channel to `addr`, created (lazily connecting) on first use. Must
    /// be called from within a Tokio runtime.
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut state = self.state();
        if let Some(channel) = state.channels.get(addr) {
            return Ok(channel.clone());
        }
        // The connector applies the connect timeout itself (so a timeout is a
        // connect error like a refusal) and watches what the peer sends first.
        let watch = PeerWatch::new();
        let connector = WatchingConnector {
            watch: watch.clone(),
            connect_timeout: self.connect_timeout,
            tls: self.tls.clone(),
        };
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("{addr}: invalid address: {e}"))?
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
        let channel = endpoint.connect_with_connector_lazy(connector);
        if !self.endpoints.iter().any(|e| e == addr) {
            state.extras.push_back(addr.to_string());
            while state.extras.len() > MAX_EXTRA_CHANNELS {
                if let Some(old) = state.extras.pop_front() {
                    state.channels.remove(&old);
                    state.peers.remove(&old);
                }
            }
        }
        state.peers.insert(addr.to_string(), watch);
        state.channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Whether a connection to `addr` was ever made (and checked to be an
    /// HTTP/2 server): before that, no request can have been sent to it.
    pub(crate) fn ever_connected(&self, addr: &str) -> bool {
        self.state()
            .peers
            .get(addr)
            .is_some_and(|watch| watch.ever_connected())
    }

    #[cfg(test)]
    pub(crate) fn channel_count(&self) -> usize {
        self.state().channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(
            vec!["a:1".into(), "b:2".into(), "c:3".into()],
            Duration::from_millis(100),
        )
    }

    #[test]
    fn rotation_and_leader() {
        let r = router();
        assert_eq!(r.after("a:1"), "b:2");
        assert_eq!(r.after("c:3"), "a:1");
        let picks: Vec<String> = (0..4).map(|_| r.spread()).collect();
        assert_eq!(picks, ["a:1", "b:2", "c:3", "a:1"]);
        assert_eq!(r.leader(), None);
        r.set_leader("b:2");
        assert_eq!(r.leader_or_spread(), "b:2");
        r.forget_leader("a:1");
        assert_eq!(r.leader().as_deref(), Some("b:2"));
        r.forget_leader("b:2");
        assert_eq!(r.leader(), None);
    }

    #[test]
    fn followers_skip_the_leader() {
        let r = router();
        r.set_leader("b:2");
        let picks: Vec<String> = (0..4).map(|_| r.follower()).collect();
        assert!(picks.iter().all(|p| p != "b:2"), "{picks:?}");
        assert!(picks.iter().any(|p| p == "a:1") && picks.iter().any(|p| p == "c:3"));
        let single = Router::new(vec!["a:1".into()], Duration::from_millis(1));
        single.set_leader("a:1");
        assert_eq!(single.follower(), "a:1");
        r.clear_leader();
        assert_eq!(r.leader(), None);
    }

    #[test]
    fn nearest_prefers_unmeasured_then_fastest_and_avoids_failures() {
        let r = router();
        r.observe("a:1", Duration::from_millis(5));
        r.observe("b:2", Duration::from_millis(1));
        // c:3 is unmeasured: tried first.
        assert_eq!(r.nearest(), "c:3");
        r.observe("c:3", Duration::from_millis(9));
        let picks: Vec<String> = (0..(NEAREST_EXPLORE_EVERY * 2))
            .map(|_| r.nearest())
            .collect();
        let fastest = picks.iter().filter(|p| *p == "b:2").count();
        assert!(fastest >= NEAREST_EXPLORE_EVERY * 2 - 2, "{picks:?}");
        r.observe_failure("b:2");
        assert_eq!(r.nearest(), "a:1");
        // An answer clears the failure and restarts the average.
        r.observe("b:2", Duration::from_millis(2));
        assert_eq!(r.nearest(), "b:2");
        r.observe("hint:9", Duration::from_millis(1)); // not configured: ignored
        assert!(!r.forward_writes());
        r.hinted_address_unreachable("a:1"); // configured: just down
        assert!(!r.forward_writes());
        r.hinted_address_unreachable("10.9.9.9:1");
        assert!(r.forward_writes());
        assert!(r.begin_discovery());
        assert!(!r.begin_discovery(), "rate limited");
    }

    #[test]
    fn unresponsive_nodes_are_passed_over_unless_all_are() {
        let r = router();
        r.mark_unresponsive("b:2");
        assert!(r.is_unresponsive("b:2"));
        assert!(!r.is_unresponsive("a:1"));
        assert_eq!(r.after("a:1"), "c:3");
        let picks: Vec<String> = (0..6).map(|_| r.spread()).collect();
        assert!(picks.iter().all(|p| p != "b:2"), "{picks:?}");
        r.mark_unresponsive("a:1");
        r.mark_unresponsive("c:3");
        // Every node passed over: plain rotation.
        assert_eq!(r.after("a:1"), "b:2");
        r.mark_responsive("b:2");
        assert!(!r.is_unresponsive("b:2"));
        assert_eq!(r.after("a:1"), "b:2");
        assert_eq!(r.after("b:2"), "b:2"); // the only responsive one
    }

    #[tokio::test]
    async fn extra_channels_are_bounded() {
        let r = router();
        for port in 1..=(MAX_EXTRA_CHANNELS as u16 + 10) {
            assert!(r.channel(&format!("hint:{port}")).is_ok());
        }
        assert!(r.channel("a:1").is_ok());
        assert_eq!(r.channel_count(), MAX_EXTRA_CHANNELS + 1);
    }
}
