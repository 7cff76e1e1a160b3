//! The account model's output: text and JSON of an account's wallets, the
//! transferable amount, history pages, listings and the conservation
//! report, and of the account-model events in write outcomes.

use serde_json::{Value, json};
use tally_client::Wallet;
use tally_client::proto::v1 as pb;
use tally_client::proto::v1::event;

use crate::acct::run::wallet_name;
use crate::render::{or_zero, read_suffix, table};

/// One line for an account-model event (`None`: not one).
pub fn event_text(kind: &event::Kind) -> Option<String> {
    use event::Kind;
    Some(match kind {
        Kind::AccountOpened(a) => format!(
            "account {} opened: parent {}, collateral {}, withdrawals {}, history {}",
            a.account,
            if a.parent == 0 {
                "none".to_string()
            } else {
                a.parent.to_string()
            },
            wallet_name(a.collateral),
            if a.can_withdraw {
                "allowed"
            } else {
                "forbidden"
            },
            if a.history { "kept" } else { "not kept" },
        ),
        Kind::WithdrawAllowed(w) => format!(
            "account {} withdrawals {}",
            w.account,
            if w.allowed { "allowed" } else { "forbidden" }
        ),
        Kind::TransferGrant(g) => format!(
            "master {} {} transfers from {} to {}",
            g.master,
            if g.allowed { "granted" } else { "revoked" },
            g.from,
            g.to
        ),
        Kind::InsuranceFund(i) => format!("insurance fund {} {} = {}", i.asset, i.delta, i.balance),
        Kind::FeesSwept(f) => format!(
            "fees {} {} swept to account {} {}",
            f.amount,
            f.asset,
            f.account,
            wallet_name(f.wallet)
        ),
        Kind::PairCreated(p) => format!("pair {} created ({} / {})", p.pair, p.base, p.quote),
        Kind::IsolatedMargin(i) => format!(
            "account {} {} isolated margin {} = {}",
            i.account,
            i.market,
            i.delta,
            if i.margin.is_empty() {
                "cross"
            } else {
                &i.margin
            }
        ),
        Kind::PairFill(f) => format!(
            "pair fill {} {} at {} for {}: buyer {} fee {} {}, seller {} fee {} {}, improvement {}",
            f.pair,
            f.base_amount,
            f.price,
            f.quote_amount,
            f.buyer,
            f.buyer_fee,
            f.buyer_fee_asset,
            f.seller,
            f.seller_fee,
            f.seller_fee_asset,
            f.price_improvement
        ),
        _ => return None,
    })
}

/// JSON of an account-model event (`None`: not one).
pub fn event_json(kind: &event::Kind) -> Option<Value> {
    use event::Kind;
    Some(match kind {
        Kind::AccountOpened(a) => json!({
            "type": "account_opened",
            "account": a.account,
            "parent": a.parent,
            "collateral": wallet_name(a.collateral),
            "can_withdraw": a.can_withdraw,
            "history": a.history,
        }),
        Kind::WithdrawAllowed(w) => {
            json!({"type": "withdraw_allowed", "account": w.account, "allowed": w.allowed})
        }
        Kind::TransferGrant(g) => json!({
            "type": "transfer_grant",
            "master": g.master,
            "from": g.from,
            "to": g.to,
            "allowed": g.allowed,
        }),
        Kind::InsuranceFund(i) => json!({
            "type": "insurance_fund",
            "asset": i.asset,
            "delta": i.delta,
            "balance": i.balance,
        }),
        Kind::FeesSwept(f) => json!({
            "type": "fees_swept",
            "asset": f.asset,
            "account": f.account,
            "wallet": wallet_name(f.wallet),
            "amount": f.amount,
        }),
        Kind::PairCreated(p) => {
            json!({"type": "pair_created", "pair": p.pair, "base": p.base, "quote": p.quote})
        }
        Kind::IsolatedMargin(i) => json!({
            "type": "isolated_margin",
            "market": i.market,
            "account": i.account,
            "delta": i.delta,
            "margin": if i.margin.is_empty() { Value::Null } else { json!(i.margin) },
        }),
        Kind::PairFill(f) => json!({
            "type": "pair_fill",
            "pair": f.pair,
            "buyer": f.buyer,
            "seller": f.seller,
            "base_amount": f.base_amount,
            "quote_amount": f.quote_amount,
            "price": f.price,
            "buyer_fee_asset": f.buyer_fee_asset,
            "buyer_fee": f.buyer_fee,
            "seller_fee_asset": f.seller_fee_asset,
            "seller_fee": f.seller_fee,
            "price_improvement": f.price_improvement,
        }),
        _ => return None,
    })
}

fn model_json(a: &pb::AccountModel) -> Value {
    json!({
        "account": a.account,
        "parent": a.parent,
        "collateral": wallet_name(a.collateral),
        "can_withdraw": a.can_withdraw,
        "grants": a.grants,
        "subs": a.subs,
        "wallets": a.wallets.iter().map(|w| json!({
            "wallet": wallet_name(w.wallet),
            "asset": w.asset,
            "available": or_zero(&w.available),
            "locked": or_zero(&w.locked),
        })).collect::<Vec<_>>(),
    })
}

fn model_text(a: &pb::AccountModel) -> String {
    let parent = if a.parent == 0 {
        "top-level".to_string()
    } else {
        format!("sub-account of {}", a.parent)
    };
    let mut out = format!(
        "account {}: {parent}, collateral {}, withdrawals {}",
        a.account,
        wallet_name(a.collateral),
        if a.can_withdraw {
            "allowed"
        } else {
            "forbidden"
        }
    );
    if !a.subs.is_empty() {
        out.push_str(&format!(", subs {:?}", a.subs));
    }
    if !a.grants.is_empty() {
        out.push_str(&format!(", may transfer to {:?}", a.grants));
    }
    let rows: Vec<Vec<String>> = a
        .wallets
        .iter()
        .map(|w| {
            vec![
                wallet_name(w.wallet).to_string(),
                w.asset.clone(),
                or_zero(&w.available).to_string(),
                or_zero(&w.locked).to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["WALLET", "ASSET", "AVAILABLE", "LOCKED"],
            &rows,
            &[false, false, true, true],
        ));
    }
    out
}

pub fn wallets_text(r: &pb::GetAccountModelResponse) -> String {
    let body = r.account.as_ref().map(model_text).unwrap_or_default();
    format!("{body}\n{}", read_suffix(r.applied_index, r.served_by))
}

pub fn wallets_json(r: &pb::GetAccountModelResponse) -> Value {
    let mut v = r.account.as_ref().map(model_json).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("applied_index".into(), json!(r.applied_index));
        map.insert("served_by".into(), json!(r.served_by));
    }
    v
}

pub fn transferable_text(
    account: u64,
    wallet: Wallet,
    asset: &str,
    r: &pb::GetTransferableResponse,
) -> String {
    format!(
        "account {account} {wallet} {asset}: transferable {} of {} available {}",
        r.transferable,
        r.available,
        read_suffix(r.applied_index, r.served_by)
    )
}

pub fn transferable_json(
    account: u64,
    wallet: Wallet,
    asset: &str,
    r: &pb::GetTransferableResponse,
) -> Value {
    json!({
        "account": account,
        "wallet": wallet.as_str(),
        "asset": asset,
        "transferable": r.transferable,
        "available": r.available,
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn history_text(r: &pb::GetHistoryResponse) -> String {
    let rows: Vec<Vec<String>> = r
        .entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.log_index.to_string(),
                e.command_id.clone(),
                wallet_name(e.wallet).to_string(),
                e.asset.clone(),
                e.available_delta.clone(),
                e.available.clone(),
                e.locked.clone(),
            ]
        })
        .collect();
    let header = [
        "SEQ",
        "INDEX",
        "COMMAND",
        "WALLET",
        "ASSET",
        "DELTA",
        "AVAILABLE",
        "LOCKED",
    ];
    let right = [true, true, false, false, false, true, true, true];
    format!(
        "{}\nnext_seq {} {}",
        table(&header, &rows, &right),
        r.next_seq,
        read_suffix(r.applied_index, r.served_by)
    )
}

pub fn history_json(account: u64, r: &pb::GetHistoryResponse) -> Value {
    json!({
        "account": account,
        "entries": r.entries.iter().map(|e| json!({
            "seq": e.seq,
            "log_index": e.log_index,
            "time_ms": e.time_ms,
            "command_id": e.command_id,
            "wallet": wallet_name(e.wallet),
            "asset": e.asset,
            "available_delta": e.available_delta,
            "locked_delta": e.locked_delta,
            "available": e.available,
            "locked": e.locked,
        })).collect::<Vec<_>>(),
        "next_seq": r.next_seq,
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn accounts_text(r: &pb::ListAccountsResponse) -> String {
    let rows: Vec<Vec<String>> = r
        .accounts
        .iter()
        .map(|a| {
            vec![
                a.account.to_string(),
                if a.parent == 0 {
                    "-".into()
                } else {
                    a.parent.to_string()
                },
                wallet_name(a.collateral).to_string(),
                a.can_withdraw.to_string(),
                a.wallets.len().to_string(),
            ]
        })
        .collect();
    format!(
        "{}\nnext_after {} {}",
        table(
            &["ACCOUNT", "PARENT", "COLLATERAL", "WITHDRAW", "BALANCES"],
            &rows,
            &[true, true, false, false, true]
        ),
        r.next_after,
        read_suffix(r.applied_index, r.served_by)
    )
}

pub fn accounts_json(r: &pb::ListAccountsResponse) -> Value {
    json!({
        "accounts": r.accounts.iter().map(model_json).collect::<Vec<_>>(),
        "next_after": r.next_after,
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn holds_text(r: &pb::ListHoldsResponse) -> String {
    let rows: Vec<Vec<String>> = r
        .holds
        .iter()
        .map(|h| {
            vec![
                h.hold.to_string(),
                h.asset.clone(),
                h.amount.clone(),
                h.remaining.clone(),
            ]
        })
        .collect();
    format!(
        "{}\nnext_after {} {}",
        table(
            &["HOLD", "ASSET", "AMOUNT", "REMAINING"],
            &rows,
            &[true, false, true, true]
        ),
        r.next_after,
        read_suffix(r.applied_index, r.served_by)
    )
}

pub fn holds_json(r: &pb::ListHoldsResponse) -> Value {
    json!({
        "holds": r.holds.iter().map(|h| json!({
            "hold": h.hold,
            "account": h.account,
            "asset": h.asset,
            "amount": h.amount,
            "remaining": h.remaining,
        })).collect::<Vec<_>>(),
        "next_after": r.next_after,
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn assets_text(r: &pb::ListAssetsResponse) -> String {
    let rows: Vec<Vec<String>> = r
        .assets
        .iter()
        .map(|a| vec![a.symbol.clone(), a.scale.to_string()])
        .collect();
    format!(
        "{}\n{}",
        table(&["ASSET", "SCALE"], &rows, &[false, true]),
        read_suffix(r.applied_index, r.served_by)
    )
}

pub fn assets_json(r: &pb::ListAssetsResponse) -> Value {
    json!({
        "assets": r.assets.iter().map(|a| json!({"symbol": a.symbol, "scale": a.scale})).collect::<Vec<_>>(),
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn pairs_text(r: &pb::ListPairsResponse) -> String {
    let rows: Vec<Vec<String>> = r
        .pairs
        .iter()
        .map(|p| {
            vec![
                p.pair.clone(),
                p.base.clone(),
                p.quote.clone(),
                p.size_scale.to_string(),
                p.price_scale.to_string(),
                p.min_base_amount.clone(),
            ]
        })
        .collect();
    format!(
        "{}\n{}",
        table(
            &["PAIR", "BASE", "QUOTE", "SIZE_SCALE", "PRICE_SCALE", "MIN"],
            &rows,
            &[false, false, false, true, true, true]
        ),
        read_suffix(r.applied_index, r.served_by)
    )
}

pub fn pairs_json(r: &pb::ListPairsResponse) -> Value {
    json!({
        "pairs": r.pairs.iter().map(|p| json!({
            "pair": p.pair,
            "base": p.base,
            "quote": p.quote,
            "size_scale": p.size_scale,
            "price_scale": p.price_scale,
            "min_base_amount": p.min_base_amount,
        })).collect::<Vec<_>>(),
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn markets_text(r: &pb::ListMarketsResponse) -> String {
    let rows: Vec<Vec<String>> = r
        .markets
        .iter()
        .map(|m| {
            vec![
                m.market.clone(),
                m.settle_asset.clone(),
                crate::render::or_dash(&m.mark_price).to_string(),
                m.paused.to_string(),
            ]
        })
        .collect();
    format!(
        "{}\n{}",
        table(
            &["MARKET", "SETTLE", "MARK", "PAUSED"],
            &rows,
            &[false, false, true, false]
        ),
        read_suffix(r.applied_index, r.served_by)
    )
}

pub fn markets_json(r: &pb::ListMarketsResponse) -> Value {
    json!({
        "markets": r.markets.iter().map(crate::perps::render::market_json).collect::<Vec<_>>(),
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn conservation_text(r: &pb::GetConservationResponse) -> String {
    let rows: Vec<Vec<String>> = r
        .assets
        .iter()
        .map(|a| {
            vec![
                a.asset.clone(),
                a.spot.clone(),
                a.funding.clone(),
                a.margin.clone(),
                a.external.clone(),
                a.fees.clone(),
                a.insurance.clone(),
                a.pools.clone(),
                a.total.clone(),
            ]
        })
        .collect();
    let header = [
        "ASSET",
        "SPOT",
        "FUNDING",
        "MARGIN",
        "EXTERNAL",
        "FEES",
        "INSURANCE",
        "POOLS",
        "TOTAL",
    ];
    let right = [false, true, true, true, true, true, true, true, true];
    format!(
        "{}\n{}",
        table(&header, &rows, &right),
        read_suffix(r.applied_index, r.served_by)
    )
}

pub fn conservation_json(r: &pb::GetConservationResponse) -> Value {
    json!({
        "assets": r.assets.iter().map(|a| json!({
            "asset": a.asset,
            "spot": a.spot,
            "funding": a.funding,
            "margin": a.margin,
            "external": a.external,
            "fees": a.fees,
            "insurance": a.insurance,
            "pools": a.pools,
            "isolated": a.isolated,
            "total": a.total,
        })).collect::<Vec<_>>(),
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}
