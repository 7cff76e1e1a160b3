//! Perpetual futures' command line: the clap definitions of the `market`,
//! `mark`, `funding`, `perp-fill`, `position`, `margin` and `exposure`
//! subcommands and their validators (brackets, signed funding rates).

use clap::Subcommand;
use tally_client::amount::{AmountError, Sign, check_amount};
use tally_client::commands;
use tally_client::proto::v1::MarginBracket;

use crate::args::{AMOUNT_HELP, ReadArgs, WriteArgs, non_negative_decimal, positive_decimal};

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

/// A decimal with an optional leading `-` (funding rates).
fn signed_decimal(s: &str) -> Result<String, AmountError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    check_amount(digits, Sign::NonNegative).map(|()| s.to_string())
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
        non_negative_decimal(floor).map_err(|e| e.to_string())?,
        positive_decimal(rate).map_err(|e| e.to_string())?,
        leverage,
    ))
}

#[derive(Debug, Subcommand)]
pub enum PerpsCmd {
    /// Perpetual markets: create, pause, resume, show.
    #[command(subcommand)]
    Market(MarketCmd),

    /// Set a market's mark price; accounts below maintenance margin are liquidated.
    Mark {
        /// Market symbol.
        market: String,
        /// Mark price (at most the tick's decimal places).
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        price: String,
        /// An option's delta at this mark, from your pricer (a call in
        /// [0, 1], a put in [-1, 0]; SetOptionMark): its delta exposure
        /// becomes a number. Without it an option's stated delta is cleared.
        #[arg(long, value_parser = signed_decimal, allow_negative_numbers = true)]
        delta: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Apply one funding round to a market at its mark price.
    Funding {
        /// Market symbol.
        market: String,
        /// Funding rate, e.g. 0.0001 (longs pay shorts) or -0.0001 (shorts pay longs).
        #[arg(value_parser = signed_decimal, allow_negative_numbers = true)]
        rate: String,
        /// Funding time in ms (a multiple of the market's funding interval, later
        /// than the previous round; a round is applied once per time).
        #[arg(long, value_name = "MS")]
        time_ms: u64,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Move funds from an account's available balance into the asset's
    /// insurance fund (which absorbs liquidation losses before
    /// auto-deleveraging): how the fund is seeded or topped up.
    #[command(after_long_help = AMOUNT_HELP)]
    FundInsurance {
        /// Account to debit.
        account: u64,
        /// Asset symbol (the settle asset of the markets the fund covers).
        asset: String,
        /// Decimal amount (at most the asset's scale in decimal places).
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        amount: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Settle a perpetual trade between two accounts.
    #[command(after_long_help = AMOUNT_HELP)]
    PerpFill {
        /// Market symbol.
        #[arg(long)]
        market: String,
        /// Buying account.
        #[arg(long)]
        buyer: u64,
        /// Selling account.
        #[arg(long)]
        seller: u64,
        /// Size (a multiple of the market's step).
        #[arg(long, value_parser = positive_decimal, allow_negative_numbers = true)]
        size: String,
        /// Price (a multiple of the market's tick).
        #[arg(long, value_parser = positive_decimal, allow_negative_numbers = true)]
        price: String,
        /// Fee the buyer pays, in the settle asset.
        #[arg(long, value_parser = non_negative_decimal, default_value = "0", value_name = "FEE")]
        buyer_fee: String,
        /// Fee the seller pays, in the settle asset.
        #[arg(long, value_parser = non_negative_decimal, default_value = "0", value_name = "FEE")]
        seller_fee: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Settle a dated future at one stated price (the settlement index),
    /// once, at or after its expiry: every position closes at it.
    Settle {
        /// Dated future symbol.
        market: String,
        /// Settlement price (at most the tick's decimal places).
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        price: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Exercise an expiring option at the underlying's settlement price:
    /// shorts pay longs the intrinsic value; out of the money it expires worthless.
    Exercise {
        /// Option symbol.
        market: String,
        /// The underlying's settlement price.
        #[arg(value_parser = positive_decimal, allow_negative_numbers = true)]
        price: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// One perpetual-option funding round: size × (mark − intrinsic) × elapsed / period.
    OptionFunding {
        /// Perpetual option symbol.
        market: String,
        /// Funding time in ms (a multiple of the funding interval, later than the last).
        #[arg(long, value_name = "MS")]
        time_ms: u64,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// A perp funding round at F = P + clamp(I − P, −c, +c), P the
    /// time-weighted average of the premium-index samples, c the market's
    /// clamp (`funding-clamp`).
    PremiumFunding {
        /// Perpetual symbol.
        market: String,
        /// Funding time in ms.
        #[arg(long, value_name = "MS")]
        time_ms: u64,
        /// A premium-index sample, oldest first (repeat; 1..=5760).
        #[arg(long = "sample", required = true, value_parser = signed_decimal, allow_negative_numbers = true)]
        samples: Vec<String>,
        /// Interest rate I, e.g. 0.0001.
        #[arg(long, value_parser = signed_decimal, allow_negative_numbers = true)]
        interest_rate: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Set a perpetual's funding clamp c for premium-funding, e.g. 0.0005.
    FundingClamp {
        /// Perpetual symbol.
        market: String,
        /// Clamp c, 0 <= c < 1.
        #[arg(value_parser = non_negative_decimal)]
        clamp: String,
        #[command(flatten)]
        write: WriteArgs,
    },

    /// Show one perpetual position with its margin and liquidation price.
    Position {
        /// Market symbol.
        market: String,
        /// Account id.
        account: u64,
        #[command(flatten)]
        read: ReadArgs,
    },

    /// Show an account's cross margin: equity, margins, margin ratio, positions.
    Margin {
        /// Account id.
        account: u64,
        #[command(flatten)]
        read: ReadArgs,
    },

    /// Show an account's delta-equivalent exposure per underlying (exact
    /// for perpetuals and futures, a model-free range for options).
    Delta {
        /// Account id.
        account: u64,
        #[command(flatten)]
        read: ReadArgs,
    },

    /// Show a market's exposure and the accounts closest to liquidation.
    Exposure {
        /// Market symbol.
        market: String,
        /// Also list this many accounts closest to liquidation in the market's
        /// settle asset (0: none).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1000))]
        top: u32,
        #[command(flatten)]
        read: ReadArgs,
    },
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
        #[arg(long = "tick", value_parser = positive_decimal, value_name = "PRICE")]
        tick_size: String,
        /// Size step, e.g. 0.001.
        #[arg(long = "step", value_parser = positive_decimal, value_name = "SIZE")]
        step_size: String,
        /// Highest leverage of any position.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_leverage: u32,
        /// A maintenance-margin tier FLOOR:RATE:LEVERAGE (repeat, lowest floor first).
        #[arg(long = "bracket", required = true, value_parser = bracket_arg, value_name = "FLOOR:RATE:LEVERAGE")]
        brackets: Vec<MarginBracket>,
        /// Liquidation fee rate, charged on the notional to the insurance fund.
        #[arg(long, value_parser = non_negative_decimal, default_value = "0", value_name = "RATE")]
        liquidation_fee_rate: String,
        /// Funding interval in milliseconds (funding times are multiples of it).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..), value_name = "MS")]
        funding_interval_ms: u64,
        /// A dated future expiring at this leader time (ms); 0: a perpetual.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        expiry_ms: u64,
        /// A dated future's delivery fee rate, on each notional at settlement.
        #[arg(long, value_parser = non_negative_decimal, default_value = "0", value_name = "RATE")]
        delivery_fee_rate: String,
        /// An inverse (coin-margined) market of this many quote units per
        /// contract, settled in the base asset.
        #[arg(long, value_parser = positive_decimal, value_name = "QUOTE")]
        contract_value: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Create an option on an underlying market's mark price (European,
    /// cash-settled, linear; --expiry-ms 0: a perpetual option).
    CreateOption {
        /// Option symbol, e.g. BTC-C-32000.
        market: String,
        /// Underlying market (a perpetual or dated future).
        #[arg(long)]
        underlying: String,
        /// A put instead of a call.
        #[arg(long)]
        put: bool,
        /// Strike (a multiple of the underlying's tick).
        #[arg(long, value_parser = positive_decimal)]
        strike: String,
        /// Expiry (leader time ms); 0: a perpetual option.
        #[arg(long, value_name = "MS")]
        expiry_ms: u64,
        /// Premium tick.
        #[arg(long = "tick", value_parser = positive_decimal, value_name = "PRICE")]
        tick_size: String,
        /// Size step.
        #[arg(long = "step", value_parser = positive_decimal, value_name = "SIZE")]
        step_size: String,
        /// Standard margin a, b, c (short IM = max(a·U − OTM, b·U) + mark, MM = c·U + mark).
        #[arg(long, value_parser = positive_decimal, default_value = "0.15")]
        im_rate: String,
        #[arg(long, value_parser = positive_decimal, default_value = "0.1")]
        im_floor_rate: String,
        #[arg(long, value_parser = positive_decimal, default_value = "0.075")]
        mm_rate: String,
        /// Fee cap as a fraction of the premium (0: none).
        #[arg(long, value_parser = non_negative_decimal, default_value = "0")]
        fee_cap_rate: String,
        #[arg(long, value_parser = non_negative_decimal, default_value = "0")]
        delivery_fee_rate: String,
        #[arg(long, value_parser = non_negative_decimal, default_value = "0")]
        liquidation_fee_rate: String,
        /// Funding interval and period (perpetual options).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 28_800_000, value_name = "MS")]
        funding_interval_ms: u64,
        #[arg(long, default_value_t = 86_400_000, value_name = "MS")]
        funding_period_ms: u64,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Cmd;
    use crate::args::tests::{ok, parse};

    fn perps(args: &[&str]) -> PerpsCmd {
        match ok(args).command {
            Cmd::Perps(cmd) => cmd,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn commands_parse() {
        match perps(&[
            "perp-fill",
            "--market",
            "BTC-PERP",
            "--buyer",
            "1",
            "--seller",
            "2",
            "--size",
            "0.5",
            "--price",
            "30000",
            "--seller-fee",
            "1.5",
        ]) {
            PerpsCmd::PerpFill {
                buyer,
                seller,
                buyer_fee,
                seller_fee,
                ..
            } => assert_eq!(
                (buyer, seller, buyer_fee.as_str(), seller_fee.as_str()),
                (1, 2, "0", "1.5")
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            perps(&["funding", "BTC-PERP", "-0.0001", "--time-ms", "8"]),
            PerpsCmd::Funding { time_ms: 8, .. }
        ));
        assert!(matches!(
            perps(&["exposure", "BTC-PERP"]),
            PerpsCmd::Exposure { top: 5, .. }
        ));
        assert!(matches!(
            perps(&["market", "show", "BTC-PERP"]),
            PerpsCmd::Market(MarketCmd::Show { .. })
        ));
        assert!(matches!(
            perps(&["fund-insurance", "7", "USDT", "1000.5"]),
            PerpsCmd::FundInsurance { account: 7, ref amount, .. } if amount == "1000.5"
        ));
        assert!(parse(&["fund-insurance", "7", "USDT", "-1"]).is_err());
        assert!(parse(&["mark", "BTC-PERP", "-1"]).is_err());
        assert!(parse(&["exposure", "BTC-PERP", "--top", "1001"]).is_err());
    }

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
}
