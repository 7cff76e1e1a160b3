//! A tower layer in front of every gRPC service: refuses a call whose
//! caller lacks the method's right (`PERMISSION_DENIED`, reason
//! `PERMISSION_DENIED`, before the service sees the request: nothing
//! changes), puts the [`Caller`] into the request's extensions for the
//! per-command check of ledger submissions, and writes admin calls and
//! refusals to the audit log.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tally_tls::Peer;
use tally_tls::server::ConnInfo;

use crate::audit::{AuditEntry, AuditLog, now_ms};
use crate::auth::{Caller, Gate, Right, gate};
use crate::grpc::metrics_layer::code_name;
use crate::grpc::status::status;
use crate::metrics::METRICS;

/// The reason of every authorization refusal.
pub const PERMISSION_DENIED_REASON: &str = "PERMISSION_DENIED";

#[derive(Clone, Debug)]
pub struct AuthLayer {
    pub audit: Arc<AuditLog>,
    pub node_id: u64,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            audit: self.audit.clone(),
            node_id: self.node_id,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    audit: Arc<AuditLog>,
    node_id: u64,
}

/// `Service/Method` of a path, for the audit log (bounded, printable).
fn what(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_start_matches("tally.v1.")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(96)
        .collect()
}

fn caller_of<B>(request: &http::Request<B>) -> Caller {
    match request.extensions().get::<ConnInfo>() {
        Some(info) => Caller {
            peer: info.peer.clone(),
            remote: info
                .remote_addr
                .map_or_else(|| "unknown".into(), |a| a.to_string()),
        },
        // Every connection comes through the node's own listener, which
        // always attaches one; treat anything else as unauthenticated.
        None => Caller {
            peer: Arc::new(Peer::NoCertificate),
            remote: "unknown".into(),
        },
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: Default + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let caller = caller_of(&request);
        let gate = gate(request.uri().path());
        let verdict = match gate {
            Gate::Open => Ok(()),
            Gate::Needs(right) => caller.check(right),
            // Some write right; the service checks each command's.
            Gate::Commands => [Right::LedgerWrite, Right::RiskWrite, Right::Configure]
                .into_iter()
                .map(|right| caller.check(right))
                .find(Result::is_ok)
                .unwrap_or_else(|| caller.check(Right::LedgerWrite)),
        };
        let audited = matches!(gate, Gate::Needs(Right::Admin));
        if let Err(message) = verdict {
            METRICS.auth_denied.fetch_add(1, Ordering::Relaxed);
            self.audit.write(&AuditEntry {
                ts_ms: now_ms(),
                node_id: self.node_id,
                who: &caller.describe(),
                remote: &caller.remote,
                what: &what(request.uri().path()),
                result: "PERMISSION_DENIED",
                reason: PERMISSION_DENIED_REASON,
                message: &message,
            });
            let refusal = status(
                tonic::Code::PermissionDenied,
                PERMISSION_DENIED_REASON,
                message,
            );
            return Box::pin(async move { Ok(refusal.into_http::<RB>()) });
        }
        let audit = audited.then(|| (self.audit.clone(), what(request.uri().path())));
        let who = caller.describe();
        let remote = caller.remote.clone();
        request.extensions_mut().insert(caller);
        let node_id = self.node_id;
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if let Some((log, what)) = audit {
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let code = header("grpc-status");
                let result = if code.is_empty() {
                    "OK"
                } else {
                    code_name(&code)
                };
                log.write(&AuditEntry {
                    ts_ms: now_ms(),
                    node_id,
                    who: &who,
                    remote: &remote,
                    what: &what,
                    result,
                    reason: &header(tally_proto::REASON_METADATA_KEY),
                    message: &header("grpc-message"),
                });
            }
            Ok(response)
        })
    }
}
