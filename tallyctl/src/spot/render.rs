//! Spot trading's output: text and JSON of balances, accounts and holds,
//! and of the spot events (asset and account created, hold, fill) in write
//! outcomes.

use serde_json::{Value, json};
use tally_client::Owner;
use tally_client::proto::v1::{GetAccountResponse, GetBalanceResponse, GetHoldResponse, event};

use crate::render::{or_zero, owner_json, read_suffix, table};

/// One line for a spot event in a write outcome (`None`: not a spot event).
pub fn event_text(kind: &event::Kind) -> Option<String> {
    use event::Kind;
    let text = match kind {
        Kind::AssetCreated(a) => format!("asset {} created with scale {}", a.symbol, a.scale),
        Kind::AccountCreated(a) => format!("account {} created", a.account),
        Kind::Hold(h) => format!(
            "hold {} (account {}, {}) remaining {}{}",
            h.hold,
            h.account,
            h.asset,
            or_zero(&h.remaining),
            if h.closed { ", closed" } else { "" }
        ),
        Kind::Fill(f) => format!(
            "fill {} {} for {} {}: buyer {} fee {} {}, seller {} fee {} {}",
            f.base_amount,
            f.base_asset,
            f.quote_amount,
            f.quote_asset,
            f.buyer,
            or_zero(&f.buyer_fee),
            f.base_asset,
            f.seller,
            or_zero(&f.seller_fee),
            f.quote_asset
        ),
        _ => return None,
    };
    Some(text)
}

/// JSON of a spot event in a write outcome (`None`: not a spot event).
pub fn event_json(kind: &event::Kind) -> Option<Value> {
    use event::Kind;
    let value = match kind {
        Kind::AssetCreated(a) => {
            json!({"type": "asset_created", "symbol": a.symbol, "scale": a.scale})
        }
        Kind::AccountCreated(a) => json!({"type": "account_created", "account": a.account}),
        Kind::Hold(h) => json!({
            "type": "hold",
            "hold": h.hold,
            "account": h.account,
            "asset": h.asset,
            "remaining": or_zero(&h.remaining),
            "closed": h.closed,
        }),
        Kind::Fill(f) => json!({
            "type": "fill",
            "buyer": f.buyer,
            "seller": f.seller,
            "base_asset": f.base_asset,
            "quote_asset": f.quote_asset,
            "base_amount": f.base_amount,
            "quote_amount": f.quote_amount,
            "buyer_fee": or_zero(&f.buyer_fee),
            "seller_fee": or_zero(&f.seller_fee),
        }),
        _ => return None,
    };
    Some(value)
}

pub fn balance_text(owner: Owner, asset: &str, r: &GetBalanceResponse) -> String {
    let (available, locked) = r
        .balance
        .as_ref()
        .map_or(("0", "0"), |b| (or_zero(&b.available), or_zero(&b.locked)));
    format!(
        "{owner}  {asset}  available {available}  locked {locked}  {}",
        read_suffix(r.applied_index, r.served_by)
    )
}

pub fn balance_json(owner: Owner, asset: &str, r: &GetBalanceResponse) -> Value {
    let (available, locked) = r
        .balance
        .as_ref()
        .map_or(("0", "0"), |b| (or_zero(&b.available), or_zero(&b.locked)));
    json!({
        "owner": owner_json(Some(&owner.to_proto())),
        "asset": asset,
        "available": available,
        "locked": locked,
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn account_text(r: &GetAccountResponse) -> String {
    let suffix = read_suffix(r.applied_index, r.served_by);
    if r.balances.is_empty() {
        return format!("account {} has no balances {suffix}", r.account);
    }
    let rows: Vec<Vec<String>> = r
        .balances
        .iter()
        .map(|b| {
            vec![
                b.asset.clone(),
                or_zero(&b.available).to_string(),
                or_zero(&b.locked).to_string(),
            ]
        })
        .collect();
    format!(
        "account {} {suffix}\n{}",
        r.account,
        table(
            &["ASSET", "AVAILABLE", "LOCKED"],
            &rows,
            &[false, true, true]
        )
    )
}

pub fn account_json(r: &GetAccountResponse) -> Value {
    json!({
        "account": r.account,
        "balances": r.balances.iter().map(|b| json!({
            "asset": b.asset,
            "available": or_zero(&b.available),
            "locked": or_zero(&b.locked),
        })).collect::<Vec<_>>(),
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

pub fn hold_text(r: &GetHoldResponse) -> String {
    format!(
        "hold {}  account {}  {}  amount {}  remaining {}  {}",
        r.hold,
        r.account,
        r.asset,
        or_zero(&r.amount),
        or_zero(&r.remaining),
        read_suffix(r.applied_index, r.served_by)
    )
}

pub fn hold_json(r: &GetHoldResponse) -> Value {
    json!({
        "hold": r.hold,
        "account": r.account,
        "asset": r.asset,
        "amount": or_zero(&r.amount),
        "remaining": or_zero(&r.remaining),
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}
