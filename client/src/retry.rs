//! The retry loop every call runs: pick a node, send one attempt under a
//! per-attempt timeout, classify the answer, then follow a leader hint,
//! rotate to the next node with exponential backoff, or stop, until the
//! call's deadline.
//!
//! It also keeps the one bit writes need to be honest about their outcome:
//! whether any attempt ended in a way that might have reached a node
//! (`uncertain`). Only connection failures prove a request was never sent:
//! no TCP connection (refused, timed out, DNS failure), or a peer that did
//! not open with HTTP/2 SETTINGS (e.g. a node's HTTP/1.1 health port: no
//! gRPC server, so no Tally node; see `connect.rs`), or an attempt that ran
//! out of time before any connection to its node was ever made.

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use tally_proto::{LEADER_METADATA_KEY, REASON_METADATA_KEY};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::config::{ClientConfig, parse_endpoint};
use crate::error::{ClientError, code_name, reasons};
use crate::router::Router;

/// Leader hints followed back to back before a backoff pause (guards
/// against two nodes pointing at each other during an election).
const HINT_HOPS_BEFORE_BACKOFF: u32 = 3;

/// Cap of the pause after an answer that says the cluster has no usable
/// leader right now (`NO_LEADER`, a leader hint naming a node that is down
/// or unresponsive, a refused connection): the wait is for an election,
/// which ends within a few hundred ms, and asking a node whether it is over
/// costs it a metrics read. With the pause doubling to the 500 ms default
/// cap, a client learned of the new leader up to 500 ms late (on average
/// about a quarter of a second), a large part of the 1 s failover target.
const ELECTION_BACKOFF_MAX_MS: u64 = 100;

/// A write attempt unanswered this long is also offered to another node
/// (the same request: same command ids, so at most one applies), and then
/// to the next every [`HEDGE_EVERY`], while the first attempt keeps waiting;
/// the first success wins. A paused or wedged leader otherwise held every
/// write for the whole attempt timeout (1 s in the jepsen runner, 2 s by
/// default) although a new leader served after ~0.5 s. Followers answer a
/// hedge with `NOT_LEADER` at once, so a merely slow leader costs them
/// little. Well above healthy write latency (a few ms to tens of ms).
const HEDGE_AFTER: Duration = Duration::from_millis(300);
/// Pause between two hedged attempts of one call.
const HEDGE_EVERY: Duration = Duration::from_millis(100);
/// Budget of one hedged attempt.
const HEDGE_ATTEMPT: Duration = Duration::from_millis(500);

/// Which nodes a call may go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// The leader: start at the remembered leader, follow `NOT_LEADER`
    /// hints, rotate on failure. With `remember`, a success records the node
    /// as the leader (writes and membership changes).
    Leader { remember: bool },
    /// Any node, starting round-robin; hints are still followed.
    Spread,
    /// A node other than the remembered leader first (round-robin), then
    /// rotating over all nodes; hints are followed.
    Followers,
    /// The node with the lowest observed latency first, then rotating over
    /// all nodes; hints are followed.
    Nearest,
    /// Exactly this node; hints are ignored.
    Fixed(String),
    /// The configured endpoints in order, starting at the first; hints ignored.
    InOrder,
}

/// How one call retries.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub route: Route,
    /// Cap each attempt at `attempt_timeout_ms` (false: the whole remaining
    /// budget). An uncapped call (one that waits on the cluster, with a long
    /// budget) also gives up as not sent once no node could be connected to
    /// for `connect_timeout_ms` per node it may try: its long budget is for
    /// the cluster's work, not for waiting on an unreachable address.
    pub cap_attempts: bool,
    /// The call is a ledger write: `INTERNAL`/`UNKNOWN` answers are retried
    /// (the command may have applied; a retry with the same id finds out).
    pub write: bool,
    /// Record each attempt's round trip for the nearest read policy (reads only).
    pub observe: bool,
}

/// Why a call ended without a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// A node answered with an error that retrying will not change.
    Refused {
        code: Code,
        reason: String,
        message: String,
    },
    /// The deadline passed.
    Exhausted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CallFailure {
    pub kind: FailureKind,
    /// Some earlier attempt ended in a way that may have reached a node
    /// (anything except a connection failure).
    pub uncertain: bool,
    pub last_error: String,
    pub timeout_ms: u64,
}

impl CallFailure {
    /// The error of a read or admin call.
    pub(crate) fn into_client_error(self) -> ClientError {
        match self.kind {
            FailureKind::Refused {
                code,
                reason,
                message,
            } => {
                let reason = if reason.is_empty() {
                    code_name(code).to_string()
                } else {
                    reason
                };
                match code {
                    Code::NotFound => ClientError::NotFound { message },
                    Code::InvalidArgument => ClientError::InvalidArgument { reason, message },
                    _ => ClientError::Status {
                        code,
                        reason,
                        message,
                    },
                }
            }
            FailureKind::Exhausted if self.uncertain => ClientError::Timeout {
                timeout_ms: self.timeout_ms,
                last_error: self.last_error,
            },
            FailureKind::Exhausted => ClientError::Unavailable {
                last_error: self.last_error,
            },
        }
    }
}

/// What the client reads out of an error status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StatusInfo {
    pub code: Code,
    pub reason: Option<String>,
    pub leader_hint: Option<String>,
    pub message: String,
    /// The request never left the client: the connection could not be made
    /// (including a peer that is no HTTP/2 server, see `connect.rs`).
    pub connect_failed: bool,
}

impl StatusInfo {
    pub(crate) fn from_status(status: &Status) -> StatusInfo {
        let text = |key: &str| {
            status
                .metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let connect_failed = is_connect_error(status);
        let mut message = one_line(status.message());
        if connect_failed {
            // "tcp connect error" alone hides the cause (refused, timed out, DNS...).
            if let Some(cause) = root_cause(status).filter(|c| !message.contains(c.as_str())) {
                message = format!("{message}: {cause}");
            }
        }
        StatusInfo {
            code: status.code(),
            reason: text(REASON_METADATA_KEY),
            leader_hint: text(LEADER_METADATA_KEY).and_then(|h| parse_endpoint(&h).ok()),
            message,
            connect_failed,
        }
    }

    fn describe(&self) -> String {
        let code = code_name(self.code);
        match &self.reason {
            Some(reason) if reason != code => format!("{code} {reason}: {}", self.message),
            _ => format!("{code}: {}", self.message),
        }
    }
}

/// Whether the status came from failing to open a connection (tonic wraps
/// those in `ConnectError` before mapping them to `UNAVAILABLE`).
fn is_connect_error(status: &Status) -> bool {
    let mut source = status.source();
    let mut depth = 0;
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        depth += 1;
        if depth > 32 {
            break;
        }
        source = err.source();
    }
    false
}

/// The innermost error's message, if the status has a source.
fn root_cause(status: &Status) -> Option<String> {
    let mut source = status.source()?;
    for _ in 0..32 {
        match source.source() {
            Some(inner) => source = inner,
            None => break,
        }
    }
    Some(one_line(&source.to_string())).filter(|s| !s.is_empty())
}

/// Collapses a message to one trimmed line (server messages end up in
/// one-line CLI errors).
pub(crate) fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for word in message.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Retry,
    Refuse,
}

/// Whether an error answer is worth another attempt on another node: a
/// refusal about this node's own state (too stale for a bounded read, not
/// caught up with an index), which another node may not share.
pub(crate) fn node_specific(reason: Option<&str>) -> bool {
    matches!(
        reason,
        Some(
            reasons::STALE_REPLICA
                | reasons::INDEX_NOT_REACHED
                | reasons::READ_INDEX_NOT_APPLIED
                | reasons::NODE_REMOVED
        )
    )
}

/// Whether an error answer is worth another attempt.
pub(crate) fn verdict(code: Code, reason: Option<&str>, write: bool) -> Verdict {
    if matches!(
        reason,
        Some(reasons::NOT_LEADER | reasons::NO_LEADER | reasons::TIMEOUT | reasons::NODE_REMOVED)
    ) {
        return Verdict::Retry;
    }
    // A deadline the server itself reports with its own reason (e.g.
    // TRANSFER_TIMEOUT, LEARNER_LAGGING, INDEX_NOT_REACHED) is its answer
    // after waiting, not a lost request: sending it again would only wait
    // (and, for admin calls, act) again.
    if code == Code::DeadlineExceeded && reason.is_some() {
        return Verdict::Refuse;
    }
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Aborted
        | Code::ResourceExhausted => Verdict::Retry,
        // From the transport (no reason attached) these are usually a
        // connection dying mid-call; for writes they are ambiguous either way.
        Code::Internal | Code::Unknown if write || reason.is_none() => Verdict::Retry,
        _ => Verdict::Refuse,
    }
}

/// Exponential backoff with ±25% jitter.
struct Backoff {
    next_ms: u64,
    max_ms: u64,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        self.next_capped(self.max_ms)
    }

    /// The next pause, at most `cap_ms` (and the configured cap).
    fn next_capped(&mut self, cap_ms: u64) -> Duration {
        let cap_ms = cap_ms.min(self.max_ms);
        let base = self.next_ms.min(cap_ms);
        self.next_ms = (self.next_ms.saturating_mul(2)).min(self.max_ms);
        let jitter = base / 4;
        let ms = if jitter == 0 {
            base
        } else {
            rand::random_range(base - jitter..=base + jitter)
        };
        Duration::from_millis(ms)
    }
}

/// Runs `op` against nodes chosen by `policy.route` until it succeeds, a
/// node refuses definitely, or `timeout` passes. `op` gets the channel and
/// the attempt's timeout (to send as the gRPC deadline).
pub(crate) async fn call<T, F, Fut>(
    router: &Router,
    config: &ClientConfig,
    timeout: Duration,
    policy: Policy,
    mut op: F,
) -> Result<T, CallFailure>
where
    F: FnMut(Channel, Duration) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    let deadline = started + timeout;
    let fixed = matches!(policy.route, Route::Fixed(_));
    let attempt_cap = Duration::from_millis(config.attempt_timeout_ms);
    let mut backoff = Backoff {
        next_ms: config.retry_backoff_ms,
        max_ms: config.max_retry_backoff_ms,
    };
    let mut target = match &policy.route {
        Route::Leader { .. } => router.leader_or_spread(),
        Route::Spread => router.spread(),
        Route::Followers => router.follower(),
        Route::Nearest => router.nearest(),
        Route::Fixed(addr) => addr.clone(),
        Route::InOrder => router.first_endpoint(),
    };
    let follow_hints = matches!(
        policy.route,
        Route::Leader { .. } | Route::Spread | Route::Followers | Route::Nearest
    );
    let mut uncertain = false;
    let mut attempts: u32 = 0;
    let mut hint_hops: u32 = 0;
    let mut stale_hops: usize = 0;
    let mut last_error = String::from("no attempt was made");

    // See `Policy::cap_attempts`.
    let nodes = if fixed { 1 } else { router.endpoints().len() };
    let connect_budget = Duration::from_millis(config.connect_timeout_ms)
        .saturating_mul(u32::try_from(nodes).unwrap_or(u32::MAX));
    let connect_deadline = (!policy.cap_attempts).then(|| started + connect_budget);
    let hedge_writes = policy.write
        && matches!(policy.route, Route::Leader { .. })
        && router.endpoints().len() > 1;

    loop {
        if let Some(connect_deadline) = connect_deadline
            && !uncertain
            && attempts > 0
            && Instant::now() >= connect_deadline
        {
            return Err(CallFailure {
                kind: FailureKind::Exhausted,
                uncertain,
                last_error: format!(
                    "no node could be connected to within the connect timeout ({} ms per node, \
                     {attempts} attempt(s)), last: {last_error}",
                    config.connect_timeout_ms
                ),
                timeout_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX),
            });
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(CallFailure {
                kind: FailureKind::Exhausted,
                uncertain,
                last_error: format!(
                    "{attempts} attempt(s) in {} ms, last: {last_error}",
                    started.elapsed().as_millis()
                ),
                timeout_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX),
            });
        }
        let attempt_timeout = if policy.cap_attempts {
            attempt_cap.min(remaining)
        } else {
            remaining
        };
        attempts = attempts.saturating_add(1);

        let sent_at = Instant::now();
        let outcome = match router.channel(&target) {
            Ok(channel) if hedge_writes => {
                let primary = tokio::time::timeout(attempt_timeout, op(channel, attempt_timeout));
                tokio::pin!(primary);
                // See HEDGE_AFTER: while the attempt on `target` is unanswered,
                // offer the same request to the other nodes one at a time.
                let mut next_hedge = sent_at + HEDGE_AFTER;
                let mut hedge_at = target.clone();
                let mut hedge = None;
                loop {
                    tokio::select! {
                        r = &mut primary => break r,
                        _ = tokio::time::sleep_until(next_hedge), if hedge.is_none() => {
                            hedge_at = router.after(&hedge_at);
                            if hedge_at == target {
                                hedge_at = router.after(&hedge_at);
                            }
                            let left = deadline.saturating_duration_since(Instant::now());
                            let budget = HEDGE_ATTEMPT.min(attempt_cap).min(left);
                            match router.channel(&hedge_at) {
                                Ok(ch) if hedge_at != target && !budget.is_zero() => {
                                    hedge = Some(Box::pin(tokio::time::timeout(budget, op(ch, budget))));
                                }
                                _ => next_hedge = Instant::now() + HEDGE_EVERY,
                            }
                        }
                        r = async { hedge.as_mut().expect("guarded").await }, if hedge.is_some() => {
                            hedge = None;
                            next_hedge = Instant::now() + HEDGE_EVERY;
                            match r {
                                Ok(Ok(value)) => {
                                    tracing::debug!(target = %target, hedge = %hedge_at, "tally client: hedged attempt answered first");
                                    router.mark_responsive(&hedge_at);
                                    router.mark_unresponsive(&target);
                                    if matches!(policy.route, Route::Leader { remember: true }) {
                                        router.set_leader(&hedge_at);
                                    }
                                    return Ok(value);
                                }
                                // Typically NOT_LEADER naming `target` or
                                // NO_LEADER: keep waiting on `target`. The
                                // request may have reached that node.
                                Ok(Err(status)) => {
                                    uncertain |= !StatusInfo::from_status(&status).connect_failed;
                                }
                                Err(_elapsed) => uncertain |= router.ever_connected(&hedge_at),
                            }
                        }
                    }
                }
            }
            Ok(channel) => {
                tokio::time::timeout(attempt_timeout, op(channel, attempt_timeout)).await
            }
            Err(message) => Ok(Err(Status::unavailable(message))),
        };
        let info = match outcome {
            Ok(Ok(value)) => {
                router.mark_responsive(&target);
                if matches!(policy.route, Route::Leader { remember: true }) {
                    router.set_leader(&target);
                }
                if policy.observe {
                    router.observe(&target, sent_at.elapsed());
                }
                return Ok(value);
            }
            Ok(Err(status)) => StatusInfo::from_status(&status),
            Err(_elapsed) => {
                // No answer in time: the request may be sitting on the node,
                // unless no connection to it was ever made (still connecting:
                // nothing was written).
                let connected = router.ever_connected(&target);
                uncertain |= connected;
                if connected {
                    router.mark_unresponsive(&target);
                }
                if policy.observe {
                    router.observe_failure(&target);
                }
                let waited = attempt_timeout.as_millis();
                last_error = if connected {
                    format!("{target}: no answer within {waited} ms")
                } else if attempts > 1 {
                    // Keep why the earlier attempts could not connect (only
                    // the first cause, so the message does not grow).
                    let earlier = last_error.rsplit("; before that: ").next().unwrap_or("");
                    format!(
                        "{target}: not connected within {waited} ms (nothing sent); \
                         before that: {earlier}"
                    )
                } else {
                    format!("{target}: not connected within {waited} ms (nothing sent)")
                };
                tracing::debug!(target = %target, "tally client: attempt timed out");
                router.forget_leader(&target);
                if !fixed {
                    target = router.after(&target);
                }
                continue;
            }
        };
        if info.connect_failed {
            router.hinted_address_unreachable(&target);
        } else {
            router.mark_responsive(&target);
        }
        // An attempt cut short by the call's own deadline says nothing about
        // the cluster: keep the earlier answer (e.g. NO_LEADER) beside it.
        let cut_by_deadline = matches!(info.code, Code::Cancelled | Code::DeadlineExceeded);
        last_error = if cut_by_deadline && attempts > 1 {
            format!("{target}: {}; before that: {last_error}", info.describe())
        } else {
            format!("{target}: {}", info.describe())
        };
        tracing::debug!(target = %target, error = %last_error, "tally client: attempt failed");
        if policy.observe {
            if info.connect_failed || info.code == Code::Unavailable {
                router.observe_failure(&target);
            } else {
                router.observe(&target, sent_at.elapsed());
            }
        }

        // A fixed node saying "not the leader" will keep saying it.
        let fixed_not_leader = fixed && info.reason.as_deref() == Some(reasons::NOT_LEADER);
        let other_node_may_serve = !fixed && node_specific(info.reason.as_deref());
        if fixed_not_leader
            || (!other_node_may_serve
                && verdict(info.code, info.reason.as_deref(), policy.write) == Verdict::Refuse)
        {
            return Err(CallFailure {
                kind: FailureKind::Refused {
                    code: info.code,
                    reason: info.reason.unwrap_or_default(),
                    message: info.message,
                },
                uncertain,
                last_error,
                timeout_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX),
            });
        }
        if !info.connect_failed {
            uncertain = true;
        }

        // The cluster has no leader this client can use right now: an
        // election is under way (or about to be), see ELECTION_BACKOFF_MAX_MS.
        let mut electing = info.connect_failed
            || matches!(
                info.reason.as_deref(),
                Some(reasons::NO_LEADER | reasons::NOT_LEADER)
            );
        let hint = info
            .leader_hint
            .filter(|hint| follow_hints && *hint != target);
        // A hint naming a node that just left an attempt unanswered is stale
        // (followers name their lost leader until they elect a new one).
        let hint = match hint {
            Some(h) if router.is_unresponsive(&h) => {
                tracing::debug!(hint = %h, "tally client: leader hint names an unresponsive node; not followed");
                electing = true;
                None
            }
            other => other,
        };
        if let Some(hint) = hint {
            hint_hops += 1;
            if hint_hops >= HINT_HOPS_BEFORE_BACKOFF {
                hint_hops = 0;
                sleep_until_or(deadline, backoff.next_capped(ELECTION_BACKOFF_MAX_MS)).await;
            }
            target = hint;
            continue;
        }
        router.forget_leader(&target);
        if !fixed {
            target = router.after(&target);
        }
        if other_node_may_serve {
            // Not a failure of the cluster: try the next node at once; once
            // every node has refused in a row, that is the answer.
            stale_hops += 1;
            if stale_hops < router.endpoints().len() {
                continue;
            }
            return Err(CallFailure {
                kind: FailureKind::Refused {
                    code: info.code,
                    reason: info.reason.unwrap_or_default(),
                    message: format!("every node refused; last: {}", info.message),
                },
                uncertain,
                last_error,
                timeout_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX),
            });
        }
        stale_hops = 0;
        let wake_by = match connect_deadline {
            Some(at) if !uncertain => deadline.min(at),
            _ => deadline,
        };
        let pause = if electing {
            backoff.next_capped(ELECTION_BACKOFF_MAX_MS)
        } else {
            backoff.next()
        };
        sleep_until_or(wake_by, pause).await;
    }
}

async fn sleep_until_or(deadline: Instant, pause: Duration) {
    let wake = (Instant::now() + pause).min(deadline);
    tokio::time::sleep_until(wake).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn verdicts() {
        use Verdict::*;
        let v = |code, reason, write| verdict(code, reason, write);
        assert_eq!(v(Code::Unavailable, Some("NOT_LEADER"), true), Retry);
        assert_eq!(
            v(Code::FailedPrecondition, Some("NOT_LEADER"), false),
            Retry
        );
        assert_eq!(v(Code::Unavailable, Some("NO_LEADER"), false), Retry);
        assert_eq!(v(Code::DeadlineExceeded, Some("TIMEOUT"), true), Retry);
        assert_eq!(v(Code::Unavailable, None, false), Retry);
        assert_eq!(v(Code::Cancelled, None, true), Retry);
        assert_eq!(
            v(Code::InvalidArgument, Some("INVALID_ARGUMENT"), true),
            Refuse
        );
        assert_eq!(v(Code::NotFound, Some("NOT_FOUND"), false), Refuse);
        assert_eq!(v(Code::Unimplemented, None, true), Refuse);
        assert_eq!(v(Code::Internal, Some("STORAGE"), true), Retry);
        assert_eq!(v(Code::Internal, Some("STORAGE"), false), Refuse);
        assert_eq!(v(Code::Internal, None, false), Retry);
        assert_eq!(
            v(Code::FailedPrecondition, Some("NOT_INITIALIZED"), false),
            Refuse
        );
        assert_eq!(
            v(Code::FailedPrecondition, Some("STALE_REPLICA"), false),
            Refuse
        );
        assert_eq!(v(Code::DeadlineExceeded, None, false), Retry);
        assert_eq!(
            v(Code::DeadlineExceeded, Some("TRANSFER_TIMEOUT"), false),
            Refuse
        );
        assert_eq!(
            v(Code::DeadlineExceeded, Some("LEARNER_LAGGING"), false),
            Refuse
        );
        assert_eq!(
            v(Code::DeadlineExceeded, Some("INDEX_NOT_REACHED"), false),
            Refuse
        );
        assert!(node_specific(Some("STALE_REPLICA")));
        assert!(node_specific(Some("INDEX_NOT_REACHED")));
        assert!(!node_specific(Some("NOT_LEADER")));
        assert!(!node_specific(None));
    }

    #[test]
    fn status_metadata_is_read() {
        let mut status = Status::unavailable("not the leader\nsee hint");
        let md = status.metadata_mut();
        md.insert(
            REASON_METADATA_KEY,
            MetadataValue::from_static("NOT_LEADER"),
        );
        md.insert(
            LEADER_METADATA_KEY,
            MetadataValue::from_static("127.0.0.1:50052"),
        );
        let info = StatusInfo::from_status(&status);
        assert_eq!(info.reason.as_deref(), Some("NOT_LEADER"));
        assert_eq!(info.leader_hint.as_deref(), Some("127.0.0.1:50052"));
        assert_eq!(info.message, "not the leader see hint");
        assert!(!info.connect_failed);
        assert_eq!(
            info.describe(),
            "UNAVAILABLE NOT_LEADER: not the leader see hint"
        );

        let mut bad_hint = Status::unavailable("x");
        bad_hint
            .metadata_mut()
            .insert(LEADER_METADATA_KEY, MetadataValue::from_static("nonsense"));
        assert_eq!(StatusInfo::from_status(&bad_hint).leader_hint, None);
    }

    #[test]
    fn backoff_doubles_to_cap() {
        let mut b = Backoff {
            next_ms: 20,
            max_ms: 500,
        };
        let ms: Vec<u128> = (0..8).map(|_| b.next().as_millis()).collect();
        let bases = [20u128, 40, 80, 160, 320, 500, 500, 500];
        for (got, base) in ms.iter().zip(bases) {
            assert!(*got >= base - base / 4 && *got <= base + base / 4, "{ms:?}");
        }
        // During an election the pause stays at the election cap, and the
        // doubling goes on underneath (a later non-election pause is long).
        let mut b = Backoff {
            next_ms: 20,
            max_ms: 500,
        };
        let ms: Vec<u128> = (0..6)
            .map(|_| b.next_capped(ELECTION_BACKOFF_MAX_MS).as_millis())
            .collect();
        let bases = [20u128, 40, 80, 100, 100, 100];
        for (got, base) in ms.iter().zip(bases) {
            assert!(*got >= base - base / 4 && *got <= base + base / 4, "{ms:?}");
        }
        let last = b.next().as_millis();
        assert!((375..=625).contains(&last), "{last}");
        // A configured cap below the election cap wins.
        let mut b = Backoff {
            next_ms: 20,
            max_ms: 50,
        };
        let ms: Vec<u128> = (0..4)
            .map(|_| b.next_capped(ELECTION_BACKOFF_MAX_MS).as_millis())
            .collect();
        assert!(ms.iter().all(|m| *m <= 63), "{ms:?}");
    }

    #[test]
    fn failures_become_client_errors() {
        let f = |kind, uncertain| CallFailure {
            kind,
            uncertain,
            last_error: "e".into(),
            timeout_ms: 7,
        };
        let refused = |code: Code, reason: &str| FailureKind::Refused {
            code,
            reason: reason.into(),
            message: "m".into(),
        };
        assert_eq!(
            f(FailureKind::Exhausted, false).into_client_error(),
            ClientError::Unavailable {
                last_error: "e".into()
            }
        );
        assert_eq!(
            f(FailureKind::Exhausted, true).into_client_error(),
            ClientError::Timeout {
                timeout_ms: 7,
                last_error: "e".into()
            }
        );
        assert!(matches!(
            f(refused(Code::NotFound, "NOT_FOUND"), false).into_client_error(),
            ClientError::NotFound { .. }
        ));
        assert_eq!(
            f(refused(Code::InvalidArgument, ""), false).into_client_error(),
            ClientError::InvalidArgument {
                reason: "INVALID_ARGUMENT".into(),
                message: "m".into()
            }
        );
        assert!(matches!(
            f(refused(Code::PermissionDenied, ""), true).into_client_error(),
            ClientError::Status { code: Code::PermissionDenied, reason, .. } if reason == "PERMISSION_DENIED"
        ));
    }
}
