//! Running the perpetual futures subcommands: each parsed command becomes a
//! write (through [`submit`]) or a read, and its answer an [`Outcome`].

use tally_client::proto::v1::CreateMarket;
use tally_client::{Client, commands};

use crate::perps::args::{
    ExposureArgs, FundingArgs, MarginArgs, MarkArgs, MarketCmd, PerpFillArgs, PositionArgs,
};
use crate::perps::render;
use crate::run::{Outcome, interruptible, read_options, submit, with_id};

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
                text: render::market_text(&r),
                json: render::market_response_json(&r),
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
            text: render::position_response_text(&r),
            json: render::position_response_json(&r),
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
        text: render::margin_response_text(&r),
        json: render::margin_response_json(&r),
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
        text: render::exposure_text(&exposure, &at_risk),
        json: render::exposure_json(&exposure, &at_risk),
    }
}
