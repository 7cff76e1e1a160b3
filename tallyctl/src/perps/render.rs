//! Perpetual futures' output: text and JSON of markets, positions, margins,
//! exposure, and of the perpetual events in write outcomes.

use serde_json::{Value, json};
use tally_client::proto::v1::{
    self as pb, GetExposureResponse, GetMarginResponse, GetMarketResponse, GetPositionResponse,
    PositionInfo, event,
};

use crate::render::{
    change_text, or_dash, owner_json, owner_text, push_indented, read_suffix, table,
};

fn none_if_empty(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

fn cause_name(cause: i32) -> &'static str {
    match pb::PositionCause::try_from(cause) {
        Ok(pb::PositionCause::Fill) => "fill",
        Ok(pb::PositionCause::Liquidation) => "liquidation",
        Ok(pb::PositionCause::Deleverage) => "deleverage",
        Ok(pb::PositionCause::Takeover) => "takeover",
        Ok(pb::PositionCause::Mark) => "mark",
        Ok(pb::PositionCause::Settlement) => "settlement",
        Err(_) => "unknown",
    }
}

/// One line for a perpetual event in a write outcome (`None`: not a
/// perpetual event).
pub fn event_text(kind: &event::Kind) -> Option<String> {
    use event::Kind;
    let text = match kind {
        Kind::MarketCreated(e) => format!(
            "market {} created ({} settled in {})",
            e.market, e.base, e.settle_asset
        ),
        Kind::MarketPaused(e) => format!(
            "market {} {}",
            e.market,
            if e.paused {
                "paused (reduce-only)"
            } else {
                "resumed"
            }
        ),
        Kind::MarkPrice(e) => format!(
            "mark price of {} is {} (time {} ms)",
            e.market, e.price, e.time_ms
        ),
        Kind::PerpFill(e) => format!(
            "perp fill {} {} at {}: buyer {} fee {}, seller {} fee {}",
            e.size, e.market, e.price, e.buyer, e.buyer_fee, e.seller, e.seller_fee
        ),
        Kind::Position(e) => format!(
            "{} {} {} {} at {} with {}: size {}, entry {} realized {}",
            owner_text(e.holder.as_ref()),
            e.market,
            cause_name(e.cause),
            e.size_delta,
            e.price,
            owner_text(e.counterparty.as_ref()),
            change_text(&e.size_delta, &e.size),
            e.entry_price,
            e.realized_pnl
        ),
        Kind::Pool(e) => format!(
            "{} PnL pool {} {}",
            e.market,
            e.asset,
            change_text(&e.delta, &e.balance)
        ),
        Kind::Funding(e) => format!(
            "funding {} at {} ms, rate {} at mark {}: paid {}, received {}, residue {} to insurance, uncollected {}",
            e.market,
            e.funding_time_ms,
            e.rate,
            e.mark_price,
            e.paid,
            e.received,
            e.residue,
            e.uncollected
        ),
        Kind::FundingPayment(e) => format!(
            "{} funding {} in {}",
            owner_text(e.holder.as_ref()),
            e.amount,
            e.market
        ),
        Kind::Liquidation(e) => format!(
            "account {} liquidated ({}): equity {} below maintenance margin {}, fee {}",
            e.account, e.asset, e.equity, e.maintenance_margin, e.fee
        ),
        Kind::Shortfall(e) => format!(
            "SHORTFALL: account {} left at -{} {} (insurance and auto-deleveraging exhausted)",
            e.account, e.amount, e.asset
        ),
        Kind::LiquidationsDeferred(e) => format!(
            "liquidations in {} deferred to the next mark price: bound reached after {} liquidations, {} checks",
            e.asset, e.liquidated, e.checked
        ),
        Kind::Settlement(e) => format!(
            "{} settled at {} ({} ms): {} positions closed, realized {}, delivery fees {}",
            e.market, e.price, e.time_ms, e.positions, e.realized, e.delivery_fees
        ),
        Kind::OptionFunding(e) => format!(
            "option funding {} at {} ms: mark {}, underlying {}, time value {} for {} of {} ms: paid {}, received {}, residue {} to insurance, uncollected {}",
            e.market,
            e.funding_time_ms,
            e.mark_price,
            e.underlying_price,
            e.time_value,
            e.elapsed_ms,
            e.period_ms,
            e.paid,
            e.received,
            e.residue,
            e.uncollected
        ),
        Kind::FundingRate(e) => format!(
            "funding rate of {} from {} premium samples: premium index {}, interest {}, clamp {}: rate {}",
            e.market, e.samples, e.premium_index, e.interest_rate, e.clamp_rate, e.rate
        ),
        _ => return None,
    };
    Some(text)
}

/// JSON of a perpetual event in a write outcome (`None`: not a perpetual
/// event).
pub fn event_json(kind: &event::Kind) -> Option<Value> {
    use event::Kind;
    let value = match kind {
        Kind::MarketCreated(e) => json!({
            "type": "market_created", "market": e.market, "base": e.base,
            "settle_asset": e.settle_asset,
        }),
        Kind::MarketPaused(e) => {
            json!({"type": "market_paused", "market": e.market, "paused": e.paused})
        }
        Kind::MarkPrice(e) => json!({
            "type": "mark_price", "market": e.market, "price": e.price, "time_ms": e.time_ms,
        }),
        Kind::PerpFill(e) => json!({
            "type": "perp_fill", "market": e.market, "buyer": e.buyer, "seller": e.seller,
            "size": e.size, "price": e.price, "buyer_fee": e.buyer_fee, "seller_fee": e.seller_fee,
        }),
        Kind::Position(e) => json!({
            "type": "position", "market": e.market,
            "holder": owner_json(e.holder.as_ref()),
            "counterparty": owner_json(e.counterparty.as_ref()),
            "cause": cause_name(e.cause), "size_delta": e.size_delta, "price": e.price,
            "size": e.size, "entry_price": e.entry_price, "realized_pnl": e.realized_pnl,
        }),
        Kind::Pool(e) => json!({
            "type": "pool", "market": e.market, "asset": e.asset, "delta": e.delta,
            "balance": e.balance,
        }),
        Kind::Funding(e) => json!({
            "type": "funding", "market": e.market, "rate": e.rate,
            "funding_time_ms": e.funding_time_ms, "mark_price": e.mark_price, "paid": e.paid,
            "received": e.received, "residue": e.residue, "uncollected": e.uncollected,
        }),
        Kind::FundingPayment(e) => json!({
            "type": "funding_payment", "market": e.market,
            "holder": owner_json(e.holder.as_ref()), "amount": e.amount,
        }),
        Kind::Liquidation(e) => json!({
            "type": "liquidation", "account": e.account, "asset": e.asset, "equity": e.equity,
            "maintenance_margin": e.maintenance_margin, "fee": e.fee,
        }),
        Kind::Shortfall(e) => json!({
            "type": "shortfall", "account": e.account, "asset": e.asset, "amount": e.amount,
        }),
        Kind::LiquidationsDeferred(e) => json!({
            "type": "liquidations_deferred", "asset": e.asset,
            "liquidated": e.liquidated, "checked": e.checked,
        }),
        Kind::Settlement(e) => json!({
            "type": "settlement", "market": e.market, "price": e.price,
            "time_ms": e.time_ms, "positions": e.positions, "realized": e.realized,
            "delivery_fees": e.delivery_fees,
        }),
        Kind::OptionFunding(e) => json!({
            "type": "option_funding", "market": e.market,
            "funding_time_ms": e.funding_time_ms, "mark_price": e.mark_price,
            "underlying_price": e.underlying_price, "time_value": e.time_value,
            "elapsed_ms": e.elapsed_ms, "period_ms": e.period_ms, "paid": e.paid,
            "received": e.received, "residue": e.residue, "uncollected": e.uncollected,
        }),
        Kind::FundingRate(e) => json!({
            "type": "funding_rate", "market": e.market, "samples": e.samples,
            "premium_index": e.premium_index, "interest_rate": e.interest_rate,
            "clamp_rate": e.clamp_rate, "rate": e.rate,
        }),
        _ => return None,
    };
    Some(value)
}

pub fn market_json(m: &pb::Market) -> Value {
    json!({
        "market": m.market,
        "base": m.base,
        "settle_asset": m.settle_asset,
        "tick_size": m.tick_size,
        "step_size": m.step_size,
        "max_leverage": m.max_leverage,
        "brackets": m.brackets.iter().map(|b| json!({
            "notional_floor": b.notional_floor,
            "maintenance_margin_rate": b.maintenance_margin_rate,
            "max_leverage": b.max_leverage,
            "maintenance_amount": b.maintenance_amount,
        })).collect::<Vec<_>>(),
        "liquidation_fee_rate": m.liquidation_fee_rate,
        "funding_interval_ms": m.funding_interval_ms,
        "paused": m.paused,
        "mark_price": none_if_empty(&m.mark_price),
        "mark_time_ms": (!m.mark_price.is_empty()).then_some(m.mark_time_ms),
        "last_funding_time_ms": m.funded.then_some(m.last_funding_time_ms),
        "kind": none_if_empty(&m.kind),
        "expiry_ms": (m.expiry_ms != 0).then_some(m.expiry_ms),
        "delivery_fee_rate": none_if_empty(&m.delivery_fee_rate),
        "settlement_price": none_if_empty(&m.settlement_price),
        "underlying": none_if_empty(&m.underlying),
        "strike": none_if_empty(&m.strike),
        "contract_value": none_if_empty(&m.contract_value),
    })
}

/// The instrument line of a non-perpetual market (empty for a linear
/// perpetual or an older server).
fn instrument_line(m: &pb::Market) -> String {
    if m.kind.is_empty() || m.kind == "perpetual" {
        return String::new();
    }
    let mut parts = vec![m.kind.clone()];
    if m.expiry_ms != 0 {
        parts.push(format!("expires {} ms", m.expiry_ms));
    }
    if !m.underlying.is_empty() {
        parts.push(format!("on {} strike {}", m.underlying, m.strike));
    }
    if !m.contract_value.is_empty() {
        parts.push(format!("contract value {}", m.contract_value));
    }
    if !m.delivery_fee_rate.is_empty() && m.delivery_fee_rate != "0" {
        parts.push(format!("delivery fee {}", m.delivery_fee_rate));
    }
    if !m.settlement_price.is_empty() {
        parts.push(format!("SETTLED at {}", m.settlement_price));
    }
    format!("\n  {}", parts.join("  "))
}

fn market_lines(m: &pb::Market) -> String {
    let mut out = format!(
        "market {}: {} settled in {}{}\n  tick {}  step {}  max leverage {}x  liquidation fee {}  funding every {} ms\n  mark {}{}  last funding {}",
        m.market,
        m.base,
        m.settle_asset,
        if m.paused {
            "  PAUSED (reduce-only)"
        } else {
            ""
        },
        m.tick_size,
        m.step_size,
        m.max_leverage,
        m.liquidation_fee_rate,
        m.funding_interval_ms,
        or_dash(&m.mark_price),
        if m.mark_price.is_empty() {
            String::new()
        } else {
            format!(" (time {} ms)", m.mark_time_ms)
        },
        if m.funded {
            format!("{} ms", m.last_funding_time_ms)
        } else {
            "-".to_string()
        },
    );
    out.push_str(&instrument_line(m));
    let rows: Vec<Vec<String>> = m
        .brackets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            vec![
                i.to_string(),
                b.notional_floor.clone(),
                b.maintenance_margin_rate.clone(),
                format!("{}x", b.max_leverage),
                b.maintenance_amount.clone(),
            ]
        })
        .collect();
    let brackets = table(
        &["BRACKET", "FLOOR", "MMR", "LEVERAGE", "CUM"],
        &rows,
        &[true, true, true, true, true],
    );
    push_indented(&mut out, brackets.lines());
    out
}

pub fn market_text(r: &GetMarketResponse) -> String {
    match &r.market {
        Some(m) => format!(
            "{}\n{}",
            market_lines(m),
            read_suffix(r.applied_index, r.served_by)
        ),
        None => format!("no market {}", read_suffix(r.applied_index, r.served_by)),
    }
}

pub fn market_response_json(r: &GetMarketResponse) -> Value {
    json!({
        "market": r.market.as_ref().map(market_json),
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn position_json(p: &PositionInfo) -> Value {
    json!({
        "market": p.market,
        "account": p.account,
        "size": p.size,
        "entry_price": p.entry_price,
        "mark_price": p.mark_price,
        "notional": p.notional,
        "unrealized_pnl": p.unrealized_pnl,
        "initial_margin": p.initial_margin,
        "maintenance_margin": p.maintenance_margin,
        "max_leverage": p.max_leverage,
        "bracket": p.bracket,
        "liquidation_price": none_if_empty(&p.liquidation_price),
    })
}

fn positions_table(positions: &[PositionInfo]) -> String {
    let rows: Vec<Vec<String>> = positions
        .iter()
        .map(|p| {
            vec![
                p.market.clone(),
                p.size.clone(),
                p.entry_price.clone(),
                p.mark_price.clone(),
                p.notional.clone(),
                p.unrealized_pnl.clone(),
                p.maintenance_margin.clone(),
                format!("{} ({}x)", p.bracket, p.max_leverage),
                or_dash(&p.liquidation_price).to_string(),
            ]
        })
        .collect();
    table(
        &[
            "MARKET",
            "SIZE",
            "ENTRY",
            "MARK",
            "NOTIONAL",
            "UPNL",
            "MM",
            "BRACKET",
            "LIQ PRICE",
        ],
        &rows,
        &[false, true, true, true, true, true, true, true, true],
    )
}

pub fn position_response_text(r: &GetPositionResponse) -> String {
    match &r.position {
        Some(p) => format!(
            "account {} in {}\n{}\n{}",
            p.account,
            p.market,
            positions_table(std::slice::from_ref(p)),
            read_suffix(r.applied_index, r.served_by)
        ),
        None => format!("no position {}", read_suffix(r.applied_index, r.served_by)),
    }
}

pub fn position_response_json(r: &GetPositionResponse) -> Value {
    json!({
        "position": r.position.as_ref().map(position_json),
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn margin_json(m: &pb::Margin) -> Value {
    json!({
        "account": m.account,
        "settle_asset": m.settle_asset,
        "wallet_balance": m.wallet_balance,
        "unrealized_pnl": m.unrealized_pnl,
        "equity": m.equity,
        "initial_margin": m.initial_margin,
        "maintenance_margin": m.maintenance_margin,
        "margin_ratio": none_if_empty(&m.margin_ratio),
        "positions": m.positions.iter().map(position_json).collect::<Vec<_>>(),
    })
}

fn margin_lines(m: &pb::Margin) -> String {
    format!(
        "account {} ({}): wallet {}  UPNL {}  equity {}  IM {}  MM {}  margin ratio {}\n{}",
        m.account,
        m.settle_asset,
        m.wallet_balance,
        m.unrealized_pnl,
        m.equity,
        m.initial_margin,
        m.maintenance_margin,
        if m.margin_ratio.is_empty() {
            "n/a (equity <= 0)"
        } else {
            &m.margin_ratio
        },
        positions_table(&m.positions)
    )
}

pub fn margin_response_text(r: &GetMarginResponse) -> String {
    let suffix = read_suffix(r.applied_index, r.served_by);
    if r.margins.is_empty() {
        return format!(
            "account {} holds no perpetual positions {suffix}",
            r.account
        );
    }
    let parts: Vec<String> = r.margins.iter().map(margin_lines).collect();
    format!("{}\n{suffix}", parts.join("\n"))
}

pub fn margin_response_json(r: &GetMarginResponse) -> Value {
    json!({
        "account": r.account,
        "margins": r.margins.iter().map(margin_json).collect::<Vec<_>>(),
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn exposure_text(e: &GetExposureResponse, at_risk: &[pb::Margin]) -> String {
    let mut out = match &e.market {
        Some(m) => market_lines(m),
        None => String::new(),
    };
    out.push_str(&format!(
        "\n  open interest {} (notional {})  longs {} in {} accounts  shorts {} in {} accounts\n  insurance fund {} (inventory {})  PnL pool {}",
        e.open_interest,
        e.open_interest_notional,
        e.long_size,
        e.long_accounts,
        e.short_size,
        e.short_accounts,
        e.insurance_balance,
        e.insurance_position,
        e.pnl_pool,
    ));
    if !at_risk.is_empty() {
        let rows: Vec<Vec<String>> = at_risk
            .iter()
            .map(|m| {
                vec![
                    m.account.to_string(),
                    m.equity.clone(),
                    m.maintenance_margin.clone(),
                    or_dash(&m.margin_ratio).to_string(),
                ]
            })
            .collect();
        out.push_str("\n  closest to liquidation:");
        let table = table(
            &["ACCOUNT", "EQUITY", "MM", "MARGIN RATIO"],
            &rows,
            &[true, true, true, true],
        );
        push_indented(&mut out, table.lines());
    }
    out.push('\n');
    out.push_str(&read_suffix(e.applied_index, e.served_by));
    out
}

pub fn exposure_json(e: &GetExposureResponse, at_risk: &[pb::Margin]) -> Value {
    json!({
        "market": e.market.as_ref().map(market_json),
        "open_interest": e.open_interest,
        "open_interest_notional": e.open_interest_notional,
        "long_size": e.long_size,
        "short_size": e.short_size,
        "long_accounts": e.long_accounts,
        "short_accounts": e.short_accounts,
        "insurance_balance": e.insurance_balance,
        "insurance_position": e.insurance_position,
        "pnl_pool": e.pnl_pool,
        "at_risk": at_risk.iter().map(margin_json).collect::<Vec<_>>(),
        "applied_index": e.applied_index,
        "served_by": e.served_by,
    })
}

/// `delta ACCOUNT`: one line per underlying.
pub fn delta_text(r: &pb::GetDeltaExposureResponse) -> String {
    if r.exposures.is_empty() {
        return format!("account {}: no positions", r.account);
    }
    let lines: Vec<String> = r
        .exposures
        .iter()
        .map(|d| {
            let delta = if d.options_without_delta == 0 {
                format!("delta {}", d.delta)
            } else {
                format!(
                    "delta in [{}, {}] ({} options without a stated delta)",
                    d.delta_low, d.delta_high, d.options_without_delta
                )
            };
            format!(
                "account {} {}: {delta} (futures {}, options {}; calls +{} -{}, puts +{} -{})",
                r.account,
                d.underlying,
                d.futures_delta,
                d.options_delta,
                d.long_calls,
                d.short_calls,
                d.long_puts,
                d.short_puts
            )
        })
        .collect();
    lines.join("\n")
}

pub fn delta_json(r: &pb::GetDeltaExposureResponse) -> Value {
    json!({
        "account": r.account,
        "exposures": r.exposures.iter().map(|d| json!({
            "underlying": d.underlying,
            "delta": d.delta,
            "futures_delta": d.futures_delta,
            "options_delta": d.options_delta,
            "options_without_delta": d.options_without_delta,
            "delta_low": d.delta_low,
            "delta_high": d.delta_high,
            "long_calls": d.long_calls,
            "short_calls": d.short_calls,
            "long_puts": d.long_puts,
            "short_puts": d.short_puts,
        })).collect::<Vec<_>>(),
        "applied_index": r.applied_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_client::Owner;

    #[test]
    fn events_render() {
        let kind = event::Kind::Shortfall(pb::ShortfallEvent {
            account: 7,
            asset: "USDT".into(),
            amount: "100".into(),
        });
        assert!(
            event_text(&kind)
                .unwrap_or_default()
                .contains("account 7 left at -100 USDT")
        );
        assert_eq!(event_json(&kind).unwrap_or_default()["type"], "shortfall");
        let kind = event::Kind::Position(pb::PositionEvent {
            market: "BTC-PERP".into(),
            holder: Some(Owner::Account(1).to_proto()),
            counterparty: Some(Owner::Insurance.to_proto()),
            cause: pb::PositionCause::Liquidation as i32,
            size_delta: "-1".into(),
            price: "90".into(),
            size: "0".into(),
            entry_price: "0".into(),
            realized_pnl: "-10".into(),
        });
        let text = event_text(&kind).unwrap_or_default();
        assert!(text.contains("liquidation"), "{text}");
        assert_eq!(
            event_json(&kind).unwrap_or_default()["counterparty"]["kind"],
            "insurance"
        );
    }
}
