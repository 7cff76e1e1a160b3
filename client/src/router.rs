//! Where to send a request: the configured endpoints, the remembered leader,
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
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Most channels kept for addresses outside the configured list (leader
/// hints); the oldest is dropped beyond this.
pub(crate) const MAX_EXTRA_CHANNELS: usize = 16;

/// HTTP/2 keep-alive: ping interval and how long to wait for the answer.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Router {
    endpoints: Vec<String>,
    connect_timeout: Duration,
    /// Round-robin cursor for reads that any node may serve, and for the
    /// first pick when no leader is known.
    cursor: AtomicUsize,
    state: Mutex<RouterState>,
}

#[derive(Default)]
struct RouterState {
    /// The last node that accepted a leader-only request.
    leader: Option<String>,
    channels: HashMap<String, Channel>,
    /// Addresses with a channel that are not configured endpoints, oldest first.
    extras: VecDeque<String>,
}

impl Router {
    /// `endpoints` must be validated, normalized and non-empty.
    pub(crate) fn new(endpoints: Vec<String>, connect_timeout: Duration) -> Router {
        debug_assert!(!endpoints.is_empty());
        Router {
            endpoints,
            connect_timeout,
            cursor: AtomicUsize::new(0),
            state: Mutex::new(RouterState::default()),
        }
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

    /// The next configured endpoint in round-robin order.
    pub(crate) fn spread(&self) -> String {
        let i = self.cursor.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.endpoints[i].clone()
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
        match self.endpoints.iter().position(|e| e == addr) {
            Some(i) => self.endpoints[(i + 1) % self.endpoints.len()].clone(),
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
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("{addr}: invalid address: {e}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
        let channel = endpoint.connect_lazy();
        if !self.endpoints.iter().any(|e| e == addr) {
            state.extras.push_back(addr.to_string());
            while state.extras.len() > MAX_EXTRA_CHANNELS {
                if let Some(old) = state.extras.pop_front() {
                    state.channels.remove(&old);
                }
            }
        }
        state.channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
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
