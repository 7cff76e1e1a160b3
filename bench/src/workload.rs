//! What the load generator sends: the workloads, the commands they are made
//! of, and the set-up that creates and funds the accounts first.
//!
//! * `deposit`: batches of deposits to random accounts.
//! * `transfer`: batches of transfers between two different funded
//!   accounts, in round trips: every transfer of [`TRANSFER_AMOUNT`] from A
//!   to B is followed (as the next command: in the same request when
//!   `batch >= 2`) by the same amount from B back to A, so no balance drifts
//!   however long the run (an account is at most the commands in flight
//!   times the amount away from its funding).
//! * `spot`: trades between two accounts, each three commands in order:
//!   lock quote for the buyer, lock base for the seller, one fill consuming
//!   both holds exactly (so holds never pile up). A request carries whole
//!   trades whenever `batch >= 3`.
//! * `mixed`: spot write requests and balance reads, `read_ratio` of the
//!   requests being reads.
//! * `reads`: balance reads only (see `driver` for where they are sent).
//! * `accounts`: creates `accounts` accounts and funds each in every asset,
//!   in batches, once (for the memory-per-account figure).
//!
//! Everything is derived from the seed except a per-run nonce mixed into
//! command and hold ids, so a run against a long-lived cluster never reuses
//! an id of an earlier run.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use tally_proto::v1::command::Body;
use tally_proto::v1::{Command, CreateAccount, CreateAsset, Deposit, Fill, Lock, Transfer};

use crate::dist::{Distribution, Picker};

/// The quote asset (asset 0) and the base assets, with their scales.
pub const ASSETS: [(&str, u32); 4] = [("USDT", 6), ("BTC", 8), ("ETH", 8), ("SOL", 8)];
/// Funding per account and asset in the set-up (whole units): deep enough
/// that hours of random trading never run an account dry.
pub const FUND_QUOTE: &str = "1000000000";
pub const FUND_BASE: &str = "1000000";
/// The amount of every `deposit` workload command.
pub const DEPOSIT_AMOUNT: &str = "0.01";
/// The amount of every `transfer` workload command (any asset): a
/// millionth of the smallest funding ([`FUND_BASE`]).
pub const TRANSFER_AMOUNT: &str = "0.01";
/// Commands per trade in the `spot` workload.
pub const TRADE_COMMANDS: usize = 3;
/// Largest number of generator streams (workers); hold ids reserve 14 bits.
pub const MAX_STREAMS: u64 = 1 << 14;
/// Largest sequence number of one stream; hold ids reserve 34 bits.
const MAX_SEQ: u64 = (1 << 34) - 1;

/// Which workload to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Deposit,
    /// Transfers between funded accounts, out and back.
    Transfer,
    Spot,
    Mixed,
    Reads,
    Accounts,
    /// The engine alone, in this process (no cluster).
    Engine,
    /// Fills produced to a Kafka topic, ingested by the cluster, their
    /// events consumed from the events topic (the `ingest` module).
    Ingest,
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "deposit" => Workload::Deposit,
            "transfer" => Workload::Transfer,
            "spot" => Workload::Spot,
            "mixed" => Workload::Mixed,
            "reads" => Workload::Reads,
            "accounts" => Workload::Accounts,
            "engine" => Workload::Engine,
            "ingest" => Workload::Ingest,
            other => {
                return Err(format!(
                    "unknown workload {other:?}: deposit, transfer, spot, mixed, reads, accounts, engine \
                     or ingest"
                ));
            }
        })
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::Deposit => "deposit",
            Workload::Transfer => "transfer",
            Workload::Spot => "spot",
            Workload::Mixed => "mixed",
            Workload::Reads => "reads",
            Workload::Accounts => "accounts",
            Workload::Engine => "engine",
            Workload::Ingest => "ingest",
        })
    }
}

impl Workload {
    /// The unit `--rate` and `--count` are given in.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::Deposit | Workload::Transfer => "commands",
            Workload::Spot | Workload::Engine | Workload::Ingest => "fills",
            Workload::Mixed => "requests",
            Workload::Reads => "reads",
            Workload::Accounts => "accounts",
        }
    }

    /// Whether the set-up phase (assets, funded accounts) runs first.
    pub fn needs_setup(self) -> bool {
        !matches!(
            self,
            Workload::Accounts | Workload::Engine | Workload::Ingest
        )
    }
}

/// One precomputed trade size: amounts as the decimal strings sent.
#[derive(Clone, Debug)]
pub struct TradeAmount {
    pub base: String,
    pub price: String,
    /// `base * price`: the buyer's lock, consumed exactly by the fill.
    pub quote: String,
    /// 0.1% of what each side receives.
    pub buyer_fee: String,
    pub seller_fee: String,
}

/// 50 sizes (0.001 ..= 0.050 base) x 20 prices (30000 ..= 30019 quote).
pub fn trade_amounts() -> Vec<TradeAmount> {
    let mut out = Vec::with_capacity(1000);
    for size in 1..=50i64 {
        for tick in 0..20i64 {
            let price = 30_000 + tick;
            let base = Decimal::new(size, 3);
            let quote = Decimal::new(size * price, 3);
            out.push(TradeAmount {
                base: base.to_string(),
                price: price.to_string(),
                quote: quote.to_string(),
                buyer_fee: Decimal::new(size, 6).to_string(),
                seller_fee: Decimal::new(size * price, 6).to_string(),
            });
        }
    }
    out
}

/// Everything the generators of one run share.
#[derive(Debug)]
pub struct Plan {
    pub workload: Workload,
    /// First account id; accounts are `account_base .. account_base + accounts`.
    pub account_base: u64,
    pub accounts: u64,
    /// Assets used, 2..=4 (the quote plus 1..=3 bases).
    pub assets: usize,
    /// Commands per write request.
    pub batch: usize,
    /// Share of requests that are reads (`mixed`).
    pub read_ratio: f64,
    pub seed: u64,
    /// Per-run id nonce (16 bits).
    pub nonce: u16,
    pub picker: Picker,
    pub amounts: Vec<TradeAmount>,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        workload: Workload,
        account_base: u64,
        accounts: u64,
        assets: usize,
        batch: usize,
        read_ratio: f64,
        distribution: Distribution,
        seed: u64,
        nonce: u16,
    ) -> Plan {
        assert!((2..=ASSETS.len()).contains(&assets));
        assert!(batch >= 1);
        Plan {
            workload,
            account_base,
            accounts,
            assets,
            batch,
            read_ratio,
            seed,
            nonce,
            picker: Picker::new(distribution, accounts.max(1)),
            amounts: trade_amounts(),
        }
    }

    /// Commands per spot write request: whole trades when `batch >= 3`.
    pub fn spot_batch(&self) -> usize {
        if self.batch >= TRADE_COMMANDS {
            self.batch - self.batch % TRADE_COMMANDS
        } else {
            self.batch
        }
    }

    /// Workload units (see [`Workload::unit`]) in one request of this plan.
    pub fn units_per_request(&self) -> u64 {
        match self.workload {
            Workload::Deposit | Workload::Transfer => self.batch as u64,
            Workload::Spot => (self.spot_batch() / TRADE_COMMANDS).max(1) as u64,
            Workload::Mixed | Workload::Reads => 1,
            Workload::Accounts => self.accounts_per_request(),
            Workload::Engine | Workload::Ingest => 1,
        }
    }

    /// Accounts created (and funded) per request of the `accounts` workload
    /// and the set-up.
    pub fn accounts_per_request(&self) -> u64 {
        (self.batch / (1 + self.assets)).max(1) as u64
    }

    /// The asset symbols used.
    pub fn asset_symbols(&self) -> impl Iterator<Item = &'static str> + '_ {
        ASSETS[..self.assets].iter().map(|(symbol, _)| *symbol)
    }

    /// The command creating each asset used.
    pub fn create_assets(&self, ids: &mut Ids) -> Vec<Command> {
        ASSETS[..self.assets]
            .iter()
            .map(|(symbol, scale)| {
                ids.command(Body::CreateAsset(CreateAsset {
                    symbol: (*symbol).to_string(),
                    scale: *scale,
                }))
            })
            .collect()
    }

    /// The create-and-fund commands of the accounts `from..to` (0-based
    /// ranks): all creates, then every deposit, in one request's order.
    pub fn create_accounts(&self, from: u64, to: u64, ids: &mut Ids) -> Vec<Command> {
        let to = to.min(self.accounts);
        let n = to.saturating_sub(from) as usize;
        let mut commands = Vec::with_capacity(n * (1 + self.assets));
        for rank in from..to {
            let account = self.account_base + rank;
            commands.push(ids.command(Body::CreateAccount(CreateAccount { account })));
        }
        for rank in from..to {
            let account = self.account_base + rank;
            for (i, symbol) in self.asset_symbols().enumerate() {
                let amount = if i == 0 { FUND_QUOTE } else { FUND_BASE };
                commands.push(ids.command(Body::Deposit(Deposit {
                    account,
                    asset: symbol.to_string(),
                    amount: amount.to_string(),
                })));
            }
        }
        commands
    }
}

/// Fresh command ids (`b<nonce>-<stream>-<seq>`) and hold ids
/// (`nonce << 48 | stream << 34 | seq`) of one generator stream.
#[derive(Debug)]
pub struct Ids {
    prefix: String,
    hold_base: u64,
    seq: u64,
}

impl Ids {
    pub fn new(nonce: u16, stream: u64) -> Ids {
        assert!(stream < MAX_STREAMS, "stream {stream} >= {MAX_STREAMS}");
        Ids {
            prefix: format!("b{nonce:04x}-{stream}-"),
            hold_base: (u64::from(nonce) << 48) | (stream << 34),
            seq: 0,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        assert!(self.seq <= MAX_SEQ, "id sequence exhausted");
        self.seq
    }

    /// A command with a fresh id.
    pub fn command(&mut self, body: Body) -> Command {
        let seq = self.next_seq();
        let mut command_id = String::with_capacity(self.prefix.len() + 12);
        command_id.push_str(&self.prefix);
        command_id.push_str(&seq.to_string());
        Command {
            command_id,
            body: Some(body),
        }
    }

    /// A fresh hold id.
    pub fn hold(&mut self) -> u64 {
        self.hold_base | self.next_seq()
    }
}

/// One request to send.
#[derive(Clone, Debug)]
pub enum Request {
    /// Commands applied in order in one Raft entry; `fills[i]` marks fills.
    Write {
        commands: Vec<Command>,
        fills: Vec<bool>,
    },
    /// One balance read.
    Read { account: u64, asset: &'static str },
}

impl Request {
    /// Number of commands (writes) or 1 (reads).
    pub fn len(&self) -> usize {
        match self {
            Request::Write { commands, .. } => commands.len(),
            Request::Read { .. } => 1,
        }
    }

    /// Never empty.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The request stream of one worker.
pub struct Generator {
    plan: Arc<Plan>,
    rng: SmallRng,
    ids: Ids,
    /// Commands of the current trade not yet sent (spot with `batch < 3`),
    /// or the return leg of the current transfer round trip (transfer
    /// with an odd batch).
    pending: std::collections::VecDeque<(Command, bool)>,
}

impl Generator {
    /// Stream `stream` of `plan` (its own rng and id space).
    pub fn new(plan: Arc<Plan>, stream: u64) -> Generator {
        let seed = plan
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(stream);
        Generator {
            ids: Ids::new(plan.nonce, stream),
            rng: SmallRng::seed_from_u64(seed),
            plan,
            pending: std::collections::VecDeque::new(),
        }
    }

    fn account(&mut self) -> u64 {
        self.plan.account_base + self.plan.picker.pick(&mut self.rng)
    }

    fn asset(&mut self) -> &'static str {
        ASSETS[self.rng.random_range(0..self.plan.assets)].0
    }

    /// The next request.
    pub fn next_request(&mut self) -> Request {
        match self.plan.workload {
            Workload::Deposit => self.deposits(),
            Workload::Transfer => self.transfers(),
            Workload::Spot => self.trades(),
            Workload::Mixed => {
                if self.rng.random_bool(self.plan.read_ratio.clamp(0.0, 1.0)) {
                    self.read()
                } else {
                    self.trades()
                }
            }
            Workload::Reads => self.read(),
            // Accounts come from `AccountCursor`; the engine runs in-process.
            Workload::Accounts | Workload::Engine | Workload::Ingest => self.deposits(),
        }
    }

    fn read(&mut self) -> Request {
        Request::Read {
            account: self.account(),
            asset: self.asset(),
        }
    }

    fn deposits(&mut self) -> Request {
        let n = self.plan.batch;
        let mut commands = Vec::with_capacity(n);
        for _ in 0..n {
            let account = self.account();
            let asset = self.asset().to_string();
            commands.push(self.ids.command(Body::Deposit(Deposit {
                account,
                asset,
                amount: DEPOSIT_AMOUNT.to_string(),
            })));
        }
        Request::Write {
            fills: vec![false; n],
            commands,
        }
    }

    /// One transfer round trip: A -> B, then the same back B -> A.
    fn push_round_trip(&mut self) {
        let plan = Arc::clone(&self.plan);
        let a_rank = plan.picker.pick(&mut self.rng);
        let b_rank = plan.picker.pick_other(&mut self.rng, a_rank);
        let (a, b) = (plan.account_base + a_rank, plan.account_base + b_rank);
        let asset = self.asset();
        for (from, to) in [(a, b), (b, a)] {
            let command = self.ids.command(Body::Transfer(Transfer {
                from,
                to,
                asset: asset.to_string(),
                amount: TRANSFER_AMOUNT.to_string(),
            }));
            self.pending.push_back((command, false));
        }
    }

    fn transfers(&mut self) -> Request {
        let n = self.plan.batch;
        let mut commands = Vec::with_capacity(n);
        while commands.len() < n {
            if self.pending.is_empty() {
                self.push_round_trip();
            }
            if let Some((command, _)) = self.pending.pop_front() {
                commands.push(command);
            }
        }
        Request::Write {
            fills: vec![false; n],
            commands,
        }
    }

    /// Appends one trade's three commands.
    fn push_trade(&mut self, out: &mut Vec<(Command, bool)>) {
        let plan = Arc::clone(&self.plan);
        let buyer_rank = plan.picker.pick(&mut self.rng);
        let seller_rank = plan.picker.pick_other(&mut self.rng, buyer_rank);
        let (buyer, seller) = (
            plan.account_base + buyer_rank,
            plan.account_base + seller_rank,
        );
        let base_asset = ASSETS[self.rng.random_range(1..plan.assets)].0;
        let amount = &plan.amounts[self.rng.random_range(0..plan.amounts.len())];
        let (buy_hold, sell_hold) = (self.ids.hold(), self.ids.hold());
        let lock_quote = self.ids.command(Body::Lock(Lock {
            hold: buy_hold,
            account: buyer,
            asset: ASSETS[0].0.to_string(),
            amount: amount.quote.clone(),
        }));
        let lock_base = self.ids.command(Body::Lock(Lock {
            hold: sell_hold,
            account: seller,
            asset: base_asset.to_string(),
            amount: amount.base.clone(),
        }));
        let fill = self.ids.command(Body::Fill(Fill {
            buy_hold,
            sell_hold,
            base_amount: amount.base.clone(),
            price: amount.price.clone(),
            buyer_fee: amount.buyer_fee.clone(),
            seller_fee: amount.seller_fee.clone(),
        }));
        out.push((lock_quote, false));
        out.push((lock_base, false));
        out.push((fill, true));
    }

    fn trades(&mut self) -> Request {
        let n = self.plan.spot_batch();
        let mut items = Vec::with_capacity(n.max(TRADE_COMMANDS));
        if n >= TRADE_COMMANDS {
            while items.len() < n {
                self.push_trade(&mut items);
            }
        } else {
            // Fewer commands than a trade: send the trade's commands in order
            // over several requests (closed loop only: each waits for the last).
            while items.len() < n {
                if self.pending.is_empty() {
                    let mut trade = Vec::with_capacity(TRADE_COMMANDS);
                    self.push_trade(&mut trade);
                    self.pending.extend(trade);
                }
                if let Some(item) = self.pending.pop_front() {
                    items.push(item);
                }
            }
        }
        let (commands, fills) = items.into_iter().unzip();
        Request::Write { commands, fills }
    }
}

/// Hands out account ranges to the workers of the `accounts` workload and
/// the set-up, so each account is created exactly once.
#[derive(Debug)]
pub struct AccountCursor {
    next: AtomicU64,
}

impl AccountCursor {
    pub fn new() -> AccountCursor {
        AccountCursor {
            next: AtomicU64::new(0),
        }
    }

    /// The next create-and-fund request, or `None` once every account is taken.
    pub fn next_request(&self, plan: &Plan, ids: &mut Ids) -> Option<Request> {
        let per = plan.accounts_per_request();
        let from = self.next.fetch_add(per, Ordering::Relaxed);
        if from >= plan.accounts {
            return None;
        }
        let commands = plan.create_accounts(from, from + per, ids);
        Some(Request::Write {
            fills: vec![false; commands.len()],
            commands,
        })
    }
}

impl Default for AccountCursor {
    fn default() -> Self {
        AccountCursor::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn plan(workload: Workload, batch: usize) -> Arc<Plan> {
        Arc::new(Plan::new(
            workload,
            1,
            100,
            3,
            batch,
            0.5,
            Distribution::Zipf(1.1),
            42,
            7,
        ))
    }

    #[test]
    fn amounts_are_exact() {
        for a in trade_amounts() {
            let base = Decimal::from_str(&a.base).ok();
            let price = Decimal::from_str(&a.price).ok();
            let quote = Decimal::from_str(&a.quote).ok();
            assert_eq!(base.zip(price).map(|(b, p)| b * p), quote);
            assert!(quote.is_some_and(|q| q.scale() <= 6));
        }
    }

    #[test]
    fn spot_requests_hold_whole_trades() {
        let mut g = Generator::new(plan(Workload::Spot, 100), 3);
        let Request::Write { commands, fills } = g.next_request() else {
            panic!("spot sends writes")
        };
        assert_eq!(commands.len(), 99);
        assert_eq!(fills.iter().filter(|f| **f).count(), 33);
        let mut holds = HashSet::new();
        for (i, c) in commands.iter().enumerate() {
            match (&c.body, i % 3) {
                (Some(Body::Lock(l)), 0) => assert!(holds.insert(l.hold) && l.asset == "USDT"),
                (Some(Body::Lock(l)), 1) => assert!(holds.insert(l.hold) && l.asset != "USDT"),
                (Some(Body::Fill(f)), 2) => {
                    assert!(holds.contains(&f.buy_hold) && holds.contains(&f.sell_hold))
                }
                other => panic!("unexpected command {i}: {other:?}"),
            }
        }
        let ids: HashSet<&str> = commands.iter().map(|c| c.command_id.as_str()).collect();
        assert_eq!(ids.len(), commands.len());
    }

    #[test]
    fn small_spot_batches_keep_trade_order() {
        let mut g = Generator::new(plan(Workload::Spot, 1), 0);
        let kinds: Vec<&str> = (0..6)
            .map(|_| match g.next_request() {
                Request::Write { commands, .. } => match commands[0].body {
                    Some(Body::Lock(_)) => "lock",
                    Some(Body::Fill(_)) => "fill",
                    _ => "other",
                },
                Request::Read { .. } => "read",
            })
            .collect();
        assert_eq!(kinds, ["lock", "lock", "fill", "lock", "lock", "fill"]);
    }

    #[test]
    fn transfers_come_in_round_trips_that_leave_balances_unchanged() {
        for batch in [1, 2, 7, 100] {
            let mut g = Generator::new(plan(Workload::Transfer, batch), 5);
            let mut net: std::collections::HashMap<(u64, String), i64> = Default::default();
            let mut commands = Vec::new();
            // An even number of commands in total: whole round trips.
            while commands.len() < 200 || commands.len() % 2 == 1 {
                let Request::Write {
                    commands: batch_commands,
                    fills,
                } = g.next_request()
                else {
                    panic!("transfer sends writes")
                };
                assert_eq!(batch_commands.len(), batch);
                assert!(fills.iter().all(|f| !f));
                commands.extend(batch_commands);
            }
            for c in &commands {
                let Some(Body::Transfer(t)) = &c.body else {
                    panic!("unexpected command {c:?}")
                };
                assert_ne!(t.from, t.to);
                assert!((1..=100).contains(&t.from) && (1..=100).contains(&t.to));
                assert_eq!(t.amount, TRANSFER_AMOUNT);
                *net.entry((t.from, t.asset.clone())).or_default() -= 1;
                *net.entry((t.to, t.asset.clone())).or_default() += 1;
            }
            assert!(net.values().all(|n| *n == 0), "batch {batch}: {net:?}");
            let ids: HashSet<&str> = commands.iter().map(|c| c.command_id.as_str()).collect();
            assert_eq!(ids.len(), commands.len());
        }
        let p = plan(Workload::Transfer, 40);
        assert_eq!(p.units_per_request(), 40);
        assert_eq!(Workload::Transfer.unit(), "commands");
        assert!(Workload::Transfer.needs_setup());
        assert_eq!("transfer".parse::<Workload>(), Ok(Workload::Transfer));
    }

    #[test]
    fn accounts_are_created_once_and_funded() {
        let plan = plan(Workload::Accounts, 40);
        let cursor = AccountCursor::new();
        let mut ids = Ids::new(1, 0);
        let mut created = Vec::new();
        let mut deposits = 0;
        while let Some(Request::Write { commands, .. }) = cursor.next_request(&plan, &mut ids) {
            for c in commands {
                match c.body {
                    Some(Body::CreateAccount(a)) => created.push(a.account),
                    Some(Body::Deposit(_)) => deposits += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(created, (1..=100).collect::<Vec<u64>>());
        assert_eq!(deposits, 300);
    }

    #[test]
    fn ids_are_distinct_across_streams() {
        let mut a = Ids::new(9, 1);
        let mut b = Ids::new(9, 2);
        assert_ne!(a.hold(), b.hold());
        let body = || Body::CreateAccount(CreateAccount { account: 1 });
        assert_ne!(a.command(body()).command_id, b.command(body()).command_id);
    }
}
