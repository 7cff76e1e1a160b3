//! Running the spot subcommands: each parsed command becomes a write
//! (through [`submit`]) or a read (through [`run_read`]), and its answer an
//! [`Outcome`].

use tally_client::{Client, commands};

use crate::run::{Outcome, run_read, submit, with_id};
use crate::spot::args::{AccountArgs, AccountCmd, AssetCmd, SpotCmd};
use crate::spot::render;

pub async fn run(client: &Client, cmd: SpotCmd) -> Outcome {
    match cmd {
        SpotCmd::Asset(AssetCmd::Create {
            symbol,
            scale,
            write,
        }) => {
            submit(
                client,
                with_id(commands::create_asset(symbol, scale), &write),
            )
            .await
        }
        SpotCmd::Account(AccountArgs {
            action: Some(AccountCmd::Create { account, write }),
            ..
        }) => submit(client, with_id(commands::create_account(account), &write)).await,
        SpotCmd::Account(AccountArgs {
            action: None,
            account,
            read,
        }) => {
            let Some(account) = account else {
                return Outcome::usage("missing ACCOUNT");
            };
            run_read(
                &read,
                |o| client.account(account, o),
                |r| Outcome::Ok {
                    text: render::account_text(&r),
                    json: render::account_json(&r),
                },
            )
            .await
        }
        SpotCmd::Deposit {
            account,
            asset,
            amount,
            write,
        } => {
            let command = commands::deposit(account, asset, amount);
            submit(client, with_id(command, &write)).await
        }
        SpotCmd::Withdraw {
            account,
            asset,
            amount,
            write,
        } => {
            let command = commands::withdraw(account, asset, amount);
            submit(client, with_id(command, &write)).await
        }
        SpotCmd::Transfer {
            from,
            to,
            asset,
            amount,
            write,
        } => {
            let command = commands::transfer(from, to, asset, amount);
            submit(client, with_id(command, &write)).await
        }
        SpotCmd::Lock {
            hold,
            account,
            asset,
            amount,
            write,
        } => {
            let command = commands::lock(hold, account, asset, amount);
            submit(client, with_id(command, &write)).await
        }
        SpotCmd::AssertBalance {
            account,
            asset,
            available,
            locked,
            write,
        } => {
            let command = commands::assert_balance(account, asset, available, locked);
            submit(client, with_id(command, &write)).await
        }
        SpotCmd::Release { hold, write } => {
            submit(client, with_id(commands::release(hold), &write)).await
        }
        SpotCmd::Fill {
            buy_hold,
            sell_hold,
            amount,
            price,
            buyer_fee,
            seller_fee,
            write,
        } => {
            let command =
                commands::fill_with_fees(buy_hold, sell_hold, amount, price, buyer_fee, seller_fee);
            submit(client, with_id(command, &write)).await
        }
        SpotCmd::Balance { owner, asset, read } => {
            let call = |o| client.balance(owner, asset.clone(), o);
            run_read(&read, call, |r| Outcome::Ok {
                text: render::balance_text(owner, &asset, &r),
                json: render::balance_json(owner, &asset, &r),
            })
            .await
        }
        SpotCmd::Hold { hold, read } => {
            run_read(
                &read,
                |o| client.hold(hold, o),
                |r| Outcome::Ok {
                    text: render::hold_text(&r),
                    json: render::hold_json(&r),
                },
            )
            .await
        }
    }
}
