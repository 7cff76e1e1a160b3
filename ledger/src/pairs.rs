//! The spot pair registry and the fills that name a pair, with fees in a
//! chosen asset per side and the buyer's price improvement returned per
//! fill; and partial hold releases (an order amended down).
//!
//! A `PairFill` is refused unless its buy hold holds the pair's quote and
//! its sell hold the pair's base (so swapped holds never settle as a trade
//! in the inverse pair), its base amount and prices fit the pair's scales
//! and the base amount is at least the pair's minimum.
//!
//! Fees (`Fee`): per side, an amount of the asset it receives (deducted
//! from what it receives; at most all of it: `FeeTooLarge`), of the asset
//! it pays (taken from its hold after the trade's own amount and any
//! refund: the order locked it; `FeeNotCovered` if the hold cannot), or of
//! any third asset such as an exchange token (taken from its spot
//! available; `FeeNotCovered` if short). Fees go to the fee account.
//!
//! Price improvement: with `buyer_limit_price > 0` the buy hold is debited
//! `base × limit` (what the order locked for this much base) of which
//! `base × (limit − price)` returns to the buyer's available at once, as
//! exchange-core refunds it; with zero the improvement stays on the hold
//! until it is released (the legacy `Fill` behaviour).

use rust_decimal::Decimal;

use crate::amount::{self, AmountError};
use crate::command::{
    CreatePair, Event, Fee, HoldId, MAX_ASSET_SCALE, MAX_PAIRS, Owner, PairFill, ReleasePart,
    is_valid_market_symbol,
};
use crate::engine::{Ledger, postings, reject};
use crate::events::Events;
use crate::journal::Journal;
use crate::reject::{Field, RejectDetail, Rejection, SHOWN_SYMBOL_CHARS, Side, shown};
use crate::state::{AssetIdx, DirtyKey, Hold};

/// Index of a pair in `Ledger::pairs` (creation order on this replica).
pub(crate) type PairIdx = u32;

/// A registered spot pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pair {
    pub symbol: String,
    pub base: AssetIdx,
    pub quote: AssetIdx,
    /// Most decimals of a fill's base amount (at most the base scale).
    pub size_scale: u32,
    /// Most decimals of a fill's price.
    pub price_scale: u32,
    /// Smallest base amount of a fill, base minor units (0: none).
    pub min_base: i128,
}

/// Where one side's fee comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FeeSource {
    /// Deducted from what the side receives.
    Received,
    /// From the side's hold, after the trade's amount.
    Hold,
    /// From the side's spot available of a third asset.
    Available,
}

/// One side's fee, resolved: asset, minor units, source.
#[derive(Clone, Copy, Debug)]
struct SideFee {
    asset: AssetIdx,
    units: i128,
    source: FeeSource,
}

/// A validated pair fill in minor units.
struct PairFillUnits {
    base: i128,
    quote: i128,
    /// Quote returned from the buy hold to the buyer's available.
    refund: i128,
    buyer_fee: SideFee,
    seller_fee: SideFee,
}

impl PairFillUnits {
    /// What the buy hold gives up: the quote, the refund and a fee paid from it.
    fn buy_taken(&self) -> i128 {
        self.quote + self.refund + held_fee(&self.buyer_fee)
    }

    /// What the sell hold gives up: the base and a fee paid from it.
    fn sell_taken(&self) -> i128 {
        self.base + held_fee(&self.seller_fee)
    }
}

fn held_fee(fee: &SideFee) -> i128 {
    if fee.source == FeeSource::Hold {
        fee.units
    } else {
        0
    }
}

/// The decimal places `value` needs (trailing zeros do not count).
fn decimals(value: Decimal) -> u32 {
    value.normalize().scale()
}

impl Ledger {
    fn pair_idx(&self, symbol: &str) -> Result<PairIdx, Rejection> {
        self.pair_index.get(symbol).copied().ok_or_else(|| {
            reject(RejectDetail::UnknownPair {
                pair: shown(symbol, SHOWN_SYMBOL_CHARS),
            })
        })
    }

    pub(crate) fn create_pair(
        &mut self,
        c: &CreatePair,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        if !is_valid_market_symbol(&c.pair) {
            return Err(reject(RejectDetail::MalformedPairSymbol {
                pair: shown(&c.pair, SHOWN_SYMBOL_CHARS),
            }));
        }
        if self.pair_index.contains_key(&c.pair) {
            return Err(reject(RejectDetail::PairExists {
                pair: c.pair.clone(),
            }));
        }
        let base = self.asset_idx(&c.base)?;
        let quote = self.asset_idx(&c.quote)?;
        if base == quote {
            return Err(reject(RejectDetail::PairSameAsset {
                asset: c.base.clone(),
            }));
        }
        let base_scale = self.scale(base);
        if c.size_scale > base_scale {
            return Err(reject(RejectDetail::PairSizeScale {
                size_scale: c.size_scale,
                base_scale,
            }));
        }
        if c.price_scale > MAX_ASSET_SCALE {
            return Err(reject(RejectDetail::PairPriceScale {
                price_scale: c.price_scale,
            }));
        }
        let min_base = self.fee_units(c.min_base_amount, base, Field::MinBaseAmount)?;
        self.check_pair_scale(
            &c.pair,
            Field::MinBaseAmount,
            c.min_base_amount,
            c.size_scale,
        )?;
        let Ok(idx) = PairIdx::try_from(self.pairs.len()) else {
            return Err(reject(RejectDetail::PairLimit));
        };
        if self.pairs.len() >= MAX_PAIRS {
            return Err(reject(RejectDetail::PairLimit));
        }
        self.pairs.push(Pair {
            symbol: c.pair.clone(),
            base,
            quote,
            size_scale: c.size_scale,
            price_scale: c.price_scale,
            min_base,
        });
        self.pair_index.insert(c.pair.clone(), idx);
        self.dirty.push(DirtyKey::Pair(idx));
        events.emit(|| Event::PairCreated {
            pair: c.pair.clone(),
            base: c.base.clone(),
            quote: c.quote.clone(),
        });
        Ok(())
    }

    /// `BadPrecision` if `value` has more than `scale` decimals.
    fn check_pair_scale(
        &self,
        pair: &str,
        field: Field,
        value: Decimal,
        scale: u32,
    ) -> Result<(), Rejection> {
        if decimals(value) <= scale {
            return Ok(());
        }
        Err(reject(RejectDetail::PairTooPrecise {
            field,
            value,
            scale,
            pair: pair.to_string(),
        }))
    }

    /// The open hold `id` of `side`, which must hold `expected`.
    fn pair_hold(
        &self,
        pair: &Pair,
        side: Side,
        id: HoldId,
        expected: AssetIdx,
    ) -> Result<Hold, Rejection> {
        let Some(&open) = self.holds.get(&id) else {
            return Err(reject(RejectDetail::FillHoldNotOpen { side, hold: id }));
        };
        if open.wallet != crate::command::Wallet::Spot {
            return Err(reject(RejectDetail::HoldNotSpot { side, hold: id }));
        }
        if open.asset != expected {
            return Err(reject(RejectDetail::PairHoldMismatch {
                pair: pair.symbol.clone(),
                side,
                hold: id,
                asset: self.symbol(open.asset).to_string(),
                expected: self.symbol(expected).to_string(),
            }));
        }
        Ok(open)
    }

    /// A pair fill's stateless checks: positive amount and price, a limit
    /// not below the price, everything within the pair's scales.
    fn check_pair_fill_inputs(&self, pair: &Pair, c: &PairFill) -> Result<(), Rejection> {
        for (field, value) in [(Field::Price, c.price), (Field::BaseAmount, c.base_amount)] {
            if !amount::is_positive(value) {
                return Err(reject(RejectDetail::NotPositive { field, value }));
            }
        }
        let limit = c.buyer_limit_price;
        if amount::is_negative(limit) {
            return Err(reject(RejectDetail::Negative {
                field: Field::BuyerLimitPrice,
                value: limit,
            }));
        }
        if amount::is_positive(limit) && limit < c.price {
            return Err(reject(RejectDetail::LimitBelowPrice {
                limit,
                price: c.price,
            }));
        }
        let (symbol, size_scale) = (&pair.symbol, pair.size_scale);
        self.check_pair_scale(symbol, Field::BaseAmount, c.base_amount, size_scale)?;
        self.check_pair_scale(symbol, Field::Price, c.price, pair.price_scale)?;
        self.check_pair_scale(symbol, Field::BuyerLimitPrice, limit, pair.price_scale)
    }

    /// `base_units` at `price` in quote minor units (exact).
    fn pair_quote(
        &self,
        pair: &Pair,
        base_units: i128,
        base_amount: Decimal,
        price: Decimal,
    ) -> Result<i128, Rejection> {
        let (base_scale, quote_scale) = (self.scale(pair.base), self.scale(pair.quote));
        amount::quote_units(base_units, base_scale, price, quote_scale).map_err(|e| match e {
            AmountError::TooPrecise => reject(RejectDetail::QuoteNotWhole {
                base_amount,
                base: self.symbol(pair.base).to_string(),
                price,
                quote: self.symbol(pair.quote).to_string(),
                quote_scale,
            }),
            AmountError::TooLarge => reject(RejectDetail::NotionalTooLarge {
                amount: base_amount,
                price,
            }),
        })
    }

    /// Resolves one side's fee: its asset (empty: `received`), units and
    /// source (see the module docs). Coverage is checked by the caller.
    fn side_fee(
        &self,
        fee: &Fee,
        field: Field,
        received: AssetIdx,
        paid: AssetIdx,
    ) -> Result<SideFee, Rejection> {
        let asset = if fee.asset.is_empty() {
            received
        } else {
            self.asset_idx(&fee.asset)?
        };
        let units = self.fee_units(fee.amount, asset, field)?;
        let source = if asset == received {
            FeeSource::Received
        } else if asset == paid {
            FeeSource::Hold
        } else {
            FeeSource::Available
        };
        Ok(SideFee {
            asset,
            units,
            source,
        })
    }

    /// `FeeTooLarge` / `FeeNotCovered` unless `fee` is covered: by what the
    /// side receives (`received` units), by what its hold keeps after the
    /// rest of the fill (`hold_left`), or by `account`'s available.
    fn check_fee_covered(
        &self,
        side: Side,
        fee: &SideFee,
        account: u64,
        received: i128,
        hold_left: i128,
        amount_given: Decimal,
    ) -> Result<(), Rejection> {
        let scale = self.scale(fee.asset);
        let has = match fee.source {
            FeeSource::Received => {
                if fee.units > received {
                    let field = match side {
                        Side::Buy => Field::BuyerFee,
                        Side::Sell => Field::SellerFee,
                    };
                    return Err(reject(RejectDetail::FeeExceedsReceived {
                        field,
                        fee: amount_given,
                        received: amount::shown_decimal(received, scale),
                    }));
                }
                return Ok(());
            }
            FeeSource::Hold => hold_left,
            FeeSource::Available => {
                self.balance_units(Owner::Account(account), fee.asset)
                    .available
            }
        };
        if fee.units <= has {
            return Ok(());
        }
        Err(reject(RejectDetail::FeeUncovered {
            side,
            fee: amount::shown_decimal(fee.units, scale),
            asset: self.symbol(fee.asset).to_string(),
            has: amount::shown_decimal(has.max(0), scale),
        }))
    }

    /// A pair fill's amounts and fees in minor units, checked against the
    /// pair's minimum and the two holds.
    fn pair_fill_units(
        &self,
        pair: &Pair,
        c: &PairFill,
        buy: &Hold,
        sell: &Hold,
    ) -> Result<PairFillUnits, Rejection> {
        let base = self.positive_units(c.base_amount, pair.base, Field::BaseAmount)?;
        if base < pair.min_base {
            return Err(reject(RejectDetail::UnderMinSize {
                pair: pair.symbol.clone(),
                base_amount: c.base_amount,
                min: amount::shown_decimal(pair.min_base, self.scale(pair.base)),
            }));
        }
        let quote = self.pair_quote(pair, base, c.base_amount, c.price)?;
        let refund = if amount::is_positive(c.buyer_limit_price) {
            let at_limit = self.pair_quote(pair, base, c.base_amount, c.buyer_limit_price)?;
            at_limit - quote
        } else {
            0
        };
        let buyer_fee = self.side_fee(&c.buyer_fee, Field::BuyerFee, pair.base, pair.quote)?;
        let seller_fee = self.side_fee(&c.seller_fee, Field::SellerFee, pair.quote, pair.base)?;
        let units = PairFillUnits {
            base,
            quote,
            refund,
            buyer_fee,
            seller_fee,
        };
        self.check_hold_covers(Side::Buy, c.buy_hold, buy, quote + refund)?;
        self.check_hold_covers(Side::Sell, c.sell_hold, sell, base)?;
        let buy_left = buy.remaining - quote - refund;
        let sell_left = sell.remaining - base;
        self.check_fee_covered(
            Side::Buy,
            &buyer_fee,
            buy.account,
            base,
            buy_left,
            c.buyer_fee.amount,
        )?;
        self.check_fee_covered(
            Side::Sell,
            &seller_fee,
            sell.account,
            quote,
            sell_left,
            c.seller_fee.amount,
        )?;
        Ok(units)
    }

    pub(crate) fn pair_fill(
        &mut self,
        journal: &mut Journal,
        c: &PairFill,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let pair = self.pairs[self.pair_idx(&c.pair)? as usize].clone();
        self.check_pair_fill_inputs(&pair, c)?;
        let buy = self.pair_hold(&pair, Side::Buy, c.buy_hold, pair.quote)?;
        let sell = self.pair_hold(&pair, Side::Sell, c.sell_hold, pair.base)?;
        let u = self.pair_fill_units(&pair, c, &buy, &sell)?;
        let (buyer, seller) = (Owner::Account(buy.account), Owner::Account(sell.account));
        let (bf, sf) = (u.buyer_fee, u.seller_fee);
        let received_fee = |fee: &SideFee| {
            if fee.source == FeeSource::Received {
                fee.units
            } else {
                0
            }
        };
        let available_fee = |fee: &SideFee| {
            if fee.source == FeeSource::Available {
                fee.units
            } else {
                0
            }
        };
        postings!(let mut postings =
            (buyer, pair.quote, u.refund, -u.buy_taken()),
            (buyer, pair.base, u.base - received_fee(&bf), 0),
            (seller, pair.base, 0, -u.sell_taken()),
            (seller, pair.quote, u.quote - received_fee(&sf), 0),
            (Owner::Fees, bf.asset, bf.units, 0),
            (Owner::Fees, sf.asset, sf.units, 0),
            (buyer, bf.asset, -available_fee(&bf), 0),
            (seller, sf.asset, -available_fee(&sf), 0),
        );
        self.check_postings(&mut postings)?;

        // Everything validated: mutate.
        events.reserve(1 + crate::engine::MAX_POSTINGS + 2);
        self.emit_pair_fill(&pair, c, &buy, &sell, &u, events);
        self.commit_postings(journal, &postings, events);
        let taken = [
            (c.buy_hold, buy, u.buy_taken()),
            (c.sell_hold, sell, u.sell_taken()),
        ];
        for (hold, open, taken) in taken {
            self.take_from_hold(journal, hold, open, taken, events);
        }
        Ok(())
    }

    fn emit_pair_fill(
        &self,
        pair: &Pair,
        c: &PairFill,
        buy: &Hold,
        sell: &Hold,
        u: &PairFillUnits,
        events: &mut Events,
    ) {
        let (base_scale, quote_scale) = (self.scale(pair.base), self.scale(pair.quote));
        events.emit(|| Event::PairFill {
            pair: pair.symbol.clone(),
            buyer: buy.account,
            seller: sell.account,
            base_amount: amount::to_decimal(u.base, base_scale),
            quote_amount: amount::to_decimal(u.quote, quote_scale),
            price: c.price,
            buyer_fee_asset: self.symbol(u.buyer_fee.asset).to_string(),
            buyer_fee: amount::to_decimal(u.buyer_fee.units, self.scale(u.buyer_fee.asset)),
            seller_fee_asset: self.symbol(u.seller_fee.asset).to_string(),
            seller_fee: amount::to_decimal(u.seller_fee.units, self.scale(u.seller_fee.asset)),
            price_improvement: amount::to_decimal(u.refund, quote_scale),
        });
    }

    /// Takes `taken` (covered: checked) from hold `hold`, closing it at zero.
    pub(crate) fn take_from_hold(
        &mut self,
        journal: &mut Journal,
        hold: HoldId,
        open: Hold,
        taken: i128,
        events: &mut Events,
    ) {
        let remaining = open.remaining - taken;
        assert!(
            remaining >= 0,
            "invariant broken: hold {hold} would have {remaining} left"
        );
        let left = Hold { remaining, ..open };
        self.write_hold(journal, hold, (remaining > 0).then_some(left));
        events.emit(|| self.hold_event(hold, open.account, open.asset, remaining, remaining == 0));
    }

    pub(crate) fn release_part(
        &mut self,
        journal: &mut Journal,
        c: &ReleasePart,
        events: &mut Events,
    ) -> Result<(), Rejection> {
        let Some(&open) = self.holds.get(&c.hold) else {
            return Err(reject(RejectDetail::HoldNotOpen { hold: c.hold }));
        };
        let units = self.positive_units(c.amount, open.asset, Field::Amount)?;
        if units > open.remaining {
            return Err(reject(RejectDetail::ReleaseAboveRemaining {
                hold: c.hold,
                amount: c.amount,
                remaining: amount::shown_decimal(open.remaining, self.scale(open.asset)),
            }));
        }
        let owner = Owner::wallet(open.account, open.wallet);
        postings!(let mut postings = (owner, open.asset, units, -units));
        self.check_postings(&mut postings)?;
        events.reserve(2);
        self.commit_postings(journal, &postings, events);
        self.take_from_hold(journal, c.hold, open, units, events);
        Ok(())
    }
}
