//! The engine alone: fills per second applied in memory on one thread
//! against a pre-funded ledger (10,000 accounts, USDT + BTC), idempotency
//! bookkeeping and event construction included (see `tally_bench::fixture`
//! for the steady-state dedup table). Element throughput = fills.
//!
//! * `trade/<dist>`: one full Raft entry's worth of trades (1365 trades =
//!   4095 commands): lock quote, lock base, fill consuming both holds.
//! * `fill_only/<dist>`: 4096 fills against standing holds (resting orders
//!   filled partially): the fill path alone.
//! * `fill_only_quiet/<dist>`: the same with `Ledger::apply_quiet` (no
//!   events built), as a follower applies entries.
//! * `trade_entry_with_take_dirty/uniform`: the `trade` mix plus the record
//!   encoding the state machine does after each entry (`drain_dirty`).
//!
//! Measured in CPU time of the benchmark thread (`CLOCK_THREAD_CPUTIME_ID`),
//! not wall time: on a shared machine other processes steal the core and
//! inflate wall time, while the question asked is what one thread can do.
//! Set `TALLY_BENCH_WALL=1` to measure wall time instead.
//!
//! Run: `cargo bench -p tally-bench --bench engine`.

use std::cell::RefCell;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tally_bench::dist::Distribution;
use tally_bench::fixture::{ENTRY_COMMANDS, EngineFixture};
use tally_bench::rss::thread_cpu_ns;

/// CPU time of the calling thread, in nanoseconds (formatted like wall time),
/// or wall time when `TALLY_BENCH_WALL` is set.
struct ThreadCpuTime {
    wall: WallTime,
    use_wall: bool,
}

impl ThreadCpuTime {
    fn new() -> Self {
        ThreadCpuTime {
            wall: WallTime,
            use_wall: std::env::var_os("TALLY_BENCH_WALL").is_some(),
        }
    }

    fn now_ns(&self) -> u64 {
        if self.use_wall {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            t.map_or(0, |d| d.as_nanos() as u64)
        } else {
            thread_cpu_ns()
        }
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        self.now_ns()
    }

    fn end(&self, start: u64) -> u64 {
        self.now_ns().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

const ACCOUNTS: u64 = 10_000;
const ASSETS: usize = 2;

fn engine(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("engine");
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(30);
    let trades = ENTRY_COMMANDS / 3;
    for distribution in [Distribution::Uniform, Distribution::Zipf(1.0)] {
        let fixture = RefCell::new(EngineFixture::new(ACCOUNTS, ASSETS, distribution, 1));
        group.throughput(Throughput::Elements(trades as u64));
        group.bench_function(format!("trade/{distribution}"), |b| {
            b.iter_batched(
                || fixture.borrow_mut().trades(trades),
                |entry| {
                    let (_, fills) = fixture.borrow_mut().apply(&entry);
                    assert_eq!(fills, trades);
                    entry
                },
                BatchSize::PerIteration,
            );
        });
        group.throughput(Throughput::Elements(ENTRY_COMMANDS as u64));
        group.bench_function(format!("fill_only/{distribution}"), |b| {
            b.iter_batched(
                || fixture.borrow_mut().fills_only(ENTRY_COMMANDS),
                |entry| {
                    let (_, fills) = fixture.borrow_mut().apply(&entry);
                    assert_eq!(fills, ENTRY_COMMANDS);
                    entry
                },
                BatchSize::PerIteration,
            );
        });
        group.bench_function(format!("fill_only_quiet/{distribution}"), |b| {
            b.iter_batched(
                || fixture.borrow_mut().fills_only(ENTRY_COMMANDS),
                |entry| {
                    let mut f = fixture.borrow_mut();
                    let leader = std::mem::replace(&mut f.quiet, true);
                    let (_, fills) = f.apply(&entry);
                    f.quiet = leader;
                    assert_eq!(fills, ENTRY_COMMANDS);
                    entry
                },
                BatchSize::PerIteration,
            );
        });
        // Keep the dirty set from spanning benchmarks.
        fixture.borrow_mut().take_dirty();
    }
    let fixture = RefCell::new(EngineFixture::new(
        ACCOUNTS,
        ASSETS,
        Distribution::Uniform,
        2,
    ));
    group.throughput(Throughput::Elements(trades as u64));
    group.bench_function("trade_entry_with_take_dirty/uniform", |b| {
        b.iter_batched(
            || fixture.borrow_mut().trades(trades),
            |entry| {
                let mut f = fixture.borrow_mut();
                let (_, fills) = f.apply(&entry);
                assert_eq!(fills, trades);
                f.take_dirty();
                entry
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime::new());
    targets = engine
}
criterion_main!(benches);
