//! The ledger engine: `Ledger` owns the whole state and `apply` turns one
//! command into an outcome, deterministically, without I/O, clocks or floats.
//!
//! Every command runs as one transaction over the ledger's journal (see the
//! `journal` module): its writes are recorded for undo and rolled back if it
//! fails, so a rejected command never has partial effects. Spot commands
//! validate everything first, computing their balance changes into a small
//! stack-allocated list of postings (checked against overflow and
//! overdraft), and only then write them through the journal.
//!
//! Documented choices:
//! - A fill may have zero fees; a fee equal to the whole amount received is
//!   allowed (the payer then receives nothing). Buyer and seller may be the
//!   same account (self-trade prevention is the matching engine's job).
//! - A transfer to the same account is allowed: it is validated like any
//!   transfer (funds must suffice), changes nothing and emits no events.
//! - `Balance` events are emitted only for balances whose value changed, in
//!   the order the command description lists them; a client balance that
//!   changed is "touched" and is listed in `AccountView` from then on.
//! - A closed (released or fully consumed) hold is forgotten, so its id may
//!   be locked again.
//! - A client's `available` never becomes negative through a command, with
//!   one exception: a liquidation whose loss neither the insurance fund nor
//!   auto-deleveraging could absorb leaves the account negative and says so
//!   (`Event::Shortfall`). Such a balance may still be credited (a deposit
//!   reduces the debt); only debits are refused.
//!
//! Perpetual futures (markets, positions, mark prices, funding, margin,
//! liquidation) live in `perp`, `liquidation`, `risk` and `market`.
//!
//! Asserted invariants: a broken one stops the replica with a clear
//! message (an always-on `assert!` or panic, "invariant broken: ...")
//! instead of becoming a rejection or a skipped write on one replica, which
//! would make it diverge from the others. Checked on every command, each at
//! the cost of a compare or of a lookup the code makes anyway:
//! - a posting never makes `locked` negative, or non-zero for a system owner
//!   (`check_postings`), nor a hold's remainder negative (`fill`);
//! - every balance write targets an existing account or asset, and every
//!   asset index names an asset (`journal`, `Ledger::symbol`, `scale`);
//! - a command starts with an empty journal and never fails after its
//!   commit point (`Ledger::transaction`);
//! - amounts are converted at a legal scale, every value the engine makes
//!   is a `Decimal`, a fill's quote is of positive amounts (`amount`);
//! - the dedup table never remembers an id twice, keeps its stamps in order
//!   and indexes every entry it evicts (`dedup`);
//! - a funding round's residue is never negative (`apply_funding`);
//! - a sorted dirty batch names each record once (`take_dirty`).
//!
//! Relations between constants (the limits against `Decimal`'s 96-bit
//! mantissa and `i128` sums, scales, record field widths, the postings of
//! each command against `MAX_POSTINGS`, the inline id size) are `const`
//! asserts, checked at compile time. The whole-state invariants
//! (`check_invariants`: conservation, locked equals the open holds, ...)
//! are checked by `from_records` and after every step of the tests, not per
//! command (their cost is linear in the state).

use rust_decimal::Decimal;
use rustc_hash::FxHashMap;

use crate::amount::{self, AmountError};
use crate::command::{
    AccountId, ApplyResult, Command, CreateAsset, Deposit, Envelope, Event, Fill, FundInsurance,
    HoldId, Lock, MAX_ASSET_SCALE, MAX_DEDUP_WINDOW_MS, MAX_UNITS, MIN_DEDUP_WINDOW_MS, Outcome,
    Owner, Transfer, Wallet, Withdraw, is_valid_asset_symbol,
};
use crate::dedup::{DedupEntry, DedupTable, StoredId, Verdict};
use crate::events::Events;
use crate::journal::{Journal, Posting};
use crate::market::{Market, MarketIdx};
use crate::reject::{
    Field, MAX_DETAIL_TEXT_CHARS, RejectDetail, Rejection, SHOWN_SYMBOL_CHARS, Side, shown,
};
use crate::state::{
    Account, Asset, AssetIdx, Balance, DirtyKey, DirtySet, Hold, SYSTEM_OWNERS, system_slot,
};
use crate::wire::{self, DecodedCommand, Fingerprint};

/// Default idempotency window: 24 hours of leader time.
pub const DEFAULT_DEDUP_WINDOW_MS: u64 = 86_400_000;

/// Engine configuration. Part of the replicated semantics: every replica
/// must run with the same values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerConfig {
    /// The initial idempotency window: how long (leader time) a command
    /// id's verdict is remembered by a new ledger, or by one restored from
    /// records without a meta record. From then
    /// on the window is ledger state, persisted in the meta record and
    /// changed only through the log by `Command::SetDedupWindow`; a
    /// restored ledger keeps its own window whatever this says.
    pub dedup_window_ms: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            dedup_window_ms: DEFAULT_DEDUP_WINDOW_MS,
        }
    }
}

/// The ledger state machine. See the crate docs for the model.
#[derive(Clone, Debug)]
pub struct Ledger {
    /// Interned assets, by `AssetIdx` (creation order).
    pub(crate) assets: Vec<Asset>,
    pub(crate) asset_index: FxHashMap<String, AssetIdx>,
    pub(crate) accounts: FxHashMap<AccountId, Account>,
    pub(crate) holds: FxHashMap<HoldId, Hold>,
    /// Perpetual markets, by `MarketIdx` (creation order on this replica).
    pub(crate) markets: Vec<Market>,
    pub(crate) market_index: FxHashMap<String, MarketIdx>,
    /// Every market index, sorted by market symbol: the order in which
    /// markets are visited wherever the order can reach output.
    pub(crate) market_order: Vec<MarketIdx>,
    /// Spot pairs, by `PairIdx` (creation order on this replica).
    pub(crate) pairs: Vec<crate::pairs::Pair>,
    /// Pair symbol to index (sorted: listing order).
    pub(crate) pair_index: std::collections::BTreeMap<String, crate::pairs::PairIdx>,
    pub(crate) dedup: DedupTable,
    /// Kafka ingest positions and kept failures (the `ingest` module).
    pub(crate) ingest: crate::ingest::IngestTable,
    /// The idempotency window in force (ms of leader time): replicated
    /// state, initially `config.dedup_window_ms`, set by
    /// `Command::SetDedupWindow`, persisted in the meta record.
    pub(crate) dedup_window_ms: u64,
    /// Most command ids remembered: `MAX_DEDUP_ENTRIES` (smaller only in
    /// this crate's tests).
    pub(crate) dedup_max_entries: usize,
    /// The active cluster version (the `version` module): replicated
    /// state, `BASE_CLUSTER_VERSION` until a `SetClusterVersion` entry
    /// raises it, persisted in the meta record.
    pub(crate) cluster_version: u32,
    pub(crate) dirty: DirtySet,
    /// The undo log of the command being applied (empty between commands;
    /// kept for its capacity).
    pub(crate) journal: Journal,
    /// Reused buffer for the canonical command encoding (fingerprints).
    scratch: Vec<u8>,
    /// Where the command being applied comes from (history entries).
    pub(crate) context: crate::history::ApplyContext,
    /// The rules before the account model (`set_legacy_rules`).
    pub(crate) legacy_rules: bool,
    /// Which accounts a mark price may liquidate (derived state, the
    /// `liq_index` module).
    pub(crate) liq: crate::liq_index::LiquidationIndex,
}

/// The rejection explained by `detail` (its code follows from the detail).
pub(crate) fn reject(detail: RejectDetail) -> Rejection {
    Rejection::new(detail)
}

/// Most postings any command makes (a pair fill: two holds, two credits,
/// two fees, two fees in a third asset); `postings!` checks every command
/// against it at compile time.
pub(crate) const MAX_POSTINGS: usize = 8;

// A balance (at most MAX_UNITS) plus a merged delta (at most MAX_POSTINGS
// validated amounts) never overflows i128, so merging cannot wrap and
// `check_postings` sees the true sum (it also adds with `checked_add`).
const _: () = assert!(MAX_UNITS.checked_mul(MAX_POSTINGS as i128 + 1).is_some());

/// A validated fill's amounts, in minor units of their assets.
struct FillUnits {
    base: i128,
    quote: i128,
    /// Base units the buyer pays.
    buyer_fee: i128,
    /// Quote units the seller pays.
    seller_fee: i128,
}

/// The postings of one command, on the stack.
pub(crate) struct Postings {
    items: [Posting; MAX_POSTINGS],
    len: usize,
}

/// `postings!(let mut p = change, ...)` binds `p` to the postings of a
/// command's changes, each `(owner, asset, available delta, locked delta)`
/// with validated amounts (`|x| <= MAX_UNITS`), merged per (owner, asset)
/// in order. The number of changes is fixed by the command's code and
/// checked against `MAX_POSTINGS` at compile time.
macro_rules! postings {
    (let mut $name:ident = $( ($($change:tt)*) ),+ $(,)?) => {
        const _: () = assert!(
            <[()]>::len(&[$( postings!(@unit $($change)*) ),+]) <= $crate::engine::MAX_POSTINGS,
            "a command makes more than MAX_POSTINGS postings"
        );
        // Built in place (no move of the list on the hot path).
        let mut $name = $crate::engine::Postings::new();
        $( $name.add($($change)*); )+
    };
    (@unit $($change:tt)*) => { () };
}
pub(crate) use postings;

impl Postings {
    pub(crate) fn new() -> Self {
        let empty = Posting {
            owner: Owner::External,
            asset: 0,
            available_delta: 0,
            locked_delta: 0,
            after: Balance::default(),
        };
        Postings {
            items: [empty; MAX_POSTINGS],
            len: 0,
        }
    }

    /// Adds a change, merging it into an earlier one for the same balance.
    pub(crate) fn add(
        &mut self,
        owner: Owner,
        asset: AssetIdx,
        available_delta: i128,
        locked_delta: i128,
    ) {
        for p in &mut self.items[..self.len] {
            if p.owner == owner && p.asset == asset {
                // Deltas are validated amounts (|x| <= MAX_UNITS) and at most
                // MAX_POSTINGS merge (see the const assert): no overflow.
                p.available_delta = p.available_delta.saturating_add(available_delta);
                p.locked_delta = p.locked_delta.saturating_add(locked_delta);
                return;
            }
        }
        // `postings!` makes at most MAX_POSTINGS (checked at compile time).
        self.items[self.len] = Posting {
            owner,
            asset,
            available_delta,
            locked_delta,
            after: Balance::default(),
        };
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &Posting> {
        self.items[..self.len].iter()
    }
}

impl Ledger {
    pub fn new(config: LedgerConfig) -> Ledger {
        let mut ledger = Ledger::empty(config);
        // The meta record exists from the start, so a store built only from
        // `drain_dirty`/`take_dirty` batches always holds it.
        ledger.dirty.push(DirtyKey::Meta);
        ledger
    }

    pub(crate) fn empty(config: LedgerConfig) -> Ledger {
        Ledger {
            assets: Vec::new(),
            asset_index: FxHashMap::default(),
            accounts: FxHashMap::default(),
            holds: FxHashMap::default(),
            markets: Vec::new(),
            market_index: FxHashMap::default(),
            market_order: Vec::new(),
            pairs: Vec::new(),
            pair_index: std::collections::BTreeMap::new(),
            dedup: DedupTable::default(),
            ingest: crate::ingest::IngestTable::default(),
            dedup_window_ms: config.dedup_window_ms,
            dedup_max_entries: crate::command::MAX_DEDUP_ENTRIES,
            cluster_version: crate::version::BASE_CLUSTER_VERSION,
            dirty: DirtySet::default(),
            journal: Journal::default(),
            scratch: Vec::new(),
            context: crate::history::ApplyContext::default(),
            legacy_rules: false,
            liq: crate::liq_index::LiquidationIndex::default(),
        }
    }

    /// Applies one command at leader-stamped time `now_ms`. Never panics on any input.
    ///
    /// Order: an invalid command id is rejected and not remembered, and so
    /// is a command that needs a newer cluster version than the active one
    /// (`FeatureNotActive`, see the `version` module). A live
    /// remembered id with the same command (same fingerprint: see
    /// `wire::fingerprint`) is a retry and changes nothing: it returns
    /// `duplicate: true` with the remembered verdict only, i.e.
    /// `Applied { events: vec![] }` for an applied command (its events were
    /// delivered with the first reply) or the identical `Rejection` for a
    /// rejected one. A live id with a different command is
    /// `CommandIdReused` (not remembered, changes nothing). If the table
    /// would still hold `MAX_DEDUP_ENTRIES` ids after evicting the expired
    /// ones, the command (unless `SetDedupWindow`) is refused with
    /// `DedupTableFull` (not remembered, changes nothing, not even the dedup
    /// clock). Otherwise the dedup clock advances, expired entries are
    /// evicted, the command is executed and its verdict (applied, or rejected with code and typed
    /// detail) is remembered.
    ///
    /// This entry point computes the fingerprint by encoding the command
    /// (`wire`); replicas applying the log use [`Ledger::apply_decoded`],
    /// which takes the fingerprint the decoder computed from the log bytes.
    pub fn apply(&mut self, envelope: &Envelope, now_ms: u64) -> ApplyResult {
        let fingerprint = wire::fingerprint(&mut self.scratch, &envelope.command);
        self.apply_with(envelope, fingerprint, now_ms, true)
    }

    /// Like [`Ledger::apply`] — identical state effects, verdicts, dedup
    /// bookkeeping and dirty records — but builds no events: an applied
    /// command returns `Applied { events: vec![] }` and allocates nothing
    /// for its outcome. For replicas that apply every entry and discard
    /// the outcome (followers); a leader answering clients uses `apply`.
    pub fn apply_quiet(&mut self, envelope: &Envelope, now_ms: u64) -> ApplyResult {
        let fingerprint = wire::fingerprint(&mut self.scratch, &envelope.command);
        self.apply_with(envelope, fingerprint, now_ms, false)
    }

    /// Applies a command decoded from the log (`wire::decode_envelope`),
    /// with the fingerprint of its body bytes: the same as [`Ledger::apply`]
    /// (`detailed`) or [`Ledger::apply_quiet`], without encoding the command
    /// again.
    pub fn apply_decoded(
        &mut self,
        command: &DecodedCommand,
        now_ms: u64,
        detailed: bool,
    ) -> ApplyResult {
        self.apply_with(&command.envelope, command.fingerprint, now_ms, detailed)
    }

    fn apply_with(
        &mut self,
        envelope: &Envelope,
        fingerprint: Fingerprint,
        now_ms: u64,
        detailed: bool,
    ) -> ApplyResult {
        let id = &envelope.command_id;
        if !id.is_valid() {
            return ApplyResult {
                outcome: Outcome::Rejected(reject(RejectDetail::MalformedCommandId {
                    id: shown(&id.0, MAX_DETAIL_TEXT_CHARS),
                })),
                duplicate: false,
            };
        }
        // A command of a feature the cluster has not switched on changes
        // nothing and is not remembered (a retry after finalization applies).
        if let Err(rejection) = self.check_feature_active(&envelope.command) {
            return ApplyResult {
                outcome: Outcome::Rejected(rejection),
                duplicate: false,
            };
        }
        let id_bytes = id.0.as_bytes();
        let now_ms = now_ms.max(self.dedup.max_seen_now_ms);
        let horizon_ms = now_ms.saturating_sub(self.dedup_window_ms);
        if let Some(entry) = self.dedup.live(id_bytes, horizon_ms) {
            if entry.fingerprint() == fingerprint {
                return ApplyResult {
                    outcome: entry.verdict.outcome(),
                    duplicate: true,
                };
            }
            return ApplyResult {
                outcome: Outcome::Rejected(reject(RejectDetail::CommandIdReused {
                    id: id.0.clone(),
                })),
                duplicate: false,
            };
        }
        // Checked before the clock moves or anything is evicted, so a
        // refused command changes nothing at all.
        if self.dedup.len() >= self.dedup_max_entries
            && self.dedup.len() - self.dedup.expired_count(horizon_ms) >= self.dedup_max_entries
            && !matches!(envelope.command, Command::SetDedupWindow(_))
        {
            return ApplyResult {
                outcome: Outcome::Rejected(reject(RejectDetail::DedupTableFull {
                    entries: self.dedup.len() as u64,
                    window_ms: self.dedup_window_ms,
                })),
                duplicate: false,
            };
        }
        if self.dedup.advance_clock(now_ms) {
            self.dirty.push(DirtyKey::Meta);
        }
        self.dedup.evict_before(horizon_ms);
        self.context.time_ms = now_ms;
        self.context.command_id.clear();
        self.context.command_id.push_str(&id.0);
        let mut events = Events::new(detailed);
        let outcome = match self.execute(&envelope.command, now_ms, &mut events) {
            Ok(()) => Outcome::Applied {
                events: events.into_vec(),
            },
            // Events emitted before a (perpetuals) rollback are dropped.
            Err(rejection) => Outcome::Rejected(rejection),
        };
        let entry = DedupEntry::new(
            StoredId::new(id_bytes),
            now_ms,
            fingerprint,
            Verdict::of(&outcome),
        );
        self.dedup.insert(entry);
        ApplyResult {
            outcome,
            duplicate: false,
        }
    }

    /// Executes one command as a transaction (see the `journal` module):
    /// all of its writes, or none.
    fn execute(
        &mut self,
        command: &Command,
        now_ms: u64,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let result = self.execute_command(command, now_ms, events);
        // Bounded dirty notes between mark prices (see `liq_index`).
        if self.liq.dirty.len().max(self.liq.iso_dirty.len()) > crate::liq_index::MAX_DIRTY_RISK {
            self.refresh_liquidation_index();
        }
        result
    }

    fn execute_command(
        &mut self,
        command: &Command,
        now_ms: u64,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        self.transaction(|ledger, journal| match command {
            Command::CreateAsset(c) => ledger.create_asset(c, events),
            Command::CreateAccount(c) => ledger.create_account(c.account, events),
            Command::Deposit(c) => ledger.deposit(journal, c, events),
            Command::Withdraw(c) => ledger.withdraw(journal, c, events),
            Command::Lock(c) => ledger.lock(journal, c, events),
            Command::Release(c) => ledger.release(journal, c.hold, events),
            Command::Fill(c) => ledger.fill(journal, c, events),
            Command::Transfer(c) => ledger.transfer(journal, c, events),
            Command::CreateMarket(c) => ledger.create_market(c, events),
            Command::SetMarketPaused(c) => {
                ledger.set_market_paused(journal, &c.market, c.paused, events)
            }
            Command::SetMarkPrice(c) => {
                ledger.set_mark_price(journal, &c.market, c.price, now_ms, events)
            }
            Command::ApplyFunding(c) => ledger.apply_funding(journal, c, events),
            Command::PerpFill(c) => ledger.perp_fill(journal, c, events),
            Command::SetDedupWindow(c) => ledger.set_dedup_window(c.window_ms, events),
            Command::FundInsurance(c) => ledger.fund_insurance(journal, c, events),
            Command::OpenAccount(c) => ledger.open_account(c, events),
            Command::SetWithdrawAllowed(c) => ledger.set_withdraw_allowed(c, events),
            Command::SetTransferGrant(c) => ledger.set_transfer_grant(c, events),
            Command::WalletTransfer(c) => ledger.wallet_transfer(journal, c, events),
            Command::WalletDeposit(c) => ledger.wallet_deposit(journal, c, events),
            Command::WalletWithdraw(c) => ledger.wallet_withdraw(journal, c, events),
            Command::WithdrawInsurance(c) => ledger.withdraw_insurance(journal, c, events),
            Command::SweepFees(c) => ledger.sweep_fees(journal, c, events),
            Command::CreatePair(c) => ledger.create_pair(c, events),
            Command::PairFill(c) => ledger.pair_fill(journal, c, events),
            Command::ReleasePart(c) => ledger.release_part(journal, c, events),
            Command::SetIsolated(c) => ledger.set_isolated(journal, c, events),
            Command::AdjustIsolatedMargin(c) => ledger.adjust_isolated_margin(journal, c, events),
            Command::WalletLock(c) => ledger.wallet_lock(journal, c, events),
            Command::PerpOrderFill(c) => ledger.perp_order_fill(journal, c, events),
            Command::AssertBalance(c) => ledger.assert_balance(c),
            Command::CreateDatedFuture(c) => ledger.create_dated_future(c, events),
            Command::SettleFuture(c) => ledger.settle_future(journal, c, now_ms, events),
            Command::CreateOption(c) => ledger.create_option(c, events),
            Command::ExerciseOption(c) => ledger.exercise_option(journal, c, now_ms, events),
            Command::ApplyOptionFunding(c) => ledger.apply_option_funding(journal, c, events),
            Command::ApplyPremiumFunding(c) => ledger.apply_premium_funding(journal, c, events),
            Command::CreateInverseMarket(c) => ledger.create_inverse_market(c, events),
            Command::SetOptionMark(c) => ledger.set_option_mark(journal, c, now_ms, events),
            Command::SetFundingClamp(c) => ledger.set_funding_clamp(journal, c),
        })
    }

    /// Applies the rules of the engine before the account model (true) or
    /// the current ones (false, the default). The rules of two commands
    /// that existed before changed: a perp fill must pay its cost to open
    /// (see the `perp` module) instead of the IM at the marks, and
    /// `Withdraw`, `Transfer` and `FundInsurance` move at most the
    /// transferable amount out of a spot wallet that is an account's
    /// collateral. Not replicated state: the shell sets it from the cluster
    /// version in force at each log entry, so every replica interprets an
    /// entry under the same rules (a log written by an older build replays
    /// with `true`).
    pub fn set_legacy_rules(&mut self, legacy: bool) {
        self.legacy_rules = legacy;
    }

    /// The idempotency window in force, in ms of leader time.
    pub fn dedup_window_ms(&self) -> u64 {
        self.dedup_window_ms
    }

    /// Command ids the idempotency table remembers now (live or expired
    /// but not yet evicted).
    pub fn dedup_entries(&self) -> usize {
        self.dedup.len()
    }

    /// Approximate bytes the idempotency table holds (its ring and index,
    /// spare capacity included; long ids and rejection details not counted).
    pub fn dedup_approx_bytes(&self) -> usize {
        self.dedup.approx_bytes()
    }

    /// Most command ids the idempotency table remembers (`MAX_DEDUP_ENTRIES`).
    pub fn dedup_max_entries(&self) -> usize {
        self.dedup_max_entries
    }

    // ----- commands -------------------------------------------------------

    fn set_dedup_window(&mut self, window_ms: u64, events: &mut Events) -> Result<(), Rejection> {
        if !(MIN_DEDUP_WINDOW_MS..=MAX_DEDUP_WINDOW_MS).contains(&window_ms) {
            return Err(reject(RejectDetail::DedupWindowOutOfRange { window_ms }));
        }
        // Takes effect from the next command: this command's own horizon
        // was computed (and its eviction done) with the old window.
        self.dedup_window_ms = window_ms;
        self.dirty.push(DirtyKey::Meta);
        events.emit(|| Event::DedupWindowSet { window_ms });
        Ok(())
    }

    fn create_asset(&mut self, c: &CreateAsset, events: &mut Events) -> Result<(), Rejection> {
        let (symbol, scale) = (c.symbol.as_str(), c.scale);
        if !is_valid_asset_symbol(symbol) {
            return Err(reject(RejectDetail::MalformedAssetSymbol {
                symbol: shown(symbol, SHOWN_SYMBOL_CHARS),
            }));
        }
        if scale > MAX_ASSET_SCALE {
            return Err(reject(RejectDetail::AssetScaleTooLarge {
                asset: symbol.to_string(),
                scale,
            }));
        }
        if self.asset_index.contains_key(symbol) {
            return Err(reject(RejectDetail::AssetExists {
                asset: symbol.to_string(),
            }));
        }
        let Ok(idx) = AssetIdx::try_from(self.assets.len()) else {
            return Err(reject(RejectDetail::TooManyAssets));
        };
        self.assets.push(Asset {
            symbol: symbol.to_string(),
            scale,
            system: [Balance::default(); 3],
            system_listed: [false; 3],
        });
        self.asset_index.insert(symbol.to_string(), idx);
        self.dirty.push(DirtyKey::Asset(idx));
        if let Some(asset) = self.assets.last_mut() {
            for (owner, listed) in SYSTEM_OWNERS.into_iter().zip(&mut asset.system_listed) {
                self.dirty.note_balance(listed, owner, idx);
            }
        }
        events.emit(|| Event::AssetCreated {
            symbol: symbol.to_string(),
            scale,
        });
        Ok(())
    }

    fn create_account(&mut self, account: AccountId, events: &mut Events) -> Result<(), Rejection> {
        if account == 0 {
            return Err(reject(RejectDetail::ReservedAccount));
        }
        if self.accounts.contains_key(&account) {
            return Err(reject(RejectDetail::AccountExists { account }));
        }
        self.accounts.insert(account, Account::default());
        self.dirty.push(DirtyKey::Account(account));
        events.emit(|| Event::AccountCreated { account });
        Ok(())
    }

    fn deposit(
        &mut self,
        journal: &mut Journal,
        c: &Deposit,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let (account, asset, amount) = (c.account, c.asset.as_str(), c.amount);
        self.check_account(account)?;
        let idx = self.asset_idx(asset)?;
        let units = self.positive_units(amount, idx, Field::Amount)?;
        postings!(let mut postings =
            (Owner::Account(account), idx, units, 0),
            (Owner::External, idx, -units, 0),
        );
        self.check_postings(&mut postings)?;
        events.reserve(2);
        self.commit_postings(journal, &postings, events);
        Ok(())
    }

    fn withdraw(
        &mut self,
        journal: &mut Journal,
        c: &Withdraw,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        self.check_account(c.account)?;
        self.check_may_withdraw(c.account)?;
        let to = Owner::External;
        self.debit_available(journal, c.account, &c.asset, c.amount, to, events)
    }

    fn fund_insurance(
        &mut self,
        journal: &mut Journal,
        c: &FundInsurance,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let to = Owner::Insurance;
        self.debit_available(journal, c.account, &c.asset, c.amount, to, events)
    }

    /// Moves `amount` of `asset` from a client account's `available` to
    /// the system owner `to` (External for a withdrawal, Insurance for
    /// funding the insurance fund), after the same checks in the same order.
    fn debit_available(
        &mut self,
        journal: &mut Journal,
        account: AccountId,
        asset: &str,
        amount: Decimal,
        to: Owner,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        assert!(
            !matches!(to, Owner::Account(_)),
            "debit_available pays a system owner"
        );
        self.check_account(account)?;
        let idx = self.asset_idx(asset)?;
        let units = self.positive_units(amount, idx, Field::Amount)?;
        self.check_available(account, idx, units)?;
        self.check_transferable(account, Wallet::Spot, idx, units)?;
        postings!(let mut postings =
            (Owner::Account(account), idx, -units, 0),
            (to, idx, units, 0),
        );
        self.check_postings(&mut postings)?;
        events.reserve(3);
        self.commit_postings(journal, &postings, events);
        if to == Owner::Insurance {
            self.emit_system_change(Owner::Insurance, idx, units, events);
        }
        Ok(())
    }

    fn lock(
        &mut self,
        journal: &mut Journal,
        c: &Lock,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let (hold, account, asset, amount) = (c.hold, c.account, c.asset.as_str(), c.amount);
        self.check_account(account)?;
        let idx = self.asset_idx(asset)?;
        let units = self.positive_units(amount, idx, Field::Amount)?;
        if self.holds.contains_key(&hold) {
            return Err(reject(RejectDetail::HoldExists { hold }));
        }
        self.check_available(account, idx, units)?;
        postings!(let mut postings = (Owner::Account(account), idx, -units, units));
        self.check_postings(&mut postings)?;
        events.reserve(3);
        self.commit_postings(journal, &postings, events);
        let open = Hold {
            account,
            wallet: Wallet::Spot,
            asset: idx,
            amount: units,
            remaining: units,
        };
        self.write_hold(journal, hold, Some(open));
        events.emit(|| self.hold_event(hold, account, idx, units, false));
        Ok(())
    }

    fn release(
        &mut self,
        journal: &mut Journal,
        hold: HoldId,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let Some(&open) = self.holds.get(&hold) else {
            return Err(reject(RejectDetail::HoldNotOpen { hold }));
        };
        postings!(let mut postings = (
            Owner::wallet(open.account, open.wallet),
            open.asset,
            open.remaining,
            -open.remaining,
        ));
        self.check_postings(&mut postings)?;
        events.reserve(3);
        self.commit_postings(journal, &postings, events);
        self.write_hold(journal, hold, None);
        events.emit(|| self.hold_event(hold, open.account, open.asset, 0, true));
        Ok(())
    }

    fn transfer(
        &mut self,
        journal: &mut Journal,
        c: &Transfer,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let (from, to, asset, amount) = (c.from, c.to, c.asset.as_str(), c.amount);
        self.check_account(from)?;
        self.check_account(to)?;
        let idx = self.asset_idx(asset)?;
        let units = self.positive_units(amount, idx, Field::Amount)?;
        self.check_available(from, idx, units)?;
        self.check_family(from, to)?;
        if from != to {
            self.check_transferable(from, Wallet::Spot, idx, units)?;
        }
        postings!(let mut postings =
            (Owner::Account(from), idx, -units, 0),
            (Owner::Account(to), idx, units, 0),
        );
        self.check_postings(&mut postings)?;
        events.reserve(2);
        self.commit_postings(journal, &postings, events);
        Ok(())
    }

    fn fill(
        &mut self,
        journal: &mut Journal,
        c: &Fill,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let (buy, sell) = self.fill_holds(c)?;
        let (quote, base) = (buy.asset, sell.asset);
        let units = self.fill_units(c, quote, base)?;
        self.check_hold_covers(Side::Buy, c.buy_hold, &buy, units.quote)?;
        self.check_hold_covers(Side::Sell, c.sell_hold, &sell, units.base)?;
        let (buyer, seller) = (Owner::Account(buy.account), Owner::Account(sell.account));
        postings!(let mut postings =
            (buyer, quote, 0, -units.quote),
            (buyer, base, units.base - units.buyer_fee, 0),
            (seller, base, 0, -units.base),
            (seller, quote, units.quote - units.seller_fee, 0),
            (Owner::Fees, base, units.buyer_fee, 0),
            (Owner::Fees, quote, units.seller_fee, 0),
        );
        self.check_postings(&mut postings)?;

        // Everything validated: mutate.
        events.reserve(1 + MAX_POSTINGS + 2);
        let (base_scale, quote_scale) = (self.scale(base), self.scale(quote));
        events.emit(|| Event::Fill {
            buyer: buy.account,
            seller: sell.account,
            base_asset: self.symbol(base).to_string(),
            quote_asset: self.symbol(quote).to_string(),
            base_amount: amount::to_decimal(units.base, base_scale),
            quote_amount: amount::to_decimal(units.quote, quote_scale),
            buyer_fee: amount::to_decimal(units.buyer_fee, base_scale),
            seller_fee: amount::to_decimal(units.seller_fee, quote_scale),
        });
        self.commit_postings(journal, &postings, events);
        let taken = [
            (c.buy_hold, buy, units.quote),
            (c.sell_hold, sell, units.base),
        ];
        for (hold, open, taken) in taken {
            let remaining = open.remaining - taken;
            assert!(
                remaining >= 0,
                "invariant broken: hold {hold} would have {remaining} left"
            );
            let left = Hold { remaining, ..open };
            self.write_hold(journal, hold, (remaining > 0).then_some(left));
            events.emit(|| {
                self.hold_event(hold, open.account, open.asset, remaining, remaining == 0)
            });
        }
        Ok(())
    }

    /// A fill's stateless checks (positive price and base amount, fees not
    /// negative), then its two open holds, which must hold different assets
    /// (the buy hold the quote, the sell hold the base).
    fn fill_holds(&self, c: &Fill) -> Result<(Hold, Hold), Rejection> {
        for (field, value) in [(Field::Price, c.price), (Field::BaseAmount, c.base_amount)] {
            if !amount::is_positive(value) {
                return Err(reject(RejectDetail::NotPositive { field, value }));
            }
        }
        for (field, value) in [
            (Field::BuyerFee, c.buyer_fee),
            (Field::SellerFee, c.seller_fee),
        ] {
            if amount::is_negative(value) {
                return Err(reject(RejectDetail::Negative { field, value }));
            }
        }
        let Some(&buy) = self.holds.get(&c.buy_hold) else {
            return Err(reject(RejectDetail::FillHoldNotOpen {
                side: Side::Buy,
                hold: c.buy_hold,
            }));
        };
        let Some(&sell) = self.holds.get(&c.sell_hold) else {
            return Err(reject(RejectDetail::FillHoldNotOpen {
                side: Side::Sell,
                hold: c.sell_hold,
            }));
        };
        for (side, hold, open) in [
            (Side::Buy, c.buy_hold, &buy),
            (Side::Sell, c.sell_hold, &sell),
        ] {
            if open.wallet != Wallet::Spot {
                return Err(reject(RejectDetail::HoldNotSpot { side, hold }));
            }
        }
        if buy.asset == sell.asset {
            return Err(reject(RejectDetail::HoldsSameAsset {
                buy_hold: c.buy_hold,
                sell_hold: c.sell_hold,
                asset: self.symbol(sell.asset).to_string(),
            }));
        }
        Ok((buy, sell))
    }

    /// A fill's amounts in minor units: the base at the base scale, the
    /// quote (`base * price`, exact) at the quote scale, and the fees, each
    /// at most what its payer receives.
    fn fill_units(
        &self,
        c: &Fill,
        quote: AssetIdx,
        base: AssetIdx,
    ) -> Result<FillUnits, Rejection> {
        let (base_amount, price) = (c.base_amount, c.price);
        let base_units = self.positive_units(base_amount, base, Field::BaseAmount)?;
        let buyer_fee = self.fee_units(c.buyer_fee, base, Field::BuyerFee)?;
        let seller_fee = self.fee_units(c.seller_fee, quote, Field::SellerFee)?;
        let (base_scale, quote_scale) = (self.scale(base), self.scale(quote));
        let quote_units = amount::quote_units(base_units, base_scale, price, quote_scale).map_err(
            |e| match e {
                AmountError::TooPrecise => reject(RejectDetail::QuoteNotWhole {
                    base_amount,
                    base: self.symbol(base).to_string(),
                    price,
                    quote: self.symbol(quote).to_string(),
                    quote_scale,
                }),
                AmountError::TooLarge => reject(RejectDetail::NotionalTooLarge {
                    amount: base_amount,
                    price,
                }),
            },
        )?;
        if buyer_fee > base_units {
            return Err(reject(RejectDetail::FeeExceedsReceived {
                field: Field::BuyerFee,
                fee: c.buyer_fee,
                received: base_amount,
            }));
        }
        if seller_fee > quote_units {
            return Err(reject(RejectDetail::FeeExceedsReceived {
                field: Field::SellerFee,
                fee: c.seller_fee,
                received: amount::to_decimal(quote_units, quote_scale),
            }));
        }
        Ok(FillUnits {
            base: base_units,
            quote: quote_units,
            buyer_fee,
            seller_fee,
        })
    }

    // ----- validation helpers ---------------------------------------------

    /// `HoldInsufficient` unless the `side` hold `id` still has `taken`
    /// minor units of its asset.
    pub(crate) fn check_hold_covers(
        &self,
        side: Side,
        id: HoldId,
        open: &Hold,
        taken: i128,
    ) -> Result<(), Rejection> {
        if open.remaining >= taken {
            return Ok(());
        }
        let scale = self.scale(open.asset);
        Err(reject(RejectDetail::HoldShort {
            side,
            hold: id,
            remaining: amount::to_decimal(open.remaining, scale),
            asset: self.symbol(open.asset).to_string(),
            taken: amount::to_decimal(taken, scale),
        }))
    }

    pub(crate) fn check_account(&self, account: AccountId) -> Result<(), Rejection> {
        if account == 0 {
            return Err(reject(RejectDetail::ReservedAccount));
        }
        if !self.accounts.contains_key(&account) {
            return Err(reject(RejectDetail::UnknownAccount { account }));
        }
        Ok(())
    }

    pub(crate) fn asset_idx(&self, symbol: &str) -> Result<AssetIdx, Rejection> {
        self.asset_index.get(symbol).copied().ok_or_else(|| {
            reject(RejectDetail::UnknownAsset {
                asset: shown(symbol, SHOWN_SYMBOL_CHARS),
            })
        })
    }

    /// The asset with index `idx`. Indices are made only by `create_asset`
    /// and `from_records`, so an unknown one is a broken invariant: it stops
    /// the replica rather than yield a wrong scale or a record under a wrong
    /// key.
    fn interned(&self, idx: AssetIdx) -> &Asset {
        match self.assets.get(idx as usize) {
            Some(asset) => asset,
            None => panic!("invariant broken: unknown asset index {idx}"),
        }
    }

    pub(crate) fn symbol(&self, idx: AssetIdx) -> &str {
        &self.interned(idx).symbol
    }

    pub(crate) fn scale(&self, idx: AssetIdx) -> u32 {
        self.interned(idx).scale
    }

    /// `amount` in minor units of `asset`; must be positive.
    pub(crate) fn positive_units(
        &self,
        amount: Decimal,
        asset: AssetIdx,
        field: Field,
    ) -> Result<i128, Rejection> {
        if !amount::is_positive(amount) {
            return Err(reject(RejectDetail::NotPositive {
                field,
                value: amount,
            }));
        }
        self.units(amount, asset, field)
    }

    /// A fee in minor units of `asset`; may be zero, never negative.
    pub(crate) fn fee_units(
        &self,
        fee: Decimal,
        asset: AssetIdx,
        field: Field,
    ) -> Result<i128, Rejection> {
        if amount::is_negative(fee) {
            return Err(reject(RejectDetail::Negative { field, value: fee }));
        }
        self.units(fee, asset, field)
    }

    pub(crate) fn units(
        &self,
        amount: Decimal,
        asset: AssetIdx,
        field: Field,
    ) -> Result<i128, Rejection> {
        let scale = self.scale(asset);
        amount::to_units(amount, scale).map_err(|e| match e {
            AmountError::TooPrecise => reject(RejectDetail::TooPrecise {
                field,
                value: amount,
                scale,
                asset: self.symbol(asset).to_string(),
            }),
            AmountError::TooLarge => reject(RejectDetail::TooLarge {
                field,
                value: amount,
                asset: self.symbol(asset).to_string(),
            }),
        })
    }

    /// `InsufficientFunds` unless `account` has `units` of `asset` available.
    pub(crate) fn check_available(
        &self,
        account: AccountId,
        asset: AssetIdx,
        units: i128,
    ) -> Result<(), Rejection> {
        let available = self.balance_units(Owner::Account(account), asset).available;
        if available < units {
            let scale = self.scale(asset);
            return Err(reject(RejectDetail::AvailableShort {
                account,
                available: amount::to_decimal(available, scale),
                asset: self.symbol(asset).to_string(),
                needed: amount::to_decimal(units, scale),
            }));
        }
        Ok(())
    }

    // ----- balances -------------------------------------------------------

    /// The current balance in minor units (zero if never touched or unknown).
    pub(crate) fn balance_units(&self, owner: Owner, asset: AssetIdx) -> Balance {
        match (owner.client(), system_slot(owner)) {
            (Some((id, wallet)), _) => self
                .accounts
                .get(&id)
                .and_then(|account| account.get(wallet, asset))
                .copied()
                .unwrap_or_default(),
            (_, Some(slot)) => self
                .assets
                .get(asset as usize)
                .map(|a| a.system[slot])
                .unwrap_or_default(),
            (_, None) => Balance::default(),
        }
    }

    /// Computes every posting's resulting balance and checks it: within
    /// `±MAX_UNITS` (else `AmountTooLarge`), client `available` not negative
    /// (`InsufficientFunds`). Asserts that `locked` stays non-negative (zero
    /// for system owners): the command checks make anything else unreachable.
    pub(crate) fn check_postings(&self, postings: &mut Postings) -> Result<(), Rejection> {
        for i in 0..postings.len {
            let p = postings.items[i];
            let current = self.balance_units(p.owner, p.asset);
            let available = current.available.checked_add(p.available_delta);
            let locked = current.locked.checked_add(p.locked_delta);
            let (Some(available), Some(locked)) = (available, locked) else {
                return Err(self.too_large(p.owner, p.asset));
            };
            if !amount::in_range(available) || !amount::in_range(locked) {
                return Err(self.too_large(p.owner, p.asset));
            }
            let is_client = p.owner.is_client();
            if is_client && available < 0 && p.available_delta < 0 {
                return Err(reject(RejectDetail::WouldGoNegative {
                    owner: p.owner,
                    asset: self.symbol(p.asset).to_string(),
                }));
            }
            // Holds cover every unlock (`check_hold_covers`, `release`) and
            // `locked` equals the open holds: a negative or system `locked`
            // is a broken invariant, never a rejection.
            assert!(
                locked >= 0 && (is_client || locked == 0),
                "invariant broken: {:?} {} locked would become {locked}",
                p.owner,
                self.symbol(p.asset)
            );
            postings.items[i].after = Balance { available, locked };
        }
        Ok(())
    }

    pub(crate) fn too_large(&self, owner: Owner, asset: AssetIdx) -> Rejection {
        reject(RejectDetail::BalanceTooLarge {
            owner,
            asset: self.symbol(asset).to_string(),
        })
    }

    /// Writes checked postings through the journal; each change emits a
    /// `Balance` event. A spot command calls it once everything is checked,
    /// so this is its commit point: nothing after it can fail (see the
    /// `journal` module).
    pub(crate) fn commit_postings(
        &mut self,
        journal: &mut Journal,
        postings: &Postings,
        events: &mut Events,
    ) {
        journal.commit_point();
        for p in postings.iter() {
            if p.available_delta != 0 || p.locked_delta != 0 {
                self.write_balance(journal, p, events);
            }
        }
    }

    pub(crate) fn hold_event(
        &self,
        hold: HoldId,
        account: AccountId,
        asset: AssetIdx,
        remaining: i128,
        closed: bool,
    ) -> Event {
        Event::Hold {
            hold,
            account,
            asset: self.symbol(asset).to_string(),
            remaining: amount::to_decimal(remaining, self.scale(asset)),
            closed,
        }
    }
}

#[cfg(test)]
mod dedup_bound_tests {
    use super::*;
    use crate::command::{CommandId, CreateAccount, CreateAsset, Deposit, SetDedupWindow};

    fn envelope(id: &str, command: Command) -> Envelope {
        Envelope {
            command_id: CommandId(id.to_string()),
            command,
        }
    }

    fn deposit(amount: u32) -> Command {
        Command::Deposit(Deposit {
            account: 1,
            asset: "BTC".into(),
            amount: Decimal::from(amount),
        })
    }

    #[test]
    fn at_the_dedup_bound_a_new_command_is_refused_with_dedup_table_full_and_changes_nothing() {
        let mut ledger = Ledger::new(LedgerConfig {
            dedup_window_ms: 10_000,
        });
        ledger.dedup_max_entries = 3;
        let setup = [
            Command::CreateAsset(CreateAsset {
                symbol: "BTC".into(),
                scale: 8,
            }),
            Command::CreateAccount(CreateAccount { account: 1 }),
            deposit(1),
        ];
        for (i, command) in setup.into_iter().enumerate() {
            let r = ledger.apply(&envelope(&format!("setup-{i}"), command), 0);
            assert!(matches!(r.outcome, Outcome::Applied { .. }), "{r:?}");
        }
        assert_eq!(ledger.dedup_entries(), 3);
        let before = ledger.state_hash();

        let full = ledger.apply(&envelope("new", deposit(5)), 1);
        let Outcome::Rejected(rejection) = &full.outcome else {
            panic!("expected DEDUP_TABLE_FULL, got {full:?}");
        };
        assert_eq!(rejection.code.as_str(), "DEDUP_TABLE_FULL");
        assert_eq!(
            rejection.detail.to_string(),
            "the idempotency table is full (3 command ids remembered within the 10000 ms \
             window): retry later, or shrink the window (set-dedup-window)"
        );
        assert!(!full.duplicate);
        // Nothing changed and nothing was remembered: the same id is refused again.
        assert_eq!(ledger.dedup_entries(), 3);
        assert_eq!(ledger.state_hash(), before);
        let again = ledger.apply(&envelope("new", deposit(5)), 1);
        assert_eq!(again.outcome, full.outcome);
        // A retry of a remembered command still gets its verdict.
        let retry = ledger.apply(&envelope("setup-2", deposit(1)), 1);
        assert!(retry.duplicate, "{retry:?}");

        // The operator can always shrink the window; once the old ids
        // expire out of it, new commands are accepted again.
        let shrink = Command::SetDedupWindow(SetDedupWindow { window_ms: 1_000 });
        let r = ledger.apply(&envelope("shrink", shrink), 2);
        assert!(matches!(r.outcome, Outcome::Applied { .. }), "{r:?}");
        let later = ledger.apply(&envelope("new", deposit(5)), 5_000);
        assert!(
            matches!(later.outcome, Outcome::Applied { .. }),
            "{later:?}"
        );
        assert!(ledger.dedup_entries() <= 3);
    }
}
