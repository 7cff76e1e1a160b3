//! The account model: wallets, sub-accounts, allocation transfers, the
//! transferable amount of a collateral wallet, and the system accounts'
//! payouts (insurance fund, fee sweep).
//!
//! Rules (each refusal has its own detail; nothing changes on a refusal):
//! - Wallets. Every account holds, per asset, a `spot`, `funding` and
//!   `margin` balance (created on first touch). Legacy commands (deposit,
//!   withdraw, lock, fill, transfer) act on `spot`; `WalletDeposit`,
//!   `WalletWithdraw` and `WalletTransfer` name the wallet. Only spot
//!   balances carry holds: other wallets always have `locked == 0`.
//! - Collateral. An account's perpetual positions are margined over one
//!   wallet of the settle asset: `spot` for accounts made by
//!   `CreateAccount` (the unified account Tally always had, so old logs
//!   and stores keep their meaning), or what `OpenAccount` chose (`spot`
//!   or `margin`). Funding, realized PnL, fees and liquidations of perps
//!   post to that wallet; every other wallet is untouched by perps.
//! - Sub-accounts. An account opened with a parent is a sub-account of
//!   that master (one level: a master is a top-level account). Money
//!   moves between different accounts (`Transfer`, `WalletTransfer`) only
//!   master to own sub, sub to own master, sub to a sibling the master
//!   granted (`SetTransferGrant`), or between two top-level accounts. A
//!   sub-account (any account) with `can_withdraw` false cannot withdraw
//!   (`Withdraw`, `WalletWithdraw`). Trading (fills) is not a transfer.
//! - Transferable. Out of a collateral wallet holding the settle asset of
//!   open positions, at most `clamp(wallet + min(UPNL, 0) − IM, 0,
//!   available)` moves (transfers, withdrawals, insurance top-ups): the
//!   initial margin at the marks stays covered and unrealized profit is
//!   never transferable. Open-order margin is locked in the wallet and so
//!   never available. Anywhere else the transferable amount is the
//!   available balance; locked funds never move.
//! - System payouts. `WithdrawInsurance` and `SweepFees` pay out at most
//!   what the fund or fee account holds (they never go negative by
//!   command) and emit `InsuranceFund` / `FeesSwept` events; top-ups
//!   (`FundInsurance`) emit `InsuranceFund` too.

use rust_decimal::Decimal;

use crate::amount;
use crate::command::{
    AccountId, Event, MAX_TRANSFER_GRANTS, OpenAccount, Owner, SetTransferGrant,
    SetWithdrawAllowed, SweepFees, Wallet, WalletDeposit, WalletTransfer, WalletWithdraw,
    WithdrawInsurance,
};
use crate::engine::{Ledger, postings, reject};
use crate::events::Events;
use crate::journal::Journal;
use crate::reject::{Field, RejectDetail, Rejection};
use crate::state::{Account, AccountSettings, AssetIdx, DirtyKey};

impl Ledger {
    /// The settings of an existing account (checked by the caller).
    pub(crate) fn settings(&self, account: AccountId) -> &AccountSettings {
        match self.accounts.get(&account) {
            Some(state) => &state.settings,
            None => panic!("invariant broken: settings of missing account {account}"),
        }
    }

    /// The owner whose balance collateralizes `holder`'s perpetual
    /// positions: a client's collateral wallet; system owners themselves.
    pub(crate) fn collateral(&self, holder: Owner) -> Owner {
        match holder {
            Owner::Account(id) => match self.accounts.get(&id) {
                Some(state) => Owner::wallet(id, state.settings.collateral),
                None => holder,
            },
            other => other,
        }
    }

    /// What of `account`'s `wallet` balance of `asset` may move out now
    /// (see the module docs), in minor units.
    pub(crate) fn transferable_units(
        &self,
        account: AccountId,
        wallet: Wallet,
        asset: AssetIdx,
    ) -> i128 {
        let available = self
            .balance_units(Owner::wallet(account, wallet), asset)
            .available
            .max(0);
        let is_collateral = self
            .accounts
            .get(&account)
            .is_some_and(|a| a.settings.collateral == wallet);
        if !is_collateral {
            return available;
        }
        let Some(risk) = self.group_risk(account, asset) else {
            // Numbers too large to value: nothing moves.
            return 0;
        };
        if risk.positions.is_empty() {
            return available;
        }
        let free = risk
            .wallet
            .checked_add(risk.upnl.min(0))
            .and_then(|w| w.checked_sub(risk.initial))
            .unwrap_or(0);
        free.clamp(0, available)
    }

    /// `ExceedsTransferable` unless `units` may move out of `account`'s
    /// `wallet` (the caller checked that they are available).
    pub(crate) fn check_transferable(
        &self,
        account: AccountId,
        wallet: Wallet,
        asset: AssetIdx,
        units: i128,
    ) -> Result<(), Rejection> {
        let legacy_spot = self.legacy_rules && wallet == Wallet::Spot;
        let transferable = self.transferable_units(account, wallet, asset);
        if units <= transferable || legacy_spot {
            return Ok(());
        }
        let scale = self.scale(asset);
        Err(reject(RejectDetail::AboveTransferable {
            owner: Owner::wallet(account, wallet),
            asset: self.symbol(asset).to_string(),
            amount: amount::shown_decimal(units, scale),
            transferable: amount::shown_decimal(transferable, scale),
        }))
    }

    /// `InsufficientFunds` unless `owner` (a client wallet) has `units`
    /// available: `LockedNotTransferable` if only its locked funds would
    /// cover them.
    pub(crate) fn check_wallet_available(
        &self,
        owner: Owner,
        asset: AssetIdx,
        units: i128,
    ) -> Result<(), Rejection> {
        let balance = self.balance_units(owner, asset);
        if balance.available >= units {
            return Ok(());
        }
        let scale = self.scale(asset);
        let (symbol, amount) = (
            self.symbol(asset).to_string(),
            amount::shown_decimal(units, scale),
        );
        let available = amount::shown_decimal(balance.available, scale);
        if balance.locked > 0 {
            return Err(reject(RejectDetail::LockedNotTransferable {
                owner,
                available,
                locked: amount::shown_decimal(balance.locked, scale),
                asset: symbol,
                amount,
            }));
        }
        Err(reject(RejectDetail::OwnerShort {
            owner,
            available,
            asset: symbol,
            needed: amount,
        }))
    }

    /// `TransferNotAllowed` unless money may move between the different
    /// accounts `from` and `to` (see the module docs); both exist.
    pub(crate) fn check_family(&self, from: AccountId, to: AccountId) -> Result<(), Rejection> {
        if from == to {
            return Ok(());
        }
        let (sf, st) = (self.settings(from), self.settings(to));
        match (sf.parent, st.parent) {
            (None, None) => Ok(()),
            (Some(master), None) if master == to => Ok(()),
            (None, Some(master)) if master == from => Ok(()),
            (Some(a), Some(b)) if a == b => {
                if sf.grants.binary_search(&to).is_ok() {
                    Ok(())
                } else {
                    Err(reject(RejectDetail::SubToSubWithoutGrant {
                        from,
                        to,
                        master: a,
                    }))
                }
            }
            _ => Err(reject(RejectDetail::OutsideFamily { from, to })),
        }
    }

    /// `WithdrawNotAllowed` unless `account` (existing) may withdraw.
    pub(crate) fn check_may_withdraw(&self, account: AccountId) -> Result<(), Rejection> {
        if self.settings(account).can_withdraw {
            Ok(())
        } else {
            Err(reject(RejectDetail::WithdrawForbidden { account }))
        }
    }

    /// Emits the `InsuranceFund` event of a command's change to the fund
    /// (`delta` minor units, already written); other owners emit nothing.
    pub(crate) fn emit_system_change(
        &self,
        owner: Owner,
        asset: AssetIdx,
        delta: i128,
        events: &mut Events,
    ) {
        if owner != Owner::Insurance {
            return;
        }
        let scale = self.scale(asset);
        let balance = self.balance_units(owner, asset).available;
        events.emit(|| Event::InsuranceFund {
            asset: self.symbol(asset).to_string(),
            delta: amount::to_decimal(delta, scale),
            balance: amount::to_decimal(balance, scale),
        });
    }

    // ----- commands ---------------------------------------------------------

    pub(crate) fn open_account(
        &mut self,
        c: &OpenAccount,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let account = c.account;
        if account == 0 {
            return Err(reject(RejectDetail::ReservedAccount));
        }
        if self.accounts.contains_key(&account) {
            return Err(reject(RejectDetail::AccountExists { account }));
        }
        let parent = (c.parent != 0).then_some(c.parent);
        if let Some(parent) = parent {
            match self.accounts.get(&parent) {
                None => return Err(reject(RejectDetail::UnknownParent { parent })),
                Some(p) if p.settings.parent.is_some() => {
                    return Err(reject(RejectDetail::ParentNotTopLevel { parent }));
                }
                Some(_) => {}
            }
        }
        if c.collateral == Wallet::Funding {
            return Err(reject(RejectDetail::CollateralWalletInvalid {
                wallet: c.collateral,
            }));
        }
        let settings = AccountSettings {
            parent,
            collateral: c.collateral,
            can_withdraw: c.can_withdraw,
            grants: Vec::new(),
            history: c.history,
        };
        self.accounts.insert(
            account,
            Account {
                balances: Vec::new(),
                settings,
                history: c.history.then(crate::history::History::default),
            },
        );
        self.dirty.push(DirtyKey::Account(account));
        events.emit(|| Event::AccountCreated { account });
        events.emit(|| Event::AccountOpened {
            account,
            parent: c.parent,
            collateral: c.collateral,
            can_withdraw: c.can_withdraw,
            history: c.history,
        });
        Ok(())
    }

    pub(crate) fn set_withdraw_allowed(
        &mut self,
        c: &SetWithdrawAllowed,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        self.check_account(c.account)?;
        if let Some(state) = self.accounts.get_mut(&c.account) {
            state.settings.can_withdraw = c.allowed;
        }
        self.dirty.push(DirtyKey::Account(c.account));
        events.emit(|| Event::WithdrawAllowed {
            account: c.account,
            allowed: c.allowed,
        });
        Ok(())
    }

    pub(crate) fn set_transfer_grant(
        &mut self,
        c: &SetTransferGrant,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let (master, from, to) = (c.master, c.from, c.to);
        for account in [master, from, to] {
            self.check_account(account)?;
        }
        for account in [from, to] {
            if self.settings(account).parent != Some(master) {
                return Err(reject(RejectDetail::NotSubAccountOf { master, account }));
            }
        }
        if from == to {
            return Err(reject(RejectDetail::GrantToItself { account: from }));
        }
        let grants = &self.settings(from).grants;
        let found = grants.binary_search(&to);
        if c.allowed && found.is_err() && grants.len() >= MAX_TRANSFER_GRANTS {
            return Err(reject(RejectDetail::GrantLimit {
                account: from,
                max: MAX_TRANSFER_GRANTS as u32,
            }));
        }
        if let Some(state) = self.accounts.get_mut(&from) {
            let grants = &mut state.settings.grants;
            match (c.allowed, found) {
                (true, Err(pos)) => grants.insert(pos, to),
                (false, Ok(pos)) => {
                    grants.remove(pos);
                }
                _ => {}
            }
        }
        self.dirty.push(DirtyKey::Account(from));
        events.emit(|| Event::TransferGrant {
            master,
            from,
            to,
            allowed: c.allowed,
        });
        Ok(())
    }

    pub(crate) fn wallet_transfer(
        &mut self,
        journal: &mut Journal,
        c: &WalletTransfer,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        self.check_account(c.from)?;
        self.check_account(c.to)?;
        let idx = self.asset_idx(&c.asset)?;
        let units = self.positive_units(c.amount, idx, Field::Amount)?;
        let from = Owner::wallet(c.from, c.from_wallet);
        let to = Owner::wallet(c.to, c.to_wallet);
        if from == to {
            return Err(reject(RejectDetail::TransferToItself { owner: from }));
        }
        self.check_family(c.from, c.to)?;
        self.check_wallet_available(from, idx, units)?;
        self.check_transferable(c.from, c.from_wallet, idx, units)?;
        self.post_pair(journal, from, to, idx, units, events)
    }

    pub(crate) fn wallet_deposit(
        &mut self,
        journal: &mut Journal,
        c: &WalletDeposit,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        self.check_account(c.account)?;
        let idx = self.asset_idx(&c.asset)?;
        let units = self.positive_units(c.amount, idx, Field::Amount)?;
        let to = Owner::wallet(c.account, c.wallet);
        self.post_pair(journal, Owner::External, to, idx, units, events)
    }

    pub(crate) fn wallet_withdraw(
        &mut self,
        journal: &mut Journal,
        c: &WalletWithdraw,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        self.check_account(c.account)?;
        self.check_may_withdraw(c.account)?;
        let idx = self.asset_idx(&c.asset)?;
        let units = self.positive_units(c.amount, idx, Field::Amount)?;
        let from = Owner::wallet(c.account, c.wallet);
        self.check_wallet_available(from, idx, units)?;
        self.check_transferable(c.account, c.wallet, idx, units)?;
        self.post_pair(journal, from, Owner::External, idx, units, events)
    }

    pub(crate) fn withdraw_insurance(
        &mut self,
        journal: &mut Journal,
        c: &WithdrawInsurance,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let to = self.system_payout_target(c.account, c.wallet)?;
        let (idx, units) = self.system_payout_units(Owner::Insurance, &c.asset, c.amount)?;
        self.post_pair(journal, Owner::Insurance, to, idx, units, events)?;
        self.emit_system_change(Owner::Insurance, idx, -units, events);
        Ok(())
    }

    pub(crate) fn sweep_fees(
        &mut self,
        journal: &mut Journal,
        c: &SweepFees,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let to = self.system_payout_target(c.account, c.wallet)?;
        let (idx, units) = self.system_payout_units(Owner::Fees, &c.asset, c.amount)?;
        self.post_pair(journal, Owner::Fees, to, idx, units, events)?;
        events.emit(|| Event::FeesSwept {
            asset: c.asset.clone(),
            account: c.account,
            wallet: c.wallet,
            amount: amount::to_decimal(units, self.scale(idx)),
        });
        Ok(())
    }

    /// The client wallet a system payout goes to (its account exists).
    fn system_payout_target(&self, account: AccountId, wallet: Wallet) -> Result<Owner, Rejection> {
        self.check_account(account)?;
        Ok(Owner::wallet(account, wallet))
    }

    /// The asset and positive amount of a payout from system owner `from`,
    /// which must hold it.
    fn system_payout_units(
        &self,
        from: Owner,
        asset: &str,
        amount: Decimal,
    ) -> Result<(AssetIdx, i128), Rejection> {
        let idx = self.asset_idx(asset)?;
        let units = self.positive_units(amount, idx, Field::Amount)?;
        let held = self.balance_units(from, idx).available;
        if held < units {
            let scale = self.scale(idx);
            return Err(reject(RejectDetail::OwnerShort {
                owner: from,
                available: amount::shown_decimal(held, scale),
                asset: asset.to_string(),
                needed: amount::shown_decimal(units, scale),
            }));
        }
        Ok((idx, units))
    }

    /// Moves `units` of `asset` from `from`'s available to `to`'s, after
    /// the range checks; the callers checked everything else.
    fn post_pair(
        &mut self,
        journal: &mut Journal,
        from: Owner,
        to: Owner,
        idx: AssetIdx,
        units: i128,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        postings!(let mut postings =
            (from, idx, -units, 0),
            (to, idx, units, 0),
        );
        self.check_postings(&mut postings)?;
        events.reserve(3);
        self.commit_postings(journal, &postings, events);
        Ok(())
    }
}
