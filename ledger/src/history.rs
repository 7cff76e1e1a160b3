//! Account history: the balance changes of accounts opened with the
//! `history` flag (as TigerBeetle's per-account history flag), in log
//! order, with the command id, Raft log index and leader time of the
//! command that made each. Replicated state like any other: every replica
//! records the same entries at the same log position (the shell names the
//! log index of the entry it applies with `Ledger::set_log_index`).
//!
//! Retention: the newest `MAX_HISTORY_PER_ACCOUNT` entries per account; an
//! older one is dropped (its record deleted) when a new one arrives. Each
//! entry has a per-account sequence number that never repeats, so a page
//! read "after sequence N" is stable while writes continue: new entries
//! only ever append after the last one. Accounts without the flag record
//! nothing (no cost on their hot path beyond one flag test).

use std::collections::VecDeque;

use rust_decimal::Decimal;

use crate::amount::to_decimal;
use crate::command::{AccountId, Wallet};
use crate::engine::Ledger;
use crate::state::{AssetIdx, Balance, DirtyKey};

/// Most history entries kept per account (about 150 bytes each).
pub const MAX_HISTORY_PER_ACCOUNT: usize = 10_000;

/// One recorded balance change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HistoryEntry {
    pub seq: u64,
    pub log_index: u64,
    pub time_ms: u64,
    pub command_id: String,
    pub wallet: Wallet,
    pub asset: AssetIdx,
    pub available_delta: i128,
    pub locked_delta: i128,
    /// The balance after the change.
    pub after: Balance,
}

/// The kept history of one account (oldest first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct History {
    pub entries: VecDeque<HistoryEntry>,
}

impl History {
    /// The sequence number of the next entry.
    pub fn next_seq(&self) -> u64 {
        self.entries.back().map_or(0, |e| e.seq + 1)
    }
}

/// One balance change of an account's history, as queries show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryView {
    /// Per-account sequence number (the pagination cursor).
    pub seq: u64,
    pub log_index: u64,
    pub time_ms: u64,
    pub command_id: String,
    pub wallet: Wallet,
    pub asset: String,
    pub available_delta: Decimal,
    pub locked_delta: Decimal,
    pub available: Decimal,
    pub locked: Decimal,
}

/// What the shell applies now: where history entries say they came from.
#[derive(Clone, Debug, Default)]
pub(crate) struct ApplyContext {
    pub log_index: u64,
    pub time_ms: u64,
    /// The id of the command being applied (a reused buffer).
    pub command_id: String,
}

impl Ledger {
    /// Names the Raft log index of the entry whose commands are applied
    /// next (history entries record it). The shell calls it once per entry.
    pub fn set_log_index(&mut self, log_index: u64) {
        self.context.log_index = log_index;
    }

    /// Records a balance change of `account` if it keeps history; returns
    /// the dropped oldest entry's sequence number, if one was dropped
    /// (for undo the caller records the push).
    pub(crate) fn record_history(
        &mut self,
        account: AccountId,
        wallet: Wallet,
        asset: AssetIdx,
        deltas: (i128, i128),
        after: Balance,
    ) -> Option<Option<HistoryEntry>> {
        let state = self.accounts.get_mut(&account)?;
        let history = state.history.as_mut()?;
        let seq = history.next_seq();
        history.entries.push_back(HistoryEntry {
            seq,
            log_index: self.context.log_index,
            time_ms: self.context.time_ms,
            command_id: self.context.command_id.clone(),
            wallet,
            asset,
            available_delta: deltas.0,
            locked_delta: deltas.1,
            after,
        });
        self.dirty.push(DirtyKey::History(account, seq));
        let dropped = if history.entries.len() > MAX_HISTORY_PER_ACCOUNT {
            history.entries.pop_front()
        } else {
            None
        };
        if let Some(old) = &dropped {
            self.dirty.push(DirtyKey::History(account, old.seq));
        }
        Some(dropped)
    }

    /// Undoes the newest `record_history` of `account` (a rollback): the
    /// pushed entry goes, a dropped one comes back.
    pub(crate) fn unrecord_history(&mut self, account: AccountId, dropped: Option<HistoryEntry>) {
        let Some(history) = self
            .accounts
            .get_mut(&account)
            .and_then(|a| a.history.as_mut())
        else {
            panic!("invariant broken: history rollback of account {account} without history");
        };
        history.entries.pop_back();
        if let Some(old) = dropped {
            history.entries.push_front(old);
        }
    }

    /// The kept history of `account` with sequence numbers at or above
    /// `from_seq` and log indexes at or above `from_index`, oldest first,
    /// at most `limit` (clamped to `MAX_PAGE_ITEMS`). `None` for an unknown
    /// account; empty for one without the history flag.
    pub fn history(
        &self,
        account: AccountId,
        from_seq: u64,
        from_index: u64,
        limit: usize,
    ) -> Option<Vec<HistoryView>> {
        let state = self.accounts.get(&account)?;
        let Some(history) = &state.history else {
            return Some(Vec::new());
        };
        let limit = limit.clamp(1, crate::account_views::MAX_PAGE_ITEMS);
        // Entries are sorted by seq: skip to the first one wanted.
        let start = history.entries.partition_point(|e| e.seq < from_seq);
        Some(
            history
                .entries
                .range(start..)
                .filter(|e| e.log_index >= from_index)
                .take(limit)
                .map(|e| {
                    let scale = self.scale(e.asset);
                    HistoryView {
                        seq: e.seq,
                        log_index: e.log_index,
                        time_ms: e.time_ms,
                        command_id: e.command_id.clone(),
                        wallet: e.wallet,
                        asset: self.symbol(e.asset).to_string(),
                        available_delta: to_decimal(e.available_delta, scale),
                        locked_delta: to_decimal(e.locked_delta, scale),
                        available: to_decimal(e.after.available, scale),
                        locked: to_decimal(e.after.locked, scale),
                    }
                })
                .collect(),
        )
    }
}
