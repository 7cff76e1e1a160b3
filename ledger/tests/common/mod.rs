//! Helpers shared by the integration tests: decimal literals, envelopes,
//! a small harness that numbers command ids, and a "business state" digest
//! (every record except the idempotency table and its clock).
#![allow(dead_code)]

use std::str::FromStr;

use rust_decimal::Decimal;
use tally_ledger::*;

/// A decimal literal; keeps its written scale ("1.50" has scale 2).
pub fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|e| panic!("bad decimal {text:?}: {e}"))
}

pub fn envelope(id: &str, command: Command) -> Envelope {
    Envelope {
        command_id: CommandId(id.to_string()),
        command,
    }
}

/// blake3 over every record except `Meta` and `Dedup`: what a rejected
/// command must leave unchanged (it is still remembered in the dedup table).
pub fn business_hash(ledger: &Ledger) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for (key, value) in ledger.records() {
        if matches!(
            RecordKind::of_key(&key),
            Some(RecordKind::Meta | RecordKind::Dedup)
        ) {
            continue;
        }
        hasher.update(&(key.len() as u32).to_be_bytes());
        hasher.update(&key);
        hasher.update(&(value.len() as u32).to_be_bytes());
        hasher.update(&value);
    }
    *hasher.finalize().as_bytes()
}

/// A ledger plus a command-id counter and a clock.
pub struct Harness {
    pub ledger: Ledger,
    pub next_id: u64,
    pub now_ms: u64,
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            ledger: Ledger::new(LedgerConfig::default()),
            next_id: 0,
            now_ms: 1_000,
        }
    }

    /// Applies `command` under a fresh id; returns (id, result).
    pub fn send(&mut self, command: Command) -> (Envelope, ApplyResult) {
        self.next_id += 1;
        self.now_ms += 1;
        let envelope = envelope(&format!("cmd-{}", self.next_id), command);
        let result = self.ledger.apply(&envelope, self.now_ms);
        (envelope, result)
    }

    /// Applies `command`, which must succeed; returns its events. A retry
    /// is then recognized: `Applied` with no events (they were delivered
    /// with the first reply), `duplicate`, and no record changes.
    pub fn ok(&mut self, command: Command) -> Vec<Event> {
        let (envelope, result) = self.send(command);
        assert!(!result.duplicate);
        let Outcome::Applied { events } = result.outcome else {
            panic!("{:?} rejected: {:?}", envelope.command, result.outcome)
        };
        self.ledger.check_invariants().expect("invariants");
        let records = self.ledger.records();
        let retry = self.ledger.apply(&envelope, self.now_ms);
        assert_eq!(
            retry,
            ApplyResult {
                outcome: Outcome::Applied { events: vec![] },
                duplicate: true,
            }
        );
        assert_eq!(self.ledger.records(), records, "a retry changed records");
        events
    }

    /// Applies `command`, which must be rejected with `code` and must not
    /// change balances, holds, accounts or assets; its rejection is
    /// remembered (one dedup record), and a retry returns the identical
    /// rejection (code and message) as a duplicate without changing even
    /// the full state hash.
    pub fn rejected(&mut self, command: Command, code: RejectCode) -> Rejection {
        let business_before = business_hash(&self.ledger);
        let records_before = self.ledger.records();
        let (envelope, result) = self.send(command);
        let rejection = match &result.outcome {
            Outcome::Rejected(rejection) => rejection.clone(),
            Outcome::Applied { events } => {
                panic!(
                    "{:?} applied, expected {code:?}: {events:?}",
                    envelope.command
                )
            }
        };
        assert_eq!(
            rejection.code,
            code,
            "{:?}: {}",
            envelope.command,
            rejection.message()
        );
        assert!(!result.duplicate);
        assert_eq!(
            business_hash(&self.ledger),
            business_before,
            "rejection changed the state"
        );
        // The only records that changed: the dedup clock and this id's entry.
        let records_after = self.ledger.records();
        let changed: Vec<_> = records_after
            .iter()
            .filter(|r| !records_before.contains(r))
            .map(|(key, _)| RecordKind::of_key(key))
            .collect();
        assert!(
            changed
                .iter()
                .all(|k| matches!(k, Some(RecordKind::Meta | RecordKind::Dedup)))
        );
        assert_eq!(
            changed
                .iter()
                .filter(|k| **k == Some(RecordKind::Dedup))
                .count(),
            1
        );
        assert_eq!(records_after.len(), records_before.len() + 1);
        // Retry: the identical rejection, nothing changes.
        let hash = self.ledger.state_hash();
        let retry = self.ledger.apply(&envelope, self.now_ms + 1);
        assert!(retry.duplicate);
        assert_eq!(retry.outcome, Outcome::Rejected(rejection.clone()));
        assert_eq!(self.ledger.state_hash(), hash);
        self.ledger.check_invariants().expect("invariants");
        rejection
    }

    pub fn balance(&self, owner: Owner, asset: &str) -> (Decimal, Decimal) {
        let view = self
            .ledger
            .balance(owner, asset)
            .expect("known owner and asset");
        (view.available, view.locked)
    }
}

/// Standard setup: BTC (8), USDT (6), accounts 1..=3.
pub fn spot_harness() -> Harness {
    let mut h = Harness::new();
    h.ok(Command::CreateAsset(CreateAsset {
        symbol: "BTC".into(),
        scale: 8,
    }));
    h.ok(Command::CreateAsset(CreateAsset {
        symbol: "USDT".into(),
        scale: 6,
    }));
    for account in 1..=3 {
        h.ok(Command::CreateAccount(CreateAccount { account }));
    }
    h
}

// ----- perpetual futures ------------------------------------------------------

/// The standard test market: tick 0.1, step 0.001, max leverage 20, brackets
/// [0: 1% / 20x], [10,000: 2% / 10x], [50,000: 5% / 5x] (cumulative amounts
/// 0, 100, 1,600), liquidation fee 1%, funding every 8 hours, settled in USDT.
pub fn market_command(symbol: &str) -> Command {
    Command::CreateMarket(CreateMarket {
        market: symbol.into(),
        base: symbol.split('-').next().unwrap_or("X").into(),
        settle_asset: "USDT".into(),
        tick_size: d("0.1"),
        step_size: d("0.001"),
        max_leverage: 20,
        brackets: vec![
            bracket("0", "0.01", 20),
            bracket("10000", "0.02", 10),
            bracket("50000", "0.05", 5),
        ],
        liquidation_fee_rate: d("0.01"),
        funding_interval_ms: FUNDING_INTERVAL_MS,
    })
}

pub const FUNDING_INTERVAL_MS: u64 = 8 * 3_600_000;

pub fn bracket(floor: &str, mmr: &str, max_leverage: u32) -> MarginBracket {
    MarginBracket {
        notional_floor: d(floor),
        maintenance_margin_rate: d(mmr),
        max_leverage,
    }
}

/// USDT (6), accounts 1..=6, markets BTC-PERP and ETH-PERP (see `market_command`).
pub fn perp_harness() -> Harness {
    let mut h = Harness::new();
    h.ok(Command::CreateAsset(CreateAsset {
        symbol: "USDT".into(),
        scale: 6,
    }));
    for account in 1..=6 {
        h.ok(Command::CreateAccount(CreateAccount { account }));
    }
    h.ok(market_command("BTC-PERP"));
    h.ok(market_command("ETH-PERP"));
    h
}

pub fn deposit(account: u64, amount: &str) -> Command {
    Command::Deposit(Deposit {
        account,
        asset: "USDT".into(),
        amount: d(amount),
    })
}

pub fn mark(market: &str, price: &str) -> Command {
    Command::SetMarkPrice(SetMarkPrice {
        market: market.into(),
        price: d(price),
    })
}

/// A perp fill without fees.
pub fn perp_fill(market: &str, buyer: u64, seller: u64, size: &str, price: &str) -> Command {
    perp_fill_fees(market, buyer, seller, size, price, "0", "0")
}

pub fn perp_fill_fees(
    market: &str,
    buyer: u64,
    seller: u64,
    size: &str,
    price: &str,
    buyer_fee: &str,
    seller_fee: &str,
) -> Command {
    Command::PerpFill(PerpFill {
        market: market.into(),
        buyer,
        seller,
        size: d(size),
        price: d(price),
        buyer_fee: d(buyer_fee),
        seller_fee: d(seller_fee),
    })
}

pub fn funding(market: &str, rate: &str, funding_time_ms: u64) -> Command {
    Command::ApplyFunding(ApplyFunding {
        market: market.into(),
        rate: d(rate),
        funding_time_ms,
    })
}

impl Harness {
    /// The USDT available balance of `owner`.
    pub fn usdt(&self, owner: Owner) -> Decimal {
        self.balance(owner, "USDT").0
    }

    /// (size, entry price) of `account` in `market`, (0, 0) when flat.
    pub fn pos(&self, market: &str, account: u64) -> (Decimal, Decimal) {
        self.ledger
            .position(market, account)
            .map_or((Decimal::ZERO, Decimal::ZERO), |p| (p.size, p.entry_price))
    }

    /// The account's USDT margin (must hold positions).
    pub fn margin(&self, account: u64) -> MarginView {
        let views = self.ledger.margin(account).expect("known account");
        views
            .into_iter()
            .find(|v| v.settle_asset == "USDT")
            .expect("USDT margin")
    }
}

/// Σ of `Balance` deltas plus `Pool` deltas per asset over `events`: zero
/// for every asset when a command conserves money.
pub fn net_flows(events: &[Event]) -> std::collections::BTreeMap<String, Decimal> {
    let mut net = std::collections::BTreeMap::new();
    for event in events {
        let (asset, delta) = match event {
            Event::Balance(b) => (b.asset.clone(), b.available_delta + b.locked_delta),
            Event::Pool { asset, delta, .. } => (asset.clone(), *delta),
            _ => continue,
        };
        *net.entry(asset).or_insert(Decimal::ZERO) += delta;
    }
    net
}

/// Determinism of a random history: `envelopes` (each with its time and
/// result) replayed on `replay` (a ledger set up as the original was) give
/// the same results and state hash as `ledger`, and `ledger` rebuilt from
/// its records has its state hash.
pub fn check_replay_and_rebuild(
    replay: &mut Ledger,
    envelopes: &[(Envelope, u64, ApplyResult)],
    ledger: &Ledger,
) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::{prop_assert, prop_assert_eq};
    for (envelope, now_ms, result) in envelopes {
        prop_assert_eq!(&replay.apply(envelope, *now_ms), result);
    }
    prop_assert_eq!(replay.state_hash(), ledger.state_hash());
    let rebuilt = Ledger::from_records(LedgerConfig::default(), ledger.records());
    prop_assert!(rebuilt.is_ok(), "{:?}", rebuilt.err());
    if let Ok(rebuilt) = rebuilt {
        prop_assert_eq!(rebuilt.state_hash(), ledger.state_hash());
    }
    Ok(())
}
