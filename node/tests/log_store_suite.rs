//! openraft's storage conformance suite (`openraft::testing::log::Suite`)
//! run against Tally's RocksDB log store and state machine, each case on a
//! fresh database in its own temp dir. One test per suite case (so a failure
//! names the case), plus `whole_suite` running `Suite::test_all`, which also
//! covers any case a later openraft adds to the list. At the end, two checks
//! of the log reader's documented contract that no suite case exercises.

use futures::StreamExt;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::testing::blank_ent;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::{RaftLogReader, StorageError};
use tally_ledger::LedgerConfig;
use tally_node::raft::log_store::{LogStore, MAX_READ_ENTRIES};
use tally_node::raft::state_machine::StateMachineStore;
use tally_node::raft::types::{Entry, TypeConfig};
use tally_node::storage::{CF_LOG, cf, open_db};
use tempfile::TempDir;

/// Opens a fresh RocksDB (as a node does, under `<dir>/db`) and the log
/// store and state machine on it; the guard is the temp dir.
struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let opened = || -> std::io::Result<_> {
            let dir = tempfile::tempdir()?;
            let db = open_db(dir.path())?;
            let log = LogStore::new(db.clone())?;
            let sm = StateMachineStore::open(db, LedgerConfig::default(), Default::default())?;
            Ok((dir, log, sm))
        };
        opened().map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))
    }
}

type TallySuite = Suite<TypeConfig, LogStore, StateMachineStore, RocksBuilder, TempDir>;

/// Runs one `(LogStore, StateMachineStore)` case of the suite on a fresh store.
macro_rules! suite_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (_dir, log, sm) = RocksBuilder.build().await.expect("open store");
            TallySuite::$case(log, sm).await.expect(stringify!($case));
        }
    )*};
}

// In the order of `Suite::test_store` (openraft 0.10.0-alpha.37).
suite_cases!(
    last_membership_in_log_initial,
    last_membership_in_log,
    last_membership_in_log_multi_step,
    get_membership_initial,
    get_membership_from_log_and_empty_sm,
    get_membership_from_empty_log_and_sm,
    get_membership_from_log_le_sm_last_applied,
    get_membership_from_log_gt_sm_last_applied_1,
    get_membership_from_log_gt_sm_last_applied_2,
    get_initial_state_without_init,
    get_initial_state_membership_from_empty_log_and_sm,
    get_initial_state_membership_from_sm_inlog_is_smaller,
    get_initial_state_membership_from_log_insm_is_smaller,
    get_initial_state_with_state,
    get_initial_state_last_log_gt_sm,
    get_initial_state_last_log_lt_sm,
    get_initial_state_inverted_log_order,
    get_initial_state_conflict_at_same_index,
    get_initial_state_log_ids,
    get_initial_state_re_apply_committed,
    save_vote,
    get_log_entries,
    limited_get_log_entries,
    leader_bounded_stream,
    entries_stream,
    try_get_log_entry,
    log_reader_reads_new_entries,
    initial_logs,
    get_log_state,
    get_log_id,
    last_id_in_log,
    last_applied_state,
    purge_logs_upto_0,
    purge_logs_upto_5,
    purge_logs_upto_20,
    delete_logs_after_11,
    delete_logs_after_5,
    delete_logs_after_0,
    delete_logs_after_none,
    append_to_log,
    snapshot_meta,
    snapshot_meta_optional,
    apply_single,
    apply_multiple,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_snapshot() {
    TallySuite::transfer_snapshot(&RocksBuilder)
        .await
        .expect("transfer_snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite() {
    TallySuite::test_all(RocksBuilder).await.expect("suite");
}

// ---- The log reader's contract beyond the suite's cases ----
//
// `RaftLogReader::try_get_log_entries` must return every entry of the range
// that the log holds (only `limited_get_log_entries` may stop early), and a
// hole inside the range must be an error. openraft's state-machine worker
// applies a committed range read through it (`entries_stream`) and takes
// the range as applied.

fn blank_entries(indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes.map(|i| blank_ent::<TypeConfig>(1, 1, i)).collect()
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_longer_than_the_replication_read_limit_is_read_whole_and_applied_whole() {
    let (_dir, mut log, _sm) = RocksBuilder.build().await.expect("open store");
    let n = MAX_READ_ENTRIES as u64 + 10;
    log.append(blank_entries(1..=n), IOFlushed::noop())
        .await
        .expect("append");
    let mut reader = log.get_log_reader().await;
    // (Compared as counts and ends: a failure should not print 100,000 indexes.)
    let span = |entries: &[Entry]| {
        let got = indexes(entries);
        let contiguous = got.windows(2).all(|w| w[1] == w[0] + 1);
        (
            got.len() as u64,
            got.first().copied(),
            got.last().copied(),
            contiguous,
        )
    };
    let all = reader.try_get_log_entries(1..=n).await.expect("read");
    assert_eq!(span(&all), (n, Some(1), Some(n), true));
    let streamed = reader.entries_stream(1..n + 1).await.count().await;
    assert_eq!(streamed as u64, n, "entries the state machine would apply");
    // Replication reads stay bounded, from the start of the range.
    let limited = reader
        .limited_get_log_entries(1, n + 1)
        .await
        .expect("limited read");
    let max = MAX_READ_ENTRIES as u64;
    assert_eq!(span(&limited), (max, Some(1), Some(max), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_inside_the_range_is_an_error_and_purged_entries_are_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_db(dir.path()).expect("open db");
    let mut log = LogStore::new(db.clone()).expect("log store");
    log.append(blank_entries(1..=10), IOFlushed::noop())
        .await
        .expect("append");
    log.purge(blank_ent::<TypeConfig>(1, 1, 2).log_id)
        .await
        .expect("purge");
    let mut reader = log.get_log_reader().await;
    // Purged entries at the start of the range are simply absent.
    let got = reader.try_get_log_entries(0..=10).await.expect("read");
    assert_eq!(indexes(&got), (3..=10).collect::<Vec<_>>());
    // Entry 6 lost from the middle (log keys are big-endian indexes).
    db.delete_cf(cf(&db, CF_LOG).expect("log cf"), 6u64.to_be_bytes())
        .expect("delete");
    let err = match reader.try_get_log_entries(3..=10).await {
        Ok(got) => panic!("a hole must not be skipped: got {:?}", indexes(&got)),
        Err(e) => e,
    };
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert_eq!(
        indexes(
            &reader
                .try_get_log_entries(3..6)
                .await
                .expect("before the hole")
        ),
        vec![3, 4, 5]
    );
}
