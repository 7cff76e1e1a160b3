//! One mark price in a market of N positions, of which 1% cross their
//! liquidation price: the time of the `SetMarkPrice` command with the
//! liquidation index (`after`) and with the scan of every holder it
//! replaced (`before`, `Ledger::set_liquidation_index(false)`), for N =
//! 100,000 and 1,000,000 (`LIQ_BENCH_SIZES` overrides, comma-separated).
//!
//! State: USDT, BTC-PERP (tick 0.1, step 0.001, 20x, maintenance 1%), a
//! market maker short N and holding the insurance fund's seed, N accounts
//! long 1 at 100 (notional 100, maintenance 1): 99% with 100 USDT (never
//! liquidated by a fall to 94), every 100th with 6 USDT (equity 6 − 6 = 0
//! at 94: liquidated, its position taken over by the fund). Built with
//! commands (idempotency window 1 s, so the dedup table stays small), then
//! marked once at 100 so the index is built before the clock starts. Each
//! iteration clones that ledger (not timed) and applies the mark price 94
//! (timed): the liquidations of the 1% are in both figures, up to the
//! per-command bound (`MAX_LIQUIDATIONS_PER_COMMAND`, 1,024): at 1,000,000
//! positions (10,000 to liquidate) one command liquidates 1,024 and
//! `after_index_drain` times the mark prices (94, repeated) until no
//! `LiquidationsDeferred` is left, i.e. the whole 1%.
//!
//! Run: `cargo bench -p tally-ledger --bench liquidation_index`.

use std::str::FromStr;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tally_ledger::*;

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

struct Builder {
    ledger: Ledger,
    now_ms: u64,
    next_id: u64,
}

impl Builder {
    fn ok(&mut self, command: Command) {
        self.now_ms += 1;
        self.next_id += 1;
        let envelope = Envelope {
            command_id: CommandId(format!("b-{}", self.next_id)),
            command,
        };
        let result = self.ledger.apply_quiet(&envelope, self.now_ms);
        assert!(
            matches!(result.outcome, Outcome::Applied { .. }),
            "{:?}: {:?}",
            envelope.command,
            result.outcome
        );
    }

    fn send(&mut self, command: Command) -> ApplyResult {
        self.now_ms += 1;
        self.next_id += 1;
        let envelope = Envelope {
            command_id: CommandId(format!("b-{}", self.next_id)),
            command,
        };
        self.ledger.apply(&envelope, self.now_ms)
    }
}

fn mark(price: &str) -> Command {
    Command::SetMarkPrice(SetMarkPrice {
        market: "BTC-PERP".into(),
        price: d(price),
    })
}

/// The ledger described in the module docs, index on or off, and the
/// clock and id counter to continue with.
fn build(n: u64, indexed: bool) -> Builder {
    let mut b = Builder {
        ledger: Ledger::new(LedgerConfig::default()),
        now_ms: 1_000,
        next_id: 0,
    };
    b.ledger.set_liquidation_index(indexed);
    b.ok(Command::SetDedupWindow(SetDedupWindow { window_ms: 1_000 }));
    b.ok(Command::CreateAsset(CreateAsset {
        symbol: "USDT".into(),
        scale: 6,
    }));
    b.ok(Command::CreateMarket(CreateMarket {
        market: "BTC-PERP".into(),
        base: "BTC".into(),
        settle_asset: "USDT".into(),
        tick_size: d("0.1"),
        step_size: d("0.001"),
        max_leverage: 20,
        brackets: vec![MarginBracket {
            notional_floor: d("0"),
            maintenance_margin_rate: d("0.01"),
            max_leverage: 20,
        }],
        liquidation_fee_rate: d("0"),
        funding_interval_ms: 8 * 3_600_000,
    }));
    let maker = 1;
    b.ok(Command::CreateAccount(CreateAccount { account: maker }));
    b.ok(Command::Deposit(Deposit {
        account: maker,
        asset: "USDT".into(),
        amount: d("1000000000000"),
    }));
    b.ok(Command::FundInsurance(FundInsurance {
        account: maker,
        asset: "USDT".into(),
        amount: d("100000000000"),
    }));
    b.ok(mark("100"));
    for i in 0..n {
        let account = 2 + i;
        let amount = if i % 100 == 99 { "6" } else { "100" };
        b.ok(Command::CreateAccount(CreateAccount { account }));
        b.ok(Command::Deposit(Deposit {
            account,
            asset: "USDT".into(),
            amount: d(amount),
        }));
        b.ok(Command::PerpFill(PerpFill {
            market: "BTC-PERP".into(),
            buyer: account,
            seller: maker,
            size: d("1"),
            price: d("100"),
            buyer_fee: d("0"),
            seller_fee: d("0"),
        }));
    }
    // A mark price that liquidates nobody: builds the index (not timed).
    b.ok(mark("100.1"));
    b
}

fn sizes() -> Vec<u64> {
    // A benchmark binary, not the engine: its sizes come from the caller.
    #[allow(clippy::disallowed_methods)]
    let text = std::env::var("LIQ_BENCH_SIZES").unwrap_or_else(|_| "100000,1000000".into());
    text.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn deferred(result: &ApplyResult) -> bool {
    match &result.outcome {
        Outcome::Applied { events } => events
            .iter()
            .any(|e| matches!(e, Event::LiquidationsDeferred { .. })),
        Outcome::Rejected(r) => panic!("mark refused: {r:?}"),
    }
}

fn liquidation_index(c: &mut Criterion) {
    for n in sizes() {
        let mut group = c.benchmark_group(format!("mark_price_{n}_positions_1pct_cross"));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(20));
        for (name, indexed) in [("before_scan", false), ("after_index", true)] {
            let base = build(n, indexed);
            // Check once: exactly the 1% are liquidated.
            let mut probe = Builder {
                ledger: base.ledger.clone(),
                now_ms: base.now_ms,
                next_id: base.next_id,
            };
            let Outcome::Applied { events } = probe.send(mark("94")).outcome else {
                panic!("mark refused")
            };
            let liquidated = events
                .iter()
                .filter(|e| matches!(e, Event::Liquidation { .. }))
                .count() as u64;
            let bound = u64::from(MAX_LIQUIDATIONS_PER_COMMAND);
            assert_eq!(liquidated, (n / 100).min(bound), "{name}");
            group.bench_function(name, |bench| {
                bench.iter_batched(
                    || Builder {
                        ledger: base.ledger.clone(),
                        now_ms: base.now_ms,
                        next_id: base.next_id,
                    },
                    |mut b| {
                        let result = b.send(mark("94"));
                        (b, result)
                    },
                    BatchSize::PerIteration,
                );
            });
            if indexed && n / 100 > u64::from(MAX_LIQUIDATIONS_PER_COMMAND) {
                group.bench_function("after_index_drain", |bench| {
                    bench.iter_batched(
                        || Builder {
                            ledger: base.ledger.clone(),
                            now_ms: base.now_ms,
                            next_id: base.next_id,
                        },
                        |mut b| {
                            let mut commands = 1;
                            while deferred(&b.send(mark("94"))) {
                                commands += 1;
                            }
                            (b, commands)
                        },
                        BatchSize::PerIteration,
                    );
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, liquidation_index);
criterion_main!(benches);
