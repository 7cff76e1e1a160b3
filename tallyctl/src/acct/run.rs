//! Running the account-model subcommands: each parsed command becomes a
//! write (through [`submit`]) or a read (through [`run_read`]), and its
//! answer an [`Outcome`].

use tally_client::accounts::{self, AccountFilter};
use tally_client::proto::v1 as pb;
use tally_client::{Client, Wallet};

use crate::acct::args::AcctCmd;
use crate::acct::render;
use crate::run::{Outcome, run_read, submit, with_id};

pub async fn run(client: &Client, cmd: AcctCmd) -> Outcome {
    match cmd {
        AcctCmd::OpenAccount {
            account,
            parent,
            collateral,
            no_withdraw,
            withdraw,
            history,
            write,
        } => {
            // A sub-account may not withdraw unless --withdraw says so; a
            // top-level account may unless --no-withdraw says so.
            let can_withdraw = !no_withdraw && (parent.is_none() || withdraw);
            let command = accounts::open_account(
                account,
                parent.unwrap_or(0),
                collateral,
                can_withdraw,
                history,
            );
            submit(client, with_id(command, &write)).await
        }
        AcctCmd::Grant {
            master,
            from,
            to,
            revoke,
            write,
        } => {
            let command = accounts::set_transfer_grant(master, from, to, !revoke);
            submit(client, with_id(command, &write)).await
        }
        AcctCmd::AllowWithdraw {
            account,
            forbid,
            write,
        } => {
            let command = accounts::set_withdraw_allowed(account, !forbid);
            submit(client, with_id(command, &write)).await
        }
        AcctCmd::WalletTransfer {
            from,
            from_wallet,
            to,
            to_wallet,
            asset,
            amount,
            write,
        } => {
            let command =
                accounts::wallet_transfer((from, from_wallet), (to, to_wallet), asset, amount);
            submit(client, with_id(command, &write)).await
        }
        AcctCmd::WalletDeposit {
            account,
            wallet,
            asset,
            amount,
            write,
        } => {
            let command = accounts::wallet_deposit(account, wallet, asset, amount);
            submit(client, with_id(command, &write)).await
        }
        AcctCmd::WalletWithdraw {
            account,
            wallet,
            asset,
            amount,
            write,
        } => {
            let command = accounts::wallet_withdraw(account, wallet, asset, amount);
            submit(client, with_id(command, &write)).await
        }
        AcctCmd::InsuranceWithdraw {
            asset,
            account,
            wallet,
            amount,
            write,
        } => {
            let command = accounts::withdraw_insurance(asset, account, wallet, amount);
            submit(client, with_id(command, &write)).await
        }
        AcctCmd::SweepFees {
            asset,
            account,
            wallet,
            amount,
            write,
        } => {
            let command = accounts::sweep_fees(asset, account, wallet, amount);
            submit(client, with_id(command, &write)).await
        }
        other => run_more(client, other).await,
    }
}

/// Pairs, releases and the reads.
async fn run_more(client: &Client, cmd: AcctCmd) -> Outcome {
    match cmd {
        AcctCmd::PairCreate {
            pair,
            base,
            quote,
            size_scale,
            price_scale,
            min_base_amount,
            write,
        } => {
            let command = accounts::create_pair(pb::CreatePair {
                pair,
                base,
                quote,
                size_scale,
                price_scale,
                min_base_amount,
            });
            submit(client, with_id(command, &write)).await
        }
        AcctCmd::PairFill {
            pair,
            buy_hold,
            sell_hold,
            amount,
            price,
            buyer_fee,
            buyer_fee_asset,
            seller_fee,
            seller_fee_asset,
            buyer_limit_price,
            write,
        } => {
            let command = accounts::pair_fill(pb::PairFill {
                pair,
                buy_hold,
                sell_hold,
                base_amount: amount,
                price,
                buyer_fee: Some(accounts::fee(buyer_fee_asset, buyer_fee)),
                seller_fee: Some(accounts::fee(seller_fee_asset, seller_fee)),
                buyer_limit_price,
            });
            submit(client, with_id(command, &write)).await
        }
        AcctCmd::ReleasePart {
            hold,
            amount,
            write,
        } => {
            submit(
                client,
                with_id(accounts::release_part(hold, amount), &write),
            )
            .await
        }
        AcctCmd::Isolate {
            account,
            market,
            cross,
            write,
        } => {
            let command = accounts::set_isolated(account, market, !cross);
            submit(client, with_id(command, &write)).await
        }
        AcctCmd::AdjustIsolated {
            account,
            market,
            delta,
            write,
        } => {
            let command = accounts::adjust_isolated_margin(account, market, delta);
            submit(client, with_id(command, &write)).await
        }
        other => run_read_cmd(client, other).await,
    }
}

async fn run_read_cmd(client: &Client, cmd: AcctCmd) -> Outcome {
    match cmd {
        AcctCmd::Wallets { account, read } => {
            run_read(
                &read,
                |o| client.account_model(account, o),
                |r| Outcome::Ok {
                    text: render::wallets_text(&r),
                    json: render::wallets_json(&r),
                },
            )
            .await
        }
        AcctCmd::Transferable {
            account,
            wallet,
            asset,
            read,
        } => {
            let call = |o| client.transferable(account, wallet, asset.clone(), o);
            run_read(&read, call, |r| Outcome::Ok {
                text: render::transferable_text(account, wallet, &asset, &r),
                json: render::transferable_json(account, wallet, &asset, &r),
            })
            .await
        }
        AcctCmd::History {
            account,
            from_seq,
            from_index,
            limit,
            read,
        } => {
            let call = |o| client.history(account, from_seq, from_index, limit, o);
            run_read(&read, call, |r| Outcome::Ok {
                text: render::history_text(&r),
                json: render::history_json(account, &r),
            })
            .await
        }
        AcctCmd::Accounts {
            parent,
            non_zero,
            has_positions,
            after,
            limit,
            read,
        } => {
            let filter = AccountFilter {
                parent: parent.unwrap_or(0),
                non_zero,
                has_positions,
            };
            let call = |o| client.list_accounts(filter, after, limit, o);
            run_read(&read, call, |r| Outcome::Ok {
                text: render::accounts_text(&r),
                json: render::accounts_json(&r),
            })
            .await
        }
        AcctCmd::Holds {
            account,
            after,
            limit,
            read,
        } => {
            let call = |o| client.list_holds(account, after, limit, o);
            run_read(&read, call, |r| Outcome::Ok {
                text: render::holds_text(&r),
                json: render::holds_json(&r),
            })
            .await
        }
        AcctCmd::Assets { read } => {
            run_read(
                &read,
                |o| client.list_assets(o),
                |r| Outcome::Ok {
                    text: render::assets_text(&r),
                    json: render::assets_json(&r),
                },
            )
            .await
        }
        AcctCmd::Pairs { read } => {
            run_read(
                &read,
                |o| client.list_pairs(o),
                |r| Outcome::Ok {
                    text: render::pairs_text(&r),
                    json: render::pairs_json(&r),
                },
            )
            .await
        }
        AcctCmd::Markets { read } => {
            run_read(
                &read,
                |o| client.list_markets(o),
                |r| Outcome::Ok {
                    text: render::markets_text(&r),
                    json: render::markets_json(&r),
                },
            )
            .await
        }
        AcctCmd::Conservation { read } => {
            run_read(
                &read,
                |o| client.conservation(o),
                |r| Outcome::Ok {
                    text: render::conservation_text(&r),
                    json: render::conservation_json(&r),
                },
            )
            .await
        }
        _ => Outcome::usage("unreachable account-model command"),
    }
}

/// A wallet for output.
pub(crate) fn wallet_name(value: i32) -> &'static str {
    Wallet::from_proto(value).map_or("unknown", Wallet::as_str)
}
