//! Running the perpetual futures subcommands: each parsed command becomes a
//! write (through [`submit`]) or a read (through [`run_read`]), and its
//! answer an [`Outcome`].

use tally_client::proto::v1::{CreateMarket, CreateOption};
use tally_client::{Client, ReadOptions, commands, derivatives};

use crate::args::ReadArgs;
use crate::perps::args::{MarketCmd, PerpsCmd};
use crate::perps::render;
use crate::run::{Outcome, error_outcome, read_options, run_read, submit, with_id};

pub async fn run(client: &Client, cmd: PerpsCmd) -> Outcome {
    match cmd {
        PerpsCmd::Market(cmd) => market(client, cmd).await,
        PerpsCmd::Mark {
            market,
            price,
            delta,
            write,
        } => {
            let command = match delta {
                Some(delta) => derivatives::set_option_mark(market, price, delta),
                None => commands::set_mark_price(market, price),
            };
            submit(client, with_id(command, &write)).await
        }
        PerpsCmd::Funding {
            market,
            rate,
            time_ms,
            write,
        } => {
            let command = commands::apply_funding(market, rate, time_ms);
            submit(client, with_id(command, &write)).await
        }
        PerpsCmd::FundInsurance {
            account,
            asset,
            amount,
            write,
        } => {
            let command = commands::fund_insurance(account, asset, amount);
            submit(client, with_id(command, &write)).await
        }
        PerpsCmd::PerpFill {
            market,
            buyer,
            seller,
            size,
            price,
            buyer_fee,
            seller_fee,
            write,
        } => {
            let command =
                commands::perp_fill(market, buyer, seller, size, price, buyer_fee, seller_fee);
            submit(client, with_id(command, &write)).await
        }
        PerpsCmd::Settle {
            market,
            price,
            write,
        } => {
            let command = derivatives::settle_future(market, price);
            submit(client, with_id(command, &write)).await
        }
        PerpsCmd::Exercise {
            market,
            price,
            write,
        } => {
            let command = derivatives::exercise_option(market, price);
            submit(client, with_id(command, &write)).await
        }
        PerpsCmd::OptionFunding {
            market,
            time_ms,
            write,
        } => {
            let command = derivatives::apply_option_funding(market, time_ms);
            submit(client, with_id(command, &write)).await
        }
        PerpsCmd::PremiumFunding {
            market,
            time_ms,
            samples,
            interest_rate,
            write,
        } => {
            let command =
                derivatives::apply_premium_funding(market, time_ms, samples, interest_rate);
            submit(client, with_id(command, &write)).await
        }
        PerpsCmd::FundingClamp {
            market,
            clamp,
            write,
        } => {
            let command = derivatives::set_funding_clamp(market, clamp);
            submit(client, with_id(command, &write)).await
        }
        PerpsCmd::Position {
            market,
            account,
            read,
        } => {
            run_read(
                &read,
                |o| client.position(market, account, o),
                |r| Outcome::Ok {
                    text: render::position_response_text(&r),
                    json: render::position_response_json(&r),
                },
            )
            .await
        }
        PerpsCmd::Margin { account, read } => {
            run_read(
                &read,
                |o| client.margin(account, o),
                |r| Outcome::Ok {
                    text: render::margin_response_text(&r),
                    json: render::margin_response_json(&r),
                },
            )
            .await
        }
        PerpsCmd::Delta { account, read } => {
            run_read(
                &read,
                |o| client.delta_exposure(account, o),
                |r| Outcome::Ok {
                    text: render::delta_text(&r),
                    json: render::delta_json(&r),
                },
            )
            .await
        }
        PerpsCmd::Exposure { market, top, read } => exposure(client, market, top, &read).await,
    }
}

async fn market(client: &Client, cmd: MarketCmd) -> Outcome {
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
            expiry_ms,
            delivery_fee_rate,
            contract_value,
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
            let command = match (contract_value, expiry_ms) {
                (Some(cv), _) => {
                    derivatives::create_inverse_market(spec, cv, expiry_ms, delivery_fee_rate)
                }
                (None, 0) => commands::create_market(spec),
                (None, _) => derivatives::create_dated_future(spec, expiry_ms, delivery_fee_rate),
            };
            submit(client, with_id(command, &write)).await
        }
        MarketCmd::CreateOption {
            market,
            underlying,
            put,
            strike,
            expiry_ms,
            tick_size,
            step_size,
            im_rate,
            im_floor_rate,
            mm_rate,
            fee_cap_rate,
            delivery_fee_rate,
            liquidation_fee_rate,
            funding_interval_ms,
            funding_period_ms,
            write,
        } => {
            let spec = CreateOption {
                market,
                underlying,
                call: !put,
                strike,
                expiry_ms,
                tick_size,
                step_size,
                im_rate,
                im_floor_rate,
                mm_rate,
                fee_cap_rate,
                delivery_fee_rate,
                liquidation_fee_rate,
                funding_interval_ms,
                funding_period_ms,
            };
            submit(client, with_id(derivatives::create_option(spec), &write)).await
        }
        MarketCmd::Pause { market, write } => {
            submit(client, with_id(commands::pause_market(market), &write)).await
        }
        MarketCmd::Resume { market, write } => {
            submit(client, with_id(commands::resume_market(market), &write)).await
        }
        MarketCmd::Show { market, read } => {
            run_read(
                &read,
                |o| client.market(market, o),
                |r| Outcome::Ok {
                    text: render::market_text(&r),
                    json: render::market_response_json(&r),
                },
            )
            .await
        }
    }
}

/// `exposure`: the market's exposure, then (`--top` > 0) the accounts
/// closest to liquidation, read at least where the exposure was.
async fn exposure(client: &Client, market: String, top: u32, read: &ReadArgs) -> Outcome {
    let read = match read_options(read) {
        Ok(read) => read,
        Err(outcome) => return outcome,
    };
    let exposure = match client.exposure(market, read).await {
        Ok(exposure) => exposure,
        Err(error) => return error_outcome(&error, false),
    };
    let settle = exposure
        .market
        .as_ref()
        .map(|m| m.settle_asset.clone())
        .unwrap_or_default();
    let at_risk = if top == 0 {
        Vec::new()
    } else {
        // Read at least where the exposure was read, from any node.
        let read = ReadOptions::at_least_index(exposure.applied_index);
        match client.at_risk(settle, top, read).await {
            Ok(r) => r.margins,
            Err(error) => return error_outcome(&error, false),
        }
    };
    Outcome::Ok {
        text: render::exposure_text(&exposure, &at_risk),
        json: render::exposure_json(&exposure, &at_risk),
    }
}
