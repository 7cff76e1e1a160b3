//! A tower layer around every gRPC service: counts requests by method and
//! status code and times them (`tally_grpc_requests_total`,
//! `tally_grpc_request_duration_seconds`). The code is read from the
//! response headers (`grpc-status`, present on errors, which tonic sends
//! trailers-only); a response without it succeeded. Methods outside the
//! Tally and health services are counted as `other`, so a caller cannot
//! create series at will.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::metrics::METRICS;

/// Longest method label kept (longer paths are `other`).
const MAX_METHOD_CHARS: usize = 64;

#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// `Service/Method` of a request path, or `other`.
fn method_label(path: &str) -> &str {
    let known = ["/tally.v1.", "/grpc.health.v1."];
    match known.iter().find_map(|prefix| path.strip_prefix(prefix)) {
        Some(rest)
            if rest.len() <= MAX_METHOD_CHARS
                && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'/') =>
        {
            rest
        }
        _ => "other",
    }
}

/// The name of a numeric `grpc-status` value.
pub(crate) fn code_name(value: &str) -> &'static str {
    let code = value
        .parse::<i32>()
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Unknown);
    tally_proto_code_name(code)
}

fn tally_proto_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // A Uri clone shares its bytes: no allocation per request.
        let uri = request.uri().clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(code_name)
                .unwrap_or("OK");
            METRICS.grpc(method_label(uri.path()), code, started.elapsed());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_services_are_one_series() {
        assert_eq!(method_label("/tally.v1.Ledger/Submit"), "Ledger/Submit");
        assert_eq!(method_label("/evil/../x"), "other");
        assert_eq!(
            method_label(&format!("/tally.v1.{}", "A".repeat(100))),
            "other"
        );
        assert_eq!(code_name("14"), "UNAVAILABLE");
        assert_eq!(code_name("x"), "UNKNOWN");
    }
}
