//! Property tests over random account-model histories: deposits and
//! withdrawals into every wallet, transfers between wallets and between
//! masters, sub-accounts and outsiders (legacy and wallet transfers),
//! grants given and revoked, withdrawal rights, perpetual fills and mark
//! moves on margin-wallet and spot-collateral accounts, insurance top-ups
//! and payouts, fee sweeps, locks and partial releases, isolated margin
//! switched on and off and moved in and out (isolated fills, funding and
//! liquidations included), open-order margin locked in margin wallets
//! (released in part, or by the liquidation that cancels the orders).
//!
//! After every command: all invariants; the conservation report sums every
//! asset to zero over all owners and wallets; a rejected command changes no
//! record but its dedup entry. Against a model of the sub-account rules
//! (parents, grants, withdrawal rights): an applied transfer between two
//! accounts is one the rules allow, and a `TRANSFER_NOT_ALLOWED` /
//! `WITHDRAW_NOT_ALLOWED` refusal is one they forbid (so no sequence of
//! commands bypasses them, and the rules refuse nothing else). Out of a
//! collateral wallet: an applied movement never exceeded the transferable
//! amount measured just before it, an `EXCEEDS_TRANSFERABLE` refusal did,
//! and after an applied one the wallet plus unrealized losses still cover
//! the initial margin. The drained dirty batches, applied in turn, equal
//! the full records (wallet balances, settings, pairs, history entries
//! written and dropped), and a rebuild from them has the same state hash.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use proptest::prelude::*;
use tally_ledger::*;

/// (account, parent, collateral): master 1 with subs 11, 12, 13; master 2
/// (made by the legacy `CreateAccount`: spot collateral) with sub 21;
/// top-level 3.
const ACCOUNTS: [(AccountId, AccountId, Wallet); 6] = [
    (1, 0, Wallet::Margin),
    (11, 1, Wallet::Margin),
    (12, 1, Wallet::Spot),
    (13, 1, Wallet::Margin),
    (21, 2, Wallet::Margin),
    (3, 0, Wallet::Margin),
];
const ALL: [AccountId; 7] = [1, 11, 12, 13, 2, 21, 3];

#[derive(Clone, Debug)]
enum Op {
    Deposit(usize, Wallet, u64),
    Withdraw(usize, Wallet, u64),
    LegacyWithdraw(usize, u64),
    Transfer(usize, Wallet, usize, Wallet, u64),
    LegacyTransfer(usize, usize, u64),
    Grant(usize, usize, bool),
    AllowWithdraw(usize, bool),
    PerpFill(usize, usize, u32, i32),
    Mark(i32),
    FundInsurance(usize, u64),
    WithdrawInsurance(usize, Wallet, u64),
    SweepFees(usize, u64),
    Lock(u64, usize, u64),
    ReleasePart(u64, u64),
    Isolate(usize, bool),
    /// Open-order margin locked in the margin wallet.
    MarginLock(u64, usize, u64),
    /// Isolated margin moved in (> 0) or out (< 0).
    AdjustIsolated(usize, i64),
}

fn wallet() -> impl Strategy<Value = Wallet> {
    prop::sample::select(Wallet::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    let a = || 0..ALL.len();
    let x = || 1u64..3_000;
    prop_oneof![
        3 => (a(), wallet(), x()).prop_map(|(a, w, x)| Op::Deposit(a, w, x)),
        2 => (a(), wallet(), x()).prop_map(|(a, w, x)| Op::Withdraw(a, w, x)),
        1 => (a(), x()).prop_map(|(a, x)| Op::LegacyWithdraw(a, x)),
        8 => (a(), wallet(), a(), wallet(), x()).prop_map(|(f, fw, t, tw, x)| Op::Transfer(f, fw, t, tw, x)),
        2 => (a(), a(), x()).prop_map(|(f, t, x)| Op::LegacyTransfer(f, t, x)),
        3 => (a(), a(), prop::bool::weighted(0.8)).prop_map(|(f, t, g)| Op::Grant(f, t, g)),
        1 => (a(), any::<bool>()).prop_map(|(a, w)| Op::AllowWithdraw(a, w)),
        6 => (a(), a(), 1u32..=600, -50i32..=50).prop_map(|(b, s, l, t)| Op::PerpFill(b, s, l, t)),
        3 => prop_oneof![8 => -300i32..=300, 1 => -3_000i32..=3_000].prop_map(Op::Mark),
        1 => (a(), x()).prop_map(|(a, x)| Op::FundInsurance(a, x)),
        1 => (a(), wallet(), x()).prop_map(|(a, w, x)| Op::WithdrawInsurance(a, w, x)),
        1 => (a(), 1u64..50).prop_map(|(a, x)| Op::SweepFees(a, x)),
        1 => (1u64..5, a(), x()).prop_map(|(h, a, x)| Op::Lock(h, a, x)),
        1 => (1u64..5, x()).prop_map(|(h, x)| Op::ReleasePart(h, x)),
        2 => (a(), prop::bool::weighted(0.8)).prop_map(|(a, i)| Op::Isolate(a, i)),
        2 => (1u64..5, a(), 1u64..800).prop_map(|(h, a, x)| Op::MarginLock(h, a, x)),
        4 => (a(), -300i64..1_500).prop_map(|(a, x)| Op::AdjustIsolated(a, x)),
    ]
}

fn usdt(units: u64) -> Decimal {
    Decimal::from(units)
}

/// The sub-account rules, kept by the test independently of the engine.
struct Model {
    parent: BTreeMap<AccountId, AccountId>,
    grants: BTreeSet<(AccountId, AccountId)>,
    can_withdraw: BTreeMap<AccountId, bool>,
}

impl Model {
    fn new() -> Self {
        let mut parent = BTreeMap::new();
        let mut can_withdraw = BTreeMap::new();
        for (id, p, _) in ACCOUNTS {
            if p != 0 {
                parent.insert(id, p);
            }
            can_withdraw.insert(id, p == 0);
        }
        can_withdraw.insert(2, true);
        Model {
            parent,
            grants: BTreeSet::new(),
            can_withdraw,
        }
    }

    fn transfer_allowed(&self, from: AccountId, to: AccountId) -> bool {
        match (self.parent.get(&from), self.parent.get(&to)) {
            _ if from == to => true,
            (None, None) => true,
            (Some(m), None) => *m == to,
            (None, Some(m)) => *m == from,
            (Some(a), Some(b)) => a == b && self.grants.contains(&(from, to)),
        }
    }
}

fn setup() -> Harness {
    let mut h = Harness::new();
    for (symbol, scale) in [("BTC", 8), ("USDT", 6)] {
        h.ok(Command::CreateAsset(CreateAsset {
            symbol: symbol.into(),
            scale,
        }));
    }
    h.ok(Command::CreateAccount(CreateAccount { account: 2 }));
    for (account, parent, collateral) in ACCOUNTS {
        h.ok(Command::OpenAccount(OpenAccount {
            account,
            parent,
            collateral,
            can_withdraw: parent == 0,
            history: account % 2 == 1,
        }));
    }
    // Every account starts with collateral to trade from.
    for account in ALL {
        h.ok(Command::WalletDeposit(WalletDeposit {
            account,
            wallet: collateral_of(account),
            asset: "USDT".into(),
            amount: usdt(2_000),
        }));
    }
    h.ok(market_command("BTC-PERP"));
    h.ok(mark("BTC-PERP", "30000"));
    h
}

/// The (account, wallet) a command moves money out of by transfer,
/// withdrawal or insurance top-up, with the amount: what the
/// transferable rule governs.
fn debited(command: &Command) -> Option<(AccountId, Wallet, Decimal)> {
    match command {
        Command::WalletTransfer(c) if (c.from, c.from_wallet) != (c.to, c.to_wallet) => {
            Some((c.from, c.from_wallet, c.amount))
        }
        Command::Transfer(c) if c.from != c.to => Some((c.from, Wallet::Spot, c.amount)),
        Command::WalletWithdraw(c) => Some((c.account, c.wallet, c.amount)),
        Command::Withdraw(c) => Some((c.account, Wallet::Spot, c.amount)),
        Command::FundInsurance(c) => Some((c.account, Wallet::Spot, c.amount)),
        Command::WalletLock(c) if c.wallet == Wallet::Margin => {
            Some((c.account, c.wallet, c.amount))
        }
        _ => None,
    }
}

fn collateral_of(account: AccountId) -> Wallet {
    ACCOUNTS
        .iter()
        .find(|(id, _, _)| *id == account)
        .map_or(Wallet::Spot, |a| a.2)
}

fn command_of(h: &Harness, model: &Model, op: &Op) -> Command {
    let acct = |i: &usize| ALL[*i];
    match op {
        Op::Deposit(a, w, x) => Command::WalletDeposit(WalletDeposit {
            account: acct(a),
            wallet: *w,
            asset: "USDT".into(),
            amount: usdt(*x),
        }),
        Op::Withdraw(a, w, x) => Command::WalletWithdraw(WalletWithdraw {
            account: acct(a),
            wallet: *w,
            asset: "USDT".into(),
            amount: usdt(*x),
        }),
        Op::LegacyWithdraw(a, x) => Command::Withdraw(Withdraw {
            account: acct(a),
            asset: "USDT".into(),
            amount: usdt(*x),
        }),
        Op::Transfer(f, fw, t, tw, x) => Command::WalletTransfer(WalletTransfer {
            from: acct(f),
            from_wallet: *fw,
            to: acct(t),
            to_wallet: *tw,
            asset: "USDT".into(),
            amount: usdt(*x),
        }),
        Op::LegacyTransfer(f, t, x) => Command::Transfer(Transfer {
            from: acct(f),
            to: acct(t),
            asset: "USDT".into(),
            amount: usdt(*x),
        }),
        Op::Grant(f, t, g) => Command::SetTransferGrant(SetTransferGrant {
            master: model.parent.get(&acct(f)).copied().unwrap_or(1),
            from: acct(f),
            to: acct(t),
            allowed: *g,
        }),
        Op::AllowWithdraw(a, w) => Command::SetWithdrawAllowed(SetWithdrawAllowed {
            account: acct(a),
            allowed: *w,
        }),
        Op::PerpFill(b, s, lots, ticks) => {
            let mark = h
                .ledger
                .market("BTC-PERP")
                .and_then(|m| m.mark_price)
                .unwrap_or_else(|| d("30000"));
            Command::PerpFill(PerpFill {
                market: "BTC-PERP".into(),
                buyer: acct(b),
                seller: acct(s),
                size: Decimal::new(i64::from(*lots), 3),
                price: (mark + Decimal::new(i64::from(*ticks), 1)).max(d("0.1")),
                buyer_fee: d("0.5"),
                seller_fee: d("0"),
            })
        }
        Op::Mark(ticks) => {
            let now = h
                .ledger
                .market("BTC-PERP")
                .and_then(|m| m.mark_price)
                .unwrap_or_else(|| d("30000"));
            let price = (now + Decimal::new(i64::from(*ticks), 1)).max(d("1000"));
            mark("BTC-PERP", &price.to_string())
        }
        Op::FundInsurance(a, x) => Command::FundInsurance(FundInsurance {
            account: acct(a),
            asset: "USDT".into(),
            amount: usdt(*x),
        }),
        Op::WithdrawInsurance(a, w, x) => Command::WithdrawInsurance(WithdrawInsurance {
            asset: "USDT".into(),
            account: acct(a),
            wallet: *w,
            amount: usdt(*x),
        }),
        Op::SweepFees(a, x) => Command::SweepFees(SweepFees {
            asset: "USDT".into(),
            account: acct(a),
            wallet: Wallet::Spot,
            amount: Decimal::new(*x as i64, 1),
        }),
        Op::Lock(hold, a, x) => Command::Lock(Lock {
            hold: *hold,
            account: acct(a),
            asset: "USDT".into(),
            amount: usdt(*x),
        }),
        Op::ReleasePart(hold, x) => Command::ReleasePart(ReleasePart {
            hold: *hold,
            amount: usdt(*x),
        }),
        Op::MarginLock(hold, a, x) => Command::WalletLock(WalletLock {
            hold: *hold,
            account: acct(a),
            wallet: Wallet::Margin,
            asset: "USDT".into(),
            amount: usdt(*x),
        }),
        Op::Isolate(a, isolated) => Command::SetIsolated(SetIsolated {
            account: acct(a),
            market: "BTC-PERP".into(),
            isolated: *isolated,
        }),
        Op::AdjustIsolated(a, x) => Command::AdjustIsolatedMargin(AdjustIsolatedMargin {
            account: acct(a),
            market: "BTC-PERP".into(),
            delta: Decimal::from(*x),
        }),
    }
}

/// Checks one command's outcome against the model and the margin rule.
fn check_step(
    h: &Harness,
    model: &mut Model,
    command: &Command,
    outcome: &Outcome,
    before: Option<Decimal>,
) {
    let code = match outcome {
        Outcome::Rejected(r) => Some(r.code),
        Outcome::Applied { .. } => None,
    };
    let pair = match command {
        Command::WalletTransfer(c) => Some((c.from, c.to)),
        Command::Transfer(c) => Some((c.from, c.to)),
        _ => None,
    };
    if let Some((from, to)) = pair {
        let allowed = model.transfer_allowed(from, to);
        assert!(
            code.is_some() || allowed,
            "{command:?} applied against the rules"
        );
        if code == Some(RejectCode::TransferNotAllowed) {
            assert!(!allowed, "{command:?} refused though allowed");
        }
    }
    if let Command::WalletWithdraw(WalletWithdraw { account, .. })
    | Command::Withdraw(Withdraw { account, .. }) = command
    {
        let may = model.can_withdraw[account];
        assert!(
            code.is_some() || may,
            "{command:?} withdrew without the right"
        );
        if code == Some(RejectCode::WithdrawNotAllowed) {
            assert!(!may);
        }
    }
    if let (Some((account, wallet, amount)), Some(transferable)) = (debited(command), before) {
        if code.is_none() {
            assert!(
                amount <= transferable,
                "{command:?} moved more than {transferable}"
            );
        }
        if code == Some(RejectCode::ExceedsTransferable) {
            assert!(amount > transferable);
        }
        if code.is_none() && wallet == collateral_of(account) {
            for m in h.ledger.margin(account).unwrap_or_default() {
                if m.positions.is_empty() {
                    continue;
                }
                let covered = m.wallet_balance + m.unrealized_pnl.min(Decimal::ZERO);
                assert!(
                    covered >= m.initial_margin,
                    "{command:?} left account {account} at {covered} below IM {}",
                    m.initial_margin
                );
            }
        }
    }
    if code.is_none() {
        match command {
            Command::SetTransferGrant(c) if c.allowed => {
                model.grants.insert((c.from, c.to));
            }
            Command::SetTransferGrant(c) => {
                model.grants.remove(&(c.from, c.to));
            }
            Command::SetWithdrawAllowed(c) => {
                model.can_withdraw.insert(c.account, c.allowed);
            }
            _ => {}
        }
    }
}

/// What a history exercised (the generator-coverage test asserts each
/// is reached, so the properties are not vacuous).
#[derive(Default, Debug)]
struct Stats {
    /// Applied transfers between two different accounts.
    cross_account: usize,
    /// Applied movements out of a collateral wallet with open positions.
    out_of_collateral_with_positions: usize,
    exceeds_transferable: usize,
    transfer_not_allowed: usize,
    withdraw_not_allowed: usize,
    /// Applied transfers between two sub-accounts (a grant held).
    granted_sub_to_sub: usize,
    /// Applied fills of isolated positions.
    isolated_fills: usize,
}

fn run(ops: &[Op]) -> Result<Stats, TestCaseError> {
    let mut h = setup();
    let mut model = Model::new();
    let mut stats = Stats::default();
    // The store a node would keep: every drained batch applied in turn.
    let mut store: BTreeMap<Vec<u8>, Vec<u8>> = h.ledger.records().into_iter().collect();
    h.ledger.take_dirty();
    for op in ops {
        let command = command_of(&h, &model, op);
        let before = debited(&command).and_then(|(a, w, _)| h.ledger.transferable(a, w, "USDT"));
        let with_positions = debited(&command).is_some_and(|(a, w, _)| {
            w == collateral_of(a)
                && h.ledger
                    .margin(a)
                    .is_some_and(|m| m.iter().any(|g| !g.positions.is_empty()))
        });
        let records = business_hash(&h.ledger);
        let (_, result) = h.send(command.clone());
        h.ledger.check_invariants().map_err(TestCaseError::fail)?;
        for row in h.ledger.conservation() {
            prop_assert_eq!(
                row.total,
                Decimal::ZERO,
                "{} does not sum to zero",
                row.asset
            );
        }
        match &result.outcome {
            Outcome::Rejected(r) => {
                prop_assert_eq!(
                    business_hash(&h.ledger),
                    records,
                    "a rejection changed state"
                );
                match r.code {
                    RejectCode::ExceedsTransferable => stats.exceeds_transferable += 1,
                    RejectCode::TransferNotAllowed => stats.transfer_not_allowed += 1,
                    RejectCode::WithdrawNotAllowed => stats.withdraw_not_allowed += 1,
                    _ => {}
                }
            }
            Outcome::Applied { .. } => {
                if let Command::PerpFill(f) = &command
                    && [f.buyer, f.seller].iter().any(|a| {
                        h.ledger
                            .position("BTC-PERP", *a)
                            .is_some_and(|p| p.isolated_margin.is_some())
                    })
                {
                    stats.isolated_fills += 1;
                }
                if with_positions {
                    stats.out_of_collateral_with_positions += 1;
                }
                if let Command::WalletTransfer(WalletTransfer { from, to, .. })
                | Command::Transfer(Transfer { from, to, .. }) = &command
                    && from != to
                {
                    stats.cross_account += 1;
                    if model.parent.contains_key(from) && model.parent.contains_key(to) {
                        stats.granted_sub_to_sub += 1;
                    }
                }
            }
        }
        check_step(&h, &mut model, &command, &result.outcome, before);
        for (key, value) in h.ledger.take_dirty() {
            match value {
                Some(value) => store.insert(key, value),
                None => store.remove(&key),
            };
        }
    }
    let stored: Vec<_> = store.into_iter().collect();
    prop_assert!(
        stored == h.ledger.records(),
        "drained batches differ from the records"
    );
    let restored = Ledger::from_records(LedgerConfig::default(), h.ledger.records())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(restored.state_hash(), h.ledger.state_hash());
    Ok(stats)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conservation_margin_and_sub_account_rules_hold_after_every_command(
        ops in prop::collection::vec(op(), 1..120)
    ) {
        run(&ops)?;
    }
}

#[test]
fn generator_reaches_every_rule_both_ways() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let mut total = Stats::default();
    for _ in 0..50 {
        let ops = prop::collection::vec(op(), 80..120)
            .new_tree(&mut runner)
            .map(|t| t.current())
            .unwrap_or_default();
        let stats = run(&ops).unwrap_or_else(|e| panic!("{e}"));
        total.cross_account += stats.cross_account;
        total.out_of_collateral_with_positions += stats.out_of_collateral_with_positions;
        total.exceeds_transferable += stats.exceeds_transferable;
        total.transfer_not_allowed += stats.transfer_not_allowed;
        total.withdraw_not_allowed += stats.withdraw_not_allowed;
        total.granted_sub_to_sub += stats.granted_sub_to_sub;
        total.isolated_fills += stats.isolated_fills;
    }
    println!("{total:?}");
    assert!(total.cross_account > 0, "{total:?}");
    assert!(total.out_of_collateral_with_positions > 0, "{total:?}");
    assert!(total.exceeds_transferable > 0, "{total:?}");
    assert!(total.transfer_not_allowed > 0, "{total:?}");
    assert!(total.withdraw_not_allowed > 0, "{total:?}");
    assert!(total.granted_sub_to_sub > 0, "{total:?}");
    assert!(total.isolated_fills > 0, "{total:?}");
}
