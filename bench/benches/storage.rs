//! The storage path alone: Raft entries appended to the node's RocksDB log
//! store (`tally_node::raft::log_store::LogStore`), one synced WriteBatch
//! per `append`, exactly as the node does, in a temp dir under /var/tmp (a
//! real disk: fsync is not free there, unlike on a tmpfs). Throughput is
//! entries/s and bytes/s (bincode-encoded entry size).
//!
//! * `append/<n>_commands`: one entry of `n` commands (spot trade commands,
//!   35-byte ids) per append call, n = 1, 256, 4096.
//! * `append/8x256_commands`: eight 256-command entries in one append call
//!   (openraft hands several entries to one append when they queue up).
//!
//! Only the appends are timed; the log is purged every 256 entries outside
//! the timed region so it stays small. Run:
//! `cargo bench -p tally-bench --bench storage`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use openraft::EntryPayload;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use tally_bench::dist::Distribution;
use tally_bench::fixture::EngineFixture;
use tally_node::raft::log_store::{LogStore, encode_entry};
use tally_node::raft::types::{Entry, EntryRequest, LogId, TypeConfig};
use tally_node::storage::open_db;

/// Entries appended between two (untimed) purges.
const PURGE_EVERY: u64 = 256;

fn log_id(index: u64) -> LogId {
    LogId::new(
        LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    )
}

fn request(commands: usize) -> EntryRequest {
    let mut fixture = EngineFixture::new(1_000, 2, Distribution::Uniform, 3);
    let mut envelopes = fixture.trades(commands.div_ceil(3));
    envelopes.truncate(commands);
    EntryRequest::from_envelopes(1_700_000_000_000, &envelopes)
}

fn storage(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::Builder::new()
        .prefix("tally-bench-storage-")
        .tempdir_in("/var/tmp")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir");
    let db = open_db(dir.path()).expect("open rocksdb");
    let mut store = LogStore::new(db).expect("log store");
    let mut next_index: u64 = 1;

    let mut group = c.benchmark_group("append");
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(20);
    for (entries_per_append, commands) in [(1usize, 1usize), (1, 256), (1, 4096), (8, 256)] {
        let template = request(commands);
        let mut record = Vec::new();
        encode_entry(
            &Entry {
                log_id: log_id(1),
                payload: EntryPayload::Normal(template.clone()),
            },
            &mut record,
        )
        .expect("encode");
        let entry_bytes = record.len() as u64;
        eprintln!(
            "storage: {entries_per_append} x {commands}-command entries per append, {entry_bytes} bytes per entry"
        );
        group.throughput(Throughput::ElementsAndBytes {
            elements: entries_per_append as u64,
            bytes: entry_bytes * entries_per_append as u64,
        });
        let name = if entries_per_append == 1 {
            format!("{commands}_commands")
        } else {
            format!("{entries_per_append}x{commands}_commands")
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let entries: Vec<Entry> = (0..entries_per_append)
                        .map(|k| Entry {
                            log_id: log_id(next_index + k as u64),
                            payload: EntryPayload::Normal(template.clone()),
                        })
                        .collect();
                    next_index += entries_per_append as u64;
                    let t0 = Instant::now();
                    // Timed until the syncer reports the entries persisted.
                    runtime
                        .block_on(async {
                            let (synced, persisted) = TypeConfig::oneshot();
                            store.append(entries, IOFlushed::signal(synced)).await?;
                            persisted.await.map_err(std::io::Error::other)?
                        })
                        .expect("append");
                    timed += t0.elapsed();
                    if next_index % PURGE_EVERY < entries_per_append as u64 {
                        runtime
                            .block_on(store.purge(log_id(next_index - 1)))
                            .expect("purge");
                    }
                }
                timed
            });
        });
    }
    group.finish();
}

criterion_group!(benches, storage);
criterion_main!(benches);
