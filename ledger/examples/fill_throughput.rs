//! Rough single-thread fill throughput of the in-memory engine (not a test):
//! `cargo run --release -p tally-ledger --example fill_throughput [fills]`.
//! Includes idempotency bookkeeping and event construction; excludes
//! `take_dirty` (the shell calls it once per Raft batch).

// A benchmark, not the engine: ledger/clippy.toml's determinism bans are for
// ledger/src (this reads its arguments and the clock).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::str::FromStr;
use std::time::Instant;

use tally_ledger::*;

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

fn main() {
    let fills: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let accounts: u64 = 1_000;
    // A short window (1 s at one fill per ms) keeps the dedup table at about
    // a thousand entries: the steady state of a bounded table.
    let mut ledger = Ledger::new(LedgerConfig {
        dedup_window_ms: 1_000,
    });
    let mut n = 0u64;
    let mut send = |ledger: &mut Ledger, command: Command, now_ms: u64| {
        n += 1;
        let envelope = Envelope {
            command_id: CommandId(format!("c{n}")),
            command,
        };
        ledger.apply(&envelope, now_ms)
    };
    send(
        &mut ledger,
        Command::CreateAsset(CreateAsset {
            symbol: "BTC".into(),
            scale: 8,
        }),
        0,
    );
    send(
        &mut ledger,
        Command::CreateAsset(CreateAsset {
            symbol: "USDT".into(),
            scale: 6,
        }),
        0,
    );
    for account in 1..=accounts {
        send(
            &mut ledger,
            Command::CreateAccount(CreateAccount { account }),
            0,
        );
        for (asset, amount) in [("BTC", "1000000"), ("USDT", "100000000000")] {
            let command = Command::Deposit(Deposit {
                account,
                asset: asset.into(),
                amount: d(amount),
            });
            send(&mut ledger, command, 0);
        }
        let buy = Command::Lock(Lock {
            hold: account * 2,
            account,
            asset: "USDT".into(),
            amount: d("90000000000"),
        });
        let sell = Command::Lock(Lock {
            hold: account * 2 + 1,
            account,
            asset: "BTC".into(),
            amount: d("900000"),
        });
        send(&mut ledger, buy, 0);
        send(&mut ledger, sell, 0);
    }
    ledger.take_dirty();

    let envelopes: Vec<Envelope> = (0..fills)
        .map(|i| {
            let buyer = i % accounts + 1;
            let seller = (i * 7 + 3) % accounts + 1;
            Envelope {
                command_id: CommandId(format!("fill-{i}")),
                command: Command::Fill(Fill {
                    buy_hold: buyer * 2,
                    sell_hold: seller * 2 + 1,
                    base_amount: Decimal::new(1 + (i % 50) as i64, 3),
                    price: Decimal::new(3_000_000 + (i % 100) as i64, 2),
                    buyer_fee: Decimal::new(1, 6),
                    seller_fee: Decimal::new(3, 2),
                }),
            }
        })
        .collect();
    let start = Instant::now();
    let mut applied = 0u64;
    for (i, envelope) in envelopes.iter().enumerate() {
        let result = ledger.apply(envelope, 1_000 + i as u64);
        applied += u64::from(matches!(result.outcome, Outcome::Applied { .. }));
    }
    let elapsed_ns = start.elapsed().as_nanos().max(1);
    println!(
        "{fills} fills ({applied} applied) in {elapsed_ns} ns: {} fills/s, {} ns/fill",
        u128::from(fills) * 1_000_000_000 / elapsed_ns,
        elapsed_ns / u128::from(fills.max(1))
    );
    let start = Instant::now();
    let dirty = ledger.take_dirty();
    println!(
        "take_dirty: {} records in {} ms",
        dirty.len(),
        start.elapsed().as_millis()
    );
    ledger.check_invariants().expect("invariants");
}
