//! Perpetual futures in `tallyctl`: the `market`, `mark`, `funding`,
//! `perp-fill`, `position`, `margin` and `exposure` subcommands (clap
//! definitions, execution, and text/JSON rendering of their answers and of
//! the perpetual events in write outcomes).

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tally_client::amount::{Sign, validate_amount};
use tally_client::proto::v1::{
    self as pb, CreateMarket, GetExposureResponse, GetMarginResponse, GetMarketResponse,
    GetPositionResponse, MarginBracket, PositionInfo, event,
};
use tally_client::{Client, Owner, commands};

use crate::args::{ReadArgs, WriteArgs};
use crate::render::table;
use crate::run::{Outcome, interruptible, read_options, submit, with_id};

const MARKET_HELP: &str = "\
A linear perpetual: positions in BASE, margined and settled in the SETTLE \
asset. Prices are multiples of --tick, sizes multiples of --step; the decimal \
places of tick and step together may not exceed the settle asset's scale.

Each --bracket FLOOR:RATE:LEVERAGE is a maintenance-margin tier: from a \
position notional of FLOOR (settle asset) the maintenance margin is \
notional × RATE − cum and the leverage at most min(LEVERAGE, --max-leverage). \
The first floor is 0; floors increase, rates do not decrease, leverages do \
not increase. Rates have at most 8 decimal places.

Example:
  tallyctl market create BTC-PERP --base BTC --settle USDT --tick 0.1 \\
    --step 0.001 --max-leverage 20 --bracket 0:0.01:20 \\
    --bracket 10000:0.02:10 --bracket 50000:0.05:5 \\
    --liquidation-fee-rate 0.01 --funding-interval-ms 28800000";

fn positive(s: &str) -> Result<String, String> {
    validate_amount(s, Sign::Positive)
}

fn non_negative(s: &str) -> Result<String, String> {
    validate_amount(s, Sign::NonNegative)
}

/// A decimal with an optional leading `-` (funding rates).
fn signed_decimal(s: &str) -> Result<String, String> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    validate_amount(digits, Sign::NonNegative).map(|_| s.to_string())
}

/// `FLOOR:RATE:LEVERAGE` of `market create --bracket`.
fn bracket_arg(s: &str) -> Result<MarginBracket, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [floor, rate, leverage] = parts.as_slice() else {
        return Err(format!("expected FLOOR:RATE:LEVERAGE, got {s:?}"));
    };
    let leverage = leverage
        .parse::<u32>()
        .map_err(|_| format!("leverage {leverage:?} is not a whole number"))?;
    Ok(commands::margin_bracket(
        non_negative(floor)?,
        positive(rate)?,
        leverage,
    ))
}

#[derive(Debug, Subcommand)]
pub enum MarketCmd {
    /// Create a linear perpetual market.
    #[command(after_long_help = MARKET_HELP)]
    Create {
        /// Market symbol, e.g. BTC-PERP (up to 32 of A-Z, 0-9, _ and -).
        market: String,
        /// Base symbol (need not be an asset), e.g. BTC.
        #[arg(long)]
        base: String,
        /// Settle asset (must exist), e.g. USDT.
        #[arg(long = "settle", value_name = "ASSET")]
        settle_asset: String,
        /// Price tick, e.g. 0.1.
        #[arg(long = "tick", value_parser = positive, value_name = "PRICE")]
        tick_size: String,
        /// Size step, e.g. 0.001.
        #[arg(long = "step", value_parser = positive, value_name = "SIZE")]
        step_size: String,
        /// Highest leverage of any position.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_leverage: u32,
        /// A maintenance-margin tier FLOOR:RATE:LEVERAGE (repeat, lowest floor first).
        #[arg(long = "bracket", required = true, value_parser = bracket_arg, value_name = "FLOOR:RATE:LEVERAGE")]
        brackets: Vec<MarginBracket>,
        /// Liquidation fee rate, charged on the notional to the insurance fund.
        #[arg(long, value_parser = non_negative, default_value = "0", value_name = "RATE")]
        liquidation_fee_rate: String,
        /// Funding interval in milliseconds (funding times are multiples of it).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..), value_name = "MS")]
        funding_interval_ms: u64,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Pause a market: reduce-only (fills that open or grow a position are refused).
    Pause {
        market: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Resume a paused market.
    Resume {
        market: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Show a market's parameters, brackets, mark price and last funding time.
    Show {
        market: String,
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// `tallyctl mark`.
#[derive(Debug, Args)]
pub struct MarkArgs {
    /// Market symbol.
    pub market: String,
    /// Mark price (at most the tick's decimal places).
    #[arg(value_parser = positive, allow_negative_numbers = true)]
    pub price: String,
    #[command(flatten)]
    pub write: WriteArgs,
}

/// `tallyctl funding`.
#[derive(Debug, Args)]
pub struct FundingArgs {
    /// Market symbol.
    pub market: String,
    /// Funding rate, e.g. 0.0001 (longs pay shorts) or -0.0001 (shorts pay longs).
    #[arg(value_parser = signed_decimal, allow_negative_numbers = true)]
    pub rate: String,
    /// Funding time in ms (a multiple of the market's funding interval, later
    /// than the previous round; a round is applied once per time).
    #[arg(long, value_name = "MS")]
    pub time_ms: u64,
    #[command(flatten)]
    pub write: WriteArgs,
}

/// `tallyctl perp-fill`.
#[derive(Debug, Args)]
pub struct PerpFillArgs {
    /// Market symbol.
    #[arg(long)]
    pub market: String,
    /// Buying account.
    #[arg(long)]
    pub buyer: u64,
    /// Selling account.
    #[arg(long)]
    pub seller: u64,
    /// Size (a multiple of the market's step).
    #[arg(long, value_parser = positive, allow_negative_numbers = true)]
    pub size: String,
    /// Price (a multiple of the market's tick).
    #[arg(long, value_parser = positive, allow_negative_numbers = true)]
    pub price: String,
    /// Fee the buyer pays, in the settle asset.
    #[arg(long, value_parser = non_negative, default_value = "0", value_name = "FEE")]
    pub buyer_fee: String,
    /// Fee the seller pays, in the settle asset.
    #[arg(long, value_parser = non_negative, default_value = "0", value_name = "FEE")]
    pub seller_fee: String,
    #[command(flatten)]
    pub write: WriteArgs,
}

/// `tallyctl position`.
#[derive(Debug, Args)]
pub struct PositionArgs {
    /// Market symbol.
    pub market: String,
    /// Account id.
    pub account: u64,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// `tallyctl margin`.
#[derive(Debug, Args)]
pub struct MarginArgs {
    /// Account id.
    pub account: u64,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// `tallyctl exposure`.
#[derive(Debug, Args)]
pub struct ExposureArgs {
    /// Market symbol.
    pub market: String,
    /// Also list this many accounts closest to liquidation in the market's
    /// settle asset (0: none).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub top: u32,
    #[command(flatten)]
    pub read: ReadArgs,
}

// ---- execution ----

pub async fn run_market(client: &Client, cmd: MarketCmd) -> Outcome {
    match cmd {
        MarketCmd::Create {
            market,
            base,
            settle_asset,
            tick_size,
            step_size,
            max_leverage,
            brackets,
            liquidation_fee_rate,
            funding_interval_ms,
            write,
        } => {
            let spec = CreateMarket {
                market,
                base,
                settle_asset,
                tick_size,
                step_size,
                max_leverage,
                brackets,
                liquidation_fee_rate,
                funding_interval_ms,
            };
            submit(client, with_id(commands::create_market(spec), &write)).await
        }
        MarketCmd::Pause { market, write } => {
            submit(client, with_id(commands::pause_market(market), &write)).await
        }
        MarketCmd::Resume { market, write } => {
            submit(client, with_id(commands::resume_market(market), &write)).await
        }
        MarketCmd::Show { market, read } => {
            let read = match read_options(&read) {
                Ok(read) => read,
                Err(outcome) => return outcome,
            };
            interruptible(client.market(market, read), false, |r| Outcome::Ok {
                text: market_text(&r),
                json: market_response_json(&r),
            })
            .await
        }
    }
}

pub async fn run_mark(client: &Client, a: MarkArgs) -> Outcome {
    let command = commands::set_mark_price(a.market, a.price);
    submit(client, with_id(command, &a.write)).await
}

pub async fn run_funding(client: &Client, a: FundingArgs) -> Outcome {
    let command = commands::apply_funding(a.market, a.rate, a.time_ms);
    submit(client, with_id(command, &a.write)).await
}

pub async fn run_perp_fill(client: &Client, a: PerpFillArgs) -> Outcome {
    let command = commands::perp_fill(
        a.market,
        a.buyer,
        a.seller,
        a.size,
        a.price,
        a.buyer_fee,
        a.seller_fee,
    );
    submit(client, with_id(command, &a.write)).await
}

pub async fn run_position(client: &Client, a: PositionArgs) -> Outcome {
    let read = match read_options(&a.read) {
        Ok(read) => read,
        Err(outcome) => return outcome,
    };
    interruptible(client.position(a.market, a.account, read), false, |r| {
        Outcome::Ok {
            text: position_response_text(&r),
            json: position_response_json(&r),
        }
    })
    .await
}

pub async fn run_margin(client: &Client, a: MarginArgs) -> Outcome {
    let read = match read_options(&a.read) {
        Ok(read) => read,
        Err(outcome) => return outcome,
    };
    interruptible(client.margin(a.account, read), false, |r| Outcome::Ok {
        text: margin_response_text(&r),
        json: margin_response_json(&r),
    })
    .await
}

pub async fn run_exposure(client: &Client, a: ExposureArgs) -> Outcome {
    let read = match read_options(&a.read) {
        Ok(read) => read,
        Err(outcome) => return outcome,
    };
    let exposure = match client.exposure(a.market, read).await {
        Ok(exposure) => exposure,
        Err(error) => return crate::run::error_outcome(&error, false),
    };
    let settle = exposure
        .market
        .as_ref()
        .map(|m| m.settle_asset.clone())
        .unwrap_or_default();
    let at_risk = if a.top == 0 {
        Vec::new()
    } else {
        // Read at least where the exposure was read, from any node.
        let read = tally_client::ReadOptions::at_least_index(exposure.applied_index);
        match client.at_risk(settle, a.top, read).await {
            Ok(r) => r.margins,
            Err(error) => return crate::run::error_outcome(&error, false),
        }
    };
    Outcome::Ok {
        text: exposure_text(&exposure, &at_risk),
        json: exposure_json(&exposure, &at_risk),
    }
}

// ---- rendering ----

fn none_if_empty(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn owner_text(owner: Option<&pb::Owner>) -> String {
    match owner.and_then(Owner::from_proto) {
        Some(owner) => owner.to_string(),
        None => "unknown owner".to_string(),
    }
}

fn owner_value(owner: Option<&pb::Owner>) -> Value {
    match owner.and_then(Owner::from_proto) {
        Some(Owner::Account(id)) => json!({"kind": "account", "account": id}),
        Some(Owner::External) => json!({"kind": "external"}),
        Some(Owner::Fees) => json!({"kind": "fees"}),
        Some(Owner::Insurance) => json!({"kind": "insurance"}),
        None => Value::Null,
    }
}

fn cause_name(cause: i32) -> &'static str {
    match pb::PositionCause::try_from(cause) {
        Ok(pb::PositionCause::Fill) => "fill",
        Ok(pb::PositionCause::Liquidation) => "liquidation",
        Ok(pb::PositionCause::Deleverage) => "deleverage",
        Ok(pb::PositionCause::Takeover) => "takeover",
        Ok(pb::PositionCause::Mark) => "mark",
        Err(_) => "unknown",
    }
}

/// One line for a perpetual event in a write outcome.
pub fn event_text(kind: &event::Kind) -> String {
    use event::Kind;
    match kind {
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
            "{} {} {} {} at {} with {}: size {} entry {} realized {}",
            owner_text(e.holder.as_ref()),
            e.market,
            cause_name(e.cause),
            e.size_delta,
            e.price,
            owner_text(e.counterparty.as_ref()),
            e.size,
            e.entry_price,
            e.realized_pnl
        ),
        Kind::Pool(e) => format!(
            "{} PnL pool {} {} -> {}",
            e.market, e.delta, e.asset, e.balance
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
        _ => "unrecognized event (newer server?)".to_string(),
    }
}

/// JSON of a perpetual event in a write outcome.
pub fn event_json(kind: &event::Kind) -> Value {
    use event::Kind;
    match kind {
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
            "holder": owner_value(e.holder.as_ref()),
            "counterparty": owner_value(e.counterparty.as_ref()),
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
            "holder": owner_value(e.holder.as_ref()), "amount": e.amount,
        }),
        Kind::Liquidation(e) => json!({
            "type": "liquidation", "account": e.account, "asset": e.asset, "equity": e.equity,
            "maintenance_margin": e.maintenance_margin, "fee": e.fee,
        }),
        Kind::Shortfall(e) => json!({
            "type": "shortfall", "account": e.account, "asset": e.asset, "amount": e.amount,
        }),
        _ => json!({"type": "unknown"}),
    }
}

fn suffix(applied_index: u64, served_by: u64) -> String {
    format!("(index {applied_index}, node {served_by})")
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
    })
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
    for line in brackets.lines() {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}

fn market_text(r: &GetMarketResponse) -> String {
    match &r.market {
        Some(m) => format!(
            "{}\n{}",
            market_lines(m),
            suffix(r.applied_index, r.served_by)
        ),
        None => format!("no market {}", suffix(r.applied_index, r.served_by)),
    }
}

fn market_response_json(r: &GetMarketResponse) -> Value {
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

fn position_response_text(r: &GetPositionResponse) -> String {
    match &r.position {
        Some(p) => format!(
            "account {} in {}\n{}\n{}",
            p.account,
            p.market,
            positions_table(std::slice::from_ref(p)),
            suffix(r.applied_index, r.served_by)
        ),
        None => format!("no position {}", suffix(r.applied_index, r.served_by)),
    }
}

fn position_response_json(r: &GetPositionResponse) -> Value {
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

fn margin_response_text(r: &GetMarginResponse) -> String {
    let suffix = suffix(r.applied_index, r.served_by);
    if r.margins.is_empty() {
        return format!(
            "account {} holds no perpetual positions {suffix}",
            r.account
        );
    }
    let parts: Vec<String> = r.margins.iter().map(margin_lines).collect();
    format!("{}\n{suffix}", parts.join("\n"))
}

fn margin_response_json(r: &GetMarginResponse) -> Value {
    json!({
        "account": r.account,
        "margins": r.margins.iter().map(margin_json).collect::<Vec<_>>(),
        "applied_index": r.applied_index,
        "served_by": r.served_by,
    })
}

fn exposure_text(e: &GetExposureResponse, at_risk: &[pb::Margin]) -> String {
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
        for line in table(
            &["ACCOUNT", "EQUITY", "MM", "MARGIN RATIO"],
            &rows,
            &[true, true, true, true],
        )
        .lines()
        {
            out.push_str("\n  ");
            out.push_str(line);
        }
    }
    out.push('\n');
    out.push_str(&suffix(e.applied_index, e.served_by));
    out
}

fn exposure_json(e: &GetExposureResponse, at_risk: &[pb::Margin]) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_and_rates_parse() {
        let b = bracket_arg("10000:0.02:10").expect("bracket");
        assert_eq!(
            (
                b.notional_floor.as_str(),
                b.maintenance_margin_rate.as_str(),
                b.max_leverage
            ),
            ("10000", "0.02", 10)
        );
        assert!(bracket_arg("10000:0.02").is_err());
        assert!(bracket_arg("x:0.02:10").is_err());
        assert!(bracket_arg("0:0:10").is_err());
        assert!(bracket_arg("0:0.01:ten").is_err());
        assert_eq!(signed_decimal("-0.0001").as_deref(), Ok("-0.0001"));
        assert_eq!(signed_decimal("0.0001").as_deref(), Ok("0.0001"));
        assert!(signed_decimal("--1").is_err());
        assert!(signed_decimal("1e-4").is_err());
    }

    #[test]
    fn events_render() {
        let kind = event::Kind::Shortfall(pb::ShortfallEvent {
            account: 7,
            asset: "USDT".into(),
            amount: "100".into(),
        });
        assert!(event_text(&kind).contains("account 7 left at -100 USDT"));
        assert_eq!(event_json(&kind)["type"], "shortfall");
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
        let text = event_text(&kind);
        assert!(text.contains("liquidation"), "{text}");
        assert_eq!(event_json(&kind)["counterparty"]["kind"], "insurance");
    }
}
