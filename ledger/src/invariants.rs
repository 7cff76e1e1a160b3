//! `Ledger::check_invariants`: the properties every state must have —
//! conservation per asset, no negative client `available`, `locked` equal to
//! the open holds, every magnitude within `MAX_UNITS`, and internal
//! consistency (asset index, holds, dedup table). Used after every step in
//! tests and on every `from_records`.
//!
//! Perpetual markets add: each settle asset's PnL pools count in its
//! conservation sum; per market, positions (plus the insurance fund's
//! inventory) net to zero size, the pool equals minus the total cost basis,
//! every size is a non-zero multiple of the step with a cost of the same
//! sign (or zero), positions exist only with a mark price, and the
//! parameters are well-formed (brackets, cumulative amounts, rates). A
//! client's available may be negative only in a settle asset in which it
//! holds no position (a reported liquidation shortfall). A market's
//! instrument terms fit its kind, and a settled dated future holds no
//! position.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::amount::{display, in_range};
use crate::command::{
    AccountId, MAX_LEVERAGE, MAX_MARGIN_BRACKETS, MAX_TRANSFER_GRANTS, MAX_UNITS, Owner, Wallet,
    is_valid_market_symbol,
};
use crate::engine::Ledger;
use crate::market::{InstrumentKind, Market, Position, RATE_ONE, with_cum};
use crate::state::{AssetIdx, BalanceSlot, SYSTEM_OWNERS};

/// A market's parameters are well-formed.
fn check_market(market: &Market) -> Result<(), String> {
    let name = &market.symbol;
    if !is_valid_market_symbol(name) {
        return Err(format!("market {name:?} has a bad symbol"));
    }
    if market.tick <= 0 || market.step <= 0 {
        return Err(format!("market {name} has a non-positive tick or step"));
    }
    if market.price_scale + market.size_scale > market.settle_scale {
        return Err(format!(
            "market {name} tick and step scales exceed the settle scale"
        ));
    }
    if !(1..=MAX_LEVERAGE).contains(&market.max_leverage) {
        return Err(format!("market {name} max leverage out of range"));
    }
    if !(0..RATE_ONE).contains(&market.liquidation_fee_rate) {
        return Err(format!("market {name} liquidation fee rate out of range"));
    }
    if market.funding_interval_ms == 0 {
        return Err(format!("market {name} has a zero funding interval"));
    }
    let b = &market.brackets;
    if b.is_empty() || b.len() > MAX_MARGIN_BRACKETS || b[0].floor != 0 {
        return Err(format!("market {name} brackets malformed"));
    }
    for (i, bracket) in b.iter().enumerate() {
        let leverage = i128::from(market.max_leverage.min(bracket.max_leverage));
        let rate_ok = 0 < bracket.mmr && bracket.mmr < RATE_ONE;
        let leverage_ok = (1..=MAX_LEVERAGE).contains(&bracket.max_leverage);
        if !rate_ok || !leverage_ok || bracket.mmr.saturating_mul(leverage) >= RATE_ONE {
            return Err(format!("market {name} bracket {i} malformed"));
        }
        if i > 0 {
            let prev = &b[i - 1];
            if bracket.floor <= prev.floor
                || bracket.mmr < prev.mmr
                || bracket.max_leverage > prev.max_leverage
            {
                return Err(format!("market {name} bracket {i} out of order"));
            }
        }
    }
    let tiers: Vec<_> = b.iter().map(|x| (x.floor, x.mmr, x.max_leverage)).collect();
    if with_cum(&tiers).as_deref() != Some(b.as_slice()) {
        return Err(format!(
            "market {name} cumulative maintenance amounts inconsistent"
        ));
    }
    // A settled option expired out of the money keeps a mark of 0.
    let zero_mark_ok = market.instrument.option.is_some() && market.state.settlement.is_some();
    if market
        .state
        .mark
        .is_some_and(|m| (m.price < 0 || (m.price == 0 && !zero_mark_ok)) || !in_range(m.price))
    {
        return Err(format!("market {name} has a bad mark price"));
    }
    check_instrument(market)
}

/// A market's contract terms fit its kind; a settled dated future holds no
/// position and no insurance inventory.
fn check_instrument(market: &Market) -> Result<(), String> {
    let name = &market.symbol;
    let i = &market.instrument;
    match i.kind {
        InstrumentKind::Perpetual => {
            if i.expiry_ms != 0
                || i.delivery_fee_rate != 0
                || market.state.settlement.is_some()
                || i.option.is_some()
            {
                return Err(format!("perpetual {name} has dated-future terms"));
            }
        }
        InstrumentKind::DatedFuture => {
            if i.expiry_ms == 0
                || !(0..RATE_ONE).contains(&i.delivery_fee_rate)
                || i.option.is_some()
            {
                return Err(format!("dated future {name} has bad terms"));
            }
        }
        kind => check_option_terms(market, kind)?,
    }
    if i.inverse_contract_value < 0 || (i.is_inverse() && i.option.is_some()) {
        return Err(format!("market {name} has a bad contract value"));
    }
    if let Some(price) = market.state.settlement {
        if price <= 0 || !in_range(price) {
            return Err(format!("market {name} has a bad settlement price"));
        }
        if !market.positions.is_empty() || market.state.insurance.size != 0 {
            return Err(format!("settled market {name} still holds positions"));
        }
    }
    Ok(())
}

/// An option's terms fit its kind; its client positions keep no cost.
fn check_option_terms(market: &Market, kind: InstrumentKind) -> Result<(), String> {
    let name = &market.symbol;
    let i = &market.instrument;
    let Some(o) = i.option else {
        return Err(format!("option {name} has no option terms"));
    };
    let rates_ok = 0 < o.mm_rate
        && o.mm_rate <= o.im_floor_rate
        && o.im_floor_rate <= o.im_rate
        && o.im_rate < RATE_ONE
        && (0..RATE_ONE).contains(&o.fee_cap_rate)
        && (0..RATE_ONE).contains(&i.delivery_fee_rate);
    let expiry_ok = kind.expires() == (i.expiry_ms != 0);
    let funding_ok = kind.expires() || o.funding_period_ms > 0;
    if !rates_ok || !expiry_ok || !funding_ok || o.strike <= 0 {
        return Err(format!("option {name} has bad terms"));
    }
    if o.underlying_price_scale > market.price_scale {
        return Err(format!(
            "option {name} is priced coarser than its underlying"
        ));
    }
    if market.positions.values().any(|p| p.cost != 0) {
        return Err(format!(
            "option {name} has a client position with a cost basis"
        ));
    }
    Ok(())
}

/// A position (client or insurance inventory) is well-formed.
fn check_position(market: &Market, who: &str, p: Position) -> Result<(), String> {
    let name = &market.symbol;
    if !in_range(p.size) || !in_range(p.cost) {
        return Err(format!("{who} position in {name} out of range"));
    }
    if p.size % market.step != 0 {
        return Err(format!(
            "{who} position in {name} is not a multiple of the step"
        ));
    }
    // An inverse position's value (and cost) has the opposite sign.
    let same_sign = (p.cost > 0) == (p.size > 0);
    if p.cost != 0 && (p.size == 0 || same_sign == market.instrument.is_inverse()) {
        return Err(format!(
            "{who} position in {name} has size {} but cost {}",
            p.size, p.cost
        ));
    }
    Ok(())
}

impl Ledger {
    /// Checks conservation (every asset sums to zero over all owners incl.
    /// system accounts), no negative available on client accounts, locked ==
    /// sum of open holds per (account, asset), all |balances| <= MAX_UNITS.
    /// Err with a description of the first violation (accounts and holds are
    /// visited in id order, so the report is deterministic).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_money_invariants()?;
        self.dedup.check()
    }

    /// [`Ledger::check_invariants`] without the idempotency table's
    /// self-check (an index probe per remembered command): for a ledger
    /// whose table `DedupTable::restore` just built, which refuses a
    /// repeated id and indexes each entry as it pushes it.
    pub(crate) fn check_money_invariants(&self) -> Result<(), String> {
        let mut t = Totals::default();
        self.check_assets(&mut t)?;
        self.check_markets(&mut t)?;
        self.check_holds(&mut t)?;
        self.check_accounts(&mut t)?;
        self.check_conservation(t)?;
        self.check_ingest()?;
        self.check_pairs()
    }

    /// `units` of asset `idx` for a message ("1.5 BTC").
    fn amount(&self, units: i128, idx: AssetIdx) -> String {
        format!("{} {}", display(units, self.scale(idx)), self.symbol(idx))
    }

    /// The asset index and the system balances (locked zero, in range);
    /// starts the per-asset sums.
    fn check_assets(&self, t: &mut Totals) -> Result<(), String> {
        if self.asset_index.len() != self.assets.len() {
            return Err("asset index and asset table differ in size".into());
        }
        t.sums = vec![0i128; self.assets.len()];
        for (i, asset) in self.assets.iter().enumerate() {
            if self.asset_index.get(&asset.symbol).map(|&idx| idx as usize) != Some(i) {
                return Err(format!("asset {} missing from the index", asset.symbol));
            }
            for (owner, balance) in SYSTEM_OWNERS.iter().zip(asset.system) {
                let idx = i as AssetIdx;
                if balance.locked != 0 {
                    return Err(format!(
                        "{owner:?} has {} locked",
                        self.amount(balance.locked, idx)
                    ));
                }
                if !in_range(balance.available) {
                    return Err(format!("{owner:?} {} out of range", asset.symbol));
                }
                t.sums[i] += balance.available;
            }
        }
        Ok(())
    }

    /// Markets: index, order, parameters, positions, pools; notes which
    /// accounts hold positions in which settle assets.
    fn check_markets(&self, t: &mut Totals) -> Result<(), String> {
        if self.market_index.len() != self.markets.len()
            || self.market_order.len() != self.markets.len()
        {
            return Err("market index, order and table differ in size".into());
        }
        if !self.market_order.windows(2).all(|w| {
            self.markets.get(w[0] as usize).map(|m| &m.symbol)
                < self.markets.get(w[1] as usize).map(|m| &m.symbol)
        }) {
            return Err("market order is not sorted by symbol".into());
        }
        for &m in &self.market_order {
            let Some(market) = self.markets.get(m as usize) else {
                return Err("market order names a missing market".into());
            };
            let name = &market.symbol;
            if self.market_index.get(name) != Some(&m) {
                return Err(format!("market {name} missing from the index"));
            }
            check_market(market)?;
            let Some(sum) = t.sums.get_mut(market.settle as usize) else {
                return Err(format!("market {name} settles in an unknown asset"));
            };
            if self.assets[market.settle as usize].scale != market.settle_scale {
                return Err(format!("market {name} settle scale differs from its asset"));
            }
            t.settle_assets.insert(market.settle);
            let state = &market.state;
            check_position(market, "insurance", state.insurance)?;
            let (mut net_size, mut total_cost) = (state.insurance.size, state.insurance.cost);
            for (&account, &position) in &market.positions {
                if !self.accounts.contains_key(&account) {
                    return Err(format!("position in {name} of unknown account {account}"));
                }
                if position.size == 0 {
                    return Err(format!("account {account} has an empty position in {name}"));
                }
                check_position(market, &format!("account {account}"), position)?;
                net_size = net_size
                    .checked_add(position.size)
                    .ok_or_else(|| format!("sizes of {name} overflow"))?;
                total_cost = total_cost
                    .checked_add(position.cost)
                    .ok_or_else(|| format!("costs of {name} overflow"))?;
                t.exposed.insert((account, market.settle));
            }
            if net_size != 0 {
                return Err(format!("positions in {name} net to {net_size}, not zero"));
            }
            if total_cost.checked_add(state.pool) != Some(0) {
                return Err(format!(
                    "pool of {name} is {} but the positions' cost basis totals {}",
                    self.amount(state.pool, market.settle),
                    self.amount(total_cost, market.settle)
                ));
            }
            let holds_any = !market.positions.is_empty() || state.insurance.size != 0;
            if holds_any && state.mark.is_none() {
                return Err(format!("market {name} has positions but no mark price"));
            }
            if !in_range(state.pool) {
                return Err(format!("pool of {name} out of range"));
            }
            *sum += state.pool;
            for (&account, &margin) in &market.isolated {
                if !self.accounts.contains_key(&account) || !(0..=MAX_UNITS).contains(&margin) {
                    return Err(format!(
                        "isolated margin {margin} in {name} of account {account} is bad"
                    ));
                }
                *sum += margin;
            }
        }
        Ok(())
    }

    /// Every open hold is well-formed and belongs to a known account and
    /// asset; totals them per (account, asset).
    fn check_holds(&self, t: &mut Totals) -> Result<(), String> {
        // Sorted on the next line: hash order cannot reach the error returned.
        #[allow(clippy::disallowed_methods)]
        let mut hold_ids: Vec<_> = self.holds.keys().copied().collect();
        hold_ids.sort_unstable();
        for id in hold_ids {
            let hold = self.holds[&id];
            if hold.asset as usize >= self.assets.len() {
                return Err(format!("hold {id} has an unknown asset"));
            }
            if !self.accounts.contains_key(&hold.account) {
                return Err(format!(
                    "hold {id} belongs to unknown account {}",
                    hold.account
                ));
            }
            if !(0 < hold.remaining && hold.remaining <= hold.amount && in_range(hold.amount)) {
                return Err(format!(
                    "hold {id} has remaining {} of {}",
                    self.amount(hold.remaining, hold.asset),
                    self.amount(hold.amount, hold.asset)
                ));
            }
            if !matches!(hold.wallet, Wallet::Spot | Wallet::Margin) {
                return Err(format!("hold {id} is in the {} wallet", hold.wallet));
            }
            let total = t
                .held
                .entry((hold.account, hold.wallet, hold.asset))
                .or_insert(0);
            *total = total
                .checked_add(hold.remaining)
                .ok_or_else(|| format!("holds of account {} overflow", hold.account))?;
        }
        Ok(())
    }

    /// Client balances: in range, sorted, not negative (but for a reported
    /// shortfall), locked equal to the open holds.
    fn check_accounts(&self, t: &mut Totals) -> Result<(), String> {
        // Sorted on the next line: hash order cannot reach the error returned.
        #[allow(clippy::disallowed_methods)]
        let mut account_ids: Vec<_> = self.accounts.keys().copied().collect();
        account_ids.sort_unstable();
        for id in account_ids {
            if id == 0 {
                return Err("account 0 exists".into());
            }
            let account = &self.accounts[&id];
            let key = |s: &BalanceSlot| (s.wallet, s.asset);
            if !account.balances.windows(2).all(|w| key(&w[0]) < key(&w[1])) {
                return Err(format!("account {id} balances out of order"));
            }
            self.check_settings(id)?;
            let collateral = account.settings.collateral;
            for &BalanceSlot {
                wallet,
                asset: idx,
                balance,
                ..
            } in &account.balances
            {
                let Some(sum) = t.sums.get_mut(idx as usize) else {
                    return Err(format!("account {id} has a balance in an unknown asset"));
                };
                if !in_range(balance.available) || !in_range(balance.locked) {
                    return Err(format!(
                        "{:?} {} out of range",
                        Owner::wallet(id, wallet),
                        self.symbol(idx)
                    ));
                }
                let shortfall = wallet == collateral
                    && t.settle_assets.contains(&idx)
                    && !t.exposed.contains(&(id, idx));
                if balance.available < 0 && !shortfall {
                    return Err(format!(
                        "account {id} has negative available {}",
                        self.amount(balance.available, idx)
                    ));
                }
                let in_holds = t.held.remove(&(id, wallet, idx)).unwrap_or(0);
                if balance.locked != in_holds {
                    return Err(format!(
                        "account {id} has {} locked but its open holds total {}",
                        self.amount(balance.locked, idx),
                        self.amount(in_holds, idx)
                    ));
                }
                // Each term is within ±1e28, so a sum over fewer than 1.7e10
                // balances cannot overflow; check anyway.
                *sum = sum
                    .checked_add(balance.available + balance.locked)
                    .ok_or_else(|| format!("sum of {} overflows", self.symbol(idx)))?;
            }
        }
        Ok(())
    }

    /// Pairs: indexed once each, two different known assets, scales in range.
    fn check_pairs(&self) -> Result<(), String> {
        if self.pair_index.len() != self.pairs.len() {
            return Err("pair index and pair table differ in size".into());
        }
        for (i, pair) in self.pairs.iter().enumerate() {
            let name = &pair.symbol;
            if self.pair_index.get(name).map(|&idx| idx as usize) != Some(i) {
                return Err(format!("pair {name} missing from the index"));
            }
            let known = |a: AssetIdx| (a as usize) < self.assets.len();
            if !known(pair.base) || !known(pair.quote) || pair.base == pair.quote {
                return Err(format!("pair {name} has bad assets"));
            }
            let base_scale = self.assets[pair.base as usize].scale;
            if pair.size_scale > base_scale
                || pair.price_scale > crate::command::MAX_ASSET_SCALE
                || !(0..=crate::command::MAX_UNITS).contains(&pair.min_base)
            {
                return Err(format!("pair {name} has bad scales or minimum"));
            }
        }
        Ok(())
    }

    /// An account's settings are consistent: a parent exists, is another
    /// top-level account; the collateral is spot or margin; grants are
    /// sorted, bounded, distinct siblings.
    fn check_settings(&self, id: AccountId) -> Result<(), String> {
        let settings = &self.accounts[&id].settings;
        if let Some(parent) = settings.parent {
            let top_level = self
                .accounts
                .get(&parent)
                .is_some_and(|p| p.settings.parent.is_none());
            if parent == id || !top_level {
                return Err(format!("account {id} has a bad parent {parent}"));
            }
        }
        if settings.collateral == Wallet::Funding {
            return Err(format!("account {id} has funding collateral"));
        }
        let account = &self.accounts[&id];
        if settings.history != account.history.is_some() {
            return Err(format!("account {id} history flag and kept history differ"));
        }
        if let Some(history) = &account.history {
            let entries = &history.entries;
            let ordered = entries
                .iter()
                .zip(entries.iter().skip(1))
                .all(|(a, b)| a.seq < b.seq);
            let known = entries
                .iter()
                .all(|e| (e.asset as usize) < self.assets.len());
            if !ordered || !known || entries.len() > crate::history::MAX_HISTORY_PER_ACCOUNT {
                return Err(format!(
                    "account {id} history out of order, unknown or too long"
                ));
            }
        }
        let grants = &settings.grants;
        if grants.len() > MAX_TRANSFER_GRANTS || !grants.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!("account {id} grants unsorted or too many"));
        }
        for to in grants {
            let sibling = self.accounts.get(to).is_some_and(|t| {
                t.settings.parent.is_some() && t.settings.parent == settings.parent
            });
            if *to == id || !sibling {
                return Err(format!("account {id} has a grant to non-sibling {to}"));
            }
        }
        Ok(())
    }

    /// No hold without its balance, and every asset sums to zero.
    fn check_conservation(&self, t: Totals) -> Result<(), String> {
        // Sorted on the next line: hash order cannot reach the error returned.
        #[allow(clippy::disallowed_methods)]
        let mut leftover: Vec<_> = t.held.into_iter().collect();
        leftover.sort_unstable();
        if let Some(((account, _, idx), total)) = leftover.first() {
            return Err(format!(
                "account {account} has open holds of {} but no such balance",
                self.amount(*total, *idx)
            ));
        }

        for (i, sum) in t.sums.iter().enumerate() {
            if *sum != 0 {
                return Err(format!(
                    "conservation: {} t.sums to {}",
                    self.assets[i].symbol,
                    self.amount(*sum, i as AssetIdx)
                ));
            }
        }
        Ok(())
    }
}

/// What `check_invariants` accumulates while it walks the state.
#[derive(Default)]
struct Totals {
    /// Per asset: the sum over every owner and PnL pool (must end at zero).
    sums: Vec<i128>,
    /// (account, settle asset) pairs in which the account holds a position.
    exposed: FxHashSet<(AccountId, AssetIdx)>,
    /// Assets some market settles in.
    settle_assets: FxHashSet<AssetIdx>,
    /// What the open holds lock, per (account, asset).
    held: FxHashMap<(AccountId, Wallet, AssetIdx), i128>,
}
