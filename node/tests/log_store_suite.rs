//! openraft's storage conformance suite (`openraft::testing::log::Suite`)
//! run against Tally's RocksDB log store and state machine, each case on a
//! fresh database in its own temp dir. One test per suite case (so a failure
//! names the case), plus `whole_suite` running `Suite::test_all`, which also
//! covers any case a later openraft adds to the list.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use tally_ledger::LedgerConfig;
use tally_node::raft::log_store::LogStore;
use tally_node::raft::state_machine::StateMachineStore;
use tally_node::raft::types::TypeConfig;
use tally_node::storage::open_db;
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
            let sm = StateMachineStore::open(db, LedgerConfig::default())?;
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
