//! The engine alone, in memory, on one thread: a pre-funded ledger and the
//! command mixes the criterion benches (`benches/engine.rs`) and the
//! `engine` workload apply to it. Also the Raft entries `benches/storage.rs`
//! appends.
//!
//! Idempotency table: the node runs with a 24 h window, which at the target
//! rates would remember billions of ids; a benchmark must measure a steady
//! state instead, so the fixture advances its clock 1 ms per
//! [`COMMANDS_PER_MS`] commands with a [`BENCH_DEDUP_WINDOW_MS`] window: about
//! `COMMANDS_PER_MS * BENCH_DEDUP_WINDOW_MS` (100,000) live entries, evicted
//! as fast as they are added, as in production once the window is full.
//!
//! Commands are applied with `Ledger::apply` (a leader building every event
//! for its replies), or with `Ledger::apply_quiet` (a follower, which builds
//! none) when the environment variable `TALLY_BENCH_QUIET` is set or
//! [`EngineFixture::quiet`] is true. With `TALLY_BENCH_FROM_LOG` set,
//! [`run_engine`] applies each entry as a replica applies the Raft log: the
//! commands are encoded beforehand (untimed, as the gRPC edge did), then
//! decoded from those bytes and applied with `Ledger::apply_decoded`
//! (timed: decode plus apply, no re-encoding for the fingerprint).

use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tally_ledger::{
    ApplyResult, Command, CommandId, CreateAccount, CreateAsset, Decimal, Deposit, Envelope, Fill,
    Ledger, LedgerConfig, Lock, Outcome,
};

use crate::dist::{Distribution, Picker};
use crate::workload::{ASSETS, FUND_BASE, FUND_QUOTE, TradeAmount, trade_amounts};

/// Dedup window of the benchmark ledger (see the module docs).
pub const BENCH_DEDUP_WINDOW_MS: u64 = 1_000;
/// Commands applied per millisecond of ledger time.
pub const COMMANDS_PER_MS: u64 = 100;
/// The size of a full Raft entry (the writer's cap).
pub const ENTRY_COMMANDS: usize = 4096;

/// Amounts of one trade as decimals.
#[derive(Clone, Copy, Debug)]
struct Amounts {
    base: Decimal,
    price: Decimal,
    quote: Decimal,
    buyer_fee: Decimal,
    seller_fee: Decimal,
}

fn parse(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|e| panic!("bench amount {text:?}: {e}"))
}

fn amounts(table: &[TradeAmount]) -> Vec<Amounts> {
    table
        .iter()
        .map(|a| Amounts {
            base: parse(&a.base),
            price: parse(&a.price),
            quote: parse(&a.quote),
            buyer_fee: parse(&a.buyer_fee),
            seller_fee: parse(&a.seller_fee),
        })
        .collect()
}

/// A funded ledger plus a generator of commands against it.
pub struct EngineFixture {
    pub ledger: Ledger,
    accounts: u64,
    assets: usize,
    picker: Picker,
    rng: SmallRng,
    amounts: Vec<Amounts>,
    next_id: u64,
    next_hold: u64,
    applied_commands: u64,
    /// Standing holds for `fill_only`: (buy hold, sell hold) per account.
    standing: Vec<(u64, u64)>,
    /// Apply with `apply_quiet` (no events), as a follower does.
    pub quiet: bool,
    /// `run_engine` decodes wire bytes and applies them with `apply_decoded`.
    pub from_log: bool,
}

impl EngineFixture {
    /// `accounts` accounts (ids 1..=accounts), each funded in `assets`
    /// assets (2..=4), with the default steady-state dedup table.
    pub fn new(accounts: u64, assets: usize, distribution: Distribution, seed: u64) -> Self {
        Self::with_dedup_window(accounts, assets, distribution, seed, BENCH_DEDUP_WINDOW_MS)
    }

    /// Like [`EngineFixture::new`] with a dedup window of `dedup_window_ms`
    /// (about `dedup_window_ms * COMMANDS_PER_MS` live entries).
    pub fn with_dedup_window(
        accounts: u64,
        assets: usize,
        distribution: Distribution,
        seed: u64,
        dedup_window_ms: u64,
    ) -> Self {
        assert!((2..=ASSETS.len()).contains(&assets) && accounts >= 2);
        let ledger = Ledger::new(LedgerConfig {
            dedup_window_ms: dedup_window_ms.max(1),
        });
        let mut fixture = EngineFixture {
            ledger,
            accounts,
            assets,
            picker: Picker::new(distribution, accounts),
            rng: SmallRng::seed_from_u64(seed),
            amounts: amounts(&trade_amounts()),
            next_id: 0,
            next_hold: 1,
            applied_commands: 0,
            standing: Vec::new(),
            quiet: std::env::var_os("TALLY_BENCH_QUIET").is_some(),
            from_log: std::env::var_os("TALLY_BENCH_FROM_LOG").is_some(),
        };
        // Built and applied an entry at a time (as the node would), so the
        // set-up's own garbage never dominates the memory figure.
        let mut chunk = Vec::with_capacity(ENTRY_COMMANDS);
        for (symbol, scale) in &ASSETS[..assets] {
            chunk.push(Command::CreateAsset(CreateAsset {
                symbol: (*symbol).into(),
                scale: *scale,
            }));
        }
        for account in 1..=accounts {
            chunk.push(Command::CreateAccount(CreateAccount { account }));
            for (i, (symbol, _)) in ASSETS[..assets].iter().enumerate() {
                let amount = parse(if i == 0 { FUND_QUOTE } else { FUND_BASE });
                chunk.push(Command::Deposit(Deposit {
                    account,
                    asset: (*symbol).into(),
                    amount,
                }));
            }
            if chunk.len() >= ENTRY_COMMANDS || account == accounts {
                let envelopes: Vec<Envelope> =
                    chunk.drain(..).map(|c| fixture.envelope(c)).collect();
                let (applied, _) = fixture.apply(&envelopes);
                assert_eq!(applied, envelopes.len(), "fixture set-up command rejected");
                fixture.ledger.take_dirty();
            }
        }
        fixture.ledger.take_dirty();
        fixture
    }

    fn envelope(&mut self, command: Command) -> Envelope {
        self.next_id += 1;
        Envelope {
            command_id: CommandId(format!("tc-{:032x}", self.next_id)),
            command,
        }
    }

    /// Ledger time for the next command.
    pub fn now_ms(&self) -> u64 {
        1_000 + self.applied_commands / COMMANDS_PER_MS
    }

    fn pick_amounts(&mut self) -> Amounts {
        self.amounts[self.rng.random_range(0..self.amounts.len())]
    }

    /// `trades` trades, three envelopes each: lock quote (buyer), lock base
    /// (seller), a fill consuming both holds exactly.
    pub fn trades(&mut self, trades: usize) -> Vec<Envelope> {
        let mut out = Vec::with_capacity(trades * 3);
        for _ in 0..trades {
            let buyer_rank = self.picker.pick(&mut self.rng);
            let buyer = 1 + buyer_rank;
            let seller = 1 + self.picker.pick_other(&mut self.rng, buyer_rank);
            let base_asset = ASSETS[self.rng.random_range(1..self.assets)].0;
            let a = self.pick_amounts();
            let (buy_hold, sell_hold) = (self.next_hold, self.next_hold + 1);
            self.next_hold += 2;
            let commands = [
                Command::Lock(Lock {
                    hold: buy_hold,
                    account: buyer,
                    asset: ASSETS[0].0.into(),
                    amount: a.quote,
                }),
                Command::Lock(Lock {
                    hold: sell_hold,
                    account: seller,
                    asset: base_asset.into(),
                    amount: a.base,
                }),
                Command::Fill(Fill {
                    buy_hold,
                    sell_hold,
                    base_amount: a.base,
                    price: a.price,
                    buyer_fee: a.buyer_fee,
                    seller_fee: a.seller_fee,
                }),
            ];
            for command in commands {
                let envelope = self.envelope(command);
                out.push(envelope);
            }
        }
        out
    }

    /// Opens, once, a large buy (quote) and sell (base, first base asset)
    /// hold per account: the resting orders `fills_only` fills against.
    fn ensure_standing_holds(&mut self) {
        if !self.standing.is_empty() {
            return;
        }
        let mut locks = Vec::new();
        for account in 1..=self.accounts {
            let (buy, sell) = (self.next_hold, self.next_hold + 1);
            self.next_hold += 2;
            self.standing.push((buy, sell));
            locks.push(Command::Lock(Lock {
                hold: buy,
                account,
                asset: ASSETS[0].0.into(),
                amount: parse("900000000"),
            }));
            locks.push(Command::Lock(Lock {
                hold: sell,
                account,
                asset: ASSETS[1].0.into(),
                amount: parse("900000"),
            }));
        }
        let envelopes: Vec<Envelope> = locks.into_iter().map(|c| self.envelope(c)).collect();
        for chunk in envelopes.chunks(ENTRY_COMMANDS) {
            let (applied, _) = self.apply(chunk);
            assert_eq!(applied, chunk.len(), "standing hold rejected");
        }
        self.ledger.take_dirty();
    }

    /// `fills` fills against standing holds (partial fills of resting
    /// orders; no locks): the fill path alone.
    pub fn fills_only(&mut self, fills: usize) -> Vec<Envelope> {
        self.ensure_standing_holds();
        let mut out = Vec::with_capacity(fills);
        for _ in 0..fills {
            let buyer_rank = self.picker.pick(&mut self.rng);
            let seller_rank = self.picker.pick_other(&mut self.rng, buyer_rank);
            let a = self.pick_amounts();
            let command = Command::Fill(Fill {
                buy_hold: self.standing[buyer_rank as usize].0,
                sell_hold: self.standing[seller_rank as usize].1,
                base_amount: a.base,
                price: a.price,
                buyer_fee: a.buyer_fee,
                seller_fee: a.seller_fee,
            });
            let envelope = self.envelope(command);
            out.push(envelope);
        }
        out
    }

    /// Applies `envelopes` in order at the fixture's clock; returns
    /// (applied commands, applied fills).
    pub fn apply(&mut self, envelopes: &[Envelope]) -> (usize, usize) {
        let mut applied = 0;
        let mut fills = 0;
        for envelope in envelopes {
            let now_ms = self.now_ms();
            let ApplyResult { outcome, .. } = if self.quiet {
                self.ledger.apply_quiet(envelope, now_ms)
            } else {
                self.ledger.apply(envelope, now_ms)
            };
            self.applied_commands += 1;
            if matches!(outcome, Outcome::Applied { .. }) {
                applied += 1;
                fills += usize::from(matches!(envelope.command, Command::Fill(_)));
            }
        }
        (applied, fills)
    }

    /// Decodes `count` envelopes encoded back to back in `bytes` and applies
    /// each with `apply_decoded`, as the state machine does with an entry
    /// frame; returns (applied commands, applied fills).
    pub fn apply_encoded(&mut self, mut bytes: &[u8], count: usize) -> (usize, usize) {
        let mut applied = 0;
        let mut fills = 0;
        for _ in 0..count {
            let Ok((command, used)) = tally_ledger::decode_envelope(bytes) else {
                break;
            };
            bytes = &bytes[used..];
            let now_ms = self.now_ms();
            let ApplyResult { outcome, .. } =
                self.ledger.apply_decoded(&command, now_ms, !self.quiet);
            self.applied_commands += 1;
            if matches!(outcome, Outcome::Applied { .. }) {
                applied += 1;
                fills += usize::from(matches!(command.envelope.command, Command::Fill(_)));
            }
        }
        (applied, fills)
    }

    /// What the state machine does after each applied entry: encode the
    /// changed records with `Ledger::drain_dirty` (reused buffers, no
    /// sorting: what a RocksDB `WriteBatch` needs) and hand them on; here
    /// their bytes are only counted. Returns the number of records.
    pub fn take_dirty(&mut self) -> usize {
        let (mut records, mut bytes) = (0usize, 0usize);
        self.ledger.drain_dirty(|key, value| {
            records += 1;
            bytes += key.len() + value.map_or(0, <[u8]>::len);
        });
        std::hint::black_box(bytes);
        records
    }
}

/// Result of [`run_engine`].
#[derive(Clone, Debug)]
pub struct EngineRun {
    pub fills: u64,
    pub commands: u64,
    pub rejected: u64,
    /// Time spent in `apply` only.
    pub apply_time: Duration,
    /// CPU time of this thread spent in `apply` (immune to other processes
    /// taking the core, unlike `apply_time`).
    pub apply_cpu: Duration,
    /// Time spent encoding the changed records (`EngineFixture::take_dirty`,
    /// i.e. `drain_dirty`, once per entry of `ENTRY_COMMANDS`).
    pub take_dirty_time: Duration,
}

/// Applies `trades` lock+lock+fill trades (or fills against standing holds
/// when `fills_only`) in entries of [`ENTRY_COMMANDS`] commands, calling
/// `take_dirty` after each entry like the state machine does. Bounded by
/// `max_time`.
pub fn run_engine(
    fixture: &mut EngineFixture,
    trades: u64,
    fills_only: bool,
    max_time: Duration,
) -> EngineRun {
    let per_entry = if fills_only {
        ENTRY_COMMANDS
    } else {
        ENTRY_COMMANDS / 3
    };
    let started = Instant::now();
    let mut run = EngineRun {
        fills: 0,
        commands: 0,
        rejected: 0,
        apply_time: Duration::ZERO,
        apply_cpu: Duration::ZERO,
        take_dirty_time: Duration::ZERO,
    };
    let mut left = trades;
    while left > 0 && started.elapsed() < max_time {
        let n = left.min(per_entry as u64) as usize;
        left -= n as u64;
        let entry = if fills_only {
            fixture.fills_only(n)
        } else {
            fixture.trades(n)
        };
        let mut encoded = Vec::new();
        if fixture.from_log {
            for envelope in &entry {
                tally_ledger::encode_envelope(envelope, &mut encoded);
            }
        }
        let cpu0 = crate::rss::thread_cpu_ns();
        let t0 = Instant::now();
        let (applied, fills) = if fixture.from_log {
            fixture.apply_encoded(&encoded, entry.len())
        } else {
            fixture.apply(&entry)
        };
        let t1 = Instant::now();
        let cpu1 = crate::rss::thread_cpu_ns();
        run.apply_cpu += Duration::from_nanos(cpu1.saturating_sub(cpu0));
        fixture.take_dirty();
        run.take_dirty_time += t1.elapsed();
        run.apply_time += t1 - t0;
        run.commands += entry.len() as u64;
        run.fills += fills as u64;
        run.rejected += (entry.len() - applied) as u64;
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trades_and_fills_apply_cleanly() {
        let mut f = EngineFixture::new(50, 3, Distribution::Zipf(1.0), 1);
        let trades = f.trades(500);
        assert_eq!(f.apply(&trades), (1500, 500));
        let fills = f.fills_only(500);
        assert_eq!(f.apply(&fills), (500, 500));
        assert!(f.take_dirty() > 0);
        assert_eq!(f.ledger.check_invariants(), Ok(()));
        let run = run_engine(&mut f, 2000, false, Duration::from_secs(60));
        assert_eq!((run.fills, run.rejected), (2000, 0));
    }
}
