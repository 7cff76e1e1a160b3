//! The engine's one mutation and rollback primitive, for spot and perpetual
//! commands alike.
//!
//! `Ledger::execute` runs every command as a transaction over the ledger's
//! [`Journal`] (one reused undo log: no allocation per command): every write
//! a command can make before a later step fails goes through a journaled
//! writer here ([`Ledger::write_balance`], [`Ledger::write_hold`],
//! [`Ledger::state_mut`], [`Ledger::write_position`]), which records what it
//! overwrites, notes the record dirty and (for balances) emits the `Balance`
//! event. If the command fails, `execute` rolls every recorded write back,
//! newest first, and the command's events are dropped; if it succeeds the
//! log is cleared (the commit). So a rejected command never has partial
//! effects, whichever path it took:
//!
//! - Spot commands still validate first: their balance changes are merged
//!   per (owner, asset) into a stack list of [`Posting`]s and checked
//!   (range, overdraft) before the first write, so a rejected spot command
//!   writes nothing at all. `commit_postings` then declares the command's
//!   commit point ([`Journal::commit_point`]: nothing after it can fail) and
//!   writes the postings and holds through the same writers. Writes after a
//!   commit point record no undo, which keeps the spot hot path as cheap as
//!   direct writes; a failure after one would be a bug that could not be
//!   rolled back, and `transaction` asserts it never happens.
//! - Perpetual commands may touch many balances and positions (a mark price
//!   can liquidate a cascade of accounts) and check as they go; a failure
//!   half-way (only an arithmetic overflow can, after validation) is undone
//!   by the rollback.
//!
//! Creations (an asset, an account, a market) and the dedup window are
//! written as their command's last step, after which nothing can fail, so
//! they need no undo record. A rollback leaves the dirty notes of the
//! records it restored: `drain_dirty` then writes their (restored) values
//! again, or deletes a balance record the rollback removed (see `DirtySet`).

use crate::command::{AccountId, BalanceChange, Event, HoldId, Owner};
use crate::engine::Ledger;
use crate::events::Events;
use crate::market::{MarketIdx, MarketState, Position};
use crate::state::{AssetIdx, Balance, DirtyKey, Hold, system_slot};

/// What a journaled write overwrote (`None`: the balance slot, hold or
/// position did not exist).
#[derive(Clone, Debug)]
enum Undo {
    Balance {
        owner: Owner,
        asset: AssetIdx,
        before: Option<Balance>,
    },
    Hold {
        hold: HoldId,
        before: Option<Hold>,
    },
    State {
        market: MarketIdx,
        before: MarketState,
    },
    Position {
        market: MarketIdx,
        account: AccountId,
        before: Option<Position>,
    },
    /// An isolated margin was set or removed.
    Isolated {
        market: MarketIdx,
        account: AccountId,
        before: Option<i128>,
    },
    /// A history entry was recorded (and maybe the oldest dropped).
    History {
        account: AccountId,
        dropped: Option<crate::history::HistoryEntry>,
    },
}

/// One checked balance change of a command: the deltas (a spot command's
/// are merged per owner and asset) and the balance after them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Posting {
    pub owner: Owner,
    pub asset: AssetIdx,
    pub available_delta: i128,
    pub locked_delta: i128,
    /// The balance after the change (checked by the caller).
    pub after: Balance,
}

/// The undo log of the command being applied; empty between commands.
#[derive(Clone, Debug, Default)]
pub(crate) struct Journal {
    /// Whether writes record undo entries: from the start of a command to
    /// its commit point, if it declares one (`commit_point`).
    recording: bool,
    undo: Vec<Undo>,
}

impl Journal {
    /// Declares that the running command can no longer fail: its remaining
    /// writes need no undo, so they record none. Spot commands, which check
    /// everything first, declare it before their first write, so their hot
    /// path records nothing. A failure after this point would be a bug that
    /// could not be rolled back: the transaction asserts it never happens.
    pub(crate) fn commit_point(&mut self) {
        self.recording = false;
    }

    /// Records what an isolated-margin write overwrote.
    pub(crate) fn record_isolated(
        &mut self,
        market: MarketIdx,
        account: AccountId,
        before: Option<i128>,
    ) {
        self.record(Undo::Isolated {
            market,
            account,
            before,
        });
    }

    #[inline]
    fn record(&mut self, undo: Undo) {
        if self.recording {
            self.undo.push(undo);
        }
    }
}

impl Ledger {
    /// Runs `body` (one command) as a transaction: commits its journaled
    /// writes if it succeeds, rolls every one of them back if it fails.
    pub(crate) fn transaction<T, E>(
        &mut self,
        body: impl FnOnce(&mut Ledger, &mut Journal) -> Result<T, E>,
    ) -> Result<T, E> {
        // The ledger's log is reused (moved out and back: no allocation).
        let mut journal = std::mem::take(&mut self.journal);
        assert!(
            journal.undo.is_empty(),
            "invariant broken: a command started with a non-empty journal"
        );
        journal.recording = true;
        let result = body(self, &mut journal);
        if result.is_err() {
            assert!(
                journal.recording,
                "invariant broken: a command failed after its commit point"
            );
            self.rollback(&mut journal);
        }
        journal.undo.clear();
        self.journal = journal;
        result
    }

    /// Writes posting `p`: sets the balance of `p.owner` in `p.asset` to
    /// `p.after`, which the caller has computed and checked, records what it
    /// overwrites, notes the record dirty and emits a `Balance` event with
    /// the deltas. Callers skip a zero change (an untouched balance gets no
    /// slot and no event). The owner must exist: commands check accounts
    /// first, so a missing one is a broken invariant.
    #[inline(always)]
    pub(crate) fn write_balance(
        &mut self,
        journal: &mut Journal,
        p: &Posting,
        events: &mut Events,
    ) {
        let (owner, asset, after) = (p.owner, p.asset, p.after);
        match (owner.client(), system_slot(owner)) {
            (Some((id, wallet)), _) => {
                let Some(account) = self.accounts.get_mut(&id) else {
                    panic!("invariant broken: a balance write to missing account {id}");
                };
                let keeps_history = account.history.is_some();
                let (slot, before) = account.entry_and_before(wallet, asset);
                slot.balance = after;
                self.liq.note(id, asset);
                self.dirty.note_balance(&mut slot.listed, owner, asset);
                journal.record(Undo::Balance {
                    owner,
                    asset,
                    before,
                });
                if keeps_history {
                    let deltas = (p.available_delta, p.locked_delta);
                    if let Some(dropped) = self.record_history(id, wallet, asset, deltas, after) {
                        journal.record(Undo::History {
                            account: id,
                            dropped,
                        });
                    }
                }
            }
            (_, slot) => {
                let (Some(slot), Some(a)) = (slot, self.assets.get_mut(asset as usize)) else {
                    panic!(
                        "invariant broken: a balance write to {owner:?} of missing asset {asset}"
                    );
                };
                let before = std::mem::replace(&mut a.system[slot], after);
                self.dirty
                    .note_balance(&mut a.system_listed[slot], owner, asset);
                journal.record(Undo::Balance {
                    owner,
                    asset,
                    before: Some(before),
                });
            }
        }
        // Not through `emit`'s closure: built in place on the hot path.
        if events.detailed() {
            let asset = &self.assets[asset as usize];
            let scale = asset.scale;
            let units = |units| crate::amount::to_decimal(units, scale);
            events.push(Event::Balance(BalanceChange {
                owner,
                asset: asset.symbol.clone(),
                available_delta: units(p.available_delta),
                locked_delta: units(p.locked_delta),
                available: units(after.available),
                locked: units(after.locked),
            }));
        }
    }

    /// Opens, updates (`Some`) or closes (`None`) hold `hold`, recording what
    /// it overwrites and noting the record dirty.
    #[inline(always)]
    pub(crate) fn write_hold(&mut self, journal: &mut Journal, hold: HoldId, open: Option<Hold>) {
        let before = match (open, self.holds.get_mut(&hold)) {
            (Some(h), Some(slot)) => Some(std::mem::replace(slot, h)),
            (Some(h), None) => self.holds.insert(hold, h),
            (None, _) => self.holds.remove(&hold),
        };
        journal.record(Undo::Hold { hold, before });
        self.dirty.push(DirtyKey::Hold(hold));
    }

    /// The state of market `m`, recorded for undo (and noted dirty) before
    /// the caller changes it.
    pub(crate) fn state_mut(&mut self, journal: &mut Journal, m: MarketIdx) -> &mut MarketState {
        let market = &mut self.markets[m as usize];
        journal.record(Undo::State {
            market: m,
            before: market.state,
        });
        self.dirty.push(DirtyKey::Market(m));
        if !market.instrument.is_perpetual() {
            // The settlement price lives in the instrument record.
            self.dirty.push(DirtyKey::Instrument(m));
        }
        &mut market.state
    }

    /// Sets `account`'s position in `m` (removing it when flat), recording
    /// what it overwrites and noting the record dirty. The caller checks the
    /// position's range.
    pub(crate) fn write_position(
        &mut self,
        journal: &mut Journal,
        m: MarketIdx,
        account: AccountId,
        position: Position,
    ) {
        let positions = &mut self.markets[m as usize].positions;
        let before = if position.size == 0 {
            positions.remove(&account)
        } else {
            positions.insert(account, position)
        };
        journal.record(Undo::Position {
            market: m,
            account,
            before,
        });
        self.dirty.push(DirtyKey::Position(m, account));
        let market = &self.markets[m as usize];
        let (settle, isolated) = (market.settle, market.isolated.contains_key(&account));
        self.note_risk(account, settle);
        if isolated {
            self.liq.note_isolated(m, account);
        }
    }

    /// Undoes every journaled write, newest first, and empties the log.
    fn rollback(&mut self, journal: &mut Journal) {
        while let Some(undo) = journal.undo.pop() {
            match undo {
                Undo::Balance {
                    owner,
                    asset,
                    before,
                } => self.restore_balance(owner, asset, before),
                Undo::Hold { hold, before } => {
                    match before {
                        Some(open) => self.holds.insert(hold, open),
                        None => self.holds.remove(&hold),
                    };
                }
                Undo::State { market, before } => {
                    self.markets[market as usize].state = before;
                }
                Undo::History { account, dropped } => self.unrecord_history(account, dropped),
                Undo::Isolated {
                    market,
                    account,
                    before,
                } => {
                    let isolated = &mut self.markets[market as usize].isolated;
                    match before {
                        Some(margin) => isolated.insert(account, margin),
                        None => isolated.remove(&account),
                    };
                }
                Undo::Position {
                    market,
                    account,
                    before,
                } => {
                    let positions = &mut self.markets[market as usize].positions;
                    match before {
                        Some(position) => positions.insert(account, position),
                        None => positions.remove(&account),
                    };
                }
            }
        }
    }

    /// Puts back a balance `write_balance` overwrote (which asserted that
    /// its owner exists).
    fn restore_balance(&mut self, owner: Owner, asset: AssetIdx, before: Option<Balance>) {
        match (owner.client(), system_slot(owner), before) {
            (Some((id, wallet)), _, before) => {
                let Some(account) = self.accounts.get_mut(&id) else {
                    panic!("invariant broken: rollback of missing account {id}");
                };
                match before {
                    Some(balance) => *account.slot_mut(wallet, asset) = balance,
                    // Its key stays listed: `drain_dirty` deletes the
                    // record (see `DirtySet`).
                    None => account.remove(wallet, asset),
                }
            }
            (_, Some(slot), Some(balance)) => self.assets[asset as usize].system[slot] = balance,
            _ => panic!("invariant broken: rollback of {owner:?} without a balance"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use super::*;
    use crate::command::*;
    use crate::engine::LedgerConfig;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).expect("decimal")
    }

    /// USDT and BTC, accounts 1 and 2, hold 7 (account 1, USDT), BTC-PERP
    /// with account 1 long 1 from account 2.
    fn ledger() -> Ledger {
        let mut ledger = Ledger::new(LedgerConfig::default());
        let commands: Vec<Command> = vec![
            CreateAsset {
                symbol: "USDT".into(),
                scale: 6,
            }
            .into(),
            CreateAsset {
                symbol: "BTC".into(),
                scale: 8,
            }
            .into(),
            CreateAccount { account: 1 }.into(),
            CreateAccount { account: 2 }.into(),
            Deposit {
                account: 1,
                asset: "USDT".into(),
                amount: d("1000"),
            }
            .into(),
            Deposit {
                account: 2,
                asset: "USDT".into(),
                amount: d("1000"),
            }
            .into(),
            Lock {
                hold: 7,
                account: 1,
                asset: "USDT".into(),
                amount: d("100"),
            }
            .into(),
            CreateMarket {
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
                liquidation_fee_rate: d("0.01"),
                funding_interval_ms: 1_000,
            }
            .into(),
            SetMarkPrice {
                market: "BTC-PERP".into(),
                price: d("100"),
            }
            .into(),
            PerpFill {
                market: "BTC-PERP".into(),
                buyer: 1,
                seller: 2,
                size: d("1"),
                price: d("100"),
                buyer_fee: d("0"),
                seller_fee: d("0"),
            }
            .into(),
        ];
        for (i, command) in commands.into_iter().enumerate() {
            let envelope = Envelope {
                command_id: CommandId(format!("setup-{i}")),
                command,
            };
            let result = ledger.apply(&envelope, 1);
            assert!(
                matches!(result.outcome, Outcome::Applied { .. }),
                "{result:?}"
            );
        }
        ledger
    }

    /// Writes one of every kind: a new and an existing client balance, a
    /// system balance, a new, an updated and a closed hold, market state and
    /// a changed, a new and a closed position.
    fn write_everything(ledger: &mut Ledger, journal: &mut Journal) {
        let mut events = Events::new(true);
        let (usdt, btc) = (ledger.asset_index["USDT"], ledger.asset_index["BTC"]);
        for (owner, asset, delta) in [
            (Owner::Account(1), btc, 5),
            (Owner::Account(1), usdt, -3),
            (Owner::Account(1), usdt, -4),
            (Owner::Fees, usdt, 7),
        ] {
            let current = ledger.balance_units(owner, asset);
            let posting = Posting {
                owner,
                asset,
                available_delta: delta,
                locked_delta: 0,
                after: Balance {
                    available: current.available + delta,
                    locked: current.locked,
                },
            };
            ledger.write_balance(journal, &posting, &mut events);
        }
        let open = ledger.holds[&7];
        ledger.write_hold(journal, 8, Some(open));
        ledger.write_hold(
            journal,
            7,
            Some(Hold {
                remaining: 1,
                ..open
            }),
        );
        ledger.write_hold(journal, 8, None);
        let m = ledger.market_index["BTC-PERP"];
        ledger.state_mut(journal, m).paused = true;
        ledger.state_mut(journal, m).pool += 1;
        let long = Position {
            size: 2000,
            cost: 5,
        };
        ledger.write_position(journal, m, 1, long);
        ledger.write_position(journal, m, 2, Position::default());
        ledger.write_position(journal, m, 3, long);
    }

    #[test]
    fn a_failed_transaction_restores_every_journaled_write() {
        let mut ledger = ledger();
        let (records, hash) = (ledger.records(), ledger.state_hash());
        let btc = ledger.asset_index["BTC"];
        let result: Result<(), ()> = ledger.transaction(|ledger, journal| {
            write_everything(ledger, journal);
            Err(())
        });
        assert_eq!(result, Err(()));
        assert_eq!(ledger.records(), records);
        assert_eq!(ledger.state_hash(), hash);
        // The new BTC slot of account 1 is gone again, not left at zero.
        assert!(
            ledger.accounts[&1]
                .get(crate::command::Wallet::Spot, btc)
                .is_none()
        );
        ledger.check_invariants().expect("invariants");
        assert!(ledger.journal.undo.is_empty());
        // The same writes committed do change the state.
        let committed: Result<(), ()> = ledger.transaction(|ledger, journal| {
            write_everything(ledger, journal);
            Ok(())
        });
        assert_eq!(committed, Ok(()));
        assert_ne!(ledger.state_hash(), hash);
        assert!(ledger.journal.undo.is_empty());
    }

    #[test]
    fn writes_after_the_commit_point_record_no_undo() {
        let mut ledger = ledger();
        let result: Result<usize, ()> = ledger.transaction(|ledger, journal| {
            journal.commit_point();
            write_everything(ledger, journal);
            Ok(journal.undo.len())
        });
        assert_eq!(result, Ok(0));
    }

    #[test]
    #[should_panic(expected = "failed after its commit point")]
    fn a_failure_after_the_commit_point_stops_the_replica() {
        let mut ledger = ledger();
        let _: Result<(), ()> = ledger.transaction(|_, journal| {
            journal.commit_point();
            Err(())
        });
    }
}
