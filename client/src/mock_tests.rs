//! Tests of routing and retry behaviour against in-process mock `Ledger`
//! servers speaking real gRPC over loopback TCP: leader hints, rotation,
//! same-id retries, and how each error maps to an outcome.

use std::sync::{Arc, Mutex};

use tally_proto::v1::ledger_server::{Ledger, LedgerServer};
use tally_proto::v1::{
    CommandResult, GetAccountRequest, GetAccountResponse, GetBalanceRequest, GetBalanceResponse,
    GetHoldRequest, GetHoldResponse, GetSettingsRequest, GetSettingsResponse, GetStateHashRequest,
    GetStateHashResponse, SubmitBatchRequest, SubmitBatchResponse, SubmitRequest, SubmitResponse,
};
use tally_proto::{LEADER_METADATA_KEY, REASON_METADATA_KEY};
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use crate::commands::{self, CommandExt};
use crate::{Client, ClientConfig, ClientError, ReadOptions, WriteResult};

/// Decides the answer to the n-th call (0-based) a mock node receives.
type Script = Arc<dyn Fn(usize) -> Result<(), Status> + Send + Sync>;

#[derive(Clone)]
struct MockLedger {
    /// Command ids of every Submit received, in order.
    seen: Arc<Mutex<Vec<String>>>,
    /// Whether each Submit asked not to be forwarded (`tally-forwarded`).
    no_forward: Arc<Mutex<Vec<bool>>>,
    reads: Arc<Mutex<usize>>,
    on_submit: Script,
    on_read: Script,
    /// Applied commands are reported as rejected with this reason.
    engine_reject: Option<&'static str>,
    /// Submits wait this long before answering (a paused node).
    stall: Option<std::time::Duration>,
}

fn status(code: Code, reason: &'static str, leader: Option<&str>) -> Status {
    let mut status = Status::new(code, format!("mock says {reason}"));
    status
        .metadata_mut()
        .insert(REASON_METADATA_KEY, MetadataValue::from_static(reason));
    if let Some(value) = leader.and_then(|l| MetadataValue::try_from(l).ok()) {
        status.metadata_mut().insert(LEADER_METADATA_KEY, value);
    }
    status
}

fn always_ok() -> Script {
    Arc::new(|_| Ok(()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MockLedger {
    fn new(on_submit: Script, on_read: Script) -> MockLedger {
        MockLedger {
            seen: Arc::default(),
            no_forward: Arc::default(),
            reads: Arc::default(),
            on_submit,
            on_read,
            engine_reject: None,
            stall: None,
        }
    }

    fn seen(&self) -> Vec<String> {
        lock(&self.seen).clone()
    }

    fn read_call(&self) -> Result<(), Status> {
        let n = {
            let mut reads = lock(&self.reads);
            *reads += 1;
            *reads - 1
        };
        (self.on_read)(n)
    }
}

#[tonic::async_trait]
impl Ledger for MockLedger {
    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        lock(&self.no_forward).push(request.metadata().get("tally-forwarded").is_some());
        let id = request
            .into_inner()
            .command
            .map(|c| c.command_id)
            .unwrap_or_default();
        let n = {
            let mut seen = lock(&self.seen);
            seen.push(id.clone());
            seen.len() - 1
        };
        if let Some(stall) = self.stall {
            tokio::time::sleep(stall).await;
        }
        (self.on_submit)(n)?;
        let result = CommandResult {
            command_id: id,
            applied: self.engine_reject.is_none(),
            reason: self.engine_reject.unwrap_or_default().to_string(),
            message: String::new(),
            duplicate: n > 0,
            events: Vec::new(),
        };
        Ok(Response::new(SubmitResponse {
            result: Some(result),
            applied_index: 10 + n as u64,
        }))
    }

    async fn submit_batch(
        &self,
        request: Request<SubmitBatchRequest>,
    ) -> Result<Response<SubmitBatchResponse>, Status> {
        let commands = request.into_inner().commands;
        (self.on_submit)(0)?;
        let results = commands
            .into_iter()
            .map(|c| CommandResult {
                command_id: c.command_id,
                applied: true,
                ..CommandResult::default()
            })
            .collect();
        Ok(Response::new(SubmitBatchResponse {
            results,
            applied_index: 7,
        }))
    }

    async fn get_balance(
        &self,
        _request: Request<GetBalanceRequest>,
    ) -> Result<Response<GetBalanceResponse>, Status> {
        self.read_call()?;
        Ok(Response::new(GetBalanceResponse::default()))
    }

    async fn get_account(
        &self,
        _request: Request<GetAccountRequest>,
    ) -> Result<Response<GetAccountResponse>, Status> {
        self.read_call()?;
        Ok(Response::new(GetAccountResponse::default()))
    }

    async fn get_hold(
        &self,
        request: Request<GetHoldRequest>,
    ) -> Result<Response<GetHoldResponse>, Status> {
        self.read_call()?;
        Ok(Response::new(GetHoldResponse {
            hold: request.into_inner().hold,
            ..GetHoldResponse::default()
        }))
    }

    async fn get_state_hash(
        &self,
        _request: Request<GetStateHashRequest>,
    ) -> Result<Response<GetStateHashResponse>, Status> {
        self.read_call()?;
        Ok(Response::new(GetStateHashResponse {
            state_hash: "abc".into(),
            ..GetStateHashResponse::default()
        }))
    }

    async fn get_settings(
        &self,
        _request: Request<GetSettingsRequest>,
    ) -> Result<Response<GetSettingsResponse>, Status> {
        self.read_call()?;
        Ok(Response::new(GetSettingsResponse::default()))
    }
}

/// Serves `ledger` on a fresh loopback port; returns its `host:port`.
async fn serve(ledger: MockLedger) -> String {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => panic!("bind: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr.to_string(),
        Err(e) => panic!("local_addr: {e}"),
    };
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(LedgerServer::new(ledger))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await;
    });
    addr
}

fn client(endpoints: &[&str], timeout_ms: u64) -> Client {
    let config = ClientConfig {
        timeout_ms,
        ..ClientConfig::new(endpoints.iter().copied())
    };
    match Client::new(config) {
        Ok(client) => client,
        Err(e) => panic!("config: {e}"),
    }
}

#[tokio::test]
async fn follows_not_leader_hint_to_unlisted_node() {
    let leader = MockLedger::new(always_ok(), always_ok());
    let leader_addr = serve(leader.clone()).await;
    let hint = leader_addr.clone();
    let follower = MockLedger::new(
        Arc::new(move |_| Err(status(Code::Unavailable, "NOT_LEADER", Some(&hint)))),
        always_ok(),
    );
    let follower_addr = serve(follower.clone()).await;

    let client = client(&[&follower_addr], 2_000);
    let cmd = commands::deposit(1, "BTC", "1");
    let id = cmd.id().to_string();
    let result = client.submit(cmd).await;
    assert!(result.is_applied(), "{result:?}");
    assert_eq!(follower.seen(), std::slice::from_ref(&id));
    assert_eq!(leader.seen(), [id]);
    assert_eq!(client.leader(), Some(leader_addr));

    // The next write goes straight to the remembered leader.
    assert!(client.submit(commands::release(1)).await.is_applied());
    assert_eq!(follower.seen().len(), 1);
    assert_eq!(leader.seen().len(), 2);
    // Every write asked followers for a hint rather than a forward.
    assert_eq!(*lock(&follower.no_forward), [true]);
    assert_eq!(*lock(&leader.no_forward), [true, true]);
}

#[tokio::test]
async fn unreachable_leader_hint_lets_the_follower_forward_writes() {
    // A follower whose leader is at an address this client cannot reach
    // (say, behind a load balancer): asked for a hint it names that address;
    // allowed to forward, it applies the write (the mock plays the leader).
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0");
        let port = listener.and_then(|l| l.local_addr()).map(|a| a.port());
        format!("127.0.0.1:{}", port.unwrap_or(1))
    };
    let follower = MockLedger::new(always_ok(), always_ok());
    let hinting = follower.clone();
    let script: Script = Arc::new(move |n| {
        if lock(&hinting.no_forward).get(n).copied().unwrap_or(false) {
            Err(status(Code::Unavailable, "NOT_LEADER", Some(&unreachable)))
        } else {
            Ok(())
        }
    });
    let follower = MockLedger {
        on_submit: script,
        ..follower
    };
    let addr = serve(follower.clone()).await;
    let client = client(&[&addr], 3_000);
    let result = client.submit(commands::deposit(1, "BTC", "1")).await;
    assert!(result.is_applied(), "{result:?}");
    let asked = lock(&follower.no_forward).clone();
    assert_eq!(
        asked.first(),
        Some(&true),
        "first asks for a hint: {asked:?}"
    );
    assert_eq!(
        asked.last(),
        Some(&false),
        "then lets it forward: {asked:?}"
    );
    // Later writes go straight to forwarding.
    assert!(client.submit(commands::release(1)).await.is_applied());
    assert_eq!(lock(&follower.no_forward).last(), Some(&false));
}

#[tokio::test]
async fn stale_replica_moves_a_bounded_read_to_another_node_and_is_final_when_every_node_is_stale()
{
    let stale_script: Script =
        Arc::new(|_| Err(status(Code::FailedPrecondition, "STALE_REPLICA", None)));
    let stale = MockLedger::new(always_ok(), stale_script.clone());
    let fresh = MockLedger::new(always_ok(), always_ok());
    let stale_addr = serve(stale.clone()).await;
    let fresh_addr = serve(fresh.clone()).await;
    let both = client(&[&stale_addr, &fresh_addr], 2_000);
    for hold in 1..=4 {
        let read = both.hold(hold, ReadOptions::bounded(0, 100)).await;
        assert_eq!(read.map(|h| h.hold), Ok(hold));
    }
    assert_eq!(*lock(&fresh.reads), 4);
    assert!(
        *lock(&stale.reads) >= 1,
        "round-robin never tried the stale node"
    );

    // Every node stale: the refusal itself, at once (not a timeout).
    let other_stale = serve(MockLedger::new(always_ok(), stale_script)).await;
    let all_stale = client(&[&stale_addr, &other_stale], 5_000);
    let started = std::time::Instant::now();
    let read = all_stale.hold(1, ReadOptions::bounded(0, 100)).await;
    assert!(
        matches!(&read, Err(ClientError::Status { code: Code::FailedPrecondition, reason, .. }) if reason == "STALE_REPLICA"),
        "{read:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(1_000));

    // Asked of that node only: its refusal is final as well.
    let at = both
        .state_hash_at(&stale_addr, ReadOptions::bounded(0, 100))
        .await;
    assert!(
        matches!(&at, Err(ClientError::Status { reason, .. }) if reason == "STALE_REPLICA"),
        "{at:?}"
    );
}

#[tokio::test]
async fn session_index_follows_writes_and_reads() {
    let node = MockLedger::new(always_ok(), always_ok());
    let addr = serve(node).await;
    let client = client(&[&addr], 2_000);
    assert_eq!(client.session_index(), 0);
    // The mock applies the n-th submit at index 10 + n.
    client.submit(commands::create_account(1)).await;
    client.submit(commands::create_account(2)).await;
    assert_eq!(client.session_index(), 11);
    assert_eq!(client.resolve_read(ReadOptions::session()).min_index, 11);
    // A read served at a lower index (0 here) never lowers it.
    assert!(client.hold(1, ReadOptions::session()).await.is_ok());
    assert_eq!(client.session_index(), 11);
}

#[tokio::test]
async fn retries_reuse_the_command_id() {
    let node = MockLedger::new(
        Arc::new(|n| match n {
            0 => Err(status(Code::DeadlineExceeded, "TIMEOUT", None)),
            _ => Ok(()),
        }),
        always_ok(),
    );
    let addr = serve(node.clone()).await;
    let client = client(&[&addr], 2_000);
    let result = client
        .submit(commands::lock(5, 1, "USDT", "10").with_id("order-5"))
        .await;
    match result {
        WriteResult::Applied {
            result,
            applied_index,
        } => {
            assert!(result.duplicate);
            assert_eq!(applied_index, 11);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(node.seen(), ["order-5", "order-5"]);
}

#[tokio::test]
async fn no_leader_rotates_to_the_next_node() {
    let down = MockLedger::new(
        Arc::new(|_| Err(status(Code::Unavailable, "NO_LEADER", None))),
        always_ok(),
    );
    let up = MockLedger::new(always_ok(), always_ok());
    let down_addr = serve(down.clone()).await;
    let up_addr = serve(up.clone()).await;
    let client = client(&[&down_addr, &up_addr], 2_000);
    assert!(
        client
            .submit(commands::create_account(3))
            .await
            .is_applied()
    );
    assert_eq!(client.leader(), Some(up_addr));
    assert_eq!(down.seen().len(), 1);
}

#[tokio::test]
async fn a_write_stuck_on_an_unanswering_leader_is_hedged_to_another_node() {
    let mut paused = MockLedger::new(always_ok(), always_ok());
    paused.stall = Some(std::time::Duration::from_secs(30));
    let up = MockLedger::new(always_ok(), always_ok());
    let paused_addr = serve(paused.clone()).await;
    let up_addr = serve(up.clone()).await;
    // The first write goes to the first endpoint (round robin from 0).
    let client = client(&[&paused_addr, &up_addr], 5_000);
    let started = std::time::Instant::now();
    let result = client
        .submit(commands::create_account(4).with_id("hedged-1"))
        .await;
    let took = started.elapsed();
    assert!(result.is_applied(), "{result:?}");
    // Well before the 2 s attempt timeout: the hedge at ~300 ms answered.
    assert!(took < std::time::Duration::from_millis(1_500), "{took:?}");
    assert_eq!(client.leader(), Some(up_addr));
    assert_eq!(paused.seen(), ["hedged-1"]);
    assert_eq!(up.seen(), ["hedged-1"]);
}

#[tokio::test]
async fn invalid_argument_is_a_definite_rejection() {
    let node = MockLedger::new(
        Arc::new(|_| Err(status(Code::InvalidArgument, "BAD_DECIMAL", None))),
        always_ok(),
    );
    let addr = serve(node.clone()).await;
    let client = client(&[&addr], 2_000);
    let result = client.submit(commands::deposit(1, "BTC", "1.2.3")).await;
    match &result {
        WriteResult::Rejected {
            reason, message, ..
        } => {
            assert_eq!(reason, "BAD_DECIMAL");
            assert!(message.contains("mock says"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(node.seen().len(), 1, "no retry after a definite answer");
}

#[tokio::test]
async fn engine_rejection_is_rejected_with_its_reason() {
    let mut node = MockLedger::new(always_ok(), always_ok());
    node.engine_reject = Some("INSUFFICIENT_FUNDS");
    let addr = serve(node).await;
    let client = client(&[&addr], 2_000);
    let result = client.submit(commands::withdraw(1, "BTC", "5")).await;
    assert!(
        matches!(&result, WriteResult::Rejected { reason, .. } if reason == "INSUFFICIENT_FUNDS"),
        "{result:?}"
    );
}

#[tokio::test]
async fn answers_without_success_until_deadline_are_unknown() {
    let node = MockLedger::new(
        Arc::new(|_| Err(status(Code::Unavailable, "NO_LEADER", None))),
        always_ok(),
    );
    let addr = serve(node.clone()).await;
    let client = client(&[&addr], 300);
    let result = client
        .submit(commands::release(9).with_id("cancel-9"))
        .await;
    match &result {
        WriteResult::Unknown {
            command_id,
            last_error,
        } => {
            assert_eq!(command_id, "cancel-9");
            assert!(last_error.contains("NO_LEADER"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
    let seen = node.seen();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.iter().all(|id| id == "cancel-9"));
}

#[tokio::test]
async fn batches_map_results_in_order() {
    let node = MockLedger::new(always_ok(), always_ok());
    let addr = serve(node).await;
    let client = client(&[&addr], 2_000);
    let batch = vec![commands::create_account(1), commands::create_account(2)];
    let ids: Vec<String> = batch.iter().map(|c| c.id().to_string()).collect();
    let results = client.submit_batch(batch).await.unwrap_or_default();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.applied_index() == Some(7)));
    let got: Vec<&str> = results.iter().map(WriteResult::command_id).collect();
    assert_eq!(got, ids);
}

#[tokio::test]
async fn reads_follow_hints_and_report_not_found() {
    let leader = MockLedger::new(
        always_ok(),
        Arc::new(|n| match n {
            0 => Ok(()),
            _ => Err(status(Code::NotFound, "NOT_FOUND", None)),
        }),
    );
    let leader_addr = serve(leader).await;
    let hint = leader_addr.clone();
    let follower = MockLedger::new(
        always_ok(),
        Arc::new(move |_| Err(status(Code::Unavailable, "NOT_LEADER", Some(&hint)))),
    );
    let follower_addr = serve(follower).await;
    let client = client(&[&follower_addr], 2_000);
    let hold = client.hold(42, ReadOptions::default()).await;
    assert_eq!(hold.map(|h| h.hold), Ok(42));
    let missing = client.hold(43, ReadOptions::default()).await;
    assert!(
        matches!(missing, Err(ClientError::NotFound { .. })),
        "{missing:?}"
    );
    // A read never makes a node "the leader".
    assert_eq!(client.leader(), None);

    // Asking one specific node: its NOT_LEADER is final, not followed.
    let at = client
        .state_hash_at(&follower_addr, ReadOptions::default())
        .await;
    assert!(
        matches!(&at, Err(ClientError::Status { reason, .. }) if reason == "NOT_LEADER"),
        "{at:?}"
    );
}

/// A TCP server that answers every connection like a plain HTTP/1.1 server
/// that greets first: writes a 400 at once, then closes.
async fn http1_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = stream.shutdown().await;
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_write_to_a_non_grpc_http1_endpoint_is_not_sent() {
    let addr = http1_server().await;
    let client = Client::new(ClientConfig {
        timeout_ms: 600,
        connect_timeout_ms: 200,
        ..ClientConfig::new([addr.clone()])
    })
    .expect("client");
    let result = client.submit(commands::deposit(1, "BTC", "1")).await;
    match &result {
        WriteResult::Rejected {
            reason, message, ..
        } => {
            assert_eq!(reason, crate::reasons::NOT_SENT, "{message}");
            assert!(
                message.contains("\"HTTP/1.1 400 Bad Request\"") && message.contains("HTTP/2"),
                "{message}"
            );
        }
        other => panic!("expected not sent, got {other:?}"),
    }
    let read = client.hold(1, ReadOptions::linearizable()).await;
    assert!(
        matches!(&read, Err(ClientError::Unavailable { .. })),
        "{read:?}"
    );
}
